/*
 * engine.c - runs a runbook's steps as a DAG and measures the RTO (see engine.h).
 *
 * One scheduler loop in the calling thread, under one mutex, decides what
 * starts, what is skipped and when the phases change; it sleeps on a condition
 * variable that every step thread signals when it finishes. Each attempt runs
 * in its own thread so parallel branches really run in parallel and a slow
 * step never delays the scheduling of others. The retry backoff is slept at
 * the end of the failed attempt's thread, on the cancellation token, so an
 * interrupt ends it at once.
 *
 * Two tokens cancel steps. Main-phase steps watch an engine-private token
 * that the scheduler fires on the first failure or on interrupt; final-phase
 * steps watch d->hard_stop, which only rh_engine_abort fires. The interrupt
 * itself must be async-signal-safe, so rh_engine_interrupt only fires
 * d->interrupt; a small watcher thread polls that token and wakes the
 * scheduler, which does the rest under the lock.
 *
 * The scope (interpolation namespaces) is shared by all steps: it is read
 * (expansion) and written (outputs) only under the engine lock.
 */
#include "engine.h"
#include "clock.h"
#include "error.h"
#include "fsutil.h"
#include "interp.h"
#include "provider.h"
#include "steps.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

/* How long an attempt may take to return once its own token fired (deadline,
 * failure elsewhere, interrupt) before the engine stops waiting for it: more
 * than the longest stop grace a step uses (terraform: 10 s). After an abort
 * (the third signal) the wait is short: the user wants out. */
#define RH_ABANDON_GRACE_S 15.0
#define RH_ABORT_GRACE_S 1.0
/* A step that watches its own deadline says best what it was waiting for:
 * the engine fires the attempt's token only this long after the deadline. */
#define RH_DEADLINE_SLACK_S 0.5

struct engine;

/* The running state of one step; touched only under d->lock, except the
 * fields an attempt thread owns while it runs (noted). */
struct step_rt {
	struct engine *e;
	size_t idx;
	pthread_t tid;
	bool has_thread; /* an attempt thread exists and is not joined */
	bool queued;	 /* ready but held back by max_parallel (reported once) */
	bool done;	 /* the attempt thread finished (join it) */
	unsigned attempt;
	json_t *spec;	 /* expanded spec of the current attempt */
	json_t *outputs; /* outputs of the current attempt */
	char *prefix;	 /* log prefix of the current attempt */
	/* Written by the attempt thread, read after `done`. */
	int rc;
	char *err;
	double end; /* rh_clock_mono() at the end of the attempt */
	bool retry; /* backoff slept: start the next attempt */
	bool cancelled_in_backoff;
	/* The attempt's own token: what run() watches. The scheduler fires it
	 * when the attempt's deadline passes or its phase token fires, and
	 * abandons the thread (detached, never joined) when it has not
	 * returned within the grace after that. */
	struct rh_cancel token;
	double deadline; /* rh_clock_mono() */
	double timeout_s;
	double fired_at;	/* when `token` fired; 0: not yet */
	bool deadline_hit;	/* `token` fired because the deadline passed */
	bool abandoned;		/* the engine gave the thread up */
	struct rh_step_ctx ctx; /* lives here, not on the thread's stack: the
				 * step may keep it after being abandoned */
};

struct engine {
	struct rh_drill *d;
	const struct rh_engine_opts *opts;
	struct step_rt *rt;
	struct rh_cancel main_cancel; /* fired on failure or interrupt */
	struct rh_cancel watch_stop;  /* ends the watcher thread */
	bool main_done;
	bool failing;	  /* a main-phase step failed for good */
	bool interrupted; /* rh_engine_interrupt during the main phase */
	bool aborted;
	unsigned running;	       /* attempt threads not yet joined */
	unsigned cap;		       /* the runbook's max_parallel */
	double grace_s;		       /* RH_ABANDON_GRACE_S unless the options say otherwise */
	struct engine *next_abandoned; /* see engine_graveyard */
};

/* Engines with abandoned attempt threads are never freed: such a thread may
 * still wake up and touch its step_rt, the engine and the drill. Keeping them
 * reachable here says this is deliberate (and keeps leak checkers quiet). */
static struct engine *engine_graveyard;
static pthread_mutex_t graveyard_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- small helpers ---------------------------------------------------- */

static double since_t0(const struct rh_drill *d)
{
	return rh_clock_mono() - d->t0_mono;
}

static bool is_final_phase(const struct rh_step *s)
{
	return s->when != RH_WHEN_ON_SUCCESS;
}

static bool status_final(enum rh_step_status s)
{
	return s != RH_STEP_PENDING && s != RH_STEP_RUNNING;
}

static char *xstrdup(const char *s)
{
	return strdup(s ? s : "");
}

static void emit(struct engine *e, enum rh_event_kind kind, size_t step, unsigned attempt,
		 double delay_s, const char *text)
{
	struct rh_event ev = {
	    .kind = kind,
	    .step = step,
	    .attempt = attempt,
	    .at_s = since_t0(e->d),
	    .delay_s = delay_s,
	    .text = text,
	};

	if (e->opts && e->opts->on_event)
		e->opts->on_event(e->opts->user, e->d, &ev);
}

static double uniform01(void)
{
	uint64_t r = 0;

	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = (uint64_t)(rh_clock_mono() * 1e9) * 6364136223846793005ULL;
	return (double)(r >> 11) / 9007199254740992.0; /* 2^53 */
}

