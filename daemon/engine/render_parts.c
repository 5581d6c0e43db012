/* SPDX-License-Identifier: MIT */
/* The CPU rasteriser behind the PNG: project the vertices once per view, then per face a
 * bounding box of pixel centres tested against the three edge functions, depth interpolated
 * from the barycentric weights, the nearest face winning. */
#include "render_parts.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

#define AMBIENT 0.3f
#define DIFFUSE 0.7f
#define MARGIN 0.06 /* share of a tile left free on each side */

void p3_render_opts_default(p3_render_opts *o) {
        *o = (p3_render_opts) { .size = P3_RENDER_DEFAULT_SIZE };
}

/* A view: right, up and towards-the-viewer axes (orthonormal), and where its tile sits. */
typedef struct view {
        double r[3], u[3], d[3];
        int x0, y0, tile;
} view;

typedef struct frame {
        const p3_segmentation *s;
        int size;
        uint8_t *rgba;
        float *depth;   /* [tile * tile] of the view being drawn */
        float *px;      /* [nv][3] the vertices in screen space: x, y (pixels), depth */
        float *normal;  /* [nf][3] unit face normals, world space */
        uint8_t *col;   /* [nf][3] face colours */
        double scale, cx, cy;
} frame;

static void frame_done(frame *f) {
        free(f->depth);
        free(f->px);
        free(f->normal);
        free(f->col);
}

static double dot3(const double *a, const double *b) {
        return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

static void cross3(const double *a, const double *b, double *out) {
        out[0] = a[1] * b[2] - a[2] * b[1];
        out[1] = a[2] * b[0] - a[0] * b[2];
        out[2] = a[0] * b[1] - a[1] * b[0];
}

static void normalise3(double *v) {
        double n = sqrt(dot3(v, v));
        if (n > 0)
                for (int c = 0; c < 3; c++)
                        v[c] /= n;
}

/* The basis of a camera looking along -towards, with up_hint roughly up on screen. */
static void view_basis(view *v, double tx, double ty, double tz, const double up_hint[3]) {
        double d[3] = { tx, ty, tz };
        normalise3(d);
        cross3(up_hint, d, v->r);
        normalise3(v->r);
        cross3(d, v->r, v->u);
        memcpy(v->d, d, sizeof(d));
}

static void views_init(view v[4], int size) {
        static const double y_up[3] = { 0, 1, 0 }, z_back[3] = { 0, 0, -1 };
        int tile = size / 2;
        view_basis(&v[0], 0, 0, 1, y_up);        /* front */
        view_basis(&v[1], 1, 0, 0, y_up);        /* side */
        view_basis(&v[2], 0, 1, 0, z_back);      /* top */
        view_basis(&v[3], 1, 0.8, 1, y_up);      /* three-quarter, about 30 degrees up */
        for (int i = 0; i < 4; i++) {
                v[i].tile = tile;
                v[i].x0 = (i % 2) * tile;
                v[i].y0 = (i / 2) * tile;
        }
}

static void face_colour(const p3_segmentation *s, int32_t label, uint8_t rgb[3]) {
        if (p3_segmentation_part(s, label) >= 0)
                p3_segmentation_colour(s, label, rgb);
        else
                p3_part_colour(-1, rgb); /* grey: the picture is about the parts */
}

static int frame_init(frame *f, const p3_segmentation *s, int size, uint8_t *rgba) {
        const p3_mesh *m = s->mesh;
        int tile = size / 2;
        *f = (frame) { .s = s, .size = size, .rgba = rgba };
        f->depth = malloc(sizeof(float) * (size_t) tile * tile);
        f->px = malloc(sizeof(float) * 3 * (size_t) MAX(m->nv, 1));
        f->normal = malloc(sizeof(float) * 3 * (size_t) MAX(m->nf, 1));
        f->col = malloc(3 * (size_t) MAX(m->nf, 1));
        if (!f->depth || !f->px || !f->normal || !f->col)
                return -ENOMEM;
        int32_t cached = INT32_MIN;
        uint8_t rgb[3] = {};
        for (int64_t i = 0; i < m->nf; i++) {
                const int32_t *t = m->f + 3 * i;
                double e1[3], e2[3], n[3];
                for (int c = 0; c < 3; c++) {
                        e1[c] = m->v[3 * (int64_t) t[1] + c] - m->v[3 * (int64_t) t[0] + c];
                        e2[c] = m->v[3 * (int64_t) t[2] + c] - m->v[3 * (int64_t) t[0] + c];
                }
                cross3(e1, e2, n);
                normalise3(n);
                for (int c = 0; c < 3; c++)
                        f->normal[3 * i + c] = (float) n[c];
                if (s->face_ids[i] != cached) {
                        face_colour(s, s->face_ids[i], rgb);
                        cached = s->face_ids[i];
                }
                memcpy(f->col + 3 * i, rgb, 3);
        }
        return 0;
}

/* Fit the view to the projected bounds of the vertices the faces use. */
static void fit(frame *f, const view *v) {
        const p3_mesh *m = f->s->mesh;
        double lo[2] = { INFINITY, INFINITY }, hi[2] = { -INFINITY, -INFINITY };
        for (int64_t i = 0; i < 3 * m->nf; i++) {
                const double *p = m->v + 3 * (int64_t) m->f[i];
                double x = dot3(p, v->r), y = dot3(p, v->u);
                lo[0] = MIN(lo[0], x);
                hi[0] = MAX(hi[0], x);
                lo[1] = MIN(lo[1], y);
                hi[1] = MAX(hi[1], y);
        }
        double extent = MAX(hi[0] - lo[0], hi[1] - lo[1]);
        f->scale = extent > 0 ? v->tile * (1 - 2 * MARGIN) / extent : 1;
        f->cx = (lo[0] + hi[0]) / 2;
        f->cy = (lo[1] + hi[1]) / 2;
}

/* Pixel coordinates within the tile: x right, y down, the centre of pixel (i, j) at
 * (i + 0.5, j + 0.5). */
static void project_point(const frame *f, const view *v, const double *p, float out[3]) {
        out[0] = (float) (v->tile / 2.0 + (dot3(p, v->r) - f->cx) * f->scale);
        out[1] = (float) (v->tile / 2.0 - (dot3(p, v->u) - f->cy) * f->scale);
        out[2] = (float) dot3(p, v->d);
}

static void project(frame *f, const view *v) {
        const p3_mesh *m = f->s->mesh;
        for (int64_t i = 0; i < m->nv; i++)
                project_point(f, v, m->v + 3 * i, f->px + 3 * i);
}

static void put_pixel(frame *f, const view *v, int x, int y, const uint8_t rgb[3], float k) {
        uint8_t *p = f->rgba + 4 * ((size_t) (v->y0 + y) * f->size + (size_t) (v->x0 + x));
        for (int c = 0; c < 3; c++)
                p[c] = (uint8_t) lrintf(MIN(rgb[c] * k, 255.0f));
        p[3] = 255;
}

/* Lambert on both sides (meshes' winding is often inconsistent) with the light above, left
 * of and behind the viewer, the same in every view. */
static float shade(const frame *f, const view *v, int64_t face) {
        static const double light[3] = { -0.40, 0.60, 0.69 };
        const float *n = f->normal + 3 * face;
        double nv[3] = { 0, 0, 0 };
        for (int c = 0; c < 3; c++) {
                nv[0] += n[c] * v->r[c];
                nv[1] += n[c] * v->u[c];
                nv[2] += n[c] * v->d[c];
        }
        return AMBIENT + DIFFUSE * (float) fabs(dot3(nv, light));
}

static float edge(const float *a, const float *b, float x, float y) {
        return (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0]);
}

