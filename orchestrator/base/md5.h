/*
 * md5.h - MD5 (RFC 1321), streaming, through OpenSSL's libcrypto.
 *
 * Not for security: S3 reports each uploaded part's MD5 as its ETag, so
 * computing the same digest locally is how the S3 sink proves the bytes the
 * server stored are the bytes it read. The content itself is authenticated
 * by SHA-256 against the manifest.
 *
 * Ownership as for struct rh_sha256 (sha256.h): init fills the context,
 * final or free empties it, free of an empty context does nothing.
 */
#ifndef RH_MD5_H
#define RH_MD5_H

#include <stddef.h>
#include <stdint.h>

struct rh_md5 {
	void *ctx; /* EVP_MD_CTX, owned; NULL when empty */
};

/* Returns 0, or RH_ENOMEM with the message set (then final gives zeros). */
int rh_md5_init(struct rh_md5 *c);
void rh_md5_update(struct rh_md5 *c, const void *data, size_t len);
void rh_md5_final(struct rh_md5 *c, uint8_t out[16]);
void rh_md5_free(struct rh_md5 *c);

/* Lowercase hex of a digest into hex[33]. */
void rh_md5_hex(char hex[33], const uint8_t digest[16]);

/* One-shot over a buffer, hex out. */
void rh_md5_buf_hex(char hex[33], const void *data, size_t len);

#endif
