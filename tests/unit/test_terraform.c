/*
 * test_terraform.c - the machine-readable UI parser and the driver.
 *
 * The transcripts under tests/data/terraform/ follow Terraform's documented
 * -json format (website/docs/internals/machine-readable-ui); the driver
 * cases run tests/doubles/terraform, which replays them and checks argv
 * and the environment it was given.
 */
#include "clock.h"
#include "error.h"
#include "terraform.h"
#include "testlib.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *data_path(const char *rel)
{
	const char *base = getenv("RH_TESTDATA");

	CU_ASSERT_PTR_NOT_NULL_FATAL(base);
	return rh_test_path(base, rel);
}

static json_t *res(struct rh_tf_stream *st, const char *addr)
{
	return json_object_get(st->resources, addr);
}

static double elapsed(struct rh_tf_stream *st, const char *addr)
{
	return json_number_value(json_object_get(res(st, addr), "elapsed_s"));
}

static const char *res_status(struct rh_tf_stream *st, const char *addr)
{
	const char *s = json_string_value(json_object_get(res(st, addr), "status"));

	return s ? s : "";
}

static void feed(struct rh_tf_stream *st, const char *line)
{
	CU_ASSERT_EQUAL(rh_tf_stream_feed(st, line, strlen(line)), 0);
}

static void test_terraform__success_transcript(void)
{
	struct rh_tf_stream st;
	char *path = data_path("terraform/success/apply.jsonl");
	char errs[256];

	CU_ASSERT_EQUAL_FATAL(rh_tf_stream_init(&st), 0);
	CU_ASSERT_EQUAL(rh_tf_stream_feed_file(&st, path), 0);
	CU_ASSERT_EQUAL(json_object_size(st.resources), 5);
	CU_ASSERT_STRING_EQUAL(res_status(&st, "module.rehydra.aws_instance.gpu"), "complete");
	CU_ASSERT_DOUBLE_EQUAL(elapsed(&st, "module.rehydra.aws_instance.gpu"), 42, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(elapsed(&st, "module.rehydra.aws_subnet.this"), 11, 1e-9);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
				   res(&st, "module.rehydra.aws_vpc.this"), "action")),
			       "create");
	/* the apply summary replaced the plan's */
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(st.summary, "operation")),
			       "apply");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(st.summary, "add")), 5);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
				   json_object_get(st.outputs, "endpoint"), "value")),
			       "http://192.0.2.10:8000");
	CU_ASSERT_STRING_EQUAL(st.tf_version, "1.8.5");
	CU_ASSERT_STRING_EQUAL(st.ui_version, "1.2");
	CU_ASSERT_EQUAL(st.skipped, 1);   /* the plain-text provider line */
	CU_ASSERT(st.unknown >= 3);       /* planned_change, log, a future type */
	CU_ASSERT_EQUAL(rh_tf_stream_errors(&st, errs, sizeof(errs)), 0);
	CU_ASSERT_STRING_EQUAL(errs, "");
	CU_ASSERT_PTR_NOT_NULL(strstr(st.last_event, "aws_instance.gpu"));
	rh_tf_stream_release(&st);
	free(path);
}

static void test_terraform__diagnostic_names_resource(void)
{
	struct rh_tf_stream st;
	char *path = data_path("terraform/apply-fails/apply.jsonl");
	char errs[2048];

	CU_ASSERT_EQUAL_FATAL(rh_tf_stream_init(&st), 0);
	CU_ASSERT_EQUAL(rh_tf_stream_feed_file(&st, path), 0);
	CU_ASSERT_STRING_EQUAL(res_status(&st, "module.rehydra.aws_instance.gpu"), "errored");
	CU_ASSERT_DOUBLE_EQUAL(elapsed(&st, "module.rehydra.aws_instance.gpu"), 14, 1e-9);
	CU_ASSERT_EQUAL(rh_tf_stream_errors(&st, errs, sizeof(errs)), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(errs, "module.rehydra.aws_instance.gpu: creating EC2 "
					    "Instance: InsufficientInstanceCapacity"));
	/* the multi-line detail is folded into one line */
	CU_ASSERT_PTR_NOT_NULL(strstr(errs, "additional capacity. You can currently"));
	CU_ASSERT_PTR_NULL(strchr(errs, '\n'));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_array_get(st.errors, 0), "line")),
			196);
	rh_tf_stream_release(&st);
	free(path);
}

