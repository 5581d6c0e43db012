/* SPDX-License-Identifier: MIT */
/* The verbs that look at p3samd and steer it: status, jobs, cancel, clear-gpu, reload,
 * set-idle-timeout. Reads are open to anyone; the daemon decides who may steer (polkit), and
 * its refusal comes back as exit code 4 with its sentence. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl-bus.h"
#include "parse-util.h"
#include "time-util.h"

#define IDLE_CONF_NAME "50-idle-timeout.conf"
#define DEFAULT_CONF_DIR "/etc/p3sam/p3samd.conf.d"

/* ---- options shared by these verbs ---- */

enum {
        ARG_JSON = 0x100,
        ARG_NO_LEGEND,
        ARG_PERSIST,
};

typedef struct status_args {
        bool json, no_legend, persist;
        const char *arg; /* the positional argument, where the verb takes one */
} status_args;

static int parse_option(int c, char **argv, void (*help)(void), status_args *a) {
        switch (c) {
        case 'h':
                help();
                return CTL_EXIT_OK;
        case ARG_JSON:
                a->json = true;
                return -1;
        case ARG_NO_LEGEND:
                a->no_legend = true;
                return -1;
        case ARG_PERSIST:
                a->persist = true;
                return -1;
        default:
                return ctl_parse_option_common(c, argv[0], argv);
        }
}

/* Parses argv with options (help, the global ones and those given) and at most one positional
 * argument, which may look like a negative number ("-5min", "-1"); -1 to go on, else an exit
 * code. */
static int parse_args(int argc, char **argv, const struct option *extra, void (*help)(void),
                      bool needs_arg, status_args *a) {
        struct option opts[8] = {
                { "help", no_argument, NULL, 'h' },
                CTL_GLOBAL_OPTIONS,
        };
        for (int i = 3; extra && extra->name && i < 7; extra++, i++)
                opts[i] = *extra;
        _cleanup_free_ char **args = ctl_argv_values_last(&argc, argv, opts);
        if (!args)
                return ctl_fail(CTL_EXIT_FAILURE, "Out of memory.");
        int c, r = -1;
        optind = 0;
        while (r < 0 && (c = getopt_long(argc, args, ":h", opts, NULL)) >= 0)
                r = parse_option(c, args, help, a);
        if (r >= 0)
                return r;
        if (needs_arg && optind >= argc)
                return ctl_fail(CTL_EXIT_USAGE, "p3samctl %s needs an argument; see p3samctl %s "
                                                "--help.", argv[0], argv[0]);
        if (optind + needs_arg < argc)
                return ctl_fail(CTL_EXIT_USAGE, "Unexpected argument \"%s\"; see p3samctl %s "
                                                "--help.", args[optind + needs_arg], argv[0]);
        a->arg = needs_arg ? args[optind] : NULL;
        return -1;
}

/* ---- status ---- */

typedef struct daemon_status {
        char *state, *backend, *device, *model_path, *version;
        uint64_t model_bytes, peak_model_bytes; /* on whatever device runs the model */
        uint64_t gpu_bytes, peak_gpu_bytes;     /* GPU memory only: 0 on the CPU backend */
        uint64_t host_bytes, idle_timeout_usec, jobs_completed;
        uint64_t offload_at_usec; /* CLOCK_MONOTONIC, 0 = no offload pending */
        uint32_t queue_length;
        int synthetic;
} daemon_status;

static const struct status_prop {
        const char *name, *json;
        char type;
        size_t offset;
} status_props[] = {
        { "State", "state", 's', offsetof(daemon_status, state) },
        { "Backend", "backend", 's', offsetof(daemon_status, backend) },
        { "Device", "device", 's', offsetof(daemon_status, device) },
        { "ModelMemoryBytes", "model_memory_bytes", 't', offsetof(daemon_status, model_bytes) },
        { "PeakModelMemoryBytes", "peak_model_memory_bytes", 't',
          offsetof(daemon_status, peak_model_bytes) },
        { "GpuMemoryBytes", "gpu_memory_bytes", 't', offsetof(daemon_status, gpu_bytes) },
        { "PeakGpuMemoryBytes", "peak_gpu_memory_bytes", 't',
          offsetof(daemon_status, peak_gpu_bytes) },
        { "HostMemoryBytes", "host_memory_bytes", 't', offsetof(daemon_status, host_bytes) },
        { "IdleTimeoutUSec", "idle_timeout_usec", 't',
          offsetof(daemon_status, idle_timeout_usec) },
        { "IdleOffloadTimestampMonotonic", "idle_offload_timestamp_monotonic", 't',
          offsetof(daemon_status, offload_at_usec) },
        { "QueueLength", "queue_length", 'u', offsetof(daemon_status, queue_length) },
        { "JobsCompleted", "jobs_completed", 't', offsetof(daemon_status, jobs_completed) },
        { "ModelPath", "model_path", 's', offsetof(daemon_status, model_path) },
        { "ModelSynthetic", "model_synthetic", 'b', offsetof(daemon_status, synthetic) },
        { "Version", "version", 's', offsetof(daemon_status, version) },
};

