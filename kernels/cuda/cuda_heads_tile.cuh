/* SPDX-License-Identifier: MIT */
/* The P3-SAM heads on the GPU, written once for the device and for host-compiled tests: the
 * per-item arithmetic of every kernel (cu_hk_item) and the whole schedule of GEMMs and kernels
 * (cu_heads_run), which calls the device only through a table (cu_heads_exec). cuda_heads.cu
 * fills the table with kernel launches and cuBLAS; tests/cuda/test-cuda-heads-tile.cu fills it
 * with host loops over the same item functions and a plain GEMM, and compares with cpu_heads.
 *
 * The algorithm is cpu_heads.c's (spec §4.3): every first Linear over a concatenation is split
 *   W·[g | f | p | q | m] = W_g·g (per prompt) + W_fp·[f|p] (per point, one GEMM per tile)
 *                         + W_q·q (per prompt) + W_m·m (rank 3, per pair)
 * and the points are walked in tiles of T points × kc prompts twice:
 *   pass 1: stage-1 heads → m1 ([kc][n][3], kept), seg_s2_mlp_g → running max = g_k;
 *   pass 2: stage-2 heads → s2 (logits, mask bits), iou_mlp(s2) → running max → iou_mlp_out.
 * Prompts are independent of each other, so they are taken in chunks of kc: the per-pair
 * buffers (m1, and the logits and bits wanted as outputs) are kc × n, never k × n × channels.
 * Running maxima are atomic integer maxima of an order-preserving key (cu_max_key): exact and
 * independent of the order the tiles finish in. A stage-2 logit that is not finite (FP16
 * overflowing inside the heads) raises a flag, and the op then fails with -ERANGE: a NaN
 * would otherwise pass for a clear mask bit. */
#pragma once

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cuda_elementwise.cuh"

extern "C" {
#include "backend.h"
}

#define CU_FEAT 512
#define CU_FP (CU_FEAT + 3)  /* [feat | point] columns */
#define CU_G 256             /* width of the stage-2 and IoU heads */
#define CU_XLD 520           /* row stride of the gathered [feat | point] tile (32-byte rows) */
#define CU_MAX_TCH 32        /* points per thread in a running max */

/* Column offsets inside the first-layer weights (backend.h). */
#define CU_SEG_Q CU_FP            /* seg_mlp_h: [f|p|q] */
#define CU_S2G_Q CU_FP            /* seg_s2_mlp_g: [f|p|q|m1] */
#define CU_S2G_M (CU_FP + 3)
#define CU_S2_FP CU_G             /* seg_s2_mlp_h, iou_mlp: [g|f|p|q|m] */
#define CU_S2_Q (CU_G + CU_FP)
#define CU_S2_M (CU_G + CU_FP + 3)

/* ---- element arithmetic ------------------------------------------------------------------ */

/* One weight element as FP32, whatever its storage (p3_dtype). */
__host__ __device__ static inline float cu_weight_f32(const void *w, int dtype, int64_t i) {
        if (dtype == P3_F16)
                return __half2float(((const __half *) w)[i]);
        if (dtype == P3_BF16)
                return __bfloat162float(((const __nv_bfloat16 *) w)[i]);
        return ((const float *) w)[i];
}

/* A first-layer element, in cpu_heads.c's order: (a + b) is the per-point part with its bias,
 * pj the per-prompt part, w·m the rank-3 term (zeros where the layer has none). */
__host__ __device__ static inline float cu_heads_first(float a, float b, float pj, float w0,
                                                       float w1, float w2, float m0, float m1,
                                                       float m2) {
        return cu_gelu((a + b) + pj + w0 * m0 + w1 * m1 + w2 * m2);
}

/* W_q·q for one channel: the prompt's 3 coordinates times the weight's 3 columns. */
__host__ __device__ static inline float cu_heads_prompt(float w0, float w1, float w2, float q0,
                                                        float q1, float q2) {
        return w0 * q0 + w1 * q1 + w2 * q2;
}

__host__ __device__ static inline float cu_sigmoid(float x) {
        return 1.0f / (1.0f + expf(-x));
}

/* The CPU's mask rule, sigmoidf(v) > 0.5f with sigmoidf = 1/(1 + expf(-v)), as a threshold:
 * FP32 gives exactly 0.5 up to v = 1.5·2⁻²⁴ (expf(-v) rounds to 1 - 2⁻²⁴ or above, 1 + that
 * rounds to 2), so the bit is v > 0x1.8p-24, not v > 0. Written as a comparison so that the
 * device, whose expf may differ by an ulp, gives the same bits. NaN gives 0 in both. */
__host__ __device__ static inline bool cu_mask_bit(float v) {
        return v > 0x1.8p-24f;
}

/* Up to 8 logits v[e·stride] (e < count) as one byte: bit e set when cu_mask_bit. */
__host__ __device__ static inline uint8_t cu_mask_pack8(const float *v, int64_t stride,
                                                        int count) {
        unsigned byte = 0;
        for (int e = 0; e < count && e < 8; e++)
                if (cu_mask_bit(v[e * stride]))
                        byte |= 1u << e;
        return (uint8_t) byte;
}

/* Float → int32 with the same order (-0 just below +0, NaNs beyond ±inf), so that running
 * maxima are atomicMax on int. The map is its own inverse. */
__host__ __device__ static inline int32_t cu_max_key(float f) {
        uint32_t u;
        memcpy(&u, &f, sizeof(u));
        if (u & 0x80000000u)
                u ^= 0x7fffffffu;
        return (int32_t) u;
}

__host__ __device__ static inline float cu_key_to_float(int32_t k) {
        uint32_t u = (uint32_t) k;
        if (u & 0x80000000u)
                u ^= 0x7fffffffu;
        float f;
        memcpy(&f, &u, sizeof(f));
        return f;
}

/* Sums of 32 lanes in the order of a warp's __shfl_xor_sync butterfly (offsets 16 … 1): what
 * lane 0 holds at the end. The host emulation of the device reduction. */
