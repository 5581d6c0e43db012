/* SPDX-License-Identifier: MIT */
/* The cuDNN SDPA attention path (kernels/cuda/cuda_attention_cudnn.cu), what the CPU can check:
 *
 *   indices      the dense [windows, heads, window, 16] layout: cu_sdpa_split and
 *                cu_sdpa_dense_at inverse to each other, every element once
 *   attention    the gather and scatter run on the host exactly as their kernels index (the
 *                .h functions), a double SDPA on the dense buffers between them (what cuDNN
 *                computes), against the CPU backend's attention op on the same slot_point
 *                (p3_attention_windows / p3_attention_pad, shuffled order, strided rows):
 *                FP32 copies within 1e-5, FP16-rounded copies (what cuDNN is fed) within the
 *                FP16 self-test tolerance 1e-2; every output row written, no stride gap
 *   library      libcudnn_graph.so.9 through dlopen: its version (exit 77, skip, when absent)
 *   support      the deviceless plan query, head dim 16, window 1024, sm_75..sm_90: printed
 *                (supported / not supported / needs a device); only an unexpected error fails
 *
 * Host code only (nvcc, no GPU). One line per check; exit 0 when all pass, 1 on a failure, 77
 * when the index checks pass but cuDNN cannot be loaded. */
#include <cuda_fp16.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "cuda_attention_cudnn.h"

extern "C" {
#include "backend.h"
#include "serialize.h"
#include "test-util.h"
}

#define HD CU_SDPA_HD

static int failures;
static p3_backend *be;

static uint64_t rng_state = 0x5d9a11e5c0ffee01ull;

static uint64_t rnd_u64(void) {
        return test_rnd_u64(&rng_state);
}

static float rnd_f(double lo, double hi) {
        return (float) (lo + (hi - lo) * test_rnd_unit(&rng_state));
}

static void report(const char *what, double err, double tol, bool nan) {
        bool ok = !nan && err <= tol;
        printf("%-62s max rel err %.3e (tol %.0e)%s %s\n", what, err, tol, nan ? " NaN" : "",
               ok ? "ok" : "FAIL");
        if (!ok)
                failures++;
}

/* ---- the dense layout ----------------------------------------------------------------------- */

static void index_case(int64_t window, int heads, int64_t windows) {
        int64_t total = windows * window * heads * HD;
        std::vector<uint8_t> seen(total, 0);
        int64_t bad = 0;
        for (int64_t e = 0; e < total; e++) {
                int64_t slot;
                int h, d;
                cu_sdpa_split(e, window, heads, &slot, &h, &d);
                bool in = slot >= 0 && slot < windows * window && h >= 0 && h < heads && d >= 0 &&
                          d < HD;
                int64_t back = in ? cu_sdpa_dense_at(slot, window, heads, h, d) : -1;
                if (!in || back != e)
                        bad++;
                else
                        seen[cu_sdpa_dense_at(slot, window, heads, h, d)]++;
                /* a window's slots for one head are consecutive rows of 16 */
                if (in && d == 0 && slot % window &&
                    cu_sdpa_dense_at(slot - 1, window, heads, h, 0) != e - HD)
                        bad++;
        }
        for (int64_t e = 0; e < total; e++)
                bad += seen[e] != 1;
        char what[96];
        snprintf(what, sizeof(what), "indices window=%lld heads=%d windows=%lld",
                 (long long) window, heads, (long long) windows);
        printf("%-62s %lld bad %s\n", what, (long long) bad, bad ? "FAIL" : "ok");
        if (bad)
                failures++;
}

/* ---- attention through gather → SDPA → scatter, on the host ---------------------------------- */

static float round_half(float x) {
        return __half2float(__float2half_rn(x));
}

