/* SPDX-License-Identifier: MIT */
/* Serialization codes against spec §3.3's vectors and a bit-by-bit reference, the neighbour
 * map against a dense grid, the window map, pooling, and every stage of the golden cases. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "serialize.h"
#include "test-util.h"

static const p3_order ORDERS[4] = { P3_ORDER_Z, P3_ORDER_Z_TRANS, P3_ORDER_HILBERT,
                                    P3_ORDER_HILBERT_TRANS };

static uint64_t lcg(uint64_t *s) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        return *s >> 11;
}

static void test_vectors(void) {
        static const int32_t pts[4][3] = { { 0, 0, 0 }, { 1, 2, 3 }, { 400, 200, 100 },
                                           { 123, 45, 399 } };
        static const uint64_t want[4][4] = {
                { 0, 29, 80528448, 20139759 },  /* z */
                { 0, 43, 47491136, 19607391 },  /* z-trans */
                { 0, 48, 130676306, 20935573 }, /* hilbert */
                { 0, 38, 58834806, 19814279 },  /* hilbert-trans */
        };
        for (int o = 0; o < 4; o++)
                for (int i = 0; i < 4; i++)
                        CHECK(p3_order_code(ORDERS[o], pts[i], 9) == want[o][i]);

        /* Depth-1 Hilbert order of the corners. */
        static const int32_t corner[8][3] = { { 0, 0, 0 }, { 0, 0, 1 }, { 0, 1, 1 }, { 0, 1, 0 },
                                              { 1, 1, 0 }, { 1, 1, 1 }, { 1, 0, 1 }, { 1, 0, 0 } };
        for (int i = 0; i < 8; i++)
                CHECK(p3_hilbert_encode(corner[i][0], corner[i][1], corner[i][2], 1) ==
                      (uint64_t) i);

        int32_t gc[6] = { 0, 0, 0, 255, 3, 1 };
        CHECK(p3_serial_depth(gc, 2) == 9);
        gc[3] = 254;
        CHECK(p3_serial_depth(gc, 2) == 8);
        memset(gc, 0, sizeof(gc));
        CHECK(p3_serial_depth(gc, 2) == 1);
}

/* Spec §3.3 steps (a)-(e) literally, one bit at a time. */
static uint64_t hilbert_reference(const uint32_t c[3], int b) {
        uint8_t g[3][32], s[96];
        for (int d = 0; d < 3; d++)
                for (int t = 0; t < b; t++)
                        g[d][t] = (c[d] >> (b - 1 - t)) & 1;
        for (int t = 0; t < b; t++)
                for (int d = 0; d < 3; d++) {
                        uint8_t m = g[d][t];
                        for (int u = t + 1; u < b; u++) {
                                if (m) {
                                        g[0][u] ^= 1;
                                } else {
                                        uint8_t x = g[0][u] ^ g[d][u];
                                        g[d][u] ^= x;
                                        g[0][u] ^= x;
                                }
                        }
                }
        for (int t = 0; t < b; t++)
                for (int d = 0; d < 3; d++)
                        s[3 * t + d] = g[d][t];
        uint64_t code = 0;
        uint8_t h = 0;
        for (int i = 0; i < 3 * b; i++) {
                h ^= s[i];
                code |= (uint64_t) h << (3 * b - 1 - i);
        }
        return code;
}

static uint64_t z_reference(const uint32_t c[3], int b) {
        uint64_t code = 0;
        for (int i = 0; i < b; i++)
                code |= (uint64_t) ((c[0] >> i) & 1) << (3 * i + 2) |
                        (uint64_t) ((c[1] >> i) & 1) << (3 * i + 1) |
                        (uint64_t) ((c[2] >> i) & 1) << (3 * i);
        return code;
}

static void test_codes_random(void) {
        uint64_t s = 3;
        for (int b = 1; b <= 16; b++)
                for (int k = 0; k < 500; k++) {
                        uint32_t c[3];
                        for (int d = 0; d < 3; d++)
                                c[d] = (uint32_t) (lcg(&s) & ((1u << b) - 1));
                        CHECK(p3_hilbert_encode(c[0], c[1], c[2], b) == hilbert_reference(c, b));
                        CHECK(p3_z_encode(c[0], c[1], c[2], b) == z_reference(c, b));
                }
}

