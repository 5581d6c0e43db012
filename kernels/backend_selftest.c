/* SPDX-License-Identifier: MIT */
/* Every op of a backend against the CPU backend at FP32, on small random inputs: what a GPU
 * backend must pass after each load before it serves a job (a wrong kernel, a driver problem or
 * an unsupported instruction shows here, on a few hundred points, and the service falls back
 * to the CPU with the op named). The inputs are the same on both sides; the tolerance is
 * relative to the largest reference value and depends on the backend's precision. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

typedef struct st_ctx {
        p3_backend *dev, *cpu;
        uint64_t rng;
        double tol;
        p3_selftest_report_fn report;
        void *userdata;
        const char *broken; /* test hook: the op whose result is perturbed */
        char *why;
        size_t why_len;
} st_ctx;

/* One tensor on both backends. */
typedef struct pair {
        p3_tensor d, c;
        bool weight;
} pair;

static float rnd(st_ctx *s, float lo, float hi) {
        s->rng = s->rng * 6364136223846793005ull + 1442695040888963407ull;
        return lo + (hi - lo) * (float) ((s->rng >> 40) * 0x1p-24);
}

static float *rnd_host(st_ctx *s, int64_t n, float lo, float hi) {
        float *h = malloc(sizeof(float) * (size_t) (n ? n : 1));
        for (int64_t i = 0; h && i < n; i++)
                h[i] = rnd(s, lo, hi);
        return h;
}

static int act_on(p3_backend *be, const float *host, int64_t rows, int64_t cols, p3_tensor *t) {
        int r = p3_tensor_alloc(be, rows, cols, t);
        if (r >= 0 && rows * cols > 0)
                r = be->ops->upload(be, t->data, host, sizeof(float) * (size_t) (rows * cols));
        return r;
}

/* Random values in [lo, hi) as an activation (weight = false) or a weight on both sides. */
static int pair_new(st_ctx *s, int64_t rows, int64_t cols, float lo, float hi, bool weight,
                    pair *p) {
        *p = (pair) { .weight = weight };
        float *h = rnd_host(s, rows * cols, lo, hi);
        if (!h)
                return -ENOMEM;
        int r;
        if (weight) {
                r = s->dev->ops->weight_upload(s->dev, h, rows, cols, &p->d);
                if (r >= 0)
                        r = s->cpu->ops->weight_upload(s->cpu, h, rows, cols, &p->c);
                /* the CPU backend at FP32 references the host copy: keep it with the pair */
                if (r >= 0 && !s->cpu->weights_copied)
                        return 0;
        } else {
                r = act_on(s->dev, h, rows, cols, &p->d);
                if (r >= 0)
                        r = act_on(s->cpu, h, rows, cols, &p->c);
        }
        free(h);
        return r;
}

static void pair_free(st_ctx *s, pair *p) {
        if (p->weight) {
                void *host = s->cpu->weights_copied ? NULL : p->c.data;
                if (p->d.data)
                        s->dev->ops->weight_free(s->dev, &p->d);
                if (p->c.data)
                        s->cpu->ops->weight_free(s->cpu, &p->c);
                free(host);
        } else {
                p3_tensor_free(s->dev, &p->d);
                p3_tensor_free(s->cpu, &p->c);
        }
}

/* An int32 buffer on both backends. */
static int ibuf_pair(st_ctx *s, const int32_t *h, int64_t n, int32_t **d, int32_t **c) {
        *d = *c = NULL;
        int r = p3_ibuf_upload(s->dev, h, n, d);
        return r < 0 ? r : p3_ibuf_upload(s->cpu, h, n, c);
}

static void ibuf_pair_free(st_ctx *s, int64_t n, int32_t *d, int32_t *c) {
        if (d)
                p3_ibuf_free(s->dev, d, n);
        if (c)
                p3_ibuf_free(s->cpu, c, n);
}

static int fail(st_ctx *s, int err, const char *op, const char *fmt, double a, double b) {
        char detail[160];
        snprintf(detail, sizeof(detail), fmt, a, b);
        snprintf(s->why, s->why_len, "%s: %s", op, detail);
        return err;
}

