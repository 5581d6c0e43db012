/* SPDX-License-Identifier: MIT */
/* placeholder: being written */
#include "cuda_backend.h"
