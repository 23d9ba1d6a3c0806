/*
 * test_report.c - RTO reports: the numbers (nearest-rank percentiles, pass
 * rate, trend, step means), the filters, and every output format, with
 * names built to break escaping (<>&"' and unicode) in each of them.
 *
 * The binary doubles as the report driver of tests/integration/report.sh:
 * with RH_REPORT_FIXTURE=FORMAT it reads the records in RH_REPORT_FILES
 * (colon-separated; each a JSON array of records, one record, or a journal
 * .jsonl) and prints the report, so the integration test can render the
 * HTML in Chromium and check the JUnit with xmllint whether or not
 * `rehydra audit report` exists yet.
 */
#include "error.h"
#include "report.h"
#include "testlib.h"

#include <math.h>
#include <time.h>
#include <unistd.h>

/* ---- driver role ---------------------------------------------------------- */

static int driver_add_file(struct rh_report *r, const char *path, uint64_t *seq)
{
	json_error_t jerr;
	json_t *doc = NULL, *v;
	size_t i, len = strlen(path);
	int err = 0;

	if (len > 6 && strcmp(path + len - 6, ".jsonl") == 0) {
		FILE *f = fopen(path, "r");
		char *line = NULL;
		size_t cap = 0;

		if (!f)
			return rh_error_set(RH_EIO, "cannot open %s", path);
		while (err == 0 && getline(&line, &cap, f) > 0) {
			json_t *e = json_loads(line, 0, &jerr);
			const json_t *rec = json_object_get(e, "record");

			if (!e)
				err = rh_error_set(RH_EINVAL, "%s: %s", path, jerr.text);
			else if (json_is_object(rec))
				err = rh_report_add(
				    r, rec,
				    (uint64_t)json_integer_value(json_object_get(e, "seq")));
			json_decref(e);
		}
		free(line);
		fclose(f);
		return err;
	}
	doc = json_load_file(path, 0, &jerr);
	if (!doc)
		return rh_error_set(RH_EINVAL, "%s:%d: %s", path, jerr.line, jerr.text);
	if (json_is_array(doc)) {
		json_array_foreach(doc, i, v) {
			err = rh_report_add(r, v, ++*seq);
			if (err < 0)
				break;
		}
	} else {
		err = rh_report_add(r, doc, ++*seq);
	}
	json_decref(doc);
	return err;
}

__attribute__((constructor)) static void report_driver(void)
{
	const char *fmt_name = getenv("RH_REPORT_FIXTURE");
	const char *files = getenv("RH_REPORT_FILES");
	struct rh_report_filter f = {0};
	struct rh_report *r = NULL;
	enum rh_report_format fmt;
	uint64_t seq = 0;
	char *list, *p, *save = NULL;
	int err;

	if (!fmt_name)
		return;
	f.runbook = getenv("RH_REPORT_RUNBOOK");
	f.target = getenv("RH_REPORT_TARGET");
	f.scenario = getenv("RH_REPORT_SCENARIO");
	f.verdict = getenv("RH_REPORT_VERDICT");
	err = rh_report_format_parse(fmt_name, &fmt);
	if (err == 0 && getenv("RH_REPORT_SINCE"))
		err = rh_report_time_parse(getenv("RH_REPORT_SINCE"), &f.since);
	if (err == 0 && getenv("RH_REPORT_UNTIL"))
		err = rh_report_time_parse(getenv("RH_REPORT_UNTIL"), &f.until);
	if (err == 0)
		err = rh_report_new(&r, &f);
	list = strdup(files ? files : "");
	for (p = strtok_r(list, ":", &save); p && err == 0; p = strtok_r(NULL, ":", &save))
		err = driver_add_file(r, p, &seq);
	free(list);
	if (err == 0)
		err = rh_report_write(r, fmt, stdout);
	if (err < 0)
		fprintf(stderr, "report: %s\n", rh_error_last());
	rh_report_free(r);
	fflush(stdout);
	_exit(err < 0 ? 1 : 0);
}

/* ---- helpers -------------------------------------------------------------- */

/* A drill record with the fields the report reads. rto NAN -> null, t0
 * NULL -> none; steps is a JSON text or NULL. New reference. */
static json_t *mk(const char *runbook, const char *provider, const char *region,
		  const char *scenario, const char *verdict, double rto, double target,
		  const char *t0, const char *steps)
{
	json_t *r = json_object();

	json_object_set_new(r, "rehydra", json_integer(1));
	json_object_set_new(r, "drill_id", json_string("d"));
	json_object_set_new(r, "runbook", json_pack("{s:s}", "name", runbook));
	if (provider) {
		json_t *t = json_pack("{s:s}", "provider", provider);

		if (region)
			json_object_set_new(t, "region", json_string(region));
		json_object_set_new(r, "target", t);
	} else {
		json_object_set_new(r, "target", json_null());
	}
	if (scenario)
		json_object_set_new(r, "scenario", json_string(scenario));
	json_object_set_new(r, "verdict", json_string(verdict));
	json_object_set_new(r, "rto_s", isnan(rto) ? json_null() : json_real(rto));
	if (!isnan(target))
		json_object_set_new(r, "rto_target_s", json_real(target));
	if (t0)
		json_object_set_new(r, "t0", json_string(t0));
	json_object_set_new(r, "steps", steps ? json_loads(steps, 0, NULL) : json_array());
	return r;
}

static void add(struct rh_report *r, json_t *rec, uint64_t seq)
{
	CU_ASSERT_EQUAL(rh_report_add(r, rec, seq), 0);
	json_decref(rec);
}

/* The report rendered in `fmt` (new string). */
static char *render(struct rh_report *r, enum rh_report_format fmt)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	CU_ASSERT_FATAL(f != NULL);
	CU_ASSERT_EQUAL(rh_report_write(r, fmt, f), 0);
	fclose(f);
	return buf;
}

static const char *data_dir(void)
{
	const char *d = getenv("RH_TESTDATA");

	return d ? d : "tests/data";
}

static struct rh_report *load_fixture(const char *name, const struct rh_report_filter *flt)
{
	struct rh_report *r = NULL;
	char path[4096];
	uint64_t seq = 0;

