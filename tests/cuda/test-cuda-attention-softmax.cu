/* SPDX-License-Identifier: MIT */
/* The CUDA attention kernel's arithmetic (kernels/cuda/cuda_attention_softmax.cuh), run on the
 * host exactly as a kernel thread runs it, against the CPU backend and double references:
 *
 *   attention        random windowed cases (n not a multiple of the window, padding slots,
 *                    1–4 heads, windows 1..1024): per query, the kernel's tile loop (64 keys
 *                    staged, chunks of 8, online softmax) against the CPU backend's attention
 *                    op on the same slot_point (p3_attention_windows / p3_attention_pad), and
 *                    against a double two-pass softmax; every output row must be written
 *   online softmax   scores fed directly: uniform in ±80, all equal, a single key (exact),
 *                    rising and falling maxima, one +80 among -80s, every chunk remainder,
 *                    against a double two-pass softmax
 *
 * Host code only (nvcc, no GPU). One line per check with its largest error; exit 0 only when
 * every check passes. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "cuda_attention_softmax.cuh"

extern "C" {
#include "backend.h"
#include "serialize.h"
#include "test-util.h"
}

#define HD CU_ATTN_HD

static int failures;
static p3_backend *be;

/* ---- tiny PRNG (splitmix64) ---------------------------------------------------------------- */

static uint64_t rng_state = 0x7a11e57c0ffee123ull;

static uint64_t rnd_u64(void) {
        return test_rnd_u64(&rng_state);
}

static float rnd_f(double lo, double hi) {
        return (float) (lo + (hi - lo) * test_rnd_unit(&rng_state));
}

static void shuffle(int32_t *a, int64_t n) {
        for (int64_t i = n - 1; i > 0; i--) {
                int64_t j = (int64_t) (rnd_u64() % (uint64_t) (i + 1));
                int32_t t = a[i];
                a[i] = a[j];
                a[j] = t;
        }
}

/* ---- reporting ------------------------------------------------------------------------------ */

/* max|got - ref| / max|ref| <= rel (NaN fails); prints the figure. */
static void report(const char *what, const float *got, const double *ref, int64_t n, double rel) {
        double maxref = 0, maxdiff = 0;
        bool nan = false;
        for (int64_t i = 0; i < n; i++) {
                if (isnan(got[i]) || isnan(ref[i]))
                        nan = true;
                maxref = fmax(maxref, fabs(ref[i]));
                maxdiff = fmax(maxdiff, fabs((double) got[i] - ref[i]));
        }
        double err = maxref > 0 ? maxdiff / maxref : maxdiff;
        bool ok = !nan && err <= rel;
        printf("%-58s max rel err %.3e (tol %.0e)%s %s\n", what, err, rel, nan ? " NaN" : "",
               ok ? "ok" : "FAIL");
        if (!ok)
                failures++;
}

/* ---- the kernel's per-query algorithm on the host -------------------------------------------- */

static int64_t slot_row(const int32_t *slot_point, int64_t n, int64_t slot) {
        int64_t p = slot_point[slot];
        return p >= 0 && p < n ? p : -1;
}

/* attention_kernel (kernels/cuda/cuda_attention.cu) simulated: its tasks in grid order, each
 * block's tile staging (every staging element, as its threads would copy them) and each of
 * its 64 threads' queries through the same .cuh functions. qkv and out with row strides. */
