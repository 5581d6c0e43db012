/* SPDX-License-Identifier: MIT */
/* The daemon's life on the loop thread: the model's state as the worker reports it, the job
 * queue and its limits, the idle timer that gives the GPU back, sd-daemon notifications
 * (READY, STATUS, WATCHDOG, EXTEND_TIMEOUT, STOPPING), signals and reload. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include "bus-creds.h"
#include "bus-util.h"
#include "manager.h"
#include "parse-util.h"
#include "time-util.h"

#define LOAD_EXTEND_USEC (120 * 1000000ULL) /* asked for while the model loads */

/* sd_notify() answers 0 where no NOTIFY_SOCKET is set (by hand, in tests): nothing to say. */
static void notify(const char *line) {
        int r = sd_notify(0, line);
        if (r < 0)
                log_warning_errno(r, "cannot notify the service manager (%.40s)", line);
}

static void notify_status(manager *m) {
        const worker_status *s = &m->status;
        char line[700];
        job *run = NULL, *j;
        TAILQ_FOREACH(j, &m->jobs, queue)
                if (j->state == JOB_RUNNING)
                        run = j;
        if (run)
                snprintf(line, sizeof(line), "STATUS=job %" PRIu32 ": %s %.0f%%", run->id,
                         run->stage, 100 * run->progress);
        else if (s->state == MODEL_READY || s->state == MODEL_BUSY)
                snprintf(line, sizeof(line), "STATUS=ready, model on %s (%.0f MiB)%s",
                         strcmp(s->backend, "cpu") == 0 ? "CPU" : "GPU",
                         s->model_bytes / 1048576.0, s->synthetic ? ", SYNTHETIC weights" : "");
        else if (s->state == MODEL_FAILED)
                snprintf(line, sizeof(line), "STATUS=no model: %s", s->error);
        else
                snprintf(line, sizeof(line), "STATUS=%s", model_state_to_string(s->state));
        notify(line);
}

/* ---- worker callbacks ---- */

static void gpu_stall_check(manager *m, bool on);

static void on_status(void *userdata, const worker_status *st) {
        manager *m = userdata;
        model_state old = m->status.state;
        m->status = *st;
        gpu_stall_check(m, st->state == MODEL_LOADING || st->state == MODEL_BUSY ||
                                   st->state == MODEL_OFFLOADING);
        if (st->state == MODEL_LOADING) {
                char line[64];
                snprintf(line, sizeof(line), "EXTEND_TIMEOUT_USEC=%llu",
                         (unsigned long long) LOAD_EXTEND_USEC);
                notify(line);
        }
        if (st->state == MODEL_FAILED)
                log_error("no model: %s", st->error);
        if (st->state == MODEL_READY && old != MODEL_READY && old != MODEL_BUSY)
                log_info("model ready on %s (%s)", st->device,
                         st->synthetic ? "SYNTHETIC weights" : st->weights_path);
        if (st->state == MODEL_OFFLOADED && old != MODEL_OFFLOADED)
                log_info("model offloaded");
        /* READY=1 once the first load has ended, whichever way: a daemon without a model still
         * answers status calls and can be told to Reload. */
        if (!m->notified_ready && (st->state == MODEL_READY || st->state == MODEL_FAILED ||
                                   st->state == MODEL_OFFLOADED)) {
                m->notified_ready = true;
                notify("READY=1");
        }
        notify_status(m);
        manager_emit_changed(m, "State", "Backend", "Device", "GpuMemoryBytes",
                             "PeakGpuMemoryBytes", "ModelMemoryBytes", "PeakModelMemoryBytes",
                             "ModelPath", "ModelSynthetic", NULL);
        manager_check_idle(m);
}

static void on_job_started(void *userdata, job *j) {
        manager *m = userdata;
        job_started(j);
        manager_emit_changed(m, "QueueLength", NULL);
}

static void on_progress(void *userdata, job *j, const char *stage, double fraction) {
        manager *m = userdata;
        if (job_finished(j))
                return;
        bool stage_changed = strcmp(j->stage, stage) != 0;
        snprintf(j->stage, sizeof(j->stage), "%s", stage);
        j->progress = fraction;
        job_changed(j, "Progress", stage_changed ? "Stage" : NULL);
        notify_status(m);
}

