/* SPDX-License-Identifier: MIT */
/* The logic of p3samctl segment with many meshes that needs no daemon (ctl/ctl-batch.c): the
 * sorted list, shards (--shard, Slurm's and Kubernetes' variables) covering it exactly once,
 * output names and their collisions, the up-to-date rule, the summary's JSON lines. */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl-batch.h"
#include "macro.h"

static int failures;

static void expect(bool ok, const char *what) {
        printf("%s: %s\n", ok ? "ok" : "FAIL", what);
        failures += !ok;
}

/* A list of n made-up meshes (nothing is read: must_exist = false; each fails later as
 * unreadable, which does not matter for where it goes). */
static void make_list(batch_list *l, int n) {
        *l = (batch_list) {};
        for (int i = n - 1; i >= 0; i--) { /* added backwards: the sort must put them right */
                char path[64], *err = NULL;
                snprintf(path, sizeof(path), "/data/set/mesh%03d.glb", i);
                if (batch_add_path(l, path, false, &err) < 0)
                        abort();
                free(err);
        }
        batch_sort_unique(l);
}

/* Shards 0..count-1 of the same list: each mesh in exactly one. */
static bool shards_cover(int n, uint64_t count) {
        int *seen = calloc((size_t) n, sizeof(int));
        for (uint64_t s = 0; s < count; s++) {
                batch_list l;
                make_list(&l, n);
                batch_shard sh = { s, count, "--shard" };
                batch_shard_apply(&l, &sh);
                for (size_t i = 0; i < l.n; i++)
                        seen[atoi(strstr(l.items[i].path, "mesh") + 4)]++;
                batch_list_free(&l);
        }
        bool ok = true;
        for (int i = 0; i < n; i++)
                ok &= seen[i] == 1;
        free(seen);
        return ok;
}

static const char *const *env_table;

static const char *fake_getenv(const char *name) {
        for (const char *const *e = env_table; e && *e; e += 2)
                if (strcmp(e[0], name) == 0)
                        return e[1];
        return NULL;
}

static bool shard_env(const char *const *table, uint64_t count, uint64_t want_i, uint64_t want_n) {
        env_table = table;
        batch_shard s = {};
        char *err = NULL;
        int r = batch_shard_from_env(fake_getenv, count, &s, &err);
        free(err);
        return r == 0 && s.index == want_i && s.count == want_n;
}

static void test_shards(void) {
        batch_shard s;
        expect(batch_shard_parse("1/3", &s) == 0 && s.index == 1 && s.count == 3,
               "--shard 1/3 parsed");
        expect(batch_shard_parse("3/3", &s) == -EINVAL && batch_shard_parse("x/2", &s) == -EINVAL &&
                       batch_shard_parse("1/0", &s) == -EINVAL,
               "--shard 3/3, x/2, 1/0 refused");
        expect(shards_cover(12, 3) && shards_cover(10, 4) && shards_cover(2, 5),
               "shards I/N cover the sorted list exactly once (12/3, 10/4, 2 meshes in 5)");
        static const char *const slurm[] = { "SLURM_ARRAY_TASK_ID", "2",
                                             "SLURM_ARRAY_TASK_COUNT", "3", NULL };
        static const char *const slurm_minmax[] = { "SLURM_ARRAY_TASK_ID", "3",
                                                    "SLURM_ARRAY_TASK_MIN", "1",
                                                    "SLURM_ARRAY_TASK_MAX", "3", NULL };
        static const char *const k8s[] = { "JOB_COMPLETION_INDEX", "1", NULL };
        static const char *const none[] = { NULL };
        expect(shard_env(slurm, 0, 2, 3), "SLURM_ARRAY_TASK_ID 2 of COUNT 3 -> shard 2/3");
        expect(shard_env(slurm_minmax, 0, 2, 3), "Slurm array 1-3, task 3 -> shard 2/3");
        expect(shard_env(k8s, 4, 1, 4), "JOB_COMPLETION_INDEX 1 with --shard-count 4 -> 1/4");
        expect(shard_env(none, 0, 0, 0), "no variable: no shard");
        env_table = k8s;
        char *err = NULL;
        expect(batch_shard_from_env(fake_getenv, 0, &s, &err) == -EINVAL && err,
               "JOB_COMPLETION_INDEX without a count: refused with a sentence");
        free(err);
}

