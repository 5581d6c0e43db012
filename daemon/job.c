/* SPDX-License-Identifier: MIT */
/* Job objects on the bus (/org/p3sam/Segmenter1/job/<id>, org.p3sam.Segmenter1.Job) and their
 * lifecycle on the loop thread: published, tracked (a caller that leaves the bus cancels its
 * job), finished (Completed + JobRemoved), lingering for JobLingerSec, then gone. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bus-creds.h"
#include "bus-polkit.h"
#include "bus-util.h"
#include "job.h"
#include "manager.h"

const char *job_state_to_string(job_state s) {
        static const char *const names[] = {
                [JOB_QUEUED] = "queued", [JOB_RUNNING] = "running", [JOB_DONE] = "done",
                [JOB_FAILED] = "failed", [JOB_CANCELLED] = "cancelled",
        };
        return s <= JOB_CANCELLED ? names[s] : "unknown";
}

static void close_fd(int *fd) {
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

static void job_release_memory(job *j) {
        close_fd(&j->mesh_fd);
        close_fd(&j->out_fd);
        close_fd(&j->report_fd);
        for (int i = 0; i < j->n_outputs; i++)
                close_fd(&j->outputs[i].fd);
        sd_bus_track_unref(j->track);
        sd_bus_slot_unref(j->slot);
        free(j->prompts);
        free(j->sender);
        free(j->error);
        free(j);
}

static void on_timer_closed(uv_handle_t *h) {
        job_release_memory(h->data);
}

/* A job with a timer is freed once libuv has closed it. */
void job_free(job *j) {
        if (!j)
                return;
        if (j->timer_open) {
                j->timer_open = false;
                uv_close((uv_handle_t *) &j->timer, on_timer_closed);
        } else
                job_release_memory(j);
}

/* One property's value, as its getter gives it. */
static int append_property(sd_bus_message *m, const job *j, const char *prop) {
        if (strcmp(prop, "State") == 0)
                return sd_bus_message_append(m, "{sv}", prop, "s", job_state_to_string(j->state));
        if (strcmp(prop, "Result") == 0)
                return sd_bus_message_append(m, "{sv}", prop, "s",
                                             job_result_to_string(j->result));
        if (strcmp(prop, "Stage") == 0)
                return sd_bus_message_append(m, "{sv}", prop, "s", j->stage);
        if (strcmp(prop, "Progress") == 0)
                return sd_bus_message_append(m, "{sv}", prop, "d", j->progress);
        if (strcmp(prop, "Error") == 0)
                return sd_bus_message_append(m, "{sv}", prop, "s", j->error ? j->error : "");
        return -EINVAL;
}

/* A job's signals go to its owner only (a unicast signal: the destination is set), since its
 * Error can quote the owner's paths. A job whose owner has left (detached) has nobody to tell. */
static int send_to_owner(job *j, sd_bus_message *m) {
        if (j->sender && *j->sender) {
                int r = sd_bus_message_set_destination(m, j->sender);
                if (r < 0)
                        return r;
        }
        return sd_bus_send(j->manager->bus, m, NULL);
}

static int emit_changed(job *j, const char *const *props) {
        sd_bus *bus = j->manager->bus;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        if (!bus)
                return 0;
        int r = sd_bus_message_new_signal(bus, &m, j->path, "org.freedesktop.DBus.Properties",
                                          "PropertiesChanged");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", P3_JOB_IFACE);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        for (; r >= 0 && *props; props++)
                r = append_property(m, j, *props);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_append(m, "as", 0);
        if (r >= 0)
                r = send_to_owner(j, m);
        return r;
}

