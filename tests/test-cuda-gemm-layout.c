/* SPDX-License-Identifier: MIT */
/* The row-major → cuBLAS column-major mapping (kernels/cuda/cuda_gemm_layout.c), without a GPU:
 * each layout is executed by a naive column-major SGEMM with cuBLAS's semantics (op(A)/op(B)
 * from the transposes, beta = 0 never reads C, cuBLAS's argument checks, and every element it
 * would touch inside the buffers) and compared with the CPU backend's row-major product
 * (cpu_dnnl_sgemm) on every GEMM shape the model makes:
 *
 *   Sonata Linear layers   qkv 3C, proj / cpe C, MLP 4C, for the stage widths; stem; pooling
 *   submanifold conv       column slices r·cin of the [cout, 27·cin] weight (ldb = 27·cin)
 *   feature projection     level slices of the [512, 1232] first layer, then 512 × 512
 *   heads                  515- and 512-column slices of [512,518], [256,521], [256,777] at
 *                          columns 0 and 256, from x dense or in the GPU's tile (ld 520);
 *                          hidden layers; last layers of 1 and 3 rows
 *   the tiny config        (tests/data, what scripts/gpu-check.sh runs on a GPU) widths 16 to
 *                          64: its Linear layers, stem, pooling, convolutions, projection
 *   attention              S = Q·Kᵀ (NT, k = 16) and O = P·V (NN) inside the qkv rows
 *
 * for m = 1, 7, 257 (w = 1, 7, 257, 1024 for attention), some accumulating and some with
 * padded strides. C is filled with NaN where it is overwritten and a sentinel in the padding,
 * so writes in the wrong place or reads of C at beta = 0 show. Then the error returns. One line
 * per check; exit 0 only when all pass. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_dnnl.h"
#include "macro.h"
#include "cuda/cuda_gemm_layout.h"
#include "test-util.h"

static int failures;

/* ---- tiny PRNG (splitmix64) ---------------------------------------------------------------- */

static uint64_t rng_state = 0x9a3e11c0ffee2025ull;

static float rnd_f(void) {
        return (float) (2.0 * test_rnd_unit(&rng_state) - 1.0);
}

static float *rnd_array(int64_t n) {
        float *a = malloc(sizeof(float) * (size_t) (n ? n : 1));
        CHECK(a);
        for (int64_t i = 0; i < n; i++)
                a[i] = rnd_f();
        return a;
}

static bool expect(bool ok, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char buf[256];
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        printf("%-60s %s\n", buf, ok ? "ok" : "FAIL");
        if (!ok)
                failures++;
        return ok;
}

/* ---- cuBLAS's sgemm, naively ---------------------------------------------------------------- */

/* The largest index + 1 that a column-major [rows, cols] matrix with leading dimension ld
 * touches (0 when empty). */
static int64_t extent(int64_t rows, int64_t cols, int64_t ld) {
        return rows > 0 && cols > 0 ? (rows - 1) + (cols - 1) * ld + 1 : 0;
}

/* What cublasSgemm(l->transa, l->transb, l->m, l->n, l->k, alpha, A, l->lda, B, l->ldb, beta,
 * C, l->ldc) computes, column-major, sums in double. A, B, C hold a_n, b_n, c_n elements from
 * the pointers given: false when cuBLAS would reject the arguments or touch elements beyond
 * them. */
static bool colmajor_sgemm(const p3_gemm_layout *l, float alpha, const float *a, int64_t a_n,
                           const float *b, int64_t b_n, float beta, float *c, int64_t c_n) {
        bool ta = l->transa == P3_GEMM_T, tb = l->transb == P3_GEMM_T;
        int64_t m = l->m, n = l->n, k = l->k;
        /* op(A) is m × k: A is [m, k] or, transposed, [k, m]; op(B) is k × n likewise. */
        int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
        int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
        if (m < 0 || n < 0 || k < 0 || l->lda < MAX(1, a_rows) || l->ldb < MAX(1, b_rows) ||
            l->ldc < MAX(1, m))
                return false; /* CUBLAS_STATUS_INVALID_VALUE */
        if (extent(a_rows, a_cols, l->lda) > a_n || extent(b_rows, b_cols, l->ldb) > b_n ||
            extent(m, n, l->ldc) > c_n)
                return false;
        /* op(A)(i, p) = a[i·ai + p·ap], op(B)(p, j) = b[p·bp + j·bj]. */
        int64_t ai = ta ? l->lda : 1, ap = ta ? 1 : l->lda;
        int64_t bp = tb ? l->ldb : 1, bj = tb ? 1 : l->ldb;
        for (int64_t j = 0; j < n; j++)
                for (int64_t i = 0; i < m; i++) {
                        const float *x = a + i * ai, *y = b + j * bj;
                        double s = 0;
                        for (int64_t p = 0; p < k; p++)
                                s += (double) x[p * ap] * y[p * bp];
                        float *cij = c + i + j * l->ldc;
                        /* beta = 0: C is not read (NaN or not), as in BLAS. */
                        *cij = (float) (alpha * s + (beta != 0 ? beta * (double) *cij : 0));
                }
        return true;
}

