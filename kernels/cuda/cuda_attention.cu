/* SPDX-License-Identifier: MIT */
/* Windowed multi-head attention on the GPU, the twin of kernels/cpu/cpu_attention.c: one fused
 * flash-attention-style kernel. A block takes one (window, head, tile of 64 queries); each thread
 * owns one query row (16 pre-scaled q values and 16 accumulators in registers); the window's
 * keys and values for that head pass through shared memory 64 at a time (FP32, 8 KiB), and the
 * softmax is online (cuda_attention_softmax.cuh), so the [window × window] score block is never
 * built. Scores, softmax and sums are FP32 at every precision, as on the CPU.
 *
 * Padding: slots past n repeat points (p3_attention_pad) and count as keys exactly as on the
 * CPU; a query is computed only for slots < n, a point's first slot, the only one written.
 *
 * cuDNN's fused SDPA is the other path (cuda_attention_cudnn.cu, P3_CUDA_ATTENTION=cudnn): its
 * engines take dense [batch, heads, seq, d] q/k/v, so the windows (gathered through slot_point)
 * are first copied out (3·n_pad·C values), and whether any engine accepts head dim 16 on a given
 * GPU and cuDNN version is known only from its support check there (none on sm_75). With d = 16
 * the products are thin and this kernel reads q, k and v in place, so it stays the default until
 * a GPU has timed both (scripts/gpu-check.sh's attention step), and the fallback when cuDNN
 * says -ENOTSUP. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h> /* getenv, strcmp: the cudnn-sdpa hook */
#include <string.h>

#include "cuda_attention_cudnn.h"
#include "cuda_attention_softmax.cuh"
#include "cuda_backend.h"

typedef struct attn_args {
        const float *qkv;
        int64_t ldq;                 /* qkv row stride (floats) */
        const int32_t *slot_point;   /* [n_pad] */
        float *out;
        int64_t ldo;                 /* out row stride (floats) */
        int64_t n, window, c;        /* points, slots per window, channels (heads · 16) */
        int64_t qtiles, tasks;       /* query tiles per window; windows · heads · qtiles */
        int heads;
        bool vec_q, vec_o;           /* rows 16-byte aligned: float4 loads / stores */
} attn_args;

static_assert(CU_ATTN_KEY_TILE % CU_ATTN_CHUNK == 0, "key tiles hold whole chunks");
/* K and V tiles: 2 · 64 keys · 16 floats · 4 bytes = 8 KiB, well inside sm_75's 48 KiB. */
static_assert(2 * CU_ATTN_KEY_TILE * CU_ATTN_HD * sizeof(float) <= 48 * 1024, "shared memory");

__device__ static inline float4 load4(const float *p, bool vec) {
        if (vec)
                return __ldg((const float4 *) p);
        return make_float4(__ldg(p), __ldg(p + 1), __ldg(p + 2), __ldg(p + 3));
}

/* A slot's point, or -1 when slot_point holds something outside [0, n): such a key reads as
 * zeros and such a query is skipped, rather than reading or writing out of bounds. */
__device__ static inline int64_t slot_row(const attn_args *a, int64_t slot) {
        int64_t p = a->slot_point[slot];
        return p >= 0 && p < a->n ? p : -1;
}

/* Stage keys [k0, k0 + count) of the window starting at slot s0 (head h) in shared memory:
 * count · 8 float4, the block's threads striding over them (cu_attn_stage_elem). */
__device__ static void load_kv_tile(const attn_args *a, int64_t s0, int64_t k0, int count, int h,
                                    float4 *ks, float4 *vs) {
        for (int e = threadIdx.x; e < count * 2 * CU_ATTN_VEC; e += blockDim.x) {
                int j, i;
                bool is_v;
                cu_attn_stage_elem(e, &j, &is_v, &i);
                int64_t p = slot_row(a, s0 + k0 + j);
                float4 t = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                if (p >= 0)
                        t = load4(a->qkv + cu_attn_qkv_at(p, a->ldq, a->c, is_v ? 2 : 1, h, i),
                                  a->vec_q);
                (is_v ? vs : ks)[j * CU_ATTN_VEC + i] = t;
        }
}

__device__ static void store_row(const attn_args *a, int64_t p, int h,
                                 const float o[CU_ATTN_HD]) {
        float *dst = a->out + p * a->ldo + h * CU_ATTN_HD;
#pragma unroll
        for (int i = 0; i < CU_ATTN_VEC; i++) {
                if (a->vec_o) {
                        ((float4 *) dst)[i] =
                                make_float4(o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]);
                } else {
                        dst[4 * i] = o[4 * i];
                        dst[4 * i + 1] = o[4 * i + 1];
                        dst[4 * i + 2] = o[4 * i + 2];
                        dst[4 * i + 3] = o[4 * i + 3];
                }
        }
}

