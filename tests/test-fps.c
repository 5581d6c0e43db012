/* SPDX-License-Identifier: MIT */
/* Farthest point sampling: hand cases (ties go to the last index), a float32 reference with
 * forced rounding on random points, and the golden prompts. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fps.h"
#include "test-util.h"

static void test_line(void) {
        const float p[] = { 0, 0, 0, 1, 0, 0, 3, 0, 0, 10, 0, 0 };
        const int64_t want[] = { 0, 3, 2, 1 };
        int64_t out[4];

        CHECK_OK(p3_fps(p, 4, 4, 0, out));
        for (int i = 0; i < 4; i++)
                CHECK(out[i] == want[i]);
}

static void test_ties(void) {
        /* From the middle both ends are at distance 1: the last index wins. */
        const float p[] = { -1, 0, 0, 0, 0, 0, 1, 0, 0 };
        int64_t out[3];

        CHECK_OK(p3_fps(p, 3, 3, 1, out));
        CHECK(out[0] == 1 && out[1] == 2 && out[2] == 0);

        /* All points equal: every distance is 0, so the last index, again and again. */
        const float q[] = { 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2 };
        int64_t o2[3];
        CHECK_OK(p3_fps(q, 4, 3, 1, o2));
        CHECK(o2[0] == 1 && o2[1] == 3 && o2[2] == 3);
}

static void test_errors(void) {
        const float p[] = { 0, 0, 0, 1, 1, 1 };
        int64_t out[3];

        CHECK(p3_fps(p, 2, 3, 0, out) == -EINVAL);
        CHECK(p3_fps(p, 2, 1, 2, out) == -EINVAL);
        CHECK(p3_fps(p, 2, 1, -1, out) == -EINVAL);
        CHECK(p3_fps(p, 0, 0, 0, out) == -EINVAL);
        CHECK_OK(p3_fps(p, 2, 0, 0, out));
        CHECK_OK(p3_fps(p, 2, 1, 1, out));
        CHECK(out[0] == 1);
}

/* Reference: every intermediate stored through a volatile float, so nothing can be fused. */
static void fps_reference(const float *p, int64_t n, int64_t k, int64_t start, int64_t *out) {
        float *dm = malloc(sizeof(float) * n);
        CHECK(dm);
        for (int64_t i = 0; i < n; i++)
                dm[i] = INFINITY;
        out[0] = start;
        for (int64_t j = 1; j < k; j++) {
                int64_t s = out[j - 1], arg = 0;
                float best = -INFINITY;
                for (int64_t i = 0; i < n; i++) {
                        volatile float dx = p[3 * i] - p[3 * s], dy = p[3 * i + 1] - p[3 * s + 1],
                                       dz = p[3 * i + 2] - p[3 * s + 2];
                        volatile float xx = dx * dx, yy = dy * dy, zz = dz * dz;
                        volatile float xy = xx + yy;
                        volatile float d = xy + zz;
                        if (d < dm[i])
                                dm[i] = d;
                        if (dm[i] >= best) {
                                best = dm[i];
                                arg = i;
                        }
                }
                out[j] = arg;
        }
        free(dm);
}

static void test_random(void) {
        const int64_t n = 5000, k = 64;
        float *p = malloc(sizeof(float) * 3 * n);
        int64_t got[64], want[64];
        uint64_t s = 0x9e3779b97f4a7c15ull;

        CHECK(p);
        for (int64_t i = 0; i < 3 * n; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                /* A coarse lattice makes exact distance ties common. */
                p[i] = (float) ((s >> 40) % 64) * 0.03125f - 1.0f + (float) (s >> 60) * 1e-7f;
        }
        CHECK_OK(p3_fps(p, n, k, 17, got));
        fps_reference(p, n, k, 17, want);
        for (int64_t j = 0; j < k; j++)
                CHECK(got[j] == want[j]);
        free(p);
}


/* Golden prompts: fpsample on points_heads from the recorded start. */
static bool test_golden(const char *name) {
        _cleanup_free_ char *path = test_golden_case(name);
        if (!path) {
                printf("note: golden %s case not found, skipping its FPS check\n", name);
                return false;
        }

        _cleanup_(st_closep) st_file *f = test_open(path);
        int64_t np3, k, kp;
        _cleanup_free_ float *pts = test_f32(f, "points_heads", &np3);
        _cleanup_free_ int64_t *idx = test_i64(f, "prompt_idx", &k);
        _cleanup_free_ float *prompt = test_f32(f, "prompt", &kp);
        int64_t n = np3 / 3;
        CHECK(kp == 3 * k);

        _cleanup_free_ int64_t *got = malloc(sizeof(int64_t) * k);
        CHECK(got);
        CHECK_OK(p3_fps(pts, n, k, idx[0], got));
        printf("[%s] ", name);
        CHECK(test_equal_i64("prompt_idx", got, idx, k));
        for (int64_t j = 0; j < k; j++)
                CHECK(memcmp(pts + 3 * got[j], prompt + 3 * j, 3 * sizeof(float)) == 0);
        return true;
}

int main(void) {
        test_line();
        test_ties();
        test_errors();
        test_random();
        printf("fps: hand cases and float32 reference ok\n");

        bool any = test_golden("tiny");
        any |= test_golden("full");
        if (!any)
                printf("note: no golden data; only the hand cases ran\n");
        return 0;
}
