/* SPDX-License-Identifier: MIT */
/* p3sam-run segment / predict: the whole pipeline on a mesh file, on the CPU backend.
 * Outputs are written whole or not at all (run-output.c). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "export.h"
#include "export_format.h"
#include "mesh_import.h"
#include "pipeline.h"
#include "run-output.h"
#include "run.h"

#define MAX_OUTPUTS 32

typedef struct seg_args {
        const char *weights, *config, *mesh, *json;
        /* segment: -o, --json and --ply in order, each with its --format or NULL */
        const char *paths[MAX_OUTPUTS], *formats[MAX_OUTPUTS];
        int n_paths, n_o, n_format;
        int o_index[MAX_OUTPUTS]; /* paths[] of the i-th -o, for the i-th --format */
        const char *format_args[MAX_OUTPUTS];
        bool upstream;
        p3_out_spec *specs; /* what the above resolve to */
        int n_specs;
        p3_render_opts png;
        p3_pipeline_params p;
        long long threads;
        p3_precision precision;
        double *prompts; /* predict: [k, 3] */
        int k;
        bool quiet;
} seg_args;

static void usage(FILE *f, bool predict) {
        if (predict)
                fputs("Usage: p3sam-run predict --weights W [--config C.json] MESH --prompt X,Y,Z\n"
                      "                         [--prompt X,Y,Z ...] --json OUT.json [--points N]\n"
                      "                         [--seed S] [--threads T] [--quiet]\n"
                      "                         [--precision auto|fp32|bf16|fp16]\n"
                      "The three masks (as face lists) and IoUs of each prompt point (object\n"
                      "coordinates of MESH).\n",
                      f);
        else
                fputs("Usage: p3sam-run segment --weights W [--config C.json] MESH -o OUT.glb\n"
                      "                         [-o OUT ...] [--format F ...] [--upstream-files]\n"
                      "                         [--json OUT.json] [--ply OUT.ply] [--points N]\n"
                      "                         [--prompts K] [--batch B] [--seed S] [--post-process]\n"
                      "                         [--threshold T] [--threads T] [--quiet]\n"
                      "                         [--png-size N] [--png-boxes]\n"
                      "                         [--precision auto|fp32|bf16|fp16]\n"
                      "Segment MESH (glb, gltf, obj, ply, stl, off) into parts. CPU defaults: 20000\n"
                      "points, 64 prompts (upstream: 100000 and 400), seed 42, --batch auto (32\n"
                      "on the CPU; on a GPU all the prompts, up to 4e7 prompt-point pairs).\n"
                      "Each -o is written in the format its name says (*.glb, *.ply, *.json,\n"
                      "*.png, *_face_ids.npy, *_aabb.npy, *_aabb.glb) or, with --format once\n"
                      "per -o in order, in glb, ply, json, png, face-ids, aabb or aabb-glb.\n"
                      "--upstream-files also writes upstream's NAME.glb, NAME.ply, NAME_aabb.glb,\n"
                      "NAME_aabb.npy and NAME_face_ids.npy, NAME being the first -o without its\n"
                      "extension. The PNG is N x N pixels (default 1024), boxes outlined with\n"
                      "--png-boxes.\n",
                      f);
}

static int add_prompt(seg_args *a, const char *s) {
        double x, y, z;
        char extra;
        if (sscanf(s, "%lf,%lf,%lf%c", &x, &y, &z, &extra) != 3 || !isfinite(x) ||
            !isfinite(y) || !isfinite(z))
                return -EINVAL;
        double *p = realloc(a->prompts, sizeof(double) * 3 * (a->k + 1));
        if (!p)
                return -ENOMEM;
        a->prompts = p;
        p[3 * a->k] = x;
        p[3 * a->k + 1] = y;
        p[3 * a->k + 2] = z;
        a->k++;
        return 0;
}

