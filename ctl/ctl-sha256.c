/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <unistd.h>

#include "ctl-sha256.h"
#include "macro.h"

void sha256_hex(const uint8_t digest[SHA256_DIGEST_SIZE], char hex[SHA256_HEX_SIZE]) {
        for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++)
                snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

static void md_ctx_freep(EVP_MD_CTX **c) {
        EVP_MD_CTX_free(*c);
}

int sha256_fd(int fd, uint8_t digest[SHA256_DIGEST_SIZE]) {
        __attribute__((cleanup(md_ctx_freep))) EVP_MD_CTX *c = EVP_MD_CTX_new();
        if (!c)
                return -ENOMEM;
        if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1)
                return -EIO;
        static uint8_t buf[1 << 20];
        for (off_t off = 0;;) {
                ssize_t n = pread(fd, buf, sizeof(buf), off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                if (EVP_DigestUpdate(c, buf, (size_t) n) != 1)
                        return -EIO;
                off += n;
        }
        unsigned len = 0;
        if (EVP_DigestFinal_ex(c, digest, &len) != 1 || len != SHA256_DIGEST_SIZE)
                return -EIO;
        return 0;
}
