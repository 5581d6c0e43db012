/* SPDX-License-Identifier: MIT */
/* The non-neural end of upstream's mesh_sam() (PIPELINE.md §7–§17): from the three masks and
 * IoU predictions per prompt to one part label per face and one box per part. Every tie rule,
 * comparison and summation order of auto_mask.py is kept, so the labels are identical to
 * upstream's, not merely close: a different winner early on (NMS, a vote) changes part ids.
 *
 * Two halves: postprocess_masks.c works on the sampled points (selection, IoU sort, NMS,
 * filter, box merge, recovery, point labels), postprocess_faces.c on the mesh (votes, the two
 * fix_label passes, regions, relabelling, the optional do_post_process, boxes). */
#pragma once

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "mesh.h"
#include "numpy-compat.h"
#include "rng.h"

/* Constants of auto_mask.py. */
#define P3_PP_NMS_IOU 0.9        /* NMS: IoU with a cluster key, strict > */
#define P3_PP_MIN_MEMBERS 3      /* clusters with > 2 members survive */
#define P3_PP_BOX_IOU 0.5        /* bbox merge, strict > */
#define P3_PP_RECOVER 0.7        /* recovery: share of a mask still uncovered, strict > */
#define P3_PP_FIX_PASSES 50      /* fix_label sweeps (loop_cnt <= 50) */
#define P3_PP_TINY_REGION 0.001  /* region / (its component + 1e-7), strict > keeps it */
#define P3_PP_NEW_PART 0.001     /* unlabelled region / mesh area, strict > gets a new id */
#define P3_PP_SMALL_PART 0.01    /* do_post_process: parts below this may merge */
#define P3_PP_THRESHOLD 0.95     /* do_post_process default threshold */
#define P3_PP_NO_GROWTH 1e10     /* starting "smallest AABB growth": larger ones never win */

typedef enum p3_pp_dtype {
        P3_PP_I64,
        P3_PP_F64,
        P3_PP_U8,
} p3_pp_dtype;

typedef enum p3_pp_stage {
        P3_PP_SELECT,
        P3_PP_NMS,
        P3_PP_BOX_MERGE,
        P3_PP_RECOVER_MASKS,
        P3_PP_POINT_LABELS,
        P3_PP_VOTE,
        P3_PP_FIX1,
        P3_PP_REGIONS,
        P3_PP_FIX2,
        P3_PP_RELABEL,
        P3_PP_NEIGHBOURS,
        P3_PP_MERGE_UNLABELLED,
        P3_PP_POST_PROCESS,
        P3_PP_AABB,
        P3_PP_DONE,
        _P3_PP_STAGE_MAX,
} p3_pp_stage;

typedef struct p3_pp_hooks {
        /* Polled between stages; true stops the run with -ECANCELED. */
        bool (*abort)(void *userdata);
        /* A stage starts; fraction = share of the stages done (1.0 with "done" at the end). */
        void (*progress)(void *userdata, const char *stage, double fraction);
        /* Intermediates under the golden replay's key names (I64 for integers, F64 for floats,
         * U8 for bit-packed masks). data is valid during the call only. NULL: not computed. */
        void (*trace)(void *userdata, const char *name, p3_pp_dtype dtype, int ndim,
                      const int64_t *shape, const void *data);
        void *userdata;
} p3_pp_hooks;

typedef struct p3_pp_input {
        const p3_mesh *mesh;         /* the cleaned mesh */
        const p3_adjacency *adj;     /* p3_mesh_adjacency(mesh) */
        const double *face_area;     /* [nf]; NULL: p3_mesh_face_geometry() */
        /* [n, 3] float64 after normalize_pc AND the backbone's in-place CenterShift (golden
         * `points`): the box merge measures boxes in these coordinates, and an unshifted cloud
         * rounds its box extents differently. */
        const double *points;
        const int32_t *face_idx;     /* [n] source face of each point */
        int64_t n;
        int k;                       /* prompts */
        const uint8_t *mask_bits[3]; /* [k][ceil(n/8)] each: point i = bit (i & 7) of byte i >> 3 */
        const float *pred_iou;       /* [k, 3] */
        bool post_process;
        double threshold;            /* do_post_process threshold (P3_PP_THRESHOLD) */
        /* NumPy's global generator as upstream has it when the post-processing starts (after
         * GridSample's draws and the FPS start), or NULL: the part colours are then not
         * drawn. Read only: the draws are made on a copy. */
        const p3_mt19937 *colour_rng;
} p3_pp_input;

