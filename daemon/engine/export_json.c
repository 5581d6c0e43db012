/* SPDX-License-Identifier: MIT */
/* JSON reports: the segmentation with per-part statistics and what produced it, and the
 * interactive mode's masks per prompt. The per-face arrays can hold millions of numbers, so
 * they are printed straight into the buffer rather than built as json-c objects (about 50
 * bytes each). */
#include "export.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fdio.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);

typedef struct part_stats {
        int64_t faces;
        double area;
} part_stats;

/* As trimesh computes it: ‖(v1−v0)×(v2−v1)‖/2. */
static double face_area(const p3_mesh *m, int64_t face) {
        const double *a = m->v + 3 * (int64_t) m->f[3 * face];
        const double *b = m->v + 3 * (int64_t) m->f[3 * face + 1];
        const double *c = m->v + 3 * (int64_t) m->f[3 * face + 2];
        double u[3], w[3];

        for (int i = 0; i < 3; i++) {
                u[i] = b[i] - a[i];
                w[i] = c[i] - b[i];
        }
        double x = u[1] * w[2] - u[2] * w[1], y = u[2] * w[0] - u[0] * w[2],
               z = u[0] * w[1] - u[1] * w[0];
        return sqrt(x * x + y * y + z * z) / 2;
}

/* stats[n_parts] gathers the unlabelled faces. */
static part_stats *part_stats_new(const p3_segmentation *s) {
        part_stats *st = calloc((size_t) s->n_parts + 1, sizeof(part_stats));
        if (!st)
                return NULL;
        for (int64_t i = 0; i < s->mesh->nf; i++) {
                int p = p3_segmentation_part(s, s->face_ids[i]);
                part_stats *t = &st[p < 0 ? s->n_parts : p];
                t->faces++;
                t->area += face_area(s->mesh, i);
        }
        return st;
}

/* ---- json-c pieces -------------------------------------------------------------------------- */

/* JSON has no NaN or infinity: a stage that was skipped or a degenerate box gives null. */
static json_object *jnum(double d) {
        return isfinite(d) ? json_object_new_double(d) : json_object_new_null();
}

static json_object *jvec3(const double *v) {
        json_object *a = json_object_new_array_ext(3);
        for (int i = 0; a && i < 3; i++)
                json_object_array_add(a, jnum(v[i]));
        return a;
}

static json_object *jstr(const char *s) {
        return s ? json_object_new_string(s) : json_object_new_null();
}

static json_object *json_part(const p3_segmentation *s, int p, const part_stats *st) {
        json_object *o = json_object_new_object(), *box = json_object_new_object();
        json_object_object_add(o, "label", json_object_new_int(s->part_labels[p]));
        json_object_object_add(o, "faces", json_object_new_int64(st->faces));
        json_object_object_add(o, "area", jnum(st->area));
        json_object_object_add(box, "min", jvec3(s->aabb + 6 * (size_t) p));
        json_object_object_add(box, "max", jvec3(s->aabb + 6 * (size_t) p + 3));
        json_object_object_add(o, "aabb", box);
        return o;
}

static json_object *json_parameters(const p3_report *rep) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "points", json_object_new_int64(rep->points));
        json_object_object_add(o, "prompts", json_object_new_int64(rep->prompts));
        json_object_object_add(o, "prompt_batch", json_object_new_int64(rep->prompt_batch));
        json_object_object_add(o, "seed", json_object_new_int64(rep->seed));
        json_object_object_add(o, "post_process", json_object_new_boolean(rep->post_process));
        json_object_object_add(o, "threshold", jnum(rep->threshold));
        json_object_object_add(o, "backend", jstr(rep->backend));
        json_object_object_add(o, "weights", jstr(rep->weights));
        json_object_object_add(o, "weights_synthetic",
                               json_object_new_boolean(rep->weights_synthetic));
        return o;
}

