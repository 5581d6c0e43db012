/* SPDX-License-Identifier: MIT */
/* Windowed multi-head attention on the CPU, one (window, head) pair per task: gather the
 * window's q, k, v (head dim 16), S = 0.25·Q·Kᵀ, row softmax, O = P·V, all FP32 at every
 * precision: with a depth of 16 the products are too thin for BF16 to pay (their time is
 * the softmax's and the gathers'). The [window, window] score block lives only in a
 * per-thread buffer (4 MiB at 1024). */
#include <string.h>

#include "cpu_dnnl.h"
#include "cpu_math.h"
#include "cpu_ops.h"
#include "macro.h"

#define HD 16

typedef struct attn_scratch {
        float *q, *k, *v, *s, *o;
} attn_scratch;

P3_VECTOR_CLONES static void softmax_rows(float *s, int64_t w) {
        for (int64_t i = 0; i < w; i++) {
                float *row = s + i * w;
                float mx = max_lanes(row, w);
                for (int64_t j = 0; j < w; j++) /* vectorizes: no reduction inside */
                        row[j] = exp_neg(row[j] - mx);
                float inv = 1.0f / dot_lanes(row, NULL, w);
                for (int64_t j = 0; j < w; j++)
                        row[j] *= inv;
        }
}

static int attend_window(const p3_tensor *qkv, const int32_t *slot_point, int64_t s0, int64_t w,
                         int h, int64_t n, p3_tensor *out, attn_scratch *sc) {
        int64_t c = qkv->cols / 3;
        for (int64_t i = 0; i < w; i++) {
                const float *row = cpu_row(qkv, slot_point[s0 + i]);
                memcpy(sc->q + i * HD, row + h * HD, sizeof(float) * HD);
                memcpy(sc->k + i * HD, row + c + h * HD, sizeof(float) * HD);
                memcpy(sc->v + i * HD, row + 2 * c + h * HD, sizeof(float) * HD);
        }
        int r = cpu_dnnl_sgemm(true, w, w, HD, 0.25f, sc->q, HD, sc->k, HD, sc->s, w, false);
        if (r < 0)
                return r;
        softmax_rows(sc->s, w);
        r = cpu_dnnl_sgemm(false, w, HD, w, 1.0f, sc->s, w, sc->v, HD, sc->o, HD, false);
        if (r < 0)
                return r;
        /* Only a point's first slot (slot index < n) produces its output; the padding slots
         * of the last window repeat points that already have one. */
        for (int64_t i = 0; i < w && s0 + i < n; i++)
                memcpy(cpu_row(out, slot_point[s0 + i]) + h * HD, sc->o + i * HD,
                       sizeof(float) * HD);
        return 0;
}

int cpu_attention(p3_backend *be, const p3_tensor *qkv, const int32_t *slot_point, int64_t n_pad,
                  int64_t window, int heads, p3_tensor *out) {
        int64_t n = out->rows;
        if (qkv->cols != 3 * out->cols || out->cols != heads * HD || window <= 0 || n_pad % window)
                return -EINVAL;
        int64_t nwin = n_pad / window, tasks = nwin * heads;
        int err = 0;
#pragma omp parallel num_threads(be->threads)
        {
                attn_scratch sc = {
                        .q = malloc(sizeof(float) * window * HD),
                        .k = malloc(sizeof(float) * window * HD),
                        .v = malloc(sizeof(float) * window * HD),
                        .o = malloc(sizeof(float) * window * HD),
                        .s = malloc(sizeof(float) * window * window),
                };
                bool ok = sc.q && sc.k && sc.v && sc.o && sc.s;
                if (!ok) {
#pragma omp atomic write
                        err = -ENOMEM;
                }
#pragma omp for schedule(dynamic, 1)
                for (int64_t t = 0; t < tasks; t++) {
                        int r = ok ? attend_window(qkv, slot_point, (t / heads) * window, window,
                                                   (int) (t % heads), n, out, &sc)
                                   : 0;
                        if (r < 0) {
#pragma omp atomic write
                                err = r;
                        }
                }
                free(sc.q);
                free(sc.k);
                free(sc.v);
                free(sc.o);
                free(sc.s);
        }
        return err;
}
