/* SPDX-License-Identifier: MIT */
/* Upstream's clean_mesh followed by trimesh.Trimesh(vertices, faces) (PIPELINE.md §1, spec
 * §2.1), as trimesh 5.0.0rc1 does it:
 *
 *   merge_vertices      vertices keyed by round(v · 1e8) (int64, half to even); only vertices
 *                       used by a face are kept, the first of each key, in order of first use
 *   process(validate)   faces kept if they are the first with their sorted vertex triple and
 *                       their 2D oriented box is wider than 1e-8 both ways; fix_normals; then
 *                       non-finite vertices dropped and vertices merged again
 *   Trimesh(v, f)       non-finite vertices dropped, vertices merged again
 *
 * The import keeps neither UVs nor vertex normals, so the first merge is by position only.
 * Upstream keys it by position AND UV (and cached normals) when the file has them, so UV seams
 * stay split through validation and fix_normals there and only close in the final merge. The
 * result differs only where that matters: a face that duplicates another across a seam is
 * removed here and kept upstream, and fix_normals may see bodies joined across a seam that
 * upstream treats as separate (only when winding is inconsistent to begin with).
 *
 * face_src follows the kept faces; src_names are copied. */
#pragma once

#include "error.h"
#include "mesh.h"

int p3_mesh_clean(const p3_mesh *in, p3_mesh *out, p3_err *err);

/* The two steps above, exposed for the tests. All work in place. */
int p3_mesh_merge_vertices(p3_mesh *m);
/* Keeps the first face of each sorted vertex triple that is not degenerate. */
int p3_mesh_drop_bad_faces(p3_mesh *m);

/* trimesh.repair.fix_normals(mesh, multibody=body_count > 1) (mesh_winding.c):
 *
 * fix_winding: unless every edge shared by exactly two faces already runs opposite ways, walk
 * each connected body of the face adjacency breadth-first (networkx: nodes in order of first
 * appearance in the adjacency pairs, neighbours in pair order, the walk starting where
 * networkx's subgraph view starts — the first node of a CPython set for a body smaller than
 * half the graph) and reverse each reached face, (a, b, c) -> (c, b, a), whose shared edge
 * runs the same way as in the face it was reached from.
 *
 * fix_inversion: with one vertex-connected body (unused vertices count as bodies, as in
 * trimesh's body_count), reverse every face if the mesh is watertight and its signed volume is
 * negative; otherwise do that per face-adjacency body of at least 4 faces that is watertight
 * and consistently wound. */
int p3_mesh_fix_normals(p3_mesh *m);
