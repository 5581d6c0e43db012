/* SPDX-License-Identifier: MIT */
/* The CPU backend: host memory with the same accounting as a device arena, FP32 weights
 * referenced in place (no copy), ops in the other cpu_*.c files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_bf16.h"
#include "cpu_dnnl.h"
#include "cpu_ops.h"
#include "macro.h"

static int cpu_alloc(p3_backend *be, size_t bytes, void **ret) {
        if (bytes > p3_backend_room(be))
                return -ENOMEM;
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes) != 0)
                return -ENOMEM;
        p3_backend_took(be, bytes);
        *ret = p;
        return 0;
}

static void cpu_free(p3_backend *be, void *ptr, size_t bytes) {
        if (!ptr)
                return;
        free(ptr);
        p3_backend_gave(be, bytes);
}

static int cpu_copy(p3_backend *be, void *dst, const void *src, size_t bytes) {
        memcpy(dst, src, bytes);
        return 0;
}

static int cpu_sync(p3_backend *be) {
        return 0;
}

/* FP32: reference the caller's copy. BF16: matrices converted once, here, into BF16 (half the
 * memory, the GEMM's input type); vectors (biases, norms) copied as FP32, since they are
 * added in FP32. Either way the copy is accounted like any other backend memory. */
static int cpu_weight_upload(p3_backend *be, const float *host, int64_t rows, int64_t cols,
                             p3_tensor *ret) {
        if (!be->weights_copied) {
                *ret = (p3_tensor) { .data = (void *) host, .dtype = P3_F32, .rows = rows,
                                     .cols = cols };
                return 0;
        }
        p3_dtype t = rows > 1 ? be->weight_dtype : P3_F32;
        size_t n = (size_t) rows * (size_t) cols;
        void *p = NULL;
        int r = cpu_alloc(be, MAX(n, (size_t) 1) * p3_dtype_size(t), &p);
        if (r < 0)
                return r;
        if (t == P3_BF16)
                cpu_f32_to_bf16(host, p, (int64_t) n);
        else
                memcpy(p, host, n * sizeof(float));
        *ret = (p3_tensor) { .data = p, .dtype = t, .rows = rows, .cols = cols };
        return 0;
}

static void cpu_weight_free(p3_backend *be, p3_tensor *t) {
        if (be->weights_copied && t->data) {
                size_t n = (size_t) t->rows * (size_t) t->cols;
                cpu_free(be, t->data, MAX(n, (size_t) 1) * p3_dtype_size(t->dtype));
        }
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
        .check_finite = cpu_check_finite,
};

p3_precision p3_cpu_auto_precision(char *why, size_t why_len) {
        const char *isa = cpu_has_amx_bf16() ? "AMX-BF16" : cpu_has_avx512_bf16() ? "AVX512-BF16" : NULL;
        if (cpu_dnnl_init() < 0 || !cpu_dnnl_isa()) {
                if (why)
                        snprintf(why, why_len, "fp32: no oneDNN BF16 matrix product here");
                return P3_PRECISION_FP32;
        }
        if (!isa) {
                if (why)
                        snprintf(why, why_len, "fp32: this CPU has neither AMX-BF16 nor AVX512-BF16");
                return P3_PRECISION_FP32;
        }
        if (why)
                snprintf(why, why_len, "bf16: the CPU has %s", isa);
        return P3_PRECISION_BF16;
}

/* The precision asked for, resolved for this CPU: AUTO picks; FP16 runs as BF16 (half-precision
 * weights, BF16 products); BF16 needs the instructions and oneDNN. */
static int resolve_precision(p3_precision asked, p3_precision *ret) {
        if (asked == P3_PRECISION_AUTO) {
                *ret = p3_cpu_auto_precision(NULL, 0);
                return 0;
        }
        if (asked == P3_PRECISION_FP32) {
                *ret = asked;
                return 0;
        }
        if (p3_cpu_auto_precision(NULL, 0) != P3_PRECISION_BF16)
                return -EOPNOTSUPP;
        *ret = P3_PRECISION_BF16;
        return 0;
}

int p3_backend_cpu_new(const p3_backend_options *opt, p3_backend **ret) {
        p3_precision precision;
        int r = resolve_precision(opt ? opt->precision : P3_PRECISION_FP32, &precision);
        if (r < 0)
                return r;
        p3_backend *be = calloc(1, sizeof(*be));
        if (!be)
                return -ENOMEM;
        be->ops = &cpu_ops;
        be->act_dtype = P3_F32;
        be->precision = precision;
        be->weight_dtype = precision == P3_PRECISION_BF16 ? P3_BF16 : P3_F32;
        be->weights_copied = precision == P3_PRECISION_BF16;
        be->threads = opt && opt->threads > 0 ? opt->threads : (int) sysconf(_SC_NPROCESSORS_ONLN);
        be->threads = MAX(be->threads, 1);
        be->limit_bytes = opt ? opt->limit_bytes : 0;
        if (precision == P3_PRECISION_BF16)
                snprintf(be->device, sizeof(be->device), "CPU (%d thread%s, oneDNN %s)",
                         be->threads, be->threads == 1 ? "" : "s",
                         cpu_has_amx_bf16() ? "AMX-BF16" : "AVX512-BF16");
        else
                snprintf(be->device, sizeof(be->device), "CPU (%d thread%s, %s FP32)",
                         be->threads, be->threads == 1 ? "" : "s", cpu_gemm_library());
        *ret = be;
        return 0;
}
