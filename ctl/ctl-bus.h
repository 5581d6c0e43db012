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
 * bus, and waits until the bus has taken the connection. Returns 0 or a negative errno, for
 * ctl_bus_fail(NULL, r, ...): no bus socket, or nobody listening on it, is "p3samd is not
 * running"; a bus that drops the connection before taking it refuses this user (-EACCES). */
int ctl_bus_open(sd_bus **ret);

/* The name that ctl_bus_call() and ctl_bus_reply_error() give to an AccessDenied that the bus
 * sent itself, by its policy, before p3samd saw the call; ctl_bus_fail() says so. */
#define CTL_ERROR_BUS_DENIED "org.p3sam.ctl.Error.BusPolicyDenied"

/* The error of the error reply into e, renamed CTL_ERROR_BUS_DENIED where the bus sent an
 * AccessDenied. Returns its negative errno. */
int ctl_bus_reply_error(sd_bus_message *reply, sd_bus_error *e);

/* sd_bus_call(), but an AccessDenied of the bus's policy comes back as CTL_ERROR_BUS_DENIED:
 * sd_bus_call() drops the error reply, and with it its sender, which tells the bus's refusal
 * from p3samd's. Returns 1, or a negative errno with e set. */
int ctl_bus_call(sd_bus *bus, sd_bus_message *m, uint64_t usec, sd_bus_error *e,
                 sd_bus_message **ret_reply);

/* ctl_bus_call() of member on the daemon's object path, with CTL_SLOW_CALL_USEC; types and
 * the arguments as for sd_bus_message_append() (types may be NULL). Interactive authorization
 * follows sd_bus_set_allow_interactive_authorization() of bus. */
int ctl_bus_call_method(sd_bus *bus, const char *path, const char *iface, const char *member,
                        sd_bus_error *e, sd_bus_message **ret_reply, const char *types, ...);

/* Says why a call failed, in one sentence, and returns the exit code: the daemon is not on
 * the bus, or the bus could not start it, 5; access denied 4 (the daemon's sentence), anything
 * else 1. what ("clear the GPU memory") is used when the error carries no message; e may be
 * NULL. */
int ctl_bus_fail(const sd_bus_error *e, int r, const char *what);

/* True when e means that nobody owns the daemon's name, and the bus could not start it either
 * where it tried (D-Bus activation). */
bool ctl_bus_error_is_no_daemon(const sd_bus_error *e, int r);
