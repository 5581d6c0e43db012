/* SPDX-License-Identifier: MIT */
/* The synthetic-weight recipe: SYNTH.md's self-check table, bit equality with
 * golden/tiny/weights.safetensors, and the expected key lists against the golden files. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf, strndup, mkostemp */
#endif
#include <json-c/json.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "model_config.h"
#include "synth.h"
#include "test-util.h"
#include "weights.h"

static uint32_t fbits(float f) {
        uint32_t u;
        memcpy(&u, &f, sizeof(u));
        return u;
}

typedef struct selfcheck {
        const char *name;
        int ndim;
        int64_t shape[5];
        uint64_t h;
        int64_t idx[5];
        uint64_t x[5];
        uint32_t bits[5];
} selfcheck;

/* Straight from the SYNTH.md table. */
static const selfcheck table[] = {
        { "sonata.embedding.stem.linear.weight", 2, { 48, 9 }, 0x819a9ba58c4b56b2, { 0, 1, 2, 216, 431 },
          { 0xa4786441b6efcb1e, 0xab35e1d749f97777, 0x728b8c53d9e703d1, 0x82542723c150f916, 0x4c7bbed2808964a7 },
          { 0x3dc28215, 0x3de674b0, 0xbd0f84d5, 0x3bc6b7ab, 0xbe0960b0 } },
        { "sonata.enc.enc0.block0.cpe.0.weight", 5, { 48, 3, 3, 3, 48 }, 0xc31ce98c1aa88e18, { 0, 1, 2, 31104, 62207 },
          { 0x152115ef917a5eab, 0x4f4d989bc17b9612, 0x99b1987890bdbcf1, 0x58d20c3c1a7c4d35, 0x9aa7dfee94933b7e },
          { 0xbcbdfe14, 0xbc2d2500, 0x3bb6b600, 0xbc0b4e0e, 0x3bbd8d4e } },
        { "sonata.enc.enc0.block0.norm1.0.weight", 1, { 48 }, 0x9301ac2b5463b85d, { 0, 1, 2, 24, 47 },
          { 0xb3a46342c0a255f3, 0x7c706ea6ee4f2567, 0x712322126a434742, 0xfd56d06030ee46a2, 0xfbb9e5c6eb92a38b },
          { 0x3f852a0a, 0x3f7f49b0, 0x3f7d0707, 0x3f8c88ae, 0x3f8c5f64 } },
        { "mlp.0.bias", 1, { 512 }, 0x88d900daed03d821, { 0, 1, 2, 256, 511 },
          { 0x2e5d049a0490bfe2, 0x9a3a7abcdfc0bbee, 0x2c23cf5376c0a2a1, 0x83c4129ac8650c95, 0xd21c1398c489c236 },
          { 0xbd029e60, 0x3c27dca6, 0xbd062d1b, 0x3ac0d066, 0x3d03601e } },
        { "example.bn.running_var", 1, { 8 }, 0x949f994ce1666a32, { 0, 1, 2, 4, 7 },
          { 0x6150442027545491, 0x0d3cca75a57d5a29, 0x0bf8834e8fb49e49, 0x2d8bae9cb321b442, 0x10af09424c0910fa },
          { 0x3f8f57de, 0x3fb9619b, 0x3fba03be, 0x3fa93a29, 0x3fb7a87c } },
        { "example.bn.running_mean", 1, { 8 }, 0x013415cca7220320, { 0, 1, 2, 4, 7 },
          { 0x4d843fb38e07e2aa, 0xa6df39fd3392a351, 0x00894e9ae0dbb380, 0xc38a896b9359c0b1, 0x1717d40f5844b812 },
          { 0xbd218c03, 0x3cf8c7d3, 0xbdcbf11d, 0x3d5821b6, 0xbda7d9e0 } },
};

static void test_self_check(void) {
        CHECK(p3_synth_splitmix64(0) == 0xE220A8397B1DCDAFull);
        int n = 0;
        for (size_t t = 0; t < ELEMENTSOF(table); t++) {
                const selfcheck *c = &table[t];
                int64_t numel = 1;
                for (int d = 0; d < c->ndim; d++)
                        numel *= c->shape[d];
                float *v = malloc(numel * sizeof(float));
                CHECK(v);
                p3_synth_fill(c->name, c->ndim, c->shape, v);
                CHECK(p3_synth_fnv1a64(c->name) == c->h);
                for (int k = 0; k < 5; k++) {
                        CHECK(p3_synth_splitmix64(c->h + (uint64_t) c->idx[k]) == c->x[k]);
                        if (fbits(v[c->idx[k]]) != c->bits[k]) {
                                fprintf(stderr, "%s[%lld]: bits 0x%08x, want 0x%08x\n", c->name,
                                        (long long) c->idx[k], fbits(v[c->idx[k]]), c->bits[k]);
                                exit(EXIT_FAILURE);
                        }
                        n++;
                }
                free(v);
        }
        float z[3] = { 1, 1, 1 };
        p3_synth_fill("example.bn.num_batches_tracked", 1, (int64_t[]) { 3 }, z);
        CHECK(z[0] == 0 && z[1] == 0 && z[2] == 0);
        printf("self-check table: %d values bit-exact\n", n);
}

