/* SPDX-License-Identifier: MIT */
/* Windowed attention through cuDNN's fused SDPA forward (backend graph API), the alternative to
 * the own fused kernel (cuda_attention.cu), tried only when P3_CUDA_ATTENTION=cudnn: which of
 * the two is faster at head dim 16 is to be measured on GPUs.
 *
 *   1. gather: q, k, v of every slot → dense [windows, heads, window, 16] FP16 (BF16 at BF16
 *      precision) buffers; a slot whose slot_point is out of range reads as zeros.
 *   2. SDPA forward, one window per batch entry: O = softmax(0.25 · Q·Kᵀ)·V, no mask, no
 *      dropout, FP32 softmax and accumulation inside cuDNN, O in the input type.
 *   3. scatter: each point's first slot (slot < n) → out (FP32).
 * q, k, v are rounded to FP16/BF16 on the way in, so this path is for the reduced precisions
 * only (FP32 runs keep the own kernel, whose self-test tolerance is 1e-4).
 *
 * cuDNN is loaded with dlopen (libcudnn_graph.so.9 holds the whole C backend API), as cuBLAS is
 * (cuda_cublas_dl.cu); nothing here links against it. Plans are cached per (device, window,
 * heads, windows, type): building one costs milliseconds to seconds (engines may compile at
 * run time), so a varying window count per cloud is the open question for the GPU. Any cuDNN
 * refusal or failure is -ENOTSUP: the caller keeps the own kernel. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cudnn_graph.h> /* types and enums only: every call goes through the table below */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_attention_cudnn.h"
#include "cuda_backend.h"

/* ---- the library, through dlopen ---------------------------------------------------------- */

typedef struct cudnn_api {
        size_t (*get_version)(void);
        const char *(*error_string)(cudnnStatus_t status);
        void (*last_error)(char *message, size_t max_size);
        cudnnStatus_t (*create)(cudnnHandle_t *handle);
        cudnnStatus_t (*destroy)(cudnnHandle_t handle);
        cudnnStatus_t (*set_stream)(cudnnHandle_t handle, cudaStream_t stream);
        cudnnStatus_t (*create_desc)(cudnnBackendDescriptorType_t type,
                                     cudnnBackendDescriptor_t *desc);
        cudnnStatus_t (*destroy_desc)(cudnnBackendDescriptor_t desc);
        cudnnStatus_t (*set_attr)(cudnnBackendDescriptor_t desc, cudnnBackendAttributeName_t name,
                                  cudnnBackendAttributeType_t type, int64_t count,
                                  const void *values);
        cudnnStatus_t (*get_attr)(cudnnBackendDescriptor_t const desc,
                                  cudnnBackendAttributeName_t name,
                                  cudnnBackendAttributeType_t type, int64_t requested,
                                  int64_t *count, void *values);
        cudnnStatus_t (*finalize)(cudnnBackendDescriptor_t desc);
        cudnnStatus_t (*execute)(cudnnHandle_t handle, cudnnBackendDescriptor_t plan,
                                 cudnnBackendDescriptor_t variant_pack);
} cudnn_api;

static cudnn_api api;
static bool api_ok;
static char api_why[200];
static pthread_once_t api_once = PTHREAD_ONCE_INIT;

#define CUDNN_LIB "libcudnn_graph.so.9"

static void *open_cudnn(void) {
        static const char *const names[] = { CUDNN_LIB, "/usr/local/cuda/lib64/" CUDNN_LIB };
        void *h = NULL;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !h; i++)
                h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        return h;
}

template <typename F> static bool sym(void *h, const char *name, F *ret) {
        *ret = (F) dlsym(h, name);
        if (!*ret)
                snprintf(api_why, sizeof(api_why), CUDNN_LIB " lacks %s", name);
        return *ret != NULL;
}