static void daemon_status_done(daemon_status *s) {
        for (size_t i = 0; i < ELEMENTSOF(status_props); i++)
                if (status_props[i].type == 's')
                        free(*(char **) ((char *) s + status_props[i].offset));
}

/* One {sv} of GetAll into the field the table names; unknown properties are skipped, so that
 * a newer daemon still answers an older p3samctl. */
static int read_status_prop(sd_bus_message *m, daemon_status *s) {
        const char *key, *str;
        int r = sd_bus_message_read(m, "s", &key);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(status_props); i++) {
                const struct status_prop *p = &status_props[i];
                void *field = (char *) s + p->offset;
                char sig[2] = { p->type, 0 };
                if (strcmp(key, p->name) != 0)
                        continue;
                if (p->type != 's')
                        return sd_bus_message_read(m, "v", sig, field);
                r = sd_bus_message_read(m, "v", "s", &str);
                if (r >= 0 && !(*(char **) field = strdup(str)))
                        r = -ENOMEM;
                return r;
        }
        return r < 0 ? r : sd_bus_message_skip(m, "v");
}

static int get_status(sd_bus *bus, daemon_status *s) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = ctl_bus_call_method(bus, CTL_BUS_PATH, "org.freedesktop.DBus.Properties",
                                    "GetAll", &e, &reply, "s", CTL_BUS_IFACE);
        if (r < 0)
                return ctl_bus_fail(&e, r, "read the daemon's state");
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                r = read_status_prop(reply, s);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r < 0)
                return ctl_fail(CTL_EXIT_FAILURE, "Cannot read p3samd's state: %s.",
                                strerror(-r));
        return 0;
}

static void format_bytes(char *buf, size_t len, uint64_t b) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
        double v = (double) b;
        size_t u = 0;
        for (; v >= 1024 && u + 1 < ELEMENTSOF(units); u++)
                v /= 1024;
        if (u == 0)
                snprintf(buf, len, "%" PRIu64 " B", b);
        else
                snprintf(buf, len, "%.1f %s", v, units[u]);
}

static bool timeout_is_never(uint64_t usec) {
        return usec == 0 || usec == USEC_INFINITY;
}

/* Microseconds until the daemon's idle offload (same machine, same monotonic clock), or
 * UINT64_MAX when none is pending. */
static uint64_t offload_in_usec(const daemon_status *s) {
        if (!s->offload_at_usec)
                return UINT64_MAX;
        uint64_t now = now_monotonic_usec();
        return s->offload_at_usec > now ? s->offload_at_usec - now : 0;
}

static void print_status_json(const daemon_status *s) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "bus_name", json_object_new_string(ctl_bus_name()));
        for (size_t i = 0; i < ELEMENTSOF(status_props); i++) {
                const struct status_prop *p = &status_props[i];
                const void *field = (const char *) s + p->offset;
                json_object *v = p->type == 's' ? json_object_new_string(*(char *const *) field ?: "")
                               : p->type == 't' ? json_object_new_uint64(*(const uint64_t *) field)
                               : p->type == 'u' ? json_object_new_uint64(*(const uint32_t *) field)
                                                : json_object_new_boolean(*(const int *) field);
                json_object_object_add(o, p->json, v);
        }
        uint64_t in = offload_in_usec(s);
        json_object_object_add(o, "idle_offload_in_usec",
                               in == UINT64_MAX ? NULL : json_object_new_uint64(in));
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
}

