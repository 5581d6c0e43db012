/* SPDX-License-Identifier: MIT */
/* The CUDA kernels' element and row arithmetic (kernels/cuda/cuda_elementwise.cuh), compiled
 * here as host code, against the CPU twins and references written here in double:
 *
 *   bf16 rounding      cu_to_bf16_bits == cpu_bf16_from_f32_1 (cpu_bf16.h) bit for bit over
 *                      special values and ~3·10^6 values: random bits, ties and their
 *                      neighbours, denormals, the overflow edge; NaN → NaN (payloads may differ)
 *   fp16 rounding      cu_to_half_bits == round-to-nearest-even worked out in double, over every
 *                      FP16 midpoint (ties) and its float neighbours, subnormals, overflow to inf
 *   gelu               cu_gelu against x/2·erfc(-x/√2) in double and against cpu_gelu1
 *   layernorm stats    Welford partials of random partitions, merged in random trees, and the
 *                      kernel's 32-lane shuffle tree, against a double two-pass mean/variance
 *   layernorm rows     the kernel's arithmetic in its order against the CPU backend's layernorm,
 *                      with every flag combination, in place, on strided rows
 *   float max keys     cu_f32_key order over special values (±0, ±inf, denormals, NaN) and
 *                      random pairs; round trips; segment max by keys == the CPU's segment_max
 *
 * One line per check with its largest error; exit 0 only when every check passes. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend.h"
#include "cpu/cpu_bf16.h"
#include "cpu/cpu_ops.h"
#include "omp-env.h"
#include "test-util.h"
}

#include "cuda_elementwise.cuh"

static int failures;

/* ---- tiny PRNG (splitmix64) ---------------------------------------------------------------- */

static uint64_t rng_state = 0x0e1e3e47c0da5eedull;

static uint64_t rnd_u64(void) {
        return test_rnd_u64(&rng_state);
}

static uint32_t rnd_u32(void) {
        return (uint32_t) (rnd_u64() >> 32);
}

/* uniform in [lo, hi) */
static double rnd_d(double lo, double hi) {
        return lo + (hi - lo) * test_rnd_unit(&rng_state);
}

static int rnd_i(int n) {
        return (int) (rnd_u64() % (uint64_t) n);
}

static float f_of(uint32_t u) {
        float f;
        memcpy(&f, &u, sizeof(f));
        return f;
}

static uint32_t u_of(float f) {
        uint32_t u;
        memcpy(&u, &f, sizeof(u));
        return u;
}

/* ---- reporting ------------------------------------------------------------------------------ */

static bool line(bool ok, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char buf[256];
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        printf("%-72s %s\n", buf, ok ? "ok" : "FAIL");
        if (!ok)
                failures++;
        return ok;
}

/* ---- BF16 ----------------------------------------------------------------------------------- */

static bool bf16_is_nan(uint16_t h) {
        return (h & 0x7f80u) == 0x7f80u && (h & 0x007fu) != 0;
}

/* Compares one value; counts mismatches and NaN payload differences. */
static void bf16_one(float f, long *n, long *bad, long *nan_payload, uint32_t *first_bad) {
        uint16_t got = cu_to_bf16_bits(f), ref = cpu_bf16_from_f32_1(f);
        (*n)++;
        if (isnan(f)) {
                if (!bf16_is_nan(got) || !bf16_is_nan(ref)) {
                        if (!(*bad)++)
                                *first_bad = u_of(f);
                } else if (got != ref) {
                        (*nan_payload)++;
                }
                return;
        }
        if (got != ref && !(*bad)++)
                *first_bad = u_of(f);
}