static void on_job_done(void *userdata, job *j, int r, const char *message) {
        manager *m = userdata;
        if (r == -ECANCELED || atomic_load(&j->cancel))
                job_finish(j, JOB_RESULT_CANCELLED,
                           j->cancel_reason[0] ? j->cancel_reason : message);
        else if (r < 0)
                job_finish(j, job_result_of_failure(r, j->read_failed), message);
        else
                job_finish(j, JOB_RESULT_DONE, NULL);
        if (r >= 0)
                m->jobs_completed++;
        manager_emit_changed(m, "QueueLength", "JobsCompleted", NULL);
        notify_status(m);
        manager_check_idle(m);
}

/* The worker has the new model, or kept the old one: only now does the new configuration
 * take over, so that a refused reload changes nothing. */
static void on_reload_done(void *userdata, int r, const char *message) {
        manager *m = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = TAKE_PTR(m->pending_reload);
        int k;
        if (r < 0) {
                log_error("reload refused, the old model keeps serving: %s", message);
                daemon_conf_done(&m->pending_conf);
                m->have_pending_conf = false;
                k = call ? sd_bus_reply_method_errorf(call, SD_BUS_ERROR_FAILED,
                                                      "Reload refused, the old model keeps "
                                                      "serving: %s.",
                                                      message)
                         : 0;
        } else {
                daemon_conf_done(&m->conf);
                m->conf = m->pending_conf;
                m->have_pending_conf = false;
                manager_set_idle_timeout(m, m->conf.idle_timeout_usec);
                manager_emit_changed(m, "ModelPath", NULL);
                log_info("reload done: %s", m->conf.model_path);
                k = call ? sd_bus_reply_method_return(call, NULL) : 0;
        }
        if (k < 0)
                log_warning_errno(k, "cannot answer the Reload call");
        notify_status(m);
}

static const worker_callbacks callbacks = {
        .status = on_status,
        .job_started = on_job_started,
        .progress = on_progress,
        .job_done = on_job_done,
        .reload_done = on_reload_done,
};

/* ---- jobs and idling ---- */

job *manager_find_job(manager *m, uint32_t id) {
        job *j;
        TAILQ_FOREACH(j, &m->jobs, queue)
                if (j->id == id)
                        return j;
        return NULL;
}

unsigned manager_queue_length(manager *m) {
        unsigned n = 0;
        job *j;
        TAILQ_FOREACH(j, &m->jobs, queue)
                n += !job_finished(j);
        return n;
}

unsigned manager_user_jobs(manager *m, uid_t uid) {
        unsigned n = 0;
        job *j;
        TAILQ_FOREACH(j, &m->jobs, queue)
                n += !job_finished(j) && j->uid == uid;
        return n;
}

/* The idle timer, and the deadline it publishes (IdleOffloadTimestampMonotonic). */
static void idle_disarm(manager *m) {
        uv_timer_stop(&m->idle_timer);
        if (m->idle_deadline_usec) {
                m->idle_deadline_usec = 0;
                manager_emit_changed(m, "IdleOffloadTimestampMonotonic", NULL);
        }
}

/* µs to whole ms, rounded up, without the overflow of (usec + 999) / 1000 near 2^64. */
static uint64_t usec_to_msec_up(uint64_t usec) {
        return usec / 1000 + (usec % 1000 != 0);
}

static uint64_t add_saturate(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX - 1 : a + b; /* UINT64_MAX means "none" */
}

static void on_idle(uv_timer_t *t);

static void idle_arm(manager *m) {
        if (uv_is_active((uv_handle_t *) &m->idle_timer))
                return;
        int r = uv_timer_start(&m->idle_timer, on_idle, usec_to_msec_up(m->idle_timeout_usec), 0);
        if (r < 0) {
                log_error_errno(r, "cannot arm the idle timer");
                return;
        }
        m->idle_deadline_usec = add_saturate(now_monotonic_usec(), m->idle_timeout_usec);
        manager_emit_changed(m, "IdleOffloadTimestampMonotonic", NULL);
}

