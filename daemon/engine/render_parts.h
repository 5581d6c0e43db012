/* SPDX-License-Identifier: MIT */
/* A picture of a segmentation, drawn on the CPU: the mesh flat-shaded (one fixed light in view
 * space, Lambert on both sides plus ambient), each part in its colour, unlabelled faces grey,
 * from four orthographic views tiled 2 x 2 (front, side; top, three-quarter), each fitted to
 * the mesh's bounds. A z-buffer rasteriser, so that the daemon needs no GPU or display. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "export.h"

#define P3_RENDER_DEFAULT_SIZE 1024
#define P3_RENDER_MIN_SIZE 64
#define P3_RENDER_MAX_SIZE 8192

typedef struct p3_render_opts {
        int size;         /* width and height in pixels, P3_RENDER_MIN_SIZE..MAX_SIZE */
        bool boxes;       /* outline each part's box (p3_segmentation_outline_boxes) */
        bool transparent; /* background transparent (0, 0, 0, 0) instead of white */
} p3_render_opts;

/* 1024 x 1024, no boxes, white background. */
void p3_render_opts_default(p3_render_opts *o);

/* The four views into rgba ([size][size][4], row by row from the top). The tiles are
 * size / 2 pixels square: front (looking down -z, y up) top left, side (looking down -x)
 * top right, top (looking down -y, -z up) bottom left, three-quarter (from +x +y +z) bottom
 * right. o may be NULL for the defaults. 0, or -EINVAL / -ENOMEM with a sentence. */
int p3_render_parts(const p3_segmentation *s, const p3_render_opts *o, uint8_t *rgba,
                    p3_err *err);

/* The picture as an 8-bit RGBA PNG (libpng), built in memory and written to fd in one go. */
int p3_export_png(const p3_segmentation *s, const p3_render_opts *o, int fd, p3_err *err);
