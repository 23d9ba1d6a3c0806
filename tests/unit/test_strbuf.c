/*
 * test_strbuf.c - the bounded string buffer and rh_asprintf: growth across
 * many reallocations keeps every byte, the limit is exact (max bytes fit,
 * one more fails and leaves the buffer as it was), detach hands over the
 * text and empties the buffer, formatted appends of every length.
 */
#include "testlib.h"

#include "error.h"
#include "strbuf.h"

#include <stdint.h>

static void test_strbuf__grows_and_keeps_bytes(void)
{
	struct rh_strbuf sb = RH_STRBUF_INIT;
	char want[10000];

	CU_ASSERT_STRING_EQUAL(rh_strbuf_str(&sb), "");
	for (size_t i = 0; i < sizeof(want) - 1; i++) {
		want[i] = (char)('a' + i % 26);
		CU_ASSERT_EQUAL_FATAL(rh_strbuf_addch(&sb, want[i]), 0);
	}
	want[sizeof(want) - 1] = '\0';
	CU_ASSERT_EQUAL(sb.len, sizeof(want) - 1);
	CU_ASSERT_STRING_EQUAL(sb.buf, want);
	CU_ASSERT(sb.alloc > sb.len);
	rh_strbuf_release(&sb);
	CU_ASSERT_PTR_NULL(sb.buf);
	CU_ASSERT_EQUAL(sb.len, 0);
}

static void test_strbuf__binary_data(void)
{
	struct rh_strbuf sb = RH_STRBUF_INIT;

	CU_ASSERT_EQUAL(rh_strbuf_add(&sb, "a\0b", 3), 0);
	CU_ASSERT_EQUAL(rh_strbuf_add(&sb, "", 0), 0);
	CU_ASSERT_EQUAL(sb.len, 3);
	CU_ASSERT_EQUAL(memcmp(sb.buf, "a\0b", 4), 0);
	rh_strbuf_release(&sb);
}

static void test_strbuf__limit_is_exact(void)
{
	struct rh_strbuf sb;

	rh_strbuf_init(&sb, 10);
	CU_ASSERT_EQUAL(rh_strbuf_adds(&sb, "12345"), 0);
	CU_ASSERT_EQUAL(rh_strbuf_adds(&sb, "67890"), 0);
	CU_ASSERT_EQUAL(sb.len, 10);
	CU_ASSERT(sb.alloc <= 11);
	CU_ASSERT_EQUAL(rh_strbuf_addch(&sb, 'x'), RH_ENOMEM);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "limit of 10 bytes"));
	CU_ASSERT_STRING_EQUAL(sb.buf, "1234567890"); /* unchanged */
	CU_ASSERT_EQUAL(rh_strbuf_addf(&sb, "%d", 7), RH_ENOMEM);
	CU_ASSERT_EQUAL(rh_strbuf_add(&sb, "y", SIZE_MAX), RH_ENOMEM);
	CU_ASSERT_EQUAL(sb.len, 10);
	rh_strbuf_reset(&sb);
	CU_ASSERT_STRING_EQUAL(rh_strbuf_str(&sb), "");
	CU_ASSERT_EQUAL(rh_strbuf_adds(&sb, "0123456789"), 0);
	rh_strbuf_release(&sb);
	CU_ASSERT_EQUAL(sb.max, 10); /* release keeps the limit */
}

static void test_strbuf__addf(void)
{
	struct rh_strbuf sb = RH_STRBUF_INIT;
	char big[3000];

	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CU_ASSERT_EQUAL(rh_strbuf_addf(&sb, "%s=%d;", "a", 1), 0);
	CU_ASSERT_EQUAL(rh_strbuf_addf(&sb, "%s", ""), 0);
	CU_ASSERT_EQUAL(rh_strbuf_addf(&sb, "[%s]", big), 0);
	CU_ASSERT_EQUAL(sb.len, 4 + 2 + sizeof(big) - 1);
	CU_ASSERT_EQUAL(strncmp(sb.buf, "a=1;[zz", 7), 0);
	CU_ASSERT_EQUAL(sb.buf[sb.len - 1], ']');
	CU_ASSERT_EQUAL(sb.buf[sb.len], '\0');
	rh_strbuf_release(&sb);
}

static void test_strbuf__detach(void)
{
	struct rh_strbuf sb = RH_STRBUF_INIT;
	size_t len = 99;
	char *s;

	s = rh_strbuf_detach(&sb, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_STRING_EQUAL(s, "");
	CU_ASSERT_EQUAL(len, 0);
	free(s);
	CU_ASSERT_EQUAL(rh_strbuf_adds(&sb, "hello"), 0);
	s = rh_strbuf_detach(&sb, &len);
	CU_ASSERT_STRING_EQUAL(s, "hello");
	CU_ASSERT_EQUAL(len, 5);
	CU_ASSERT_PTR_NULL(sb.buf);
	CU_ASSERT_EQUAL(sb.len, 0);
	free(s);
	rh_strbuf_release(&sb); /* harmless after detach */
}

static void test_strbuf__asprintf(void)
{
	char *s = NULL;

	CU_ASSERT_EQUAL(rh_asprintf(&s, "%s/%u", "dir", 42u), 0);
	CU_ASSERT_STRING_EQUAL(s, "dir/42");
	free(s);
}

RH_TEST_MAIN("strbuf", {"grows_and_keeps_bytes", test_strbuf__grows_and_keeps_bytes},
	     {"binary_data", test_strbuf__binary_data},
	     {"limit_is_exact", test_strbuf__limit_is_exact}, {"addf", test_strbuf__addf},
	     {"detach", test_strbuf__detach}, {"asprintf", test_strbuf__asprintf})
