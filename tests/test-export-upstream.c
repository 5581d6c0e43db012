/* SPDX-License-Identifier: MIT */
/* Upstream's files for X-Part and the picture: the .npy headers byte for byte as NumPy writes
 * them and their contents for two labelled cubes; on the recorded small-truck replay, the face
 * ids and boxes equal upstream's arrays; the outline boxes of the aabb GLB follow upstream's
 * better_aabb (checked against NumPy when it is installed); the part colours follow NumPy's
 * global generator; the PNG decodes to the asked size and shows each part where it is. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export.h"
#include "postprocess.h"
#include "render_parts.h"
#include "test-util.h"

/* ---- fixtures and files --------------------------------------------------------------------- */

static const int32_t cube_faces[12][3] = {
        { 0, 2, 3 }, { 0, 3, 1 }, { 4, 5, 7 }, { 4, 7, 6 }, { 0, 1, 5 }, { 0, 5, 4 },
        { 2, 6, 7 }, { 2, 7, 3 }, { 0, 4, 6 }, { 0, 6, 2 }, { 1, 3, 7 }, { 1, 7, 5 },
};

typedef struct cubes {
        double v[16 * 3];
        int32_t f[24 * 3];
        int32_t ids[24];
        int32_t labels[2];
        double aabb[2][2][3];
        p3_mesh mesh;
        p3_segmentation seg;
} cubes;

/* Two unit cubes, the second at x + 2: faces 0-11 label 0, 12-23 label 1. */
static void cubes_init(cubes *c) {
        *c = (cubes) { .labels = { 0, 1 } };
        for (int k = 0; k < 2; k++) {
                for (int i = 0; i < 8; i++) {
                        c->v[3 * (8 * k + i)] = (i & 1) + 2.0 * k;
                        c->v[3 * (8 * k + i) + 1] = (i >> 1) & 1;
                        c->v[3 * (8 * k + i) + 2] = (i >> 2) & 1;
                }
                for (int j = 0; j < 12; j++) {
                        for (int x = 0; x < 3; x++)
                                c->f[3 * (12 * k + j) + x] = cube_faces[j][x] + 8 * k;
                        c->ids[12 * k + j] = k;
                }
                for (int x = 0; x < 3; x++) {
                        c->aabb[k][0][x] = x == 0 ? 2.0 * k : 0;
                        c->aabb[k][1][x] = x == 0 ? 2.0 * k + 1 : 1;
                }
        }
        c->mesh = (p3_mesh) { .nv = 16, .nf = 24, .v = c->v, .f = c->f };
        c->seg = (p3_segmentation) { .mesh = &c->mesh, .face_ids = c->ids, .n_parts = 2,
                                     .part_labels = c->labels, .aabb = &c->aabb[0][0][0] };
}

static int tmp_fd(void) {
        FILE *f = tmpfile();
        CHECK(f);
        int fd = dup(fileno(f));
        fclose(f);
        CHECK(fd >= 0);
        return fd;
}

static uint8_t *slurp(int fd, size_t *size) {
        struct stat st;
        CHECK(fstat(fd, &st) == 0);
        uint8_t *d = malloc((size_t) st.st_size + 1);
        CHECK(d);
        CHECK(pread(fd, d, (size_t) st.st_size, 0) == st.st_size);
        *size = (size_t) st.st_size;
        return d;
}

typedef int (*writer)(const p3_segmentation *s, int fd, p3_err *err);

/* Write with w into path (or an anonymous file when path is NULL) and read it back. */
static uint8_t *write_to(writer w, const p3_segmentation *s, const char *path, size_t *size) {
        p3_err err = {};
        int fd = path ? open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : tmp_fd();
        CHECK(fd >= 0);
        int r = w(s, fd, &err);
        if (r < 0) {
                fprintf(stderr, "writer failed: %s\n", p3_err_msg(&err, r));
                exit(EXIT_FAILURE);
        }
        uint8_t *d = slurp(fd, size);
        close(fd);
        return d;
}

/* A python3 with NumPy, or NULL: Debian's python3-numpy lives under /usr/bin's python3, which
 * need not be the first python3 on PATH. */
static const char *numpy_python(void) {
        static const char *const candidates[] = { "python3", "/usr/bin/python3" };
        for (size_t i = 0; i < ELEMENTSOF(candidates); i++) {
                char cmd[128];
                snprintf(cmd, sizeof(cmd), "%s -c 'import numpy' 2>/dev/null", candidates[i]);
                if (system(cmd) == 0)
                        return candidates[i];
        }
        return NULL;
}