	snprintf(path, sizeof(path), "%s/report/%s", data_dir(), name);
	CU_ASSERT_FATAL(rh_report_new(&r, flt) == 0);
	if (driver_add_file(r, path, &seq) != 0) {
		fprintf(stderr, "%s: %s\n", path, rh_error_last());
		CU_FAIL_FATAL("fixture");
	}
	return r;
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

static bool near(double a, double b)
{
	return fabs(a - b) < 1e-9;
}

/* ---- cases ---------------------------------------------------------------- */

static void test_report__format_parse(void)
{
	static const struct {
		const char *name;
		int rc;
		enum rh_report_format fmt;
	} t[] = {
	    {"md", 0, RH_REPORT_MD},	       {"markdown", 0, RH_REPORT_MD},
	    {"html", 0, RH_REPORT_HTML},       {"json", 0, RH_REPORT_JSON},
	    {"csv", 0, RH_REPORT_CSV},	       {"junit", 0, RH_REPORT_JUNIT},
	    {"xml", RH_EINVAL, RH_REPORT_MD},  {"", RH_EINVAL, RH_REPORT_MD},
	    {"HTML", RH_EINVAL, RH_REPORT_MD},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		enum rh_report_format f = RH_REPORT_MD;

		CU_ASSERT_EQUAL(rh_report_format_parse(t[i].name, &f), t[i].rc);
		if (t[i].rc == 0) {
			CU_ASSERT_EQUAL(f, t[i].fmt);
		} else {
			CU_ASSERT(strstr(rh_error_last(), "md, html, json, csv or junit") != NULL);
		}
	}
	CU_ASSERT_EQUAL(rh_report_format_parse(NULL, &(enum rh_report_format){0}), RH_EINVAL);
	CU_ASSERT_STRING_EQUAL(rh_report_format_name(RH_REPORT_JUNIT), "junit");
	CU_ASSERT_STRING_EQUAL(rh_report_format_name(RH_REPORT_CSV), "csv");
}

static void test_report__time_parse(void)
{
	static const struct {
		const char *text;
		int rc;
		time_t want;
	} t[] = {
	    {"1970-01-01", 0, 0},
	    {"2026-01-31", 0, 1769817600},
	    {"2026-01-31T12:00:00Z", 0, 1769860800},
	    {"2026-01-31T12:00:00.999Z", 0, 1769860800},
	    {"2026-01-31T14:00:00+02:00", 0, 1769860800},
	    {"2026-01-31T10:30:00-01:30", 0, 1769860800},
	    {"2024-02-29T00:00:00Z", 0, 1709164800},
	    {"2026-01-31T12:00:00", RH_EINVAL, 0}, /* no zone: ambiguous */
	    {"2026-13-01", RH_EINVAL, 0},
	    {"2026-02-30", RH_EINVAL, 0},
	    {"2026-1-1", RH_EINVAL, 0},
	    {"yesterday", RH_EINVAL, 0},
	    {"2026-01-31T25:00:00Z", RH_EINVAL, 0},
	    {"2026-01-31T12:00:00Zjunk", RH_EINVAL, 0},
	    {"", RH_EINVAL, 0},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		time_t got = -1;
		int rc = rh_report_time_parse(t[i].text, &got);

		CU_ASSERT_EQUAL(rc, t[i].rc);
		if (rc != t[i].rc)
			fprintf(stderr, "time '%s': rc %d\n", t[i].text, rc);
		if (rc == 0) {
			CU_ASSERT_EQUAL(got, t[i].want);
			if (got != t[i].want)
				fprintf(stderr, "time '%s': %lld\n", t[i].text, (long long)got);
		} else {
			CU_ASSERT(strstr(rh_error_last(), "RFC 3339") != NULL);
		}
	}
}

static void test_report__percentiles(void)
{
	static const struct {
		double v[24];
		size_t n;
		double p50, p95, max;
	} t[] = {
	    {{7}, 1, 7, 7, 7},
	    {{1, 2}, 2, 1, 2, 2},
	    {{4, 1, 3, 2}, 4, 2, 4, 4},
	    {{5, 1, 4, 2, 3}, 5, 3, 5, 5},
	    /* 20 values: p95 is the 19th, not the max */
	    {{20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1},
	     20,
	     10,
	     19,
	     20},
	    /* 21 values: ceil(0.95 * 21) = 20 */
	    {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21},
	     21,
	     11,
	     20,
	     21},
	    {{0.5, 0.25, 0.125}, 3, 0.25, 0.5, 0.5},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct rh_report *r = NULL;
		struct rh_report_group_stats s;

		CU_ASSERT_FATAL(rh_report_new(&r, NULL) == 0);
		for (size_t k = 0; k < t[i].n; k++) {
			add(r, mk("rb", "local", "local", NULL, "met", t[i].v[k], 60, NULL, NULL),
			    k);
			/* drills that did not restore never count toward the RTO */
			if (k % 2 == 0)
				add(r,
				    mk("rb", "local", "local", NULL, "failed", NAN, 60, NULL, NULL),
				    100 + k);
		}
		CU_ASSERT_EQUAL_FATAL(rh_report_group_count(r), 1);
		CU_ASSERT_EQUAL(rh_report_group_get(r, 0, &s), 0);
		CU_ASSERT(near(s.rto_p50_s, t[i].p50));
		CU_ASSERT(near(s.rto_p95_s, t[i].p95));
		CU_ASSERT(near(s.rto_max_s, t[i].max));
		if (!near(s.rto_p50_s, t[i].p50) || !near(s.rto_p95_s, t[i].p95))
			fprintf(stderr, "case %zu: p50 %g p95 %g\n", i, s.rto_p50_s, s.rto_p95_s);
		rh_report_free(r);
	}
}

