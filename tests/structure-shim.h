/* SPDX-License-Identifier: MIT */
/* The level-structure ops (backend.h: subm_neighbors, window_slots) given to a CPU backend, so
 * that the engine's device path for them and the structure self-test run here without a GPU.
 * The ops compute with serialize.c on the backend's memory, which on the CPU is host memory. */
#pragma once

#include "backend.h"

typedef enum structure_shim {
        SHIM_RIGHT,           /* what a correct device gives */
        SHIM_WRONG_PADDING,   /* padding slots hold ranks from n - window + (n % window) on */
        SHIM_FAILING_NEIGHBOURS, /* subm_neighbors fails with -EIO */
} structure_shim;

/* Puts the ops into be (a CPU backend) for as long as it lives. */
void structure_shim_install(p3_backend *be, structure_shim kind);
