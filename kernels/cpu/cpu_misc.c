/* SPDX-License-Identifier: MIT */
/* Row gathers (unpooling, voxel → point), segment max (pooling) and downloads. */
#include <math.h>
#include <string.h>

#include "cpu_ops.h"
#include "macro.h"

int cpu_gather_rows(p3_backend *be, const p3_tensor *x, const int32_t *idx, p3_tensor *y,
                    int64_t col0) {
        if (col0 + x->cols > y->cols)
                return -EINVAL;
#pragma omp parallel for num_threads(be->threads) schedule(static)
        for (int64_t i = 0; i < y->rows; i++)
                memcpy(cpu_row(y, i) + col0, cpu_row(x, idx ? idx[i] : i),
                       sizeof(float) * x->cols);
        return 0;
}

int cpu_gather_add(p3_backend *be, const p3_tensor *x, const int32_t *idx, p3_tensor *y) {
        if (x->cols != y->cols)
                return -EINVAL;
#pragma omp parallel for num_threads(be->threads) schedule(static)
        for (int64_t i = 0; i < y->rows; i++) {
                const float *xr = cpu_row(x, idx[i]);
                float *yr = cpu_row(y, i);
                for (int64_t j = 0; j < y->cols; j++)
                        yr[j] += xr[j];
        }
        return 0;
}

int cpu_segment_max(p3_backend *be, const p3_tensor *x, const int32_t *cluster, p3_tensor *y) {
        if (x->cols != y->cols)
                return -EINVAL;
        for (int64_t c = 0; c < y->rows; c++) {
                float *yr = cpu_row(y, c);
                for (int64_t j = 0; j < y->cols; j++)
                        yr[j] = -INFINITY;
        }
        /* Sequential: rows of one cluster are scattered; max is exact in any order anyway. */
        for (int64_t i = 0; i < x->rows; i++) {
                const float *xr = cpu_row(x, i);
                float *yr = cpu_row(y, cluster[i]);
                for (int64_t j = 0; j < x->cols; j++)
                        yr[j] = fmaxf(yr[j], xr[j]);
        }
        return 0;
}

int cpu_to_host_f32(p3_backend *be, const p3_tensor *x, float *host) {
        for (int64_t i = 0; i < x->rows; i++)
                memcpy(host + i * x->cols, cpu_row(x, i), sizeof(float) * x->cols);
        return 0;
}

int cpu_check_finite(p3_backend *be, const p3_tensor *x) {
        int bad = 0;
#pragma omp parallel for num_threads(be->threads) schedule(static) reduction(| : bad)
        for (int64_t i = 0; i < x->rows; i++) {
                const float *r = cpu_row(x, i);
                for (int64_t j = 0; j < x->cols; j++)
                        bad |= !isfinite(r[j]);
        }
        return bad ? -ERANGE : 0;
}
