/*
 * test_local.c - the `local` provider adapter, driven as the engine would:
 * a provider context from the table, provider calls built by hand (only
 * provider.h: the adapter sees no engine structure).
 *
 * It checks what a drill relies on: provision gives a port and a private
 * workspace and is idempotent; deploy starts the stack in its own process
 * group with a clean environment and fails clearly when the stack dies at
 * once; teardown kills the whole group and removes the workspace, and is
 * fine twice, without provision, or after a partial one.
 */
#include "testlib.h"

#include "cancel.h"
#include "clock.h"
#include "error.h"
#include "provider.h"
#include "sink.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <unistd.h>

struct fx {
	char *tmp;
	char *state;
	char *drill_dir;
	json_t *target;
	struct rh_provider_ctx *p;
	struct rh_cancel cancel;
	json_t *outputs;
	struct rh_provider_call s;
};

static void fx_init(struct fx *f, json_t *target)
{
	const struct rh_provider_ops *ops = rh_provider_find("local");

	memset(f, 0, sizeof(*f));
	CU_ASSERT_PTR_NOT_NULL_FATAL(ops);
	CU_ASSERT_PTR_EQUAL(ops, &rh_provider_local);
	f->tmp = rh_test_tmpdir();
	f->state = rh_test_path(f->tmp, "state");
	f->drill_dir = rh_test_path(f->tmp, "drill");
	CU_ASSERT_EQUAL_FATAL(mkdir(f->drill_dir, 0700), 0);
	f->target =
	    target ? target : json_pack("{s:s, s:s}", "provider", "local", "region", "local");
	CU_ASSERT_EQUAL_FATAL(rh_provider_ctx_new(&f->p, ops, f->target,
						  "20260101T000000Z-t-abc123", f->state,
						  f->drill_dir),
			      0);
	CU_ASSERT_EQUAL_FATAL(rh_cancel_init(&f->cancel), 0);
	f->outputs = json_object();
	f->s = (struct rh_provider_call)RH_PROVIDER_CALL_INIT;
	f->s.deadline = rh_clock_mono() + 60;
	f->s.cancel = &f->cancel;
	f->s.grace_s = 2.0;
	f->s.outputs = f->outputs;
	f->s.target = f->target;
	f->s.log_prefix = f->drill_dir;
}

static void fx_free(struct fx *f)
{
	rh_provider_ctx_free(f->p);
	rh_cancel_clear(&f->cancel);
	json_decref(f->outputs);
	json_decref(f->target);
	rh_test_rm_rf(f->tmp);
	free(f->drill_dir);
	free(f->state);
	free(f->tmp);
}

