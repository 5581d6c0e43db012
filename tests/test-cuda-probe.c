/* SPDX-License-Identifier: MIT */
/* The CUDA probe answers without crashing on a machine with or without a GPU; the CUDA tests
 * proper skip visibly without one. */
#include "test-util.h"

#ifdef P3_HAVE_CUDA
#include "cuda/cuda_probe.h"
#endif

int main(void) {
#ifndef P3_HAVE_CUDA
        test_skip("built without CUDA (nvcc not found or -Dcuda=disabled)");
#else
        char why[256] = "", name[256] = "";
        int r = p3_cuda_probe(why, sizeof(why), name, sizeof(name));
        if (r == -ENODEV)
                test_skip(why);
        if (r < 0) {
                printf("probe failed: %s\n", why);
                return EXIT_FAILURE;
        }
        printf("%d CUDA device(s); device 0: %s\n", r, name);
        return EXIT_SUCCESS;
#endif
}