static void test_bf16(void) {
        long n = 0, bad = 0, nan_payload = 0;
        uint32_t first_bad = 0;
        static const uint32_t special[] = {
                0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x00007fff, 0x00008000,
                0x00008001, 0x00018000, 0x007fffff, 0x00800000, 0x3f800000, 0x3f808000,
                0x3f818000, 0x3f807fff, 0x3f808001, 0x7f7fffff, 0x7f7f8000, 0x7f7f7fff,
                0xff7fffff, 0x7f800000, 0xff800000, 0x7f800001, 0x7fc00000, 0xffc00000,
                0x7fffffff, 0xffffffff, 0x7f810000, 0xff8f0001,
        };
        for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++)
                bf16_one(f_of(special[i]), &n, &bad, &nan_payload, &first_bad);
        for (int i = 0; i < 1000000; i++)
                bf16_one(f_of(rnd_u32()), &n, &bad, &nan_payload, &first_bad);
        /* Ties (dropped half exactly 0x8000) and their neighbours, odd and even kept parts. */
        static const uint32_t low[] = {0x8000, 0x7fff, 0x8001, 0x0000, 0xffff, 0x0001};
        for (int i = 0; i < 1500000; i++) {
                uint32_t hi = rnd_u32() & 0xffff0000u;
                bf16_one(f_of(hi | low[i % 6]), &n, &bad, &nan_payload, &first_bad);
        }
        /* Denormals and the overflow edge (exponent 0xfe, where rounding up gives inf). */
        for (int i = 0; i < 500000; i++) {
                uint32_t u = rnd_u32();
                uint32_t e = i & 1 ? 0x7f000000u : 0;
                bf16_one(f_of((u & 0x807fffffu) | e), &n, &bad, &nan_payload, &first_bad);
        }
        line(bad == 0, "bf16: cu_to_bf16_bits == cpu_bf16_from_f32_1, %ld values, %ld differ", n,
             bad);
        if (bad)
                printf("    first difference at 0x%08x\n", first_bad);
        /* The CPU keeps sign and payload (quietened); CUDA's __float2bfloat16_rn gives 0x7fff
         * for every NaN. Both are NaN: a note, not a failure. */
        printf("%-72s %s\n", "bf16: NaN payloads", "note");
        printf("    %ld NaN inputs give a different NaN (CUDA 0x%04x for NaN 0xffc00001, "
               "CPU 0x%04x)\n", nan_payload, cu_to_bf16_bits(f_of(0xffc00001u)),
               cpu_bf16_from_f32_1(f_of(0xffc00001u)));
}

/* ---- FP16 ----------------------------------------------------------------------------------- */

/* FP32 → FP16 bits, round to nearest even, worked out in double: the value in units of the
 * destination's ulp, rounded by rint (ties to even in the default rounding mode). A carry out of
 * the significand lands in the exponent; one past the largest finite exponent is inf. */
static uint16_t half_ref(float f) {
        if (isnan(f))
                return 0x7e00;
        uint16_t sign = signbit(f) ? 0x8000 : 0;
        double a = fabs((double) f);
        if (isinf(f))
                return sign | 0x7c00;
        if (a < 0x1p-14) /* subnormal (or zero) result: units of 2^-24 */
                return sign | (uint16_t) rint(a * 0x1p24);
        int e;
        frexp(a, &e); /* a = m·2^e, m in [0.5, 1): unbiased exponent e-1 */
        e -= 1;
        if (e > 15)
                return sign | 0x7c00;
        double q = rint(ldexp(a, 10 - e)); /* in [1024, 2048] */
        uint32_t bits = ((uint32_t) (e + 15) << 10) + (uint32_t) q - 1024u;
        return sign | (uint16_t) (bits >= 0x7c00u ? 0x7c00u : bits);
}

