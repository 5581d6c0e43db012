/* SPDX-License-Identifier: MIT */
/* Vectorizable float math shared by the CPU ops: exp for x <= 0 and exact-erf GELU. */
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(x) for x <= 0 to ~1 ulp: Cody–Waite reduction by ln 2, then Cephes' degree-6
 * polynomial; written without branches so that loops around it vectorize. */
static inline float exp_neg(float x) {
        x = x > -87.0f ? x : -87.0f;
        /* n = round(x / ln 2) by the 1.5·2^23 trick: floorf would not vectorize */
        float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
        float r = x - n * 0.693359375f;
        r = r + n * 2.12194440e-4f;
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * (r * r) + r + 1.0f;
        int32_t e = ((int32_t) n + 127) << 23;
        float scale;
        memcpy(&scale, &e, sizeof(scale));
        return p * scale;
}

/* max without fmaxf's NaN rules, so that it vectorizes (inputs are never NaN here). */
static inline float maxf(float a, float b) {
        return a > b ? a : b;
}

/* Reductions in LANES independent partial results, combined at the end: the compiler turns
 * the fixed-count inner loops into vector instructions, which it may not do for one running
 * float sum (that would reorder the additions; a running max it does not vectorize either).
 * The order is fixed, so results are the same on every run and every vector width. */
#define LANES 16

static inline float max_lanes(const float *x, int64_t n) {
        float m[LANES];
        for (int l = 0; l < LANES; l++)
                m[l] = x[0];
        int64_t j = 0;
        for (; j + LANES <= n; j += LANES)
                for (int l = 0; l < LANES; l++)
                        m[l] = maxf(m[l], x[j + l]);
        for (; j < n; j++)
                m[0] = maxf(m[0], x[j]);
        for (int l = 1; l < LANES; l++)
                m[0] = maxf(m[0], m[l]);
        return m[0];
}

/* Σ x[j]·y[j] (y = NULL: Σ x[j]). */
static inline float dot_lanes(const float *x, const float *y, int64_t n) {
        float s[LANES] = { 0 };
        int64_t j = 0;
        for (; j + LANES <= n; j += LANES)
                for (int l = 0; l < LANES; l++)
                        s[l] += y ? x[j + l] * y[j + l] : x[j + l];
        for (; j < n; j++)
                s[0] += y ? x[j] * y[j] : x[j];
        float t = 0;
        for (int l = 0; l < LANES; l++)
                t += s[l];
        return t;
}

/* erfc(a) for a >= 0 with fractional error < 1.2e-7 (the classic Chebyshev fit of
 * Numerical Recipes §6.2); relative accuracy in the tail is what GELU needs for x < 0. */
static inline float erfc_pos(float a) {
        float t = 1.0f / (1.0f + 0.5f * a);
        float p = 0.17087277f;
        p = p * t - 0.82215223f;
        p = p * t + 1.48851587f;
        p = p * t - 1.13520398f;
        p = p * t + 0.27886807f;
        p = p * t - 0.18628806f;
        p = p * t + 0.09678418f;
        p = p * t + 0.37409196f;
        p = p * t + 1.00002368f;
        p = p * t - 1.26551223f;
        return t * exp_neg(-a * a + p);
}

/* GELU(x) = x/2 · (1 + erf(x/√2)) = x/2 · erfc(-x/√2). */
static inline float gelu(float x) {
        float a = fabsf(x) * 0.70710678118654752f;
        float c = erfc_pos(a);
        float one_plus_erf = x < 0.0f ? c : 2.0f - c;
        return 0.5f * x * one_plus_erf;
}

