/* SPDX-License-Identifier: MIT */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf, getline */
#endif
#include "daemon-conf.h"
#include "log.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "macro.h"
#include "parse-util.h"
#include "pipeline-limits.h"

/* Absolute bounds, checked as each key is read. The bounds that depend on another key
 * (QueuePerUserMax= <= QueueMax=, PointNum= <= MaxPointNum=, ...) are checked once all
 * files are read, so that the order of the keys and drop-ins does not matter. */
#define QUEUE_LIMIT 1024
#define THREADS_LIMIT 1024
#define POINTS_MIN P3_POINTS_MIN /* the engine's own bounds (pipeline-limits.h) */
#define POINTS_LIMIT P3_POINTS_MAX
#define PROMPTS_LIMIT P3_PROMPTS_MAX
#define PROMPT_BATCH_LIMIT P3_PROMPT_BATCH_MAX
#define GPU_MEMORY_MIN (UINT64_C(64) << 20)
/* Below this the helper cannot even start its C++ runtime and assimp. */
#define IMPORT_MEMORY_MIN (UINT64_C(64) << 20)

_Static_assert(sizeof(daemon_backend) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(daemon_precision) == sizeof(int), "enums are stored as int");

static const char *const backend_names[_DAEMON_BACKEND_MAX] = {
        [DAEMON_BACKEND_AUTO] = "auto",
        [DAEMON_BACKEND_CUDA] = "cuda",
        [DAEMON_BACKEND_CPU] = "cpu",
};

static const char *const precision_names[_DAEMON_PRECISION_MAX] = {
        [DAEMON_PRECISION_FP16] = "fp16",
        [DAEMON_PRECISION_FP32] = "fp32",
        [DAEMON_PRECISION_AUTO] = "auto",
        [DAEMON_PRECISION_BF16] = "bf16",
};

const char *daemon_backend_to_string(daemon_backend b) {
        return b >= 0 && b < _DAEMON_BACKEND_MAX ? backend_names[b] : NULL;
}

const char *daemon_precision_to_string(daemon_precision p) {
        return p >= 0 && p < _DAEMON_PRECISION_MAX ? precision_names[p] : NULL;
}

void daemon_conf_init(daemon_conf *c) {
        daemon_segment_defaults seg = {
                .points = P3_DEFAULT_POINTS,
                .prompts = P3_DEFAULT_PROMPTS,
                .prompt_batch = P3_DEFAULT_PROMPT_BATCH,
                .seed = P3_DEFAULT_SEED,
                .post_process = false,
                .threshold = P3_DEFAULT_THRESHOLD,
        };

        *c = (daemon_conf) {
                .model_path = strdup(DAEMON_CONF_MODEL_PATH),
                .backend = DAEMON_BACKEND_AUTO,
                .precision = DAEMON_PRECISION_AUTO,
                .gpu_memory_max = UINT64_C(1) << 30,
                .idle_timeout_usec = 5 * 60 * USEC_PER_SEC,
                .queue_max = 16,
                .queue_per_user_max = 4,
                .allow_group = strdup(DAEMON_CONF_ALLOW_GROUP),
                .job_linger_usec = 60 * USEC_PER_SEC,
                .max_mesh_bytes = UINT64_C(512) << 20,
                .import_timeout_usec = 2 * 60 * USEC_PER_SEC,
                .gpu = seg,
                .cpu = seg,
                .max_points = 200000,
                .max_prompts = 1000,
        };
        c->cpu.points = P3_CPU_DEFAULT_POINTS;
        c->cpu.prompts = P3_CPU_DEFAULT_PROMPTS;
}

void daemon_conf_done(daemon_conf *c) {
        free(c->model_path);
        free(c->model_config);
        free(c->allow_group);
        c->model_path = c->model_config = c->allow_group = NULL;
}

uint64_t daemon_conf_import_memory_max(const daemon_conf *c) {
        if (c->import_memory_max)
                return c->import_memory_max;
        if (c->max_mesh_bytes >= DAEMON_IMPORT_MEMORY_AUTO_MAX / DAEMON_IMPORT_MEMORY_PER_BYTE)
                return DAEMON_IMPORT_MEMORY_AUTO_MAX;
        return MIN(c->max_mesh_bytes * DAEMON_IMPORT_MEMORY_PER_BYTE + DAEMON_IMPORT_MEMORY_BASE,
                   DAEMON_IMPORT_MEMORY_AUTO_MAX);
}

