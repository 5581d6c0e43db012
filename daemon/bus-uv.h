/* SPDX-License-Identifier: MIT */
/* Runs an sd_bus connection inside a libuv loop (STYLE.md, "sd-bus inside libuv").
 *
 * Before every loop iteration a uv_prepare asks sd-bus what it waits for: sd_bus_get_events()
 * becomes a uv_poll on the bus socket, sd_bus_get_timeout() (an absolute CLOCK_MONOTONIC time)
 * becomes a one-shot uv_timer. Whatever touched the bus since the last iteration (a reply sent
 * from a timer, a signal emitted from a uv_async callback) is therefore seen before the loop
 * sleeps again. sd-bus stays a loop-thread object: never call it from another thread.
 *
 * While attached, the loop stays alive (uv_run(UV_RUN_DEFAULT) does not return) until the
 * connection is lost or bus_uv_free() is called. */
#pragma once

#include <systemd/sd-bus.h>
#include <uv.h>

typedef struct bus_uv bus_uv;

/* Called once, from the loop, when the connection is gone for good (the peer or the bus
 * daemon closed it, or it failed). sd-bus has already failed the pending method calls and
 * dispatched its org.freedesktop.DBus.Local.Disconnected signal. The handler may call
 * bus_uv_free(b). Do not set sd_bus_set_exit_on_disconnect(): without an sd_event attached,
 * sd-bus then calls exit() itself. */
typedef void (*bus_uv_disconnect_fn)(bus_uv *b, void *userdata);

/* Attach a started bus (sd_bus_start() called, or sd_bus_open_*()) to loop. Takes a reference
 * on bus for as long as the attachment lives. Returns 0 or a negative errno (-ENOTCONN when
 * the bus has no socket yet). */
int bus_uv_attach(sd_bus *bus, uv_loop_t *loop, bus_uv **ret);

void bus_uv_set_disconnect_handler(bus_uv *b, bus_uv_disconnect_fn fn, void *userdata);

/* Detach: no sd-bus processing happens from the loop after this returns, and the reference on
 * the bus is dropped (flushing or closing the bus is the caller's business, e.g.
 * sd_bus_flush_close_unref()). Safe to call from any callback, including a method handler of
 * this bus or the disconnect handler. The libuv handles close asynchronously: the loop must
 * run once more (uv_run() in any mode) for their close callbacks, the last of which frees b;
 * until then uv_loop_close() answers UV_EBUSY. NULL is a no-op. */
void bus_uv_free(bus_uv *b);
