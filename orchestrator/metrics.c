/*
 * metrics.c - Prometheus metrics of drills as a node_exporter textfile (see
 * metrics.h).
 *
 * Scheduled drills (cron, timers, CI) are watched by the monitoring people
 * already have: the textfile collector picks up a file, so rehydra only has
 * to write a correct one, atomically (a half-written file would be scraped
 * as garbage). The gauges describe the latest drill per runbook, target and
 * scenario so that one file serves every drill run on the machine; they are
 * rebuilt from the journal, which is the one place that knows them all.
 */
#include "metrics.h"
#include "cadence.h"

#include "error.h"
#include "fsutil.h"
#include "journal.h"
#include "report.h"
#include "strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "banned.h"

enum { V_MET, V_MISSED, V_FAILED, V_INTERRUPTED, V_ABORTED, V_ABANDONED, V_OTHER, V_COUNT };

/* aborted: a pre-flight check failed before T0 and nothing was created. It
 * is counted under its own label and never becomes the group's "latest
 * drill": a typo caught before T0 says nothing about whether recovery
 * works, so it must not turn rehydra_drill_success to 0 (nor the RTO to
 * NaN). Its time has a gauge of its own, to alert on. abandoned: rehydra
 * was killed mid-drill and a later command cleaned up (intent.h); it says
 * nothing about the recovery either, so it is kept out of the latest drill
 * the same way, and its series appears only once one exists. */
static const char *const verdict_names[V_COUNT] = {"met",     "missed",	   "failed", "interrupted",
						   "aborted", "abandoned", "other"};

struct group {
	char *runbook, *target, *scenario;
	double rto, rto_target, overhead, last_ts;
	double aborted_ts; /* the latest aborted drill's, NaN when none */
	bool success;
	bool have_result; /* a drill that ran (not aborted) was added */
	uint64_t count[V_COUNT];
	/* the latest drill's load test (record "load"), NaN when it had none */
	double lat[5], ttft[3];
};

static const struct {
	const char *quantile, *key;
} lat_q[5] = {{"0.5", "p50_ms"},
	      {"0.9", "p90_ms"},
	      {"0.95", "p95_ms"},
	      {"0.99", "p99_ms"},
	      {"0.999", "p999_ms"}},
  ttft_q[3] = {{"0.5", "ttft_p50_ms"}, {"0.95", "ttft_p95_ms"}, {"0.99", "ttft_p99_ms"}};

struct rh_metrics {
	bool with_totals;
	json_t *cadence; /* rh_cadence_compute's result, or NULL */
	json_t *index;	 /* group key -> index into groups */
	struct group *groups;
	size_t n, cap;
};

const char *const rh_metrics_fields[] = {
    "runbook.name", "scenario",	    "target",	  "t0",	  "finished", "verdict",
    "rto_s",	    "rto_target_s", "overhead_s", "load", NULL,
};

int rh_metrics_new(struct rh_metrics **out, bool with_totals)
{
	struct rh_metrics *m = calloc(1, sizeof(*m));

	*out = NULL;
	if (!m || !(m->index = json_object())) {
		free(m);
		return rh_error_set(RH_ENOMEM, "out of memory for the metrics");
	}
	m->with_totals = with_totals;
	*out = m;
	return 0;
}

void rh_metrics_free(struct rh_metrics *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++) {
		free(m->groups[i].runbook);
		free(m->groups[i].target);
		free(m->groups[i].scenario);
	}
	free(m->groups);
	json_decref(m->index);
	json_decref(m->cadence);
	free(m);
}

void rh_metrics_set_cadence(struct rh_metrics *m, json_t *cadence)
{
	json_decref(m->cadence);
	m->cadence = json_incref(cadence);
}

void rh_metrics_target_label(char *buf, size_t size, const json_t *record)
{
	const json_t *t = json_object_get(record, "target");
	const char *prov = json_string_value(json_object_get(t, "provider"));
	const char *reg = json_string_value(json_object_get(t, "region"));

	if (!prov)
		snprintf(buf, size, "-");
	else if (!reg || !*reg)
		snprintf(buf, size, "%s", prov);
	else
		snprintf(buf, size, "%s:%s", prov, reg);
}

