/* SPDX-License-Identifier: MIT */
/* The mesh half of the post-processing (PIPELINE.md §12–§17): point labels vote for faces,
 * fix_label fills unsampled faces, tiny regions are dropped and refilled, large unlabelled
 * regions get new ids, the remaining ones join the neighbour whose box grows least, optionally
 * do_post_process folds small trailing parts into big neighbours, and each part gets a box.
 *
 * Areas are summed as np.sum does (pairwise, in BFS order) and neighbour lists come out in
 * CPython's set order, because both decide ties and thresholds upstream. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "postprocess.h"
#include "pyset.h"

/* Box growth and distances must round like numpy's: no fused multiply-add. */
#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif

static bool unlabelled(int64_t id) {
        return id == -1 || id == -2;
}

/* ---- numeric helpers ---- */


int64_t p3_pp_mode(const int64_t *v, int64_t n) {
        int64_t best = v[0], best_count = 0;

        for (int64_t i = 0; i < n; i++) {
                int64_t c = 0;
                for (int64_t j = 0; j < n; j++)
                        c += v[j] == v[i];
                if (c > best_count || (c == best_count && v[i] < best)) {
                        best = v[i];
                        best_count = c;
                }
        }
        return best;
}

/* ---- fix_label and regions ---- */

static const int32_t *nbr_row(const p3_adjacency *adj, int64_t f) {
        return f < adj->rows ? adj->nbr + f * adj->deg : NULL;
}

/* Labels >= 0 of the neighbours of f, in row order. */
static int64_t labelled_neighbours(const int64_t *ids, const p3_adjacency *adj, int64_t f,
                                   int64_t *out) {
        const int32_t *row = nbr_row(adj, f);
        int64_t n = 0;

        for (int j = 0; row && j < adj->deg && row[j] >= 0; j++)
                if (ids[row[j]] >= 0)
                        out[n++] = ids[row[j]];
        return n;
}

int64_t p3_pp_fix_label(int64_t *ids, int64_t nf, const p3_adjacency *adj) {
        _cleanup_free_ int64_t *todo = malloc(sizeof(int64_t) * (nf + 1));
        _cleanup_free_ int64_t *lab = malloc(sizeof(int64_t) * (adj->deg + 1));
        int64_t n = 0, loop_cnt = 1;
        bool changed = true;
        if (!todo || !lab)
                return -ENOMEM;

        for (int64_t f = 0; f < nf; f++)
                if (ids[f] < 0)
                        todo[n++] = f;
        /* Gauss–Seidel: a face filled earlier in a sweep already counts for later ones. Faces
         * without a row leave the list for good, as upstream's `continue` drops them. */
        while (changed && loop_cnt <= P3_PP_FIX_PASSES) {
                int64_t kept = 0;
                changed = false;
                for (int64_t t = 0; t < n; t++) {
                        int64_t f = todo[t];
                        if (f >= adj->rows)
                                continue;
                        int64_t nl = labelled_neighbours(ids, adj, f, lab);
                        if (nl == 0) {
                                todo[kept++] = f;
                                continue;
                        }
                        ids[f] = p3_pp_mode(lab, nl);
                        changed = true;
                }
                n = kept;
                loop_cnt++;
        }
        return loop_cnt;
}

/* The faces array doubles as the BFS queue. Marking a face when it is queued (upstream marks
 * it when popped and skips duplicates) visits faces in the same order: a duplicate is always
 * behind the first copy. */
int p3_pp_regions_build(const int64_t *ids, int64_t nf, const p3_adjacency *adj,
                        p3_pp_regions *ret) {
        p3_pp_regions r = { .offsets = malloc(sizeof(int64_t) * (nf + 2)),
                            .faces = malloc(sizeof(int64_t) * (nf + 1)),
                            .of_face = malloc(sizeof(int64_t) * (nf + 1)) };
        if (!r.offsets || !r.faces || !r.of_face) {
                p3_pp_regions_done(&r);
                return -ENOMEM;
        }
        for (int64_t f = 0; f < nf; f++)
                r.of_face[f] = -1;
        int64_t tail = 0;
        for (int64_t s = 0; s < nf; s++) {
                if (r.of_face[s] >= 0)
                        continue;
                r.offsets[r.n] = tail;
                r.of_face[s] = r.n;
                r.faces[tail++] = s;
                for (int64_t head = r.offsets[r.n]; head < tail; head++) {
                        int64_t f = r.faces[head];
                        const int32_t *row = nbr_row(adj, f);
                        for (int j = 0; row && j < adj->deg && row[j] >= 0; j++) {
                                int64_t g = row[j];
                                if (r.of_face[g] >= 0 || (ids && ids[g] != ids[f]))
                                        continue;
                                r.of_face[g] = r.n;
                                r.faces[tail++] = g;
                        }
                }
                r.n++;
        }
        r.offsets[r.n] = tail;
        *ret = r;
        return 0;
}

void p3_pp_regions_done(p3_pp_regions *r) {
        free(r->offsets);
        free(r->faces);
        free(r->of_face);
        *r = (p3_pp_regions) {};
}

/* np.sum(face_areas[region]) in BFS order; scratch holds the region's size. */
static double region_area(const p3_pp_regions *r, int64_t i, const double *area, double *scratch) {
        int64_t n = 0;
        for (int64_t x = r->offsets[i]; x < r->offsets[i + 1]; x++)
                scratch[n++] = area[r->faces[x]];
        return p3_np_sum(scratch, n);
}