/* n distinct random cells in a side^3 box. */
static int32_t *random_cells(int64_t n, int side, uint64_t seed) {
        uint8_t *used = calloc((size_t) side * side * side, 1);
        int32_t *gc = malloc(sizeof(int32_t) * 3 * n);
        CHECK(used && gc && n <= (int64_t) side * side * side);
        for (int64_t i = 0; i < n;) {
                int x = lcg(&seed) % side, y = lcg(&seed) % side, z = lcg(&seed) % side;
                if (used[(x * side + y) * side + z]++)
                        continue;
                gc[3 * i] = x;
                gc[3 * i + 1] = y;
                gc[3 * i + 2] = z;
                i++;
        }
        free(used);
        return gc;
}

static void test_serialize_small(void) {
        const int64_t n = 3000;
        int32_t *gc = random_cells(n, 40, 11);
        int64_t perm[4] = { 2, 0, 3, 1 };
        int64_t *code = malloc(sizeof(int64_t) * 4 * n);
        int32_t *order = malloc(sizeof(int32_t) * 4 * n), *inv = malloc(sizeof(int32_t) * 4 * n);
        CHECK(code && order && inv);

        int depth = p3_serial_depth(gc, n);
        CHECK(depth == 6);
        CHECK_OK(p3_serialize(gc, n, ORDERS, 4, perm, depth, code, order, inv));
        for (int k = 0; k < 4; k++)
                for (int64_t i = 0; i < n; i++) {
                        CHECK((uint64_t) code[k * n + i] ==
                              p3_order_code(ORDERS[perm[k]], gc + 3 * i, depth));
                        if (i > 0)
                                CHECK(code[k * n + order[k * n + i - 1]] <
                                      code[k * n + order[k * n + i]]);
                        CHECK(inv[k * n + order[k * n + i]] == i);
                }
        CHECK(p3_serialize(gc, n, ORDERS, 4, perm, 17, NULL, order, inv) == -EINVAL);
        free(gc);
        free(code);
        free(order);
        free(inv);
}

static void test_argsort(void) {
        const int64_t n = 10000;
        uint64_t *key = malloc(sizeof(uint64_t) * n), *sorted = malloc(sizeof(uint64_t) * n);
        int32_t *idx = malloc(sizeof(int32_t) * n);
        uint64_t s = 5;
        CHECK(key && sorted && idx);
        for (int64_t i = 0; i < n; i++) /* many duplicates, high bytes in use */
                key[i] = (lcg(&s) % 300) * 0x0101010101010101ull;
        CHECK_OK(p3_argsort_u64(key, n, idx, sorted));
        for (int64_t i = 0; i < n; i++) {
                CHECK(sorted[i] == key[idx[i]]);
                if (i > 0)
                        CHECK(key[idx[i - 1]] < key[idx[i]] ||
                              (key[idx[i - 1]] == key[idx[i]] && idx[i - 1] < idx[i]));
        }
        free(key);
        free(sorted);
        free(idx);
}

static void test_neighbors(void) {
        const int side = 16;
        const int64_t n = 2000;
        int32_t *gc = random_cells(n, side, 21);
        int32_t *nbr = malloc(sizeof(int32_t) * 27 * n);
        int32_t *dense = malloc(sizeof(int32_t) * side * side * side);
        CHECK(nbr && dense);

        for (int i = 0; i < side * side * side; i++)
                dense[i] = -1;
        for (int64_t i = 0; i < n; i++)
                dense[(gc[3 * i] * side + gc[3 * i + 1]) * side + gc[3 * i + 2]] = (int32_t) i;

        CHECK_OK(p3_subm_neighbors(gc, n, nbr));
        int64_t found = 0;
        for (int64_t i = 0; i < n; i++)
                for (int r = 0; r < 27; r++) {
                        int x = gc[3 * i] + r / 9 - 1, y = gc[3 * i + 1] + r / 3 % 3 - 1,
                            z = gc[3 * i + 2] + r % 3 - 1;
                        bool in = x >= 0 && y >= 0 && z >= 0 && x < side && y < side && z < side;
                        int32_t want = in ? dense[(x * side + y) * side + z] : -1;
                        CHECK(nbr[27 * i + r] == want);
                        found += want >= 0;
                }
        for (int64_t i = 0; i < n; i++)
                CHECK(nbr[27 * i + 13] == i);
        printf("neighbour map: %lld points, %lld neighbour entries, matches the dense grid\n",
               (long long) n, (long long) found);
        free(gc);
        free(nbr);
        free(dense);
}