static void load(void) {
        void *h = open_cudnn();
        if (!h) {
                const char *e = dlerror();
                snprintf(api_why, sizeof(api_why), "cannot load " CUDNN_LIB ": %s",
                         e ? e : "not found");
                return;
        }
        api_ok = sym(h, "cudnnGetVersion", &api.get_version) &&
                 sym(h, "cudnnGetErrorString", &api.error_string) &&
                 sym(h, "cudnnCreate", &api.create) && sym(h, "cudnnDestroy", &api.destroy) &&
                 sym(h, "cudnnSetStream", &api.set_stream) &&
                 sym(h, "cudnnBackendCreateDescriptor", &api.create_desc) &&
                 sym(h, "cudnnBackendDestroyDescriptor", &api.destroy_desc) &&
                 sym(h, "cudnnBackendSetAttribute", &api.set_attr) &&
                 sym(h, "cudnnBackendGetAttribute", &api.get_attr) &&
                 sym(h, "cudnnBackendFinalize", &api.finalize) &&
                 sym(h, "cudnnBackendExecute", &api.execute);
        /* Optional (9.0+): the reason behind the last failure, for the log. */
        api.last_error = (void (*)(char *, size_t)) dlsym(h, "cudnnGetLastErrorString");
        /* The SDPA operation and device-properties descriptors are 9.13 / 9.8 features, and
         * cudnn-frontend builds this one operation only from 9.13.1 (its unified SDPA node):
         * 9.13.0 is not what NVIDIA runs it on. An older library is treated as absent rather
         * than failing descriptor by descriptor; our own attention kernel serves instead. */
        if (api_ok && api.get_version() < 91301) {
                snprintf(api_why, sizeof(api_why),
                         CUDNN_LIB " is %zu; its SDPA operation needs 9.13.1 or later",
                         api.get_version());
                api_ok = false;
        }
}

int cuda_cudnn_load(size_t *version, char *why, size_t why_len) {
        pthread_once(&api_once, load);
        if (!api_ok) {
                if (why)
                        snprintf(why, why_len, "%s", api_why);
                return -ENODEV;
        }
        if (version)
                *version = api.get_version();
        return 0;
}

/* ---- graph building -------------------------------------------------------------------------- */

#define UID_Q 1
#define UID_K 2
#define UID_V 3
#define UID_O 4
#define UID_SCALE 5
#define MAX_DESCS 16

/* Everything one plan needs kept alive, destroyed together (the backend API does not say a
 * plan outlives the descriptors it was made from). */
typedef struct sdpa_graph {
        cudnnBackendDescriptor_t descs[MAX_DESCS];
        int count;
        cudnnBackendDescriptor_t plan; /* one of descs, or NULL */
        int64_t workspace;
        char why[200];
} sdpa_graph;

static void graph_free(sdpa_graph *g) {
        for (int i = g->count - 1; i >= 0; i--)
                api.destroy_desc(g->descs[i]);
        g->count = 0;
        g->plan = NULL;
}

/* Records the first failure with cuDNN's own words; always -ENOTSUP. */
static int fail(sdpa_graph *g, cudnnStatus_t s, const char *what) {
        if (g->why[0])
                return -ENOTSUP;
        char detail[160] = "";
        if (api.last_error)
                api.last_error(detail, sizeof(detail));
        snprintf(g->why, sizeof(g->why), "%s: %s%s%s", what, api.error_string(s),
                 detail[0] ? ": " : "", detail);
        return -ENOTSUP;
}

static int new_desc(sdpa_graph *g, cudnnBackendDescriptorType_t type,
                    cudnnBackendDescriptor_t *ret) {
        if (g->count == MAX_DESCS)
                return fail(g, CUDNN_STATUS_INTERNAL_ERROR, "too many descriptors");
        cudnnStatus_t s = api.create_desc(type, ret);
        if (s != CUDNN_STATUS_SUCCESS)
                return fail(g, s, "cudnnBackendCreateDescriptor");
        g->descs[g->count++] = *ret;
        return 0;
}

static int set(sdpa_graph *g, cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name,
               cudnnBackendAttributeType_t type, int64_t count, const void *v, const char *what) {
        cudnnStatus_t s = api.set_attr(d, name, type, count, v);
        return s == CUDNN_STATUS_SUCCESS ? 0 : fail(g, s, what);
}

static int fin(sdpa_graph *g, cudnnBackendDescriptor_t d, const char *what) {
        cudnnStatus_t s = api.finalize(d);
        return s == CUDNN_STATUS_SUCCESS ? 0 : fail(g, s, what);
}

