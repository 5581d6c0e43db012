/* SPDX-License-Identifier: MIT */
/* bus-uv and bus-polkit against a private dbus-daemon (tests/dbus-test.conf).
 *
 * The main thread is the service: an sd_bus attached to a libuv loop with bus_uv_attach(),
 * serving a small vtable. A client thread, with its own blocking connection, checks what a
 * daemon needs: replies, a slow asynchronous reply that does not hold up a fast one, a flood
 * of pipelined calls, a signal emitted from a loop timer, a reply timeout that only the loop's
 * timer can notice, a client that leaves mid-call. Then authorization: root passes at once;
 * busctl run as nobody passes by group, is refused while no polkit is on the bus, and is then
 * answered by a fake polkit that the test runs itself (the request's wire format, the
 * interactive flag, refusal, challenge, cancellation). Last, the bus daemon is killed: the
 * service must see the disconnect and its loop must end with every handle closed.
 *
 * Skips (77) without dbus-daemon or busctl; the nobody part needs root and setpriv. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <systemd/sd-bus.h>
#include <uv.h>

#include "bus-polkit.h"
#include "bus-util.h"
#include "bus-uv.h"
#include "time-util.h"

#define NAME "org.p3sam.Test1"
#define OBJ "/org/p3sam/Test1"
#define IFACE "org.p3sam.Test1"
#define MISSING_GROUP "p3sam-test-nonexistent"
#define NOBODY 65534
#define MSEC (UINT64_C(1000))
#define SEC (UINT64_C(1000000))

extern char **environ;

static _Atomic pid_t bus_pid = -1;
static char bus_address[512];

/* Kill the private bus: at exit, on failure, and as the last step of the test. */
static void stop_bus(void) {
        pid_t pid = atomic_exchange(&bus_pid, -1);

        if (pid > 0) {
                kill(pid, SIGTERM);
                waitpid(pid, NULL, 0);
        }
}

static _Noreturn void fail(void) {
        stop_bus();
        _exit(EXIT_FAILURE);
}

#define check(expr)                                                                                \
        do {                                                                                       \
                if (!(expr)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr);   \
                        fail();                                                                    \
                }                                                                                  \
        } while (0)

#define check_r(expr)                                                                              \
        do {                                                                                       \
                int _r = (expr);                                                                   \
                if (_r < 0) {                                                                      \
                        fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr,              \
                                strerror(-_r));                                                    \
                        fail();                                                                    \
                }                                                                                  \
        } while (0)