static int region_areas(const p3_pp_regions *r, const double *area, int64_t nf, double **ret) {
        _cleanup_free_ double *scratch = malloc(sizeof(double) * (nf + 1));
        double *a = malloc(sizeof(double) * (r->n + 1));
        if (!scratch || !a) {
                free(a);
                return -ENOMEM;
        }
        for (int64_t i = 0; i < r->n; i++)
                a[i] = region_area(r, i, area, scratch);
        *ret = a;
        return 0;
}

/* ---- boxes ---- */

static void box_empty(double *b) {
        for (int a = 0; a < 3; a++) {
                b[a] = INFINITY;
                b[3 + a] = -INFINITY;
        }
}

static void box_add_face(double *b, const p3_mesh *m, int64_t f) {
        for (int k = 0; k < 3; k++) {
                const double *v = m->v + 3 * (int64_t) m->f[3 * f + k];
                for (int a = 0; a < 3; a++) {
                        b[a] = MIN(b[a], v[a]);
                        b[3 + a] = MAX(b[3 + a], v[a]);
                }
        }
}

/* Boxes of every label >= 0, ascending (np.unique order): labels [n], boxes [n][6]; by_label
 * (optional) maps a label to its index, -1 if absent, for labels up to the largest. */
typedef struct label_boxes {
        int64_t n, max_label;
        int64_t *labels, *by_label;
        double *boxes;
} label_boxes;

static void label_boxes_done(label_boxes *lb) {
        free(lb->labels);
        free(lb->by_label);
        free(lb->boxes);
        *lb = (label_boxes) {};
}

static int label_boxes_build(const p3_mesh *m, const int64_t *ids, label_boxes *lb) {
        int64_t top = -1;
        for (int64_t f = 0; f < m->nf; f++)
                top = MAX(top, ids[f]);
        _cleanup_free_ double *dense = malloc(sizeof(double) * 6 * (top + 2));
        *lb = (label_boxes) { .max_label = top };
        lb->by_label = malloc(sizeof(int64_t) * (top + 2));
        lb->labels = malloc(sizeof(int64_t) * (top + 2));
        lb->boxes = malloc(sizeof(double) * 6 * (top + 2));
        if (!dense || !lb->by_label || !lb->labels || !lb->boxes)
                return -ENOMEM;
        for (int64_t l = 0; l <= top; l++) {
                box_empty(dense + 6 * l);
                lb->by_label[l] = -1;
        }
        for (int64_t f = 0; f < m->nf; f++)
                if (ids[f] >= 0) {
                        box_add_face(dense + 6 * ids[f], m, f);
                        lb->by_label[ids[f]] = 0;
                }
        for (int64_t l = 0; l <= top; l++)
                if (lb->by_label[l] >= 0) {
                        lb->by_label[l] = lb->n;
                        lb->labels[lb->n] = l;
                        memcpy(lb->boxes + 6 * lb->n++, dense + 6 * l, sizeof(double) * 6);
                }
        return 0;
}

/* aabb_distance as released: per axis max(0, max2 - min1, max1 - min2), which is positive for
 * overlapping boxes too; 0 only when all three are 0. */
static double box_distance(const double *b1, const double *b2) {
        double d[3];
        for (int a = 0; a < 3; a++) {
                double x = b2[3 + a] - b1[a], y = b1[3 + a] - b2[a];
                d[a] = 0.0;
                if (x > d[a])
                        d[a] = x;
                if (y > d[a])
                        d[a] = y;
        }
        if (d[0] == 0 && d[1] == 0 && d[2] == 0)
                return 0.0;
        return sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]);
}

static double box_volume(const double *b) {
        return (b[3] - b[0]) * (b[4] - b[1]) * (b[5] - b[2]);
}

/* np.max of three values: NaN wins. */
static double np_max3(const double *v) {
        if (isnan(v[0]) || isnan(v[1]) || isnan(v[2]))
                return NAN;
        return MAX(MAX(v[0], v[1]), v[2]);
}

/* aabb_increase + max(np.max(min part), np.max(max part)): the largest relative move of a
 * face of the target box when the region's box joins it (divided by the raw coordinate). */
static double box_growth(const double *target, const double *region) {
        double lo[3], hi[3];
        for (int a = 0; a < 3; a++) {
                double mn = MIN(target[a], region[a]), mx = MAX(target[3 + a], region[3 + a]);
                lo[a] = fabs(mn - target[a]) / fabs(target[a]);
                hi[a] = fabs(mx - target[3 + a]) / fabs(target[3 + a]);
        }
        double a = np_max3(lo), b = np_max3(hi);
        return b > a ? b : a; /* Python's max(a, b) keeps a unless b > a */
}

/* ---- neighbours ---- */

/* The labelled region with the nearest box; ties to the smaller volume. -1 (Python's "last
 * region") when there is none. */
static int64_t nearest_box(const double *aabb, const int64_t *ids, int64_t n, int64_t i) {
        double min_dis = INFINITY;
        int64_t min_idx = -1;

        for (int64_t j = 0; j < n; j++) {
                if (j == i || unlabelled(ids[j]))
                        continue;
                double dis = box_distance(aabb + 6 * i, aabb + 6 * j);
                int64_t cur = min_idx < 0 ? n - 1 : min_idx; /* Python's [-1] */
                if (dis < min_dis) {
                        min_dis = dis;
                        min_idx = j;
                } else if (dis == min_dis && box_volume(aabb + 6 * j) < box_volume(aabb + 6 * cur))
                        min_idx = j;
        }
        return min_idx;
}