/* A [b, h, s, d] tensor, dense (d fastest), or the by-value FP32 scale ([1,1,1,1]). */
static int tensor(sdpa_graph *g, int64_t uid, cudnnDataType_t t, const int64_t dims[4],
                  bool by_value, cudnnBackendDescriptor_t *ret) {
        int64_t strides[4] = { dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1 };
        int64_t align = by_value ? 4 : 16;
        int r = new_desc(g, CUDNN_BACKEND_TENSOR_DESCRIPTOR, ret);
        if (!r)
                r = set(g, *ret, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &t,
                        "tensor type");
        if (!r)
                r = set(g, *ret, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims,
                        "tensor dims");
        if (!r)
                r = set(g, *ret, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides,
                        "tensor strides");
        if (!r)
                r = set(g, *ret, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid,
                        "tensor uid");
        if (!r)
                r = set(g, *ret, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align,
                        "tensor alignment");
        if (!r && by_value)
                r = set(g, *ret, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value,
                        "tensor by value");
        return r ? r : fin(g, *ret, "tensor finalize");
}

/* The operation graph: one SDPA forward node over Q, K, V [b, h, s, 16] → O, scale by value. */
static int sdpa_op_graph(sdpa_graph *g, int64_t b, int64_t h, int64_t s, cudnnDataType_t t,
                         cudnnBackendDescriptor_t *ret) {
        int64_t dims[4] = { b, h, s, CU_SDPA_HD }, one[4] = { 1, 1, 1, 1 };
        cudnnBackendDescriptor_t q, k, v, o, scale, op;
        int r = tensor(g, UID_Q, t, dims, false, &q);
        if (!r)
                r = tensor(g, UID_K, t, dims, false, &k);
        if (!r)
                r = tensor(g, UID_V, t, dims, false, &v);
        if (!r)
                r = tensor(g, UID_O, t, dims, false, &o);
        if (!r)
                r = tensor(g, UID_SCALE, CUDNN_DATA_FLOAT, one, true, &scale);
        if (!r)
                r = new_desc(g, CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR, &op);
        cudnnBackendAttributeType_t bd = CUDNN_TYPE_BACKEND_DESCRIPTOR;
        if (!r)
                r = set(g, op, CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, bd, 1, &q, "sdpa q");
        if (!r)
                r = set(g, op, CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, bd, 1, &k, "sdpa k");
        if (!r)
                r = set(g, op, CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, bd, 1, &v, "sdpa v");
        if (!r)
                r = set(g, op, CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, bd, 1, &o, "sdpa o");
        if (!r)
                r = set(g, op, CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, bd, 1, &scale,
                        "sdpa scale");
        if (!r)
                r = fin(g, op, "sdpa finalize");
        if (!r)
                r = new_desc(g, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, ret);
        if (!r)
                r = set(g, *ret, CUDNN_ATTR_OPERATIONGRAPH_OPS, bd, 1, &op, "graph ops");
        return r ? r : fin(g, *ret, "operation graph finalize");
}

/* The first engine configuration the heuristics offer whose plan finalizes for `dev`. The
 * configurations not taken are destroyed here; the one taken joins g. */
