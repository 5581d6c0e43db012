/* SPDX-License-Identifier: MIT */
/* Face adjacency as upstream builds it (spec §2.2, PIPELINE.md §3): trimesh's face_adjacency
 * pairs, in its order, then build_adjacent_faces_numba's padded table.
 *
 * trimesh groups the sorted edges with group_rows(require_count=2), which packs an edge (lo, hi)
 * into the int64 lo ^ (hi << 32) and argsorts it; the groups therefore come out ordered by
 * (hi, lo). The unstable argsort only permutes the two rows inside a group, and each pair is
 * sorted afterwards, so the pair order is fully determined: two stable counting sorts (by lo,
 * then by hi) reproduce it in O(F + V). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mesh.h"

typedef struct edge_list {
        int64_t n;
        int32_t *lo, *hi; /* [n], edge e belongs to face e / 3 */
        int64_t *order;   /* [n] edges sorted by (hi, lo) */
} edge_list;

static void edge_list_done(edge_list *e) {
        free(e->lo);
        free(e->hi);
        free(e->order);
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

static int edges_sorted(const p3_mesh *m, edge_list *e) {
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

/* Edges used by exactly two face slots of two different faces give a pair (a < b), in sorted
 * edge order. pairs must hold n / 2 rows. */
static int64_t edge_pairs(const edge_list *e, int32_t *pairs) {
        int64_t np = 0;

        for (int64_t s = 0, t; s < e->n; s = t) {
                int64_t first = e->order[s];
                for (t = s + 1; t < e->n; t++) {
                        int64_t x = e->order[t];
                        if (e->lo[x] != e->lo[first] || e->hi[x] != e->hi[first])
                                break;
                }
                if (t - s != 2)
                        continue;
                int32_t a = (int32_t) (first / 3), b = (int32_t) (e->order[s + 1] / 3);
                if (a == b)
                        continue;
                pairs[2 * np] = MIN(a, b);
                pairs[2 * np + 1] = MAX(a, b);
                np++;
        }
        return np;
}

/* build_adjacent_faces_numba: rows up to the largest face in a pair, neighbours in pair order. */
static int fill_table(const int32_t *pairs, int64_t np, p3_adjacency *adj) {
        int64_t rows = 0;
        for (int64_t i = 0; i < 2 * np; i++)
                rows = MAX(rows, (int64_t) pairs[i] + 1);

        _cleanup_free_ int32_t *count = calloc(rows + 1, sizeof(int32_t));
        if (!count)
                return -ENOMEM;
        int deg = 0;
        for (int64_t i = 0; i < 2 * np; i++) {
                int32_t d = ++count[pairs[i]];
                deg = MAX(deg, d);
        }

        int32_t *nbr = malloc(sizeof(int32_t) * (rows * deg + 1));
        if (!nbr)
                return -ENOMEM;
        for (int64_t i = 0; i < rows * deg; i++)
                nbr[i] = -1;
        memset(count, 0, sizeof(int32_t) * rows);
        for (int64_t i = 0; i < np; i++) {
                int32_t a = pairs[2 * i], b = pairs[2 * i + 1];
                nbr[(int64_t) a * deg + count[a]++] = b;
                nbr[(int64_t) b * deg + count[b]++] = a;
        }
        *adj = (p3_adjacency) { .rows = rows, .deg = deg, .nbr = nbr };
        return 0;
}

/* A mesh without any shared edge gets rows = 0 (upstream's np.max would raise instead): every
 * face is then a part of its own. */
int p3_mesh_adjacency(const p3_mesh *m, p3_adjacency *adj) {
        _cleanup_(edge_list_done) edge_list e = {};
        *adj = (p3_adjacency) {};
        if (m->nf < 0 || m->nv < 0 || m->nf > INT32_MAX || (m->nf > 0 && !m->f))
                return -EINVAL;

        int r = edges_sorted(m, &e);
        if (r < 0)
                return r;
        _cleanup_free_ int32_t *pairs = malloc(sizeof(int32_t) * (e.n + 2));
        if (!pairs)
                return -ENOMEM;
        return fill_table(pairs, edge_pairs(&e, pairs), adj);
}

void p3_adjacency_done(p3_adjacency *a) {
        free(a->nbr);
        *a = (p3_adjacency) {};
}
