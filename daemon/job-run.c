/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* O_PATH */
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "export.h"
#include "import-spawn.h"
#include "job-run.h"

typedef struct run_ctx {
        job *j;
        job_progress_fn progress;
        void *userdata;
} run_ctx;

static void on_progress(void *userdata, const char *stage, double fraction) {
        run_ctx *c = userdata;
        if (c->progress)
                c->progress(c->userdata, c->j, stage, fraction);
}

static bool on_abort(void *userdata) {
        run_ctx *c = userdata;
        return atomic_load(&c->j->cancel);
}

static int check_fd(int fd, bool writable, const char *what, p3_err *err) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return p3_errf(err, -errno, "the %s descriptor is not usable: %m", what);
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0 && (fl & O_PATH))
                return p3_errf(err, -EBADF,
                               "the %s descriptor was opened with O_PATH, which allows no %s; "
                               "open the file for %s",
                               what, writable ? "writing" : "reading",
                               writable ? "writing" : "reading");
        if (!S_ISREG(st.st_mode))
                return p3_errf(err, -EINVAL,
                               "the %s descriptor must be a regular file or memfd, not a %s", what,
                               S_ISFIFO(st.st_mode) ? "pipe" : S_ISSOCK(st.st_mode) ? "socket"
                               : S_ISDIR(st.st_mode) ? "directory" : "special file");
        /* Kernel files pass for regular ones but their size says nothing (0 for most): refused
         * by name rather than read, or met as "empty" further on. */
        struct statfs sf;
        if (fstatfs(fd, &sf) >= 0 && (sf.f_type == PROC_SUPER_MAGIC || sf.f_type == SYSFS_MAGIC))
                return p3_errf(err, -EINVAL, "the %s descriptor is a kernel file (of /proc or "
                               "/sys), not a %s", what, writable ? "file to write" : "mesh");
        int acc = fl & O_ACCMODE;
        if (fl < 0 || (writable ? acc == O_RDONLY : acc == O_WRONLY))
                return p3_errf(err, -EBADF, "the %s descriptor is not open for %s", what,
                               writable ? "writing" : "reading");
        return 0;
}

