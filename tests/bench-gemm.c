/* SPDX-License-Identifier: MIT */
/* GEMM benchmark: the CPU backend's way of running a Linear layer (rows split into blocks of
 * 256 over OpenMP threads, one single-threaded product per block) with oneDNN's FP32 and BF16
 * matmul, for two layer shapes. It prints GFLOP/s (best and median of the
 * repetitions: the machine may be shared) and the kernel oneDNN picked; it asserts nothing
 * about speed and fails only when a product returns an error.
 *   bf16          inputs already BF16 (the weights are; the product alone)
 *   bf16+convert  A rounded to BF16 per block first, as cpu_gemm.c does for activations
 * P3_BENCH_THREADS sets the thread count (default 2). */
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_bf16.h"
#include "cpu/cpu_dnnl.h"
#include "cpu/cpu_ops.h"
#include "macro.h"
#include "test-util.h"
#include "omp-env.h"

#define ROW_BLOCK 256
#define MIN_REPS 5
#define MIN_SECONDS 1.0

typedef struct bench {
        int64_t m, n, k;
        float *a, *b, *c;
        uint16_t *a16, *b16;
        uint16_t **scratch; /* per thread: a block of A in BF16 */
} bench;

typedef int (*block_fn)(const bench *g, int64_t r0, int64_t nr);

static int sgemm_block(const bench *g, int64_t r0, int64_t nr) {
        return cpu_sgemm_nt(nr, g->n, g->k, g->a + r0 * g->k, g->k, g->b, g->k, g->c + r0 * g->n,
                            g->n, false);
}

static int bf16_block(const bench *g, int64_t r0, int64_t nr) {
        return cpu_dnnl_gemm_bf16_nt(nr, g->n, g->k, g->a16 + r0 * g->k, g->k, g->b16, g->k,
                                     g->c + r0 * g->n, g->n, false);
}

static int bf16_convert_block(const bench *g, int64_t r0, int64_t nr) {
        uint16_t *a16 = g->scratch[omp_get_thread_num()];
        cpu_f32_to_bf16(g->a + r0 * g->k, a16, nr * g->k);
        return cpu_dnnl_gemm_bf16_nt(nr, g->n, g->k, a16, g->k, g->b16, g->k, g->c + r0 * g->n,
                                     g->n, false);
}

/* One pass over all row blocks, as cpu_linear schedules them. */
static int run_once(const bench *g, block_fn fn, int threads) {
        int64_t nblocks = DIV_ROUND_UP(g->m, ROW_BLOCK);
        int err = 0;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
        for (int64_t blk = 0; blk < nblocks; blk++) {
                int64_t r0 = blk * ROW_BLOCK;
                int r = fn(g, r0, MIN(ROW_BLOCK, g->m - r0));
                if (r < 0) {
#pragma omp atomic write
                        err = r;
                }
        }
        return err;
}

static int cmp_double(const void *x, const void *y) {
        double a = *(const double *) x, b = *(const double *) y;
        return (a > b) - (a < b);
}

/* Best and median GFLOP/s after one warm-up pass (which also makes the primitives). */
static int measure(const bench *g, block_fn fn, int threads, double *best, double *median) {
        int r = run_once(g, fn, threads);
        if (r < 0)
                return r;
        double t[1000], start = test_now();
        int reps = 0;
        while (reps < (int) ELEMENTSOF(t) && (reps < MIN_REPS || test_now() - start < MIN_SECONDS)) {
                double t0 = test_now();
                r = run_once(g, fn, threads);
                if (r < 0)
                        return r;
                t[reps++] = test_now() - t0;
        }
        qsort(t, (size_t) reps, sizeof(double), cmp_double);
        double flop = 2.0 * (double) g->m * (double) g->n * (double) g->k;
        *best = flop / t[0] * 1e-9;
        *median = flop / t[reps / 2] * 1e-9;
        return 0;
}

