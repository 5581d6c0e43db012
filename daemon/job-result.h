/* SPDX-License-Identifier: MIT */
/* How a job ended, as a client decides what to do next: done; cancelled; its input could not
 * be used (do not send it again); the machine lacked a resource (try again later); or the
 * service failed otherwise. Published as the job's Result property; the HTTP gateway turns it
 * into 422, 503 or 500. Pure: no bus, no loop, so a unit test checks every errno it sorts. */
#pragma once

#include <stdbool.h>

typedef enum job_result {
        JOB_RESULT_NONE, /* not ended yet */
        JOB_RESULT_DONE,
        JOB_RESULT_CANCELLED,
        JOB_RESULT_INVALID_INPUT,
        JOB_RESULT_RESOURCES,
        JOB_RESULT_FAILED,
} job_result;

/* "", "done", "cancelled", "invalid-input", "resources", "failed". */
const char *job_result_to_string(job_result r);

/* The kind of a failure with negative errno r; reading: it came from reading the mesh (the
 * importer), where anything but a lack of processes or descriptors is the file's fault. */
job_result job_result_of_failure(int r, bool reading);
