/* SPDX-License-Identifier: MIT */
/* OpenBLAS 0.3.21 (Debian 12) does not know recent Intel models (Sapphire/Emerald Rapids): its
 * DYNAMIC_ARCH probe falls back to the "Prescott" SSE3 kernels, about 3× slower than its AVX2
 * or AVX-512 ones on the same CPU. The core is chosen once, when the library loads, from
 * OPENBLAS_CORETYPE; so when the probe failed on a CPU that has the instructions, a program
 * re-executes itself once with the variable set. A user's own OPENBLAS_CORETYPE always wins. */
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

void p3_blas_reexec_if_slow(char **argv) {
        const char *core = p3_blas_core_override();
        if (!core || getenv("P3_BLAS_REEXEC"))
                return;
        setenv("OPENBLAS_CORETYPE", core, 1);
        setenv("P3_BLAS_REEXEC", "1", 1); /* never loop */
        execv("/proc/self/exe", argv);
        /* exec failed: carry on with the slow kernels, results are the same */
        unsetenv("OPENBLAS_CORETYPE");
}
