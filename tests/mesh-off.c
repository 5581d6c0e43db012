/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh-off.h"

/* The faces of a polygon of n corners (n >= 3) as a fan from its first corner. */
static int read_face(FILE *f, int64_t nv, p3_mesh *m, int64_t *cap) {
        int n;
        long first, prev, cur;
        if (fscanf(f, "%d %ld %ld", &n, &first, &prev) != 3 || n < 3 || first < 0 ||
            first >= nv || prev < 0 || prev >= nv)
                return -EINVAL;
        for (int i = 2; i < n; i++, prev = cur) {
                if (fscanf(f, "%ld", &cur) != 1 || cur < 0 || cur >= nv)
                        return -EINVAL;
                if (m->nf == *cap) {
                        *cap = *cap ? 2 * *cap : 1024;
                        int32_t *g = realloc(m->f, sizeof(int32_t) * 3 * (size_t) *cap);
                        if (!g)
                                return -ENOMEM;
                        m->f = g;
                }
                int32_t *t = m->f + 3 * m->nf++;
                t[0] = (int32_t) first, t[1] = (int32_t) prev, t[2] = (int32_t) cur;
        }
        int c; /* the rest of the line (colours) */
        while ((c = fgetc(f)) != EOF && c != '\n')
                ;
        return 0;
}

int test_mesh_read_off(const char *path, p3_mesh *ret, p3_err *err) {
        *ret = (p3_mesh) {};
        FILE *f = fopen(path, "re");
        if (!f)
                return p3_errf(err, -errno, "%s: %s", path, strerror(errno));
        char magic[4] = "";
        long nv, nf, ne;
        int r = fscanf(f, "%3s %ld %ld %ld", magic, &nv, &nf, &ne) == 4 &&
                                strcmp(magic, "OFF") == 0 && nv > 0 && nv < INT32_MAX && nf > 0
                        ? 0
                        : -EINVAL;
        if (r >= 0) {
                ret->nv = nv;
                ret->v = malloc(sizeof(double) * 3 * (size_t) nv);
                r = ret->v ? 0 : -ENOMEM;
        }
        for (long i = 0; r >= 0 && i < 3 * nv; i++)
                r = fscanf(f, "%lf", &ret->v[i]) == 1 ? 0 : -EINVAL;
        int64_t cap = 0;
        for (long i = 0; r >= 0 && i < nf; i++)
                r = read_face(f, nv, ret, &cap);
        fclose(f);
        if (r < 0) {
                p3_mesh_done(ret);
                return p3_errf(err, r, "%s: not a plain OFF mesh this reader takes", path);
        }
        return 0;
}
