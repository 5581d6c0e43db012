/* SPDX-License-Identifier: MIT */
/* The SubMConv3d neighbour map on the device, the twin of p3_subm_neighbors: three kernels
 * (clear the table, insert every voxel, look up 27 neighbours per voxel) on the backend's
 * stream, then one read-back of a flag that says whether a coordinate was out of range or the
 * table overflowed, so that the errors are the CPU's. The arithmetic is in
 * cuda_neighbour_map.cuh. */
#include <errno.h>

#include "cuda_backend.h"
#include "cuda_neighbour_map.cuh"

#define BLOCK 256

/* Bits of the error flag. */
enum {
        MAP_RANGE = 1, /* a coordinate outside [0, 2^21 - 1) */
        MAP_FULL = 2,  /* no free slot: cannot happen with capacity >= 2n */
};

__global__ static void map_clear(cu_coord_table t) {
        uint64_t cap = t.mask + 1;
        for (uint64_t s = blockIdx.x * (uint64_t) blockDim.x + threadIdx.x; s < cap;
             s += (uint64_t) gridDim.x * blockDim.x) {
                t.key[s] = CU_COORD_EMPTY;
                t.val[s] = CU_COORD_NOVAL;
        }
}

__global__ static void map_insert(cu_coord_table t, const int32_t *gc, int64_t n, int *flag) {
        for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
             i += (int64_t) gridDim.x * blockDim.x) {
                const int32_t *p = gc + 3 * i;
                if (!cu_coord_in_range(p[0]) || !cu_coord_in_range(p[1]) ||
                    !cu_coord_in_range(p[2])) {
                        atomicOr(flag, MAP_RANGE);
                        continue;
                }
                uint64_t k = cu_coord_pack((uint64_t) p[0], (uint64_t) p[1], (uint64_t) p[2]);
                if (!cu_coord_insert(t, k, (int32_t) i))
                        atomicOr(flag, MAP_FULL);
        }
}

/* One thread per entry of nbr, so that the writes are coalesced and a voxel's 27 probes run
 * in parallel. */
__global__ static void map_lookup(cu_coord_table t, const int32_t *gc, int64_t n, int32_t *nbr) {
        int64_t total = 27 * n;
        for (int64_t e = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; e < total;
             e += (int64_t) gridDim.x * blockDim.x) {
                int64_t i = e / 27;
                nbr[e] = cu_subm_entry(t, gc + 3 * i, (int32_t) i, (int) (e - 27 * i));
        }
}

static int map_run(p3_backend *be, cu_coord_table t, const int32_t *gc, int64_t n, int32_t *nbr,
                   int *flag_dev) {
        cudaStream_t st = cuda_st(be)->stream;
        int r = cuda_check(be, cudaMemsetAsync(flag_dev, 0, sizeof(int), st), "cudaMemsetAsync");
        if (r < 0)
                return r;
        map_clear<<<cuda_grid((int64_t) (t.mask + 1), BLOCK), BLOCK, 0, st>>>(t);
        if ((r = cuda_check_launch(be, "map_clear")) < 0)
                return r;
        map_insert<<<cuda_grid(n, BLOCK), BLOCK, 0, st>>>(t, gc, n, flag_dev);
        if ((r = cuda_check_launch(be, "map_insert")) < 0)
                return r;
        map_lookup<<<cuda_grid(27 * n, BLOCK), BLOCK, 0, st>>>(t, gc, n, nbr);
        if ((r = cuda_check_launch(be, "map_lookup")) < 0)
                return r;

        int flag = 0;
        r = cuda_check(be,
                       cudaMemcpyAsync(&flag, flag_dev, sizeof(int), cudaMemcpyDeviceToHost, st),
                       "cudaMemcpyAsync (neighbour map flag)");
        if (r < 0)
                return r;
        r = cuda_check(be, cudaStreamSynchronize(st), "cudaStreamSynchronize");
        if (r < 0)
                return r;
        if (flag & MAP_RANGE)
                return -ERANGE;
        return flag & MAP_FULL ? -EIO : 0;
}

extern "C" int cuda_subm_neighbors(p3_backend *be, const int32_t *grid_coord_dev, int64_t n,
                                   int32_t *nbr_dev) {
        if (n < 0 || n > INT32_MAX)
                return -EINVAL;
        if (n == 0)
                return 0;

        /* One allocation: keys, then values, then the flag (8-byte keys first keep every part
         * aligned). */
        uint64_t cap = cu_coord_capacity(n);
        size_t bytes = (sizeof(uint64_t) + sizeof(int32_t)) * cap + sizeof(int);
        void *mem = NULL;
        int r = cuda_tmp_alloc(be, bytes, &mem);
        if (r < 0)
                return r;
        cu_coord_table t;
        t.key = (uint64_t *) mem;
        t.val = (int32_t *) (t.key + cap);
        t.mask = cap - 1;
        r = map_run(be, t, grid_coord_dev, n, nbr_dev, (int *) (t.val + cap));
        cuda_tmp_free(be, mem, bytes);
        return r;
}
