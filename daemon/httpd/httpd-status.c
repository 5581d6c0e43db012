/* SPDX-License-Identifier: MIT */
/* GET /api/status: the manager's properties as `p3samctl status --json` prints them, the
 * same keys in the same order. (A table of its own rather than ctl/ctl-status.c's: that one
 * fills p3samctl's status struct, and the gateway links nothing of p3samctl; test-httpd.sh
 * compares the two outputs' keys, so that they cannot drift apart unseen.) */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/macro.h"
#include "common/time-util.h"
#include "httpd.h"

static const struct status_prop {
        const char *name, *json;
        char type;
} status_props[] = {
        { "State", "state", 's' },
        { "Backend", "backend", 's' },
        { "Device", "device", 's' },
        { "ModelMemoryBytes", "model_memory_bytes", 't' },
        { "PeakModelMemoryBytes", "peak_model_memory_bytes", 't' },
        { "GpuMemoryBytes", "gpu_memory_bytes", 't' },
        { "PeakGpuMemoryBytes", "peak_gpu_memory_bytes", 't' },
        { "HostMemoryBytes", "host_memory_bytes", 't' },
        { "IdleTimeoutUSec", "idle_timeout_usec", 't' },
        { "IdleOffloadTimestampMonotonic", "idle_offload_timestamp_monotonic", 't' },
        { "QueueLength", "queue_length", 'u' },
        { "JobsCompleted", "jobs_completed", 't' },
        { "ModelPath", "model_path", 's' },
        { "ModelSynthetic", "model_synthetic", 'b' },
        { "Version", "version", 's' },
};
/* IdleOffloadTimestampMonotonic's place above */
#define OFFLOAD_AT 9

/* The value of one property, or NULL when p3samd did not send it or sent another type. */
static json_object *read_value(sd_bus_message *m, char type) {
        const char *str;
        uint64_t t;
        uint32_t u;
        int b;
        char sig[2] = { type, 0 };
        if (sd_bus_message_enter_container(m, 'v', sig) <= 0)
                return NULL;
        json_object *v = NULL;
        if (type == 's' && sd_bus_message_read(m, "s", &str) >= 0)
                v = json_object_new_string(str);
        else if (type == 't' && sd_bus_message_read(m, "t", &t) >= 0)
                v = json_object_new_uint64(t);
        else if (type == 'u' && sd_bus_message_read(m, "u", &u) >= 0)
                v = json_object_new_uint64(u);
        else if (type == 'b' && sd_bus_message_read(m, "b", &b) >= 0)
                v = json_object_new_boolean(b);
        if (sd_bus_message_exit_container(m) < 0) {
                json_object_put(v);
                return NULL;
        }
        return v;
}

/* The properties of the table found in GetAll's a{sv}, by position in the table. */
static int read_props(sd_bus_message *m, json_object **vals) {
        const char *key;
        int r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                size_t i = ELEMENTSOF(status_props);
                r = sd_bus_message_read(m, "s", &key);
                for (size_t k = 0; r >= 0 && k < ELEMENTSOF(status_props); k++)
                        if (strcmp(key, status_props[k].name) == 0)
                                i = k;
                if (r >= 0 && i < ELEMENTSOF(status_props) && !vals[i]) {
                        vals[i] = read_value(m, status_props[i].type);
                        if (!vals[i])
                                r = sd_bus_message_skip(m, "v");
                } else if (r >= 0)
                        r = sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        return r;
}

/* As p3samctl: the microseconds left before the idle offload, on this host's monotonic
 * clock (the daemon's), or null when none is pending. */
static json_object *offload_in(json_object *at) {
        uint64_t t = at ? json_object_get_uint64(at) : 0;
        if (!t)
                return NULL;
        uint64_t now = now_monotonic_usec();
        return json_object_new_uint64(t > now ? t - now : 0);
}

char *httpd_status_json(const httpd *s, sd_bus_message *getall) {
        json_object *vals[ELEMENTSOF(status_props)] = {};
        json_object *o = json_object_new_object();
        char *out = NULL;
        if (o && read_props(getall, vals) >= 0) {
                json_object_object_add(o, "bus_name",
                                       json_object_new_string(httpd_bus_name(s)));
                /* p3samctl's defaults for what is missing: "", 0, false */
                for (size_t i = 0; i < ELEMENTSOF(status_props); i++) {
                        const struct status_prop *p = &status_props[i];
                        json_object *v = vals[i] ? json_object_get(vals[i])
                                         : p->type == 's' ? json_object_new_string("")
                                         : p->type == 'b' ? json_object_new_boolean(0)
                                                          : json_object_new_uint64(0);
                        json_object_object_add(o, p->json, v);
                }
                json_object_object_add(o, "idle_offload_in_usec", offload_in(vals[OFFLOAD_AT]));
                out = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        }
        for (size_t i = 0; i < ELEMENTSOF(status_props); i++)
                json_object_put(vals[i]);
        json_object_put(o);
        return out;
}
