/* SPDX-License-Identifier: MIT */
/* The CUDA backend object: device memory counted against a cap, one stream, a cuBLAS handle,
 * weights in the precision's storage type, and the ops table (each op in its own file).
 *
 * Memory is stream-ordered (cudaMallocAsync on the backend's stream), so the many short-lived
 * scratch buffers of a job come from the driver's pool instead of cudaMalloc's synchronising
 * path. Destroying the backend frees every allocation and handle and resets the device, which
 * releases this process's primary context: the process then holds no GPU memory at all (the
 * service's idle offload depends on it). The weights come back from the host copy, which the
 * caller keeps; nothing here is pinned, so nothing outlives the context. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_attention_cudnn.h"
#include "cuda_backend.h"
#include "cuda_elementwise.cuh"
#include "cuda_probe.h"

static int record(p3_backend *be, int err, const char *what, const char *detail) {
        cuda_state *st = cuda_st(be);
        if (st && !st->last_error[0])
                snprintf(st->last_error, sizeof(st->last_error), "%s: %s", what, detail);
        return err;
}

int cuda_check(p3_backend *be, cudaError_t e, const char *what) {
        if (e == cudaSuccess)
                return 0;
        int err = e == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;
        /* The runtime keeps a failed call's error for the next cudaGetLastError: cleared here,
         * or the next job's first launch check would fail with it. A fault (sticky) stays. */
        (void) cudaGetLastError();
        return record(be, err, what, cudaGetErrorString(e));
}

int cublas_check(p3_backend *be, cublasStatus_t s, const char *what) {
        if (s == CUBLAS_STATUS_SUCCESS)
                return 0;
        const cublas_api *api = cuda_cublas(NULL, 0);
        int err = s == CUBLAS_STATUS_ALLOC_FAILED ? -ENOMEM : -EIO;
        return record(be, err, what, api ? api->status_string(s) : "cuBLAS error");
}

int cuda_check_launch(p3_backend *be, const char *kernel) {
        return cuda_check(be, cudaGetLastError(), kernel);
}

/* -- memory ---------------------------------------------------------------------------------- */

static int cu_alloc(p3_backend *be, size_t bytes, void **ret) {
        if (bytes > p3_backend_room(be))
                return -ENOMEM;
        void *p = NULL;
        cudaError_t e = cudaMallocAsync(&p, bytes, cuda_st(be)->stream);
        if (e == cudaErrorMemoryAllocation) {
                /* not sticky and not a fault: cleared and not recorded, so that the caller's
                 * smaller retry starts clean */
                (void) cudaGetLastError();
                return -ENOMEM;
        }
        int r = cuda_check(be, e, "cudaMallocAsync"); /* anything else: -EIO, recorded */
        if (r < 0)
                return r;
        p3_backend_took(be, bytes);
        *ret = p;
        return 0;
}

static void cu_free(p3_backend *be, void *ptr, size_t bytes) {
        if (!ptr)
                return;
        /* a failed free is recorded but must not be taken for the next launch's error */
        if (cuda_check(be, cudaFreeAsync(ptr, cuda_st(be)->stream), "cudaFreeAsync") < 0)
                (void) cudaGetLastError();
        p3_backend_gave(be, bytes);
}

size_t cuda_device_free(void) {
        size_t dev_free = 0, dev_total = 0;
        cudaMemPool_t pool;
        uint64_t reserved = 0, used = 0;
        if (cudaMemGetInfo(&dev_free, &dev_total) != cudaSuccess) {
                (void) cudaGetLastError();
                return SIZE_MAX;
        }
        if (cudaDeviceGetDefaultMemPool(&pool, 0) != cudaSuccess ||
            cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved) !=
                    cudaSuccess ||
            cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &used) != cudaSuccess) {
                (void) cudaGetLastError();
                return dev_free;
        }
        return dev_free + (reserved > used ? (size_t) (reserved - used) : 0);
}

int cuda_tmp_alloc(p3_backend *be, size_t bytes, void **ret) {
        return cu_alloc(be, bytes ? bytes : 1, ret);
}

void cuda_tmp_free(p3_backend *be, void *p, size_t bytes) {
        cu_free(be, p, bytes ? bytes : 1);
}

static int cu_sync(p3_backend *be) {
        return cuda_check(be, cudaStreamSynchronize(cuda_st(be)->stream), "cudaStreamSynchronize");
}

/* The contract lets the caller free its buffer at once. From pageable memory CUDA documents
 * cudaMemcpyAsync only as "might be synchronous" (today's x86 drivers stage the data before
 * returning; a GPU that reads host memory directly would not), so the upload waits for its
 * copy: a few uploads a job, one per weight at a load. */