static void bench_init(bench *g, int64_t m, int64_t n, int64_t k, int threads) {
        *g = (bench) { .m = m, .n = n, .k = k };
        g->a = malloc(sizeof(float) * (size_t) (m * k));
        g->b = malloc(sizeof(float) * (size_t) (n * k));
        g->c = malloc(sizeof(float) * (size_t) (m * n));
        g->a16 = malloc(sizeof(uint16_t) * (size_t) (m * k));
        g->b16 = malloc(sizeof(uint16_t) * (size_t) (n * k));
        g->scratch = calloc((size_t) threads, sizeof(uint16_t *));
        CHECK(g->a && g->b && g->c && g->a16 && g->b16 && g->scratch);
        for (int t = 0; t < threads; t++)
                CHECK(g->scratch[t] = malloc(sizeof(uint16_t) * ROW_BLOCK * (size_t) k));
        /* any values do: the kernels' speed does not depend on them (no denormals here) */
        for (int64_t i = 0; i < m * k; i++)
                g->a[i] = (float) ((i * 7919) % 2001 - 1000) * 1e-3f;
        for (int64_t i = 0; i < n * k; i++)
                g->b[i] = (float) ((i * 104729) % 2001 - 1000) * 1e-5f;
        cpu_f32_to_bf16(g->a, g->a16, m * k);
        cpu_f32_to_bf16(g->b, g->b16, n * k);
}

static void bench_free(bench *g, int threads) {
        for (int t = 0; t < threads; t++)
                free(g->scratch[t]);
        free(g->scratch), free(g->a), free(g->b), free(g->c), free(g->a16), free(g->b16);
}

static int bench_shape(int64_t m, int64_t n, int64_t k, int threads) {
        static const struct {
                const char *name;
                block_fn fn;
        } kinds[] = {
                { "fp32", sgemm_block }, /* oneDNN's, or the plain loops' (-Ddnnl=disabled) */
                { "bf16 oneDNN", bf16_block },
                { "bf16+convert", bf16_convert_block },
        };
        bench g;
        bench_init(&g, m, n, k, threads);
        double fp32 = 0;
        int err = 0;
        for (size_t i = 0; i < ELEMENTSOF(kinds) && !err; i++) {
                double best, median;
                int r = measure(&g, kinds[i].fn, threads, &best, &median);
                if (r == -ENOTSUP) {
                        printf("  %-14s skip: no oneDNN BF16 matmul here\n", kinds[i].name);
                        break;
                }
                if (r < 0) {
                        fprintf(stderr, "%s: error %d\n", kinds[i].name, r);
                        err = r;
                        break;
                }
                if (i == 0)
                        fp32 = best;
                printf("  %-14s best %7.1f GFLOP/s  median %7.1f  (%.2fx fp32)\n", kinds[i].name,
                       best, median, best / fp32);
        }
        bench_free(&g, threads);
        return err;
}

int main(int argc, char **argv) {
        p3_omp_env_setup(argv);
        const char *th = getenv("P3_BENCH_THREADS");
        int threads = th && atoi(th) > 0 ? atoi(th) : 2;
        /* Made only for its device string. */
        p3_backend *be;
        CHECK_OK(p3_backend_cpu_new(&(p3_backend_options) { .threads = threads }, &be));
        printf("gemm: %d threads, row blocks of %d, one single-threaded product per block; %s\n",
               threads, ROW_BLOCK, be->device);
        p3_backend_free(be);
        const char *isa = cpu_dnnl_isa();
        printf("oneDNN BF16 matmul: %s (CPU+OS: AMX-BF16 %s, AVX512-BF16 %s)\n",
               isa ? isa : "none", cpu_has_amx_bf16() ? "yes" : "no",
               cpu_has_avx512_bf16() ? "yes" : "no");
        static const int64_t shapes[][3] = { { 16384, 512, 512 }, { 1024, 256, 256 } };
        for (size_t i = 0; i < ELEMENTSOF(shapes); i++) {
                printf("M=%lld N=%lld K=%lld\n", (long long) shapes[i][0],
                       (long long) shapes[i][1], (long long) shapes[i][2]);
                if (bench_shape(shapes[i][0], shapes[i][1], shapes[i][2], threads) < 0)
                        return EXIT_FAILURE;
        }
        return 0;
}