static void test_terraform__diagnostic_without_address(void)
{
	struct rh_tf_stream st;
	char *path = data_path("terraform/destroy-fails/destroy.jsonl");
	char errs[2048];

	CU_ASSERT_EQUAL_FATAL(rh_tf_stream_init(&st), 0);
	CU_ASSERT_EQUAL(rh_tf_stream_feed_file(&st, path), 0);
	CU_ASSERT_STRING_EQUAL(res_status(&st, "module.rehydra.aws_instance.gpu"), "complete");
	CU_ASSERT_DOUBLE_EQUAL(elapsed(&st, "module.rehydra.aws_instance.gpu"), 31, 1e-9);
	CU_ASSERT_EQUAL(rh_tf_stream_errors(&st, errs, sizeof(errs)), 1);
	/* no "address" in the diagnostic: the errored resource is named */
	CU_ASSERT_PTR_NOT_NULL(strstr(errs, "module.rehydra.aws_s3_bucket.artifacts: deleting "
					    "S3 Bucket"));
	CU_ASSERT_PTR_NOT_NULL(strstr(errs, "BucketNotEmpty"));
	rh_tf_stream_release(&st);
	free(path);
}

static void test_terraform__message_types(void)
{
	struct rh_tf_stream st;
	char errs[1024];

	CU_ASSERT_EQUAL_FATAL(rh_tf_stream_init(&st), 0);
	feed(&st, "{\"type\":\"version\",\"terraform\":\"1.9.0\",\"ui\":\"1.2\"}\n");
	feed(&st, "{\"type\":\"apply_start\",\"hook\":{\"resource\":{\"addr\":\"a.b\"},"
		  "\"action\":\"create\"}}");
	CU_ASSERT_STRING_EQUAL(res_status(&st, "a.b"), "started");
	feed(&st, "{\"type\":\"apply_progress\",\"hook\":{\"resource\":{\"addr\":\"a.b\"},"
		  "\"action\":\"create\",\"elapsed_seconds\":10}}");
	CU_ASSERT_DOUBLE_EQUAL(elapsed(&st, "a.b"), 10, 1e-9);
	feed(&st, "{\"type\":\"apply_complete\",\"hook\":{\"resource\":{\"addr\":\"a.b\"},"
		  "\"action\":\"create\",\"elapsed_seconds\":12,\"unknown\":[1,2]}}");
	CU_ASSERT_STRING_EQUAL(res_status(&st, "a.b"), "complete");
	/* a late progress message does not demote a finished resource */
	feed(&st, "{\"type\":\"apply_progress\",\"hook\":{\"resource\":{\"addr\":\"a.b\"},"
		  "\"action\":\"create\",\"elapsed_seconds\":13}}");
	CU_ASSERT_STRING_EQUAL(res_status(&st, "a.b"), "complete");
	feed(&st, "{\"type\":\"apply_errored\",\"hook\":{\"resource\":{\"addr\":\"c.d\"},"
		  "\"action\":\"delete\",\"elapsed_seconds\":3}}");
	CU_ASSERT_STRING_EQUAL(res_status(&st, "c.d"), "errored");
	feed(&st, "{\"type\":\"diagnostic\",\"diagnostic\":{\"severity\":\"warning\","
		  "\"summary\":\"deprecated\",\"detail\":\"\"}}");
	CU_ASSERT_EQUAL(json_array_size(st.warnings), 1);
	CU_ASSERT_EQUAL(json_array_size(st.errors), 0);
	feed(&st, "{\"type\":\"diagnostic\",\"diagnostic\":{\"severity\":\"error\","
		  "\"summary\":\"boom\",\"detail\":\"it broke\"}}");
	feed(&st, "{\"type\":\"change_summary\",\"changes\":{\"add\":1,\"change\":0,"
		  "\"remove\":1,\"operation\":\"apply\"}}");
	feed(&st, "{\"type\":\"outputs\",\"outputs\":{\"x\":{\"value\":\"y\"}}}");
	/* ignored: unknown types, hooks without a resource, non-objects, blanks */
	feed(&st, "{\"type\":\"resource_drift\",\"change\":{}}");
	feed(&st, "{\"type\":\"apply_start\",\"hook\":{}}");
	feed(&st, "{\"no_type\":true}");
	feed(&st, "[1,2,3]");
	feed(&st, "not json at all");
	feed(&st, "");
	feed(&st, "\r\n");
	CU_ASSERT_EQUAL(json_object_size(st.resources), 2);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(st.summary, "remove")), 1);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(st.outputs, "x"),
								 "value")),
			       "y");
	CU_ASSERT_EQUAL(st.skipped, 2);
	CU_ASSERT_EQUAL(st.unknown, 2);
	CU_ASSERT_EQUAL(rh_tf_stream_errors(&st, errs, sizeof(errs)), 1);
	CU_ASSERT_STRING_EQUAL(errs, "c.d: boom: it broke");
	/* a tiny buffer is truncated, never overrun */
	CU_ASSERT_EQUAL(rh_tf_stream_errors(&st, errs, 5), 1);
	CU_ASSERT_EQUAL(strlen(errs), 4);
	rh_tf_stream_release(&st);
}

