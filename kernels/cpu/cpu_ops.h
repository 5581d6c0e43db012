/* SPDX-License-Identifier: MIT */
/* The CPU backend's ops (FP32 or BF16 matrix products on oneDNN, OpenMP threads). Private to
 * kernels/cpu. */
#pragma once

#include "backend.h"

/* Hot elementwise loops are compiled for AVX-512, AVX2 and baseline x86-64, picked at load
 * time (GCC's function multiversioning; other compilers build the baseline only). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define P3_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define P3_VECTOR_CLONES
#endif

/* Exact-erf GELU, written so that the compiler vectorizes it: relative error below 1e-6 for
 * x >= -2.5, growing as x²·2⁻²³ further out (the float rounding of x²/2 inside exp), where
 * the absolute error stays below 1e-11. */
void cpu_gelu_inplace(float *x, int64_t n);
float cpu_gelu1(float x);

/* C[m,n] (ldc) = A[m,k] (lda) · B[n,k]ᵀ (ldb) (+ C when accumulate), FP32: one
 * single-threaded product (cpu_dnnl_sgemm); callers split rows across threads themselves.
 * 0 or a negative errno. */
int cpu_sgemm_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                 int64_t ldb, float *c, int64_t ldc, bool accumulate);

/* C[m, w.rows] (ldc) = A[m,k] (lda) · W[:, col:col+k]ᵀ (+ C when accumulate), in the weight's
 * storage type: FP32 weights through sgemm; BF16 weights with A rounded to BF16 and FP32
 * accumulation (oneDNN). Single-threaded, like cpu_sgemm_nt. */
int cpu_gemm_w(int64_t m, int64_t k, const float *a, int64_t lda, const p3_tensor *w, int64_t col,
               float *c, int64_t ldc, bool accumulate);
/* One weight element as FP32, whatever its storage. */
float cpu_weight_at(const p3_tensor *w, int64_t r, int64_t c);

int cpu_linear(p3_backend *be, const p3_tensor *x, const p3_tensor *w, const p3_tensor *b,
               p3_tensor *y, unsigned flags);
int cpu_layernorm(p3_backend *be, const p3_tensor *x, const p3_tensor *g, const p3_tensor *b,
                  p3_tensor *y, unsigned flags);
int cpu_gelu(p3_backend *be, p3_tensor *x);
int cpu_add(p3_backend *be, const p3_tensor *x, p3_tensor *y);
int cpu_subm_conv(p3_backend *be, const p3_tensor *x, const int32_t *nbr, const p3_tensor *w,
                  const p3_tensor *b, p3_tensor *y);
int cpu_attention(p3_backend *be, const p3_tensor *qkv, const int32_t *slot_point, int64_t n_pad,
                  int64_t window, int heads, p3_tensor *out);
int cpu_gather_rows(p3_backend *be, const p3_tensor *x, const int32_t *idx, p3_tensor *y,
                    int64_t col0);
int cpu_gather_add(p3_backend *be, const p3_tensor *x, const int32_t *idx, p3_tensor *y);
int cpu_segment_max(p3_backend *be, const p3_tensor *x, const int32_t *cluster, p3_tensor *y);
int cpu_to_host_f32(p3_backend *be, const p3_tensor *x, float *host);
int cpu_heads(p3_backend *be, const p3_heads_params *hp, const p3_heads_input *in,
              p3_heads_output *out);
int cpu_check_finite(p3_backend *be, const p3_tensor *x);

static inline float *cpu_row(const p3_tensor *t, int64_t i) {
        return (float *) t->data + i * p3_ld(t);
}
