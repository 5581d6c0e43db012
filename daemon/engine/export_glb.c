/* SPDX-License-Identifier: MIT */
/* glTF 2.0 binary output (the coloured mesh, and with the part boxes as line outlines), plus
 * the segmentation checks and part colours the other writers share. Layout of the BIN chunk:
 * all positions, then all colours, then all indices, one bufferView each; every part is one
 * mesh whose accessors point into those three views; the box outlines come after the faces'
 * vertices in the first two views and use no indices. */
#include "export.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fdio.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);

#define GLB_MAGIC 0x46546C67u      /* "glTF" */
#define GLB_CHUNK_JSON 0x4E4F534Au /* "JSON" */
#define GLB_CHUNK_BIN 0x004E4942u  /* "BIN\0" */
#define GL_FLOAT 5126
#define GL_UNSIGNED_INT 5125
#define GL_ARRAY_BUFFER 34962
#define GL_ELEMENT_ARRAY_BUFFER 34963
#define GL_LINES 1
#define GL_TRIANGLES 4

/* ---- shared by the writers ---------------------------------------------------------------- */

int p3_segmentation_part(const p3_segmentation *s, int32_t label) {
        int lo = 0, hi = s->n_parts;

        if (label < 0)
                return -1;
        while (lo < hi) {
                int mid = lo + (hi - lo) / 2;
                if (s->part_labels[mid] < label)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < s->n_parts && s->part_labels[lo] == label ? lo : -1;
}

static int check_parts(const p3_segmentation *s, p3_err *err) {
        if (s->n_parts < 0 || (s->n_parts > 0 && (!s->part_labels || !s->aabb)))
                return p3_errf(err, -EINVAL, "the segmentation has no part table");
        for (int i = 0; i < s->n_parts; i++)
                if (s->part_labels[i] < 0 || (i > 0 && s->part_labels[i] <= s->part_labels[i - 1]))
                        return p3_errf(err, -EINVAL,
                                       "part labels must be non-negative and strictly ascending");
        return 0;
}

static int check_faces(const p3_segmentation *s, p3_err *err) {
        const p3_mesh *m = s->mesh;

        for (int64_t i = 0; i < m->nf; i++) {
                int32_t l = s->face_ids[i];
                if (l >= 0 && p3_segmentation_part(s, l) < 0)
                        return p3_errf(err, -EINVAL, "face %" PRId64 " has label %d, which is no part",
                                       i, (int) l);
                for (int c = 0; c < 3; c++)
                        if (m->f[3 * i + c] < 0 || m->f[3 * i + c] >= m->nv)
                                return p3_errf(err, -EINVAL,
                                               "face %" PRId64 " refers to vertex %d of %" PRId64, i,
                                               (int) m->f[3 * i + c], m->nv);
        }
        return 0;
}

int p3_segmentation_check(const p3_segmentation *s, p3_err *err) {
        if (!s || !s->mesh)
                return p3_errf(err, -EINVAL, "no segmentation to write");
        const p3_mesh *m = s->mesh;
        if (m->nv < 0 || m->nf < 0 || (m->nv > 0 && !m->v) ||
            (m->nf > 0 && (!m->f || !s->face_ids)))
                return p3_errf(err, -EINVAL, "the segmentation's mesh is incomplete");
        if (m->nv > INT32_MAX || m->nf > INT32_MAX / 3)
                return p3_errf(err, -EFBIG, "the mesh is too large to write");
        /* the writers store float32: NaN, or a value that overflows to infinity, would make
         * the accessor bounds meaningless and the JSON invalid */
        for (int64_t i = 0; i < 3 * m->nv; i++)
                if (!isfinite((float) m->v[i]))
                        return p3_errf(err, -EINVAL, "vertex %" PRId64 " is not a finite float",
                                       i / 3);
        int r = check_parts(s, err);
        if (r < 0)
                return r;
        return check_faces(s, err);
}

/* HSV with the hue stepping by the golden ratio conjugate: consecutive labels land far apart
 * on the colour wheel and no two labels below a few hundred look alike. */
void p3_part_colour(int32_t label, uint8_t rgb[3]) {
        if (label < 0) {
                rgb[0] = rgb[1] = rgb[2] = 160;
                return;
        }
        const double golden = 0.618033988749894848;
        double h = fmod(golden * label, 1.0) * 6.0;
        /* the hues of labels far apart come back close together (label 5 and 39 differ by
         * 2 %): cycling saturation and value with coprime periods keeps them apart, at least
         * 30/765 in RGB for any two of the first 64 labels */
        static const double sats[2] = { 0.7, 0.9 }, vals[3] = { 0.7, 0.8, 0.95 };
        double sat = sats[label % 2], val = vals[label % 3];
        int sector = (int) h;
        double f = h - sector;
        double p = val * (1 - sat), q = val * (1 - sat * f), t = val * (1 - sat * (1 - f));
        double c[6][3] = { { val, t, p }, { q, val, p }, { p, val, t },
                           { p, q, val }, { t, p, val }, { val, p, q } };
        for (int i = 0; i < 3; i++)
                rgb[i] = (uint8_t) lround(c[sector % 6][i] * 255.0);
}

void p3_segmentation_colour(const p3_segmentation *s, int32_t label, uint8_t rgb[3]) {
        int p = p3_segmentation_part(s, label);
        if (p >= 0 && s->colours)
                memcpy(rgb, s->colours + 3 * (size_t) p, 3);
        else if (p >= 0)
                p3_part_colour(label, rgb);
        else {
                /* save_mesh: color_map[-1] is red, -2 faces keep their zero colour */
                rgb[0] = label == -1 ? 255 : 0;
                rgb[1] = rgb[2] = 0;
        }
}

/* ---- grouping faces by part ---------------------------------------------------------------- */

/* Group g < n_parts is part g; group n_parts gathers the faces labelled -1 (in no mask),
 * n_parts + 1 the other unlabelled ones (-2, never sampled): upstream paints them apart. */
typedef struct glb_groups {
        int n;              /* n_parts + 2 */
        int64_t *start;     /* [n + 1] offsets into order */
        int32_t *order;     /* [nf] faces sorted by group, stable */
} glb_groups;

static void glb_groups_done(glb_groups *g) {
        free(g->start);
        free(g->order);
}

static int glb_group_of(const p3_segmentation *s, int64_t face) {
        int p = p3_segmentation_part(s, s->face_ids[face]);
        if (p >= 0)
                return p;
        return s->face_ids[face] == -1 ? s->n_parts : s->n_parts + 1;
}

static int glb_groups_build(const p3_segmentation *s, glb_groups *g) {
        int64_t nf = s->mesh->nf;

        g->n = s->n_parts + 2;
        g->start = calloc((size_t) g->n + 1, sizeof(int64_t));
        g->order = malloc(sizeof(int32_t) * (size_t) MAX(nf, 1));
        if (!g->start || !g->order)
                return -ENOMEM;
        for (int64_t i = 0; i < nf; i++)
                g->start[glb_group_of(s, i) + 1]++;
        for (int i = 0; i < g->n; i++)
                g->start[i + 1] += g->start[i];
        _cleanup_free_ int64_t *fill = malloc(sizeof(int64_t) * (size_t) g->n);
        if (!fill)
                return -ENOMEM;
        memcpy(fill, g->start, sizeof(int64_t) * (size_t) g->n);
        for (int64_t i = 0; i < nf; i++)
                g->order[fill[glb_group_of(s, i)]++] = (int32_t) i;
        return 0;
}

/* ---- geometry ------------------------------------------------------------------------------ */

/* Where one group's data sits in the three views, and what the accessors need. */
typedef struct glb_prim {
        int64_t faces;
        int64_t first_vertex, n_vertices; /* in the position/colour views */
        int64_t first_index;              /* in the index view */
        float min[3], max[3];
        double dmin[3], dmax[3];
} glb_prim;

typedef struct glb_geom {
        p3_buf pos, col, idx;
        glb_prim *prims; /* [groups] */
        glb_prim *boxes; /* [n_parts] line outlines, or NULL */
} glb_geom;

static void glb_geom_done(glb_geom *g) {
        p3_buf_done(&g->pos);
        p3_buf_done(&g->col);
        p3_buf_done(&g->idx);
        free(g->prims);
        free(g->boxes);
}

/* glTF colours are linear; the palette is sRGB, which is what people expect to see. */
static float srgb_to_linear(uint8_t c) {
        double x = c / 255.0;
        return (float) (x <= 0.04045 ? x / 12.92 : pow((x + 0.055) / 1.055, 2.4));
}

static int32_t group_label(const p3_segmentation *s, int group) {
        return group < s->n_parts ? s->part_labels[group] : group == s->n_parts ? -1 : -2;
}

static void group_colour(const p3_segmentation *s, int group, float lin[3]) {
        uint8_t rgb[3];
        p3_segmentation_colour(s, group_label(s, group), rgb);
        for (int i = 0; i < 3; i++)
                lin[i] = srgb_to_linear(rgb[i]);
}

static void prim_start(glb_prim *pr, const glb_geom *g) {
        pr->first_vertex = (int64_t) (g->pos.size / 12);
        pr->first_index = (int64_t) (g->idx.size / 4);
        for (int c = 0; c < 3; c++) {
                pr->min[c] = pr->dmin[c] = INFINITY;
                pr->max[c] = pr->dmax[c] = -INFINITY;
        }
}

static void prim_put(glb_prim *pr, glb_geom *g, const double p[3], const float lin[3]) {
        for (int c = 0; c < 3; c++) {
                float x = (float) p[c];
                pr->min[c] = MIN(pr->min[c], x);
                pr->max[c] = MAX(pr->max[c], x);
                pr->dmin[c] = MIN(pr->dmin[c], p[c]);
                pr->dmax[c] = MAX(pr->dmax[c], p[c]);
                p3_buf_put_f32le(&g->pos, x);
                p3_buf_put_f32le(&g->col, lin[c]);
        }
        pr->n_vertices++;
}

/* Give vertex v of the mesh its number within the primitive, appending it on first use. */
static int32_t glb_vertex(const p3_mesh *m, int32_t v, int32_t *remap, int32_t *touched,
                          glb_geom *g, glb_prim *pr, const float lin[3]) {
        if (remap[v] >= 0)
                return remap[v];
        remap[v] = (int32_t) pr->n_vertices;
        touched[pr->n_vertices] = v;
        prim_put(pr, g, m->v + 3 * (int64_t) v, lin);
        return remap[v];
}

/* One group: its faces' vertices, de-duplicated within the group (a vertex shared by two
 * parts is written once for each, so that each part keeps its own colour). */
static void glb_emit_group(const p3_segmentation *s, const glb_groups *gr, int group,
                           int32_t *remap, int32_t *touched, glb_geom *g) {
        const p3_mesh *m = s->mesh;
        glb_prim *pr = &g->prims[group];
        float lin[3];

        group_colour(s, group, lin);
        prim_start(pr, g);
        pr->faces = gr->start[group + 1] - gr->start[group];
        for (int64_t k = gr->start[group]; k < gr->start[group + 1]; k++) {
                const int32_t *f = m->f + 3 * (int64_t) gr->order[k];
                for (int c = 0; c < 3; c++)
                        p3_buf_put_u32le(&g->idx, (uint32_t) glb_vertex(m, f[c], remap, touched,
                                                                        g, pr, lin));
        }
        for (int64_t i = 0; i < pr->n_vertices; i++)
                remap[touched[i]] = -1;
}

/* A box's 12 edges as 24 line vertices. The corners are centre +- size / 2, as trimesh's
 * box_outline() scaled and moved by upstream's save_mesh, not min and max themselves. */
static void glb_emit_box(const p3_segmentation *s, int part, const double box[2][3],
                         glb_geom *g) {
        glb_prim *pr = &g->boxes[part];
        double centre[3], half[3];
        float lin[3];

        group_colour(s, part, lin);
        prim_start(pr, g);
        for (int c = 0; c < 3; c++) {
                centre[c] = (box[0][c] + box[1][c]) / 2;
                half[c] = (box[1][c] - box[0][c]) * 0.5;
        }
        /* corner k has bit c set for the max side of axis c; an edge flips one bit */
        for (int axis = 0; axis < 3; axis++)
                for (int k = 0; k < 8; k++) {
                        if (k & (1 << axis))
                                continue;
                        for (int end = 0; end < 2; end++) {
                                int corner = k | (end << axis);
                                double p[3];
                                for (int c = 0; c < 3; c++)
                                        p[c] = centre[c] + (corner & (1 << c) ? half[c] : -half[c]);
                                prim_put(pr, g, p, lin);
                        }
                }
}

static int glb_boxes_build(const p3_segmentation *s, const double *boxes, glb_geom *g) {
        g->boxes = calloc((size_t) MAX(s->n_parts, 1), sizeof(glb_prim));
        if (!g->boxes)
                return -ENOMEM;
        for (int i = 0; i < s->n_parts; i++)
                glb_emit_box(s, i, (const double(*)[3]) (boxes + 6 * (size_t) i), g);
        return 0;
}

static int glb_geom_build(const p3_segmentation *s, const glb_groups *gr, const double *boxes,
                          glb_geom *g) {
        const p3_mesh *m = s->mesh;

        g->prims = calloc((size_t) gr->n, sizeof(glb_prim));
        _cleanup_free_ int32_t *remap = malloc(sizeof(int32_t) * (size_t) MAX(m->nv, 1));
        _cleanup_free_ int32_t *touched = malloc(sizeof(int32_t) * (size_t) MAX(m->nv, 1));
        if (!g->prims || !remap || !touched)
                return -ENOMEM;
        for (int64_t i = 0; i < m->nv; i++)
                remap[i] = -1;
        /* the worst case (every face its own vertices) bounds what the appends will need */
        size_t corners = 3 * (size_t) m->nf + (boxes ? 24 * (size_t) s->n_parts : 0);
        p3_buf_reserve(&g->pos, 12 * corners);
        p3_buf_reserve(&g->col, 12 * corners);
        p3_buf_reserve(&g->idx, 4 * corners);
        for (int i = 0; i < gr->n; i++)
                glb_emit_group(s, gr, i, remap, touched, g);
        if (boxes && glb_boxes_build(s, boxes, g) < 0)
                return -ENOMEM;
        if (g->pos.error < 0 || g->col.error < 0 || g->idx.error < 0)
                return -ENOMEM;
        return 0;
}

/* ---- the JSON chunk ------------------------------------------------------------------------ */

/* json-c takes ownership of what is added. Its small allocations are not checked one by
 * one (json-c itself aborts on most of them); the buffers that scale with the mesh are. */
static json_object *jarr_add(json_object *a, json_object *v) {
        json_object_array_add(a, v);
        return v;
}

static json_object *jnum(double d) {
        return isfinite(d) ? json_object_new_double(d) : json_object_new_null();
}

static json_object *jvec(const double *v, int n) {
        json_object *a = json_object_new_array_ext(n);
        for (int i = 0; a && i < n; i++)
                json_object_array_add(a, jnum(v[i]));
        return a;
}

static json_object *jvecf(const float *v, int n) {
        double d[4];
        for (int i = 0; i < n; i++)
                d[i] = v[i];
        return jvec(d, n);
}

static json_object *jobj_kv(json_object *o, const char *key, json_object *v) {
        json_object_object_add(o, key, v);
        return o;
}

static void group_name(const p3_segmentation *s, int group, char name[32]) {
        if (group < s->n_parts)
                snprintf(name, 32, "part_%d", (int) s->part_labels[group]);
        else
                snprintf(name, 32, group == s->n_parts ? "unlabelled" : "unsampled");
}

static json_object *glb_material(const p3_segmentation *s, int group, const char *name) {
        json_object *mat = json_object_new_object(), *pbr = json_object_new_object();
        uint8_t rgb[3];
        float lin[4] = { 1, 1, 1, 1 };

        p3_segmentation_colour(s, group_label(s, group), rgb);
        /* COLOR_0 multiplies baseColorFactor in every conforming viewer (Blender and three.js
         * included), so the colour lives in COLOR_0 alone: a coloured factor would square it.
         * The sRGB colour is kept in extras for tools that want the palette. */
        jobj_kv(pbr, "baseColorFactor", jvecf(lin, 4));
        jobj_kv(pbr, "metallicFactor", json_object_new_double(0.0));
        jobj_kv(pbr, "roughnessFactor", json_object_new_double(1.0));
        jobj_kv(mat, "name", json_object_new_string(name));
        jobj_kv(mat, "pbrMetallicRoughness", pbr);
        /* scanned and generated meshes often have inconsistent winding */
        jobj_kv(mat, "doubleSided", json_object_new_boolean(1));
        json_object *extras = json_object_new_object(), *col = json_object_new_array_ext(3);
        for (int i = 0; i < 3; i++)
                json_object_array_add(col, json_object_new_int(rgb[i]));
        jobj_kv(extras, "colour", col);
        return jobj_kv(mat, "extras", extras);
}

static json_object *glb_accessor(int view, int64_t byte_offset, int comp, int64_t count,
                                 const char *type) {
        json_object *a = json_object_new_object();
        jobj_kv(a, "bufferView", json_object_new_int(view));
        jobj_kv(a, "byteOffset", json_object_new_int64(byte_offset));
        jobj_kv(a, "componentType", json_object_new_int(comp));
        jobj_kv(a, "count", json_object_new_int64(count));
        return jobj_kv(a, "type", json_object_new_string(type));
}

/* Mesh, material and accessors of one non-empty primitive: triangles with indices, or lines
 * without (faces == 0); returns the mesh index. */
static int glb_add_mesh(json_object *root, const p3_segmentation *s, int group,
                        const glb_prim *pr, const char *name) {
        json_object *accs = json_object_object_get(root, "accessors");
        json_object *meshes = json_object_object_get(root, "meshes");
        json_object *mats = json_object_object_get(root, "materials");
        int a0 = (int) json_object_array_length(accs), mat = (int) json_object_array_length(mats);
        bool lines = pr->faces == 0;

        json_object *pos = jarr_add(accs, glb_accessor(0, 12 * pr->first_vertex, GL_FLOAT,
                                                       pr->n_vertices, "VEC3"));
        jobj_kv(pos, "min", jvecf(pr->min, 3));
        jobj_kv(pos, "max", jvecf(pr->max, 3));
        jarr_add(accs, glb_accessor(1, 12 * pr->first_vertex, GL_FLOAT, pr->n_vertices, "VEC3"));
        if (!lines)
                jarr_add(accs, glb_accessor(2, 4 * pr->first_index, GL_UNSIGNED_INT,
                                            3 * pr->faces, "SCALAR"));
        jarr_add(mats, glb_material(s, group, name));

        json_object *attrs = json_object_new_object(), *prim = json_object_new_object();
        jobj_kv(attrs, "POSITION", json_object_new_int(a0));
        jobj_kv(attrs, "COLOR_0", json_object_new_int(a0 + 1));
        jobj_kv(prim, "attributes", attrs);
        if (!lines)
                jobj_kv(prim, "indices", json_object_new_int(a0 + 2));
        jobj_kv(prim, "material", json_object_new_int(mat));
        jobj_kv(prim, "mode", json_object_new_int(lines ? GL_LINES : GL_TRIANGLES));
        json_object *prims = json_object_new_array_ext(1), *mesh = json_object_new_object();
        json_object_array_add(prims, prim);
        jobj_kv(mesh, "name", json_object_new_string(name));
        jobj_kv(mesh, "primitives", prims);
        jarr_add(meshes, mesh);
        return (int) json_object_array_length(meshes) - 1;
}

static json_object *glb_part_node(const p3_segmentation *s, int group, const glb_prim *pr,
                                  int mesh) {
        json_object *node = json_object_new_object(), *extras = json_object_new_object();
        char name[32];
        double box[2][3];

        group_name(s, group, name);
        jobj_kv(node, "name", json_object_new_string(name));
        if (mesh >= 0)
                jobj_kv(node, "mesh", json_object_new_int(mesh));
        jobj_kv(extras, "part", json_object_new_int(group_label(s, group)));
        jobj_kv(extras, "faces", json_object_new_int64(pr->faces));
        /* the unlabelled faces have no box of their own in the input: use their vertices' */
        if (group < s->n_parts)
                memcpy(box, s->aabb + 6 * (size_t) group, sizeof(box));
        else {
                memcpy(box[0], pr->dmin, sizeof(box[0]));
                memcpy(box[1], pr->dmax, sizeof(box[1]));
        }
        json_object *aabb = json_object_new_array_ext(2);
        json_object_array_add(aabb, jvec(box[0], 3));
        json_object_array_add(aabb, jvec(box[1], 3));
        jobj_kv(extras, "aabb", aabb);
        return jobj_kv(node, "extras", extras);
}

static json_object *glb_view(int64_t offset, int64_t length, int stride, int target) {
        json_object *v = json_object_new_object();
        jobj_kv(v, "buffer", json_object_new_int(0));
        jobj_kv(v, "byteOffset", json_object_new_int64(offset));
        jobj_kv(v, "byteLength", json_object_new_int64(length));
        /* required once several accessors share a vertex view; forbidden on index views */
        if (stride > 0)
                jobj_kv(v, "byteStride", json_object_new_int(stride));
        return jobj_kv(v, "target", json_object_new_int(target));
}

/* Buffers and views only when there is geometry: glTF forbids zero-length ones. */
static void glb_add_buffers(json_object *root, const glb_geom *g) {
        size_t np = g->pos.size, nc = g->col.size, ni = g->idx.size;
        if (np == 0)
                return;
        json_object *views = json_object_new_array_ext(3), *bufs = json_object_new_array_ext(1);
        json_object_array_add(views, glb_view(0, (int64_t) np, 12, GL_ARRAY_BUFFER));
        json_object_array_add(views, glb_view((int64_t) np, (int64_t) nc, 12, GL_ARRAY_BUFFER));
        /* box outlines alone (parts without faces) have no indices */
        if (ni > 0)
                json_object_array_add(views, glb_view((int64_t) (np + nc), (int64_t) ni, 0,
                                                      GL_ELEMENT_ARRAY_BUFFER));
        json_object *buf = json_object_new_object();
        jobj_kv(buf, "byteLength", json_object_new_int64((int64_t) (np + nc + ni)));
        json_object_array_add(bufs, buf);
        jobj_kv(root, "bufferViews", views);
        jobj_kv(root, "buffers", bufs);
}

static json_object *glb_skeleton(void) {
        json_object *root = json_object_new_object(), *asset = json_object_new_object();
        jobj_kv(asset, "version", json_object_new_string("2.0"));
        jobj_kv(asset, "generator", json_object_new_string("p3samd " P3_VERSION));
        jobj_kv(root, "asset", asset);
        jobj_kv(root, "scene", json_object_new_int(0));
        json_object *scene = json_object_new_object(), *scenes = json_object_new_array_ext(1);
        json_object *scene_nodes = json_object_new_array_ext(1);
        json_object_array_add(scene_nodes, json_object_new_int(0));
        jobj_kv(scene, "name", json_object_new_string("segmentation"));
        jobj_kv(scene, "nodes", scene_nodes);
        json_object_array_add(scenes, scene);
        jobj_kv(root, "scenes", scenes);
        json_object *nodes = json_object_new_array(), *seg = json_object_new_object();
        jobj_kv(seg, "name", json_object_new_string("segmentation"));
        json_object_array_add(nodes, seg);
        jobj_kv(root, "nodes", nodes);
        jobj_kv(root, "meshes", json_object_new_array());
        jobj_kv(root, "materials", json_object_new_array());
        jobj_kv(root, "accessors", json_object_new_array());
        return root;
}

/* Remove arrays left empty (no geometry at all): glTF requires at least one item. */
static void glb_drop_empty(json_object *root) {
        static const char *const keys[] = { "meshes", "materials", "accessors" };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (json_object_array_length(json_object_object_get(root, keys[i])) == 0)
                        json_object_object_del(root, keys[i]);
}

static void glb_set_children(json_object *node, json_object *children) {
        if (json_object_array_length(children) > 0)
                jobj_kv(node, "children", children);
        else
                json_object_put(children);
}

/* A second root beside "segmentation": one node per part box, named for its part. */
static void glb_add_boxes(json_object *root, const p3_segmentation *s, const glb_geom *g) {
        json_object *nodes = json_object_object_get(root, "nodes");
        json_object *scene = json_object_array_get_idx(json_object_object_get(root, "scenes"), 0);
        json_object *boxes = json_object_new_object(), *children = json_object_new_array();
        int boxes_index = (int) json_object_array_length(nodes);

        jobj_kv(boxes, "name", json_object_new_string("boxes"));
        json_object_array_add(nodes, boxes);
        json_object_array_add(json_object_object_get(scene, "nodes"),
                              json_object_new_int(boxes_index));
        for (int i = 0; i < s->n_parts; i++) {
                json_object *node = json_object_new_object(), *extras = json_object_new_object();
                char name[32];
                snprintf(name, sizeof(name), "box_%d", (int) s->part_labels[i]);
                jobj_kv(node, "name", json_object_new_string(name));
                jobj_kv(node, "mesh", json_object_new_int(glb_add_mesh(root, s, i, &g->boxes[i],
                                                                       name)));
                jobj_kv(extras, "part", json_object_new_int(s->part_labels[i]));
                jobj_kv(node, "extras", extras);
                json_object_array_add(children,
                                      json_object_new_int((int) json_object_array_length(nodes)));
                json_object_array_add(nodes, node);
        }
        glb_set_children(boxes, children);
}

static json_object *glb_json(const p3_segmentation *s, const glb_groups *gr, const glb_geom *g) {
        json_object *root = glb_skeleton();
        if (!root)
                return NULL;
        json_object *nodes = json_object_object_get(root, "nodes");
        json_object *children = json_object_new_array();
        for (int i = 0; i < gr->n; i++) {
                const glb_prim *pr = &g->prims[i];
                char name[32];
                /* no node for the unlabelled groups when every face has a part */
                if (i >= s->n_parts && pr->faces == 0)
                        continue;
                group_name(s, i, name);
                int mesh = pr->faces > 0 ? glb_add_mesh(root, s, i, pr, name) : -1;
                json_object_array_add(children,
                                      json_object_new_int((int) json_object_array_length(nodes)));
                json_object_array_add(nodes, glb_part_node(s, i, pr, mesh));
        }
        glb_set_children(json_object_array_get_idx(nodes, 0), children);
        if (g->boxes)
                glb_add_boxes(root, s, g);
        glb_add_buffers(root, g);
        glb_drop_empty(root);
        return root;
}

/* ---- the container ------------------------------------------------------------------------- */

static int glb_assemble(const char *json, const glb_geom *g, p3_buf *out) {
        size_t jlen = strlen(json), jpad = (4 - jlen % 4) % 4;
        size_t blen = g->pos.size + g->col.size + g->idx.size, bpad = (4 - blen % 4) % 4;
        size_t total = 12 + 8 + jlen + jpad + (blen > 0 ? 8 + blen + bpad : 0);

        if (total > UINT32_MAX)
                return -EFBIG;
        p3_buf_reserve(out, total);
        p3_buf_put_u32le(out, GLB_MAGIC);
        p3_buf_put_u32le(out, 2);
        p3_buf_put_u32le(out, (uint32_t) total);
        p3_buf_put_u32le(out, (uint32_t) (jlen + jpad));
        p3_buf_put_u32le(out, GLB_CHUNK_JSON);
        p3_buf_append(out, json, jlen);
        p3_buf_fill(out, ' ', jpad);
        if (blen > 0) {
                p3_buf_put_u32le(out, (uint32_t) (blen + bpad));
                p3_buf_put_u32le(out, GLB_CHUNK_BIN);
                p3_buf_append(out, g->pos.data, g->pos.size);
                p3_buf_append(out, g->col.data, g->col.size);
                p3_buf_append(out, g->idx.data, g->idx.size);
                p3_buf_fill(out, 0, bpad);
        }
        return out->error;
}

static int glb_build(const p3_segmentation *s, const double *boxes, p3_buf *out, p3_err *err) {
        _cleanup_(glb_groups_done) glb_groups gr = {};
        _cleanup_(glb_geom_done) glb_geom g = {};

        if (glb_groups_build(s, &gr) < 0 || glb_geom_build(s, &gr, boxes, &g) < 0)
                return p3_errf(err, -ENOMEM, "cannot build the GLB geometry: out of memory");
        _cleanup_(json_object_putp) json_object *root = glb_json(s, &gr, &g);
        const char *json = root ? json_object_to_json_string_ext(
                                          root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                                : NULL;
        if (!json)
                return p3_errf(err, -ENOMEM, "cannot build the GLB JSON: out of memory");
        int r = glb_assemble(json, &g, out);
        if (r == -EFBIG)
                return p3_errf(err, r, "the GLB would exceed the format's 4 GiB limit");
        if (r < 0)
                return p3_errf(err, r, "cannot assemble the GLB: out of memory");
        return 0;
}

static int glb_write(const p3_segmentation *s, const double *boxes, int fd, p3_err *err) {
        _cleanup_buf_ p3_buf out = {};

        int r = glb_build(s, boxes, &out, err);
        if (r < 0)
                return r;
        r = p3_buf_write_fd(&out, fd);
        if (r < 0)
                return p3_errf(err, r, "cannot write the GLB: %s", p3_strerror(r));
        return 0;
}

int p3_export_glb(const p3_segmentation *s, int fd, p3_err *err) {
        int r = p3_segmentation_check(s, err);
        if (r < 0)
                return r;
        return glb_write(s, NULL, fd, err);
}

int p3_export_aabb_glb(const p3_segmentation *s, int fd, p3_err *err) {
        int r = p3_segmentation_check(s, err);
        if (r < 0)
                return r;
        _cleanup_free_ double *boxes = malloc(sizeof(double) * 6 * (size_t) MAX(s->n_parts, 1));
        if (!boxes || p3_segmentation_outline_boxes(s, boxes) < 0)
                return p3_errf(err, -ENOMEM, "cannot compute the part boxes: out of memory");
        return glb_write(s, boxes, fd, err);
}
