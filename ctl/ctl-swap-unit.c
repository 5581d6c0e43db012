/* SPDX-License-Identifier: MIT */
/* setup-swap --persist: a systemd .swap unit for the swap file, linked into
 * swap.target.wants/ the way "systemctl enable" would, so that it is back after a reboot. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include "ctl-swap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"

/* systemd refuses unit names of UNIT_NAME_MAX (256) bytes or more. */
#define UNIT_NAME_MAX 256

static bool unit_char_plain(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == ':' || c == '_' || c == '.';
}

/* One path byte as systemd writes it in a unit name. first: a leading "." would make the
 * unit a hidden file, which systemd skips, so it is escaped there and only there. */
static char *escape_byte(char *t, char c, bool first) {
        static const char hex[] = "0123456789abcdef";

        if (c == '/')
                *t++ = '-';
        else if (unit_char_plain(c) && !(first && c == '.'))
                *t++ = c;
        else {
                *t++ = '\\';
                *t++ = 'x';
                *t++ = hex[(unsigned char) c >> 4];
                *t++ = hex[(unsigned char) c & 15];
        }
        return t;
}

/* As unit_name_path_escape(): repeated slashes and "." components collapse, leading and
 * trailing slashes go, "/" itself is "-"; ".." cannot be named (-EINVAL). */
int swap_unit_name_from_path(const char *path, const char *suffix, char **ret) {
        _cleanup_free_ char *s = malloc(strlen(path) * 4 + strlen(suffix) + 2);
        char *t;

        if (!s)
                return -ENOMEM;
        t = s;
        for (const char *p = path; *p;) {
                size_t n;

                p += strspn(p, "/");
                n = strcspn(p, "/");
                if (n == 0 || (n == 1 && p[0] == '.')) {
                        p += n;
                        continue;
                }
                if (n == 2 && p[0] == '.' && p[1] == '.')
                        return -EINVAL;
                if (t != s)
                        t = escape_byte(t, '/', false);
                for (size_t i = 0; i < n; i++)
                        t = escape_byte(t, p[i], t == s);
                p += n;
        }
        if (t == s)
                *t++ = '-';
        strcpy(t, suffix);
        if (strlen(s) >= UNIT_NAME_MAX)
                return -ENAMETOOLONG;
        *ret = TAKE_PTR(s);
        return 0;
}

static char *path_join(const char *a, const char *b) {
        char *s;

        return asprintf(&s, "%s/%s", a, b) < 0 ? NULL : s;
}

/* The nearest existing directory at or above path must be writable: a read-only /etc is
 * found before a swap file exists, not after. */
static int check_dir_writable(const char *path, p3_err *e) {
        _cleanup_free_ char *p = strdup(path);
        struct stat st;

        if (!p)
                return -ENOMEM;
        for (;;) {
                char *slash;

                if (stat(p, &st) == 0)
                        break;
                if (errno != ENOENT)
                        return p3_errf(e, -errno, "cannot inspect %s: %s", p, strerror(errno));
                slash = strrchr(p, '/');
                if (!slash && strcmp(p, ".") == 0)
                        return p3_errf(e, -ENOENT, "cannot inspect the current directory");
                if (!slash)
                        strcpy(p, "."); /* fits: path is not empty */
                else
                        *(slash == p ? slash + 1 : slash) = '\0';
        }
        if (!S_ISDIR(st.st_mode))
                return p3_errf(e, -ENOTDIR, "cannot write units under %s: %s is not a directory",
                               path, p);
        if (access(p, W_OK) < 0)
                return p3_errf(e, -errno, "cannot write units under %s: %s", path,
                               strerror(errno));
        return 0;
}

static int check_absent(const char *path, p3_err *e) {
        struct stat st;

        if (lstat(path, &st) == 0)
                return p3_errf(e, -EEXIST, "%s already exists; not replacing it", path);
        if (errno != ENOENT)
                return p3_errf(e, -errno, "cannot inspect %s: %s", path, strerror(errno));
        return 0;
}

int swap_unit_prepare(swap_unit *u, const char *unit_dir, const char *what, p3_err *e) {
        int r;

        r = swap_unit_name_from_path(what, ".swap", &u->name);
        if (r < 0)
                return p3_errf(e, r, "cannot name a systemd unit after %s: %s", what,
                               strerror(-r));
        u->unit_dir = strdup(unit_dir);
        u->unit_path = path_join(unit_dir, u->name);
        u->wants_dir = path_join(unit_dir, "swap.target.wants");
        u->link_path = u->wants_dir ? path_join(u->wants_dir, u->name) : NULL;
        if (!u->unit_dir || !u->unit_path || !u->link_path)
                return -ENOMEM;

        r = check_absent(u->unit_path, e);
        if (r < 0)
                return r;
        r = check_absent(u->link_path, e);
        if (r < 0)
                return r;
        return check_dir_writable(unit_dir, e);
}

/* mkdir -p that remembers the outermost directory it made, so that the undo can take the
 * whole new branch away again. */
