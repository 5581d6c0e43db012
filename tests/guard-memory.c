/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "guard-memory.h"
#include "test-util.h"

#define GUARD_MAX 4096

static struct guard_block {
        void *p;
        size_t len;
} guard[GUARD_MAX];
static int guard_open, guard_count;

static void guard_protect(int prot) {
        for (int i = 0; i < GUARD_MAX; i++)
                if (guard[i].p)
                        CHECK(mprotect(guard[i].p, guard[i].len, prot) == 0);
}

void guard_enter(void) {
        if (guard_open++ == 0)
                guard_protect(PROT_READ | PROT_WRITE);
}

void guard_leave(void) {
        CHECK(guard_open > 0);
        if (--guard_open == 0)
                guard_protect(PROT_NONE);
}

void *guard_alloc(size_t bytes) {
        size_t len = bytes ? (bytes + 4095) & ~(size_t) 4095 : 4096;
        if (guard_count == GUARD_MAX)
                return NULL;
        void *p = mmap(NULL, len, guard_open ? PROT_READ | PROT_WRITE : PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return NULL;
        for (int i = 0; i < GUARD_MAX; i++)
                if (!guard[i].p) {
                        guard[i].p = p, guard[i].len = len;
                        guard_count++;
                        return p;
                }
        CHECK(!"guard table inconsistent");
        return NULL;
}

void guard_free(void *p) {
        for (int i = 0; p && i < GUARD_MAX; i++)
                if (guard[i].p == p) {
                        CHECK(munmap(p, guard[i].len) == 0);
                        guard[i].p = NULL;
                        guard_count--;
                        return;
                }
        CHECK(!p); /* freeing what was never guarded is the test's own bug */
}

void *guard_copy(const void *host, size_t bytes) {
        void *p = guard_alloc(bytes);
        CHECK(p);
        guard_enter();
        memcpy(p, host, bytes);
        guard_leave();
        return p;
}

int guard_live(void) {
        return guard_count;
}
