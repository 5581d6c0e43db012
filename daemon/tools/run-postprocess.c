/* SPDX-License-Identifier: MIT */
/* p3sam-run postprocess: the non-neural pipeline on a recorded replay (the cleaned mesh, the
 * sampled points and the three masks + IoUs per prompt), with and without do_post_process;
 * writes every intermediate under the golden replay's key names. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "postprocess.h"
#include "run.h"
#include "safetensors.h"

typedef struct kept {
        char name[64];
        p3_pp_dtype dtype;
        int ndim;
        int64_t shape[3];
        void *data;
} kept;

/* Traced tensors, copied. Phase 1 (post_process on) keeps only what differs from phase 0. */
typedef struct trace_store {
        kept *t;
        size_t n, cap;
        int phase;
        bool oom;
} trace_store;

static void trace_store_done(trace_store *s) {
        for (size_t i = 0; i < s->n; i++)
                free(s->t[i].data);
        free(s->t);
}

static size_t dtype_size(p3_pp_dtype t) {
        return t == P3_PP_U8 ? 1 : 8;
}

static void keep(void *userdata, const char *name, p3_pp_dtype dtype, int ndim,
                 const int64_t *shape, const void *data) {
        trace_store *s = userdata;
        if (s->phase == 1 && strncmp(name, "pp_", 3) != 0 && strcmp(name, "face_ids_5") != 0)
                return;
        if (s->n == s->cap) {
                size_t cap = s->cap ? 2 * s->cap : 64;
                kept *t = realloc(s->t, sizeof(kept) * cap);
                if (!t) {
                        s->oom = true;
                        return;
                }
                s->t = t;
                s->cap = cap;
        }
        kept *k = &s->t[s->n];
        size_t bytes = dtype_size(dtype);
        for (int d = 0; d < ndim; d++)
                bytes *= shape[d];
        *k = (kept) { .dtype = dtype, .ndim = ndim, .data = malloc(bytes + 1) };
        if (!k->data || ndim > 3) {
                free(k->data);
                s->oom = true;
                return;
        }
        memcpy(k->data, data, bytes);
        memcpy(k->shape, shape, sizeof(int64_t) * ndim);
        snprintf(k->name, sizeof(k->name), "%s", name);
        s->n++;
}

typedef struct replay {
        st_file *f;
        p3_mesh mesh;
        double *points;
        int32_t *face_idx;
        float *iou;
        int64_t n;
        int k;
        const uint8_t *bits[3];
} replay;

static void replay_done(replay *rp) {
        st_close(rp->f);
        free(rp->mesh.v);
        free(rp->mesh.f);
        free(rp->points);
        free(rp->face_idx);
        free(rp->iou);
}

/* A float [rows, cols] tensor as float64. */
static int read_f64(const st_file *f, const char *name, int64_t cols, int64_t *rows, double **ret) {
        const st_tensor *t = st_find(f, name);
        if (!t || t->ndim != 2 || t->shape[1] != cols || t->shape[0] < 1)
                return -EINVAL;
        double *d = malloc(sizeof(double) * t->numel);
        if (!d)
                return -ENOMEM;
        if (t->dtype == ST_F64)
                memcpy(d, t->data, sizeof(double) * t->numel);
        else {
                _cleanup_free_ float *tmp = malloc(sizeof(float) * t->numel);
                int r = tmp ? st_to_f32(t, tmp) : -ENOMEM;
                if (r < 0) {
                        free(d);
                        return r;
                }
                for (int64_t i = 0; i < t->numel; i++)
                        d[i] = tmp[i];
        }
        *rows = t->shape[0];
        *ret = d;
        return 0;
}

static int read_i32(const st_file *f, const char *name, int64_t numel, int32_t **ret) {
        const st_tensor *t = st_find(f, name);
        if (!t || t->numel != numel)
                return -EINVAL;
        *ret = malloc(sizeof(int32_t) * (numel + 1));
        return *ret ? st_to_i32(t, *ret) : -ENOMEM;
}

static int read_masks(const st_file *f, replay *rp) {
        static const char *names[3] = { "mask_1_bits", "mask_2_bits", "mask_3_bits" };
        const st_tensor *iou = st_find(f, "pred_iou");
        if (!iou || iou->ndim != 2 || iou->shape[1] != 3 || iou->shape[0] < 1 ||
            iou->shape[0] > INT32_MAX)
                return -EINVAL;
        rp->k = (int) iou->shape[0];
        for (int i = 0; i < 3; i++) {
                const st_tensor *t = st_find(f, names[i]);
                if (!t || (t->dtype != ST_U8 && t->dtype != ST_BOOL) || t->ndim != 2 ||
                    t->shape[0] != rp->k || t->shape[1] != DIV_ROUND_UP(rp->n, 8))
                        return -EINVAL;
                rp->bits[i] = t->data;
        }
        rp->iou = malloc(sizeof(float) * 3 * rp->k);
        return rp->iou ? st_to_f32(iou, rp->iou) : -ENOMEM;
}

static int replay_load(const char *path, replay *rp, p3_err *err) {
        int64_t nf = 0;
        int r = st_open(path, &rp->f, err);
        if (r < 0)
                return r;
        r = read_f64(rp->f, "mesh_vertices", 3, &rp->mesh.nv, &rp->mesh.v);
        const st_tensor *faces = st_find(rp->f, "mesh_faces");
        if (r >= 0 && (!faces || faces->ndim != 2 || faces->shape[1] != 3))
                r = -EINVAL;
        if (r >= 0) {
                nf = faces->shape[0];
                r = read_i32(rp->f, "mesh_faces", 3 * nf, &rp->mesh.f);
        }
        if (r >= 0)
                r = read_f64(rp->f, "points", 3, &rp->n, &rp->points);
        if (r >= 0)
                r = read_i32(rp->f, "face_idx", rp->n, &rp->face_idx);
        if (r >= 0)
                r = read_masks(rp->f, rp);
        if (r < 0)
                return p3_errf(err, r, "%s: needs mesh_vertices, mesh_faces, points, face_idx, "
                               "mask_{1,2,3}_bits and pred_iou of matching shapes", path);
        rp->mesh.nf = nf;
        return 0;
}

