/* SPDX-License-Identifier: MIT */
/* p3samctl segment and predict: open the mesh and the outputs here, with the caller's own
 * rights, and hand p3samd the descriptors. The outputs are unnamed files in their directories
 * (or temporary files beside their final names), named only when the job succeeds, so that a
 * failed or cancelled job never leaves a half-written file under the name the user asked for,
 * nor, with unnamed files, anything else. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "ctl-batch.h"
#include "ctl-bus.h"
#include "ctl-progress.h"
#include "ctl-segment.h"
#include "export_format.h"
#include "parse-util.h"

#define MAX_PROMPT_POINTS 4096
#define REDRAW_USEC (200 * 1000)


static void help_segment(void) {
        printf("Usage: p3samctl segment MESH... [OPTIONS]\n"
               "Segment MESH into parts with p3samd and write the result.\n\n"
               "  -o, --output FILE     where to write (default: beside MESH, NAME.parts.glb);\n"
               "                        repeatable, each in the format its name says: .glb,\n"
               "                        .ply, .json, .png, _face_ids.npy, _aabb.npy, _aabb.glb\n"
               "      --format FMT      glb, ply, json, png, face-ids, aabb or aabb-glb, once\n"
               "                        per -o in order (default: from the output's name)\n"
               "      --upstream-files  also write upstream's NAME.glb, NAME.ply, NAME_aabb.glb,\n"
               "                        NAME_aabb.npy, NAME_face_ids.npy (NAME: the first -o\n"
               "                        without its extension), for X-Part\n"
               "      --png-size N      the picture's width and height (default 1024)\n"
               "      --png-boxes       outline each part's box in the picture\n"
               "      --json FILE       also write the JSON report to FILE\n"
               "      --points N        points sampled on the surface\n"
               "      --prompts K       prompt points\n"
               "      --batch B|auto    prompts per batch of the mask heads\n"
               "      --seed S          random seed\n"
               "      --post-process    merge and clean the parts (--no-post-process: do not)\n"
               "      --threshold T     mask threshold in (0, 1]\n"
               "      --no-wait         submit, print the job and exit; the output fills when\n"
               "                        the job is done\n"
               "      --user            talk to p3samd on the user bus\n"
               "      --instance N      talk to the instance on GPU N\n"
               "  -h, --help            show this help\n\n"
               "Many meshes: several MESH, directories (searched for meshes), or --from:\n"
               "      --from LIST       also the meshes named in LIST, one a line (-: stdin)\n"
               "      --output-dir DIR  write under DIR, mirroring the meshes' paths\n"
               "      --force           redo meshes whose output is newer than the mesh\n"
               "      --summary FILE    one JSON line per mesh into FILE\n"
               "      --instances all|N,...  spread the meshes over these running instances\n"
               "      --shard I/N       take every N-th mesh of the sorted list from the I-th\n"
               "      --shard-count N   N shards, this one JOB_COMPLETION_INDEX (Kubernetes)\n\n"
               "The mesh may be glb, gltf (with embedded buffers), obj, ply, stl or off. Ctrl-C\n"
               "cancels the job. Exit status: 0 done, 1 failed, 2 usage, 3 cancelled, 4 access\n"
               "denied, 5 p3samd not running.\n");
}

static void help_predict(void) {
        printf("Usage: p3samctl predict MESH --prompt X,Y,Z [--prompt X,Y,Z ...] [OPTIONS]\n"
               "Predict one mask per prompt point on MESH with p3samd, as JSON.\n\n"
               "      --prompt X,Y,Z    a prompt point in the mesh's coordinates (repeatable)\n"
               "  -o, --output FILE     where to write (default: beside MESH, NAME.masks.json)\n"
               "      --points N        points sampled on the surface\n"
               "      --seed S          random seed\n"
               "      --no-wait         submit, print the job and exit; the output fills when\n"
               "                        the job is done\n"
               "      --user            talk to p3samd on the user bus\n"
               "      --instance N      talk to the instance on GPU N\n"
               "  -h, --help            show this help\n\n"
               "Ctrl-C cancels the job. Exit status as for p3samctl segment.\n");
}

/* ---- the command line ---- */

enum {
        ARG_FORMAT = 0x100,
        ARG_JSON,
        ARG_POINTS,
        ARG_PROMPTS,
        ARG_BATCH,
        ARG_SEED,
        ARG_POST,
        ARG_NO_POST,
        ARG_THRESHOLD,
        ARG_NO_WAIT,
        ARG_PROMPT,
        ARG_FROM,
        ARG_OUTPUT_DIR,
        ARG_FORCE,
        ARG_SUMMARY,
        ARG_INSTANCES,
        ARG_SHARD,
        ARG_SHARD_COUNT,
        ARG_UPSTREAM,
        ARG_PNG_SIZE,
        ARG_PNG_BOXES,
};

static int parse_count(const char *opt, const char *s, uint64_t *ret) {
        if (parse_u64_range(s, 1, UINT32_MAX, ret) < 0)
                return ctl_fail(CTL_EXIT_USAGE, "%s takes a positive whole number, not \"%s\".",
                                opt, s);
        return -1;
}

/* "X,Y,Z": three plain decimal numbers. */
static int parse_prompt(const char *s, seg_args *a) {
        if (a->n_xyz >= MAX_PROMPT_POINTS)
                return ctl_fail(CTL_EXIT_USAGE, "At most %d prompt points.", MAX_PROMPT_POINTS);
        _cleanup_free_ char *copy = strdup(s);
        double *xyz = realloc(a->xyz, sizeof(double) * 3 * (a->n_xyz + 1));
        if (xyz)
                a->xyz = xyz;
        if (!copy || !xyz)
                return ctl_fail(CTL_EXIT_FAILURE, "Out of memory.");
        char *save = NULL, *tok = strtok_r(copy, ",", &save);
        int n = 0;
        for (; tok && n < 3; tok = strtok_r(NULL, ",", &save), n++)
                if (parse_double_range(tok, -DBL_MAX, DBL_MAX, &xyz[3 * a->n_xyz + n]) < 0)
                        break;
        if (n != 3 || tok)
                return ctl_fail(CTL_EXIT_USAGE,
                                "--prompt takes three numbers X,Y,Z (e.g. 0.1,-0.2,0.3), not "
                                "\"%s\".",
                                s);
        a->n_xyz++;
        return -1;
}

