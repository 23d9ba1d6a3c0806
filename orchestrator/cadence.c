/*
 * cadence.c - rehearsal cadence compliance, computed from the journal.
 *
 * An auditor's question is not "did the last rehearsal pass" but "has the
 * contingency been proven as often as we promised". The journal already
 * holds every drill, hash-chained; this reads only the few fields it needs
 * (scenario, t0, verdict) in one streaming pass, so a scheduler can ask
 * before every run which scenarios are due without loading the records.
 */
#include "cadence.h"
#include "clock.h"
#include "error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

#define DAY_S 86400.0

double rh_cadence_parse_time(const char *s)
{
	int y, mo, d, h, mi, sec, n = 0;
	struct tm tm = {0};
	time_t t;

	if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	return (double)t + (s[n] == '.' ? strtod(s + n, NULL) : 0.0);
}

struct seen {
	json_t *by_name; /* name -> {count, last_t, last_at, last_verdict, ok_t, ok_at} */
};

static int on_entry(const struct rh_journal_entry *e, void *user)
{
	struct seen *st = user;
	const char *name = json_string_value(json_object_get(e->record, "scenario"));
	const char *t0 = json_string_value(json_object_get(e->record, "t0"));
	const char *verdict = json_string_value(json_object_get(e->record, "verdict"));
	json_t *o;
	double t = rh_cadence_parse_time(t0);

	if (!name || t < 0 || !verdict)
		return 0;
	o = json_object_get(st->by_name, name);
	if (!o) {
		o = json_object();
		if (!o || json_object_set_new(st->by_name, name, o) < 0)
			return rh_error_set(RH_ENOMEM, "out of memory");
	}
	json_object_set_new(o, "count",
			    json_integer(json_integer_value(json_object_get(o, "count")) + 1));
	if (t >= json_number_value(json_object_get(o, "last_t"))) {
		json_object_set_new(o, "last_t", json_real(t));
		json_object_set_new(o, "last_at", json_string(t0));
		json_object_set_new(o, "last_verdict", json_string(verdict));
	}
	if (strcmp(verdict, "met") == 0 && t >= json_number_value(json_object_get(o, "ok_t"))) {
		json_object_set_new(o, "ok_t", json_real(t));
		json_object_set_new(o, "ok_at", json_string(t0));
	}
	return 0;
}

static json_t *time_or_null(double t)
{
	struct timespec ts;
	char buf[40];

	if (t <= 0)
		return json_null();
	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - floor(t)) * 1e9);
	rh_clock_rfc3339(buf, sizeof(buf), &ts);
	return json_string(buf);
}

int rh_cadence_compute(json_t **out, const json_t *scenarios, struct rh_journal *j, time_t now)
{
	static const char *const fields[] = {"scenario", "t0", "verdict", NULL};
	struct seen st = {json_object()};
	json_t *res = json_array();
	size_t i;
	json_t *s;
	int rc = 0;

	*out = NULL;
	if (!st.by_name || !res) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	if (j) {
		rc = rh_journal_foreach_fields(j, fields, on_entry, &st);
		if (rc < 0)
			goto done;
	}
	json_array_foreach(scenarios, i, s)
	{
		const char *name = json_string_value(json_object_get(s, "scenario"));
		const json_t *cd = json_object_get(s, "cadence_days");
		const json_t *o = json_object_get(st.by_name, name ? name : "");
		double cadence_s = json_is_number(cd) ? json_number_value(cd) * DAY_S : 0;
		double ok_t = json_number_value(json_object_get(o, "ok_t"));
		double grace = cadence_s * 0.1 > DAY_S ? cadence_s * 0.1 : DAY_S;
		double next = ok_t > 0 && cadence_s > 0 ? ok_t + cadence_s : 0;
		const char *status;
		json_t *e;

		if (!o)
			status = "never";
		else if (cadence_s <= 0)
			status = ok_t > 0 ? "ok" : "never";
		else if (ok_t <= 0)
			status = "overdue";
		else if ((double)now < next)
			status = "ok";
		else if ((double)now < next + grace)
			status = "due";
		else
			status = "overdue";
		if (!o && cadence_s > 0)
			next = (double)now; /* never rehearsed: due now */
		e = json_pack("{s:s?,s:O?,s:O?,s:I,s:O?,s:O?,s:O?,s:o,s:s}", "scenario", name,
			      "file", json_object_get(s, "file"), "cadence_days", cd, "rehearsals",
			      json_integer_value(json_object_get(o, "count")), "last_rehearsal",
			      json_object_get(o, "last_at"), "last_verdict",
			      json_object_get(o, "last_verdict"), "last_success",
			      json_object_get(o, "ok_at"), "next_due", time_or_null(next), "status",
			      status);
		if (!e || json_array_append_new(res, e) < 0) {
			rc = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
		if (!json_object_get(e, "last_rehearsal"))
			json_object_set_new(e, "last_rehearsal", json_null());
		if (!json_object_get(e, "last_verdict"))
			json_object_set_new(e, "last_verdict", json_null());
		if (!json_object_get(e, "last_success"))
			json_object_set_new(e, "last_success", json_null());
		if (!json_object_get(e, "cadence_days"))
			json_object_set_new(e, "cadence_days", json_null());
	}
	*out = res;
	res = NULL;
done:
	json_decref(res);
	json_decref(st.by_name);
	return rc;
}

bool rh_cadence_failing(const json_t *cadence)
{
	size_t i;
	json_t *e;

	json_array_foreach(cadence, i, e)
	{
		const char *s = json_string_value(json_object_get(e, "status"));

		if (s && (strcmp(s, "overdue") == 0 || strcmp(s, "never") == 0))
			return true;
	}
	return false;
}

/* ---- report sections ------------------------------------------------------ */

static const char *jstr(const json_t *o, const char *k, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : dflt;
}

static void put_md(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '|' || *s == '\\' || *s == '*' || *s == '_' || *s == '`')
			fputc('\\', f);
		fputc(*s == '\n' ? ' ' : *s, f);
	}
}

