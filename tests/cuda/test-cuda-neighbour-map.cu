/* SPDX-License-Identifier: MIT */
/* The CUDA neighbour map's arithmetic (kernels/cuda/cuda_neighbour_map.cuh), host-compiled:
 * the table built on the host with the kernels' insert (in a shuffled order, as threads would
 * arrive) and the map filled with the kernel's per-entry routine, against the engine's
 * p3_subm_neighbors, entry for entry:
 *
 *   dense / sparse / large-coordinate / duplicate voxel sets    the engine's table size
 *   the same sets in tables barely larger than n                long collision chains
 *   probing at the table's end                                  wrap-around to slot 0
 *   a full table                                                insert refuses, lookup stops
 *   probe lengths on a plane                                    the slot function mixes x in
 *   coordinate range                                            -ERANGE where the CPU says so
 *
 * One line per check with its mismatch count; exit 0 only when every check passes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_neighbour_map.cuh"

extern "C" {
#include "serialize.h"
#include "test-util.h"
}

static int failures;

static uint64_t rng_state = 0x6e65696768626f75ull;

static uint64_t rnd_u64(void) {
        return test_rnd_u64(&rng_state);
}

static int32_t rnd_in(int32_t lo, int32_t hi) { /* [lo, hi) */
        return lo + (int32_t) (rnd_u64() % (uint64_t) (hi - lo));
}

static void report(const char *what, int64_t bad, const char *detail) {
        printf("%-44s mismatches %-8lld %s %s\n", what, (long long) bad, detail,
               bad ? "FAIL" : "ok");
        if (bad)
                failures++;
}

typedef struct host_table {
        cu_coord_table t;
        int longest; /* the longest probe sequence an insert walked */
} host_table;

static void table_init(host_table *h, uint64_t cap) {
        h->t.key = (uint64_t *) malloc(sizeof(uint64_t) * cap);
        h->t.val = (int32_t *) malloc(sizeof(int32_t) * cap);
        if (!h->t.key || !h->t.val)
                abort();
        h->t.mask = cap - 1;
        h->longest = 0;
        for (uint64_t s = 0; s < cap; s++) { /* what map_clear writes */
                h->t.key[s] = CU_COORD_EMPTY;
                h->t.val[s] = CU_COORD_NOVAL;
        }
}

static void table_done(host_table *h) {
        free(h->t.key);
        free(h->t.val);
}

static uint64_t key_of(const int32_t *p) {
        return cu_coord_pack((uint64_t) p[0], (uint64_t) p[1], (uint64_t) p[2]);
}

/* Distance from a key's home slot to where it sits. */
static int probe_length(const cu_coord_table *t, uint64_t k) {
        uint64_t s = cu_coord_slot(k, t->mask);
        int d = 0;
        while (t->key[s] != k && d <= (int) t->mask) {
                s = (s + 1) & t->mask;
                d++;
        }
        return d;
}

/* The host emulation of cuda_subm_neighbors: inserts in a random order (the device's threads
 * arrive in any order), then every entry through cu_subm_entry. */
static int host_map(const int32_t *gc, int64_t n, uint64_t cap, int32_t *nbr, int *longest) {
        host_table h;
        table_init(&h, cap);
        int32_t *perm = (int32_t *) malloc(sizeof(int32_t) * (n ? n : 1));
        if (!perm)
                abort();
        for (int64_t i = 0; i < n; i++)
                perm[i] = (int32_t) i;
        for (int64_t i = n - 1; i > 0; i--) {
                int64_t j = (int64_t) (rnd_u64() % (uint64_t) (i + 1));
                int32_t tmp = perm[i];
                perm[i] = perm[j];
                perm[j] = tmp;
        }
        int err = 0;
        for (int64_t q = 0; q < n && !err; q++) {
                const int32_t *p = gc + 3 * (int64_t) perm[q];
                if (!cu_coord_in_range(p[0]) || !cu_coord_in_range(p[1]) ||
                    !cu_coord_in_range(p[2]))
                        err = -ERANGE;
                else if (!cu_coord_insert(h.t, key_of(p), perm[q]))
                        err = -EIO;
        }
        if (!err) {
                for (int64_t i = 0; i < n; i++) {
                        int d = probe_length(&h.t, key_of(gc + 3 * i));
                        h.longest = d > h.longest ? d : h.longest;
                }
                for (int64_t e = 0; e < 27 * n; e++) {
                        int64_t i = e / 27;
                        nbr[e] = cu_subm_entry(h.t, gc + 3 * i, (int32_t) i, (int) (e - 27 * i));
                }
        }
        if (longest)
                *longest = h.longest;
        free(perm);
        table_done(&h);
        return err;
}

