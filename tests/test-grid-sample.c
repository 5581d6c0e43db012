/* SPDX-License-Identifier: MIT */
/* CenterShift and GridSample: the FNV vectors, an independent check of the random
 * representative draw, replay validation, and the golden cases. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "grid_sample.h"
#include "test-util.h"

static void test_fnv(void) {
        CHECK(p3_fnv_grid(0, 0, 0) == 0xd94d12186c0f2fb7ull);
        CHECK(p3_fnv_grid(1, 2, 3) == 0xd949aa186c0c492bull);
        CHECK(p3_fnv_grid(400, 200, 100) == 0xd3fe6a18678d782bull);
}

static void test_center_shift(void) {
        double p[] = { 1, 2, 3, 3, -2, 5, 2, 0, 4 };
        double shift[3];

        p3_center_shift(p, 3, shift);
        CHECK(shift[0] == 2 && shift[1] == 0 && shift[2] == 3);
        CHECK(p[0] == -1 && p[1] == 2 && p[2] == 0);
        CHECK(p[3] == 1 && p[4] == -2 && p[5] == 2);
}

static uint64_t lcg(uint64_t *s) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        return *s >> 11;
}

/* Structural checks that hold for any valid result: voxels in strictly ascending hash order,
 * every point in the voxel of its own grid cell, one representative inside each voxel. */
static void check_structure(const double *pts, int64_t n, double grid, const p3_grid_sample *g) {
        int64_t lo[3] = { INT64_MAX, INT64_MAX, INT64_MAX };
        for (int64_t i = 0; i < 3 * n; i++)
                lo[i % 3] = MIN(lo[i % 3], (int64_t) floor(pts[i] / grid));

        CHECK(g->n == n && g->m > 0 && g->m <= n);
        for (int64_t v = 0; v < g->m; v++) {
                const int32_t *c = g->grid_coord + 3 * v;
                if (v > 0) {
                        const int32_t *b = c - 3;
                        CHECK(p3_fnv_grid(b[0], b[1], b[2]) < p3_fnv_grid(c[0], c[1], c[2]));
                }
                CHECK(g->index[v] >= 0 && g->index[v] < n);
                CHECK(g->inverse[g->index[v]] == v);
        }
        for (int64_t i = 0; i < n; i++) {
                CHECK(g->inverse[i] >= 0 && g->inverse[i] < g->m);
                for (int d = 0; d < 3; d++)
                        CHECK(g->grid_coord[3 * g->inverse[i] + d] ==
                              (int64_t) floor(pts[3 * i + d] / grid) - lo[d]);
        }
}

/* The draw, redone from the definition: stable order by hash puts a voxel's points in
 * ascending index order; representative = its (randint(0, max count) % count)-th point. */
static void check_draw(const p3_grid_sample *g, uint32_t seed) {
        int64_t m = g->m, n = g->n, cmax = 0;
        int64_t *count = calloc(m, sizeof(int64_t));
        CHECK(count);
        for (int64_t i = 0; i < n; i++)
                count[g->inverse[i]]++;
        for (int64_t v = 0; v < m; v++)
                cmax = MAX(cmax, count[v]);

        p3_mt19937 rng;
        p3_mt_seed(&rng, seed);
        int64_t *want = malloc(sizeof(int64_t) * m);
        CHECK(want);
        for (int64_t v = 0; v < m; v++)
                want[v] = p3_np_randint(&rng, 0, cmax) % count[v];
        int64_t *seen = calloc(m, sizeof(int64_t));
        CHECK(seen);
        for (int64_t i = 0; i < n; i++) {
                int64_t v = g->inverse[i];
                if (seen[v]++ == want[v])
                        CHECK(g->index[v] == i);
        }
        free(count);
        free(want);
        free(seen);
}

