/* SPDX-License-Identifier: MIT */
/* p3samctl segment with many meshes: the list (ctl-batch.c) fed to one daemon or to several
 * instances on one bus, about two jobs in flight on each, so that every daemon has the next
 * mesh queued while it works on one. One event loop, one connection; every job's output is a
 * temporary file until its job succeeds (ctl-segment.c), so a batch that is interrupted,
 * even by kill -9, leaves only whole results, and a rerun skips them. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "ctl-batch.h"
#include "ctl-bus.h"
#include "ctl-progress.h"
#include "ctl-segment.h"
#include "time-util.h"

#define PER_INSTANCE 2 /* jobs in flight on each daemon: one running, the next queued */
#define TICK_USEC (200 * 1000)
#define RETRY_USEC (1000 * 1000) /* after a full queue */

typedef struct instance {
        char *name;        /* the well-known bus name */
        bool gone;         /* left the bus, or is not on it */
        unsigned in_flight;
        uint64_t retry_at; /* a full queue: nothing more before (CLOCK_MONOTONIC) */
} instance;

typedef struct runner runner;

typedef struct task {
        runner *run;
        size_t item; /* in run->list */
        instance *inst;
        int mesh_fd, report_fd;
        out_file out;
        sd_bus_slot *call; /* the Segment call, until answered */
        char *sender;      /* the daemon's unique name, from its answer */
        char *job;         /* the job's object */
        bool completed_ok, cancel_sent;
        char *message;     /* Completed's */
        uint64_t start_usec;
        struct task *next;
} task;

struct runner {
        const seg_args *args;
        const char *format;
        batch_list list;
        batch_shard shard;
        bool *pending;     /* per item: still to segment */
        size_t next;       /* the next item to look at */
        size_t *retry;     /* items handed back by a full queue or a vanished daemon */
        size_t n_retry;
        instance *inst;
        size_t n_inst;
        task *tasks;       /* in flight */
        sd_event *event;
        sd_bus *bus;
        FILE *summary;
        ctl_progress bar;
        size_t n_done, n_skipped, n_failed;
        uint64_t start_usec;
        bool interrupted;
        int exit_code;     /* >= 0: the batch stops with it (access denied, no daemon) */
        sd_bus_error gone_error; /* why the last instance was not reachable */
};

