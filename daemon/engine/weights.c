/* SPDX-License-Identifier: MIT */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf, strndup, mkostemp */
#endif
#include "weights.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "synth.h"

/* ---- the expected key list ---------------------------------------------------------------- */

typedef struct spec_list {
        p3_weight_spec *v;
        size_t n, cap;
        int r; /* first error, sticky, so that the builders need no checks of their own */
} spec_list;

static void add(spec_list *l, int ndim, const int64_t *shape, const char *fmt, ...) _printf_(4, 5);
static void add(spec_list *l, int ndim, const int64_t *shape, const char *fmt, ...) {
        if (l->r < 0)
                return;
        if (l->n == l->cap) {
                size_t cap = l->cap ? 2 * l->cap : 256;
                p3_weight_spec *v = realloc(l->v, cap * sizeof(*v));
                if (!v) {
                        l->r = -ENOMEM;
                        return;
                }
                l->v = v;
                l->cap = cap;
        }
        p3_weight_spec *s = &l->v[l->n];
        *s = (p3_weight_spec) { .ndim = ndim, .numel = 1 };
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(s->name, sizeof(s->name), fmt, ap);
        va_end(ap);
        if (k < 0 || (size_t) k >= sizeof(s->name)) {
                l->r = -ENAMETOOLONG;
                return;
        }
        for (int d = 0; d < ndim; d++) {
                s->shape[d] = shape[d];
                s->numel *= shape[d];
        }
        l->n++;
}

/* Linear(in -> out): weight [out, in], bias [out]. */
static void add_linear(spec_list *l, const char *prefix, int64_t out, int64_t in) {
        add(l, 2, (int64_t[]) { out, in }, "%s.weight", prefix);
        add(l, 1, (int64_t[]) { out }, "%s.bias", prefix);
}

static void add_norm(spec_list *l, const char *prefix, int64_t c) {
        add(l, 1, (int64_t[]) { c }, "%s.weight", prefix);
        add(l, 1, (int64_t[]) { c }, "%s.bias", prefix);
}

/* Sequential(Linear, GELU, Linear, GELU, Linear): indices 0, 2, 4. */
static void add_head(spec_list *l, const char *name, int64_t in, int64_t hidden, int64_t out) {
        char p[64];
        snprintf(p, sizeof(p), "%s.0", name);
        add_linear(l, p, hidden, in);
        snprintf(p, sizeof(p), "%s.2", name);
        add_linear(l, p, hidden, hidden);
        snprintf(p, sizeof(p), "%s.4", name);
        add_linear(l, p, out, hidden);
}

static void add_block(spec_list *l, const p3_config *cfg, int s, int b) {
        int64_t c = cfg->channels[s], h = (int64_t) cfg->mlp_ratio * c;
        char p[96];

        add(l, 5, (int64_t[]) { c, 3, 3, 3, c }, "sonata.enc.enc%d.block%d.cpe.0.weight", s, b);
        add(l, 1, (int64_t[]) { c }, "sonata.enc.enc%d.block%d.cpe.0.bias", s, b);
#define BLOCK_PREFIX(suffix) (snprintf(p, sizeof(p), "sonata.enc.enc%d.block%d." suffix, s, b), p)
        add_linear(l, BLOCK_PREFIX("cpe.1"), c, c);
        add_norm(l, BLOCK_PREFIX("cpe.2"), c);
        add_norm(l, BLOCK_PREFIX("norm1.0"), c);
        add_linear(l, BLOCK_PREFIX("attn.qkv"), 3 * c, c);
        add_linear(l, BLOCK_PREFIX("attn.proj"), c, c);
        add_norm(l, BLOCK_PREFIX("norm2.0"), c);
        add_linear(l, BLOCK_PREFIX("mlp.0.fc1"), h, c);
        add_linear(l, BLOCK_PREFIX("mlp.0.fc2"), c, h);
#undef BLOCK_PREFIX
}

