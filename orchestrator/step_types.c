/*
 * step_types.c - the table of step types: what each `do` value accepts.
 *
 * The parser and the engine reach step types only through rh_step_types[],
 * so adding a type means one definition here and its run function; nothing
 * else names a type. Each definition carries the type's own keys (the parser
 * rejects others with a suggestion), its default timeout, and a validate hook
 * for its fields. ${...} references are checked by the parser, not here, so
 * the hooks only judge what is fixed before interpolation: a field that is
 * all reference ("${vars.url}") is accepted as a string of anything.
 */
#include "steps.h"

#include "error.h"
#include "load.h"
#include "step_run.h"
#include "suggest.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "banned.h"

/* True when interpolation decides the text, so its shape cannot be judged now. */
static bool has_ref(const char *s)
{
	return strstr(s, "${") != NULL;
}

/* A diagnostic at a child pointer (ptr + "/" + key). Returns RH_EINVAL, or
 * RH_ENOMEM when it could not be recorded. */
__attribute__((format(printf, 5, 6))) static int
add_at(struct rh_diags *d, const char *ptr, const char *key, bool at_key, const char *fmt, ...)
{
	char *p = rh_pointer_join(ptr, key);
	char msg[1024];
	va_list ap;
	int err;

	if (!p)
		return rh_error_set(RH_ENOMEM, "out of memory validating %s", ptr);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	err = rh_diags_add(d, p, at_key, "%s", msg);
	free(p);
	return err < 0 ? err : RH_EINVAL;
}

/* ---- exec ---- */

static const char *const exec_keys[] = {"argv", "env", "cwd", NULL};

static int exec_validate(const json_t *spec, const char *ptr, struct rh_diags *d)
{
	const json_t *env = json_object_get(spec, "env");
	const char *key;
	json_t *val;
	char *envp = NULL;
	int err = 0;
	int r;

	if ((r = rh_spec_string_array(d, spec, ptr, "argv", true, true)) == RH_ENOMEM ||
	    (r = rh_spec_string(d, spec, ptr, "cwd", false, NULL)) == RH_ENOMEM) {
		err = r;
		goto done;
	}
	r = rh_spec_string_object(d, spec, ptr, "env");
	if (r == RH_ENOMEM) {
		err = r;
		goto done;
	}
	if (r != 1)
		goto done;
	envp = rh_pointer_join(ptr, "env");
	if (!envp) {
		err = rh_error_set(RH_ENOMEM, "out of memory validating %s", ptr);
		goto done;
	}
	json_object_foreach((json_t *)env, key, val)
	{
		if (*key && !strchr(key, '='))
			continue;
		r = add_at(d, envp, key, true,
			   "invalid environment variable name '%s': names are non-empty and "
			   "contain no '='",
			   key);
		if (r == RH_ENOMEM) {
			err = r;
			goto done;
		}
	}
done:
	free(envp);
	return err;
}

/* ---- http_probe ---- */

static const char *const http_keys[] = {
    "url",	   "method",	 "headers",	      "body", "expect_status",
    "expect_json", "interval_s", "request_timeout_s", NULL};
static const char *const http_methods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", NULL};

bool rh_http_text_bad(const char *s, bool tab_ok)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if ((*p < 0x20 && !(tab_ok && *p == '\t')) || *p == 0x7f)
			return true;
	return false;
}

bool rh_http_method_ok(const char *m)
{
	for (size_t i = 0; http_methods[i]; i++)
		if (strcmp(http_methods[i], m) == 0)
			return true;
	return false;
}

static bool header_name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!strchr("!#$%&'*+-.^_`|~", *s) && !(*s >= '0' && *s <= '9') &&
		    !(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z'))
			return false;
	return true;
}

