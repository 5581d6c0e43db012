/* SPDX-License-Identifier: MIT */
/* Who sent a call, as the bus daemon recorded it when the sender connected: its euid and groups
 * (GetConnectionCredentials: UnixUserID, UnixGroupIDs, from SO_PEERCRED and SO_PEERGROUPS),
 * never read from /proc/<pid>, where the pid may by now be another process's.
 *
 * On dbus-daemon a message carries no credentials of its own, so each sender costs one round
 * trip to the bus daemon. It is made asynchronously, and the answer is kept per unique name
 * until that name leaves the bus (NameOwnerChanged): a unique name is never reused, so the
 * answer stays true for as long as it is kept. The cache holds at most a few thousand names
 * (the oldest goes first). A direct (peer-to-peer) connection has no bus daemon to ask: its
 * peer's euid is all there is.
 *
 * One cache per bus connection, made on first use; sd-bus is a loop-thread object and so is
 * this module. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

typedef struct bus_creds {
        uid_t uid;       /* the euid; valid if have_uid */
        uint32_t *gids;  /* primary and supplementary; valid if have_gids */
        size_t n_gids;
        bool have_uid, have_gids;
} bus_creds;

typedef struct bus_creds_request bus_creds_request;

/* r < 0: the credentials could not be read (creds NULL). creds is valid during the call. */
typedef void (*bus_creds_cb)(void *userdata, int r, const bus_creds *creds);

/* The sender's credentials for call.
 * Returns 1: known already, cb has run before this returned; 0: pending, cb runs once, later,
 * from sd_bus_process() (unless cancelled); < 0: a negative errno, cb is not called.
 * ret (may be NULL) is set before cb can run, NULL unless 0 is returned. */
int bus_creds_get(sd_bus_message *call, bus_creds_cb cb, void *userdata, bus_creds_request **ret);
/* Forget a pending request: cb will not be called. NULL and calls from inside cb are no-ops. */
void bus_creds_request_cancel(bus_creds_request *q);

/* For handlers that must answer before they return (a property getter or setter): the cached
 * answer, or one synchronous round trip on a miss. *ret is valid until the loop runs again. */
int bus_creds_get_sync(sd_bus_message *call, const bus_creds **ret);

/* Drop the cache of bus (and its match) before the bus goes. */
void bus_creds_forget(sd_bus *bus);

/* Entries held now (for tests and the debug log). */
size_t bus_creds_cached(sd_bus *bus);