/* Delay before attempt n+1 after attempt n failed. */
static double backoff_delay(const struct rh_backoff *b, unsigned n)
{
	double delay = b->initial_s * pow(b->factor >= 1 ? b->factor : 1, (double)n - 1);
	double j = b->jitter < 0 ? 0 : b->jitter > 1 ? 1 : b->jitter;

	if (!isfinite(delay) || delay > b->max_s)
		delay = b->max_s;
	if (delay < 0)
		delay = 0;
	return delay * (1.0 + j * (2.0 * uniform01() - 1.0));
}

/* ---- scope -------------------------------------------------------------- */

static int set_str(json_t *obj, const char *key, const char *value)
{
	return json_object_set_new(obj, key, json_string(value ? value : "")) == 0
		   ? 0
		   : rh_error_set(RH_ENOMEM, "out of memory building the drill scope");
}

static int scope_model(json_t *scope, const struct rh_runbook *rb)
{
	json_t *model = json_object();
	const char *raw[3] = {rb->model.name, rb->model.version, rb->model.commit};
	static const char *const keys[3] = {"name", "version", "commit"};
	char *registry = NULL;
	int rc = 0;

	if (!model || json_object_set_new(scope, "model", model) < 0)
		return rh_error_set(RH_ENOMEM, "out of memory building the drill scope");
	if (!rb->model.present)
		return 0;
	for (int i = 0; i < 3; i++) {
		char *val = NULL;

		if (!raw[i])
			continue;
		rc = rh_interp_expand(&val, raw[i], scope);
		if (rc < 0) {
			rh_error_prefix(rc, "model.%s", keys[i]);
			goto done;
		}
		rc = set_str(model, keys[i], val);
		free(val);
		if (rc < 0)
			goto done;
	}
	rc = rh_runbook_registry_resolve(&registry, rb, scope);
	if (rc < 0)
		goto done;
	rc = set_str(model, "registry", registry);
done:
	free(registry);
	return rc;
}

/* The directory of the running binary: runbooks name the example stack and
 * helper tools as ${rehydra.bindir}/NAME. "" when /proc is not mounted. */
static void self_bindir(char *buf, size_t size)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	buf[0] = '\0';
	if (n <= 0)
		return;
	exe[n] = '\0';
	snprintf(buf, size, "%s", dirname(exe));
}

/* Namespaces known before the first step runs; provision and sync add to
 * target and model, finished steps to steps. env holds only the names the
 * runbook allows, and only those that are set. The one scope builder: the
 * drill's scope and the provider context's render scope (rh_drill_provider_new)
 * both come from here, differing only in `bindir`. *out is new. */
static int scope_new(json_t **out, const struct rh_runbook *rb, const char *drill_id,
		     const char *drill_dir, const char *bindir)
{
	json_t *env = json_object();
	json_t *target = rb->target ? json_deep_copy(rb->target) : json_object();
	json_t *vars = rb->vars ? json_incref(rb->vars) : json_object();
	json_t *scope;
	int rc = 0;

	*out = NULL;
	for (size_t i = 0; env && i < rb->n_env_allow; i++) {
		const char *v = getenv(rb->env_allow[i]);

		if (v && json_object_set_new(env, rb->env_allow[i], json_string(v)) < 0) {
			json_decref(env);
			env = NULL;
		}
	}
	if (!env || !target || !vars) {
		json_decref(env);
		json_decref(target);
		json_decref(vars);
		return rh_error_set(RH_ENOMEM, "out of memory building the drill scope");
	}
	/* "o" steals env, target and vars, also when json_pack fails. */
	scope = json_pack("{s:{s:s, s:s, s:s, s:s}, s:{s:s, s:s}, s:{s:s, s:s},"
			  " s:o, s:o, s:o, s:{}}",
			  "runbook", "name", rb->name, "dir", rb->dir ? rb->dir : "", "path",
			  rb->path ? rb->path : "", "sha256", rb->sha256, "drill", "id", drill_id,
			  "dir", drill_dir ? drill_dir : "", "rehydra", "bindir", bindir, "version",
			  RH_VERSION, "vars", vars, "env", env, "target", target, "steps");
	if (!scope)
		return rh_error_set(RH_ENOMEM, "out of memory building the drill scope");
	rc = scope_model(scope, rb);
	if (rc < 0) {
		json_decref(scope);
		return rc;
	}
	*out = scope;
	return 0;
}

static int scope_build(struct rh_drill *d)
{
	char bindir[PATH_MAX];

	self_bindir(bindir, sizeof(bindir));
	return scope_new(&d->scope, d->rb, d->id, d->dir, bindir);
}

/* ---- the provider context ---------------------------------------------- */

/* The expander's user data: the render scope, read-only once built (so no
 * lock: several hooks may expand at once). */
static int provider_expand(void *user, json_t **out, const json_t *value, const json_t *bind)
{
	const json_t *scope = user;
	json_t *merged = NULL;
	const char *ns;
	json_t *val;
	int rc = 0;

	*out = NULL;
	if (!bind)
		return rh_interp_expand_json(out, value, scope);
	merged = json_copy((json_t *)scope);
	if (!merged)
		return rh_error_set(RH_ENOMEM, "out of memory expanding for the provider");
	json_object_foreach((json_t *)bind, ns, val)
	{
		json_t *have = json_object_get(merged, ns);
		json_t *ns_new = json_is_object(have) && json_is_object(val) ? json_copy(have)
									     : json_incref(val);

		if (!ns_new || (ns_new != val && json_object_update(ns_new, val) < 0) ||
		    json_object_set_new(merged, ns, ns_new) < 0) {
			rc = rh_error_set(RH_ENOMEM, "out of memory expanding for the provider");
			goto done;
		}
	}
	rc = rh_interp_expand_json(out, value, merged);
done:
	json_decref(merged);
	return rc;
}

