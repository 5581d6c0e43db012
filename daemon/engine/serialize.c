/* SPDX-License-Identifier: MIT */
/* The integer structure of a Sonata level (spec §3.3, §3.4, §3.6, §3.7). Everything here must
 * be exact: the serialized orders decide which points share an attention window, so a single
 * swapped code changes every feature downstream. */
#include "serialize.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

/* Stable LSD radix sort of (key, index) pairs, 8 bits a pass; passes where every key has the
 * same byte are skipped, so 48-bit codes cost 6 passes and small ones fewer. */
int p3_argsort_u64(const uint64_t *key, int64_t n, int32_t *order, uint64_t *sorted_key) {
        if (n < 0 || n > INT32_MAX)
                return -EINVAL;
        if (n == 0)
                return 0;

        _cleanup_free_ uint64_t *ka = malloc(sizeof(uint64_t) * n);
        _cleanup_free_ uint64_t *kb = malloc(sizeof(uint64_t) * n);
        _cleanup_free_ int32_t *ib = malloc(sizeof(int32_t) * n);
        _cleanup_free_ int64_t *hist = calloc(8 * 256, sizeof(int64_t));
        if (!ka || !kb || !ib || !hist)
                return -ENOMEM;

        for (int64_t i = 0; i < n; i++) {
                uint64_t k = key[i];
                ka[i] = k;
                order[i] = (int32_t) i;
                for (int p = 0; p < 8; p++)
                        hist[p * 256 + ((k >> (8 * p)) & 0xff)]++;
        }

        uint64_t *ksrc = ka, *kdst = kb;
        int32_t *isrc = order, *idst = ib;
        for (int p = 0; p < 8; p++) {
                int64_t *h = hist + p * 256;
                if (h[(key[0] >> (8 * p)) & 0xff] == n)
                        continue; /* this byte is the same everywhere */

                int64_t sum = 0;
                for (int b = 0; b < 256; b++) {
                        int64_t c = h[b];
                        h[b] = sum;
                        sum += c;
                }
                for (int64_t i = 0; i < n; i++) {
                        int64_t d = h[(ksrc[i] >> (8 * p)) & 0xff]++;
                        kdst[d] = ksrc[i];
                        idst[d] = isrc[i];
                }
                uint64_t *kt = ksrc;
                ksrc = kdst;
                kdst = kt;
                int32_t *it = isrc;
                isrc = idst;
                idst = it;
        }

        if (isrc != order)
                memcpy(order, isrc, sizeof(int32_t) * n);
        if (sorted_key)
                memcpy(sorted_key, ksrc, sizeof(uint64_t) * n);
        return 0;
}

int p3_serial_depth(const int32_t *grid_coord, int64_t n) {
        int64_t mx = 0;
        for (int64_t i = 0; i < 3 * n; i++)
                if (grid_coord[i] > mx)
                        mx = grid_coord[i];
        /* bit_length(max + 1) */
        return 64 - __builtin_clzll((uint64_t) mx + 1);
}

/* Spread the low 21 bits of v so that bit i lands at bit 3i. */
static uint64_t spread3(uint64_t v) {
        v &= 0x1fffff;
        v = (v | v << 32) & 0x1f00000000ffffull;
        v = (v | v << 16) & 0x1f0000ff0000ffull;
        v = (v | v << 8) & 0x100f00f00f00f00full;
        v = (v | v << 4) & 0x10c30c30c30c30c3ull;
        v = (v | v << 2) & 0x1249249249249249ull;
        return v;
}

static uint64_t low_bits(int depth) {
        return depth >= 21 ? 0x1fffff : (1ull << depth) - 1;
}

/* bit_i(x) at 3i+2, bit_i(y) at 3i+1, bit_i(z) at 3i, for i < depth. */
uint64_t p3_z_encode(uint32_t x, uint32_t y, uint32_t z, int depth) {
        uint64_t m = low_bits(depth);
        return spread3(x & m) << 2 | spread3(y & m) << 1 | spread3(z & m);
}

/* Skilling's transposition (spec §3.3 (a)-(e)) done on whole words: "bits u > t" in MSB-first
 * numbering are the bits below position b-1-t. The transposed words interleave exactly like
 * the z code, and the Gray decode is a prefix XOR from the top. */