static int cu_upload(p3_backend *be, void *dst, const void *src, size_t bytes) {
        int r = cuda_check(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice,
                                               cuda_st(be)->stream),
                           "cudaMemcpyAsync (upload)");
        return r < 0 ? r : cu_sync(be);
}

static int cu_download(p3_backend *be, void *dst, const void *src, size_t bytes) {
        int r = cuda_check(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost,
                                               cuda_st(be)->stream),
                           "cudaMemcpyAsync (download)");
        return r < 0 ? r : cu_sync(be);
}

static int cu_to_host_f32(p3_backend *be, const p3_tensor *x, float *host) {
        if (x->dtype != P3_F32)
                return -EINVAL;
        size_t row = sizeof(float) * (size_t) x->cols;
        int r = cuda_check(be, cudaMemcpy2DAsync(host, row, x->data, sizeof(float) * p3_ld(x), row,
                                                 (size_t) x->rows, cudaMemcpyDeviceToHost,
                                                 cuda_st(be)->stream),
                           "cudaMemcpy2DAsync (to host)");
        return r < 0 ? r : cu_sync(be);
}

/* -- weights ------------------------------------------------------------------------------------ */

/* Matrices in the precision's type, rounded on the device from an FP32 staging copy; vectors
 * (biases, norms, width-1 last layers) stay FP32, as on the CPU. */
static int cu_weight_upload(p3_backend *be, const float *host, int64_t rows, int64_t cols,
                            p3_tensor *ret) {
        p3_dtype t = rows > 1 ? be->weight_dtype : P3_F32;
        size_t n = (size_t) rows * (size_t) cols, n1 = n ? n : 1;
        void *dst = NULL;
        int r = cu_alloc(be, n1 * p3_dtype_size(t), &dst);
        if (r < 0)
                return r;
        if (t == P3_F32) {
                r = cu_upload(be, dst, host, n * sizeof(float));
        } else {
                void *stage = NULL;
                r = cu_alloc(be, n1 * sizeof(float), &stage);
                if (r >= 0)
                        r = cu_upload(be, stage, host, n * sizeof(float));
                if (r >= 0)
                        r = cuda_round_to(be, (const float *) stage, dst, t, (int64_t) n);
                cu_free(be, stage, n1 * sizeof(float));
        }
        if (r < 0) {
                cu_free(be, dst, n1 * p3_dtype_size(t));
                return r;
        }
        *ret = (p3_tensor) { .data = dst, .dtype = t, .rows = rows, .cols = cols };
        return 0;
}

static void cu_weight_free(p3_backend *be, p3_tensor *t) {
        size_t n = (size_t) t->rows * (size_t) t->cols;
        cu_free(be, t->data, (n ? n : 1) * p3_dtype_size(t->dtype));
        t->data = NULL;
}

/* -- device health ----------------------------------------------------------------------------- */

/* A sticky error (the context is lost) comes back from every call, a synchronisation too;
 * with the stream idle and healthy it returns at once. */
static int cu_device_error(p3_backend *be, char *why, size_t why_len) {
        cudaError_t e = cudaStreamSynchronize(cuda_st(be)->stream);
        if (e == cudaSuccess)
                return 0;
        const char *first = cuda_st(be)->last_error;
        snprintf(why, why_len, "%s%s%s%s", cudaGetErrorString(e), first[0] ? " (first: " : "",
                 first, first[0] ? ")" : "");
        return -EIO;
}

/* -- NaN/Inf check ------------------------------------------------------------------------------ */

__global__ static void finite_kernel(const float *x, int64_t rows, int64_t cols, int64_t ld,
                                     int *bad) {
        int64_t n = rows * cols;
        for (int64_t i = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; i < n;
             i += (int64_t) gridDim.x * blockDim.x)
                if (!isfinite(x[(i / cols) * ld + i % cols])) {
                        *bad = 1;
                        return;
                }
}

static int cu_check_finite(p3_backend *be, const p3_tensor *x) {
        if (x->dtype != P3_F32 || x->rows == 0 || x->cols == 0)
                return 0;
        int *flag = NULL, bad = 0;
        int r = cuda_tmp_alloc(be, sizeof(int), (void **) &flag);
        if (r < 0)
                return r;
        r = cuda_check(be, cudaMemsetAsync(flag, 0, sizeof(int), cuda_st(be)->stream), "cudaMemsetAsync");
        if (r >= 0) {
                int64_t n = x->rows * x->cols;
                finite_kernel<<<cuda_grid(n, 256) < 1024 ? cuda_grid(n, 256) : 1024, 256, 0,
                                cuda_st(be)->stream>>>((const float *) x->data, x->rows, x->cols,
                                                       p3_ld(x), flag);
                r = cuda_check_launch(be, "finite_kernel");
        }
        if (r >= 0)
                r = cu_download(be, &bad, flag, sizeof(int));
        cuda_tmp_free(be, flag, sizeof(int));
        return r < 0 ? r : bad ? -ERANGE : 0;
}