static void load_config(const char *rel, p3_config *cfg) {
        _cleanup_free_ char *p = test_shared_path(rel);
        CHECK(p);
        p3_err err = {};
        int r = p3_config_load(p, cfg, &err);
        if (r < 0) {
                fprintf(stderr, "%s\n", p3_err_msg(&err, r));
                exit(EXIT_FAILURE);
        }
}

/* The tiny spec list equals the file's tensors (names, order, shapes) and every value is
 * bit-identical to a recomputation; p3_weights_synth and p3_synth_write agree with it too. */
static void test_tiny_golden(const char *tmpdir) {
        _cleanup_free_ char *path = test_shared_path("golden/tiny/weights.safetensors");
        if (!path) {
                printf("golden/tiny/weights.safetensors not available: comparison skipped\n");
                return;
        }
        p3_config cfg;
        load_config("golden/tiny/config.json", &cfg);
        CHECK(cfg.concat_width == 160);

        _cleanup_(st_closep) st_file *f = test_open(path);
        _cleanup_free_ p3_weight_spec *specs = NULL;
        size_t n;
        CHECK_OK(p3_weight_specs(&cfg, &specs, &n));
        CHECK(n == 189 && f->n_tensors == 189);
        CHECK(p3_weight_specs_total(specs, n) == 4033353);

        _cleanup_(p3_weights_freep) p3_weights *syn = NULL;
        CHECK_OK(p3_weights_synth(&cfg, &syn, NULL));
        for (size_t i = 0; i < n; i++) {
                const st_tensor *t = &f->tensors[i];
                CHECK(strcmp(t->name, specs[i].name) == 0);
                CHECK(t->dtype == ST_F32 && t->ndim == specs[i].ndim && t->numel == specs[i].numel);
                for (int d = 0; d < t->ndim; d++)
                        CHECK(t->shape[d] == specs[i].shape[d]);
                CHECK(memcmp(t->data, p3_weights_get(syn, t->name), t->nbytes) == 0);
        }
        printf("tiny: %zu tensors, names/order/shapes and all values bit-identical\n", n);

        /* loaded through p3_weights_load (zero-copy) it is the same again */
        _cleanup_(p3_weights_freep) p3_weights *w = NULL;
        p3_err err = {};
        int r = p3_weights_load(path, &cfg, &w, &err);
        if (r < 0) {
                fprintf(stderr, "%s\n", p3_err_msg(&err, r));
                exit(EXIT_FAILURE);
        }
        CHECK(w->owned == NULL && w->total_params == 4033353);

        /* a written checkpoint has the same data section byte for byte */
        _cleanup_free_ char *out = NULL;
        CHECK(asprintf(&out, "%s/tiny.safetensors", tmpdir) > 0);
        CHECK_OK(p3_synth_write(&cfg, out, ST_F32, 1.0, NULL));
        _cleanup_(st_closep) st_file *g = test_open(out);
        CHECK(g->n_tensors == n);
        for (size_t i = 0; i < n; i++)
                CHECK(memcmp(g->tensors[i].data, f->tensors[i].data, f->tensors[i].nbytes) == 0);
        CHECK(st_meta(g, "recipe") != NULL);
        printf("tiny: p3_synth_write reproduces the golden data section\n");
}

/* F16 output and head_gain. */
static void test_write_variants(const char *tmpdir) {
        p3_config cfg;
        p3_config_default(&cfg);
        /* a small config, written as F16 with a gain of 4 */
        cfg.num_stages = 2;
        cfg.depths[0] = cfg.depths[1] = 1;
        cfg.channels[0] = cfg.channels[1] = 16;
        cfg.num_heads[0] = cfg.num_heads[1] = 1;
        cfg.concat_width = 32;

        _cleanup_free_ char *out = NULL;
        CHECK(asprintf(&out, "%s/small-f16.safetensors", tmpdir) > 0);
        CHECK_OK(p3_synth_write(&cfg, out, ST_F16, 4.0, NULL));
        _cleanup_(st_closep) st_file *f = test_open(out);
        _cleanup_(p3_weights_freep) p3_weights *syn = NULL;
        CHECK_OK(p3_weights_synth(&cfg, &syn, NULL));
        CHECK(f->n_tensors == syn->n);

        int scaled = 0;
        for (size_t i = 0; i < f->n_tensors; i++) {
                const st_tensor *t = &f->tensors[i];
                CHECK(t->dtype == ST_F16);
                const float *ref = p3_weights_get(syn, t->name);
                /* the last Linear of seg_mlp_k, seg_s2_mlp_k and iou_mlp_out, not seg_s2_mlp_g */
                bool gain = strstr(t->name, ".4.") && !strstr(t->name, "mlp_g") &&
                            (strncmp(t->name, "seg_", 4) == 0 || strncmp(t->name, "iou_mlp_out", 11) == 0);
                for (int64_t k = 0; k < t->numel; k++) {
                        uint16_t h;
                        memcpy(&h, (const uint8_t *) t->data + 2 * k, 2);
                        float want = gain ? (float) ((double) ref[k] * 4.0) : ref[k];
                        CHECK(h == p3_float_to_half(want));
                }
                scaled += gain;
        }
        CHECK(scaled == 14);
        printf("f16 + head_gain: %zu tensors ok, %d scaled\n", f->n_tensors, scaled);

        /* a failed write leaves nothing behind */
        _cleanup_free_ char *bad = NULL;
        CHECK(asprintf(&bad, "%s/no-such-dir/w.safetensors", tmpdir) > 0);
        p3_err err = {};
        CHECK(p3_synth_write(&cfg, bad, ST_F32, 1.0, &err) < 0);
        CHECK(strstr(err.msg, "no-such-dir"));
}

