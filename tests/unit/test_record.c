/*
 * test_record.c - the drill record: every field present with its type,
 * written atomically as valid JSON with mode 0600, and no environment value
 * in it even when a step was given one and echoed it back.
 */
#include "clock.h"
#include "engine.h"
#include "error.h"
#include "record.h"
#include "runbook.h"
#include "testlib.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET "s3cr3t-T0KEN-value-9f8e"

struct fx {
	char *dir;
	struct rh_runbook *rb;
	struct rh_drill d;
	bool ready;
};

static int fx_drill(struct fx *f, const char *json, bool run)
{
	struct rh_diags diags = RH_DIAGS_INIT;
	struct rh_engine_opts opts = RH_ENGINE_OPTS_INIT;
	char *path, *state;
	int rc;

	memset(f, 0, sizeof(*f));
	f->dir = rh_test_tmpdir();
	path = rh_test_path(f->dir, "rb.json");
	state = rh_test_path(f->dir, "state");
	rh_test_write_file(path, json);
	rc = rh_runbook_load(&f->rb, path, NULL, 0, &diags);
	if (rc < 0) {
		fprintf(stderr, "runbook: %s\n", rh_error_last());
		for (size_t i = 0; i < diags.count; i++)
			fprintf(stderr, "  %d:%d %s\n", diags.items[i].line, diags.items[i].column,
				diags.items[i].message);
	}
	if (rc == 0)
		rc = rh_drill_init(&f->d, f->rb, state);
	f->ready = rc == 0;
	if (rc == 0 && run)
		rc = rh_engine_run(&f->d, &opts);
	rh_diags_clear(&diags);
	free(path);
	free(state);
	return rc;
}

static void fx_free(struct fx *f)
{
	if (f->ready)
		rh_drill_release(&f->d);
	rh_runbook_free(f->rb);
	rh_test_rm_rf(f->dir);
	free(f->dir);
}

static char *slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	long n;

	if (!fp)
		return NULL;
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(fp);
	return buf;
}

static const char *runbook_json =
    "{\"rehydra\": 1, \"name\": \"rec\", \"rto_target_s\": 20,"
    " \"env_allow\": [\"RH_TEST_SECRET\"],"
    " \"steps\": ["
    " {\"id\": \"use\", \"do\": \"exec\","
    "  \"argv\": [\"echo\", \"{\\\"tok\\\": \\\"x-${env.RH_TEST_SECRET}-y\\\", \\\"n\\\": 1}\"]},"
    " {\"id\": \"up\", \"do\": \"exec\", \"argv\": [\"true\"], \"after\": [\"use\"],"
    "  \"restores_service\": true},"
    " {\"id\": \"leaky_fail\", \"do\": \"exec\", \"after\": [\"up\"],"
    "  \"argv\": [\"ls\", \"/nonexistent/${env.RH_TEST_SECRET}\"]},"
    " {\"id\": \"never\", \"do\": \"exec\", \"argv\": [\"true\"], \"after\": [\"leaky_fail\"]},"
    " {\"id\": \"cleanup\", \"do\": \"wait\", \"seconds\": 0.01, \"when\": \"always\"}"
    "]}";

static bool is_rfc3339(const char *s)
{
	/* 2026-11-21T04:33:18.123Z */
	if (!s || strlen(s) != 24)
		return false;
	for (int i = 0; i < 24; i++) {
		char c = s[i];
		bool digit = c >= '0' && c <= '9';

		switch (i) {
		case 4:
		case 7:
			if (c != '-')
				return false;
			break;
		case 10:
			if (c != 'T')
				return false;
			break;
		case 13:
		case 16:
			if (c != ':')
				return false;
			break;
		case 19:
			if (c != '.')
				return false;
			break;
		case 23:
			if (c != 'Z')
				return false;
			break;
		default:
			if (!digit)
				return false;
		}
	}
	return true;
}

/* Record times are rounded to whole microseconds. */
static bool has_micros_precision(const json_t *v)
{
	double x = json_real_value(v) * 1e6;
	double off = x - (double)(long long)(x + (x >= 0 ? 0.5 : -0.5));

	return json_is_real(v) && off < 1e-3 && off > -1e-3;
}

