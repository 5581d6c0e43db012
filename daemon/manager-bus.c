/* SPDX-License-Identifier: MIT */
/* The org.p3sam.Segmenter1 interface: methods, properties, signals, and the connection that
 * carries them. Privileged methods begin with an asynchronous authorization (bus-polkit.c);
 * the request is parsed and checked first, so a malformed call is refused without a polkit
 * round trip. */
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bus-polkit.h"
#include "bus-util.h"
#include "introspect.h"
#include "job-run.h"
#include "manager.h"
#include "parse-util.h"

/* ---- properties ---- */

#define GETTER(name)                                                                          \
        static int property_get_##name(sd_bus *bus, const char *path, const char *interface,  \
                                       const char *property, sd_bus_message *reply,           \
                                       void *userdata, sd_bus_error *error)

GETTER(state) {
        manager *m = userdata;
        return sd_bus_message_append(reply, "s", model_state_to_string(m->status.state));
}

GETTER(backend) {
        manager *m = userdata;
        return sd_bus_message_append(reply, "s", m->status.backend[0] ? m->status.backend : "cpu");
}

GETTER(device) {
        manager *m = userdata;
        return sd_bus_message_append(reply, "s", m->status.device);
}

GETTER(gpu_bytes) {
        manager *m = userdata;
        return sd_bus_message_append(reply, "t", m->status.gpu_bytes);
}

GETTER(peak_gpu_bytes) {
        manager *m = userdata;
        return sd_bus_message_append(reply, "t", m->status.peak_gpu_bytes);
}

GETTER(model_bytes) {
        manager *m = userdata;
        return sd_bus_message_append(reply, "t", m->status.model_bytes);
}

GETTER(peak_model_bytes) {
        manager *m = userdata;
        return sd_bus_message_append(reply, "t", m->status.peak_model_bytes);
}

GETTER(host_bytes) {
        return sd_bus_message_append(reply, "t", (uint64_t) residency_host_bytes());
}

GETTER(queue_length) {
        manager *m = userdata;
        return sd_bus_message_append(reply, "u", manager_queue_length(m));
}

GETTER(model_path) {
        manager *m = userdata;
        return sd_bus_message_append(reply, "s", m->conf.model_path ? m->conf.model_path : "");
}

GETTER(model_synthetic) {
        manager *m = userdata;
        return sd_bus_message_append(reply, "b", m->status.synthetic);
}

GETTER(version) {
        return sd_bus_message_append(reply, "s", P3_VERSION);
}

GETTER(idle_timeout) {
        manager *m = userdata;
        return sd_bus_message_append(reply, "t", m->idle_timeout_usec);
}

/* A property's reply cannot wait for polkit in sd-bus: the setter is for root (the caller's
 * credentials come from the cache or one round trip to the bus daemon), and everyone else
 * uses SetIdleTimeout(), which asks polkit asynchronously. */
static int property_set_idle_timeout(sd_bus *bus, const char *path, const char *interface,
                                     const char *property, sd_bus_message *value, void *userdata,
                                     sd_bus_error *error) {
        manager *m = userdata;
        uint64_t usec;
        uid_t uid;
        int r = sd_bus_message_read(value, "t", &usec);
        if (r < 0)
                return r;
        r = bus_sender_uid(value, &uid);
        if (r < 0)
                return r;
        if (uid != 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED,
                                        "Only root may set IdleTimeoutUSec; others call "
                                        "SetIdleTimeout(), which needs the polkit action "
                                        "org.p3sam.manage.");
        manager_set_idle_timeout(m, usec);
        return 1;
}

/* ---- requests ---- */

/* A Segment or Predict call between its arrival and its admission. The call is authorized
 * before anything in it is read: a caller who may not segment costs no descriptor and no
 * allocation beyond this. */
typedef struct request {
        manager *m;
        sd_bus_message *call;
        job_kind kind;
} request;

static void request_free(request *q) {
        if (!q)
                return;
        sd_bus_message_unref(q->call);
        free(q);
}

static int dup_fd(int fd) {
        return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

static bool format_known(const char *f, const char *const *list) {
        for (; *list; list++)
                if (strcmp(f, *list) == 0)
                        return true;
        return false;
}

/* org.freedesktop.DBus.Error.InvalidArgs with our sentence naming the argument. */
static int invalid(sd_bus_error *error, const char *fmt, ...) _printf_(2, 3);
static int invalid(sd_bus_error *error, const char *fmt, ...) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, msg);
}

