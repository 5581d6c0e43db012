/* SPDX-License-Identifier: MIT */
/* Running one job on the worker thread: import the mesh from the caller's descriptor (in a
 * p3sam-import helper process, import-spawn.h), run the pipeline, write the result to the
 * output descriptor only on success (a failed job leaves the output truncated to 0 bytes,
 * but never before the mesh has been read). */
#pragma once

#include "error.h"
#include "job.h"
#include "residency.h"

typedef void (*job_progress_fn)(void *userdata, job *j, const char *stage, double fraction);

int job_run(residency *r, job *j, job_progress_fn progress, void *userdata, p3_err *err);

/* Checks done when the job is submitted, so that the caller hears of them at once: the mesh
 * descriptor is a readable regular file (or memfd) of at most max_bytes, the outputs are
 * writable regular files. Messages name the argument. */
int job_check_fds(int mesh_fd, int out_fd, int report_fd, uint64_t max_bytes, p3_err *err);
/* -EINVAL when two of the descriptors (report_fd may be -1) are the same file (device and
 * inode), whatever names or links led to them: writing the output would wipe the mesh. */
int job_check_same_file(int mesh_fd, int out_fd, int report_fd, p3_err *err);
/* The same for each of the option "outputs": not the mesh, the output, the report or another
 * of them (refused with the call). */
int job_check_outputs_same_file(const job *j, p3_err *err);
/* job_check_fds for each of the option "outputs" (fails the job at once). */
int job_check_outputs_fds(const job *j, p3_err *err);
