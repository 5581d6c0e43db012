/* SPDX-License-Identifier: MIT */
/* Interactive mode: the three masks and IoUs of caller-given prompt points (object
 * coordinates), each mask projected from the sampled points to the faces by the same vote the
 * automatic pipeline uses (majority of the face's samples; ties → not in the mask), faces
 * without samples filled from their neighbours (fix_label). */
#include <math.h>
#include <string.h>

#include "pipeline-internal.h"
#include "postprocess.h"

/* Faces of one point mask: vote, then fill unsampled faces from neighbours. */
static int project_mask(const p3_mesh *mesh, const p3_adjacency *adj, const int32_t *face_idx,
                        int64_t n, const uint8_t *bits, int32_t **faces, int64_t *count) {
        _cleanup_free_ int64_t *in = calloc(mesh->nf, sizeof(int64_t));
        _cleanup_free_ int64_t *out = calloc(mesh->nf, sizeof(int64_t));
        _cleanup_free_ int64_t *ids = malloc(sizeof(int64_t) * mesh->nf);
        if (!in || !out || !ids)
                return -ENOMEM;
        for (int64_t i = 0; i < n; i++) {
                bool b = bits[i >> 3] >> (i & 7) & 1;
                (b ? in : out)[face_idx[i]]++;
        }
        for (int64_t f = 0; f < mesh->nf; f++)
                ids[f] = in[f] + out[f] == 0 ? -1 : in[f] > out[f] ? 1 : 0;
        if (p3_pp_fix_label(ids, mesh->nf, adj) < 0)
                return -ENOMEM;
        int64_t c = 0;
        for (int64_t f = 0; f < mesh->nf; f++)
                c += ids[f] == 1;
        *faces = malloc(sizeof(int32_t) * (c + 1));
        if (!*faces)
                return -ENOMEM;
        *count = 0;
        for (int64_t f = 0; f < mesh->nf; f++)
                if (ids[f] == 1)
                        (*faces)[(*count)++] = (int32_t) f;
        return 0;
}

/* Object coordinates → the frame the heads see: normalize_pc, then the backbone's shift. */
static void to_model_frame(const p3_prepared *pr, const double *p, float *q) {
        for (int c = 0; c < 3; c++)
                q[c] = (float) ((p[c] - pr->center[c]) / (pr->scale + 1e-10) - pr->feat.shift[c]);
}

static int predict_masks(p3_job *j, p3_model *m, p3_prepared *pr, const double *prompts, int k,
                         const p3_pipeline_params *p, p3_predict_result *ret, p3_err *err) {
        int64_t n = p->points, nb = (n + 7) / 8;
        _cleanup_free_ float *q = malloc(sizeof(float) * 3 * k);
        _cleanup_free_ uint8_t *bits = malloc((size_t) 3 * k * nb);
        ret->iou = malloc(sizeof(float) * 3 * k);
        ret->faces = calloc((size_t) 3 * k, sizeof(int32_t *));
        ret->counts = calloc((size_t) 3 * k, sizeof(int64_t));
        if (!q || !bits || !ret->iou || !ret->faces || !ret->counts)
                return -ENOMEM;
        ret->k = k;
        for (int i = 0; i < k; i++)
                to_model_frame(pr, prompts + 3 * i, q + 3 * i);
        int r = p3_job_masks(j, m, pr, q, k, p, bits, ret->iou, err);
        if (r < 0)
                return r;
        double t;
        r = p3_job_enter(j, "post-processing", &t, err);
        for (int i = 0; r >= 0 && i < k; i++)
                for (int h = 0; r >= 0 && h < 3; h++)
                        r = project_mask(&ret->mesh, &pr->adj, pr->face_idx, n,
                                         bits + ((size_t) h * k + i) * nb, &ret->faces[3 * i + h],
                                         &ret->counts[3 * i + h]);
        p3_job_leave(j, t);
        return r;
}

int p3_pipeline_predict(p3_model *m, const p3_mesh *input, const double *prompts, int k,
                        const p3_pipeline_params *p, const p3_pipeline_hooks *hooks,
                        p3_predict_result *ret, p3_err *err) {
        *ret = (p3_predict_result) {};
        if (k < 1 || k > 4096)
                return p3_errf(err, -EINVAL, "give between 1 and 4096 prompt points");
        for (int i = 0; i < 3 * k; i++)
                if (!isfinite(prompts[i]))
                        return p3_errf(err, -EINVAL, "prompt point %d is not finite", i / 3 + 1);
        p3_job j = { .hooks = hooks, .timings = ret->timings, .n_timings = &ret->n_timings };
        p3_prepared pr = {};
        int r = p3_job_prepare(&j, m, input, p, &ret->mesh, &pr, err);
        if (r >= 0)
                r = predict_masks(&j, m, &pr, prompts, k, p, ret, err);
        p3_prepared_done(&pr);
        if (r < 0) {
                p3_predict_result_done(ret);
                return p3_job_failed(&j, p, k, r, err);
        }
        if (hooks && hooks->progress)
                hooks->progress(hooks->userdata, "done", 1.0);
        return 0;
}

void p3_predict_result_done(p3_predict_result *r) {
        p3_mesh_done(&r->mesh);
        for (int i = 0; r->faces && i < 3 * r->k; i++)
                free(r->faces[i]);
        free(r->faces);
        free(r->counts);
        free(r->iou);
        r->faces = NULL;
        r->counts = NULL;
        r->iou = NULL;
        r->k = 0;
}
