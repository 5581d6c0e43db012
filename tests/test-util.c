/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <time.h>

#include "test-util.h"
#include "weights.h"

int test_failures;

uint64_t test_rnd_u64(uint64_t *state) {
        uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

double test_rnd_unit(uint64_t *state) {
        return (double) (test_rnd_u64(state) >> 11) * 0x1p-53;
}

double test_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
}

#include <math.h>
#include <string.h>
#include <unistd.h>

static char *join(const char *dir, const char *rel) {
        char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, rel) < 0)
                abort();
        return p;
}

char *test_data_path(const char *rel) {
        const char *d = getenv("P3_TEST_DATA");
        return join(d ? d : "tests/data", rel);
}

char *test_shared_path(const char *rel) {
        const char *d = getenv("P3_SHARED");
        char *p = join(d ? d : "../shared", rel);
        if (access(p, R_OK) < 0) {
                free(p);
                return NULL;
        }
        return p;
}

/* tests/data/<data_rel> if it is there, else ../shared/<shared_rel>. */
static char *data_or_shared(const char *data_rel, const char *shared_rel) {
        if (data_rel) {
                char *p = test_data_path(data_rel);
                if (access(p, R_OK) == 0)
                        return p;
                free(p);
        }
        return test_shared_path(shared_rel);
}

char *test_golden_case(const char *name) {
        char rel[96];
        snprintf(rel, sizeof(rel), "golden/%s/case.safetensors", name);
        return data_or_shared(strcmp(name, "tiny") == 0 ? "tiny_case.safetensors" : NULL, rel);
}

char *test_replay_path(const char *name) {
        char rel[128];
        snprintf(rel, sizeof(rel), "golden/pipeline/%s/replay.safetensors", name);
        return data_or_shared(strcmp(name, "small_truck_20k_64") == 0
                                      ? "small_truck_replay.safetensors"
                                      : NULL,
                              rel);
}

_Noreturn void test_skip(const char *why) {
        printf("SKIP: %s\n", why);
        exit(EXIT_TEST_SKIP);
}

st_file *test_open(const char *path) {
        st_file *f = NULL;
        p3_err err = {};
        int r = st_open(path, &f, &err);
        if (r < 0) {
                fprintf(stderr, "cannot open %s: %s\n", path, p3_err_msg(&err, r));
                exit(EXIT_FAILURE);
        }
        return f;
}

static const st_tensor *need(const st_file *f, const char *name) {
        const st_tensor *t = st_find(f, name);
        if (!t) {
                fprintf(stderr, "%s: no tensor %s\n", f->path, name);
                exit(EXIT_FAILURE);
        }
        return t;
}

float *test_f32(const st_file *f, const char *name, int64_t *numel) {
        const st_tensor *t = need(f, name);
        float *d = malloc(sizeof(float) * (t->numel ? t->numel : 1));
        CHECK(d);
        CHECK_OK(st_to_f32(t, d));
        if (numel)
                *numel = t->numel;
        return d;
}

int64_t *test_i64(const st_file *f, const char *name, int64_t *numel) {
        const st_tensor *t = need(f, name);
        int64_t *d = malloc(sizeof(int64_t) * (t->numel ? t->numel : 1));
        CHECK(d);
        CHECK_OK(st_to_i64(t, d));
        if (numel)
                *numel = t->numel;
        return d;
}

bool test_close_f32(const char *what, const float *got, const float *ref, int64_t n, double rel,
                    double abs) {
        double maxref = 0, maxdiff = 0;
        int64_t worst = 0;
        for (int64_t i = 0; i < n; i++) {
                double d = fabs((double) got[i] - (double) ref[i]);
                if (fabs(ref[i]) > maxref)
                        maxref = fabs(ref[i]);
                if (!(d <= maxdiff)) { /* also catches NaN */
                        maxdiff = isnan(d) ? INFINITY : d;
                        worst = i;
                }
        }
        double tol = rel * maxref + abs;
        bool ok = maxdiff <= tol;
        printf("%-28s n=%-9lld max|ref|=%.4g max|diff|=%.3g (rel %.3g) tol=%.3g %s\n", what,
               (long long) n, maxref, maxdiff, maxref > 0 ? maxdiff / maxref : maxdiff, tol,
               ok ? "ok" : "FAIL");
        if (!ok)
                printf("  worst at %lld: got %.9g ref %.9g\n", (long long) worst, got[worst],
                       ref[worst]);
        return ok;
}

bool test_equal_i64(const char *what, const int64_t *got, const int64_t *ref, int64_t n) {
        for (int64_t i = 0; i < n; i++)
                if (got[i] != ref[i]) {
                        printf("%-28s n=%-9lld first difference at %lld: got %lld ref %lld FAIL\n",
                               what, (long long) n, (long long) i, (long long) got[i],
                               (long long) ref[i]);
                        return false;
                }
        printf("%-28s n=%-9lld exact ok\n", what, (long long) n);
        return true;
}

void test_cloud(int64_t n, double *pts, double *normals) {
        uint64_t s = 12345;
        for (int64_t i = 0; i < 3 * n; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                pts[i] = (double) (s >> 11) * 0x1p-53;
                normals[i] = i % 3 == 2;
        }
}

void test_tiny_config(p3_config *cfg) {
        char *path = test_data_path("tiny_config.json");
        p3_err err = {};
        CHECK_OK(p3_config_load(path, cfg, &err));
        free(path);
}

p3_weights *test_synth_weights(const p3_config *cfg) {
        p3_weights *w = NULL;
        p3_err err = {};
        CHECK_OK(p3_weights_synth(cfg, &w, &err));
        return w;
}