static int pick_plan(sdpa_graph *g, cudnnBackendDescriptor_t graph,
                     cudnnBackendDescriptor_t dev) {
        cudnnBackendAttributeType_t bd = CUDNN_TYPE_BACKEND_DESCRIPTOR;
        cudnnBackendHeurMode_t modes[2] = { CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK };
        for (int m = 0; m < 2; m++) {
                cudnnBackendDescriptor_t heur;
                int r = new_desc(g, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur);
                if (!r)
                        r = set(g, heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, bd, 1, &graph,
                                "heuristics graph");
                if (!r)
                        r = set(g, heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1,
                                &modes[m], "heuristics mode");
                if (!r)
                        r = set(g, heur, CUDNN_ATTR_ENGINEHEUR_DEVICEPROP, bd, 1, &dev,
                                "heuristics device");
                if (!r)
                        r = fin(g, heur, "heuristics finalize");
                int64_t n = 0;
                if (!r) {
                        cudnnStatus_t s = api.get_attr(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, bd,
                                                       0, &n, NULL);
                        if (s != CUDNN_STATUS_SUCCESS)
                                r = fail(g, s, "heuristics result count");
                }
                if (r)
                        return r;
                if (n <= 0)
                        continue;
                cudnnBackendDescriptor_t *cfg = (cudnnBackendDescriptor_t *) calloc(
                        (size_t) n, sizeof(*cfg));
                if (!cfg)
                        return -ENOMEM;
                int64_t made = 0, got = 0;
                cudnnStatus_t s = CUDNN_STATUS_SUCCESS;
                for (; made < n && s == CUDNN_STATUS_SUCCESS; made++)
                        s = api.create_desc(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfg[made]);
                if (s != CUDNN_STATUS_SUCCESS)
                        made--; /* the failed one was not made */
                else
                        s = api.get_attr(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, bd, n, &got, cfg);
                if (s != CUDNN_STATUS_SUCCESS)
                        r = fail(g, s, "heuristics results");
                int64_t taken = -1;
                for (int64_t i = 0; !r && i < got && i < made && taken < 0; i++) {
                        cudnnBackendDescriptor_t plan;
                        if (new_desc(g, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan))
                                break;
                        bool ok = api.set_attr(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, bd,
                                               1, &cfg[i]) == CUDNN_STATUS_SUCCESS &&
                                  api.set_attr(plan, CUDNN_ATTR_EXECUTION_PLAN_DEVICEPROP, bd, 1,
                                               &dev) == CUDNN_STATUS_SUCCESS;
                        s = ok ? api.finalize(plan) : CUDNN_STATUS_BAD_PARAM;
                        if (s == CUDNN_STATUS_SUCCESS && g->count < MAX_DESCS) {
                                taken = i;
                                g->plan = plan;
                                g->descs[g->count++] = cfg[i];
                        } else {
                                fail(g, s, "execution plan finalize");
                                api.destroy_desc(plan);
                                g->count--; /* plan was the last one added */
                        }
                }
                for (int64_t i = 0; i < made; i++)
                        if (i != taken)
                                api.destroy_desc(cfg[i]);
                free(cfg);
                if (g->plan) {
                        g->why[0] = '\0'; /* earlier engines' refusals are not the answer */
                        s = api.get_attr(g->plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                         CUDNN_TYPE_INT64, 1, &got, &g->workspace);
                        return s == CUDNN_STATUS_SUCCESS ? 0 : fail(g, s, "workspace size");
                }
                if (r)
                        return r;
        }
        if (!g->why[0])
                snprintf(g->why, sizeof(g->why), "no cuDNN engine for SDPA at head dim %d",
                         CU_SDPA_HD);
        return -ENOTSUP;
}

/* A plan for [b, h, s, 16] on the device described by dev (finalized DEVICEPROP). On failure
 * g holds nothing and g->why says why. */
static int build_plan(sdpa_graph *g, cudnnBackendDescriptor_t dev, int64_t b, int64_t h,
                      int64_t s, cudnnDataType_t t) {
        cudnnBackendDescriptor_t graph;
        int r = sdpa_op_graph(g, b, h, s, t, &graph);
        if (!r)
                r = pick_plan(g, graph, dev);
        if (r)
                graph_free(g);
        return r;
}

/* ---- the deviceless support query --------------------------------------------------------- */

/* A typical GPU of each architecture, in the fields cuDNN's DEVICEPROP JSON reader asks for
 * (found by finalizing incomplete descriptions: cuDNN 9.19 names the missing member). Plans
 * depend mostly on the architecture (deviceVer) and shared memory; SM count and clocks only
 * steer the heuristics' ranking. */
typedef struct sm_desc {
        int sm;
        const char *name;
        int sms, threads_per_sm, ctas_per_sm, smem_optin, smem_reserved;
        long long l2, mem;
} sm_desc;

static const sm_desc sm_descs[] = {
        { 75, "Tesla T4", 40, 1024, 16, 65536, 0, 4194304LL, 15835660288LL },
        { 80, "A100-SXM4-40GB", 108, 2048, 32, 166912, 1024, 41943040LL, 42505273344LL },
        { 86, "A10", 72, 1536, 16, 101376, 1024, 6291456LL, 23827185664LL },
        { 89, "L4", 58, 1536, 24, 101376, 1024, 50331648LL, 23580639232LL },
        { 90, "H100 80GB HBM3", 132, 2048, 32, 232448, 1024, 52428800LL, 85045379072LL },
};

