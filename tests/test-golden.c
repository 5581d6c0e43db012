/* SPDX-License-Identifier: MIT */
/* The engine against the PyTorch reference (golden/README.md): every intermediate the golden
 * case holds is compared as the model produces it (a trace hook), with the recorded random
 * choices replayed. Weights are the synthetic recipe, built in memory.
 *   test-golden tiny   tests/data/tiny_case.safetensors (or ../shared), every intermediate
 *   test-golden full   ../shared/golden/full (the real config; skips without ../shared)
 *   test-golden tiny as-device   the CPU dressed as a GPU (structure ops, guarded memory) */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "guarded-backend.h"
#include "structure-shim.h"
#include "test-util.h"
#include "omp-env.h"

typedef struct golden {
        st_file *f;
        double feat_tol; /* × max|ref| */
        double half_tol; /* on a half-precision GPU: every tensor within this × max|ref| */
        bool first256;   /* the full case stores only the first 256 rows of big tensors */
        bool as_device; /* the CPU dressed as a GPU: structure ops, guarded device memory */
        int compared, failed;
} golden;

static void compare(golden *g, const char *name, const float *data, int64_t rows, int64_t cols,
                    double rel, double abs) {
        char key[96];
        const st_tensor *t = st_find(g->f, name);
        int64_t n = rows * cols;
        if (!t && g->first256) {
                snprintf(key, sizeof(key), "%s_first256", name);
                t = st_find(g->f, key);
                n = MIN(256, rows) * cols;
        }
        if (!t)
                return;
        if (t->numel != n) {
                printf("%-28s shape mismatch: %lld values, golden %lld FAIL\n", name,
                       (long long) n, (long long) t->numel);
                g->failed++;
                return;
        }
        float *ref = malloc(sizeof(float) * n);
        CHECK(ref);
        CHECK_OK(st_to_f32(t, ref));
        g->compared++;
        if (g->half_tol > 0)
                rel = MAX(rel, g->half_tol), abs = 0;
        if (!test_close_f32(name, data, ref, n, rel, abs))
                g->failed++;
        free(ref);
}

static void on_trace(void *userdata, const char *name, const float *data, int64_t rows,
                     int64_t cols) {
        golden *g = userdata;
        compare(g, name, data, rows, cols, g->feat_tol, 0);
}

static double *points_f64(const st_file *f, const char *name, int64_t *n) {
        int64_t numel;
        float *v = test_f32(f, name, &numel);
        double *d = malloc(sizeof(double) * numel);
        CHECK(d);
        for (int64_t i = 0; i < numel; i++)
                d[i] = v[i];
        free(v);
        *n = numel / 3;
        return d;
}

/* Under a memory cap that fits one prompt's stage-1 logits but not two, asked for all prompts
 * at once (which the cap refuses): the batch is halved until it fits, and the results are
 * those of batch 3 (to 1e-6 of the largest: the tile shapes, hence the GEMMs' blocking, follow
 * the batch). What a GPU under GpuMemoryMax or beside other work goes through. */
static void heads_under_cap(p3_model *m, const p3_features *feat, const float *prompts, int64_t k,
                            const p3_heads_output *want) {
        int64_t n = feat->n;
        float *iou = malloc(sizeof(float) * 3 * k), *s2 = malloc(sizeof(float) * 3 * k * n);
        CHECK(iou && s2);
        p3_backend *be = p3_model_backend(m);
        size_t limit = be->limit_bytes;
        be->limit_bytes = be->cur_bytes + 3 * (size_t) n * sizeof(float);
        p3_heads_output out = { .iou = iou, .s2_logit = s2 };
        p3_err err = {};
        int r = p3_model_heads(m, feat, prompts, (int) k, (int) k, NULL, &out, &err);
        be->limit_bytes = limit;
        double worst = 0, ref = 0;
        for (int64_t i = 0; r == 0 && i < 3 * k * n; i++) {
                worst = fmax(worst, fabs(s2[i] - want->s2_logit[i]));
                ref = fmax(ref, fabs(want->s2_logit[i]));
        }
        for (int64_t i = 0; r == 0 && i < 3 * k; i++)
                worst = fmax(worst, fabs(iou[i] - want->iou[i]));
        bool same = r == 0 && worst <= 1e-6 * fmax(ref, 1.0);
        printf("%-28s batch %lld under a cap of one prompt: %s (max diff %.3g)\n",
               "heads_halving", (long long) k, same ? "ok, halved until it fit" : "FAIL", worst);
        if (!same)
                test_failures++;
        free(iou), free(s2);
}

