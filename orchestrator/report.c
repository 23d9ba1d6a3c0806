/*
 * report.c - RTO reports built from the audit journal (see report.h).
 *
 * The journal grows by one record per drill for as long as a team keeps
 * rehearsing, so the report is built streaming: each record updates the
 * aggregates of its group (runbook x target x scenario) and leaves behind
 * only a small per-drill summary, which the JUnit test cases and the HTML
 * chart need, and its RTO, which the percentiles need. Everything a report
 * prints comes from a journal a third party may have written into, so every
 * string is escaped for the format it lands in: markdown, HTML/SVG, XML,
 * CSV and JSON each have their own rules.
 */
#include "report.h"
#include "cadence.h"
#include "error.h"
#include "strbuf.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

/* Trend: last TREND_N restored drills against the TREND_N before them. */
#define TREND_N 5
#define TREND_THRESHOLD 0.10
/* The HTML chart plots at most this many drills (the most recent): more
 * points than pixels says nothing and makes the page heavy. */
#define CHART_MAX 500
/* The drill table lists at most this many (the most recent). */
#define TABLE_MAX 500

/* aborted: a pre-flight check failed before T0 and nothing was created.
 * Such drills are counted in a column of their own and kept out of
 * `drills`, the pass rate and the RTO statistics: a setup mistake is not
 * a recovery that failed. abandoned: rehydra itself was killed mid-drill
 * and the next command cleaned up (intent.h); the drill says nothing about
 * the recovery either, so it is counted the same way, in its own column. */
enum { V_MET, V_MISSED, V_FAILED, V_INTERRUPTED, V_ABORTED, V_ABANDONED, V_UNKNOWN, V_COUNT };

static const char *const verdict_names[V_COUNT] = {"met",     "missed",	   "failed", "interrupted",
						   "aborted", "abandoned", "unknown"};

struct dvec {
	double *v;
	size_t n, cap;
};

struct step_agg {
	char *id;
	double sum;
	uint64_t n;
};

/* What one drill leaves behind in the report. */
struct drill_sum {
	char *id;
	char *reason;  /* why it did not pass; NULL for met */
	double t0;     /* epoch seconds, NAN if unknown */
	double rto;    /* NAN when the service was not restored */
	double time;   /* rto, else the drill's total duration, else 0 */
	double p99_ms; /* the load test's p99 (record "load"), NAN without one */
	uint64_t seq;
	unsigned char verdict;
};

struct group {
	char *runbook, *target, *scenario;
	uint64_t drills; /* without the aborted ones */
	uint64_t counts[V_COUNT];
	uint64_t teardown_incomplete;
	struct dvec rtos; /* journal order */
	double rto_target;
	struct step_agg *steps;
	size_t n_steps, cap_steps;
	struct drill_sum *dr;
	size_t n_dr, cap_dr;
	char *first_t0, *last_t0;
	double first_t0_epoch, last_t0_epoch;
	int last_verdict;
	uint64_t loads;	    /* drills with a load test */
	double last_p99_ms; /* the latest of them; NAN when none */
	double max_p99_ms;
	/* computed by group_stats */
	double p50, p95, max;
	const char *trend;
	size_t slowest; /* index into steps, n_steps when none */
};

/* One line of the HTML's drill table (the most recent TABLE_MAX drills,
 * aborted ones too), kept in a ring. */
struct row {
	char *id, *t0, *reason;
	const struct group *g;
	double rto;
	uint64_t seq;
	unsigned char verdict;
};

struct rh_report {
	struct rh_report_filter filter;
	struct row *rows; /* ring of TABLE_MAX */
	size_t n_rows, next_row;
	uint64_t table_total;
	bool journal_known, journal_ok;
	char *journal_head, *journal_problem;
	struct group **groups; /* insertion order */
	size_t n, cap;
	struct group **sorted; /* by runbook, target, scenario; NULL when stale */
	json_t *index;	       /* group key -> position in groups */
	struct rh_strbuf key, target;
	uint64_t records, last_seq;
	time_t generated;
	bool prepared;	 /* statistics are current (no add since) */
	json_t *cadence; /* rh_cadence_compute's result, or NULL: no section */
};

/* ---- small helpers ---------------------------------------------------- */

static int dvec_push(struct dvec *d, double v)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		double *p = realloc(d->v, cap * sizeof(*p));

		if (!p)
			return rh_error_set(RH_ENOMEM, "out of memory building the report");
		d->v = p;
		d->cap = cap;
	}
	d->v[d->n++] = v;
	return 0;
}

static char *dup_str(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = malloc(n);

	if (p)
		memcpy(p, s, n);
	return p;
}

static const char *str_field(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* A finite, non-negative number, or NAN. */
static double num_field(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);
	double d;

	if (!json_is_number(v))
		return NAN;
	d = json_number_value(v);
	return isfinite(d) && d >= 0 ? d : NAN;
}

static int verdict_index(const char *v)
{
	for (int i = 0; v && i < V_UNKNOWN; i++)
		if (strcmp(v, verdict_names[i]) == 0)
			return i;
	return V_UNKNOWN;
}

/* ---- time ------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil): no timegm, no TZ, no locale. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* RFC 3339 date-time, or a bare date when `date_ok`. */
static bool parse_time(const char *s, bool date_ok, double *out)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, oh, om;
	double frac = 0, off = 0;
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (!s || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
	    !digits(s + 8, 2, &d))
		return false;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
		return false;
	s += 10;
	if (*s == '\0') {
		if (!date_ok)
			return false;
		goto done;
	}
	if ((*s != 'T' && *s != 't' && *s != ' ') || !digits(s + 1, 2, &h) || s[3] != ':' ||
	    !digits(s + 4, 2, &mi) || s[6] != ':' || !digits(s + 7, 2, &sec))
		return false;
	if (h > 23 || mi > 59 || sec > 60)
		return false;
	s += 9;
	if (*s == '.') {
		double scale = 0.1;

		s++;
		if (*s < '0' || *s > '9')
			return false;
		for (; *s >= '0' && *s <= '9'; s++, scale /= 10)
			frac += (*s - '0') * scale;
	}
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		if (!digits(s + 1, 2, &oh) || s[3] != ':' || !digits(s + 4, 2, &om) || oh > 23 ||
		    om > 59)
			return false;
		off = (oh * 3600.0 + om * 60.0) * (*s == '+' ? 1 : -1);
		s += 6;
	} else {
		return false;
	}
	if (*s != '\0')
		return false;
done:
	*out =
	    (double)days_from_civil(y, mo, d) * 86400.0 + h * 3600.0 + mi * 60.0 + sec + frac - off;
	return true;
}

int rh_report_time_parse(const char *text, time_t *out)
{
	double t;

	if (!text || !parse_time(text, true, &t))
		return rh_error_set(RH_EINVAL,
				    "'%s' is not a time: use RFC 3339 (2026-01-31T12:00:00Z) "
				    "or a date (2026-01-31)",
				    text ? text : "");
	*out = (time_t)floor(t);
	return 0;
}

static void format_time(time_t t, char *buf, size_t size)
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, size, "-");
}

/* ---- reading a record ------------------------------------------------- */

struct view {
	const char *runbook, *scenario, *verdict, *t0, *id;
	const json_t *target;
	double t0_epoch;
};

static void view_read(struct view *v, const json_t *rec)
{
	const json_t *rb = json_object_get(rec, "runbook");
	const json_t *sc = json_object_get(rec, "scenario");

	v->runbook = json_is_string(rb) ? json_string_value(rb) : str_field(rb, "name");
	if (!v->runbook || !*v->runbook)
		v->runbook = "-";
	v->scenario = json_is_string(sc) ? json_string_value(sc) : str_field(sc, "name");
	if (!v->scenario || !*v->scenario)
		v->scenario = "-";
	v->verdict = str_field(rec, "verdict");
	v->t0 = str_field(rec, "t0");
	v->id = str_field(rec, "drill_id");
	v->target = json_object_get(rec, "target");
	if (!json_is_object(v->target))
		v->target = NULL;
	if (!parse_time(v->t0, false, &v->t0_epoch))
		v->t0_epoch = NAN;
}

/* "provider:region", "provider" or "-" into b (reset first). */
static int target_name(struct rh_strbuf *b, const json_t *target)
{
	const char *p = str_field(target, "provider");
	const char *reg = str_field(target, "region");

	rh_strbuf_reset(b);
	if (!p || !*p)
		return rh_strbuf_adds(b, "-");
	if (reg && *reg)
		return rh_strbuf_addf(b, "%s:%s", p, reg);
	return rh_strbuf_adds(b, p);
}

static bool target_match(const char *want, const json_t *target)
{
	const char *p = str_field(target, "provider");
	const char *reg = str_field(target, "region");
	size_t pl;

	if (!p || !*p)
		return strcmp(want, "-") == 0;
	pl = strlen(p);
	if (strncmp(want, p, pl) != 0)
		return false;
	if (want[pl] == '\0')
		return true; /* provider alone: any region */
	if (want[pl] != ':')
		return false;
	return reg && strcmp(want + pl + 1, reg) == 0;
}