static void test_terraform__ui_major_version(void)
{
	struct rh_tf_stream st;
	const char *v2 = "{\"type\":\"version\",\"terraform\":\"9.0.0\",\"ui\":\"2.0\"}";

	CU_ASSERT_EQUAL_FATAL(rh_tf_stream_init(&st), 0);
	CU_ASSERT_EQUAL(rh_tf_stream_feed(&st, v2, strlen(v2)), RH_EUNSUPPORTED);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "UI 2.0"));
	rh_tf_stream_release(&st);
	CU_ASSERT_EQUAL_FATAL(rh_tf_stream_init(&st), 0);
	feed(&st, "{\"type\":\"version\",\"terraform\":\"0.15.4\",\"ui\":\"0.1.0\"}");
	rh_tf_stream_release(&st);
}

static void test_terraform__find(void)
{
	char *tmp = rh_test_tmpdir();
	char *fake = rh_test_path(tmp, "tofu");
	char *noexec = rh_test_path(tmp, "notexec");
	char *saved_path = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
	char *out = NULL;

	rh_test_write_file(fake, "#!/bin/sh\nexit 0\n");
	chmod(fake, 0755);
	rh_test_write_file(noexec, "x");
	unsetenv("REHYDRA_TERRAFORM");

	/* nothing on PATH: the message says how to install one */
	setenv("PATH", "/nonexistent-rehydra-test", 1);
	CU_ASSERT_EQUAL(rh_tf_find(&out, NULL), RH_EINVAL);
	CU_ASSERT_PTR_NULL(out);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "install OpenTofu"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "REHYDRA_TERRAFORM"));

	/* tofu on PATH when terraform is not */
	setenv("PATH", tmp, 1);
	CU_ASSERT_EQUAL(rh_tf_find(&out, NULL), 0);
	CU_ASSERT_STRING_EQUAL(out, fake);
	free(out);

	/* the environment variable, then the option, win */
	setenv("PATH", "/nonexistent-rehydra-test", 1);
	setenv("REHYDRA_TERRAFORM", fake, 1);
	CU_ASSERT_EQUAL(rh_tf_find(&out, NULL), 0);
	free(out);
	CU_ASSERT_EQUAL(rh_tf_find(&out, noexec), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "target.terraform"));
	setenv("REHYDRA_TERRAFORM", noexec, 1);
	CU_ASSERT_EQUAL(rh_tf_find(&out, NULL), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "REHYDRA_TERRAFORM"));
	unsetenv("REHYDRA_TERRAFORM");

	if (saved_path)
		setenv("PATH", saved_path, 1);
	free(saved_path);
	rh_test_rm_rf(tmp);
	free(tmp);
	free(fake);
	free(noexec);
}

