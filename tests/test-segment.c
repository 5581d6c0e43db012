/* SPDX-License-Identifier: MIT */
/* The whole pipeline, end to end, on real meshes with the tiny golden model (synthetic
 * weights) at small settings: every mesh of tests/data/meshes (and of ../shared/meshes when
 * present) segments, with a label for every face, part boxes inside the mesh bounds, and a
 * GLB that assimp re-imports with the same face count; every file in bad/ fails with a
 * message naming it; the same seed gives the same bytes; the interactive mode answers. */
#define _GNU_SOURCE
#include <assimp/cimport.h>
#include <assimp/postprocess.h>
#include <assimp/scene.h>
#include <dirent.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "export.h"
#include "mesh_import.h"
#include "pipeline.h"
#include "test-util.h"
#include "omp-env.h"

static p3_model *model;
static p3_pipeline_params small_params(void) {
        p3_pipeline_params p;
        p3_pipeline_params_cpu(&p);
        p.points = 2000;
        p.prompts = 8;
        p.prompt_batch = 3;
        return p;
}

/* The GLB in a memfd, re-imported by assimp: the faces must all be there. */
static void check_glb(const char *name, const p3_segment_result *r) {
        int fd = memfd_create("glb", MFD_CLOEXEC);
        CHECK(fd >= 0);
        p3_segmentation s = { .mesh = &r->mesh, .face_ids = r->face_ids, .n_parts = r->n_parts,
                              .part_labels = r->part_labels, .aabb = r->aabb,
                              .colours = r->colours };
        p3_err err = {};
        int k = p3_export_glb(&s, fd, &err);
        EXPECT(k >= 0, "%s: GLB export failed: %s", name, p3_err_msg(&err, k));
        off_t size = lseek(fd, 0, SEEK_END);
        void *buf = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        CHECK(buf != MAP_FAILED);
        const struct aiScene *sc = aiImportFileFromMemory(buf, size, aiProcess_ValidateDataStructure, "glb");
        EXPECT(sc, "%s: assimp cannot read our GLB: %s", name, aiGetErrorString());
        if (sc) {
                int64_t faces = 0;
                for (unsigned i = 0; i < sc->mNumMeshes; i++)
                        faces += sc->mMeshes[i]->mNumFaces;
                EXPECT(faces == r->mesh.nf, "%s: GLB has %lld faces, mesh %lld", name,
                       (long long) faces, (long long) r->mesh.nf);
                aiReleaseImport(sc);
        }
        munmap(buf, size);
        close(fd);
}

static void check_result(const char *name, const p3_segment_result *r) {
        double lo[3] = { INFINITY, INFINITY, INFINITY }, hi[3] = { -INFINITY, -INFINITY, -INFINITY };
        for (int64_t v = 0; v < r->mesh.nv; v++)
                for (int c = 0; c < 3; c++) {
                        lo[c] = fmin(lo[c], r->mesh.v[3 * v + c]);
                        hi[c] = fmax(hi[c], r->mesh.v[3 * v + c]);
                }
        int64_t labelled = 0;
        for (int64_t f = 0; f < r->mesh.nf; f++) {
                labelled += r->face_ids[f] >= 0;
                bool known = r->face_ids[f] < 0;
                for (int i = 0; i < r->n_parts && !known; i++)
                        known = r->part_labels[i] == r->face_ids[f];
                EXPECT(known, "%s: face %lld has label %d with no part", name, (long long) f,
                       r->face_ids[f]);
                if (!known)
                        break;
        }
        for (int i = 0; i < r->n_parts; i++)
                for (int c = 0; c < 3; c++) {
                        double mn = r->aabb[6 * i + c], mx = r->aabb[6 * i + 3 + c];
                        EXPECT(mn <= mx && mn >= lo[c] && mx <= hi[c],
                               "%s: part %d box [%g, %g] outside the mesh [%g, %g] on axis %d",
                               name, i, mn, mx, lo[c], hi[c], c);
                }
        printf("  %lld faces, %d parts, %lld faces labelled\n", (long long) r->mesh.nf,
               r->n_parts, (long long) labelled);
        check_glb(name, r);
}

static bool is_mesh(const char *name) {
        static const char *ext[] = { ".glb", ".gltf", ".obj", ".ply", ".stl", ".off" };
        const char *dot = strrchr(name, '.');
        for (size_t i = 0; dot && i < ELEMENTSOF(ext); i++)
                if (strcasecmp(dot, ext[i]) == 0)
                        return true;
        return false;
}

