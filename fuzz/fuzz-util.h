/* SPDX-License-Identifier: MIT */
/* Helpers shared by the libFuzzer targets: the input as a file the code under test can open. */
#pragma once

#include <linux/memfd.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A memfd holding the input, at offset 0; -1 on failure (the run is then skipped). */
static inline int fuzz_memfd(const uint8_t *data, size_t size) {
        /* syscall(): memfd_create() is declared only under _GNU_SOURCE, which the targets that
         * include a daemon source file cannot define first. */
        int fd = (int) syscall(SYS_memfd_create, "fuzz-input", MFD_CLOEXEC);
        if (fd < 0)
                return -1;
        size_t done = 0;
        while (done < size) {
                ssize_t n = write(fd, data + done, size - done);
                if (n <= 0) {
                        close(fd);
                        return -1;
                }
                done += (size_t) n;
        }
        if (lseek(fd, 0, SEEK_SET) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* The path under which the code under test opens fd as a file of its own. */
static inline void fuzz_fd_path(int fd, char *buf, size_t len) {
        snprintf(buf, len, "/proc/self/fd/%d", fd);
}
