/*
 * step_provider.c - the steps that act on the target through its adapter:
 * provision, sync_artifacts, deploy, teardown.
 *
 * They are thin on purpose: the engine knows adapters only through the ops
 * table in provider.h, and the registry/sink code does the transfers. What
 * lives here is the glue the adapters should not each reimplement: the
 * one place a step context becomes a struct rh_provider_call (the target
 * expanded against the drill's scope, the deadline, cancel token, log
 * prefix, progress and outputs: adapters see no engine structure), turning
 * the adapter's outputs into step outputs (which the engine exports to
 * ${target.*} and ${model.*}), expanding the runbook's stack against the
 * scope for deploy, and giving sync_artifacts a deadline (the registry API
 * knows only a cancellation token, so a small timer thread fires a private
 * token at the deadline or when the step is cancelled).
 *
 * sync_artifacts syncs into the target's warm standby when the adapter
 * keeps one (provider.h, version 4) and the step does not say
 * "standby": false: only what is missing or changed is sent, and the
 * adapter then links the files into the drill's workspace. The outputs
 * keep their meaning either way ("path" is what the stack reads), with
 * "bytes_present" (what the target already held) and "standby" added.
 */
#include "clock.h"
#include "engine.h"
#include "error.h"
#include "interp.h"
#include "provider.h"
#include "registry.h"
#include "sink.h"
#include "step_run.h"
#include "sync.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

#define RH_MIB (1024.0 * 1024.0)
#define RH_PROGRESS_EVERY_S 0.2

static double round3(double x)
{
	return round(x * 1000.0) / 1000.0;
}

static int need_provider(struct rh_provider_ctx **out, struct rh_step_ctx *ctx)
{
	*out = ctx->drill->provider;
	if (!*out || !(*out)->ops)
		return rh_error_set(RH_EINVAL,
				    "step '%s': '%s' needs a target in the runbook "
				    "(add \"target\": {\"provider\": ...})",
				    ctx->step->id, ctx->step->type->name);
	return 0;
}

/* Copies what the adapter learnt into the step's outputs, without
 * overwriting what the hook put there itself. */
