/* SPDX-License-Identifier: MIT */
/* Building a p3_model: every weight of the checkpoint uploaded once to the backend, in the
 * shapes the ops take. */
#include <stdio.h>
#include <string.h>

#include "model-internal.h"
#include "selftest.h"

static int upload(p3_model *m, const p3_weights *w, const char *name, int64_t rows, int64_t cols,
                  p3_tensor *ret, p3_err *err) {
        const p3_weight_spec *s = p3_weights_spec(w, name);
        const float *data = p3_weights_get(w, name);
        if (!s || !data)
                return p3_errf(err, -ENOENT, "weights have no tensor %s", name);
        if (s->numel != rows * cols)
                return p3_errf(err, -EINVAL, "weight %s has %lld values, expected %lld", name,
                               (long long) s->numel, (long long) (rows * cols));
        int r = m->be->ops->weight_upload(m->be, data, rows, cols, ret);
        if (r < 0)
                return p3_errf(err, r, "cannot upload weight %s: %s", name, p3_strerror(r));
        return 0;
}

/* prefix.weight [out, in·k] and prefix.bias [out] (or a LayerNorm's gamma/beta: in = 0). */
static int upload_linear(p3_model *m, const p3_weights *w, const char *prefix, int64_t out,
                         int64_t in, p3_linear *l, p3_err *err) {
        char name[128];
        snprintf(name, sizeof(name), "%s.weight", prefix);
        int r = upload(m, w, name, in ? out : 1, in ? in : out, &l->w, err);
        if (r < 0)
                return r;
        snprintf(name, sizeof(name), "%s.bias", prefix);
        return upload(m, w, name, 1, out, &l->b, err);
}

static int upload_mlp3(p3_model *m, const p3_weights *w, const char *prefix, const int dims[4],
                       p3_mlp3 *mlp, p3_err *err) {
        for (int i = 0; i < 3; i++) {
                char p[96];
                p3_linear l;
                snprintf(p, sizeof(p), "%s.%d", prefix, 2 * i);
                int r = upload_linear(m, w, p, dims[i + 1], dims[i], &l, err);
                if (r < 0)
                        return r;
                mlp->w[i] = l.w;
                mlp->b[i] = l.b;
        }
        return 0;
}