/* "all", or GPU numbers "0,1,3". */
static bool valid_instances(const char *s) {
        if (strcmp(s, "all") == 0)
                return true;
        if (!*s || strspn(s, "0123456789,") != strlen(s) || s[strlen(s) - 1] == ',')
                return false;
        return strstr(s, ",,") == NULL && s[0] != ',';
}

/* The options of many meshes; -1 to go on, else an exit code. */
static int parse_batch_option(int c, seg_args *a) {
        batch_shard shard;
        switch (c) {
        case ARG_FROM:
                a->from = optarg;
                return -1;
        case ARG_OUTPUT_DIR:
                a->output_dir = optarg;
                return -1;
        case ARG_FORCE:
                a->force = true;
                return -1;
        case ARG_SUMMARY:
                a->summary = optarg;
                return -1;
        case ARG_INSTANCES:
                if (!valid_instances(optarg))
                        return ctl_fail(CTL_EXIT_USAGE, "--instances takes all or GPU numbers "
                                                        "(0,1,...), not \"%s\".", optarg);
                a->instances = optarg;
                return -1;
        case ARG_SHARD:
                if (batch_shard_parse(optarg, &shard) < 0)
                        return ctl_fail(CTL_EXIT_USAGE, "--shard takes I/N with 0 <= I < N "
                                                        "(e.g. 0/4), not \"%s\".", optarg);
                a->shard = optarg;
                return -1;
        case ARG_SHARD_COUNT:
                return parse_count("--shard-count", optarg, &a->shard_count);
        default:
                return -2;
        }
}

/* Appends s to the list *v of *n. */
static int push(const char ***v, int *n, const char *s) {
        const char **p = realloc(*v, sizeof(*p) * (size_t) (*n + 1));
        if (!p)
                return ctl_fail(CTL_EXIT_FAILURE, "Out of memory.");
        p[(*n)++] = s;
        *v = p;
        return -1;
}

/* The options of the outputs; -1 to go on, -2 for another option, else an exit code. */
static int parse_output_option(int c, seg_args *a) {
        uint64_t v;
        switch (c) {
        case 'o':
                if (a->predict && a->output)
                        return ctl_fail(CTL_EXIT_USAGE, "predict writes one output; give -o "
                                                        "once.");
                a->output = a->output ?: optarg;
                return push(&a->outputs, &a->n_outputs, optarg);
        case ARG_FORMAT:
                if (p3_out_format_from_name(optarg) == P3_OUT_INVALID)
                        return ctl_fail(CTL_EXIT_USAGE, "--format takes glb, ply, json, png, "
                                                        "face-ids, aabb or aabb-glb, not "
                                                        "\"%s\".", optarg);
                a->format = a->format ?: optarg;
                return push(&a->formats, &a->n_formats, optarg);
        case ARG_UPSTREAM:
                a->upstream_files = true;
                return -1;
        case ARG_PNG_SIZE:
                if (parse_u64_range(optarg, P3_RENDER_MIN_SIZE, P3_RENDER_MAX_SIZE, &v) < 0)
                        return ctl_fail(CTL_EXIT_USAGE, "--png-size takes a size in pixels from "
                                                        "%d to %d, not \"%s\".",
                                        P3_RENDER_MIN_SIZE, P3_RENDER_MAX_SIZE, optarg);
                a->png_size = (uint32_t) v;
                return -1;
        case ARG_PNG_BOXES:
                a->png_boxes = 1;
                return -1;
        default:
                return -2;
        }
}

/* One option; -1 to go on, else an exit code. */
static int parse_option(int c, seg_args *a, char **argv) {
        int r = parse_batch_option(c, a);
        if (r == -2)
                r = parse_output_option(c, a);
        if (r != -2)
                return r;
        switch (c) {
        case ARG_JSON:
                a->report = optarg;
                return -1;
        case ARG_POINTS:
                return parse_count("--points", optarg, &a->points);
        case ARG_PROMPTS:
                return parse_count("--prompts", optarg, &a->prompts);
        case ARG_BATCH:
                a->have_batch = true;
                if (strcmp(optarg, "auto") == 0) {
                        a->batch = 0;
                        return -1;
                }
                return parse_count("--batch", optarg, &a->batch);
        case ARG_SEED:
                if (parse_u64_range(optarg, 0, UINT64_MAX, &a->seed) < 0)
                        return ctl_fail(CTL_EXIT_USAGE, "--seed takes a whole number, not \"%s\".",
                                        optarg);
                a->have_seed = true;
                return -1;
        case ARG_POST:
        case ARG_NO_POST:
                a->post_process = c == ARG_POST;
                return -1;
        case ARG_THRESHOLD:
                if (parse_double_range(optarg, nextafter(0, 1), 1, &a->threshold) < 0)
                        return ctl_fail(CTL_EXIT_USAGE,
                                        "--threshold takes a number in (0, 1], not \"%s\".",
                                        optarg);
                return -1;
        case ARG_NO_WAIT:
                a->no_wait = true;
                return -1;
        case ARG_PROMPT:
                return parse_prompt(optarg, a);
        default:
                return ctl_parse_option_common(c, argv[0], argv);
        }
}

/* Anything but one mesh file and the options of one: the batch (ctl-batch-run.c). */
static bool is_batch(const seg_args *a) {
        struct stat st;
        return a->n_meshes > 1 || a->from || a->output_dir || a->force || a->summary ||
               a->instances || a->shard || a->shard_count ||
               (a->n_meshes == 1 && stat(a->meshes[0], &st) == 0 && S_ISDIR(st.st_mode));
}

