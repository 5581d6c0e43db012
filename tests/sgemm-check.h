/* SPDX-License-Identifier: MIT */
/* One FP32 product against a double-precision sum, for any function with cpu_dnnl_sgemm's
 * contract (oneDNN's, the plain loops'): B as [n,k] or [k,n], alpha, accumulation, strides.
 * Shared by test-cpu-ops (the backend's product) and test-gemm-plain (the loops alone). */
#pragma once

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

typedef int (*sgemm_fn)(bool b_nk, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                        int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc,
                        bool accumulate);

/* The worst |error| / bound over C, the bound (k + 2)·2⁻²⁴·(|alpha|·Σ|a·b| + |c₀|) that any
 * order of FP32 summation keeps; -1 when fn failed, changed C's padding or ran out of memory.
 * A is [m, k + pad], B [n or k, k or n + pad], C [m, n + pad], all filled with fixed values. */
static inline double sgemm_check(sgemm_fn fn, bool b_nk, int64_t m, int64_t n, int64_t k,
                                 int64_t pad, float alpha, bool acc) {
        int64_t lda = k + pad, ldb = (b_nk ? k : n) + pad, ldc = n + pad;
        int64_t brows = b_nk ? n : k;
        float *a = malloc(sizeof(float) * (size_t) (m * lda + 1));
        float *b = malloc(sizeof(float) * (size_t) (brows * ldb + 1));
        float *c = malloc(sizeof(float) * (size_t) (m * ldc + 1));
        double worst = -1;
        if (!a || !b || !c)
                goto out;
        for (int64_t i = 0; i < m * lda; i++)
                a[i] = (float) ((i * 7919) % 2001 - 1000) * 1e-3f;
        for (int64_t i = 0; i < brows * ldb; i++)
                b[i] = (float) ((i * 104729) % 2001 - 1000) * 1e-3f;
        for (int64_t i = 0; i < m * ldc; i++)
                c[i] = (float) (i % 7) - 3.0f;
        if (fn(b_nk, m, n, k, alpha, a, lda, b, ldb, c, ldc, acc) != 0)
                goto out;
        worst = 0;
        for (int64_t i = 0; i < m; i++) {
                for (int64_t j = 0; j < n; j++) {
                        double sum = 0, mag = 0;
                        for (int64_t p = 0; p < k; p++) {
                                double bv = b_nk ? b[j * ldb + p] : b[p * ldb + j];
                                sum += (double) a[i * lda + p] * bv;
                                mag += fabs((double) a[i * lda + p] * bv);
                        }
                        double old = (double) ((i * ldc + j) % 7) - 3.0;
                        double want = alpha * sum + (acc ? old : 0);
                        double bound = (double) (k + 2) * 0x1p-24 *
                                               (fabs(alpha) * mag + fabs(old)) +
                                       FLT_MIN;
                        worst = fmax(worst, fabs(c[i * ldc + j] - want) / bound);
                }
                for (int64_t j = n; j < ldc; j++)
                        if (c[i * ldc + j] != (float) ((i * ldc + j) % 7) - 3.0f)
                                worst = -1;
                if (worst < 0)
                        break;
        }
out:
        free(a), free(b), free(c);
        return worst;
}