static int fail_text(st_ctx *s, int err, const char *op, const char *what) {
        snprintf(s->why, s->why_len, "%s: %s", op, what);
        return err;
}

/* Host values of the device (d) and reference (c) results: the largest difference relative
 * to the largest reference value, against the tolerance. */
static int compare_host(st_ctx *s, const char *op, float *d, const float *c, int64_t n) {
        if (s->broken && strcmp(s->broken, op) == 0 && n > 0)
                d[0] += 1.0f + fabsf(d[0]); /* P3_TEST_SELFTEST_BREAK */
        double ref = 0, diff = 0;
        for (int64_t i = 0; i < n; i++) {
                if (!isfinite(d[i]))
                        return fail(s, -EPROTO, op, "a value is not finite (%g at %.0f)", d[i],
                                    (double) i);
                ref = fmax(ref, fabs(c[i]));
                diff = fmax(diff, fabs((double) d[i] - c[i]));
        }
        double rel = diff / fmax(ref, 1e-30);
        if (s->report)
                s->report(op, rel, s->tol, s->userdata);
        if (!(rel <= s->tol))
                return fail(s, -EPROTO, op, "max error %.3g x max|ref| (tolerance %.3g)", rel,
                            s->tol);
        return 0;
}

static int compare(st_ctx *s, const char *op, const pair *t) {
        int64_t n = t->c.rows * t->c.cols;
        float *d = malloc(sizeof(float) * (size_t) (n ? n : 1));
        float *c = malloc(sizeof(float) * (size_t) (n ? n : 1));
        int r = d && c ? 0 : -ENOMEM;
        if (r >= 0)
                r = s->dev->ops->to_host_f32(s->dev, &t->d, d);
        if (r >= 0)
                r = s->cpu->ops->to_host_f32(s->cpu, &t->c, c);
        if (r < 0)
                snprintf(s->why, s->why_len, "%s: reading the result failed: %s", op,
                         strerror(-r));
        else
                r = compare_host(s, op, d, c, n);
        free(d), free(c);
        return r;
}

/* Runs op on both sides; an error from either ends the test naming the op. */
static int both(st_ctx *s, const char *op, int rd, int rc) {
        if (rd < 0)
                snprintf(s->why, s->why_len, "%s failed on the device: %s", op, strerror(-rd));
        else if (rc < 0)
                snprintf(s->why, s->why_len, "%s failed on the CPU: %s", op, strerror(-rc));
        return rd < 0 ? rd : rc;
}

#define BOTH(s, op, call_d, call_c) both(s, op, (call_d), (call_c))

static int test_linear(st_ctx *s, const char *op, unsigned flags) {
        pair x = { 0 }, w = { 0 }, b = { 0 }, y = { 0 };
        int r = pair_new(s, 300, 64, -1, 1, false, &x);
        if (r >= 0)
                r = pair_new(s, 96, 64, -0.2f, 0.2f, true, &w);
        if (r >= 0)
                r = pair_new(s, 1, 96, -0.5f, 0.5f, true, &b);
        if (r >= 0)
                r = pair_new(s, 300, 96, -1, 1, false, &y);
        if (r >= 0)
                r = BOTH(s, op, s->dev->ops->linear(s->dev, &x.d, &w.d, &b.d, &y.d, flags),
                         s->cpu->ops->linear(s->cpu, &x.c, &w.c, &b.c, &y.c, flags));
        if (r >= 0)
                r = compare(s, op, &y);
        pair_free(s, &x), pair_free(s, &w), pair_free(s, &b), pair_free(s, &y);
        return r;
}

