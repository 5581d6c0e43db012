/* SPDX-License-Identifier: MIT */
/* The CUDA heads' schedule and arithmetic (kernels/cuda/cuda_heads_tile.cuh), run on the host:
 * cu_heads_run with an executor whose kernels are host loops over the same item functions the
 * device kernels call (a warp's butterfly sum emulated lane by lane, atomic maxima as plain
 * maxima of the same keys) and whose GEMM is a plain double-accumulated loop, against the CPU
 * backend's heads at FP32 on small random models (test-cpu-ops.c's construction):
 *
 *   heads, one tile and one chunk      s1/s2 logits, global, iou_feat, iou (FP32 tolerance),
 *   heads, many tiles and chunks       mask bits equal (but where the CPU's logit is ~0),
 *                                      scratch freed, outputs left NULL skipped
 *   mask-bit packing                   n not a multiple of 8, several tiles, padding bits 0
 *   mask rule                          cu_mask_bit == the CPU's sigmoidf(v) > 0.5f on every
 *                                      float in [2^-26, 2^-22), specials and random values
 *   max keys                           order over special values, round trip, max of keys
 *
 * The weights, inputs and scratch are "device" memory that the schedule's host code cannot
 * read (each a PROT_NONE mapping but while a stand-in kernel runs), as on a GPU.
 *
 * One line per check with its largest error; exit 0 only when every check passes. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_heads_tile.cuh"
#include "guard-memory.h"
#include "test-util.h"

static p3_backend *be;
static int failures;

/* ---- tiny PRNG (splitmix64), as test-cpu-ops.c -------------------------------------------- */

static uint64_t rng_state = 0x5eed0f3a2c1d4b97ull;

static uint64_t rnd_u64(void) {
        return test_rnd_u64(&rng_state);
}

static float rnd_f(double lo, double hi) {
        return (float) (lo + (hi - lo) * test_rnd_unit(&rng_state));
}

static float *rnd_array(int64_t n, double lo, double hi) {
        float *a = (float *) malloc(sizeof(float) * (size_t) (n ? n : 1));
        CHECK(a);
        for (int64_t i = 0; i < n; i++)
                a[i] = rnd_f(lo, hi);
        return a;
}

/* max|got - ref| <= rel·max|ref| (NaN fails). */
static bool report(const char *what, const float *got, const float *ref, int64_t n, double rel) {
        double maxref = 0, maxdiff = 0;
        for (int64_t i = 0; i < n; i++) {
                double d = fabs((double) got[i] - ref[i]);
                maxref = fmax(maxref, fabs(ref[i]));
                maxdiff = isnan(d) ? INFINITY : fmax(maxdiff, d);
        }
        bool ok = maxdiff <= rel * maxref;
        printf("%-44s n=%-6lld max|ref|=%-9.4g max|diff|=%-9.3g (rel %-9.3g) %s\n", what,
               (long long) n, maxref, maxdiff, maxref > 0 ? maxdiff / maxref : maxdiff,
               ok ? "ok" : "FAIL");
        failures += !ok;
        return ok;
}

static void expect(bool ok, const char *what) {
        printf("%-44s %s\n", what, ok ? "ok" : "FAIL");
        failures += !ok;
}

/* ---- device memory that the host schedule cannot touch ------------------------------------ */

/* On a GPU the schedule runs on the host and must never dereference device memory (weights,
 * inputs, scratch): that reads a cudaMallocAsync pointer and crashes. Here every such buffer is
 * guarded (tests/guard-memory.h): readable only while an executor function (the stand-in for a
 * kernel, a GEMM or a copy) or the CPU reference runs, so that a host read in the schedule
 * faults here as it would there. */

/* ---- the host executor -------------------------------------------------------------------- */

typedef struct host_exec {
        size_t live_bytes, peak_bytes;
} host_exec;

static int h_alloc(void *ctx, size_t bytes, void **ret) {
        host_exec *hx = (host_exec *) ctx;
        *ret = guard_alloc(bytes);
        if (!*ret)
                return -ENOMEM;
        guard_enter();
        memset(*ret, 0xff, bytes); /* NaN everywhere: a buffer read before written shows */
        guard_leave();
        hx->live_bytes += bytes;
        hx->peak_bytes = hx->live_bytes > hx->peak_bytes ? hx->live_bytes : hx->peak_bytes;
        return 0;
}