/* n distinct voxels (or with some repeated when dups > 0) in [lo, hi) per axis. */
static int32_t *voxels(int64_t n, int32_t lo, int32_t hi, int64_t dups) {
        int32_t *gc = (int32_t *) malloc(sizeof(int32_t) * 3 * n);
        if (!gc)
                abort();
        host_table seen;
        table_init(&seen, cu_coord_capacity(n));
        for (int64_t i = 0; i < n; i++) {
                int32_t *p = gc + 3 * i;
                if (i > 0 && i >= n - dups) { /* a copy of an earlier voxel */
                        memcpy(p, gc + 3 * (int64_t) rnd_in(0, (int32_t) i), 3 * sizeof(int32_t));
                        continue;
                }
                do {
                        for (int d = 0; d < 3; d++)
                                p[d] = rnd_in(lo, hi);
                } while (cu_coord_lookup(seen.t, key_of(p)) >= 0);
                cu_coord_insert(seen.t, key_of(p), (int32_t) i);
        }
        table_done(&seen);
        if (dups) /* spread the copies among the originals */
                for (int64_t i = n - 1; i > 0; i--) {
                        int64_t j = (int64_t) (rnd_u64() % (uint64_t) (i + 1));
                        for (int d = 0; d < 3; d++) {
                                int32_t tmp = gc[3 * i + d];
                                gc[3 * i + d] = gc[3 * j + d];
                                gc[3 * j + d] = tmp;
                        }
                }
        return gc;
}

/* The map against p3_subm_neighbors, with the engine's table size and with a table of
 * capacity tight (>= n + 1) that forces long collision chains. */
static void check_set(const char *name, int32_t *gc, int64_t n, uint64_t tight) {
        int32_t *ref = (int32_t *) malloc(sizeof(int32_t) * 27 * n);
        int32_t *got = (int32_t *) malloc(sizeof(int32_t) * 27 * n);
        if (!ref || !got)
                abort();
        if (p3_subm_neighbors(gc, n, ref) < 0)
                abort();
        int64_t present = 0;
        for (int64_t e = 0; e < 27 * n; e++)
                present += ref[e] >= 0;

        uint64_t caps[2] = {cu_coord_capacity(n), tight};
        for (int k = 0; k < 2; k++) {
                if (!caps[k])
                        continue;
                int longest = 0;
                int64_t bad = 0;
                if (host_map(gc, n, caps[k], got, &longest) < 0) {
                        bad = 27 * n;
                } else {
                        for (int64_t e = 0; e < 27 * n; e++)
                                bad += got[e] != ref[e];
                }
                char what[96], detail[96];
                snprintf(what, sizeof(what), "%s, capacity %llu", name,
                         (unsigned long long) caps[k]);
                snprintf(detail, sizeof(detail), "(n %lld, %.1f nbrs/voxel, probe <= %d)",
                         (long long) n, (double) present / (double) n, longest);
                report(what, bad, detail);
        }
        free(ref);
        free(got);
        free(gc);
}

