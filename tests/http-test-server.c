/* SPDX-License-Identifier: MIT */
/* A tiny HTTP/1.1 server for tests/test-fetch.sh, on 127.0.0.1 only: serves the files of one
 * directory with Range support, and misbehaves on request so that the client's resume logic
 * can be tested: --cut-after N closes each response after N body bytes, --ignore-range
 * answers every Range request with the whole file (200). It prints its port on stdout, logs
 * one line per request (method, path, Range, status), and exits after --max-requests
 * requests or --timeout seconds, so that a failing test cannot leave it behind.
 *
 * Usage: http-test-server --dir DIR [--log FILE] [--cut-after N] [--ignore-range]
 *                         [--max-requests M] [--timeout T] */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "macro.h"

typedef struct server_args {
        const char *dir;
        const char *log;
        int64_t cut_after; /* -1: never */
        bool ignore_range;
        unsigned max_requests;
        unsigned timeout_s;
} server_args;

typedef struct request {
        char method[8];
        char path[256];
        char range[64]; /* the Range header's value, "" if none */
} request;

static FILE *log_file;

/* ---- reading a request -------------------------------------------------------------------- */

/* Reads up to the blank line that ends the headers; bodies are not expected. */
static int read_head(int fd, char *buf, size_t size) {
        size_t n = 0;
        while (n + 1 < size) {
                ssize_t k = read(fd, buf + n, size - 1 - n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return -EPROTO;
                n += (size_t) k;
                buf[n] = 0;
                if (strstr(buf, "\r\n\r\n"))
                        return 0;
        }
        return -E2BIG;
}

static int parse_request(char *head, request *q) {
        char *save = NULL;
        char *line = strtok_r(head, "\r\n", &save);
        *q = (request) {};
        if (!line || sscanf(line, "%7s %255s HTTP/1.%*d", q->method, q->path) != 2)
                return -EPROTO;
        while ((line = strtok_r(NULL, "\r\n", &save)))
                if (strncasecmp(line, "Range:", 6) == 0)
                        snprintf(q->range, sizeof(q->range), "%s", line + 6 + strspn(line + 6, " "));
        return 0;
}

/* "bytes=START-" or "bytes=START-END"; anything else is ignored as RFC 9110 allows. */
static bool parse_range(const char *range, uint64_t size, uint64_t *start, uint64_t *end) {
        uint64_t a, b;
        int used = 0;
        if (sscanf(range, "bytes=%" SCNu64 "-%n", &a, &used) != 1 || !used)
                return false;
        *start = a;
        *end = size ? size - 1 : 0;
        if (range[used] && sscanf(range + used, "%" SCNu64, &b) == 1 && b < *end)
                *end = b;
        return true;
}

/* ---- answering ---------------------------------------------------------------------------- */

static int write_all(int fd, const void *p, size_t n) {
        const char *c = p;
        while (n > 0) {
                ssize_t k = write(fd, c, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                c += k;
                n -= (size_t) k;
        }
        return 0;
}

static int send_status(int fd, int code, const char *reason, const char *extra) {
        char head[512];
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n%sConnection: close\r\n\r\n",
                         code, reason, extra ? extra : "");
        return write_all(fd, head, (size_t) n);
}

/* Body bytes [start, start + len), stopping early after cut bytes (-1: never). */
static int send_body(int fd, int file, uint64_t start, uint64_t len, int64_t cut) {
        char buf[64 * 1024];
        uint64_t sent = 0;
        if (cut >= 0 && (uint64_t) cut < len)
                len = (uint64_t) cut;
        while (sent < len) {
                ssize_t k = pread(file, buf, MIN(sizeof(buf), len - sent), (off_t) (start + sent));
                if (k <= 0)
                        return -EIO;
                int r = write_all(fd, buf, (size_t) k);
                if (r < 0)
                        return r;
                sent += (uint64_t) k;
        }
        return 0;
}

/* Which part of a file of size bytes to send: sets the status and the range. */
static int choose_range(const server_args *a, const request *q, uint64_t size, uint64_t *start,
                        uint64_t *end) {
        *start = 0;
        *end = size ? size - 1 : 0;
        if (!q->range[0] || a->ignore_range || !parse_range(q->range, size, start, end))
                return 200;
        return *start >= size || *end < *start ? 416 : 206;
}

static int send_file(int fd, const server_args *a, const request *q, int file, uint64_t size) {
        uint64_t start, end;
        int code = choose_range(a, q, size, &start, &end);
        char head[512], extra[128];

        fprintf(log_file, "%s %s range=%s status=%d\n", q->method, q->path,
                q->range[0] ? q->range : "-", code);
        if (code == 416) {
                snprintf(extra, sizeof(extra), "Content-Range: bytes */%" PRIu64 "\r\n", size);
                return send_status(fd, 416, "Range Not Satisfiable", extra);
        }
        uint64_t len = size ? end - start + 1 : 0;
        extra[0] = 0;
        if (code == 206)
                snprintf(extra, sizeof(extra), "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64 "\r\n",
                         start, end, size);
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.1 %d %s\r\nContent-Type: application/octet-stream\r\n"
                         "Content-Length: %" PRIu64 "\r\n%s%sConnection: close\r\n\r\n",
                         code, code == 206 ? "Partial Content" : "OK", len, extra,
                         a->ignore_range ? "" : "Accept-Ranges: bytes\r\n");
        int r = write_all(fd, head, (size_t) n);
        if (r < 0 || strcmp(q->method, "HEAD") == 0)
                return r;
        return send_body(fd, file, start, len, a->cut_after);
}