/* ---- one shape ------------------------------------------------------------------------------- */

/* C[m,n] = A[m,k]·op(B) inside wider row-major buffers: A's rows of width lda from column acol;
 * B's ([n,k] when b_nk, else [k,n]) of width ldb from bcol; C's of width ldc from ccol. */
typedef struct gemm_case {
        const char *what;
        bool b_nk;
        int64_t m, n, k;
        int64_t lda, acol, ldb, bcol, ldc, ccol;
        bool acc;
} gemm_case;

static void run_case(const gemm_case *t) {
        int64_t b_rows = t->b_nk ? t->n : t->k;
        CHECK(t->acol + t->k <= t->lda && t->bcol + (t->b_nk ? t->k : t->n) <= t->ldb &&
              t->ccol + t->n <= t->ldc);
        int64_t a_size = t->m * t->lda, b_size = b_rows * t->ldb, c_size = t->m * t->ldc;
        float *a = rnd_array(a_size), *b = rnd_array(b_size), *c0 = rnd_array(c_size);
        /* Overwritten elements NaN unless accumulating, the rest a sentinel: both must stay. */
        for (int64_t i = 0; i < t->m; i++)
                for (int64_t j = 0; j < t->ldc; j++) {
                        bool inside = j >= t->ccol && j < t->ccol + t->n;
                        if (!inside)
                                c0[i * t->ldc + j] = 7.25f;
                        else if (!t->acc)
                                c0[i * t->ldc + j] = NAN;
                }
        float *got = malloc(sizeof(float) * (size_t) MAX(c_size, 1));
        float *ref = malloc(sizeof(float) * (size_t) MAX(c_size, 1));
        CHECK(got && ref);
        memcpy(got, c0, sizeof(float) * (size_t) c_size);
        memcpy(ref, c0, sizeof(float) * (size_t) c_size);

        CHECK_OK(cpu_dnnl_sgemm(t->b_nk, t->m, t->n, t->k, 1.0f, a + t->acol, t->lda,
                                b + t->bcol, t->ldb, ref + t->ccol, t->ldc, t->acc));

        p3_gemm_layout l;
        int r = p3_gemm_layout_rowmajor(t->b_nk, t->m, t->n, t->k, t->lda, t->ldb, t->ldc, &l);
        bool ran = false;
        if (r >= 0) {
                const float *first = l.first == P3_GEMM_OPERAND_A ? a + t->acol : b + t->bcol;
                const float *second = l.second == P3_GEMM_OPERAND_A ? a + t->acol : b + t->bcol;
                int64_t first_n = l.first == P3_GEMM_OPERAND_A ? a_size - t->acol
                                                                : b_size - t->bcol;
                int64_t second_n = l.second == P3_GEMM_OPERAND_A ? a_size - t->acol
                                                                  : b_size - t->bcol;
                ran = colmajor_sgemm(&l, 1.0f, first, first_n, second, second_n,
                                     t->acc ? 1.0f : 0.0f, got + t->ccol, c_size - t->ccol);
        }

        double maxref = 0, maxdiff = 0;
        for (int64_t i = 0; i < c_size; i++) {
                double d = fabs((double) got[i] - ref[i]);
                maxref = fmax(maxref, fabs(ref[i]));
                if (!(d <= maxdiff))
                        maxdiff = isnan(d) ? INFINITY : d;
        }
        double rel = maxref > 0 ? maxdiff / maxref : maxdiff;
        /* FP32 sums in a different order; a wrong layout is off by O(1). */
        bool ok = ran && rel <= 1e-5;
        printf("%-26s %s m=%-5lld n=%-5lld k=%-5lld lda=%-5lld ldb=%-5lld ldc=%-5lld%s "
               "max rel err %-9.3g %s\n",
               t->what, t->b_nk ? "NT" : "NN", (long long) t->m, (long long) t->n,
               (long long) t->k, (long long) t->lda, (long long) t->ldb, (long long) t->ldc,
               t->acc ? " acc" : "    ", rel,
               ok ? "ok" : r < 0 ? "FAIL (layout refused)" : !ran ? "FAIL (cuBLAS args)" : "FAIL");
        if (!ok)
                failures++;
        free(a);
        free(b);
        free(c0);
        free(got);
        free(ref);
}

