/* SPDX-License-Identifier: MIT */
/* The answer of the mesh importer helper (p3sam-import) to p3samd, over a pipe: either the
 * triangle soup or the helper's own error (an errno and its sentence).
 *
 *   header   p3_wire_header (48 bytes, native byte order: both ends are one build)
 *   mesh     v [nv·3 double], f [nf·3 int32], face_src [nf int32] if P3_WIRE_FACE_SRC,
 *            then n_src names, each a uint32 length and that many bytes (no NUL)
 *   error    msg_len bytes of the sentence (no NUL)
 *   trailer  "P3ME", then the end of the stream
 *
 * The decoder trusts nothing it reads: the helper runs assimp on a stranger's file and may
 * have been subverted by it. Counts are checked against the job's limits before anything is
 * allocated, every index against the vertices, every face_src against the names, the lengths
 * of the names against a bound, and the answer must end exactly after its trailer. */
#pragma once

#include <stdint.h>

#include "error.h"
#include "mesh.h"
#include "mesh_import.h"

#define P3_WIRE_MAGIC "P3MI"
#define P3_WIRE_TRAILER "P3ME"
#define P3_WIRE_VERSION 1
#define P3_WIRE_FACE_SRC 1u
/* An error sentence longer than this is malformed (p3_err holds 512 bytes). */
#define P3_WIRE_MSG_MAX 511
/* One name is "node/mesh" of two assimp strings (1024 bytes each at most). */
#define P3_WIRE_NAME_MAX 4096
/* All the names together: a legitimate scene at the limits stays far below. */
#define P3_WIRE_NAMES_MAX ((uint64_t) 64 << 20)

typedef struct p3_wire_header {
        char magic[4];
        uint32_t version;
        int32_t status;   /* 0: a mesh follows; a negative errno: the sentence follows */
        uint32_t msg_len; /* bytes of the sentence (status < 0), else 0 */
        int64_t nv, nf;
        int32_t n_src;
        uint32_t flags;       /* P3_WIRE_FACE_SRC */
        uint64_t names_bytes; /* the names section: Σ (4 + length) */
} p3_wire_header;

_Static_assert(sizeof(p3_wire_header) == 48, "the header has no padding");

/* Writes m as an answer to fd (a pipe: blocking writes, retried on EINTR). */
int p3_wire_write_mesh(int fd, const p3_mesh *m, p3_err *err);
/* Writes the failure r (a negative errno) with its sentence msg (cut to P3_WIRE_MSG_MAX). */
int p3_wire_write_error(int fd, int r, const char *msg, p3_err *err);

/* Fills buf with exactly n bytes. Returns 0, -ENODATA at the end of the stream before n bytes
 * (*got says how many came: the answer is truncated), or another negative errno with err set
 * by the reader (a timeout, a cancel, a read error). */
typedef int (*p3_wire_read_fn)(void *userdata, void *buf, size_t n, size_t *got, p3_err *err);

typedef enum p3_wire_result {
        P3_WIRE_MESH,      /* *ret holds the mesh */
        P3_WIRE_FAILED,    /* the helper's own failure: its errno returned, its sentence in err */
        P3_WIRE_MALFORMED, /* -EBADMSG, err says what was wrong */
        P3_WIRE_READ,      /* the reader failed (not -ENODATA): its code and sentence */
} p3_wire_result;

/* Reads one answer through read (up to and including the end of the stream) and checks it
 * against lim (max_faces, max_vertices; zero fields: the defaults). Returns 0 with the mesh
 * in *ret, or a negative errno; *kind says which of the four cases it was. */
int p3_wire_read(p3_wire_read_fn read, void *userdata, const p3_mesh_limits *lim, p3_mesh *ret,
                 p3_wire_result *kind, p3_err *err);
