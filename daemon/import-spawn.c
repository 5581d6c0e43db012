/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* posix_spawn_file_actions_addclosefrom_np, F_SETPIPE_SZ, sigabbrev_np */
#include "import-spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "mesh-wire.h"
#include "parse-util.h"
#include "time-util.h"

/* The installed helper, from meson; the default serves builds that only compile this file
 * (the fuzz targets, which never spawn). */
#ifndef P3SAM_IMPORT_PATH
#define P3SAM_IMPORT_PATH "/usr/libexec/p3sam-import"
#endif

/* How often the wait looks at the job's cancel flag. */
#define CANCEL_POLL_MSEC 100
/* The CPU-time backstop beyond ImportTimeoutSec= (see p3sam-import.c). */
#define CPU_SLACK_SEC 5

extern char **environ;

const char *import_helper_path(void) {
        const char *p = getenv("P3SAM_IMPORT_HELPER");
        return p && p[0] ? p : P3SAM_IMPORT_PATH;
}

typedef struct helper {
        pid_t pid;
        int out;     /* the read end of its stdout */
        int pidfd;   /* readable once it exited; -1 where the kernel has none */
        uint64_t deadline; /* CLOCK_MONOTONIC µs, UINT64_MAX: none */
        const atomic_bool *cancel;
        bool eof;       /* its stdout ended */
        bool timed_out, cancelled;
        bool killed;    /* by us, when waiting was over */
} helper;

/* ---- starting it ---------------------------------------------------------------------- */

typedef struct argv_buf {
        char *v[16];
        char num[6][24];
        int n, nums;
} argv_buf;

static void arg(argv_buf *a, const char *s) {
        a->v[a->n++] = (char *) s;
}

static void arg_u64(argv_buf *a, const char *opt, uint64_t v) {
        arg(a, opt);
        snprintf(a->num[a->nums], sizeof(a->num[0]), "%" PRIu64, v);
        arg(a, a->num[a->nums++]);
}

static void build_argv(const import_request *req, const char *path, argv_buf *a) {
        arg(a, path);
        arg(a, "--format");
        arg(a, req->format ? req->format : "");
        arg_u64(a, "--max-bytes", req->lim.max_bytes);
        arg_u64(a, "--max-faces", (uint64_t) req->lim.max_faces);
        arg_u64(a, "--max-vertices", (uint64_t) req->lim.max_vertices);
        if (req->memory_max != UINT64_MAX)
                arg_u64(a, "--memory-max", req->memory_max);
        if (req->timeout_usec && req->timeout_usec != UINT64_MAX)
                arg_u64(a, "--cpu-max",
                        DIV_ROUND_UP(req->timeout_usec, USEC_PER_SEC) + CPU_SLACK_SEC);
        a->v[a->n] = NULL;
}

/* stdin the mesh, stdout the pipe, stderr ours, nothing else; default signal handling and
 * an empty mask whatever the spawning thread blocks. */
static int spawn(const char *path, char *const *argv, int mesh_fd, int out_fd, pid_t *pid) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        int r = posix_spawn_file_actions_init(&fa);
        if (r)
                return -r;
        r = posix_spawnattr_init(&attr);
        if (r) {
                posix_spawn_file_actions_destroy(&fa);
                return -r;
        }
        r = posix_spawn_file_actions_adddup2(&fa, mesh_fd, 0) ?:
            posix_spawn_file_actions_adddup2(&fa, out_fd, 1) ?:
            posix_spawn_file_actions_addclosefrom_np(&fa, 3) ?:
            posix_spawnattr_setsigmask(&attr, &none) ?:
            posix_spawnattr_setsigdefault(&attr, &all) ?:
            posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) ?:
            posix_spawn(pid, path, &fa, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        return -r;
}

static int start(const import_request *req, helper *h, p3_err *err) {
        const char *path = import_helper_path();
        argv_buf a = {};
        int p[2];
        build_argv(req, path, &a);
        if (pipe2(p, O_CLOEXEC) < 0)
                return p3_errf(err, -errno, "mesh: cannot make a pipe for the importer: %m");
        /* fewer wake-ups for a large mesh; the default 64 KiB works too */
        (void) fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
        int r = spawn(path, a.v, req->mesh_fd, p[1], &h->pid);
        close(p[1]);
        if (r < 0) {
                close(p[0]);
                return p3_errf(err, r, "mesh: cannot start the mesh importer %s: %s", path,
                               p3_strerror(r));
        }
        h->out = p[0];
        h->pidfd = (int) syscall(SYS_pidfd_open, h->pid, 0);
        return 0;
}

/* ---- waiting for it --------------------------------------------------------------------- */

/* Milliseconds to wait in one poll(): until the deadline, but looking at the cancel flag
 * every CANCEL_POLL_MSEC. Marks the helper timed out or cancelled and returns -1 when
 * waiting is over. */
static int wait_slice(helper *h) {
        if (h->cancel && atomic_load(h->cancel)) {
                h->cancelled = true;
                return -1;
        }
        uint64_t now = now_monotonic_usec();
        if (h->deadline != UINT64_MAX && now >= h->deadline) {
                h->timed_out = true;
                return -1;
        }
        uint64_t left = h->deadline == UINT64_MAX ? UINT64_MAX : (h->deadline - now + 999) / 1000;
        return (int) MIN(left, (uint64_t) CANCEL_POLL_MSEC);
}