static int device_json(int sm, char *buf, size_t len) {
        const sm_desc *d = NULL;
        for (size_t i = 0; i < sizeof(sm_descs) / sizeof(sm_descs[0]); i++)
                if (sm_descs[i].sm == sm)
                        d = &sm_descs[i];
        if (!d)
                return -ENODEV;
        int n = snprintf(buf, len,
                         "{\"maxGridSize\":[2147483647,65535,65535],"
                         "\"maxBlockSize\":[1024,1024,64],"
                         "\"regsPerBlock\":65536,\"multiProcessorCount\":%d,\"warpSize\":32,"
                         "\"maxSharedMemoryPerBlock\":49152,\"maxSharedMemoryPerBlockOptin\":%d,"
                         "\"reservedSharedMemoryPerBlock\":%d,\"maxRegistersPerSM\":65536,"
                         "\"maxCtasPerSM\":%d,\"maxThreadsPerBlock\":1024,\"maxThreadsPerSM\":%d,"
                         "\"pciDeviceId\":0,\"isTccDriver\":0,\"supportCoopLaunch\":1,"
                         "\"totalGlobalMem\":%lld,\"smClockRateKHz\":1500000,"
                         "\"memClockRateKHz\":1500000,\"l2CacheSize\":%lld,\"cudaDeviceId\":0,"
                         "\"deviceVer\":%d,\"driverVer\":13000,\"deviceName\":\"%s\"}",
                         d->sms, d->smem_optin, d->smem_reserved, d->ctas_per_sm,
                         d->threads_per_sm, d->mem, d->l2, sm * 10, d->name);
        return n > 0 && (size_t) n < len ? 0 : -ENODEV;
}

int cuda_attention_cudnn_supported(int sm, int window, char *why, size_t why_len) {
        char json[1024], local[200];
        if (!why) {
                why = local;
                why_len = sizeof(local);
        }
        why[0] = '\0';
        if (cuda_cudnn_load(NULL, why, why_len))
                return -ENODEV;
        if (window <= 0)
                return -EINVAL;
        if (device_json(sm, json, sizeof(json))) {
                snprintf(why, why_len, "no device description for sm_%d", sm);
                return -ENODEV;
        }
        sdpa_graph g;
        memset(&g, 0, sizeof(g));
        cudnnBackendDescriptor_t dev;
        int r = new_desc(&g, CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR, &dev);
        if (!r)
                r = set(&g, dev, CUDNN_ATTR_DEVICEPROP_JSON_REPRESENTATION, CUDNN_TYPE_CHAR,
                        (int64_t) strlen(json), json, "device properties");
        if (!r)
                r = fin(&g, dev, "device properties finalize");
        if (r) {
                /* cuDNN cannot describe a device without one: the question needs a GPU. */
                snprintf(why, why_len, "%s", g.why);
                graph_free(&g);
                return -ENODEV;
        }
        /* One window of FP16, one head: a plan's support does not depend on the batch. */
        sdpa_graph p;
        memset(&p, 0, sizeof(p));
        r = build_plan(&p, dev, 1, 1, window, CUDNN_DATA_HALF);
        if (r)
                snprintf(why, why_len, "%s", p.why);
        /* cuDNN's runtime-compiled engines (the ones its heuristics rank first for SDPA on
         * sm_80/sm_90) check themselves by loading the driver: without libcuda.so.1 they all
         * fail as "runtime prerequisite missing" and drop out of the results, so a refusal
         * here only means the precompiled engines refused; the answer needs a GPU machine. */
        void *drv = r == -ENOTSUP ? dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL) : NULL;
        if (drv)
                dlclose(drv);
        else if (r == -ENOTSUP) {
                snprintf(why, why_len, "the precompiled engines refuse (%s); the runtime-compiled "
                         "ones need the CUDA driver (libcuda.so.1), absent here", p.why);
                r = -ENODEV;
        }
        graph_free(&p);
        graph_free(&g);
        return r;
}

/* ---- gather, scatter ------------------------------------------------------------------------- */

