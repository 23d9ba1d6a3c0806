/*
 * preflight.h - the checks a drill runs before T0, creating nothing.
 *
 * A setup mistake (a misspelt version, an unreachable registry, an unknown
 * host key, a terraform that cannot init) must not cost a cloud VM or
 * become a `failed` drill that drags a runbook's pass rate down: it is
 * found here, before the clock starts and before anything exists that a
 * teardown would have to remove. A failure makes the drill `aborted`.
 *
 * Order of calls: rh_drill_init, rh_preflight_run (before rh_engine_run),
 * then either rh_engine_run or, on failure, rh_drill_abort.
 */
#ifndef RH_PREFLIGHT_H
#define RH_PREFLIGHT_H

#include "engine.h"

#include <jansson.h>
#include <stdbool.h>

struct rh_preflight_opts {
	unsigned version;
	bool plan;	  /* also `terraform plan` for a cloud target (--preflight-only) */
	double timeout_s; /* for all checks together; 0: 300 s */
};
#define RH_PREFLIGHT_OPTS_VERSION 1
#define RH_PREFLIGHT_OPTS_INIT                                                                     \
	{                                                                                          \
		RH_PREFLIGHT_OPTS_VERSION, false, 0                                                \
	}

/* Runs the checks in order (registry, model version, LFS objects,
 * credentials, the provider's own (terraform found and init, inventory,
 * ssh host key and lock), exec programs), stopping at the first failure.
 * *checks is a new array of {"check", "ok", "message", "next"?}. Fills
 * d->preflight_s and, when the registry answers, what provenance needs
 * (d->provenance: registry commit, manifest sha256, newest version).
 * Returns 0 when all passed; else a negative code with the message
 * "pre-flight check 'NAME' failed: MESSAGE". Cancelled by
 * rh_engine_interrupt. */
int rh_preflight_run(json_t **checks, struct rh_drill *d, const struct rh_preflight_opts *opts);

/* Prints nothing; finds the failed check (the last item), or NULL. */
const json_t *rh_preflight_failed(const json_t *checks);

#endif
