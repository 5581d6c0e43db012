/* SPDX-License-Identifier: MIT */
/* p3samctl: the admin tool of p3samd. Verbs live in their own files (ctl-*.c); this header is
 * what they share: the documented exit codes and the global options. */
#pragma once

#include <stdbool.h>

#include "error.h"

/* Exit codes (documented in p3samctl(1) and tested). */
enum {
        CTL_EXIT_OK = 0,
        CTL_EXIT_FAILURE = 1,
        CTL_EXIT_USAGE = 2,
        CTL_EXIT_CANCELLED = 3,
        CTL_EXIT_DENIED = 4,
        CTL_EXIT_NO_DAEMON = 5,
};

typedef struct ctl_global {
        bool user_bus;      /* --user: the session bus instead of the system bus */
        int instance;       /* --instance N: org.p3sam.Segmenter1.gpuN; -1: the plain name */
        const char *bus_name;
} ctl_global;

extern ctl_global ctl_args;

/* Each verb gets its own argv (argv[0] = the verb) and returns an exit code. */
int verb_segment(int argc, char **argv);
int verb_predict(int argc, char **argv);
int verb_status(int argc, char **argv);
int verb_jobs(int argc, char **argv);
int verb_cancel(int argc, char **argv);
int verb_clear_gpu(int argc, char **argv);
int verb_reload(int argc, char **argv);
int verb_set_idle_timeout(int argc, char **argv);
int verb_setup_swap(int argc, char **argv);   /* ctl-swap.c */
int verb_fetch_model(int argc, char **argv);  /* ctl-fetch.c */

struct option;

/* getopt reads "-5M" as the options -5 and -M, and a verb whose arguments are sizes, time
 * spans or numbers would then complain about an option instead of the value. Returns a copy of
 * argv (free() it; the strings stay argv's) in which every argument that starts with "-" and a
 * digit, and is not the value of a long option of opts, comes after a "--", so that getopt
 * hands it over as a positional argument. *argc is updated; NULL when out of memory. */
char **ctl_argv_values_last(int *argc, char **argv, const struct option *opts);

/* The option that getopt just refused (c is '?' or ':'), as typed: "-x" for a short one,
 * else the argument ("--bogus"). buf holds a short one. */
const char *ctl_bad_option(int c, char **argv, char buf[static 3]);

/* "p3samctl: <sentence>" on stderr (one line). Returns code. */
int ctl_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
