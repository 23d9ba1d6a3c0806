/*
 * provider.h - the provider adapter contract.
 *
 * One const struct rh_provider_ops per kind of target (local, ssh, aws,
 * alibaba, nebius), all compiled in and listed in rh_providers[] (no dlopen:
 * the tool must work when the primary region is gone). The engine and step
 * types reach an adapter only through this table.
 *
 * Lifecycle per drill: rh_provider_ctx_new (when the runbook has a target),
 * then the provider steps call provision, sink_open, deploy, teardown in
 * whatever order the runbook's DAG gives, then rh_provider_ctx_free.
 *
 * Hooks. Required: provision, sink_open, deploy, teardown. Optional (NULL
 * means "unsupported" and the caller says so): validate, render, describe.
 * Every state-changing hook is idempotent: the engine retries after
 * timeouts, so provision twice reuses what the first made, and teardown
 * must succeed after a partial provision, after a failed deploy, twice, or
 * with nothing provisioned at all.
 *
 * Hooks run in step threads. They must respect ctx->deadline and return
 * RH_ECANCELLED soon after ctx->cancel fires, with rh_error_last() set on
 * every failure. They never print.
 */
#ifndef RH_PROVIDER_H
#define RH_PROVIDER_H

#include "diag.h"

#include <jansson.h>
#include <pthread.h>

struct rh_runbook;
struct rh_step_ctx;
struct rh_sink;

struct rh_provider_ctx {
	const struct rh_provider_ops *ops;
	const json_t *target;   /* borrowed: the runbook's target object */
	const char *drill_id;   /* borrowed */
	const char *state_dir;  /* borrowed */
	const char *drill_dir;  /* borrowed: logs go under here */
	json_t *outputs;        /* owned: what provision learnt (host, port, ...) */
	void *priv;             /* the adapter's own state; freed by ops->free */
	pthread_mutex_t lock;   /* hooks may run concurrently (sync during provision) */
	/* The runbook (borrowed, may be NULL): adapters that render a stack
	 * (the cloud ones) read its stack and model. Set by whoever creates
	 * the context when it has one (the engine, `rehydra render`). */
	const struct rh_runbook *rb;
};

struct rh_provider_ops {
	unsigned version;
	const char *name;
	const char *summary;
	/* Keys the runbook's target object may have besides provider/region. */
	const char *const *target_keys;
	/* Keys provision adds to ${target.*}; referencing one requires a
	 * provision step among the using step's dependencies. */
	const char *const *output_keys;

	int (*validate)(const json_t *target, const char *pointer, struct rh_diags *d);
	/* Optional: checks, before T0 and before anything is created, that this
	 * machine can drive the target at all (e.g. a terraform binary exists).
	 * A failure is bad input: the drill exits 2 with the message. */
	int (*preflight)(const json_t *target);
	int (*provision)(struct rh_provider_ctx *p, struct rh_step_ctx *s);
	/* *out: a new sink where this target's artifacts go (after provision). */
	int (*sink_open)(struct rh_sink **out, struct rh_provider_ctx *p, struct rh_step_ctx *s);
	/* Starts `command` (argv array, expanded) with `env` (object, may be NULL). */
	int (*deploy)(struct rh_provider_ctx *p, struct rh_step_ctx *s, const json_t *command,
		      const json_t *env);
	int (*teardown)(struct rh_provider_ctx *p, struct rh_step_ctx *s);
	int (*render)(struct rh_provider_ctx *p, const char *out_dir);
	int (*describe)(json_t **out);
	void (*free)(struct rh_provider_ctx *p);
};
#define RH_PROVIDER_OPS_VERSION 1

/* NULL-terminated table of all adapters. */
extern const struct rh_provider_ops *const rh_providers[];

const struct rh_provider_ops *rh_provider_find(const char *name);

/* *out is new. Returns 0 or RH_ENOMEM. */
int rh_provider_ctx_new(struct rh_provider_ctx **out, const struct rh_provider_ops *ops,
			const json_t *target, const char *drill_id, const char *state_dir,
			const char *drill_dir);
void rh_provider_ctx_free(struct rh_provider_ctx *p);

extern const struct rh_provider_ops rh_provider_local;
extern const struct rh_provider_ops rh_provider_ssh;
extern const struct rh_provider_ops rh_provider_aws;
extern const struct rh_provider_ops rh_provider_alibaba;
extern const struct rh_provider_ops rh_provider_nebius;

#endif