static void put_xml(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '&':
			fputs("&amp;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		case '\'':
			fputs("&apos;", f);
			break;
		default:
			if ((unsigned char)*s < 0x20 && *s != '\t')
				fputc(' ', f);
			else
				fputc(*s, f);
		}
	}
}

static void cadence_str(char *buf, size_t size, const json_t *e)
{
	const json_t *cd = json_object_get(e, "cadence_days");

	if (json_is_number(cd))
		snprintf(buf, size, "%g", json_number_value(cd));
	else
		snprintf(buf, size, "-");
}

void rh_cadence_write_md(FILE *f, const json_t *cadence)
{
	size_t i;
	json_t *e;

	if (!cadence)
		return;
	fputs("\n## Rehearsal cadence\n\n", f);
	if (json_array_size(cadence) == 0) {
		fputs("No scenarios.\n", f);
		return;
	}
	fputs("| scenario | cadence days | rehearsals | last rehearsal | last verdict | last "
	      "success | next due | status |\n|---|--:|--:|---|---|---|---|---|\n",
	      f);
	json_array_foreach(cadence, i, e)
	{
		char cd[32];

		cadence_str(cd, sizeof(cd), e);
		fputs("| ", f);
		put_md(f, jstr(e, "scenario", "-"));
		fprintf(f, " | %s | %lld | ", cd,
			(long long)json_integer_value(json_object_get(e, "rehearsals")));
		put_md(f, jstr(e, "last_rehearsal", "-"));
		fputs(" | ", f);
		put_md(f, jstr(e, "last_verdict", "-"));
		fputs(" | ", f);
		put_md(f, jstr(e, "last_success", "-"));
		fputs(" | ", f);
		put_md(f, jstr(e, "next_due", "-"));
		fprintf(f, " | %s |\n", jstr(e, "status", "-"));
	}
}

void rh_cadence_write_html(FILE *f, const json_t *cadence)
{
	size_t i;
	json_t *e;

	if (!cadence)
		return;
	fputs("<section id=\"cadence\">\n<h2>Rehearsal cadence</h2>\n", f);
	if (json_array_size(cadence) == 0) {
		fputs("<p>No scenarios.</p>\n</section>\n", f);
		return;
	}
	fputs("<div class=\"wrap\"><table>\n<thead><tr><th>scenario</th><th class=\"n\">cadence "
	      "days</th><th class=\"n\">rehearsals</th><th>last rehearsal</th><th>last "
	      "verdict</th><th>last success</th><th>next due</th><th>status</th></tr></thead>\n"
	      "<tbody>\n",
	      f);
	json_array_foreach(cadence, i, e)
	{
		const char *st = jstr(e, "status", "-");
		char cd[32];

		cadence_str(cd, sizeof(cd), e);
		fputs("<tr><td class=\"name\">", f);
		put_xml(f, jstr(e, "scenario", "-"));
		fprintf(f, "</td><td class=\"n\">%s</td><td class=\"n\">%lld</td><td>", cd,
			(long long)json_integer_value(json_object_get(e, "rehearsals")));
		put_xml(f, jstr(e, "last_rehearsal", "-"));
		fputs("</td><td>", f);
		put_xml(f, jstr(e, "last_verdict", "-"));
		fputs("</td><td>", f);
		put_xml(f, jstr(e, "last_success", "-"));
		fputs("</td><td>", f);
		put_xml(f, jstr(e, "next_due", "-"));
		/* the verdict badge colours: ok like met, due like missed, else failed */
		fprintf(f, "</td><td><span class=\"badge %s\">%s</span></td></tr>\n",
			strcmp(st, "ok") == 0	 ? "met"
			: strcmp(st, "due") == 0 ? "missed"
						 : "failed",
			st);
	}
	fputs("</tbody>\n</table></div>\n</section>\n", f);
}

