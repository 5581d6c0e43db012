/* SPDX-License-Identifier: MIT */
/* What the heads' schedule asks of the host at full size, without a GPU: cu_heads_run (the
 * schedule cuda_heads.cu runs) through an executor that only counts, for 100,000 points and
 * 400 prompts with the memory cuda_heads gives it. A tile costs the host about 35 launches
 * whatever its size, so these counts bound how fast the heads can go, whatever the GPU.
 * Prints figures; checks only that the schedule ran and that larger tiles never need more
 * launches. Usage: bench-cuda-heads-launches [POINTS PROMPTS] */
#include <stdio.h>
#include <stdlib.h>

#include "cuda_heads_tile.cuh"

typedef struct counts {
        long gemms, kernels, allocs;
        double flop;
        size_t scratch;
} counts;

static int c_alloc(void *ctx, size_t bytes, void **ret) {
        counts *c = (counts *) ctx;
        c->allocs++;
        c->scratch = bytes;
        *ret = (void *) (uintptr_t) 0x100000000ull; /* never dereferenced */
        return 0;
}

static void c_free(void *, void *, size_t) {}

static int c_copy(void *, void *, const void *, size_t) {
        return 0;
}

static int c_sync(void *) {
        return 0;
}

static int c_gemm(void *ctx, int64_t m, int64_t k, const float *, int64_t, const p3_tensor *w,
                  int64_t, float *, int64_t, bool) {
        counts *c = (counts *) ctx;
        c->gemms++;
        c->flop += 2.0 * (double) m * (double) k * (double) w->rows;
        return 0;
}

static int c_run(void *ctx, const cu_hk *, int64_t) {
        ((counts *) ctx)->kernels++;
        return 0;
}

/* The real shapes (backend.h), half-precision matrices; data pointers are never read. */
static void mlp(p3_mlp3 *m, int64_t in, int64_t hid, int64_t out) {
        int64_t d[4] = { in, hid, hid, out };
        for (int l = 0; l < 3; l++) {
                bool vec = d[l + 1] == 1;
                m->w[l] = (p3_tensor) { .data = (void *) 16, .dtype = vec ? P3_F32 : P3_F16,
                                        .rows = d[l + 1], .cols = d[l] };
                m->b[l] = (p3_tensor) { .data = (void *) 16, .dtype = P3_F32, .rows = 1,
                                        .cols = d[l + 1] };
        }
}

static int run(int64_t n, int k, size_t free_bytes, bool grow, counts *c, int64_t *tile,
               int64_t *kc) {
        p3_heads_params hp;
        for (int h = 0; h < 3; h++) {
                mlp(&hp.seg[h], CU_FP + 3, CU_FEAT, 1);
                mlp(&hp.s2[h], CU_G + CU_FP + 6, CU_G, 1);
        }
        mlp(&hp.s2g, CU_FP + 6, CU_G, CU_G);
        mlp(&hp.iou, CU_G + CU_FP + 6, CU_G, CU_G);
        mlp(&hp.iou_out, CU_G, CU_G, 3);
        p3_tensor feat = { .data = (void *) 16, .dtype = P3_F32, .rows = n / 4, .cols = CU_FEAT };
        p3_tensor pts = { .data = (void *) 16, .dtype = P3_F32, .rows = n, .cols = 3 };
        float *q = (float *) calloc(3 * (size_t) k, sizeof(float));
        if (!q)
                return -ENOMEM;
        p3_heads_input in = { &feat, (const int32_t *) 16, &pts, n, q, k };
        static float f;
        static uint8_t b;
        p3_heads_output out = {}; /* what a job asks for: IoU, mask bits */
        out.iou = &f, out.mask_bits = &b;
        cu_heads_cfg cfg = cu_heads_cfg_for(free_bytes); /* as cuda_heads sizes it */
        if (!grow) { /* as it did before: half for the per-pair buffers, 8192-pair tiles */
                cfg = cu_heads_default_cfg;
                cfg.pair_budget = free_bytes / 2;
        }
        cu_heads_job jb = {};
        jb.in = &in, jb.out = &out;
        cu_heads_plan(&jb, &cfg);
        *tile = jb.tile, *kc = jb.kc;
        cu_heads_exec ex = { c, c_alloc, c_free, c_copy, c_copy, c_sync, c_gemm, c_run };
        int r = cu_heads_run(&ex, &hp, &in, &out, &cfg);
        free(q);
        return r;
}

int main(int argc, char **argv) {
        int64_t n = argc > 2 ? atoll(argv[1]) : 100000;
        int k = argc > 2 ? atoi(argv[2]) : 400;
        int failures = 0;
        printf("heads schedule, %lld points x %d prompts: host calls per heads call\n",
               (long long) n, k);
        for (size_t mb = 200; mb <= 1600; mb *= 2) {
                long before = 0;
                for (int grow = 0; grow < 2; grow++) {
                        counts c = {};
                        int64_t tile = 0, kc = 0;
                        int r = run(n, k, mb << 20, grow, &c, &tile, &kc);
                        long calls = 2 * c.gemms + c.kernels; /* each GEMM rounds its input */
                        printf("  %4zu MiB free, %s: tiles of %4lld points x %3lld prompts: "
                               "%6ld GEMMs, %6ld kernels, %7ld launches; scratch %.0f MiB; "
                               "%.1f TFLOP\n",
                               mb, grow ? "tiles from memory" : "8192-pair tiles  ",
                               (long long) tile, (long long) kc, c.gemms, c.kernels + c.gemms,
                               calls, c.scratch / 1048576.0, c.flop / 1e12);
                        if (r < 0 || (grow && calls > before)) {
                                printf("  FAIL: %s\n", r < 0 ? "the schedule failed"
                                                             : "more launches than before");
                                failures++;
                        }
                        before = calls;
                }
        }
        return failures ? 1 : 0;
}
