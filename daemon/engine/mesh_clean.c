/* SPDX-License-Identifier: MIT */
/* clean_mesh + Trimesh(vertices, faces), step by step as trimesh 5.0.0rc1 runs it (see
 * mesh_clean.h). Vertex order and face order are part of the result: face indices are what the
 * sampler returns and what every later stage labels, so each step keeps trimesh's order. */
#include "mesh_clean.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "numpy-compat.h"

/* tol.merge: 8 digits for the vertex key, and the thinnest triangle kept. */
#define MERGE_SCALE 1e8
#define MIN_TRIANGLE_HEIGHT 1e-8

/* A key of three int64 per item; false skips the item. */
typedef bool (*key_fn)(const void *ctx, int64_t i, int64_t key[3]);

static uint64_t mix64(uint64_t x) {
        x ^= x >> 30;
        x *= UINT64_C(0xbf58476d1ce4e5b9);
        x ^= x >> 27;
        x *= UINT64_C(0x94d049bb133111eb);
        return x ^ (x >> 31);
}

static uint64_t hash_key(const int64_t k[3]) {
        return mix64((uint64_t) k[0] ^ mix64((uint64_t) k[1] ^ mix64((uint64_t) k[2])));
}

/* first[i] = the smallest item with the same key (-1 for skipped items): what numpy's
 * unique(return_index) keeps, found with an open-addressed table instead of a sort. */
static int first_occurrence(const void *ctx, int64_t n, key_fn key, int32_t *first) {
        size_t size = 16;
        while (size < 2 * (size_t) n)
                size <<= 1;
        _cleanup_free_ int32_t *table = malloc(sizeof(int32_t) * size);
        if (!table)
                return -ENOMEM;
        memset(table, 0xff, sizeof(int32_t) * size);

        for (int64_t i = 0; i < n; i++) {
                int64_t k[3], o[3];
                first[i] = -1;
                if (!key(ctx, i, k))
                        continue;
                for (size_t s = hash_key(k) & (size - 1);; s = (s + 1) & (size - 1)) {
                        if (table[s] < 0) {
                                table[s] = (int32_t) i;
                                first[i] = (int32_t) i;
                                break;
                        }
                        key(ctx, table[s], o);
                        if (o[0] == k[0] && o[1] == k[1] && o[2] == k[2]) {
                                first[i] = table[s];
                                break;
                        }
                }
        }
        return 0;
}

/* numpy's round() is half to even and astype(int64) turns NaN, ±inf and anything out of range
 * into INT64_MIN on x86 (so all of those merge with each other). */
static int64_t merge_key(double x) {
        double r = nearbyint(x * MERGE_SCALE);
        if (!(r >= -9223372036854775808.0 && r < 9223372036854775808.0))
                return INT64_MIN;
        return (int64_t) r;
}

typedef struct vertex_keys {
        const p3_mesh *m;
        const bool *referenced; /* only vertices used by a face take part */
} vertex_keys;

static bool vertex_key(const void *ctx, int64_t i, int64_t key[3]) {
        const vertex_keys *vk = ctx;
        if (!vk->referenced[i])
                return false;
        for (int k = 0; k < 3; k++)
                key[k] = merge_key(vk->m->v[3 * i + k]);
        return true;
}

static bool face_key(const void *ctx, int64_t i, int64_t key[3]) {
        const p3_mesh *m = ctx;
        int64_t a = m->f[3 * i], b = m->f[3 * i + 1], c = m->f[3 * i + 2], t;
        if (a > b)
                t = a, a = b, b = t;
        if (b > c)
                t = b, b = c, c = t;
        if (a > b)
                t = a, a = b, b = t;
        key[0] = a, key[1] = b, key[2] = c;
        return true;
}

/* Without faces every vertex counts as used (trimesh's rule for point-only geometry). */
static bool *referenced_vertices(const p3_mesh *m) {
        bool *ref = malloc(sizeof(bool) * (size_t) m->nv + 1);
        if (!ref)
                return NULL;
        memset(ref, m->nf == 0, sizeof(bool) * (size_t) m->nv);
        for (int64_t i = 0; i < 3 * m->nf; i++)
                ref[m->f[i]] = true;
        return ref;
}

/* grouping.merge_vertices: the first used vertex of each key survives, numbered in order of
 * first occurrence (unique_rows(keep_order=True)); unused vertices go. */
int p3_mesh_merge_vertices(p3_mesh *m) {
        if (m->nv == 0)
                return 0;
        _cleanup_free_ bool *ref = referenced_vertices(m);
        _cleanup_free_ int32_t *first = malloc(sizeof(int32_t) * (size_t) m->nv);
        if (!ref || !first)
                return -ENOMEM;
        int r = first_occurrence(&(vertex_keys) { m, ref }, m->nv, vertex_key, first);
        if (r < 0)
                return r;

        /* first[i] <= i, so one forward pass numbers the survivors and maps the rest. */
        int64_t kept = 0;
        for (int64_t i = 0; i < m->nv; i++) {
                if (first[i] == i) {
                        memmove(m->v + 3 * kept, m->v + 3 * i, sizeof(double) * 3);
                        first[i] = (int32_t) kept++;
                } else if (first[i] >= 0)
                        first[i] = first[first[i]];
        }
        for (int64_t i = 0; i < 3 * m->nf; i++)
                m->f[i] = first[m->f[i]];
        m->nv = kept;
        return 0;
}

/* triangles.nondegenerate: both sides of the triangle's 2D oriented box, 2·area / |v1 − v0|
 * and 2·area / |v2 − v0| (0 for an edge not longer than tol.merge), must exceed tol.merge.
 * NaN fails the comparison, so faces with non-finite corners go too. */