static bool view_match(const struct rh_report_filter *f, const struct view *v)
{
	if (!f)
		return true;
	if (f->runbook && strcmp(f->runbook, v->runbook) != 0)
		return false;
	if (f->scenario && strcmp(f->scenario, v->scenario) != 0)
		return false;
	if (f->verdict && (!v->verdict || strcmp(f->verdict, v->verdict) != 0))
		return false;
	if (f->target && !target_match(f->target, v->target))
		return false;
	/* A record without a readable t0 cannot be placed in a time window. */
	if (f->since && !(v->t0_epoch >= (double)f->since))
		return false;
	if (f->until && !(v->t0_epoch < (double)f->until))
		return false;
	return true;
}

bool rh_report_filter_match(const struct rh_report_filter *filter, const json_t *record)
{
	struct view v;

	if (!json_is_object(record))
		return false;
	view_read(&v, record);
	return view_match(filter, &v);
}

/* Why a drill did not pass, in one line: the step that failed first (by
 * end time) and its error, or by how much the RTO was missed. */
static char *drill_reason(const json_t *rec, int verdict, double rto, double target)
{
	const json_t *steps = json_object_get(rec, "steps");
	const json_t *s, *pick = NULL;
	double pick_end = INFINITY;
	const char *want = verdict == V_INTERRUPTED ? "cancelled" : NULL;
	char buf[1024];
	size_t i;

	if (verdict == V_MET)
		return NULL;
	if (verdict == V_MISSED) {
		if (isnan(rto))
			snprintf(buf, sizeof(buf), "the rto target was missed");
		else if (isnan(target))
			snprintf(buf, sizeof(buf), "rto %.3f s missed the target", rto);
		else
			snprintf(buf, sizeof(buf), "rto %.3f s exceeded the target %g s", rto,
				 target);
		return dup_str(buf);
	}
	json_array_foreach(steps, i, s)
	{
		const char *st = str_field(s, "status");
		double end = num_field(s, "end_s");

		if (!st)
			continue;
		if (want ? strcmp(st, want) != 0
			 : strcmp(st, "failed") != 0 && strcmp(st, "timed_out") != 0)
			continue;
		if (isnan(end))
			end = INFINITY;
		if (!pick || end < pick_end) {
			pick = s;
			pick_end = end;
		}
	}
	if (pick) {
		const char *id = str_field(pick, "id");
		const char *st = str_field(pick, "status");
		const char *e = str_field(pick, "error");

		snprintf(buf, sizeof(buf), "%sstep '%s' %s%s%s",
			 verdict == V_INTERRUPTED ? "interrupted: " : "", id ? id : "?",
			 strcmp(st, "timed_out") == 0 ? "timed out" : st, e && *e ? ": " : "",
			 e && *e ? e : "");
	} else if (verdict == V_INTERRUPTED) {
		snprintf(buf, sizeof(buf), "interrupted");
	} else if (verdict == V_FAILED) {
		snprintf(buf, sizeof(buf), "service not restored");
	} else {
		snprintf(buf, sizeof(buf), "unknown verdict");
	}
	return dup_str(buf);
}

/* Total duration: finished - t0, else the latest step end. */
static double drill_total(const json_t *rec, double t0)
{
	double fin, best = NAN;
	const json_t *s;
	size_t i;

	if (!isnan(t0) && parse_time(str_field(rec, "finished"), false, &fin) && fin >= t0)
		return fin - t0;
	json_array_foreach(json_object_get(rec, "steps"), i, s)
	{
		double e = num_field(s, "end_s");

		if (!isnan(e) && (isnan(best) || e > best))
			best = e;
	}
	return isnan(best) ? 0 : best;
}

/* ---- groups ----------------------------------------------------------- */

static void group_free(struct group *g)
{
	if (!g)
		return;
	free(g->runbook);
	free(g->target);
	free(g->scenario);
	free(g->rtos.v);
	for (size_t i = 0; i < g->n_steps; i++)
		free(g->steps[i].id);
	free(g->steps);
	for (size_t i = 0; i < g->n_dr; i++) {
		free(g->dr[i].id);
		free(g->dr[i].reason);
	}
	free(g->dr);
	free(g->first_t0);
	free(g->last_t0);
	free(g);
}

static int group_find(struct rh_report *r, const struct view *v, struct group **out)
{
	struct group *g = NULL;
	json_t *idx;
	int err;

	err = target_name(&r->target, v->target);
	if (err < 0)
		goto done;
	/* Length-prefixed parts: no separator can make two groups collide. */
	rh_strbuf_reset(&r->key);
	err = rh_strbuf_addf(&r->key, "%zu:%s%zu:%s|%s", strlen(v->runbook), v->runbook,
			     r->target.len, r->target.buf, v->scenario);
	if (err < 0)
		goto done;
	idx = json_object_get(r->index, r->key.buf);
	if (idx) {
		*out = r->groups[json_integer_value(idx)];
		goto done;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8;
		struct group **p = realloc(r->groups, cap * sizeof(*p));

		if (!p) {
			err = rh_error_set(RH_ENOMEM, "out of memory building the report");
			goto done;
		}
		r->groups = p;
		r->cap = cap;
	}
	g = calloc(1, sizeof(*g));
	if (!g || !(g->runbook = dup_str(v->runbook)) || !(g->target = dup_str(r->target.buf)) ||
	    !(g->scenario = dup_str(v->scenario)) ||
	    json_object_set_new_nocheck(r->index, r->key.buf, json_integer((json_int_t)r->n)) !=
		0) {
		err = rh_error_set(RH_ENOMEM, "out of memory building the report");
		goto done;
	}
	g->rto_target = NAN;
	g->first_t0_epoch = NAN;
	g->last_t0_epoch = NAN;
	g->last_verdict = V_UNKNOWN;
	r->groups[r->n++] = g;
	free(r->sorted);
	r->sorted = NULL;
	*out = g;
	g = NULL;
done:
	group_free(g);
	return err;
}

static int group_step(struct group *g, const char *id, double dur)
{
	struct step_agg *s = NULL;

	for (size_t i = 0; i < g->n_steps; i++)
		if (strcmp(g->steps[i].id, id) == 0) {
			s = &g->steps[i];
			break;
		}
	if (!s) {
		if (g->n_steps == g->cap_steps) {
			size_t cap = g->cap_steps ? g->cap_steps * 2 : 8;
			struct step_agg *p = realloc(g->steps, cap * sizeof(*p));

			if (!p)
				return rh_error_set(RH_ENOMEM, "out of memory building the report");
			g->steps = p;
			g->cap_steps = cap;
		}
		s = &g->steps[g->n_steps];
		s->id = dup_str(id);
		if (!s->id)
			return rh_error_set(RH_ENOMEM, "out of memory building the report");
		s->sum = 0;
		s->n = 0;
		g->n_steps++;
	}
	s->sum += dur;
	s->n++;
	return 0;
}

static int replace_str(char **slot, const char *s)
{
	char *p = dup_str(s);

	if (!p)
		return rh_error_set(RH_ENOMEM, "out of memory building the report");
	free(*slot);
	*slot = p;
	return 0;
}

int rh_report_set_journal(struct rh_report *r, bool verified, const char *head_hash,
			  const char *problem)
{
	free(r->journal_head);
	free(r->journal_problem);
	r->journal_head = dup_str(head_hash ? head_hash : "");
	r->journal_problem = problem ? dup_str(problem) : NULL;
	r->journal_known = true;
	r->journal_ok = verified;
	if (!r->journal_head || (problem && !r->journal_problem))
		return rh_error_set(RH_ENOMEM, "out of memory building the report");
	return 0;
}

/* Why an aborted drill did not run: its failed pre-flight check. */
static char *aborted_reason(const json_t *rec)
{
	const json_t *checks = json_object_get(rec, "preflight");
	const json_t *last = json_array_get(checks, json_array_size(checks) - 1);
	char buf[1024];

	snprintf(buf, sizeof(buf), "pre-flight check '%s' failed: %s",
		 str_field(last, "check") ? str_field(last, "check") : "?",
		 str_field(last, "message") ? str_field(last, "message") : "");
	return dup_str(buf);
}

/* Why an abandoned drill has no verdict of its own: what recovery found. */
static char *abandoned_reason(const json_t *rec)
{
	const json_t *a = json_object_get(rec, "abandoned");
	const json_t *pid = json_object_get(a, "rehydra_pid");
	const json_t *killed = json_object_get(a, "processes_killed");
	char buf[1024];

	snprintf(buf, sizeof(buf),
		 "rehydra (pid %lld) was killed mid-drill; the next command stopped %lld "
		 "process(es)%s",
		 json_is_integer(pid) ? (long long)json_integer_value(pid) : -1LL,
		 json_is_integer(killed) ? (long long)json_integer_value(killed) : 0LL,
		 str_field(a, "problem") ? " and could not clean up everything" : "");
	return dup_str(buf);
}

static int row_add(struct rh_report *r, const struct group *g, const char *id, const char *t0,
		   int verdict, double rto, uint64_t seq, const char *reason)
{
	struct row *w;

	if (!r->rows && !(r->rows = calloc(TABLE_MAX, sizeof(*r->rows))))
		return rh_error_set(RH_ENOMEM, "out of memory building the report");
	w = &r->rows[r->next_row];
	if (r->n_rows == TABLE_MAX) {
		free(w->id);
		free(w->t0);
		free(w->reason);
	} else {
		r->n_rows++;
	}
	memset(w, 0, sizeof(*w));
	w->id = dup_str(id);
	w->t0 = dup_str(t0 ? t0 : "-");
	w->reason = reason ? dup_str(reason) : NULL;
	w->g = g;
	w->rto = rto;
	w->seq = seq;
	w->verdict = (unsigned char)verdict;
	r->next_row = (r->next_row + 1) % TABLE_MAX;
	r->table_total++;
	if (!w->id || !w->t0 || (reason && !w->reason))
		return rh_error_set(RH_ENOMEM, "out of memory building the report");
	return 0;
}