static void test_report__pass_rate_and_counts(void)
{
	static const struct {
		const char *verdicts;
		double rate;
		uint64_t met, missed, failed, interrupted;
		const char *last;
	} t[] = {
	    /* M met, m missed, F failed, I interrupted */
	    {"MMMM", 1.0, 4, 0, 0, 0, "met"},
	    {"MmFI", 0.25, 1, 1, 1, 1, "interrupted"},
	    {"FFFM", 0.25, 1, 0, 3, 0, "met"},
	    {"mmm", 0.0, 0, 3, 0, 0, "missed"},
	    {"MMMMMMMMMF", 0.9, 9, 0, 1, 0, "failed"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct rh_report *r = NULL;
		struct rh_report_group_stats s;

		CU_ASSERT_FATAL(rh_report_new(&r, NULL) == 0);
		for (const char *v = t[i].verdicts; *v; v++) {
			const char *name = *v == 'M'   ? "met"
					   : *v == 'm' ? "missed"
					   : *v == 'F' ? "failed"
						       : "interrupted";
			double rto = *v == 'M' ? 10 : *v == 'm' ? 90 : NAN;

			add(r, mk("rb", "local", "local", NULL, name, rto, 60, NULL, NULL),
			    (uint64_t)(v - t[i].verdicts));
		}
		CU_ASSERT_EQUAL(rh_report_group_get(r, 0, &s), 0);
		CU_ASSERT_EQUAL(s.drills, strlen(t[i].verdicts));
		CU_ASSERT(near(s.pass_rate, t[i].rate));
		CU_ASSERT_EQUAL(s.met, t[i].met);
		CU_ASSERT_EQUAL(s.missed, t[i].missed);
		CU_ASSERT_EQUAL(s.failed, t[i].failed);
		CU_ASSERT_EQUAL(s.interrupted, t[i].interrupted);
		CU_ASSERT_STRING_EQUAL(s.last_verdict, t[i].last);
		rh_report_free(r);
	}
}

static void test_report__trend(void)
{
	static const struct {
		double v[16];
		size_t n;
		const char *trend;
	} t[] = {
	    {{10, 10, 10, 10, 10, 10, 10, 10, 10}, 9, "n/a"},
	    {{10, 10, 10, 10, 10, 10, 10, 10, 10, 10}, 10, "steady"},
	    {{10, 10, 10, 10, 10, 8, 8, 8, 8, 8}, 10, "improving"},
	    {{10, 10, 10, 10, 10, 12, 12, 12, 12, 12}, 10, "worse"},
	    /* within 10% either way is steady */
	    {{10, 10, 10, 10, 10, 10.9, 10.9, 10.9, 10.9, 10.9}, 10, "steady"},
	    {{10, 10, 10, 10, 10, 9.2, 9.2, 9.2, 9.2, 9.2}, 10, "steady"},
	    /* only the last ten count: an old bad spell does not matter */
	    {{90, 90, 90, 10, 10, 10, 10, 10, 20, 20, 20, 20, 20}, 13, "worse"},
	    /* the means, not single values */
	    {{10, 10, 10, 10, 10, 30, 1, 1, 1, 1}, 10, "improving"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct rh_report *r = NULL;
		struct rh_report_group_stats s;

		CU_ASSERT_FATAL(rh_report_new(&r, NULL) == 0);
		for (size_t k = 0; k < t[i].n; k++) {
			add(r, mk("rb", "local", "local", NULL, "met", t[i].v[k], 60, NULL, NULL),
			    k);
			/* failed drills in between have no RTO and do not move the trend */
			add(r, mk("rb", "local", "local", NULL, "failed", NAN, 60, NULL, NULL), k);
		}
		CU_ASSERT_EQUAL(rh_report_group_get(r, 0, &s), 0);
		CU_ASSERT_STRING_EQUAL(s.trend, t[i].trend);
		if (strcmp(s.trend, t[i].trend) != 0)
			fprintf(stderr, "trend case %zu: %s\n", i, s.trend);
		rh_report_free(r);
	}
}

static void test_report__steps_mean_and_slowest(void)
{
	struct rh_report *r = NULL;
	struct rh_report_group_stats s;
	json_t *j;
	char *out;

	CU_ASSERT_FATAL(rh_report_new(&r, NULL) == 0);
	add(r,
	    mk("rb", "local", "local", NULL, "met", 5, 60, NULL,
	       "[{\"id\":\"a\",\"status\":\"ok\",\"duration_s\":1},"
	       " {\"id\":\"b\",\"status\":\"ok\",\"duration_s\":2}]"),
	    1);
	add(r,
	    mk("rb", "local", "local", NULL, "met", 5, 60, NULL,
	       "[{\"id\":\"a\",\"status\":\"ok\",\"duration_s\":5},"
	       " {\"id\":\"b\",\"status\":\"ok\",\"duration_s\":2.5}]"),
	    2);
	/* failed and skipped attempts do not count toward the mean */
	add(r,
	    mk("rb", "local", "local", NULL, "failed", NAN, 60, NULL,
	       "[{\"id\":\"a\",\"status\":\"failed\",\"duration_s\":100},"
	       " {\"id\":\"b\",\"status\":\"timed_out\",\"duration_s\":100},"
	       " {\"id\":\"c\",\"status\":\"skipped\",\"duration_s\":null},"
	       " {\"id\":\"d\",\"status\":\"ok\",\"duration_s\":\"7\"}]"),
	    3);
	CU_ASSERT_EQUAL(rh_report_group_get(r, 0, &s), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s.slowest_step);
	CU_ASSERT_STRING_EQUAL(s.slowest_step, "a");
	CU_ASSERT(near(s.slowest_step_mean_s, 3));
	out = render(r, RH_REPORT_JSON);
	j = json_loads(out, 0, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	{
		json_t *steps =
		    json_object_get(json_array_get(json_object_get(j, "groups"), 0), "steps");

		CU_ASSERT_EQUAL(json_array_size(steps), 2); /* c and d never succeeded */
		CU_ASSERT_STRING_EQUAL(
		    json_string_value(json_object_get(json_array_get(steps, 1), "id")), "b");
		CU_ASSERT(near(json_real_value(json_object_get(json_array_get(steps, 1), "mean_s")),
			       2.25));
		CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(steps, 0), "ok")),
				2);
	}
	json_decref(j);
	free(out);
	rh_report_free(r);
}