static void h_free(void *ctx, void *p, size_t bytes) {
        ((host_exec *) ctx)->live_bytes -= bytes;
        guard_free(p);
}

static int h_copy(void *ctx, void *dst, const void *src, size_t bytes) {
        (void) ctx;
        guard_enter();
        memcpy(dst, src, bytes);
        guard_leave();
        return 0;
}

static int h_sync(void *ctx) {
        (void) ctx;
        return 0;
}

/* cuda_gemm_w's contract, summed in double in 8 interleaved partial sums (cuBLAS's own order
 * is not ours to copy; this keeps the test quick). */
static int h_gemm(void *ctx, int64_t m, int64_t k, const float *a, int64_t lda,
                  const p3_tensor *w, int64_t col, float *c, int64_t ldc, bool acc) {
        (void) ctx;
        guard_enter();
        int64_t ldw = p3_ld(w);
        float *wr = (float *) malloc(sizeof(float) * (size_t) k);
        CHECK(wr);
        for (int64_t o = 0; o < w->rows; o++) {
                for (int64_t e = 0; e < k; e++)
                        wr[e] = cu_weight_f32(w->data, w->dtype, o * ldw + col + e);
                for (int64_t i = 0; i < m; i++) {
                        const float *ar = a + i * lda;
                        double s[8] = { 0 };
                        int64_t e = 0;
                        for (; e + 8 <= k; e += 8)
                                for (int l = 0; l < 8; l++)
                                        s[l] += (double) ar[e + l] * wr[e + l];
                        for (; e < k; e++)
                                s[0] += (double) ar[e] * wr[e];
                        double sum = acc ? c[i * ldc + o] : 0;
                        for (int l = 0; l < 8; l++)
                                sum += s[l];
                        c[i * ldc + o] = (float) sum;
                }
        }
        free(wr);
        guard_leave();
        return 0;
}

static int h_run(void *ctx, const cu_hk *a, int64_t items) {
        (void) ctx;
        guard_enter();
        if (a->kind == CU_HK_DOT) {
                for (int64_t r = 0; r < items; r++) {
                        float p[32];
                        for (int l = 0; l < 32; l++)
                                p[l] = cu_hk_dot_part(a, r, l, 32);
                        cu_hk_dot_store(a, r, cu_lane_tree_sum(p) + a->wb[0]);
                }
        } else if (a->kind == CU_HK_BIAS_MAX) {
                for (int64_t i = 0; i < items; i++) {
                        int64_t slot;
                        int32_t key = cu_hk_bias_max(a, i, &slot);
                        a->keys[slot] = key > a->keys[slot] ? key : a->keys[slot];
                }
        } else {
                for (int64_t i = 0; i < items; i++)
                        cu_hk_item(a, i);
        }
        guard_leave();
        return 0;
}

/* ---- random heads (test-cpu-ops.c's mlp_make) --------------------------------------------- */

typedef struct host_mlp {
        float *w[3], *b[3];
} host_mlp;

typedef struct model {
        host_mlp seg[3], s2g, s2[3], iou, iou_out;
        p3_heads_params hp;
} model;

/* Random values in guarded memory (the CPU backend at FP32 references weights in place). */
static float *guarded_rnd(int64_t n, double lo, double hi) {
        float *h = rnd_array(n, lo, hi);
        float *g = (float *) guard_copy(h, sizeof(float) * (size_t) (n ? n : 1));
        free(h);
        return g;
}

/* uniform(-1, 1)/sqrt(fan_in), the last layer × last_scale: logits of a few units, so that the
 * rank-3 columns matter and the masks are not all one sign. */
