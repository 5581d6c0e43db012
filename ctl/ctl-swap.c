/* SPDX-License-Identifier: MIT */
/* p3samctl setup-swap SIZE: a swap file for hosts whose memory is short of what the model
 * needs. Runs locally as root, not through the daemon. Everything that can be checked is
 * checked before anything is created; a failure after that takes back what this run did. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create, open_memstream */
#endif
#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/swap.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl-swap.h"
#include "macro.h"
#include "parse-util.h"

#define SWAP_SIZE_MIN (UINT64_C(16) << 20)
#define ZERO_BLOCK ((size_t) 1 << 20)
#define DEFAULT_PATH "/swapfile"
#define DEFAULT_UNIT_DIR "/etc/systemd/system"

extern char **environ;

typedef struct swap_args {
        const char *size_arg;
        uint64_t size;          /* rounded up to the page size */
        char *path;             /* absolute, normalized */
        const char *unit_dir;
        bool persist;
        bool dry_run;
} swap_args;

/* How a filesystem takes a swap file. The kernel maps swap files block by block, so the
 * file must have no holes: fallocate() is enough only where the filesystem's swap code
 * accepts preallocated (unwritten) extents; elsewhere every block is written. */
typedef enum fs_kind { FS_ZERO_FILL, FS_FALLOCATE, FS_UNFIT } fs_kind;

typedef struct fs_info {
        uint32_t magic;
        const char *name;
        fs_kind kind;
} fs_info;

static const fs_info filesystems[] = {
        { EXT4_SUPER_MAGIC, "ext4", FS_FALLOCATE },     /* ext2/3 too: fallocate() then
                                                         * says EOPNOTSUPP, and we write */
        { XFS_SUPER_MAGIC, "xfs", FS_FALLOCATE },
        { BTRFS_SUPER_MAGIC, "btrfs", FS_FALLOCATE },   /* after NOCOW */
        { F2FS_SUPER_MAGIC, "f2fs", FS_ZERO_FILL },
        { MSDOS_SUPER_MAGIC, "vfat", FS_ZERO_FILL },
        /* In memory (swap there only moves memory around), on the network, read-only,
         * stacked or in user space: none has what swapon needs to map blocks. */
        { TMPFS_MAGIC, "tmpfs", FS_UNFIT },
        { RAMFS_MAGIC, "ramfs", FS_UNFIT },
        { NFS_SUPER_MAGIC, "NFS", FS_UNFIT },
        { OVERLAYFS_SUPER_MAGIC, "overlayfs", FS_UNFIT },
        { SQUASHFS_MAGIC, "squashfs", FS_UNFIT },
        { EROFS_SUPER_MAGIC_V1, "erofs", FS_UNFIT },
        { ISOFS_SUPER_MAGIC, "ISO 9660", FS_UNFIT },
        { CRAMFS_MAGIC, "cramfs", FS_UNFIT },
        { FUSE_SUPER_MAGIC, "a FUSE filesystem", FS_UNFIT },
        { CIFS_SUPER_MAGIC, "CIFS/SMB", FS_UNFIT },
        { SMB2_SUPER_MAGIC, "SMB2", FS_UNFIT },
        { SMB_SUPER_MAGIC, "SMB", FS_UNFIT },
        { CEPH_SUPER_MAGIC, "CephFS", FS_UNFIT },
        { V9FS_MAGIC, "9p", FS_UNFIT },
        { AFS_SUPER_MAGIC, "AFS", FS_UNFIT },
        { ECRYPTFS_SUPER_MAGIC, "eCryptfs", FS_UNFIT },
        { 0x2fc12fc1, "ZFS", FS_UNFIT },
        { 0x61756673, "aufs", FS_UNFIT },
        { 0x786f4256, "vboxsf", FS_UNFIT },
        { PROC_SUPER_MAGIC, "proc", FS_UNFIT },
        { SYSFS_MAGIC, "sysfs", FS_UNFIT },
};

typedef struct swap_plan {
        char *dir;              /* the directory the file goes into */
        const fs_info *fs;
        char fs_name[32];       /* its name, or its magic number when not in the table */
        char *mkswap;
        swap_unit unit;
} swap_plan;