/* A sentence for a mesh's failure, or NULL (out of memory: task_fail() says so). */
static char *sentence(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sentence(const char *fmt, ...) {
        va_list ap;
        char *s;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

/* ---- what the user sees: a line per mesh, the bar, the summary file ---- */

static size_t n_finished(const runner *r) {
        return r->n_done + r->n_skipped + r->n_failed;
}

static void draw_bar(runner *r) {
        char stage[32];
        if (!r->bar.tty)
                return;
        snprintf(stage, sizeof(stage), "%zu/%zu", n_finished(r), r->list.n);
        ctl_progress_update(&r->bar, stage, r->list.n ? (double) n_finished(r) / r->list.n : 1);
}

static void record(runner *r, size_t i, batch_status status, const char *error,
                   const instance *in, int64_t parts, double seconds) {
        const batch_item *it = &r->list.items[i];
        const char *name = in ? in->name : NULL;
        batch_result res = { .path = it->path, .output = it->output, .status = status,
                             .error = error, .seconds = seconds, .parts = parts,
                             .instance = name, .shard = &r->shard };
        *(status == BATCH_DONE ? &r->n_done : status == BATCH_SKIPPED ? &r->n_skipped
                                                                       : &r->n_failed) += 1;
        ctl_progress_clear(&r->bar);
        if (status == BATCH_DONE) {
                printf("done %s -> %s (%" PRId64 " parts, %.1fs, %s)\n", it->path, it->output,
                       parts, seconds, name);
                fflush(stdout);
        } else if (status == BATCH_FAILED && strstr(error, it->path))
                (void) ctl_fail(0, "%s", error);
        else if (status == BATCH_FAILED)
                (void) ctl_fail(0, "%s: %s", it->path, error);
        if (r->summary) {
                _cleanup_free_ char *line = batch_summary_line(&res);
                /* flushed per line: a killed batch keeps what it had finished */
                if (!line || fprintf(r->summary, "%s\n", line) < 0 || fflush(r->summary) != 0)
                        (void) ctl_fail(0, "Cannot write the summary line of %s.", it->path);
        }
        draw_bar(r);
}

/* ---- the tasks ---- */

static void task_free(task *t) {
        runner *r = t->run;
        for (task **p = &r->tasks; *p; p = &(*p)->next)
                if (*p == t) {
                        *p = t->next;
                        break;
                }
        if (t->inst)
                t->inst->in_flight--;
        sd_bus_slot_unref(t->call);
        ctl_out_done(&t->out); /* a result not committed goes */
        if (t->mesh_fd >= 0)
                close(t->mesh_fd);
        if (t->report_fd >= 0)
                close(t->report_fd);
        free(t->sender);
        free(t->job);
        free(t->message);
        free(t);
}

static void task_fail(task *t, const char *sentence) {
        record(t->run, t->item, BATCH_FAILED, sentence ?: "Out of memory.", t->inst, -1,
               (now_monotonic_usec() - t->start_usec) / 1e6);
        task_free(t);
}

/* The number of parts, from the report that the daemon wrote into our memfd; -1 unknown. */
static int64_t read_parts(int fd) {
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > (64 << 20))
                return -1;
        _cleanup_free_ char *buf = malloc((size_t) st.st_size + 1);
        if (!buf || pread(fd, buf, (size_t) st.st_size, 0) != st.st_size)
                return -1;
        buf[st.st_size] = '\0';
        json_object *root = json_tokener_parse(buf), *parts = NULL;
        int64_t n = -1;
        if (json_object_object_get_ex(root, "parts", &parts) &&
            json_object_is_type(parts, json_type_array))
                n = (int64_t) json_object_array_length(parts);
        json_object_put(root);
        return n;
}

/* mkdir -p of the output's directory (under --output-dir). */
static int make_parents(const char *path) {
        _cleanup_free_ char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        for (char *p = dir + 1; (p = strchr(p, '/')); p++) {
                *p = '\0';
                if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        return 0;
}

static void dispatch(runner *r);
static void maybe_stop(runner *r);

static void send_cancel(task *t) {
        if (t->cancel_sent || !t->job)
                return;
        t->cancel_sent = true;
        /* no reply wanted: the job's JobRemoved says how it ended */
        (void) sd_bus_call_method_async(t->run->bus, NULL, t->sender, t->job, CTL_JOB_IFACE,
                                        "Cancel", NULL, NULL, NULL);
}

/* The Segment call failed: a full queue or a daemon that is not there hands the mesh back;
 * access denied stops the batch; anything else is this mesh's failure. */
static void call_failed(task *t, sd_bus_message *m) {
        runner *r = t->run;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        int err = ctl_bus_reply_error(m, &e);
        if (sd_bus_error_has_name(&e, "org.p3sam.Error.QueueFull") ||
            ctl_bus_error_is_no_daemon(&e, err)) {
                if (sd_bus_error_has_name(&e, "org.p3sam.Error.QueueFull"))
                        t->inst->retry_at = now_monotonic_usec() + RETRY_USEC;
                else {
                        t->inst->gone = true;
                        sd_bus_error_free(&r->gone_error);
                        (void) sd_bus_error_copy(&r->gone_error, &e);
                }
                r->retry[r->n_retry++] = t->item;
                task_free(t);
                return;
        }
        if (sd_bus_error_has_names(&e, SD_BUS_ERROR_ACCESS_DENIED, CTL_ERROR_BUS_DENIED)) {
                if (r->exit_code < 0) {
                        ctl_progress_clear(&r->bar);
                        r->exit_code = ctl_bus_fail(&e, err, "segment");
                }
                r->retry[r->n_retry++] = t->item;
                task_free(t);
                return;
        }
        const char *msg = e.message && *e.message ? e.message : e.name ?: strerror(-err);
        _cleanup_free_ char *s = sentence("%s%s", msg,
                                          strchr(".!?", msg[strlen(msg) - 1]) ? "" : ".");
        task_fail(t, s);
}

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        task *t = userdata;
        runner *r = t->run;
        const char *path;
        t->call = sd_bus_slot_unref(t->call);
        if (sd_bus_message_is_method_error(m, NULL))
                call_failed(t, m);
        else if (sd_bus_message_read(m, "o", &path) < 0 || !(t->job = strdup(path)) ||
                 !(t->sender = strdup(sd_bus_message_get_sender(m) ?: "")))
                task_fail(t, "p3samd's answer cannot be read.");
        else if (r->interrupted)
                send_cancel(t);
        dispatch(r);
        return 0;
}

/* Opens the mesh and the outputs and sends the job to in. Returns NULL, or why the mesh fails
 * (a mesh that cannot even be opened fails here, and the batch goes on). */
static char *send_task(task *t, instance *in) {
        runner *r = t->run;
        const batch_item *it = &r->list.items[t->item];
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        struct stat st;
        int e;
        const char *mesh_format = batch_mesh_format(it->path) ?: "";
        char *why = strcmp(mesh_format, "gltf") == 0 ? ctl_gltf_unfit(it->path) : NULL;
        if (why)
                return why;
        t->mesh_fd = open(it->path, O_RDONLY | O_CLOEXEC);
        if (t->mesh_fd < 0 || fstat(t->mesh_fd, &st) < 0)
                return sentence("Cannot open it: %s.", strerror(errno));
        if (!S_ISREG(st.st_mode))
                return strdup("It is not a regular file.");
        if ((e = make_parents(it->output)) < 0 || (e = ctl_out_open(&t->out, it->output)) < 0)
                return sentence("Cannot create %s: %s.", it->output, strerror(-e));
        t->report_fd = memfd_create("p3samctl-report", MFD_CLOEXEC);
        if (t->report_fd < 0)
                return sentence("Cannot make room for the report: %s.", strerror(errno));
        ctl_output out = { .fd = t->out.fd, .format = r->format };
        e = ctl_build_request(r->bus, in->name, r->args, t->mesh_fd, mesh_format, &out, 1,
                              t->report_fd, &call);
        if (e >= 0)
                e = sd_bus_call_async(r->bus, &t->call, call, on_reply, t, CTL_SLOW_CALL_USEC);
        if (e < 0)
                return sentence("Cannot send it to %s: %s.", in->name, strerror(-e));
        t->inst = in;
        in->in_flight++;
        return NULL;
}

static void start_task(runner *r, instance *in, size_t i) {
        task *t = calloc(1, sizeof(*t));
        if (!t) {
                record(r, i, BATCH_FAILED, "Out of memory.", NULL, -1, 0);
                return;
        }
        *t = (task) { .run = r, .item = i, .mesh_fd = -1, .report_fd = -1, .out = OUT_FILE_NULL,
                      .start_usec = now_monotonic_usec(), .next = r->tasks };
        r->tasks = t;
        _cleanup_free_ char *why = send_task(t, in);
        if (why || t->call == NULL)
                task_fail(t, why);
}

/* ---- handing out the meshes ---- */

/* The least busy instance with room, or NULL. */
static instance *pick_instance(runner *r, uint64_t now) {
        instance *best = NULL;
        for (size_t i = 0; i < r->n_inst; i++) {
                instance *in = &r->inst[i];
                if (in->gone || in->in_flight >= PER_INSTANCE || in->retry_at > now)
                        continue;
                if (!best || in->in_flight < best->in_flight)
                        best = in;
        }
        return best;
}

static bool next_item(runner *r, size_t *ret) {
        if (r->n_retry) {
                *ret = r->retry[--r->n_retry];
                return true;
        }
        while (r->next < r->list.n && !r->pending[r->next])
                r->next++;
        if (r->next >= r->list.n)
                return false;
        *ret = r->next++;
        return true;
}

static bool all_gone(const runner *r) {
        for (size_t i = 0; i < r->n_inst; i++)
                if (!r->inst[i].gone)
                        return false;
        return true;
}

static bool items_left(const runner *r) {
        size_t i = r->next;
        while (i < r->list.n && !r->pending[i])
                i++;
        return r->n_retry || i < r->list.n;
}

/* Ends the loop when nothing is in flight and nothing more can be handed out. */
static void maybe_stop(runner *r) {
        if (r->tasks)
                return;
        if (!items_left(r) || r->interrupted || r->exit_code >= 0 || all_gone(r))
                (void) sd_event_exit(r->event, 0);
}

static void dispatch(runner *r) {
        uint64_t now = now_monotonic_usec();
        size_t i;
        instance *in;
        while (!r->interrupted && r->exit_code < 0 && (in = pick_instance(r, now)) &&
               next_item(r, &i))
                start_task(r, in, i);
        maybe_stop(r);
}

/* ---- the daemons' signals ---- */

static task *find_task(runner *r, sd_bus_message *m, const char *path) {
        const char *sender = sd_bus_message_get_sender(m);
        for (task *t = r->tasks; t && sender && path; t = t->next)
                if (t->job && strcmp(t->job, path) == 0 && strcmp(t->sender, sender) == 0)
                        return t;
        return NULL;
}

static int on_completed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        task *t = find_task(userdata, m, sd_bus_message_get_path(m));
        int ok;
        const char *msg;
        if (t && sd_bus_message_read(m, "bs", &ok, &msg) >= 0) {
                t->completed_ok = ok;
                free(t->message);
                t->message = strdup(msg);
        }
        return 0;
}