static void test_report__groups_and_targets(void)
{
	struct rh_report *r = NULL;
	struct rh_report_group_stats s;
	json_t *rec;

	CU_ASSERT_FATAL(rh_report_new(&r, NULL) == 0);
	add(r, mk("zeta", "aws", "us-east-1", NULL, "met", 1, 10, NULL, NULL), 1);
	add(r, mk("alpha", NULL, NULL, NULL, "met", 1, 10, NULL, NULL), 2);
	add(r, mk("alpha", "ssh", NULL, NULL, "met", 1, 10, NULL, NULL), 3);
	add(r, mk("alpha", "aws", "us-east-1", "h20-out", "met", 1, 10, NULL, NULL), 4);
	add(r, mk("alpha", "aws", "us-east-1", NULL, "met", 1, 10, NULL, NULL), 5);
	/* a scenario given as an object with a name joins the string form */
	rec = mk("alpha", "aws", "us-east-1", NULL, "missed", 20, 15, NULL, NULL);
	json_object_set_new(rec, "scenario", json_pack("{s:s}", "name", "h20-out"));
	add(r, rec, 6);
	/* the runbook as a bare string (an older record) */
	rec = mk("x", NULL, NULL, NULL, "met", 1, 10, NULL, NULL);
	json_object_set_new(rec, "runbook", json_string("zeta"));
	add(r, rec, 7);
	CU_ASSERT_EQUAL_FATAL(rh_report_group_count(r), 6);
	static const char *want[][3] = {
	    {"alpha", "-", "-"},
	    {"alpha", "aws:us-east-1", "-"},
	    {"alpha", "aws:us-east-1", "h20-out"},
	    {"alpha", "ssh", "-"},
	    {"zeta", "-", "-"},
	    {"zeta", "aws:us-east-1", "-"},
	};
	for (size_t i = 0; i < 6; i++) {
		CU_ASSERT_EQUAL(rh_report_group_get(r, i, &s), 0);
		CU_ASSERT_STRING_EQUAL(s.runbook, want[i][0]);
		CU_ASSERT_STRING_EQUAL(s.target, want[i][1]);
		CU_ASSERT_STRING_EQUAL(s.scenario, want[i][2]);
	}
	CU_ASSERT_EQUAL(rh_report_group_get(r, 2, &s), 0);
	CU_ASSERT_EQUAL(s.drills, 2);
	CU_ASSERT(near(s.rto_target_s, 15)); /* the latest target wins */
	CU_ASSERT_STRING_EQUAL(s.last_verdict, "missed");
	CU_ASSERT(near(s.last_rto_s, 20));
	CU_ASSERT_EQUAL(rh_report_group_get(r, 6, &s), RH_EINVAL);
	rh_report_free(r);
}

static void test_report__filters(void)
{
	static const struct {
		struct rh_report_filter f;
		uint64_t drills;
		size_t groups;
	} t[] = {
	    {{0}, 26, 4},
	    {{.runbook = "tinylm-local"}, 12, 1},
	    {{.runbook = "tinylm"}, 0, 0}, /* exact, not a prefix */
	    {{.target = "aws"}, 11, 2},	   /* provider alone: any region */
	    {{.target = "aws:eu-west-1"}, 11, 2},
	    {{.target = "aws:eu-west"}, 0, 0},
	    {{.target = "local:local"}, 12, 1},
	    {{.scenario = "h20-unavailable-cn"}, 10, 1},
	    {{.scenario = "-"}, 13, 2},
	    {{.verdict = "failed"}, 2, 2},
	    {{.verdict = "interrupted"}, 1, 1},
	    {{.runbook = "tinylm-local", .verdict = "met"}, 9, 1},
	    /* tinylm t0s are 2026-01-01 .. 01-12 at 03:00; half-open window */
	    {{.runbook = "tinylm-local", .since = 1767236400, .until = 1767495600}, 3, 1},
	    {{.since = 1767236400 + 86400 * 11}, 15, 4},
	    {{.until = 1767236400}, 0, 0},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct rh_report *r = NULL;
		uint64_t seq = 0;
		char path[4096];
		char *out;
		json_t *j;

		CU_ASSERT_FATAL(rh_report_new(&r, &t[i].f) == 0);
		for (int k = 0; k < 3; k++) {
			snprintf(path, sizeof(path), "%s/report/%s", data_dir(),
				 k == 0	  ? "tinylm.json"
				 : k == 1 ? "scenario.json"
					  : "nasty.json");
			CU_ASSERT_EQUAL(driver_add_file(r, path, &seq), 0);
		}
		CU_ASSERT_EQUAL(rh_report_group_count(r), t[i].groups);
		out = render(r, RH_REPORT_JSON);
		j = json_loads(out, 0, NULL);
		CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "drills")), t[i].drills);
		if ((uint64_t)json_integer_value(json_object_get(j, "drills")) != t[i].drills ||
		    rh_report_group_count(r) != t[i].groups)
			fprintf(stderr, "filter case %zu: %lld drills, %zu groups\n", i,
				(long long)json_integer_value(json_object_get(j, "drills")),
				rh_report_group_count(r));
		json_decref(j);
		free(out);
		rh_report_free(r);
	}
	/* the same rules for `audit list` */
	{
		json_t *rec =
		    mk("rb", "aws", "eu-west-1", NULL, "met", 1, 2, "2026-03-01T00:00:00Z", NULL);
		struct rh_report_filter f = {.target = "aws"};

		CU_ASSERT(rh_report_filter_match(NULL, rec));
		CU_ASSERT(rh_report_filter_match(&f, rec));
		f.target = "aws:eu-west-2";
		CU_ASSERT(!rh_report_filter_match(&f, rec));
		f.target = NULL;
		f.since = 1772323200; /* 2026-03-01T00:00:00Z: inclusive */
		CU_ASSERT(rh_report_filter_match(&f, rec));
		f.since = 0;
		f.until = 1772323200; /* exclusive */
		CU_ASSERT(!rh_report_filter_match(&f, rec));
		json_object_del(rec, "t0"); /* no time: outside every window */
		CU_ASSERT(!rh_report_filter_match(&f, rec));
		CU_ASSERT(!rh_report_filter_match(NULL, json_null()));
		json_decref(rec);
	}
}

