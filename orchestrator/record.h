/*
 * record.h - the drill record: the JSON evidence of one drill.
 *
 * Fields: rehydra (format), drill_id, runbook {name, path, sha256},
 * target, model, t0 (UTC RFC 3339), finished, rto_s, rto_target_s, verdict,
 * restored_by, critical_path [ids], overhead_s, steps [{id, do, status,
 * attempts, start_s, end_s, duration_s, outputs, error}], host {name},
 * rehydra_version. No secret may appear: env values are never recorded.
 */
#ifndef RH_RECORD_H
#define RH_RECORD_H

#include "engine.h"

#include <jansson.h>

/* How records are serialised everywhere (file, --json): 15 significant
 * digits keep 0.072 as "0.072" rather than 0.071999999999999995. */
#define RH_RECORD_JSON_FLAGS (JSON_INDENT(2) | JSON_REAL_PRECISION(15))

/* *out is new. Returns 0 or RH_ENOMEM. Also: teardown ("complete" |
 * "incomplete"), preflight_s (seconds before T0, not in the RTO), preflight
 * (the checks), provenance {var_overrides, vars, vars_sha256,
 * runbook_sha256, rehydra_version, registry_commit, manifest_sha256,
 * model_rpo}. */
int rh_record_build(json_t **out, const struct rh_drill *d);

/* Records the --var overrides (names and values copied) in d->provenance.
 * Returns 0 or RH_ENOMEM. */
int rh_record_set_overrides(struct rh_drill *d, const struct rh_var_override *ov, size_t n);

/* Writes the record to <drill dir>/record.json atomically: temporary name,
 * fsync, rename, fsync of the directory. Mode 0600. */
int rh_record_write(const struct rh_drill *d, const json_t *record);

/* `text` as a terminal may show it: every value the record masks (the set
 * values of the runbook's allowed env vars) becomes [redacted], and control
 * characters are escaped (\n, \r, \t, \xNN), so a value can neither leak
 * into a CI log nor forge a line of the timeline. New (free it); NULL when
 * text is NULL or memory ran out. */
char *rh_record_redact_text(const struct rh_drill *d, const char *text);

#endif
