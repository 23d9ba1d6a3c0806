/*
 * test_interp.c - ${...} interpolation: expansion, escapes, the single-pass
 * rule that keeps substituted text inert, value formatting, and errors.
 */
#include "error.h"
#include "interp.h"
#include "testlib.h"

static json_t *scope(void)
{
	json_t *s = json_loads(
		"{\"vars\": {\"name\": \"tinylm\", \"port\": 8080, \"ratio\": 0.05, \"one\": 1.0,"
		"  \"on\": true, \"off\": false, \"evil\": \"${vars.name}\", \"dollar\": \"$${x}\","
		"  \"nothing\": null, \"obj\": {\"a\": 1}, \"list\": [1], \"big\": 1e300},"
		" \"steps\": {\"fetch\": {\"outputs\": {\"sha\": \"abc\","
		"  \"model.sha256\": \"dot\","
		"  \"nested\": {\"k\": \"v\"}}}},"
		" \"target\": {\"host\": \"127.0.0.1\"}}", 0, NULL);

	CU_ASSERT_FATAL(s != NULL);
	return s;
}

/* Expands `in`; returns the new string or NULL, with *err set. */
static char *expand(const json_t *s, const char *in, int *err)
{
	char *out = (char *)1;

	*err = rh_interp_expand(&out, in, s);
	if (*err)
		CU_ASSERT_PTR_NULL(out);
	return *err ? NULL : out;
}

static void expect(const json_t *s, const char *in, const char *want)
{
	int err;
	char *out = expand(s, in, &err);

	CU_ASSERT_EQUAL(err, 0);
	if (!out || strcmp(out, want) != 0)
		fprintf(stderr, "\n  '%s' -> '%s' (want '%s', err %d: %s)\n", in,
			out ? out : "(null)", want, err, rh_error_last());
	CU_ASSERT_PTR_NOT_NULL(out);
	if (out)
		CU_ASSERT_STRING_EQUAL(out, want);
	free(out);
}

static void expect_err(const json_t *s, const char *in, int code, const char *fragment)
{
	int err;
	char *out = expand(s, in, &err);

	CU_ASSERT_EQUAL(err, code);
	CU_ASSERT_PTR_NULL(out);
	if (!strstr(rh_error_last(), fragment))
		fprintf(stderr, "\n  '%s': message '%s' lacks '%s'\n", in, rh_error_last(),
			fragment);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), fragment));
	free(out);
}

static void test_interp__expansion(void)
{
	json_t *s = scope();

	expect(s, "", "");
	expect(s, "plain text", "plain text");
	expect(s, "${vars.name}", "tinylm");
	expect(s, "http://${target.host}:${vars.port}/v1", "http://127.0.0.1:8080/v1");
	expect(s, "${vars.name}${vars.name}", "tinylmtinylm");
	expect(s, "${steps.fetch.outputs.sha}", "abc");
	/* A key with dots is found when the dotted path does not resolve. */
	expect(s, "${steps.fetch.outputs.model.sha256}", "dot");
	expect(s, "${steps.fetch.outputs.nested.k}", "v");
	json_decref(s);
}

static void test_interp__escaping(void)
{
	json_t *s = scope();

	expect(s, "$${vars.name}", "${vars.name}");
	expect(s, "a $${b} ${vars.name}", "a ${b} tinylm");
	expect(s, "$$${vars.name}", "$${vars.name}");
	expect(s, "cost: $5 and $", "cost: $5 and $");
	expect(s, "$x ${vars.port}$", "$x 8080$");
	expect(s, "$$", "$$");
	expect(s, "{}", "{}");
	json_decref(s);
}

static void test_interp__single_pass(void)
{
	json_t *s = scope();

	/* Values are data: what they contain is never expanded again. */
	expect(s, "${vars.evil}", "${vars.name}");
	expect(s, "x${vars.evil}y", "x${vars.name}y");
	expect(s, "${vars.dollar}", "$${x}");
	json_decref(s);
}

static void test_interp__values(void)
{
	json_t *s = scope();

	expect(s, "${vars.port}", "8080");
	expect(s, "${vars.ratio}", "0.05");
	expect(s, "${vars.one}", "1.0");
	expect(s, "${vars.big}", "1e300");
	expect(s, "${vars.on}/${vars.off}", "true/false");
	expect_err(s, "${vars.nothing}", RH_EINVAL, "'${vars.nothing}' is null");
	expect_err(s, "a ${vars.obj}", RH_EINVAL, "'${vars.obj}' is an object");
	expect_err(s, "${vars.list}", RH_EINVAL, "'${vars.list}' is an array");
	json_decref(s);
}

