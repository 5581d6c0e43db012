/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "heap-policy.h"
#include "job-run.h"
#include "log.h"
#include "time-util.h"
#include "worker.h"

typedef enum task_kind {
        TASK_LOAD,
        TASK_JOB,
        TASK_OFFLOAD,
        TASK_RELOAD,
} task_kind;

typedef enum event_kind {
        EV_STATUS,
        EV_JOB_STARTED,
        EV_JOB_DONE,
        EV_RELOAD_DONE,
} event_kind;

typedef struct event {
        event_kind kind;
        job *job;
        int r;
        char message[512];
        worker_status status;
        TAILQ_ENTRY(event) link;
} event;

/* A task carries the events that report its end, allocated when it is queued: a job that
 * was accepted always gets its answer, even when memory runs out later. */
typedef struct task {
        task_kind kind;
        job *job;
        residency_source next; /* TASK_RELOAD */
        event *started, *done;
        TAILQ_ENTRY(task) link;
} task;

struct worker {
        uv_loop_t *loop;
        uv_async_t async;
        worker_callbacks cb;
        void *userdata;
        pthread_t thread;
        bool thread_started;

        pthread_mutex_t lock; /* everything below */
        pthread_cond_t wake;
        bool stop;
        TAILQ_HEAD(, task) tasks;
        TAILQ_HEAD(, event) events;
        unsigned running;
        struct {
                job *job;
                char stage[32];
                double fraction;
                bool dirty;
        } progress;
        /* What the worker is doing on the GPU (one of the GPU_WORK_* strings, NULL when
         * nothing) and when it began or last reported progress (CLOCK_MONOTONIC µs): how the
         * loop thread sees a hung kernel (worker_gpu_stalled_usec). */
        const char *gpu_work;
        uint64_t gpu_progress_usec;

        worker_status fallback; /* the latest status, when an event could not be allocated */
        bool fallback_dirty;
        char error[512]; /* why there is no model; both threads, under the lock */

        residency *res; /* worker thread only */
        model_state state;
        unsigned stall_msec; /* test hook: $P3SAMD_TEST_WORKER_STALL_MSEC */
};

const char *model_state_to_string(model_state s) {
        static const char *const names[] = {
                [MODEL_STARTING] = "starting",   [MODEL_LOADING] = "loading",
                [MODEL_READY] = "ready",         [MODEL_BUSY] = "busy",
                [MODEL_OFFLOADING] = "offloading", [MODEL_OFFLOADED] = "offloaded",
                [MODEL_FAILED] = "failed",
        };
        return s <= MODEL_FAILED ? names[s] : "unknown";
}

/* ---- worker thread → loop thread ---- */

static void post(worker *w, event *ev) {
        pthread_mutex_lock(&w->lock);
        TAILQ_INSERT_TAIL(&w->events, ev, link);
        pthread_mutex_unlock(&w->lock);
        uv_async_send(&w->async);
}

static void set_error(worker *w, const char *why) {
        pthread_mutex_lock(&w->lock);
        snprintf(w->error, sizeof(w->error), "%s", why);
        pthread_mutex_unlock(&w->lock);
}

static void fill_status(worker *w, model_state st, worker_status *s) {
        *s = (worker_status) { .state = st };
        if (w->res) {
                residency *r = w->res;
                snprintf(s->backend, sizeof(s->backend), "%s", r->backend_name);
                snprintf(s->device, sizeof(s->device), "%s", r->device);
                s->model_bytes = residency_model_bytes(r);
                s->peak_model_bytes = residency_peak_model_bytes(r);
                s->gpu_bytes = residency_gpu_bytes(r);
                s->peak_gpu_bytes = residency_peak_gpu_bytes(r);
                s->synthetic = p3_weights_synthetic(r->w);
                snprintf(s->weights_path, sizeof(s->weights_path), "%s",
                         r->src.weights_path ? r->src.weights_path : "");
        }
        s->host_bytes = residency_host_bytes();
        pthread_mutex_lock(&w->lock);
        snprintf(s->error, sizeof(s->error), "%s", w->error);
        pthread_mutex_unlock(&w->lock);
}

/* States are events, so that a watcher sees each transition; should one not be allocated, the
 * latest state still arrives through the fallback slot. */