int rh_report_add(struct rh_report *r, const json_t *record, uint64_t seq)
{
	struct view v;
	struct group *g = NULL;
	struct drill_sum *d;
	const json_t *s;
	double rto, target;
	char idbuf[48];
	size_t i;
	int err = 0, vi;

	if (!json_is_object(record)) {
		err = rh_error_set(RH_EINVAL, "journal entry %llu: the record is not a json object",
				   (unsigned long long)seq);
		goto done;
	}
	view_read(&v, record);
	if (!view_match(&r->filter, &v))
		goto done;
	err = group_find(r, &v, &g);
	if (err < 0)
		goto done;
	vi = verdict_index(v.verdict);
	if (vi == V_ABORTED || vi == V_ABANDONED) {
		char *why = vi == V_ABORTED ? aborted_reason(record) : abandoned_reason(record);

		err = row_add(r, g, v.id ? v.id : "-", v.t0, vi, NAN, seq, why);
		free(why);
		if (err < 0)
			goto done;
		g->counts[vi]++;
		if (vi == V_ABANDONED && json_is_string(json_object_get(record, "teardown")) &&
		    strcmp(json_string_value(json_object_get(record, "teardown")), "incomplete") ==
			0)
			g->teardown_incomplete++;
		if (!g->drills)
			g->last_verdict = vi;
		r->records++;
		r->last_seq = seq;
		r->prepared = false;
		goto done;
	}
	if (json_is_string(json_object_get(record, "teardown")) &&
	    strcmp(json_string_value(json_object_get(record, "teardown")), "incomplete") == 0)
		g->teardown_incomplete++;
	if (g->n_dr == g->cap_dr) {
		size_t cap = g->cap_dr ? g->cap_dr * 2 : 16;
		struct drill_sum *p = realloc(g->dr, cap * sizeof(*p));

		if (!p) {
			err = rh_error_set(RH_ENOMEM, "out of memory building the report");
			goto done;
		}
		g->dr = p;
		g->cap_dr = cap;
	}
	rto = num_field(record, "rto_s");
	target = num_field(record, "rto_target_s");
	if (!isnan(rto)) {
		err = dvec_push(&g->rtos, rto);
		if (err < 0)
			goto done;
	}
	d = &g->dr[g->n_dr];
	memset(d, 0, sizeof(*d));
	if (!v.id || !*v.id) {
		snprintf(idbuf, sizeof(idbuf), "entry-%llu", (unsigned long long)seq);
		v.id = idbuf;
	}
	d->id = dup_str(v.id);
	d->reason = drill_reason(record, vi, rto, target);
	if (!d->id || (vi != V_MET && !d->reason)) {
		free(d->id);
		free(d->reason);
		err = rh_error_set(RH_ENOMEM, "out of memory building the report");
		goto done;
	}
	d->t0 = v.t0_epoch;
	d->rto = rto;
	d->time = isnan(rto) ? drill_total(record, v.t0_epoch) : rto;
	d->p99_ms = num_field(json_object_get(record, "load"), "p99_ms");
	if (!isnan(d->p99_ms)) {
		if (!g->loads || d->p99_ms > g->max_p99_ms)
			g->max_p99_ms = d->p99_ms;
		g->loads++;
		g->last_p99_ms = d->p99_ms;
	}
	d->seq = seq;
	d->verdict = (unsigned char)vi;
	g->n_dr++;
	err = row_add(r, g, d->id, v.t0, vi, rto, seq, d->reason);
	if (err < 0)
		goto done;

	g->drills++;
	g->counts[vi]++;
	g->last_verdict = vi;
	if (!isnan(target))
		g->rto_target = target;
	if (v.t0) {
		if (!g->first_t0) {
			err = replace_str(&g->first_t0, v.t0);
			g->first_t0_epoch = v.t0_epoch;
		}
		err = err ? err : replace_str(&g->last_t0, v.t0);
		if (err < 0)
			goto done;
		g->last_t0_epoch = v.t0_epoch;
	}
	json_array_foreach(json_object_get(record, "steps"), i, s)
	{
		const char *id = str_field(s, "id");
		const char *st = str_field(s, "status");
		double dur = num_field(s, "duration_s");

		if (!id || !st || strcmp(st, "ok") != 0 || isnan(dur))
			continue;
		err = group_step(g, id, dur);
		if (err < 0)
			goto done;
	}
	r->records++;
	r->last_seq = seq;
	r->prepared = false;
done:
	return err;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest rank: the ceil(p * n)-th smallest value (1-based). */
static double percentile(const double *sorted, size_t n, double p)
{
	size_t rank;

	if (n == 0)
		return NAN;
	rank = (size_t)ceil(p * (double)n - 1e-9);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

static int group_stats(struct group *g)
{
	double *v = NULL;
	size_t n = g->rtos.n;
	int err = 0;

	g->p50 = g->p95 = g->max = NAN;
	g->trend = "n/a";
	g->slowest = g->n_steps;
	for (size_t i = 0; i < g->n_steps; i++)
		if (g->slowest == g->n_steps ||
		    g->steps[i].sum / (double)g->steps[i].n >
			g->steps[g->slowest].sum / (double)g->steps[g->slowest].n)
			g->slowest = i;
	if (n == 0)
		goto done;
	v = malloc(n * sizeof(*v));
	if (!v) {
		err = rh_error_set(RH_ENOMEM, "out of memory building the report");
		goto done;
	}
	memcpy(v, g->rtos.v, n * sizeof(*v));
	qsort(v, n, sizeof(*v), cmp_double);
	g->p50 = percentile(v, n, 0.50);
	g->p95 = percentile(v, n, 0.95);
	g->max = v[n - 1];
	if (n >= 2 * TREND_N) {
		double recent = 0, before = 0;

		for (size_t i = 0; i < TREND_N; i++) {
			recent += g->rtos.v[n - 1 - i];
			before += g->rtos.v[n - 1 - TREND_N - i];
		}
		recent /= TREND_N;
		before /= TREND_N;
		if (recent < before * (1 - TREND_THRESHOLD))
			g->trend = "improving";
		else if (recent > before * (1 + TREND_THRESHOLD))
			g->trend = "worse";
		else
			g->trend = "steady";
	}
done:
	free(v);
	return err;
}

static int cmp_group(const void *a, const void *b)
{
	const struct group *x = *(struct group *const *)a, *y = *(struct group *const *)b;
	int c = strcmp(x->runbook, y->runbook);

	if (c == 0)
		c = strcmp(x->target, y->target);
	if (c == 0)
		c = strcmp(x->scenario, y->scenario);
	return c;
}

/* Sorts the groups and computes their statistics. */
static int report_prepare(struct rh_report *r)
{
	int err = 0;

	if (!r->sorted && r->n) {
		r->sorted = malloc(r->n * sizeof(*r->sorted));
		if (!r->sorted)
			return rh_error_set(RH_ENOMEM, "out of memory building the report");
		memcpy(r->sorted, r->groups, r->n * sizeof(*r->sorted));
		qsort(r->sorted, r->n, sizeof(*r->sorted), cmp_group);
	}
	for (size_t i = 0; i < r->n && err == 0 && !r->prepared; i++)
		err = group_stats(r->groups[i]);
	r->prepared = err == 0;
	return err;
}

int rh_report_new(struct rh_report **out, const struct rh_report_filter *filter)
{
	struct rh_report *r = calloc(1, sizeof(*r));
	int err = 0;

	if (!r || !(r->index = json_object())) {
		err = rh_error_set(RH_ENOMEM, "out of memory building the report");
		goto done;
	}
	if (filter)
		r->filter = *filter;
	r->generated = time(NULL);
	*out = r;
	r = NULL;
done:
	rh_report_free(r);
	return err;
}

void rh_report_free(struct rh_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; r->rows && i < r->n_rows; i++) {
		free(r->rows[i].id);
		free(r->rows[i].t0);
		free(r->rows[i].reason);
	}
	free(r->rows);
	free(r->journal_head);
	free(r->journal_problem);
	for (size_t i = 0; i < r->n; i++)
		group_free(r->groups[i]);
	free(r->groups);
	free(r->sorted);
	json_decref(r->index);
	json_decref(r->cadence);
	rh_strbuf_release(&r->key);
	rh_strbuf_release(&r->target);
	free(r);
}

void rh_report_set_cadence(struct rh_report *r, json_t *cadence)
{
	json_decref(r->cadence);
	r->cadence = json_incref(cadence);
}

size_t rh_report_group_count(const struct rh_report *r)
{
	return r->n;
}

static double step_mean(const struct step_agg *s)
{
	return s->sum / (double)s->n;
}

int rh_report_group_get(struct rh_report *r, size_t i, struct rh_report_group_stats *out)
{
	struct group *g;
	int err;

	if (i >= r->n)
		return rh_error_set(RH_EINVAL, "report group %zu does not exist (%zu groups)", i,
				    r->n);
	err = report_prepare(r);
	if (err < 0)
		return err;
	g = r->sorted[i];
	memset(out, 0, sizeof(*out));
	out->runbook = g->runbook;
	out->target = g->target;
	out->scenario = g->scenario;
	out->drills = g->drills;
	out->met = g->counts[V_MET];
	out->missed = g->counts[V_MISSED];
	out->failed = g->counts[V_FAILED];
	out->interrupted = g->counts[V_INTERRUPTED];
	out->pass_rate = g->drills ? (double)out->met / (double)g->drills : 0;
	out->rto_p50_s = g->p50;
	out->rto_p95_s = g->p95;
	out->rto_max_s = g->max;
	out->rto_target_s = g->rto_target;
	out->last_rto_s = g->n_dr ? g->dr[g->n_dr - 1].rto : NAN;
	out->last_verdict = verdict_names[g->last_verdict];
	out->first_t0 = g->first_t0;
	out->last_t0 = g->last_t0;
	out->last_t0_epoch = g->last_t0_epoch;
	out->slowest_step = g->slowest < g->n_steps ? g->steps[g->slowest].id : NULL;
	out->slowest_step_mean_s = g->slowest < g->n_steps ? step_mean(&g->steps[g->slowest]) : NAN;
	out->trend = g->trend;
	return 0;
}

/* ---- escaping --------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s, 0 when it is not one. */
static size_t utf8_len(const unsigned char *s)
{
	size_t n;
	uint32_t c;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, c = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, c = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, c = s[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
	    (n == 4 && (c < 0x10000 || c > 0x10ffff)) || c == 0xfffe || c == 0xffff)
		return 0;
	return n;
}

#define REPLACEMENT "\xef\xbf\xbd"

/* HTML and XML text and attributes: the five specials as entities; control
 * characters and broken UTF-8, which XML 1.0 forbids even as references,
 * become U+FFFD. */
static void put_xml(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	const unsigned char *run = p;

	/* Runs of bytes that need nothing are written in one call: a JUnit
	 * report of a long journal is mostly drill ids. */
	while (*p) {
		unsigned char c = *p;
		size_t n;

		if (c >= 0x20 && c < 0x7f && c != '&' && c != '<' && c != '>' && c != '"' &&
		    c != '\'') {
			p++;
			continue;
		}
		if (c >= 0x80 && (n = utf8_len(p)) > 0) {
			p += n;
			continue;
		}
		fwrite(run, 1, (size_t)(p - run), f);
		switch (c) {
		case '&':
			fputs("&amp;", f);
			break;
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		case '\'':
			fputs("&#39;", f);
			break;
		case '\t':
		case '\n':
		case '\r':
			fputc(' ', f);
			break;
		default: /* controls, DEL, broken UTF-8 */
			fputs(REPLACEMENT, f);
		}
		p++;
		run = p;
	}
	fwrite(run, 1, (size_t)(p - run), f);
}

/* Markdown table cells: backslash-escape what markdown or inline HTML
 * would interpret (a runbook named "<img src=x>" must stay text in a pull
 * request); newlines and controls become spaces so a row stays one line. */
static void put_md(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");

	for (; *p; p++) {
		if (strchr("\\`*_[]<>|&~", *p))
			fputc('\\', f);
		if (*p < 0x20 || *p == 0x7f)
			fputc(' ', f);
		else
			fputc(*p, f);
	}
}

/* RFC 4180: quote when the field holds a comma, quote, CR or LF; double
 * the quotes. */
static void put_csv(FILE *f, const char *s)
{
	s = s ? s : "";
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static void put_csv_num(FILE *f, double v)
{
	if (!isnan(v))
		fprintf(f, "%.15g", v);
}

/* Seconds for people: 3 decimals under 10 s, 1 under 1000 s. */
static const char *secs(char *buf, size_t size, double v)
{
	if (isnan(v))
		snprintf(buf, size, "-");
	else if (v < 10)
		snprintf(buf, size, "%.3f", v);
	else if (v < 1000)
		snprintf(buf, size, "%.1f", v);
	else
		snprintf(buf, size, "%.0f", v);
	return buf;
}

static const char *pct(char *buf, size_t size, uint64_t met, uint64_t n)
{
	if (n == 0)
		snprintf(buf, size, "-");
	else
		snprintf(buf, size, "%.1f%%", 100.0 * (double)met / (double)n);
	return buf;
}

static void filter_describe(FILE *f, const struct rh_report_filter *fl,
			    void (*put)(FILE *, const char *))
{
	char t[32];
	bool any = false;
	const char *names[] = {"runbook", "target", "scenario", "verdict"};
	const char *vals[] = {fl->runbook, fl->target, fl->scenario, fl->verdict};

	for (size_t i = 0; i < 4; i++) {
		if (!vals[i])
			continue;
		fprintf(f, "%s%s ", any ? ", " : "", names[i]);
		put(f, vals[i]);
		any = true;
	}
	if (fl->since) {
		format_time(fl->since, t, sizeof(t));
		fprintf(f, "%ssince %s", any ? ", " : "", t);
		any = true;
	}
	if (fl->until) {
		format_time(fl->until, t, sizeof(t));
		fprintf(f, "%suntil %s", any ? ", " : "", t);
		any = true;
	}
	if (!any)
		fputs("all drills", f);
}

/* "runbook on target (scenario)", leaving out the parts a group lacks. */
static void put_title(FILE *f, const struct group *g, void (*put)(FILE *, const char *),
		      const char *scenario_sep, const char *scenario_end)
{
	put(f, g->runbook);
	if (strcmp(g->target, "-") != 0) {
		fputs(" on ", f);
		put(f, g->target);
	}
	if (strcmp(g->scenario, "-") != 0) {
		fputs(scenario_sep, f);
		put(f, g->scenario);
		fputs(scenario_end, f);
	}
}

/* An RTO target as written in the runbook: 60, 0.5. */
static const char *target_str(char *buf, size_t size, double v)
{
	if (isnan(v))
		snprintf(buf, size, "-");
	else
		snprintf(buf, size, "%g", v);
	return buf;
}

/* ---- markdown --------------------------------------------------------- */

/* Milliseconds for tables: "-" when unknown. */
static const char *ms_str(char *buf, size_t size, double v)
{
	if (isnan(v))
		snprintf(buf, size, "-");
	else
		snprintf(buf, size, "%.*f", v < 10 ? 2 : v < 100 ? 1 : 0, v);
	return buf;
}

static void write_md_groups(struct rh_report *r, FILE *f, const char *gen);

static void write_md(struct rh_report *r, FILE *f)
{
	char gen[32];

	format_time(r->generated, gen, sizeof(gen));
	fprintf(f, "# rehydra RTO report\n\n");
	if (r->cadence) {
		/* at the end, after the groups, whatever returns early below */
		write_md_groups(r, f, gen);
		rh_cadence_write_md(f, r->cadence);
		return;
	}
	write_md_groups(r, f, gen);
}

static void write_md_groups(struct rh_report *r, FILE *f, const char *gen)
{
	char a[32], b[32], c[32], d[32], e[32];

	fprintf(f, "Generated %s from %llu drill%s (", gen, (unsigned long long)r->records,
		r->records == 1 ? "" : "s");
	filter_describe(f, &r->filter, put_md);
	fprintf(f, ").\n\n");
	if (r->n == 0) {
		fprintf(f, "No drills match.\n");
		return;
	}
	fprintf(f,
		"| runbook | target | scenario | drills | met | missed | failed | interrupted "
		"| aborted | abandoned | teardown incomplete | pass rate | RTO p50 s | RTO p95 s "
		"| RTO max s | target s | trend | slowest step | last verdict | load p99 ms |\n");
	fprintf(f, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|---|"
		   "--:|\n");
	for (size_t i = 0; i < r->n; i++) {
		struct group *g = r->sorted[i];

		fputs("| ", f);
		put_md(f, g->runbook);
		fputs(" | ", f);
		put_md(f, g->target);
		fputs(" | ", f);
		put_md(f, g->scenario);
		fprintf(
		    f,
		    " | %llu | %llu | %llu | %llu | %llu | %llu | %llu | %llu | %s | %s | %s | %s "
		    "| %s | %s | ",
		    (unsigned long long)g->drills, (unsigned long long)g->counts[V_MET],
		    (unsigned long long)g->counts[V_MISSED],
		    (unsigned long long)g->counts[V_FAILED],
		    (unsigned long long)g->counts[V_INTERRUPTED],
		    (unsigned long long)g->counts[V_ABORTED],
		    (unsigned long long)g->counts[V_ABANDONED],
		    (unsigned long long)g->teardown_incomplete,
		    pct(a, sizeof(a), g->counts[V_MET], g->drills), secs(b, sizeof(b), g->p50),
		    secs(c, sizeof(c), g->p95), secs(d, sizeof(d), g->max),
		    target_str(e, sizeof(e), g->rto_target), g->trend);
		if (g->slowest < g->n_steps)
			put_md(f, g->steps[g->slowest].id);
		else
			fputs("-", f);
		fprintf(f, " | %s | %s |\n", verdict_names[g->last_verdict],
			ms_str(a, sizeof(a), g->loads ? g->last_p99_ms : NAN));
	}
	for (size_t i = 0; i < r->n; i++) {
		struct group *g = r->sorted[i];

		fputs("\n## ", f);
		put_title(f, g, put_md, " (scenario ", ")");
		fprintf(f, "\n\n%llu drills from ", (unsigned long long)g->drills);
		put_md(f, g->first_t0 ? g->first_t0 : "-");
		fputs(" to ", f);
		put_md(f, g->last_t0 ? g->last_t0 : "-");
		fprintf(f, "; %zu restored the service.\n\n", g->rtos.n);
		if (g->loads)
			fprintf(f,
				"Load test p99 latency: %s ms in the latest, at most %s ms over "
				"%llu drill%s.\n\n",
				ms_str(a, sizeof(a), g->last_p99_ms),
				ms_str(b, sizeof(b), g->max_p99_ms), (unsigned long long)g->loads,
				g->loads == 1 ? "" : "s");
		if (g->n_steps == 0) {
			fputs("No step completed successfully.\n", f);
			continue;
		}
		fputs("| step | mean s | ok runs |\n|---|--:|--:|\n", f);
		for (size_t k = 0; k < g->n_steps; k++) {
			fputs("| ", f);
			put_md(f, g->steps[k].id);
			fprintf(f, "%s | %s | %llu |\n", k == g->slowest ? " (slowest)" : "",
				secs(a, sizeof(a), step_mean(&g->steps[k])),
				(unsigned long long)g->steps[k].n);
		}
	}
}

/* ---- csv -------------------------------------------------------------- */

static void write_csv(struct rh_report *r, FILE *f)
{
	fputs("runbook,target,scenario,drills,met,missed,failed,interrupted,aborted,abandoned,"
	      "teardown_incomplete,pass_rate,"
	      "rto_p50_s,rto_p95_s,rto_max_s,rto_target_s,trend,slowest_step,"
	      "slowest_step_mean_s,first_t0,last_t0,last_verdict,load_p99_ms\r\n",
	      f);
	for (size_t i = 0; i < r->n; i++) {
		struct group *g = r->sorted[i];
		bool has = g->slowest < g->n_steps;

		put_csv(f, g->runbook);
		fputc(',', f);
		put_csv(f, g->target);
		fputc(',', f);
		put_csv(f, g->scenario);
		fprintf(f, ",%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,",
			(unsigned long long)g->drills, (unsigned long long)g->counts[V_MET],
			(unsigned long long)g->counts[V_MISSED],
			(unsigned long long)g->counts[V_FAILED],
			(unsigned long long)g->counts[V_INTERRUPTED],
			(unsigned long long)g->counts[V_ABORTED],
			(unsigned long long)g->counts[V_ABANDONED],
			(unsigned long long)g->teardown_incomplete);
		put_csv_num(f, g->drills ? (double)g->counts[V_MET] / (double)g->drills : NAN);
		fputc(',', f);
		put_csv_num(f, g->p50);
		fputc(',', f);
		put_csv_num(f, g->p95);
		fputc(',', f);
		put_csv_num(f, g->max);
		fputc(',', f);
		put_csv_num(f, g->rto_target);
		fputc(',', f);
		put_csv(f, g->trend);
		fputc(',', f);
		put_csv(f, has ? g->steps[g->slowest].id : "");
		fputc(',', f);
		put_csv_num(f, has ? step_mean(&g->steps[g->slowest]) : NAN);
		fputc(',', f);
		put_csv(f, g->first_t0);
		fputc(',', f);
		put_csv(f, g->last_t0);
		fputc(',', f);
		put_csv(f, verdict_names[g->last_verdict]);
		fputc(',', f);
		put_csv_num(f, g->loads ? g->last_p99_ms : NAN);
		fputs("\r\n", f);
	}
}

/* ---- json ------------------------------------------------------------- */

static json_t *jnum(double v)
{
	return isnan(v) ? json_null() : json_real(v);
}

static json_t *jstr(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* Adds and checks in one place: jansson's set_new steals even on failure. */
static int put(json_t *o, const char *k, json_t *v)
{
	return v && json_object_set_new(o, k, v) == 0 ? 0 : -1;
}

static int write_json(struct rh_report *r, FILE *f)
{
	json_t *root = json_object(), *groups = json_array(), *fl = json_object();
	char gen[32];
	int err = 0, bad = 0;

	if (!root || !groups || !fl) {
		json_decref(groups);
		json_decref(fl);
		err = rh_error_set(RH_ENOMEM, "out of memory building the report");
		goto done;
	}
	format_time(r->generated, gen, sizeof(gen));
	bad |= put(fl, "runbook", jstr(r->filter.runbook));
	bad |= put(fl, "target", jstr(r->filter.target));
	bad |= put(fl, "scenario", jstr(r->filter.scenario));
	bad |= put(fl, "verdict", jstr(r->filter.verdict));
	if (r->filter.since) {
		format_time(r->filter.since, gen, sizeof(gen));
		bad |= put(fl, "since", json_string(gen));
	} else {
		bad |= put(fl, "since", json_null());
	}
	if (r->filter.until) {
		format_time(r->filter.until, gen, sizeof(gen));
		bad |= put(fl, "until", json_string(gen));
	} else {
		bad |= put(fl, "until", json_null());
	}
	format_time(r->generated, gen, sizeof(gen));
	bad |= put(root, "rehydra_report", json_integer(1));
	bad |= put(root, "generated", json_string(gen));
	bad |= put(root, "filter", fl);
	bad |= put(root, "drills", json_integer((json_int_t)r->records));
	bad |=
	    put(root, "last_seq", r->records ? json_integer((json_int_t)r->last_seq) : json_null());
	bad |= put(root, "percentile_method", json_string("nearest-rank"));
	if (r->journal_known)
		bad |= put(root, "journal",
			   json_pack("{s:b, s:s, s:s?}", "verified", r->journal_ok, "head_hash",
				     r->journal_head, "problem", r->journal_problem));
	bad |= put(root, "groups", groups);
	if (r->cadence)
		bad |= put(root, "cadence", json_incref(r->cadence));
	for (size_t i = 0; i < r->n && !bad; i++) {
		struct group *g = r->sorted[i];
		json_t *o = json_object(), *steps = json_array(), *rto = json_object();
		bool has = g->slowest < g->n_steps;

		if (!o || !steps || !rto || json_array_append_new(groups, o) != 0) {
			json_decref(steps);
			json_decref(rto);
			bad = 1;
			break;
		}
		bad |= put(o, "runbook", json_string(g->runbook));
		bad |= put(o, "target", json_string(g->target));
		bad |= put(o, "scenario", json_string(g->scenario));
		bad |= put(o, "drills", json_integer((json_int_t)g->drills));
		bad |= put(o, "met", json_integer((json_int_t)g->counts[V_MET]));
		bad |= put(o, "missed", json_integer((json_int_t)g->counts[V_MISSED]));
		bad |= put(o, "failed", json_integer((json_int_t)g->counts[V_FAILED]));
		bad |= put(o, "interrupted", json_integer((json_int_t)g->counts[V_INTERRUPTED]));
		bad |= put(o, "aborted", json_integer((json_int_t)g->counts[V_ABORTED]));
		bad |= put(o, "abandoned", json_integer((json_int_t)g->counts[V_ABANDONED]));
		bad |=
		    put(o, "teardown_incomplete", json_integer((json_int_t)g->teardown_incomplete));
		bad |= put(o, "pass_rate",
			   json_real(g->drills ? (double)g->counts[V_MET] / (double)g->drills : 0));
		bad |= put(rto, "restored", json_integer((json_int_t)g->rtos.n));
		bad |= put(rto, "p50_s", jnum(g->p50));
		bad |= put(rto, "p95_s", jnum(g->p95));
		bad |= put(rto, "max_s", jnum(g->max));
		bad |= put(rto, "target_s", jnum(g->rto_target));
		bad |= put(o, "rto", rto);
		bad |= put(o, "trend", json_string(g->trend));
		bad |= put(o, "first_t0", jstr(g->first_t0));
		bad |= put(o, "last_t0", jstr(g->last_t0));
		bad |= put(o, "last_verdict", json_string(verdict_names[g->last_verdict]));
		bad |= put(o, "slowest_step",
			   has ? json_string(g->steps[g->slowest].id) : json_null());
		bad |= put(o, "slowest_step_mean_s",
			   has ? json_real(step_mean(&g->steps[g->slowest])) : json_null());
		{
			json_t *load = json_object();

			bad |= put(o, "load", load);
			bad |= !load || put(load, "drills", json_integer((json_int_t)g->loads));
			bad |= !load ||
			       put(load, "last_p99_ms", jnum(g->loads ? g->last_p99_ms : NAN));
			bad |=
			    !load || put(load, "max_p99_ms", jnum(g->loads ? g->max_p99_ms : NAN));
		}
		bad |= put(o, "steps", steps);
		for (size_t k = 0; k < g->n_steps && !bad; k++) {
			json_t *s = json_object();

			if (!s || json_array_append_new(steps, s) != 0) {
				bad = 1;
				break;
			}
			bad |= put(s, "id", json_string(g->steps[k].id));
			bad |= put(s, "mean_s", json_real(step_mean(&g->steps[k])));
			bad |= put(s, "ok", json_integer((json_int_t)g->steps[k].n));
		}
	}
	if (bad) {
		err = rh_error_set(RH_ENOMEM, "out of memory building the report");
		goto done;
	}
	if (json_dumpf(root, f, JSON_INDENT(2) | JSON_REAL_PRECISION(15)) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot write the report");
		goto done;
	}
	fputc('\n', f);
done:
	json_decref(root);
	return err;
}

/* ---- junit ------------------------------------------------------------ */

/* JUnit's timestamp (the Ant schema's): UTC, no zone, no fraction. */
static void junit_time(time_t t, char *buf, size_t size)
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm))
		snprintf(buf, size, "1970-01-01T00:00:00");
}