/* The idle timeout as configured, and the time left before the model is offloaded. */
static void print_idle(const daemon_status *s) {
        char span[FORMAT_TIMESPAN_MAX], left[FORMAT_TIMESPAN_MAX];
        if (timeout_is_never(s->idle_timeout_usec)) {
                printf(" Idle timeout: never (the model stays loaded)\n");
                return;
        }
        format_timespan(span, sizeof(span), s->idle_timeout_usec);
        uint64_t in = offload_in_usec(s);
        if (in != UINT64_MAX) {
                /* whole seconds: the µs of a snapshot mean nothing to a person */
                format_timespan(left, sizeof(left), (in + 999999) / 1000000 * 1000000);
                printf(" Idle timeout: %s (the model is offloaded in %s)\n", span, left);
        } else
                printf(" Idle timeout: %s (%s)\n", span,
                       strcmp(s->state ?: "", "offloaded") == 0
                               ? "the model is offloaded; the next job loads it"
                               : "counting starts when no job is left");
}

/* The model's memory on the device that runs it; GPU memory too where that is a GPU. */
static void print_memory(const daemon_status *s) {
        char now[32], peak[32];
        const char *backend = s->backend ?: "?";
        bool cuda = strcmp(backend, "cuda") == 0;
        format_bytes(now, sizeof(now), s->model_bytes);
        format_bytes(peak, sizeof(peak), s->peak_model_bytes);
        printf(" Model memory: %s (peak %s) on %s\n", now, peak,
               cuda ? "GPU" : strcmp(backend, "cpu") == 0 ? "CPU" : backend);
        if (!cuda)
                return;
        format_bytes(now, sizeof(now), s->gpu_bytes);
        format_bytes(peak, sizeof(peak), s->peak_gpu_bytes);
        printf("   GPU memory: %s (peak %s)\n", now, peak);
}

static void print_status(const daemon_status *s) {
        char host[32];
        bool tty = isatty(STDOUT_FILENO);
        if (s->synthetic)
                printf("%sWARNING: p3samd runs on SYNTHETIC weights: its parts and masks mean "
                       "nothing (install the real model with: p3samctl fetch-model).%s\n",
                       tty ? "\033[1;31m" : "", tty ? "\033[0m" : "");
        format_bytes(host, sizeof(host), s->host_bytes);
        printf("       Daemon: p3samd %s on %s\n", s->version ?: "?", ctl_bus_name());
        printf("        State: %s\n", s->state ?: "?");
        printf("      Backend: %s\n", s->backend ?: "?");
        printf("       Device: %s\n", s->device && *s->device ? s->device : "-");
        print_memory(s);
        printf("  Host memory: %s\n", host);
        print_idle(s);
        printf("        Queue: %" PRIu32 " job%s\n", s->queue_length,
               s->queue_length == 1 ? "" : "s");
        printf("    Jobs done: %" PRIu64 "\n", s->jobs_completed);
        printf("        Model: %s%s\n", s->model_path && *s->model_path ? s->model_path : "-",
               s->synthetic ? " (SYNTHETIC weights)" : "");
}

static void help_status(void) {
        printf("Usage: p3samctl status [--json]\n"
               "Show the state of p3samd: model, device, memory, idle timeout, queue.\n\n"
               "      --json            one JSON object, for scripts\n"
               "      --user            talk to p3samd on the user bus\n"
               "      --instance N      talk to the instance on GPU N\n"
               "  -h, --help            show this help\n");
}

int verb_status(int argc, char **argv) {
        static const struct option opts[] = { { "json", no_argument, NULL, ARG_JSON }, {} };
        status_args a = {};
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        daemon_status s = {};
        int r = parse_args(argc, argv, opts, help_status, false, &a);
        if (r >= 0)
                return r;
        r = ctl_bus_open(&bus);
        r = r < 0 ? ctl_bus_fail(NULL, r, "connect to the bus") : get_status(bus, &s);
        if (r == 0)
                a.json ? print_status_json(&s) : print_status(&s);
        daemon_status_done(&s);
        return r;
}

/* ---- jobs ---- */

typedef struct job_info {
        uint32_t id, uid;
        char *state, *stage, *error, *result;
        double progress;
} job_info;

static void job_info_done(job_info *j) {
        free(j->state);
        free(j->stage);
        free(j->error);
        free(j->result);
}

static int read_string_variant(sd_bus_message *m, char **ret) {
        const char *s;
        int r = sd_bus_message_read(m, "v", "s", &s);
        if (r >= 0 && !(*ret = strdup(s)))
                r = -ENOMEM;
        return r;
}