/* Run a python script with arguments; true when it exits 0. */
static bool run_python(const char *py, const char *script, const char *args) {
        char path[] = "/tmp/test-export-upstream-XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        CHECK(write(fd, script, strlen(script)) == (ssize_t) strlen(script));
        close(fd);
        char cmd[1024];
        snprintf(cmd, sizeof(cmd), "%s %s %s", py, path, args);
        int r = system(cmd);
        unlink(path);
        return r == 0;
}

/* ---- .npy ----------------------------------------------------------------------------------- */

/* As NumPy 1.24 np.save writes them (format 1.0, 21 digits of room for the first axis). */
static const char hdr_face_ids_24[] =
        "\x93NUMPY\x01\x00v\x00{'descr': '<i8', 'fortran_order': False, 'shape': (24,), }";
static const char hdr_aabb_2[] =
        "\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2, 3), }";
static const char hdr_aabb_0[] =
        "\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (0, 2, 3), }";

static void check_header(const uint8_t *d, size_t n, const char *want, size_t want_len) {
        CHECK(n >= 128 && (n - 128) % 8 == 0);
        CHECK(memcmp(d, want, want_len) == 0);
        for (size_t i = want_len; i < 127; i++)
                CHECK(d[i] == ' ');
        CHECK(d[127] == '\n');
}

static int64_t i64le(const uint8_t *p) {
        uint64_t u = 0;
        for (int i = 7; i >= 0; i--)
                u = u << 8 | p[i];
        return (int64_t) u;
}

static double f64le(const uint8_t *p) {
        uint64_t u = (uint64_t) i64le(p);
        double d;
        memcpy(&d, &u, sizeof(d));
        return d;
}

static void test_npy(void) {
        cubes c;
        size_t n;

        cubes_init(&c);
        c.ids[3] = -1;
        c.ids[20] = -2;
        _cleanup_free_ uint8_t *f = write_to(p3_export_face_ids_npy, &c.seg, NULL, &n);
        check_header(f, n, hdr_face_ids_24, sizeof(hdr_face_ids_24) - 1);
        CHECK(n == 128 + 8 * 24);
        for (int i = 0; i < 24; i++)
                CHECK(i64le(f + 128 + 8 * i) == c.ids[i]);

        /* the boxes come from the faces, whatever the table says */
        c.aabb[1][1][2] = 42;
        _cleanup_free_ uint8_t *a = write_to(p3_export_aabb_npy, &c.seg, NULL, &n);
        check_header(a, n, hdr_aabb_2, sizeof(hdr_aabb_2) - 1);
        CHECK(n == 128 + 8 * 12);
        static const double want[12] = { 0, 0, 0, 1, 1, 1, 2, 0, 0, 3, 1, 1 };
        for (int i = 0; i < 12; i++)
                CHECK(f64le(a + 128 + 8 * i) == want[i]);

        /* a part without faces is not in np.unique(face_ids): left out */
        for (int i = 12; i < 24; i++)
                c.ids[i] = i == 12 ? 0 : -1;
        _cleanup_free_ uint8_t *a1 = write_to(p3_export_aabb_npy, &c.seg, NULL, &n);
        CHECK(n == 128 + 8 * 6 && memcmp(a1 + 10, "{'descr': '<f8', 'fortran_order': False, "
                                                  "'shape': (1, 2, 3), }", 61) == 0);
        CHECK(f64le(a1 + 128 + 8 * 3) == 3);   /* face 12 reaches x = 3 */

        c.seg.n_parts = 0;
        for (int i = 0; i < 24; i++)
                c.ids[i] = -2;
        _cleanup_free_ uint8_t *a0 = write_to(p3_export_aabb_npy, &c.seg, NULL, &n);
        check_header(a0, n, hdr_aabb_0, sizeof(hdr_aabb_0) - 1);
        CHECK(n == 128);
        printf("npy: headers and contents ok\n");
}

