/* SPDX-License-Identifier: MIT */
/* A stand-in for systemd's notification socket in the daemon tests: binds a datagram socket
 * at argv[1] and prints every message it receives, one line per assignment, until killed. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
        if (argc != 2)
                return 2;
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[1]);
        unlink(argv[1]);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                perror("bind");
                return 1;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        char buf[4096];
        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
                if (n < 0)
                        return 1;
                buf[n] = 0;
                fputs(buf, stdout);
                if (n == 0 || buf[n - 1] != '\n')
                        fputc('\n', stdout);
        }
}
