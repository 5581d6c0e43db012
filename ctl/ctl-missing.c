/* SPDX-License-Identifier: MIT */
/* Stand-ins for the verbs whose files are not in this tree yet (ctl/meson.build picks them by
 * CTL_MISSING_SWAP and CTL_MISSING_FETCH). Goes once ctl-swap.c and ctl-fetch.c are in. */
#include "ctl.h"

#ifdef CTL_MISSING_SWAP
int verb_setup_swap(int argc, char **argv) {
        return ctl_fail(CTL_EXIT_FAILURE, "setup-swap is not built into this p3samctl.");
}
#endif

#ifdef CTL_MISSING_FETCH
int verb_fetch_model(int argc, char **argv) {
        return ctl_fail(CTL_EXIT_FAILURE, "fetch-model is not built into this p3samctl.");
}
#endif
