/* SPDX-License-Identifier: MIT */
/* SHA-256 (FIPS 180-4), streaming. The client checks downloaded checkpoints with it; none of
 * our dependencies exports one (libsystemd keeps its copy internal) and OpenSSL is not
 * worth a dependency for one hash. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32
#define SHA256_HEX_SIZE (2 * SHA256_DIGEST_SIZE + 1)

typedef struct sha256_ctx {
        uint32_t h[8];
        uint64_t length; /* bytes hashed so far */
        uint8_t block[64];
        size_t fill; /* bytes waiting in block */
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
void sha256_final(sha256_ctx *c, uint8_t digest[SHA256_DIGEST_SIZE]);

/* Lower-case hex of a digest, NUL-terminated. */
void sha256_hex(const uint8_t digest[SHA256_DIGEST_SIZE], char hex[SHA256_HEX_SIZE]);

/* Hash everything readable from fd, from offset 0 (pread: the descriptor's own position is
 * left alone). Returns 0 or a negative errno. */
int sha256_fd(int fd, uint8_t digest[SHA256_DIGEST_SIZE]);
