/* SPDX-License-Identifier: MIT */
/* safetensors reader/writer, the float conversions, and the refusals of the strict reader,
 * the checkpoint loader and the config parser: every bad input gives a negative errno and one
 * sentence naming the file and the problem. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf, mkdtemp */
#endif
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_config.h"
#include "synth.h"
#include "test-util.h"
#include "weights.h"

static char tmpdir[] = "/tmp/test-safetensors-XXXXXX";
static int n_checks;

static char *tmp_path(const char *name) {
        char *p;
        CHECK(asprintf(&p, "%s/%s", tmpdir, name) > 0);
        return p;
}

static uint32_t fbits(float f) {
        uint32_t u;
        memcpy(&u, &f, sizeof(u));
        return u;
}

/* Used only where the compiler has _Float16 (gcc 12 has; clang 14 on x86 does not). */
__attribute__((unused)) static float bitsf(uint32_t u) {
        float f;
        memcpy(&f, &u, sizeof(f));
        return f;
}

/* A failure must be a negative errno with a message that names the file and contains word. */
static void expect_error(const char *what, int r, const p3_err *err, const char *file, const char *word) {
        /* look for the word after the file name, so that a name like "overlap.st" proves nothing */
        const char *at = strstr(err->msg, file);
        if (r >= 0 || !at || !strcasestr(at + strlen(file), word)) {
                fprintf(stderr, "%s: r=%d msg=\"%s\" (want a negative errno, \"%s\" and \"%s\")\n", what, r,
                        err->msg, file, word);
                exit(EXIT_FAILURE);
        }
        CHECK(!strchr(err->msg, '\n'));
        printf("  %-28s -> %s\n", what, err->msg);
        n_checks++;
}

/* ---- conversions -------------------------------------------------------------------------- */

static void test_half(void) {
        static const struct {
                uint16_t h;
                float f;
        } exact[] = {
                { 0x0000, 0.0f },          { 0x8000, -0.0f },          { 0x0001, 0x1p-24f },
                { 0x8001, -0x1p-24f },     { 0x0002, 0x1p-23f },       { 0x03ff, 1023 * 0x1p-24f },
                { 0x0400, 0x1p-14f },      { 0x3c00, 1.0f },           { 0x3c01, 1.0f + 0x1p-10f },
                { 0xc000, -2.0f },         { 0x7bff, 65504.0f },       { 0xfbff, -65504.0f },
                { 0x7c00, INFINITY },      { 0xfc00, -INFINITY },      { 0x3555, 0x1.554p-2f },
        };
        for (size_t i = 0; i < ELEMENTSOF(exact); i++) {
                float f = p3_half_to_float(exact[i].h);
                CHECK(fbits(f) == fbits(exact[i].f));
                CHECK(p3_float_to_half(exact[i].f) == exact[i].h);
        }
        CHECK(isnan(p3_half_to_float(0x7e00)) && isnan(p3_half_to_float(0x7c01)) &&
              isnan(p3_half_to_float(0xfe00)));

        /* every half survives a round trip through float; NaNs stay NaN */
        for (uint32_t h = 0; h < 0x10000; h++) {
                float f = p3_half_to_float((uint16_t) h);
                uint16_t back = p3_float_to_half(f);
                if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
                        CHECK(isnan(f) && (back & 0x7c00) == 0x7c00 && (back & 0x3ff) && (back & 0x8000) == (h & 0x8000));
                else
                        CHECK(back == h);
        }

        /* rounding: nearest, ties to even, overflow to inf, underflow to zero */
        static const struct {
                float f;
                uint16_t h;
        } round[] = {
                { 65519.0f, 0x7bff },                 { 65520.0f, 0x7c00 },
                { 1e10f, 0x7c00 },                    { -1e10f, 0xfc00 },
                { 1.0f + 0x1p-11f, 0x3c00 },          { 1.0f + 3 * 0x1p-11f, 0x3c02 },
                { 1.0f + 0x1p-11f + 0x1p-20f, 0x3c01 }, { 0x1p-25f, 0x0000 },
                { 0x1.000002p-25f, 0x0001 },          { 3 * 0x1p-25f, 0x0002 },
                { 5 * 0x1p-25f, 0x0002 },             { 0x1p-26f, 0x0000 },
                { 0x1p-149f, 0x0000 },                { -0x1p-30f, 0x8000 },
                { 0x1.ffcp-15f, 0x0400 },             { 0x1.ff8p-15f, 0x03ff },
                { 0x1.ff7ffep-15f, 0x03ff },          { NAN, 0x7e00 },
        };
        for (size_t i = 0; i < ELEMENTSOF(round); i++) {
                uint16_t h = p3_float_to_half(round[i].f);
                if (h != round[i].h) {
                        fprintf(stderr, "float_to_half(%a) = 0x%04x, want 0x%04x\n", round[i].f, h, round[i].h);
                        exit(EXIT_FAILURE);
                }
        }

#ifdef __FLT16_MAX__
        /* the compiler's own conversion (IEEE, round-to-nearest-even) as an oracle */
        uint64_t n = 0;
        for (uint64_t u = 0; u < (1ull << 32); u += 4093, n++) {
                float f = bitsf((uint32_t) u);
                _Float16 ref = (_Float16) f;
                uint16_t rb;
                memcpy(&rb, &ref, 2);
                uint16_t h = p3_float_to_half(f);
                if (isnan(f))
                        CHECK((h & 0x7c00) == 0x7c00 && (h & 0x3ff));
                else if (h != rb) {
                        fprintf(stderr, "float_to_half(%a) = 0x%04x, _Float16 gives 0x%04x\n", f, h, rb);
                        exit(EXIT_FAILURE);
                }
        }
        printf("f16: exhaustive half round trip, %llu sampled floats agree with _Float16\n",
               (unsigned long long) n);
#else
        printf("f16: exhaustive half round trip (no _Float16 oracle here)\n");
#endif

        CHECK(p3_bf16_to_float(0x3f80) == 1.0f);
        CHECK(p3_bf16_to_float(0xc040) == -3.0f);
        CHECK(p3_bf16_to_float(0x7f80) == INFINITY && p3_bf16_to_float(0xff80) == -INFINITY);
        CHECK(isnan(p3_bf16_to_float(0x7fc0)));
        CHECK(fbits(p3_bf16_to_float(0x0001)) == 0x00010000); /* a float subnormal, exact */
        CHECK(fbits(p3_bf16_to_float(0x8000)) == 0x80000000);
        printf("bf16: edge values exact\n");
}

