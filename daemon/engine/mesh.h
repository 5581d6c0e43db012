/* SPDX-License-Identifier: MIT */
/* A triangle soup in object units, as the pipeline sees a mesh: every mesh instance of the
 * scene flattened with its node transform, triangulated. Faces remember where they came from
 * (the scene node / primitive), so outputs can name parts after the input's structure. */
#pragma once

#include <stdint.h>

#include "error.h"
#include "macro.h"

typedef struct p3_mesh {
        int64_t nv, nf;
        double *v;          /* [nv, 3] */
        int32_t *f;         /* [nf, 3] vertex indices */
        int32_t *face_src;  /* [nf] index into src_names, or NULL */
        char **src_names;   /* [n_src] "node/primitive" names */
        int32_t n_src;
} p3_mesh;

void p3_mesh_done(p3_mesh *m);
/* Deep copy. */
int p3_mesh_copy(const p3_mesh *src, p3_mesh *dst);

/* Face areas ‖(v1−v0)×(v2−v1)‖/2 and unit normals as trimesh computes them (zero for
 * degenerate faces). Either output may be NULL. */
void p3_mesh_face_geometry(const p3_mesh *m, double *area, double *normal);

/* The 3·nf face slots (slot s = edge from corner s % 3 of face s / 3 to the next corner) with
 * their undirected edges, ordered as trimesh's group_rows orders them: by (hi, lo), stably. */
typedef struct p3_edges {
        int64_t n;
        int32_t *lo, *hi; /* [n] */
        int64_t *order;   /* [n] slots in group order; equal edges are adjacent */
} p3_edges;

/* -EINVAL for a vertex index out of range. */
int p3_mesh_edges(const p3_mesh *m, p3_edges *e);
void p3_edges_done(p3_edges *e);
/* The end of the group of equal edges starting at position i of e->order. */
int64_t p3_edges_group_end(const p3_edges *e, int64_t i);
/* trimesh face_adjacency: one (a < b) pair per edge used by exactly two slots of two different
 * faces, in group order. pairs holds up to n/2 pairs; returns their number. */
int64_t p3_edges_face_pairs(const p3_edges *e, int32_t *pairs);

/* Face adjacency over shared edges (trimesh face_adjacency + upstream's
 * build_adjacent_faces): only edges used by exactly two face slots give a pair. rows =
 * max(face in any pair) + 1 (faces at or beyond it have no neighbours); row f lists its
 * neighbours in pair order, padded with -1 to `deg` columns. */
typedef struct p3_adjacency {
        int64_t rows;
        int deg;
        int32_t *nbr; /* [rows, deg] */
} p3_adjacency;

int p3_mesh_adjacency(const p3_mesh *m, p3_adjacency *adj);
void p3_adjacency_done(p3_adjacency *a);
