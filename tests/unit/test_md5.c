/*
 * test_md5.c - MD5 against the RFC 1321 appendix A.5 test suite, and the
 * streaming API against the one-shot one at every split of a buffer that
 * crosses the 55/56/63/64-byte padding edges (where implementations break).
 */
#include "testlib.h"

#include "md5.h"

#include <stdint.h>

static void test_md5__rfc1321_vectors(void)
{
	static const struct {
		const char *msg;
		const char *hex;
	} v[] = {
		{ "", "d41d8cd98f00b204e9800998ecf8427e" },
		{ "a", "0cc175b9c0f1b6a831c399e269772661" },
		{ "abc", "900150983cd24fb0d6963f7d28e17f72" },
		{ "message digest", "f96b697d7cb7938d525a2f31aaf161d0" },
		{ "abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b" },
		{ "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
		  "d174ab98d277d9f5a5611c2c9f419d9f" },
		{ "1234567890123456789012345678901234567890123456789012345678901234567890"
		  "1234567890",
		  "57edf4a22be3c955ac49da2e2107b67a" },
	};
	char hex[33];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		rh_md5_buf_hex(hex, v[i].msg, strlen(v[i].msg));
		CU_ASSERT_STRING_EQUAL(hex, v[i].hex);
	}
}

static void test_md5__wrong_input_differs(void)
{
	char hex[33];

	/* One flipped bit must change the digest: guards against a digest that
	 * ignores (part of) its input. */
	rh_md5_buf_hex(hex, "abd", 3);
	CU_ASSERT_STRING_NOT_EQUAL(hex, "900150983cd24fb0d6963f7d28e17f72");
}

static void test_md5__split_updates(void)
{
	uint8_t data[200];
	char whole[33];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	for (size_t len = 0; len <= sizeof(data); len++) {
		rh_md5_buf_hex(whole, data, len);
		for (size_t cut = 0; cut <= len; cut += (len > 130 ? 7 : 1)) {
			struct rh_md5 c;
			uint8_t d[16];
			char hex[33];

			rh_md5_init(&c);
			rh_md5_update(&c, data, cut);
			rh_md5_update(&c, data + cut, 0);
			rh_md5_update(&c, data + cut, len - cut);
			rh_md5_final(&c, d);
			rh_md5_hex(hex, d);
			CU_ASSERT_STRING_EQUAL(hex, whole);
		}
	}
}

static void test_md5__million_a(void)
{
	struct rh_md5 c;
	uint8_t d[16];
	char hex[33];
	char chunk[1000];

	memset(chunk, 'a', sizeof(chunk));
	rh_md5_init(&c);
	for (int i = 0; i < 1000; i++)
		rh_md5_update(&c, chunk, sizeof(chunk));
	rh_md5_final(&c, d);
	rh_md5_hex(hex, d);
	/* md5 of one million 'a' (widely published; e.g. the NESSIE vectors) */
	CU_ASSERT_STRING_EQUAL(hex, "7707d6ae4e027c70eea2a935c2296f21");
}

RH_TEST_MAIN("md5",
	     { "rfc1321_vectors", test_md5__rfc1321_vectors },
	     { "wrong_input_differs", test_md5__wrong_input_differs },
	     { "split_updates", test_md5__split_updates },
	     { "million_a", test_md5__million_a })
