/* SPDX-License-Identifier: MIT */
/* Is there a usable CUDA device? Asked before choosing a backend, so that a machine without
 * a GPU or driver falls back to the CPU with a reason a person can read. */
#pragma once

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices (> 0), or a negative errno with `why` filled in: -ENODEV (no device
 * or no driver), -EIO (the runtime failed). Never aborts. */
int p3_cuda_probe(char *why, size_t why_len, char *name, size_t name_len);

#ifdef __cplusplus
}
#endif
