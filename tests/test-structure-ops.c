/* SPDX-License-Identifier: MIT */
/* The structure self-test (daemon/engine/selftest.c), the check that a GPU's neighbour map and
 * serialization pass before it serves: run here on a CPU backend given the structure ops by
 * tests/structure-shim.c. Right ops pass and report each op; a broken entry, a wrong padding
 * rule and a failing device call each fail with the op named; a backend without the ops has
 * nothing to check. (That the engine's device path gives the golden outputs is golden-tiny's
 * second run, 'golden-tiny-device-structure'.) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "selftest.h"
#include "structure-shim.h"
#include "test-util.h"

typedef struct reports {
        int count;
        double worst;
        char last[64];
} reports;

static void on_report(const char *op, double err, double tol, void *userdata) {
        reports *r = userdata;
        CHECK(tol == 0);
        r->count++;
        if (err > r->worst)
                r->worst = err;
        snprintf(r->last, sizeof(r->last), "%s", op);
}

static p3_backend *cpu_backend(void) {
        p3_backend *be = NULL;
        p3_backend_options opt = { .threads = 1, .precision = P3_PRECISION_FP32 };
        CHECK_OK(p3_backend_cpu_new(&opt, &be));
        return be;
}

/* One run of the structure self-test; returns its result with why and the reports. */
static int run(p3_backend *be, reports *rep, char *why, size_t why_len) {
        *rep = (reports) {};
        size_t before = be->cur_bytes;
        int r = p3_structure_selftest(be, on_report, rep, why, why_len);
        CHECK(be->cur_bytes == before); /* every buffer freed, on every path */
        return r;
}

static void test_without_ops(void) {
        p3_backend *be = cpu_backend();
        reports rep;
        char why[256];
        CHECK(run(be, &rep, why, sizeof(why)) == 0);
        CHECK(rep.count == 0 && why[0] == 0);
        p3_backend_free(be);
}

static void test_right(void) {
        p3_backend *be = cpu_backend();
        structure_shim_install(be, SHIM_RIGHT);
        reports rep;
        char why[256];
        int r = run(be, &rep, why, sizeof(why));
        if (r < 0)
                fprintf(stderr, "unexpected failure: %s\n", why);
        CHECK(r == 0);
        CHECK(rep.count == 5); /* four curves, then the neighbour map */
        CHECK(rep.worst == 0);
        CHECK(strcmp(rep.last, "subm_neighbors") == 0);
        p3_backend_free(be);
}

static void expect_failure(structure_shim kind, const char *brk, const char *want) {
        p3_backend *be = cpu_backend();
        structure_shim_install(be, kind);
        if (brk)
                CHECK(setenv("P3_TEST_SELFTEST_BREAK", brk, 1) == 0);
        reports rep;
        char why[256];
        int r = run(be, &rep, why, sizeof(why));
        CHECK(unsetenv("P3_TEST_SELFTEST_BREAK") == 0);
        printf("%s: %s\n", brk ? brk : "shim", why);
        CHECK(r < 0);
        CHECK(strstr(why, want) != NULL);
        p3_backend_free(be);
}

/* What the model runs at every load: the ops against the CPU, then the structure ops, whose
 * failure fails the whole self-test with the op named. */
static void test_engine_selftest(void) {
        p3_backend *be = cpu_backend();
        structure_shim_install(be, SHIM_RIGHT);
        char why[256];
        CHECK(p3_engine_selftest(be, false, NULL, NULL, why, sizeof(why)) == 0);
        CHECK(setenv("P3_TEST_SELFTEST_BREAK", "window_slots", 1) == 0);
        int r = p3_engine_selftest(be, false, NULL, NULL, why, sizeof(why));
        CHECK(unsetenv("P3_TEST_SELFTEST_BREAK") == 0);
        printf("engine self-test, window_slots broken: %s\n", why);
        CHECK(r == -EPROTO && strstr(why, "window_slots (z): 1 of ") == why);
        p3_backend_free(be);
}

int main(void) {
        test_without_ops();
        test_right();
        /* One entry changed is enough to fail. */
        expect_failure(SHIM_RIGHT, "subm_neighbors", "subm_neighbors: 1 of ");
        expect_failure(SHIM_RIGHT, "window_slots", "window_slots (z): 1 of ");
        /* A plausible wrong padding rule fails on the padded window only. */
        expect_failure(SHIM_WRONG_PADDING, NULL, "window_slots (z): ");
        /* A device call that fails names the op and the error. */
        expect_failure(SHIM_FAILING_NEIGHBOURS, NULL,
                       "subm_neighbors failed on the device: Input/output error");
        test_engine_selftest();
        printf("structure self-test: %d failures\n", test_failures);
        return test_failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
