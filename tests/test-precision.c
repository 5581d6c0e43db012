/* SPDX-License-Identifier: MIT */
/* BF16 against FP32, on the full-size model with synthetic weights (golden/SYNTH.md), the way
 * the mixed-precision issue states the bar:
 *   - point features of 20,000 points of a real mesh (and of the golden full case when
 *     ../shared is there) within 2e-2 × max|ref| per tensor;
 *   - with the heads' last layers scaled (head gain 300, logits spanning a realistic range):
 *     ≥ 99.5 % of the (prompt, point) mask bits equal, IoU predictions within 2e-2;
 *   - the whole pipeline on a real mesh: face labels equal on ≥ 98 % of the surface area
 *     after matching part ids.
 * The figures are printed, not only pass/fail. Skips (77) where the CPU runs no BF16. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mesh_clean.h"
#include "mesh_import.h"
#include "pipeline.h"
#include "sample.h"
#include "synth.h"
#include "test-util.h"

#define POINTS 20000
#define PROMPTS 32

static p3_model *open_model(const p3_weights *w, p3_precision prec) {
        p3_model_params p = { .backend = P3_BACKEND_CPU, .precision = prec, .threads = 0 };
        p3_model *m = NULL;
        p3_err err = {};
        int r = p3_model_open(w, &p, &m, &err);
        if (r < 0) {
                printf("cannot open the model at %s: %s\n", p3_precision_to_string(prec),
                       p3_err_msg(&err, r));
                exit(1);
        }
        printf("%s: %s\n", p3_precision_to_string(prec), p3_model_device(m));
        return m;
}

/* Synthetic full-size weights, written by the recipe with the given head gain and read back. */
static p3_weights *synth_weights(double head_gain, const char *dir) {
        p3_config cfg;
        p3_config_default(&cfg);
        char path[512];
        snprintf(path, sizeof(path), "%s/w-%g.safetensors", dir, head_gain);
        p3_err err = {};
        CHECK(p3_synth_write(&cfg, path, ST_F32, head_gain, &err) >= 0);
        p3_weights *w = NULL;
        CHECK(p3_weights_load(path, &cfg, &w, &err) >= 0);
        unlink(path);
        return w;
}

/* The cloud of a real mesh: POINTS surface samples and their face normals, normalized as the
 * pipeline does. */
static void mesh_cloud(double **pts, double **normals) {
        char *path = test_data_path("meshes/CesiumMilkTruck.glb");
        p3_mesh mesh = {};
        p3_mesh_limits lim;
        p3_mesh_limits_default(&lim);
        p3_err err = {};
        p3_mesh raw = {};
        CHECK(p3_mesh_import_file(path, NULL, &lim, &raw, &err) >= 0);
        CHECK(p3_mesh_clean(&raw, &mesh, &err) >= 0); /* as the pipeline samples it */
        p3_mesh_done(&raw);
        *pts = malloc(sizeof(double) * 3 * POINTS);
        *normals = malloc(sizeof(double) * 3 * POINTS);
        int32_t *face = malloc(sizeof(int32_t) * POINTS);
        CHECK(*pts && *normals && face);
        CHECK(p3_sample_surface(&mesh, POINTS, 42, *pts, face, NULL) >= 0);
        p3_face_normals_at(&mesh, face, POINTS, *normals);
        p3_normalize_pc(*pts, POINTS);
        free(face);
        p3_mesh_done(&mesh);
        free(path);
}

/* max |a - b| / max |b| over the per-voxel features. */
static double feature_error(p3_model *a, p3_features *fa, p3_model *b, p3_features *fb) {
        int64_t n = fb->m * fb->feat.cols;
        float *ha = malloc(sizeof(float) * n), *hb = malloc(sizeof(float) * n);
        CHECK(ha && hb && fa->m == fb->m);
        CHECK(p3_model_backend(a)->ops->to_host_f32(p3_model_backend(a), &fa->feat, ha) >= 0);
        CHECK(p3_model_backend(b)->ops->to_host_f32(p3_model_backend(b), &fb->feat, hb) >= 0);
        double maxref = 0, maxdiff = 0;
        for (int64_t i = 0; i < n; i++) {
                maxref = fmax(maxref, fabs(hb[i]));
                maxdiff = fmax(maxdiff, fabs((double) ha[i] - hb[i]));
        }
        free(ha);
        free(hb);
        return maxdiff / maxref;
}

