/*
 * provider.h - the provider adapter contract.
 *
 * One const struct rh_provider_ops per kind of target (local, ssh, aws,
 * alibaba, nebius), all compiled in and listed in rh_providers[] (no dlopen:
 * the tool must work when the primary region is gone). The orchestrator
 * reaches an adapter only through this table, and an adapter sees nothing
 * of the orchestrator: no runbook, drill, step or scope structure, only the
 * plain values below. This header and the layers below it (base, artifacts)
 * are all an adapter may include.
 *
 * Order of calls, per drill or render:
 *   1. rh_provider_ctx_new, then the creator fills ctx->runbook and
 *      ctx->expander (the orchestrator's rh_drill_provider_new does both);
 *   2. provision, sink_open, deploy, teardown, each with a fresh
 *      struct rh_provider_call, in whatever order the runbook's DAG gives
 *      (teardown may come without provision, after a failed one, or twice);
 *      or, for `rehydra render`, render alone;
 *   3. rh_provider_ctx_free, which calls ops->free.
 * validate, preflight and describe need no context and may be called at any
 * time, from any thread.
 *
 * Hooks. Required: provision, sink_open, deploy, teardown. Optional (NULL
 * means "unsupported" and the caller says so): validate, preflight, render,
 * describe, free. Every state-changing hook is idempotent: the engine
 * retries after timeouts, so provision twice reuses what the first made,
 * and teardown must succeed after a partial provision, after a failed
 * deploy, twice, or with nothing provisioned at all. Hooks that get no
 * context get their own ops table as `self`, so one generic implementation
 * can serve several adapters that embed struct rh_provider_ops as their
 * first member (the clouds do, see cloud.h).
 *
 * Hooks run in step threads, possibly concurrently for one context (a sync
 * during a provision): they serialise on ctx->lock. They must respect
 * call->deadline and return RH_ECANCELLED soon after call->cancel fires,
 * with rh_error_last() set on every failure. They never print.
 *
 * Ownership. Everything a hook is given is borrowed for the duration of the
 * call (the call struct and what it points to) or of the context (the ctx's
 * strings, target, runbook values and expander, which the creator keeps
 * alive until rh_provider_ctx_free). What a hook learns goes into
 * ctx->outputs (owned by the context, read by the orchestrator under
 * ctx->lock) and, for the step's record, into call->outputs.
 *
 * Extending. Both structs carry a version. A new optional hook or call
 * field is added at the end with a bumped version and a NULL / zero default
 * meaning "as before", so adapters and callers that do not know it keep
 * working; a caller checks ops->version before calling a hook newer than
 * version 2.
 */
#ifndef RH_PROVIDER_H
#define RH_PROVIDER_H

#include "cancel.h"
#include "diag.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>

struct rh_sink;
struct rh_model_version;

/* What an adapter may know of the runbook: plain values, borrowed, valid
 * for the life of the context. Any of them may be NULL (a test, a render
 * without a runbook). */
struct rh_provider_runbook {
	const char *name;    /* the runbook's name (cloud resource labels) */
	const char *dir;     /* its directory: relative target paths resolve here */
	const json_t *stack; /* its "stack" object, unexpanded */
};

/* Render-time expansion, owned by the orchestrator. expand() sets *out to
 * a new copy of `value` (any JSON) with every ${...} in its strings
 * expanded against the namespaces known before anything runs (runbook,
 * vars, env, drill, model name/version/registry/commit, the raw target,
 * rehydra with an empty bindir, steps empty). Each namespace of `bind`
 * (an object of objects, may be NULL) is merged over the scope's one, key
 * by key: that is how a cloud adapter says ${target.host} is 0.0.0.0 on
 * the instance. Returns 0, RH_ENOTFOUND for an unknown reference, another
 * negative code otherwise, with the message set. Thread-safe. */
struct rh_provider_expander {
	int (*expand)(void *user, json_t **out, const json_t *value, const json_t *bind);
	void *user;		       /* owned: freed by free_user at ctx free */
	void (*free_user)(void *user); /* may be NULL */
};