/* The a{sv} of org.p3sam.Segmenter1.Job. */
static int read_job_props(sd_bus_message *m, job_info *j) {
        const char *key;
        int r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        break;
                if (strcmp(key, "Id") == 0)
                        r = sd_bus_message_read(m, "v", "u", &j->id);
                else if (strcmp(key, "StartedByUID") == 0)
                        r = sd_bus_message_read(m, "v", "u", &j->uid);
                else if (strcmp(key, "Progress") == 0)
                        r = sd_bus_message_read(m, "v", "d", &j->progress);
                else if (strcmp(key, "State") == 0)
                        r = read_string_variant(m, &j->state);
                else if (strcmp(key, "Stage") == 0)
                        r = read_string_variant(m, &j->stage);
                else if (strcmp(key, "Error") == 0)
                        r = read_string_variant(m, &j->error);
                else if (strcmp(key, "Result") == 0)
                        r = read_string_variant(m, &j->result);
                else
                        r = sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        return r < 0 ? r : sd_bus_message_exit_container(m);
}

/* One {oa{sa{sv}}} of GetManagedObjects; a job is added to *jobs. */
static int read_object(sd_bus_message *m, job_info **jobs, size_t *n) {
        const char *path, *iface;
        int r = sd_bus_message_read(m, "o", &path);
        if (r < 0)
                return r;
        bool is_job = strncmp(path, CTL_JOB_PREFIX, strlen(CTL_JOB_PREFIX)) == 0;
        r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
                r = sd_bus_message_read(m, "s", &iface);
                if (r >= 0 && is_job && strcmp(iface, CTL_JOB_IFACE) == 0) {
                        job_info *more = realloc(*jobs, sizeof(job_info) * (*n + 1));
                        if (!more)
                                return -ENOMEM;
                        *jobs = more;
                        more[*n] = (job_info) {};
                        r = read_job_props(m, &more[(*n)++]);
                } else if (r >= 0)
                        r = sd_bus_message_skip(m, "a{sv}");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        return r < 0 ? r : sd_bus_message_exit_container(m);
}

static int list_jobs(sd_bus *bus, job_info **jobs, size_t *n) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = ctl_bus_call_method(bus, CTL_BUS_PATH, "org.freedesktop.DBus.ObjectManager",
                                    "GetManagedObjects", &e, &reply, NULL);
        if (r < 0)
                return ctl_bus_fail(&e, r, "list the jobs");
        r = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}")) > 0) {
                r = read_object(reply, jobs, n);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r < 0)
                return ctl_fail(CTL_EXIT_FAILURE, "Cannot read the list of jobs: %s.",
                                strerror(-r));
        return 0;
}

static int compare_jobs(const void *a, const void *b) {
        const job_info *x = a, *y = b;
        return x->id < y->id ? -1 : x->id > y->id;
}

static void print_jobs_json(const job_info *jobs, size_t n) {
        json_object *arr = json_object_new_array();
        for (size_t i = 0; i < n; i++) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "id", json_object_new_uint64(jobs[i].id));
                json_object_object_add(o, "state", json_object_new_string(jobs[i].state ?: ""));
                json_object_object_add(o, "stage", json_object_new_string(jobs[i].stage ?: ""));
                json_object_object_add(o, "progress", json_object_new_double(jobs[i].progress));
                json_object_object_add(o, "uid", json_object_new_uint64(jobs[i].uid));
                json_object_object_add(o, "error", json_object_new_string(jobs[i].error ?: ""));
                json_object_object_add(o, "result", json_object_new_string(jobs[i].result ?: ""));
                json_object_array_add(arr, o);
        }
        puts(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
        json_object_put(arr);
}

static void print_jobs(const job_info *jobs, size_t n, bool legend) {
        if (legend && n > 0)
                printf("%-6s %-10s %-14s %8s %6s  %s\n", "ID", "STATE", "STAGE", "PROGRESS", "UID",
                       "ERROR");
        for (size_t i = 0; i < n; i++)
                printf("%-6" PRIu32 " %-10s %-14s %7.0f%% %6" PRIu32 "  %s\n", jobs[i].id,
                       jobs[i].state ?: "?", jobs[i].stage && *jobs[i].stage ? jobs[i].stage : "-",
                       100 * jobs[i].progress, jobs[i].uid, jobs[i].error ?: "");
        if (legend)
                printf("%s%zu job%s listed.\n", n ? "\n" : "", n, n == 1 ? "" : "s");
}

