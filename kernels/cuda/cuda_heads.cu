/* SPDX-License-Identifier: MIT */
/* placeholder: being written */
#include <errno.h>
#include "cuda_backend.h"
int cuda_heads(p3_backend *be, const p3_heads_params *hp, const p3_heads_input *in, p3_heads_output *out) { return -ENOSYS; }
