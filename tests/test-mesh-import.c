/* SPDX-License-Identifier: MIT */
/* Mesh import: synthetic buffers for every refusal and for the transform arithmetic, and the
 * polygon meshes of tests/data against trimesh's recorded triangulation (always run), then every
 * mesh of ../shared/meshes (skipped when absent): face counts against the README table, bad/
 * files refused with a sentence that names them, detection, bounding boxes against assimp's own
 * PreTransformVertices, and a truncate/corrupt loop that must not crash. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf, memfd_create, strcasestr */
#endif
#include <assimp/cimport.h>
#include <assimp/postprocess.h>
#include <assimp/scene.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "mesh-off.h"
#include "mesh_import.h"
#include "test-util.h"

static int n_checks;

/* A failure must be a negative errno with one line that names `file` and, after it, `word`. */
static void expect_error(const char *what, int r, const p3_err *err, const char *file, const char *word) {
        const char *at = strstr(err->msg, file);
        if (r >= 0 || !at || (word && !strcasestr(at + strlen(file), word)) || strchr(err->msg, '\n')) {
                fprintf(stderr, "%s: r=%d msg=\"%s\" (want a negative errno, \"%s\" and \"%s\")\n", what, r, err->msg,
                        file, word ? word : "");
                exit(EXIT_FAILURE);
        }
        printf("  %-34s -> %s\n", what, err->msg);
        n_checks++;
}

/* Every face index in range, every coordinate finite, every face attributed. */
static void check_mesh_sane(const p3_mesh *m) {
        CHECK(m->nv > 0 && m->nf > 0 && m->v && m->f && m->face_src && m->src_names && m->n_src > 0);
        for (int64_t i = 0; i < 3 * m->nv; i++)
                CHECK(isfinite(m->v[i]));
        for (int64_t i = 0; i < 3 * m->nf; i++)
                CHECK(m->f[i] >= 0 && m->f[i] < m->nv);
        for (int64_t i = 0; i < m->nf; i++)
                CHECK(m->face_src[i] >= 0 && m->face_src[i] < m->n_src);
        for (int32_t i = 0; i < m->n_src; i++)
                CHECK(m->src_names[i] && strchr(m->src_names[i], '/'));
}

static int import_str(const char *s, const char *fmt, const char *name, const p3_mesh_limits *lim, p3_mesh *m,
                      p3_err *err) {
        return p3_mesh_import_buffer(s, strlen(s), fmt, name, lim, m, err);
}

/* ---- building glTF/GLB in memory ---------------------------------------------------------- */

static char *base64(const uint8_t *p, size_t n) {
        static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char *out = malloc(4 * DIV_ROUND_UP(n, 3) + 1), *o = out;
        CHECK(out);
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t) p[i] << 16 | (i + 1 < n ? (uint32_t) p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
                *o++ = tab[v >> 18 & 63];
                *o++ = tab[v >> 12 & 63];
                *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
                *o++ = i + 2 < n ? tab[v & 63] : '=';
        }
        *o = '\0';
        return out;
}

/* One triangle mesh "tri" (0,0,0) (1,0,0) (0,1,0) with the given uint16 indices. */
typedef struct tri_bin {
        uint8_t data[36 + 2 * 16];
        size_t size, n_idx;
} tri_bin;

static tri_bin make_tri_bin(const uint16_t *idx, size_t n_idx) {
        static const float pos[9] = { 0, 0, 0, 1, 0, 0, 0, 1, 0 };
        tri_bin b = { .n_idx = n_idx };
        CHECK(n_idx <= 16);
        memcpy(b.data, pos, sizeof(pos));
        memcpy(b.data + 36, idx, 2 * n_idx);
        b.size = 36 + 2 * n_idx;
        return b;
}

/* uri: a data: URI, an external name, or NULL for the GLB BIN chunk. extra: more top-level members. */
static char *make_gltf_json(const tri_bin *b, const char *uri, const char *nodes, const char *extra) {
        char *json = NULL, *buffer = NULL;
        if (uri)
                CHECK(asprintf(&buffer, "{\"byteLength\":%zu,\"uri\":\"%s\"}", b->size, uri) > 0);
        else
                CHECK(asprintf(&buffer, "{\"byteLength\":%zu}", b->size) > 0);
        CHECK(asprintf(&json,
                       "{\"asset\":{\"version\":\"2.0\"},%s\"scene\":0,\"scenes\":[{\"nodes\":[0]}],"
                       "\"nodes\":[%s],"
                       "\"meshes\":[{\"name\":\"tri\",\"primitives\":[{\"attributes\":{\"POSITION\":0},\"indices\":1}]}],"
                       "\"accessors\":[{\"bufferView\":0,\"componentType\":5126,\"count\":3,\"type\":\"VEC3\","
                       "\"min\":[0,0,0],\"max\":[1,1,0]},"
                       "{\"bufferView\":1,\"componentType\":5123,\"count\":%zu,\"type\":\"SCALAR\"}],"
                       "\"bufferViews\":[{\"buffer\":0,\"byteOffset\":0,\"byteLength\":36},"
                       "{\"buffer\":0,\"byteOffset\":36,\"byteLength\":%zu}],"
                       "\"buffers\":[%s]}",
                       extra ? extra : "", nodes, b->n_idx, 2 * b->n_idx, buffer) > 0);
        free(buffer);
        return json;
}

static const char *const one_node = "{\"name\":\"n\",\"mesh\":0}";

static char *make_gltf(const uint16_t *idx, size_t n_idx, const char *nodes, const char *extra) {
        tri_bin b = make_tri_bin(idx, n_idx);
        char *b64 = base64(b.data, b.size), *uri = NULL;
        CHECK(asprintf(&uri, "data:application/octet-stream;base64,%s", b64) > 0);
        char *json = make_gltf_json(&b, uri, nodes, extra);
        free(b64);
        free(uri);
        return json;
}

static void put32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}

/* A GLB: header, JSON chunk padded with spaces, BIN chunk padded with zeros. */
static uint8_t *make_glb(const char *json, const tri_bin *b, size_t *ret_size) {
        size_t jl = strlen(json), jp = (jl + 3) & ~(size_t) 3, bp = (b->size + 3) & ~(size_t) 3;
        size_t size = 12 + 8 + jp + 8 + bp;
        uint8_t *g = calloc(1, size);
        CHECK(g);
        memcpy(g, "glTF", 4);
        put32(g + 4, 2);
        put32(g + 8, (uint32_t) size);
        put32(g + 12, (uint32_t) jp);
        memcpy(g + 16, "JSON", 4);
        memset(g + 20, ' ', jp);
        memcpy(g + 20, json, jl);
        put32(g + 20 + jp, (uint32_t) bp);
        memcpy(g + 24 + jp, "BIN", 4);
        memcpy(g + 28 + jp, b->data, b->size);
        *ret_size = size;
        return g;
}