/* ---- writer -> reader round trip ----------------------------------------------------------- */

static void test_round_trip(void) {
        const float f32[6] = { 1.5f, -2.25f, 0.0f, INFINITY, 1e-40f, 3.0e38f };
        const uint16_t f16[4] = { 0x3c00, 0x0001, 0xfc00, 0x7bff };
        const uint16_t bf16[3] = { 0x3f80, 0xc040, 0x0001 };
        const double f64[2] = { 0.1, -1e300 };
        const int64_t i64[3] = { -1, INT64_MAX, 42 };
        const int32_t i32[4] = { -7, 0, INT32_MAX, INT32_MIN };
        const uint8_t u8[5] = { 0, 1, 128, 255, 7 }, bools[2] = { 1, 0 };
        const float scalar = 3.25f;

        _cleanup_(st_writer_freep) st_writer *w = NULL;
        CHECK_OK(st_writer_new(&w));
        CHECK_OK(st_writer_add(w, "a.f32", ST_F32, 2, (int64_t[]) { 2, 3 }, f32));
        CHECK_OK(st_writer_add(w, "b.f16", ST_F16, 1, (int64_t[]) { 4 }, f16));
        CHECK_OK(st_writer_add(w, "c.bf16", ST_BF16, 3, (int64_t[]) { 1, 3, 1 }, bf16));
        CHECK_OK(st_writer_add(w, "d/f64", ST_F64, 1, (int64_t[]) { 2 }, f64));
        CHECK_OK(st_writer_add(w, "e.i64", ST_I64, 1, (int64_t[]) { 3 }, i64));
        CHECK_OK(st_writer_add(w, "f.i32", ST_I32, 2, (int64_t[]) { 2, 2 }, i32));
        CHECK_OK(st_writer_add(w, "g.u8", ST_U8, 1, (int64_t[]) { 5 }, u8));
        CHECK_OK(st_writer_add(w, "h.bool", ST_BOOL, 1, (int64_t[]) { 2 }, bools));
        CHECK_OK(st_writer_add(w, "i.scalar", ST_F32, 0, NULL, &scalar));
        CHECK_OK(st_writer_add(w, "j.empty", ST_F32, 2, (int64_t[]) { 0, 5 }, NULL));
        CHECK(st_writer_add(w, "a.f32", ST_F32, 1, (int64_t[]) { 1 }, f32) == -EEXIST);
        CHECK_OK(st_writer_add_meta(w, "format", "pt"));
        CHECK_OK(st_writer_add_meta(w, "note", "quote \" and slash /"));

        _cleanup_free_ char *path = tmp_path("round.safetensors");
        p3_err err = {};
        CHECK_OK(st_writer_write_file(w, path, &err));

        _cleanup_(st_closep) st_file *f = test_open(path);
        CHECK(f->n_tensors == 10 && f->n_meta == 2);
        CHECK(strcmp(st_meta(f, "format"), "pt") == 0);
        CHECK(strcmp(st_meta(f, "note"), "quote \" and slash /") == 0);
        CHECK(st_meta(f, "nope") == NULL);
        const char *order[] = { "a.f32", "b.f16", "c.bf16", "d/f64", "e.i64", "f.i32", "g.u8", "h.bool",
                                "i.scalar", "j.empty" };
        for (size_t i = 0; i < ELEMENTSOF(order); i++)
                CHECK(strcmp(f->tensors[i].name, order[i]) == 0);

        /* header padded with spaces to a multiple of 8 */
        const uint8_t *m = f->map;
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--)
                hlen = hlen << 8 | m[i];
        CHECK(hlen % 8 == 0 && m[8] == '{');
        CHECK(f->size == 8 + hlen + sizeof(f32) + sizeof(f16) + sizeof(bf16) + sizeof(f64) + sizeof(i64) +
                                 sizeof(i32) + sizeof(u8) + sizeof(bools) + sizeof(scalar));

        const st_tensor *t = st_find(f, "a.f32");
        CHECK(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->numel == 6);
        CHECK(memcmp(t->data, f32, sizeof(f32)) == 0);
        float fo[6];
        int64_t io[5];
        int32_t jo[5];
        CHECK_OK(st_to_f32(t, fo));
        CHECK(memcmp(fo, f32, sizeof(f32)) == 0);
        CHECK(st_to_i64(t, io) == -EINVAL);

        CHECK_OK(st_to_f32(st_find(f, "b.f16"), fo));
        CHECK(fo[0] == 1.0f && fo[1] == 0x1p-24f && fo[2] == -INFINITY && fo[3] == 65504.0f);
        CHECK_OK(st_to_f32(st_find(f, "c.bf16"), fo));
        CHECK(fo[0] == 1.0f && fo[1] == -3.0f && fbits(fo[2]) == 0x00010000);
        CHECK_OK(st_to_f32(st_find(f, "d/f64"), fo));
        CHECK(fo[0] == 0.1f && fo[1] == -INFINITY);

        t = st_find(f, "e.i64");
        CHECK_OK(st_to_i64(t, io));
        CHECK(io[0] == -1 && io[1] == INT64_MAX && io[2] == 42);
        CHECK(st_to_i32(t, jo) == -ERANGE);
        CHECK(st_to_f32(t, fo) == -EINVAL);
        CHECK_OK(st_to_i32(st_find(f, "f.i32"), jo));
        CHECK(jo[0] == -7 && jo[2] == INT32_MAX && jo[3] == INT32_MIN);
        CHECK_OK(st_to_i64(st_find(f, "f.i32"), io));
        CHECK(io[3] == INT32_MIN);
        CHECK_OK(st_to_i64(st_find(f, "g.u8"), io));
        CHECK(io[2] == 128 && io[3] == 255 && io[4] == 7);
        CHECK_OK(st_to_i32(st_find(f, "h.bool"), jo));
        CHECK(jo[0] == 1 && jo[1] == 0);
        t = st_find(f, "i.scalar");
        CHECK(t->ndim == 0 && t->numel == 1);
        CHECK_OK(st_to_f32(t, fo)); /* after the U8/BOOL tensors: not 4-byte aligned */
        CHECK(fo[0] == 3.25f);
        t = st_find(f, "j.empty");
        CHECK(t->numel == 0 && t->nbytes == 0 && t->shape[1] == 5);

        /* the same bytes through st_open_buffer */
        _cleanup_(st_closep) st_file *b = NULL;
        CHECK_OK(st_open_buffer(f->map, f->size, "mem", &b, NULL));
        CHECK(b->n_tensors == 10 && memcmp(st_find(b, "d/f64")->data, f64, sizeof(f64)) == 0);

        /* every truncation and a set of single-byte corruptions: refused or accepted, never a
         * crash (run under ASan to mean something) */
        _cleanup_free_ uint8_t *copy = malloc(f->size);
        CHECK(copy);
        size_t refused = 0, tried = 0;
        for (size_t len = 0; len < f->size; len++, tried++) {
                st_file *g = NULL;
                p3_err e = {};
                memcpy(copy, f->map, len);
                if (st_open_buffer(copy, len, "cut", &g, &e) < 0)
                        refused++;
                st_close(g);
        }
        static const uint8_t subst[] = { 0, '"', '{', '}', '[', ']', ',', ':', '-', '9', ' ', 'e', 0xff };
        for (size_t pos = 0; pos < MIN(f->size, (size_t) 8 + hlen); pos++)
                for (size_t k = 0; k < ELEMENTSOF(subst); k++, tried++) {
                        st_file *g = NULL;
                        p3_err e = {};
                        memcpy(copy, f->map, f->size);
                        copy[pos] = subst[k];
                        if (st_open_buffer(copy, f->size, "flip", &g, &e) < 0) {
                                CHECK(e.msg[0] && strstr(e.msg, "flip"));
                                refused++;
                        }
                        st_close(g);
                }
        printf("corruption: %zu variants, %zu refused, no crash\n", tried, refused);

        /* no temporary file is left next to the result */
        _cleanup_free_ char *cmd = NULL;
        CHECK(asprintf(&cmd, "test $(ls '%s' | grep -c tmp) -eq 0", tmpdir) > 0);
        CHECK(system(cmd) == 0);
        printf("round trip: 10 tensors of 8 dtypes, metadata, buffer open ok\n");
}

