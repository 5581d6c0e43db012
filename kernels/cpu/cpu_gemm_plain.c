/* SPDX-License-Identifier: MIT */
/* cpu_dnnl.h's products without oneDNN: plain loops, for builds that must not depend on it (the
 * engine-only build the GPU check carries to a machine without Debian's libraries, where the
 * CPU only serves as the reference for a few small comparisons). FP32 only: BF16 answers
 * -ENOTSUP, and cpu_dnnl_isa() NULL, so AUTO picks FP32. Slow (no blocking beyond keeping
 * the inner loop contiguous) but exact in the same sense as any FP32 GEMM. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_dnnl.h"

int cpu_dnnl_init(void) {
        return 0;
}

const char *cpu_gemm_library(void) {
        return "plain loops";
}

const char *cpu_dnnl_isa(void) {
        return NULL;
}

int cpu_dnnl_gemm_bf16_nt(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda,
                          const uint16_t *b, int64_t ldb, float *c, int64_t ldc, bool accumulate) {
        if (m < 0 || n < 0 || k < 0 || lda < k || ldb < k || ldc < n)
                return -EINVAL;
        return -ENOTSUP;
}

int cpu_dnnl_sgemm(bool b_nk, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc,
                   bool accumulate) {
        if (m < 0 || n < 0 || k < 0 || lda < k || ldb < (b_nk ? k : n) || ldc < n)
                return -EINVAL;
        for (int64_t i = 0; i < m; i++) {
                float *ci = c + i * ldc;
                for (int64_t j = 0; j < n; j++) {
                        float s = 0;
                        if (b_nk) /* both rows contiguous: a dot product */
                                for (int64_t p = 0; p < k; p++)
                                        s += a[i * lda + p] * b[j * ldb + p];
                        else
                                for (int64_t p = 0; p < k; p++)
                                        s += a[i * lda + p] * b[p * ldb + j];
                        ci[j] = alpha * s + (accumulate ? ci[j] : 0.0f);
                }
        }
        return 0;
}