/* Grid-stride over tasks (window, head, query tile: cu_attn_task_of). Every branch around
 * __syncthreads is uniform over the block. */
__global__ void __launch_bounds__(CU_ATTN_QUERY_TILE) attention_kernel(const attn_args a) {
        __shared__ float4 ks[CU_ATTN_KEY_TILE * CU_ATTN_VEC];
        __shared__ float4 vs[CU_ATTN_KEY_TILE * CU_ATTN_VEC];

        for (int64_t t = blockIdx.x; t < a.tasks; t += gridDim.x) {
                cu_attn_task k = cu_attn_task_of(t, a.qtiles, a.heads, a.window);
                if (k.s0 + k.first >= a.n)
                        continue; /* all padding slots: nothing to write (uniform) */
                int64_t qi = k.first + threadIdx.x; /* this thread's query, within the window */
                int64_t p = qi < a.window && k.s0 + qi < a.n ? slot_row(&a, k.s0 + qi) : -1;

                float q[CU_ATTN_HD];
                cu_attn_state st;
                cu_attn_init(&st);
#pragma unroll
                for (int d = 0; d < CU_ATTN_HD; d++)
                        q[d] = 0.0f;
                if (p >= 0) {
                        float4 q4[CU_ATTN_VEC];
#pragma unroll
                        for (int i = 0; i < CU_ATTN_VEC; i++)
                                q4[i] = load4(a.qkv + cu_attn_qkv_at(p, a.ldq, a.c, 0, k.h, i),
                                              a.vec_q);
                        cu_attn_load_q(q4, q);
                }
                for (int64_t k0 = 0; k0 < a.window; k0 += CU_ATTN_KEY_TILE) {
                        int count = cu_attn_tile_count(a.window, k0);
                        __syncthreads(); /* the previous tile (or task) is consumed */
                        load_kv_tile(&a, k.s0, k0, count, k.h, ks, vs);
                        __syncthreads();
                        if (p >= 0)
                                cu_attn_tile(&st, q, ks, vs, count);
                }
                if (p >= 0) {
                        float o[CU_ATTN_HD];
                        cu_attn_finish(&st, o);
                        store_row(&a, p, k.h, o);
                }
        }
}

/* P3_CUDA_ATTENTION=cudnn, read once: this runs for every window block of every layer. */
static bool use_cudnn(void) {
        static int cached = -1;
        if (cached < 0) {
                const char *path = getenv("P3_CUDA_ATTENTION");
                cached = path && strcmp(path, "cudnn") == 0;
        }
        return cached;
}

static bool aligned16(const void *p, int64_t ld) {
        return (uintptr_t) p % 16 == 0 && ld % 4 == 0;
}

int cuda_attention(p3_backend *be, const p3_tensor *qkv, const int32_t *slot_point,
                   int64_t n_pad, int64_t window, int heads, p3_tensor *out) {
        int64_t n = out->rows;
        /* The CPU twin's shape checks, plus the FP32 activations this kernel reads. */
        if (qkv->cols != 3 * out->cols || out->cols != (int64_t) heads * CU_ATTN_HD ||
            window <= 0 || n_pad % window)
                return -EINVAL;
        if (qkv->dtype != P3_F32 || out->dtype != P3_F32 || heads < 0 || n_pad < 0)
                return -EINVAL;
        if (n <= 0 || heads == 0 || n_pad == 0)
                return 0;
        if (!slot_point || qkv->rows < n)
                return -EINVAL;

        /* P3_CUDA_ATTENTION=cudnn tries cuDNN's SDPA first; on -ENOTSUP (no cuDNN, FP32, no
         * engine for head dim 16) this kernel runs (see the top comment). */
        if (use_cudnn()) {
                int r = cuda_attention_cudnn(be, qkv, slot_point, n_pad, window, heads, out);
                if (r != -ENOTSUP)
                        return r;
        }
        attn_args a;
        a.qkv = (const float *) qkv->data;
        a.ldq = p3_ld(qkv);
        a.slot_point = slot_point;
        a.out = (float *) out->data;
        a.ldo = p3_ld(out);
        a.n = n;
        a.window = window;
        a.c = out->cols;
        a.heads = heads;
        a.qtiles = (window + CU_ATTN_QUERY_TILE - 1) / CU_ATTN_QUERY_TILE;
        a.tasks = (n_pad / window) * heads * a.qtiles;
        a.vec_q = aligned16(a.qkv, a.ldq);
        a.vec_o = aligned16(a.out, a.ldo);

        unsigned grid = cuda_grid(a.tasks * CU_ATTN_QUERY_TILE, CU_ATTN_QUERY_TILE);
        attention_kernel<<<grid, CU_ATTN_QUERY_TILE, 0, cuda_st(be)->stream>>>(a);
        return cuda_check_launch(be, "attention_kernel");
}
