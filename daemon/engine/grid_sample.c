/* SPDX-License-Identifier: MIT */
/* CenterShift and GridSample of Sonata's transform (spec §2.6). The voxel order is the order
 * of the FNV hash, not of the coordinates, so the hash must be reproduced exactly; voxels are
 * told apart by hash, as upstream does (a 64-bit collision would merge two voxels there too). */
#include "grid_sample.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "macro.h"
#include "serialize.h"

#define FNV_BASIS 14695981039346656037ull
#define FNV_PRIME 1099511628211ull

void p3_center_shift(double *pts, int64_t n, double shift[3]) {
        double lo[3] = { INFINITY, INFINITY, INFINITY }, hi[3] = { -INFINITY, -INFINITY, -INFINITY };

        for (int64_t i = 0; i < n; i++)
                for (int d = 0; d < 3; d++) {
                        lo[d] = fmin(lo[d], pts[3 * i + d]);
                        hi[d] = fmax(hi[d], pts[3 * i + d]);
                }

        shift[0] = n > 0 ? (lo[0] + hi[0]) / 2 : 0;
        shift[1] = n > 0 ? (lo[1] + hi[1]) / 2 : 0;
        shift[2] = n > 0 ? lo[2] : 0;
        for (int64_t i = 0; i < n; i++)
                for (int d = 0; d < 3; d++)
                        pts[3 * i + d] -= shift[d];
}

/* FNV-1 order (multiply, then xor) despite upstream's "1a" docstring. */
uint64_t p3_fnv_grid(uint64_t x, uint64_t y, uint64_t z) {
        uint64_t h = FNV_BASIS;
        h = (h * FNV_PRIME) ^ x;
        h = (h * FNV_PRIME) ^ y;
        h = (h * FNV_PRIME) ^ z;
        return h;
}

void p3_grid_sample_done(p3_grid_sample *g) {
        free(g->index);
        free(g->grid_coord);
        free(g->inverse);
        *g = (p3_grid_sample) {};
}

/* floor(p / grid) in float64, shifted so that each axis starts at 0. */
static int grid_cells(const double *pts, int64_t n, double grid, int64_t *g, p3_err *err) {
        int64_t lo[3] = { INT64_MAX, INT64_MAX, INT64_MAX };

        for (int64_t i = 0; i < 3 * n; i++) {
                double c = floor(pts[i] / grid);
                if (!(fabs(c) < 0x1p52))
                        return p3_errf(err, -EINVAL,
                                       "GridSample: point %lld has a non-finite or huge coordinate",
                                       (long long) (i / 3));
                g[i] = (int64_t) c;
                lo[i % 3] = MIN(lo[i % 3], g[i]);
        }
        for (int64_t i = 0; i < 3 * n; i++) {
                g[i] -= lo[i % 3];
                if (g[i] > INT32_MAX)
                        return p3_errf(err, -ERANGE,
                                       "GridSample: the cloud spans more than 2^31 voxels per axis");
        }
        return 0;
}

/* Check upstream's recorded choice: one point of each voxel, voxels in ascending hash order. */
static int check_replay(const int64_t *inverse, int64_t n, int64_t m, const int64_t *replay,
                        int64_t replay_m, p3_err *err) {
        if (replay_m != m)
                return p3_errf(err, -EINVAL,
                               "GridSample replay: %lld representatives given, the cloud has %lld "
                               "voxels",
                               (long long) replay_m, (long long) m);
        for (int64_t v = 0; v < m; v++) {
                if (replay[v] < 0 || replay[v] >= n)
                        return p3_errf(err, -EINVAL,
                                       "GridSample replay: index %lld of voxel %lld is outside "
                                       "0..%lld",
                                       (long long) replay[v], (long long) v, (long long) n - 1);
                if (inverse[replay[v]] != v)
                        return p3_errf(err, -EINVAL,
                                       "GridSample replay: point %lld chosen for voxel %lld lies "
                                       "in voxel %lld (voxel order or grid differs)",
                                       (long long) replay[v], (long long) v,
                                       (long long) inverse[replay[v]]);
        }
        return 0;
}

