/* SPDX-License-Identifier: MIT */
/* The CUDA backend's private interface, shared by the .cu files of kernels/cuda (compiled by
 * nvcc as C++).
 * One op per file, named after its CPU twin in kernels/cpu (cuda_norm.cu ↔ cpu_norm.c, ...).
 *
 * Storage: activations FP32 on the device (be->act_dtype = P3_F32); weight matrices (rows > 1)
 * in the precision's type (FP16 by default, BF16 on sm_80+, FP32 for comparisons with TF32
 * off); vectors (biases, norms, width-1 last layers) FP32. Matrix products take FP16/BF16
 * inputs with FP32 accumulation (cuBLAS); LayerNorm statistics, softmax, GELU inputs and
 * maxima are FP32.
 *
 * Every op runs on the backend's one stream and returns 0 or a negative errno: -ENOMEM when the
 * arena cap (be->limit_bytes) or the device is exhausted, -EIO for any other CUDA/cuBLAS
 * error (the failing call is recorded in cuda_state.last_error for the log and self-test).
 * Nothing here synchronises the stream except download/sync/to_host_f32. */
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* cuBLAS, loaded with dlopen when the backend starts (libcublas.so.13): binaries built with
 * nvcc must still start on machines without the CUDA libraries, and fall back to the CPU.
 * Call through cuda_cublas(), never the cublas* symbols directly. cuda_cublas_dl.c. */
typedef struct cublas_api {
        cublasStatus_t (*create)(cublasHandle_t *handle);
        cublasStatus_t (*destroy)(cublasHandle_t handle);
        cublasStatus_t (*set_stream)(cublasHandle_t handle, cudaStream_t stream);
        cublasStatus_t (*set_math_mode)(cublasHandle_t handle, cublasMath_t mode);
        cublasStatus_t (*gemm_ex)(cublasHandle_t handle, cublasOperation_t transa,
                                  cublasOperation_t transb, int m, int n, int k,
                                  const void *alpha, const void *A, cudaDataType Atype, int lda,
                                  const void *B, cudaDataType Btype, int ldb, const void *beta,
                                  void *C, cudaDataType Ctype, int ldc,
                                  cublasComputeType_t computeType, cublasGemmAlgo_t algo);
        const char *(*status_string)(cublasStatus_t status);
} cublas_api;

/* The loaded API, or NULL with a sentence in why ("cannot load libcublas.so.13: …"). */
const cublas_api *cuda_cublas(char *why, size_t why_len);

typedef struct cuda_state {
        int device;
        int sm;                 /* compute capability × 10 (e.g. 90) */
        cudaStream_t stream;
        cublasHandle_t cublas;
        char last_error[160];   /* "cublasGemmEx: CUBLAS_STATUS_…" — the first failure seen */
} cuda_state;

static inline cuda_state *cuda_st(p3_backend *be) {
        return (cuda_state *) be->priv;
}

/* A CUDA runtime result as an errno (0, -ENOMEM, -EIO); records what failed. */
int cuda_check(p3_backend *be, cudaError_t e, const char *what);
/* The same for cuBLAS. */
int cublas_check(p3_backend *be, cublasStatus_t s, const char *what);
/* After a kernel launch: the launch error, if any (cudaGetLastError). */
int cuda_check_launch(p3_backend *be, const char *kernel);

/* Bytes the device can still give this process: what the driver has free plus what the
 * stream-ordered pool holds unused (the driver counts that as taken; the pool keeps freed
 * memory up to the cap). SIZE_MAX when the runtime cannot tell. */
size_t cuda_device_free(void);

/* Scratch device memory, stream-ordered, counted against the arena like any tensor. Free with
 * the same byte count. */
int cuda_tmp_alloc(p3_backend *be, size_t bytes, void **ret);
void cuda_tmp_free(p3_backend *be, void *p, size_t bytes);

/* C[m, w.rows] (FP32, row stride ldc) = A[m,k] (FP32 activations, row stride lda) ·
 * W[:, col:col+k]ᵀ (+ the old C when accumulate), in the weight's storage type: FP16/BF16
 * weights with A rounded to the same type first and FP32 accumulation; FP32 weights with
 * TF32 off. The twin of cpu_gemm_w (kernels/cpu/cpu_gemm.c). cuda_gemm.cu. */
int cuda_gemm_w(p3_backend *be, int64_t m, int64_t k, const float *a, int64_t lda,
                const p3_tensor *w, int64_t col, float *c, int64_t ldc, bool accumulate);

/* The ops, each the twin of the CPU op of the same name (see backend.h for the contracts). */
int cuda_linear(p3_backend *be, const p3_tensor *x, const p3_tensor *w, const p3_tensor *b,
                p3_tensor *y, unsigned flags);                                 /* cuda_gemm.cu */
int cuda_layernorm(p3_backend *be, const p3_tensor *x, const p3_tensor *g, const p3_tensor *b,
                   p3_tensor *y, unsigned flags);                              /* cuda_norm.cu */
int cuda_gelu(p3_backend *be, p3_tensor *x);                                   /* cuda_norm.cu */
int cuda_add(p3_backend *be, const p3_tensor *x, p3_tensor *y);                /* cuda_norm.cu */
int cuda_subm_conv(p3_backend *be, const p3_tensor *x, const int32_t *nbr, const p3_tensor *w,
                   const p3_tensor *b, p3_tensor *y);                    /* cuda_subm_conv.cu */
int cuda_attention(p3_backend *be, const p3_tensor *qkv, const int32_t *slot_point,
                   int64_t n_pad, int64_t window, int heads, p3_tensor *out); /* cuda_attention.cu */
int cuda_gather_rows(p3_backend *be, const p3_tensor *x, const int32_t *idx, p3_tensor *y,
                     int64_t col0);                                          /* cuda_gather.cu */
int cuda_gather_add(p3_backend *be, const p3_tensor *x, const int32_t *idx, p3_tensor *y);
int cuda_segment_max(p3_backend *be, const p3_tensor *x, const int32_t *cluster, p3_tensor *y);
int cuda_heads(p3_backend *be, const p3_heads_params *hp, const p3_heads_input *in,
               p3_heads_output *out);                                         /* cuda_heads.cu */
/* The level-structure ops, twins of daemon/engine/serialize.c rather than of a CPU op: the
 * CPU backend leaves them to the engine's host code. */
int cuda_subm_neighbors(p3_backend *be, const int32_t *grid, int64_t n,
                        int32_t *nbr);                                /* cuda_neighbour_map.cu */
int cuda_window_slots(p3_backend *be, const int32_t *grid, int64_t n, int curve, int depth,
                      int64_t window, int64_t n_pad, int32_t *slot);     /* cuda_serialize.cu */

/* FP32 → the weight type, n values on the device (FP16/BF16 round to nearest even, as
 * __float2half_rn / __float2bfloat16_rn). cuda_gemm.cu. */
int cuda_round_to(p3_backend *be, const float *src, void *dst, p3_dtype t, int64_t n);

#ifdef __cplusplus
}
#endif

/* Grid size for n elements at `block` threads each, capped so the grid-stride loops cover
 * the rest. */
static inline unsigned cuda_grid(int64_t n, unsigned block) {
        int64_t g = (n + block - 1) / block;
        return (unsigned) (g < 1 ? 1 : g > 65535 * 32 ? 65535 * 32 : g);
}