static void emit_completed(job *j) {
        sd_bus *bus = j->manager->bus;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        if (!bus)
                return;
        int r = sd_bus_message_new_signal(bus, &m, j->path, P3_JOB_IFACE, "Completed");
        if (r >= 0)
                r = sd_bus_message_append(m, "bs", j->state == JOB_DONE, j->error ? j->error : "");
        if (r >= 0)
                r = send_to_owner(j, m);
        if (r < 0)
                log_warning_errno(r, "job %" PRIu32 ": cannot send Completed", j->id);
        r = sd_bus_emit_signal(bus, P3_BUS_PATH, P3_BUS_IFACE, "JobRemoved", "uos", j->id, j->path,
                               job_state_to_string(j->state));
        if (r < 0)
                log_warning_errno(r, "job %" PRIu32 ": cannot send JobRemoved", j->id);
}

void job_changed(job *j, const char *prop1, const char *prop2) {
        const char *props[] = { prop1, prop2, NULL };
        int r = emit_changed(j, props);
        if (r < 0)
                log_warning_errno(r, "job %" PRIu32 ": cannot send PropertiesChanged", j->id);
}

/* The journal line of a job's end, at the priority of what happened to it. */
static void log_end(const job *j) {
        const char *what = j->kind == JOB_PREDICT ? "prediction" : "segmentation";
        if (j->state == JOB_DONE)
                log_info("job %" PRIu32 " (%s for uid %u) done", j->id, what, (unsigned) j->uid);
        else if (j->state == JOB_CANCELLED)
                log_notice("job %" PRIu32 " (%s for uid %u) cancelled: %s", j->id, what,
                           (unsigned) j->uid, j->error ? j->error : "no reason given");
        else
                log_error("job %" PRIu32 " (%s for uid %u) failed (%s): %s", j->id, what,
                          (unsigned) j->uid, job_result_to_string(j->result),
                          j->error ? j->error : "no reason given");
}

static void on_linger_end(uv_timer_t *t) {
        job *j = t->data;
        manager_job_removed(j->manager, j);
}

void job_finish(job *j, job_result result, const char *error) {
        manager *m = j->manager;
        if (job_finished(j))
                return;
        j->result = result;
        j->state = result == JOB_RESULT_DONE        ? JOB_DONE
                   : result == JOB_RESULT_CANCELLED ? JOB_CANCELLED
                                                    : JOB_FAILED;
        free(j->error);
        j->error = error && *error ? strdup(error) : NULL;
        if (j->state == JOB_DONE)
                j->progress = 1.0;
        j->stage[0] = 0; /* no stage runs any more */
        close_fd(&j->mesh_fd);
        close_fd(&j->out_fd);
        close_fd(&j->report_fd);
        for (int i = 0; i < j->n_outputs; i++)
                close_fd(&j->outputs[i].fd);
        j->track = sd_bus_track_unref(j->track);
        uv_timer_stop(&j->timer);
        log_end(j);
        static const char *const props[] = { "State", "Result", "Stage", "Error", "Progress", NULL };
        int r = emit_changed(j, props);
        if (r < 0)
                log_warning_errno(r, "job %" PRIu32 ": cannot send PropertiesChanged", j->id);
        emit_completed(j);
        uint64_t linger_ms = m->conf.job_linger_usec / 1000;
        if (j->timer_open)
                uv_timer_start(&j->timer, on_linger_end, linger_ms, 0);
}

void job_cancel(job *j, const char *reason) {
        if (job_finished(j))
                return;
        snprintf(j->cancel_reason, sizeof(j->cancel_reason), "%s", reason);
        atomic_store(&j->cancel, true);
        /* Not started yet: it ends here. Running: the worker stops at the next stage or batch
         * and reports back. */
        if (j->state == JOB_QUEUED && j->manager->worker && worker_unqueue(j->manager->worker, j)) {
                job_finish(j, JOB_RESULT_CANCELLED, reason);
                manager_check_idle(j->manager);
        }
}

/* The caller's connection went away: nobody is left to read the result. */
static int on_track_gone(sd_bus_track *t, void *userdata) {
        job *j = userdata;
        job_cancel(j, "the caller left the bus");
        return 0;
}

static void on_timeout(uv_timer_t *t) {
        job *j = t->data;
        job_cancel(j, "the job ran past JobTimeoutSec");
}