__host__ __device__ static inline float cu_lane_tree_sum(float p[32]) {
        for (int off = 16; off >= 1; off >>= 1) {
                float q[32];
                for (int l = 0; l < 32; l++)
                        q[l] = p[l] + p[l ^ off];
                for (int l = 0; l < 32; l++)
                        p[l] = q[l];
        }
        return p[0];
}

/* ---- the kernels' items ------------------------------------------------------------------ */

enum {
        CU_HK_GATHER,    /* x[t] = [feat[inverse[p0+t]] | points[p0+t]]         np·515 items */
        CU_HK_FIRST,     /* y[t·kc+j] = GELU(a[t] + b + pj[j] + wm·m(t,j))       rows·width */
        CU_HK_BIAS_GELU, /* y[r] = GELU(y[r] + b), in place                      rows·width */
        CU_HK_DOT,       /* m(t,j)[h] = GELU(x[r] + b)·w + wb, width-1; nonfinite rows (warps) */
        CU_HK_MAX_INIT,  /* keys = key(-inf)                                     kc·width */
        CU_HK_BIAS_MAX,  /* keys[j] = max over the tile's t of key(x[t·kc+j] + b)  see items */
        CU_HK_KEYS_TO_F, /* y = float(keys)                                      kc·width */
        CU_HK_S1,        /* y[h][j][p] = m[(j·n + p)·3 + h]                       3·kc·n */
        CU_HK_S2,        /* y[h][j][p0+t] = x[(t·kc + j)·3 + h]                   3·kc·np */
        CU_HK_BITS,      /* bits[h][j][p0/8 + i] = pack8 of the tile's x          3·kc·⌈np/8⌉ */
        CU_HK_COLS,      /* y[i][c] = W[c][col + i], FP32                         3·width */
        CU_HK_PROMPT,    /* y[j][c] = wm[·][c]·q[j] (wm from CU_HK_COLS)          kc·width */
        CU_HK_SIGMOID,   /* y[j][c] = sigmoid(x[j][c] + b[c])                     kc·3 */
        CU_HK_KINDS,
};

/* One kernel's arguments (fields as each kind above uses them). Passed by value to kernels. */
typedef struct cu_hk {
        int kind;
        int h;                  /* DOT: which of the 3 logits */
        int64_t np, kc, width;  /* the tile's points, the chunk's prompts, channels */
        int64_t n, p0, nb;      /* all points, the tile's first point, bytes per mask row */
        int64_t mt, mj;         /* FIRST's m, DOT's y: pair (t, j) at [(t·mt + j·mj)·3] */
        const float *x, *a, *b, *pj, *wm, *m, *q;
        const float *wb;        /* DOT: the last layer's bias (device: read by the kernel) */
        const float *feat, *pts;
        const int32_t *inverse;
        int64_t ld_feat, feat_rows, ld_pts;
        const void *w;          /* DOT, COLS: a weight of type wdtype, row stride ld_w */
        int wdtype;
        int64_t ld_w, col_w;
        float *y;
        int32_t *keys;
        uint8_t *bits;
        int32_t *nonfinite;     /* DOT: set to 1 where a logit is NaN or ±Inf (or NULL) */
} cu_hk;

/* Items of a launch (DOT: rows, one warp each). */
__host__ __device__ static inline int64_t cu_hk_items(const cu_hk *a) {
        int64_t rows = a->np * a->kc;
        switch (a->kind) {
        case CU_HK_GATHER:
                return a->np * CU_FP;
        case CU_HK_FIRST:
        case CU_HK_BIAS_GELU:
                return rows * a->width;
        case CU_HK_DOT:
                return rows;
        case CU_HK_MAX_INIT:
        case CU_HK_KEYS_TO_F:
        case CU_HK_PROMPT:
                return a->kc * a->width;
        case CU_HK_BIAS_MAX:
                return a->kc * a->width * ((a->np + CU_MAX_TCH - 1) / CU_MAX_TCH);
        case CU_HK_S1:
                return 3 * a->kc * a->n;
        case CU_HK_S2:
                return 3 * a->kc * a->np;
        case CU_HK_BITS:
                return 3 * a->kc * ((a->np + 7) / 8);
        case CU_HK_COLS:
                return 3 * a->width;
        case CU_HK_SIGMOID:
                return a->kc * 3;
        }
        return 0;
}

__host__ __device__ static inline void cu_hk_gather(const cu_hk *a, int64_t i) {
        int64_t t = i / CU_FP, c = i % CU_FP, p = a->p0 + t;
        float v;
        if (c < CU_FEAT) {
                int32_t vox = a->inverse[p];
                /* a bad map must not read out of bounds: NaN shows up in every output */
                v = vox >= 0 && vox < a->feat_rows ? a->feat[vox * a->ld_feat + c] : NAN;
        } else {
                v = a->pts[p * a->ld_pts + (c - CU_FEAT)];
        }
        a->y[t * CU_XLD + c] = v;
}

/* FIRST: channel c of pair (t, j). Kernels walk rows so that they divide once a row. */
__host__ __device__ static inline void cu_hk_first_at(const cu_hk *a, int64_t t, int64_t j,
                                                      int64_t c) {
        float w0 = 0, w1 = 0, w2 = 0, m0 = 0, m1 = 0, m2 = 0;
        if (a->wm) {
                const float *m = a->m + (t * a->mt + j * a->mj) * 3;
                w0 = a->wm[c], w1 = a->wm[a->width + c], w2 = a->wm[2 * a->width + c];
                m0 = m[0], m1 = m[1], m2 = m[2];
        }
        a->y[(t * a->kc + j) * a->width + c] =
                cu_heads_first(a->a[t * a->width + c], a->b[c], a->pj[j * a->width + c], w0, w1,
                               w2, m0, m1, m2);
}