void daemon_conf_segment_defaults(const daemon_conf *c, bool cpu, daemon_segment_defaults *ret) {
        *ret = cpu ? c->cpu : c->gpu;
        if (cpu && c->points_set)
                ret->points = c->gpu.points;
        if (cpu && c->prompts_set)
                ret->prompts = c->gpu.prompts;
}

/* ---- the keys ---- */

typedef enum conf_key_id {
        KEY_PATH,
        KEY_CONFIG,
        KEY_BACKEND,
        KEY_PRECISION,
        KEY_THREADS,
        KEY_GPU_MEMORY_MAX,
        KEY_IDLE_TIMEOUT,
        KEY_QUEUE_MAX,
        KEY_QUEUE_PER_USER_MAX,
        KEY_JOB_TIMEOUT,
        KEY_ALLOW_GROUP,
        KEY_JOB_LINGER,
        KEY_MAX_MESH_SIZE,
        KEY_IMPORT_TIMEOUT,
        KEY_IMPORT_MEMORY_MAX,
        KEY_POINT_NUM,
        KEY_PROMPT_NUM,
        KEY_PROMPT_BATCH,
        KEY_SEED,
        KEY_POST_PROCESS,
        KEY_THRESHOLD,
        KEY_MAX_POINT_NUM,
        KEY_MAX_PROMPT_NUM,
        KEY_CPU_POINT_NUM,
        KEY_CPU_PROMPT_NUM,
        _KEY_MAX,
} conf_key_id;

typedef struct conf_key conf_key;

/* Reads a non-empty value into *ret, which has the field's type. On failure fills why with
 * what was expected, for the message. */
typedef int (*conf_parser)(const conf_key *k, const char *value, void *ret, char *why,
                           size_t why_len);

struct conf_key {
        const char *section, *name;
        conf_parser parse;
        size_t offset, size;
        bool both;   /* a field of gpu that goes to the same field of cpu too */
        bool string; /* the field is an allocated char * */
        size_t flag; /* offset of a bool set by an assignment and cleared by a reset; 0: none
                      * (offset 0 is model_path, never a flag) */
        uint64_t lo, hi;
};

static void store_integer(void *ret, size_t size, uint64_t v) {
        if (size == sizeof(uint32_t)) {
                uint32_t t = (uint32_t) v; /* the bounds keep it below INT_MAX */
                memcpy(ret, &t, sizeof(t));
        } else {
                assert(size == sizeof(uint64_t));
                memcpy(ret, &v, sizeof(v));
        }
}

static int conf_parse_integer(const conf_key *k, const char *value, void *ret, char *why,
                              size_t why_len) {
        uint64_t v;
        int r;

        r = parse_u64_range(value, k->lo, k->hi, &v);
        if (r < 0) {
                snprintf(why, why_len, "expected an integer from %" PRIu64 " to %" PRIu64,
                         k->lo, k->hi);
                return r;
        }
        store_integer(ret, k->size, v);
        return 0;
}

/* "auto" (stored as 0: the value is chosen elsewhere), or what parse takes. */
static int conf_parse_or_auto(conf_parser parse, const conf_key *k, const char *value,
                              void *ret, char *why, size_t why_len) {
        if (strcmp(value, "auto") == 0) {
                store_integer(ret, k->size, 0);
                return 0;
        }
        int r = parse(k, value, ret, why, why_len);
        if (r < 0)
                snprintf(why + strlen(why), why_len - strlen(why), ", or auto");
        return r;
}

/* An integer, or "auto" for the engine's choice. */
static int conf_parse_integer_auto(const conf_key *k, const char *value, void *ret, char *why,
                                   size_t why_len) {
        return conf_parse_or_auto(conf_parse_integer, k, value, ret, why, why_len);
}

/* The bound of a size the way an admin writes it: "64M", not "67108864". */
static void format_size_bound(char *buf, size_t len, uint64_t v) {
        static const char suffixes[] = "TGMK";

        for (int i = 0; i < 4; i++) {
                uint64_t unit = UINT64_C(1) << (10 * (4 - i));
                if (v >= unit && v % unit == 0) {
                        snprintf(buf, len, "%" PRIu64 "%c", v / unit, suffixes[i]);
                        return;
                }
        }
        snprintf(buf, len, "%" PRIu64 "B", v);
}

