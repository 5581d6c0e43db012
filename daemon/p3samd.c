/* SPDX-License-Identifier: MIT */
/* p3samd: segments 3D meshes into parts with P3-SAM, as a D-Bus system service. */
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "heap-policy.h"
#include "log.h"
#include "manager.h"
#include "omp-env.h"

#define P3_SERVICE_USER "p3sam"

static void help(void) {
        printf("Usage: p3samd [OPTIONS]\n"
               "Segment 3D meshes into parts with P3-SAM, as a D-Bus service (%s).\n\n"
               "  --config FILE         read FILE and FILE.d/*.conf instead of\n"
               "                        /etc/p3sam/p3samd.conf and p3samd.conf.d/*.conf\n"
               "  --bus system|user     the bus to serve on (default: system;\n"
               "                        DBUS_SYSTEM_BUS_ADDRESS is honoured); on the user\n"
               "                        bus the daemon never switches users\n"
               "  --bus-name NAME       the name to own (default: %s)\n"
               "  --keep-user           started as root, do not switch to the %s user\n"
               "  --introspect          print the D-Bus interface XML and exit\n"
               "  --version             print the version and exit\n"
               "  -h, --help            show this help\n",
               P3_BUS_NAME, P3_BUS_NAME, P3_SERVICE_USER);
}

typedef struct args {
        const char *config, *bus_name;
        bool user_bus, keep_user;
} args;

/* Returns -1 to run, or an exit status. */
static int parse_args(int argc, char **argv, args *a) {
        enum { ARG_CONFIG = 0x100, ARG_BUS, ARG_BUS_NAME, ARG_KEEP_USER, ARG_INTROSPECT, ARG_VERSION };
        static const struct option opts[] = {
                { "config", required_argument, NULL, ARG_CONFIG },
                { "bus", required_argument, NULL, ARG_BUS },
                { "bus-name", required_argument, NULL, ARG_BUS_NAME },
                { "keep-user", no_argument, NULL, ARG_KEEP_USER },
                { "introspect", no_argument, NULL, ARG_INTROSPECT },
                { "version", no_argument, NULL, ARG_VERSION },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;
        *a = (args) { .bus_name = P3_BUS_NAME };
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                switch (c) {
                case ARG_CONFIG: a->config = optarg; break;
                case ARG_BUS_NAME: a->bus_name = optarg; break;
                case ARG_KEEP_USER: a->keep_user = true; break;
                case ARG_BUS:
                        if (strcmp(optarg, "system") != 0 && strcmp(optarg, "user") != 0) {
                                log_error("--bus takes \"system\" or \"user\".");
                                return 2;
                        }
                        a->user_bus = strcmp(optarg, "user") == 0;
                        break;
                case ARG_INTROSPECT: return manager_print_introspection(stdout) < 0;
                case ARG_VERSION: puts("p3samd " P3_VERSION); return 0;
                case 'h': help(); return 0;
                default: fprintf(stderr, "Try 'p3samd --help'.\n"); return 2;
                }
        if (optind < argc) {
                log_error("unexpected argument \"%s\".", argv[optind]);
                return 2;
        }
        return -1;
}

/* Started as root by hand (systemd gives a service its User= and sets INVOCATION_ID), switch
 * to the service user when it exists: the model and the callers' data need no root. Never on a
 * user bus: that daemon serves the session of whoever started it (a batch job's, typically),
 * and a session bus admits only its own user, so the service user could not even connect. */
static int drop_privileges(const args *a) {
        if (a->user_bus) {
                struct passwd *pw = getpwuid(geteuid());

                log_info("serving the session bus of uid %u (%s); --bus user never switches users",
                         (unsigned) geteuid(), pw ? pw->pw_name : "no passwd entry");
                return 0;
        }
        if (a->keep_user || geteuid() != 0 || getenv("INVOCATION_ID"))
                return 0;
        struct passwd *pw = getpwnam(P3_SERVICE_USER);
        if (!pw)
                return 0;
        if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
            setuid(pw->pw_uid) < 0)
                return -errno;
        log_info("running as user %s", pw->pw_name);
        return 0;
}

/* The exit status. A session bus goes away when its session ends (dbus-run-session ends it
 * with its command, at the end of a batch job): for a daemon that serves that session this is
 * the normal end, as SIGTERM is, not the failure that losing the system bus is. */
static int session_end_status(const args *a, const manager *m) {
        if (a->user_bus && m->exit_status != 0 && m->bus && sd_bus_is_open(m->bus) <= 0) {
                log_info("the session bus has gone: the session ended");
                return 0;
        }
        return m->exit_status;
}

int main(int argc, char **argv) {
        p3_omp_env_setup(argv);
        heap_policy_setup();
        args a;
        int status = parse_args(argc, argv, &a);
        if (status >= 0)
                return status;
        signal(SIGPIPE, SIG_IGN); /* a caller's pipe closing is an error, not our death */

        uv_loop_t *loop = uv_default_loop();
        manager *m = NULL;
        p3_err err = {};
        int r = drop_privileges(&a);
        if (r < 0) {
                log_error_errno(r, "cannot switch to the %s user", P3_SERVICE_USER);
                return 1;
        }
        r = manager_new(loop, a.config, &m, &err);
        if (r >= 0) {
                m->bus_name = a.bus_name;
                r = manager_connect(m, a.user_bus, &err);
        }
        if (r >= 0)
                r = manager_start(m);
        if (r < 0) {
                log_error("%s.", p3_err_msg(&err, r));
                manager_free(m);
                return 1;
        }
        uv_run(loop, UV_RUN_DEFAULT);
        status = session_end_status(&a, m);
        manager_free(m);
        uv_loop_close(loop);
        return status;
}