int job_publish(job *j) {
        manager *m = j->manager;
        int r = uv_timer_init(m->loop, &j->timer);
        if (r < 0)
                return r;
        j->timer.data = j;
        j->timer_open = true;
        snprintf(j->path, sizeof(j->path), P3_JOB_PREFIX "/%" PRIu32, j->id);
        if (j->sender && *j->sender && !j->detached) {
                r = sd_bus_track_new(m->bus, &j->track, on_track_gone, j);
                if (r >= 0)
                        r = sd_bus_track_add_name(j->track, j->sender);
                if (r < 0)
                        return r;
        }
        r = sd_bus_emit_signal(m->bus, P3_BUS_PATH, P3_BUS_IFACE, "JobNew", "uo", j->id, j->path);
        if (r < 0)
                log_warning_errno(r, "job %" PRIu32 ": cannot send JobNew", j->id);
        return 0;
}

/* Called when the worker starts the job: the timeout runs from here. */
void job_started(job *j) {
        j->state = JOB_RUNNING;
        j->started_usec = uv_now(j->manager->loop) * 1000;
        uint64_t timeout = j->manager->conf.job_timeout_usec;
        if (timeout > 0 && timeout != UINT64_MAX)
                uv_timer_start(&j->timer, on_timeout, (timeout + 999) / 1000, 0);
        job_changed(j, "State", NULL);
}

/* ---- the D-Bus object ---- */

static int property_get_state(sd_bus *bus, const char *path, const char *interface,
                              const char *property, sd_bus_message *reply, void *userdata,
                              sd_bus_error *error) {
        job *j = userdata;
        return sd_bus_message_append(reply, "s", job_state_to_string(j->state));
}

static int property_get_result(sd_bus *bus, const char *path, const char *interface,
                               const char *property, sd_bus_message *reply, void *userdata,
                               sd_bus_error *error) {
        job *j = userdata;
        return sd_bus_message_append(reply, "s", job_result_to_string(j->result));
}

static int property_get_error(sd_bus *bus, const char *path, const char *interface,
                              const char *property, sd_bus_message *reply, void *userdata,
                              sd_bus_error *error) {
        job *j = userdata;
        return sd_bus_message_append(reply, "s", j->error ? j->error : "");
}

static int property_get_stage(sd_bus *bus, const char *path, const char *interface,
                              const char *property, sd_bus_message *reply, void *userdata,
                              sd_bus_error *error) {
        job *j = userdata;
        return sd_bus_message_append(reply, "s", j->stage);
}

typedef struct cancel_ctx {
        manager *m;
        uint32_t id;
        sd_bus_message *call;
} cancel_ctx;

static void cancel_ctx_free(cancel_ctx *c) {
        sd_bus_message_unref(c->call);
        free(c);
}

/* The job may be gone by the time an answer comes: look it up again by id. */
static void cancel_now(cancel_ctx *c) {
        job *j = manager_find_job(c->m, c->id);
        if (!j) {
                (void) sd_bus_reply_method_errorf(c->call, SD_BUS_ERROR_UNKNOWN_OBJECT,
                                                  "The job no longer exists.");
                return;
        }
        job_cancel(j, "cancelled by request");
        (void) sd_bus_reply_method_return(c->call, NULL);
}

static void cancel_authorized(void *userdata, int result, uid_t uid, const char *why) {
        cancel_ctx *c = userdata;
        if (result < 0) /* not a refusal: the question could not be answered (ENOMEM) */
                (void) sd_bus_reply_method_errnof(c->call, result, "%s", why);
        else if (result == 0)
                (void) bus_reply_access_denied(
                        c->call, "Cancelling another user's job needs root or the polkit "
                                 "action org.p3sam.manage.");
        else
                cancel_now(c);
        cancel_ctx_free(c);
}

