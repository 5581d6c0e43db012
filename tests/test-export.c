/* SPDX-License-Identifier: MIT */
/* Exporters: two labelled cubes written as GLB, PLY and JSON into a temporary file and read
 * back (the GLB chunk by chunk, and through assimp when the build has it); descriptors that
 * fail; a segmentation with no parts; and a bad one, which must write nothing. */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef P3_HAVE_ASSIMP
#include <assimp/cimport.h>
#include <assimp/scene.h>
#endif

#include "export.h"
#include "test-util.h"

/* ---- the test mesh -------------------------------------------------------------------------- */

/* A unit cube's corners (index x + 2y + 4z) and 12 outward triangles. */
static const int32_t cube_faces[12][3] = {
        { 0, 2, 3 }, { 0, 3, 1 }, { 4, 5, 7 }, { 4, 7, 6 }, { 0, 1, 5 }, { 0, 5, 4 },
        { 2, 6, 7 }, { 2, 7, 3 }, { 0, 4, 6 }, { 0, 6, 2 }, { 1, 3, 7 }, { 1, 7, 5 },
};

typedef struct fixture {
        double v[16 * 3];
        int32_t f[24 * 3];
        int32_t ids[24];
        int32_t labels[2];
        double aabb[2][2][3];
        p3_mesh mesh;
        p3_segmentation seg;
} fixture;

/* Two unit cubes, the second shifted by 2 along x: faces 0-11 get labels[0], 12-23
 * labels[1]. */
static void fixture_init(fixture *fx, int32_t l0, int32_t l1) {
        *fx = (fixture) {};
        for (int c = 0; c < 2; c++) {
                for (int i = 0; i < 8; i++) {
                        fx->v[3 * (8 * c + i)] = (i & 1) + 2.0 * c;
                        fx->v[3 * (8 * c + i) + 1] = (i >> 1) & 1;
                        fx->v[3 * (8 * c + i) + 2] = (i >> 2) & 1;
                }
                for (int j = 0; j < 12; j++) {
                        for (int k = 0; k < 3; k++)
                                fx->f[3 * (12 * c + j) + k] = cube_faces[j][k] + 8 * c;
                        fx->ids[12 * c + j] = c ? l1 : l0;
                }
                for (int k = 0; k < 3; k++) {
                        fx->aabb[c][0][k] = k == 0 ? 2.0 * c : 0;
                        fx->aabb[c][1][k] = k == 0 ? 2.0 * c + 1 : 1;
                }
        }
        fx->labels[0] = l0;
        fx->labels[1] = l1;
        fx->mesh = (p3_mesh) { .nv = 16, .nf = 24, .v = fx->v, .f = fx->f };
        fx->seg = (p3_segmentation) { .mesh = &fx->mesh, .face_ids = fx->ids, .n_parts = 2,
                                      .part_labels = fx->labels, .aabb = &fx->aabb[0][0][0] };
}

/* ---- files ---------------------------------------------------------------------------------- */

static int tmp_fd(void) {
        FILE *f = tmpfile();
        CHECK(f);
        int fd = dup(fileno(f));
        fclose(f);
        CHECK(fd >= 0);
        return fd;
}

/* The whole file, NUL-terminated for the text formats. */
static uint8_t *slurp(int fd, size_t *size) {
        struct stat st;
        CHECK(fstat(fd, &st) == 0);
        uint8_t *d = malloc((size_t) st.st_size + 1);
        CHECK(d);
        CHECK(pread(fd, d, (size_t) st.st_size, 0) == st.st_size);
        d[st.st_size] = 0;
        *size = (size_t) st.st_size;
        return d;
}

typedef enum fmt { FMT_GLB, FMT_PLY_ASCII, FMT_PLY_BINARY, FMT_JSON } fmt;

static int export_to(const p3_segmentation *s, fmt f, const p3_report *rep, int fd, p3_err *err) {
        switch (f) {
        case FMT_GLB:
                return p3_export_glb(s, fd, err);
        case FMT_PLY_ASCII:
                return p3_export_ply(s, fd, true, err);
        case FMT_PLY_BINARY:
                return p3_export_ply(s, fd, false, err);
        case FMT_JSON:
                return p3_export_json(s, rep, fd, err);
        }
        abort();
}

