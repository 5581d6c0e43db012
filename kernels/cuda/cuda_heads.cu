/* SPDX-License-Identifier: MIT */
/* The P3-SAM heads on the GPU, the twin of cpu_heads.c. The schedule (tiles of points ×
 * prompts, two passes, prompt chunks) and every kernel's item arithmetic are in
 * cuda_heads_tile.cuh, shared with the host-compiled test; this file runs them on the device:
 * item kernels (grid-stride), row kernels for the wide elementwise layers (one division a row),
 * a warp per row for the width-1 last layers, atomicMax on order-preserving keys for the
 * running maxima, matrix products through cuda_gemm_w (tensor cores, FP32 accumulation). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_backend.h"
#include "cuda_heads_tile.cuh"
#include "macro.h"

#define BLOCK 256

template <int K>
__global__ void __launch_bounds__(BLOCK) heads_items(const cu_hk a, int64_t items) {
        int64_t step = (int64_t) gridDim.x * blockDim.x;
        for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < items; i += step)
                cu_hk_item_k(K, &a, i);
}

/* FIRST and BIAS_GELU: blocks take rows, threads take channels (coalesced). */
__global__ void __launch_bounds__(BLOCK) heads_first_rows(const cu_hk a, int64_t rows) {
        for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
                int64_t t = r / a.kc, j = r - t * a.kc;
                for (int64_t c = threadIdx.x; c < a.width; c += blockDim.x)
                        cu_hk_first_at(&a, t, j, c);
        }
}

__global__ void __launch_bounds__(BLOCK) heads_bias_gelu_rows(const cu_hk a, int64_t rows) {
        for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
                for (int64_t c = threadIdx.x; c < a.width; c += blockDim.x)
                        cu_hk_bias_gelu_at(&a, r, c);
}

/* A width-1 last layer: a warp per row, lanes across channels, a butterfly sum (the order
 * cu_lane_tree_sum emulates). Rows are warp-uniform, so every lane joins the shuffles. */
__global__ void __launch_bounds__(BLOCK) heads_dot(const cu_hk a, int64_t rows) {
        int lane = threadIdx.x & 31;
        int64_t warp = ((int64_t) blockIdx.x * blockDim.x + threadIdx.x) >> 5;
        int64_t warps = ((int64_t) gridDim.x * blockDim.x) >> 5;
        for (int64_t r = warp; r < rows; r += warps) {
                float s = cu_hk_dot_part(&a, r, lane, 32);
                for (int off = 16; off >= 1; off >>= 1)
                        s += __shfl_xor_sync(0xffffffffu, s, off);
                if (lane == 0)
                        cu_hk_dot_store(&a, r, s + a.wb[0]);
        }
}

/* Running max: each item's maximum over a few points, then one atomic per item. */
__global__ void __launch_bounds__(BLOCK) heads_bias_max(const cu_hk a, int64_t items) {
        int64_t step = (int64_t) gridDim.x * blockDim.x;
        for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < items; i += step) {
                int64_t slot;
                int32_t key = cu_hk_bias_max(&a, i, &slot);
                atomicMax(a.keys + slot, key);
        }
}

static unsigned row_grid(int64_t rows) {
        return (unsigned) (rows < 65535 ? (rows < 1 ? 1 : rows) : 65535);
}

