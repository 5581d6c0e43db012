/* SPDX-License-Identifier: MIT */
/* An LD_PRELOAD interposer for the fault tests: it fails allocations of the program under test,
 * one call site at a time. Only calls whose return address lies in the executable count (the
 * daemon's, the engine's and the tools' own code); libraries (libc, oneDNN, libgomp, assimp,
 * json-c, sd-bus) are left alone, so a site is a line of our code.
 *
 *   FAULT_MALLOC_RECORD=FILE  append each distinct site reached, in order, as a hex offset
 *                             from the executable's base (addr2line -e EXE reads it)
 *   FAULT_MALLOC_FAIL=OFFSET  fail the first call from that site (ENOMEM), then note
 *                             "fired OFFSET" in FAULT_MALLOC_FIRED=FILE
 *   FAULT_MALLOC_ARM=FILE     only act while FILE exists and holds "GEN record" or "GEN
 *                             OFFSET" (the site to fail), GEN a number the test counts up; read
 *                             every 20 ms and applied when it changes, so that one daemon
 *                             serves a whole sweep, armed once it serves
 *   FAULT_MALLOC_PROG=NAME    act only in the program of that name, not in the children it
 *                             starts (the daemon's import helper inherits the environment)
 *   FAULT_MALLOC_LEAKS=FILE   at exit, and when the ARM file says "GEN dump", write the
 *                             allocations of our sites still live, one "OFFSET COUNT" line per
 *                             site: a run that failed on purpose and leaves more than a good run
 *                             does leaks on its error path
 *
 * It calls glibc's __libc_* allocators, so it needs no dlsym (which allocates) to find them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *p);

/* The project builds with -fvisibility=hidden: what we interpose must be exported. */
#define EXPORT __attribute__((visibility("default")))

#define MAX_SITES 8192

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool inited;
static uintptr_t exe_base, exe_lo, exe_hi; /* the executable's loaded segments */
static const char *record_path, *fired_path, *arm_path;
static uintptr_t fail_site; /* 0: none */
static bool record_on, fired;
static uintptr_t seen[MAX_SITES];
static size_t n_seen;
static struct timespec arm_checked;
static __thread bool busy; /* our own bookkeeping must not recurse */

/* Live allocations of our sites (FAULT_MALLOC_LEAKS): open addressing on the pointer; p 0 is
 * an empty slot, 1 a deleted one. */
#define LIVE_SLOTS (1u << 21)
typedef struct live_slot {
        uintptr_t p, site;
} live_slot;
static live_slot *live;
static const char *leaks_path;

static size_t slot_of(uintptr_t p) {
        return (size_t) (((uint64_t) p >> 4) * 0x9E3779B97F4A7C15ull >> 43);
}

static void live_add(void *ptr, uintptr_t site) {
        uintptr_t p = (uintptr_t) ptr;
        pthread_mutex_lock(&lock);
        for (size_t i = slot_of(p), n = 0; n < LIVE_SLOTS; i = (i + 1) % LIVE_SLOTS, n++)
                if (live[i].p <= 1) {
                        live[i] = (live_slot) { p, site };
                        break;
                }
        pthread_mutex_unlock(&lock);
}

static void live_del(void *ptr) {
        uintptr_t p = (uintptr_t) ptr;
        pthread_mutex_lock(&lock);
        for (size_t i = slot_of(p), n = 0; n < LIVE_SLOTS && live[i].p; i = (i + 1) % LIVE_SLOTS, n++)
                if (live[i].p == p) {
                        live[i].p = 1;
                        break;
                }
        pthread_mutex_unlock(&lock);
}

static void *track(void *p, uintptr_t site) {
        if (p && site && live)
                live_add(p, site);
        return p;
}