__host__ __device__ static inline void cu_hk_first(const cu_hk *a, int64_t i) {
        int64_t row = i / a->width;
        cu_hk_first_at(a, row / a->kc, row % a->kc, i % a->width);
}

/* DOT: lane `lane` of `lanes`'s share of row r's sum (channels lane, lane + lanes, …). */
__host__ __device__ static inline float cu_hk_dot_part(const cu_hk *a, int64_t r, int lane,
                                                       int lanes) {
        const float *x = a->x + r * a->width;
        float s = 0;
        for (int64_t c = lane; c < a->width; c += lanes)
                s += cu_gelu(x[c] + a->b[c]) * cu_weight_f32(a->w, a->wdtype, c);
        return s;
}

/* DOT: row r's logit v (its sum and bias) to its place. One that is not finite raises the
 * flag where there is one (every writer writes 1: no atomic needed). */
__host__ __device__ static inline void cu_hk_dot_store(const cu_hk *a, int64_t r, float v) {
        int64_t t = r / a->kc, j = r % a->kc;
        a->y[(t * a->mt + j * a->mj) * 3 + a->h] = v;
        if (a->nonfinite && !isfinite(v))
                *a->nonfinite = 1;
}

/* BIAS_MAX: item i covers channel c of prompt j over up to CU_MAX_TCH points of the tile;
 * returns the key of their maximum and where it goes. */
__host__ __device__ static inline int32_t cu_hk_bias_max(const cu_hk *a, int64_t i,
                                                         int64_t *slot) {
        int64_t c = i % a->width, rest = i / a->width;
        int64_t j = rest % a->kc, t0 = rest / a->kc * CU_MAX_TCH;
        int64_t t1 = t0 + CU_MAX_TCH < a->np ? t0 + CU_MAX_TCH : a->np;
        int32_t best = cu_max_key(-INFINITY);
        for (int64_t t = t0; t < t1; t++) {
                int32_t key = cu_max_key(a->x[(t * a->kc + j) * a->width + c] + a->b[c]);
                best = key > best ? key : best;
        }
        *slot = j * a->width + c;
        return best;
}

__host__ __device__ static inline void cu_hk_bits(const cu_hk *a, int64_t i) {
        int64_t nbt = (a->np + 7) / 8, byte = i % nbt, row = i / nbt;
        int64_t h = row / a->kc, j = row % a->kc, t0 = byte * 8;
        int count = (int) (a->np - t0 < 8 ? a->np - t0 : 8);
        /* p0 is a multiple of 8: the tile owns whole bytes */
        a->bits[row * a->nb + a->p0 / 8 + byte] =
                cu_mask_pack8(a->x + (t0 * a->kc + j) * 3 + h, a->kc * 3, count);
}

/* BIAS_GELU: channel c of row r. */
__host__ __device__ static inline void cu_hk_bias_gelu_at(const cu_hk *a, int64_t r, int64_t c) {
        float *y = a->y + r * a->width;
        y[c] = cu_gelu(y[c] + a->b[c]);
}

/* Item i of every kind but DOT and BIAS_MAX (a warp, an atomic). Kernels pass a constant
 * kind, so that the switch folds away. */
__host__ __device__ static inline void cu_hk_item_k(int kind, const cu_hk *a, int64_t i) {
        switch (kind) {
        case CU_HK_GATHER:
                cu_hk_gather(a, i);
                break;
        case CU_HK_FIRST:
                cu_hk_first(a, i);
                break;
        case CU_HK_BIAS_GELU:
                cu_hk_bias_gelu_at(a, i / a->width, i % a->width);
                break;
        case CU_HK_MAX_INIT:
                a->keys[i] = cu_max_key(-INFINITY);
                break;
        case CU_HK_KEYS_TO_F:
                a->y[i] = cu_key_to_float(a->keys[i]);
                break;
        case CU_HK_S1: {
                int64_t p = i % a->n, row = i / a->n, h = row / a->kc, j = row % a->kc;
                a->y[i] = a->m[(j * a->n + p) * 3 + h];
                break;
        }
        case CU_HK_S2: {
                int64_t t = i % a->np, row = i / a->np, h = row / a->kc, j = row % a->kc;
                a->y[row * a->n + a->p0 + t] = a->x[(t * a->kc + j) * 3 + h];
                break;
        }
        case CU_HK_BITS:
                cu_hk_bits(a, i);
                break;
        case CU_HK_COLS: {
                int64_t e = i / a->width, c = i % a->width;
                a->y[i] = cu_weight_f32(a->w, a->wdtype, c * a->ld_w + a->col_w + e);
                break;
        }
        case CU_HK_PROMPT: {
                int64_t j = i / a->width, c = i % a->width, w = a->width;
                const float *q = a->q + 3 * j;
                a->y[i] = cu_heads_prompt(a->wm[c], a->wm[w + c], a->wm[2 * w + c], q[0], q[1],
                                          q[2]);
                break;
        }
        case CU_HK_SIGMOID:
                a->y[i] = cu_sigmoid(a->x[i] + a->b[i % 3]);
                break;
        default:
                break;
        }
}

__host__ __device__ static inline void cu_hk_item(const cu_hk *a, int64_t i) {
        cu_hk_item_k(a->kind, a, i);
}

/* ---- the schedule (host) ------------------------------------------------------------------ */

/* What the schedule needs from the device. Scratch pointers are the device's; downloads may
 * complete later (sync waits for them). Every call returns 0 or a negative errno. */
typedef struct cu_heads_exec {
        void *ctx;
        int (*alloc)(void *ctx, size_t bytes, void **ret);
        void (*free)(void *ctx, void *p, size_t bytes);
        int (*upload)(void *ctx, void *dst, const void *src, size_t bytes);
        int (*download)(void *ctx, void *dst, const void *src, size_t bytes);
        int (*sync)(void *ctx);
        /* cuda_gemm_w's contract */
        int (*gemm)(void *ctx, int64_t m, int64_t k, const float *a, int64_t lda,
                    const p3_tensor *w, int64_t col, float *c, int64_t ldc, bool acc);
        int (*run)(void *ctx, const cu_hk *a, int64_t items);
} cu_heads_exec;

