/* SPDX-License-Identifier: MIT */
/* Output plumbing for the exporters: a growable in-memory buffer, so that a file is built
 * whole before a single byte reaches the caller's descriptor (an error midway leaves nothing
 * half-written), and a write-all that survives EINTR and short writes. */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* The first failing append latches `error` (a negative errno) and turns every later append
 * into a no-op returning it, so that a long run of appends can be checked once at the end. */
typedef struct p3_buf {
        uint8_t *data;
        size_t size, cap;
        int error;
} p3_buf;

void p3_buf_done(p3_buf *b);
#define _cleanup_buf_ _cleanup_(p3_buf_done)

/* Make room for n more bytes without changing size. */
int p3_buf_reserve(p3_buf *b, size_t n);
int p3_buf_append(p3_buf *b, const void *p, size_t n);
int p3_buf_fill(p3_buf *b, uint8_t byte, size_t n);
int p3_buf_printf(p3_buf *b, const char *fmt, ...) _printf_(2, 3);
/* Little-endian scalars, whatever the host order (GLB and binary PLY are little-endian). */
int p3_buf_put_u32le(p3_buf *b, uint32_t v);
int p3_buf_put_i32le(p3_buf *b, int32_t v);
int p3_buf_put_f32le(p3_buf *b, float v);
int p3_buf_put_u8(p3_buf *b, uint8_t v);

/* Write all n bytes, retrying on EINTR and short writes. Returns 0 or a negative errno
 * (-EPIPE for a reader that went away, if the caller ignores SIGPIPE as a daemon should). */
int p3_write_all(int fd, const void *p, size_t n);
/* Write the whole buffer, or nothing if an append had failed (returns that error). */
int p3_buf_write_fd(const p3_buf *b, int fd);