/* -- lifetime ----------------------------------------------------------------------------------- */

/* Backends alive in this process. The device is reset only when the last one goes: the
 * service loads a new model beside the old one on reload, and the old one's end must not
 * take the new one's context with it. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static int live;

/* The pool's unused memory back to the driver. */
static void pool_trim(void) {
        cudaMemPool_t pool;
        if (cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess)
                (void) cudaMemPoolTrimTo(pool, 0);
}

/* The last backend's end: every resource of this process on the device goes, and the
 * primary context with it. cudaDeviceReset does not free the stream-ordered pool's memory
 * (cuda_runtime_api.h), so the pool is trimmed first, and cuDNN's handle and plans, made in
 * this context, are destroyed before it. Called with live_lock held. */
static void release_device(void) {
        pool_trim();
        cuda_attention_cudnn_release();
        (void) cudaDeviceReset();
}

static void cu_destroy(p3_backend *be) {
        cuda_state *st = cuda_st(be);
        if (st) {
                if (st->stream)
                        (void) cudaStreamSynchronize(st->stream);
                /* Memory still allocated here survives even the device reset (pool memory
                 * in use is not trimmed): said, so that a non-zero reading after an offload
                 * has its cause in the log. */
                if (be->cur_bytes)
                        fprintf(stderr, "p3samd: the CUDA backend ends with %zu bytes of device "
                                "memory not freed\n", (size_t) be->cur_bytes);
                const cublas_api *api = cuda_cublas(NULL, 0);
                if (st->cublas && api)
                        (void) api->destroy(st->cublas);
                if (st->stream) {
                        (void) cudaStreamDestroy(st->stream);
                        pthread_mutex_lock(&live_lock);
                        if (--live == 0)
                                release_device();
                        else
                                pool_trim(); /* a reload's old model: its memory goes now,
                                              * not at the next offload */
                        pthread_mutex_unlock(&live_lock);
                }
                free(st);
        }
        free(be);
}

static const p3_backend_ops cuda_ops = {
        .name = "cuda",
        .destroy = cu_destroy,
        .alloc = cu_alloc,
        .free = cu_free,
        .upload = cu_upload,
        .download = cu_download,
        .sync = cu_sync,
        .weight_upload = cu_weight_upload,
        .weight_free = cu_weight_free,
        .linear = cuda_linear,
        .layernorm = cuda_layernorm,
        .gelu = cuda_gelu,
        .add = cuda_add,
        .subm_conv = cuda_subm_conv,
        .attention = cuda_attention,
        .gather_rows = cuda_gather_rows,
        .gather_add = cuda_gather_add,
        .segment_max = cuda_segment_max,
        .to_host_f32 = cu_to_host_f32,
        .heads = cuda_heads,
        .check_finite = cu_check_finite,
        .device_error = cu_device_error,
        .subm_neighbors = cuda_subm_neighbors,
        .window_slots = cuda_window_slots,
};

/* The precision asked for on this device: AUTO and FP16 store FP16; BF16 needs sm_80. */
static int resolve_precision(p3_precision asked, int sm, p3_precision *prec, p3_dtype *wt,
                             char *why, size_t why_len) {
        switch (asked) {
        case P3_PRECISION_FP32:
                *prec = P3_PRECISION_FP32, *wt = P3_F32;
                return 0;
        case P3_PRECISION_BF16:
                if (sm < 80) {
                        snprintf(why, why_len, "bf16 needs a GPU of compute capability 8.0 or "
                                               "newer; this one is %d.%d", sm / 10, sm % 10);
                        return -EOPNOTSUPP;
                }
                *prec = P3_PRECISION_BF16, *wt = P3_BF16;
                return 0;
        default:
                *prec = P3_PRECISION_FP16, *wt = P3_F16;
                return 0;
        }
}

/* The pool keeps freed memory up to the cap (all of it without one) instead of handing it
 * back to the driver at every synchronisation, which the default threshold of 0 does: a job's
 * thousands of scratch buffers then come from memory already mapped. The cap bounds what the
 * process holds between jobs; the idle offload gives it all back. */