static void help_jobs(void) {
        printf("Usage: p3samctl jobs [--json] [--no-legend]\n"
               "List the jobs of p3samd: queued, running, and those that ended recently.\n\n"
               "      --json            a JSON array, for scripts\n"
               "      --no-legend       no header and no footer\n"
               "      --user            talk to p3samd on the user bus\n"
               "      --instance N      talk to the instance on GPU N\n"
               "  -h, --help            show this help\n");
}

int verb_jobs(int argc, char **argv) {
        static const struct option opts[] = {
                { "json", no_argument, NULL, ARG_JSON },
                { "no-legend", no_argument, NULL, ARG_NO_LEGEND },
                {},
        };
        status_args a = {};
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        job_info *jobs = NULL;
        size_t n = 0;
        int r = parse_args(argc, argv, opts, help_jobs, false, &a);
        if (r >= 0)
                return r;
        r = ctl_bus_open(&bus);
        r = r < 0 ? ctl_bus_fail(NULL, r, "connect to the bus") : list_jobs(bus, &jobs, &n);
        if (r == 0) {
                qsort(jobs, n, sizeof(*jobs), compare_jobs);
                a.json ? print_jobs_json(jobs, n) : print_jobs(jobs, n, !a.no_legend);
        }
        for (size_t i = 0; i < n; i++)
                job_info_done(&jobs[i]);
        free(jobs);
        return r;
}

/* ---- cancel ---- */

static void help_cancel(void) {
        printf("Usage: p3samctl cancel ID\n"
               "Cancel a queued or running job (its number, or its object path).\n"
               "Cancelling another user's job needs root or the polkit action org.p3sam.manage.\n\n"
               "      --user            talk to p3samd on the user bus\n"
               "      --instance N      talk to the instance on GPU N\n"
               "  -h, --help            show this help\n");
}

/* "7" or "/org/p3sam/Segmenter1/job/7". */
static int job_path(const char *arg, char *buf, size_t len) {
        uint64_t id;
        const char *num = strncmp(arg, CTL_JOB_PREFIX, strlen(CTL_JOB_PREFIX)) == 0
                                  ? arg + strlen(CTL_JOB_PREFIX)
                                  : arg;
        if (parse_u64_range(num, 0, UINT32_MAX, &id) < 0)
                return ctl_fail(CTL_EXIT_USAGE,
                                "\"%s\" is not a job number (p3samctl jobs lists them).", arg);
        snprintf(buf, len, CTL_JOB_PREFIX "%" PRIu64, id);
        return 0;
}

static int cancel_fail(const sd_bus_error *e, int r, const char *id) {
        if (sd_bus_error_has_names(e, SD_BUS_ERROR_UNKNOWN_OBJECT, SD_BUS_ERROR_UNKNOWN_INTERFACE,
                                   SD_BUS_ERROR_UNKNOWN_METHOD, SD_BUS_ERROR_UNKNOWN_PROPERTY))
                return ctl_fail(CTL_EXIT_FAILURE,
                                "There is no job %s (p3samctl jobs lists them).", id);
        return ctl_bus_fail(e, r, "cancel the job");
}

static int get_job_state(sd_bus *bus, const char *path, sd_bus_error *e, char **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *state;
        int r = ctl_bus_call_method(bus, path, "org.freedesktop.DBus.Properties", "Get", e,
                                    &reply, "ss", CTL_JOB_IFACE, "State");
        if (r >= 0)
                r = sd_bus_message_read(reply, "v", "s", &state);
        if (r >= 0 && !(*ret = strdup(state)))
                r = -ENOMEM;
        return r;
}

int verb_cancel(int argc, char **argv) {
        status_args a = {};
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *state = NULL;
        char path[128];
        int r = parse_args(argc, argv, NULL, help_cancel, true, &a);
        if (r >= 0)
                return r;
        if ((r = job_path(a.arg, path, sizeof(path))))
                return r;
        if ((r = ctl_bus_open(&bus)) < 0)
                return ctl_bus_fail(NULL, r, "connect to the bus");
        const char *id = strrchr(path, '/') + 1;
        r = get_job_state(bus, path, &e, &state);
        if (r < 0)
                return cancel_fail(&e, r, id);
        if (strcmp(state, "queued") != 0 && strcmp(state, "running") != 0) {
                printf("Job %s has already ended (%s).\n", id, state);
                return CTL_EXIT_OK;
        }
        r = ctl_bus_call_method(bus, path, CTL_JOB_IFACE, "Cancel", &e, NULL, NULL);
        if (r < 0)
                return cancel_fail(&e, r, id);
        return CTL_EXIT_OK;
}