static void test_outputs(void) {
        char *a = batch_output_name("/d/chair.glb", "glb");
        char *b = batch_output_name("/d/x.OBJ", "ply");
        expect(a && strcmp(a, "/d/chair.parts.glb") == 0 && b && strcmp(b, "/d/x.parts.ply") == 0,
               "outputs beside the mesh: chair.glb -> chair.parts.glb, x.OBJ -> x.parts.ply");
        free(a), free(b);
        expect(batch_mesh_format("a.GLB") && batch_mesh_format("b.off") &&
                       !batch_mesh_format("c.txt"),
               "mesh formats by extension, any case");
        expect(batch_is_our_output("/d/chair.parts.glb") && !batch_is_our_output("/d/chair.glb"),
               "our own outputs are recognised (never taken as input)");
        /* real files: a mesh that cannot be read fails for that before any collision */
        char dir[] = "/tmp/p3-batch-plan-XXXXXX", path[3][64];
        if (!mkdtemp(dir))
                abort();
        static const char *const names[3] = { "a.glb", "a.obj", "b.glb" };
        for (int i = 0; i < 3; i++) {
                snprintf(path[i], sizeof(path[i]), "%s/%s", dir, names[i]);
                FILE *f = fopen(path[i], "w");
                if (!f || fclose(f) != 0)
                        abort();
        }
        batch_list l = {};
        char *err = NULL;
        for (int i = 0; i < 4; i++) /* b.glb named twice */
                if (batch_add_path(&l, path[i < 3 ? i : 2], true, &err) < 0)
                        abort();
        batch_sort_unique(&l);
        int r = batch_map_outputs(&l, NULL, "glb");
        int collided = 0;
        for (size_t i = 0; i < l.n; i++)
                collided += l.items[i].error && strstr(l.items[i].error, "is also that of");
        expect(r == 0 && l.n == 3 && collided == 1,
               "a mesh named twice runs once; a.glb and a.obj would both write a.parts.glb: one "
               "fails");
        for (int i = 0; i < 3; i++)
                unlink(path[i]);
        rmdir(dir);
        batch_list_free(&l);
        free(err);
}

static void test_up_to_date(void) {
        struct stat mesh = { .st_mode = S_IFREG, .st_mtim = { 100, 0 } },
                    older = { .st_mode = S_IFREG, .st_mtim = { 99, 0 } },
                    newer = { .st_mode = S_IFREG, .st_mtim = { 100, 1 } },
                    dir = { .st_mode = S_IFDIR, .st_mtim = { 200, 0 } };
        expect(batch_up_to_date(&mesh, &newer) && !batch_up_to_date(&mesh, &older) &&
                       !batch_up_to_date(&mesh, &dir),
               "an output newer than the mesh is up to date; an older one, or a directory, is "
               "not");
}

static void test_summary(void) {
        batch_shard sh = { 1, 3, "--shard" };
        batch_result r = { .path = "/d/a.glb", .output = "/d/a.parts.glb", .status = BATCH_FAILED,
                           .error = "the mesh has no faces", .seconds = 1.5, .parts = -1,
                           .shard = &sh };
        char *line = batch_summary_line(&r);
        json_object *o = line ? json_tokener_parse(line) : NULL, *v;
        bool ok = o && !strchr(line, '\n') && json_object_object_get_ex(o, "status", &v) &&
                  strcmp(json_object_get_string(v), "failed") == 0 &&
                  json_object_object_get_ex(o, "error", &v) &&
                  strcmp(json_object_get_string(v), "the mesh has no faces") == 0 &&
                  json_object_object_get_ex(o, "path", &v) &&
                  strcmp(json_object_get_string(v), "/d/a.glb") == 0 &&
                  json_object_object_get_ex(o, "shard", &v) &&
                  strcmp(json_object_get_string(v), "1/3") == 0;
        expect(ok, "a summary line is one JSON object: path, status, error, shard");
        json_object_put(o);
        free(line);
}

int main(void) {
        test_shards();
        test_outputs();
        test_up_to_date();
        test_summary();
        printf("%d failure(s)\n", failures);
        return failures ? 1 : 0;
}
