/* SPDX-License-Identifier: MIT */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf, strndup, mkostemp */
#endif
#include "model_config.h"

#include <json-c/json.h>
#include <string.h>

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);
DEFINE_TRIVIAL_CLEANUP_FUNC(json_tokener *, json_tokener_free);

static const char *const order_names[] = {
        [P3_ORDER_Z] = "z",
        [P3_ORDER_Z_TRANS] = "z-trans",
        [P3_ORDER_HILBERT] = "hilbert",
        [P3_ORDER_HILBERT_TRANS] = "hilbert-trans",
};

const char *p3_order_name(p3_order o) {
        return (unsigned) o < ELEMENTSOF(order_names) ? order_names[o] : "?";
}

static int sum_channels(const p3_config *cfg) {
        int s = 0;
        for (int i = 0; i < cfg->num_stages; i++)
                s += cfg->channels[i];
        return s;
}

void p3_config_default(p3_config *cfg) {
        static const int depths[] = { 3, 3, 3, 12, 3 }, channels[] = { 48, 96, 192, 384, 512 },
                         heads[] = { 3, 6, 12, 24, 32 };

        *cfg = (p3_config) {
                .in_channels = 9,
                .num_stages = 5,
                .num_orders = 4,
                .orders = { P3_ORDER_Z, P3_ORDER_Z_TRANS, P3_ORDER_HILBERT, P3_ORDER_HILBERT_TRANS },
                .shuffle_orders = true,
                .mlp_ratio = 4,
                .mask_token = true,
        };
        for (int i = 0; i < 5; i++) {
                cfg->depths[i] = depths[i];
                cfg->channels[i] = channels[i];
                cfg->num_heads[i] = heads[i];
                cfg->patch_size[i] = 1024;
                if (i < 4)
                        cfg->stride[i] = 2;
        }
        cfg->concat_width = sum_channels(cfg);
}

/* ---- typed getters: each names the key when the value has the wrong type ------------------- */

static int get_bool(json_object *o, const char *key, const char *name, bool *v, p3_err *err) {
        json_object *j;
        if (!json_object_object_get_ex(o, key, &j))
                return 0;
        if (!json_object_is_type(j, json_type_boolean))
                return p3_errf(err, -EINVAL, "%s: \"%s\" must be true or false", name, key);
        *v = json_object_get_boolean(j);
        return 1;
}

static int get_int(json_object *j, int lo, int hi, int *v) {
        if (json_object_is_type(j, json_type_double)) {
                /* "mlp_ratio": 4.0 is written by Python configs; accept integral doubles */
                double d = json_object_get_double(j);
                if (d != (double) (int64_t) d)
                        return -EINVAL;
        } else if (!json_object_is_type(j, json_type_int))
                return -EINVAL;
        int64_t x = json_object_get_int64(j);
        if (x < lo || x > hi)
                return -ERANGE;
        *v = (int) x;
        return 0;
}

/* An array of integers in [lo, hi]; returns its length, 0 when the key is absent. */
static int get_int_array(json_object *o, const char *key, const char *name, int lo, int hi,
                         int *out, p3_err *err) {
        json_object *j;
        if (!json_object_object_get_ex(o, key, &j))
                return 0;
        if (!json_object_is_type(j, json_type_array))
                return p3_errf(err, -EINVAL, "%s: \"%s\" must be an array of integers", name, key);
        size_t n = json_object_array_length(j);
        if (n < 1 || n > P3_MAX_STAGES)
                return p3_errf(err, -EINVAL, "%s: \"%s\" has %zu entries; 1 to %d stages are supported",
                               name, key, n, P3_MAX_STAGES);
        for (size_t i = 0; i < n; i++)
                if (get_int(json_object_array_get_idx(j, i), lo, hi, &out[i]) < 0)
                        return p3_errf(err, -EINVAL, "%s: \"%s\"[%zu] must be an integer in %d..%d",
                                       name, key, i, lo, hi);
        return (int) n;
}