static uint8_t *export_mem(const p3_segmentation *s, fmt f, const p3_report *rep, size_t *size) {
        p3_err err = {};
        int fd = tmp_fd();
        int r = export_to(s, f, rep, fd, &err);
        if (r < 0) {
                fprintf(stderr, "export %d failed: %s\n", (int) f, p3_err_msg(&err, r));
                exit(EXIT_FAILURE);
        }
        uint8_t *d = slurp(fd, size);
        close(fd);
        return d;
}

static uint32_t u32le(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
               (uint32_t) p[3] << 24;
}

static float f32le(const uint8_t *p) {
        uint32_t u = u32le(p);
        float x;
        memcpy(&x, &u, sizeof(x));
        return x;
}

static json_object *jget(json_object *o, const char *key) {
        json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v)) {
                fprintf(stderr, "missing key %s\n", key);
                exit(EXIT_FAILURE);
        }
        return v;
}

static int64_t jint(json_object *o, const char *key) {
        return json_object_get_int64(jget(o, key));
}

static json_object *jidx(json_object *a, size_t i) {
        CHECK(json_object_is_type(a, json_type_array) && i < json_object_array_length(a));
        return json_object_array_get_idx(a, i);
}

/* ---- GLB ------------------------------------------------------------------------------------ */

typedef struct glb {
        json_object *json;
        const uint8_t *bin;
        size_t bin_size;
} glb;

/* Header and chunks as the spec lays them out; returns the parsed JSON chunk. */
static glb glb_parse(const uint8_t *d, size_t n) {
        glb g = {};

        CHECK(n >= 20 && n % 4 == 0);
        CHECK(u32le(d) == 0x46546C67u && u32le(d + 4) == 2 && u32le(d + 8) == n);
        size_t jlen = u32le(d + 12);
        CHECK(u32le(d + 16) == 0x4E4F534Au && jlen % 4 == 0 && 20 + jlen <= n);
        char *text = strndup((const char *) d + 20, jlen);
        CHECK(text);
        /* padding is spaces, which any JSON parser skips */
        for (size_t i = strlen(text); i < jlen; i++)
                CHECK(d[20 + i] == ' ');
        g.json = json_tokener_parse(text);
        free(text);
        CHECK(g.json);
        if (20 + jlen < n) {
                const uint8_t *c = d + 20 + jlen;
                CHECK(20 + jlen + 8 <= n);
                g.bin_size = u32le(c);
                CHECK(u32le(c + 4) == 0x004E4942u && g.bin_size % 4 == 0);
                CHECK(28 + jlen + g.bin_size == n);
                g.bin = c + 8;
        }
        return g;
}

/* An accessor's bytes lie inside its view and the view inside the BIN chunk, all aligned. */
static const uint8_t *glb_accessor(const glb *g, int idx, int comp, const char *type,
                                   int64_t *count) {
        json_object *a = jidx(jget(g->json, "accessors"), (size_t) idx);
        json_object *v = jidx(jget(g->json, "bufferViews"), (size_t) jint(a, "bufferView"));
        int64_t off = jint(a, "byteOffset"), voff = jint(v, "byteOffset"), vlen = jint(v, "byteLength");
        int ncomp = strcmp(type, "VEC3") == 0 ? 3 : 1;

        CHECK(jint(a, "componentType") == comp);
        CHECK(strcmp(json_object_get_string(jget(a, "type")), type) == 0);
        *count = jint(a, "count");
        CHECK(*count > 0 && off % 4 == 0 && voff % 4 == 0 && vlen % 4 == 0);
        CHECK(off + *count * 4 * ncomp <= vlen);
        CHECK(jint(v, "buffer") == 0 && (size_t) (voff + vlen) <= g->bin_size);
        CHECK((size_t) (voff + vlen) <= (size_t) jint(jidx(jget(g->json, "buffers"), 0), "byteLength"));
        return g->bin + voff + off;
}