static void mlp_make(host_mlp *m, p3_mlp3 *d, int in, int hid, int out, double last_scale) {
        int dims[4] = { in, hid, hid, out };
        for (int l = 0; l < 3; l++) {
                double s = (l == 2 ? last_scale : 1.0) / sqrt((double) dims[l]);
                m->w[l] = guarded_rnd((int64_t) dims[l + 1] * dims[l], -s, s);
                m->b[l] = guarded_rnd(dims[l + 1], -s, s);
                CHECK_OK(be->ops->weight_upload(be, m->w[l], dims[l + 1], dims[l], &d->w[l]));
                CHECK_OK(be->ops->weight_upload(be, m->b[l], 1, dims[l + 1], &d->b[l]));
        }
}

static void mlp_free(host_mlp *m, p3_mlp3 *d) {
        for (int l = 0; l < 3; l++) {
                be->ops->weight_free(be, &d->w[l]);
                be->ops->weight_free(be, &d->b[l]);
                guard_free(m->w[l]);
                guard_free(m->b[l]);
        }
}

static void model_make(model *md) {
        for (int h = 0; h < 3; h++)
                mlp_make(&md->seg[h], &md->hp.seg[h], 518, 512, 1, 8);
        mlp_make(&md->s2g, &md->hp.s2g, 521, 256, 256, 1);
        for (int h = 0; h < 3; h++)
                mlp_make(&md->s2[h], &md->hp.s2[h], 777, 256, 1, 8);
        mlp_make(&md->iou, &md->hp.iou, 777, 256, 256, 1);
        mlp_make(&md->iou_out, &md->hp.iou_out, 256, 256, 3, 40);
}

static void model_free(model *md) {
        for (int h = 0; h < 3; h++) {
                mlp_free(&md->seg[h], &md->hp.seg[h]);
                mlp_free(&md->s2[h], &md->hp.s2[h]);
        }
        mlp_free(&md->s2g, &md->hp.s2g);
        mlp_free(&md->iou, &md->hp.iou);
        mlp_free(&md->iou_out, &md->hp.iou_out);
}

/* ---- heads against the CPU backend -------------------------------------------------------- */

typedef struct outs {
        float *iou, *glob, *ifeat, *s1, *s2;
        uint8_t *bits;
        p3_heads_output o;
} outs;

static void outs_make(outs *u, int64_t n, int k) {
        int64_t pairs = n * k, nb = (n + 7) / 8;
        u->iou = (float *) malloc(sizeof(float) * 3 * k);
        u->glob = (float *) malloc(sizeof(float) * 256 * k);
        u->ifeat = (float *) malloc(sizeof(float) * 256 * k);
        u->s1 = (float *) malloc(sizeof(float) * 3 * pairs);
        u->s2 = (float *) malloc(sizeof(float) * 3 * pairs);
        u->bits = (uint8_t *) malloc((size_t) (3 * k * nb));
        CHECK(u->iou && u->glob && u->ifeat && u->s1 && u->s2 && u->bits);
        memset(u->bits, 0xa5, (size_t) (3 * k * nb)); /* the op must write every byte */
        u->o = { u->iou, u->glob, u->ifeat, u->s1, u->s2, u->bits };
}

static void outs_free(outs *u) {
        free(u->iou), free(u->glob), free(u->ifeat), free(u->s1), free(u->s2), free(u->bits);
}

/* An input in guarded memory, as the device holds it. */
static p3_tensor dev_from(const float *host, int64_t rows, int64_t cols) {
        p3_tensor t = { .dtype = P3_F32, .rows = rows, .cols = cols };
        t.data = guard_copy(host, sizeof(float) * (size_t) (rows * cols));
        return t;
}

static bool mask_bit(const uint8_t *bits, int64_t row, int64_t nb, int64_t p) {
        return (bits[row * nb + (p >> 3)] >> (p & 7)) & 1;
}

/* Bits against the CPU's: equal wherever the CPU's logit is clear of 0 by the logits'
 * tolerance; exactly cu_mask_bit of the schedule's own logits; padding 0. */
