/* SPDX-License-Identifier: MIT */
#include "fdio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void p3_buf_done(p3_buf *b) {
        free(b->data);
        *b = (p3_buf) {};
}

int p3_buf_reserve(p3_buf *b, size_t n) {
        if (b->error < 0)
                return b->error;
        if (n <= b->cap - b->size)
                return 0;
        if (n > SIZE_MAX / 2 - b->size)
                return (b->error = -ENOMEM);
        /* doubling keeps appends amortised O(1) for files of hundreds of megabytes */
        size_t cap = MAX(MAX(b->cap * 2, b->size + n), (size_t) 4096);
        uint8_t *d = realloc(b->data, cap);
        if (!d)
                return (b->error = -ENOMEM);
        b->data = d;
        b->cap = cap;
        return 0;
}

int p3_buf_append(p3_buf *b, const void *p, size_t n) {
        int r = p3_buf_reserve(b, n);
        if (r < 0)
                return r;
        if (n > 0)
                memcpy(b->data + b->size, p, n);
        b->size += n;
        return 0;
}

int p3_buf_fill(p3_buf *b, uint8_t byte, size_t n) {
        int r = p3_buf_reserve(b, n);
        if (r < 0)
                return r;
        memset(b->data + b->size, byte, n);
        b->size += n;
        return 0;
}

int p3_buf_printf(p3_buf *b, const char *fmt, ...) {
        va_list ap;

        if (b->error < 0)
                return b->error;
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return (b->error = -EINVAL);
        /* +1 for the terminator vsnprintf writes; it is not counted in size */
        int r = p3_buf_reserve(b, (size_t) n + 1);
        if (r < 0)
                return r;
        va_start(ap, fmt);
        vsnprintf((char *) b->data + b->size, (size_t) n + 1, fmt, ap);
        va_end(ap);
        b->size += (size_t) n;
        return 0;
}

int p3_buf_put_u32le(p3_buf *b, uint32_t v) {
        const uint8_t le[4] = { (uint8_t) v, (uint8_t) (v >> 8), (uint8_t) (v >> 16),
                                (uint8_t) (v >> 24) };
        return p3_buf_append(b, le, sizeof(le));
}

int p3_buf_put_i32le(p3_buf *b, int32_t v) {
        return p3_buf_put_u32le(b, (uint32_t) v);
}

int p3_buf_put_f32le(p3_buf *b, float v) {
        uint32_t u;
        memcpy(&u, &v, sizeof(u));
        return p3_buf_put_u32le(b, u);
}

int p3_buf_put_u8(p3_buf *b, uint8_t v) {
        return p3_buf_append(b, &v, 1);
}

int p3_write_all(int fd, const void *p, size_t n) {
        const uint8_t *q = p;

        if (fd < 0)
                return -EBADF;
        while (n > 0) {
                /* large single writes can be refused (EINVAL) or truncated by some filesystems */
                ssize_t k = write(fd, q, MIN(n, (size_t) 1 << 30));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -EIO;
                q += k;
                n -= (size_t) k;
        }
        return 0;
}

int p3_buf_write_fd(const p3_buf *b, int fd) {
        if (b->error < 0)
                return b->error;
        return p3_write_all(fd, b->data, b->size);
}
