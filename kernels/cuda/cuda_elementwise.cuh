/* SPDX-License-Identifier: MIT */
/* Element and row arithmetic of the CUDA kernels, written once as __host__ __device__ functions
 * so that host-compiled tests (tests/cuda) check them against the CPU twins without a GPU. */
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Exact-erf GELU, x/2 · erfc(-x/√2): erfc keeps relative accuracy for negative x, where
 * 1 + erf(x/√2) would cancel (the CPU twin, cpu_math.h's gelu, does the same). */
__host__ __device__ static inline float cu_gelu(float x) {
        return 0.5f * x * erfcf(-x * 0.70710678118654752f);
}

/* FP32 → FP16 / BF16 bits, round to nearest even (what cuBLAS's inputs get). */
__host__ __device__ static inline uint16_t cu_to_half_bits(float x) {
        return __half_as_ushort(__float2half_rn(x));
}

__host__ __device__ static inline uint16_t cu_to_bf16_bits(float x) {
        return __bfloat16_as_ushort(__float2bfloat16_rn(x));
}

/* ---- LayerNorm row statistics ---------------------------------------------------------------
 * The CPU twin (cpu_norm.c, layernorm_row) takes a two-pass mean and biased variance in double.
 * A GPU row is split over threads, so each keeps a Welford partial (count, mean, M2) of its
 * strided share and the partials merge pairwise (Chan et al.): FP32 throughout, no
 * sum-of-squares cancellation, and any split merges to the same statistics up to rounding.
 * The values are shifted by one of the row's own (its first) before they are pushed: an FP32
 * mean of rows whose spread is small next to their mean would be off by ulp(mean), i.e.
 * ulp(mean)/std in every output (the CPU avoids that in double); the shifted mean is of the
 * size of the spread, and x - shift is exact for such rows (Sterbenz).
 * Every multiply-add is an explicit fmaf, so host and device (which would contract a*b+c on
 * its own) compute the same bits; division and sqrtf are IEEE on both (no fast math). */
typedef struct cu_stats {
        float n;        /* count: exact in FP32 up to 2^24 (callers bound the row length) */
        float mean;     /* of the pushed (shifted) values */
        float m2;       /* Σ (x - mean)² */
} cu_stats;

#define CU_LN_EPS 1e-5f

__host__ __device__ static inline cu_stats cu_stats_push(cu_stats s, float x) {
        s.n += 1.0f;
        float d = x - s.mean;
        s.mean += d / s.n;
        s.m2 = fmaf(d, x - s.mean, s.m2);
        return s;
}

/* The statistics of the union of two disjoint parts. */
__host__ __device__ static inline cu_stats cu_stats_merge(cu_stats a, cu_stats b) {
        if (b.n == 0.0f)
                return a;
        if (a.n == 0.0f)
                return b;
        cu_stats r;
        r.n = a.n + b.n;
        float d = b.mean - a.mean;
        float wb = b.n / r.n;
        r.mean = fmaf(d, wb, a.mean);
        r.m2 = fmaf(d * d, a.n * wb, a.m2 + b.m2);
        return r;
}

/* Merges p[0..n) into p[0] in the order of a warp's __shfl_down_sync tree (offsets n/2, …, 1;
 * n a power of two): the kernel's order, for host tests. Clobbers p. */
__host__ __device__ static inline cu_stats cu_stats_tree(cu_stats *p, int n) {
        for (int off = n / 2; off > 0; off /= 2)
                for (int l = 0; l < off; l++)
                        p[l] = cu_stats_merge(p[l], p[l + off]);
        return p[0];
}

/* Mean (of the shifted values) and 1/√(var + eps) from a row's merged statistics (biased
 * variance, as PyTorch). */
__host__ __device__ static inline void cu_ln_finish(cu_stats s, float *mean, float *inv) {
        float var = s.n > 0.0f ? s.m2 / s.n : 0.0f;
        *mean = s.mean;
        *inv = 1.0f / sqrtf(fmaxf(var, 0.0f) + CU_LN_EPS);
}

/* One output element: (((x - shift) - mean)·inv)·g + b, then GELU, then added to the old y
 * when accumulating (the order of cpu_norm.c). */
__host__ __device__ static inline float cu_ln_out(float x, float shift, float mean, float inv,
                                                  float g, float b, bool gelu, bool accumulate,
                                                  float old) {
        float t = fmaf(((x - shift) - mean) * inv, g, b);
        if (gelu)
                t = cu_gelu(t);
        return accumulate ? old + t : t;
}

/* ---- order-preserving float ↔ uint32 (atomic float max) --------------------------------------
 * Flip every bit of a negative float and only the sign bit of a positive one: unsigned order of
 * the keys is the numeric order of the floats, -inf < … < -0 < +0 < … < +inf (−0 just below +0,
 * each NaN beyond the infinity of its sign). So atomicMax on keys is a float max. */
__host__ __device__ static inline uint32_t cu_f32_key(float f) {
        uint32_t u;
        memcpy(&u, &f, sizeof(u));
        return u ^ ((u & 0x80000000u) ? 0xffffffffu : 0x80000000u);
}

__host__ __device__ static inline float cu_f32_from_key(uint32_t k) {
        uint32_t u = k ^ ((k & 0x80000000u) ? 0x80000000u : 0xffffffffu);
        float f;
        memcpy(&f, &u, sizeof(f));
        return f;
}

/* The key of -inf: what segment_max starts every output at. */
#define CU_F32_KEY_NEG_INF 0x007fffffu