/* Every format, names that break naive escaping. */
static void test_report__escaping_every_format(void)
{
	static const char nasty[] = "<script>alert(\"x&y\")</script> 'q' ünïcødé ✓ 雲";
	struct rh_report *r = load_fixture("nasty.json", NULL);
	char *md = render(r, RH_REPORT_MD);
	char *html = render(r, RH_REPORT_HTML);
	char *js = render(r, RH_REPORT_JSON);
	char *csv = render(r, RH_REPORT_CSV);
	char *xml = render(r, RH_REPORT_JUNIT);
	json_t *j;

	/* no format lets markup through */
	CU_ASSERT(strstr(md, "<script>") == NULL);
	CU_ASSERT(strstr(html, "<script") == NULL);
	CU_ASSERT(strstr(xml, "<script") == NULL);
	CU_ASSERT(strstr(html, "<b>bold") == NULL);
	CU_ASSERT(strstr(xml, "<injected") == NULL);
	CU_ASSERT(strstr(html, "<injected") == NULL);
	CU_ASSERT(strstr(xml, "</failure><") == NULL);
	/* unicode passes through unchanged everywhere */
	CU_ASSERT(strstr(md, "ünïcødé ✓ 雲") != NULL);
	CU_ASSERT(strstr(html, "ünïcødé ✓ 雲") != NULL);
	CU_ASSERT(strstr(xml, "ünïcødé ✓ 雲") != NULL);
	CU_ASSERT(strstr(csv, "ünïcødé ✓ 雲") != NULL);
	/* html/xml: all five specials */
	CU_ASSERT(strstr(html, "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt; "
			       "&#39;q&#39;") != NULL);
	CU_ASSERT(strstr(xml, "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt; "
			      "&#39;q&#39;") != NULL);
	CU_ASSERT(strstr(xml, "drill-&lt;1&gt;&amp;&quot;&#39;ü") != NULL);
	CU_ASSERT(strstr(html, "a,b&quot;c:r&lt;1&gt;&amp;") != NULL);
	/* markdown: backslash escapes; the pipe of the scenario does not split a cell */
	CU_ASSERT(strstr(md, "\\<script\\>alert(\"x\\&y\")\\</script\\>") != NULL);
	CU_ASSERT(strstr(md, "s\\|1 \"quoted\", \\<b\\>bold\\</b\\>") != NULL);
	/* json: the exact strings come back */
	j = json_loads(js, 0, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	{
		json_t *g = json_array_get(json_object_get(j, "groups"), 0);

		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(g, "runbook")), nasty);
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(g, "target")),
				       "a,b\"c:r<1>&");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(g, "scenario")),
				       "s|1 \"quoted\", <b>bold</b>");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(g, "slowest_step")),
				       "<&>\"'step");
	}
	json_decref(j);
	/* csv: quoted, quotes doubled */
	CU_ASSERT(strstr(csv,
			 "\"<script>alert(\"\"x&y\"\")</script> 'q' ünïcødé ✓ 雲\","
			 "\"a,b\"\"c:r<1>&\",\"s|1 \"\"quoted\"\", <b>bold</b>\",3,1,1,1,0,") !=
		  NULL);
	/* junit: the failing step and its error, escaped, in the failure */
	CU_ASSERT(strstr(xml, "step &#39;&lt;&amp;&gt;&quot;&#39;step&#39; failed: boom "
			      "&lt;/failure&gt;&lt;injected attr=&quot;x&quot;&gt; &amp; ]]&gt;") !=
		  NULL);
	free(md);
	free(html);
	free(js);
	free(csv);
	free(xml);
	rh_report_free(r);
}

/* Control characters and broken UTF-8 cannot appear in XML at all, even as
 * references: they are replaced, and nothing else is lost. */
static void test_report__control_and_bad_utf8(void)
{
	struct rh_report *r = NULL;
	json_t *rec = mk("x", "local", NULL, NULL, "failed", NAN, 5, NULL,
			 "[{\"id\":\"s\",\"status\":\"failed\",\"end_s\":1,"
			 "\"error\":\"bell\\u0007 nul-free\\u001b[31m red\"}]");
	char *xml, *html, *md, *csv;

	json_object_set_new(rec, "runbook", json_pack("{s:s}", "name", "tab\there\nnew"));
	json_object_set_new(rec, "drill_id", json_string_nocheck("bad\xff\xfeutf8\xc3"));
	CU_ASSERT_FATAL(rh_report_new(&r, NULL) == 0);
	add(r, rec, 1);
	xml = render(r, RH_REPORT_JUNIT);
	html = render(r, RH_REPORT_HTML);
	md = render(r, RH_REPORT_MD);
	csv = render(r, RH_REPORT_CSV);
	CU_ASSERT(strchr(xml, '\a') == NULL && strchr(xml, '\x1b') == NULL);
	CU_ASSERT(strchr(html, '\a') == NULL && strchr(html, '\x1b') == NULL);
	CU_ASSERT(strstr(xml, "bad\xef\xbf\xbd\xef\xbf\xbdutf8\xef\xbf\xbd") != NULL);
	CU_ASSERT(strstr(xml, "bell\xef\xbf\xbd nul-free\xef\xbf\xbd[31m red") != NULL);
	CU_ASSERT(strstr(xml, "tab here new") != NULL);
	/* a markdown row stays one line */
	CU_ASSERT(strstr(md, "| tab here new | local | - |") != NULL);
	/* csv keeps the data, quoted because of the newline */
	CU_ASSERT(strstr(csv, "\r\n\"tab\there\nnew\",local,-,1,0,0,1,0,0,") != NULL);
	free(xml);
	free(html);
	free(md);
	free(csv);
	rh_report_free(r);
}