/* The set of regions next to region i, in list(set) order, appended to out. */
static int region_neighbours(const p3_pp_regions *r, const p3_adjacency *adj, const int64_t *ids,
                             int64_t i, p3_pyset *set, int64_t *out, int64_t *n_out) {
        for (int64_t x = r->offsets[i]; x < r->offsets[i + 1]; x++) {
                const int32_t *row = nbr_row(adj, r->faces[x]);
                for (int j = 0; row && j < adj->deg && row[j] >= 0; j++) {
                        int64_t other = r->of_face[row[j]];
                        if (other == i || (ids && unlabelled(ids[other])))
                                continue;
                        int k = p3_pyset_add(set, other);
                        if (k < 0) {
                                p3_pyset_done(set);
                                return k;
                        }
                }
        }
        *n_out = p3_pyset_list(set, out);
        p3_pyset_done(set);
        return 0;
}

int p3_pp_neighbours(const p3_pp_regions *r, const p3_adjacency *adj, const int64_t *ids,
                     const double *aabb, int64_t **ret_offsets, int64_t **ret_list) {
        int64_t nf = r->offsets[r->n];
        _cleanup_free_ int64_t *off = calloc(r->n + 1, sizeof(int64_t));
        _cleanup_free_ int64_t *list = malloc(sizeof(int64_t) * (nf * adj->deg + r->n + 1));
        p3_pyset set;
        if (!off || !list)
                return -ENOMEM;
        p3_pyset_init(&set);
        for (int64_t i = 0; i < r->n; i++) {
                int64_t n;
                int k = region_neighbours(r, adj, ids, i, &set, list + off[i], &n);
                if (k < 0)
                        return k;
                if (ids && aabb && unlabelled(ids[i]) && n == 0)
                        list[off[i] + n++] = nearest_box(aabb, ids, r->n, i);
                off[i + 1] = off[i] + n;
        }
        *ret_offsets = TAKE_PTR(off);
        *ret_list = TAKE_PTR(list);
        return 0;
}

/* ---- the face stage ---- */

typedef struct face_ctx {
        const p3_pp_input *in;
        const p3_pp_hooks *h;
        const p3_pp_points *pts;
        const p3_mesh *mesh;
        const p3_adjacency *adj;
        int64_t nf;
        double *area; /* [nf] face areas (a copy, or computed) */
        double total;
        int64_t *ids; /* [nf] the labels being worked on */
        int64_t *ids3;            /* face_ids_3 */
        p3_pp_regions parts2;     /* regions of face_ids_3 */
        int64_t *pid;             /* [parts2.n] parts_ids_2 */
        double *parts2_box;       /* [parts2.n][6] */
        label_boxes id_boxes;     /* ids_aabb */
        int64_t *nbr_off, *nbr;   /* neighbours of parts2 */
        int64_t new_first, new_end; /* the ids given to large unlabelled regions */
        p3_pp_result *res;
} face_ctx;

static void face_ctx_done(face_ctx *c) {
        free(c->area);
        free(c->ids);
        free(c->ids3);
        p3_pp_regions_done(&c->parts2);
        free(c->pid);
        free(c->parts2_box);
        label_boxes_done(&c->id_boxes);
        free(c->nbr_off);
        free(c->nbr);
}

static void trace_ids(const face_ctx *c, const char *name) {
        p3_pp_trace_i64(c->h, name, c->ids, c->nf);
}

static void trace_regions(const face_ctx *c, const char *off_name, const char *faces_name,
                          const p3_pp_regions *r) {
        p3_pp_trace_csr(c->h, off_name, faces_name, r->offsets, r->n, r->faces);
}

/* Labels of a face in upstream's append order: masks in painting order, then -1. */
static int trace_votes(const face_ctx *c, const int64_t *off) {
        const p3_pp_points *pts = c->pts;
        int64_t n = pts->n, nr = pts->n_final + 1;
        _cleanup_free_ int64_t *rank = malloc(sizeof(int64_t) * (c->in->k + 1));
        _cleanup_free_ int64_t *start = calloc(nr + 1, sizeof(int64_t));
        _cleanup_free_ int64_t *by_rank = malloc(sizeof(int64_t) * (n + 1));
        _cleanup_free_ int64_t *cur = malloc(sizeof(int64_t) * (c->nf + 1));
        _cleanup_free_ int64_t *labels = malloc(sizeof(int64_t) * (n + 1));
        if (!rank || !start || !by_rank || !cur || !labels)
                return -ENOMEM;
        for (int64_t j = 0; j < pts->n_final; j++)
                rank[pts->final_order[j]] = j;
        for (int64_t p = 0; p < n; p++)
                start[(pts->label[p] < 0 ? nr - 1 : rank[pts->label[p]]) + 1]++;
        for (int64_t j = 0; j < nr; j++)
                start[j + 1] += start[j];
        for (int64_t p = 0; p < n; p++)
                by_rank[start[pts->label[p] < 0 ? nr - 1 : rank[pts->label[p]]]++] = p;
        memcpy(cur, off, sizeof(int64_t) * c->nf);
        for (int64_t x = 0; x < n; x++) {
                int64_t p = by_rank[x];
                labels[cur[c->in->face_idx[p]]++] = pts->label[p];
        }
        p3_pp_trace_csr(c->h, "face_votes_offsets", "face_votes_labels", off, c->nf, labels);
        return 0;
}