static void post_status(worker *w, model_state st) {
        w->state = st;
        event *ev = calloc(1, sizeof(*ev));
        if (!ev) {
                worker_status s;
                fill_status(w, st, &s);
                pthread_mutex_lock(&w->lock);
                w->fallback = s;
                w->fallback_dirty = true;
                pthread_mutex_unlock(&w->lock);
                uv_async_send(&w->async);
                return;
        }
        ev->kind = EV_STATUS;
        fill_status(w, st, &ev->status);
        post(w, ev);
}

static event *fill_event(event *ev, event_kind kind, job *j, int r, const char *msg) {
        *ev = (event) { .kind = kind, .job = j, .r = r };
        snprintf(ev->message, sizeof(ev->message), "%s", msg ? msg : "");
        return ev;
}

static void on_progress(void *userdata, job *j, const char *stage, double fraction) {
        worker *w = userdata;
        pthread_mutex_lock(&w->lock);
        w->gpu_progress_usec = now_monotonic_usec();
        w->progress.job = j;
        snprintf(w->progress.stage, sizeof(w->progress.stage), "%s", stage);
        w->progress.fraction = fraction;
        w->progress.dirty = true;
        pthread_mutex_unlock(&w->lock);
        uv_async_send(&w->async);
}

static const char GPU_WORK_LOAD[] = "loading the model", GPU_WORK_JOB[] = "running a job",
                  GPU_WORK_OFFLOAD[] = "offloading the model";

/* Mark GPU work (a GPU_WORK_* string) or its end (NULL), for worker_gpu_stalled_usec. */
static void gpu_watch(worker *w, const char *what) {
        pthread_mutex_lock(&w->lock);
        w->gpu_work = what;
        w->gpu_progress_usec = now_monotonic_usec();
        pthread_mutex_unlock(&w->lock);
}

/* Test hook: with P3_TEST_FAKE_CUDA's stand-in GPU, P3_TEST_DEVICE_HANG=job|load|offload blocks
 * that work for ever, as a hung kernel blocks the host in a synchronisation. */
static void test_hang(worker *w, const char *where) {
        const char *hang = getenv("P3_TEST_DEVICE_HANG");
        if (!hang || strcmp(hang, where) != 0 || !getenv("P3_TEST_FAKE_CUDA"))
                return;
        log_warning("test hook: %s hangs as on a hung GPU", where);
        for (;;)
                pause();
}

/* ---- the tasks ---- */

static int ensure_loaded(worker *w, p3_err *err) {
        if (!w->res) {
                pthread_mutex_lock(&w->lock);
                int r = p3_errf(err, -ENOENT, "no model is loaded: %s",
                                w->error[0] ? w->error : "see the daemon's log");
                pthread_mutex_unlock(&w->lock);
                return r;
        }
        if (residency_loaded(w->res))
                return 0;
        post_status(w, MODEL_LOADING);
        /* A load that asked for a GPU may wait on one (its self-test), whichever it ends on */
        gpu_watch(w, w->res->src.backend != RESIDENCY_CPU ? GPU_WORK_LOAD : NULL);
        test_hang(w, "load");
        int r = residency_load(w->res, err);
        gpu_watch(w, NULL);
        if (r < 0) {
                set_error(w, p3_err_msg(err, r));
                post_status(w, MODEL_FAILED);
                return r;
        }
        set_error(w, "");
        if (w->res->fallback_reason[0])
                log_warning("%s", w->res->fallback_reason);
        log_info("model loaded on %s at %s", w->res->device,
                 p3_precision_to_string(p3_model_precision(w->res->m)));
        post_status(w, MODEL_READY);
        return 0;
}

static void do_offload(worker *w) {
        if (!w->res || !residency_loaded(w->res))
                return;
        post_status(w, MODEL_OFFLOADING);
        gpu_watch(w, residency_on_gpu(w->res) ? GPU_WORK_OFFLOAD : NULL);
        test_hang(w, "offload");
        residency_offload(w->res); /* frees the context: a wedged GPU may not let it go */
        gpu_watch(w, NULL);
        post_status(w, MODEL_OFFLOADED);
}

