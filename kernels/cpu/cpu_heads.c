/* SPDX-License-Identifier: MIT */
/* The P3-SAM heads on the CPU (spec §4), fused: nothing of size prompts × points × channels
 * exists at once. Every first Linear over a concatenation is split (§4.3):
 *   W·[g | f | p | q | m] = W_g·g (per prompt) + W_fp·[f|p] (per point, one sgemm per tile)
 *                         + W_q·q (per prompt) + W_m·m (rank 3, per pair)
 * and the points are walked in tiles of T points × k prompts (≈1024 rows) twice:
 *   pass 1: stage-1 heads → m1 (kept, 3 floats per pair), seg_s2_mlp_g → running max = g_k;
 *   pass 2: stage-2 heads → s2 (mask bits), iou_mlp(s2) → running max → iou_mlp_out.
 * Maxima are exact in any order, so threads may take tiles in any order. */
#include <math.h>
#include <string.h>

#include "cpu_math.h"
#include "cpu_ops.h"
#include "macro.h"

#define FEAT 512
#define FP (FEAT + 3)   /* [feat | point] columns */
#define G 256           /* width of the stage-2 and IoU heads */
#define TARGET_ROWS 1024

/* Column offsets inside the first-layer weights (see backend.h). */
#define SEG_Q FP              /* seg_mlp_h: [f|p|q] */
#define S2G_Q FP              /* seg_s2_mlp_g: [f|p|q|m1] */
#define S2G_M (FP + 3)
#define S2_FP G               /* seg_s2_mlp_h, iou_mlp: [g|f|p|q|m] */
#define S2_Q (G + FP)
#define S2_M (G + FP + 3)

typedef struct heads_ctx {
        const p3_heads_params *hp;
        const p3_heads_input *in;
        p3_heads_output *out;
        int64_t tile;      /* points per tile, a multiple of 8 */
        float *m1;         /* [k][n][3] stage-1 logits */
        float *bq_seg[3];  /* [k][512] W_q·q per stage-1 head */
        float *bq_g;       /* [k][256] */
        float *c_s2[3];    /* [k][256] W_g·g + W_q·q per stage-2 head */
        float *c_iou;      /* [k][256] */
        float wm_g[3][G], wm_s2[3][3][G], ws_iou[3][G]; /* rank-3 columns, transposed */
        float *gmax, *imax; /* [k][256] */
} heads_ctx;

typedef struct tile_buf {
        float *x;        /* [T][515] */
        float *a;        /* [T][512] per-point first-layer part */
        float *h1, *h2;  /* [T·k][512] */
        float *s;        /* [T·k][3] logits of the tile (stage 1, then stage 2) */
        float *m;        /* [T·k][3] the tile's stage-1 logits in pass 2 */
        float *vmax;     /* [k][256] this thread's running max */
} tile_buf;

static float sigmoidf(float x) {
        return 1.0f / (1.0f + expf(-x));
}

/* out[j][c] = Σ_i W[c][col + i]·v[j][i] for the 3-vectors v (prompts). */
static void prompt_term(const p3_tensor *w, int64_t col, const float *v, int k, float *out) {
        for (int j = 0; j < k; j++)
                for (int64_t c = 0; c < w->rows; c++)
                        out[j * w->rows + c] = cpu_weight_at(w, c, col) * v[3 * j] +
                                               cpu_weight_at(w, c, col + 1) * v[3 * j + 1] +
                                               cpu_weight_at(w, c, col + 2) * v[3 * j + 2];
}

static void transpose3(const p3_tensor *w, int64_t col, float dst[3][G]) {
        for (int64_t c = 0; c < w->rows; c++)
                for (int i = 0; i < 3; i++)
                        dst[i][c] = cpu_weight_at(w, c, col + i);
}

/* x[t] = [feat[inverse[p]] | points[p]] for the tile's points. */
static void load_tile(const heads_ctx *hc, int64_t p0, int64_t np, float *x) {
        const p3_heads_input *in = hc->in;
        for (int64_t t = 0; t < np; t++) {
                memcpy(x + t * FP, cpu_row(in->feat, in->inverse[p0 + t]), sizeof(float) * FEAT);
                memcpy(x + t * FP + FEAT, cpu_row(in->points, p0 + t), sizeof(float) * 3);
        }
}

