/* SPDX-License-Identifier: MIT */
/* The inference thread: the only thread that touches the model and the compute device. It runs
 * tasks in order (load, jobs, offload; a reload jumps the queue so that queued jobs run on the
 * new model) and reports to the loop thread through one uv_async: events queue under a lock,
 * progress coalesces to the latest value (STYLE.md: one signal per wake-up). */
#pragma once

#include <uv.h>

#include "job.h"
#include "residency.h"

typedef enum model_state {
        MODEL_STARTING,
        MODEL_LOADING,
        MODEL_READY,
        MODEL_BUSY,
        MODEL_OFFLOADING,
        MODEL_OFFLOADED,
        MODEL_FAILED,
} model_state;

const char *model_state_to_string(model_state s);

typedef struct worker_status {
        model_state state;
        char backend[16];
        char device[160];
        uint64_t device_bytes, peak_device_bytes, host_bytes;
        bool synthetic;
        char weights_path[256];
        char error[512]; /* why the model is "failed" */
} worker_status;

typedef struct worker_callbacks {
        void (*status)(void *userdata, const worker_status *st);
        void (*job_started)(void *userdata, job *j);
        void (*progress)(void *userdata, job *j, const char *stage, double fraction);
        void (*job_done)(void *userdata, job *j, int r, const char *message);
        void (*reload_done)(void *userdata, int r, const char *message);
} worker_callbacks;

typedef struct worker worker;

/* `initial` (may be NULL: nothing to serve until a reload) is owned by the worker from here. */
int worker_new(uv_loop_t *loop, residency *initial, const worker_callbacks *cb, void *userdata,
               worker **ret);
/* Cancels nothing by itself: the caller cancels jobs first; waits for the thread. */
void worker_free(worker *w);

void worker_load(worker *w);
/* Why there is no model (when `initial` was NULL), for the status and job errors. */
void worker_set_error(worker *w, const char *why);
void worker_submit(worker *w, job *j);
/* Removes a job that has not started yet; true if it was still queued. */
bool worker_unqueue(worker *w, job *j);
void worker_offload(worker *w);
/* Replace the model after the running job (ownership of `next` passes to the worker). */
void worker_reload(worker *w, residency *next);
/* Tasks queued or running (jobs and model work). */
unsigned worker_pending(worker *w);