static void add_backbone(spec_list *l, const p3_config *cfg) {
        int64_t c0 = cfg->channels[0];
        char p[64];

        if (cfg->mask_token)
                add(l, 2, (int64_t[]) { 1, c0 }, "sonata.embedding.mask_token");
        add_linear(l, "sonata.embedding.stem.linear", c0, cfg->in_channels);
        add_norm(l, "sonata.embedding.stem.norm", c0);
        for (int s = 0; s < cfg->num_stages; s++) {
                if (s > 0) {
                        snprintf(p, sizeof(p), "sonata.enc.enc%d.down.proj", s);
                        add_linear(l, p, cfg->channels[s], cfg->channels[s - 1]);
                        snprintf(p, sizeof(p), "sonata.enc.enc%d.down.norm.0", s);
                        add_norm(l, p, cfg->channels[s]);
                }
                for (int b = 0; b < cfg->depths[s]; b++)
                        add_block(l, cfg, s, b);
        }
}

/* The P3-SAM heads. Inputs: [feat 512 | point 3 | prompt 3] = 518; stage 2 adds the 3 stage-1
 * logits (521) and is prefixed by the 256-wide global feature (777). */
static void add_heads(spec_list *l, const p3_config *cfg) {
        const int64_t f = P3_FEAT_DIM, in1 = f + 6, in_g = in1 + 3, in2 = 256 + in_g;
        char name[32];

        add_head(l, "mlp", cfg->concat_width, f, f);
        for (int k = 1; k <= 3; k++) {
                snprintf(name, sizeof(name), "seg_mlp_%d", k);
                add_head(l, name, in1, f, 1);
        }
        add_head(l, "seg_s2_mlp_g", in_g, 256, 256);
        for (int k = 1; k <= 3; k++) {
                snprintf(name, sizeof(name), "seg_s2_mlp_%d", k);
                add_head(l, name, in2, 256, 1);
        }
        add_head(l, "iou_mlp", in2, 256, 256);
        add_head(l, "iou_mlp_out", 256, 256, 3);
}

int p3_weight_specs(const p3_config *cfg, p3_weight_spec **ret, size_t *n) {
        spec_list l = {};

        add_backbone(&l, cfg);
        add_heads(&l, cfg);
        if (l.r < 0) {
                free(l.v);
                return l.r;
        }
        *ret = l.v;
        *n = l.n;
        return 0;
}

size_t p3_weight_specs_total(const p3_weight_spec *specs, size_t n) {
        size_t t = 0;
        for (size_t i = 0; i < n; i++)
                t += (size_t) specs[i].numel;
        return t;
}

/* ---- name index --------------------------------------------------------------------------- */

static int build_index(p3_weights *w) {
        size_t size = 64;
        while (size < 2 * w->n)
                size *= 2;
        w->slots = calloc(size, sizeof(uint32_t));
        if (!w->slots)
                return -ENOMEM;
        w->slot_mask = size - 1;
        for (size_t i = 0; i < w->n; i++) {
                size_t s = p3_synth_fnv1a64(w->specs[i].name) & w->slot_mask;
                while (w->slots[s])
                        s = (s + 1) & w->slot_mask;
                w->slots[s] = (uint32_t) i + 1;
        }
        return 0;
}

int p3_weights_index(const p3_weights *w, const char *name) {
        if (!w || !w->slots)
                return -ENOENT;
        for (size_t s = p3_synth_fnv1a64(name) & w->slot_mask; w->slots[s]; s = (s + 1) & w->slot_mask)
                if (strcmp(w->specs[w->slots[s] - 1].name, name) == 0)
                        return (int) w->slots[s] - 1;
        return -ENOENT;
}

const float *p3_weights_get(const p3_weights *w, const char *name) {
        int i = p3_weights_index(w, name);
        return i < 0 ? NULL : w->data[i];
}

const p3_weight_spec *p3_weights_spec(const p3_weights *w, const char *name) {
        int i = p3_weights_index(w, name);
        return i < 0 ? NULL : &w->specs[i];
}

void p3_weights_free(p3_weights *w) {
        if (!w)
                return;
        free(w->specs);
        free(w->data);
        free(w->owned);
        free(w->slots);
        st_close(w->file);
        free(w);
}

static int weights_new(const p3_config *cfg, p3_weights **ret) {
        _cleanup_(p3_weights_freep) p3_weights *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->cfg = *cfg;
        int r = p3_weight_specs(cfg, &w->specs, &w->n);
        if (r < 0)
                return r;
        w->total_params = p3_weight_specs_total(w->specs, w->n);
        w->data = calloc(w->n, sizeof(float *));
        if (!w->data)
                return -ENOMEM;
        r = build_index(w);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(w);
        return 0;
}

/* ---- loading ------------------------------------------------------------------------------ */

