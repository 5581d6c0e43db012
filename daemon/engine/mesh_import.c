/* SPDX-License-Identifier: MIT */
/* assimp glue: feed checked bytes to assimp through an IO system that can open nothing else,
 * watch its log for data loss, and flatten the scene into a p3_mesh with trimesh's triangles in
 * trimesh's order (upstream's loader). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "mesh_import.h"

#include <assimp/cfileio.h>
#include <assimp/cimport.h>
#include <assimp/postprocess.h>
#include <assimp/scene.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

/* Deeper node trees are hostile: the walk below recurses once per level. */
#define MAX_NODE_DEPTH 1000

static void scene_release(const struct aiScene *s) {
        aiReleaseImport(s);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(const struct aiScene *, scene_release);

static void strv_free(char **v) {
        for (char **p = v; p && *p; p++)
                free(*p);
        free(v);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);

static const p3_mesh_limits *limits_or_default(const p3_mesh_limits *lim, p3_mesh_limits *buf) {
        p3_mesh_limits_default(buf);
        if (lim) {
                /* zero fields keep the default */
                buf->max_bytes = lim->max_bytes ?: buf->max_bytes;
                buf->max_faces = lim->max_faces > 0 ? lim->max_faces : buf->max_faces;
                buf->max_vertices = lim->max_vertices > 0 ? lim->max_vertices : buf->max_vertices;
        }
        buf->max_vertices = MIN(buf->max_vertices, (int64_t) INT32_MAX); /* int32 face indices */
        buf->max_faces = MIN(buf->max_faces, (int64_t) INT32_MAX);
        return buf;
}

/* ---- assimp's log ------------------------------------------------------------------------- */

/* assimp reports some data loss only as a log line and carries on with a smaller or altered
 * mesh. Those lines fail the import; everything else it logs (missing .mtl files, unreferenced
 * vertices, fan fallback of a non-simple polygon, animation and material complaints) leaves the
 * geometry intact and is ignored. Matched by substring against assimp 5.2's wording. */
static const struct {
        const char *line, *meaning;
} fatal_log_lines[] = {
        { "Some faces had out-of-range indices", "faces with out-of-range vertex indices" },
        { "not compatible with the TRIANGLES mode", "a triangle index count that is not a multiple of 3" },
        { "OFF: The number of verts in the header is incorrect", "fewer vertices than the OFF header declares" },
        { "OFF: The number of faces in the header is incorrect", "fewer faces than the OFF header declares" },
        /* assimp 5.2 also says this for faces of more than 9 corners, which it drops */
        { "OFF: Faces with zero indices aren't allowed", "an OFF face with 0 or more than 9 corners" },
        { "OFF: Vertex index is out of range", "faces with out-of-range vertex indices" },
        { "STL: unexpected EOF", "a truncated ASCII STL" },
        { "STL: A new facet begins but the old is not yet complete", "an incomplete ASCII STL facet" },
        { "STL: a facet with more than 3 vertices", "an ASCII STL facet with more than 3 vertices" },
        { "Unable to parse property instance", "a PLY element that cannot be parsed" },
        { "Unable to parse binary property instance", "a PLY element that cannot be parsed" },
};

typedef struct import_log {
        const char *meaning; /* of the first fatal line */
        char fatal[256];     /* that line, without prefix and newline */
} import_log;

static void log_callback(const char *message, char *user) {
        import_log *log = (import_log *) user;

        /* lines look like "Warn,  T0: text\n" or "Error, T0: text\n" */
        if (!log || log->fatal[0] || (strncmp(message, "Warn", 4) != 0 && strncmp(message, "Error", 5) != 0))
                return;
        for (size_t i = 0; i < ELEMENTSOF(fatal_log_lines); i++)
                if (strstr(message, fatal_log_lines[i].line)) {
                        log->meaning = fatal_log_lines[i].meaning;
                        const char *text = strstr(message, ": ");
                        text = text ? text + 2 : message;
                        snprintf(log->fatal, sizeof(log->fatal), "%.*s", (int) strcspn(text, "\r\n"), text);
                        return;
                }
}

/* ---- an IO system that serves our buffer and, for path imports, files beside it ----------- */

typedef struct mem_io {
        const char *fname; /* the name assimp asks for: "mesh.<format>" */
        const uint8_t *buf;
        size_t size;
        int dirfd;     /* directory of external files, or -1: nothing else may be opened */
        size_t budget; /* bytes external files may still occupy (max_bytes minus the input) */
        int error;     /* why an external file was refused, for the message */
        char error_file[128];
} mem_io;

typedef struct mem_file {
        const uint8_t *data;
        size_t size, pos;
        uint8_t *owned; /* an external file read into memory */
        mem_io *io;
} mem_file;

static size_t file_read(struct aiFile *f, char *out, size_t size, size_t count) {
        mem_file *m = (mem_file *) f->UserData;
        if (size == 0)
                return 0;
        size_t n = MIN(count, (m->size - m->pos) / size);
        memcpy(out, m->data + m->pos, n * size);
        m->pos += n * size;
        return n;
}

static size_t file_write(struct aiFile *f, const char *in, size_t size, size_t count) {
        return 0;
}

static size_t file_tell(struct aiFile *f) {
        return ((mem_file *) f->UserData)->pos;
}

static size_t file_size(struct aiFile *f) {
        return ((mem_file *) f->UserData)->size;
}

static void file_flush(struct aiFile *f) {
}

static enum aiReturn file_seek(struct aiFile *f, size_t off, enum aiOrigin origin) {
        mem_file *m = (mem_file *) f->UserData;
        size_t base = origin == aiOrigin_SET ? 0 : origin == aiOrigin_CUR ? m->pos : m->size;
        if (off > m->size || base > m->size - off)
                return aiReturn_FAILURE;
        m->pos = base + off;
        return aiReturn_SUCCESS;
}

static bool name_is_local(const char *name) {
        if (!name[0] || name[0] == '/' || strchr(name, '\\'))
                return false;
        for (const char *seg = name; seg; seg = strchr(seg, '/') ? strchr(seg, '/') + 1 : NULL)
                if (strncmp(seg, "..", 2) == 0 && (seg[2] == '/' || seg[2] == '\0'))
                        return false;
        return true;
}

/* Read a file beside the input into memory, within the byte budget. */
static int read_external(mem_io *io, const char *name, mem_file *m) {
        _cleanup_close_ int fd = -1;
        struct stat st;

        if (io->dirfd < 0 || !name_is_local(name))
                return -EPERM;
        fd = openat(io->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if ((uint64_t) st.st_size > io->budget)
                return -EFBIG;
        m->size = (size_t) st.st_size;
        m->owned = malloc(m->size ?: 1);
        if (!m->owned)
                return -ENOMEM;
        for (size_t done = 0; done < m->size;) {
                ssize_t k = pread(fd, m->owned + done, m->size - done, (off_t) done);
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
                done += (size_t) k;
        }
        m->data = m->owned;
        io->budget -= m->size;
        return 0;
}

static void file_free(mem_file *m) {
        if (m->owned)
                m->io->budget += m->size;
        free(m->owned);
        free(m);
}

static struct aiFile *io_open(struct aiFileIO *fio, const char *name, const char *mode) {
        mem_io *io = (mem_io *) fio->UserData;
        mem_file *m;
        struct aiFile *f;

        if (strpbrk(mode, "wa+"))
                return NULL;
        m = calloc(1, sizeof(*m));
        f = calloc(1, sizeof(*f));
        if (!m || !f)
                goto fail;
        m->io = io;
        if (strcmp(name, io->fname) == 0) {
                m->data = io->buf;
                m->size = io->size;
        } else {
                int r = read_external(io, name, m);
                if (r < 0) {
                        /* from memory every other file is refused by design (an OBJ's .mtl):
                         * only a path import's failure to read one is worth reporting */
                        if (!io->error && io->dirfd >= 0) {
                                io->error = r;
                                snprintf(io->error_file, sizeof(io->error_file), "%s", name);
                        }
                        goto fail;
                }
        }
        *f = (struct aiFile) {
                .ReadProc = file_read,
                .WriteProc = file_write,
                .TellProc = file_tell,
                .FileSizeProc = file_size,
                .SeekProc = file_seek,
                .FlushProc = file_flush,
                .UserData = (aiUserData) m,
        };
        return f;
fail:
        if (m)
                file_free(m);
        free(f);
        return NULL;
}

static void io_close(struct aiFileIO *fio, struct aiFile *f) {
        if (!f)
                return;
        file_free((mem_file *) f->UserData);
        free(f);
}

/* ---- flattening --------------------------------------------------------------------------- */

/* One mesh instance of the flattened scene: its vertices start at base, its faces are source src. */
typedef struct instance {
        const struct aiMesh *am;
        int64_t base;
        int32_t src;
} instance;

typedef struct flat {
        const struct aiScene *scene;
        const char *name;
        /* counts during the first walk, fill positions during the second */
        int64_t nv, nf, n_other;
        int32_t n_src;
        p3_mesh *m;     /* NULL during the counting walk */
        instance *inst; /* [n_src], recorded by the second walk */
        bool gltf;      /* visit children last to first (see walk) */
} flat;

typedef double mat4[4][4];

static void mat_mul(const mat4 a, const struct aiMatrix4x4 *b, mat4 out) {
        const float bb[4][4] = {
                { b->a1, b->a2, b->a3, b->a4 },
                { b->b1, b->b2, b->b3, b->b4 },
                { b->c1, b->c2, b->c3, b->c4 },
                { b->d1, b->d2, b->d3, b->d4 },
        };
        for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                        out[i][j] = a[i][0] * bb[0][j] + a[i][1] * bb[1][j] + a[i][2] * bb[2][j] + a[i][3] * bb[3][j];
}

/* Triangles the polygons of a mesh become: k - 2 for a face of k >= 3 corners (points and lines
 * are no surface). Read from the faces: importers do not all set mPrimitiveTypes. */
static int64_t count_triangles(const struct aiMesh *am) {
        int64_t n = 0;
        for (unsigned i = 0; i < am->mNumFaces; i++)
                n += am->mFaces[i].mNumIndices >= 3 ? am->mFaces[i].mNumIndices - 2 : 0;
        return n;
}

static char *src_name(const struct aiNode *node, const struct aiMesh *am, unsigned mesh_index) {
        char *s = NULL;
        const char *nn = node->mName.length ? node->mName.data : "node";
        if (am->mName.length)
                return asprintf(&s, "%s/%s", nn, am->mName.data) < 0 ? NULL : s;
        return asprintf(&s, "%s/mesh%u", nn, mesh_index) < 0 ? NULL : s;
}

/* Append one instance's vertices through the accumulated transform; its faces come later, in
 * the order put_faces gives them. */
static int put_instance(flat *fl, const struct aiNode *node, const struct aiMesh *am, unsigned mesh_index,
                        const mat4 t, p3_err *err) {
        p3_mesh *m = fl->m;

        for (unsigned i = 0; i < am->mNumVertices; i++) {
                const struct aiVector3D *p = &am->mVertices[i];
                double x = p->x, y = p->y, z = p->z;
                double *o = m->v + 3 * (fl->nv + i);
                for (int r = 0; r < 3; r++)
                        o[r] = t[r][0] * x + t[r][1] * y + t[r][2] * z + t[r][3];
                if (!isfinite(x) || !isfinite(y) || !isfinite(z) || !isfinite(o[0]) || !isfinite(o[1]) || !isfinite(o[2]))
                        return p3_errf(err, -EINVAL, "%s: vertex %u of mesh \"%s\" has a non-finite coordinate (%g, %g, %g)",
                                       fl->name, i, am->mName.data, x, y, z);
        }
        for (unsigned i = 0; i < am->mNumFaces; i++)
                for (unsigned c = 0; c < am->mFaces[i].mNumIndices; c++)
                        if (am->mFaces[i].mIndices[c] >= am->mNumVertices) /* ValidateDataStructure checked it */
                                return p3_errf(err, -EINVAL, "%s: face %u of mesh \"%s\" has an out-of-range index",
                                               fl->name, i, am->mName.data);
        m->src_names[fl->n_src] = src_name(node, am, mesh_index);
        if (!m->src_names[fl->n_src])
                return -ENOMEM;
        fl->inst[fl->n_src] = (instance) { .am = am, .base = fl->nv, .src = fl->n_src };
        fl->nv += am->mNumVertices;
        return 0;
}

static int walk(flat *fl, const struct aiNode *node, const mat4 parent, int depth, p3_err *err) {
        const struct aiScene *sc = fl->scene;
        mat4 t;

        if (depth > MAX_NODE_DEPTH)
                return p3_errf(err, -EINVAL, "%s: scene node tree is deeper than %d levels", fl->name, MAX_NODE_DEPTH);
        mat_mul(parent, &node->mTransformation, t);

        for (unsigned k = 0; k < node->mNumMeshes; k++) {
                unsigned mi = node->mMeshes[k];
                if (mi >= sc->mNumMeshes)
                        return p3_errf(err, -EINVAL, "%s: scene node \"%s\" refers to missing mesh %u", fl->name,
                                       node->mName.data, mi);
                const struct aiMesh *am = sc->mMeshes[mi];
                int64_t tris = count_triangles(am);
                if (tris == 0) {
                        fl->n_other += am->mNumFaces; /* points and lines: not a surface */
                        continue;
                }
                if (fl->m) {
                        int r = put_instance(fl, node, am, mi, t, err);
                        if (r < 0)
                                return r;
                } else {
                        fl->nv += am->mNumVertices;
                        fl->nf += tris;
                }
                fl->n_src++;
                if (fl->n_src == INT32_MAX)
                        return p3_errf(err, -EFBIG, "%s: too many mesh instances", fl->name);
        }
        /* trimesh walks a glTF scene with a stack (exchange/gltf load: queue.pop()) and
         * concatenates the instances in that order: the last root and the last child first. */
        for (unsigned k = 0; k < node->mNumChildren; k++) {
                unsigned c = fl->gltf ? node->mNumChildren - 1 - k : k;
                int r = walk(fl, node->mChildren[c], t, depth + 1, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- polygons to triangles, as trimesh splits them ------------------------------------------ */

/* Upstream loads meshes with trimesh, and face ids, sampling and masks all follow its triangle
 * list, so polygons are split by trimesh's rules and in its order, not assimp's (which picks
 * the diagonal of a quad by shape and ear-clips larger polygons):
 *   PLY, OFF (trimesh.geometry.triangulate_quads): every triangle, then every quad's (0, 1, 2),
 *     then every quad's (2, 3, 0), then each larger polygon as the fan (0, i, i + 1).
 *   OBJ (trimesh.exchange.obj.load_obj): the faces of one material form one group, in file
 *     order. A group of only quads is read as one (n, 4) array and split as above; any other
 *     group goes face by face (_parse_faces_fallback): a quad as (0, 1, 2), (2, 3, 0), a larger
 *     polygon as the fan. The groups are popped off the list of materials in order of first
 *     use, so the material used first comes last.
 * Triangles stay as they are (GLB, glTF, STL). The same in trimesh 4.8.0 and 5.0.0rc1
 * (tests/data/trimesh/), except that 5.0.0rc1 fails on an OFF mixing polygons of more than four
 * corners with others. Where we cannot follow: trimesh cannot read a binary PLY whose faces
 * differ in size (split here as an ASCII one); assimp puts an OBJ's faces before its first
 * "usemtl" into that material's group, which trimesh keeps apart. */

static void put_triangle(flat *fl, const instance *in, const struct aiFace *face, unsigned a, unsigned b, unsigned c) {
        int32_t *o = fl->m->f + 3 * fl->nf;
        o[0] = (int32_t) (in->base + face->mIndices[a]);
        o[1] = (int32_t) (in->base + face->mIndices[b]);
        o[2] = (int32_t) (in->base + face->mIndices[c]);
        fl->m->face_src[fl->nf++] = in->src;
}

/* trimesh.util.triangle_fans_to_faces, also a triangle as itself. */
static void put_fan(flat *fl, const instance *in, const struct aiFace *face) {
        for (unsigned i = 1; i + 1 < face->mNumIndices; i++)
                put_triangle(fl, in, face, 0, i, i + 1);
}

/* triangulate_quads: four passes over the group, each in face order. */
static void put_by_size(flat *fl, instance *const *group, size_t n) {
        for (int pass = 0; pass < 4; pass++)
                for (size_t g = 0; g < n; g++)
                        for (unsigned i = 0; i < group[g]->am->mNumFaces; i++) {
                                const struct aiFace *face = &group[g]->am->mFaces[i];
                                unsigned k = face->mNumIndices;
                                if (pass == 0 && k == 3)
                                        put_triangle(fl, group[g], face, 0, 1, 2);
                                else if (pass == 1 && k == 4)
                                        put_triangle(fl, group[g], face, 0, 1, 2);
                                else if (pass == 2 && k == 4)
                                        put_triangle(fl, group[g], face, 2, 3, 0);
                                else if (pass == 3 && k > 4)
                                        put_fan(fl, group[g], face);
                        }
}

/* _parse_faces_fallback: face by face. */
static void put_per_face(flat *fl, instance *const *group, size_t n) {
        for (size_t g = 0; g < n; g++)
                for (unsigned i = 0; i < group[g]->am->mNumFaces; i++) {
                        const struct aiFace *face = &group[g]->am->mFaces[i];
                        if (face->mNumIndices == 4) {
                                put_triangle(fl, group[g], face, 0, 1, 2);
                                put_triangle(fl, group[g], face, 2, 3, 0);
                        } else
                                put_fan(fl, group[g], face);
                }
}

/* trimesh decides by the number of values on each face line; the corner count stands for it
 * (the same whenever a file writes its face corners one way, as exporters do). Points and lines
 * are not counted: assimp does not say which came from an "f" line. */
static bool group_all_quads(instance *const *group, size_t n) {
        for (size_t g = 0; g < n; g++)
                for (unsigned i = 0; i < group[g]->am->mNumFaces; i++)
                        if (group[g]->am->mFaces[i].mNumIndices >= 3 && group[g]->am->mFaces[i].mNumIndices != 4)
                                return false;
        return true;
}

/* OBJ: the instances ordered by material, the material used last first, each material's in file
 * order (the walk's, which follows the file for an OBJ); ends[] gets each group's end. assimp
 * names materials by "usemtl" whether or not the .mtl could be read, as trimesh groups them.
 * Returns the number of groups. */
static int obj_groups(const flat *fl, instance **order, size_t *ends, p3_err *err) {
        unsigned n_mat = fl->scene->mNumMaterials;
        _cleanup_free_ int32_t *rank = malloc(MAX(n_mat, 1u) * sizeof(int32_t));
        _cleanup_free_ size_t *start = calloc((size_t) fl->n_src + 1, sizeof(size_t));
        int32_t n_groups = 0;

        if (!rank || !start)
                return -ENOMEM;
        for (unsigned i = 0; i < n_mat; i++)
                rank[i] = -1;
        /* rank of first use, then a counting sort by descending rank (stable within a rank) */
        for (int32_t i = 0; i < fl->n_src; i++) {
                unsigned mat = fl->inst[i].am->mMaterialIndex;
                if (mat >= n_mat) /* ValidateDataStructure checked it */
                        return p3_errf(err, -EINVAL, "%s: mesh \"%s\" refers to missing material %u", fl->name,
                                       fl->inst[i].am->mName.data, mat);
                if (rank[mat] < 0)
                        rank[mat] = n_groups++;
        }
        for (int32_t i = 0; i < fl->n_src; i++)
                start[n_groups - rank[fl->inst[i].am->mMaterialIndex]]++;
        for (int32_t g = 0; g < n_groups; g++) {
                start[g + 1] += start[g];
                ends[g] = start[g + 1];
        }
        for (int32_t i = 0; i < fl->n_src; i++)
                order[start[n_groups - 1 - rank[fl->inst[i].am->mMaterialIndex]]++] = &fl->inst[i];
        return n_groups;
}

/* Every instance's faces, triangulated and ordered as trimesh would (see above). */
static int put_faces(flat *fl, const char *fmt, p3_err *err) {
        _cleanup_free_ instance **order = malloc(MAX(fl->n_src, 1) * sizeof(instance *));
        _cleanup_free_ size_t *ends = malloc(MAX(fl->n_src, 1) * sizeof(size_t));
        bool obj = strcmp(fmt, "obj") == 0;
        int n_groups;

        if (!order || !ends)
                return -ENOMEM;
        if (obj) {
                n_groups = obj_groups(fl, order, ends, err);
                if (n_groups < 0)
                        return n_groups;
        } else {
                /* a PLY or OFF is one mesh; instances of other formats hold only triangles */
                for (int32_t i = 0; i < fl->n_src; i++) {
                        order[i] = &fl->inst[i];
                        ends[i] = (size_t) i + 1;
                }
                n_groups = fl->n_src;
        }
        size_t begin = 0;
        for (int g = 0; g < n_groups; g++) {
                size_t n = ends[g] - begin;
                if (obj && !group_all_quads(order + begin, n))
                        put_per_face(fl, order + begin, n);
                else
                        put_by_size(fl, order + begin, n);
                begin = ends[g];
        }
        return 0;
}

static int flatten(const struct aiScene *sc, const char *fmt, const char *name, const p3_mesh_limits *lim, p3_mesh *ret,
                   p3_err *err) {
        static const mat4 identity = { { 1, 0, 0, 0 }, { 0, 1, 0, 0 }, { 0, 0, 1, 0 }, { 0, 0, 0, 1 } };
        bool gltf = strcmp(fmt, "glb") == 0 || strcmp(fmt, "gltf") == 0;
        flat fl = { .scene = sc, .name = name, .gltf = gltf };
        int r;

        if (!sc->mRootNode)
                return p3_errf(err, -EINVAL, "%s: scene has no root node", name);
        /* count first: instancing can multiply a small file far beyond the limits */
        r = walk(&fl, sc->mRootNode, identity, 0, err);
        if (r < 0)
                return r;
        if (fl.nf == 0 && fl.n_other > 0)
                return p3_errf(err, -EINVAL, "%s: no triangles, only %" PRId64 " points or lines", name, fl.n_other);
        if (fl.nf == 0)
                return p3_errf(err, -EINVAL, "%s: no triangles (the scene has no meshes)", name);
        if (fl.nf > lim->max_faces)
                return p3_errf(err, -EFBIG, "%s: %" PRId64 " triangles, more than the limit of %" PRId64, name, fl.nf,
                               lim->max_faces);
        if (fl.nv > lim->max_vertices)
                return p3_errf(err, -EFBIG, "%s: %" PRId64 " vertices, more than the limit of %" PRId64, name, fl.nv,
                               lim->max_vertices);

        p3_mesh m = { .nv = fl.nv, .nf = fl.nf, .n_src = fl.n_src };
        _cleanup_free_ double *v = m.v = malloc((size_t) fl.nv * 3 * sizeof(double));
        _cleanup_free_ int32_t *f = m.f = malloc((size_t) fl.nf * 3 * sizeof(int32_t));
        _cleanup_free_ int32_t *fs = m.face_src = malloc((size_t) fl.nf * sizeof(int32_t));
        _cleanup_(strv_freep) char **names = m.src_names = calloc((size_t) fl.n_src + 1, sizeof(char *));
        _cleanup_free_ instance *inst = malloc((size_t) fl.n_src * sizeof(instance));
        if (!v || !f || !fs || !names || !inst)
                return -ENOMEM;

        fl = (flat) { .scene = sc, .name = name, .m = &m, .inst = inst, .gltf = gltf };
        r = walk(&fl, sc->mRootNode, identity, 0, err);
        if (r < 0)
                return r;
        r = put_faces(&fl, fmt, err);
        if (r < 0)
                return r;

        TAKE_PTR(v);
        TAKE_PTR(f);
        TAKE_PTR(fs);
        TAKE_PTR(names);
        *ret = m;
        return 0;
}

/* ---- the import ----------------------------------------------------------------------------- */

/* assimp's logger is process-global and not thread-safe (it keeps the last line in a shared
 * buffer), and so is the C API's error string: one import at a time. */
static pthread_mutex_t import_lock = PTHREAD_MUTEX_INITIALIZER;

/* A face without indices passes ValidateDataStructure while the importer has not set the
 * mesh's primitive types (PLY). A face of no corners is malformed: the file is refused rather
 * than read without it (assimp's own Triangulate even asserted on it). */
static bool scene_has_empty_face(const struct aiScene *sc) {
        for (unsigned i = 0; i < sc->mNumMeshes; i++)
                for (unsigned k = 0; k < sc->mMeshes[i]->mNumFaces; k++)
                        if (sc->mMeshes[i]->mFaces[k].mNumIndices == 0)
                                return true;
        return false;
}

/* Read and validate, nothing more: polygons stay polygons (flatten splits them as trimesh does,
 * where aiProcess_Triangulate would pick its own diagonals and SortByPType would move a mesh's
 * triangles away from its polygons). Returns the scene, or NULL with aierr (or *empty_face)
 * saying why. */
static const struct aiScene *run_assimp(const char *fname, mem_io *io, import_log *log, bool *empty_face,
                                        char *aierr, size_t aierr_size) {
        struct aiFileIO fio = { .OpenProc = io_open, .CloseProc = io_close, .UserData = (aiUserData) io };
        struct aiLogStream stream = { .callback = log_callback, .user = (char *) log };
        const struct aiScene *sc;

        pthread_mutex_lock(&import_lock);
        aiAttachLogStream(&stream);
        sc = aiImportFileExWithProperties(fname, aiProcess_ValidateDataStructure, &fio, NULL);
        if (sc && !log->fatal[0]) {
                *empty_face = scene_has_empty_face(sc);
                if (*empty_face) {
                        aiReleaseImport(sc);
                        sc = NULL;
                }
        }
        if (!sc)
                snprintf(aierr, aierr_size, "%s", aiGetErrorString());
        aiDetachLogStream(&stream);
        pthread_mutex_unlock(&import_lock);
        return sc;
}

static int import_checked(const void *buf, size_t size, const char *fmt, const char *name,
                          const p3_mesh_limits *lim, int dirfd, p3_mesh *ret, p3_err *err) {
        char fname[16], aierr[256] = "";
        import_log log = {};
        bool empty_face = false;
        mem_io io = {
                .fname = fname,
                .buf = buf,
                .size = size,
                .dirfd = dirfd,
                .budget = lim->max_bytes > size ? lim->max_bytes - size : 0,
        };

        /* the name's extension is assimp's format hint: without it 5.2 mis-detects some GLB/STL */
        snprintf(fname, sizeof(fname), "mesh.%s", fmt);
        _cleanup_(scene_releasep) const struct aiScene *sc = run_assimp(fname, &io, &log, &empty_face, aierr, sizeof(aierr));

        if (io.error == -EFBIG)
                return p3_errf(err, -EFBIG, "%s: external file \"%s\" takes the input past the limit of %zu bytes", name,
                               io.error_file, lim->max_bytes);
        if (io.error && !sc)
                return p3_errf(err, io.error, "%s: cannot open the referenced file \"%s\": %s", name, io.error_file,
                               p3_strerror(io.error));
        /* a data-loss line names the cause better than the failure it may lead to */
        if (log.fatal[0])
                return p3_errf(err, -EINVAL, "%s: invalid mesh data: %s (assimp: %s)", name, log.meaning, log.fatal);
        if (empty_face)
                return p3_errf(err, -EINVAL, "%s: a face has no vertex indices", name);
        if (!sc)
                return p3_errf(err, -EINVAL, "%s: cannot be read as %s: %s", name, fmt, aierr[0] ? aierr : "assimp failed");
        return flatten(sc, fmt, name, lim, ret, err);
}

int p3_mesh_import_buffer(const void *buf, size_t size, const char *format, const char *name,
                          const p3_mesh_limits *lim, p3_mesh *ret, p3_err *err) {
        p3_mesh_limits lbuf;
        _cleanup_free_ void *reduced = NULL;
        size_t reduced_size = 0;
        const char *fmt;
        int r;

        name = name ?: "mesh buffer";
        lim = limits_or_default(lim, &lbuf);
        if (!buf || size == 0)
                return p3_errf(err, -EINVAL, "%s: is empty (0 bytes)", name);
        if (format && format[0]) {
                fmt = p3_mesh_format_canonical(format);
                if (!fmt)
                        return p3_errf(err, -EINVAL, "%s: unknown mesh format \"%.20s\" (not glb, gltf, obj, ply, stl or off)",
                                       name, format);
        } else {
                fmt = p3_mesh_format_detect(buf, size);
                if (!fmt)
                        return p3_errf(err, -EINVAL, "%s: content is not a recognised mesh format (GLB, glTF, OBJ, PLY, STL or OFF)",
                                       name);
        }
        r = p3_mesh_precheck(buf, size, fmt, name, lim, false, &reduced, &reduced_size, err);
        if (r < 0)
                return r;
        if (reduced)
                return import_checked(reduced, reduced_size, fmt, name, lim, -1, ret, err);
        return import_checked(buf, size, fmt, name, lim, -1, ret, err);
}

int p3_mesh_read_fd(int fd, const char *name, size_t max_bytes, void **ret, size_t *ret_size, p3_err *err) {
        struct stat st;
        int r;

        if (fstat(fd, &st) < 0) {
                r = -errno;
                return p3_errf(err, r, "%s: cannot stat: %s", name, p3_strerror(r));
        }
        if (!S_ISREG(st.st_mode))
                return p3_errf(err, -EBADFD, "%s: not a regular file or memfd", name);
        if ((uint64_t) st.st_size > max_bytes)
                return p3_errf(err, -EFBIG, "%s: %" PRIu64 " bytes, more than the limit of %zu", name,
                               (uint64_t) st.st_size, max_bytes);

        size_t size = (size_t) st.st_size;
        _cleanup_free_ uint8_t *buf = malloc(size + 1);
        if (!buf)
                return -ENOMEM;
        for (size_t done = 0; done < size;) {
                ssize_t k = pread(fd, buf + done, size - done, (off_t) done);
                if (k < 0) {
                        r = -errno;
                        return p3_errf(err, r, "%s: read failed: %s", name, p3_strerror(r));
                }
                if (k == 0)
                        return p3_errf(err, -EIO, "%s: file shrank while it was read", name);
                done += (size_t) k;
        }
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

int p3_mesh_import_fd(int fd, const char *format, const char *name, const p3_mesh_limits *lim, p3_mesh *ret,
                      p3_err *err) {
        p3_mesh_limits lbuf;
        _cleanup_free_ void *buf = NULL;
        size_t size = 0;
        int r;

        name = name ?: "mesh file";
        lim = limits_or_default(lim, &lbuf);
        r = p3_mesh_read_fd(fd, name, lim->max_bytes, &buf, &size, err);
        if (r < 0)
                return r;
        return p3_mesh_import_buffer(buf, size, format, name, lim, ret, err);
}

static const char *format_from_path(const char *path) {
        const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
        return dot && (!slash || dot > slash) ? p3_mesh_format_canonical(dot + 1) : NULL;
}

/* The directory of path, opened for the external buffers of a glTF. */
static int open_parent_dir(const char *path) {
        const char *slash = strrchr(path, '/');
        _cleanup_free_ char *dir = slash ? strndup(path, (size_t) (slash - path) + 1) : strdup(".");
        if (!dir)
                return -ENOMEM;
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

int p3_mesh_import_file(const char *path, const char *format, const p3_mesh_limits *lim, p3_mesh *ret,
                        p3_err *err) {
        p3_mesh_limits lbuf;
        _cleanup_close_ int fd = -1, dirfd = -1;
        _cleanup_free_ void *buf = NULL, *reduced = NULL;
        const char *fmt;
        size_t size = 0, reduced_size = 0;
        int r;

        lim = limits_or_default(lim, &lbuf);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = -errno;
                return p3_errf(err, r, "%s: cannot open: %s", path, p3_strerror(r));
        }
        r = p3_mesh_read_fd(fd, path, lim->max_bytes, &buf, &size, err);
        if (r < 0)
                return r;

        fmt = format ? p3_mesh_format_canonical(format) : format_from_path(path);
        if (format && !fmt)
                return p3_errf(err, -EINVAL, "%s: unknown mesh format \"%.20s\" (not glb, gltf, obj, ply, stl or off)", path,
                               format);
        if (!fmt && size > 0)
                fmt = p3_mesh_format_detect(buf, size);
        if (size == 0)
                return p3_errf(err, -EINVAL, "%s: is empty (0 bytes)", path);
        if (!fmt)
                return p3_errf(err, -EINVAL, "%s: content is not a recognised mesh format (GLB, glTF, OBJ, PLY, STL or OFF)",
                               path);
        /* only a glTF (or GLB) read by path may pull in files beside it */
        bool external = strcmp(fmt, "gltf") == 0 || strcmp(fmt, "glb") == 0;
        r = p3_mesh_precheck(buf, size, fmt, path, lim, external, &reduced, &reduced_size, err);
        if (r < 0)
                return r;
        if (reduced) {
                free(buf);
                buf = TAKE_PTR(reduced);
                size = reduced_size;
        }
        if (external) {
                dirfd = open_parent_dir(path);
                if (dirfd < 0)
                        return p3_errf(err, dirfd, "%s: cannot open its directory: %s", path, p3_strerror(dirfd));
        }
        return import_checked(buf, size, fmt, path, lim, dirfd, ret, err);
}