static int test_norms(st_ctx *s) {
        pair x = { 0 }, g = { 0 }, b = { 0 }, y = { 0 };
        int r = pair_new(s, 257, 96, -3, 3, false, &x);
        if (r >= 0)
                r = pair_new(s, 1, 96, 0.5f, 1.5f, true, &g);
        if (r >= 0)
                r = pair_new(s, 1, 96, -0.5f, 0.5f, true, &b);
        if (r >= 0)
                r = pair_new(s, 257, 96, -1, 1, false, &y);
        if (r >= 0)
                r = BOTH(s, "layernorm",
                         s->dev->ops->layernorm(s->dev, &x.d, &g.d, &b.d, &y.d, P3_GELU),
                         s->cpu->ops->layernorm(s->cpu, &x.c, &g.c, &b.c, &y.c, P3_GELU));
        if (r >= 0)
                r = compare(s, "layernorm", &y);
        if (r >= 0)
                r = BOTH(s, "gelu", s->dev->ops->gelu(s->dev, &x.d), s->cpu->ops->gelu(s->cpu, &x.c));
        if (r >= 0)
                r = compare(s, "gelu", &x);
        if (r >= 0)
                r = BOTH(s, "add", s->dev->ops->add(s->dev, &x.d, &y.d),
                         s->cpu->ops->add(s->cpu, &x.c, &y.c));
        if (r >= 0)
                r = compare(s, "add", &y);
        pair_free(s, &x), pair_free(s, &g), pair_free(s, &b), pair_free(s, &y);
        return r;
}

static int test_subm_conv(st_ctx *s) {
        enum { N = 200, CIN = 16, COUT = 32 };
        int32_t *nbr = malloc(sizeof(int32_t) * N * 27), *nd = NULL, *nc = NULL;
        if (!nbr)
                return -ENOMEM;
        for (int i = 0; i < N * 27; i++)
                nbr[i] = rnd(s, 0, 1) < 0.6f ? -1 : (int32_t) rnd(s, 0, N - 0.5f);
        for (int i = 0; i < N; i++)
                nbr[i * 27 + 13] = i; /* the centre is always there */
        pair x = { 0 }, w = { 0 }, b = { 0 }, y = { 0 };
        int r = pair_new(s, N, CIN, -1, 1, false, &x);
        if (r >= 0)
                r = pair_new(s, COUT, 27 * CIN, -0.2f, 0.2f, true, &w);
        if (r >= 0)
                r = pair_new(s, 1, COUT, -0.5f, 0.5f, true, &b);
        if (r >= 0)
                r = pair_new(s, N, COUT, -1, 1, false, &y);
        if (r >= 0)
                r = ibuf_pair(s, nbr, N * 27, &nd, &nc);
        if (r >= 0)
                r = BOTH(s, "subm_conv", s->dev->ops->subm_conv(s->dev, &x.d, nd, &w.d, &b.d, &y.d),
                         s->cpu->ops->subm_conv(s->cpu, &x.c, nc, &w.c, &b.c, &y.c));
        if (r >= 0)
                r = compare(s, "subm_conv", &y);
        ibuf_pair_free(s, N * 27, nd, nc);
        pair_free(s, &x), pair_free(s, &w), pair_free(s, &b), pair_free(s, &y);
        free(nbr);
        return r;
}

/* Windows of `window` slots over n points: a permutation, then padding that repeats points. */
static int attention_case(st_ctx *s, const char *op, int n, int heads, int window, int npad) {
        int32_t *slot = malloc(sizeof(int32_t) * (size_t) npad), *sd = NULL, *sc = NULL;
        if (!slot)
                return -ENOMEM;
        for (int i = 0; i < npad; i++)
                slot[i] = i < n ? (int32_t) ((i * 7 + 3) % n) : slot[i - window];
        pair qkv = { 0 }, out = { 0 };
        int r = pair_new(s, n, 3 * 16 * heads, -2, 2, false, &qkv);
        if (r >= 0)
                r = pair_new(s, n, 16 * heads, 0, 0, false, &out);
        if (r >= 0)
                r = ibuf_pair(s, slot, npad, &sd, &sc);
        if (r >= 0)
                r = BOTH(s, op,
                         s->dev->ops->attention(s->dev, &qkv.d, sd, npad, window, heads, &out.d),
                         s->cpu->ops->attention(s->cpu, &qkv.c, sc, npad, window, heads, &out.c));
        if (r >= 0)
                r = compare(s, op, &out);
        ibuf_pair_free(s, npad, sd, sc);
        pair_free(s, &qkv), pair_free(s, &out);
        free(slot);
        return r;
}