static void format_shape(char *buf, size_t size, int ndim, const int64_t *shape) {
        size_t k = (size_t) snprintf(buf, size, "[");
        for (int d = 0; d < ndim && k < size; d++)
                k += (size_t) snprintf(buf + k, size - k, "%s%lld", d ? ", " : "", (long long) shape[d]);
        if (k < size)
                snprintf(buf + k, size - k, "]");
}

static bool shape_equal(const st_tensor *t, const p3_weight_spec *s) {
        if (t->ndim != s->ndim)
                return false;
        for (int d = 0; d < s->ndim; d++)
                if (t->shape[d] != s->shape[d])
                        return false;
        return true;
}

/* Match every file tensor to a spec: src[spec] = tensor index. */
static int match_tensors(p3_weights *w, const char *path, size_t *src, p3_err *err) {
        const st_file *f = w->file;

        for (size_t i = 0; i < w->n; i++)
                src[i] = SIZE_MAX;
        for (size_t i = 0; i < f->n_tensors; i++) {
                const st_tensor *t = &f->tensors[i];
                const char *name = t->name;
                if (strncmp(name, "dit.", 4) == 0) /* upstream's loader strips this prefix */
                        name += 4;
                int k = p3_weights_index(w, name);
                if (k < 0)
                        return p3_errf(err, -EINVAL, "%s: unexpected tensor \"%s\" (extra key, not in this model config)",
                                       path, t->name);
                if (src[k] != SIZE_MAX)
                        return p3_errf(err, -EINVAL, "%s: tensor \"%s\" is present twice (with and without \"dit.\")",
                                       path, name);
                const p3_weight_spec *s = &w->specs[k];
                if (!shape_equal(t, s)) {
                        char got[128], want[128];
                        format_shape(got, sizeof(got), t->ndim, t->shape);
                        format_shape(want, sizeof(want), s->ndim, s->shape);
                        return p3_errf(err, -EINVAL, "%s: tensor \"%s\" has shape %s but the config expects %s",
                                       path, name, got, want);
                }
                if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
                        return p3_errf(err, -EINVAL, "%s: tensor \"%s\" has dtype %s; only F32, F16 and BF16 are accepted",
                                       path, name, st_dtype_name(t->dtype));
                src[k] = i;
        }
        for (size_t i = 0; i < w->n; i++)
                if (src[i] == SIZE_MAX)
                        return p3_errf(err, -EINVAL, "%s: tensor \"%s\" is missing", path, w->specs[i].name);
        return 0;
}

/* F32 data aligned for float access is used in place; everything else is converted. */
static bool zero_copy(const st_tensor *t) {
        return t->dtype == ST_F32 && ((uintptr_t) t->data % _Alignof(float)) == 0;
}

int p3_weights_load(const char *path, const p3_config *cfg, p3_weights **ret, p3_err *err) {
        _cleanup_(p3_weights_freep) p3_weights *w = NULL;
        int r = weights_new(cfg, &w);
        if (r < 0)
                return p3_errf(err, r, "cannot build the weight list for %s: %s", path, strerror(-r));
        r = st_open(path, &w->file, err);
        if (r < 0)
                return r;

        _cleanup_free_ size_t *src = malloc(w->n * sizeof(size_t));
        if (!src)
                return -ENOMEM;
        r = match_tensors(w, path, src, err);
        if (r < 0)
                return r;
        w->synthetic = st_meta(w->file, "recipe") != NULL;
        w->origin = w->file->id;

        size_t owned = 0;
        for (size_t i = 0; i < w->n; i++)
                if (!zero_copy(&w->file->tensors[src[i]]))
                        owned += (size_t) w->specs[i].numel;
        if (owned) {
                w->owned = malloc(owned * sizeof(float));
                if (!w->owned)
                        return p3_errf(err, -ENOMEM, "%s: out of memory converting weights to FP32", path);
        }
        float *o = w->owned;
        for (size_t i = 0; i < w->n; i++) {
                const st_tensor *t = &w->file->tensors[src[i]];
                if (zero_copy(t)) {
                        w->data[i] = t->data;
                        continue;
                }
                r = st_to_f32(t, o);
                if (r < 0)
                        return p3_errf(err, r, "%s: cannot convert tensor \"%s\" to FP32", path, t->name);
                w->data[i] = o;
                o += w->specs[i].numel;
        }
        *ret = TAKE_PTR(w);
        return 0;
}

