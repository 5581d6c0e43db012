/* SPDX-License-Identifier: MIT */
/* The mesh type's lifetime and the per-face geometry every later stage reads (sampling weights,
 * normals, region areas). The geometry is rounded exactly as trimesh rounds it, because the
 * areas pick the sampled faces and the normals are model input. */
#include "mesh.h"
#include "numpy-compat.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* numpy evaluates every product and difference as its own array operation: a fused
 * multiply-add would round differently, so contraction stays off whatever the target. */
/* trimesh's tol.zero (100 × float64 resolution): shorter cross products have no normal. */
#define NORMAL_MIN_LENGTH 1e-13

static void free_names(char **names, int32_t n) {
        if (!names)
                return;
        for (int32_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

void p3_mesh_done(p3_mesh *m) {
        if (!m)
                return;
        free(m->v);
        free(m->f);
        free(m->face_src);
        free_names(m->src_names, m->n_src);
        *m = (p3_mesh) {};
}

static void *dup_array(const void *src, size_t n, size_t size) {
        void *p = malloc(n * size + 1); /* + 1: a zero-length copy is still a valid pointer */
        if (p && n)
                memcpy(p, src, n * size);
        return p;
}

static int copy_names(const p3_mesh *src, p3_mesh *dst) {
        dst->src_names = calloc((size_t) src->n_src + 1, sizeof(char *));
        if (!dst->src_names)
                return -ENOMEM;
        dst->n_src = src->n_src;
        for (int32_t i = 0; i < src->n_src; i++) {
                if (!src->src_names[i])
                        continue;
                dst->src_names[i] = strdup(src->src_names[i]);
                if (!dst->src_names[i])
                        return -ENOMEM;
        }
        return 0;
}

int p3_mesh_copy(const p3_mesh *src, p3_mesh *dst) {
        _cleanup_(p3_mesh_done) p3_mesh m = { .nv = src->nv, .nf = src->nf };

        *dst = (p3_mesh) {};
        if (src->nv < 0 || src->nf < 0 || src->n_src < 0)
                return -EINVAL;
        m.v = dup_array(src->v, (size_t) src->nv * 3, sizeof(double));
        m.f = dup_array(src->f, (size_t) src->nf * 3, sizeof(int32_t));
        if (!m.v || !m.f)
                return -ENOMEM;
        if (src->face_src) {
                m.face_src = dup_array(src->face_src, (size_t) src->nf, sizeof(int32_t));
                if (!m.face_src)
                        return -ENOMEM;
        }
        if (src->src_names) {
                int r = copy_names(src, &m);
                if (r < 0)
                        return r;
        }
        *dst = m;
        m = (p3_mesh) {};
        return 0;
}

/* trimesh.triangles.cross: (v1 − v0) × (v2 − v1), the second edge starting at v1, each
 * component a difference of two rounded products (numpy's cross). */
NO_FP_CONTRACT static void face_cross(const double *v, const int32_t *f, double c[3]) {
        const double *p0 = v + 3 * (int64_t) f[0], *p1 = v + 3 * (int64_t) f[1],
                     *p2 = v + 3 * (int64_t) f[2];
        double a[3], b[3];

        for (int k = 0; k < 3; k++) {
                a[k] = p1[k] - p0[k];
                b[k] = p2[k] - p1[k];
        }
        c[0] = a[1] * b[2] - a[2] * b[1];
        c[1] = a[2] * b[0] - a[0] * b[2];
        c[2] = a[0] * b[1] - a[1] * b[0];
}

/* area = sqrt(sum(c²)) / 2 and normal = c · (1 / sqrt(dot(c·c, ones))), both summed x, y, z
 * in that order; util.unitize multiplies by the reciprocal instead of dividing, which rounds
 * differently, and leaves faces at or under tol.zero at (0, 0, 0). */
NO_FP_CONTRACT void p3_mesh_face_geometry(const p3_mesh *m, double *area, double *normal) {
        for (int64_t i = 0; i < m->nf; i++) {
                double c[3];
                face_cross(m->v, m->f + 3 * i, c);
                double sq = (c[0] * c[0] + c[1] * c[1]) + c[2] * c[2];
                double len = sqrt(sq);

                if (area)
                        area[i] = len / 2.0;
                if (normal) {
                        double inv = len > NORMAL_MIN_LENGTH ? 1.0 / len : 0.0;
                        for (int k = 0; k < 3; k++)
                                normal[3 * i + k] = len > NORMAL_MIN_LENGTH ? c[k] * inv : 0.0;
                }
        }
}
