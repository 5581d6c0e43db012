/* SPDX-License-Identifier: MIT */
/* p3sam-httpd: the HTTP gateway to p3samd (see p3sam-httpd(8)). The options, the listening
 * socket (from systemd, or --listen), the loop, and the exit after an idle period when
 * socket-activated. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/log.h"
#include "httpd.h"
#include "parse-util.h"

#define DEFAULT_MAX_REQUESTS 8
#define DEFAULT_REQUEST_USEC (UINT64_C(600) * 1000000)
#define DEFAULT_IDLE_EXIT_USEC (UINT64_C(300) * 1000000)

static void help(void) {
        printf("Usage: p3sam-httpd [OPTIONS]\n"
               "The HTTP gateway to p3samd: POST /api/mesh/segment, /api/mesh/predict,\n"
               "/api/mesh/clear_gpu_memory, GET /api/status. See p3sam-httpd(8).\n\n"
               "      --listen ADDRESS:PORT   listen here (127.0.0.1:5000, [::1]:5000) instead\n"
               "                              of on the socket systemd passes\n"
               "      --instance N            talk to p3samd@N (org.p3sam.Segmenter1.gpuN)\n"
               "      --max-requests N        requests in flight at once (default %d)\n"
               "      --request-timeout SPAN  longest a request may take (default 10min)\n"
               "      --idle-exit SPAN        exit when idle this long, socket-activated only\n"
               "                              (default 5min; 0: never)\n"
               "      --debug                 log each job\n"
               "  -h, --help                  show this help\n"
               "      --version               show the version\n",
               DEFAULT_MAX_REQUESTS);
}

enum { ARG_LISTEN = 0x100, ARG_INSTANCE, ARG_MAX, ARG_TIMEOUT, ARG_IDLE, ARG_DEBUG,
       ARG_VERSION };

/* A time span as p3samd.conf writes them ("30s", "10min"); 0 and "infinity": never. */
static int parse_span(const char *opt, const char *v, uint64_t *ret) {
        if (parse_timespan_usec(v, ret) < 0) {
                fprintf(stderr, "p3sam-httpd: %s takes a time span (30s, 10min, 0), not "
                        "\"%s\".\n", opt, v);
                return -EINVAL;
        }
        if (*ret == USEC_INFINITY)
                *ret = 0;
        return 0;
}

static int parse_uint(const char *opt, const char *v, long lo, long hi, long *ret) {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno || end == v || *end || n < lo || n > hi) {
                fprintf(stderr, "p3sam-httpd: %s takes a number from %ld to %ld, not \"%s\".\n",
                        opt, lo, hi, v);
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

/* 0 to go on, 1 to exit 0 (--help), a negative errno for a usage error. */
static int parse_argv(int argc, char **argv, httpd_args *a) {
        static const struct option opts[] = {
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "instance", required_argument, NULL, ARG_INSTANCE },
                { "max-requests", required_argument, NULL, ARG_MAX },
                { "request-timeout", required_argument, NULL, ARG_TIMEOUT },
                { "idle-exit", required_argument, NULL, ARG_IDLE },
                { "debug", no_argument, NULL, ARG_DEBUG },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        long n;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                int r = 0;
                switch (c) {
                case ARG_LISTEN:
                        a->listen = optarg;
                        break;
                case ARG_INSTANCE:
                        r = parse_uint("--instance", optarg, 0, 9999, &n);
                        a->instance = (int) n;
                        break;
                case ARG_MAX:
                        r = parse_uint("--max-requests", optarg, 1, 1024, &n);
                        a->max_requests = (unsigned) n;
                        break;
                case ARG_TIMEOUT:
                        r = parse_span("--request-timeout", optarg, &a->request_usec);
                        break;
                case ARG_IDLE:
                        r = parse_span("--idle-exit", optarg, &a->idle_exit_usec);
                        break;
                case ARG_DEBUG:
                        log_set_max_level(LOG_DEBUG);
                        break;
                case 'h':
                        help();
                        return 1;
                case ARG_VERSION:
                        printf("p3sam-httpd %s\n", P3_VERSION);
                        return 1;
                default:
                        fprintf(stderr, "p3sam-httpd: see --help for the options.\n");
                        return -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        if (optind < argc) {
                fprintf(stderr, "p3sam-httpd: unexpected argument \"%s\"; see --help.\n",
                        argv[optind]);
                return -EINVAL;
        }
        return 0;
}

/* ADDRESS:PORT, IPv4 or [IPv6]; a socket bound and listening there. */
static int listen_on(const char *spec) {
        struct sockaddr_storage ss = {};
        socklen_t len;
        char host[64];
        const char *colon = strrchr(spec, ':');
        long port;
        if (!colon || (size_t) (colon - spec) >= sizeof(host) ||
            parse_uint("--listen's port", colon + 1, 0, 65535, &port) < 0)
                return log_error_errno(-EINVAL, "--listen takes ADDRESS:PORT, not \"%s\".", spec);
        memcpy(host, spec, (size_t) (colon - spec));
        host[colon - spec] = 0;
        struct sockaddr_in *in4 = (struct sockaddr_in *) &ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
        size_t hl = strlen(host);
        if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
                host[hl - 1] = 0;
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t) port);
                len = sizeof(*in6);
                if (inet_pton(AF_INET6, host + 1, &in6->sin6_addr) != 1)
                        return log_error_errno(-EINVAL, "\"%s\" is not an IPv6 address.",
                                               host + 1);
        } else {
                in4->sin_family = AF_INET;
                in4->sin_port = htons((uint16_t) port);
                len = sizeof(*in4);
                if (inet_pton(AF_INET, host, &in4->sin_addr) != 1)
                        return log_error_errno(-EINVAL, "\"%s\" is not an IPv4 address "
                                               "(write IPv6 ones in brackets).", host);
        }
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1;
        if (fd < 0)
                return log_error_errno(-errno, "Cannot make a socket");
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *) &ss, len) < 0 || listen(fd, SOMAXCONN) < 0) {
                int err = -errno;
                close(fd);
                return log_error_errno(err, "Cannot listen on %s", spec);
        }
        /* port 0: the kernel picks one, and the log says which (the tests use that) */
        char name[INET6_ADDRSTRLEN];
        len = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *) &ss, &len) == 0)
                log_info("Listening on %s%s%s:%u.", ss.ss_family == AF_INET6 ? "[" : "",
                         inet_ntop(ss.ss_family, ss.ss_family == AF_INET6
                                                         ? (void *) &in6->sin6_addr
                                                         : (void *) &in4->sin_addr,
                                   name, sizeof(name)) ?: "?",
                         ss.ss_family == AF_INET6 ? "]" : "",
                         ntohs(ss.ss_family == AF_INET6 ? in6->sin6_port : in4->sin_port));
        return fd;
}