typedef struct p3_pp_result {
        int64_t nf;
        int64_t *face_ids;    /* [nf] part label per face; -1 / -2: left unlabelled */
        int64_t n_parts;
        int64_t *part_labels; /* [n_parts] ascending */
        double *aabb;         /* [n_parts][2][3]: min xyz, max xyz of the part's vertices */
        uint8_t *colours;     /* [n_parts][3] upstream's colour of each part, or NULL */
} p3_pp_result;

int p3_postprocess(const p3_pp_input *in, const p3_pp_hooks *hooks, p3_pp_result *ret,
                   p3_err *err);
void p3_pp_result_done(p3_pp_result *r);

/* ---- the two halves and their pieces (used by p3_postprocess and the tests) ---- */

/* Point labels (result_mask) and the final masks in painting order (final_mask_sorted). */
typedef struct p3_pp_points {
        int64_t n;
        int64_t *label; /* [n] sorted-mask index, -1 for none */
        int64_t n_final;
        int64_t *final_order; /* [n_final] */
} p3_pp_points;

int p3_pp_point_labels(const p3_pp_input *in, const p3_pp_hooks *hooks, p3_pp_points *ret,
                       p3_err *err);
void p3_pp_points_done(p3_pp_points *p);
int p3_pp_face_labels(const p3_pp_input *in, const p3_pp_hooks *hooks, const p3_pp_points *pts,
                      p3_pp_result *ret, p3_err *err);

/* Masks as 64-bit words (bit i & 63 of word i >> 6), with their point counts. */
typedef struct p3_pp_masks {
        int k;
        int64_t n, words;
        uint64_t *bits; /* [k][words], bits past n are zero */
        int64_t *area;  /* [k] */
} p3_pp_masks;

int p3_pp_masks_new(p3_pp_masks *m, int k, int64_t n);
void p3_pp_masks_done(p3_pp_masks *m);
/* Mask i from upstream's packed bytes (bit i & 7 of byte i >> 3); counts its area. */
void p3_pp_masks_set(p3_pp_masks *m, int i, const uint8_t *bytes);

/* argmax per row of [k, 3], first maximum (NaN counts as the maximum, as np.argmax). */
void p3_pp_select(const float *pred_iou, int k, int64_t *max_idx);
/* Stable descending order of key[0..n) (Python's sorted(reverse=True)); NaN keys go last. */
int p3_pp_sort_desc(const double *key, int64_t n, int64_t *order);
/* |a and b| / |a or b| in float64; 0/0 is NaN. */
double p3_pp_mask_iou(const p3_pp_masks *m, int64_t a, int64_t b);
/* NMS over masks 0..k-1 against the keys in creation order; first key with IoU > 0.9 takes the
 * mask. keys[k] receives the cluster keys, assign[k] each mask's cluster (index into keys).
 * Returns the number of clusters. */
int64_t p3_pp_nms(const p3_pp_masks *m, int64_t *keys, int64_t *assign);
/* iou_3d of two [xmin, ymin, zmin, xmax, ymax, zmax] boxes: touching counts as disjoint. */
double p3_pp_box_iou(const double box1[6], const double box2[6]);

/* p3_np_sum (numpy-compat.h) sums areas as np.sum does. */

/* The most frequent value of v[0..n) (n > 0), ties to the smallest: argmax(bincount(v)). */
int64_t p3_pp_mode(const int64_t *v, int64_t n);
/* fix_label (no AABB): faces labelled < 0 take the mode of their labelled neighbours, in place,
 * ascending, sweep after sweep while one changed something and loop_cnt <= 50. Returns the final
 * loop_cnt (sweeps + 1) or -ENOMEM. */