/* NumPy loads both files, and np.save of what it loaded gives the same bytes. */
static const char npy_script[] =
        "import io, sys\n"
        "import numpy as np\n"
        "ids = np.load(sys.argv[1]); box = np.load(sys.argv[2])\n"
        "assert ids.dtype == np.dtype('<i8') and ids.shape == (24,), (ids.dtype, ids.shape)\n"
        "assert box.dtype == np.dtype('<f8') and box.shape == (2, 2, 3), box.shape\n"
        "want = np.array([0] * 12 + [1] * 12); want[3] = -1; want[20] = -2\n"
        "assert (ids == want).all(), ids\n"
        "v = np.array([[(i & 1) + 2.0 * k, (i >> 1) & 1, (i >> 2) & 1]\n"
        "              for k in range(2) for i in range(8)])\n"
        "f = np.array(sys.argv[3].split(','), dtype=np.int64).reshape(-1, 3)\n"
        "ref = []\n"
        "for i in np.unique(ids):\n"
        "    if i in (-1, -2):\n"
        "        continue\n"
        "    p = v[f[ids == i].reshape(-1)]\n"
        "    ref.append([p.min(axis=0), p.max(axis=0)])\n"
        "assert (np.array(ref) == box).all(), (ref, box)\n"
        "for path, a in ((sys.argv[1], ids), (sys.argv[2], box)):\n"
        "    b = io.BytesIO(); np.save(b, a)\n"
        "    assert open(path, 'rb').read() == b.getvalue(), path\n";

static void test_npy_numpy(const char *py) {
        cubes c;
        size_t n;
        char ids_path[] = "/tmp/test-export-upstream-ids-XXXXXX.npy";
        char box_path[] = "/tmp/test-export-upstream-box-XXXXXX.npy";
        char args[2048];

        if (!py) {
                printf("SKIP: no python3 with NumPy: the .npy files were not loaded by NumPy\n");
                return;
        }
        cubes_init(&c);
        c.ids[3] = -1;
        c.ids[20] = -2;
        close(mkstemps(ids_path, 4));
        close(mkstemps(box_path, 4));
        free(write_to(p3_export_face_ids_npy, &c.seg, ids_path, &n));
        free(write_to(p3_export_aabb_npy, &c.seg, box_path, &n));
        int len = snprintf(args, sizeof(args), "%s %s ", ids_path, box_path);
        for (int i = 0; i < 72; i++)
                len += snprintf(args + len, sizeof(args) - (size_t) len, "%s%d", i ? "," : "",
                                c.f[i]);
        bool ok = run_python(py, npy_script, args);
        unlink(ids_path);
        unlink(box_path);
        CHECK(ok);
        printf("npy: NumPy loads both, equal to np.save of the same arrays\n");
}

/* ---- the replay ----------------------------------------------------------------------------- */

