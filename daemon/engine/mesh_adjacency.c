/* SPDX-License-Identifier: MIT */
/* Face adjacency as upstream builds it (spec §2.2, PIPELINE.md §3): trimesh's face_adjacency
 * pairs, in its order (mesh_edges.c), then build_adjacent_faces_numba's padded table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mesh.h"

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
        _cleanup_(p3_edges_done) p3_edges e = {};
        *adj = (p3_adjacency) {};
        if (m->nf < 0 || m->nv < 0 || m->nf > INT32_MAX || (m->nf > 0 && !m->f))
                return -EINVAL;

        int r = p3_mesh_edges(m, &e);
        if (r < 0)
                return r;
        _cleanup_free_ int32_t *pairs = malloc(sizeof(int32_t) * (e.n + 2));
        if (!pairs)
                return -ENOMEM;
        return fill_table(pairs, p3_edges_face_pairs(&e, pairs), adj);
}

void p3_adjacency_done(p3_adjacency *a) {
        free(a->nbr);
        *a = (p3_adjacency) {};
}
