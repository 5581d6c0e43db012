/* SPDX-License-Identifier: MIT */
/* Stands in for p3samctl in the setup-swap test until p3samctl is in the build:
 * "swap-driver setup-swap ARGS..." runs the verb as p3samctl would. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

ctl_global ctl_args = { .instance = -1 };

int ctl_fail(int code, const char *fmt, ...) {
        va_list ap;

        fputs("p3samctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return code;
}

int main(int argc, char **argv) {
        if (argc < 2 || strcmp(argv[1], "setup-swap") != 0)
                return ctl_fail(CTL_EXIT_USAGE, "usage: swap-driver setup-swap ARGS...");
        return verb_setup_swap(argc - 1, argv + 1);
}
