/* SPDX-License-Identifier: MIT */
/* The CUDA serialization keys (kernels/cuda/cuda_serialize.cuh), host-compiled, against the
 * engine's serialize.c bit for bit:
 *
 *   cu_z_encode, cu_hilbert_encode   random and corner coordinates, depths 1..21, and
 *                                    coordinates wider than the depth (masked)
 *   cu_order_code                    the four orders against p3_order_code
 *   cu_serial_depth                  against p3_serial_depth
 *   key bits                         no code reaches bit 3·depth (the radix sort's end bit)
 *   sort order                       the device's sort emulated (stable ascending sort of the
 *                                    codes cut to 3·depth bits, ties by index) against
 *                                    p3_serialize's order and inverse, with many ties
 *   cu_window_rank                   the window_slots gather against p3_attention_pad
 *
 * One line per check with its mismatch count; exit 0 only when every check passes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>

#include "cuda_serialize.cuh"

extern "C" {
#include "serialize.h"
#include "test-util.h"
}

static int failures;

static uint64_t rng_state = 0x73657269616c697aull;

static uint64_t rnd_u64(void) {
        return test_rnd_u64(&rng_state);
}

static void report(const char *what, int64_t bad, int64_t total) {
        printf("%-52s mismatches %lld of %-9lld %s\n", what, (long long) bad, (long long) total,
               bad ? "FAIL" : "ok");
        if (bad)
                failures++;
}

/* A coordinate for a depth: corners (0, 1, 2^d - 1, 2^d - 2, 2^(d-1)), uniform below 2^d, or
 * wider than the depth (the encoders mask it). */
static uint32_t coord(int depth) {
        uint32_t top = (uint32_t) ((1ull << (depth < 21 ? depth : 21)) - 1);
        switch (rnd_u64() % 8) {
        case 0:
                return 0;
        case 1:
                return top;
        case 2:
                return top ? top - 1 : 0;
        case 3:
                return (top + 1) / 2;
        case 4:
                return (uint32_t) rnd_u64() & 0x7fffffff; /* wider than the depth */
        default:
                return (uint32_t) (rnd_u64() & top);
        }
}

static void check_encoders(void) {
        const int per_depth = 20000;
        int64_t bad_z = 0, bad_h = 0, bad_o = 0, total = 0;
        for (int depth = 1; depth <= 21; depth++)
                for (int k = 0; k < per_depth; k++) {
                        uint32_t x = coord(depth), y = coord(depth), z = coord(depth);
                        bad_z += cu_z_encode(x, y, z, depth) != p3_z_encode(x, y, z, depth);
                        bad_h += cu_hilbert_encode(x, y, z, depth) !=
                                 p3_hilbert_encode(x, y, z, depth);
                        /* order codes take signed grid coordinates; keep them >= 0 */
                        int32_t p[3] = {(int32_t) (x & 0x7fffffff), (int32_t) (y & 0x7fffffff),
                                        (int32_t) (z & 0x7fffffff)};
                        for (int o = 0; o < 4; o++)
                                bad_o += cu_order_code(o, p, depth) !=
                                         p3_order_code((p3_order) o, p, depth);
                        total++;
                }
        report("z-order codes, depths 1..21", bad_z, total);
        report("Hilbert codes, depths 1..21", bad_h, total);
        report("order codes (z, z-trans, hilbert, hilbert-trans)", bad_o, 4 * total);
}

/* Every point of a small cube, so that each code of the curve is seen: a permutation of
 * [0, 8^depth) for both curves (a curve visits each cell once). */
static void check_whole_cube(void) {
        int64_t bad = 0, total = 0;
        for (int depth = 1; depth <= 4; depth++) {
                uint32_t side = 1u << depth;
                uint64_t cells = (uint64_t) side * side * side;
                uint8_t *seen = (uint8_t *) calloc(2 * cells, 1);
                if (!seen)
                        abort();
                for (uint32_t x = 0; x < side; x++)
                        for (uint32_t y = 0; y < side; y++)
                                for (uint32_t z = 0; z < side; z++) {
                                        uint64_t zc = cu_z_encode(x, y, z, depth);
                                        uint64_t hc = cu_hilbert_encode(x, y, z, depth);
                                        bad += zc != p3_z_encode(x, y, z, depth);
                                        bad += hc != p3_hilbert_encode(x, y, z, depth);
                                        bad += zc >= cells || hc >= cells;
                                        if (zc < cells)
                                                bad += seen[zc]++ != 0;
                                        if (hc < cells)
                                                bad += seen[cells + hc]++ != 0;
                                        total += 2;
                                }
                free(seen);
        }
        report("every cell of 2^d cubes, d = 1..4 (bijective)", bad, total);
}

static void check_depth(void) {
        int64_t bad = 0, total = 0;
        int32_t gc[3 * 64];
        for (int k = 0; k < 5000; k++) {
                int n = 1 + (int) (rnd_u64() % 64);
                int bits = (int) (rnd_u64() % 31); /* also all-zero clouds */
                int64_t mx = 0;
                for (int i = 0; i < 3 * n; i++) {
                        gc[i] = bits ? (int32_t) (rnd_u64() & ((1ull << bits) - 1)) : 0;
                        mx = gc[i] > mx ? gc[i] : mx;
                }
                bad += cu_serial_depth(mx) != p3_serial_depth(gc, n);
                total++;
        }
        report("serial depth", bad, total);
}