static int http_validate_status(struct rh_diags *d, const json_t *spec, const char *ptr)
{
	const json_t *st = json_object_get(spec, "expect_status");
	char *sp = NULL;
	json_t *item;
	size_t i;
	int err = 0;

	if (!st)
		goto done;
	if (json_is_integer(st)) {
		err = rh_spec_integer(d, spec, ptr, "expect_status", false, 100, 599, NULL);
		goto done;
	}
	if (!json_is_array(st) || json_array_size(st) == 0) {
		err = add_at(d, ptr, "expect_status", false,
			     "expect_status: expected an http status (100 to 599) or a non-empty "
			     "array of them, got %s",
			     json_is_array(st) ? "[]" : rh_json_kind(st));
		goto done;
	}
	sp = rh_pointer_join(ptr, "expect_status");
	if (!sp) {
		err = rh_error_set(RH_ENOMEM, "out of memory validating %s", ptr);
		goto done;
	}
	json_array_foreach(st, i, item)
	{
		char idx[32];
		json_int_t v = json_integer_value(item);

		if (json_is_integer(item) && v >= 100 && v <= 599)
			continue;
		snprintf(idx, sizeof(idx), "%zu", i);
		err = add_at(d, sp, idx, false,
			     "expect_status: expected an http status from 100 to 599, got %s",
			     json_is_integer(item) ? "a number outside that range"
						   : rh_json_kind(item));
		if (err == RH_ENOMEM)
			goto done;
	}
done:
	free(sp);
	return err;
}

static int http_validate_headers(struct rh_diags *d, const json_t *spec, const char *ptr)
{
	const json_t *h = json_object_get(spec, "headers");
	char *hp = NULL;
	const char *key;
	json_t *val;
	int err = 0;

	if (rh_spec_string_object(d, spec, ptr, "headers") != 1)
		goto done;
	hp = rh_pointer_join(ptr, "headers");
	if (!hp) {
		err = rh_error_set(RH_ENOMEM, "out of memory validating %s", ptr);
		goto done;
	}
	json_object_foreach((json_t *)h, key, val)
	{
		int r = 0;

		if (!header_name_ok(key))
			r = add_at(d, hp, key, true,
				   "invalid http header name '%s': use letters, digits and '-'",
				   key);
		else if (strpbrk(json_string_value(val), "\r\n"))
			r = add_at(d, hp, key, false,
				   "header '%s' contains a line break: remove it", key);
		if (r == RH_ENOMEM) {
			err = r;
			goto done;
		}
	}
done:
	free(hp);
	return err;
}