/* An interrupted drill proves nothing either way: it must not look like a
 * pass, nor like a deliberate skip, so it is an <error> (JUnit's "the test
 * did not complete"); missed and failed drills are <failure>s. */
static void write_junit(struct rh_report *r, FILE *f)
{
	uint64_t tests = 0, failures = 0, errors = 0;
	double total = 0;
	char gen[32], num[64];

	junit_time(r->generated, gen, sizeof(gen));
	for (size_t i = 0; i < r->n; i++) {
		struct group *g = r->sorted[i];

		tests += g->drills;
		failures += g->counts[V_MISSED] + g->counts[V_FAILED] + g->counts[V_UNKNOWN];
		errors += g->counts[V_INTERRUPTED];
		for (size_t k = 0; k < g->n_dr; k++)
			total += g->dr[k].time;
	}
	if (r->cadence) {
		unsigned long long ct, cf;

		rh_cadence_junit_counts(r->cadence, &ct, &cf);
		tests += ct;
		failures += cf;
	}
	fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", f);
	/* The schemas CI servers validate against (Jenkins' junit-10.xsd, the
	 * Ant one) allow name, tests, failures, errors, disabled and time on
	 * <testsuites>; timestamp belongs on each <testsuite>, and the report's
	 * generation time is a property of each group's suite instead. */
	fprintf(f,
		"<testsuites name=\"rehydra drills\" tests=\"%llu\" failures=\"%llu\" "
		"errors=\"%llu\" time=\"%.3f\">\n",
		(unsigned long long)tests, (unsigned long long)failures, (unsigned long long)errors,
		total);
	for (size_t i = 0; i < r->n; i++) {
		struct group *g = r->sorted[i];
		double t = 0;

		for (size_t k = 0; k < g->n_dr; k++)
			t += g->dr[k].time;
		fputs("  <testsuite name=\"", f);
		put_title(f, g, put_xml, " (", ")");
		fprintf(f,
			"\" tests=\"%llu\" failures=\"%llu\" errors=\"%llu\" skipped=\"0\" "
			"time=\"%.3f\"",
			(unsigned long long)g->drills,
			(unsigned long long)(g->counts[V_MISSED] + g->counts[V_FAILED] +
					     g->counts[V_UNKNOWN]),
			(unsigned long long)g->counts[V_INTERRUPTED], t);
		if (!isnan(g->first_t0_epoch)) {
			junit_time((time_t)floor(g->first_t0_epoch), num, sizeof(num));
			fprintf(f, " timestamp=\"%s\"", num);
		}
		fprintf(f,
			">\n    <properties>\n      <property name=\"generated\" value=\"%s\"/>\n",
			gen);
		fputs("      <property name=\"runbook\" value=\"", f);
		put_xml(f, g->runbook);
		fputs("\"/>\n      <property name=\"target\" value=\"", f);
		put_xml(f, g->target);
		fputs("\"/>\n      <property name=\"scenario\" value=\"", f);
		put_xml(f, g->scenario);
		fputs("\"/>\n", f);
		if (!isnan(g->rto_target))
			fprintf(f, "      <property name=\"rto_target_s\" value=\"%g\"/>\n",
				g->rto_target);
		if (!isnan(g->p50))
			fprintf(f,
				"      <property name=\"rto_p50_s\" value=\"%g\"/>\n"
				"      <property name=\"rto_p95_s\" value=\"%g\"/>\n"
				"      <property name=\"rto_max_s\" value=\"%g\"/>\n",
				g->p50, g->p95, g->max);
		fprintf(f, "      <property name=\"trend\" value=\"%s\"/>\n    </properties>\n",
			g->trend);
		for (size_t k = 0; k < g->n_dr; k++) {
			const struct drill_sum *d = &g->dr[k];

			fputs("    <testcase name=\"", f);
			put_xml(f, d->id);
			fputs("\" classname=\"", f);
			put_xml(f, g->runbook);
			if (strcmp(g->target, "-") != 0) {
				fputs(".", f);
				put_xml(f, g->target);
			}
			fprintf(f, "\" time=\"%.3f\">", d->time);
			if (d->verdict == V_MET) {
				fputs("</testcase>\n", f);
				continue;
			}
			fprintf(f, "\n      <%s type=\"%s\" message=\"",
				d->verdict == V_INTERRUPTED ? "error" : "failure",
				verdict_names[d->verdict]);
			put_xml(f, d->reason);
			fputs("\">", f);
			fprintf(f, "verdict %s, rto %s s, journal entry %llu: ",
				verdict_names[d->verdict], secs(num, sizeof(num), d->rto),
				(unsigned long long)d->seq);
			put_xml(f, d->reason);
			fprintf(f, "</%s>\n    </testcase>\n",
				d->verdict == V_INTERRUPTED ? "error" : "failure");
		}
		fputs("  </testsuite>\n", f);
	}
	rh_cadence_write_junit(f, r->cadence);
	fputs("</testsuites>\n", f);
}