int p3_weights_synth(const p3_config *cfg, p3_weights **ret, p3_err *err) {
        _cleanup_(p3_weights_freep) p3_weights *w = NULL;
        int r = weights_new(cfg, &w);
        if (r < 0)
                return p3_errf(err, r, "cannot build the weight list: %s", strerror(-r));
        w->owned = malloc(MAX(w->total_params, (size_t) 1) * sizeof(float));
        if (!w->owned)
                return p3_errf(err, -ENOMEM, "out of memory for %zu synthetic weights", w->total_params);
        float *o = w->owned;
        for (size_t i = 0; i < w->n; i++) {
                p3_synth_fill(w->specs[i].name, w->specs[i].ndim, w->specs[i].shape, o);
                w->data[i] = o;
                o += w->specs[i].numel;
        }
        *ret = TAKE_PTR(w);
        return 0;
}

int p3_weights_open(const char *path, const char *config_path, p3_weights **ret, p3_err *err) {
        p3_config cfg;
        if (config_path) {
                int r = p3_config_load(config_path, &cfg, err);
                if (r < 0)
                        return r;
        } else
                p3_config_default(&cfg);
        return p3_weights_load(path, &cfg, ret, err);
}

bool p3_weights_synthetic(const p3_weights *w) {
        return w && w->synthetic;
}

/* ---- snapshots ---------------------------------------------------------------------------- */

/* Whether [p, p + nbytes) lies inside f's mapping (compared as integers: the pointers may
 * belong to different objects). */
static bool in_mapping(const st_file *f, const float *p, size_t nbytes) {
        uintptr_t a = (uintptr_t) p, m = (uintptr_t) f->map;
        return f->mapped && a >= m && a - m <= f->size && nbytes <= f->size - (a - m);
}

/* Tensor i of w into dst: from the file when it lives in the mapping, else from memory. */
static int copy_tensor(const p3_weights *w, size_t i, float *dst, p3_err *err) {
        size_t nbytes = (size_t) w->specs[i].numel * sizeof(float);
        const st_file *f = w->file;
        if (f && f->fd >= 0 && in_mapping(f, w->data[i], nbytes))
                return st_read(f, (uintptr_t) w->data[i] - (uintptr_t) f->map, dst, nbytes, err);
        if (nbytes)
                memcpy(dst, w->data[i], nbytes);
        return 0;
}

/* Every tensor of w into s->owned, laid out in spec order. */
static int copy_tensors(const p3_weights *w, p3_weights *s, p3_err *err) {
        float *o = s->owned;
        for (size_t i = 0; i < w->n; i++) {
                int r = copy_tensor(w, i, o, err);
                if (r < 0)
                        return r;
                s->data[i] = o;
                o += w->specs[i].numel;
        }
        return 0;
}

int p3_weights_snapshot(const p3_weights *w, p3_weights **ret, p3_err *err) {
        const char *what = w->file ? w->file->path : "the weights";
        _cleanup_(p3_weights_freep) p3_weights *s = NULL;
        /* the same config gives the same specs and index as w's */
        int r = weights_new(&w->cfg, &s);
        if (r < 0)
                return p3_errf(err, r, "cannot build the weight list for a copy of %s: %s", what,
                               strerror(-r));
        if (s->n != w->n || s->total_params != w->total_params) /* not made by weights_new */
                return p3_errf(err, -EINVAL, "cannot copy %s: its tensors do not match its config", what);
        s->owned = malloc(MAX(w->total_params, (size_t) 1) * sizeof(float));
        if (!s->owned)
                return p3_errf(err, -ENOMEM, "out of memory for a %zu MB copy of %s",
                               DIV_ROUND_UP(w->total_params * sizeof(float), (size_t) 1 << 20), what);
        s->synthetic = w->synthetic;
        s->origin = w->origin;

        /* Checked on both sides of the reads: a rewrite that began before or during them shows
         * in size or mtime, so the copy is all of one file or not made. */
        if (w->file) {
                r = st_check_unchanged(w->file, err);
                if (r < 0)
                        return r;
        }
        r = copy_tensors(w, s, err);
        if (r < 0)
                return r;
        if (w->file) {
                r = st_check_unchanged(w->file, err);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(s);
        return 0;
}
