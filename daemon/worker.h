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
        char device[448]; /* with the fallback reason when CUDA was not used */
        uint64_t model_bytes, peak_model_bytes; /* the model on whatever device runs it */
        uint64_t gpu_bytes, peak_gpu_bytes;     /* GPU memory only: 0 on the CPU backend */
        uint64_t host_bytes;                    /* the process's resident memory */
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
/* -ENOMEM: the job cannot be queued (its end's report is allocated here, so that an accepted
 * job always ends). */
int worker_submit(worker *w, job *j);
/* Removes a job that has not started yet; true if it was still queued. */
bool worker_unqueue(worker *w, job *j);
void worker_offload(worker *w);
/* Replace the model after the running job: the worker opens `next` (copied) and, if the model
 * is loaded now, loads it beside the old one; only then the old one goes. reload_done says
 * how it went; on failure the old model keeps serving. */
int worker_reload(worker *w, const residency_source *next);
/* Tasks queued or running (jobs and model work). A task's last event is delivered after it
 * stops counting here.
 * Test hook: $P3SAMD_TEST_WORKER_STALL_MSEC makes the thread wait that long after each task's
 * work, before its end is published (nothing else reads it). */
unsigned worker_pending(worker *w);
/* How long the worker has been on GPU work (a job, a load, an offload) without finishing it or
 * reporting progress (0 when it does none); what says which work. The model reports progress
 * many times a stage, so a long silence means a hung kernel: the worker is stuck in a
 * synchronisation for good. */
uint64_t worker_gpu_stalled_usec(worker *w, char *what, size_t what_len);