static void test_report__csv_quoting(void)
{
	static const struct {
		const char *name;
		const char *cell;
	} t[] = {
	    {"plain", "\r\nplain,"},
	    {"a,b", "\r\n\"a,b\","},
	    {"say \"hi\"", "\r\n\"say \"\"hi\"\"\","},
	    {"line\nbreak", "\r\n\"line\nbreak\","},
	    {"cr\rhere", "\r\n\"cr\rhere\","},
	    {"\"", "\r\n\"\"\"\","},
	    {"semi;colon 'q'", "\r\nsemi;colon 'q',"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct rh_report *r = NULL;
		char *csv;

		CU_ASSERT_FATAL(rh_report_new(&r, NULL) == 0);
		add(r, mk(t[i].name, "local", "local", NULL, "met", 1.5, 2, NULL, NULL), 1);
		csv = render(r, RH_REPORT_CSV);
		CU_ASSERT(strstr(csv, t[i].cell) != NULL);
		if (!strstr(csv, t[i].cell))
			fprintf(stderr, "csv case %zu:\n%s\n", i, csv);
		/* header + one row, each ended by CRLF; 23 columns */
		CU_ASSERT(strncmp(csv, "runbook,target,scenario,drills,met,", 35) == 0);
		CU_ASSERT_EQUAL(count(csv, "\r\n"), 2);
		CU_ASSERT(strstr(csv, ",1,1,0,0,0,0,0,0,1,1.5,1.5,1.5,2,n/a,,,,,met,\r\n") != NULL);
		free(csv);
		rh_report_free(r);
	}
}

static void test_report__fixture_numbers(void)
{
	struct rh_report *r = load_fixture("tinylm.json", NULL);
	struct rh_report_group_stats s;
	char *js = render(r, RH_REPORT_JSON), *md;
	json_t *j = json_loads(js, 0, NULL), *g;

	CU_ASSERT_EQUAL(rh_report_group_get(r, 0, &s), 0);
	CU_ASSERT_STRING_EQUAL(s.target, "local:local");
	CU_ASSERT_EQUAL(s.drills, 12);
	CU_ASSERT_EQUAL(s.met, 9);
	CU_ASSERT_EQUAL(s.missed, 1);
	CU_ASSERT_EQUAL(s.failed, 1);
	CU_ASSERT_EQUAL(s.interrupted, 1);
	CU_ASSERT(near(s.pass_rate, 0.75));
	/* restored: 28 30 31 32 35 40 45 50 52 65 */
	CU_ASSERT(near(s.rto_p50_s, 35));
	CU_ASSERT(near(s.rto_p95_s, 65));
	CU_ASSERT(near(s.rto_max_s, 65));
	CU_ASSERT(near(s.rto_target_s, 60));
	CU_ASSERT_STRING_EQUAL(s.trend, "worse"); /* 50.4 after 31.2 */
	CU_ASSERT_STRING_EQUAL(s.slowest_step, "sync");
	CU_ASSERT_STRING_EQUAL(s.first_t0, "2026-01-01T03:00:00.000Z");
	CU_ASSERT_STRING_EQUAL(s.last_t0, "2026-01-12T03:00:00.000Z");
	CU_ASSERT_STRING_EQUAL(s.last_verdict, "interrupted");
	CU_ASSERT(isnan(s.last_rto_s));
	CU_ASSERT(near(s.last_t0_epoch, 1768186800));
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	g = json_array_get(json_object_get(j, "groups"), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "percentile_method")),
			       "nearest-rank");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "last_seq")), 12);
	CU_ASSERT(near(json_number_value(json_object_get(json_object_get(g, "rto"), "p95_s")), 65));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(g, "rto"), "restored")),
			10);
	CU_ASSERT(near(json_number_value(json_object_get(g, "pass_rate")), 0.75));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(g, "trend")), "worse");
	json_decref(j);
	md = render(r, RH_REPORT_MD);
	CU_ASSERT(strstr(md,
			 "| tinylm-local | local:local | - | 12 | 9 | 1 | 1 | 1 | 0 | 0 | 0 | 75.0% | "
			 "35.0 | 65.0 | 65.0 | 60 | worse | sync | interrupted |") != NULL);
	CU_ASSERT(strstr(md, "| sync (slowest) |") != NULL);
	free(md);
	free(js);
	rh_report_free(r);
}

static void test_report__junit_cases(void)
{
	struct rh_report *r = load_fixture("tinylm.json", NULL);
	char *xml = render(r, RH_REPORT_JUNIT);

	CU_ASSERT(strstr(xml, "<testsuites name=\"rehydra drills\" tests=\"12\" failures=\"2\" "
			      "errors=\"1\"") != NULL);
	CU_ASSERT(strstr(xml, "<testsuite name=\"tinylm-local on local:local\" tests=\"12\" "
			      "failures=\"2\" errors=\"1\" skipped=\"0\"") != NULL);
	CU_ASSERT_EQUAL(count(xml, "<testcase "), 12);
	CU_ASSERT_EQUAL(count(xml, "<failure "), 2);
	CU_ASSERT_EQUAL(count(xml, "<error "), 1);
	/* time = rto_s for restored drills, the total for the others */
	CU_ASSERT(strstr(xml,
			 "<testcase name=\"20260101T030000Z-tinylm-local-000000\" "
			 "classname=\"tinylm-local.local:local\" time=\"30.000\"></testcase>") !=
		  NULL);
	CU_ASSERT(strstr(xml, "time=\"14.000\">\n      <failure type=\"failed\" "
			      "message=\"step &#39;sync&#39; failed: sha256 mismatch for "
			      "shards/model-0001.bin") != NULL);
	CU_ASSERT(strstr(xml, "<failure type=\"missed\" message=\"rto 65.000 s exceeded the "
			      "target 60 s\">") != NULL);
	CU_ASSERT(strstr(xml, "<error type=\"interrupted\" message=\"interrupted: step "
			      "&#39;sync&#39; cancelled: interrupted by SIGINT\">") != NULL);
	CU_ASSERT(strstr(xml, "<property name=\"rto_p95_s\" value=\"65\"/>") != NULL);
	/* the Ant schema's timestamp: no zone, no fraction */
	CU_ASSERT(
	    strstr(xml, "skipped=\"0\" time=\"431.900\" timestamp=\"2026-01-01T03:00:00\">") !=
	    NULL);
	free(xml);
	rh_report_free(r);

	/* a drill without a target: no " on -" in the names */
	CU_ASSERT_FATAL(rh_report_new(&r, NULL) == 0);
	add(r, mk("bare", NULL, NULL, "s1", "met", 1, 2, NULL, NULL), 1);
	xml = render(r, RH_REPORT_JUNIT);
	CU_ASSERT(strstr(xml, "<testsuite name=\"bare (s1)\" tests=\"1\"") != NULL);
	CU_ASSERT(strstr(xml, "classname=\"bare\" time=\"1.000\"></testcase>") != NULL);
	/* no t0: no timestamp at all (the JUnit schemas do not allow one on
	 * <testsuites>) */
	CU_ASSERT_EQUAL(count(xml, " timestamp="), 0);
	CU_ASSERT(strstr(xml, "<property name=\"generated\" value=\"") != NULL);
	free(xml);
	rh_report_free(r);
}

