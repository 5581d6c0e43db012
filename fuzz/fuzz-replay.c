/* SPDX-License-Identifier: MIT */
/* The replay readers of p3sam-run on untrusted bytes: `postprocess --replay` (the recorded
 * mesh, points, face indices, masks and IoUs, then the whole post-processing on them, both
 * phases, as the tool runs it) and `infer --case` (coord, normal and the recorded index
 * tensors; the network itself is not run). Both readers are static in their tools, so this
 * file includes run-postprocess.c and replay-infer.c includes run-infer.c. */
#include "../daemon/tools/run-postprocess.c"

#include <stdlib.h>
#include <unistd.h>

#include "fuzz-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int fuzz_replay_case(const char *path); /* replay-infer.c */

static void fuzz_postprocess(const char *path) {
        replay rp = {};
        p3_adjacency adj = {};
        trace_store st = {};
        p3_pp_result res[2] = {};
        p3_err err = {};
        int r = replay_load(path, &rp, &err);
        if (r < 0 && !err.msg[0])
                abort();
        if (r >= 0)
                r = p3_mesh_adjacency(&rp.mesh, &adj);
        if (r >= 0) {
                p3_pp_input in = { .mesh = &rp.mesh, .adj = &adj, .points = rp.points,
                                   .face_idx = rp.face_idx, .n = rp.n, .k = rp.k,
                                   .mask_bits = { rp.bits[0], rp.bits[1], rp.bits[2] },
                                   .pred_iou = rp.iou, .threshold = 0.95 };
                p3_pp_hooks h = { .trace = keep, .userdata = &st };
                for (st.phase = 0; r >= 0 && st.phase < 2; st.phase++) {
                        in.post_process = st.phase == 1;
                        r = p3_postprocess(&in, &h, &res[st.phase], &err);
                }
        }
        p3_pp_result_done(&res[0]);
        p3_pp_result_done(&res[1]);
        trace_store_done(&st);
        p3_adjacency_done(&adj);
        replay_done(&rp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        int fd = fuzz_memfd(data, size);
        if (fd < 0)
                return 0;
        char path[64];
        fuzz_fd_path(fd, path, sizeof(path));
        fuzz_postprocess(path);
        if (fuzz_replay_case(path) < 0)
                abort();
        close(fd);
        return 0;
}