void manager_job_submitted(manager *m, job *j) {
        idle_disarm(m);
        int r = worker_submit(m->worker, j);
        if (r < 0) {
                job_finish(j, JOB_RESULT_RESOURCES, "the daemon is out of memory; try again later");
                return;
        }
        manager_emit_changed(m, "QueueLength", NULL);
}

void manager_job_removed(manager *m, job *j) {
        TAILQ_REMOVE(&m->jobs, j, queue);
        job_free(j);
}

static void on_idle(uv_timer_t *t) {
        manager *m = t->data;
        m->idle_deadline_usec = 0;
        manager_emit_changed(m, "IdleOffloadTimestampMonotonic", NULL);
        if (manager_queue_length(m) == 0 && worker_pending(m->worker) == 0 &&
            (m->status.state == MODEL_READY)) {
                log_info("idle for %.0f s, offloading the model", m->idle_timeout_usec / 1e6);
                worker_offload(m->worker);
        }
}

/* (Re)arm the idle timer when nothing is queued or running; only jobs reset it. */
void manager_check_idle(manager *m) {
        if (m->stopping) {
                if (manager_queue_length(m) == 0 && worker_pending(m->worker) == 0)
                        uv_stop(m->loop);
                return;
        }
        if (manager_queue_length(m) > 0 || worker_pending(m->worker) > 0 ||
            m->status.state != MODEL_READY || m->idle_timeout_usec == 0 ||
            m->idle_timeout_usec == UINT64_MAX) {
                idle_disarm(m);
                return;
        }
        idle_arm(m);
}

void manager_set_idle_timeout(manager *m, uint64_t usec) {
        m->idle_timeout_usec = usec;
        idle_disarm(m);
        manager_check_idle(m);
        manager_emit_changed(m, "IdleTimeoutUSec", NULL);
}

void manager_clear_gpu(manager *m) {
        idle_disarm(m);
        worker_offload(m->worker);
}

/* ---- configuration and model ---- */

static residency_source model_source(const daemon_conf *c) {
        return (residency_source) {
                .weights_path = c->model_path,
                .config_path = c->model_config,
                .backend = c->backend == DAEMON_BACKEND_CUDA  ? RESIDENCY_CUDA
                           : c->backend == DAEMON_BACKEND_CPU ? RESIDENCY_CPU
                                                              : RESIDENCY_AUTO,
                .precision = c->precision == DAEMON_PRECISION_FP32   ? P3_PRECISION_FP32
                             : c->precision == DAEMON_PRECISION_BF16 ? P3_PRECISION_BF16
                             : c->precision == DAEMON_PRECISION_FP16 ? P3_PRECISION_FP16
                                                                     : P3_PRECISION_AUTO,
                .threads = c->threads,
                .device_memory_max = c->gpu_memory_max,
        };
}

static const char *env_get(const char *name) {
        return getenv(name);
}

static int load_conf(const char *path, daemon_conf *c, p3_err *err) {
        daemon_conf_init(c);
        int r = daemon_conf_load(path, c, err);
        if (r >= 0)
                r = daemon_conf_apply_env(c, env_get, err);
        if (r < 0)
                daemon_conf_done(c);
        return r;
}

/* Reads the configuration here (small files) and hands the model to the worker, which opens
 * and loads it beside the old one (seconds for a real checkpoint: not on this thread). The
 * answer comes through on_reload_done(). */
int manager_reload(manager *m, sd_bus_message *call, p3_err *err) {
        if (m->pending_reload || m->have_pending_conf)
                return p3_errf(err, -EBUSY, "a reload is already in progress");
        daemon_conf c;
        int r = load_conf(m->config_path, &c, err);
        if (r < 0)
                return r;
        if (!c.model_path) {
                daemon_conf_done(&c);
                return p3_errf(err, -EINVAL, "no model path is configured");
        }
        residency_source src = model_source(&c);
        r = worker_reload(m->worker, &src);
        if (r < 0) {
                daemon_conf_done(&c);
                return p3_errf(err, r, "cannot start the reload: %s", p3_strerror(r));
        }
        m->pending_conf = c;
        m->have_pending_conf = true;
        m->pending_reload = call ? sd_bus_message_ref(call) : NULL;
        log_info("reloading %s", c.model_path);
        return 0;
}