static bool is_dir(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static void test_local__table(void)
{
	const struct rh_provider_ops *ops = rh_provider_find("local");
	size_t n = 0;

	CU_ASSERT_PTR_NOT_NULL_FATAL(ops);
	CU_ASSERT_PTR_NULL(rh_provider_find("nosuch"));
	CU_ASSERT_PTR_NULL(rh_provider_find(NULL));
	for (size_t i = 0; rh_providers[i]; i++)
		n++;
	CU_ASSERT(n >= 1);
	CU_ASSERT_EQUAL(ops->version, RH_PROVIDER_OPS_VERSION);
	CU_ASSERT_PTR_NOT_NULL(ops->provision);
	CU_ASSERT_PTR_NOT_NULL(ops->sink_open);
	CU_ASSERT_PTR_NOT_NULL(ops->deploy);
	CU_ASSERT_PTR_NOT_NULL(ops->teardown);
	CU_ASSERT_STRING_EQUAL(ops->output_keys[0], "host");
	CU_ASSERT_STRING_EQUAL(ops->output_keys[1], "port");
	CU_ASSERT_STRING_EQUAL(ops->output_keys[2], "workspace");
	CU_ASSERT_PTR_NULL(ops->output_keys[3]);
	CU_ASSERT_STRING_EQUAL(ops->target_keys[0], "workspace_root");

	/* validate: workspace_root must be an absolute path string. */
	struct rh_diags d = RH_DIAGS_INIT;
	json_t *t = json_pack("{s:s, s:i}", "provider", "local", "workspace_root", 3);

	CU_ASSERT_EQUAL(ops->validate(ops, t, "/target", &d), 0);
	CU_ASSERT_EQUAL(d.count, 1);
	if (d.count)
		CU_ASSERT_STRING_EQUAL(d.items[0].pointer, "/target/workspace_root");
	rh_diags_clear(&d);
	json_object_set_new(t, "workspace_root", json_string("relative/dir"));
	CU_ASSERT_EQUAL(ops->validate(ops, t, "/target", &d), 0);
	CU_ASSERT_EQUAL(d.count, 1);
	rh_diags_clear(&d);
	json_object_set_new(t, "workspace_root", json_string("/srv/ws"));
	CU_ASSERT_EQUAL(ops->validate(ops, t, "/target", &d), 0);
	CU_ASSERT_EQUAL(d.count, 0);
	rh_diags_clear(&d);
	json_decref(t);
}

static void test_local__provision(void)
{
	struct fx f;
	const char *ws;
	json_int_t port;
	char *want;
	struct rh_sink *sink = NULL;
	struct stat sb;

	fx_init(&f, NULL);
	CU_ASSERT_EQUAL_FATAL(f.p->ops->provision(f.p, &f.s), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(f.outputs, "host")), "127.0.0.1");
	port = json_integer_value(json_object_get(f.outputs, "port"));
	CU_ASSERT(json_is_integer(json_object_get(f.outputs, "port")));
	CU_ASSERT(port > 0 && port < 65536);
	ws = json_string_value(json_object_get(f.outputs, "workspace"));
	CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
	CU_ASSERT_EQUAL(ws[0], '/');
	want = rh_test_path(f.state, "workspaces/20260101T000000Z-t-abc123");
	CU_ASSERT_STRING_EQUAL(ws, want);
	CU_ASSERT(is_dir(ws));
	CU_ASSERT_EQUAL(stat(ws, &sb), 0);
	CU_ASSERT_EQUAL(sb.st_mode & 0777, 0700);
	/* The provider's own outputs match the step's. */
	CU_ASSERT(json_equal(f.p->outputs, f.outputs));

	/* Provision again (a retry): same workspace, same port. */
	json_object_clear(f.outputs);
	CU_ASSERT_EQUAL(f.p->ops->provision(f.p, &f.s), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(f.outputs, "port")), port);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(f.outputs, "workspace")), want);

	/* The sink lives in the workspace. */
	CU_ASSERT_EQUAL_FATAL(f.p->ops->sink_open(&sink, f.p, &f.s), 0);
	{
		char *url = NULL;

		CU_ASSERT(asprintf(&url, "file://%s/model", want) > 0);
		CU_ASSERT_STRING_EQUAL(sink->url, url);
		free(url);
	}
	rh_sink_close(sink);

	CU_ASSERT_EQUAL(f.p->ops->teardown(f.p, &f.s), 0);
	CU_ASSERT_FALSE(is_dir(want));
	/* After teardown there is no sink to open. */
	CU_ASSERT_EQUAL(f.p->ops->sink_open(&sink, f.p, &f.s), RH_EINVAL);
	CU_ASSERT_PTR_NULL(sink);
	free(want);
	fx_free(&f);
}

static void test_local__workspace_root(void)
{
	struct fx f;
	char *tmp = rh_test_tmpdir();
	char *root = rh_test_path(tmp, "a/b");
	char *want = rh_test_path(root, "20260101T000000Z-t-abc123");
	json_t *t = json_pack("{s:s, s:s, s:s}", "provider", "local", "region", "local",
			      "workspace_root", root);

	fx_init(&f, t);
	CU_ASSERT_EQUAL(f.p->ops->provision(f.p, &f.s), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(f.outputs, "workspace")), want);
	CU_ASSERT(is_dir(want));
	CU_ASSERT_EQUAL(f.p->ops->teardown(f.p, &f.s), 0);
	CU_ASSERT_FALSE(is_dir(want));
	CU_ASSERT(is_dir(root)); /* only the drill's own workspace goes */
	fx_free(&f);

	/* A workspace path taken by a file is refused, not overwritten. */
	json_t *t2 = json_pack("{s:s, s:s, s:s}", "provider", "local", "region", "local",
			       "workspace_root", root);

	rh_test_write_file(want, "not a dir");
	fx_init(&f, t2);
	CU_ASSERT_EQUAL(f.p->ops->provision(f.p, &f.s), RH_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), want));
	fx_free(&f);

	rh_test_rm_rf(tmp);
	free(want);
	free(root);
	free(tmp);
}

static pid_t read_pidfile(const char *ws)
{
	char *path = rh_test_path(ws, "stack.pid");
	FILE *fp = fopen(path, "r");
	long pid = 0;

	if (fp) {
		if (fscanf(fp, "%ld", &pid) != 1)
			pid = 0;
		fclose(fp);
	}
	free(path);
	return (pid_t)pid;
}