static bool env_has(char **env, const char *entry)
{
	for (size_t i = 0; env[i]; i++)
		if (strcmp(env[i], entry) == 0)
			return true;
	return false;
}

static bool env_has_name(char **env, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; env[i]; i++)
		if (strncmp(env[i], name, n) == 0 && env[i][n] == '=')
			return true;
	return false;
}

static void test_terraform__environment(void)
{
	char **env = NULL;
	int tf_input = 0;

	setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value", 1);
	setenv("ALICLOUD_ACCESS_KEY", "ali", 1);
	setenv("NEBIUS_IAM_TOKEN", "neb", 1);
	setenv("TF_PLUGIN_CACHE_DIR", "/tmp/cache", 1);
	setenv("TF_INPUT", "1", 1);
	setenv("RH_TEST_CANARY_SECRET", "do-not-pass", 1);
	setenv("GITHUB_TOKEN", "nope", 1);
	CU_ASSERT_EQUAL_FATAL(rh_tf_env_build(&env), 0);
	CU_ASSERT(env_has(env, "AWS_SECRET_ACCESS_KEY=s3cr3t-value"));
	CU_ASSERT(env_has(env, "ALICLOUD_ACCESS_KEY=ali"));
	CU_ASSERT(env_has(env, "NEBIUS_IAM_TOKEN=neb"));
	CU_ASSERT(env_has(env, "TF_PLUGIN_CACHE_DIR=/tmp/cache"));
	CU_ASSERT(env_has(env, "TF_IN_AUTOMATION=1"));
	CU_ASSERT(env_has(env, "TF_INPUT=0"));
	CU_ASSERT(!env_has_name(env, "RH_TEST_CANARY_SECRET"));
	CU_ASSERT(!env_has_name(env, "GITHUB_TOKEN"));
	for (size_t i = 0; env[i]; i++)
		tf_input += strncmp(env[i], "TF_INPUT=", 9) == 0;
	CU_ASSERT_EQUAL(tf_input, 1);
	CU_ASSERT(rh_tf_env_passes("AWS_REGION"));
	CU_ASSERT(!rh_tf_env_passes("AWS_"));
	CU_ASSERT(!rh_tf_env_passes("XAWS_REGION"));
	rh_tf_env_free(env);
	unsetenv("RH_TEST_CANARY_SECRET");
	unsetenv("GITHUB_TOKEN");
	unsetenv("TF_INPUT");
}

/* A directory that passes the double's "rendered" check. */
static char *fake_workdir(void)
{
	static const char *const files[] = { "main.tf.json", "terraform.tfvars.json",
					     "module/main.tf", "module/variables.tf",
					     "module/outputs.tf", "module/versions.tf", NULL };
	char *dir = rh_test_tmpdir();
	char *mod = rh_test_path(dir, "module");

	mkdir(mod, 0700);
	for (size_t i = 0; files[i]; i++) {
		char *p = rh_test_path(dir, files[i]);

		rh_test_write_file(p, "{}\n");
		free(p);
	}
	free(mod);
	return dir;
}

static int run_double(const char *dir, const char *scenario, const char *const *args,
		      struct rh_tf_stream *st, double deadline, int *exit_status)
{
	const char *src = getenv("RH_SRC");
	char *bin, *data, *prefix;
	struct rh_tf_run run = { 0 };
	int rc;