static void simulate_kernel(const float *qkv, int64_t ldq, const int32_t *slot_point, int64_t n,
                            int64_t n_pad, int64_t window, int heads, float *out, int64_t ldo) {
        static float4 ks[CU_ATTN_KEY_TILE * CU_ATTN_VEC], vs[CU_ATTN_KEY_TILE * CU_ATTN_VEC];
        static cu_attn_state st[CU_ATTN_QUERY_TILE];
        static float q[CU_ATTN_QUERY_TILE][HD];
        int64_t p[CU_ATTN_QUERY_TILE], c = (int64_t) heads * HD;
        int64_t qtiles = (window + CU_ATTN_QUERY_TILE - 1) / CU_ATTN_QUERY_TILE;
        int64_t tasks = (n_pad / window) * heads * qtiles;
        for (int64_t t = 0; t < tasks; t++) {
                cu_attn_task k = cu_attn_task_of(t, qtiles, heads, window);
                if (k.s0 + k.first >= n)
                        continue;
                for (int tid = 0; tid < CU_ATTN_QUERY_TILE; tid++) {
                        int64_t qi = k.first + tid;
                        p[tid] = qi < window && k.s0 + qi < n ? slot_row(slot_point, n, k.s0 + qi)
                                                              : -1;
                        cu_attn_init(&st[tid]);
                        if (p[tid] >= 0)
                                cu_attn_load_q((const float4 *) (qkv + cu_attn_qkv_at(
                                                       p[tid], ldq, c, 0, k.h, 0)),
                                               q[tid]);
                }
                for (int64_t k0 = 0; k0 < window; k0 += CU_ATTN_KEY_TILE) {
                        int count = cu_attn_tile_count(window, k0);
                        memset(ks, 0xff, sizeof(ks)); /* NaN: a slot not staged shows */
                        memset(vs, 0xff, sizeof(vs));
                        for (int e = 0; e < count * 2 * CU_ATTN_VEC; e++) {
                                int j, i;
                                bool is_v;
                                cu_attn_stage_elem(e, &j, &is_v, &i);
                                int64_t pk = slot_row(slot_point, n, k.s0 + k0 + j);
                                CHECK(pk >= 0);
                                (is_v ? vs : ks)[j * CU_ATTN_VEC + i] = *(const float4 *) (
                                        qkv + cu_attn_qkv_at(pk, ldq, c, is_v ? 2 : 1, k.h, i));
                        }
                        for (int tid = 0; tid < CU_ATTN_QUERY_TILE; tid++)
                                if (p[tid] >= 0)
                                        cu_attn_tile(&st[tid], q[tid], ks, vs, count);
                }
                for (int tid = 0; tid < CU_ATTN_QUERY_TILE; tid++)
                        if (p[tid] >= 0)
                                cu_attn_finish(&st[tid], out + p[tid] * ldo + k.h * HD);
        }
}

/* softmax(s)·v in double, two passes (max, then sums). v rows of HD floats. */
static void two_pass(const double *s, const float *v, int64_t count, double o[HD]) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < count; j++)
                mx = fmax(mx, s[j]);
        for (int d = 0; d < HD; d++)
                o[d] = 0;
        for (int64_t j = 0; j < count; j++) {
                double p = exp(s[j] - mx);
                sum += p;
                for (int d = 0; d < HD; d++)
                        o[d] += p * v[j * HD + d];
        }
        for (int d = 0; d < HD; d++)
                o[d] /= sum;
}

/* ---- attention against the CPU backend ------------------------------------------------------ */

