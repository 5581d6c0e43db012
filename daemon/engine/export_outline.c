/* SPDX-License-Identifier: MIT */
/* The boxes upstream outlines in NAME_aabb.glb (auto_mask.py better_aabb): per part and axis,
 * the coordinates of its faces' corners without the IQR outliers, then min and max. The rule
 * is followed down to NumPy 1.x's arithmetic, so that the outlines land where upstream's do:
 * the values are float32, np.percentile interpolates linearly with the difference of the two
 * neighbours taken in float32 and the rest in float64, and the bounds are compared in float32
 * (NumPy 1.x casts a float64 scalar to the array's float32). */
#include "export.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

/* Rearrange a[0..n) so that a[k] is the value sorted order puts there, smaller or equal
 * values before it and larger or equal after (quickselect, median of three): the quartiles
 * need four order statistics, not a sort. */
static void select_kth(float *a, size_t n, size_t k) {
        size_t lo = 0, hi = n - 1;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                float x = a[lo], y = a[mid], z = a[hi];
                float pivot = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
                size_t i = lo, j = hi;
                while (i <= j) {
                        while (a[i] < pivot)
                                i++;
                        while (a[j] > pivot)
                                j--;
                        if (i <= j) {
                                float t = a[i];
                                a[i++] = a[j];
                                a[j] = t;
                                if (j == 0)
                                        break;
                                j--;
                        }
                }
                if (k <= j)
                        hi = j;
                else if (k >= i)
                        lo = i;
                else
                        return;
        }
}

static float min_of(const float *a, size_t n) {
        float m = a[0];
        for (size_t i = 1; i < n; i++)
                m = MIN(m, a[i]);
        return m;
}

/* np.percentile(a, q), method "linear", for a float32 array of n > 0 values; a is
 * rearranged, and values before `from` must not exceed those after it (an earlier call with a
 * smaller q leaves it so). */
static double percentile(float *a, size_t n, size_t from, double q) {
        double vi = (double) (n - 1) * (q / 100.0);
        size_t lo = (size_t) floor(vi);
        double gamma = vi - (double) lo;
        if (lo > from)
                select_kth(a + from, n - from, lo - from);
        else
                select_kth(a, n, lo);
        float below = a[lo], above = lo + 1 < n ? min_of(a + lo + 1, n - lo - 1) : a[lo];
        float diff = above - below;
        if (gamma >= 0.5)
                return (double) above - (double) diff * (1.0 - gamma);
        return (double) below + (double) diff * gamma;
}

/* remove_outliers_iqr then min and max of what is left, over v[0..n) (scratch: n floats). */
static void trimmed_range(const float *v, size_t n, float *scratch, double *lo, double *hi) {
        memcpy(scratch, v, sizeof(float) * n);
        double q1 = percentile(scratch, n, 0, 25);
        double q3 = percentile(scratch, n, (size_t) floor((double) (n - 1) * 0.25), 75);
        double iqr = q3 - q1;
        float lower = (float) (q1 - 1.5 * iqr), upper = (float) (q3 + 1.5 * iqr);
        float mn = INFINITY, mx = -INFINITY;
        for (size_t i = 0; i < n; i++)
                if (v[i] >= lower && v[i] <= upper) {
                        mn = MIN(mn, v[i]);
                        mx = MAX(mx, v[i]);
                }
        /* the quartiles themselves always pass, so something is left; guard anyway */
        if (mn > mx)
                mn = mx = (float) q1;
        *lo = mn;
        *hi = mx;
}

/* Faces grouped by part: order[start[p]..start[p + 1]) are part p's faces. */
static int faces_by_part(const p3_segmentation *s, int64_t **ret_start, int32_t **ret_order) {
        int64_t nf = s->mesh->nf;
        _cleanup_free_ int64_t *start = calloc((size_t) s->n_parts + 2, sizeof(int64_t));
        _cleanup_free_ int32_t *order = malloc(sizeof(int32_t) * (size_t) MAX(nf, 1));
        _cleanup_free_ int32_t *part = malloc(sizeof(int32_t) * (size_t) MAX(nf, 1));
        if (!start || !order || !part)
                return -ENOMEM;
        for (int64_t f = 0; f < nf; f++) {
                part[f] = p3_segmentation_part(s, s->face_ids[f]);
                if (part[f] >= 0)
                        start[part[f] + 2]++;
        }
        for (int p = 0; p < s->n_parts; p++)
                start[p + 2] += start[p + 1];
        for (int64_t f = 0; f < nf; f++)
                if (part[f] >= 0)
                        order[start[part[f] + 1]++] = (int32_t) f;
        *ret_start = TAKE_PTR(start);
        *ret_order = TAKE_PTR(order);
        return 0;
}

int p3_segmentation_outline_boxes(const p3_segmentation *s, double *boxes) {
        _cleanup_free_ int64_t *start = NULL;
        _cleanup_free_ int32_t *order = NULL;
        int64_t most = 0;

        if (faces_by_part(s, &start, &order) < 0)
                return -ENOMEM;
        for (int p = 0; p < s->n_parts; p++)
                most = MAX(most, start[p + 1] - start[p]);
        _cleanup_free_ float *v = malloc(sizeof(float) * 3 * (size_t) MAX(most, 1));
        _cleanup_free_ float *scratch = malloc(sizeof(float) * 3 * (size_t) MAX(most, 1));
        if (!v || !scratch)
                return -ENOMEM;
        for (int p = 0; p < s->n_parts; p++) {
                double *box = boxes + 6 * (size_t) p;
                size_t n = 3 * (size_t) (start[p + 1] - start[p]);
                if (n == 0) {
                        memcpy(box, s->aabb + 6 * (size_t) p, sizeof(double) * 6);
                        continue;
                }
                for (int c = 0; c < 3; c++) {
                        size_t k = 0;
                        for (int64_t x = start[p]; x < start[p + 1]; x++)
                                for (int corner = 0; corner < 3; corner++) {
                                        int32_t vi = s->mesh->f[3 * (int64_t) order[x] + corner];
                                        v[k++] = (float) s->mesh->v[3 * (int64_t) vi + c];
                                }
                        trimmed_range(v, n, scratch, &box[c], &box[3 + c]);
                }
        }
        return 0;
}
