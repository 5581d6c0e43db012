/* SPDX-License-Identifier: MIT */
/* The point half of the post-processing (PIPELINE.md §7–§11): pick one mask per prompt, sort
 * by predicted IoU, NMS, keep clusters with more than two members, merge overlapping boxes,
 * recover masks that cover unlabelled points, paint the point labels.
 *
 * Upstream spends 11 s of its 13.5 s in NMS on boolean arrays; here masks are 64-bit words and
 * an intersection is a popcount, with the areas counted once. Everything that decides a winner
 * (strict comparisons, float64 divisions, insertion orders) is as upstream computes it. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "postprocess.h"

/* Box volumes and IoUs must round like numpy's: no fused multiply-add. */
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

static const char *const stage_names[_P3_PP_STAGE_MAX] = {
        [P3_PP_SELECT] = "select",
        [P3_PP_NMS] = "nms",
        [P3_PP_BOX_MERGE] = "box-merge",
        [P3_PP_RECOVER_MASKS] = "recover",
        [P3_PP_POINT_LABELS] = "point-labels",
        [P3_PP_VOTE] = "vote",
        [P3_PP_FIX1] = "fix-label-1",
        [P3_PP_REGIONS] = "regions",
        [P3_PP_FIX2] = "fix-label-2",
        [P3_PP_RELABEL] = "relabel",
        [P3_PP_NEIGHBOURS] = "neighbours",
        [P3_PP_MERGE_UNLABELLED] = "merge-unlabelled",
        [P3_PP_POST_PROCESS] = "post-process",
        [P3_PP_AABB] = "aabb",
        [P3_PP_DONE] = "done",
};

const char *p3_pp_stage_name(p3_pp_stage s) {
        return s >= 0 && s < _P3_PP_STAGE_MAX ? stage_names[s] : "?";
}

/* ---- masks as words ---- */

int p3_pp_masks_new(p3_pp_masks *m, int k, int64_t n) {
        int64_t words = DIV_ROUND_UP(n, 64);
        *m = (p3_pp_masks) { .k = k, .n = n, .words = words };
        m->bits = calloc((size_t) k * words + 1, sizeof(uint64_t));
        m->area = calloc((size_t) k + 1, sizeof(int64_t));
        if (!m->bits || !m->area) {
                p3_pp_masks_done(m);
                return -ENOMEM;
        }
        return 0;
}

void p3_pp_masks_done(p3_pp_masks *m) {
        free(m->bits);
        free(m->area);
        *m = (p3_pp_masks) {};
}

void p3_pp_masks_set(p3_pp_masks *m, int i, const uint8_t *bytes) {
        uint64_t *w = m->bits + (size_t) i * m->words;
        int64_t nbytes = DIV_ROUND_UP(m->n, 8), area = 0;

        memset(w, 0, sizeof(uint64_t) * m->words);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* Byte b is already bits 8b..8b+7 of the little-endian word sequence. */
        memcpy(w, bytes, nbytes);
#else
        for (int64_t b = 0; b < nbytes; b++)
                w[b >> 3] |= (uint64_t) bytes[b] << (8 * (b & 7));
#endif
        /* Padding bits of the last byte are not points. */
        if (m->n % 64)
                w[m->words - 1] &= (UINT64_C(1) << (m->n % 64)) - 1;
        for (int64_t j = 0; j < m->words; j++)
                area += __builtin_popcountll(w[j]);
        m->area[i] = area;
}

static const uint64_t *row(const p3_pp_masks *m, int64_t i) {
        return m->bits + (size_t) i * m->words;
}

static int64_t count_and(const uint64_t *a, const uint64_t *b, int64_t words) {
        int64_t c = 0;
        for (int64_t j = 0; j < words; j++)
                c += __builtin_popcountll(a[j] & b[j]);
        return c;
}

static int64_t count_andnot(const uint64_t *a, const uint64_t *b, int64_t words) {
        int64_t c = 0;
        for (int64_t j = 0; j < words; j++)
                c += __builtin_popcountll(a[j] & ~b[j]);
        return c;
}

/* ---- selection and order ---- */

