/* SPDX-License-Identifier: MIT */
/* Farthest point sampling as fpsample does it: float32 squared distances summed x, y, z; the
 * running minimum; next = argmax with ties to the LAST index. */
#pragma once

#include <stdint.h>

int p3_fps(const float *pts, int64_t n, int64_t k, int64_t start, int64_t *out);
