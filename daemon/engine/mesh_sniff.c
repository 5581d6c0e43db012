/* SPDX-License-Identifier: MIT */
/* Format detection and the checks done before assimp sees a buffer. assimp 5.2 allocates what
 * a header declares (an OFF claiming 353,535,235,358 vertices), reads short GLB chunks past
 * their end, treats a binary STL with a wrong triangle count as something else and aborts on
 * an empty buffer; so magic numbers, declared sizes and declared counts are checked here. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, strcasecmp */
#endif
#include <ctype.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

#include "mesh_import.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);
DEFINE_TRIVIAL_CLEANUP_FUNC(json_tokener *, json_tokener_free);

#define GLB_MAGIC 0x46546c67u      /* "glTF" */
#define GLB_CHUNK_JSON 0x4e4f534au /* "JSON" */
#define GLB_CHUNK_BIN 0x004e4942u  /* "BIN\0" */
#define GLTF_FLOAT 5126

void p3_mesh_limits_default(p3_mesh_limits *lim) {
        *lim = (p3_mesh_limits) {
                .max_bytes = P3_MESH_MAX_BYTES_DEFAULT,
                .max_faces = P3_MESH_MAX_FACES_DEFAULT,
                .max_vertices = P3_MESH_MAX_VERTICES_DEFAULT,
        };
}

const char *p3_mesh_format_canonical(const char *format) {
        static const char *const known[] = { "glb", "gltf", "obj", "ply", "stl", "off" };
        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                if (strcasecmp(format, known[i]) == 0)
                        return known[i];
        return NULL;
}

static uint32_t le32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t) (v >> (8 * i));
}

/* ---- detection ------------------------------------------------------------------------------ */

static bool is_binary_stl(const uint8_t *p, size_t size) {
        /* In 64 bits, so that a text file's "count" (four printable bytes, >= 0x09090909
         * triangles) can never match: the formula alone separates binary from ASCII. */
        return size >= 84 && 84 + 50 * (uint64_t) le32(p + 80) == size;
}

static size_t skip_space(const char *s, size_t size, size_t i) {
        while (i < size && isspace((unsigned char) s[i]))
                i++;
        return i;
}

static bool has_prefix_word(const char *s, size_t size, size_t i, const char *word) {
        size_t n = strlen(word);
        return size - i >= n && memcmp(s + i, word, n) == 0 &&
               (size - i == n || isspace((unsigned char) s[i + n]));
}

/* OFF's keyword: [ST][C][N][4][n]OFF, as assimp's reader accepts it. Returns its length or 0. */
static size_t off_keyword(const char *s, size_t size, size_t i) {
        size_t j = i;
        if (size - j >= 2 && s[j] == 'S' && s[j + 1] == 'T')
                j += 2;
        for (const char *opt = "CN4n"; *opt; opt++)
                if (j < size && s[j] == *opt)
                        j++;
        if (!has_prefix_word(s, size, j, "OFF"))
                return 0;
        return j + 3 - i;
}