/* The one socket systemd passes (p3sam-httpd.socket), or --listen's. */
static int get_listen_fd(httpd *s) {
        if (s->args.listen)
                return listen_on(s->args.listen);
        int n = sd_listen_fds(true);
        if (n < 0)
                return log_error_errno(n, "Cannot read the sockets systemd passed");
        if (n != 1)
                return log_error_errno(-EINVAL, "p3sam-httpd needs one listening socket from "
                                       "systemd (p3sam-httpd.socket), got %d; or run it with "
                                       "--listen ADDRESS:PORT.", n);
        if (sd_is_socket(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
                return log_error_errno(-EINVAL, "The socket systemd passed is not a listening "
                                       "stream socket.");
        s->socket_activated = true;
        return SD_LISTEN_FDS_START;
}

static int on_idle(sd_event_source *src, uint64_t usec, void *userdata) {
        httpd *s = userdata;
        log_info("Idle for a while: exiting (the socket starts the gateway again).");
        (void) sd_notify(false, "STOPPING=1");
        return sd_event_exit(s->event, 0);
}

void httpd_idle_update(httpd *s) {
        bool idle = s->connections == 0 && s->in_flight == 0;
        if (!s->socket_activated || !s->args.idle_exit_usec)
                return;
        if (!idle) {
                (void) sd_event_source_set_enabled(s->idle_timer, SD_EVENT_OFF);
                return;
        }
        if (s->idle_timer && sd_event_source_get_enabled(s->idle_timer, NULL) > 0)
                return;
        if (!s->idle_timer &&
            sd_event_add_time_relative(s->event, &s->idle_timer, CLOCK_MONOTONIC,
                                       s->args.idle_exit_usec, 0, on_idle, s) < 0) {
                log_warning("Cannot arm the idle exit: the gateway stays.");
                return;
        }
        (void) sd_event_source_set_time_relative(s->idle_timer, s->args.idle_exit_usec);
        (void) sd_event_source_set_enabled(s->idle_timer, SD_EVENT_ONESHOT);
}

static int run(httpd *s) {
        sigset_t mask;
        int err = sd_event_default(&s->event);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        /* a client that goes away while its answer is sent must not kill the gateway */
        signal(SIGPIPE, SIG_IGN);
        if (err >= 0 && sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                err = -errno;
        if (err >= 0)
                err = sd_event_add_signal(s->event, NULL, SIGTERM, NULL, NULL);
        if (err >= 0)
                err = sd_event_add_signal(s->event, NULL, SIGINT, NULL, NULL);
        if (err < 0)
                return log_error_errno(err, "Cannot set up the event loop");
        int fd = get_listen_fd(s);
        if (fd < 0)
                return fd;
        if ((err = httpd_server_start(s, fd)) < 0)
                return err;
        /* not fatal: p3samd may come later, and each request connects again if need be */
        (void) httpd_bus_connect(s);
        httpd_idle_update(s);
        (void) sd_notify(false, "READY=1\nSTATUS=Serving HTTP for p3samd.");
        log_info("Serving %s for %s.", s->args.listen ?: "the socket from systemd",
                 httpd_bus_name(s));
        err = sd_event_loop(s->event);
        /* our jobs: p3samd cancels the jobs of a client that leaves the bus */
        httpd_server_stop(s);
        s->bus = sd_bus_flush_close_unref(s->bus);
        s->idle_timer = sd_event_source_disable_unref(s->idle_timer);
        s->event = sd_event_unref(s->event);
        return err;
}

int main(int argc, char **argv) {
        httpd s = {
                .args = {
                        .instance = -1,
                        .max_requests = DEFAULT_MAX_REQUESTS,
                        .request_usec = DEFAULT_REQUEST_USEC,
                        .idle_exit_usec = DEFAULT_IDLE_EXIT_USEC,
                },
        };
        log_set_program("p3sam-httpd");
        int r = parse_argv(argc, argv, &s.args);
        if (r != 0)
                return r > 0 ? EXIT_SUCCESS : 2;
        return run(&s) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
