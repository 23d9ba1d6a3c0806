/*
 * runbook.h - the runbook: what one drill recreates and how.
 *
 * rh_runbook_load() reads a file, parses it with jansson and validates all of
 * it before anything runs: structure, types, ranges, unknown keys (with a
 * "did you mean"), step ids, `after` targets, dependency cycles (with their
 * path), the step types' own fields, and every ${...} reference (namespace,
 * that vars/env names exist and are allowed, that a step only reads outputs
 * of steps it depends on). Every problem becomes one positioned diagnostic.
 *
 * Ownership: a struct rh_runbook owns everything it points to, including the
 * parsed document; step `spec` and `target` are borrowed views into it.
 *
 * Phases. Steps with when=on_success form the main phase. Steps with
 * when=always or when=on_failure form the final phase: they start only after
 * every main-phase step has finished, failed, been skipped or cancelled (like
 * `finally`), ordered among themselves by `after`. This is what lets a
 * teardown step without `after` still run last.
 */
#ifndef RH_RUNBOOK_H
#define RH_RUNBOOK_H

#include "diag.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define RH_RUNBOOK_FORMAT 1
#define RH_RUNBOOK_MAX_BYTES (16u * 1024 * 1024) /* file size limit */
#define RH_RUNBOOK_MAX_STRING (64u * 1024)	 /* any one string value */
#define RH_RUNBOOK_MAX_DEPTH 32			 /* nesting of containers */
#define RH_RUNBOOK_MAX_STEPS 10000
#define RH_STEP_ID_MAX 64 /* [A-Za-z0-9_-], first a letter */
#define RH_TIMEOUT_MAX_S (7.0 * 24 * 3600)
#define RH_RETRIES_MAX 100

struct rh_step_type;
struct rh_provider_ops;

enum rh_when { RH_WHEN_ON_SUCCESS, RH_WHEN_ON_FAILURE, RH_WHEN_ALWAYS };

struct rh_backoff {
	double initial_s; /* delay before the first retry; default 1 */
	double factor;	  /* multiplier per retry; default 2 */
	double max_s;	  /* cap; default 30 */
	double jitter;	  /* +/- fraction, 0..1; default 0.2 */
};

struct rh_step {
	char *id;
	const struct rh_step_type *type; /* from the `do` key */
	size_t *after;			 /* indices into runbook->steps */
	size_t n_after;
	double timeout_s; /* per attempt; default from the type */
	unsigned retries; /* extra attempts after the first; default 0 */
	struct rh_backoff backoff;
	enum rh_when when;
	bool restores_service;
	json_t *spec;  /* borrowed: the step's JSON object */
	char *pointer; /* "/steps/N", for messages */
};

struct rh_model_ref {
	bool present;
	char *registry; /* as written; relative paths are resolved against dir */
	char *name;
	char *version;
	char *commit; /* optional pin; NULL if absent */
};

#define RH_MAX_PARALLEL_DEFAULT 16
#define RH_MAX_PARALLEL_MAX 1024

struct rh_runbook {
	char *path;	 /* as given on the command line */
	char *dir;	 /* absolute directory containing the file */
	char sha256[65]; /* hex digest of the file's bytes */
	json_t *doc;	 /* the parsed document (owned) */

	char *name;
	char *description;   /* "" when absent */
	double rto_target_s; /* 0 = no target */
	/* Steps that may run at once ("max_parallel"; RH_MAX_PARALLEL_DEFAULT
	 * when absent): one thread each, so 200 parallel probes are not 200
	 * threads. Steps ready beyond it wait, with a "queued" event. */
	unsigned max_parallel;

	struct rh_model_ref model;
	json_t *target; /* borrowed object: provider, region, ... */
	const struct rh_provider_ops *provider;
	json_t *vars;	  /* owned object: runbook vars with overrides applied */
	json_t *stack;	  /* borrowed object {command: [...], env: {...}} or NULL */
	char **env_allow; /* names ${env.NAME} may read */
	size_t n_env_allow;

	struct rh_step *steps;
	size_t n_steps;
	size_t *order; /* a topological order of step indices (n_steps) */
};

/* One --var NAME=VALUE override. */
struct rh_var_override {
	const char *name;
	const char *value;
};

/* Loads and validates `path`. On success *out is new (free with
 * rh_runbook_free) and `diags` is untouched. On failure returns RH_EINVAL
 * (RH_EIO if unreadable, with rh_error_last set), *out is NULL and `diags`
 * holds every problem found, located and sorted. Overrides must name vars
 * the runbook declares. */
int rh_runbook_load(struct rh_runbook **out, const char *path,
		    const struct rh_var_override *overrides, size_t n_overrides,
		    struct rh_diags *diags);

/* What rh_runbook_load_opts changes before validating: --var overrides,
 * a target that replaces the file's (a rehearsal's chosen target) and an
 * RTO target that replaces the file's (> 0). Initialise with
 * RH_RUNBOOK_OPTS_INIT. Everything is borrowed. */
struct rh_runbook_opts {
	const struct rh_var_override *overrides;
	size_t n_overrides;
	const json_t *target;
	double rto_target_s;
};
#define RH_RUNBOOK_OPTS_INIT                                                                       \
	{                                                                                          \
		NULL, 0, NULL, 0                                                                   \
	}

/* rh_runbook_load with options; the same results. */
int rh_runbook_load_opts(struct rh_runbook **out, const char *path,
			 const struct rh_runbook_opts *opts, struct rh_diags *diags);

/* Like rh_runbook_load, for text already in memory (`len` bytes, need not
 * be NUL-terminated; borrowed). `path` names the runbook in the result and
 * its directory resolves relative registry paths; it is not read. The
 * fuzz target tests/fuzz/fuzz_runbook.c drives this. */
int rh_runbook_load_buf(struct rh_runbook **out, const char *path, const char *buf, size_t len,
			const struct rh_var_override *overrides, size_t n_overrides,
			struct rh_diags *diags);

/* rh_runbook_load_buf with options (rh_runbook_load_opts reads the file
 * and calls this); the same results. */
int rh_runbook_load_buf_opts(struct rh_runbook **out, const char *path, const char *buf, size_t len,
			     const struct rh_runbook_opts *opts, struct rh_diags *diags);

void rh_runbook_free(struct rh_runbook *rb);

/* Index of the step with `id`, or -1. */
long rh_runbook_step_index(const struct rh_runbook *rb, const char *id);

/* True if step `anc` is `idx` itself or reachable backwards from `idx`
 * through `after` edges. */
bool rh_runbook_depends_on(const struct rh_runbook *rb, size_t idx, size_t anc);

const char *rh_when_name(enum rh_when w);

/* Expands model.registry against `scope` (see interp.h) and, when the result
 * is a relative path, makes it relative to the runbook's directory. *out is
 * new. Returns 0 or the rh_interp_expand error. */
int rh_runbook_registry_resolve(char **out, const struct rh_runbook *rb, const json_t *scope);

#endif
