/* SPDX-License-Identifier: MIT */
/* The Sonata / Point Transformer V3 encoder and the P3-SAM feature projector (spec §2.6, §3):
 * integer structure on the host (voxels, pooling clusters; serializations, neighbour and
 * window maps too unless the backend builds those itself), float work through the backend
 * ops. All state of one forward pass lives in a
 * `forward` struct with one destructor, so every error path frees everything. */
#include <stdio.h>
#include <string.h>

#include "grid_sample.h"
#include "model-internal.h"
#include "serialize.h"

typedef struct level {
        int64_t n;
        int32_t *grid;                       /* host [n, 3] */
        int32_t *cluster;                    /* host [n_parent]: parent point → this level */
        int32_t *nbr;                        /* device [n, 27] */
        int32_t *slots[P3_NUM_ORDERS_MAX];   /* device [n_pad]: point held by each slot */
        int64_t n_pad, window;
        p3_tensor feat;                      /* the stage's output */
} level;

typedef struct forward {
        p3_model *m;
        const p3_run_opts *o;
        p3_mt19937 torch_rng;
        level lv[P3_MAX_STAGES];
        int nlv;
        p3_grid_sample gs;
} forward;

static void trace(const forward *f, const char *name, const p3_tensor *t) {
        if (!f->o || !f->o->trace)
                return;
        float *host = malloc(sizeof(float) * t->rows * t->cols + 1);
        if (!host)
                return;
        if (f->m->be->ops->to_host_f32(f->m->be, t, host) >= 0)
                f->o->trace(f->o->userdata, name, host, t->rows, t->cols);
        free(host);
}

static bool aborted(const forward *f) {
        return f->o && f->o->abort && f->o->abort(f->o->userdata);
}

static void progress(const forward *f, double frac) {
        if (f->o && f->o->progress)
                f->o->progress(f->o->userdata, "features", frac);
}

static void level_done(p3_backend *be, level *lv) {
        free(lv->grid);
        free(lv->cluster);
        p3_ibuf_free(be, lv->nbr, lv->n * 27);
        for (int k = 0; k < P3_NUM_ORDERS_MAX; k++)
                p3_ibuf_free(be, lv->slots[k], lv->n_pad);
        p3_tensor_free(be, &lv->feat);
}

static void forward_done(forward *f) {
        for (int s = 0; s < f->nlv; s++)
                level_done(f->m->be, &f->lv[s]);
        p3_grid_sample_done(&f->gs);
}

/* The stage's order permutation: replayed, drawn like torch.randperm, or the identity. */
static void order_perm(forward *f, int s, int64_t *perm) {
        const p3_config *cfg = &f->m->cfg;
        if (f->o && f->o->replay && f->o->replay->order_perm[s])
                memcpy(perm, f->o->replay->order_perm[s], sizeof(int64_t) * cfg->num_orders);
        else if (cfg->shuffle_orders)
                p3_torch_randperm(&f->torch_rng, cfg->num_orders, perm);
        else
                for (int k = 0; k < cfg->num_orders; k++)
                        perm[k] = k;
}

/* The slots and neighbour map built on the host (serialize.c) and uploaded: the CPU backend's
 * way, and any backend's without the structure ops. perm gives each row's order. */
static int level_structure_host(forward *f, level *lv, const int64_t *perm, int depth,
                                p3_err *err) {
        const p3_config *cfg = &f->m->cfg;
        p3_backend *be = f->m->be;
        int64_t n = lv->n;
        _cleanup_free_ int32_t *order = malloc(sizeof(int32_t) * cfg->num_orders * n);
        _cleanup_free_ int32_t *inverse = malloc(sizeof(int32_t) * cfg->num_orders * n);
        _cleanup_free_ int32_t *nbr = malloc(sizeof(int32_t) * 27 * n);
        _cleanup_free_ int32_t *pad = malloc(sizeof(int32_t) * lv->n_pad);
        _cleanup_free_ int32_t *slot = malloc(sizeof(int32_t) * lv->n_pad);
        if (!order || !inverse || !nbr || !pad || !slot)
                return -ENOMEM;
        int r = p3_serialize(lv->grid, n, cfg->orders, cfg->num_orders, perm, depth, NULL, order,
                             inverse);
        if (r < 0)
                return p3_errf(err, r, "serialization failed: %s", p3_strerror(r));
        p3_attention_pad(n, lv->window, lv->n_pad, pad);
        for (int k = 0; k < cfg->num_orders; k++) {
                for (int64_t i = 0; i < lv->n_pad; i++)
                        slot[i] = order[k * n + pad[i]];
                r = p3_ibuf_upload(be, slot, lv->n_pad, &lv->slots[k]);
                if (r < 0)
                        return r;
        }
        r = p3_subm_neighbors(lv->grid, n, nbr);
        if (r < 0)
                return p3_errf(err, r, "neighbour map failed: %s", p3_strerror(r));
        return p3_ibuf_upload(be, nbr, 27 * n, &lv->nbr);
}