__device__ static inline void to_t(float x, __half *y) {
        *y = __float2half_rn(x);
}
__device__ static inline void to_t(float x, __nv_bfloat16 *y) {
        *y = __float2bfloat16_rn(x);
}
__device__ static inline float from_t(__half x) {
        return __half2float(x);
}
__device__ static inline float from_t(__nv_bfloat16 x) {
        return __bfloat162float(x);
}

typedef struct sdpa_args {
        const float *qkv;
        int64_t ldq, c, n, window, total; /* total: dense elements, n_pad · heads · 16 */
        const int32_t *slot_point;
        float *out;
        int64_t ldo;
        int heads;
} sdpa_args;

/* dense[which][e] = slot's q / k / v value (zero for a slot with no valid point). */
template <typename T> __global__ void sdpa_gather(const sdpa_args a, T *q, T *k, T *v) {
        for (int64_t e = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; e < a.total;
             e += (int64_t) gridDim.x * blockDim.x) {
                int64_t slot;
                int h, d;
                cu_sdpa_split(e, a.window, a.heads, &slot, &h, &d);
                int64_t p = cu_sdpa_slot_row(a.slot_point, a.n, slot);
                float x[3] = { 0.0f, 0.0f, 0.0f };
                if (p >= 0)
                        for (int w = 0; w < 3; w++)
                                x[w] = __ldg(a.qkv + cu_sdpa_qkv_at(p, a.ldq, a.c, w, h, d));
                to_t(x[0], q + e);
                to_t(x[1], k + e);
                to_t(x[2], v + e);
        }
}

/* out[point] = dense O of the point's first slot (slots < n; the padding slots repeat points
 * that already have one). */
template <typename T> __global__ void sdpa_scatter(const sdpa_args a, const T *o) {
        for (int64_t e = blockIdx.x * (int64_t) blockDim.x + threadIdx.x; e < a.total;
             e += (int64_t) gridDim.x * blockDim.x) {
                int64_t slot;
                int h, d;
                cu_sdpa_split(e, a.window, a.heads, &slot, &h, &d);
                if (slot >= a.n)
                        continue;
                int64_t p = cu_sdpa_slot_row(a.slot_point, a.n, slot);
                if (p >= 0)
                        a.out[p * a.ldo + (int64_t) h * CU_SDPA_HD + d] = from_t(o[e]);
        }
}

/* ---- plan cache, execution ------------------------------------------------------------------ */

#define CACHE_SIZE 8

typedef struct plan_entry {
        int device;
        int64_t window, heads, windows;
        cudnnDataType_t type;
        int status;        /* 0: plan ready; -ENOTSUP: refused (not asked again) */
        sdpa_graph g;
        unsigned long long used;
} plan_entry;

/* One handle for the process (on `handle_device`), its plans, serialised: cuDNN handles are
 * not to be shared between threads while one sets its stream and executes. */
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cudnnHandle_t handle;
static int handle_device = -1;
static cudnnBackendDescriptor_t handle_dev; /* DEVICEPROP of the handle */
static plan_entry cache[CACHE_SIZE];
static unsigned long long cache_clock;

static int ensure_handle(p3_backend *be) {
        if (handle)
                return handle_device == cuda_st(be)->device ? 0 : -ENOTSUP;
        cudnnStatus_t s = api.create(&handle);
        if (s != CUDNN_STATUS_SUCCESS) {
                handle = NULL;
                return -ENOTSUP;
        }
        bool ok = api.create_desc(CUDNN_BACKEND_DEVICEPROP_DESCRIPTOR, &handle_dev) ==
                  CUDNN_STATUS_SUCCESS;
        if (ok && (api.set_attr(handle_dev, CUDNN_ATTR_DEVICEPROP_HANDLE, CUDNN_TYPE_HANDLE, 1,
                                &handle) != CUDNN_STATUS_SUCCESS ||
                   api.finalize(handle_dev) != CUDNN_STATUS_SUCCESS)) {
                api.destroy_desc(handle_dev);
                ok = false;
        }
        if (!ok) {
                handle_dev = NULL;
                api.destroy(handle);
                handle = NULL;
                return -ENOTSUP;
        }
        handle_device = cuda_st(be)->device;
        return 0;
}

