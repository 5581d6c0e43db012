/* SPDX-License-Identifier: MIT */
/* libmicrohttpd inside the sd-event loop (its epoll descriptor, external mode), and each
 * request's life: checked on its headers (route, type, options, Content-Length against
 * MaxMeshSize, a place among --max-requests), its body into a memfd, then suspended while
 * p3samd works, watched for the client hanging up and for --request-timeout, resumed with
 * its answer. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "httpd.h"

/* An idle keep-alive connection, or one whose client sends nothing, is closed after this. */
#define CONNECTION_TIMEOUT_SEC 60

static hreq *request_new(httpd *s, struct MHD_Connection *c) {
        hreq *r = calloc(1, sizeof(*r));
        if (!r)
                return NULL;
        r->srv = s;
        r->conn = c;
        r->mesh_fd = r->out_fd = -1;
        return r;
}

static void request_free(hreq *r) {
        httpd *s = r->srv;
        /* the bus side always ends before the connection does (it is suspended until then) */
        httpd_bus_forget(r);
        sd_event_source_disable_unref(r->hangup_watch);
        sd_event_source_disable_unref(r->timer);
        if (r->counted)
                s->in_flight--;
        if (r->response)
                MHD_destroy_response(r->response);
        if (r->mesh_fd >= 0)
                close(r->mesh_fd);
        if (r->out_fd >= 0)
                close(r->out_fd);
        free(r->prompts);
        free(r->job_path);
        free(r->daemon_id);
        free(r);
}

/* ---- a client that hangs up, a request that takes too long ---- */

static void client_gone(hreq *r, bool timeout) {
        if (r->hung_up || r->timed_out)
                return;
        if (timeout)
                r->timed_out = true;
        else
                r->hung_up = true;
        log_info("%s: %s; cancelling its job", r->job_path ?: "request",
                 timeout ? "--request-timeout passed" : "the client hung up");
        httpd_bus_cancel(r);
        /* a request still waiting in the gateway's own queue has no job to wait for */
        for (hreq *h = r->srv->held; h; h = h->next)
                if (h == r) {
                        httpd_bus_forget(r);
                        r->status = timeout ? MHD_HTTP_GATEWAY_TIMEOUT : MHD_HTTP_BAD_REQUEST;
                        r->response = httpd_error_response(r->status, "%s",
                                                           timeout ? "The request timed out."
                                                                   : "The client left.");
                        httpd_request_resume(r);
                        break;
                }
}

static int on_hangup(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        hreq *r = userdata;
        /* nothing is read from the socket here: the request is whole, so the only thing a
         * client can do now is close its side */
        r->hangup_watch = sd_event_source_disable_unref(r->hangup_watch);
        client_gone(r, false);
        return 0;
}

static int on_request_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
        hreq *r = userdata;
        client_gone(r, true);
        return 0;
}

static void watch_request(hreq *r) {
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        httpd *s = r->srv;
        if (ci && sd_event_add_io(s->event, &r->hangup_watch, ci->connect_fd, EPOLLRDHUP,
                                  on_hangup, r) < 0)
                log_warning("Cannot watch a client's connection: a hang-up will not cancel "
                            "its job.");
        if (s->args.request_usec &&
            sd_event_add_time_relative(s->event, &r->timer, CLOCK_MONOTONIC,
                                       s->args.request_usec, 0, on_request_timeout, r) < 0)
                log_warning("Cannot arm a request's timeout.");
}

void httpd_request_resume(hreq *r) {
        r->hangup_watch = sd_event_source_disable_unref(r->hangup_watch);
        r->timer = sd_event_source_disable_unref(r->timer);
        if (r->suspended) {
                r->suspended = false;
                MHD_resume_connection(r->conn);
        }
}

/* ---- the request's first call: everything that can be refused before the body ---- */

static int check_body_size(httpd *s, struct MHD_Connection *c) {
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        uint64_t max = httpd_max_mesh(s);
        char *end;
        if (!cl)
                return 0; /* chunked: counted as it comes */
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == ERANGE || (!errno && end != cl && !*end && n > max))
                return httpd_queue_error(c, MHD_HTTP_CONTENT_TOO_LARGE,
                                         "The mesh is %s bytes, over p3samd's MaxMeshSize= of "
                                         "%" PRIu64 " bytes.", cl, max);
        return 0;
}

static int begin(httpd *s, struct MHD_Connection *c, const char *method, const char *url,
                 hreq *r) {
        int status = httpd_route(c, method, url, &r->ep);
        if (status)
                return status;
        endpoint ep = r->ep;
        bool job = ep == EP_SEGMENT || ep == EP_PREDICT;
        if (job && (status = httpd_parse_job(c, r)))
                return status;
        if (job && (status = check_body_size(s, c)))
                return status;
        if (s->in_flight >= s->args.max_requests)
                return httpd_queue_error(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                                         "The gateway serves %u requests at once, and has "
                                         "that many now; try again later.",
                                         s->args.max_requests);
        r->counted = true;
        s->in_flight++;
        if (job && (r->mesh_fd = memfd_create("p3sam-httpd-mesh", MFD_CLOEXEC)) < 0)
                return httpd_queue_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                         "Cannot keep the mesh: %s.", strerror(errno));
        return 0;
}