/* After a failed job (r): a GPU whose context a fault has poisoned fails every later call,
 * so the model goes (freeing the context) and the next job loads it again, which runs the
 * self-test on whatever the device is then: the GPU if it recovered, else the CPU with the
 * reason in Device. Without this every later job would fail until the idle offload. The
 * job's message then says so, and a device error (-EIO) becomes -EAGAIN: the machine's
 * failure, worth a retry, not the mesh's. Returns the job's result. */
static int check_device(worker *w, int r, p3_err *err) {
        char why[320], msg[sizeof(err->msg)];
        if (!w->res || residency_device_error(w->res, why, sizeof(why)) >= 0)
                return r;
        log_error("the device failed (%s): the model is offloaded; the next job loads it again "
                  "after the self-test", why);
        do_offload(w);
        snprintf(msg, sizeof(msg), "%s", p3_err_msg(err, r));
        *err = (p3_err) {}; /* the first message wins: make room for the longer one */
        return p3_errf(err, r == -EIO ? -EAGAIN : r,
                       "%s; the device failed (%s): the model was offloaded, and the next job "
                       "loads it again", msg, why);
}

/* Each task returns the event that reports its end (or NULL): thread_main publishes it in
 * the same locked step that marks the worker idle, so that the loop, handling it, already
 * sees the true number of pending tasks. */
static event *do_job(worker *w, task *t) {
        p3_err err = {};
        job *j = t->job;
        post(w, fill_event(TAKE_PTR(t->started), EV_JOB_STARTED, j, 0, NULL));
        if (w->res) /* the job's precision, or the configured one: reloads when it differs */
                residency_want_precision(w->res, j->has_precision ? j->precision
                                                                  : w->res->configured_precision);
        int r = atomic_load(&j->cancel) ? -ECANCELED : ensure_loaded(w, &err);
        if (r >= 0) {
                post_status(w, MODEL_BUSY);
                gpu_watch(w, residency_on_gpu(w->res) ? GPU_WORK_JOB : NULL);
                test_hang(w, "job");
                r = job_run(w->res, j, on_progress, w, &err);
                gpu_watch(w, NULL);
                post_status(w, MODEL_READY);
                if (r < 0)
                        r = check_device(w, r, &err);
        }
        return fill_event(TAKE_PTR(t->done), EV_JOB_DONE, j, r, r < 0 ? p3_err_msg(&err, r) : NULL);
}

/* Open (and, if the old model is loaded, load) the new model beside the old one, then swap:
 * a new model that fails at any step leaves the old one serving. Opening reads and checks the
 * whole checkpoint, which takes seconds for the real one: here, not on the loop thread. */
static int reload_aside(worker *w, const residency_source *src, p3_err *err) {
        _cleanup_(residency_freep) residency *next = NULL;
        int r = residency_open(src, &next, err);
        if (r < 0)
                return r;
        bool was_loaded = w->res && residency_loaded(w->res);
        if (was_loaded) {
                r = residency_load(next, err);
                if (r < 0)
                        return r;
        }
        residency_free(w->res);
        w->res = TAKE_PTR(next);
        set_error(w, "");
        post_status(w, was_loaded ? MODEL_READY : MODEL_OFFLOADED);
        return 0;
}

static event *do_reload(worker *w, task *t) {
        p3_err err = {};
        int r = reload_aside(w, &t->next, &err);
        return fill_event(TAKE_PTR(t->done), EV_RELOAD_DONE, NULL, r,
                          r < 0 ? p3_err_msg(&err, r) : NULL);
}

static event *run_task(worker *w, task *t) {
        p3_err err = {};
        switch (t->kind) {
        case TASK_LOAD:
                if (ensure_loaded(w, &err) < 0 && !w->res)
                        post_status(w, MODEL_FAILED);
                return NULL;
        case TASK_JOB:
                return do_job(w, t);
        case TASK_OFFLOAD:
                do_offload(w);
                return NULL;
        case TASK_RELOAD:
                return do_reload(w, t);
        }
        return NULL;
}

static void task_free(task *t) {
        if (!t)
                return;
        free(t->started);
        free(t->done);
        residency_source_done(&t->next);
        free(t);
}

static bool worker_queue_empty(worker *w) {
        pthread_mutex_lock(&w->lock);
        bool empty = TAILQ_EMPTY(&w->tasks);
        pthread_mutex_unlock(&w->lock);
        return empty;
}