static void test_replay(void) {
        _cleanup_free_ char *path = test_replay_path("small_truck_20k_64");
        if (!path) {
                printf("SKIP: small truck replay absent: upstream's arrays not compared\n");
                return;
        }
        _cleanup_(st_closep) st_file *g = test_open(path);
        int64_t nv, nf, np_, nfi, ni;
        const st_tensor *tv = st_find(g, "mesh_vertices"), *tp = st_find(g, "points");
        CHECK(tv && tv->dtype == ST_F64 && tp && tp->dtype == ST_F64);
        _cleanup_free_ int64_t *faces = test_i64(g, "mesh_faces", &nf);
        _cleanup_free_ int64_t *fi = test_i64(g, "face_idx", &nfi);
        _cleanup_free_ float *iou = test_f32(g, "pred_iou", &ni);
        _cleanup_free_ int32_t *f32 = malloc(sizeof(int32_t) * nf);
        _cleanup_free_ int32_t *fi32 = malloc(sizeof(int32_t) * nfi);
        CHECK(f32 && fi32);
        nv = tv->numel;
        np_ = tp->numel;
        for (int64_t i = 0; i < nf; i++)
                f32[i] = (int32_t) faces[i];
        for (int64_t i = 0; i < nfi; i++)
                fi32[i] = (int32_t) fi[i];
        p3_mesh mesh = { .nv = nv / 3, .nf = nf / 3, .v = (double *) tv->data, .f = f32 };
        p3_adjacency adj;
        CHECK_OK(p3_mesh_adjacency(&mesh, &adj));
        p3_mt19937 rng;
        p3_mt_seed(&rng, 42);
        p3_pp_input in = { .mesh = &mesh, .adj = &adj, .points = tp->data, .face_idx = fi32,
                           .n = np_ / 3, .k = (int) (ni / 3), .pred_iou = iou,
                           .threshold = P3_PP_THRESHOLD, .colour_rng = &rng };
        static const char *bits[3] = { "mask_1_bits", "mask_2_bits", "mask_3_bits" };
        for (int i = 0; i < 3; i++)
                in.mask_bits[i] = st_find(g, bits[i])->data;

        for (int pp = 0; pp < 2; pp++) {
                p3_pp_result res;
                p3_err err = {};
                in.post_process = pp == 1;
                CHECK_OK(p3_postprocess(&in, NULL, &res, &err));
                _cleanup_free_ int32_t *ids = malloc(sizeof(int32_t) * res.nf);
                _cleanup_free_ int32_t *labels = malloc(sizeof(int32_t) * (res.n_parts + 1));
                CHECK(ids && labels && res.colours);
                for (int64_t i = 0; i < res.nf; i++)
                        ids[i] = (int32_t) res.face_ids[i];
                for (int64_t i = 0; i < res.n_parts; i++)
                        labels[i] = (int32_t) res.part_labels[i];
                p3_segmentation s = { .mesh = &mesh, .face_ids = ids, .n_parts = (int) res.n_parts,
                                      .part_labels = labels, .aabb = res.aabb,
                                      .colours = res.colours };
                char name[32];
                size_t n;
                int64_t nref;
                _cleanup_free_ uint8_t *fd = write_to(p3_export_face_ids_npy, &s, NULL, &n);
                snprintf(name, sizeof(name), "final_face_ids_pp%d", pp);
                _cleanup_free_ int64_t *ref = test_i64(g, name, &nref);
                CHECK((size_t) nref * 8 + 128 == n);
                for (int64_t i = 0; i < nref; i++)
                        CHECK(i64le(fd + 128 + 8 * i) == ref[i]);

                _cleanup_free_ uint8_t *ad = write_to(p3_export_aabb_npy, &s, NULL, &n);
                snprintf(name, sizeof(name), "aabb_pp%d", pp);
                const st_tensor *box = st_find(g, name);
                CHECK(box && box->dtype == ST_F64 && (size_t) box->numel * 8 + 128 == n);
                /* bit for bit, and the pipeline's own table holds the same boxes */
                CHECK(memcmp(ad + 128, box->data, 8 * (size_t) box->numel) == 0);
                CHECK(box->numel == 6 * res.n_parts &&
                      memcmp(res.aabb, box->data, 8 * (size_t) box->numel) == 0);
                printf("replay pp%d: face_ids.npy (%lld faces) and aabb.npy (%lld parts) equal "
                       "upstream's\n", pp, (long long) nref, (long long) res.n_parts);

                /* the first final mask takes the generator's first draw (seed 42) */
                int64_t nfinal;
                _cleanup_free_ int64_t *final = test_i64(g, "final_mask_sorted", &nfinal);
                int at = p3_segmentation_part(&s, (int32_t) final[0]);
                CHECK(nfinal >= 1 && at >= 0);
                CHECK(memcmp(res.colours + 3 * at, (uint8_t[]) { 95, 242, 186 }, 3) == 0);
                p3_pp_result_done(&res);
        }
        p3_adjacency_done(&adj);
}

/* ---- colours -------------------------------------------------------------------------------- */

/* np.random.seed(42); [np.random.rand(3) * 255 for _ in range(6)] stored into uint8. */
static const uint8_t seed42[6][3] = { { 95, 242, 186 }, { 152, 39, 39 }, { 14, 220, 153 },
                                      { 180, 5, 247 },  { 212, 54, 46 }, { 46, 77, 133 } };

static void test_colours(void) {
        p3_mt19937 rng;
        p3_mt_seed(&rng, 42);
        /* masks painted 7, 3, 9, 5 (9 lost its faces); new ids 10 and 11 (as upstream, a new id
         * could also meet a mask index: 11 is drawn once more and the later draw wins) */
        const int64_t order[5] = { 7, 3, 9, 5, 11 };
        const int64_t labels[5] = { 3, 5, 7, 10, 11 };
        uint8_t rgb[5][3];
        p3_pp_colours(&rng, order, 5, 10, 12, labels, 5, &rgb[0][0]);
        CHECK(memcmp(rgb[2], seed42[0], 3) == 0); /* 7 */
        CHECK(memcmp(rgb[0], seed42[1], 3) == 0); /* 3 */
        CHECK(memcmp(rgb[1], seed42[3], 3) == 0); /* 5 */
        CHECK(memcmp(rgb[3], seed42[5], 3) == 0); /* 10: after the five mask draws */
        /* rng itself is untouched */
        p3_mt19937 fresh;
        p3_mt_seed(&fresh, 42);
        CHECK(memcmp(&fresh, &rng, sizeof(rng)) == 0);
        printf("colours: NumPy's seed-42 draws in upstream's order\n");
}

