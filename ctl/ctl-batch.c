/* SPDX-License-Identifier: MIT */
/* The input list of p3samctl segment with many meshes, its shards, the outputs, the summary
 * lines (see ctl-batch.h). Nothing here talks to a daemon. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ctl-batch.h"
#include "macro.h"
#include "parse-util.h"

static const char *const mesh_formats[] = { "glb", "gltf", "obj", "ply", "stl", "off", NULL };

static const char *extension(const char *path) {
        const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
        return dot && (!slash || dot > slash) && dot[1] ? dot + 1 : NULL;
}

const char *batch_mesh_format(const char *path) {
        const char *ext = extension(path);
        for (const char *const *f = mesh_formats; ext && *f; f++)
                if (strcasecmp(ext, *f) == 0)
                        return *f;
        return NULL;
}

bool batch_is_our_output(const char *path) {
        const char *ext = extension(path);
        size_t n = ext ? (size_t) (ext - path) : 0;
        return n >= 7 && strncasecmp(ext - 7, ".parts.", 7) == 0 &&
               (strcasecmp(ext, "glb") == 0 || strcasecmp(ext, "ply") == 0);
}

static void item_free(batch_item *it) {
        free(it->path);
        free(it->abs);
        free(it->rel);
        free(it->output);
        free(it->error);
}

void batch_list_free(batch_list *l) {
        for (size_t i = 0; i < l->n; i++)
                item_free(&l->items[i]);
        free(l->items);
        *l = (batch_list) {};
}

static int set_error(char **ret, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int set_error(char **ret, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(ret, fmt, ap) < 0)
                *ret = NULL;
        va_end(ap);
        return *ret ? 0 : -ENOMEM;
}

/* path made absolute (against the current directory) with ".", ".." and "//" resolved by
 * name alone: the same file named two ways is one mesh, and the common root of the files is
 * a plain prefix. */
static char *absolute_path(const char *path) {
        _cleanup_free_ char *cwd = path[0] == '/' ? strdup("") : getcwd(NULL, 0);
        _cleanup_free_ char *joined = NULL;
        if (!cwd || asprintf(&joined, "%s/%s", cwd, path) < 0)
                return NULL;
        char *out = malloc(strlen(joined) + 2), *o = out;
        if (!out)
                return NULL;
        for (char *save = NULL, *seg = strtok_r(joined, "/", &save); seg;
             seg = strtok_r(NULL, "/", &save)) {
                if (strcmp(seg, ".") == 0)
                        continue;
                if (strcmp(seg, "..") == 0) {
                        while (o > out && *--o != '/')
                                ;
                        continue;
                }
                *o++ = '/';
                o = stpcpy(o, seg);
        }
        if (o == out)
                *o++ = '/';
        *o = '\0';
        return out;
}

static int add_item(batch_list *l, const char *path, const char *rel, const char *error) {
        if (l->n == l->cap) {
                size_t cap = l->cap ? 2 * l->cap : 64;
                batch_item *items = reallocarray(l->items, cap, sizeof(*items));
                if (!items)
                        return -ENOMEM;
                l->items = items;
                l->cap = cap;
        }
        batch_item *it = &l->items[l->n];
        *it = (batch_item) { .path = strdup(path), .abs = absolute_path(path),
                             .rel = rel ? strdup(rel) : NULL, .error = error ? strdup(error) : NULL,
                             .from_dir = rel != NULL };
        if (!it->path || !it->abs || (rel && !it->rel) || (error && !it->error)) {
                item_free(it);
                return -ENOMEM;
        }
        l->n++;
        return 0;
}

/* dir/name, without doubling a slash that the user typed ("meshes/"). */
static char *join(const char *dir, const char *name) {
        size_t n = strlen(dir);
        char *s;
        while (n > 1 && dir[n - 1] == '/')
                n--;
        return asprintf(&s, "%.*s/%s", (int) n, dir, name) < 0 ? NULL : s;
}

