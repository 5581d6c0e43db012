/* SPDX-License-Identifier: MIT */
/* Element and row arithmetic of the CUDA kernels, written once as __host__ __device__ functions
 * so that host-compiled tests (tests/cuda) check them against the CPU twins without a GPU. */
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

/* Exact-erf GELU, x/2 · erfc(-x/√2): erfc keeps relative accuracy for negative x, where
 * 1 + erf(x/√2) would cancel (the CPU twin, cpu_math.h's gelu, does the same). */
__host__ __device__ static inline float cu_gelu(float x) {
        return 0.5f * x * erfcf(-x * 0.70710678118654752f);
}

/* FP32 → FP16 / BF16 bits, round to nearest even (what cuBLAS's inputs get). */
__host__ __device__ static inline uint16_t cu_to_half_bits(float x) {
        return __half_as_ushort(__float2half_rn(x));
}

__host__ __device__ static inline uint16_t cu_to_bf16_bits(float x) {
        return __bfloat16_as_ushort(__float2bfloat16_rn(x));
}