/* ---- outline boxes and the aabb GLB --------------------------------------------------------- */

typedef struct spiky {
        double *v;
        int32_t *f, *ids;
        int32_t labels[3];
        double aabb[3][2][3];
        p3_mesh mesh;
        p3_segmentation seg;
} spiky;

/* Three parts of random triangles in a unit box each, part 1 with one far spike vertex. */
static void spiky_init(spiky *s, int per_part) {
        uint64_t st = 7;
        int nf = 3 * per_part, nv = 3 * nf;
        *s = (spiky) { .labels = { 0, 1, 4 } };
        s->v = malloc(sizeof(double) * 3 * nv);
        s->f = malloc(sizeof(int32_t) * 3 * nf);
        s->ids = malloc(sizeof(int32_t) * nf);
        CHECK(s->v && s->f && s->ids);
        for (int i = 0; i < nf; i++) {
                int part = i % 3;
                s->ids[i] = s->labels[part];
                for (int k = 0; k < 3; k++) {
                        /* faces share vertices: a vertex counts once per face, as upstream */
                        s->f[3 * i + k] = k == 2 && i >= 3 ? 3 * (i - 3) + 2 : 3 * i + k;
                        for (int c = 0; c < 3; c++)
                                s->v[3 * (3 * i + k) + c] = 3.0 * part * (c == 0) +
                                                            test_rnd_unit(&st) * (1 + c);
                }
        }
        s->v[3 * 4] = 40; /* face 1 (part 1), corner 1: far out on x */
        s->mesh = (p3_mesh) { .nv = nv, .nf = nf, .v = s->v, .f = s->f };
        s->seg = (p3_segmentation) { .mesh = &s->mesh, .face_ids = s->ids, .n_parts = 3,
                                     .part_labels = s->labels, .aabb = &s->aabb[0][0][0] };
}

static void spiky_done(spiky *s) {
        free(s->v);
        free(s->f);
        free(s->ids);
}

/* upstream's better_aabb, from its rule, on the same mesh (raw float64 / int32 files) */
static const char outline_script[] =
        "import sys\n"
        "import numpy as np\n"
        "v = np.fromfile(sys.argv[1], '<f8').reshape(-1, 3)\n"
        "f = np.fromfile(sys.argv[2], '<i4').reshape(-1, 3)\n"
        "ids = np.fromfile(sys.argv[3], '<i4')\n"
        "def trim(d):\n"
        "    d = np.array(d, dtype=np.float32)\n"
        "    q1 = np.percentile(d, 25); q3 = np.percentile(d, 75); r = q3 - q1\n"
        "    return d[(d >= q1 - 1.5 * r) & (d <= q3 + 1.5 * r)].tolist()\n"
        "out = []\n"
        "for i in np.unique(ids):\n"
        "    p = v[f[ids == i].reshape(-1)]\n"
        "    t = [trim(p[:, c]) for c in range(3)]\n"
        "    out.append([[min(x) for x in t], [max(x) for x in t]])\n"
        "np.array(out, dtype='<f8').tofile(sys.argv[4])\n";

static void dump(const char *path, const void *p, size_t n) {
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(p, 1, n, f) == n && fclose(f) == 0);
}

static void outline_numpy(const char *py, int per_part) {
        spiky s;
        char paths[4][64], args[300];

        spiky_init(&s, per_part);
        for (int i = 0; i < 4; i++)
                snprintf(paths[i], sizeof(paths[i]), "/tmp/test-export-upstream-%d-%d", getpid(),
                         i);
        dump(paths[0], s.v, sizeof(double) * 3 * s.mesh.nv);
        dump(paths[1], s.f, sizeof(int32_t) * 3 * s.mesh.nf);
        dump(paths[2], s.ids, sizeof(int32_t) * s.mesh.nf);
        snprintf(args, sizeof(args), "%s %s %s %s", paths[0], paths[1], paths[2], paths[3]);
        CHECK(run_python(py, outline_script, args));
        double got[3][6], want[3][6];
        CHECK_OK(p3_segmentation_outline_boxes(&s.seg, &got[0][0]));
        FILE *f = fopen(paths[3], "rb");
        CHECK(f && fread(want, sizeof(double), 18, f) == 18);
        fclose(f);
        for (int i = 0; i < 4; i++)
                unlink(paths[i]);
        for (int p = 0; p < 3; p++)
                for (int c = 0; c < 6; c++)
                        if (got[p][c] != want[p][c]) {
                                fprintf(stderr, "part %d value %d: %.9g, NumPy %.9g\n", p, c,
                                        got[p][c], want[p][c]);
                                exit(EXIT_FAILURE);
                        }
        /* the spike is trimmed away: the outline ends well short of x = 40 */
        CHECK(per_part < 10 || got[1][3] < 5);
        spiky_done(&s);
}

