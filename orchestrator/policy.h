/*
 * policy.h - the policy engine: which targets a contingency may use, and why.
 *
 * Rules are data (the JSON files in providers/policy, found like the catalog: see
 * rh_data_dir("policy")), each with an id, an effect, what it matches, a
 * reason template, a citation and the date it takes effect. The engine
 * judges one candidate target (provider, region, accelerator, optional
 * inventory host, the region's jurisdiction) against what a scenario says:
 * the entity and where it is headquartered, what is lost, the allow-lists
 * (constraints), the rule ids in force and the model's export fields.
 *
 * Rule effects:
 *   "deny"     denied when every condition in "match" holds: accelerators
 *              (classes), entity_hq (country codes or "group:NAME"),
 *              countries, blocs (of the region). A condition on entity_hq
 *              with no entity headquarters known denies (fail closed).
 *   "require"  "require": "residency" (the region's country or bloc is in
 *              the scenario's constraints.countries / constraints.blocs) or
 *              "model-export" (the region's country or bloc, or "*", is in
 *              the manifest's export.jurisdictions). An optional "match"
 *              restricts where the requirement applies.
 * A rule whose effective_from lies after `today` is not applied (a note says
 * so). A candidate with no known country is denied by default, whatever the
 * rules. Reasons that are not rules use these ids: "lost" (lost in this
 * scenario), "not-offered" (the catalog does not sell it there),
 * "constraints" (outside the scenario's allow-lists), "unknown-jurisdiction".
 *
 * Rules are the organisation's policy, not legal advice.
 *
 * Ownership: struct rh_policy owns its documents; json_t results are new
 * references unless a function says "borrowed".
 */
#ifndef RH_POLICY_H
#define RH_POLICY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define RH_POLICY_FORMAT 1

struct rh_policy;

/* Loads and checks every *.json in `dir` (NULL: rh_data_dir("policy")).
 * *out is new (rh_policy_free). RH_EINVAL names the file and the JSON path
 * of the first problem; RH_ENOTFOUND when the directory is missing. */
int rh_policy_load(struct rh_policy **out, const char *dir);

/* Checks one parsed policy document against the rules already in `p`
 * (duplicate ids) and adds it; `file` names it in messages. The document
 * is copied. Used by rh_policy_load and by tests. */
int rh_policy_add(struct rh_policy *p, const json_t *doc, const char *file);

/* An empty policy (rules added with rh_policy_add). */
int rh_policy_new(struct rh_policy **out);
void rh_policy_free(struct rh_policy *p);

/* The rule with `id` (borrowed), or NULL. */
const json_t *rh_policy_rule(const struct rh_policy *p, const char *id);

/* NULL-terminated list of every rule id (borrowed strings, array owned by p). */
const char *const *rh_policy_ids(const struct rh_policy *p);

/* [{"file", "as_of"}] of the files read (borrowed). */
const json_t *rh_policy_files(const struct rh_policy *p);

/* True when rule `id` needs the entity's headquarters / the residency
 * allow-lists to be judged (for validating what a scenario or runbook
 * supplies). */
bool rh_policy_needs_entity(const struct rh_policy *p, const char *id);
bool rh_policy_needs_residency(const struct rh_policy *p, const char *id);

/* One candidate target. Strings are borrowed from the caller. */
struct rh_candidate {
	const char *provider;
	const char *region;
	const char *accelerator; /* NULL when the target names none */
	const char *host;	 /* inventory host name, or NULL */
	const char *country;	 /* the region's jurisdiction; NULL = unknown */
	const char *bloc;	 /* NULL = unknown */
	const char *not_offered; /* why the catalog does not offer it, or NULL */
};

/* What the candidates are judged against. Everything is borrowed. */
struct rh_policy_input {
	const char *entity_name;    /* NULL: "the entity" */
	const char *entity_hq;	    /* country code; NULL = unknown */
	const json_t *lost;	    /* array of {provider, region, accelerator, country}, or NULL */
	const json_t *constraints;  /* {countries, blocs, accelerators, providers}, or NULL */
	const char *const *rules;   /* rule ids in force, NULL-terminated (NULL = none) */
	const json_t *model_export; /* the manifest's "export" object, or NULL */
	const char *export_unknown; /* why model_export is NULL (for the note), or NULL */
	const char *today;	    /* YYYY-MM-DD: rules effective after it do not apply */
};

/* Judges `c`. *reasons is a new array of {"rule", "message", "effect"} where
 * effect is "deny" or "note"; *allowed is true when none denies. Returns 0,
 * RH_ENOTFOUND for a rule id the policy does not have, RH_ENOMEM. */
int rh_policy_judge(json_t **reasons, bool *allowed, const struct rh_policy *p,
		    const struct rh_policy_input *in, const struct rh_candidate *c);

/* Today's date (UTC) as YYYY-MM-DD, or $RH_TODAY when set (tests). */
void rh_policy_today(char buf[11]);

#endif