/* ---- html ------------------------------------------------------------- */

static const char *const verdict_colors[V_COUNT] = {"#1a7f37", "#bf6a02", "#cf222e", "#6e7781",
						    "#8250df", "#8250df", "#6e7781"};

/* A "nice" tick step (1, 2 or 5 x 10^k) giving about `ticks` intervals. */
static double nice_step(double range, int ticks)
{
	double raw = range / ticks, mag, norm;

	if (!(raw > 0))
		return 1;
	mag = pow(10, floor(log10(raw)));
	norm = raw / mag;
	if (norm <= 1)
		return mag;
	if (norm <= 2)
		return 2 * mag;
	if (norm <= 5)
		return 5 * mag;
	return 10 * mag;
}

static int tick_decimals(double step)
{
	int d = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);

	return d > 6 ? 6 : d;
}

#define CW 1000.0
#define CH 300.0
#define CL 64.0 /* left margin: y tick labels and axis title */
#define CR 24.0
#define CT 20.0
#define CB 52.0 /* bottom: x tick labels and axis title */

static void write_chart(const struct group *g, FILE *f)
{
	size_t first = g->n_dr > CHART_MAX ? g->n_dr - CHART_MAX : 0;
	size_t n = g->n_dr - first;
	double ymax = 0, ystep, xstep, pw = CW - CL - CR, ph = CH - CT - CB;
	/* x: the journal's sequence numbers, so a point can be found in the
	 * journal and in the drill table */
	double lo = g->n_dr ? (double)g->dr[first].seq : 1;
	double hi = g->n_dr ? (double)g->dr[g->n_dr - 1].seq : 1;
	double x0 = lo, x1 = hi;
	int dec;
	bool line = false;

	for (size_t k = first; k < g->n_dr; k++)
		if (!isnan(g->dr[k].rto) && g->dr[k].rto > ymax)
			ymax = g->dr[k].rto;
	if (!isnan(g->rto_target) && g->rto_target > ymax)
		ymax = g->rto_target;
	if (!(ymax > 0))
		ymax = 1;
	ystep = nice_step(ymax * 1.05, 5);
	ymax = ceil(ymax * 1.05 / ystep) * ystep;
	dec = tick_decimals(ystep);
	xstep = nice_step(x1 - x0, 10);
	if (xstep < 1)
		xstep = 1;
	/* keep the first and last points off the axes */
	x0 -= fmax(0.5, (x1 - x0) * 0.02);
	x1 += fmax(0.5, (x1 - x0) * 0.02);
#define XP(i) (CL + ((double)(i)-x0) / (x1 - x0) * pw)
#define YP(v) (CT + ph - (v) / ymax * ph)
	fprintf(f,
		"<svg class=\"chart\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
		"xmlns=\"http://www.w3.org/2000/svg\" aria-label=\"RTO of each drill in "
		"seconds\">\n",
		CW, CH);
	/* grid and y ticks */
	for (double v = 0; v <= ymax + ystep / 2; v += ystep) {
		fprintf(f,
			"<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
			"<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.*f"
			"</text>\n",
			CL, CW - CR, YP(v), YP(v), CL - 8, YP(v) + 4, dec, v);
	}
	/* x ticks: journal sequence numbers */
	for (double i = ceil(x0 / xstep) * xstep; i <= x1 + 1e-9; i += xstep) {
		if (i < x0 - 1e-9 || i < lo || i > hi)
			continue;
		fprintf(f,
			"<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
			"<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.0f"
			"</text>\n",
			XP(i), XP(i), CT + ph, CT + ph + 5, XP(i), CT + ph + 19, i);
	}
	fprintf(f, "<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>\n", CL,
		CW - CR, CT + ph, CT + ph);
	fprintf(f, "<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>\n", CL,
		CL, CT, CT + ph);
	fprintf(f,
		"<text class=\"label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">journal "
		"sequence number (see the drill table",
		CL + pw / 2, CH - 10);
	if (first)
		fprintf(f, "; the most recent %zu of %zu", n, g->n_dr);
	fputs(")</text>\n", f);
	fprintf(f,
		"<text class=\"label\" transform=\"translate(16 %.1f) rotate(-90)\" "
		"text-anchor=\"middle\">RTO (s)</text>\n",
		CT + ph / 2);
	if (!isnan(g->rto_target)) {
		fprintf(f,
			"<line class=\"target\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" "
			"y2=\"%.1f\"/><text class=\"tlabel\" x=\"%.1f\" y=\"%.1f\" "
			"text-anchor=\"end\">target %g s</text>\n",
			CL, CW - CR, YP(g->rto_target), YP(g->rto_target), CW - CR - 4,
			YP(g->rto_target) - 6, g->rto_target);
	}
	/* the line through restored drills, then the points on top */
	for (size_t k = first; k < g->n_dr; k++) {
		if (isnan(g->dr[k].rto))
			continue;
		fprintf(f, "%s%.1f,%.1f", line ? " " : "<polyline class=\"rto\" points=\"",
			XP(g->dr[k].seq), YP(g->dr[k].rto));
		line = true;
	}
	if (line)
		fputs("\"/>\n", f);
	for (size_t k = first; k < g->n_dr; k++) {
		const struct drill_sum *d = &g->dr[k];
		char b[32];

		if (isnan(d->rto)) {
			/* no RTO to plot: a cross on the time axis, so the failure is seen */
			double x = XP(d->seq), y = CT + ph;

			fprintf(f,
				"<path d=\"M%.1f %.1fl8 8m0 -8l-8 8\" stroke=\"%s\" "
				"stroke-width=\"2.2\"><title>",
				x - 4, y - 4, verdict_colors[d->verdict]);
		} else {
			fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%s\" fill=\"%s\"><title>",
				XP(d->seq), YP(d->rto), n > 100 ? "2.5" : "4.5",
				verdict_colors[d->verdict]);
		}
		put_xml(f, d->id);
		fprintf(f, ": %s, rto %s s", verdict_names[d->verdict], secs(b, sizeof(b), d->rto));
		if (d->reason) {
			fputs(" - ", f);
			put_xml(f, d->reason);
		}
		fprintf(f, "</title></%s>\n", isnan(d->rto) ? "path" : "circle");
	}
	fputs("</svg>\n", f);