/* Walks dirfd (path: its name as the user will read it; rel: under the directory given). */
static int walk(batch_list *l, int fd, const char *path, const char *rel, char **ret_error) {
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return set_error(ret_error, "Cannot read the directory %s: %s.", path,
                                 strerror(errno)) ?: -EIO;
        }
        int r = 0;
        struct dirent *de;
        while (r == 0 && (errno = 0, de = readdir(d))) {
                struct stat st;
                if (de->d_name[0] == '.')
                        continue; /* hidden, and "." and ".." */
                _cleanup_free_ char *sub = join(path, de->d_name);
                _cleanup_free_ char *subrel = *rel ? join(rel, de->d_name) : strdup(de->d_name);
                if (!sub || !subrel)
                        r = -ENOMEM;
                else if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue; /* gone meanwhile */
                else if (S_ISDIR(st.st_mode)) {
                        int sub_fd = openat(dirfd(d), de->d_name,
                                            O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                        r = sub_fd < 0 ? set_error(ret_error, "Cannot read the directory %s: %s.",
                                                   sub, strerror(errno)) ?: -EIO
                                       : walk(l, sub_fd, sub, subrel, ret_error);
                } else if (batch_mesh_format(de->d_name) && !batch_is_our_output(de->d_name) &&
                           (S_ISREG(st.st_mode) ||
                            (S_ISLNK(st.st_mode) && fstatat(dirfd(d), de->d_name, &st, 0) == 0 &&
                             S_ISREG(st.st_mode))))
                        r = add_item(l, sub, subrel, NULL);
        }
        if (r == 0 && errno)
                r = set_error(ret_error, "Cannot read the directory %s: %s.", path,
                              strerror(errno)) ?: -EIO;
        closedir(d);
        return r;
}

int batch_add_path(batch_list *l, const char *path, bool must_exist, char **ret_error) {
        struct stat st;
        if (stat(path, &st) < 0) {
                int e = errno;
                _cleanup_free_ char *why = NULL;
                if (set_error(&why, "Cannot open it: %s.", strerror(e)) < 0)
                        return -ENOMEM;
                if (!must_exist)
                        return add_item(l, path, NULL, why);
                *ret_error = TAKE_PTR(why);
                return -e;
        }
        if (!S_ISDIR(st.st_mode))
                return add_item(l, path, NULL, NULL);
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return set_error(ret_error, "Cannot read the directory %s: %s.", path,
                                 strerror(errno)) ?: -EIO;
        return walk(l, fd, path, "", ret_error);
}

int batch_add_list(batch_list *l, FILE *f, char **ret_error) {
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        ssize_t n;
        int r = 0;
        while (r == 0 && (n = getline(&line, &size, f)) >= 0) {
                while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                        line[--n] = '\0';
                if (n > 0)
                        r = batch_add_path(l, line, false, ret_error);
        }
        if (r == 0 && ferror(f))
                r = set_error(ret_error, "Cannot read the list: %s.", strerror(errno)) ?: -EIO;
        return r;
}

static int compare_items(const void *a, const void *b) {
        const batch_item *x = a, *y = b;
        int c = strcmp(x->path, y->path);
        /* a mesh both found in a directory and named in a list keeps the directory's rel */
        return c ? c : (int) y->from_dir - (int) x->from_dir;
}

static int compare_abs(const void *a, const void *b) {
        const batch_item *const *x = a, *const *y = b;
        int c = strcmp((*x)->abs, (*y)->abs);
        /* the first in the sorted list stays */
        return c ? c : (*x > *y) - (*x < *y);
}

void batch_sort_unique(batch_list *l) {
        if (l->n < 2)
                return;
        qsort(l->items, l->n, sizeof(*l->items), compare_items);
        _cleanup_free_ batch_item **by_abs = calloc(l->n, sizeof(*by_abs));
        _cleanup_free_ bool *drop = calloc(l->n, sizeof(*drop));
        if (!by_abs || !drop)
                return; /* duplicates stay: each is segmented, and they collide on output */
        for (size_t i = 0; i < l->n; i++)
                by_abs[i] = &l->items[i];
        qsort(by_abs, l->n, sizeof(*by_abs), compare_abs);
        for (size_t i = 1; i < l->n; i++)
                if (strcmp(by_abs[i]->abs, by_abs[i - 1]->abs) == 0)
                        drop[by_abs[i] - l->items] = true;
        size_t n = 0;
        for (size_t i = 0; i < l->n; i++) {
                if (drop[i])
                        item_free(&l->items[i]);
                else
                        l->items[n++] = l->items[i];
        }
        l->n = n;
}

int batch_shard_parse(const char *s, batch_shard *ret) {
        const char *slash = strchr(s, '/');
        uint64_t i, n;
        _cleanup_free_ char *first = slash ? strndup(s, (size_t) (slash - s)) : NULL;
        if (!first || parse_u64_range(first, 0, UINT32_MAX, &i) < 0 ||
            parse_u64_range(slash + 1, 1, UINT32_MAX, &n) < 0 || i >= n)
                return -EINVAL;
        *ret = (batch_shard) { .index = i, .count = n, .source = "--shard" };
        return 0;
}

static int env_number(const char *(*get)(const char *), const char *name, bool *have,
                      uint64_t *ret, char **ret_error) {
        const char *v = get(name);
        *have = v && *v;
        if (*have && parse_u64_range(v, 0, UINT32_MAX, ret) < 0)
                return set_error(ret_error, "%s=\"%s\" is not a whole number.", name, v) ?: -EINVAL;
        return 0;
}

