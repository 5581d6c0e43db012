/* SPDX-License-Identifier: MIT */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf, strndup, mkostemp */
#endif
#include "safetensors.h"

#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The safetensors reference implementation refuses headers above 100 MB; a 513-tensor model
 * needs ~50 kB, so anything larger is a corrupt or hostile file. */
#define ST_MAX_HEADER (100u * 1024 * 1024)

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);
DEFINE_TRIVIAL_CLEANUP_FUNC(json_tokener *, json_tokener_free);

static const struct {
        const char *name;
        size_t size;
} dtype_table[_ST_DTYPE_MAX] = {
        [ST_F32] = { "F32", 4 },  [ST_F16] = { "F16", 2 }, [ST_BF16] = { "BF16", 2 },
        [ST_F64] = { "F64", 8 },  [ST_I64] = { "I64", 8 }, [ST_I32] = { "I32", 4 },
        [ST_U8] = { "U8", 1 },    [ST_BOOL] = { "BOOL", 1 },
};

size_t st_dtype_size(st_dtype t) {
        return (unsigned) t < _ST_DTYPE_MAX ? dtype_table[t].size : 0;
}

const char *st_dtype_name(st_dtype t) {
        return (unsigned) t < _ST_DTYPE_MAX ? dtype_table[t].name : "?";
}

int st_dtype_from_string(const char *s, st_dtype *ret) {
        for (int i = 0; i < _ST_DTYPE_MAX; i++)
                if (strcmp(s, dtype_table[i].name) == 0) {
                        *ret = (st_dtype) i;
                        return 0;
                }
        return -EINVAL;
}

/* ---- half / bfloat16 ---------------------------------------------------------------------- */

static float bits_to_float(uint32_t u) {
        float f;
        memcpy(&f, &u, sizeof(f));
        return f;
}

static uint32_t float_to_bits(float f) {
        uint32_t u;
        memcpy(&u, &f, sizeof(u));
        return u;
}

