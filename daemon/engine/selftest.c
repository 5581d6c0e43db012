/* SPDX-License-Identifier: MIT */
/* The level-structure ops of a backend against serialize.c (see selftest.h). Integer work has
 * one right answer, so every entry must match: a wrong sort, a lost hash insert or a bad
 * window padding would misplace points silently, which no float tolerance downstream would
 * notice reliably. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "selftest.h"
#include "serialize.h"

static const char *const curve_name[] = { "z", "z-trans", "hilbert", "hilbert-trans" };

typedef struct structure_case {
        int32_t *grid; /* host [n, 3] */
        int64_t n, window, n_pad;
        int depth;
} structure_case;

/* Voxels of a 12³ block kept with probability about 0.4 (so that neighbours are both present
 * and absent, and coordinate 0 has neighbours outside the grid), plus a few far away that
 * raise the depth to 10. The window leaves a padded last window. */
static int case_make(structure_case *c) {
        c->grid = malloc(sizeof(int32_t) * 3 * (12 * 12 * 12 + 4));
        if (!c->grid)
                return -ENOMEM;
        uint64_t rng = 0x243f6a8885a308d3ull;
        int64_t n = 0;
        for (int x = 0; x < 12; x++)
                for (int y = 0; y < 12; y++)
                        for (int z = 0; z < 12; z++) {
                                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                                if ((rng >> 33) % 5 >= 2)
                                        continue;
                                int32_t *p = c->grid + 3 * n++;
                                p[0] = x, p[1] = y, p[2] = z;
                        }
        static const int32_t far[4][3] = {
                { 900, 3, 17 }, { 901, 3, 17 }, { 5, 1000, 2 }, { 511, 512, 513 },
        };
        for (int i = 0; i < 4; i++, n++)
                memcpy(c->grid + 3 * n, far[i], sizeof(far[i]));
        c->n = n;
        c->depth = p3_serial_depth(c->grid, n);
        p3_attention_windows(n, n % 128 ? 128 : 100, &c->window, &c->n_pad);
        return 0;
}

/* The device result next to the host's: the fraction that differs, reported, then judged. */
static int judge(const char *op, const char *detail, int32_t *dev, const int32_t *host,
                 int64_t len, p3_selftest_report_fn report, void *userdata, char *why,
                 size_t why_len) {
        const char *broken = getenv("P3_TEST_SELFTEST_BREAK");
        if (broken && strcmp(broken, op) == 0 && len > 0)
                dev[len - 1] ^= 1; /* the test hook */
        int64_t differ = 0;
        for (int64_t i = 0; i < len; i++)
                differ += dev[i] != host[i];
        char name[64];
        snprintf(name, sizeof(name), detail ? "%s (%s)" : "%s", op, detail);
        if (report)
                report(name, len ? (double) differ / (double) len : 0, 0, userdata);
        if (differ == 0)
                return 0;
        snprintf(why, why_len, "%s: %lld of %lld entries differ", name, (long long) differ,
                 (long long) len);
        return -EPROTO;
}

/* A device call that failed: the op and the error, for the fallback reason. */
static int device_failed(int r, const char *op, char *why, size_t why_len) {
        snprintf(why, why_len, "%s failed on the device: %s", op, strerror(-r));
        return r;
}

