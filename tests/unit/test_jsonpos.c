/*
 * test_jsonpos.c - JSON pointer -> line:column, the positions every
 * validation message is printed with.
 */
#include "error.h"
#include "jsonpos.h"
#include "testlib.h"

static void at(const char *text, const char *ptr, bool key, int line, int col)
{
	int l = -1, c = -1;
	int err = rh_jsonpos_locate(text, strlen(text), ptr, key, &l, &c);

	CU_ASSERT_EQUAL(err, 0);
	if (l != line || c != col)
		fprintf(stderr, "\n  '%s'%s: got %d:%d, want %d:%d\n", ptr, key ? " (key)" : "",
			l, c, line, col);
	CU_ASSERT_EQUAL(l, line);
	CU_ASSERT_EQUAL(c, col);
}

static const char doc[] =
	"{\n"
	"  \"name\": \"x\",\n"                              /* line 2 */
	"  \"steps\": [\n"                                  /* line 3 */
	"    {\"id\": \"a\", \"after\": []},\n"             /* line 4 */
	"    {\"id\": \"b\", \"after\": [\"a\", \"c\"]}\n"  /* line 5 */
	"  ],\n"
	"  \"n\": -1.5e3, \"t\": true, \"z\": null\n"       /* line 7 */
	"}\n";

static void test_jsonpos__pointers(void)
{
	at(doc, "", false, 1, 1);
	at(doc, "", true, 1, 1);
	at(doc, "/name", false, 2, 11);
	at(doc, "/name", true, 2, 3);
	at(doc, "/steps", false, 3, 12);
	at(doc, "/steps/0", false, 4, 5);
	at(doc, "/steps/1", false, 5, 5);
	at(doc, "/steps/1/id", false, 5, 12);
	at(doc, "/steps/1/after", true, 5, 17);
	at(doc, "/steps/1/after/1", false, 5, 32);
	at(doc, "/steps/0/after", false, 4, 26);
	at(doc, "/n", false, 7, 8);
	at(doc, "/t", false, 7, 21);
	at(doc, "/z", true, 7, 27);
	/* An index into an array is not a key: at_key gives the value. */
	at(doc, "/steps/1", true, 5, 5);
}

static void test_jsonpos__unresolved(void)
{
	/* The deepest part that resolves. */
	at(doc, "/steps/7", false, 3, 12);
	at(doc, "/steps/1/nope", true, 5, 5);
	at(doc, "/steps/0/after/0", false, 4, 26);
	at(doc, "/name/deeper", false, 2, 11);
	at(doc, "/steps/x", false, 3, 12);
	at(doc, "/steps/01", false, 3, 12);
	at(doc, "/missing", false, 1, 1);
	at(doc, "no-slash", false, 1, 1);
}

static void test_jsonpos__escapes(void)
{
	static const char text[] =
		"{\"a/b\": 1, \"m~n\": 2, \"\\u0041\\\"q\": 3, \"\\/s\": 4,\n"
		" \"\\ud83d\\ude00\": 5, \"\\n\": 6, \"x\": {\"\": 7}}";

	at(text, "/a~1b", false, 1, 9);
	at(text, "/a~1b", true, 1, 2);
	at(text, "/m~0n", false, 1, 19);
	at(text, "/A\"q", true, 1, 22);
	at(text, "/A\"q", false, 1, 35);
	at(text, "/~1s", false, 1, 45);
	at(text, "/\xf0\x9f\x98\x80", true, 2, 2);
	at(text, "/\n", false, 2, 27);
	at(text, "/x/", false, 2, 40);
	/* "~01" is "~1", not "/" (decoded left to right). */
	at(text, "/a~01b", false, 1, 1);
}

static void test_jsonpos__unicode_columns(void)
{
	/* é is 2 bytes, € 3, 😀 4: each is one column. */
	static const char text[] = "{\"é€😀\": \"ü\", \"k\": [\"😀😀\", 1]}";

	at(text, "/é€😀", true, 1, 2);
	at(text, "/é€😀", false, 1, 9);
	at(text, "/k", true, 1, 14);
	at(text, "/k/1", false, 1, 26);
}

static void test_jsonpos__strings_with_brackets(void)
{
	/* Brackets and quotes inside strings must not confuse skipping. */
	static const char text[] =
		"[\"]}{[\", {\"a\": \"\\\"]\"}, [[], {}], \"\\\\\", 5]";

	at(text, "/1/a", false, 1, 16);
	at(text, "/2/1", false, 1, 29);
	at(text, "/3", false, 1, 34);
	at(text, "/4", false, 1, 40);
}

static void test_jsonpos__not_found(void)
{
	int l = 7, c = 7;

	CU_ASSERT_EQUAL(rh_jsonpos_locate("", 0, "", false, &l, &c), RH_ENOTFOUND);
	CU_ASSERT_EQUAL(rh_jsonpos_locate("  \n ", 4, "/a", false, &l, &c), RH_ENOTFOUND);
	/* Truncated text: no crash, the deepest part found. */
	at("{\"a\": [1, 2", "/a/5", false, 1, 7);
	at("{\"a\": {\"b\"", "/a/b", false, 1, 7);
	at("{\"a\": \"unterminated", "/b", false, 1, 1);
	/* Length is honoured even when the buffer goes on. */
	CU_ASSERT_EQUAL(rh_jsonpos_locate("{\"a\": 1}", 3, "/a", false, &l, &c), 0);
	CU_ASSERT_EQUAL(l, 1);
	CU_ASSERT_EQUAL(c, 1);
}

static void test_jsonpos__deep(void)
{
	/* 100000 levels: skipping must not recurse. */
	size_t n = 100000;
	char *text = malloc(2 * n + 32);
	size_t o = 0;
	int l, c;

	CU_ASSERT_FATAL(text != NULL);
	o += (size_t)snprintf(text, 32, "[");
	for (size_t i = 0; i < n; i++)
		text[o++] = '[';
	for (size_t i = 0; i < n; i++)
		text[o++] = ']';
	o += (size_t)snprintf(text + o, 32, ", 42]");
	CU_ASSERT_EQUAL(rh_jsonpos_locate(text, o, "/1", false, &l, &c), 0);
	CU_ASSERT_EQUAL(l, 1);
	CU_ASSERT_EQUAL(c, (int)(2 * n + 4));
	free(text);
}

RH_TEST_MAIN("jsonpos",
	     { "test_jsonpos__pointers", test_jsonpos__pointers },
	     { "test_jsonpos__unresolved", test_jsonpos__unresolved },
	     { "test_jsonpos__escapes", test_jsonpos__escapes },
	     { "test_jsonpos__unicode_columns", test_jsonpos__unicode_columns },
	     { "test_jsonpos__strings_with_brackets", test_jsonpos__strings_with_brackets },
	     { "test_jsonpos__not_found", test_jsonpos__not_found },
	     { "test_jsonpos__deep", test_jsonpos__deep })
