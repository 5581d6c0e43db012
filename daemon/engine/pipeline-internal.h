/* SPDX-License-Identifier: MIT */
/* What the two pipeline modes (pipeline.c: automatic, pipeline_predict.c: interactive) share:
 * the job's progress/timing bookkeeping and the stages up to the features. */
#pragma once

#include <time.h>

#include "pipeline.h"

typedef struct p3_job {
        const p3_pipeline_hooks *hooks;
        struct timespec t0;
        p3_stage_time *timings;
        int *n_timings;
        const char *stage;
        int prompt_batch; /* the masks' batch, once p3_job_masks chose it */
} p3_job;

/* What segment and predict share: the cleaned mesh sampled and through the backbone. */
typedef struct p3_prepared {
        p3_adjacency adj;
        double *area;      /* [nf] */
        double *pts;       /* [n, 3] normalized, then centre-shifted by the backbone */
        double *normals;   /* [n, 3] */
        int32_t *face_idx; /* [n] */
        double center[3], scale;
        p3_features feat;
        p3_model *m;
} p3_prepared;

int p3_job_enter(p3_job *j, const char *stage, double *t, p3_err *err);
void p3_job_leave(p3_job *j, double t);
/* The job's failure r, with a sentence where the failing layer wrote none: for out of memory,
 * the stage it struck and the sizes that drive it, so the caller knows what to lower. */
int p3_job_failed(const p3_job *j, const p3_pipeline_params *p, int k, int r, p3_err *err);
/* Clean, sample, normalize and run the backbone. */
int p3_job_prepare(p3_job *j, p3_model *m, const p3_mesh *input, const p3_pipeline_params *p,
                   p3_mesh *mesh, p3_prepared *pr, p3_err *err);
/* The heads for k prompts (model frame): mask bits [3][k][ceil(n/8)] and IoUs [k, 3]. */
int p3_job_masks(p3_job *j, p3_model *m, p3_prepared *pr, const float *prompts, int k,
                 const p3_pipeline_params *p, uint8_t *bits, float *iou, p3_err *err);
void p3_prepared_done(p3_prepared *pr);
