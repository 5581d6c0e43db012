/* SPDX-License-Identifier: MIT */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strtod_l */
#endif
#include "parse-util.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "macro.h"

#define WHITESPACE " \t\n\r"
#define LETTERS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#define DIGITS "0123456789"

typedef struct unit {
        const char *name;
        uint64_t factor;
} unit;

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_MINUTE (UINT64_C(60) * USEC_PER_SEC)
#define USEC_PER_HOUR (UINT64_C(60) * USEC_PER_MINUTE)
#define USEC_PER_DAY (UINT64_C(24) * USEC_PER_HOUR)
#define USEC_PER_WEEK (UINT64_C(7) * USEC_PER_DAY)

static const unit time_units[] = {
        { "us", 1 },                  { "usec", 1 },
        { "ms", USEC_PER_MSEC },      { "msec", USEC_PER_MSEC },
        { "s", USEC_PER_SEC },        { "sec", USEC_PER_SEC },
        { "second", USEC_PER_SEC },   { "seconds", USEC_PER_SEC },
        { "m", USEC_PER_MINUTE },     { "min", USEC_PER_MINUTE },
        { "minute", USEC_PER_MINUTE }, { "minutes", USEC_PER_MINUTE },
        { "h", USEC_PER_HOUR },       { "hr", USEC_PER_HOUR },
        { "hour", USEC_PER_HOUR },    { "hours", USEC_PER_HOUR },
        { "d", USEC_PER_DAY },        { "day", USEC_PER_DAY },
        { "days", USEC_PER_DAY },     { "w", USEC_PER_WEEK },
        { "week", USEC_PER_WEEK },    { "weeks", USEC_PER_WEEK },
};

/* Largest first: format_timespan() walks it greedily. */
static const unit time_units_out[] = {
        { "w", USEC_PER_WEEK }, { "d", USEC_PER_DAY }, { "h", USEC_PER_HOUR },
        { "min", USEC_PER_MINUTE }, { "s", USEC_PER_SEC }, { "ms", USEC_PER_MSEC },
        { "us", 1 },
};

static const unit size_units[] = {
        { "", 1 },                        { "B", 1 },
        { "K", UINT64_C(1) << 10 },       { "KiB", UINT64_C(1) << 10 },
        { "M", UINT64_C(1) << 20 },       { "MiB", UINT64_C(1) << 20 },
        { "G", UINT64_C(1) << 30 },       { "GiB", UINT64_C(1) << 30 },
        { "T", UINT64_C(1) << 40 },       { "TiB", UINT64_C(1) << 40 },
};

static const unit *unit_find(const unit *table, size_t n, const char *s, size_t len) {
        for (size_t i = 0; i < n; i++)
                if (strlen(table[i].name) == len && strncmp(table[i].name, s, len) == 0)
                        return &table[i];
        return NULL;
}

/* "infinity" alone, surrounded by nothing but whitespace. */
static bool is_infinity(const char *s) {
        s += strspn(s, WHITESPACE);
        if (strncmp(s, "infinity", 8) != 0)
                return false;
        s += 8;
        return s[strspn(s, WHITESPACE)] == '\0';
}

/* A non-negative decimal as read: whole part, and fraction numerator over frac_div. */
typedef struct decimal {
        uint64_t whole, frac, frac_div;
} decimal;

/* Fraction digits kept: 10^9 keeps frac * (factor % frac_div) below 2^64 in decimal_scale();
 * further digits are below a microsecond or a byte for every unit and are dropped. */
#define FRAC_DIGITS_MAX 9

static int read_digits(const char **p, uint64_t *ret) {
        const char *s = *p;
        uint64_t v = 0;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        for (; *s >= '0' && *s <= '9'; s++)
                if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *s - '0', &v))
                        return -ERANGE;
        *p = s;
        *ret = v;
        return 0;
}

/* Reads "12" or "12.5" at *p (no sign: time spans and sizes are never negative). */
static int read_decimal(const char **p, decimal *ret) {
        const char *s = *p;
        decimal d = { .frac_div = 1 };
        int r;

        r = read_digits(&s, &d.whole);
        if (r < 0)
                return r;
        if (*s == '.') {
                s++;
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                for (unsigned n = 0; *s >= '0' && *s <= '9'; s++, n++)
                        if (n < FRAC_DIGITS_MAX) {
                                d.frac = d.frac * 10 + (uint64_t) (*s - '0');
                                d.frac_div *= 10;
                        }
        }
        *p = s;
        *ret = d;
        return 0;
}

/* d * factor, rounded down, exactly: the fraction is split as frac * (q * div + rem) / div so
 * that no intermediate overflows. */
static int decimal_scale(const decimal *d, uint64_t factor, uint64_t *ret) {
        uint64_t v, part;

        if (__builtin_mul_overflow(d->whole, factor, &v))
                return -ERANGE;
        part = d->frac * (factor / d->frac_div) + d->frac * (factor % d->frac_div) / d->frac_div;
        if (__builtin_add_overflow(v, part, &v))
                return -ERANGE;
        *ret = v;
        return 0;
}

