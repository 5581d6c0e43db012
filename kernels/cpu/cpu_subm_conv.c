/* SPDX-License-Identifier: MIT */
/* Submanifold 3x3x3 convolution on the CPU, gather–GEMM–scatter. spconv's KRSC weight
 * [cout, 3, 3, 3, cin] is, read flat, a [cout, 27·cin] matrix whose column block r multiplies
 * the neighbour at offset r. On a surface only ~9 of the 27 neighbours of a voxel exist, so
 * instead of one GEMM over a zero-padded [rows, 27·cin] gather (two thirds zeros), each offset
 * gets its own GEMM over just the rows that have that neighbour, added into the output rows.
 * Threads take disjoint blocks of output rows, so the scatter needs no locking. */
#include <string.h>

#include "cpu_ops.h"
#include "macro.h"

/* Output rows per task: large enough for efficient GEMMs (each offset sees about a third of
 * them), small enough that every thread gets work on the coarse levels. */
#define BLOCK_MIN 256
#define BLOCK_MAX 1024

typedef struct conv_scratch {
        float *in;    /* [block, cin] gathered neighbour rows */
        float *out;   /* [block, cout] their products */
        int32_t *row; /* [block] output row of each gathered row */
} conv_scratch;

static int conv_offset(const p3_tensor *x, const int32_t *nbr, const p3_tensor *w, p3_tensor *y,
                       int64_t r0, int64_t nr, int r, conv_scratch *sc) {
        int64_t cin = x->cols, cout = y->cols, n = 0;
        for (int64_t i = 0; i < nr; i++) {
                int32_t j = nbr[(r0 + i) * 27 + r];
                if (j < 0)
                        continue;
                memcpy(sc->in + n * cin, cpu_row(x, j), sizeof(float) * cin);
                sc->row[n++] = (int32_t) (r0 + i);
        }
        if (n == 0)
                return 0;
        /* W_r = columns [r·cin, (r+1)·cin) of the flat weight */
        int e = cpu_gemm_w(n, cin, sc->in, cin, w, r * cin, sc->out, cout, false);
        if (e < 0)
                return e;
        for (int64_t k = 0; k < n; k++) {
                float *yr = cpu_row(y, sc->row[k]);
                const float *o = sc->out + k * cout;
                for (int64_t c = 0; c < cout; c++)
                        yr[c] += o[c];
        }
        return 0;
}

static int conv_block(const p3_tensor *x, const int32_t *nbr, const p3_tensor *w,
                      const p3_tensor *b, p3_tensor *y, int64_t r0, int64_t nr,
                      conv_scratch *sc) {
        for (int64_t i = 0; i < nr; i++) {
                float *yr = cpu_row(y, r0 + i);
                if (b)
                        memcpy(yr, b->data, sizeof(float) * y->cols);
                else
                        memset(yr, 0, sizeof(float) * y->cols);
        }
        for (int r = 0; r < 27; r++) {
                int e = conv_offset(x, nbr, w, y, r0, nr, r, sc);
                if (e < 0)
                        return e;
        }
        return 0;
}

int cpu_subm_conv(p3_backend *be, const p3_tensor *x, const int32_t *nbr, const p3_tensor *w,
                  const p3_tensor *b, p3_tensor *y) {
        if (w->cols != 27 * x->cols || y->cols != w->rows || y->rows != x->rows)
                return -EINVAL;
        int64_t block = MIN(MAX(x->rows / (2 * be->threads), BLOCK_MIN), BLOCK_MAX);
        int64_t nblocks = DIV_ROUND_UP(x->rows, block);
        int err = 0;
#pragma omp parallel num_threads(be->threads)
        {
                conv_scratch sc = {
                        .in = malloc(sizeof(float) * block * x->cols),
                        .out = malloc(sizeof(float) * block * y->cols),
                        .row = malloc(sizeof(int32_t) * block),
                };
                bool ok = sc.in && sc.out && sc.row;
                if (!ok) {
#pragma omp atomic write
                        err = -ENOMEM;
                }
#pragma omp for schedule(dynamic, 1)
                for (int64_t blk = 0; blk < nblocks; blk++) {
                        if (!ok)
                                continue;
                        int64_t r0 = blk * block;
                        int e = conv_block(x, nbr, w, b, y, r0, MIN(block, x->rows - r0), &sc);
                        if (e < 0) {
#pragma omp atomic write
                                err = e;
                        }
                }
                free(sc.in);
                free(sc.out);
                free(sc.row);
        }
        return err;
}
