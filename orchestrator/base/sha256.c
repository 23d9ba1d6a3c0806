/*
 * sha256.c - SHA-256 (FIPS 180-4) in portable C.
 *
 * Every byte rehydra moves is hashed while it streams, so this sits on the
 * hot path of an artifact sync: the compression function is fully unrolled
 * with the eight working variables rotated by macro arguments (no moves),
 * the message schedule lives in a 16-word ring computed on the fly, and
 * whole blocks are compressed straight from the caller's buffer. No SHA-NI:
 * the machines we target do not all have it and the fallback must be fast.
 * On x86-64 the same C is also compiled for BMI2 and picked at run time.
 */
#include "sha256.h"
#include "error.h"
#include "hex.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

#define RH_SHA256_FILE_BUF (1u << 20)

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
/* The big sigmas as nested rotations: x86 rotates in place, so this form
 * needs no copies of x (6 instructions instead of 8). */
#define S0(x) ROR(ROR(ROR(x, 9) ^ (x), 11) ^ (x), 2)
#define S1(x) ROR(ROR(ROR(x, 14) ^ (x), 5) ^ (x), 6)
#define s0(x) (ROR(x, 7) ^ ROR(x, 18) ^ ((x) >> 3))
#define s1(x) (ROR(x, 17) ^ ROR(x, 19) ^ ((x) >> 10))
#define CH(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))

static inline uint32_t load_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
	       (uint32_t)p[3];
}

static inline void store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* One round; the caller rotates the roles of a..h instead of moving them.
 * Maj(a,b,c) = b ^ ((a ^ b) & (b ^ c)), and this round's a ^ b is the next
 * round's b ^ c, so it is carried in `bc` (one operation saved per round). */
#define RND(a, b, c, d, e, f, g, h, k, w)                                                   \
	do {                                                                                \
		uint32_t t1_ = (h) + S1(e) + CH(e, f, g) + (k) + (w);                       \
		uint32_t ab_ = (a) ^ (b);                                                   \
		(d) += t1_;                                                                 \
		(h) = t1_ + S0(a) + ((b) ^ (ab_ & bc));                                     \
		bc = ab_;                                                                   \
	} while (0)

/* Schedule word i (>= 16) in the 16-word ring W. */
#define WX(i)                                                                               \
	(W[(i) & 15] += s1(W[((i) - 2) & 15]) + W[((i) - 7) & 15] + s0(W[((i) - 15) & 15]))

#define R8_LOAD(i)                                                                          \
	do {                                                                                \
		RND(a, b, c, d, e, f, g, h, K[(i) + 0], W[(i) + 0]);                        \
		RND(h, a, b, c, d, e, f, g, K[(i) + 1], W[(i) + 1]);                        \
		RND(g, h, a, b, c, d, e, f, K[(i) + 2], W[(i) + 2]);                        \
		RND(f, g, h, a, b, c, d, e, K[(i) + 3], W[(i) + 3]);                        \
		RND(e, f, g, h, a, b, c, d, K[(i) + 4], W[(i) + 4]);                        \
		RND(d, e, f, g, h, a, b, c, K[(i) + 5], W[(i) + 5]);                        \
		RND(c, d, e, f, g, h, a, b, K[(i) + 6], W[(i) + 6]);                        \
		RND(b, c, d, e, f, g, h, a, K[(i) + 7], W[(i) + 7]);                        \
	} while (0)

#define R8_SCHED(i)                                                                         \
	do {                                                                                \
		RND(a, b, c, d, e, f, g, h, K[(i) + 0], WX((i) + 0));                       \
		RND(h, a, b, c, d, e, f, g, K[(i) + 1], WX((i) + 1));                       \
		RND(g, h, a, b, c, d, e, f, K[(i) + 2], WX((i) + 2));                       \
		RND(f, g, h, a, b, c, d, e, K[(i) + 3], WX((i) + 3));                       \
		RND(e, f, g, h, a, b, c, d, K[(i) + 4], WX((i) + 4));                       \
		RND(d, e, f, g, h, a, b, c, K[(i) + 5], WX((i) + 5));                       \
		RND(c, d, e, f, g, h, a, b, K[(i) + 6], WX((i) + 6));                       \
		RND(b, c, d, e, f, g, h, a, K[(i) + 7], WX((i) + 7));                       \
	} while (0)