/* n points, windows from `patch`, rows strided by `extra` floats past 3C (qkv) and C (out). */
static void attention_case(int64_t n, int patch, int heads, float qk_scale, int extra) {
        int64_t c = (int64_t) heads * HD, window, n_pad;
        p3_attention_windows(n, patch, &window, &n_pad);
        std::vector<int32_t> pad(n_pad), order(n), slot_point(n_pad);
        p3_attention_pad(n, window, n_pad, pad.data());
        for (int64_t i = 0; i < n; i++)
                order[i] = (int32_t) i;
        shuffle(order.data(), n); /* the serialization order: rank → point */
        for (int64_t s = 0; s < n_pad; s++)
                slot_point[s] = order[pad[s]];

        /* 16-byte aligned rows, as the kernel's float4 reads want (3C is a multiple of 48) */
        int64_t ldq = 3 * c + extra, ldo = c + extra;
        float4 *qkv4 = (float4 *) aligned_alloc(16, sizeof(float) * n * ldq);
        CHECK(qkv4);
        float *qkv = (float *) qkv4;
        for (int64_t i = 0; i < n; i++)
                for (int64_t k = 0; k < ldq; k++) /* q and k wider: a softmax that is not flat */
                        qkv[i * ldq + k] = k < 3 * c ? rnd_f(-1, 1) * (k < 2 * c ? qk_scale : 1)
                                                     : NAN; /* the stride's gap: never read */

        /* the CPU backend's op, on column views of the strided buffers */
        p3_tensor t_qkv_all, t_out_all;
        int32_t *sp_d = NULL;
        std::vector<float> cpu(n * ldo, NAN), emu(n * ldo, NAN);
        CHECK(p3_tensor_alloc(be, n, ldq, &t_qkv_all) == 0);
        CHECK(p3_tensor_alloc(be, n, ldo, &t_out_all) == 0);
        p3_tensor t_qkv = p3_tensor_cols(&t_qkv_all, 0, 3 * c);
        p3_tensor t_out = p3_tensor_cols(&t_out_all, 0, c);
        CHECK(be->ops->upload(be, t_qkv_all.data, qkv, sizeof(float) * n * ldq) == 0);
        CHECK(be->ops->upload(be, t_out_all.data, cpu.data(), sizeof(float) * n * ldo) == 0);
        CHECK(p3_ibuf_upload(be, slot_point.data(), n_pad, &sp_d) == 0);
        CHECK(be->ops->attention(be, &t_qkv, sp_d, n_pad, window, heads, &t_out) == 0);
        CHECK(be->ops->sync(be) == 0);
        CHECK(be->ops->download(be, cpu.data(), t_out_all.data, sizeof(float) * n * ldo) == 0);

        /* the kernel, simulated */
        simulate_kernel(qkv, ldq, slot_point.data(), n, n_pad, window, heads, emu.data(), ldo);

        /* the double reference from the same windows (each point from its first slot) */
        std::vector<double> ref(n * c, NAN), s(window);
        std::vector<float> v(window * HD), got(n * c), cpu_c(n * c);
        for (int64_t s0 = 0; s0 < n_pad; s0 += window)
                for (int h = 0; h < heads; h++)
                        for (int64_t qs = s0; qs < s0 + window && qs < n; qs++) {
                                const float *q = qkv + slot_point[qs] * ldq + h * HD;
                                for (int64_t j = 0; j < window; j++) {
                                        const float *row = qkv + slot_point[s0 + j] * ldq;
                                        double dot = 0;
                                        for (int d = 0; d < HD; d++)
                                                dot += (double) q[d] * row[c + h * HD + d];
                                        s[j] = 0.25 * dot;
                                        memcpy(&v[j * HD], row + 2 * c + h * HD,
                                               sizeof(float) * HD);
                                }
                                two_pass(s.data(), v.data(), window,
                                         &ref[slot_point[qs] * c + h * HD]);
                        }
        /* rows unstrided; the gaps must stay untouched (NaN) */
        int64_t gap_written = 0;
        for (int64_t i = 0; i < n; i++) {
                memcpy(&got[i * c], &emu[i * ldo], sizeof(float) * c);
                memcpy(&cpu_c[i * c], &cpu[i * ldo], sizeof(float) * c);
                for (int64_t k = c; k < ldo; k++)
                        gap_written += !isnan(emu[i * ldo + k]);
        }

        char what[128];
        snprintf(what, sizeof(what), "attention n=%lld win=%lld pad=%lld heads=%d qk*%.1f%s vs cpu",
                 (long long) n, (long long) window, (long long) (n_pad - n), heads, qk_scale,
                 extra ? " strided" : "");
        std::vector<double> cpu_d(cpu_c.begin(), cpu_c.end());
        report(what, got.data(), cpu_d.data(), n * c, 1e-5);
        snprintf(what, sizeof(what), "attention n=%lld win=%lld heads=%d vs double", (long long) n,
                 (long long) window, heads);
        report(what, got.data(), ref.data(), n * c, 1e-5);
        if (gap_written) {
                printf("attention: %lld values written past a row's C columns FAIL\n",
                       (long long) gap_written);
                failures++;
        }

        p3_ibuf_free(be, sp_d, n_pad);
        p3_tensor_free(be, &t_qkv_all);
        p3_tensor_free(be, &t_out_all);
        free(qkv4);
}

/* ---- the online softmax on given scores ----------------------------------------------------- */

