/* SPDX-License-Identifier: MIT */
/* A CPU backend dressed as a GPU for the engine's sake: every buffer it allocates is guarded
 * memory (tests/guard-memory.h) that only its ops may touch, so that engine code reading a
 * device tensor on the host (which crashes on a GPU) faults here. Weights are left as the CPU
 * backend holds them. */
#pragma once

#include "backend.h"

/* Wraps be's ops (whatever they are then, structure ops included) for as long as it lives. */
void guarded_backend_install(p3_backend *be);
