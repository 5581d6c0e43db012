/* SPDX-License-Identifier: MIT */
/* The deterministic synthetic-weight recipe of golden/SYNTH.md: every value depends only on
 * the tensor's name, shape and flat index; bit-identical to golden/tiny/weights.safetensors. */
#pragma once

#include <stdint.h>

#include "model_config.h"
#include "safetensors.h"

uint64_t p3_synth_fnv1a64(const char *name);
uint64_t p3_synth_splitmix64(uint64_t s);
/* Fill out[numel] for the tensor `name` of the given shape, following the rule table. */
void p3_synth_fill(const char *name, int ndim, const int64_t *shape, float *out);
/* Write a whole synthetic checkpoint for cfg (dtype ST_F32 or ST_F16); head_gain scales the
 * last Linear (weight and bias) of every mask and IoU head (1.0 = the recipe). */
int p3_synth_write(const p3_config *cfg, const char *path, st_dtype dtype, double head_gain,
                   p3_err *err);
