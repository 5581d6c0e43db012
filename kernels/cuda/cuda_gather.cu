/* SPDX-License-Identifier: MIT */
/* placeholder: being written */
#include <errno.h>
#include "cuda_backend.h"
int cuda_gather_rows(p3_backend *be, const p3_tensor *x, const int32_t *idx, p3_tensor *y, int64_t col0) { return -ENOSYS; }
int cuda_gather_add(p3_backend *be, const p3_tensor *x, const int32_t *idx, p3_tensor *y) { return -ENOSYS; }
int cuda_segment_max(p3_backend *be, const p3_tensor *x, const int32_t *cluster, p3_tensor *y) { return -ENOSYS; }
