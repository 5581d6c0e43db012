/* SPDX-License-Identifier: MIT */
/* setup-swap: what the verb (ctl-swap.c) and its systemd unit half (ctl-swap-unit.c) share.
 * Functions return 0 or a negative errno and, on failure, write one sentence into e. */
#pragma once

#include <stdbool.h>

#include "error.h"

/* The --persist unit: its name, where it goes, and what this run created (for the undo). */
typedef struct swap_unit {
        char *name;         /* "var-lib-swap\x20file.swap" */
        char *unit_dir;     /* --unit-dir */
        char *unit_path;    /* <unit_dir>/<name> */
        char *wants_dir;    /* <unit_dir>/swap.target.wants */
        char *link_path;    /* <wants_dir>/<name> */
        char *created_dir;  /* the outermost directory this run created, or NULL */
        bool wrote_unit;
        bool linked;
} swap_unit;

/* systemd's unit-name-from-path escaping with suffix (".swap"): unit_name_path_escape(). */
int swap_unit_name_from_path(const char *path, const char *suffix, char **ret);

/* Computes the names and checks, without side effects, that neither the unit nor its link
 * exists yet and that the unit directory can be written. */
int swap_unit_prepare(swap_unit *u, const char *unit_dir, const char *what, p3_err *e);
/* Writes the unit file and links it into swap.target.wants/. */
int swap_unit_install(swap_unit *u, const char *what, p3_err *e);
/* Removes what swap_unit_install() created (best effort; used on a later failure). */
void swap_unit_undo(swap_unit *u);
void swap_unit_done(swap_unit *u);

/* Tells a running systemd about the new unit (systemctl daemon-reload); prints what it did
 * or, without systemd, that the unit applies at the next boot. */
int swap_unit_reload(p3_err *e);

/* In ctl-swap.c, for both halves. Runs argv[0] (a path) with argv, stdin from /dev/null, its output held back and shown on
 * stderr only when it fails. */
int swap_run_quiet(char *const argv[], p3_err *e);

/* Finds an executable by name in $PATH, then in /usr/sbin and /sbin. */
int swap_find_program(const char *name, char **ret);
