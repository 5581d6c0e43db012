/* SPDX-License-Identifier: MIT */
/* Linear layers on the CPU: single-threaded CBLAS sgemm per row block, blocks spread over
 * OpenMP threads (the split depends only on the row count, so results do not depend on the
 * number of threads), and an exact-erf GELU that vectorizes. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_math.h"
#include "cpu_ops.h"
#include "macro.h"

#define ROW_BLOCK 256

float cpu_gelu1(float x) {
        return gelu(x);
}

P3_VECTOR_CLONES void cpu_gelu_inplace(float *x,
                                                                                   int64_t n) {
        for (int64_t i = 0; i < n; i++)
                x[i] = gelu(x[i]);
}

void cpu_sgemm_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                  int64_t ldb, float *c, int64_t ldc, bool accumulate) {
        if (m <= 0 || n <= 0)
                return;
        if (k <= 0) {
                if (!accumulate)
                        for (int64_t i = 0; i < m; i++)
                                memset(c + i * ldc, 0, sizeof(float) * n);
                return;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) m, (int) n, (int) k, 1.0f, a,
                    (int) lda, b, (int) ldb, accumulate ? 1.0f : 0.0f, c, (int) ldc);
}

/* y = x·Wᵀ + b, then GELU; with P3_ACCUMULATE the result is added to y (the branch is
 * activated before it joins the residual). */
static void linear_block(const p3_tensor *x, const p3_tensor *w, const p3_tensor *b,
                         p3_tensor *y, int64_t r0, int64_t nr, unsigned flags, float *tmp) {
        bool acc = flags & P3_ACCUMULATE;
        /* Accumulating with an activation needs the pre-activation on its own. */
        bool separate = acc && (flags & P3_GELU);
        float *dst = separate ? tmp : cpu_row(y, r0);
        int64_t ld = separate ? y->cols : p3_ld(y);
        cpu_sgemm_nt(nr, w->rows, w->cols, cpu_row(x, r0), p3_ld(x), w->data, p3_ld(w), dst, ld,
                     acc && !separate);
        for (int64_t i = 0; i < nr; i++) {
                float *row = dst + i * ld;
                if (b)
                        for (int64_t j = 0; j < y->cols; j++)
                                row[j] += ((const float *) b->data)[j];
                if (flags & P3_GELU)
                        cpu_gelu_inplace(row, y->cols);
                if (separate) {
                        float *yr = cpu_row(y, r0 + i);
                        for (int64_t j = 0; j < y->cols; j++)
                                yr[j] += row[j];
                }
        }
}

int cpu_linear(p3_backend *be, const p3_tensor *x, const p3_tensor *w, const p3_tensor *b,
               p3_tensor *y, unsigned flags) {
        if (x->cols != w->cols || y->cols != w->rows || y->rows != x->rows)
                return -EINVAL;
        int64_t nblocks = DIV_ROUND_UP(x->rows, ROW_BLOCK);
        bool separate = (flags & P3_ACCUMULATE) && (flags & P3_GELU);
        int err = 0;
#pragma omp parallel num_threads(be->threads)
        {
                float *tmp = separate ? malloc(sizeof(float) * ROW_BLOCK * y->cols) : NULL;
                if (separate && !tmp) {
#pragma omp atomic write
                        err = -ENOMEM;
                }
#pragma omp for schedule(dynamic, 1)
                for (int64_t blk = 0; blk < nblocks; blk++) {
                        if (separate && !tmp)
                                continue;
                        int64_t r0 = blk * ROW_BLOCK;
                        linear_block(x, w, b, y, r0, MIN(ROW_BLOCK, x->rows - r0), flags, tmp);
                }
                free(tmp);
        }
        return err;
}