int parse_timespan_usec(const char *s, uint64_t *usec) {
        uint64_t sum = 0;
        bool any = false;
        int r;

        if (is_infinity(s)) {
                *usec = USEC_INFINITY;
                return 0;
        }

        for (;;) {
                const unit *u;
                decimal d;
                uint64_t v;
                size_t n;

                s += strspn(s, WHITESPACE);
                if (*s == '\0')
                        break;
                r = read_decimal(&s, &d);
                if (r < 0)
                        return r;
                s += strspn(s, WHITESPACE); /* "5 min" */
                n = strspn(s, LETTERS);
                /* A bare number is in seconds, as in systemd's *Sec= settings. */
                u = n == 0 ? unit_find(time_units, ELEMENTSOF(time_units), "s", 1)
                           : unit_find(time_units, ELEMENTSOF(time_units), s, n);
                if (!u)
                        return -EINVAL;
                s += n;
                r = decimal_scale(&d, u->factor, &v);
                if (r < 0)
                        return r;
                if (__builtin_add_overflow(sum, v, &sum))
                        return -ERANGE;
                any = true;
        }

        if (!any)
                return -EINVAL;
        /* UINT64_MAX means "infinity"; a finite span must not spell it by accident. */
        if (sum == USEC_INFINITY)
                return -ERANGE;
        *usec = sum;
        return 0;
}

int parse_size_bytes(const char *s, uint64_t *bytes) {
        const unit *u;
        decimal d;
        uint64_t v;
        size_t n;
        int r;

        if (is_infinity(s)) {
                *bytes = UINT64_MAX;
                return 0;
        }

        s += strspn(s, WHITESPACE);
        r = read_decimal(&s, &d);
        if (r < 0)
                return r;
        s += strspn(s, WHITESPACE); /* "512 MiB" */
        n = strspn(s, LETTERS);
        u = unit_find(size_units, ELEMENTSOF(size_units), s, n);
        if (!u)
                return -EINVAL;
        s += n;
        if (s[strspn(s, WHITESPACE)] != '\0')
                return -EINVAL;
        /* Half a byte is a typo, not a size. */
        if (u->factor == 1 && d.frac != 0)
                return -EINVAL;
        r = decimal_scale(&d, u->factor, &v);
        if (r < 0)
                return r;
        if (v == UINT64_MAX)
                return -ERANGE;
        *bytes = v;
        return 0;
}

int parse_bool(const char *s) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };

        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (strcasecmp(s, yes[i]) == 0)
                        return 1;
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (strcasecmp(s, no[i]) == 0)
                        return 0;
        return -EINVAL;
}

int parse_u64_range(const char *s, uint64_t lo, uint64_t hi, uint64_t *ret) {
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;
        r = read_digits(&s, &v);
        if (r < 0)
                return r;
        if (*s != '\0')
                return -EINVAL;
        if (v < lo || v > hi)
                return -ERANGE;
        *ret = v;
        return 0;
}

int parse_double_range(const char *s, double lo, double hi, double *ret) {
        locale_t c_locale;
        char *end;
        double v;
        int saved;

        /* Plain decimal notation only: strtod() would also take "nan", "inf" and hex. */
        if (!s || *s == '\0' || s[strspn(s, DIGITS ".eE+-")] != '\0')
                return -EINVAL;
        /* "0.95" must read the same whatever LC_NUMERIC the process runs under. */
        c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t) 0);
        if (c_locale == (locale_t) 0)
                return -errno;
        errno = 0;
        v = strtod_l(s, &end, c_locale);
        saved = errno;
        freelocale(c_locale);
        if (end == s || *end != '\0')
                return -EINVAL;
        if (saved == ERANGE || !isfinite(v))
                return -ERANGE;
        if (!(v >= lo && v <= hi))
                return -ERANGE;
        *ret = v;
        return 0;
}

char *format_timespan(char *buf, size_t len, uint64_t usec) {
        size_t pos = 0;

        if (len == 0)
                return buf;
        if (usec == USEC_INFINITY) {
                snprintf(buf, len, "infinity");
                return buf;
        }
        if (usec == 0) {
                snprintf(buf, len, "0");
                return buf;
        }

        buf[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(time_units_out) && usec > 0; i++) {
                const unit *u = &time_units_out[i];
                int n;

                if (usec < u->factor)
                        continue;
                n = snprintf(buf + pos, len - pos, "%s%" PRIu64 "%s", pos > 0 ? " " : "",
                             usec / u->factor, u->name);
                if (n < 0 || (size_t) n >= len - pos)
                        break; /* truncated, but terminated */
                pos += (size_t) n;
                usec %= u->factor;
        }
        return buf;
}