void p3_pp_select(const float *iou, int k, int64_t *max_idx) {
        for (int p = 0; p < k; p++) {
                const float *r = iou + 3 * p;
                int best = 0;
                for (int c = 1; c < 3; c++)
                        if (!isnan(r[best]) && (r[c] > r[best] || isnan(r[c])))
                                best = c;
                max_idx[p] = best;
        }
}

typedef struct keyed {
        double key;
        int64_t idx;
} keyed;

/* Descending, equal keys by position: the order a stable sort with reverse=True gives. */
static int cmp_desc(const void *a, const void *b) {
        const keyed *x = a, *y = b;
        bool xn = isnan(x->key), yn = isnan(y->key);

        if (xn != yn)
                return xn ? 1 : -1;
        if (!xn && x->key != y->key)
                return x->key > y->key ? -1 : 1;
        return (x->idx > y->idx) - (x->idx < y->idx);
}

int p3_pp_sort_desc(const double *key, int64_t n, int64_t *order) {
        _cleanup_free_ keyed *t = malloc(sizeof(keyed) * (n + 1));
        if (!t)
                return -ENOMEM;
        for (int64_t i = 0; i < n; i++)
                t[i] = (keyed) { key[i], i };
        qsort(t, n, sizeof(keyed), cmp_desc);
        for (int64_t i = 0; i < n; i++)
                order[i] = t[i].idx;
        return 0;
}

/* ---- NMS ---- */

double p3_pp_mask_iou(const p3_pp_masks *m, int64_t a, int64_t b) {
        int64_t inter = count_and(row(m, a), row(m, b), m->words);
        int64_t uni = m->area[a] + m->area[b] - inter;
        return (double) inter / (double) uni;
}

/* IoU > 0.9 needs the smaller area above 0.9 of the larger (inter <= smaller, union >= larger,
 * and division rounds monotonically), so most pairs need no popcount at all. */
static bool nms_match(const p3_pp_masks *m, int64_t a, int64_t b) {
        int64_t lo = MIN(m->area[a], m->area[b]), hi = MAX(m->area[a], m->area[b]);
        if (!((double) lo / (double) hi > P3_PP_NMS_IOU))
                return false;
        return p3_pp_mask_iou(m, a, b) > P3_PP_NMS_IOU;
}

int64_t p3_pp_nms(const p3_pp_masks *m, int64_t *keys, int64_t *assign) {
        int64_t nk = 0;

        for (int64_t i = 0; i < m->k; i++) {
                int64_t c = 0;
                while (c < nk && !nms_match(m, i, keys[c]))
                        c++;
                if (c == nk)
                        keys[nk++] = i;
                assign[i] = c;
        }
        return nk;
}

/* iou_3d(box1, box2) of auto_mask.py, operation by operation. */
double p3_pp_box_iou(const double b1[6], const double b2[6]) {
        double lo[3], hi[3];

        for (int a = 0; a < 3; a++) {
                lo[a] = MAX(b1[a], b2[a]);
                hi[a] = MIN(b1[3 + a], b2[3 + a]);
        }
        if (lo[0] >= hi[0] || lo[1] >= hi[1] || lo[2] >= hi[2])
                return 0.0;
        double inter = (hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2]);
        double v1 = (b1[3] - b1[0]) * (b1[4] - b1[1]) * (b1[5] - b1[2]);
        double v2 = (b2[3] - b2[0]) * (b2[4] - b2[1]) * (b2[5] - b2[2]);
        double uni = v1 + v2 - inter;
        return uni > 0 ? inter / uni : 0.0;
}

/* ---- the point stage ---- */

typedef struct point_ctx {
        const p3_pp_input *in;
        const p3_pp_hooks *h;
        int k;
        int64_t *max_idx, *order; /* [k] */
        p3_pp_masks m;            /* the selected masks in IoU order */
        int64_t n_clusters;
        int64_t *keys, *assign;   /* NMS: [k] each */
        int64_t n_c2;             /* cluster2: keys, CSR of members */
        int64_t *c2_keys, *c2_off, *c2_members;
        uint64_t *covered;        /* [words]: 1 - no_mask */
} point_ctx;