/* Windows of 128, then of 100 with 3 heads: a device kernel's last key tile and
 * query tile of a window are then partial, not whole as at 128. */
static int test_attention(st_ctx *s) {
        int r = attention_case(s, "attention", 300, 2, 128, 384);
        if (r >= 0)
                r = attention_case(s, "attention (partial tiles)", 250, 3, 100, 300);
        return r;
}

static int test_gathers(st_ctx *s) {
        enum { M = 150, N = 400, C = 24 };
        int32_t idx[N], cluster[N], *id = NULL, *ic = NULL, *cd = NULL, *cc = NULL;
        for (int i = 0; i < N; i++) {
                idx[i] = (int32_t) rnd(s, 0, M - 0.5f);
                cluster[i] = i < M ? i : (int32_t) rnd(s, 0, M - 0.5f); /* every cluster used */
        }
        pair x = { 0 }, y = { 0 }, big = { 0 }, pooled = { 0 };
        int r = pair_new(s, M, C, -1, 1, false, &x);
        if (r >= 0)
                r = pair_new(s, N, 2 * C, -1, 1, false, &y);
        if (r >= 0)
                r = pair_new(s, N, C, -1, 1, false, &big);
        if (r >= 0)
                r = pair_new(s, M, C, 0, 0, false, &pooled);
        if (r >= 0)
                r = ibuf_pair(s, idx, N, &id, &ic);
        if (r >= 0)
                r = ibuf_pair(s, cluster, N, &cd, &cc);
        if (r >= 0)
                r = BOTH(s, "gather_rows", s->dev->ops->gather_rows(s->dev, &x.d, id, &y.d, C),
                         s->cpu->ops->gather_rows(s->cpu, &x.c, ic, &y.c, C));
        if (r >= 0)
                r = compare(s, "gather_rows", &y);
        if (r >= 0)
                r = BOTH(s, "gather_add", s->dev->ops->gather_add(s->dev, &x.d, id, &big.d),
                         s->cpu->ops->gather_add(s->cpu, &x.c, ic, &big.c));
        if (r >= 0)
                r = compare(s, "gather_add", &big);
        if (r >= 0)
                r = BOTH(s, "segment_max",
                         s->dev->ops->segment_max(s->dev, &big.d, cd, &pooled.d),
                         s->cpu->ops->segment_max(s->cpu, &big.c, cc, &pooled.c));
        if (r >= 0)
                r = compare(s, "segment_max", &pooled);
        ibuf_pair_free(s, N, id, ic), ibuf_pair_free(s, N, cd, cc);
        pair_free(s, &x), pair_free(s, &y), pair_free(s, &big), pair_free(s, &pooled);
        return r;
}

/* -- the heads: full-width weights (their widths are fixed), few points and prompts ----------- */

typedef struct heads_pair {
        p3_heads_params d, c;
} heads_pair;

static int mlp_pair(st_ctx *s, p3_mlp3 *d, p3_mlp3 *c, int64_t in, int64_t hid, int64_t out) {
        const int64_t widths[4] = { in, hid, hid, out };
        int r = 0;
        for (int l = 0; l < 3 && r >= 0; l++) {
                float scale = 1.0f / sqrtf((float) widths[l]);
                pair w = { 0 }, b = { 0 };
                r = pair_new(s, widths[l + 1], widths[l], -2 * scale, 2 * scale, true, &w);
                if (r >= 0)
                        r = pair_new(s, 1, widths[l + 1], -0.1f, 0.1f, true, &b);
                d->w[l] = w.d, c->w[l] = w.c, d->b[l] = b.d, c->b[l] = b.c;
        }
        return r;
}

static void mlp_pair_free(st_ctx *s, p3_mlp3 *d, p3_mlp3 *c) {
        for (int l = 0; l < 3; l++) {
                pair w = { d->w[l], c->w[l], true }, b = { d->b[l], c->b[l], true };
                pair_free(s, &w), pair_free(s, &b);
        }
}

