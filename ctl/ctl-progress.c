/* SPDX-License-Identifier: MIT */
/* Progress display. Kept on stderr so that stdout stays for what scripts read. */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "ctl-progress.h"
#include "time-util.h"

void ctl_progress_init(ctl_progress *p) {
        *p = (ctl_progress) { .tty = isatty(STDERR_FILENO), .start_usec = now_monotonic_usec() };
        snprintf(p->stage, sizeof(p->stage), "queued");
}

static void format_elapsed(char *buf, size_t len, uint64_t usec) {
        double s = usec / 1e6;
        if (s < 60)
                snprintf(buf, len, "%.1fs", s);
        else
                snprintf(buf, len, "%umin %02us", (unsigned) (s / 60), (unsigned) s % 60);
}

static int terminal_columns(void) {
        struct winsize w;
        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &w) < 0 || w.ws_col < 20)
                return 80;
        return w.ws_col;
}

/* "\r" + "features        [#######.......]  40%  3.1s", erasing the rest of the line. The bar
 * takes what the terminal's width leaves, so that the line never wraps (a wrapped line cannot
 * be redrawn with \r). */
static void draw_bar(ctl_progress *p, const char *elapsed) {
        int width = terminal_columns() - 16 - (int) strlen(elapsed) - 10;
        width = width > 50 ? 50 : width;
        int filled = width > 0 ? (int) (p->fraction * width + 0.5) : 0;
        char bar[64];
        for (int i = 0; i < width; i++)
                bar[i] = i < filled ? '#' : '.';
        bar[width > 0 ? width : 0] = '\0';
        fprintf(stderr, "\r%-15.15s %s%s%s %3d%%  %s\033[K", p->stage, width > 0 ? "[" : "", bar,
                width > 0 ? "]" : "", (int) (p->fraction * 100 + 0.5), elapsed);
        fflush(stderr);
        p->drawn = true;
}

static void draw(ctl_progress *p) {
        char elapsed[32];
        format_elapsed(elapsed, sizeof(elapsed), now_monotonic_usec() - p->start_usec);
        if (p->tty) {
                draw_bar(p, elapsed);
                return;
        }
        /* a log gets one line per stage: progress signals come many times a second */
        if (strcmp(p->printed_stage, p->stage) == 0)
                return;
        snprintf(p->printed_stage, sizeof(p->printed_stage), "%s", p->stage);
        fprintf(stderr, "%s %d%% %s\n", p->stage, (int) (p->fraction * 100 + 0.5), elapsed);
        fflush(stderr);
}

void ctl_progress_update(ctl_progress *p, const char *stage, double fraction) {
        if (stage && *stage)
                snprintf(p->stage, sizeof(p->stage), "%s", stage);
        if (fraction >= 0 && fraction <= 1)
                p->fraction = fraction;
        draw(p);
}

void ctl_progress_tick(ctl_progress *p) {
        if (p->tty)
                draw(p);
}

void ctl_progress_clear(ctl_progress *p) {
        if (p->tty && p->drawn) {
                fputs("\r\033[K", stderr);
                fflush(stderr);
        }
        p->drawn = false;
}

void ctl_progress_done(ctl_progress *p) {
        if (p->tty && p->drawn) {
                fputc('\n', stderr);
                fflush(stderr);
        }
        p->drawn = false;
}
