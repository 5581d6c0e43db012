/* SPDX-License-Identifier: MIT */
/* The random generators upstream uses, reproduced exactly so that a seed means the same thing:
 * MT19937 (NumPy's legacy RandomState and torch's CPU generator), NumPy's bounded randint,
 * torch.randperm for small n, and PCG64 seeded through NumPy's SeedSequence (default_rng). */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct p3_mt19937 {
        uint32_t mt[624];
        int mti;
} p3_mt19937;

void p3_mt_seed(p3_mt19937 *m, uint32_t seed); /* init_genrand */
uint32_t p3_mt_next32(p3_mt19937 *m);
/* NumPy legacy rand(): 53-bit double in [0,1). */
double p3_mt_double(p3_mt19937 *m);
/* NumPy legacy randint(lo, hi) (one value): masked rejection; consumes nothing when hi-lo == 1. */
int64_t p3_np_randint(p3_mt19937 *m, int64_t lo, int64_t hi);
/* torch.randperm(n) on the CPU generator for small n. */
void p3_torch_randperm(p3_mt19937 *m, int n, int64_t *out);

typedef struct p3_pcg64 {
        __uint128_t state, inc;
} p3_pcg64;

/* Added: SeedSequence(seed).generate_state(n, uint64), the words PCG64 is seeded from (exposed
 * so that the test can check them against NumPy's). */
void p3_seedseq_generate_u64(uint64_t seed, uint64_t *out, size_t n);
/* np.random.default_rng(seed): SeedSequence(seed) -> PCG64. */
void p3_pcg64_seed(p3_pcg64 *g, uint64_t seed);
uint64_t p3_pcg64_next64(p3_pcg64 *g);
/* Generator.random(): (next64 >> 11) * 2^-53. */
double p3_pcg64_double(p3_pcg64 *g);