static bool half_is_nan(uint16_t h) {
        return (h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0;
}

static void half_one(float f, long *n, long *bad, uint32_t *first_bad) {
        uint16_t got = cu_to_half_bits(f), ref = half_ref(f);
        (*n)++;
        bool ok = isnan(f) ? half_is_nan(got) : got == ref;
        if (!ok && !(*bad)++)
                *first_bad = u_of(f);
}

/* FP16 bits → double (exact). */
static double half_value(uint16_t h) {
        int e = (h >> 10) & 0x1f, m = h & 0x3ff;
        double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
        return h & 0x8000 ? -v : v;
}

static void test_fp16(void) {
        /* The reference itself, on values worked out by hand. */
        struct {
                float f;
                uint16_t h;
        } known[] = {
                {1.0f, 0x3c00},        {-2.0f, 0xc000},       {65504.0f, 0x7bff},
                {65519.99f, 0x7bff},   {65520.0f, 0x7c00},    {1e10f, 0x7c00},
                {0x1p-24f, 0x0001},    {0x1p-25f, 0x0000},    {0x1.000002p-25f, 0x0001},
                {0x3p-25f, 0x0002},    {0x5p-25f, 0x0002},    {0x1p-14f, 0x0400},
                {0x1.ffcp-15f, 0x0400}, {1.0f + 0x1p-11f, 0x3c00}, {1.0f + 0x3p-11f, 0x3c02},
                {-0.0f, 0x8000},       {-INFINITY, 0xfc00},
        };
        int ref_bad = 0;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
                if (half_ref(known[i].f) != known[i].h)
                        ref_bad++;
        line(ref_bad == 0, "fp16: the double reference on %zu hand-worked values",
             sizeof(known) / sizeof(known[0]));

        long n = 0, bad = 0;
        uint32_t first_bad = 0;
        /* Every midpoint between neighbouring finite FP16 values (a tie: to the even one), and
         * the floats just below and above it, both signs. The midpoint past 65504 is 65520. */
        for (uint32_t h = 0; h < 0x7c00; h++) {
                double mid = (half_value((uint16_t) h) + half_value((uint16_t) (h + 1))) / 2;
                if (h == 0x7bff)
                        mid = 65520.0;
                float m = (float) mid; /* exact: a midpoint has 12 significant bits */
                float around[3] = {m, nextafterf(m, 0.0f), nextafterf(m, INFINITY)};
                for (int k = 0; k < 3; k++) {
                        half_one(around[k], &n, &bad, &first_bad);
                        half_one(-around[k], &n, &bad, &first_bad);
                }
                half_one((float) half_value((uint16_t) h), &n, &bad, &first_bad);
        }
        long ties = n;
        /* Random bits (mostly far outside FP16's range: zeros and infs), then random values in
         * and around its range: subnormals, normals, the overflow edge. */
        for (int i = 0; i < 1000000; i++)
                half_one(f_of(rnd_u32()), &n, &bad, &first_bad);
        for (int i = 0; i < 1500000; i++) {
                float f = (float) ldexp(rnd_d(1.0, 2.0), rnd_i(46) - 28);
                half_one(i & 1 ? -f : f, &n, &bad, &first_bad);
        }
        static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, FLT_MAX,
                                        -FLT_MAX, FLT_MIN, 1e-45f};
        for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++)
                half_one(special[i], &n, &bad, &first_bad);
        line(bad == 0, "fp16: cu_to_half_bits == RNE in double, %ld values (%ld near ties), %ld "
             "differ", n, ties, bad);
        if (bad)
                printf("    first difference at 0x%08x: got 0x%04x ref 0x%04x\n", first_bad,
                       cu_to_half_bits(f_of(first_bad)), half_ref(f_of(first_bad)));
}

/* ---- GELU ----------------------------------------------------------------------------------- */

static double gelu_ref(double x) {
        return 0.5 * x * erfc(-x / sqrt(2.0));
}

