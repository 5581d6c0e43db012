/* SPDX-License-Identifier: MIT */
/* trimesh.repair.fix_normals (see mesh_clean.h). Which faces get reversed depends on where the
 * breadth-first walk of each body starts and in which order it reaches faces, so the walk
 * follows networkx's graph exactly: nodes in order of first appearance in face_adjacency,
 * neighbours in pair order, and the start node of a body picked the way networkx's subgraph
 * view iterates (through a CPython set for bodies smaller than half the graph). On a body whose
 * winding can be made consistent only the start face's orientation matters, and watertight
 * bodies are then turned outwards anyway; open surfaces keep the start face's side.
 * Checked face for face against trimesh 5.0.0rc1 with networkx 3.4.2 (whose _plain_bfs fills
 * the body set in breadth-first order, as since 3.2) on meshes with flipped faces, bodies of
 * 4 to 65,000 faces, duplicate and degenerate faces and orphaned vertices. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "numpy-compat.h"
#include "mesh_clean.h"
#include "pyset.h"

/* Face slot s (face s / 3, corner s % 3) is the directed edge corner -> next corner. */
static int32_t slot_from(const p3_mesh *m, int64_t s) {
        return m->f[s];
}
static int32_t slot_to(const p3_mesh *m, int64_t s) {
        return m->f[3 * (s / 3) + (s % 3 + 1) % 3];
}

/* graph.is_watertight: every edge in exactly-two groups (watertight), and the two uses of each
 * such edge run opposite ways (wound; edges used once or 3+ times are not looked at). */
static void watertight(const p3_mesh *m, const p3_edges *e, bool *tight, bool *wound) {
        int64_t paired = 0;
        *wound = true;
        for (int64_t i = 0, j; i < e->n; i = j) {
                j = p3_edges_group_end(e, i);
                if (j - i != 2)
                        continue;
                paired += 2;
                if (slot_from(m, e->order[i]) == slot_from(m, e->order[i + 1]))
                        *wound = false;
        }
        *tight = paired == e->n;
}

/* The face adjacency graph as networkx holds it after from_edgelist(face_adjacency). */
typedef struct face_graph {
        int64_t n_nodes;
        int32_t *nodes; /* in order of first appearance in the pairs */
        int64_t *start; /* [nf + 1]: a face's neighbours are nbr[start[f] .. start[f] + deg[f]) */
        int32_t *deg;
        int32_t *nbr; /* in pair order */
} face_graph;

static void face_graph_done(face_graph *g) {
        free(g->nodes);
        free(g->start);
        free(g->deg);
        free(g->nbr);
        *g = (face_graph) {};
}

/* add_edge(u, v): a neighbour already present keeps its place (a dict key). */
static void graph_link(face_graph *g, int32_t u, int32_t v) {
        int32_t *row = g->nbr + g->start[u];
        for (int32_t k = 0; k < g->deg[u]; k++)
                if (row[k] == v)
                        return;
        row[g->deg[u]++] = v;
}

static int face_graph_build(const p3_mesh *m, const p3_edges *e, face_graph *g) {
        _cleanup_free_ int32_t *pairs = malloc(sizeof(int32_t) * (size_t) (e->n + 2));
        g->nodes = malloc(sizeof(int32_t) * (size_t) m->nf + 1);
        g->start = calloc((size_t) m->nf + 1, sizeof(int64_t));
        g->deg = calloc((size_t) m->nf + 1, sizeof(int32_t));
        if (!pairs || !g->nodes || !g->start || !g->deg)
                return -ENOMEM;

        int64_t np = p3_edges_face_pairs(e, pairs);
        for (int64_t i = 0; i < 2 * np; i++)
                g->start[pairs[i] + 1]++;
        for (int64_t f = 0; f < m->nf; f++)
                g->start[f + 1] += g->start[f];
        g->nbr = malloc(sizeof(int32_t) * (size_t) (2 * np) + 1);
        if (!g->nbr)
                return -ENOMEM;

        /* Nodes: a face is new the first time it appears; degree 0 marks "not seen yet". */
        for (int64_t i = 0; i < np; i++) {
                int32_t a = pairs[2 * i], b = pairs[2 * i + 1];
                if (g->deg[a] == 0)
                        g->nodes[g->n_nodes++] = a;
                if (g->deg[b] == 0)
                        g->nodes[g->n_nodes++] = b;
                graph_link(g, a, b);
                graph_link(g, b, a);
        }
        return 0;
}

