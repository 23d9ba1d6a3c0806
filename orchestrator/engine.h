/*
 * engine.h - runs a validated runbook as a DAG and measures the RTO.
 *
 * Order of calls: rh_drill_init (creates the drill directory), rh_engine_run
 * (blocks until every step has a final status), rh_record_build/write (see
 * record.h), rh_drill_release.
 *
 * Scheduling. A main-phase step starts when all its `after` steps are ok;
 * if one of them failed, timed out, was skipped or cancelled, it is skipped.
 * When a main-phase step fails for good (retries exhausted), the drill has
 * failed: running main-phase steps are cancelled and nothing new in the main
 * phase starts. The final phase (when=always|on_failure) then runs: an
 * `always` step runs whatever happened; an `on_failure` step only if the
 * drill failed or was interrupted. Final steps wait for their `after` steps
 * to finish in any state.
 *
 * Deadlines. Each attempt has its own cancellation token (ctx->cancel): the
 * engine fires it when the attempt's timeout passes (the step becomes
 * timed_out, and is retried like any timeout) or when its phase is cancelled.
 * An attempt that has not returned within a grace after that is abandoned:
 * its thread is detached, the step gets its final status, and the drill goes
 * on to its teardown, record and journal entry (see n_abandoned).
 *
 * Interrupt. rh_engine_interrupt (async-signal-safe) starts nothing new in
 * the main phase, cancels running main-phase steps (their process groups
 * are killed) and runs the final phase, which interrupt does not cancel.
 *
 * RTO. T0 is the start of rh_engine_run. The RTO is T0 to the end of the
 * first successful restores_service step. A runbook without such steps is
 * restored when every main-phase step is ok, at the end of the last one.
 * The critical path is walked back from that step through, at each step,
 * the dependency that finished last; overhead = rto - sum of its durations.
 *
 * Threads. Each attempt runs in its own thread. Events are delivered to
 * opts->on_event from engine threads, one at a time (under the engine lock):
 * keep the callback short and do not call back into the engine.
 */
#ifndef RH_ENGINE_H
#define RH_ENGINE_H

#include "cancel.h"
#include "runbook.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

struct rh_provider_ctx;
struct rh_provider_ops;

enum rh_step_status {
	RH_STEP_PENDING = 0,
	RH_STEP_RUNNING,
	RH_STEP_OK,
	RH_STEP_FAILED,
	RH_STEP_TIMED_OUT,
	RH_STEP_SKIPPED,
	RH_STEP_CANCELLED,
};

/* ABORTED: a pre-flight check failed before T0; nothing ran or was created. */
enum rh_verdict {
	RH_VERDICT_MET,
	RH_VERDICT_MISSED,
	RH_VERDICT_FAILED,
	RH_VERDICT_INTERRUPTED,
	RH_VERDICT_ABORTED,
};

struct rh_step_result {
	enum rh_step_status status;
	unsigned attempts;
	double start_s;	  /* since T0, first attempt; -1 if never started */
	double end_s;	  /* since T0; -1 if never finished */
	json_t *outputs;  /* owned object (empty when none) */
	char *error;	  /* owned; last attempt's reason, NULL when ok */
	char *log_prefix; /* owned; "<drill dir>/steps/<id>" */
};

struct rh_drill {
	struct rh_runbook *rb; /* borrowed */
	char id[96];	       /* "20261121T043318Z-<name>-<6 hex>" */
	char *state_dir;       /* owned */
	char *dir;	       /* owned: <state_dir>/drills/<id> */
	struct timespec t0_wall;
	double t0_mono;

	struct rh_step_result *results;	  /* n_steps, owned */
	json_t *scope;			  /* owned: interpolation namespaces */
	struct rh_provider_ctx *provider; /* owned; NULL for runbooks without target */

	enum rh_verdict verdict;
	bool restored;
	double rto_s;	       /* valid when restored */
	long rto_step;	       /* index of the step that set the RTO, -1 */
	size_t *critical_path; /* owned, n_critical step indices, first to last */
	size_t n_critical;
	double overhead_s;
	bool final_phase_failed;  /* a teardown/always step did not succeed */
	bool teardown_incomplete; /* a teardown step ran and failed: resources may remain */

	/* Pre-flight (preflight.h): seconds before T0, not part of the RTO;
	 * -1 when none ran. `preflight` (owned, may be NULL) the checks;
	 * `provenance` (owned, may be NULL) what the drill ran from (registry
	 * commit, manifest sha256, model RPO, --var overrides); both go into
	 * the record. */
	double preflight_s;
	json_t *preflight;
	json_t *provenance;

