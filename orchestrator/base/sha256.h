/*
 * sha256.h - SHA-256 (FIPS 180-4), streaming, through OpenSSL's libcrypto.
 *
 * Every byte rehydra moves is hashed while it streams, so this is on the
 * hot path of every sync and of `audit verify`: libcrypto picks the fastest
 * code the CPU has (x86 SHA-NI, AVX2, ARMv8 crypto extensions).
 *
 * A context owns a libcrypto digest context from rh_sha256_init until
 * rh_sha256_final or rh_sha256_free, whichever comes first; both leave it
 * empty, and rh_sha256_free of an empty (zeroed or finished) context does
 * nothing, so `struct rh_sha256 c = { 0 };` ... `rh_sha256_free(&c);` at a
 * function's one exit is always right. A context is used by one thread.
 */
#ifndef RH_SHA256_H
#define RH_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct rh_sha256 {
	void *ctx; /* EVP_MD_CTX, owned; NULL when empty */
};

/* Starts a digest in an empty or uninitialised context (finish or free one
 * in progress first). Returns 0, or RH_ENOMEM with the message set; after a failure update does
 * nothing and final gives a digest of zeros, which matches no manifest. */
int rh_sha256_init(struct rh_sha256 *c);
void rh_sha256_update(struct rh_sha256 *c, const void *data, size_t len);
/* Writes the digest and empties the context. */
void rh_sha256_final(struct rh_sha256 *c, uint8_t out[32]);
/* Empties the context without a digest (an abandoned stream). */
void rh_sha256_free(struct rh_sha256 *c);

/* Lowercase hex of a digest into hex[65]. */
void rh_sha256_hex(char hex[65], const uint8_t digest[32]);

/* One-shot over a buffer, hex out (a digest of zeros if libcrypto fails). */
void rh_sha256_buf_hex(char hex[65], const void *data, size_t len);

/* One-shot over the concatenation of n pieces, hex out: the bytes of a
 * record without one of its members, say, with no copy and no allocation
 * (one context per thread is reused). */
struct iovec;
void rh_sha256_iov_hex(char hex[65], const struct iovec *iov, int n);

/* Hashes a file's bytes (streaming). Returns 0, or -errno-style RH_EIO with
 * rh_error_last() naming the file. *size gets the byte count if not NULL. */
int rh_sha256_file_hex(char hex[65], uint64_t *size, const char *path);

#endif