static void segment_file(const char *path, bool must_fail) {
        p3_mesh_limits lim;
        p3_mesh mesh = {};
        p3_err err = {};
        p3_mesh_limits_default(&lim);
        printf("%s\n", path);
        int r = p3_mesh_import_file(path, NULL, &lim, &mesh, &err);
        bool draco = strstr(path, "DenseSphere") != NULL; /* assimp 5.2 cannot decode Draco */
        if (must_fail || draco) {
                const char *base = strrchr(path, '/') + 1;
                EXPECT(r < 0, "%s: imported, but must fail", path);
                EXPECT(r >= 0 || strstr(err.msg, base), "message does not name the file: %s",
                       err.msg);
                EXPECT(!draco || strstr(err.msg, "Draco"), "no Draco sentence: %s", err.msg);
                printf("  refused: %s\n", err.msg);
                p3_mesh_done(&mesh);
                return;
        }
        EXPECT(r >= 0, "%s: import failed: %s", path, p3_err_msg(&err, r));
        if (r < 0)
                return;
        p3_pipeline_params p = small_params();
        p3_segment_result res = {};
        r = p3_pipeline_segment(model, &mesh, &p, NULL, &res, &err);
        EXPECT(r >= 0, "%s: segmentation failed: %s", path, p3_err_msg(&err, r));
        if (r >= 0)
                check_result(path, &res);
        p3_segment_result_done(&res);
        p3_mesh_done(&mesh);
}

static void segment_dir(const char *dir, bool must_fail) {
        DIR *d = opendir(dir);
        if (!d)
                return;
        struct dirent **list;
        int n = scandir(dir, &list, NULL, alphasort);
        for (int i = 0; i < n; i++) {
                if (is_mesh(list[i]->d_name)) {
                        char *path;
                        CHECK(asprintf(&path, "%s/%s", dir, list[i]->d_name) > 0);
                        segment_file(path, must_fail);
                        free(path);
                }
                free(list[i]);
        }
        free(list);
        closedir(d);
}

/* The GLB of a segmentation, read back from a memfd (malloc'd). */
static char *glb_bytes(const p3_segment_result *r, size_t *len) {
        int fd = memfd_create("glb", MFD_CLOEXEC);
        CHECK(fd >= 0);
        p3_segmentation s = { .mesh = &r->mesh, .face_ids = r->face_ids, .n_parts = r->n_parts,
                              .part_labels = r->part_labels, .aabb = r->aabb,
                              .colours = r->colours };
        p3_err err = {};
        CHECK_OK(p3_export_glb(&s, fd, &err));
        *len = (size_t) lseek(fd, 0, SEEK_END);
        char *buf = malloc(*len);
        CHECK(buf && pread(fd, buf, *len, 0) == (ssize_t) *len);
        close(fd);
        return buf;
}

/* Same seed, same bytes; another seed, another sampling. */
static void check_determinism(const char *path) {
        p3_mesh_limits lim;
        p3_mesh mesh = {};
        p3_err err = {};
        p3_mesh_limits_default(&lim);
        CHECK_OK(p3_mesh_import_file(path, NULL, &lim, &mesh, &err));
        char *out[3];
        size_t len[3];
        for (int i = 0; i < 3; i++) {
                p3_pipeline_params p = small_params();
                p.seed = i == 2 ? 7 : 42;
                p3_segment_result res = {};
                CHECK_OK(p3_pipeline_segment(model, &mesh, &p, NULL, &res, &err));
                out[i] = glb_bytes(&res, &len[i]);
                p3_segment_result_done(&res);
        }
        EXPECT(len[0] == len[1] && memcmp(out[0], out[1], len[0]) == 0,
               "two runs with the same seed differ");
        printf("determinism: seed 42 twice gives identical GLBs (%zu bytes); seed 7 %s\n", len[0],
               len[0] == len[2] && memcmp(out[0], out[2], len[0]) == 0 ? "gives the same parts"
                                                                       : "differs");
        for (int i = 0; i < 3; i++)
                free(out[i]);
        p3_mesh_done(&mesh);
}

typedef struct cancel_state {
        const char *at;
        bool seen, cancelled;
        int calls;
        double last;
} cancel_state;

static void on_progress(void *userdata, const char *stage, double fraction) {
        cancel_state *c = userdata;
        c->calls++;
        EXPECT(fraction + 1e-9 >= c->last, "progress went backwards (%s %.3f)", stage, fraction);
        c->last = fraction;
        if (c->at && strcmp(stage, c->at) == 0)
                c->seen = true;
}

static bool on_abort(void *userdata) {
        cancel_state *c = userdata;
        c->cancelled |= c->seen;
        return c->seen;
}

