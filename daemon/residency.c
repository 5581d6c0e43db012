/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "residency.h"

void residency_source_done(residency_source *s) {
        free(s->weights_path);
        free(s->config_path);
        *s = (residency_source) {};
}

int residency_source_copy(const residency_source *from, residency_source *to) {
        *to = *from;
        to->weights_path = from->weights_path ? strdup(from->weights_path) : NULL;
        to->config_path = from->config_path ? strdup(from->config_path) : NULL;
        if ((from->weights_path && !to->weights_path) || (from->config_path && !to->config_path)) {
                residency_source_done(to);
                return -ENOMEM;
        }
        return 0;
}

int residency_open(const residency_source *src, residency **ret, p3_err *err) {
        _cleanup_(residency_freep) residency *r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        int k = residency_source_copy(src, &r->src);
        if (k < 0)
                return k;
        r->configured_precision = src->precision;
        if (!src->weights_path)
                return p3_errf(err, -EINVAL, "no model path is configured");
        k = p3_weights_open(src->weights_path, src->config_path, &r->w, err);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(r);
        return 0;
}

void residency_free(residency *r) {
        if (!r)
                return;
        residency_offload(r);
        p3_weights_free(r->w);
        residency_source_done(&r->src);
        free(r);
}

/* The engine opens the backend and owns the choice (residency only asks and reports). */
static int open_model(residency *r, p3_err *err) {
        p3_model_params p = {
                .backend = r->src.backend == RESIDENCY_CUDA  ? P3_BACKEND_CUDA
                           : r->src.backend == RESIDENCY_CPU ? P3_BACKEND_CPU
                                                             : P3_BACKEND_AUTO,
                .precision = r->src.precision,
                .threads = r->src.threads,
                .memory_max = r->src.device_memory_max,
        };
        int k = p3_model_open(r->live, &p, &r->m, err);
        if (k < 0)
                return k;
        snprintf(r->backend_name, sizeof(r->backend_name), "%s", p3_model_backend_name(r->m));
        snprintf(r->fallback_reason, sizeof(r->fallback_reason), "%s",
                 p3_model_fallback_reason(r->m));
        /* Device says why a GPU that was asked for is not used: people read it in
         * `p3samctl status` without going to the journal. */
        if (r->fallback_reason[0] && r->src.backend != RESIDENCY_CPU)
                snprintf(r->device, sizeof(r->device), "%s; not CUDA: %s",
                         p3_model_device(r->m), r->fallback_reason);
        else
                snprintf(r->device, sizeof(r->device), "%s", p3_model_device(r->m));
        /* A backend that copied the weights (BF16 on the CPU, any GPU) needs the snapshot no
         * more: only the half-precision copy stays. */
        if (p3_model_weights_copied(r->m)) {
                p3_weights_free(r->live);
                r->live = NULL;
        }
        return 0;
}

/* Test hook: $P3SAMD_TEST_FAIL_LOAD names a weights file whose load fails as if memory ran out
 * (a GPU cap, say) after it opened fine, to prove that Reload keeps the old model. Nothing
 * else reads it; unset, it does nothing. */
static int test_fail_load(const residency *r, p3_err *err) {
        const char *path = getenv("P3SAMD_TEST_FAIL_LOAD");
        if (path && r->src.weights_path && strcmp(path, r->src.weights_path) == 0)
                return p3_errf(err, -ENOMEM, "cannot load %s: out of memory (test hook)", path);
        return 0;
}

int residency_load(residency *r, p3_err *err) {
        if (residency_loaded(r))
                return 0;
        int h = test_fail_load(r, err);
        if (h < 0)
                return h;
        /* The working copy is the model's own memory, read from the file with pread(): the
         * served model neither changes nor faults (SIGBUS) when the file is overwritten in
         * place afterwards; a file changed since it was opened is refused with a sentence. */
        int k = p3_weights_snapshot(r->w, &r->live, err);
        if (k >= 0)
                k = open_model(r, err);
        if (k < 0) {
                residency_offload(r);
                return k;
        }
        return 0;
}

void residency_want_precision(residency *r, p3_precision p) {
        if (r->src.precision == p)
                return;
        residency_offload(r);
        r->src.precision = p;
}

/* The host copy is a clean file mapping: tell the kernel it may drop its pages now rather
 * than when memory runs short (they come back from the page cache or the file on load). */
static void release_host_pages(residency *r) {
        if (!r->w || !r->w->file || !r->w->file->mapped)
                return;
#ifdef MADV_PAGEOUT
        (void) madvise(r->w->file->map, r->w->file->size, MADV_PAGEOUT);
#else
        (void) madvise(r->w->file->map, r->w->file->size, MADV_DONTNEED);
#endif
}

void residency_offload(residency *r) {
        (void) residency_peak_model_bytes(r);
        p3_model_free(r->m); /* and its backend */
        r->m = NULL;
        p3_weights_free(r->live);
        r->live = NULL;
        release_host_pages(r);
}

bool residency_on_gpu(const residency *r) {
        return r->m && p3_model_on_gpu(r->m);
}

int residency_device_error(residency *r, char *why, size_t why_len) {
        return r->m ? p3_model_device_error(r->m, why, why_len) : 0;
}

/* The CPU backend at FP32 computes straight from the snapshot: while loaded it is its working
 * copy, so it counts with the arena (a backend that copies counts its copy itself). */
static size_t resident_weights(const residency *r) {
        return r->m && r->live ? r->live->total_params * sizeof(float) : 0;
}

size_t residency_model_bytes(const residency *r) {
        return r->m ? p3_model_backend(r->m)->cur_bytes + resident_weights(r) : 0;
}

size_t residency_peak_model_bytes(residency *r) {
        if (r->m)
                r->peak_model_bytes = MAX(r->peak_model_bytes,
                                          p3_model_backend(r->m)->peak_bytes + resident_weights(r));
        return r->peak_model_bytes;
}

static bool on_gpu(const residency *r) {
        return strcmp(r->backend_name, "cuda") == 0;
}

size_t residency_gpu_bytes(const residency *r) {
        return on_gpu(r) ? residency_model_bytes(r) : 0;
}

size_t residency_peak_gpu_bytes(residency *r) {
        size_t peak = residency_peak_model_bytes(r);
        return on_gpu(r) ? peak : 0;
}

size_t residency_host_bytes(void) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
        char line[256];
        while (f && fgets(line, sizeof(line), f)) {
                unsigned long long kb;
                if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
                        return (size_t) kb * 1024;
        }
        return 0;
}
