/* SPDX-License-Identifier: MIT */
/* Linear layers on the CPU: one single-threaded matrix product per row block, blocks spread
 * over OpenMP threads (the split depends only on the row count, so results do not depend on
 * the number of threads), and an exact-erf GELU that vectorizes. The product follows the
 * weight's storage, FP32 or BF16; both go through oneDNN (cpu_dnnl.c). */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_bf16.h"
#include "cpu_dnnl.h"
#include "cpu_math.h"
#include "cpu_ops.h"
#include "macro.h"

#define ROW_BLOCK 256

float cpu_gelu1(float x) {
        return gelu(x);
}

P3_VECTOR_CLONES void cpu_gelu_inplace(float *x, int64_t n) {
        for (int64_t i = 0; i < n; i++)
                x[i] = gelu(x[i]);
}

int cpu_sgemm_nt(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                 int64_t ldb, float *c, int64_t ldc, bool accumulate) {
        return cpu_dnnl_sgemm(true, m, n, k, 1.0f, a, lda, b, ldb, c, ldc, accumulate);
}

/* The scratch of bf16_rows() is freed by this key's destructor when its thread ends: the
 * daemon's worker thread and OpenMP's threads end at shutdown (or a worker's restart), and
 * their thread-local pointer goes with them. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_err;

static void scratch_key_make(void) {
        scratch_key_err = pthread_key_create(&scratch_key, free);
}

/* A's rows rounded to BF16, in this thread's scratch (grown as needed, kept for the thread's
 * life: the shapes repeat). */
static uint16_t *bf16_rows(const float *a, int64_t m, int64_t k, int64_t lda) {
        static __thread uint16_t *buf;
        static __thread size_t cap;
        size_t need = (size_t) m * (size_t) k;
        if (need > cap) {
                if (pthread_once(&scratch_once, scratch_key_make) != 0 || scratch_key_err != 0)
                        return NULL;
                uint16_t *p = realloc(buf, MAX(need, (size_t) 1) * sizeof(uint16_t));
                if (!p)
                        return NULL;
                buf = p;
                cap = need;
                if (pthread_setspecific(scratch_key, p) != 0) {
                        free(TAKE_PTR(buf));
                        cap = 0;
                        return NULL;
                }
        }
        for (int64_t i = 0; i < m; i++)
                cpu_f32_to_bf16(a + i * lda, buf + i * k, k);
        return buf;
}

int cpu_gemm_w(int64_t m, int64_t k, const float *a, int64_t lda, const p3_tensor *w, int64_t col,
               float *c, int64_t ldc, bool accumulate) {
        int64_t n = w->rows;
        if (w->dtype == P3_F32)
                return cpu_sgemm_nt(m, n, k, a, lda, (const float *) w->data + col, p3_ld(w), c,
                                    ldc, accumulate);
        if (w->dtype != P3_BF16)
                return -EINVAL;
        if (m <= 0 || n <= 0)
                return 0;
        const uint16_t *abf = bf16_rows(a, m, k, lda);
        if (!abf)
                return -ENOMEM;
        return cpu_dnnl_gemm_bf16_nt(m, n, k, abf, k, (const uint16_t *) w->data + col, p3_ld(w), c,
                                     ldc, accumulate);
}

float cpu_weight_at(const p3_tensor *w, int64_t r, int64_t c) {
        if (w->dtype == P3_BF16)
                return cpu_bf16_1(((const uint16_t *) w->data)[r * p3_ld(w) + c]);
        return ((const float *) w->data)[r * p3_ld(w) + c];
}

/* y = x·Wᵀ + b, then GELU; with P3_ACCUMULATE the result is added to y (the branch is
 * activated before it joins the residual). */
static int linear_block(const p3_tensor *x, const p3_tensor *w, const p3_tensor *b, p3_tensor *y,
                        int64_t r0, int64_t nr, unsigned flags, float *tmp) {
        bool acc = flags & P3_ACCUMULATE;
        /* Accumulating with an activation needs the pre-activation on its own. */
        bool separate = acc && (flags & P3_GELU);
        float *dst = separate ? tmp : cpu_row(y, r0);
        int64_t ld = separate ? y->cols : p3_ld(y);
        int e = cpu_gemm_w(nr, w->cols, cpu_row(x, r0), p3_ld(x), w, 0, dst, ld, acc && !separate);
        if (e < 0)
                return e;
        for (int64_t i = 0; i < nr; i++) {
                float *row = dst + i * ld;
                if (b)
                        for (int64_t j = 0; j < y->cols; j++)
                                row[j] += ((const float *) b->data)[j];
                if (flags & P3_GELU)
                        cpu_gelu_inplace(row, y->cols);
                if (separate) {
                        float *yr = cpu_row(y, r0 + i);
                        for (int64_t j = 0; j < y->cols; j++)
                                yr[j] += row[j];
                }
        }
        return 0;
}

int cpu_linear(p3_backend *be, const p3_tensor *x, const p3_tensor *w, const p3_tensor *b,
               p3_tensor *y, unsigned flags) {
        if (x->cols != w->cols || y->cols != w->rows || y->rows != x->rows)
                return -EINVAL;
        int64_t nblocks = DIV_ROUND_UP(x->rows, ROW_BLOCK);
        bool separate = (flags & P3_ACCUMULATE) && (flags & P3_GELU);
        int err = 0;
#pragma omp parallel num_threads(be->threads)
        {
                float *tmp = separate ? malloc(sizeof(float) * ROW_BLOCK * y->cols) : NULL;
                if (separate && !tmp) {
#pragma omp atomic write
                        err = -ENOMEM;
                }
#pragma omp for schedule(dynamic, 1)
                for (int64_t blk = 0; blk < nblocks; blk++) {
                        if (separate && !tmp)
                                continue;
                        int64_t r0 = blk * ROW_BLOCK;
                        int e = linear_block(x, w, b, y, r0, MIN(ROW_BLOCK, x->rows - r0), flags,
                                             tmp);
                        if (e < 0) {
#pragma omp atomic write
                                err = e;
                        }
                }
                free(tmp);
        }
        return err;
}
