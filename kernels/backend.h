/* SPDX-License-Identifier: MIT */
/* The compute-backend interface. The engine (daemon/engine) describes the network in terms of
 * these ops on device tensors; each backend (cpu/, cuda/) implements them. The CPU backend is
 * FP32 and the numerical reference; the CUDA one stores FP16 and accumulates in FP32.
 *
 * Conventions: tensors are 2-D, row-major, on the backend's device. Linear weights follow
 * PyTorch ([out, in], y = x·Wᵀ + b). Index arrays are int32 on the device. Every op returns 0 or
 * a negative errno (-ENOMEM when the device arena is exhausted, so the caller can retry
 * smaller). Ops run in order on the backend's one stream; `sync` waits for them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum p3_dtype {
        P3_F32,
        P3_F16,
        P3_BF16,
} p3_dtype;

/* How a backend computes, chosen when it is made:
 *   FP32  FP32 everywhere (the numerical reference; what the golden tests use);
 *   BF16  weights held in BF16, matrix products with BF16 inputs and FP32 accumulation;
 *         biases, LayerNorm statistics, softmax, GELU inputs and maxima stay FP32;
 *   FP16  FP16 weights (the CUDA backend's default); the CPU backend holds its half-precision
 *         weights as BF16 and computes as BF16 (the CPU has no FP16 matrix unit we use);
 *   AUTO  the backend's best: on the CPU BF16 where it has AMX-BF16 or AVX512-BF16 (and
 *         oneDNN is built in), FP32 elsewhere. */
typedef enum p3_precision {
        P3_PRECISION_FP32, /* zero: what an options struct left empty asks for */
        P3_PRECISION_BF16,
        P3_PRECISION_FP16,
        P3_PRECISION_AUTO,
} p3_precision;

const char *p3_precision_to_string(p3_precision p);
/* "auto", "fp32", "bf16", "fp16" → 0, or -EINVAL. */
int p3_precision_from_string(const char *s, p3_precision *ret);

size_t p3_dtype_size(p3_dtype t);

typedef struct p3_tensor {
        void *data;
        p3_dtype dtype;
        int64_t rows, cols;
        int64_t ld; /* row stride in elements (>= cols); 0 means cols */
} p3_tensor;

static inline int64_t p3_ld(const p3_tensor *t) {
        return t->ld ? t->ld : t->cols;
}

/* A column slice [c0, c0+nc) of a tensor: a view, no copy. */
p3_tensor p3_tensor_cols(const p3_tensor *t, int64_t c0, int64_t nc);

/* Flags for linear / layernorm. */
enum {
        P3_GELU = 1 << 0,       /* apply exact GELU to the result */
        P3_ACCUMULATE = 1 << 1, /* y += result instead of y = result */
};

/* Linear–GELU–Linear–GELU–Linear, the shape of every P3-SAM head. */
typedef struct p3_mlp3 {
        p3_tensor w[3], b[3];
} p3_mlp3;

/* The P3-SAM heads (spec §4). First-layer weights keep upstream's concatenated column layout:
 *   seg[h].w[0]  [512, 518]  = [feat 512 | point 3 | prompt 3]
 *   s2g.w[0]     [256, 521]  = [feat | point | prompt | m1 3]
 *   s2[h].w[0]   [256, 777]  = [global 256 | feat | point | prompt | m1]
 *   iou.w[0]     [256, 777]  = [global 256 | feat | point | prompt | s2 3]
 * Backends split them into per-point and per-prompt products; nothing of size
 * prompts × points × channels is ever built. */
typedef struct p3_heads_params {
        p3_mlp3 seg[3], s2g, s2[3], iou, iou_out;
} p3_heads_params;

/* Inputs of one prompt batch. Per-point features live per voxel: feat [m, 512] and the
 * point→voxel map inverse [n] (device), points [n, 3] (device, centre-shifted, f32). */
typedef struct p3_heads_input {
        const p3_tensor *feat;
        const int32_t *inverse;
        const p3_tensor *points;
        int64_t n;
        const float *prompts; /* host [k, 3] */
        int k;
} p3_heads_input;

/* Outputs (host memory; any pointer may be NULL when not wanted). */
typedef struct p3_heads_output {
        float *iou;        /* [k, 3] sigmoid IoU predictions */
        float *global;     /* [k, 256] max over points of seg_s2_mlp_g */
        float *iou_feat;   /* [k, 256] max over points of iou_mlp */
        float *s1_logit;   /* [3][k][n] stage-1 logits */
        float *s2_logit;   /* [3][k][n] stage-2 logits */
        uint8_t *mask_bits; /* [3][k][ceil(n/8)], bit (i&7) of byte i>>3: sigmoid(s2) > 0.5 */
} p3_heads_output;

typedef struct p3_backend p3_backend;

