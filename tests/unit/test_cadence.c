/*
 * test_cadence.c - cadence status from a real journal, at the boundaries:
 * never, ok, due (within the grace), overdue, rehearsed but never met, no
 * cadence; the newest success counts whatever the journal order; and the
 * Prometheus text has one overdue sample per scenario and no last-success
 * sample for a scenario that never succeeded.
 */
#include "cadence.h"
#include "error.h"
#include "journal.h"
#include "testlib.h"

#include <stdlib.h>
#include <string.h>

#define DAY 86400.0

static void add(struct rh_journal *j, const char *scen, const char *t0, const char *verdict)
{
	json_t *r = json_pack("{s:s,s:s,s:s,s:s}", "drill_id", t0, "scenario", scen, "t0", t0,
			      "verdict", verdict);

	CU_ASSERT_EQUAL(rh_journal_append(j, r, NULL), 0);
	json_decref(r);
}

static const char *status_of(const json_t *cad, const char *name)
{
	size_t i;
	json_t *e;

	json_array_foreach(cad, i,
			   e) if (strcmp(json_string_value(json_object_get(e, "scenario")), name) ==
				  0) return json_string_value(json_object_get(e, "status"));
	return "(missing)";
}

static void test_cadence__statuses(void)
{
	char *dir = rh_test_tmpdir();
	struct rh_journal *j = NULL;
	json_t *list, *cad = NULL;
	double t0 = rh_cadence_parse_time("2026-11-01T00:00:00.000Z");
	char *prom = NULL;

	CU_ASSERT_EQUAL(t0, 1793491200.0);
	CU_ASSERT(rh_cadence_parse_time("yesterday") < 0);
	CU_ASSERT_EQUAL_FATAL(rh_journal_open(&j, dir), 0);
	/* the newer success first: order in the journal must not matter */
	add(j, "weekly", "2026-11-01T00:00:00.000Z", "met");
	add(j, "weekly", "2026-10-20T00:00:00.000Z", "met");
	add(j, "weekly", "2026-11-02T00:00:00.000Z", "failed");
	add(j, "failing", "2026-11-01T00:00:00.000Z", "missed");
	add(j, "free", "2026-11-01T00:00:00.000Z", "met");
	list = json_pack("[{s:s,s:i},{s:s,s:i},{s:s,s:i},{s:s,s:n}]", "scenario", "weekly",
			 "cadence_days", 7, "scenario", "never", "cadence_days", 7, "scenario",
			 "failing", "cadence_days", 7, "scenario", "free", "cadence_days");
	CU_ASSERT_PTR_NOT_NULL_FATAL(list);

	/* t0 + 6 days: ok; + 7.5: due (grace one day); + 8.5: overdue */
	CU_ASSERT_EQUAL_FATAL(rh_cadence_compute(&cad, list, j, (time_t)(t0 + 6 * DAY)), 0);
	CU_ASSERT_STRING_EQUAL(status_of(cad, "weekly"), "ok");
	CU_ASSERT_STRING_EQUAL(status_of(cad, "never"), "never");
	CU_ASSERT_STRING_EQUAL(status_of(cad, "failing"), "overdue");
	CU_ASSERT_STRING_EQUAL(status_of(cad, "free"), "ok");
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(json_array_get(cad, 0), "last_success")),
	    "2026-11-01T00:00:00.000Z");
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(json_array_get(cad, 0), "last_verdict")), "failed");
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(json_array_get(cad, 0), "next_due")),
	    "2026-11-08T00:00:00.000Z");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(cad, 0), "rehearsals")),
			3);
	CU_ASSERT(rh_cadence_failing(cad));
	CU_ASSERT_EQUAL(rh_cadence_prom(&prom, cad), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(prom, "rehydra_scenario_overdue{scenario=\"weekly\"} 0\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(prom, "rehydra_scenario_overdue{scenario=\"never\"} 1\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(prom, "rehydra_scenario_overdue{scenario=\"failing\"} 1\n"));
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(prom, "rehydra_scenario_last_success_timestamp_seconds{scenario=\"weekly\"} "
			 "1793491200.000\n"));
	CU_ASSERT_PTR_NULL(strstr(prom, "last_success_timestamp_seconds{scenario=\"never\"}"));
	CU_ASSERT_PTR_NULL(strstr(prom, "last_success_timestamp_seconds{scenario=\"failing\"}"));
	free(prom);
	json_decref(cad);

	CU_ASSERT_EQUAL_FATAL(rh_cadence_compute(&cad, list, j, (time_t)(t0 + 7.5 * DAY)), 0);
	CU_ASSERT_STRING_EQUAL(status_of(cad, "weekly"), "due");
	json_decref(cad);
	CU_ASSERT_EQUAL_FATAL(rh_cadence_compute(&cad, list, j, (time_t)(t0 + 8.5 * DAY)), 0);
	CU_ASSERT_STRING_EQUAL(status_of(cad, "weekly"), "overdue");
	CU_ASSERT_STRING_EQUAL(status_of(cad, "free"), "ok"); /* no cadence: never overdue */
	json_decref(cad);

	/* no journal at all: everything never */
	CU_ASSERT_EQUAL_FATAL(rh_cadence_compute(&cad, list, NULL, (time_t)t0), 0);
	CU_ASSERT_STRING_EQUAL(status_of(cad, "weekly"), "never");
	CU_ASSERT_STRING_EQUAL(status_of(cad, "free"), "never");
	json_decref(cad);

	json_decref(list);
	rh_journal_close(j);
	rh_test_rm_rf(dir);
	free(dir);
}

RH_TEST_MAIN("cadence", {"statuses", test_cadence__statuses})