static bool looks_like_gltf(const char *s, size_t size) {
        size_t i = 0;
        if (size >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
                i = 3;
        i = skip_space(s, size, i);
        return i < size && s[i] == '{' && memmem(s + i, size - i, "\"asset\"", 7);
}

/* OBJ has no magic: the first statements must be OBJ keywords, and a v or f among them. */
static bool looks_like_obj(const char *s, size_t size) {
        static const char *const keywords[] = { "v",  "vt", "vn", "vp",     "f",      "l", "p",
                                                "o",  "g",  "s",  "mtllib", "usemtl" };
        size_t end = MIN(size, (size_t) 65536);
        for (size_t i = 0; i < end;) {
                i = skip_space(s, end, i);
                if (i >= end)
                        break;
                if (s[i] != '#') {
                        size_t k = i;
                        while (k < end && !isspace((unsigned char) s[k]))
                                k++;
                        bool known = false;
                        for (size_t w = 0; w < ELEMENTSOF(keywords) && !known; w++)
                                known = k - i == strlen(keywords[w]) && memcmp(s + i, keywords[w], k - i) == 0;
                        if (!known)
                                return false;
                        if ((s[i] == 'v' || s[i] == 'f') && k - i == 1)
                                return true;
                }
                const char *nl = memchr(s + i, '\n', end - i);
                i = nl ? (size_t) (nl - s) + 1 : end;
        }
        return false;
}

const char *p3_mesh_format_detect(const void *buf, size_t size) {
        const uint8_t *p = buf;
        const char *s = buf;

        if (!buf || size == 0)
                return NULL;
        if (size >= 4 && le32(p) == GLB_MAGIC)
                return "glb";
        if (size >= 4 && (memcmp(s, "ply", 3) == 0 || memcmp(s, "PLY", 3) == 0) && (s[3] == '\n' || s[3] == '\r'))
                return "ply";
        /* before "solid": binary STL headers are free text and often start with it */
        if (is_binary_stl(p, size))
                return "stl";

        size_t i = skip_space(s, size, 0);
        if (off_keyword(s, size, i) > 0)
                return "off";
        if (has_prefix_word(s, size, i, "solid"))
                return "stl";
        if (looks_like_gltf(s, size))
                return "gltf";
        if (looks_like_obj(s, size))
                return "obj";
        return NULL;
}

/* ---- glTF JSON ---------------------------------------------------------------------------- */

static json_object *member(json_object *o, const char *key) {
        json_object *v = NULL;
        return json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static bool is_count(json_object *v, int64_t *ret) {
        if (!json_object_is_type(v, json_type_int))
                return false;
        *ret = json_object_get_int64(v);
        return *ret >= 0;
}

static int check_extensions_required(json_object *root, const char *name, p3_err *err) {
        /* extensions that only affect materials, textures or lights: the geometry assimp reads is
         * right without them. KHR_mesh_quantization is checked per position accessor. */
        static const char *const harmless_prefix[] = { "KHR_materials_", "KHR_texture_", "EXT_texture_",
                                                       "KHR_lights_punctual", "KHR_mesh_quantization",
                                                       "MSFT_texture_dds" };
        json_object *req = member(root, "extensionsRequired");
        size_t n = json_object_is_type(req, json_type_array) ? json_object_array_length(req) : 0;

        for (size_t i = 0; i < n; i++) {
                const char *ext = json_object_get_string(json_object_array_get_idx(req, i));
                bool ok = false;
                if (!ext)
                        continue;
                if (strcmp(ext, "KHR_draco_mesh_compression") == 0)
                        return p3_errf(err, -EOPNOTSUPP,
                                       "%s: Draco-compressed meshes are not supported (KHR_draco_mesh_compression); decompress it first, e.g. with gltf-transform",
                                       name);
                for (size_t k = 0; k < ELEMENTSOF(harmless_prefix) && !ok; k++)
                        ok = strncmp(ext, harmless_prefix[k], strlen(harmless_prefix[k])) == 0;
                if (!ok)
                        return p3_errf(err, -EOPNOTSUPP, "%s: requires the glTF extension %s, which the importer cannot read",
                                       name, ext);
        }
        return 0;
}

/* A URI that the path-based import may open beside the file: relative, no scheme, no "..". */
static bool uri_is_local_relative(const char *uri) {
        if (uri[0] == '/' || uri[0] == '\\' || strchr(uri, ':') || strchr(uri, '\\') || !uri[0])
                return false;
        for (const char *seg = uri; seg; seg = strchr(seg, '/') ? strchr(seg, '/') + 1 : NULL)
                if (strncmp(seg, "..", 2) == 0 && (seg[2] == '/' || seg[2] == '\0'))
                        return false;
        return true;
}

/* Buffers: their declared sizes within max_bytes, the GLB's own buffer within its BIN chunk,
 * external URIs only where the caller can resolve them. */
static int check_buffers(json_object *root, const char *name, int64_t bin_len, const p3_mesh_limits *lim,
                         bool allow_external, p3_err *err) {
        json_object *buffers = member(root, "buffers");
        size_t n = json_object_is_type(buffers, json_type_array) ? json_object_array_length(buffers) : 0;
        uint64_t total = 0;

        for (size_t i = 0; i < n; i++) {
                json_object *b = json_object_array_get_idx(buffers, i);
                json_object *juri = member(b, "uri");
                const char *uri = json_object_get_string(juri);
                int64_t len;

                if (!is_count(member(b, "byteLength"), &len))
                        return p3_errf(err, -EINVAL, "%s: glTF buffer %zu has no valid byteLength", name, i);
                if ((uint64_t) len > lim->max_bytes || (total += (uint64_t) len) > lim->max_bytes)
                        return p3_errf(err, -EFBIG, "%s: glTF buffers declare more than the limit of %zu bytes",
                                       name, lim->max_bytes);
                if (!juri) {
                        if (i != 0 || bin_len < 0)
                                return p3_errf(err, -EINVAL, "%s: glTF buffer %zu has no uri and no GLB BIN chunk to refer to",
                                               name, i);
                        if (len > bin_len)
                                return p3_errf(err, -EINVAL,
                                               "%s: glTF buffer 0 declares %" PRId64 " bytes but the GLB BIN chunk holds only %" PRId64 " (truncated?)",
                                               name, len, bin_len);
                        continue;
                }
                if (!uri || strncmp(uri, "data:", 5) == 0)
                        continue;
                if (!allow_external)
                        return p3_errf(err, -EOPNOTSUPP,
                                       "%s: glTF references the external buffer \"%.100s\", which cannot be loaded from memory; import it by path or pack it as a self-contained GLB",
                                       name, uri);
                if (!uri_is_local_relative(uri))
                        return p3_errf(err, -EPERM, "%s: glTF buffer URI \"%.100s\" points outside the file's directory",
                                       name, uri);
        }
        return 0;
}

/* Draco primitives (assimp 5.2 throws on them even when not "required") and position
 * accessors that are not float: assimp copies quantized components bitwise into floats. */
static int check_primitives(json_object *root, const char *name, p3_err *err) {
        json_object *meshes = member(root, "meshes"), *accessors = member(root, "accessors");
        size_t nm = json_object_is_type(meshes, json_type_array) ? json_object_array_length(meshes) : 0;
        size_t na = json_object_is_type(accessors, json_type_array) ? json_object_array_length(accessors) : 0;

        for (size_t m = 0; m < nm; m++) {
                json_object *prims = member(json_object_array_get_idx(meshes, m), "primitives");
                size_t np = json_object_is_type(prims, json_type_array) ? json_object_array_length(prims) : 0;
                for (size_t p = 0; p < np; p++) {
                        json_object *prim = json_object_array_get_idx(prims, p);
                        int64_t idx, type;

                        if (member(member(prim, "extensions"), "KHR_draco_mesh_compression"))
                                return p3_errf(err, -EOPNOTSUPP,
                                               "%s: Draco-compressed meshes are not supported (KHR_draco_mesh_compression); decompress it first, e.g. with gltf-transform",
                                               name);
                        if (!is_count(member(member(prim, "attributes"), "POSITION"), &idx) || (size_t) idx >= na)
                                continue; /* assimp reports a missing or dangling POSITION itself */
                        json_object *acc = json_object_array_get_idx(accessors, (size_t) idx);
                        if (is_count(member(acc, "componentType"), &type) && type != GLTF_FLOAT)
                                return p3_errf(err, -EOPNOTSUPP,
                                               "%s: mesh %zu has quantized positions (componentType %" PRId64 ", KHR_mesh_quantization), which are not supported",
                                               name, m, type);
                }
        }
        return 0;
}

/* assimp builds its node tree by recursion and catches cycles only after the fact: refuse a
 * hierarchy deeper than MAX_DEPTH (which also catches every cycle) before it recurses. */
#define GLTF_MAX_NODE_DEPTH 1000

static int check_node_depth(json_object *root, const char *name, p3_err *err) {
        json_object *nodes = member(root, "nodes");
        size_t n = json_object_is_type(nodes, json_type_array) ? json_object_array_length(nodes) : 0;
        if (n == 0)
                return 0;

        _cleanup_free_ int64_t *parent = malloc(n * sizeof(int64_t));
        if (!parent)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                parent[i] = -1;
        for (size_t i = 0; i < n; i++) {
                json_object *ch = member(json_object_array_get_idx(nodes, i), "children");
                size_t nc = json_object_is_type(ch, json_type_array) ? json_object_array_length(ch) : 0;
                for (size_t c = 0; c < nc; c++) {
                        int64_t k;
                        if (is_count(json_object_array_get_idx(ch, c), &k) && (size_t) k < n)
                                parent[k] = (int64_t) i;
                }
        }
        for (size_t i = 0; i < n; i++) {
                int depth = 0;
                for (int64_t k = (int64_t) i; k >= 0; k = parent[k])
                        if (++depth > GLTF_MAX_NODE_DEPTH)
                                return p3_errf(err, -EINVAL, "%s: glTF node hierarchy is cyclic or deeper than %d levels",
                                               name, GLTF_MAX_NODE_DEPTH);
        }
        return 0;
}

/* ---- glTF reduced to its geometry ---------------------------------------------------------- */

/* assimp 5.2 crashes on valid glTF it has no need to read for us: a skin without
 * inverseBindMatrices is a NULL dereference, fewer matrices than joints a read past the end,
 * and its skin-weight, morph-target, animation and material code trusts counts the same way.
 * So assimp gets a copy of the JSON with only what positions, faces and node transforms
 * need; accessors, buffer views and buffers keep their indices. */

/* A copy of src (not NULL) with only the given keys, or src itself if it is not an object,
 * for assimp to refuse. NULL on OOM. */
static json_object *copy_keys(json_object *src, const char *const *keys) {
        if (!json_object_is_type(src, json_type_object))
                return json_object_get(src);
        json_object *dst = json_object_new_object();
        for (; dst && *keys; keys++) {
                json_object *v = member(src, *keys);
                if (v && json_object_object_add(dst, *keys, json_object_get(v)) < 0) {
                        json_object_put(v);
                        json_object_put(dst);
                        return NULL;
                }
        }
        return dst;
}

/* Replace obj[key] (an array) by the array of fn(element). false on OOM. */
static bool map_member(json_object *obj, const char *key, json_object *(*fn)(json_object *)) {
        json_object *arr = member(obj, key);
        if (!json_object_is_type(arr, json_type_array))
                return true;
        size_t n = json_object_array_length(arr);
        json_object *out = json_object_new_array_ext((int) n);
        for (size_t i = 0; out && i < n; i++) {
                json_object *src = json_object_array_get_idx(arr, i); /* NULL: a JSON null, kept */
                json_object *e = src ? fn(src) : NULL;
                if ((src && !e) || json_object_array_add(out, e) < 0) {
                        json_object_put(e);
                        json_object_put(out);
                        return false;
                }
        }
        return out && json_object_object_add(obj, key, out) == 0;
}

static json_object *reduce_primitive(json_object *prim) {
        static const char *const keep[] = { "indices", "mode", NULL }, *const pos[] = { "POSITION", NULL };
        json_object *out = copy_keys(prim, keep);
        if (!out || !json_object_is_type(out, json_type_object) || !member(prim, "attributes"))
                return out;
        json_object *attr = copy_keys(member(prim, "attributes"), pos);
        if (!attr || json_object_object_add(out, "attributes", attr) < 0) {
                json_object_put(attr);
                json_object_put(out);
                return NULL;
        }
        return out;
}

static json_object *reduce_mesh(json_object *mesh) {
        static const char *const keep[] = { "name", "primitives", NULL };
        json_object *out = copy_keys(mesh, keep);
        if (out && !map_member(out, "primitives", reduce_primitive)) {
                json_object_put(out);
                return NULL;
        }
        return out;
}

static json_object *reduce_node(json_object *node) {
        static const char *const keep[] = { "name", "children", "matrix", "translation", "rotation", "scale", "mesh", NULL };
        return copy_keys(node, keep);
}

/* The reduced JSON text, malloc'd. */
static int gltf_reduce(json_object *root, char **ret, size_t *ret_len) {
        static const char *const keep[] = { "asset",    "scene",       "scenes",  "nodes", "meshes",
                                            "accessors", "bufferViews", "buffers", NULL };
        _cleanup_(json_object_putp) json_object *out = copy_keys(root, keep);
        size_t len;

        if (!out || !map_member(out, "nodes", reduce_node) || !map_member(out, "meshes", reduce_mesh))
                return -ENOMEM;
        const char *text = json_object_to_json_string_length(out, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                                             &len);
        if (!text || !(*ret = strndup(text, len)))
                return -ENOMEM;
        *ret_len = len;
        return 0;
}

static int check_gltf_json(const char *json, size_t len, int64_t bin_len, const char *name,
                           const p3_mesh_limits *lim, bool allow_external, char **ret_json, size_t *ret_len,
                           p3_err *err) {
        if (len > INT_MAX)
                return p3_errf(err, -EFBIG, "%s: glTF JSON is larger than 2 GiB", name);

        _cleanup_(json_tokener_freep) json_tokener *tok = json_tokener_new_ex(128);
        if (!tok)
                return -ENOMEM;
        _cleanup_(json_object_putp) json_object *root = json_tokener_parse_ex(tok, json, (int) len);
        enum json_tokener_error je = json_tokener_get_error(tok);
        if (!root)
                return p3_errf(err, -EINVAL, "%s: glTF JSON does not parse (%s)", name,
                               je == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(je));
        if (!json_object_is_type(root, json_type_object))
                return p3_errf(err, -EINVAL, "%s: glTF JSON is not an object", name);

        const char *version = json_object_get_string(member(member(root, "asset"), "version"));
        if (!version)
                return p3_errf(err, -EINVAL, "%s: glTF JSON has no asset.version", name);
        if (version[0] != '2' || version[1] != '.')
                return p3_errf(err, -EOPNOTSUPP, "%s: glTF version %.20s is not supported (only 2.x)", name, version);

        int r = check_extensions_required(root, name, err);
        if (r < 0)
                return r;
        r = check_primitives(root, name, err);
        if (r < 0)
                return r;
        r = check_node_depth(root, name, err);
        if (r < 0)
                return r;
        r = check_buffers(root, name, bin_len, lim, allow_external, err);
        if (r < 0)
                return r;
        return gltf_reduce(root, ret_json, ret_len);
}

/* ---- GLB container ------------------------------------------------------------------------ */

/* The GLB again with a new JSON chunk (space-padded) and every other chunk as it was. */
static int glb_rebuild(const uint8_t *p, size_t size, size_t rest_off, const char *json, size_t json_len,
                       void **ret, size_t *ret_size) {
        size_t padded = (json_len + 3) & ~(size_t) 3, total = 20 + padded + (size - rest_off);
        if (total > UINT32_MAX)
                return -EFBIG;
        uint8_t *g = malloc(total);
        if (!g)
                return -ENOMEM;
        memcpy(g, p, 12);
        put32(g + 8, (uint32_t) total);
        put32(g + 12, (uint32_t) padded);
        put32(g + 16, GLB_CHUNK_JSON);
        memcpy(g + 20, json, json_len);
        memset(g + 20 + json_len, ' ', padded - json_len);
        memcpy(g + 20 + padded, p + rest_off, size - rest_off);
        *ret = g;
        *ret_size = total;
        return 0;
}

static int check_glb(const uint8_t *p, size_t size, const char *name, const p3_mesh_limits *lim,
                     bool allow_external, void **ret, size_t *ret_size, p3_err *err) {
        if (size < 12)
                return p3_errf(err, -EINVAL, "%s: %zu bytes are too short for a GLB header", name, size);
        if (le32(p) != GLB_MAGIC)
                return p3_errf(err, -EINVAL, "%s: GLB magic is not \"glTF\"", name);
        if (le32(p + 4) != 2)
                return p3_errf(err, -EOPNOTSUPP, "%s: GLB version %" PRIu32 " is not supported (only 2)", name, le32(p + 4));
        if (le32(p + 8) != size)
                return p3_errf(err, -EINVAL, "%s: GLB header declares %" PRIu32 " bytes but %zu are there (%s)", name,
                               le32(p + 8), size, le32(p + 8) > size ? "truncated download?" : "trailing data");

        const char *json = NULL;
        size_t json_len = 0, rest_off = 0;
        int64_t bin_len = -1;
        for (size_t off = 12, k = 0; off < size; k++) {
                if (size - off < 8)
                        return p3_errf(err, -EINVAL, "%s: GLB chunk %zu header is cut off at byte %zu", name, k, off);
                uint32_t clen = le32(p + off), ctype = le32(p + off + 4);
                off += 8;
                if (clen > size - off)
                        return p3_errf(err, -EINVAL, "%s: GLB chunk %zu declares %" PRIu32 " bytes, past the end of the file",
                                       name, k, clen);
                if (k == 0 && ctype != GLB_CHUNK_JSON)
                        return p3_errf(err, -EINVAL, "%s: the first GLB chunk is not JSON", name);
                if (k == 0) {
                        json = (const char *) p + off;
                        json_len = clen;
                        rest_off = off + clen;
                } else if (k == 1 && ctype == GLB_CHUNK_BIN)
                        bin_len = clen;
                off += clen;
        }
        if (!json || json_len == 0)
                return p3_errf(err, -EINVAL, "%s: GLB has no JSON chunk", name);

        _cleanup_free_ char *reduced = NULL;
        size_t reduced_len = 0;
        int r = check_gltf_json(json, json_len, bin_len, name, lim, allow_external, &reduced, &reduced_len, err);
        if (r < 0)
                return r;
        return glb_rebuild(p, size, rest_off, reduced, reduced_len, ret, ret_size);
}

/* ---- STL ---------------------------------------------------------------------------------- */

static bool is_text(const uint8_t *p, size_t size) {
        for (size_t i = 0; i < size; i++)
                if (p[i] < 0x20 && !isspace(p[i]))
                        return false;
        return true;
}

static int check_stl(const uint8_t *p, size_t size, const char *name, const p3_mesh_limits *lim, p3_err *err) {
        const char *s = (const char *) p;

        if (is_binary_stl(p, size)) {
                if ((int64_t) le32(p + 80) > lim->max_faces)
                        return p3_errf(err, -EFBIG, "%s: binary STL has %" PRIu32 " triangles, more than the limit of %" PRId64,
                                       name, le32(p + 80), lim->max_faces);
                return 0;
        }
        /* "solid" alone does not make it ASCII: binary headers start with it too */
        if (has_prefix_word(s, size, skip_space(s, size, 0), "solid") && is_text(p, size))
                return 0;
        if (size < 84)
                return p3_errf(err, -EINVAL, "%s: neither an ASCII STL (\"solid\") nor a binary STL (%zu bytes, shorter than its 84-byte header)",
                               name, size);
        return p3_errf(err, -EINVAL,
                       "%s: binary STL header declares %" PRIu32 " triangles (%" PRIu64 " bytes) but the file has %zu bytes (truncated or corrupt)",
                       name, le32(p + 80), 84 + 50 * (uint64_t) le32(p + 80), size);
}

/* ---- PLY header --------------------------------------------------------------------------- */

typedef struct ply_element {
        char name[32];
        uint64_t count;
        uint64_t min_bytes; /* the least one instance can take in the body */
} ply_element;

static int ply_type_size(const char *t) {
        static const struct {
                const char *name;
                int size;
        } types[] = {
                { "char", 1 },   { "uchar", 1 },  { "int8", 1 },   { "uint8", 1 },   { "short", 2 },
                { "ushort", 2 }, { "int16", 2 },  { "uint16", 2 }, { "int", 4 },     { "uint", 4 },
                { "int32", 4 },  { "uint32", 4 }, { "float", 4 },  { "float32", 4 }, { "double", 8 },
                { "float64", 8 },
        };
        for (size_t i = 0; i < ELEMENTSOF(types); i++)
                if (strcmp(t, types[i].name) == 0)
                        return types[i].size;
        return 0;
}

static bool parse_u64(const char *s, uint64_t *ret) {
        uint64_t v = 0;
        if (!isdigit((unsigned char) *s))
                return false;
        for (; isdigit((unsigned char) *s); s++)
                if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t) (*s - '0'), &v))
                        return false;
        *ret = v;
        return *s == '\0';
}

