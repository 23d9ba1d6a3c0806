/*
 * step_exec.c - the exec step: run one program (argv array, no shell).
 *
 * The child gets a clean environment (a few locale/path variables, the
 * drill's id and directory, and the step's own env), so a drill does not
 * depend on whatever the operator's shell exported and cannot leak it.
 * Output goes to <log_prefix>.stdout/.stderr; a JSON object on the last
 * non-empty stdout line becomes the step's outputs, which is how a script
 * hands values (an endpoint, a version) to later steps. On a timeout or an
 * interrupt the child's whole process group is stopped before returning.
 */
#include "clock.h"
#include "engine.h"
#include "error.h"
#include "process.h"
#include "step_run.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "banned.h"

#define RH_EXEC_STOP_GRACE_S 2.0
#define RH_EXEC_TAIL_MAX (64 * 1024) /* how much of stdout we read for outputs */
#define RH_EXEC_ERRLINE_MAX 200

static const char *const inherited_env[] = {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", NULL};

struct strv {
	char **v;
	size_t n;
};

static void strv_free(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* Appends "name=value", replacing an earlier entry of the same name. */
static int env_set(struct strv *s, const char *name, const char *value)
{
	size_t nlen = strlen(name);
	size_t len = nlen + strlen(value) + 2;
	char *kv = malloc(len);
	char **nv;

	if (!kv)
		return rh_error_set(RH_ENOMEM, "out of memory");
	snprintf(kv, len, "%s=%s", name, value);
	for (size_t i = 0; i < s->n; i++) {
		if (strncmp(s->v[i], name, nlen) == 0 && s->v[i][nlen] == '=') {
			free(s->v[i]);
			s->v[i] = kv;
			return 0;
		}
	}
	nv = realloc(s->v, (s->n + 2) * sizeof(*nv));
	if (!nv) {
		free(kv);
		return rh_error_set(RH_ENOMEM, "out of memory");
	}
	s->v = nv;
	s->v[s->n++] = kv;
	s->v[s->n] = NULL;
	return 0;
}

static int build_env(struct strv *env, const struct rh_step_ctx *ctx)
{
	json_t *extra = json_object_get(ctx->spec, "env");
	const char *key;
	json_t *val;
	int rc = 0;

	for (size_t i = 0; inherited_env[i]; i++) {
		const char *v = getenv(inherited_env[i]);

		if (v && (rc = env_set(env, inherited_env[i], v)) < 0)
			return rc;
	}
	if ((rc = env_set(env, "REHYDRA_DRILL_ID", ctx->drill->id)) < 0 ||
	    (rc = env_set(env, "REHYDRA_DRILL_DIR", ctx->drill->dir)) < 0)
		return rc;
	json_object_foreach(extra, key, val)
	{
		if (!json_is_string(val))
			return rh_error_set(RH_EINVAL, "step '%s': env.%s must be a string",
					    ctx->step->id, key);
		if ((rc = env_set(env, key, json_string_value(val))) < 0)
			return rc;
	}
	return rc;
}

/* Reads up to RH_EXEC_TAIL_MAX bytes from the end of `path`. *out is new
 * and NUL-terminated; *len excludes the NUL. */
static int read_tail(char **out, size_t *len, const char *path)
{
	struct stat st;
	off_t off = 0;
	size_t want, got = 0;
	char *buf = NULL;
	int fd, rc = 0;

	*out = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return rh_error_set_errno(RH_EIO, errno, "cannot read %s", path);
	if (fstat(fd, &st) < 0) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot read %s", path);
		goto done;
	}
	want = st.st_size > RH_EXEC_TAIL_MAX ? RH_EXEC_TAIL_MAX : (size_t)st.st_size;
	off = st.st_size - (off_t)want;
	buf = malloc(want + 1);
	if (!buf) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	while (got < want) {
		ssize_t n = pread(fd, buf + got, want - got, off + (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = rh_error_set_errno(RH_EIO, errno, "cannot read %s", path);
			goto done;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
	buf = NULL;
done:
	free(buf);
	close(fd);
	return rc;
}

/* Finds the last non-empty line of buf (modified in place); NULL if none.
 * `whole` says whether the window started at the start of a line. */
static char *last_line(char *buf, size_t len, bool whole)
{
	char *end = buf + len;
	char *start;

	while (end > buf &&
	       (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (end == buf)
		return NULL;
	*end = '\0';
	start = end;
	while (start > buf && start[-1] != '\n')
		start--;
	if (start == buf && !whole)
		return NULL; /* the line began before our window */
	while (*start == ' ' || *start == '\t')
		start++;
	return start;
}

static int parse_outputs(struct rh_step_ctx *ctx, const char *stdout_path)
{
	char *buf = NULL;
	size_t len;
	struct stat st;
	char *line;
	json_t *obj = NULL;
	int rc;

	rc = read_tail(&buf, &len, stdout_path);
	if (rc < 0)
		return rc;
	line = last_line(buf, len, stat(stdout_path, &st) == 0 && (size_t)st.st_size == len);
	if (line && line[0] == '{') {
		obj = json_loads(line, JSON_REJECT_DUPLICATES, NULL);
		if (json_is_object(obj) && json_object_update(ctx->outputs, obj) < 0)
			rc = rh_error_set(RH_ENOMEM, "out of memory");
	}
	json_decref(obj);
	free(buf);
	return rc;
}

/* The last non-empty line of stderr, trimmed for a message; "" if none. */
static void stderr_hint(char *out, size_t size, const char *stderr_path)
{
	char *buf = NULL;
	size_t len;
	char *line;

	out[0] = '\0';
	if (read_tail(&buf, &len, stderr_path) < 0) {
		rh_error_clear();
		return;
	}
	line = last_line(buf, len, true);
	if (line) {
		size_t n = strlen(line);

		if (n > RH_EXEC_ERRLINE_MAX)
			snprintf(out, size, ": %.*s...", RH_EXEC_ERRLINE_MAX, line);
		else
			snprintf(out, size, ": %s", line);
		for (char *p = out; *p; p++)
			if ((unsigned char)*p < 0x20)
				*p = ' ';
	}
	free(buf);
}

int rh_step_exec_run(struct rh_step_ctx *ctx)
{
	const struct rh_step *s = ctx->step;
	json_t *jargv = json_object_get(ctx->spec, "argv");
	json_t *jcwd = json_object_get(ctx->spec, "cwd");
	struct strv env = {NULL, 0};
	const char **argv = NULL;
	char *out_path = NULL, *err_path = NULL, *cwd = NULL;
	struct rh_child child = {.pid = 0, .pidfd = -1};
	struct rh_spawn_opts so = {0};
	size_t n, plen = strlen(ctx->log_prefix) + 8;
	char desc[96], hint[RH_EXEC_ERRLINE_MAX + 16];
	int rc = 0;

	if (!json_is_array(jargv) || json_array_size(jargv) == 0) {
		rc = rh_error_set(RH_EINVAL, "step '%s': argv must be a non-empty array", s->id);
		goto done;
	}
	n = json_array_size(jargv);
	argv = calloc(n + 1, sizeof(*argv));
	out_path = malloc(plen);
	err_path = malloc(plen);
	if (!argv || !out_path || !err_path) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		argv[i] = json_string_value(json_array_get(jargv, i));
		if (!argv[i]) {
			rc = rh_error_set(RH_EINVAL, "step '%s': argv[%zu] must be a string", s->id,
					  i);
			goto done;
		}
	}
	snprintf(out_path, plen, "%s.stdout", ctx->log_prefix);
	snprintf(err_path, plen, "%s.stderr", ctx->log_prefix);
	rc = build_env(&env, ctx);
	if (rc < 0)
		goto done;

	/* cwd is relative to the runbook's directory, like the runbook's other paths */
	if (json_is_string(jcwd) || !jcwd) {
		const char *c = jcwd ? json_string_value(jcwd) : "";
		const char *base = ctx->drill->rb->dir;

		if (c[0] == '/') {
			cwd = strdup(c);
		} else if (base) {
			size_t clen = strlen(base) + strlen(c) + 2;

			cwd = malloc(clen);
			if (cwd)
				snprintf(cwd, clen, "%s%s%s", base, c[0] ? "/" : "", c);
		}
		if ((c[0] || base) && !cwd) {
			rc = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
	}

	so.argv = argv;
	so.envp = (const char *const *)env.v;
	so.cwd = cwd;
	so.stdout_path = out_path;
	so.stderr_path = err_path;
	rc = rh_spawn(&child, &so);
	if (rc < 0) {
		rh_error_prefix(rc, "step '%s'", s->id);
		goto done;
	}
	rc = rh_child_wait(&child, ctx->deadline, ctx->cancel);
	if (rc == RH_ETIMEOUT || rc == RH_ECANCELLED) {
		int why = rc;

		rh_child_stop(&child, RH_EXEC_STOP_GRACE_S);
		if (why == RH_ETIMEOUT)
			rc = rh_error_set(RH_ETIMEOUT,
					  "step '%s': %s still running at the "
					  "deadline; stopped its process group (logs: %s)",
					  s->id, argv[0], err_path);
		else
			rc = rh_error_set(RH_ECANCELLED,
					  "step '%s': cancelled; stopped %s and its "
					  "process group",
					  s->id, argv[0]);
		goto done;
	}
	if (rc < 0)
		goto done;
	/* Leftovers in the group (a backgrounded grandchild) must not outlive
	 * the step; the group id stays reserved while any member lives. */
	kill(-child.pid, SIGKILL);
	if (!WIFEXITED(child.status) || WEXITSTATUS(child.status) != 0) {
		rh_child_describe(desc, sizeof(desc), child.status);
		stderr_hint(hint, sizeof(hint), err_path);
		rc = rh_error_set(RH_ERROR, "step '%s': %s %s%s", s->id, argv[0], desc, hint);
		goto done;
	}
	rc = parse_outputs(ctx, out_path);
done:
	rh_child_release(&child);
	strv_free(&env);
	free(argv);
	free(out_path);
	free(err_path);
	free(cwd);
	return rc;
}