/* A mesh's data: indices inside its vertices, positions within the accessor bounds, one
 * colour for all. Returns the face count. */
static int64_t glb_check_mesh(const glb *g, int mesh, int64_t *n_vertices) {
        json_object *prim = jidx(jget(jidx(jget(g->json, "meshes"), (size_t) mesh), "primitives"), 0);
        json_object *attrs = jget(prim, "attributes");
        int64_t nv, nc, ni;

        CHECK(jint(prim, "mode") == 4);
        const uint8_t *pos = glb_accessor(g, (int) jint(attrs, "POSITION"), 5126, "VEC3", &nv);
        const uint8_t *col = glb_accessor(g, (int) jint(attrs, "COLOR_0"), 5126, "VEC3", &nc);
        const uint8_t *idx = glb_accessor(g, (int) jint(prim, "indices"), 5125, "SCALAR", &ni);
        CHECK(nc == nv && ni % 3 == 0);
        for (int64_t i = 0; i < ni; i++)
                CHECK(u32le(idx + 4 * i) < (uint64_t) nv);
        json_object *pa = jidx(jget(g->json, "accessors"), (size_t) jint(attrs, "POSITION"));
        for (int64_t i = 0; i < nv; i++)
                for (int c = 0; c < 3; c++) {
                        float x = f32le(pos + 12 * i + 4 * c);
                        CHECK(x >= json_object_get_double(jidx(jget(pa, "min"), (size_t) c)));
                        CHECK(x <= json_object_get_double(jidx(jget(pa, "max"), (size_t) c)));
                        CHECK(f32le(col + 12 * i + 4 * c) == f32le(col + 4 * c));
                }
        CHECK(jint(prim, "material") < (int64_t) json_object_array_length(jget(g->json, "materials")));
        *n_vertices = nv;
        return ni / 3;
}

typedef struct want_node {
        const char *name;
        int32_t part;
        int64_t faces, vertices;
} want_node;

static void glb_check(const uint8_t *d, size_t n, const want_node *want, size_t n_want) {
        glb g = glb_parse(d, n);
        json_object *asset = jget(g.json, "asset");

        CHECK(strcmp(json_object_get_string(jget(asset, "version")), "2.0") == 0);
        CHECK(strncmp(json_object_get_string(jget(asset, "generator")), "p3samd", 6) == 0);
        json_object *scene = jidx(jget(g.json, "scenes"), (size_t) jint(g.json, "scene"));
        json_object *nodes = jget(g.json, "nodes");
        json_object *root = jidx(nodes, (size_t) json_object_get_int(jidx(jget(scene, "nodes"), 0)));
        CHECK(strcmp(json_object_get_string(jget(root, "name")), "segmentation") == 0);
        json_object *children = NULL;
        json_object_object_get_ex(root, "children", &children);
        CHECK((children ? json_object_array_length(children) : 0) == n_want);
        for (size_t i = 0; i < n_want; i++) {
                json_object *node = jidx(nodes, (size_t) json_object_get_int(jidx(children, i)));
                json_object *extras = jget(node, "extras"), *mesh = NULL;
                CHECK(strcmp(json_object_get_string(jget(node, "name")), want[i].name) == 0);
                CHECK(jint(extras, "part") == want[i].part && jint(extras, "faces") == want[i].faces);
                CHECK(json_object_array_length(jget(extras, "aabb")) == 2);
                if (!json_object_object_get_ex(node, "mesh", &mesh)) {
                        CHECK(want[i].faces == 0);
                        continue;
                }
                int64_t nv = 0;
                CHECK(glb_check_mesh(&g, json_object_get_int(mesh), &nv) == want[i].faces);
                CHECK(nv == want[i].vertices);
                json_object *m = jidx(jget(g.json, "meshes"), (size_t) json_object_get_int(mesh));
                CHECK(strcmp(json_object_get_string(jget(m, "name")), want[i].name) == 0);
        }
        json_object_put(g.json);
}

