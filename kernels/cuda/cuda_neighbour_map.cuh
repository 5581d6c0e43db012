/* SPDX-License-Identifier: MIT */
/* The SubMConv3d neighbour map on the device: a hash table of voxel coordinates (open
 * addressing, linear probing) and the 27 lookups per voxel. The twin of p3_subm_neighbors
 * (daemon/engine/serialize.c): the same packing (21 bits an axis, x highest), the same table
 * capacity, the same offset order r = 9a + 3b + c for the offset (a-1, b-1, c-1), -1 for a
 * neighbour with a negative coordinate or no voxel, row[13] = the voxel itself, and a duplicate
 * coordinate resolved to its first (smallest) index.
 *
 * The arithmetic is __host__ __device__ so that the host-compiled test builds the same table
 * and map on the CPU and compares them with p3_subm_neighbors. */
#pragma once

#include <stdint.h>

#include "cuda_backend.h"

#define CU_COORD_BITS 21
#define CU_COORD_EMPTY UINT64_MAX
/* No voxel has claimed a slot's value yet: above every index, so atomicMin keeps the first. */
#define CU_COORD_NOVAL INT32_MAX

typedef struct cu_coord_table {
        uint64_t *key; /* [mask + 1], CU_COORD_EMPTY where free */
        int32_t *val;  /* [mask + 1], the smallest point index with that key */
        uint64_t mask; /* capacity - 1, capacity a power of two */
} cu_coord_table;

/* The table the CPU builds for n points: a power of two >= 2n, at least 16, so that probe
 * sequences stay short and an empty slot always exists. */
__host__ __device__ static inline uint64_t cu_coord_capacity(int64_t n) {
        uint64_t cap = 16;
        while (cap < 2 * (uint64_t) n)
                cap <<= 1;
        return cap;
}

/* A coordinate the table can hold: one bit of headroom below 2^21 for the +1 offsets. */
__host__ __device__ static inline bool cu_coord_in_range(int32_t v) {
        return v >= 0 && v < (1 << CU_COORD_BITS) - 1;
}

__host__ __device__ static inline uint64_t cu_coord_pack(uint64_t x, uint64_t y, uint64_t z) {
        return x << (2 * CU_COORD_BITS) | y << CU_COORD_BITS | z;
}

/* MurmurHash3's 64-bit finalizer, which mixes every key bit into the low ones. Not the CPU's
 * table_slot: (k·φ ^ k·φ >> 29) & mask leaves x (key bits 42..62) out of the slot for tables
 * below 2^14 and nearly out up to 2^21, so the voxels of a row along x share one home slot and
 * a plane y = const makes probe chains as long as the row (slow on the CPU, divergent warps
 * here). The map does not depend on the slot function, only the probe lengths do. */
__host__ __device__ static inline uint64_t cu_coord_slot(uint64_t k, uint64_t mask) {
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdull;
        k ^= k >> 33;
        k *= 0xc4ceb9fe1a85ec53ull;
        k ^= k >> 33;
        return k & mask;
}

/* Inserts key k for point i; a key already present keeps the smaller index, so the result does
 * not depend on the order in which threads arrive. On the device the slot is claimed with
 * atomicCAS and the value settled with atomicMin; the host version (tests) does the same
 * sequentially. Returns false only when the table is full, which a capacity >= 2n excludes. */
__host__ __device__ static inline bool cu_coord_insert(cu_coord_table t, uint64_t k, int32_t i) {
        uint64_t s = cu_coord_slot(k, t.mask);
        for (uint64_t probe = 0; probe <= t.mask; probe++, s = (s + 1) & t.mask) {
#ifdef __CUDA_ARCH__
                unsigned long long prev =
                        atomicCAS((unsigned long long *) &t.key[s],
                                  (unsigned long long) CU_COORD_EMPTY, (unsigned long long) k);
                if (prev == CU_COORD_EMPTY || prev == k) {
                        atomicMin(&t.val[s], i);
                        return true;
                }
#else
                if (t.key[s] == CU_COORD_EMPTY)
                        t.key[s] = k;
                if (t.key[s] == k) {
                        if (i < t.val[s])
                                t.val[s] = i;
                        return true;
                }
#endif
        }
        return false;
}

/* The index stored for k, or -1. Runs after every insert has finished (a later kernel). */
__host__ __device__ static inline int32_t cu_coord_lookup(cu_coord_table t, uint64_t k) {
        uint64_t s = cu_coord_slot(k, t.mask);
        for (uint64_t probe = 0; probe <= t.mask; probe++, s = (s + 1) & t.mask) {
                uint64_t v = t.key[s];
                if (v == k)
                        return t.val[s];
                if (v == CU_COORD_EMPTY)
                        return -1;
        }
        return -1;
}

/* nbr[i*27 + r] for the voxel i at p = grid_coord + 3i: the neighbour at offset
 * (a-1, b-1, c-1), r = 9a + 3b + c. The centre is the voxel itself even when an earlier
 * duplicate holds its coordinate in the table, as on the CPU. */
__host__ __device__ static inline int32_t cu_subm_entry(cu_coord_table t, const int32_t *p,
                                                        int32_t i, int r) {
        if (r == 13)
                return i;
        int a = r / 9, b = r / 3 % 3, c = r % 3;
        int64_t x = (int64_t) p[0] + a - 1, y = (int64_t) p[1] + b - 1, z = (int64_t) p[2] + c - 1;
        if (x < 0 || y < 0 || z < 0)
                return -1;
        return cu_coord_lookup(t, cu_coord_pack((uint64_t) x, (uint64_t) y, (uint64_t) z));
}

/* cuda_subm_neighbors (cuda_backend.h) runs these on the backend's stream: nbr [n, 27] of the
 * voxels grid [n, 3], 0, -EINVAL (n out of range), -ERANGE (a coordinate outside
 * [0, 2^21 - 1), as the CPU), -ENOMEM or -EIO; it synchronises the stream once, to read back
 * the range check. */
