/* SPDX-License-Identifier: MIT */
/* Linear layers on the GPU, the twin of kernels/cpu/cpu_gemm.c: matrix products through
 * cuBLAS (FP16/BF16 inputs with FP32 accumulation, or FP32 with TF32 off), the activations
 * rounded to the weight's type first, and one epilogue kernel for bias, GELU and accumulation.
 * Row-major products reach cuBLAS's column-major call through cuda_gemm_layout.c. */
#include <errno.h>
#include <limits.h>

#include "cuda_backend.h"
#include "cuda_elementwise.cuh"
#include "cuda_gemm_layout.h"

#define BLOCK 256
/* Rows per cuBLAS call are capped so that the rounded copy of A and the pre-activation
 * scratch stay small (2^25 elements: 64 MiB at FP16, 128 MiB at FP32) whatever the point
 * count, and so that no call spans 2^31 elements of any operand. */
#define SCRATCH_ELEMS ((int64_t) 1 << 25)

/* ---- rounding --------------------------------------------------------------------------- */

/* dst[i, j] (row stride ldd) = src[i, j] (row stride lds) in FP16 or BF16 bits. Columns across
 * x, rows across y; both grid-stride. */
template <bool BF16>
__global__ void round_rows_kernel(const float *src, int64_t lds, uint16_t *dst, int64_t ldd,
                                  int64_t rows, int64_t cols) {
        for (int64_t i = blockIdx.y; i < rows; i += gridDim.y) {
                const float *s = src + i * lds;
                uint16_t *d = dst + i * ldd;
                for (int64_t j = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; j < cols;
                     j += (int64_t) gridDim.x * blockDim.x)
                        d[j] = BF16 ? cu_to_bf16_bits(s[j]) : cu_to_half_bits(s[j]);
        }
}

/* A 2-D launch over rows × cols: x covers a row, y the rows (grid-stride beyond 65535). */
static dim3 grid_2d(int64_t rows, int64_t cols) {
        return dim3(cuda_grid(cols, BLOCK), (unsigned) (rows < 65535 ? rows : 65535));
}

static int round_rows(p3_backend *be, const float *src, int64_t lds, void *dst, int64_t ldd,
                      p3_dtype t, int64_t rows, int64_t cols) {
        if (rows <= 0 || cols <= 0)
                return 0;
        cudaStream_t s = cuda_st(be)->stream;
        uint16_t *d = (uint16_t *) dst;
        if (t == P3_F16)
                round_rows_kernel<false><<<grid_2d(rows, cols), BLOCK, 0, s>>>(src, lds, d, ldd,
                                                                             rows, cols);
        else if (t == P3_BF16)
                round_rows_kernel<true><<<grid_2d(rows, cols), BLOCK, 0, s>>>(src, lds, d, ldd,
                                                                            rows, cols);
        else
                return -EINVAL;
        return cuda_check_launch(be, "round_rows_kernel");
}

int cuda_round_to(p3_backend *be, const float *src, void *dst, p3_dtype t, int64_t n) {
        if (n < 0)
                return -EINVAL;
        if (n == 0)
                return 0;
        if (t == P3_F32)
                return cuda_check(be, cudaMemcpyAsync(dst, src, sizeof(float) * (size_t) n,
                                                      cudaMemcpyDeviceToDevice,
                                                      cuda_st(be)->stream),
                                  "cudaMemcpyAsync (round_to)");
        /* One row of n: the x dimension's grid-stride loop covers any n. */
        return round_rows(be, src, n, dst, n, t, 1, n);
}

/* ---- products --------------------------------------------------------------------------- */