static void point_ctx_done(point_ctx *c) {
        free(c->max_idx);
        free(c->order);
        p3_pp_masks_done(&c->m);
        free(c->keys);
        free(c->assign);
        free(c->c2_keys);
        free(c->c2_off);
        free(c->c2_members);
        free(c->covered);
}

static int point_ctx_init(point_ctx *c, const p3_pp_input *in, const p3_pp_hooks *h) {
        size_t k = in->k;
        *c = (point_ctx) { .in = in, .h = h, .k = in->k };
        c->max_idx = malloc(sizeof(int64_t) * k);
        c->order = malloc(sizeof(int64_t) * k);
        c->keys = malloc(sizeof(int64_t) * k);
        c->assign = malloc(sizeof(int64_t) * k);
        c->c2_keys = malloc(sizeof(int64_t) * k);
        c->c2_off = calloc(k + 1, sizeof(int64_t));
        c->c2_members = malloc(sizeof(int64_t) * k);
        c->covered = calloc(DIV_ROUND_UP(in->n, 64) + 1, sizeof(uint64_t));
        if (!c->max_idx || !c->order || !c->keys || !c->assign || !c->c2_keys || !c->c2_off ||
            !c->c2_members || !c->covered)
                return -ENOMEM;
        return p3_pp_masks_new(&c->m, in->k, in->n);
}

static const uint8_t *input_mask(const point_ctx *c, int64_t prompt) {
        size_t nbytes = DIV_ROUND_UP(c->in->n, 8);
        return c->in->mask_bits[c->max_idx[prompt]] + (size_t) prompt * nbytes;
}

static int trace_selection(const point_ctx *c, const double *iou) {
        const p3_pp_hooks *h = c->h;
        int64_t k = c->k, nbytes = DIV_ROUND_UP(c->in->n, 8);
        _cleanup_free_ uint8_t *res = malloc((size_t) k * nbytes + 1);
        _cleanup_free_ double *sorted = malloc(sizeof(double) * (k + 1));
        if (!res || !sorted)
                return -ENOMEM;
        for (int64_t p = 0; p < k; p++)
                memcpy(res + p * nbytes, input_mask(c, p), nbytes);
        for (int64_t i = 0; i < k; i++)
                sorted[i] = iou[c->order[i]];
        p3_pp_trace_i64(h, "max_idx", c->max_idx, k);
        p3_pp_trace(h, "mask_res_bits", P3_PP_U8, 2, (int64_t[]) { k, nbytes }, res);
        p3_pp_trace_f64(h, "iou_res", iou, k);
        p3_pp_trace_i64(h, "sort_order", c->order, k);
        p3_pp_trace_f64(h, "iou_sorted", sorted, k);
        return 0;
}

/* §7–§8: the best of the three masks per prompt, then all prompts by that IoU, descending. */
static int select_and_sort(point_ctx *c) {
        _cleanup_free_ double *iou = malloc(sizeof(double) * (c->k + 1));
        if (!iou)
                return -ENOMEM;
        p3_pp_select(c->in->pred_iou, c->k, c->max_idx);
        for (int p = 0; p < c->k; p++)
                iou[p] = c->in->pred_iou[3 * p + c->max_idx[p]];
        int r = p3_pp_sort_desc(iou, c->k, c->order);
        if (r < 0)
                return r;
        for (int i = 0; i < c->k; i++)
                p3_pp_masks_set(&c->m, i, input_mask(c, c->order[i]));
        return p3_pp_tracing(c->h) ? trace_selection(c, iou) : 0;
}

