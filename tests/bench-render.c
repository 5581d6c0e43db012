/* SPDX-License-Identifier: MIT */
/* The picture of the parts on a 100,000-face mesh (a sphere in 8 parts, some faces
 * unlabelled): the rasteriser alone, with the outline boxes, and the whole PNG (render +
 * libpng) at 1024 x 1024; and the upstream files beside it. Prints milliseconds (best of 5);
 * asserts nothing about time. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "export.h"
#include "render_parts.h"
#include "test-util.h"

#define RINGS 224
#define SEGS 224 /* 2 * RINGS * SEGS = 100,352 faces */

static double now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

typedef struct sphere {
        double *v;
        int32_t *f, *ids;
        int32_t labels[8];
        double aabb[8][6];
        p3_mesh mesh;
        p3_segmentation seg;
} sphere;

static void sphere_init(sphere *s) {
        int nv = (RINGS + 1) * SEGS, nf = 2 * RINGS * SEGS;
        s->v = malloc(sizeof(double) * 3 * nv);
        s->f = malloc(sizeof(int32_t) * 3 * nf);
        s->ids = malloc(sizeof(int32_t) * nf);
        CHECK(s->v && s->f && s->ids);
        for (int r = 0; r <= RINGS; r++)
                for (int k = 0; k < SEGS; k++) {
                        double th = M_PI * r / RINGS, ph = 2 * M_PI * k / SEGS;
                        double *p = s->v + 3 * (r * SEGS + k);
                        p[0] = sin(th) * cos(ph);
                        p[1] = cos(th);
                        p[2] = sin(th) * sin(ph) * 0.7;
                }
        int64_t i = 0;
        for (int r = 0; r < RINGS; r++)
                for (int k = 0; k < SEGS; k++) {
                        int32_t a = r * SEGS + k, b = r * SEGS + (k + 1) % SEGS;
                        int32_t c = a + SEGS, d = b + SEGS;
                        int32_t quad[2][3] = { { a, c, b }, { b, c, d } };
                        for (int t = 0; t < 2; t++, i++) {
                                memcpy(s->f + 3 * i, quad[t], sizeof(quad[t]));
                                int part = (r * 2 / RINGS) * 4 + k * 4 / SEGS;
                                s->ids[i] = (r + k) % 97 == 0 ? -1 : part;
                        }
                }
        for (int p = 0; p < 8; p++) {
                s->labels[p] = p;
                for (int c = 0; c < 3; c++) {
                        s->aabb[p][c] = INFINITY;
                        s->aabb[p][3 + c] = -INFINITY;
                }
        }
        for (int64_t j = 0; j < 3 * (int64_t) nf; j++) {
                int32_t l = s->ids[j / 3];
                if (l < 0)
                        continue;
                for (int c = 0; c < 3; c++) {
                        double x = s->v[3 * (int64_t) s->f[j] + c];
                        s->aabb[l][c] = fmin(s->aabb[l][c], x);
                        s->aabb[l][3 + c] = fmax(s->aabb[l][3 + c], x);
                }
        }
        s->mesh = (p3_mesh) { .nv = nv, .nf = nf, .v = s->v, .f = s->f };
        s->seg = (p3_segmentation) { .mesh = &s->mesh, .face_ids = s->ids, .n_parts = 8,
                                     .part_labels = s->labels, .aabb = &s->aabb[0][0] };
}

typedef int (*job)(const sphere *s, const p3_render_opts *o, uint8_t *rgba, int fd);

static int render(const sphere *s, const p3_render_opts *o, uint8_t *rgba, int fd) {
        p3_err err = {};
        (void) fd;
        return p3_render_parts(&s->seg, o, rgba, &err);
}

static int png(const sphere *s, const p3_render_opts *o, uint8_t *rgba, int fd) {
        p3_err err = {};
        (void) rgba;
        return p3_export_png(&s->seg, o, fd, &err);
}

static int aabb_glb(const sphere *s, const p3_render_opts *o, uint8_t *rgba, int fd) {
        p3_err err = {};
        (void) o, (void) rgba;
        return p3_export_aabb_glb(&s->seg, fd, &err);
}

static int npys(const sphere *s, const p3_render_opts *o, uint8_t *rgba, int fd) {
        p3_err err = {};
        (void) o, (void) rgba;
        int r = p3_export_face_ids_npy(&s->seg, fd, &err);
        return r < 0 ? r : p3_export_aabb_npy(&s->seg, fd, &err);
}

static void bench(const char *what, job j, const sphere *s, const p3_render_opts *o,
                  uint8_t *rgba, int fd) {
        double best = INFINITY;
        for (int i = 0; i < 5; i++) {
                double t = now_ms();
                CHECK_OK(j(s, o, rgba, fd));
                best = fmin(best, now_ms() - t);
        }
        printf("%-40s %8.1f ms\n", what, best);
}

int main(void) {
        sphere s;
        sphere_init(&s);
        int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        CHECK(fd >= 0);
        p3_render_opts o;
        p3_render_opts_default(&o);
        uint8_t *rgba = malloc(4 * (size_t) o.size * o.size);
        CHECK(rgba);
        printf("mesh: %lld faces, %lld vertices, 8 parts; picture %d x %d, 4 views\n",
               (long long) s.mesh.nf, (long long) s.mesh.nv, o.size, o.size);
        bench("render (rasterise 4 views)", render, &s, &o, rgba, fd);
        o.boxes = true;
        bench("render with outline boxes", render, &s, &o, rgba, fd);
        o.boxes = false;
        bench("PNG (render + libpng + write)", png, &s, &o, rgba, fd);
        bench("aabb GLB (mesh + 8 outline boxes)", aabb_glb, &s, &o, rgba, fd);
        bench("face_ids.npy + aabb.npy", npys, &s, &o, rgba, fd);
        free(rgba);
        free(s.v);
        free(s.f);
        free(s.ids);
        close(fd);
        return 0;
}