static void test_gelu(void) {
        /* Allowed relative error: 2^-21 for |x| small, growing as x²·2^-22 (the FP32 rounding
         * of -x/√2 moves erfc by a relative 2a·δa = x²·2^-24 for large negative x), plus an
         * absolute 1e-37 where the result underflows. */
        double worst_cu = 0, worst_cpu = 0, worst_x_cu = 0, max_cu_cpu = 0;
        long n = 0, nan_bad = 0;
        for (int i = 0; i <= 2000000; i++) {
                float x = (float) (-14.0 + 24.0 * i / 2000000.0);
                if (i % 7 == 0)
                        x = (float) rnd_d(-4.0, 4.0);
                double ref = gelu_ref(x);
                double tol = (0x1p-21 + (double) x * x * 0x1p-22) * fabs(ref) + 1e-37;
                double cu = cu_gelu(x), cpu = cpu_gelu1(x);
                double e_cu = fabs(cu - ref) / tol, e_cpu = fabs(cpu - ref) / tol;
                if (!(e_cu <= worst_cu)) {
                        worst_cu = isnan(e_cu) ? INFINITY : e_cu;
                        worst_x_cu = x;
                }
                if (!(e_cpu <= worst_cpu))
                        worst_cpu = isnan(e_cpu) ? INFINITY : e_cpu;
                if (fabs(x) < 4)
                        max_cu_cpu = fmax(max_cu_cpu, fabs(cu - cpu) / fmax(fabs(ref), 1e-30));
                n++;
        }
        static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e30f, -1e30f,
                                        1e-40f, -1e-40f};
        for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++) {
                float a = cu_gelu(special[i]), b = cpu_gelu1(special[i]);
                if (isnan(a) != isnan(b) || (!isnan(a) && a != b))
                        nan_bad++;
        }
        line(worst_cu <= 1.0, "gelu: cu_gelu vs double erfc, %ld x in [-14,10]: worst %.3g of tol "
             "(x=%.4g)", n, worst_cu, worst_x_cu);
        line(worst_cpu <= 1.0, "gelu: cpu_gelu1 vs double erfc (same tol): worst %.3g of tol",
             worst_cpu);
        line(max_cu_cpu <= 2e-6, "gelu: |cu_gelu - cpu_gelu1|/|ref| for |x|<4: %.3g",
             max_cu_cpu);
        line(nan_bad == 0, "gelu: ±0, ±inf, NaN, ±1e30, denormals as the CPU (%ld differ)",
             nan_bad);
}

/* ---- LayerNorm statistics ------------------------------------------------------------------- */

/* Row generators: centred, offset (small spread next to the mean), mixed magnitudes, constant. */
static void fill_row(float *x, int c, int kind) {
        double off = rnd_d(-3, 3), scale = rnd_d(0.5, 2);
        for (int j = 0; j < c; j++) {
                switch (kind) {
                case 0:
                        x[j] = (float) (off + scale * rnd_d(-1.7, 1.7));
                        break;
                case 1:
                        x[j] = (float) (50.0 + 0.05 * rnd_d(-1.7, 1.7));
                        break;
                case 2:
                        x[j] = (float) (ldexp(rnd_d(-1, 1), rnd_i(12) - 6));
                        break;
                default:
                        x[j] = 0.75f;
                        break;
                }
        }
}

static void two_pass(const float *x, int c, double *mean, double *var) {
        double s = 0, q = 0;
        for (int j = 0; j < c; j++)
                s += x[j];
        *mean = s / c;
        for (int j = 0; j < c; j++)
                q += (x[j] - *mean) * (x[j] - *mean);
        *var = q / c;
}

/* The kernel's statistics: lane l pushes x[l] - shift, x[l+32] - shift, …; the shuffle tree
 * merges. */
static cu_stats lane_stats(const float *x, int c, float shift) {
        cu_stats p[32];
        for (int l = 0; l < 32; l++) {
                p[l] = cu_stats{0.0f, 0.0f, 0.0f};
                for (int j = l; j < c; j += 32)
                        p[l] = cu_stats_push(p[l], x[j] - shift);
        }
        return cu_stats_tree(p, 32);
}

/* Elements dealt to P partials at random, merged in a random order of pairs. */
static cu_stats random_stats(const float *x, int c, float shift) {
        int np = 1 + rnd_i(64);
        cu_stats p[64];
        for (int k = 0; k < np; k++)
                p[k] = cu_stats{0.0f, 0.0f, 0.0f};
        for (int j = 0; j < c; j++) {
                int k = rnd_i(np);
                p[k] = cu_stats_push(p[k], x[j] - shift);
        }
        while (np > 1) {
                int a = rnd_i(np), b = rnd_i(np - 1);
                if (b >= a)
                        b++;
                p[a] = cu_stats_merge(p[a], p[b]);
                p[b] = p[--np];
        }
        return p[0];
}

