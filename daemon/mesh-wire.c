/* SPDX-License-Identifier: MIT */
#include "mesh-wire.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"

/* ---- writing (the helper) ------------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t n, p3_err *err) {
        const uint8_t *p = buf;
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return p3_errf(err, -errno, "cannot write the answer: %m");
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

int p3_wire_write_mesh(int fd, const p3_mesh *m, p3_err *err) {
        p3_wire_header h = { .magic = P3_WIRE_MAGIC, .version = P3_WIRE_VERSION,
                             .nv = m->nv, .nf = m->nf, .n_src = m->n_src,
                             .flags = m->face_src ? P3_WIRE_FACE_SRC : 0 };
        for (int32_t i = 0; i < m->n_src; i++)
                h.names_bytes += 4 + (m->src_names[i] ? strlen(m->src_names[i]) : 0);
        int r = write_all(fd, &h, sizeof(h), err);
        if (r >= 0)
                r = write_all(fd, m->v, (size_t) m->nv * 3 * sizeof(double), err);
        if (r >= 0)
                r = write_all(fd, m->f, (size_t) m->nf * 3 * sizeof(int32_t), err);
        if (r >= 0 && m->face_src)
                r = write_all(fd, m->face_src, (size_t) m->nf * sizeof(int32_t), err);
        for (int32_t i = 0; r >= 0 && i < m->n_src; i++) {
                const char *s = m->src_names[i] ? m->src_names[i] : "";
                uint32_t len = (uint32_t) strlen(s);
                r = write_all(fd, &len, sizeof(len), err);
                if (r >= 0)
                        r = write_all(fd, s, len, err);
        }
        if (r >= 0)
                r = write_all(fd, P3_WIRE_TRAILER, 4, err);
        return r;
}

int p3_wire_write_error(int fd, int r, const char *msg, p3_err *err) {
        size_t len = strnlen(msg, P3_WIRE_MSG_MAX);
        p3_wire_header h = { .magic = P3_WIRE_MAGIC, .version = P3_WIRE_VERSION,
                             .status = r < 0 ? r : -EIO, .msg_len = (uint32_t) len };
        int k = write_all(fd, &h, sizeof(h), err);
        if (k >= 0)
                k = write_all(fd, msg, len, err);
        if (k >= 0)
                k = write_all(fd, P3_WIRE_TRAILER, 4, err);
        return k;
}

/* ---- reading (the daemon) ------------------------------------------------------------- */

typedef struct wire_in {
        p3_wire_read_fn read;
        void *userdata;
        uint64_t offset; /* bytes read so far, for the messages */
        bool read_failed; /* the reader's own failure, not the answer's */
        p3_err *err;
} wire_in;

#define malformed(err, ...) p3_errf((err), -EBADMSG, __VA_ARGS__)

