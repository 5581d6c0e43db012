/* SPDX-License-Identifier: MIT */
/* The request sizes, in one place: the engine refuses what lies outside these bounds, the
 * daemon's configuration bounds its keys (MaxPointNum=, …) by them, and the defaults of the
 * engine, the tools and the daemon all come from here. Macros only, so that the configuration
 * parser can use them without linking the engine. */
#pragma once

#define P3_POINTS_MIN 16
#define P3_POINTS_MAX 10000000 /* ~400 MB of points and normals before any feature */
#define P3_PROMPTS_MAX 100000
#define P3_PROMPT_BATCH_MAX 4096

/* Upstream's defaults (P3-SAM's mesh_sam()). */
#define P3_DEFAULT_POINTS 100000
#define P3_DEFAULT_PROMPTS 400
#define P3_DEFAULT_PROMPT_BATCH 0 /* auto: p3_model_heads_batch() */
#define P3_DEFAULT_SEED 42
#define P3_DEFAULT_THRESHOLD 0.95 /* do_post_process */

/* The prompt batch left to the engine (0, auto). The CPU takes upstream's prompt_bs, 32: its
 * heads take seconds per batch, and a cancel is honoured between batches. A GPU's heads fit
 * their chunks of prompts to the free memory themselves, so a batch there is as many prompts
 * as make upstream's default job in (prompt, point) pairs, 400 × 100,000 (about 0.3 s on an
 * H100: a cancel waits no longer), and the per-point products are computed once. */
#define P3_CPU_PROMPT_BATCH 32
#define P3_GPU_BATCH_PAIRS 40000000

/* The CPU backend's, where upstream's sizes cost ~1e14 FLOP in the heads. */
#define P3_CPU_DEFAULT_POINTS 20000
#define P3_CPU_DEFAULT_PROMPTS 64