/* One header line, already split into at most 5 words. */
static int ply_header_line(char **w, int nw, ply_element *el, size_t *n_el, size_t max_el, bool binary,
                           const char *name, p3_err *err) {
        if (nw >= 3 && strcmp(w[0], "element") == 0) {
                if (*n_el >= max_el)
                        return p3_errf(err, -EINVAL, "%s: PLY header declares more than %zu elements", name, max_el);
                ply_element *e = &el[(*n_el)++];
                snprintf(e->name, sizeof(e->name), "%s", w[1]);
                if (!parse_u64(w[2], &e->count))
                        return p3_errf(err, -EINVAL, "%s: PLY element \"%s\" has an invalid count \"%.30s\"", name, e->name, w[2]);
                e->min_bytes = 0;
                return 0;
        }
        if (nw >= 2 && strcmp(w[0], "property") == 0) {
                if (*n_el == 0)
                        return p3_errf(err, -EINVAL, "%s: PLY property before any element", name);
                bool list = strcmp(w[1], "list") == 0;
                const char *type = list ? (nw >= 3 ? w[2] : "") : w[1];
                int sz = ply_type_size(type);
                if (sz == 0 || (list && (nw < 4 || ply_type_size(w[3]) == 0)))
                        return p3_errf(err, -EINVAL, "%s: PLY property has an unknown type \"%.30s\"", name,
                                       list && sz ? (nw >= 4 ? w[3] : "") : type);
                /* binary: at least the (list count) value; ASCII: at least one character */
                el[*n_el - 1].min_bytes += binary ? (uint64_t) sz : 1;
        }
        return 0; /* comment, obj_info and stray text (Blender writes some) are ignored */
}

