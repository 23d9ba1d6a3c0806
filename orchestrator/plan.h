/*
 * plan.h - static analysis of a validated runbook, for `rehydra plan`.
 */
#ifndef RH_PLAN_H
#define RH_PLAN_H

#include "runbook.h"

#include <jansson.h>

struct rh_plan_path {
	size_t *steps; /* step indices, first to last (owned) */
	size_t n;
	double worst_s; /* sum of the steps' worst-case times */
};

/* Worst-case time of one step: (retries + 1) timeouts plus every backoff
 * delay at its upper bound. */
double rh_plan_step_worst(const struct rh_step *s);

/* The longest main-phase chain, by worst-case time, that ends at the first
 * restores_service step (or, without one, at the main-phase step whose
 * chain is longest). Returns 0 or RH_ENOMEM / RH_EINVAL (no main phase). */
int rh_plan_critical_path(struct rh_plan_path *out, const struct rh_runbook *rb);
void rh_plan_path_release(struct rh_plan_path *p);

/* *out: a new object mapping every ${ref} used in the runbook to a string
 * saying where its value comes from ("set at run time by step 'sync'"). */
int rh_plan_collect_refs(json_t **out, const struct rh_runbook *rb);

/* *out: a new scope with what is known before a drill runs: runbook, vars,
 * target (static keys), model (static keys), rehydra. */
int rh_plan_static_scope(json_t **out, const struct rh_runbook *rb);

#endif