/* The live allocations by site into FILE; with the lock held, and nothing here allocates. */
static void dump_live_locked(const char *path) {
        static uintptr_t sites[MAX_SITES];
        static size_t counts[MAX_SITES];
        size_t n = 0;
        for (size_t i = 0; i < LIVE_SLOTS; i++) {
                if (live[i].p <= 1)
                        continue;
                size_t k = 0;
                while (k < n && sites[k] != live[i].site)
                        k++;
                if (k == n && n < MAX_SITES) {
                        sites[n++] = live[i].site;
                        counts[k] = 0;
                }
                if (k < n)
                        counts[k]++;
        }
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        for (size_t k = 0; fd >= 0 && k < n; k++) {
                char line[48];
                int len = snprintf(line, sizeof(line), "%#lx %zu\n", (unsigned long) sites[k],
                                   counts[k]);
                if (write(fd, line, len) != len)
                        break;
        }
        if (fd >= 0)
                close(fd);
}

/* Runs after the program's own exit handlers: the preloaded library was initialised first. */
__attribute__((destructor)) static void dump_live(void) {
        if (!live)
                return;
        pthread_mutex_lock(&lock);
        dump_live_locked(leaks_path);
        live = NULL; /* whatever runs after us frees untracked */
        pthread_mutex_unlock(&lock);
}

static int find_exe(struct dl_phdr_info *info, size_t size, void *data) {
        (void)size;
        (void)data;
        /* The first object is the executable. */
        exe_base = info->dlpi_addr;
        exe_lo = UINTPTR_MAX;
        for (int i = 0; i < info->dlpi_phnum; i++) {
                const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
                if (ph->p_type != PT_LOAD)
                        continue;
                uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
                if (lo < exe_lo)
                        exe_lo = lo;
                if (lo + ph->p_memsz > exe_hi)
                        exe_hi = lo + ph->p_memsz;
        }
        return 1;
}