static bool same_file(int a, int b) {
        struct stat sa, sb;
        return a >= 0 && b >= 0 && fstat(a, &sa) >= 0 && fstat(b, &sb) >= 0 &&
               sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int job_check_same_file(int mesh_fd, int out_fd, int report_fd, p3_err *err) {
        if (same_file(mesh_fd, out_fd))
                return p3_errf(err, -EINVAL, "the mesh and the output are the same file; the "
                                             "output would overwrite the mesh");
        if (same_file(mesh_fd, report_fd))
                return p3_errf(err, -EINVAL, "the mesh and the report are the same file; the "
                                             "report would overwrite the mesh");
        if (same_file(out_fd, report_fd))
                return p3_errf(err, -EINVAL, "the output and the report are the same file");
        return 0;
}

int job_check_outputs_same_file(const job *j, p3_err *err) {
        for (int i = 0; i < j->n_outputs; i++) {
                int fd = j->outputs[i].fd;
                const char *f = p3_out_format_name(j->outputs[i].format);
                if (same_file(j->mesh_fd, fd))
                        return p3_errf(err, -EINVAL, "the mesh and output %d (%s) are the same "
                                       "file; the output would overwrite the mesh", i + 2, f);
                if (same_file(j->out_fd, fd) || same_file(j->report_fd, fd))
                        return p3_errf(err, -EINVAL, "output %d (%s) is the same file as the %s",
                                       i + 2, f, same_file(j->out_fd, fd) ? "output" : "report");
                for (int k = 0; k < i; k++)
                        if (same_file(j->outputs[k].fd, fd))
                                return p3_errf(err, -EINVAL, "outputs %d and %d are the same "
                                               "file", k + 2, i + 2);
        }
        return 0;
}

int job_check_outputs_fds(const job *j, p3_err *err) {
        char what[32];
        int r = 0;
        for (int i = 0; r >= 0 && i < j->n_outputs; i++) {
                snprintf(what, sizeof(what), "output %d (%s)", i + 2,
                         p3_out_format_name(j->outputs[i].format));
                r = check_fd(j->outputs[i].fd, true, what, err);
        }
        return r;
}

int job_check_fds(int mesh_fd, int out_fd, int report_fd, uint64_t max_bytes, p3_err *err) {
        int r = check_fd(mesh_fd, false, "mesh", err);
        if (r >= 0)
                r = check_fd(out_fd, true, "output", err);
        if (r >= 0 && report_fd >= 0)
                r = check_fd(report_fd, true, "report", err);
        struct stat st;
        if (r >= 0 && fstat(mesh_fd, &st) >= 0 && (uint64_t) st.st_size > max_bytes)
                r = p3_errf(err, -EFBIG, "the mesh is %llu bytes, over the limit of %llu",
                            (unsigned long long) st.st_size, (unsigned long long) max_bytes);
        return r;
}

/* Output descriptors start empty and end empty unless everything succeeded. */
static void truncate_fd(int fd) {
        if (fd >= 0) {
                (void) ftruncate(fd, 0);
                (void) lseek(fd, 0, SEEK_SET);
        }
}

static void truncate_outputs(job *j) {
        truncate_fd(j->out_fd);
        truncate_fd(j->report_fd);
        for (int i = 0; i < j->n_outputs; i++)
                truncate_fd(j->outputs[i].fd);
}

static int write_segment(residency *res, job *j, const p3_segment_result *sr, p3_err *err) {
        p3_segmentation s = { .mesh = &sr->mesh, .face_ids = sr->face_ids,
                              .n_parts = sr->n_parts, .part_labels = sr->part_labels,
                              .aabb = sr->aabb, .colours = sr->colours };
        p3_report rep = {
                .input = "mesh", .points = j->params.points, .prompts = j->params.prompts,
                .prompt_batch = sr->prompt_batch, .seed = (int64_t) j->params.seed,
                .post_process = j->params.post_process, .threshold = j->params.threshold,
                .backend = res->device, .weights = res->src.weights_path,
                .weights_synthetic = p3_weights_synthetic(res->w), .timings = sr->timings,
                .n_timings = sr->n_timings,
        };
        /* checked when the call came in */
        int r = p3_export_format(&s, &rep, &j->png, p3_out_format_from_name(j->out_format),
                                 j->out_fd, err);
        for (int i = 0; r >= 0 && i < j->n_outputs; i++)
                r = p3_export_format(&s, &rep, &j->png, j->outputs[i].format, j->outputs[i].fd,
                                     err);
        if (r >= 0 && j->report_fd >= 0)
                r = p3_export_json(&s, &rep, j->report_fd, err);
        return r;
}

static int run_segment(residency *res, job *j, const p3_mesh *mesh, run_ctx *c, p3_err *err) {
        p3_segment_result sr = {};
        p3_pipeline_hooks hooks = { .progress = on_progress, .abort = on_abort, .userdata = c };
        int r = p3_pipeline_segment(res->m, mesh, &j->params, &hooks, &sr, err);
        if (r >= 0)
                r = write_segment(res, j, &sr, err);
        p3_segment_result_done(&sr);
        return r;
}

static int run_predict(residency *res, job *j, const p3_mesh *mesh, run_ctx *c, p3_err *err) {
        p3_predict_result pr = {};
        p3_pipeline_hooks hooks = { .progress = on_progress, .abort = on_abort, .userdata = c };
        int r = p3_pipeline_predict(res->m, mesh, j->prompts, j->k, &j->params, &hooks, &pr, err);
        if (r >= 0)
                r = p3_export_predict_json(&pr.mesh, pr.k, j->prompts,
                                           (const int32_t *const *) pr.faces, pr.counts, pr.iou,
                                           j->out_fd, err);
        p3_predict_result_done(&pr);
        return r;
}

int job_run(residency *res, job *j, job_progress_fn progress, void *userdata, p3_err *err) {
        run_ctx c = { .j = j, .progress = progress, .userdata = userdata };
        bool started = false;
        import_request req = {
                .mesh_fd = j->mesh_fd,
                .format = j->mesh_format,
                .timeout_usec = j->import_timeout_usec,
                .memory_max = j->import_memory_max,
                .cancel = &j->cancel,
                .started = &started,
        };
        p3_mesh mesh = {};
        p3_mesh_limits_default(&req.lim);
        /* MaxMeshSize=infinity: the helper's own size_t bound */
        if (j->max_mesh_bytes)
                req.lim.max_bytes = (size_t) MIN(j->max_mesh_bytes, (uint64_t) SIZE_MAX);
        on_progress(&c, "reading", 0);
        /* In a helper process: assimp's crashes, hangs and leaks stay out of the daemon. */
        int r = import_mesh(&req, &mesh, err);
        j->read_failed = r < 0 && started; /* for the job's Result, read on the loop thread
                                            * after the worker's hand-over */
        /* Outputs are emptied only once the mesh is in memory: whatever the caller passed,
         * nothing it gave us is destroyed before it was read. */
        if (r >= 0)
                truncate_outputs(j);
        if (r >= 0)
                r = j->kind == JOB_PREDICT ? run_predict(res, j, &mesh, &c, err)
                                           : run_segment(res, j, &mesh, &c, err);
        p3_mesh_done(&mesh);
        if (r < 0)
                truncate_outputs(j);
        return r;
}