static int write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

/* A piece of the body: into the memfd, unless there is already too much of it (a chunked
 * body has no Content-Length to refuse on). */
static int take_body(hreq *r, const char *data, size_t n) {
        if (r->mesh_fd < 0 || r->body_too_big)
                return 0;
        r->body_bytes += n;
        if (r->body_bytes > httpd_max_mesh(r->srv)) {
                r->body_too_big = true;
                return 0;
        }
        return write_all(r->mesh_fd, data, n);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
        httpd *s = cls;
        hreq *r = *con_cls;
        if (!r) { /* the headers are in */
                if (!(r = request_new(s, c)))
                        return MHD_NO;
                *con_cls = r;
                r->status = (unsigned) begin(s, c, method, url, r);
                return MHD_YES;
        }
        if (r->status && !r->response) {
                *upload_data_size = 0; /* refused already: the rest of the body is dropped */
                return MHD_YES;
        }
        if (*upload_data_size) {
                int err = take_body(r, upload_data, *upload_data_size);
                *upload_data_size = 0;
                if (err < 0)
                        log_warning_errno(err, "Cannot keep a request's body");
                return err < 0 ? MHD_NO : MHD_YES;
        }
        if (r->response) { /* resumed with its answer */
                if (r->hung_up)
                        return MHD_NO;
                return MHD_queue_response(c, r->status, r->response);
        }
        if (r->body_too_big) {
                r->status = MHD_HTTP_CONTENT_TOO_LARGE;
                return httpd_queue_error(c, r->status, "The mesh is over p3samd's "
                                         "MaxMeshSize= of %" PRIu64 " bytes.",
                                         httpd_max_mesh(s)) ? MHD_YES : MHD_NO;
        }
        r->suspended = true;
        MHD_suspend_connection(c);
        watch_request(r);
        httpd_bus_start(r);
        return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
        if (*con_cls)
                request_free(*con_cls);
        *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
        httpd *s = cls;
        if (toe == MHD_CONNECTION_NOTIFY_STARTED)
                s->connections++;
        else if (s->connections > 0)
                s->connections--;
        httpd_idle_update(s);
}

/* ---- the loop ---- */

/* After every dispatch: let libmicrohttpd work, then wake up when it wants to. */
static int on_post(sd_event_source *src, void *userdata) {
        httpd *s = userdata;
        MHD_UNSIGNED_LONG_LONG ms;
        (void) MHD_run(s->mhd);
        if (MHD_get_timeout(s->mhd, &ms) != MHD_YES)
                return sd_event_source_set_enabled(s->mhd_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_time_relative(s->mhd_timer, ms * 1000);
        return sd_event_source_set_enabled(s->mhd_timer, SD_EVENT_ONESHOT);
}

static int on_mhd_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        return 0; /* on_post runs libmicrohttpd */
}

static int on_mhd_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        return 0; /* likewise */
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
        char line[512];
        vsnprintf(line, sizeof(line), fmt, ap);
        line[strcspn(line, "\n")] = 0;
        log_debug("libmicrohttpd: %s", line);
}

int httpd_server_start(httpd *s, int listen_fd) {
        s->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
                                  0, NULL, NULL, on_request, s,
                                  MHD_OPTION_LISTEN_SOCKET, listen_fd,
                                  MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                  MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                                  MHD_OPTION_CONNECTION_TIMEOUT,
                                  (unsigned) CONNECTION_TIMEOUT_SEC,
                                  MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
                                  MHD_OPTION_END);
        if (!s->mhd)
                return log_error_errno(-EINVAL, "libmicrohttpd cannot serve the socket");
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        int err = di ? 0 : -EINVAL;
        if (err >= 0)
                err = sd_event_add_io(s->event, &s->mhd_io, di->epoll_fd, EPOLLIN, on_mhd_io, s);
        if (err >= 0)
                err = sd_event_add_time_relative(s->event, &s->mhd_timer, CLOCK_MONOTONIC, 0, 0,
                                                 on_mhd_timer, s);
        if (err >= 0)
                err = sd_event_add_post(s->event, &s->mhd_post, on_post, s);
        if (err >= 0)
                err = sd_event_source_set_enabled(s->mhd_post, SD_EVENT_ON);
        if (err < 0)
                return log_error_errno(err, "Cannot run libmicrohttpd in the event loop");
        return 0;
}

void httpd_server_stop(httpd *s) {
        s->mhd_io = sd_event_source_disable_unref(s->mhd_io);
        s->mhd_timer = sd_event_source_disable_unref(s->mhd_timer);
        s->mhd_post = sd_event_source_disable_unref(s->mhd_post);
        if (s->mhd)
                MHD_stop_daemon(s->mhd);
        s->mhd = NULL;
}