/* The majority label among a face's points (count[label + 1]), ties to the smallest label. */
static int64_t face_majority(const int64_t *label, const int64_t *pts, int64_t n, int64_t *count) {
        int64_t best = -1, best_count = 0;
        for (int64_t x = 0; x < n; x++)
                count[label[pts[x]] + 1]++;
        for (int64_t x = 0; x < n; x++) {
                int64_t l = label[pts[x]];
                if (count[l + 1] > best_count || (count[l + 1] == best_count && l < best)) {
                        best = l;
                        best_count = count[l + 1];
                }
        }
        for (int64_t x = 0; x < n; x++)
                count[label[pts[x]] + 1] = 0;
        return best;
}

/* §12: argmax(bincount(labels + 2)) - 2 per sampled face, -2 for faces without a sample. */
static int vote(face_ctx *c) {
        const int64_t *label = c->pts->label;
        int64_t n = c->in->n;
        _cleanup_free_ int64_t *off = calloc(c->nf + 2, sizeof(int64_t));
        _cleanup_free_ int64_t *by_face = malloc(sizeof(int64_t) * (n + 1));
        _cleanup_free_ int64_t *count = calloc(c->in->k + 2, sizeof(int64_t));
        if (!off || !by_face || !count)
                return -ENOMEM;
        for (int64_t p = 0; p < n; p++)
                off[c->in->face_idx[p] + 2]++;
        for (int64_t f = 0; f < c->nf; f++)
                off[f + 2] += off[f + 1];
        for (int64_t p = 0; p < n; p++)
                by_face[off[c->in->face_idx[p] + 1]++] = p;
        for (int64_t f = 0; f < c->nf; f++) {
                int64_t np = off[f + 1] - off[f];
                c->ids[f] = np ? face_majority(label, by_face + off[f], np, count) : -2;
        }
        trace_ids(c, "face_ids_org");
        return p3_pp_tracing(c->h) ? trace_votes(c, off) : 0;
}

static int fix_traced(face_ctx *c, const char *loop_name, const char *left_name, int64_t below) {
        int64_t loop_cnt = p3_pp_fix_label(c->ids, c->nf, c->adj);
        if (loop_cnt < 0)
                return (int) loop_cnt;
        if (!p3_pp_tracing(c->h))
                return 0;
        _cleanup_free_ int64_t *left = malloc(sizeof(int64_t) * (c->nf + 1));
        int64_t nl = 0;
        if (!left)
                return -ENOMEM;
        for (int64_t f = 0; f < c->nf; f++)
                if (c->ids[f] < below)
                        left[nl++] = f;
        p3_pp_trace_i64(c->h, loop_name, &loop_cnt, 1);
        p3_pp_trace_i64(c->h, left_name, left, nl);
        return 0;
}

/* §13: shifted by one, so that "no mask" (-1 -> 0) is a label that spreads and only faces
 * without samples (-2 -> -1) are filled. */
static int fix1(face_ctx *c) {
        for (int64_t f = 0; f < c->nf; f++)
                c->ids[f]++;
        int r = fix_traced(c, "fix1_loop_cnt", "fix1_remaining_unlabeled", 0);
        for (int64_t f = 0; f < c->nf; f++)
                c->ids[f]--;
        trace_ids(c, "face_ids_fix1");
        return r;
}

static void trace_tiny(const face_ctx *c, const p3_pp_regions *parts, const p3_pp_regions *comps,
                       const int64_t *cp_idx, const double *pa, const double *ca,
                       const double *pca, const int64_t *order) {
        const p3_pp_hooks *h = c->h;
        int64_t n = parts->n;
        _cleanup_free_ double *pa_s = malloc(sizeof(double) * (n + 1));
        _cleanup_free_ double *pca_s = malloc(sizeof(double) * (n + 1));
        if (!pa_s || !pca_s)
                return;
        for (int64_t s = 0; s < n; s++) {
                pa_s[s] = pa[order[s]];
                pca_s[s] = pca[order[s]];
        }
        p3_pp_trace_f64(h, "face_areas", c->area, c->nf);
        p3_pp_trace_f64(h, "mesh_total_area", &c->total, 1);
        trace_regions(c, "parts_offsets", "parts_faces", parts);
        trace_regions(c, "connected_parts_offsets", "connected_parts_faces", comps);
        p3_pp_trace_i64(h, "face_connected_parts_ids", comps->of_face, c->nf);
        p3_pp_trace_i64(h, "parts_cp_idx", cp_idx, n);
        p3_pp_trace_f64(h, "parts_areas", pa, n);
        p3_pp_trace_f64(h, "connected_parts_areas", ca, comps->n);
        p3_pp_trace_f64(h, "parts_cp_areas", pca, n);
        p3_pp_trace_i64(h, "parts_sorted_order", order, n);
        p3_pp_trace_f64(h, "parts_areas_sorted", pa_s, n);
        p3_pp_trace_f64(h, "parts_cp_areas_sorted", pca_s, n);
}

/* Regions (largest first) whose area is at most 0.1 % of their connected component lose their
 * label; kept[] / dropped[] receive positions in that order. Returns the number kept. */
