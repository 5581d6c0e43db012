/* SPDX-License-Identifier: MIT */
#include <cerrno>
#include <cstdio>
#include <cuda_runtime.h>

#include "cuda_probe.h"

int p3_cuda_probe(char *why, size_t why_len, char *name, size_t name_len) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
            (e == cudaSuccess && n == 0)) {
                snprintf(why, why_len, "no CUDA device (%s)",
                         e == cudaSuccess ? "none found" : cudaGetErrorString(e));
                return -ENODEV;
        }
        if (e != cudaSuccess) {
                snprintf(why, why_len, "the CUDA runtime failed: %s", cudaGetErrorString(e));
                return -EIO;
        }
        cudaDeviceProp p;
        if (name && cudaGetDeviceProperties(&p, 0) == cudaSuccess)
                snprintf(name, name_len, "%s (sm_%d%d, %.1f GiB)", p.name, p.major, p.minor,
                         p.totalGlobalMem / 1073741824.0);
        return n;
}