/* The handle and every plan were made in the primary context, which the last backend's end
 * destroys (cudaDeviceReset): they go first, and the next load makes new ones. */
extern "C" void cuda_attention_cudnn_release(void) {
        pthread_mutex_lock(&cache_lock);
        for (int i = 0; i < CACHE_SIZE; i++) {
                graph_free(&cache[i].g);
                memset(&cache[i], 0, sizeof(cache[i]));
        }
        if (handle_dev)
                (void) api.destroy_desc(handle_dev);
        if (handle)
                (void) api.destroy(handle);
        handle_dev = NULL;
        handle = NULL;
        handle_device = -1;
        pthread_mutex_unlock(&cache_lock);
}

/* The cached entry for the shape, built on first use (the least recently used one goes). */
static plan_entry *get_plan(p3_backend *be, int64_t window, int64_t heads, int64_t windows,
                            cudnnDataType_t t) {
        plan_entry *victim = &cache[0];
        for (int i = 0; i < CACHE_SIZE; i++) {
                plan_entry *e = &cache[i];
                if (e->used && e->device == cuda_st(be)->device && e->window == window &&
                    e->heads == heads && e->windows == windows && e->type == t) {
                        e->used = ++cache_clock;
                        return e;
                }
                if (e->used < victim->used)
                        victim = e;
        }
        graph_free(&victim->g);
        memset(&victim->g, 0, sizeof(victim->g));
        victim->device = cuda_st(be)->device;
        victim->window = window;
        victim->heads = heads;
        victim->windows = windows;
        victim->type = t;
        victim->status = build_plan(&victim->g, handle_dev, windows, heads, window, t);
        if (victim->status == -ENOMEM)
                victim->status = -ENOTSUP; /* kept: the own kernel serves this shape from now on */
        victim->used = ++cache_clock;
        if (victim->status)
                fprintf(stderr, "p3samd: cuDNN SDPA (window %lld, %lld heads): %s; "
                        "using the own attention kernel\n", (long long) window,
                        (long long) heads, victim->g.why);
        else /* so that a timing says whether cuDNN ran, and what its first use cost */
                fprintf(stderr, "p3samd: cuDNN SDPA (window %lld, %lld heads, %lld windows): "
                        "plan made, workspace %lld bytes\n", (long long) window,
                        (long long) heads, (long long) windows, (long long) victim->g.workspace);
        return victim;
}

/* Runs the plan on the dense buffers (the caller holds cache_lock). */
static int execute(p3_backend *be, plan_entry *e, void *q, void *k, void *v, void *o) {
        void *ws = NULL;
        size_t ws_bytes = (size_t) e->g.workspace;
        if (ws_bytes) {
                int r = cuda_tmp_alloc(be, ws_bytes, &ws);
                if (r)
                        return r == -ENOMEM ? -ENOTSUP : r;
        }
        float scale = 0.25f; /* 16^-0.5 */
        int64_t uids[5] = { UID_Q, UID_K, UID_V, UID_O, UID_SCALE };
        void *ptrs[5] = { q, k, v, o, &scale };
        cudnnBackendDescriptor_t pack = NULL;
        cudnnStatus_t s = api.create_desc(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack);
        if (s == CUDNN_STATUS_SUCCESS)
                s = api.set_attr(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 5,
                                 uids);
        if (s == CUDNN_STATUS_SUCCESS)
                s = api.set_attr(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                 CUDNN_TYPE_VOID_PTR, 5, ptrs);
        if (s == CUDNN_STATUS_SUCCESS)
                s = api.set_attr(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1,
                                 &ws);
        if (s == CUDNN_STATUS_SUCCESS)
                s = api.finalize(pack);
        if (s == CUDNN_STATUS_SUCCESS)
                s = api.set_stream(handle, cuda_st(be)->stream);
        if (s == CUDNN_STATUS_SUCCESS) {
                s = api.execute(handle, e->g.plan, pack);
                /* The handle outlives this backend's stream (a reload destroys it): leave it on
                 * the default stream, not on one that may be gone at its next use or destroy. */
                (void) api.set_stream(handle, NULL);
        }
        if (pack)
                api.destroy_desc(pack);
        if (ws)
                cuda_tmp_free(be, ws, ws_bytes); /* stream-ordered: after the execution */
        if (s != CUDNN_STATUS_SUCCESS) {
                fprintf(stderr, "p3samd: cuDNN SDPA execution: %s; using the own attention "
                        "kernel\n", api.error_string(s));
                /* a launch error cuDNN left behind would fail the own kernel's launch check;
                 * a sticky one (a fault) stays, and that check reports it */
                (void) cudaGetLastError();
                return -ENOTSUP;
        }
        return 0;
}

