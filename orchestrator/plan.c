/*
 * plan.c - what can be known about a drill before it runs (see plan.h).
 *
 * The critical path here is a worst case, not a forecast: it answers "if
 * every step used all its time, could we still meet the RTO target?". The
 * drill record holds the measured critical path.
 */
#include "plan.h"

#include "error.h"
#include "interp.h"
#include "steps.h"
#include "provider.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

double rh_plan_step_worst(const struct rh_step *s)
{
	double total = s->timeout_s;
	double delay = s->backoff.initial_s;

	for (unsigned r = 0; r < s->retries; r++) {
		double d = delay < s->backoff.max_s ? delay : s->backoff.max_s;

		total += d * (1.0 + s->backoff.jitter) + s->timeout_s;
		delay *= s->backoff.factor;
	}
	return total;
}

void rh_plan_path_release(struct rh_plan_path *p)
{
	free(p->steps);
	p->steps = NULL;
	p->n = 0;
}

int rh_plan_critical_path(struct rh_plan_path *out, const struct rh_runbook *rb)
{
	double *finish = NULL;
	long *via = NULL;
	long end = -1;
	size_t n = 0;
	int err = 0;

	memset(out, 0, sizeof(*out));
	finish = calloc(rb->n_steps, sizeof(*finish));
	via = calloc(rb->n_steps, sizeof(*via));
	if (!finish || !via) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	/* Longest path by worst-case time, in topological order. */
	for (size_t k = 0; k < rb->n_steps; k++) {
		size_t i = rb->order[k];
		const struct rh_step *s = &rb->steps[i];
		double start = 0;

		via[i] = -1;
		if (s->when != RH_WHEN_ON_SUCCESS)
			continue;
		for (size_t a = 0; a < s->n_after; a++) {
			size_t dep = s->after[a];

			if (via[i] < 0 || finish[dep] > start) {
				start = finish[dep];
				via[i] = (long)dep;
			}
		}
		finish[i] = start + rh_plan_step_worst(s);
		/* The first restores_service step in order ends the RTO; without
		 * one, the main phase's longest chain does. */
		if (end >= 0 && rb->steps[end].restores_service)
			continue;
		if (s->restores_service || end < 0 || finish[i] > finish[end])
			end = (long)i;
	}
	if (end < 0) {
		err = rh_error_set(RH_EINVAL, "the runbook has no main-phase step");
		goto done;
	}
	for (long i = end; i >= 0; i = via[i])
		n++;
	out->steps = calloc(n, sizeof(*out->steps));
	if (!out->steps) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	out->n = n;
	for (long i = end; i >= 0; i = via[i])
		out->steps[--n] = (size_t)i;
	out->worst_s = finish[end];
done:
	free(finish);
	free(via);
	return err;
}

/* Where a run-time value comes from: the first step (in order) of `type`. */
static const char *first_step_of(const struct rh_runbook *rb, const struct rh_step_type *type)
{
	for (size_t k = 0; k < rb->n_steps; k++)
		if (rb->steps[rb->order[k]].type == type)
			return rb->steps[rb->order[k]].id;
	return "?";
}

struct collect {
	const struct rh_runbook *rb;
	json_t *refs;
};

static int collect_one(const char *ref, void *user)
{
	struct collect *c = user;
	char why[256];

	if (json_object_get(c->refs, ref))
		return 0;
	if (strncmp(ref, "steps.", 6) == 0) {
		const char *id = ref + 6;
		const char *dot = strchr(id, '.');

		snprintf(why, sizeof(why), "set at run time by step '%.*s'",
			 (int)(dot ? (size_t)(dot - id) : strlen(id)), id);
	} else if (strncmp(ref, "target.", 7) == 0) {
		snprintf(why, sizeof(why), "set at run time by step '%s'",
			 first_step_of(c->rb, &rh_step_provision));
	} else if (strncmp(ref, "model.", 6) == 0) {
		snprintf(why, sizeof(why), "set at run time by step '%s'",
			 first_step_of(c->rb, &rh_step_sync_artifacts));
	} else if (strncmp(ref, "drill.", 6) == 0) {
		snprintf(why, sizeof(why), "set when the drill starts");
	} else {
		snprintf(why, sizeof(why), "unknown until the drill runs");
	}
	return json_object_set_new(c->refs, ref, json_string(why)) < 0 ? RH_ENOMEM : 0;
}

