/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* strerrorname_np */
/* The job's Result from a failure's errno: what a client is told about whether to send the job
 * again (invalid-input: no; resources: later; failed: the service's fault). */
#include <errno.h>
#include <string.h>

#include "job-result.h"
#include "test-util.h"

static void expect(int r, bool reading, const char *want) {
        const char *got = job_result_to_string(job_result_of_failure(r, reading));
        if (strcmp(got, want) != 0) {
                fprintf(stderr, "errno %s%s: %s, want %s\n", strerrorname_np(-r),
                        reading ? " while reading" : "", got, want);
                exit(EXIT_FAILURE);
        }
}

int main(void) {
        /* whatever the importer said once it ran is the mesh's fault, its memory cap included */
        expect(-EIO, true, "invalid-input");   /* it crashed */
        expect(-ETIMEDOUT, true, "invalid-input");
        expect(-ENOMEM, true, "invalid-input"); /* ImportMemoryMax= */
        expect(-EPERM, true, "invalid-input");  /* its sandbox stopped it */
        expect(-EBADMSG, true, "invalid-input");
        expect(-EMFILE, true, "resources");
        expect(-EAGAIN, true, "resources");
        expect(-ECANCELED, true, "cancelled");
        /* the engine and the outputs */
        expect(-EINVAL, false, "invalid-input"); /* no faces left after cleaning */
        expect(-EFBIG, false, "invalid-input");
        expect(-EBADF, false, "invalid-input");
        expect(-ENOMEM, false, "resources");
        expect(-ENOSPC, false, "resources"); /* an output on a full disk */
        expect(-EDQUOT, false, "resources");
        expect(-ENFILE, false, "resources");
        expect(-EIO, false, "failed");
        expect(-EPIPE, false, "failed");
        expect(-ENOENT, false, "failed");
        expect(-ECANCELED, false, "cancelled");
        CHECK(strcmp(job_result_to_string(JOB_RESULT_NONE), "") == 0);
        CHECK(strcmp(job_result_to_string(JOB_RESULT_DONE), "done") == 0);
        CHECK(strcmp(job_result_to_string((job_result) 99), "failed") == 0);
        printf("job-result: every errno sorted as a client needs it\n");
        return 0;
}