static void test_random_cloud(void) {
        const int64_t n = 20000;
        const double grid = 0.05;
        double *p = malloc(sizeof(double) * 3 * n);
        uint64_t s = 1;
        p3_grid_sample g = {}, g2 = {};
        p3_mt19937 rng;
        p3_err err = {};

        CHECK(p);
        for (int64_t i = 0; i < 3 * n; i++)
                p[i] = (double) (lcg(&s) % 1000000) / 1000000.0 - 0.3;

        p3_mt_seed(&rng, 7);
        CHECK_OK(p3_grid_sample_run(p, n, grid, &rng, NULL, 0, &g, &err));
        printf("random cloud: %lld points -> %lld voxels\n", (long long) n, (long long) g.m);
        CHECK(g.m < n);
        check_structure(p, n, grid, &g);
        check_draw(&g, 7);

        /* Replaying the draw gives the same result. */
        CHECK_OK(p3_grid_sample_run(p, n, grid, NULL, g.index, g.m, &g2, &err));
        CHECK(g2.m == g.m);
        CHECK(memcmp(g2.index, g.index, sizeof(int64_t) * g.m) == 0);
        CHECK(memcmp(g2.grid_coord, g.grid_coord, sizeof(int32_t) * 3 * g.m) == 0);
        CHECK(memcmp(g2.inverse, g.inverse, sizeof(int64_t) * n) == 0);
        p3_grid_sample_done(&g2);

        /* Bad replays are refused with a message. */
        int64_t *bad = malloc(sizeof(int64_t) * g.m);
        CHECK(bad);
        memcpy(bad, g.index, sizeof(int64_t) * g.m);
        CHECK(p3_grid_sample_run(p, n, grid, NULL, bad, g.m - 1, &g2, &err) == -EINVAL);
        CHECK(err.msg[0]);
        printf("bad replay says: %s\n", err.msg);
        bad[3] = n;
        err = (p3_err) {};
        CHECK(p3_grid_sample_run(p, n, grid, NULL, bad, g.m, &g2, &err) == -EINVAL);
        CHECK(err.msg[0]);
        bad[3] = g.index[4]; /* a point of the wrong voxel */
        err = (p3_err) {};
        CHECK(p3_grid_sample_run(p, n, grid, NULL, bad, g.m, &g2, &err) == -EINVAL);
        printf("bad replay says: %s\n", err.msg);

        free(bad);
        free(p);
        p3_grid_sample_done(&g);
}

/* Every voxel holds one point: randint(0, 1) consumes nothing, so the next draw is the
 * first one after seeding. */
static void test_no_draw(void) {
        const int64_t n = 1000;
        double *p = malloc(sizeof(double) * 3 * n);
        p3_grid_sample g = {};
        p3_mt19937 rng;

        CHECK(p);
        for (int64_t i = 0; i < n; i++) {
                p[3 * i] = 0.0125 * (double) (i % 10);
                p[3 * i + 1] = 0.0125 * (double) (i / 10 % 10);
                p[3 * i + 2] = 0.0125 * (double) (i / 100);
        }
        p3_mt_seed(&rng, 42);
        CHECK_OK(p3_grid_sample_run(p, n, 0.005, &rng, NULL, 0, &g, NULL));
        CHECK(g.m == n);
        check_structure(p, n, 0.005, &g);
        CHECK(p3_np_randint(&rng, 0, 100000) == 15795);
        free(p);
        p3_grid_sample_done(&g);
}


/* A float64 tensor as doubles (test_f32 would round them). */
static double *tensor_f64(const st_file *f, const char *name, int64_t *numel) {
        const st_tensor *t = st_find(f, name);
        CHECK(t && t->dtype == ST_F64);
        double *d = malloc(sizeof(double) * (t->numel ? t->numel : 1));
        CHECK(d);
        memcpy(d, t->data, sizeof(double) * t->numel);
        *numel = t->numel;
        return d;
}

