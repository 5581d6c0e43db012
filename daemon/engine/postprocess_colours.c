/* SPDX-License-Identifier: MIT */
/* The part colours of upstream's run (auto_mask.py color_map / color_map_2): drawn from
 * NumPy's global MT19937 after the FPS start, so that a part painted by p3samd has the colour
 * upstream's files give it. Only colours: no label depends on these draws. */
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "postprocess.h"

/* np.random.rand(3) * 255 stored into a uint8 array: truncation towards zero. */
static void draw(p3_mt19937 *g, uint8_t rgb[3]) {
        for (int c = 0; c < 3; c++)
                rgb[c] = (uint8_t) (p3_mt_double(g) * 255.0);
}

/* Where label sits in labels[0..n) (ascending), or -1. */
static int64_t find(const int64_t *labels, int64_t n, int64_t label) {
        int64_t lo = 0, hi = n;
        while (lo < hi) {
                int64_t mid = lo + (hi - lo) / 2;
                if (labels[mid] < label)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < n && labels[lo] == label ? lo : -1;
}

void p3_pp_colours(const p3_mt19937 *rng, const int64_t *final_order, int64_t n_final,
                   int64_t new_first, int64_t new_end, const int64_t *labels, int64_t n,
                   uint8_t *rgb) {
        p3_mt19937 g = *rng;
        uint8_t c[3];

        for (int64_t i = 0; i < n; i++)
                p3_part_colour((int32_t) labels[i], rgb + 3 * i);
        /* every draw is made, whether its mask still owns a face or not: the later ones
         * depend on how many came before */
        for (int64_t j = 0; j < n_final; j++) {
                draw(&g, c);
                int64_t at = find(labels, n, final_order[j]);
                if (at >= 0)
                        memcpy(rgb + 3 * at, c, 3);
        }
        for (int64_t id = new_first; id < new_end; id++) {
                draw(&g, c);
                int64_t at = find(labels, n, id);
                if (at >= 0)
                        memcpy(rgb + 3 * at, c, 3);
        }
}