/* Errors of the mean relative to max|x| and of the variance relative to var (absolute where
 * var is 0), kept per row kind. */
typedef struct stat_err {
        double mean, var;
} stat_err;

static void stat_check(cu_stats s, float shift, const float *x, int c, stat_err *e) {
        double mean, var, amax = 0;
        two_pass(x, c, &mean, &var);
        for (int j = 0; j < c; j++)
                amax = fmax(amax, fabs(x[j]));
        float m, inv;
        cu_ln_finish(s, &m, &inv);
        double v = (double) s.m2 / s.n;
        double em = fabs(((double) shift + m) - mean) / fmax(amax, 1e-30);
        double ev = var > 0 ? fabs(v - var) / var : fabs(v);
        if (s.n != c)
                em = INFINITY;
        e->mean = fmax(e->mean, isnan(em) ? INFINITY : em);
        e->var = fmax(e->var, isnan(ev) ? INFINITY : ev);
}

static void test_ln_stats(void) {
        static const int widths[] = {1, 2, 3, 7, 31, 32, 33, 64, 100, 256, 512, 777, 1024, 2048};
        static const char *kinds[] = {"centred", "offset 50+-0.05", "mixed 2^-6..2^6", "constant"};
        /* Bounds: FP32 Welford/Chan keeps mean and variance within a few ulps; the offset rows
         * hold up only through the shift (unshifted, their variance was off by 1e-4). */
        static const double tol_mean = 4e-7, tol_var[] = {3e-6, 3e-6, 3e-6, 0};
        float x[2048];
        for (int kind = 0; kind < 4; kind++) {
                stat_err lanes = {0, 0}, rnd = {0, 0};
                for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++) {
                        for (int rep = 0; rep < 20; rep++) {
                                int c = widths[w];
                                fill_row(x, c, kind);
                                /* the kernel's shift, and none (the merge itself) */
                                stat_check(lane_stats(x, c, x[0]), x[0], x, c, &lanes);
                                stat_check(random_stats(x, c, x[0]), x[0], x, c, &rnd);
                                if (kind == 1)
                                        continue;
                                stat_check(lane_stats(x, c, 0.0f), 0.0f, x, c, &lanes);
                                stat_check(random_stats(x, c, 0.0f), 0.0f, x, c, &rnd);
                        }
                }
                line(lanes.mean <= tol_mean && lanes.var <= tol_var[kind],
                     "ln stats %-16s 32-lane tree: mean %.2g var %.2g", kinds[kind], lanes.mean,
                     lanes.var);
                line(rnd.mean <= tol_mean && rnd.var <= tol_var[kind],
                     "ln stats %-16s random splits: mean %.2g var %.2g", kinds[kind], rnd.mean,
                     rnd.var);
        }
}

/* ---- LayerNorm rows against the CPU backend ------------------------------------------------- */

/* What layernorm_kernel computes for one row, in its order. */
static void kernel_row(const float *x, const float *g, const float *b, float *y, int c,
                       unsigned flags) {
        float mean, inv;
        cu_ln_finish(lane_stats(x, c, x[0]), &mean, &inv);
        for (int j = 0; j < c; j++)
                y[j] = cu_ln_out(x[j], x[0], mean, inv, g[j], b[j], flags & P3_GELU,
                                 flags & P3_ACCUMULATE, y[j]);
}