/* Slurm: the task's place in its array. An array 1-10 has MIN 1; 0-30:10 has STEP 10. */
static int slurm_shard(const char *(*get)(const char *), uint64_t count, batch_shard *ret,
                       char **ret_error) {
        bool have_id, have_count, have_min, have_max, have_step;
        uint64_t id = 0, n = 0, min = 0, max = 0, step = 1;
        int r = env_number(get, "SLURM_ARRAY_TASK_ID", &have_id, &id, ret_error);
        if (r == 0)
                r = env_number(get, "SLURM_ARRAY_TASK_COUNT", &have_count, &n, ret_error);
        if (r == 0)
                r = env_number(get, "SLURM_ARRAY_TASK_MIN", &have_min, &min, ret_error);
        if (r == 0)
                r = env_number(get, "SLURM_ARRAY_TASK_MAX", &have_max, &max, ret_error);
        if (r == 0)
                r = env_number(get, "SLURM_ARRAY_TASK_STEP", &have_step, &step, ret_error);
        if (r < 0 || !have_id)
                return r;
        step = step ? step : 1;
        if (id < min || (id - min) % step)
                return set_error(ret_error, "SLURM_ARRAY_TASK_ID=%" PRIu64 " is not in the array "
                                            "that starts at %" PRIu64 " with step %" PRIu64 ".",
                                 id, min, step) ?: -EINVAL;
        if (count)
                n = count;
        else if (!have_count && have_max && max >= min)
                n = (max - min) / step + 1;
        if (!n)
                return set_error(ret_error, "SLURM_ARRAY_TASK_ID is set but not the array's "
                                            "size: set SLURM_ARRAY_TASK_COUNT, or give "
                                            "--shard-count N or --shard I/N.") ?: -EINVAL;
        *ret = (batch_shard) { .index = (id - min) / step, .count = n,
                               .source = "SLURM_ARRAY_TASK_ID" };
        if (ret->index >= n)
                return set_error(ret_error, "Slurm task %" PRIu64 " is past the array's %" PRIu64
                                            " tasks.", ret->index, n) ?: -EINVAL;
        return 0;
}

int batch_shard_from_env(const char *(*get)(const char *name), uint64_t count, batch_shard *ret,
                         char **ret_error) {
        bool have;
        uint64_t index;
        *ret = (batch_shard) {};
        int r = slurm_shard(get, count, ret, ret_error);
        if (r < 0 || ret->count)
                return r;
        r = env_number(get, "JOB_COMPLETION_INDEX", &have, &index, ret_error);
        if (r < 0 || !have) {
                if (r == 0 && count)
                        return set_error(ret_error, "--shard-count needs the shard's number: "
                                                    "JOB_COMPLETION_INDEX or "
                                                    "SLURM_ARRAY_TASK_ID (or give --shard "
                                                    "I/N).") ?: -EINVAL;
                return r;
        }
        if (!count)
                return set_error(ret_error, "JOB_COMPLETION_INDEX is set: give --shard-count N, "
                                            "the Job's completions.") ?: -EINVAL;
        if (index >= count)
                return set_error(ret_error, "JOB_COMPLETION_INDEX=%" PRIu64 " is not below "
                                            "--shard-count %" PRIu64 ".", index, count) ?: -EINVAL;
        *ret = (batch_shard) { .index = index, .count = count, .source = "JOB_COMPLETION_INDEX" };
        return 0;
}

void batch_shard_apply(batch_list *l, const batch_shard *s) {
        size_t n = 0;
        if (!s->count)
                return;
        for (size_t i = 0; i < l->n; i++) {
                if (i % s->count == s->index)
                        l->items[n++] = l->items[i];
                else
                        item_free(&l->items[i]);
        }
        l->n = n;
}

char *batch_output_name(const char *path, const char *format) {
        const char *ext = extension(path);
        int stem = (int) strlen(path);
        char *s;
        if (ext && batch_mesh_format(path))
                stem = (int) (ext - 1 - path);
        return asprintf(&s, "%.*s.parts.%s", stem, path, format) < 0 ? NULL : s;
}

