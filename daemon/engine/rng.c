/* SPDX-License-Identifier: MIT */
/* Upstream's random generators, reproduced bit for bit: the seeds used by auto_mask.py must
 * mean the same voxel representatives, FPS start, order shuffles and surface samples here. */
#include "rng.h"

#include <stddef.h>

#define MT_N 624
#define MT_M 397
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7fffffffu
#define MT_MATRIX_A 0x9908b0dfu

/* Knuth's 32-bit linear initialisation (init_genrand), as np.random.seed(int) and
 * torch.manual_seed(int) both use it. */
void p3_mt_seed(p3_mt19937 *m, uint32_t seed) {
        m->mt[0] = seed;
        for (int i = 1; i < MT_N; i++)
                m->mt[i] = 1812433253u * (m->mt[i - 1] ^ (m->mt[i - 1] >> 30)) + (uint32_t) i;
        m->mti = MT_N;
}

static void mt_twist(p3_mt19937 *m) {
        for (int i = 0; i < MT_N; i++) {
                uint32_t y = (m->mt[i] & MT_UPPER) | (m->mt[(i + 1) % MT_N] & MT_LOWER);
                m->mt[i] = m->mt[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
        }
        m->mti = 0;
}

uint32_t p3_mt_next32(p3_mt19937 *m) {
        if (m->mti >= MT_N)
                mt_twist(m);

        uint32_t y = m->mt[m->mti++];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680u;
        y ^= (y << 15) & 0xefc60000u;
        y ^= y >> 18;
        return y;
}

double p3_mt_double(p3_mt19937 *m) {
        uint32_t a = p3_mt_next32(m) >> 5, b = p3_mt_next32(m) >> 6;
        return ((double) a * 67108864.0 + (double) b) / 9007199254740992.0;
}

/* NumPy's legacy 64-bit draw from MT19937: high word first. */
static uint64_t mt_next64(p3_mt19937 *m) {
        uint64_t hi = p3_mt_next32(m);
        return hi << 32 | p3_mt_next32(m);
}

/* Smallest 2^k - 1 >= v. */
static uint64_t fill_mask(uint64_t v) {
        for (int s = 1; s < 64; s <<= 1)
                v |= v >> s;
        return v;
}

/* Legacy RandomState.randint: masked rejection sampling; 32-bit draws while the range fits,
 * and no draw at all for a range of one value (GridSample relies on that). */
int64_t p3_np_randint(p3_mt19937 *m, int64_t lo, int64_t hi) {
        uint64_t rng = (uint64_t) hi - (uint64_t) lo - 1;
        if (hi <= lo || rng == 0)
                return lo;

        uint64_t mask = fill_mask(rng), v;
        if (rng <= 0xffffffffu) {
                do
                        v = p3_mt_next32(m) & (uint32_t) mask;
                while (v > rng);
        } else {
                do
                        v = mt_next64(m) & mask;
                while (v > rng);
        }
        return (int64_t) ((uint64_t) lo + v);
}

/* torch's CPU randperm for small n: a forward Fisher-Yates with a modulo draw. */
void p3_torch_randperm(p3_mt19937 *m, int n, int64_t *out) {
        for (int i = 0; i < n; i++)
                out[i] = i;
        for (int i = 0; i + 1 < n; i++) {
                int z = (int) (p3_mt_next32(m) % (uint32_t) (n - i));
                int64_t t = out[i];
                out[i] = out[i + z];
                out[i + z] = t;
        }
}

/* NumPy SeedSequence (pool of 4 u32 words, no spawn key). */
#define SS_POOL 4
#define SS_INIT_A 0x43b0d7e5u
#define SS_MULT_A 0x931e8875u
#define SS_INIT_B 0x8b51f9ddu
#define SS_MULT_B 0x58f38dedu
#define SS_MIX_MULT_L 0xca01f9ddu
#define SS_MIX_MULT_R 0x4973f715u
#define SS_XSHIFT 16

static uint32_t ss_hashmix(uint32_t value, uint32_t *hash_const) {
        value ^= *hash_const;
        *hash_const *= SS_MULT_A;
        value *= *hash_const;
        value ^= value >> SS_XSHIFT;
        return value;
}

static uint32_t ss_mix(uint32_t x, uint32_t y) {
        uint32_t r = SS_MIX_MULT_L * x - SS_MIX_MULT_R * y;
        return r ^ (r >> SS_XSHIFT);
}

static void ss_pool(const uint32_t *entropy, size_t n_entropy, uint32_t pool[SS_POOL]) {
        uint32_t hc = SS_INIT_A;

        for (size_t i = 0; i < SS_POOL; i++)
                pool[i] = ss_hashmix(i < n_entropy ? entropy[i] : 0, &hc);
        for (size_t src = 0; src < SS_POOL; src++)
                for (size_t dst = 0; dst < SS_POOL; dst++)
                        if (src != dst)
                                pool[dst] = ss_mix(pool[dst], ss_hashmix(pool[src], &hc));
        for (size_t src = SS_POOL; src < n_entropy; src++)
                for (size_t dst = 0; dst < SS_POOL; dst++)
                        pool[dst] = ss_mix(pool[dst], ss_hashmix(entropy[src], &hc));
}

/* generate_state(n64, uint64): 2*n64 u32 words, paired little-endian. */
static void ss_generate_u64(const uint32_t pool[SS_POOL], uint64_t *out, size_t n64) {
        uint32_t hc = SS_INIT_B;

        for (size_t i = 0; i < 2 * n64; i++) {
                uint32_t v = pool[i % SS_POOL];
                v ^= hc;
                hc *= SS_MULT_B;
                v *= hc;
                v ^= v >> SS_XSHIFT;
                if (i % 2 == 0)
                        out[i / 2] = v;
                else
                        out[i / 2] |= (uint64_t) v << 32;
        }
}

#define PCG_MULT ((__uint128_t) 0x2360ed051fc65da4ull << 64 | 0x4385df649fccf645ull)

static void pcg_step(p3_pcg64 *g) {
        g->state = g->state * PCG_MULT + g->inc;
}

void p3_seedseq_generate_u64(uint64_t seed, uint64_t *out, size_t n) {
        /* The integer seed is coerced into little-endian u32 words (at least one). */
        uint32_t entropy[2] = { (uint32_t) seed, (uint32_t) (seed >> 32) };
        uint32_t pool[SS_POOL];

        ss_pool(entropy, seed >> 32 ? 2 : 1, pool);
        ss_generate_u64(pool, out, n);
}

void p3_pcg64_seed(p3_pcg64 *g, uint64_t seed) {
        uint64_t s[4];

        p3_seedseq_generate_u64(seed, s, 4);

        __uint128_t initstate = (__uint128_t) s[0] << 64 | s[1];
        __uint128_t initseq = (__uint128_t) s[2] << 64 | s[3];
        g->state = 0;
        g->inc = initseq << 1 | 1u;
        pcg_step(g);
        g->state += initstate;
        pcg_step(g);
}

/* XSL-RR 128/64 output of the advanced state. */
uint64_t p3_pcg64_next64(p3_pcg64 *g) {
        pcg_step(g);
        uint64_t v = (uint64_t) (g->state >> 64) ^ (uint64_t) g->state;
        unsigned rot = (unsigned) (g->state >> 122);
        return (v >> rot) | (v << ((64 - rot) & 63));
}

double p3_pcg64_double(p3_pcg64 *g) {
        return (double) (p3_pcg64_next64(g) >> 11) * (1.0 / 9007199254740992.0);
}
