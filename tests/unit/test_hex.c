/*
 * test_hex.c - hex digits, encode/decode round trips, the lowercase and
 * SHA-256 checks at their edges (63/64/65 digits, uppercase, NULL), and
 * the URL percent-decoder: strict and lenient escapes, encoded NUL,
 * control characters, no double decoding.
 */
#include "testlib.h"

#include "error.h"
#include "hex.h"
#include "url.h"

#include <stdint.h>

static void test_hex__val(void)
{
	CU_ASSERT_EQUAL(rh_hex_val('0'), 0);
	CU_ASSERT_EQUAL(rh_hex_val('9'), 9);
	CU_ASSERT_EQUAL(rh_hex_val('a'), 10);
	CU_ASSERT_EQUAL(rh_hex_val('F'), 15);
	CU_ASSERT_EQUAL(rh_hex_val('g'), -1);
	CU_ASSERT_EQUAL(rh_hex_val('/'), -1);
	CU_ASSERT_EQUAL(rh_hex_val('\0'), -1);
}

static void test_hex__round_trip(void)
{
	uint8_t in[256], back[256];
	char hex[513];

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)i;
	rh_hex_encode(hex, in, sizeof(in));
	CU_ASSERT_EQUAL(strlen(hex), 512);
	CU_ASSERT_EQUAL(strncmp(hex, "000102", 6), 0);
	CU_ASSERT_STRING_EQUAL(hex + 506, "fdfeff");
	CU_ASSERT(rh_hex_is_lower(hex, 512));
	CU_ASSERT_EQUAL(rh_hex_decode(back, hex, 512), 0);
	CU_ASSERT_EQUAL(memcmp(in, back, sizeof(in)), 0);
	CU_ASSERT_EQUAL(rh_hex_decode(back, "DEADbeef", 8), 0);
	CU_ASSERT_EQUAL(back[0], 0xde);
	CU_ASSERT_EQUAL(back[3], 0xef);
	rh_hex_encode(hex, in, 0);
	CU_ASSERT_STRING_EQUAL(hex, "");
}

static void test_hex__decode_refuses(void)
{
	uint8_t out[4];

	CU_ASSERT_EQUAL(rh_hex_decode(out, "abc", 3), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_hex_decode(out, "zz", 2), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_hex_decode(out, "a ", 2), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "position 2"));
}

static void test_hex__sha256_check(void)
{
	const char *ok = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
	char s[80];

	CU_ASSERT(rh_hex_is_sha256(ok));
	CU_ASSERT_FALSE(rh_hex_is_sha256(NULL));
	CU_ASSERT_FALSE(rh_hex_is_sha256(""));
	memcpy(s, ok, 64);
	s[63] = '\0';
	CU_ASSERT_FALSE(rh_hex_is_sha256(s)); /* 63 digits */
	s[63] = '5';
	s[64] = '0';
	s[65] = '\0';
	CU_ASSERT_FALSE(rh_hex_is_sha256(s)); /* 65 digits */
	s[64] = '\0';
	CU_ASSERT(rh_hex_is_sha256(s));
	s[0] = 'E';
	CU_ASSERT_FALSE(rh_hex_is_sha256(s)); /* uppercase */
	s[0] = 'g';
	CU_ASSERT_FALSE(rh_hex_is_sha256(s));
	CU_ASSERT(rh_hex_is_lower("", 0));
	CU_ASSERT_FALSE(rh_hex_is_lower("0A", 2));
}

static void test_hex__url_decode(void)
{
	char *s = (char *)1;

	CU_ASSERT_EQUAL(rh_url_decode(&s, "al%40ice", 8, 0), 0);
	CU_ASSERT_STRING_EQUAL(s, "al@ice");
	free(s);
	CU_ASSERT_EQUAL(rh_url_decode(&s, "a%2541b%2f", 10, 0), 0);
	CU_ASSERT_STRING_EQUAL(s, "a%41b/"); /* decoded once */
	free(s);
	CU_ASSERT_EQUAL(rh_url_decode(&s, "abc%41", 5, 0), RH_EINVAL); /* cut escape */
	CU_ASSERT_PTR_NULL(s);
	CU_ASSERT_EQUAL(rh_url_decode(&s, "x%zz", 4, 0), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "%zz"));
	CU_ASSERT_EQUAL(rh_url_decode(&s, "x%00y", 5, RH_URL_KEEP_BAD_ESCAPES), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_url_decode(&s, "x%zz%4", 6, RH_URL_KEEP_BAD_ESCAPES), 0);
	CU_ASSERT_STRING_EQUAL(s, "x%zz%4");
	free(s);
	CU_ASSERT_EQUAL(rh_url_decode(&s, "a%0ab", 5, 0), 0);
	CU_ASSERT_STRING_EQUAL(s, "a\nb");
	free(s);
	CU_ASSERT_EQUAL(rh_url_decode(&s, "a%0ab", 5, RH_URL_NO_CONTROL), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_url_decode(&s, "a\tb", 3, RH_URL_NO_CONTROL), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_url_decode(&s, "", 0, 0), 0);
	CU_ASSERT_STRING_EQUAL(s, "");
	free(s);
}

RH_TEST_MAIN("hex", {"val", test_hex__val}, {"round_trip", test_hex__round_trip},
	     {"decode_refuses", test_hex__decode_refuses}, {"sha256_check", test_hex__sha256_check},
	     {"url_decode", test_hex__url_decode})
