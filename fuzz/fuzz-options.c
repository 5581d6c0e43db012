/* SPDX-License-Identifier: MIT */
/* The decoding of Segment(h s h s a{sv}) and Predict(h s a(ddd) h a{sv}) calls: mesh and
 * output formats, the prompt points and the a{sv} options, type-checked and range-checked
 * against the configuration (manager-bus.c's parse_request and its helpers, static there, so
 * this file includes manager-bus.c). The fuzz bytes are a little program that builds the call
 * message: known keys with the right or a wrong type, unknown keys, repeated keys, strings,
 * doubles (NaN, infinities) and descriptors (the same file twice, or distinct ones); a call
 * must then decode to a job whose values are within the documented limits, or be refused
 * with an error that says why. */
#include "../daemon/manager-bus.c"

#include <stdlib.h>
#include <sys/socket.h>

#include "fuzz-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct reader {
        const uint8_t *p;
        size_t left;
} reader;

static uint8_t get_u8(reader *r) {
        if (!r->left)
                return 0;
        r->left--;
        return *r->p++;
}

static void get_bytes(reader *r, void *dst, size_t n) {
        memset(dst, 0, n);
        n = MIN(n, r->left);
        memcpy(dst, r->p, n);
        r->p += n;
        r->left -= n;
}

/* A string: one of the words the decoder knows, or up to 15 bytes of input. */
static void get_string(reader *r, char buf[16]) {
        static const char *const words[] = { "", "glb", "gltf", "obj", "ply", "stl", "off",
                                             "json", "fp32", "fp16", "bf16", "auto", "GLB",
                                             "png", "face-ids", "aabb", "aabb-glb" };
        uint8_t b = get_u8(r);
        if (b < 2 * ELEMENTSOF(words)) {
                snprintf(buf, 16, "%s", words[b % ELEMENTSOF(words)]);
                return;
        }
        size_t n = MIN((size_t) (b % 16), r->left);
        get_bytes(r, buf, n);
        buf[n] = 0;
}

static int fds[3] = { -1, -1, -1 }; /* two memfds, and the first again under another number */

/* a(hs): descriptors (distinct, or the mesh again) with format names. */
static int append_outputs(sd_bus_message *m, reader *r) {
        uint8_t b = get_u8(r);
        int n = b == 255 ? 17 : b % 4;
        char s[16];
        int r_ = sd_bus_message_open_container(m, 'v', "a(hs)");
        if (r_ >= 0)
                r_ = sd_bus_message_open_container(m, 'a', "(hs)");
        for (int i = 0; r_ >= 0 && i < n; i++) {
                int fd = fds[get_u8(r) % 3];
                get_string(r, s);
                r_ = sd_bus_message_append(m, "(hs)", fd, s);
        }
        if (r_ >= 0)
                r_ = sd_bus_message_close_container(m);
        return r_ < 0 ? r_ : sd_bus_message_close_container(m);
}

static int append_value(sd_bus_message *m, reader *r, char type) {
        uint64_t t;
        double d;
        char s[16];
        switch (type) {
        case 'u':
                get_bytes(r, &t, 4);
                return sd_bus_message_append(m, "v", "u", (uint32_t) t);
        case 't':
                get_bytes(r, &t, 8);
                return sd_bus_message_append(m, "v", "t", t);
        case 'b':
                return sd_bus_message_append(m, "v", "b", get_u8(r) & 1);
        case 'd':
                get_bytes(r, &d, 8);
                return sd_bus_message_append(m, "v", "d", d);
        case 'h':
                return sd_bus_message_append(m, "v", "h", fds[get_u8(r) % 3]);
        case 'i':
                get_bytes(r, &t, 4);
                return sd_bus_message_append(m, "v", "i", (int32_t) t);
        case 'a': /* "outputs": now and then past the 16 descriptors of a message */
                return append_outputs(m, r);
        default:
                get_string(r, s);
                return sd_bus_message_append(m, "v", "s", s);
        }
}

static int append_options(sd_bus_message *m, reader *r) {
        static const char types[] = "utbdhisa";
        int r_ = sd_bus_message_open_container(m, 'a', "{sv}");
        for (int n = get_u8(r) % 12; r_ >= 0 && n > 0; n--) {
                uint8_t k = get_u8(r);
                size_t known = k % ELEMENTSOF(known_options);
                char key[16];
                if (k < 4 * ELEMENTSOF(known_options))
                        snprintf(key, sizeof(key), "%s", known_options[known].key);
                else
                        get_string(r, key);
                /* Mostly the right type, so that the values themselves get exercised. */
                uint8_t ty = get_u8(r);
                char type = ty < 192 && k < 4 * ELEMENTSOF(known_options) ?
                                    known_options[known].sig[0] :
                                    types[ty % (sizeof(types) - 1)];
                r_ = sd_bus_message_open_container(m, 'e', "sv");
                if (r_ >= 0)
                        r_ = sd_bus_message_append(m, "s", key);
                if (r_ >= 0)
                        r_ = append_value(m, r, type);
                if (r_ >= 0)
                        r_ = sd_bus_message_close_container(m);
        }
        return r_ < 0 ? r_ : sd_bus_message_close_container(m);
}

