/* SPDX-License-Identifier: MIT */
/* The per-query arithmetic of the CUDA attention kernel (cuda_attention.cu), written once as
 * __host__ __device__ functions so that a host-compiled test (tests/cuda/
 * test-cuda-attention-softmax.cu) runs the kernel's exact algorithm against the CPU twin.
 *
 * One query row at a time against the keys of its window, online ("flash") softmax: a running
 * maximum m, a running sum l of exp(s - m) and an accumulator o = Σ exp(s - m)·v, rescaled by
 * exp(m_old - m_new) whenever the maximum grows, so the [window × window] score matrix is never
 * built. The keys come in chunks of CU_ATTN_CHUNK: the rescale costs one exp per chunk, not one
 * per key. All FP32, as on the CPU (kernels/cpu/cpu_attention.c).
 *
 * A key or value row is CU_ATTN_HD floats held as 4 float4 (16-byte aligned): the kernel reads
 * them from shared memory as 128-bit broadcasts; the host test passes float4 arrays. */
#pragma once

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#define CU_ATTN_HD 16           /* head dimension (the model's, fixed) */
#define CU_ATTN_VEC 4           /* float4 per row of CU_ATTN_HD floats */
#define CU_ATTN_CHUNK 8         /* keys per softmax update */
#define CU_ATTN_KEY_TILE 64     /* keys staged in shared memory at a time (CHUNK multiple) */
#define CU_ATTN_QUERY_TILE 64   /* queries (threads) per block */
/* 16^-0.5: a power of two, so scaling q first gives exactly 0.25·(q·k). */
#define CU_ATTN_SCALE 0.25f

typedef struct cu_attn_state {
        float m;                /* running maximum of the scores seen (-inf before any) */
        float l;                /* Σ exp(s - m) */
        float o[CU_ATTN_HD];    /* Σ exp(s - m)·v */
} cu_attn_state;

__host__ __device__ static inline void cu_attn_init(cu_attn_state *st) {
        st->m = -INFINITY;
        st->l = 0.0f;
#pragma unroll
        for (int d = 0; d < CU_ATTN_HD; d++)
                st->o[d] = 0.0f;
}

/* The query row, pre-scaled by 16^-0.5 (exact). */
__host__ __device__ static inline void cu_attn_load_q(const float4 *q4, float q[CU_ATTN_HD]) {
#pragma unroll
        for (int i = 0; i < CU_ATTN_VEC; i++) {
                float4 t = q4[i];
                q[4 * i + 0] = t.x * CU_ATTN_SCALE;
                q[4 * i + 1] = t.y * CU_ATTN_SCALE;
                q[4 * i + 2] = t.z * CU_ATTN_SCALE;
                q[4 * i + 3] = t.w * CU_ATTN_SCALE;
        }
}

/* s = q·k for a pre-scaled q, in a fixed order (fused multiply-adds, dimension 0 first). */
__host__ __device__ static inline float cu_attn_score(const float q[CU_ATTN_HD],
                                                      const float4 *k4) {
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < CU_ATTN_VEC; i++) {
                float4 t = k4[i];
                s = fmaf(q[4 * i + 0], t.x, s);
                s = fmaf(q[4 * i + 1], t.y, s);
                s = fmaf(q[4 * i + 2], t.z, s);
                s = fmaf(q[4 * i + 3], t.w, s);
        }
        return s;
}

/* o += p·v for one value row. */
__host__ __device__ static inline void cu_attn_axpy(float o[CU_ATTN_HD], float p,
                                                    const float4 *v4) {
#pragma unroll
        for (int i = 0; i < CU_ATTN_VEC; i++) {
                float4 t = v4[i];
                o[4 * i + 0] = fmaf(p, t.x, o[4 * i + 0]);
                o[4 * i + 1] = fmaf(p, t.y, o[4 * i + 1]);
                o[4 * i + 2] = fmaf(p, t.z, o[4 * i + 2]);
                o[4 * i + 3] = fmaf(p, t.w, o[4 * i + 3]);
        }
}

/* One online-softmax step over `count` (1..CU_ATTN_CHUNK) keys whose scores are s[0..count)
 * and whose value rows are v4[CU_ATTN_VEC·j ..]. Entries of s past count are not read. */
