/* SPDX-License-Identifier: MIT */
/* Where the model lives. The host copy (the mapped checkpoint, validated once) stays for the
 * daemon's lifetime; the working copy (a snapshot of the weights read from the file, the
 * backend, uploaded weights, arenas) exists only while the model is "ready", and does not
 * depend on the file's pages. Offloading frees the working copy and lets
 * the kernel reclaim the host copy's pages; loading rebuilds it from the host copy without
 * parsing the file again. Used only by the worker thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "model.h"
#include "weights.h"

typedef enum residency_backend {
        RESIDENCY_AUTO,
        RESIDENCY_CUDA,
        RESIDENCY_CPU,
} residency_backend;

typedef struct residency_source {
        char *weights_path;
        char *config_path; /* NULL: the built-in real config */
        residency_backend backend;
        p3_precision precision;
        int threads;
        size_t device_memory_max;
} residency_source;

typedef struct residency {
        residency_source src;
        p3_weights *w;      /* host copy: the mapped file, checked once */
        p3_weights *live;   /* while loaded: the model's own copy (p3_weights_snapshot) */
        p3_model *m;        /* with its backend; NULL while offloaded */
        p3_precision configured_precision; /* Precision=, what jobs without the option get */
        char backend_name[16];
        char device[448]; /* with the fallback reason when CUDA was not used */
        char fallback_reason[256]; /* why CUDA was not used, for the log */
        size_t peak_model_bytes;
} residency;

/* Map and validate the weights named by src (does not load them on the device). src's strings
 * are copied. */
int residency_open(const residency_source *src, residency **ret, p3_err *err);
void residency_free(residency *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(residency *, residency_free);

int residency_load(residency *r, p3_err *err);
/* Ask for another precision (a job's "precision" option, or back to the configured one):
 * a loaded model that was opened at another one is offloaded, to be loaded again at this. */
void residency_want_precision(residency *r, p3_precision p);
void residency_offload(residency *r);
/* 0 unless the loaded model's device can no longer work (p3_model_device_error): -EIO with
 * the reason in why. */
int residency_device_error(residency *r, char *why, size_t why_len);
/* Loaded on a GPU (or on the test stand-in for one). */
bool residency_on_gpu(const residency *r);
static inline bool residency_loaded(const residency *r) {
        return r->m != NULL;
}

/* Memory in use by the working copy now, on whatever device runs it (0 when offloaded). */
size_t residency_model_bytes(const residency *r);
/* The most memory the working copy has used since the daemon started (the backend's arena
 * peak is per job: the pipeline resets it). */
size_t residency_peak_model_bytes(residency *r);
/* The same, counting GPU memory only: 0 on the CPU backend. */
size_t residency_gpu_bytes(const residency *r);
size_t residency_peak_gpu_bytes(residency *r);
/* Resident host memory of this process (VmRSS). */
size_t residency_host_bytes(void);

void residency_source_done(residency_source *s);
int residency_source_copy(const residency_source *from, residency_source *to);