static int http_validate(const json_t *spec, const char *ptr, struct rh_diags *d)
{
	static const struct rh_spec_range interval = {0.01, 60, false, true};
	static const struct rh_spec_range req = {0, 3600, true, true};
	const json_t *body = json_object_get(spec, "body");
	const char *url = NULL;
	const char *method = NULL;
	int err = 0;
	int r;

	r = rh_spec_string(d, spec, ptr, "url", true, &url);
	if (r == 1 && !*url) {
		r = add_at(d, ptr, "url", false,
			   "url: expected an http:// or https:// url, got an "
			   "empty string");
	} else if (r == 1 && !has_ref(url) && strncasecmp(url, "http://", 7) != 0 &&
		   strncasecmp(url, "https://", 8) != 0) {
		r = add_at(d, ptr, "url", false,
			   "url: expected an http:// or https:// url, got "
			   "'%.200s'",
			   url);
	} else if (r == 1 && rh_http_text_bad(url, false)) {
		r = add_at(d, ptr, "url", false,
			   "url contains a control character (a line break, "
			   "a tab...): remove it");
	}
	if (r == RH_ENOMEM)
		goto nomem;
	r = rh_spec_string(d, spec, ptr, "method", false, &method);
	if (r == 1 && !has_ref(method)) {
		bool known = false;

		for (size_t i = 0; http_methods[i]; i++)
			known = known || strcmp(http_methods[i], method) == 0;
		if (!known) {
			const char *s = rh_suggest(method, http_methods);

			if (s)
				r = add_at(d, ptr, "method", false,
					   "unknown http method: did you mean '%s'?", s);
			else
				r = add_at(d, ptr, "method", false,
					   "unknown http method: expected "
					   "GET, HEAD, POST, PUT, PATCH or DELETE");
		}
	}
	if (r == RH_ENOMEM)
		goto nomem;
	if (http_validate_headers(d, spec, ptr) == RH_ENOMEM)
		goto nomem;
	if (body && !json_is_string(body) && !json_is_object(body) && !json_is_array(body) &&
	    add_at(d, ptr, "body", false,
		   "body: expected a string, an object or an array "
		   "(sent as json), got %s",
		   rh_json_kind(body)) == RH_ENOMEM)
		goto nomem;
	if (http_validate_status(d, spec, ptr) == RH_ENOMEM)
		goto nomem;
	if (json_object_get(spec, "expect_json") &&
	    !json_is_object(json_object_get(spec, "expect_json")) &&
	    add_at(d, ptr, "expect_json", false,
		   "expect_json: expected an object of fields the "
		   "response must contain, got %s",
		   rh_json_kind(json_object_get(spec, "expect_json"))) == RH_ENOMEM)
		goto nomem;
	if (rh_spec_number(d, spec, ptr, "interval_s", false, &interval, NULL) == RH_ENOMEM ||
	    rh_spec_number(d, spec, ptr, "request_timeout_s", false, &req, NULL) == RH_ENOMEM)
		goto nomem;
	goto done;
nomem:
	err = RH_ENOMEM;
done:
	return err;
}

/* ---- load_probe ---- */

static const char *const load_keys[] = {
    "url",	     "method",	    "headers",		 "body",
    "expect_status", "expect_json", "request_timeout_s", "rate_per_s",
    "duration_s",    "warmup_s",    "connections",	 "stream",
    "slo",	     NULL};
static const char *const slo_keys[] = {"p50_ms",      "p95_ms",	    "p99_ms",	      "p999_ms",
				       "ttft_p95_ms", "error_rate", "min_rate_per_s", NULL};

static int load_validate_slo(struct rh_diags *d, const json_t *spec, const char *ptr)
{
	static const struct rh_spec_range ms = {0, 3600000, true, false};
	static const struct rh_spec_range ratio = {0, 1, false, false};
	static const struct rh_spec_range rate = {0, RH_LOAD_MAX_RATE, true, false};
	const json_t *slo = json_object_get(spec, "slo");
	char *sp = NULL;
	const char *key;
	json_t *val;
	int err = 0, r;

	if (!slo)
		goto done;
	if (!json_is_object(slo) || json_object_size(slo) == 0) {
		err = add_at(d, ptr, "slo", false,
			     "slo: expected an object of bounds (any of "
			     "p50_ms, p95_ms, p99_ms, p999_ms, ttft_p95_ms, error_rate, "
			     "min_rate_per_s), got %s",
			     json_is_object(slo) ? "{}" : rh_json_kind(slo));
		goto done;
	}
	sp = rh_pointer_join(ptr, "slo");
	if (!sp) {
		err = rh_error_set(RH_ENOMEM, "out of memory validating %s", ptr);
		goto done;
	}
	json_object_foreach((json_t *)slo, key, val)
	{
		bool known = false;

		for (size_t i = 0; slo_keys[i]; i++)
			known = known || strcmp(slo_keys[i], key) == 0;
		if (!known) {
			const char *s = rh_suggest(key, slo_keys);

			r = s ? add_at(d, sp, key, true, "unknown slo '%s': did you mean '%s'?",
				       key, s)
			      : add_at(d, sp, key, true,
				       "unknown slo '%s': expected p50_ms, p95_ms, "
				       "p99_ms, p999_ms, ttft_p95_ms, error_rate or min_rate_per_s",
				       key);
		} else {
			r = rh_spec_number(d, slo, sp, key, false,
					   strcmp(key, "error_rate") == 0	? &ratio
					   : strcmp(key, "min_rate_per_s") == 0 ? &rate
										: &ms,
					   NULL);
		}
		if (r == RH_ENOMEM) {
			err = r;
			goto done;
		}
	}
	if (json_object_get(slo, "ttft_p95_ms") && !json_is_true(json_object_get(spec, "stream")) &&
	    !json_is_true(json_object_get(json_object_get(spec, "body"), "stream"))) {
		err = add_at(d, sp, "ttft_p95_ms", true,
			     "ttft_p95_ms needs a streamed response: "
			     "add \"stream\": true to the step");
		if (err != RH_ENOMEM)
			err = 0;
	}
done:
	free(sp);
	return err == RH_ENOMEM ? err : 0;
}

