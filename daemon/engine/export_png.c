/* SPDX-License-Identifier: MIT */
/* The picture of the parts as a PNG: render_parts.c draws it, libpng encodes it into memory,
 * and the whole file reaches the descriptor in one write, as with the other writers. */
#include <errno.h>
#include <png.h>
#include <stdlib.h>

#include "fdio.h"
#include "render_parts.h"

static void png_to_buf(png_structp png, png_bytep data, size_t n) {
        p3_buf_append(png_get_io_ptr(png), data, n);
}

static void png_no_flush(png_structp png) {
        (void) png;
}

/* libpng reports errors by longjmp: nothing in here may need cleaning up on the way out
 * except what png_destroy_write_struct frees, so the rows are the caller's. */
static int png_encode(const uint8_t *rgba, int size, png_bytep *rows, p3_buf *out) {
        png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
        if (!png)
                return -ENOMEM;
        png_infop info = png_create_info_struct(png);
        if (!info) {
                png_destroy_write_struct(&png, NULL);
                return -ENOMEM;
        }
        if (setjmp(png_jmpbuf(png))) {
                png_destroy_write_struct(&png, &info);
                return -ENOMEM;
        }
        png_set_write_fn(png, out, png_to_buf, png_no_flush);
        png_set_IHDR(png, info, (png_uint_32) size, (png_uint_32) size, 8, PNG_COLOR_TYPE_RGBA,
                     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        /* flat colours compress well at a low level; the higher ones cost time for little */
        png_set_compression_level(png, 3);
        for (int y = 0; y < size; y++)
                rows[y] = (png_bytep) rgba + 4 * (size_t) y * size;
        png_set_rows(png, info, rows);
        png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
        png_destroy_write_struct(&png, &info);
        return out->error;
}

int p3_export_png(const p3_segmentation *s, const p3_render_opts *o, int fd, p3_err *err) {
        p3_render_opts def;
        _cleanup_buf_ p3_buf out = {};

        if (!o) {
                p3_render_opts_default(&def);
                o = &def;
        }
        /* the renderer checks the size; check it here too before sizing the buffers by it */
        if (o->size < P3_RENDER_MIN_SIZE || o->size > P3_RENDER_MAX_SIZE)
                return p3_errf(err, -EINVAL, "the picture's size must be between %d and %d pixels",
                               P3_RENDER_MIN_SIZE, P3_RENDER_MAX_SIZE);
        _cleanup_free_ uint8_t *rgba = malloc(4 * (size_t) o->size * o->size);
        _cleanup_free_ png_bytep *rows = malloc(sizeof(png_bytep) * (size_t) o->size);
        if (!rgba || !rows)
                return p3_errf(err, -ENOMEM, "cannot draw the picture: out of memory");
        int r = p3_render_parts(s, o, rgba, err);
        if (r < 0)
                return r;
        r = png_encode(rgba, o->size, rows, &out);
        if (r < 0)
                return p3_errf(err, r, "cannot encode the PNG: %s", p3_strerror(r));
        r = p3_buf_write_fd(&out, fd);
        if (r < 0)
                return p3_errf(err, r, "cannot write the PNG: %s", p3_strerror(r));
        return 0;
}