static int merge_provider_outputs(struct rh_provider_ctx *p, struct rh_step_ctx *ctx)
{
	const char *key;
	json_t *val;
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	json_object_foreach(p->outputs, key, val)
	{
		if (json_object_get(ctx->outputs, key))
			continue;
		if (json_object_set_new(ctx->outputs, key, json_deep_copy(val)) < 0) {
			rc = rh_error_set(RH_ENOMEM, "out of memory");
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

static void call_progress(void *user, const char *text)
{
	struct rh_step_ctx *ctx = user;

	if (ctx->progress)
		ctx->progress(ctx->progress_user, ctx, text);
}

/* Fills *c for one hook call of this attempt; *target_out (new) holds the
 * expanded target the call borrows. The scope is shared with running
 * steps, hence the engine lock. When the target does not expand, *c is
 * still complete, with the unexpanded target (c->target NULL). */
static int call_init(struct rh_provider_call *c, json_t **target_out, struct rh_step_ctx *ctx,
		     const struct rh_provider_ctx *p)
{
	struct rh_drill *d = ctx->drill;
	const json_t *grace = json_object_get(ctx->spec, "grace_s");
	int rc = 0;

	*c = (struct rh_provider_call)RH_PROVIDER_CALL_INIT;
	*target_out = NULL;
	c->deadline = ctx->deadline;
	c->cancel = ctx->cancel;
	c->log_prefix = ctx->log_prefix;
	c->outputs = ctx->outputs;
	c->grace_s = json_is_number(grace) && json_number_value(grace) >= 0
			 ? json_number_value(grace)
			 : -1.0;
	c->progress = call_progress;
	c->progress_user = ctx;
	if (!p->target)
		return 0;
	pthread_mutex_lock(&d->lock);
	rc = rh_interp_expand_json(target_out, p->target, d->scope);
	pthread_mutex_unlock(&d->lock);
	if (rc < 0)
		return rh_error_prefix(rc, "step '%s': target", ctx->step->id);
	c->target = *target_out;
	return 0;
}

static int hook_failed(int rc, struct rh_step_ctx *ctx, const struct rh_provider_ctx *p)
{
	const char *msg = rh_error_last();

	if (!msg[0])
		rh_error_set(rc, "%s", rh_strerror(rc));
	return rh_error_prefix(rc, "step '%s': %s %s", ctx->step->id, p->ops->name,
			       ctx->step->type->name);
}

int rh_step_provision_run(struct rh_step_ctx *ctx)
{
	struct rh_provider_call call;
	struct rh_provider_ctx *p;
	json_t *target = NULL;
	int rc;

	if ((rc = need_provider(&p, ctx)) < 0)
		return rc;
	if (!p->ops->provision)
		return rh_error_set(RH_EUNSUPPORTED, "step '%s': provider %s cannot provision",
				    ctx->step->id, p->ops->name);
	if ((rc = call_init(&call, &target, ctx, p)) < 0)
		goto done;
	rh_error_clear();
	rc = p->ops->provision(p, &call);
	if (rc < 0)
		hook_failed(rc, ctx, p);
	else
		rc = merge_provider_outputs(p, ctx);
done:
	json_decref(target);
	return rc;
}

int rh_step_teardown_run(struct rh_step_ctx *ctx)
{
	struct rh_provider_call call;
	struct rh_provider_ctx *p;
	json_t *target = NULL;
	int rc;

	if ((rc = need_provider(&p, ctx)) < 0)
		return rc;
	if (!p->ops->teardown)
		return rh_error_set(RH_EUNSUPPORTED, "step '%s': provider %s cannot tear down",
				    ctx->step->id, p->ops->name);
	/* teardown must run whatever the target's references say now: fall
	 * back to the unexpanded target rather than leave resources behind. */
	(void)call_init(&call, &target, ctx, p);
	rh_error_clear();
	rc = p->ops->teardown(p, &call);
	json_decref(target);
	return rc < 0 ? hook_failed(rc, ctx, p) : 0;
}

int rh_step_deploy_run(struct rh_step_ctx *ctx)
{
	struct rh_drill *d = ctx->drill;
	const json_t *stack = d->rb->stack;
	struct rh_provider_call call;
	struct rh_provider_ctx *p;
	json_t *command = NULL, *env = NULL, *target = NULL;
	int rc;

	if ((rc = need_provider(&p, ctx)) < 0)
		return rc;
	if (!json_is_object(stack) || !json_is_array(json_object_get(stack, "command")))
		return rh_error_set(RH_EINVAL,
				    "step '%s': deploy needs a \"stack\" with a "
				    "\"command\" in the runbook",
				    ctx->step->id);
	if (!p->ops->deploy)
		return rh_error_set(RH_EUNSUPPORTED, "step '%s': provider %s cannot deploy",
				    ctx->step->id, p->ops->name);
	/* The stack is not part of the step's spec, so the engine did not expand
	 * it; the scope is shared with running steps, hence the engine lock. */
	pthread_mutex_lock(&d->lock);
	rc = rh_interp_expand_json(&command, json_object_get(stack, "command"), d->scope);
	if (rc == 0 && json_object_get(stack, "env"))
		rc = rh_interp_expand_json(&env, json_object_get(stack, "env"), d->scope);
	pthread_mutex_unlock(&d->lock);
	if (rc < 0) {
		rh_error_prefix(rc, "step '%s': stack", ctx->step->id);
		goto done;
	}
	if ((rc = call_init(&call, &target, ctx, p)) < 0)
		goto done;
	rh_error_clear();
	rc = p->ops->deploy(p, &call, command, env);
	if (rc < 0) {
		hook_failed(rc, ctx, p);
		goto done;
	}
	rc = merge_provider_outputs(p, ctx);
done:
	json_decref(command);
	json_decref(env);
	json_decref(target);
	return rc;
}

/* ---- sync_artifacts ----------------------------------------------------- */

/* Fires `token` when the deadline passes or the step is cancelled. */
struct deadline_timer {
	struct rh_cancel token;
	struct rh_cancel stop;
	struct rh_cancel *parent;
	double deadline;
	bool expired;
	pthread_t tid;
	bool running;
};

static void *timer_thread(void *arg)
{
	struct deadline_timer *t = arg;

	for (;;) {
		struct pollfd pfd[2] = {
		    {.fd = rh_cancel_fd(&t->stop), .events = POLLIN},
		    {.fd = t->parent ? rh_cancel_fd(t->parent) : -1, .events = POLLIN},
		};
		double left = t->deadline - rh_clock_mono();
		int ms = left <= 0 ? 0 : left > 86400.0 ? 86400000 : (int)(left * 1000.0) + 1;

		if (poll(pfd, 2, ms) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		if (pfd[1].revents) {
			rh_cancel_fire(&t->token);
			break;
		}
		if (rh_clock_mono() >= t->deadline) {
			t->expired = true;
			rh_cancel_fire(&t->token);
			break;
		}
	}
	return NULL;
}

static int timer_start(struct deadline_timer *t, struct rh_cancel *parent, double deadline)
{
	int rc;

	memset(t, 0, sizeof(*t));
	t->token.fds[0] = t->token.fds[1] = t->stop.fds[0] = t->stop.fds[1] = -1;
	t->parent = parent;
	t->deadline = deadline;
	if ((rc = rh_cancel_init(&t->token)) < 0 || (rc = rh_cancel_init(&t->stop)) < 0)
		return rc;
	if (pthread_create(&t->tid, NULL, timer_thread, t) != 0)
		return rh_error_set(RH_ERROR, "cannot start a timer thread");
	t->running = true;
	return 0;
}

static void timer_stop(struct deadline_timer *t)
{
	if (t->running) {
		rh_cancel_fire(&t->stop);
		pthread_join(t->tid, NULL);
		t->running = false;
	}
	rh_cancel_clear(&t->token);
	rh_cancel_clear(&t->stop);
}

struct sync_progress {
	struct rh_step_ctx *ctx;
};

/* The sync calls this at most ~5 times a second; the engine shows it on a
 * terminal only. */
static void on_sync_progress(void *user, const struct rh_sync_progress *p)
{
	struct sync_progress *sp = user;
	struct rh_step_ctx *ctx = sp->ctx;
	char text[160];
	char eta[32] = "";

	if (!ctx->progress)
		return;
	if (p->eta_s >= 0 && p->done < p->total)
		snprintf(eta, sizeof(eta), ", %.0f s left", p->eta_s);
	snprintf(text, sizeof(text), "%.1f MiB / %.1f MiB at %.1f MiB/s%s",
		 (double)p->done / RH_MIB, (double)p->total / RH_MIB, p->rate / RH_MIB, eta);
	ctx->progress(ctx->progress_user, ctx, text);
}

static int scope_model_string(char **out, struct rh_drill *d, const char *key)
{
	const char *v;

	pthread_mutex_lock(&d->lock);
	v = json_string_value(json_object_get(json_object_get(d->scope, "model"), key));
	*out = v ? strdup(v) : NULL;
	pthread_mutex_unlock(&d->lock);
	if (v && !*out)
		return rh_error_set(RH_ENOMEM, "out of memory");
	return 0;
}

int rh_step_sync_artifacts_run(struct rh_step_ctx *ctx)
{
	struct rh_drill *d = ctx->drill;
	struct rh_provider_ctx *p;
	struct rh_registry *reg = NULL;
	struct rh_model_version *v = NULL;
	struct rh_sink *sink = NULL;
	struct rh_sync_stats stats = {0};
	struct deadline_timer timer;
	struct sync_progress sp = {.ctx = ctx};
	struct rh_sync_opts sopts = RH_SYNC_OPTS_INIT;
	struct rh_provider_call call;
	json_t *target = NULL;
	char *url = NULL, *name = NULL, *version = NULL, *commit = NULL, *cache = NULL;
	char *model_path = NULL;
	bool timer_ready = false, warm = false;
	size_t n;
	int rc;

	if ((rc = need_provider(&p, ctx)) < 0)
		return rc;
	if ((rc = scope_model_string(&url, d, "registry")) < 0 ||
	    (rc = scope_model_string(&name, d, "name")) < 0 ||
	    (rc = scope_model_string(&version, d, "version")) < 0 ||
	    (rc = scope_model_string(&commit, d, "commit")) < 0)
		goto done;
	if (!url || !name || !version) {
		rc = rh_error_set(RH_EINVAL,
				  "step '%s': sync_artifacts needs a \"model\" with "
				  "registry, name and version in the runbook",
				  ctx->step->id);
		goto done;
	}
	n = strlen(d->state_dir) + 8;
	cache = malloc(n);
	if (!cache) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	snprintf(cache, n, "%s/cache", d->state_dir);

	rc = timer_start(&timer, ctx->cancel, ctx->deadline);
	timer_ready = true;
	if (rc < 0)
		goto done;
	{
		struct rh_registry_opts ro = RH_REGISTRY_OPTS_INIT;

		ro.cancel = &timer.token;
		rc = rh_registry_open_opts(&reg, url, cache, &ro);
	}
	if (rc < 0)
		goto fail;
	rc = rh_registry_resolve(&v, reg, name, version, commit);
	if (rc < 0)
		goto fail;
	if (!p->ops->sink_open) {
		rc =
		    rh_error_set(RH_EUNSUPPORTED, "provider %s has no artifact sink", p->ops->name);
		goto fail;
	}
	rc = call_init(&call, &target, ctx, p);
	if (rc < 0)
		goto fail;
	rh_error_clear();
	warm = p->ops->version >= 4 && p->ops->standby_open && p->ops->standby_use &&
	       !json_is_false(json_object_get(ctx->spec, "standby"));
	if (warm) {
		rc = p->ops->standby_open(&sink, NULL, p, &call, name, 0);
		/* provisioned without a standby (a cloud's was never pre-staged):
		 * a cold sync, and the record says why */
		if (rc == RH_ENOTFOUND) {
			warm = false;
			if (json_object_set_new(ctx->outputs, "standby_unused",
						json_string(rh_error_last())) < 0) {
				rc = rh_error_set(RH_ENOMEM, "out of memory");
				goto fail;
			}
		}
	}
	if (!warm)
		rc = p->ops->sink_open(&sink, p, &call);
	if (rc < 0)
		goto fail;
	sopts.cancel = &timer.token;
	sopts.progress = on_sync_progress;
	sopts.progress_user = &sp;
	rc = rh_sync_run(reg, v, sink, &sopts, &stats);
	if (rc < 0)
		goto fail;
	if (warm) {
		rh_error_clear();
		rc = p->ops->standby_use(&model_path, p, &call, v,
					 sink->location ? sink->location : sink->url);
		if (rc < 0)
			goto fail;
	}
	{
		json_t *o = ctx->outputs;
		const char *why = NULL;
		struct {
			const char *key;
			uint64_t value;
		} counts[] = {
		    {"files", stats.files},
		    {"files_sent", stats.files_sent},
		    {"files_skipped", stats.files_skipped},
		    {"bytes_sent", stats.bytes_sent},
		    {"bytes_skipped", stats.bytes_skipped},
		    {"bytes_present", stats.bytes_skipped},
		    {"bytes_resumed", stats.bytes_resumed},
		};

		const char *where = sink->location ? sink->location : sink->url;

		if (json_object_set_new(o, "sha256", json_string(v->manifest_sha256)) < 0 ||
		    json_object_set_new(o, "path", json_string(model_path ? model_path : where)) <
			0 ||
		    (warm && json_object_set_new(o, "standby", json_string(where)) < 0) ||
		    json_object_set_new(o, "commit", json_string(v->commit)) < 0 ||
		    json_object_set_new(o, "seconds", json_real(round3(stats.seconds))) < 0 ||
		    json_object_set_new(o, "throughput_mib_s",
					json_real(round3(stats.throughput_mib_s))) < 0)
			rc = rh_error_set(RH_ENOMEM, "out of memory");
		for (size_t i = 0; rc == 0 && i < sizeof(counts) / sizeof(counts[0]); i++)
			if (json_object_set_new(o, counts[i].key,
						json_integer((json_int_t)counts[i].value)) < 0)
				rc = rh_error_set(RH_ENOMEM, "out of memory");
		/* Served from a cached clone because the remote could not be
		 * fetched: the drill worked, but the record must say from what. */
		if (rc == 0 && rh_registry_is_stale(reg, &why) &&
		    json_object_set_new(o, "registry_stale",
					json_string(why && *why ? why : "fetch failed")) < 0)
			rc = rh_error_set(RH_ENOMEM, "out of memory");
	}
	goto done;
fail:
	if (rc == RH_ECANCELLED && timer.expired && !rh_cancel_is_fired(ctx->cancel))
		rc = rh_error_set(RH_ETIMEOUT,
				  "step '%s': syncing %s %s from %s did not finish "
				  "before the step's timeout; raise timeout_s",
				  ctx->step->id, name, version, url);
	else
		rh_error_prefix(rc, "step '%s': sync %s %s", ctx->step->id, name, version);
done:
	rh_sink_close(sink);
	if (v)
		rh_model_version_free(v);
	if (reg)
		rh_registry_free(reg);
	if (timer_ready)
		timer_stop(&timer);
	free(url);
	free(name);
	free(version);
	free(commit);
	free(cache);
	free(model_path);
	json_decref(target);
	return rc;
}
