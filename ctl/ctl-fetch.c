/* SPDX-License-Identifier: MIT */
/* p3samctl fetch-model: download the checkpoint into <dest>.part (resuming what an earlier
 * attempt left), check it (SHA-256, every key and shape against the model config, every value
 * finite) and only then rename it over the old model and ask the daemon to reload. A bad
 * download never replaces a working model: it is deleted, and the next attempt starts over. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl-bus.h"
#include "ctl-download.h"
#include "ctl-sha256.h"
#include "ctl.h"
#include "weights.h"

#define DEFAULT_URL "https://huggingface.co/tencent/Hunyuan3D-Part/resolve/main/p3sam/p3sam.safetensors"
/* The StateDirectory= of p3samd.service, where its default Model.Path points. */
#define DEFAULT_DEST "/var/lib/p3sam/p3sam.safetensors"

typedef struct fetch_args {
        const char *url;
        const char *dest;
        const char *config; /* NULL: the real model's configuration */
        char sha256[SHA256_HEX_SIZE]; /* expected, lower case; empty: none given */
        bool reload;
} fetch_args;

static void help(void) {
        printf("Usage: p3samctl fetch-model [--url URL] [--dest PATH] [--sha256 HEX] [--no-reload]\n"
               "                            [--config C.json]\n"
               "Download the P3-SAM checkpoint, check it and install it for p3samd.\n\n"
               "      --url URL         where to download from (default:\n"
               "                        " DEFAULT_URL ")\n"
               "      --dest PATH       where to install it (default: " DEFAULT_DEST ")\n"
               "      --sha256 HEX      refuse a download with another SHA-256\n"
               "      --no-reload       do not ask p3samd to reload afterwards\n"
               "      --config C.json   check against this backbone config instead of the real one\n"
               "      --user            reload the daemon on the session bus\n"
               "      --instance N      reload the daemon of GPU N (p3samd@N)\n"
               "  -h, --help            show this help\n\n"
               "An interrupted download resumes on the next run (from PATH.part). Nothing replaces\n"
               "the old model unless the new one passes every check.\n");
}

/* ---- arguments ---------------------------------------------------------------------------- */

static int parse_sha256(const char *s, char out[SHA256_HEX_SIZE]) {
        if (strlen(s) != SHA256_HEX_SIZE - 1 || strspn(s, "0123456789abcdefABCDEF") != strlen(s))
                return ctl_fail(CTL_EXIT_USAGE, "--sha256 takes 64 hexadecimal digits, not \"%s\".", s);
        for (size_t i = 0; i < SHA256_HEX_SIZE; i++)
                out[i] = (char) (s[i] >= 'A' && s[i] <= 'F' ? s[i] - 'A' + 'a' : s[i]);
        return 0;
}

/* Returns 1 to go on, else an exit code (0 after --help). */
static int parse_args(int argc, char **argv, fetch_args *a) {
        enum { ARG_URL = 0x100, ARG_DEST, ARG_SHA256, ARG_NO_RELOAD, ARG_CONFIG };
        static const struct option opts[] = {
                { "url", required_argument, NULL, ARG_URL },
                { "dest", required_argument, NULL, ARG_DEST },
                { "sha256", required_argument, NULL, ARG_SHA256 },
                { "no-reload", no_argument, NULL, ARG_NO_RELOAD },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "help", no_argument, NULL, 'h' },
                CTL_GLOBAL_OPTIONS,
                {},
        };
        int c, r;

        *a = (fetch_args) { .url = DEFAULT_URL, .dest = DEFAULT_DEST, .reload = true };
        optind = 0; /* a fresh scan of the verb's own argv */
        opterr = 0; /* our own sentences, via ctl_parse_option_common() */
        while ((c = getopt_long(argc, argv, ":h", opts, NULL)) >= 0) {
                switch (c) {
                case ARG_URL: a->url = optarg; break;
                case ARG_DEST: a->dest = optarg; break;
                case ARG_SHA256:
                        if ((r = parse_sha256(optarg, a->sha256)) != 0)
                                return r;
                        break;
                case ARG_NO_RELOAD: a->reload = false; break;
                case ARG_CONFIG: a->config = optarg; break;
                case 'h': help(); return CTL_EXIT_OK;
                default:
                        if ((r = ctl_parse_option_common(c, argv[0], argv)) >= 0)
                                return r;
                }
        }
        if (optind < argc)
                return ctl_fail(CTL_EXIT_USAGE, "fetch-model takes no arguments, only options "
                                "(\"%s\"); see p3samctl fetch-model --help.", argv[optind]);
        if (!a->dest[0] || a->dest[strlen(a->dest) - 1] == '/')
                return ctl_fail(CTL_EXIT_USAGE, "--dest takes a file name, not \"%s\".", a->dest);
        p3_err err = {};
        if (download_url_host(a->url, NULL, &err) < 0)
                return ctl_fail(CTL_EXIT_USAGE, "--url: %s", err.msg);
        return 1;
}

