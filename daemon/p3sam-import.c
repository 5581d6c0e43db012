/* SPDX-License-Identifier: MIT */
/* p3sam-import: one mesh import in a process of its own, spawned by p3samd for every job.
 *
 * assimp is a large C++ library that has crashed, hung and leaked on malformed files. Here
 * it can only hurt this process: p3samd gives it the mesh as fd 0 (a regular file or memfd),
 * a pipe as fd 1 and its own stderr as fd 2, and reads back the triangle soup or a sentence
 * (mesh-wire.h). The helper reads the whole mesh, locks itself in (memory, CPU time and
 * descriptor limits, no new privileges, death with its parent, a seccomp allow-list that
 * leaves it memory, the two output descriptors and its own end), imports, answers and ends.
 *
 *   p3sam-import [--format FMT] [--max-bytes N] [--max-faces N] [--max-vertices N]
 *                [--memory-max BYTES] [--cpu-max SECONDS]
 *   p3sam-import --check-sandbox PROBE   (none, open, socket, execve, fork, kill,
 *                                         write-mesh, mmap-mesh: see check_sandbox) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/close_range.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "error.h"
#include "mesh-wire.h"
#include "mesh_import.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif

typedef struct args {
        const char *format; /* NULL: detect */
        p3_mesh_limits lim;
        uint64_t memory_max; /* bytes of address space; 0: none */
        uint64_t cpu_max;    /* seconds; 0: none */
        const char *probe;   /* --check-sandbox */
} args;

static int parse_u64(const char *s, uint64_t *ret) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-')
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_args(int argc, char **argv, args *a) {
        p3_mesh_limits_default(&a->lim);
        for (int i = 1; i < argc; i++) {
                const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                uint64_t n = 0;
                if (!v || (strcmp(o, "--format") && strcmp(o, "--check-sandbox") &&
                           parse_u64(v, &n) < 0))
                        return -EINVAL;
                i++;
                if (strcmp(o, "--format") == 0)
                        a->format = v[0] ? v : NULL;
                else if (strcmp(o, "--check-sandbox") == 0)
                        a->probe = v;
                else if (strcmp(o, "--max-bytes") == 0 && n > 0)
                        a->lim.max_bytes = n;
                else if (strcmp(o, "--max-faces") == 0 && n > 0 && n <= INT32_MAX)
                        a->lim.max_faces = (int64_t) n;
                else if (strcmp(o, "--max-vertices") == 0 && n > 0 && n <= INT32_MAX)
                        a->lim.max_vertices = (int64_t) n;
                else if (strcmp(o, "--memory-max") == 0)
                        a->memory_max = n;
                else if (strcmp(o, "--cpu-max") == 0)
                        a->cpu_max = n;
                else
                        return -EINVAL;
        }
        return 0;
}

/* ---- the sandbox ---------------------------------------------------------------------- */

static int set_limit(int resource, uint64_t soft, uint64_t hard, const char *what, p3_err *err) {
        struct rlimit rl = { .rlim_cur = soft, .rlim_max = hard };
        if (setrlimit(resource, &rl) < 0)
                return p3_errf(err, -errno, "the importer cannot limit its %s: %m", what);
        return 0;
}

/* Not RLIMIT_FSIZE=0, which the plan had: stderr may be a regular file (a test's log, a
 * redirected daemon), where it would kill the helper (SIGXFSZ) at its first diagnostic. The
 * filter below already keeps every write to fds 1 and 2 and maps no file, so no file of the
 * caller's (fd 0 may be open read-write) can be written. */