uint64_t p3_hilbert_encode(uint32_t x, uint32_t y, uint32_t z, int depth) {
        uint64_t m = low_bits(depth);
        uint64_t g[3] = { x & m, y & m, z & m };

        for (int t = 0; t < depth; t++) {
                int bit = depth - 1 - t;
                uint64_t below = (1ull << bit) - 1;
                for (int d = 0; d < 3; d++) {
                        if ((g[d] >> bit) & 1) {
                                g[0] ^= below;
                        } else {
                                uint64_t s = (g[0] ^ g[d]) & below;
                                g[d] ^= s;
                                g[0] ^= s;
                        }
                }
        }

        uint64_t h = spread3(g[0]) << 2 | spread3(g[1]) << 1 | spread3(g[2]);
        for (int s = 1; s < 64; s <<= 1)
                h ^= h >> s;
        return h;
}

uint64_t p3_order_code(p3_order o, const int32_t *xyz, int depth) {
        uint32_t x = (uint32_t) xyz[0], y = (uint32_t) xyz[1], z = (uint32_t) xyz[2];

        switch (o) {
        case P3_ORDER_Z:
                return p3_z_encode(x, y, z, depth);
        case P3_ORDER_Z_TRANS:
                return p3_z_encode(y, x, z, depth);
        case P3_ORDER_HILBERT:
                return p3_hilbert_encode(x, y, z, depth);
        case P3_ORDER_HILBERT_TRANS:
                return p3_hilbert_encode(y, x, z, depth);
        }
        return 0;
}

int p3_serialize(const int32_t *grid_coord, int64_t n, const p3_order *orders, int num_orders,
                 const int64_t *perm, int depth, int64_t *code, int32_t *order, int32_t *inverse) {
        /* Upstream asserts depth <= 16: 3*16 bits plus the batch above them. */
        if (depth < 1 || depth > 16 || n < 0 || n > INT32_MAX)
                return -EINVAL;
        if (n == 0)
                return 0;

        _cleanup_free_ uint64_t *c = malloc(sizeof(uint64_t) * n);
        if (!c)
                return -ENOMEM;

        for (int k = 0; k < num_orders; k++) {
                int64_t src = perm ? perm[k] : k;
                if (src < 0 || src >= num_orders)
                        return -EINVAL;
                p3_order o = orders[src];

                for (int64_t i = 0; i < n; i++)
                        c[i] = p3_order_code(o, grid_coord + 3 * i, depth);
                if (code)
                        for (int64_t i = 0; i < n; i++)
                                code[k * n + i] = (int64_t) c[i];

                int32_t *ord = order + k * n;
                int r = p3_argsort_u64(c, n, ord, NULL);
                if (r < 0)
                        return r;
                for (int64_t i = 0; i < n; i++)
                        inverse[k * n + ord[i]] = (int32_t) i;
        }
        return 0;
}

/* Open-addressing table of packed coordinates -> point index, linear probing. */
typedef struct coord_table {
        uint64_t *key;
        int32_t *val;
        uint64_t mask;
} coord_table;

#define COORD_BITS 21
#define COORD_EMPTY UINT64_MAX

static uint64_t pack_coord(uint64_t x, uint64_t y, uint64_t z) {
        return x << (2 * COORD_BITS) | y << COORD_BITS | z;
}

static uint64_t table_slot(const coord_table *t, uint64_t k) {
        k *= 0x9e3779b97f4a7c15ull;
        return (k ^ (k >> 29)) & t->mask;
}

static void table_done(coord_table *t) {
        free(t->key);
        free(t->val);
}

static int table_build(coord_table *t, const int32_t *gc, int64_t n) {
        uint64_t cap = 16;
        while (cap < 2 * (uint64_t) n)
                cap <<= 1;

        *t = (coord_table) { .key = malloc(sizeof(uint64_t) * cap),
                             .val = malloc(sizeof(int32_t) * cap),
                             .mask = cap - 1 };
        if (!t->key || !t->val)
                return -ENOMEM;
        memset(t->key, 0xff, sizeof(uint64_t) * cap);

        for (int64_t i = 0; i < n; i++) {
                const int32_t *p = gc + 3 * i;
                /* One bit of headroom above the largest coordinate for the +1 offsets. */
                for (int d = 0; d < 3; d++)
                        if (p[d] < 0 || p[d] >= (1 << COORD_BITS) - 1)
                                return -ERANGE;
                uint64_t k = pack_coord(p[0], p[1], p[2]);
                uint64_t s = table_slot(t, k);
                while (t->key[s] != COORD_EMPTY && t->key[s] != k)
                        s = (s + 1) & t->mask;
                if (t->key[s] == COORD_EMPTY) { /* a duplicate keeps the first point */
                        t->key[s] = k;
                        t->val[s] = (int32_t) i;
                }
        }
        return 0;
}

