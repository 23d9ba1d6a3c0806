/*
 * sha256.c - SHA-256 through OpenSSL's EVP interface.
 *
 * Every byte rehydra moves is hashed while it streams, and a portable C
 * SHA-256 runs at a fifth of what the CPU can do with its SHA instructions;
 * libcrypto is already in the process (beneath libcurl and libssh2) and
 * picks the fastest implementation the CPU offers at run time. The digest
 * is fetched from the default provider once per process (an implicit fetch
 * per context would look it up every time); one-shot digests reuse one
 * context per thread, so hashing many small records (`audit verify`) costs
 * no allocation per record.
 */
#include "sha256.h"
#include "error.h"
#include "hex.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "banned.h"

#define RH_SHA256_FILE_BUF (1u << 20)

static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_fetched;
static const EVP_MD *md_sha256;
static pthread_key_t oneshot_key;
static int oneshot_key_ok;

static void oneshot_free(void *ctx)
{
	EVP_MD_CTX_free(ctx);
}

static void md_init_once(void)
{
	md_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
	md_sha256 = md_fetched ? md_fetched : EVP_sha256();
	oneshot_key_ok = pthread_key_create(&oneshot_key, oneshot_free) == 0;
}

static const EVP_MD *md_get(void)
{
	pthread_once(&md_once, md_init_once);
	return md_sha256;
}

int rh_sha256_init(struct rh_sha256 *c)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	c->ctx = NULL;
	if (!ctx || EVP_DigestInit_ex2(ctx, md_get(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return rh_error_set(RH_ENOMEM, "cannot start a sha256 digest (libcrypto)");
	}
	c->ctx = ctx;
	return 0;
}

void rh_sha256_update(struct rh_sha256 *c, const void *data, size_t len)
{
	if (c->ctx && len && EVP_DigestUpdate(c->ctx, data, len) != 1) {
		EVP_MD_CTX_free(c->ctx); /* final then gives zeros: matches nothing */
		c->ctx = NULL;
	}
}

void rh_sha256_final(struct rh_sha256 *c, uint8_t out[32])
{
	unsigned int n = 0;

	if (!c->ctx || EVP_DigestFinal_ex(c->ctx, out, &n) != 1 || n != 32)
		memset(out, 0, 32);
	rh_sha256_free(c);
}

void rh_sha256_free(struct rh_sha256 *c)
{
	EVP_MD_CTX_free(c->ctx);
	c->ctx = NULL;
}

void rh_sha256_hex(char hex[65], const uint8_t digest[32])
{
	rh_hex_encode(hex, digest, 32);
}

void rh_sha256_iov_hex(char hex[65], const struct iovec *iov, int n)
{
	EVP_MD_CTX *ctx;
	uint8_t d[32];
	unsigned int dn = 0;
	int ok;

	md_get();
	ctx = oneshot_key_ok ? pthread_getspecific(oneshot_key) : NULL;
	if (!ctx) {
		ctx = EVP_MD_CTX_new();
		if (ctx && oneshot_key_ok && pthread_setspecific(oneshot_key, ctx) != 0) {
			EVP_MD_CTX_free(ctx);
			ctx = NULL;
		}
	}
	ok = ctx && EVP_DigestInit_ex2(ctx, md_sha256, NULL) == 1;
	for (int i = 0; ok && i < n; i++)
		ok = iov[i].iov_len == 0 ||
		     EVP_DigestUpdate(ctx, iov[i].iov_base, iov[i].iov_len) == 1;
	if (!ok || EVP_DigestFinal_ex(ctx, d, &dn) != 1 || dn != 32)
		memset(d, 0, sizeof(d));
	if (!oneshot_key_ok)
		EVP_MD_CTX_free(ctx);
	rh_sha256_hex(hex, d);
}

void rh_sha256_buf_hex(char hex[65], const void *data, size_t len)
{
	struct iovec iov = {.iov_base = (void *)data, .iov_len = len};

	rh_sha256_iov_hex(hex, &iov, 1);
}

int rh_sha256_file_hex(char hex[65], uint64_t *size, const char *path)
{
	struct rh_sha256 c = {0};
	uint8_t d[32];
	uint8_t *buf = NULL;
	uint64_t total = 0;
	int fd = -1;
	int err = 0;

	hex[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot open %s to hash it", path);
		goto done;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	buf = malloc(RH_SHA256_FILE_BUF);
	if (!buf) {
		err = rh_error_set(RH_ENOMEM, "out of memory hashing %s", path);
		goto done;
	}
	err = rh_sha256_init(&c);
	if (err < 0)
		goto done;
	for (;;) {
		ssize_t n = read(fd, buf, RH_SHA256_FILE_BUF);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = rh_error_set_errno(RH_EIO, errno, "cannot read %s", path);
			goto done;
		}
		if (n == 0)
			break;
		rh_sha256_update(&c, buf, (size_t)n);
		total += (uint64_t)n;
	}
	rh_sha256_final(&c, d);
	rh_sha256_hex(hex, d);
	if (size)
		*size = total;
done:
	rh_sha256_free(&c);
	free(buf);
	if (fd >= 0)
		close(fd);
	return err;
}
