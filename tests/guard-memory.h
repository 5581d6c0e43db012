/* SPDX-License-Identifier: MIT */
/* Memory that host code cannot touch, for tests that stand a CPU in for a GPU: each block is a
 * mapping of its own, PROT_NONE except between guard_enter() and guard_leave() (which nest),
 * the brackets a test puts around what stands in for device work (a kernel, a GEMM, a copy).
 * A host read of "device" memory anywhere else faults, as a host read of a cudaMalloc pointer
 * does on a real machine. */
#pragma once

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* NULL when the mapping fails or too many blocks are live. */
void *guard_alloc(size_t bytes);
void guard_free(void *p);
/* A guarded copy of host memory (aborts the test when it cannot be made). */
void *guard_copy(const void *host, size_t bytes);
void guard_enter(void);
void guard_leave(void);
/* Blocks live now. */
int guard_live(void);

#ifdef __cplusplus
}
#endif