static int check_ply_counts(const ply_element *el, size_t n_el, size_t body, const char *name,
                            const p3_mesh_limits *lim, p3_err *err) {
        uint64_t need = 0, n_faces = 0;
        for (size_t i = 0; i < n_el; i++) {
                bool faces = strcmp(el[i].name, "face") == 0 || strcmp(el[i].name, "tristrips") == 0;
                uint64_t cap = (uint64_t) (faces ? lim->max_faces : lim->max_vertices);
                uint64_t bytes;
                if (faces)
                        n_faces += el[i].count;
                if (el[i].count > cap)
                        return p3_errf(err, -EFBIG, "%s: PLY declares %" PRIu64 " %s elements, more than the limit of %" PRIu64,
                                       name, el[i].count, el[i].name, cap);
                if (__builtin_mul_overflow(el[i].count, el[i].min_bytes, &bytes) || __builtin_add_overflow(need, bytes, &need))
                        need = UINT64_MAX;
        }
        if (n_faces == 0)
                return p3_errf(err, -EINVAL, "%s: PLY declares no faces (a point cloud?): no triangles", name);
        if (need > body)
                return p3_errf(err, -EINVAL, "%s: PLY header declares elements that need at least %" PRIu64 " bytes but the body has %zu (truncated?)",
                               name, need, body);
        return 0;
}

