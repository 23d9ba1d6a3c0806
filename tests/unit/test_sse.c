/*
 * test_sse.c - the server-sent events parser: a stream cut at every byte
 * gives the same events as whole; comments, CRLF and lone CR line ends, a
 * BOM, multi-line data, event names, the [DONE] marker and its absence, an
 * unfinished event at the end, and events over the size bound.
 */
#include "testlib.h"

#include "error.h"
#include "sse.h"

struct seen {
	char log[4096];
	size_t len;
	unsigned n;
	int fail_at; /* callback returns an error on this event (1-based), 0: never */
};

static int on_event(void *user, const char *event, const char *data, size_t len)
{
	struct seen *s = user;
	int w;

	s->n++;
	CU_ASSERT_EQUAL(strlen(data), len);
	w = snprintf(s->log + s->len, sizeof(s->log) - s->len, "[%s|%s]", event, data);
	if (w > 0)
		s->len += (size_t)w;
	if (s->fail_at && (int)s->n == s->fail_at)
		return rh_error_set(RH_EVERIFY, "wrong answer");
	return 0;
}

/* Feeds `text` in pieces of `step` bytes (0: whole). Returns the finish code. */
static int run(const char *text, size_t step, size_t max, struct seen *s, struct rh_sse *p)
{
	size_t n = strlen(text);
	int rc = 0;

	memset(s, 0, sizeof(*s));
	rh_sse_init(p, max, on_event, s);
	for (size_t off = 0; off < n && rc == 0; off += step ? step : n) {
		size_t k = step && n - off > step ? step : n - off;

		rc = rh_sse_feed(p, text + off, k);
	}
	if (rc == 0)
		rc = rh_sse_finish(p);
	return rc;
}

static const char openai_stream[] = ": keep-alive comment\n"
				    "data: {\"choices\":[{\"text\":\"He\"}]}\n\n"
				    "data: {\"choices\":[{\"text\":\"llo\"}]}\n\n"
				    "event: usage\n"
				    "data: {\"tokens\":2}\n\n"
				    "data: [DONE]\n\n";

static const char openai_expected[] = "[message|{\"choices\":[{\"text\":\"He\"}]}]"
				      "[message|{\"choices\":[{\"text\":\"llo\"}]}]"
				      "[usage|{\"tokens\":2}]"
				      "[message|[DONE]]";

static void test_sse__split_at_every_byte(void)
{
	struct rh_sse p;
	struct seen s;

	for (size_t step = 0; step <= 7; step++) {
		CU_ASSERT_EQUAL(run(openai_stream, step, 1024, &s, &p), 0);
		CU_ASSERT_STRING_EQUAL(s.log, openai_expected);
		CU_ASSERT_EQUAL(p.events, 4);
		CU_ASSERT(p.done);
		rh_sse_release(&p);
	}
}

static void test_sse__crlf_and_cr(void)
{
	struct rh_sse p;
	struct seen s;
	char crlf[512], cr[512];
	size_t j = 0, k = 0;

	for (const char *c = openai_stream; *c; c++) {
		if (*c == '\n') {
			crlf[j++] = '\r';
			crlf[j++] = '\n';
			cr[k++] = '\r';
		} else {
			crlf[j++] = *c;
			cr[k++] = *c;
		}
	}
	crlf[j] = cr[k] = '\0';
	/* step 1 puts \r and \n in separate feeds: the pair is still one line end */
	for (size_t step = 0; step <= 3; step++) {
		CU_ASSERT_EQUAL(run(crlf, step, 1024, &s, &p), 0);
		CU_ASSERT_STRING_EQUAL(s.log, openai_expected);
		rh_sse_release(&p);
		CU_ASSERT_EQUAL(run(cr, step, 1024, &s, &p), 0);
		CU_ASSERT_STRING_EQUAL(s.log, openai_expected);
		rh_sse_release(&p);
	}
}

