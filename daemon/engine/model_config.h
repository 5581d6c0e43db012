/* SPDX-License-Identifier: MIT */
/* The Sonata backbone configuration, in the JSON format of upstream's sonata.json
 * (a top-level "sonata" object, or the object itself). Defaults = the real P3-SAM model. */
#pragma once

#include <stdbool.h>

#include "error.h"

#define P3_MAX_STAGES 8
#define P3_NUM_ORDERS_MAX 4
#define P3_HEAD_DIM 16
#define P3_FEAT_DIM 512 /* per-point feature width the heads consume */

typedef enum p3_order {
        P3_ORDER_Z,
        P3_ORDER_Z_TRANS,
        P3_ORDER_HILBERT,
        P3_ORDER_HILBERT_TRANS,
} p3_order;

typedef struct p3_config {
        int in_channels;   /* 9: coord, colour, normal */
        int num_stages;    /* 5 */
        int depths[P3_MAX_STAGES];
        int channels[P3_MAX_STAGES];
        int num_heads[P3_MAX_STAGES];
        int patch_size[P3_MAX_STAGES];
        int stride[P3_MAX_STAGES]; /* num_stages - 1 entries, all 2 */
        int num_orders;
        p3_order orders[P3_NUM_ORDERS_MAX];
        bool shuffle_orders;
        int mlp_ratio;
        bool mask_token;
        int concat_width; /* sum of channels: input width of the P3-SAM "mlp" */
} p3_config;

/* The real model's configuration (XPart/partgen/config/sonata.json). */
void p3_config_default(p3_config *cfg);

/* Parse a config JSON file with json-c. Unknown keys that change nothing at inference are
 * ignored; values this engine does not implement (enable_rpe, pre_norm=false, enc_mode=false,
 * head dim != 16, a stride other than 2, ...) are refused with a message naming the key. */
int p3_config_load(const char *path, p3_config *cfg, p3_err *err);
int p3_config_parse(const char *json, const char *name, p3_config *cfg, p3_err *err);

const char *p3_order_name(p3_order o);
