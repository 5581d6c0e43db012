/* SPDX-License-Identifier: MIT */
/* What the model-running subcommands of p3sam-run share: loading and option parsing. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "run.h"

int run_model_open(const char *weights, const char *config, int threads, run_model *rm,
                   p3_err *err) {
        *rm = (run_model) {};
        int r = p3_weights_open(weights, config, &rm->w, err);
        if (r < 0)
                return r;
        r = p3_backend_cpu_new(&(p3_backend_options) { .threads = threads }, &rm->be);
        if (r < 0)
                return p3_errf(err, r, "cannot start the CPU backend: %s", p3_strerror(r));
        return p3_model_new(rm->be, rm->w, &rm->m, err);
}

void run_model_close(run_model *rm) {
        p3_model_free(rm->m);
        p3_backend_free(rm->be);
        p3_weights_free(rm->w);
        *rm = (run_model) {};
}

bool run_model_synthetic(const run_model *rm) {
        return p3_weights_synthetic(rm->w);
}

bool run_parse_int(const char *s, long long lo, long long hi, long long *ret) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < lo || v > hi)
                return false;
        *ret = v;
        return true;
}

int run_fail(const char *fmt, ...) {
        va_list ap;
        fputs("p3sam-run: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\n", stderr);
        return 1;
}
