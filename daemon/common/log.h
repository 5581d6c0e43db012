/* SPDX-License-Identifier: MIT */
/* The daemon's one log layer, in systemd's style: a line per event on stderr with a journal
 * priority (LOG_ERR … LOG_DEBUG from <syslog.h>), and the *_errno forms return the error they
 * were given, so that an error path reads `return log_error_errno(r, "…");`.
 *
 * Where stderr is not a terminal (the journal, a log file) each line starts with the "<N>"
 * prefix that journald turns into the priority (sd-daemon(3)); on a terminal it starts with
 * the program's name instead. r may be 0 for a line without an errno. */
#pragma once

#include <syslog.h>

#include "macro.h"

/* The name printed on a terminal ("p3samd"); set once at startup. */
void log_set_program(const char *name);
/* Lines above this priority (numerically greater) are dropped; LOG_INFO by default. */
void log_set_max_level(int prio);

int log_full_errno(int prio, int r, const char *fmt, ...) _printf_(3, 4);

#define log_error_errno(r, ...) log_full_errno(LOG_ERR, (r), __VA_ARGS__)
#define log_warning_errno(r, ...) log_full_errno(LOG_WARNING, (r), __VA_ARGS__)
#define log_notice_errno(r, ...) log_full_errno(LOG_NOTICE, (r), __VA_ARGS__)
#define log_error(...) ((void) log_full_errno(LOG_ERR, 0, __VA_ARGS__))
#define log_warning(...) ((void) log_full_errno(LOG_WARNING, 0, __VA_ARGS__))
#define log_notice(...) ((void) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__))
#define log_info(...) ((void) log_full_errno(LOG_INFO, 0, __VA_ARGS__))
#define log_debug(...) ((void) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__))