static void test_report__html_chart(void)
{
	struct rh_report *r = load_fixture("tinylm.json", NULL);
	char *html = render(r, RH_REPORT_HTML);
	char stamp[32];

	/* self-contained: no scripts, no external references */
	CU_ASSERT(strstr(html, "<script") == NULL);
	CU_ASSERT(strstr(html, "src=") == NULL);
	CU_ASSERT(strstr(html, "<link") == NULL);
	CU_ASSERT(strstr(html, "url(") == NULL);
	CU_ASSERT_EQUAL(count(html, "http://") + count(html, "https://"),
			count(html, "xmlns=\"http://www.w3.org/2000/svg\""));
	CU_ASSERT_EQUAL(count(html, "<svg "), 1);
	/* ten restored drills are points, two without an RTO are crosses */
	CU_ASSERT_EQUAL(count(html, "<circle "), 10);
	CU_ASSERT_EQUAL(count(html, "<path d="), 2);
	CU_ASSERT_EQUAL(count(html, "fill=\"#bf6a02\""), 1); /* the missed one */
	CU_ASSERT(strstr(html, "class=\"target\"") != NULL);
	CU_ASSERT(strstr(html, "stroke-dasharray") != NULL);
	CU_ASSERT(strstr(html, ">target 60 s</text>") != NULL);
	CU_ASSERT(strstr(html, ">RTO (s)</text>") != NULL);
	CU_ASSERT(strstr(html, "journal sequence number (see the drill table)") != NULL);
	CU_ASSERT(count(html, "class=\"tick\"") >= 6);
	snprintf(stamp, sizeof(stamp), "%s", "</html>\n");
	CU_ASSERT(strlen(html) > 8 && strcmp(html + strlen(html) - 8, stamp) == 0);
	free(html);
	rh_report_free(r);

	/* a long history plots only the most recent drills */
	CU_ASSERT_FATAL(rh_report_new(&r, NULL) == 0);
	for (int i = 0; i < 700; i++)
		add(r, mk("long", "local", "local", NULL, "met", 1 + i % 7, 10, NULL, NULL),
		    (uint64_t)i);
	html = render(r, RH_REPORT_HTML);
	CU_ASSERT_EQUAL(count(html, "<circle "), 500);
	CU_ASSERT(strstr(html, "the most recent 500 of 700") != NULL);
	free(html);
	rh_report_free(r);
}

static void test_report__empty_report(void)
{
	struct rh_report *r = NULL;
	struct rh_report_filter f = {.runbook = "nothing-matches"};
	char *out;
	json_t *j;

	CU_ASSERT_FATAL(rh_report_new(&r, &f) == 0);
	add(r, mk("rb", "local", "local", NULL, "met", 1, 2, NULL, NULL), 1);
	CU_ASSERT_EQUAL(rh_report_group_count(r), 0);
	out = render(r, RH_REPORT_JSON);
	j = json_loads(out, 0, NULL);
	CU_ASSERT_PTR_NOT_NULL(j);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(j, "groups")), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "drills")), 0);
	CU_ASSERT(json_is_null(json_object_get(j, "last_seq")));
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(json_object_get(j, "filter"), "runbook")),
	    "nothing-matches");
	json_decref(j);
	free(out);
	out = render(r, RH_REPORT_CSV);
	CU_ASSERT_EQUAL(count(out, "\r\n"), 1);
	free(out);
	out = render(r, RH_REPORT_JUNIT);
	CU_ASSERT(strstr(out, "tests=\"0\" failures=\"0\" errors=\"0\"") != NULL);
	CU_ASSERT(strstr(out, "</testsuites>") != NULL);
	free(out);
	out = render(r, RH_REPORT_MD);
	CU_ASSERT(strstr(out, "No drills match.") != NULL);
	CU_ASSERT(strstr(out, "runbook nothing-matches") != NULL);
	free(out);
	out = render(r, RH_REPORT_HTML);
	CU_ASSERT(strstr(out, "No drills match.") != NULL);
	CU_ASSERT(strstr(out, "</html>") != NULL);
	free(out);
	rh_report_free(r);
	rh_report_free(NULL);
}

static void test_report__bad_input(void)
{
	struct rh_report *r = NULL;
	struct rh_report_group_stats s;
	json_t *junk = json_pack("{s:i, s:[], s:s, s:s, s:{}}", "rto_s", -5, "runbook", "verdict",
				 "maybe", "t0", "not a time", "steps");
	json_t *arr = json_array();
	char *xml;

	CU_ASSERT_FATAL(rh_report_new(&r, NULL) == 0);
	CU_ASSERT_EQUAL(rh_report_add(r, arr, 9), RH_EINVAL);
	CU_ASSERT(strstr(rh_error_last(), "journal entry 9") != NULL);
	/* wrong types count as missing: the drill still counts, nothing crashes */
	CU_ASSERT_EQUAL(rh_report_add(r, junk, 10), 0);
	CU_ASSERT_EQUAL(rh_report_group_count(r), 1);
	CU_ASSERT_EQUAL(rh_report_group_get(r, 0, &s), 0);
	CU_ASSERT_STRING_EQUAL(s.runbook, "-");
	CU_ASSERT_STRING_EQUAL(s.target, "-");
	CU_ASSERT_EQUAL(s.drills, 1);
	CU_ASSERT_EQUAL(s.met, 0);
	CU_ASSERT(isnan(s.rto_p50_s)); /* a negative RTO is not an RTO */
	CU_ASSERT_STRING_EQUAL(s.last_verdict, "unknown");
	CU_ASSERT_STRING_EQUAL(s.first_t0, "not a time"); /* shown as recorded */
	CU_ASSERT(isnan(s.last_t0_epoch));
	xml = render(r, RH_REPORT_JUNIT);
	CU_ASSERT(strstr(xml, "<testcase name=\"entry-10\"") != NULL);
	CU_ASSERT(strstr(xml, "failures=\"1\"") != NULL); /* unknown verdict fails */
	free(xml);
	CU_ASSERT_EQUAL(rh_report_write(r, (enum rh_report_format)42, stdout), RH_EINVAL);
	json_decref(junk);
	json_decref(arr);
	rh_report_free(r);
}

static void test_report__write_error(void)
{
	struct rh_report *r = load_fixture("tinylm.json", NULL);
	FILE *f = fopen("/dev/full", "w");

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	for (int fmt = RH_REPORT_MD; fmt <= RH_REPORT_JUNIT; fmt++) {
		CU_ASSERT_EQUAL(rh_report_write(r, (enum rh_report_format)fmt, f), RH_EIO);
		CU_ASSERT(strstr(rh_error_last(), "cannot write the report") != NULL);
		clearerr(f);
	}
	fclose(f);
	rh_report_free(r);
}

/* 100,000 drills must report in well under 2 s (tests/bench/audit.sh
 * measures it); here the bound is only loose enough for a loaded machine
 * and the sanitizer build, to catch a quadratic slip. */
