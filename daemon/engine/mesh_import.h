/* SPDX-License-Identifier: MIT */
/* Mesh import: GLB, glTF, OBJ, PLY, STL and OFF bytes to a p3_mesh through assimp 5.2.
 *
 * assimp trusts its input more than a daemon may: it silently drops faces with out-of-range
 * indices, allocates whatever a header declares and aborts on some inputs (an empty buffer).
 * So every buffer is sniffed and its declared sizes and counts are checked against limits
 * before assimp sees it (mesh_sniff.c), assimp's log is watched during the import for
 * messages that mean "data was lost" (turned into errors), and the imported scene is
 * flattened with its node transforms into one triangle soup (mesh_import.c).
 *
 * Coordinates stay in object units, vertices stay as stored (nothing is welded: the pipeline
 * merges by its own rules later). Every failure returns a negative errno and writes one
 * sentence naming the input and the problem into err. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "mesh.h"

typedef struct p3_mesh_limits {
        size_t max_bytes;     /* input size (the file, or the buffer) */
        int64_t max_faces;    /* triangles after triangulation and instancing */
        int64_t max_vertices; /* vertices after instancing */
} p3_mesh_limits;

#define P3_MESH_MAX_BYTES_DEFAULT ((size_t) 512 * 1024 * 1024)
#define P3_MESH_MAX_FACES_DEFAULT ((int64_t) 5000000)
#define P3_MESH_MAX_VERTICES_DEFAULT ((int64_t) 10000000)

/* 512 MiB, 5,000,000 faces, 10,000,000 vertices. */
void p3_mesh_limits_default(p3_mesh_limits *lim);

/* The format of a buffer by its content: "glb", "gltf", "ply", "off", "stl" (binary or ASCII)
 * or "obj"; NULL when none fits. Never reads past size. */
const char *p3_mesh_format_detect(const void *buf, size_t size);

/* Import a mesh held in memory. format is one of "glb", "gltf", "obj", "ply", "stl", "off"
 * (any case), or NULL/"" to detect it from the content; name is only used in messages (NULL:
 * "mesh buffer"); lim NULL means the defaults. A glTF that references external buffers is
 * refused here (use p3_mesh_import_file or a GLB). On success *ret owns a fresh mesh
 * (release with p3_mesh_done). */
int p3_mesh_import_buffer(const void *buf, size_t size, const char *format, const char *name,
                          const p3_mesh_limits *lim, p3_mesh *ret, p3_err *err);

/* The whole content of fd (a regular file or a memfd, read from offset 0), refused before
 * reading when it is anything else or larger than lim->max_bytes. fd stays open. */
int p3_mesh_import_fd(int fd, const char *format, const char *name, const p3_mesh_limits *lim,
                      p3_mesh *ret, p3_err *err);

/* The whole content of fd as p3_mesh_import_fd reads it (pread from offset 0), refused before
 * reading when it is no regular file or memfd or larger than max_bytes; *ret is malloc'd. For
 * a reader that imports later, elsewhere (p3sam-import reads, then locks itself in). */
int p3_mesh_read_fd(int fd, const char *name, size_t max_bytes, void **ret, size_t *ret_size,
                    p3_err *err);

/* A file by path; format NULL: from the extension, else detected from the content. The only
 * variant that loads a .gltf with external buffers (relative URIs beside the file). */
int p3_mesh_import_file(const char *path, const char *format, const p3_mesh_limits *lim,
                        p3_mesh *ret, p3_err *err);

/* ---- internal: the checks before assimp sees the bytes (mesh_sniff.c) ------------------- */

/* The lower-case canonical name of a format argument ("GLB" -> "glb"), or NULL if unknown. */
const char *p3_mesh_format_canonical(const char *format);

/* Validate buf as the given canonical format: magic, header, declared sizes and counts against
 * lim, glTF extensions assimp cannot read (Draco) and external buffer URIs (allowed only when
 * allow_external: relative, inside the file's directory). For glTF and GLB, *ret_reduced gets
 * the bytes to import instead (malloc'd): the same file with only the JSON that geometry needs.
 * Returns 0 or a negative errno with a message that starts with name. */
int p3_mesh_precheck(const void *buf, size_t size, const char *format, const char *name,
                     const p3_mesh_limits *lim, bool allow_external, void **ret_reduced, size_t *ret_reduced_size,
                     p3_err *err);