static int bad_value(const char *opt, const char *v, bool predict) {
        fprintf(stderr, "p3sam-run: invalid value \"%s\" for %s.\n", v, opt);
        usage(stderr, predict);
        return 2;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, bool predict, seg_args *a) {
        static const struct option opts[] = {
                { "weights", required_argument, NULL, 'w' },
                { "config", required_argument, NULL, 'c' },
                { "output", required_argument, NULL, 'o' },
                { "json", required_argument, NULL, 'j' },
                { "ply", required_argument, NULL, 'y' },
                { "points", required_argument, NULL, 'n' },
                { "prompts", required_argument, NULL, 'k' },
                { "batch", required_argument, NULL, 'b' },
                { "seed", required_argument, NULL, 's' },
                { "post-process", no_argument, NULL, 'P' },
                { "threshold", required_argument, NULL, 'T' },
                { "threads", required_argument, NULL, 't' },
                { "prompt", required_argument, NULL, 'p' },
                { "quiet", no_argument, NULL, 'q' },
                { "help", no_argument, NULL, 'h' },
                { "precision", required_argument, NULL, 'X' },
                { "format", required_argument, NULL, 'F' },
                { "upstream-files", no_argument, NULL, 'U' },
                { "png-size", required_argument, NULL, 'Z' },
                { "png-boxes", no_argument, NULL, 'B' },
                {},
        };
        long long v;
        int c;
        p3_pipeline_params_cpu(&a->p);
        a->precision = P3_PRECISION_FP32; /* a reference tool */
        p3_render_opts_default(&a->png);
        optind = 0;
        while ((c = getopt_long(argc, argv, "w:c:o:j:y:n:k:b:s:PT:t:p:qhX:", opts, NULL)) >= 0) {
                if (strchr("ojyF", c) && a->n_paths >= MAX_OUTPUTS) {
                        fprintf(stderr, "p3sam-run: at most %d outputs.\n", MAX_OUTPUTS);
                        return 2;
                }
                switch (c) {
                case 'w': a->weights = optarg; break;
                case 'c': a->config = optarg; break;
                case 'o':
                        a->o_index[a->n_o++] = a->n_paths;
                        a->paths[a->n_paths++] = optarg;
                        break;
                case 'j':
                        a->json = optarg;
                        if (!predict) {
                                a->formats[a->n_paths] = "json";
                                a->paths[a->n_paths++] = optarg;
                        }
                        break;
                case 'y':
                        a->formats[a->n_paths] = "ply";
                        a->paths[a->n_paths++] = optarg;
                        break;
                case 'F':
                        if (p3_out_format_from_name(optarg) == P3_OUT_INVALID)
                                return bad_value("--format", optarg, predict);
                        a->format_args[a->n_format++] = optarg;
                        break;
                case 'U': a->upstream = true; break;
                case 'B': a->png.boxes = true; break;
                case 'Z':
                        if (!run_parse_int(optarg, P3_RENDER_MIN_SIZE, P3_RENDER_MAX_SIZE, &v))
                                return bad_value("--png-size", optarg, predict);
                        a->png.size = (int) v;
                        break;
                case 'P': a->p.post_process = true; break;
                case 'q': a->quiet = true; break;
                case 'n':
                        if (!run_parse_int(optarg, 16, 10000000, &v))
                                return bad_value("--points", optarg, predict);
                        a->p.points = v;
                        break;
                case 'k':
                        if (!run_parse_int(optarg, 1, 100000, &v))
                                return bad_value("--prompts", optarg, predict);
                        a->p.prompts = (int) v;
                        break;
                case 'b':
                        if (strcmp(optarg, "auto") == 0)
                                v = 0;
                        else if (!run_parse_int(optarg, 1, 4096, &v))
                                return bad_value("--batch", optarg, predict);
                        a->p.prompt_batch = (int) v;
                        break;
                case 's':
                        if (!run_parse_int(optarg, 0, UINT32_MAX, &v))
                                return bad_value("--seed", optarg, predict);
                        a->p.seed = (uint64_t) v;
                        break;
                case 't':
                        if (!run_parse_int(optarg, 0, 1024, &a->threads))
                                return bad_value("--threads", optarg, predict);
                        break;
                case 'T': {
                        char *end;
                        a->p.threshold = strtod(optarg, &end);
                        if (*end || !(a->p.threshold > 0 && a->p.threshold <= 1))
                                return bad_value("--threshold", optarg, predict);
                        break;
                }
                case 'p':
                        if (!predict || add_prompt(a, optarg) < 0)
                                return bad_value("--prompt", optarg, predict);
                        break;
                case 'X':
                        if (!run_parse_precision(optarg, &a->precision))
                                return bad_value("--precision", optarg, predict);
                        break;
                case 'h': usage(stdout, predict); return 0;
                default: usage(stderr, predict); return 2;
                }
        }
        if (optind != argc - 1 || !a->weights) {
                fprintf(stderr, "p3sam-run: give --weights and exactly one MESH.\n");
                usage(stderr, predict);
                return 2;
        }
        a->mesh = argv[optind];
        if (predict ? (!a->json || a->k == 0) : !a->n_o) {
                fprintf(stderr, predict ? "p3sam-run: predict needs --json and at least one --prompt.\n"
                                        : "p3sam-run: segment needs -o OUT.glb.\n");
                usage(stderr, predict);
                return 2;
        }
        if (a->n_format && a->n_format != a->n_o) {
                fprintf(stderr, "p3sam-run: %d --format for %d -o: give one per -o, in order, "
                        "or none to go by the names.\n", a->n_format, a->n_o);
                return 2;
        }
        for (int i = 0; i < a->n_format; i++)
                a->formats[a->o_index[i]] = a->format_args[i];
        return -1;
}