static int parse_args(int argc, char **argv, seg_args *a) {
        static const struct option segment_opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "output", required_argument, NULL, 'o' },
                { "format", required_argument, NULL, ARG_FORMAT },
                { "json", required_argument, NULL, ARG_JSON },
                { "points", required_argument, NULL, ARG_POINTS },
                { "prompts", required_argument, NULL, ARG_PROMPTS },
                { "batch", required_argument, NULL, ARG_BATCH },
                { "seed", required_argument, NULL, ARG_SEED },
                { "post-process", no_argument, NULL, ARG_POST },
                { "no-post-process", no_argument, NULL, ARG_NO_POST },
                { "threshold", required_argument, NULL, ARG_THRESHOLD },
                { "no-wait", no_argument, NULL, ARG_NO_WAIT },
                { "from", required_argument, NULL, ARG_FROM },
                { "output-dir", required_argument, NULL, ARG_OUTPUT_DIR },
                { "force", no_argument, NULL, ARG_FORCE },
                { "summary", required_argument, NULL, ARG_SUMMARY },
                { "instances", required_argument, NULL, ARG_INSTANCES },
                { "shard", required_argument, NULL, ARG_SHARD },
                { "shard-count", required_argument, NULL, ARG_SHARD_COUNT },
                { "upstream-files", no_argument, NULL, ARG_UPSTREAM },
                { "png-size", required_argument, NULL, ARG_PNG_SIZE },
                { "png-boxes", no_argument, NULL, ARG_PNG_BOXES },
                CTL_GLOBAL_OPTIONS,
                {},
        };
        static const struct option predict_opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "output", required_argument, NULL, 'o' },
                { "prompt", required_argument, NULL, ARG_PROMPT },
                { "points", required_argument, NULL, ARG_POINTS },
                { "seed", required_argument, NULL, ARG_SEED },
                { "no-wait", no_argument, NULL, ARG_NO_WAIT },
                CTL_GLOBAL_OPTIONS,
                {},
        };
        int c;
        optind = 0;
        while ((c = getopt_long(argc, argv, ":ho:", a->predict ? predict_opts : segment_opts,
                                NULL)) >= 0) {
                if (c == 'h') {
                        a->predict ? help_predict() : help_segment();
                        return CTL_EXIT_OK;
                }
                int r = parse_option(c, a, argv);
                if (r >= 0)
                        return r;
        }
        a->meshes = argv + optind;
        a->n_meshes = argc - optind;
        if (!a->predict && is_batch(a))
                return -1;
        if (optind >= argc)
                return ctl_fail(CTL_EXIT_USAGE, "Name the mesh: p3samctl %s MESH%s.", argv[0],
                                a->predict ? " --prompt X,Y,Z" : "");
        if (optind + 1 < argc)
                return ctl_fail(CTL_EXIT_USAGE, "Unexpected argument \"%s\": %s takes one mesh.",
                                argv[optind + 1], argv[0]);
        a->mesh = argv[optind];
        if (a->predict && a->n_xyz == 0)
                return ctl_fail(CTL_EXIT_USAGE, "Give at least one --prompt X,Y,Z.");
        return -1;
}

/* ---- formats ---- */

static const char *extension(const char *path) {
        const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
        return dot && (!slash || dot > slash) && dot[1] ? dot + 1 : NULL;
}

/* A .gltf's buffers must be inside it (data: URIs): only the one descriptor travels, so the
 * daemon cannot open a .bin beside it. Checked here, where the cure can be named. */
char *ctl_gltf_unfit(const char *path) {
        json_object *root = json_object_from_file(path);
        if (!root)
                return NULL; /* not JSON: the daemon says what is wrong with it */
        json_object *buffers = NULL;
        const char *external = NULL;
        if (json_object_object_get_ex(root, "buffers", &buffers) &&
            json_object_is_type(buffers, json_type_array))
                for (size_t i = 0; !external && i < json_object_array_length(buffers); i++) {
                        json_object *uri = NULL;
                        if (json_object_object_get_ex(json_object_array_get_idx(buffers, i),
                                                      "uri", &uri) &&
                            strncmp(json_object_get_string(uri) ?: "data:", "data:", 5) != 0)
                                external = json_object_get_string(uri);
                }
        char *sentence = NULL;
        if (external && asprintf(&sentence,
                                 "%s keeps its geometry in the separate file \"%.100s\", which "
                                 "cannot travel to p3samd with it; convert it to a single GLB "
                                 "first (e.g. gltf-transform copy IN.gltf OUT.glb).",
                                 path, external) < 0)
                sentence = strdup("Out of memory.");
        json_object_put(root);
        return sentence;
}

static int check_gltf_self_contained(const char *path) {
        _cleanup_free_ char *sentence = ctl_gltf_unfit(path);
        return sentence ? ctl_fail(CTL_EXIT_FAILURE, "%s", sentence) : 0;
}

/* ---- output files ---- */

/* ".NAME.XXXXXX" beside path, for mkostemp() or random_suffix(). */
static char *temp_name(const char *path) {
        const char *slash = strrchr(path, '/');
        int dirlen = slash ? (int) (slash - path + 1) : 0;
        char *name;
        if (asprintf(&name, "%.*s.%s.XXXXXX", dirlen, path, slash ? slash + 1 : path) < 0)
                return NULL;
        return name;
}

/* Fills the XXXXXX at the end of name, as mkostemp() would, without creating anything. */
static void random_suffix(char *name) {
        static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        unsigned char bytes[6];
        char *x = name + strlen(name) - sizeof(bytes);
        /* a name taken already is tried again with another, so any varying bytes do */
        if (getrandom(bytes, sizeof(bytes), GRND_NONBLOCK) != (ssize_t) sizeof(bytes))
                for (size_t i = 0; i < sizeof(bytes); i++)
                        bytes[i] = (unsigned char) random();
        for (size_t i = 0; i < sizeof(bytes); i++)
                x[i] = chars[bytes[i] % (sizeof(chars) - 1)];
}