static int64_t drop_tiny(face_ctx *c, const p3_pp_regions *parts, const double *pa,
                         const double *pca, const int64_t *order, int64_t *kept, int64_t *dropped) {
        int64_t nk = 0, nd = 0;
        for (int64_t s = 0; s < parts->n; s++) {
                int64_t i = order[s];
                if (pa[i] / (pca[i] + 1e-7) > P3_PP_TINY_REGION) {
                        kept[nk++] = s;
                        continue;
                }
                dropped[nd++] = s;
                for (int64_t x = parts->offsets[i]; x < parts->offsets[i + 1]; x++)
                        c->ids[parts->faces[x]] = -1;
        }
        p3_pp_trace_i64(c->h, "filtered_parts", kept, nk);
        p3_pp_trace_i64(c->h, "other_parts", dropped, nd);
        return nk;
}

/* §14: regions of face_ids and the mesh's connected components, then drop_tiny. */
static int remove_tiny(face_ctx *c) {
        _cleanup_(p3_pp_regions_done) p3_pp_regions parts = {}, comps = {};
        _cleanup_free_ double *pa = NULL, *ca = NULL, *pca = NULL;
        _cleanup_free_ int64_t *cp_idx = NULL, *order = NULL, *kept = NULL, *dropped = NULL;
        int r = p3_pp_regions_build(c->ids, c->nf, c->adj, &parts);
        if (r >= 0)
                r = p3_pp_regions_build(NULL, c->nf, c->adj, &comps);
        if (r >= 0)
                r = region_areas(&parts, c->area, c->nf, &pa);
        if (r >= 0)
                r = region_areas(&comps, c->area, c->nf, &ca);
        if (r < 0)
                return r;
        int64_t n = parts.n;
        cp_idx = malloc(sizeof(int64_t) * (n + 1));
        pca = malloc(sizeof(double) * (n + 1));
        order = malloc(sizeof(int64_t) * (n + 1));
        kept = malloc(sizeof(int64_t) * (n + 1));
        dropped = malloc(sizeof(int64_t) * (n + 1));
        if (!cp_idx || !pca || !order || !kept || !dropped)
                return -ENOMEM;
        for (int64_t i = 0; i < n; i++) {
                cp_idx[i] = comps.of_face[parts.faces[parts.offsets[i]]];
                pca[i] = ca[cp_idx[i]];
        }
        r = p3_pp_sort_desc(pa, n, order);
        if (r < 0)
                return r;
        if (p3_pp_tracing(c->h))
                trace_tiny(c, &parts, &comps, cp_idx, pa, ca, pca, order);
        drop_tiny(c, &parts, pa, pca, order, kept, dropped);
        trace_ids(c, "face_ids_2");
        return 0;
}

/* §14 end: fill -1 and -2 alike from labelled neighbours. */
static int fix2(face_ctx *c) {
        int r = fix_traced(c, "fix2_loop_cnt", "fix2_remaining_unlabeled", 0);
        trace_ids(c, "face_ids_3");
        if (r < 0)
                return r;
        c->ids3 = malloc(sizeof(int64_t) * (c->nf + 1));
        if (!c->ids3)
                return -ENOMEM;
        memcpy(c->ids3, c->ids, sizeof(int64_t) * c->nf);
        return 0;
}

static void paint_regions(face_ctx *c) {
        for (int64_t i = 0; i < c->parts2.n; i++)
                for (int64_t x = c->parts2.offsets[i]; x < c->parts2.offsets[i + 1]; x++)
                        c->ids[c->parts2.faces[x]] = c->pid[i];
}

/* §15 first half: regions of face_ids_3; unlabelled ones above 0.1 % of the mesh get new ids. */
static int64_t new_ids(face_ctx *c, const double *area2) {
        int64_t max_id = INT64_MIN;
        for (int64_t i = 0; i < c->parts2.n; i++)
                max_id = MAX(max_id, c->pid[i]);
        c->new_first = max_id + 1;
        for (int64_t i = 0; i < c->parts2.n; i++)
                if (area2[i] / c->total > P3_PP_NEW_PART && unlabelled(c->pid[i]))
                        c->pid[i] = ++max_id;
        c->new_end = max_id + 1;
        return max_id;
}

static int region_boxes(face_ctx *c) {
        c->parts2_box = malloc(sizeof(double) * (6 * c->parts2.n + 1));
        if (!c->parts2_box)
                return -ENOMEM;
        for (int64_t i = 0; i < c->parts2.n; i++) {
                double *b = c->parts2_box + 6 * i;
                box_empty(b);
                for (int64_t x = c->parts2.offsets[i]; x < c->parts2.offsets[i + 1]; x++)
                        box_add_face(b, c->mesh, c->parts2.faces[x]);
        }
        return 0;
}