static void on_progress(void *userdata, const char *stage, double fraction) {
        const seg_args *a = userdata;
        if (!a->quiet && isatty(STDERR_FILENO))
                fprintf(stderr, "\r%-16s %3.0f%%%s", stage, 100 * fraction,
                        fraction >= 1.0 ? "\n" : "");
}

typedef struct outputs {
        run_output o[MAX_OUTPUTS + P3_UPSTREAM_FILES];
        int n;
} outputs;

static void outputs_abort(outputs *out) {
        for (int i = 0; i < out->n; i++)
                run_output_abort(&out->o[i]);
}

static int write_segmentation(const seg_args *a, const run_model *rm, const p3_segment_result *res,
                              p3_err *err) {
        _cleanup_(outputs_abort) outputs out = {};
        p3_segmentation s = { .mesh = &res->mesh, .face_ids = res->face_ids,
                              .n_parts = res->n_parts, .part_labels = res->part_labels,
                              .aabb = res->aabb, .colours = res->colours };
        p3_report rep = {
                .input = a->mesh, .points = a->p.points, .prompts = a->p.prompts,
                .prompt_batch = res->prompt_batch, .seed = (int64_t) a->p.seed,
                .post_process = a->p.post_process, .threshold = a->p.threshold,
                .backend = rm->be->device, .weights = a->weights,
                .weights_synthetic = run_model_synthetic(rm),
                .timings = res->timings, .n_timings = res->n_timings,
        };
        int r = 0;
        for (int i = 0; r >= 0 && i < a->n_specs; i++) {
                run_output *o = &out.o[out.n++];
                r = run_output_open(o, a->specs[i].path, err);
                if (r >= 0)
                        r = p3_export_format(&s, &rep, &a->png, a->specs[i].format, o->fd, err);
        }
        for (int i = 0; r >= 0 && i < out.n; i++)
                r = run_output_commit(&out.o[i], err);
        return r;
}

static int segment(seg_args *a, p3_err *err) {
        _cleanup_(run_model_close) run_model rm = {};
        p3_mesh mesh = {};
        p3_mesh_limits lim;
        p3_mesh_limits_default(&lim);
        int r = p3_pipeline_params_check(&a->p, err);
        if (r >= 0)
                r = p3_mesh_import_file(a->mesh, NULL, &lim, &mesh, err);
        if (r >= 0)
                r = run_model_open(a->weights, a->config, (int) a->threads, P3_BACKEND_CPU, a->precision, &rm,
                                   err);
        if (r < 0) {
                p3_mesh_done(&mesh);
                return r;
        }
        p3_pipeline_hooks hooks = { .progress = on_progress, .userdata = a };
        if (a->prompts) {
                p3_predict_result res = {};
                r = p3_pipeline_predict(rm.m, &mesh, a->prompts, a->k, &a->p, &hooks, &res, err);
                if (r >= 0) {
                        run_output o;
                        r = run_output_open(&o, a->json, err);
                        if (r >= 0)
                                r = p3_export_predict_json(&res.mesh, res.k, a->prompts,
                                                           (const int32_t *const *) res.faces,
                                                           res.counts, res.iou, o.fd, err);
                        r = r >= 0 ? run_output_commit(&o, err) : (run_output_abort(&o), r);
                }
                p3_predict_result_done(&res);
        } else {
                p3_segment_result res = {};
                r = p3_pipeline_segment(rm.m, &mesh, &a->p, &hooks, &res, err);
                if (r >= 0)
                        r = write_segmentation(a, &rm, &res, err);
                if (r >= 0 && !a->quiet)
                        fprintf(stderr, "%s: %d parts over %lld faces\n", a->mesh, res.n_parts,
                                (long long) res.mesh.nf);
                p3_segment_result_done(&res);
        }
        p3_mesh_done(&mesh);
        return r;
}

static int run(int argc, char **argv, bool predict) {
        seg_args a = {};
        int r = parse_args(argc, argv, predict, &a), q = 0;
        p3_err err = {};
        /* before the model runs: a name that says no format is a usage error */
        if (r < 0 && !predict)
                q = p3_out_resolve(a.paths, a.n_paths, a.formats, a.upstream, &a.specs,
                                   &a.n_specs, &err);
        if (q == -ENOMEM) { /* not the command line's fault */
                r = run_fail("%s.", p3_err_msg(&err, q));
        } else if (q < 0) {
                fprintf(stderr, "p3sam-run: %s.\n", p3_err_msg(&err, q));
                r = 2;
        } else if (r < 0) {
                r = segment(&a, &err);
                if (r < 0)
                        r = run_fail("%s.", p3_err_msg(&err, r));
        }
        p3_out_specs_free(a.specs, a.n_specs);
        free(a.prompts);
        return r;
}

int run_segment(int argc, char **argv) {
        return run(argc, argv, false);
}

int run_predict(int argc, char **argv) {
        return run(argc, argv, true);
}