static void raster_face(frame *f, const view *v, int64_t face) {
        const int32_t *t = f->s->mesh->f + 3 * face;
        const float *a = f->px + 3 * (int64_t) t[0], *b = f->px + 3 * (int64_t) t[1],
                    *c = f->px + 3 * (int64_t) t[2];
        float area = edge(a, b, c[0], c[1]);
        if (fabsf(area) < 1e-12f)
                return;
        int xmin = MAX((int) floorf(MIN(a[0], MIN(b[0], c[0]))), 0);
        int xmax = MIN((int) ceilf(MAX(a[0], MAX(b[0], c[0]))), v->tile - 1);
        int ymin = MAX((int) floorf(MIN(a[1], MIN(b[1], c[1]))), 0);
        int ymax = MIN((int) ceilf(MAX(a[1], MAX(b[1], c[1]))), v->tile - 1);
        if (xmin > xmax || ymin > ymax)
                return;
        float inv = 1.0f / area, k = shade(f, v, face);
        for (int y = ymin; y <= ymax; y++)
                for (int x = xmin; x <= xmax; x++) {
                        float px = x + 0.5f, py = y + 0.5f;
                        float w0 = edge(b, c, px, py) * inv, w1 = edge(c, a, px, py) * inv;
                        float w2 = 1.0f - w0 - w1;
                        if (w0 < 0 || w1 < 0 || w2 < 0)
                                continue;
                        float z = w0 * a[2] + w1 * b[2] + w2 * c[2];
                        float *zb = f->depth + (size_t) y * v->tile + x;
                        if (z <= *zb)
                                continue;
                        *zb = z;
                        put_pixel(f, v, x, y, f->col + 3 * face, k);
                }
}

