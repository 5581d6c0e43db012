/* SPDX-License-Identifier: MIT */
/* What the model-running subcommands of p3sam-run share: loading and option parsing. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "run.h"
#include "time-util.h"

int run_model_open(const char *weights, const char *config, int threads, p3_backend_kind backend,
                   p3_precision precision, run_model *rm, p3_err *err) {
        *rm = (run_model) {};
        int r = p3_weights_open(weights, config, &rm->w, err);
        if (r < 0)
                return r;
        p3_model_params p = { .backend = backend, .precision = precision, .threads = threads };
        r = p3_model_open(rm->w, &p, &rm->m, err);
        if (r < 0)
                return r;
        rm->be = p3_model_backend(rm->m);
        const char *why = p3_model_fallback_reason(rm->m);
        fprintf(stderr, "device: %s, %s%s%s\n", p3_model_device(rm->m),
                p3_precision_to_string(p3_model_precision(rm->m)), why[0] ? "; not CUDA: " : "",
                why);
        return 0;
}

bool run_parse_backend(const char *s, p3_backend_kind *ret) {
        static const char *const names[] = { [P3_BACKEND_AUTO] = "auto", [P3_BACKEND_CPU] = "cpu",
                                             [P3_BACKEND_CUDA] = "cuda" };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (strcmp(s, names[i]) == 0) {
                        *ret = (p3_backend_kind) i;
                        return true;
                }
        return false;
}

bool run_parse_precision(const char *s, p3_precision *ret) {
        return p3_precision_from_string(s, ret) >= 0;
}

double run_now(void) {
        return (double) now_monotonic_usec() * 1e-6;
}

void run_model_close(run_model *rm) {
        p3_model_free(rm->m); /* and its backend */
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
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        n = n < 0 ? 0 : MIN(n, (int) sizeof(msg) - 1);
        msg[n] = 0;
        /* "%s." after an engine sentence that ends with its own period: one is enough */
        if (n >= 2 && msg[n - 1] == '.' && msg[n - 2] == '.' && (n < 3 || msg[n - 3] != '.'))
                msg[n - 1] = 0;
        fprintf(stderr, "p3sam-run: %s\n", msg);
        return 1;
}