struct rh_provider_ctx {
	const struct rh_provider_ops *ops;
	const json_t *target;		    /* borrowed: the runbook's target object, unexpanded */
	const char *drill_id;		    /* borrowed */
	const char *state_dir;		    /* borrowed, may be NULL (render) */
	const char *drill_dir;		    /* borrowed, may be NULL (render): logs go under here */
	struct rh_provider_runbook runbook; /* set by the creator */
	struct rh_provider_expander expander; /* set by the creator; expand may be NULL */
	json_t *outputs;		      /* owned: what provision learnt (host, port, ...) */
	void *priv;			      /* the adapter's own state; freed by ops->free */
	pthread_mutex_t lock; /* hooks may run concurrently (sync during provision) */
	/* Called by an adapter before it creates something on this machine that
	 * must not outlive a crash unnoticed (kind "workspace": a directory), so
	 * the drill's intent names it (orchestrator/intent.h). May be NULL. */
	void (*note_resource)(void *user, const char *kind, const char *path);
	void *note_user;
};

/* One hook call from a step: built by the orchestrator for each attempt. */
struct rh_provider_call {
	unsigned version;	  /* RH_PROVIDER_CALL_VERSION */
	double deadline;	  /* absolute rh_clock_mono() seconds; 0: none */
	struct rh_cancel *cancel; /* may be NULL */
	/* The target with ${...} expanded against the drill's scope as it is
	 * now (vars, env, earlier steps' outputs). NULL: use ctx->target. */
	const json_t *target;
	/* "<drill dir>/steps/<id>[.<attempt>]": logs go to this path plus a
	 * suffix (".stdout", ".terraform-apply.stderr"). May be NULL. */
	const char *log_prefix;
	/* The step's outputs object, for the record; may be NULL. */
	json_t *outputs;
	/* teardown: seconds between SIGTERM and SIGKILL (the step's grace_s);
	 * negative: the adapter's default. */
	double grace_s;
	/* Progress text for long calls (terraform apply); may be NULL. */
	void (*progress)(void *user, const char *text);
	void *progress_user;
};
#define RH_PROVIDER_CALL_VERSION 1
#define RH_PROVIDER_CALL_INIT                                                                      \
	{                                                                                          \
		RH_PROVIDER_CALL_VERSION, 0, NULL, NULL, NULL, NULL, -1.0, NULL, NULL              \
	}

struct rh_provider_ops {
	unsigned version; /* RH_PROVIDER_OPS_VERSION */
	const char *name;
	const char *summary;
	/* Keys the runbook's target object may have besides provider/region. */
	const char *const *target_keys;
	/* Keys provision adds to ${target.*}; referencing one requires a
	 * provision step among the using step's dependencies. */
	const char *const *output_keys;

	/* Optional: checks the (unexpanded) target, reporting through `d`
	 * against `pointer` (e.g. "/target"). Returns 0 (problems go to d) or
	 * RH_ENOMEM. */
	int (*validate)(const struct rh_provider_ops *self, const json_t *target,
			const char *pointer, struct rh_diags *d);
	/* Optional: checks, before T0 and before anything is created, that this
	 * machine can drive the target at all (e.g. a terraform binary exists).
	 * A failure is bad input: the drill exits 2 with the message. */
	int (*preflight)(const struct rh_provider_ops *self, const json_t *target);
	/* Acquires the target; fills ctx->outputs (and call->outputs) with
	 * output_keys. */
	int (*provision)(struct rh_provider_ctx *p, const struct rh_provider_call *c);
	/* *out: a new sink where this target's artifacts go (after provision). */
	int (*sink_open)(struct rh_sink **out, struct rh_provider_ctx *p,
			 const struct rh_provider_call *c);
	/* Starts `command` (argv array, expanded) with `env` (object, may be
	 * NULL); both borrowed. */
	int (*deploy)(struct rh_provider_ctx *p, const struct rh_provider_call *c,
		      const json_t *command, const json_t *env);
	int (*teardown)(struct rh_provider_ctx *p, const struct rh_provider_call *c);
	/* Optional: writes what provision would create into out_dir, creating
	 * nothing else (`rehydra render`). Uses ctx->runbook and ctx->expander. */
	int (*render)(struct rh_provider_ctx *p, const char *out_dir);
	/* Optional: *out is a new object describing the adapter's offer (the
	 * clouds' catalog). */
	int (*describe)(const struct rh_provider_ops *self, json_t **out);
	/* Optional: frees ctx->priv. */
	void (*free)(struct rh_provider_ctx *p);

	/* Optional (version 3; NULL: no such checks): the pre-flight checks
	 * that need the drill's context, run before T0 with call->target
	 * expanded against the render scope. It creates nothing a teardown
	 * would have to remove (local files under ctx->drill_dir are fine:
	 * terraform init's working dir). Appends one object {"check": NAME,
	 * "ok": true|false, "message": TEXT, "next": WHAT TO DO (failures)}
	 * to `checks` per check it ran, stopping at the first failure.
	 * `plan`: also show what provision would create (`terraform plan`),
	 * as "message" of a check named "plan". What it learns of the tools
	 * that will run (their versions, the catalog's date) it may add to
	 * call->outputs (when set): that goes into the record's provenance.
	 * Returns 0 when every check
	 * passed, else a negative code with the failed check's message set. */
	int (*preflight_ctx)(struct rh_provider_ctx *p, const struct rh_provider_call *c,
			     json_t *checks, bool plan);