static void init_locked(void) {
        inited = true;
        dl_iterate_phdr(find_exe, NULL);
        record_path = getenv("FAULT_MALLOC_RECORD");
        fired_path = getenv("FAULT_MALLOC_FIRED");
        arm_path = getenv("FAULT_MALLOC_ARM");
        const char *f = getenv("FAULT_MALLOC_FAIL");
        if (f)
                fail_site = strtoull(f, NULL, 16);
        record_on = record_path != NULL && !arm_path;
        leaks_path = getenv("FAULT_MALLOC_LEAKS");
        if (leaks_path) {
                live = mmap(NULL, LIVE_SLOTS * sizeof(*live), PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
                if (live == MAP_FAILED)
                        live = NULL;
        }
        const char *prog = getenv("FAULT_MALLOC_PROG");
        if (prog && strcmp(prog, program_invocation_short_name) != 0) {
                exe_lo = exe_hi = 0; /* nothing is ours */
                record_on = false;
                fail_site = 0;
                arm_path = NULL;
                live = NULL; /* nor its leaks file */
        }
}

static void append(const char *path, const char *line) {
        if (!path)
                return;
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
                return;
        ssize_t n = write(fd, line, strlen(line));
        (void)n;
        close(fd);
}

/* With FAULT_MALLOC_ARM, what the file says, read at most every 20 ms. */
static void poll_arm_locked(void) {
        static char last[64];
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
        long long ms = (now.tv_sec - arm_checked.tv_sec) * 1000LL +
                       (now.tv_nsec - arm_checked.tv_nsec) / 1000000;
        if (ms < 20 && arm_checked.tv_sec)
                return;
        arm_checked = now;
        char buf[64] = { 0 };
        int fd = open(arm_path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? 0 : read(fd, buf, sizeof(buf) - 1);
        if (fd >= 0)
                close(fd);
        if (n < 0)
                n = 0;
        buf[n] = 0;
        if (strcmp(buf, last) == 0)
                return;
        memcpy(last, buf, sizeof(last));
        const char *what = strchr(buf, ' ');
        what = what ? what + 1 : "";
        if (strncmp(what, "dump", 4) == 0 && live) {
                dump_live_locked(leaks_path);
                what = "off";
        }
        record_on = strncmp(what, "record", 6) == 0 && record_path;
        fail_site = record_on ? 0 : strtoull(what, NULL, 16);
        fired = false;
}

/* Whether the call from return address RA must fail; *site: its offset if it is ours, else 0. */
static bool should_fail(void *ra, uintptr_t *site) {
        uintptr_t a = (uintptr_t)ra;
        *site = 0;
        if (busy)
                return false;
        if (inited && (a < exe_lo || a >= exe_hi))
                return false;
        busy = true;
        bool fail = false;
        pthread_mutex_lock(&lock);
        if (!inited)
                init_locked();
        if (a < exe_lo || a >= exe_hi)
                goto out;
        if (arm_path)
                poll_arm_locked();
        uintptr_t off = a - exe_base;
        *site = off;
        if (record_on) {
                bool known = false;
                for (size_t i = 0; i < n_seen && !known; i++)
                        known = seen[i] == off;
                if (!known && n_seen < MAX_SITES) {
                        char line[32];
                        seen[n_seen++] = off;
                        snprintf(line, sizeof(line), "%#lx\n", (unsigned long)off);
                        append(record_path, line);
                }
        }
        if (fail_site && off == fail_site && !fired) {
                char line[48];
                fired = fail = true;
                snprintf(line, sizeof(line), "fired %#lx\n", (unsigned long)off);
                append(fired_path, line);
        }
out:
        pthread_mutex_unlock(&lock);
        busy = false;
        return fail;
}

#define SITE_FAILS(site) should_fail(__builtin_return_address(0), &(site))

EXPORT void *malloc(size_t size) {
        uintptr_t site;
        if (SITE_FAILS(site)) {
                errno = ENOMEM;
                return NULL;
        }
        return track(__libc_malloc(size), site);
}

EXPORT void *calloc(size_t n, size_t size) {
        uintptr_t site;
        if (SITE_FAILS(site)) {
                errno = ENOMEM;
                return NULL;
        }
        return track(__libc_calloc(n, size), site);
}

EXPORT void *realloc(void *p, size_t size) {
        uintptr_t site;
        if (SITE_FAILS(site)) {
                errno = ENOMEM;
                return NULL;
        }
        void *q = __libc_realloc(p, size);
        if (live && p && (q || size == 0))
                live_del(p);
        return track(q, site);
}

EXPORT void free(void *p) {
        if (live && p)
                live_del(p);
        __libc_free(p);
}

EXPORT int posix_memalign(void **out, size_t alignment, size_t size) {
        uintptr_t site;
        if (SITE_FAILS(site))
                return ENOMEM;
        if (alignment % sizeof(void *) || (alignment & (alignment - 1)))
                return EINVAL;
        void *p = __libc_memalign(alignment, size);
        if (!p)
                return ENOMEM;
        *out = track(p, site);
        return 0;
}

EXPORT void *aligned_alloc(size_t alignment, size_t size) {
        uintptr_t site;
        if (SITE_FAILS(site)) {
                errno = ENOMEM;
                return NULL;
        }
        return track(__libc_memalign(alignment, size), site);
}

EXPORT void *memalign(size_t alignment, size_t size) {
        uintptr_t site;
        if (SITE_FAILS(site)) {
                errno = ENOMEM;
                return NULL;
        }
        return track(__libc_memalign(alignment, size), site);
}

/* strdup and strndup allocate inside libc, where the caller's site would be lost. */
EXPORT char *strdup(const char *s) {
        uintptr_t site;
        if (SITE_FAILS(site)) {
                errno = ENOMEM;
                return NULL;
        }
        size_t n = strlen(s) + 1;
        char *p = track(__libc_malloc(n), site);
        return p ? memcpy(p, s, n) : NULL;
}

EXPORT char *strndup(const char *s, size_t max) {
        uintptr_t site;
        if (SITE_FAILS(site)) {
                errno = ENOMEM;
                return NULL;
        }
        size_t n = strnlen(s, max);
        char *p = track(__libc_malloc(n + 1), site);
        if (!p)
                return NULL;
        memcpy(p, s, n);
        p[n] = 0;
        return p;
}