/* p3_wire_read_fn on the pipe. */
static int read_answer(void *userdata, void *buf, size_t n, size_t *got, p3_err *err) {
        helper *h = userdata;
        uint8_t *p = buf;
        *got = 0;
        while (*got < n) {
                int ms = wait_slice(h);
                if (ms < 0)
                        return h->cancelled ? -ECANCELED : -ETIMEDOUT;
                struct pollfd pfd = { .fd = h->out, .events = POLLIN };
                int ready = poll(&pfd, 1, ms);
                if (ready < 0 && errno != EINTR)
                        return p3_errf(err, -errno, "mesh: cannot wait for the importer: %m");
                if (ready <= 0)
                        continue;
                ssize_t k = read(h->out, p + *got, n - *got);
                if (k < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (k < 0)
                        return p3_errf(err, -errno, "mesh: cannot read the importer's answer: %m");
                if (k == 0) {
                        h->eof = true;
                        return -ENODATA;
                }
                *got += (size_t) k;
        }
        return 0;
}

/* Reaps the helper. Once its stdout ended it is exiting (or dead): it gets until the deadline
 * to be done, so that its own exit status or signal is what is reported. Otherwise (a
 * timeout, a cancel, an answer that went wrong while it still writes) it is killed at once.
 * Never leaves a zombie. */
static int reap(helper *h) {
        while (h->eof && h->pidfd >= 0) {
                int ms = wait_slice(h);
                if (ms < 0)
                        break;
                struct pollfd pfd = { .fd = h->pidfd, .events = POLLIN };
                if (poll(&pfd, 1, ms) > 0)
                        break;
        }
        int status = 0;
        /* without a pidfd (kernels before 5.3) an ended stdout is taken as the end */
        pid_t k = waitpid(h->pid, &status, h->eof && h->pidfd < 0 ? 0 : WNOHANG);
        if (k == 0) {
                h->killed = true;
                (void) kill(h->pid, SIGKILL);
                while (waitpid(h->pid, &status, 0) < 0 && errno == EINTR)
                        ;
        }
        return status;
}

static void helper_done(helper *h) {
        if (h->out >= 0)
                close(h->out);
        if (h->pidfd >= 0)
                close(h->pidfd);
}

/* ---- what happened ---------------------------------------------------------------------- */

static int signal_sentence(int sig, p3_err *err) {
        const char *name = sigabbrev_np(sig);
        switch (sig) {
        case SIGKILL:
                return p3_errf(err, -EIO, "mesh: the importer was killed (SIGKILL: by an "
                               "administrator, the out-of-memory killer or its CPU time limit)");
        case SIGXCPU:
                return p3_errf(err, -ETIMEDOUT, "mesh: the importer ran out of CPU time "
                               "(SIGXCPU)");
        case SIGSYS:
                return p3_errf(err, -EPERM, "mesh: the importer was stopped by its sandbox "
                               "(SIGSYS: a forbidden system call); the file may be crafted to "
                               "attack it");
        default:
                return p3_errf(err, -EIO, "mesh: the importer crashed with signal SIG%s (%s); "
                               "the file is probably malformed", name ? name : "?",
                               strsignal(sig));
        }
}

static char *format_size(char *buf, size_t len, uint64_t v) {
        static const char units[] = "KMGT";
        int u = -1;
        double x = (double) v;
        while (u < 3 && x >= 1024) {
                x /= 1024;
                u++;
        }
        if (u < 0)
                snprintf(buf, len, "%" PRIu64 "B", v);
        else
                snprintf(buf, len, x == (double) (uint64_t) x ? "%.0f%c" : "%.1f%c", x,
                         units[u]);
        return buf;
}

static int outcome(const import_request *req, const helper *h, int status, p3_wire_result kind,
                   int r, p3_err *answer, p3_err *err) {
        char span[FORMAT_TIMESPAN_MAX], size[32];
        if (h->cancelled)
                return p3_errf(err, -ECANCELED, "mesh: the job was cancelled during the import");
        if (h->timed_out)
                return p3_errf(err, -ETIMEDOUT, "mesh: the importer did not finish within "
                               "ImportTimeoutSec=%s and was stopped",
                               format_timespan(span, sizeof(span), req->timeout_usec));
        if (!h->killed && WIFSIGNALED(status))
                return signal_sentence(WTERMSIG(status), err);
        if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
                return p3_errf(err, -EIO, "mesh: the importer exited with status %d",
                               WEXITSTATUS(status));
        switch (kind) {
        case P3_WIRE_MESH:
                return 0;
        case P3_WIRE_MALFORMED:
                return p3_errf(err, -EBADMSG, "mesh: the importer sent a malformed answer: %s",
                               answer->msg);
        case P3_WIRE_FAILED:
                if (r == -ENOMEM && req->memory_max != UINT64_MAX)
                        return p3_errf(err, r, "mesh: the import needs more memory than its cap "
                                       "of %s (ImportMemoryMax=)",
                                       format_size(size, sizeof(size), req->memory_max));
                return p3_errf(err, r, "%s", answer->msg);
        default:
                return p3_errf(err, r, "%s", answer->msg);
        }
}

int import_mesh(const import_request *req, p3_mesh *ret, p3_err *err) {
        helper h = { .out = -1, .pidfd = -1, .cancel = req->cancel, .deadline = UINT64_MAX };
        if (req->timeout_usec && req->timeout_usec != UINT64_MAX)
                h.deadline = now_monotonic_usec() + req->timeout_usec;
        int r = start(req, &h, err);
        if (r < 0)
                return r;
        if (req->started)
                *req->started = true;
        p3_err answer = {};
        p3_wire_result kind;
        p3_mesh m = {};
        r = p3_wire_read(read_answer, &h, &req->lim, &m, &kind, &answer);
        int status = reap(&h);
        helper_done(&h);
        r = outcome(req, &h, status, kind, r, &answer, err);
        if (r < 0) {
                p3_mesh_done(&m);
                return r;
        }
        *ret = m;
        return 0;
}