static bool test_golden(const char *name) {
        _cleanup_free_ char *path = test_golden_case(name);
        if (!path) {
                printf("note: golden %s case not found, skipping it\n", name);
                return false;
        }
        printf("[%s] %s\n", name, path);

        _cleanup_(st_closep) st_file *f = test_open(path);
        int64_t n3, m, m3, n, k, nc;
        _cleanup_free_ double *pts = tensor_f64(f, "coord_centershift_f64", &n3);
        _cleanup_free_ float *coord = test_f32(f, "coord", &nc);
        _cleanup_free_ int64_t *index = test_i64(f, "grid_sample_index", &m);
        _cleanup_free_ int64_t *gc = test_i64(f, "grid_coord", &m3);
        _cleanup_free_ int64_t *inverse = test_i64(f, "inverse", &n);
        _cleanup_free_ float *sampled = test_f32(f, "sampled_coord", NULL);
        _cleanup_free_ int64_t *prompt_idx = test_i64(f, "prompt_idx", &k);
        CHECK(n3 == 3 * n && m3 == 3 * m && nc == n3);

        /* CenterShift of the (f32-exact) normalised coordinates in float64. */
        _cleanup_free_ double *cs = malloc(sizeof(double) * n3);
        CHECK(cs);
        for (int64_t i = 0; i < n3; i++)
                cs[i] = coord[i];
        double shift[3];
        p3_center_shift(cs, n, shift);
        CHECK(memcmp(cs, pts, sizeof(double) * n3) == 0);
        printf("center shift: exact (shift %.17g %.17g %.17g)\n", shift[0], shift[1], shift[2]);

        _cleanup_(p3_grid_sample_done) p3_grid_sample g = {};
        p3_err err = {};
        int r = p3_grid_sample_run(pts, n, 0.005, NULL, index, m, &g, &err);
        if (r < 0)
                fprintf(stderr, "replay: %s\n", p3_err_msg(&err, r));
        CHECK_OK(r);
        CHECK(g.m == m);
        check_structure(pts, n, 0.005, &g);

        _cleanup_free_ int64_t *gc64 = malloc(sizeof(int64_t) * m3);
        CHECK(gc64);
        for (int64_t i = 0; i < m3; i++)
                gc64[i] = g.grid_coord[i];
        CHECK(test_equal_i64("grid_coord", gc64, gc, m3));
        CHECK(test_equal_i64("inverse", g.inverse, inverse, n));
        CHECK(test_equal_i64("grid_sample_index", g.index, index, m));
        for (int64_t v = 0; v < m; v++)
                for (int d = 0; d < 3; d++)
                        CHECK((float) pts[3 * g.index[v] + d] == sampled[3 * v + d]);
        printf("sampled_coord               exact ok\n");

        /* The random path, seeded as the golden run was (np.random.seed(0) before get_feat):
         * a valid selection, and the FPS start drawn right after it is the recorded one. */
        _cleanup_(p3_grid_sample_done) p3_grid_sample gr = {};
        p3_mt19937 rng;
        p3_mt_seed(&rng, 0);
        CHECK_OK(p3_grid_sample_run(pts, n, 0.005, &rng, NULL, 0, &gr, &err));
        CHECK(gr.m == m);
        check_structure(pts, n, 0.005, &gr);
        check_draw(&gr, 0);
        int64_t start = p3_np_randint(&rng, 0, n);
        printf("FPS start after the seed-0 draws: %lld (recorded %lld)\n", (long long) start,
               (long long) prompt_idx[0]);
        CHECK(start == prompt_idx[0]);
        int64_t same = 0;
        for (int64_t v = 0; v < m; v++)
                same += gr.index[v] == index[v];
        printf("seed-0 draw picks the recorded representative in %lld of %lld voxels "
               "(NumPy's unstable argsort decides ties)\n",
               (long long) same, (long long) m);
        return true;
}

int main(void) {
        test_fnv();
        test_center_shift();
        test_random_cloud();
        test_no_draw();
        printf("grid-sample: synthetic checks ok\n");

        bool any = test_golden("tiny");
        any |= test_golden("full");
        if (!any)
                printf("note: no golden data; only the synthetic checks ran\n");
        return 0;
}