static void test_sse__fields_and_comments(void)
{
	struct rh_sse p;
	struct seen s;

	/* only comments and ignored fields: no event; a field without a colon;
	 * no space after the colon; two data lines joined; BOM at the start */
	CU_ASSERT_EQUAL(run("\xEF\xBB\xBF: hello\nid: 7\nretry: 100\n\n"
			    "data\n\n"
			    "data:x\ndata:  y\nfoo: bar\n\n",
			    0, 1024, &s, &p),
			0);
	CU_ASSERT_STRING_EQUAL(s.log, "[message|][message|x\n y]");
	CU_ASSERT_FALSE(p.done);
	rh_sse_release(&p);
	/* the event name applies to one event only */
	CU_ASSERT_EQUAL(run("event: a\ndata: 1\n\ndata: 2\n\n", 1, 1024, &s, &p), 0);
	CU_ASSERT_STRING_EQUAL(s.log, "[a|1][message|2]");
	rh_sse_release(&p);
}

static void test_sse__missing_done(void)
{
	struct rh_sse p;
	struct seen s;

	CU_ASSERT_EQUAL(run("data: a\n\ndata: b\n\n", 0, 1024, &s, &p), 0);
	CU_ASSERT_EQUAL(s.n, 2);
	CU_ASSERT_FALSE(p.done);
	rh_sse_release(&p);
	/* cut off in the middle of an event: it is dropped and finish says so */
	CU_ASSERT_EQUAL(run("data: a\n\ndata: [DONE]\n", 0, 1024, &s, &p), 1);
	CU_ASSERT_EQUAL(s.n, 1);
	CU_ASSERT_FALSE(p.done);
	rh_sse_release(&p);
	CU_ASSERT_EQUAL(run("data: a\n\ndata: [DO", 2, 1024, &s, &p), 1);
	CU_ASSERT_FALSE(p.done);
	rh_sse_release(&p);
	/* [DONE] only as the whole data */
	CU_ASSERT_EQUAL(run("data: [DONE] later\n\n", 0, 1024, &s, &p), 0);
	CU_ASSERT_FALSE(p.done);
	rh_sse_release(&p);
}

static void test_sse__oversized_events(void)
{
	struct rh_sse p;
	struct seen s;
	char big[300];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	/* one line longer than the bound, fed in pieces: no blank line needed */
	CU_ASSERT_EQUAL(run(big, 10, 100, &s, &p), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "over 100 bytes"));
	CU_ASSERT(p.line_cap <= 256); /* it stopped growing at the bound */
	/* sticky */
	CU_ASSERT_EQUAL(rh_sse_feed(&p, "\n\n", 2), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_sse_finish(&p), RH_EINVAL);
	rh_sse_release(&p);
	/* many short data lines adding up past the bound */
	{
		char many[2000] = "";

		for (int i = 0; i < 40; i++)
			strcat(many, "data: 0123456789\n");
		CU_ASSERT_EQUAL(run(many, 0, 100, &s, &p), RH_EINVAL);
		CU_ASSERT_EQUAL(s.n, 0);
		rh_sse_release(&p);
	}
	/* exactly at the bound is fine */
	CU_ASSERT_EQUAL(run("data: 0123456789\n\n", 0, 16, &s, &p), 0);
	CU_ASSERT_EQUAL(s.n, 1);
	rh_sse_release(&p);
}

static void test_sse__callback_error_stops(void)
{
	struct rh_sse p;
	struct seen s;

	memset(&s, 0, sizeof(s));
	s.fail_at = 2;
	rh_sse_init(&p, 1024, on_event, &s);
	CU_ASSERT_EQUAL(rh_sse_feed(&p, openai_stream, strlen(openai_stream)), RH_EVERIFY);
	CU_ASSERT_EQUAL(s.n, 2);
	CU_ASSERT_EQUAL(rh_sse_feed(&p, "data: z\n\n", 9), RH_EVERIFY);
	CU_ASSERT_EQUAL(s.n, 2);
	rh_sse_release(&p);
}

RH_TEST_MAIN("sse", {"split_at_every_byte", test_sse__split_at_every_byte},
	     {"crlf_and_cr", test_sse__crlf_and_cr},
	     {"fields_and_comments", test_sse__fields_and_comments},
	     {"missing_done", test_sse__missing_done},
	     {"oversized_events", test_sse__oversized_events},
	     {"callback_error_stops", test_sse__callback_error_stops})
