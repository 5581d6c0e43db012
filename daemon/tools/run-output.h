/* SPDX-License-Identifier: MIT */
/* Output files that appear whole or not at all: written to a temporary file in the target's
 * directory and renamed into place only when every output of the command succeeded. */
#pragma once

#include <stdbool.h>

#include "error.h"

typedef struct run_output {
        const char *path;
        char *tmp;
        int fd;
} run_output;

int run_output_open(run_output *o, const char *path, p3_err *err);
/* fsync + rename into place. */
int run_output_commit(run_output *o, p3_err *err);
/* Close and remove the temporary file (no-op after commit or when never opened). */
void run_output_abort(run_output *o);
