/* SPDX-License-Identifier: MIT */
/* cuBLAS through dlopen. A build with nvcc links only the static CUDA runtime, so its binaries
 * start on any machine; cuBLAS (54 MB, plus 540 MB of cuBLASLt) is looked up when a CUDA
 * backend is made, and its absence is a reason to fall back to the CPU, not a failure to
 * start. The table is filled once and never unloaded (a process does not get the library's
 * memory back by closing it, and handles may still point into it). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "cuda_backend.h"

static cublas_api api;
static bool api_ok;
static char api_why[200];
static pthread_once_t api_once = PTHREAD_ONCE_INIT;

/* Where the library is when the dynamic loader's path does not have it: the CUDA toolkit's
 * usual prefix (the lent GPU machines and our build machines have it there). */
static void *open_cublas(void) {
        static const char *const names[] = { "libcublas.so.13", "/usr/local/cuda/lib64/libcublas.so.13" };
        void *h = NULL;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !h; i++)
                h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        return h;
}

template <typename F> static bool sym(void *h, const char *name, F *ret) {
        *ret = (F) dlsym(h, name);
        if (!*ret)
                snprintf(api_why, sizeof(api_why), "libcublas.so.13 lacks %s", name);
        return *ret != NULL;
}

static void load(void) {
        void *h = open_cublas();
        if (!h) {
                const char *e = dlerror();
                snprintf(api_why, sizeof(api_why), "cannot load libcublas.so.13: %s",
                         e ? e : "not found");
                return;
        }
        api_ok = sym(h, "cublasCreate_v2", &api.create) &&
                 sym(h, "cublasDestroy_v2", &api.destroy) &&
                 sym(h, "cublasSetStream_v2", &api.set_stream) &&
                 sym(h, "cublasSetMathMode", &api.set_math_mode) &&
                 sym(h, "cublasGemmEx", &api.gemm_ex) &&
                 sym(h, "cublasGetStatusString", &api.status_string);
}

const cublas_api *cuda_cublas(char *why, size_t why_len) {
        pthread_once(&api_once, load);
        if (!api_ok && why)
                snprintf(why, why_len, "%s", api_why);
        return api_ok ? &api : NULL;
}