/* An unnamed file in path's directory (O_TMPFILE): if we die, even by kill -9, it goes with
 * us, where a named temporary file would stay behind. It gets its name with linkat() through
 * /proc/self/fd (linkat(AT_EMPTY_PATH) would need CAP_DAC_READ_SEARCH), so not without /proc.
 * Returns the descriptor or a negative errno: -EOPNOTSUPP where the filesystem cannot (EISDIR
 * from kernels before O_TMPFILE, which see O_DIRECTORY), for the named file instead. */
static int open_unnamed(const char *path) {
        const char *slash = strrchr(path, '/');
        _cleanup_free_ char *dir = !slash ? strdup(".")
                                 : slash == path ? strdup("/")
                                                 : strndup(path, (size_t) (slash - path));
        if (!dir)
                return -ENOMEM;
        if (access("/proc/self/fd", F_OK) < 0)
                return -EOPNOTSUPP;
        int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
        if (fd < 0)
                return errno == EISDIR ? -EOPNOTSUPP : -errno;
        return fd;
}

static int open_named(out_file *o, const char *path) {
        o->temp = temp_name(path);
        if (!o->temp)
                return -ENOMEM;
        o->fd = mkostemp(o->temp, O_CLOEXEC);
        if (o->fd < 0) {
                int r = -errno;
                free(o->temp);
                o->temp = NULL;
                return r;
        }
        return 0;
}

/* Where the result is written until the job succeeds: an unnamed file in path's directory, or
 * a named ".NAME.XXXXXX" beside it where the filesystem has no unnamed ones (in_place: path
 * itself, for --no-wait, which cannot name anything afterwards). Mode 0644 as a plain
 * redirection would give. */
int ctl_out_open(out_file *o, const char *path) {
        o->final = strdup(path);
        if (!o->final)
                return -ENOMEM;
        int r = open_unnamed(path);
        if (r >= 0) {
                o->fd = r;
                o->unnamed = true;
        } else if (r == -EOPNOTSUPP)
                r = open_named(o, path);
        if (r < 0)
                return r;
        (void) fchmod(o->fd, 0644);
        return 0;
}

static int out_file_open(out_file *o, const char *path, bool in_place) {
        if (!in_place) {
                int r = ctl_out_open(o, path);
                if (r == -ENOMEM)
                        return ctl_fail(CTL_EXIT_FAILURE, "Out of memory.");
                if (r < 0)
                        return ctl_fail(CTL_EXIT_FAILURE, "Cannot create a file beside %s: %s.",
                                        path, strerror(-r));
                return 0;
        }
        o->final = strdup(path);
        if (!o->final)
                return ctl_fail(CTL_EXIT_FAILURE, "Out of memory.");
        o->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (o->fd < 0)
                return ctl_fail(CTL_EXIT_FAILURE, "Cannot create %s: %s.", path, strerror(errno));
        return 0;
}

/* Gives the unnamed file a temporary name beside final (linkat() through /proc: it cannot
 * replace, so a name not taken yet); the rename over final comes after. */
static int link_unnamed(out_file *o) {
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", o->fd);
        _cleanup_free_ char *tmp = temp_name(o->final);
        if (!tmp)
                return -ENOMEM;
        int r = -EEXIST;
        for (int i = 0; i < 100 && r == -EEXIST; i++) {
                random_suffix(tmp);
                r = linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
        }
        if (r < 0)
                return r;
        o->temp = TAKE_PTR(tmp); /* from now on ctl_out_done() removes it, unless renamed */
        o->unnamed = false;
        return 0;
}

/* The first half of moving a finished result into place, which every output of a job goes
 * through before any of them is renamed: the data on disk (fsync: a crash after the rename
 * must not leave an empty file under the name), a name beside final, and final checked not
 * to be a directory (the one common reason a rename would then fail). */
int ctl_out_stage(out_file *o) {
        struct stat st;
        if (o->staged || o->fd < 0 || (!o->temp && !o->unnamed))
                return 0;
        if (fsync(o->fd) < 0)
                return -errno;
        if (stat(o->final, &st) == 0 && S_ISDIR(st.st_mode))
                return -EISDIR;
        int r = o->unnamed ? link_unnamed(o) : 0;
        o->staged = r == 0;
        return r;
}

/* Success: the temporary file becomes the output, whole, in one rename (an existing file of
 * that name is replaced in one step). */
int ctl_out_commit(out_file *o) {
        int r = ctl_out_stage(o);
        if (r < 0 || !o->temp)
                return r;
        if (rename(o->temp, o->final) < 0)
                return -errno;
        free(o->temp);
        o->temp = NULL;
        return 0;
}

static int out_file_fail(const out_file *o, int r) {
        return ctl_fail(CTL_EXIT_FAILURE, "Cannot move the result into place as %s: %s.",
                        o->final, strerror(-r));
}

/* Every output (the n of outs, then report) staged first, then renamed: an output that
 * cannot take its name leaves the others where they were (the old files, or none), not half
 * of them replaced. */
static int out_files_commit(out_file *outs, int n, out_file *report) {
        for (int i = 0; i <= n; i++) {
                out_file *o = i < n ? &outs[i] : report;
                int r = ctl_out_stage(o);
                if (r < 0)
                        return out_file_fail(o, r);
        }
        for (int i = 0; i <= n; i++) {
                out_file *o = i < n ? &outs[i] : report;
                int r = ctl_out_commit(o);
                if (r < 0)
                        return out_file_fail(o, r);
        }
        return 0;
}

/* Drops a temporary file that was not committed (an unnamed one goes with its descriptor),
 * closes, frees. */