/* Reverses face c when the edge it shares with p runs the same way in both. trimesh groups the
 * six edges of the two faces and takes the first shared one in (hi, lo) order. */
static void orient(p3_mesh *m, int32_t p, int32_t c) {
        int32_t *fp = m->f + 3 * (int64_t) p, *fc = m->f + 3 * (int64_t) c;
        int bk = -1, bj = -1;
        int32_t blo = 0, bhi = 0;

        for (int k = 0; k < 3; k++)
                for (int j = 0; j < 3; j++) {
                        int32_t pa = fp[k], pb = fp[(k + 1) % 3], ca = fc[j], cb = fc[(j + 1) % 3];
                        int32_t lo = MIN(pa, pb), hi = MAX(pa, pb);
                        if (lo != MIN(ca, cb) || hi != MAX(ca, cb))
                                continue;
                        if (bk < 0 || hi < bhi || (hi == bhi && lo < blo))
                                bk = k, bj = j, blo = lo, bhi = hi;
                }
        if (bk < 0 || fp[bk] != fc[bj])
                return;
        int32_t t = fc[0];
        fc[0] = fc[2];
        fc[2] = t;
}

/* Breadth-first from v over faces not yet marked, in neighbour order; out gets the faces in
 * the order they are reached (= networkx's _plain_bfs insertion order). With orient_faces, each
 * newly reached face is oriented against the face it was reached from, as fix_winding does for
 * every (parent, child) that nx.bfs_edges yields. */
static int64_t walk(p3_mesh *m, const face_graph *g, int32_t v, bool *mark, int32_t *out,
                    bool orient_faces) {
        int64_t head = 0, tail = 0;

        mark[v] = true;
        out[tail++] = v;
        while (head < tail) {
                int32_t u = out[head++];
                const int32_t *row = g->nbr + g->start[u];
                for (int32_t k = 0; k < g->deg[u]; k++) {
                        int32_t w = row[k];
                        if (mark[w])
                                continue;
                        mark[w] = true;
                        out[tail++] = w;
                        if (orient_faces)
                                orient(m, u, w);
                }
        }
        return tail;
}

/* next(iter(G.subgraph(body).nodes())): for a body of at least half the graph the graph's own
 * node order, whose first member of the body is the face the body was found from; for a
 * smaller one the iteration order of set(body), a set built by adding the members in the order
 * the body set yields them, which was itself built in the order _plain_bfs reached them. */
static int walk_start(const int32_t *body, int64_t n, int64_t n_nodes, int32_t *start) {
        p3_pyset found, view;
        int r = 0;

        *start = body[0];
        if (2 * n >= n_nodes)
                return 0;
        _cleanup_free_ int64_t *list = malloc(sizeof(int64_t) * (size_t) n);
        if (!list)
                return -ENOMEM;
        p3_pyset_init(&found);
        p3_pyset_init(&view);
        for (int64_t i = 0; i < n && r >= 0; i++)
                r = p3_pyset_add(&found, body[i]);
        if (r >= 0) {
                p3_pyset_list(&found, list);
                for (int64_t i = 0; i < n && r >= 0; i++)
                        r = p3_pyset_add(&view, list[i]);
        }
        if (r >= 0) {
                p3_pyset_list(&view, list);
                *start = (int32_t) list[0];
        }
        p3_pyset_done(&found);
        p3_pyset_done(&view);
        return r < 0 ? r : 0;
}