static int get(wire_in *in, void *buf, size_t n, const char *what) {
        size_t got = 0;
        int r = in->read(in->userdata, buf, n, &got, in->err);
        if (r == -ENODATA)
                return malformed(in->err, "the answer ends after %" PRIu64 " bytes, within %s",
                                 in->offset + got, what);
        if (r < 0) {
                in->read_failed = true;
                return r;
        }
        in->offset += n;
        return 0;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if there is none: a sentence
 * goes out on the bus, which refuses strings that are not UTF-8. */
static size_t utf8_len(const unsigned char *s, size_t n) {
        size_t len = s[0] < 0x80 ? 1 : s[0] >= 0xf0 && s[0] < 0xf5 ? 4 : s[0] >= 0xe0 ? 3
                   : s[0] >= 0xc2 ? 2 : 0;
        if (len == 0 || len > n)
                return 0;
        for (size_t i = 1; i < len; i++)
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
        return len;
}

/* The helper's sentence into msg (P3_WIRE_MSG_MAX + 1 bytes), made printable: control
 * characters and broken UTF-8 become '?'. */
static int read_sentence(wire_in *in, const p3_wire_header *h, char *msg) {
        if (h->status < -4095)
                return malformed(in->err, "the answer's status %" PRId32 " is no errno",
                                 h->status);
        if (h->msg_len == 0 || h->msg_len > P3_WIRE_MSG_MAX)
                return malformed(in->err, "the answer's sentence has %" PRIu32 " bytes (1 to %d)",
                                 h->msg_len, P3_WIRE_MSG_MAX);
        int r = get(in, msg, h->msg_len, "the sentence");
        if (r < 0)
                return r;
        for (size_t i = 0; i < h->msg_len;) {
                size_t k = utf8_len((unsigned char *) msg + i, h->msg_len - i);
                if (k == 0 || (unsigned char) msg[i] < 0x20 || msg[i] == 0x7f) {
                        msg[i++] = '?';
                        continue;
                }
                i += k;
        }
        msg[h->msg_len] = '\0';
        return 0;
}

static int check_header(wire_in *in, const p3_wire_header *h, const p3_mesh_limits *lim) {
        if (memcmp(h->magic, P3_WIRE_MAGIC, 4) != 0)
                return malformed(in->err, "the answer does not begin with the importer's magic");
        if (h->version != P3_WIRE_VERSION)
                return malformed(in->err, "the answer is of version %" PRIu32 ", not %d (is "
                                 "p3sam-import from another build?)", h->version,
                                 P3_WIRE_VERSION);
        if (h->status < 0)
                return h->flags || h->nv || h->nf || h->n_src || h->names_bytes
                               ? malformed(in->err, "the answer is an error with a mesh")
                               : 0;
        if (h->status > 0 || h->msg_len)
                return malformed(in->err, "the answer is neither a mesh nor an error");
        if (h->nf < 1 || h->nf > lim->max_faces)
                return malformed(in->err, "the answer has %" PRId64 " triangles (1 to %" PRId64
                                 ")", h->nf, lim->max_faces);
        if (h->nv < 3 || h->nv > lim->max_vertices)
                return malformed(in->err, "the answer has %" PRId64 " vertices (3 to %" PRId64
                                 ")", h->nv, lim->max_vertices);
        if (h->n_src < 0 || h->n_src > h->nf + h->nv)
                return malformed(in->err, "the answer has %" PRId32 " source names for %" PRId64
                                 " triangles", h->n_src, h->nf);
        if (h->flags & ~P3_WIRE_FACE_SRC)
                return malformed(in->err, "the answer has unknown flags 0x%" PRIx32, h->flags);
        if ((h->flags & P3_WIRE_FACE_SRC) && h->n_src == 0)
                return malformed(in->err, "the answer's triangles name sources it does not have");
        if (h->names_bytes < 4 * (uint64_t) h->n_src || h->names_bytes > P3_WIRE_NAMES_MAX)
                return malformed(in->err, "the answer's names take %" PRIu64 " bytes (%" PRIu64
                                 " to %" PRIu64 ")", h->names_bytes, 4 * (uint64_t) h->n_src,
                                 P3_WIRE_NAMES_MAX);
        return 0;
}

static int read_vertices(wire_in *in, p3_mesh *m) {
        size_t n = (size_t) m->nv * 3;
        m->v = malloc(n * sizeof(double));
        if (!m->v)
                return -ENOMEM;
        int r = get(in, m->v, n * sizeof(double), "the vertices");
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (!isfinite(m->v[i]))
                        return malformed(in->err, "vertex %zu of the answer is not finite", i / 3);
        return 0;
}

static int read_faces(wire_in *in, p3_mesh *m, bool face_src) {
        size_t n = (size_t) m->nf * 3;
        m->f = malloc(n * sizeof(int32_t));
        if (!m->f)
                return -ENOMEM;
        int r = get(in, m->f, n * sizeof(int32_t), "the triangles");
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (m->f[i] < 0 || m->f[i] >= m->nv)
                        return malformed(in->err, "triangle %zu of the answer uses vertex %" PRId32
                                         " of %" PRId64, i / 3, m->f[i], m->nv);
        if (!face_src)
                return 0;
        m->face_src = malloc((size_t) m->nf * sizeof(int32_t));
        if (!m->face_src)
                return -ENOMEM;
        r = get(in, m->face_src, (size_t) m->nf * sizeof(int32_t), "the triangles' sources");
        if (r < 0)
                return r;
        for (int64_t i = 0; i < m->nf; i++)
                if (m->face_src[i] < 0 || m->face_src[i] >= m->n_src)
                        return malformed(in->err, "triangle %" PRId64 " of the answer names "
                                         "source %" PRId32 " of %" PRId32, i, m->face_src[i],
                                         m->n_src);
        return 0;
}

static int read_names(wire_in *in, p3_mesh *m, uint64_t names_bytes) {
        /* n_src is set as the names arrive, so that p3_mesh_done frees what was read */
        int32_t n = m->n_src;
        m->n_src = 0;
        m->src_names = calloc((size_t) n + 1, sizeof(char *));
        if (!m->src_names)
                return -ENOMEM;
        uint64_t total = 0;
        for (int32_t i = 0; i < n; i++) {
                uint32_t len;
                int r = get(in, &len, sizeof(len), "the source names");
                if (r < 0)
                        return r;
                total += 4 + (uint64_t) len;
                if (len > P3_WIRE_NAME_MAX || total > names_bytes)
                        return malformed(in->err, "source name %" PRId32 " of the answer has %"
                                         PRIu32 " bytes, past its bounds", i, len);
                char *s = malloc(len + 1);
                if (!s)
                        return -ENOMEM;
                m->src_names[m->n_src++] = s;
                r = get(in, s, len, "the source names");
                if (r < 0)
                        return r;
                s[len] = '\0';
                if (strlen(s) != len)
                        return malformed(in->err, "source name %" PRId32 " of the answer holds "
                                         "a NUL byte", i);
        }
        if (total != names_bytes)
                return malformed(in->err, "the answer's names take %" PRIu64 " bytes, not the %"
                                 PRIu64 " its header says", total, names_bytes);
        return 0;
}

static int read_end(wire_in *in) {
        char t[4];
        int r = get(in, t, sizeof(t), "the trailer");
        if (r < 0)
                return r;
        if (memcmp(t, P3_WIRE_TRAILER, 4) != 0)
                return malformed(in->err, "the answer's trailer is wrong after %" PRIu64
                                 " bytes", in->offset - 4);
        uint8_t extra;
        size_t got;
        r = in->read(in->userdata, &extra, 1, &got, in->err);
        if (r == 0)
                return malformed(in->err, "the answer goes on past its end (%" PRIu64 " bytes)",
                                 in->offset);
        if (r != -ENODATA) {
                in->read_failed = true;
                return r;
        }
        return 0;
}

static int read_mesh(wire_in *in, const p3_wire_header *h, p3_mesh *ret) {
        _cleanup_(p3_mesh_done) p3_mesh m = { .nv = h->nv, .nf = h->nf, .n_src = h->n_src };
        int r = read_vertices(in, &m);
        if (r >= 0)
                r = read_faces(in, &m, h->flags & P3_WIRE_FACE_SRC);
        if (r >= 0)
                r = read_names(in, &m, h->names_bytes);
        if (r >= 0)
                r = read_end(in);
        if (r < 0)
                return r;
        *ret = m;
        m = (p3_mesh) {};
        return 0;
}

int p3_wire_read(p3_wire_read_fn read, void *userdata, const p3_mesh_limits *lim, p3_mesh *ret,
                 p3_wire_result *kind, p3_err *err) {
        p3_mesh_limits l;
        p3_mesh_limits_default(&l);
        if (lim && lim->max_faces > 0)
                l.max_faces = lim->max_faces;
        if (lim && lim->max_vertices > 0)
                l.max_vertices = lim->max_vertices;
        l.max_faces = MIN(l.max_faces, (int64_t) INT32_MAX);
        l.max_vertices = MIN(l.max_vertices, (int64_t) INT32_MAX);

        /* the helper's sentence is only worth reporting from a well-formed answer: collected
         * aside, so that a malformed one is reported as such */
        p3_err aside = {};
        wire_in in = { .read = read, .userdata = userdata, .err = &aside };
        p3_wire_header h;
        int r = get(&in, &h, sizeof(h), "the header");
        if (r >= 0)
                r = check_header(&in, &h, &l);
        if (r >= 0 && h.status < 0) {
                char msg[P3_WIRE_MSG_MAX + 1];
                r = read_sentence(&in, &h, msg);
                if (r >= 0)
                        r = read_end(&in);
                if (r >= 0) {
                        *kind = P3_WIRE_FAILED;
                        return p3_errf(err, h.status, "%s", msg);
                }
        } else if (r >= 0) {
                r = read_mesh(&in, &h, ret);
                if (r >= 0) {
                        *kind = P3_WIRE_MESH;
                        return 0;
                }
        }
        /* out of memory here is the daemon's failure, not the answer's */
        *kind = in.read_failed || r == -ENOMEM ? P3_WIRE_READ : P3_WIRE_MALFORMED;
        if (r == -ENOMEM && !aside.msg[0])
                p3_errf(&aside, r, "out of memory for the imported mesh");
        return p3_errf(err, r, "%s", aside.msg);
}
