/* SPDX-License-Identifier: MIT */
/* placeholder: being written */
#include <errno.h>
#include "cuda_backend.h"
int cuda_attention(p3_backend *be, const p3_tensor *qkv, const int32_t *slot_point, int64_t n_pad, int64_t window, int heads, p3_tensor *out) { return -ENOSYS; }