/* A square dot of side `thick` around (x, y), clipped to the tile. */
static void dot(frame *f, const view *v, float x, float y, int thick, const uint8_t rgb[3]) {
        int x0 = (int) floorf(x - thick / 2.0f), y0 = (int) floorf(y - thick / 2.0f);
        for (int j = MAX(y0, 0); j < MIN(y0 + thick, v->tile); j++)
                for (int i = MAX(x0, 0); i < MIN(x0 + thick, v->tile); i++)
                        put_pixel(f, v, i, j, rgb, 1.0f);
}

static void line(frame *f, const view *v, const float *a, const float *b, int thick,
                 const uint8_t rgb[3]) {
        float dx = b[0] - a[0], dy = b[1] - a[1];
        int steps = (int) ceilf(MAX(fabsf(dx), fabsf(dy))) + 1;
        for (int i = 0; i <= steps; i++)
                dot(f, v, a[0] + dx * i / steps, a[1] + dy * i / steps, thick, rgb);
}

/* The outline boxes over the shaded mesh (no depth test, so that hidden edges show as
 * upstream's line outlines do in a viewer), in a darker shade of the part's colour so that
 * they stand out on the part itself. */
static void draw_boxes(frame *f, const view *v, const double *boxes) {
        int thick = MAX(1, f->size / 512);
        for (int p = 0; p < f->s->n_parts; p++) {
                const double *box = boxes + 6 * (size_t) p;
                float corner[8][3];
                uint8_t rgb[3];
                for (int k = 0; k < 8; k++) {
                        double q[3];
                        for (int c = 0; c < 3; c++)
                                q[c] = box[(k >> c & 1) ? 3 + c : c];
                        project_point(f, v, q, corner[k]);
                }
                p3_segmentation_colour(f->s, f->s->part_labels[p], rgb);
                for (int c = 0; c < 3; c++)
                        rgb[c] = (uint8_t) (rgb[c] * 6 / 10);
                for (int k = 0; k < 8; k++)
                        for (int axis = 0; axis < 3; axis++)
                                if (!(k & (1 << axis)))
                                        line(f, v, corner[k], corner[k | (1 << axis)], thick,
                                             rgb);
        }
}

static void draw_view(frame *f, const view *v, const double *boxes) {
        const p3_mesh *m = f->s->mesh;
        for (size_t i = 0; i < (size_t) v->tile * v->tile; i++)
                f->depth[i] = -INFINITY;
        fit(f, v);
        project(f, v);
        for (int64_t i = 0; i < m->nf; i++)
                raster_face(f, v, i);
        if (boxes)
                draw_boxes(f, v, boxes);
}

static void background(uint8_t *rgba, int size, bool transparent) {
        size_t n = (size_t) size * size;
        if (transparent)
                memset(rgba, 0, 4 * n);
        else
                memset(rgba, 255, 4 * n);
}

int p3_render_parts(const p3_segmentation *s, const p3_render_opts *o, uint8_t *rgba,
                    p3_err *err) {
        p3_render_opts def;
        _cleanup_(frame_done) frame f = {};
        _cleanup_free_ double *boxes = NULL;
        view v[4];

        if (!o) {
                p3_render_opts_default(&def);
                o = &def;
        }
        if (o->size < P3_RENDER_MIN_SIZE || o->size > P3_RENDER_MAX_SIZE)
                return p3_errf(err, -EINVAL, "the picture's size must be between %d and %d pixels",
                               P3_RENDER_MIN_SIZE, P3_RENDER_MAX_SIZE);
        int r = p3_segmentation_check(s, err);
        if (r < 0)
                return r;
        if (frame_init(&f, s, o->size, rgba) < 0)
                return p3_errf(err, -ENOMEM, "cannot draw the picture: out of memory");
        if (o->boxes) {
                boxes = malloc(sizeof(double) * 6 * (size_t) MAX(s->n_parts, 1));
                if (!boxes || p3_segmentation_outline_boxes(s, boxes) < 0)
                        return p3_errf(err, -ENOMEM, "cannot draw the part boxes: out of memory");
        }
        background(rgba, o->size, o->transparent);
        views_init(v, o->size);
        if (s->mesh->nf == 0)
                return 0;
        for (int i = 0; i < 4; i++)
                draw_view(&f, &v[i], boxes);
        return 0;
}