/* a[t] = W[:, col:col+515]·x[t] + b (the per-point part of a first layer). */
static int point_part(const p3_tensor *w, int64_t col, const p3_tensor *b, const float *x,
                      int64_t np, float *a) {
        int64_t width = w->rows;
        int r = cpu_gemm_w(np, FP, x, FP, w, col, a, width, false);
        if (r < 0)
                return r;
        for (int64_t t = 0; t < np; t++)
                for (int64_t c = 0; c < width; c++)
                        a[t * width + c] += ((const float *) b->data)[c];
        return 0;
}

/* h1[t·k+j] = GELU(a[t] + pj[j] + Σ_i wm[i]·m[t·k+j][i]) (m, wm may be NULL). */
P3_VECTOR_CLONES static void
first_layer(const float *a, const float *pj, const float (*wm)[G], const float *m, int64_t mstride,
            int64_t np, int k, int64_t width, float *h1) {
        for (int64_t t = 0; t < np; t++)
                for (int j = 0; j < k; j++) {
                        float *row = h1 + (t * k + j) * width;
                        const float *at = a + t * width, *pr = pj + j * width;
                        if (m) {
                                const float *mv = m + (t * k + j) * mstride;
                                float m0 = mv[0], m1 = mv[1], m2 = mv[2];
                                for (int64_t c = 0; c < width; c++)
                                        row[c] = gelu(at[c] + pr[c] + wm[0][c] * m0 +
                                                      wm[1][c] * m1 + wm[2][c] * m2);
                        } else {
                                for (int64_t c = 0; c < width; c++)
                                        row[c] = gelu(at[c] + pr[c]);
                        }
                }
}

/* out[i·ostride] = h[i]·w + b: a last layer of width 1. */
P3_VECTOR_CLONES static void last_dot(const float *h, int64_t rows, int64_t width, const float *w,
                                      float b, float *out, int64_t ostride) {
        for (int64_t i = 0; i < rows; i++)
                out[i * ostride] = dot_lanes(h + i * width, w, width) + b;
}

/* h2 = GELU(h1·W2ᵀ + b2); then either logits (last layer width 1) into out[row·ostride] or
 * the full last layer into h1 (reused as output buffer). */
static int hidden_and_last(const p3_mlp3 *mlp, int64_t rows, float *h1, float *h2, float *out,
                           int64_t ostride) {
        int64_t width = mlp->w[1].rows;
        int r = cpu_gemm_w(rows, width, h1, width, &mlp->w[1], 0, h2, width, false);
        if (r < 0)
                return r;
        const float *b2 = mlp->b[1].data;
        for (int64_t i = 0; i < rows; i++) {
                float *row = h2 + i * width;
                for (int64_t c = 0; c < width; c++)
                        row[c] += b2[c];
                cpu_gelu_inplace(row, width);
        }
        int64_t wout = mlp->w[2].rows;
        const float *b3 = mlp->b[2].data;
        if (wout == 1) {
                last_dot(h2, rows, width, mlp->w[2].data, b3[0], out, ostride);
                return 0;
        }
        r = cpu_gemm_w(rows, width, h2, width, &mlp->w[2], 0, h1, wout, false);
        if (r < 0)
                return r;
        for (int64_t i = 0; i < rows; i++)
                for (int64_t c = 0; c < wout; c++)
                        h1[i * wout + c] += b3[c];
        return 0;
}

static void running_max(const float *v, int64_t np, int k, float *vmax) {
        for (int64_t t = 0; t < np; t++)
                for (int j = 0; j < k; j++)
                        for (int64_t c = 0; c < G; c++)
                                vmax[j * G + c] = maxf(vmax[j * G + c], v[(t * k + j) * G + c]);
}

