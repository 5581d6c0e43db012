/* SPDX-License-Identifier: MIT */
/* placeholder: being written */
#include <errno.h>
#include "cuda_backend.h"
int cuda_gemm_w(p3_backend *be, int64_t m, int64_t k, const float *a, int64_t lda, const p3_tensor *w, int64_t col, float *c, int64_t ldc, bool accumulate) { return -ENOSYS; }
int cuda_linear(p3_backend *be, const p3_tensor *x, const p3_tensor *w, const p3_tensor *b, p3_tensor *y, unsigned flags) { return -ENOSYS; }
int cuda_round_to(p3_backend *be, const float *src, void *dst, p3_dtype t, int64_t n) { return -ENOSYS; }
