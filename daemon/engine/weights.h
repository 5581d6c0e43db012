/* SPDX-License-Identifier: MIT */
/* The model's parameters: the expected key set derived from a p3_config, loading and checking
 * a safetensors checkpoint against it, and lookup by name. Values are host FP32. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model_config.h"
#include "safetensors.h"

typedef struct p3_weight_spec {
        char name[96];
        int ndim;
        int64_t shape[5];
        int64_t numel;
} p3_weight_spec;

/* Every tensor the model has, in upstream state_dict order (the order of
 * golden/full/keys.json). *ret is malloc'd. */
int p3_weight_specs(const p3_config *cfg, p3_weight_spec **ret, size_t *n);

typedef struct p3_weights {
        p3_config cfg;
        p3_weight_spec *specs;
        size_t n;
        const float **data; /* [n], FP32 host pointers: into the mapping, or into owned */
        float *owned;       /* converted copies for F16/BF16 files, synthetic weights, snapshots */
        st_file *file;      /* the mapping, NULL for synthetic weights and snapshots */
        bool synthetic;     /* written by `p3sam-run synth` (its metadata names the recipe) */
        st_identity origin; /* the file's identity when opened; zero when there was no file */
        size_t total_params;
        uint32_t *slots;  /* open-addressing name index into specs: slot -> spec index + 1 */
        size_t slot_mask; /* number of slots - 1 (a power of two minus one) */
} p3_weights;

/* Map a checkpoint, strip a leading "dit." from key names, check that every expected key is
 * present with the right shape and that there are no extra keys; accept F32/F16/BF16.
 * Errors name the file and the key. */
int p3_weights_load(const char *path, const p3_config *cfg, p3_weights **ret, p3_err *err);
/* p3_weights_load with the config read from config_path (NULL: the real model's). */
int p3_weights_open(const char *path, const char *config_path, p3_weights **ret, p3_err *err);
/* Weights written by `p3sam-run synth` (their metadata names the recipe): results are
 * meaningless and every output says so. */
bool p3_weights_synthetic(const p3_weights *w);
/* An independent copy of w whose values all live in one block of anonymous memory it owns
 * (file NULL): the served model then no longer depends on the file's pages, so overwriting the
 * file in place (cp truncates and rewrites the same inode) can neither kill the process with
 * SIGBUS nor change the model under it. Values equal w's bit for bit; synthetic and origin
 * are w's. The copy shares nothing with w: free either in any order.
 * A file-backed w is read with pread() from the descriptor st_open kept, never from the
 * mapping, between two checks that the file still has the size and mtime it had when opened:
 * if not (or if a read comes back short), -ESTALE and "<path> changed on disk since it was
 * opened; reload to use the new file". Converted (F16/BF16) and in-memory values are copied. */
int p3_weights_snapshot(const p3_weights *w, p3_weights **ret, p3_err *err);
/* Build the synthetic weights of SYNTH.md in memory. */
int p3_weights_synth(const p3_config *cfg, p3_weights **ret, p3_err *err);
void p3_weights_free(p3_weights *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(p3_weights *, p3_weights_free);

/* FP32 data of a tensor by full name; NULL if absent. */
const float *p3_weights_get(const p3_weights *w, const char *name);
const p3_weight_spec *p3_weights_spec(const p3_weights *w, const char *name);
/* Index of a tensor in w->specs / w->data, or -ENOENT. */
int p3_weights_index(const p3_weights *w, const char *name);
/* Sum of numel over specs. */
size_t p3_weight_specs_total(const p3_weight_spec *specs, size_t n);
