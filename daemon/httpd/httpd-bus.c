/* SPDX-License-Identifier: MIT */
/* The gateway as a D-Bus client of p3samd: the connection, the calls each endpoint makes
 * (asynchronous, in the one loop), the jobs followed through their Completed signal, and the
 * gateway's own queue for the jobs p3samd refuses with QueueFull while others of ours are
 * still there. Every job reaches p3samd as the gateway's user, so QueuePerUserMax= caps them
 * all together: holding the extra requests here, rather than answering 503 at once, keeps
 * the promise of --max-requests requests in flight. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/time-util.h"
#include "httpd.h"

/* p3samd answers Segment and Predict at once (the job is only queued); ClearGpuMemory and the
 * first call that starts the daemon by D-Bus activation may take as long as a model load. */
#define CALL_USEC (UINT64_C(300) * 1000000)
/* How long a MaxMeshSize read stays good: a Reload may change it. */
#define MAX_MESH_TTL_USEC (UINT64_C(30) * 1000000)

const char *httpd_bus_name(const httpd *s) {
        static char name[64];
        if (s->args.instance < 0)
                return HTTPD_BUS_IFACE;
        snprintf(name, sizeof(name), HTTPD_BUS_IFACE ".gpu%d", s->args.instance);
        return name;
}

static hreq *find_job(httpd *s, const char *path) {
        for (hreq *r = s->active; r; r = r->next)
                if (r->job_path && strcmp(r->job_path, path) == 0)
                        return r;
        return NULL;
}

static void list_remove(hreq **list, hreq *r) {
        for (hreq **p = list; *p; p = &(*p)->next)
                if (*p == r) {
                        *p = r->next;
                        r->next = NULL;
                        return;
                }
}

static void list_append(hreq **list, hreq *r) {
        while (*list)
                list = &(*list)->next;
        r->next = NULL;
        *list = r;
}

/* The request's bus work is over: its answer goes out (or, for a client that left, the
 * connection is closed). */
static void finish(hreq *r, unsigned status, struct MHD_Response *resp) {
        httpd *s = r->srv;
        list_remove(&s->active, r);
        r->call = sd_bus_slot_unref(r->call);
        if (r->at_daemon) {
                r->at_daemon = false;
                s->at_daemon--;
        }
        if (!resp)
                status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        if (r->response)
                MHD_destroy_response(r->response);
        r->response = resp;
        r->status = status;
        httpd_request_resume(r);
}

static void finish_error(hreq *r, unsigned status, const char *sentence) {
        if (r->timed_out) {
                status = MHD_HTTP_GATEWAY_TIMEOUT;
                sentence = "The request took longer than the gateway's --request-timeout.";
        }
        finish(r, status, httpd_error_response(status, "%s", sentence));
}

static void finish_bus_error(hreq *r, const sd_bus_error *e, int err) {
        const char *sentence;
        unsigned status = httpd_bus_error_status(e, err, &sentence);
        finish_error(r, status, sentence);
}

static void retry_held(httpd *s);

/* ---- jobs ---- */

/* The result file, whole, as the answer. */
static void finish_job_output(hreq *r) {
        struct stat st;
        const char *type = strcmp(r->out_format, "glb") == 0    ? "model/gltf-binary"
                           : strcmp(r->out_format, "ply") == 0  ? "application/x-ply"
                           : strcmp(r->out_format, "png") == 0  ? "image/png"
                                                                : "application/json";
        if (fstat(r->out_fd, &st) < 0 || st.st_size <= 0) {
                finish_error(r, MHD_HTTP_BAD_GATEWAY, "p3samd reported success but wrote no "
                                                      "result.");
                return;
        }
        /* libmicrohttpd sends it with sendfile() and closes it */
        struct MHD_Response *resp =
                MHD_create_response_from_fd_at_offset64((uint64_t) st.st_size, r->out_fd, 0);
        if (!resp) {
                finish_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory.");
                return;
        }
        r->out_fd = -1;
        if (MHD_add_response_header(resp, "Content-Type", type) != MHD_YES) {
                MHD_destroy_response(resp);
                resp = NULL;
        }
        finish(r, MHD_HTTP_OK, resp);
}