static int trace_nms(const point_ctx *c) {
        int64_t k = c->k, nc = c->n_clusters;
        _cleanup_free_ int64_t *off = calloc(nc + 1, sizeof(int64_t));
        _cleanup_free_ int64_t *members = malloc(sizeof(int64_t) * (k + 1));
        _cleanup_free_ int64_t *key_of = malloc(sizeof(int64_t) * (k + 1));
        _cleanup_free_ double *iou = malloc(sizeof(double) * (k * nc + 1));
        if (!off || !members || !key_of || !iou)
                return -ENOMEM;
        for (int64_t i = 0; i < k; i++)
                off[c->assign[i] + 1]++;
        for (int64_t j = 0; j < nc; j++)
                off[j + 1] += off[j];
        for (int64_t i = 0, n = 0; i < nc; i++)
                for (int64_t j = 0; j < k; j++)
                        if (c->assign[j] == i)
                                members[n++] = j;
        for (int64_t i = 0; i < k; i++) {
                key_of[i] = c->keys[c->assign[i]];
                for (int64_t j = 0; j < nc; j++)
                        iou[i * nc + j] = p3_pp_mask_iou(&c->m, i, c->keys[j]);
        }
        p3_pp_trace_i64(c->h, "nms_cluster_keys", c->keys, nc);
        p3_pp_trace_csr(c->h, "nms_cluster_offsets", "nms_cluster_members", off, nc, members);
        p3_pp_trace_i64(c->h, "nms_assign", key_of, k);
        p3_pp_trace(c->h, "nms_iou_vs_keys", P3_PP_F64, 2, (int64_t[]) { k, nc }, iou);
        return 0;
}

static int nms(point_ctx *c) {
        c->n_clusters = p3_pp_nms(&c->m, c->keys, c->assign);
        return p3_pp_tracing(c->h) ? trace_nms(c) : 0;
}

/* Bounding box [min xyz, max xyz] of the points under mask i (non-empty). */
static void mask_box(const point_ctx *c, int64_t i, double box[6]) {
        const uint64_t *w = row(&c->m, i);
        const double *pts = c->in->points;

        for (int a = 0; a < 3; a++) {
                box[a] = INFINITY;
                box[3 + a] = -INFINITY;
        }
        for (int64_t j = 0; j < c->m.words; j++)
                for (uint64_t x = w[j]; x; x &= x - 1) {
                        const double *p = pts + 3 * (64 * j + __builtin_ctzll(x));
                        for (int a = 0; a < 3; a++) {
                                box[a] = MIN(box[a], p[a]);
                                box[3 + a] = MAX(box[3 + a], p[a]);
                        }
                }
}

/* Keys of clusters with more than two members, in key order; the others go to `other`. */
static int64_t filter_clusters(const point_ctx *c, int64_t *kept, int64_t *other,
                               int64_t *n_other) {
        _cleanup_free_ int64_t *count = calloc(c->n_clusters + 1, sizeof(int64_t));
        int64_t nk = 0;
        if (!count)
                return -ENOMEM;
        *n_other = 0;
        for (int64_t i = 0; i < c->k; i++)
                count[c->assign[i]]++;
        for (int64_t j = 0; j < c->n_clusters; j++) {
                if (count[j] >= P3_PP_MIN_MEMBERS)
                        kept[nk++] = c->keys[j];
                else
                        other[(*n_other)++] = c->keys[j];
        }
        return nk;
}

/* Greedy: each key not yet absorbed opens a cluster2 entry and absorbs every later one whose
 * box IoU with it is > 0.5. calls (may be NULL) receives every IoU computed, in call order. */
static int64_t merge_boxes(point_ctx *c, const int64_t *kept, int64_t nk, const double *box,
                           double *calls) {
        _cleanup_free_ bool *absorbed = calloc(nk + 1, sizeof(bool));
        int64_t ncalls = 0, nm = 0;
        if (!absorbed)
                return -ENOMEM;
        c->n_c2 = 0;
        for (int64_t i = 0; i < nk; i++) {
                if (absorbed[i])
                        continue;
                c->c2_keys[c->n_c2] = kept[i];
                c->c2_members[nm++] = kept[i];
                for (int64_t j = i + 1; j < nk; j++) {
                        if (absorbed[j])
                                continue;
                        double v = p3_pp_box_iou(box + 6 * j, box + 6 * i);
                        if (calls)
                                calls[ncalls] = v;
                        ncalls++;
                        if (v > P3_PP_BOX_IOU) {
                                c->c2_members[nm++] = kept[j];
                                absorbed[j] = true;
                        }
                }
                c->c2_off[++c->n_c2] = nm;
        }
        return ncalls;
}