static volatile sig_atomic_t cancelled;

/* ---- arguments ---- */

static void help(void) {
        printf("p3samctl setup-swap SIZE [--path PATH] [--persist] [--unit-dir DIR] [--dry-run]\n"
               "\n"
               "Create a swap file of SIZE (e.g. 8G, 512M; at least 16M, rounded up to a whole\n"
               "number of pages), format it with mkswap and enable it. Needs root.\n"
               "\n"
               "  --path PATH      the swap file (default " DEFAULT_PATH "); never overwritten\n"
               "  --persist        also write a systemd .swap unit and enable it for boot\n"
               "  --unit-dir DIR   where the unit goes (default " DEFAULT_UNIT_DIR ")\n"
               "  --dry-run        check and say what would be done; change nothing\n");
}

/* Absolute, without "//", "." or a trailing "/"; ".." is refused rather than resolved, so
 * the path written into a unit is the one the user typed. */
static int path_normalize(const char *in, char **ret) {
        _cleanup_free_ char *s = malloc(strlen(in) + 1);
        char *t;

        if (!s)
                return -ENOMEM;
        if (in[0] != '/')
                return -EINVAL;
        if (in[strlen(in) - 1] == '/')
                return -EISDIR;
        t = s;
        for (const char *p = in; *p;) {
                size_t n;

                p += strspn(p, "/");
                n = strcspn(p, "/");
                if (n == 2 && p[0] == '.' && p[1] == '.')
                        return -EINVAL;
                if (n > 0 && !(n == 1 && p[0] == '.')) {
                        *t++ = '/';
                        memcpy(t, p, n);
                        t += n;
                }
                p += n;
        }
        *t = '\0';
        for (t = s; *t; t++)
                if ((unsigned char) *t < 0x20 || *t == 0x7f)
                        return -EINVAL; /* it would break the unit file */
        if (!s[0])
                return -EISDIR;
        *ret = TAKE_PTR(s);
        return 0;
}

static int parse_size(swap_args *a) {
        long page = sysconf(_SC_PAGESIZE);
        uint64_t v;

        if (a->size_arg[0] == '-')
                return ctl_fail(CTL_EXIT_USAGE, "a swap size cannot be negative ('%s'); give a "
                                "size such as 8G or 512M", a->size_arg);
        if (parse_size_bytes(a->size_arg, &v) < 0 || v == UINT64_MAX)
                return ctl_fail(CTL_EXIT_USAGE, "invalid size '%s'; give a size such as 8G or 512M",
                                a->size_arg);
        if (v < SWAP_SIZE_MIN)
                return ctl_fail(CTL_EXIT_USAGE, "a swap size of %s is under the minimum of 16M",
                                a->size_arg);
        if (v > (uint64_t) INT64_MAX - (uint64_t) page)
                return ctl_fail(CTL_EXIT_USAGE, "a swap size of %s is too large for a file",
                                a->size_arg);
        /* The kernel uses whole pages only; a partial last page would be wasted, so the size
         * is rounded up to a page (documented in --help). */
        a->size = DIV_ROUND_UP(v, (uint64_t) page) * (uint64_t) page;
        return 0;
}

static int parse_path(swap_args *a, const char *arg) {
        int r = path_normalize(arg, &a->path);

        if (r == -EISDIR)
                return ctl_fail(CTL_EXIT_USAGE, "--path %s names a directory; give a file path", arg);
        if (r == -EINVAL)
                return ctl_fail(CTL_EXIT_USAGE, "--path %s must be an absolute path without \"..\" "
                                "or control characters", arg);
        return r < 0 ? ctl_fail(CTL_EXIT_FAILURE, "%s", strerror(-r)) : 0;
}

enum { ARG_PATH = 0x100, ARG_PERSIST, ARG_UNIT_DIR, ARG_DRY_RUN };