/* ---- signals and watchdog ---- */

static void on_watchdog(uv_timer_t *t) {
        notify("WATCHDOG=1");
}

/* A hung GPU kernel blocks the worker in a synchronisation for good, while this thread keeps
 * the watchdog fed: no cancel, offload or reload can reach it, and its context holds the GPU.
 * Only the process's end frees the device, so a job that has been silent on the GPU for
 * GPU_STALL_SEC ends the daemon with status 3; systemd starts it afresh (Restart=on-failure),
 * the queued jobs' callers see it leave the bus. The model reports progress many times a
 * stage, and a whole job at full quality takes seconds on a GPU: ten silent minutes is a hang.
 * Test hook: $P3SAMD_TEST_GPU_STALL_SEC shortens it. */
#define GPU_STALL_SEC 600
#define EXIT_GPU_HUNG 3

static void on_gpu_stall_check(uv_timer_t *t) {
        manager *m = t->data;
        char what[80];
        uint64_t stalled = worker_gpu_stalled_usec(m->worker, what, sizeof(what));
        if (stalled < m->gpu_stall_usec)
                return;
        log_error("the GPU has not answered for %" PRIu64 " s (%s): exiting, so that the "
                  "driver frees the device and p3samd starts afresh", stalled / 1000000, what);
        notify("STATUS=the GPU stopped answering; exiting");
        _exit(EXIT_GPU_HUNG); /* the worker cannot be joined, nor the model freed */
}

/* Checked while the worker loads, runs a job or offloads (no wake-ups while idle), ten times a
 * stall period, at most every 10 s. Every status report calls this: a running check is left
 * to run, not restarted. */
static void gpu_stall_check(manager *m, bool on) {
        if (!on) {
                uv_timer_stop(&m->gpu_stall_timer);
                return;
        }
        if (uv_is_active((uv_handle_t *) &m->gpu_stall_timer))
                return;
        uint64_t period_msec = MIN(m->gpu_stall_usec / 10000, 10000);
        if (uv_timer_start(&m->gpu_stall_timer, on_gpu_stall_check, period_msec, period_msec) < 0)
                log_warning("cannot start the GPU stall check: a hung kernel would hang jobs");
}

void manager_stop(manager *m, const char *why) {
        if (m->stopping)
                return;
        m->stopping = true;
        log_notice("%s, stopping", why);
        notify("STOPPING=1\nSTATUS=stopping");
        job *j;
        TAILQ_FOREACH(j, &m->jobs, queue)
                job_cancel(j, "the daemon is stopping");
        manager_check_idle(m);
}

