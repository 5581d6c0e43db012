/* SPDX-License-Identifier: MIT */
/* p3samctl segment with many meshes: the logic that needs no daemon. The input list (paths,
 * directories searched for meshes, --from lists), sorted so that every machine of a cluster
 * sees the same order; the shard of it that this run takes; where each result goes; whether
 * it is up to date already; the summary's JSON lines. Free of D-Bus, so that it can be tested
 * alone; ctl-batch-run.c feeds the daemons. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

typedef struct batch_item {
        char *path;   /* as given, or the directory given joined with what was found in it */
        char *abs;    /* path made absolute and normalized, without touching the filesystem */
        char *rel;    /* under --output-dir: relative to the directory given, or to the common
                       * root of the files named one by one */
        char *output; /* where the result goes */
        char *error;  /* a sentence: this mesh fails before it reaches a daemon */
        bool from_dir;
} batch_item;

typedef struct batch_list {
        batch_item *items;
        size_t n, cap;
} batch_list;

void batch_list_free(batch_list *l);

/* The mesh format that the name's extension says (any case): glb, gltf, obj, ply, stl, off;
 * NULL for any other name. */
const char *batch_mesh_format(const char *path);

/* Our own output's name (NAME.parts.glb, .parts.ply): never taken from a directory as input,
 * or every rerun would segment the results of the previous one. */
bool batch_is_our_output(const char *path);

/* Adds one path: a file (any name: the daemon tells formats apart by content too) or a
 * directory, searched recursively for meshes (batch_mesh_format), hidden entries and our own
 * outputs left out, symbolic links to directories not followed. must_exist: a path that
 * cannot be read is an error (-errno, the sentence in *ret_error) rather than an item that
 * fails. */
int batch_add_path(batch_list *l, const char *path, bool must_exist, char **ret_error);

/* Adds every line of f (a --from list: one path a line, blank lines skipped, relative paths
 * relative to the current directory) with batch_add_path(must_exist = false). */
int batch_add_list(batch_list *l, FILE *f, char **ret_error);

/* Sorts by path (bytewise: the same on every machine, whatever the locale) and drops a mesh
 * named twice (the same absolute path). */
void batch_sort_unique(batch_list *l);

typedef struct batch_shard {
        uint64_t index, count; /* count 0: no sharding */
        const char *source;    /* "--shard", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX" */
} batch_shard;

/* "I/N" with 0 <= I < N. Returns 0 or -EINVAL. */
int batch_shard_parse(const char *s, batch_shard *ret);

/* The shard from the environment, looked up with get (getenv, or a test's table): Slurm's
 * SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT, or SLURM_ARRAY_TASK_MIN and _MAX (and
 * _STEP) for the count and the offset; else Kubernetes' JOB_COMPLETION_INDEX with count (the
 * Job's completions, --shard-count); count, when not 0, also stands for Slurm's. No variable:
 * ret->count = 0. Returns 0 or -EINVAL with the sentence in *ret_error. */
int batch_shard_from_env(const char *(*get)(const char *name), uint64_t count, batch_shard *ret,
                         char **ret_error);

/* Keeps the shard's items: every count-th one of the sorted list, starting at index. */
void batch_shard_apply(batch_list *l, const batch_shard *s);

/* Sets each item's output: beside the mesh (chair.glb → chair.parts.glb, format the output
 * format), or under output_dir at the mesh's rel. Two meshes that would write the same file:
 * the later ones in the sorted list fail with a sentence. Returns 0 or -ENOMEM. */
int batch_map_outputs(batch_list *l, const char *output_dir, const char *format);

/* NAME.parts.FORMAT for the mesh path (the extension dropped when it is a mesh format's). */
char *batch_output_name(const char *path, const char *format);

/* The output exists and was modified after the mesh: nothing to do without --force. */
bool batch_up_to_date(const struct stat *mesh, const struct stat *output);

typedef enum batch_status {
        BATCH_DONE,
        BATCH_SKIPPED,
        BATCH_FAILED,
} batch_status;

typedef struct batch_result {
        const char *path, *output;
        batch_status status;
        const char *error;    /* failed: the sentence */
        double seconds;
        int64_t parts;        /* done: the number of parts; -1: unknown */
        const char *instance; /* the daemon's bus name, once one had the mesh */
        const batch_shard *shard;
} batch_result;

/* The summary's line of one mesh, as one JSON object (no newline): path, output, status,
 * error, seconds, parts, instance, and shard ("I/N") when one ran. NULL when out of memory. */
char *batch_summary_line(const batch_result *r);
