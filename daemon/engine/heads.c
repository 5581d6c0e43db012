/* SPDX-License-Identifier: MIT */
/* Prompts and heads on top of the features: FPS prompt selection and the prompt-batch loop
 * (spec §4.1, §5 steps 4–5). */
#include <math.h>
#include <string.h>

#include "fps.h"
#include "model-internal.h"
#include "pipeline-limits.h"

int p3_model_fps(p3_features *f, int64_t k, int64_t start, int64_t *out) {
        if (k <= 0 || k > f->n)
                return -EINVAL;
        if (start < 0)
                start = p3_np_randint(&f->np_rng, 0, f->n);
        return p3_fps(f->points_host, f->n, k, start, out);
}

/* Output pointers of the batch starting at prompt j0, inside the arrays sized for k prompts.
 * Per-head arrays are [3][k][…], so a batch's rows are not contiguous: the batch writes into
 * a scratch output and is copied out. */
typedef struct batch_out {
        p3_heads_output o;
        int64_t n;
        int kb;
} batch_out;

static int batch_out_init(batch_out *b, const p3_heads_output *want, int kb, int64_t n) {
        int64_t nb = (n + 7) / 8;
        b->n = n;
        b->kb = kb;
        b->o = (p3_heads_output) {
                .iou = want->iou ? malloc(sizeof(float) * kb * 3) : NULL,
                .global = want->global ? malloc(sizeof(float) * kb * 256) : NULL,
                .iou_feat = want->iou_feat ? malloc(sizeof(float) * kb * 256) : NULL,
                .s1_logit = want->s1_logit ? malloc(sizeof(float) * 3 * kb * n) : NULL,
                .s2_logit = want->s2_logit ? malloc(sizeof(float) * 3 * kb * n) : NULL,
                .mask_bits = want->mask_bits ? malloc(3 * kb * nb) : NULL,
        };
        if ((want->iou && !b->o.iou) || (want->global && !b->o.global) ||
            (want->iou_feat && !b->o.iou_feat) || (want->s1_logit && !b->o.s1_logit) ||
            (want->s2_logit && !b->o.s2_logit) || (want->mask_bits && !b->o.mask_bits))
                return -ENOMEM;
        return 0;
}

static void batch_out_done(batch_out *b) {
        free(b->o.iou);
        free(b->o.global);
        free(b->o.iou_feat);
        free(b->o.s1_logit);
        free(b->o.s2_logit);
        free(b->o.mask_bits);
}

static void copy_heads(void *dst, const void *src, size_t row, int kb, int k, int j0) {
        for (int h = 0; h < 3; h++)
                memcpy((char *) dst + ((size_t) h * k + j0) * row,
                       (const char *) src + (size_t) h * kb * row, row * kb);
}

static void batch_out_copy(const batch_out *b, p3_heads_output *out, int k, int j0) {
        int kb = b->kb;
        int64_t n = b->n;
        if (out->iou)
                memcpy(out->iou + 3 * j0, b->o.iou, sizeof(float) * 3 * kb);
        if (out->global)
                memcpy(out->global + 256 * j0, b->o.global, sizeof(float) * 256 * kb);
        if (out->iou_feat)
                memcpy(out->iou_feat + 256 * j0, b->o.iou_feat, sizeof(float) * 256 * kb);
        if (out->s1_logit)
                copy_heads(out->s1_logit, b->o.s1_logit, sizeof(float) * n, kb, k, j0);
        if (out->s2_logit)
                copy_heads(out->s2_logit, b->o.s2_logit, sizeof(float) * n, kb, k, j0);
        if (out->mask_bits)
                copy_heads(out->mask_bits, b->o.mask_bits, (n + 7) / 8, kb, k, j0);
}

/* -ERANGE when an IoU of the batch is NaN or ±Inf (the backends check the mask logits). */
static int iou_finite(const float *iou, int kb) {
        for (int i = 0; iou && i < 3 * kb; i++)
                if (!isfinite(iou[i]))
                        return -ERANGE;
        return 0;
}

int p3_model_heads_batch(const p3_model *m, int batch, int k, int64_t n) {
        if (batch > 0)
                return batch;
        if (strcmp(m->be->ops->name, "cuda") != 0)
                return MAX(MIN(P3_CPU_PROMPT_BATCH, k), 1);
        int64_t b = P3_GPU_BATCH_PAIRS / MAX(n, (int64_t) 1);
        return (int) MAX(MIN(b, (int64_t) MIN(k, P3_PROMPT_BATCH_MAX)), (int64_t) 1);
}

int p3_model_heads(p3_model *m, const p3_features *f, const float *prompts, int k, int batch,
                   const p3_run_opts *o, p3_heads_output *out, p3_err *err) {
        if (k <= 0 || batch < 0)
                return p3_errf(err, -EINVAL, "the prompt count must be positive and the batch "
                               "not negative");
        batch = p3_model_heads_batch(m, batch, k, f->n);
        for (int j0 = 0; j0 < k;) {
                if (o && o->abort && o->abort(o->userdata))
                        return p3_errf(err, -ECANCELED, "cancelled");
                int kb = MIN(batch, k - j0);
                batch_out b = {};
                int r = batch_out_init(&b, out, kb, f->n);
                p3_heads_input in = {
                        .feat = &f->feat,
                        .inverse = f->inverse,
                        .points = &f->points,
                        .n = f->n,
                        .prompts = prompts + 3 * j0,
                        .k = kb,
                };
                if (r >= 0)
                        r = m->be->ops->heads(m->be, &m->heads, &in, &b.o);
                if (r >= 0)
                        r = iou_finite(b.o.iou, kb);
                if (r >= 0)
                        batch_out_copy(&b, out, k, j0);
                batch_out_done(&b);
                /* Out of device memory (GpuMemoryMax, or other work on the GPU): the same
                 * prompts again in halves; a batch's results do not depend on its size. */
                if (r == -ENOMEM && kb > 1) {
                        batch = kb / 2;
                        continue;
                }
                /* reduced precision overflowing, as the features' stages check it */
                if (r == -ERANGE)
                        return p3_errf(err, r, "the mask heads produced values that are not "
                                       "finite (NaN or Inf) at %s precision",
                                       p3_precision_to_string(m->be->precision));
                if (r < 0)
                        return p3_errf(err, r, "mask prediction failed: %s", p3_strerror(r));
                j0 += kb;
                if (o && o->progress)
                        o->progress(o->userdata, "masks", (double) j0 / k);
        }
        return 0;
}
