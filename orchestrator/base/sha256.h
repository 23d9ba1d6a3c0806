/*
 * sha256.h - SHA-256 (FIPS 180-4), streaming.
 *
 * Our own because the fixed dependency set has no hash API we may use
 * directly. Every byte rehydra moves is hashed while it streams.
 */
#ifndef RH_SHA256_H
#define RH_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct rh_sha256 {
	uint32_t h[8];
	uint64_t len;
	uint8_t buf[64];
	size_t n;
};

void rh_sha256_init(struct rh_sha256 *c);
void rh_sha256_update(struct rh_sha256 *c, const void *data, size_t len);
void rh_sha256_final(struct rh_sha256 *c, uint8_t out[32]);

/* Lowercase hex of a digest into hex[65]. */
void rh_sha256_hex(char hex[65], const uint8_t digest[32]);

/* One-shot over a buffer, hex out. */
void rh_sha256_buf_hex(char hex[65], const void *data, size_t len);

/* Hashes a file's bytes (streaming). Returns 0, or -errno-style RH_EIO with
 * rh_error_last() naming the file. *size gets the byte count if not NULL. */
int rh_sha256_file_hex(char hex[65], uint64_t *size, const char *path);

#endif