static void test_ln_rows(p3_backend *be) {
        static const int widths[] = {3, 32, 64, 96, 256, 384, 512, 768, 1027, 2048};
        static const char *kinds[] = {"centred", "offset 50+-0.05", "mixed", "constant"};
        /* Relative to max|y|: FP32 statistics against the CPU's double ones. The offset rows
         * would pay ulp(50)/spread ≈ 2e-4 for an unshifted FP32 mean. */
        static const double tol[] = {1e-6, 1e-6, 1e-6, 1e-6};
        const int rows = 24;
        for (int kind = 0; kind < 4; kind++) {
                double worst = 0;
                for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++) {
                        int c = widths[w];
                        int64_t ld = c + (w & 1 ? 5 : 0);
                        size_t sz = (size_t) (rows * ld);
                        float *x = (float *) malloc(sizeof(float) * sz);
                        float *y0 = (float *) malloc(sizeof(float) * sz);
                        float *ycpu = (float *) malloc(sizeof(float) * sz);
                        float *ycu = (float *) malloc(sizeof(float) * sz);
                        float *g = (float *) malloc(sizeof(float) * c);
                        float *bb = (float *) malloc(sizeof(float) * c);
                        CHECK(x && y0 && ycpu && ycu && g && bb);
                        for (int i = 0; i < rows; i++) {
                                fill_row(x + i * ld, c, kind);
                                fill_row(y0 + i * ld, c, 0);
                        }
                        for (int j = 0; j < c; j++) {
                                g[j] = (float) rnd_d(0.5, 1.5);
                                bb[j] = (float) rnd_d(-0.5, 0.5);
                        }
                        for (unsigned flags = 0; flags < 4; flags++) {
                                /* in place on odd flags: y is x */
                                bool inplace = flags == 1 || flags == 3;
                                p3_tensor tx = {x, P3_F32, rows, c, ld};
                                p3_tensor tg = {g, P3_F32, 1, c, 0};
                                p3_tensor tb = {bb, P3_F32, 1, c, 0};
                                p3_tensor ty = {ycpu, P3_F32, rows, c, ld};
                                memcpy(ycpu, inplace ? x : y0, sizeof(float) * sz);
                                memcpy(ycu, ycpu, sizeof(float) * sz);
                                if (inplace)
                                        tx.data = ycpu;
                                CHECK_OK(be->ops->layernorm(be, &tx, &tg, &tb, &ty, flags));
                                double ymax = 0, d = 0;
                                for (int i = 0; i < rows; i++) {
                                        kernel_row(x + i * ld, g, bb, ycu + i * ld, c, flags);
                                        for (int j = 0; j < c; j++) {
                                                double a = ycu[i * ld + j], r = ycpu[i * ld + j];
                                                ymax = fmax(ymax, fabs(r));
                                                double e = fabs(a - r);
                                                d = fmax(d, isnan(e) ? INFINITY : e);
                                        }
                                }
                                worst = fmax(worst, d / fmax(ymax, 1e-30));
                        }
                        free(x);
                        free(y0);
                        free(ycpu);
                        free(ycu);
                        free(g);
                        free(bb);
                }
                line(worst <= tol[kind], "layernorm %-16s vs CPU, 4 flag sets: max|diff|/max|y| "
                     "%.3g", kinds[kind], worst);
        }
}

/* ---- float max keys ------------------------------------------------------------------------- */