#ifdef P3_HAVE_ASSIMP
static const struct aiNode *ai_find(const struct aiNode *n, const char *name) {
        if (strcmp(n->mName.data, name) == 0)
                return n;
        for (unsigned i = 0; i < n->mNumChildren; i++) {
                const struct aiNode *r = ai_find(n->mChildren[i], name);
                if (r)
                        return r;
        }
        return NULL;
}

static void glb_check_assimp(const uint8_t *d, size_t n, int64_t faces, const want_node *want,
                             size_t n_want) {
        const struct aiScene *sc = aiImportFileFromMemory((const char *) d, (unsigned) n, 0, "glb");
        if (!sc) {
                fprintf(stderr, "assimp: %s\n", aiGetErrorString());
                exit(EXIT_FAILURE);
        }
        int64_t total = 0;
        for (unsigned i = 0; i < sc->mNumMeshes; i++) {
                total += sc->mMeshes[i]->mNumFaces;
                CHECK(sc->mMeshes[i]->mColors[0]);
        }
        CHECK(total == faces);
        CHECK(ai_find(sc->mRootNode, "segmentation"));
        for (size_t i = 0; i < n_want; i++)
                CHECK(ai_find(sc->mRootNode, want[i].name));
        printf("assimp: %u meshes, %" PRId64 " faces\n", sc->mNumMeshes, total);
        aiReleaseImport(sc);
}
#endif

static void test_glb(void) {
        fixture fx;
        size_t n;

        fixture_init(&fx, 0, 1);
        _cleanup_free_ uint8_t *d = export_mem(&fx.seg, FMT_GLB, NULL, &n);
        const want_node want[] = { { "part_0", 0, 12, 8 }, { "part_1", 1, 12, 8 } };
        glb_check(d, n, want, ELEMENTSOF(want));
#ifdef P3_HAVE_ASSIMP
        glb_check_assimp(d, n, 24, want, ELEMENTSOF(want));
#endif

        /* gaps in the labels, unlabelled faces (both -1 and -2), a part with no faces */
        int32_t labels[3] = { 3, 7, 9 };
        double aabb[3][2][3] = {};
        fixture_init(&fx, 3, 7);
        fx.ids[12] = -1;
        fx.ids[13] = -2;
        fx.seg.n_parts = 3;
        fx.seg.part_labels = labels;
        fx.seg.aabb = &aabb[0][0][0];
        _cleanup_free_ uint8_t *d2 = export_mem(&fx.seg, FMT_GLB, NULL, &n);
        /* the bottom of the second cube, one face -1 and one -2, shares its corners with the
         * sides, and each group keeps its own copies; -1 and -2 are painted apart (red and
         * black, as upstream), so they are two groups */
        const want_node want2[] = { { "part_3", 3, 12, 8 }, { "part_7", 7, 10, 8 },
                                    { "part_9", 9, 0, 0 }, { "unlabelled", -1, 1, 3 },
                                    { "unsampled", -2, 1, 3 } };
        glb_check(d2, n, want2, ELEMENTSOF(want2));
#ifdef P3_HAVE_ASSIMP
        glb_check_assimp(d2, n, 24, want2, 2);
#endif
}

/* ---- PLY ------------------------------------------------------------------------------------ */

static const char *ply_header_end(const char *s) {
        const char *e = strstr(s, "end_header\n");
        CHECK(e);
        return e + strlen("end_header\n");
}

static void ply_check_header(const char *s, const char *format, int64_t nv, int64_t nf) {
        char line[64];
        CHECK(strncmp(s, "ply\n", 4) == 0);
        snprintf(line, sizeof(line), "format %s 1.0\n", format);
        CHECK(strstr(s, line));
        snprintf(line, sizeof(line), "element vertex %" PRId64 "\n", nv);
        CHECK(strstr(s, line));
        snprintf(line, sizeof(line), "element face %" PRId64 "\n", nf);
        CHECK(strstr(s, line));
        CHECK(strstr(s, "property list uchar int vertex_indices\nproperty uchar red\n"
                        "property uchar green\nproperty uchar blue\nproperty int part\n"));
}

