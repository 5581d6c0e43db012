/* SPDX-License-Identifier: MIT */
/* The generators against the vectors of spec §2.3, §2.8, §3.3 and Appendix A. */
#include <math.h>
#include <stdio.h>

#include "rng.h"
#include "test-util.h"

static void test_mt_reference(void) {
        /* Matsumoto & Nishimura's reference: init_genrand(5489), first output 3499211612;
         * the 10000th is 4123659995 (C++ std::mt19937 requirement). */
        p3_mt19937 m;
        p3_mt_seed(&m, 5489);
        CHECK(p3_mt_next32(&m) == 3499211612u);
        for (int i = 1; i < 9999; i++)
                p3_mt_next32(&m);
        CHECK(p3_mt_next32(&m) == 4123659995u);
}

static void test_np_randint(void) {
        static const int64_t want[8] = { 3, 4, 2, 4, 4, 1, 2, 2 };
        p3_mt19937 m, m2;

        p3_mt_seed(&m, 42);
        for (int i = 0; i < 8; i++)
                CHECK(p3_np_randint(&m, 0, 5) == want[i]);

        p3_mt_seed(&m, 42);
        CHECK(p3_np_randint(&m, 0, 10) == 6);

        p3_mt_seed(&m, 42);
        CHECK(p3_np_randint(&m, 0, 100000) == 15795);

        /* A range of one value consumes nothing. */
        p3_mt_seed(&m, 42);
        for (int i = 0; i < 5; i++)
                CHECK(p3_np_randint(&m, 0, 1) == 0);
        CHECK(p3_np_randint(&m, 0, 100000) == 15795);
        p3_mt_seed(&m, 42);
        CHECK(p3_np_randint(&m, 7, 8) == 7);
        CHECK(p3_np_randint(&m, 0, 10) == 6);

        /* The offset is added after the draw. */
        p3_mt_seed(&m, 42);
        p3_mt_seed(&m2, 42);
        for (int i = 0; i < 100; i++)
                CHECK(p3_np_randint(&m, 10, 15) == 10 + p3_np_randint(&m2, 0, 5));
}

static void test_np_rand(void) {
        static const double want[3] = { 0.37454012, 0.95071431, 0.73199394 };
        p3_mt19937 m;

        p3_mt_seed(&m, 42);
        for (int i = 0; i < 3; i++) {
                double v = p3_mt_double(&m);
                printf("rand[%d] = %.10f\n", i, v);
                CHECK(fabs(v - want[i]) < 5e-9);
        }
}

static void test_randperm(void) {
        static const int64_t want[5][4] = {
                { 2, 3, 0, 1 }, { 2, 1, 3, 0 }, { 0, 3, 2, 1 }, { 1, 2, 0, 3 }, { 2, 1, 3, 0 },
        };
        p3_mt19937 m;

        p3_mt_seed(&m, 42);
        for (int k = 0; k < 5; k++) {
                int64_t p[4];
                p3_torch_randperm(&m, 4, p);
                for (int i = 0; i < 4; i++)
                        CHECK(p[i] == want[k][i]);
        }
}

/* The golden cases were made after torch.manual_seed(0): their stage{0..4}_order_perm. */
static void test_randperm_seed0(void) {
        static const int64_t want[5][4] = {
                { 0, 1, 3, 2 }, { 0, 2, 3, 1 }, { 3, 2, 0, 1 }, { 3, 0, 2, 1 }, { 0, 1, 2, 3 },
        };
        p3_mt19937 m;

        p3_mt_seed(&m, 0);
        for (int k = 0; k < 5; k++) {
                int64_t p[4];
                p3_torch_randperm(&m, 4, p);
                for (int i = 0; i < 4; i++)
                        CHECK(p[i] == want[k][i]);
        }
}

static void test_pcg64(void) {
        static const uint64_t state[4] = {
                11465652750463011511ull, 15382171918060459190ull,
                9018504550953525431ull, 3703499796004394495ull,
        };
        static const double want[4] = { 0.77395605, 0.43887844, 0.85859792, 0.69736803 };
        uint64_t s[4];
        p3_pcg64 g;

        p3_seedseq_generate_u64(42, s, 4);
        for (int i = 0; i < 4; i++)
                CHECK(s[i] == state[i]);

        p3_pcg64_seed(&g, 42);
        CHECK(p3_pcg64_next64(&g) == 0xc621fbcd16d92688ull);
        CHECK(p3_pcg64_next64(&g) == 0x705a5661a791ffc1ull);

        p3_pcg64_seed(&g, 42);
        for (int i = 0; i < 4; i++) {
                double v = p3_pcg64_double(&g);
                printf("pcg64 random[%d] = %.10f\n", i, v);
                CHECK(fabs(v - want[i]) < 5e-9);
        }
}

int main(void) {
        test_mt_reference();
        test_np_randint();
        test_np_rand();
        test_randperm();
        test_randperm_seed0();
        test_pcg64();
        printf("rng: all vectors reproduced\n");
        return 0;
}
