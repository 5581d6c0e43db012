/* SPDX-License-Identifier: MIT */
/* Upstream's NAME_face_ids.npy and NAME_aabb.npy (auto_mask.py save_mesh), which X-Part and
 * people's scripts np.load: NumPy's .npy format 1.0, little-endian, C order, with the header
 * laid out byte for byte as NumPy (>= 1.23) writes it, so that the files compare equal. */
#include "export.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "fdio.h"

#define NPY_ALIGN 64
/* NumPy pads the header so that the first axis could grow to this many digits in place. */
#define NPY_GROWTH_DIGITS 21

/* "\x93NUMPY", version 1.0, the header length, the header dict, spaces, '\n'. */
static void npy_header(p3_buf *b, const char *descr, const int64_t *shape, int ndim) {
        char dims[128] = "", first[24];
        size_t len = 0;

        for (int d = 0; d < ndim; d++)
                len += (size_t) snprintf(dims + len, sizeof(dims) - len, "%s%" PRId64,
                                         d ? ", " : "", shape[d]);
        if (ndim == 1)
                snprintf(dims + len, sizeof(dims) - len, ",");
        char dict[256];
        int n = snprintf(dict, sizeof(dict),
                         "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, dims);
        int spare = NPY_GROWTH_DIGITS - snprintf(first, sizeof(first), "%" PRId64, shape[0]);
        size_t hlen = (size_t) n + (size_t) MAX(spare, 0) + 1;
        size_t pad = NPY_ALIGN - (10 + hlen) % NPY_ALIGN;
        if (pad == NPY_ALIGN)
                pad = 0;
        p3_buf_append(b, "\x93NUMPY\x01\x00", 8);
        p3_buf_put_u8(b, (uint8_t) ((hlen + pad) & 0xff));
        p3_buf_put_u8(b, (uint8_t) ((hlen + pad) >> 8));
        p3_buf_append(b, dict, (size_t) n);
        p3_buf_fill(b, ' ', (size_t) MAX(spare, 0) + pad);
        p3_buf_put_u8(b, '\n');
}

static void put_u64le(p3_buf *b, uint64_t v) {
        p3_buf_put_u32le(b, (uint32_t) v);
        p3_buf_put_u32le(b, (uint32_t) (v >> 32));
}

static void put_f64le(p3_buf *b, double d) {
        uint64_t u;
        memcpy(&u, &d, sizeof(u));
        put_u64le(b, u);
}

static int npy_write(const p3_buf *b, int fd, const char *what, p3_err *err) {
        if (b->error < 0)
                return p3_errf(err, b->error, "cannot build %s: %s", what, p3_strerror(b->error));
        int r = p3_buf_write_fd(b, fd);
        if (r < 0)
                return p3_errf(err, r, "cannot write %s: %s", what, p3_strerror(r));
        return 0;
}

int p3_export_face_ids_npy(const p3_segmentation *s, int fd, p3_err *err) {
        _cleanup_buf_ p3_buf b = {};

        int r = p3_segmentation_check(s, err);
        if (r < 0)
                return r;
        int64_t nf = s->mesh->nf;
        npy_header(&b, "<i8", &nf, 1);
        p3_buf_reserve(&b, 8 * (size_t) nf);
        for (int64_t f = 0; f < nf; f++)
                put_u64le(&b, (uint64_t) (int64_t) s->face_ids[f]);
        return npy_write(&b, fd, "the face ids", err);
}

/* get_aabb_from_face_ids: the labels present among the faces, ascending, each with the min
 * and max of its faces' vertices. Computed here rather than taken from s->aabb, so that the
 * file holds upstream's definition whatever the caller's table says (a part without faces,
 * which np.unique would not see, is left out). Returns the number of boxes or -ENOMEM. */
static int plain_boxes(const p3_segmentation *s, double *boxes) {
        const p3_mesh *m = s->mesh;
        _cleanup_free_ double *all = malloc(sizeof(double) * 6 * (size_t) MAX(s->n_parts, 1));
        _cleanup_free_ bool *seen = calloc((size_t) MAX(s->n_parts, 1), sizeof(bool));
        int k = 0;

        if (!all || !seen)
                return -ENOMEM;
        for (int p = 0; p < s->n_parts; p++)
                for (int c = 0; c < 3; c++) {
                        all[6 * p + c] = INFINITY;
                        all[6 * p + 3 + c] = -INFINITY;
                }
        for (int64_t f = 0; f < m->nf; f++) {
                int p = p3_segmentation_part(s, s->face_ids[f]);
                if (p < 0)
                        continue;
                seen[p] = true;
                for (int corner = 0; corner < 3; corner++) {
                        const double *v = m->v + 3 * (int64_t) m->f[3 * f + corner];
                        for (int c = 0; c < 3; c++) {
                                all[6 * p + c] = MIN(all[6 * p + c], v[c]);
                                all[6 * p + 3 + c] = MAX(all[6 * p + 3 + c], v[c]);
                        }
                }
        }
        for (int p = 0; p < s->n_parts; p++)
                if (seen[p])
                        memcpy(boxes + 6 * (size_t) k++, all + 6 * (size_t) p, sizeof(double) * 6);
        return k;
}

int p3_export_aabb_npy(const p3_segmentation *s, int fd, p3_err *err) {
        _cleanup_buf_ p3_buf b = {};

        int r = p3_segmentation_check(s, err);
        if (r < 0)
                return r;
        _cleanup_free_ double *boxes = malloc(sizeof(double) * 6 * (size_t) MAX(s->n_parts, 1));
        int k = boxes ? plain_boxes(s, boxes) : -ENOMEM;
        if (k < 0)
                return p3_errf(err, -ENOMEM, "cannot compute the part boxes: out of memory");
        int64_t shape[3] = { k, 2, 3 };
        npy_header(&b, "<f8", shape, 3);
        for (int64_t i = 0; i < 6 * (int64_t) k; i++)
                put_f64le(&b, boxes[i]);
        return npy_write(&b, fd, "the part boxes", err);
}
