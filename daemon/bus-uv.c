/* SPDX-License-Identifier: MIT */
#include "bus-uv.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "bus-util.h"
#include "macro.h"
#include "time-util.h"

/* sd_bus_process() calls per wake-up. sd-bus reads exactly one message per call and leaves the
 * rest in the socket (level-triggered, so the poll fires again) or in its read queue (then
 * sd_bus_get_timeout() says 0), so stopping early loses nothing; it lets the loop's other
 * handles (job progress, idle timer) run while a client floods us. sd-event's own
 * integration dispatches one message per iteration. */
#define DISPATCH_BUDGET 64

#define POLL_RETRY_USEC (100 * UINT64_C(1000))

/* The uv_poll lives apart from bus_uv so that it can be replaced if sd-bus ever hands out
 * another descriptor: a closing handle must stay allocated until its close callback. */
typedef struct bus_uv_poll {
        uv_poll_t handle;
        bus_uv *owner;
        int bus_fd; /* sd-bus's descriptor, to notice a change */
        int fd;     /* our duplicate of it: the one libuv watches, owned */
        int events; /* UV_READABLE|UV_WRITABLE now started, 0 when stopped */
} bus_uv_poll;

struct bus_uv {
        sd_bus *bus; /* owned reference, NULL once freed */
        uv_loop_t *loop;
        uv_prepare_t prepare;
        uv_timer_t timer;
        bus_uv_poll *poll;       /* NULL while no descriptor is watched */
        uint64_t timer_deadline; /* absolute µs the timer is armed for; UINT64_MAX: stopped */
        unsigned n_handles;      /* libuv handles not yet closed; the last close frees us */
        bool freed;
        bool disconnected;
        bus_uv_disconnect_fn on_disconnect;
        void *disconnect_userdata;
};

static void bus_uv_dispatch(bus_uv *b);

static void handle_closed(bus_uv *b) {
        if (--b->n_handles == 0)
                free(b);
}

static void on_poll_closed(uv_handle_t *h) {
        bus_uv_poll *p = h->data;
        bus_uv *b = p->owner;

        free(p);
        handle_closed(b);
}

static void on_owned_handle_closed(uv_handle_t *h) {
        handle_closed(h->data);
}

/* uv_close() stops the watcher (epoll_ctl DEL) before it returns, so our duplicate can be
 * closed right away rather than in the close callback: nothing is left open if the loop never
 * runs again. */
static void poll_close(bus_uv_poll *p) {
        uv_close((uv_handle_t *) &p->handle, on_poll_closed);
        close(p->fd);
        p->fd = -1;
}

static void on_poll(uv_poll_t *h, int status, int events) {
        bus_uv_poll *p = h->data;

        /* On POLLERR libuv stops the handle itself and reports UV_EBADF: note that, so the
         * next prepare starts it again, and let sd_bus_process() find out what happened. */
        if (status < 0)
                p->events = 0;
        bus_uv_dispatch(p->owner);
}

/* libuv must not watch sd-bus's own descriptor: sd-bus closes it inside sd_bus_process() when
 * the connection ends, and a number reused before we could stop the poll would have libuv
 * watching (and later epoll_ctl DEL-ing) someone else's file. A duplicate is closed only by
 * us. */
static int poll_new(bus_uv *b, int bus_fd, bus_uv_poll **ret) {
        _cleanup_free_ bus_uv_poll *p = NULL;
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->owner = b;
        p->bus_fd = bus_fd;
        p->fd = fcntl(bus_fd, F_DUPFD_CLOEXEC, 3);
        if (p->fd < 0)
                return -errno;

        r = uv_poll_init(b->loop, &p->handle, p->fd);
        if (r < 0) {
                close(p->fd);
                return r;
        }
        p->handle.data = p;
        b->n_handles++;
        *ret = TAKE_PTR(p);
        return 0;
}

static int poll_update(bus_uv *b, int bus_events) {
        int fd, want, r;

        fd = sd_bus_get_fd(b->bus);
        if (fd < 0)
                return fd;

        if (b->poll && b->poll->bus_fd != fd) {
                log_warning_errno(0,
                              "bus-uv: bus descriptor changed (%d -> %d), rewatching",
                              b->poll->bus_fd, fd);
                poll_close(b->poll);
                b->poll = NULL;
        }

        want = ((bus_events & POLLIN) ? UV_READABLE : 0) |
               ((bus_events & POLLOUT) ? UV_WRITABLE : 0);
        if (!b->poll) {
                if (want == 0)
                        return 0;
                r = poll_new(b, fd, &b->poll);
                if (r < 0)
                        return r;
        }

        /* Restarting costs an epoll_ctl DEL and ADD: only when the wish changed. */
        if (want == b->poll->events)
                return 0;
        r = want ? uv_poll_start(&b->poll->handle, want, on_poll) : uv_poll_stop(&b->poll->handle);
        if (r < 0)
                return r;
        b->poll->events = want;
        return 0;
}

static void on_timer(uv_timer_t *h) {
        bus_uv *b = h->data;

        b->timer_deadline = UINT64_MAX;
        bus_uv_dispatch(b);
}