static int parse_orders(json_object *o, const char *name, p3_config *cfg, p3_err *err) {
        json_object *j;
        if (!json_object_object_get_ex(o, "order", &j))
                return 0;
        if (json_object_is_type(j, json_type_string)) {
                /* upstream also accepts a single order name */
                cfg->num_orders = 1;
                const char *s = json_object_get_string(j);
                for (size_t k = 0; k < ELEMENTSOF(order_names); k++)
                        if (strcmp(s, order_names[k]) == 0) {
                                cfg->orders[0] = (p3_order) k;
                                return 0;
                        }
                return p3_errf(err, -EINVAL, "%s: \"order\" has unknown order name \"%s\"", name, s);
        }
        if (!json_object_is_type(j, json_type_array))
                return p3_errf(err, -EINVAL, "%s: \"order\" must be an array of order names", name);
        size_t n = json_object_array_length(j);
        if (n < 1 || n > P3_NUM_ORDERS_MAX)
                return p3_errf(err, -EINVAL, "%s: \"order\" has %zu entries; 1 to %d are supported",
                               name, n, P3_NUM_ORDERS_MAX);
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(j, i);
                const char *s = json_object_is_type(e, json_type_string) ? json_object_get_string(e) : "";
                size_t k;
                for (k = 0; k < ELEMENTSOF(order_names); k++)
                        if (strcmp(s, order_names[k]) == 0)
                                break;
                if (k == ELEMENTSOF(order_names))
                        return p3_errf(err, -EINVAL, "%s: \"order\" has unknown order name \"%s\"", name, s);
                cfg->orders[i] = (p3_order) k;
        }
        cfg->num_orders = (int) n;
        return 0;
}

/* Options that change the network in ways this engine does not implement. */
static int refuse_unsupported(json_object *o, const char *name, p3_err *err) {
        static const struct {
                const char *key;
                bool supported;
        } flags[] = {
                { "enable_rpe", false }, { "pre_norm", true }, { "enc_mode", true }, { "qkv_bias", true },
        };
        json_object *j;

        for (size_t i = 0; i < ELEMENTSOF(flags); i++) {
                bool v = flags[i].supported;
                int r = get_bool(o, flags[i].key, name, &v, err);
                if (r < 0)
                        return r;
                if (v != flags[i].supported)
                        return p3_errf(err, -EOPNOTSUPP, "%s: \"%s\": %s is not supported by this engine",
                                       name, flags[i].key, v ? "true" : "false");
        }
        const char *nullable[] = { "qk_scale", "layer_scale" };
        for (size_t i = 0; i < ELEMENTSOF(nullable); i++)
                if (json_object_object_get_ex(o, nullable[i], &j) && j)
                        return p3_errf(err, -EOPNOTSUPP, "%s: \"%s\" must be null; this engine does not implement it",
                                       name, nullable[i]);
        return 0;
}

/* Read the per-stage arrays; every one that is given must agree on the stage count. */
static int parse_stages(json_object *o, const char *name, p3_config *cfg, p3_err *err) {
        static const char *const keys[] = { "enc_depths", "enc_channels", "enc_num_head", "enc_patch_size" };
        int *dst[] = { cfg->depths, cfg->channels, cfg->num_heads, cfg->patch_size };
        int stages = -1;
        const char *first = NULL;

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                int n = get_int_array(o, keys[i], name, 1, 1 << 20, dst[i], err);
                if (n < 0)
                        return n;
                if (n == 0)
                        n = cfg->num_stages; /* absent: the default stays */
                if (stages >= 0 && n != stages)
                        return p3_errf(err, -EINVAL, "%s: \"%s\" has %d entries but \"%s\" has %d",
                                       name, keys[i], n, first, stages);
                stages = n;
                first = keys[i];
        }
        cfg->num_stages = stages;

        int n = get_int_array(o, "stride", name, 1, 64, cfg->stride, err);
        if (n < 0)
                return n;
        if (n > 0 && n != stages - 1)
                return p3_errf(err, -EINVAL, "%s: \"stride\" has %d entries but there are %d stages",
                               name, n, stages);
        if (n == 0 && stages > 1 && stages != 5)
                return p3_errf(err, -EINVAL, "%s: \"stride\" is missing for %d stages", name, stages);
        for (int s = 0; s < stages - 1; s++)
                if (cfg->stride[s] != 2)
                        return p3_errf(err, -EOPNOTSUPP, "%s: \"stride\"[%d] is %d; only 2 is supported",
                                       name, s, cfg->stride[s]);
        for (int s = 0; s < stages; s++)
                if (cfg->channels[s] != cfg->num_heads[s] * P3_HEAD_DIM)
                        return p3_errf(err, -EOPNOTSUPP,
                                       "%s: \"enc_channels\"[%d] / \"enc_num_head\"[%d] = %d/%d is not the supported head dim %d",
                                       name, s, s, cfg->channels[s], cfg->num_heads[s], P3_HEAD_DIM);
        return 0;
}

