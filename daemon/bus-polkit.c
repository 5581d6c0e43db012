/* SPDX-License-Identifier: MIT */
#include "bus-polkit.h"

#include <errno.h>
#include <grp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus-util.h"
#include "macro.h"

#define POLKIT_NAME "org.freedesktop.PolicyKit1"
#define POLKIT_PATH "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_IFACE "org.freedesktop.PolicyKit1.Authority"
#define POLKIT_ALLOW_USER_INTERACTION 1u
/* An authentication agent waits for a person: minutes, not sd-bus's default 25 s. */
#define POLKIT_INTERACTIVE_TIMEOUT_USEC (5 * 60 * UINT64_C(1000000))

struct bus_auth_query {
        sd_bus_slot *slot; /* the CheckAuthorization in flight; dropping it cancels the call */
        char *action;
        char *rule; /* who passes without polkit, for the sentences */
        bus_auth_cb cb;
        void *userdata;
        bool in_callback;
};

static void query_free(bus_auth_query *q) {
        sd_bus_slot_unref(q->slot);
        free(q->action);
        free(q->rule);
        free(q);
}

/* Who sent a call, as the bus daemon recorded it when the sender connected. */
typedef struct sender_ids {
        sd_bus_message *reply; /* owns gids */
        uid_t uid;             /* the euid; valid if have_uid */
        const uint32_t *gids;  /* primary and supplementary; valid if have_gids */
        size_t n_gids;
        bool have_uid, have_gids;
} sender_ids;

static void sender_ids_done(sender_ids *ids) {
        sd_bus_message_unref(ids->reply);
}

/* Credentials completed from /proc/<pid> could belong to a process that took over the pid of
 * an exited sender: nothing that grants access may come from there. */
static int trusted_euid(sd_bus_creds *c, uid_t *ret) {
        if (sd_bus_creds_get_augmented_mask(c) & SD_BUS_CREDS_EUID)
                return -EPERM;
        return sd_bus_creds_get_euid(c, ret);
}

static int read_credentials(sd_bus_message *reply, sender_ids *ids) {
        const void *gids;
        size_t size;
        const char *key;
        uint32_t u;
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        return r;
                if (strcmp(key, "UnixUserID") == 0) {
                        r = sd_bus_message_read(reply, "v", "u", &u);
                        if (r >= 0) {
                                ids->uid = u;
                                ids->have_uid = true;
                        }
                } else if (strcmp(key, "UnixGroupIDs") == 0) {
                        r = sd_bus_message_enter_container(reply, 'v', "au");
                        if (r >= 0)
                                r = sd_bus_message_read_array(reply, 'u', &gids, &size);
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                        if (r >= 0) {
                                ids->gids = gids;
                                ids->n_gids = size / sizeof(uint32_t);
                                ids->have_gids = true;
                        }
                } else
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        return r;
}

/* One round trip to the bus daemon: its GetConnectionCredentials answers with what it took
 * from SO_PEERCRED and SO_PEERGROUPS at connect time. sd_bus_query_sender_creds() would fill
 * the groups from /proc instead (sd-bus 252 ignores UnixGroupIDs). A direct connection has no
 * bus daemon to ask: its peer's euid is all there is. */
static int sender_ids_get(sd_bus_message *call, sender_ids *ids /* zeroed by the caller */) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *sender = sd_bus_message_get_sender(call);
        int r;

        if (!sender) {
                r = bus_sender_uid(call, &ids->uid);
                ids->have_uid = r >= 0;
                return r;
        }
        r = sd_bus_call_method(sd_bus_message_get_bus(call), "org.freedesktop.DBus",
                               "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "GetConnectionCredentials", &error, &ids->reply, "s", sender);
        if (r < 0)
                return r;
        return read_credentials(ids->reply, ids);
}

static bool sender_in_group(const sender_ids *ids, gid_t gid) {
        for (size_t i = 0; i < ids->n_gids; i++)
                if (ids->gids[i] == gid)
                        return true;
        return false;
}

/* -ENOENT when no such group exists. */
static int group_lookup(const char *name, gid_t *ret) {
        long hint = sysconf(_SC_GETGR_R_SIZE_MAX);
        size_t size = hint > 0 ? (size_t) hint : 1024;

        for (;;) {
                _cleanup_free_ char *buf = malloc(size);
                struct group gr, *res = NULL;
                int r;

                if (!buf)
                        return -ENOMEM;
                r = getgrnam_r(name, &gr, buf, size, &res);
                if (r == 0 && res) {
                        *ret = res->gr_gid;
                        return 0;
                }
                /* getgrnam_r(3): these all mean "not found", depending on the NSS module. */
                if (r == 0 || r == ENOENT || r == ESRCH || r == EBADF || r == EPERM)
                        return -ENOENT;
                if (r != ERANGE || size >= 1024 * 1024)
                        return -r;
                size *= 2;
        }
}

