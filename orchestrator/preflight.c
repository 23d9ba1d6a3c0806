/*
 * preflight.c - the checks before T0 (see preflight.h for why).
 *
 * Each check says what it looked at and, when it fails, what to do next.
 * Everything here only reads: the registry is opened (a URL registry is
 * fetched into the cache, which a sync would do anyway), the version's tag
 * is resolved and its manifest verified, LFS objects are looked up in the
 * local store or the cache or asked for with one batch request (no bytes
 * moved), environment variables are checked by name (never printed), exec
 * programs are looked up on PATH, and the provider checks what only it
 * knows (terraform init in the drill's working dir, ssh host keys and
 * locks) through its preflight hooks. The results go into the record.
 */
#include "preflight.h"
#include "clock.h"
#include "error.h"
#include "interp.h"
#include "provider.h"
#include "record.h"
#include "registry.h"
#include "steps.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

#define RH_PREFLIGHT_DEFAULT_S 300.0

static int add(json_t *checks, const char *name, bool ok, const char *msg, const char *next)
{
	return rh_provider_check_add(checks, name, ok, msg, next);
}

/* Records the failure of `name` and returns the error to give. */
static int fail(json_t *checks, const char *name, int rc, const char *next)
{
	char msg[2048];

	snprintf(msg, sizeof(msg), "%s", rh_error_last());
	if (add(checks, name, false, msg, next) < 0)
		return RH_ENOMEM;
	return rh_error_set(rc < 0 ? rc : RH_EINVAL, "%s", msg);
}

/* ---- registry, version, LFS objects -------------------------------------- */

static const char *scope_str(const struct rh_drill *d, const char *ns, const char *key)
{
	return json_string_value(json_object_get(json_object_get(d->scope, ns), key));
}

static bool runbook_syncs(const struct rh_runbook *rb)
{
	for (size_t i = 0; i < rb->n_steps; i++)
		if (rb->steps[i].type == &rh_step_sync_artifacts)
			return true;
	return false;
}

/* The newest version of `name` in the registry and how many versions are
 * newer than `version` (the model's RPO, in versions). */
static int model_rpo(struct rh_drill *d, struct rh_registry *reg, const char *name,
		     const char *version)
{
	json_t *all = NULL, *list, *rpo = NULL;
	long pos = -1;
	size_t n;
	int rc;

	rc = rh_registry_list(&all, reg);
	if (rc < 0)
		return rc;
	list = json_object_get(all, name);
	n = json_array_size(list);
	for (size_t i = 0; i < n; i++)
		if (strcmp(json_string_value(json_array_get(list, i)), version) == 0)
			pos = (long)i;
	if (n && pos >= 0)
		rpo = json_pack("{s:s, s:s, s:I}", "restored", version, "newest",
				json_string_value(json_array_get(list, n - 1)), "versions_behind",
				(json_int_t)(n - 1 - (size_t)pos));
	if (rpo && json_object_set_new(d->provenance, "model_rpo", rpo) < 0)
		rc = rh_error_set(RH_ENOMEM, "out of memory");
	json_decref(all);
	return rc;
}

