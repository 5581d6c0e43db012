/* SPDX-License-Identifier: MIT */
/* p3sam-httpd: the HTTP gateway to p3samd. One thread runs one sd-event loop that drives
 * libmicrohttpd (its epoll descriptor in external mode) and the D-Bus connection to p3samd,
 * so no lock is needed anywhere. A request lives from its headers to the end of its answer;
 * while p3samd works on it, its HTTP connection is suspended. */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#define HTTPD_BUS_PATH "/org/p3sam/Segmenter1"
#define HTTPD_BUS_IFACE "org.p3sam.Segmenter1"
#define HTTPD_JOB_IFACE "org.p3sam.Segmenter1.Job"
#define HTTPD_QUEUE_FULL "org.p3sam.Error.QueueFull"

/* p3samd's own default MaxMeshSize=, used when the daemon does not publish the property
 * (an older p3samd) or cannot be asked: the daemon checks the size again either way. */
#define HTTPD_DEFAULT_MAX_MESH (UINT64_C(512) << 20)
/* Seconds a client is told to wait before it tries again after a 503. */
#define HTTPD_RETRY_AFTER "5"

typedef enum endpoint {
        EP_SEGMENT,
        EP_PREDICT,
        EP_CLEAR_GPU,
        EP_STATUS,
} endpoint;

typedef struct httpd_args {
        const char *listen;      /* --listen ADDRESS:PORT, else the socket from systemd */
        int instance;            /* --instance N, -1: the plain p3samd */
        unsigned max_requests;   /* --max-requests, requests in flight at once */
        uint64_t request_usec;   /* --request-timeout, one request from its headers to its answer */
        uint64_t idle_exit_usec; /* --idle-exit, socket activation only; 0: never */
} httpd_args;

/* A job option of the query string, as p3samd's a{sv} takes it. */
typedef struct job_option {
        const char *name;
        char type; /* 'u', 't', 'd', 'b' */
        union {
                uint32_t u;
                uint64_t t;
                double d;
                int b;
        };
} job_option;

#define HTTPD_MAX_OPTIONS 8

typedef struct httpd httpd;

typedef struct hreq {
        httpd *srv;
        struct MHD_Connection *conn;
        endpoint ep;
        struct hreq *next; /* in srv->active or srv->held */

        /* what the request asks */
        char mesh_format[8];
        char out_format[16];
        job_option opts[HTTPD_MAX_OPTIONS];
        unsigned n_opts;
        double (*prompts)[3];
        unsigned n_prompts;
        int mesh_fd, out_fd;
        uint64_t body_bytes;
        bool body_too_big;

        /* where it stands */
        bool counted;     /* holds one of the --max-requests places */
        bool suspended;   /* its connection waits for p3samd */
        bool started;     /* the bus side has begun */
        bool hung_up;     /* the client left: cancel, answer no one */
        bool timed_out;   /* --request-timeout passed: cancel, answer 504 */
        bool at_daemon;   /* a job of ours is queued or running in p3samd */
        sd_bus_slot *call;
        char *job_path;
        char *daemon_id;  /* the unique name that answered: Completed must come from it */
        char result[16];  /* the job's Result, from the PropertiesChanged before Completed */
        sd_event_source *hangup_watch, *timer;

        /* the answer, once known */
        struct MHD_Response *response;
        unsigned status;
} hreq;

struct httpd {
        httpd_args args;
        sd_event *event;
        sd_bus *bus;
        struct MHD_Daemon *mhd;
        sd_event_source *mhd_io, *mhd_timer, *mhd_post, *idle_timer;
        bool socket_activated;
        unsigned connections; /* open HTTP connections */
        unsigned in_flight;   /* requests holding a place */
        unsigned at_daemon;   /* our jobs queued or running in p3samd */
        hreq *active;         /* requests with bus work under way */
        hreq *held;           /* refused with QueueFull while we had jobs there: retried */
        uint64_t max_mesh, max_mesh_read_usec;
};

/* httpd-server.c: libmicrohttpd inside sd-event */
int httpd_server_start(httpd *s, int listen_fd);
void httpd_server_stop(httpd *s);
/* The request's answer is known: give the connection back to libmicrohttpd to send it. */
void httpd_request_resume(hreq *r);
/* The idle exit timer, re-armed whenever the gateway has nothing left to do. */
void httpd_idle_update(httpd *s);

/* httpd-request.c: what a request asks, read from its method, path, headers and query */
/* Routes method and url; returns 0 with *ep set, or an HTTP status with a JSON error queued
 * on the connection. */
int httpd_route(struct MHD_Connection *c, const char *method, const char *url, endpoint *ep);
/* The mesh format, the output format and the job options of a segment or predict request
 * (the query string and Content-Type); 0, or an HTTP status with the error queued. */
int httpd_parse_job(struct MHD_Connection *c, hreq *r);

/* httpd-reply.c: answers */
/* {"error": "<sentence>"} with status; a 503 or 413 gets Retry-After / Connection: close. */
int httpd_queue_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
struct MHD_Response *httpd_error_response(unsigned status, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
struct MHD_Response *httpd_json_response(const char *json);
/* The HTTP status and the sentence for a failed D-Bus call. */
unsigned httpd_bus_error_status(const sd_bus_error *e, int r, const char **sentence);

/* httpd-bus.c: the D-Bus client side */
int httpd_bus_connect(httpd *s);
const char *httpd_bus_name(const httpd *s);
/* MaxMeshSize of p3samd, asked now and then, HTTPD_DEFAULT_MAX_MESH when it cannot say. */
uint64_t httpd_max_mesh(httpd *s);
/* Starts the request's bus work; its answer comes through httpd_request_resume(). */
void httpd_bus_start(hreq *r);
/* The client hung up or the request timed out: cancel its job, if it has one. */
void httpd_bus_cancel(hreq *r);
/* Drops the request's bus state (slots); it must have no job at the daemon. */
void httpd_bus_forget(hreq *r);

/* httpd-status.c: GET /api/status */
/* The JSON of p3samctl status --json from the reply to GetAll; NULL when out of memory or the
 * reply cannot be read. Freed by the caller. */
char *httpd_status_json(const httpd *s, sd_bus_message *getall);