static void test_keys(p3_backend *be) {
        /* Ascending; -0 just below +0. */
        static const uint32_t asc[] = {
                0xff800000, 0xff7fffff, 0xf149f2ca, 0xc0000000, 0xbf800001, 0xbf800000,
                0x80800000, 0x807fffff, 0x80000001, 0x80000000, 0x00000000, 0x00000001,
                0x007fffff, 0x00800000, 0x3f800000, 0x3f800001, 0x40000000, 0x7149f2ca,
                0x7f7fffff, 0x7f800000,
        };
        const int na = sizeof(asc) / sizeof(asc[0]);
        int bad = 0;
        for (int i = 0; i < na; i++) {
                if (u_of(cu_f32_from_key(cu_f32_key(f_of(asc[i])))) != asc[i])
                        bad++;
                if (i > 0 && !(cu_f32_key(f_of(asc[i - 1])) < cu_f32_key(f_of(asc[i]))))
                        bad++;
        }
        bad += cu_f32_key(-INFINITY) != CU_F32_KEY_NEG_INF;
        bad += !(cu_f32_key(f_of(0x7fc00000u)) > cu_f32_key(INFINITY));
        bad += !(cu_f32_key(f_of(0xffc00000u)) < cu_f32_key(-INFINITY));
        bad += u_of(cu_f32_from_key(cu_f32_key(f_of(0xffc00123u)))) != 0xffc00123u;
        line(bad == 0, "max keys: %d special values ascending, round trips, NaN ends", na);

        /* Random pairs of non-NaN floats: key order == float order (±0 aside, equal as floats
         * but ordered as keys), and every key maps back to its float. */
        long pairs = 0, wrong = 0;
        for (int i = 0; i < 2000000; i++) {
                uint32_t ua = rnd_u32(), ub = i & 1 ? rnd_u32() : ua ^ (rnd_u32() & 0xff);
                float a = f_of(ua), b = f_of(ub);
                if (isnan(a) || isnan(b))
                        continue;
                pairs++;
                uint32_t ka = cu_f32_key(a), kb = cu_f32_key(b);
                bool zeros = a == 0 && b == 0;
                if ((a < b) != (ka < kb) && !zeros)
                        wrong++;
                if (u_of(cu_f32_from_key(ka)) != ua)
                        wrong++;
        }
        line(wrong == 0, "max keys: %ld random pairs keep order and round-trip (%ld wrong)",
             pairs, wrong);

        /* Segment max as the kernel does it (keys from -inf, max of the keys of non-NaN members)
         * against the CPU backend's segment_max; inputs include NaN, ±inf, denormals. */
        const int n = 5000, m = 97, c = 19;
        float *x = (float *) malloc(sizeof(float) * n * c);
        float *ycpu = (float *) malloc(sizeof(float) * m * c);
        uint32_t *keys = (uint32_t *) malloc(sizeof(uint32_t) * m * c);
        int32_t *cluster = (int32_t *) malloc(sizeof(int32_t) * n);
        CHECK(x && ycpu && keys && cluster);
        for (int i = 0; i < n; i++) {
                cluster[i] = i < m ? i : rnd_i(m); /* every cluster has a member */
                for (int j = 0; j < c; j++) {
                        int r = rnd_i(100);
                        x[i * c + j] = r == 0 ? NAN : r == 1 ? -INFINITY : r == 2 ? 1e-42f
                                       : r == 3 ? (i % 50 == 0 ? INFINITY : -0.0f)
                                       : (float) rnd_d(-1e3, -1) * (j % 3 ? 1 : -1);
                }
        }
        for (int k = 0; k < m * c; k++)
                keys[k] = CU_F32_KEY_NEG_INF;
        for (int i = 0; i < n; i++)
                for (int j = 0; j < c; j++) {
                        float v = x[i * c + j];
                        uint32_t *k = &keys[cluster[i] * c + j];
                        if (v == v && cu_f32_key(v) > *k)
                                *k = cu_f32_key(v);
                }
        p3_tensor tx = {x, P3_F32, n, c, 0}, ty = {ycpu, P3_F32, m, c, 0};
        CHECK_OK(be->ops->segment_max(be, &tx, cluster, &ty));
        long diff = 0;
        for (int k = 0; k < m * c; k++) {
                float a = cu_f32_from_key(keys[k]);
                if (!(a == ycpu[k]))
                        diff++;
        }
        line(diff == 0, "segment max by keys == CPU segment_max, %d x %d → %d (%ld differ)", n,
             c, m, diff);
        free(x);
        free(ycpu);
        free(keys);
        free(cluster);
}

int main(int argc, char **argv) {
        (void) argc;
        p3_omp_env_setup(argv);
        p3_backend *be;
        CHECK_OK(p3_backend_cpu_new(NULL, &be));
        test_bf16();
        test_fp16();
        test_gelu();
        test_ln_stats();
        test_ln_rows(be);
        test_keys(be);
        p3_backend_free(be);
        if (failures) {
                printf("cuda-elementwise: %d check(s) FAILED\n", failures);
                return EXIT_FAILURE;
        }
        printf("cuda-elementwise: all checks passed\n");
        return 0;
}