static void compare_bits(const char *tag, const outs *g, const outs *c, int64_t n, int k,
                         double tol) {
        int64_t nb = (n + 7) / 8, bad_ref = 0, bad_self = 0, bad_pad = 0, near = 0, set = 0;
        double smax = 0;
        for (int64_t i = 0; i < 3 * n * k; i++)
                smax = fmax(smax, fabs(c->s2[i]));
        for (int64_t row = 0; row < 3 * k; row++) {
                for (int64_t p = 0; p < n; p++) {
                        bool bit = mask_bit(g->bits, row, nb, p);
                        float ref = c->s2[row * n + p];
                        set += bit;
                        bad_self += bit != cu_mask_bit(g->s2[row * n + p]);
                        if (fabs(ref) <= tol * smax)
                                near++;
                        else
                                bad_ref += bit != mask_bit(c->bits, row, nb, p);
                }
                for (int64_t p = n; p < nb * 8; p++)
                        bad_pad += mask_bit(g->bits, row, nb, p);
        }
        char what[120];
        snprintf(what, sizeof(what), "%s mask bits (%lld/%lld set, %lld near 0, %lld differ)",
                 tag, (long long) set, (long long) (3 * n * k), (long long) near,
                 (long long) (bad_ref + bad_self + bad_pad));
        expect(bad_ref == 0 && bad_self == 0 && bad_pad == 0, what);
}

static void heads_case(const model *md, int64_t n, int64_t m, int k, const cu_heads_cfg *cfg) {
        float *feat = rnd_array(m * 520, -2, 2), *pts = rnd_array(n * 5, -1, 1);
        int32_t *inverse = (int32_t *) malloc(sizeof(int32_t) * n);
        float *q = (float *) malloc(sizeof(float) * 3 * k);
        CHECK(inverse && q);
        for (int64_t i = 0; i < n; i++) /* every voxel used, then random */
                inverse[i] = (int32_t) (i < m ? m - 1 - i : (int64_t) (rnd_u64() % m));
        for (int j = 0; j < k; j++) /* prompts are points of the cloud, as upstream */
                memcpy(q + 3 * j, pts + 5 * (rnd_u64() % n) + 1, sizeof(float) * 3);
        /* feat and points as column views of wider tensors (ld 520 and 5) */
        p3_tensor t_featw = dev_from(feat, m, 520), t_ptsw = dev_from(pts, n, 5);
        p3_tensor t_feat = p3_tensor_cols(&t_featw, 4, 512), t_pts = p3_tensor_cols(&t_ptsw, 1, 3);
        int32_t *inv_d = (int32_t *) guard_copy(inverse, sizeof(int32_t) * (size_t) n);
        p3_heads_input in = { &t_feat, inv_d, &t_pts, n, q, k };

        outs c, g;
        outs_make(&c, n, k), outs_make(&g, n, k);
        guard_enter(); /* the CPU reference reads the same buffers */
        CHECK_OK(be->ops->heads(be, &md->hp, &in, &c.o));
        guard_leave();
        host_exec hx = { 0, 0 };
        cu_heads_exec ex = { &hx, h_alloc, h_free, h_copy, h_copy, h_sync, h_gemm, h_run };
        CHECK_OK(cu_heads_run(&ex, &md->hp, &in, &g.o, cfg));

        cu_heads_job jb = {};
        jb.in = &in, jb.out = &g.o;
        cu_heads_plan(&jb, cfg);
        char tag[64], what[120];
        snprintf(tag, sizeof(tag), "n=%lld k=%d (%lld×%lld)", (long long) n, k,
                 (long long) jb.tile, (long long) jb.kc);
        const double tol = 1e-5; /* of max|ref| */
        int64_t pairs = n * k;
#define REP(name, field, cnt)                                                                  \
        do {                                                                                   \
                snprintf(what, sizeof(what), "%s %s", tag, name);                              \
                report(what, g.field, c.field, cnt, tol);                                      \
        } while (0)
        REP("s1 logits", s1, 3 * pairs);
        REP("s2 logits", s2, 3 * pairs);
        REP("global", glob, 256 * k);
        REP("iou_feat", ifeat, 256 * k);
        REP("iou", iou, 3 * k);
#undef REP
        compare_bits(tag, &g, &c, n, k, 10 * tol);

        /* scratch freed, bounded by the tile (no k × n × channels buffer); NULL outputs are
         * skipped and the rest is bitwise the full call's */
        size_t pair_bytes = (size_t) pairs * (12 + 12 + 12 + 1) + 256 * 64;
        size_t tile_bytes = (size_t) jb.tile * jb.kc * 4 * (2 * 512 + 3) +
                            (size_t) jb.tile * 4 * (520 + 512) + (size_t) jb.kc * 4 * 4096 +
                            (size_t) 4 * 16384 + 3 * 4 * (size_t) k;
        bool bounded = hx.peak_bytes <= pair_bytes + tile_bytes;
        outs p;
        outs_make(&p, n, k);
        p3_heads_output o1 = {}, o2 = {}, o3 = {};
        o1.iou = p.iou;
        o2.global = p.glob, o2.mask_bits = p.bits, o2.s2_logit = p.s2;
        int r1 = cu_heads_run(&ex, &md->hp, &in, &o1, cfg);
        int r2 = cu_heads_run(&ex, &md->hp, &in, &o2, cfg);
        int r3 = cu_heads_run(&ex, &md->hp, &in, &o3, cfg);
        int64_t nb = (n + 7) / 8;
        bool same = memcmp(p.iou, g.iou, sizeof(float) * 3 * k) == 0 &&
                    memcmp(p.glob, g.glob, sizeof(float) * 256 * k) == 0 &&
                    memcmp(p.bits, g.bits, (size_t) (3 * k * nb)) == 0 &&
                    memcmp(p.s2, g.s2, sizeof(float) * 3 * pairs) == 0;
        snprintf(what, sizeof(what), "%s scratch %.2f MB freed, NULL outputs skipped", tag,
                 hx.peak_bytes / 1e6);
        expect(same && bounded && r1 == 0 && r2 == 0 && r3 == 0 && hx.live_bytes == 0, what);

        /* a NaN in the last point's features (the last tile's): its logits are NaN, and the
         * CPU and the schedule both fail with -ERANGE, with the bits or the logits asked for */
        guard_enter();
        ((float *) t_featw.data)[(int64_t) inverse[n - 1] * 520 + 4 + 7] = NAN;
        int rc = be->ops->heads(be, &md->hp, &in, &c.o);
        guard_leave();
        p3_heads_output ob = {}, os = {};
        ob.mask_bits = p.bits, ob.iou = p.iou;
        os.s2_logit = p.s2;
        int rb = cu_heads_run(&ex, &md->hp, &in, &ob, cfg);
        int rl = cu_heads_run(&ex, &md->hp, &in, &os, cfg);
        snprintf(what, sizeof(what), "%s a NaN in the features: -ERANGE (CPU %d, bits %d, "
                 "logits %d)", tag, rc, rb, rl);
        expect(rc == -ERANGE && rb == -ERANGE && rl == -ERANGE && hx.live_bytes == 0, what);

        outs_free(&p), outs_free(&c), outs_free(&g);
        free(feat), free(pts), free(inverse), free(q);
        guard_free(inv_d);
        guard_free(t_featw.data), guard_free(t_ptsw.data);
}

