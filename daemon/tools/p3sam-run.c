/* SPDX-License-Identifier: MIT */
/* p3sam-run: the engine's developer tool (synthetic weights, single inference on a recorded
 * case; later the pipeline). Exit codes: 0 success, 1 failure, 2 usage. */
#include <stdio.h>
#include <string.h>

#include "run.h"
#include "omp-env.h"

static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
        const char *help;
} commands[] = {
        { "synth", run_synth, "write synthetic weights for a config" },
        { "infer", run_infer, "run the network on a recorded point cloud" },
        { "postprocess", run_postprocess, "mask and mesh post-processing of a recorded replay" },
        { "selftest", run_selftest, "every op of a backend against the CPU (the GPU's check)" },
#ifdef P3_HAVE_ASSIMP
        { "segment", run_segment, "segment a mesh into parts (GLB/JSON/PLY out)" },
        { "predict", run_predict, "masks of given prompt points on a mesh (JSON out)" },
#endif
};

static void usage(FILE *f) {
        fputs("Usage: p3sam-run COMMAND [OPTIONS]\n\nCommands:\n", f);
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
        fputs("\nRun 'p3sam-run COMMAND --help' for a command's options.\n", f);
}

int main(int argc, char **argv) {
        p3_omp_env_setup(argv);
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                usage(stdout);
                return 0;
        }
        if (strcmp(argv[1], "--version") == 0) {
                puts("p3sam-run " P3_VERSION);
                return 0;
        }
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        return commands[i].run(argc - 1, argv + 1);
        fprintf(stderr, "p3sam-run: unknown command \"%s\".\n", argv[1]);
        usage(stderr);
        return 2;
}
