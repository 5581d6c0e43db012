/* SPDX-License-Identifier: MIT */
#include "bus-polkit.h"

#include <errno.h>
#include <grp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus-creds.h"
#include "bus-util.h"
#include "macro.h"

#define POLKIT_NAME "org.freedesktop.PolicyKit1"
#define POLKIT_PATH "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_IFACE "org.freedesktop.PolicyKit1.Authority"
#define POLKIT_ALLOW_USER_INTERACTION 1u
/* An authentication agent waits for a person: minutes, not sd-bus's default 25 s. */
#define POLKIT_INTERACTIVE_TIMEOUT_USEC (5 * 60 * UINT64_C(1000000))

/* A decision in two asynchronous steps: the sender's credentials (bus-creds.c, usually
 * cached), then, unless root or the group rule decide, polkit. */
struct bus_auth_query {
        sd_bus_message *call;           /* the call being authorized */
        bus_creds_request *creds_req;   /* step one in flight */
        sd_bus_slot *slot;              /* step two: the CheckAuthorization in flight */
        char *action;
        char *group;                    /* allow_group, may be NULL */
        char rule[256];                 /* who passes without polkit, for the sentences */
        bool interactive;
        uid_t uid;                      /* the sender's, once step one is done */
        bus_auth_cb cb;
        void *userdata;
        bool deciding;  /* inside bus_check_authorization(): the caller frees q */
        bool decided;   /* cb has run */
        bool in_callback;
};

static void query_free(bus_auth_query *q) {
        bus_creds_request_cancel(q->creds_req);
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->call);
        free(q->action);
        free(q->group);
        free(q);
}

/* Runs cb once; frees q unless bus_check_authorization() is still on the stack. */
static void query_finish(bus_auth_query *q, int result, uid_t uid, const char *why) {
        q->decided = true;
        q->in_callback = true;
        q->cb(q->userdata, result, uid, why);
        q->in_callback = false;
        if (!q->deciding)
                query_free(q);
}

static bool sender_in_group(const bus_creds *ids, gid_t gid) {
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
        log_warning_errno(0,
                      "polkit: group '%s' does not exist; its members rule is ignored", name);
}

/* The group rule: 1 when the sender is a member. Writes into rule who passes without polkit,
 * starting with root (who: "root", or root and the owner of a user bus). */
static int check_group(const bus_creds *ids, const char *group, const char *who, char *rule,
                       size_t size) {
        gid_t gid = (gid_t) -1; /* no group has it; quiets GCC's maybe-uninitialized */
        int r;

        if (!group) {
                snprintf(rule, size, "only %s", who);
                return 0;
        }
        r = group_lookup(group, &gid);
        if (r == -ENOENT) {
                warn_missing_group(group);
                snprintf(rule, size, "only %s (group '%s' does not exist)", who, group);
                return 0;
        }
        if (r < 0) {
                /* A failing NSS lookup cannot vouch for anyone: the rule fails closed. */
                log_warning_errno(r, "polkit: cannot look up group '%s'", group);
                snprintf(rule, size, "only %s (group '%s' could not be looked up)", who, group);
                return 0;
        }
        if (!ids->have_gids) {
                /* An old bus daemon; guessing from /proc is not an option (see above). */
                log_warning_errno(0,
                              "polkit: the bus daemon does not report group ids, "
                              "group '%s' cannot be checked",
                              group);
                snprintf(rule, size, "only %s (group membership cannot be checked)", who);
                return 0;
        }
        snprintf(rule, size, "only %s and members of group '%s'", who, group);
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
                snprintf(why, size, "polkit's answer about '%s' could not be read: %s.", q->action,
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
        query_finish(q, result, q->uid, why);
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

int bus_user_bus_owner(sd_bus *bus, uid_t *ret) {
        const char *scope = NULL;
        int r = sd_bus_get_scope(bus, &scope);

        if (r < 0)
                return r;
        if (strcmp(scope, "user") != 0)
                return -ENODATA;
        *ret = geteuid();
        return 0;
}

/* Step two, with the credentials known: root, the user bus's owner, the group, or polkit. */
static void on_creds(void *userdata, int r, const bus_creds *creds) {
        bus_auth_query *q = userdata;
        char why[768], who[80] = "root";
        uid_t owner;

        q->creds_req = NULL;
        if (r < 0) {
                snprintf(why, sizeof(why), "The caller's credentials could not be read: %s.",
                         strerror(-r));
                query_finish(q, r, (uid_t) -1, why);
                return;
        }
        q->uid = creds->have_uid ? creds->uid : (uid_t) -1;
        if (creds->have_uid && creds->uid == 0) {
                query_finish(q, 1, 0, "The caller is root.");
                return;
        }
        if (bus_user_bus_owner(sd_bus_message_get_bus(q->call), &owner) >= 0) {
                if (creds->have_uid && creds->uid == owner) {
                        snprintf(why, sizeof(why), "The caller is uid %u, the owner of this user "
                                 "bus.", (unsigned) owner);
                        query_finish(q, 1, owner, why);
                        return;
                }
                snprintf(who, sizeof(who), "root and uid %u (the owner of this user bus)",
                         (unsigned) owner);
        }
        if (check_group(creds, q->group, who, q->rule, sizeof(q->rule)) > 0) {
                snprintf(why, sizeof(why), "The caller is a member of group '%s'.", q->group);
                query_finish(q, 1, q->uid, why);
                return;
        }
        r = polkit_query_start(q->call, q, q->interactive);
        if (r < 0) {
                /* The same outcome as a polkit that answers with an error: refused. */
                char reason[128];

                snprintf(reason, sizeof(reason), "polkit could not be asked (%s)", strerror(-r));
                why_denied(why, sizeof(why), q, reason);
                query_finish(q, 0, q->uid, why);
        }
}

int bus_check_authorization(sd_bus_message *call, const char *action, const char *allow_group,
                            bool polkit_interactive, bus_auth_cb cb, void *userdata,
                            bus_auth_query **ret_query) {
        bus_auth_query *q;
        int r;

        if (ret_query)
                *ret_query = NULL;
        if (!call || !action || !cb)
                return -EINVAL;

        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        *q = (bus_auth_query) { .call = sd_bus_message_ref(call), .action = strdup(action),
                                .group = allow_group ? strdup(allow_group) : NULL,
                                .interactive = polkit_interactive, .cb = cb,
                                .userdata = userdata, .deciding = true, .uid = (uid_t) -1 };
        snprintf(q->rule, sizeof(q->rule), "only root");
        if (!q->action || (allow_group && !q->group)) {
                query_free(q);
                return -ENOMEM;
        }
        r = bus_creds_get(call, on_creds, q, &q->creds_req);
        q->deciding = false;
        if (r < 0 || q->decided) {
                query_free(q);
                return r < 0 ? r : 1;
        }
        if (ret_query)
                *ret_query = q;
        return 0;
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
        const bus_creds *c = NULL;
        int r = bus_creds_get_sync(m, &c);
        if (r < 0)
                return r;
        if (!c->have_uid)
                return -ENODATA;
        *ret = c->uid;
        return 0;
}
