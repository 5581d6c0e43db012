/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *program = "p3samd";
static int max_level = LOG_INFO;

void log_set_program(const char *name) {
        program = name;
}

void log_set_max_level(int prio) {
        max_level = prio;
}

int log_full_errno(int prio, int r, const char *fmt, ...) {
        if (LOG_PRI(prio) > max_level)
                return r;
        /* One buffer, one write: lines of the loop and worker threads never interleave. */
        char line[2048];
        int n = isatty(STDERR_FILENO) ? snprintf(line, sizeof(line), "%s: ", program)
                                      : snprintf(line, sizeof(line), "<%d>", LOG_PRI(prio));
        va_list ap;
        va_start(ap, fmt);
        n += vsnprintf(line + n, sizeof(line) - (size_t) n, fmt, ap);
        va_end(ap);
        if (n > (int) sizeof(line) - 64)
                n = (int) sizeof(line) - 64;
        if (r != 0)
                n += snprintf(line + n, sizeof(line) - (size_t) n, ": %s",
                              strerror(r < 0 ? -r : r));
        line[n++] = '\n';
        (void) !write(STDERR_FILENO, line, (size_t) n);
        return r;
}
