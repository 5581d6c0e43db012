/* SPDX-License-Identifier: MIT */
/* The connection to p3samd and what its failures mean for the exit code. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl-bus.h"

int ctl_parse_option_common(int c, const char *verb, char **argv) {
        char buf[3];
        switch (c) {
        case CTL_ARG_USER:
                ctl_args.user_bus = true;
                return -1;
        case CTL_ARG_INSTANCE: {
                char *end;
                errno = 0;
                long n = strtol(optarg, &end, 10);
                if (errno || end == optarg || *end || n < 0 || n > 9999)
                        return ctl_fail(CTL_EXIT_USAGE,
                                        "--instance takes a GPU number (0, 1, ...), not \"%s\".",
                                        optarg);
                ctl_args.instance = (int) n;
                return -1;
        }
        case ':':
                return ctl_fail(CTL_EXIT_USAGE, "Option %s needs a value; see p3samctl %s%s--help.",
                                ctl_bad_option(c, argv, buf), verb, *verb ? " " : "");
        default:
                return ctl_fail(CTL_EXIT_USAGE, "Unknown option %s; see p3samctl %s%s--help.",
                                ctl_bad_option(c, argv, buf), verb, *verb ? " " : "");
        }
}

const char *ctl_bus_name(void) {
        static char name[64];
        if (ctl_args.bus_name)
                return ctl_args.bus_name;
        if (ctl_args.instance < 0)
                return CTL_BUS_IFACE;
        snprintf(name, sizeof(name), CTL_BUS_IFACE ".gpu%d", ctl_args.instance);
        return name;
}

/* How to start the daemon that was asked for: the unit of the plain name or of an instance. */
static int fail_no_daemon(void) {
        const char *user = ctl_args.user_bus ? "--user " : "";
        if (ctl_args.instance < 0)
                return ctl_fail(CTL_EXIT_NO_DAEMON,
                                "p3samd is not running (start it with: systemctl %sstart p3samd)",
                                user);
        return ctl_fail(CTL_EXIT_NO_DAEMON,
                        "p3samd is not running as %s (start it with: systemctl %sstart "
                        "p3samd@%d)",
                        ctl_bus_name(), user, ctl_args.instance);
}

/* The bus tried to start p3samd for the call (D-Bus activation) and could not: its launch
 * helper or the daemon failed (Spawn.ChildExited, .ExecFailed, .ServiceNotFound, ...), systemd
 * refused or failed the unit (any org.freedesktop.systemd1 error: p3samd never sends one), or
 * the daemon did not take its name in time (TimedOut, which only the bus sends; sd-bus's own
 * timeouts are Timeout and NoReply). */
static bool error_is_start_failure(const sd_bus_error *e) {
        static const char spawn[] = "org.freedesktop.DBus.Error.Spawn.";
        static const char systemd[] = "org.freedesktop.systemd1.";
        if (!e || !sd_bus_error_is_set(e))
                return false;
        return strncmp(e->name, spawn, strlen(spawn)) == 0 ||
               strncmp(e->name, systemd, strlen(systemd)) == 0 ||
               sd_bus_error_has_name(e, "org.freedesktop.DBus.Error.TimedOut");
}

/* The daemon's own sentences end with a period; sd-bus's and ours may not. */
static const char *full_stop(const char *s) {
        size_t n = strlen(s);
        return n > 0 && strchr(".!?", s[n - 1]) ? "" : ".";
}

/* Not running, and the bus's attempt to start it failed: its reason, since "start it with"
 * would only fail the same way. */
static int fail_not_started(const sd_bus_error *e) {
        const char *msg = e->message && *e->message ? e->message : e->name;
        if (ctl_args.instance < 0)
                return ctl_fail(CTL_EXIT_NO_DAEMON,
                                "p3samd is not running and could not be started: %s%s", msg,
                                full_stop(msg));
        return ctl_fail(CTL_EXIT_NO_DAEMON,
                        "p3samd is not running as %s and could not be started: %s%s",
                        ctl_bus_name(), msg, full_stop(msg));
}

/* No socket at the address, nobody listening on it, or no address at all (a user bus
 * without XDG_RUNTIME_DIR): no bus, so no daemon either. */
static bool errno_is_no_bus(int r) {
        return r == -ENOENT || r == -ECONNREFUSED || r == -ENOTCONN || r == -ECONNRESET ||
               r == -EPIPE || r == -ENOMEDIUM;
}

/* Waits until the bus has taken us (authentication, Hello). A bus that accepted the
 * connection and then drops it there refuses this user: a <deny user=...> in its policy, or
 * its limit of connections per user. That is -EACCES, not the "no bus" of a lost connection. */
static int wait_ready(sd_bus *bus) {
        int r;
        while ((r = sd_bus_is_ready(bus)) == 0) {
                r = sd_bus_process(bus, NULL);
                if (r == 0)
                        r = sd_bus_wait(bus, UINT64_MAX);
                if (r < 0)
                        break;
        }
        if (r == -ECONNRESET || r == -EPIPE || r == -ENOTCONN || r == -EPERM)
                return -EACCES;
        return r < 0 ? r : 0;
}

