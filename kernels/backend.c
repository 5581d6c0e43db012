/* SPDX-License-Identifier: MIT */
/* Backend-independent helpers around the ops table. */
#include "backend.h"

#include <errno.h>
#include <string.h>

size_t p3_dtype_size(p3_dtype t) {
        return t == P3_F16 || t == P3_BF16 ? 2 : 4;
}

static const char *const precision_names[] = {
        [P3_PRECISION_AUTO] = "auto",
        [P3_PRECISION_FP32] = "fp32",
        [P3_PRECISION_BF16] = "bf16",
        [P3_PRECISION_FP16] = "fp16",
};

const char *p3_precision_to_string(p3_precision p) {
        return p <= P3_PRECISION_AUTO ? precision_names[p] : "unknown";
}

int p3_precision_from_string(const char *s, p3_precision *ret) {
        for (size_t i = 0; i < sizeof(precision_names) / sizeof(precision_names[0]); i++)
                if (strcmp(s, precision_names[i]) == 0) {
                        *ret = (p3_precision) i;
                        return 0;
                }
        return -EINVAL;
}

p3_tensor p3_tensor_cols(const p3_tensor *t, int64_t c0, int64_t nc) {
        p3_tensor v = *t;
        v.data = (char *) t->data + (size_t) c0 * p3_dtype_size(t->dtype);
        v.cols = nc;
        v.ld = p3_ld(t);
        return v;
}

void p3_backend_free(p3_backend *be) {
        if (be)
                be->ops->destroy(be);
}

int p3_tensor_alloc(p3_backend *be, int64_t rows, int64_t cols, p3_tensor *ret) {
        size_t bytes = (size_t) rows * (size_t) cols * p3_dtype_size(be->act_dtype);
        void *p = NULL;
        int r = be->ops->alloc(be, bytes ? bytes : 1, &p);
        if (r < 0)
                return r;
        *ret = (p3_tensor) { .data = p, .dtype = be->act_dtype, .rows = rows, .cols = cols };
        return 0;
}

void p3_tensor_free(p3_backend *be, p3_tensor *t) {
        if (!t->data)
                return;
        size_t bytes = (size_t) t->rows * (size_t) p3_ld(t) * p3_dtype_size(t->dtype);
        be->ops->free(be, t->data, bytes ? bytes : 1);
        t->data = NULL;
}

int p3_ibuf_alloc(p3_backend *be, int64_t n, int32_t **ret) {
        size_t bytes = (size_t) n * sizeof(int32_t);
        void *p = NULL;
        int r = be->ops->alloc(be, bytes ? bytes : 1, &p);
        if (r < 0)
                return r;
        *ret = p;
        return 0;
}

int p3_ibuf_upload(p3_backend *be, const int32_t *host, int64_t n, int32_t **ret) {
        int32_t *p = NULL;
        int r = p3_ibuf_alloc(be, n, &p);
        if (r < 0)
                return r;
        if (n > 0) {
                r = be->ops->upload(be, p, host, (size_t) n * sizeof(int32_t));
                if (r < 0) {
                        p3_ibuf_free(be, p, n);
                        return r;
                }
        }
        *ret = p;
        return 0;
}

void p3_ibuf_free(p3_backend *be, int32_t *buf, int64_t n) {
        if (buf)
                be->ops->free(be, buf, n > 0 ? (size_t) n * sizeof(int32_t) : 1);
}

#ifndef P3_HAVE_CUDA
#include <stdio.h>

int p3_backend_cuda_new(const p3_backend_options *opt, char *why, size_t why_len,
                        p3_backend **ret) {
        if (why)
                snprintf(why, why_len, "no CUDA device (this build has no CUDA backend)");
        return -ENODEV;
}
#endif
