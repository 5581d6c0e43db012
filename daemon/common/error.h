/* SPDX-License-Identifier: MIT */
/* Errors travel as negative errno values; the first failing layer also writes one sentence
 * for the person into a p3_err, which callers pass down as an optional out-parameter. */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#include "macro.h"

typedef struct p3_err {
        char msg[512];
} p3_err;

/* Record a message (only the first one wins: the deepest layer knows most) and return r,
 * which must be a negative errno. e may be NULL. */
int p3_errf(p3_err *e, int r, const char *fmt, ...) _printf_(3, 4);

const char *p3_strerror(int r);

static inline const char *p3_err_msg(const p3_err *e, int r) {
        return e && e->msg[0] ? e->msg : p3_strerror(r);
}