typedef struct cu_heads_cfg {
        int64_t target_rows;  /* pairs per tile, about (tile points × chunk prompts), at least */
        int64_t max_chunk;    /* prompts per chunk at most; target_rows ≥ 8 · max_chunk */
        size_t pair_budget;   /* bytes of per-pair buffers (m1, logits, bits) per chunk */
        int64_t max_rows;     /* pairs per tile at most */
        size_t tile_budget;   /* bytes the tiles may take (0: target_rows exactly) */
} cu_heads_cfg;

/* Tiles of 8192 pairs at least: GEMMs of 8192 × 512 × 512, 16 MiB per hidden buffer. A tile
 * costs the host about 35 launches whatever its size, which a GPU runs in less time than
 * that at 8192 pairs; so tiles grow with the memory the tiles may take, up to 65536 pairs
 * (GEMMs of 65536 × 512 × 512; one GEMM call's rounding scratch, cuda_gemm.cu, holds that). */
static const cu_heads_cfg cu_heads_default_cfg = { 8192, 512, (size_t) 1 << 30, 65536, 0 };

/* The sizes for free_bytes of free memory (under GpuMemoryMax and on the device: other work
 * shares the GPU). The host queues about 35 launches a tile, so the number of tiles,
 * k·n / (pairs per tile), is what the memory should lower: the tiles take up to half of it
 * (65536 pairs need about 340 MB), and the per-pair buffers a quarter, which sets the prompts
 * per chunk (more of them would not save launches); the rest is slack for the pool's rounding
 * and the driver. */
static inline cu_heads_cfg cu_heads_cfg_for(size_t free_bytes) {
        cu_heads_cfg cfg = cu_heads_default_cfg;
        if (free_bytes / 4 < cfg.pair_budget)
                cfg.pair_budget = free_bytes / 4;
        cfg.tile_budget = free_bytes / 2;
        return cfg;
}

/* Device bytes a tile takes per pair (h1, h2, s and the FP16 copy of a GEMM's input) and per
 * point (x, a and the copy of the first layers' input), as cu_heads_layout and cuda_gemm_w
 * allocate them. */
#define CU_TILE_PAIR_BYTES ((int64_t) (2 * CU_FEAT * 4 + 3 * 4 + CU_FEAT * 2))
#define CU_TILE_POINT_BYTES ((int64_t) ((CU_XLD + CU_FEAT) * 4 + CU_FP * 2))

/* Pairs per tile for chunks of kc prompts: as many as tile_budget holds, within
 * [target_rows, max_rows]. */
static inline int64_t cu_heads_tile_rows(const cu_heads_cfg *cfg, int64_t kc) {
        if (!cfg->tile_budget)
                return cfg->target_rows;
        int64_t per_pair = CU_TILE_PAIR_BYTES + (CU_TILE_POINT_BYTES + kc - 1) / kc;
        int64_t rows = (int64_t) (cfg->tile_budget / (size_t) per_pair);
        rows = rows < cfg->max_rows ? rows : cfg->max_rows;
        return rows > cfg->target_rows ? rows : cfg->target_rows;
}

/* The 3-column slices taken from first-layer weights, FP32 [3][rows] each, in `cols`. */
enum {
        CU_COL_SEG_Q = 0, /* 3 of them, 512 rows */
        CU_COL_S2G_Q = 3, /* from here on 256 rows */
        CU_COL_S2G_M,
        CU_COL_S2_Q,      /* 3 */
        CU_COL_S2_M = CU_COL_S2_Q + 3, /* 3 */
        CU_COL_IOU_Q = CU_COL_S2_M + 3,
        CU_COL_IOU_M,
        CU_COL_COUNT,
};

static inline int64_t cu_col_offset(int slice) {
        if (slice < CU_COL_S2G_Q)
                return (int64_t) slice * 3 * CU_FEAT;
        return 3 * 3 * CU_FEAT + (int64_t) (slice - CU_COL_S2G_Q) * 3 * CU_G;
}

typedef struct cu_heads_bufs {
        float *q;               /* [k][3] all prompts */
        float *cols;            /* the slices above */
        float *x;               /* [T][CU_XLD] */
        float *a;               /* [T][512] per-point first-layer part */
        float *h1, *h2;         /* [T·kc][512] */
        float *s;               /* [T·kc][3] the tile's stage-2 logits */
        float *bq_seg;          /* [3][kc][512] */
        float *bq_g;            /* [kc][256] */
        float *c_s2;            /* [3][kc][256] W_g·g + W_q·q */
        float *c_iou;           /* [kc][256] */
        float *gmax, *imax;     /* [kc][256] */
        int32_t *gkeys, *ikeys; /* [kc][256] */
        float *o1, *o2, *o3, *iou; /* iou_mlp_out: [kc][256] twice, [kc][3] twice */
        float *m1;              /* [kc][n][3] stage-1 logits */
        float *s1, *s2;         /* [3][kc][n] when wanted */
        uint8_t *bits;          /* [3][kc][⌈n/8⌉] when wanted */
        int32_t *nonfinite;     /* 1 once a stage-2 logit was not finite */
} cu_heads_bufs;

typedef struct cu_heads_job {
        const cu_heads_exec *ex;
        const p3_heads_params *hp;
        const p3_heads_input *in;
        p3_heads_output *out;
        cu_heads_bufs b;
        int64_t kc, tile;       /* prompts per chunk, points per tile (a multiple of 8) */
        int64_t j0, kcur;       /* the chunk in progress */
} cu_heads_job;