static int serve(int fd, const server_args *a) {
        char head[8192];
        request q;
        int r = read_head(fd, head, sizeof(head));
        if (r < 0 || parse_request(head, &q) < 0)
                return send_status(fd, 400, "Bad Request", NULL);
        if (strcmp(q.method, "GET") != 0 && strcmp(q.method, "HEAD") != 0)
                return send_status(fd, 405, "Method Not Allowed", NULL);

        /* One flat directory: no way out of it, no hidden files. */
        const char *name = q.path + 1;
        if (q.path[0] != '/' || !name[0] || strchr(name, '/') || name[0] == '.') {
                fprintf(log_file, "%s %s range=- status=404\n", q.method, q.path);
                return send_status(fd, 404, "Not Found", NULL);
        }
        _cleanup_free_ char *path = NULL;
        if (asprintf(&path, "%s/%s", a->dir, name) < 0)
                return -ENOMEM;
        _cleanup_close_ int file = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (file < 0 || fstat(file, &st) < 0 || !S_ISREG(st.st_mode)) {
                fprintf(log_file, "%s %s range=- status=404\n", q.method, q.path);
                return send_status(fd, 404, "Not Found", NULL);
        }
        return send_file(fd, a, &q, file, (uint64_t) st.st_size);
}

/* ---- the server --------------------------------------------------------------------------- */

static int listen_loopback(uint16_t *port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 8) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return -errno;
        *port = ntohs(sa.sin_port);
        return TAKE_FD(fd);
}

static void handle(int conn, const server_args *a) {
        /* A client that connects and says nothing must not wedge the test. */
        struct timeval tv = { .tv_sec = 5 };
        (void) setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void) serve(conn, a);
        fflush(log_file);
        /* FIN after the last byte sent: a cut response reads as a connection closed early. */
        (void) shutdown(conn, SHUT_WR);
        close(conn);
}

static int parse_args(int argc, char **argv, server_args *a) {
        static const struct option opts[] = {
                { "dir", required_argument, NULL, 'd' },
                { "log", required_argument, NULL, 'l' },
                { "cut-after", required_argument, NULL, 'c' },
                { "ignore-range", no_argument, NULL, 'i' },
                { "max-requests", required_argument, NULL, 'm' },
                { "timeout", required_argument, NULL, 't' },
                {},
        };
        int c;
        *a = (server_args) { .cut_after = -1, .max_requests = 10, .timeout_s = 60 };
        while ((c = getopt_long(argc, argv, "d:l:c:im:t:", opts, NULL)) >= 0) {
                switch (c) {
                case 'd': a->dir = optarg; break;
                case 'l': a->log = optarg; break;
                case 'c': a->cut_after = strtoll(optarg, NULL, 10); break;
                case 'i': a->ignore_range = true; break;
                case 'm': a->max_requests = (unsigned) strtoul(optarg, NULL, 10); break;
                case 't': a->timeout_s = (unsigned) strtoul(optarg, NULL, 10); break;
                default: return -EINVAL;
                }
        }
        return a->dir && optind == argc ? 0 : -EINVAL;
}

int main(int argc, char **argv) {
        server_args a;
        uint16_t port = 0;

        if (parse_args(argc, argv, &a) < 0) {
                fprintf(stderr, "Usage: http-test-server --dir DIR [--log FILE] [--cut-after N] "
                                "[--ignore-range] [--max-requests M] [--timeout T]\n");
                return 2;
        }
        log_file = a.log ? fopen(a.log, "ae") : stderr;
        if (!log_file) {
                perror(a.log);
                return 1;
        }
        signal(SIGPIPE, SIG_IGN); /* a client that hangs up early is part of the tests */
        alarm(a.timeout_s);       /* SIGALRM ends us, whatever we are waiting for */
        _cleanup_close_ int fd = listen_loopback(&port);
        if (fd < 0) {
                fprintf(stderr, "http-test-server: cannot listen on 127.0.0.1: %s\n", strerror(-fd));
                return 1;
        }
        printf("%u\n", port);
        fflush(stdout);

        for (unsigned served = 0; served < a.max_requests;) {
                int conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
                if (conn < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        return 1;
                }
                handle(conn, &a);
                served++;
        }
        return 0;
}