static int box_merge(point_ctx *c) {
        int64_t k = c->k, n_other;
        _cleanup_free_ int64_t *kept = malloc(sizeof(int64_t) * (k + 1));
        _cleanup_free_ int64_t *other = malloc(sizeof(int64_t) * (k + 1));
        _cleanup_free_ double *box = NULL, *calls = NULL;
        if (!kept || !other)
                return -ENOMEM;
        int64_t nk = filter_clusters(c, kept, other, &n_other);
        if (nk < 0)
                return (int) nk;
        box = malloc(sizeof(double) * (6 * nk + 1));
        if (p3_pp_tracing(c->h))
                calls = malloc(sizeof(double) * (nk * nk / 2 + 1));
        if (!box || (p3_pp_tracing(c->h) && !calls))
                return -ENOMEM;
        for (int64_t i = 0; i < nk; i++)
                mask_box(c, kept[i], box + 6 * i);
        int64_t ncalls = merge_boxes(c, kept, nk, box, calls);
        if (ncalls < 0)
                return (int) ncalls;
        p3_pp_trace_i64(c->h, "filtered_clusters", kept, nk);
        p3_pp_trace_i64(c->h, "other_clusters", other, n_other);
        p3_pp_trace_i64(c->h, "cluster2_merge_keys", c->c2_keys, c->n_c2);
        p3_pp_trace_csr(c->h, "cluster2_merge_offsets", "cluster2_merge_members", c->c2_off,
                        c->n_c2, c->c2_members);
        p3_pp_trace_f64(c->h, "bbox_iou_calls", calls, ncalls);
        return 0;
}

static void cover(point_ctx *c, int64_t i) {
        const uint64_t *w = row(&c->m, i);
        for (int64_t j = 0; j < c->m.words; j++)
                c->covered[j] |= w[j];
}

static int trace_no_mask(const point_ctx *c, const char *name) {
        _cleanup_free_ double *no_mask = malloc(sizeof(double) * (c->in->n + 1));
        if (!no_mask)
                return -ENOMEM;
        for (int64_t p = 0; p < c->in->n; p++)
                no_mask[p] = (c->covered[p >> 6] >> (p & 63)) & 1 ? 0.0 : 1.0;
        p3_pp_trace_f64(c->h, name, no_mask, c->in->n);
        return 0;
}

/* §10: every mask that is not a cluster2 key and lies for more than 70 % on points no key covers
 * becomes a key itself, covering its points at once (later masks see them covered). */
static int recover(point_ctx *c) {
        _cleanup_free_ bool *is_key = calloc(c->k + 1, sizeof(bool));
        _cleanup_free_ int64_t *recovered = malloc(sizeof(int64_t) * (c->k + 1));
        int64_t nr = 0;
        int r = 0;
        if (!is_key || !recovered)
                return -ENOMEM;
        for (int64_t j = 0; j < c->n_c2; j++) {
                is_key[c->c2_keys[j]] = true;
                cover(c, c->c2_keys[j]);
        }
        if (p3_pp_tracing(c->h))
                r = trace_no_mask(c, "no_mask_before_recovery");
        for (int64_t i = 0; r >= 0 && i < c->k; i++) {
                if (is_key[i])
                        continue;
                int64_t free_pts = count_andnot(row(&c->m, i), c->covered, c->m.words);
                if (!((double) free_pts / (double) c->m.area[i] > P3_PP_RECOVER))
                        continue;
                c->c2_keys[c->n_c2] = i;
                c->c2_members[c->c2_off[c->n_c2]] = i;
                c->c2_off[c->n_c2 + 1] = c->c2_off[c->n_c2] + 1;
                c->n_c2++;
                recovered[nr++] = i;
                cover(c, i);
        }
        if (r < 0 || !p3_pp_tracing(c->h))
                return r;
        p3_pp_trace_i64(c->h, "cluster2_keys", c->c2_keys, c->n_c2);
        p3_pp_trace_csr(c->h, "cluster2_offsets", "cluster2_members", c->c2_off, c->n_c2,
                        c->c2_members);
        p3_pp_trace_i64(c->h, "recovered_masks", recovered, nr);
        return trace_no_mask(c, "no_mask_after_recovery");
}

