/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "macro.h"
#include "numpy-compat.h"

#define NP_BUFSIZE 8192 /* numpy's default ufunc buffer size */

NO_FP_CONTRACT static double pairwise_sum(const double *a, int64_t n) {
        if (n < 8) {
                double s = 0.;
                for (int64_t i = 0; i < n; i++)
                        s += a[i];
                return s;
        }
        if (n <= 128) {
                double r[8];
                int64_t i;
                memcpy(r, a, sizeof(r));
                for (i = 8; i < n - n % 8; i += 8)
                        for (int j = 0; j < 8; j++)
                                r[j] += a[i + j];
                double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
                for (; i < n; i++)
                        s += a[i];
                return s;
        }
        int64_t n2 = n / 2;
        n2 -= n2 % 8;
        return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

/* The reduction hands the loop at most one buffer (8192 elements) at a time and adds the
 * pairwise sums of the blocks one after the other. */
double p3_np_sum(const double *a, int64_t n) {
        double s = 0.;
        for (int64_t i = 0; i < n; i += NP_BUFSIZE)
                s += pairwise_sum(a + i, MIN(NP_BUFSIZE, n - i));
        return s;
}