static void note(const char *fmt, ...) _printf_(1, 2);
static void note(const char *fmt, ...) {
        va_list ap;

        fputs("# ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

static bool in_path(const char *name) {
        const char *path = getenv("PATH") ?: "/usr/bin:/bin:/usr/sbin:/sbin";
        char buf[4096];

        for (const char *p = path; *p;) {
                size_t n = strcspn(p, ":");

                snprintf(buf, sizeof(buf), "%.*s/%s", (int) n, p, name);
                if (n > 0 && access(buf, X_OK) == 0)
                        return true;
                p += n + (p[n] == ':');
        }
        return false;
}

/* dbus-daemon as our child; PR_SET_PDEATHSIG takes it down with us even if we crash. */
static void start_bus(const char *config) {
        pid_t parent = getpid(), pid;
        size_t len = 0;
        int p[2];

        check(pipe2(p, O_CLOEXEC) == 0);
        pid = fork();
        check(pid >= 0);
        if (pid == 0) {
                char arg_config[4200], arg_fd[64];
                int fd, null;

                prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != parent)
                        _exit(EXIT_FAILURE);
                fd = fcntl(p[1], F_DUPFD, 3); /* without O_CLOEXEC: dbus-daemon writes here */
                /* Quiet: it warns that it cannot raise its fd limit in a container. */
                null = open("/dev/null", O_WRONLY | O_CLOEXEC);
                if (fd < 0 || null < 0 || dup2(null, STDERR_FILENO) < 0)
                        _exit(EXIT_FAILURE);
                snprintf(arg_config, sizeof(arg_config), "--config-file=%s", config);
                snprintf(arg_fd, sizeof(arg_fd), "--print-address=%d", fd);
                execlp("dbus-daemon", "dbus-daemon", arg_config, arg_fd, "--nofork", (char *) NULL);
                _exit(127);
        }
        atomic_store(&bus_pid, pid);
        close(p[1]);

        while (!memchr(bus_address, '\n', len)) {
                struct pollfd pfd = {.fd = p[0], .events = POLLIN};
                ssize_t k;

                check(len < sizeof(bus_address) - 1);
                check(poll(&pfd, 1, 10000) == 1);
                k = read(p[0], bus_address + len, sizeof(bus_address) - 1 - len);
                if (k <= 0) {
                        fprintf(stderr, "dbus-daemon --config-file=%s printed no address\n",
                                config);
                        fail();
                }
                len += (size_t) k;
        }
        close(p[0]);
        *strchr(bus_address, '\n') = 0;
        note("private bus at %s", bus_address);
}

static sd_bus *connect_bus(void) {
        sd_bus *b = NULL;

        check_r(sd_bus_new(&b));
        check_r(sd_bus_set_address(b, bus_address));
        check_r(sd_bus_set_bus_client(b, 1));
        check_r(sd_bus_start(b));
        return b;
}

/* ---- the service, on the loop thread ---- */

static struct {
        uv_loop_t *loop;
        sd_bus *bus;
        bus_uv *attachment;
        uv_timer_t watchdog;
        bool disconnected;
        unsigned cancelled_cb_calls;
        /* The last sentence a refusal carried: busctl prints only "Access denied" for
         * AccessDenied errors, whatever their message, so the client reads it here. */
        pthread_mutex_t lock;
        char last_denial[1024];
} srv = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Work finished later by a loop timer, holding the call it answers. */
typedef struct later {
        uv_timer_t timer;
        sd_bus_message *call; /* owned */
        char *text;
        void (*fn)(struct later *l);
} later;

static void later_closed(uv_handle_t *h) {
        later *l = h->data;

        sd_bus_message_unref(l->call);
        free(l->text);
        free(l);
}

static void later_fire(uv_timer_t *t) {
        later *l = t->data;

        l->fn(l);
        uv_close((uv_handle_t *) &l->timer, later_closed);
}

static int later_start(sd_bus_message *call, const char *text, uint64_t ms, void (*fn)(later *)) {
        later *l = calloc(1, sizeof(*l));

        if (!l)
                return -ENOMEM;
        l->text = strdup(text);
        if (!l->text) {
                free(l);
                return -ENOMEM;
        }
        l->call = sd_bus_message_ref(call);
        l->fn = fn;
        uv_timer_init(srv.loop, &l->timer);
        l->timer.data = l;
        uv_timer_start(&l->timer, later_fire, ms, 0);
        return 1;
}

static int method_echo(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *s;
        int r;

        r = sd_bus_message_read(m, "s", &s);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "s", s);
}

static void slow_reply(later *l) {
        /* The caller may be gone: the bus daemon drops the reply, we carry on. */
        (void) sd_bus_reply_method_return(l->call, "s", l->text);
}

static int method_slow(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *s;
        int r;

        r = sd_bus_message_read(m, "s", &s);
        if (r < 0)
                return r;
        return later_start(m, s, 1000, slow_reply);
}

/* Emitted from a timer, outside sd_bus_process(): only the prepare step can notice the
 * queued message and get it written. */
static void emit_signal(later *l) {
        check_r(sd_bus_emit_signal(srv.bus, OBJ, IFACE, "Pinged", "s", l->text));
}

static int method_emit(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *s;
        int r;

        r = sd_bus_message_read(m, "s", &s);
        if (r < 0)
                return r;
        r = later_start(m, s, 10, emit_signal);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "");
}

/* Big(size) -> ay: far more than a socket buffer takes at once, so sd-bus keeps the rest in
 * its write queue and the loop must poll for UV_WRITABLE to finish sending. */
static int method_big(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        uint32_t size;
        int r;

        r = sd_bus_message_read(m, "u", &size);
        if (r < 0)
                return r;
        data = malloc(size ? size : 1);
        if (!data)
                return -ENOMEM;
        for (uint32_t i = 0; i < size; i++)
                data[i] = (uint8_t) (i * 7);
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_append_array(reply, 'y', data, size);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        return r;
}

static int method_never(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return 1; /* no reply, ever */
}

typedef struct probe {
        sd_bus_message *call;
        uint64_t start;
} probe;

static int on_probe_reply(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        probe *p = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        (void) sd_bus_reply_method_return(p->call, "st", e ? e->name : "",
                                          now_monotonic_usec() - p->start);
        sd_bus_message_unref(p->call);
        free(p);
        return 0;
}