static int apply_limits(const args *a, p3_err *err) {
        int r = 0;
#ifndef HAVE_ASAN /* ASan reserves terabytes of shadow address space up front */
        if (a->memory_max)
                r = set_limit(RLIMIT_AS, a->memory_max, a->memory_max, "memory", err);
#endif
        /* SIGXCPU at the soft limit, SIGKILL a second later: a backstop for a daemon that
         * stopped watching its wall-clock deadline */
        if (r >= 0 && a->cpu_max)
                r = set_limit(RLIMIT_CPU, a->cpu_max, a->cpu_max + 1, "CPU time", err);
        /* no core file: it would hold the caller's mesh, and crashes here are expected */
        if (r >= 0)
                r = set_limit(RLIMIT_CORE, 0, 0, "core dumps", err);
        /* 0, 1 and 2 are all it ever needs */
        if (r >= 0)
                r = set_limit(RLIMIT_NOFILE, 3, 3, "descriptors", err);
        if (r >= 0 && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                r = p3_errf(err, -errno, "the importer cannot drop privilege gain: %m");
        /* killed with the thread that spawned it (p3samd's worker, which lives as long as
         * p3samd): an import nobody waits for any more stops */
        if (r >= 0 && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
                r = p3_errf(err, -errno, "the importer cannot tie itself to p3samd: %m");
        return r;
}

/* What an import of a buffer already in memory and the answer need; anything else kills the
 * process (SIGSYS, which p3samd reports as a forbidden system call). */
static const char *const allowed_calls[] = {
        /* memory: malloc, C++'s new, assimp's containers */
        "brk", "munmap", "mremap", "mprotect", "madvise",
        /* the C++ runtime's locks and thread-safe statics; clocks outside the vDSO */
        "futex", "clock_gettime", "gettimeofday", "getrandom",
        /* a failed assertion or std::terminate: abort() reports SIGABRT, not a filter kill */
        "rt_sigprocmask", "rt_sigaction", "rt_sigreturn", "getpid", "gettid",
        /* the sanitizers' runtime asks about its signal stack when it unwinds (ASan's
         * __asan_handle_no_return on every C++ throw) */
        "sigaltstack",
        /* the end */
        "exit", "exit_group",
};

/* libseccomp's SCMP_A0() leaves fields to positional initialisers, which clang -Werror refuses. */
static struct scmp_arg_cmp arg0_eq(scmp_datum_t v) {
        return (struct scmp_arg_cmp) { .arg = 0, .op = SCMP_CMP_EQ, .datum_a = v };
}

typedef struct rule {
        const char *name;
        uint32_t action;
        unsigned n_args;
        struct scmp_arg_cmp arg;
} rule;

static int add_rule(scmp_filter_ctx ctx, const rule *ru, p3_err *err) {
        int nr = seccomp_syscall_resolve_name(ru->name);
        if (nr == __NR_SCMP_ERROR)
                return 0; /* not on this architecture (open on aarch64) */
        int r = ru->n_args ? seccomp_rule_add(ctx, ru->action, nr, 1, ru->arg)
                           : seccomp_rule_add(ctx, ru->action, nr, 0);
        return r < 0 ? p3_errf(err, r, "the importer's filter refuses %s: %s", ru->name,
                               p3_strerror(r))
                     : 0;
}

static int install_filter(p3_err *err) {
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
        if (!ctx)
                return p3_errf(err, -ENOMEM, "the importer cannot build its filter");
        const scmp_datum_t pid = (scmp_datum_t) getpid();
        /* fd as the kernel sees an int -1: compared on its low 32 bits */
        const struct scmp_arg_cmp anonymous = { .arg = 4, .op = SCMP_CMP_MASKED_EQ,
                                                 .datum_a = 0xffffffff, .datum_b = 0xffffffff };
        const rule rules[] = {
                { "write", SCMP_ACT_ALLOW, 1, arg0_eq(1) },
                { "write", SCMP_ACT_ALLOW, 1, arg0_eq(2) },
                { "writev", SCMP_ACT_ALLOW, 1, arg0_eq(2) }, /* glibc's messages */
                { "mmap", SCMP_ACT_ALLOW, 1, anonymous },                   /* no file, ever */
                { "tgkill", SCMP_ACT_ALLOW, 1, arg0_eq(pid) }, /* raise(), itself */
                /* refused rather than fatal: a library probing for a file carries on */
                { "open", SCMP_ACT_ERRNO(EACCES), 0, {} },
                { "openat", SCMP_ACT_ERRNO(EACCES), 0, {} },
                { "openat2", SCMP_ACT_ERRNO(EACCES), 0, {} },
        };
        int r = 0;
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(allowed_calls); i++)
                r = add_rule(ctx, &(rule) { allowed_calls[i], SCMP_ACT_ALLOW, 0, {} }, err);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(rules); i++)
                r = add_rule(ctx, &rules[i], err);
        if (r >= 0) {
                r = seccomp_load(ctx);
                if (r < 0)
                        p3_errf(err, r, "the importer cannot install its filter: %s",
                                p3_strerror(r));
        }
        seccomp_release(ctx);
        return r;
}