static int parse_object(json_object *root, const char *name, p3_config *cfg, p3_err *err) {
        json_object *o = root, *j;
        int r;

        if (json_object_object_get_ex(root, "sonata", &j)) {
                if (!json_object_is_type(j, json_type_object))
                        return p3_errf(err, -EINVAL, "%s: \"sonata\" must be an object", name);
                o = j;
        }

        p3_config_default(cfg);
        r = refuse_unsupported(o, name, err);
        if (r < 0)
                return r;

        if (json_object_object_get_ex(o, "in_channels", &j)) {
                if (get_int(j, 0, 1 << 20, &cfg->in_channels) < 0 || cfg->in_channels != 9)
                        return p3_errf(err, -EOPNOTSUPP, "%s: \"in_channels\" must be 9 (coord, colour, normal)",
                                       name);
        }
        if (json_object_object_get_ex(o, "mlp_ratio", &j) && get_int(j, 1, 64, &cfg->mlp_ratio) < 0)
                return p3_errf(err, -EINVAL, "%s: \"mlp_ratio\" must be an integer in 1..64", name);
        if ((r = get_bool(o, "shuffle_orders", name, &cfg->shuffle_orders, err)) < 0 ||
            (r = get_bool(o, "mask_token", name, &cfg->mask_token, err)) < 0)
                return r;
        r = parse_orders(o, name, cfg, err);
        if (r < 0)
                return r;
        r = parse_stages(o, name, cfg, err);
        if (r < 0)
                return r;
        cfg->concat_width = sum_channels(cfg);

        /* The golden configs also state the width outside "sonata": it must agree. */
        int cw;
        if (json_object_object_get_ex(root, "concat_width", &j) &&
            (get_int(j, 0, 1 << 30, &cw) < 0 || cw != cfg->concat_width))
                return p3_errf(err, -EINVAL, "%s: \"concat_width\" disagrees with the sum of enc_channels (%d)",
                               name, cfg->concat_width);
        return 0;
}

int p3_config_parse(const char *json, const char *name, p3_config *cfg, p3_err *err) {
        size_t len = strlen(json);
        if (!name)
                name = "(config)";
        if (len > INT32_MAX)
                return p3_errf(err, -EFBIG, "%s: config is too large", name);

        _cleanup_(json_tokener_freep) json_tokener *tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        _cleanup_(json_object_putp) json_object *root = json_tokener_parse_ex(tok, json, (int) len);
        enum json_tokener_error je = json_tokener_get_error(tok);
        if (!root || je != json_tokener_success)
                return p3_errf(err, -EINVAL, "%s: config JSON does not parse (%s)", name,
                               je == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(je));
        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
                if (!strchr(" \t\r\n", json[i]))
                        return p3_errf(err, -EINVAL, "%s: config JSON has trailing garbage", name);
        if (!json_object_is_type(root, json_type_object))
                return p3_errf(err, -EINVAL, "%s: config JSON is not an object", name);

        p3_config c;
        int r = parse_object(root, name, &c, err);
        if (r < 0)
                return r;
        *cfg = c;
        return 0;
}

int p3_config_load(const char *path, p3_config *cfg, p3_err *err) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return p3_errf(err, -errno, "%s: cannot open config: %s", path, strerror(errno));

        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;
        for (;;) {
                if (cap - len < 4096) {
                        if (cap > (16u << 20))
                                return p3_errf(err, -EFBIG, "%s: config file is larger than 16 MiB", path);
                        cap = cap ? 2 * cap : 8192;
                        char *b = realloc(buf, cap + 1);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                }
                size_t k = fread(buf + len, 1, cap - len, f);
                len += k;
                if (k == 0)
                        break;
        }
        if (ferror(f))
                return p3_errf(err, -EIO, "%s: cannot read config", path);
        buf[len] = 0;
        if (strlen(buf) != len)
                return p3_errf(err, -EINVAL, "%s: config file contains a NUL byte", path);
        return p3_config_parse(buf, path, cfg, err);
}
