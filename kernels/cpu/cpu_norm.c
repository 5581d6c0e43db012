/* SPDX-License-Identifier: MIT */
/* LayerNorm and residual adds on the CPU. Statistics in double: they are cheap here and make
 * the CPU backend the tighter reference. */
#include <math.h>

#include "cpu_ops.h"
#include "macro.h"

static void layernorm_row(const float *x, const float *g, const float *b, float *y, int64_t c,
                          unsigned flags) {
        double sum = 0, sq = 0;
        for (int64_t j = 0; j < c; j++)
                sum += x[j];
        double mean = sum / (double) c;
        for (int64_t j = 0; j < c; j++) {
                double d = x[j] - mean;
                sq += d * d;
        }
        double inv = 1.0 / sqrt(sq / (double) c + 1e-5);
        float tmp[c]; /* y may alias x; c <= 2048 */
        /* x − mean in double: a float mean would cost ½ ulp(mean)/std on rows whose spread is
         * small next to their mean. */
        for (int64_t j = 0; j < c; j++)
                tmp[j] = (float) ((x[j] - mean) * inv) * g[j] + b[j];
        if (flags & P3_GELU)
                cpu_gelu_inplace(tmp, c);
        if (flags & P3_ACCUMULATE)
                for (int64_t j = 0; j < c; j++)
                        y[j] += tmp[j];
        else
                for (int64_t j = 0; j < c; j++)
                        y[j] = tmp[j];
}

int cpu_layernorm(p3_backend *be, const p3_tensor *x, const p3_tensor *g, const p3_tensor *b,
                  p3_tensor *y, unsigned flags) {
        if (x->cols != y->cols || x->rows != y->rows || g->cols * g->rows != x->cols ||
            x->cols > 2048)
                return -EINVAL;
#pragma omp parallel for num_threads(be->threads) schedule(static)
        for (int64_t i = 0; i < x->rows; i++)
                layernorm_row(cpu_row(x, i), g->data, b->data, cpu_row(y, i), x->cols, flags);
        return 0;
}

int cpu_add(p3_backend *be, const p3_tensor *x, p3_tensor *y) {
        if (x->cols != y->cols || x->rows != y->rows)
                return -EINVAL;
#pragma omp parallel for num_threads(be->threads) schedule(static)
        for (int64_t i = 0; i < x->rows; i++) {
                const float *xr = cpu_row(x, i);
                float *yr = cpu_row(y, i);
                for (int64_t j = 0; j < x->cols; j++)
                        yr[j] += xr[j];
        }
        return 0;
}

int cpu_gelu(p3_backend *be, p3_tensor *x) {
#pragma omp parallel for num_threads(be->threads) schedule(static)
        for (int64_t i = 0; i < x->rows; i++)
                cpu_gelu_inplace(cpu_row(x, i), x->cols);
        return 0;
}
