/* SPDX-License-Identifier: MIT */
/* Each op of the wrapped table runs between guard_enter() and guard_leave(); alloc and free
 * hand out guarded blocks with the CPU backend's accounting and cap. */
#include <errno.h>

#include "guard-memory.h"
#include "guarded-backend.h"

static const p3_backend_ops *inner;
static p3_backend_ops outer;

static int g_alloc(p3_backend *be, size_t bytes, void **ret) {
        void *p = bytes <= p3_backend_room(be) ? guard_alloc(bytes) : NULL;
        if (!p)
                return -ENOMEM;
        p3_backend_took(be, bytes);
        *ret = p;
        return 0;
}

static void g_free(p3_backend *be, void *p, size_t bytes) {
        if (!p)
                return;
        guard_free(p);
        p3_backend_gave(be, bytes);
}

/* The rest: the inner op, with the device memory open while it runs. */
#define GUARDED(op, params, args)                                                              \
        static int g_##op params {                                                             \
                guard_enter();                                                                 \
                int r = inner->op args;                                                        \
                guard_leave();                                                                 \
                return r;                                                                      \
        }

GUARDED(upload, (p3_backend *be, void *d, const void *s, size_t n), (be, d, s, n))
GUARDED(download, (p3_backend *be, void *d, const void *s, size_t n), (be, d, s, n))
GUARDED(linear,
        (p3_backend *be, const p3_tensor *x, const p3_tensor *w, const p3_tensor *b,
         p3_tensor *y, unsigned f),
        (be, x, w, b, y, f))
GUARDED(layernorm,
        (p3_backend *be, const p3_tensor *x, const p3_tensor *g, const p3_tensor *b,
         p3_tensor *y, unsigned f),
        (be, x, g, b, y, f))
GUARDED(gelu, (p3_backend *be, p3_tensor *x), (be, x))
GUARDED(add, (p3_backend *be, const p3_tensor *x, p3_tensor *y), (be, x, y))
GUARDED(subm_conv,
        (p3_backend *be, const p3_tensor *x, const int32_t *nbr, const p3_tensor *w,
         const p3_tensor *b, p3_tensor *y),
        (be, x, nbr, w, b, y))
GUARDED(attention,
        (p3_backend *be, const p3_tensor *qkv, const int32_t *slots, int64_t n_pad,
         int64_t window, int heads, p3_tensor *out),
        (be, qkv, slots, n_pad, window, heads, out))
GUARDED(gather_rows,
        (p3_backend *be, const p3_tensor *x, const int32_t *idx, p3_tensor *y, int64_t c0),
        (be, x, idx, y, c0))
GUARDED(gather_add, (p3_backend *be, const p3_tensor *x, const int32_t *idx, p3_tensor *y),
        (be, x, idx, y))
GUARDED(segment_max,
        (p3_backend *be, const p3_tensor *x, const int32_t *cluster, p3_tensor *y),
        (be, x, cluster, y))
GUARDED(to_host_f32, (p3_backend *be, const p3_tensor *x, float *host), (be, x, host))
GUARDED(heads,
        (p3_backend *be, const p3_heads_params *hp, const p3_heads_input *in,
         p3_heads_output *out),
        (be, hp, in, out))
GUARDED(check_finite, (p3_backend *be, const p3_tensor *x), (be, x))
GUARDED(subm_neighbors, (p3_backend *be, const int32_t *grid, int64_t n, int32_t *nbr),
        (be, grid, n, nbr))
GUARDED(window_slots,
        (p3_backend *be, const int32_t *grid, int64_t n, int curve, int depth, int64_t window,
         int64_t n_pad, int32_t *slot),
        (be, grid, n, curve, depth, window, n_pad, slot))

void guarded_backend_install(p3_backend *be) {
        inner = be->ops;
        outer = *inner;
        outer.alloc = g_alloc;
        outer.free = g_free;
        outer.upload = g_upload;
        outer.download = g_download;
        outer.linear = g_linear;
        outer.layernorm = g_layernorm;
        outer.gelu = g_gelu;
        outer.add = g_add;
        outer.subm_conv = g_subm_conv;
        outer.attention = g_attention;
        outer.gather_rows = g_gather_rows;
        outer.gather_add = g_gather_add;
        outer.segment_max = g_segment_max;
        outer.to_host_f32 = g_to_host_f32;
        outer.heads = g_heads;
        outer.check_finite = inner->check_finite ? g_check_finite : NULL;
        outer.subm_neighbors = inner->subm_neighbors ? g_subm_neighbors : NULL;
        outer.window_slots = inner->window_slots ? g_window_slots : NULL;
        be->ops = &outer;
}