static int check_ply(const char *s, size_t size, const char *name, const p3_mesh_limits *lim, p3_err *err) {
        ply_element el[64];
        size_t n_el = 0;
        bool binary = false, have_format = false;
        size_t i = 0;

        for (int line = 0;; line++) {
                char buf[256], *w[5];
                int nw = 0;
                const char *nl = memchr(s + i, '\n', size - i);
                if (!nl)
                        return p3_errf(err, -EINVAL, "%s: PLY header has no end_header line", name);
                size_t len = MIN((size_t) (nl - (s + i)), sizeof(buf) - 1);
                memcpy(buf, s + i, len);
                buf[len] = '\0';
                i = (size_t) (nl - s) + 1;
                for (char *save = NULL, *t = strtok_r(buf, " \t\r", &save); t && nw < 5; t = strtok_r(NULL, " \t\r", &save))
                        w[nw++] = t;
                if (line == 0 || nw == 0)
                        continue; /* the magic, checked by the caller */
                if (strcmp(w[0], "end_header") == 0)
                        break;
                if (strcmp(w[0], "format") == 0 && nw >= 2) {
                        have_format = true;
                        binary = strcmp(w[1], "ascii") != 0;
                        if (binary && strcmp(w[1], "binary_little_endian") != 0 && strcmp(w[1], "binary_big_endian") != 0)
                                return p3_errf(err, -EINVAL, "%s: PLY format \"%.30s\" is unknown", name, w[1]);
                        continue;
                }
                int r = ply_header_line(w, nw, el, &n_el, ELEMENTSOF(el), binary, name, err);
                if (r < 0)
                        return r;
        }
        if (!have_format)
                return p3_errf(err, -EINVAL, "%s: PLY header has no format line", name);
        return check_ply_counts(el, n_el, size - i, name, lim, err);
}