/* Carves the scratch at base (0 to measure): every buffer 256-byte aligned. Returns bytes. */
static size_t cu_heads_layout(cu_heads_job *jb, uintptr_t base) {
        const p3_heads_output *out = jb->out;
        int64_t kc = jb->kc, n = jb->in->n, rows = jb->tile * kc;
        uintptr_t cur = base;
        cu_heads_bufs *b = &jb->b;
#define CU_CARVE(ptr, count)                                                                   \
        do {                                                                                   \
                (ptr) = (__typeof__(ptr)) cur;                                                 \
                cur += ((size_t) (count) * sizeof(*(ptr)) + 255) & ~(size_t) 255;              \
        } while (0)
        CU_CARVE(b->q, 3 * (int64_t) jb->in->k);
        CU_CARVE(b->cols, cu_col_offset(CU_COL_COUNT));
        CU_CARVE(b->x, jb->tile * CU_XLD);
        CU_CARVE(b->a, jb->tile * CU_FEAT);
        CU_CARVE(b->h1, rows * CU_FEAT);
        CU_CARVE(b->h2, rows * CU_FEAT);
        CU_CARVE(b->s, rows * 3);
        CU_CARVE(b->bq_seg, 3 * kc * CU_FEAT);
        CU_CARVE(b->bq_g, kc * CU_G);
        CU_CARVE(b->c_s2, 3 * kc * CU_G);
        CU_CARVE(b->c_iou, kc * CU_G);
        CU_CARVE(b->gmax, kc * CU_G);
        CU_CARVE(b->imax, kc * CU_G);
        CU_CARVE(b->gkeys, kc * CU_G);
        CU_CARVE(b->ikeys, kc * CU_G);
        CU_CARVE(b->o1, kc * CU_G);
        CU_CARVE(b->o2, kc * CU_G);
        CU_CARVE(b->o3, kc * 3);
        CU_CARVE(b->iou, kc * 3);
        CU_CARVE(b->m1, kc * n * 3);
        CU_CARVE(b->nonfinite, 1);
        b->s1 = NULL, b->s2 = NULL, b->bits = NULL;
        if (out->s1_logit)
                CU_CARVE(b->s1, 3 * kc * n);
        if (out->s2_logit)
                CU_CARVE(b->s2, 3 * kc * n);
        if (out->mask_bits)
                CU_CARVE(b->bits, 3 * kc * ((n + 7) / 8));
#undef CU_CARVE
        return (size_t) (cur - base);
}

/* Prompts per chunk and points per tile. */
static void cu_heads_plan(cu_heads_job *jb, const cu_heads_cfg *cfg) {
        const p3_heads_output *out = jb->out;
        int64_t n = jb->in->n, k = jb->in->k;
        size_t pair = 12 + (out->s1_logit ? 12 : 0) + (out->s2_logit ? 12 : 0) +
                      (out->mask_bits ? 1 : 0);
        int64_t kc = (int64_t) (cfg->pair_budget / (pair * (size_t) n));
        kc = kc < 1 ? 1 : kc;
        kc = kc < cfg->max_chunk ? kc : cfg->max_chunk;
        kc = kc < k ? kc : k;
        /* chunks of equal size: a short last chunk would walk every point in tiles of few
         * pairs, with as many launches as a full one */
        int64_t chunks = (k + kc - 1) / kc;
        jb->kc = (k + chunks - 1) / chunks;
        int64_t tile = (cu_heads_tile_rows(cfg, jb->kc) / jb->kc) & ~(int64_t) 7;
        int64_t n8 = (n + 7) & ~(int64_t) 7;
        tile = tile < 8 ? 8 : tile;
        jb->tile = tile < n8 ? tile : n8;
}

static int cu_hk_go(const cu_heads_job *jb, const cu_hk *a) {
        int64_t items = cu_hk_items(a);
        return items > 0 ? jb->ex->run(jb->ex->ctx, a, items) : 0;
}

static int cu_heads_gemm(const cu_heads_job *jb, int64_t m, int64_t k, const float *a,
                         int64_t lda, const p3_tensor *w, int64_t col, float *c, int64_t ldc,
                         bool acc) {
        return jb->ex->gemm(jb->ex->ctx, m, k, a, lda, w, col, c, ldc, acc);
}

/* x = [feat | point] of the tile's points. */
static int cu_heads_gather(const cu_heads_job *jb, int64_t p0, int64_t np) {
        const p3_heads_input *in = jb->in;
        cu_hk a = {};
        a.kind = CU_HK_GATHER;
        a.np = np, a.p0 = p0;
        a.feat = (const float *) in->feat->data, a.ld_feat = p3_ld(in->feat);
        a.feat_rows = in->feat->rows;
        a.pts = (const float *) in->points->data, a.ld_pts = p3_ld(in->points);
        a.inverse = in->inverse;
        a.y = jb->b.x;
        return cu_hk_go(jb, &a);
}

/* h1 = GELU(W_fp·x + b + pj + wm·m) for the tile's pairs: the point part by one GEMM of np
 * rows, the rest broadcast per pair. m(t, j) at m[(t·mt + j·mj)·3]. */
static int cu_heads_layer1(const cu_heads_job *jb, const p3_mlp3 *mlp, int64_t col,
                           const float *pj, const float *wm, const float *m, int64_t mt,
                           int64_t mj, int64_t np) {
        int64_t width = mlp->w[0].rows;
        int r = cu_heads_gemm(jb, np, CU_FP, jb->b.x, CU_XLD, &mlp->w[0], col, jb->b.a, width,
                              false);
        if (r < 0)
                return r;
        cu_hk a = {};
        a.kind = CU_HK_FIRST;
        a.np = np, a.kc = jb->kcur, a.width = width;
        a.a = jb->b.a, a.b = (const float *) mlp->b[0].data, a.pj = pj;
        a.wm = wm, a.m = m, a.mt = mt, a.mj = mj;
        a.y = jb->b.h1;
        return cu_hk_go(jb, &a);
}

/* From h1 (first layer done): the hidden layer, then the width-1 last layer into logit h of
 * pair (t, j) at y[(t·mt + j·mj)·3 + h]; a logit that is not finite sets *nonfinite (if not
 * NULL). */