/* ---- tile size from the memory the tiles may take -------------------------------------------- */

static void test_tile_rows(void) {
        cu_heads_cfg cfg = cu_heads_default_cfg;
        bool ok = cu_heads_tile_rows(&cfg, 400) == 8192; /* no budget: the target */
        cfg.tile_budget = 1 << 20;                       /* too little: the target still */
        ok = ok && cu_heads_tile_rows(&cfg, 400) == 8192;
        cfg.tile_budget = (size_t) 64 << 30; /* plenty: the most */
        ok = ok && cu_heads_tile_rows(&cfg, 400) == 65536;
        /* in between: the tile's pairs and points fit the budget, one more pair would not */
        cfg.tile_budget = 60 << 20; /* one prompt a chunk: a point's share makes it too little */
        ok = ok && cu_heads_tile_rows(&cfg, 1) == 8192;
        for (int64_t kc = 8; kc <= 512; kc *= 8)
                for (size_t mb = 60; mb <= 300; mb += 80) {
                        cfg.tile_budget = mb << 20;
                        int64_t rows = cu_heads_tile_rows(&cfg, kc);
                        int64_t per = CU_TILE_PAIR_BYTES + (CU_TILE_POINT_BYTES + kc - 1) / kc;
                        bool fits = rows * per <= (int64_t) cfg.tile_budget;
                        bool most = rows == 65536 || (rows + 1) * per > (int64_t) cfg.tile_budget;
                        if (!fits || !most || rows <= 8192) {
                                printf("  kc=%lld budget=%zu MiB: %lld rows\n", (long long) kc, mb,
                                       (long long) rows);
                                ok = false;
                        }
                }
        expect(ok, "tiles grow with their budget, within [8192, 65536] pairs");
}