/* ---- clear-gpu, reload ---- */

static void help_clear_gpu(void) {
        printf("Usage: p3samctl clear-gpu\n"
               "Take the model off the GPU now and free its memory; the next job loads it\n"
               "again. Needs root or the polkit action org.p3sam.manage.\n\n"
               "      --user            talk to p3samd on the user bus\n"
               "      --instance N      talk to the instance on GPU N\n"
               "  -h, --help            show this help\n");
}

static void help_reload(void) {
        printf("Usage: p3samctl reload\n"
               "Read p3samd.conf again and load the model it names; if that fails, the old\n"
               "model keeps serving. Needs root or the polkit action org.p3sam.manage.\n\n"
               "      --user            talk to p3samd on the user bus\n"
               "      --instance N      talk to the instance on GPU N\n"
               "  -h, --help            show this help\n");
}

/* A method without arguments or results on the manager object. */
static int simple_call(int argc, char **argv, void (*help)(void), const char *method,
                       const char *what) {
        status_args a = {};
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        int r = parse_args(argc, argv, NULL, help, false, &a);
        if (r >= 0)
                return r;
        if ((r = ctl_bus_open(&bus)) < 0)
                return ctl_bus_fail(NULL, r, "connect to the bus");
        (void) sd_bus_set_allow_interactive_authorization(bus, isatty(STDIN_FILENO));
        r = ctl_bus_call_method(bus, CTL_BUS_PATH, CTL_BUS_IFACE, method, &e, NULL, NULL);
        if (r < 0)
                return ctl_bus_fail(&e, r, what);
        return CTL_EXIT_OK;
}

int verb_clear_gpu(int argc, char **argv) {
        return simple_call(argc, argv, help_clear_gpu, "ClearGpuMemory", "clear the GPU memory");
}

int verb_reload(int argc, char **argv) {
        return simple_call(argc, argv, help_reload, "Reload", "reload");
}

/* ---- set-idle-timeout ---- */

static void help_set_idle_timeout(void) {
        printf("Usage: p3samctl set-idle-timeout DURATION [--persist]\n"
               "Set how long p3samd keeps the model loaded without jobs: a systemd time span\n"
               "(300, 5min, 1h 30min; 0 or infinity: never offload). Needs root or the polkit\n"
               "action org.p3sam.manage.\n\n"
               "      --persist         also write it to " DEFAULT_CONF_DIR "/\n"
               "                        " IDLE_CONF_NAME " (needs root)\n"
               "      --user            talk to p3samd on the user bus\n"
               "      --instance N      talk to the instance on GPU N\n"
               "  -h, --help            show this help\n");
}

static const char *conf_dir(void) {
        const char *d = getenv("P3SAMCTL_CONF_DIR");
        return d && *d ? d : DEFAULT_CONF_DIR;
}

/* Whether dir, or the nearest directory above it that exists, can be written to. */
static bool dir_writable(const char *dir) {
        _cleanup_free_ char *p = strdup(dir);
        while (p && *p) {
                if (access(p, F_OK) == 0)
                        return access(p, W_OK) == 0;
                char *slash = strrchr(p, '/');
                if (!slash)
                        return access(".", W_OK) == 0;
                if (slash == p)
                        p[1] = '\0'; /* up to "/" */
                else
                        *slash = '\0';
        }
        return false;
}

/* mkdir -p, mode 0755. */
static int mkdir_parents(const char *dir) {
        _cleanup_free_ char *p = strdup(dir);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1;; s++) {
                if (*s != '/' && *s != '\0')
                        continue;
                char c = *s;
                *s = '\0';
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                if (!(*s = c))
                        return 0;
        }
}

