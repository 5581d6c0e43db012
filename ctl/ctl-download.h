/* SPDX-License-Identifier: MIT */
/* Resumable HTTP(S) downloads into a file with libcurl, for p3samctl fetch-model: a Range
 * request from the size already on disk, a fresh start when the server ignores it, and a
 * progress display on stderr. Errors are one sentence naming the host. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

typedef struct download_info {
        uint64_t resumed_from; /* bytes already on disk that the server continued (0: none) */
        bool restarted;        /* a partial file was discarded: the server ignored the Range */
        bool was_complete;     /* the server answered 416: the file already had every byte */
        uint64_t size;         /* the file's size afterwards */
} download_info;

/* Check that url is an http or https URL with a host; *ret_host (malloc'd, may be NULL) gets
 * the host for messages. -EINVAL with a sentence otherwise. */
int download_url_host(const char *url, char **ret_host, p3_err *err);

/* Fetch url into fd (opened read-write), continuing after the bytes the file already holds.
 * show_progress: show progress on stderr (a redrawn line on a terminal, sparse lines otherwise).
 * On failure the bytes received so far stay in the file, so that a later call resumes. */
int download_resume(const char *url, int fd, bool show_progress, download_info *info,
                    p3_err *err);
