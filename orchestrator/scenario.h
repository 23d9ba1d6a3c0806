/*
 * scenario.h - export-control contingency scenarios: what an event takes
 * away, who we are, where we may go, which rules are in force, which
 * runbook recreates the stack and how often that must be rehearsed.
 *
 * rh_scenario_load() validates a scenario file as completely as a runbook
 * (positioned diagnostics, unknown keys with "did you mean", unknown rule
 * ids, codes, the runbook and inventory files) before anything runs.
 * rh_scenario_decide() enumerates every candidate target (provider x region
 * x accelerator class from the catalogs, then inventory hosts), judges each
 * with the policy engine and picks the first allowed one in `prefer` order,
 * then catalog order. rh_scenario_target() turns the choice into the target
 * object the runbook runs on.
 *
 * Ownership: a struct rh_scenario owns its document; the json_t views in it
 * are borrowed from the document. Results through json_t ** are new.
 */
#ifndef RH_SCENARIO_H
#define RH_SCENARIO_H

#include "diag.h"
#include "policy.h"

#include <jansson.h>
#include <stdbool.h>

#define RH_SCENARIO_FORMAT 1

struct rh_scenario {
	char *path; /* as given */
	char *dir;  /* absolute directory of the file */
	char sha256[65];
	json_t *doc;	  /* owned */
	const char *name; /* borrowed from doc */
	const char *description;
	char *runbook;		 /* the runbook's path, resolved against dir */
	const char *entity_name; /* NULL when not given */
	const char *entity_hq;
	const json_t *lost;	   /* array or NULL */
	const json_t *constraints; /* object or NULL */
	const json_t *prefer;	   /* array of providers or NULL */
	const json_t *targets;	   /* {provider: {target keys}} or NULL */
	const char **rules;	   /* rule ids, NULL-terminated (owned array, borrowed strings) */
	char *inventory;	   /* resolved path or NULL */
	double cadence_days;	   /* 0 = no cadence */
	double rto_target_s;	   /* 0 = the runbook's */
};

/* Loads and validates `path` against `policy` (rule ids must exist).
 * On success *out is new (rh_scenario_free). On failure RH_EINVAL (RH_EIO
 * if unreadable, message set) with every problem located in `diags`. */
int rh_scenario_load(struct rh_scenario **out, const char *path, const struct rh_policy *policy,
		     struct rh_diags *diags);
void rh_scenario_free(struct rh_scenario *s);

/* Judges every candidate. `rb_target` is the runbook's own target (may be
 * NULL): for a provider without a catalog (local) it is the only candidate,
 * judged with its "jurisdiction". model_export / export_unknown: see
 * rh_policy_input. *out (new):
 *   {"scenario": {"name", "file", "sha256"}, "today",
 *    "chosen": {"provider", "region", "accelerator", "host"?} | null,
 *    "candidates": [{"provider", "region", "accelerator", "host"?,
 *                    "country", "bloc", "allowed", "reasons": [...]}],
 *    "policy": {"files": [{file, as_of}], "rules": [{id, citation,
 *               effective_from}]},
 *    "catalog": [{"provider", "as_of"}]}
 * Returns 0 whether or not a target was chosen; negative on errors. */
int rh_scenario_decide(json_t **out, const struct rh_scenario *s, const struct rh_policy *policy,
		       const json_t *rb_target, const json_t *model_export,
		       const char *export_unknown);

/* The target the runbook runs on: the runbook's own target (`rb_target`,
 * may be NULL) with provider, region, accelerator (and for ssh, inventory
 * and host) from `chosen`; when the provider changes, keys the new provider
 * does not take are dropped (listed in *dropped, a new array; may be
 * NULL) and the scenario's targets[provider] keys are laid over. *out new. */
int rh_scenario_target(json_t **out, json_t **dropped, const struct rh_scenario *s,
		       const json_t *rb_target, const json_t *chosen);

/* The decision as it goes into a drill record and the journal:
 * {"scenario", "file", "sha256", "chosen", "denied": [{"provider",
 *  "region", "accelerator", "host"?, "rules": [ids]}], "allowed": N,
 *  "policy": [{file, as_of}], "catalog": [{provider, as_of}], "today"}.
 * "not-offered" candidates are counted, not listed. *out new. */
int rh_scenario_decision_record(json_t **out, const json_t *decision);

/* Judges a runbook's own target against the rule ids it opts into
 * ("policy": [...], with "entity" and "constraints" as in a scenario).
 * Target values may use ${vars.*} (expanded against `vars`, may be NULL);
 * anything else is known only at run time and is reported. `model_export`
 * is the manifest's export object when it has been read (NULL: the
 * model-export rule is a note, with `export_unknown` as the reason). Adds
 * one diagnostic at `pointer` per denial. Returns 0 (check the
 * diagnostics), or a negative error when the policy cannot be loaded. */
int rh_scenario_check_target(struct rh_diags *d, const json_t *doc, const json_t *target,
			     const char *pointer, const json_t *vars, const json_t *model_export,
			     const char *export_unknown);

/* True when the runbook document opts into a rule that reads the model
 * manifest's export fields (so a drill reads them before T0). */
bool rh_scenario_needs_export(const json_t *doc);

#endif