static void task_done(task *t) {
        runner *r = t->run;
        int e = ctl_out_commit(&t->out);
        if (e < 0) {
                _cleanup_free_ char *why = sentence("Cannot move the result into place as %s: "
                                                    "%s.", t->out.final, strerror(-e));
                task_fail(t, why);
                return;
        }
        record(r, t->item, BATCH_DONE, NULL, t->inst, read_parts(t->report_fd),
               (now_monotonic_usec() - t->start_usec) / 1e6);
        task_free(t);
}

/* JobRemoved follows Completed: the job has ended. */
static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        runner *r = userdata;
        uint32_t id;
        const char *path, *result;
        if (sd_bus_message_read(m, "uos", &id, &path, &result) < 0)
                return 0;
        task *t = find_task(r, m, path);
        if (!t)
                return 0;
        if (strcmp(result, "done") == 0 && t->completed_ok)
                task_done(t);
        else if (r->interrupted && strcmp(result, "cancelled") == 0)
                task_fail(t, "Cancelled (interrupted); nothing was written.");
        else {
                bool cancelled = strcmp(result, "cancelled") == 0;
                _cleanup_free_ char *s = ctl_job_sentence(r->list.items[t->item].path, t->job,
                                                          cancelled ? "was cancelled" : "failed",
                                                          t->message);
                task_fail(t, s);
        }
        dispatch(r);
        return 0;
}