static json_object *json_timings(const p3_report *rep) {
        json_object *o = json_object_new_object();
        for (size_t i = 0; i < rep->n_timings; i++)
                if (rep->timings[i].name)
                        json_object_object_add(o, rep->timings[i].name,
                                               jnum(rep->timings[i].seconds));
        return o;
}

static void json_add_report(json_object *root, const p3_report *rep) {
        json_object_object_add(root, "parameters", json_parameters(rep));
        json_object_object_add(root, "timings", json_timings(rep));
        json_object_object_add(root, "synthetic_weights",
                               json_object_new_boolean(rep->weights_synthetic));
        /* the caller keeps its reference: take one of our own for root to drop */
        if (rep->extra)
                json_object_object_add(root, "extra", json_object_get(rep->extra));
}

/* Everything but the per-face labels. */
static json_object *json_head(const p3_segmentation *s, const p3_report *rep,
                              const part_stats *st) {
        json_object *root = json_object_new_object(), *parts = json_object_new_array_ext(s->n_parts);
        if (!root || !parts) {
                json_object_put(root);
                json_object_put(parts);
                return NULL;
        }
        json_object_object_add(root, "version", json_object_new_int(1));
        json_object_object_add(root, "input", jstr(rep ? rep->input : NULL));
        json_object_object_add(root, "faces", json_object_new_int64(s->mesh->nf));
        json_object_object_add(root, "unlabelled_faces", json_object_new_int64(st[s->n_parts].faces));
        for (int p = 0; p < s->n_parts; p++)
                json_object_array_add(parts, json_part(s, p, &st[p]));
        json_object_object_add(root, "parts", parts);
        if (rep)
                json_add_report(root, rep);
        return root;
}

/* ---- printing --------------------------------------------------------------------------------- */

/* Close the serialised head object again after appending "key":[ ... ] to it: the head
 * always has keys, and json-c's plain output ends with its closing brace. */
static int splice_open(p3_buf *b, const char *head, const char *key) {
        size_t n = strlen(head);
        if (n < 2 || head[n - 1] != '}')
                return -EINVAL;
        p3_buf_append(b, head, n - 1);
        return p3_buf_printf(b, ",\"%s\":[", key);
}

/* Formatted by hand: printf costs two vsnprintf calls per number, and there are millions. */
static void print_int(p3_buf *b, int32_t v, bool comma) {
        uint32_t u = v < 0 ? -(uint32_t) v : (uint32_t) v;
        char digits[10], s[12];
        int nd = 0, n = 0;

        do {
                digits[nd++] = (char) ('0' + u % 10);
                u /= 10;
        } while (u > 0);
        if (comma)
                s[n++] = ',';
        if (v < 0)
                s[n++] = '-';
        while (nd > 0)
                s[n++] = digits[--nd];
        p3_buf_append(b, s, (size_t) n);
}

static void print_ints(p3_buf *b, const int32_t *v, int64_t n) {
        for (int64_t i = 0; i < n; i++)
                print_int(b, v[i], i > 0);
}