static int pass1_tile(heads_ctx *hc, tile_buf *tb, int64_t p0, int64_t np) {
        const p3_heads_params *hp = hc->hp;
        int k = hc->in->k, r = 0;
        int64_t n = hc->in->n, rows = np * k;
        load_tile(hc, p0, np, tb->x);
        for (int h = 0; h < 3 && r >= 0; h++) {
                r = point_part(&hp->seg[h].w[0], 0, &hp->seg[h].b[0], tb->x, np, tb->a);
                if (r < 0)
                        break;
                first_layer(tb->a, hc->bq_seg[h], NULL, NULL, 0, np, k, FEAT, tb->h1);
                r = hidden_and_last(&hp->seg[h], rows, tb->h1, tb->h2, tb->s + h, 3);
        }
        if (r < 0)
                return r;
        for (int64_t t = 0; t < np; t++)
                for (int j = 0; j < k; j++) {
                        const float *s = tb->s + (t * k + j) * 3;
                        float *m = hc->m1 + ((int64_t) j * n + p0 + t) * 3;
                        memcpy(m, s, sizeof(float) * 3);
                        if (hc->out->s1_logit)
                                for (int h = 0; h < 3; h++)
                                        hc->out->s1_logit[((int64_t) h * k + j) * n + p0 + t] = s[h];
                }
        r = point_part(&hp->s2g.w[0], 0, &hp->s2g.b[0], tb->x, np, tb->a);
        if (r < 0)
                return r;
        first_layer(tb->a, hc->bq_g, hc->wm_g, tb->s, 3, np, k, G, tb->h1);
        r = hidden_and_last(&hp->s2g, rows, tb->h1, tb->h2, NULL, 0);
        if (r < 0)
                return r;
        running_max(tb->h1, np, k, tb->vmax);
        return 0;
}

/* The tile's stage-2 logits as outputs; -ERANGE when one is NaN or ±Inf (it would pass for
 * a clear mask bit), after storing them all. */
static int store_masks(heads_ctx *hc, const float *s, int64_t p0, int64_t np) {
        p3_heads_output *out = hc->out;
        int k = hc->in->k;
        int64_t n = hc->in->n, nbytes = DIV_ROUND_UP(n, 8);
        bool finite = true;
        for (int64_t t = 0; t < np; t++)
                for (int j = 0; j < k; j++)
                        for (int h = 0; h < 3; h++) {
                                float v = s[(t * k + j) * 3 + h];
                                int64_t p = p0 + t, row = (int64_t) h * k + j;
                                finite &= isfinite(v) != 0;
                                if (out->s2_logit)
                                        out->s2_logit[row * n + p] = v;
                                if (out->mask_bits && sigmoidf(v) > 0.5f)
                                        out->mask_bits[row * nbytes + (p >> 3)] |= 1u << (p & 7);
                        }
        return finite ? 0 : -ERANGE;
}

static int pass2_tile(heads_ctx *hc, tile_buf *tb, int64_t p0, int64_t np) {
        const p3_heads_params *hp = hc->hp;
        int k = hc->in->k, r = 0;
        int64_t n = hc->in->n, rows = np * k;
        load_tile(hc, p0, np, tb->x);
        for (int64_t t = 0; t < np; t++) /* m1 regrouped as [t·k + j][3] */
                for (int j = 0; j < k; j++)
                        memcpy(tb->m + (t * k + j) * 3, hc->m1 + ((int64_t) j * n + p0 + t) * 3,
                               sizeof(float) * 3);
        for (int h = 0; h < 3 && r >= 0; h++) {
                r = point_part(&hp->s2[h].w[0], S2_FP, &hp->s2[h].b[0], tb->x, np, tb->a);
                if (r < 0)
                        break;
                first_layer(tb->a, hc->c_s2[h], hc->wm_s2[h], tb->m, 3, np, k, G, tb->h1);
                r = hidden_and_last(&hp->s2[h], rows, tb->h1, tb->h2, tb->s + h, 3);
        }
        if (r < 0)
                return r;
        r = store_masks(hc, tb->s, p0, np);
        if (r < 0)
                return r;
        r = point_part(&hp->iou.w[0], S2_FP, &hp->iou.b[0], tb->x, np, tb->a);
        if (r < 0)
                return r;
        first_layer(tb->a, hc->c_iou, hc->ws_iou, tb->s, 3, np, k, G, tb->h1);
        r = hidden_and_last(&hp->iou, rows, tb->h1, tb->h2, NULL, 0);
        if (r < 0)
                return r;
        running_max(tb->h1, np, k, tb->vmax);
        return 0;
}

