/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run-output.h"

int run_output_open(run_output *o, const char *path, p3_err *err) {
        *o = (run_output) { .path = path, .fd = -1 };
        _cleanup_free_ char *copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        const char *dir = dirname(copy);
        if (asprintf(&o->tmp, "%s/.%s.XXXXXX", dir, strrchr(path, '/') ? strrchr(path, '/') + 1 : path) < 0) {
                o->tmp = NULL;
                return -ENOMEM;
        }
        o->fd = mkostemp(o->tmp, O_CLOEXEC);
        if (o->fd < 0) {
                int r = -errno;
                free(o->tmp);
                o->tmp = NULL;
                return p3_errf(err, r, "%s: cannot create a temporary file: %s", path,
                               p3_strerror(r));
        }
        (void) fchmod(o->fd, 0644);
        return 0;
}

int run_output_commit(run_output *o, p3_err *err) {
        int r = 0;
        if (fsync(o->fd) < 0 || rename(o->tmp, o->path) < 0)
                r = -errno;
        if (r < 0) {
                run_output_abort(o);
                return p3_errf(err, r, "%s: cannot write: %s", o->path, p3_strerror(r));
        }
        close(o->fd);
        o->fd = -1;
        free(o->tmp);
        o->tmp = NULL;
        return 0;
}

void run_output_abort(run_output *o) {
        if (o->fd >= 0)
                close(o->fd);
        if (o->tmp)
                unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
        o->fd = -1;
}