static void features(p3_model *m, const double *pts0, const double *normals, int64_t n,
                     p3_features *f) {
        double *pts = malloc(sizeof(double) * 3 * n);
        CHECK(pts);
        memcpy(pts, pts0, sizeof(double) * 3 * n);
        p3_run_opts o = { .seed = 42 };
        p3_err err = {};
        CHECK(p3_model_features(m, pts, normals, n, &o, f, &err) >= 0);
        free(pts);
}

static void test_features(p3_model *ref, p3_model *bf, const char *what, const double *pts,
                          const double *normals, int64_t n) {
        p3_features fr = {}, fb = {};
        features(ref, pts, normals, n, &fr);
        features(bf, pts, normals, n, &fb);
        double e = feature_error(bf, &fb, ref, &fr);
        printf("%s: point features, bf16 vs fp32: max error %.2e × max|ref| (bound 2e-2)\n", what, e);
        EXPECT(e <= 2e-2, "%s: features differ by %.3g × max|ref|", what, e);
        p3_features_done(ref, &fr);
        p3_features_done(bf, &fb);
}

/* Heads with realistic logits: mask bits and IoUs of the same prompts. */
static void test_heads(p3_model *ref, p3_model *bf, const double *pts, const double *normals) {
        p3_features fr = {}, fb = {};
        features(ref, pts, normals, POINTS, &fr);
        features(bf, pts, normals, POINTS, &fb);
        int64_t idx[PROMPTS];
        CHECK(p3_model_fps(&fr, PROMPTS, 0, idx) >= 0);
        float prompts[3 * PROMPTS];
        for (int j = 0; j < PROMPTS; j++)
                for (int c = 0; c < 3; c++)
                        prompts[3 * j + c] = fr.points_host[3 * idx[j] + c];
        int64_t nbytes = (POINTS + 7) / 8, bits = 3 * PROMPTS * nbytes;
        uint8_t *br = calloc(bits, 1), *bb = calloc(bits, 1);
        float ir[3 * PROMPTS], ib[3 * PROMPTS];
        CHECK(br && bb);
        p3_heads_output orf = { .iou = ir, .mask_bits = br }, obf = { .iou = ib, .mask_bits = bb };
        p3_err err = {};
        CHECK(p3_model_heads(ref, &fr, prompts, PROMPTS, 32, NULL, &orf, &err) >= 0);
        CHECK(p3_model_heads(bf, &fb, prompts, PROMPTS, 32, NULL, &obf, &err) >= 0);
        int64_t same = 0, total = 3LL * PROMPTS * POINTS, ones = 0;
        for (int64_t row = 0; row < 3 * PROMPTS; row++)
                for (int64_t p = 0; p < POINTS; p++) {
                        int a = (br[row * nbytes + (p >> 3)] >> (p & 7)) & 1;
                        int b = (bb[row * nbytes + (p >> 3)] >> (p & 7)) & 1;
                        same += a == b;
                        ones += a;
                }
        double iou_err = 0;
        for (int i = 0; i < 3 * PROMPTS; i++)
                iou_err = fmax(iou_err, fabs(ir[i] - ib[i]));
        double agree = 100.0 * same / total;
        printf("heads (gain 300): mask bits equal %.3f %% of %lld (%.1f %% set in fp32; bound "
               "99.5 %%), IoU max difference %.2e (bound 2e-2)\n",
               agree, (long long) total, 100.0 * ones / total, iou_err);
        EXPECT(agree >= 99.5, "mask bits agree on %.3f %% only", agree);
        EXPECT(iou_err <= 2e-2, "IoU predictions differ by %.3g", iou_err);
        free(br);
        free(bb);
        p3_features_done(ref, &fr);
        p3_features_done(bf, &fb);
}

/* Face labels agree on this share of the area, each bf16 part matched to the fp32 part it
 * overlaps most (area-weighted). */
static double label_agreement(const p3_segment_result *ref, const p3_segment_result *got) {
        const p3_mesh *m = &ref->mesh;
        int nr = ref->n_parts + 1, ng = got->n_parts + 1; /* last: unlabelled */
        double *ov = calloc((size_t) nr * ng, sizeof(double));
        double *area = malloc(sizeof(double) * (size_t) m->nf);
        CHECK(ov && area && got->mesh.nf == m->nf);
        p3_mesh_face_geometry(m, area, NULL);
        double total = 0;
        for (int64_t f = 0; f < m->nf; f++) {
                int a = -1, b = -1;
                for (int i = 0; i < ref->n_parts; i++)
                        if (ref->part_labels[i] == ref->face_ids[f])
                                a = i;
                for (int i = 0; i < got->n_parts; i++)
                        if (got->part_labels[i] == got->face_ids[f])
                                b = i;
                ov[(size_t) (a < 0 ? nr - 1 : a) * ng + (b < 0 ? ng - 1 : b)] += area[f];
                total += area[f];
        }
        double agree = 0;
        for (int b = 0; b < ng; b++) {
                double best = 0;
                for (int a = 0; a < nr; a++)
                        best = fmax(best, ov[(size_t) a * ng + b]);
                agree += best;
        }
        free(ov);
        free(area);
        return agree / total;
}

