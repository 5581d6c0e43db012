/* SPDX-License-Identifier: MIT */
/* The point cloud the model sees (spec §2.3–2.5, PIPELINE.md §4): area-weighted surface samples
 * drawn exactly as trimesh.sample.sample_surface(mesh, n, seed) draws them, the face normal of
 * each sample, and upstream's normalize_pc. All float64, bit for bit. */
#pragma once

#include <stdint.h>

#include "error.h"
#include "mesh.h"

/* np.random.default_rng(seed): n draws pick faces (searchsorted, side='left', into the running
 * sum of the face areas), then 2n draws place the points, two per sample. pts is [n, 3],
 * face_idx [n]. -EINVAL when n < 0, or when the mesh has no faces or no finite positive area. */
int p3_sample_surface(const p3_mesh *m, int64_t n, uint64_t seed, double *pts, int32_t *face_idx,
                      p3_err *err);

/* mesh.face_normals[face_idx]: normals is [n, 3]; zero for faces without area. */
void p3_face_normals_at(const p3_mesh *m, const int32_t *face_idx, int64_t n, double *normals);

/* In place: p = (p − center) / (scale + 1e-10), center = (max + min) / 2 per axis and scale the
 * largest half extent over the axes. */
void p3_normalize_pc(double *pts, int64_t n);