static cudaDataType cuda_type(p3_dtype t) {
        return t == P3_F16 ? CUDA_R_16F : t == P3_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* c[m, n] (ldc) = a[m, k] (lda, type t) · w[n, k]ᵀ (ldw, type t), FP32 output and
 * accumulation, plus the old c when accumulate. */
static int gemm_nt(p3_backend *be, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                   const void *w, int64_t ldw, p3_dtype t, float *c, int64_t ldc,
                   bool accumulate) {
        p3_gemm_layout l;
        int r = p3_gemm_layout_rowmajor(true, m, n, k, lda, ldw, ldc, &l);
        if (r < 0)
                return r;
        char why[160];
        const cublas_api *api = cuda_cublas(why, sizeof(why));
        if (!api)
                return -EIO;
        const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
        const void *first = l.first == P3_GEMM_OPERAND_B ? w : a;
        const void *second = l.second == P3_GEMM_OPERAND_B ? w : a;
        cudaDataType ty = cuda_type(t);
        /* FP32 (the reference precision's weights, and every backend's width-1 and vector
         * weights): the pedantic compute type, which keeps TF32 and any emulation cuBLAS may
         * pick by environment or device out whatever the handle's math mode. FP16/BF16
         * inputs: FP32 accumulation. */
        cublasComputeType_t compute = t == P3_F32 ? CUBLAS_COMPUTE_32F_PEDANTIC
                                                  : CUBLAS_COMPUTE_32F;
        cublasStatus_t s = api->gemm_ex(cuda_st(be)->cublas,
                                        l.transa == P3_GEMM_T ? CUBLAS_OP_T : CUBLAS_OP_N,
                                        l.transb == P3_GEMM_T ? CUBLAS_OP_T : CUBLAS_OP_N, l.m,
                                        l.n, l.k, &alpha, first, ty, l.lda, second, ty, l.ldb,
                                        &beta, c, CUDA_R_32F, l.ldc, compute,
                                        CUBLAS_GEMM_DEFAULT);
        return cublas_check(be, s, "cublasGemmEx");
}

/* c[m, n] = 0 (row stride ldc): what a product over k = 0 gives. */
static int clear_rows(p3_backend *be, float *c, int64_t ldc, int64_t m, int64_t n) {
        return cuda_check(be, cudaMemset2DAsync(c, sizeof(float) * (size_t) ldc, 0,
                                                sizeof(float) * (size_t) n, (size_t) m,
                                                cuda_st(be)->stream),
                          "cudaMemset2DAsync (gemm k = 0)");
}

/* Rows per call: the scratch bound, and no operand of 2^31 elements or more. */
static int64_t rows_per_call(int64_t m, int64_t k, int64_t lda, int64_t ldc) {
        int64_t widest = lda > ldc ? lda : ldc;
        widest = widest > k ? widest : k;
        int64_t rows = INT_MAX / (widest > 0 ? widest : 1);
        int64_t by_scratch = SCRATCH_ELEMS / (k > 0 ? k : 1);
        rows = rows < by_scratch ? rows : by_scratch;
        rows = rows < m ? rows : m;
        return rows > 0 ? rows : 1;
}

int cuda_gemm_w(p3_backend *be, int64_t m, int64_t k, const float *a, int64_t lda,
                const p3_tensor *w, int64_t col, float *c, int64_t ldc, bool accumulate) {
        int64_t n = w->rows, ldw = p3_ld(w);
        if (m < 0 || k < 0 || col < 0 || col + k > w->cols || lda < k || ldc < n)
                return -EINVAL;
        if (w->dtype != P3_F32 && w->dtype != P3_F16 && w->dtype != P3_BF16)
                return -EINVAL;
        if (m == 0 || n == 0)
                return 0;
        if (k == 0)
                return accumulate ? 0 : clear_rows(be, c, ldc, m, n);
        size_t esize = p3_dtype_size(w->dtype);
        const char *wcol = (const char *) w->data + esize * (size_t) col;
        int64_t rows = rows_per_call(m, k, lda, ldc);
        if (w->dtype == P3_F32) {
                int r = 0;
                for (int64_t r0 = 0; r >= 0 && r0 < m; r0 += rows) {
                        int64_t nr = m - r0 < rows ? m - r0 : rows;
                        r = gemm_nt(be, nr, n, k, a + r0 * lda, lda, wcol, ldw, P3_F32,
                                    c + r0 * ldc, ldc, accumulate);
                }
                return r;
        }
        /* Half-precision weights: A rounded to the same type (dense, ld = k), a chunk of rows
         * at a time through one scratch, as the CPU rounds its row blocks to BF16. */
        void *ah = NULL;
        size_t bytes = esize * (size_t) rows * (size_t) k;
        int r = cuda_tmp_alloc(be, bytes, &ah);
        if (r < 0)
                return r;
        for (int64_t r0 = 0; r >= 0 && r0 < m; r0 += rows) {
                int64_t nr = m - r0 < rows ? m - r0 : rows;
                r = round_rows(be, a + r0 * lda, lda, ah, k, w->dtype, nr, k);
                if (r >= 0)
                        r = gemm_nt(be, nr, n, k, ah, k, wcol, ldw, w->dtype, c + r0 * ldc, ldc,
                                    accumulate);
        }
        cuda_tmp_free(be, ah, bytes);
        return r;
}

/* ---- linear ----------------------------------------------------------------------------- */

/* v = src[i, j] + b[j] (b may be NULL), GELU'd when gelu; y[i, j] = v, or y[i, j] += v when
 * add. src may be y itself (then add is false: each element is read before it is written by
 * the same thread). */
template <bool GELU, bool ADD>
__global__ void linear_epilogue_kernel(const float *src, int64_t lds, const float *b, float *y,
                                       int64_t ldy, int64_t rows, int64_t cols) {
        for (int64_t i = blockIdx.y; i < rows; i += gridDim.y) {
                const float *s = src + i * lds;
                float *d = y + i * ldy;
                for (int64_t j = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; j < cols;
                     j += (int64_t) gridDim.x * blockDim.x) {
                        float v = s[j];
                        if (b)
                                v += b[j];
                        if (GELU)
                                v = cu_gelu(v);
                        if (ADD)
                                d[j] += v;
                        else
                                d[j] = v;
                }
        }
}

static int linear_epilogue(p3_backend *be, const float *src, int64_t lds, const float *b,
                           float *y, int64_t ldy, int64_t rows, int64_t cols, bool gelu,
                           bool add) {
        if (rows <= 0 || cols <= 0)
                return 0;
        dim3 grid = grid_2d(rows, cols);
        cudaStream_t s = cuda_st(be)->stream;
        if (gelu && add)
                linear_epilogue_kernel<true, true><<<grid, BLOCK, 0, s>>>(src, lds, b, y, ldy,
                                                                         rows, cols);
        else if (gelu)
                linear_epilogue_kernel<true, false><<<grid, BLOCK, 0, s>>>(src, lds, b, y, ldy,
                                                                          rows, cols);
        else if (add)
                linear_epilogue_kernel<false, true><<<grid, BLOCK, 0, s>>>(src, lds, b, y, ldy,
                                                                          rows, cols);
        else
                linear_epilogue_kernel<false, false><<<grid, BLOCK, 0, s>>>(src, lds, b, y, ldy,
                                                                           rows, cols);
        return cuda_check_launch(be, "linear_epilogue_kernel");
}

/* y += GELU(x·Wᵀ + b): the pre-activation needs its own scratch, a chunk of rows at a time. */
static int linear_gelu_accumulate(p3_backend *be, const p3_tensor *x, const p3_tensor *w,
                                  const float *b, p3_tensor *y) {
        int64_t m = x->rows, n = y->cols, ldx = p3_ld(x), ldy = p3_ld(y);
        int64_t rows = SCRATCH_ELEMS / n;
        rows = rows < 1 ? 1 : rows < m ? rows : m;
        float *t = NULL;
        size_t bytes = sizeof(float) * (size_t) rows * (size_t) n;
        int r = cuda_tmp_alloc(be, bytes, (void **) &t);
        if (r < 0)
                return r;
        for (int64_t r0 = 0; r >= 0 && r0 < m; r0 += rows) {
                int64_t nr = m - r0 < rows ? m - r0 : rows;
                r = cuda_gemm_w(be, nr, x->cols, (const float *) x->data + r0 * ldx, ldx, w, 0, t,
                                n, false);
                if (r >= 0)
                        r = linear_epilogue(be, t, n, b, (float *) y->data + r0 * ldy, ldy, nr,
                                            n, true, true);
        }
        cuda_tmp_free(be, t, bytes);
        return r;
}

int cuda_linear(p3_backend *be, const p3_tensor *x, const p3_tensor *w, const p3_tensor *b,
                p3_tensor *y, unsigned flags) {
        if (x->cols != w->cols || y->cols != w->rows || y->rows != x->rows)
                return -EINVAL;
        if (x->dtype != P3_F32 || y->dtype != P3_F32 ||
            (b && (b->dtype != P3_F32 || b->rows * b->cols < y->cols)))
                return -EINVAL;
        if (x->rows == 0 || y->cols == 0)
                return 0;
        const float *bias = b ? (const float *) b->data : NULL;
        bool gelu = flags & P3_GELU, acc = flags & P3_ACCUMULATE;
        if (gelu && acc)
                return linear_gelu_accumulate(be, x, w, bias, y);
        /* Straight into y (adding to it when accumulating), then bias and GELU in place. */
        int r = cuda_gemm_w(be, x->rows, x->cols, (const float *) x->data, p3_ld(x), w, 0,
                            (float *) y->data, p3_ld(y), acc);
        if (r >= 0 && (bias || gelu))
                r = linear_epilogue(be, (const float *) y->data, p3_ld(y), bias,
                                    (float *) y->data, p3_ld(y), y->rows, y->cols, gelu, false);
        return r;
}
