/* SPDX-License-Identifier: MIT */
/* p3samctl: the command-line tool of p3samd. Global options, then one verb; each verb parses
 * the rest itself (ctl-*.c) and returns one of the exit codes of ctl.h. */
#include <ctype.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ctl-bus.h"

ctl_global ctl_args = { .instance = -1 };

int ctl_fail(int code, const char *fmt, ...) {
        va_list ap;
        fflush(stdout);
        fputs("p3samctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return code;
}

/* "-5M", "-1", "-.5": meant as a value, since no option of p3samctl is a digit. */
static bool is_negative_value(const char *arg) {
        const char *d = arg[0] == '-' && arg[1] == '.' ? arg + 2 : arg + 1;
        return arg[0] == '-' && isdigit((unsigned char) *d);
}

/* "--path" (or an unambiguous start of it, as getopt_long accepts) when it takes the next
 * argument as its value; "--path=X" does not. */
static bool takes_next_arg(const char *arg, const struct option *opts) {
        if (strncmp(arg, "--", 2) != 0 || !arg[2] || strchr(arg, '='))
                return false;
        for (; opts && opts->name; opts++)
                if (opts->has_arg == required_argument &&
                    strncmp(opts->name, arg + 2, strlen(arg + 2)) == 0)
                        return true;
        return false;
}

static bool is_moved_value(int i, char **argv, const struct option *opts) {
        return i > 0 && is_negative_value(argv[i]) && !takes_next_arg(argv[i - 1], opts);
}

char **ctl_argv_values_last(int *argc, char **argv, const struct option *opts) {
        /* at most one "--" more than argv has, and the NULL */
        char **out = calloc((size_t) *argc + 2, sizeof(char *));
        int n = 0, end = 1;
        if (!out)
                return NULL;
        while (end < *argc && strcmp(argv[end], "--") != 0)
                end++;
        for (int i = 0; i < end; i++)
                if (!is_moved_value(i, argv, opts))
                        out[n++] = argv[i];
        /* Nothing to move: argv as it is. Nor behind a "--path" that lacks its value, which
         * would take the "--" for it: getopt then complains of the "-5M" instead. */
        if (n == end || takes_next_arg(out[n - 1], opts)) {
                memcpy(out, argv, sizeof(char *) * (size_t) *argc);
                return out;
        }
        out[n++] = (char *) "--";
        for (int i = 1; i < end; i++)
                if (is_moved_value(i, argv, opts))
                        out[n++] = argv[i];
        for (int i = end + 1; i < *argc; i++)
                out[n++] = argv[i];
        *argc = n;
        return out;
}

const char *ctl_bad_option(int c, char **argv, char buf[static 3]) {
        const char *arg = argv[optind - 1];
        /* A missing value is always that of the argument just read, and "--json=x" is a long
         * option given a value it does not take. Otherwise a short option inside "-xy" leaves
         * optind on its argument or just past it, so that only optopt names it. */
        if (c == ':' || (strncmp(arg, "--", 2) == 0 && strchr(arg, '=')) || optopt <= 0 ||
            optopt >= 0x80 || !isgraph(optopt))
                return arg;
        buf[0] = '-';
        buf[1] = (char) optopt;
        buf[2] = '\0';
        return buf;
}

static const struct verb {
        const char *name;
        int (*run)(int argc, char **argv);
        const char *summary;
} verbs[] = {
        { "segment", verb_segment, "segment a mesh into parts" },
        { "predict", verb_predict, "predict masks for prompt points on a mesh" },
        { "status", verb_status, "show the daemon's state" },
        { "jobs", verb_jobs, "list the jobs" },
        { "cancel", verb_cancel, "cancel a job" },
        { "clear-gpu", verb_clear_gpu, "take the model off the GPU now" },
        { "reload", verb_reload, "read the configuration and the model again" },
        { "set-idle-timeout", verb_set_idle_timeout, "set when an idle model leaves the GPU" },
        { "setup-swap", verb_setup_swap, "set up swap space for large models" },
        { "fetch-model", verb_fetch_model, "download and check the model weights" },
};

static void help(void) {
        printf("Usage: p3samctl [OPTIONS] VERB [ARGS...]\n"
               "Segment 3D meshes with p3samd and manage it.\n\n"
               "Verbs:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                printf("  %-18s %s\n", verbs[i].name, verbs[i].summary);
        printf("\nOptions:\n"
               "      --user            talk to p3samd on the user bus, not the system bus\n"
               "      --instance N      talk to the instance on GPU N (org.p3sam.Segmenter1.gpuN)\n"
               "  -h, --help            show this help (p3samctl VERB --help: the verb's)\n"
               "      --version         show the version\n\n"
               "Exit status: 0 ok, 1 failure, 2 usage, 3 job cancelled, 4 access denied,\n"
               "5 p3samd not running.\n");
}

/* The options before the verb; returns -1 to go on, else an exit code. */
static int parse_global(int argc, char **argv) {
        static const struct option opts[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, CTL_ARG_VERSION },
                CTL_GLOBAL_OPTIONS,
                {},
        };
        int c;
        /* "+": stop at the verb, whose options are its own */
        while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return CTL_EXIT_OK;
                case CTL_ARG_VERSION:
                        puts("p3samctl " P3_VERSION);
                        return CTL_EXIT_OK;
                default: {
                        int r = ctl_parse_option_common(c, "", argv);
                        if (r >= 0)
                                return r;
                }
                }
        return -1;
}

int main(int argc, char **argv) {
        opterr = 0; /* ctl_parse_option_common() says it in our words */
        int r = parse_global(argc, argv);
        if (r >= 0)
                return r;
        if (optind >= argc)
                return ctl_fail(CTL_EXIT_USAGE, "Name a verb; p3samctl --help lists them.");
        const char *name = argv[optind];
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (strcmp(name, verbs[i].name) == 0)
                        return verbs[i].run(argc - optind, argv + optind);
        return ctl_fail(CTL_EXIT_USAGE, "Unknown verb \"%s\"; p3samctl --help lists them.", name);
}