static int cu_heads_logit(const cu_heads_job *jb, const p3_mlp3 *mlp, int64_t np, float *y,
                          int64_t mt, int64_t mj, int h, int32_t *nonfinite) {
        int64_t width = mlp->w[1].rows, rows = np * jb->kcur;
        int r = cu_heads_gemm(jb, rows, width, jb->b.h1, width, &mlp->w[1], 0, jb->b.h2, width,
                              false);
        if (r < 0)
                return r;
        cu_hk a = {};
        a.kind = CU_HK_DOT;
        a.np = np, a.kc = jb->kcur, a.width = width;
        a.x = jb->b.h2, a.b = (const float *) mlp->b[1].data;
        a.w = mlp->w[2].data, a.wdtype = mlp->w[2].dtype;
        a.wb = (const float *) mlp->b[2].data;
        a.y = y, a.mt = mt, a.mj = mj, a.h = h, a.nonfinite = nonfinite;
        return cu_hk_go(jb, &a);
}

/* From h1: hidden layer, last layer [256] and its running max into keys. */
static int cu_heads_maxed(const cu_heads_job *jb, const p3_mlp3 *mlp, int64_t np,
                          int32_t *keys) {
        int64_t rows = np * jb->kcur;
        float *h1 = jb->b.h1, *h2 = jb->b.h2;
        int r = cu_heads_gemm(jb, rows, CU_G, h1, CU_G, &mlp->w[1], 0, h2, CU_G, false);
        cu_hk a = {};
        a.np = np, a.kc = jb->kcur, a.width = CU_G;
        a.kind = CU_HK_BIAS_GELU;
        a.y = h2, a.b = (const float *) mlp->b[1].data;
        if (r >= 0)
                r = cu_hk_go(jb, &a);
        if (r >= 0)
                r = cu_heads_gemm(jb, rows, CU_G, h2, CU_G, &mlp->w[2], 0, h1, CU_G, false);
        a.kind = CU_HK_BIAS_MAX;
        a.x = h1, a.b = (const float *) mlp->b[2].data, a.keys = keys, a.y = NULL;
        if (r >= 0)
                r = cu_hk_go(jb, &a);
        return r;
}

/* Per-chunk kernels on [kc][width] data. */
static int cu_heads_small(const cu_heads_job *jb, int kind, int64_t width, const float *x,
                          const float *b, int32_t *keys, float *y) {
        cu_hk a = {};
        a.kind = kind;
        a.np = 1, a.kc = jb->kcur, a.width = width; /* BIAS_GELU: kc rows */
        a.x = x, a.b = b, a.keys = keys, a.y = y;
        return cu_hk_go(jb, &a);
}

/* y[j][c] = the 3 columns of `slice` times the chunk's prompts. */
static int cu_heads_prompts(const cu_heads_job *jb, int slice, int64_t width, float *y) {
        cu_hk a = {};
        a.kind = CU_HK_PROMPT;
        a.kc = jb->kcur, a.width = width;
        a.wm = jb->b.cols + cu_col_offset(slice), a.q = jb->b.q + 3 * jb->j0;
        a.y = y;
        return cu_hk_go(jb, &a);
}

static int cu_heads_pass1_tile(const cu_heads_job *jb, int64_t p0, int64_t np) {
        const p3_heads_params *hp = jb->hp;
        const cu_heads_bufs *b = &jb->b;
        int64_t kc = jb->kcur, n = jb->in->n;
        float *m1 = b->m1 + p0 * 3; /* pair (t, j) at m1[(t + j·n)·3] */
        int r = cu_heads_gather(jb, p0, np);
        for (int h = 0; h < 3 && r >= 0; h++) {
                r = cu_heads_layer1(jb, &hp->seg[h], 0, b->bq_seg + h * kc * CU_FEAT, NULL,
                                    NULL, 0, 0, np);
                if (r >= 0)
                        r = cu_heads_logit(jb, &hp->seg[h], np, m1, 1, n, h, NULL);
        }
        const float *wm = b->cols + cu_col_offset(CU_COL_S2G_M);
        if (r >= 0)
                r = cu_heads_layer1(jb, &hp->s2g, 0, b->bq_g, wm, m1, 1, n, np);
        if (r >= 0)
                r = cu_heads_maxed(jb, &hp->s2g, np, b->gkeys);
        return r;
}

static int cu_heads_pass2_tile(const cu_heads_job *jb, int64_t p0, int64_t np) {
        const p3_heads_params *hp = jb->hp;
        const cu_heads_bufs *b = &jb->b;
        int64_t kc = jb->kcur, n = jb->in->n;
        int r = cu_heads_gather(jb, p0, np);
        for (int h = 0; h < 3 && r >= 0; h++) {
                const float *wm = b->cols + cu_col_offset(CU_COL_S2_M + h);
                r = cu_heads_layer1(jb, &hp->s2[h], CU_S2_FP, b->c_s2 + h * kc * CU_G, wm,
                                    b->m1 + p0 * 3, 1, n, np);
                if (r >= 0)
                        r = cu_heads_logit(jb, &hp->s2[h], np, b->s, kc, 1, h, b->nonfinite);
        }
        cu_hk a = {};
        a.np = np, a.kc = kc, a.n = n, a.p0 = p0, a.nb = (n + 7) / 8;
        a.x = b->s;
        if (r >= 0 && b->s2) {
                a.kind = CU_HK_S2, a.y = b->s2;
                r = cu_hk_go(jb, &a);
        }
        if (r >= 0 && b->bits) {
                a.kind = CU_HK_BITS, a.bits = b->bits;
                r = cu_hk_go(jb, &a);
        }
        const float *wm = b->cols + cu_col_offset(CU_COL_IOU_M);
        if (r >= 0)
                r = cu_heads_layer1(jb, &hp->iou, CU_S2_FP, b->c_iou, wm, b->s, kc, 1, np);
        if (r >= 0)
                r = cu_heads_maxed(jb, &hp->iou, np, b->ikeys);
        return r;
}

