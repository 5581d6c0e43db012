/* SPDX-License-Identifier: MIT */
/* A small D-Bus client of p3samd for the daemon tests (busctl 252 cannot pass descriptors):
 *   daemon-client segment MESH OUT [FORMAT] [--points N] [--prompts K] [--report FILE]
 *                                  [--no-wait] [--disconnect] [--detach] [--mesh-format F]
 *                                  [--report-twice] [--mesh-o-path] [--mesh-as-output]
 *                                  [--precision P] [--mesh-nonblock] [--mesh-wronly]
 *                                  [--mesh-socket]
 *   daemon-client predict MESH OUT.json X,Y,Z [X,Y,Z ...] [--points N]
 *   daemon-client watch [SECONDS]
 *   daemon-client load N MESH OUTPREFIX [--points N] [--prompts K]
 * --report-twice passes the "report" option twice, --mesh-o-path opens the mesh with O_PATH,
 * --mesh-as-output passes the mesh's own descriptor as the output too (hostile callers);
 * --mesh-nonblock opens the mesh with O_NONBLOCK (a FIFO without a writer), --mesh-wronly
 * write-only, --mesh-socket passes one end of a socketpair instead of MESH.
 * watch prints every signal of p3samd it receives, one line each, until SECONDS pass or
 * SIGTERM: "changed PATH NAME=VALUE ..." for PropertiesChanged (values of type s, b, t, u, d),
 * "signal PATH MEMBER" for the others; "watching" once the matches are in place.
 * load submits N Segment jobs one after another on one connection (the next once the previous
 * is refused or completed), watching its own jobs' Completed and JobRemoved signals, then
 * lingers 1 s for late duplicates; one line per submission: "refused ERROR-NAME" or
 * "job PATH done|failed COMPLETED-SIGNALS JOBREMOVED-SIGNALS LATENCY-MSEC" (submit to
 * Completed), and "stray N" for Completed signals of paths it never submitted.
 * Connects like p3samd (the system bus, DBUS_SYSTEM_BUS_ADDRESS honoured). Prints the job path,
 * then waits for its Completed signal and prints "done", "failed: MSG" or "cancelled: MSG" and
 * how many progress updates it saw. Exit: 0 done, 1 failed, 3 cancelled, 4 call refused
 * (the D-Bus error name and message are printed), 2 usage. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

typedef struct state {
        const char *job;
        int progress_updates;
        int done; /* 0 waiting, 1 success, 2 failure */
        char message[512];
        char result[32];
        char result_prop[32]; /* the job's Result, as its PropertiesChanged said it */
        bool result_before_completed; /* Result was set before Completed arrived */
} state;

static int on_completed(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        state *s = userdata;
        int ok;
        const char *msg;
        if (strcmp(sd_bus_message_get_path(m), s->job) != 0)
                return 0;
        if (sd_bus_message_read(m, "bs", &ok, &msg) < 0)
                return 0;
        s->done = ok ? 1 : 2;
        snprintf(s->message, sizeof(s->message), "%s", msg);
        return 0;
}

static int on_removed(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        state *s = userdata;
        uint32_t id;
        const char *path, *result;
        if (sd_bus_message_read(m, "uos", &id, &path, &result) >= 0 && strcmp(path, s->job) == 0)
                snprintf(s->result, sizeof(s->result), "%s", result);
        return 0;
}

static int on_changed(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        state *s = userdata;
        const char *iface, *name, *value;
        if (!s->job || strcmp(sd_bus_message_get_path(m), s->job) != 0)
                return 0;
        s->progress_updates++;
        if (sd_bus_message_read(m, "s", &iface) < 0 ||
            sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
                return 0;
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                if (sd_bus_message_read(m, "s", &name) < 0)
                        return 0;
                if (strcmp(name, "Result") == 0 && sd_bus_message_read(m, "v", "s", &value) >= 0) {
                        snprintf(s->result_prop, sizeof(s->result_prop), "%s", value);
                        s->result_before_completed = !s->done && *value;
                } else if (sd_bus_message_skip(m, "v") < 0)
                        return 0;
                if (sd_bus_message_exit_container(m) < 0)
                        return 0;
        }
        return 0;
}