static const int64_t rows_tested[] = { 1, 7, 257 };

/* y[m, out] = x[m, in]·Wᵀ, dense; accumulating at m = 7 (and everywhere when acc). */
static void linear(const char *what, int64_t in, int64_t out, bool acc) {
        for (size_t i = 0; i < ELEMENTSOF(rows_tested); i++) {
                int64_t m = rows_tested[i];
                run_case(&(gemm_case) { what, true, m, out, in, in, 0, in, 0, out, 0,
                                        acc || m == 7 });
        }
}

static void sonata_linears(void) {
        /* The model's widths (48 … 512) and the 32-based ones of smaller configurations. */
        static const int64_t widths[] = { 16, 32, 48, 64, 96, 128, 192, 256, 384, 512 };
        char name[64];
        for (size_t i = 0; i < ELEMENTSOF(widths); i++) {
                int64_t c = widths[i];
                snprintf(name, sizeof(name), "qkv C=%lld", (long long) c);
                linear(name, c, 3 * c, false);
                snprintf(name, sizeof(name), "proj/cpe C=%lld", (long long) c);
                linear(name, c, c, false);
                snprintf(name, sizeof(name), "fc1 C=%lld", (long long) c);
                linear(name, c, 4 * c, false);
                snprintf(name, sizeof(name), "fc2 C=%lld", (long long) c);
                linear(name, 4 * c, c, true);
        }
        linear("stem 9->48", 9, 48, false);
        linear("stem 6->32", 6, 32, false);
        linear("stem 9->16 (tiny)", 9, 16, false);
        static const int64_t down[][2] = { { 48, 96 }, { 96, 192 }, { 192, 384 }, { 384, 512 },
                                           { 32, 64 }, { 256, 512 }, { 16, 16 }, { 16, 32 },
                                           { 32, 32 } };
        for (size_t i = 0; i < ELEMENTSOF(down); i++) {
                snprintf(name, sizeof(name), "pool %lld->%lld", (long long) down[i][0],
                         (long long) down[i][1]);
                linear(name, down[i][0], down[i][1], false);
        }
        /* x and y views with row strides wider than the rows. (A shape of its own: oneDNN
         * 2.6 crashes on a 1-row product strided like this after a dense one of the same
         * m, n, k; see the report of this test's author.) */
        for (size_t i = 0; i < ELEMENTSOF(rows_tested); i++)
                run_case(&(gemm_case) { "strided x, y", true, rows_tested[i], 100, 44, 53, 0, 44,
                                        0, 101, 0, i == 1 });
        run_case(&(gemm_case) { "empty m", true, 0, 32, 32, 32, 0, 32, 0, 32, 0, false });
}

/* The offset product of every neighbour r: x[m, cin]·W[:, r·cin : (r+1)·cin]ᵀ. */
static void subm_conv(void) {
        static const int64_t ch[][2] = { { 6, 32 }, { 9, 48 }, { 32, 32 }, { 48, 48 },
                                         { 96, 96 }, { 192, 192 }, { 384, 384 }, { 512, 512 },
                                         { 32, 64 }, { 9, 16 }, { 16, 16 }, { 64, 64 } };
        static const int64_t offsets[] = { 0, 13, 26 };
        char name[64];
        for (size_t i = 0; i < ELEMENTSOF(ch); i++)
                for (size_t o = 0; o < ELEMENTSOF(offsets); o++)
                        for (size_t j = 0; j < ELEMENTSOF(rows_tested); j++) {
                                int64_t cin = ch[i][0], cout = ch[i][1], r = offsets[o];
                                snprintf(name, sizeof(name), "conv %lld->%lld r=%lld",
                                         (long long) cin, (long long) cout, (long long) r);
                                run_case(&(gemm_case) { name, true, rows_tested[j], cout, cin,
                                                        cin, 0, 27 * cin, r * cin, cout, 0,
                                                        r != 0 });
                        }
}