/* An instance left the bus (or came back): its jobs in flight are lost. */
static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        runner *r = userdata;
        const char *name, *old_owner, *new_owner;
        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        for (size_t i = 0; i < r->n_inst; i++)
                if (strcmp(r->inst[i].name, name) == 0)
                        r->inst[i].gone = !*new_owner;
        for (task *t = r->tasks, *next; t; t = next) {
                next = t->next;
                if (*old_owner && t->sender && strcmp(t->sender, old_owner) == 0) {
                        _cleanup_free_ char *s = sentence("p3samd (%s) left the bus before "
                                                          "the job ended.", name);
                        task_fail(t, s);
                }
        }
        dispatch(r);
        return 0;
}

/* Matched without a sender: instances share object paths, so find_task() tells them apart by
 * the unique name that answered the call. */
static int subscribe(runner *r) {
        char rule[512];
        int e = sd_bus_match_signal(r->bus, NULL, NULL, CTL_BUS_PATH, CTL_BUS_IFACE, "JobRemoved",
                                    on_job_removed, r);
        if (e >= 0)
                e = sd_bus_match_signal(r->bus, NULL, NULL, NULL, CTL_JOB_IFACE, "Completed",
                                        on_completed, r);
        for (size_t i = 0; e >= 0 && i < r->n_inst; i++) {
                snprintf(rule, sizeof(rule),
                         "type='signal',sender='org.freedesktop.DBus',"
                         "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='%s'",
                         r->inst[i].name);
                e = sd_bus_add_match(r->bus, NULL, rule, on_owner_changed, r);
        }
        return e;
}

/* ---- Ctrl-C, the timer ---- */

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        runner *r = userdata;
        size_t n = 0;
        ctl_progress_clear(&r->bar);
        if (r->interrupted) {
                /* twice: leave now; the daemons see the connection go and cancel the jobs */
                (void) sd_event_exit(r->event, 0);
                return 0;
        }
        r->interrupted = true;
        for (task *t = r->tasks; t; t = t->next, n++)
                send_cancel(t); /* those not answered yet: once they are (on_reply) */
        if (n)
                fprintf(stderr, "Cancelling %zu job%s (press Ctrl-C again to leave without "
                                "waiting)...\n", n, n == 1 ? "" : "s");
        maybe_stop(r);
        return 0;
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        runner *r = userdata;
        if (r->bar.tty && !r->interrupted)
                ctl_progress_tick(&r->bar);
        dispatch(r); /* a queue that was full may have room again */
        return sd_event_source_set_time(s, usec + TICK_USEC);
}

