/* SPDX-License-Identifier: MIT */
/* What the isolated importer costs per job: milliseconds per import of a mesh in-process
 * (p3_mesh_import_fd, as p3sam-run does) and through p3sam-import (import_mesh, as p3samd
 * does: spawn, sandbox, import, the soup over the pipe, checks, reap), for the meshes named
 * on the command line and a generated binary PLY grid of 2 M triangles.
 *   bench-import [MESH...]   (the helper: $P3SAM_IMPORT_HELPER) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "import-spawn.h"
#include "mesh_import.h"

static double now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

/* A binary PLY of an n x n vertex grid, in a memfd. */
static int grid_ply(int n) {
        int fd = memfd_create("grid.ply", MFD_CLOEXEC);
        FILE *f = fd >= 0 ? fdopen(dup(fd), "w") : NULL;
        if (!f)
                return -1;
        long nf = 2L * (n - 1) * (n - 1);
        fprintf(f, "ply\nformat binary_little_endian 1.0\nelement vertex %d\nproperty float x\n"
                   "property float y\nproperty float z\nelement face %ld\nproperty list uchar "
                   "int vertex_indices\nend_header\n", n * n, nf);
        for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) {
                        float v[3] = { (float) i, (float) j, (float) ((i * j) % 7) };
                        fwrite(v, sizeof(v), 1, f);
                }
        for (int i = 0; i < n - 1; i++)
                for (int j = 0; j < n - 1; j++) {
                        int a = i * n + j, t[2][3] = { { a, a + 1, a + n + 1 },
                                                      { a, a + n + 1, a + n } };
                        for (int k = 0; k < 2; k++) {
                                fputc(3, f);
                                fwrite(t[k], sizeof(t[k]), 1, f);
                        }
                }
        return fclose(f) == 0 ? fd : -1;
}

static int bench(const char *name, int fd, int runs) {
        double t_in = 0, t_helper = 0;
        int64_t nf = 0;
        for (int i = 0; i < runs; i++) {
                p3_err err = {};
                p3_mesh m = {};
                double t0 = now_ms();
                int r = p3_mesh_import_fd(fd, NULL, "mesh", NULL, &m, &err);
                t_in += now_ms() - t0;
                nf = m.nf;
                p3_mesh_done(&m);
                if (r < 0) {
                        fprintf(stderr, "%s: %s\n", name, p3_err_msg(&err, r));
                        return r;
                }
                import_request req = { .mesh_fd = fd, .memory_max = UINT64_MAX,
                                       .timeout_usec = 600 * 1000000ULL };
                p3_mesh_limits_default(&req.lim);
                t0 = now_ms();
                r = import_mesh(&req, &m, &err);
                t_helper += now_ms() - t0;
                if (r < 0 || m.nf != nf) {
                        fprintf(stderr, "%s: %s\n", name, p3_err_msg(&err, r));
                        return -1;
                }
                p3_mesh_done(&m);
        }
        printf("%-22s %9lld triangles  in-process %8.2f ms  helper %8.2f ms  cost %+8.2f ms "
               "per import (%d runs)\n", name, (long long) nf, t_in / runs, t_helper / runs,
               (t_helper - t_in) / runs, runs);
        return 0;
}

int main(int argc, char **argv) {
        printf("the helper: %s\n", import_helper_path());
        int r = 0;
        for (int i = 1; i < argc; i++) {
                int fd = open(argv[i], O_RDONLY | O_CLOEXEC);
                const char *base = strrchr(argv[i], '/');
                if (fd < 0 || bench(base ? base + 1 : argv[i], fd, 20) < 0)
                        r = 1;
                if (fd >= 0)
                        close(fd);
        }
        int fd = grid_ply(1000);
        if (fd < 0 || bench("grid.ply (generated)", fd, 3) < 0)
                r = 1;
        return r;
}