typedef struct p3_backend_ops {
        const char *name;
        void (*destroy)(p3_backend *be);

        /* Device memory, accounted in be->cur_bytes / be->peak_bytes and capped by
         * be->limit_bytes (0 = no cap): over the cap → -ENOMEM. */
        int (*alloc)(p3_backend *be, size_t bytes, void **ret);
        void (*free)(p3_backend *be, void *ptr, size_t bytes);
        int (*upload)(p3_backend *be, void *dst, const void *src, size_t bytes);
        int (*download)(p3_backend *be, void *dst, const void *src, size_t bytes);
        int (*sync)(p3_backend *be);

        /* A weight matrix from host FP32 into the backend's storage type. The CPU backend at
         * FP32 references `host` without copying (it must then outlive the tensor; see
         * weights_copied); at BF16 it keeps its own BF16 copy of matrices and FP32 copies of
         * vectors (biases, norms). */
        int (*weight_upload)(p3_backend *be, const float *host, int64_t rows, int64_t cols,
                             p3_tensor *ret);
        void (*weight_free)(p3_backend *be, p3_tensor *t);

        /* y = x·Wᵀ + b (b may be NULL), then flags. */
        int (*linear)(p3_backend *be, const p3_tensor *x, const p3_tensor *w, const p3_tensor *b,
                      p3_tensor *y, unsigned flags);
        /* y = LayerNorm(x)·g + b (eps 1e-5, biased variance), then flags. y may equal x. */
        int (*layernorm)(p3_backend *be, const p3_tensor *x, const p3_tensor *g,
                         const p3_tensor *b, p3_tensor *y, unsigned flags);
        /* x = GELU(x), in place. */
        int (*gelu)(p3_backend *be, p3_tensor *x);
        /* y += x (same shape). */
        int (*add)(p3_backend *be, const p3_tensor *x, p3_tensor *y);
        /* y = Σ_r x[nbr[i,r]] · W_rᵀ + b, with w the KRSC weight viewed as [cout, 27·cin]
         * and nbr [n, 27] (-1 = absent neighbour). */
        int (*subm_conv)(p3_backend *be, const p3_tensor *x, const int32_t *nbr,
                         const p3_tensor *w, const p3_tensor *b, p3_tensor *y);
        /* Windowed multi-head self-attention on qkv [n, 3C] (q|k|v, head-major, head dim 16):
         * slot s of the padded sequence holds point slot_point[s]; windows are `window`
         * consecutive slots; out[point] is taken from the point's first slot (slots < n).
         * Softmax scale = 16^-0.5. */
        int (*attention)(p3_backend *be, const p3_tensor *qkv, const int32_t *slot_point,
                         int64_t n_pad, int64_t window, int heads, p3_tensor *out);
        /* y[i, col0 : col0 + x.cols] = x[idx[i]] for i < y.rows (idx NULL: identity). */
        int (*gather_rows)(p3_backend *be, const p3_tensor *x, const int32_t *idx, p3_tensor *y,
                           int64_t col0);
        /* y[i] += x[idx[i]] for i < y.rows. */
        int (*gather_add)(p3_backend *be, const p3_tensor *x, const int32_t *idx, p3_tensor *y);
        /* y[c] = max over {i : cluster[i] == c} of x[i]; every c in [0, y.rows) has a member. */
        int (*segment_max)(p3_backend *be, const p3_tensor *x, const int32_t *cluster,
                           p3_tensor *y);
        /* Tensor → host FP32 (for traces and outputs). */
        int (*to_host_f32)(p3_backend *be, const p3_tensor *x, float *host);

        /* One prompt batch through all heads (two passes over the points). -ERANGE when a
         * stage-2 mask logit is NaN or ±Inf; the outputs are then not to be used. */
        int (*heads)(p3_backend *be, const p3_heads_params *hp, const p3_heads_input *in,
                     p3_heads_output *out);
        /* 0 when every element of x is finite, -ERANGE when one is NaN or ±Inf: the engine
         * asks after each stage, so that reduced precision overflowing fails a job with a
         * sentence instead of returning garbage. */
        int (*check_finite)(p3_backend *be, const p3_tensor *x);
        /* Optional (NULL: a device that cannot break, the CPU): 0 while the device can still
         * work; -EIO with the reason in why once it cannot (a fault that poisons the CUDA
         * context, such as an illegal address, makes every later call fail). The service asks
         * after a failed job. */
        int (*device_error)(p3_backend *be, char *why, size_t why_len);

        /* Optional: a level's integer structure built on the device (NULL: the engine builds
         * it on the host and uploads it, as for the CPU backend). The twins of
         * daemon/engine/serialize.c, on grid coordinates grid [n, 3] already on the device:
         *   subm_neighbors: nbr [n, 27] as p3_subm_neighbors (-1 = absent; -ERANGE for a
         *     coordinate outside [0, 2^21 - 1));
         *   window_slots: slot [n_pad] = the point of rank pad(s) in the stable ascending
         *     order of the codes of `curve` (z, z-trans, Hilbert, Hilbert-trans, numbered as
         *     p3_order) at depth 1..16, where pad(s) = s below n and s - window from n on
         *     (p3_attention_pad): the slot map the attention op takes.
         * Both only queue work; errors found on the device come back as negative errno. */
        int (*subm_neighbors)(p3_backend *be, const int32_t *grid, int64_t n, int32_t *nbr);
        int (*window_slots)(p3_backend *be, const int32_t *grid, int64_t n, int curve, int depth,
                            int64_t window, int64_t n_pad, int32_t *slot);
} p3_backend_ops;