static void test_pipeline(p3_model *ref, p3_model *bf) {
        char *path = test_data_path("meshes/CesiumMilkTruck.glb");
        p3_mesh mesh = {};
        p3_mesh_limits lim;
        p3_mesh_limits_default(&lim);
        p3_err err = {};
        CHECK(p3_mesh_import_file(path, NULL, &lim, &mesh, &err) >= 0);
        p3_pipeline_params p;
        p3_pipeline_params_cpu(&p);
        p.points = POINTS;
        p.prompts = PROMPTS;
        p3_segment_result rr = {}, rb = {};
        CHECK(p3_pipeline_segment(ref, &mesh, &p, NULL, &rr, &err) >= 0);
        CHECK(p3_pipeline_segment(bf, &mesh, &p, NULL, &rb, &err) >= 0);
        double agree = 100.0 * label_agreement(&rr, &rb);
        printf("pipeline (%d points, %d prompts): %d parts fp32, %d bf16; labels agree on "
               "%.2f %% of the area (bound 98 %%)\n",
               POINTS, PROMPTS, rr.n_parts, rb.n_parts, agree);
        EXPECT(agree >= 98, "face labels agree on %.2f %% of the area only", agree);
        p3_segment_result_done(&rr);
        p3_segment_result_done(&rb);
        p3_mesh_done(&mesh);
        free(path);
}

/* The golden full case's cloud, when ../shared is there. */
static void test_golden_full(p3_model *ref, p3_model *bf) {
        char *path = test_golden_case("full");
        if (!path) {
                printf("skip: golden full case (no ../shared)\n");
                return;
        }
        st_file *f = test_open(path);
        int64_t n3 = 0, m3 = 0;
        float *c = test_f32(f, "coord", &n3), *nr = test_f32(f, "normal", &m3);
        int64_t n = n3 / 3;
        double *pts = malloc(sizeof(double) * n3), *normals = malloc(sizeof(double) * n3);
        CHECK(pts && normals && m3 == n3);
        for (int64_t i = 0; i < n3; i++) {
                pts[i] = c[i];
                normals[i] = nr[i];
        }
        test_features(ref, bf, "golden full case", pts, normals, n);
        free(pts);
        free(normals);
        free(c);
        free(nr);
        st_close(f);
        free(path);
}

int main(void) {
        setvbuf(stdout, NULL, _IOLBF, 0); /* the figures as they come, under meson too */
        if (getenv("P3_SANITIZE")) { /* scripts/test-sanitize.sh */
                printf("SKIP: the full-size model takes over 20 min under ASan+UBSan on 2 cores; "
                       "golden-tiny, segment and cpu-ops run the same code at tiny size\n");
                return 77;
        }
        char why[128];
        if (p3_cpu_auto_precision(why, sizeof(why)) != P3_PRECISION_BF16) {
                printf("SKIP: no BF16 on this CPU backend (%s)\n", why);
                return 77;
        }
        char dir[] = "/tmp/test-precision.XXXXXX";
        CHECK(mkdtemp(dir));
        double *pts, *normals;
        mesh_cloud(&pts, &normals);

        p3_weights *w = synth_weights(1.0, dir);
        p3_model *ref = open_model(w, P3_PRECISION_FP32), *bf = open_model(w, P3_PRECISION_BF16);
        test_features(ref, bf, "CesiumMilkTruck.glb, 20,000 points", pts, normals, POINTS);
        test_golden_full(ref, bf);
        p3_model_free(bf);
        p3_model_free(ref);
        p3_weights_free(w);

        w = synth_weights(300.0, dir);
        ref = open_model(w, P3_PRECISION_FP32);
        bf = open_model(w, P3_PRECISION_BF16);
        test_heads(ref, bf, pts, normals);
        test_pipeline(ref, bf);
        p3_model_free(bf);
        p3_model_free(ref);
        p3_weights_free(w);
        rmdir(dir);
        free(pts);
        free(normals);
        printf("%d failure(s)\n", test_failures);
        return test_failures ? 1 : 0;
}