static void ply_check_face(const fixture *fx, int64_t i, const int32_t f[3], const int rgb[3],
                           int32_t part) {
        uint8_t want[3];
        p3_segmentation_colour(&fx->seg, fx->ids[i], want);
        for (int c = 0; c < 3; c++) {
                CHECK(f[c] == fx->f[3 * i + c]);
                CHECK(rgb[c] == want[c]);
        }
        CHECK(part == fx->ids[i]);
}

static void test_ply_ascii(const fixture *fx) {
        size_t n;
        _cleanup_free_ uint8_t *d = export_mem(&fx->seg, FMT_PLY_ASCII, NULL, &n);
        const char *s = (const char *) d;

        ply_check_header(s, "ascii", fx->mesh.nv, fx->mesh.nf);
        char *p = (char *) ply_header_end(s);
        for (int64_t i = 0; i < 3 * fx->mesh.nv; i++)
                CHECK(strtof(p, &p) == (float) fx->v[i]);
        for (int64_t i = 0; i < fx->mesh.nf; i++) {
                int32_t f[3];
                int rgb[3];
                CHECK(strtol(p, &p, 10) == 3);
                for (int c = 0; c < 3; c++)
                        f[c] = (int32_t) strtol(p, &p, 10);
                for (int c = 0; c < 3; c++)
                        rgb[c] = (int) strtol(p, &p, 10);
                ply_check_face(fx, i, f, rgb, (int32_t) strtol(p, &p, 10));
        }
        CHECK(strspn(p, "\n") == strlen(p));
}

static void test_ply_binary(const fixture *fx) {
        size_t n;
        _cleanup_free_ uint8_t *d = export_mem(&fx->seg, FMT_PLY_BINARY, NULL, &n);

        ply_check_header((const char *) d, "binary_little_endian", fx->mesh.nv, fx->mesh.nf);
        const uint8_t *p = (const uint8_t *) ply_header_end((const char *) d);
        CHECK((size_t) (p - d) + 12 * fx->mesh.nv + 20 * fx->mesh.nf == n);
        for (int64_t i = 0; i < 3 * fx->mesh.nv; i++, p += 4)
                CHECK(f32le(p) == (float) fx->v[i]);
        for (int64_t i = 0; i < fx->mesh.nf; i++, p += 20) {
                int32_t f[3];
                int rgb[3];
                CHECK(p[0] == 3);
                for (int c = 0; c < 3; c++) {
                        f[c] = (int32_t) u32le(p + 1 + 4 * c);
                        rgb[c] = p[13 + c];
                }
                ply_check_face(fx, i, f, rgb, (int32_t) u32le(p + 16));
        }
}

static void test_ply(void) {
        fixture fx;
        fixture_init(&fx, 0, 1);
        fx.ids[5] = -1;
        fx.ids[6] = -2;
        test_ply_ascii(&fx);
        test_ply_binary(&fx);
        /* the pipeline's colours, when given, replace the palette */
        const uint8_t colours[2][3] = { { 1, 2, 3 }, { 250, 251, 252 } };
        fx.seg.colours = &colours[0][0];
        test_ply_ascii(&fx);
        test_ply_binary(&fx);
}

/* ---- JSON ----------------------------------------------------------------------------------- */

static json_object *parse_text(const uint8_t *d, size_t n) {
        CHECK(strlen((const char *) d) == n);
        json_object *o = json_tokener_parse((const char *) d);
        CHECK(o);
        return o;
}

static void json_check_part(json_object *part, int32_t label, int64_t faces, double area,
                            const double box[2][3]) {
        CHECK(jint(part, "label") == label && jint(part, "faces") == faces);
        CHECK(fabs(json_object_get_double(jget(part, "area")) - area) < 1e-12);
        json_object *aabb = jget(part, "aabb");
        for (int c = 0; c < 3; c++) {
                CHECK(json_object_get_double(jidx(jget(aabb, "min"), (size_t) c)) == box[0][c]);
                CHECK(json_object_get_double(jidx(jget(aabb, "max"), (size_t) c)) == box[1][c]);
        }
}