static cudaError_t pool_keep(size_t limit_bytes) {
        cudaMemPool_t pool;
        cudaError_t e = cudaDeviceGetDefaultMemPool(&pool, 0);
        uint64_t keep = limit_bytes ? (uint64_t) limit_bytes : UINT64_MAX;
        if (e == cudaSuccess)
                e = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
        return e;
}

static int device_open(p3_backend *be, cuda_state *st, char *why, size_t why_len) {
        int r = p3_cuda_probe(why, why_len, NULL, 0); /* "no CUDA device (…)" */
        if (r < 0)
                return r;
        cudaDeviceProp p;
        cudaError_t e = cudaGetDeviceProperties(&p, 0);
        pthread_mutex_lock(&live_lock);
        /* Waiting for the GPU blocks the thread instead of spinning a CPU core, which other
         * work on the machine wants more than a job wants the microseconds. Only a context
         * not yet made takes flags, so only the first backend sets them (again after each
         * reset). */
        if (e == cudaSuccess && live == 0)
                e = cudaSetDeviceFlags(cudaDeviceScheduleBlockingSync);
        if (e == cudaErrorSetOnActiveProcess) {
                /* made by someone else in this process: keep its flags, and its error out of
                 * the next launch check */
                (void) cudaGetLastError();
                e = cudaSuccess;
        }
        if (e == cudaSuccess)
                e = cudaSetDevice(0);
        if (e == cudaSuccess)
                e = cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking);
        if (e == cudaSuccess)
                e = pool_keep(be->limit_bytes);
        if (e == cudaSuccess) {
                live++;
        } else {
                if (st->stream)
                        (void) cudaStreamDestroy(st->stream);
                st->stream = NULL; /* so that cu_destroy does not count this one out */
                if (live == 0)
                        release_device(); /* cudaSetDevice made the context: hand it back */
        }
        pthread_mutex_unlock(&live_lock);
        if (e != cudaSuccess) {
                snprintf(why, why_len, "the CUDA runtime failed: %s", cudaGetErrorString(e));
                return -EIO;
        }
        st->sm = p.major * 10 + p.minor;
        snprintf(be->device, sizeof(be->device), "CUDA (%s, sm_%d)", p.name, st->sm);
        return 0;
}

static int cublas_open(cuda_state *st, p3_dtype wt, char *why, size_t why_len) {
        const cublas_api *api = cuda_cublas(why, why_len);
        if (!api)
                return -ENOENT;
        cublasStatus_t s = api->create(&st->cublas);
        if (s == CUBLAS_STATUS_SUCCESS)
                s = api->set_stream(st->cublas, st->stream);
        /* FP32 is the comparison mode: pedantic math keeps TF32 and other reduced-precision
         * shortcuts out; FP16/BF16 use the tensor cores either way. */
        if (s == CUBLAS_STATUS_SUCCESS)
                s = api->set_math_mode(st->cublas, wt == P3_F32 ? CUBLAS_PEDANTIC_MATH
                                                                : CUBLAS_DEFAULT_MATH);
        if (s != CUBLAS_STATUS_SUCCESS) {
                snprintf(why, why_len, "cuBLAS failed to start: %s", api->status_string(s));
                return -EIO;
        }
        return 0;
}

int p3_backend_cuda_new(const p3_backend_options *opt, char *why, size_t why_len,
                                   p3_backend **ret) {
        p3_backend *be = (p3_backend *) calloc(1, sizeof(*be));
        cuda_state *st = (cuda_state *) calloc(1, sizeof(*st));
        if (!be || !st) {
                free(be), free(st);
                return -ENOMEM;
        }
        be->ops = &cuda_ops;
        be->priv = st;
        be->act_dtype = P3_F32;
        be->weights_copied = true;
        be->threads = 1;
        be->limit_bytes = opt ? opt->limit_bytes : 0;
        int r = device_open(be, st, why, why_len);
        if (r >= 0)
                r = resolve_precision(opt ? opt->precision : P3_PRECISION_AUTO, st->sm,
                                      &be->precision, &be->weight_dtype, why, why_len);
        if (r >= 0)
                r = cublas_open(st, be->weight_dtype, why, why_len);
        if (r < 0) {
                cu_destroy(be);
                return r;
        }
        size_t len = strlen(be->device);
        snprintf(be->device + len - 1, sizeof(be->device) - len + 1, ", %s)",
                 be->precision == P3_PRECISION_FP32   ? "FP32"
                 : be->precision == P3_PRECISION_BF16 ? "BF16"
                                                      : "FP16");
        *ret = be;
        return 0;
}