static int append_prompts(sd_bus_message *m, reader *r) {
        int r_ = sd_bus_message_open_container(m, 'a', "(ddd)");
        uint8_t b = get_u8(r);
        int n = b == 255 ? 4097 : b % 8; /* now and then past the 4096 limit */
        for (int i = 0; r_ >= 0 && i < n; i++) {
                double x[3];
                get_bytes(r, x, sizeof(x));
                r_ = sd_bus_message_append(m, "(ddd)", x[0], x[1], x[2]);
        }
        return r_ < 0 ? r_ : sd_bus_message_close_container(m);
}

static int build_call(sd_bus *bus, reader *r, job_kind kind, sd_bus_message **ret) {
        sd_bus_message *m = NULL;
        char mesh_format[16], out_format[16];
        int r_ = sd_bus_message_new_method_call(bus, &m, "org.p3sam.Segmenter1",
                                                "/org/p3sam/Segmenter1", "org.p3sam.Segmenter1",
                                                kind == JOB_PREDICT ? "Predict" : "Segment");
        if (r_ < 0)
                return r_;
        get_string(r, mesh_format);
        r_ = sd_bus_message_append(m, "hs", fds[get_u8(r) % 3], mesh_format);
        if (r_ >= 0 && kind == JOB_PREDICT)
                r_ = append_prompts(m, r);
        if (r_ >= 0)
                r_ = sd_bus_message_append(m, "h", fds[get_u8(r) % 3]);
        if (r_ >= 0 && kind == JOB_SEGMENT) {
                get_string(r, out_format);
                r_ = sd_bus_message_append(m, "s", out_format);
        }
        if (r_ >= 0)
                r_ = append_options(m, r);
        if (r_ >= 0)
                r_ = sd_bus_message_seal(m, 1, 0);
        if (r_ < 0) {
                sd_bus_message_unref(m);
                return r_;
        }
        *ret = m;
        return 0;
}

/* What a decoded job promises the rest of the daemon. */
static void check_job(const manager *m, const job *j) {
        const p3_pipeline_params *p = &j->params;
        if (p->points < P3_POINTS_MIN || p->points > m->conf.max_points)
                abort();
        if (p->prompts < 1 || p->prompts > m->conf.max_prompts || p->prompts > p->points)
                abort();
        if (p->prompt_batch < 0 || p->prompt_batch > P3_PROMPT_BATCH_MAX) /* 0: auto */
                abort();
        if (!(p->threshold > 0 && p->threshold <= 1))
                abort();
        if (j->kind == JOB_PREDICT && (j->k < 1 || j->k > 4096))
                abort();
        for (int i = 0; j->kind == JOB_PREDICT && i < 3 * j->k; i++)
                if (!isfinite(j->prompts[i]))
                        abort();
        if (j->mesh_fd < 0 || j->out_fd < 0)
                abort();
        if (j->n_outputs < 0 || 2 + j->n_outputs + (j->report_fd >= 0) > JOB_MAX_FDS)
                abort();
        for (int i = 0; i < j->n_outputs; i++)
                if (j->outputs[i].fd < 0 || !p3_out_format_name(j->outputs[i].format))
                        abort();
        if (!p3_out_format_name(p3_out_format_from_name(j->out_format)))
                abort();
}

static sd_bus *fuzz_bus(void) {
        static sd_bus *bus;
        int sv[2];
        if (bus)
                return bus;
        /* A bus that never runs: messages can be built (with descriptors) on a bus being
         * authenticated, and nothing reads the other end. */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0 ||
            sd_bus_new(&bus) < 0 || sd_bus_set_fd(bus, sv[0], sv[0]) < 0 ||
            sd_bus_start(bus) < 0)
                abort();
        fds[0] = fuzz_memfd((const uint8_t *) "mesh", 4);
        fds[1] = fuzz_memfd((const uint8_t *) "out", 3);
        fds[2] = dup(fds[0]);
        if (fds[0] < 0 || fds[1] < 0 || fds[2] < 0)
                abort();
        return bus;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static manager man;
        sd_bus *bus = fuzz_bus();
        if (!man.conf.model_path) {
                log_set_max_level(LOG_ERR);
                daemon_conf_init(&man.conf);
                snprintf(man.status.backend, sizeof(man.status.backend), "cpu");
        }
        reader r = { data, size };
        job_kind kind = get_u8(&r) & 1 ? JOB_PREDICT : JOB_SEGMENT;
        sd_bus_message *call = NULL;
        if (build_call(bus, &r, kind, &call) < 0)
                return 0;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        job *j = NULL;
        int ret = parse_request(&man, call, kind, &j, &error);
        if (ret >= 0) {
                check_job(&man, j);
                job_free(j);
        } else if (sd_bus_error_is_set(&error) && !error.message)
                abort();
        sd_bus_error_free(&error);
        sd_bus_message_unref(call);
        return 0;
}