	/* Attempt threads the engine gave up on (a call that ignored its
	 * deadline and cancel). When non-zero, rh_drill_release frees nothing:
	 * such a thread may still use the drill and its runbook, so the caller
	 * must not free the runbook either, and should exit soon. */
	unsigned n_abandoned;

	struct rh_cancel interrupt; /* main phase */
	struct rh_cancel hard_stop; /* final phase: only rh_engine_abort fires it */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

enum rh_event_kind {
	RH_EVENT_STEP_START, /* an attempt started */
	RH_EVENT_STEP_RETRY, /* an attempt failed; next in `delay_s` */
	RH_EVENT_STEP_END,   /* final status known */
	RH_EVENT_STEP_PROGRESS,
	RH_EVENT_INTERRUPTED,
	RH_EVENT_STEP_QUEUED, /* ready, but max_parallel steps run: it waits */
};

struct rh_event {
	enum rh_event_kind kind;
	size_t step; /* index */
	unsigned attempt;
	double at_s;	  /* since T0 */
	double delay_s;	  /* RETRY */
	const char *text; /* RETRY/END: reason; PROGRESS: text */
};

struct rh_engine_opts {
	unsigned version;
	void (*on_event)(void *user, const struct rh_drill *d, const struct rh_event *ev);
	void *user;
	/* Version 2: how long an attempt may take to return after its deadline
	 * passed or it was cancelled before the engine abandons it (its status
	 * becomes timed_out or cancelled and the drill goes on); 0: 15 s. After
	 * rh_engine_abort the wait is 1 s whatever this says. */
	double abandon_grace_s;
};
#define RH_ENGINE_OPTS_VERSION 2
#define RH_ENGINE_OPTS_INIT                                                                        \
	{                                                                                          \
		RH_ENGINE_OPTS_VERSION, NULL, NULL, 0                                              \
	}

/* Prepares a drill of `rb`: creates <state_dir>/drills/<id>/ (0700) with a
 * steps/ subdirectory and the scope (runbook, vars, env (allowed names only),
 * target, model, drill, rehydra namespaces). Nothing else is created.
 * Returns 0 or a negative code with the message set. */
int rh_drill_init(struct rh_drill *d, struct rh_runbook *rb, const char *state_dir);

/* Creates the provider context of `ops` on `target` for runbook `rb`: the
 * runbook values the adapters read (ctx->runbook) and an expander over the
 * render scope (the namespaces rh_drill_init builds, with rehydra.bindir
 * empty: see provider.h). rh_drill_init calls it for the drill; `rehydra
 * render` for its own target. rb, target and the strings are borrowed and
 * must outlive *out (free it with rh_provider_ctx_free). Returns 0 or a
 * negative code with the message set (a model value that does not expand). */
int rh_drill_provider_new(struct rh_provider_ctx **out, const struct rh_provider_ops *ops,
			  const json_t *target, const struct rh_runbook *rb, const char *drill_id,
			  const char *state_dir, const char *drill_dir);

/* Runs the drill to the end (see above). Returns 0 when the drill ran to a
 * verdict (whatever it is); a negative code only for internal errors. */
int rh_engine_run(struct rh_drill *d, const struct rh_engine_opts *opts);

/* Async-signal-safe: the first call interrupts (see above). */
void rh_engine_interrupt(struct rh_drill *d);

/* Async-signal-safe: cancels the final phase too (a second, forced stop). */
void rh_engine_abort(struct rh_drill *d);

void rh_drill_release(struct rh_drill *d);

const char *rh_step_status_name(enum rh_step_status s);
const char *rh_verdict_name(enum rh_verdict v);

/* Exit code of a verdict: met 0, missed 1, aborted 2, failed 3,
 * interrupted 130. A teardown that did not complete is exit 4 whatever the
 * verdict (rh_drill_exit_code). */
int rh_verdict_exit_code(enum rh_verdict v);

/* The drill's exit code: 4 when teardown_incomplete, else the verdict's. */
int rh_drill_exit_code(const struct rh_drill *d);

/* Marks an initialised drill that will not run (a pre-flight check
 * failed): verdict aborted, every step pending, T0 now. Its record and
 * journal entry say so. */
void rh_drill_abort(struct rh_drill *d);

#endif