/* The two kernels (sdpa_gather, sdpa_scatter) and cuDNN's SDPA between them, in double. */
static void emulate(const float *qkv, int64_t ldq, const int32_t *slot_point, int64_t n,
                    int64_t n_pad, int64_t window, int heads, bool fp16, float *out, int64_t ldo) {
        int64_t c = (int64_t) heads * HD, total = n_pad * heads * HD;
        std::vector<float> dq(total), dk(total), dv(total), dO(total, NAN);
        float *dense[3] = { dq.data(), dk.data(), dv.data() };
        for (int64_t e = 0; e < total; e++) { /* sdpa_gather */
                int64_t slot;
                int h, d;
                cu_sdpa_split(e, window, heads, &slot, &h, &d);
                int64_t p = cu_sdpa_slot_row(slot_point, n, slot);
                for (int w = 0; w < 3; w++) {
                        float x = p >= 0 ? qkv[cu_sdpa_qkv_at(p, ldq, c, w, h, d)] : 0.0f;
                        dense[w][e] = fp16 ? round_half(x) : x;
                }
        }
        std::vector<double> s(window);
        for (int64_t b = 0; b < n_pad / window; b++) /* SDPA, batch = window */
                for (int h = 0; h < heads; h++) {
                        int64_t base = cu_sdpa_dense_at(b * window, window, heads, h, 0);
                        for (int64_t i = 0; i < window; i++) {
                                double mx = -INFINITY, sum = 0, o[HD] = { 0 };
                                for (int64_t j = 0; j < window; j++) {
                                        double dot = 0;
                                        for (int d = 0; d < HD; d++)
                                                dot += (double) dq[base + i * HD + d] *
                                                       dk[base + j * HD + d];
                                        s[j] = 0.25 * dot;
                                        mx = fmax(mx, s[j]);
                                }
                                for (int64_t j = 0; j < window; j++) {
                                        double p = exp(s[j] - mx);
                                        sum += p;
                                        for (int d = 0; d < HD; d++)
                                                o[d] += p * dv[base + j * HD + d];
                                }
                                for (int d = 0; d < HD; d++) {
                                        double x = o[d] / sum;
                                        dO[base + i * HD + d] = fp16 ? round_half((float) x)
                                                                     : (float) x;
                                }
                        }
                }
        for (int64_t e = 0; e < total; e++) { /* sdpa_scatter */
                int64_t slot;
                int h, d;
                cu_sdpa_split(e, window, heads, &slot, &h, &d);
                if (slot >= n)
                        continue;
                int64_t p = cu_sdpa_slot_row(slot_point, n, slot);
                if (p >= 0)
                        out[p * ldo + (int64_t) h * HD + d] = dO[e];
        }
}

static void attention_case(int64_t n, int patch, int heads, int extra, bool fp16) {
        int64_t c = (int64_t) heads * HD, window, n_pad;
        p3_attention_windows(n, patch, &window, &n_pad);
        std::vector<int32_t> pad(n_pad), order(n), slot_point(n_pad);
        p3_attention_pad(n, window, n_pad, pad.data());
        for (int64_t i = 0; i < n; i++)
                order[i] = (int32_t) i;
        for (int64_t i = n - 1; i > 0; i--) { /* the serialization order: rank → point */
                int64_t j = (int64_t) (rnd_u64() % (uint64_t) (i + 1));
                int32_t t = order[i];
                order[i] = order[j];
                order[j] = t;
        }
        for (int64_t s = 0; s < n_pad; s++)
                slot_point[s] = order[pad[s]];

        int64_t ldq = 3 * c + extra, ldo = c + extra;
        std::vector<float> qkv(n * ldq), cpu(n * ldo, NAN), emu(n * ldo, NAN);
        for (int64_t i = 0; i < n; i++)
                for (int64_t k = 0; k < ldq; k++) /* q, k ×3: a softmax that is not flat */
                        qkv[i * ldq + k] = k < 3 * c ? rnd_f(-1, 1) * (k < 2 * c ? 3 : 1) : NAN;

        p3_tensor t_qkv_all, t_out_all;
        int32_t *sp_d = NULL;
        CHECK(p3_tensor_alloc(be, n, ldq, &t_qkv_all) == 0);
        CHECK(p3_tensor_alloc(be, n, ldo, &t_out_all) == 0);
        p3_tensor t_qkv = p3_tensor_cols(&t_qkv_all, 0, 3 * c);
        p3_tensor t_out = p3_tensor_cols(&t_out_all, 0, c);
        CHECK(be->ops->upload(be, t_qkv_all.data, qkv.data(), sizeof(float) * n * ldq) == 0);
        CHECK(be->ops->upload(be, t_out_all.data, cpu.data(), sizeof(float) * n * ldo) == 0);
        CHECK(p3_ibuf_upload(be, slot_point.data(), n_pad, &sp_d) == 0);
        CHECK(be->ops->attention(be, &t_qkv, sp_d, n_pad, window, heads, &t_out) == 0);
        CHECK(be->ops->sync(be) == 0);
        CHECK(be->ops->download(be, cpu.data(), t_out_all.data, sizeof(float) * n * ldo) == 0);

        emulate(qkv.data(), ldq, slot_point.data(), n, n_pad, window, heads, fp16, emu.data(),
                ldo);

        double maxref = 0, maxdiff = 0;
        bool nan = false;
        int64_t gap_written = 0;
        for (int64_t i = 0; i < n; i++) {
                for (int64_t k = 0; k < c; k++) {
                        float g = emu[i * ldo + k], r = cpu[i * ldo + k];
                        nan |= isnan(g) || isnan(r); /* NaN: a row never written */
                        maxref = fmax(maxref, fabs(r));
                        maxdiff = fmax(maxdiff, fabs((double) g - r));
                }
                for (int64_t k = c; k < ldo; k++)
                        gap_written += !isnan(emu[i * ldo + k]);
        }
        char what[128];
        snprintf(what, sizeof(what), "attention n=%lld win=%lld pad=%lld heads=%d%s %s vs cpu",
                 (long long) n, (long long) window, (long long) (n_pad - n), heads,
                 extra ? " strided" : "", fp16 ? "fp16" : "fp32");
        report(what, maxref > 0 ? maxdiff / maxref : maxdiff, fp16 ? 1e-2 : 1e-5, nan);
        if (gap_written) {
                printf("attention: %lld values written past a row's C columns FAIL\n",
                       (long long) gap_written);
                failures++;
        }
        p3_ibuf_free(be, sp_d, n_pad);
        p3_tensor_free(be, &t_qkv_all);
        p3_tensor_free(be, &t_out_all);
}