static const char *precision; /* option "precision", NULL: not given */

static int append_options(sd_bus_message *call, long points, long prompts, int report_fd,
                          bool detach, bool report_twice) {
        int r = sd_bus_message_open_container(call, 'a', "{sv}");
        if (r >= 0 && precision)
                r = sd_bus_message_append(call, "{sv}", "precision", "s", precision);
        if (r >= 0 && points > 0)
                r = sd_bus_message_append(call, "{sv}", "points", "u", (uint32_t) points);
        if (r >= 0 && prompts > 0)
                r = sd_bus_message_append(call, "{sv}", "prompts", "u", (uint32_t) prompts);
        if (r >= 0 && report_fd >= 0)
                r = sd_bus_message_append(call, "{sv}", "report", "h", report_fd);
        if (r >= 0 && report_fd >= 0 && report_twice)
                r = sd_bus_message_append(call, "{sv}", "report", "h", report_fd);
        if (r >= 0 && detach)
                r = sd_bus_message_append(call, "{sv}", "detach", "b", 1);
        if (r >= 0)
                r = sd_bus_message_close_container(call);
        return r;
}

/* One value of a PropertiesChanged dictionary, printed as NAME=VALUE. */
static int print_value(sd_bus_message *m, const char *name) {
        const char *contents;
        char type;
        int r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'v', contents);
        if (r < 0)
                return r;
        const char *str;
        uint64_t t;
        uint32_t u;
        int b;
        double d;
        switch (contents[0]) {
        case 's': r = sd_bus_message_read(m, "s", &str); if (r >= 0) printf(" %s=%s", name, str); break;
        case 't': r = sd_bus_message_read(m, "t", &t); if (r >= 0) printf(" %s=%llu", name, (unsigned long long) t); break;
        case 'u': r = sd_bus_message_read(m, "u", &u); if (r >= 0) printf(" %s=%u", name, u); break;
        case 'b': r = sd_bus_message_read(m, "b", &b); if (r >= 0) printf(" %s=%s", name, b ? "true" : "false"); break;
        case 'd': r = sd_bus_message_read(m, "d", &d); if (r >= 0) printf(" %s=%g", name, d); break;
        default: r = sd_bus_message_skip(m, contents); if (r >= 0) printf(" %s=?", name); break;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static int on_any_signal(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        const char *path = sd_bus_message_get_path(m), *member = sd_bus_message_get_member(m);
        if (!sd_bus_message_is_signal(m, "org.freedesktop.DBus.Properties", "PropertiesChanged")) {
                printf("signal %s %s\n", path, member);
                fflush(stdout);
                return 0;
        }
        const char *iface, *name;
        int r = sd_bus_message_read(m, "s", &iface);
        if (r >= 0)
                r = sd_bus_message_enter_container(m, 'a', "{sv}");
        printf("changed %s", path);
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &name);
                if (r >= 0)
                        r = print_value(m, name);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        printf("\n");
        fflush(stdout);
        return 0;
}

static volatile sig_atomic_t watch_stop;
static void on_term(int sig) {
        watch_stop = 1;
}

/* Every signal p3samd sends that this connection receives: broadcasts, and unicasts to it. */
static int watch(double seconds) {
        __attribute__((cleanup(sd_bus_flush_close_unrefp))) sd_bus *bus = NULL;
        int r = sd_bus_open_system(&bus);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, "org.p3sam.Segmenter1", NULL, NULL, NULL,
                                        on_any_signal, NULL);
        if (r < 0) {
                fprintf(stderr, "watch: %s\n", strerror(-r));
                return 5;
        }
        signal(SIGTERM, on_term);
        printf("watching\n");
        fflush(stdout);
        struct timespec t0, now;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (!watch_stop) {
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (now.tv_sec - t0.tv_sec + (now.tv_nsec - t0.tv_nsec) * 1e-9 > seconds)
                        break;
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        return 5;
                if (r == 0)
                        sd_bus_wait(bus, 100000);
        }
        return 0;
}

/* ---- load: one client of many, its submissions and the signals of its own jobs ---- */

typedef struct load_job {
        char path[128];
        double submitted, completed; /* seconds, CLOCK_MONOTONIC */
        int n_completed, n_removed;
        bool success;
} load_job;