int64_t p3_pp_fix_label(int64_t *ids, int64_t nf, const p3_adjacency *adj);

/* get_connected_region: BFS from every unvisited face in index order through neighbours with
 * the same label (ids == NULL: one label, i.e. connected components). */
typedef struct p3_pp_regions {
        int64_t n;
        int64_t *offsets; /* [n + 1] */
        int64_t *faces;   /* [nf] region by region, BFS order */
        int64_t *of_face; /* [nf] region of each face */
} p3_pp_regions;

int p3_pp_regions_build(const int64_t *ids, int64_t nf, const p3_adjacency *adj,
                        p3_pp_regions *ret);
void p3_pp_regions_done(p3_pp_regions *r);

/* find_neighbor_part: per region the set of other regions behind its faces' edges, in CPython
 * list(set) order. With ids, regions whose id is -1/-2 are left out and an unlabelled region
 * without any neighbour falls back to the labelled region with the nearest box (aabb, [n][6]),
 * -1 if none. CSR out: offsets [n + 1], list (malloc'd). */
int p3_pp_neighbours(const p3_pp_regions *r, const p3_adjacency *adj, const int64_t *ids,
                     const double *aabb, int64_t **offsets, int64_t **list);

/* Upstream's color_map as save_mesh paints the parts with it (spec §5 steps 13 and 23): one
 * np.random.rand(3) * 255 per final mask in painting order (final_order), then one per new
 * part id new_first, new_first + 1, ... below new_end, a later draw for the same id replacing
 * the earlier; each truncated to uint8. rgb[n][3] receives the colours of labels[0..n); a
 * label that got none keeps p3_part_colour's. The draws are made on a copy of rng. */
void p3_pp_colours(const p3_mt19937 *rng, const int64_t *final_order, int64_t n_final,
                   int64_t new_first, int64_t new_end, const int64_t *labels, int64_t n,
                   uint8_t *rgb);

/* ---- helpers shared by the two halves ---- */

const char *p3_pp_stage_name(p3_pp_stage s);

/* Start a stage: -ECANCELED (with a message) if the caller asked to stop. */
static inline int p3_pp_enter(const p3_pp_hooks *h, p3_pp_stage s, p3_err *err) {
        if (h && h->abort && h->abort(h->userdata))
                return p3_errf(err, -ECANCELED, "post-processing was cancelled");
        if (h && h->progress)
                h->progress(h->userdata, p3_pp_stage_name(s), (double) s / P3_PP_DONE);
        return 0;
}

static inline bool p3_pp_tracing(const p3_pp_hooks *h) {
        return h && h->trace;
}

static inline void p3_pp_trace(const p3_pp_hooks *h, const char *name, p3_pp_dtype t, int ndim,
                               const int64_t *shape, const void *data) {
        if (p3_pp_tracing(h))
                h->trace(h->userdata, name, t, ndim, shape, data);
}

static inline void p3_pp_trace_i64(const p3_pp_hooks *h, const char *name, const int64_t *d,
                                   int64_t n) {
        p3_pp_trace(h, name, P3_PP_I64, 1, (int64_t[]) { n }, d);
}

static inline void p3_pp_trace_f64(const p3_pp_hooks *h, const char *name, const double *d,
                                   int64_t n) {
        p3_pp_trace(h, name, P3_PP_F64, 1, (int64_t[]) { n }, d);
}

/* A CSR list: offsets [n + 1] under one name, the flat values under another. */
static inline void p3_pp_trace_csr(const p3_pp_hooks *h, const char *offsets_name,
                                   const char *values_name, const int64_t *offsets, int64_t n,
                                   const int64_t *values) {
        p3_pp_trace_i64(h, offsets_name, offsets, n + 1);
        p3_pp_trace_i64(h, values_name, values, offsets[n]);
}
