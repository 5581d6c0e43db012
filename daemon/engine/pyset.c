/* SPDX-License-Identifier: MIT */
/* CPython 3.11 set insertion (Objects/setobject.c: set_add_entry, set_table_resize,
 * set_insert_clean) reduced to what decides the slot of an int key: no deletions, no dummies,
 * equal hash means equal key. */
#include "pyset.h"

#include <errno.h>
#include <stdlib.h>

#define PY_LINEAR_PROBES 9
#define PY_PERTURB_SHIFT 5
#define PY_SET_MINSIZE 8
#define PY_HASH_MODULUS ((int64_t) ((UINT64_C(1) << 61) - 1))

static int64_t *slots(p3_pyset *s) {
        return s->table ? s->table : s->small;
}

void p3_pyset_init(p3_pyset *s) {
        s->table = NULL;
        s->mask = PY_SET_MINSIZE - 1;
        s->used = 0;
        for (size_t i = 0; i < PY_SET_MINSIZE; i++)
                s->small[i] = -1;
}

void p3_pyset_done(p3_pyset *s) {
        free(s->table);
        p3_pyset_init(s);
}

/* The slot holding key, or the first empty slot on its probe sequence. Both the insertion and
 * the re-insertion after a resize walk this same sequence. */
static size_t probe(const int64_t *t, size_t mask, int64_t key) {
        size_t i = (size_t) key & mask, perturb = (size_t) key;

        for (;;) {
                size_t n = i + PY_LINEAR_PROBES <= mask ? PY_LINEAR_PROBES + 1 : 1;
                for (size_t j = i; j < i + n; j++)
                        if (t[j] < 0 || t[j] == key)
                                return j;
                perturb >>= PY_PERTURB_SHIFT;
                i = (i * 5 + 1 + perturb) & mask;
        }
}

static int resize(p3_pyset *s, size_t minused) {
        size_t size = PY_SET_MINSIZE;
        while (size <= minused)
                size <<= 1;

        int64_t *t = malloc(sizeof(int64_t) * size);
        if (!t)
                return -ENOMEM;
        for (size_t i = 0; i < size; i++)
                t[i] = -1;

        /* Old slots in table order: this is what can reorder colliding keys. */
        const int64_t *old = slots(s);
        for (size_t i = 0; i <= s->mask; i++)
                if (old[i] >= 0)
                        t[probe(t, size - 1, old[i])] = old[i];
        free(s->table);
        s->table = t;
        s->mask = size - 1;
        return 0;
}

int p3_pyset_add(p3_pyset *s, int64_t key) {
        if (key < 0 || key >= PY_HASH_MODULUS)
                return -EINVAL;

        int64_t *t = slots(s);
        size_t j = probe(t, s->mask, key);
        if (t[j] == key)
                return 0;
        t[j] = key;
        s->used++;
        /* fill == used without deletions. */
        if (s->used * 5 < s->mask * 3)
                return 1;
        int r = resize(s, s->used > 50000 ? s->used * 2 : s->used * 4);
        return r < 0 ? r : 1;
}

size_t p3_pyset_list(const p3_pyset *s, int64_t *out) {
        const int64_t *t = s->table ? s->table : s->small;
        size_t n = 0;

        for (size_t i = 0; i <= s->mask; i++)
                if (t[i] >= 0)
                        out[n++] = t[i];
        return n;
}
