/* SPDX-License-Identifier: MIT */
/* The iteration order of a CPython 3.11 set of small non-negative ints, as `list(s)` yields it.
 * Upstream turns sets of part indices into lists and breaks ties by list position, so the
 * order is part of the result: an open-addressed table of 2^m slots, hash(i) == i, probing
 * slot j..j+9 (when they fit) then j = 5j + 1 + (perturb >>= 5), growing to the smallest
 * power of two above 4 * len (2 * len past 50,000) once 5 * fill >= 3 * mask, re-inserting the
 * old slots in table order. Nothing is ever removed, so there are no dummies. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct p3_pyset {
        int64_t *table; /* NULL: the keys live in small[] */
        size_t mask;
        size_t used;
        int64_t small[8]; /* PySet_MINSIZE; -1 = empty slot */
} p3_pyset;

void p3_pyset_init(p3_pyset *s);
/* Frees a grown table and empties the set (it can be reused). */
void p3_pyset_done(p3_pyset *s);

/* Adds key, which must be in [0, 2^61 - 1) so that Python's hash(key) == key. Returns 1 if
 * added, 0 if already present, -EINVAL for a key out of range, -ENOMEM. */
int p3_pyset_add(p3_pyset *s, int64_t key);

static inline size_t p3_pyset_len(const p3_pyset *s) {
        return s->used;
}

/* Writes the keys in list(s) order to out (room for p3_pyset_len() entries); returns the count. */
size_t p3_pyset_list(const p3_pyset *s, int64_t *out);
