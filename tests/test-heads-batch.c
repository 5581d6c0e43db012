/* SPDX-License-Identifier: MIT */
/* The prompt batch left to the engine (0, auto: PromptBatch=auto, the default): upstream's 32
 * on the CPU, where a cancel is honoured between batches of heads that take seconds; on a GPU
 * as many prompts as make P3_GPU_BATCH_PAIRS (prompt, point) pairs, since its heads fit their
 * chunks to the free memory themselves. Checked on the policy's figures and on the heads'
 * calls (one progress report per batch), the CUDA backend stood in for by the CPU's ops
 * under the name "cuda". A batch asked for is kept. Tiny config, synthetic weights. */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "pipeline-limits.h"
#include "test-util.h"

enum { N = 2000, K = 40 };

static void expect(bool ok, const char *what) {
        printf("%s: %s\n", ok ? "ok" : "FAIL", what);
        test_failures += !ok;
}

static void count_batches(void *userdata, const char *stage, double fraction) {
        (void) stage, (void) fraction;
        (*(int *) userdata)++;
}

/* Heads calls for K prompts on the cloud's features with batch asked for. */
static int batches(p3_model *m, const p3_features *f, int batch) {
        float prompts[3 * K], iou[3 * K];
        uint8_t *bits = malloc((size_t) 3 * K * ((N + 7) / 8));
        CHECK(bits);
        for (int j = 0; j < K; j++)
                memcpy(prompts + 3 * j, f->points_host + 3 * (j * 41), sizeof(float) * 3);
        int calls = 0;
        p3_run_opts o = { .progress = count_batches, .userdata = &calls };
        p3_heads_output out = { .iou = iou, .mask_bits = bits };
        p3_err err = {};
        CHECK_OK(p3_model_heads(m, f, prompts, K, batch, &o, &out, &err));
        free(bits);
        return calls;
}

int main(void) {
        p3_config cfg;
        p3_err err = {};
        test_tiny_config(&cfg);
        _cleanup_(p3_weights_freep) p3_weights *w = test_synth_weights(&cfg);
        p3_model_params p = { .backend = P3_BACKEND_CPU, .precision = P3_PRECISION_FP32 };
        _cleanup_(p3_model_freep) p3_model *m = NULL;
        CHECK_OK(p3_model_open(w, &p, &m, &err));

        /* the policy's figures */
        expect(p3_model_heads_batch(m, 0, 400, 100000) == P3_CPU_PROMPT_BATCH,
               "CPU, auto: upstream's 32");
        expect(p3_model_heads_batch(m, 7, 400, 100000) == 7, "a batch asked for is kept");
        expect(p3_model_heads_batch(m, 0, 5, 100000) == 5, "CPU, auto: no more than the prompts");
        p3_backend *be = p3_model_backend(m);
        const p3_backend_ops *cpu_ops = be->ops;
        p3_backend_ops gpu_ops = *cpu_ops;
        gpu_ops.name = "cuda";
        be->ops = &gpu_ops;
        expect(p3_model_heads_batch(m, 0, 400, 100000) == 400,
               "GPU, auto: upstream's default job (400 prompts, 100,000 points) in one batch");
        expect(p3_model_heads_batch(m, 0, 400, 10000000) == 4,
               "GPU, auto: 10 million points, batches of 4 (4e7 pairs)");
        expect(p3_model_heads_batch(m, 0, 100000, 16) == P3_PROMPT_BATCH_MAX,
               "GPU, auto: at most P3_PROMPT_BATCH_MAX");
        expect(p3_model_heads_batch(m, 0, 400, 100000000) == 1, "GPU, auto: at least 1");
        expect(p3_model_heads_batch(m, 7, 400, 100000) == 7, "GPU: a batch asked for is kept");
        be->ops = cpu_ops;

        /* the heads' calls */
        double *pts = malloc(sizeof(double) * 3 * N), *normals = malloc(sizeof(double) * 3 * N);
        CHECK(pts && normals);
        test_cloud(N, pts, normals);
        p3_features f = {};
        CHECK_OK(p3_model_features(m, pts, normals, N, NULL, &f, &err));
        char what[96];
        int calls = batches(m, &f, 0);
        snprintf(what, sizeof(what), "CPU, auto: %d prompts in %d batches (32 + 8)", K, calls);
        expect(calls == 2, what);
        be->ops = &gpu_ops;
        calls = batches(m, &f, 0);
        snprintf(what, sizeof(what), "GPU, auto: %d prompts in %d batch", K, calls);
        expect(calls == 1, what);
        calls = batches(m, &f, 16);
        snprintf(what, sizeof(what), "GPU, batch 16: %d prompts in %d batches", K, calls);
        expect(calls == 3, what);
        be->ops = cpu_ops;
        p3_features_done(m, &f);
        free(pts), free(normals);
        printf("%d failure(s)\n", test_failures);
        return test_failures ? 1 : 0;
}