/* The longest directory that holds every file named one by one ("/" at least). */
static char *common_root(const batch_list *l) {
        char *root = NULL;
        size_t len = 0;
        for (size_t i = 0; i < l->n; i++) {
                const char *abs = l->items[i].abs;
                if (l->items[i].from_dir)
                        continue;
                if (!root) {
                        len = (size_t) (strrchr(abs, '/') - abs);
                        root = strndup(abs, len);
                        if (!root)
                                return NULL;
                        continue;
                }
                size_t k = 0;
                while (k < len && root[k] == abs[k])
                        k++;
                /* back to a whole name: "/a/bc" and "/a/bd" share "/a" */
                if (k < len || (abs[k] != '/' && abs[k]))
                        while (k > 0 && root[k] != '/')
                                k--;
                len = k;
                root[len] = '\0';
        }
        return root;
}

static int set_rel(batch_list *l) {
        _cleanup_free_ char *root = common_root(l);
        for (size_t i = 0; i < l->n; i++) {
                batch_item *it = &l->items[i];
                if (it->from_dir)
                        continue;
                free(it->rel);
                it->rel = strdup(it->abs + strlen(root) + 1);
                if (!it->rel)
                        return -ENOMEM;
        }
        return 0;
}

static int compare_outputs(const void *a, const void *b) {
        const batch_item *const *x = a, *const *y = b;
        int c = strcmp((*x)->output, (*y)->output);
        return c ? c : (*x > *y) - (*x < *y);
}

/* The later of two meshes with one output fails: neither result would survive the other. */
static int mark_collisions(batch_list *l) {
        _cleanup_free_ batch_item **by_out = calloc(l->n ?: 1, sizeof(*by_out));
        if (!by_out)
                return -ENOMEM;
        for (size_t i = 0; i < l->n; i++)
                by_out[i] = &l->items[i];
        qsort(by_out, l->n, sizeof(*by_out), compare_outputs);
        for (size_t i = 1; i < l->n; i++) {
                batch_item *first = by_out[i - 1], *it = by_out[i];
                if (strcmp(first->output, it->output) != 0)
                        continue;
                while (i > 1 && strcmp(by_out[i - 2]->output, it->output) == 0 &&
                       first > by_out[i - 2])
                        first = by_out[i - 2];
                if (!it->error && set_error(&it->error,
                                            "Its output %s is also that of %s; segment it "
                                            "alone with -o.",
                                            it->output, first->path) < 0)
                        return -ENOMEM;
                by_out[i] = first; /* the next one names the first too */
        }
        return 0;
}

int batch_map_outputs(batch_list *l, const char *output_dir, const char *format) {
        if (output_dir && set_rel(l) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < l->n; i++) {
                batch_item *it = &l->items[i];
                _cleanup_free_ char *under = output_dir ? join(output_dir, it->rel) : NULL;
                if (output_dir && !under)
                        return -ENOMEM;
                free(it->output);
                it->output = batch_output_name(under ?: it->path, format);
                if (!it->output)
                        return -ENOMEM;
        }
        return mark_collisions(l);
}

bool batch_up_to_date(const struct stat *mesh, const struct stat *output) {
        if (!S_ISREG(output->st_mode))
                return false;
        if (output->st_mtim.tv_sec != mesh->st_mtim.tv_sec)
                return output->st_mtim.tv_sec > mesh->st_mtim.tv_sec;
        return output->st_mtim.tv_nsec > mesh->st_mtim.tv_nsec;
}

static const char *const status_names[] = {
        [BATCH_DONE] = "done",
        [BATCH_SKIPPED] = "skipped",
        [BATCH_FAILED] = "failed",
};

static json_object *string_or_null(const char *s) {
        return s ? json_object_new_string(s) : NULL;
}

char *batch_summary_line(const batch_result *r) {
        json_object *o = json_object_new_object();
        char *line = NULL;
        if (!o)
                return NULL;
        json_object_object_add(o, "path", json_object_new_string(r->path));
        json_object_object_add(o, "output", string_or_null(r->output));
        json_object_object_add(o, "status", json_object_new_string(status_names[r->status]));
        json_object_object_add(o, "error", string_or_null(r->error));
        char seconds[32];
        snprintf(seconds, sizeof(seconds), "%.3f", r->seconds); /* not 1.2300000000000000 */
        json_object_object_add(o, "seconds", json_object_new_double_s(r->seconds, seconds));
        json_object_object_add(o, "parts",
                               r->parts >= 0 ? json_object_new_int64(r->parts) : NULL);
        json_object_object_add(o, "instance", string_or_null(r->instance));
        if (r->shard && r->shard->count) {
                char shard[48];
                snprintf(shard, sizeof(shard), "%" PRIu64 "/%" PRIu64, r->shard->index,
                         r->shard->count);
                json_object_object_add(o, "shard", json_object_new_string(shard));
        }
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                              JSON_C_TO_STRING_NOSLASHESCAPE);
        if (s)
                line = strdup(s);
        json_object_put(o);
        return line;
}