static int heads_params(st_ctx *s, heads_pair *hp) {
        memset(hp, 0, sizeof(*hp));
        int r = 0;
        for (int h = 0; h < 3 && r >= 0; h++)
                r = mlp_pair(s, &hp->d.seg[h], &hp->c.seg[h], 518, 512, 1);
        if (r >= 0)
                r = mlp_pair(s, &hp->d.s2g, &hp->c.s2g, 521, 256, 256);
        for (int h = 0; h < 3 && r >= 0; h++)
                r = mlp_pair(s, &hp->d.s2[h], &hp->c.s2[h], 777, 256, 1);
        if (r >= 0)
                r = mlp_pair(s, &hp->d.iou, &hp->c.iou, 777, 256, 256);
        if (r >= 0)
                r = mlp_pair(s, &hp->d.iou_out, &hp->c.iou_out, 256, 256, 3);
        return r;
}

static void heads_params_free(st_ctx *s, heads_pair *hp) {
        p3_mlp3 *d = (p3_mlp3 *) &hp->d, *c = (p3_mlp3 *) &hp->c;
        for (size_t i = 0; i < sizeof(p3_heads_params) / sizeof(p3_mlp3); i++)
                mlp_pair_free(s, &d[i], &c[i]);
}

enum { HN = 203, HM = 150, HK = 7, HNB = (HN + 7) / 8 };

/* Every output of the heads. 203 points: with scripts/gpu-check.sh's small tiles
 * ($P3_CUDA_HEADS_TILE) the last tile and its last mask byte are partial. */
typedef struct heads_host {
        float iou[3 * HK], global[HK * 256], iou_feat[HK * 256], s1[3 * HK * HN],
                s2[3 * HK * HN];
        uint8_t bits[3 * HK * HNB];
} heads_host;

static p3_heads_output heads_outputs(heads_host *h) {
        return (p3_heads_output) { .global = h->global, .iou_feat = h->iou_feat, .iou = h->iou,
                                   .s1_logit = h->s1, .s2_logit = h->s2,
                                   .mask_bits = h->bits };
}

/* A mask bit may differ only where the reference logit is within the tolerance of 0: the
 * rounding of a half-precision device may tip it there, nothing else may. The error is the
 * largest |logit| / max|logit| where a bit differs. */
static int compare_bits(st_ctx *s, heads_host *d, const heads_host *c) {
        double ref = 0, worst = 0;
        int far = 0;
        for (int i = 0; i < 3 * HK * HN; i++)
                if (fabs(c->s2[i]) > ref)
                        ref = fabs(c->s2[i]), far = i;
        if (s->broken && strcmp(s->broken, "heads (mask bits)") == 0) /* the farthest from 0 */
                d->bits[far / HN * HNB + far % HN / 8] ^= (uint8_t) (1 << (far % HN % 8));
        int differ = 0;
        for (int row = 0; row < 3 * HK; row++)
                for (int i = 0; i < HN; i++) {
                        int at = row * HNB + i / 8, bit = 1 << (i % 8);
                        if ((d->bits[at] & bit) != (c->bits[at] & bit)) {
                                differ++;
                                worst = fmax(worst, fabs(c->s2[row * HN + i]));
                        }
                }
        double rel = worst / fmax(ref, 1e-30);
        if (s->report)
                s->report("heads (mask bits)", rel, s->tol, s->userdata);
        if (!(rel <= s->tol))
                return fail(s, -EPROTO, "heads (mask bits)",
                            differ == 1 ? "%.0f bit differs, where the logit is %.3g x max|logit|"
                                        : "%.0f bits differ, one where the logit is %.3g x "
                                          "max|logit|",
                            differ, rel);
        return 0;
}

static int heads_compare(st_ctx *s, heads_host *d, const heads_host *c) {
        int r = compare_host(s, "heads (IoU)", d->iou, c->iou, 3 * HK);
        if (r >= 0)
                r = compare_host(s, "heads (global features)", d->global, c->global, HK * 256);
        if (r >= 0)
                r = compare_host(s, "heads (IoU features)", d->iou_feat, c->iou_feat, HK * 256);
        if (r >= 0)
                r = compare_host(s, "heads (stage-1 logits)", d->s1, c->s1, 3 * HK * HN);
        if (r >= 0)
                r = compare_host(s, "heads (mask logits)", d->s2, c->s2, 3 * HK * HN);
        if (r >= 0)
                r = compare_bits(s, d, c);
        return r;
}