/* The same built by the backend from the grid coordinates alone (the CUDA backend: the codes
 * sorted with CUB, the map from a hash table on the GPU), so that only n × 3 integers cross
 * the bus instead of (27 + orders) × n, and no host time is spent per level. */
static int level_structure_device(forward *f, level *lv, const int64_t *perm, int depth,
                                  p3_err *err) {
        const p3_config *cfg = &f->m->cfg;
        p3_backend *be = f->m->be;
        int64_t n = lv->n;
        int32_t *grid = NULL;
        int r = p3_ibuf_upload(be, lv->grid, 3 * n, &grid);
        for (int k = 0; r >= 0 && k < cfg->num_orders; k++) {
                r = p3_ibuf_alloc(be, lv->n_pad, &lv->slots[k]);
                if (r >= 0)
                        r = be->ops->window_slots(be, grid, n, (int) cfg->orders[perm[k]], depth,
                                                  lv->window, lv->n_pad, lv->slots[k]);
                if (r < 0 && r != -ENOMEM)
                        r = p3_errf(err, r, "serialization failed on the device: %s",
                                    p3_strerror(r));
        }
        if (r >= 0)
                r = p3_ibuf_alloc(be, 27 * n, &lv->nbr);
        if (r >= 0) {
                r = be->ops->subm_neighbors(be, grid, n, lv->nbr);
                if (r < 0 && r != -ENOMEM)
                        r = p3_errf(err, r, "neighbour map failed on the device: %s",
                                    p3_strerror(r));
        }
        p3_ibuf_free(be, grid, 3 * n);
        return r;
}

/* Serializations, attention slots and the SubMConv neighbour map of a level (spec §3.3–3.6). */
static int level_structure(forward *f, int s, p3_err *err) {
        const p3_config *cfg = &f->m->cfg;
        const p3_backend_ops *op = f->m->be->ops;
        level *lv = &f->lv[s];
        int64_t perm[P3_NUM_ORDERS_MAX];
        order_perm(f, s, perm);
        for (int k = 0; k < cfg->num_orders; k++)
                if (perm[k] < 0 || perm[k] >= cfg->num_orders)
                        return p3_errf(err, -EINVAL, "stage %d order permutation is invalid", s);
        int depth = p3_serial_depth(lv->grid, lv->n);
        if (depth > 16)
                return p3_errf(err, -EINVAL, "the point cloud is too large for the grid (depth %d)",
                               depth);
        p3_attention_windows(lv->n, cfg->patch_size[s], &lv->window, &lv->n_pad);
        if (op->window_slots && op->subm_neighbors)
                return level_structure_device(f, lv, perm, depth, err);
        return level_structure_host(f, lv, perm, depth, err);
}

typedef struct block_tmp {
        p3_tensor t1, t2, qkv, hid;
} block_tmp;

static void block_tmp_done(p3_backend *be, block_tmp *t) {
        p3_tensor_free(be, &t->t1);
        p3_tensor_free(be, &t->t2);
        p3_tensor_free(be, &t->qkv);
        p3_tensor_free(be, &t->hid);
}

static int block_tmp_init(p3_backend *be, int64_t n, int c, int hid, block_tmp *t) {
        int r = p3_tensor_alloc(be, n, c, &t->t1);
        if (r >= 0)
                r = p3_tensor_alloc(be, n, c, &t->t2);
        if (r >= 0)
                r = p3_tensor_alloc(be, n, 3 * c, &t->qkv);
        if (r >= 0)
                r = p3_tensor_alloc(be, n, hid, &t->hid);
        return r;
}