/* ---- malformed files ---------------------------------------------------------------------- */

/* hdr (hdr_size bytes, 0 = strlen), then data_len zero bytes; hlen (0 = the header size) is
 * written as the length prefix. */
static char *write_raw_n(const char *name, const char *hdr, size_t hdr_size, uint64_t hlen, size_t data_len) {
        char *p = tmp_path(name);
        FILE *f = fopen(p, "we");
        CHECK(f);
        size_t hs = hdr_size ? hdr_size : strlen(hdr);
        uint64_t len = hlen ? hlen : hs;
        uint8_t le[8];
        for (int i = 0; i < 8; i++)
                le[i] = (uint8_t) (len >> (8 * i));
        CHECK(fwrite(le, 1, 8, f) == 8);
        CHECK(fwrite(hdr, 1, hs, f) == hs);
        for (size_t i = 0; i < data_len; i++)
                fputc(0, f);
        CHECK(fclose(f) == 0);
        return p;
}

static char *write_raw(const char *name, const char *hdr, uint64_t hlen, size_t data_len) {
        return write_raw_n(name, hdr, 0, hlen, data_len);
}

static void bad_file_n(const char *name, const char *hdr, size_t hdr_size, uint64_t hlen, size_t data_len,
                       const char *word) {
        _cleanup_free_ char *p = write_raw_n(name, hdr, hdr_size, hlen, data_len);
        st_file *f = NULL;
        p3_err err = {};
        int r = st_open(p, &f, &err);
        expect_error(name, r, &err, name, word);
        CHECK(f == NULL);
}

static void bad_file(const char *name, const char *hdr, uint64_t hlen, size_t data_len, const char *word) {
        bad_file_n(name, hdr, 0, hlen, data_len, word);
}

