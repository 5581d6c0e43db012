/* SPDX-License-Identifier: MIT */
/* SHA-256 of a downloaded file, for fetch-model --sha256: OpenSSL's libcrypto does the hashing
 * (libcurl already brings it in), this only reads the file and formats the digest. */
#pragma once

#include <stdint.h>

#define SHA256_DIGEST_SIZE 32
#define SHA256_HEX_SIZE (2 * SHA256_DIGEST_SIZE + 1)

/* Lower-case hex of a digest, NUL-terminated. */
void sha256_hex(const uint8_t digest[SHA256_DIGEST_SIZE], char hex[SHA256_HEX_SIZE]);

/* Hash everything readable from fd, from offset 0 (pread: the descriptor's own position is
 * left alone). Returns 0 or a negative errno (-EIO when libcrypto fails). */
int sha256_fd(int fd, uint8_t digest[SHA256_DIGEST_SIZE]);