/* Progress moves forward to 1; a cancel request during the masks stops the job with
 * -ECANCELED between two prompt batches. */
static void check_progress_and_cancel(const char *path) {
        p3_mesh_limits lim;
        p3_mesh mesh = {};
        p3_err err = {};
        p3_mesh_limits_default(&lim);
        CHECK_OK(p3_mesh_import_file(path, NULL, &lim, &mesh, &err));
        p3_pipeline_params p = small_params();
        cancel_state c = {};
        p3_pipeline_hooks hooks = { .progress = on_progress, .abort = on_abort, .userdata = &c };
        p3_segment_result res = {};
        CHECK_OK(p3_pipeline_segment(model, &mesh, &p, &hooks, &res, &err));
        EXPECT(c.last == 1.0 && c.calls > 5, "progress ended at %.3f after %d calls", c.last,
               c.calls);
        p3_segment_result_done(&res);
        c = (cancel_state) { .at = "masks" };
        int r = p3_pipeline_segment(model, &mesh, &p, &hooks, &res, &err);
        EXPECT(r == -ECANCELED && c.cancelled, "cancel during masks gave %d", r);
        EXPECT(!res.face_ids && res.mesh.nf == 0, "a cancelled job left a result behind");
        printf("progress: %d updates to 1.0; cancel during masks: %s\n", c.calls, err.msg);
        p3_mesh_done(&mesh);
}

static void check_predict(const char *path) {
        p3_mesh_limits lim;
        p3_mesh mesh = {};
        p3_err err = {};
        p3_mesh_limits_default(&lim);
        CHECK_OK(p3_mesh_import_file(path, NULL, &lim, &mesh, &err));
        double prompts[6];
        memcpy(prompts, mesh.v, sizeof(double) * 3);
        memcpy(prompts + 3, mesh.v + 3 * (mesh.nv / 2), sizeof(double) * 3);
        p3_pipeline_params p = small_params();
        p3_predict_result res = {};
        int r = p3_pipeline_predict(model, &mesh, prompts, 2, &p, NULL, &res, &err);
        EXPECT(r >= 0, "predict failed: %s", p3_err_msg(&err, r));
        if (r >= 0) {
                EXPECT(res.k == 2, "predict: %d prompts back", res.k);
                for (int i = 0; i < 6; i++) {
                        EXPECT(res.iou[i] > 0 && res.iou[i] < 1, "IoU %g out of (0,1)",
                               res.iou[i]);
                        for (int64_t j = 0; j < res.counts[i]; j++)
                                EXPECT(res.faces[i][j] >= 0 && res.faces[i][j] < res.mesh.nf,
                                       "face index out of range");
                }
                printf("predict: 2 prompts, masks of %lld/%lld/%lld faces for the first\n",
                       (long long) res.counts[0], (long long) res.counts[1],
                       (long long) res.counts[2]);
        }
        p3_predict_result_done(&res);
        p3_mesh_done(&mesh);
}

int main(int argc, char **argv) {
        p3_omp_env_setup(argv);
        _cleanup_free_ char *meshes = test_data_path("meshes");
        p3_config cfg;
        p3_err err = {};
        test_tiny_config(&cfg);
        _cleanup_(p3_weights_freep) p3_weights *w = test_synth_weights(&cfg);
        p3_backend *be = NULL;
        CHECK_OK(p3_backend_cpu_new(NULL, &be));
        CHECK_OK(p3_model_new(be, w, &model, &err));

        bool shared = argc > 1 && strcmp(argv[1], "shared") == 0;
        if (shared) {
                _cleanup_free_ char *dir = test_shared_path("meshes");
                if (!dir)
                        test_skip("../shared/meshes is not beside this checkout");
                segment_dir(dir, false);
                _cleanup_free_ char *bad = test_shared_path("meshes/bad");
                _cleanup_free_ char *edge = test_shared_path("meshes/edge");
                segment_dir(bad, true);
                segment_dir(edge, false);
        } else {
                segment_dir(meshes, false);
                char *bad, *edge, *truck;
                CHECK(asprintf(&bad, "%s/bad", meshes) > 0 && asprintf(&edge, "%s/edge", meshes) > 0 &&
                      asprintf(&truck, "%s/CesiumMilkTruck.glb", meshes) > 0);
                segment_dir(bad, true);
                segment_dir(edge, false);
                check_determinism(truck);
                check_progress_and_cancel(truck);
                check_predict(truck);
                free(bad);
                free(edge);
                free(truck);
        }
        p3_model_free(model);
        p3_backend_free(be);
        printf("%d failure(s)\n", test_failures);
        return test_failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
