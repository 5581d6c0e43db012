/* SPDX-License-Identifier: MIT */
/* Orchestration of a segmentation job: each stage is a call into its own module; this file
 * only owns the job's buffers, timings and the mapping of stage progress to job progress. */
#include <math.h>
#include <string.h>
#include <time.h>

#include "mesh_clean.h"
#include "pipeline-internal.h"
#include "postprocess.h"
#include "sample.h"

void p3_pipeline_params_default(p3_pipeline_params *p) {
        *p = (p3_pipeline_params) {
                .points = P3_DEFAULT_POINTS,
                .prompts = P3_DEFAULT_PROMPTS,
                .prompt_batch = P3_DEFAULT_PROMPT_BATCH,
                .seed = P3_DEFAULT_SEED,
                .post_process = false,
                .threshold = P3_DEFAULT_THRESHOLD,
        };
}

void p3_pipeline_params_cpu(p3_pipeline_params *p) {
        p3_pipeline_params_default(p);
        p->points = P3_CPU_DEFAULT_POINTS;
        p->prompts = P3_CPU_DEFAULT_PROMPTS;
}

int p3_pipeline_params_check(const p3_pipeline_params *p, p3_err *err) {
        if (p->points < P3_POINTS_MIN || p->points > P3_POINTS_MAX)
                return p3_errf(err, -EINVAL, "points must be between %d and %d", P3_POINTS_MIN,
                               P3_POINTS_MAX);
        if (p->prompts < 1 || p->prompts > P3_PROMPTS_MAX)
                return p3_errf(err, -EINVAL, "prompts must be between 1 and %d", P3_PROMPTS_MAX);
        if (p->prompt_batch < 0 || p->prompt_batch > P3_PROMPT_BATCH_MAX)
                return p3_errf(err, -EINVAL, "prompt_batch must be between 1 and %d, or 0 "
                               "(auto)", P3_PROMPT_BATCH_MAX);
        if (!(p->threshold > 0 && p->threshold <= 1))
                return p3_errf(err, -EINVAL, "threshold must be in (0, 1]");
        return 0;
}

/* Share of the job each stage takes, for progress (the heads dominate on every backend). */
static const struct {
        const char *stage;
        double start, width;
} stage_span[] = {
        { "cleaning", 0.00, 0.02 },    { "sampling", 0.02, 0.02 }, { "features", 0.04, 0.20 },
        { "prompts", 0.24, 0.01 },     { "masks", 0.25, 0.65 },    { "post-processing", 0.90, 0.10 },
};


static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The model reports its own fraction of the current stage; the job's stage (j->stage, which
 * the model's stage name always matches) places it within the whole job. */
static void job_progress(void *userdata, const char *stage, double frac) {
        p3_job *j = userdata;
        if (!j->hooks || !j->hooks->progress)
                return;
        for (size_t i = 0; i < ELEMENTSOF(stage_span); i++)
                if (strcmp(stage_span[i].stage, j->stage) == 0) {
                        double f = stage_span[i].start + stage_span[i].width * MIN(MAX(frac, 0), 1);
                        j->hooks->progress(j->hooks->userdata, j->stage, f);
                        return;
                }
}

static bool job_abort(void *userdata) {
        p3_job *j = userdata;
        return j->hooks && j->hooks->abort && j->hooks->abort(j->hooks->userdata);
}

int p3_job_failed(const p3_job *j, const p3_pipeline_params *p, int k, int r, p3_err *err) {
        if (r != -ENOMEM)
                return r;
        int batch = j->prompt_batch ? j->prompt_batch : p->prompt_batch;
        char batches[32] = "the prompt batch auto";
        if (batch)
                snprintf(batches, sizeof(batches), "batches of %d", batch);
        return p3_errf(err, r, "out of memory in the %s stage (%lld points, %d prompts, %s); "
                       "fewer points, prompts or a smaller prompt batch need less",
                       j->stage ? j->stage : "setup", (long long) p->points, k, batches);
}

/* Enter a stage: report it, honour a cancel request. */
int p3_job_enter(p3_job *j, const char *stage, double *t, p3_err *err) {
        j->stage = stage;
        *t = now();
        if (job_abort(j))
                return p3_errf(err, -ECANCELED, "the job was cancelled");
        job_progress(j, stage, 0);
        return 0;
}

void p3_job_leave(p3_job *j, double t) {
        if (*j->n_timings < P3_PIPELINE_MAX_TIMINGS)
                j->timings[(*j->n_timings)++] = (p3_stage_time) { j->stage, now() - t };
}


void p3_prepared_done(p3_prepared *pr) {
        p3_adjacency_done(&pr->adj);
        free(pr->area);
        free(pr->pts);
        free(pr->normals);
        free(pr->face_idx);
        if (pr->m)
                p3_features_done(pr->m, &pr->feat);
}