/* ---- cuDNN itself --------------------------------------------------------------------------- */

static bool test_library(void) {
        size_t version = 0;
        char why[200] = "";
        int r = cuda_cudnn_load(&version, why, sizeof(why));
        if (r) {
                printf("cudnn library: %s SKIP\n", why);
                return false;
        }
        printf("cudnn library: version %zu ok\n", version);
        return true;
}

static void test_support(int sm, int window) {
        char why[200] = "";
        int r = cuda_attention_cudnn_supported(sm, window, why, sizeof(why));
        const char *verdict = r == 0             ? "supported"
                              : r == -ENOTSUP    ? "not supported"
                              : r == -ENODEV     ? "needs a device"
                                                 : "unexpected error";
        bool ok = r == 0 || r == -ENOTSUP || r == -ENODEV;
        printf("cudnn sdpa sm_%d window %d head dim %d: %s%s%s %s\n", sm, window, HD, verdict,
               why[0] ? ": " : "", why, ok ? "ok" : "FAIL");
        if (!ok)
                failures++;
}

/* "gate loaded|refused": only the library's version gate, against the stand-in library
 * (tests/cuda/fake-cudnn) at the version the test's environment gives it. */
static int test_gate(const char *expect) {
        size_t version = 0;
        char why[200] = "";
        int r = cuda_cudnn_load(&version, why, sizeof(why));
        bool want_loaded = strcmp(expect, "loaded") == 0;
        bool ok = want_loaded ? r == 0 : r == -ENODEV && strstr(why, "needs 9.13.1 or later");
        printf("cudnn gate: expected %s, got %s%s%s %s\n", expect, r ? "refused" : "loaded",
               why[0] ? ": " : "", why, ok ? "ok" : "FAIL");
        return ok ? 0 : 1;
}

int main(int argc, char **argv) {
        if (argc == 3 && strcmp(argv[1], "gate") == 0)
                return test_gate(argv[2]);
        index_case(1, 1, 1);
        index_case(7, 3, 5);
        index_case(64, 2, 3);
        index_case(1024, 4, 2);

        p3_backend_options opt;
        memset(&opt, 0, sizeof(opt));
        opt.threads = 2;
        opt.precision = P3_PRECISION_FP32;
        CHECK(p3_backend_cpu_new(&opt, &be) == 0);
        attention_case(1, 1024, 1, 0, false);
        attention_case(300, 128, 2, 0, false);
        attention_case(1000, 256, 3, 5, false);
        attention_case(2500, 1024, 1, 0, false); /* spec §3.6's padding example */
        attention_case(1000, 256, 3, 5, true);
        attention_case(2500, 1024, 2, 0, true);
        p3_backend_free(be);

        bool have = test_library();
        if (have) {
                const int sms[] = { 75, 80, 86, 89, 90 };
                for (int sm : sms)
                        test_support(sm, 1024);
                test_support(80, 250);
        }
        if (failures) {
                printf("%d check(s) failed\n", failures);
                return 1;
        }
        return have ? 0 : 77;
}
