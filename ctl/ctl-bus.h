/* SPDX-License-Identifier: MIT */
/* What the verbs of p3samctl share to talk to p3samd: the options that pick the daemon (--user,
 * --instance N, accepted before or after the verb), the connection, and the mapping of D-Bus
 * errors onto the documented exit codes with one sentence each. */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "ctl.h"

#define CTL_BUS_PATH "/org/p3sam/Segmenter1"
#define CTL_BUS_IFACE "org.p3sam.Segmenter1"
#define CTL_JOB_IFACE "org.p3sam.Segmenter1.Job"
#define CTL_JOB_PREFIX "/org/p3sam/Segmenter1/job/"

/* Calls that may wait for the model to load or for polkit to ask the user. */
#define CTL_SLOW_CALL_USEC (UINT64_C(300) * 1000000)

/* getopt values of the global options; verbs put CTL_GLOBAL_OPTIONS in their option table and
 * hand what they do not know to ctl_parse_option_common(). */
enum {
        CTL_ARG_USER = 0x1000,
        CTL_ARG_INSTANCE,
        CTL_ARG_VERSION,
};
#define CTL_GLOBAL_OPTIONS                                                                    \
        { "user", no_argument, NULL, CTL_ARG_USER },                                          \
        { "instance", required_argument, NULL, CTL_ARG_INSTANCE }

/* Handles --user, --instance and getopt's own complaints ('?', ':') for verb. Returns -1 when
 * c was a global option and parsing goes on, else an exit code (CTL_EXIT_USAGE). argv is the
 * verb's own. */
int ctl_parse_option_common(int c, const char *verb, char **argv);

/* The bus name of the daemon that ctl_args selects. */
const char *ctl_bus_name(void);

/* Connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS honoured) or with --user the session
 * bus. Returns 0 or a negative errno, for ctl_bus_fail(NULL, r, ...): no bus socket, or
 * nobody listening on it, is "p3samd is not running". */
int ctl_bus_open(sd_bus **ret);

/* Says why a call failed, in one sentence, and returns the exit code: the daemon is not on
 * the bus, or the bus could not start it, 5; access denied 4 (the daemon's sentence), anything
 * else 1. what ("clear the GPU memory") is used when the error carries no message; e may be
 * NULL. */
int ctl_bus_fail(const sd_bus_error *e, int r, const char *what);

/* True when e means that nobody owns the daemon's name, and the bus could not start it either
 * where it tried (D-Bus activation). */
bool ctl_bus_error_is_no_daemon(const sd_bus_error *e, int r);