#define T1(dtype, shape, offs) "{\"t\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}}"

static void test_bad_files(void) {
        printf("malformed files:\n");
        bad_file("truncated-data.st", T1("F32", "[4]", "[0,16]"), 0, 8, "out of range");
        bad_file("header-too-long.st", T1("F32", "[1]", "[0,4]"), 1000, 4, "larger than the file");
        bad_file("header-absurd.st", T1("F32", "[1]", "[0,4]"), 1ull << 60, 4, "absurd");
        bad_file("corrupt-json.st", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],", 0, 4, "does not parse");
        bad_file("not-json.st", "\x01\x02garbage!", 0, 0, "does not parse");
        bad_file("trailing.st", T1("F32", "[1]", "[0,4]") "xx", 0, 4, "parse");
        bad_file("trailing2.st", T1("F32", "[1]", "[0,4]") "  {}", 0, 4, "parse");
        bad_file("not-object.st", "[1,2,3] ", 0, 0, "not an object");
        bad_file("entry-not-object.st", "{\"t\":5}", 0, 0, "not an object");
        bad_file("offsets-out.st", T1("F32", "[1]", "[1000,1004]"), 0, 16, "out of range");
        bad_file("end-before-begin.st", T1("F32", "[0]", "[8,4]"), 0, 16, "end before begin");
        bad_file("neg-offset.st", T1("F32", "[1]", "[-4,0]"), 0, 16, "negative");
        bad_file("overlap.st",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                 0, 12, "overlapping");
        bad_file("bad-dtype.st", T1("F33", "[1]", "[0,4]"), 0, 4, "unknown dtype");
        bad_file("i8-dtype.st", T1("I8", "[1]", "[0,1]"), 0, 4, "unknown dtype");
        bad_file("size-mismatch.st", T1("F32", "[3]", "[0,16]"), 0, 16, "size mismatch");
        bad_file("neg-shape.st", T1("F32", "[-1]", "[0,4]"), 0, 4, "negative");
        bad_file("huge-shape.st", T1("F32", "[1099511627776,1099511627776]", "[0,4]"), 0, 4, "too large");
        bad_file("huge-shape2.st", T1("F32", "[18446744073709551615]", "[0,4]"), 0, 4, "shape");
        bad_file("float-shape.st", T1("F32", "[1.5]", "[0,4]"), 0, 4, "shape");
        bad_file("no-dtype.st", "{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4, "dtype");
        bad_file("no-shape.st", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 0, 4, "shape");
        bad_file("no-offsets.st", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, 4, "data_offsets");
        bad_file("too-many-dims.st", T1("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]"), 0, 4, "dimensions");
        bad_file("duplicate.st",
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 0, 8, "duplicate");
        bad_file("bad-meta.st", "{\"__metadata__\":{\"k\":1}}", 0, 0, "__metadata__");
        bad_file_n("nul-header.st", "{\"a\":\"\0\"}", 8, 0, 0, "NUL");

        _cleanup_free_ char *tiny = tmp_path("tiny.st");
        FILE *f = fopen(tiny, "we");
        CHECK(f && fwrite("abc", 1, 3, f) == 3 && fclose(f) == 0);
        st_file *sf = NULL;
        p3_err err = {};
        expect_error("tiny.st", st_open(tiny, &sf, &err), &err, "tiny.st", "truncated");

        err = (p3_err) {};
        _cleanup_free_ char *missing = tmp_path("missing.st");
        expect_error("missing.st", st_open(missing, &sf, &err), &err, "missing.st", "cannot open");

        /* buffers are checked the same way and named by the caller */
        const char buf[] = "\x10\0\0\0\0\0\0\0{\"a\":{\"dtype\":";
        err = (p3_err) {};
        expect_error("buffer", st_open_buffer(buf, sizeof(buf) - 1, "membuf", &sf, &err), &err, "membuf",
                     "larger than the file");

        /* a valid header followed by data, but an empty header-less valid file works too */
        _cleanup_free_ char *empty = write_raw("empty-ok.st", "{}      ", 0, 0);
        _cleanup_(st_closep) st_file *ef = test_open(empty);
        CHECK(ef->n_tensors == 0);
}

/* ---- checkpoints against a config ---------------------------------------------------------- */

static const char small_config[] =
        "{\"sonata\": {\"in_channels\": 9, \"order\": [\"z\", \"z-trans\", \"hilbert\", \"hilbert-trans\"],"
        " \"stride\": [2], \"enc_depths\": [1, 1], \"enc_channels\": [16, 32], \"enc_num_head\": [1, 2],"
        " \"enc_patch_size\": [48, 48], \"mlp_ratio\": 4, \"qkv_bias\": true, \"qk_scale\": null,"
        " \"attn_drop\": 0.0, \"proj_drop\": 0.0, \"drop_path\": 0.3, \"shuffle_orders\": true,"
        " \"pre_norm\": true, \"enable_rpe\": false, \"enable_flash\": true, \"upcast_attention\": false,"
        " \"upcast_softmax\": false, \"traceable\": true, \"enc_mode\": true, \"mask_token\": true,"
        " \"dec_depths\": [1], \"something_new\": {\"x\": 1}}, \"concat_width\": 48}";

typedef enum mutation {
        MUT_NONE,
        MUT_MISSING,  /* drop one tensor */
        MUT_EXTRA,    /* add a tensor the model does not have */
        MUT_SHAPE,    /* transpose one matrix */
        MUT_DIT,      /* prefix every name with "dit." */
        MUT_DIT_DUP,  /* one tensor both with and without "dit." */
        MUT_I32,      /* one tensor stored as I32 */
} mutation;

static const char victim[] = "sonata.enc.enc1.block0.attn.qkv.weight";

/* Write the synthetic weights of w as dtype, altered by mut. */
static char *write_ckpt(const char *name, const p3_weights *w, st_dtype dtype, mutation mut) {
        _cleanup_(st_writer_freep) st_writer *sw = NULL;
        CHECK_OK(st_writer_new(&sw));
        _cleanup_free_ uint16_t *conv = malloc(w->total_params * sizeof(uint16_t));
        CHECK(conv);
        uint16_t *c = conv;
        for (size_t i = 0; i < w->n; i++) {
                const p3_weight_spec *s = &w->specs[i];
                bool is_victim = strcmp(s->name, victim) == 0;
                int64_t shape[5];
                memcpy(shape, s->shape, sizeof(shape));
                const void *data = w->data[i];
                st_dtype dt = dtype;
                if (dtype != ST_F32) {
                        for (int64_t k = 0; k < s->numel; k++)
                                c[k] = dtype == ST_F16 ? p3_float_to_half(w->data[i][k])
                                                       : (uint16_t) (fbits(w->data[i][k]) >> 16);
                        data = c;
                        c += s->numel;
                }
                if (is_victim && mut == MUT_MISSING)
                        continue;
                if (is_victim && mut == MUT_SHAPE) {
                        shape[0] = s->shape[1];
                        shape[1] = s->shape[0];
                }
                if (is_victim && mut == MUT_I32)
                        dt = ST_I32;
                char full[128];
                snprintf(full, sizeof(full), "%s%s", mut == MUT_DIT ? "dit." : "", s->name);
                CHECK_OK(st_writer_add(sw, full, dt, s->ndim, shape, data));
                if (is_victim && mut == MUT_DIT_DUP) {
                        snprintf(full, sizeof(full), "dit.%s", s->name);
                        CHECK_OK(st_writer_add(sw, full, dt, s->ndim, shape, data));
                }
        }
        if (mut == MUT_EXTRA)
                CHECK_OK(st_writer_add(sw, "sonata.enc.enc1.block0.ls1.gamma", ST_F32, 1, (int64_t[]) { 2 },
                                       w->data[0]));
        char *p = tmp_path(name);
        CHECK_OK(st_writer_write_file(sw, p, NULL));
        return p;
}

static void expect_load_error(const char *name, const p3_config *cfg, const p3_weights *syn, st_dtype dt,
                              mutation mut, const char *word) {
        _cleanup_free_ char *p = write_ckpt(name, syn, dt, mut);
        p3_weights *w = NULL;
        p3_err err = {};
        int r = p3_weights_load(p, cfg, &w, &err);
        expect_error(name, r, &err, name, word);
        CHECK(w == NULL);
}

static void test_weights_load(void) {
        p3_config cfg;
        p3_err err = {};
        int r = p3_config_parse(small_config, "small.json", &cfg, &err);
        if (r < 0) {
                fprintf(stderr, "%s\n", err.msg);
                exit(EXIT_FAILURE);
        }
        CHECK(cfg.num_stages == 2 && cfg.concat_width == 48 && cfg.patch_size[1] == 48);

        _cleanup_(p3_weights_freep) p3_weights *syn = NULL;
        CHECK_OK(p3_weights_synth(&cfg, &syn, NULL));
        CHECK(syn->n == 5 + 2 * 18 + 4 + 60);

        /* F32: used in place from the mapping */
        _cleanup_free_ char *p = write_ckpt("w-f32.st", syn, ST_F32, MUT_NONE);
        _cleanup_(p3_weights_freep) p3_weights *w = NULL;
        CHECK_OK(p3_weights_load(p, &cfg, &w, &err));
        CHECK(w->owned == NULL && w->n == syn->n && w->total_params == syn->total_params);
        for (size_t i = 0; i < w->n; i++)
                CHECK(memcmp(w->data[i], syn->data[i], w->specs[i].numel * sizeof(float)) == 0);
        CHECK(p3_weights_get(w, victim) && p3_weights_spec(w, victim)->shape[0] == 96);
        CHECK(p3_weights_index(w, "dit.mlp.0.weight") == -ENOENT);

        /* a "dit." prefix is stripped */
        _cleanup_free_ char *pd = write_ckpt("w-dit.st", syn, ST_F32, MUT_DIT);
        _cleanup_(p3_weights_freep) p3_weights *wd = NULL;
        CHECK_OK(p3_weights_load(pd, &cfg, &wd, &err));
        CHECK(memcmp(p3_weights_get(wd, "iou_mlp_out.4.bias"), p3_weights_get(syn, "iou_mlp_out.4.bias"),
                     3 * sizeof(float)) == 0);

        /* F16 and BF16 are converted */
        _cleanup_free_ char *ph = write_ckpt("w-f16.st", syn, ST_F16, MUT_NONE);
        _cleanup_(p3_weights_freep) p3_weights *wh = NULL;
        CHECK_OK(p3_weights_load(ph, &cfg, &wh, &err));
        CHECK(wh->owned != NULL);
        for (size_t i = 0; i < wh->n; i++)
                for (int64_t k = 0; k < wh->specs[i].numel; k++)
                        CHECK(wh->data[i][k] == p3_half_to_float(p3_float_to_half(syn->data[i][k])));
        _cleanup_free_ char *pb = write_ckpt("w-bf16.st", syn, ST_BF16, MUT_NONE);
        _cleanup_(p3_weights_freep) p3_weights *wb = NULL;
        CHECK_OK(p3_weights_load(pb, &cfg, &wb, &err));
        const float *x = p3_weights_get(wb, "mlp.0.weight"), *y = p3_weights_get(syn, "mlp.0.weight");
        CHECK(fbits(x[7]) == (fbits(y[7]) & 0xffff0000u));
        printf("weights: F32 zero-copy, dit. prefix, F16 and BF16 load\n");

        printf("bad checkpoints:\n");
        expect_load_error("w-missing.st", &cfg, syn, ST_F32, MUT_MISSING, "missing");
        expect_load_error("w-missing2.st", &cfg, syn, ST_F32, MUT_MISSING, victim);
        expect_load_error("w-extra.st", &cfg, syn, ST_F32, MUT_EXTRA, "ls1.gamma");
        expect_load_error("w-shape.st", &cfg, syn, ST_F32, MUT_SHAPE, "[32, 96]");
        expect_load_error("w-shape2.st", &cfg, syn, ST_F16, MUT_SHAPE, victim);
        expect_load_error("w-dup.st", &cfg, syn, ST_F32, MUT_DIT_DUP, "twice");
        expect_load_error("w-i32.st", &cfg, syn, ST_F32, MUT_I32, "dtype");

        /* the right file for the wrong config */
        p3_config other = cfg;
        other.mask_token = false;
        p3_weights *wo = NULL;
        err = (p3_err) {};
        expect_error("w-f32.st vs no mask_token", p3_weights_load(p, &other, &wo, &err), &err, "w-f32.st",
                     "mask_token");
        err = (p3_err) {};
        _cleanup_free_ char *nf = tmp_path("no-such.st");
        expect_error("no-such.st", p3_weights_load(nf, &cfg, &wo, &err), &err, "no-such.st", "cannot open");
}

/* ---- snapshots: the served copy must not depend on the file's pages ------------------------ */

/* s holds w's values bit for bit, all inside its own block, nothing in a mapping. */
static void check_snapshot(const p3_weights *s, const p3_weights *w) {
        CHECK(s && s != w && s->file == NULL && s->owned);
        CHECK(s->n == w->n && s->total_params == w->total_params);
        CHECK(p3_weights_synthetic(s) == p3_weights_synthetic(w));
        CHECK(memcmp(&s->origin, &w->origin, sizeof(s->origin)) == 0);
        const float *o = s->owned;
        for (size_t i = 0; i < w->n; i++) {
                size_t nbytes = (size_t) w->specs[i].numel * sizeof(float);
                CHECK(s->data[i] == o && strcmp(s->specs[i].name, w->specs[i].name) == 0);
                CHECK(memcmp(s->data[i], w->data[i], nbytes) == 0);
                CHECK(p3_weights_get(s, w->specs[i].name) == s->data[i]);
                o += w->specs[i].numel;
        }
}

/* Every value of s against ref (bit for bit), reading all of s: a page s still borrowed from
 * a truncated file would stop the test with SIGBUS here. */
static void check_values(const p3_weights *s, const p3_weights *ref) {
        for (size_t i = 0; i < ref->n; i++)
                for (int64_t k = 0; k < ref->specs[i].numel; k++)
                        CHECK(fbits(s->data[i][k]) == fbits(ref->data[i][k]));
}

static ino_t inode_of(const char *path) {
        struct stat st;
        CHECK(stat(path, &st) == 0);
        return st.st_ino;
}

/* What `cp other path` does to path: truncate the same inode, then write size bytes (here all
 * equal to byte). mtime is then pushed a second past its old value, so that the change shows
 * even where the clock ticks slower than the test runs. */
static void overwrite_in_place(const char *path, size_t size, uint8_t byte) {
        ino_t ino = inode_of(path);
        struct stat before;
        CHECK(stat(path, &before) == 0);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        CHECK(fd >= 0);
        _cleanup_free_ uint8_t *buf = malloc(MAX(size, (size_t) 1));
        CHECK(buf);
        memset(buf, byte, size);
        CHECK(write(fd, buf, size) == (ssize_t) size);
        struct timespec t[2] = { { .tv_nsec = UTIME_OMIT }, before.st_mtim };
        t[1].tv_sec++;
        CHECK(futimens(fd, t) == 0);
        CHECK(inode_of(path) == ino);
}

static void expect_stale(const char *what, const p3_weights *w, const char *file) {
        p3_weights *s = NULL;
        p3_err err = {};
        int r = p3_weights_snapshot(w, &s, &err);
        CHECK(r == -ESTALE && s == NULL);
        expect_error(what, r, &err, file, "changed on disk");
}

/* Snapshots equal their source: F32 (read from the file), F16 (converted copies), weights
 * written by the synthetic recipe (the flag follows), in-memory weights, a snapshot of a
 * snapshot; and a snapshot outlives its source. */
static void test_snapshot_equal(const p3_config *cfg, const p3_weights *syn) {
        p3_err err = {};
        const st_dtype dtypes[] = { ST_F32, ST_F16, ST_BF16 };
        for (size_t d = 0; d < ELEMENTSOF(dtypes); d++) {
                char name[32];
                snprintf(name, sizeof(name), "snap-%s.st", st_dtype_name(dtypes[d]));
                _cleanup_free_ char *p = write_ckpt(name, syn, dtypes[d], MUT_NONE);
                p3_weights *w = NULL, *s = NULL;
                CHECK_OK(p3_weights_load(p, cfg, &w, &err));
                CHECK(!p3_weights_synthetic(w) && w->origin.ino == inode_of(p));
                CHECK_OK(p3_weights_snapshot(w, &s, &err));
                check_snapshot(s, w);
                _cleanup_(p3_weights_freep) p3_weights *s2 = NULL;
                CHECK_OK(p3_weights_snapshot(s, &s2, &err));
                check_snapshot(s2, w);
                p3_weights_free(w); /* the snapshot is on its own */
                check_snapshot(s2, s);
                p3_weights_free(s);
        }

        _cleanup_free_ char *ps = tmp_path("snap-recipe.st");
        CHECK_OK(p3_synth_write(cfg, ps, ST_F32, 1.0, &err));
        _cleanup_(p3_weights_freep) p3_weights *w = NULL, *s = NULL, *m = NULL;
        CHECK_OK(p3_weights_load(ps, cfg, &w, &err));
        CHECK(p3_weights_synthetic(w) && w->owned == NULL);
        CHECK_OK(p3_weights_snapshot(w, &s, &err));
        check_snapshot(s, w);
        CHECK(p3_weights_synthetic(s));

        CHECK_OK(p3_weights_snapshot(syn, &m, &err));
        check_snapshot(m, syn);
        printf("snapshots: F32, F16, BF16, recipe file, in memory, of a snapshot: bit-identical\n");
}

/* cp over the file after the snapshot: the snapshot keeps the old values, through a moment
 * when the file is empty (SIGBUS for a borrowed page) and after new bytes are in. */
static void test_snapshot_survives_rewrite(const p3_config *cfg, const p3_weights *syn) {
        p3_err err = {};
        _cleanup_free_ char *p = write_ckpt("snap-cp.st", syn, ST_F32, MUT_NONE);
        _cleanup_(p3_weights_freep) p3_weights *w = NULL, *s = NULL;
        CHECK_OK(p3_weights_load(p, cfg, &w, &err));
        CHECK(w->owned == NULL); /* zero-copy: the source does borrow the file's pages */
        size_t size = w->file->size;
        CHECK_OK(p3_weights_snapshot(w, &s, &err));

        CHECK(truncate(p, 0) == 0);
        check_values(s, syn);
        overwrite_in_place(p, size, 0x7f);
        check_values(s, syn);
        /* the hazard is real: the source's mapping now shows the new bytes */
        const float *x = p3_weights_get(w, victim);
        CHECK(fbits(x[0]) == 0x7f7f7f7fu);
        CHECK(fbits(p3_weights_get(s, victim)[0]) == fbits(p3_weights_get(syn, victim)[0]));

        st_identity now;
        CHECK_OK(st_identity_of_path(p, &now));
        CHECK(!st_identity_equal(&now, &s->origin) && now.ino == s->origin.ino);
        CHECK(st_identity_equal(&s->origin, &w->origin));
        printf("snapshot: truncate to 0 and rewrite in place after it: old values, no SIGBUS\n");
}

/* A file changed between open and snapshot: no snapshot, and no SIGBUS on the way. */
static void test_snapshot_stale(const p3_config *cfg, const p3_weights *syn) {
        printf("stale files:\n");
        p3_err err = {};
        _cleanup_free_ char *pt = write_ckpt("snap-truncated.st", syn, ST_F32, MUT_NONE);
        _cleanup_(p3_weights_freep) p3_weights *wt = NULL;
        CHECK_OK(p3_weights_load(pt, cfg, &wt, &err));
        CHECK(truncate(pt, 0) == 0);
        expect_stale("snap-truncated.st", wt, "snap-truncated.st");

        _cleanup_free_ char *ph = write_ckpt("snap-truncated-f16.st", syn, ST_F16, MUT_NONE);
        _cleanup_(p3_weights_freep) p3_weights *wh = NULL;
        CHECK_OK(p3_weights_load(ph, cfg, &wh, &err));
        CHECK(truncate(ph, (off_t) wh->file->size / 2) == 0);
        expect_stale("snap-truncated-f16.st", wh, "snap-truncated-f16.st");

        _cleanup_free_ char *pm = write_ckpt("snap-mtime.st", syn, ST_F32, MUT_NONE);
        _cleanup_(p3_weights_freep) p3_weights *wm = NULL;
        CHECK_OK(p3_weights_load(pm, cfg, &wm, &err));
        overwrite_in_place(pm, wm->file->size, 0x7f);
        expect_stale("snap-mtime.st (same size)", wm, "snap-mtime.st");

        /* the short read itself, for a rewrite that lands between the checks and the reads */
        _cleanup_free_ char *pr = write_ckpt("snap-read.st", syn, ST_F32, MUT_NONE);
        _cleanup_(st_closep) st_file *f = test_open(pr);
        float v[4];
        CHECK_OK(st_check_unchanged(f, NULL));
        CHECK_OK(st_read(f, f->size - sizeof(v), v, sizeof(v), NULL));
        CHECK(st_read(f, f->size - 2, v, sizeof(v), NULL) == -EINVAL);
        CHECK(truncate(pr, (off_t) f->size - 2) == 0);
        err = (p3_err) {};
        expect_error("snap-read.st (short read)", st_read(f, f->size - sizeof(v), v, sizeof(v), &err), &err,
                     "snap-read.st", "changed on disk");
        CHECK(st_check_unchanged(f, NULL) == -ESTALE);

        /* buffers have no file behind them */
        _cleanup_(st_closep) st_file *b = NULL;
        _cleanup_free_ char *copy = malloc(f->size);
        CHECK(copy && pread(f->fd, copy, f->size - 2, 0) == (ssize_t) f->size - 2);
        CHECK_OK(st_open_buffer(copy, f->size, "mem", &b, NULL));
        CHECK(b->fd == -1 && st_check_unchanged(b, NULL) == 0 && st_read(b, 0, v, 4, NULL) == -EBADF);
}

static void test_snapshots(void) {
        p3_config cfg;
        CHECK_OK(p3_config_parse(small_config, "small.json", &cfg, NULL));
        _cleanup_(p3_weights_freep) p3_weights *syn = NULL;
        CHECK_OK(p3_weights_synth(&cfg, &syn, NULL));
        test_snapshot_equal(&cfg, syn);
        test_snapshot_survives_rewrite(&cfg, syn);
        test_snapshot_stale(&cfg, syn);
}

/* ---- configs ------------------------------------------------------------------------------ */

static void bad_config(const char *what, const char *json, const char *word) {
        p3_config cfg;
        p3_err err = {};
        int r = p3_config_parse(json, "cfg.json", &cfg, &err);
        expect_error(what, r, &err, "cfg.json", word);
}

static void test_configs(void) {
        p3_config cfg, def;
        p3_config_default(&def);
        CHECK(def.in_channels == 9 && def.num_stages == 5 && def.concat_width == 1232);
        CHECK(def.depths[3] == 12 && def.channels[4] == 512 && def.num_heads[4] == 32 && def.patch_size[0] == 1024);
        CHECK(def.num_orders == 4 && def.orders[3] == P3_ORDER_HILBERT_TRANS && def.shuffle_orders && def.mask_token);
        CHECK(strcmp(p3_order_name(P3_ORDER_Z_TRANS), "z-trans") == 0);

        /* a bare object, defaults for what it leaves out */
        CHECK_OK(p3_config_parse("{\"mask_token\": false, \"order\": [\"hilbert\"], \"mlp_ratio\": 4.0}", "x",
                                 &cfg, NULL));
        CHECK(!cfg.mask_token && cfg.num_orders == 1 && cfg.orders[0] == P3_ORDER_HILBERT && cfg.num_stages == 5 &&
              cfg.concat_width == 1232);

        printf("bad configs:\n");
        bad_config("enable_rpe", "{\"sonata\": {\"enable_rpe\": true}}", "enable_rpe");
        bad_config("pre_norm", "{\"sonata\": {\"pre_norm\": false}}", "pre_norm");
        bad_config("enc_mode", "{\"enc_mode\": false}", "enc_mode");
        bad_config("qkv_bias", "{\"qkv_bias\": false}", "qkv_bias");
        bad_config("qk_scale", "{\"qk_scale\": 0.5}", "qk_scale");
        bad_config("layer_scale", "{\"layer_scale\": 1e-5}", "layer_scale");
        bad_config("bool type", "{\"shuffle_orders\": 1}", "shuffle_orders");
        bad_config("head dim", "{\"enc_num_head\": [3, 6, 12, 24, 16]}", "enc_num_head");
        bad_config("stride", "{\"stride\": [2, 2, 4, 2]}", "stride");
        bad_config("stride count", "{\"stride\": [2, 2, 2]}", "stride");
        bad_config("in_channels", "{\"in_channels\": 6}", "in_channels");
        bad_config("order name", "{\"order\": [\"z\", \"morton\"]}", "morton");
        bad_config("order count", "{\"order\": [\"z\", \"z\", \"z\", \"z\", \"z\"]}", "order");
        bad_config("stages", "{\"enc_depths\": [1,1,1,1,1,1,1,1,1]}", "enc_depths");
        bad_config("lengths", "{\"enc_depths\": [1, 1], \"enc_channels\": [16, 16, 16]}", "enc_channels");
        bad_config("negative", "{\"enc_depths\": [1, -1, 1, 1, 1]}", "enc_depths");
        bad_config("array type", "{\"enc_patch_size\": 1024}", "enc_patch_size");
        bad_config("mlp_ratio", "{\"mlp_ratio\": 2.5}", "mlp_ratio");
        bad_config("concat_width", "{\"sonata\": {}, \"concat_width\": 160}", "concat_width");
        bad_config("not json", "{\"sonata\": {", "parse");
        bad_config("not object", "[1]", "object");
        bad_config("sonata type", "{\"sonata\": 3}", "sonata");

        p3_err err = {};
        _cleanup_free_ char *nf = tmp_path("nope.json");
        expect_error("nope.json", p3_config_load(nf, &cfg, &err), &err, "nope.json", "cannot open");

        _cleanup_free_ char *tiny = test_shared_path("golden/tiny/config.json");
        if (tiny) {
                CHECK_OK(p3_config_load(tiny, &cfg, NULL));
                CHECK(cfg.concat_width == 160 && cfg.depths[3] == 2 && cfg.patch_size[4] == 48);
                printf("golden/tiny/config.json loads\n");
        }
}

int main(void) {
        CHECK(mkdtemp(tmpdir));

        test_half();
        test_round_trip();
        test_bad_files();
        test_weights_load();
        test_snapshots();
        test_configs();
        printf("%d refusals checked\n", n_checks);

        _cleanup_free_ char *cmd = NULL;
        CHECK(asprintf(&cmd, "rm -rf '%s'", tmpdir) > 0);
        CHECK(system(cmd) == 0);
        return 0;
}
