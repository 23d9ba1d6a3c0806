/*
 * metrics.h - Prometheus metrics of drills, as a node_exporter textfile.
 *
 * Series per (runbook, target, scenario) group, named as the reports name
 * them (report.h): target "provider:region", "provider" without a region,
 * "-" without a target; scenario the record's, "-" when it has none:
 *   rehydra_drill_rto_seconds              gauge, NaN when not restored
 *   rehydra_drill_rto_target_seconds       gauge, only when the runbook has one
 *   rehydra_drill_success                  gauge, 1 when the verdict was met
 *   rehydra_drill_last_timestamp_seconds   gauge, when the drill finished
 *   rehydra_drill_overhead_seconds         gauge, NaN when not restored
 *   rehydra_drills_total{verdict=...}      counter, drills recorded per verdict
 *                                          (met, missed, failed, interrupted,
 *                                          aborted; "other" only when seen)
 *   rehydra_drill_last_aborted_timestamp_seconds
 *                                          gauge, the latest drill aborted in
 *                                          pre-flight (only groups with one)
 *   rehydra_drill_latency_seconds{quantile=0.5|0.9|0.95|0.99|0.999}
 *                                          gauge, the latest drill's load test
 *   rehydra_drill_ttft_seconds{quantile=0.5|0.95|0.99}
 *                                          gauge, its time to first token
 *   (both only for groups whose latest drill has a load test, record "load")
 * The gauges describe the latest drill of each group (the last one added)
 * that ran: an aborted drill (pre-flight failed, nothing created) is only
 * counted, and a group with nothing but aborted drills has no gauges.
 * Usage: rh_metrics_new, rh_metrics_add for every record in journal order,
 * rh_metrics_render or rh_metrics_write, rh_metrics_free.
 */
#ifndef RH_METRICS_H
#define RH_METRICS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct rh_metrics;
struct rh_journal;

/* The record fields rh_metrics_add reads (for rh_journal_foreach_fields). */
extern const char *const rh_metrics_fields[];

/* *out is new; free with rh_metrics_free. `with_totals` false leaves out
 * rehydra_drills_total (when the records at hand are not the whole
 * journal, a counter from them would go backwards). */
int rh_metrics_new(struct rh_metrics **out, bool with_totals);
void rh_metrics_free(struct rh_metrics *m);

/* Adds one drill record (borrowed, not kept). Records without a runbook
 * name are ignored. Returns 0 or RH_ENOMEM. */
int rh_metrics_add(struct rh_metrics *m, const json_t *record);

/* Adds rehydra_scenario_last_success_timestamp_seconds and
 * rehydra_scenario_overdue per scenario from rh_cadence_compute's result
 * (a reference is taken; NULL removes them). */
void rh_metrics_set_cadence(struct rh_metrics *m, json_t *cadence);

/* The exposition text. *out is new (free), NUL-terminated, *len its length. */
int rh_metrics_render(const struct rh_metrics *m, char **out, size_t *len);

/* Writes the text to `path` atomically (temporary file in the same
 * directory, rename), mode 0644 so that node_exporter can read it. */
int rh_metrics_write(const struct rh_metrics *m, const char *path);

/* Reads every drill of the journal and writes `path`. Returns
 * RH_EVERIFY when the journal cannot be read to its end (nothing is
 * written then). */
int rh_metrics_write_journal(struct rh_journal *j, const char *path);

/* The target label of a record into buf: "provider:region", "provider"
 * or "-". */
void rh_metrics_target_label(char *buf, size_t size, const json_t *record);

/* The scenario label of a record (borrowed from it): its "scenario" string
 * (or that object's "name"), "-" when it has none. */
const char *rh_metrics_scenario_label(const json_t *record);

#endif