void ctl_out_done(out_file *o) {
        if (o->temp)
                (void) unlink(o->temp);
        if (o->fd >= 0)
                close(o->fd);
        free(o->temp);
        free(o->final);
        *o = OUT_FILE_NULL;
}

/* ---- the request ---- */

/* "outputs": the outputs after the first, as (descriptor, format). */
static int append_outputs(sd_bus_message *m, const ctl_output *outs, int n_outs) {
        int r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "outputs");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a(hs)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(hs)");
        for (int i = 1; r >= 0 && i < n_outs; i++)
                r = sd_bus_message_append(m, "(hs)", outs[i].fd, outs[i].format);
        for (int i = 0; r >= 0 && i < 3; i++)
                r = sd_bus_message_close_container(m);
        return r;
}

static int append_options(sd_bus_message *m, const seg_args *a, const ctl_output *outs,
                          int n_outs, int report_fd) {
        int r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && n_outs > 1)
                r = append_outputs(m, outs, n_outs);
        if (r >= 0 && a->png_size)
                r = sd_bus_message_append(m, "{sv}", "png_size", "u", a->png_size);
        if (r >= 0 && a->png_boxes >= 0)
                r = sd_bus_message_append(m, "{sv}", "png_boxes", "b", a->png_boxes);
        if (r >= 0 && a->points)
                r = sd_bus_message_append(m, "{sv}", "points", "u", (uint32_t) a->points);
        if (r >= 0 && a->prompts)
                r = sd_bus_message_append(m, "{sv}", "prompts", "u", (uint32_t) a->prompts);
        if (r >= 0 && a->have_batch)
                r = sd_bus_message_append(m, "{sv}", "prompt_batch", "u", (uint32_t) a->batch);
        if (r >= 0 && a->have_seed)
                r = sd_bus_message_append(m, "{sv}", "seed", "t", a->seed);
        if (r >= 0 && a->post_process >= 0)
                r = sd_bus_message_append(m, "{sv}", "post_process", "b", a->post_process);
        if (r >= 0 && a->threshold > 0)
                r = sd_bus_message_append(m, "{sv}", "threshold", "d", a->threshold);
        if (r >= 0 && report_fd >= 0)
                r = sd_bus_message_append(m, "{sv}", "report", "h", report_fd);
        if (r >= 0 && a->no_wait)
                r = sd_bus_message_append(m, "{sv}", "detach", "b", 1);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

int ctl_build_request(sd_bus *bus, const char *dest, const seg_args *a, int mesh_fd,
                      const char *mesh_format, const ctl_output *outs, int n_outs, int report_fd,
                      sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r = sd_bus_message_new_method_call(bus, &m, dest, CTL_BUS_PATH,
                                               CTL_BUS_IFACE, a->predict ? "Predict" : "Segment");
        if (r >= 0)
                r = sd_bus_message_append(m, "hs", mesh_fd, mesh_format);
        if (r >= 0 && a->predict) {
                r = sd_bus_message_open_container(m, 'a', "(ddd)");
                for (size_t i = 0; r >= 0 && i < a->n_xyz; i++)
                        r = sd_bus_message_append(m, "(ddd)", a->xyz[3 * i], a->xyz[3 * i + 1],
                                                  a->xyz[3 * i + 2]);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_append(m, "h", outs[0].fd);
        if (r >= 0 && !a->predict)
                r = sd_bus_message_append(m, "s", outs[0].format);
        if (r >= 0)
                r = append_options(m, a, outs, n_outs, report_fd);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

/* ---- following the job ---- */

typedef struct watch {
        sd_event *event;
        sd_bus *bus;
        const seg_args *args;
        ctl_progress progress;
        char *path;        /* the job object, once the daemon answered */
        bool interrupted;  /* Ctrl-C (or SIGTERM, SIGHUP): cancel and leave */
        bool cancel_sent;
        bool completed_ok; /* Completed(success) */
        char *message;     /* Completed's message */
        char result[16];   /* JobRemoved's result: done, failed, cancelled */
        int exit_code;     /* set when the watch ends for another reason than JobRemoved */
} watch;

static bool is_our_job(watch *w, sd_bus_message *m) {
        return w->path && strcmp(sd_bus_message_get_path(m) ?: "", w->path) == 0;
}

static void watch_end(watch *w, int exit_code) {
        w->exit_code = exit_code;
        (void) sd_event_exit(w->event, 0);
}

static int on_cancel_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        watch *w = userdata;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        if (sd_bus_message_is_method_error(m, NULL) && !w->result[0]) {
                int r = ctl_bus_reply_error(m, &e);
                ctl_progress_done(&w->progress);
                watch_end(w, ctl_bus_fail(&e, r, "cancel the job"));
        }
        return 0;
}

static void send_cancel(watch *w) {
        if (w->cancel_sent || !w->path)
                return;
        w->cancel_sent = true;
        int r = sd_bus_call_method_async(w->bus, NULL, ctl_bus_name(), w->path, CTL_JOB_IFACE,
                                         "Cancel", on_cancel_reply, w, NULL);
        if (r < 0)
                watch_end(w, ctl_bus_fail(NULL, r, "cancel the job"));
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        watch *w = userdata;
        ctl_progress_done(&w->progress);
        if (w->interrupted) {
                /* twice: leave now; the daemon sees the connection go and cancels the job */
                watch_end(w, CTL_EXIT_CANCELLED);
                return 0;
        }
        w->interrupted = true;
        fprintf(stderr, "Cancelling the job (press Ctrl-C again to leave without waiting)...\n");
        send_cancel(w);
        return 0;
}

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        watch *w = userdata;
        const char *path;
        if (sd_bus_message_is_method_error(m, NULL)) {
                _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
                int r = ctl_bus_reply_error(m, &e);
                watch_end(w, ctl_bus_fail(&e, r, w->args->predict ? "predict" : "segment"));
                return 0;
        }
        int r = sd_bus_message_read(m, "o", &path);
        if (r < 0 || !(w->path = strdup(path))) {
                watch_end(w, ctl_fail(CTL_EXIT_FAILURE, "p3samd's answer cannot be read."));
                return 0;
        }
        if (w->args->no_wait)
                watch_end(w, CTL_EXIT_OK);
        else if (w->interrupted)
                send_cancel(w);
        return 0;
}