static int add_kept(st_writer *w, const trace_store *s) {
        static const st_dtype map[] = { [P3_PP_I64] = ST_I64, [P3_PP_F64] = ST_F64,
                                        [P3_PP_U8] = ST_U8 };
        int r = 0;
        for (size_t i = 0; r >= 0 && i < s->n; i++) {
                const kept *k = &s->t[i];
                r = st_writer_add(w, k->name, map[k->dtype], k->ndim, k->shape, k->data);
        }
        return r;
}

static int add_result(st_writer *w, const char *ids_name, const char *aabb_name,
                      const p3_pp_result *res) {
        int r = st_writer_add(w, ids_name, ST_I64, 1, (int64_t[]) { res->nf }, res->face_ids);
        if (r >= 0)
                r = st_writer_add(w, aabb_name, ST_F64, 3, (int64_t[]) { res->n_parts, 2, 3 },
                                  res->aabb);
        return r;
}

static int write_out(const char *path, const trace_store *s, const p3_adjacency *adj,
                     const p3_pp_result res[2], p3_err *err) {
        _cleanup_(st_writer_freep) st_writer *w = NULL;
        _cleanup_free_ int64_t *nbr = malloc(sizeof(int64_t) * (adj->rows * adj->deg + 1));
        int r = nbr ? st_writer_new(&w) : -ENOMEM;
        for (int64_t i = 0; nbr && i < adj->rows * adj->deg; i++)
                nbr[i] = adj->nbr[i];
        if (r >= 0)
                r = st_writer_add(w, "adjacent_faces", ST_I64, 2,
                                  (int64_t[]) { adj->rows, adj->deg }, nbr);
        if (r >= 0)
                r = add_kept(w, s);
        if (r >= 0)
                r = add_result(w, "final_face_ids_pp0", "aabb_pp0", &res[0]);
        if (r >= 0)
                r = add_result(w, "final_face_ids_pp1", "aabb_pp1", &res[1]);
        if (r < 0)
                return p3_errf(err, r, "cannot prepare %s: %s", path, p3_strerror(r));
        return st_writer_write_file(w, path, err);
}

static void results_done(p3_pp_result (*res)[2]) {
        p3_pp_result_done(&(*res)[0]);
        p3_pp_result_done(&(*res)[1]);
}

static int postprocess(const char *in_path, const char *out_path, double threshold, p3_err *err) {
        _cleanup_(replay_done) replay rp = {};
        _cleanup_(p3_adjacency_done) p3_adjacency adj = {};
        _cleanup_(trace_store_done) trace_store st = {};
        _cleanup_(results_done) p3_pp_result res[2] = {};
        int r = replay_load(in_path, &rp, err);
        if (r < 0)
                return r;
        r = p3_mesh_adjacency(&rp.mesh, &adj);
        if (r < 0)
                return p3_errf(err, r, "%s: cannot build the face adjacency: %s", in_path,
                               p3_strerror(r));
        p3_pp_input in = { .mesh = &rp.mesh, .adj = &adj, .points = rp.points,
                           .face_idx = rp.face_idx, .n = rp.n, .k = rp.k,
                           .mask_bits = { rp.bits[0], rp.bits[1], rp.bits[2] },
                           .pred_iou = rp.iou, .threshold = threshold };
        p3_pp_hooks h = { .trace = keep, .userdata = &st };
        for (st.phase = 0; st.phase < 2; st.phase++) {
                in.post_process = st.phase == 1;
                r = p3_postprocess(&in, &h, &res[st.phase], err);
                if (r < 0)
                        return r;
        }
        if (st.oom)
                return p3_errf(err, -ENOMEM, "out of memory while keeping the intermediates");
        return write_out(out_path, &st, &adj, res, err);
}

static void usage(FILE *f) {
        fputs("Usage: p3sam-run postprocess --replay R.safetensors --out OUT.safetensors\n"
              "                             [--threshold T]\n"
              "Run the mask and mesh post-processing on a recorded replay (mesh_vertices,\n"
              "mesh_faces, points, face_idx, mask_{1,2,3}_bits, pred_iou), once without and\n"
              "once with do_post_process (threshold T, default 0.95), and write every\n"
              "intermediate under the golden key names.\n",
              f);
}

int run_postprocess(int argc, char **argv) {
        static const struct option opts[] = {
                { "replay", required_argument, NULL, 'r' },
                { "out", required_argument, NULL, 'o' },
                { "threshold", required_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *in = NULL, *out = NULL;
        double threshold = P3_PP_THRESHOLD;
        char *end;
        int c;
        optind = 0;
        while ((c = getopt_long(argc, argv, "+r:o:t:h", opts, NULL)) >= 0)
                switch (c) {
                case 'r': in = optarg; break;
                case 'o': out = optarg; break;
                case 't':
                        threshold = strtod(optarg, &end);
                        if (end == optarg || *end || !isfinite(threshold)) {
                                fprintf(stderr,
                                        "p3sam-run: invalid value \"%s\" for --threshold.\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        if (optind < argc || !in || !out) {
                fprintf(stderr, "p3sam-run: postprocess needs --replay and --out.\n");
                usage(stderr);
                return 2;
        }
        p3_err err = {};
        int r = postprocess(in, out, threshold, &err);
        if (r < 0)
                return run_fail("%s.", p3_err_msg(&err, r));
        return 0;
}
