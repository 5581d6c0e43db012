/* SPDX-License-Identifier: MIT */
#include "bus-creds.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus-util.h"
#include "macro.h"

#define CACHE_MAX 4096

typedef struct entry {
        char *name; /* a unique name, ":1.42" */
        bus_creds creds;
        struct entry *prev, *next; /* most recently used first */
} entry;

typedef struct cache {
        sd_bus *bus; /* not referenced: the cache is forgotten before the bus goes */
        sd_bus_slot *match;
        entry *head, *tail;
        size_t n;
} cache;

struct bus_creds_request {
        sd_bus_slot *slot; /* the GetConnectionCredentials in flight */
        char *sender;
        bus_creds_cb cb;
        void *userdata;
        bool in_callback;
};

static cache *the_cache; /* the daemon has one bus; a second one replaces the first's cache */

static void entry_free(entry *e) {
        free(e->name);
        free(e->creds.gids);
        free(e);
}

static void unlink_entry(cache *c, entry *e) {
        if (e->prev)
                e->prev->next = e->next;
        else
                c->head = e->next;
        if (e->next)
                e->next->prev = e->prev;
        else
                c->tail = e->prev;
        e->prev = e->next = NULL;
        c->n--;
}

static void push_front(cache *c, entry *e) {
        e->next = c->head;
        if (c->head)
                c->head->prev = e;
        c->head = e;
        if (!c->tail)
                c->tail = e;
        c->n++;
}

static entry *lookup(cache *c, const char *name) {
        for (entry *e = c->head; e; e = e->next)
                if (strcmp(e->name, name) == 0) {
                        unlink_entry(c, e);
                        push_front(c, e);
                        return e;
                }
        return NULL;
}

static void cache_free(cache *c) {
        if (!c)
                return;
        sd_bus_slot_unref(c->match);
        entry *e;
        while ((e = c->head)) {
                unlink_entry(c, e);
                entry_free(e);
        }
        free(c);
}

/* A name that left the bus: what was known about it is of no use any more. */
static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        cache *c = userdata;
        const char *name, *old_owner, *new_owner;
        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 || *new_owner)
                return 0;
        for (entry *e = c->head; e; e = e->next)
                if (strcmp(e->name, name) == 0) {
                        unlink_entry(c, e);
                        entry_free(e);
                        break;
                }
        return 0;
}

static cache *cache_for(sd_bus *bus) {
        if (the_cache && the_cache->bus == bus)
                return the_cache;
        cache *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->bus = bus;
        /* arg2='' : only departures. Installed without waiting (the loop must not block); a
         * name that leaves before the match is active stays until it ages out, harmlessly,
         * since unique names are never reused. */
        int r = sd_bus_add_match_async(bus, &c->match,
                                       "type='signal',sender='org.freedesktop.DBus',"
                                       "path='/org/freedesktop/DBus',"
                                       "interface='org.freedesktop.DBus',"
                                       "member='NameOwnerChanged',arg2=''",
                                       on_name_owner_changed, NULL, c);
        if (r < 0) {
                log_warning_errno(r, "cannot watch names leaving the bus; credentials are not cached");
                free(c);
                return NULL;
        }
        cache_free(the_cache);
        the_cache = c;
        return c;
}

static int cache_add(cache *c, const char *name, bus_creds *creds /* taken */, entry **ret) {
        entry *e = calloc(1, sizeof(*e));
        if (!e || !(e->name = strdup(name))) {
                free(e);
                free(creds->gids);
                return -ENOMEM;
        }
        e->creds = *creds;
        *creds = (bus_creds) {};
        if (c->n >= CACHE_MAX) {
                entry *old = c->tail;
                unlink_entry(c, old);
                entry_free(old);
        }
        push_front(c, e);
        *ret = e;
        return 0;
}

void bus_creds_forget(sd_bus *bus) {
        if (the_cache && the_cache->bus == bus) {
                cache_free(the_cache);
                the_cache = NULL;
        }
}

size_t bus_creds_cached(sd_bus *bus) {
        return the_cache && the_cache->bus == bus ? the_cache->n : 0;
}