int ctl_bus_open(sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r = ctl_args.user_bus ? sd_bus_open_user(&bus) : sd_bus_open_system(&bus);
        if (r < 0)
                return r;
        if ((r = wait_ready(bus)) < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

int ctl_bus_reply_error(sd_bus_message *reply, sd_bus_error *e) {
        const sd_bus_error *err = sd_bus_message_get_error(reply);
        if (!err)
                return sd_bus_error_set_errno(e, EIO);
        /* sd-bus's own errors (a timeout, a lost connection) are sent in the bus's name too,
         * but none of them is AccessDenied */
        if (sd_bus_error_has_name(err, SD_BUS_ERROR_ACCESS_DENIED) &&
            strcmp(sd_bus_message_get_sender(reply) ?: "", "org.freedesktop.DBus") == 0)
                (void) sd_bus_error_set(e, CTL_ERROR_BUS_DENIED, err->message);
        else
                (void) sd_bus_error_copy(e, err);
        return -(sd_bus_message_get_errno(reply) ?: EIO);
}

static int on_call_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        sd_bus_message **reply = userdata;
        *reply = sd_bus_message_ref(m);
        return 0;
}

int ctl_bus_call(sd_bus *bus, sd_bus_message *m, uint64_t usec, sd_bus_error *e,
                 sd_bus_message **ret_reply) {
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = sd_bus_call_async(bus, &slot, m, on_call_reply, &reply, usec);
        while (r >= 0 && !reply) {
                r = sd_bus_process(bus, NULL);
                if (r == 0)
                        r = sd_bus_wait(bus, UINT64_MAX);
        }
        if (r < 0)
                return sd_bus_error_set_errno(e, r);
        if (sd_bus_message_is_method_error(reply, NULL))
                return ctl_bus_reply_error(reply, e);
        if (ret_reply)
                *ret_reply = TAKE_PTR(reply);
        return 1;
}

int ctl_bus_call_method(sd_bus *bus, const char *path, const char *iface, const char *member,
                        sd_bus_error *e, sd_bus_message **ret_reply, const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        va_list ap;
        int r = sd_bus_message_new_method_call(bus, &m, ctl_bus_name(), path, iface, member);
        if (r >= 0 && types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
        }
        if (r < 0)
                return sd_bus_error_set_errno(e, r);
        return ctl_bus_call(bus, m, CTL_SLOW_CALL_USEC, e, ret_reply);
}

bool ctl_bus_error_is_no_daemon(const sd_bus_error *e, int r) {
        if (e && sd_bus_error_is_set(e))
                return sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN,
                                              SD_BUS_ERROR_NAME_HAS_NO_OWNER) ||
                       error_is_start_failure(e);
        return errno_is_no_bus(r);
}

/* The bus refused: its policy, before p3samd could see anything. p3samd may well be running,
 * so "not running" would send the user the wrong way. */
static int fail_bus_denied(bool connection) {
        if (connection)
                return ctl_fail(CTL_EXIT_DENIED, "The bus refused this user's connection (uid %u): "
                                                 "its policy or its limits keep this user off it.",
                                (unsigned) getuid());
        return ctl_fail(CTL_EXIT_DENIED, "Access denied by the D-Bus policy: this user (uid %u) "
                                         "may not call %s (the bus refused the call before "
                                         "p3samd saw it).",
                        (unsigned) getuid(), ctl_bus_name());
}

int ctl_bus_fail(const sd_bus_error *e, int r, const char *what) {
        bool have_e = e && sd_bus_error_is_set(e);
        if (error_is_start_failure(e))
                return fail_not_started(e);
        if (ctl_bus_error_is_no_daemon(e, r))
                return fail_no_daemon();
        if (sd_bus_error_has_name(e, CTL_ERROR_BUS_DENIED) || (!have_e && r == -EACCES))
                return fail_bus_denied(!have_e);
        const char *msg = have_e && e->message && *e->message ? e->message : NULL;
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED))
                return msg ? ctl_fail(CTL_EXIT_DENIED, "%s%s", msg, full_stop(msg))
                           : ctl_fail(CTL_EXIT_DENIED, "Access denied: to %s needs root or a "
                                                       "polkit authorization.", what);
        if (sd_bus_error_has_names(e, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT) ||
            r == -ETIMEDOUT)
                return ctl_fail(CTL_EXIT_FAILURE, "p3samd did not answer in time to %s.", what);
        if (msg)
                return ctl_fail(CTL_EXIT_FAILURE, "%s%s", msg, full_stop(msg));
        return ctl_fail(CTL_EXIT_FAILURE, "Cannot %s: %s.", what, strerror(r < 0 ? -r : EIO));
}