static void provider_scope_free(void *user)
{
	json_decref(user);
}

int rh_drill_provider_new(struct rh_provider_ctx **out, const struct rh_provider_ops *ops,
			  const json_t *target, const struct rh_runbook *rb, const char *drill_id,
			  const char *state_dir, const char *drill_dir)
{
	struct rh_provider_ctx *p = NULL;
	json_t *scope = NULL;
	int rc;

	*out = NULL;
	/* On the target, ${rehydra.bindir} (this machine's binaries) means
	 * nothing: the render scope leaves it empty. */
	rc = scope_new(&scope, rb, drill_id, drill_dir, "");
	if (rc < 0)
		goto done;
	rc = rh_provider_ctx_new(&p, ops, target, drill_id, state_dir, drill_dir);
	if (rc < 0)
		goto done;
	p->runbook.name = rb->name;
	p->runbook.dir = rb->dir;
	p->runbook.stack = rb->stack;
	p->expander.expand = provider_expand;
	p->expander.user = scope;
	p->expander.free_user = provider_scope_free;
	scope = NULL;
	*out = p;
done:
	json_decref(scope);
	return rc;
}

/* ---- drill lifecycle ---------------------------------------------------- */

static int make_id(struct rh_drill *d)
{
	unsigned char rnd[3];
	struct tm tm;
	time_t now = d->t0_wall.tv_sec;
	char stamp[32];

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return rh_error_set_errno(RH_EIO, errno, "getrandom");
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(d->id, sizeof(d->id), "%s-%s-%02x%02x%02x", stamp, d->rb->name, rnd[0], rnd[1],
		 rnd[2]);
	return 0;
}