static void *thread_main(void *userdata) {
        worker *w = userdata;
        for (;;) {
                pthread_mutex_lock(&w->lock);
                while (!w->stop && TAILQ_EMPTY(&w->tasks))
                        pthread_cond_wait(&w->wake, &w->lock);
                if (w->stop) {
                        pthread_mutex_unlock(&w->lock);
                        break;
                }
                task *t = TAILQ_FIRST(&w->tasks);
                TAILQ_REMOVE(&w->tasks, t, link);
                w->running++;
                pthread_mutex_unlock(&w->lock);

                event *last = run_task(w, t);
                task_free(t);
                if (worker_queue_empty(w)) /* not between jobs back to back: they reuse it */
                        heap_give_back();
                if (w->stall_msec) /* test hook: widen the window between the work and its end */
                        usleep(w->stall_msec * 1000);

                pthread_mutex_lock(&w->lock);
                if (last)
                        TAILQ_INSERT_TAIL(&w->events, last, link);
                w->running--;
                pthread_mutex_unlock(&w->lock);
                uv_async_send(&w->async);
        }
        residency_free(w->res);
        w->res = NULL;
        return NULL;
}

/* ---- loop thread ---- */

static void on_async(uv_async_t *a) {
        worker *w = a->data;
        TAILQ_HEAD(, event) evs = TAILQ_HEAD_INITIALIZER(evs);
        pthread_mutex_lock(&w->lock);
        TAILQ_CONCAT(&evs, &w->events, link);
        bool dirty = w->progress.dirty;
        job *pj = w->progress.job;
        char stage[32];
        double frac = w->progress.fraction;
        memcpy(stage, w->progress.stage, sizeof(stage));
        w->progress.dirty = false;
        bool fallback = w->fallback_dirty;
        worker_status fs = w->fallback;
        w->fallback_dirty = false;
        pthread_mutex_unlock(&w->lock);

        /* Progress first: a job's Completed must not be followed by a stale progress update. */
        bool pj_done = false;
        event *ev;
        TAILQ_FOREACH(ev, &evs, link)
                if (ev->kind == EV_JOB_DONE && ev->job == pj)
                        pj_done = true;
        if (dirty && pj && !pj_done && w->cb.progress)
                w->cb.progress(w->userdata, pj, stage, frac);

        while ((ev = TAILQ_FIRST(&evs))) {
                TAILQ_REMOVE(&evs, ev, link);
                switch (ev->kind) {
                case EV_STATUS:
                        if (w->cb.status)
                                w->cb.status(w->userdata, &ev->status);
                        break;
                case EV_JOB_STARTED:
                        if (w->cb.job_started)
                                w->cb.job_started(w->userdata, ev->job);
                        break;
                case EV_JOB_DONE:
                        pthread_mutex_lock(&w->lock);
                        if (w->progress.job == ev->job)
                                w->progress.job = NULL;
                        pthread_mutex_unlock(&w->lock);
                        if (w->cb.job_done)
                                w->cb.job_done(w->userdata, ev->job, ev->r, ev->message);
                        break;
                case EV_RELOAD_DONE:
                        if (w->cb.reload_done)
                                w->cb.reload_done(w->userdata, ev->r, ev->message);
                        break;
                }
                free(ev);
        }
        if (fallback && w->cb.status)
                w->cb.status(w->userdata, &fs);
}

static void enqueue(worker *w, task *t, bool front) {
        pthread_mutex_lock(&w->lock);
        if (front)
                TAILQ_INSERT_HEAD(&w->tasks, t, link);
        else
                TAILQ_INSERT_TAIL(&w->tasks, t, link);
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
}

/* A task with the events its end needs (n_events: 0, 1 = done, 2 = started and done). */
static task *task_new(task_kind kind, job *j, int n_events) {
        task *t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;
        *t = (task) { .kind = kind, .job = j };
        if (n_events >= 1 && !(t->done = calloc(1, sizeof(event)))) {
                task_free(t);
                return NULL;
        }
        if (n_events >= 2 && !(t->started = calloc(1, sizeof(event)))) {
                task_free(t);
                return NULL;
        }
        return t;
}

void worker_set_error(worker *w, const char *why) {
        set_error(w, why);
}

