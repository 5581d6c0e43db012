/* SPDX-License-Identifier: MIT */
/* Authorization of privileged method calls, the way systemd's small daemons do it: root
 * passes, a configured group passes, everyone else is asked about through polkit's D-Bus API
 * (no libpolkit), asynchronously so that the loop keeps serving meanwhile. A polkit that is not
 * on the bus means "denied": then only the root and group rules let anyone in.
 *
 * On a user bus the daemon's own uid passes too: p3samd never switches users there, so that is
 * the user whose session (a batch job, typically) the bus is, and who could stop or ptrace
 * the daemon anyway. A user bus normally has no polkit, and a job's user is rarely in the
 * group. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

typedef struct bus_auth_query bus_auth_query;

/* result: 1 allowed, 0 denied, < 0 a negative errno (the credentials could not be read, or
 * polkit answered something unreadable). uid: the sender's euid as the bus daemon recorded it,
 * (uid_t) -1 if unknown. why: one sentence for the log or for the caller
 * (bus_reply_access_denied()), valid only during the call. */
typedef void (*bus_auth_cb)(void *userdata, int result, uid_t uid, const char *why);

/* Decide whether the sender of call may perform action (a polkit action id).
 *
 * Returns
 *   1  decided already: cb has been called synchronously, before this returned (the sender's
 *      credentials were cached and root, the user bus's owner, a member of allow_group, or
 *      polkit could not even be asked);
 *   0  pending: cb will be called exactly once, later, from sd_bus_process() on the loop,
 *      unless the query is cancelled first;
 *  <0  a negative errno (out of memory, or the bus could not be asked): cb is not called.
 *
 * allow_group may be NULL. A group that does not exist is logged once and otherwise ignored.
 * polkit_interactive lets polkit ask the user through an authentication agent; the caller's
 * own ALLOW_INTERACTIVE_AUTHORIZATION message flag asks for that too.
 *
 * ret_query (may be NULL) is written before cb can run: NULL unless 0 is returned. The query
 * belongs to this module; it is gone once cb has run, so drop the pointer there. A pending
 * query holds a reference on the bus: cancel it before dropping the bus.
 *
 * Credentials: the euid and the groups (primary and supplementary) are those the bus daemon
 * recorded when the sender connected (bus-creds.h), asked for asynchronously and cached per
 * sender: nothing here blocks the loop. A bus daemon that does not report groups (an old
 * dbus-daemon) leaves only root and polkit. */
int bus_check_authorization(sd_bus_message *call, const char *action, const char *allow_group,
                            bool polkit_interactive, bus_auth_cb cb, void *userdata,
                            bus_auth_query **ret_query);

/* Forget a pending query, e.g. because the caller left the bus: cb will not be called.
 * NULL is a no-op; so is a call from inside cb. */
void bus_auth_query_cancel(bus_auth_query *q);

/* The owner of bus when it is a user bus (sd_bus_open_user(): scope "user"): the daemon's own
 * euid. -ENODATA on any other bus. */
int bus_user_bus_owner(sd_bus *bus, uid_t *ret);

/* Reply org.freedesktop.DBus.Error.AccessDenied with sentence (a default if NULL). */
int bus_reply_access_denied(sd_bus_message *call, const char *sentence);

/* The effective uid of the sender of m, from the bus daemon, never from /proc: cached, or one
 * synchronous round trip (bus_creds_get_sync()) for handlers that cannot wait. */
int bus_sender_uid(sd_bus_message *m, uid_t *ret);