/* deadline: absolute CLOCK_MONOTONIC µs, 0 for "now", UINT64_MAX for none. libuv counts in
 * whole ms from its cached loop time: round up, so that we wake after the deadline rather than
 * before. Waking a little early anyway (coarse loop clock) costs one empty sd_bus_process() and
 * a re-arm with the rest. */
static void timer_update(bus_uv *b, uint64_t deadline) {
        uint64_t now, ms = 0;

        if (deadline == b->timer_deadline)
                return;
        b->timer_deadline = deadline;
        if (deadline == UINT64_MAX) {
                uv_timer_stop(&b->timer);
                return;
        }

        now = now_monotonic_usec();
        if (deadline > now) {
                ms = DIV_ROUND_UP(deadline - now, 1000);
                uv_update_time(b->loop);
        }
        uv_timer_start(&b->timer, on_timer, ms, 0);
}

static void bus_uv_disconnected(bus_uv *b) {
        if (b->disconnected)
                return;
        b->disconnected = true;

        if (b->poll) {
                poll_close(b->poll);
                b->poll = NULL;
        }
        timer_update(b, UINT64_MAX);
        /* Nothing left to wait for: let the loop end unless the owner has more to do. */
        uv_prepare_stop(&b->prepare);

        if (b->on_disconnect)
                b->on_disconnect(b, b->disconnect_userdata); /* may free b's attachment */
}

static void on_prepare(uv_prepare_t *h) {
        bus_uv *b = h->data;
        uint64_t deadline = UINT64_MAX;
        int events, r;

        /* -ENOTCONN once closed (-ECHILD in a forked child): the bus is unusable for good. */
        events = sd_bus_get_events(b->bus);
        if (events < 0) {
                bus_uv_disconnected(b);
                return;
        }

        r = sd_bus_get_timeout(b->bus, &deadline);
        if (r < 0) {
                log_error_errno(r, "bus-uv: cannot read the bus timeout");
                deadline = UINT64_MAX;
        }
        /* No events wanted means messages are already queued: dispatch them now. */
        if (events == 0)
                deadline = 0;

        /* Without a poll (out of descriptors?) the loop could sleep forever: retry soon. */
        r = poll_update(b, events);
        if (r < 0) {
                log_error_errno(r, "bus-uv: cannot watch the bus socket, retrying");
                deadline = MIN(deadline, now_monotonic_usec() + POLL_RETRY_USEC);
        }
        timer_update(b, deadline);
}

/* Called from the poll and the timer. The loop ends early when a handler detached us. */
static void bus_uv_dispatch(bus_uv *b) {
        /* Ours: a method handler may call bus_uv_free() and its owner drop the last reference
         * while sd_bus_process() still runs. */
        _cleanup_(sd_bus_unrefp) sd_bus *bus = sd_bus_ref(b->bus);
        int r;

        for (unsigned i = 0; i < DISPATCH_BUDGET && !b->freed; i++) {
                r = sd_bus_process(bus, NULL);
                if (r == 0)
                        break;
                if (r < 0) {
                        /* -ECONNRESET/-ENOTCONN once closed: reported just below. Anything
                         * else concerns one message; the connection keeps serving. */
                        if (r != -ECONNRESET && r != -ENOTCONN)
                                log_warning_errno(r,
                                              "bus-uv: processing a bus message failed");
                        break;
                }
        }

        if (!b->freed && sd_bus_get_events(bus) < 0)
                bus_uv_disconnected(b);
}

int bus_uv_attach(sd_bus *bus, uv_loop_t *loop, bus_uv **ret) {
        bus_uv *b;
        int r;

        if (!bus || !loop || !ret)
                return -EINVAL;
        r = sd_bus_get_fd(bus);
        if (r < 0)
                return r;

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->loop = loop;
        b->timer_deadline = UINT64_MAX;

        /* Neither init can fail on Unix (they only fill the struct), but if one ever does,
         * an initialized handle must still be closed through the loop. */
        r = uv_prepare_init(loop, &b->prepare);
        if (r < 0) {
                free(b);
                return r;
        }
        b->prepare.data = b;
        b->n_handles = 1;
        r = uv_timer_init(loop, &b->timer);
        if (r < 0) {
                b->freed = true;
                uv_close((uv_handle_t *) &b->prepare, on_owned_handle_closed);
                return r;
        }
        b->timer.data = b;
        b->n_handles = 2;

        b->bus = sd_bus_ref(bus);
        uv_prepare_start(&b->prepare, on_prepare);
        *ret = b;
        return 0;
}

void bus_uv_set_disconnect_handler(bus_uv *b, bus_uv_disconnect_fn fn, void *userdata) {
        b->on_disconnect = fn;
        b->disconnect_userdata = userdata;
}

void bus_uv_free(bus_uv *b) {
        if (!b || b->freed)
                return;
        b->freed = true;

        if (b->poll) {
                poll_close(b->poll);
                b->poll = NULL;
        }
        uv_close((uv_handle_t *) &b->prepare, on_owned_handle_closed);
        uv_close((uv_handle_t *) &b->timer, on_owned_handle_closed);
        b->bus = sd_bus_unref(b->bus);
}
