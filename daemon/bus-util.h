/* SPDX-License-Identifier: MIT */
/* Small sd-bus helpers shared by the daemon's bus code.
 *
 * Cleanup: libsystemd's own sd-bus.h already defines sd_bus_unrefp, sd_bus_flush_close_unrefp,
 * sd_bus_close_unrefp, sd_bus_message_unrefp, sd_bus_slot_unrefp, sd_bus_creds_unrefp and
 * sd_bus_track_unrefp. Writing DEFINE_TRIVIAL_CLEANUP_FUNC(sd_bus_message *,
 * sd_bus_message_unref) again would redefine them and break the build, so use those directly:
 * _cleanup_(sd_bus_message_unrefp). An sd_bus_error lives on the stack and sd_bus_error_free()
 * already takes its address: _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/param.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <time.h>

/* <uv.h> pulls in <sys/param.h>, whose MIN/MAX macro.h defines again (a warning, an error
 * under -Werror). Whichever comes first, glibc's give way here. */
#undef MIN
#undef MAX
#include "log.h"
#include "macro.h"

/* The error that a missing service produces: nobody owns the name and nothing can be
 * activated for it (directly, or through systemd when the unit is absent). Callers treat it
 * as "that service is not installed", never as a transient failure. */
static inline bool bus_error_is_unknown_service(const sd_bus_error *e) {
        return sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN,
                                      SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                      "org.freedesktop.systemd1.NoSuchUnit");
}