static void test_outline_numpy(const char *py) {
        if (!py) {
                printf("SKIP: no python3 with NumPy: better_aabb not compared with NumPy's\n");
                return;
        }
        /* parts of 3 to 999 corners: the quartiles' neighbours at every kind of index */
        static const int sizes[] = { 1, 2, 3, 4, 7, 10, 333 };
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++)
                outline_numpy(py, sizes[i]);
        printf("outline boxes: equal to NumPy's better_aabb, the spike trimmed\n");
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
        CHECK(json_object_object_get_ex(o, key, &v));
        return v;
}

static int jint(json_object *o, const char *key) {
        return json_object_get_int(jget(o, key));
}

static json_object *jidx(json_object *o, const char *key, int i) {
        json_object *a = jget(o, key);
        CHECK(i >= 0 && (size_t) i < json_object_array_length(a));
        return json_object_array_get_idx(a, (size_t) i);
}

/* One accessor's floats inside the BIN chunk. */
static const uint8_t *accessor(json_object *j, const uint8_t *bin, size_t bin_len, int idx,
                               int *count) {
        json_object *a = jidx(j, "accessors", idx);
        json_object *v = jidx(j, "bufferViews", jint(a, "bufferView"));
        CHECK(jint(a, "componentType") == 5126);
        CHECK(strcmp(json_object_get_string(jget(a, "type")), "VEC3") == 0);
        *count = jint(a, "count");
        size_t off = (size_t) jint(v, "byteOffset") + (size_t) jint(a, "byteOffset");
        CHECK(off + 12 * (size_t) *count <= (size_t) jint(v, "byteOffset") + jint(v, "byteLength"));
        CHECK(off + 12 * (size_t) *count <= bin_len);
        return bin + off;
}

/* The box node of part p: 24 vertices, 12 axis-parallel edges of the outline box, all in the
 * part's colour. */
static void check_box(json_object *j, const uint8_t *bin, size_t bin_len, json_object *node,
                      const spiky *s, int p, const double box[6]) {
        json_object *prim = jidx(jidx(j, "meshes", jint(node, "mesh")), "primitives", 0);
        json_object *attrs = jget(prim, "attributes");
        int np, nc;
        CHECK(jint(prim, "mode") == 1 && !json_object_object_get_ex(prim, "indices", NULL));
        const uint8_t *pos = accessor(j, bin, bin_len, jint(attrs, "POSITION"), &np);
        const uint8_t *col = accessor(j, bin, bin_len, jint(attrs, "COLOR_0"), &nc);
        CHECK(np == 24 && nc == 24);
        uint8_t rgb[3];
        p3_segmentation_colour(&s->seg, s->labels[p], rgb);
        for (int e = 0; e < 12; e++) {
                int differ = 0;
                for (int c = 0; c < 3; c++) {
                        float a = f32le(pos + 24 * e + 4 * c), b = f32le(pos + 24 * e + 12 + 4 * c);
                        CHECK(fabsf(a - (float) box[c]) < 1e-5f || fabsf(a - (float) box[3 + c]) < 1e-5f);
                        differ += a != b;
                }
                CHECK(differ == 1);
        }
        for (int i = 0; i < 24; i++)
                for (int c = 0; c < 3; c++) {
                        double lin = pow((rgb[c] / 255.0 + 0.055) / 1.055, 2.4);
                        CHECK(fabs(f32le(col + 12 * i + 4 * c) - lin) < 0.01);
                }
}