static const struct option options[] = {
        { "path", required_argument, NULL, ARG_PATH },
        { "persist", no_argument, NULL, ARG_PERSIST },
        { "unit-dir", required_argument, NULL, ARG_UNIT_DIR },
        { "dry-run", no_argument, NULL, ARG_DRY_RUN },
        { "help", no_argument, NULL, 'h' },
        {}
};

/* Returns 0 to go on, -1 after --help, or an exit code > 0. */
static int parse_options(int argc, char **argv, swap_args *a) {
        const char *path = DEFAULT_PATH;
        char buf[3];
        int c;

        /* "-5M" is a (bad) size, not the options -5 and -M */
        _cleanup_free_ char **args = ctl_argv_values_last(&argc, argv, options);
        if (!args)
                return ctl_fail(CTL_EXIT_FAILURE, "out of memory");
        argv = args;
        optind = 0; /* the dispatcher may have run getopt already: start afresh */
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return -1;
                case ARG_PATH:
                        path = optarg;
                        break;
                case ARG_PERSIST:
                        a->persist = true;
                        break;
                case ARG_UNIT_DIR:
                        if (!optarg[0])
                                return ctl_fail(CTL_EXIT_USAGE, "--unit-dir needs a directory");
                        a->unit_dir = optarg;
                        break;
                case ARG_DRY_RUN:
                        a->dry_run = true;
                        break;
                case ':':
                        return ctl_fail(CTL_EXIT_USAGE, "option %s needs a value",
                                        ctl_bad_option(c, argv, buf));
                default:
                        return ctl_fail(CTL_EXIT_USAGE, "unknown option %s for setup-swap",
                                        ctl_bad_option(c, argv, buf));
                }
        if (optind >= argc)
                return ctl_fail(CTL_EXIT_USAGE, "setup-swap needs a SIZE, such as 8G");
        if (optind + 1 < argc)
                return ctl_fail(CTL_EXIT_USAGE, "setup-swap takes one SIZE, not also '%s'",
                                argv[optind + 1]);
        if (a->unit_dir && !a->persist)
                return ctl_fail(CTL_EXIT_USAGE, "--unit-dir only applies with --persist");
        if (!a->unit_dir)
                a->unit_dir = DEFAULT_UNIT_DIR;
        a->size_arg = argv[optind];
        return parse_size(a) ?: parse_path(a, path);
}

/* ---- root ---- */

static void fput_shell_word(FILE *f, const char *s) {
        static const char plain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "0123456789_-+=.,:/@%";

        if (*s && s[strspn(s, plain)] == '\0') {
                fputs(s, f);
                return;
        }
        fputc('\'', f);
        for (; *s; s++)
                if (*s == '\'')
                        fputs("'\\''", f);
                else
                        fputc(*s, f);
        fputc('\'', f);
}

/* Says how to run this very command line as root. */
static int fail_not_root(int argc, char **argv) {
        _cleanup_free_ char *cmd = NULL;
        size_t len;
        FILE *f = open_memstream(&cmd, &len);

        if (!f)
                return ctl_fail(CTL_EXIT_DENIED, "setup-swap needs root");
        for (int i = 0; i < argc; i++) {
                fputc(' ', f);
                fput_shell_word(f, argv[i]);
        }
        fclose(f);
        return ctl_fail(CTL_EXIT_DENIED, "setup-swap needs root; run it as root: sudo p3samctl%s",
                        cmd);
}

/* ---- checks without side effects ---- */

static void format_size_prec(char *buf, size_t len, uint64_t bytes, int decimals) {
        static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
        double v = (double) bytes;
        size_t i = 0;

        if (bytes < 1024) {
                snprintf(buf, len, "%" PRIu64 " B", bytes);
                return;
        }
        for (v /= 1024; v >= 1024 && i + 1 < ELEMENTSOF(units); i++)
                v /= 1024;
        snprintf(buf, len, "%.*f %s", decimals, v, units[i]);
}

static void format_size(char *buf, size_t len, uint64_t bytes) {
        format_size_prec(buf, len, bytes, 1);
}

static int check_path_free(const char *path, p3_err *e) {
        struct stat st;

        if (lstat(path, &st) == 0)
                return p3_errf(e, -EEXIST, "%s already exists; refusing to overwrite it", path);
        if (errno != ENOENT && errno != ENOTDIR)
                return p3_errf(e, -errno, "cannot inspect %s: %s", path, strerror(errno));
        return 0;
}

