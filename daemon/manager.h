/* SPDX-License-Identifier: MIT */
/* p3samd's state: one context struct with one destructor (as systemd's small daemons). The
 * loop thread owns all of it; the worker thread owns the model (worker.c). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <uv.h>

#include "bus-uv.h"
#include "daemon-conf.h"
#include "job.h"
#include "worker.h"

#define P3_BUS_NAME "org.p3sam.Segmenter1"
#define P3_BUS_PATH "/org/p3sam/Segmenter1"
#define P3_BUS_IFACE "org.p3sam.Segmenter1"
#define P3_JOB_IFACE "org.p3sam.Segmenter1.Job"
#define P3_JOB_PREFIX "/org/p3sam/Segmenter1/job"
#define P3_ERROR_QUEUE_FULL "org.p3sam.Error.QueueFull"
#define P3_ERROR_NO_MODEL "org.p3sam.Error.NoModel"
#define P3_ACTION_SEGMENT "org.p3sam.segment"
#define P3_ACTION_MANAGE "org.p3sam.manage"

struct manager {
        uv_loop_t *loop;
        sd_bus *bus;
        bus_uv *bus_uv;
        const char *bus_name;
        char *config_path; /* --config, NULL: /etc/p3sam/p3samd.conf */
        daemon_conf conf;

        worker *worker;
        worker_status status; /* the worker's latest report */
        bool notified_ready;

        uv_timer_t idle_timer, watchdog_timer, gpu_stall_timer;
        uv_signal_t sig_term, sig_int, sig_hup, sig_usr1; /* sig_usr1: a test hook */
        uint64_t idle_timeout_usec, watchdog_usec, gpu_stall_usec;
        uint64_t idle_deadline_usec; /* CLOCK_MONOTONIC µs of the armed idle offload, 0 = none */

        struct job_list jobs;
        uint32_t next_id;
        uint64_t jobs_completed;
        sd_bus_message *pending_reload; /* a Reload call waiting for the worker */
        daemon_conf pending_conf;       /* the configuration it reads, taken on success */
        bool have_pending_conf;
        bool stopping;
        int exit_status;
};

int manager_new(uv_loop_t *loop, const char *config_path, manager **ret, p3_err *err);
void manager_free(manager *m);
/* Connect to the bus (system or user), export the objects, take the name. */
int manager_connect(manager *m, bool user_bus, p3_err *err);
/* Start loading the model, signals, timers. */
int manager_start(manager *m);
void manager_stop(manager *m, const char *why);

/* manager-bus.c */
extern const sd_bus_vtable manager_vtable[];
/* PropertiesChanged on the manager object; a failure is logged (nothing else to do about it). */
void manager_emit_changed(manager *m, const char *prop, ...) __attribute__((sentinel));
/* Print the introspection XML of both interfaces (p3samd --introspect). */
int manager_print_introspection(FILE *f);

/* manager.c: called by the bus side */
job *manager_find_job(manager *m, uint32_t id);
unsigned manager_queue_length(manager *m);
unsigned manager_user_jobs(manager *m, uid_t uid);
/* A job (already in m->jobs) goes to the worker. */
void manager_job_submitted(manager *m, job *j);
void manager_job_removed(manager *m, job *j);
void manager_clear_gpu(manager *m);
/* Re-read configuration and weights; replies to `call` when done (NULL: SIGHUP). */
int manager_reload(manager *m, sd_bus_message *call, p3_err *err);
void manager_set_idle_timeout(manager *m, uint64_t usec);
void manager_check_idle(manager *m);