/* ---- synthetic cases ---------------------------------------------------------------------- */

static void test_detect(void) {
        static const uint8_t glb[12] = { 'g', 'l', 'T', 'F', 2, 0, 0, 0, 12, 0, 0, 0 };
        uint8_t stl[84 + 50] = "solid but binary";
        put32(stl + 80, 1);

        CHECK(strcmp(p3_mesh_format_detect(glb, sizeof(glb)), "glb") == 0);
        CHECK(strcmp(p3_mesh_format_detect(stl, sizeof(stl)), "stl") == 0);
        CHECK(strcmp(p3_mesh_format_detect("solid x\nfacet normal 0 0 1\n", 26), "stl") == 0);
        CHECK(strcmp(p3_mesh_format_detect("ply\nformat ascii 1.0\n", 21), "ply") == 0);
        CHECK(strcmp(p3_mesh_format_detect("OFF\n3 1 0\n", 10), "off") == 0);
        CHECK(strcmp(p3_mesh_format_detect("  COFF\n", 7), "off") == 0);
        CHECK(strcmp(p3_mesh_format_detect("{\"asset\":{\"version\":\"2.0\"}}", 27), "gltf") == 0);
        CHECK(strcmp(p3_mesh_format_detect("# comment\n\nmtllib x.mtl\no a\nv 0 0 0\n", 37), "obj") == 0);
        CHECK(strcmp(p3_mesh_format_detect("f 1 2 3\n", 8), "obj") == 0);
        CHECK(!p3_mesh_format_detect("hello world\n", 12));
        CHECK(!p3_mesh_format_detect("# only a comment\n", 17));
        CHECK(!p3_mesh_format_detect("", 0));
        CHECK(!p3_mesh_format_detect("{\"a\":1}", 7));
        CHECK(!p3_mesh_format_detect("OFFSET 1\n", 9));
        n_checks += 14;
}