static void test_aabb_glb(void) {
        spiky s;
        size_t n;
        const uint8_t colours[3][3] = { { 200, 10, 10 }, { 10, 200, 10 }, { 10, 10, 200 } };

        spiky_init(&s, 50);
        s.seg.colours = &colours[0][0];
        s.ids[5] = -1;
        _cleanup_free_ uint8_t *d = write_to(p3_export_aabb_glb, &s.seg, NULL, &n);
        CHECK(n >= 28 && u32le(d) == 0x46546C67u && u32le(d + 8) == n);
        size_t jlen = u32le(d + 12);
        char *text = strndup((const char *) d + 20, jlen);
        json_object *j = json_tokener_parse(text);
        free(text);
        CHECK(j && u32le(d + 24 + jlen) == 0x004E4942u);
        const uint8_t *bin = d + 28 + jlen;
        size_t bin_len = u32le(d + 20 + jlen);
        double boxes[3][6];
        CHECK_OK(p3_segmentation_outline_boxes(&s.seg, &boxes[0][0]));

        json_object *scene = jidx(j, "scenes", 0);
        CHECK(json_object_array_length(jget(scene, "nodes")) == 2);
        json_object *mesh_root = jidx(j, "nodes", json_object_get_int(jidx(scene, "nodes", 0)));
        json_object *box_root = jidx(j, "nodes", json_object_get_int(jidx(scene, "nodes", 1)));
        CHECK(strcmp(json_object_get_string(jget(mesh_root, "name")), "segmentation") == 0);
        CHECK(strcmp(json_object_get_string(jget(box_root, "name")), "boxes") == 0);
        /* three parts and the -1 face's group */
        CHECK(json_object_array_length(jget(mesh_root, "children")) == 4);
        json_object *children = jget(box_root, "children");
        CHECK(json_object_array_length(children) == 3);
        for (int p = 0; p < 3; p++) {
                json_object *node = jidx(j, "nodes", json_object_get_int(jidx(box_root,
                                                                             "children", p)));
                char name[16];
                snprintf(name, sizeof(name), "box_%d", s.labels[p]);
                CHECK(strcmp(json_object_get_string(jget(node, "name")), name) == 0);
                check_box(j, bin, bin_len, node, &s, p, boxes[p]);
        }
        json_object_put(j);
        spiky_done(&s);
        printf("aabb GLB: 3 LINES primitives of 24 vertices on the outline boxes\n");
}

/* ---- the picture ---------------------------------------------------------------------------- */

typedef struct image {
        int w, h;
        uint8_t *rgba;
} image;

static image decode_png(const uint8_t *d, size_t n) {
        png_image img = { .version = PNG_IMAGE_VERSION };
        image out = {};
        CHECK(png_image_begin_read_from_memory(&img, d, n));
        img.format = PNG_FORMAT_RGBA;
        out.w = (int) img.width;
        out.h = (int) img.height;
        out.rgba = malloc(PNG_IMAGE_SIZE(img));
        CHECK(out.rgba && png_image_finish_read(&img, NULL, out.rgba, 0, NULL));
        return out;
}

static uint8_t *png_of(const p3_segmentation *s, const p3_render_opts *o, size_t *n) {
        p3_err err = {};
        int fd = tmp_fd();
        int r = p3_export_png(s, o, fd, &err);
        if (r < 0) {
                fprintf(stderr, "png: %s\n", p3_err_msg(&err, r));
                exit(EXIT_FAILURE);
        }
        uint8_t *d = slurp(fd, n);
        close(fd);
        return d;
}

/* Pixels of part 0 (reddish), part 1 (bluish) and background in one tile, and the columns
 * where the parts reach. */
typedef struct tally {
        int n[3];
        int xmin[2], xmax[2];
} tally;

static tally count_tile(const image *im, int tile, int tx, int ty, bool transparent) {
        tally t = { .xmin = { 1 << 30, 1 << 30 }, .xmax = { -1, -1 } };
        for (int y = ty * tile; y < (ty + 1) * tile; y++)
                for (int x = tx * tile; x < (tx + 1) * tile; x++) {
                        const uint8_t *p = im->rgba + 4 * ((size_t) y * im->w + x);
                        bool bg = transparent ? p[3] == 0
                                              : p[0] == 255 && p[1] == 255 && p[2] == 255;
                        int k = bg ? 2 : p[0] > p[2] + 20 ? 0 : p[2] > p[0] + 20 ? 1 : -1;
                        CHECK(k >= 0);
                        CHECK(bg || p[3] == 255);
                        t.n[k]++;
                        if (k < 2) {
                                t.xmin[k] = MIN(t.xmin[k], x);
                                t.xmax[k] = MAX(t.xmax[k], x);
                        }
                }
        return t;
}