static int tile_buf_init(tile_buf *tb, int64_t tile, int k) {
        int64_t rows = tile * k;
        *tb = (tile_buf) {
                .x = malloc(sizeof(float) * tile * FP),
                .a = malloc(sizeof(float) * tile * FEAT),
                .h1 = malloc(sizeof(float) * rows * FEAT),
                .h2 = malloc(sizeof(float) * rows * FEAT),
                .s = malloc(sizeof(float) * rows * 3),
                .m = malloc(sizeof(float) * rows * 3),
                .vmax = malloc(sizeof(float) * k * G),
        };
        if (!tb->x || !tb->a || !tb->h1 || !tb->h2 || !tb->s || !tb->m || !tb->vmax)
                return -ENOMEM;
        for (int64_t i = 0; i < (int64_t) k * G; i++)
                tb->vmax[i] = -INFINITY;
        return 0;
}

static void tile_buf_done(tile_buf *tb) {
        free(tb->x);
        free(tb->a);
        free(tb->h1);
        free(tb->h2);
        free(tb->s);
        free(tb->m);
        free(tb->vmax);
}

/* Runs pass 1 or 2 over all tiles on all threads; the threads' maxima merge into vmax. */
static int run_pass(p3_backend *be, heads_ctx *hc, int pass, float *vmax) {
        int64_t n = hc->in->n, ntiles = DIV_ROUND_UP(n, hc->tile);
        int k = hc->in->k, err = 0;
        for (int64_t i = 0; i < (int64_t) k * G; i++)
                vmax[i] = -INFINITY;
#pragma omp parallel num_threads(be->threads)
        {
                tile_buf tb;
                int r = tile_buf_init(&tb, hc->tile, k);
                if (r < 0) {
#pragma omp atomic write
                        err = r;
                }
#pragma omp for schedule(dynamic, 1)
                for (int64_t t = 0; t < ntiles; t++) {
                        if (r < 0)
                                continue;
                        int64_t p0 = t * hc->tile, np = MIN(hc->tile, n - p0);
                        int e = pass == 1 ? pass1_tile(hc, &tb, p0, np)
                                          : pass2_tile(hc, &tb, p0, np);
                        if (e < 0) {
#pragma omp atomic write
                                err = e;
                        }
                }
#pragma omp critical
                if (r >= 0)
                        for (int64_t i = 0; i < (int64_t) k * G; i++)
                                vmax[i] = maxf(vmax[i], tb.vmax[i]);
                tile_buf_done(&tb);
        }
        return err;
}