static int load_config(const fetch_args *a, p3_config *cfg) {
        p3_err err = {};
        if (!a->config) {
                p3_config_default(cfg);
                return 0;
        }
        int r = p3_config_load(a->config, cfg, &err);
        return r < 0 ? ctl_fail(CTL_EXIT_FAILURE, "%s", p3_err_msg(&err, r)) : 0;
}

/* ---- the destination ---------------------------------------------------------------------- */

static char *dir_of(const char *path) {
        const char *slash = strrchr(path, '/');
        if (!slash)
                return strdup(".");
        return slash == path ? strdup("/") : strndup(path, (size_t) (slash - path));
}

/* Before spending minutes on a download, make sure its result can be put in place. */
static int check_dest_dir(const char *dir) {
        struct stat st;
        if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode))
                return ctl_fail(CTL_EXIT_FAILURE, "%s is not a directory.", dir);
        if (stat(dir, &st) < 0 && errno == ENOENT)
                return ctl_fail(CTL_EXIT_FAILURE, "The directory %s does not exist (p3samd's "
                                "StateDirectory appears once the service has started; or pass "
                                "--dest).", dir);
        if (access(dir, W_OK) == 0)
                return 0;
        if (errno == EACCES || errno == EPERM)
                return ctl_fail(CTL_EXIT_DENIED, "Cannot write to %s: run it as root: sudo "
                                "p3samctl fetch-model (or as the p3sam user).", dir);
        return ctl_fail(CTL_EXIT_FAILURE, "Cannot write to %s: %s.", dir, strerror(errno));
}