static int collect_json(struct collect *c, const json_t *v)
{
	const char *key;
	json_t *item;
	size_t i;
	int err = 0;

	if (json_is_string(v))
		return rh_interp_foreach_ref(json_string_value(v), collect_one, c);
	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, key,
				    item) if ((err = collect_json(c, item)) < 0) return err;
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, item) if ((err = collect_json(c, item)) < 0) return err;
	}
	return err;
}

int rh_plan_collect_refs(json_t **out, const struct rh_runbook *rb)
{
	struct collect c = {rb, json_object()};
	int err = 0;

	*out = NULL;
	if (!c.refs)
		return rh_error_set(RH_ENOMEM, "out of memory");
	if (rb->model.present &&
	    (err = rh_interp_foreach_ref(rb->model.registry, collect_one, &c)) < 0)
		goto done;
	if (rb->stack && (err = collect_json(&c, rb->stack)) < 0)
		goto done;
	for (size_t i = 0; i < rb->n_steps; i++)
		if ((err = collect_json(&c, rb->steps[i].spec)) < 0)
			goto done;
	*out = c.refs;
	c.refs = NULL;
done:
	json_decref(c.refs);
	return err;
}

int rh_plan_static_scope(json_t **out, const struct rh_runbook *rb)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	json_t *model = json_object();
	json_t *scope;

	if (n > 0) {
		char *slash;

		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash)
			*slash = '\0';
	} else {
		exe[0] = '\0';
	}
	if (rb->model.present) {
		json_object_set_new(model, "name", json_string(rb->model.name));
		json_object_set_new(model, "version", json_string(rb->model.version));
		if (rb->model.commit)
			json_object_set_new(model, "commit", json_string(rb->model.commit));
	}
	scope = json_pack("{s:{s:s, s:s, s:s, s:s}, s:O, s:O, s:o, s:{s:s, s:s}}", "runbook",
			  "name", rb->name, "dir", rb->dir, "path", rb->path, "sha256", rb->sha256,
			  "vars", rb->vars, "target", rb->target ? rb->target : json_null(),
			  "model", model, "rehydra", "bindir", exe, "version", RH_VERSION);
	if (!scope)
		return rh_error_set(RH_ENOMEM, "out of memory building the plan scope");
	/* target.* as the drill will see them before provision: "${vars.host}"
	 * means nothing to a reader; what it expands to does. Left as written
	 * when it needs a value only the drill has (env, steps). */
	if (rb->target) {
		json_t *x = NULL;

		if (!(rh_interp_expand_json(&x, rb->target, scope) == 0 && x)) {
			json_decref(x);
			x = json_deep_copy(rb->target);
		}
		rh_error_clear();
		/* what provision exports replaces the runbook's value of that key
		 * (an ssh target's "host" picks the inventory host; ${target.host}
		 * is then its serving address) */
		for (size_t k = 0;
		     x && rb->provider && rb->provider->output_keys && rb->provider->output_keys[k];
		     k++)
			if (strcmp(first_step_of(rb, &rh_step_provision), "?") != 0)
				json_object_del(x, rb->provider->output_keys[k]);
		if (x)
			json_object_set_new(scope, "target", x);
	}
	/* The registry as the drill will see it, when it needs no env value. */
	if (rb->model.present) {
		char *registry = NULL;

		if (rh_runbook_registry_resolve(&registry, rb, scope) == 0)
			json_object_set_new(model, "registry", json_string(registry));
		free(registry);
		rh_error_clear();
	}
	*out = scope;
	return 0;
}