static void on_signal(uv_signal_t *s, int signum) {
        manager *m = s->data;
        if (signum == SIGHUP) {
                p3_err err = {};
                int r = manager_reload(m, NULL, &err);
                if (r < 0)
                        log_error("reload refused, keeping the old model: %s",
                                  p3_err_msg(&err, r));
                return;
        }
        manager_stop(m, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Test hook, switched on by the real-systemd test's drop-in: SIGUSR1 stops the loop from
 * answering anything (bus, watchdog), so that the test sees the watchdog kill and restart
 * the daemon. Without $P3SAMD_TEST_HANG_ON_SIGUSR1, as in every installation, SIGUSR1 keeps
 * its default action. */
static void on_test_hang(uv_signal_t *s, int signum) {
        log_warning("test hook: SIGUSR1, the loop stops answering");
        for (;;)
                pause();
}

static int start_signal(manager *m, uv_signal_t *s, int signum) {
        int r = uv_signal_init(m->loop, s);
        if (r < 0)
                return r;
        s->data = m;
        return uv_signal_start(s, on_signal, signum);
}

int manager_start(manager *m) {
        int r = start_signal(m, &m->sig_term, SIGTERM);
        if (r >= 0)
                r = start_signal(m, &m->sig_int, SIGINT);
        if (r >= 0)
                r = start_signal(m, &m->sig_hup, SIGHUP);
        if (r >= 0 && getenv("P3SAMD_TEST_HANG_ON_SIGUSR1")) {
                r = uv_signal_init(m->loop, &m->sig_usr1);
                if (r >= 0)
                        r = uv_signal_start(&m->sig_usr1, on_test_hang, SIGUSR1);
        }
        if (r < 0)
                return r;
        uint64_t wd = 0;
        if (sd_watchdog_enabled(false, &wd) > 0 && wd > 0) {
                m->watchdog_usec = wd;
                uv_timer_start(&m->watchdog_timer, on_watchdog, 0, MAX(wd / 2000, 1));
        }
        worker_load(m->worker);
        return 0;
}

int manager_new(uv_loop_t *loop, const char *config_path, manager **ret, p3_err *err) {
        manager *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->loop = loop;
        m->next_id = 1;
        m->status.state = MODEL_STARTING;
        TAILQ_INIT(&m->jobs);
        uv_timer_init(loop, &m->idle_timer);
        uv_timer_init(loop, &m->watchdog_timer);
        uv_timer_init(loop, &m->gpu_stall_timer);
        m->idle_timer.data = m;
        m->watchdog_timer.data = m;
        m->gpu_stall_timer.data = m;
        m->config_path = config_path ? strdup(config_path) : NULL;
        int r = load_conf(config_path, &m->conf, err);
        if (r < 0) {
                manager_free(m);
                return r;
        }
        m->idle_timeout_usec = m->conf.idle_timeout_usec;
        const char *stall = getenv("P3SAMD_TEST_GPU_STALL_SEC");
        m->gpu_stall_usec = MAX(stall ? strtoull(stall, NULL, 10) : GPU_STALL_SEC, 1) * 1000000;
        /* A model that cannot be opened is not fatal: the daemon serves status and waits for
         * a Reload (after `p3samctl fetch-model`, say). */
        residency *res = NULL;
        p3_err merr = {};
        residency_source src = model_source(&m->conf);
        r = residency_open(&src, &res, &merr);
        if (r < 0) {
                snprintf(m->status.error, sizeof(m->status.error), "%s", p3_err_msg(&merr, r));
                log_error("cannot open the model: %s", m->status.error);
        }
        r = worker_new(loop, res, &callbacks, m, &m->worker);
        if (r < 0) {
                manager_free(m);
                return p3_errf(err, r, "cannot start the inference thread: %s", p3_strerror(r));
        }
        if (!res)
                worker_set_error(m->worker, m->status.error);
        *ret = m;
        return 0;
}

static void close_handle(uv_handle_t *h) {
        if (h->loop && !uv_is_closing(h))
                uv_close(h, NULL);
}

void manager_free(manager *m) {
        if (!m)
                return;
        job *j;
        TAILQ_FOREACH(j, &m->jobs, queue)
                atomic_store(&j->cancel, true);
        worker_free(m->worker);
        m->worker = NULL;
        while ((j = TAILQ_FIRST(&m->jobs))) {
                TAILQ_REMOVE(&m->jobs, j, queue);
                job_free(j);
        }
        if (m->pending_reload)
                sd_bus_message_unref(m->pending_reload);
        if (m->have_pending_conf)
                daemon_conf_done(&m->pending_conf);
        bus_uv_free(m->bus_uv);
        if (m->bus) {
                bus_creds_forget(m->bus);
                sd_bus_flush(m->bus);
                sd_bus_close_unref(m->bus);
        }
        close_handle((uv_handle_t *) &m->idle_timer);
        close_handle((uv_handle_t *) &m->watchdog_timer);
        close_handle((uv_handle_t *) &m->gpu_stall_timer);
        close_handle((uv_handle_t *) &m->sig_term);
        close_handle((uv_handle_t *) &m->sig_int);
        close_handle((uv_handle_t *) &m->sig_hup);
        close_handle((uv_handle_t *) &m->sig_usr1);
        /* Let libuv finish closing the handles before the memory goes. */
        uv_run(m->loop, UV_RUN_DEFAULT);
        daemon_conf_done(&m->conf);
        free(m->config_path);
        free(m);
}
