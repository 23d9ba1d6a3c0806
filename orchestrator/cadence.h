/*
 * cadence.h - is every scenario rehearsed as often as it promises?
 *
 * A scenario's cadence_days is a promise ("we prove the H20 contingency
 * every 30 days"); the journal is the evidence. For each scenario this
 * finds the last rehearsal and the last successful one (verdict "met")
 * among the journal's records whose "scenario" is the scenario's name, and
 * gives a status:
 *   never    not rehearsed at all
 *   ok       last success less than cadence_days ago
 *   due      cadence passed, within the grace (10% of the cadence, at least
 *            one day: the time a timer with RandomizedDelaySec and
 *            Persistent=true needs to catch up)
 *   overdue  past the grace, or rehearsed but never successfully
 * A scenario without cadence_days is "ok" once it has succeeded, "never"
 * before, and never overdue.
 *
 * Ownership: json_t results are new references.
 */
#ifndef RH_CADENCE_H
#define RH_CADENCE_H

#include "journal.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

/* `scenarios`: [{"scenario": NAME, "file": PATH, "cadence_days": N|null}]
 * (borrowed). *out: a new array, one object per scenario in the same order:
 * {"scenario", "file", "cadence_days", "rehearsals", "last_rehearsal",
 *  "last_verdict", "last_success", "next_due", "status"} with RFC 3339 UTC
 * times or null. `now` is the time judged against. */
int rh_cadence_compute(json_t **out, const json_t *scenarios, struct rh_journal *j, time_t now);

/* True when any entry of rh_cadence_compute's result is overdue or never. */
bool rh_cadence_failing(const json_t *cadence);

/* The cadence section of the reports, one writer per format; `cadence` is
 * rh_cadence_compute's result (borrowed; NULL writes nothing). */
void rh_cadence_write_md(FILE *f, const json_t *cadence);
void rh_cadence_write_html(FILE *f, const json_t *cadence);
/* A <testsuite> with a testcase per scenario: overdue and never are
 * <failure>s. *tests / *failures get what it adds to the totals. */
void rh_cadence_junit_counts(const json_t *cadence, unsigned long long *tests,
			     unsigned long long *failures);
void rh_cadence_write_junit(FILE *f, const json_t *cadence);

/* Prometheus text for rehydra_scenario_last_success_timestamp_seconds (no
 * sample for a scenario that never succeeded) and rehydra_scenario_overdue
 * (1 overdue or never, else 0), labelled by scenario. *out is new. */
int rh_cadence_prom(char **out, const json_t *cadence);

/* Seconds since the epoch of an RFC 3339 UTC time ("...Z"), or -1. */
double rh_cadence_parse_time(const char *s);

#endif