/* x += CPE(x); x += Attn(LN1(x)); x += MLP(LN2(x))   (pre-norm, spec §3.5) */
static int block_forward(forward *f, int s, int b, block_tmp *t) {
        const p3_backend_ops *op = f->m->be->ops;
        p3_backend *be = f->m->be;
        const p3_block *bl = &f->m->stages[s].blocks[b];
        level *lv = &f->lv[s];
        p3_tensor *x = &lv->feat;
        char name[64];
        int r = op->subm_conv(be, x, lv->nbr, &bl->conv.w, &bl->conv.b, &t->t1);
        if (r >= 0)
                r = op->linear(be, &t->t1, &bl->cpe_fc.w, &bl->cpe_fc.b, &t->t2, 0);
        if (r >= 0)
                r = op->layernorm(be, &t->t2, &bl->cpe_norm.w, &bl->cpe_norm.b, &t->t2, 0);
        snprintf(name, sizeof(name), "stage%d_block%d_cpe_out", s, b);
        trace(f, name, &t->t2);
        if (r >= 0)
                r = op->add(be, &t->t2, x);
        if (r >= 0)
                r = op->layernorm(be, x, &bl->norm1.w, &bl->norm1.b, &t->t1, 0);
        if (r >= 0)
                r = op->linear(be, &t->t1, &bl->qkv.w, &bl->qkv.b, &t->qkv, 0);
        if (r >= 0)
                r = op->attention(be, &t->qkv, lv->slots[b % f->m->cfg.num_orders], lv->n_pad,
                                  lv->window, f->m->cfg.num_heads[s], &t->t1);
        if (r >= 0)
                r = op->linear(be, &t->t1, &bl->proj.w, &bl->proj.b, &t->t2, 0);
        snprintf(name, sizeof(name), "stage%d_block%d_attn_out", s, b);
        trace(f, name, &t->t2);
        if (r >= 0)
                r = op->add(be, &t->t2, x);
        if (r >= 0)
                r = op->layernorm(be, x, &bl->norm2.w, &bl->norm2.b, &t->t1, 0);
        if (r >= 0)
                r = op->linear(be, &t->t1, &bl->fc1.w, &bl->fc1.b, &t->hid, P3_GELU);
        if (r >= 0)
                r = op->linear(be, &t->hid, &bl->fc2.w, &bl->fc2.b, x, P3_ACCUMULATE);
        snprintf(name, sizeof(name), "stage%d_block%d_out", s, b);
        trace(f, name, x);
        return r;
}

/* Reduced precision can overflow (FP16 attention gave NaNs in another port of this model):
 * a stage whose output is not finite fails the job with a sentence, not garbage. */
static int check_finite(p3_backend *be, const p3_tensor *t, p3_err *err, const char *what) {
        int r = be->ops->check_finite ? be->ops->check_finite(be, t) : 0;
        if (r == -ERANGE)
                return p3_errf(err, r, "%s produced values that are not finite (NaN or Inf) "
                               "at %s precision", what, p3_precision_to_string(be->precision));
        return r < 0 ? p3_errf(err, r, "checking the features failed: %s", p3_strerror(r)) : 0;
}

static int stage_blocks(forward *f, int s, p3_err *err) {
        const p3_config *cfg = &f->m->cfg;
        block_tmp t = {};
        int r = block_tmp_init(f->m->be, f->lv[s].n, cfg->channels[s],
                               cfg->channels[s] * cfg->mlp_ratio, &t);
        for (int b = 0; r >= 0 && b < cfg->depths[s]; b++)
                r = block_forward(f, s, b, &t);
        block_tmp_done(f->m->be, &t);
        if (r < 0)
                return p3_errf(err, r, "stage %d failed: %s", s, p3_strerror(r));
        char name[32];
        snprintf(name, sizeof(name), "stage %d", s);
        r = check_finite(f->m->be, &f->lv[s].feat, err, name);
        if (r < 0)
                return r;
        snprintf(name, sizeof(name), "stage%d_feat", s);
        trace(f, name, &f->lv[s].feat);
        return 0;
}

