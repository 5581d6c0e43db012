/* SPDX-License-Identifier: MIT */
/* p3sam-run infer: the network on one recorded point cloud (coord + normal), replaying the
 * recorded random choices when the case holds them; writes the golden-named outputs. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "run.h"
#include "safetensors.h"

/* Tensors kept from the trace (the rest of the trace is dropped). */
typedef struct kept {
        char name[64];
        float *data;
        int64_t rows, cols;
} kept;

typedef struct infer_state {
        kept keep[16];
        int nkeep;
} infer_state;

static bool wanted(const char *name) {
        return strcmp(name, "point_feat") == 0 || strcmp(name, "concat_feat") == 0 ||
               (strncmp(name, "stage", 5) == 0 && strstr(name, "_feat") &&
                !strstr(name, "pooled") && !strstr(name, "block"));
}

static void keep_trace(void *userdata, const char *name, const float *data, int64_t rows,
                       int64_t cols) {
        infer_state *st = userdata;
        if (!wanted(name) || st->nkeep >= (int) ELEMENTSOF(st->keep))
                return;
        kept *k = &st->keep[st->nkeep];
        k->data = malloc(sizeof(float) * rows * cols + 1);
        if (!k->data)
                return;
        memcpy(k->data, data, sizeof(float) * rows * cols);
        snprintf(k->name, sizeof(k->name), "%s", name);
        k->rows = rows;
        k->cols = cols;
        st->nkeep++;
}

typedef struct infer_args {
        const char *weights, *config, *case_path, *out;
        long long prompts, batch, seed, threads;
        p3_precision precision;
        p3_backend_kind backend;
} infer_args;

static void usage(FILE *f) {
        fputs("Usage: p3sam-run infer --weights W [--config C.json] --case IN.safetensors\n"
              "                       --out OUT.safetensors [--prompts K] [--batch B] [--seed S]\n"
              "                       [--threads T] [--precision auto|fp32|bf16|fp16]\n"
              "                       [--backend cpu|cuda|auto]\n"
              "Run the network on a point cloud (coord, normal [N,3] F32). Replays\n"
              "grid_sample_index, stage{0..4}_order_perm and prompt_idx when IN holds them.\n"
              "Prints \"device: ...\" first and \"time: features S s, heads S s\" last (stderr);\n"
              "the backend is the CPU and the precision fp32 (the reference) unless given.\n",
              f);
}

