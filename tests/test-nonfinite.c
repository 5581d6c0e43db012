/* SPDX-License-Identifier: MIT */
/* Values that are not finite fail a job with a sentence instead of returning garbage (reduced
 * precision overflowing, or a corrupt checkpoint): a NaN weight in the first stage stops the
 * features after that stage, one in a mask head stops the heads (the backend's check of the
 * mask logits, whose NaNs would otherwise pass for clear mask bits), and one in the IoU head
 * stops them too (the engine's check of the IoUs). The tiny config, synthetic weights, the CPU at FP32. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "test-util.h"

enum { N = 2000, K = 4 };

static p3_weights *weights_with_nan(const p3_config *cfg, const char *name) {
        p3_weights *w = test_synth_weights(cfg);
        if (name) {
                float *v = (float *) p3_weights_get(w, name); /* the synthetic copy is ours */
                CHECK(v);
                v[0] = NAN;
        }
        return w;
}

static void expect_error(int r, const p3_err *err, const char *what, const char *sentence) {
        const char *msg = p3_err_msg(err, r);
        bool ok = r == -ERANGE && strstr(msg, sentence);
        printf("%s: %s\n  %s (%d)\n", ok ? "ok" : "FAIL", what, msg, r);
        test_failures += !ok;
}

/* The model on w, the features of the cloud (0 or the error in err), and with want_heads the
 * heads for K prompts. */
static int run(const p3_weights *w, bool want_heads, p3_err *err) {
        p3_model_params p = { .backend = P3_BACKEND_CPU, .precision = P3_PRECISION_FP32 };
        _cleanup_(p3_model_freep) p3_model *m = NULL;
        CHECK_OK(p3_model_open(w, &p, &m, err));
        double *pts = malloc(sizeof(double) * 3 * N), *normals = malloc(sizeof(double) * 3 * N);
        CHECK(pts && normals);
        test_cloud(N, pts, normals);
        p3_features f = {};
        int r = p3_model_features(m, pts, normals, N, NULL, &f, err); /* f is {} on failure */
        if (r >= 0 && want_heads) {
                float prompts[3 * K], iou[3 * K];
                uint8_t *bits = malloc((size_t) 3 * K * ((N + 7) / 8));
                CHECK(bits);
                for (int j = 0; j < K; j++)
                        memcpy(prompts + 3 * j, f.points_host + 3 * (j * 97), sizeof(float) * 3);
                p3_heads_output out = { .iou = iou, .mask_bits = bits };
                r = p3_model_heads(m, &f, prompts, K, 2, NULL, &out, err);
                free(bits);
        }
        p3_features_done(m, &f);
        free(pts), free(normals);
        return r;
}

int main(void) {
        p3_config cfg;
        p3_err err = {};
        test_tiny_config(&cfg);

        _cleanup_(p3_weights_freep) p3_weights *good = weights_with_nan(&cfg, NULL);
        int r = run(good, true, &err);
        printf("%s: finite weights run through (%s)\n", r == 0 ? "ok" : "FAIL",
               r == 0 ? "features and heads" : p3_err_msg(&err, r));
        test_failures += r != 0;

        _cleanup_(p3_weights_freep) p3_weights *stage =
                weights_with_nan(&cfg, "sonata.enc.enc0.block0.mlp.0.fc2.bias");
        err = (p3_err) {};
        expect_error(run(stage, false, &err), &err, "a NaN weight in the first stage",
                     "stage 0 produced values that are not finite (NaN or Inf) at fp32");

        _cleanup_(p3_weights_freep) p3_weights *head = weights_with_nan(&cfg, "seg_mlp_1.4.bias");
        err = (p3_err) {};
        r = run(head, false, &err);
        printf("%s: a NaN in a mask head leaves the features alone\n", r == 0 ? "ok" : "FAIL");
        test_failures += r != 0;
        err = (p3_err) {};
        expect_error(run(head, true, &err), &err, "a NaN weight in a mask head",
                     "the mask heads produced values that are not finite (NaN or Inf) at fp32");

        /* only the IoU head's last layer: the mask logits stay finite, the IoUs do not */
        _cleanup_(p3_weights_freep) p3_weights *iou =
                weights_with_nan(&cfg, "iou_mlp_out.4.bias");
        err = (p3_err) {};
        expect_error(run(iou, true, &err), &err, "a NaN weight in the IoU head",
                     "the mask heads produced values that are not finite (NaN or Inf) at fp32");

        printf("%d failure(s)\n", test_failures);
        return test_failures ? 1 : 0;
}