static void test_obj(void) {
        p3_mesh m = {};
        p3_err err = {};

        /* a quad and a pentagon: 2 + 3 triangles, one vertex per corner, two groups */
        const char *ngons = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0.5 1.5 0\n"
                            "g quad\nf 1 2 3 4\ng penta\nf 1 2 3 5 4\n";
        CHECK_OK(import_str(ngons, "obj", "ngons.obj", NULL, &m, &err));
        check_mesh_sane(&m);
        CHECK(m.nf == 5 && m.nv == 9 && m.n_src == 2);
        CHECK(strstr(m.src_names[0], "quad") && strstr(m.src_names[1], "penta"));
        CHECK(m.face_src[0] == 0 && m.face_src[2] == 1);
        p3_mesh_done(&m);

        /* detection from content, and an upper-case hint */
        CHECK_OK(import_str(ngons, NULL, "ngons.obj", NULL, &m, &err));
        CHECK(m.nf == 5);
        p3_mesh_done(&m);
        CHECK_OK(import_str(ngons, "OBJ", "ngons.obj", NULL, &m, &err));
        p3_mesh_done(&m);

        err = (p3_err) {};
        expect_error("OBJ index out of range",
                     import_str("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nf 1 2 4\n", "obj", "oor.obj", NULL, &m, &err), &err,
                     "oor.obj", "range");
        err = (p3_err) {};
        expect_error("OBJ index out of range, .mtl",
                     import_str("mtllib x.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "obj", "mtl.obj", NULL, &m, &err),
                     &err, "mtl.obj", "range");
        err = (p3_err) {};
        expect_error("OBJ infinite coordinate",
                     import_str("v inf 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "obj", "inf.obj", NULL, &m, &err), &err,
                     "inf.obj", "non-finite");
        err = (p3_err) {};
        expect_error("OBJ with only points", import_str("v 0 0 0\nv 1 0 0\np 1\np 2\n", "obj", "pts.obj", NULL, &m, &err),
                     &err, "pts.obj", "no triangles");
        err = (p3_err) {};
        uint8_t glbish[16] = { 'g', 'l', 'T', 'F', 2 };
        expect_error("GLB declared as OBJ", p3_mesh_import_buffer(glbish, sizeof(glbish), "obj", "x.obj", NULL, &m, &err),
                     &err, "x.obj", "glb");

        /* limits on what assimp would allocate: triangles and corners counted first */
        p3_mesh_limits lim;
        p3_mesh_limits_default(&lim);
        lim.max_faces = 4;
        err = (p3_err) {};
        expect_error("OBJ over max_faces", import_str(ngons, "obj", "big.obj", &lim, &m, &err), &err, "big.obj", "limit");
        p3_mesh_limits_default(&lim);
        lim.max_vertices = 8;
        err = (p3_err) {};
        expect_error("OBJ over max_vertices", import_str(ngons, "obj", "big.obj", &lim, &m, &err), &err, "big.obj",
                     "limit");
        p3_mesh_limits_default(&lim);
        lim.max_bytes = 16;
        err = (p3_err) {};
        expect_error("buffer over max_bytes", import_str(ngons, "obj", "big.obj", &lim, &m, &err), &err, "big.obj",
                     "limit");
}

static void test_empty_and_unknown(void) {
        p3_mesh m = {};
        p3_err err = {};

        expect_error("empty buffer", p3_mesh_import_buffer("", 0, NULL, "empty.obj", NULL, &m, &err), &err, "empty.obj",
                     "empty");
        for (const char *const *f = (const char *const[]) { "glb", "gltf", "obj", "ply", "stl", "off", NULL }; *f; f++) {
                err = (p3_err) {};
                expect_error("empty buffer with hint", p3_mesh_import_buffer("", 0, *f, "empty", NULL, &m, &err), &err,
                             "empty", "empty");
        }
        err = (p3_err) {};
        expect_error("NULL buffer", p3_mesh_import_buffer(NULL, 0, "glb", NULL, NULL, &m, &err), &err, "mesh buffer",
                     "empty");
        err = (p3_err) {};
        expect_error("undetectable", import_str("hello world\n", NULL, "hello.txt", NULL, &m, &err), &err, "hello.txt",
                     "not a recognised");
        err = (p3_err) {};
        expect_error("unknown hint", import_str("v 0 0 0\n", "fbx", "a.fbx", NULL, &m, &err), &err, "a.fbx", "unknown");
}

static void test_stl(void) {
        p3_mesh m = {};
        p3_err err = {};
        /* a binary STL whose free-text header starts with "solid", like many exporters write */
        uint8_t stl[84 + 2 * 50] = "solid exported by something";
        static const float tri[2][12] = {
                { 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0 },
                { 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 0 },
        };
        for (int t = 0; t < 2; t++)
                memcpy(stl + 84 + 50 * t, tri[t], sizeof(tri[t]));

        put32(stl + 80, 2);
        CHECK_OK(p3_mesh_import_buffer(stl, sizeof(stl), NULL, "two.stl", NULL, &m, &err));
        check_mesh_sane(&m);
        CHECK(m.nf == 2 && m.nv == 6 && m.v[3] == 1.0 && m.v[4] == 0.0);
        p3_mesh_done(&m);

        put32(stl + 80, 3);
        expect_error("binary STL, wrong count", p3_mesh_import_buffer(stl, sizeof(stl), "stl", "three.stl", NULL, &m, &err),
                     &err, "three.stl", "3 triangles");

        const char *ascii = "solid t\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\n"
                            "endloop\nendfacet\nendsolid t\n";
        CHECK_OK(import_str(ascii, NULL, "t.stl", NULL, &m, &err));
        CHECK(m.nf == 1);
        p3_mesh_done(&m);
        /* cut inside the facet: assimp only logs "unexpected EOF" and keeps nothing of it */
        char cut[64];
        snprintf(cut, sizeof(cut), "%.*s", 60, ascii);
        err = (p3_err) {};
        expect_error("truncated ASCII STL", import_str(cut, "stl", "cut.stl", NULL, &m, &err), &err, "cut.stl", NULL);
}

static void test_ply_off(void) {
        p3_mesh m = {};
        p3_err err = {};
        const char *ply = "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
                          "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
                          "0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n";
        CHECK_OK(import_str(ply, NULL, "quad.ply", NULL, &m, &err));
        check_mesh_sane(&m);
        CHECK(m.nf == 2 && m.nv == 4);
        p3_mesh_done(&m);

        const char *ply_oor = "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                              "element face 2\nproperty list uchar int vertex_indices\nend_header\n"
                              "0 0 0\n1 0 0\n1 1 0\n3 0 1 2\n3 0 1 9\n";
        expect_error("PLY index out of range", import_str(ply_oor, "ply", "oor.ply", NULL, &m, &err), &err, "oor.ply",
                     "range");
        err = (p3_err) {};
        const char *ply_bomb = "ply\nformat binary_little_endian 1.0\nelement vertex 4000000\nproperty float x\n"
                               "element face 1\nproperty list uchar int vertex_indices\nend_header\n\1\2\3\4";
        expect_error("PLY count bomb", import_str(ply_bomb, "ply", "bomb.ply", NULL, &m, &err), &err, "bomb.ply",
                     "truncated");
        err = (p3_err) {};
        const char *ply_overflow = "ply\nformat ascii 1.0\nelement vertex 99999999999999999999999\nproperty float x\n"
                                   "end_header\n";
        expect_error("PLY count overflow", import_str(ply_overflow, "ply", "ovf.ply", NULL, &m, &err), &err, "ovf.ply",
                     "count");
        err = (p3_err) {};
        expect_error("PLY without end_header", import_str("ply\nformat ascii 1.0\nelement vertex 3\n", "ply", "noend.ply",
                                                          NULL, &m, &err),
                     &err, "noend.ply", "end_header");

        const char *off = "OFF\n# a comment\n4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n";
        CHECK_OK(import_str(off, NULL, "sq.off", NULL, &m, &err));
        check_mesh_sane(&m);
        CHECK(m.nf == 2 && m.nv == 4);
        p3_mesh_done(&m);
        err = (p3_err) {};
        expect_error("OFF index out of range",
                     import_str("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 5\n", "off", "oor.off", NULL, &m, &err), &err,
                     "oor.off", "out of range");
        err = (p3_err) {};
        expect_error("OFF vertex bomb", import_str("OFF\n9000000 1 0\n0 0 0\n", "off", "bomb.off", NULL, &m, &err), &err,
                     "bomb.off", "truncated");
        err = (p3_err) {};
        /* assimp 5.2 drops OFF faces of more than 9 corners with a misleading log line */
        expect_error("OFF 10-corner face",
                     import_str("OFF\n10 1 0\n0 0 0\n1 0 0\n2 1 0\n3 3 0\n4 6 0\n5 10 0\n6 15 0\n7 21 0\n8 28 0\n"
                                "9 36 0\n10 0 1 2 3 4 5 6 7 8 9\n",
                                "off", "ten.off", NULL, &m, &err),
                     &err, "ten.off", "more than 9");
        err = (p3_err) {};
        expect_error("OFF short face list",
                     import_str("OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "off", "short.off", NULL, &m, &err), &err,
                     "short.off", NULL);
}

/* Transforms, instancing and names on a scene whose result is known by hand. */
static void test_gltf_transforms(void) {
        static const uint16_t idx[3] = { 0, 1, 2 };
        /* parent: scale 2 then translate (10,0,0); "a": translate (0,0,5); "b": a column-major
         * matrix rotating +90 deg about z, then translating (0,3,0). Both instance mesh "tri". */
        const char *nodes = "{\"name\":\"parent\",\"children\":[1,2],\"scale\":[2,2,2],\"translation\":[10,0,0]},"
                            "{\"name\":\"a\",\"mesh\":0,\"translation\":[0,0,5]},"
                            "{\"name\":\"b\",\"mesh\":0,\"matrix\":[0,1,0,0, -1,0,0,0, 0,0,1,0, 0,3,0,1]}";
        /* children last to first, as trimesh walks a glTF scene: b's instance comes first */
        static const double want[6][3] = {
                { 10, 6, 0 },  { 10, 8, 0 },  { 8, 6, 0 },   /* b */
                { 10, 0, 10 }, { 12, 0, 10 }, { 10, 2, 10 }, /* a */
        };
        p3_mesh m = {};
        p3_err err = {};

        _cleanup_free_ char *gltf = make_gltf(idx, 3, nodes, NULL);
        CHECK_OK(import_str(gltf, NULL, "xf.gltf", NULL, &m, &err));
        check_mesh_sane(&m);
        CHECK(m.nv == 6 && m.nf == 2 && m.n_src == 2);
        for (int i = 0; i < 6; i++)
                for (int c = 0; c < 3; c++)
                        CHECK(fabs(m.v[3 * i + c] - want[i][c]) < 1e-6);
        for (int c = 0; c < 3; c++)
                CHECK(m.f[c] == c && m.f[3 + c] == 3 + c);
        CHECK(strcmp(m.src_names[0], "b/tri") == 0 && strcmp(m.src_names[1], "a/tri") == 0);
        CHECK(m.face_src[0] == 0 && m.face_src[1] == 1);
        p3_mesh_done(&m);

        /* valid, but a skin without inverseBindMatrices is a NULL dereference in assimp 5.2:
         * only the geometry of the JSON reaches it */
        _cleanup_free_ char *skinned = make_gltf(idx, 3, "{\"name\":\"n\",\"mesh\":0,\"skin\":0}",
                                                 "\"skins\":[{\"joints\":[0]}],\"animations\":[{\"channels\":[],\"samplers\":[]}],");
        CHECK_OK(import_str(skinned, NULL, "skin.gltf", NULL, &m, &err));
        CHECK(m.nf == 1 && strcmp(m.src_names[0], "n/tri") == 0);
        p3_mesh_done(&m);

        /* the same as a GLB with its BIN chunk */
        tri_bin b = make_tri_bin(idx, 3);
        _cleanup_free_ char *json = make_gltf_json(&b, NULL, nodes, NULL);
        size_t size;
        _cleanup_free_ uint8_t *glb = make_glb(json, &b, &size);
        CHECK_OK(p3_mesh_import_buffer(glb, size, NULL, "xf.glb", NULL, &m, &err));
        CHECK(m.nf == 2 && fabs(m.v[3 * 2] - 8) < 1e-6);
        p3_mesh_done(&m);
        n_checks += 2;
}

static void test_gltf_refusals(void) {
        static const uint16_t idx_oor[6] = { 0, 1, 2, 0, 1, 7 }, idx_4[4] = { 0, 1, 2, 0 }, idx[3] = { 0, 1, 2 };
        p3_mesh m = {};
        p3_err err = {};

        /* assimp drops the bad face with a warning and would return one triangle */
        _cleanup_free_ char *oor = make_gltf(idx_oor, 6, one_node, NULL);
        expect_error("glTF index out of range", import_str(oor, "gltf", "oor.gltf", NULL, &m, &err), &err, "oor.gltf",
                     "out-of-range");
        err = (p3_err) {};
        _cleanup_free_ char *four = make_gltf(idx_4, 4, one_node, NULL);
        expect_error("glTF 4 indices for TRIANGLES", import_str(four, "gltf", "four.gltf", NULL, &m, &err), &err,
                     "four.gltf", "TRIANGLES");
        err = (p3_err) {};
        _cleanup_free_ char *draco = make_gltf(idx, 3, one_node,
                                               "\"extensionsUsed\":[\"KHR_draco_mesh_compression\"],"
                                               "\"extensionsRequired\":[\"KHR_draco_mesh_compression\"],");
        expect_error("glTF Draco", import_str(draco, "gltf", "draco.gltf", NULL, &m, &err), &err, "draco.gltf",
                     "Draco-compressed meshes are not supported");
        err = (p3_err) {};
        _cleanup_free_ char *meshopt = make_gltf(idx, 3, one_node, "\"extensionsRequired\":[\"EXT_meshopt_compression\"],");
        expect_error("glTF unknown required ext", import_str(meshopt, "gltf", "mo.gltf", NULL, &m, &err), &err, "mo.gltf",
                     "EXT_meshopt_compression");
        err = (p3_err) {};
        _cleanup_free_ char *cyc = make_gltf(idx, 3, "{\"mesh\":0,\"children\":[1]},{\"children\":[0]}", NULL);
        expect_error("glTF node cycle", import_str(cyc, "gltf", "cyc.gltf", NULL, &m, &err), &err, "cyc.gltf", "cyclic");

        /* external buffers: refused from memory, and never opened */
        tri_bin b = make_tri_bin(idx, 3);
        _cleanup_free_ char *ext = make_gltf_json(&b, "tri.bin", one_node, NULL);
        err = (p3_err) {};
        expect_error("glTF external buffer", import_str(ext, "gltf", "ext.gltf", NULL, &m, &err), &err, "ext.gltf", "GLB");

        /* GLB containers */
        _cleanup_free_ char *json = make_gltf_json(&b, NULL, one_node, NULL);
        size_t size;
        _cleanup_free_ uint8_t *glb = make_glb(json, &b, &size);
        err = (p3_err) {};
        expect_error("GLB truncated", p3_mesh_import_buffer(glb, size - 8, "glb", "cut.glb", NULL, &m, &err), &err,
                     "cut.glb", "truncated");
        put32(glb + 8, (uint32_t) size - 8); /* consistent header, BIN chunk now past the end */
        err = (p3_err) {};
        expect_error("GLB chunk past end", p3_mesh_import_buffer(glb, size - 8, "glb", "chunk.glb", NULL, &m, &err), &err,
                     "chunk.glb", "past the end");
        put32(glb + 8, (uint32_t) size);
        put32(glb + 4, 1);
        err = (p3_err) {};
        expect_error("GLB version 1", p3_mesh_import_buffer(glb, size, "glb", "v1.glb", NULL, &m, &err), &err, "v1.glb",
                     "version");
        err = (p3_err) {};
        expect_error("GLB short", p3_mesh_import_buffer(glb, 7, "glb", "short.glb", NULL, &m, &err), &err, "short.glb",
                     "too short");
}

static void test_fd(void) {
        p3_mesh m = {};
        p3_err err = {};
        const char *obj = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n";

        _cleanup_close_ int fd = memfd_create("mesh", MFD_CLOEXEC);
        CHECK(fd >= 0);
        CHECK(write(fd, obj, strlen(obj)) == (ssize_t) strlen(obj));
        CHECK_OK(p3_mesh_import_fd(fd, NULL, "memfd.obj", NULL, &m, &err));
        CHECK(m.nf == 1);
        p3_mesh_done(&m);

        p3_mesh_limits lim;
        p3_mesh_limits_default(&lim);
        lim.max_bytes = 8;
        expect_error("fd over max_bytes", p3_mesh_import_fd(fd, NULL, "memfd.obj", &lim, &m, &err), &err, "memfd.obj",
                     "limit");

        int pipefd[2];
        CHECK(pipe(pipefd) == 0);
        err = (p3_err) {};
        expect_error("pipe fd", p3_mesh_import_fd(pipefd[0], "obj", "pipe.obj", NULL, &m, &err), &err, "pipe.obj",
                     "regular");
        close(pipefd[0]);
        close(pipefd[1]);
}

/* A path import may read a glTF's external buffer beside it, and nothing outside that dir. */
static void test_gltf_by_path(void) {
        static const uint16_t idx[3] = { 0, 1, 2 };
        char dir[] = "/tmp/test-mesh-import-XXXXXX";
        _cleanup_free_ char *gltf_path = NULL, *bin_path = NULL, *evil_path = NULL;
        p3_mesh m = {};
        p3_err err = {};

        CHECK(mkdtemp(dir));
        CHECK(asprintf(&gltf_path, "%s/tri.gltf", dir) > 0 && asprintf(&bin_path, "%s/tri.bin", dir) > 0 &&
              asprintf(&evil_path, "%s/evil.gltf", dir) > 0);
        tri_bin b = make_tri_bin(idx, 3);
        _cleanup_free_ char *json = make_gltf_json(&b, "tri.bin", one_node, NULL);
        _cleanup_free_ char *evil = make_gltf_json(&b, "../tri.bin", one_node, NULL);
        FILE *f = fopen(gltf_path, "w");
        CHECK(f && fputs(json, f) >= 0 && fclose(f) == 0);
        f = fopen(bin_path, "wb");
        CHECK(f && fwrite(b.data, 1, b.size, f) == b.size && fclose(f) == 0);
        f = fopen(evil_path, "w");
        CHECK(f && fputs(evil, f) >= 0 && fclose(f) == 0);

        CHECK_OK(p3_mesh_import_file(gltf_path, NULL, NULL, &m, &err));
        CHECK(m.nf == 1 && m.nv == 3);
        p3_mesh_done(&m);
        expect_error("glTF buffer outside dir", p3_mesh_import_file(evil_path, NULL, NULL, &m, &err), &err, "evil.gltf",
                     "outside");
        CHECK(unlink(bin_path) == 0);
        err = (p3_err) {};
        expect_error("glTF buffer missing", p3_mesh_import_file(gltf_path, NULL, NULL, &m, &err), &err, "tri.gltf",
                     "tri.bin");
        CHECK(unlink(gltf_path) == 0 && unlink(evil_path) == 0 && rmdir(dir) == 0);
}

/* ---- polygons split as trimesh splits them --------------------------------------------- */

static void *read_all(const char *path, size_t *size) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        CHECK(fd >= 0 && fstat(fd, &st) == 0);
        uint8_t *buf = malloc((size_t) st.st_size + 1);
        CHECK(buf);
        CHECK(read(fd, buf, (size_t) st.st_size) == st.st_size);
        *size = (size_t) st.st_size;
        return buf;
}

static const char *ext_of(const char *file) {
        return strrchr(file, '.') + 1;
}

/* Append the first three numbers of line to the growing array v. */
static void push_xyz(double **v, int64_t *n, const char *line) {
        double x, y, z;
        CHECK(sscanf(line, "%lf %lf %lf", &x, &y, &z) == 3);
        *v = realloc(*v, (size_t) (*n + 1) * 3 * sizeof(double));
        CHECK(*v);
        (*v)[3 * *n] = x, (*v)[3 * *n + 1] = y, (*v)[3 * *n + 2] = z;
        (*n)++;
}

/* The vertex positions as the file lists them: OBJ "v" lines, an ASCII PLY's vertex element,
 * the vertex lines after an OFF's counts (the recordings index into this list). */
static double *file_vertices(const char *path, int64_t *ret_n) {
        size_t size;
        _cleanup_free_ char *text = read_all(path, &size);
        const char *ext = ext_of(path);
        bool obj = strcmp(ext, "obj") == 0, ply = strcmp(ext, "ply") == 0, body = false;
        int64_t n = 0, want = -1;
        double *v = NULL;
        char *save = NULL;

        text[size] = '\0';
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                if (obj) {
                        if (strncmp(line, "v ", 2) == 0)
                                push_xyz(&v, &n, line + 2);
                } else if (ply) {
                        if (body && n < want)
                                push_xyz(&v, &n, line);
                        sscanf(line, "element vertex %" SCNd64, &want);
                        body = body || strcmp(line, "end_header") == 0;
                } else if (line[0] != '#' && strcmp(line, "OFF") != 0) {
                        if (body && n < want)
                                push_xyz(&v, &n, line);
                        body = body || sscanf(line, "%" SCNd64, &want) == 1;
                }
        }
        CHECK(n > 0 && (obj || n == want));
        *ret_n = n;
        return v;
}

/* A recording (tests/data/trimesh/record.py): "#" lines, the triangle count, then per triangle
 * the 0-based file vertex index of each corner. */
static int64_t *read_triangles(const char *path, int64_t nv, int64_t *ret_nf) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        char line[256];
        int64_t nf = -1, k = 0, *t = NULL;

        CHECK(f);
        while (fgets(line, sizeof(line), f)) {
                if (line[0] == '#')
                        continue;
                if (nf < 0) {
                        CHECK(sscanf(line, "%" SCNd64, &nf) == 1 && nf > 0);
                        t = malloc((size_t) nf * 3 * sizeof(int64_t));
                        CHECK(t);
                        continue;
                }
                CHECK(k < nf);
                CHECK(sscanf(line, "%" SCNd64 " %" SCNd64 " %" SCNd64, &t[3 * k], &t[3 * k + 1], &t[3 * k + 2]) == 3);
                for (int c = 0; c < 3; c++)
                        CHECK(t[3 * k + c] >= 0 && t[3 * k + c] < nv);
                k++;
        }
        CHECK(nf > 0 && k == nf);
        *ret_nf = nf;
        return t;
}