/* GetConnectionCredentials' a{sv}: UnixUserID and UnixGroupIDs; the rest is skipped. */
static int read_credentials(sd_bus_message *reply, bus_creds *ret) {
        const void *gids;
        size_t size;
        const char *key;
        uint32_t u;
        int r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        return r;
                if (strcmp(key, "UnixUserID") == 0) {
                        r = sd_bus_message_read(reply, "v", "u", &u);
                        if (r >= 0) {
                                ret->uid = u;
                                ret->have_uid = true;
                        }
                } else if (strcmp(key, "UnixGroupIDs") == 0) {
                        r = sd_bus_message_enter_container(reply, 'v', "au");
                        if (r >= 0)
                                r = sd_bus_message_read_array(reply, 'u', &gids, &size);
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                        if (r >= 0 && !ret->have_gids) {
                                ret->gids = malloc(MAX(size, (size_t) 1));
                                if (!ret->gids)
                                        return -ENOMEM;
                                memcpy(ret->gids, gids, size);
                                ret->n_gids = size / sizeof(uint32_t);
                                ret->have_gids = true;
                        }
                } else
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        return r;
}

/* Credentials completed from /proc/<pid> could belong to a process that took over the pid of
 * an exited peer: nothing that grants access may come from there. */
static int direct_peer_creds(sd_bus_message *call, bus_creds *ret) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *c = NULL;
        int r = sd_bus_query_sender_creds(call, SD_BUS_CREDS_EUID, &c);
        if (r < 0)
                return r;
        if (sd_bus_creds_get_augmented_mask(c) & SD_BUS_CREDS_EUID)
                return -EPERM;
        r = sd_bus_creds_get_euid(c, &ret->uid);
        ret->have_uid = r >= 0;
        return r;
}

static int parse_reply(sd_bus_message *reply, const char *sender, const bus_creds **ret) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        if (e)
                return -sd_bus_error_get_errno(e) ?: -EIO;
        bus_creds creds = {};
        int r = read_credentials(reply, &creds);
        if (r < 0) {
                free(creds.gids);
                return r;
        }
        entry *en = NULL;
        cache *c = cache_for(sd_bus_message_get_bus(reply));
        if (!c) {
                free(creds.gids);
                return -ENOMEM;
        }
        r = cache_add(c, sender, &creds, &en);
        if (r < 0)
                return r;
        *ret = &en->creds;
        return 0;
}

static void request_free(bus_creds_request *q) {
        sd_bus_slot_unref(q->slot);
        free(q->sender);
        free(q);
}

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        bus_creds_request *q = userdata;
        const bus_creds *creds = NULL;
        int r = parse_reply(reply, q->sender, &creds);
        q->slot = sd_bus_slot_unref(q->slot); /* sd-bus holds its own while this runs */
        q->in_callback = true;
        q->cb(q->userdata, r, r < 0 ? NULL : creds);
        request_free(q);
        return 0;
}

int bus_creds_get(sd_bus_message *call, bus_creds_cb cb, void *userdata, bus_creds_request **ret) {
        sd_bus *bus = sd_bus_message_get_bus(call);
        const char *sender = sd_bus_message_get_sender(call);
        if (ret)
                *ret = NULL;
        if (!sender) {
                bus_creds creds = {};
                int r = direct_peer_creds(call, &creds);
                if (r < 0)
                        return r;
                cb(userdata, 0, &creds);
                return 1;
        }
        cache *c = cache_for(bus);
        entry *e = c ? lookup(c, sender) : NULL;
        if (e) {
                cb(userdata, 0, &e->creds);
                return 1;
        }
        bus_creds_request *q = calloc(1, sizeof(*q));
        if (!q || !(q->sender = strdup(sender))) {
                free(q);
                return -ENOMEM;
        }
        q->cb = cb;
        q->userdata = userdata;
        int r = sd_bus_call_method_async(bus, &q->slot, "org.freedesktop.DBus",
                                         "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                         "GetConnectionCredentials", on_reply, q, "s", sender);
        if (r < 0) {
                request_free(q);
                return r;
        }
        if (ret)
                *ret = q;
        return 0;
}

void bus_creds_request_cancel(bus_creds_request *q) {
        if (!q || q->in_callback)
                return;
        request_free(q);
}

int bus_creds_get_sync(sd_bus_message *call, const bus_creds **ret) {
        static bus_creds direct; /* valid until the next call, as documented */
        sd_bus *bus = sd_bus_message_get_bus(call);
        const char *sender = sd_bus_message_get_sender(call);
        if (!sender) {
                direct = (bus_creds) {};
                int r = direct_peer_creds(call, &direct);
                if (r >= 0)
                        *ret = &direct;
                return r;
        }
        cache *c = cache_for(bus);
        entry *e = c ? lookup(c, sender) : NULL;
        if (e) {
                *ret = &e->creds;
                return 0;
        }
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                   "org.freedesktop.DBus", "GetConnectionCredentials", &error,
                                   &reply, "s", sender);
        if (r < 0)
                return r;
        return parse_reply(reply, sender, ret);
}
