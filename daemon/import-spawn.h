/* SPDX-License-Identifier: MIT */
/* The daemon's side of the isolated importer: every job's mesh is imported by a fresh
 * p3sam-import process (daemon/p3sam-import.c), so that a crash, a hang or a leak of assimp
 * on a malformed file costs that job and nothing else. The helper is started with
 * posix_spawn (the daemon has threads: no fork), gets the mesh descriptor as its stdin and a
 * pipe as its stdout, and is always reaped before this returns: killed on timeout, cancel or
 * a malformed answer. No assimp code runs in p3samd. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "mesh.h"
#include "mesh_import.h"

typedef struct import_request {
        int mesh_fd;               /* a regular file or memfd, read from offset 0 */
        const char *format;        /* NULL or "": detected from the content */
        p3_mesh_limits lim;        /* MaxMeshSize= and the face and vertex limits */
        uint64_t timeout_usec;     /* ImportTimeoutSec=; 0 or UINT64_MAX: none */
        uint64_t memory_max;       /* the helper's address-space cap in bytes; UINT64_MAX: none */
        const atomic_bool *cancel; /* the job's cancel flag, polled while waiting; may be NULL */
        bool *started;             /* may be NULL: set true once the helper runs, so a failure
                                    * after that is the mesh's, one before it the machine's */
} import_request;

/* $P3SAM_IMPORT_HELPER when set (the tests, a development tree), else the installed
 * <libexecdir>/p3sam-import. */
const char *import_helper_path(void);

/* The mesh of req through the helper. On success *ret owns a fresh mesh. On failure one
 * sentence in err that starts with "mesh:" and says what happened: the helper's own
 * sentence (a file assimp cannot read), or that the importer crashed with signal NAME, was
 * killed, timed out after ImportTimeoutSec=, ran over its memory cap, exited with status N
 * or sent a malformed answer; -ECANCELED when req->cancel was raised. */
int import_mesh(const import_request *req, p3_mesh *ret, p3_err *err);