static int check_dir(const swap_args *a, swap_plan *p, p3_err *e) {
        char *slash = strrchr(a->path, '/');
        struct stat st;

        p->dir = slash == a->path ? strdup("/") : strndup(a->path, slash - a->path);
        if (!p->dir)
                return -ENOMEM;
        if (stat(p->dir, &st) < 0)
                return p3_errf(e, -errno, "cannot put %s into %s: %s", a->path, p->dir,
                               strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return p3_errf(e, -ENOTDIR, "cannot put %s into %s: not a directory", a->path,
                               p->dir);
        return 0;
}

static int check_filesystem(swap_plan *p, p3_err *e) {
        static const fs_info unknown = { 0, NULL, FS_ZERO_FILL };
        struct statfs sfs;

        if (statfs(p->dir, &sfs) < 0)
                return p3_errf(e, -errno, "cannot inspect the filesystem of %s: %s", p->dir,
                               strerror(errno));
        p->fs = &unknown;
        snprintf(p->fs_name, sizeof(p->fs_name), "filesystem type 0x%" PRIx32,
                 (uint32_t) sfs.f_type);
        for (size_t i = 0; i < ELEMENTSOF(filesystems); i++)
                if ((uint32_t) sfs.f_type == filesystems[i].magic) {
                        p->fs = &filesystems[i];
                        snprintf(p->fs_name, sizeof(p->fs_name), "%s", p->fs->name);
                }
        if (p->fs->kind == FS_UNFIT)
                return p3_errf(e, -EOPNOTSUPP, "%s is on %s, which cannot hold a swap file; "
                               "choose a --path on a local disk filesystem such as ext4, xfs "
                               "or btrfs", p->dir, p->fs_name);
        return 0;
}

/* The file plus a tenth of its size: a disk filled to the last block by swap leaves the
 * rest of the system (logs, the daemon's results) without room. */
static int check_space(const swap_args *a, const swap_plan *p, p3_err *e) {
        char need_s[32], free_s[32], size_s[32];
        uint64_t need = a->size + DIV_ROUND_UP(a->size, 10), avail;
        struct statvfs vfs;

        if (statvfs(p->dir, &vfs) < 0)
                return p3_errf(e, -errno, "cannot inspect the free space of %s: %s", p->dir,
                               strerror(errno));
        avail = (uint64_t) vfs.f_bavail * vfs.f_frsize;
        if (avail >= need)
                return 0;
        /* Two decimals: "needs 1.1 GiB, 1.1 GiB is free" would read as a contradiction. */
        format_size_prec(need_s, sizeof(need_s), need, 2);
        format_size_prec(free_s, sizeof(free_s), avail, 2);
        format_size(size_s, sizeof(size_s), a->size);
        return p3_errf(e, -ENOSPC, "not enough space on the filesystem of %s for %s of swap: it "
                       "needs %s (the size plus a 10%% margin) and %s is free", p->dir, size_s,
                       need_s, free_s);
}

static int check_all(const swap_args *a, swap_plan *p, p3_err *e) {
        int r;

        r = check_path_free(a->path, e);
        if (r < 0)
                return r;
        r = check_dir(a, p, e);
        if (r < 0)
                return r;
        r = check_filesystem(p, e);
        if (r < 0)
                return r;
        r = check_space(a, p, e);
        if (r < 0)
                return r;
        r = swap_find_program("mkswap", &p->mkswap);
        if (r < 0)
                return p3_errf(e, r, "mkswap was not found; install util-linux");
        return a->persist ? swap_unit_prepare(&p->unit, a->unit_dir, a->path, e) : 0;
}

static const char *method_name(const swap_plan *p) {
        if (p->fs->kind != FS_FALLOCATE)
                return "zero-fill";
        return p->fs->magic == BTRFS_SUPER_MAGIC ? "NOCOW, fallocate" : "fallocate";
}

static void print_dry_run(const swap_args *a, const swap_plan *p) {
        char size_s[32];

        format_size(size_s, sizeof(size_s), a->size);
        printf("Would create %s (%s, %s on %s)\n", a->path, size_s, method_name(p), p->fs_name);
        printf("Would format it with %s and enable it with swapon\n", p->mkswap);
        if (a->persist)
                printf("Would write %s and link it into %s/\n", p->unit.unit_path,
                       p->unit.wants_dir);
        printf("Nothing was changed (--dry-run)\n");
}

/* ---- helper programs ---- */

/* Relative $PATH entries are skipped: root does not run programs from the current
 * directory. sudo's secure_path may lack the sbin directories, hence the fallback. */
int swap_find_program(const char *name, char **ret) {
        _cleanup_free_ char *path = strdup(getenv("PATH") ?: "");
        static const char *const fallback[] = { "/usr/sbin", "/sbin" };
        char *s;

        if (!path)
                return -ENOMEM;
        for (char *dir = strtok_r(path, ":", &s); dir; dir = strtok_r(NULL, ":", &s))
                if (dir[0] == '/' && asprintf(ret, "%s/%s", dir, name) >= 0) {
                        if (access(*ret, X_OK) == 0)
                                return 0;
                        free(*ret);
                }
        for (size_t i = 0; i < ELEMENTSOF(fallback); i++)
                if (asprintf(ret, "%s/%s", fallback[i], name) >= 0) {
                        if (access(*ret, X_OK) == 0)
                                return 0;
                        free(*ret);
                }
        *ret = NULL;
        return -ENOENT;
}

static void show_output(int fd) {
        char buf[4096];
        ssize_t n;

        if (lseek(fd, 0, SEEK_SET) < 0)
                return;
        while ((n = read(fd, buf, sizeof(buf))) > 0)
                if (write(STDERR_FILENO, buf, n) != n)
                        return;
}

static int wait_child(pid_t pid, int *status) {
        while (waitpid(pid, status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

int swap_run_quiet(char *const argv[], p3_err *e) {
        _cleanup_close_ int out = memfd_create("p3samctl-output", MFD_CLOEXEC);
        posix_spawn_file_actions_t fa;
        int status, r;
        pid_t pid;

        if (out < 0)
                return p3_errf(e, -errno, "cannot run %s: %s", argv[0], strerror(errno));
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, out, STDERR_FILENO);
        fflush(NULL);
        r = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0)
                return p3_errf(e, -r, "cannot run %s: %s", argv[0], strerror(r));
        r = wait_child(pid, &status);
        if (r < 0)
                return p3_errf(e, r, "cannot wait for %s: %s", argv[0], strerror(-r));
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        show_output(out);
        if (WIFEXITED(status))
                return p3_errf(e, -EIO, "%s failed with exit status %d", argv[0],
                               WEXITSTATUS(status));
        return p3_errf(e, -EIO, "%s was killed by signal %s", argv[0],
                       strsignal(WTERMSIG(status)));
}

/* ---- the swap file ---- */

/* root:root 0600 whatever the umask or a setgid directory: swap holds the memory of every
 * process. O_EXCL: an existing file is never taken over, even one made since the check. */
static int create_file(const char *path, int *ret_fd, p3_err *e) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

        if (fd < 0)
                return p3_errf(e, -errno, "cannot create %s: %s", path, strerror(errno));
        *ret_fd = fd;
        if (fchown(fd, 0, 0) < 0 || fchmod(fd, 0600) < 0)
                return p3_errf(e, -errno, "cannot make %s private to root: %s", path,
                               strerror(errno));
        return 0;
}

/* btrfs refuses swap on copy-on-write files, and the flag only takes on an empty file. */
static int set_nocow(int fd, const char *path, p3_err *e) {
        int flags;

        if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
                return p3_errf(e, -errno, "cannot read the attributes of %s: %s", path,
                               strerror(errno));
        flags |= FS_NOCOW_FL;
        if (ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0)
                return p3_errf(e, -errno, "cannot turn off copy-on-write for %s: %s", path,
                               strerror(errno));
        return 0;
}

static void show_progress(const char *path, uint64_t done, uint64_t total) {
        static const char bar[] = "##############################";
        char done_s[32], total_s[32];
        int pct = (int) ((double) done * 100 / (double) total);

        format_size(done_s, sizeof(done_s), done);
        format_size(total_s, sizeof(total_s), total);
        fprintf(stderr, "\rZero-filling %s [%-30.*s] %3d%% (%s/%s)", path,
                pct * 30 / 100, bar, pct, done_s, total_s);
}

static int write_block(int fd, const char *buf, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, buf, n);

                if (k < 0 && errno == EINTR && !cancelled)
                        continue;
                if (k < 0)
                        return -errno;
                buf += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Every block written, so that the file has no holes on any filesystem. */
static int zero_fill(int fd, const char *path, uint64_t size, p3_err *e) {
        _cleanup_free_ char *zeros = calloc(1, ZERO_BLOCK);
        bool tty = isatty(STDERR_FILENO);
        int last = -1, r = 0;
        uint64_t done = 0;

        if (!zeros)
                return -ENOMEM;
        while (done < size && r == 0) {
                size_t n = (size_t) MIN((uint64_t) ZERO_BLOCK, size - done);
                int pct = (int) ((double) done * 100 / (double) size);

                if (tty && pct != last)
                        show_progress(path, done, size);
                last = pct;
                r = cancelled ? -ECANCELED : write_block(fd, zeros, n);
                done += r == 0 ? n : 0;
        }
        if (tty) {
                if (r == 0)
                        show_progress(path, done, size);
                fputs("\r\033[K", stderr);
        }
        if (r == -ECANCELED)
                return p3_errf(e, r, "interrupted while writing %s", path);
        if (r < 0)
                return p3_errf(e, r, "cannot write %s: %s", path, strerror(-r));
        return 0;
}

static int allocate(int fd, const swap_args *a, const swap_plan *p, const char **method,
                    p3_err *e) {
        *method = "zero-fill";
        if (p->fs->kind == FS_FALLOCATE) {
                if (fallocate(fd, 0, 0, (off_t) a->size) == 0) {
                        *method = "fallocate";
                        return 0;
                }
                if (errno != EOPNOTSUPP)
                        return p3_errf(e, -errno, "cannot allocate %s: %s", a->path,
                                       strerror(errno));
        }
        return zero_fill(fd, a->path, a->size, e);
}

static int make_file(const swap_args *a, const swap_plan *p, bool *created, p3_err *e) {
        _cleanup_close_ int fd = -1;
        const char *method;
        char size_s[32];
        int r;

        r = create_file(a->path, &fd, e);
        *created = fd >= 0;
        if (r < 0)
                return r;
        if (p->fs->magic == BTRFS_SUPER_MAGIC) {
                r = set_nocow(fd, a->path, e);
                if (r < 0)
                        return r;
        }
        r = allocate(fd, a, p, &method, e);
        if (r < 0)
                return r;
        if (fsync(fd) < 0)
                return p3_errf(e, -errno, "cannot write %s: %s", a->path, strerror(errno));
        format_size(size_s, sizeof(size_s), a->size);
        printf("Created %s (%s, %s)\n", a->path, size_s, method);
        return 0;
}

static const char *swapon_hint(int r) {
        switch (r) {
        case -EPERM:
                return " (containers are usually not allowed to enable swap)";
        case -EINVAL:
                return " (the filesystem or the kernel does not take swap files here)";
        case -EBUSY:
                return " (it is already in use)";
        default:
                return "";
        }
}

static int enable_swap(const char *path, p3_err *e) {
        if (swapon(path, 0) < 0) {
                int r = -errno;

                return p3_errf(e, r, "cannot enable swap on %s: %s%s", path, strerror(-r),
                               swapon_hint(r));
        }
        printf("Enabled swap on %s\n", path);
        return 0;
}

/* ---- the run ---- */

static void on_signal(_unused_ int sig) {
        cancelled = 1;
}

/* SIGINT and friends stop the run at the next step, which then takes its work back,
 * instead of leaving half a swap file behind. */
static void catch_signals(bool on, struct sigaction old[3]) {
        static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
        struct sigaction sa = { .sa_handler = on_signal };

        for (size_t i = 0; i < ELEMENTSOF(sigs); i++)
                (void) sigaction(sigs[i], on ? &sa : &old[i], on ? &old[i] : NULL);
}

static void undo(const swap_args *a, swap_plan *p, bool created, bool active) {
        if (a->persist)
                swap_unit_undo(&p->unit);
        if (active && swapoff(a->path) < 0) {
                /* Unlinking an active swap file would leave it in use with no name to
                 * swapoff; it stays. */
                fprintf(stderr, "p3samctl: cannot disable swap on %s again: %s; it is left in "
                        "place\n", a->path, strerror(errno));
                return;
        }
        if (active)
                printf("Disabled swap on %s again\n", a->path);
        if (created && unlink(a->path) == 0)
                printf("Removed %s again\n", a->path);
}

static int step(int r, p3_err *e) {
        if (r == 0 && cancelled)
                return p3_errf(e, -ECANCELED, "interrupted");
        return r;
}

static int setup(const swap_args *a, swap_plan *p, p3_err *e) {
        bool created = false, active = false;
        char *mkswap_argv[] = { p->mkswap, a->path, NULL };
        int r;

        r = step(make_file(a, p, &created, e), e);
        if (r == 0)
                r = step(swap_run_quiet(mkswap_argv, e), e);
        if (r == 0) {
                r = enable_swap(a->path, e);
                active = r == 0;
                r = step(r, e);
        }
        if (r == 0 && a->persist)
                r = step(swap_unit_install(&p->unit, a->path, e), e);
        if (r < 0)
                undo(a, p, created, active);
        return r;
}

static int finish(const swap_args *a) {
        p3_err e = {};
        int r;

        if (!a->persist) {
                printf("Not persistent: it is gone after a reboot (--persist keeps it)\n");
                return CTL_EXIT_OK;
        }
        /* The unit and swap are in place; a reload that fails only delays systemd's view. */
        r = swap_unit_reload(&e);
        if (r < 0)
                fprintf(stderr, "p3samctl: warning: %s; the unit takes effect at the next boot\n",
                        p3_err_msg(&e, r));
        return CTL_EXIT_OK;
}

static void plan_done(swap_plan *p) {
        free(p->dir);
        free(p->mkswap);
        swap_unit_done(&p->unit);
}

static int run(const swap_args *a, swap_plan *p) {
        struct sigaction old[3];
        p3_err e = {};
        int r;

        r = check_all(a, p, &e);
        if (r < 0)
                return ctl_fail(CTL_EXIT_FAILURE, "%s", p3_err_msg(&e, r));
        if (a->dry_run) {
                print_dry_run(a, p);
                return CTL_EXIT_OK;
        }
        cancelled = 0;
        catch_signals(true, old);
        r = setup(a, p, &e);
        catch_signals(false, old);
        /* A signal also reaches mkswap, which then fails: the cause is the interruption. */
        if (r < 0 && cancelled)
                return ctl_fail(CTL_EXIT_CANCELLED, "interrupted while setting up %s", a->path);
        if (r < 0)
                return ctl_fail(CTL_EXIT_FAILURE, "%s", p3_err_msg(&e, r));
        return finish(a);
}

int verb_setup_swap(int argc, char **argv) {
        /* getopt_long() reorders argv; the root hint repeats the command as typed. */
        _cleanup_free_ char **typed = malloc(sizeof(char *) * (size_t) (argc + 1));
        swap_args a = {};
        swap_plan p = {};
        int r;

        if (!typed)
                return ctl_fail(CTL_EXIT_FAILURE, "out of memory");
        memcpy(typed, argv, sizeof(char *) * (size_t) (argc + 1));
        r = parse_options(argc, argv, &a);
        if (r == 0 && geteuid() != 0)
                r = fail_not_root(argc, typed);
        else if (r == 0)
                r = run(&a, &p);
        plan_done(&p);
        free(a.path);
        return r < 0 ? CTL_EXIT_OK : r;
}