/* ---- OFF header --------------------------------------------------------------------------- */

/* The next whitespace-separated token, skipping '#' comments as assimp does. */
static size_t off_next_token(const char *s, size_t size, size_t i) {
        for (;;) {
                i = skip_space(s, size, i);
                if (i >= size || s[i] != '#')
                        return i;
                const char *nl = memchr(s + i, '\n', size - i);
                i = nl ? (size_t) (nl - s) + 1 : size;
        }
}

static bool off_read_count(const char *s, size_t size, size_t *i, uint64_t *ret) {
        char tok[24];
        size_t k = 0;
        *i = off_next_token(s, size, *i);
        while (*i < size && !isspace((unsigned char) s[*i]) && k < sizeof(tok) - 1)
                tok[k++] = s[(*i)++];
        tok[k] = '\0';
        return parse_u64(tok, ret);
}

static int check_off(const char *s, size_t size, const char *name, const p3_mesh_limits *lim, p3_err *err) {
        size_t i = off_next_token(s, size, 0);
        size_t kw = off_keyword(s, size, i);
        uint64_t nv, nf, dim;

        if (kw == 0)
                return p3_errf(err, -EINVAL, "%s: OFF file does not start with an OFF keyword", name);
        bool has_dim = kw > 3 && s[i + kw - 4] == 'n';
        i += kw;
        if (has_dim && (!off_read_count(s, size, &i, &dim) || dim > 3))
                return p3_errf(err, -EINVAL, "%s: nOFF dimension is missing or above 3", name);
        if (!off_read_count(s, size, &i, &nv) || !off_read_count(s, size, &i, &nf))
                return p3_errf(err, -EINVAL, "%s: OFF header has no valid vertex and face counts", name);
        if (nv > (uint64_t) lim->max_vertices)
                return p3_errf(err, -EFBIG, "%s: OFF declares %" PRIu64 " vertices, more than the limit of %" PRId64, name, nv,
                               lim->max_vertices);
        if (nf > (uint64_t) lim->max_faces)
                return p3_errf(err, -EFBIG, "%s: OFF declares %" PRIu64 " faces, more than the limit of %" PRId64, name, nf,
                               lim->max_faces);
        if (nv == 0 || nf == 0)
                return p3_errf(err, -EINVAL, "%s: OFF declares %" PRIu64 " vertices and %" PRIu64 " faces: no triangles", name,
                               nv, nf);
        /* every vertex and face takes a line of at least two bytes */
        if (2 * (nv + nf) > size - i)
                return p3_errf(err, -EINVAL, "%s: OFF declares %" PRIu64 " vertices and %" PRIu64 " faces but has only %zu bytes left (truncated?)",
                               name, nv, nf, size - i);
        return 0;
}

