/* SPDX-License-Identifier: MIT */
/* The mesh's edges grouped the way trimesh groups them, shared by the face adjacency
 * (mesh_adjacency.c) and the winding repair (mesh_winding.c).
 *
 * trimesh's group_rows(require_count=2) packs an edge (lo, hi) into the int64 lo ^ (hi << 32)
 * and argsorts it; the groups therefore come out ordered by (hi, lo). The unstable argsort only
 * permutes the rows inside a group, and each face pair is sorted afterwards, so the pair order
 * is fully determined: two stable counting sorts (by lo, then by hi) reproduce it in O(F + V). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mesh.h"

void p3_edges_done(p3_edges *e) {
        free(e->lo);
        free(e->hi);
        free(e->order);
        *e = (p3_edges) {};
}

/* Stable counting sort of the indices `in` by key[in[i]] in [0, nv). */
static int sort_by(const int32_t *key, const int64_t *in, int64_t n, int64_t nv, int64_t *out) {
        _cleanup_free_ int64_t *start = calloc(nv + 1, sizeof(int64_t));
        if (!start)
                return -ENOMEM;
        for (int64_t i = 0; i < n; i++)
                start[key[in[i]] + 1]++;
        for (int64_t v = 0; v < nv; v++)
                start[v + 1] += start[v];
        for (int64_t i = 0; i < n; i++)
                out[start[key[in[i]]]++] = in[i];
        return 0;
}

int p3_mesh_edges(const p3_mesh *m, p3_edges *e) {
        e->n = 3 * m->nf;
        e->lo = malloc(sizeof(int32_t) * (e->n + 1));
        e->hi = malloc(sizeof(int32_t) * (e->n + 1));
        e->order = malloc(sizeof(int64_t) * (e->n + 1));
        _cleanup_free_ int64_t *tmp = malloc(sizeof(int64_t) * (e->n + 1));
        if (!e->lo || !e->hi || !e->order || !tmp)
                return -ENOMEM;

        for (int64_t f = 0; f < m->nf; f++)
                for (int k = 0; k < 3; k++) {
                        int32_t a = m->f[3 * f + k], b = m->f[3 * f + (k + 1) % 3];
                        if (a < 0 || b < 0 || a >= m->nv || b >= m->nv)
                                return -EINVAL;
                        e->lo[3 * f + k] = MIN(a, b);
                        e->hi[3 * f + k] = MAX(a, b);
                }
        for (int64_t i = 0; i < e->n; i++)
                tmp[i] = i;
        int r = sort_by(e->lo, tmp, e->n, m->nv, e->order);
        if (r < 0)
                return r;
        r = sort_by(e->hi, e->order, e->n, m->nv, tmp);
        if (r < 0)
                return r;
        memcpy(e->order, tmp, sizeof(int64_t) * e->n);
        return 0;
}

int64_t p3_edges_group_end(const p3_edges *e, int64_t i) {
        int64_t s = e->order[i], j = i + 1;
        while (j < e->n && e->lo[e->order[j]] == e->lo[s] && e->hi[e->order[j]] == e->hi[s])
                j++;
        return j;
}

int64_t p3_edges_face_pairs(const p3_edges *e, int32_t *pairs) {
        int64_t np = 0;
        for (int64_t i = 0, j; i < e->n; i = j) {
                j = p3_edges_group_end(e, i);
                if (j - i != 2)
                        continue;
                int32_t a = (int32_t) (e->order[i] / 3), b = (int32_t) (e->order[i + 1] / 3);
                if (a == b)
                        continue;
                pairs[2 * np] = MIN(a, b);
                pairs[2 * np + 1] = MAX(a, b);
                np++;
        }
        return np;
}
