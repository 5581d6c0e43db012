/* SPDX-License-Identifier: MIT */
/* Sonata's input transform for one point cloud: CenterShift and GridSample (FNV-1 hash of the
 * float64 grid coordinate, one representative point per voxel). */
#pragma once

#include <stdint.h>

#include "error.h"
#include "rng.h"

/* shift = ((xmin+xmax)/2, (ymin+ymax)/2, zmin); pts -= shift, in place (float64). */
void p3_center_shift(double *pts, int64_t n, double shift[3]);

/* 64-bit FNV-1 (multiply, then xor) of a grid coordinate, as upstream's fnv_hash_vec. */
uint64_t p3_fnv_grid(uint64_t x, uint64_t y, uint64_t z);

typedef struct p3_grid_sample {
        int64_t n, m;        /* points in, voxels out */
        int64_t *index;      /* [m] representative point of each voxel (voxels by ascending hash) */
        int32_t *grid_coord; /* [m*3] floor(p/grid) - min, of the representative */
        int64_t *inverse;    /* [n] voxel of each point */
} p3_grid_sample;

/* Voxelize pts (already centre-shifted, float64) with grid size `grid` (0.005).
 * Representatives: if replay_index is non-NULL (length replay_m), it is taken as upstream's
 * choice and checked (one point per voxel, in voxel order); otherwise they are drawn as upstream
 * does: idx_sort = stable argsort of the hash, then start + randint(0, max count) % count from
 * rng (NumPy legacy semantics; no draw at all when every voxel holds one point). */
int p3_grid_sample_run(const double *pts, int64_t n, double grid, p3_mt19937 *rng,
                       const int64_t *replay_index, int64_t replay_m, p3_grid_sample *out,
                       p3_err *err);
void p3_grid_sample_done(p3_grid_sample *g);