NO_FP_CONTRACT static bool nondegenerate(const p3_mesh *m, int64_t i, double area) {
        const int32_t *t = m->f + 3 * i;
        const double *v0 = m->v + 3 * (int64_t) t[0], *v1 = m->v + 3 * (int64_t) t[1],
                     *v2 = m->v + 3 * (int64_t) t[2];
        double a[3], b[3];

        for (int k = 0; k < 3; k++) {
                a[k] = v1[k] - v0[k];
                b[k] = v2[k] - v0[k];
        }
        double la = sqrt((a[0] * a[0] + a[1] * a[1]) + a[2] * a[2]);
        double lb = sqrt((b[0] * b[0] + b[1] * b[1]) + b[2] * b[2]);
        double box0 = la > MIN_TRIANGLE_HEIGHT ? (area * 2) / la : 0.0;
        double box1 = lb > MIN_TRIANGLE_HEIGHT ? (area * 2) / lb : 0.0;
        return box0 > MIN_TRIANGLE_HEIGHT && box1 > MIN_TRIANGLE_HEIGHT;
}

/* Trimesh.update_faces(mask): kept faces keep their order, face_src follows. */
static void keep_faces(p3_mesh *m, const bool *keep) {
        int64_t n = 0;
        for (int64_t i = 0; i < m->nf; i++) {
                if (!keep[i])
                        continue;
                memmove(m->f + 3 * n, m->f + 3 * i, sizeof(int32_t) * 3);
                if (m->face_src)
                        m->face_src[n] = m->face_src[i];
                n++;
        }
        m->nf = n;
}

/* process(validate=True), first half: unique_faces() & nondegenerate_faces(). */
int p3_mesh_drop_bad_faces(p3_mesh *m) {
        if (m->nf == 0)
                return 0;
        _cleanup_free_ double *area = malloc(sizeof(double) * (size_t) m->nf);
        _cleanup_free_ int32_t *first = malloc(sizeof(int32_t) * (size_t) m->nf);
        _cleanup_free_ bool *keep = malloc(sizeof(bool) * (size_t) m->nf);
        if (!area || !first || !keep)
                return -ENOMEM;

        p3_mesh_face_geometry(m, area, NULL);
        int r = first_occurrence(m, m->nf, face_key, first);
        if (r < 0)
                return r;
        for (int64_t i = 0; i < m->nf; i++)
                keep[i] = first[i] == i && nondegenerate(m, i, area[i]);
        keep_faces(m, keep);
        return 0;
}

/* remove_infinite_values: vertices with a non-finite coordinate go, and (trimesh's
 * update_vertices with a boolean mask) a face that used one is pointed at vertex 0. */
static int drop_nonfinite_vertices(p3_mesh *m) {
        _cleanup_free_ int32_t *inverse = malloc(sizeof(int32_t) * (size_t) m->nv + 1);
        if (!inverse)
                return -ENOMEM;

        int64_t kept = 0;
        for (int64_t i = 0; i < m->nv; i++) {
                const double *p = m->v + 3 * i;
                if (!isfinite(p[0]) || !isfinite(p[1]) || !isfinite(p[2])) {
                        inverse[i] = 0;
                        continue;
                }
                memmove(m->v + 3 * kept, p, sizeof(double) * 3);
                inverse[i] = (int32_t) kept++;
        }
        if (kept == m->nv)
                return 0;
        for (int64_t i = 0; i < 3 * m->nf; i++)
                m->f[i] = inverse[m->f[i]];
        m->nv = kept;
        return 0;
}

/* Trimesh.process(validate=False): the constructor's cleanup. */
static int process(p3_mesh *m) {
        int r = drop_nonfinite_vertices(m);
        if (r < 0)
                return r;
        return p3_mesh_merge_vertices(m);
}

static int check_input(const p3_mesh *in, p3_err *err) {
        if (in->nv < 0 || in->nf < 0 || in->nv > INT32_MAX || in->nf > INT32_MAX ||
            (in->nv > 0 && !in->v) || (in->nf > 0 && !in->f))
                return p3_errf(err, -EINVAL, "The mesh has invalid sizes (%" PRId64
                               " vertices, %" PRId64 " faces).", in->nv, in->nf);
        for (int64_t i = 0; i < 3 * in->nf; i++)
                if (in->f[i] < 0 || in->f[i] >= in->nv)
                        return p3_errf(err, -EINVAL, "Face %" PRId64 " uses vertex %" PRId32
                                       ", but the mesh has %" PRId64 " vertices.",
                                       i / 3, in->f[i], in->nv);
        return 0;
}

int p3_mesh_clean(const p3_mesh *in, p3_mesh *out, p3_err *err) {
        _cleanup_(p3_mesh_done) p3_mesh m = {};
        int r;

        *out = (p3_mesh) {};
        r = check_input(in, err);
        if (r < 0)
                return r;
        r = p3_mesh_copy(in, &m);
        if (r < 0)
                return p3_errf(err, r, "Out of memory copying a mesh of %" PRId64 " faces.",
                               in->nf);

        /* trimesh.load's own process() (a no-op on a mesh it loaded), clean_mesh's
         * merge_vertices, process(validate=True), then Trimesh(vertices, faces). */
        r = process(&m);
        if (r >= 0)
                r = p3_mesh_merge_vertices(&m);
        if (r >= 0)
                r = p3_mesh_drop_bad_faces(&m);
        if (r >= 0)
                r = p3_mesh_fix_normals(&m);
        if (r >= 0)
                r = process(&m);
        if (r >= 0)
                r = process(&m);
        if (r < 0)
                return p3_errf(err, r, "Out of memory cleaning a mesh of %" PRId64 " faces.",
                               in->nf);

        *out = m;
        m = (p3_mesh) {};
        return 0;
}