/* A first layer's column slice [col, col+k) of a [n, cols] weight. */
static void slice(const char *what, int64_t n, int64_t cols, int64_t col, int64_t k, bool acc) {
        for (size_t i = 0; i < ELEMENTSOF(rows_tested); i++) {
                int64_t m = rows_tested[i];
                run_case(&(gemm_case) { what, true, m, n, k, k, 0, cols, col, n, 0, acc });
        }
}

static void projection_and_heads(void) {
        /* The feature projection: level s's slice of the [512, Σ C] first layer. */
        static const int64_t widths[] = { 48, 96, 192, 384, 512 };
        int64_t col = 0;
        for (size_t s = 0; s < ELEMENTSOF(widths); col += widths[s], s++) {
                char name[64];
                snprintf(name, sizeof(name), "mlp.0 level %zu", s);
                slice(name, 512, 1232, col, widths[s], false);
        }
        linear("mlp.1/2 512", 512, 512, false);
        /* the tiny config's projection: level slices of [512, 160] */
        static const int64_t tiny[] = { 16, 16, 32, 32, 64 };
        col = 0;
        for (size_t s = 0; s < ELEMENTSOF(tiny); col += tiny[s], s++) {
                char name[64];
                snprintf(name, sizeof(name), "mlp.0 tiny level %zu", s);
                slice(name, 512, 160, col, tiny[s], false);
        }

        slice("seg w0 [512,518] 515", 512, 518, 0, 515, false);
        slice("seg w0 [512,518] 512", 512, 518, 0, 512, false);
        slice("s2g w0 [256,521] 515", 256, 521, 0, 515, false);
        slice("s2g w0 [256,521] 512", 256, 521, 0, 512, false);
        slice("s2 w0 [256,777] 0+256", 256, 777, 0, 256, true);
        slice("s2 w0 [256,777] 256+515", 256, 777, 256, 515, false);
        slice("s2 w0 [256,777] 256+512", 256, 777, 256, 512, false);
        /* the GPU's heads read [feat | point] from its tile, rows of 520 floats (CU_XLD) */
        static const struct {
                const char *what;
                int64_t n, cols, col;
        } tile[] = { { "seg w0 from the tile", 512, 518, 0 },
                     { "s2g w0 from the tile", 256, 521, 0 },
                     { "s2 w0 from the tile", 256, 777, 256 } };
        for (size_t t = 0; t < ELEMENTSOF(tile); t++)
                for (size_t i = 0; i < ELEMENTSOF(rows_tested); i++)
                        run_case(&(gemm_case) { tile[t].what, true, rows_tested[i], tile[t].n,
                                                515, 520, 0, tile[t].cols, tile[t].col,
                                                tile[t].n, 0, false });
        linear("head hidden 512", 512, 512, false);
        linear("head hidden 256", 256, 256, false);
        linear("seg last 512->1", 512, 1, false);
        linear("s2 last 256->1", 256, 1, false);
        linear("iou last 256->3", 256, 3, false);
}

/* One head of windowed attention inside qkv [w, 3C] (q | k | v, head-major, 16 wide):
 * S[w,w] = Q·Kᵀ and O = P·V written into out [w, C] at the head's columns. */
static void attention(void) {
        static const int64_t windows[] = { 1, 7, 257, 1024 };
        static const int64_t channels[] = { 16, 48, 64, 512 };
        for (size_t ci = 0; ci < ELEMENTSOF(channels); ci++)
                for (size_t wi = 0; wi < ELEMENTSOF(windows); wi++) {
                        int64_t c = channels[ci], w = windows[wi], h = c / 16 - 1;
                        run_case(&(gemm_case) { "attn S = Q.K^T", true, w, w, 16, 3 * c, h * 16,
                                                3 * c, c + h * 16, w, 0, false });
                        run_case(&(gemm_case) { "attn O = P.V", false, w, 16, w, w, 0, 3 * c,
                                                2 * c + h * 16, c, h * 16, false });
                }
}

/* ---- the layout's fields and error returns ------------------------------------------------- */