static const struct {
        const char *key, *sig;
} known_options[] = {
        { "points", "u" }, { "prompts", "u" },      { "prompt_batch", "u" },
        { "seed", "t" },   { "post_process", "b" }, { "threshold", "d" },
        { "report", "h" }, { "detach", "b" },      { "precision", "s" },
        { "outputs", "a(hs)" }, { "png_size", "u" }, { "png_boxes", "b" },
};

/* "outputs": more outputs of the job, each a descriptor and a format name. Descriptors past
 * what the bus could pass are counted, not kept: the call is refused for them anyway. */
static int read_outputs(sd_bus_message *call, job *j, int *given, sd_bus_error *error) {
        int r = sd_bus_message_enter_container(call, 'a', "(hs)");
        int fd;
        const char *format;
        while (r >= 0 && (r = sd_bus_message_read(call, "(hs)", &fd, &format)) > 0) {
                p3_out_format f = p3_out_format_from_name(format);
                if (f == P3_OUT_INVALID)
                        return invalid(error, "Unknown format \"%s\" in option \"outputs\": use "
                                              "glb, ply, json, png, face-ids, aabb or aabb-glb.",
                                       format);
                if ((*given)++ >= (int) ELEMENTSOF(j->outputs))
                        continue;
                job_output *o = &j->outputs[j->n_outputs];
                o->format = f;
                o->fd = dup_fd(fd);
                if (o->fd < 0)
                        return -errno;
                j->n_outputs++;
        }
        return r < 0 ? r : sd_bus_message_exit_container(call);
}

/* One option of the a{sv} dictionary, type-checked against the expected signature. seen: a
 * bit per known option, so that a key given twice is refused (a second "report" would
 * otherwise replace the first descriptor). */
