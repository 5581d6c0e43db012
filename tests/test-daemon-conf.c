/* SPDX-License-Identifier: MIT */
/* p3samd.conf: the value parsers, the defaults, a main file with drop-ins, resets, warnings,
 * errors that leave the running configuration alone, and the environment overrides. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "daemon-conf.h"
#include "parse-util.h"

/* The load succeeded, or the test fails with its message. */
#define CHECK_LOAD(path, c)                                                                    \
        do {                                                                                   \
                p3_err _e = {};                                                                \
                int _r = daemon_conf_load((path), (c), &_e);                                   \
                if (_r < 0) {                                                                  \
                        fprintf(stderr, "%s:%d: load failed: %s\n", __FILE__, __LINE__,        \
                                p3_err_msg(&_e, _r));                                          \
                        exit(EXIT_FAILURE);                                                    \
                }                                                                              \
        } while (0)

#define MSG_HAS(e, s)                                                                          \
        do {                                                                                   \
                if (!strstr((e)->msg, (s))) {                                                  \
                        fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n", __FILE__,      \
                                __LINE__, (e)->msg, (s));                                      \
                        exit(EXIT_FAILURE);                                                    \
                }                                                                              \
        } while (0)

static char *tmp_root;

/* ---- helpers ---- */

static char *path_join(const char *a, const char *b) {
        char *p;

        CHECK(asprintf(&p, "%s/%s", a, b) >= 0);
        return p;
}

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        CHECK(f);
        CHECK(fputs(text, f) >= 0);
        CHECK(fclose(f) == 0);
}

/* A fresh directory under the test's temporary root. */
static char *make_dir(const char *name) {
        char *p = path_join(tmp_root, name);

        CHECK(mkdir(p, 0755) == 0);
        return p;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

/* Runs daemon_conf_load() with stderr captured; returns what was written (malloc'd). */
static char *load_captured(const char *path, daemon_conf *c, p3_err *e, int *ret) {
        char *log = path_join(tmp_root, "stderr.log");
        char *text;
        long n;
        int saved, fd;
        FILE *f;

        fflush(stderr);
        saved = dup(STDERR_FILENO);
        fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        CHECK(saved >= 0 && fd >= 0);
        CHECK(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
        close(fd);
        *ret = daemon_conf_load(path, c, e);
        fflush(stderr);
        CHECK(dup2(saved, STDERR_FILENO) == STDERR_FILENO);
        close(saved);

        f = fopen(log, "re");
        CHECK(f);
        CHECK(fseek(f, 0, SEEK_END) == 0);
        n = ftell(f);
        rewind(f);
        text = calloc(1, (size_t) n + 1);
        CHECK(text);
        CHECK(fread(text, 1, (size_t) n, f) == (size_t) n);
        fclose(f);
        free(log);
        fputs(text, stderr); /* still visible in the test log */
        return text;
}

static void unset_env(void) {
        static const char *const vars[] = { "P3SAM_POINT_NUM", "P3SAM_PROMPT_NUM",
                                            "P3SAM_PROMPT_BS", "P3SAM_INFERENCE_POINT_NUM",
                                            "P3SAM_INFERENCE_PROMPT_NUM" };
        for (size_t i = 0; i < ELEMENTSOF(vars); i++)
                CHECK(unsetenv(vars[i]) == 0);
}

/* ---- parse-util ---- */

#define SEC USEC_PER_SEC
#define MINUTE (60 * SEC)
#define HOUR (60 * MINUTE)
#define DAY (24 * HOUR)

static void test_timespan(void) {
        static const struct {
                const char *s;
                uint64_t usec;
        } good[] = {
                { "0", 0 },
                { "5", 5 * SEC }, /* a bare number is seconds */
                { "5s", 5 * SEC },
                { "5sec", 5 * SEC },
                { "1second", SEC },
                { "2seconds", 2 * SEC },
                { "5min", 5 * MINUTE },
                { "5m", 5 * MINUTE },
                { "1minute", MINUTE },
                { "3minutes", 3 * MINUTE },
                { "2h", 2 * HOUR },
                { "2hr", 2 * HOUR },
                { "1hour", HOUR },
                { "3hours", 3 * HOUR },
                { "1d", DAY },
                { "2days", 2 * DAY },
                { "1w", 7 * DAY },
                { "2weeks", 14 * DAY },
                { "250ms", 250000 },
                { "250msec", 250000 },
                { "7us", 7 },
                { "7usec", 7 },
                { "1h 30min", HOUR + 30 * MINUTE },
                { "1min30s", 90 * SEC },
                { "1min30", 90 * SEC }, /* trailing bare number: seconds */
                { "1min 30", 90 * SEC },
                { "5 min", 5 * MINUTE },
                { "  10s  ", 10 * SEC },
                { "1.5h", 90 * MINUTE },
                { "0.5s", 500000 },
                { "1.000001s", 1000001 },
                { "1w 1d 1h 1min 1s 1ms 1us", 8 * DAY + HOUR + MINUTE + SEC + 1000 + 1 },
                { "infinity", USEC_INFINITY },
                { " infinity ", USEC_INFINITY },
                { "18446744073709551614us", UINT64_MAX - 1 },
        };
        static const struct {
                const char *s;
                int r;
        } bad[] = {
                { "", -EINVAL },
                { "   ", -EINVAL },
                { "-5s", -EINVAL },
                { "-1", -EINVAL },
                { "+5s", -EINVAL },
                { "5x", -EINVAL },
                { "abc", -EINVAL },
                { "5 min junk", -EINVAL },
                { "5mins", -EINVAL },
                { "5S", -EINVAL }, /* units are case-sensitive, as systemd's */
                { "1..5s", -EINVAL },
                { "5.s", -EINVAL },
                { ".5s", -EINVAL },
                { "infinity s", -EINVAL },
                { "1s infinity", -EINVAL },
                { "0x10", -EINVAL },
                { "18446744073709551616us", -ERANGE },
                { "18446744073709551615us", -ERANGE }, /* would read as infinity */
                { "30600000w", -ERANGE },
                { "100000000000000h", -ERANGE },
                { "18446744073709551615us 1us", -ERANGE },
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                uint64_t v = 12345;
                int r = parse_timespan_usec(good[i].s, &v);
                if (r < 0 || v != good[i].usec) {
                        fprintf(stderr, "timespan \"%s\": r=%d v=%" PRIu64 ", want %" PRIu64 "\n",
                                good[i].s, r, v, good[i].usec);
                        exit(EXIT_FAILURE);
                }
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                uint64_t v = 12345;
                int r = parse_timespan_usec(bad[i].s, &v);
                if (r != bad[i].r || v != 12345) {
                        fprintf(stderr, "timespan \"%s\": r=%d, want %d\n", bad[i].s, r, bad[i].r);
                        exit(EXIT_FAILURE);
                }
        }
}

static void test_format_timespan(void) {
        static const struct {
                uint64_t usec;
                const char *s;
        } table[] = {
                { 0, "0" },
                { 5 * MINUTE, "5min" },
                { 2 * SEC, "2s" },
                { HOUR + 30 * MINUTE, "1h 30min" },
                { 250000, "250ms" },
                { 1500000, "1s 500ms" },
                { 7, "7us" },
                { 8 * DAY + HOUR + 1, "1w 1d 1h 1us" },
                { USEC_INFINITY, "infinity" },
        };
        char buf[FORMAT_TIMESPAN_MAX], small[6];
        uint64_t x = 0x9e3779b97f4a7c15u;

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                format_timespan(buf, sizeof(buf), table[i].usec);
                if (strcmp(buf, table[i].s) != 0) {
                        fprintf(stderr, "format %" PRIu64 ": \"%s\", want \"%s\"\n",
                                table[i].usec, buf, table[i].s);
                        exit(EXIT_FAILURE);
                }
        }
        /* The longest output fits FORMAT_TIMESPAN_MAX. */
        format_timespan(buf, sizeof(buf), UINT64_MAX - 1);
        printf("longest time span: %s (%zu characters)\n", buf, strlen(buf));
        CHECK(strlen(buf) < sizeof(buf) - 1);
        /* A short buffer is cut, not overrun. */
        CHECK(format_timespan(small, sizeof(small), HOUR + 30 * MINUTE) == small);
        CHECK(strlen(small) < sizeof(small));

        /* What is written reads back the same, all magnitudes. */
        for (int i = 0; i < 10000; i++) {
                uint64_t v;

                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                v = x >> (i % 64);
                if (v == USEC_INFINITY)
                        continue;
                format_timespan(buf, sizeof(buf), v);
                uint64_t back = 0;
                CHECK(parse_timespan_usec(buf, &back) == 0);
                CHECK(back == v);
        }
}

static void test_size(void) {
        static const struct {
                const char *s;
                uint64_t bytes;
        } good[] = {
                { "0", 0 },
                { "4096", 4096 },
                { "100B", 100 },
                { "1K", 1024 },
                { "1KiB", 1024 },
                { "512M", UINT64_C(512) << 20 },
                { "512MiB", UINT64_C(512) << 20 },
                { "512 MiB", UINT64_C(512) << 20 },
                { "2G", UINT64_C(2) << 30 },
                { "2GiB", UINT64_C(2) << 30 },
                { "1T", UINT64_C(1) << 40 },
                { "3TiB", UINT64_C(3) << 40 },
                { "1.5G", UINT64_C(3) << 29 },
                { "0.5K", 512 },
                { " 64M ", UINT64_C(64) << 20 },
                { "infinity", UINT64_MAX },
        };
        static const struct {
                const char *s;
                int r;
        } bad[] = {
                { "", -EINVAL },         { "-1", -EINVAL },        { "-1G", -EINVAL },
                { "1X", -EINVAL },       { "1k", -EINVAL },        { "1KB", -EINVAL },
                { "1Ki", -EINVAL },      { "1.5", -EINVAL },       { "1.5B", -EINVAL },
                { "G", -EINVAL },        { "1G 1M", -EINVAL },     { "1G x", -EINVAL },
                { "16777216T", -ERANGE }, { "18446744073709551616", -ERANGE },
                { "18446744073709551615", -ERANGE },
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                uint64_t v = 1;
                int r = parse_size_bytes(good[i].s, &v);
                if (r < 0 || v != good[i].bytes) {
                        fprintf(stderr, "size \"%s\": r=%d v=%" PRIu64 "\n", good[i].s, r, v);
                        exit(EXIT_FAILURE);
                }
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                uint64_t v = 1;
                int r = parse_size_bytes(bad[i].s, &v);
                if (r != bad[i].r || v != 1) {
                        fprintf(stderr, "size \"%s\": r=%d, want %d\n", bad[i].s, r, bad[i].r);
                        exit(EXIT_FAILURE);
                }
        }
}

static void test_bool(void) {
        static const char *const yes[] = { "yes", "YES", "Yes", "true", "TRUE", "on", "On", "1",
                                           "y", "t" };
        static const char *const no[] = { "no", "NO", "false", "False", "off", "OFF", "0", "n",
                                          "f" };
        static const char *const bad[] = { "", "2", "yess", "enable", " yes", "-1", "nope" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                CHECK(parse_bool(yes[i]) == 1);
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                CHECK(parse_bool(no[i]) == 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                CHECK(parse_bool(bad[i]) == -EINVAL);
        CHECK(parse_bool(NULL) == -EINVAL);
}

static void test_ranges(void) {
        uint64_t u = 7;
        double d = 7;

        CHECK(parse_u64_range("16", 16, 100, &u) == 0 && u == 16);
        CHECK(parse_u64_range("100", 16, 100, &u) == 0 && u == 100);
        CHECK(parse_u64_range("007", 0, 100, &u) == 0 && u == 7);
        CHECK(parse_u64_range("18446744073709551615", 0, UINT64_MAX, &u) == 0 && u == UINT64_MAX);
        u = 7;
        CHECK(parse_u64_range("15", 16, 100, &u) == -ERANGE && u == 7);
        CHECK(parse_u64_range("101", 16, 100, &u) == -ERANGE);
        CHECK(parse_u64_range("18446744073709551616", 0, UINT64_MAX, &u) == -ERANGE);
        CHECK(parse_u64_range("-1", 0, 100, &u) == -EINVAL);
        CHECK(parse_u64_range("+1", 0, 100, &u) == -EINVAL);
        CHECK(parse_u64_range("0x10", 0, 100, &u) == -EINVAL);
        CHECK(parse_u64_range("1e3", 0, 10000, &u) == -EINVAL);
        CHECK(parse_u64_range(" 5", 0, 100, &u) == -EINVAL);
        CHECK(parse_u64_range("5 ", 0, 100, &u) == -EINVAL);
        CHECK(parse_u64_range("", 0, 100, &u) == -EINVAL);
        CHECK(u == 7);

        CHECK(parse_double_range("0.95", 0, 1, &d) == 0 && d == 0.95);
        CHECK(parse_double_range("1", 0, 1, &d) == 0 && d == 1.0);
        CHECK(parse_double_range("1e-3", 0, 1, &d) == 0 && d == 1e-3);
        CHECK(parse_double_range(".5", 0, 1, &d) == 0 && d == 0.5);
        CHECK(parse_double_range("-0.5", -1, 1, &d) == 0 && d == -0.5);
        d = 7;
        CHECK(parse_double_range("0", nextafter(0.0, 1.0), 1, &d) == -ERANGE); /* (0, 1] */
        CHECK(parse_double_range("1.0001", 0, 1, &d) == -ERANGE);
        CHECK(parse_double_range("1e999", 0, INFINITY, &d) == -ERANGE);
        CHECK(parse_double_range("nan", 0, 1, &d) == -EINVAL);
        CHECK(parse_double_range("inf", 0, 1, &d) == -EINVAL);
        CHECK(parse_double_range("0x1p-1", 0, 1, &d) == -EINVAL);
        CHECK(parse_double_range("0,5", 0, 1, &d) == -EINVAL);
        CHECK(parse_double_range("0.5.5", 0, 1, &d) == -EINVAL);
        CHECK(parse_double_range("", 0, 1, &d) == -EINVAL);
        CHECK(parse_double_range(" 0.5", 0, 1, &d) == -EINVAL);
        CHECK(d == 7);
}

/* ---- daemon-conf ---- */

static void check_defaults(const daemon_conf *c) {
        daemon_segment_defaults g, p;

        CHECK(strcmp(c->model_path, "/var/lib/p3sam/p3sam.safetensors") == 0);
        CHECK(c->model_config == NULL);
        CHECK(c->backend == DAEMON_BACKEND_AUTO);
        CHECK(c->precision == DAEMON_PRECISION_AUTO);
        CHECK(c->threads == 0);
        CHECK(c->gpu_memory_max == UINT64_C(1) << 30);
        CHECK(c->idle_timeout_usec == 5 * MINUTE);
        CHECK(c->queue_max == 16);
        CHECK(c->queue_per_user_max == 4);
        CHECK(c->job_timeout_usec == 0);
        CHECK(strcmp(c->allow_group, "p3sam") == 0);
        CHECK(c->job_linger_usec == 60 * SEC);
        CHECK(c->max_mesh_bytes == UINT64_C(512) << 20);
        CHECK(c->max_points == 200000);
        CHECK(c->max_prompts == 1000);
        CHECK(!c->points_set && !c->prompts_set);

        daemon_conf_segment_defaults(c, false, &g);
        /* prompt batch 0: auto, the engine's choice for the backend */
        CHECK(g.points == 100000 && g.prompts == 400 && g.prompt_batch == 0 && g.seed == 42 &&
              !g.post_process && g.threshold == 0.95);
        daemon_conf_segment_defaults(c, true, &p);
        CHECK(p.points == 20000 && p.prompts == 64 && p.prompt_batch == 0 && p.seed == 42 &&
              !p.post_process && p.threshold == 0.95);
}

static void test_defaults(void) {
        daemon_conf c;
        char *missing = path_join(tmp_root, "no-such.conf");

        daemon_conf_init(&c);
        check_defaults(&c);
        daemon_conf_done(&c);
        daemon_conf_done(&c); /* twice is harmless */

        /* No main file, no drop-in directory: the defaults. */
        daemon_conf_init(&c);
        CHECK_LOAD(missing, &c);
        check_defaults(&c);
        daemon_conf_done(&c);
        free(missing);

        CHECK(strcmp(daemon_backend_to_string(DAEMON_BACKEND_CUDA), "cuda") == 0);
        CHECK(strcmp(daemon_precision_to_string(DAEMON_PRECISION_FP32), "fp32") == 0);
        CHECK(strcmp(daemon_precision_to_string(DAEMON_PRECISION_AUTO), "auto") == 0);
        CHECK(strcmp(daemon_precision_to_string(DAEMON_PRECISION_BF16), "bf16") == 0);
        CHECK(daemon_backend_to_string(_DAEMON_BACKEND_MAX) == NULL);
}

/* tests/data/conf: a main file and two drop-ins, plus a hidden one and a README to skip. */
static void test_dropins(void) {
        const char *data = getenv("P3_TEST_DATA");
        daemon_segment_defaults g, p;
        daemon_conf c = {};
        char *main_path;

        CHECK(data);
        main_path = path_join(data, "conf/p3samd.conf");
        CHECK_LOAD(main_path, &c);

        CHECK(strcmp(c.model_path, "/srv/models/second.safetensors") == 0); /* 20- wins */
        CHECK(c.backend == DAEMON_BACKEND_CUDA);                             /* main */
        CHECK(c.precision == DAEMON_PRECISION_FP32);                         /* 10- */
        CHECK(c.threads == 8);
        CHECK(c.idle_timeout_usec == 5 * MINUTE); /* 10min, 1h 30min, then reset by 20- */
        CHECK(c.queue_max == 32);              /* not 1: README and .30-hidden are skipped */
        CHECK(c.queue_per_user_max == 8);
        CHECK(c.job_timeout_usec == 2 * HOUR);
        CHECK(c.max_mesh_bytes == UINT64_C(256) << 20);
        CHECK(c.points_set && !c.prompts_set);

        daemon_conf_segment_defaults(&c, false, &g);
        daemon_conf_segment_defaults(&c, true, &p);
        CHECK(g.points == 50000 && p.points == 50000); /* explicit PointNum=: both backends */
        CHECK(g.prompts == 400 && p.prompts == 64);    /* not given: each its own */
        CHECK(g.seed == 7 && p.seed == 7);
        CHECK(g.threshold == 0.5 && p.threshold == 0.5);
        CHECK(g.post_process && p.post_process);

        daemon_conf_done(&c);
        free(main_path);
}

/* --config FILE: FILE then FILE.d/ *.conf, in strcmp() order, skipping what is no file. */
static void test_config_option(void) {
        char *dir = make_dir("option");
        char *main_path = path_join(dir, "custom.conf");
        char *dropins = path_join(dir, "custom.conf.d");
        char *p;
        daemon_conf c = {};

        /* Drop-ins alone, without the main file, still apply. */
        CHECK(mkdir(dropins, 0755) == 0);
        /* strcmp() order: "10-" < "9-" < "A-" < "a-" (not the numeric or the locale's). */
        p = path_join(dropins, "9-b.conf");
        write_file(p, "[Daemon]\nQueueMax=9\nQueuePerUserMax=2\n");
        free(p);
        p = path_join(dropins, "10-a.conf");
        write_file(p, "[Daemon]\nQueueMax=10\nAllowGroup=ten\n");
        free(p);
        p = path_join(dropins, "A-upper.conf");
        write_file(p, "[Daemon]\nAllowGroup=upper\n");
        free(p);
        p = path_join(dropins, "a-lower.conf");
        write_file(p, "[Daemon]\nAllowGroup=lower\nJobLingerSec=90\n");
        free(p);
        /* Not read: a directory with the suffix, a drop-in masked by /dev/null, a dangling
         * link, another suffix. */
        p = path_join(dropins, "b-dir.conf");
        CHECK(mkdir(p, 0755) == 0);
        free(p);
        p = path_join(dropins, "c-masked.conf");
        CHECK(symlink("/dev/null", p) == 0);
        free(p);
        p = path_join(dropins, "d-dangling.conf");
        CHECK(symlink("/nonexistent/p3samd-test.conf", p) == 0);
        free(p);
        p = path_join(dropins, "e-other.conf.bak");
        write_file(p, "[Daemon]\nQueueMax=1\n");
        free(p);
        /* A symlink to a real file is read. */
        p = path_join(dir, "target.conf");
        write_file(p, "[Daemon]\nMaxMeshSize=1G\n");
        free(p);
        p = path_join(dropins, "f-link.conf");
        CHECK(symlink("../target.conf", p) == 0);
        free(p);

        CHECK_LOAD(main_path, &c);
        CHECK(c.queue_max == 9);
        CHECK(c.queue_per_user_max == 2);
        CHECK(strcmp(c.allow_group, "lower") == 0);
        CHECK(c.job_linger_usec == 90 * SEC);
        CHECK(c.max_mesh_bytes == UINT64_C(1) << 30);

        /* With the main file: it comes first, the drop-ins override it. */
        write_file(main_path, "[Daemon]\nQueueMax=100\nIdleTimeoutSec=0\nJobLingerSec=5\n");
        CHECK_LOAD(main_path, &c);
        CHECK(c.queue_max == 9);
        CHECK(c.idle_timeout_usec == 0);
        CHECK(c.job_linger_usec == 90 * SEC);

        /* A main file that is a directory is an error, named. */
        {
                char *d = path_join(dir, "isdir.conf");
                p3_err e = {};

                CHECK(mkdir(d, 0755) == 0);
                CHECK(daemon_conf_load(d, &c, &e) < 0);
                MSG_HAS(&e, d);
                free(d);
        }

        daemon_conf_done(&c);
        free(main_path);
        free(dropins);
        free(dir);
}

/* An empty value puts the default back, whatever the key's type. */
static void test_reset(void) {
        char *dir = make_dir("reset");
        char *main_path = path_join(dir, "p3samd.conf");
        char *dropins = path_join(dir, "p3samd.conf.d");
        char *p = path_join(dropins, "50-reset.conf");
        daemon_conf c = {};

        write_file(main_path, "[Model]\nPath=/x/y.safetensors\nConfig=/x/config.json\n"
                              "Backend=cpu\nPrecision=fp32\nThreads=3\nGpuMemoryMax=4G\n"
                              "[Daemon]\nIdleTimeoutSec=1s\nQueueMax=2\nQueuePerUserMax=1\n"
                              "JobTimeoutSec=1s\nAllowGroup=other\nJobLingerSec=1s\n"
                              "MaxMeshSize=1M\n"
                              "[Segment]\nPointNum=1000\nPromptNum=10\nPromptBatch=2\nSeed=1\n"
                              "PostProcess=on\nThreshold=0.1\nMaxPointNum=5000\n"
                              "MaxPromptNum=50\nCpuPointNum=500\nCpuPromptNum=5\n");
        CHECK(mkdir(dropins, 0755) == 0);
        CHECK_LOAD(main_path, &c);
        CHECK(strcmp(c.model_config, "/x/config.json") == 0);
        CHECK(c.backend == DAEMON_BACKEND_CPU && c.threads == 3 && c.queue_max == 2);
        CHECK(c.points_set && c.prompts_set && c.cpu.points == 500);
        CHECK(c.gpu.prompt_batch == 2 && c.cpu.prompt_batch == 2 && c.cpu.seed == 1);
        write_file(p, "[Segment]\nPromptBatch=auto\n"); /* a drop-in back to auto */
        CHECK_LOAD(main_path, &c);
        CHECK(c.gpu.prompt_batch == 0 && c.cpu.prompt_batch == 0);

        write_file(p, "[Model]\nPath=\nConfig=\nBackend=\nPrecision=\nThreads=\nGpuMemoryMax=\n"
                      "[Daemon]\nIdleTimeoutSec=\nQueueMax=\nQueuePerUserMax=\nJobTimeoutSec=\n"
                      "AllowGroup=\nJobLingerSec=\nMaxMeshSize=\n"
                      "[Segment]\nPointNum=\nPromptNum=\nPromptBatch=\nSeed=\nPostProcess=\n"
                      "Threshold=\nMaxPointNum=\nMaxPromptNum=\nCpuPointNum=\nCpuPromptNum=\n");
        CHECK_LOAD(main_path, &c);
        check_defaults(&c);

        daemon_conf_done(&c);
        free(p);
        free(dropins);
        free(main_path);
        free(dir);
}

/* Unknown sections and keys are warned about, naming file:line, and the rest loads. So do
 * the line syntaxes inih and systemd share. */
static void test_unknown_and_syntax(void) {
        char *dir = make_dir("unknown");
        char *main_path = path_join(dir, "p3samd.conf");
        daemon_conf c = {};
        p3_err e = {};
        char *log, *want;
        int r;

        write_file(main_path, "\xef\xbb\xbf# a BOM, then comments\n"
                              "; semicolon comment\n"
                              "Orphan=1\n"
                              "[Daemon]\r\n"
                              "QueueMax=20\r\n"
                              "Bogus=1\n"
                              "queuemax=3\n" /* keys are case-sensitive */
                              "[Future]\n"
                              "Thing=yes\n"
                              "[Segment]\n"
                              "  Seed = 9\n"     /* indented: an ordinary line, not a continuation */
                              "\tThreshold=0.25\n"
                              "\n"
                              "MaxPointNum = 300000\n"
                              "PointNum=250000 ; inline comment, as inih allows\n"
                              "PromptNum=5\n"
                              "PromptNum=6\n"); /* duplicates: the last wins */
        log = load_captured(main_path, &c, &e, &r);
        if (r < 0)
                fprintf(stderr, "load: %s\n", p3_err_msg(&e, r));
        CHECK(r == 0);
        CHECK(c.queue_max == 20);
        CHECK(c.gpu.seed == 9 && c.cpu.seed == 9);
        CHECK(c.gpu.threshold == 0.25);
        CHECK(c.max_points == 300000 && c.gpu.points == 250000);
        CHECK(c.gpu.prompts == 6);

        CHECK(asprintf(&want, "<4>%s:3: Orphan= outside of any section, ignoring\n",
                       main_path) >= 0);
        CHECK(strstr(log, want));
        free(want);
        CHECK(asprintf(&want, "<4>%s:6: unknown key Bogus in [Daemon], ignoring\n",
                       main_path) >= 0);
        CHECK(strstr(log, want));
        free(want);
        CHECK(asprintf(&want, "<4>%s:7: unknown key queuemax in [Daemon], ignoring\n",
                       main_path) >= 0);
        CHECK(strstr(log, want));
        free(want);
        CHECK(asprintf(&want, "<4>%s:9: unknown section [Future], ignoring key Thing\n",
                       main_path) >= 0);
        CHECK(strstr(log, want));
        free(want);
        free(log);

        daemon_conf_done(&c);
        free(main_path);
        free(dir);
}

/* A failing load names where and what, and leaves the configuration it was given alone. */
static void check_load_fails(const char *text, int want_r, const char *const *want_parts) {
        char *dir = path_join(tmp_root, "bad");
        char *main_path = path_join(dir, "p3samd.conf");
        char *good = path_join(dir, "good.conf");
        daemon_conf c = {}, before;
        p3_err e = {};
        char *log;
        int r;

        write_file(good, "[Model]\nPath=/good/model.safetensors\n[Daemon]\nQueueMax=7\n");
        CHECK_LOAD(good, &c);
        memcpy(&before, &c, sizeof(c));

        write_file(main_path, text);
        log = load_captured(main_path, &c, &e, &r);
        free(log);
        if (r != want_r) {
                fprintf(stderr, "load of \"%s\": r=%d, want %d (%s)\n", text, r, want_r, e.msg);
                exit(EXIT_FAILURE);
        }
        printf("as expected: %s\n", e.msg);
        MSG_HAS(&e, main_path);
        for (; *want_parts; want_parts++)
                MSG_HAS(&e, *want_parts);
        /* Untouched: the same strings (not even reallocated) and values. */
        CHECK(memcmp(&c, &before, sizeof(c)) == 0);
        CHECK(strcmp(c.model_path, "/good/model.safetensors") == 0 && c.queue_max == 7);

        daemon_conf_done(&c);
        CHECK(unlink(main_path) == 0 && unlink(good) == 0);
        free(good);
        free(main_path);
        free(dir);
}

static void test_bad_values(void) {
        static const struct {
                const char *text;
                int r;
                const char *parts[4];
        } table[] = {
                { "[Model]\nBackend=tpu\n", -EINVAL, { ":2:", "[Model] Backend=tpu", "cuda" } },
                { "[Model]\nPrecision=bf32\n", -EINVAL, { ":2:", "Precision=bf32" } },
                { "[Model]\nPath=relative/model\n", -EINVAL, { "Path=relative/model", "absolute" } },
                { "[Model]\nConfig=x.json\n", -EINVAL, { "Config=x.json" } },
                { "[Model]\nThreads=1025\n", -ERANGE, { "Threads=1025", "0 to 1024" } },
                { "[Model]\nThreads=-1\n", -EINVAL, { "Threads=-1" } },
                { "[Model]\nGpuMemoryMax=63M\n", -ERANGE, { "GpuMemoryMax=63M", "at least 64M" } },
                { "[Model]\nGpuMemoryMax=lots\n", -EINVAL, { "GpuMemoryMax=lots" } },
                { "[Daemon]\nIdleTimeoutSec=5 parsecs\n", -EINVAL, { "[Daemon] IdleTimeoutSec=5 parsecs" } },
                { "[Daemon]\nJobTimeoutSec=-1\n", -EINVAL, { "JobTimeoutSec=-1" } },
                { "[Daemon]\nJobLingerSec=99999999999999999999\n", -ERANGE, { "JobLingerSec=" } },
                { "[Daemon]\nQueueMax=0\n", -ERANGE, { "QueueMax=0", "1 to 1024" } },
                { "[Daemon]\nQueueMax=1025\n", -ERANGE, { "QueueMax=1025" } },
                { "[Daemon]\nQueueMax=ten\n", -EINVAL, { "QueueMax=ten" } },
                { "[Daemon]\nQueuePerUserMax=0\n", -ERANGE, { "QueuePerUserMax=0" } },
                { "[Daemon]\nAllowGroup=two words\n", -EINVAL, { "AllowGroup=two words" } },
                { "[Daemon]\nAllowGroup=-dash\n", -EINVAL, { "AllowGroup=-dash" } },
                { "[Daemon]\nMaxMeshSize=0\n", -ERANGE, { "MaxMeshSize=0", "at least 1B" } },
                { "[Segment]\nPointNum=15\n", -ERANGE, { "[Segment] PointNum=15" } },
                { "[Segment]\nPointNum=1e5\n", -EINVAL, { "PointNum=1e5" } },
                { "[Segment]\nPromptNum=0\n", -ERANGE, { "PromptNum=0" } },
                { "[Segment]\nPromptBatch=4097\n", -ERANGE,
                  { "PromptBatch=4097", "1 to 4096, or auto" } },
                { "[Segment]\nPromptBatch=0\n", -ERANGE, { "PromptBatch=0", "or auto" } },
                { "[Segment]\nPromptBatch=Auto\n", -EINVAL, { "PromptBatch=Auto" } },
                { "[Segment]\nSeed=-3\n", -EINVAL, { "Seed=-3" } },
                { "[Segment]\nSeed=18446744073709551616\n", -ERANGE, { "Seed=" } },
                { "[Segment]\nPostProcess=maybe\n", -EINVAL, { "PostProcess=maybe", "yes or no" } },
                { "[Segment]\nThreshold=0\n", -ERANGE, { "Threshold=0" } },
                { "[Segment]\nThreshold=1.5\n", -ERANGE, { "Threshold=1.5" } },
                { "[Segment]\nThreshold=nan\n", -EINVAL, { "Threshold=nan" } },
                { "[Segment]\nMaxPointNum=8\n", -ERANGE, { "MaxPointNum=8" } },
                /* One bound with the engine: what p3_pipeline_params_check() would refuse
                 * cannot be configured as allowed. */
                { "[Segment]\nMaxPointNum=10000001\n", -ERANGE,
                  { "MaxPointNum=10000001", "16 to 10000000" } },
                { "[Segment]\nCpuPromptNum=x\n", -EINVAL, { "CpuPromptNum=x" } },
                /* The first bad value wins, even with more after it. */
                { "[Daemon]\nQueueMax=4\nQueueMax=zero\nQueueMax=zilch\n", -EINVAL, { ":3:", "QueueMax=zero" } },
                /* Bounds across keys, whatever the order of the keys. */
                { "[Daemon]\nQueuePerUserMax=8\nQueueMax=4\n", -ERANGE,
                  { ":2:", "QueuePerUserMax=8 is above QueueMax=4" } },
                { "[Daemon]\nQueueMax=2\n", -ERANGE,
                  { ":2:", "QueueMax=2 is below the default QueuePerUserMax=4" } },
                { "[Segment]\nPointNum=200001\n", -ERANGE,
                  { ":2:", "PointNum=200001 is above MaxPointNum=200000" } },
                { "[Segment]\nPromptNum=1001\n", -ERANGE, { "PromptNum=1001 is above MaxPromptNum=1000" } },
                { "[Segment]\nCpuPointNum=300000\n", -ERANGE, { "CpuPointNum=300000 is above" } },
                { "[Segment]\nMaxPointNum=50000\n", -ERANGE,
                  { ":2:", "MaxPointNum=50000 is below the default PointNum=100000" } },
                { "[Segment]\nCpuPointNum=150000\nMaxPointNum=120000\n", -ERANGE,
                  { ":2:", "CpuPointNum=150000 is above MaxPointNum=120000" } },
                { "[Segment]\nMaxPromptNum=100\n", -ERANGE, { "MaxPromptNum=100 is below the default PromptNum=400" } },
                /* Lines inih cannot read. */
                { "[Daemon]\nQueueMax 4\n", -EBADMSG, { ":2:", "Key=Value" } },
                { "[Daemon\nQueueMax=4\n", -EBADMSG, { ":1:" } },
                { "[Daemon]\n=4\n", -EBADMSG, { ":2:", "key name" } },
                { "[Daemon]\nQueueMax=4\n  continued\n", -EBADMSG, { ":3:" } },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                check_load_fails(table[i].text, table[i].r, table[i].parts);
}

/* inih reads lines into a fixed buffer; a longer one is an error, not a silently cut value. */
static void test_long_line(void) {
        static const char *const parts[] = { ":3:", "longer than", NULL };
        char text[512], ok[256];

        snprintf(text, sizeof(text), "[Model]\n# fine\nPath=/%0300d\n", 0);
        check_load_fails(text, -E2BIG, parts);

        /* 198 characters still fit. */
        {
                char *dir = make_dir("long");
                char *main_path = path_join(dir, "p3samd.conf");
                daemon_conf c = {};

                snprintf(ok, sizeof(ok), "Path=/%0192d", 0);
                CHECK(strlen(ok) == 198);
                snprintf(text, sizeof(text), "[Model]\n%s\n", ok);
                write_file(main_path, text);
                CHECK_LOAD(main_path, &c);
                CHECK(strlen(c.model_path) == 193);
                daemon_conf_done(&c);
                free(main_path);
                free(dir);
        }
}

/* A fake environment for daemon_conf_apply_env(). */
static const char *fake_env[5][2];

static const char *fake_get(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(fake_env) && fake_env[i][0]; i++)
                if (strcmp(fake_env[i][0], name) == 0)
                        return fake_env[i][1];
        return NULL;
}

static void set_fake_env(const char *const *pairs) {
        memset(fake_env, 0, sizeof(fake_env));
        for (size_t i = 0; pairs[0]; pairs += 2, i++) {
                fake_env[i][0] = pairs[0];
                fake_env[i][1] = pairs[1];
        }
}

static void test_env(void) {
        daemon_segment_defaults g, p;
        daemon_conf c, before;
        p3_err e = {};

        daemon_conf_init(&c);

        /* Nothing set: nothing changes. */
        set_fake_env((const char *const[]) { NULL });
        CHECK(daemon_conf_apply_env(&c, fake_get, &e) == 0);
        check_defaults(&c);

        /* The plain variables set both backends. */
        set_fake_env((const char *const[]) { "P3SAM_POINT_NUM", "10000", "P3SAM_PROMPT_NUM", "50",
                                              "P3SAM_PROMPT_BS", "2", NULL });
        CHECK(daemon_conf_apply_env(&c, fake_get, &e) == 0);
        daemon_conf_segment_defaults(&c, false, &g);
        daemon_conf_segment_defaults(&c, true, &p);
        CHECK(g.points == 10000 && p.points == 10000);
        CHECK(g.prompts == 50 && p.prompts == 50);
        CHECK(g.prompt_batch == 2 && p.prompt_batch == 2);
        CHECK(c.points_set && c.prompts_set);
        daemon_conf_done(&c);

        /* Both set: the INFERENCE_ variant wins, each quantity on its own. */
        daemon_conf_init(&c);
        set_fake_env((const char *const[]) { "P3SAM_POINT_NUM", "10000",
                                              "P3SAM_INFERENCE_POINT_NUM", "15000",
                                              "P3SAM_PROMPT_NUM", "50", NULL });
        CHECK(daemon_conf_apply_env(&c, fake_get, &e) == 0);
        daemon_conf_segment_defaults(&c, true, &p);
        CHECK(p.points == 15000 && p.prompts == 50);
        daemon_conf_done(&c);

        daemon_conf_init(&c);
        set_fake_env((const char *const[]) { "P3SAM_INFERENCE_PROMPT_NUM", "75",
                                              "P3SAM_PROMPT_NUM", "50", NULL });
        CHECK(daemon_conf_apply_env(&c, fake_get, &e) == 0);
        daemon_conf_segment_defaults(&c, false, &g);
        daemon_conf_segment_defaults(&c, true, &p);
        CHECK(g.prompts == 75 && p.prompts == 75);
        CHECK(!c.points_set && g.points == 100000 && p.points == 20000); /* points untouched */
        daemon_conf_done(&c);

        /* An INFERENCE_ variable alone applies too; empty ones are unset ones. */
        daemon_conf_init(&c);
        set_fake_env((const char *const[]) { "P3SAM_INFERENCE_POINT_NUM", "30000",
                                              "P3SAM_POINT_NUM", "", "P3SAM_PROMPT_BS", "", NULL });
        CHECK(daemon_conf_apply_env(&c, fake_get, &e) == 0);
        daemon_conf_segment_defaults(&c, true, &p);
        CHECK(p.points == 30000 && p.prompt_batch == 0);
        daemon_conf_done(&c);

        /* Bad values name the variable and change nothing, even the good ones before. */
        static const struct {
                const char *name, *value, *want;
        } bad[] = {
                { "P3SAM_POINT_NUM", "lots", "P3SAM_POINT_NUM=lots" },
                { "P3SAM_POINT_NUM", "8", "P3SAM_POINT_NUM=8" },
                { "P3SAM_POINT_NUM", "200001", "16 to 200000" }, /* capped by MaxPointNum= */
                { "P3SAM_INFERENCE_POINT_NUM", "-5", "P3SAM_INFERENCE_POINT_NUM=-5" },
                { "P3SAM_PROMPT_NUM", "0", "P3SAM_PROMPT_NUM=0" },
                { "P3SAM_INFERENCE_PROMPT_NUM", "1001", "P3SAM_INFERENCE_PROMPT_NUM=1001" },
                { "P3SAM_PROMPT_BS", "5000", "P3SAM_PROMPT_BS=5000" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                p3_err e2 = {};
                int r;

                daemon_conf_init(&c);
                memcpy(&before, &c, sizeof(c));
                /* The bad one first: fake_get() returns the first of a name. */
                set_fake_env((const char *const[]) { bad[i].name, bad[i].value,
                                                      "P3SAM_PROMPT_BS", "3", NULL });
                r = daemon_conf_apply_env(&c, fake_get, &e2);
                CHECK(r == -EINVAL || r == -ERANGE);
                printf("as expected: %s\n", e2.msg);
                MSG_HAS(&e2, "environment variable");
                MSG_HAS(&e2, bad[i].want);
                CHECK(memcmp(&c, &before, sizeof(c)) == 0);
                daemon_conf_done(&c);
        }
}

/* daemon_conf_load() applies the real environment after the files, checked against the
 * files' MaxPointNum=. */
static void test_env_load(void) {
        char *dir = make_dir("envload");
        char *main_path = path_join(dir, "p3samd.conf");
        daemon_segment_defaults p;
        daemon_conf c = {};
        p3_err e = {};
        char *log;
        int r;

        write_file(main_path, "[Segment]\nPointNum=40000\nCpuPointNum=1000\nMaxPointNum=400000\n"
                              "PromptBatch=8\n");
        CHECK(setenv("P3SAM_POINT_NUM", "300000", 1) == 0);
        CHECK(setenv("P3SAM_PROMPT_BS", "4", 1) == 0);
        log = load_captured(main_path, &c, &e, &r);
        CHECK(r == 0);
        daemon_conf_segment_defaults(&c, true, &p);
        CHECK(p.points == 300000 && p.prompt_batch == 4 && c.gpu.prompt_batch == 4);
        /* CpuPointNum= beside an explicit PointNum= is dead, and said so. */
        CHECK(strstr(log, ":3: [Segment] CpuPointNum= has no effect"));
        free(log);

        /* A bad variable fails the load, which leaves the conf alone. */
        CHECK(setenv("P3SAM_INFERENCE_POINT_NUM", "500000", 1) == 0);
        daemon_conf before;
        memcpy(&before, &c, sizeof(c));
        CHECK(daemon_conf_load(main_path, &c, &e) == -ERANGE);
        MSG_HAS(&e, "P3SAM_INFERENCE_POINT_NUM=500000");
        CHECK(memcmp(&c, &before, sizeof(c)) == 0);
        unset_env();

        daemon_conf_done(&c);
        free(main_path);
        free(dir);
}

int main(void) {
        const char *tmp = getenv("TMPDIR");

        unset_env();
        CHECK(asprintf(&tmp_root, "%s/test-daemon-conf.XXXXXX", tmp ? tmp : "/tmp") >= 0);
        CHECK(mkdtemp(tmp_root));
        free(make_dir("bad"));

        test_timespan();
        test_format_timespan();
        test_size();
        test_bool();
        test_ranges();
        test_defaults();
        test_dropins();
        test_config_option();
        test_reset();
        test_unknown_and_syntax();
        test_bad_values();
        test_long_line();
        test_env();
        test_env_load();

        CHECK(nftw(tmp_root, remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0);
        free(tmp_root);
        printf("all daemon-conf tests passed\n");
        return EXIT_SUCCESS;
}