static bool failing(const json_t *e)
{
	const char *s = jstr(e, "status", "");

	return strcmp(s, "overdue") == 0 || strcmp(s, "never") == 0;
}

void rh_cadence_junit_counts(const json_t *cadence, unsigned long long *tests,
			     unsigned long long *failures)
{
	size_t i;
	json_t *e;

	*tests = json_array_size(cadence);
	*failures = 0;
	json_array_foreach(cadence, i, e) *failures += failing(e);
}

void rh_cadence_write_junit(FILE *f, const json_t *cadence)
{
	unsigned long long tests, failures;
	size_t i;
	json_t *e;

	if (!cadence)
		return;
	rh_cadence_junit_counts(cadence, &tests, &failures);
	fprintf(f,
		"  <testsuite name=\"rehearsal cadence\" tests=\"%llu\" failures=\"%llu\" "
		"errors=\"0\" skipped=\"0\" time=\"0\">\n",
		tests, failures);
	json_array_foreach(cadence, i, e)
	{
		char cd[32];

		cadence_str(cd, sizeof(cd), e);
		fputs("    <testcase name=\"", f);
		put_xml(f, jstr(e, "scenario", "-"));
		fputs("\" classname=\"rehearsal.cadence\" time=\"0\">", f);
		if (!failing(e)) {
			fputs("</testcase>\n", f);
			continue;
		}
		fprintf(f, "\n      <failure type=\"%s\" message=\"", jstr(e, "status", ""));
		if (strcmp(jstr(e, "status", ""), "never") == 0)
			fputs("never rehearsed", f);
		else {
			fprintf(f, "overdue: cadence %s days, last success ", cd);
			put_xml(f, jstr(e, "last_success", "never"));
		}
		fputs("\">scenario ", f);
		put_xml(f, jstr(e, "scenario", "-"));
		fprintf(f, " (%s): last rehearsal ", jstr(e, "file", "-"));
		put_xml(f, jstr(e, "last_rehearsal", "never"));
		fputs(", verdict ", f);
		put_xml(f, jstr(e, "last_verdict", "-"));
		fputs(", last success ", f);
		put_xml(f, jstr(e, "last_success", "never"));
		fputs(", next due ", f);
		put_xml(f, jstr(e, "next_due", "-"));
		fputs("</failure>\n    </testcase>\n", f);
	}
	fputs("  </testsuite>\n", f);
}

/* ---- Prometheus ------------------------------------------------------------ */

static void prom_label(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f);
		if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

int rh_cadence_prom(char **out, const json_t *cadence)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	size_t i;
	json_t *e;

	*out = NULL;
	if (!f)
		return rh_error_set(RH_ENOMEM, "out of memory rendering the metrics");
	fputs("# HELP rehydra_scenario_last_success_timestamp_seconds When the latest "
	      "successful rehearsal (verdict met) of the scenario started, in seconds since the "
	      "epoch (no sample: never succeeded).\n"
	      "# TYPE rehydra_scenario_last_success_timestamp_seconds gauge\n",
	      f);
	json_array_foreach(cadence, i, e)
	{
		double t = rh_cadence_parse_time(jstr(e, "last_success", ""));

		if (t < 0)
			continue;
		fputs("rehydra_scenario_last_success_timestamp_seconds{scenario=\"", f);
		prom_label(f, jstr(e, "scenario", "-"));
		fprintf(f, "\"} %.3f\n", t);
	}
	fputs("# HELP rehydra_scenario_overdue 1 when the scenario's last successful rehearsal "
	      "is older than its cadence_days plus the grace, or it never succeeded, else 0.\n"
	      "# TYPE rehydra_scenario_overdue gauge\n",
	      f);
	json_array_foreach(cadence, i, e)
	{
		fputs("rehydra_scenario_overdue{scenario=\"", f);
		prom_label(f, jstr(e, "scenario", "-"));
		fprintf(f, "\"} %d\n", failing(e) ? 1 : 0);
	}
	if (fclose(f) != 0 || !text) {
		free(text);
		return rh_error_set(RH_ENOMEM, "out of memory rendering the metrics");
	}
	*out = text;
	return 0;
}