static int check_registry(json_t *checks, struct rh_drill *d, struct rh_cancel *cancel,
			  double timeout_s)
{
	const char *url = scope_str(d, "model", "registry");
	const char *name = scope_str(d, "model", "name");
	const char *version = scope_str(d, "model", "version");
	const char *commit = scope_str(d, "model", "commit");
	struct rh_registry_opts ro = RH_REGISTRY_OPTS_INIT;
	struct rh_registry *reg = NULL;
	struct rh_model_version *v = NULL;
	size_t in_store = 0, in_cache = 0, on_server = 0, blobs = 0;
	const char *why = NULL;
	char *cache = NULL;
	char msg[2048];
	int rc = 0;

	if (!url || !name || !version)
		return 0;
	if (asprintf(&cache, "%s/cache", d->state_dir) < 0) {
		cache = NULL;
		return rh_error_set(RH_ENOMEM, "out of memory");
	}
	ro.cancel = cancel;
	ro.fetch_timeout_s = timeout_s;
	rc = rh_registry_open_opts(&reg, url, cache, &ro);
	if (rc < 0) {
		rc = fail(checks, "registry", rc,
			  "check model.registry (or the --var that sets it) and that the "
			  "registry is reachable from this machine");
		goto done;
	}
	if (rh_registry_is_stale(reg, &why))
		snprintf(msg, sizeof(msg),
			 "%s opened from its cached clone: the fetch failed "
			 "(%s); versions published since are not seen",
			 rh_registry_name(reg), why && *why ? why : "unknown reason");
	else
		snprintf(msg, sizeof(msg), "%s opened", rh_registry_name(reg));
	if ((rc = add(checks, "registry", true, msg, NULL)) < 0)
		goto done;

	rc = rh_registry_resolve(&v, reg, name, version, commit);
	if (rc < 0) {
		rc = fail(checks, "model version", rc,
			  "check model.name and model.version against `rehydra registry list` "
			  "(publish the version first if it is new)");
		goto done;
	}
	snprintf(msg, sizeof(msg),
		 "%s %s: tag found at commit %.12s, manifest sha256 %.16s… "
		 "verified, %zu files, %llu bytes",
		 name, version, v->commit, v->manifest_sha256, v->n_files,
		 (unsigned long long)v->total_bytes);
	if ((rc = add(checks, "model version", true, msg, NULL)) < 0)
		goto done;
	if (json_object_set_new(d->provenance, "registry_commit", json_string(v->commit)) < 0 ||
	    json_object_set_new(d->provenance, "manifest_sha256", json_string(v->manifest_sha256)) <
		0) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	rc = model_rpo(d, reg, name, version);
	if (rc < 0)
		goto done;

	for (size_t i = 0; i < v->n_files; i++) {
		const char *how = NULL;

		rc = rh_registry_file_check(reg, v, i, cancel, &how);
		if (rc < 0) {
			rc = fail(checks, "lfs objects", rc,
				  "push the missing LFS objects to the registry (`git lfs push "
				  "--all`), or check the LFS server and REHYDRA_LFS_TOKEN");
			goto done;
		}
		if (how && strcmp(how, "store") == 0)
			in_store++;
		else if (how && strcmp(how, "cache") == 0)
			in_cache++;
		else if (how && strcmp(how, "server") == 0)
			on_server++;
		else
			blobs++;
	}
	snprintf(msg, sizeof(msg),
		 "%zu files: %zu in the local LFS store, %zu in the cache, "
		 "%zu answered by the LFS server, %zu plain blobs",
		 v->n_files, in_store, in_cache, on_server, blobs);
	rc = add(checks, "lfs objects", true, msg, NULL);
done:
	if (v)
		rh_model_version_free(v);
	if (reg)
		rh_registry_free(reg);
	free(cache);
	return rc;
}

/* ---- credentials, programs ------------------------------------------------- */

/* Every variable the runbook allows must be set: it lists them because
 * the target or the sink needs them. Names only, never values. */
static int check_credentials(json_t *checks, struct rh_drill *d)
{
	const struct rh_runbook *rb = d->rb;
	char missing[1024] = "", msg[1200];
	size_t pos = 0, n_missing = 0;

	if (!rb->n_env_allow)
		return 0;
	for (size_t i = 0; i < rb->n_env_allow; i++) {
		const char *v = getenv(rb->env_allow[i]);

		if (v && *v)
			continue;
		n_missing++;
		if (pos < sizeof(missing)) {
			int w = snprintf(missing + pos, sizeof(missing) - pos, "%s%s",
					 pos ? ", " : "", rb->env_allow[i]);

			pos += w > 0 ? (size_t)w : 0;
		}
	}
	if (n_missing) {
		rh_error_set(RH_EINVAL, "env_allow names %zu variable%s that %s not set: %s",
			     n_missing, n_missing == 1 ? "" : "s", n_missing == 1 ? "is" : "are",
			     missing);
		return fail(checks, "credentials", RH_EINVAL,
			    "export them in the environment the drill runs in (cron, CI "
			    "secrets), or remove them from env_allow");
	}
	snprintf(msg, sizeof(msg), "the %zu variable%s env_allow names %s set (values not shown)",
		 rb->n_env_allow, rb->n_env_allow == 1 ? "" : "s",
		 rb->n_env_allow == 1 ? "is" : "are");
	return add(checks, "credentials", true, msg, NULL);
}

static bool executable(const char *path)
{
	return access(path, X_OK) == 0;
}

