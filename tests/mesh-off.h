/* SPDX-License-Identifier: MIT */
/* A plain-text OFF mesh (triangles and polygons, fanned) for the benchmarks, where no assimp
 * is built (the engine-only build scripts/gpu-check.sh runs on a GPU machine). Test code: the
 * service imports meshes through assimp in its own process. */
#pragma once

#include "mesh.h"

/* 0, or a negative errno with a sentence in err. */
int test_mesh_read_off(const char *path, p3_mesh *ret, p3_err *err);