/* ---- OBJ ---------------------------------------------------------------------------------- */

/* OBJ declares nothing, but assimp makes one vertex per face corner and k-2 triangles per
 * k-gon: count both before it allocates them. */
static int check_obj(const char *s, size_t size, const char *name, const p3_mesh_limits *lim, p3_err *err) {
        uint64_t corners = 0, triangles = 0;

        for (size_t i = 0; i < size;) {
                const char *nl = memchr(s + i, '\n', size - i);
                size_t end = nl ? (size_t) (nl - s) : size;
                size_t j = skip_space(s, end, i);
                if (end - j >= 2 && s[j] == 'f' && isspace((unsigned char) s[j + 1])) {
                        uint64_t k = 0;
                        for (j++; j < end;) {
                                j = skip_space(s, end, j);
                                if (j >= end)
                                        break;
                                k++;
                                while (j < end && !isspace((unsigned char) s[j]))
                                        j++;
                        }
                        if (k >= 3) {
                                corners += k;
                                triangles += k - 2;
                        }
                }
                i = end + 1;
        }
        if (triangles > (uint64_t) lim->max_faces)
                return p3_errf(err, -EFBIG, "%s: OBJ has %" PRIu64 " triangles, more than the limit of %" PRId64, name, triangles,
                               lim->max_faces);
        if (corners > (uint64_t) lim->max_vertices)
                return p3_errf(err, -EFBIG, "%s: OBJ faces have %" PRIu64 " corners (one vertex each), more than the limit of %" PRId64,
                               name, corners, lim->max_vertices);
        return 0;
}