#undef XP
#undef YP
}

/* The load test's p99 of each drill that had one, in journal order: does
 * the restored service get slower under the same load? */
static void write_p99_chart(const struct group *g, FILE *f)
{
	size_t first = g->n_dr > CHART_MAX ? g->n_dr - CHART_MAX : 0;
	double ymax = g->max_p99_ms, ystep, pw = CW - CL - CR, ph = CH - CT - CB;
	double x0 = (double)first + 1, x1 = (double)g->n_dr;
	bool line = false;
	int dec;

	if (!(ymax > 0))
		ymax = 1;
	ystep = nice_step(ymax * 1.05, 5);
	ymax = ceil(ymax * 1.05 / ystep) * ystep;
	dec = tick_decimals(ystep);
	x0 -= fmax(0.5, (x1 - x0) * 0.02);
	x1 += fmax(0.5, (x1 - x0) * 0.02);
#define XP(i) (CL + ((double)(i)-x0) / (x1 - x0) * pw)
#define YP(v) (CT + ph - (v) / ymax * ph)
	fprintf(f,
		"<svg class=\"chart p99\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
		"xmlns=\"http://www.w3.org/2000/svg\" aria-label=\"load test p99 latency of "
		"each drill in milliseconds\">\n",
		CW, CH);
	for (double v = 0; v <= ymax + ystep / 2; v += ystep)
		fprintf(f,
			"<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
			"<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.*f"
			"</text>\n",
			CL, CW - CR, YP(v), YP(v), CL - 8, YP(v) + 4, dec, v);
	fprintf(f, "<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>\n", CL,
		CW - CR, CT + ph, CT + ph);
	fprintf(f,
		"<text class=\"label\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">drill "
		"number (journal order)</text>\n"
		"<text class=\"label\" transform=\"translate(16 %.1f) rotate(-90)\" "
		"text-anchor=\"middle\">load p99 (ms)</text>\n",
		CL + pw / 2, CH - 10, CT + ph / 2);
	for (size_t k = first; k < g->n_dr; k++) {
		if (isnan(g->dr[k].p99_ms))
			continue;
		fprintf(f, "%s%.1f,%.1f", line ? " " : "<polyline class=\"rto\" points=\"",
			XP(k + 1), YP(g->dr[k].p99_ms));
		line = true;
	}
	if (line)
		fputs("\"/>\n", f);
	for (size_t k = first; k < g->n_dr; k++) {
		const struct drill_sum *d = &g->dr[k];
		char b[32];

		if (isnan(d->p99_ms))
			continue;
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>",
			XP(k + 1), YP(d->p99_ms), verdict_colors[d->verdict]);
		put_xml(f, d->id);
		fprintf(f, ": load p99 %s ms</title></circle>\n", ms_str(b, sizeof(b), d->p99_ms));
	}
	fputs("</svg>\n", f);