/* Same corner positions in the same order; assimp reads coordinates as floats. */
static bool same_triangle(const p3_mesh *m, int64_t face, const double *fv, const int64_t *rec) {
        for (int c = 0; c < 3; c++)
                for (int a = 0; a < 3; a++) {
                        double got = m->v[3 * m->f[3 * face + c] + a], want = fv[3 * rec[c] + a];
                        if (fabs(got - want) > 1e-6 * MAX(1.0, fabs(want)))
                                return false;
                }
        return true;
}

/* Upstream reads meshes with trimesh: our triangles must be its triangles, in its order (face
 * ids, sampling and masks follow them). The meshes hold quads and n-gons in each of trimesh's
 * cases: mixed polygons in an OBJ (spot), an OBJ of only quads, OBJ material groups, and PLY and
 * OFF with triangles, quads and a pentagon; the recordings come from trimesh itself. */
static void test_trimesh_triangulation(void) {
        static const char *const meshes[] = {
                "meshes/spot_control_mesh.obj", "trimesh/cube.obj",     "trimesh/groups.obj",
                "trimesh/polygons.ply",         "trimesh/polygons.off",
        };
        for (size_t i = 0; i < ELEMENTSOF(meshes); i++) {
                _cleanup_free_ char *path = test_data_path(meshes[i]), *rel = NULL, *rec_path = NULL;
                _cleanup_free_ double *fv = NULL;
                _cleanup_free_ int64_t *rec = NULL;
                const char *base = strrchr(meshes[i], '/') + 1;
                int64_t nv, nrec, same = 0;
                p3_mesh m = {};
                p3_err err = {};

                CHECK(asprintf(&rel, "trimesh/%s.triangles", base) > 0);
                rec_path = test_data_path(rel);
                fv = file_vertices(path, &nv);
                rec = read_triangles(rec_path, nv, &nrec);
                CHECK_OK(p3_mesh_import_file(path, NULL, NULL, &m, &err));
                check_mesh_sane(&m);
                for (int64_t t = 0; t < MIN(m.nf, nrec); t++)
                        same += same_triangle(&m, t, fv, rec + 3 * t);
                printf("  %-34s %4" PRId64 " of %4" PRId64 " triangles as trimesh's (%" PRId64 " imported)\n", base,
                       same, nrec, m.nf);
                CHECK(m.nf == nrec && same == nrec);
                p3_mesh_done(&m);
                n_checks++;
        }
}