/* The dense copies, the plan's execution and the scatter back (the caller holds cache_lock). */
template <typename T>
static int run_plan(p3_backend *be, const sdpa_args *a, plan_entry *e) {
        size_t bytes = sizeof(T) * (size_t) a->total;
        void *buf[4] = { NULL, NULL, NULL, NULL };
        int r = 0;
        for (int i = 0; i < 4 && !r; i++)
                r = cuda_tmp_alloc(be, bytes, &buf[i]);
        if (r == -ENOMEM)
                r = -ENOTSUP; /* the own kernel needs no copies: let it run */
        unsigned grid = cuda_grid(a->total, 256);
        cudaStream_t st = cuda_st(be)->stream;
        if (!r) {
                sdpa_gather<T><<<grid, 256, 0, st>>>(*a, (T *) buf[0], (T *) buf[1],
                                                     (T *) buf[2]);
                r = cuda_check_launch(be, "sdpa_gather");
        }
        if (!r)
                r = execute(be, e, buf[0], buf[1], buf[2], buf[3]);
        if (!r) {
                sdpa_scatter<T><<<grid, 256, 0, st>>>(*a, (const T *) buf[3]);
                r = cuda_check_launch(be, "sdpa_scatter");
        }
        for (int i = 3; i >= 0; i--)
                if (buf[i])
                        cuda_tmp_free(be, buf[i], bytes);
        return r;
}

/* A shape cuDNN refused once costs nothing more: its plan's status is known before any copy
 * is made. */
template <typename T>
static int run(p3_backend *be, const sdpa_args *a, int64_t windows, cudnnDataType_t t) {
        pthread_mutex_lock(&cache_lock);
        int r = ensure_handle(be);
        static bool said;
        if (r && !said) {
                said = true; /* under cache_lock */
                fprintf(stderr, "p3samd: cuDNN SDPA: no cuDNN handle on this device; using the "
                        "own attention kernel\n");
        }
        plan_entry *e = r ? NULL : get_plan(be, a->window, a->heads, windows, t);
        if (e)
                r = e->status ? e->status : run_plan<T>(be, a, e);
        pthread_mutex_unlock(&cache_lock);
        return r;
}

int cuda_attention_cudnn(p3_backend *be, const p3_tensor *qkv, const int32_t *slot_point,
                         int64_t n_pad, int64_t window, int heads, p3_tensor *out) {
        int64_t n = out->rows; /* shapes checked by cuda_attention */
        cudnnDataType_t t;
        if (be->precision == P3_PRECISION_FP16)
                t = CUDNN_DATA_HALF;
        else if (be->precision == P3_PRECISION_BF16)
                t = CUDNN_DATA_BFLOAT16;
        else
                return -ENOTSUP; /* FP32: rounding q, k, v would break its 1e-4 tolerance */
        char why[160];
        if (cuda_cudnn_load(NULL, why, sizeof(why))) {
                static int said; /* once: attention runs for every window block */
                if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
                        fprintf(stderr, "p3samd: cuDNN SDPA: %s; using the own attention "
                                "kernel\n", why);
                return -ENOTSUP;
        }

        sdpa_args a;
        a.qkv = (const float *) qkv->data;
        a.ldq = p3_ld(qkv);
        a.c = out->cols;
        a.n = n;
        a.window = window;
        a.total = n_pad * heads * CU_SDPA_HD;
        a.slot_point = slot_point;
        a.out = (float *) out->data;
        a.ldo = p3_ld(out);
        a.heads = heads;
        if (t == CUDNN_DATA_HALF)
                return run<__half>(be, &a, n_pad / window, t);
        return run<__nv_bfloat16>(be, &a, n_pad / window, t);
}