/* repair.fix_winding. Skipped entirely when the winding is already consistent. */
static int fix_winding(p3_mesh *m) {
        _cleanup_(p3_edges_done) p3_edges e = {};
        _cleanup_(face_graph_done) face_graph g = {};
        bool tight, wound;

        int r = p3_mesh_edges(m, &e);
        if (r < 0)
                return r;
        watertight(m, &e, &tight, &wound);
        if (wound)
                return 0;
        r = face_graph_build(m, &e, &g);
        if (r < 0)
                return r;

        _cleanup_free_ bool *found = calloc((size_t) m->nf + 1, sizeof(bool));
        _cleanup_free_ bool *reached = calloc((size_t) m->nf + 1, sizeof(bool));
        _cleanup_free_ int32_t *body = malloc(sizeof(int32_t) * (size_t) m->nf + 1);
        _cleanup_free_ int32_t *queue = malloc(sizeof(int32_t) * (size_t) m->nf + 1);
        if (!found || !reached || !body || !queue)
                return -ENOMEM;

        for (int64_t i = 0; i < g.n_nodes; i++) {
                int32_t v = g.nodes[i], start;
                if (found[v])
                        continue;
                int64_t n = walk(m, &g, v, found, body, false);
                r = walk_start(body, n, g.n_nodes, &start);
                if (r < 0)
                        return r;
                walk(m, &g, start, reached, queue, true);
        }
        return 0;
}

/* The volume integrand of triangles.mass_properties: cross_x · (x0 + x1 + x2), the cross
 * product being trimesh's (v1 − v0) × (v2 − v1). Volume = sum / 6; only its sign is used. */
NO_FP_CONTRACT static double volume_term(const p3_mesh *m, int64_t i) {
        const int32_t *t = m->f + 3 * i;
        const double *p0 = m->v + 3 * (int64_t) t[0], *p1 = m->v + 3 * (int64_t) t[1],
                     *p2 = m->v + 3 * (int64_t) t[2];
        double a1 = p1[1] - p0[1], a2 = p1[2] - p0[2];
        double b1 = p2[1] - p1[1], b2 = p2[2] - p1[2];
        double cx = a1 * b2 - a2 * b1;
        return cx * ((p0[0] + p1[0]) + p2[0]);
}

static void reverse_face(p3_mesh *m, int64_t i) {
        int32_t *t = m->f + 3 * i, x = t[0];
        t[0] = t[2];
        t[2] = x;
}

/* Trimesh.body_count: connected groups of vertices over the face edges, counting every vertex,
 * used or not (so a vertex orphaned by the face removal makes the mesh "multibody"). */
static int32_t find_root(int32_t *parent, int32_t x) {
        while (parent[x] != x) {
                parent[x] = parent[parent[x]];
                x = parent[x];
        }
        return x;
}

static int body_count(const p3_mesh *m, int64_t *count) {
        _cleanup_free_ int32_t *parent = malloc(sizeof(int32_t) * (size_t) m->nv + 1);
        if (!parent)
                return -ENOMEM;
        for (int64_t v = 0; v < m->nv; v++)
                parent[v] = (int32_t) v;
        for (int64_t s = 0; s < 3 * m->nf; s++) {
                int32_t a = find_root(parent, slot_from(m, s)), b = find_root(parent, slot_to(m, s));
                if (a != b)
                        parent[MAX(a, b)] = MIN(a, b);
        }
        *count = 0;
        for (int64_t v = 0; v < m->nv; v++)
                *count += parent[v] == v;
        return 0;
}

/* fix_inversion(multibody=False): the whole mesh, if watertight, by its total volume (summed
 * over the faces in order, pairwise like numpy). */
static int invert_whole(p3_mesh *m) {
        _cleanup_(p3_edges_done) p3_edges e = {};
        bool tight, wound;

        int r = p3_mesh_edges(m, &e);
        if (r < 0)
                return r;
        watertight(m, &e, &tight, &wound);
        if (!tight || m->nf == 0)
                return 0;
        _cleanup_free_ double *terms = malloc(sizeof(double) * (size_t) m->nf);
        if (!terms)
                return -ENOMEM;
        for (int64_t i = 0; i < m->nf; i++)
                terms[i] = volume_term(m, i);
        if (p3_np_sum(terms, m->nf) / 6 < 0.0)
                for (int64_t i = 0; i < m->nf; i++)
                        reverse_face(m, i);
        return 0;
}

/* Per body of the face adjacency: how many of its edge uses are in groups of exactly two
 * within the body, and whether those run opposite ways. */
