/* SPDX-License-Identifier: MIT */
/* placeholder: being written */
#include <errno.h>
#include "cuda_backend.h"