/* Returns 0 to go on, or the exit status (0 for --help). */
static int parse_args(int argc, char **argv, infer_args *a, bool *done) {
        static const struct option opts[] = {
                { "weights", required_argument, NULL, 'w' },
                { "config", required_argument, NULL, 'c' },
                { "case", required_argument, NULL, 'i' },
                { "out", required_argument, NULL, 'o' },
                { "prompts", required_argument, NULL, 'k' },
                { "batch", required_argument, NULL, 'b' },
                { "seed", required_argument, NULL, 's' },
                { "threads", required_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                { "precision", required_argument, NULL, 'p' },
                { "backend", required_argument, NULL, 'B' },
                {},
        };
        *a = (infer_args) { .prompts = 8, .batch = 32, .seed = 42,
                            .precision = P3_PRECISION_FP32, .backend = P3_BACKEND_CPU };
        int c;
        optind = 0;
        while ((c = getopt_long(argc, argv, "+w:c:i:o:k:b:s:t:hp:B:", opts, NULL)) >= 0) {
                bool ok = true;
                switch (c) {
                case 'w': a->weights = optarg; break;
                case 'c': a->config = optarg; break;
                case 'i': a->case_path = optarg; break;
                case 'o': a->out = optarg; break;
                case 'k': ok = run_parse_int(optarg, 1, 100000, &a->prompts); break;
                case 'b': ok = run_parse_int(optarg, 1, 4096, &a->batch); break;
                case 's': ok = run_parse_int(optarg, 0, UINT32_MAX, &a->seed); break;
                case 't': ok = run_parse_int(optarg, 0, 1024, &a->threads); break;
                case 'p': ok = run_parse_precision(optarg, &a->precision); break;
                case 'B': ok = run_parse_backend(optarg, &a->backend); break;
                case 'h': usage(stdout); *done = true; return 0;
                default: usage(stderr); return 2;
                }
                if (!ok) {
                        const char *name = "?";
                        for (const struct option *o = opts; o->name; o++)
                                if (o->val == c)
                                        name = o->name;
                        fprintf(stderr, "p3sam-run: invalid value \"%s\" for --%s.\n", optarg,
                                name);
                        return 2;
                }
        }
        if (optind < argc || !a->weights || !a->case_path || !a->out) {
                fprintf(stderr, "p3sam-run: infer needs --weights, --case and --out.\n");
                usage(stderr);
                return 2;
        }
        return 0;
}

/* Optional integer tensor of the case, converted to I64 (NULL when absent). */
static int case_i64(const st_file *f, const char *name, int64_t **ret, int64_t *n) {
        const st_tensor *t = st_find(f, name);
        *ret = NULL;
        if (!t)
                return 0;
        *ret = malloc(sizeof(int64_t) * (t->numel + 1));
        if (!*ret)
                return -ENOMEM;
        if (n)
                *n = t->numel;
        return st_to_i64(t, *ret);
}

static int case_points(const st_file *f, const char *name, int64_t *n, double **ret) {
        const st_tensor *t = st_find(f, name);
        if (!t || t->ndim != 2 || t->shape[1] != 3 || t->shape[0] < 1)
                return -EINVAL;
        _cleanup_free_ float *tmp = malloc(sizeof(float) * t->numel);
        double *d = malloc(sizeof(double) * t->numel);
        if (!tmp || !d) {
                free(d);
                return -ENOMEM;
        }
        int r = st_to_f32(t, tmp);
        for (int64_t i = 0; r >= 0 && i < t->numel; i++)
                d[i] = tmp[i];
        *n = t->shape[0];
        *ret = d;
        return r;
}

typedef struct infer_out {
        int64_t n, k;
        float *prompts, *logits, *iou, *global, *iou_feat, *masks;
        int64_t *prompt_idx;
} infer_out;

static void infer_out_done(infer_out *o) {
        free(o->prompts);
        free(o->logits);
        free(o->iou);
        free(o->global);
        free(o->iou_feat);
        free(o->masks);
        free(o->prompt_idx);
}

static int write_outputs(const char *path, const infer_state *st, const p3_features *f,
                         const infer_out *io, p3_err *err) {
        _cleanup_(st_writer_freep) st_writer *w = NULL;
        int r = st_writer_new(&w);
        if (r < 0)
                return r;
        for (int i = 0; i < st->nkeep; i++) {
                const kept *k = &st->keep[i];
                r = st_writer_add(w, k->name, ST_F32, 2, (int64_t[]) { k->rows, k->cols }, k->data);
                if (r < 0)
                        return r;
        }
        int64_t n = io->n, k = io->k;
        static const char *logit_names[6] = {
                "head_seg_mlp_1_logit",    "head_seg_mlp_2_logit",    "head_seg_mlp_3_logit",
                "head_seg_s2_mlp_1_logit", "head_seg_s2_mlp_2_logit", "head_seg_s2_mlp_3_logit",
        };
        static const char *mask_names[3] = { "mask_1", "mask_2", "mask_3" };
        for (int h = 0; r >= 0 && h < 6; h++)
                r = st_writer_add(w, logit_names[h], ST_F32, 2, (int64_t[]) { k, n },
                                  io->logits + (size_t) h * k * n);
        for (int h = 0; r >= 0 && h < 3; h++)
                r = st_writer_add(w, mask_names[h], ST_F32, 2, (int64_t[]) { k, n },
                                  io->masks + (size_t) h * k * n);
        if (r >= 0)
                r = st_writer_add(w, "points_heads", ST_F32, 2, (int64_t[]) { f->n, 3 },
                                  f->points_host);
        if (r >= 0)
                r = st_writer_add(w, "prompt_idx", ST_I64, 1, (int64_t[]) { k }, io->prompt_idx);
        if (r >= 0)
                r = st_writer_add(w, "prompt", ST_F32, 2, (int64_t[]) { k, 3 }, io->prompts);
        if (r >= 0)
                r = st_writer_add(w, "head_seg_global", ST_F32, 2, (int64_t[]) { k, 256 },
                                  io->global);
        if (r >= 0)
                r = st_writer_add(w, "head_iou_feat", ST_F32, 2, (int64_t[]) { k, 256 },
                                  io->iou_feat);
        if (r >= 0)
                r = st_writer_add(w, "pred_iou", ST_F32, 2, (int64_t[]) { k, 3 }, io->iou);
        if (r < 0)
                return p3_errf(err, r, "cannot prepare %s: %s", path, p3_strerror(r));
        return st_writer_write_file(w, path, err);
}

static int pick_prompts(p3_features *f, const int64_t *replay_idx, int64_t replay_k,
                        const infer_args *a, infer_out *io, p3_err *err) {
        io->n = f->n;
        io->k = replay_idx ? replay_k : MIN(a->prompts, f->n);
        io->prompt_idx = malloc(sizeof(int64_t) * io->k);
        io->prompts = malloc(sizeof(float) * 3 * io->k);
        if (!io->prompt_idx || !io->prompts)
                return -ENOMEM;
        if (replay_idx)
                memcpy(io->prompt_idx, replay_idx, sizeof(int64_t) * io->k);
        else {
                int r = p3_model_fps(f, io->k, -1, io->prompt_idx);
                if (r < 0)
                        return p3_errf(err, r, "prompt sampling failed: %s", p3_strerror(r));
        }
        for (int64_t j = 0; j < io->k; j++) {
                if (io->prompt_idx[j] < 0 || io->prompt_idx[j] >= f->n)
                        return p3_errf(err, -EINVAL, "prompt_idx[%lld] is out of range",
                                       (long long) j);
                memcpy(io->prompts + 3 * j, f->points_host + 3 * io->prompt_idx[j],
                       sizeof(float) * 3);
        }
        return 0;
}

static int heads(run_model *rm, p3_features *f, const infer_args *a, infer_out *io, p3_err *err) {
        size_t kn = (size_t) io->k * io->n;
        io->logits = malloc(sizeof(float) * 6 * kn);
        io->masks = malloc(sizeof(float) * 3 * kn);
        io->iou = malloc(sizeof(float) * 3 * io->k);
        io->global = malloc(sizeof(float) * 256 * io->k);
        io->iou_feat = malloc(sizeof(float) * 256 * io->k);
        if (!io->logits || !io->masks || !io->iou || !io->global || !io->iou_feat)
                return -ENOMEM;
        p3_heads_output ho = {
                .iou = io->iou,
                .global = io->global,
                .iou_feat = io->iou_feat,
                .s1_logit = io->logits,
                .s2_logit = io->logits + 3 * kn,
        };
        p3_run_opts o = { .seed = a->seed };
        int r = p3_model_heads(rm->m, f, io->prompts, (int) io->k, (int) a->batch, &o, &ho, err);
        /* The masks as upstream returns them before thresholding: FP32 sigmoid. */
        for (size_t i = 0; r >= 0 && i < 3 * kn; i++)
                io->masks[i] = 1.0f / (1.0f + expf(-io->logits[3 * kn + i]));
        return r;
}

typedef struct case_data {
        st_file *f;
        double *coord, *normal;
        int64_t n, nn, gs_m, k;
        int64_t *gs, *perm[P3_MAX_STAGES], *prompt_idx;
} case_data;

static void case_done(case_data *c) {
        st_close(c->f);
        free(c->coord);
        free(c->normal);
        free(c->gs);
        free(c->prompt_idx);
        for (int s = 0; s < P3_MAX_STAGES; s++)
                free(c->perm[s]);
}

static int case_load(const char *path, case_data *c, p3_replay *rp, p3_err *err) {
        int r = st_open(path, &c->f, err);
        if (r < 0)
                return r;
        if (case_points(c->f, "coord", &c->n, &c->coord) < 0 ||
            case_points(c->f, "normal", &c->nn, &c->normal) < 0 || c->nn != c->n)
                return p3_errf(err, -EINVAL, "%s: needs coord and normal of shape [N,3]", path);
        r = case_i64(c->f, "grid_sample_index", &c->gs, &c->gs_m);
        for (int s = 0; r >= 0 && s < P3_MAX_STAGES; s++) {
                char name[32];
                int64_t np = 0;
                snprintf(name, sizeof(name), "stage%d_order_perm", s);
                r = case_i64(c->f, name, &c->perm[s], &np);
                if (r >= 0 && c->perm[s] && np != P3_NUM_ORDERS_MAX)
                        return p3_errf(err, -EINVAL, "%s: %s must hold 4 values", path, name);
        }
        if (r >= 0)
                r = case_i64(c->f, "prompt_idx", &c->prompt_idx, &c->k);
        if (r < 0)
                return p3_errf(err, r, "%s: cannot read the replay keys", path);
        *rp = (p3_replay) { .grid_sample_index = c->gs, .grid_sample_m = c->gs_m };
        for (int s = 0; s < P3_MAX_STAGES; s++)
                rp->order_perm[s] = c->perm[s];
        return 0;
}

static int infer(const infer_args *a, p3_err *err) {
        _cleanup_(run_model_close) run_model rm = {};
        _cleanup_(case_done) case_data cd = {};
        _cleanup_(infer_out_done) infer_out io = {};
        infer_state st = {};
        p3_replay rp;
        int r = case_load(a->case_path, &cd, &rp, err);
        if (r >= 0)
                r = run_model_open(a->weights, a->config, (int) a->threads, a->backend, a->precision, &rm,
                                   err);
        if (r < 0)
                return r;
        p3_run_opts o = { .seed = a->seed, .replay = &rp, .trace = keep_trace, .userdata = &st };
        p3_features f = {};
        double t0 = run_now();
        r = p3_model_features(rm.m, cd.coord, cd.normal, cd.n, &o, &f, err);
        double t1 = run_now();
        if (r >= 0)
                r = pick_prompts(&f, cd.prompt_idx, cd.k, a, &io, err);
        double t2 = run_now();
        if (r >= 0)
                r = heads(&rm, &f, a, &io, err);
        double t3 = run_now();
        if (r >= 0)
                fprintf(stderr, "time: features %.3f s, heads %.3f s\n", t1 - t0, t3 - t2);
        if (r >= 0)
                r = write_outputs(a->out, &st, &f, &io, err);
        p3_features_done(rm.m, &f);
        for (int i = 0; i < st.nkeep; i++)
                free(st.keep[i].data);
        return r;
}

int run_infer(int argc, char **argv) {
        infer_args a;
        bool done = false;
        int r = parse_args(argc, argv, &a, &done);
        if (r != 0 || done)
                return r;
        p3_err err = {};
        r = infer(&a, &err);
        if (r < 0)
                return run_fail("%s.", p3_err_msg(&err, r));
        return 0;
}