static void test_json(void) {
        fixture fx;
        fixture_init(&fx, 0, 4);
        fx.ids[23] = -2;
        const p3_stage_time times[] = { { "sample", 0.25 }, { "infer", 1.5 } };
        json_object *extra = json_object_new_object();
        json_object_object_add(extra, "note", json_object_new_string("caller's"));
        p3_report rep = { .input = "two \"cubes\".glb", .points = 100000, .prompts = 400,
                          .prompt_batch = 64, .seed = 42, .post_process = true, .threshold = 0.95,
                          .backend = "cpu", .weights = "/w/p3sam.safetensors",
                          .weights_synthetic = true, .timings = times, .n_timings = 2,
                          .extra = extra };
        size_t n;
        _cleanup_free_ uint8_t *d = export_mem(&fx.seg, FMT_JSON, &rep, &n);
        json_object *o = parse_text(d, n);

        CHECK(jint(o, "version") == 1 && jint(o, "faces") == 24 && jint(o, "unlabelled_faces") == 1);
        CHECK(strcmp(json_object_get_string(jget(o, "input")), rep.input) == 0);
        json_object *parts = jget(o, "parts");
        CHECK(json_object_array_length(parts) == 2);
        /* unit cube faces are half a square each */
        json_check_part(jidx(parts, 0), 0, 12, 6.0, fx.aabb[0]);
        json_check_part(jidx(parts, 1), 4, 11, 5.5, fx.aabb[1]);
        json_object *labels = jget(o, "face_labels");
        CHECK(json_object_array_length(labels) == 24);
        for (int i = 0; i < 24; i++)
                CHECK(json_object_get_int(jidx(labels, (size_t) i)) == fx.ids[i]);
        json_object *par = jget(o, "parameters");
        CHECK(jint(par, "points") == 100000 && jint(par, "prompts") == 400);
        CHECK(jint(par, "prompt_batch") == 64 && jint(par, "seed") == 42);
        CHECK(json_object_get_boolean(jget(par, "post_process")));
        CHECK(json_object_get_double(jget(par, "threshold")) == 0.95);
        CHECK(strcmp(json_object_get_string(jget(par, "backend")), "cpu") == 0);
        CHECK(strcmp(json_object_get_string(jget(par, "weights")), rep.weights) == 0);
        CHECK(json_object_get_boolean(jget(par, "weights_synthetic")));
        CHECK(json_object_get_double(jget(jget(o, "timings"), "infer")) == 1.5);
        CHECK(json_object_get_boolean(jget(o, "synthetic_weights")));
        CHECK(strcmp(json_object_get_string(jget(jget(o, "extra"), "note")), "caller's") == 0);
        json_object_put(o);
        /* the caller's reference survives */
        CHECK(json_object_put(extra) == 1);

        /* without a report */
        _cleanup_free_ uint8_t *d2 = export_mem(&fx.seg, FMT_JSON, NULL, &n);
        o = parse_text(d2, n);
        CHECK(json_object_is_type(jget(o, "input"), json_type_null));
        CHECK(!json_object_object_get_ex(o, "parameters", NULL));
        json_object_put(o);
}

