/* SPDX-License-Identifier: MIT */
/* A stand-in libcudnn_graph.so.9 for the version gate's test (cuda-cudnn-version-gate): it
 * exports every entry point kernels/cuda/cuda_attention_cudnn.cu looks up, and reports the
 * version in $P3_FAKE_CUDNN_VERSION. Nothing is ever executed through it but the version. */
#include <stddef.h>
#include <stdlib.h>

#define EXPORT __attribute__((visibility("default")))

EXPORT size_t cudnnGetVersion(void) {
        const char *v = getenv("P3_FAKE_CUDNN_VERSION");
        return v ? strtoul(v, NULL, 10) : 0;
}

EXPORT const char *cudnnGetErrorString(int status) { return "fake cuDNN"; }
EXPORT void cudnnGetLastErrorString(char *msg, size_t len) { if (len) msg[0] = 0; }

/* The rest only has to resolve: every call fails as CUDNN_STATUS_NOT_INITIALIZED (1001). */
#define STUB(name) EXPORT int name(void) { return 1001; }
STUB(cudnnCreate)
STUB(cudnnDestroy)
STUB(cudnnSetStream)
STUB(cudnnBackendCreateDescriptor)
STUB(cudnnBackendDestroyDescriptor)
STUB(cudnnBackendSetAttribute)
STUB(cudnnBackendGetAttribute)
STUB(cudnnBackendFinalize)
STUB(cudnnBackendExecute)
