/* SPDX-License-Identifier: MIT */
/* cpu_dnnl.h's products without oneDNN, for builds that must not depend on it: the engine-only
 * build the GPU check carries to a machine without Debian's libraries, where this CPU path is
 * the reference the GPU is compared with at full size, and the valgrind build. FP32 only: BF16
 * answers -ENOTSUP, and cpu_dnnl_isa() NULL, so AUTO picks FP32.
 *
 * Like oneDNN under cpu_dnnl.c, a call runs on the calling thread only: the callers split the
 * rows over OpenMP threads, so the summation order never depends on the thread count.
 *
 * The product is computed as C[i][j..j+16) += A[i][p] · P[p][0..16) over p, one panel P of
 * 16 columns of B at a time, 6 rows of A against it (6 vector accumulators: FMA chains enough
 * to hide their latency, few enough for AVX2's 16 registers). P is B itself where B is [k, n]
 * and the panel is whole; otherwise (B given as [n, k], the last partial panel) the panel is
 * copied into a zero-padded [k, 16] scratch first. Compiled for AVX-512, AVX2 and baseline
 * x86-64 and picked at load time (P3_VECTOR_CLONES). Each element sums over p in order, as the
 * naive loop it replaces did, in FP32 (fused multiply-adds where the CPU has them). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_dnnl.h"
#include "cpu_ops.h"
#include "macro.h"

#define NR 16 /* columns per panel: one AVX-512 vector */
#define MR 6  /* rows of A per step */

typedef float vec __attribute__((vector_size(NR * sizeof(float))));

int cpu_dnnl_init(void) {
        return 0;
}

const char *cpu_gemm_library(void) {
        return "plain loops";
}

const char *cpu_dnnl_isa(void) {
        return NULL;
}

int cpu_dnnl_gemm_bf16_nt(int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda,
                          const uint16_t *b, int64_t ldb, float *c, int64_t ldc, bool accumulate) {
        if (m < 0 || n < 0 || k < 0 || lda < k || ldb < k || ldc < n)
                return -EINVAL;
        return -ENOTSUP;
}

/* ---- the panel scratch: one per thread, grown as needed, freed when the thread ends ---- */

static pthread_key_t panel_key;
static pthread_once_t panel_once = PTHREAD_ONCE_INIT;
static int panel_key_err;

static void panel_key_make(void) {
        panel_key_err = pthread_key_create(&panel_key, free);
}

static float *panel_scratch(int64_t k) {
        static __thread float *buf;
        static __thread size_t cap;
        size_t need = (size_t) MAX(k, (int64_t) 1) * NR;
        if (need <= cap)
                return buf;
        if (pthread_once(&panel_once, panel_key_make) != 0 || panel_key_err != 0)
                return NULL;
        /* aligned for the vector loads (64 bytes: one AVX-512 vector) */
        float *p = aligned_alloc(64, (need * sizeof(float) + 63) / 64 * 64);
        if (!p)
                return NULL;
        if (pthread_setspecific(panel_key, p) != 0) {
                free(p);
                return NULL;
        }
        free(buf);
        buf = p;
        cap = need;
        return buf;
}

/* Columns j0..j0+nc of B (nc <= NR) as a [k, NR] panel, zero past nc. */
static void pack_panel(bool b_nk, const float *b, int64_t ldb, int64_t k, int64_t j0, int64_t nc,
                       float *panel) {
        for (int64_t p = 0; p < k; p++) {
                float *row = panel + p * NR;
                for (int64_t jj = 0; jj < NR; jj++)
                        row[jj] = jj >= nc ? 0.0f : b_nk ? b[(j0 + jj) * ldb + p] : b[p * ldb + j0 + jj];
        }
}

/* ---- the kernel ---- */

/* C[0..mr)[0..nc) = alpha · A[0..mr)·P + (accumulate ? C : 0), mr <= MR, nc <= NR. */
P3_VECTOR_CLONES static void kernel(int64_t mr, int64_t nc, int64_t k, float alpha,
                                    const float *a, int64_t lda, const float *panel,
                                    int64_t ldp, float *c, int64_t ldc, bool accumulate) {
        vec acc[MR] = {};
        if (mr == MR) /* the common case, with the row count known to the compiler */
                for (int64_t p = 0; p < k; p++) {
                        vec bv;
                        memcpy(&bv, panel + p * ldp, sizeof(bv)); /* unaligned: B itself */
                        for (int r = 0; r < MR; r++)
                                acc[r] += a[r * lda + p] * bv;
                }
        else
                for (int64_t p = 0; p < k; p++) {
                        vec bv;
                        memcpy(&bv, panel + p * ldp, sizeof(bv));
                        for (int r = 0; r < mr; r++)
                                acc[r] += a[r * lda + p] * bv;
                }
        for (int r = 0; r < mr; r++) {
                float out[NR];
                memcpy(out, &acc[r], sizeof(out));
                float *cr = c + r * ldc;
                for (int64_t jj = 0; jj < nc; jj++)
                        cr[jj] = alpha * out[jj] + (accumulate ? cr[jj] : 0.0f);
        }
}

int cpu_dnnl_sgemm(bool b_nk, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                   int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc,
                   bool accumulate) {
        if (m < 0 || n < 0 || k < 0 || lda < k || ldb < (b_nk ? k : n) || ldc < n)
                return -EINVAL;
        if (m == 0 || n == 0)
                return 0;
        float *scratch = NULL;
        for (int64_t j0 = 0; j0 < n; j0 += NR) {
                int64_t nc = MIN(n - j0, (int64_t) NR);
                const float *panel = b + j0;
                int64_t ldp = ldb;
                if (b_nk || nc < NR) {
                        if (!scratch && !(scratch = panel_scratch(k)))
                                return -ENOMEM;
                        pack_panel(b_nk, b, ldb, k, j0, nc, scratch);
                        panel = scratch;
                        ldp = NR;
                }
                for (int64_t i0 = 0; i0 < m; i0 += MR)
                        kernel(MIN(m - i0, (int64_t) MR), nc, k, alpha, a + i0 * lda, lda, panel,
                               ldp, c + i0 * ldc + j0, ldc, accumulate);
        }
        return 0;
}
