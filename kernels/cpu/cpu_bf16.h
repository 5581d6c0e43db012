/* SPDX-License-Identifier: MIT */
/* BF16 on the CPU: conversions to and from FP32, and what the processor and the kernel offer
 * for BF16 arithmetic (AMX-BF16 tiles, AVX512-BF16 dot products).
 *
 * Rounding is to nearest, ties to even, on the bit pattern (as PyTorch's c10::BFloat16 does):
 * FP32 denormals round to BF16 denormals, values past the largest BF16 round to ±Inf, a NaN
 * stays a NaN (quietened, sign and top payload bits kept). Every code path gives the same bits;
 * the hardware VCVTNEPS2BF16 is not used because it flushes denormals to zero. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* One value, the definition the vector paths must match. */
static inline uint16_t cpu_bf16_from_f32_1(float f) {
        uint32_t u;
        memcpy(&u, &f, sizeof(u));
        if ((u & 0x7fffffffu) > 0x7f800000u)
                return (uint16_t) ((u >> 16) | 0x0040u); /* NaN: set the quiet bit */
        /* Adding 0x7fff plus the lowest kept bit carries into bit 16 exactly when the dropped
         * half is above one half, or equal to it with an odd kept part. */
        return (uint16_t) ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float cpu_bf16_1(uint16_t h) {
        uint32_t u = (uint32_t) h << 16;
        float f;
        memcpy(&f, &u, sizeof(f));
        return f;
}

/* n values; AVX-512 where the CPU and OS have it, plain code elsewhere (same results). */
void cpu_f32_to_bf16(const float *src, uint16_t *dst, int64_t n);
void cpu_bf16_to_f32(const uint16_t *src, float *dst, int64_t n);

/* The plain loops the above fall back to; public so that tests can compare both paths. */
void cpu_f32_to_bf16_plain(const float *src, uint16_t *dst, int64_t n);
void cpu_bf16_to_f32_plain(const uint16_t *src, float *dst, int64_t n);

/* The CPU has the instructions and the OS saves their register state (XCR0). For AMX that is
 * the tile state (XCR0 bits 17-18); a Linux process must still ask for it with
 * arch_prctl(ARCH_REQ_XCOMP_PERM), which oneDNN does before its first AMX kernel. */
bool cpu_has_avx512_bf16(void);
bool cpu_has_amx_bf16(void);
