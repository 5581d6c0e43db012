/* SPDX-License-Identifier: MIT */
/* Helpers shared by the test programs: where the data lives, skipping, and tensor comparison
 * with the tolerances the golden README states (max|diff| relative to max|ref|). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EXIT_TEST_SKIP 77

/* The tests' random numbers: splitmix64 stepping *state (each test its own fixed seed, so every
 * run sees the same values). */
uint64_t test_rnd_u64(uint64_t *state);
/* Uniform in [0, 1), 53 bits. */
double test_rnd_unit(uint64_t *state);

/* Seconds on the monotonic clock, for the benchmarks' timings. */
double test_now(void);

/* A soft check: prints the sentence and counts the failure, the test goes on. */
extern int test_failures;
#define EXPECT(cond, ...)                                                                      \
        do {                                                                                   \
                if (!(cond)) {                                                                 \
                        printf("  FAIL: " __VA_ARGS__);                                        \
                        printf("\n");                                                          \
                        test_failures++;                                                       \
                }                                                                              \
        } while (0)

/* tests/data/<rel> (always present in a checkout). malloc'd. */
char *test_data_path(const char *rel);
/* ../shared/<rel>, or NULL when ../shared (or that file) is absent. malloc'd. */
char *test_shared_path(const char *rel);
/* A golden case (golden/<name>/case.safetensors): the trimmed copy in tests/data for "tiny",
 * else ../shared; NULL when neither is there. malloc'd. */
char *test_golden_case(const char *name);
/* A pipeline replay (golden/pipeline/<name>/replay.safetensors): tests/data's copy of
 * small_truck_20k_64, else ../shared; NULL when absent. malloc'd. */
char *test_replay_path(const char *name);
/* Print "SKIP: why" and exit 77 (meson counts it as skipped). */
#ifdef __cplusplus /* the nvcc-built tests of tests/cuda include this too */
[[noreturn]] void test_skip(const char *why);
#else
_Noreturn void test_skip(const char *why);
#endif

/* Open a safetensors file or fail the test. */
st_file *test_open(const char *path);
/* A tensor converted to FP32 / I64 (malloc'd), failing the test if missing. */
float *test_f32(const st_file *f, const char *name, int64_t *numel);
int64_t *test_i64(const st_file *f, const char *name, int64_t *numel);

/* max|got-ref| <= rel * max|ref| + abs; prints the figures; returns true if within. */
bool test_close_f32(const char *what, const float *got, const float *ref, int64_t n, double rel,
                    double abs);
bool test_equal_i64(const char *what, const int64_t *got, const int64_t *ref, int64_t n);

/* n points in the unit cube (a fixed sequence), normals along z: pts and normals [n, 3]. */
void test_cloud(int64_t n, double *pts, double *normals);

/* tests/data/tiny_config.json into *cfg, and synthetic weights for a config (the recipe of
 * golden/SYNTH.md), or the test fails. */
struct p3_config;
struct p3_weights;
void test_tiny_config(struct p3_config *cfg);
struct p3_weights *test_synth_weights(const struct p3_config *cfg);

#ifdef __cplusplus
}
#endif
