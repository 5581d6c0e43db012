/* SPDX-License-Identifier: MIT */
/* LayerNorm, GELU and residual adds on the GPU; the twin of kernels/cpu/cpu_norm.c.
 *
 * One warp per row: lanes stride over the columns (coalesced), each keeps a Welford partial of
 * its share (shifted by the row's first value, see cuda_elementwise.cuh), and the partials
 * merge down a __shfl_down_sync tree to lane 0, which broadcasts the row's statistics
 * (cu_stats_tree replays that order on the host). Rows of any width work; statistics, GELU
 * inputs and accumulation are FP32 (cuda_elementwise.cuh).
 *
 * In place (y == x): every lane reads the shift x[0] and its own elements before the
 * shuffles, and only then writes its own elements; no other warp touches the row. */
#include <errno.h>

#include "cuda_backend.h"
#include "cuda_elementwise.cuh"

enum {
        ROW_WARPS = 8, /* rows per block of the row kernels */
        ROW_BLOCK = 32 * ROW_WARPS,
};

/* The statistic partials hold counts as FP32, exact to 2^24. */
#define MAX_LN_COLS (1 << 24)

static bool is_f32(const p3_tensor *t) {
        return t->dtype == P3_F32 && t->rows >= 0 && t->cols >= 0 && p3_ld(t) >= t->cols;
}

/* A vector of n FP32 values (g or b), stored as one row or one column. */
static bool is_vector(const p3_tensor *t, int64_t n) {
        return t->dtype == P3_F32 && t->data && t->rows * t->cols == n &&
               (t->rows == 1 || p3_ld(t) == t->cols);
}

/* The merged statistics of the row's values minus shift, the same on every lane. Every lane of
 * the warp calls it. */
__device__ static cu_stats row_stats(const float *xr, float shift, int c, int lane) {
        cu_stats s = {0.0f, 0.0f, 0.0f};
        for (int j = lane; j < c; j += 32)
                s = cu_stats_push(s, xr[j] - shift);
        /* Lanes past the tree's live half merge junk into themselves; lane 0 only ever reads
         * lanes whose partials are complete, so its result is the whole row. */
        for (int off = 16; off > 0; off >>= 1) {
                cu_stats o;
                o.n = __shfl_down_sync(0xffffffffu, s.n, off);
                o.mean = __shfl_down_sync(0xffffffffu, s.mean, off);
                o.m2 = __shfl_down_sync(0xffffffffu, s.m2, off);
                s = cu_stats_merge(s, o);
        }
        s.n = __shfl_sync(0xffffffffu, s.n, 0);
        s.mean = __shfl_sync(0xffffffffu, s.mean, 0);
        s.m2 = __shfl_sync(0xffffffffu, s.m2, 0);
        return s;
}

__global__ static void layernorm_kernel(const float *x, int64_t ldx, const float *g,
                                        const float *b, float *y, int64_t ldy, int64_t rows,
                                        int c, bool gelu, bool accumulate) {
        int lane = threadIdx.x & 31;
        int64_t first = (int64_t) blockIdx.x * ROW_WARPS + (threadIdx.x >> 5);
        int64_t step = (int64_t) gridDim.x * ROW_WARPS;
        /* r is the same on every lane of a warp, so the full-mask shuffles are legal. */
        for (int64_t r = first; r < rows; r += step) {
                const float *xr = x + r * ldx;
                float *yr = y + r * ldy;
                float shift = xr[0], mean, inv; /* one address: a broadcast load */
                cu_ln_finish(row_stats(xr, shift, c, lane), &mean, &inv);
                for (int j = lane; j < c; j += 32) {
                        float gj = g ? g[j] : 1.0f;
                        float bj = b ? b[j] : 0.0f;
                        float old = accumulate ? yr[j] : 0.0f;
                        yr[j] = cu_ln_out(xr[j], shift, mean, inv, gj, bj, gelu, accumulate,
                                          old);
                }
        }
}

