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