#undef XP
#undef YP
}

static const char html_css[] =
    "*{box-sizing:border-box}"
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;"
    "color:#1f2328;background:#f6f8fa;margin:0;padding:24px}"
    "main{max-width:1100px;margin:0 auto}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 8px}"
    ".meta{color:#59636e;margin:0 0 18px}"
    "section{background:#fff;border:1px solid #d1d9e0;border-radius:8px;padding:16px 18px;"
    "margin:0 0 18px}"
    "table{border-collapse:collapse;width:100%}"
    "th,td{padding:5px 8px;border-bottom:1px solid #e6eaef;text-align:left;"
    "white-space:nowrap;vertical-align:top}"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}"
    "th{font-weight:600;color:#59636e;font-size:12px;text-transform:uppercase;"
    "letter-spacing:.02em}"
    "tbody tr:nth-child(even){background:#f6f8fa}"
    ".wrap{overflow-x:auto}"
    ".name{white-space:normal;overflow-wrap:anywhere;min-width:9em}"
    ".badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;"
    "font-size:12px;font-weight:600}"
    ".met{background:#1a7f37}.missed{background:#bf6a02}.failed{background:#cf222e}"
    ".interrupted,.unknown{background:#6e7781}"
    ".kpis{display:flex;flex-wrap:wrap;gap:10px 28px;margin:4px 0 10px}"
    ".kpi b{display:block;font-size:18px}.kpi span{color:#59636e;font-size:12px}"
    ".chart{width:100%;height:auto;display:block;margin:6px 0 4px}"
    ".chart .grid{stroke:#eaeef2}.chart .axis{stroke:#8c959f}"
    ".chart .tick{font-size:11px;fill:#59636e}.chart .label{font-size:12px;fill:#1f2328}"
    ".chart .target{stroke:#cf222e;stroke-width:1.5;stroke-dasharray:6 4}"
    ".chart .tlabel{font-size:11px;fill:#cf222e}"
    ".chart .rto{fill:none;stroke:#8c959f;stroke-width:1}"
    ".legend{font-size:12px;color:#59636e;margin:0 0 10px}"
    ".legend i{display:inline-block;width:10px;height:10px;border-radius:5px;"
    "margin:0 4px 0 12px;vertical-align:-1px}"
    ".steps{max-width:520px}"
    ".slow td{font-weight:600}"
    ".aborted,.abandoned{background:#8250df}"
    ".journal.ok b{color:#1a7f37}.journal.bad b{color:#cf222e}"
    "code{font-size:12px;overflow-wrap:anywhere}"
    ".drills td{font-size:12px}.drills td.why{white-space:normal;overflow-wrap:anywhere;"
    "min-width:16em}"
    "@media print{body{background:#fff;padding:0}section{border:0;padding:0;"
    "break-inside:auto}.wrap{overflow:visible}th,td{white-space:normal}"
    "tr{break-inside:avoid}}";

static void html_kpi(FILE *f, const char *value, const char *what)
{
	fputs("<div class=\"kpi\"><b>", f);
	put_xml(f, value);
	fprintf(f, "</b><span>%s</span></div>", what);
}

/* Every drill (the most recent TABLE_MAX) in journal order: what the
 * hover titles of the charts say, in a form that survives printing. */
static void write_drill_table(const struct rh_report *r, FILE *f)
{
	size_t start = r->n_rows == TABLE_MAX ? r->next_row : 0;
	char b[32];

	if (!r->n_rows)
		return;
	fputs("<section id=\"drills\">\n<h2>Every drill</h2>\n", f);
	if (r->table_total > r->n_rows)
		fprintf(f, "<p class=\"meta\">The most recent %zu of %llu drills.</p>\n", r->n_rows,
			(unsigned long long)r->table_total);
	fputs("<div class=\"wrap\"><table class=\"drills\">\n<thead><tr><th class=\"n\">seq</th>"
	      "<th>drill id</th><th>t0 (UTC)</th><th>verdict</th><th class=\"n\">RTO s</th>"
	      "<th>target</th><th>scenario</th><th>failing step and reason</th></tr></thead>\n"
	      "<tbody>\n",
	      f);
	for (size_t k = 0; k < r->n_rows; k++) {
		const struct row *w = &r->rows[(start + k) % TABLE_MAX];

		fprintf(f, "<tr><td class=\"n\">%llu</td><td class=\"name\">",
			(unsigned long long)w->seq);
		put_xml(f, w->id);
		fputs("</td><td>", f);
		put_xml(f, w->t0);
		fprintf(f,
			"</td><td><span class=\"badge %s\">%s</span></td><td class=\"n\">%s</td>"
			"<td class=\"name\">",
			verdict_names[w->verdict], verdict_names[w->verdict],
			secs(b, sizeof(b), w->rto));
		put_xml(f, w->g->target);
		fputs("</td><td class=\"name\">", f);
		put_xml(f, w->g->scenario);
		fputs("</td><td class=\"why\">", f);
		put_xml(f, w->reason ? w->reason : "");
		fputs("</td></tr>\n", f);
	}
	fputs("</tbody>\n</table></div>\n</section>\n", f);
}