/* feat [M, 9] = [coord | colour 1/255 | normal] of the representatives → Linear, LN, GELU. */
static int embedding(forward *f, const double *pts, const double *normals, p3_err *err) {
        p3_backend *be = f->m->be;
        int64_t mv = f->gs.m;
        int cin = f->m->cfg.in_channels;
        _cleanup_free_ float *in = malloc(sizeof(float) * mv * cin);
        if (!in)
                return -ENOMEM;
        for (int64_t i = 0; i < mv; i++) {
                int64_t p = f->gs.index[i];
                float *row = in + i * cin;
                for (int c = 0; c < 3; c++) {
                        row[c] = (float) pts[3 * p + c];
                        row[3 + c] = (float) (1.0 / 255.0);
                        row[6 + c] = (float) normals[3 * p + c];
                }
        }
        p3_tensor x = {};
        int r = p3_tensor_alloc(be, mv, cin, &x);
        if (r >= 0)
                r = be->ops->upload(be, x.data, in, sizeof(float) * mv * cin);
        if (r >= 0)
                r = p3_tensor_alloc(be, mv, f->m->cfg.channels[0], &f->lv[0].feat);
        if (r >= 0)
                r = be->ops->linear(be, &x, &f->m->stem.w, &f->m->stem.b, &f->lv[0].feat, 0);
        if (r >= 0)
                r = be->ops->layernorm(be, &f->lv[0].feat, &f->m->stem_norm.w,
                                       &f->m->stem_norm.b, &f->lv[0].feat, P3_GELU);
        p3_tensor_free(be, &x);
        if (r < 0)
                return p3_errf(err, r, "embedding failed: %s", p3_strerror(r));
        trace(f, "embedding_feat", &f->lv[0].feat);
        return 0;
}

/* GridPooling (spec §3.7): Linear on the parent points, max per coarse cell, LN, GELU. */
static int pool(forward *f, int s, p3_err *err) {
        p3_backend *be = f->m->be;
        level *parent = &f->lv[s - 1], *lv = &f->lv[s];
        const p3_stage *st = &f->m->stages[s];
        lv->cluster = malloc(sizeof(int32_t) * parent->n);
        if (!lv->cluster)
                return -ENOMEM;
        f->nlv = s + 1; /* from here forward_done() frees the level, when pooling fails too */
        int r = p3_grid_pool(parent->grid, parent->n, f->m->cfg.stride[s - 1], &lv->grid, &lv->n,
                             lv->cluster);
        if (r < 0)
                return p3_errf(err, r, "grid pooling failed: %s", p3_strerror(r));
        p3_tensor y = {};
        int32_t *cl = NULL;
        r = p3_tensor_alloc(be, parent->n, f->m->cfg.channels[s], &y);
        if (r >= 0)
                r = p3_ibuf_upload(be, lv->cluster, parent->n, &cl);
        if (r >= 0)
                r = p3_tensor_alloc(be, lv->n, f->m->cfg.channels[s], &lv->feat);
        if (r >= 0)
                r = be->ops->linear(be, &parent->feat, &st->down.w, &st->down.b, &y, 0);
        if (r >= 0)
                r = be->ops->segment_max(be, &y, cl, &lv->feat);
        if (r >= 0)
                r = be->ops->layernorm(be, &lv->feat, &st->down_norm.w, &st->down_norm.b,
                                       &lv->feat, P3_GELU);
        p3_tensor_free(be, &y);
        p3_ibuf_free(be, cl, parent->n);
        if (r < 0)
                return p3_errf(err, r, "pooling to stage %d failed: %s", s, p3_strerror(r));
        char name[32];
        snprintf(name, sizeof(name), "stage%d_pooled_feat", s);
        trace(f, name, &lv->feat);
        return 0;
}

/* Level-0 row → level-s row, composing the pooling clusters (host). */
static int compose_map(const forward *f, int s, int32_t **ret) {
        int64_t m0 = f->lv[0].n;
        int32_t *map = malloc(sizeof(int32_t) * m0);
        if (!map)
                return -ENOMEM;
        for (int64_t i = 0; i < m0; i++) {
                int32_t j = (int32_t) i;
                for (int l = 1; l <= s; l++)
                        j = f->lv[l].cluster[j];
                map[i] = j;
        }
        *ret = map;
        return 0;
}