static void check_heads(golden *g, p3_model *m, const p3_features *feat) {
        int64_t k, n = feat->n;
        int64_t *idx = test_i64(g->f, "prompt_idx", &k);
        float *prompts = malloc(sizeof(float) * 3 * k);
        float *logits = malloc(sizeof(float) * 6 * k * n), *iou = malloc(sizeof(float) * 3 * k);
        float *glob = malloc(sizeof(float) * 256 * k), *ifeat = malloc(sizeof(float) * 256 * k);
        uint8_t *bits = malloc(3 * k * ((n + 7) / 8));
        CHECK(prompts && logits && iou && glob && ifeat && bits);
        for (int64_t j = 0; j < k; j++)
                memcpy(prompts + 3 * j, feat->points_host + 3 * idx[j], sizeof(float) * 3);
        compare(g, "prompt", prompts, k, 3, 0, 0);
        p3_heads_output out = { .iou = iou, .global = glob, .iou_feat = ifeat,
                                .s1_logit = logits, .s2_logit = logits + 3 * k * n,
                                .mask_bits = bits };
        p3_err err = {};
        /* batch 3: several batches and a short last one, as the pipeline will run them */
        CHECK_OK(p3_model_heads(m, feat, prompts, (int) k, 3, NULL, &out, &err));
        if (strcmp(p3_model_backend(m)->ops->name, "cpu") == 0)
                heads_under_cap(m, feat, prompts, k, &out);
        static const char *names[6] = {
                "head_seg_mlp_1_logit",    "head_seg_mlp_2_logit",    "head_seg_mlp_3_logit",
                "head_seg_s2_mlp_1_logit", "head_seg_s2_mlp_2_logit", "head_seg_s2_mlp_3_logit",
        };
        for (int h = 0; h < 6; h++)
                compare(g, names[h], logits + h * k * n, k, n, 0, 1e-6);
        compare(g, "head_seg_global", glob, k, 256, g->feat_tol, 0);
        compare(g, "head_iou_feat", ifeat, k, 256, g->feat_tol, 0);
        compare(g, "pred_iou", iou, k, 3, 0, 1e-6);
        /* masks: the sigmoid of the stage-2 logits, and the bits agree with them */
        float *mask = malloc(sizeof(float) * k * n);
        CHECK(mask);
        for (int h = 0; h < 3; h++) {
                char name[16];
                for (int64_t i = 0; i < k * n; i++) {
                        float s = 1.0f / (1.0f + expf(-logits[(3 + h) * k * n + i]));
                        mask[i] = s;
                        int64_t j = i / n, p = i % n;
                        bool bit = bits[(h * k + j) * ((n + 7) / 8) + p / 8] >> (p % 8) & 1;
                        CHECK(bit == (s > 0.5f));
                }
                snprintf(name, sizeof(name), "mask_%d", h + 1);
                compare(g, name, mask, k, n, 0, 1e-6);
        }
        free(mask);
        free(idx);
        free(prompts);
        free(logits);
        free(iou);
        free(glob);
        free(ifeat);
        free(bits);
}

/* The case and its config: tests/data's copies for tiny, else ../shared (skip without it). */
static st_file *open_case(const char *which, char **config) {
        _cleanup_free_ char *path = test_golden_case(which);
        if (!path)
                test_skip("the golden case needs ../shared/golden (not in this checkout)");
        char rel[64];
        snprintf(rel, sizeof(rel), "%s_config.json", which);
        *config = test_data_path(rel);
        if (access(*config, R_OK) < 0) {
                free(*config);
                snprintf(rel, sizeof(rel), "golden/%s/config.json", which);
                *config = test_shared_path(rel);
        }
        return test_open(path);
}

