/* SPDX-License-Identifier: MIT */
/* p3sam-run infer's case reader (static in run-infer.c) for fuzz-replay.c. */
#include "../daemon/tools/run-infer.c"

#include "fuzz-util.h"

int fuzz_replay_case(const char *path);

/* 0 when the case was read or refused with a message; -1 when refused without one. */
int fuzz_replay_case(const char *path) {
        case_data c = {};
        p3_replay rp;
        p3_err err = {};
        int r = case_load(path, &c, &rp, &err);
        if (r >= 0 && (c.n < 1 || !c.coord || !c.normal))
                r = -1;
        else if (r < 0)
                r = err.msg[0] ? 0 : -1;
        else
                r = 0;
        case_done(&c);
        return r;
}
