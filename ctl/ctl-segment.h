/* SPDX-License-Identifier: MIT */
/* What p3samctl segment with one mesh (ctl-segment.c) and with many (ctl-batch-run.c) share:
 * the parsed command line, the outputs that get their names only when a job succeeds, the
 * Segment call, the sentence of a failed job. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

typedef struct seg_args {
        bool predict;
        const char *mesh, *output, *format, *report; /* output, format: the first -o, --format */
        const char **outputs, **formats; /* every -o, every --format, in order */
        int n_outputs, n_formats;
        bool upstream_files;
        uint32_t png_size; /* 0: the daemon's default */
        int png_boxes;     /* -1: the daemon's default */
        uint64_t points, prompts, batch, seed; /* 0 (seed, batch: !have_*): the daemon's default */
        bool have_seed, have_batch, no_wait; /* have_batch with batch 0: auto */
        int post_process; /* -1: the daemon's default */
        double threshold; /* 0: the daemon's default */
        double *xyz;      /* predict: n_xyz prompt points */
        size_t n_xyz;
        /* many meshes (segment only) */
        char **meshes; /* the positional arguments */
        int n_meshes;
        const char *from, *output_dir, *summary, *instances, *shard;
        uint64_t shard_count;
        bool force;
} seg_args;

/* An output until its job succeeds: an unnamed file in its directory (O_TMPFILE), or a hidden
 * named one beside it where the filesystem has none. */
typedef struct out_file {
        char *final;   /* the name the user asked for */
        char *temp;    /* a named temporary file beside it, until the job succeeds */
        bool unnamed;  /* an O_TMPFILE file, which gets final's name when the job succeeds */
        bool staged;   /* synced and named beside final: only the rename is left */
        int fd;
} out_file;

#define OUT_FILE_NULL ((out_file) { .fd = -1 })

/* Opens the temporary file for path. Returns 0 or a negative errno. */
int ctl_out_open(out_file *o, const char *path);

/* The job succeeded, first half: the data synced and the file named beside its final name,
 * which is checked not to be a directory; nothing of the user's is touched yet. Returns 0 or
 * a negative errno. */
int ctl_out_stage(out_file *o);
/* The job succeeded: the file gets its name, whole (staged first if it was not). Returns 0 or
 * a negative errno. */
int ctl_out_commit(out_file *o);

/* Drops what was not committed, closes, frees. */
void ctl_out_done(out_file *o);

/* A .gltf whose buffers are not inside it (data: URIs), which cannot travel as one
 * descriptor: the sentence that says so and names the cure, else NULL. */
char *ctl_gltf_unfit(const char *path);

/* One output of a job: its descriptor and format name. */
typedef struct ctl_output {
        int fd;
        const char *format;
} ctl_output;

/* The system bus passes at most this many descriptors in one message (the mesh, the outputs,
 * the report): dbus-daemon's max_message_unix_fds there. */
#define CTL_MAX_FDS 16

/* Segment(h s h s a{sv}) or Predict(h s a(ddd) h a{sv}) to the daemon dest: outs[0] is the
 * positional output, the others go in the option "outputs" (a(hs)). */
int ctl_build_request(sd_bus *bus, const char *dest, const seg_args *a, int mesh_fd,
                      const char *mesh_format, const ctl_output *outs, int n_outs, int report_fd,
                      sd_bus_message **ret);

/* "Job 7 failed: chair.glb: truncated." from the daemon's message ("mesh: X" names the
 * user's file, mesh, where given: the daemon only saw a descriptor). verb: "failed",
 * "was cancelled". */
char *ctl_job_sentence(const char *mesh, const char *job_path, const char *verb,
                       const char *message);

/* p3samctl segment with many meshes, or with any option for them (ctl-batch-run.c). */
int ctl_batch_run(const seg_args *a);
