/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>

#include "macro.h"
#include "serialize.h"
#include "structure-shim.h"

static structure_shim shim_kind;
static p3_backend_ops shim_ops;

static int shim_neighbours(p3_backend *be, const int32_t *grid, int64_t n, int32_t *nbr) {
        if (shim_kind == SHIM_FAILING_NEIGHBOURS)
                return -EIO;
        return p3_subm_neighbors(grid, n, nbr);
}

static int shim_slots(p3_backend *be, const int32_t *grid, int64_t n, int curve, int depth,
                      int64_t window, int64_t n_pad, int32_t *slot) {
        _cleanup_free_ int32_t *order = malloc(sizeof(int32_t) * (n ? n : 1));
        _cleanup_free_ int32_t *inverse = malloc(sizeof(int32_t) * (n ? n : 1));
        if (!order || !inverse)
                return -ENOMEM;
        p3_order o = (p3_order) curve;
        int r = p3_serialize(grid, n, &o, 1, NULL, depth, NULL, order, inverse);
        if (r < 0)
                return r;
        /* The wrong variant is the rule an old comment in serialize.h stated. */
        int64_t first = shim_kind == SHIM_WRONG_PADDING ? n - window + n % window : n - window;
        for (int64_t s = 0; s < n_pad; s++)
                slot[s] = order[s < n ? s : first + (s - n)];
        return 0;
}

void structure_shim_install(p3_backend *be, structure_shim kind) {
        shim_kind = kind;
        shim_ops = *be->ops;
        shim_ops.subm_neighbors = shim_neighbours;
        shim_ops.window_slots = shim_slots;
        be->ops = &shim_ops;
}
