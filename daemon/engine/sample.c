/* SPDX-License-Identifier: MIT */
/* Surface sampling as trimesh.sample.sample_surface does it, with every operation in numpy's
 * order: the sampled positions feed the model and the point-to-face vote, so a point one ulp
 * off can flip a later tie. */
#include "sample.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "macro.h"
#include "numpy-compat.h"
#include "rng.h"

/* np.cumsum: a plain running sum, not numpy's pairwise one. */
static int area_cumsum(const p3_mesh *m, double **ret, p3_err *err) {
        _cleanup_free_ double *cum = malloc(sizeof(double) * (size_t) m->nf);
        if (!cum)
                return p3_errf(err, -ENOMEM, "Out of memory for %" PRId64 " face areas.", m->nf);
        p3_mesh_face_geometry(m, cum, NULL);
        for (int64_t i = 1; i < m->nf; i++)
                cum[i] += cum[i - 1];
        double total = cum[m->nf - 1];
        if (!(total > 0) || !isfinite(total))
                return p3_errf(err, -EINVAL, "The mesh has no finite surface area to sample.");
        *ret = TAKE_PTR(cum);
        return 0;
}

/* np.searchsorted(cum, u, side='left'): the first i with cum[i] >= u. u < cum[n-1] except
 * when the product rounds up to the total, and then the last face with that sum is found. */
static int32_t search_left(const double *cum, int64_t n, double u) {
        int64_t lo = 0, hi = n;
        while (lo < hi) {
                int64_t mid = lo + (hi - lo) / 2;
                if (cum[mid] < u)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return (int32_t) MIN(lo, n - 1);
}

/* A point on face f from the pair (r0, r1): pairs outside the triangle are folded back as
 * |r − 1|, then ((v1 − v0)·r0 + (v2 − v0)·r1) + v0 — trimesh adds the origin last. */
NO_FP_CONTRACT static void place_point(const p3_mesh *m, int32_t f, double r0, double r1,
                                       double *p) {
        const int32_t *t = m->f + 3 * (int64_t) f;
        const double *v0 = m->v + 3 * (int64_t) t[0], *v1 = m->v + 3 * (int64_t) t[1],
                     *v2 = m->v + 3 * (int64_t) t[2];

        if (r0 + r1 > 1.0) {
                r0 = fabs(r0 - 1.0);
                r1 = fabs(r1 - 1.0);
        }
        for (int k = 0; k < 3; k++) {
                double e1 = v1[k] - v0[k], e2 = v2[k] - v0[k];
                double s = e1 * r0 + e2 * r1;
                p[k] = s + v0[k];
        }
}

NO_FP_CONTRACT int p3_sample_surface(const p3_mesh *m, int64_t n, uint64_t seed, double *pts,
                                     int32_t *face_idx, p3_err *err) {
        _cleanup_free_ double *cum = NULL;
        p3_pcg64 g;

        if (n < 0)
                return p3_errf(err, -EINVAL, "Cannot draw %" PRId64 " surface samples.", n);
        if (m->nf <= 0 || m->nv <= 0)
                return p3_errf(err, -EINVAL, "The mesh has no faces to sample.");
        int r = area_cumsum(m, &cum, err);
        if (r < 0)
                return r;

        /* random(n) * total, all n face draws before any position draw. */
        double total = cum[m->nf - 1];
        p3_pcg64_seed(&g, seed);
        for (int64_t i = 0; i < n; i++)
                face_idx[i] = search_left(cum, m->nf, p3_pcg64_double(&g) * total);

        /* random((n, 2, 1)): r0 then r1 for each sample in turn. */
        for (int64_t i = 0; i < n; i++) {
                double r0 = p3_pcg64_double(&g);
                double r1 = p3_pcg64_double(&g);
                place_point(m, face_idx[i], r0, r1, pts + 3 * i);
        }
        return 0;
}

void p3_face_normals_at(const p3_mesh *m, const int32_t *face_idx, int64_t n, double *normals) {
        for (int64_t i = 0; i < n; i++) {
                /* A one-face view, so the normal is rounded by the one definition in mesh.c. */
                const p3_mesh one = { .nv = m->nv, .nf = 1, .v = m->v,
                                      .f = m->f + 3 * (int64_t) face_idx[i] };
                p3_mesh_face_geometry(&one, NULL, normals + 3 * i);
        }
}

NO_FP_CONTRACT void p3_normalize_pc(double *pts, int64_t n) {
        double lo[3] = { INFINITY, INFINITY, INFINITY }, hi[3] = { -INFINITY, -INFINITY, -INFINITY };
        double center[3], scale = 0;

        if (n <= 0)
                return;
        for (int64_t i = 0; i < n; i++)
                for (int k = 0; k < 3; k++) {
                        lo[k] = MIN(lo[k], pts[3 * i + k]);
                        hi[k] = MAX(hi[k], pts[3 * i + k]);
                }
        for (int k = 0; k < 3; k++) {
                center[k] = (hi[k] + lo[k]) / 2;
                scale = MAX(scale, fabs((hi[k] - lo[k]) / 2));
        }
        double div = scale + 1e-10;
        for (int64_t i = 0; i < 3 * n; i++)
                pts[i] = (pts[i] - center[i % 3]) / div;
}