static void test_report__many_records(void)
{
	struct rh_report *r = NULL;
	struct rh_report_group_stats s;
	json_t *rec = mk("bulk", "local", "local", NULL, "met", 1, 100, "2026-01-01T00:00:00Z",
			 "[{\"id\":\"a\",\"status\":\"ok\",\"duration_s\":1},"
			 " {\"id\":\"b\",\"status\":\"ok\",\"duration_s\":2},"
			 " {\"id\":\"c\",\"status\":\"failed\",\"end_s\":1,\"error\":\"x\"}]");
	struct timespec a, b;
	char id[32];
	FILE *null = fopen("/dev/null", "w");

	CU_ASSERT_FATAL(rh_report_new(&r, NULL) == 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < 100000; i++) {
		snprintf(id, sizeof(id), "drill-%d", i);
		json_object_set_new(rec, "drill_id", json_string(id));
		json_object_set_new(rec, "rto_s", json_real((double)(i % 1000) / 10.0));
		json_object_set_new(rec, "verdict", json_string(i % 10 ? "met" : "failed"));
		json_object_set_new(json_object_get(rec, "runbook"), "name",
				    json_string(i % 4 ? "bulk" : "bulk-2"));
		CU_ASSERT_EQUAL_FATAL(rh_report_add(r, rec, (uint64_t)i + 1), 0);
	}
	for (int fmt = RH_REPORT_MD; fmt <= RH_REPORT_JUNIT; fmt++)
		CU_ASSERT_EQUAL(rh_report_write(r, (enum rh_report_format)fmt, null), 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	CU_ASSERT((double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9 < 30.0);
	CU_ASSERT_EQUAL(rh_report_group_count(r), 2);
	CU_ASSERT_EQUAL(rh_report_group_get(r, 0, &s), 0);
	CU_ASSERT_EQUAL(s.drills, 75000);
	CU_ASSERT_EQUAL(s.failed, 5000); /* i % 10 == 0 and i % 4 != 0 */
	CU_ASSERT(near(s.rto_max_s, 99.9));
	fclose(null);
	json_decref(rec);
	rh_report_free(r);
}

static void test_report__load_latency(void)
{
	struct rh_report *r = NULL;
	char *md, *html, *js, *csv;
	json_t *doc, *load;

	CU_ASSERT_FATAL(rh_report_new(&r, NULL) == 0);
	for (int i = 0; i < 4; i++) {
		json_t *rec = mk("lat", "local", "local", NULL, "met", 2, 10, NULL, NULL);

		/* the third drill had no load test: no point, and the latest still counts */
		if (i != 2)
			json_object_set_new(rec, "load",
					    json_pack("{s:s,s:f,s:i}", "step", "load", "p99_ms",
						      i == 1 ? 250.0 : 12.5 + i, "requests", 100));
		add(r, rec, (uint64_t)i);
	}
	md = render(r, RH_REPORT_MD);
	CU_ASSERT(strstr(md, "| last verdict | load p99 ms |") != NULL);
	CU_ASSERT(strstr(md, "| met | 15.5 |\n") != NULL);
	CU_ASSERT(strstr(md, "Load test p99 latency: 15.5 ms in the latest, at most 250 ms over 3 "
			     "drills.") != NULL);
	html = render(r, RH_REPORT_HTML);
	CU_ASSERT_EQUAL(count(html, "<svg "), 2);
	CU_ASSERT(strstr(html, ">load p99 (ms)</text>") != NULL);
	CU_ASSERT(strstr(html, ": load p99 250 ms</title>") != NULL);
	CU_ASSERT_EQUAL(count(html, ": load p99 "), 3); /* one point per drill with a load test */
	js = render(r, RH_REPORT_JSON);
	doc = json_loads(js, 0, NULL);
	load = json_object_get(json_array_get(json_object_get(doc, "groups"), 0), "load");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(load, "drills")), 3);
	CU_ASSERT(near(json_number_value(json_object_get(load, "last_p99_ms")), 15.5));
	CU_ASSERT(near(json_number_value(json_object_get(load, "max_p99_ms")), 250));
	csv = render(r, RH_REPORT_CSV);
	CU_ASSERT(strstr(csv, ",last_verdict,load_p99_ms\r\n") != NULL);
	CU_ASSERT(strstr(csv, ",met,15.5\r\n") != NULL);
	json_decref(doc);
	free(md);
	free(html);
	free(js);
	free(csv);
	rh_report_free(r);
}

/* Aborted drills (pre-flight failed, nothing created) are not in the pass
 * rate nor the RTO statistics: one met and one aborted is a 100 % pass. */
static void test_report__aborted_not_in_pass_rate(void)
{
	struct rh_report *r = NULL;
	struct rh_report_group_stats s;

	CU_ASSERT_FATAL(rh_report_new(&r, NULL) == 0);
	add(r, mk("rb", "local", NULL, NULL, "met", 10, 60, "2026-01-01T00:00:00Z", NULL), 1);
	add(r, mk("rb", "local", NULL, NULL, "aborted", NAN, 60, "2026-01-02T00:00:00Z", NULL),
	    2);
	add(r, mk("rb", "local", NULL, NULL, "aborted", NAN, 60, "2026-01-03T00:00:00Z", NULL),
	    3);
	CU_ASSERT_EQUAL_FATAL(rh_report_group_get(r, 0, &s), 0);
	CU_ASSERT_EQUAL(s.drills, 1);
	CU_ASSERT_EQUAL(s.met, 1);
	CU_ASSERT_DOUBLE_EQUAL(s.pass_rate, 1.0, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(s.rto_max_s, 10.0, 1e-9);
	rh_report_free(r);
}

RH_TEST_MAIN("report", {"test_report__format_parse", test_report__format_parse},
	     {"test_report__aborted_not_in_pass_rate", test_report__aborted_not_in_pass_rate},
	     {"test_report__load_latency", test_report__load_latency},
	     {"test_report__time_parse", test_report__time_parse},
	     {"test_report__percentiles", test_report__percentiles},
	     {"test_report__pass_rate_and_counts", test_report__pass_rate_and_counts},
	     {"test_report__trend", test_report__trend},
	     {"test_report__steps_mean_and_slowest", test_report__steps_mean_and_slowest},
	     {"test_report__groups_and_targets", test_report__groups_and_targets},
	     {"test_report__filters", test_report__filters},
	     {"test_report__escaping_every_format", test_report__escaping_every_format},
	     {"test_report__control_and_bad_utf8", test_report__control_and_bad_utf8},
	     {"test_report__csv_quoting", test_report__csv_quoting},
	     {"test_report__fixture_numbers", test_report__fixture_numbers},
	     {"test_report__junit_cases", test_report__junit_cases},
	     {"test_report__html_chart", test_report__html_chart},
	     {"test_report__empty_report", test_report__empty_report},
	     {"test_report__bad_input", test_report__bad_input},
	     {"test_report__write_error", test_report__write_error},
	     {"test_report__many_records", test_report__many_records})
