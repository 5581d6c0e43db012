/* SPDX-License-Identifier: MIT */
/* Parsers for the values of p3samd.conf and its environment overrides, with systemd's
 * conventions: a bare time span is in seconds, sizes are base 1024, "infinity" is
 * UINT64_MAX. All return 0 on success and leave *ret untouched on failure: -EINVAL for text
 * that is not a value of the type, -ERANGE for a value out of range or too big. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_INFINITY UINT64_MAX

/* Enough for any format_timespan() output ("29227w 1d 3h 22min 44s 551ms 615us" has 36). */
#define FORMAT_TIMESPAN_MAX 64

/* "5min", "1h 30min", "1min30s", "1.5h", "250ms", "infinity". A number without a unit is in
 * seconds. Units: us usec, ms msec, s sec second seconds, m min minute minutes, h hr hour
 * hours, d day days, w week weeks (case-sensitive, as systemd). */
int parse_timespan_usec(const char *s, uint64_t *usec);

/* "512M", "1.5G", "4096", "64KiB", "100B", "infinity": K M G T and KiB MiB GiB TiB are
 * powers of 1024. */
int parse_size_bytes(const char *s, uint64_t *bytes);

/* 1 for yes/y/true/t/on/1, 0 for no/n/false/f/off/0 (any case), else -EINVAL. */
int parse_bool(const char *s);

/* A decimal integer (no sign, no base prefix) in [lo, hi]. */
int parse_u64_range(const char *s, uint64_t lo, uint64_t hi, uint64_t *ret);

/* A finite decimal number ("0.95", "1e-3") in [lo, hi], independent of the locale. For an
 * open bound pass nextafter(): (0, 1] is [nextafter(0, 1), 1]. */
int parse_double_range(const char *s, double lo, double hi, double *ret);

/* Writes usec the way parse_timespan_usec() reads it back: "5min", "1h 30min", "250ms",
 * "0", "infinity". Truncates to fit len (FORMAT_TIMESPAN_MAX always fits); returns buf. */
char *format_timespan(char *buf, size_t len, uint64_t usec);