/* The drop-in, whole or not at all: written beside its name, then renamed over it. */
static int write_drop_in(const char *dir, uint64_t usec, char **ret_path) {
        char span[FORMAT_TIMESPAN_MAX];
        _cleanup_free_ char *path = NULL, *tmp = NULL;
        if (asprintf(&path, "%s/" IDLE_CONF_NAME, dir) < 0 ||
            asprintf(&tmp, "%s/." IDLE_CONF_NAME ".XXXXXX", dir) < 0)
                return -ENOMEM;
        int r = mkdir_parents(dir);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        _cleanup_fclose_ FILE *f = fdopen(fd, "w");
        if (!f) {
                r = -errno;
                (void) unlink(tmp);
                return r;
        }
        fd = -1; /* f owns it */
        format_timespan(span, sizeof(span), usec);
        fprintf(f, "# Written by p3samctl set-idle-timeout --persist.\n[Daemon]\nIdleTimeoutSec=%s\n",
                span);
        if (fchmod(fileno(f), 0644) < 0 || fflush(f) != 0 || fsync(fileno(f)) < 0 ||
            rename(tmp, path) < 0) {
                r = -errno;
                (void) unlink(tmp);
                return r;
        }
        *ret_path = TAKE_PTR(path);
        return 0;
}

static int persist(const char *value, uint64_t usec, char **ret_path) {
        const char *dir = conf_dir();
        int r = write_drop_in(dir, usec, ret_path);
        if (r == -EACCES || r == -EPERM || r == -EROFS)
                return ctl_fail(CTL_EXIT_DENIED, "Cannot write to %s: %s; run: sudo p3samctl "
                                                 "set-idle-timeout %s --persist", dir,
                                strerror(-r), value);
        if (r < 0)
                return ctl_fail(CTL_EXIT_FAILURE, "Cannot write %s/" IDLE_CONF_NAME ": %s.", dir,
                                strerror(-r));
        return 0;
}

/* SetIdleTimeout(), through which polkit may ask the person at the terminal (the property is
 * root's only: a property's reply cannot wait for polkit). A daemon older than the method
 * gets the property, as p3samctl set it before. */
static int call_set_idle_timeout(sd_bus *bus, uint64_t usec, sd_bus_error *e) {
        bool interactive = isatty(STDIN_FILENO);
        (void) sd_bus_set_allow_interactive_authorization(bus, interactive);
        int r = ctl_bus_call_method(bus, CTL_BUS_PATH, CTL_BUS_IFACE, "SetIdleTimeout", e, NULL,
                                    "tb", usec, (int) interactive);
        if (r >= 0 || !sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_METHOD))
                return r;
        sd_bus_error_free(e);
        return ctl_bus_call_method(bus, CTL_BUS_PATH, "org.freedesktop.DBus.Properties", "Set",
                                   e, NULL, "ssv", CTL_BUS_IFACE, "IdleTimeoutUSec", "t", usec);
}

int verb_set_idle_timeout(int argc, char **argv) {
        static const struct option opts[] = { { "persist", no_argument, NULL, ARG_PERSIST }, {} };
        status_args a = {};
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *written = NULL;
        uint64_t usec;
        int r = parse_args(argc, argv, opts, help_set_idle_timeout, true, &a);
        if (r >= 0)
                return r;
        const char *value = a.arg;
        if (strcmp(value, "never") == 0)
                value = "0";
        if (parse_timespan_usec(value, &usec) < 0)
                return ctl_fail(CTL_EXIT_USAGE,
                                "\"%s\" is not a time span (e.g. 300, 5min, 1h 30min, 0 for never).",
                                a.arg);
        /* before anything changes: a half-done --persist is worse than none */
        if (a.persist && !dir_writable(conf_dir()))
                return ctl_fail(CTL_EXIT_DENIED,
                                "Writing %s needs root; run: sudo p3samctl set-idle-timeout %s "
                                "--persist",
                                conf_dir(), a.arg);
        if (a.persist && (r = persist(a.arg, usec, &written)))
                return r;
        r = ctl_bus_open(&bus);
        if (r >= 0)
                r = call_set_idle_timeout(bus, usec, &e);
        /* --persist while the daemon is stopped: the drop-in is what counts */
        if (r < 0 && written && ctl_bus_error_is_no_daemon(&e, r))
                printf("p3samd is not running; it reads the new timeout when it starts.\n");
        else if (r < 0)
                return ctl_bus_fail(&e, r, "set the idle timeout");
        if (written)
                printf("Wrote %s.\n", written);
        return CTL_EXIT_OK;
}
