/* SPDX-License-Identifier: MIT */
/* placeholder: being written */
#include "cuda_gemm_layout.h"