/* ---- mask bits, mask rule, max keys ------------------------------------------------------- */

static bool cpu_rule(float v) {
        return 1.0f / (1.0f + expf(-v)) > 0.5f;
}

/* The BITS kernel over a whole [kc][n] block of logits in tiles of `tile` points. */
static void test_packing(int64_t n, int64_t kc, int64_t tile) {
        int64_t nb = (n + 7) / 8, bad = 0;
        float *s = (float *) malloc(sizeof(float) * 3 * kc * n); /* [p][j][h] like the tiles */
        uint8_t *bits = (uint8_t *) malloc((size_t) (3 * kc * nb));
        CHECK(s && bits);
        for (int64_t i = 0; i < 3 * kc * n; i++) {
                int c = (int) (rnd_u64() % 4); /* some exact zeros, ±tiny, and plain values */
                s[i] = c == 0 ? 0.0f : c == 1 ? rnd_f(-2e-7, 2e-7) : rnd_f(-3, 3);
        }
        memset(bits, 0xa5, (size_t) (3 * kc * nb));
        for (int64_t p0 = 0; p0 < n; p0 += tile) {
                cu_hk a = {};
                a.kind = CU_HK_BITS;
                a.np = n - p0 < tile ? n - p0 : tile, a.kc = kc, a.n = n, a.p0 = p0, a.nb = nb;
                a.x = s + p0 * kc * 3, a.bits = bits;
                h_run(NULL, &a, cu_hk_items(&a));
        }
        for (int64_t h = 0; h < 3; h++)
                for (int64_t j = 0; j < kc; j++) {
                        int64_t row = h * kc + j;
                        for (int64_t p = 0; p < nb * 8; p++) {
                                bool want = p < n && cpu_rule(s[(p * kc + j) * 3 + h]);
                                bad += mask_bit(bits, row, nb, p) != want;
                        }
                }
        char what[120];
        snprintf(what, sizeof(what), "mask packing n=%lld kc=%lld tile %lld (%lld wrong)",
                 (long long) n, (long long) kc, (long long) tile, (long long) bad);
        expect(bad == 0, what);
        free(s), free(bits);
}

static float from_bits(uint32_t u) {
        float f;
        memcpy(&f, &u, sizeof(f));
        return f;
}

static void test_mask_rule(void) {
        int64_t bad = 0, count = 0;
        /* every float in [2^-26, 2^-22) and its negative: the threshold lies inside */
        for (uint32_t u = 0x32800000u; u < 0x34800000u; u++, count += 2) {
                float v = from_bits(u);
                bad += cu_mask_bit(v) != cpu_rule(v);
                bad += cu_mask_bit(-v) != cpu_rule(-v);
        }
        float sp[] = { 0.0f, -0.0f, FLT_MIN, -FLT_MIN, from_bits(1), from_bits(0x80000001u),
                       INFINITY, -INFINITY, NAN, -NAN, FLT_MAX, -FLT_MAX, 1e-30f, 88.0f,
                       -88.0f, 104.0f, -104.0f };
        for (size_t i = 0; i < sizeof(sp) / sizeof(sp[0]); i++, count++)
                bad += cu_mask_bit(sp[i]) != cpu_rule(sp[i]);
        for (int i = 0; i < 1000000; i++, count++) {
                float v = from_bits((uint32_t) rnd_u64());
                bad += cu_mask_bit(v) != cpu_rule(v);
        }
        char what[120];
        snprintf(what, sizeof(what), "mask rule == sigmoidf > 0.5 (%lld values, %lld wrong)",
                 (long long) count, (long long) bad);
        expect(bad == 0, what);

        double worst = 0;
        for (int i = 0; i < 100000; i++) {
                float x = rnd_f(-30, 30);
                worst = fmax(worst, fabs(cu_sigmoid(x) - 1 / (1 + exp(-(double) x))));
        }
        printf("%-44s max|diff|=%-9.3g %s\n", "sigmoid", worst, worst <= 2e-7 ? "ok" : "FAIL");
        failures += !(worst <= 2e-7);
}

