/* SPDX-License-Identifier: MIT */
/* Farthest point sampling exactly as fpsample computes it (spec §5 step 4): the prompts are
 * the points it picks, so one differently rounded distance can change every prompt after it. */
#include "fps.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "macro.h"
#include "numpy-compat.h"

/* Fold the new point s into the running minimum and return the argmax, ties to the LAST index
 * (fpsample's max_by / >=). The squared distance is rounded to float32 after every operation,
 * x then y then z: fused multiply-adds would round differently, so contraction is turned off
 * for this function whatever the target or -ffp-contract default (gnu11 allows fusing). */
NO_FP_CONTRACT static int64_t fps_update(const float *pts, int64_t n, int64_t s,
                                         float *dist_min) {
        const float sx = pts[3 * s], sy = pts[3 * s + 1], sz = pts[3 * s + 2];
        float best = -INFINITY;
        int64_t arg = 0;

        for (int64_t i = 0; i < n; i++) {
                float dx = pts[3 * i] - sx, dy = pts[3 * i + 1] - sy, dz = pts[3 * i + 2] - sz;
                float xx = dx * dx, yy = dy * dy, zz = dz * dz;
                float d = (xx + yy) + zz;
                float m = d < dist_min[i] ? d : dist_min[i];
                dist_min[i] = m;
                if (m >= best) {
                        best = m;
                        arg = i;
                }
        }
        return arg;
}

int p3_fps(const float *pts, int64_t n, int64_t k, int64_t start, int64_t *out) {
        if (n <= 0 || k < 0 || k > n || start < 0 || start >= n)
                return -EINVAL;
        if (k == 0)
                return 0;

        _cleanup_free_ float *dist_min = malloc(sizeof(float) * n);
        if (!dist_min)
                return -ENOMEM;
        for (int64_t i = 0; i < n; i++)
                dist_min[i] = INFINITY;

        out[0] = start;
        for (int64_t j = 1; j < k; j++)
                out[j] = fps_update(pts, n, out[j - 1], dist_min);
        return 0;
}