typedef struct load_state {
        load_job *jobs;
        int n; /* submitted so far */
        int stray;
} load_state;

static double now_s(void) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return t.tv_sec + t.tv_nsec * 1e-9;
}

static load_job *load_find(load_state *ls, const char *path) {
        for (int i = 0; i < ls->n; i++)
                if (strcmp(ls->jobs[i].path, path) == 0)
                        return &ls->jobs[i];
        return NULL;
}

static int load_on_completed(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        load_state *ls = userdata;
        load_job *j = load_find(ls, sd_bus_message_get_path(m));
        int ok = 0;
        const char *msg;
        if (!j) {
                ls->stray++;
                return 0;
        }
        if (j->n_completed++ == 0) {
                j->completed = now_s();
                j->success = sd_bus_message_read(m, "bs", &ok, &msg) >= 0 && ok;
        }
        return 0;
}

static int load_on_removed(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        load_state *ls = userdata;
        uint32_t id;
        const char *path, *result;
        if (sd_bus_message_read(m, "uos", &id, &path, &result) < 0)
                return 0;
        load_job *j = load_find(ls, path);
        if (j)
                j->n_removed++;
        return 0;
}

static int load_process(sd_bus *bus, uint64_t usec) {
        int r = sd_bus_process(bus, NULL);
        if (r == 0)
                r = sd_bus_wait(bus, usec);
        return r;
}

/* One Segment call; returns 1 admitted (path recorded), 0 refused (line printed), <0 error. */
static int load_submit(sd_bus *bus, load_state *ls, const char *mesh, const char *out,
                       long points, long prompts) {
        __attribute__((cleanup(sd_bus_message_unrefp))) sd_bus_message *call = NULL;
        __attribute__((cleanup(sd_bus_message_unrefp))) sd_bus_message *reply = NULL;
        __attribute__((cleanup(sd_bus_error_free))) sd_bus_error e = SD_BUS_ERROR_NULL;
        int mesh_fd = open(mesh, O_RDONLY | O_CLOEXEC);
        int out_fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int r = mesh_fd < 0 || out_fd < 0 ? -errno : 0;
        if (r >= 0)
                r = sd_bus_message_new_method_call(bus, &call, "org.p3sam.Segmenter1",
                                                   "/org/p3sam/Segmenter1",
                                                   "org.p3sam.Segmenter1", "Segment");
        if (r >= 0)
                r = sd_bus_message_append(call, "hshs", mesh_fd, "", out_fd, "glb");
        if (r >= 0)
                r = append_options(call, points, prompts, -1, false, false);
        load_job *j = &ls->jobs[ls->n];
        j->submitted = now_s();
        if (r >= 0)
                r = sd_bus_call(bus, call, 120 * 1000000ULL, &e, &reply);
        if (mesh_fd >= 0)
                close(mesh_fd);
        if (out_fd >= 0)
                close(out_fd);
        if (r < 0 && e.name) {
                printf("refused %s\n", e.name);
                return 0;
        }
        const char *path;
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return r;
        snprintf(j->path, sizeof(j->path), "%s", path);
        ls->n++;
        return 1;
}