float p3_half_to_float(uint16_t h) {
        uint32_t sign = (uint32_t) (h & 0x8000) << 16;
        uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;

        if (exp == 0x1f) /* inf / NaN: keep the payload */
                return bits_to_float(sign | 0x7f800000 | (mant << 13));
        if (exp == 0) {
                /* zero or subnormal: mant * 2^-24 is exact in float */
                float v = (float) mant * 0x1p-24f;
                return sign ? -v : v;
        }
        return bits_to_float(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Round m >> shift to nearest, ties to even. */
static uint32_t shift_rne(uint32_t m, unsigned shift) {
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
                r++;
        return r;
}

uint16_t p3_float_to_half(float f) {
        uint32_t x = float_to_bits(f);
        uint16_t sign = (x >> 16) & 0x8000;
        x &= 0x7fffffff;

        if (x >= 0x7f800000) /* inf, or NaN made quiet so that a payload of zero stays NaN */
                return sign | 0x7c00 | (x > 0x7f800000 ? 0x200 | ((x >> 13) & 0x3ff) : 0);
        if (x >= 0x477ff000) /* >= 65520 rounds past the largest half */
                return sign | 0x7c00;
        if (x >= 0x38800000) /* normal half: rebias the exponent; a carry may reach inf */
                return sign | (uint16_t) shift_rne(x - 0x38000000, 13);

        uint32_t e = x >> 23;
        if (e < 102) /* below 2^-25: rounds to zero */
                return sign;
        /* subnormal half (a float subnormal has e == 0 and lands above) */
        return sign | (uint16_t) shift_rne((x & 0x7fffff) | 0x800000, 126 - e);
}

float p3_bf16_to_float(uint16_t h) {
        return bits_to_float((uint32_t) h << 16);
}

/* ---- reader ------------------------------------------------------------------------------- */

void st_close(st_file *f) {
        if (!f)
                return;
        for (size_t i = 0; i < f->n_tensors; i++)
                free(f->tensors[i].name);
        for (size_t i = 0; i < f->n_meta; i++) {
                free(f->meta_keys[i]);
                free(f->meta_values[i]);
        }
        free(f->tensors);
        free(f->meta_keys);
        free(f->meta_values);
        if (f->mapped && f->map)
                munmap(f->map, f->size);
        if (f->fd >= 0)
                close(f->fd);
        free(f->path);
        free(f);
}

/* json-c keeps the last of duplicate object keys without telling; count the top-level keys
 * in the (already validated) text to notice. Returns the first duplicated key, malloc'd, or
 * NULL. */
typedef struct key_span {
        const char *p;
        size_t n;
} key_span;

static int span_cmp(const void *a, const void *b) {
        const key_span *x = a, *y = b;
        int c = memcmp(x->p, y->p, MIN(x->n, y->n));
        return c ? c : (x->n > y->n) - (x->n < y->n);
}

static char *find_duplicate_key(const char *s, size_t len) {
        _cleanup_free_ key_span *keys = NULL;
        size_t n = 0, cap = 0;
        int depth = 0;
        bool want_key = false;

        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                if (c == '"') {
                        size_t start = ++i;
                        while (i < len && s[i] != '"')
                                i += s[i] == '\\' ? 2 : 1;
                        if (depth == 1 && want_key) {
                                if (n == cap) {
                                        cap = cap ? 2 * cap : 64;
                                        key_span *k = realloc(keys, cap * sizeof(*k));
                                        if (!k)
                                                return NULL;
                                        keys = k;
                                }
                                keys[n++] = (key_span) { s + start, MIN(i, len) - start };
                                want_key = false;
                        }
                } else if (c == '{' || c == '[') {
                        depth++;
                        want_key = c == '{' && depth == 1;
                } else if (c == '}' || c == ']')
                        depth--;
                else if (c == ',' && depth == 1)
                        want_key = true;
        }

        if (n < 2)
                return NULL;
        qsort(keys, n, sizeof(*keys), span_cmp);
        for (size_t i = 1; i < n; i++)
                if (span_cmp(&keys[i - 1], &keys[i]) == 0)
                        return strndup(keys[i].p, keys[i].n);
        return NULL;
}

static int get_u64(json_object *v, uint64_t *ret) {
        if (!json_object_is_type(v, json_type_int))
                return -EINVAL;
        /* json-c saturates out-of-range integers at INT64_MAX/UINT64_MAX; both are absurd here
         * and fail the range checks later. */
        int64_t s = json_object_get_int64(v);
        if (s < 0)
                return -ERANGE;
        *ret = (uint64_t) s;
        return 0;
}

static int parse_entry(const char *path, const char *name, json_object *e, size_t data_size,
                       st_tensor *t, uint64_t range[2], p3_err *err) {
        json_object *jd, *js, *jo;

        if (!json_object_is_type(e, json_type_object))
                return p3_errf(err, -EINVAL, "%s: header entry \"%s\" is not an object", path, name);
        if (!json_object_object_get_ex(e, "dtype", &jd) || !json_object_is_type(jd, json_type_string))
                return p3_errf(err, -EINVAL, "%s: tensor \"%s\" has no dtype string", path, name);
        if (!json_object_object_get_ex(e, "shape", &js) || !json_object_is_type(js, json_type_array))
                return p3_errf(err, -EINVAL, "%s: tensor \"%s\" has no shape array", path, name);
        if (!json_object_object_get_ex(e, "data_offsets", &jo) ||
            !json_object_is_type(jo, json_type_array) || json_object_array_length(jo) != 2)
                return p3_errf(err, -EINVAL, "%s: tensor \"%s\" has no data_offsets pair", path, name);

        if (st_dtype_from_string(json_object_get_string(jd), &t->dtype) < 0)
                return p3_errf(err, -EINVAL, "%s: tensor \"%s\" has unknown dtype \"%s\"", path, name,
                               json_object_get_string(jd));

        size_t nd = json_object_array_length(js);
        if (nd > ST_MAX_DIMS)
                return p3_errf(err, -EINVAL, "%s: tensor \"%s\" has %zu dimensions, more than %d",
                               path, name, nd, ST_MAX_DIMS);
        t->ndim = (int) nd;
        uint64_t numel = 1;
        for (size_t d = 0; d < nd; d++) {
                uint64_t v;
                if (get_u64(json_object_array_get_idx(js, d), &v) < 0)
                        return p3_errf(err, -EINVAL, "%s: tensor \"%s\" has a negative or non-integer shape",
                                       path, name);
                /* bounded by the file size, so the product cannot overflow before we stop */
                if (v > data_size || (v && numel > data_size / v))
                        return p3_errf(err, -EINVAL, "%s: tensor \"%s\" has a shape too large for the file",
                                       path, name);
                t->shape[d] = (int64_t) v;
                numel *= v;
        }
        t->numel = (int64_t) numel;
        t->nbytes = numel * st_dtype_size(t->dtype);

        for (int k = 0; k < 2; k++)
                if (get_u64(json_object_array_get_idx(jo, k), &range[k]) < 0)
                        return p3_errf(err, -EINVAL, "%s: tensor \"%s\" has negative or non-integer data_offsets",
                                       path, name);
        if (range[1] < range[0])
                return p3_errf(err, -EINVAL, "%s: tensor \"%s\" has data_offsets end before begin",
                               path, name);
        if (range[1] > data_size)
                return p3_errf(err, -EINVAL,
                               "%s: tensor \"%s\" has data_offsets out of range (end %llu, data section %zu bytes; truncated file?)",
                               path, name, (unsigned long long) range[1], data_size);
        if (range[1] - range[0] != t->nbytes)
                return p3_errf(err, -EINVAL,
                               "%s: tensor \"%s\" size mismatch: data_offsets span %llu bytes but shape and dtype need %zu",
                               path, name, (unsigned long long) (range[1] - range[0]), t->nbytes);
        return 0;
}

static int parse_meta(st_file *f, json_object *m, p3_err *err) {
        if (!json_object_is_type(m, json_type_object))
                return p3_errf(err, -EINVAL, "%s: __metadata__ is not an object", f->path);
        size_t n = (size_t) json_object_object_length(m);
        f->meta_keys = calloc(n ? n : 1, sizeof(char *));
        f->meta_values = calloc(n ? n : 1, sizeof(char *));
        if (!f->meta_keys || !f->meta_values)
                return -ENOMEM;
        json_object_object_foreach(m, k, v) {
                if (!json_object_is_type(v, json_type_string))
                        return p3_errf(err, -EINVAL, "%s: __metadata__ value of \"%s\" is not a string",
                                       f->path, k);
                f->meta_keys[f->n_meta] = strdup(k);
                f->meta_values[f->n_meta] = strdup(json_object_get_string(v));
                f->n_meta++;
                if (!f->meta_keys[f->n_meta - 1] || !f->meta_values[f->n_meta - 1])
                        return -ENOMEM;
        }
        return 0;
}

typedef struct range_ref {
        uint64_t begin, end;
        size_t idx;
} range_ref;

static int range_cmp(const void *a, const void *b) {
        const range_ref *x = a, *y = b;
        if (x->begin != y->begin)
                return x->begin < y->begin ? -1 : 1;
        return (x->end > y->end) - (x->end < y->end);
}

/* Two non-empty ranges may not share a byte. */
static int check_overlaps(st_file *f, range_ref *r, size_t n, p3_err *err) {
        qsort(r, n, sizeof(*r), range_cmp);
        uint64_t end = 0;
        size_t prev = SIZE_MAX;
        for (size_t i = 0; i < n; i++) {
                if (r[i].begin == r[i].end)
                        continue;
                if (prev != SIZE_MAX && r[i].begin < end)
                        return p3_errf(err, -EINVAL, "%s: tensors \"%s\" and \"%s\" have overlapping data_offsets",
                                       f->path, f->tensors[r[prev].idx].name, f->tensors[r[i].idx].name);
                end = r[i].end;
                prev = i;
        }
        return 0;
}

static int parse_header(st_file *f, const char *hdr, size_t hlen, const uint8_t *data,
                        size_t data_size, p3_err *err) {
        if (memchr(hdr, 0, hlen))
                return p3_errf(err, -EINVAL, "%s: header JSON contains a NUL byte", f->path);

        _cleanup_(json_tokener_freep) json_tokener *tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        _cleanup_(json_object_putp) json_object *root = json_tokener_parse_ex(tok, hdr, (int) hlen);
        enum json_tokener_error je = json_tokener_get_error(tok);
        if (!root || je != json_tokener_success)
                return p3_errf(err, -EINVAL, "%s: header JSON does not parse (%s)", f->path,
                               je == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(je));
        for (size_t i = json_tokener_get_parse_end(tok); i < hlen; i++)
                if (!strchr(" \t\r\n", hdr[i]))
                        return p3_errf(err, -EINVAL, "%s: header JSON has trailing garbage", f->path);
        if (!json_object_is_type(root, json_type_object))
                return p3_errf(err, -EINVAL, "%s: header JSON is not an object", f->path);

        _cleanup_free_ char *dup = find_duplicate_key(hdr, hlen);
        if (dup)
                return p3_errf(err, -EINVAL, "%s: duplicate tensor name \"%s\" in header", f->path, dup);

        size_t n = (size_t) json_object_object_length(root);
        f->tensors = calloc(n ? n : 1, sizeof(st_tensor));
        _cleanup_free_ range_ref *ranges = calloc(n ? n : 1, sizeof(range_ref));
        if (!f->tensors || !ranges)
                return -ENOMEM;

        json_object_object_foreach(root, key, val) {
                int r;
                if (strcmp(key, "__metadata__") == 0) {
                        r = parse_meta(f, val, err);
                        if (r < 0)
                                return r;
                        continue;
                }
                st_tensor *t = &f->tensors[f->n_tensors];
                uint64_t range[2];
                r = parse_entry(f->path, key, val, data_size, t, range, err);
                if (r < 0)
                        return r;
                t->name = strdup(key);
                if (!t->name)
                        return -ENOMEM;
                t->data = data + range[0];
                ranges[f->n_tensors] = (range_ref) { range[0], range[1], f->n_tensors };
                f->n_tensors++;
        }
        return check_overlaps(f, ranges, f->n_tensors, err);
}

static int open_common(st_file *f, p3_err *err) {
        const uint8_t *p = f->map;
        uint64_t hlen = 0;

        if (f->size < 8)
                return p3_errf(err, -EINVAL, "%s: file is truncated (%zu bytes, no header length)",
                               f->path, f->size);
        for (int i = 7; i >= 0; i--)
                hlen = hlen << 8 | p[i];
        if (hlen > ST_MAX_HEADER || hlen < 2)
                return p3_errf(err, -EINVAL, "%s: header length %llu is absurd (file has %zu bytes)",
                               f->path, (unsigned long long) hlen, f->size);
        if (hlen > f->size - 8)
                return p3_errf(err, -EINVAL,
                               "%s: header length %llu is larger than the file (%zu bytes; truncated?)",
                               f->path, (unsigned long long) hlen, f->size);
        return parse_header(f, (const char *) p + 8, hlen, p + 8 + hlen, f->size - 8 - hlen, err);
}

/* An empty st_file named path; fd is -1 so that st_close on an early failure closes nothing. */
static st_file *file_new(const char *path) {
        st_file *f = calloc(1, sizeof(*f));
        if (!f)
                return NULL;
        f->fd = -1;
        f->path = strdup(path);
        if (!f->path) {
                free(f);
                return NULL;
        }
        return f;
}

static void identity_from_stat(const struct stat *st, st_identity *ret) {
        *ret = (st_identity) {
                .dev = st->st_dev, .ino = st->st_ino, .size = st->st_size, .mtime = st->st_mtim,
        };
}

int st_open_buffer(const void *buf, size_t size, const char *name, st_file **ret, p3_err *err) {
        _cleanup_(st_closep) st_file *f = file_new(name ? name : "(buffer)");
        if (!f)
                return -ENOMEM;
        f->map = (void *) buf;
        f->size = size;
        int r = open_common(f, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(f);
        return 0;
}

int st_open(const char *path, st_file **ret, p3_err *err) {
        _cleanup_(st_closep) st_file *f = file_new(path);
        if (!f)
                return -ENOMEM;

        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return p3_errf(err, -errno, "%s: cannot open: %s", path, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0)
                return p3_errf(err, -errno, "%s: cannot stat: %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return p3_errf(err, -EINVAL, "%s: not a regular file", path);
        if (st.st_size < 8)
                return p3_errf(err, -EINVAL, "%s: file is truncated (%lld bytes, no header length)",
                               path, (long long) st.st_size);

        void *m = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
                return p3_errf(err, -errno, "%s: cannot map: %s", path, strerror(errno));
        f->map = m;
        f->size = (size_t) st.st_size;
        f->mapped = true;
        /* Kept so that a copy can be read without the mapping, and checked against this. */
        f->fd = TAKE_FD(fd);
        identity_from_stat(&st, &f->id);

        int r = open_common(f, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(f);
        return 0;
}

/* ---- the file behind the mapping ------------------------------------------------------------ */

static int stale(const st_file *f, p3_err *err) {
        return p3_errf(err, -ESTALE, "%s changed on disk since it was opened; reload to use the new file",
                       f->path);
}

bool st_identity_equal(const st_identity *a, const st_identity *b) {
        return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
               a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

int st_identity_of_path(const char *path, st_identity *ret) {
        struct stat st;
        if (stat(path, &st) < 0)
                return -errno;
        identity_from_stat(&st, ret);
        return 0;
}

int st_check_unchanged(const st_file *f, p3_err *err) {
        if (f->fd < 0)
                return 0;
        struct stat st;
        if (fstat(f->fd, &st) < 0)
                return p3_errf(err, -errno, "%s: cannot stat: %s", f->path, strerror(errno));
        st_identity now;
        identity_from_stat(&st, &now);
        /* dev and ino cannot differ through the same descriptor: compare what a rewrite moves */
        now.dev = f->id.dev;
        now.ino = f->id.ino;
        return st_identity_equal(&now, &f->id) ? 0 : stale(f, err);
}

int st_read(const st_file *f, uint64_t offset, void *dst, size_t nbytes, p3_err *err) {
        if (f->fd < 0)
                return p3_errf(err, -EBADF, "%s: not opened from a file, nothing to read", f->path);
        if (offset > f->size || nbytes > f->size - offset)
                return p3_errf(err, -EINVAL, "%s: read of %zu bytes at %llu is outside the file (%zu bytes)",
                               f->path, nbytes, (unsigned long long) offset, f->size);
        uint8_t *p = dst;
        while (nbytes > 0) {
                /* pread moves at most ~2 GiB per call: loop */
                ssize_t k = pread(f->fd, p, nbytes, (off_t) offset);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return p3_errf(err, -errno, "%s: cannot read: %s", f->path, strerror(errno));
                if (k == 0) /* shorter than when opened */
                        return stale(f, err);
                p += k;
                offset += (uint64_t) k;
                nbytes -= (size_t) k;
        }
        return 0;
}

const st_tensor *st_find(const st_file *f, const char *name) {
        for (size_t i = 0; i < f->n_tensors; i++)
                if (strcmp(f->tensors[i].name, name) == 0)
                        return &f->tensors[i];
        return NULL;
}

const char *st_meta(const st_file *f, const char *key) {
        for (size_t i = 0; i < f->n_meta; i++)
                if (strcmp(f->meta_keys[i], key) == 0)
                        return f->meta_values[i];
        return NULL;
}

/* ---- conversions (data may be unaligned inside a mapping: copy element by element) ---------- */

#define LOAD(type, base, i)                                                     \
        ({                                                                      \
                type _v;                                                        \
                memcpy(&_v, (const uint8_t *) (base) + (size_t) (i) * sizeof(type), sizeof(type)); \
                _v;                                                             \
        })

int st_to_f32(const st_tensor *t, float *dst) {
        int64_t n = t->numel;
        switch (t->dtype) {
        case ST_F32:
                memcpy(dst, t->data, t->nbytes);
                return 0;
        case ST_F16:
                for (int64_t i = 0; i < n; i++)
                        dst[i] = p3_half_to_float(LOAD(uint16_t, t->data, i));
                return 0;
        case ST_BF16:
                for (int64_t i = 0; i < n; i++)
                        dst[i] = p3_bf16_to_float(LOAD(uint16_t, t->data, i));
                return 0;
        case ST_F64:
                for (int64_t i = 0; i < n; i++)
                        dst[i] = (float) LOAD(double, t->data, i);
                return 0;
        default:
                return -EINVAL;
        }
}

/* Integer kinds widened to int64; the i32 variant narrows from this. */
static int load_int(const st_tensor *t, int64_t i, int64_t *v) {
        switch (t->dtype) {
        case ST_I64:
                *v = LOAD(int64_t, t->data, i);
                return 0;
        case ST_I32:
                *v = LOAD(int32_t, t->data, i);
                return 0;
        case ST_U8:
        case ST_BOOL:
                *v = ((const uint8_t *) t->data)[i];
                return 0;
        default:
                return -EINVAL;
        }
}

static bool is_int_dtype(st_dtype t) {
        return t == ST_I64 || t == ST_I32 || t == ST_U8 || t == ST_BOOL;
}

int st_to_i64(const st_tensor *t, int64_t *dst) {
        if (!is_int_dtype(t->dtype))
                return -EINVAL;
        for (int64_t i = 0; i < t->numel; i++)
                (void) load_int(t, i, &dst[i]);
        return 0;
}

int st_to_i32(const st_tensor *t, int32_t *dst) {
        if (!is_int_dtype(t->dtype))
                return -EINVAL;
        for (int64_t i = 0; i < t->numel; i++) {
                int64_t v = 0;
                (void) load_int(t, i, &v);
                if (v < INT32_MIN || v > INT32_MAX)
                        return -ERANGE;
                dst[i] = (int32_t) v;
        }
        return 0;
}

/* ---- writer ------------------------------------------------------------------------------- */

typedef struct st_wentry {
        char *name;
        st_dtype dtype;
        int ndim;
        int64_t shape[ST_MAX_DIMS];
        size_t nbytes;
        const void *data;
        st_fill_fn fill;
        void *userdata;
} st_wentry;

struct st_writer {
        st_wentry *e;
        size_t n, cap;
        char **mk, **mv;
        size_t n_meta;
};

int st_writer_new(st_writer **ret) {
        st_writer *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        *ret = w;
        return 0;
}

void st_writer_free(st_writer *w) {
        if (!w)
                return;
        for (size_t i = 0; i < w->n; i++)
                free(w->e[i].name);
        for (size_t i = 0; i < w->n_meta; i++) {
                free(w->mk[i]);
                free(w->mv[i]);
        }
        free(w->e);
        free(w->mk);
        free(w->mv);
        free(w);
}

static int writer_push(st_writer *w, const char *name, st_dtype dtype, int ndim,
                       const int64_t *shape, st_wentry **ret) {
        if ((unsigned) dtype >= _ST_DTYPE_MAX || ndim < 0 || ndim > ST_MAX_DIMS || !name ||
            strcmp(name, "__metadata__") == 0)
                return -EINVAL;
        for (size_t i = 0; i < w->n; i++)
                if (strcmp(w->e[i].name, name) == 0)
                        return -EEXIST;
        if (w->n == w->cap) {
                size_t cap = w->cap ? 2 * w->cap : 64;
                st_wentry *e = realloc(w->e, cap * sizeof(*e));
                if (!e)
                        return -ENOMEM;
                w->e = e;
                w->cap = cap;
        }
        st_wentry *e = &w->e[w->n];
        *e = (st_wentry) { .dtype = dtype, .ndim = ndim };
        size_t numel = 1;
        for (int d = 0; d < ndim; d++) {
                if (shape[d] < 0)
                        return -EINVAL;
                e->shape[d] = shape[d];
                numel *= (size_t) shape[d];
        }
        e->nbytes = numel * st_dtype_size(dtype);
        e->name = strdup(name);
        if (!e->name)
                return -ENOMEM;
        w->n++;
        *ret = e;
        return 0;
}

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                  const void *data) {
        st_wentry *e;
        int r = writer_push(w, name, dtype, ndim, shape, &e);
        if (r < 0)
                return r;
        e->data = data;
        return 0;
}

int st_writer_add_fill(st_writer *w, const char *name, st_dtype dtype, int ndim,
                       const int64_t *shape, st_fill_fn fill, void *userdata) {
        st_wentry *e;
        if (!fill)
                return -EINVAL;
        int r = writer_push(w, name, dtype, ndim, shape, &e);
        if (r < 0)
                return r;
        e->fill = fill;
        e->userdata = userdata;
        return 0;
}

int st_writer_add_meta(st_writer *w, const char *key, const char *value) {
        char **mk = realloc(w->mk, (w->n_meta + 1) * sizeof(char *));
        if (!mk)
                return -ENOMEM;
        w->mk = mk;
        char **mv = realloc(w->mv, (w->n_meta + 1) * sizeof(char *));
        if (!mv)
                return -ENOMEM;
        w->mv = mv;
        _cleanup_free_ char *k = strdup(key), *v = strdup(value);
        if (!k || !v)
                return -ENOMEM;
        w->mk[w->n_meta] = TAKE_PTR(k);
        w->mv[w->n_meta] = TAKE_PTR(v);
        w->n_meta++;
        return 0;
}

/* The header text: tensors in add order, then __metadata__, as compact JSON. malloc'd. */
static char *writer_header(st_writer *w) {
        _cleanup_(json_object_putp) json_object *root = json_object_new_object();
        if (!root)
                return NULL;
        uint64_t off = 0;
        for (size_t i = 0; i < w->n; i++) {
                st_wentry *e = &w->e[i];
                json_object *t = json_object_new_object(), *shape = json_object_new_array(),
                            *offs = json_object_new_array();
                if (!t || !shape || !offs) {
                        json_object_put(t);
                        json_object_put(shape);
                        json_object_put(offs);
                        return NULL;
                }
                for (int d = 0; d < e->ndim; d++)
                        json_object_array_add(shape, json_object_new_int64(e->shape[d]));
                json_object_array_add(offs, json_object_new_int64((int64_t) off));
                json_object_array_add(offs, json_object_new_int64((int64_t) (off + e->nbytes)));
                off += e->nbytes;
                json_object_object_add(t, "dtype", json_object_new_string(st_dtype_name(e->dtype)));
                json_object_object_add(t, "shape", shape);
                json_object_object_add(t, "data_offsets", offs);
                json_object_object_add(root, e->name, t);
        }
        if (w->n_meta > 0) {
                json_object *m = json_object_new_object();
                if (!m)
                        return NULL;
                for (size_t i = 0; i < w->n_meta; i++)
                        json_object_object_add(m, w->mk[i], json_object_new_string(w->mv[i]));
                json_object_object_add(root, "__metadata__", m);
        }
        const char *s = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
                                                                     JSON_C_TO_STRING_NOSLASHESCAPE);
        return s ? strdup(s) : NULL;
}

static int write_all(int fd, const void *buf, size_t n) {
        const uint8_t *p = buf;
        while (n > 0) {
                ssize_t k = write(fd, p, MIN(n, (size_t) 1 << 30));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static int write_tensors(st_writer *w, int fd) {
        size_t scratch_size = 0;
        for (size_t i = 0; i < w->n; i++)
                if (w->e[i].fill)
                        scratch_size = MAX(scratch_size, w->e[i].nbytes);
        _cleanup_free_ void *scratch = scratch_size ? malloc(scratch_size) : NULL;
        if (scratch_size && !scratch)
                return -ENOMEM;

        for (size_t i = 0; i < w->n; i++) {
                st_wentry *e = &w->e[i];
                const void *src = e->data;
                if (e->fill) {
                        int r = e->fill(e->userdata, scratch, e->nbytes);
                        if (r < 0)
                                return r;
                        src = scratch;
                }
                if (e->nbytes == 0)
                        continue;
                if (!src)
                        return -EINVAL;
                int r = write_all(fd, src, e->nbytes);
                if (r < 0)
                        return r;
        }
        return 0;
}

int st_writer_write_fd(st_writer *w, int fd, p3_err *err) {
        _cleanup_free_ char *hdr = writer_header(w);
        if (!hdr)
                return p3_errf(err, -ENOMEM, "cannot build the safetensors header: out of memory");
        size_t len = strlen(hdr);
        /* pad with spaces so that the data section starts 8-byte aligned, like safetensors */
        size_t padded = (len + 7) & ~(size_t) 7;
        _cleanup_free_ uint8_t *buf = malloc(8 + padded);
        if (!buf)
                return p3_errf(err, -ENOMEM, "cannot build the safetensors header: out of memory");
        for (int i = 0; i < 8; i++)
                buf[i] = (uint8_t) ((uint64_t) padded >> (8 * i));
        memcpy(buf + 8, hdr, len);
        memset(buf + 8 + len, ' ', padded - len);

        int r = write_all(fd, buf, 8 + padded);
        if (r >= 0)
                r = write_tensors(w, fd);
        if (r < 0)
                return p3_errf(err, r, "cannot write safetensors data: %s", strerror(-r));
        return 0;
}

int st_writer_write_file(st_writer *w, const char *path, p3_err *err) {
        _cleanup_free_ char *tmp = NULL;
        if (asprintf(&tmp, "%s.tmpXXXXXX", path) < 0)
                return -ENOMEM;
        _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return p3_errf(err, -errno, "%s: cannot create a temporary file: %s", path, strerror(errno));

        int r = 0;
        if (fchmod(fd, 0644) < 0)
                r = p3_errf(err, -errno, "%s: cannot set permissions: %s", tmp, strerror(errno));
        if (r >= 0) {
                p3_err werr = {};
                r = st_writer_write_fd(w, fd, &werr);
                if (r < 0)
                        p3_errf(err, r, "%s: %s", path, werr.msg);
        }
        if (r >= 0 && fsync(fd) < 0)
                r = p3_errf(err, -errno, "%s: cannot sync: %s", path, strerror(errno));
        if (r >= 0 && close(TAKE_FD(fd)) < 0)
                r = p3_errf(err, -errno, "%s: cannot close: %s", path, strerror(errno));
        if (r >= 0 && rename(tmp, path) < 0)
                r = p3_errf(err, -errno, "%s: cannot rename the temporary file into place: %s", path,
                            strerror(errno));
        if (r < 0)
                (void) unlink(tmp);
        return r;
}
