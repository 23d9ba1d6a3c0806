/*
 * report.h - RTO reports built from the audit journal: how often each
 * runbook was rehearsed on each target, how often it met its RTO target,
 * and how long recovery took, for people (md, html) and machines (json,
 * csv, junit).
 *
 * Order of calls: rh_report_new, then rh_report_add for every journal entry
 * in journal order (streaming: the report keeps per-group aggregates, not
 * the records), then rh_report_write any number of times, rh_report_free.
 *
 * Groups: runbook name x target ("provider:region", "provider" without a
 * region, "-" without a target) x scenario ("-" when the record has none;
 * a record's "scenario" is a string or an object with a "name").
 *
 * Per group: drills, met, missed, failed, interrupted, aborted and abandoned
 * (both kept out of drills: see report.c), pass rate (met /
 * drills), RTO p50/p95/max over the drills that restored the service (those
 * whose rto_s is a number), the RTO target (the latest rto_target_s), mean
 * duration per step id over the steps whose status is "ok", the slowest
 * step (highest mean), the trend, first/last t0 and the last verdict.
 *
 * Percentiles are nearest-rank: for n sorted values v[1..n], pP is
 * v[ceil(P/100 * n)] (so p50 of {1,2,3,4} is 2, p95 of 20 values is the
 * 19th). Nearest-rank always reports an RTO that was actually measured.
 *
 * Trend compares the mean RTO of the last 5 restored drills (journal order)
 * with the mean of the 5 before them: "improving" when the recent mean is
 * more than 10% lower, "worse" when more than 10% higher, "steady"
 * otherwise, "n/a" with fewer than 10 restored drills.
 *
 * Memory: per group the aggregates, the RTO values (for percentiles) and a
 * small summary per drill (id, t0, rto, verdict, failure reason) for the
 * JUnit test cases and the HTML chart; never the records themselves.
 */
#ifndef RH_REPORT_H
#define RH_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

struct rh_report;

/* Which records a report (or `audit list`) covers. Every field is optional:
 * NULL / 0 means "any". Strings are borrowed for the report's lifetime.
 *   runbook   exact runbook name
 *   target    "provider:region" exactly, or "provider" for any region of it
 *   scenario  exact scenario name ("-" selects records without a scenario)
 *   verdict   met | missed | failed | interrupted | aborted | abandoned
 *   since     t0 >= since   (half-open interval: --since 2026-01-01
 *   until     t0 <  until    --until 2026-02-01 is January) */
struct rh_report_filter {
	const char *runbook;
	const char *target;
	const char *scenario;
	const char *verdict;
	time_t since;
	time_t until;
};

enum rh_report_format {
	RH_REPORT_MD = 0, /* markdown tables, for a terminal or a pull request */
	RH_REPORT_HTML,	  /* one self-contained page with inline SVG charts */
	RH_REPORT_JSON,	  /* every number, for machines */
	RH_REPORT_CSV,	  /* one row per group, RFC 4180 */
	RH_REPORT_JUNIT,  /* a testsuite per group, a testcase per drill */
};
/* JUnit: a met drill passes; missed and failed drills are <failure>s (the
 * step that failed first and its error, or by how much the RTO was missed);
 * an interrupted drill is an <error>: it proved nothing either way, so it
 * must look neither like a pass nor like a deliberate skip. */

/* One group's numbers, for callers that need them without a format (the
 * Prometheus textfile). Strings are borrowed from the report and valid
 * until rh_report_free. RTO fields are NAN when no drill restored. */
struct rh_report_group_stats {
	const char *runbook;
	const char *target;
	const char *scenario;
	uint64_t drills, met, missed, failed, interrupted;
	double pass_rate; /* met / drills, 0..1 */
	double rto_p50_s, rto_p95_s, rto_max_s;
	double rto_target_s; /* NAN when no record had one */
	double last_rto_s;   /* rto_s of the last drill (NAN if it did not restore) */
	const char *last_verdict;
	const char *first_t0, *last_t0; /* RFC 3339 as recorded */
	double last_t0_epoch;		/* seconds since the epoch, NAN if unparseable */
	const char *slowest_step;	/* NULL when no step succeeded */
	double slowest_step_mean_s;
	const char *trend; /* improving | worse | steady | n/a */
};

/* *out is new (free with rh_report_free). `filter` may be NULL (everything);
 * it is copied, its strings are borrowed. Returns 0 or RH_ENOMEM. */
int rh_report_new(struct rh_report **out, const struct rh_report_filter *filter);

/* Frees the report. Accepts NULL. */
void rh_report_free(struct rh_report *r);

/* Adds one drill record (borrowed; nothing of it is kept after the call)
 * taken from journal entry `seq`. Records the filter rejects are skipped
 * (returns 0). Missing or mistyped fields count as absent rather than
 * failing, so an old record format still reports. Returns 0, RH_EINVAL when
 * `record` is not a JSON object, or RH_ENOMEM. */
int rh_report_add(struct rh_report *r, const json_t *record, uint64_t seq);

/* Gives the report a rehearsal cadence section (rh_cadence_compute's
 * result; a reference is taken): md, html and json get a table, JUnit a
 * testsuite in which an overdue or never rehearsed scenario is a failed
 * testcase. NULL removes it. */
void rh_report_set_cadence(struct rh_report *r, json_t *cadence);

/* Writes the report in `fmt` to `out` (borrowed, not closed). Returns 0,
 * RH_EIO when writing failed (the message names the errno), RH_ENOMEM. */
int rh_report_write(struct rh_report *r, enum rh_report_format fmt, FILE *out);

/* The journal's state when the report is made: `verified`, the hash of
 * its last intact entry (the head) and, when it does not verify, the
 * problem. The html and json formats show it. Strings are copied; returns
 * 0 or RH_ENOMEM. */
int rh_report_set_journal(struct rh_report *r, bool verified, const char *head_hash,
			  const char *problem);

/* Parses "md" (also "markdown"), "html", "json", "csv", "junit". Returns 0,
 * or RH_EINVAL with a message listing the valid names. */
int rh_report_format_parse(const char *name, enum rh_report_format *out);

/* The canonical name of a format ("md", ...). */
const char *rh_report_format_name(enum rh_report_format fmt);

/* True when `record` passes `filter` (NULL passes everything). The same
 * rules as the report, for `audit list`. */
bool rh_report_filter_match(const struct rh_report_filter *filter, const json_t *record);

/* Parses a --since/--until value: RFC 3339 ("2026-01-31T12:00:00Z",
 * fractional seconds and +hh:mm offsets accepted) or a date
 * ("2026-01-31", midnight UTC). Returns 0 or RH_EINVAL with a message. */
int rh_report_time_parse(const char *text, time_t *out);

/* Number of groups (drills that passed the filter, grouped). */
size_t rh_report_group_count(const struct rh_report *r);

/* Fills *out with group i (0 <= i < count; groups sorted by runbook,
 * target, scenario). Returns 0, RH_EINVAL for a bad index, RH_ENOMEM. */
int rh_report_group_get(struct rh_report *r, size_t i, struct rh_report_group_stats *out);

#endif
