/* SPDX-License-Identifier: MIT */
/* The P3-SAM network on a compute backend: the Sonata backbone (point features) and the
 * point-prompted heads (masks and IoUs). This is the engine's public API for inference; the
 * pipeline (sampling, prompts, post-processing) is built on top of it.
 *
 * Randomness: a seed drives two MT19937 generators exactly as upstream seeds NumPy's legacy
 * RandomState and torch's CPU generator (np.random.seed(s); torch.manual_seed(s)): the NumPy one
 * picks GridSample's representative points and then the FPS start, the torch one permutes the
 * serialization orders (one randperm(4) at the embedding and one per pooling). A p3_replay
 * supplies those choices instead, to reproduce a recorded run. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"
#include "rng.h"
#include "weights.h"

typedef struct p3_model p3_model;

typedef enum p3_backend_kind {
        P3_BACKEND_AUTO, /* CUDA where a usable device is, else the CPU */
        P3_BACKEND_CPU,
        P3_BACKEND_CUDA,
} p3_backend_kind;

typedef struct p3_model_params {
        p3_backend_kind backend;
        p3_precision precision; /* P3_PRECISION_AUTO: the backend's best (backend.h) */
        int threads;            /* CPU threads, 0 = all */
        size_t memory_max;      /* device arena cap in bytes, 0 = none */
} p3_model_params;

/* The one way in (whisper.cpp's whisper_init_from_file_with_params is the pattern): the
 * model opens the backend asked for, with the precision asked for, owns it, and can say what
 * it chose and why. CUDA asked for but not usable falls back to the CPU with a reason; a
 * precision the chosen backend cannot run is an error with a sentence. When the backend
 * copies the weights (p3_model_weights_copied()), w may be freed once this returns;
 * otherwise (FP32 on the CPU) w must outlive the model. */
int p3_model_open(const p3_weights *w, const p3_model_params *params, p3_model **ret,
                  p3_err *err);
/* What runs, for people: "CPU (2 threads, oneDNN AMX-BF16)". */
const char *p3_model_device(const p3_model *m);
/* "cpu" or "cuda". */
const char *p3_model_backend_name(const p3_model *m);
p3_precision p3_model_precision(const p3_model *m);
/* Why the backend asked for is not the one running ("" when it is). */
const char *p3_model_fallback_reason(const p3_model *m);
bool p3_model_weights_copied(const p3_model *m);
/* 0 while the model's device can still work, -EIO with the reason once it cannot (see the
 * backend op device_error): the model must then be freed, and opening it again checks the
 * device afresh. Test hook: with P3_TEST_FAKE_CUDA's stand-in serving, P3_TEST_DEVICE_LOST
 * makes it report a lost device. */
int p3_model_device_error(p3_model *m, char *why, size_t why_len);
/* Whether the model runs on a GPU (CUDA, or P3_TEST_FAKE_CUDA's stand-in for it). */
bool p3_model_on_gpu(const p3_model *m);

/* Upload the weights to a backend the caller made and keeps (the CPU backend at FP32
 * references w's memory: keep w alive). */
int p3_model_new(p3_backend *be, const p3_weights *w, p3_model **ret, p3_err *err);
void p3_model_free(p3_model *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(p3_model *, p3_model_free);
const p3_config *p3_model_config(const p3_model *m);
p3_backend *p3_model_backend(const p3_model *m);

/* Called with named intermediates (host FP32, row-major) when tracing; names as in the golden
 * files: embedding_feat, stage{s}_pooled_feat, stage{s}_block{b}_{cpe_out,attn_out,out},
 * stage{s}_feat, concat_feat, mlp_feat, point_feat. */
typedef void (*p3_trace_fn)(void *userdata, const char *name, const float *data, int64_t rows,
                            int64_t cols);
/* Return true to abort (checked between stages and prompt batches: -ECANCELED). */
typedef bool (*p3_abort_fn)(void *userdata);
typedef void (*p3_progress_fn)(void *userdata, const char *stage, double fraction);

typedef struct p3_replay {
        const int64_t *grid_sample_index; /* [grid_sample_m] or NULL */
        int64_t grid_sample_m;
        const int64_t *order_perm[P3_MAX_STAGES]; /* [num_orders] each, or NULL */
} p3_replay;

typedef struct p3_run_opts {
        uint64_t seed;
        const p3_replay *replay;
        p3_trace_fn trace;
        p3_abort_fn abort;
        p3_progress_fn progress;
        void *userdata;
} p3_run_opts;

/* Per-point features of one cloud, on the backend. */
typedef struct p3_features {
        int64_t n, m;        /* points, voxels */
        p3_tensor feat;      /* [m, 512] per voxel */
        int32_t *inverse;    /* [n] point → voxel, device */
        p3_tensor points;    /* [n, 3] centre-shifted coordinates, device */
        float *points_host;  /* [n, 3] the same, host (prompts are picked from these) */
        double shift[3];     /* the CenterShift that was subtracted */
        int64_t *grid_index; /* [m] representative point of each voxel */
        p3_mt19937 np_rng;   /* NumPy-like generator after GridSample's draws (FPS start) */
} p3_features;

/* Backbone: CenterShift (in place on pts: the heads and FPS use the shifted coordinates, as
 * upstream), GridSample, Sonata, the P3-SAM mlp. pts/normals: [n, 3] float64. */
int p3_model_features(p3_model *m, double *pts, const double *normals, int64_t n,
                      const p3_run_opts *o, p3_features *ret, p3_err *err);
void p3_features_done(p3_model *m, p3_features *f);

/* The prompts per heads call for a batch asked for (0: the engine's choice, auto; see
 * P3_GPU_BATCH_PAIRS), k prompts and n points. */
int p3_model_heads_batch(const p3_model *m, int batch, int k, int64_t n);

/* The heads for k prompts (host [k, 3], coordinates of the shifted cloud), split into batches of
 * at most `batch` prompts (0: p3_model_heads_batch's); outputs as p3_heads_output for all k
 * (each array sized for k). An allocation the device refuses halves the batch. */
int p3_model_heads(p3_model *m, const p3_features *f, const float *prompts, int k, int batch,
                   const p3_run_opts *o, p3_heads_output *out, p3_err *err);

/* FPS prompt indices on the shifted cloud: start = randint(0, n) from f->np_rng (or `start` if
 * >= 0), k indices into out. */
int p3_model_fps(p3_features *f, int64_t k, int64_t start, int64_t *out);