/* The partial download, locked so that two fetches cannot write into it at once. */
static int open_part(const char *part, int *ret) {
        _cleanup_close_ int fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return errno == EACCES || errno == EPERM
                       ? ctl_fail(CTL_EXIT_DENIED, "Cannot write %s: run it as root: sudo "
                                  "p3samctl fetch-model (or as the p3sam user).", part)
                       : ctl_fail(CTL_EXIT_FAILURE, "Cannot open %s: %s.", part, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK
                       ? ctl_fail(CTL_EXIT_FAILURE, "Another fetch-model is downloading into %s "
                                  "already.", part)
                       : ctl_fail(CTL_EXIT_FAILURE, "Cannot lock %s: %s.", part, strerror(errno));
        *ret = TAKE_FD(fd);
        return 0;
}

/* ---- checks ------------------------------------------------------------------------------- */

static int check_sha256(int fd, const fetch_args *a, char hex[SHA256_HEX_SIZE], p3_err *err) {
        uint8_t digest[SHA256_DIGEST_SIZE];
        int r = sha256_fd(fd, digest);
        if (r < 0)
                return p3_errf(err, r, "%s", strerror(-r));
        sha256_hex(digest, hex);
        printf("SHA-256: %s\n", hex);
        fflush(stdout);
        if (a->sha256[0] && strcmp(hex, a->sha256) != 0)
                return p3_errf(err, -EBADMSG, "its SHA-256 is %s, not the %s given with --sha256",
                               hex, a->sha256);
        return 0;
}

/* A NaN or Inf weight would turn every mask into NaN without any error on the way; the engine
 * does not scan for them, so this is the last chance to refuse such a file. */
static int check_finite(const p3_weights *w, p3_err *err) {
        for (size_t i = 0; i < w->n; i++) {
                const float *v = w->data[i];
                for (int64_t k = 0; k < w->specs[i].numel; k++)
                        if (!isfinite(v[k]))
                                return p3_errf(err, -EBADMSG, "tensor \"%s\" holds %s (element %lld)",
                                               w->specs[i].name, isnan(v[k]) ? "NaN" : "Inf",
                                               (long long) k);
        }
        return 0;
}

/* Every key and shape as p3samd will load it (p3_weights_load converts F16/BF16 to FP32 as the
 * daemon does), then every value. */
static int check_tensors(const char *part, const p3_config *cfg, size_t *n, p3_err *err) {
        _cleanup_(p3_weights_freep) p3_weights *w = NULL;
        p3_err e = {};
        int r = p3_weights_load(part, cfg, &w, &e);
        if (r < 0) {
                /* The message starts with the file's name; the .part is about to go. */
                const char *msg = p3_err_msg(&e, r);
                size_t len = strlen(part);
                if (strncmp(msg, part, len) == 0 && strncmp(msg + len, ": ", 2) == 0)
                        msg += len + 2;
                return p3_errf(err, r, "%s", msg);
        }
        *n = w->n;
        return check_finite(w, err);
}

/* ---- installing --------------------------------------------------------------------------- */

/* The data first, then the name: after a crash the directory holds the old model or the
 * complete new one, never a torn file. */
static int install(int fd, const char *part, const char *dest, const char *dir) {
        if (fsync(fd) < 0)
                return ctl_fail(CTL_EXIT_FAILURE, "Cannot flush %s to disk: %s.", part,
                                strerror(errno));
        if (rename(part, dest) < 0)
                return ctl_fail(CTL_EXIT_FAILURE, "Cannot rename %s to %s: %s.", part, dest,
                                strerror(errno));
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0)
                return ctl_fail(CTL_EXIT_FAILURE, "Installed %s, but cannot flush %s to disk: %s.",
                                dest, dir, strerror(errno));
        return 0;
}

/* ---- the daemon --------------------------------------------------------------------------- */

static int call_reload(sd_bus *bus, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r = sd_bus_message_new_method_call(bus, &m, ctl_bus_name(), CTL_BUS_PATH,
                                               CTL_BUS_IFACE, "Reload");
        if (r < 0)
                return r;
        /* polkit may ask the person at the terminal, and the daemon replies once the model is
         * loaded: both take time. */
        (void) sd_bus_message_set_allow_interactive_authorization(m, true);
        return ctl_bus_call(bus, m, CTL_SLOW_CALL_USEC, error, NULL);
}

/* The daemon loads Model.Path from its own configuration, which --dest may not be. */
static void note_model_path(sd_bus *bus, const char *dest) {
        _cleanup_free_ char *path = NULL, *real_path = NULL, *real_dest = NULL;
        if (sd_bus_get_property_string(bus, ctl_bus_name(), CTL_BUS_PATH, CTL_BUS_IFACE,
                                       "ModelPath", NULL, &path) < 0 || !path[0])
                return;
        real_path = realpath(path, NULL);
        real_dest = realpath(dest, NULL);
        if (!real_path || !real_dest || strcmp(real_path, real_dest) != 0)
                printf("Note: p3samd serves %s, not %s; set Model.Path in p3samd.conf to use the "
                       "new file.\n", path, dest);
}