	CU_ASSERT_PTR_NOT_NULL_FATAL(src);
	bin = rh_test_path(src, "tests/doubles/terraform");
	data = data_path("terraform");
	prefix = rh_test_path(dir, "log");
	setenv("TF_DOUBLE_DATA", data, 1);
	setenv("TF_DOUBLE_SCENARIO", scenario, 1);
	run.bin = bin;
	run.dir = dir;
	run.args = args;
	run.log_prefix = prefix;
	run.deadline = deadline;
	run.stream = st;
	rc = rh_tf_run(&run);
	*exit_status = run.exit_status;
	free(bin);
	free(data);
	free(prefix);
	return rc;
}

static void test_terraform__run_double(void)
{
	static const char *const init[] = { "init", "-input=false", "-no-color", NULL };
	static const char *const apply[] = { "apply", "-auto-approve", "-input=false", "-json",
					     NULL };
	static const char *const bad[] = { "apply", "-json", NULL };
	char *dir = fake_workdir();
	struct rh_tf_stream st;
	int status;

	CU_ASSERT_EQUAL(run_double(dir, "success", init, NULL, 0, &status), 0);
	CU_ASSERT_EQUAL(status, 0);
	CU_ASSERT_EQUAL_FATAL(rh_tf_stream_init(&st), 0);
	CU_ASSERT_EQUAL(run_double(dir, "success", apply, &st, 0, &status), 0);
	CU_ASSERT_DOUBLE_EQUAL(elapsed(&st, "module.rehydra.aws_instance.gpu"), 42, 1e-9);
	rh_tf_stream_release(&st);

	/* a failing apply: RH_ERROR, and the stream holds the diagnostic */
	CU_ASSERT_EQUAL_FATAL(rh_tf_stream_init(&st), 0);
	CU_ASSERT_EQUAL(run_double(dir, "apply-fails", apply, &st, 0, &status), RH_ERROR);
	CU_ASSERT_EQUAL(status, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "terraform apply exited with status 1"));
	CU_ASSERT_EQUAL(json_array_size(st.errors), 1);
	rh_tf_stream_release(&st);

	/* the double refuses an apply without -auto-approve (exit 97) */
	CU_ASSERT_EQUAL(run_double(dir, "success", bad, NULL, 0, &status), RH_ERROR);
	CU_ASSERT_EQUAL(status, 97);
	rh_test_rm_rf(dir);
	free(dir);
}

static void test_terraform__run_deadline(void)
{
	static const char *const init[] = { "init", "-input=false", NULL };
	static const char *const apply[] = { "apply", "-auto-approve", "-input=false", "-json",
					     NULL };
	char *dir = fake_workdir();
	struct rh_tf_stream st;
	double t0;
	int status;

	CU_ASSERT_EQUAL(run_double(dir, "slow", init, NULL, 0, &status), 0);
	CU_ASSERT_EQUAL_FATAL(rh_tf_stream_init(&st), 0);
	t0 = rh_clock_mono();
	/* the slow scenario hangs for 30 s after replaying: the deadline stops it */
	CU_ASSERT_EQUAL(run_double(dir, "slow", apply, &st, t0 + 1.0, &status), RH_ETIMEOUT);
	CU_ASSERT(rh_clock_mono() - t0 < 15.0);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "timeout"));
	/* what was streamed before the stop was still read */
	CU_ASSERT_STRING_EQUAL(res_status(&st, "module.rehydra.aws_vpc.this"), "complete");
	rh_tf_stream_release(&st);
	rh_test_rm_rf(dir);
	free(dir);
}

RH_TEST_MAIN("terraform", { "success_transcript", test_terraform__success_transcript },
	     { "diagnostic_names_resource", test_terraform__diagnostic_names_resource },
	     { "diagnostic_without_address", test_terraform__diagnostic_without_address },
	     { "message_types", test_terraform__message_types },
	     { "ui_major_version", test_terraform__ui_major_version },
	     { "find", test_terraform__find }, { "environment", test_terraform__environment },
	     { "run_double", test_terraform__run_double },
	     { "run_deadline", test_terraform__run_deadline })