/* PropertiesChanged of our job: Stage, Progress. */
static int on_properties(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        watch *w = userdata;
        const char *iface, *key, *stage = NULL;
        double fraction = -1;
        if (!is_our_job(w, m) || sd_bus_message_read(m, "s", &iface) < 0 ||
            sd_bus_message_enter_container(m, 'a', "{sv}") <= 0)
                return 0;
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                if (sd_bus_message_read(m, "s", &key) < 0)
                        return 0;
                if (strcmp(key, "Stage") == 0)
                        (void) sd_bus_message_read(m, "v", "s", &stage);
                else if (strcmp(key, "Progress") == 0)
                        (void) sd_bus_message_read(m, "v", "d", &fraction);
                else
                        (void) sd_bus_message_skip(m, "v");
                (void) sd_bus_message_exit_container(m);
        }
        /* a change of State alone (queued → running) is followed at once by a stage */
        if ((stage || fraction >= 0) && !w->interrupted && !w->result[0])
                ctl_progress_update(&w->progress, stage, fraction);
        return 0;
}

static int on_completed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        watch *w = userdata;
        int ok;
        const char *msg;
        if (is_our_job(w, m) && sd_bus_message_read(m, "bs", &ok, &msg) >= 0) {
                w->completed_ok = ok;
                free(w->message);
                w->message = strdup(msg);
        }
        return 0;
}

/* JobRemoved follows Completed: the job has ended. */
static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        watch *w = userdata;
        uint32_t id;
        const char *path, *result;
        if (sd_bus_message_read(m, "uos", &id, &path, &result) < 0 || !w->path ||
            strcmp(path, w->path) != 0)
                return 0;
        snprintf(w->result, sizeof(w->result), "%s", result);
        (void) sd_event_exit(w->event, 0);
        return 0;
}

/* The daemon left the bus (crashed, or was stopped without ending the job first). */
static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        watch *w = userdata;
        const char *name, *old_owner, *new_owner;
        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) >= 0 && !*new_owner &&
            !w->result[0]) {
                ctl_progress_done(&w->progress);
                watch_end(w, ctl_fail(CTL_EXIT_FAILURE, "p3samd left the bus before the job "
                                                        "ended."));
        }
        return 0;
}

static int on_redraw(sd_event_source *s, uint64_t usec, void *userdata) {
        watch *w = userdata;
        if (!w->interrupted && !w->result[0])
                ctl_progress_tick(&w->progress);
        return sd_event_source_set_time(s, usec + REDRAW_USEC);
}

/* Subscribed before the call: no signal of the job can slip by between the answer and the
 * subscription. Matched on the daemon's name, since instances share object paths. */
static int subscribe(watch *w) {
        const char *name = ctl_bus_name();
        char rule[512];
        int r = sd_bus_match_signal(w->bus, NULL, name, NULL, CTL_JOB_IFACE, "Completed",
                                    on_completed, w);
        if (r >= 0)
                r = sd_bus_match_signal(w->bus, NULL, name, CTL_BUS_PATH, CTL_BUS_IFACE,
                                        "JobRemoved", on_job_removed, w);
        snprintf(rule, sizeof(rule),
                 "type='signal',sender='%s',interface='org.freedesktop.DBus.Properties',"
                 "member='PropertiesChanged',path_namespace='" CTL_BUS_PATH "/job',"
                 "arg0='" CTL_JOB_IFACE "'",
                 name);
        if (r >= 0)
                r = sd_bus_add_match(w->bus, NULL, rule, on_properties, w);
        snprintf(rule, sizeof(rule),
                 "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
                 "member='NameOwnerChanged',arg0='%s'",
                 name);
        if (r >= 0)
                r = sd_bus_add_match(w->bus, NULL, rule, on_owner_changed, w);
        return r;
}

/* Ctrl-C, SIGTERM and a hangup cancel the job; a hangup that the caller chose to ignore
 * (nohup) stays ignored. Blocked before the temporary files exist, so that these signals queue
 * for the event loop instead of killing us with the files left behind (a blocked signal queues
 * even where the shell set it to be ignored, as it does for SIGINT in background jobs). */
static void block_cancel_signals(sigset_t *ret) {
        static const int signals[] = { SIGINT, SIGTERM, SIGHUP };
        struct sigaction old;
        sigemptyset(ret);
        for (size_t i = 0; i < ELEMENTSOF(signals); i++)
                if (signals[i] != SIGHUP || sigaction(SIGHUP, NULL, &old) < 0 ||
                    old.sa_handler != SIG_IGN)
                        sigaddset(ret, signals[i]);
        sigprocmask(SIG_BLOCK, ret, NULL);
}

/* sd-event reads the blocked signals from a signalfd. */
static int setup_events(watch *w, const sigset_t *signals) {
        int r = sd_event_new(&w->event);
        for (int sig = 1; r >= 0 && sig < _NSIG; sig++)
                if (sigismember(signals, sig) == 1)
                        r = sd_event_add_signal(w->event, NULL, sig, on_signal, w);
        if (r >= 0 && w->progress.tty && !w->args->no_wait)
                r = sd_event_add_time_relative(w->event, NULL, CLOCK_MONOTONIC, REDRAW_USEC, 0,
                                               on_redraw, w);
        if (r >= 0)
                r = sd_bus_attach_event(w->bus, w->event, SD_EVENT_PRIORITY_NORMAL);
        return r;
}