static int relabel(face_ctx *c) {
        _cleanup_free_ double *area2 = NULL;
        int r = p3_pp_regions_build(c->ids, c->nf, c->adj, &c->parts2);
        if (r >= 0)
                r = region_areas(&c->parts2, c->area, c->nf, &area2);
        if (r < 0)
                return r;
        int64_t n = c->parts2.n;
        c->pid = malloc(sizeof(int64_t) * (n + 1));
        if (!c->pid)
                return -ENOMEM;
        for (int64_t i = 0; i < n; i++)
                c->pid[i] = c->ids[c->parts2.faces[c->parts2.offsets[i]]];
        trace_regions(c, "parts_2_offsets", "parts_2_faces", &c->parts2);
        p3_pp_trace_f64(c->h, "parts_areas_2", area2, n);
        p3_pp_trace_i64(c->h, "parts_ids_2_initial", c->pid, n);
        int64_t max_id = new_ids(c, area2);
        p3_pp_trace_i64(c->h, "parts_ids_2_after_new", c->pid, n);
        p3_pp_trace_i64(c->h, "max_id_after_new", &max_id, 1);
        paint_regions(c);
        trace_ids(c, "face_ids_4_first");
        r = label_boxes_build(c->mesh, c->ids, &c->id_boxes);
        if (r >= 0)
                r = region_boxes(c);
        if (r < 0)
                return r;
        p3_pp_trace_i64(c->h, "ids_aabb_keys", c->id_boxes.labels, c->id_boxes.n);
        p3_pp_trace(c->h, "ids_aabb", P3_PP_F64, 3, (int64_t[]) { c->id_boxes.n, 2, 3 },
                    c->id_boxes.boxes);
        p3_pp_trace(c->h, "parts_2_aabb", P3_PP_F64, 3, (int64_t[]) { n, 2, 3 }, c->parts2_box);
        return 0;
}

static int neighbours(face_ctx *c) {
        int r = p3_pp_neighbours(&c->parts2, c->adj, c->pid, c->parts2_box, &c->nbr_off, &c->nbr);
        if (r < 0)
                return r;
        p3_pp_trace_csr(c->h, "parts_2_neighbor_offsets", "parts_2_neighbor", c->nbr_off,
                        c->parts2.n, c->nbr);
        return 0;
}

/* The id whose box grows least (strictly smaller than everything before, starting at 1e10)
 * when region i joins it, or -1. Ids are read as they are now: earlier merges count. */
static int64_t least_growth(const face_ctx *c, int64_t i) {
        double best = P3_PP_NO_GROWTH;
        int64_t best_id = -1, n = c->parts2.n;

        for (int64_t x = c->nbr_off[i]; x < c->nbr_off[i + 1]; x++) {
                int64_t j = c->nbr[x] < 0 ? n + c->nbr[x] : c->nbr[x]; /* Python's [-1] */
                if (j < 0 || unlabelled(c->pid[j]))
                        continue;
                int64_t id = c->pid[j];
                double g = box_growth(c->id_boxes.boxes + 6 * c->id_boxes.by_label[id],
                                      c->parts2_box + 6 * i);
                if (best > g) {
                        best = g;
                        best_id = id;
                }
        }
        return best_id;
}

static int merge_unlabelled(face_ctx *c) {
        for (int64_t i = 0; i < c->parts2.n; i++) {
                if (!unlabelled(c->pid[i]))
                        continue;
                int64_t id = least_growth(c, i);
                if (id >= 0)
                        c->pid[i] = id;
        }
        p3_pp_trace_i64(c->h, "parts_ids_2_final", c->pid, c->parts2.n);
        memcpy(c->ids, c->ids3, sizeof(int64_t) * c->nf);
        paint_regions(c);
        trace_ids(c, "face_ids_4");
        return 0;
}

/* do_no_mask_process: computed upstream and thrown away; traced for completeness only. */
static int trace_no_mask_process(const face_ctx *c, const p3_pp_regions *parts) {
        _cleanup_free_ int64_t *ids = malloc(sizeof(int64_t) * (c->nf + 1));
        int64_t max_id = INT64_MIN;
        if (!ids)
                return -ENOMEM;
        memcpy(ids, c->ids, sizeof(int64_t) * c->nf);
        for (int64_t f = 0; f < c->nf; f++)
                max_id = MAX(max_id, c->ids[f]);
        for (int64_t i = 0; i < parts->n; i++) {
                if (!unlabelled(c->ids[parts->faces[parts->offsets[i]]]))
                        continue;
                max_id++;
                for (int64_t x = parts->offsets[i]; x < parts->offsets[i + 1]; x++)
                        ids[parts->faces[x]] = max_id;
        }
        p3_pp_trace_i64(c->h, "pp_face_ids_no_mask_process", ids, c->nf);
        return 0;
}

/* The regions in the given order, renumbered. */
static int regions_reorder(const p3_pp_regions *r, const int64_t *order, p3_pp_regions *out) {
        int64_t nf = r->offsets[r->n];
        *out = (p3_pp_regions) { .n = r->n,
                                 .offsets = malloc(sizeof(int64_t) * (r->n + 1)),
                                 .faces = malloc(sizeof(int64_t) * (nf + 1)),
                                 .of_face = malloc(sizeof(int64_t) * (nf + 1)) };
        if (!out->offsets || !out->faces || !out->of_face)
                return -ENOMEM;
        out->offsets[0] = 0;
        for (int64_t s = 0; s < r->n; s++) {
                int64_t i = order[s], len = r->offsets[i + 1] - r->offsets[i];
                memcpy(out->faces + out->offsets[s], r->faces + r->offsets[i],
                       sizeof(int64_t) * len);
                out->offsets[s + 1] = out->offsets[s] + len;
                for (int64_t x = out->offsets[s]; x < out->offsets[s + 1]; x++)
                        out->of_face[out->faces[x]] = s;
        }
        return 0;
}

typedef struct pp_parts {
        p3_pp_regions sorted;
        double *frac, *cum;
        int64_t *nbr_off, *nbr;
} pp_parts;

static void pp_parts_done(pp_parts *p) {
        p3_pp_regions_done(&p->sorted);
        free(p->frac);
        free(p->cum);
        free(p->nbr_off);
        free(p->nbr);
}