/* A NaN in one point's features must fail the heads with -ERANGE (its mask logits are NaN),
 * not pass for clear mask bits. The device's features are changed in place. */
static int heads_nan(st_ctx *s, p3_tensor *feat, const p3_heads_input *in,
                     const p3_heads_params *hp, p3_heads_output *out) {
        static const char op[] = "heads (NaN check)";
        size_t count = (size_t) (feat->rows * feat->cols);
        float *h = malloc(sizeof(float) * count);
        int r = h ? s->dev->ops->to_host_f32(s->dev, feat, h) : -ENOMEM;
        if (r >= 0 && !(s->broken && strcmp(s->broken, op) == 0)) /* P3_TEST_SELFTEST_BREAK */
                h[feat->cols * (feat->rows / 2)] = NAN;
        if (r >= 0)
                r = s->dev->ops->upload(s->dev, feat->data, h, sizeof(float) * count);
        free(h);
        if (r >= 0)
                r = s->dev->ops->heads(s->dev, hp, in, out);
        if (r != -ERANGE && r < 0)
                return both(s, op, r, 0);
        if (s->report)
                s->report(op, r == -ERANGE ? 0 : 1, 0, s->userdata); /* exact */
        return r == -ERANGE ? 0 : fail_text(s, -EPROTO, op, "a NaN in the features went unnoticed");
}

static int test_heads(st_ctx *s) {
        int32_t inv[HN], *vd = NULL, *vc = NULL;
        for (int i = 0; i < HN; i++)
                inv[i] = i < HM ? i : (int32_t) rnd(s, 0, HM - 0.5f);
        float prompts[3 * HK];
        for (int i = 0; i < 3 * HK; i++)
                prompts[i] = rnd(s, -0.5f, 0.5f);
        heads_pair hp;
        heads_host *hd = calloc(1, sizeof(*hd)), *hc = calloc(1, sizeof(*hc));
        pair feat = { 0 }, pts = { 0 };
        int r = hd && hc ? heads_params(s, &hp) : -ENOMEM;
        if (r >= 0)
                r = pair_new(s, HM, 512, -1, 1, false, &feat);
        if (r >= 0)
                r = pair_new(s, HN, 3, -0.5f, 0.5f, false, &pts);
        if (r >= 0)
                r = ibuf_pair(s, inv, HN, &vd, &vc);
        if (r >= 0) {
                p3_heads_input ind = { &feat.d, vd, &pts.d, HN, prompts, HK };
                p3_heads_input inc = { &feat.c, vc, &pts.c, HN, prompts, HK };
                p3_heads_output od = heads_outputs(hd), oc = heads_outputs(hc);
                r = BOTH(s, "heads", s->dev->ops->heads(s->dev, &hp.d, &ind, &od),
                         s->cpu->ops->heads(s->cpu, &hp.c, &inc, &oc));
        }
        if (r >= 0)
                r = heads_compare(s, hd, hc);
        if (r >= 0) {
                p3_heads_input ind = { &feat.d, vd, &pts.d, HN, prompts, HK };
                p3_heads_output od = heads_outputs(hd);
                r = heads_nan(s, &feat.d, &ind, &hp.d, &od);
        }
        ibuf_pair_free(s, HN, vd, vc);
        pair_free(s, &feat), pair_free(s, &pts);
        if (hd && hc)
                heads_params_free(s, &hp);
        free(hd), free(hc);
        return r;
}

/* The NaN/Inf check the engine runs after each stage: quiet on finite values, and it finds a
 * NaN in the last element (a kernel's tail) and an Inf inside. */