/* Our job's Result ("" while it runs), sent in the PropertiesChanged that precedes Completed. */
static int on_job_properties(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        httpd *s = userdata;
        hreq *r = find_job(s, sd_bus_message_get_path(m) ?: "");
        const char *iface, *name, *value;
        if (!r || strcmp(sd_bus_message_get_sender(m) ?: "", r->daemon_id ?: "") != 0)
                return 0;
        if (sd_bus_message_read(m, "s", &iface) < 0 || strcmp(iface, HTTPD_JOB_IFACE) != 0 ||
            sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
                return 0;
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                if (sd_bus_message_read(m, "s", &name) < 0)
                        return 0;
                if (strcmp(name, "Result") == 0 && sd_bus_message_read(m, "v", "s", &value) >= 0)
                        snprintf(r->result, sizeof(r->result), "%s", value);
                else if (sd_bus_message_skip(m, "v") < 0)
                        return 0;
                if (sd_bus_message_exit_container(m) < 0)
                        return 0;
        }
        return 0;
}

/* The HTTP status of a failed job, from its Result: the mesh's fault (do not send it again),
 * the machine's (come back later: 503 carries Retry-After), cancelled by someone else in
 * p3samd (an administrator, a stopping daemon), or p3samd's own failure. A daemon that says no
 * Result is taken at its sentence, as the mesh's fault. */
static unsigned failed_job_status(const char *result) {
        if (strcmp(result, "resources") == 0 || strcmp(result, "cancelled") == 0)
                return MHD_HTTP_SERVICE_UNAVAILABLE;
        if (strcmp(result, "failed") == 0)
                return MHD_HTTP_INTERNAL_SERVER_ERROR;
        return MHD_HTTP_UNPROCESSABLE_CONTENT;
}

static int on_completed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        httpd *s = userdata;
        hreq *r = find_job(s, sd_bus_message_get_path(m) ?: "");
        int success;
        const char *message;
        /* a unicast signal anyone could send us: only the daemon that took the job counts */
        if (!r || strcmp(sd_bus_message_get_sender(m) ?: "", r->daemon_id ?: "") != 0)
                return 0;
        if (sd_bus_message_read(m, "bs", &success, &message) < 0)
                return 0;
        log_debug("%s: %s%s%s", r->job_path, success ? "done" : "failed", *message ? ": " : "",
                  message);
        if (success)
                finish_job_output(r);
        else if (r->hung_up || r->timed_out) /* cancelled by us: 504 for the timeout */
                finish_error(r, MHD_HTTP_BAD_REQUEST, "The client left.");
        else if (!*message)
                finish_error(r, failed_job_status(r->result), "The job failed.");
        else {
                /* the daemon's sentence, ended as one */
                unsigned status = failed_job_status(r->result);
                size_t n = strlen(message);
                bool stop = strchr(".!?", message[n - 1]) != NULL;
                finish(r, status,
                       httpd_error_response(status, "%s%s%s",
                                            strcmp(r->result, "cancelled") == 0
                                                    ? "The job was cancelled in p3samd: "
                                                    : "",
                                            message, stop ? "" : "."));
        }
        retry_held(s);
        return 0;
}

static int on_cancel_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(m);
        if (e)
                log_warning("Cannot cancel %s: %s", (const char *) userdata,
                            e->message ?: e->name);
        free(userdata);
        return 0;
}

void httpd_bus_cancel(hreq *r) {
        if (!r->job_path || !r->at_daemon)
                return; /* the job is cancelled as soon as the daemon names it (on_job_reply) */
        char *path = strdup(r->job_path);
        if (!path || sd_bus_call_method_async(r->srv->bus, NULL, r->daemon_id, r->job_path,
                                              HTTPD_JOB_IFACE, "Cancel", on_cancel_reply, path,
                                              NULL) < 0) {
                free(path);
                log_warning("Cannot cancel %s.", r->job_path);
        }
}

static void hold(hreq *r) {
        list_remove(&r->srv->active, r);
        list_append(&r->srv->held, r);
        log_debug("p3samd's queue is full for us: a request waits for one of our %u jobs",
                  r->srv->at_daemon);
}

static int on_job_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        hreq *r = userdata;
        httpd *s = r->srv;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        const char *path;
        r->call = sd_bus_slot_unref(r->call);
        if (e && sd_bus_error_has_name(e, HTTPD_QUEUE_FULL) && s->at_daemon > 0 &&
            !r->hung_up && !r->timed_out) {
                hold(r);
                return 0;
        }
        if (e) {
                finish_bus_error(r, e, -sd_bus_message_get_errno(m));
                return 0;
        }
        int err = sd_bus_message_read(m, "o", &path);
        if (err < 0 || !(r->job_path = strdup(path)) ||
            !(r->daemon_id = strdup(sd_bus_message_get_sender(m) ?: ""))) {
                finish_error(r, MHD_HTTP_BAD_GATEWAY, "p3samd's answer cannot be read.");
                return 0;
        }
        r->at_daemon = true;
        s->at_daemon++;
        log_debug("%s: queued", r->job_path);
        if (r->hung_up || r->timed_out)
                httpd_bus_cancel(r);
        return 0;
}