static int load_validate(const json_t *spec, const char *ptr, struct rh_diags *d)
{
	static const struct rh_spec_range rate = {0, RH_LOAD_MAX_RATE, true, false};
	static const struct rh_spec_range dur = {0, 86400, true, true};
	static const struct rh_spec_range warm = {0, 3600, false, true};
	double r_rate = 0, r_dur = 0, r_warm = 0, r_req = 5, r_timeout = 0;
	int a, b, c, e, t;

	/* url, method, headers, body, expect_*, request_timeout_s as for http_probe */
	if (http_validate(spec, ptr, d) == RH_ENOMEM)
		return RH_ENOMEM;
	if ((a = rh_spec_number(d, spec, ptr, "rate_per_s", true, &rate, &r_rate)) == RH_ENOMEM ||
	    (b = rh_spec_number(d, spec, ptr, "duration_s", true, &dur, &r_dur)) == RH_ENOMEM ||
	    (c = rh_spec_number(d, spec, ptr, "warmup_s", false, &warm, &r_warm)) == RH_ENOMEM ||
	    rh_spec_integer(d, spec, ptr, "connections", false, 1, RH_LOAD_MAX_CONNECTIONS, NULL) ==
		RH_ENOMEM ||
	    rh_spec_bool(d, spec, ptr, "stream", NULL) == RH_ENOMEM ||
	    load_validate_slo(d, spec, ptr) == RH_ENOMEM)
		return RH_ENOMEM;
	/* the attempt must have time for the whole schedule and its last answers */
	e = json_is_number(json_object_get(spec, "request_timeout_s"));
	if (e)
		r_req = json_number_value(json_object_get(spec, "request_timeout_s"));
	t = json_is_number(json_object_get(spec, "timeout_s"));
	r_timeout = t ? json_number_value(json_object_get(spec, "timeout_s"))
		      : rh_step_load_probe.default_timeout_s;
	if (a == 1 && b == 1 && c != RH_EINVAL && r_warm + r_dur + r_req > r_timeout &&
	    add_at(d, ptr, t ? "timeout_s" : "duration_s", false,
		   "%s: the load test needs warmup_s + duration_s + request_timeout_s = %g s, "
		   "more than the step's timeout_s (%g s): raise timeout_s or shorten the test",
		   t ? "timeout_s" : "duration_s", r_warm + r_dur + r_req, r_timeout) == RH_ENOMEM)
		return RH_ENOMEM;
	return 0;
}

/* ---- wait, teardown ---- */

static const char *const wait_keys[] = {"seconds", NULL};

static int wait_validate(const json_t *spec, const char *ptr, struct rh_diags *d)
{
	static const struct rh_spec_range range = {0, RH_TIMEOUT_MAX_S, false, true};
	int r = rh_spec_number(d, spec, ptr, "seconds", true, &range, NULL);

	return r == RH_ENOMEM ? r : 0;
}

static const char *const teardown_keys[] = {"grace_s", NULL};

