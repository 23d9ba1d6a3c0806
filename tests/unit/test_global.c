/*
 * test_global.c - the once-per-process library set-up: the guard every
 * libcurl/libgit2 module calls fails clearly without it, init/shutdown
 * nest, and a sink that needs libcurl refuses to open before init.
 */
#include "testlib.h"

#include "error.h"
#include "global.h"
#include "sink.h"

static void test_global__check_and_nesting(void)
{
	/* rh_test_run did one init; undo it to see the guard fire. */
	rh_artifacts_global_shutdown();
	CU_ASSERT_EQUAL(rh_artifacts_global_check(), RH_ERROR);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "rh_artifacts_global_init"));
	rh_artifacts_global_shutdown(); /* without an init: harmless */
	CU_ASSERT_EQUAL(rh_artifacts_global_check(), RH_ERROR);

	CU_ASSERT_EQUAL_FATAL(rh_artifacts_global_init(), 0);
	CU_ASSERT_EQUAL_FATAL(rh_artifacts_global_init(), 0);
	CU_ASSERT_EQUAL(rh_artifacts_global_check(), 0);
	rh_artifacts_global_shutdown();
	CU_ASSERT_EQUAL(rh_artifacts_global_check(), 0); /* one init still holds */
}

static void test_global__s3_sink_needs_init(void)
{
	struct rh_sink_opts opts = RH_SINK_OPTS_INIT;
	struct rh_sink *sink = NULL;

	rh_artifacts_global_shutdown();
	CU_ASSERT(rh_sink_open(&sink, "s3://models?endpoint=http://127.0.0.1:9", &opts) < 0);
	CU_ASSERT_PTR_NULL(sink);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "not initialised"));
	CU_ASSERT_EQUAL_FATAL(rh_artifacts_global_init(), 0);
}

RH_TEST_MAIN("global", {"check_and_nesting", test_global__check_and_nesting},
	     {"s3_sink_needs_init", test_global__s3_sink_needs_init})
