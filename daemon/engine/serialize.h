/* SPDX-License-Identifier: MIT */
/* Integer structure of one Sonata level: space-filling-curve serialization (z-order and
 * Hilbert, with the -trans variants), the SubMConv3d neighbour map, the attention window map,
 * and grid pooling to the next level. All of it is exact integer work. */
#pragma once

#include <stdint.h>

#include "error.h"
#include "model_config.h"

/* Added: stable ascending argsort of 64-bit keys (LSD radix); sorted_key may be NULL.
 * GridSample uses it for the hash order, serialization for the codes, pooling for the cells. */
int p3_argsort_u64(const uint64_t *key, int64_t n, int32_t *order, uint64_t *sorted_key);

/* bit_length(max over all axes of grid_coord + 1). */
int p3_serial_depth(const int32_t *grid_coord, int64_t n);
uint64_t p3_z_encode(uint32_t x, uint32_t y, uint32_t z, int depth);
uint64_t p3_hilbert_encode(uint32_t x, uint32_t y, uint32_t z, int depth);
/* Code of one point for an order (the -trans variants swap x and y), batch 0. */
uint64_t p3_order_code(p3_order o, const int32_t *xyz, int depth);

/* For each of cfg->num_orders rows k (already permuted: row k uses orders[perm[k]]):
 * code[k*n+i], order[k*n+r] (argsort of code), inverse[k*n+order[r]] = r.
 * code may be NULL. */
int p3_serialize(const int32_t *grid_coord, int64_t n, const p3_order *orders, int num_orders,
                 const int64_t *perm, int depth, int64_t *code, int32_t *order, int32_t *inverse);

/* SubMConv3d 3x3x3 neighbour map: nbr[i*27 + r] = index of the point at grid_coord[i] +
 * (a-1, b-1, c-1), r = 9a+3b+c, or -1 when absent. Built with a hash table of coordinates. */
int p3_subm_neighbors(const int32_t *grid_coord, int64_t n, int32_t *nbr);

/* Attention windows (upstream's padding rule): window = min(n, patch); n_pad = ceil(n/window) *
 * window; slot s < n holds rank s, slots s in [n, n_pad) hold rank s - window (fixed: this
 * comment said n - window + (n % window), which contradicts spec §3.6's example n = 2500,
 * window 1024: slots 2500..3071 hold ranks 1476..2047), so the last window is the last `window`
 * ranks. pad[n_pad] receives the rank of each slot. */
void p3_attention_windows(int64_t n, int patch, int64_t *window, int64_t *n_pad);
void p3_attention_pad(int64_t n, int64_t window, int64_t n_pad, int32_t *pad);

/* Grid pooling (stride 2): coarse cells = unique(grid // stride) in lexicographic (x,y,z)
 * order; cluster[i] = cell of point i. coarse is malloc'd [m*3]. */
int p3_grid_pool(const int32_t *grid_coord, int64_t n, int stride, int32_t **coarse, int64_t *m,
                 int32_t *cluster);