/* As p3samctl segment with one mesh: Ctrl-C, SIGTERM and a hangup that is not ignored
 * cancel; blocked before the first temporary file exists. */
static int setup_events(runner *r) {
        static const int signals[] = { SIGINT, SIGTERM, SIGHUP };
        struct sigaction old;
        sigset_t set;
        sigemptyset(&set);
        for (size_t i = 0; i < ELEMENTSOF(signals); i++)
                if (signals[i] != SIGHUP || sigaction(SIGHUP, NULL, &old) < 0 ||
                    old.sa_handler != SIG_IGN)
                        sigaddset(&set, signals[i]);
        sigprocmask(SIG_BLOCK, &set, NULL);
        int e = sd_event_new(&r->event);
        for (size_t i = 0; e >= 0 && i < ELEMENTSOF(signals); i++)
                if (sigismember(&set, signals[i]) == 1)
                        e = sd_event_add_signal(r->event, NULL, signals[i], on_signal, r);
        if (e >= 0)
                e = sd_event_add_time_relative(r->event, NULL, CLOCK_MONOTONIC, TICK_USEC, 0,
                                               on_tick, r);
        if (e >= 0)
                e = sd_bus_attach_event(r->bus, r->event, SD_EVENT_PRIORITY_NORMAL);
        return e;
}

/* ---- the instances ---- */

static int add_instance(runner *r, const char *name) {
        instance *v = reallocarray(r->inst, r->n_inst + 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        r->inst = v;
        v[r->n_inst] = (instance) { .name = strdup(name) };
        return v[r->n_inst++].name ? 0 : -ENOMEM;
}

/* org.p3sam.Segmenter1 or org.p3sam.Segmenter1.gpuN. */
static bool is_instance_name(const char *name) {
        static const char gpu[] = CTL_BUS_IFACE ".gpu";
        if (strcmp(name, CTL_BUS_IFACE) == 0)
                return true;
        if (strncmp(name, gpu, strlen(gpu)) != 0)
                return false;
        name += strlen(gpu);
        return *name && strspn(name, "0123456789") == strlen(name);
}

static int compare_names(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Every instance on the bus now (ListNames), one name per daemon (GetNameOwner). */
static int find_instances(runner *r) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        char **names = NULL;
        int err = sd_bus_call_method(r->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "ListNames", &e, &reply, NULL);
        if (err >= 0)
                err = sd_bus_message_read_strv(reply, &names);
        if (err < 0)
                return ctl_bus_fail(&e, err, "list the names on the bus");
        size_t n = 0;
        for (size_t i = 0; names[i]; i++)
                if (is_instance_name(names[i]))
                        names[n++] = names[i];
                else
                        free(names[i]);
        names[n] = NULL;
        qsort(names, n, sizeof(*names), compare_names);
        _cleanup_free_ char **owners = calloc(n + 1, sizeof(*owners));
        for (size_t i = 0; owners && i < n; i++) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *o = NULL;
                const char *owner = NULL;
                bool seen = false;
                if (sd_bus_call_method(r->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                       "org.freedesktop.DBus", "GetNameOwner", NULL, &o, "s",
                                       names[i]) < 0 ||
                    sd_bus_message_read(o, "s", &owner) < 0)
                        continue; /* gone meanwhile */
                for (size_t k = 0; k < i; k++)
                        seen |= owners[k] && strcmp(owners[k], owner) == 0;
                owners[i] = strdup(owner);
                if (!seen && add_instance(r, names[i]) < 0)
                        break;
        }
        for (size_t i = 0; i < n; i++) {
                free(names[i]);
                free(owners ? owners[i] : NULL);
        }
        free(names);
        if (r->n_inst == 0)
                return ctl_fail(CTL_EXIT_NO_DAEMON,
                                "No p3samd instance is running on the %s bus (%s or %s.gpuN).",
                                ctl_args.user_bus ? "user" : "system", CTL_BUS_IFACE,
                                CTL_BUS_IFACE);
        return -1;
}