/* normalize_pc's centre and scale, kept to map prompt points into the model's frame. */
static void bbox_frame(const double *pts, int64_t n, double center[3], double *scale) {
        double lo[3] = { INFINITY, INFINITY, INFINITY }, hi[3] = { -INFINITY, -INFINITY, -INFINITY };
        for (int64_t i = 0; i < n; i++)
                for (int c = 0; c < 3; c++) {
                        lo[c] = fmin(lo[c], pts[3 * i + c]);
                        hi[c] = fmax(hi[c], pts[3 * i + c]);
                }
        *scale = 0;
        for (int c = 0; c < 3; c++) {
                center[c] = (hi[c] + lo[c]) / 2;
                *scale = fmax(*scale, fabs((hi[c] - lo[c]) / 2));
        }
}

static int clean_stage(p3_job *j, const p3_mesh *input, p3_mesh *mesh, p3_prepared *pr, p3_err *err) {
        double t;
        int r = p3_job_enter(j, "cleaning", &t, err);
        if (r >= 0)
                r = p3_mesh_clean(input, mesh, err);
        if (r >= 0 && mesh->nf == 0)
                r = p3_errf(err, -EINVAL, "the mesh has no faces left after cleaning");
        if (r >= 0)
                r = p3_mesh_adjacency(mesh, &pr->adj);
        if (r >= 0) {
                pr->area = malloc(sizeof(double) * mesh->nf);
                if (!pr->area)
                        return -ENOMEM;
                p3_mesh_face_geometry(mesh, pr->area, NULL);
        }
        p3_job_leave(j, t);
        return r;
}

static int sample_stage(p3_job *j, const p3_mesh *mesh, const p3_pipeline_params *p, p3_prepared *pr,
                        p3_err *err) {
        double t;
        int64_t n = p->points;
        int r = p3_job_enter(j, "sampling", &t, err);
        if (r < 0)
                return r;
        pr->pts = malloc(sizeof(double) * 3 * n);
        pr->normals = malloc(sizeof(double) * 3 * n);
        pr->face_idx = malloc(sizeof(int32_t) * n);
        if (!pr->pts || !pr->normals || !pr->face_idx)
                return -ENOMEM;
        r = p3_sample_surface(mesh, n, p->seed, pr->pts, pr->face_idx, err);
        if (r < 0)
                return r;
        p3_face_normals_at(mesh, pr->face_idx, n, pr->normals);
        bbox_frame(pr->pts, n, pr->center, &pr->scale);
        p3_normalize_pc(pr->pts, n);
        p3_job_leave(j, t);
        return 0;
}

static int features_stage(p3_job *j, p3_model *m, const p3_pipeline_params *p, p3_prepared *pr,
                          p3_err *err) {
        double t;
        int r = p3_job_enter(j, "features", &t, err);
        if (r < 0)
                return r;
        p3_run_opts o = { .seed = p->seed, .abort = job_abort, .progress = job_progress,
                          .userdata = j };
        pr->m = m;
        r = p3_model_features(m, pr->pts, pr->normals, p->points, &o, &pr->feat, err);
        p3_job_leave(j, t);
        return r;
}

int p3_job_prepare(p3_job *j, p3_model *m, const p3_mesh *input, const p3_pipeline_params *p,
                   p3_mesh *mesh, p3_prepared *pr, p3_err *err) {
        int r = p3_pipeline_params_check(p, err);
        if (r >= 0)
                r = clean_stage(j, input, mesh, pr, err);
        if (r >= 0)
                r = sample_stage(j, mesh, p, pr, err);
        if (r >= 0)
                r = features_stage(j, m, p, pr, err);
        return r;
}

/* Masks of all prompts: 3 bit-packed masks per prompt and the IoU predictions. */
int p3_job_masks(p3_job *j, p3_model *m, p3_prepared *pr, const float *prompts, int k,
                       const p3_pipeline_params *p, uint8_t *bits, float *iou, p3_err *err) {
        double t;
        int r = p3_job_enter(j, "masks", &t, err);
        if (r < 0)
                return r;
        p3_heads_output out = { .iou = iou, .mask_bits = bits };
        p3_run_opts o = { .seed = p->seed, .abort = job_abort, .progress = job_progress,
                          .userdata = j };
        j->prompt_batch = p3_model_heads_batch(m, p->prompt_batch, k, pr->feat.n);
        r = p3_model_heads(m, &pr->feat, prompts, k, j->prompt_batch, &o, &out, err);
        p3_job_leave(j, t);
        return r;
}

static int pick_prompts(p3_job *j, p3_prepared *pr, int k, float *prompts, p3_err *err) {
        double t;
        int r = p3_job_enter(j, "prompts", &t, err);
        if (r < 0)
                return r;
        _cleanup_free_ int64_t *idx = malloc(sizeof(int64_t) * k);
        if (!idx)
                return -ENOMEM;
        r = p3_model_fps(&pr->feat, k, -1, idx);
        if (r < 0)
                return p3_errf(err, r, "prompt sampling failed: %s", p3_strerror(r));
        for (int i = 0; i < k; i++)
                memcpy(prompts + 3 * i, pr->feat.points_host + 3 * idx[i], sizeof(float) * 3);
        p3_job_leave(j, t);
        return 0;
}

