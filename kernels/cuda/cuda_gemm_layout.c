/* SPDX-License-Identifier: MIT */
/* Row-major products as cuBLAS's column-major calls (see cuda_gemm_layout.h). */
#include <errno.h>
#include <limits.h>

#include "cuda_gemm_layout.h"

/* A row stride for rows of `row` elements: at least the row, at least 1 for cuBLAS (which
 * wants ld >= max(1, rows) even when nothing is read), and an int. */
static int leading_dim(int64_t ld, int64_t row, int *ret) {
        if (ld < row)
                return -EINVAL;
        if (ld > INT_MAX)
                return -EOVERFLOW;
        *ret = ld < 1 ? 1 : (int) ld;
        return 0;
}

int p3_gemm_layout_rowmajor(bool b_nk, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                            int64_t ldc, p3_gemm_layout *ret) {
        if (!ret || m < 0 || n < 0 || k < 0)
                return -EINVAL;
        p3_gemm_layout l = {
                /* Column-major, our B [n,k] is Bᵀ; cuBLAS's first operand must be op(B)ᵀ
                 * [n,k] column-major, so it transposes it back. Our B [k,n] is already the
                 * [n,k] column-major matrix it needs. Our A [m,k] is Aᵀ [k,m]: as is. */
                .transa = b_nk ? P3_GEMM_T : P3_GEMM_N,
                .transb = P3_GEMM_N,
                .first = P3_GEMM_OPERAND_B,
                .second = P3_GEMM_OPERAND_A,
        };
        int r = leading_dim(lda, k, &l.ldb);
        if (r >= 0)
                r = leading_dim(ldb, b_nk ? k : n, &l.lda);
        if (r >= 0)
                r = leading_dim(ldc, n, &l.ldc);
        if (r < 0)
                return r;
        /* n <= ldc and k <= lda fit already; m is bounded by nothing else. */
        if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
                return -EOVERFLOW;
        l.m = (int) n;
        l.n = (int) m;
        l.k = (int) k;
        *ret = l;
        return 0;
}