/* do_post_process's preparation: area fractions, stable sort, cumulative sum, neighbours. */
static int pp_prepare(face_ctx *c, const p3_pp_regions *parts, pp_parts *p) {
        _cleanup_free_ double *area = NULL;
        _cleanup_free_ int64_t *order = malloc(sizeof(int64_t) * (parts->n + 1));
        p->frac = malloc(sizeof(double) * (parts->n + 1));
        p->cum = malloc(sizeof(double) * (parts->n + 1));
        if (!order || !p->frac || !p->cum)
                return -ENOMEM;
        int r = region_areas(parts, c->area, c->nf, &area);
        for (int64_t i = 0; r >= 0 && i < parts->n; i++)
                area[i] /= c->total;
        if (r >= 0)
                r = p3_pp_sort_desc(area, parts->n, order);
        if (r >= 0)
                r = regions_reorder(parts, order, &p->sorted);
        if (r < 0)
                return r;
        for (int64_t s = 0; s < parts->n; s++) {
                p->frac[s] = area[order[s]];
                p->cum[s] = (s ? p->cum[s - 1] : 0.0) + p->frac[s];
        }
        return p3_pp_neighbours(&p->sorted, c->adj, NULL, NULL, &p->nbr_off, &p->nbr);
}

/* A small part past the threshold joins its largest neighbour within the threshold. */
static int64_t pp_target(const pp_parts *p, int64_t i, double threshold) {
        double max_area = 0;
        int64_t best = -1;
        for (int64_t x = p->nbr_off[i]; x < p->nbr_off[i + 1]; x++) {
                int64_t j = p->nbr[x];
                if (p->cum[j] > threshold)
                        continue;
                if (p->frac[j] > max_area) {
                        max_area = p->frac[j];
                        best = j;
                }
        }
        return best;
}

/* §16. A target always comes before the part that joins it (its cumulative area is smaller),
 * so it has not moved itself and its first face still carries its face_ids_4 label. */
static int64_t pp_merge(face_ctx *c, const pp_parts *p, int64_t *new_ids, int64_t *merges) {
        double thr = c->in->threshold;
        int64_t nm = 0;
        for (int64_t i = 0; i < p->sorted.n; i++) {
                if (!(p->cum[i] > thr && p->frac[i] < P3_PP_SMALL_PART) ||
                    p->nbr_off[i + 1] == p->nbr_off[i])
                        continue;
                int64_t j = pp_target(p, i, thr);
                if (j < 0)
                        continue;
                int64_t label = c->ids[p->sorted.faces[p->sorted.offsets[j]]];
                for (int64_t x = p->sorted.offsets[i]; x < p->sorted.offsets[i + 1]; x++)
                        new_ids[p->sorted.faces[x]] = label;
                merges[2 * nm] = i;
                merges[2 * nm + 1] = j;
                nm++;
        }
        return nm;
}

static int post_process(face_ctx *c) {
        _cleanup_(p3_pp_regions_done) p3_pp_regions parts = {};
        _cleanup_(pp_parts_done) pp_parts p = {};
        int r = p3_pp_regions_build(c->ids, c->nf, c->adj, &parts);
        if (r >= 0 && p3_pp_tracing(c->h)) {
                trace_regions(c, "pp_parts_offsets", "pp_parts_faces", &parts);
                r = trace_no_mask_process(c, &parts);
        }
        if (r >= 0)
                r = pp_prepare(c, &parts, &p);
        if (r < 0)
                return r;
        trace_regions(c, "pp_sorted_parts_offsets", "pp_sorted_parts_faces", &p.sorted);
        p3_pp_trace_f64(c->h, "pp_part_areas_sorted", p.frac, parts.n);
        p3_pp_trace_f64(c->h, "pp_integral_part_areas", p.cum, parts.n);
        p3_pp_trace_csr(c->h, "pp_neighbor_parts_offsets", "pp_neighbor_parts", p.nbr_off,
                        parts.n, p.nbr);

        _cleanup_free_ int64_t *new_ids = malloc(sizeof(int64_t) * (c->nf + 1));
        _cleanup_free_ int64_t *merges = malloc(sizeof(int64_t) * (2 * parts.n + 1));
        if (!new_ids || !merges)
                return -ENOMEM;
        memcpy(new_ids, c->ids, sizeof(int64_t) * c->nf);
        int64_t nm = pp_merge(c, &p, new_ids, merges);
        memcpy(c->ids, new_ids, sizeof(int64_t) * c->nf);
        p3_pp_trace(c->h, "pp_merges", P3_PP_I64, 2, (int64_t[]) { nm, 2 }, merges);
        trace_ids(c, "face_ids_5");
        return 0;
}

/* §17: one box per label except -1 / -2, ascending. */
static int final_boxes(face_ctx *c) {
        _cleanup_(label_boxes_done) label_boxes lb = {};
        int r = label_boxes_build(c->mesh, c->ids, &lb);
        if (r < 0)
                return r;
        if (c->in->colour_rng) {
                c->res->colours = malloc(3 * (size_t) (lb.n + 1));
                if (!c->res->colours)
                        return -ENOMEM;
                p3_pp_colours(c->in->colour_rng, c->pts->final_order, c->pts->n_final,
                              c->new_first, c->new_end, lb.labels, lb.n, c->res->colours);
        }
        c->res->nf = c->nf;
        c->res->n_parts = lb.n;
        c->res->part_labels = TAKE_PTR(lb.labels);
        c->res->aabb = TAKE_PTR(lb.boxes);
        c->res->face_ids = TAKE_PTR(c->ids);
        return 0;
}

