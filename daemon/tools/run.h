/* SPDX-License-Identifier: MIT */
/* Subcommands of p3sam-run: each takes its own argv (argv[0] is the subcommand name) and
 * returns the process exit status (0 success, 1 failure, 2 usage error). */
#pragma once

/* subcommands */
int run_synth(int argc, char **argv);
int run_infer(int argc, char **argv);
int run_postprocess(int argc, char **argv);
int run_segment(int argc, char **argv);
int run_predict(int argc, char **argv);
int run_selftest(int argc, char **argv);

/* Shared by the subcommands that run the model. */
#include "error.h"
#include "model.h"

typedef struct run_model {
        p3_backend *be; /* the model's (p3_model_backend) */
        p3_weights *w;
        p3_model *m;
} run_model;

/* Load the config (NULL: the real one), map the weights, open the model on the backend asked
 * for at the given precision, and print "device: <what runs>" on stderr first thing, with the
 * reason when CUDA was asked for and the CPU runs (the tools are reference tools: their
 * default is the CPU at fp32). On failure prints nothing; the message is in err. */
int run_model_open(const char *weights, const char *config, int threads, p3_backend_kind backend,
                   p3_precision precision, run_model *rm, p3_err *err);
/* --backend's value: auto, cpu or cuda; false if it is none of them. */
bool run_parse_backend(const char *s, p3_backend_kind *ret);
/* --precision's value: auto, fp32, bf16 or fp16; false if it is none of them. */
bool run_parse_precision(const char *s, p3_precision *ret);
/* Seconds on CLOCK_MONOTONIC, for the tools' time: lines. */
double run_now(void);
void run_model_close(run_model *rm);
/* Weights written by `p3sam-run synth` (their metadata names the recipe). */
bool run_model_synthetic(const run_model *rm);

/* Parse a decimal integer option in [lo, hi]; returns false if it is not one. */
bool run_parse_int(const char *s, long long lo, long long hi, long long *ret);
/* "p3sam-run: <message>" on stderr; returns 1. */
int run_fail(const char *fmt, ...) _printf_(1, 2);
