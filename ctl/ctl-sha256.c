/* SPDX-License-Identifier: MIT */
/* SHA-256 as FIPS 180-4 section 6.2 describes it: 64-byte blocks, big-endian words, the
 * length in bits appended after a single 1 bit and zero padding. */
#include "ctl-sha256.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"

/* The first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
static const uint32_t K[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t rotr(uint32_t x, unsigned n) {
        return (x >> n) | (x << (32 - n));
}

static inline uint32_t load_be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static inline void store_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static void compress(uint32_t h[8], const uint8_t block[64]) {
        uint32_t w[64];
        for (int t = 0; t < 16; t++)
                w[t] = load_be32(block + 4 * t);
        for (int t = 16; t < 64; t++) {
                uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
                uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
                w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }

        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
        for (int t = 0; t < 64; t++) {
                uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
                uint32_t ch = (e & f) ^ (~e & g);
                uint32_t t1 = k + S1 + ch + K[t] + w[t];
                uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
                uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
                uint32_t t2 = S0 + maj;
                k = g;
                g = f;
                f = e;
                e = d + t1;
                d = c;
                c = b;
                b = a;
                a = t1 + t2;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
        h[5] += f;
        h[6] += g;
        h[7] += k;
}

void sha256_init(sha256_ctx *c) {
        /* The first 32 bits of the fractional parts of the square roots of the first 8 primes. */
        static const uint32_t H0[8] = {
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
        };
        memcpy(c->h, H0, sizeof(H0));
        c->length = 0;
        c->fill = 0;
}

void sha256_update(sha256_ctx *c, const void *data, size_t n) {
        const uint8_t *p = data;
        c->length += n;
        if (c->fill) {
                size_t take = MIN(n, sizeof(c->block) - c->fill);
                memcpy(c->block + c->fill, p, take);
                c->fill += take;
                p += take;
                n -= take;
                if (c->fill < sizeof(c->block))
                        return;
                compress(c->h, c->block);
                c->fill = 0;
        }
        /* Whole blocks straight from the caller's buffer: no copy on the bulk path. */
        for (; n >= 64; p += 64, n -= 64)
                compress(c->h, p);
        memcpy(c->block, p, n);
        c->fill = n;
}

void sha256_final(sha256_ctx *c, uint8_t digest[SHA256_DIGEST_SIZE]) {
        uint64_t bits = c->length * 8;
        c->block[c->fill++] = 0x80;
        if (c->fill > 56) { /* no room for the length: pad this block, length in the next */
                memset(c->block + c->fill, 0, 64 - c->fill);
                compress(c->h, c->block);
                c->fill = 0;
        }
        memset(c->block + c->fill, 0, 56 - c->fill);
        for (int i = 0; i < 8; i++)
                c->block[56 + i] = (uint8_t) (bits >> (56 - 8 * i));
        compress(c->h, c->block);
        for (int i = 0; i < 8; i++)
                store_be32(digest + 4 * i, c->h[i]);
}

void sha256_hex(const uint8_t digest[SHA256_DIGEST_SIZE], char hex[SHA256_HEX_SIZE]) {
        static const char digits[] = "0123456789abcdef";
        for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
                hex[2 * i] = digits[digest[i] >> 4];
                hex[2 * i + 1] = digits[digest[i] & 15];
        }
        hex[2 * SHA256_DIGEST_SIZE] = 0;
}

int sha256_fd(int fd, uint8_t digest[SHA256_DIGEST_SIZE]) {
        enum { CHUNK = 1 << 20 };
        _cleanup_free_ uint8_t *buf = malloc(CHUNK);
        if (!buf)
                return -ENOMEM;

        sha256_ctx c;
        sha256_init(&c);
        for (off_t off = 0;;) {
                ssize_t k = pread(fd, buf, CHUNK, off);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                sha256_update(&c, buf, (size_t) k);
                off += k;
        }
        sha256_final(&c, digest);
        return 0;
}