int p3_export_json(const p3_segmentation *s, const p3_report *rep, int fd, p3_err *err) {
        _cleanup_buf_ p3_buf b = {};

        int r = p3_segmentation_check(s, err);
        if (r < 0)
                return r;
        _cleanup_free_ part_stats *st = part_stats_new(s);
        _cleanup_(json_object_putp) json_object *root = st ? json_head(s, rep, st) : NULL;
        const char *head = root ? json_object_to_json_string_ext(
                                          root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                                : NULL;
        if (!head)
                return p3_errf(err, -ENOMEM, "cannot build the JSON report: out of memory");
        r = splice_open(&b, head, "face_labels");
        print_ints(&b, s->face_ids, s->mesh->nf);
        p3_buf_printf(&b, "]}\n");
        if (r < 0 || b.error < 0)
                return p3_errf(err, r < 0 ? r : b.error, "cannot build the JSON report: %s",
                               p3_strerror(r < 0 ? r : b.error));
        r = p3_buf_write_fd(&b, fd);
        if (r < 0)
                return p3_errf(err, r, "cannot write the JSON report: %s", p3_strerror(r));
        return 0;
}

/* ---- interactive mode --------------------------------------------------------------------- */

/* The shortest decimal that reads back as the same value (at most `max` digits), or null. */
static void print_number(p3_buf *b, double d, int min_digits, int max_digits, bool as_float) {
        char s[40];

        if (!isfinite(d)) {
                p3_buf_printf(b, "null");
                return;
        }
        for (int prec = min_digits; prec <= max_digits; prec++) {
                snprintf(s, sizeof(s), "%.*g", prec, d);
                if (as_float ? strtof(s, NULL) == (float) d : strtod(s, NULL) == d)
                        break;
        }
        p3_buf_printf(b, "%s", s);
}

static int predict_check(const p3_mesh *m, int k, const double *prompts,
                         const int32_t *const *mask_faces, const int64_t *mask_counts,
                         const float *iou, p3_err *err) {
        if (!m || k < 0 || (k > 0 && (!prompts || !mask_faces || !mask_counts || !iou)))
                return p3_errf(err, -EINVAL, "no prompts or masks to write");
        for (int64_t j = 0; j < 3 * (int64_t) k; j++) {
                if (mask_counts[j] < 0 || (mask_counts[j] > 0 && !mask_faces[j]))
                        return p3_errf(err, -EINVAL, "mask %" PRId64 " of prompt %" PRId64
                                       " has no faces array", j % 3, j / 3);
                for (int64_t i = 0; i < mask_counts[j]; i++)
                        if (mask_faces[j][i] < 0 || mask_faces[j][i] >= m->nf)
                                return p3_errf(err, -EINVAL,
                                               "mask %" PRId64 " of prompt %" PRId64
                                               " names face %d of %" PRId64,
                                               j % 3, j / 3, (int) mask_faces[j][i], m->nf);
        }
        return 0;
}

static void print_prompt(p3_buf *b, int i, const double *point,
                         const int32_t *const *mask_faces, const int64_t *mask_counts,
                         const float *iou) {
        p3_buf_printf(b, "%s{\"point\":[", i ? "," : "");
        for (int c = 0; c < 3; c++) {
                if (c)
                        p3_buf_printf(b, ",");
                print_number(b, point[c], 15, 17, false);
        }
        p3_buf_printf(b, "],\"masks\":[");
        for (int j = 0; j < 3; j++) {
                p3_buf_printf(b, "%s{\"faces\":[", j ? "," : "");
                print_ints(b, mask_faces[j], mask_counts[j]);
                p3_buf_printf(b, "],\"iou\":");
                print_number(b, iou[j], 6, 9, true);
                p3_buf_printf(b, "}");
        }
        p3_buf_printf(b, "]}");
}

int p3_export_predict_json(const p3_mesh *m, int k, const double *prompts,
                           const int32_t *const *mask_faces, const int64_t *mask_counts,
                           const float *iou, int fd, p3_err *err) {
        _cleanup_buf_ p3_buf b = {};

        int r = predict_check(m, k, prompts, mask_faces, mask_counts, iou, err);
        if (r < 0)
                return r;
        p3_buf_printf(&b, "{\"prompts\":[");
        for (int i = 0; i < k; i++)
                print_prompt(&b, i, prompts + 3 * (size_t) i, mask_faces + 3 * (size_t) i,
                             mask_counts + 3 * (size_t) i, iou + 3 * (size_t) i);
        p3_buf_printf(&b, "]}\n");
        if (b.error < 0)
                return p3_errf(err, b.error, "cannot build the prediction JSON: %s",
                               p3_strerror(b.error));
        r = p3_buf_write_fd(&b, fd);
        if (r < 0)
                return p3_errf(err, r, "cannot write the prediction JSON: %s", p3_strerror(r));
        return 0;
}
