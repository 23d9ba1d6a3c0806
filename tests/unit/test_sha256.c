/*
 * test_sha256.c - SHA-256 against the NIST FIPS 180-4 example vectors, and
 * the streaming API against the one-shot one at awkward split points (the
 * 55/56/63/64/65-byte padding edges are where implementations break).
 */
#include "testlib.h"

#include "error.h"
#include "sha256.h"

#include <stdint.h>
#include <sys/uio.h>

static void hex_of(char hex[65], const void *data, size_t len)
{
	rh_sha256_buf_hex(hex, data, len);
}

static void test_sha256__nist_vectors(void)
{
	static const struct {
		const char *msg;
		const char *hex;
	} v[] = {
	    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
	     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
	     "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
	     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
	};
	char hex[65];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		hex_of(hex, v[i].msg, strlen(v[i].msg));
		CU_ASSERT_STRING_EQUAL(hex, v[i].hex);
	}
}

static void test_sha256__million_a(void)
{
	struct rh_sha256 c;
	uint8_t d[32];
	char hex[65];
	char chunk[1000];

	memset(chunk, 'a', sizeof(chunk));
	rh_sha256_init(&c);
	for (int i = 0; i < 1000; i++)
		rh_sha256_update(&c, chunk, sizeof(chunk));
	rh_sha256_final(&c, d);
	rh_sha256_hex(hex, d);
	CU_ASSERT_STRING_EQUAL(hex,
			       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

	/* The same in one call: exercises the multi-block path. */
	char *big = malloc(1000000);

	CU_ASSERT_FATAL(big != NULL);
	memset(big, 'a', 1000000);
	hex_of(hex, big, 1000000);
	CU_ASSERT_STRING_EQUAL(hex,
			       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(big);
}

/* Every split of messages around the padding edges gives the one-shot
 * digest; a bug in buffering shows up as a mismatch at some split. */
static void test_sha256__split_updates(void)
{
	static const size_t lens[] = {0,   1,	55,  56,  57,  63,  64,	 65,
				      119, 120, 127, 128, 129, 200, 1000};
	uint8_t msg[1000];
	char want[65];
	char got[65];
	uint8_t d[32];
	struct rh_sha256 c;
	unsigned bad = 0;

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 131 + 7);
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		size_t len = lens[li];

		hex_of(want, msg, len);
		for (size_t a = 0; a <= len; a++) {
			size_t b = a + (len - a) / 2;

			rh_sha256_init(&c);
			rh_sha256_update(&c, msg, a);
			rh_sha256_update(&c, msg + a, b - a);
			rh_sha256_update(&c, msg + b, len - b);
			rh_sha256_final(&c, d);
			rh_sha256_hex(got, d);
			if (strcmp(got, want) != 0)
				bad++;
		}
		/* Byte by byte. */
		rh_sha256_init(&c);
		for (size_t k = 0; k < len; k++)
			rh_sha256_update(&c, msg + k, 1);
		rh_sha256_final(&c, d);
		rh_sha256_hex(got, d);
		if (strcmp(got, want) != 0)
			bad++;
	}
	CU_ASSERT_EQUAL(bad, 0);
	/* A known value for a message longer than one block, not just equality. */
	hex_of(got, "The quick brown fox jumps over the lazy dog", 43);
	CU_ASSERT_STRING_EQUAL(got,
			       "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592");
}

/* The record form journal verify uses: pieces hash as their concatenation;
 * an abandoned stream is freed, and freeing an empty context is harmless. */
static void test_sha256__iov_and_free(void)
{
	struct iovec iov[3] = {
	    {.iov_base = "ab", .iov_len = 2},
	    {.iov_base = "", .iov_len = 0},
	    {.iov_base = "c", .iov_len = 1},
	};
	struct rh_sha256 c = {0};
	char hex[65];

	rh_sha256_iov_hex(hex, iov, 3);
	CU_ASSERT_STRING_EQUAL(hex,
			       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	rh_sha256_iov_hex(hex, iov, 0);
	CU_ASSERT_STRING_EQUAL(hex,
			       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	rh_sha256_free(&c);
	CU_ASSERT_EQUAL(rh_sha256_init(&c), 0);
	CU_ASSERT_PTR_NOT_NULL(c.ctx);
	rh_sha256_update(&c, "abc", 3);
	rh_sha256_free(&c); /* abandoned: ASan's leak check fails if this leaks */
	CU_ASSERT_PTR_NULL(c.ctx);
	rh_sha256_free(&c);
}

static void test_sha256__file(void)
{
	char *dir = rh_test_tmpdir();
	char *path = rh_test_path(dir, "abc.txt");
	char *missing = rh_test_path(dir, "missing");
	char hex[65];
	uint64_t size = 99;

	rh_test_write_file(path, "abc");
	CU_ASSERT_EQUAL(rh_sha256_file_hex(hex, &size, path), 0);
	CU_ASSERT_STRING_EQUAL(hex,
			       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	CU_ASSERT_EQUAL(size, 3);

	CU_ASSERT_EQUAL(rh_sha256_file_hex(hex, &size, missing), RH_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), missing));

	rh_test_rm_rf(dir);
	free(missing);
	free(path);
	free(dir);
}

RH_TEST_MAIN("sha256", {"nist_vectors", test_sha256__nist_vectors},
	     {"million_a", test_sha256__million_a}, {"split_updates", test_sha256__split_updates},
	     {"iov_and_free", test_sha256__iov_and_free}, {"file", test_sha256__file})
