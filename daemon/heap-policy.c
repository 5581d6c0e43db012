/* SPDX-License-Identifier: MIT */
#include <stdlib.h> /* defines __GLIBC__ */
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "heap-policy.h"
#include "log.h"

/* A job allocates buffers of megabytes to hundreds of megabytes and frees them at its end;
 * glibc's malloc keeps them. malloc_trim() hands back the free pages of every heap, but only
 * the main heap's free top: a thread's heap keeps a free top of up to twice the dynamic mmap
 * threshold (up to 64 MiB) resident. The worker allocates from its own heap, so the RSS
 * between jobs depended on where that top happened to end, and grew by megabytes at random
 * jobs (tests/test-load.sh saw +4 MB once in 50). One heap for all threads makes the trim
 * whole; the engine allocates per stage, not per element, so the shared lock costs little. */
void heap_policy_setup(void) {
#ifdef __GLIBC__
        /* mallopt returns 1 on success. A refusal only costs memory, and an interposed
         * allocator (the sanitizers', valgrind's) refuses it by design: a debug line. */
        if (mallopt(M_ARENA_MAX, 1) != 1)
                log_debug("malloc refused one arena: memory freed by a job may stay with the "
                          "daemon");
#endif
}

/* When the queue runs dry: a service idling beside other work holds what it uses (the model),
 * not its last job's peak. */
void heap_give_back(void) {
#ifdef __GLIBC__
        (void) malloc_trim(0); /* returns whether it released anything: either is fine */
#endif
}
