/* SPDX-License-Identifier: MIT */
/* Submanifold 3x3x3 convolution on the CPU. spconv's KRSC weight [cout, 3, 3, 3, cin] is, read
 * flat, a [cout, 27·cin] matrix whose column block r multiplies the neighbour at offset r; so
 * a block of rows is gathered into [rows, 27·cin] (zeros for absent neighbours) and multiplied
 * by the weight in one sgemm. Blocks keep the gathered buffer small (≤ 8 MiB per thread). */
#include <string.h>

#include "cpu_ops.h"
#include "macro.h"

static void conv_block(const p3_tensor *x, const int32_t *nbr, const p3_tensor *w,
                       const p3_tensor *b, p3_tensor *y, int64_t r0, int64_t nr, float *col) {
        int64_t cin = x->cols, kc = 27 * cin;
        for (int64_t i = 0; i < nr; i++) {
                const int32_t *nb = nbr + (r0 + i) * 27;
                float *dst = col + i * kc;
                for (int r = 0; r < 27; r++) {
                        if (nb[r] >= 0)
                                memcpy(dst + r * cin, cpu_row(x, nb[r]), sizeof(float) * cin);
                        else
                                memset(dst + r * cin, 0, sizeof(float) * cin);
                }
        }
        float *yr = cpu_row(y, r0);
        cpu_sgemm_nt(nr, w->rows, kc, col, kc, w->data, p3_ld(w), yr, p3_ld(y), false);
        if (b)
                for (int64_t i = 0; i < nr; i++)
                        for (int64_t j = 0; j < y->cols; j++)
                                yr[i * p3_ld(y) + j] += ((const float *) b->data)[j];
}

int cpu_subm_conv(p3_backend *be, const p3_tensor *x, const int32_t *nbr, const p3_tensor *w,
                  const p3_tensor *b, p3_tensor *y) {
        int64_t kc = 27 * x->cols;
        if (w->cols != kc || y->cols != w->rows || y->rows != x->rows)
                return -EINVAL;
        int64_t block = MIN(MAX((int64_t) (2 << 20) / kc, 32), 1024);
        int64_t nblocks = DIV_ROUND_UP(x->rows, block);
        int err = 0;
#pragma omp parallel num_threads(be->threads)
        {
                float *col = malloc(sizeof(float) * block * kc);
                if (!col) {
#pragma omp atomic write
                        err = -ENOMEM;
                }
#pragma omp for schedule(dynamic, 1)
                for (int64_t blk = 0; blk < nblocks; blk++) {
                        if (!col)
                                continue;
                        int64_t r0 = blk * block;
                        conv_block(x, nbr, w, b, y, r0, MIN(block, x->rows - r0), col);
                }
                free(col);
        }
        return err;
}