static void fields(void) {
        p3_gemm_layout l;
        int r = p3_gemm_layout_rowmajor(true, 7, 32, 6, 6, 162, 40, &l);
        expect(r == 0 && l.transa == P3_GEMM_T && l.transb == P3_GEMM_N && l.m == 32 &&
               l.n == 7 && l.k == 6 && l.first == P3_GEMM_OPERAND_B &&
               l.second == P3_GEMM_OPERAND_A && l.lda == 162 && l.ldb == 6 && l.ldc == 40,
               "NT: T,N m=n n=m k, B first (ld 162), A second (ld 6)");
        r = p3_gemm_layout_rowmajor(false, 9, 16, 9, 9, 1536, 512, &l);
        expect(r == 0 && l.transa == P3_GEMM_N && l.transb == P3_GEMM_N && l.m == 16 &&
               l.n == 9 && l.k == 9 && l.lda == 1536 && l.ldb == 9 && l.ldc == 512,
               "NN: N,N m=n n=m k, B first (ld 1536)");
        r = p3_gemm_layout_rowmajor(true, 5, 0, 0, 0, 0, 0, &l);
        expect(r == 0 && l.lda == 1 && l.ldb == 1 && l.ldc == 1 && l.m == 0 && l.k == 0,
               "empty rows: strides of 0 become 1 (cuBLAS wants >= 1)");
        r = p3_gemm_layout_rowmajor(true, INT_MAX, 1, 1, 1, 1, 1, &l);
        expect(r == 0 && l.n == INT_MAX, "m = INT_MAX fits");
}

static void errors(void) {
        p3_gemm_layout l;
        static const struct {
                const char *what;
                bool b_nk;
                int64_t m, n, k, lda, ldb, ldc;
                int want;
        } bad[] = {
                { "m < 0", true, -1, 4, 4, 4, 4, 4, -EINVAL },
                { "n < 0", true, 4, -1, 4, 4, 4, 4, -EINVAL },
                { "k < 0", true, 4, 4, -1, 4, 4, 4, -EINVAL },
                { "lda < k", true, 4, 4, 5, 4, 5, 4, -EINVAL },
                { "NT ldb < k", true, 4, 8, 5, 5, 4, 8, -EINVAL },
                { "NN ldb < n (>= k)", false, 4, 8, 5, 5, 7, 8, -EINVAL },
                { "ldc < n", true, 4, 8, 5, 5, 5, 7, -EINVAL },
                { "negative stride", true, 4, 0, 0, -1, 0, 0, -EINVAL },
                { "m > INT_MAX", true, (int64_t) INT_MAX + 1, 4, 4, 4, 4, 4, -EOVERFLOW },
                { "lda > INT_MAX", true, 4, 4, 4, (int64_t) INT_MAX + 1, 4, 4, -EOVERFLOW },
                { "ldb > INT_MAX", true, 4, 4, 4, 4, (int64_t) INT_MAX + 1, 4, -EOVERFLOW },
                { "ldc > INT_MAX", false, 4, 4, 4, 4, 4, (int64_t) 1 << 40, -EOVERFLOW },
                { "k > INT_MAX", true, 1, 1, (int64_t) INT_MAX + 1, (int64_t) INT_MAX + 1,
                  (int64_t) INT_MAX + 1, 1, -EOVERFLOW },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                l = (p3_gemm_layout) { .m = 12345 };
                int r = p3_gemm_layout_rowmajor(bad[i].b_nk, bad[i].m, bad[i].n, bad[i].k,
                                                bad[i].lda, bad[i].ldb, bad[i].ldc, &l);
                expect(r == bad[i].want && l.m == 12345, "error: %s -> %d (want %d)", bad[i].what,
                       r, bad[i].want);
        }
        int r = p3_gemm_layout_rowmajor(true, 1, 1, 1, 1, 1, 1, NULL);
        expect(r == -EINVAL, "error: NULL result -> %d", r);
}

int main(void) {
        int r = cpu_dnnl_init();
        if (r < 0) {
                printf("oneDNN unavailable (%d): skipped\n", r);
                return EXIT_TEST_SKIP;
        }
        fields();
        errors();
        sonata_linears();
        subm_conv();
        projection_and_heads();
        attention();
        if (failures) {
                printf("cuda-gemm-layout: %d check(s) FAILED\n", failures);
                return 1;
        }
        printf("cuda-gemm-layout: all checks passed\n");
        return 0;
}
