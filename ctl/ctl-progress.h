/* SPDX-License-Identifier: MIT */
/* The progress of one job on stderr: on a terminal a bar redrawn in place (stage, bar, percent,
 * elapsed time); otherwise, for logs, one plain line per stage ("features 40% 3.1s"). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct ctl_progress {
        bool tty;               /* stderr is a terminal: redraw in place */
        bool drawn;             /* tty: the bar is on the current line */
        uint64_t start_usec;    /* CLOCK_MONOTONIC */
        char stage[32];
        double fraction;
        char printed_stage[32]; /* not a tty: the stage of the last line */
} ctl_progress;

void ctl_progress_init(ctl_progress *p);

/* A new stage and/or fraction from the job; stage NULL keeps the current one. */
void ctl_progress_update(ctl_progress *p, const char *stage, double fraction);

/* tty: redraw for the elapsed time (called on a timer). */
void ctl_progress_tick(ctl_progress *p);

/* tty: end the bar's line, so that a message can follow on a line of its own. */
void ctl_progress_done(ctl_progress *p);

/* tty: erase the bar (the job failed: only the reason is left on the screen). */
void ctl_progress_clear(ctl_progress *p);