static int32_t table_get(const coord_table *t, uint64_t k) {
        for (uint64_t s = table_slot(t, k);; s = (s + 1) & t->mask) {
                if (t->key[s] == k)
                        return t->val[s];
                if (t->key[s] == COORD_EMPTY)
                        return -1;
        }
}

int p3_subm_neighbors(const int32_t *grid_coord, int64_t n, int32_t *nbr) {
        if (n < 0 || n > INT32_MAX)
                return -EINVAL;
        if (n == 0)
                return 0;

        _cleanup_(table_done) coord_table t = {};
        int r = table_build(&t, grid_coord, n);
        if (r < 0)
                return r;

        for (int64_t i = 0; i < n; i++) {
                const int32_t *p = grid_coord + 3 * i;
                int32_t *row = nbr + 27 * i;
                for (int a = 0; a < 3; a++)
                        for (int b = 0; b < 3; b++)
                                for (int c = 0; c < 3; c++) {
                                        int64_t x = p[0] + a - 1, y = p[1] + b - 1,
                                                z = p[2] + c - 1;
                                        row[9 * a + 3 * b + c] =
                                                (x < 0 || y < 0 || z < 0)
                                                        ? -1
                                                        : table_get(&t, pack_coord(x, y, z));
                                }
                row[13] = (int32_t) i;
        }
        return 0;
}

void p3_attention_windows(int64_t n, int patch, int64_t *window, int64_t *n_pad) {
        int64_t w = MIN(n, (int64_t) patch);
        *window = w;
        *n_pad = w > 0 ? DIV_ROUND_UP(n, w) * w : 0;
}

/* Slots past n repeat the ranks one window earlier, so the last window is the last `window`
 * ranks (spec §3.6). */
void p3_attention_pad(int64_t n, int64_t window, int64_t n_pad, int32_t *pad) {
        for (int64_t s = 0; s < n_pad; s++)
                pad[s] = (int32_t) (s < n ? s : s - window);
}

int p3_grid_pool(const int32_t *grid_coord, int64_t n, int stride, int32_t **coarse, int64_t *m,
                 int32_t *cluster) {
        if (stride <= 0 || n <= 0 || n > INT32_MAX)
                return -EINVAL;

        _cleanup_free_ uint64_t *key = malloc(sizeof(uint64_t) * n);
        _cleanup_free_ uint64_t *sorted = malloc(sizeof(uint64_t) * n);
        _cleanup_free_ int32_t *idx = malloc(sizeof(int32_t) * n);
        if (!key || !sorted || !idx)
                return -ENOMEM;

        /* Packing (x, y, z) with x highest makes integer order the lexicographic row order
         * that torch.unique(dim=0) yields. */
        for (int64_t i = 0; i < n; i++) {
                const int32_t *p = grid_coord + 3 * i;
                for (int d = 0; d < 3; d++)
                        if (p[d] < 0 || p[d] >= (1 << COORD_BITS))
                                return -ERANGE;
                key[i] = pack_coord(p[0] / stride, p[1] / stride, p[2] / stride);
        }
        int r = p3_argsort_u64(key, n, idx, sorted);
        if (r < 0)
                return r;

        int64_t cells = 0;
        for (int64_t j = 0; j < n; j++) {
                if (j > 0 && sorted[j] != sorted[j - 1])
                        cells++;
                cluster[idx[j]] = (int32_t) cells;
        }
        cells++;

        _cleanup_free_ int32_t *out = malloc(sizeof(int32_t) * 3 * cells);
        if (!out)
                return -ENOMEM;
        uint64_t cmask = (1ull << COORD_BITS) - 1;
        for (int64_t j = 0, c = 0; j < n; j++) {
                if (j > 0 && sorted[j] == sorted[j - 1])
                        continue;
                out[3 * c + 0] = (int32_t) (sorted[j] >> (2 * COORD_BITS));
                out[3 * c + 1] = (int32_t) ((sorted[j] >> COORD_BITS) & cmask);
                out[3 * c + 2] = (int32_t) (sorted[j] & cmask);
                c++;
        }

        *coarse = TAKE_PTR(out);
        *m = cells;
        return 0;
}
