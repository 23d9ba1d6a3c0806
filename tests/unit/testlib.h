/*
 * testlib.h - the small amount of glue every CUnit suite shares.
 *
 * A test file defines its cases and ends with
 *     RH_TEST_MAIN("runbook", { "parse_ok", test_runbook__parse_ok }, ...)
 * which registers one suite and runs it; the exit code is non-zero when any
 * assertion failed, so ctest sees failures. Like main(), it initialises
 * libcurl and libgit2 (rh_artifacts_global_init) before the first case.
 */
#ifndef RH_TESTLIB_H
#define RH_TESTLIB_H

#include "error.h"
#include "global.h"

#include <CUnit/Basic.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct rh_test_case {
	const char *name;
	void (*fn)(void);
};

static inline int rh_test_run(const char *suite, const struct rh_test_case *cases, size_t n)
{
	CU_pSuite s;
	unsigned failed;

	/* What main() does first: the suites reach libcurl and libgit2. */
	if (rh_artifacts_global_init() < 0) {
		fprintf(stderr, "%s\n", rh_error_last());
		return 2;
	}
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	s = CU_add_suite(suite, NULL, NULL);
	if (!s)
		return 2;
	for (size_t i = 0; i < n; i++)
		if (!CU_add_test(s, cases[i].name, cases[i].fn))
			return 2;
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	if (CU_get_number_of_tests_run() == 0)
		failed = 1;
	CU_cleanup_registry();
	rh_artifacts_global_shutdown();
	return failed ? 1 : 0;
}

#define RH_TEST_MAIN(suite, ...)                                                            \
	int main(void)                                                                      \
	{                                                                                   \
		static const struct rh_test_case cases[] = { __VA_ARGS__ };                 \
		return rh_test_run(suite, cases, sizeof(cases) / sizeof(cases[0]));         \
	}

/* Makes a fresh temporary directory (mkdtemp under $TMPDIR or /tmp) and
 * returns it (new: caller frees). Aborts on failure: a test cannot go on
 * without it. */
__attribute__((unused)) static char *rh_test_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char tmpl[4096];
	char *dir;

	snprintf(tmpl, sizeof(tmpl), "%s/rh-test-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		abort();
	}
	dir = strdup(tmpl);
	if (!dir)
		abort();
	return dir;
}

/* Writes `text` to `path` (creating or truncating it). Aborts on failure. */
__attribute__((unused)) static void rh_test_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(path);
		abort();
	}
}

static int rh_test__rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* Removes a tree (like rm -rf) without a shell. */
__attribute__((unused)) static void rh_test_rm_rf(const char *path)
{
	nftw(path, rh_test__rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Joins dir + "/" + name into a new string (caller frees). */
__attribute__((unused)) static char *rh_test_path(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (!p)
		abort();
	snprintf(p, n, "%s/%s", dir, name);
	return p;
}

#endif
