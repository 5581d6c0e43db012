/* SPDX-License-Identifier: MIT */
/* libgomp reads OMP_WAIT_POLICY once, when it loads, and has no call to change it later; so a
 * program that wants it re-executes itself once with it set. A value the user set always wins.
 *
 * Why passive: the backbone and heads run many short parallel regions. With libgomp's default
 * spinning, threads that wait burn the cores that the working threads need as soon as anything
 * else runs on the machine (measured on a loaded 2-core machine: a small job's features took
 * 1.49 s spinning, 0.07 s passive). A service runs beside other work. */
#include <stdlib.h>
#include <unistd.h>

#include "omp-env.h"

void p3_omp_env_setup(char **argv) {
        if (getenv("OMP_WAIT_POLICY") || getenv("P3_OMP_ENV_REEXEC"))
                return; /* the user's choice, or done once already: never loop */
        setenv("OMP_WAIT_POLICY", "passive", 1);
        setenv("P3_OMP_ENV_REEXEC", "1", 1);
        /* By the binary's real path, not /proc/self/exe: the kernel names the process after
         * the file executed, and "exe" in ps or systemctl status would puzzle everyone. */
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                self[n] = 0;
                execv(self, argv);
        }
        execv("/proc/self/exe", argv);
        /* exec failed: carry on as we are; results are the same, only slower under load */
}