static int load(int argc, char **argv) {
        if (argc < 5)
                return 2;
        int n = atoi(argv[2]);
        const char *mesh = argv[3], *prefix = argv[4];
        long points = 0, prompts = 0;
        for (int i = 5; i + 1 < argc; i += 2)
                if (strcmp(argv[i], "--points") == 0)
                        points = atol(argv[i + 1]);
                else if (strcmp(argv[i], "--prompts") == 0)
                        prompts = atol(argv[i + 1]);
        __attribute__((cleanup(sd_bus_flush_close_unrefp))) sd_bus *bus = NULL;
        load_state ls = { .jobs = calloc(n > 0 ? n : 1, sizeof(load_job)) };
        int r = ls.jobs ? sd_bus_open_system(&bus) : -ENOMEM;
        /* Subscribed before the first call: a job's signals cannot come before its path. */
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, "org.p3sam.Segmenter1", NULL,
                                        "org.p3sam.Segmenter1.Job", "Completed",
                                        load_on_completed, &ls);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, "org.p3sam.Segmenter1",
                                        "/org/p3sam/Segmenter1", "org.p3sam.Segmenter1",
                                        "JobRemoved", load_on_removed, &ls);
        for (int i = 0; r >= 0 && i < n; i++) {
                char out[4096];
                snprintf(out, sizeof(out), "%s-%d.glb", prefix, i);
                r = load_submit(bus, &ls, mesh, out, points, prompts);
                if (r <= 0)
                        continue;
                load_job *j = &ls.jobs[ls.n - 1];
                while (r >= 0 && (j->n_completed == 0 || j->n_removed == 0) &&
                       now_s() - j->submitted < 600)
                        r = load_process(bus, 100000);
        }
        for (double t0 = now_s(); r >= 0 && now_s() - t0 < 1;)
                r = load_process(bus, 100000);
        if (r < 0) {
                fprintf(stderr, "load: %s\n", strerror(-r));
                free(ls.jobs);
                return 5;
        }
        for (int i = 0; i < ls.n; i++) {
                load_job *j = &ls.jobs[i];
                printf("job %s %s %d %d %.1f\n", j->path, j->success ? "done" : "failed",
                       j->n_completed, j->n_removed,
                       j->n_completed ? (j->completed - j->submitted) * 1e3 : -1.0);
        }
        printf("stray %d\n", ls.stray);
        free(ls.jobs);
        return 0;
}