/* A configured group that does not exist is a setup mistake worth one line, not one per
 * call; remembering the last name reported is enough for the one or two groups a daemon
 * names. Loop thread only. */
static void warn_missing_group(const char *name) {
        static char *reported;

        if (reported && strcmp(reported, name) == 0)
                return;
        free(reported);
        reported = strdup(name);
        bus_log_errno(SD_WARNING, 0,
                      "polkit: group '%s' does not exist; its members rule is ignored", name);
}

/* The group rule: 1 when the sender is a member. Writes into rule who passes without polkit. */
static int check_group(const sender_ids *ids, const char *group, char *rule, size_t size) {
        gid_t gid = (gid_t) -1; /* no group has it; quiets GCC's maybe-uninitialized */
        int r;

        if (!group) {
                snprintf(rule, size, "only root");
                return 0;
        }
        r = group_lookup(group, &gid);
        if (r == -ENOENT) {
                warn_missing_group(group);
                snprintf(rule, size, "only root (group '%s' does not exist)", group);
                return 0;
        }
        if (r < 0) {
                /* A failing NSS lookup cannot vouch for anyone: the rule fails closed. */
                bus_log_errno(SD_WARNING, r, "polkit: cannot look up group '%s'", group);
                snprintf(rule, size, "only root (group '%s' could not be looked up)", group);
                return 0;
        }
        if (!ids->have_gids) {
                /* An old bus daemon; guessing from /proc is not an option (see above). */
                bus_log_errno(SD_WARNING, 0,
                              "polkit: the bus daemon does not report group ids, "
                              "group '%s' cannot be checked",
                              group);
                snprintf(rule, size, "only root (group membership cannot be checked)");
                return 0;
        }
        snprintf(rule, size, "only root and members of group '%s'", group);
        return sender_in_group(ids, gid);
}

/* Why a refusal happened, as one sentence for the caller. */
static void why_denied(char *why, size_t size, const bus_auth_query *q, const char *reason) {
        snprintf(why, size, "Access to '%s' denied: %s; without polkit, %s may do this.", q->action,
                 reason, q->rule);
}

/* 1 authorized, 0 denied, < 0 unreadable. A missing polkit, or any error answer from it, is a
 * refusal: we cannot tell a transient failure from a refusal that polkit would give, so the
 * safe side wins and the sentence says what happened. */
static int polkit_read_reply(sd_bus_message *reply, const bus_auth_query *q, char *why,
                             size_t size) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int authorized, challenge, r;

        if (e) {
                if (bus_error_is_unknown_service(e))
                        why_denied(why, size, q, "polkit is not available on the bus");
                else {
                        char reason[256];

                        snprintf(reason, sizeof(reason), "polkit failed (%s: %s)", e->name,
                                 e->message ?: "no message");
                        why_denied(why, size, q, reason);
                }
                return 0;
        }

        r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
        if (r < 0) {
                snprintf(why, size, "polkit's answer about '%s' could not be read: %s", q->action,
                         strerror(-r));
                return r;
        }
        if (authorized) {
                snprintf(why, size, "polkit allows '%s'.", q->action);
                return 1;
        }
        if (challenge)
                why_denied(why, size, q, "polkit requires interactive authentication");
        else
                why_denied(why, size, q, "polkit does not allow it");
        return 0;
}

static int on_polkit_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        bus_auth_query *q = userdata;
        char why[768];
        int result;

        result = polkit_read_reply(reply, q, why, sizeof(why));
        /* sd-bus holds its own reference to the slot while this callback runs. */
        q->slot = sd_bus_slot_unref(q->slot);
        q->in_callback = true;
        q->cb(q->userdata, result, why);
        query_free(q);
        return 0;
}

static int polkit_request_new(sd_bus_message *call, const char *action, bool interactive,
                              sd_bus_message **ret) {
        const char *sender = sd_bus_message_get_sender(call);
        uint32_t flags = interactive ? POLKIT_ALLOW_USER_INTERACTION : 0;
        int r;

        /* A direct (peer-to-peer) connection has no bus name that polkit could look up. */
        if (!sender)
                return -EOPNOTSUPP;

        r = sd_bus_message_new_method_call(sd_bus_message_get_bus(call), ret, POLKIT_NAME,
                                           POLKIT_PATH, POLKIT_IFACE, "CheckAuthorization");
        if (r < 0)
                return r;
        /* subject (sa{sv}), action id, details a{ss} (none), flags, cancellation id (none) */
        r = sd_bus_message_append(*ret, "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s",
                                  sender, action, 0, flags, "");
        if (r < 0)
                *ret = sd_bus_message_unref(*ret);
        return r;
}