static double *replay_f64(const st_file *st, const char *name, int64_t *numel) {
        const st_tensor *t = st_find(st, name);
        CHECK(t && t->dtype == ST_F64);
        double *d = malloc(sizeof(double) * (size_t) (t->numel + 1));
        CHECK(d);
        memcpy(d, t->data, sizeof(double) * (size_t) t->numel); /* little-endian doubles */
        *numel = t->numel;
        return d;
}

/* A glTF scene is concatenated in trimesh's traversal order: the pipeline replays hold what
 * trimesh.load(path, force='mesh') gave (input_vertices, input_faces) on multi-node GLBs. */
static void test_trimesh_scene_order(void) {
        static const struct {
                const char *replay, *mesh;
                bool shared;
        } cases[] = {
                { "small_truck_20k_64", "meshes/CesiumMilkTruck.glb", false },
                { "objaverse_00200996", "meshes/00200996b8f34f55a2dd2f44d316d107.glb", true },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *replay = test_replay_path(cases[i].replay);
                _cleanup_free_ char *path = cases[i].shared ? test_shared_path(cases[i].mesh)
                                                            : test_data_path(cases[i].mesh);
                if (!replay || !path) {
                        printf("  %-34s skipped: ../shared is absent\n", cases[i].replay);
                        continue;
                }
                _cleanup_(st_closep) st_file *st = test_open(replay);
                int64_t nv, nf, same = 0;
                _cleanup_free_ double *v = replay_f64(st, "input_vertices", &nv);
                _cleanup_free_ int64_t *f = test_i64(st, "input_faces", &nf);
                p3_mesh m = {};
                p3_err err = {};

                CHECK_OK(p3_mesh_import_file(path, NULL, NULL, &m, &err));
                for (int64_t t = 0; t < MIN(m.nf, nf / 3); t++)
                        same += same_triangle(&m, t, v, f + 3 * t);
                printf("  %-34s %5" PRId64 " of %5" PRId64 " triangles as trimesh's (%" PRId64 " imported)\n",
                       strrchr(cases[i].mesh, '/') + 1, same, nf / 3, m.nf);
                CHECK(m.nf == nf / 3 && same == m.nf);
                p3_mesh_done(&m);
                n_checks++;
        }
}

