/* SPDX-License-Identifier: MIT */
/* Space-filling-curve serialization keys on the device, the twins of p3_z_encode,
 * p3_hilbert_encode, p3_order_code and p3_serial_depth (daemon/engine/serialize.c), written
 * once as __host__ __device__ functions so that the host-compiled test compares them with the
 * CPU bit for bit. The order of a level is then the stable ascending sort of these keys, ties
 * by point index, as p3_argsort_u64 (an LSD radix sort) gives it. */
#pragma once

#include <stdint.h>

#include "cuda_backend.h"

/* The orders, numbered as p3_order (daemon/engine/model_config.h). */
enum {
        CU_ORDER_Z,
        CU_ORDER_Z_TRANS,
        CU_ORDER_HILBERT,
        CU_ORDER_HILBERT_TRANS,
};

/* p3_serialize's limit: 3·16 bits of code (upstream keeps the batch above them). */
#define CU_SERIAL_DEPTH_MAX 16

/* Spread the low 21 bits of v so that bit i lands at bit 3i. */
__host__ __device__ static inline uint64_t cu_spread3(uint64_t v) {
        v &= 0x1fffff;
        v = (v | v << 32) & 0x1f00000000ffffull;
        v = (v | v << 16) & 0x1f0000ff0000ffull;
        v = (v | v << 8) & 0x100f00f00f00f00full;
        v = (v | v << 4) & 0x10c30c30c30c30c3ull;
        v = (v | v << 2) & 0x1249249249249249ull;
        return v;
}

__host__ __device__ static inline uint64_t cu_low_bits(int depth) {
        return depth >= 21 ? 0x1fffff : (1ull << depth) - 1;
}

/* bit_i(x) at 3i+2, bit_i(y) at 3i+1, bit_i(z) at 3i, for i < depth. */
__host__ __device__ static inline uint64_t cu_z_encode(uint32_t x, uint32_t y, uint32_t z,
                                                       int depth) {
        uint64_t m = cu_low_bits(depth);
        return cu_spread3(x & m) << 2 | cu_spread3(y & m) << 1 | cu_spread3(z & m);
}

/* Skilling's transposition on whole words, then the Gray decode as a prefix XOR from the top
 * (see p3_hilbert_encode). depth <= 63. */
__host__ __device__ static inline uint64_t cu_hilbert_encode(uint32_t x, uint32_t y, uint32_t z,
                                                             int depth) {
        uint64_t m = cu_low_bits(depth);
        uint64_t g0 = x & m, g1 = y & m, g2 = z & m;

        for (int t = 0; t < depth; t++) {
                int bit = depth - 1 - t;
                uint64_t below = (1ull << bit) - 1;
                /* d = 0, 1, 2 in turn, as the CPU's loop over g[d] (d = 0 swaps g0 with
                 * itself, which only matters through the invert branch) */
                if ((g0 >> bit) & 1)
                        g0 ^= below;
                if ((g1 >> bit) & 1) {
                        g0 ^= below;
                } else {
                        uint64_t s = (g0 ^ g1) & below;
                        g1 ^= s;
                        g0 ^= s;
                }
                if ((g2 >> bit) & 1) {
                        g0 ^= below;
                } else {
                        uint64_t s = (g0 ^ g2) & below;
                        g2 ^= s;
                        g0 ^= s;
                }
        }

        uint64_t h = cu_spread3(g0) << 2 | cu_spread3(g1) << 1 | cu_spread3(g2);
        for (int s = 1; s < 64; s <<= 1)
                h ^= h >> s;
        return h;
}

/* The code of one point for an order (the -trans variants swap x and y). */
__host__ __device__ static inline uint64_t cu_order_code(int order, const int32_t *xyz, int depth) {
        uint32_t x = (uint32_t) xyz[0], y = (uint32_t) xyz[1], z = (uint32_t) xyz[2];

        switch (order) {
        case CU_ORDER_Z:
                return cu_z_encode(x, y, z, depth);
        case CU_ORDER_Z_TRANS:
                return cu_z_encode(y, x, z, depth);
        case CU_ORDER_HILBERT:
                return cu_hilbert_encode(x, y, z, depth);
        case CU_ORDER_HILBERT_TRANS:
                return cu_hilbert_encode(y, x, z, depth);
        }
        return 0;
}

/* p3_serial_depth from the largest coordinate over all axes (at least 0): bit_length(mx + 1). */
__host__ __device__ static inline int cu_serial_depth(int64_t mx) {
        uint64_t v = (uint64_t) (mx > 0 ? mx : 0) + 1;
        int d = 0;
        while (v) {
                d++;
                v >>= 1;
        }
        return d;
}

/* The bits a code of this depth can occupy: [0, 3·depth), which bounds the radix passes. */
__host__ __device__ static inline int cu_serial_key_bits(int depth) {
        return 3 * depth;
}

/* The rank slot s of a level's padded attention sequence holds (p3_attention_pad): its own
 * below n, one window earlier from n on, so that the last window is the last `window` ranks. */
__host__ __device__ static inline int64_t cu_window_rank(int64_t s, int64_t n, int64_t window) {
        return s < n ? s : s - window;
}

#ifdef __cplusplus
extern "C" {
#endif

/* order_dev [n] (device, int32) = the stable ascending argsort of the codes of the n points
 * grid_coord_dev [n, 3] (device, int32) for one order (a p3_order) at depth (1..16, from
 * p3_serial_depth), as p3_serialize's row for that order. On the backend's stream; no
 * synchronisation. 0, -EINVAL, -ENOMEM, -EIO. */
int cuda_serialize_order(p3_backend *be, const int32_t *grid_coord_dev, int64_t n, int order,
                         int depth, int32_t *order_dev);

#ifdef __cplusplus
}
#endif