/* The owner and root cancel at once; anyone else is asked about through polkit. */
static void cancel_with_creds(void *userdata, int r, const bus_creds *creds) {
        cancel_ctx *c = userdata;
        job *j = manager_find_job(c->m, c->id);
        if (r < 0) {
                (void) sd_bus_reply_method_errnof(c->call, r, "Cannot read the caller's "
                                                              "credentials: %s.", strerror(-r));
        } else if (j && creds->have_uid && (creds->uid == 0 || creds->uid == j->uid)) {
                cancel_now(c);
        } else {
                r = bus_check_authorization(c->call, P3_ACTION_MANAGE, NULL, true,
                                            cancel_authorized, c, NULL);
                if (r >= 0)
                        return; /* c is cancel_authorized's now */
                (void) sd_bus_reply_method_errnof(c->call, r, "Cannot check authorization: %s.",
                                                  strerror(-r));
        }
        cancel_ctx_free(c);
}

static int method_cancel(sd_bus_message *call, void *userdata, sd_bus_error *error) {
        job *j = userdata;
        cancel_ctx *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = (cancel_ctx) { .m = j->manager, .id = j->id, .call = sd_bus_message_ref(call) };
        int r = bus_creds_get(call, cancel_with_creds, c, NULL);
        if (r < 0) {
                cancel_ctx_free(c);
                return r;
        }
        return 1;
}

const sd_bus_vtable job_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "u", NULL, offsetof(job, id), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Stage", "s", property_get_stage, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Progress", "d", NULL, offsetof(job, progress),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("StartedByUID", "u", NULL, offsetof(job, uid),
                        SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Error", "s", property_get_error, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Result", "s", property_get_result, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD("Cancel", "", "", method_cancel, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_NAMES("Completed", "bs", SD_BUS_PARAM(success) SD_BUS_PARAM(message),
                                 0),
        SD_BUS_VTABLE_END,
};

static int job_id_from_path(const char *path, uint32_t *id) {
        const char *p = path + strlen(P3_JOB_PREFIX);
        if (strncmp(path, P3_JOB_PREFIX "/", strlen(P3_JOB_PREFIX) + 1) != 0)
                return -ENOENT;
        p++;
        char *end;
        unsigned long v = strtoul(p, &end, 10);
        if (!*p || *end || v > UINT32_MAX)
                return -ENOENT;
        *id = (uint32_t) v;
        return 0;
}

/* A job is seen by its owner and root only: its Error can quote the owner's paths. Cancel is
 * reachable by anyone (its handler asks polkit about other users' jobs); everything else
 * (Get, GetAll, GetManagedObjects, Introspect) finds nothing for other callers. A property
 * read cannot wait for an asynchronous answer: the credentials come from the cache or one
 * round trip to the bus daemon. */
static bool may_see(sd_bus *bus, const job *j) {
        sd_bus_message *call = sd_bus_get_current_message(bus);
        const bus_creds *c = NULL;
        if (!call)
                return true;
        if (sd_bus_message_is_method_call(call, P3_JOB_IFACE, "Cancel") > 0)
                return true;
        if (bus_creds_get_sync(call, &c) < 0 || !c->have_uid)
                return false;
        return c->uid == 0 || c->uid == j->uid;
}

int job_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                    void **found, sd_bus_error *error) {
        manager *m = userdata;
        uint32_t id;
        if (job_id_from_path(path, &id) < 0)
                return 0;
        job *j = manager_find_job(m, id);
        if (!j || !may_see(bus, j))
                return 0;
        *found = j;
        return 1;
}

int job_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                        sd_bus_error *error) {
        manager *m = userdata;
        size_t n = 0, i = 0;
        job *j;
        TAILQ_FOREACH(j, &m->jobs, queue)
                n++;
        char **l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        TAILQ_FOREACH(j, &m->jobs, queue) {
                l[i] = strdup(j->path);
                if (!l[i]) {
                        for (size_t k = 0; k < i; k++)
                                free(l[k]);
                        free(l);
                        return -ENOMEM;
                }
                i++;
        }
        *nodes = l;
        return 1;
}