/* Calls our own Never with a 200 ms timeout: nothing arrives on the socket, so only the
 * timer armed from sd_bus_get_timeout() can end the wait. */
static int method_timeout_probe(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *c = NULL;
        probe *p;
        int r;

        r = sd_bus_message_new_method_call(srv.bus, &c, NAME, OBJ, IFACE, "Never");
        if (r < 0)
                return r;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->call = sd_bus_message_ref(m);
        p->start = now_monotonic_usec();
        r = sd_bus_call_async(srv.bus, NULL, c, on_probe_reply, p, 200 * MSEC);
        if (r < 0) {
                sd_bus_message_unref(p->call);
                free(p);
                return r;
        }
        return 1;
}

static int method_deny_me(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return bus_reply_access_denied(m, "Nobody may, in this test.");
}

static int method_who_am_i(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        uid_t uid;
        int r;

        r = bus_sender_uid(m, &uid);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(m, "u", (uint32_t) uid);
}

typedef struct guard {
        sd_bus_message *call; /* owned */
        bool deciding;        /* inside bus_check_authorization(): the answer came at once */
} guard;

static void on_guard_decided(void *userdata, int result, uid_t uid, const char *why) {
        guard *g = userdata;

        if (result > 0) {
                char answer[1024];

                snprintf(answer, sizeof(answer), "%s: %s", g->deciding ? "sync" : "async", why);
                (void) sd_bus_reply_method_return(g->call, "s", answer);
        } else if (result == 0) {
                pthread_mutex_lock(&srv.lock);
                snprintf(srv.last_denial, sizeof(srv.last_denial), "%s", why);
                pthread_mutex_unlock(&srv.lock);
                (void) bus_reply_access_denied(g->call, why);
        } else
                (void) sd_bus_reply_method_errnof(g->call, result, "%s", why);
        sd_bus_message_unref(g->call);
        free(g);
}

/* Guarded(group, action): "" for no group. */
static int method_guarded(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *group, *action;
        guard *g;
        int r;

        r = sd_bus_message_read(m, "ss", &group, &action);
        if (r < 0)
                return r;
        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g->call = sd_bus_message_ref(m);
        g->deciding = true;
        r = bus_check_authorization(m, action, *group ? group : NULL, false, on_guard_decided, g,
                                    NULL);
        if (r < 0) {
                sd_bus_message_unref(g->call);
                free(g);
                return r;
        }
        if (r == 0) /* pending; on 1, g is gone already */
                g->deciding = false;
        return 1;
}

static void on_cancelled_decided(void *userdata, int result, uid_t uid, const char *why) {
        srv.cancelled_cb_calls++;
}

static void cancel_reply(later *l) {
        (void) sd_bus_reply_method_return(l->call, "u", srv.cancelled_cb_calls);
}

/* Starts a query, cancels it, answers 300 ms later (polkit has replied by then) with how many
 * times the callback ran: 0. */
static int method_guarded_cancel(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *group, *action;
        bus_auth_query *q = NULL;
        int r;

        r = sd_bus_message_read(m, "ss", &group, &action);
        if (r < 0)
                return r;
        r = bus_check_authorization(m, action, *group ? group : NULL, false, on_cancelled_decided,
                                    NULL, &q);
        if (r < 0)
                return r;
        if (r > 0)
                return sd_bus_reply_method_errorf(m, SD_BUS_ERROR_FAILED, "decided at once");
        check(q);
        bus_auth_query_cancel(q);
        return later_start(m, "", 300, cancel_reply);
}

/* UNPRIVILEGED: without it, sd-bus itself refuses callers lacking CAP_SYS_ADMIN on a
 * connection it does not trust (sd_bus_new() does not); authorization is ours to do. */