static void write_html(struct rh_report *r, FILE *f)
{
	char gen[32], a[32], b[32], c[32], d[32], e[32];

	format_time(r->generated, gen, sizeof(gen));
	fprintf(f,
		"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
		"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
		"<title>rehydra RTO report</title>\n<style>%s</style>\n</head>\n<body>\n<main>\n",
		html_css);
	fprintf(f,
		"<h1>rehydra RTO report</h1>\n<p class=\"meta\">Generated %s from %llu "
		"drill%s (",
		gen, (unsigned long long)r->records, r->records == 1 ? "" : "s");
	filter_describe(f, &r->filter, put_xml);
	fputs("). Percentiles are nearest-rank over the drills that restored the service; "
	      "drills aborted in pre-flight are counted apart.</p>\n",
	      f);
	if (r->journal_known) {
		fprintf(f, "<p class=\"meta journal %s\">Journal at generation time: <b>%s</b>",
			r->journal_ok ? "ok" : "bad",
			r->journal_ok ? "verified, hash chain intact" : "DOES NOT VERIFY");
		if (!r->journal_ok && r->journal_problem) {
			fputs(" (", f);
			put_xml(f, r->journal_problem);
			fputs(")", f);
		}
		fputs("; head hash <code>", f);
		put_xml(f, r->journal_head && *r->journal_head ? r->journal_head : "-");
		fputs("</code></p>\n", f);
	}
	fputs("<section>\n<h2>Summary</h2>\n", f);
	if (r->n == 0) {
		fputs("<p>No drills match.</p>\n</section>\n", f);
		rh_cadence_write_html(f, r->cadence);
		fputs("</main>\n</body>\n</html>\n", f);
		return;
	}
	fputs("<div class=\"wrap\"><table>\n<thead><tr><th>runbook</th><th>target</th>"
	      "<th>scenario</th><th class=\"n\">drills</th><th class=\"n\">pass rate</th>"
	      "<th class=\"n\">p50 s</th><th class=\"n\">p95 s</th><th class=\"n\">max s</th>"
	      "<th class=\"n\">target s</th><th>trend</th><th>last</th>"
	      "<th class=\"n\">load p99 ms</th></tr></thead>\n<tbody>\n",
	      f);
	for (size_t i = 0; i < r->n; i++) {
		struct group *g = r->sorted[i];

		fputs("<tr><td class=\"name\"><a href=\"#g", f);
		fprintf(f, "%zu\">", i + 1);
		put_xml(f, g->runbook);
		fputs("</a></td><td class=\"name\">", f);
		put_xml(f, g->target);
		fputs("</td><td class=\"name\">", f);
		put_xml(f, g->scenario);
		fprintf(f,
			"</td><td class=\"n\">%llu</td><td class=\"n\">%s</td><td class=\"n\">%s"
			"</td><td class=\"n\">%s</td><td class=\"n\">%s</td><td class=\"n\">%s"
			"</td><td>%s</td><td><span class=\"badge %s\">%s</span></td>",
			(unsigned long long)g->drills,
			pct(a, sizeof(a), g->counts[V_MET], g->drills), secs(b, sizeof(b), g->p50),
			secs(c, sizeof(c), g->p95), secs(d, sizeof(d), g->max),
			target_str(e, sizeof(e), g->rto_target), g->trend,
			verdict_names[g->last_verdict], verdict_names[g->last_verdict]);
		fprintf(f, "<td class=\"n\">%s</td></tr>\n",
			ms_str(a, sizeof(a), g->loads ? g->last_p99_ms : NAN));
	}
	fputs("</tbody>\n</table></div>\n</section>\n", f);
	for (size_t i = 0; i < r->n; i++) {
		struct group *g = r->sorted[i];

		fprintf(f, "<section id=\"g%zu\">\n<h2 class=\"name\">", i + 1);
		put_title(f, g, put_xml, " &middot; scenario ", "");
		fputs("</h2>\n<div class=\"kpis\">", f);
		snprintf(e, sizeof(e), "%llu / %llu / %llu / %llu",
			 (unsigned long long)g->counts[V_MET],
			 (unsigned long long)g->counts[V_MISSED],
			 (unsigned long long)g->counts[V_FAILED],
			 (unsigned long long)g->counts[V_INTERRUPTED]);
		html_kpi(f, e, "met / missed / failed / interrupted");
		snprintf(e, sizeof(e), "%llu", (unsigned long long)g->counts[V_ABORTED]);
		html_kpi(f, e, "aborted in pre-flight (not counted)");
		if (g->counts[V_ABANDONED]) {
			snprintf(e, sizeof(e), "%llu", (unsigned long long)g->counts[V_ABANDONED]);
			html_kpi(f, e, "abandoned: rehydra was killed (not counted)");
		}
		if (g->teardown_incomplete) {
			snprintf(e, sizeof(e), "%llu", (unsigned long long)g->teardown_incomplete);
			html_kpi(f, e, "TEARDOWN INCOMPLETE: resources may remain");
		}
		html_kpi(f, pct(a, sizeof(a), g->counts[V_MET], g->drills), "pass rate");
		html_kpi(f, secs(a, sizeof(a), g->p50), "RTO p50 s");
		html_kpi(f, secs(a, sizeof(a), g->p95), "RTO p95 s");
		html_kpi(f, secs(a, sizeof(a), g->max), "RTO max s");
		html_kpi(f, target_str(a, sizeof(a), g->rto_target), "target s");
		html_kpi(f, g->trend, "trend (last 5 vs 5 before)");
		fputs("</div>\n", f);
		if (g->n_dr)
			write_chart(g, f);
		else
			fputs("<p>No drill ran: every attempt was aborted in pre-flight (see the "
			      "drill "
			      "table).</p>\n",
			      f);
		fputs("<div class=\"legend\">", f);
		for (int v = 0; v < V_ABORTED; v++) /* aborted drills are not plotted */
			fprintf(f, "<i style=\"background:%s\"></i>%s", verdict_colors[v],
				verdict_names[v]);
		fputs(" &nbsp;&times; on the axis: no RTO (service not restored)</div>\n", f);
		if (g->loads)
			write_p99_chart(g, f);
		fputs("<p class=\"meta\">", f);
		put_xml(f, g->first_t0 ? g->first_t0 : "-");
		fputs(" &ndash; ", f);
		put_xml(f, g->last_t0 ? g->last_t0 : "-");
		fputs("</p>\n", f);
		if (g->n_steps == 0) {
			fputs("<p>No step completed successfully.</p>\n</section>\n", f);
			continue;
		}
		fputs("<table class=\"steps\">\n<thead><tr><th>step</th><th class=\"n\">mean s</th>"
		      "<th class=\"n\">ok runs</th></tr></thead>\n<tbody>\n",
		      f);
		for (size_t k = 0; k < g->n_steps; k++) {
			fprintf(f, "<tr%s><td class=\"name\">",
				k == g->slowest ? " class=\"slow\"" : "");
			put_xml(f, g->steps[k].id);
			fprintf(f, "%s</td><td class=\"n\">%s</td><td class=\"n\">%llu</td></tr>\n",
				k == g->slowest ? " (slowest)" : "",
				secs(a, sizeof(a), step_mean(&g->steps[k])),
				(unsigned long long)g->steps[k].n);
		}
		fputs("</tbody>\n</table>\n</section>\n", f);
	}
	write_drill_table(r, f);
	rh_cadence_write_html(f, r->cadence);
	fputs("</main>\n</body>\n</html>\n", f);
}

/* ---- formats ---------------------------------------------------------- */

static const char *const format_names[] = {"md", "html", "json", "csv", "junit"};

int rh_report_format_parse(const char *name, enum rh_report_format *out)
{
	if (name && strcmp(name, "markdown") == 0) {
		*out = RH_REPORT_MD;
		return 0;
	}
	for (size_t i = 0; name && i < sizeof(format_names) / sizeof(format_names[0]); i++)
		if (strcmp(name, format_names[i]) == 0) {
			*out = (enum rh_report_format)i;
			return 0;
		}
	return rh_error_set(RH_EINVAL,
			    "unknown report format '%s': use md, html, json, csv or "
			    "junit",
			    name ? name : "");
}

const char *rh_report_format_name(enum rh_report_format fmt)
{
	if ((size_t)fmt < sizeof(format_names) / sizeof(format_names[0]))
		return format_names[fmt];
	return "unknown";
}

int rh_report_write(struct rh_report *r, enum rh_report_format fmt, FILE *out)
{
	int err = report_prepare(r);

	if (err < 0)
		goto done;
	errno = 0;
	flockfile(out); /* one lock for the whole report, not one per character */
	switch (fmt) {
	case RH_REPORT_MD:
		write_md(r, out);
		break;
	case RH_REPORT_HTML:
		write_html(r, out);
		break;
	case RH_REPORT_JSON:
		err = write_json(r, out);
		break;
	case RH_REPORT_CSV:
		write_csv(r, out);
		break;
	case RH_REPORT_JUNIT:
		write_junit(r, out);
		break;
	default:
		err = rh_error_set(RH_EINVAL, "unknown report format %d", (int)fmt);
		break;
	}
	funlockfile(out);
	if (err < 0)
		goto done;
	if (fflush(out) != 0 || ferror(out))
		err = rh_error_set_errno(RH_EIO, errno ? errno : EIO, "cannot write the report");
done:
	return err;
}