static int upload_block(p3_model *m, const p3_weights *w, int s, int b, int c, p3_block *bl,
                        p3_err *err) {
        char p[96];
        int r, hid = c * m->cfg.mlp_ratio;
        struct {
                const char *suffix;
                int64_t out, in;
                p3_linear *l;
        } parts[] = {
                { "cpe.0", c, 27 * c, &bl->conv },  { "cpe.1", c, c, &bl->cpe_fc },
                { "cpe.2", c, 0, &bl->cpe_norm },   { "norm1.0", c, 0, &bl->norm1 },
                { "attn.qkv", 3 * c, c, &bl->qkv }, { "attn.proj", c, c, &bl->proj },
                { "norm2.0", c, 0, &bl->norm2 },    { "mlp.0.fc1", hid, c, &bl->fc1 },
                { "mlp.0.fc2", c, hid, &bl->fc2 },
        };
        for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
                snprintf(p, sizeof(p), "sonata.enc.enc%d.block%d.%s", s, b, parts[i].suffix);
                r = upload_linear(m, w, p, parts[i].out, parts[i].in, parts[i].l, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int upload_backbone(p3_model *m, const p3_weights *w, p3_err *err) {
        const p3_config *cfg = &m->cfg;
        int r = upload_linear(m, w, "sonata.embedding.stem.linear", cfg->channels[0],
                              cfg->in_channels, &m->stem, err);
        if (r >= 0)
                r = upload_linear(m, w, "sonata.embedding.stem.norm", cfg->channels[0], 0,
                                  &m->stem_norm, err);
        for (int s = 0; r >= 0 && s < cfg->num_stages; s++) {
                p3_stage *st = &m->stages[s];
                char p[96];
                if (s > 0) {
                        snprintf(p, sizeof(p), "sonata.enc.enc%d.down.proj", s);
                        r = upload_linear(m, w, p, cfg->channels[s], cfg->channels[s - 1],
                                          &st->down, err);
                        snprintf(p, sizeof(p), "sonata.enc.enc%d.down.norm.0", s);
                        if (r >= 0)
                                r = upload_linear(m, w, p, cfg->channels[s], 0, &st->down_norm,
                                                  err);
                }
                st->depth = cfg->depths[s];
                st->blocks = calloc(st->depth, sizeof(p3_block));
                if (!st->blocks)
                        return -ENOMEM;
                for (int b = 0; r >= 0 && b < st->depth; b++)
                        r = upload_block(m, w, s, b, cfg->channels[s], &st->blocks[b], err);
        }
        return r;
}

static int upload_heads(p3_model *m, const p3_weights *w, p3_err *err) {
        static const int seg[4] = { 518, 512, 512, 1 }, s2g[4] = { 521, 256, 256, 256 },
                         s2[4] = { 777, 256, 256, 1 }, iou[4] = { 777, 256, 256, 256 },
                         iou_out[4] = { 256, 256, 256, 3 };
        int mlp[4] = { m->cfg.concat_width, 512, 512, 512 };
        int r = upload_mlp3(m, w, "mlp", mlp, &m->mlp, err);
        for (int h = 0; r >= 0 && h < 3; h++) {
                char p[32];
                snprintf(p, sizeof(p), "seg_mlp_%d", h + 1);
                r = upload_mlp3(m, w, p, seg, &m->heads.seg[h], err);
                snprintf(p, sizeof(p), "seg_s2_mlp_%d", h + 1);
                if (r >= 0)
                        r = upload_mlp3(m, w, p, s2, &m->heads.s2[h], err);
        }
        if (r >= 0)
                r = upload_mlp3(m, w, "seg_s2_mlp_g", s2g, &m->heads.s2g, err);
        if (r >= 0)
                r = upload_mlp3(m, w, "iou_mlp", iou, &m->heads.iou, err);
        if (r >= 0)
                r = upload_mlp3(m, w, "iou_mlp_out", iou_out, &m->heads.iou_out, err);
        return r;
}

static void free_tensor(p3_model *m, p3_tensor *t) {
        if (t->data)
                m->be->ops->weight_free(m->be, t);
}

static void free_mlp3(p3_model *m, p3_mlp3 *l) {
        for (int i = 0; i < 3; i++) {
                free_tensor(m, &l->w[i]);
                free_tensor(m, &l->b[i]);
        }
}

void p3_model_free(p3_model *m) {
        if (!m)
                return;
        /* Every tensor of the model is a p3_tensor field: walk the structs as arrays. */
        p3_tensor *t = (p3_tensor *) &m->stem;
        for (size_t i = 0; i < 4; i++)
                free_tensor(m, &t[i]);
        for (int s = 0; s < m->cfg.num_stages; s++) {
                p3_stage *st = &m->stages[s];
                t = (p3_tensor *) &st->down;
                for (size_t i = 0; i < 4; i++)
                        free_tensor(m, &t[i]);
                for (int b = 0; st->blocks && b < st->depth; b++) {
                        t = (p3_tensor *) &st->blocks[b];
                        for (size_t i = 0; i < sizeof(p3_block) / sizeof(p3_tensor); i++)
                                free_tensor(m, &t[i]);
                }
                free(st->blocks);
        }
        free_mlp3(m, &m->mlp);
        p3_mlp3 *h = (p3_mlp3 *) &m->heads;
        for (size_t i = 0; i < sizeof(p3_heads_params) / sizeof(p3_mlp3); i++)
                free_mlp3(m, &h[i]);
        if (m->owns_backend)
                p3_backend_free(m->be);
        free(m);
}

int p3_model_new(p3_backend *be, const p3_weights *w, p3_model **ret, p3_err *err) {
        p3_model *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->be = be;
        m->cfg = w->cfg;
        int r = upload_backbone(m, w, err);
        if (r >= 0)
                r = upload_heads(m, w, err);
        if (r < 0) {
                p3_model_free(m);
                return r;
        }
        *ret = m;
        return 0;
}

/* The CUDA backend, checked op by op against the CPU before it serves anything (after every
 * load: a new driver, a GPU the build was not tested on, a broken kernel all show here); NULL
 * with the reason in why when there is none or it fails.
 * Test hook: with P3_TEST_FAKE_CUDA set and no device, a CPU backend at the precision asked
 * for stands in for the GPU, so that the self-test and the fallback around it run here. */
static int cuda_candidate(const p3_model_params *p, p3_backend **ret, bool *fake, char *why,
                          size_t why_len) {
        p3_backend_options opt = { .limit_bytes = p->memory_max, .precision = p->precision };
        p3_backend *be = NULL;
        int r = p3_backend_cuda_new(&opt, why, why_len, &be);
        if (r == -ENODEV && getenv("P3_TEST_FAKE_CUDA")) {
                opt.threads = p->threads;
                r = p3_backend_cpu_new(&opt, &be);
                *fake = r >= 0;
        }
        if (r < 0)
                return r;
        char test_why[200];
        r = p3_engine_selftest(be, false, NULL, NULL, test_why, sizeof(test_why));
        if (r < 0) {
                snprintf(why, why_len, "the CUDA self-test failed (%s)", test_why);
                p3_backend_free(be);
                *fake = false;
                return r;
        }
        *ret = be;
        return 0;
}

/* The CPU backend, for a model that asked for it or for which the GPU failed. */
static int open_cpu(const p3_model_params *p, p3_backend **ret, p3_err *err) {
        /* FP16 is the GPU's precision: on the CPU it means what AUTO picks there. */
        p3_precision cpu_precision = p->backend != P3_BACKEND_CPU &&
                                                     p->precision == P3_PRECISION_FP16
                                             ? P3_PRECISION_AUTO
                                             : p->precision;
        p3_backend_options opt = { .threads = p->threads, .limit_bytes = 0,
                                   .precision = cpu_precision };
        int r = p3_backend_cpu_new(&opt, ret);
        if (r == -EOPNOTSUPP) {
                char auto_why[128];
                (void) p3_cpu_auto_precision(auto_why, sizeof(auto_why));
                return p3_errf(err, r, "precision %s cannot run on this CPU backend (auto gives %s)",
                               p3_precision_to_string(p->precision), auto_why);
        }
        if (r < 0)
                return p3_errf(err, r, "cannot start the CPU backend: %s", p3_strerror(r));
        return 0;
}

/* The backend asked for, or the CPU with the reason in why: AUTO and CUDA try the GPU first
 * (*gpu says whether they got it). */
static int open_backend(const p3_model_params *p, p3_backend **ret, bool *fake, bool *gpu,
                        char *why, size_t why_len, p3_err *err) {
        *gpu = false;
        if (p->backend != P3_BACKEND_CPU) {
                int r = cuda_candidate(p, ret, fake, why, why_len);
                if (r >= 0) {
                        *gpu = true;
                        return 0;
                }
                /* AUTO on a machine without a GPU: the CPU is what was expected, nothing to
                 * report. Asked for CUDA, or a GPU that failed, is worth a sentence. */
                if (r == -ENODEV && p->backend == P3_BACKEND_AUTO)
                        why[0] = 0;
        }
        p3_err cpu_err = {};
        int r = open_cpu(p, ret, &cpu_err);
        /* neither runs it (BF16 asked of a GPU before sm_80 and of a CPU without BF16): both
         * reasons, the GPU's first */
        if (r < 0 && why[0])
                return p3_errf(err, r, "not on the GPU (%s), nor on the CPU: %s", why,
                               p3_err_msg(&cpu_err, r));
        return r < 0 ? p3_errf(err, r, "%s", p3_err_msg(&cpu_err, r)) : 0;
}

/* The weights on the backend; on the GPU, a failure that is not the weights' own (a model over
 * the memory cap, an upload the device refused) moves them to the CPU, with the reason in why,
 * as a GPU that fails its self-test does. A tensor missing or misshapen fails on any device. */
static int build_model(const p3_model_params *p, const p3_weights *w, p3_backend **be, bool gpu,
                       bool *fake, char *why, size_t why_len, p3_model **ret, p3_err *err) {
        p3_err gpu_err = {}; /* the reason why may carry: the caller's err may be NULL */
        int r = p3_model_new(*be, w, ret, &gpu_err);
        if (r >= 0)
                return 0;
        if (!gpu || r == -ENOENT || r == -EINVAL)
                return p3_errf(err, r, "%s", p3_err_msg(&gpu_err, r));
        if (r == -ENOMEM && p->memory_max)
                snprintf(why, why_len, "the model does not fit in the %zu MiB of GPU memory "
                         "allowed (%.150s)", p->memory_max >> 20, p3_err_msg(&gpu_err, r));
        else
                snprintf(why, why_len, "the model could not be put on the GPU (%.180s)",
                         p3_err_msg(&gpu_err, r));
        p3_backend_free(*be);
        *be = NULL;
        *fake = false;
        r = open_cpu(p, be, err);
        if (r < 0)
                return r;
        return p3_model_new(*be, w, ret, err);
}

int p3_model_open(const p3_weights *w, const p3_model_params *params, p3_model **ret,
                  p3_err *err) {
        p3_model_params p = params ? *params : (p3_model_params) {};
        p3_backend *be = NULL;
        char why[256] = "";
        bool fake = false, gpu = false;
        int r = open_backend(&p, &be, &fake, &gpu, why, sizeof(why), err);
        if (r < 0)
                return r;
        p3_model *m = NULL;
        r = build_model(&p, w, &be, gpu, &fake, why, sizeof(why), &m, err);
        if (r < 0) {
                p3_backend_free(be);
                return r;
        }
        m->owns_backend = true;
        m->fake_cuda = fake;
        snprintf(m->fallback_reason, sizeof(m->fallback_reason), "%s", why);
        *ret = m;
        return 0;
}

const char *p3_model_device(const p3_model *m) {
        return m->be->device;
}

const char *p3_model_backend_name(const p3_model *m) {
        return m->be->ops->name;
}

p3_precision p3_model_precision(const p3_model *m) {
        return m->be->precision;
}

const char *p3_model_fallback_reason(const p3_model *m) {
        return m->fallback_reason;
}

int p3_model_device_error(p3_model *m, char *why, size_t why_len) {
        if (m->fake_cuda && getenv("P3_TEST_DEVICE_LOST")) {
                snprintf(why, why_len, "the device was lost (test hook)");
                return -EIO;
        }
        return m->be->ops->device_error ? m->be->ops->device_error(m->be, why, why_len) : 0;
}

bool p3_model_on_gpu(const p3_model *m) {
        return m->fake_cuda || strcmp(m->be->ops->name, "cuda") == 0;
}

bool p3_model_weights_copied(const p3_model *m) {
        return m->be->weights_copied;
}

const p3_config *p3_model_config(const p3_model *m) {
        return &m->cfg;
}

p3_backend *p3_model_backend(const p3_model *m) {
        return m->be;
}