/* The launcher sorts bits [0, 3·depth): the largest coordinates of a depth must fit. */
static void check_key_bits(void) {
        int64_t bad = 0, total = 0;
        for (int depth = 1; depth <= CU_SERIAL_DEPTH_MAX; depth++) {
                uint64_t limit = 1ull << cu_serial_key_bits(depth);
                for (int k = 0; k < 20000; k++) {
                        uint32_t top = (1u << depth) - 1;
                        int32_t p[3];
                        for (int d = 0; d < 3; d++)
                                p[d] = (int32_t) (k < 8 ? ((k >> d) & 1) * top
                                                        : (uint32_t) rnd_u64() & top);
                        for (int o = 0; o < 4; o++)
                                bad += cu_order_code(o, p, depth) >= limit;
                        total += 4;
                }
        }
        report("codes below 2^(3 depth), depths 1..16", bad, total);
}

/* What the device does: codes, cut to the sorted bits, stable ascending sort of the indices
 * (CUB's radix sort is stable and gets 0..n-1 in order). */
static void device_order(const int32_t *gc, int64_t n, int order, int depth, int32_t *out) {
        uint64_t *code = (uint64_t *) malloc(sizeof(uint64_t) * n);
        if (!code)
                abort();
        int bits = cu_serial_key_bits(depth);
        uint64_t mask = bits >= 64 ? ~0ull : (1ull << bits) - 1;
        for (int64_t i = 0; i < n; i++) {
                code[i] = cu_order_code(order, gc + 3 * i, depth) & mask;
                out[i] = (int32_t) i;
        }
        std::stable_sort(out, out + n, [code](int32_t a, int32_t b) { return code[a] < code[b]; });
        free(code);
}

static void check_sort(const char *name, int64_t n, int32_t range) {
        int32_t *gc = (int32_t *) malloc(sizeof(int32_t) * 3 * n);
        int32_t *ref = (int32_t *) malloc(sizeof(int32_t) * 4 * n);
        int32_t *inv = (int32_t *) malloc(sizeof(int32_t) * 4 * n);
        int32_t *got = (int32_t *) malloc(sizeof(int32_t) * n);
        if (!gc || !ref || !inv || !got)
                abort();
        for (int64_t i = 0; i < 3 * n; i++)
                gc[i] = (int32_t) (rnd_u64() % (uint64_t) range);
        int depth = p3_serial_depth(gc, n);
        const p3_order orders[4] = {P3_ORDER_Z, P3_ORDER_Z_TRANS, P3_ORDER_HILBERT,
                                    P3_ORDER_HILBERT_TRANS};
        int64_t bad = 0;
        if (p3_serialize(gc, n, orders, 4, NULL, depth, NULL, ref, inv) < 0)
                bad = 4 * n;
        for (int o = 0; o < 4 && !bad; o++) {
                device_order(gc, n, o, depth, got);
                for (int64_t i = 0; i < n; i++) {
                        bad += got[i] != ref[o * n + i];
                        bad += inv[o * n + got[i]] != (int32_t) i;
                }
        }
        char what[96];
        snprintf(what, sizeof(what), "sort order, %s (depth %d)", name, depth);
        report(what, bad, 4 * n);
        free(gc);
        free(ref);
        free(inv);
        free(got);
}

/* The window_slots kernel's gather, slot[s] = order[cu_window_rank(s)], against the engine's
 * p3_attention_windows / p3_attention_pad for sizes around the window (below, equal, just
 * over, several windows with a partial last one). */
static void check_window_slots(void) {
        static const int64_t sizes[] = { 1, 5, 1023, 1024, 1025, 2500, 4096, 5000 };
        int64_t bad = 0, total = 0;
        for (size_t t = 0; t < sizeof(sizes) / sizeof(sizes[0]); t++) {
                int64_t n = sizes[t], window, n_pad;
                p3_attention_windows(n, 1024, &window, &n_pad);
                int32_t *pad = (int32_t *) malloc(sizeof(int32_t) * n_pad);
                if (!pad)
                        abort();
                p3_attention_pad(n, window, n_pad, pad);
                for (int64_t s = 0; s < n_pad; s++) {
                        int64_t rank = cu_window_rank(s, n, window);
                        bad += rank != pad[s] || rank < 0 || rank >= n;
                }
                total += n_pad;
                free(pad);
        }
        report("window slots (ranks of padded slots)", bad, total);
}

int main(void) {
        check_encoders();
        check_whole_cube();
        check_depth();
        check_key_bits();
        check_sort("n 20000 in [0, 6)^3, many ties", 20000, 6);
        check_sort("n 50000 in [0, 1000)^3", 50000, 1000);
        check_sort("n 30000 in [0, 65535)^3", 30000, 65535);
        check_sort("n 1", 1, 1);
        check_window_slots();
        printf("%s\n", failures ? "FAILED" : "all ok");
        return failures ? 1 : 0;
}
