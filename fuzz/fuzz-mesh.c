/* SPDX-License-Identifier: MIT */
/* Mesh import (mesh_import.h) on untrusted bytes, the way a client's Segment() call hands
 * them to the daemon: a memfd and a format hint. The first byte picks the hint (detection,
 * or each format by name, so that every sniffer sees every kind of input); the rest is the
 * mesh. The daemon's limits, but smaller, so that a declared size cannot make a run slow. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "fuzz-util.h"
#include "log.h"
#include "mesh_import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const hints[] = { "", "glb", "gltf", "obj", "ply", "stl", "off",
                                             "GLB", NULL };
        static bool quiet;
        if (!quiet) {
                log_set_max_level(LOG_ERR);
                quiet = true;
        }
        if (size < 1)
                return 0;
        const char *hint = hints[data[0] % (sizeof(hints) / sizeof(hints[0]))];
        int fd = fuzz_memfd(data + 1, size - 1);
        if (fd < 0)
                return 0;
        p3_mesh_limits lim = { .max_bytes = 1 << 20, .max_faces = 200000,
                               .max_vertices = 400000 };
        p3_mesh mesh = {};
        p3_err err = {};
        int r = p3_mesh_import_fd(fd, hint, "fuzz", &lim, &mesh, &err);
        if (r >= 0) {
                /* What the pipeline relies on: every face index names a vertex. */
                for (int64_t i = 0; i < 3 * mesh.nf; i++)
                        if (mesh.f[i] < 0 || mesh.f[i] >= mesh.nv)
                                abort();
                p3_mesh_done(&mesh);
        } else if (!err.msg[0])
                abort(); /* every failure names the input and the problem */
        close(fd);
        return 0;
}
