/* SPDX-License-Identifier: MIT */
/* Post-processing benchmark on the objaverse replay (F = 35,900 faces, N = 100,000 points,
 * K = 400 prompts, post_process on, as upstream's reference run): wall time per stage, best
 * and median of a few runs, and the peak RSS. Prints figures and asserts nothing about time;
 * it fails only when the pipeline returns an error. Skips when ../shared is absent.
 * Upstream on a 2-core VM (Python 3.11, numpy 1.24): 13.5 s of non-neural work, 11 s of it
 * in NMS, plus 1.0 s building the adjacency table (numba JIT included). */
#define _GNU_SOURCE
#include <string.h>

#include "postprocess.h"
#include "test-util.h"

#define RUNS 7
#define REF_TOTAL 13.5
#define REF_NMS 11.0

static double status_mb(const char *key) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/status", "r");
        char line[256];
        size_t kl = strlen(key);
        while (f && fgets(line, sizeof(line), f))
                if (strncmp(line, key, kl) == 0 && line[kl] == ':')
                        return strtod(line + kl + 1, NULL) / 1024.0;
        return -1;
}

/* Stage start times of one run, from the progress hook. */
typedef struct marks {
        double t[_P3_PP_STAGE_MAX];
        bool seen[_P3_PP_STAGE_MAX];
} marks;

static void on_progress(void *userdata, const char *stage, double fraction) {
        marks *m = userdata;
        for (int s = 0; s < _P3_PP_STAGE_MAX; s++)
                if (strcmp(stage, p3_pp_stage_name(s)) == 0) {
                        m->t[s] = test_now();
                        m->seen[s] = true;
                }
}

typedef struct replay_in {
        st_file *f;
        p3_mesh mesh;
        int32_t *face_idx;
        float *iou;
        int64_t n;
        int k;
} replay_in;

static const double *f64(const st_file *f, const char *name, int64_t *numel) {
        const st_tensor *t = st_find(f, name);
        CHECK(t && t->dtype == ST_F64);
        *numel = t->numel;
        return t->data;
}

static void load(const char *path, replay_in *r, p3_pp_input *in) {
        int64_t nv, nf, np, ni;
        r->f = test_open(path);
        const double *v = f64(r->f, "mesh_vertices", &nv);
        const double *pts = f64(r->f, "points", &np);
        _cleanup_free_ int64_t *faces = test_i64(r->f, "mesh_faces", &nf);
        _cleanup_free_ int64_t *fi = test_i64(r->f, "face_idx", NULL);
        r->n = np / 3;
        r->mesh = (p3_mesh) { .nv = nv / 3, .nf = nf / 3, .v = (double *) v,
                              .f = malloc(sizeof(int32_t) * nf) };
        r->face_idx = malloc(sizeof(int32_t) * r->n);
        CHECK(r->mesh.f && r->face_idx);
        for (int64_t i = 0; i < nf; i++)
                r->mesh.f[i] = (int32_t) faces[i];
        for (int64_t i = 0; i < r->n; i++)
                r->face_idx[i] = (int32_t) fi[i];
        r->iou = test_f32(r->f, "pred_iou", &ni);
        r->k = (int) (ni / 3);
        *in = (p3_pp_input) { .mesh = &r->mesh, .points = pts, .face_idx = r->face_idx,
                              .n = r->n, .k = r->k, .pred_iou = r->iou, .post_process = true,
                              .threshold = P3_PP_THRESHOLD };
        static const char *names[3] = { "mask_1_bits", "mask_2_bits", "mask_3_bits" };
        for (int i = 0; i < 3; i++) {
                const st_tensor *t = st_find(r->f, names[i]);
                CHECK(t && t->shape[0] == r->k && t->shape[1] == DIV_ROUND_UP(r->n, 8));
                in->mask_bits[i] = t->data;
        }
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return (x > y) - (x < y);
}

static void print_stage(const char *name, double *runs, int n, const char *ref) {
        qsort(runs, n, sizeof(double), cmp_double);
        printf("  %-18s best %8.2f ms   median %8.2f ms   %s\n", name, runs[0] * 1e3,
               runs[n / 2] * 1e3, ref);
}

int main(void) {
        _cleanup_free_ char *path =
                test_shared_path("golden/pipeline/objaverse_00200996/replay.safetensors");
        if (!path)
                test_skip("../shared/golden/pipeline/objaverse_00200996 is absent");
        replay_in r = {};
        p3_pp_input in;
        load(path, &r, &in);

        double stage[_P3_PP_STAGE_MAX][RUNS] = {}, adj_s[RUNS], total[RUNS];
        for (int run = 0; run < RUNS; run++) {
                p3_adjacency adj;
                marks m = {};
                p3_pp_hooks h = { .progress = on_progress, .userdata = &m };
                p3_pp_result res;
                p3_err err = {};
                double t0 = test_now();
                CHECK_OK(p3_mesh_adjacency(&r.mesh, &adj));
                double t1 = test_now();
                in.adj = &adj;
                int rr = p3_postprocess(&in, &h, &res, &err);
                if (rr < 0) {
                        fprintf(stderr, "p3_postprocess: %s\n", p3_err_msg(&err, rr));
                        return EXIT_FAILURE;
                }
                adj_s[run] = t1 - t0;
                total[run] = m.t[P3_PP_DONE] - t0;
                for (int s = 0; s < P3_PP_DONE; s++) {
                        int next = s + 1;
                        while (!m.seen[next])
                                next++;
                        stage[s][run] = m.seen[s] ? m.t[next] - m.t[s] : 0;
                }
                p3_pp_result_done(&res);
                p3_adjacency_done(&adj);
        }

        printf("post-processing, objaverse 00200996 (F=%lld, N=%lld, K=%d, post_process on), "
               "%d runs:\n", (long long) r.mesh.nf, (long long) r.n, r.k, RUNS);
        print_stage("adjacency", adj_s, RUNS, "(upstream 0.99 s incl. numba JIT)");
        for (int s = 0; s < P3_PP_DONE; s++)
                print_stage(p3_pp_stage_name(s), stage[s], RUNS,
                            s == P3_PP_NMS ? "(upstream 11.0 s)" : "");
        print_stage("total", total, RUNS, "(upstream 13.5 s)");
        printf("speed-up vs upstream: total %.0fx, NMS %.0fx\n", REF_TOTAL / total[0],
               REF_NMS / MAX(stage[P3_PP_NMS][0], 1e-9));
        printf("peak RSS %.1f MB (VmHWM), current %.1f MB\n", status_mb("VmHWM"),
               status_mb("VmRSS"));
        free(r.mesh.f);
        free(r.face_idx);
        free(r.iou);
        st_close(r.f);
        return EXIT_SUCCESS;
}
