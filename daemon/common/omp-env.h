/* SPDX-License-Identifier: MIT */
#pragma once

/* Call first thing in main() of a program that computes with OpenMP: re-executes it once with
 * OMP_WAIT_POLICY=passive unless the variable is set (see omp-env.c). Returns only when no
 * re-execution was needed or it failed. */
void p3_omp_env_setup(char **argv);