struct p3_backend {
        const p3_backend_ops *ops;
        p3_dtype act_dtype; /* activations as stored */
        p3_dtype weight_dtype; /* weight matrices as stored */
        p3_precision precision; /* resolved: never AUTO */
        bool weights_copied; /* uploads copy: the host weights may go once the model is built */
        size_t cur_bytes, peak_bytes, limit_bytes;
        int threads;
        char device[128]; /* for people: "CPU (2 threads, oneDNN FP32)" */
        void *priv;
};

typedef struct p3_backend_options {
        int threads; /* 0 = all online CPUs */
        size_t limit_bytes;
        p3_precision precision;
} p3_backend_options;

/* The CUDA backend on device 0 of those CUDA_VISIBLE_DEVICES shows. 0, or a negative errno
 * with a sentence in why: -ENODEV "no CUDA device (…)" without a driver or device (and in
 * builds without nvcc: "no CUDA device (this build has no CUDA backend)"), -ENOENT when cuBLAS
 * cannot be loaded, -EOPNOTSUPP for a precision the device lacks (BF16 before sm_80), -EIO
 * when the runtime fails. AUTO and FP16 hold FP16 weights; FP32 computes with TF32 off. */
int p3_backend_cuda_new(const p3_backend_options *opt, char *why, size_t why_len,
                        p3_backend **ret);

/* Every op of be against the CPU backend at FP32 on small random inputs (a few hundred rows;
 * the heads at their full widths), within a tolerance set by be->precision (FP32 1e-4, FP16
 * 1e-2, BF16 3e-2 of the largest reference value). report (may be NULL) gets each op's error.
 * 0, or a negative errno with why naming the op: "attention: max error … (tolerance …)",
 * "linear failed on the device: …". It stops at the first failure, or with keep_going (a check
 * by hand, which wants every op's figure) tries every op and returns the first failure, why
 * naming each one ("a; b"). Test hook: P3_TEST_SELFTEST_BREAK=<op> perturbs that op's device
 * result. */
typedef void (*p3_selftest_report_fn)(const char *op, double err, double tol, void *userdata);
int p3_backend_selftest(p3_backend *be, bool keep_going, p3_selftest_report_fn report,
                        void *userdata, char *why, size_t why_len);

/* -EOPNOTSUPP when the precision asked for cannot run on this CPU (BF16 without AMX-BF16 or
 * AVX512-BF16, or without oneDNN); why (may be NULL, size why_len) says so in a sentence. */
int p3_backend_cpu_new(const p3_backend_options *opt, p3_backend **ret);
/* What precision AUTO gives on this CPU, and why, in a sentence. */
p3_precision p3_cpu_auto_precision(char *why, size_t why_len);
void p3_backend_free(p3_backend *be);

/* The arena's accounting, shared by every backend's alloc and free: the bytes still allowed
 * under the cap (SIZE_MAX without one; written so that no sum can wrap), and the counts and
 * peak kept as memory is taken and given back. */
static inline size_t p3_backend_room(const p3_backend *be) {
        if (!be->limit_bytes)
                return SIZE_MAX;
        return be->cur_bytes < be->limit_bytes ? be->limit_bytes - be->cur_bytes : 0;
}

static inline void p3_backend_took(p3_backend *be, size_t bytes) {
        be->cur_bytes += bytes;
        if (be->cur_bytes > be->peak_bytes)
                be->peak_bytes = be->cur_bytes;
}

static inline void p3_backend_gave(p3_backend *be, size_t bytes) {
        be->cur_bytes -= bytes < be->cur_bytes ? bytes : be->cur_bytes;
}

/* Convenience wrappers: a device tensor of rows × cols in the backend's activation type. */
int p3_tensor_alloc(p3_backend *be, int64_t rows, int64_t cols, p3_tensor *ret);
void p3_tensor_free(p3_backend *be, p3_tensor *t);
int p3_ibuf_alloc(p3_backend *be, int64_t n, int32_t **ret);
int p3_ibuf_upload(p3_backend *be, const int32_t *host, int64_t n, int32_t **ret);
void p3_ibuf_free(p3_backend *be, int32_t *buf, int64_t n);

#ifdef __cplusplus
}
#endif