/* --instances: all, or GPU numbers; else the one daemon that --instance names. */
static int set_instances(runner *r) {
        const char *spec = r->args->instances;
        if (!spec)
                return add_instance(r, ctl_bus_name()) < 0
                               ? ctl_fail(CTL_EXIT_FAILURE, "Out of memory.") : -1;
        if (strcmp(spec, "all") == 0)
                return find_instances(r);
        _cleanup_free_ char *copy = strdup(spec);
        char *save = NULL, name[64];
        for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok;
             tok = strtok_r(NULL, ",", &save)) {
                snprintf(name, sizeof(name), CTL_BUS_IFACE ".gpu%d", atoi(tok));
                if (add_instance(r, name) < 0)
                        return ctl_fail(CTL_EXIT_FAILURE, "Out of memory.");
        }
        return copy ? -1 : ctl_fail(CTL_EXIT_FAILURE, "Out of memory.");
}

/* ---- the list ---- */

static int check_usage(const seg_args *a) {
        if (a->output || a->report || a->no_wait)
                return ctl_fail(CTL_EXIT_USAGE, "%s names one mesh's output; with many meshes "
                                                "use --output-dir (and --summary).",
                                a->output ? "-o" : a->report ? "--json" : "--no-wait");
        /* one output per mesh, named after it: a set of names per mesh is not worth it */
        if (a->upstream_files || a->n_formats > 1)
                return ctl_fail(CTL_EXIT_USAGE, "%s names several outputs of one mesh; with "
                                                "many meshes each gets one output, in one "
                                                "--format (glb, ply, json or png).",
                                a->upstream_files ? "--upstream-files" : "A second --format");
        if (a->format && strcmp(a->format, "glb") != 0 && strcmp(a->format, "ply") != 0 &&
            strcmp(a->format, "json") != 0 && strcmp(a->format, "png") != 0)
                return ctl_fail(CTL_EXIT_USAGE, "With many meshes --format takes glb, ply, json "
                                                "or png (NAME.parts.FORMAT), not \"%s\".",
                                a->format);
        if (a->n_meshes == 0 && !a->from)
                return ctl_fail(CTL_EXIT_USAGE, "Name the meshes: p3samctl segment MESH... "
                                                "(files or directories), or --from LIST.");
        if (a->instances && ctl_args.instance >= 0)
                return ctl_fail(CTL_EXIT_USAGE, "Give --instance N or --instances, not both.");
        if (a->shard && a->shard_count)
                return ctl_fail(CTL_EXIT_USAGE, "--shard I/N already says the count; drop "
                                                "--shard-count.");
        return -1;
}

static int read_from(runner *r) {
        const char *from = r->args->from;
        _cleanup_free_ char *why = NULL;
        FILE *f = strcmp(from, "-") == 0 ? stdin : fopen(from, "re");
        if (!f)
                return ctl_fail(CTL_EXIT_USAGE, "Cannot read the list %s: %s.", from,
                                strerror(errno));
        int e = batch_add_list(&r->list, f, &why);
        if (f != stdin)
                fclose(f);
        if (e < 0)
                return ctl_fail(CTL_EXIT_FAILURE, "%s", why ?: "Out of memory.");
        return -1;
}

static const char *getenv_const(const char *name) {
        return getenv(name);
}

/* The paths, directories and list, sorted, each with its output, then this shard of it. */
static int build_list(runner *r) {
        const seg_args *a = r->args;
        for (int i = 0; i < a->n_meshes; i++) {
                _cleanup_free_ char *why = NULL;
                int e = batch_add_path(&r->list, a->meshes[i], true, &why);
                if (e == -ENOENT || e == -ENOTDIR)
                        return ctl_fail(CTL_EXIT_USAGE, "Cannot find %s: %s.", a->meshes[i],
                                        strerror(-e));
                if (e < 0)
                        return ctl_fail(CTL_EXIT_FAILURE, "%s", why ?: "Out of memory.");
        }
        int code = a->from ? read_from(r) : -1;
        if (code >= 0)
                return code;
        batch_sort_unique(&r->list);
        if (batch_map_outputs(&r->list, a->output_dir, r->format) < 0)
                return ctl_fail(CTL_EXIT_FAILURE, "Out of memory.");
        _cleanup_free_ char *why = NULL;
        if (a->shard)
                (void) batch_shard_parse(a->shard, &r->shard); /* checked by parse_args() */
        else if (batch_shard_from_env(getenv_const, a->shard_count, &r->shard, &why) < 0)
                return ctl_fail(CTL_EXIT_USAGE, "%s", why ?: "Out of memory.");
        batch_shard_apply(&r->list, &r->shard);
        return -1;
}

/* Meshes that fail before any daemon (unreadable, a shared output) and those whose output is
 * newer than them; what is left is pending. */