/* Upstream's draw: start + randint(0, max count) % count, one draw per voxel in voxel order
 * (p3_np_randint consumes nothing when the largest voxel holds one point). */
static void draw_representatives(const int32_t *sort_idx, const int64_t *start, int64_t m,
                                 p3_mt19937 *rng, int64_t *index) {
        int64_t count_max = 0;
        for (int64_t v = 0; v < m; v++)
                count_max = MAX(count_max, start[v + 1] - start[v]);

        for (int64_t v = 0; v < m; v++) {
                int64_t count = start[v + 1] - start[v];
                int64_t r = p3_np_randint(rng, 0, count_max) % count;
                index[v] = sort_idx[start[v] + r];
        }
}

int p3_grid_sample_run(const double *pts, int64_t n, double grid, p3_mt19937 *rng,
                       const int64_t *replay_index, int64_t replay_m, p3_grid_sample *out,
                       p3_err *err) {
        if (n <= 0 || n > INT32_MAX)
                return p3_errf(err, -EINVAL, "GridSample: %lld points (need 1..2^31-1)",
                               (long long) n);
        if (!(grid > 0))
                return p3_errf(err, -EINVAL, "GridSample: grid size must be positive");
        if (!replay_index && !rng)
                return p3_errf(err, -EINVAL, "GridSample: neither a replay nor a generator");

        _cleanup_free_ int64_t *g = malloc(sizeof(int64_t) * 3 * n);
        _cleanup_free_ uint64_t *key = malloc(sizeof(uint64_t) * n);
        _cleanup_free_ uint64_t *sorted = malloc(sizeof(uint64_t) * n);
        _cleanup_free_ int32_t *sort_idx = malloc(sizeof(int32_t) * n);
        _cleanup_free_ int64_t *start = malloc(sizeof(int64_t) * (n + 1));
        _cleanup_free_ int64_t *inverse = malloc(sizeof(int64_t) * n);
        if (!g || !key || !sorted || !sort_idx || !start || !inverse)
                return p3_errf(err, -ENOMEM, "GridSample: out of memory for %lld points",
                               (long long) n);

        int r = grid_cells(pts, n, grid, g, err);
        if (r < 0)
                return r;
        for (int64_t i = 0; i < n; i++)
                key[i] = p3_fnv_grid((uint64_t) g[3 * i], (uint64_t) g[3 * i + 1],
                                     (uint64_t) g[3 * i + 2]);
        r = p3_argsort_u64(key, n, sort_idx, sorted);
        if (r < 0)
                return p3_errf(err, r, "GridSample: sorting the voxel hashes failed");

        /* Runs of equal hash are the voxels; start[v] is the first sorted slot of voxel v. */
        int64_t m = 0;
        for (int64_t j = 0; j < n; j++) {
                if (j == 0 || sorted[j] != sorted[j - 1])
                        start[m++] = j;
                inverse[sort_idx[j]] = m - 1;
        }
        start[m] = n;

        _cleanup_free_ int64_t *index = malloc(sizeof(int64_t) * m);
        _cleanup_free_ int32_t *gc = malloc(sizeof(int32_t) * 3 * m);
        if (!index || !gc)
                return p3_errf(err, -ENOMEM, "GridSample: out of memory for %lld voxels",
                               (long long) m);

        if (replay_index) {
                r = check_replay(inverse, n, m, replay_index, replay_m, err);
                if (r < 0)
                        return r;
                for (int64_t v = 0; v < m; v++)
                        index[v] = replay_index[v];
        } else
                draw_representatives(sort_idx, start, m, rng, index);

        for (int64_t v = 0; v < m; v++)
                for (int d = 0; d < 3; d++)
                        gc[3 * v + d] = (int32_t) g[3 * index[v] + d];

        *out = (p3_grid_sample) {
                .n = n,
                .m = m,
                .index = TAKE_PTR(index),
                .grid_coord = TAKE_PTR(gc),
                .inverse = TAKE_PTR(inverse),
        };
        return 0;
}