static int mkdir_parents(swap_unit *u, const char *path) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1;; s++) {
                bool end = *s == '\0';

                if (!end && *s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, 0755) == 0) {
                        if (!u->created_dir && !(u->created_dir = strdup(p)))
                                return -ENOMEM;
                } else if (errno != EEXIST)
                        return -errno;
                if (end)
                        return 0;
                *s = '/';
        }
}

/* systemd expands "%" specifiers in both Description= and What=. */
static void write_escaped(FILE *f, const char *s) {
        for (; *s; s++) {
                if (*s == '%')
                        fputc('%', f);
                fputc(*s, f);
        }
}

static int write_unit_text(FILE *f, const char *what) {
        fputs("# Written by p3samctl setup-swap.\n"
              "[Unit]\n"
              "Description=Swap file ", f);
        write_escaped(f, what);
        fputs("\nDocumentation=man:p3samctl(1)\n"
              "\n"
              "[Swap]\n"
              "What=", f);
        write_escaped(f, what);
        fputs("\n"
              "\n"
              "[Install]\n"
              "WantedBy=swap.target\n", f);
        if (fflush(f) != 0 || ferror(f))
                return -EIO;
        return fsync(fileno(f)) < 0 ? -errno : 0;
}

static int write_unit_file(swap_unit *u, const char *what, p3_err *e) {
        _cleanup_fclose_ FILE *f = NULL;
        int fd, r;

        fd = open(u->unit_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return p3_errf(e, -errno, "cannot create %s: %s", u->unit_path, strerror(errno));
        u->wrote_unit = true;
        f = fdopen(fd, "w");
        if (!f) {
                close(fd);
                return p3_errf(e, -errno, "cannot write %s: %s", u->unit_path, strerror(errno));
        }
        /* 0644 whatever the umask: systemd and "systemctl cat" read it as other users too. */
        if (fchmod(fd, 0644) < 0)
                return p3_errf(e, -errno, "cannot chmod %s: %s", u->unit_path, strerror(errno));
        r = write_unit_text(f, what);
        if (r < 0)
                return p3_errf(e, r, "cannot write %s: %s", u->unit_path, strerror(-r));
        r = fclose(TAKE_PTR(f));
        if (r != 0)
                return p3_errf(e, -errno, "cannot write %s: %s", u->unit_path, strerror(errno));
        return 0;
}

/* Relative, as "../name", so that the link still holds when the tree is used as another
 * root (an image being built). */
static int link_unit(swap_unit *u, p3_err *e) {
        _cleanup_free_ char *target = path_join("..", u->name);
        int r;

        if (!target)
                return -ENOMEM;
        r = mkdir_parents(u, u->wants_dir);
        if (r < 0)
                return p3_errf(e, r, "cannot create %s: %s", u->wants_dir, strerror(-r));
        if (symlink(target, u->link_path) < 0)
                return p3_errf(e, -errno, "cannot link %s: %s", u->link_path, strerror(errno));
        u->linked = true;
        return 0;
}

int swap_unit_install(swap_unit *u, const char *what, p3_err *e) {
        int r;

        r = mkdir_parents(u, u->unit_dir);
        if (r < 0)
                return p3_errf(e, r, "cannot create %s: %s", u->unit_dir, strerror(-r));
        r = write_unit_file(u, what, e);
        if (r < 0)
                return r;
        r = link_unit(u, e);
        if (r < 0)
                return r;
        printf("Wrote %s and enabled it\n", u->unit_path);
        return 0;
}

/* rmdir from the wants directory up to the outermost one this run created; rmdir fails on
 * anything not empty, so nothing else can go. */
static void remove_created_dirs(swap_unit *u) {
        _cleanup_free_ char *p = NULL;
        size_t top;

        if (!u->created_dir)
                return;
        p = strdup(u->wants_dir);
        if (!p)
                return;
        top = strlen(u->created_dir);
        while (strlen(p) >= top) {
                char *slash = strrchr(p, '/');

                if (strncmp(p, u->created_dir, top) == 0 && (p[top] == '\0' || p[top] == '/'))
                        (void) rmdir(p);
                if (!slash || slash == p)
                        break;
                *slash = '\0';
        }
}

void swap_unit_undo(swap_unit *u) {
        if (u->linked && unlink(u->link_path) == 0)
                u->linked = false;
        if (u->wrote_unit && unlink(u->unit_path) == 0)
                u->wrote_unit = false;
        remove_created_dirs(u);
}

void swap_unit_done(swap_unit *u) {
        free(u->name);
        free(u->unit_dir);
        free(u->unit_path);
        free(u->wants_dir);
        free(u->link_path);
        free(u->created_dir);
        *u = (swap_unit) {};
}

int swap_unit_reload(p3_err *e) {
        _cleanup_free_ char *systemctl = NULL;
        int r;

        if (access("/run/systemd/system", F_OK) < 0) {
                printf("systemd is not running; the unit takes effect at the next boot\n");
                return 0;
        }
        r = swap_find_program("systemctl", &systemctl);
        if (r < 0)
                return p3_errf(e, r, "systemd is running but systemctl was not found");
        r = swap_run_quiet((char *[]) { systemctl, (char *) "daemon-reload", NULL }, e);
        if (r < 0)
                return r;
        printf("Reloaded systemd (systemctl daemon-reload)\n");
        return 0;
}
