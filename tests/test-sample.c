/* SPDX-License-Identifier: MIT */
/* Surface sampling, normals and normalize_pc: hand cases (draw order, folding, zero-area faces,
 * refusals), the golden replays bit for bit (face areas, points, face indices, normals,
 * normalized points), and the time for 100,000 samples on 500,000 faces. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rng.h"
#include "sample.h"
#include "test-util.h"

/* One triangle (0,0,0) (1,0,0) (0,1,0): the point is (r0, r1, 0) after folding, and the draws
 * are default_rng(42)'s: one for the face, then r0 and r1. */
static void test_draw_order(void) {
        const double v[] = { 0, 0, 0, 1, 0, 0, 0, 1, 0 };
        const int32_t f[] = { 0, 1, 2 };
        const p3_mesh m = { .nv = 3, .nf = 1, .v = (double *) v, .f = (int32_t *) f };
        double p[6];
        int32_t idx[2];
        p3_pcg64 g;

        CHECK_OK(p3_sample_surface(&m, 2, 42, p, idx, NULL));
        CHECK(idx[0] == 0 && idx[1] == 0);

        double d[6];
        p3_pcg64_seed(&g, 42);
        for (int i = 0; i < 6; i++)
                d[i] = p3_pcg64_double(&g);
        /* NumPy: default_rng(42).random(4) = 0.77395605, 0.43887844, 0.85859792, 0.69736803:
         * two face draws, then the first sample's pair. */
        CHECK(fabs(d[1] - 0.43887844) < 1e-8 && fabs(d[2] - 0.85859792) < 1e-8 &&
              fabs(d[3] - 0.69736803) < 1e-8);
        for (int s = 0; s < 2; s++) {
                double r0 = d[2 + 2 * s], r1 = d[3 + 2 * s];
                if (r0 + r1 > 1.0) {
                        r0 = fabs(r0 - 1.0);
                        r1 = fabs(r1 - 1.0);
                }
                CHECK(p[3 * s] == r0 && p[3 * s + 1] == r1 && p[3 * s + 2] == 0);
        }
        /* The first pair sums past 1 and is folded back inside. */
        CHECK(p[0] + p[1] <= 1.0);
}

/* A zero-area face between two others is never picked (side='left' lands on the face before
 * it), and every point lies on its face. */
static void test_zero_area_face(void) {
        const double v[] = { 0, 0, 0, 1, 0, 0, 0, 1, 0, 2, 0, 0, 5, 5, 5, 5, 6, 5, 6, 5, 5 };
        const int32_t f[] = { 0, 1, 2, 0, 1, 3, 4, 5, 6 };
        const p3_mesh m = { .nv = 7, .nf = 3, .v = (double *) v, .f = (int32_t *) f };
        const int64_t n = 2000;
        _cleanup_free_ double *p = malloc(sizeof(double) * 3 * n);
        _cleanup_free_ int32_t *idx = malloc(sizeof(int32_t) * n);
        _cleanup_free_ double *nrm = malloc(sizeof(double) * 3 * n);
        int64_t count[3] = {};
        CHECK(p && idx && nrm);

        CHECK_OK(p3_sample_surface(&m, n, 7, p, idx, NULL));
        p3_face_normals_at(&m, idx, n, nrm);
        for (int64_t i = 0; i < n; i++) {
                CHECK(idx[i] >= 0 && idx[i] < 3);
                count[idx[i]]++;
                const double *q = p + 3 * i;
                if (idx[i] == 0)
                        CHECK(q[2] == 0 && q[0] >= 0 && q[1] >= 0 && q[0] + q[1] <= 1 + 1e-15);
                else
                        CHECK(q[2] == 5 && q[0] >= 5 && q[1] >= 5 && q[0] + q[1] <= 11 + 1e-14);
                CHECK(nrm[3 * i + 2] == (idx[i] == 0 ? 1.0 : -1.0));
        }
        CHECK(count[1] == 0);
        CHECK(count[0] > 800 && count[2] > 800);
}

static void test_errors(void) {
        const double v[] = { 0, 0, 0, 1, 0, 0, 2, 0, 0 };
        const int32_t f[] = { 0, 1, 2 };
        const p3_mesh flat = { .nv = 3, .nf = 1, .v = (double *) v, .f = (int32_t *) f };
        const p3_mesh none = { .nv = 3, .nf = 0, .v = (double *) v };
        double p[3];
        int32_t idx[1];
        p3_err err = {};

        CHECK(p3_sample_surface(&flat, 1, 42, p, idx, &err) == -EINVAL);
        CHECK(strstr(err.msg, "area"));
        CHECK(p3_sample_surface(&none, 1, 42, p, idx, NULL) == -EINVAL);
        CHECK(p3_sample_surface(&flat, -1, 42, p, idx, NULL) == -EINVAL);
}

/* center (1, 2, 0.5), scale = max half extent = 2. */
static void test_normalize(void) {
        double p[] = { 0, 0, 0, 2, 4, 0, 1, 1, 1 };
        const double s = 2 + 1e-10;
        const double want[] = { -1 / s, -2 / s, -0.5 / s, 1 / s, 2 / s, -0.5 / s, 0, -1 / s, 0.5 / s };

        p3_normalize_pc(p, 3);
        CHECK(memcmp(p, want, sizeof(want)) == 0);
        p3_normalize_pc(p, 0);
}

static double *f64(const st_file *st, const char *name, int64_t *numel) {
        const st_tensor *t = st_find(st, name);
        CHECK(t && t->dtype == ST_F64);
        double *d = malloc(sizeof(double) * (t->numel + 1));
        CHECK(d);
        memcpy(d, t->data, sizeof(double) * t->numel); /* little-endian doubles */
        *numel = t->numel;
        return d;
}