static int cu_heads_pass(const cu_heads_job *jb, int pass) {
        int64_t n = jb->in->n;
        int r = 0;
        for (int64_t p0 = 0; p0 < n && r >= 0; p0 += jb->tile) {
                int64_t np = n - p0 < jb->tile ? n - p0 : jb->tile;
                r = pass == 1 ? cu_heads_pass1_tile(jb, p0, np) : cu_heads_pass2_tile(jb, p0, np);
        }
        return r;
}

/* Per-prompt parts of the stage-2 and IoU first layers, once g is known. */
static int cu_heads_stage2_prompts(const cu_heads_job *jb) {
        const p3_heads_params *hp = jb->hp;
        const cu_heads_bufs *b = &jb->b;
        int64_t kc = jb->kcur;
        int r = 0;
        for (int h = 0; h < 4 && r >= 0; h++) {
                const p3_tensor *w = h < 3 ? &hp->s2[h].w[0] : &hp->iou.w[0];
                float *c = h < 3 ? b->c_s2 + h * kc * CU_G : b->c_iou;
                r = cu_heads_prompts(jb, h < 3 ? CU_COL_S2_Q + h : CU_COL_IOU_Q, CU_G, c);
                if (r >= 0)
                        r = cu_heads_gemm(jb, kc, CU_G, b->gmax, CU_G, w, 0, c, CU_G, true);
        }
        return r;
}

/* iou_mlp_out on the [kc, 256] maxima, then sigmoid. */
static int cu_heads_iou(const cu_heads_job *jb) {
        const p3_mlp3 *m = &jb->hp->iou_out;
        const cu_heads_bufs *b = &jb->b;
        int64_t kc = jb->kcur;
        const float *b0 = (const float *) m->b[0].data, *b1 = (const float *) m->b[1].data;
        int r = cu_heads_gemm(jb, kc, CU_G, b->imax, CU_G, &m->w[0], 0, b->o1, CU_G, false);
        if (r >= 0)
                r = cu_heads_small(jb, CU_HK_BIAS_GELU, CU_G, NULL, b0, NULL, b->o1);
        if (r >= 0)
                r = cu_heads_gemm(jb, kc, CU_G, b->o1, CU_G, &m->w[1], 0, b->o2, CU_G, false);
        if (r >= 0)
                r = cu_heads_small(jb, CU_HK_BIAS_GELU, CU_G, NULL, b1, NULL, b->o2);
        if (r >= 0)
                r = cu_heads_gemm(jb, kc, CU_G, b->o2, CU_G, &m->w[2], 0, b->o3, 3, false);
        if (r >= 0)
                r = cu_heads_small(jb, CU_HK_SIGMOID, 3, b->o3, (const float *) m->b[2].data,
                                   NULL, b->iou);
        return r;
}

/* The chunk's outputs into the caller's [3][k][…] and [k][…] host arrays. */
static int cu_heads_download(const cu_heads_job *jb) {
        const cu_heads_exec *ex = jb->ex;
        const cu_heads_bufs *b = &jb->b;
        p3_heads_output *out = jb->out;
        int64_t kc = jb->kcur, j0 = jb->j0, k = jb->in->k, n = jb->in->n, nb = (n + 7) / 8;
        int r = 0;
        if (out->global)
                r = ex->download(ex->ctx, out->global + j0 * CU_G, b->gmax,
                                 sizeof(float) * kc * CU_G);
        if (r >= 0 && out->iou_feat)
                r = ex->download(ex->ctx, out->iou_feat + j0 * CU_G, b->imax,
                                 sizeof(float) * kc * CU_G);
        if (r >= 0 && out->iou)
                r = ex->download(ex->ctx, out->iou + j0 * 3, b->iou, sizeof(float) * kc * 3);
        for (int64_t h = 0; h < 3 && r >= 0; h++) {
                int64_t dst = h * k + j0, src = h * kc; /* first row of the chunk's block */
                if (out->s1_logit)
                        r = ex->download(ex->ctx, out->s1_logit + dst * n, b->s1 + src * n,
                                         sizeof(float) * kc * n);
                if (r >= 0 && out->s2_logit)
                        r = ex->download(ex->ctx, out->s2_logit + dst * n, b->s2 + src * n,
                                         sizeof(float) * kc * n);
                if (r >= 0 && out->mask_bits)
                        r = ex->download(ex->ctx, out->mask_bits + dst * nb, b->bits + src * nb,
                                         (size_t) (kc * nb));
        }
        return r;
}

static int cu_heads_chunk(cu_heads_job *jb) {
        const cu_heads_bufs *b = &jb->b;
        int64_t kc = jb->kcur;
        int r = 0;
        for (int h = 0; h < 3 && r >= 0; h++)
                r = cu_heads_prompts(jb, CU_COL_SEG_Q + h, CU_FEAT, b->bq_seg + h * kc * CU_FEAT);
        if (r >= 0)
                r = cu_heads_prompts(jb, CU_COL_S2G_Q, CU_G, b->bq_g);
        if (r >= 0)
                r = cu_heads_small(jb, CU_HK_MAX_INIT, CU_G, NULL, NULL, b->gkeys, NULL);
        if (r >= 0)
                r = cu_heads_pass(jb, 1);
        if (r >= 0)
                r = cu_heads_small(jb, CU_HK_KEYS_TO_F, CU_G, NULL, NULL, b->gkeys, b->gmax);
        if (r >= 0 && b->s1) {
                cu_hk a = {};
                a.kind = CU_HK_S1, a.kc = kc, a.n = jb->in->n, a.m = b->m1, a.y = b->s1;
                r = cu_hk_go(jb, &a);
        }
        if (r >= 0)
                r = cu_heads_stage2_prompts(jb);
        if (r >= 0)
                r = cu_heads_small(jb, CU_HK_MAX_INIT, CU_G, NULL, NULL, b->ikeys, NULL);
        if (r >= 0)
                r = cu_heads_pass(jb, 2);
        if (r >= 0)
                r = cu_heads_small(jb, CU_HK_KEYS_TO_F, CU_G, NULL, NULL, b->ikeys, b->imax);
        if (r >= 0 && jb->out->iou)
                r = cu_heads_iou(jb);
        if (r >= 0)
                r = cu_heads_download(jb);
        return r;
}