static void sort_out(runner *r) {
        for (size_t i = 0; i < r->list.n; i++) {
                const batch_item *it = &r->list.items[i];
                struct stat mesh, out;
                if (it->error)
                        record(r, i, BATCH_FAILED, it->error, NULL, -1, 0);
                else if (!r->args->force && stat(it->path, &mesh) == 0 &&
                         stat(it->output, &out) == 0 && batch_up_to_date(&mesh, &out))
                        record(r, i, BATCH_SKIPPED, NULL, NULL, -1, 0);
                else
                        r->pending[i] = true;
        }
}

static int feed(runner *r) {
        int e = ctl_bus_open(&r->bus);
        if (e < 0)
                return ctl_bus_fail(NULL, e, "connect to the bus");
        (void) sd_bus_set_allow_interactive_authorization(r->bus, isatty(STDIN_FILENO));
        int code = set_instances(r);
        if (code >= 0)
                return code;
        e = subscribe(r);
        if (e >= 0)
                e = setup_events(r);
        if (e < 0)
                return ctl_bus_fail(NULL, e, "segment");
        draw_bar(r); /* "0/N", not the single job's "queued" */
        dispatch(r);
        e = sd_event_loop(r->event);
        if (e < 0)
                return ctl_bus_fail(NULL, e, "segment");
        if (r->exit_code < 0 && !r->interrupted && items_left(r) && all_gone(r)) {
                ctl_progress_clear(&r->bar);
                r->exit_code = ctl_bus_fail(&r->gone_error, -ENOENT, "segment");
        }
        return -1;
}

static void print_summary(runner *r) {
        size_t n = r->list.n, left = n - n_finished(r);
        ctl_progress_clear(&r->bar);
        printf("%zu mesh%s: %zu done, %zu skipped, %zu failed", n, n == 1 ? "" : "es", r->n_done,
               r->n_skipped, r->n_failed);
        if (left)
                printf(", %zu not segmented", left);
        printf(", %.1fs", (now_monotonic_usec() - r->start_usec) / 1e6);
        if (r->shard.count)
                printf(" (shard %" PRIu64 "/%" PRIu64 " from %s)", r->shard.index, r->shard.count,
                       r->shard.source);
        printf("\n");
        fflush(stdout);
}

static void runner_done(runner *r) {
        while (r->tasks)
                task_free(r->tasks);
        for (size_t i = 0; i < r->n_inst; i++)
                free(r->inst[i].name);
        free(r->inst);
        free(r->pending);
        free(r->retry);
        batch_list_free(&r->list);
        if (r->summary)
                fclose(r->summary);
        if (r->bus)
                (void) sd_bus_detach_event(r->bus);
        sd_bus_flush_close_unref(r->bus);
        sd_event_unref(r->event);
        sd_bus_error_free(&r->gone_error);
}

static int run_batch(runner *r) {
        int code = build_list(r);
        if (code >= 0)
                return code;
        r->pending = calloc(r->list.n ?: 1, sizeof(*r->pending));
        r->retry = calloc(r->list.n ?: 1, sizeof(*r->retry));
        if (!r->pending || !r->retry)
                return ctl_fail(CTL_EXIT_FAILURE, "Out of memory.");
        if (r->args->summary && !(r->summary = fopen(r->args->summary, "we")))
                return ctl_fail(CTL_EXIT_FAILURE, "Cannot create the summary %s: %s.",
                                r->args->summary, strerror(errno));
        sort_out(r);
        if (r->n_skipped)
                printf("%zu mesh%s up to date (--force redoes them).\n", r->n_skipped,
                       r->n_skipped == 1 ? " is" : "es are");
        if (items_left(r) && (code = feed(r)) >= 0)
                return code;
        print_summary(r);
        if (r->exit_code >= 0)
                return r->exit_code;
        if (r->interrupted)
                return CTL_EXIT_CANCELLED;
        return r->n_failed || n_finished(r) < r->list.n ? CTL_EXIT_FAILURE : CTL_EXIT_OK;
}

int ctl_batch_run(const seg_args *a) {
        runner r = { .args = a, .format = a->format ?: "glb", .exit_code = -1,
                     .gone_error = SD_BUS_ERROR_NULL, .start_usec = now_monotonic_usec() };
        ctl_progress_init(&r.bar);
        int code = check_usage(a);
        if (code < 0)
                code = run_batch(&r);
        runner_done(&r);
        return code;
}
