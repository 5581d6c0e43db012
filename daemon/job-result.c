/* SPDX-License-Identifier: MIT */
#include <errno.h>

#include "job-result.h"

const char *job_result_to_string(job_result r) {
        static const char *const names[] = {
                [JOB_RESULT_NONE] = "",
                [JOB_RESULT_DONE] = "done",
                [JOB_RESULT_CANCELLED] = "cancelled",
                [JOB_RESULT_INVALID_INPUT] = "invalid-input",
                [JOB_RESULT_RESOURCES] = "resources",
                [JOB_RESULT_FAILED] = "failed",
        };
        return r <= JOB_RESULT_FAILED ? names[r] : "failed";
}

/* The machine's limits: memory, disk, processes, descriptors. Waiting may cure them. */
static bool is_resource(int r) {
        switch (r) {
        case -ENOMEM:
        case -ENOSPC:
        case -EDQUOT:
        case -EAGAIN:
        case -EMFILE:
        case -ENFILE:
        case -EBUSY:
                return true;
        default:
                return false;
        }
}

/* The caller's input: a mesh or descriptor the engine cannot use, whoever runs it. */
static bool is_input(int r) {
        switch (r) {
        case -EINVAL:
        case -EBADF:
        case -EBADMSG:
        case -EFBIG:
        case -ENODATA:
        case -EDOM:
        case -ERANGE:
        case -ENOEXEC:
                return true;
        default:
                return false;
        }
}

job_result job_result_of_failure(int r, bool reading) {
        if (r == -ECANCELED)
                return JOB_RESULT_CANCELLED;
        /* The importer's memory cap (ENOMEM) and time limit are the mesh's doing; only a
         * helper that could not be started is the machine's. */
        if (reading)
                return r == -EAGAIN || r == -EMFILE || r == -ENFILE ? JOB_RESULT_RESOURCES
                                                                     : JOB_RESULT_INVALID_INPUT;
        if (is_resource(r))
                return JOB_RESULT_RESOURCES;
        if (is_input(r))
                return JOB_RESULT_INVALID_INPUT;
        return JOB_RESULT_FAILED;
}
