/* SPDX-License-Identifier: MIT */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf, strndup, mkostemp */
#endif
#include "synth.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "weights.h"

uint64_t p3_synth_fnv1a64(const char *name) {
        uint64_t h = UINT64_C(0xCBF29CE484222325);
        for (const unsigned char *p = (const unsigned char *) name; *p; p++) {
                h ^= *p;
                h *= UINT64_C(0x100000001B3);
        }
        return h;
}

uint64_t p3_synth_splitmix64(uint64_t s) {
        uint64_t z = s + UINT64_C(0x9E3779B97F4A7C15);
        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        return z ^ (z >> 31);
}

static bool ends_with(const char *s, const char *suffix) {
        size_t n = strlen(s), k = strlen(suffix);
        return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* The value rules of SYNTH.md as v = offset + scale * g(u), with g = u or |u|; every branch
 * is one of these forms, evaluated in double and rounded once. */
typedef struct rule {
        double offset, scale;
        bool abs_u;
} rule;

static rule pick_rule(const char *name, int ndim, const int64_t *shape, int64_t numel) {
        if (ends_with(name, "running_var"))
                return (rule) { 1.0, 0.5, true };
        if (ends_with(name, "running_mean"))
                return (rule) { 0.0, 0.1, false };
        if (ndim >= 2) {
                int64_t fan_in = shape[0] > 0 ? numel / shape[0] : 1;
                return (rule) { 0.0, 1.0 / sqrt((double) fan_in), false };
        }
        if (ends_with(name, "weight"))
                return (rule) { 1.0, 0.1, false };
        if (ends_with(name, "bias"))
                return (rule) { 0.0, 0.05, false };
        return (rule) { 0.0, 0.02, false };
}

void p3_synth_fill(const char *name, int ndim, const int64_t *shape, float *out) {
        int64_t numel = 1;
        for (int d = 0; d < ndim; d++)
                numel *= shape[d];

        if (ends_with(name, "num_batches_tracked")) {
                memset(out, 0, (size_t) numel * sizeof(float));
                return;
        }

        rule r = pick_rule(name, ndim, shape, numel);
        uint64_t h = p3_synth_fnv1a64(name);
        for (int64_t i = 0; i < numel; i++) {
                uint64_t m = p3_synth_splitmix64(h + (uint64_t) i) >> 40;
                double u = (double) m / 16777216.0 * 2.0 - 1.0;
                /* offset 0 adds nothing, so the matrix/bias forms match the recipe exactly */
                out[i] = (float) (r.offset + r.scale * (r.abs_u ? fabs(u) : u));
        }
}

/* ---- writing a checkpoint ----------------------------------------------------------------- */

typedef struct synth_job {
        const p3_weight_spec *spec;
        st_dtype dtype;
        double gain; /* 1.0 except on the last Linear of the mask and IoU heads */
        float *scratch; /* numel floats for the F16 path, shared by all jobs */
} synth_job;

/* The last Linear ("<head>.4.") of every mask and IoU head; the feature "mlp" and the
 * global/IoU feature heads are left alone. */
static bool is_gain_target(const char *name) {
        static const char *const heads[] = {
                "seg_mlp_1.4.", "seg_mlp_2.4.", "seg_mlp_3.4.", "seg_s2_mlp_1.4.",
                "seg_s2_mlp_2.4.", "seg_s2_mlp_3.4.", "iou_mlp_out.4.",
        };
        for (size_t i = 0; i < ELEMENTSOF(heads); i++)
                if (strncmp(name, heads[i], strlen(heads[i])) == 0)
                        return true;
        return false;
}

static int synth_fill_cb(void *userdata, void *dst, size_t nbytes) {
        const synth_job *j = userdata;
        const p3_weight_spec *s = j->spec;
        float *f = j->dtype == ST_F32 ? dst : j->scratch;

        if (nbytes != (size_t) s->numel * st_dtype_size(j->dtype))
                return -EINVAL;
        p3_synth_fill(s->name, s->ndim, s->shape, f);
        if (j->gain != 1.0)
                for (int64_t i = 0; i < s->numel; i++)
                        f[i] = (float) ((double) f[i] * j->gain);
        if (j->dtype == ST_F16) {
                uint16_t *h = dst;
                for (int64_t i = 0; i < s->numel; i++)
                        h[i] = p3_float_to_half(f[i]);
        }
        return 0;
}

int p3_synth_write(const p3_config *cfg, const char *path, st_dtype dtype, double head_gain,
                   p3_err *err) {
        if (dtype != ST_F32 && dtype != ST_F16)
                return p3_errf(err, -EINVAL, "%s: synthetic weights can only be written as F32 or F16", path);
        if (!isfinite(head_gain))
                return p3_errf(err, -EINVAL, "%s: head gain must be a finite number", path);

        _cleanup_free_ p3_weight_spec *specs = NULL;
        size_t n = 0;
        int r = p3_weight_specs(cfg, &specs, &n);
        if (r < 0)
                return p3_errf(err, r, "%s: cannot build the weight list: %s", path, strerror(-r));

        int64_t max_numel = 1;
        for (size_t i = 0; i < n; i++)
                max_numel = MAX(max_numel, specs[i].numel);
        _cleanup_free_ float *scratch = dtype == ST_F16 ? malloc((size_t) max_numel * sizeof(float)) : NULL;
        _cleanup_free_ synth_job *jobs = calloc(n ? n : 1, sizeof(*jobs));
        _cleanup_(st_writer_freep) st_writer *w = NULL;
        if ((dtype == ST_F16 && !scratch) || !jobs || st_writer_new(&w) < 0)
                return p3_errf(err, -ENOMEM, "%s: out of memory", path);

        for (size_t i = 0; i < n; i++) {
                jobs[i] = (synth_job) {
                        .spec = &specs[i],
                        .dtype = dtype,
                        .gain = is_gain_target(specs[i].name) ? head_gain : 1.0,
                        .scratch = scratch,
                };
                r = st_writer_add_fill(w, specs[i].name, dtype, specs[i].ndim, specs[i].shape,
                                       synth_fill_cb, &jobs[i]);
                if (r < 0)
                        return p3_errf(err, r, "%s: cannot add tensor %s: %s", path, specs[i].name, strerror(-r));
        }

        char gain[32];
        snprintf(gain, sizeof(gain), "%.17g", head_gain);
        if (st_writer_add_meta(w, "recipe", "synth (see SYNTH.md)") < 0 ||
            st_writer_add_meta(w, "head_gain", gain) < 0)
                return p3_errf(err, -ENOMEM, "%s: out of memory", path);
        return st_writer_write_file(w, path, err);
}
