/* SPDX-License-Identifier: MIT */
/* The model's weights as backend tensors, shared by model.c (upload), sonata.c (backbone) and
 * heads.c (prompt batches). */
#pragma once

#include "model.h"

typedef struct p3_linear {
        p3_tensor w, b;
} p3_linear;

typedef struct p3_block {
        p3_linear conv;     /* cpe.0: SubMConv3d, weight viewed [C, 27·C] */
        p3_linear cpe_fc;   /* cpe.1 */
        p3_linear cpe_norm; /* cpe.2 (LayerNorm: w = gamma, b = beta) */
        p3_linear norm1, qkv, proj, norm2, fc1, fc2;
} p3_block;

typedef struct p3_stage {
        p3_linear down, down_norm; /* pooling (stages >= 1) */
        p3_block *blocks;
        int depth;
} p3_stage;

struct p3_model {
        p3_backend *be;
        bool owns_backend;         /* opened by p3_model_open(): freed with the model */
        bool fake_cuda;            /* P3_TEST_FAKE_CUDA's CPU stand-in serves (test hook) */
        char fallback_reason[256]; /* why the backend asked for is not the one running */
        p3_config cfg;
        p3_linear stem, stem_norm;
        p3_stage stages[P3_MAX_STAGES];
        p3_mlp3 mlp; /* feature projector: concat → 512 */
        p3_heads_params heads;
};