static void test_predict_json(void) {
        fixture fx;
        fixture_init(&fx, 0, 1);
        const double prompts[2][3] = { { 0.1, 0.5, 1.0 }, { 2.5, -1e-3, 1.0 / 3 } };
        const int32_t m0[] = { 0, 1, 2 }, m1[] = { 23 }, m2[] = { 4, 5 };
        const int32_t *const faces[6] = { m0, m1, NULL, m2, m0, m1 };
        const int64_t counts[6] = { 3, 1, 0, 2, 3, 1 };
        const float iou[6] = { 0.9f, 0.5f, 0.25f, 0.125f, 1.0f / 3, NAN };
        p3_err err = {};
        int fd = tmp_fd();
        size_t n;

        CHECK_OK(p3_export_predict_json(&fx.mesh, 2, &prompts[0][0], faces, counts, iou, fd, &err));
        _cleanup_free_ uint8_t *d = slurp(fd, &n);
        json_object *o = parse_text(d, n), *ps = jget(o, "prompts");
        CHECK(json_object_array_length(ps) == 2);
        for (size_t i = 0; i < 2; i++) {
                json_object *p = jidx(ps, i), *masks = jget(p, "masks");
                for (size_t c = 0; c < 3; c++)
                        CHECK(json_object_get_double(jidx(jget(p, "point"), c)) == prompts[i][c]);
                CHECK(json_object_array_length(masks) == 3);
                for (size_t j = 0; j < 3; j++) {
                        json_object *m = jidx(masks, j), *fa = jget(m, "faces");
                        CHECK((int64_t) json_object_array_length(fa) == counts[3 * i + j]);
                        for (int64_t k = 0; k < counts[3 * i + j]; k++)
                                CHECK(json_object_get_int(jidx(fa, (size_t) k)) ==
                                      faces[3 * i + j][k]);
                        json_object *v = jget(m, "iou");
                        if (isnan(iou[3 * i + j]))
                                CHECK(json_object_is_type(v, json_type_null));
                        else
                                CHECK((float) json_object_get_double(v) == iou[3 * i + j]);
                }
        }
        json_object_put(o);

        /* a face that does not exist: refused, nothing written */
        const int32_t bad[] = { 24 };
        const int32_t *const faces_bad[3] = { bad, NULL, NULL };
        const int64_t counts_bad[3] = { 1, 0, 0 };
        int fd2 = tmp_fd();
        CHECK(p3_export_predict_json(&fx.mesh, 1, &prompts[0][0], faces_bad, counts_bad, iou, fd2,
                                     NULL) == -EINVAL);
        free(slurp(fd2, &n));
        CHECK(n == 0);
        close(fd);
        close(fd2);
}

/* ---- failures and edge cases ------------------------------------------------------------------ */

static void test_bad_fds(void) {
        fixture fx;
        fixture_init(&fx, 0, 1);
        int p[2];

        for (fmt f = FMT_GLB; f <= FMT_JSON; f++) {
                p3_err err = {};
                int fd = tmp_fd();
                close(fd);
                CHECK(export_to(&fx.seg, f, NULL, fd, &err) == -EBADF);
                CHECK(err.msg[0]);

                /* the reader went away: EPIPE, not death, as SIGPIPE is ignored */
                CHECK(pipe(p) == 0);
                close(p[0]);
                err = (p3_err) {};
                CHECK(export_to(&fx.seg, f, NULL, p[1], &err) == -EPIPE);
                CHECK(strstr(err.msg, "cannot write"));
                close(p[1]);
        }
}

/* Inconsistent segmentations are refused before anything reaches the descriptor. */
static void test_bad_segmentation(void) {
        fixture fx;
        for (int what = 0; what < 5; what++) {
                fixture_init(&fx, 0, 1);
                if (what == 0)
                        fx.ids[3] = 2; /* no such part */
                else if (what == 1)
                        fx.f[7] = 16; /* no such vertex */
                else if (what == 2)
                        fx.labels[1] = 0; /* not ascending */
                else if (what == 3)
                        fx.v[4] = NAN;
                else
                        fx.v[5] = 1e39; /* no float can hold it */
                for (fmt f = FMT_GLB; f <= FMT_JSON; f++) {
                        p3_err err = {};
                        size_t n;
                        int fd = tmp_fd();
                        CHECK(export_to(&fx.seg, f, NULL, fd, &err) == -EINVAL);
                        CHECK(err.msg[0]);
                        free(slurp(fd, &n));
                        CHECK(n == 0);
                        close(fd);
                }
        }
}