static void test_record__fields_and_types(void)
{
	struct fx f;
	json_t *rec = NULL, *steps, *s;
	size_t i;

	setenv("RH_TEST_SECRET", SECRET, 1);
	CU_ASSERT_EQUAL_FATAL(fx_drill(&f, runbook_json, true), 0);
	CU_ASSERT_EQUAL_FATAL(rh_record_build(&rec, &f.d), 0);

	CU_ASSERT_EQUAL(json_integer_value(json_object_get(rec, "rehydra")), 1);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "drill_id")), f.d.id);
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(json_object_get(rec, "runbook"), "name")), "rec");
	CU_ASSERT(json_is_string(json_object_get(json_object_get(rec, "runbook"), "path")));
	CU_ASSERT_EQUAL(
	    strlen(json_string_value(json_object_get(json_object_get(rec, "runbook"), "sha256"))),
	    64);
	CU_ASSERT(json_is_null(json_object_get(rec, "target")));
	CU_ASSERT(json_is_null(json_object_get(rec, "model")));
	CU_ASSERT(is_rfc3339(json_string_value(json_object_get(rec, "t0"))));
	CU_ASSERT(is_rfc3339(json_string_value(json_object_get(rec, "finished"))));
	CU_ASSERT(strcmp(json_string_value(json_object_get(rec, "t0")),
			 json_string_value(json_object_get(rec, "finished"))) <= 0);
	CU_ASSERT(json_is_real(json_object_get(rec, "rto_s")));
	CU_ASSERT(has_micros_precision(json_object_get(rec, "rto_s")));
	CU_ASSERT(json_number_value(json_object_get(rec, "rto_target_s")) == 20);
	/* restored by 'up', then 'leaky_fail' failed: the drill failed */
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "verdict")), "failed");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "restored_by")), "up");
	CU_ASSERT(json_is_array(json_object_get(rec, "critical_path")));
	CU_ASSERT_EQUAL(json_array_size(json_object_get(rec, "critical_path")), 2);
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_array_get(json_object_get(rec, "critical_path"), 0)), "use");
	CU_ASSERT(json_is_real(json_object_get(rec, "overhead_s")));
	CU_ASSERT(json_real_value(json_object_get(rec, "overhead_s")) >= 0);
	CU_ASSERT(json_is_boolean(json_object_get(rec, "final_phase_failed")));
	CU_ASSERT(json_is_string(json_object_get(json_object_get(rec, "host"), "name")));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rec, "rehydra_version")),
			       RH_VERSION);

	steps = json_object_get(rec, "steps");
	CU_ASSERT_EQUAL_FATAL(json_array_size(steps), 5);
	json_array_foreach(steps, i, s)
	{
		const char *status = json_string_value(json_object_get(s, "status"));

		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(s, "id")),
				       f.rb->steps[i].id);
		CU_ASSERT(json_is_string(json_object_get(s, "do")));
		CU_ASSERT_PTR_NOT_NULL_FATAL(status);
		CU_ASSERT(json_is_integer(json_object_get(s, "attempts")));
		CU_ASSERT(json_is_object(json_object_get(s, "outputs")));
		if (strcmp(status, "skipped") == 0) {
			CU_ASSERT(json_is_null(json_object_get(s, "start_s")));
			CU_ASSERT(json_is_null(json_object_get(s, "duration_s")));
			CU_ASSERT(json_is_string(json_object_get(s, "error")));
		} else {
			CU_ASSERT(json_is_real(json_object_get(s, "start_s")));
			CU_ASSERT(json_is_real(json_object_get(s, "end_s")));
			CU_ASSERT(json_is_real(json_object_get(s, "duration_s")));
			CU_ASSERT(has_micros_precision(json_object_get(s, "duration_s")));
			CU_ASSERT(json_real_value(json_object_get(s, "duration_s")) >= 0);
		}
		if (strcmp(status, "ok") == 0)
			CU_ASSERT(json_is_null(json_object_get(s, "error")));
	}
	s = json_array_get(steps, 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(s, "do")), "exec");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(s, "outputs"), "n")), 1);
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(json_array_get(steps, 2), "status")), "failed");
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(json_array_get(steps, 3), "status")), "skipped");
	json_decref(rec);
	fx_free(&f);
	unsetenv("RH_TEST_SECRET");
}

