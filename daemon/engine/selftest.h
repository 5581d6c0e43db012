/* SPDX-License-Identifier: MIT */
/* The self-test a backend other than the CPU passes after every load, before it serves a job:
 * every op against the CPU backend (p3_backend_selftest, kernels/backend_selftest.c), then the
 * level-structure ops it may have (backend.h: subm_neighbors, window_slots) against the
 * engine's host code (serialize.c), entry for entry. */
#pragma once

#include "backend.h"

/* The structure ops alone, on a small built-in level (a few hundred voxels with holes, the
 * four curves, a padded last window): 0 when every entry equals the host's, or when the
 * backend has no structure ops (nothing then to check); else a negative errno with why naming
 * the op ("window_slots (hilbert): 3 of 512 entries differ"). report gets the fraction of
 * entries that differ, against a tolerance of 0. Test hook: P3_TEST_SELFTEST_BREAK=<op>
 * changes one entry of that op's device result. */
int p3_structure_selftest(p3_backend *be, p3_selftest_report_fn report, void *userdata,
                          char *why, size_t why_len);

/* Both tests, the ops first; the structure after a failed op only with keep_going (see
 * p3_backend_selftest), why then naming every failure. */
int p3_engine_selftest(p3_backend *be, bool keep_going, p3_selftest_report_fn report,
                       void *userdata, char *why, size_t why_len);