static int dev_run(void *ctx, const cu_hk *a, int64_t items) {
        p3_backend *be = (p3_backend *) ctx;
        cudaStream_t s = cuda_st(be)->stream;
        unsigned g = cuda_grid(items, BLOCK);
        switch (a->kind) {
#define CU_ITEMS(kind)                                                                         \
        case kind:                                                                             \
                heads_items<kind><<<g, BLOCK, 0, s>>>(*a, items);                              \
                return cuda_check_launch(be, "heads_items<" #kind ">");
        CU_ITEMS(CU_HK_GATHER)
        CU_ITEMS(CU_HK_MAX_INIT)
        CU_ITEMS(CU_HK_KEYS_TO_F)
        CU_ITEMS(CU_HK_S1)
        CU_ITEMS(CU_HK_S2)
        CU_ITEMS(CU_HK_BITS)
        CU_ITEMS(CU_HK_COLS)
        CU_ITEMS(CU_HK_PROMPT)
        CU_ITEMS(CU_HK_SIGMOID)
#undef CU_ITEMS
        case CU_HK_FIRST:
                heads_first_rows<<<row_grid(items / a->width), BLOCK, 0, s>>>(*a,
                                                                             items / a->width);
                return cuda_check_launch(be, "heads_first_rows");
        case CU_HK_BIAS_GELU:
                heads_bias_gelu_rows<<<row_grid(items / a->width), BLOCK, 0, s>>>(
                        *a, items / a->width);
                return cuda_check_launch(be, "heads_bias_gelu_rows");
        case CU_HK_DOT:
                heads_dot<<<cuda_grid(items * 32, BLOCK), BLOCK, 0, s>>>(*a, items);
                return cuda_check_launch(be, "heads_dot");
        case CU_HK_BIAS_MAX:
                heads_bias_max<<<g, BLOCK, 0, s>>>(*a, items);
                return cuda_check_launch(be, "heads_bias_max");
        }
        return -EINVAL;
}

/* Test hook: $P3_TEST_CUDA_HEADS_ALLOC_FAIL=N refuses the next N heads' scratch allocations
 * (one a call), as the device does when other work took the memory they were sized on
 * (tests/gpu-residency.c: the engine's retry, on a GPU). The variable arms the count, kept
 * here; unset, it disarms. Read once a heads call, not on every allocation. */
static bool test_alloc_refused(void) {
        static int left = -1; /* the inference thread's only */
        const char *v = getenv("P3_TEST_CUDA_HEADS_ALLOC_FAIL");
        if (!v) {
                left = -1;
                return false;
        }
        if (left < 0)
                left = atoi(v);
        return left > 0 && left-- > 0;
}

static int dev_alloc(void *ctx, size_t bytes, void **ret) {
        if (test_alloc_refused())
                return -ENOMEM;
        return cuda_tmp_alloc((p3_backend *) ctx, bytes, ret);
}

static void dev_free(void *ctx, void *p, size_t bytes) {
        cuda_tmp_free((p3_backend *) ctx, p, bytes);
}

static int dev_upload(void *ctx, void *dst, const void *src, size_t bytes) {
        p3_backend *be = (p3_backend *) ctx;
        return cuda_check(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice,
                                              cuda_st(be)->stream),
                          "cudaMemcpyAsync (heads inputs)");
}

static int dev_download(void *ctx, void *dst, const void *src, size_t bytes) {
        p3_backend *be = (p3_backend *) ctx;
        return cuda_check(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost,
                                              cuda_st(be)->stream),
                          "cudaMemcpyAsync (heads outputs)");
}

static int dev_sync(void *ctx) {
        p3_backend *be = (p3_backend *) ctx;
        return cuda_check(be, cudaStreamSynchronize(cuda_st(be)->stream),
                          "cudaStreamSynchronize (heads)");
}

static int dev_gemm(void *ctx, int64_t m, int64_t k, const float *a, int64_t lda,
                    const p3_tensor *w, int64_t col, float *c, int64_t ldc, bool acc) {
        return cuda_gemm_w((p3_backend *) ctx, m, k, a, lda, w, col, c, ldc, acc);
}

/* $P3_CUDA_HEADS_TILE=PAIRS,PROMPTS: tiles of that many pairs and chunks of at most that many
 * prompts, so that the self-test's few hundred points and prompts cross many tiles and
 * chunks, partial ones included (scripts/gpu-check.sh); unset or invalid, the sizes below. */
static void test_tile(cu_heads_cfg *cfg) {
        const char *v = getenv("P3_CUDA_HEADS_TILE");
        long long rows, chunk;
        if (!v || sscanf(v, "%lld,%lld", &rows, &chunk) != 2 || chunk < 1 || rows < 8 * chunk)
                return;
        cfg->target_rows = cfg->max_rows = rows, cfg->max_chunk = chunk, cfg->tile_budget = 0;
}

/* Sized on what is free now (cu_heads_cfg_for); the engine halves its batch if even that
 * fails. */
int cuda_heads(p3_backend *be, const p3_heads_params *hp, const p3_heads_input *in,
               p3_heads_output *out) {
        cu_heads_exec ex = { be, dev_alloc, dev_free, dev_upload, dev_download, dev_sync,
                             dev_gemm, dev_run };
        cu_heads_cfg cfg = cu_heads_cfg_for(MIN(p3_backend_room(be), cuda_device_free()));
        test_tile(&cfg);
        return cu_heads_run(&ex, hp, in, out, &cfg);
}
