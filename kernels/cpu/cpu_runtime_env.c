/* SPDX-License-Identifier: MIT */
/* Two settings of the CPU backend's libraries can only be made through the environment, read
 * once when the libraries load; so a program that needs them re-executes itself once with
 * them set. A value the user set always wins.
 *
 * OPENBLAS_CORETYPE: OpenBLAS 0.3.21 (Debian 12) does not know recent Intel models
 * (Sapphire/Emerald Rapids); its DYNAMIC_ARCH probe falls back to the "Prescott" SSE3 kernels,
 * about 3× slower than its AVX2 or AVX-512 ones on the same CPU.
 *
 * OMP_WAIT_POLICY=passive: the backbone and heads run many short parallel regions. With
 * libgomp's default spinning, threads that wait burn the cores that the working threads need
 * as soon as anything else runs on the machine (measured on a loaded 2-core machine: a small
 * job's features took 1.49 s spinning, 0.07 s passive). A service runs beside other work. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "backend.h"

extern char *openblas_get_corename(void) __attribute__((weak));

static const char *better_core(void) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
                return "SkylakeX";
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
                return "Haswell";
        return NULL;
}

const char *p3_blas_core_override(void) {
        if (!openblas_get_corename || getenv("OPENBLAS_CORETYPE"))
                return NULL;
        const char *core = openblas_get_corename();
        if (!core || (strcasecmp(core, "prescott") != 0 && strcasecmp(core, "core2") != 0))
                return NULL;
        return better_core();
}

void p3_cpu_runtime_setup(char **argv) {
        if (getenv("P3_RUNTIME_REEXEC"))
                return; /* done once already: never loop */
        const char *core = p3_blas_core_override();
        bool wait_policy = !getenv("OMP_WAIT_POLICY");
        if (!core && !wait_policy)
                return;
        if (core)
                setenv("OPENBLAS_CORETYPE", core, 1);
        if (wait_policy)
                setenv("OMP_WAIT_POLICY", "passive", 1);
        setenv("P3_RUNTIME_REEXEC", "1", 1);
        /* By the binary's real path, not /proc/self/exe: the kernel names the process after
         * the file executed, and "exe" in ps or systemctl status would puzzle everyone. */
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                self[n] = 0;
                execv(self, argv);
        }
        execv("/proc/self/exe", argv);
        /* exec failed: carry on as we are; results are the same, only slower */
}