static int append_option(sd_bus_message *m, const job_option *o) {
        switch (o->type) {
        case 'u':
                return sd_bus_message_append(m, "{sv}", o->name, "u", o->u);
        case 't':
                return sd_bus_message_append(m, "{sv}", o->name, "t", o->t);
        case 'd':
                return sd_bus_message_append(m, "{sv}", o->name, "d", o->d);
        default:
                return sd_bus_message_append(m, "{sv}", o->name, "b", o->b);
        }
}

static int append_job_options(sd_bus_message *m, const hreq *r) {
        int err = sd_bus_message_open_container(m, 'a', "{sv}");
        for (unsigned i = 0; err >= 0 && i < r->n_opts; i++)
                err = append_option(m, &r->opts[i]);
        return err < 0 ? err : sd_bus_message_close_container(m);
}

static int append_prompts(sd_bus_message *m, const hreq *r) {
        int err = sd_bus_message_open_container(m, 'a', "(ddd)");
        for (unsigned i = 0; err >= 0 && i < r->n_prompts; i++)
                err = sd_bus_message_append(m, "(ddd)", r->prompts[i][0], r->prompts[i][1],
                                            r->prompts[i][2]);
        return err < 0 ? err : sd_bus_message_close_container(m);
}

/* Segment or Predict with the mesh and a fresh output, both memfds. */
static int submit_job(hreq *r) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        bool seg = r->ep == EP_SEGMENT;
        int err;
        /* p3samd reads the mesh from where the descriptor stands: the start */
        if (lseek(r->mesh_fd, 0, SEEK_SET) < 0)
                return -errno;
        if (r->out_fd >= 0)
                close(r->out_fd);
        r->out_fd = memfd_create("p3sam-httpd-result", MFD_CLOEXEC);
        if (r->out_fd < 0)
                return -errno;
        err = sd_bus_message_new_method_call(r->srv->bus, &m, httpd_bus_name(r->srv),
                                             HTTPD_BUS_PATH, HTTPD_BUS_IFACE,
                                             seg ? "Segment" : "Predict");
        if (err >= 0)
                err = sd_bus_message_append(m, "hs", r->mesh_fd, r->mesh_format);
        if (err >= 0 && seg)
                err = sd_bus_message_append(m, "hs", r->out_fd, r->out_format);
        if (err >= 0 && !seg)
                err = append_prompts(m, r);
        if (err >= 0 && !seg)
                err = sd_bus_message_append(m, "h", r->out_fd);
        if (err >= 0)
                err = append_job_options(m, r);
        if (err >= 0)
                err = sd_bus_call_async(r->srv->bus, &r->call, m, on_job_reply, r, CALL_USEC);
        return err;
}

/* One of our jobs ended: the oldest held request gets its place at the daemon. */
static void retry_held(httpd *s) {
        hreq *r = s->held;
        if (!r)
                return;
        s->held = r->next;
        list_append(&s->active, r);
        int err = submit_job(r);
        if (err < 0)
                finish_bus_error(r, NULL, err);
}

/* ---- the other calls ---- */

static int on_clear_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        hreq *r = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        r->call = sd_bus_slot_unref(r->call);
        if (e)
                finish_bus_error(r, e, -sd_bus_message_get_errno(m));
        else
                finish(r, MHD_HTTP_OK, httpd_json_response("{\"ok\": true}"));
        return 0;
}

static int on_status_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        hreq *r = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        r->call = sd_bus_slot_unref(r->call);
        if (e) {
                finish_bus_error(r, e, -sd_bus_message_get_errno(m));
                return 0;
        }
        _cleanup_free_ char *json = httpd_status_json(r->srv, m);
        if (!json)
                finish_error(r, MHD_HTTP_BAD_GATEWAY, "p3samd's properties cannot be read.");
        else
                finish(r, MHD_HTTP_OK, httpd_json_response(json));
        return 0;
}