static void watch_done(watch *w) {
        if (w->bus)
                (void) sd_bus_detach_event(w->bus);
        sd_bus_flush_close_unref(w->bus);
        sd_event_unref(w->event);
        free(w->path);
        free(w->message);
}

/* ---- the verbs ---- */

typedef struct request {
        seg_args args;
        int mesh_fd;
        const char *mesh_format;
        char *default_output; /* MESH.parts.glb, MESH.masks.json */
        p3_out_spec *specs;   /* every output: -o, --format, --upstream-files */
        int n_specs;
        out_file *outs;       /* [n_specs] */
        out_file report;
} request;

static void request_done(request *q) {
        if (q->mesh_fd >= 0)
                close(q->mesh_fd);
        for (int i = 0; q->outs && i < q->n_specs; i++)
                ctl_out_done(&q->outs[i]);
        free(q->outs);
        p3_out_specs_free(q->specs, q->n_specs);
        ctl_out_done(&q->report);
        free(q->default_output);
        free(q->args.xyz);
        free(q->args.outputs);
        free(q->args.formats);
}

/* The default output: beside the mesh, named after it without its extension (chair.glb →
 * chair.parts.glb, chair.parts_aabb.npy with --format aabb); a name without a known mesh
 * extension is kept whole. */
static int default_output(request *q) {
        const char *mesh = q->args.mesh, *ext = extension(mesh);
        int stem = (int) strlen(mesh);
        _cleanup_free_ char *parts = NULL;
        if (ext && batch_mesh_format(mesh))
                stem = (int) (ext - 1 - mesh);
        p3_out_format f = p3_out_format_from_name(q->args.format ?: "glb");
        int r = q->args.predict ? asprintf(&q->default_output, "%.*s.masks.json", stem, mesh)
                                : asprintf(&parts, "%.*s.parts", stem, mesh);
        if (r >= 0 && !q->args.predict)
                r = (q->default_output = p3_out_format_path(parts, f)) ? 0 : -1;
        if (r < 0) {
                q->default_output = NULL;
                return ctl_fail(CTL_EXIT_FAILURE, "Out of memory.");
        }
        q->args.output = q->default_output;
        return push(&q->args.outputs, &q->args.n_outputs, q->default_output) == -1
                       ? 0 : CTL_EXIT_FAILURE;
}

static int same_file(int fd, const char *path) {
        struct stat a, b;
        return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
               a.st_ino == b.st_ino;
}

/* Every output with its format; refused before anything is opened: two outputs with one name,
 * a name that says no format, more descriptors than the bus passes. */
static int resolve_outputs(request *q) {
        seg_args *a = &q->args;
        p3_err err = {};
        if (a->predict) {
                q->specs = calloc(1, sizeof(*q->specs));
                if (!q->specs || !(q->specs[0].path = strdup(a->output)))
                        return ctl_fail(CTL_EXIT_FAILURE, "Out of memory.");
                q->specs[0].format = P3_OUT_JSON;
                q->n_specs = 1;
        } else if (a->n_formats && a->n_formats != a->n_outputs)
                return ctl_fail(CTL_EXIT_USAGE, "%d --format for %d -o: give one per -o, in "
                                                "order, or none to go by the names.",
                                a->n_formats, a->n_outputs);
        int r = a->predict ? 0 : p3_out_resolve(a->outputs, a->n_outputs,
                                                 a->n_formats ? a->formats : NULL,
                                                 a->upstream_files, &q->specs, &q->n_specs, &err);
        if (r == -ENOMEM)
                return ctl_fail(CTL_EXIT_FAILURE, "Out of memory.");
        if (r < 0) /* the engine's sentence, capitalised */
                return ctl_fail(CTL_EXIT_USAGE, "%c%s.", toupper(*p3_err_msg(&err, r)),
                                p3_err_msg(&err, r) + 1);
        int fds = 1 + q->n_specs + !!a->report;
        if (fds > CTL_MAX_FDS)
                return ctl_fail(CTL_EXIT_USAGE, "That is %d descriptors (the mesh, %d outputs%s), "
                                                "but the system bus passes at most %d in one "
                                                "message; segment again for the rest.",
                                fds, q->n_specs, a->report ? ", the report" : "", CTL_MAX_FDS);
        q->outs = calloc((size_t) q->n_specs, sizeof(*q->outs));
        if (!q->outs)
                return ctl_fail(CTL_EXIT_FAILURE, "Out of memory.");
        for (int i = 0; i < q->n_specs; i++)
                q->outs[i] = OUT_FILE_NULL;
        return 0;
}

/* Neither an output nor the report may be the mesh, nor the report an output. */
static int check_names(request *q) {
        const seg_args *a = &q->args;
        if (a->report && same_file(q->mesh_fd, a->report))
                return ctl_fail(CTL_EXIT_USAGE, "The report would overwrite the mesh %s; name "
                                                "another file with --json.", a->mesh);
        for (int i = 0; i < q->n_specs; i++) {
                const char *path = q->specs[i].path;
                if (same_file(q->mesh_fd, path))
                        return ctl_fail(CTL_EXIT_USAGE, "The output %s would overwrite the mesh "
                                                        "%s; name another file with -o.",
                                        path, a->mesh);
                if (a->report && strcmp(a->report, path) == 0)
                        return ctl_fail(CTL_EXIT_USAGE, "The report and an output cannot both "
                                                        "be %s.", path);
        }
        return 0;
}

