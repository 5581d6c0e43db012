/* SPDX-License-Identifier: MIT */
/* p3samd.conf: the daemon's settings, read like a systemd unit's configuration (a main file,
 * then drop-ins in <main>.d/ in lexical order, later assignments winning; an empty value
 * resets a key to its default; unknown keys are warned about and ignored), then overridden
 * by the environment variables the upstream Python tools use. Lines beginning with # or ; are
 * comments, and, inih's rule unlike systemd's, so is " ;" and what follows it in a value.
 * Keys and section names are case-sensitive. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

#define DAEMON_CONF_PATH "/etc/p3sam/p3samd.conf"
#define DAEMON_CONF_MODEL_PATH "/var/lib/p3sam/p3sam.safetensors"
#define DAEMON_CONF_ALLOW_GROUP "p3sam"

typedef enum daemon_backend {
        DAEMON_BACKEND_AUTO,
        DAEMON_BACKEND_CUDA,
        DAEMON_BACKEND_CPU,
        _DAEMON_BACKEND_MAX,
} daemon_backend;

typedef enum daemon_precision {
        DAEMON_PRECISION_FP16,
        DAEMON_PRECISION_FP32,
        DAEMON_PRECISION_AUTO,
        DAEMON_PRECISION_BF16,
        _DAEMON_PRECISION_MAX,
} daemon_precision;

typedef struct daemon_segment_defaults {
        int64_t points;
        int prompts;
        int prompt_batch; /* 0: auto (the engine's choice for the backend) */
        uint64_t seed;
        bool post_process;
        double threshold;
} daemon_segment_defaults;

typedef struct daemon_conf {
        /* [Model] */
        char *model_path;   /* Path=, default DAEMON_CONF_MODEL_PATH */
        char *model_config; /* Config=, NULL: the built-in real config */
        daemon_backend backend;     /* Backend=auto|cuda|cpu */
        daemon_precision precision; /* Precision=auto|fp32|bf16|fp16, auto */
        int threads;                /* Threads=, 0: all CPUs */
        uint64_t gpu_memory_max;    /* GpuMemoryMax=, bytes, default 1 GiB, UINT64_MAX: no cap */

        /* [Daemon]. Time spans in µs; UINT64_MAX is "infinity". */
        uint64_t idle_timeout_usec; /* IdleTimeoutSec=, default 5min; 0 or infinity: never offload */
        unsigned queue_max;          /* QueueMax=, 16 */
        unsigned queue_per_user_max; /* QueuePerUserMax=, 4 */
        uint64_t job_timeout_usec;   /* JobTimeoutSec=, default 0; 0 or infinity: none */
        char *allow_group;           /* AllowGroup=, DAEMON_CONF_ALLOW_GROUP */
        uint64_t job_linger_usec;    /* JobLingerSec=, 60s */
        uint64_t max_mesh_bytes;     /* MaxMeshSize=, 512 MiB, UINT64_MAX: no cap */
        uint64_t import_timeout_usec; /* ImportTimeoutSec=, 2min; 0 or infinity: none */
        uint64_t import_memory_max;  /* ImportMemoryMax=, 0 ("auto"): from MaxMeshSize=;
                                      * UINT64_MAX: no cap. Read it through
                                      * daemon_conf_import_memory_max(). */

        /* [Segment]. PromptBatch=, Seed=, PostProcess=, Threshold= set both sets alike;
         * PointNum=/PromptNum= set gpu's and, explicitly given, apply to both backends;
         * CpuPointNum=/CpuPromptNum= set cpu's. Read them through
         * daemon_conf_segment_defaults(). */
        daemon_segment_defaults gpu; /* 100000 points, 400 prompts, batch 32, seed 42, no post-process, 0.95 */
        daemon_segment_defaults cpu; /* 20000 points, 64 prompts, otherwise as gpu */
        int64_t max_points;          /* MaxPointNum=, 200000: the most a request may ask for */
        int max_prompts;             /* MaxPromptNum=, 1000 */
        bool points_set, prompts_set; /* PointNum=/PromptNum= (or their environment variables)
                                       * were given: they then apply to both backends */
} daemon_conf;

/* The defaults. The two strings are allocated; out of memory they are left NULL, which
 * daemon_conf_load() reports as -ENOMEM. */
void daemon_conf_init(daemon_conf *c);
void daemon_conf_done(daemon_conf *c);

/* Reads main_path (NULL: DAEMON_CONF_PATH), then main_path + ".d/" *.conf in strcmp() order,
 * then the environment (daemon_conf_apply_env() with getenv). A missing main file or drop-in
 * directory is no error. Unknown sections and keys are warned about on stderr and ignored.
 * On any error (a bad value, a malformed line, an unreadable file) returns a negative errno
 * with a message naming file:line, section, key and value, and leaves *c untouched: the
 * result is built aside and swapped in only on success, so a failed Reload keeps the running
 * configuration. On success *c's old contents are freed: *c must hold a configuration
 * (daemon_conf_init()) or zeroes. */
int daemon_conf_load(const char *main_path, daemon_conf *c, p3_err *err);

/* Environment overrides as the upstream Python tools read them: P3SAM_POINT_NUM,
 * P3SAM_PROMPT_NUM and P3SAM_PROMPT_BS set PointNum=, PromptNum= and PromptBatch= for both
 * backends; P3SAM_INFERENCE_POINT_NUM and P3SAM_INFERENCE_PROMPT_NUM set the same as the first
 * two, and each wins over its plain variant when both are set. Unset or empty variables
 * change nothing. Values are checked against c's MaxPointNum=/MaxPromptNum=; a bad one is an
 * error naming the variable, and leaves *c untouched. */
int daemon_conf_apply_env(daemon_conf *c, const char *(*get)(const char *name), p3_err *err);

/* The resolved defaults for a backend: gpu's set, or (cpu) cpu's set with gpu's point and
 * prompt numbers where PointNum=/PromptNum= or the environment set them explicitly. */
void daemon_conf_segment_defaults(const daemon_conf *c, bool cpu, daemon_segment_defaults *ret);

/* The importer's memory cap in bytes (UINT64_MAX: none): ImportMemoryMax=, or for "auto"
 * DAEMON_IMPORT_MEMORY_PER_BYTE times MaxMeshSize= plus DAEMON_IMPORT_MEMORY_BASE, at most
 * DAEMON_IMPORT_MEMORY_AUTO_MAX. Measured (address space, p3sam-import): an ASCII OBJ holds
 * 8.2 to 8.4 times its size, a binary PLY 7 times; the face and vertex limits bound any file
 * (an OBJ at the limits: 107 MB, 0.9 GB), hence the ceiling. */
#define DAEMON_IMPORT_MEMORY_PER_BYTE 8
#define DAEMON_IMPORT_MEMORY_BASE (UINT64_C(512) << 20)
#define DAEMON_IMPORT_MEMORY_AUTO_MAX (UINT64_C(4) << 30)
uint64_t daemon_conf_import_memory_max(const daemon_conf *c);

const char *daemon_backend_to_string(daemon_backend b);
const char *daemon_precision_to_string(daemon_precision p);