static int conf_parse_size(const conf_key *k, const char *value, void *ret, char *why,
                           size_t why_len) {
        char bound[32];
        uint64_t v;
        int r;

        r = parse_size_bytes(value, &v);
        if (r >= 0 && v < k->lo)
                r = -ERANGE;
        if (r < 0) {
                format_size_bound(bound, sizeof(bound), k->lo);
                snprintf(why, why_len, "expected a size of at least %s, such as 512M, 2G or infinity",
                         bound);
                return r;
        }
        store_integer(ret, k->size, v);
        return 0;
}

/* A size, or "auto" for one derived from another key. */
static int conf_parse_size_auto(const conf_key *k, const char *value, void *ret, char *why,
                                size_t why_len) {
        return conf_parse_or_auto(conf_parse_size, k, value, ret, why, why_len);
}

static int conf_parse_timespan(const conf_key *k, const char *value, void *ret, char *why,
                               size_t why_len) {
        uint64_t v;
        int r;

        r = parse_timespan_usec(value, &v);
        if (r < 0) {
                snprintf(why, why_len, "expected a time span such as 30s, 5min, 1h 30min or "
                                       "infinity");
                return r;
        }
        store_integer(ret, k->size, v);
        return 0;
}

static int conf_parse_bool(const conf_key *k, const char *value, void *ret, char *why,
                           size_t why_len) {
        int r;

        r = parse_bool(value);
        if (r < 0) {
                snprintf(why, why_len, "expected yes or no");
                return r;
        }
        *(bool *) ret = r;
        return 0;
}

static int conf_parse_threshold(const conf_key *k, const char *value, void *ret, char *why,
                                size_t why_len) {
        int r;

        r = parse_double_range(value, nextafter(0.0, 1.0), 1.0, ret);
        if (r < 0) {
                snprintf(why, why_len, "expected a number above 0 and at most 1");
                return r;
        }
        return 0;
}

static int parse_enum(const char *const *names, size_t n, const char *value, void *ret) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(names[i], value) == 0) {
                        int v = (int) i;
                        memcpy(ret, &v, sizeof(v));
                        return 0;
                }
        return -EINVAL;
}

static int conf_parse_backend(const conf_key *k, const char *value, void *ret, char *why,
                              size_t why_len) {
        if (parse_enum(backend_names, ELEMENTSOF(backend_names), value, ret) < 0) {
                snprintf(why, why_len, "expected auto, cuda or cpu");
                return -EINVAL;
        }
        return 0;
}

static int conf_parse_precision(const conf_key *k, const char *value, void *ret, char *why,
                                size_t why_len) {
        if (parse_enum(precision_names, ELEMENTSOF(precision_names), value, ret) < 0) {
                snprintf(why, why_len, "expected fp16 or fp32");
                return -EINVAL;
        }
        return 0;
}

static int conf_parse_path(const conf_key *k, const char *value, void *ret, char *why,
                           size_t why_len) {
        char *p;

        /* The daemon runs with / as its working directory: a relative path would silently
         * mean something else than the admin had in mind. */
        if (value[0] != '/') {
                snprintf(why, why_len, "expected an absolute path");
                return -EINVAL;
        }
        p = strdup(value);
        if (!p) {
                snprintf(why, why_len, "out of memory");
                return -ENOMEM;
        }
        *(char **) ret = p;
        return 0;
}

/* As useradd accepts by default: a letter or '_' first, then letters, digits, '_', '-', '.';
 * the length of Debian's limit. */