int cuda_layernorm(p3_backend *be, const p3_tensor *x, const p3_tensor *g, const p3_tensor *b,
                   p3_tensor *y, unsigned flags) {
        if (!is_f32(x) || !is_f32(y) || x->rows != y->rows || x->cols != y->cols ||
            x->cols > MAX_LN_COLS || (flags & ~(unsigned) (P3_GELU | P3_ACCUMULATE)))
                return -EINVAL;
        if ((g && !is_vector(g, x->cols)) || (b && !is_vector(b, x->cols)))
                return -EINVAL;
        /* An in-place call must be exactly in place: a shifted alias would race across rows. */
        if (x->data == y->data && p3_ld(x) != p3_ld(y))
                return -EINVAL;
        if (x->rows == 0 || x->cols == 0)
                return 0;
        layernorm_kernel<<<cuda_grid(x->rows, ROW_WARPS), ROW_BLOCK, 0, cuda_st(be)->stream>>>(
                (const float *) x->data, p3_ld(x), g ? (const float *) g->data : NULL,
                b ? (const float *) b->data : NULL, (float *) y->data, p3_ld(y), x->rows,
                (int) x->cols, (flags & P3_GELU) != 0, (flags & P3_ACCUMULATE) != 0);
        return cuda_check_launch(be, "layernorm_kernel");
}

/* Element kernels over a strided rows × cols matrix: a warp per row, lanes along the row. */
__global__ static void gelu_kernel(float *x, int64_t ldx, int64_t rows, int64_t cols) {
        int lane = threadIdx.x & 31;
        int64_t first = (int64_t) blockIdx.x * ROW_WARPS + (threadIdx.x >> 5);
        for (int64_t r = first; r < rows; r += (int64_t) gridDim.x * ROW_WARPS) {
                float *xr = x + r * ldx;
                for (int64_t j = lane; j < cols; j += 32)
                        xr[j] = cu_gelu(xr[j]);
        }
}

__global__ static void add_kernel(const float *x, int64_t ldx, float *y, int64_t ldy,
                                  int64_t rows, int64_t cols) {
        int lane = threadIdx.x & 31;
        int64_t first = (int64_t) blockIdx.x * ROW_WARPS + (threadIdx.x >> 5);
        for (int64_t r = first; r < rows; r += (int64_t) gridDim.x * ROW_WARPS) {
                const float *xr = x + r * ldx;
                float *yr = y + r * ldy;
                for (int64_t j = lane; j < cols; j += 32)
                        yr[j] += xr[j];
        }
}

/* Contiguous tensors (ld == cols) run as one flat array: full warps whatever the width. */
__global__ static void gelu_flat_kernel(float *x, int64_t n) {
        int64_t step = (int64_t) gridDim.x * blockDim.x;
        for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
                x[i] = cu_gelu(x[i]);
}

__global__ static void add_flat_kernel(const float *x, float *y, int64_t n) {
        int64_t step = (int64_t) gridDim.x * blockDim.x;
        for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
                y[i] += x[i];
}

int cuda_gelu(p3_backend *be, p3_tensor *x) {
        if (!is_f32(x))
                return -EINVAL;
        if (x->rows == 0 || x->cols == 0)
                return 0;
        cudaStream_t s = cuda_st(be)->stream;
        if (p3_ld(x) == x->cols) {
                int64_t n = x->rows * x->cols;
                gelu_flat_kernel<<<cuda_grid(n, ROW_BLOCK), ROW_BLOCK, 0, s>>>(
                        (float *) x->data, n);
                return cuda_check_launch(be, "gelu_flat_kernel");
        }
        gelu_kernel<<<cuda_grid(x->rows, ROW_WARPS), ROW_BLOCK, 0, s>>>(
                (float *) x->data, p3_ld(x), x->rows, x->cols);
        return cuda_check_launch(be, "gelu_kernel");
}

int cuda_add(p3_backend *be, const p3_tensor *x, p3_tensor *y) {
        if (!is_f32(x) || !is_f32(y) || x->rows != y->rows || x->cols != y->cols)
                return -EINVAL;
        if (x->rows == 0 || x->cols == 0)
                return 0;
        cudaStream_t s = cuda_st(be)->stream;
        if (p3_ld(x) == x->cols && p3_ld(y) == y->cols) {
                int64_t n = x->rows * x->cols;
                add_flat_kernel<<<cuda_grid(n, ROW_BLOCK), ROW_BLOCK, 0, s>>>(
                        (const float *) x->data, (float *) y->data, n);
                return cuda_check_launch(be, "add_flat_kernel");
        }
        add_kernel<<<cuda_grid(x->rows, ROW_WARPS), ROW_BLOCK, 0, s>>>(
                (const float *) x->data, p3_ld(x), (float *) y->data, p3_ld(y), x->rows,
                x->cols);
        return cuda_check_launch(be, "add_kernel");
}
