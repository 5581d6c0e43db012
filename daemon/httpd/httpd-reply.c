/* SPDX-License-Identifier: MIT */
/* Answers: JSON bodies, and the HTTP status of each way a D-Bus call can fail. */
#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "httpd.h"

struct MHD_Response *httpd_json_response(const char *json) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(json), (void *) json,
                                                                    MHD_RESPMEM_MUST_COPY);
        if (resp && MHD_add_response_header(resp, "Content-Type", "application/json") != MHD_YES) {
                MHD_destroy_response(resp);
                return NULL;
        }
        return resp;
}

static struct MHD_Response *error_response_v(unsigned status, const char *fmt, va_list ap) {
        char sentence[1024];
        vsnprintf(sentence, sizeof(sentence), fmt, ap);
        json_object *o = json_object_new_object();
        if (!o || json_object_object_add(o, "error", json_object_new_string(sentence)) < 0) {
                json_object_put(o);
                return NULL;
        }
        struct MHD_Response *resp =
                httpd_json_response(json_object_to_json_string_ext(o, JSON_C_TO_STRING_SPACED));
        json_object_put(o);
        if (!resp)
                return NULL;
        /* a busy gateway or daemon: when to come back; too large a body: the rest of it is
         * not read, so the connection cannot carry another request */
        if ((status == MHD_HTTP_SERVICE_UNAVAILABLE &&
             MHD_add_response_header(resp, "Retry-After", HTTPD_RETRY_AFTER) != MHD_YES) ||
            (status == MHD_HTTP_CONTENT_TOO_LARGE &&
             MHD_add_response_header(resp, "Connection", "close") != MHD_YES)) {
                MHD_destroy_response(resp);
                return NULL;
        }
        return resp;
}

struct MHD_Response *httpd_error_response(unsigned status, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        struct MHD_Response *resp = error_response_v(status, fmt, ap);
        va_end(ap);
        return resp;
}

int httpd_queue_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        struct MHD_Response *resp = error_response_v(status, fmt, ap);
        va_end(ap);
        if (!resp)
                return MHD_HTTP_INTERNAL_SERVER_ERROR;
        (void) MHD_queue_response(c, status, resp);
        MHD_destroy_response(resp);
        return (int) status;
}

/* No bus, nobody listening on it, or it went away. */
static bool errno_is_no_bus(int r) {
        return r == -ENOENT || r == -ECONNREFUSED || r == -ENOTCONN || r == -ECONNRESET ||
               r == -EPIPE || r == -ENOMEDIUM;
}

unsigned httpd_bus_error_status(const sd_bus_error *e, int r, const char **sentence) {
        bool have = e && sd_bus_error_is_set(e);
        const char *msg = have && e->message && *e->message ? e->message : NULL;
        static char buf[256];
        *sentence = msg;
        if (have && sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN,
                                           SD_BUS_ERROR_NAME_HAS_NO_OWNER)) {
                *sentence = "p3samd is not running.";
                return MHD_HTTP_BAD_GATEWAY;
        }
        if (have && strncmp(e->name, "org.freedesktop.DBus.Error.Spawn.", 33) == 0) {
                snprintf(buf, sizeof(buf), "p3samd is not running and could not be started: %s",
                         msg ?: e->name);
                *sentence = buf;
                return MHD_HTTP_BAD_GATEWAY;
        }
        if (have && sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED)) {
                *sentence = msg ?: "p3samd refused the gateway's user.";
                return MHD_HTTP_FORBIDDEN;
        }
        if (have && sd_bus_error_has_name(e, SD_BUS_ERROR_INVALID_ARGS)) {
                *sentence = msg ?: "p3samd refused the request's options.";
                return MHD_HTTP_BAD_REQUEST;
        }
        if (have && sd_bus_error_has_name(e, HTTPD_QUEUE_FULL)) {
                *sentence = msg ?: "p3samd's queue is full; try again later.";
                return MHD_HTTP_SERVICE_UNAVAILABLE;
        }
        if ((have && sd_bus_error_has_names(e, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT)) ||
            r == -ETIMEDOUT) {
                *sentence = "p3samd did not answer in time.";
                return MHD_HTTP_GATEWAY_TIMEOUT;
        }
        if (!have && errno_is_no_bus(r)) {
                *sentence = "The system bus cannot be reached, so neither can p3samd.";
                return MHD_HTTP_BAD_GATEWAY;
        }
        if (!msg) {
                snprintf(buf, sizeof(buf), "p3samd cannot be reached: %s.",
                         strerror(r < 0 ? -r : EIO));
                *sentence = buf;
        }
        return MHD_HTTP_BAD_GATEWAY;
}