const char *rh_metrics_scenario_label(const json_t *record)
{
	const json_t *s = json_object_get(record, "scenario");
	const char *name = json_is_object(s) ? json_string_value(json_object_get(s, "name"))
					     : json_string_value(s);

	return name && *name ? name : "-";
}

static double num_or_nan(const json_t *v)
{
	return json_is_number(v) ? json_number_value(v) : NAN;
}

static struct group *find_group(struct rh_metrics *m, const char *runbook, const char *target,
				const char *scenario)
{
	size_t klen = strlen(runbook) + strlen(target) + strlen(scenario) + 3;
	char *key = malloc(klen);
	struct group *g = NULL;
	json_t *idx;

	if (!key)
		return NULL;
	/* \x1f cannot be told from text by a reader, but no name holds it */
	snprintf(key, klen, "%s\x1f%s\x1f%s", runbook, target, scenario);
	idx = json_object_get(m->index, key);
	if (idx) {
		g = &m->groups[json_integer_value(idx)];
		goto done;
	}
	if (m->n == m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 16;
		struct group *ng = realloc(m->groups, ncap * sizeof(*ng));

		if (!ng)
			goto done;
		m->groups = ng;
		m->cap = ncap;
	}
	g = &m->groups[m->n];
	memset(g, 0, sizeof(*g));
	g->aborted_ts = NAN;
	g->runbook = strdup(runbook);
	g->target = strdup(target);
	g->scenario = strdup(scenario);
	if (!g->runbook || !g->target || !g->scenario ||
	    json_object_set_new(m->index, key, json_integer((json_int_t)m->n)) < 0) {
		free(g->runbook);
		free(g->target);
		free(g->scenario);
		g = NULL;
		goto done;
	}
	m->n++;
done:
	free(key);
	return g;
}

int rh_metrics_add(struct rh_metrics *m, const json_t *record)
{
	const char *runbook =
	    json_string_value(json_object_get(json_object_get(record, "runbook"), "name"));
	const char *scenario = rh_metrics_scenario_label(record);
	const char *verdict = json_string_value(json_object_get(record, "verdict"));
	const char *when = json_string_value(json_object_get(record, "finished"));
	char target[512];
	struct group *g;
	time_t ts;
	int v;

	if (!runbook)
		return 0;
	rh_metrics_target_label(target, sizeof(target), record);
	g = find_group(m, runbook, target, scenario);
	if (!g)
		return rh_error_set(RH_ENOMEM, "out of memory for the metrics");
	for (v = 0; v < V_OTHER; v++)
		if (verdict && strcmp(verdict, verdict_names[v]) == 0)
			break;
	g->count[v]++;
	if (!when)
		when = json_string_value(json_object_get(record, "t0"));
	if (v == V_ABORTED) {
		g->aborted_ts = when && rh_report_time_parse(when, &ts) == 0 ? (double)ts : NAN;
		return 0;
	}
	if (v == V_ABANDONED)
		return 0;
	g->have_result = true;
	g->success = v == V_MET;
	g->rto = num_or_nan(json_object_get(record, "rto_s"));
	g->rto_target = num_or_nan(json_object_get(record, "rto_target_s"));
	g->overhead = num_or_nan(json_object_get(record, "overhead_s"));
	g->last_ts = when && rh_report_time_parse(when, &ts) == 0 ? (double)ts : NAN;
	{
		const json_t *load = json_object_get(record, "load");

		/* milliseconds in the record, seconds in Prometheus */
		for (int q = 0; q < 5; q++)
			g->lat[q] = num_or_nan(json_object_get(load, lat_q[q].key)) / 1000.0;
		for (int q = 0; q < 3; q++)
			g->ttft[q] = num_or_nan(json_object_get(load, ttft_q[q].key)) / 1000.0;
	}
	return 0;
}

/* A growing text buffer; `failed` sticks on the first allocation failure. */
/* Text with a sticky failure: the renderer adds without checking each
 * step and looks once at the end. */
struct buf {
	struct rh_strbuf sb;
	bool failed;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (!b->failed && rh_strbuf_add(&b->sb, s, n) < 0)
		b->failed = true;
}