/* ---- the shared meshes -------------------------------------------------------------------- */

/* Triangles after triangulation (README's F, or the bracketed count for OBJ n-gons); for
 * CesiumMilkTruck, 2,856 as stored plus a second instance of the 768-triangle wheels. */
static const struct {
        const char *file;
        int64_t nf;
        int32_t min_src;
} good_meshes[] = {
        { "00200996b8f34f55a2dd2f44d316d107.glb", 35900, 12 },
        { "CesiumMilkTruck.glb", 2856 + 768, 5 },
        { "Fox.glb", 576, 1 },
        { "alien.glb", 292, 18 },
        { "cakeBirthday.glb", 1332, 42 },
        { "SheenCloth.glb", 115200, 1 },
        { "no_indices_3storybuilding.glb", 72, 3 },
        { "spot_control_mesh.obj", 372, 1 },
        { "spider.obj", 1368, 19 },
        { "oakChair.obj", 31786, 7 },
        { "copperBeech.obj", 187308, 1 },
        { "bun_zipper.ply", 69451, 1 },
        { "Wuson.ply", 3732, 1 },
        { "Spider_ascii.stl", 1368, 1 },
        { "Wuson.off", 3732, 1 },
        { "edge/deg_faces.obj", 4, 1 },
};

static void test_good_meshes(const char *dir) {
        for (size_t i = 0; i < ELEMENTSOF(good_meshes); i++) {
                _cleanup_free_ char *path = NULL;
                size_t size;
                p3_mesh m = {}, m2 = {};
                p3_err err = {};
                const char *file = good_meshes[i].file;

                CHECK(asprintf(&path, "%s/%s", dir, file) > 0);
                int r = p3_mesh_import_file(path, NULL, NULL, &m, &err);
                if (r < 0) {
                        fprintf(stderr, "%s: %s\n", file, p3_err_msg(&err, r));
                        exit(EXIT_FAILURE);
                }
                check_mesh_sane(&m);
                printf("  %-38s %7" PRId64 " faces %7" PRId64 " vertices %3d sources (%s ...)\n", file, m.nf, m.nv, m.n_src,
                       m.src_names[0]);
                CHECK(m.nf == good_meshes[i].nf);
                CHECK(m.n_src >= good_meshes[i].min_src);

                /* from memory, format detected from the content: the same mesh */
                _cleanup_free_ void *buf = read_all(path, &size);
                const char *d = p3_mesh_format_detect(buf, size);
                CHECK(d && strcmp(d, ext_of(file)) == 0);
                CHECK_OK(p3_mesh_import_buffer(buf, size, NULL, file, NULL, &m2, &err));
                CHECK(m2.nf == m.nf && m2.nv == m.nv && memcmp(m2.v, m.v, (size_t) m.nv * 3 * sizeof(double)) == 0 &&
                      memcmp(m2.f, m.f, (size_t) m.nf * 3 * sizeof(int32_t)) == 0);
                p3_mesh_done(&m);
                p3_mesh_done(&m2);
                n_checks++;
        }
}

static void test_special_meshes(const char *dir) {
        _cleanup_free_ char *draco = NULL, *sparse = NULL;
        p3_mesh m = {};
        p3_err err = {};

        CHECK(asprintf(&draco, "%s/DenseSphere.glb", dir) > 0 && asprintf(&sparse, "%s/SimpleSparseAccessor.gltf", dir) > 0);
        expect_error("DenseSphere.glb", p3_mesh_import_file(draco, NULL, NULL, &m, &err), &err, "DenseSphere.glb",
                     "Draco-compressed meshes are not supported");

        err = (p3_err) {};
        CHECK_OK(p3_mesh_import_file(sparse, NULL, NULL, &m, &err));
        check_mesh_sane(&m);
        CHECK(m.nf == 12 && m.nv == 14);
        /* the sparse accessor moves vertices 8..10 up to y = 4 (y <= 2 without it) */
        double ymax = 0;
        for (int64_t i = 0; i < m.nv; i++)
                ymax = MAX(ymax, m.v[3 * i + 1]);
        CHECK(fabs(ymax - 4) < 1e-6);
        p3_mesh_done(&m);
        printf("  %-38s %7d faces by path\n", "SimpleSparseAccessor.gltf", 12);

        size_t size;
        _cleanup_free_ void *buf = read_all(sparse, &size);
        err = (p3_err) {};
        expect_error("SimpleSparseAccessor.gltf (buffer)",
                     p3_mesh_import_buffer(buf, size, NULL, "SimpleSparseAccessor.gltf", NULL, &m, &err), &err,
                     "SimpleSparseAccessor.gltf", "GLB");
}