static void test_png(void) {
        cubes c;
        size_t n;
        const uint8_t colours[2][3] = { { 220, 40, 40 }, { 40, 40, 220 } };
        p3_render_opts o;

        cubes_init(&c);
        c.seg.colours = &colours[0][0];
        p3_render_opts_default(&o);
        CHECK(o.size == 1024 && !o.boxes && !o.transparent);
        o.size = 256;
        _cleanup_free_ uint8_t *d = png_of(&c.seg, &o, &n);
        image im = decode_png(d, n);
        CHECK(im.w == 256 && im.h == 256);
        int tile = 128;
        /* front: part 0 left of part 1 */
        tally front = count_tile(&im, tile, 0, 0, false);
        CHECK(front.n[0] > 500 && front.n[1] > 500 && front.xmax[0] < front.xmin[1]);
        /* side, from +x: part 1 hides part 0 */
        tally side = count_tile(&im, tile, 1, 0, false);
        CHECK(side.n[1] > 2000 && side.n[0] == 0);
        /* top: part 0 left of part 1 again */
        tally top = count_tile(&im, tile, 0, 1, false);
        CHECK(top.n[0] > 500 && top.n[1] > 500 && top.xmax[0] < top.xmin[1]);
        /* three-quarter, from +x +y +z: both, the same size (their outlines just touch),
         * part 0 on the left */
        tally tq = count_tile(&im, tile, 1, 1, false);
        CHECK(tq.n[0] > 1000 && abs(tq.n[1] - tq.n[0]) < tq.n[0] / 20);
        CHECK(tq.xmin[0] + tq.xmax[0] < tq.xmin[1] + tq.xmax[1]);
        for (int k = 0; k < 4; k++) {
                tally *t = k == 0 ? &front : k == 1 ? &side : k == 2 ? &top : &tq;
                /* background around the fitted mesh (the side view is one square filling
                 * 88 % of the tile's width) */
                CHECK(t->n[2] > tile * tile / 10);
        }
        free(im.rgba);

        /* transparent background, another size; with the boxes, the pixels that change are
         * the outlines, in a darker shade (60 %) of their part's colour */
        o = (p3_render_opts) { .size = 200, .transparent = true };
        _cleanup_free_ uint8_t *d2 = png_of(&c.seg, &o, &n);
        o.boxes = true;
        _cleanup_free_ uint8_t *d3 = png_of(&c.seg, &o, &n);
        image plain = decode_png(d2, n), boxed = decode_png(d3, n);
        CHECK(plain.w == 200 && plain.h == 200 && boxed.w == 200 && plain.rgba[3] == 0);
        int changed = 0;
        for (size_t i = 0; i < 200 * 200; i++) {
                const uint8_t *p = boxed.rgba + 4 * i;
                if (memcmp(p, plain.rgba + 4 * i, 4) == 0)
                        continue;
                changed++;
                bool dark0 = p[0] == 220 * 6 / 10 && p[1] == 40 * 6 / 10 && p[2] == 40 * 6 / 10;
                bool dark1 = p[2] == 220 * 6 / 10 && p[1] == 40 * 6 / 10 && p[0] == 40 * 6 / 10;
                CHECK((dark0 || dark1) && p[3] == 255);
        }
        CHECK(changed > 4 * 4 * 50);
        free(plain.rgba);
        free(boxed.rgba);

        /* unlabelled faces grey, a size out of range refused with a sentence */
        for (int i = 0; i < 24; i++)
                c.ids[i] = -1;
        o = (p3_render_opts) { .size = 128 };
        _cleanup_free_ uint8_t *d4 = png_of(&c.seg, &o, &n);
        im = decode_png(d4, n);
        const uint8_t *mid = im.rgba + 4 * ((size_t) 32 * 128 + 14); /* the left cube, front */
        CHECK(mid[0] == mid[1] && mid[1] == mid[2] && mid[0] < 255);
        free(im.rgba);
        p3_err err = {};
        o.size = 10;
        CHECK(p3_export_png(&c.seg, &o, 1, &err) == -EINVAL && strstr(err.msg, "size"));
        printf("png: decodes to the asked size, parts where they are in all four views\n");
}

int main(void) {
        const char *py = numpy_python();
        test_npy();
        test_npy_numpy(py);
        test_replay();
        test_colours();
        test_outline_numpy(py);
        test_aabb_glb();
        test_png();
        printf("export-upstream: all checks passed\n");
        return 0;
}
