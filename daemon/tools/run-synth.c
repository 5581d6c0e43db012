/* SPDX-License-Identifier: MIT */
/* p3sam-run synth: write a synthetic checkpoint (golden/SYNTH.md) for a config. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf, strndup, mkostemp */
#endif
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_config.h"
#include "run.h"
#include "synth.h"

static void usage(FILE *f) {
        fputs("Usage: p3sam-run synth [--config C.json] --out W.safetensors [--dtype f32|f16]\n"
              "                       [--head-gain G]\n"
              "Write deterministic synthetic weights (golden/SYNTH.md) for a model config.\n"
              "\n"
              "  -c, --config FILE     Sonata config JSON (default: the real P3-SAM config)\n"
              "  -o, --out FILE        checkpoint to write (atomically)\n"
              "  -t, --dtype TYPE      f32 (default) or f16\n"
              "  -g, --head-gain G     scale the last Linear of the mask and IoU heads (default 1)\n"
              "  -h, --help            show this help\n",
              f);
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        va_list ap;
        fputs("p3sam-run: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\n", stderr);
        usage(stderr);
        return 2;
}

int run_synth(int argc, char **argv) {
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "out", required_argument, NULL, 'o' },
                { "dtype", required_argument, NULL, 't' },
                { "head-gain", required_argument, NULL, 'g' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *config = NULL, *out = NULL;
        st_dtype dtype = ST_F32;
        double gain = 1.0;
        int c;

        optind = 0; /* a fresh scan: the caller may have run getopt on its own argv */
        opterr = 0; /* our own message below, with the p3sam-run: prefix */
        while ((c = getopt_long(argc, argv, "+c:o:t:g:h", opts, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        config = optarg;
                        break;
                case 'o':
                        out = optarg;
                        break;
                case 't':
                        if (strcmp(optarg, "f32") == 0 || strcmp(optarg, "F32") == 0)
                                dtype = ST_F32;
                        else if (strcmp(optarg, "f16") == 0 || strcmp(optarg, "F16") == 0)
                                dtype = ST_F16;
                        else
                                return usage_error("unknown --dtype \"%s\"; use f32 or f16.", optarg);
                        break;
                case 'g': {
                        char *end;
                        errno = 0;
                        gain = strtod(optarg, &end);
                        if (errno || end == optarg || *end || !isfinite(gain))
                                return usage_error("--head-gain \"%s\" is not a finite number.", optarg);
                        break;
                }
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        return usage_error("synth: unknown option or missing value in \"%s\".",
                                           argv[optind - 1]);
                }
        }
        if (optind < argc)
                return usage_error("unexpected argument \"%s\".", argv[optind]);
        if (!out)
                return usage_error("synth needs --out FILE.");

        p3_config cfg;
        p3_err err = {};
        int r = 0;
        if (config)
                r = p3_config_load(config, &cfg, &err);
        else
                p3_config_default(&cfg);
        if (r >= 0)
                r = p3_synth_write(&cfg, out, dtype, gain, &err);
        if (r < 0) {
                fprintf(stderr, "p3sam-run: %s\n", p3_err_msg(&err, r));
                return 1;
        }
        return 0;
}