/* The CPU at FP32 (the reference), or, for scripts/gpu-check.sh, the backend and precision in
 * P3_GOLDEN_BACKEND=cuda and P3_GOLDEN_PRECISION=fp32|fp16|bf16: FP32 on the GPU keeps the
 * CPU's tolerances, half precision gets 2e-2 × max|ref| for every tensor. */
static void open_backend(golden *g, p3_backend **be) {
        const char *backend = getenv("P3_GOLDEN_BACKEND"), *prec = getenv("P3_GOLDEN_PRECISION");
        if (!backend || strcmp(backend, "cpu") == 0) {
                CHECK_OK(p3_backend_cpu_new(NULL, be));
                if (g->as_device) {
                        structure_shim_install(*be, SHIM_RIGHT);
                        guarded_backend_install(*be);
                }
                return;
        }
        p3_backend_options opt = { .precision = P3_PRECISION_FP16 };
        CHECK(strcmp(backend, "cuda") == 0);
        if (prec)
                CHECK_OK(p3_precision_from_string(prec, &opt.precision));
        char why[256] = "";
        int r = p3_backend_cuda_new(&opt, why, sizeof(why), be);
        if (r < 0) {
                fprintf(stderr, "P3_GOLDEN_BACKEND=cuda: %s\n", why);
                exit(EXIT_FAILURE);
        }
        if ((*be)->precision != P3_PRECISION_FP32)
                g->half_tol = 2e-2;
        printf("backend: %s, %s\n", (*be)->device, p3_precision_to_string((*be)->precision));
}

int main(int argc, char **argv) {
        p3_omp_env_setup(argv);
        const char *which = argc > 1 ? argv[1] : "tiny";
        bool full = strcmp(which, "full") == 0;
        golden g = { .feat_tol = full ? 3e-5 : 1e-5, .first256 = full,
                     .as_device = argc > 2 && strcmp(argv[2], "as-device") == 0 };
        _cleanup_free_ char *config = NULL;
        g.f = open_case(which, &config);

        p3_config cfg;
        p3_err err = {};
        CHECK(config);
        CHECK_OK(p3_config_load(config, &cfg, &err));
        _cleanup_(p3_weights_freep) p3_weights *w = NULL;
        CHECK_OK(p3_weights_synth(&cfg, &w, &err));
        p3_backend *be = NULL;
        open_backend(&g, &be);
        _cleanup_(p3_model_freep) p3_model *m = NULL;
        CHECK_OK(p3_model_new(be, w, &m, &err));

        int64_t n, nn, gs_m;
        double *coord = points_f64(g.f, "coord", &n), *normal = points_f64(g.f, "normal", &nn);
        CHECK(n == nn);
        int64_t *gs = test_i64(g.f, "grid_sample_index", &gs_m);
        p3_replay rp = { .grid_sample_index = gs, .grid_sample_m = gs_m };
        int64_t *perms[P3_MAX_STAGES] = {};
        for (int s = 0; s < cfg.num_stages; s++) {
                char name[32];
                snprintf(name, sizeof(name), "stage%d_order_perm", s);
                rp.order_perm[s] = perms[s] = test_i64(g.f, name, NULL);
        }
        p3_run_opts o = { .replay = &rp, .trace = on_trace, .userdata = &g };
        p3_features feat = {};
        int r = p3_model_features(m, coord, normal, n, &o, &feat, &err);
        if (r < 0) {
                fprintf(stderr, "features: %s\n", p3_err_msg(&err, r));
                return EXIT_FAILURE;
        }
        compare(&g, "points_heads", feat.points_host, n, 3, 0, 0);
        check_heads(&g, m, &feat);
        p3_features_done(m, &feat);

        printf("%s: %d tensors compared, %d failed; peak backend memory %.1f MiB\n", which,
               g.compared, g.failed, be->peak_bytes / 1048576.0);
        CHECK(g.compared >= (full ? 20 : 40));
        p3_model_free(TAKE_PTR(m));
        p3_backend_free(be);
        for (int s = 0; s < P3_MAX_STAGES; s++)
                free(perms[s]);
        free(gs);
        free(coord);
        free(normal);
        st_close(g.f);
        return g.failed || test_failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