static int test_finite(st_ctx *s) {
        static const char op[] = "finite check";
        enum { R = 301, C = 37 };
        static const struct {
                int64_t at; /* where the value goes, -1 for none */
                float v;
                const char *wrong;
        } cases[] = { { -1, 0, "finite values reported as not finite" },
                      { R * C - 1, NAN, "a NaN in the last element went unnoticed" },
                      { R * C / 2, INFINITY, "an Inf went unnoticed" } };
        if (!s->dev->ops->check_finite)
                return 0;
        float *h = rnd_host(s, R * C, -1e4f, 1e4f);
        p3_tensor t = {};
        int r = h ? act_on(s->dev, h, R, C, &t) : -ENOMEM;
        const char *wrong = NULL;
        for (size_t c = 0; r >= 0 && !wrong && c < sizeof(cases) / sizeof(cases[0]); c++) {
                if (cases[c].at >= 0) {
                        h[cases[c].at] = cases[c].v;
                        r = s->dev->ops->upload(s->dev, t.data, h, sizeof(float) * R * C);
                        h[cases[c].at] = 0;
                }
                int got = r >= 0 ? s->dev->ops->check_finite(s->dev, &t) : r;
                if (c == 1 && s->broken && strcmp(s->broken, op) == 0)
                        got = 0; /* P3_TEST_SELFTEST_BREAK */
                if (got < 0 && got != -ERANGE)
                        r = both(s, op, got, 0);
                else if ((got == -ERANGE) != (cases[c].at >= 0))
                        wrong = cases[c].wrong;
        }
        if (r >= 0 && s->report)
                s->report(op, wrong ? 1 : 0, 0, s->userdata); /* exact: right or not */
        if (r >= 0 && wrong)
                r = fail_text(s, -EPROTO, op, wrong);
        p3_tensor_free(s->dev, &t);
        free(h);
        return r;
}

static double tolerance(p3_precision p) {
        /* FP32: only the summation order differs. Half precision: inputs rounded to 8 (BF16)
         * or 11 (FP16) bits, sums of a few hundred terms in FP32. */
        return p == P3_PRECISION_FP32 ? 1e-4 : p == P3_PRECISION_BF16 ? 3e-2 : 1e-2;
}

static int test_linear_plain(st_ctx *s) {
        return test_linear(s, "linear", 0);
}

static int test_linear_fused(st_ctx *s) {
        return test_linear(s, "linear+gelu+accumulate", P3_GELU | P3_ACCUMULATE);
}

static int test_sync(st_ctx *s) {
        return s->dev->ops->sync ? both(s, "sync", s->dev->ops->sync(s->dev), 0) : 0;
}

/* Adds this failure's why (in s->why) to the earlier ones, kept in all: "a; b". */
static void keep_failure(st_ctx *s, int r, char *all, size_t all_len) {
        if (!s->why[0])
                snprintf(s->why, s->why_len, "%s", strerror(-r));
        size_t used = strlen(all);
        if (used + 3 < all_len)
                snprintf(all + used, all_len - used, "%s%s", used ? "; " : "", s->why);
}

int p3_backend_selftest(p3_backend *be, bool keep_going, p3_selftest_report_fn report,
                        void *userdata, char *why, size_t why_len) {
        p3_backend *cpu = NULL;
        p3_backend_options opt = { .threads = 0, .precision = P3_PRECISION_FP32 };
        int r = p3_backend_cpu_new(&opt, &cpu);
        if (r < 0) {
                snprintf(why, why_len, "the CPU reference backend failed: %s", strerror(-r));
                return r;
        }
        st_ctx s = { .dev = be, .cpu = cpu, .rng = 0x9e3779b97f4a7c15ull,
                     .tol = tolerance(be->precision), .report = report, .userdata = userdata,
                     .broken = getenv("P3_TEST_SELFTEST_BREAK"), .why = why,
                     .why_len = why_len };
        static int (*const tests[])(st_ctx *) = { test_linear_plain, test_linear_fused,
                                                  test_norms,        test_subm_conv,
                                                  test_attention,    test_gathers,
                                                  test_heads,        test_finite,
                                                  test_sync };
        char failed[1024] = "";
        int first = 0;
        for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]) && (keep_going || !first); i++) {
                why[0] = 0;
                r = tests[i](&s);
                if (r < 0) {
                        keep_failure(&s, r, failed, sizeof(failed));
                        first = first ? first : r;
                }
        }
        snprintf(why, why_len, "%s", failed);
        p3_backend_free(cpu);
        return first;
}