static const sd_bus_vtable test_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("Echo", "s", "s", method_echo, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Slow", "s", "s", method_slow, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Emit", "s", "", method_emit, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Big", "u", "ay", method_big, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Never", "", "", method_never, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("TimeoutProbe", "", "st", method_timeout_probe, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("DenyMe", "", "", method_deny_me, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("WhoAmI", "", "u", method_who_am_i, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Guarded", "ss", "s", method_guarded, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("GuardedCancel", "ss", "u", method_guarded_cancel,
                      SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL("Pinged", "s", 0),
        SD_BUS_VTABLE_END,
};

static void on_disconnect(bus_uv *b, void *userdata) {
        note("service: disconnected from the bus");
        srv.disconnected = true;
        bus_uv_free(b);
        srv.attachment = NULL;
        uv_close((uv_handle_t *) &srv.watchdog, NULL);
}

static void on_watchdog(uv_timer_t *t) {
        fprintf(stderr, "test timed out\n");
        fail();
}

/* ---- the fake polkit, on its own thread and connection ---- */

static struct {
        pthread_mutex_t lock;
        unsigned calls;
        uint32_t flags;
        char kind[64], subject[64], action[128];
        atomic_bool stop;
        sd_bus *bus;
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool ends_with(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);

        return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int fake_check_authorization(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *kind, *key, *name = "", *action, *cancel_id;
        uint32_t flags;
        int r;

        r = sd_bus_message_enter_container(m, 'r', "sa{sv}");
        if (r >= 0)
                r = sd_bus_message_read(m, "s", &kind);
        if (r >= 0)
                r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                r = sd_bus_message_read(m, "s", &key);
                if (r >= 0)
                        r = strcmp(key, "name") == 0 ? sd_bus_message_read(m, "v", "s", &name)
                                                     : sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r >= 0)
                r = sd_bus_message_read(m, "s", &action);
        if (r >= 0)
                r = sd_bus_message_skip(m, "a{ss}");
        if (r >= 0)
                r = sd_bus_message_read(m, "us", &flags, &cancel_id);
        if (r < 0)
                return r;

        pthread_mutex_lock(&fake.lock);
        fake.calls++;
        fake.flags = flags;
        snprintf(fake.kind, sizeof(fake.kind), "%s", kind);
        snprintf(fake.subject, sizeof(fake.subject), "%s", name);
        snprintf(fake.action, sizeof(fake.action), "%s", action);
        pthread_mutex_unlock(&fake.lock);

        return sd_bus_reply_method_return(m, "(bba{ss})", ends_with(action, ".yes"),
                                          ends_with(action, ".challenge"), 0);
}

static const sd_bus_vtable fake_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("CheckAuthorization", "(sa{sv})sa{ss}us", "(bba{ss})",
                      fake_check_authorization, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

static void *fake_polkit_thread(void *arg) {
        while (!atomic_load(&fake.stop)) {
                int r = sd_bus_process(fake.bus, NULL);

                check_r(r);
                if (r == 0)
                        check_r(sd_bus_wait(fake.bus, 50 * MSEC));
        }
        return NULL;
}

static void fake_polkit_start(pthread_t *thread) {
        fake.bus = connect_bus();
        check_r(sd_bus_add_object_vtable(fake.bus, NULL, "/org/freedesktop/PolicyKit1/Authority",
                                         "org.freedesktop.PolicyKit1.Authority", fake_vtable,
                                         NULL));
        check_r(sd_bus_request_name(fake.bus, "org.freedesktop.PolicyKit1", 0));
        check(pthread_create(thread, NULL, fake_polkit_thread, NULL) == 0);
}

static void fake_polkit_stop(pthread_t thread) {
        atomic_store(&fake.stop, true);
        check(pthread_join(thread, NULL) == 0);
        fake.bus = sd_bus_flush_close_unref(fake.bus);
}

/* ---- the client, on its own thread ---- */

static void client_wait_for(sd_bus *c, const bool *flag, uint64_t timeout) {
        uint64_t end = now_monotonic_usec() + timeout;

        while (!*flag) {
                int r = sd_bus_process(c, NULL);

                check_r(r);
                if (r > 0)
                        continue;
                check(now_monotonic_usec() < end);
                check_r(sd_bus_wait(c, end - now_monotonic_usec()));
        }
}

/* Calls method with one string argument and returns the string reply in buf. */
static void call_s_s(sd_bus *c, const char *method, const char *arg, char *buf, size_t size) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *s;
        int r;

        r = sd_bus_call_method(c, NAME, OBJ, IFACE, method, &e, &reply, "s", arg);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", method, e.message ?: strerror(-r));
        check_r(r);
        check_r(sd_bus_message_read(reply, "s", &s));
        snprintf(buf, size, "%s", s);
}

static void test_echo(sd_bus *c) {
        char buf[64];

        call_s_s(c, "Echo", "hello", buf, sizeof(buf));
        check(strcmp(buf, "hello") == 0);
}

typedef struct slow_state {
        bool done, ok;
} slow_state;

static int on_slow_reply(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        slow_state *st = userdata;
        const char *s;

        st->done = true;
        st->ok = !sd_bus_message_is_method_error(m, NULL) && sd_bus_message_read(m, "s", &s) > 0 &&
                 strcmp(s, "slow") == 0;
        return 0;
}

/* The service answers Echo while its Slow answer waits on a loop timer. */
static void test_interleave(sd_bus *c) {
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        slow_state st = {};
        uint64_t start = now_monotonic_usec(), fast, slow;

        check_r(sd_bus_call_method_async(c, &slot, NAME, OBJ, IFACE, "Slow", on_slow_reply, &st,
                                         "s", "slow"));
        test_echo(c);
        fast = now_monotonic_usec() - start;
        check(!st.done);
        check(fast < 500 * MSEC);
        client_wait_for(c, &st.done, 5 * SEC);
        slow = now_monotonic_usec() - start;
        check(st.ok);
        check(slow >= 950 * MSEC);
        note("interleave: Echo answered after %.1f ms, Slow after %.1f ms", fast / 1e3, slow / 1e3);
}

#define PIPELINED 500
static unsigned pipeline_ok, pipeline_done;
static bool pipeline_all;

static int on_pipelined_reply(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        char want[32];
        const char *s;

        snprintf(want, sizeof(want), "msg-%u", (unsigned) (uintptr_t) userdata);
        if (!sd_bus_message_is_method_error(m, NULL) && sd_bus_message_read(m, "s", &s) > 0 &&
            strcmp(s, want) == 0)
                pipeline_ok++;
        else if (pipeline_done - pipeline_ok < 3)
                note("pipeline: call %s: %s", want,
                     sd_bus_message_get_error(m) ? sd_bus_message_get_error(m)->message : "?");
        pipeline_all = ++pipeline_done == PIPELINED;
        return 0;
}

/* More calls at once than the service dispatches per wake-up: none may be stranded. */
static void test_pipeline(sd_bus *c) {
        for (unsigned i = 0; i < PIPELINED; i++) {
                char arg[32];

                snprintf(arg, sizeof(arg), "msg-%u", i);
                check_r(sd_bus_call_method_async(c, NULL, NAME, OBJ, IFACE, "Echo",
                                                 on_pipelined_reply, (void *) (uintptr_t) i, "s",
                                                 arg));
        }
        client_wait_for(c, &pipeline_all, 10 * SEC);
        check(pipeline_ok == PIPELINED);
        note("pipeline: %u calls answered", pipeline_ok);
}

static void test_big_reply(sd_bus *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const uint32_t size = 16 << 20;
        const uint8_t *data;
        size_t n;
        bool same = true;

        check_r(sd_bus_message_new_method_call(c, &m, NAME, OBJ, IFACE, "Big"));
        check_r(sd_bus_message_append(m, "u", size));
        check_r(sd_bus_call(c, m, 5 * SEC, NULL, &reply));
        check_r(sd_bus_message_read_array(reply, 'y', (const void **) &data, &n));
        check(n == size);
        for (size_t i = 0; i < n && same; i++)
                same = data[i] == (uint8_t) (i * 7);
        check(same);
        note("big reply: %zu bytes", n);
}

typedef struct signal_state {
        bool got;
        char text[64];
} signal_state;

static int on_pinged(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        signal_state *st = userdata;
        const char *s;

        if (sd_bus_message_read(m, "s", &s) > 0)
                snprintf(st->text, sizeof(st->text), "%s", s);
        st->got = true;
        return 0;
}

static void test_signal(sd_bus *c) {
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *match = NULL;
        signal_state st = {};

        check_r(sd_bus_match_signal(c, &match, NULL, OBJ, IFACE, "Pinged", on_pinged, &st));
        check_r(sd_bus_call_method(c, NAME, OBJ, IFACE, "Emit", NULL, NULL, "s", "ping-42"));
        client_wait_for(c, &st.got, 5 * SEC);
        check(strcmp(st.text, "ping-42") == 0);
}

static void test_timeout(sd_bus *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *name;
        uint64_t elapsed;

        check_r(sd_bus_call_method(c, NAME, OBJ, IFACE, "TimeoutProbe", NULL, &reply, ""));
        check_r(sd_bus_message_read(reply, "st", &name, &elapsed));
        note("timeout: the service's own call ended with %s after %.1f ms", name, elapsed / 1e3);
        check(strcmp(name, SD_BUS_ERROR_NO_REPLY) == 0);
        check(elapsed >= 195 * MSEC && elapsed < 1500 * MSEC);
}

/* A client that leaves with a call pending: the reply goes nowhere, the service serves on. */
static void test_client_leaves(sd_bus *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        sd_bus *gone = connect_bus();

        check_r(sd_bus_message_new_method_call(gone, &m, NAME, OBJ, IFACE, "Slow"));
        check_r(sd_bus_message_append(m, "s", "slow"));
        check_r(sd_bus_send(gone, m, NULL));
        sd_bus_flush_close_unref(gone);
        usleep(1200 * 1000);
        test_echo(c);
}

static void test_root(sd_bus *c) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *s;
        uint32_t uid;
        int r;

        check_r(sd_bus_call_method(c, NAME, OBJ, IFACE, "WhoAmI", NULL, &reply, ""));
        check_r(sd_bus_message_read(reply, "u", &uid));
        check(uid == geteuid());
        reply = sd_bus_message_unref(reply);

        r = sd_bus_call_method(c, NAME, OBJ, IFACE, "DenyMe", &e, NULL, "");
        check(r == -EACCES);
        check(sd_bus_error_has_name(&e, SD_BUS_ERROR_ACCESS_DENIED));
        check(strcmp(e.message, "Nobody may, in this test.") == 0);

        if (geteuid() != 0)
                return;
        /* Root passes without polkit and without the (missing) group. */
        check_r(sd_bus_call_method(c, NAME, OBJ, IFACE, "Guarded", NULL, &reply, "ss",
                                   MISSING_GROUP, "org.p3sam.test.no"));
        check_r(sd_bus_message_read(reply, "s", &s));
        check(strcmp(s, "sync: The caller is root.") == 0); /* WhoAmI cached the credentials */
        reply = sd_bus_message_unref(reply);

        /* A new connection: the credentials are asked for without blocking the loop (the
         * answer is asynchronous), then kept for that sender (the next one is immediate). */
        sd_bus *fresh = connect_bus();
        for (int i = 0; i < 2; i++) {
                check_r(sd_bus_call_method(fresh, NAME, OBJ, IFACE, "Guarded", NULL, &reply, "ss",
                                           MISSING_GROUP, "org.p3sam.test.no"));
                check_r(sd_bus_message_read(reply, "s", &s));
                check(strcmp(s, i == 0 ? "async: The caller is root." : "sync: The caller is root.") == 0);
                reply = sd_bus_message_unref(reply);
        }
        sd_bus_flush_close_unref(fresh);
}

typedef struct run_result {
        int status;
        char out[8192]; /* stdout and stderr */
} run_result;

/* busctl as nobody, with the supplementary groups given ("--clear-groups" or
 * "--groups=..."). interactive: busctl's flag, "yes" or "no". */
static void busctl_as_nobody_in(run_result *res, const char *groups, const char *interactive,
                                const char *method, const char *sig, const char *arg1,
                                const char *arg2) {
        char address[600], ia[64];
        const char *argv[] = {"setpriv",
                              "--reuid=65534",
                              "--regid=65534",
                              groups,
                              "busctl",
                              address,
                              ia,
                              "call",
                              NAME,
                              OBJ,
                              IFACE,
                              method,
                              sig,
                              arg1,
                              arg2,
                              NULL};
        posix_spawn_file_actions_t fa;
        size_t len = 0;
        pid_t pid;
        int p[2], status;
        ssize_t k;

        snprintf(address, sizeof(address), "--address=%s", bus_address);
        snprintf(ia, sizeof(ia), "--allow-interactive-authorization=%s", interactive);
        check(pipe2(p, O_CLOEXEC) == 0);
        check(posix_spawn_file_actions_init(&fa) == 0);
        check(posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO) == 0);
        check(posix_spawn_file_actions_adddup2(&fa, p[1], STDERR_FILENO) == 0);
        check(posix_spawnp(&pid, "setpriv", &fa, NULL, (char **) argv, environ) == 0);
        posix_spawn_file_actions_destroy(&fa);
        close(p[1]);
        while ((k = read(p[0], res->out + len, sizeof(res->out) - 1 - len)) > 0)
                len += (size_t) k;
        res->out[len] = 0;
        close(p[0]);
        check(waitpid(pid, &status, 0) == pid);
        res->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        note("nobody: %s %s %s -> exit %d: %s", method, arg1 ?: "", arg2 ?: "", res->status,
             res->out);
}

static void busctl_as_nobody(run_result *res, const char *interactive, const char *method,
                             const char *sig, const char *arg1, const char *arg2) {
        busctl_as_nobody_in(res, "--clear-groups", interactive, method, sig, arg1, arg2);
}

#define check_contains(res, text) check(strstr((res)->out, (text)))

/* A refusal: busctl exits 1 and names the error by its meaning; the sentence is the one the
 * service sent. */
static void check_denied(const run_result *res, const char *sentence) {
        char last[sizeof(srv.last_denial)];

        pthread_mutex_lock(&srv.lock);
        snprintf(last, sizeof(last), "%s", srv.last_denial);
        srv.last_denial[0] = 0;
        pthread_mutex_unlock(&srv.lock);

        check(res->status == 1);
        check_contains(res, "Call failed: Access denied");
        note("refused with: %s", last);
        check(strstr(last, sentence));
}

static void test_nobody_without_polkit(const char *nogroup, const char *rootgroup) {
        run_result res;

        busctl_as_nobody(&res, "no", "WhoAmI", NULL, NULL, NULL);
        check(res.status == 0);
        check_contains(&res, "u 65534");

        /* nobody's primary group: the group rule lets it in without asking polkit. */
        busctl_as_nobody(&res, "no", "Guarded", "ss", nogroup, "org.p3sam.test.yes");
        check(res.status == 0);
        check_contains(&res, "sync: The caller is a member of group");

        /* A supplementary group counts too (root's group, which nobody is never in). */
        busctl_as_nobody_in(&res, "--groups=0", "no", "Guarded", "ss", rootgroup,
                            "org.p3sam.test.yes");
        check(res.status == 0);
        check_contains(&res, "sync: The caller is a member of group");
        busctl_as_nobody(&res, "no", "Guarded", "ss", rootgroup, "org.p3sam.test.yes");
        check_denied(&res, "polkit is not available on the bus; without polkit, only root and "
                           "members of group");

        /* A missing group is no rule; no polkit on this bus: refused, and the sentence says
         * why. busctl exits 1 and prints the error's message. */
        busctl_as_nobody(&res, "no", "Guarded", "ss", MISSING_GROUP, "org.p3sam.test.yes");
        check_denied(&res, "Access to 'org.p3sam.test.yes' denied: polkit is not available on "
                           "the bus; without polkit, only root (group '" MISSING_GROUP
                           "' does not exist) may do this.");

        busctl_as_nobody(&res, "no", "Guarded", "ss", "", "org.p3sam.test.yes");
        check_denied(&res, "polkit is not available on the bus; without polkit, only root may");
}

static void fake_last(unsigned *calls, uint32_t *flags, char *kind, char *subject, char *action) {
        pthread_mutex_lock(&fake.lock);
        *calls = fake.calls;
        *flags = fake.flags;
        strcpy(kind, fake.kind);
        strcpy(subject, fake.subject);
        strcpy(action, fake.action);
        pthread_mutex_unlock(&fake.lock);
}

static void test_nobody_with_polkit(sd_bus *c) {
        char kind[64], subject[64], action[128];
        const char *own;
        unsigned calls, before;
        uint32_t flags;
        run_result res;

        check_r(sd_bus_get_unique_name(c, &own));

        busctl_as_nobody(&res, "no", "Guarded", "ss", "", "org.p3sam.test.yes");
        check(res.status == 0);
        check_contains(&res, "async: polkit allows"); /* busctl escapes the quotes */
        fake_last(&calls, &flags, kind, subject, action);
        check(calls == 1);
        check(strcmp(kind, "system-bus-name") == 0);
        check(subject[0] == ':' && strcmp(subject, own) != 0); /* busctl's name, not ours */
        check(strcmp(action, "org.p3sam.test.yes") == 0);
        check(flags == 0);

        /* The caller's ALLOW_INTERACTIVE_AUTHORIZATION flag reaches polkit. */
        busctl_as_nobody(&res, "yes", "Guarded", "ss", "", "org.p3sam.test.yes");
        check(res.status == 0);
        fake_last(&calls, &flags, kind, subject, action);
        check(calls == 2);
        check(flags == 1);

        busctl_as_nobody(&res, "no", "Guarded", "ss", "", "org.p3sam.test.no");
        check_denied(&res, "denied: polkit does not allow it; without polkit, only root may");

        busctl_as_nobody(&res, "no", "Guarded", "ss", MISSING_GROUP, "org.p3sam.test.challenge");
        check_denied(&res, "polkit requires interactive authentication");

        /* Cancelled while the credentials or polkit are being asked for (a new connection's
         * credentials are not cached yet): whichever step is in flight, its answer comes and
         * the callback never runs. */
        fake_last(&before, &flags, kind, subject, action);
        busctl_as_nobody(&res, "no", "GuardedCancel", "ss", "", "org.p3sam.test.yes");
        check(res.status == 0);
        check_contains(&res, "u 0");
        fake_last(&calls, &flags, kind, subject, action);
        check(calls <= before + 1);
}

static bool nobody_tests;
static char nogroup[64], rootgroup[64];

static void *client_thread(void *arg) {
        sd_bus *c = connect_bus();
        pthread_t polkit;

        test_echo(c);
        test_interleave(c);
        test_pipeline(c);
        test_big_reply(c);
        test_signal(c);
        test_timeout(c);
        test_client_leaves(c);
        test_root(c);
        if (nobody_tests) {
                test_nobody_without_polkit(nogroup, rootgroup);
                fake_polkit_start(&polkit);
                test_nobody_with_polkit(c);
                fake_polkit_stop(polkit);
        } else
                note("not root or no setpriv: the nobody part is skipped");

        sd_bus_flush_close_unref(c);
        /* The end: the service must notice that the bus is gone. */
        stop_bus();
        return NULL;
}

/* An attachment freed before it ever ran leaves nothing behind once the loop turns. */
static void test_attach_free(uv_loop_t *loop) {
        sd_bus *b = NULL, *unstarted = NULL;
        bus_uv *a = NULL;

        check_r(sd_bus_new(&unstarted));
        check(bus_uv_attach(unstarted, loop, &a) < 0);
        sd_bus_unref(unstarted);

        b = connect_bus();
        check_r(bus_uv_attach(b, loop, &a));
        check(uv_loop_alive(loop));
        bus_uv_free(a);
        sd_bus_flush_close_unref(b);
        uv_run(loop, UV_RUN_NOWAIT);
        check(!uv_loop_alive(loop));
}

static const char *config_path(int argc, char **argv, char *buf, size_t size) {
        const char *data = getenv("P3_TEST_DATA");

        if (argc > 1)
                return argv[1];
        if (!data)
                return "tests/dbus-test.conf";
        snprintf(buf, size, "%s/../dbus-test.conf", data);
        return buf;
}

int main(int argc, char **argv) {
        char config[4096];
        struct group *gr, *gr0;
        pthread_t client;
        uv_loop_t loop;

        if (!in_path("dbus-daemon") || !in_path("busctl")) {
                printf("SKIP: dbus-daemon or busctl not installed\n");
                return 77;
        }
        gr = getgrgid(NOBODY);
        if (gr)
                snprintf(nogroup, sizeof(nogroup), "%s", gr->gr_name);
        gr0 = getgrgid(0);
        if (gr0)
                snprintf(rootgroup, sizeof(rootgroup), "%s", gr0->gr_name);
        nobody_tests = geteuid() == 0 && in_path("setpriv") && gr && gr0;

        atexit(stop_bus);
        start_bus(config_path(argc, argv, config, sizeof(config)));

        check(uv_loop_init(&loop) == 0);
        srv.loop = &loop;
        test_attach_free(&loop);

        srv.bus = connect_bus();
        check_r(sd_bus_add_object_vtable(srv.bus, NULL, OBJ, IFACE, test_vtable, NULL));
        check_r(sd_bus_request_name(srv.bus, NAME, 0));
        check_r(bus_uv_attach(srv.bus, &loop, &srv.attachment));
        bus_uv_set_disconnect_handler(srv.attachment, on_disconnect, NULL);
        uv_timer_init(&loop, &srv.watchdog);
        uv_timer_start(&srv.watchdog, on_watchdog, 50 * 1000, 0);

        check(pthread_create(&client, NULL, client_thread, NULL) == 0);
        uv_run(&loop, UV_RUN_DEFAULT);
        check(pthread_join(client, NULL) == 0);

        check(srv.disconnected);
        check(uv_loop_close(&loop) == 0);
        sd_bus_unref(srv.bus);
        printf("bus-uv: ok\n");
        return 0;
}