static int teardown_validate(const json_t *spec, const char *ptr, struct rh_diags *d)
{
	static const struct rh_spec_range range = {0, 600, false, true};
	int r = rh_spec_number(d, spec, ptr, "grace_s", false, &range, NULL);

	return r == RH_ENOMEM ? r : 0;
}

static const char *const no_keys[] = {NULL};

/* "standby": false syncs into the drill's workspace, leaving the target's
 * warm standby alone (a cold drill, or a target without room for one). */
static const char *const sync_keys[] = {"standby", NULL};

static int sync_validate(const json_t *spec, const char *ptr, struct rh_diags *d)
{
	int r = rh_spec_bool(d, spec, ptr, "standby", NULL);

	return r < 0 ? r : 0;
}

/* ---- the table ---- */

const struct rh_step_type rh_step_exec = {
    .name = "exec",
    .summary = "run a program (argv array, no shell); a json object on its last stdout "
	       "line becomes its outputs",
    .keys = exec_keys,
    .default_timeout_s = 300,
    .validate = exec_validate,
    .run = rh_step_exec_run,
};

const struct rh_step_type rh_step_http_probe = {
    .name = "http_probe",
    .summary = "poll an http endpoint until the status and json body match",
    .keys = http_keys,
    .default_timeout_s = 60,
    .validate = http_validate,
    .run = rh_step_http_probe_run,
};

const struct rh_step_type rh_step_load_probe = {
    .name = "load_probe",
    .summary = "send requests at a constant rate (open loop) and gate on latency "
	       "percentiles, errors and time to first token",
    .keys = load_keys,
    .default_timeout_s = 600,
    .validate = load_validate,
    .run = rh_step_load_probe_run,
};

const struct rh_step_type rh_step_wait = {
    .name = "wait",
    .summary = "wait a number of seconds",
    .keys = wait_keys,
    .default_timeout_s = 604800,
    .validate = wait_validate,
    .run = rh_step_wait_run,
};

const struct rh_step_type rh_step_provision = {
    .name = "provision",
    .summary = "create the target's infrastructure through its provider adapter",
    .keys = no_keys,
    .default_timeout_s = 600,
    .run = rh_step_provision_run,
    .needs_provider = true,
    .exports_to = "target",
};

const struct rh_step_type rh_step_sync_artifacts = {
    .name = "sync_artifacts",
    .summary = "copy the model's files from the registry to the target's warm standby "
	       "(only what changed), verifying sha256, and link them into the workspace",
    .keys = sync_keys,
    .validate = sync_validate,
    .default_timeout_s = 3600,
    .run = rh_step_sync_artifacts_run,
    .needs_provider = true,
    .needs_model = true,
    .exports_to = "model",
};

const struct rh_step_type rh_step_deploy = {
    .name = "deploy",
    .summary = "start the runbook's stack on the target",
    .keys = no_keys,
    .default_timeout_s = 300,
    .run = rh_step_deploy_run,
    .needs_provider = true,
};

const struct rh_step_type rh_step_teardown = {
    .name = "teardown",
    .summary = "stop the stack and remove what provision created (idempotent)",
    .keys = teardown_keys,
    .default_timeout_s = 600,
    .validate = teardown_validate,
    .run = rh_step_teardown_run,
    .needs_provider = true,
};

const struct rh_step_type *const rh_step_types[] = {
    &rh_step_exec,   &rh_step_http_probe, &rh_step_load_probe,
    &rh_step_wait,   &rh_step_provision,  &rh_step_sync_artifacts,
    &rh_step_deploy, &rh_step_teardown,	  NULL,
};
static_assert(sizeof(rh_step_types) / sizeof(rh_step_types[0]) == RH_STEP_TYPE_COUNT + 1,
	      "RH_STEP_TYPE_COUNT in steps.h must count the entries of rh_step_types");

const struct rh_step_type *rh_step_type_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; rh_step_types[i]; i++)
		if (strcmp(rh_step_types[i]->name, name) == 0)
			return rh_step_types[i];
	return NULL;
}