int rh_drill_init(struct rh_drill *d, struct rh_runbook *rb, const char *state_dir)
{
	char *steps_dir = NULL;
	size_t n;
	int rc;

	memset(d, 0, sizeof(*d));
	d->rb = rb;
	d->rto_step = -1;
	d->preflight_s = -1;
	d->verdict = RH_VERDICT_FAILED;
	d->interrupt.fds[0] = d->interrupt.fds[1] = -1;
	d->hard_stop.fds[0] = d->hard_stop.fds[1] = -1;
	pthread_mutex_init(&d->lock, NULL);
	{
		/* the scheduler waits for deadlines on the monotonic clock */
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&d->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	d->t0_wall = rh_clock_wall();

	rc = make_id(d);
	if (rc < 0)
		goto done;
	d->state_dir = strdup(state_dir);
	n = strlen(state_dir) + strlen(d->id) + 16;
	d->dir = malloc(n);
	steps_dir = malloc(n + 8);
	if (!d->state_dir || !d->dir || !steps_dir) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	snprintf(d->dir, n, "%s/drills/%s", state_dir, d->id);
	snprintf(steps_dir, n + 8, "%s/steps", d->dir);
	rc = rh_fs_mkdir_p(steps_dir);
	if (rc < 0) {
		rh_error_prefix(rc, "cannot create the drill directory under %s", state_dir);
		goto done;
	}

	d->results = calloc(rb->n_steps ? rb->n_steps : 1, sizeof(*d->results));
	if (!d->results) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < rb->n_steps; i++) {
		struct rh_step_result *r = &d->results[i];

		r->status = RH_STEP_PENDING;
		r->start_s = r->end_s = -1;
		r->outputs = json_object();
		n = strlen(steps_dir) + strlen(rb->steps[i].id) + 2;
		r->log_prefix = malloc(n);
		if (!r->outputs || !r->log_prefix) {
			rc = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
		snprintf(r->log_prefix, n, "%s/%s", steps_dir, rb->steps[i].id);
	}

	rc = scope_build(d);
	if (rc < 0) {
		rh_error_prefix(rc, "runbook %s", rb->path);
		goto done;
	}
	if ((rc = rh_cancel_init(&d->interrupt)) < 0 || (rc = rh_cancel_init(&d->hard_stop)) < 0)
		goto done;
	if (rb->target && rb->provider) {
		rc = rh_drill_provider_new(&d->provider, rb->provider, rb->target, rb, d->id,
					   d->state_dir, d->dir);
		if (rc < 0)
			goto done;
	}
done:
	free(steps_dir);
	if (rc < 0) {
		/* keep the message: release may not touch it, but be safe */
		char msg[1024];

		snprintf(msg, sizeof(msg), "%s", rh_error_last());
		rh_drill_release(d);
		rh_error_set(rc, "%s", msg);
	}
	return rc;
}

void rh_drill_release(struct rh_drill *d)
{
	if (d->n_abandoned > 0)
		return; /* an abandoned step thread may still use all of it */
	if (d->results && d->rb) {
		for (size_t i = 0; i < d->rb->n_steps; i++) {
			json_decref(d->results[i].outputs);
			free(d->results[i].error);
			free(d->results[i].log_prefix);
		}
	}
	free(d->results);
	d->results = NULL;
	if (d->provider)
		rh_provider_ctx_free(d->provider);
	d->provider = NULL;
	json_decref(d->scope);
	d->scope = NULL;
	json_decref(d->preflight);
	d->preflight = NULL;
	json_decref(d->provenance);
	d->provenance = NULL;
	free(d->critical_path);
	d->critical_path = NULL;
	d->n_critical = 0;
	free(d->dir);
	d->dir = NULL;
	free(d->state_dir);
	d->state_dir = NULL;
	rh_cancel_clear(&d->interrupt);
	rh_cancel_clear(&d->hard_stop);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
}

void rh_engine_interrupt(struct rh_drill *d)
{
	rh_cancel_fire(&d->interrupt);
}

void rh_engine_abort(struct rh_drill *d)
{
	rh_cancel_fire(&d->hard_stop);
	rh_cancel_fire(&d->interrupt);
}

/* ---- attempts ----------------------------------------------------------- */

static void step_progress(void *user, const struct rh_step_ctx *ctx, const char *text)
{
	struct step_rt *rt = user;
	struct rh_drill *d = rt->e->d;

	pthread_mutex_lock(&d->lock);
	if (!rt->abandoned)
		emit(rt->e, RH_EVENT_STEP_PROGRESS, rt->idx, ctx->attempt, 0, text);
	pthread_mutex_unlock(&d->lock);
}

static struct rh_cancel *step_cancel(struct engine *e, size_t idx)
{
	return is_final_phase(&e->d->rb->steps[idx]) ? &e->d->hard_stop : &e->main_cancel;
}

static void *attempt_thread(void *arg)
{
	struct step_rt *rt = arg;
	struct engine *e = rt->e;
	struct rh_drill *d = e->d;
	const struct rh_step *s = &d->rb->steps[rt->idx];
	struct rh_cancel *phase = step_cancel(e, rt->idx);
	bool timed_out;
	int rc;

	rh_error_clear();
	rc = s->type->run(&rt->ctx);
	pthread_mutex_lock(&d->lock);
	if (rt->abandoned) {
		/* the step already has its final status; nothing here is ours */
		pthread_mutex_unlock(&d->lock);
		return NULL;
	}
	timed_out = rt->deadline_hit;
	pthread_mutex_unlock(&d->lock);
	rt->end = rh_clock_mono();
	if (rc < 0) {
		const char *msg = rh_error_last();

		if (timed_out && rc == RH_ECANCELLED) {
			/* the engine's deadline stopped it: a timeout, retried as one */
			char buf[1400];

			snprintf(buf, sizeof(buf), "did not finish within its timeout (%g s): %s",
				 rt->timeout_s, msg[0] ? msg : "stopped");
			rc = RH_ETIMEOUT;
			rt->err = xstrdup(buf);
		} else {
			rt->err = xstrdup(msg[0] ? msg : rh_strerror(rc));
		}
	}
	rt->rc = rc;
	if (rc < 0 && rt->attempt <= s->retries && !rh_cancel_is_fired(phase)) {
		double delay = backoff_delay(&s->backoff, rt->attempt);

		pthread_mutex_lock(&d->lock);
		emit(e, RH_EVENT_STEP_RETRY, rt->idx, rt->attempt, delay, rt->err);
		pthread_mutex_unlock(&d->lock);
		if (rh_cancel_sleep(phase, delay) == 0)
			rt->retry = true;
		else
			rt->cancelled_in_backoff = true;
	}
	pthread_mutex_lock(&d->lock);
	rt->done = true;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/* Sets the final status of step i and reports it. Under the lock. */
/* A step's error is stored and shown next to its id, so a message that
 * starts with "step 'ID': " (deep code adds it for other contexts) loses it. */
static const char *strip_step_name(const char *err, const char *id)
{
	size_t n = strlen(id);

	if (err && strncmp(err, "step '", 6) == 0 && strncmp(err + 6, id, n) == 0 &&
	    strncmp(err + 6 + n, "': ", 3) == 0)
		return err + 9 + n;
	return err;
}

static void finish_step(struct engine *e, size_t i, enum rh_step_status st, const char *err)
{
	struct rh_drill *d = e->d;
	struct rh_step_result *r = &d->results[i];

	r->status = st;
	/* the end of the attempt's work, not the moment the scheduler noticed */
	if (r->start_s >= 0)
		r->end_s = e->rt[i].end > 0 ? e->rt[i].end - d->t0_mono : since_t0(d);
	free(r->error);
	r->error = st == RH_STEP_OK ? NULL : xstrdup(strip_step_name(err, d->rb->steps[i].id));
	if (!is_final_phase(&d->rb->steps[i]) && st != RH_STEP_OK && st != RH_STEP_SKIPPED &&
	    !(st == RH_STEP_CANCELLED && (e->failing || e->interrupted))) {
		e->failing = true;
		rh_cancel_fire(&e->main_cancel);
	}
	emit(e, RH_EVENT_STEP_END, i, e->rt[i].attempt, 0, r->error);
}

static void clear_attempt(struct step_rt *rt)
{
	json_decref(rt->spec);
	rt->spec = NULL;
	json_decref(rt->outputs);
	rt->outputs = NULL;
	free(rt->prefix);
	rt->prefix = NULL;
	free(rt->err);
	rt->err = NULL;
	rt->rc = 0;
	rt->retry = false;
	rt->cancelled_in_backoff = false;
	rt->done = false;
	rh_cancel_clear(&rt->token);
	rt->token.fds[0] = rt->token.fds[1] = -1;
	rt->fired_at = 0;
	rt->deadline_hit = false;
}

/* Starts the next attempt of step i. Under the lock. */
static void start_attempt(struct engine *e, size_t i)
{
	struct rh_drill *d = e->d;
	const struct rh_step *s = &d->rb->steps[i];
	struct rh_step_result *r = &d->results[i];
	struct step_rt *rt = &e->rt[i];
	size_t n;
	int rc;

	clear_attempt(rt);
	rt->attempt++;
	r->attempts = rt->attempt;
	r->status = RH_STEP_RUNNING;
	if (r->start_s < 0)
		r->start_s = since_t0(d);
	rt->end = 0;

	rc = rh_interp_expand_json(&rt->spec, s->spec, d->scope);
	if (rc < 0) {
		emit(e, RH_EVENT_STEP_START, i, rt->attempt, 0, NULL);
		finish_step(e, i, RH_STEP_FAILED, rh_error_last());
		return;
	}
	n = strlen(r->log_prefix) + 16;
	rt->prefix = malloc(n);
	rt->outputs = json_object();
	if (!rt->prefix || !rt->outputs) {
		finish_step(e, i, RH_STEP_FAILED, "out of memory");
		return;
	}
	if (rt->attempt > 1)
		snprintf(rt->prefix, n, "%s.%u", r->log_prefix, rt->attempt);
	else
		snprintf(rt->prefix, n, "%s", r->log_prefix);
	/* The parser fills in the type's default; a step built without it
	 * gets the same default from the same table. */
	rt->timeout_s = s->timeout_s > 0 ? s->timeout_s : s->type->default_timeout_s;
	rt->deadline = rh_clock_mono() + rt->timeout_s;
	if (rh_cancel_init(&rt->token) < 0) {
		finish_step(e, i, RH_STEP_FAILED, rh_error_last());
		return;
	}
	rt->ctx = (struct rh_step_ctx){
	    .drill = d,
	    .step = s,
	    .step_index = i,
	    .attempt = rt->attempt,
	    .deadline = rt->deadline,
	    .cancel = &rt->token,
	    .spec = rt->spec,
	    .outputs = rt->outputs,
	    .log_prefix = rt->prefix,
	    .progress = step_progress,
	    .progress_user = rt,
	};
	emit(e, RH_EVENT_STEP_START, i, rt->attempt, 0, NULL);
	rc = pthread_create(&rt->tid, NULL, attempt_thread, rt);
	if (rc != 0) {
		char msg[256];

		snprintf(msg, sizeof(msg), "cannot start a thread for step '%s': %s", s->id,
			 strerror(rc));
		finish_step(e, i, RH_STEP_FAILED, msg);
		return;
	}
	rt->has_thread = true;
	e->running++;
}

/* Stores a successful attempt's outputs in the scope. Under the lock. */
static int publish_outputs(struct engine *e, size_t i, json_t *outputs)
{
	struct rh_drill *d = e->d;
	const struct rh_step *s = &d->rb->steps[i];
	json_t *steps = json_object_get(d->scope, "steps");
	json_t *entry = json_object();

	if (!entry || json_object_set(entry, "outputs", outputs) < 0 ||
	    json_object_set_new(steps, s->id, entry) < 0)
		return rh_error_set(RH_ENOMEM, "out of memory");
	if (s->type->exports_to) {
		json_t *ns = json_object_get(d->scope, s->type->exports_to);

		if (!ns) {
			ns = json_object();
			if (!ns || json_object_set_new(d->scope, s->type->exports_to, ns) < 0)
				return rh_error_set(RH_ENOMEM, "out of memory");
		}
		if (json_object_update(ns, outputs) < 0)
			return rh_error_set(RH_ENOMEM, "out of memory");
	}
	return 0;
}

/* Handles a finished attempt thread of step i. Under the lock. */
static void collect(struct engine *e, size_t i)
{
	struct rh_drill *d = e->d;
	struct step_rt *rt = &e->rt[i];
	struct rh_step_result *r = &d->results[i];
	bool final = is_final_phase(&d->rb->steps[i]);
	struct rh_cancel *cancel = step_cancel(e, i);
	char msg[2200];

	pthread_join(rt->tid, NULL);
	rt->has_thread = false;
	e->running--;
	json_decref(r->outputs);
	r->outputs = json_incref(rt->outputs);

	if (rt->rc == 0) {
		if (publish_outputs(e, i, rt->outputs) < 0)
			finish_step(e, i, RH_STEP_FAILED, rh_error_last());
		else
			finish_step(e, i, RH_STEP_OK, NULL);
		return;
	}
	if (rt->retry && !(final ? e->aborted : (e->failing || e->interrupted))) {
		start_attempt(e, i);
		return;
	}
	if (rt->cancelled_in_backoff) {
		snprintf(msg, sizeof(msg), "cancelled while waiting to retry (attempt %u: %s)",
			 rt->attempt, rt->err ? rt->err : "");
		finish_step(e, i, RH_STEP_CANCELLED, msg);
	} else if (rt->rc == RH_ECANCELLED || rh_cancel_is_fired(cancel) || rt->retry) {
		finish_step(e, i, RH_STEP_CANCELLED, rt->err);
	} else if (rt->rc == RH_ETIMEOUT) {
		finish_step(e, i, RH_STEP_TIMED_OUT, rt->err);
	} else {
		finish_step(e, i, RH_STEP_FAILED, rt->err);
	}
}

/* ---- the scheduler ------------------------------------------------------ */

/* A ready step waits while max_parallel attempts run (each is a thread);
 * the first time, the timeline says so. Under the lock. */
static bool held_back(struct engine *e, size_t i)
{
	if (e->running < e->cap)
		return false;
	if (!e->rt[i].queued) {
		e->rt[i].queued = true;
		emit(e, RH_EVENT_STEP_QUEUED, i, 0, 0, NULL);
	}
	return true;
}

/* Decides what a pending main-phase step does now. Under the lock. */
static void schedule_main(struct engine *e, size_t i)
{
	struct rh_drill *d = e->d;
	const struct rh_step *s = &d->rb->steps[i];
	bool ready = true;
	char msg[256];

	/* a dependency that did not succeed is the most useful reason to give */
	for (size_t k = 0; k < s->n_after; k++) {
		size_t dep = s->after[k];
		enum rh_step_status st = d->results[dep].status;

		if (is_final_phase(&d->rb->steps[dep])) {
			snprintf(msg, sizeof(msg), "depends on '%s', which runs in the final phase",
				 d->rb->steps[dep].id);
			finish_step(e, i, RH_STEP_SKIPPED, msg);
			return;
		}
		if (!status_final(st)) {
			ready = false;
		} else if (st != RH_STEP_OK) {
			snprintf(msg, sizeof(msg), "dependency '%s' %s", d->rb->steps[dep].id,
				 rh_step_status_name(st));
			finish_step(e, i, RH_STEP_SKIPPED, msg);
			return;
		}
	}
	if (e->interrupted || e->failing) {
		finish_step(e, i, RH_STEP_SKIPPED,
			    e->interrupted ? "not started: the drill was "
					     "interrupted"
					   : "not started: the drill "
					     "failed");
		return;
	}
	if (ready && !held_back(e, i))
		start_attempt(e, i);
}

static void schedule_final(struct engine *e, size_t i)
{
	struct rh_drill *d = e->d;
	const struct rh_step *s = &d->rb->steps[i];

	if (e->aborted) {
		finish_step(e, i, RH_STEP_SKIPPED, "not started: the drill was aborted");
		return;
	}
	if (s->when == RH_WHEN_ON_FAILURE && !(e->failing || e->interrupted)) {
		finish_step(e, i, RH_STEP_SKIPPED, "not needed: the drill did not fail");
		return;
	}
	for (size_t k = 0; k < s->n_after; k++)
		if (!status_final(d->results[s->after[k]].status))
			return;
	if (!held_back(e, i))
		start_attempt(e, i);
}

/* Fires the token of every running attempt whose deadline passed or whose
 * phase was cancelled, and gives up on one that has not returned within the
 * grace since: a library call stuck in recv() must not keep the drill, its
 * teardown, its record and its journal entry from happening. The thread is
 * detached and left to finish (or not) on its own. Under the lock. */
static void watch_attempts(struct engine *e, double now)
{
	struct rh_drill *d = e->d;
	char msg[512];

	for (size_t i = 0; i < d->rb->n_steps; i++) {
		struct step_rt *rt = &e->rt[i];
		double grace;

		if (!rt->has_thread || rt->done)
			continue;
		if (rt->fired_at == 0) {
			if (now >= rt->deadline + RH_DEADLINE_SLACK_S) {
				rt->deadline_hit = true;
				rt->fired_at = now;
				rh_cancel_fire(&rt->token);
			} else if (rh_cancel_is_fired(step_cancel(e, i))) {
				rt->fired_at = now;
				rh_cancel_fire(&rt->token);
			}
			continue;
		}
		grace = e->aborted ? RH_ABORT_GRACE_S : e->grace_s;
		if (now < rt->fired_at + grace)
			continue;
		pthread_detach(rt->tid);
		rt->has_thread = false;
		e->running--; /* its slot goes to the steps still to run (teardown) */
		rt->abandoned = true;
		rt->end = now;
		d->n_abandoned++;
		if (rt->deadline_hit)
			snprintf(msg, sizeof(msg),
				 "timed out after %g s and did not stop within %g s: abandoned "
				 "(its work may still be running in the background)",
				 rt->timeout_s, grace);
		else
			snprintf(msg, sizeof(msg),
				 "cancelled and did not stop within %g s: abandoned (its work "
				 "may still be running in the background)",
				 grace);
		finish_step(e, i, rt->deadline_hit ? RH_STEP_TIMED_OUT : RH_STEP_CANCELLED, msg);
	}
}

/* The next moment watch_attempts has something to do; 0 when none. */
static double next_watch(const struct engine *e)
{
	double next = 0;

	for (size_t i = 0; i < e->d->rb->n_steps; i++) {
		const struct step_rt *rt = &e->rt[i];
		double t;

		if (!rt->has_thread || rt->done)
			continue;
		t = rt->fired_at == 0 ? rt->deadline + RH_DEADLINE_SLACK_S
				      : rt->fired_at + (e->aborted ? RH_ABORT_GRACE_S : e->grace_s);
		if (next == 0 || t < next)
			next = t;
	}
	return next;
}

/* One pass over every step. Returns true when every step is final and no
 * thread is left. Under the lock. */
static bool schedule(struct engine *e)
{
	struct rh_drill *d = e->d;
	const struct rh_runbook *rb = d->rb;
	bool all_final = true, main_final = true;

	if (!e->main_done && !e->interrupted && rh_cancel_is_fired(&d->interrupt)) {
		e->interrupted = true;
		rh_cancel_fire(&e->main_cancel);
		emit(e, RH_EVENT_INTERRUPTED, 0, 0, 0, "interrupted");
	}
	if (!e->aborted && rh_cancel_is_fired(&d->hard_stop))
		e->aborted = true;

	for (size_t i = 0; i < rb->n_steps; i++)
		if (e->rt[i].has_thread && e->rt[i].done)
			collect(e, i);
	watch_attempts(e, rh_clock_mono());

	/* Topological order, so a skip propagates down a chain in one pass. */
	for (size_t k = 0; k < rb->n_steps; k++) {
		size_t i = rb->order ? rb->order[k] : k;

		if (!is_final_phase(&rb->steps[i]) && d->results[i].status == RH_STEP_PENDING)
			schedule_main(e, i);
	}
	for (size_t i = 0; i < rb->n_steps; i++)
		if (!is_final_phase(&rb->steps[i]) && !status_final(d->results[i].status))
			main_final = false;
	if (main_final)
		e->main_done = true;
	if (e->main_done) {
		for (size_t k = 0; k < rb->n_steps; k++) {
			size_t i = rb->order ? rb->order[k] : k;

			if (is_final_phase(&rb->steps[i]) &&
			    d->results[i].status == RH_STEP_PENDING)
				schedule_final(e, i);
		}
	}
	for (size_t i = 0; i < rb->n_steps; i++)
		if (!status_final(d->results[i].status) || e->rt[i].has_thread)
			all_final = false;
	return all_final;
}

/* Wakes the scheduler when rh_engine_interrupt/abort fire: they must be
 * async-signal-safe, so they cannot take the lock or signal a condvar. */
static void *watcher_thread(void *arg)
{
	struct engine *e = arg;
	struct rh_drill *d = e->d;
	bool saw_interrupt = false, saw_abort = false;

	for (;;) {
		struct pollfd pfd[3] = {
		    {.fd = rh_cancel_fd(&e->watch_stop), .events = POLLIN},
		    {.fd = saw_interrupt ? -1 : rh_cancel_fd(&d->interrupt), .events = POLLIN},
		    {.fd = saw_abort ? -1 : rh_cancel_fd(&d->hard_stop), .events = POLLIN},
		};

		if (poll(pfd, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents)
			break;
		if (pfd[1].revents)
			saw_interrupt = true;
		if (pfd[2].revents)
			saw_abort = true;
		pthread_mutex_lock(&d->lock);
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->lock);
	}
	return NULL;
}

/* ---- verdict ------------------------------------------------------------ */

static int compute_verdict(struct engine *e)
{
	struct rh_drill *d = e->d;
	const struct rh_runbook *rb = d->rb;
	bool has_restorer = false, all_main_ok = true;
	long best = -1, last = -1;
	size_t *path = NULL, n = 0;
	double steps_s = 0;
	int rc = 0;

	for (size_t i = 0; i < rb->n_steps; i++) {
		const struct rh_step_result *r = &d->results[i];

		if (is_final_phase(&rb->steps[i])) {
			if (r->attempts > 0 && r->status != RH_STEP_OK)
				d->final_phase_failed = true;
			if (rb->steps[i].type == &rh_step_teardown && r->attempts > 0 &&
			    r->status != RH_STEP_OK)
				d->teardown_incomplete = true;
			continue;
		}
		if (r->status != RH_STEP_OK)
			all_main_ok = false;
		else if (last < 0 || r->end_s > d->results[last].end_s)
			last = (long)i;
		if (rb->steps[i].restores_service) {
			has_restorer = true;
			if (r->status == RH_STEP_OK &&
			    (best < 0 || r->end_s < d->results[best].end_s))
				best = (long)i;
		}
	}
	if (!has_restorer && all_main_ok)
		best = last;
	d->restored = best >= 0;
	d->rto_step = best;
	if (d->restored) {
		size_t cur = (size_t)best;

		d->rto_s = d->results[best].end_s;
		path = malloc(rb->n_steps * sizeof(*path));
		if (!path) {
			rc = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
		/* walk back through the dependency that finished last */
		for (;;) {
			const struct rh_step *s = &rb->steps[cur];
			long next = -1;

			path[n++] = cur;
			steps_s += d->results[cur].end_s - d->results[cur].start_s;
			for (size_t k = 0; k < s->n_after; k++) {
				size_t dep = s->after[k];

				if (d->results[dep].end_s < 0)
					continue;
				if (next < 0 || d->results[dep].end_s > d->results[next].end_s)
					next = (long)dep;
			}
			if (next < 0 || n == rb->n_steps)
				break;
			cur = (size_t)next;
		}
		for (size_t a = 0, b = n - 1; a < b; a++, b--) {
			size_t t = path[a];

			path[a] = path[b];
			path[b] = t;
		}
		d->critical_path = path;
		d->n_critical = n;
		path = NULL;
		d->overhead_s = d->rto_s - steps_s;
		if (d->overhead_s < 0)
			d->overhead_s = 0;
	}
	if (e->interrupted)
		d->verdict = RH_VERDICT_INTERRUPTED;
	else if (!d->restored || !all_main_ok)
		d->verdict = RH_VERDICT_FAILED;
	else if (rb->rto_target_s > 0 && d->rto_s > rb->rto_target_s)
		d->verdict = RH_VERDICT_MISSED;
	else
		d->verdict = RH_VERDICT_MET;
done:
	free(path);
	return rc;
}

/* Sleeps on d->cond (CLOCK_MONOTONIC, see rh_drill_init) until `until`
 * (rh_clock_mono seconds; 0: no limit) or a signal. Under the lock. */
static void wait_until(struct rh_drill *d, double until)
{
	struct timespec ts;
	double now = rh_clock_mono(), left;

	if (until <= 0) {
		pthread_cond_wait(&d->cond, &d->lock);
		return;
	}
	left = until - now;
	if (left <= 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	left += 0.001; /* past the moment, not just before it */
	ts.tv_sec += (time_t)left;
	ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&d->cond, &d->lock, &ts);
}

int rh_engine_run(struct rh_drill *d, const struct rh_engine_opts *opts)
{
	struct engine *e = calloc(1, sizeof(*e));
	pthread_t watcher;
	bool watching = false;
	size_t n = d->rb->n_steps;
	int rc = 0;

	if (!e)
		return rh_error_set(RH_ENOMEM, "out of memory");
	e->d = d;
	e->opts = opts;
	e->cap = d->rb->max_parallel ? d->rb->max_parallel : RH_MAX_PARALLEL_DEFAULT;
	e->grace_s = opts && opts->version >= 2 && opts->abandon_grace_s > 0 ? opts->abandon_grace_s
									     : RH_ABANDON_GRACE_S;
	e->main_cancel.fds[0] = e->main_cancel.fds[1] = -1;
	e->watch_stop.fds[0] = e->watch_stop.fds[1] = -1;
	e->rt = calloc(n ? n : 1, sizeof(*e->rt));
	if (!e->rt) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		e->rt[i].e = e;
		e->rt[i].idx = i;
		e->rt[i].token.fds[0] = e->rt[i].token.fds[1] = -1;
	}
	if ((rc = rh_cancel_init(&e->main_cancel)) < 0 || (rc = rh_cancel_init(&e->watch_stop)) < 0)
		goto done;

	/* T0: the primary is declared lost. */
	d->t0_wall = rh_clock_wall();
	d->t0_mono = rh_clock_mono();

	if (pthread_create(&watcher, NULL, watcher_thread, e) != 0) {
		rc = rh_error_set(RH_ERROR, "cannot start the engine's watcher thread");
		goto done;
	}
	watching = true;

	pthread_mutex_lock(&d->lock);
	while (!schedule(e))
		wait_until(d, next_watch(e));
	rc = compute_verdict(e);
	pthread_mutex_unlock(&d->lock);
done:
	if (watching) {
		rh_cancel_fire(&e->watch_stop);
		pthread_join(watcher, NULL);
	}
	rh_cancel_clear(&e->watch_stop);
	if (d->n_abandoned > 0) {
		/* see engine_graveyard: what an abandoned thread may touch stays */
		pthread_mutex_lock(&graveyard_lock);
		e->next_abandoned = engine_graveyard;
		engine_graveyard = e;
		pthread_mutex_unlock(&graveyard_lock);
		return rc;
	}
	if (e->rt)
		for (size_t i = 0; i < n; i++)
			clear_attempt(&e->rt[i]);
	free(e->rt);
	rh_cancel_clear(&e->main_cancel);
	free(e);
	return rc;
}

/* ---- names -------------------------------------------------------------- */

const char *rh_step_status_name(enum rh_step_status s)
{
	switch (s) {
	case RH_STEP_PENDING:
		return "pending";
	case RH_STEP_RUNNING:
		return "running";
	case RH_STEP_OK:
		return "ok";
	case RH_STEP_FAILED:
		return "failed";
	case RH_STEP_TIMED_OUT:
		return "timed_out";
	case RH_STEP_SKIPPED:
		return "skipped";
	case RH_STEP_CANCELLED:
		return "cancelled";
	}
	return "unknown";
}

const char *rh_verdict_name(enum rh_verdict v)
{
	switch (v) {
	case RH_VERDICT_MET:
		return "met";
	case RH_VERDICT_MISSED:
		return "missed";
	case RH_VERDICT_FAILED:
		return "failed";
	case RH_VERDICT_INTERRUPTED:
		return "interrupted";
	case RH_VERDICT_ABORTED:
		return "aborted";
	}
	return "unknown";
}

int rh_verdict_exit_code(enum rh_verdict v)
{
	switch (v) {
	case RH_VERDICT_MET:
		return 0;
	case RH_VERDICT_MISSED:
		return 1;
	case RH_VERDICT_FAILED:
		return 3;
	case RH_VERDICT_INTERRUPTED:
		return 130;
	case RH_VERDICT_ABORTED:
		return 2;
	}
	return 3;
}

int rh_drill_exit_code(const struct rh_drill *d)
{
	return d->teardown_incomplete ? 4 : rh_verdict_exit_code(d->verdict);
}

void rh_drill_abort(struct rh_drill *d)
{
	d->t0_wall = rh_clock_wall();
	d->verdict = RH_VERDICT_ABORTED;
	d->restored = false;
}