static int postprocess_stage(p3_job *j, const p3_mesh *mesh, p3_prepared *pr, int k,
                             const uint8_t *bits, const float *iou, const p3_pipeline_params *p,
                             const p3_mt19937 *np_rng, p3_pp_result *pp, p3_err *err) {
        double t;
        int64_t n = p->points, nb = (n + 7) / 8;
        int r = p3_job_enter(j, "post-processing", &t, err);
        if (r < 0)
                return r;
        p3_pp_input in = {
                .mesh = mesh,
                .adj = &pr->adj,
                .face_area = pr->area,
                .points = pr->pts,
                .face_idx = pr->face_idx,
                .n = n,
                .k = k,
                .mask_bits = { bits, bits + (size_t) k * nb, bits + (size_t) 2 * k * nb },
                .pred_iou = iou,
                .post_process = p->post_process,
                .threshold = p->threshold,
                .colour_rng = np_rng,
        };
        p3_pp_hooks hooks = { .abort = job_abort, .userdata = j };
        r = p3_postprocess(&in, &hooks, pp, err);
        p3_job_leave(j, t);
        return r;
}

static int take_result(const p3_pp_result *pp, p3_segment_result *ret) {
        ret->face_ids = malloc(sizeof(int32_t) * (pp->nf + 1));
        ret->part_labels = malloc(sizeof(int32_t) * (pp->n_parts + 1));
        ret->aabb = malloc(sizeof(double) * 6 * (pp->n_parts + 1));
        ret->colours = malloc(3 * (pp->n_parts + 1));
        if (!ret->face_ids || !ret->part_labels || !ret->aabb || !ret->colours)
                return -ENOMEM;
        memcpy(ret->colours, pp->colours, 3 * pp->n_parts);
        for (int64_t f = 0; f < pp->nf; f++)
                ret->face_ids[f] = (int32_t) pp->face_ids[f];
        for (int64_t i = 0; i < pp->n_parts; i++)
                ret->part_labels[i] = (int32_t) pp->part_labels[i];
        memcpy(ret->aabb, pp->aabb, sizeof(double) * 6 * pp->n_parts);
        ret->n_parts = (int) pp->n_parts;
        return 0;
}

int p3_pipeline_segment(p3_model *m, const p3_mesh *input, const p3_pipeline_params *p,
                        const p3_pipeline_hooks *hooks, p3_segment_result *ret, p3_err *err) {
        *ret = (p3_segment_result) {};
        p3_job j = { .hooks = hooks, .timings = ret->timings, .n_timings = &ret->n_timings };
        p3_prepared pr = {};
        p3_pp_result pp = {};
        p3_mt19937 np_rng = {};
        p3_backend *be = p3_model_backend(m);
        be->peak_bytes = be->cur_bytes;
        int k = (int) MIN((int64_t) p->prompts, p->points);
        int64_t nb = (p->points + 7) / 8;
        _cleanup_free_ float *prompts = malloc(sizeof(float) * 3 * k);
        _cleanup_free_ float *iou = malloc(sizeof(float) * 3 * k);
        _cleanup_free_ uint8_t *bits = malloc((size_t) 3 * k * nb);
        int r = prompts && iou && bits ? 0 : -ENOMEM;
        if (r >= 0)
                r = p3_job_prepare(&j, m, input, p, &ret->mesh, &pr, err);
        if (r >= 0)
                r = pick_prompts(&j, &pr, k, prompts, err);
        if (r >= 0)
                r = p3_job_masks(&j, m, &pr, prompts, k, p, bits, iou, err);
        /* The features are no longer needed: free the device memory before post-processing.
         * NumPy's generator goes on to the part colours. */
        if (pr.m) {
                np_rng = pr.feat.np_rng;
                p3_features_done(m, &pr.feat);
                pr.m = NULL;
        }
        if (r >= 0)
                r = postprocess_stage(&j, &ret->mesh, &pr, k, bits, iou, p, &np_rng, &pp, err);
        if (r >= 0)
                r = take_result(&pp, ret);
        ret->peak_device_bytes = be->peak_bytes;
        ret->prompt_batch = j.prompt_batch;
        p3_pp_result_done(&pp);
        p3_prepared_done(&pr);
        if (r < 0) {
                p3_segment_result_done(ret);
                return p3_job_failed(&j, p, k, r, err);
        }
        if (hooks && hooks->progress)
                hooks->progress(hooks->userdata, "done", 1.0);
        return 0;
}

void p3_segment_result_done(p3_segment_result *r) {
        p3_mesh_done(&r->mesh);
        free(r->face_ids);
        free(r->part_labels);
        free(r->aabb);
        free(r->colours);
        r->face_ids = NULL;
        r->part_labels = NULL;
        r->aabb = NULL;
        r->colours = NULL;
        r->n_parts = 0;
}
