/* SPDX-License-Identifier: MIT */
/* p3sam-run selftest: the check a GPU backend passes after every load before it serves, run by
 * hand, with each op's error printed (and, for a backend that builds the levels' structure
 * itself, each structure op's mismatches). Exit 0 when every op is within its tolerance, 1 when
 * one is not or there is no backend to test (the reason on stderr), 2 for a usage error.
 *
 *   p3sam-run selftest [--backend cuda|cpu] [--precision auto|fp32|bf16|fp16]
 *
 * --backend cuda (the default) tests the GPU; --backend cpu tests the CPU backend at the
 * precision given against the CPU at FP32 (the BF16 path, say). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "run.h"
#include "selftest.h"

/* Float ops report their error relative to the reference; the structure ops (tolerance 0)
 * the fraction of entries that differ, and the NaN checks 0 when they caught the NaN. */
static void print_op(const char *op, double err, double tol, void *userdata) {
        if (tol == 0)
                printf("  %-28s %9.3g of entries differ  (exact)            %s\n", op, err,
                       err == 0 ? "ok" : "FAIL");
        else
                printf("  %-28s max error %9.3g x max|ref|  (tolerance %.0e)  %s\n", op, err,
                       tol, err <= tol ? "ok" : "FAIL");
}

static int usage(FILE *f, int status) {
        fputs("Usage: p3sam-run selftest [--backend cuda|cpu] [--precision P]\n", f);
        return status;
}

static int open_backend(bool cuda, p3_precision precision, p3_backend **be) {
        char why[256] = "";
        p3_backend_options opt = { .precision = precision };
        int r = cuda ? p3_backend_cuda_new(&opt, why, sizeof(why), be)
                     : p3_backend_cpu_new(&opt, be);
        if (r == -EOPNOTSUPP && !cuda) { /* BF16 asked of a CPU without it: say what it has */
                char auto_why[128];
                (void) p3_cpu_auto_precision(auto_why, sizeof(auto_why));
                snprintf(why, sizeof(why), "precision %s cannot run on this CPU (auto gives %s)",
                         p3_precision_to_string(precision), auto_why);
        }
        if (r < 0)
                return run_fail("selftest: %s", why[0] ? why : strerror(-r));
        fprintf(stderr, "device: %s, %s\n", (*be)->device,
                p3_precision_to_string((*be)->precision));
        return 0;
}

int run_selftest(int argc, char **argv) {
        static const struct option opts[] = {
                { "backend", required_argument, NULL, 'b' },
                { "precision", required_argument, NULL, 'p' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        bool cuda = true;
        p3_precision precision = P3_PRECISION_AUTO;
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) >= 0)
                switch (c) {
                case 'b':
                        if (strcmp(optarg, "cuda") != 0 && strcmp(optarg, "cpu") != 0)
                                return run_fail("--backend: cuda or cpu, not '%s'", optarg) + 1;
                        cuda = strcmp(optarg, "cuda") == 0;
                        break;
                case 'p':
                        if (!run_parse_precision(optarg, &precision))
                                return run_fail("--precision: auto, fp32, bf16 or fp16, not "
                                                "'%s'", optarg) + 1;
                        break;
                case 'h':
                        return usage(stdout, 0);
                default:
                        return usage(stderr, 2);
                }
        if (optind < argc)
                return usage(stderr, 2);
        p3_backend *be = NULL;
        if (open_backend(cuda, precision, &be) != 0)
                return 1;
        char why[1024];
        /* by hand every op gets its figure, not only those before the first failure */
        int r = p3_engine_selftest(be, true, print_op, NULL, why, sizeof(why));
        p3_backend_free(be);
        if (r < 0)
                return run_fail("selftest: FAILED: %s", why);
        printf("selftest: passed\n");
        return 0;
}
