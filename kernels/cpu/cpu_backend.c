/* SPDX-License-Identifier: MIT */
/* The CPU backend: host memory with the same accounting as a device arena, FP32 weights
 * referenced in place (no copy), ops in the other cpu_*.c files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_ops.h"
#include "macro.h"

/* OpenBLAS's own threads would fight ours (we split work across OpenMP threads and call
 * single-threaded sgemm); the symbol is absent from other BLAS builds, hence weak. */
extern void openblas_set_num_threads(int n) __attribute__((weak));
extern char *openblas_get_config(void) __attribute__((weak));

static int cpu_alloc(p3_backend *be, size_t bytes, void **ret) {
        if (be->limit_bytes && be->cur_bytes + bytes > be->limit_bytes)
                return -ENOMEM;
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes) != 0)
                return -ENOMEM;
        be->cur_bytes += bytes;
        be->peak_bytes = MAX(be->peak_bytes, be->cur_bytes);
        *ret = p;
        return 0;
}

static void cpu_free(p3_backend *be, void *ptr, size_t bytes) {
        if (!ptr)
                return;
        free(ptr);
        be->cur_bytes -= MIN(bytes, be->cur_bytes);
}

static int cpu_copy(p3_backend *be, void *dst, const void *src, size_t bytes) {
        memcpy(dst, src, bytes);
        return 0;
}

static int cpu_sync(p3_backend *be) {
        return 0;
}

static int cpu_weight_upload(p3_backend *be, const float *host, int64_t rows, int64_t cols,
                             p3_tensor *ret) {
        /* FP32 is our storage type: reference the caller's copy (the mapping). */
        *ret = (p3_tensor) { .data = (void *) host, .dtype = P3_F32, .rows = rows, .cols = cols };
        return 0;
}

static void cpu_weight_free(p3_backend *be, p3_tensor *t) {
        t->data = NULL;
}

static void cpu_destroy(p3_backend *be) {
        free(be);
}

static const p3_backend_ops cpu_ops = {
        .name = "cpu",
        .destroy = cpu_destroy,
        .alloc = cpu_alloc,
        .free = cpu_free,
        .upload = cpu_copy,
        .download = cpu_copy,
        .sync = cpu_sync,
        .weight_upload = cpu_weight_upload,
        .weight_free = cpu_weight_free,
        .linear = cpu_linear,
        .layernorm = cpu_layernorm,
        .gelu = cpu_gelu,
        .add = cpu_add,
        .subm_conv = cpu_subm_conv,
        .attention = cpu_attention,
        .gather_rows = cpu_gather_rows,
        .gather_add = cpu_gather_add,
        .segment_max = cpu_segment_max,
        .to_host_f32 = cpu_to_host_f32,
        .heads = cpu_heads,
};

int p3_backend_cpu_new(const p3_backend_options *opt, p3_backend **ret) {
        p3_backend *be = calloc(1, sizeof(*be));
        if (!be)
                return -ENOMEM;
        be->ops = &cpu_ops;
        be->act_dtype = P3_F32;
        be->threads = opt && opt->threads > 0 ? opt->threads : (int) sysconf(_SC_NPROCESSORS_ONLN);
        be->threads = MAX(be->threads, 1);
        be->limit_bytes = opt ? opt->limit_bytes : 0;
        if (openblas_set_num_threads)
                openblas_set_num_threads(1);
        snprintf(be->device, sizeof(be->device), "CPU (%d thread%s, %s)", be->threads,
                 be->threads == 1 ? "" : "s", openblas_get_config ? "OpenBLAS" : "CBLAS");
        *ret = be;
        return 0;
}