static void test_full_keys(void) {
        p3_config cfg;
        p3_config_default(&cfg);
        CHECK(cfg.concat_width == 1232);
        _cleanup_free_ p3_weight_spec *specs = NULL;
        size_t n;
        CHECK_OK(p3_weight_specs(&cfg, &specs, &n));
        CHECK(n == 513);
        CHECK(p3_weight_specs_total(specs, n) == 112728649);
        printf("default config: %zu tensors, %zu values\n", n, p3_weight_specs_total(specs, n));

        _cleanup_free_ char *path = test_shared_path("golden/full/keys.json");
        if (!path) {
                printf("golden/full/keys.json not available: key-order comparison skipped\n");
                return;
        }
        json_object *root = json_object_from_file(path);
        CHECK(root && json_object_is_type(root, json_type_array));
        CHECK(json_object_array_length(root) == n);
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(root, i), *k, *s;
                CHECK(json_object_object_get_ex(e, "key", &k) && json_object_object_get_ex(e, "shape", &s));
                if (strcmp(json_object_get_string(k), specs[i].name) != 0) {
                        fprintf(stderr, "keys.json[%zu] = %s, spec = %s\n", i, json_object_get_string(k),
                                specs[i].name);
                        exit(EXIT_FAILURE);
                }
                CHECK((int) json_object_array_length(s) == specs[i].ndim);
                for (int d = 0; d < specs[i].ndim; d++)
                        CHECK(json_object_get_int64(json_object_array_get_idx(s, d)) == specs[i].shape[d]);
        }
        json_object_put(root);

        p3_config full;
        load_config("golden/full/config.json", &full);
        CHECK(full.num_stages == cfg.num_stages && full.concat_width == cfg.concat_width &&
              full.num_orders == cfg.num_orders && full.mlp_ratio == cfg.mlp_ratio &&
              full.mask_token == cfg.mask_token && full.shuffle_orders == cfg.shuffle_orders);
        for (int s = 0; s < cfg.num_stages; s++)
                CHECK(full.depths[s] == cfg.depths[s] && full.channels[s] == cfg.channels[s] &&
                      full.num_heads[s] == cfg.num_heads[s] && full.patch_size[s] == cfg.patch_size[s]);
        for (int o = 0; o < cfg.num_orders; o++)
                CHECK(full.orders[o] == cfg.orders[o]);
        printf("full: spec list equals keys.json (%zu keys, names, order, shapes); config.json = default\n", n);
}

/* The real model in memory: fast enough to build on demand. */
static void test_full_synth_speed(void) {
        p3_config cfg;
        p3_config_default(&cfg);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        _cleanup_(p3_weights_freep) p3_weights *w = NULL;
        CHECK_OK(p3_weights_synth(&cfg, &w, NULL));
        clock_gettime(CLOCK_MONOTONIC, &b);
        CHECK(w->total_params == 112728649);
        const float *mt = p3_weights_get(w, "sonata.embedding.mask_token");
        CHECK(mt && p3_weights_spec(w, "sonata.embedding.mask_token")->shape[1] == 48);
        const float *stem = p3_weights_get(w, "sonata.embedding.stem.linear.weight");
        CHECK(fbits(stem[431]) == 0xbe0960b0);
        CHECK(p3_weights_get(w, "nope") == NULL);
        printf("full synth in memory: %.2f s\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9);
}

int main(void) {
        char tmpdir[] = "/tmp/test-synth-XXXXXX";
        CHECK(mkdtemp(tmpdir));

        test_self_check();
        test_full_keys();
        test_tiny_golden(tmpdir);
        test_write_variants(tmpdir);
        test_full_synth_speed();

        _cleanup_free_ char *cmd = NULL;
        CHECK(asprintf(&cmd, "rm -rf '%s'", tmpdir) > 0);
        CHECK(system(cmd) == 0);
        return 0;
}