/* Everything that needs no daemon: the input, the formats, the outputs. */
static int prepare(request *q) {
        seg_args *a = &q->args;
        int r;
        q->mesh_format = batch_mesh_format(a->mesh) ?: "";
        if (strcmp(q->mesh_format, "gltf") == 0 && (r = check_gltf_self_contained(a->mesh)))
                return r;
        q->mesh_fd = open(a->mesh, O_RDONLY | O_CLOEXEC);
        if (q->mesh_fd < 0)
                return ctl_fail(CTL_EXIT_FAILURE, "Cannot open %s: %s.", a->mesh, strerror(errno));
        struct stat st;
        if (fstat(q->mesh_fd, &st) < 0 || !S_ISREG(st.st_mode))
                return ctl_fail(CTL_EXIT_FAILURE, "%s is not a regular file.", a->mesh);
        if (!a->output && (r = default_output(q)))
                return r;
        if ((r = resolve_outputs(q)) || (r = check_names(q)))
                return r;
        for (int i = 0; r == 0 && i < q->n_specs; i++)
                r = out_file_open(&q->outs[i], q->specs[i].path, a->no_wait);
        if (r == 0 && a->report)
                r = out_file_open(&q->report, a->report, a->no_wait);
        return r;
}

char *ctl_job_sentence(const char *mesh, const char *job_path, const char *verb,
                       const char *message) {
        const char *msg = message && *message ? message : "no reason given";
        bool about_mesh = strncmp(msg, "mesh: ", 6) == 0;
        const char *name = about_mesh ? mesh : NULL;
        size_t n = strlen(msg);
        const char *stop = n && strchr(".!?", msg[n - 1]) ? "" : ".";
        char *s;
        if (asprintf(&s, "Job %s %s: %s%s%s%s", strrchr(job_path, '/') + 1, verb, name ?: "",
                     name ? ": " : "", about_mesh ? msg + 6 : msg, stop) < 0)
                return NULL;
        return s;
}

/* "mesh: X" from the daemon (which only saw a descriptor) names the user's file instead. */
static void print_job_error(const request *q, const char *verb, const watch *w) {
        _cleanup_free_ char *s = ctl_job_sentence(q->args.mesh, w->path, verb, w->message);
        (void) ctl_fail(0, "%s", s ?: "Out of memory.");
}

static int job_outcome(request *q, watch *w) {
        const char *id = strrchr(w->path, '/') + 1;
        bool done = strcmp(w->result, "done") == 0 && w->completed_ok;
        if (done && !w->interrupted)
                ctl_progress_done(&w->progress); /* the full bar stays */
        else
                ctl_progress_clear(&w->progress);
        if (w->interrupted) {
                (void) ctl_fail(0, "Job %s was cancelled; nothing was written.", id);
                return CTL_EXIT_CANCELLED;
        }
        if (done) {
                int r = out_files_commit(q->outs, q->n_specs, &q->report);
                if (r)
                        return r;
                for (int i = 0; i < q->n_specs; i++)
                        printf("%s\n", q->outs[i].final);
                if (q->report.final)
                        printf("%s\n", q->report.final);
                return CTL_EXIT_OK;
        }
        bool cancelled = strcmp(w->result, "cancelled") == 0;
        print_job_error(q, cancelled ? "was cancelled" : "failed", w);
        return cancelled ? CTL_EXIT_CANCELLED : CTL_EXIT_FAILURE;
}

static void print_detached(const request *q, const watch *w) {
        printf("Job %s submitted: %s\n", strrchr(w->path, '/') + 1, w->path);
        for (int i = 0; i < q->n_specs; i++)
                printf("%s fills when the job is done (p3samctl jobs shows it).\n",
                       q->outs[i].final);
}

/* Submit, then follow the job until it ends (or just submit, with --no-wait). */
static int run(request *q, const sigset_t *signals) {
        watch w = { .args = &q->args };
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        ctl_progress_init(&w.progress);
        int r = ctl_bus_open(&w.bus);
        if (r < 0)
                return ctl_bus_fail(NULL, r, "connect to the bus");
        (void) sd_bus_set_allow_interactive_authorization(w.bus, isatty(STDIN_FILENO));
        ctl_output outs[CTL_MAX_FDS];
        for (int i = 0; i < q->n_specs; i++)
                outs[i] = (ctl_output) { .fd = q->outs[i].fd,
                                         .format = p3_out_format_name(q->specs[i].format) };
        r = ctl_build_request(w.bus, ctl_bus_name(), &q->args, q->mesh_fd, q->mesh_format, outs,
                              q->n_specs, q->report.fd, &call);
        if (r >= 0 && !q->args.no_wait)
                r = subscribe(&w);
        if (r >= 0)
                r = setup_events(&w, signals);
        if (r >= 0)
                r = sd_bus_call_async(w.bus, NULL, call, on_reply, &w, CTL_SLOW_CALL_USEC);
        if (r >= 0)
                r = sd_event_loop(w.event);
        if (r < 0)
                w.exit_code = ctl_bus_fail(NULL, r, q->args.predict ? "predict" : "segment");
        else if (!w.result[0] && !w.exit_code && q->args.no_wait)
                print_detached(q, &w);
        else if (w.result[0] && !w.exit_code)
                w.exit_code = job_outcome(q, &w);
        else if (w.interrupted && w.path && w.exit_code == CTL_EXIT_CANCELLED)
                (void) ctl_fail(0, "Left without waiting; p3samd cancels job %s.",
                                strrchr(w.path, '/') + 1);
        watch_done(&w);
        return w.exit_code;
}

static int verb_submit(int argc, char **argv, bool predict) {
        request q = { .args = { .predict = predict, .post_process = -1, .png_boxes = -1 },
                      .mesh_fd = -1,
                      .report = OUT_FILE_NULL };
        sigset_t signals;
        int r = parse_args(argc, argv, &q.args);
        if (r < 0 && !predict && !q.args.mesh) /* parse_args() found many meshes */
                r = ctl_batch_run(&q.args);
        else if (r < 0) {
                block_cancel_signals(&signals);
                r = prepare(&q);
                if (r == 0)
                        r = run(&q, &signals);
        }
        request_done(&q);
        return r;
}

int verb_segment(int argc, char **argv) {
        return verb_submit(argc, argv, false);
}

int verb_predict(int argc, char **argv) {
        return verb_submit(argc, argv, true);
}
