/* SPDX-License-Identifier: MIT */
/* A level's integer structure (the four serialization orders gathered into attention slots,
 * and the 3×3×3 neighbour map) at the sizes of a real level 0, built on the host as the CPU
 * backend's engine does, and, with P3_BENCH_BACKEND=cuda, by the GPU's structure ops from the
 * uploaded grid (what sonata.c does on a CUDA backend): milliseconds of each, and the device
 * result compared with the host's entry for entry at full size (the self-test only sees a few
 * hundred voxels). Fails only on an error or a mismatch; asserts nothing about time.
 * The voxels are a sphere's surface, one voxel thick, like a mesh's sampled points. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "macro.h"
#include "serialize.h"
#include "structure-shim.h"
#include "test-util.h"

#define WINDOW 1024
#define REPS 3

typedef struct level {
        int32_t *grid;
        int64_t n, window, n_pad;
        int depth;
        int32_t *slots[4], *nbr; /* host results */
} level;

/* The voxels within one voxel of a sphere of radius r, centred in the positive octant. */
static void level_make(int r, level *lv) {
        int64_t cap = 64 * (int64_t) r * r + 64;
        lv->grid = malloc(sizeof(int32_t) * 3 * cap);
        CHECK(lv->grid);
        int64_t n = 0;
        for (int x = 0; x <= 2 * r; x++)
                for (int y = 0; y <= 2 * r; y++)
                        for (int z = 0; z <= 2 * r; z++) {
                                double dx = x - r, dy = y - r, dz = z - r;
                                double d = dx * dx + dy * dy + dz * dz;
                                if (d > (double) r * r || d <= (double) (r - 1) * (r - 1))
                                        continue;
                                CHECK(n < cap);
                                int32_t *p = lv->grid + 3 * n++;
                                p[0] = x, p[1] = y, p[2] = z;
                        }
        lv->n = n;
        lv->depth = p3_serial_depth(lv->grid, n);
        p3_attention_windows(n, WINDOW, &lv->window, &lv->n_pad);
}

static void level_free(level *lv) {
        free(lv->grid);
        for (int k = 0; k < 4; k++)
                free(lv->slots[k]);
        free(lv->nbr);
}

/* The host's way (sonata.c, level_structure_host), keeping the results. */
static double host_structure(level *lv) {
        int64_t n = lv->n;
        const p3_order orders[4] = { P3_ORDER_Z, P3_ORDER_Z_TRANS, P3_ORDER_HILBERT,
                                     P3_ORDER_HILBERT_TRANS };
        _cleanup_free_ int32_t *order = malloc(sizeof(int32_t) * 4 * n);
        _cleanup_free_ int32_t *inverse = malloc(sizeof(int32_t) * 4 * n);
        _cleanup_free_ int32_t *pad = malloc(sizeof(int32_t) * lv->n_pad);
        CHECK(order && inverse && pad);
        for (int k = 0; k < 4; k++) {
                free(lv->slots[k]);
                lv->slots[k] = malloc(sizeof(int32_t) * lv->n_pad);
                CHECK(lv->slots[k]);
        }
        free(lv->nbr);
        lv->nbr = malloc(sizeof(int32_t) * 27 * n);
        CHECK(lv->nbr);

        double t0 = test_now();
        CHECK_OK(p3_serialize(lv->grid, n, orders, 4, NULL, lv->depth, NULL, order, inverse));
        p3_attention_pad(n, lv->window, lv->n_pad, pad);
        for (int k = 0; k < 4; k++)
                for (int64_t s = 0; s < lv->n_pad; s++)
                        lv->slots[k][s] = order[k * n + pad[s]];
        CHECK_OK(p3_subm_neighbors(lv->grid, n, lv->nbr));
        return test_now() - t0;
}

static int64_t differ(const int32_t *a, const int32_t *b, int64_t n) {
        int64_t d = 0;
        for (int64_t i = 0; i < n; i++)
                d += a[i] != b[i];
        return d;
}

/* The device's way: upload the grid, the four slot maps and the neighbour map by the ops,
 * then a sync (the time), then the results brought back and compared (not timed). */