/* §11: keys by area, largest first (stable), painted in that order so smaller masks win. */
static int paint(point_ctx *c, p3_pp_points *ret) {
        int64_t nk = c->n_c2;
        _cleanup_free_ double *area = malloc(sizeof(double) * (nk + 1));
        _cleanup_free_ int64_t *order = malloc(sizeof(int64_t) * (nk + 1));
        _cleanup_free_ int64_t *area_sorted = malloc(sizeof(int64_t) * (nk + 1));
        ret->n = c->in->n;
        ret->n_final = nk;
        ret->label = malloc(sizeof(int64_t) * (c->in->n + 1));
        ret->final_order = malloc(sizeof(int64_t) * (nk + 1));
        if (!area || !order || !area_sorted || !ret->label || !ret->final_order)
                return -ENOMEM;
        for (int64_t j = 0; j < nk; j++)
                area[j] = (double) c->m.area[c->c2_keys[j]];
        int r = p3_pp_sort_desc(area, nk, order);
        if (r < 0)
                return r;
        for (int64_t p = 0; p < c->in->n; p++)
                ret->label[p] = -1;
        for (int64_t j = 0; j < nk; j++) {
                int64_t key = c->c2_keys[order[j]];
                const uint64_t *w = row(&c->m, key);
                ret->final_order[j] = key;
                area_sorted[j] = c->m.area[key];
                for (int64_t x = 0; x < c->m.words; x++)
                        for (uint64_t b = w[x]; b; b &= b - 1)
                                ret->label[64 * x + __builtin_ctzll(b)] = key;
        }
        p3_pp_trace_i64(c->h, "final_mask_sorted", ret->final_order, nk);
        p3_pp_trace_i64(c->h, "final_mask_area_sorted", area_sorted, nk);
        p3_pp_trace_i64(c->h, "result_mask", ret->label, c->in->n);
        return 0;
}

static int check_input(const p3_pp_input *in, p3_err *err) {
        if (in->k < 1 || in->n < 1 || !in->points || !in->pred_iou)
                return p3_errf(err, -EINVAL, "post-processing needs at least one point and prompt");
        for (int i = 0; i < 3; i++)
                if (!in->mask_bits[i])
                        return p3_errf(err, -EINVAL, "post-processing needs all three masks");
        return 0;
}

int p3_pp_point_labels(const p3_pp_input *in, const p3_pp_hooks *h, p3_pp_points *ret,
                       p3_err *err) {
        static int (*const stages[])(point_ctx *) = { select_and_sort, nms, box_merge, recover };
        _cleanup_(point_ctx_done) point_ctx c = {};
        _cleanup_(p3_pp_points_done) p3_pp_points out = {};
        int r = check_input(in, err);
        if (r < 0)
                return r;
        if (point_ctx_init(&c, in, h) < 0)
                return p3_errf(err, -ENOMEM, "out of memory for %d masks of %lld points", in->k,
                               (long long) in->n);
        for (size_t s = 0; s < ELEMENTSOF(stages); s++) {
                r = p3_pp_enter(h, P3_PP_SELECT + s, err);
                if (r < 0)
                        return r;
                r = stages[s](&c);
                if (r < 0)
                        return p3_errf(err, r, "mask stage %s failed: %s",
                                       p3_pp_stage_name(P3_PP_SELECT + s), p3_strerror(r));
        }
        r = p3_pp_enter(h, P3_PP_POINT_LABELS, err);
        if (r < 0)
                return r;
        r = paint(&c, &out);
        if (r < 0)
                return p3_errf(err, r, "painting the point labels failed: %s", p3_strerror(r));
        *ret = out;
        out = (p3_pp_points) {};
        return 0;
}

void p3_pp_points_done(p3_pp_points *p) {
        free(p->label);
        free(p->final_order);
        *p = (p3_pp_points) {};
}