static int read_option(sd_bus_message *call, job *j, const daemon_conf *c, unsigned *seen,
                       int *outputs, sd_bus_error *error) {
        const char *key, *contents;
        char type;
        int r = sd_bus_message_read(call, "s", &key);
        if (r < 0)
                return r;
        r = sd_bus_message_peek_type(call, &type, &contents);
        if (r < 0)
                return r;
        const char *want = NULL;
        for (size_t i = 0; i < ELEMENTSOF(known_options); i++)
                if (strcmp(key, known_options[i].key) == 0) {
                        if (*seen & (1u << i))
                                return invalid(error, "Option \"%s\" is given twice.", key);
                        *seen |= 1u << i;
                        want = known_options[i].sig;
                }
        if (!want)
                return invalid(error, "Unknown option \"%s\".", key);
        if (strcmp(contents, want) != 0)
                return invalid(error, "Option \"%s\" must have type \"%s\", not \"%s\".", key,
                               want, contents);
        r = sd_bus_message_enter_container(call, 'v', want);
        if (r < 0)
                return r;
        uint32_t u;
        uint64_t t;
        int b, fd;
        double d;
        p3_pipeline_params *p = &j->params;
        switch (want[0]) {
        case 'u':
                r = sd_bus_message_read(call, "u", &u);
                if (r < 0)
                        return r;
                if (strcmp(key, "points") == 0) {
                        if (u < P3_POINTS_MIN || u > c->max_points)
                                return invalid(error, "Option \"points\" must be between %d and %lld.",
                                               P3_POINTS_MIN, (long long) c->max_points);
                        p->points = u;
                } else if (strcmp(key, "png_size") == 0) {
                        if (u < P3_RENDER_MIN_SIZE || u > P3_RENDER_MAX_SIZE)
                                return invalid(error, "Option \"png_size\" must be between %d "
                                                      "and %d.", P3_RENDER_MIN_SIZE,
                                               P3_RENDER_MAX_SIZE);
                        j->png.size = (int) u;
                } else if (strcmp(key, "prompts") == 0) {
                        if (u < 1 || u > (uint32_t) c->max_prompts)
                                return invalid(error, "Option \"prompts\" must be between 1 and %d.",
                                               c->max_prompts);
                        p->prompts = (int) u;
                } else { /* 0: auto, the engine's choice */
                        if (u > P3_PROMPT_BATCH_MAX)
                                return invalid(error, "Option \"prompt_batch\" must be between 1 and %d, "
                                               "or 0 for auto.", P3_PROMPT_BATCH_MAX);
                        p->prompt_batch = (int) u;
                }
                break;
        case 't':
                r = sd_bus_message_read(call, "t", &t);
                p->seed = t;
                break;
        case 's': {
                const char *str;
                r = sd_bus_message_read(call, "s", &str);
                if (r >= 0 && p3_precision_from_string(str, &j->precision) < 0)
                        return invalid(error, "Option \"precision\" must be auto, fp32, bf16 or fp16, not \"%s\".",
                                       str);
                j->has_precision = true;
                break;
        }
        case 'b':
                r = sd_bus_message_read(call, "b", &b);
                if (strcmp(key, "detach") == 0)
                        j->detached = b;
                else if (strcmp(key, "png_boxes") == 0)
                        j->png.boxes = b;
                else
                        p->post_process = b;
                break;
        case 'd':
                r = sd_bus_message_read(call, "d", &d);
                if (r >= 0 && !(d > 0 && d <= 1))
                        return invalid(error, "Option \"threshold\" must be in (0, 1].");
                p->threshold = d;
                break;
        case 'a':
                r = read_outputs(call, j, outputs, error);
                break;
        case 'h':
                r = sd_bus_message_read(call, "h", &fd);
                if (r >= 0) {
                        j->report_fd = dup_fd(fd);
                        if (j->report_fd < 0)
                                return -errno;
                }
                break;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(call);
}

static int read_options(sd_bus_message *call, job *j, const daemon_conf *c, int *outputs,
                        sd_bus_error *error) {
        int r = sd_bus_message_enter_container(call, 'a', "{sv}");
        if (r < 0)
                return r;
        unsigned seen = 0;
        while ((r = sd_bus_message_enter_container(call, 'e', "sv")) > 0) {
                r = read_option(call, j, c, &seen, outputs, error);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(call);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(call);
}

static int read_prompts(sd_bus_message *call, job *j, sd_bus_error *error) {
        int r = sd_bus_message_enter_container(call, 'a', "(ddd)");
        if (r < 0)
                return r;
        double x, y, z;
        while ((r = sd_bus_message_read(call, "(ddd)", &x, &y, &z)) > 0) {
                if (j->k >= 4096)
                        return invalid(error, "At most 4096 prompt points.");
                if (!isfinite(x) || !isfinite(y) || !isfinite(z))
                        return invalid(error, "Prompt point %d is not finite (%g, %g, %g).",
                                       j->k + 1, x, y, z);
                double *p = realloc(j->prompts, sizeof(double) * 3 * (j->k + 1));
                if (!p)
                        return -ENOMEM;
                j->prompts = p;
                p[3 * j->k] = x;
                p[3 * j->k + 1] = y;
                p[3 * j->k + 2] = z;
                j->k++;
        }
        if (r < 0)
                return r;
        if (j->k == 0)
                return invalid(error, "Give at least one prompt point.");
        return sd_bus_message_exit_container(call);
}

static job *job_alloc(manager *m, job_kind kind, sd_bus_message *call) {
        job *j = calloc(1, sizeof(*j));
        if (!j)
                return NULL;
        j->manager = m;
        j->kind = kind;
        j->mesh_fd = j->out_fd = j->report_fd = -1;
        j->sender = strdup(sd_bus_message_get_sender(call) ? sd_bus_message_get_sender(call) : "");
        j->max_mesh_bytes = m->conf.max_mesh_bytes;
        p3_render_opts_default(&j->png);
        j->import_timeout_usec = m->conf.import_timeout_usec;
        j->import_memory_max = daemon_conf_import_memory_max(&m->conf);
        daemon_segment_defaults d;
        daemon_conf_segment_defaults(&m->conf, strcmp(m->status.backend, "cuda") != 0, &d);
        j->params = (p3_pipeline_params) {
                .points = d.points,
                .prompts = d.prompts,
                .prompt_batch = d.prompt_batch,
                .seed = d.seed,
                .post_process = d.post_process,
                .threshold = d.threshold,
        };
        return j;
}

/* Parse Segment(h s h s a{sv}) or Predict(h s a(ddd) h a{sv}) into a job. */
static int parse_request(manager *m, sd_bus_message *call, job_kind kind, job **ret,
                         sd_bus_error *error) {
        job *j = job_alloc(m, kind, call);
        if (!j || !j->sender) {
                job_free(j);
                return -ENOMEM;
        }
        int mesh_fd, out_fd, r, outputs = 0;
        const char *mesh_format, *out_format = "json";
        r = sd_bus_message_read(call, "hs", &mesh_fd, &mesh_format);
        if (r >= 0 && kind == JOB_PREDICT)
                r = read_prompts(call, j, error);
        if (r >= 0)
                r = sd_bus_message_read(call, "h", &out_fd);
        if (r >= 0 && kind == JOB_SEGMENT)
                r = sd_bus_message_read(call, "s", &out_format);
        if (r >= 0)
                r = read_options(call, j, &m->conf, &outputs, error);
        static const char *const mesh_formats[] = { "", "glb", "gltf", "obj", "ply", "stl",
                                                    "off", NULL };
        if (r >= 0 && !format_known(mesh_format, mesh_formats))
                r = invalid(error, "Unknown mesh format \"%s\": use glb, gltf, obj, ply, stl, "
                                   "off, or an empty string to detect it.", mesh_format);
        if (r >= 0 && p3_out_format_from_name(out_format) == P3_OUT_INVALID)
                r = invalid(error, "Unknown output format \"%s\": use glb, ply, json, png, "
                                   "face-ids, aabb or aabb-glb.", out_format);
        if (r >= 0 && outputs && kind == JOB_PREDICT)
                r = invalid(error, "Predict writes one output; option \"outputs\" is for "
                                   "Segment.");
        int fds = 2 + outputs + (j->report_fd >= 0);
        if (r >= 0 && fds > JOB_MAX_FDS)
                r = invalid(error, "The call passes %d descriptors (the mesh, %d outputs%s), "
                                   "but at most %d are taken in one call, as many as the system "
                                   "bus passes in one message; segment again for the rest.",
                            fds, 1 + outputs, j->report_fd >= 0 ? ", the report" : "",
                            JOB_MAX_FDS);
        if (r >= 0 && (j->params.prompts > j->params.points))
                r = invalid(error, "There cannot be more prompts (%d) than points (%lld).",
                            j->params.prompts, (long long) j->params.points);
        if (r >= 0) {
                snprintf(j->mesh_format, sizeof(j->mesh_format), "%s", mesh_format);
                snprintf(j->out_format, sizeof(j->out_format), "%s", out_format);
                j->mesh_fd = dup_fd(mesh_fd);
                j->out_fd = dup_fd(out_fd);
                if (j->mesh_fd < 0 || j->out_fd < 0)
                        r = -errno;
        }
        if (r >= 0) {
                p3_err err = {};
                if (job_check_same_file(j->mesh_fd, j->out_fd, j->report_fd, &err) < 0 ||
                    job_check_outputs_same_file(j, &err) < 0)
                        r = invalid(error, "%s.", err.msg);
        }
        if (r < 0) {
                job_free(j);
                return r;
        }
        *ret = j;
        return 0;
}

/* Authorized: admit the job (queue limits), publish it, reply with its path. Takes j. */
static void admit(manager *m, sd_bus_message *call, job *j) {
        if (m->stopping) {
                (void) sd_bus_reply_method_errorf(call, SD_BUS_ERROR_FAILED,
                                                  "The daemon is stopping.");
                job_free(j);
                return;
        }
        if (manager_queue_length(m) >= m->conf.queue_max) {
                (void) sd_bus_reply_method_errorf(call, P3_ERROR_QUEUE_FULL,
                                                  "The queue is full (%u jobs); try again later.",
                                                  m->conf.queue_max);
                job_free(j);
                return;
        }
        if (manager_user_jobs(m, j->uid) >= m->conf.queue_per_user_max) {
                (void) sd_bus_reply_method_errorf(
                        call, P3_ERROR_QUEUE_FULL,
                        "You already have %u jobs queued or running; wait for one to finish.",
                        m->conf.queue_per_user_max);
                job_free(j);
                return;
        }
        j->id = m->next_id++;
        int r = job_publish(j);
        if (r < 0) {
                (void) sd_bus_reply_method_errnof(call, r, "Cannot create the job: %s.",
                                                  strerror(-r));
                log_error_errno(r, "cannot create job %" PRIu32, j->id);
                job_free(j);
                return;
        }
        TAILQ_INSERT_TAIL(&m->jobs, j, queue); /* the manager owns it now */
        r = sd_bus_reply_method_return(call, "o", j->path);
        if (r < 0)
                log_warning_errno(r, "job %" PRIu32 ": cannot reply to the caller", j->id);
        p3_err err = {};
        r = job_check_fds(j->mesh_fd, j->out_fd, j->report_fd, m->conf.max_mesh_bytes, &err);
        if (r >= 0)
                r = job_check_outputs_fds(j, &err);
        if (r < 0) {
                /* The caller gets the job, which fails at once with the reason: the daemon's
                 * view of a bad descriptor is the job's Error, like any other bad input. */
                job_finish(j, JOB_RESULT_INVALID_INPUT, p3_err_msg(&err, r));
                return;
        }
        manager_job_submitted(m, j);
}

/* A refusal: the sentence, and on a user bus who else may (its owner, bus-polkit.h). The
 * caller gets the rule; the journal gets why this caller did not pass it (polkit's answer or
 * its error), which is what an administrator setting up a polkit rule needs to see. */
static void reply_denied(sd_bus_message *call, uid_t uid, const char *why, const char *sentence) {
        char buf[512];
        uid_t owner;

        log_info("%s refused for uid %u: %s", sd_bus_message_get_member(call), (unsigned) uid,
                 why);

        if (bus_user_bus_owner(sd_bus_message_get_bus(call), &owner) >= 0) {
                snprintf(buf, sizeof(buf), "%s On this user bus its owner, uid %u, may too.",
                         sentence, (unsigned) owner);
                sentence = buf;
        }
        (void) bus_reply_access_denied(call, sentence);
}

static void on_authorized(void *userdata, int result, uid_t uid, const char *why) {
        request *q = userdata;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        job *j = NULL;
        int r;

        if (result < 0) /* not a refusal: the question could not be answered (ENOMEM) */
                (void) sd_bus_reply_method_errnof(q->call, result, "%s", why);
        if (result == 0)
                reply_denied(q->call, uid, why,
                             "Segmenting needs root, membership in the group named by "
                             "AllowGroup=, or the polkit action org.p3sam.segment.");
        if (result <= 0) {
                request_free(q);
                return;
        }
        r = parse_request(q->m, q->call, q->kind, &j, &error);
        if (r < 0) {
                if (sd_bus_error_is_set(&error))
                        (void) sd_bus_reply_method_error(q->call, &error);
                else
                        (void) sd_bus_reply_method_errnof(q->call, r, "Cannot read the request: %s.",
                                                          strerror(-r));
                request_free(q);
                return;
        }
        j->uid = uid;
        admit(q->m, q->call, j);
        request_free(q);
}

static int submit(sd_bus_message *call, manager *m, job_kind kind, sd_bus_error *error) {
        if (m->stopping)
                return sd_bus_error_set(error, SD_BUS_ERROR_FAILED, "The daemon is stopping.");
        request *q = calloc(1, sizeof(*q));
        int r = q ? 0 : -ENOMEM;
        if (q) {
                *q = (request) { .m = m, .call = sd_bus_message_ref(call), .kind = kind };
                r = bus_check_authorization(call, P3_ACTION_SEGMENT, m->conf.allow_group, false,
                                            on_authorized, q, NULL);
        }
        if (r < 0) {
                request_free(q);
                /* the caller's answer to "try again?": the daemon's state, not the request */
                return sd_bus_error_set_errnof(error, r, "Cannot take the request: %s; try again "
                                               "later.", strerror(-r));
        }
        return 1;
}

static int method_segment(sd_bus_message *call, void *userdata, sd_bus_error *error) {
        return submit(call, userdata, JOB_SEGMENT, error);
}

static int method_predict(sd_bus_message *call, void *userdata, sd_bus_error *error) {
        return submit(call, userdata, JOB_PREDICT, error);
}

typedef enum manage_verb {
        MANAGE_CLEAR_GPU,
        MANAGE_RELOAD,
        MANAGE_SET_IDLE_TIMEOUT,
} manage_verb;

typedef struct manage_req {
        manager *m;
        sd_bus_message *call;
        manage_verb verb;
        uint64_t usec; /* SetIdleTimeout */
} manage_req;

static const char *const manage_denied[] = {
        [MANAGE_CLEAR_GPU] = "Clearing GPU memory needs root or the polkit action org.p3sam.manage.",
        [MANAGE_RELOAD] = "Reloading needs root or the polkit action org.p3sam.manage.",
        /* one literal, split only for the line length (clang's -Wstring-concatenation) */
        [MANAGE_SET_IDLE_TIMEOUT] = ("Changing the idle timeout needs root or the polkit action "
                                     "org.p3sam.manage."),
};

static void manage_run(manage_req *q) {
        int r = 0;
        switch (q->verb) {
        case MANAGE_CLEAR_GPU:
                manager_clear_gpu(q->m);
                r = sd_bus_reply_method_return(q->call, NULL);
                break;
        case MANAGE_SET_IDLE_TIMEOUT:
                manager_set_idle_timeout(q->m, q->usec);
                r = sd_bus_reply_method_return(q->call, NULL);
                break;
        case MANAGE_RELOAD: {
                p3_err err = {};
                r = manager_reload(q->m, q->call, &err);
                if (r < 0)
                        r = sd_bus_reply_method_errorf(q->call, SD_BUS_ERROR_FAILED,
                                                       "Reload refused, the old model keeps "
                                                       "serving: %s.",
                                                       p3_err_msg(&err, r));
                /* success: the reply comes when the worker has the new model */
                break;
        }
        }
        if (r < 0)
                log_warning_errno(r, "cannot reply to %s", sd_bus_message_get_member(q->call));
}

static void on_manage_authorized(void *userdata, int result, uid_t uid, const char *why) {
        manage_req *q = userdata;
        if (result < 0) /* not a refusal: the question could not be answered (ENOMEM) */
                (void) sd_bus_reply_method_errnof(q->call, result, "%s", why);
        else if (result == 0)
                reply_denied(q->call, uid, why, manage_denied[q->verb]);
        else
                manage_run(q);
        sd_bus_message_unref(q->call);
        free(q);
}

static int manage(sd_bus_message *call, manager *m, manage_verb verb, uint64_t usec,
                  bool interactive) {
        manage_req *q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (manage_req) { .m = m, .call = sd_bus_message_ref(call), .verb = verb, .usec = usec };
        int r = bus_check_authorization(call, P3_ACTION_MANAGE, NULL, interactive,
                                        on_manage_authorized, q, NULL);
        if (r < 0) {
                sd_bus_message_unref(q->call);
                free(q);
                return r;
        }
        return 1;
}

static int method_clear_gpu(sd_bus_message *call, void *userdata, sd_bus_error *error) {
        return manage(call, userdata, MANAGE_CLEAR_GPU, 0, true);
}

static int method_reload(sd_bus_message *call, void *userdata, sd_bus_error *error) {
        return manage(call, userdata, MANAGE_RELOAD, 0, true);
}

static int method_set_idle_timeout(sd_bus_message *call, void *userdata, sd_bus_error *error) {
        uint64_t usec;
        int interactive;
        int r = sd_bus_message_read(call, "tb", &usec, &interactive);
        if (r < 0)
                return r;
        return manage(call, userdata, MANAGE_SET_IDLE_TIMEOUT, usec, interactive);
}

const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Backend", "s", property_get_backend, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Device", "s", property_get_device, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("GpuMemoryBytes", "t", property_get_gpu_bytes, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("PeakGpuMemoryBytes", "t", property_get_peak_gpu_bytes, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ModelMemoryBytes", "t", property_get_model_bytes, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("PeakModelMemoryBytes", "t", property_get_peak_model_bytes, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        /* Changes all the time: read it when wanted, no signal. */
        SD_BUS_PROPERTY("HostMemoryBytes", "t", property_get_host_bytes, 0, 0),
        SD_BUS_WRITABLE_PROPERTY("IdleTimeoutUSec", "t", property_get_idle_timeout,
                                 property_set_idle_timeout, 0,
                                 SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_PROPERTY("IdleOffloadTimestampMonotonic", "t", NULL,
                        offsetof(manager, idle_deadline_usec), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("QueueLength", "u", property_get_queue_length, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("JobsCompleted", "t", NULL, offsetof(manager, jobs_completed),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ModelPath", "s", property_get_model_path, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ModelSynthetic", "b", property_get_model_synthetic, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        /* MaxMeshSize=, for clients that refuse a larger mesh before sending it (p3sam-httpd's
         * 413); a Reload may change it, and it is read when wanted, so no signal. */
        SD_BUS_PROPERTY("MaxMeshSize", "t", NULL, offsetof(manager, conf.max_mesh_bytes), 0),
        SD_BUS_METHOD_WITH_NAMES("Segment", "hshsa{sv}",
                                 SD_BUS_PARAM(mesh) SD_BUS_PARAM(mesh_format) SD_BUS_PARAM(output)
                                         SD_BUS_PARAM(output_format) SD_BUS_PARAM(options),
                                 "o", SD_BUS_PARAM(job), method_segment,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("Predict", "hsa(ddd)ha{sv}",
                                 SD_BUS_PARAM(mesh) SD_BUS_PARAM(mesh_format)
                                         SD_BUS_PARAM(prompts) SD_BUS_PARAM(output)
                                                 SD_BUS_PARAM(options),
                                 "o", SD_BUS_PARAM(job), method_predict,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("ClearGpuMemory", "", "", method_clear_gpu, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Reload", "", "", method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("SetIdleTimeout", "tb",
                                 SD_BUS_PARAM(usec) SD_BUS_PARAM(interactive), "", ,
                                 method_set_idle_timeout, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_NAMES("JobNew", "uo", SD_BUS_PARAM(id) SD_BUS_PARAM(job), 0),
        SD_BUS_SIGNAL_WITH_NAMES("JobRemoved", "uos",
                                 SD_BUS_PARAM(id) SD_BUS_PARAM(job) SD_BUS_PARAM(result), 0),
        SD_BUS_VTABLE_END,
};

void manager_emit_changed(manager *m, const char *prop, ...) {
        if (!m->bus)
                return;
        const char *props[16];
        size_t n = 0;
        va_list ap;
        va_start(ap, prop);
        for (const char *p = prop; p && n < ELEMENTSOF(props) - 1; p = va_arg(ap, const char *))
                props[n++] = p;
        va_end(ap);
        props[n] = NULL;
        /* sd-bus refuses the whole signal (-EDOM) if one name is not emits-change: say so. */
        int r = sd_bus_emit_properties_changed_strv(m->bus, P3_BUS_PATH, P3_BUS_IFACE,
                                                    (char **) props);
        if (r < 0)
                log_warning_errno(r, "cannot send PropertiesChanged for %s%s", props[0],
                                  n > 1 ? " and others" : "");
}

int manager_print_introspection(FILE *f) {
        introspect_begin(f);
        introspect_interface(f, P3_BUS_IFACE, manager_vtable);
        introspect_interface(f, P3_JOB_IFACE, job_vtable);
        introspect_end(f);
        return fflush(f) == 0 ? 0 : -errno;
}

/* ---- the connection ---- */

static void on_disconnect(bus_uv *b, void *userdata) {
        manager *m = userdata;
        m->exit_status = 1;
        manager_stop(m, "the bus connection was lost");
        uv_stop(m->loop);
}

int manager_connect(manager *m, bool user_bus, p3_err *err) {
        int r = user_bus ? sd_bus_open_user(&m->bus) : sd_bus_open_system(&m->bus);
        if (r < 0)
                return p3_errf(err, r, "cannot connect to the %s bus: %s",
                               user_bus ? "user" : "system", p3_strerror(r));
        r = sd_bus_add_object_vtable(m->bus, NULL, P3_BUS_PATH, P3_BUS_IFACE, manager_vtable, m);
        if (r >= 0)
                r = sd_bus_add_fallback_vtable(m->bus, NULL, P3_JOB_PREFIX, P3_JOB_IFACE,
                                               job_vtable, job_object_find, m);
        if (r >= 0)
                r = sd_bus_add_node_enumerator(m->bus, NULL, P3_JOB_PREFIX, job_node_enumerator,
                                               m);
        if (r >= 0)
                r = sd_bus_add_object_manager(m->bus, NULL, P3_BUS_PATH);
        if (r < 0)
                return p3_errf(err, r, "cannot export the objects: %s", p3_strerror(r));
        r = sd_bus_request_name(m->bus, m->bus_name, 0);
        if (r < 0)
                return p3_errf(err, r, "cannot own the bus name %s: %s%s", m->bus_name,
                               p3_strerror(r),
                               r == -EACCES ? " (is the D-Bus policy file installed?)" : "");
        r = bus_uv_attach(m->bus, m->loop, &m->bus_uv);
        if (r < 0)
                return p3_errf(err, r, "cannot watch the bus: %s", p3_strerror(r));
        bus_uv_set_disconnect_handler(m->bus_uv, on_disconnect, m);
        return 0;
}