static void body_edges(const p3_mesh *m, const p3_edges *e, const int32_t *body_of,
                       int64_t *paired, bool *wound) {
        for (int64_t i = 0, j; i < e->n; i = j) {
                j = p3_edges_group_end(e, i);
                for (int64_t x = i; x < j; x++) {
                        int32_t b = body_of[e->order[x] / 3];
                        int64_t same = 0, other = -1;
                        if (b < 0)
                                continue;
                        for (int64_t y = i; y < j; y++)
                                if (body_of[e->order[y] / 3] == b) {
                                        same++;
                                        if (y != x)
                                                other = y;
                                }
                        if (same != 2)
                                continue;
                        paired[b]++;
                        if (slot_from(m, e->order[x]) == slot_from(m, e->order[other]))
                                wound[b] = false;
                }
        }
}

/* fix_inversion(multibody=True): bodies of at least 4 faces (a tetrahedron) that are watertight
 * and consistently wound on their own are reversed if their volume is negative. trimesh sums a
 * body's faces in scipy's label order; ascending face order here (only the sign matters). */
static int invert_bodies(p3_mesh *m) {
        _cleanup_(p3_edges_done) p3_edges e = {};
        _cleanup_(face_graph_done) face_graph g = {};

        int r = p3_mesh_edges(m, &e);
        if (r < 0)
                return r;
        r = face_graph_build(m, &e, &g);
        if (r < 0)
                return r;

        size_t nf = (size_t) m->nf + 1;
        _cleanup_free_ bool *mark = calloc(nf, sizeof(bool));
        _cleanup_free_ int32_t *queue = malloc(sizeof(int32_t) * nf);
        _cleanup_free_ int32_t *body_of = malloc(sizeof(int32_t) * nf);
        _cleanup_free_ int64_t *size = calloc(nf, sizeof(int64_t));
        _cleanup_free_ int64_t *paired = calloc(nf, sizeof(int64_t));
        _cleanup_free_ bool *wound = malloc(sizeof(bool) * nf);
        _cleanup_free_ double *terms = malloc(sizeof(double) * nf);
        if (!mark || !queue || !body_of || !size || !paired || !wound || !terms)
                return -ENOMEM;

        int32_t n_bodies = 0;
        for (int64_t f = 0; f < m->nf; f++)
                body_of[f] = -1;
        for (int64_t i = 0; i < g.n_nodes; i++) {
                if (mark[g.nodes[i]])
                        continue;
                int64_t n = walk(m, &g, g.nodes[i], mark, queue, false);
                for (int64_t k = 0; k < n; k++)
                        body_of[queue[k]] = n_bodies;
                size[n_bodies] = n;
                wound[n_bodies++] = true;
        }
        body_edges(m, &e, body_of, paired, wound);

        /* Each body's faces in ascending order: offsets by body, then one pass over the faces. */
        _cleanup_free_ int64_t *first = calloc((size_t) n_bodies + 1, sizeof(int64_t));
        if (!first)
                return -ENOMEM;
        for (int32_t b = 0; b < n_bodies; b++)
                first[b + 1] = first[b] + size[b];
        memset(size, 0, sizeof(int64_t) * (size_t) n_bodies);
        for (int64_t f = 0; f < m->nf; f++)
                if (body_of[f] >= 0)
                        queue[first[body_of[f]] + size[body_of[f]]++] = (int32_t) f;

        for (int32_t b = 0; b < n_bodies; b++) {
                const int32_t *faces = queue + first[b];
                int64_t n = size[b];
                if (n < 4 || paired[b] != 3 * n || !wound[b])
                        continue;
                for (int64_t k = 0; k < n; k++)
                        terms[k] = volume_term(m, faces[k]);
                if (p3_np_sum(terms, n) / 6 >= 0.0)
                        continue;
                for (int64_t k = 0; k < n; k++)
                        reverse_face(m, faces[k]);
        }
        return 0;
}

int p3_mesh_fix_normals(p3_mesh *m) {
        int64_t bodies;

        if (m->nv == 0 || m->nf == 0)
                return 0;
        /* Trimesh.fix_normals decides multibody before fixing the winding. */
        int r = body_count(m, &bodies);
        if (r < 0)
                return r;
        r = fix_winding(m);
        if (r < 0)
                return r;
        return bodies > 1 ? invert_bodies(m) : invert_whole(m);
}
