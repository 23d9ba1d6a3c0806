/*
 * test_metrics.c - the Prometheus textfile of drills: aborted drills are
 * counted under their own verdict label and never become a group's
 * "latest drill" (success, RTO), and a group with nothing but aborted
 * drills gets no gauges.
 */
#include "metrics.h"
#include "testlib.h"

#include <jansson.h>
#include <math.h>

static json_t *rec(const char *runbook, const char *verdict, double rto, const char *finished)
{
	json_t *r = json_pack("{s:{s:s}, s:{s:s, s:s}, s:s, s:f, s:s}", "runbook", "name", runbook,
			      "target", "provider", "local", "region", "local", "verdict", verdict,
			      "rto_target_s", 60.0, "finished", finished);

	json_object_set_new(r, "rto_s", isnan(rto) ? json_null() : json_real(rto));
	return r;
}

static char *render_of(json_t **recs, size_t n)
{
	struct rh_metrics *m = NULL;
	char *text = NULL;
	size_t len = 0;

	CU_ASSERT_FATAL(rh_metrics_new(&m, true) == 0);
	for (size_t i = 0; i < n; i++) {
		CU_ASSERT_EQUAL(rh_metrics_add(m, recs[i]), 0);
		json_decref(recs[i]);
	}
	CU_ASSERT_EQUAL(rh_metrics_render(m, &text, &len), 0);
	rh_metrics_free(m);
	return text;
}

static void test_metrics__aborted_own_label(void)
{
	json_t *recs[] = {
	    rec("rb", "met", 12.5, "2026-01-01T00:00:00Z"),
	    rec("rb", "aborted", NAN, "2026-01-02T00:00:00Z"),
	    rec("rb", "aborted", NAN, "2026-01-03T00:00:00Z"),
	};
	char *text = render_of(recs, 3);
	const char *lbl = "{runbook=\"rb\",target=\"local:local\",scenario=\"-\"";
	char want[256];

	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	snprintf(want, sizeof(want), "rehydra_drills_total%s,verdict=\"aborted\"} 2\n", lbl);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
	snprintf(want, sizeof(want), "rehydra_drills_total%s,verdict=\"met\"} 1\n", lbl);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
	/* nothing is "other" */
	CU_ASSERT_PTR_NULL(strstr(text, "verdict=\"other\""));
	/* the latest drill that ran is still the met one */
	snprintf(want, sizeof(want), "rehydra_drill_success%s} 1\n", lbl);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
	snprintf(want, sizeof(want), "rehydra_drill_rto_seconds%s} 12.5\n", lbl);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
	/* 2026-01-03T00:00:00Z */
	snprintf(want, sizeof(want), "rehydra_drill_last_aborted_timestamp_seconds%s} 1767398400\n",
		 lbl);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, want));
	if (!strstr(text, want))
		fprintf(stderr, "\n%s\n", text);
	free(text);
}

static void test_metrics__only_aborted_no_gauges(void)
{
	json_t *recs[] = {rec("typo", "aborted", NAN, "2026-01-02T00:00:00Z"),
			  rec("other", "weird", NAN, "2026-01-02T00:00:00Z")};
	char *text = render_of(recs, 2);

	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NULL(strstr(text, "rehydra_drill_success{runbook=\"typo\""));
	CU_ASSERT_PTR_NULL(strstr(text, "rehydra_drill_rto_seconds{runbook=\"typo\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "rehydra_drills_total{runbook=\"typo\",target=\"local:"
					    "local\",scenario=\"-\",verdict=\"aborted\"} 1\n"));
	/* an unknown verdict is still "other", and a drill that ran */
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "verdict=\"other\"} 1\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "rehydra_drill_success{runbook=\"other\""));
	free(text);
}

RH_TEST_MAIN("metrics", {"test_metrics__aborted_own_label", test_metrics__aborted_own_label},
	     {"test_metrics__only_aborted_no_gauges", test_metrics__only_aborted_no_gauges})
