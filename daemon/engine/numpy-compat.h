/* SPDX-License-Identifier: MIT */
/* Arithmetic as NumPy and upstream's float code do it, where the results must match bit for
 * bit (sampling, cleaning, FPS, post-processing). */
#pragma once

#include <stdint.h>

/* Round every float operation on its own: a fused multiply-add rounds once where NumPy rounds
 * twice, and gnu11 lets the compiler fuse by default. */
#if defined(__clang__)
#define NO_FP_CONTRACT
#pragma clang fp contract(off)
#else
#define NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#endif

/* np.sum of a contiguous float64 vector: pairwise summation (blocks of at most 128 summed in 8
 * interleaved partial sums, larger runs split in halves rounded to 8) inside buffers of 8192
 * elements, whose sums are then added one after another. */
double p3_np_sum(const double *a, int64_t n);