static void test_windows(void) {
        int64_t w, np;
        p3_attention_windows(2500, 1024, &w, &np);
        CHECK(w == 1024 && np == 3072);
        int32_t *pad = malloc(sizeof(int32_t) * np);
        CHECK(pad);
        p3_attention_pad(2500, w, np, pad);
        for (int64_t s = 0; s < 2500; s++)
                CHECK(pad[s] == s);
        for (int64_t s = 2500; s < 3072; s++)
                CHECK(pad[s] == 1476 + (s - 2500));
        /* The last window is the last 1024 ranks, each once. */
        int64_t sum = 0;
        for (int64_t s = 2048; s < 3072; s++)
                sum += pad[s];
        CHECK(sum == (1476 + 2499) * 1024 / 2);
        free(pad);

        p3_attention_windows(48, 1024, &w, &np);
        CHECK(w == 48 && np == 48);
        p3_attention_windows(2048, 1024, &w, &np);
        CHECK(w == 1024 && np == 2048);
}

static int cmp_cell(const void *a, const void *b) {
        const int32_t *x = a, *y = b;
        for (int d = 0; d < 3; d++)
                if (x[d] != y[d])
                        return x[d] < y[d] ? -1 : 1;
        return 0;
}

static void test_pool_small(void) {
        const int64_t n = 4000;
        int32_t *gc = random_cells(n, 30, 33);
        int32_t *cl = malloc(sizeof(int32_t) * n), *half = malloc(sizeof(int32_t) * 3 * n);
        int32_t *coarse = NULL;
        int64_t m;
        CHECK(cl && half);

        CHECK_OK(p3_grid_pool(gc, n, 2, &coarse, &m, cl));
        for (int64_t i = 0; i < 3 * n; i++)
                half[i] = gc[i] / 2;
        qsort(half, n, 3 * sizeof(int32_t), cmp_cell);
        int64_t u = 0;
        for (int64_t i = 0; i < n; i++)
                if (i == 0 || cmp_cell(half + 3 * i, half + 3 * (i - 1)) != 0) {
                        memcpy(half + 3 * u, half + 3 * i, 3 * sizeof(int32_t));
                        u++;
                }
        CHECK(m == u);
        CHECK(memcmp(coarse, half, sizeof(int32_t) * 3 * m) == 0);
        for (int64_t i = 0; i < n; i++)
                for (int d = 0; d < 3; d++)
                        CHECK(coarse[3 * cl[i] + d] == gc[3 * i + d] / 2);
        free(gc);
        free(cl);
        free(half);
        free(coarse);
}


static void compare_i32(const char *what, const int32_t *got, const int64_t *ref, int64_t n) {
        int64_t *g = malloc(sizeof(int64_t) * (n ? n : 1));
        CHECK(g);
        for (int64_t i = 0; i < n; i++)
                g[i] = got[i];
        CHECK(test_equal_i64(what, g, ref, n));
        free(g);
}

/* Serialize one level and compare whatever the case recorded for it. */
static void golden_level(const st_file *f, int s, const int32_t *gc, int64_t m) {
        char key[64];
        int64_t np, nd;

        snprintf(key, sizeof(key), "stage%d_order_perm", s);
        _cleanup_free_ int64_t *perm = test_i64(f, key, &np);
        CHECK(np == 4);
        int depth = p3_serial_depth(gc, m);
        snprintf(key, sizeof(key), "stage%d_serialized_depth", s);
        if (st_find(f, key)) {
                _cleanup_free_ int64_t *d = test_i64(f, key, &nd);
                CHECK(nd == 1 && d[0] == depth);
        }

        _cleanup_free_ int64_t *code = malloc(sizeof(int64_t) * 4 * m);
        _cleanup_free_ int32_t *order = malloc(sizeof(int32_t) * 4 * m);
        _cleanup_free_ int32_t *inv = malloc(sizeof(int32_t) * 4 * m);
        CHECK(code && order && inv);
        CHECK_OK(p3_serialize(gc, m, ORDERS, 4, perm, depth, code, order, inv));

        snprintf(key, sizeof(key), "stage%d_serialized_code", s);
        if (st_find(f, key)) {
                _cleanup_free_ int64_t *ref = test_i64(f, key, NULL);
                CHECK(test_equal_i64(key, code, ref, 4 * m));
        }
        snprintf(key, sizeof(key), "stage%d_serialized_order", s);
        _cleanup_free_ int64_t *ref_order = test_i64(f, key, NULL);
        compare_i32(key, order, ref_order, 4 * m);
        snprintf(key, sizeof(key), "stage%d_serialized_inverse", s);
        if (st_find(f, key)) {
                _cleanup_free_ int64_t *ref = test_i64(f, key, NULL);
                compare_i32(key, inv, ref, 4 * m);
        }
}

