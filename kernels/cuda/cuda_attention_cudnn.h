/* SPDX-License-Identifier: MIT */
/* The second attention path: cuDNN's fused SDPA (scaled dot-product attention) through the
 * backend graph API, beside the project's own fused kernel (cuda_attention.cu), which stays the
 * default. cuDNN is loaded with dlopen: binaries start, and the own kernel runs, without it.
 *
 * cuDNN's engines take dense [batch, heads, seq, 16] q, k and v, so the windows are first
 * gathered through slot_point into dense buffers (one window = one batch entry) and the output
 * scattered back; the index arithmetic of both copies is here, as __host__ __device__
 * functions a host-compiled test (tests/cuda/test-cuda-cudnn-sdpa.cu) checks against the CPU
 * attention's slot semantics. */
#pragma once

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define CU_SDPA_HD 16 /* head dimension (the model's, fixed) */

/* Element of the dense [windows, heads, window, 16] buffer holding slot `slot`'s value d for
 * head h. */
__host__ __device__ static inline int64_t cu_sdpa_dense_at(int64_t slot, int64_t window,
                                                           int heads, int h, int d) {
        int64_t w = slot / window, i = slot % window;
        return ((w * heads + h) * window + i) * CU_SDPA_HD + d;
}

/* The inverse: dense element e → its slot, head and d (the gather's grid-stride loop runs over
 * dense elements, so neighbouring threads write neighbouring halves). */
__host__ __device__ static inline void cu_sdpa_split(int64_t e, int64_t window, int heads,
                                                     int64_t *slot, int *h, int *d) {
        *d = (int) (e % CU_SDPA_HD);
        int64_t row = e / CU_SDPA_HD; /* (w · heads + h) · window + i */
        int64_t i = row % window, wh = row / window;
        *h = (int) (wh % heads);
        *slot = (wh / heads) * window + i;
}

/* Offset (floats) in qkv of point p's q (which 0), k (1) or v (2), head h, value d; c = heads ·
 * 16 channels, ldq the row stride. */
__host__ __device__ static inline int64_t cu_sdpa_qkv_at(int64_t p, int64_t ldq, int64_t c,
                                                         int which, int h, int d) {
        return p * ldq + which * c + (int64_t) h * CU_SDPA_HD + d;
}

/* A slot's point, or -1 when slot_point holds something outside [0, n) (read as zeros, never
 * written: the own kernel's rule). */
__host__ __device__ static inline int64_t cu_sdpa_slot_row(const int32_t *slot_point, int64_t n,
                                                           int64_t slot) {
        int64_t p = slot_point[slot];
        return p >= 0 && p < n ? p : -1;
}

#ifdef __cplusplus
extern "C" {
#endif

/* The attention op (kernels/backend.h) through cuDNN SDPA, called by cuda_attention once it has
 * checked the shapes and found work to do (n > 0, heads > 0): 0, -ENOTSUP when cuDNN is
 * missing, refuses the shape or the precision (FP32 runs need the own kernel: cuDNN's SDPA
 * engines take FP16/BF16 q, k, v), or fails, so that the caller keeps its own kernel; -ENOMEM
 * when the gathered copies do not fit. */
int cuda_attention_cudnn(p3_backend *be, const p3_tensor *qkv, const int32_t *slot_point,
                         int64_t n_pad, int64_t window, int heads, p3_tensor *out);

/* Whether cuDNN finalizes an SDPA forward plan (head dim 16, the given window, FP16) for a GPU
 * of compute capability sm (75, 80, 86, 89, 90, ... as major·10 + minor), without a GPU: the
 * plan is built against a device-properties description of a typical GPU of that
 * architecture (cuDNN >= 9.8). 0; -ENOTSUP with cuDNN's reason in why; -ENODEV when cuDNN
 * cannot be loaded, predates deviceless plans, or has no description for that sm. */
int cuda_attention_cudnn_supported(int sm, int window, char *why, size_t why_len);

/* Destroys the process's cuDNN handle and cached plans (made in the primary context): the
 * backend calls it before it resets the device, so that no later load uses them. */
void cuda_attention_cudnn_release(void);

/* Loads cuDNN (once): 0 and its version (cudnnGetVersion, e.g. 91900), or -ENODEV with the
 * reason in why. */
int cuda_cudnn_load(size_t *version, char *why, size_t why_len);

#ifdef __cplusplus
}
#endif