/* Bitwise, so that -0.0 and 0.0 (or two NaNs) are told apart as numpy's bytes would be. */
static bool same_f64(const char *what, const double *got, const double *ref, int64_t n) {
        for (int64_t i = 0; i < n; i++)
                if (memcmp(got + i, ref + i, sizeof(double)) != 0) {
                        printf("%-20s n=%-8lld first difference at %lld: got %.17g ref %.17g FAIL\n",
                               what, (long long) n, (long long) i, got[i], ref[i]);
                        return false;
                }
        printf("%-20s n=%-8lld bit-exact\n", what, (long long) n);
        return true;
}

static void test_golden(const char *path, const char *label) {
        _cleanup_(st_closep) st_file *st = test_open(path);
        int64_t nv, nf, na, np, ni, nn, nz;
        _cleanup_free_ double *v = f64(st, "mesh_vertices", &nv);
        _cleanup_free_ int64_t *f64i = test_i64(st, "mesh_faces", &nf);
        _cleanup_free_ double *areas = f64(st, "face_areas", &na);
        _cleanup_free_ double *pts_ref = f64(st, "points_org", &np);
        _cleanup_free_ int64_t *idx_ref = test_i64(st, "face_idx", &ni);
        _cleanup_free_ double *nrm_ref = f64(st, "normals", &nn);
        _cleanup_free_ double *pn_ref = f64(st, "points_normalized", &nz);
        _cleanup_free_ int32_t *f = malloc(sizeof(int32_t) * nf);
        CHECK(f);
        for (int64_t i = 0; i < nf; i++)
                f[i] = (int32_t) f64i[i];
        const p3_mesh m = { .nv = nv / 3, .nf = nf / 3, .v = v, .f = f };
        const int64_t n = ni;
        CHECK(na == m.nf && np == 3 * n && nn == 3 * n && nz == 3 * n);

        printf("%s: %lld faces, %lld samples\n", label, (long long) m.nf, (long long) n);
        _cleanup_free_ double *area = malloc(sizeof(double) * m.nf);
        _cleanup_free_ double *pts = malloc(sizeof(double) * 3 * n);
        _cleanup_free_ int32_t *idx = malloc(sizeof(int32_t) * n);
        _cleanup_free_ int64_t *idx64 = malloc(sizeof(int64_t) * n);
        _cleanup_free_ double *nrm = malloc(sizeof(double) * 3 * n);
        CHECK(area && pts && idx && idx64 && nrm);

        p3_mesh_face_geometry(&m, area, NULL);
        CHECK(same_f64("face_areas", area, areas, m.nf));
        CHECK_OK(p3_sample_surface(&m, n, 42, pts, idx, NULL));
        for (int64_t i = 0; i < n; i++)
                idx64[i] = idx[i];
        CHECK(test_equal_i64("face_idx", idx64, idx_ref, n));
        CHECK(same_f64("points_org", pts, pts_ref, 3 * n));
        p3_face_normals_at(&m, idx, n, nrm);
        CHECK(same_f64("normals", nrm, nrm_ref, 3 * n));
        p3_normalize_pc(pts, n);
        CHECK(same_f64("points_normalized", pts, pn_ref, 3 * n));
}

/* A 500 × 500 grid of bumped quads (500,000 faces), 100,000 samples: prints the time. */
static void test_speed(void) {
        const int g = 500;
        const int64_t nv = (int64_t) (g + 1) * (g + 1), nf = 2 * (int64_t) g * g, n = 100000;
        _cleanup_free_ double *v = malloc(sizeof(double) * 3 * nv);
        _cleanup_free_ int32_t *f = malloc(sizeof(int32_t) * 3 * nf);
        _cleanup_free_ double *p = malloc(sizeof(double) * 3 * n);
        _cleanup_free_ int32_t *idx = malloc(sizeof(int32_t) * n);
        CHECK(v && f && p && idx);

        for (int i = 0; i <= g; i++)
                for (int j = 0; j <= g; j++) {
                        double *q = v + 3 * ((int64_t) i * (g + 1) + j);
                        q[0] = i, q[1] = j, q[2] = sin(i * 0.1) * cos(j * 0.07);
                }
        int32_t *t = f;
        for (int i = 0; i < g; i++)
                for (int j = 0; j < g; j++) {
                        int32_t a = i * (g + 1) + j, b = a + g + 1;
                        *t++ = a, *t++ = b, *t++ = b + 1;
                        *t++ = a, *t++ = b + 1, *t++ = a + 1;
                }
        const p3_mesh m = { .nv = nv, .nf = nf, .v = v, .f = f };
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CHECK_OK(p3_sample_surface(&m, n, 42, p, idx, NULL));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("sample_surface: %lld faces, %lld points in %.1f ms\n", (long long) nf,
               (long long) n, (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
}

int main(void) {
        test_draw_order();
        test_zero_area_face();
        test_errors();
        test_normalize();
        test_speed();

        _cleanup_free_ char *truck = test_replay_path("small_truck_20k_64");
        if (truck)
                test_golden(truck, "small_truck");
        else
                printf("SKIP small_truck replay: not in tests/data nor ../shared\n");

        _cleanup_free_ char *obj = test_replay_path("objaverse_00200996");
        if (obj)
                test_golden(obj, "objaverse_00200996");
        else
                printf("SKIP objaverse_00200996 replay: ../shared is absent\n");
        printf("sample: all checks passed\n");
        return 0;
}