/* The unpooled concatenation [M, Σ C_s], only materialised for a trace. */
static int trace_concat(forward *f, int32_t *const *maps) {
        if (!f->o || !f->o->trace)
                return 0;
        p3_backend *be = f->m->be;
        p3_tensor cat = {};
        int r = p3_tensor_alloc(be, f->lv[0].n, f->m->cfg.concat_width, &cat);
        for (int s = 0, col = 0; r >= 0 && s < f->nlv; col += f->m->cfg.channels[s], s++)
                r = be->ops->gather_rows(be, &f->lv[s].feat, maps[s], &cat, col);
        if (r >= 0)
                trace(f, "concat_feat", &cat);
        p3_tensor_free(be, &cat);
        return r;
}

/* mlp(concat) without building the concatenation: the first Linear splits by level,
 * W·[x0 | x1[c1] | x2[c2] | …] = W0·x0 + Σ_s (W_s·x_s)[c_s], each product at its level's size. */
static int project(forward *f, p3_tensor *out, p3_err *err) {
        p3_backend *be = f->m->be;
        const p3_mlp3 *mlp = &f->m->mlp;
        int64_t m0 = f->lv[0].n;
        int32_t *maps[P3_MAX_STAGES] = {}, *dmap = NULL;
        p3_tensor acc = {}, y = {};
        int r = 0;
        for (int s = 1; r >= 0 && s < f->nlv; s++)
                r = compose_map(f, s, &maps[s]);
        if (r >= 0)
                r = trace_concat(f, maps);
        if (r >= 0)
                r = p3_tensor_alloc(be, m0, P3_FEAT_DIM, &acc);
        if (r >= 0)
                r = p3_tensor_alloc(be, m0, P3_FEAT_DIM, out);
        int col = 0;
        for (int s = 0; r >= 0 && s < f->nlv; col += f->m->cfg.channels[s], s++) {
                p3_tensor ws = p3_tensor_cols(&mlp->w[0], col, f->m->cfg.channels[s]);
                if (s == 0) {
                        r = be->ops->linear(be, &f->lv[0].feat, &ws, &mlp->b[0], &acc, 0);
                        continue;
                }
                r = p3_tensor_alloc(be, f->lv[s].n, P3_FEAT_DIM, &y);
                if (r >= 0)
                        r = be->ops->linear(be, &f->lv[s].feat, &ws, NULL, &y, 0);
                if (r >= 0)
                        r = p3_ibuf_upload(be, maps[s], m0, &dmap);
                if (r >= 0)
                        r = be->ops->gather_add(be, &y, dmap, &acc);
                p3_tensor_free(be, &y);
                p3_ibuf_free(be, dmap, m0);
                dmap = NULL;
        }
        /* mlp: GELU(L0) → L1 → GELU → L2; the result ends in `out`. */
        if (r >= 0)
                r = be->ops->gelu(be, &acc);
        if (r >= 0)
                r = be->ops->linear(be, &acc, &mlp->w[1], &mlp->b[1], out, P3_GELU);
        if (r >= 0)
                r = be->ops->linear(be, out, &mlp->w[2], &mlp->b[2], &acc, 0);
        for (int s = 1; s < f->nlv; s++)
                free(maps[s]);
        p3_tensor_free(be, out);
        if (r < 0) {
                p3_tensor_free(be, &acc);
                return p3_errf(err, r, "feature projection failed: %s", p3_strerror(r));
        }
        r = check_finite(be, &acc, err, "the feature projection");
        if (r < 0) {
                p3_tensor_free(be, &acc);
                return r;
        }
        *out = acc;
        return 0;
}

/* Releases what only the blocks of a finished stage need. */
static void level_shrink(p3_backend *be, level *lv) {
        p3_ibuf_free(be, lv->nbr, lv->n * 27);
        lv->nbr = NULL;
        for (int k = 0; k < P3_NUM_ORDERS_MAX; k++) {
                p3_ibuf_free(be, lv->slots[k], lv->n_pad);
                lv->slots[k] = NULL;
        }
}