static bool on_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	if (strchr(prog, '/'))
		return executable(prog);
	if (!path || !*path)
		path = "/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");

		if ((size_t)snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, n ? path : ".", prog) <
			sizeof(buf) &&
		    executable(buf))
			return true;
		path += n;
		if (*path == ':')
			path++;
	}
	return false;
}

static int check_programs(json_t *checks, struct rh_drill *d)
{
	const struct rh_runbook *rb = d->rb;
	size_t n = 0, deferred = 0;
	char msg[512];
	int rc = 0;

	for (size_t i = 0; i < rb->n_steps; i++) {
		const struct rh_step *s = &rb->steps[i];
		const char *raw;
		char *prog = NULL;

		if (s->type != &rh_step_exec)
			continue;
		raw = json_string_value(json_array_get(json_object_get(s->spec, "argv"), 0));
		if (!raw)
			continue;
		/* a program named by a step's output is known only at run time */
		if (strstr(raw, "${steps.") || strstr(raw, "${target.")) {
			deferred++;
			continue;
		}
		rc = rh_interp_expand(&prog, raw, d->scope);
		if (rc < 0) {
			rh_error_prefix(rc, "step '%s': argv[0]", s->id);
			return fail(checks, "exec programs", rc, "fix the step's argv");
		}
		if (!on_path(prog)) {
			/* the name may hold an ${env.*} secret: shown as the record shows it */
			char *shown = rh_record_redact_text(d, prog);

			rh_error_set(RH_ENOTFOUND, "step '%s': program '%s' is not found%s", s->id,
				     shown ? shown : "[redacted]",
				     strchr(prog, '/') ? " or not executable" : " on PATH");
			free(shown);
			free(prog);
			return fail(checks, "exec programs", RH_ENOTFOUND,
				    "install it, or give its full path in the step's argv");
		}
		free(prog);
		n++;
	}
	if (!n && !deferred)
		return 0;
	snprintf(msg, sizeof(msg), "%zu exec program%s found%s", n, n == 1 ? "" : "s",
		 deferred ? "; some are named by step outputs and checked when they run" : "");
	return add(checks, "exec programs", true, msg, NULL);
}

/* ---- provider --------------------------------------------------------------- */

static int check_provider(json_t *checks, struct rh_drill *d, struct rh_cancel *cancel,
			  double deadline, bool plan)
{
	const struct rh_runbook *rb = d->rb;
	struct rh_provider_ctx *p = d->provider;
	struct rh_provider_call call = RH_PROVIDER_CALL_INIT;
	json_t *target = NULL, *tools = NULL;
	char prefix[4200];
	int rc = 0;

	if (!p || !rb->provider)
		return 0;
	if (rb->provider->preflight) {
		rh_error_clear();
		rc = rb->provider->preflight(rb->provider, rb->target);
		if (rc < 0)
			return fail(checks, "provider", rc,
				    "install what the message names, then run the drill again");
	}
	if (rb->provider->version < 3 || !rb->provider->preflight_ctx)
		return 0;
	rc = rh_interp_expand_json(&target, p->target, d->scope);
	if (rc < 0) {
		rh_error_prefix(rc, "target");
		return fail(checks, "target", rc, "fix the runbook's target");
	}
	snprintf(prefix, sizeof(prefix), "%s/steps/preflight", d->dir);
	call.deadline = deadline;
	call.cancel = cancel;
	call.target = target;
	call.log_prefix = prefix;
	/* What the hook learns of the tools (versions, catalog date) is
	 * provenance: the record says what ran. */
	call.outputs = tools = json_object();
	if (!tools) {
		json_decref(target);
		return rh_error_set(RH_ENOMEM, "out of memory");
	}
	rh_error_clear();
	rc = p->ops->preflight_ctx(p, &call, checks, plan);
	if (json_object_size(tools) && d->provenance &&
	    json_object_update(d->provenance, tools) < 0 && rc == 0)
		rc = rh_error_set(RH_ENOMEM, "out of memory");
	json_decref(tools);
	if (rc < 0) {
		const json_t *last = rh_preflight_failed(checks);

		/* a hook that failed without naming a check still fails one */
		if (!last)
			rc = fail(checks, p->ops->name, rc, "see the message");
		else
			rc = rh_error_set(rc, "%s",
					  json_string_value(json_object_get(last, "message")));
	}
	json_decref(target);
	return rc;
}

