/* SPDX-License-Identifier: MIT */
/* Writing segmentation results: a GLB with one coloured mesh per part, a PLY with face
 * colours and labels, and JSON reports. Every writer builds its whole file in memory and
 * then writes it to the caller's descriptor in one go, so that an error leaves nothing
 * partial behind; the descriptor stays open and owned by the caller. Returns 0 or a negative
 * errno with one sentence in err. Writing to a pipe or socket whose reader has gone away
 * gives -EPIPE only if the caller ignores SIGPIPE. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "mesh.h"

struct json_object;

/* A labelled mesh. Faces whose label is negative are unlabelled (-1: sampled but in no mask,
 * -2: never sampled, as upstream); every other face label must be one of part_labels. */
typedef struct p3_segmentation {
        const p3_mesh *mesh;
        const int32_t *face_ids;    /* [nf] label of each face, < 0 = unlabelled */
        int n_parts;
        const int32_t *part_labels; /* [n_parts] label of each part, strictly ascending, >= 0 */
        const double *aabb;         /* [n_parts][2][3] min, max of each part */
        const uint8_t *colours;     /* [n_parts][3] sRGB of each part, or NULL: p3_part_colour */
} p3_segmentation;

typedef struct p3_stage_time {
        const char *name;
        double seconds;
} p3_stage_time;

/* What produced a segmentation, for the JSON report. */
typedef struct p3_report {
        const char *input; /* name of the input mesh, or NULL */
        int64_t points, prompts, prompt_batch;
        int64_t seed;
        bool post_process;
        double threshold;
        const char *backend;
        const char *weights; /* path of the weights, or NULL */
        bool weights_synthetic;
        const p3_stage_time *timings;
        size_t n_timings;
        struct json_object *extra; /* optional, written under "extra"; not consumed */
} p3_report;

/* glTF 2.0 binary: a root node "segmentation" whose children are one node + mesh per part
 * ("part_<label>", then "unlabelled" for the -1 faces and "unsampled" for the -2 faces, when
 * there are any), each with its own material and COLOR_0. */
int p3_export_glb(const p3_segmentation *s, int fd, p3_err *err);
/* Upstream's NAME_aabb.glb: the GLB above plus a second root node "boxes" with one node
 * "box_<label>" per part: its outline box (p3_segmentation_outline_boxes) as one glTF LINES
 * primitive of 24 vertices (12 edges), in the part's colour. */
int p3_export_aabb_glb(const p3_segmentation *s, int fd, p3_err *err);
/* Upstream's NAME_face_ids.npy: NumPy .npy (format 1.0), '<i8', shape (nf,), one label per
 * face of s->mesh, -1 and -2 as they are. */
int p3_export_face_ids_npy(const p3_segmentation *s, int fd, p3_err *err);
/* Upstream's NAME_aabb.npy: NumPy .npy (format 1.0), '<f8', shape (K, 2, 3): min and max
 * corner of the vertices of each part's faces (mesh coordinates), for the K labels present
 * among the faces, ascending (np.unique(face_ids) without -1/-2); parts without faces are
 * left out. With K = 0 the shape is (0, 2, 3) (upstream's np.array([]) would be (0,)). */
int p3_export_aabb_npy(const p3_segmentation *s, int fd, p3_err *err);
/* PLY with float x,y,z vertices and faces carrying red, green, blue and the part label. */
int p3_export_ply(const p3_segmentation *s, int fd, bool ascii, p3_err *err);
/* {"version":1, "input", "faces", "unlabelled_faces", "parts":[...], "parameters",
 * "timings", "synthetic_weights", "extra", "face_labels":[...]}. rep may be NULL. */
int p3_export_json(const p3_segmentation *s, const p3_report *rep, int fd, p3_err *err);
/* Interactive mode: {"prompts":[{"point":[x,y,z], "masks":[{"faces":[...], "iou":x} x3]}]}.
 * mask_faces[i * 3 + j] lists the faces of mask j of prompt i (may be NULL when its count
 * is 0); iou is [k, 3]. */
int p3_export_predict_json(const p3_mesh *m, int k, const double *prompts,
                           const int32_t *const *mask_faces, const int64_t *mask_counts,
                           const float *iou, int fd, p3_err *err);

/* A deterministic colour per label (sRGB bytes), distinct for neighbouring labels; grey for
 * unlabelled (label < 0). */
void p3_part_colour(int32_t label, uint8_t rgb[3]);
/* The colour of a face with this label in the GLB, PLY and aabb GLB, as upstream's save_mesh
 * paints it: the part's (s->colours, else p3_part_colour), red (255, 0, 0) for -1, black for
 * -2 and any other negative label. */
void p3_segmentation_colour(const p3_segmentation *s, int32_t label, uint8_t rgb[3]);
/* Upstream's better_aabb of every part, the boxes its NAME_aabb.glb outlines: per axis, the
 * part's face corners (a vertex once per face it belongs to) as float32, without the values
 * outside [q1 - 1.5 iqr, q3 + 1.5 iqr] (NumPy 1.x percentiles, linear), then min and max.
 * boxes: [n_parts][2][3]; a part without faces gets s->aabb's box. 0 or -ENOMEM. */
int p3_segmentation_outline_boxes(const p3_segmentation *s, double *boxes);

/* ---- shared by the writers ---- */

/* Check the segmentation is consistent: labels ascending, face labels known, vertex indices
 * in range, vertices finite. */
int p3_segmentation_check(const p3_segmentation *s, p3_err *err);
/* Index of label in part_labels, or -1 when the label is negative or unknown. */
int p3_segmentation_part(const p3_segmentation *s, int32_t label);