static void test_record__written_safely_without_secrets(void)
{
	struct fx f;
	json_t *rec = NULL, *back;
	json_error_t jerr;
	char path[4200];
	char *text;
	struct stat st;
	DIR *dir;
	struct dirent *de;
	int entries = 0;

	setenv("RH_TEST_SECRET", SECRET, 1);
	CU_ASSERT_EQUAL_FATAL(fx_drill(&f, runbook_json, true), 0);
	/* the secret really went through the steps */
	CU_ASSERT(strstr(json_string_value(json_object_get(f.d.results[0].outputs, "tok")),
			 SECRET) != NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f.d.results[2].error);
	CU_ASSERT(strstr(f.d.results[2].error, SECRET) != NULL);

	CU_ASSERT_EQUAL_FATAL(rh_record_build(&rec, &f.d), 0);
	CU_ASSERT_EQUAL_FATAL(rh_record_write(&f.d, rec), 0);
	snprintf(path, sizeof(path), "%s/record.json", f.d.dir);
	CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
	back = json_load_file(path, 0, &jerr);
	CU_ASSERT_PTR_NOT_NULL_FATAL(back);
	CU_ASSERT(json_equal(back, rec));
	text = slurp(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT(strstr(text, SECRET) == NULL);
	CU_ASSERT(strstr(text, "[redacted]") != NULL);
	CU_ASSERT(strstr(text, "x-[redacted]-y") != NULL);
	free(text);

	/* a second write replaces the record and leaves no temporary behind */
	CU_ASSERT_EQUAL(rh_record_write(&f.d, rec), 0);
	dir = opendir(f.d.dir);
	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.' && (!de->d_name[1] || strcmp(de->d_name, "..") == 0))
			continue;
		entries++;
		CU_ASSERT(strcmp(de->d_name, "record.json") == 0 ||
			  strcmp(de->d_name, "steps") == 0);
	}
	closedir(dir);
	CU_ASSERT_EQUAL(entries, 2);

	json_decref(back);
	json_decref(rec);
	fx_free(&f);
	unsetenv("RH_TEST_SECRET");
}

static void test_record__write_failure(void)
{
	struct fx f;
	json_t *rec = NULL;

	CU_ASSERT_EQUAL_FATAL(fx_drill(&f,
				       "{\"rehydra\": 1, \"name\": \"w\", \"steps\": ["
				       "{\"id\": \"a\", \"do\": \"wait\", \"seconds\": 0.01}]}",
				       false),
			      0);
	/* before the run: nothing restored, numbers are null, steps pending */
	CU_ASSERT_EQUAL_FATAL(rh_record_build(&rec, &f.d), 0);
	CU_ASSERT(json_is_null(json_object_get(rec, "rto_s")));
	CU_ASSERT(json_is_null(json_object_get(rec, "rto_target_s")));
	CU_ASSERT(json_is_null(json_object_get(rec, "restored_by")));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
				   json_array_get(json_object_get(rec, "steps"), 0), "status")),
			       "pending");
	/* the drill directory vanished: a clear error, not a crash */
	rh_test_rm_rf(f.d.dir);
	CU_ASSERT_EQUAL(rh_record_write(&f.d, rec), RH_EIO);
	CU_ASSERT(strstr(rh_error_last(), f.d.dir) != NULL);
	json_decref(rec);
	fx_free(&f);
}

static double num(const json_t *o, const char *k)
{
	return json_number_value(json_object_get(o, k));
}

/* The cloud RTO split by the phases the instance reported (outputs.boot of
 * a teardown), around the end of the step that placed the target. */