/* Everything the stages index with must be in range: a bad input fails, it never reads out of
 * bounds. */
static int check_faces_input(const p3_pp_input *in, const p3_pp_points *pts, p3_err *err) {
        const p3_mesh *m = in->mesh;
        const p3_adjacency *adj = in->adj;
        if (!m || !adj || !in->face_idx || m->nf < 1 || pts->n != in->n)
                return p3_errf(err, -EINVAL,
                               "post-processing needs a mesh, its adjacency and the point faces");
        if (adj->rows > m->nf || adj->rows < 0 || adj->deg < 0 || (adj->rows > 0 && !adj->nbr))
                return p3_errf(err, -EINVAL, "the face adjacency does not belong to this mesh");
        for (int64_t x = 0; x < adj->rows * adj->deg; x++)
                if (adj->nbr[x] >= m->nf)
                        return p3_errf(err, -EINVAL, "the face adjacency names face %d of %lld",
                                       adj->nbr[x], (long long) m->nf);
        for (int64_t f = 0; f < 3 * m->nf; f++)
                if (m->f[f] < 0 || m->f[f] >= m->nv)
                        return p3_errf(err, -EINVAL, "face %lld names a missing vertex",
                                       (long long) f / 3);
        for (int64_t p = 0; p < in->n; p++) {
                if (in->face_idx[p] < 0 || in->face_idx[p] >= m->nf)
                        return p3_errf(err, -EINVAL, "point %lld names face %d of %lld",
                                       (long long) p, in->face_idx[p], (long long) m->nf);
                if (pts->label[p] < -1 || pts->label[p] >= in->k)
                        return p3_errf(err, -EINVAL, "point %lld has label %lld of %d masks",
                                       (long long) p, (long long) pts->label[p], in->k);
        }
        return 0;
}

static int face_ctx_init(face_ctx *c, const p3_pp_input *in, const p3_pp_hooks *h,
                         const p3_pp_points *pts, p3_pp_result *res) {
        int64_t nf = in->mesh->nf;
        *c = (face_ctx) { .in = in, .h = h, .pts = pts, .mesh = in->mesh, .adj = in->adj,
                          .nf = nf, .res = res };
        c->area = malloc(sizeof(double) * (nf + 1));
        c->ids = malloc(sizeof(int64_t) * (nf + 1));
        if (!c->area || !c->ids)
                return -ENOMEM;
        if (in->face_area)
                memcpy(c->area, in->face_area, sizeof(double) * nf);
        else
                p3_mesh_face_geometry(in->mesh, c->area, NULL);
        c->total = p3_np_sum(c->area, nf);
        return 0;
}

int p3_pp_face_labels(const p3_pp_input *in, const p3_pp_hooks *h, const p3_pp_points *pts,
                      p3_pp_result *ret, p3_err *err) {
        static const struct {
                p3_pp_stage stage;
                int (*run)(face_ctx *);
        } stages[] = {
                { P3_PP_VOTE, vote },
                { P3_PP_FIX1, fix1 },
                { P3_PP_REGIONS, remove_tiny },
                { P3_PP_FIX2, fix2 },
                { P3_PP_RELABEL, relabel },
                { P3_PP_NEIGHBOURS, neighbours },
                { P3_PP_MERGE_UNLABELLED, merge_unlabelled },
                { P3_PP_POST_PROCESS, post_process },
                { P3_PP_AABB, final_boxes },
        };
        _cleanup_(face_ctx_done) face_ctx c = {};
        _cleanup_(p3_pp_result_done) p3_pp_result res = {};
        int r = check_faces_input(in, pts, err);
        if (r < 0)
                return r;
        if (face_ctx_init(&c, in, h, pts, &res) < 0)
                return p3_errf(err, -ENOMEM, "out of memory for %lld faces",
                               (long long) in->mesh->nf);
        for (size_t s = 0; s < ELEMENTSOF(stages); s++) {
                if (stages[s].stage == P3_PP_POST_PROCESS && !in->post_process)
                        continue;
                r = p3_pp_enter(h, stages[s].stage, err);
                if (r < 0)
                        return r;
                r = stages[s].run(&c);
                if (r < 0)
                        return p3_errf(err, r, "face stage %s failed: %s",
                                       p3_pp_stage_name(stages[s].stage), p3_strerror(r));
        }
        *ret = res;
        res = (p3_pp_result) {};
        return 0;
}

int p3_postprocess(const p3_pp_input *in, const p3_pp_hooks *h, p3_pp_result *ret,
                   p3_err *err) {
        _cleanup_(p3_pp_points_done) p3_pp_points pts = {};
        *ret = (p3_pp_result) {};
        int r = p3_pp_point_labels(in, h, &pts, err);
        if (r >= 0)
                r = p3_pp_face_labels(in, h, &pts, ret, err);
        if (r >= 0 && h && h->progress)
                h->progress(h->userdata, p3_pp_stage_name(P3_PP_DONE), 1.0);
        return r;
}

void p3_pp_result_done(p3_pp_result *r) {
        free(r->face_ids);
        free(r->part_labels);
        free(r->aabb);
        free(r->colours);
        *r = (p3_pp_result) {};
}
