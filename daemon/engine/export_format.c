/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "export_format.h"
#include "macro.h"

const p3_out_format P3_UPSTREAM_SET[P3_UPSTREAM_FILES] = {
        P3_OUT_GLB, P3_OUT_PLY, P3_OUT_AABB_GLB, P3_OUT_AABB, P3_OUT_FACE_IDS,
};

static const struct {
        const char *name, *suffix; /* suffix as upstream appends it to NAME */
} format_table[_P3_OUT_MAX] = {
        [P3_OUT_GLB] = { "glb", ".glb" },
        [P3_OUT_PLY] = { "ply", ".ply" },
        [P3_OUT_JSON] = { "json", ".json" },
        [P3_OUT_PNG] = { "png", ".png" },
        [P3_OUT_FACE_IDS] = { "face-ids", "_face_ids.npy" },
        [P3_OUT_AABB] = { "aabb", "_aabb.npy" },
        [P3_OUT_AABB_GLB] = { "aabb-glb", "_aabb.glb" },
};

const char *p3_out_format_name(p3_out_format f) {
        return f >= 0 && f < _P3_OUT_MAX ? format_table[f].name : NULL;
}

p3_out_format p3_out_format_from_name(const char *name) {
        for (int f = 0; name && f < _P3_OUT_MAX; f++)
                if (strcmp(name, format_table[f].name) == 0)
                        return (p3_out_format) f;
        return P3_OUT_INVALID;
}

static bool ends_with(const char *s, const char *suffix) {
        size_t n = strlen(s), k = strlen(suffix);
        return n > k && strcasecmp(s + n - k, suffix) == 0;
}

p3_out_format p3_out_format_from_path(const char *path) {
        /* the longest suffix first: x_aabb.glb is the boxes, not a plain GLB */
        static const p3_out_format order[] = { P3_OUT_FACE_IDS, P3_OUT_AABB, P3_OUT_AABB_GLB,
                                               P3_OUT_GLB, P3_OUT_PLY, P3_OUT_JSON, P3_OUT_PNG };
        const char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        for (size_t i = 0; i < ELEMENTSOF(order); i++)
                if (ends_with(base, format_table[order[i]].suffix))
                        return order[i];
        return P3_OUT_INVALID;
}

char *p3_out_format_path(const char *stem, p3_out_format f) {
        char *s;
        if (f < 0 || f >= _P3_OUT_MAX || asprintf(&s, "%s%s", stem, format_table[f].suffix) < 0)
                return NULL;
        return s;
}

char *p3_out_format_stem(const char *path) {
        const char *slash = strrchr(path, '/');
        const char *dot = strrchr(slash ? slash + 1 : path, '.');
        /* ".hidden" has no extension */
        if (!dot || dot == (slash ? slash + 1 : path))
                return strdup(path);
        return strndup(path, (size_t) (dot - path));
}

int p3_export_format(const p3_segmentation *s, const p3_report *rep, const p3_render_opts *ro,
                     p3_out_format f, int fd, p3_err *err) {
        switch (f) {
        case P3_OUT_GLB:
                return p3_export_glb(s, fd, err);
        case P3_OUT_PLY:
                return p3_export_ply(s, fd, false, err);
        case P3_OUT_JSON:
                return p3_export_json(s, rep, fd, err);
        case P3_OUT_PNG:
                return p3_export_png(s, ro, fd, err);
        case P3_OUT_FACE_IDS:
                return p3_export_face_ids_npy(s, fd, err);
        case P3_OUT_AABB:
                return p3_export_aabb_npy(s, fd, err);
        case P3_OUT_AABB_GLB:
                return p3_export_aabb_glb(s, fd, err);
        default:
                return p3_errf(err, -EINVAL, "unknown output format %d", (int) f);
        }
}

void p3_out_specs_free(p3_out_spec *specs, int n) {
        for (int i = 0; specs && i < n; i++)
                free(specs[i].path);
        free(specs);
}

static int find_path(const p3_out_spec *specs, int n, const char *path) {
        for (int i = 0; i < n; i++)
                if (strcmp(specs[i].path, path) == 0)
                        return i;
        return -1;
}

/* Appends path (taken over) unless it is there already in the same format. */
static int add_spec(p3_out_spec *specs, int *n, char *path, p3_out_format f, p3_err *err) {
        if (!path)
                return p3_errf(err, -ENOMEM, "out of memory");
        int i = find_path(specs, *n, path);
        if (i >= 0 && specs[i].format == f) {
                free(path);
                return 0;
        }
        if (i >= 0) {
                int r = p3_errf(err, -EINVAL, "%s is named twice, as %s and as %s", path,
                                p3_out_format_name(specs[i].format), p3_out_format_name(f));
                free(path);
                return r;
        }
        specs[(*n)++] = (p3_out_spec) { .path = path, .format = f };
        return 0;
}

static int resolve_given(const char *const *paths, int n, const char *const *formats,
                         p3_out_spec *specs, int *n_specs, p3_err *err) {
        for (int i = 0; i < n; i++) {
                const char *name = formats ? formats[i] : NULL;
                p3_out_format f = name ? p3_out_format_from_name(name)
                                       : p3_out_format_from_path(paths[i]);
                if (f == P3_OUT_INVALID && name)
                        return p3_errf(err, -EINVAL, "unknown format \"%s\": use glb, ply, "
                                       "json, png, face-ids, aabb or aabb-glb", formats[i]);
                if (f == P3_OUT_INVALID)
                        return p3_errf(err, -EINVAL, "cannot tell the format of %s from its "
                                       "name: end it in .glb, .ply, .json, .png, "
                                       "_face_ids.npy, _aabb.npy or _aabb.glb, or give "
                                       "--format", paths[i]);
                if (find_path(specs, *n_specs, paths[i]) >= 0)
                        return p3_errf(err, -EINVAL, "%s is named twice", paths[i]);
                int r = add_spec(specs, n_specs, strdup(paths[i]), f, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int p3_out_resolve(const char *const *paths, int n, const char *const *formats, bool upstream,
                   p3_out_spec **ret, int *n_ret, p3_err *err) {
        if (n < 1)
                return p3_errf(err, -EINVAL, "no output named");
        p3_out_spec *specs = calloc((size_t) n + P3_UPSTREAM_FILES, sizeof(*specs));
        int n_specs = 0;
        if (!specs)
                return p3_errf(err, -ENOMEM, "out of memory");
        int r = resolve_given(paths, n, formats, specs, &n_specs, err);
        char *stem = r >= 0 && upstream ? p3_out_format_stem(paths[0]) : NULL;
        if (r >= 0 && upstream && !stem)
                r = p3_errf(err, -ENOMEM, "out of memory");
        for (int i = 0; r >= 0 && upstream && i < P3_UPSTREAM_FILES; i++)
                r = add_spec(specs, &n_specs, p3_out_format_path(stem, P3_UPSTREAM_SET[i]),
                             P3_UPSTREAM_SET[i], err);
        free(stem);
        if (r < 0) {
                p3_out_specs_free(specs, n_specs);
                return r;
        }
        *ret = specs;
        *n_ret = n_specs;
        return 0;
}