static void buf_str(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* A label value, escaped as the exposition format wants: \\ \" \n. */
static void buf_label(struct buf *b, const char *name, const char *value, bool first)
{
	if (!first)
		buf_str(b, ",");
	buf_str(b, name);
	buf_str(b, "=\"");
	for (const char *p = value; *p; p++) {
		if (*p == '\\')
			buf_str(b, "\\\\");
		else if (*p == '"')
			buf_str(b, "\\\"");
		else if (*p == '\n')
			buf_str(b, "\\n");
		else
			buf_add(b, p, 1);
	}
	buf_str(b, "\"");
}

static void buf_value(struct buf *b, double v)
{
	char num[64];

	if (isnan(v))
		snprintf(num, sizeof(num), " NaN\n");
	else if (isinf(v))
		snprintf(num, sizeof(num), " %sInf\n", v > 0 ? "+" : "-");
	else
		snprintf(num, sizeof(num), " %.15g\n", v);
	buf_str(b, num);
}

static void buf_series_start(struct buf *b, const char *metric, const struct group *g)
{
	buf_str(b, metric);
	buf_str(b, "{");
	buf_label(b, "runbook", g->runbook, true);
	buf_label(b, "target", g->target, false);
	buf_label(b, "scenario", g->scenario, false);
}

static void buf_family(struct buf *b, const char *metric, const char *type, const char *help)
{
	buf_str(b, "# HELP ");
	buf_str(b, metric);
	buf_str(b, " ");
	buf_str(b, help);
	buf_str(b, "\n# TYPE ");
	buf_str(b, metric);
	buf_str(b, " ");
	buf_str(b, type);
	buf_str(b, "\n");
}

enum gauge { G_RTO, G_TARGET, G_SUCCESS, G_LAST, G_OVERHEAD, G_COUNT };

static const struct {
	const char *name, *help;
} gauges[G_COUNT] = {
    {"rehydra_drill_rto_seconds",
     "Achieved RTO of the latest drill: T0 to the first correct answer (NaN when the "
     "service was not restored)."},
    {"rehydra_drill_rto_target_seconds", "RTO target of the runbook of the latest drill."},
    {"rehydra_drill_success", "1 when the latest drill restored the service within its RTO "
			      "target (verdict met), else 0."},
    {"rehydra_drill_last_timestamp_seconds",
     "When the latest drill finished, in seconds since the epoch."},
    {"rehydra_drill_overhead_seconds",
     "Orchestrator overhead of the latest drill: RTO minus the critical path's step time "
     "(NaN when the service was not restored)."},
};

static double gauge_value(const struct group *g, enum gauge k)
{
	switch (k) {
	case G_RTO:
		return g->rto;
	case G_TARGET:
		return g->rto_target;
	case G_SUCCESS:
		return g->success ? 1 : 0;
	case G_LAST:
		return g->last_ts;
	case G_OVERHEAD:
		return g->overhead;
	default:
		return NAN;
	}
}

int rh_metrics_render(const struct rh_metrics *m, char **out, size_t *len)
{
	struct buf b = {RH_STRBUF_INIT, false};

	*out = NULL;
	for (int k = 0; k < G_COUNT; k++) {
		buf_family(&b, gauges[k].name, "gauge", gauges[k].help);
		for (size_t i = 0; i < m->n; i++) {
			double v = gauge_value(&m->groups[i], (enum gauge)k);

			/* no target is no series, not NaN: nothing was promised;
			 * a group whose every drill was aborted has no latest drill */
			if ((k == G_TARGET && isnan(v)) || !m->groups[i].have_result)
				continue;
			buf_series_start(&b, gauges[k].name, &m->groups[i]);
			buf_str(&b, "}");
			buf_value(&b, v);
		}
	}
	buf_family(&b, "rehydra_drill_last_aborted_timestamp_seconds", "gauge",
		   "When the latest drill aborted in pre-flight (nothing created) finished, in "
		   "seconds since the epoch; only for groups with one.");
	for (size_t i = 0; i < m->n; i++) {
		if (isnan(m->groups[i].aborted_ts))
			continue;
		buf_series_start(&b, "rehydra_drill_last_aborted_timestamp_seconds", &m->groups[i]);
		buf_str(&b, "}");
		buf_value(&b, m->groups[i].aborted_ts);
	}
	buf_family(&b, "rehydra_drill_latency_seconds", "summary",
		   "Response latency quantiles of the latest drill's load test, counted from each "
		   "request's intended send time (open loop).");
	for (size_t i = 0; i < m->n; i++)
		for (int q = 0; q < 5; q++) {
			if (isnan(m->groups[i].lat[q]))
				continue;
			buf_series_start(&b, "rehydra_drill_latency_seconds", &m->groups[i]);
			buf_label(&b, "quantile", lat_q[q].quantile, false);
			buf_str(&b, "}");
			buf_value(&b, m->groups[i].lat[q]);
		}
	buf_family(&b, "rehydra_drill_ttft_seconds", "summary",
		   "Time to first token quantiles of the latest drill's streaming load test.");
	for (size_t i = 0; i < m->n; i++)
		for (int q = 0; q < 3; q++) {
			if (isnan(m->groups[i].ttft[q]))
				continue;
			buf_series_start(&b, "rehydra_drill_ttft_seconds", &m->groups[i]);
			buf_label(&b, "quantile", ttft_q[q].quantile, false);
			buf_str(&b, "}");
			buf_value(&b, m->groups[i].ttft[q]);
		}
	if (m->with_totals) {
		buf_family(&b, "rehydra_drills_total", "counter",
			   "Drills recorded in the audit journal, by verdict.");
		for (size_t i = 0; i < m->n; i++) {
			for (int v = 0; v < V_COUNT; v++) {
				if ((v == V_OTHER || v == V_ABANDONED) && !m->groups[i].count[v])
					continue;
				buf_series_start(&b, "rehydra_drills_total", &m->groups[i]);
				buf_label(&b, "verdict", verdict_names[v], false);
				buf_str(&b, "}");
				buf_value(&b, (double)m->groups[i].count[v]);
			}
		}
	}
	if (m->cadence) {
		char *text = NULL;

		if (rh_cadence_prom(&text, m->cadence) < 0)
			b.failed = true;
		else
			buf_str(&b, text);
		free(text);
	}
	if (b.failed || !b.sb.buf) {
		rh_strbuf_release(&b.sb);
		return rh_error_set(RH_ENOMEM, "out of memory rendering the metrics");
	}
	*out = rh_strbuf_detach(&b.sb, len);
	return 0;
}

int rh_metrics_write(const struct rh_metrics *m, const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = NULL, *text = NULL;
	const char *name = slash ? slash + 1 : path;
	size_t len = 0;
	int dfd = -1;
	int rc;

	if (!*name)
		return rh_error_set(RH_EINVAL, "%s: the metrics file needs a file name", path);
	dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
	if (!dir) {
		rc = rh_error_set(RH_ENOMEM, "out of memory writing the metrics");
		goto done;
	}
	rc = rh_metrics_render(m, &text, &len);
	if (rc < 0)
		goto done;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = rh_error_set_errno(RH_EIO, errno,
					"cannot open the directory %s for the "
					"metrics file",
					dir);
		goto done;
	}
	rc = rh_fs_write_atomic_at(dfd, dir, name, text, len);
	/* node_exporter runs as a user of its own and must read the file;
	 * metrics hold names and numbers, nothing secret */
	if (rc == 0 && fchmodat(dfd, name, 0644, 0) != 0)
		rc = rh_error_set_errno(RH_EIO, errno, "cannot make %s readable", path);
done:
	if (dfd >= 0)
		close(dfd);
	free(dir);
	free(text);
	return rc;
}

static int add_entry(const struct rh_journal_entry *e, void *user)
{
	return e->record ? rh_metrics_add(user, e->record) : 0;
}

int rh_metrics_write_journal(struct rh_journal *j, const char *path)
{
	struct rh_metrics *m = NULL;
	int rc = rh_metrics_new(&m, true);

	if (rc == 0)
		rc = rh_journal_foreach_fields(j, rh_metrics_fields, add_entry, m);
	if (rc == 0)
		rc = rh_metrics_write(m, path);
	rh_metrics_free(m);
	return rc;
}