/* Per-prompt parts of the stage-2 and IoU first layers, once g is known. */
static int prompt_terms_stage2(heads_ctx *hc) {
        const p3_heads_params *hp = hc->hp;
        const float *q = hc->in->prompts;
        int k = hc->in->k;
        for (int h = 0; h < 4; h++) {
                const p3_tensor *w = h < 3 ? &hp->s2[h].w[0] : &hp->iou.w[0];
                float *c = h < 3 ? hc->c_s2[h] : hc->c_iou;
                prompt_term(w, S2_Q, q, k, c);
                int r = cpu_gemm_w(k, G, hc->gmax, G, w, 0, c, G, true);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* iou_mlp_out on the [k, 256] maxima, then sigmoid. */
static int iou_out(const p3_heads_params *hp, const float *imax, int k, float *iou) {
        _cleanup_free_ float *buf = malloc(sizeof(float) * (size_t) k * (2 * G + 3));
        if (!buf)
                return -ENOMEM;
        float *h1 = buf, *h2 = buf + (size_t) k * G, *o = buf + (size_t) 2 * k * G;
        const p3_mlp3 *m = &hp->iou_out;
        int r = cpu_gemm_w(k, G, imax, G, &m->w[0], 0, h1, G, false);
        if (r < 0)
                return r;
        for (int64_t i = 0; i < (int64_t) k * G; i++)
                h1[i] = cpu_gelu1(h1[i] + ((const float *) m->b[0].data)[i % G]);
        r = cpu_gemm_w(k, G, h1, G, &m->w[1], 0, h2, G, false);
        if (r < 0)
                return r;
        for (int64_t i = 0; i < (int64_t) k * G; i++)
                h2[i] = cpu_gelu1(h2[i] + ((const float *) m->b[1].data)[i % G]);
        r = cpu_gemm_w(k, G, h2, G, &m->w[2], 0, o, 3, false);
        if (r < 0)
                return r;
        for (int i = 0; i < k * 3; i++)
                iou[i] = sigmoidf(o[i] + ((const float *) m->b[2].data)[i % 3]);
        return 0;
}

static int check_shapes(const p3_heads_params *hp, const p3_heads_input *in) {
        for (int h = 0; h < 3; h++)
                if (hp->seg[h].w[0].cols != FP + 3 || hp->seg[h].w[0].rows != FEAT ||
                    hp->s2[h].w[0].cols != G + FP + 6 || hp->s2[h].w[0].rows != G)
                        return -EINVAL;
        if (hp->s2g.w[0].cols != FP + 6 || hp->iou.w[0].cols != G + FP + 6 ||
            in->feat->cols != FEAT || in->points->cols != 3 || in->k <= 0 || in->n <= 0)
                return -EINVAL;
        return 0;
}

int cpu_heads(p3_backend *be, const p3_heads_params *hp, const p3_heads_input *in,
              p3_heads_output *out) {
        int r = check_shapes(hp, in);
        if (r < 0)
                return r;
        int k = in->k;
        int64_t n = in->n;
        heads_ctx hc = { .hp = hp, .in = in, .out = out };
        hc.tile = MAX(8, (TARGET_ROWS / k) & ~7);
        void *m1 = NULL;
        size_t m1_bytes = sizeof(float) * 3 * (size_t) k * (size_t) n;
        r = be->ops->alloc(be, m1_bytes, &m1);
        if (r < 0)
                return r;
        hc.m1 = m1;
        _cleanup_free_ float *pk = malloc(sizeof(float) * (size_t) k * (3 * FEAT + 7 * G));
        if (!pk) {
                be->ops->free(be, m1, m1_bytes);
                return -ENOMEM;
        }
        for (int h = 0; h < 3; h++) {
                hc.bq_seg[h] = pk + (size_t) h * k * FEAT;
                hc.c_s2[h] = pk + (size_t) 3 * k * FEAT + (size_t) h * k * G;
        }
        hc.bq_g = pk + (size_t) 3 * k * FEAT + (size_t) 3 * k * G;
        hc.c_iou = hc.bq_g + (size_t) k * G;
        hc.gmax = hc.c_iou + (size_t) k * G;
        hc.imax = hc.gmax + (size_t) k * G;

        for (int h = 0; h < 3; h++) {
                prompt_term(&hp->seg[h].w[0], SEG_Q, in->prompts, k, hc.bq_seg[h]);
                transpose3(&hp->s2[h].w[0], S2_M, hc.wm_s2[h]);
        }
        prompt_term(&hp->s2g.w[0], S2G_Q, in->prompts, k, hc.bq_g);
        transpose3(&hp->s2g.w[0], S2G_M, hc.wm_g);
        transpose3(&hp->iou.w[0], S2_M, hc.ws_iou);
        if (out->mask_bits)
                memset(out->mask_bits, 0, (size_t) 3 * k * DIV_ROUND_UP(n, 8));

        r = run_pass(be, &hc, 1, hc.gmax);
        if (r >= 0)
                r = prompt_terms_stage2(&hc);
        if (r >= 0)
                r = run_pass(be, &hc, 2, hc.imax);
        if (r >= 0) {
                if (out->global)
                        memcpy(out->global, hc.gmax, sizeof(float) * k * G);
                if (out->iou_feat)
                        memcpy(out->iou_feat, hc.imax, sizeof(float) * k * G);
                if (out->iou)
                        r = iou_out(hp, hc.imax, k, out->iou);
        }
        be->ops->free(be, m1, m1_bytes);
        return r;
}
