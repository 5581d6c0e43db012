/* SPDX-License-Identifier: MIT */
/* BF16 conversions (AVX-512F integer code chosen at run time, plain loops elsewhere) and the
 * CPUID/XCR0 probes for BF16 arithmetic. See cpu_bf16.h for the rounding rule. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cpu_bf16.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define P3_X86_BF16 1
#include <cpuid.h>
#include <immintrin.h>
#endif

void cpu_f32_to_bf16_plain(const float *src, uint16_t *dst, int64_t n) {
        for (int64_t i = 0; i < n; i++)
                dst[i] = cpu_bf16_from_f32_1(src[i]);
}

void cpu_bf16_to_f32_plain(const uint16_t *src, float *dst, int64_t n) {
        for (int64_t i = 0; i < n; i++)
                dst[i] = cpu_bf16_1(src[i]);
}

#ifdef P3_X86_BF16

/* XCR0, or 0 when the OS has not enabled XSAVE (then no extended state is usable). */
static uint64_t xcr0(void) {
        unsigned a, b, c, d;
        if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) /* OSXSAVE */
                return 0;
        uint32_t lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        return ((uint64_t) hi << 32) | lo;
}

/* CPUID leaf 7, sub-leaf `sub`; false when the CPU has no such leaf. */
static bool leaf7(unsigned sub, unsigned r[4]) {
        if (__get_cpuid_max(0, NULL) < 7)
                return false;
        __cpuid_count(7, sub, r[0], r[1], r[2], r[3]);
        return true;
}

/* SSE, AVX and the three AVX-512 states (opmask, upper ZMM0-15, ZMM16-31). */
static bool os_saves_avx512(void) {
        return (xcr0() & 0xe6) == 0xe6;
}

static bool has_avx512f(void) {
        unsigned r[4];
        return leaf7(0, r) && (r[1] & (1u << 16)) && os_saves_avx512();
}

bool cpu_has_avx512_bf16(void) {
        unsigned r[4];
        return has_avx512f() && leaf7(1, r) && (r[0] & (1u << 5));
}

bool cpu_has_amx_bf16(void) {
        unsigned r[4];
        const uint64_t tiles = (1ull << 17) | (1ull << 18); /* XTILECFG, XTILEDATA */
        /* EDX bit 22 AMX-BF16, bit 24 AMX-TILE (the tile registers it computes on) */
        return leaf7(0, r) && (r[3] & (1u << 22)) && (r[3] & (1u << 24)) &&
               (xcr0() & tiles) == tiles;
}

/* Probed once: 1 use AVX-512F, 0 plain code. */
static bool use_avx512(void) {
        static atomic_int state = -1;
        int s = atomic_load_explicit(&state, memory_order_relaxed);
        if (s < 0) {
                s = has_avx512f();
                atomic_store_explicit(&state, s, memory_order_relaxed);
        }
        return s;
}

__attribute__((target("avx512f"))) static void f32_to_bf16_avx512(const float *src,
                                                                   uint16_t *dst, int64_t n) {
        const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
        const __m512i abs = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
        const __m512i quiet = _mm512_set1_epi32(0x40);
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
                __m512i u = _mm512_castps_si512(_mm512_loadu_ps(src + i));
                __m512i hi = _mm512_srli_epi32(u, 16);
                __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(hi, one)));
                r = _mm512_srli_epi32(r, 16);
                __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs), inf);
                r = _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(hi, quiet));
                _mm256_storeu_si256((__m256i *) (dst + i), _mm512_cvtepi32_epi16(r));
        }
        cpu_f32_to_bf16_plain(src + i, dst + i, n - i);
}

__attribute__((target("avx512f"))) static void bf16_to_f32_avx512(const uint16_t *src,
                                                                   float *dst, int64_t n) {
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
                __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *) (src + i)));
                _mm512_storeu_si512(dst + i, _mm512_slli_epi32(h, 16));
        }
        cpu_bf16_to_f32_plain(src + i, dst + i, n - i);
}

void cpu_f32_to_bf16(const float *src, uint16_t *dst, int64_t n) {
        if (use_avx512())
                f32_to_bf16_avx512(src, dst, n);
        else
                cpu_f32_to_bf16_plain(src, dst, n);
}

void cpu_bf16_to_f32(const uint16_t *src, float *dst, int64_t n) {
        if (use_avx512())
                bf16_to_f32_avx512(src, dst, n);
        else
                cpu_bf16_to_f32_plain(src, dst, n);
}

#else /* not x86-64 with GCC-style builtins: plain code, no BF16 units known */

void cpu_f32_to_bf16(const float *src, uint16_t *dst, int64_t n) {
        cpu_f32_to_bf16_plain(src, dst, n);
}

void cpu_bf16_to_f32(const uint16_t *src, float *dst, int64_t n) {
        cpu_bf16_to_f32_plain(src, dst, n);
}

bool cpu_has_avx512_bf16(void) {
        return false;
}

bool cpu_has_amx_bf16(void) {
        return false;
}

#endif