static bool group_name_valid(const char *s) {
        static const char first[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_";

        if (!strchr(first, s[0]) || s[0] == '\0' || strlen(s) > 32)
                return false;
        return s[strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")] ==
               '\0';
}

static int conf_parse_group(const conf_key *k, const char *value, void *ret, char *why,
                            size_t why_len) {
        char *p;

        if (!group_name_valid(value)) {
                snprintf(why, why_len, "expected a group name");
                return -EINVAL;
        }
        p = strdup(value);
        if (!p) {
                snprintf(why, why_len, "out of memory");
                return -ENOMEM;
        }
        *(char **) ret = p;
        return 0;
}

#define FIELD(m) .offset = offsetof(daemon_conf, m), .size = sizeof(((daemon_conf *) 0)->m)
#define STRING(m) FIELD(m), .string = true
#define BOTH(m) FIELD(gpu.m), .both = true
#define FLAG(m) .flag = offsetof(daemon_conf, m)
#define RANGE(a, b) .lo = (a), .hi = (b)

static const conf_key conf_keys[_KEY_MAX] = {
        [KEY_PATH] = { "Model", "Path", conf_parse_path, STRING(model_path) },
        [KEY_CONFIG] = { "Model", "Config", conf_parse_path, STRING(model_config) },
        [KEY_BACKEND] = { "Model", "Backend", conf_parse_backend, FIELD(backend) },
        [KEY_PRECISION] = { "Model", "Precision", conf_parse_precision, FIELD(precision) },
        [KEY_THREADS] = { "Model", "Threads", conf_parse_integer, FIELD(threads),
                          RANGE(0, THREADS_LIMIT) },
        [KEY_GPU_MEMORY_MAX] = { "Model", "GpuMemoryMax", conf_parse_size,
                                 FIELD(gpu_memory_max), RANGE(GPU_MEMORY_MIN, UINT64_MAX) },

        [KEY_IDLE_TIMEOUT] = { "Daemon", "IdleTimeoutSec", conf_parse_timespan,
                               FIELD(idle_timeout_usec) },
        [KEY_QUEUE_MAX] = { "Daemon", "QueueMax", conf_parse_integer, FIELD(queue_max),
                            RANGE(1, QUEUE_LIMIT) },
        [KEY_QUEUE_PER_USER_MAX] = { "Daemon", "QueuePerUserMax", conf_parse_integer,
                                     FIELD(queue_per_user_max), RANGE(1, QUEUE_LIMIT) },
        [KEY_JOB_TIMEOUT] = { "Daemon", "JobTimeoutSec", conf_parse_timespan,
                              FIELD(job_timeout_usec) },
        [KEY_ALLOW_GROUP] = { "Daemon", "AllowGroup", conf_parse_group, STRING(allow_group) },
        [KEY_JOB_LINGER] = { "Daemon", "JobLingerSec", conf_parse_timespan,
                             FIELD(job_linger_usec) },
        [KEY_MAX_MESH_SIZE] = { "Daemon", "MaxMeshSize", conf_parse_size, FIELD(max_mesh_bytes),
                                RANGE(1, UINT64_MAX) },
        [KEY_IMPORT_TIMEOUT] = { "Daemon", "ImportTimeoutSec", conf_parse_timespan,
                                 FIELD(import_timeout_usec) },
        [KEY_IMPORT_MEMORY_MAX] = { "Daemon", "ImportMemoryMax", conf_parse_size_auto,
                                    FIELD(import_memory_max),
                                    RANGE(IMPORT_MEMORY_MIN, UINT64_MAX) },

        [KEY_POINT_NUM] = { "Segment", "PointNum", conf_parse_integer, FIELD(gpu.points),
                            FLAG(points_set), RANGE(POINTS_MIN, POINTS_LIMIT) },
        [KEY_PROMPT_NUM] = { "Segment", "PromptNum", conf_parse_integer, FIELD(gpu.prompts),
                             FLAG(prompts_set), RANGE(1, PROMPTS_LIMIT) },
        [KEY_PROMPT_BATCH] = { "Segment", "PromptBatch", conf_parse_integer_auto,
                               BOTH(prompt_batch),
                               RANGE(1, PROMPT_BATCH_LIMIT) },
        [KEY_SEED] = { "Segment", "Seed", conf_parse_integer, BOTH(seed), RANGE(0, UINT64_MAX) },
        [KEY_POST_PROCESS] = { "Segment", "PostProcess", conf_parse_bool, BOTH(post_process) },
        [KEY_THRESHOLD] = { "Segment", "Threshold", conf_parse_threshold, BOTH(threshold) },
        [KEY_MAX_POINT_NUM] = { "Segment", "MaxPointNum", conf_parse_integer, FIELD(max_points),
                                RANGE(POINTS_MIN, POINTS_LIMIT) },
        [KEY_MAX_PROMPT_NUM] = { "Segment", "MaxPromptNum", conf_parse_integer,
                                 FIELD(max_prompts), RANGE(1, PROMPTS_LIMIT) },
        [KEY_CPU_POINT_NUM] = { "Segment", "CpuPointNum", conf_parse_integer, FIELD(cpu.points),
                                RANGE(POINTS_MIN, POINTS_LIMIT) },
        [KEY_CPU_PROMPT_NUM] = { "Segment", "CpuPromptNum", conf_parse_integer,
                                 FIELD(cpu.prompts), RANGE(1, PROMPTS_LIMIT) },
};

static const char *const conf_sections[] = { "Model", "Daemon", "Segment" };

static const conf_key *conf_key_find(const char *section, const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(conf_keys); i++)
                if (strcmp(conf_keys[i].section, section) == 0 &&
                    strcmp(conf_keys[i].name, name) == 0)
                        return &conf_keys[i];
        return NULL;
}

static bool conf_section_known(const char *section) {
        for (size_t i = 0; i < ELEMENTSOF(conf_sections); i++)
                if (strcmp(conf_sections[i], section) == 0)
                        return true;
        return false;
}

/* ---- reading the files ---- */

/* Where a key was last assigned, for the messages of the checks across keys. */
typedef struct conf_origin {
        const char *path; /* NULL: never assigned; points into conf_load.files */
        unsigned line;
} conf_origin;

typedef struct conf_load {
        daemon_conf conf, defaults;
        conf_origin origin[_KEY_MAX];
        char **files;
        size_t n_files;
} conf_load;

static void conf_load_done(conf_load *l) {
        daemon_conf_done(&l->conf);
        daemon_conf_done(&l->defaults);
        for (size_t i = 0; i < l->n_files; i++)
                free(l->files[i]);
        free(l->files);
}

/* One file being read: the state shared by the line reader and the handler of inih. */
typedef struct conf_file {
        conf_load *load;
        const char *path;
        FILE *f;
        char *buf;
        size_t buf_size;
        unsigned line;
        int read_errno;
        int r;     /* the first error, which stops the reading */
        p3_err err; /* its message */
} conf_file;

#define conf_warn(...) log_warning(__VA_ARGS__)

static void *conf_field(daemon_conf *c, const conf_key *k, bool cpu) {
        size_t offset = k->offset;

        if (cpu)
                offset = offset - offsetof(daemon_conf, gpu) + offsetof(daemon_conf, cpu);
        return (uint8_t *) c + offset;
}

/* Puts v (of the field's type) into the field, and into cpu's for keys of both sets. */
static void conf_store(daemon_conf *c, const conf_key *k, const void *v, bool set) {
        if (k->string)
                free(*(char **) conf_field(c, k, false));
        memcpy(conf_field(c, k, false), v, k->size);
        if (k->both)
                memcpy(conf_field(c, k, true), v, k->size);
        if (k->flag)
                *(bool *) ((uint8_t *) c + k->flag) = set;
}

/* An empty value puts the default back, as in systemd's unit files. */
static int conf_reset(conf_load *l, const conf_key *k) {
        union {
                char *s;
                uint64_t u;
                double d;
        } v;

        memcpy(&v, conf_field(&l->defaults, k, false), k->size);
        if (k->string && v.s) {
                v.s = strdup(v.s);
                if (!v.s)
                        return -ENOMEM;
        }
        conf_store(&l->conf, k, &v, false);
        return 0;
}

static int conf_assign(conf_file *f, const char *section, const char *name, const char *value) {
        const conf_key *k;
        char why[128] = "";
        union {
                char *s;
                uint64_t u;
                double d;
        } v;
        int r;

        if (!section[0]) {
                conf_warn("%s:%u: %s= outside of any section, ignoring", f->path, f->line, name);
                return 0;
        }
        if (!conf_section_known(section)) {
                conf_warn("%s:%u: unknown section [%s], ignoring key %s", f->path, f->line,
                          section, name);
                return 0;
        }
        k = conf_key_find(section, name);
        if (!k) {
                conf_warn("%s:%u: unknown key %s in [%s], ignoring", f->path, f->line, name,
                          section);
                return 0;
        }

        if (!value[0])
                r = conf_reset(f->load, k);
        else {
                r = k->parse(k, value, &v, why, sizeof(why));
                if (r >= 0)
                        conf_store(&f->load->conf, k, &v, true);
        }
        if (r == -ENOMEM)
                return p3_errf(&f->err, r, "%s:%u: out of memory", f->path, f->line);
        if (r < 0)
                return p3_errf(&f->err, r, "%s:%u: [%s] %s=%s is invalid: %s", f->path, f->line,
                               section, name, value, why);

        f->load->origin[k - conf_keys] = (conf_origin) { f->path, f->line };
        return 0;
}

static int conf_handler(void *user, const char *section, const char *name, const char *value) {
        conf_file *f = user;

        if (f->r < 0)
                return 1;
        if (!name[0]) {
                f->r = p3_errf(&f->err, -EBADMSG, "%s:%u: expected a key name before '='",
                               f->path, f->line);
                return 1;
        }
        f->r = conf_assign(f, section, name, value ? value : "");
        /* Errors are ours to report (inih would only give the line): never fail here. */
        return 1;
}

/* inih's line reader, wrapped for three reasons: it counts lines (the inih Debian ships
 * passes none to the handler); it refuses lines longer than inih's buffer, which inih would
 * silently cut; and it strips leading whitespace, so that an indented line is an ordinary
 * line as in systemd, and not the continuation of the previous value that inih would make
 * of it. It stops the parse at the first error. */
static char *conf_read_line(char *str, int num, void *stream) {
        conf_file *f = stream;
        ssize_t n;
        size_t len;
        char *p;

        if (f->r < 0)
                return NULL;
        errno = 0;
        n = getline(&f->buf, &f->buf_size, f->f);
        if (n < 0) {
                f->read_errno = ferror(f->f) ? (errno > 0 ? errno : EIO) : 0;
                return NULL;
        }
        f->line++;
        if (memchr(f->buf, '\0', (size_t) n)) {
                f->r = p3_errf(&f->err, -EBADMSG, "%s:%u: line contains a NUL byte", f->path,
                               f->line);
                return NULL;
        }
        f->buf[strcspn(f->buf, "\r\n")] = '\0';
        p = f->buf + strspn(f->buf, " \t\f\v");
        len = strlen(p);
        /* Room for the newline, which tells inih the line is whole, and the NUL. */
        if (num < 2 || len > (size_t) num - 2) {
                f->r = p3_errf(&f->err, -E2BIG, "%s:%u: line is longer than %d characters",
                               f->path, f->line, num - 2);
                return NULL;
        }
        memcpy(str, p, len);
        str[len] = '\n';
        str[len + 1] = '\0';
        return str;
}

/* Reads one file into l->conf. A missing file is no error. */
static int conf_parse_file(conf_load *l, const char *path, p3_err *err) {
        _cleanup_fclose_ FILE *fp = NULL;
        conf_file f = { .load = l, .path = path };
        int r;

        fp = fopen(path, "re");
        if (!fp) {
                if (errno == ENOENT)
                        return 0;
                return p3_errf(err, -errno, "failed to open %s: %s", path, strerror(errno));
        }
        f.f = fp;

        r = ini_parse_stream(conf_read_line, &f, conf_handler, &f);
        free(f.buf);
        /* inih only counts lines it could not parse; our own errors stop the reading, so an
         * inih error is always the earlier one. */
        if (r > 0)
                return p3_errf(err, -EBADMSG, "%s:%d: expected [Section], Key=Value or a comment",
                               path, r);
        if (r == -2)
                return p3_errf(err, -ENOMEM, "%s: out of memory", path);
        if (f.r < 0)
                return p3_errf(err, f.r, "%s", f.err.msg);
        if (f.read_errno > 0)
                return p3_errf(err, -f.read_errno, "failed to read %s: %s", path,
                               strerror(f.read_errno));
        if (r < 0)
                return p3_errf(err, -EIO, "failed to read %s", path);
        return 0;
}

static int dropin_filter(const struct dirent *de) {
        size_t n = strlen(de->d_name);

        /* Hidden files are editor and package manager leftovers, as for systemd. */
        return de->d_name[0] != '.' && n > 5 && strcmp(de->d_name + n - 5, ".conf") == 0;
}

/* Lexical order, whatever the locale (alphasort() would use strcoll()). */
static int dropin_compare(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

/* Appends dir/name to l->files if it is a regular file (following symlinks). Anything else is
 * skipped, as systemd does: a directory, a dangling symlink, a symlink to /dev/null that
 * masks a drop-in of the same name. */
static int conf_add_dropin(conf_load *l, const char *dir, const char *name, p3_err *err) {
        _cleanup_free_ char *path = NULL;
        struct stat st;

        if (asprintf(&path, "%s/%s", dir, name) < 0) {
                path = NULL;
                return p3_errf(err, -ENOMEM, "out of memory");
        }
        if (stat(path, &st) < 0) {
                if (errno == ENOENT)
                        return 0;
                return p3_errf(err, -errno, "failed to stat %s: %s", path, strerror(errno));
        }
        if (!S_ISREG(st.st_mode))
                return 0;
        l->files[l->n_files++] = TAKE_PTR(path);
        return 0;
}

/* Appends <main>.d/ *.conf to l->files, in strcmp() order. No directory, no drop-ins. */
static int conf_list_dropins(conf_load *l, const char *main_path, p3_err *err) {
        _cleanup_free_ char *dir = NULL;
        struct dirent **names = NULL;
        char **files;
        int n, r = 0;

        if (asprintf(&dir, "%s.d", main_path) < 0) {
                dir = NULL;
                return p3_errf(err, -ENOMEM, "out of memory");
        }
        n = scandir(dir, &names, dropin_filter, dropin_compare);
        if (n < 0) {
                if (errno == ENOENT)
                        return 0;
                return p3_errf(err, -errno, "failed to list %s: %s", dir, strerror(errno));
        }

        files = realloc(l->files, (l->n_files + (size_t) n) * sizeof(char *));
        if (files)
                l->files = files;
        else
                r = p3_errf(err, -ENOMEM, "out of memory");
        for (int i = 0; i < n; i++) {
                if (r >= 0)
                        r = conf_add_dropin(l, dir, names[i]->d_name, err);
                free(names[i]);
        }
        free(names);
        return r;
}

/* The files to read, in order: the main file, then its drop-ins. */
static int conf_list_files(conf_load *l, const char *main_path, p3_err *err) {
        l->files = calloc(1, sizeof(char *));
        if (!l->files)
                return p3_errf(err, -ENOMEM, "out of memory");
        l->files[0] = strdup(main_path);
        if (!l->files[0])
                return p3_errf(err, -ENOMEM, "out of memory");
        l->n_files = 1;
        return conf_list_dropins(l, main_path, err);
}

/* ---- the environment ---- */

/* One variable: unset or empty leaves *set false. */
static int env_number(const char *(*get)(const char *name), const char *name, uint64_t lo,
                      uint64_t hi, bool *set, uint64_t *ret, p3_err *err) {
        const char *s = get(name);
        int r;

        *set = false;
        if (!s || !s[0])
                return 0;
        r = parse_u64_range(s, lo, hi, ret);
        if (r < 0)
                return p3_errf(err, r,
                               "environment variable %s=%s is invalid: expected an integer from "
                               "%" PRIu64 " to %" PRIu64,
                               name, s, lo, hi);
        *set = true;
        return 0;
}

/* A variable and its INFERENCE_ variant, which wins when both are set. */
static int env_pair(const char *(*get)(const char *name), const char *plain,
                    const char *inference, uint64_t lo, uint64_t hi, bool *set, uint64_t *ret,
                    p3_err *err) {
        uint64_t a = 0, b = 0;
        bool a_set, b_set;
        int r;

        r = env_number(get, plain, lo, hi, &a_set, &a, err);
        if (r < 0)
                return r;
        r = env_number(get, inference, lo, hi, &b_set, &b, err);
        if (r < 0)
                return r;
        *set = a_set || b_set;
        *ret = b_set ? b : a;
        return 0;
}

int daemon_conf_apply_env(daemon_conf *c, const char *(*get)(const char *name), p3_err *err) {
        uint64_t points = 0, prompts = 0, batch = 0;
        bool points_set, prompts_set, batch_set;
        int r;

        /* Everything is read and checked before anything is changed. */
        r = env_pair(get, "P3SAM_POINT_NUM", "P3SAM_INFERENCE_POINT_NUM", POINTS_MIN,
                     (uint64_t) c->max_points, &points_set, &points, err);
        if (r < 0)
                return r;
        r = env_pair(get, "P3SAM_PROMPT_NUM", "P3SAM_INFERENCE_PROMPT_NUM", 1,
                     (uint64_t) c->max_prompts, &prompts_set, &prompts, err);
        if (r < 0)
                return r;
        r = env_number(get, "P3SAM_PROMPT_BS", 1, PROMPT_BATCH_LIMIT, &batch_set, &batch, err);
        if (r < 0)
                return r;

        if (points_set) {
                c->gpu.points = (int64_t) points;
                c->points_set = true;
        }
        if (prompts_set) {
                c->gpu.prompts = (int) prompts;
                c->prompts_set = true;
        }
        if (batch_set)
                c->gpu.prompt_batch = c->cpu.prompt_batch = (int) batch;
        return 0;
}

static const char *env_get(const char *name) {
        return getenv(name);
}

/* ---- checks across keys ---- */

/* Fails if key a's value exceeds key b's. Blames a where it was set, else b: then a's
 * default is what b is below. */
static int conf_check_le(const conf_load *l, conf_key_id a, uint64_t va, conf_key_id b,
                         uint64_t vb, p3_err *err) {
        const conf_key *ka = &conf_keys[a], *kb = &conf_keys[b];
        const conf_origin *oa = &l->origin[a], *ob = &l->origin[b];

        if (va <= vb)
                return 0;
        if (oa->path || !ob->path)
                return p3_errf(err, -ERANGE, "%s:%u: [%s] %s=%" PRIu64 " is above %s=%" PRIu64,
                               oa->path ? oa->path : "(defaults)", oa->line, ka->section,
                               ka->name, va, kb->name, vb);
        return p3_errf(err, -ERANGE,
                       "%s:%u: [%s] %s=%" PRIu64 " is below the default %s=%" PRIu64
                       "; set %s= too",
                       ob->path, ob->line, kb->section, kb->name, vb, ka->name, va, ka->name);
}

static int conf_verify(const conf_load *l, p3_err *err) {
        const daemon_conf *c = &l->conf;
        int r;

        r = conf_check_le(l, KEY_QUEUE_PER_USER_MAX, c->queue_per_user_max, KEY_QUEUE_MAX,
                          c->queue_max, err);
        if (r < 0)
                return r;
        /* The environment's numbers were checked as they were applied; a PointNum= that
         * applies to both backends is checked once, as gpu's. */
        r = conf_check_le(l, KEY_POINT_NUM, (uint64_t) c->gpu.points, KEY_MAX_POINT_NUM,
                          (uint64_t) c->max_points, err);
        if (r >= 0 && !c->points_set)
                r = conf_check_le(l, KEY_CPU_POINT_NUM, (uint64_t) c->cpu.points,
                                  KEY_MAX_POINT_NUM, (uint64_t) c->max_points, err);
        if (r >= 0)
                r = conf_check_le(l, KEY_PROMPT_NUM, (uint64_t) c->gpu.prompts,
                                  KEY_MAX_PROMPT_NUM, (uint64_t) c->max_prompts, err);
        if (r >= 0 && !c->prompts_set)
                r = conf_check_le(l, KEY_CPU_PROMPT_NUM, (uint64_t) c->cpu.prompts,
                                  KEY_MAX_PROMPT_NUM, (uint64_t) c->max_prompts, err);
        return r;
}

/* An explicit PointNum= applies to both backends, so a CpuPointNum= beside it is dead. */
static void conf_warn_shadowed(const conf_load *l) {
        const conf_origin *o;

        o = &l->origin[KEY_CPU_POINT_NUM];
        if (l->conf.points_set && o->path)
                conf_warn("%s:%u: [Segment] CpuPointNum= has no effect: PointNum= (or "
                          "$P3SAM_POINT_NUM) is set and applies to both backends",
                          o->path, o->line);
        o = &l->origin[KEY_CPU_PROMPT_NUM];
        if (l->conf.prompts_set && o->path)
                conf_warn("%s:%u: [Segment] CpuPromptNum= has no effect: PromptNum= (or "
                          "$P3SAM_PROMPT_NUM) is set and applies to both backends",
                          o->path, o->line);
}

int daemon_conf_load(const char *main_path, daemon_conf *c, p3_err *err) {
        _cleanup_(conf_load_done) conf_load l = {};
        int r;

        daemon_conf_init(&l.conf);
        daemon_conf_init(&l.defaults);
        if (!l.conf.model_path || !l.conf.allow_group || !l.defaults.model_path ||
            !l.defaults.allow_group)
                return p3_errf(err, -ENOMEM, "out of memory");

        r = conf_list_files(&l, main_path ?: DAEMON_CONF_PATH, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < l.n_files; i++) {
                r = conf_parse_file(&l, l.files[i], err);
                if (r < 0)
                        return r;
        }
        r = daemon_conf_apply_env(&l.conf, env_get, err);
        if (r < 0)
                return r;
        r = conf_verify(&l, err);
        if (r < 0)
                return r;
        conf_warn_shadowed(&l);

        /* Only now is *c replaced: a failed reload keeps the running configuration. */
        daemon_conf_done(c);
        *c = l.conf;
        l.conf = (daemon_conf) {};
        return 0;
}
