/* SPDX-License-Identifier: MIT */
/* The whole automatic segmentation of upstream's mesh_sam() (spec §2, §5): clean the mesh,
 * sample the surface, features, FPS prompts, masks and IoUs in prompt batches, the non-neural
 * post-processing, one part label per face and a box per part. And the interactive mode: the
 * three masks and IoUs of given prompt points, projected to faces.
 *
 * The same code drives any backend (the model carries it). Progress (stage name + fraction of
 * the whole job) and cancellation go through callbacks, checked between stages and prompt
 * batches, as whisper.cpp's params do. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "export.h"
#include "mesh.h"
#include "model.h"
#include "pipeline-limits.h"

typedef struct p3_pipeline_params {
        int64_t points;   /* surface samples (upstream: 100,000) */
        int prompts;      /* FPS prompts (upstream: 400) */
        int prompt_batch; /* prompts per heads call (upstream: 32); 0: auto, the engine's
                           * choice for the backend (p3_model_heads_batch) */
        uint64_t seed;    /* 42 */
        bool post_process;
        double threshold; /* do_post_process threshold, 0.95 */
} p3_pipeline_params;

/* Upstream's defaults: 100,000 points, 400 prompts, seed 42, no post-processing, threshold
 * 0.95; the prompt batch auto (upstream's 32 on the CPU). */
void p3_pipeline_params_default(p3_pipeline_params *p);
/* Defaults for the CPU backend, where upstream's sizes cost ~1e14 FLOP in the heads (10+
 * minutes on 2 cores): 20,000 points and 64 prompts; the rest as upstream. */
void p3_pipeline_params_cpu(p3_pipeline_params *p);
/* Checks ranges; a message names the parameter. */
int p3_pipeline_params_check(const p3_pipeline_params *p, p3_err *err);

typedef struct p3_pipeline_hooks {
        void (*progress)(void *userdata, const char *stage, double fraction);
        bool (*abort)(void *userdata);
        void *userdata;
} p3_pipeline_hooks;

#define P3_PIPELINE_MAX_TIMINGS 16

typedef struct p3_segment_result {
        p3_mesh mesh;          /* the cleaned mesh the labels refer to */
        int32_t *face_ids;     /* [mesh.nf]; < 0: unlabelled */
        int n_parts;
        int32_t *part_labels;  /* [n_parts] ascending */
        double *aabb;          /* [n_parts][2][3] */
        /* [n_parts][3] the colour upstream's run gives each part (its global NumPy generator
         * carried on from GridSample and FPS): p3_segmentation.colours */
        uint8_t *colours;
        p3_stage_time timings[P3_PIPELINE_MAX_TIMINGS];
        int n_timings;
        size_t peak_device_bytes;
        int prompt_batch;      /* the prompts per heads call it asked for, auto resolved (a
                                * device short of memory may have halved it: p3_model_heads) */
} p3_segment_result;

int p3_pipeline_segment(p3_model *m, const p3_mesh *input, const p3_pipeline_params *p,
                        const p3_pipeline_hooks *hooks, p3_segment_result *ret, p3_err *err);
void p3_segment_result_done(p3_segment_result *r);

typedef struct p3_predict_result {
        p3_mesh mesh;         /* the cleaned mesh the face lists refer to */
        int k;
        float *iou;           /* [k, 3] */
        int32_t **faces;      /* [k * 3] face lists (mask h of prompt j at j*3+h) */
        int64_t *counts;      /* [k * 3] */
        p3_stage_time timings[P3_PIPELINE_MAX_TIMINGS];
        int n_timings;
} p3_predict_result;

/* prompts: [k, 3] points in the input mesh's object coordinates. */
int p3_pipeline_predict(p3_model *m, const p3_mesh *input, const double *prompts, int k,
                        const p3_pipeline_params *p, const p3_pipeline_hooks *hooks,
                        p3_predict_result *ret, p3_err *err);
void p3_predict_result_done(p3_predict_result *r);