int main(int argc, char **argv) {
        if (argc >= 2 && strcmp(argv[1], "load") == 0)
                return load(argc, argv);
        if (argc >= 2 && strcmp(argv[1], "watch") == 0)
                return watch(argc >= 3 ? atof(argv[2]) : 60);
        if (argc < 4)
                return 2;
        bool predict = strcmp(argv[1], "predict") == 0, no_wait = false, disconnect = false,
             detach = false, report_twice = false, mesh_o_path = false, mesh_as_output = false,
             mesh_nonblock = false, mesh_wronly = false, mesh_socket = false;
        const char *mesh = argv[2], *out = argv[3], *format = "glb", *report = NULL,
                   *mesh_format = "";
        long points = 0, prompts = 0;
        double pts[64 * 3];
        int k = 0;
        for (int i = 4; i < argc; i++) {
                if (strcmp(argv[i], "--points") == 0 && i + 1 < argc)
                        points = atol(argv[++i]);
                else if (strcmp(argv[i], "--prompts") == 0 && i + 1 < argc)
                        prompts = atol(argv[++i]);
                else if (strcmp(argv[i], "--report") == 0 && i + 1 < argc)
                        report = argv[++i];
                else if (strcmp(argv[i], "--mesh-format") == 0 && i + 1 < argc)
                        mesh_format = argv[++i];
                else if (strcmp(argv[i], "--no-wait") == 0)
                        no_wait = true;
                else if (strcmp(argv[i], "--disconnect") == 0)
                        disconnect = true;
                else if (strcmp(argv[i], "--detach") == 0)
                        detach = no_wait = true;
                else if (strcmp(argv[i], "--precision") == 0 && i + 1 < argc)
                        precision = argv[++i];
                else if (strcmp(argv[i], "--report-twice") == 0)
                        report_twice = true;
                else if (strcmp(argv[i], "--mesh-o-path") == 0)
                        mesh_o_path = true;
                else if (strcmp(argv[i], "--mesh-as-output") == 0)
                        mesh_as_output = true;
                else if (strcmp(argv[i], "--mesh-nonblock") == 0)
                        mesh_nonblock = true;
                else if (strcmp(argv[i], "--mesh-wronly") == 0)
                        mesh_wronly = true;
                else if (strcmp(argv[i], "--mesh-socket") == 0)
                        mesh_socket = true;
                else if (predict && k < 64 &&
                         sscanf(argv[i], "%lf,%lf,%lf", &pts[3 * k], &pts[3 * k + 1],
                                &pts[3 * k + 2]) == 3)
                        k++;
                else
                        format = argv[i];
        }
        int mesh_fd = open(mesh, (mesh_as_output ? O_RDWR : mesh_wronly ? O_WRONLY : O_RDONLY) |
                                         O_CLOEXEC | (mesh_o_path ? O_PATH : 0) |
                                         (mesh_nonblock ? O_NONBLOCK : 0));
        int sv[2];
        if (mesh_socket)
                mesh_fd = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ? -1
                                                                                     : sv[0];
        int out_fd = mesh_as_output ? mesh_fd
                                    : open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int report_fd = report ? open(report, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
        if (mesh_fd < 0 || out_fd < 0) {
                perror("open");
                return 2;
        }
        __attribute__((cleanup(sd_bus_flush_close_unrefp))) sd_bus *bus = NULL;
        int r = sd_bus_open_system(&bus);
        if (r < 0) {
                fprintf(stderr, "connect: %s\n", strerror(-r));
                return 5;
        }
        state s = {};
        __attribute__((cleanup(sd_bus_message_unrefp))) sd_bus_message *call = NULL;
        __attribute__((cleanup(sd_bus_message_unrefp))) sd_bus_message *reply = NULL;
        __attribute__((cleanup(sd_bus_error_free))) sd_bus_error e = SD_BUS_ERROR_NULL;
        r = sd_bus_message_new_method_call(bus, &call, "org.p3sam.Segmenter1",
                                           "/org/p3sam/Segmenter1", "org.p3sam.Segmenter1",
                                           predict ? "Predict" : "Segment");
        if (r >= 0)
                r = sd_bus_message_append(call, "hs", mesh_fd, mesh_format);
        if (r >= 0 && predict) {
                r = sd_bus_message_open_container(call, 'a', "(ddd)");
                for (int i = 0; r >= 0 && i < k; i++)
                        r = sd_bus_message_append(call, "(ddd)", pts[3 * i], pts[3 * i + 1],
                                                  pts[3 * i + 2]);
                if (r >= 0)
                        r = sd_bus_message_close_container(call);
        }
        if (r >= 0)
                r = sd_bus_message_append(call, "h", out_fd);
        if (r >= 0 && !predict)
                r = sd_bus_message_append(call, "s", format);
        if (r >= 0)
                r = append_options(call, points, prompts, report_fd, detach, report_twice);
        /* Subscribe before the call so that no signal can be missed. */
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, "org.p3sam.Segmenter1", NULL,
                                        "org.p3sam.Segmenter1.Job", "Completed", on_completed, &s);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, "org.p3sam.Segmenter1", "/org/p3sam/Segmenter1",
                                        "org.p3sam.Segmenter1", "JobRemoved", on_removed, &s);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, "org.p3sam.Segmenter1", NULL,
                                        "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                        on_changed, &s);
        if (r < 0) {
                fprintf(stderr, "message: %s\n", strerror(-r));
                return 2;
        }
        r = sd_bus_call(bus, call, 60 * 1000000ULL, &e, &reply);
        if (r < 0) {
                printf("error %s: %s\n", e.name ? e.name : "?", e.message ? e.message : strerror(-r));
                return 4;
        }
        const char *job;
        sd_bus_message_read(reply, "o", &job);
        s.job = strdup(job);
        printf("job %s\n", s.job);
        fflush(stdout);
        if (disconnect || no_wait) {
                free((char *) s.job);
                return 0;
        }
        while (!s.done) {
                r = sd_bus_process(bus, NULL);
                if (r < 0) {
                        fprintf(stderr, "bus: %s\n", strerror(-r));
                        return 5;
                }
                if (r == 0)
                        sd_bus_wait(bus, UINT64_MAX);
        }
        /* JobRemoved follows Completed in the same burst */
        for (int i = 0; i < 20 && !s.result[0]; i++)
                if (sd_bus_process(bus, NULL) == 0)
                        sd_bus_wait(bus, 100000);
        printf("progress-updates %d\n", s.progress_updates);
        printf("result-property %s%s\n", s.result_prop[0] ? s.result_prop : "(none)",
               s.result_before_completed ? " (before Completed)" : "");
        printf("%s%s%s\n", s.result[0] ? s.result : (s.done == 1 ? "done" : "failed"),
               s.message[0] ? ": " : "", s.message);
        free((char *) s.job);
        return s.done == 1 ? 0 : strcmp(s.result, "cancelled") == 0 ? 3 : 1;
}