static int polkit_query_start(sd_bus_message *call, bus_auth_query *q, bool interactive) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *request = NULL;
        int r;

        /* The caller may ask for an agent too, with the message flag (busctl
         * --allow-interactive-authorization, gdbus ALLOW_INTERACTIVE_AUTHORIZATION). */
        if (sd_bus_message_get_allow_interactive_authorization(call) > 0)
                interactive = true;

        r = polkit_request_new(call, q->action, interactive, &request);
        if (r < 0)
                return r;
        return sd_bus_call_async(sd_bus_message_get_bus(call), &q->slot, request, on_polkit_reply,
                                 q,
                                 interactive ? POLKIT_INTERACTIVE_TIMEOUT_USEC : 0 /* default */);
}

static int query_new(const char *action, const char *rule, bus_auth_cb cb, void *userdata,
                     bus_auth_query **ret) {
        bus_auth_query *q = calloc(1, sizeof(*q));

        if (!q)
                return -ENOMEM;
        q->action = strdup(action);
        q->rule = strdup(rule);
        q->cb = cb;
        q->userdata = userdata;
        if (!q->action || !q->rule) {
                query_free(q);
                return -ENOMEM;
        }
        *ret = q;
        return 0;
}

int bus_check_authorization(sd_bus_message *call, const char *action, const char *allow_group,
                            bool polkit_interactive, bus_auth_cb cb, void *userdata,
                            bus_auth_query **ret_query) {
        _cleanup_(sender_ids_done) sender_ids ids = {};
        bus_auth_query *q = NULL;
        char rule[256], why[768];
        int r;

        if (ret_query)
                *ret_query = NULL;
        if (!call || !action || !cb)
                return -EINVAL;

        r = sender_ids_get(call, &ids);
        if (r < 0)
                return r;

        if (ids.have_uid && ids.uid == 0) {
                cb(userdata, 1, "The caller is root.");
                return 1;
        }
        if (check_group(&ids, allow_group, rule, sizeof(rule)) > 0) {
                snprintf(why, sizeof(why), "The caller is a member of group '%s'.", allow_group);
                cb(userdata, 1, why);
                return 1;
        }

        r = query_new(action, rule, cb, userdata, &q);
        if (r < 0)
                return r;
        r = polkit_query_start(call, q, polkit_interactive);
        if (r == -ENOMEM) {
                query_free(q);
                return r;
        }
        if (r < 0) {
                /* The same outcome as a polkit that answers with an error: refused. */
                char reason[128];

                snprintf(reason, sizeof(reason), "polkit could not be asked (%s)", strerror(-r));
                why_denied(why, sizeof(why), q, reason);
                query_free(q);
                cb(userdata, 0, why);
                return 1;
        }

        if (ret_query)
                *ret_query = q;
        return 0;
}

int bus_check_authorization_sync(sd_bus_message *call, const char *action, char *why,
                                 size_t why_len) {
        _cleanup_(sender_ids_done) sender_ids ids = {};
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *request = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        bus_auth_query q = { .action = (char *) action, .rule = (char *) "only root" };
        int r = sender_ids_get(call, &ids);
        if (r < 0)
                return r;
        if (ids.have_uid && ids.uid == 0) {
                snprintf(why, why_len, "The caller is root.");
                return 1;
        }
        r = polkit_request_new(call, action, false, &request);
        if (r >= 0)
                r = sd_bus_call(sd_bus_message_get_bus(call), request, 0, &e, &reply);
        if (r < 0) {
                /* sd_bus_call turns an error reply into e: read it like the async path does */
                char reason[256];
                snprintf(reason, sizeof(reason), "%s",
                         bus_error_is_unknown_service(&e) ? "polkit is not available on the bus"
                                                          : "polkit could not be asked");
                why_denied(why, why_len, &q, reason);
                return 0;
        }
        return polkit_read_reply(reply, &q, why, why_len);
}

void bus_auth_query_cancel(bus_auth_query *q) {
        /* From inside cb the query is being finished already; it is freed after cb returns. */
        if (!q || q->in_callback)
                return;
        query_free(q);
}

int bus_reply_access_denied(sd_bus_message *call, const char *sentence) {
        return sd_bus_reply_method_errorf(call, SD_BUS_ERROR_ACCESS_DENIED, "%s",
                                          sentence ?: "Access denied.");
}

int bus_sender_uid(sd_bus_message *m, uid_t *ret) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *c = NULL;
        int r;

        r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &c);
        if (r < 0)
                return r;
        return trusted_euid(c, ret);
}