/* ---- the self-check: the sandbox applied, then one thing it must forbid ----------------- */

/* Not dprintf(): stdio asks fstat() about the descriptor first, which the filter forbids. */
static void say(const char *fmt, ...) _printf_(1, 2);
static void say(const char *fmt, ...) {
        char buf[256];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (n > 0)
                (void) !write(1, buf, MIN((size_t) n, sizeof(buf) - 1));
}

/* Prints "refused: ..." and exits 0 when the call fails, "ALLOWED: ..." and exits 1 when it
 * succeeds; a call the filter kills for ends the process with SIGSYS. fd 0 should be a file
 * open for reading and writing (the probes that would write the caller's mesh). */
static int check_sandbox(const args *a) {
        p3_err err = {};
        int r = apply_limits(a, &err);
        if (r >= 0)
                r = install_filter(&err);
        if (r < 0) {
                dprintf(2, "%s\n", err.msg);
                return 2;
        }
        const char *p = a->probe;
        long k = 0;
        if (strcmp(p, "none") == 0)
                k = -1, errno = 0;
        else if (strcmp(p, "open") == 0)
                k = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
        else if (strcmp(p, "socket") == 0)
                k = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        else if (strcmp(p, "execve") == 0)
                k = execve("/bin/true", (char *[]) { "true", NULL }, (char *[]) { NULL });
        else if (strcmp(p, "fork") == 0)
                k = fork();
        else if (strcmp(p, "kill") == 0)
                k = kill(getppid(), 0); /* 0: only whether it could */
        else if (strcmp(p, "write-mesh") == 0)
                k = write(0, "x", 1);
        else if (strcmp(p, "mmap-mesh") == 0)
                k = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 0, 0) == MAP_FAILED
                            ? -1 : 0;
        else {
                dprintf(2, "unknown probe %s\n", p);
                return 2;
        }
        if (k == 0 && strcmp(p, "fork") == 0)
                _exit(0);
        if (k >= 0) {
                say("ALLOWED: %s\n", p);
                return 1;
        }
        say("refused: %s (%s)\n", p, errno ? strerrorname_np(errno) : "the sandbox is in place");
        return 0;
}

/* ---- the import ------------------------------------------------------------------------ */

static int import(const args *a, p3_mesh *mesh, p3_err *err) {
        _cleanup_free_ void *buf = NULL;
        size_t size = 0;
        int r = apply_limits(a, err);
        /* read before the filter goes in: after it, fd 0 cannot even be read */
        if (r >= 0)
                r = p3_mesh_read_fd(0, "mesh", a->lim.max_bytes, &buf, &size, err);
        if (r >= 0)
                r = install_filter(err);
        if (r >= 0)
                r = p3_mesh_import_buffer(buf, size, a->format, "mesh", &a->lim, mesh, err);
        return r;
}

int main(int argc, char **argv) {
        args a = {};
        if (parse_args(argc, argv, &a) < 0) {
                dprintf(2, "p3sam-import: the mesh importer of p3samd, which runs it; see "
                           "p3samd(8)\n");
                return 2;
        }
        /* p3samd passes nothing else; whatever another caller leaked in goes */
        (void) close_range(3, ~0U, 0);
        if (a.probe)
                _exit(check_sandbox(&a)); /* _exit: LeakSanitizer's exit check is no probe */

        p3_err err = {};
        p3_mesh mesh = {};
        int r = import(&a, &mesh, &err);
        /* assimp turns a failed allocation (RLIMIT_AS reached) into an import error that
         * only names the exception: p3samd reports ENOMEM as the memory cap */
        if (r < 0 && strstr(err.msg, "bad_alloc"))
                r = -ENOMEM;
        if (r >= 0)
                r = p3_wire_write_mesh(1, &mesh, &err);
        else
                r = p3_wire_write_error(1, r, p3_err_msg(&err, r), NULL) < 0 ? -EPIPE : 0;
        /* _exit, with nothing freed: what assimp leaks (hundreds of kB on malformed files)
         * goes with the process, and so would a LeakSanitizer report at exit, which in a
         * sanitizer build would turn every such import into a failed job. */
        _exit(r < 0 ? 1 : 0);
}