static double device_structure(p3_backend *be, const level *lv, int64_t *mismatches) {
        int64_t n = lv->n;
        int32_t *grid = NULL, *slots[4] = {}, *nbr = NULL;
        CHECK_OK(p3_ibuf_alloc(be, 3 * n, &grid));
        for (int k = 0; k < 4; k++)
                CHECK_OK(p3_ibuf_alloc(be, lv->n_pad, &slots[k]));
        CHECK_OK(p3_ibuf_alloc(be, 27 * n, &nbr));
        CHECK_OK(be->ops->sync(be));

        double t0 = test_now();
        CHECK_OK(be->ops->upload(be, grid, lv->grid, sizeof(int32_t) * 3 * n));
        for (int k = 0; k < 4; k++)
                CHECK_OK(be->ops->window_slots(be, grid, n, k, lv->depth, lv->window,
                                               lv->n_pad, slots[k]));
        CHECK_OK(be->ops->subm_neighbors(be, grid, n, nbr));
        CHECK_OK(be->ops->sync(be));
        double t = test_now() - t0;

        _cleanup_free_ int32_t *host = malloc(sizeof(int32_t) * 27 * n);
        CHECK(host);
        *mismatches = 0;
        for (int k = 0; k < 4; k++) {
                CHECK_OK(be->ops->download(be, host, slots[k], sizeof(int32_t) * lv->n_pad));
                *mismatches += differ(host, lv->slots[k], lv->n_pad);
                p3_ibuf_free(be, slots[k], lv->n_pad);
        }
        CHECK_OK(be->ops->download(be, host, nbr, sizeof(int32_t) * 27 * n));
        *mismatches += differ(host, lv->nbr, 27 * n);
        p3_ibuf_free(be, nbr, 27 * n);
        p3_ibuf_free(be, grid, 3 * n);
        return t;
}

/* P3_BENCH_BACKEND=cuda, or =shim for this program's own check here: a CPU backend given the
 * ops by tests/structure-shim.c. */
static p3_backend *device_backend(void) {
        const char *b = getenv("P3_BENCH_BACKEND");
        if (!b || (strcmp(b, "cuda") != 0 && strcmp(b, "shim") != 0))
                return NULL;
        p3_backend_options opt = { .threads = 1, .precision = P3_PRECISION_FP16 };
        p3_backend *be = NULL;
        char why[256] = "";
        int r;
        if (strcmp(b, "shim") == 0) {
                opt.precision = P3_PRECISION_FP32;
                if ((r = p3_backend_cpu_new(&opt, &be)) >= 0)
                        structure_shim_install(be, SHIM_RIGHT);
        } else {
                r = p3_backend_cuda_new(&opt, why, sizeof(why), &be);
        }
        if (r < 0) {
                fprintf(stderr, "bench-structure: P3_BENCH_BACKEND=%s: %s\n", b,
                        why[0] ? why : strerror(-r));
                exit(EXIT_FAILURE);
        }
        if (!be->ops->window_slots || !be->ops->subm_neighbors) {
                fprintf(stderr, "bench-structure: %s has no structure ops\n", be->device);
                exit(EXIT_FAILURE);
        }
        return be;
}

int main(void) {
        p3_backend *be = device_backend();
        printf("bench-structure: a level's four slot maps and neighbour map, best of %d; host "
               "on one core%s%s\n", REPS, be ? ", device " : "", be ? be->device : "");
        static const int radii[] = { 40, 60, 90 };
        int64_t total_mismatches = 0;
        for (size_t i = 0; i < sizeof(radii) / sizeof(radii[0]); i++) {
                level lv = {};
                level_make(radii[i], &lv);
                double host = 1e30, dev = 1e30;
                for (int rep = 0; rep < REPS; rep++) {
                        double t = host_structure(&lv);
                        host = t < host ? t : host;
                }
                printf("%7lld voxels (depth %d): host %7.1f ms", (long long) lv.n, lv.depth,
                       host * 1e3);
                if (be) {
                        int64_t bad = 0;
                        for (int rep = 0; rep < REPS; rep++) {
                                double t = device_structure(be, &lv, &bad);
                                dev = t < dev ? t : dev;
                                total_mismatches += bad;
                        }
                        printf("   device %6.2f ms (x%.0f)   %lld entries differ",
                               dev * 1e3, host / dev, (long long) bad);
                }
                printf("\n");
                level_free(&lv);
        }
        if (be)
                p3_backend_free(be);
        CHECK(total_mismatches == 0);
        return EXIT_SUCCESS;
}