static const struct {
        const char *file, *word;
} bad_meshes[] = {
        { "invalid_magic.glb", "magic" },
        { "Fox_truncated.glb", "truncated" },
        { "BoxWithInfinites.glb", "non-finite" },
        { "OutOfMemory.off", "353535235358" },
        { "incorrectFaceCounter.bin.stl", "66 triangles" },
        { "empty.ply", "empty" },
        { "ply_points_bin.ply", "no faces" },
};

static void test_bad_meshes(const char *dir) {
        for (size_t i = 0; i < ELEMENTSOF(bad_meshes); i++) {
                _cleanup_free_ char *path = NULL;
                _cleanup_free_ void *buf = NULL;
                size_t size;
                p3_mesh m = {};
                p3_err err = {};

                CHECK(asprintf(&path, "%s/bad/%s", dir, bad_meshes[i].file) > 0);
                expect_error(bad_meshes[i].file, p3_mesh_import_file(path, NULL, NULL, &m, &err), &err, bad_meshes[i].file,
                             bad_meshes[i].word);
                /* the same from memory with the format the extension declares */
                buf = read_all(path, &size);
                err = (p3_err) {};
                int r = p3_mesh_import_buffer(buf, size, ext_of(bad_meshes[i].file), bad_meshes[i].file, NULL, &m, &err);
                CHECK(r < 0 && strstr(err.msg, bad_meshes[i].file) && strcasestr(err.msg, bad_meshes[i].word));
                CHECK(!m.v && !m.f && m.nf == 0);
        }
}

static void bbox(const double *v, int64_t n, double lo[3], double hi[3]) {
        for (int c = 0; c < 3; c++)
                lo[c] = INFINITY, hi[c] = -INFINITY;
        for (int64_t i = 0; i < n; i++)
                for (int c = 0; c < 3; c++) {
                        lo[c] = MIN(lo[c], v[3 * i + c]);
                        hi[c] = MAX(hi[c], v[3 * i + c]);
                }
}

/* Our flattening against assimp's own: same bounding box, and not the untransformed one. */
static void test_transforms_real(const char *dir) {
        static const char *const files[] = { "CesiumMilkTruck.glb", "alien.glb" };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *path = NULL;
                p3_mesh m = {};
                p3_err err = {};
                double lo[3], hi[3], rlo[3] = { INFINITY, INFINITY, INFINITY }, rhi[3] = { -INFINITY, -INFINITY, -INFINITY };
                double ulo[3] = { INFINITY, INFINITY, INFINITY }, uhi[3] = { -INFINITY, -INFINITY, -INFINITY };

                CHECK(asprintf(&path, "%s/%s", dir, files[i]) > 0);
                CHECK_OK(p3_mesh_import_file(path, NULL, NULL, &m, &err));
                bbox(m.v, m.nv, lo, hi);

                const struct aiScene *pre = aiImportFile(path, aiProcess_Triangulate | aiProcess_PreTransformVertices);
                const struct aiScene *raw = aiImportFile(path, aiProcess_Triangulate);
                CHECK(pre && raw);
                for (unsigned k = 0; k < pre->mNumMeshes; k++)
                        for (unsigned j = 0; j < pre->mMeshes[k]->mNumVertices; j++)
                                for (int c = 0; c < 3; c++) {
                                        double x = (&pre->mMeshes[k]->mVertices[j].x)[c];
                                        rlo[c] = MIN(rlo[c], x), rhi[c] = MAX(rhi[c], x);
                                }
                for (unsigned k = 0; k < raw->mNumMeshes; k++)
                        for (unsigned j = 0; j < raw->mMeshes[k]->mNumVertices; j++)
                                for (int c = 0; c < 3; c++) {
                                        double x = (&raw->mMeshes[k]->mVertices[j].x)[c];
                                        ulo[c] = MIN(ulo[c], x), uhi[c] = MAX(uhi[c], x);
                                }
                aiReleaseImport(pre);
                aiReleaseImport(raw);

                double moved = 0;
                for (int c = 0; c < 3; c++) {
                        CHECK(fabs(lo[c] - rlo[c]) < 1e-5 && fabs(hi[c] - rhi[c]) < 1e-5);
                        moved = MAX(moved, MAX(fabs(lo[c] - ulo[c]), fabs(hi[c] - uhi[c])));
                }
                CHECK(moved > 1e-3);
                printf("  %-38s bbox (%.4f %.4f %.4f)..(%.4f %.4f %.4f) = assimp PreTransformVertices\n", files[i], lo[0],
                       lo[1], lo[2], hi[0], hi[1], hi[2]);
                p3_mesh_done(&m);
                n_checks++;
        }
}

/* ---- robustness: truncations and corruptions must fail cleanly or give a sane mesh -------- */

static uint64_t lcg(uint64_t *s) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        return *s >> 33;
}

static void try_import(const uint8_t *buf, size_t size, const char *fmt, const char *name, int *ok, int *failed) {
        p3_mesh m = {};
        p3_err err = {};
        int r = p3_mesh_import_buffer(buf, size, fmt, name, NULL, &m, &err);
        if (r >= 0) {
                check_mesh_sane(&m);
                p3_mesh_done(&m);
                (*ok)++;
        } else {
                if (!strstr(err.msg, name) || strchr(err.msg, '\n')) {
                        fprintf(stderr, "%s: r=%d unnamed or multi-line error \"%s\"\n", name, r, err.msg);
                        exit(EXIT_FAILURE);
                }
                (*failed)++;
        }
}

static void fuzz_buffer(const char *name, const uint8_t *orig, size_t size, const char *fmt, int rounds) {
        uint64_t seed = 0x9e3779b97f4a7c15ull ^ size;
        int ok = 0, failed = 0;
        _cleanup_free_ uint8_t *buf = malloc(size + 1);
        CHECK(buf);

        /* truncations: every length below 64, then spread over the file */
        for (int k = 0; k < rounds; k++) {
                size_t cut = k < 64 ? (size_t) k % size : (size_t) (lcg(&seed) % size);
                memcpy(buf, orig, cut);
                try_import(buf, cut, k & 1 ? fmt : NULL, name, &ok, &failed);
        }
        /* corruptions: 1-8 bytes set to 0x00, 0xff or a random value */
        for (int k = 0; k < rounds; k++) {
                memcpy(buf, orig, size);
                int n = 1 + (int) (lcg(&seed) % 8);
                for (int j = 0; j < n; j++) {
                        size_t at = k < 32 && j == 0 ? (size_t) k % size : (size_t) (lcg(&seed) % size);
                        uint64_t kind = lcg(&seed) % 3;
                        buf[at] = kind == 0 ? 0 : kind == 1 ? 0xff : (uint8_t) lcg(&seed);
                }
                try_import(buf, size, k & 1 ? fmt : NULL, name, &ok, &failed);
        }
        printf("  %-38s %4d imported, %4d refused cleanly\n", name, ok, failed);
        n_checks++;
}