static void test_local__deploy_and_teardown(void)
{
	struct fx f;
	json_t *cmd = json_pack("[s, s]", "sleep", "30");
	json_t *env = json_pack("{s:s}", "RH_STACK_VAR", "hello");
	char *ws;
	pid_t pid;
	pid_t pid2;
	double t0;

	setenv("RH_TEST_SECRET", "must-not-leak", 1);
	fx_init(&f, NULL);
	CU_ASSERT_EQUAL_FATAL(f.p->ops->provision(f.p, &f.s), 0);
	ws = strdup(json_string_value(json_object_get(f.outputs, "workspace")));

	CU_ASSERT_EQUAL_FATAL(f.p->ops->deploy(f.p, &f.s, cmd, env), 0);
	pid = read_pidfile(ws);
	CU_ASSERT(pid > 0);
	CU_ASSERT_EQUAL(kill(pid, 0), 0);
	CU_ASSERT_EQUAL(getpgid(pid), pid); /* its own process group */

	/* The stack's environment: the clean base plus stack.env, nothing else. */
	{
		char path[64];
		char buf[8192];
		size_t n;
		bool var = false;
		bool secret = false;
		bool path_set = false;
		FILE *fp;

		snprintf(path, sizeof(path), "/proc/%ld/environ", (long)pid);
		fp = fopen(path, "r");
		CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
		n = fread(buf, 1, sizeof(buf) - 1, fp);
		fclose(fp);
		buf[n] = '\0';
		for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
			var |= strcmp(buf + i, "RH_STACK_VAR=hello") == 0;
			secret |= strncmp(buf + i, "RH_TEST_SECRET=", 15) == 0;
			path_set |= strncmp(buf + i, "PATH=", 5) == 0;
		}
		CU_ASSERT_TRUE(var);
		CU_ASSERT_TRUE(path_set);
		CU_ASSERT_FALSE(secret);
	}
	/* Its working directory is the workspace. */
	{
		char link[64];
		char cwd[4096];
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/%ld/cwd", (long)pid);
		n = readlink(link, cwd, sizeof(cwd) - 1);
		CU_ASSERT(n > 0);
		cwd[n > 0 ? n : 0] = '\0';
		CU_ASSERT_STRING_EQUAL(cwd, ws);
	}

	/* A retried deploy while the stack runs leaves it alone. */
	CU_ASSERT_EQUAL(f.p->ops->deploy(f.p, &f.s, cmd, env), 0);
	pid2 = read_pidfile(ws);
	CU_ASSERT_EQUAL(pid2, pid);

	t0 = rh_clock_mono();
	CU_ASSERT_EQUAL(f.p->ops->teardown(f.p, &f.s), 0);
	CU_ASSERT(rh_clock_mono() - t0 < 5); /* sleep dies on SIGTERM */
	errno = 0;
	CU_ASSERT_EQUAL(kill(-pid, 0), -1);
	CU_ASSERT_EQUAL(errno, ESRCH);
	CU_ASSERT_FALSE(is_dir(ws));

	/* Teardown twice is fine. */
	CU_ASSERT_EQUAL(f.p->ops->teardown(f.p, &f.s), 0);
	/* Deploy after teardown says what is missing. */
	CU_ASSERT_EQUAL(f.p->ops->deploy(f.p, &f.s, cmd, env), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "provision"));

	unsetenv("RH_TEST_SECRET");
	free(ws);
	json_decref(env);
	json_decref(cmd);
	fx_free(&f);
}

static void test_local__free_kills_stack(void)
{
	struct fx f;
	json_t *cmd = json_pack("[s, s]", "sleep", "30");
	pid_t pid;
	char *ws;

	fx_init(&f, NULL);
	CU_ASSERT_EQUAL_FATAL(f.p->ops->provision(f.p, &f.s), 0);
	ws = strdup(json_string_value(json_object_get(f.outputs, "workspace")));
	CU_ASSERT_EQUAL_FATAL(f.p->ops->deploy(f.p, &f.s, cmd, NULL), 0);
	pid = read_pidfile(ws);
	CU_ASSERT(pid > 0);
	/* No teardown: releasing the context must not leave the stack running. */
	rh_provider_ctx_free(f.p);
	f.p = NULL;
	errno = 0;
	CU_ASSERT_EQUAL(kill(-pid, 0), -1);
	CU_ASSERT_EQUAL(errno, ESRCH);
	free(ws);
	json_decref(cmd);
	fx_free(&f);
}