static void test_empty(void) {
        fixture fx;
        size_t n;

        /* no parts at all: every face unlabelled */
        fixture_init(&fx, -1, -1);
        fx.seg.n_parts = 0;
        fx.seg.part_labels = NULL;
        fx.seg.aabb = NULL;
        _cleanup_free_ uint8_t *g = export_mem(&fx.seg, FMT_GLB, NULL, &n);
        const want_node want[] = { { "unlabelled", -1, 24, 16 } };
        glb_check(g, n, want, 1);
#ifdef P3_HAVE_ASSIMP
        glb_check_assimp(g, n, 24, want, 1);
#endif
        _cleanup_free_ uint8_t *j = export_mem(&fx.seg, FMT_JSON, NULL, &n);
        json_object *o = parse_text(j, n);
        CHECK(json_object_array_length(jget(o, "parts")) == 0 && jint(o, "unlabelled_faces") == 24);
        json_object_put(o);
        test_ply_ascii(&fx);
        test_ply_binary(&fx);

        /* no faces at all: a GLB with no BIN chunk and no geometry arrays */
        fx.mesh.nf = 0;
        fx.mesh.nv = 0;
        _cleanup_free_ uint8_t *g2 = export_mem(&fx.seg, FMT_GLB, NULL, &n);
        glb_check(g2, n, NULL, 0);
        glb gl = glb_parse(g2, n);
        CHECK(!gl.bin && !json_object_object_get_ex(gl.json, "accessors", NULL));
        CHECK(!json_object_object_get_ex(gl.json, "buffers", NULL));
        json_object_put(gl.json);
        _cleanup_free_ uint8_t *j2 = export_mem(&fx.seg, FMT_JSON, NULL, &n);
        o = parse_text(j2, n);
        CHECK(json_object_array_length(jget(o, "face_labels")) == 0);
        json_object_put(o);
        test_ply_ascii(&fx);
        test_ply_binary(&fx);
}

/* upstream's save_mesh: -1 red, -2 black, parts from the table or the palette */
static void test_segmentation_colours(void) {
        fixture fx;
        uint8_t rgb[3], want[3];
        const uint8_t colours[2][3] = { { 10, 20, 30 }, { 40, 50, 60 } };

        fixture_init(&fx, 4, 8);
        p3_segmentation_colour(&fx.seg, -1, rgb);
        CHECK(rgb[0] == 255 && rgb[1] == 0 && rgb[2] == 0);
        p3_segmentation_colour(&fx.seg, -2, rgb);
        CHECK(rgb[0] == 0 && rgb[1] == 0 && rgb[2] == 0);
        p3_segmentation_colour(&fx.seg, 8, rgb);
        p3_part_colour(8, want);
        CHECK(memcmp(rgb, want, 3) == 0);
        fx.seg.colours = &colours[0][0];
        p3_segmentation_colour(&fx.seg, 8, rgb);
        CHECK(memcmp(rgb, colours[1], 3) == 0);
        p3_segmentation_colour(&fx.seg, 4, rgb);
        CHECK(memcmp(rgb, colours[0], 3) == 0);
}

static void test_colours(void) {
        uint8_t a[3], b[3], grey[3];

        p3_part_colour(-1, grey);
        CHECK(grey[0] == grey[1] && grey[1] == grey[2]);
        /* the first labels all differ from each other and from grey */
        for (int i = 0; i < 64; i++) {
                p3_part_colour(i, a);
                CHECK(memcmp(a, grey, 3) != 0);
                for (int j = 0; j < i; j++) {
                        p3_part_colour(j, b);
                        CHECK(abs(a[0] - b[0]) + abs(a[1] - b[1]) + abs(a[2] - b[2]) >= 30);
                }
                p3_part_colour(i, b);
                CHECK(memcmp(a, b, 3) == 0);
        }
}

int main(void) {
        /* as the daemon does: a client hanging up must give EPIPE, not kill the process */
        signal(SIGPIPE, SIG_IGN);

        test_colours();
        test_segmentation_colours();
        test_glb();
        test_ply();
        test_json();
        test_predict_json();
        test_bad_fds();
        test_bad_segmentation();
        test_empty();
        printf("export: all checks passed\n");
        return 0;
}