static int backbone(forward *f, const double *pts, const double *normals, p3_err *err) {
        const p3_config *cfg = &f->m->cfg;
        level *lv0 = &f->lv[0];
        lv0->n = f->gs.m;
        lv0->grid = malloc(sizeof(int32_t) * 3 * lv0->n);
        if (!lv0->grid)
                return -ENOMEM;
        memcpy(lv0->grid, f->gs.grid_coord, sizeof(int32_t) * 3 * lv0->n);
        f->nlv = 1;
        int r = embedding(f, pts, normals, err);
        for (int s = 0; r >= 0 && s < cfg->num_stages; s++) {
                if (aborted(f))
                        return -ECANCELED;
                if (s > 0)
                        r = pool(f, s, err);
                if (r >= 0)
                        r = level_structure(f, s, err);
                if (r >= 0)
                        r = stage_blocks(f, s, err);
                level_shrink(f->m->be, &f->lv[s]);
                progress(f, (s + 1.0) / (cfg->num_stages + 1.0));
        }
        return r;
}

static int features_output(forward *f, const double *pts, int64_t n, p3_features *ret) {
        p3_backend *be = f->m->be;
        _cleanup_free_ int32_t *inv = malloc(sizeof(int32_t) * n);
        ret->n = n;
        ret->points_host = malloc(sizeof(float) * 3 * n);
        if (!inv || !ret->points_host)
                return -ENOMEM;
        for (int64_t i = 0; i < n; i++)
                inv[i] = (int32_t) f->gs.inverse[i];
        for (int64_t i = 0; i < 3 * n; i++)
                ret->points_host[i] = (float) pts[i];
        int r = p3_ibuf_upload(be, inv, n, &ret->inverse);
        if (r >= 0)
                r = p3_tensor_alloc(be, n, 3, &ret->points);
        if (r >= 0)
                r = be->ops->upload(be, ret->points.data, ret->points_host, sizeof(float) * 3 * n);
        if (r < 0)
                return r;
        ret->m = f->gs.m;
        ret->grid_index = TAKE_PTR(f->gs.index);
        if (f->o && f->o->trace) {
                p3_tensor pf = {};
                r = p3_tensor_alloc(be, n, P3_FEAT_DIM, &pf);
                if (r >= 0)
                        r = be->ops->gather_rows(be, &ret->feat, ret->inverse, &pf, 0);
                if (r >= 0)
                        trace(f, "point_feat", &pf);
                p3_tensor_free(be, &pf);
        }
        return r;
}

int p3_model_features(p3_model *m, double *pts, const double *normals, int64_t n,
                      const p3_run_opts *o, p3_features *ret, p3_err *err) {
        forward f = { .m = m, .o = o };
        uint32_t seed = (uint32_t) (o ? o->seed : 0);
        const p3_replay *rp = o ? o->replay : NULL;
        *ret = (p3_features) {};
        if (n <= 0)
                return p3_errf(err, -EINVAL, "no points");
        p3_mt_seed(&ret->np_rng, seed);
        p3_mt_seed(&f.torch_rng, seed);
        p3_center_shift(pts, n, ret->shift);
        int r = p3_grid_sample_run(pts, n, 0.005, &ret->np_rng, rp ? rp->grid_sample_index : NULL,
                                   rp ? rp->grid_sample_m : 0, &f.gs, err);
        if (r >= 0)
                r = backbone(&f, pts, normals, err);
        if (r >= 0)
                r = project(&f, &ret->feat, err);
        if (r >= 0) {
                trace(&f, "mlp_feat", &ret->feat);
                r = features_output(&f, pts, n, ret);
        }
        forward_done(&f);
        if (r < 0)
                p3_features_done(m, ret);
        if (r == -ECANCELED)
                return p3_errf(err, r, "cancelled");
        return r < 0 ? p3_errf(err, r, "feature extraction failed: %s", p3_strerror(r)) : 0;
}

void p3_features_done(p3_model *m, p3_features *f) {
        p3_backend *be = m->be;
        p3_tensor_free(be, &f->feat);
        p3_tensor_free(be, &f->points);
        p3_ibuf_free(be, f->inverse, f->n);
        free(f->points_host);
        free(f->grid_index);
        *f = (p3_features) {};
}