static bool test_golden(const char *name) {
        _cleanup_free_ char *path = test_golden_case(name);
        if (!path) {
                printf("note: golden %s case not found, skipping it\n", name);
                return false;
        }
        printf("[%s] %s\n", name, path);

        _cleanup_(st_closep) st_file *f = test_open(path);
        int64_t m3;
        _cleanup_free_ int64_t *gc64 = test_i64(f, "grid_coord", &m3);
        int64_t m = m3 / 3;
        _cleanup_free_ int32_t *gc = malloc(sizeof(int32_t) * m3);
        CHECK(gc);
        for (int64_t i = 0; i < m3; i++)
                gc[i] = (int32_t) gc64[i];
        golden_level(f, 0, gc, m);

        for (int s = 1; s <= 4; s++) {
                char key[64];
                int64_t mc3, ninv;
                _cleanup_free_ int32_t *coarse = NULL;
                _cleanup_free_ int32_t *cl = malloc(sizeof(int32_t) * m);
                int64_t mc;
                CHECK(cl);
                CHECK_OK(p3_grid_pool(gc, m, 2, &coarse, &mc, cl));

                snprintf(key, sizeof(key), "stage%d_grid_coord", s);
                _cleanup_free_ int64_t *ref_gc = test_i64(f, key, &mc3);
                CHECK(mc3 == 3 * mc);
                compare_i32(key, coarse, ref_gc, mc3);
                snprintf(key, sizeof(key), "stage%d_pooling_inverse", s);
                _cleanup_free_ int64_t *ref_inv = test_i64(f, key, &ninv);
                CHECK(ninv == m);
                compare_i32(key, cl, ref_inv, m);

                golden_level(f, s, coarse, mc);
                free(gc);
                gc = TAKE_PTR(coarse);
                m = mc;
        }

        /* The level-0 neighbour map against a dense grid. */
        int32_t hi[3] = { 0, 0, 0 };
        for (int64_t i = 0; i < m3; i++)
                hi[i % 3] = MAX(hi[i % 3], (int32_t) gc64[i] + 1);
        _cleanup_free_ int32_t *dense = malloc(sizeof(int32_t) * hi[0] * hi[1] * hi[2]);
        _cleanup_free_ int32_t *nbr = malloc(sizeof(int32_t) * 27 * (m3 / 3));
        CHECK(dense && nbr);
        for (int64_t i = 0; i < (int64_t) hi[0] * hi[1] * hi[2]; i++)
                dense[i] = -1;
        _cleanup_free_ int32_t *gc0 = malloc(sizeof(int32_t) * m3);
        CHECK(gc0);
        for (int64_t i = 0; i < m3; i++)
                gc0[i] = (int32_t) gc64[i];
        for (int64_t i = 0; i < m3 / 3; i++)
                dense[((int64_t) gc0[3 * i] * hi[1] + gc0[3 * i + 1]) * hi[2] + gc0[3 * i + 2]] =
                        (int32_t) i;
        CHECK_OK(p3_subm_neighbors(gc0, m3 / 3, nbr));
        for (int64_t i = 0; i < m3 / 3; i++)
                for (int r = 0; r < 27; r++) {
                        int64_t x = gc0[3 * i] + r / 9 - 1, y = gc0[3 * i + 1] + r / 3 % 3 - 1,
                                z = gc0[3 * i + 2] + r % 3 - 1;
                        bool in = x >= 0 && y >= 0 && z >= 0 && x < hi[0] && y < hi[1] &&
                                  z < hi[2];
                        CHECK(nbr[27 * i + r] == (in ? dense[(x * hi[1] + y) * hi[2] + z] : -1));
                }
        printf("level-0 neighbour map matches the dense grid\n");
        return true;
}

int main(void) {
        test_vectors();
        test_codes_random();
        test_argsort();
        test_serialize_small();
        test_neighbors();
        test_windows();
        test_pool_small();
        printf("serialize: synthetic checks ok\n");

        bool any = test_golden("tiny");
        any |= test_golden("full");
        if (!any)
                printf("note: no golden data; only the synthetic checks ran\n");
        return 0;
}
