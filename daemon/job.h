/* SPDX-License-Identifier: MIT */
/* A segmentation or prediction job: what the caller asked for (descriptors, options), where it
 * is (state, stage, progress) and how it ended. Owned by the loop thread; the worker thread
 * reads the request, and communicates back only through worker.c's locked hand-over and the
 * atomic cancel flag. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <uv.h>

#include "export_format.h"
#include "job-result.h"
#include "pipeline.h"

typedef struct manager manager;

typedef enum job_kind {
        JOB_SEGMENT,
        JOB_PREDICT,
} job_kind;

/* The system bus passes at most 16 descriptors a message (mesh, output, report, outputs). */
#define JOB_MAX_FDS 16

/* One more output of a Segment job (option "outputs"). */
typedef struct job_output {
        int fd;
        p3_out_format format;
} job_output;

typedef enum job_state {
        JOB_QUEUED,
        JOB_RUNNING,
        JOB_DONE,
        JOB_FAILED,
        JOB_CANCELLED,
} job_state;

typedef struct job {
        manager *manager;
        uint32_t id;
        char path[64];
        job_kind kind;

        /* the request (read by the worker) */
        int mesh_fd, out_fd, report_fd; /* report_fd -1 if none */
        char mesh_format[8];            /* "" = detect */
        char out_format[16];            /* glb, ply, json, png, face-ids, aabb, aabb-glb */
        job_output outputs[JOB_MAX_FDS - 2]; /* option "outputs" */
        int n_outputs;
        p3_render_opts png;                  /* options "png_size", "png_boxes" */
        p3_pipeline_params params;
        bool has_precision;     /* option "precision": the model runs at it for this job */
        p3_precision precision;
        uint64_t max_mesh_bytes; /* MaxMeshSize= when the job was submitted */
        uint64_t import_timeout_usec, import_memory_max; /* ImportTimeoutSec=, ImportMemoryMax=
                                                          * (resolved: bytes or UINT64_MAX) */
        double *prompts; /* predict: [k, 3] object coordinates */
        int k;

        /* who asked */
        uid_t uid;
        char *sender;
        sd_bus_track *track;
        bool detached; /* option "detach": the job outlives its caller's connection */

        /* where it is (loop thread) */
        job_state state;
        job_result result; /* how it ended (Result): set with the state by job_finish */
        bool read_failed;  /* set by the worker: the importer ran and failed (the mesh's fault) */
        char stage[32];
        double progress;
        char *error;
        uint64_t started_usec;
        atomic_bool cancel;
        char cancel_reason[96];

        uv_timer_t timer; /* job timeout while running, then linger until it disappears */
        bool timer_open;
        sd_bus_slot *slot;
        TAILQ_ENTRY(job) queue; /* manager->jobs */
} job;

TAILQ_HEAD(job_list, job);

const char *job_state_to_string(job_state s);
static inline bool job_finished(const job *j) {
        return j->state >= JOB_DONE;
}

/* Builds the job's D-Bus object and registers it; caller has filled the request. */
int job_publish(job *j);
/* The worker took the job: state running, the job timeout starts. */
void job_started(job *j);
/* Marks a job finished with result (its state follows: done, cancelled or failed), emits
 * Completed and JobRemoved, starts the linger timer. */
void job_finish(job *j, job_result result, const char *error);
/* State/progress changed: emits PropertiesChanged. */
void job_changed(job *j, const char *prop1, const char *prop2);
/* Cancels a queued or running job (the worker notices between stages). */
void job_cancel(job *j, const char *reason);
void job_free(job *j);

extern const sd_bus_vtable job_vtable[];
int job_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                    void **found, sd_bus_error *error);
int job_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                        sd_bus_error *error);