static int fuzz_rounds(void) {
        const char *env = getenv("P3_FUZZ_ROUNDS");
        return env ? atoi(env) : 200;
}

/* In-memory inputs of the formats the shared directory has no small file of. */
static void test_fuzz_synthetic(void) {
        static const uint16_t idx[6] = { 0, 1, 2, 2, 1, 0 };
        const char *ply = "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
                          "element face 2\nproperty list uchar int vertex_indices\nend_header\n"
                          "0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n4 0 1 2 3\n";
        const char *stl = "solid t\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\n"
                          "endloop\nendfacet\nendsolid t\n";
        uint8_t bin_ply[256], bin_stl[84 + 2 * 50] = "solid binary";
        int n = snprintf((char *) bin_ply, sizeof(bin_ply),
                         "ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                         "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n");
        static const float v[9] = { 0, 0, 0, 1, 0, 0, 0, 1, 0 };
        static const int32_t f[3] = { 0, 1, 2 };
        memcpy(bin_ply + n, v, sizeof(v));
        bin_ply[n + sizeof(v)] = 3;
        memcpy(bin_ply + n + sizeof(v) + 1, f, sizeof(f));
        put32(bin_stl + 80, 2);
        for (int t = 0; t < 2; t++)
                memcpy(bin_stl + 84 + 50 * t + 12, v, sizeof(v));

        tri_bin b = make_tri_bin(idx, 6);
        _cleanup_free_ char *gltf = make_gltf(idx, 6, one_node, NULL);
        _cleanup_free_ char *json = make_gltf_json(&b, NULL, one_node, NULL);
        size_t glb_size;
        _cleanup_free_ uint8_t *glb = make_glb(json, &b, &glb_size);

        int rounds = fuzz_rounds();
        fuzz_buffer("synthetic.gltf", (const uint8_t *) gltf, strlen(gltf), "gltf", rounds);
        fuzz_buffer("synthetic.glb", glb, glb_size, "glb", rounds);
        fuzz_buffer("synthetic.ply", (const uint8_t *) ply, strlen(ply), "ply", rounds);
        fuzz_buffer("synthetic-binary.ply", bin_ply, (size_t) n + sizeof(v) + 1 + sizeof(f), "ply", rounds);
        fuzz_buffer("synthetic.stl", (const uint8_t *) stl, strlen(stl), "stl", rounds);
        fuzz_buffer("synthetic-binary.stl", bin_stl, sizeof(bin_stl), "stl", rounds);
}

static void test_fuzz(const char *dir) {
        static const char *const files[] = {
                "alien.glb",          "no_indices_3storybuilding.glb", "SimpleSparseAccessor.gltf",
                "Fox.glb",            "spot_control_mesh.obj",         "Wuson.off",
                "edge/deg_faces.obj", "bad/ply_points_bin.ply",        "bad/incorrectFaceCounter.bin.stl",
                "bad/OutOfMemory.off", "bad/BoxWithInfinites.glb",
        };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_free_ char *path = NULL;
                size_t size;
                CHECK(asprintf(&path, "%s/%s", dir, files[i]) > 0);
                _cleanup_free_ uint8_t *buf = read_all(path, &size);
                fuzz_buffer(files[i], buf, size, ext_of(files[i]), fuzz_rounds());
        }
}

/* Imports from several threads at once: the import lock keeps assimp's global logger sane. */
static void *thread_import(void *arg) {
        const char *path = arg;
        for (int k = 0; k < 10; k++) {
                p3_mesh m = {};
                p3_err err = {};
                CHECK_OK(p3_mesh_import_file(path, NULL, NULL, &m, &err));
                CHECK(m.nf == 292);
                p3_mesh_done(&m);
        }
        return NULL;
}

static void test_threads(const char *dir) {
        _cleanup_free_ char *path = NULL;
        pthread_t t[4];
        CHECK(asprintf(&path, "%s/alien.glb", dir) > 0);
        for (int i = 0; i < 4; i++)
                CHECK(pthread_create(&t[i], NULL, thread_import, path) == 0);
        for (int i = 0; i < 4; i++)
                CHECK(pthread_join(t[i], NULL) == 0);
        n_checks++;
}

/* The benchmarks' OFF reader (tests/mesh-off.c, where no assimp is built) reads Wuson.off as
 * the import does: the same faces, corner by corner (assimp parses into FP32, to about an
 * ulp). */
static void test_off_reader(void) {
        _cleanup_free_ char *path = test_data_path("meshes/Wuson.off");
        p3_mesh a = {}, b = {};
        p3_err err = {};
        CHECK_OK(p3_mesh_import_file(path, NULL, NULL, &a, &err));
        CHECK_OK(test_mesh_read_off(path, &b, &err));
        CHECK(a.nf == b.nf && a.nf == 3732);
        for (int64_t i = 0; i < 3 * a.nf; i++)
                for (int d = 0; d < 3; d++)
                        CHECK(fabs(a.v[3 * a.f[i] + d] - b.v[3 * b.f[i] + d]) <= 1e-6);
        p3_mesh_done(&a), p3_mesh_done(&b);
        n_checks++;
}

/* The synthetic and tests/data cases (mesh-import), or with "shared" the meshes of
 * ../shared (mesh-import-shared, which skips without them): a fresh clone runs the first
 * in full instead of seeing it reported as skipped. */
static int run_core(void) {
        printf("synthetic buffers:\n");
        test_detect();
        test_empty_and_unknown();
        test_obj();
        test_stl();
        test_ply_off();
        test_gltf_transforms();
        test_gltf_refusals();
        test_fd();
        test_gltf_by_path();
        printf("truncated and corrupted synthetic buffers:\n");
        test_fuzz_synthetic();
        printf("polygons against trimesh's triangulation:\n");
        test_trimesh_triangulation();
        printf("glTF scenes in trimesh's order (the pipeline replays' input mesh):\n");
        test_trimesh_scene_order();
        printf("the benchmarks' OFF reader against the import:\n");
        test_off_reader();

        printf("%d checks passed\n", n_checks);
        return EXIT_SUCCESS;
}

static int run_shared(void) {
        _cleanup_free_ char *dir = test_shared_path("meshes/README.md");
        if (!dir)
                test_skip("../shared/meshes is absent");
        *strrchr(dir, '/') = '\0';

        printf("shared meshes:\n");
        test_good_meshes(dir);
        test_special_meshes(dir);
        printf("bad meshes:\n");
        test_bad_meshes(dir);
        printf("transforms:\n");
        test_transforms_real(dir);
        printf("truncated and corrupted copies:\n");
        test_fuzz(dir);
        test_threads(dir);
        printf("%d checks passed\n", n_checks);
        return EXIT_SUCCESS;
}

int main(int argc, char **argv) {
        return argc > 1 && strcmp(argv[1], "shared") == 0 ? run_shared() : run_core();
}
