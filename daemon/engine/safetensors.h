/* SPDX-License-Identifier: MIT */
/* safetensors files: a read-only mmap view with a validated header, and a writer.
 * Layout: u64 LE header length H, H bytes of JSON {name: {dtype, shape, data_offsets}},
 * optional "__metadata__" (string -> string), then the raw little-endian data. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "error.h"

typedef enum st_dtype {
        ST_F32,
        ST_F16,
        ST_BF16,
        ST_F64,
        ST_I64,
        ST_I32,
        ST_U8,
        ST_BOOL,
        _ST_DTYPE_MAX,
} st_dtype;

#define ST_MAX_DIMS 8

typedef struct st_tensor {
        char *name;
        st_dtype dtype;
        int ndim;
        int64_t shape[ST_MAX_DIMS];
        int64_t numel;
        size_t nbytes;
        const void *data; /* points into the mapping */
} st_tensor;

/* What a file was when it was opened. Size and mtime tell whether its contents changed since;
 * dev and ino tell whether a path still names it (a rename over it keeps ours intact). */
typedef struct st_identity {
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtime;
} st_identity;

typedef struct st_file {
        char *path;
        void *map;
        size_t size;
        int fd;         /* kept open for st_read() and st_check_unchanged(); -1 for buffers */
        st_identity id; /* at open (st_open only) */
        st_tensor *tensors; /* in header order */
        size_t n_tensors;
        char **meta_keys, **meta_values; /* "__metadata__" entries */
        size_t n_meta;
        bool mapped; /* map came from mmap() (st_open), not from the caller (st_open_buffer) */
} st_file;

size_t st_dtype_size(st_dtype t);
const char *st_dtype_name(st_dtype t);

/* Map and validate a file: header length sane, JSON parses, every entry well-formed, offsets
 * inside the data section, not overlapping, nbytes == numel * dtype size. On failure returns a
 * negative errno and a one-line message naming the file and the problem. */
int st_open(const char *path, st_file **ret, p3_err *err);
/* Same, from a buffer the caller keeps alive (no mmap). */
int st_open_buffer(const void *buf, size_t size, const char *name, st_file **ret, p3_err *err);
void st_close(st_file *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(st_file *, st_close);

/* 0 if the file f was opened from still has the size and mtime it had then, else -ESTALE and
 * the sentence "<path> changed on disk since it was opened; reload to use the new file".
 * Buffers (st_open_buffer) have no file and always pass. */
int st_check_unchanged(const st_file *f, p3_err *err);
/* Read nbytes at offset of the opened file through the kept descriptor, not the mapping: once
 * the file has been truncated in place, touching the mapping's lost pages is SIGBUS, while a
 * read comes back short, which this reports as -ESTALE (as st_check_unchanged). -EINVAL for a
 * range outside the file as opened, -EBADF for a buffer. */
int st_read(const st_file *f, uint64_t offset, void *dst, size_t nbytes, p3_err *err);
/* The identity of whatever path names now (stat, following links); negative errno if none. */
int st_identity_of_path(const char *path, st_identity *ret);
/* Same inode, size and mtime: the same file, as far as the kernel tells. */
bool st_identity_equal(const st_identity *a, const st_identity *b);

const st_tensor *st_find(const st_file *f, const char *name);
/* Parse a dtype string ("F32", ...); negative errno if unknown. */
int st_dtype_from_string(const char *s, st_dtype *ret);
const char *st_meta(const st_file *f, const char *key);

/* Convert any float tensor (F32/F16/BF16/F64) to F32, any integer tensor (I64/I32/U8/BOOL) to
 * I64/I32. dst holds numel elements. -EINVAL if the kind does not match. */
int st_to_f32(const st_tensor *t, float *dst);
int st_to_i64(const st_tensor *t, int64_t *dst);
int st_to_i32(const st_tensor *t, int32_t *dst);

/* Writer: tensors are written in the order they were added. Data is referenced, not copied,
 * until st_writer_write*() returns. */
typedef struct st_writer st_writer;
int st_writer_new(st_writer **ret);
void st_writer_free(st_writer *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(st_writer *, st_writer_free);
int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                  const void *data);
int st_writer_add_meta(st_writer *w, const char *key, const char *value);
/* Add a tensor whose bytes are produced only when the file is written: fill(userdata, dst,
 * nbytes) must fill dst with nbytes of little-endian data and return 0 or a negative errno.
 * Lets a caller stream a checkpoint larger than it wants to hold in memory. */
typedef int (*st_fill_fn)(void *userdata, void *dst, size_t nbytes);
int st_writer_add_fill(st_writer *w, const char *name, st_dtype dtype, int ndim,
                       const int64_t *shape, st_fill_fn fill, void *userdata);
/* Write to an open descriptor (from its current position). */
int st_writer_write_fd(st_writer *w, int fd, p3_err *err);
/* Write to path via a temporary file in the same directory, renamed only on success. */
int st_writer_write_file(st_writer *w, const char *path, p3_err *err);

/* Float conversions used across the engine. */
float p3_half_to_float(uint16_t h);
uint16_t p3_float_to_half(float f);
float p3_bf16_to_float(uint16_t h);
