/* SPDX-License-Identifier: MIT */
/* A row-major matrix product as the column-major call cuBLAS takes. Pure C, no CUDA headers:
 * it is built into the kernels library everywhere, so its test runs on machines without nvcc.
 *
 * The trick: a row-major matrix X[r,c] with row stride ld is, read column-major, Xᵀ [c,r] with
 * leading dimension ld. So row-major C = A·op(B) is column-major Cᵀ = op(B)ᵀ·Aᵀ: cuBLAS's
 * first operand is B, its second is A (untransposed), its C is ours, and its m and n are our
 * n and m. Nothing is copied or transposed. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cuBLAS's cublasOperation_t, without its header: N = CUBLAS_OP_N, T = CUBLAS_OP_T. */
typedef enum p3_gemm_op {
        P3_GEMM_N,
        P3_GEMM_T,
} p3_gemm_op;

/* Which of our row-major operands cuBLAS takes as its A or B. */
typedef enum p3_gemm_operand {
        P3_GEMM_OPERAND_A,
        P3_GEMM_OPERAND_B,
} p3_gemm_operand;

/* The arguments of cublasGemmEx(handle, transa, transb, m, n, k, alpha, first, lda,
 * second, ldb, beta, c, ldc): column-major, sizes and strides as cuBLAS counts them. */
typedef struct p3_gemm_layout {
        p3_gemm_op transa, transb;
        int m, n, k;
        p3_gemm_operand first, second; /* what goes in cuBLAS's A and B slots */
        int lda, ldb, ldc;
} p3_gemm_layout;

/* C[m,n] (row stride ldc) = A[m,k] (row stride lda) · op(B), all row-major, where B is stored
 * [n,k] and used transposed when b_nk (a PyTorch Linear weight, "NT"; a column slice of a wider
 * weight has ldb > k), or stored [k,n] and used as is ("NN"); ldb is B's row stride.
 * Fills *ret with the cuBLAS call computing it. Strides of 0 are allowed only for rows of
 * length 0 (cuBLAS gets 1 then). Returns 0; -EINVAL for a negative size or a stride shorter
 * than its row; -EOVERFLOW when a size or stride does not fit cuBLAS's int. */
int p3_gemm_layout_rowmajor(bool b_nk, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                            int64_t ldc, p3_gemm_layout *ret);

#ifdef __cplusplus
}
#endif