/* Load and offload carry no reply: should even their 80 bytes be missing, the next job
 * loads the model anyway, and the idle timer asks again. */
void worker_load(worker *w) {
        task *t = task_new(TASK_LOAD, NULL, 0);
        if (t)
                enqueue(w, t, false);
}

int worker_submit(worker *w, job *j) {
        task *t = task_new(TASK_JOB, j, 2);
        if (!t)
                return -ENOMEM;
        enqueue(w, t, false);
        return 0;
}

void worker_offload(worker *w) {
        task *t = task_new(TASK_OFFLOAD, NULL, 0);
        if (t)
                enqueue(w, t, false);
}

int worker_reload(worker *w, const residency_source *next) {
        task *t = task_new(TASK_RELOAD, NULL, 1);
        if (!t)
                return -ENOMEM;
        int r = residency_source_copy(next, &t->next);
        if (r < 0) {
                task_free(t);
                return r;
        }
        enqueue(w, t, true);
        return 0;
}

bool worker_unqueue(worker *w, job *j) {
        bool found = false;
        pthread_mutex_lock(&w->lock);
        task *t;
        TAILQ_FOREACH(t, &w->tasks, link)
                if (t->kind == TASK_JOB && t->job == j) {
                        TAILQ_REMOVE(&w->tasks, t, link);
                        task_free(t);
                        found = true;
                        break;
                }
        pthread_mutex_unlock(&w->lock);
        return found;
}

uint64_t worker_gpu_stalled_usec(worker *w, char *what, size_t what_len) {
        pthread_mutex_lock(&w->lock);
        uint64_t now = now_monotonic_usec(), stalled = 0;
        if (w->gpu_work && now > w->gpu_progress_usec)
                stalled = now - w->gpu_progress_usec;
        if (w->gpu_work == GPU_WORK_JOB && w->progress.stage[0])
                snprintf(what, what_len, "%s, last in its %s stage", w->gpu_work,
                         w->progress.stage);
        else
                snprintf(what, what_len, "%s", w->gpu_work ? w->gpu_work : "nothing");
        pthread_mutex_unlock(&w->lock);
        return stalled;
}

unsigned worker_pending(worker *w) {
        unsigned n = 0;
        pthread_mutex_lock(&w->lock);
        task *t;
        TAILQ_FOREACH(t, &w->tasks, link)
                n++;
        n += w->running;
        pthread_mutex_unlock(&w->lock);
        return n;
}

static void free_after_close(uv_handle_t *h) {
        worker *w = h->data;
        event *ev;
        while ((ev = TAILQ_FIRST(&w->events))) {
                TAILQ_REMOVE(&w->events, ev, link);
                free(ev);
        }
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        free(w);
}

int worker_new(uv_loop_t *loop, residency *initial, const worker_callbacks *cb, void *userdata,
               worker **ret) {
        worker *w = calloc(1, sizeof(*w));
        if (!w) {
                residency_free(initial);
                return -ENOMEM;
        }
        w->loop = loop;
        w->cb = *cb;
        w->userdata = userdata;
        w->res = initial;
        TAILQ_INIT(&w->tasks);
        TAILQ_INIT(&w->events);
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->wake, NULL);
        const char *stall = getenv("P3SAMD_TEST_WORKER_STALL_MSEC");
        if (stall)
                w->stall_msec = (unsigned) strtoul(stall, NULL, 10);
        int r = uv_async_init(loop, &w->async, on_async);
        if (r < 0) {
                residency_free(initial);
                free(w);
                return r;
        }
        w->async.data = w;
        r = -pthread_create(&w->thread, NULL, thread_main, w);
        if (r < 0) {
                w->res = NULL;
                residency_free(initial);
                uv_close((uv_handle_t *) &w->async, free_after_close);
                return r;
        }
        w->thread_started = true;
        *ret = w;
        return 0;
}

void worker_free(worker *w) {
        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        task *t;
        while ((t = TAILQ_FIRST(&w->tasks))) {
                TAILQ_REMOVE(&w->tasks, t, link);
                task_free(t);
        }
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        if (w->thread_started)
                pthread_join(w->thread, NULL);
        /* Deliver what the thread said last (the running job's end) before closing. */
        on_async(&w->async);
        uv_close((uv_handle_t *) &w->async, free_after_close);
}
