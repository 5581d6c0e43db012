/* SPDX-License-Identifier: MIT */
/* Row gathers (unpooling, voxel → point) and segment max (pooling) on the GPU; the twin of
 * kernels/cpu/cpu_misc.c. A warp per output row (or input row, for segment max), lanes along
 * the row so that reads and writes coalesce. Index arrays are device int32 and trusted, as on
 * the CPU: the host cannot check them without a copy back. */
#include <errno.h>

#include "cuda_backend.h"
#include "cuda_elementwise.cuh"

enum {
        ROW_WARPS = 8,
        ROW_BLOCK = 32 * ROW_WARPS,
};

static bool is_f32(const p3_tensor *t) {
        return t->dtype == P3_F32 && t->rows >= 0 && t->cols >= 0 && p3_ld(t) >= t->cols;
}

/* The first row of this warp and the step between its rows (grid-stride over rows). */
__device__ static inline int64_t warp_row0(void) {
        return (int64_t) blockIdx.x * ROW_WARPS + (threadIdx.x >> 5);
}

__device__ static inline int64_t warp_row_step(void) {
        return (int64_t) gridDim.x * ROW_WARPS;
}

/* y[i, col0 + j] = x[idx ? idx[i] : i, j]. */
__global__ static void gather_rows_kernel(const float *x, int64_t ldx, const int32_t *idx,
                                          float *y, int64_t ldy, int64_t rows, int64_t cols) {
        int lane = threadIdx.x & 31;
        for (int64_t i = warp_row0(); i < rows; i += warp_row_step()) {
                const float *xr = x + (idx ? (int64_t) idx[i] : i) * ldx;
                float *yr = y + i * ldy;
                for (int64_t j = lane; j < cols; j += 32)
                        yr[j] = xr[j];
        }
}

int cuda_gather_rows(p3_backend *be, const p3_tensor *x, const int32_t *idx, p3_tensor *y,
                     int64_t col0) {
        if (!is_f32(x) || !is_f32(y) || col0 < 0 || col0 + x->cols > y->cols)
                return -EINVAL;
        /* Without idx, row i of y is row i of x. */
        if (!idx && x->rows < y->rows)
                return -EINVAL;
        if (y->rows == 0 || x->cols == 0)
                return 0;
        gather_rows_kernel<<<cuda_grid(y->rows, ROW_WARPS), ROW_BLOCK, 0,
                             cuda_st(be)->stream>>>((const float *) x->data, p3_ld(x), idx,
                                                    (float *) y->data + col0, p3_ld(y),
                                                    y->rows, x->cols);
        return cuda_check_launch(be, "gather_rows_kernel");
}

/* y[i, j] += x[idx ? idx[i] : i, j]. */
__global__ static void gather_add_kernel(const float *x, int64_t ldx, const int32_t *idx,
                                         float *y, int64_t ldy, int64_t rows, int64_t cols) {
        int lane = threadIdx.x & 31;
        for (int64_t i = warp_row0(); i < rows; i += warp_row_step()) {
                const float *xr = x + (idx ? (int64_t) idx[i] : i) * ldx;
                float *yr = y + i * ldy;
                for (int64_t j = lane; j < cols; j += 32)
                        yr[j] += xr[j];
        }
}

int cuda_gather_add(p3_backend *be, const p3_tensor *x, const int32_t *idx, p3_tensor *y) {
        if (!is_f32(x) || !is_f32(y) || x->cols != y->cols || (!idx && x->rows < y->rows))
                return -EINVAL;
        if (y->rows == 0 || y->cols == 0)
                return 0;
        gather_add_kernel<<<cuda_grid(y->rows, ROW_WARPS), ROW_BLOCK, 0,
                            cuda_st(be)->stream>>>((const float *) x->data, p3_ld(x), idx,
                                                   (float *) y->data, p3_ld(y), y->rows,
                                                   y->cols);
        return cuda_check_launch(be, "gather_add_kernel");
}

/* Segment max in three steps on y's own storage: every element set to the key of -inf, an
 * atomicMax of each member's key (cu_f32_key: unsigned order = float order), the keys turned
 * back into floats. Exact and independent of the order the atomics land in. A cluster with no
 * member keeps -inf, as on the CPU (the contract says every cluster has one). NaN inputs are
 * skipped, as the CPU's fmaxf skips them. */
__global__ static void fill_key_kernel(uint32_t *y, int64_t ldy, int64_t rows, int64_t cols) {
        int lane = threadIdx.x & 31;
        for (int64_t i = warp_row0(); i < rows; i += warp_row_step())
                for (int64_t j = lane; j < cols; j += 32)
                        y[i * ldy + j] = CU_F32_KEY_NEG_INF;
}

__global__ static void segment_max_kernel(const float *x, int64_t ldx, const int32_t *cluster,
                                          uint32_t *y, int64_t ldy, int64_t rows, int64_t cols) {
        int lane = threadIdx.x & 31;
        for (int64_t i = warp_row0(); i < rows; i += warp_row_step()) {
                const float *xr = x + i * ldx;
                uint32_t *yr = y + (int64_t) cluster[i] * ldy;
                for (int64_t j = lane; j < cols; j += 32) {
                        float v = xr[j];
                        if (v == v)
                                atomicMax(yr + j, cu_f32_key(v));
                }
        }
}

__global__ static void key_to_f32_kernel(uint32_t *y, int64_t ldy, int64_t rows, int64_t cols) {
        int lane = threadIdx.x & 31;
        for (int64_t i = warp_row0(); i < rows; i += warp_row_step()) {
                uint32_t *yr = y + i * ldy;
                for (int64_t j = lane; j < cols; j += 32) {
                        float f = cu_f32_from_key(yr[j]);
                        memcpy(yr + j, &f, sizeof(f));
                }
        }
}

int cuda_segment_max(p3_backend *be, const p3_tensor *x, const int32_t *cluster, p3_tensor *y) {
        if (!is_f32(x) || !is_f32(y) || x->cols != y->cols || (x->rows > 0 && !cluster))
                return -EINVAL;
        if (y->rows == 0 || y->cols == 0)
                return 0;
        cudaStream_t s = cuda_st(be)->stream;
        /* unsigned int and uint32_t are the same type on every CUDA platform; atomicMax takes
         * unsigned int *. */
        uint32_t *yk = (uint32_t *) y->data;
        int64_t ldy = p3_ld(y);
        fill_key_kernel<<<cuda_grid(y->rows, ROW_WARPS), ROW_BLOCK, 0, s>>>(yk, ldy, y->rows,
                                                                             y->cols);
        int r = cuda_check_launch(be, "fill_key_kernel");
        if (r < 0)
                return r;
        if (x->rows > 0) {
                segment_max_kernel<<<cuda_grid(x->rows, ROW_WARPS), ROW_BLOCK, 0, s>>>(
                        (const float *) x->data, p3_ld(x), cluster, yk, ldy, x->rows, x->cols);
                r = cuda_check_launch(be, "segment_max_kernel");
                if (r < 0)
                        return r;
        }
        key_to_f32_kernel<<<cuda_grid(y->rows, ROW_WARPS), ROW_BLOCK, 0, s>>>(yk, ldy, y->rows,
                                                                               y->cols);
        return cuda_check_launch(be, "key_to_f32_kernel");
}