const json_t *rh_preflight_failed(const json_t *checks)
{
	size_t n = json_array_size(checks);
	const json_t *last = n ? json_array_get(checks, n - 1) : NULL;

	return last && json_is_false(json_object_get(last, "ok")) ? last : NULL;
}

/* How long the pre-flight may wait on the network: no longer than the
 * runbook lets the steps that use the same registry and hosts wait (a
 * blackholed registry must not hang the drill before T0 either), and never
 * longer than RH_PREFLIGHT_DEFAULT_S. */
static double preflight_timeout(const struct rh_runbook *rb)
{
	double t = RH_PREFLIGHT_DEFAULT_S;

	for (size_t i = 0; i < rb->n_steps; i++) {
		const struct rh_step *s = &rb->steps[i];

		if ((s->type == &rh_step_sync_artifacts || s->type == &rh_step_provision) &&
		    s->timeout_s > 0 && s->timeout_s < t)
			t = s->timeout_s;
	}
	return t;
}

/* The pre-flight's own token: fired at its deadline or when the drill is
 * interrupted, so a check that waits on a silent server (an LFS endpoint,
 * an ssh host that accepts and never speaks) ends like a step does. */
struct pf_watch {
	struct rh_cancel token;
	struct rh_cancel done;
	struct rh_cancel *interrupt;
	double deadline;
};

static void *pf_watcher(void *arg)
{
	struct pf_watch *w = arg;

	while (!rh_cancel_is_fired(&w->done)) {
		double left = w->deadline - rh_clock_mono();

		if (left <= 0 || rh_cancel_is_fired(w->interrupt))
			break;
		rh_cancel_sleep(&w->done, left < 0.05 ? left : 0.05);
	}
	rh_cancel_fire(&w->token);
	return NULL;
}

int rh_preflight_run(json_t **out, struct rh_drill *d, const struct rh_preflight_opts *opts)
{
	double t0 = rh_clock_mono();
	double timeout_s = opts && opts->timeout_s > 0 ? opts->timeout_s : preflight_timeout(d->rb);
	json_t *checks = json_array();
	const json_t *failed;
	struct pf_watch w = {.interrupt = &d->interrupt, .deadline = t0 + timeout_s};
	pthread_t watcher;
	bool watching = false;
	int rc = 0;

	*out = NULL;
	if (!checks || (!d->provenance && !(d->provenance = json_object()))) {
		json_decref(checks);
		return rh_error_set(RH_ENOMEM, "out of memory");
	}
	w.token.fds[0] = w.token.fds[1] = w.done.fds[0] = w.done.fds[1] = -1;
	if ((rc = rh_cancel_init(&w.token)) < 0 || (rc = rh_cancel_init(&w.done)) < 0)
		goto done;
	if (pthread_create(&watcher, NULL, pf_watcher, &w) != 0) {
		rc = rh_error_set(RH_ERROR, "cannot start the pre-flight's watcher thread");
		goto done;
	}
	watching = true;
	if (d->rb->model.present && runbook_syncs(d->rb))
		rc = check_registry(checks, d, &w.token, timeout_s);
	if (rc == 0)
		rc = check_credentials(checks, d);
	if (rc == 0)
		rc = check_provider(checks, d, &w.token, t0 + timeout_s, opts && opts->plan);
	if (rc == 0)
		rc = check_programs(checks, d);
	if (rc == RH_ECANCELLED && !rh_cancel_is_fired(&d->interrupt))
		rc = rh_error_set(
		    RH_ETIMEOUT,
		    "pre-flight check '%s' did not finish within %g s (the shortest "
		    "timeout_s of the runbook's provision and sync steps): %s",
		    rh_preflight_failed(checks)
			? json_string_value(json_object_get(rh_preflight_failed(checks), "check"))
			: "?",
		    timeout_s, rh_error_last());
done:
	if (watching) {
		rh_cancel_fire(&w.done);
		pthread_join(watcher, NULL);
	}
	rh_cancel_clear(&w.token);
	rh_cancel_clear(&w.done);
	d->preflight_s = rh_clock_mono() - t0;
	if (rc < 0 && rc != RH_ENOMEM && (failed = rh_preflight_failed(checks)))
		rc = rh_error_set(rc, "pre-flight check '%s' failed: %s",
				  json_string_value(json_object_get(failed, "check")),
				  json_string_value(json_object_get(failed, "message")));
	*out = checks;
	return rc;
}
