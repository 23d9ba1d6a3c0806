/*
 * record.c - the drill record, the JSON evidence of one drill (see record.h).
 *
 * The record is what an auditor reads, so two rules shape this file. It is
 * written atomically (a temporary file in the same directory, fsync, rename,
 * fsync of the directory): a crash leaves the old record or the new one,
 * never half of one. And it carries no secret: the values of allowed
 * environment variables are never copied in, and any string that came back
 * from a step (outputs, error messages) has them masked, because a step may
 * echo what it was given.
 */
#include "record.h"
#include "clock.h"
#include "error.h"
#include "fsutil.h"
#include "interp.h"
#include "sha256.h"
#include "steps.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

#define RH_RECORD_FORMAT 1
/* Values shorter than this are not masked: "1" or "no" would mangle text
 * without protecting anything. */
#define RH_REDACT_MIN 4

/* Microseconds: step gaps in a fast chain are well under a millisecond,
 * and the overhead measurement must be able to see them. */
static json_t *seconds(double s)
{
	return json_real(round(s * 1e6) / 1e6);
}

/* Set values of the runbook's allowed env vars (borrowed from the scope). */
struct secrets {
	const char **values;
	size_t n;
};

static char *mask_string(const char *in, const struct secrets *sec)
{
	char *cur = strdup(in);

	for (size_t k = 0; cur && k < sec->n; k++) {
		const char *v = sec->values[k];
		size_t vlen = strlen(v);
		size_t count = 0;
		const char *p;
		char *out, *w;

		for (p = strstr(cur, v); p; p = strstr(p + vlen, v))
			count++;
		if (!count)
			continue;
		out = malloc(strlen(cur) + count * 16 + 1);
		if (!out) {
			free(cur);
			return NULL;
		}
		w = out;
		p = cur;
		for (const char *hit = strstr(p, v); hit; hit = strstr(p, v)) {
			memcpy(w, p, (size_t)(hit - p));
			w += hit - p;
			memcpy(w, "[redacted]", 10);
			w += 10;
			p = hit + vlen;
		}
		memcpy(w, p, strlen(p) + 1);
		free(cur);
		cur = out;
	}
	return cur;
}

/* A new deep copy of `in` with every string masked. */
static json_t *mask_json(const json_t *in, const struct secrets *sec)
{
	json_t *out = NULL;

	if (json_is_string(in)) {
		char *m = mask_string(json_string_value(in), sec);

		out = m ? json_string(m) : NULL;
		free(m);
	} else if (json_is_object(in)) {
		const char *key;
		json_t *val;

		out = json_object();
		json_object_foreach((json_t *)in, key, val)
		{
			char *mk = mask_string(key, sec);
			json_t *mv = mask_json(val, sec);

			if (!out || !mk || !mv || json_object_set_new(out, mk, mv) < 0) {
				if (!mk || !out)
					json_decref(mv);
				free(mk);
				json_decref(out);
				return NULL;
			}
			free(mk);
		}
	} else if (json_is_array(in)) {
		size_t i;
		json_t *val;

		out = json_array();
		json_array_foreach(in, i, val)
		{
			if (!out || json_array_append_new(out, mask_json(val, sec)) < 0) {
				json_decref(out);
				return NULL;
			}
		}
	} else {
		out = json_deep_copy(in);
	}
	return out;
}