static uint64_t pow2_above(int64_t n) {
        uint64_t c = 1;
        while (c <= (uint64_t) n)
                c <<= 1;
        return c;
}

static int32_t *plane(int64_t side);

static void check_sets(void) {
        const int32_t top = (1 << CU_COORD_BITS) - 1; /* first coordinate out of range */
        int64_t n;

        n = 700; /* 40% of a 12³ cube from the origin: many neighbours, coordinates at 0 */
        check_set("dense cube at the origin", voxels(n, 0, 12, 0), n, pow2_above(n));
        n = 3000;
        check_set("sparse, [0, 200)", voxels(n, 0, 200, 0), n, pow2_above(n));
        n = 1500; /* the largest coordinates the table accepts, + 1 offsets at 2^21 - 1 */
        check_set("dense near 2^21", voxels(n, top - 14, top, 0), n, pow2_above(n));
        n = 2000;
        check_set("anywhere in [0, 2^21 - 1)", voxels(n, 0, top, 0), n, pow2_above(n));
        n = 1200; /* a fifth of the voxels repeat earlier ones: the first index wins */
        check_set("duplicates", voxels(n, 0, 10, 240), n, pow2_above(n));
        n = 15; /* 15 of 16 slots */
        check_set("nearly full table", voxels(n, 0, 4, 0), n, 16);
        n = 1; /* the smallest: only the centre */
        check_set("one voxel", voxels(n, 0, 3, 0), n, 0);
        n = 64 * 64;
        check_set("plane y = 5, rows along x", plane(64), n, 0);
}

/* The voxels of a plane y = const, rows along x: a slot function that ignores x (the CPU's,
 * for small tables) gives chains as long as a row; the device's must not. */
static int32_t *plane(int64_t side) {
        int32_t *gc = (int32_t *) malloc(sizeof(int32_t) * 3 * side * side);
        if (!gc)
                abort();
        for (int64_t i = 0; i < side * side; i++) {
                gc[3 * i + 0] = (int32_t) (i % side);
                gc[3 * i + 1] = 5;
                gc[3 * i + 2] = (int32_t) (i / side);
        }
        return gc;
}

/* serialize.c's table_slot, for comparison only. */
static uint64_t cpu_slot(uint64_t k, uint64_t mask) {
        k *= 0x9e3779b97f4a7c15ull;
        return (k ^ (k >> 29)) & mask;
}

static void check_probe_lengths(void) {
        const int64_t side = 64, n = side * side;
        int32_t *gc = plane(side);
        int32_t *nbr = (int32_t *) malloc(sizeof(int32_t) * 27 * n);
        if (!nbr)
                abort();
        int longest = 0;
        int64_t bad = host_map(gc, n, cu_coord_capacity(n), nbr, &longest) < 0;
        bad += longest > 32;
        /* the same chains under the CPU's slot function: home slots of a sequential insert */
        uint64_t mask = cu_coord_capacity(n) - 1;
        uint8_t *used = (uint8_t *) calloc(mask + 1, 1);
        if (!used)
                abort();
        int cpu_longest = 0;
        for (int64_t i = 0; i < n; i++) {
                uint64_t s = cpu_slot(key_of(gc + 3 * i), mask);
                int d = 0;
                for (; used[s]; d++)
                        s = (s + 1) & mask;
                used[s] = 1;
                cpu_longest = d > cpu_longest ? d : cpu_longest;
        }
        char detail[96];
        snprintf(detail, sizeof(detail), "(longest %d, <= 32 wanted; the CPU's slot: %d)", longest,
                 cpu_longest);
        report("probe length, plane 64 x 64", bad, detail);
        free(used);
        free(nbr);
        free(gc);
}

/* Keys whose home slot is the last one wrap to slot 0, 1, ...; lookups follow them, and a
 * missing key with the same home stops at the first empty slot after the wrap. */