static void test_interp__errors(void)
{
	json_t *s = scope();

	expect_err(s, "${vars.nope}", RH_ENOTFOUND, "unknown reference '${vars.nope}'");
	expect_err(s, "${nope.x}", RH_ENOTFOUND, "'${nope.x}'");
	expect_err(s, "${vars.name.deeper}", RH_ENOTFOUND, "'${vars.name.deeper}'");
	expect_err(s, "abc ${vars.name", RH_EINVAL, "unclosed '${'");
	expect_err(s, "${}", RH_EINVAL, "empty reference");
	expect_err(s, "${vars.a b}", RH_EINVAL, "invalid character ' ' in reference '${vars.a b}'");
	expect_err(s, "${vars..x}", RH_EINVAL, "malformed reference '${vars..x}'");
	expect_err(s, "${.x}", RH_EINVAL, "malformed reference");
	expect_err(s, "${x.}", RH_EINVAL, "malformed reference");
	expect_err(s, "${vars.$x}", RH_EINVAL, "invalid character '$'");
	CU_ASSERT_PTR_NULL(rh_interp_lookup(s, "vars.nope"));
	CU_ASSERT_PTR_NULL(rh_interp_lookup(s, NULL));
	CU_ASSERT_PTR_NULL(rh_interp_lookup(NULL, "vars.name"));
	CU_ASSERT_STRING_EQUAL(json_string_value(rh_interp_lookup(s, "vars.name")), "tinylm");
	CU_ASSERT(json_is_object(rh_interp_lookup(s, "vars")));
	json_decref(s);
}

struct refs {
	char seen[8][64];
	int n;
	int stop_at;
};

static int collect(const char *ref, void *user)
{
	struct refs *r = user;

	if (r->n == r->stop_at)
		return 42;
	if (r->n < 8)
		snprintf(r->seen[r->n], sizeof(r->seen[0]), "%s", ref);
	r->n++;
	return 0;
}

static void test_interp__foreach_ref(void)
{
	struct refs r = { .stop_at = -1 };

	CU_ASSERT_EQUAL(rh_interp_foreach_ref("a ${x.y} $${not} ${steps.s.outputs.k}-${z.w}",
					      collect, &r), 0);
	CU_ASSERT_EQUAL_FATAL(r.n, 3);
	CU_ASSERT_STRING_EQUAL(r.seen[0], "x.y");
	CU_ASSERT_STRING_EQUAL(r.seen[1], "steps.s.outputs.k");
	CU_ASSERT_STRING_EQUAL(r.seen[2], "z.w");

	memset(&r, 0, sizeof(r));
	r.stop_at = 1;
	CU_ASSERT_EQUAL(rh_interp_foreach_ref("${a.b}${c.d}${e.f}", collect, &r), 42);
	CU_ASSERT_EQUAL(r.n, 1);

	memset(&r, 0, sizeof(r));
	r.stop_at = -1;
	CU_ASSERT_EQUAL(rh_interp_foreach_ref("${a.b} ${oops", collect, &r), RH_EINVAL);
	CU_ASSERT_EQUAL(r.n, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "unclosed"));
	memset(&r, 0, sizeof(r));
	r.stop_at = -1;
	CU_ASSERT_EQUAL(rh_interp_foreach_ref("no refs at all $ {x}", collect, &r), 0);
	CU_ASSERT_EQUAL(r.n, 0);
}

static void test_interp__expand_json(void)
{
	json_t *s = scope();
	json_t *in = json_loads("{\"url\": \"http://${target.host}/\", \"${vars.name}\": \"k\","
				" \"n\": 5, \"b\": true, \"z\": null,"
				" \"list\": [\"${vars.port}\", 1.5, {\"deep\": \"${vars.evil}\"}]}",
				0, NULL);
	json_t *bad = json_loads("{\"a\": [\"ok\", {\"b~/c\": \"${vars.missing}\"}]}", 0, NULL);
	json_t *out = NULL;
	json_t *list;

	CU_ASSERT_FATAL(in != NULL && bad != NULL);
	CU_ASSERT_EQUAL_FATAL(rh_interp_expand_json(&out, in, s), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(out, "url")),
			       "http://127.0.0.1/");
	/* Keys are not expanded. */
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(out, "${vars.name}")), "k");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(out, "n")), 5);
	CU_ASSERT(json_is_true(json_object_get(out, "b")));
	CU_ASSERT(json_is_null(json_object_get(out, "z")));
	list = json_object_get(out, "list");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(list, 0)), "8080");
	CU_ASSERT_EQUAL(json_real_value(json_array_get(list, 1)), 1.5);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(list, 2),
								 "deep")), "${vars.name}");
	/* The input is untouched. */
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(in, "url")),
			       "http://${target.host}/");
	json_decref(out);

	out = (json_t *)1;
	CU_ASSERT_EQUAL(rh_interp_expand_json(&out, bad, s), RH_ENOTFOUND);
	CU_ASSERT_PTR_NULL(out);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "/a/1/b~0~1c"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "${vars.missing}"));
	json_decref(in);
	json_decref(bad);
	json_decref(s);
}

RH_TEST_MAIN("interp",
	     { "test_interp__expansion", test_interp__expansion },
	     { "test_interp__escaping", test_interp__escaping },
	     { "test_interp__single_pass", test_interp__single_pass },
	     { "test_interp__values", test_interp__values },
	     { "test_interp__errors", test_interp__errors },
	     { "test_interp__foreach_ref", test_interp__foreach_ref },
	     { "test_interp__expand_json", test_interp__expand_json })