static int check_slots(p3_backend *be, const structure_case *c, const int32_t *grid_dev,
                       int curve, p3_selftest_report_fn report, void *userdata, char *why,
                       size_t why_len) {
        int64_t n = c->n, n_pad = c->n_pad;
        _cleanup_free_ int32_t *order = malloc(sizeof(int32_t) * n);
        _cleanup_free_ int32_t *inverse = malloc(sizeof(int32_t) * n);
        _cleanup_free_ int32_t *pad = malloc(sizeof(int32_t) * n_pad);
        _cleanup_free_ int32_t *host = malloc(sizeof(int32_t) * n_pad);
        _cleanup_free_ int32_t *dev = malloc(sizeof(int32_t) * n_pad);
        if (!order || !inverse || !pad || !host || !dev)
                return -ENOMEM;
        p3_order o = (p3_order) curve;
        int r = p3_serialize(c->grid, n, &o, 1, NULL, c->depth, NULL, order, inverse);
        if (r < 0)
                return r;
        p3_attention_pad(n, c->window, n_pad, pad);
        for (int64_t s = 0; s < n_pad; s++)
                host[s] = order[pad[s]];

        int32_t *slot = NULL;
        if ((r = p3_ibuf_alloc(be, n_pad, &slot)) < 0)
                return device_failed(r, "window_slots", why, why_len);
        r = be->ops->window_slots(be, grid_dev, n, curve, c->depth, c->window, n_pad, slot);
        if (r >= 0)
                r = be->ops->download(be, dev, slot, sizeof(int32_t) * n_pad);
        p3_ibuf_free(be, slot, n_pad);
        if (r < 0)
                return device_failed(r, "window_slots", why, why_len);
        return judge("window_slots", curve_name[curve], dev, host, n_pad, report, userdata, why,
                     why_len);
}

static int check_neighbours(p3_backend *be, const structure_case *c, const int32_t *grid_dev,
                            p3_selftest_report_fn report, void *userdata, char *why,
                            size_t why_len) {
        int64_t len = 27 * c->n;
        _cleanup_free_ int32_t *host = malloc(sizeof(int32_t) * len);
        _cleanup_free_ int32_t *dev = malloc(sizeof(int32_t) * len);
        if (!host || !dev)
                return -ENOMEM;
        int r = p3_subm_neighbors(c->grid, c->n, host);
        if (r < 0)
                return r;
        int32_t *nbr = NULL;
        if ((r = p3_ibuf_alloc(be, len, &nbr)) < 0)
                return device_failed(r, "subm_neighbors", why, why_len);
        r = be->ops->subm_neighbors(be, grid_dev, c->n, nbr);
        if (r >= 0)
                r = be->ops->download(be, dev, nbr, sizeof(int32_t) * len);
        p3_ibuf_free(be, nbr, len);
        if (r < 0)
                return device_failed(r, "subm_neighbors", why, why_len);
        return judge("subm_neighbors", NULL, dev, host, len, report, userdata, why, why_len);
}

int p3_structure_selftest(p3_backend *be, p3_selftest_report_fn report, void *userdata,
                          char *why, size_t why_len) {
        why[0] = 0;
        if (!be->ops->subm_neighbors || !be->ops->window_slots)
                return 0;
        structure_case c = {};
        int r = case_make(&c);
        int32_t *grid = NULL;
        if (r >= 0 && (r = p3_ibuf_upload(be, c.grid, 3 * c.n, &grid)) < 0)
                r = device_failed(r, "the grid's upload", why, why_len);
        for (int curve = 0; r >= 0 && curve < 4; curve++)
                r = check_slots(be, &c, grid, curve, report, userdata, why, why_len);
        if (r >= 0)
                r = check_neighbours(be, &c, grid, report, userdata, why, why_len);
        p3_ibuf_free(be, grid, 3 * c.n);
        free(c.grid);
        if (r < 0 && !why[0])
                snprintf(why, why_len, "the structure self-test: %s", strerror(-r));
        return r;
}

int p3_engine_selftest(p3_backend *be, bool keep_going, p3_selftest_report_fn report,
                       void *userdata, char *why, size_t why_len) {
        int r = p3_backend_selftest(be, keep_going, report, userdata, why, why_len);
        if (r < 0 && !keep_going)
                return r;
        char structure[256];
        int rs = p3_structure_selftest(be, report, userdata, structure, sizeof(structure));
        if (rs < 0) {
                size_t used = strlen(why);
                snprintf(why + used, why_len - used, "%s%s", used ? "; " : "", structure);
        }
        return r < 0 ? r : rs;
}