static void test_local__deploy_failures(void)
{
	struct fx f;
	json_t *dies = json_pack("[s, s]", "ls", "/nonexistent-rehydra-test-path");
	json_t *missing = json_pack("[s]", "/nonexistent/rehydra-stack");
	json_t *bad = json_pack("[s, i]", "sleep", 30);
	json_t *empty = json_array();
	int err;

	fx_init(&f, NULL);
	/* Before provision: a clear error. */
	CU_ASSERT_EQUAL(f.p->ops->deploy(f.p, &f.s, dies, NULL), RH_EINVAL);
	CU_ASSERT_EQUAL_FATAL(f.p->ops->provision(f.p, &f.s), 0);

	/* `ls` exits within the early-exit window unless the machine is very
	 * busy; then deploy succeeds and we try again rather than flake. */
	for (int i = 0; i < 5; i++) {
		err = f.p->ops->deploy(f.p, &f.s, dies, NULL);
		if (err < 0)
			break;
		CU_ASSERT_EQUAL(f.p->ops->teardown(f.p, &f.s), 0);
		CU_ASSERT_EQUAL_FATAL(f.p->ops->provision(f.p, &f.s), 0);
	}
	CU_ASSERT(err < 0);
	{
		char *pidfile = rh_test_path(
		    json_string_value(json_object_get(f.outputs, "workspace")), "stack.pid");

		CU_ASSERT_NOT_EQUAL(access(pidfile, F_OK), 0);
		free(pidfile);
	}
	/* The message carries the stack's own last stderr line. */
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "No such file or directory"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "exited with status"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "stack.stderr"));
	if (getenv("RH_TEST_VERBOSE"))
		fprintf(stderr, "\n  [early exit] %s", rh_error_last());

	CU_ASSERT_EQUAL(f.p->ops->deploy(f.p, &f.s, missing, NULL), RH_ENOTFOUND);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "/nonexistent/rehydra-stack"));
	CU_ASSERT_EQUAL(f.p->ops->deploy(f.p, &f.s, bad, NULL), RH_EINVAL);
	CU_ASSERT_EQUAL(f.p->ops->deploy(f.p, &f.s, empty, NULL), RH_EINVAL);

	/* A cancelled deploy does not leave the stack behind. */
	rh_cancel_fire(&f.cancel);
	json_t *cmd = json_pack("[s, s]", "sleep", "30");

	err = f.p->ops->deploy(f.p, &f.s, cmd, NULL);
	CU_ASSERT_EQUAL(err, RH_ECANCELLED);
	{
		char *pidfile = rh_test_path(
		    json_string_value(json_object_get(f.outputs, "workspace")), "stack.pid");

		CU_ASSERT_NOT_EQUAL(access(pidfile, F_OK), 0);
		free(pidfile);
	}
	CU_ASSERT_EQUAL(f.p->ops->teardown(f.p, &f.s), 0);
	json_decref(cmd);

	json_decref(empty);
	json_decref(bad);
	json_decref(missing);
	json_decref(dies);
	fx_free(&f);
}

static void test_local__teardown_without_provision(void)
{
	struct fx f;
	char *ws;

	fx_init(&f, NULL);
	CU_ASSERT_EQUAL(f.p->ops->teardown(f.p, &f.s), 0);
	CU_ASSERT_EQUAL(f.p->ops->teardown(f.p, &f.s), 0);
	fx_free(&f);

	/* A provision that died half-way (the process crashed after making the
	 * workspace): a new context's teardown still finds and removes it. */
	fx_init(&f, NULL);
	ws = rh_test_path(f.state, "workspaces/20260101T000000Z-t-abc123/model/sub");
	{
		char *p = strdup(ws);

		for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
			*s = '\0';
			mkdir(p, 0700);
			*s = '/';
		}
		mkdir(p, 0700);
		free(p);
	}
	CU_ASSERT(is_dir(ws));
	{
		char *file = rh_test_path(ws, "f");
		char *link = rh_test_path(ws, "escape");

		rh_test_write_file(file, "x");
		/* A symlink inside is removed as a link, its target untouched. */
		CU_ASSERT_EQUAL(symlink(f.drill_dir, link), 0);
		free(link);
		free(file);
	}
	CU_ASSERT_EQUAL(f.p->ops->teardown(f.p, &f.s), 0);
	CU_ASSERT_FALSE(is_dir(ws));
	CU_ASSERT(is_dir(f.drill_dir));
	free(ws);
	ws = rh_test_path(f.state, "workspaces/20260101T000000Z-t-abc123");
	CU_ASSERT_FALSE(is_dir(ws));
	free(ws);
	fx_free(&f);
}

RH_TEST_MAIN("local", {"table", test_local__table}, {"provision", test_local__provision},
	     {"workspace_root", test_local__workspace_root},
	     {"deploy_and_teardown", test_local__deploy_and_teardown},
	     {"free_kills_stack", test_local__free_kills_stack},
	     {"deploy_failures", test_local__deploy_failures},
	     {"teardown_without_provision", test_local__teardown_without_provision})