/* ---- dispatch ----------------------------------------------------------------------------- */

int p3_mesh_precheck(const void *buf, size_t size, const char *format, const char *name,
                     const p3_mesh_limits *lim, bool allow_external, void **ret_reduced, size_t *ret_reduced_size,
                     p3_err *err) {
        const uint8_t *p = buf;
        const char *s = buf;

        *ret_reduced = NULL;
        *ret_reduced_size = 0;

        if (!buf || size == 0)
                return p3_errf(err, -EINVAL, "%s: is empty (0 bytes)", name);
        if (size > lim->max_bytes)
                return p3_errf(err, -EFBIG, "%s: %zu bytes, more than the limit of %zu", name, size, lim->max_bytes);

        if (strcmp(format, "glb") == 0)
                return check_glb(p, size, name, lim, allow_external, ret_reduced, ret_reduced_size, err);
        if (strcmp(format, "gltf") == 0)
                return check_gltf_json(s, size, -1, name, lim, allow_external, (char **) ret_reduced, ret_reduced_size,
                                       err);
        if (strcmp(format, "stl") == 0)
                return check_stl(p, size, name, lim, err);
        if (strcmp(format, "ply") == 0) {
                const char *d = p3_mesh_format_detect(buf, size);
                if (!d || strcmp(d, "ply") != 0)
                        return p3_errf(err, -EINVAL, "%s: PLY magic (\"ply\" line) is missing", name);
                return check_ply(s, size, name, lim, err);
        }
        if (strcmp(format, "off") == 0)
                return check_off(s, size, name, lim, err);
        if (strcmp(format, "obj") == 0) {
                /* no magic to check, so at least refuse what is clearly something else */
                const char *d = p3_mesh_format_detect(buf, size);
                if (d && strcmp(d, "obj") != 0)
                        return p3_errf(err, -EINVAL, "%s: declared as OBJ but the content is %s", name, d);
                return check_obj(s, size, name, lim, err);
        }
        return p3_errf(err, -EINVAL, "%s: unknown mesh format \"%s\"", name, format);
}
