/*
 * md5.c - MD5 through OpenSSL's EVP interface.
 *
 * The S3 sink checks every part it uploads (and every part it keeps from an
 * interrupted upload) against the ETag the server returns, which is the
 * part's MD5 for non-KMS objects, so this runs once over every byte sent;
 * libcrypto's assembly is what the CPU does fastest. The digest is fetched
 * from the default provider once per process.
 */
#include "md5.h"
#include "error.h"
#include "hex.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

#include "banned.h"

static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_fetched;
static const EVP_MD *md_md5;

static void md_init_once(void)
{
	md_fetched = EVP_MD_fetch(NULL, "MD5", NULL);
	md_md5 = md_fetched ? md_fetched : EVP_md5();
}

int rh_md5_init(struct rh_md5 *c)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	pthread_once(&md_once, md_init_once);
	c->ctx = NULL;
	if (!ctx || !md_md5 || EVP_DigestInit_ex2(ctx, md_md5, NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return rh_error_set(RH_ENOMEM, "cannot start an md5 digest (libcrypto)");
	}
	c->ctx = ctx;
	return 0;
}

void rh_md5_update(struct rh_md5 *c, const void *data, size_t len)
{
	if (c->ctx && len && EVP_DigestUpdate(c->ctx, data, len) != 1) {
		EVP_MD_CTX_free(c->ctx); /* final then gives zeros: matches no ETag */
		c->ctx = NULL;
	}
}

void rh_md5_final(struct rh_md5 *c, uint8_t out[16])
{
	unsigned int n = 0;

	if (!c->ctx || EVP_DigestFinal_ex(c->ctx, out, &n) != 1 || n != 16)
		memset(out, 0, 16);
	rh_md5_free(c);
}

void rh_md5_free(struct rh_md5 *c)
{
	EVP_MD_CTX_free(c->ctx);
	c->ctx = NULL;
}

void rh_md5_hex(char hex[33], const uint8_t digest[16])
{
	rh_hex_encode(hex, digest, 16);
}

void rh_md5_buf_hex(char hex[33], const void *data, size_t len)
{
	struct rh_md5 c;
	uint8_t d[16];

	rh_md5_init(&c);
	rh_md5_update(&c, data, len);
	rh_md5_final(&c, d);
	rh_md5_hex(hex, d);
}