/* The 3-column slices of every first layer, as FP32. */
static int cu_heads_columns(const cu_heads_job *jb) {
        const p3_heads_params *hp = jb->hp;
        struct {
                const p3_tensor *w;
                int64_t col;
        } sl[CU_COL_COUNT];
        for (int h = 0; h < 3; h++) {
                sl[CU_COL_SEG_Q + h] = { &hp->seg[h].w[0], CU_SEG_Q };
                sl[CU_COL_S2_Q + h] = { &hp->s2[h].w[0], CU_S2_Q };
                sl[CU_COL_S2_M + h] = { &hp->s2[h].w[0], CU_S2_M };
        }
        sl[CU_COL_S2G_Q] = { &hp->s2g.w[0], CU_S2G_Q };
        sl[CU_COL_S2G_M] = { &hp->s2g.w[0], CU_S2G_M };
        sl[CU_COL_IOU_Q] = { &hp->iou.w[0], CU_S2_Q };
        sl[CU_COL_IOU_M] = { &hp->iou.w[0], CU_S2_M };
        int r = 0;
        for (int i = 0; i < CU_COL_COUNT && r >= 0; i++) {
                cu_hk a = {};
                a.kind = CU_HK_COLS;
                a.width = sl[i].w->rows;
                a.w = sl[i].w->data, a.wdtype = sl[i].w->dtype, a.ld_w = p3_ld(sl[i].w);
                a.col_w = sl[i].col;
                a.y = jb->b.cols + cu_col_offset(i);
                r = cu_hk_go(jb, &a);
        }
        return r;
}

static bool cu_mat_is(const p3_tensor *t, int64_t rows, int64_t cols) {
        return t->data && t->rows == rows && t->cols == cols;
}

static bool cu_vec_is(const p3_tensor *t, int64_t n) {
        return t->data && t->dtype == P3_F32 && t->rows * t->cols == n && p3_ld(t) == t->cols;
}

static bool cu_mlp_is(const p3_mlp3 *m, int64_t in, int64_t hid, int64_t out) {
        return cu_mat_is(&m->w[0], hid, in) && cu_mat_is(&m->w[1], hid, hid) &&
               cu_mat_is(&m->w[2], out, hid) && cu_vec_is(&m->b[0], hid) &&
               cu_vec_is(&m->b[1], hid) && cu_vec_is(&m->b[2], out) &&
               (out > 1 || p3_ld(&m->w[2]) == hid); /* a width-1 layer is read as a vector */
}

static int cu_heads_check(const p3_heads_params *hp, const p3_heads_input *in) {
        for (int h = 0; h < 3; h++)
                if (!cu_mlp_is(&hp->seg[h], CU_FP + 3, CU_FEAT, 1) ||
                    !cu_mlp_is(&hp->s2[h], CU_G + CU_FP + 6, CU_G, 1))
                        return -EINVAL;
        if (!cu_mlp_is(&hp->s2g, CU_FP + 6, CU_G, CU_G) ||
            !cu_mlp_is(&hp->iou, CU_G + CU_FP + 6, CU_G, CU_G) ||
            !cu_mlp_is(&hp->iou_out, CU_G, CU_G, 3))
                return -EINVAL;
        if (in->feat->cols != CU_FEAT || in->feat->dtype != P3_F32 || in->points->cols != 3 ||
            in->points->dtype != P3_F32 || in->points->rows < in->n || in->k <= 0 || in->n <= 0 ||
            !in->prompts || !in->inverse)
                return -EINVAL;
        return 0;
}

/* The heads op through ex (see the top of this file). */
static int cu_heads_run(const cu_heads_exec *ex, const p3_heads_params *hp,
                        const p3_heads_input *in, p3_heads_output *out,
                        const cu_heads_cfg *cfg) {
        int r = cu_heads_check(hp, in);
        if (r < 0)
                return r;
        cu_heads_job jb = {};
        jb.ex = ex, jb.hp = hp, jb.in = in, jb.out = out;
        cu_heads_plan(&jb, cfg);
        size_t bytes = cu_heads_layout(&jb, 0);
        void *base = NULL;
        r = ex->alloc(ex->ctx, bytes, &base);
        if (r < 0)
                return r;
        cu_heads_layout(&jb, (uintptr_t) base);
        const int32_t zero = 0;
        int32_t nonfinite = 0;
        r = ex->upload(ex->ctx, jb.b.q, in->prompts, sizeof(float) * 3 * (size_t) in->k);
        if (r >= 0)
                r = ex->upload(ex->ctx, jb.b.nonfinite, &zero, sizeof(zero));
        if (r >= 0)
                r = cu_heads_columns(&jb);
        for (jb.j0 = 0; jb.j0 < in->k && r >= 0; jb.j0 += jb.kc) {
                jb.kcur = in->k - jb.j0 < jb.kc ? in->k - jb.j0 : jb.kc;
                r = cu_heads_chunk(&jb);
        }
        if (r >= 0)
                r = ex->download(ex->ctx, &nonfinite, jb.b.nonfinite, sizeof(nonfinite));
        /* the downloads land before the scratch goes, and before the caller reads them */
        int rs = ex->sync(ex->ctx);
        ex->free(ex->ctx, base, bytes);
        if (r >= 0 && rs >= 0 && nonfinite)
                return -ERANGE; /* a logit was NaN or ±Inf: no mask is to be trusted */
        return r < 0 ? r : rs;
}
