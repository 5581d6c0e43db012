/* SPDX-License-Identifier: MIT */
/* The output formats of a segmentation by name, so that p3samd, p3samctl and p3sam-run agree
 * on what "face-ids" or "x_aabb.glb" mean, and one call that writes any of them. */
#pragma once

#include <stdbool.h>

#include "error.h"
#include "export.h"
#include "render_parts.h"

typedef enum p3_out_format {
        P3_OUT_GLB,      /* coloured mesh, a node per part */
        P3_OUT_PLY,      /* binary PLY with face colours and labels */
        P3_OUT_JSON,     /* the report with the face labels */
        P3_OUT_PNG,      /* the picture of the parts */
        P3_OUT_FACE_IDS, /* upstream's NAME_face_ids.npy */
        P3_OUT_AABB,     /* upstream's NAME_aabb.npy */
        P3_OUT_AABB_GLB, /* upstream's NAME_aabb.glb */
        _P3_OUT_MAX,
        P3_OUT_INVALID = -1,
} p3_out_format;

/* The number of files in upstream's set (P3_UPSTREAM_SET). */
#define P3_UPSTREAM_FILES 5
extern const p3_out_format P3_UPSTREAM_SET[P3_UPSTREAM_FILES];

/* "glb", "ply", "json", "png", "face-ids", "aabb", "aabb-glb". */
const char *p3_out_format_name(p3_out_format f);
/* The format of one of those names, or P3_OUT_INVALID. */
p3_out_format p3_out_format_from_name(const char *name);
/* The format that a file name says (any case): *_face_ids.npy, *_aabb.npy, *_aabb.glb before
 * *.glb, *.ply, *.json, *.png; P3_OUT_INVALID for anything else. */
p3_out_format p3_out_format_from_path(const char *path);
/* Upstream's name of format f for the stem NAME: NAME.glb, NAME_aabb.npy, ... (malloc'ed),
 * or NULL without memory. */
char *p3_out_format_path(const char *stem, p3_out_format f);
/* path without the extension of its last component ("out/x.glb" → "out/x"), malloc'ed. */
char *p3_out_format_stem(const char *path);

/* Writes s as format f to fd (rep for JSON, may be NULL; ro for PNG, NULL: defaults). */
int p3_export_format(const p3_segmentation *s, const p3_report *rep, const p3_render_opts *ro,
                     p3_out_format f, int fd, p3_err *err);

/* One output: where, and in which format. */
typedef struct p3_out_spec {
        char *path;
        p3_out_format format;
} p3_out_spec;

/* The outputs of a command line: paths[n] (-o, in order), each in the format named
 * formats[i] (--format), or where formats or formats[i] is NULL, the one its name says; upstream
 * (--upstream-files) adds upstream's set for the stem of paths[0] (p3_out_format_stem),
 * leaving out the names already there. A name given twice, or a format that cannot be told,
 * fails with a sentence. *ret: n_ret specs (p3_out_specs_free). */
int p3_out_resolve(const char *const *paths, int n, const char *const *formats, bool upstream,
                   p3_out_spec **ret, int *n_ret, p3_err *err);
void p3_out_specs_free(p3_out_spec *specs, int n);