static json_t *masked_str_or_null(const char *s, const struct secrets *sec)
{
	char *m;
	json_t *j;

	if (!s)
		return json_null();
	m = mask_string(s, sec);
	j = m ? json_string(m) : NULL;
	free(m);
	return j;
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* Adds key -> value, taking value; a NULL value means allocation failed. */
static int put(json_t *obj, const char *key, json_t *value)
{
	if (!value)
		return -1;
	return json_object_set_new(obj, key, value);
}

static json_t *build_steps(const struct rh_drill *d, const struct secrets *sec)
{
	const struct rh_runbook *rb = d->rb;
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < rb->n_steps; i++) {
		const struct rh_step_result *r = &d->results[i];
		const struct rh_step *s = &rb->steps[i];
		json_t *o = json_object();
		int err = 0;

		if (!o || json_array_append_new(arr, o) < 0) {
			json_decref(arr);
			return NULL;
		}
		err |= put(o, "id", json_string(s->id));
		err |= put(o, "do", json_string(s->type ? s->type->name : "?"));
		err |= put(o, "when", json_string(rh_when_name(s->when)));
		err |= put(o, "status", json_string(rh_step_status_name(r->status)));
		err |= put(o, "attempts", json_integer(r->attempts));
		err |= put(o, "start_s", r->start_s >= 0 ? seconds(r->start_s) : json_null());
		err |= put(o, "end_s", r->end_s >= 0 ? seconds(r->end_s) : json_null());
		err |= put(o, "duration_s",
			   r->start_s >= 0 && r->end_s >= 0 ? seconds(r->end_s - r->start_s)
							    : json_null());
		err |= put(o, "restores_service", json_boolean(s->restores_service));
		err |= put(o, "outputs", r->outputs ? mask_json(r->outputs, sec) : json_object());
		err |= put(o, "error", masked_str_or_null(r->error, sec));
		err |= put(o, "logs", str_or_null(r->log_prefix));
		if (err) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

/* The load test that speaks for the drill: the restores_service
 * load_probe, else the last one that measured anything; its outputs with
 * its id and status (report.h, metrics.h and `audit show` read this). */
static json_t *build_load(const struct rh_drill *d, const struct secrets *sec)
{
	const struct rh_runbook *rb = d->rb;
	long pick = -1;
	json_t *o;

	for (size_t i = 0; i < rb->n_steps; i++) {
		const struct rh_step *s = &rb->steps[i];

		if (s->type != &rh_step_load_probe ||
		    !json_is_integer(json_object_get(d->results[i].outputs, "requests")))
			continue;
		if (pick < 0 || s->restores_service || !rb->steps[pick].restores_service)
			pick = (long)i;
	}
	if (pick < 0)
		return json_null();
	o = mask_json(d->results[pick].outputs, sec);
	if (!o || put(o, "step", json_string(rb->steps[pick].id)) < 0 ||
	    put(o, "status", json_string(rh_step_status_name(d->results[pick].status))) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *build_model(const struct rh_drill *d, const struct secrets *sec)
{
	const struct rh_model_ref *m = &d->rb->model;
	json_t *scope_model = json_object_get(d->scope, "model");
	json_t *o;
	int err = 0;

	if (!m->present)
		return json_null();
	o = json_object();
	if (!o)
		return NULL;
	err |= put(o, "name", json_string(m->name));
	err |= put(o, "version", json_string(m->version));
	/* expanded, masked: it may be built from an env value (a token in a URL) */
	err |= put(
	    o, "registry",
	    masked_str_or_null(json_string_value(json_object_get(scope_model, "registry")), sec));
	/* the commit actually synced (exported by sync_artifacts), else the pin */
	err |= put(o, "commit",
		   str_or_null(json_string_value(json_object_get(scope_model, "commit"))));
	if (json_is_string(json_object_get(scope_model, "sha256")))
		err |= put(o, "sha256", json_deep_copy(json_object_get(scope_model, "sha256")));
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* When the instance was in `phase` (epoch seconds), from the phases a
 * cloud teardown read back (outputs.boot.phases); the first "booted" (the
 * machine booted once), the last of any other (a restarted boot script
 * repeats them). -1 when it never reported it. */
static double phase_at(const json_t *phases, const char *phase)
{
	double at = -1;
	size_t i;
	json_t *e;

	json_array_foreach(phases, i, e)
	{
		const char *name = json_string_value(json_object_get(e, "phase"));

		if (!name || strcmp(name, phase) != 0)
			continue;
		at = json_number_value(json_object_get(e, "at"));
		if (strcmp(phase, "booted") == 0)
			break;
	}
	return at;
}

static json_t *span(double from, double to)
{
	return from >= 0 && to >= 0 ? seconds(to - from) : json_null();
}

/* The cloud RTO split by what the instance reported: provision (T0 to the
 * end of the step that placed the target), boot, waiting for the model in
 * the bucket, the instance's model copy, its sha256 verification, the
 * stack's start, and the first correct answer. null when the drill has no
 * boot phases (not a cloud target, or the status object was unreadable). */
static json_t *build_breakdown(const struct rh_drill *d)
{
	const json_t *phases = NULL;
	double prov_end = -1, t0, booted, syncing, verifying, starting, serving;
	json_t *o;
	int err = 0;

	for (size_t i = 0; i < d->rb->n_steps; i++) {
		const json_t *out = d->results[i].outputs;
		const json_t *ph = json_object_get(json_object_get(out, "boot"), "phases");

		if (json_object_get(out, "placement") && d->results[i].end_s >= 0)
			prov_end = d->results[i].end_s;
		if (json_is_array(ph) && json_array_size(ph) > 0)
			phases = ph;
	}
	if (!phases || prov_end < 0)
		return json_null();
	t0 = (double)d->t0_wall.tv_sec + (double)d->t0_wall.tv_nsec / 1e9;
#define REL(name) (phase_at(phases, name) >= 0 ? phase_at(phases, name) - t0 : -1)
	booted = REL("booted");
	syncing = REL("syncing");
	verifying = REL("verifying");
	starting = REL("starting");
	serving = REL("serving");
#undef REL
	o = json_object();
	if (!o)
		return NULL;
	err |= put(o, "source",
		   json_string("phases reported by the instance (rehydra-boot/status.json); its "
			       "clock and this host's are taken to agree"));
	err |= put(o, "provision_s", seconds(prov_end));
	err |= put(o, "boot_s", span(prov_end, booted));
	err |= put(o, "wait_for_model_s", span(booted, syncing));
	err |= put(o, "model_sync_s", span(syncing, verifying));
	err |= put(o, "verification_s", span(verifying, starting));
	err |= put(o, "stack_start_s", span(starting, serving));
	err |= put(o, "first_answer_s", d->restored ? span(serving, d->rto_s) : json_null());
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* What the drill ran from: the effective inputs (vars after --var, their
 * sha256), and what pre-flight and sync learnt of the registry. */
static json_t *build_provenance(const struct rh_drill *d, const struct secrets *sec)
{
	json_t *o = d->provenance ? mask_json(d->provenance, sec) : json_object();
	json_t *vars = json_object_get(d->scope, "vars");
	char *text = NULL;
	char hex[65];
	int err = 0;

	if (!o)
		return NULL;
	text = json_dumps(vars ? vars : json_object(),
			  JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	if (!text) {
		json_decref(o);
		return NULL;
	}
	rh_sha256_buf_hex(hex, text, strlen(text));
	free(text);
	err |= put(o, "vars", vars ? mask_json(vars, sec) : json_object());
	err |= put(o, "vars_sha256", json_string(hex));
	if (!json_object_get(o, "var_overrides"))
		err |= put(o, "var_overrides", json_object());
	err |= put(o, "runbook_sha256", json_string(d->rb->sha256));
	err |= put(o, "rehydra_version", json_string(RH_VERSION));
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int rh_record_set_overrides(struct rh_drill *d, const struct rh_var_override *ov, size_t n)
{
	json_t *o;

	if (!d->provenance && !(d->provenance = json_object()))
		return rh_error_set(RH_ENOMEM, "out of memory");
	o = json_object();
	if (!o || json_object_set_new(d->provenance, "var_overrides", o) < 0)
		return rh_error_set(RH_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		if (json_object_set_new(o, ov[i].name, json_string(ov[i].value)) < 0)
			return rh_error_set(RH_ENOMEM, "out of memory");
	return 0;
}

int rh_record_build(json_t **out, const struct rh_drill *d)
{
	const struct rh_runbook *rb = d->rb;
	json_t *env = json_object_get(d->scope, "env");
	json_t *rec = json_object();
	json_t *o, *path;
	struct secrets sec = {NULL, 0};
	char t0[40], fin[40], host[256];
	struct timespec end = d->t0_wall;
	double last_end = 0;
	int err = 0;
	int rc = 0;

	*out = NULL;
	sec.values = calloc(json_object_size(env) + 1, sizeof(*sec.values));
	if (!rec || !sec.values)
		goto oom;
	{
		const char *key;
		json_t *val;

		json_object_foreach(env, key, val)
		{
			const char *v = json_string_value(val);

			if (v && strlen(v) >= RH_REDACT_MIN)
				sec.values[sec.n++] = v;
		}
	}

	for (size_t i = 0; i < rb->n_steps; i++)
		if (d->results[i].end_s > last_end)
			last_end = d->results[i].end_s;
	end.tv_sec += (time_t)last_end;
	end.tv_nsec += (long)((last_end - floor(last_end)) * 1e9);
	if (end.tv_nsec >= 1000000000L) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000L;
	}
	rh_clock_rfc3339(t0, sizeof(t0), &d->t0_wall);
	rh_clock_rfc3339(fin, sizeof(fin), &end);
	if (gethostname(host, sizeof(host)) < 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';

	err |= put(rec, "rehydra", json_integer(RH_RECORD_FORMAT));
	err |= put(rec, "drill_id", json_string(d->id));
	if (!(o = json_object()) || put(rec, "runbook", o) < 0)
		goto oom;
	err |= put(o, "name", json_string(rb->name));
	err |= put(o, "path", json_string(rb->path ? rb->path : ""));
	err |= put(o, "sha256", json_string(rb->sha256));
	/* the target with what provision learnt (host, port), never env values;
	 * expanded as the drill used it ("${vars.inventory}" would say nothing) */
	o = json_object_get(d->scope, "target");
	if (o && json_object_size(o)) {
		json_t *x = NULL;

		if (rh_interp_expand_json(&x, o, d->scope) < 0 || !x) {
			rh_error_clear();
			x = json_incref(o);
		}
		err |= put(rec, "target", mask_json(x, &sec));
		json_decref(x);
	} else {
		err |= put(rec, "target", json_null());
	}
	err |= put(rec, "model", build_model(d, &sec));
	err |= put(rec, "t0", json_string(t0));
	err |= put(rec, "finished", json_string(fin));
	err |= put(rec, "rto_s", d->restored ? seconds(d->rto_s) : json_null());
	err |= put(rec, "rto_target_s",
		   rb->rto_target_s > 0 ? json_real(rb->rto_target_s) : json_null());
	err |= put(rec, "verdict", json_string(rh_verdict_name(d->verdict)));
	err |= put(rec, "restored_by",
		   d->restored && d->rto_step >= 0 ? json_string(rb->steps[d->rto_step].id)
						   : json_null());
	if (!(path = json_array()) || put(rec, "critical_path", path) < 0)
		goto oom;
	for (size_t i = 0; i < d->n_critical; i++)
		err |= json_array_append_new(path, json_string(rb->steps[d->critical_path[i]].id));
	err |= put(rec, "overhead_s", d->restored ? seconds(d->overhead_s) : json_null());
	err |= put(rec, "rto_breakdown", build_breakdown(d));
	err |= put(rec, "final_phase_failed", json_boolean(d->final_phase_failed));
	err |=
	    put(rec, "teardown", json_string(d->teardown_incomplete ? "incomplete" : "complete"));
	/* before T0, beside the RTO and never inside it */
	err |= put(rec, "preflight_s", d->preflight_s >= 0 ? seconds(d->preflight_s) : json_null());
	err |= put(rec, "preflight", d->preflight ? mask_json(d->preflight, &sec) : json_null());
	err |= put(rec, "provenance", build_provenance(d, &sec));
	err |= put(rec, "steps", build_steps(d, &sec));
	err |= put(rec, "load", build_load(d, &sec));
	if (!(o = json_object()) || put(rec, "host", o) < 0)
		goto oom;
	err |= put(o, "name", json_string(host));
	err |= put(rec, "rehydra_version", json_string(RH_VERSION));
	if (err)
		goto oom;
	*out = rec;
	rec = NULL;
	goto done;
oom:
	rc = rh_error_set(RH_ENOMEM, "out of memory building the drill record");
done:
	json_decref(rec);
	free(sec.values);
	return rc;
}

int rh_record_write(const struct rh_drill *d, const json_t *record)
{
	char *text = NULL;
	int dfd = -1;
	int rc = 0;

	text = json_dumps(record, RH_RECORD_JSON_FLAGS);
	if (!text) {
		rc = rh_error_set(RH_ENOMEM, "cannot serialise the drill record");
		goto done;
	}
	dfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc =
		    rh_error_set_errno(RH_EIO, errno, "cannot open the drill directory %s", d->dir);
		goto done;
	}
	rc = rh_fs_write_atomic_at(dfd, d->dir, "record.json", text, strlen(text));
done:
	if (dfd >= 0)
		close(dfd);
	free(text);
	return rc;
}

char *rh_record_redact_text(const struct rh_drill *d, const char *text)
{
	json_t *env = d->scope ? json_object_get(d->scope, "env") : NULL;
	const char *vals[64];
	struct secrets sec = {vals, 0};
	const char *key;
	json_t *val;
	char *masked, *out, *w;

	if (!text)
		return NULL;
	json_object_foreach(env, key, val)
	{
		const char *v = json_string_value(val);

		if (v && strlen(v) >= RH_REDACT_MIN && sec.n < 64)
			vals[sec.n++] = v;
	}
	masked = mask_string(text, &sec);
	if (!masked)
		return NULL;
	out = malloc(strlen(masked) * 4 + 1);
	if (!out) {
		free(masked);
		return NULL;
	}
	w = out;
	for (const unsigned char *p = (const unsigned char *)masked; *p; p++) {
		if (*p >= 0x20 && *p != 0x7f) {
			*w++ = (char)*p;
		} else if (*p == '\n') {
			memcpy(w, "\\n", 2);
			w += 2;
		} else if (*p == '\r') {
			memcpy(w, "\\r", 2);
			w += 2;
		} else if (*p == '\t') {
			memcpy(w, "\\t", 2);
			w += 2;
		} else {
			w += snprintf(w, 5, "\\x%02x", *p);
		}
	}
	*w = '\0';
	free(masked);
	return out;
}
