/*
 * steps.h - the step-type interface between the engine and what steps do.
 *
 * Each `do` value maps to one const struct rh_step_type in one static table
 * (rh_step_types). The engine knows steps only through it. A step type:
 *   - lists its own JSON keys (the parser rejects others, with suggestions);
 *   - validates its fields (validate: required, types, ranges) reporting
 *     through diags against JSON pointers; ${...} references are checked by
 *     the parser for every string in the step, not by the type;
 *   - runs one attempt (run). The engine handles retries, backoff, timeouts
 *     at the attempt level and the `when` conditions.
 *
 * run() contract: called in its own thread with a fresh ctx per attempt. It
 * must return by ctx->deadline (monotonic) or soon after, and promptly when
 * ctx->cancel fires (poll rh_cancel_fd next to its own fds). It returns 0 on
 * success, RH_ETIMEOUT when the deadline passed, RH_ECANCELLED when
 * cancelled, another negative code on failure, always with the reason in
 * rh_error_last(). It may put outputs into ctx->outputs (an object owned by
 * the engine). It never prints; it may report progress via ctx->progress.
 * It must kill and reap every process it started before returning.
 */
#ifndef RH_STEPS_H
#define RH_STEPS_H

#include "cancel.h"
#include "diag.h"
#include "runbook.h"

#include <jansson.h>

struct rh_drill;

struct rh_step_ctx {
	struct rh_drill *drill; /* the drill being run (runbook, dirs, provider) */
	const struct rh_step *step;
	size_t step_index;
	unsigned attempt;	  /* 1-based */
	double deadline;	  /* absolute rh_clock_mono() seconds */
	struct rh_cancel *cancel; /* this attempt's: deadline passed, interrupt, failure */
	json_t *spec;		  /* the step's object with ${...} expanded (borrowed) */
	json_t *outputs;	  /* object to fill (borrowed, owned by engine) */
	const char *log_prefix;	  /* e.g. "<drill dir>/steps/<id>.1": append ".stdout" */
	/* Progress for long steps (bytes moved, polls); may be NULL. */
	void (*progress)(void *user, const struct rh_step_ctx *ctx, const char *text);
	void *progress_user;
};

struct rh_step_type {
	const char *name;	  /* the `do` value */
	const char *summary;	  /* one line for `rehydra help runbook` */
	const char *const *keys;  /* own keys, NULL-terminated */
	double default_timeout_s; /* > 0: the only default for `timeout_s` */
	/* May be NULL. spec is unexpanded; pointer is e.g. "/steps/3". */
	int (*validate)(const json_t *spec, const char *pointer, struct rh_diags *d);
	int (*run)(struct rh_step_ctx *ctx);
	/* Provider steps need a `target` and may need `model` in the runbook. */
	bool needs_provider;
	bool needs_model;
	/* When set, a successful attempt's outputs are also merged into this
	 * scope namespace: provision -> "target" (host, port, ...),
	 * sync_artifacts -> "model" (sha256, path). */
	const char *exports_to;
};

/* http_probe's rules for text that goes into a request, shared by the
 * validation of literals and the check after ${...} expansion: a control
 * character (CR, LF, NUL..., and a tab unless tab_ok) is bad; a method is
 * one of GET, HEAD, POST, PUT, PATCH, DELETE. */
bool rh_http_text_bad(const char *s, bool tab_ok);
bool rh_http_method_ok(const char *m);

/* How many step types there are: tables indexed in rh_step_types order are
 * sized by it (and static_assert that they agree). */
#define RH_STEP_TYPE_COUNT 8

/* NULL-terminated table of all step types, in a fixed order. */
extern const struct rh_step_type *const rh_step_types[RH_STEP_TYPE_COUNT + 1];

/* Looks a `do` value up; NULL if unknown. */
const struct rh_step_type *rh_step_type_find(const char *name);

/* The step types, defined in step_*.c. */
extern const struct rh_step_type rh_step_exec;
extern const struct rh_step_type rh_step_http_probe;
extern const struct rh_step_type rh_step_load_probe;
extern const struct rh_step_type rh_step_wait;
extern const struct rh_step_type rh_step_provision;
extern const struct rh_step_type rh_step_sync_artifacts;
extern const struct rh_step_type rh_step_deploy;
extern const struct rh_step_type rh_step_teardown;

#endif