__host__ __device__ static inline void cu_attn_update(cu_attn_state *st,
                                                      const float s[CU_ATTN_CHUNK],
                                                      const float4 *v4, int count) {
        float cmax = -INFINITY;
#pragma unroll
        for (int j = 0; j < CU_ATTN_CHUNK; j++)
                if (j < count)
                        cmax = fmaxf(cmax, s[j]);
        float m_new = fmaxf(st->m, cmax);
        /* Equal maxima (the first chunk's -inf against -inf included) leave the sums alone:
         * -inf - -inf would be NaN. */
        float alpha = st->m == m_new ? 1.0f : expf(st->m - m_new);
        st->m = m_new;
        st->l *= alpha;
#pragma unroll
        for (int d = 0; d < CU_ATTN_HD; d++)
                st->o[d] *= alpha;
#pragma unroll
        for (int j = 0; j < CU_ATTN_CHUNK; j++) {
                if (j < count) {
                        float p = expf(s[j] - m_new);
                        st->l += p;
                        cu_attn_axpy(st->o, p, v4 + CU_ATTN_VEC * j);
                }
        }
}

/* The query against `count` keys (any count >= 1) with rows k4, v4 (CU_ATTN_VEC float4 each),
 * chunk by chunk: what a thread does with one shared-memory tile. */
__host__ __device__ static inline void cu_attn_tile(cu_attn_state *st, const float q[CU_ATTN_HD],
                                                    const float4 *k4, const float4 *v4,
                                                    int count) {
        for (int j0 = 0; j0 < count; j0 += CU_ATTN_CHUNK) {
                int c = count - j0 < CU_ATTN_CHUNK ? count - j0 : CU_ATTN_CHUNK;
                float s[CU_ATTN_CHUNK];
#pragma unroll
                for (int j = 0; j < CU_ATTN_CHUNK; j++)
                        s[j] = j < c ? cu_attn_score(q, k4 + CU_ATTN_VEC * (j0 + j)) : -INFINITY;
                cu_attn_update(st, s, v4 + CU_ATTN_VEC * j0, c);
        }
}

/* out = o / l (l >= 1 once any key was seen: the maximum's own term is exp(0)). */
__host__ __device__ static inline void cu_attn_finish(const cu_attn_state *st,
                                                      float out[CU_ATTN_HD]) {
        float inv = 1.0f / st->l;
#pragma unroll
        for (int d = 0; d < CU_ATTN_HD; d++)
                out[d] = st->o[d] * inv;
}

/* ---- the kernel's work split (attention_kernel), shared with the host test's simulation ---- */

/* One task of the grid-stride loop: the query tile `first` .. first + CU_ATTN_QUERY_TILE (slots
 * within the window) of head h in the window starting at slot s0. The tile index runs fastest,
 * so the blocks of one window and head run together and share its keys in L2. */
typedef struct cu_attn_task {
        int64_t s0, first;
        int h;
} cu_attn_task;

__host__ __device__ static inline cu_attn_task cu_attn_task_of(int64_t t, int64_t qtiles,
                                                               int heads, int64_t window) {
        cu_attn_task k;
        int64_t wh = t / qtiles;
        k.first = (t % qtiles) * CU_ATTN_QUERY_TILE;
        k.h = (int) (wh % heads);
        k.s0 = (wh / heads) * window;
        return k;
}

/* Keys in the key tile starting at k0 (within the window). */
__host__ __device__ static inline int cu_attn_tile_count(int64_t window, int64_t k0) {
        return (int) (window - k0 < CU_ATTN_KEY_TILE ? window - k0 : CU_ATTN_KEY_TILE);
}

/* Element e of a staged tile (count · 2 · CU_ATTN_VEC float4): key j of the tile, its K or V
 * half, float4 i of that row. Neighbouring elements read one key's two 64-byte halves. */
__host__ __device__ static inline void cu_attn_stage_elem(int e, int *j, bool *is_v, int *i) {
        int part = e % (2 * CU_ATTN_VEC);
        *j = e / (2 * CU_ATTN_VEC);
        *is_v = part >= CU_ATTN_VEC;
        *i = *is_v ? part - CU_ATTN_VEC : part;
}

/* Offset (floats) in qkv of float4 i of point p's q (which 0), k (1) or v (2) for head h. */
__host__ __device__ static inline int64_t cu_attn_qkv_at(int64_t p, int64_t ldq, int64_t c,
                                                         int which, int h, int i) {
        return p * ldq + which * c + (int64_t) h * CU_ATTN_HD + 4 * i;
}
