/* SPDX-License-Identifier: MIT */
/* Subcommands of p3sam-run: each takes its own argv (argv[0] is the subcommand name) and
 * returns the process exit status (0 success, 1 failure, 2 usage error). */
#pragma once

/* subcommands */
int run_synth(int argc, char **argv);