static void test_record__rto_breakdown_from_boot_phases(void)
{
	struct fx f;
	json_t *rec = NULL, *b;
	const double t0 = 1764720000.0;

	CU_ASSERT_EQUAL_FATAL(fx_drill(&f,
				       "{\"rehydra\": 1, \"name\": \"b\", \"steps\": ["
				       "{\"id\": \"prov\", \"do\": \"wait\", \"seconds\": 0.01},"
				       "{\"id\": \"probe\", \"do\": \"wait\", \"seconds\": 0.01},"
				       "{\"id\": \"down\", \"do\": \"wait\", \"seconds\": 0.01}]}",
				       false),
			      0);
	/* no phases (a local target): no breakdown */
	CU_ASSERT_EQUAL_FATAL(rh_record_build(&rec, &f.d), 0);
	CU_ASSERT(json_is_null(json_object_get(rec, "rto_breakdown")));
	json_decref(rec);

	f.d.t0_wall.tv_sec = (time_t)t0;
	f.d.t0_wall.tv_nsec = 0;
	f.d.results[0].start_s = 0;
	f.d.results[0].end_s = 100;
	json_decref(f.d.results[0].outputs);
	f.d.results[0].outputs = json_pack("{s:{s:s}}", "placement", "provider", "aws");
	/* a boot that failed once (sha256) and was restarted by systemd */
	json_decref(f.d.results[2].outputs);
	f.d.results[2].outputs = json_pack(
	    "{s:{s:[{s:s,s:f},{s:s,s:f},{s:s,s:f},{s:s,s:f},{s:s,s:f},{s:s,s:f},{s:s,s:f},"
	    "{s:s,s:f}]}}",
	    "boot", "phases", "phase", "booted", "at", t0 + 130, "phase", "syncing", "at", t0 + 150,
	    "phase", "failed", "at", t0 + 155, "phase", "booted", "at", t0 + 165, "phase",
	    "syncing", "at", t0 + 170, "phase", "verifying", "at", t0 + 250, "phase", "starting",
	    "at", t0 + 262, "phase", "serving", "at", t0 + 390);
	f.d.restored = true;
	f.d.rto_s = 400;
	CU_ASSERT_EQUAL_FATAL(rh_record_build(&rec, &f.d), 0);
	b = json_object_get(rec, "rto_breakdown");
	CU_ASSERT_FATAL(json_is_object(b));
	CU_ASSERT_DOUBLE_EQUAL(num(b, "provision_s"), 100, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(num(b, "boot_s"), 30, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(num(b, "wait_for_model_s"), 40, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(num(b, "model_sync_s"), 80, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(num(b, "verification_s"), 12, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(num(b, "stack_start_s"), 128, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(num(b, "first_answer_s"), 10, 1e-6);
	/* the segments add up to the RTO */
	CU_ASSERT_DOUBLE_EQUAL(num(b, "provision_s") + num(b, "boot_s") +
				   num(b, "wait_for_model_s") + num(b, "model_sync_s") +
				   num(b, "verification_s") + num(b, "stack_start_s") +
				   num(b, "first_answer_s"),
			       num(rec, "rto_s"), 1e-6);
	json_decref(rec);

	/* a boot that never got to serve: the later segments are null */
	json_decref(f.d.results[2].outputs);
	f.d.results[2].outputs =
	    json_pack("{s:{s:[{s:s,s:f},{s:s,s:f}]}}", "boot", "phases", "phase", "booted", "at",
		      t0 + 130, "phase", "syncing", "at", t0 + 150);
	f.d.restored = false;
	CU_ASSERT_EQUAL_FATAL(rh_record_build(&rec, &f.d), 0);
	b = json_object_get(rec, "rto_breakdown");
	CU_ASSERT_DOUBLE_EQUAL(num(b, "wait_for_model_s"), 20, 1e-6);
	CU_ASSERT(json_is_null(json_object_get(b, "model_sync_s")));
	CU_ASSERT(json_is_null(json_object_get(b, "first_answer_s")));
	json_decref(rec);
	fx_free(&f);
}

RH_TEST_MAIN("record", {"test_record__fields_and_types", test_record__fields_and_types},
	     {"test_record__written_safely_without_secrets",
	      test_record__written_safely_without_secrets},
	     {"test_record__write_failure", test_record__write_failure},
	     {"test_record__rto_breakdown_from_boot_phases",
	      test_record__rto_breakdown_from_boot_phases})
