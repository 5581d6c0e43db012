/* SPDX-License-Identifier: MIT */
/* One serialized order of a level on the device: the codes of every point (cuda_serialize.cuh),
 * then CUB's radix sort of (code, point index) pairs. CUB's radix sort is stable and the
 * indices go in ascending, so equal codes keep index order, which is what p3_argsort_u64 (a
 * stable LSD radix sort) gives on the CPU. Only the 3·depth low bits are sorted: no code has
 * bits above them. The backend op window_slots then gathers that order into the padded slot
 * map the attention op takes (cu_window_rank), so a level's structure never visits the host. */
#include <errno.h>

#include <cub/device/device_radix_sort.cuh>

#include "cuda_backend.h"
#include "cuda_serialize.cuh"

#define BLOCK 256

__global__ static void serial_codes(const int32_t *gc, int64_t n, int order, int depth,
                                    uint64_t *code, int32_t *idx) {
        for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
             i += (int64_t) gridDim.x * blockDim.x) {
                code[i] = cu_order_code(order, gc + 3 * i, depth);
                idx[i] = (int32_t) i;
        }
}

/* Scratch: codes in and out, indices in, then CUB's temporary storage. */
typedef struct serial_scratch {
        uint64_t *code_in, *code_out;
        int32_t *idx_in;
        void *cub;
        size_t cub_bytes;
} serial_scratch;

static size_t align256(size_t b) {
        return (b + 255) & ~(size_t) 255;
}

static int serial_sort(p3_backend *be, const int32_t *gc, int n, int order, int depth,
                       int32_t *order_dev, serial_scratch *sc) {
        cudaStream_t st = cuda_st(be)->stream;
        serial_codes<<<cuda_grid(n, BLOCK), BLOCK, 0, st>>>(gc, n, order, depth, sc->code_in,
                                                            sc->idx_in);
        int r = cuda_check_launch(be, "serial_codes");
        if (r < 0)
                return r;
        size_t bytes = sc->cub_bytes;
        return cuda_check(be,
                          cub::DeviceRadixSort::SortPairs(sc->cub, bytes, sc->code_in, sc->code_out,
                                                          sc->idx_in, order_dev, n, 0,
                                                          cu_serial_key_bits(depth), st),
                          "cub::DeviceRadixSort::SortPairs");
}

extern "C" int cuda_serialize_order(p3_backend *be, const int32_t *grid_coord_dev, int64_t n,
                                    int order, int depth, int32_t *order_dev) {
        if (n < 0 || n > INT32_MAX || depth < 1 || depth > CU_SERIAL_DEPTH_MAX ||
            order < CU_ORDER_Z || order > CU_ORDER_HILBERT_TRANS)
                return -EINVAL;
        if (n == 0)
                return 0;

        /* The size query touches no memory and launches nothing. */
        size_t cub_bytes = 0;
        int r = cuda_check(be,
                           cub::DeviceRadixSort::SortPairs(
                                   (void *) NULL, cub_bytes, (const uint64_t *) NULL,
                                   (uint64_t *) NULL, (const int32_t *) NULL, (int32_t *) NULL,
                                   (int) n, 0, cu_serial_key_bits(depth), cuda_st(be)->stream),
                           "cub::DeviceRadixSort::SortPairs (size)");
        if (r < 0)
                return r;

        /* One allocation, each part 256-byte aligned as CUB wants its storage. */
        size_t codes = align256(sizeof(uint64_t) * (size_t) n);
        size_t idx = align256(sizeof(int32_t) * (size_t) n);
        size_t bytes = 2 * codes + idx + align256(cub_bytes);
        void *mem = NULL;
        if ((r = cuda_tmp_alloc(be, bytes, &mem)) < 0)
                return r;
        char *p = (char *) mem;
        serial_scratch sc;
        sc.code_in = (uint64_t *) p;
        sc.code_out = (uint64_t *) (p + codes);
        sc.idx_in = (int32_t *) (p + 2 * codes);
        sc.cub = p + 2 * codes + idx;
        sc.cub_bytes = cub_bytes;
        r = serial_sort(be, grid_coord_dev, (int) n, order, depth, order_dev, &sc);
        cuda_tmp_free(be, mem, bytes);
        return r;
}

__global__ static void window_gather(const int32_t *order, int64_t n, int64_t window,
                                     int64_t n_pad, int32_t *slot) {
        for (int64_t s = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; s < n_pad;
             s += (int64_t) gridDim.x * blockDim.x)
                slot[s] = order[cu_window_rank(s, n, window)];
}

extern "C" int cuda_window_slots(p3_backend *be, const int32_t *grid_coord_dev, int64_t n,
                                 int order, int depth, int64_t window, int64_t n_pad,
                                 int32_t *slot_dev) {
        if (n < 0 || n > INT32_MAX || window < (n > 0) || window > n || n_pad < n ||
            (window && (n_pad % window || n_pad - n >= window)))
                return -EINVAL;
        if (n == 0)
                return 0;
        int32_t *ord = NULL;
        size_t bytes = sizeof(int32_t) * (size_t) n;
        int r = cuda_tmp_alloc(be, bytes, (void **) &ord);
        if (r < 0)
                return r;
        r = cuda_serialize_order(be, grid_coord_dev, n, order, depth, ord);
        if (r >= 0) {
                window_gather<<<cuda_grid(n_pad, BLOCK), BLOCK, 0, cuda_st(be)->stream>>>(
                        ord, n, window, n_pad, slot_dev);
                r = cuda_check_launch(be, "window_gather");
        }
        cuda_tmp_free(be, ord, bytes);
        return r;
}