static int call_manager(hreq *r, const char *iface, const char *member,
                        sd_bus_message_handler_t cb) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int err = sd_bus_message_new_method_call(r->srv->bus, &m, httpd_bus_name(r->srv),
                                                 HTTPD_BUS_PATH, iface, member);
        if (err >= 0 && r->ep == EP_STATUS)
                err = sd_bus_message_append(m, "s", HTTPD_BUS_IFACE);
        if (err >= 0)
                err = sd_bus_call_async(r->srv->bus, &r->call, m, cb, r, CALL_USEC);
        return err;
}

void httpd_bus_start(hreq *r) {
        httpd *s = r->srv;
        int err = httpd_bus_connect(s);
        r->started = true;
        list_append(&s->active, r);
        if (err >= 0) {
                switch (r->ep) {
                case EP_SEGMENT:
                case EP_PREDICT:
                        err = submit_job(r);
                        break;
                case EP_CLEAR_GPU:
                        err = call_manager(r, HTTPD_BUS_IFACE, "ClearGpuMemory", on_clear_reply);
                        break;
                case EP_STATUS:
                        err = call_manager(r, "org.freedesktop.DBus.Properties", "GetAll",
                                           on_status_reply);
                        break;
                }
        }
        if (err < 0)
                finish_bus_error(r, NULL, err);
}

void httpd_bus_forget(hreq *r) {
        list_remove(&r->srv->active, r);
        list_remove(&r->srv->held, r);
        r->call = sd_bus_slot_unref(r->call);
}

/* ---- the connection ---- */

/* Waits until the bus has taken us (authentication, Hello), so that a refused connection is
 * seen here rather than as a lost call later. */
static int wait_ready(sd_bus *bus) {
        int r;
        while ((r = sd_bus_is_ready(bus)) == 0) {
                r = sd_bus_process(bus, NULL);
                if (r == 0)
                        r = sd_bus_wait(bus, 5 * 1000000);
                if (r < 0)
                        break;
        }
        return r < 0 ? r : 0;
}

int httpd_bus_connect(httpd *s) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        if (s->bus && sd_bus_is_open(s->bus) > 0)
                return 0;
        /* a lost connection lost its calls too: the requests waiting on them are answered */
        while (s->active)
                finish_error(s->active, MHD_HTTP_BAD_GATEWAY, "The connection to p3samd was "
                                                              "lost.");
        while (s->held) {
                hreq *r = s->held;
                s->held = r->next;
                list_append(&s->active, r);
                finish_error(r, MHD_HTTP_BAD_GATEWAY, "The connection to p3samd was lost.");
        }
        s->at_daemon = 0;
        s->bus = sd_bus_flush_close_unref(s->bus);
        int err = sd_bus_open_system(&bus);
        if (err >= 0)
                err = wait_ready(bus);
        if (err >= 0)
                err = sd_bus_add_match_async(bus, NULL,
                                             "type='signal',interface='org.freedesktop.DBus."
                                             "Properties',member='PropertiesChanged',arg0='"
                                             HTTPD_JOB_IFACE "'",
                                             on_job_properties, NULL, s);
        if (err >= 0)
                err = sd_bus_match_signal_async(bus, NULL, NULL, NULL, HTTPD_JOB_IFACE,
                                                "Completed", on_completed, NULL, s);
        if (err >= 0)
                err = sd_bus_attach_event(bus, s->event, SD_EVENT_PRIORITY_NORMAL);
        if (err < 0)
                return log_warning_errno(err, "Cannot connect to the system bus");
        s->bus = TAKE_PTR(bus);
        return 0;
}

uint64_t httpd_max_mesh(httpd *s) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        uint64_t v, now = now_monotonic_usec();
        if (s->max_mesh && now - s->max_mesh_read_usec < MAX_MESH_TTL_USEC)
                return s->max_mesh;
        /* a short blocking read, once in a while: the limit is needed before the body */
        int err = httpd_bus_connect(s);
        if (err >= 0)
                err = sd_bus_get_property_trivial(s->bus, httpd_bus_name(s), HTTPD_BUS_PATH,
                                                  HTTPD_BUS_IFACE, "MaxMeshSize", &e, 't', &v);
        if (err < 0) {
                log_debug("MaxMeshSize unknown (%s): %" PRIu64 " bytes assumed",
                          e.message ?: strerror(-err), (uint64_t) HTTPD_DEFAULT_MAX_MESH);
                v = HTTPD_DEFAULT_MAX_MESH;
        }
        s->max_mesh = v;
        s->max_mesh_read_usec = now;
        return v;
}