static int reload_daemon(const char *dest) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;

        int r = ctl_bus_open(&bus);
        if (r >= 0)
                r = call_reload(bus, &error);
        if (r >= 0) {
                printf("p3samd reloaded the model.\n");
                note_model_path(bus, dest);
                return CTL_EXIT_OK;
        }
        /* No bus at all (a container, no session) means no daemon either. */
        if (ctl_bus_error_is_no_daemon(&error, r)) {
                printf("p3samd is not running; it will use the new model when it starts.\n");
                return CTL_EXIT_OK;
        }
        /* The new file stays: it passed every check, and a later reload or restart uses it. */
        const char *msg = sd_bus_error_is_set(&error) && error.message ? error.message
                                                                      : strerror(-r);
        size_t len = strlen(msg);
        return ctl_fail(CTL_EXIT_FAILURE, "Installed %s, but p3samd did not reload: %s%s", dest,
                        msg, len > 0 && msg[len - 1] == '.' ? "" : ".");
}

/* ---- the verb ----------------------------------------------------------------------------- */

/* Deletes the .part of a download that can never become valid, so that the next run does not
 * resume it. Returns the exit code. */
static int reject(const char *part, const char *dest, const p3_err *err) {
        (void) unlink(part);
        return ctl_fail(CTL_EXIT_FAILURE, "Rejected the download: %s; deleted it, %s is unchanged.",
                        err->msg, dest);
}

static int fetch(const fetch_args *a, const p3_config *cfg, const char *part, const char *dir) {
        _cleanup_close_ int fd = -1;
        download_info info;
        char hex[SHA256_HEX_SIZE];
        p3_err err = {};
        size_t n_tensors = 0;

        int r = open_part(part, &fd);
        if (r != 0)
                return r;
        printf("Downloading %s\n         to %s\n", a->url, a->dest);
        fflush(stdout);
        if (download_resume(a->url, fd, true, &info, &err) < 0) {
                struct stat st;
                /* Keep what arrived for the next run to resume; an empty file is just litter. */
                if (fstat(fd, &st) == 0 && st.st_size == 0)
                        (void) unlink(part);
                return ctl_fail(CTL_EXIT_FAILURE, "%s", err.msg);
        }
        if (info.was_complete)
                printf("The download was already complete (%.1f MiB).\n", (double) info.size / (1 << 20));
        /* Not subject to the umask: the daemon runs as its own user and must read a file that
         * root downloaded. */
        (void) fchmod(fd, 0644);

        r = check_sha256(fd, a, hex, &err);
        if (r >= 0)
                r = check_tensors(part, cfg, &n_tensors, &err);
        if (r == -ENOMEM || r == -EIO) /* says nothing about the file: keep it for a retry */
                return ctl_fail(CTL_EXIT_FAILURE, "Cannot check %s: %s.", part, err.msg);
        if (r < 0)
                return reject(part, a->dest, &err);
        r = install(fd, part, a->dest, dir);
        if (r != 0)
                return r;
        printf("Installed %s (%.1f MiB, %zu tensors, all finite).\n", a->dest,
               (double) info.size / (1 << 20), n_tensors);
        return CTL_EXIT_OK;
}

int verb_fetch_model(int argc, char **argv) {
        fetch_args a;
        p3_config cfg;

        int r = parse_args(argc, argv, &a);
        if (r != 1)
                return r;
        if ((r = load_config(&a, &cfg)) != 0)
                return r;
        _cleanup_free_ char *dir = dir_of(a.dest);
        _cleanup_free_ char *part = NULL;
        if (!dir || asprintf(&part, "%s.part", a.dest) < 0)
                return ctl_fail(CTL_EXIT_FAILURE, "Out of memory.");
        if ((r = check_dest_dir(dir)) != 0)
                return r;

        r = fetch(&a, &cfg, part, dir);
        if (r != CTL_EXIT_OK)
                return r;
        if (!a.reload) {
                printf("Not reloading p3samd (--no-reload): it will use the new model when it "
                       "starts or reloads.\n");
                return CTL_EXIT_OK;
        }
        return reload_daemon(a.dest);
}