/* Scores fed chunk by chunk through cu_attn_update (values random in ±1), against two_pass. */
static void softmax_case(const char *what, const std::vector<float> &s, double rel) {
        int64_t count = (int64_t) s.size();
        std::vector<float4> v4(count * CU_ATTN_VEC);
        float *v = (float *) v4.data();
        for (int64_t i = 0; i < count * HD; i++)
                v[i] = rnd_f(-1, 1);
        cu_attn_state st;
        cu_attn_init(&st);
        for (int64_t j0 = 0; j0 < count; j0 += CU_ATTN_CHUNK) {
                int c = (int) (count - j0 < CU_ATTN_CHUNK ? count - j0 : CU_ATTN_CHUNK);
                float chunk[CU_ATTN_CHUNK];
                for (int j = 0; j < CU_ATTN_CHUNK; j++) /* past c: poison, must not be read */
                        chunk[j] = j < c ? s[j0 + j] : NAN;
                cu_attn_update(&st, chunk, &v4[j0 * CU_ATTN_VEC], c);
        }
        float o[HD];
        cu_attn_finish(&st, o);
        std::vector<double> sd(s.begin(), s.end());
        double ref[HD];
        two_pass(sd.data(), v, count, ref);
        char line[128];
        snprintf(line, sizeof(line), "softmax %s (%lld keys)", what, (long long) count);
        report(line, o, ref, HD, rel);
}

static void test_online_softmax(void) {
        std::vector<float> s;
        const int64_t sizes[] = { 1, 7, 8, 9, 64, 100, 1000 };
        for (int64_t k : sizes) {
                s.assign(k, 0.0f);
                for (auto &x : s)
                        x = rnd_f(-80, 80);
                softmax_case("uniform +-80", s, 1e-5);
        }
        for (int64_t k : sizes) {
                s.assign(k, 3.25f);
                softmax_case("all equal 3.25", s, 4e-6);
        }
        s.assign(77, -80.0f);
        softmax_case("all equal -80", s, 1e-6);
        s.assign(77, 80.0f);
        softmax_case("all equal +80", s, 1e-6);
        s.assign(1, 42.0f);
        softmax_case("single key (exact)", s, 0);
        s.assign(1, -80.0f);
        softmax_case("single key -80 (exact)", s, 0);

        s.resize(200);
        for (int j = 0; j < 200; j++) /* a new maximum in every chunk: rescale each time */
                s[j] = -80.0f + 0.8f * (float) j;
        softmax_case("rising +-80", s, 1e-5);
        for (int j = 0; j < 200; j++)
                s[j] = 80.0f - 0.8f * (float) j;
        softmax_case("falling +-80", s, 1e-5);
        for (int j = 0; j < 200; j++) /* small steps: many keys near the maximum */
                s[j] = 0.01f * (float) j;
        softmax_case("rising gently", s, 1e-5);
        s.assign(200, -80.0f);
        s[131] = 80.0f;
        softmax_case("one +80 among -80s", s, 1e-6);
        s.assign(200, 80.0f);
        s[3] = -80.0f;
        s[150] = -80.0f;
        softmax_case("two -80s among +80s", s, 1e-6);
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(void) {
        p3_backend_options opt;
        memset(&opt, 0, sizeof(opt));
        opt.threads = 2;
        opt.precision = P3_PRECISION_FP32;
        CHECK(p3_backend_cpu_new(&opt, &be) == 0);

        test_online_softmax();

        struct {
                int64_t n;
                int patch, heads;
                float qk;
                int extra;
        } cases[] = {
                { 37, 8, 1, 2.5f, 0 },    { 50, 16, 2, 2.5f, 0 },   { 100, 24, 3, 2.5f, 4 },
                { 130, 37, 4, 2.5f, 0 },  { 300, 64, 2, 2.5f, 0 },  { 250, 100, 1, 2.5f, 0 },
                { 333, 128, 4, 2.5f, 8 }, { 129, 128, 3, 2.5f, 0 }, { 200, 65, 2, 5.0f, 0 },
                { 5, 128, 2, 2.5f, 0 },   { 1, 8, 1, 2.5f, 0 },     { 700, 300, 2, 2.5f, 0 },
                { 1100, 1024, 1, 2.5f, 0 },
        };
        for (auto &k : cases)
                attention_case(k.n, k.patch, k.heads, k.qk, k.extra);

        p3_backend_free(be);
        printf("%s\n", failures ? "FAIL" : "ok");
        return failures ? 1 : 0;
}