	/* Warm standby (version 4; both NULL: none, the drill syncs into its
	 * workspace). A target keeps a standing copy of each model (`model`,
	 * a registry model name) that outlives drills: teardown never
	 * removes it, so a drill after `rehydra registry sync --to RUNBOOK`
	 * sends only what changed.
	 *
	 * standby_open: *out is a new sink at the standing location of `model`.
	 * After provision it is the provisioned target's (index 0; other
	 * indexes RH_ENOTFOUND; RH_ENOTFOUND at index 0 too when this target
	 * was provisioned without one, e.g. a cloud whose standby bucket was
	 * never pre-staged: the drill then syncs cold, through sink_open). Before provision
	 * (pre-staging) it is the index-th place the target may land on (ssh: each inventory host
	 * matching the target), RH_ENOTFOUND past the last; *where (new) names
	 * it for messages (a host name, "local"). Creates only the standby's
	 * own directories. Thread-safe like every hook.
	 *
	 * standby_use: gives the provisioned workspace the files of `v` (and
	 * its manifest.json) from the standby at `standby` (the sink's
	 * location) without sending them again: reflinks or hard links where
	 * the filesystem allows, a copy on the target otherwise. Checks every
	 * file against the manifest's sha256 where it cannot trust the
	 * standby's own bookkeeping. Sets *path (new) to the directory the
	 * stack reads (${model.path}) and adds to c->outputs "workspace_files"
	 * ("reflink", "hardlink" or "copy") and "verified_files". Idempotent:
	 * a retry replaces what an earlier attempt linked. */
	int (*standby_open)(struct rh_sink **out, char **where, struct rh_provider_ctx *p,
			    const struct rh_provider_call *c, const char *model, size_t index);
	int (*standby_use)(char **path, struct rh_provider_ctx *p, const struct rh_provider_call *c,
			   const struct rh_model_version *v, const char *standby);

	/* Optional (version 5; NULL: the target's standby is removed by hand):
	 * removes every standing copy standby_open made for this target,
	 * before or without a provision (`rehydra registry unstage`): local:
	 * the state dir's standby directory; a cloud: destroys the standby
	 * bucket through its own Terraform state. *where (new) names what was
	 * removed. RH_ENOTFOUND when there is none. */
	int (*standby_remove)(struct rh_provider_ctx *p, const struct rh_provider_call *c,
			      char **where);
};
#define RH_PROVIDER_OPS_VERSION 5

/* Appends {"check": name, "ok": ok, "message": message, "next": next} to
 * `checks` (next may be NULL). Returns 0 or RH_ENOMEM. */
int rh_provider_check_add(json_t *checks, const char *name, bool ok, const char *message,
			  const char *next);

/* Checks that `model` can name a standby directory (letters, digits, '.',
 * '_' and '-'; not "." or ".."): 0, or RH_EINVAL saying so. */
int rh_provider_standby_name_check(const char *model);

/* NULL-terminated table of all adapters. */
extern const struct rh_provider_ops *const rh_providers[];

const struct rh_provider_ops *rh_provider_find(const char *name);

/* *out is new, with ctx->runbook and ctx->expander empty. Returns 0 or
 * RH_ENOMEM. The strings and target are borrowed (see above). */
int rh_provider_ctx_new(struct rh_provider_ctx **out, const struct rh_provider_ops *ops,
			const json_t *target, const char *drill_id, const char *state_dir,
			const char *drill_dir);
void rh_provider_ctx_free(struct rh_provider_ctx *p);

/* Calls ctx->expander.expand (see struct rh_provider_expander); fails with
 * RH_EUNSUPPORTED when the creator set none. */
int rh_provider_expand(struct rh_provider_ctx *p, json_t **out, const json_t *value,
		       const json_t *bind);

/* call->target when set, else ctx->target. */
const json_t *rh_provider_target(const struct rh_provider_ctx *p, const struct rh_provider_call *c);

/* The adapters with an ops table of their own; the clouds' tables are in
 * their struct rh_cloud_def (cloud.h). */
extern const struct rh_provider_ops rh_provider_local;
extern const struct rh_provider_ops rh_provider_ssh;

#endif