static void check_wrap(void) {
        host_table h;
        table_init(&h, 16);
        int32_t found[6][3];
        int nf = 0;
        for (int32_t x = 0; x < 64 && nf < 6; x++)
                for (int32_t y = 0; y < 64 && nf < 6; y++) {
                        int32_t p[3] = {x, y, 7};
                        if (cu_coord_slot(key_of(p), h.t.mask) == h.t.mask) {
                                memcpy(found[nf], p, sizeof(p));
                                nf++;
                        }
                }
        int64_t bad = nf == 6 ? 0 : 1;
        for (int k = 0; k < 5 && !bad; k++)
                bad += !cu_coord_insert(h.t, key_of(found[k]), 100 + k);
        /* home 15 → slots 15, 0, 1, 2, 3 */
        for (int k = 0; k < 5 && nf == 6; k++) {
                uint64_t s = (h.t.mask + (uint64_t) k) & h.t.mask;
                bad += h.t.key[s] != key_of(found[k]) || h.t.val[s] != 100 + k;
                bad += cu_coord_lookup(h.t, key_of(found[k])) != 100 + k;
        }
        if (nf == 6)
                bad += cu_coord_lookup(h.t, key_of(found[5])) != -1;
        /* a second insert of a key keeps the smaller index, from either side */
        if (nf == 6) {
                bad += !cu_coord_insert(h.t, key_of(found[3]), 200);
                bad += !cu_coord_insert(h.t, key_of(found[4]), 7);
                bad += cu_coord_lookup(h.t, key_of(found[3])) != 103;
                bad += cu_coord_lookup(h.t, key_of(found[4])) != 7;
        }
        report("wrap-around at the table end", bad, "(capacity 16, 5 keys homed at 15)");
        table_done(&h);
}

/* A table with no empty slot: insert reports failure, a missing key's lookup ends. */
static void check_full(void) {
        host_table h;
        table_init(&h, 16);
        int64_t bad = 0;
        for (int32_t i = 0; i < 16; i++) {
                int32_t p[3] = {i, 2 * i, 3};
                bad += !cu_coord_insert(h.t, key_of(p), i);
        }
        int32_t q[3] = {99, 99, 99};
        bad += cu_coord_insert(h.t, key_of(q), 16);
        bad += cu_coord_lookup(h.t, key_of(q)) != -1;
        for (int32_t i = 0; i < 16; i++) {
                int32_t p[3] = {i, 2 * i, 3};
                bad += cu_coord_lookup(h.t, key_of(p)) != i;
        }
        report("full table", bad, "(16 of 16 slots)");
        table_done(&h);
}

/* The range rule, against the CPU's -ERANGE. */
static void check_range(void) {
        const int32_t top = (1 << CU_COORD_BITS) - 1;
        const int32_t cases[][3] = {{0, 0, 0},        {top - 1, top - 1, top - 1},
                                    {top, 0, 0},      {0, top, 0},
                                    {0, 0, top},      {-1, 0, 0},
                                    {0, -5, 0},       {0, 0, INT32_MIN},
                                    {INT32_MAX, 1, 1}};
        int64_t bad = 0;
        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
                int32_t gc[6] = {5, 5, 5, cases[k][0], cases[k][1], cases[k][2]};
                int32_t ref[54], got[54];
                int rc = p3_subm_neighbors(gc, 2, ref);
                int rg = host_map(gc, 2, cu_coord_capacity(2), got, NULL);
                bad += (rc == -ERANGE) != (rg == -ERANGE);
                if (rc == 0 && rg == 0)
                        bad += memcmp(ref, got, sizeof(ref)) != 0;
        }
        report("coordinate range (-ERANGE)", bad, "(0, 2^21 - 2 in; -1, 2^21 - 1 out)");
}

int main(void) {
        check_sets();
        check_probe_lengths();
        check_wrap();
        check_full();
        check_range();
        printf("%s\n", failures ? "FAILED" : "all ok");
        return failures ? 1 : 0;
}
