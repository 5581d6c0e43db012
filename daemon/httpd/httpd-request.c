/* SPDX-License-Identifier: MIT */
/* What a request asks: the endpoint from its method and path, the mesh format from its
 * Content-Type (or ?format=), the job options and prompts from its query string. Only the
 * syntax is checked here; p3samd checks the ranges and answers InvalidArgs (400) itself. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "httpd.h"
#include "parse-util.h"

static const struct route {
        const char *path, *method;
        endpoint ep;
} routes[] = {
        { "/api/mesh/segment", "POST", EP_SEGMENT },
        { "/api/mesh/predict", "POST", EP_PREDICT },
        { "/api/mesh/clear_gpu_memory", "POST", EP_CLEAR_GPU },
        { "/api/status", "GET", EP_STATUS },
};

int httpd_route(struct MHD_Connection *c, const char *method, const char *url, endpoint *ep) {
        for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
                if (strcmp(url, routes[i].path) != 0)
                        continue;
                /* HEAD is GET without the body: libmicrohttpd leaves the body out itself */
                bool head_ok = strcmp(routes[i].method, "GET") == 0 && strcmp(method, "HEAD") == 0;
                if (strcmp(method, routes[i].method) == 0 || head_ok) {
                        *ep = routes[i].ep;
                        return 0;
                }
                struct MHD_Response *resp = httpd_error_response(
                        MHD_HTTP_METHOD_NOT_ALLOWED, "%s takes %s, not %s.", url,
                        routes[i].method, method);
                if (!resp)
                        return MHD_HTTP_INTERNAL_SERVER_ERROR;
                (void) MHD_add_response_header(resp, "Allow", routes[i].method);
                (void) MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
                MHD_destroy_response(resp);
                return MHD_HTTP_METHOD_NOT_ALLOWED;
        }
        return httpd_queue_error(c, MHD_HTTP_NOT_FOUND,
                                 "There is no %s here; the endpoints are POST /api/mesh/segment, "
                                 "POST /api/mesh/predict, POST /api/mesh/clear_gpu_memory and "
                                 "GET /api/status.", url);
}

/* ---- the mesh format ---- */

static const struct media_type {
        const char *type, *format;
} media_types[] = {
        { "model/gltf-binary", "glb" }, { "model/gltf+json", "gltf" },
        { "model/obj", "obj" },         { "model/stl", "stl" },
        { "application/x-ply", "ply" }, { "model/ply", "ply" },
        { "model/off", "off" },         { "application/octet-stream", "" },
};

static const char *const mesh_formats[] = { "glb", "gltf", "obj", "ply", "stl", "off" };
static const char *const out_formats[] = { "glb", "ply", "json", "png" };

static bool in_list(const char *s, const char *const *list, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(s, list[i]) == 0)
                        return true;
        return false;
}

/* The media type alone: no parameters (";charset=..."), no blanks, any case. */
static const char *media_format(const char *content_type) {
        size_t n = strcspn(content_type, ";");
        while (n > 0 && (content_type[n - 1] == ' ' || content_type[n - 1] == '\t'))
                n--;
        for (size_t i = 0; i < sizeof(media_types) / sizeof(media_types[0]); i++)
                if (strlen(media_types[i].type) == n &&
                    strncasecmp(content_type, media_types[i].type, n) == 0)
                        return media_types[i].format;
        return NULL;
}

/* ?format= wins; else the Content-Type; application/octet-stream without ?format= lets
 * p3samd detect the format from the bytes. */
static int parse_mesh_format(struct MHD_Connection *c, hreq *r) {
        const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "format");
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
        const char *f;
        if (q) {
                if (!in_list(q, mesh_formats, sizeof(mesh_formats) / sizeof(*mesh_formats)))
                        return httpd_queue_error(c, MHD_HTTP_BAD_REQUEST,
                                                 "format=%s is not a mesh format: glb, gltf, obj, "
                                                 "ply, stl or off.", q);
                f = q;
        } else if (!ct)
                return httpd_queue_error(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                         "The request has no Content-Type: send the mesh as "
                                         "model/gltf-binary, model/gltf+json, model/obj, "
                                         "model/stl, model/ply, model/off, or "
                                         "application/octet-stream with ?format=.");
        else if (!(f = media_format(ct)))
                return httpd_queue_error(c, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                         "Content-Type %s is not a mesh type: send "
                                         "model/gltf-binary, model/gltf+json, model/obj, "
                                         "model/stl, model/ply, model/off, or "
                                         "application/octet-stream with ?format=.", ct);
        snprintf(r->mesh_format, sizeof(r->mesh_format), "%s", f);
        return 0;
}

/* ---- the query string ---- */

static const struct query_option {
        const char *name;
        char type;
        bool segment, predict;
} query_options[] = {
        { "points", 'u', true, true },        { "prompts", 'u', true, false },
        { "seed", 't', true, true },          { "post_process", 'b', true, true },
        { "threshold", 'd', true, true },     { "output", 's', true, false },
        { "format", 's', true, true },        { "prompt", 's', false, true },
};

