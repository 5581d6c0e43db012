/* SPDX-License-Identifier: MIT */
/* The plain-loop FP32 product (kernels/cpu/cpu_gemm_plain.c: the CPU reference of the
 * engine-only GPU build and of the valgrind build), built into every build on its own so that
 * a build with oneDNN tests it too: every remainder of its 6-row × 16-column blocking, both
 * layouts of B, strides, alpha, accumulation, k = 0 and the model's shapes, against a
 * double-precision sum; the scratch grown across calls; its errors. */
#include <errno.h>
#include <stdio.h>

#include "check.h" /* not test-util.h: it brings the engine, whose kernels hold oneDNN's sgemm */
#include "cpu/cpu_dnnl.h"
#include "sgemm-check.h"

static int failures, cases;

static void one(bool b_nk, int64_t m, int64_t n, int64_t k, int64_t pad, float alpha, bool acc) {
        double worst = sgemm_check(cpu_dnnl_sgemm, b_nk, m, n, k, pad, alpha, acc);
        cases++;
        if (worst < 0 || worst > 1) {
                failures++;
                fprintf(stderr, "FAIL: %s %lldx%lldx%lld pad %lld alpha %g%s: err/bound %.3g\n",
                        b_nk ? "A·Bᵀ" : "A·B", (long long) m, (long long) n, (long long) k,
                        (long long) pad, alpha, acc ? " acc" : "", worst);
        }
}

int main(void) {
        CHECK(cpu_dnnl_init() == 0);
        printf("gemm: %s\n", cpu_gemm_library());
        /* every row remainder (mod 6) and column remainder (mod 16), small k and k = 0 */
        for (int b_nk = 0; b_nk < 2; b_nk++)
                for (int64_t m = 1; m <= 13; m++)
                        for (int64_t n = 1; n <= 35; n += 2)
                                for (int64_t k = 0; k <= 9; k += 3)
                                        one(b_nk, m, n, k, (m + n) % 3, m % 2 ? 1.0f : -0.5f,
                                            n % 4 == 1);
        /* the model's products: Linear layers, the attention's scores and P·V, conv offsets */
        one(true, 256, 512, 515, 0, 1.0f, false);
        one(true, 100, 64, 864, 3, 1.0f, true);
        one(true, 1024, 1024, 16, 0, 0.25f, false);
        one(false, 1024, 16, 1024, 0, 1.0f, false);
        one(true, 256, 1536, 384, 0, 1.0f, true);
        one(false, 37, 20, 50, 5, -0.5f, true);
        one(true, 1, 96, 48, 0, 1.0f, false);
        one(false, 1, 96, 48, 7, 1.0f, true);
        /* a larger k after smaller ones: the panel scratch grows */
        one(true, 7, 33, 4000, 1, 1.0f, false);
        float c[4] = { 0 }, a[4] = { 0 }, b[4] = { 0 };
        CHECK(cpu_dnnl_sgemm(false, 2, 2, 2, 1.0f, a, 2, b, 1, c, 2, false) == -EINVAL);
        CHECK(cpu_dnnl_sgemm(true, 2, 2, 2, 1.0f, a, 1, b, 2, c, 2, false) == -EINVAL);
        CHECK(cpu_dnnl_sgemm(true, 0, 2, 2, 1.0f, a, 2, b, 2, c, 2, false) == 0);
        uint16_t h[4] = { 0 };
        CHECK(cpu_dnnl_gemm_bf16_nt(1, 1, 1, h, 1, h, 1, c, 1, false) ==
              (cpu_dnnl_isa() ? 0 : -ENOTSUP));
        printf("gemm-plain: %d products, %d outside the FP32 bound\n", cases, failures);
        return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
