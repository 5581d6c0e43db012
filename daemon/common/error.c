/* SPDX-License-Identifier: MIT */
#include "error.h"

#include <stdio.h>
#include <string.h>

int p3_errf(p3_err *e, int r, const char *fmt, ...) {
        if (e && !e->msg[0]) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
                va_end(ap);
        }
        return r;
}

const char *p3_strerror(int r) {
        return strerror(r < 0 ? -r : r);
}