static int parse_value(const char *v, char type, job_option *o) {
        char *end;
        errno = 0;
        switch (type) {
        case 'u': {
                unsigned long long n = strtoull(v, &end, 10);
                if (errno || end == v || *end || *v == '-' || n > UINT32_MAX)
                        return -EINVAL;
                o->u = (uint32_t) n;
                return 0;
        }
        case 't':
                o->t = strtoull(v, &end, 10);
                return errno || end == v || *end || *v == '-' ? -EINVAL : 0;
        case 'd':
                o->d = strtod(v, &end);
                return errno || end == v || *end || !isfinite(o->d) ? -EINVAL : 0;
        case 'b': {
                int b = parse_bool(v);
                if (b < 0)
                        return -EINVAL;
                o->b = b;
                return 0;
        }
        }
        return -EINVAL;
}

/* "x,y,z": three finite numbers. */
static int parse_prompt(const char *v, double p[3]) {
        const char *s = v;
        for (int i = 0; i < 3; i++) {
                char *end;
                errno = 0;
                p[i] = strtod(s, &end);
                if (errno || end == s || !isfinite(p[i]) || *end != (i < 2 ? ',' : '\0'))
                        return -EINVAL;
                s = end + 1;
        }
        return 0;
}

typedef struct query_state {
        hreq *r;
        char error[512];
} query_state;

static const struct query_option *find_option(const char *key) {
        for (size_t i = 0; i < sizeof(query_options) / sizeof(query_options[0]); i++)
                if (strcmp(key, query_options[i].name) == 0)
                        return &query_options[i];
        return NULL;
}

static int add_prompt(query_state *q, const char *value) {
        hreq *r = q->r;
        double p[3];
        if (!value || parse_prompt(value, p) < 0) {
                snprintf(q->error, sizeof(q->error), "prompt=%s is not a point: give "
                         "prompt=x,y,z with three finite numbers.", value ?: "");
                return MHD_NO;
        }
        double(*n)[3] = realloc(r->prompts, (r->n_prompts + 1) * sizeof(*n));
        if (!n) {
                snprintf(q->error, sizeof(q->error), "Out of memory.");
                return MHD_NO;
        }
        r->prompts = n;
        memcpy(r->prompts[r->n_prompts++], p, sizeof(p));
        return MHD_YES;
}

static enum MHD_Result on_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value) {
        query_state *q = cls;
        hreq *r = q->r;
        const struct query_option *opt = find_option(key);
        const char *what = r->ep == EP_SEGMENT ? "segment" : "predict";
        if (!opt || (r->ep == EP_SEGMENT ? !opt->segment : !opt->predict)) {
                snprintf(q->error, sizeof(q->error), "%s takes no option \"%s\"; it takes %s.",
                         what, key,
                         r->ep == EP_SEGMENT
                                 ? "points, prompts, seed, post_process, threshold, output and "
                                   "format"
                                 : "prompt (repeated), points, seed, post_process, threshold and "
                                   "format");
                return MHD_NO;
        }
        if (strcmp(key, "prompt") == 0)
                return add_prompt(q, value);
        if (opt->type == 's')
                return MHD_YES; /* format and output: read by name below */
        for (unsigned i = 0; i < r->n_opts; i++)
                if (strcmp(r->opts[i].name, key) == 0) {
                        snprintf(q->error, sizeof(q->error), "%s is given twice.", key);
                        return MHD_NO;
                }
        job_option *o = &r->opts[r->n_opts];
        o->name = opt->name;
        o->type = opt->type;
        if (!value || parse_value(value, opt->type, o) < 0) {
                snprintf(q->error, sizeof(q->error), "%s=%s is not %s.", key, value ?: "",
                         opt->type == 'b'   ? "true or false"
                         : opt->type == 'd' ? "a number"
                                            : "a whole number");
                return MHD_NO;
        }
        r->n_opts++;
        return MHD_YES;
}

int httpd_parse_job(struct MHD_Connection *c, hreq *r) {
        query_state q = { .r = r };
        if (MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, on_query_arg, &q) < 0 ||
            q.error[0])
                return httpd_queue_error(c, MHD_HTTP_BAD_REQUEST, "%s", q.error);
        if (r->ep == EP_PREDICT && r->n_prompts == 0)
                return httpd_queue_error(c, MHD_HTTP_BAD_REQUEST,
                                         "predict needs at least one prompt=x,y,z.");
        const char *out = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "output");
        if (r->ep == EP_PREDICT)
                out = "json";
        else if (!out)
                out = "glb";
        else if (!in_list(out, out_formats, sizeof(out_formats) / sizeof(*out_formats)))
                return httpd_queue_error(c, MHD_HTTP_BAD_REQUEST,
                                         "output=%s is not an output format: glb, ply, json or "
                                         "png.", out);
        snprintf(r->out_format, sizeof(r->out_format), "%s", out);
        return parse_mesh_format(c, r);
}