static inline __attribute__((always_inline)) void compress_body(uint32_t st[8], const uint8_t *p,
								  size_t nblocks)
{
	uint32_t a, b, c, d, e, f, g, h, bc;
	uint32_t W[16];

	while (nblocks--) {
		for (int i = 0; i < 16; i++)
			W[i] = load_be32(p + 4 * i);
		a = st[0];
		b = st[1];
		c = st[2];
		d = st[3];
		e = st[4];
		f = st[5];
		g = st[6];
		h = st[7];
		bc = b ^ c;
		R8_LOAD(0);
		R8_LOAD(8);
		R8_SCHED(16);
		R8_SCHED(24);
		R8_SCHED(32);
		R8_SCHED(40);
		R8_SCHED(48);
		R8_SCHED(56);
		st[0] += a;
		st[1] += b;
		st[2] += c;
		st[3] += d;
		st[4] += e;
		st[5] += f;
		st[6] += g;
		st[7] += h;
		p += 64;
	}
}

static void compress_generic(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
	compress_body(st, p, nblocks);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* The same C compiled for BMI2: rorx rotates without destroying its source
 * and andn folds Ch, which removes most register copies (about 15% faster
 * here). Chosen at run time, so the binary still runs on any x86-64. */
__attribute__((target("bmi,bmi2"))) static void compress_bmi2(uint32_t st[8], const uint8_t *p,
							       size_t nblocks)
{
	compress_body(st, p, nblocks);
}

static void compress(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
	if (__builtin_cpu_supports("bmi2"))
		compress_bmi2(st, p, nblocks);
	else
		compress_generic(st, p, nblocks);
}
#else
static void compress(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
	compress_generic(st, p, nblocks);
}
#endif

void rh_sha256_init(struct rh_sha256 *c)
{
	static const uint32_t iv[8] = {
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
		0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
	};

	memcpy(c->h, iv, sizeof(iv));
	c->len = 0;
	c->n = 0;
}

void rh_sha256_update(struct rh_sha256 *c, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t take;

	if (len == 0)
		return;
	c->len += len;
	if (c->n) {
		take = 64 - c->n;
		if (take > len)
			take = len;
		memcpy(c->buf + c->n, p, take);
		c->n += take;
		p += take;
		len -= take;
		if (c->n < 64)
			return;
		compress(c->h, c->buf, 1);
		c->n = 0;
	}
	if (len >= 64) {
		compress(c->h, p, len / 64);
		p += len & ~(size_t)63;
		len &= 63;
	}
	if (len) {
		memcpy(c->buf, p, len);
		c->n = len;
	}
}

void rh_sha256_final(struct rh_sha256 *c, uint8_t out[32])
{
	uint64_t bits = c->len * 8;

	c->buf[c->n++] = 0x80;
	if (c->n > 56) {
		memset(c->buf + c->n, 0, 64 - c->n);
		compress(c->h, c->buf, 1);
		c->n = 0;
	}
	memset(c->buf + c->n, 0, 56 - c->n);
	store_be32(c->buf + 56, (uint32_t)(bits >> 32));
	store_be32(c->buf + 60, (uint32_t)bits);
	compress(c->h, c->buf, 1);
	for (int i = 0; i < 8; i++)
		store_be32(out + 4 * i, c->h[i]);
	/* The context holds message-derived state; do not leave it around. */
	memset(c, 0, sizeof(*c));
}

void rh_sha256_hex(char hex[65], const uint8_t digest[32])
{
	rh_hex_encode(hex, digest, 32);
}

void rh_sha256_buf_hex(char hex[65], const void *data, size_t len)
{
	struct rh_sha256 c;
	uint8_t d[32];

	rh_sha256_init(&c);
	rh_sha256_update(&c, data, len);
	rh_sha256_final(&c, d);
	rh_sha256_hex(hex, d);
}

int rh_sha256_file_hex(char hex[65], uint64_t *size, const char *path)
{
	struct rh_sha256 c;
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
	buf = malloc(RH_SHA256_FILE_BUF);
	if (!buf) {
		err = rh_error_set(RH_ENOMEM, "out of memory hashing %s", path);
		goto done;
	}
	rh_sha256_init(&c);
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
	free(buf);
	if (fd >= 0)
		close(fd);
	return err;
}
