/* SPDX-License-Identifier: MIT */
/* The CPU backend's matrix products, through oneDNN's matmul primitive: FP32 (its AVX-512 or
 * AVX2 kernels, faster here than OpenBLAS and without its CPU misdetection) and BF16
 * (AMX-BF16 or AVX512-BF16 kernels where the CPU has them).
 *
 * Threading: a call computes on the calling thread only, like cpu_sgemm_nt, whether or not it
 * is made inside an OpenMP parallel region (oneDNN would otherwise use every thread outside
 * one). Callers split rows over OpenMP threads and make one call per block from inside the
 * parallel region; calls may run concurrently from any threads. Results depend only on the
 * arguments, never on the thread count.
 *
 * Dense operands (lda = k, ldb = k, ldc = n) reach oneDNN 2.6's brgemm kernels; strided ones
 * its gemm:jit (AMX or AVX512-BF16 kernels as well; the same speed here on AVX512-BF16). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Create the engine once: 0; -EIO when it fails. Optional: the other functions call it
 * themselves. */
int cpu_dnnl_init(void);

/* C[m,n] (FP32, row stride ldc) = A[m,k] (BF16, row stride lda) · B[n,k]ᵀ (BF16, row-major
 * [n,k], row stride ldb: PyTorch's Linear weight), plus the old C when accumulate. Products of
 * BF16 values are exact in FP32, sums are FP32 (BF16 denormal inputs count as zero: the BF16
 * dot-product instructions flush them).
 * Returns 0; -EINVAL for strides shorter than a row; -ENOTSUP when oneDNN
 * has no BF16 matmul for this CPU (it needs AVX-512; on AVX-512 without BF16 it converts in
 * software); -ENOMEM; -EIO when oneDNN fails otherwise. m or n = 0 does nothing; k = 0 clears
 * C (keeps it when accumulating). */
int cpu_dnnl_gemm_bf16_nt(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda,
                          const uint16_t *b, int64_t ldb, float *c, int64_t ldc, bool accumulate);

/* C[m,n] (ldc) = alpha · A[m,k] (lda) · B (+ the old C when accumulate), all FP32, where B is
 * [n,k] used transposed when b_nk (a Linear weight) and [k,n] otherwise, row stride ldb.
 * Returns 0, -EINVAL for strides shorter than a row, -ENOMEM, or -EIO. */
int cpu_dnnl_sgemm(bool b_nk, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc,
                   bool accumulate);

/* What computes the products, for the device string: "oneDNN", or "plain loops" in a build
 * without it. */
const char *cpu_gemm_library(void);

/* The implementation oneDNN picks for a 1024×512×512 product of this kind, e.g.
 * "brg:avx512_core_amx_bf16" (for a device string); NULL when there is none. */
const char *cpu_dnnl_isa(void);