static void test_max_keys(void) {
        /* increasing, -0 before +0 */
        float sp[] = { -INFINITY, -FLT_MAX, -1.0f, -FLT_MIN, from_bits(0x80000001u), -0.0f,
                       0.0f, from_bits(1), FLT_MIN, 1.0f, FLT_MAX, INFINITY };
        int n = (int) (sizeof(sp) / sizeof(sp[0]));
        bool ok = cu_max_key(NAN) > cu_max_key(INFINITY);
        for (int i = 0; i < n; i++) {
                float back = cu_key_to_float(cu_max_key(sp[i]));
                ok = ok && memcmp(&sp[i], &back, sizeof(back)) == 0;
                if (i > 0)
                        ok = ok && cu_max_key(sp[i - 1]) < cu_max_key(sp[i]);
        }
        int64_t bad = 0;
        for (int i = 0; i < 1000000; i++) {
                uint32_t ua = (uint32_t) rnd_u64(), ub = (uint32_t) rnd_u64();
                float a = from_bits(ua), b = i & 1 ? from_bits(ub) : a * rnd_f(0.5, 2);
                uint32_t back;
                float fb = cu_key_to_float(cu_max_key(a));
                memcpy(&back, &fb, 4);
                bad += back != ua;
                if (!isnan(a) && !isnan(b) && a != b)
                        bad += (cu_max_key(a) > cu_max_key(b)) != (a > b);
        }
        /* a running max through keys is the max */
        for (int t = 0; t < 100; t++) {
                int32_t key = cu_max_key(-INFINITY);
                float m = -INFINITY;
                for (int i = 0; i < 300; i++) {
                        float v = rnd_f(-1e3, 1e3) * (t & 1 ? 1e-30f : 1.0f);
                        key = cu_max_key(v) > key ? cu_max_key(v) : key;
                        m = fmaxf(m, v);
                }
                bad += cu_key_to_float(key) != m;
        }
        char what[120];
        snprintf(what, sizeof(what), "max keys: order, round trip (%lld wrong)", (long long) bad);
        expect(ok && bad == 0, what);
}

int main(void) {
        p3_backend_options opt = {};
        opt.precision = P3_PRECISION_FP32;
        CHECK_OK(p3_backend_cpu_new(&opt, &be));
        test_max_keys();
        test_mask_rule();
        test_tile_rows();
        test_packing(83, 3, 16);
        test_packing(7, 2, 8);
        test_packing(64, 1, 24);

        model md;
        model_make(&md);
        /* one tile, one chunk */
        heads_case(&md, 45, 20, 3, &cu_heads_default_cfg);
        /* tiles of 16 points × 3 prompts (the last tile 3 points), chunks of 3 then 2 */
        cu_heads_cfg small = { 48, 3, (size_t) 1 << 30, 48, 0 };
        heads_case(&md, 83, 30, 5, &small);
        /* the per-pair budget splits the prompts: chunks of 2 */
        cu_heads_cfg budget = { 64, 16, (size_t) 37 * 2 * 29, 64, 0 };
        heads_case(&md, 29, 12, 3, &budget);
        /* the tile budget makes the tiles larger than the target: 48 points × 3 prompts */
        cu_heads_cfg grown = { 48, 3, (size_t) 1 << 30, 4096, 0 };
        grown.tile_budget = 160 * (CU_TILE_PAIR_BYTES + CU_TILE_POINT_BYTES / 3 + 1);
        heads_case(&md, 83, 30, 5, &grown);
        model_free(&md);
        p3_backend_free(be);
        printf("%s\n", failures ? "FAILED" : "all ok");
        return failures ? 1 : 0;
}
