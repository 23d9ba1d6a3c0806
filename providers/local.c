/*
 * local.c - the `local` provider: recreates the stack on this machine.
 *
 * It is the adapter every drill can run without a cloud account, so it is
 * also what the integration tests drive end to end. provision makes a
 * per-drill workspace directory and picks a free loopback port; the sink is
 * a file sink under the workspace; deploy spawns the stack command (argv,
 * no shell) in its own process group; teardown stops that group and removes
 * the workspace. The workspace path is derived from the target and the
 * drill id alone, so teardown finds it even after a provision that failed
 * half-way or a crash that lost the in-memory state. The model's warm
 * standby lives beside the workspaces, never inside one (see below).
 */
#include "provider.h"
#include "clock.h"
#include "error.h"
#include "fsutil.h"
#include "registry.h"
#include "sink.h"
#include "process.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

#define LOCAL_HOST "127.0.0.1"
#define LOCAL_EARLY_EXIT_S 0.05 /* a stack that dies this fast never started */
#define LOCAL_GRACE_DEFAULT_S 5.0

struct local_state {
	char *workspace; /* absolute, once provisioned */
	struct rh_child child;
	bool have_child;
};

static const char *const local_target_keys[] = {"workspace_root", NULL};
static const char *const local_output_keys[] = {"host", "port", "workspace", NULL};

/* Environment variables a stack inherits from rehydra; everything else comes
 * from the runbook's stack.env, so a drill does not depend on who ran it. */
static const char *const local_env_pass[] = {"PATH", "HOME",   "LANG", "LC_ALL",
					     "TZ",   "TMPDIR", NULL};

static int local_validate(const struct rh_provider_ops *self, const json_t *target,
			  const char *pointer, struct rh_diags *d)
{
	const json_t *root = json_object_get(target, "workspace_root");
	char *ptr = NULL;
	int err = 0;

	(void)self;
	if (!root)
		goto done;
	ptr = rh_pointer_join(pointer, "workspace_root");
	if (!ptr) {
		err = rh_error_set(RH_ENOMEM, "out of memory validating the target");
		goto done;
	}
	if (!json_is_string(root) || json_string_length(root) == 0)
		err = rh_diags_add(d, ptr, false, "workspace_root must be a non-empty string");
	else if (json_string_value(root)[0] != '/')
		err = rh_diags_add(d, ptr, false,
				   "workspace_root must be an absolute path (got \"%s\")",
				   json_string_value(root));
done:
	free(ptr);
	return err;
}

static struct local_state *local_state_get(struct rh_provider_ctx *p, int *err)
{
	struct local_state *st = p->priv;

	*err = 0;
	if (st)
		return st;
	st = calloc(1, sizeof(*st));
	if (!st) {
		*err = rh_error_set(RH_ENOMEM, "out of memory in the local provider");
		return NULL;
	}
	st->child.pid = 0;
	st->child.pidfd = -1;
	p->priv = st;
	return st;
}

/* "<root>/<drill_id>" where root is target.workspace_root or
 * <state_dir>/workspaces; *root_out and *ws_out are new. */
static int local_paths(struct rh_provider_ctx *p, char **root_out, char **ws_out)
{
	const char *root_key = json_string_value(json_object_get(p->target, "workspace_root"));
	char *root = NULL;
	char *ws = NULL;
	int err = 0;
	int n;

	*root_out = NULL;
	*ws_out = NULL;
	if (!p->drill_id || !*p->drill_id || strchr(p->drill_id, '/') ||
	    strcmp(p->drill_id, ".") == 0 || strcmp(p->drill_id, "..") == 0) {
		err = rh_error_set(RH_EINVAL, "local provider: bad drill id \"%s\"",
				   p->drill_id ? p->drill_id : "");
		goto done;
	}
	if (root_key && *root_key) {
		root = strdup(root_key);
	} else {
		if (!p->state_dir) {
			err = rh_error_set(RH_EINVAL, "local provider: no state directory and no "
						      "target.workspace_root");
			goto done;
		}
		n = asprintf(&root, "%s/workspaces", p->state_dir);
		if (n < 0)
			root = NULL;
	}
	if (!root) {
		err = rh_error_set(RH_ENOMEM, "out of memory in the local provider");
		goto done;
	}
	if (asprintf(&ws, "%s/%s", root, p->drill_id) < 0) {
		ws = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory in the local provider");
		goto done;
	}
	*root_out = root;
	*ws_out = ws;
	root = NULL;
	ws = NULL;
done:
	free(root);
	free(ws);
	return err;
}

/* Creates the workspace, or accepts an existing one that is a real directory
 * owned by us (a retried provision reuses it). */
static int local_workspace_make(const char *root, const char *ws)
{
	struct stat sb;
	int err;

	err = rh_fs_mkdir_p(root);
	if (err < 0)
		goto done;
	if (mkdir(ws, 0700) == 0)
		goto done;
	if (errno != EEXIST) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot create workspace %s", ws);
		goto done;
	}
	if (lstat(ws, &sb) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot inspect workspace %s", ws);
		goto done;
	}
	if (!S_ISDIR(sb.st_mode) || sb.st_uid != geteuid()) {
		err = rh_error_set(RH_EIO,
				   "workspace %s exists but is not a directory owned by "
				   "us: remove it or pick another workspace_root",
				   ws);
		goto done;
	}
done:
	return err;
}

/* A port the kernel says is free right now on the loopback address. The
 * socket is closed before the stack binds, so a race is possible but rare;
 * the health probe would then fail with a clear connection error. */
static int local_free_port(int *port)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd;
	int err = 0;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return rh_error_set_errno(RH_EIO, errno, "cannot create a socket to find a port");
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot bind %s:0 to find a free port",
					 LOCAL_HOST);
		goto done;
	}
	if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot read the bound port");
		goto done;
	}
	*port = ntohs(sa.sin_port);
done:
	close(fd);
	return err;
}

static int local_set_outputs(json_t *dst, const char *ws, int port)
{
	if (!dst)
		return 0;
	if (json_object_set_new(dst, "host", json_string(LOCAL_HOST)) != 0 ||
	    json_object_set_new(dst, "port", json_integer(port)) != 0 ||
	    json_object_set_new(dst, "workspace", json_string(ws)) != 0)
		return rh_error_set(RH_ENOMEM, "out of memory recording the provision outputs");
	return 0;
}

static int local_provision(struct rh_provider_ctx *p, const struct rh_provider_call *c)
{
	struct local_state *st;
	char *root = NULL;
	char *ws = NULL;
	char *abs = NULL;
	json_t *port_j;
	int port = 0;
	int err;

	pthread_mutex_lock(&p->lock);
	st = local_state_get(p, &err);
	if (!st)
		goto done;
	err = local_paths(p, &root, &ws);
	if (err < 0)
		goto done;
	/* named before it exists, so a crash right after mkdir is covered too */
	if (p->note_resource)
		p->note_resource(p->note_user, "workspace", ws);
	err = local_workspace_make(root, ws);
	if (err < 0)
		goto done;
	abs = realpath(ws, NULL);
	if (!abs) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot resolve workspace %s", ws);
		goto done;
	}
	/* A retried provision keeps the port it already handed out: later steps
	 * may have expanded ${target.port} with it. */
	port_j = json_object_get(p->outputs, "port");
	if (json_is_integer(port_j) && st->workspace && strcmp(st->workspace, abs) == 0) {
		port = (int)json_integer_value(port_j);
	} else {
		err = local_free_port(&port);
		if (err < 0)
			goto done;
	}
	free(st->workspace);
	st->workspace = abs;
	abs = NULL;
	err = local_set_outputs(p->outputs, st->workspace, port);
	if (err < 0)
		goto done;
	err = local_set_outputs(c ? c->outputs : NULL, st->workspace, port);
done:
	if (err < 0)
		rh_error_prefix(err, "local provider: provision");
	pthread_mutex_unlock(&p->lock);
	free(root);
	free(ws);
	free(abs);
	return err;
}

static int local_sink_open(struct rh_sink **out, struct rh_provider_ctx *p,
			   const struct rh_provider_call *c)
{
	struct local_state *st;
	char *dir = NULL;
	int err = 0;

	(void)c;
	*out = NULL;
	pthread_mutex_lock(&p->lock);
	st = p->priv;
	if (!st || !st->workspace) {
		err = rh_error_set(RH_EINVAL, "local provider: the target is not provisioned yet: "
					      "add a provision step to this step's `after`");
		goto done;
	}
	if (asprintf(&dir, "%s/model", st->workspace) < 0) {
		dir = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory in the local provider");
		goto done;
	}
	err = rh_sink_file_open(out, dir);
done:
	pthread_mutex_unlock(&p->lock);
	free(dir);
	return err;
}

/* Clean environment + stack.env, as a NULL-terminated new array of new
 * strings (free with local_strv_free). */
static void local_strv_free(char **v)
{
	if (!v)
		return;
	for (size_t i = 0; v[i]; i++)
		free(v[i]);
	free(v);
}

static int local_env_build(char ***out, const json_t *env)
{
	size_t cap = sizeof(local_env_pass) / sizeof(local_env_pass[0]) + json_object_size(env);
	char **v = calloc(cap + 1, sizeof(*v));
	size_t n = 0;
	const char *key;
	json_t *val;
	int err = 0;

	*out = NULL;
	if (!v)
		return rh_error_set(RH_ENOMEM, "out of memory building the stack environment");
	for (size_t i = 0; local_env_pass[i]; i++) {
		const char *val_s = getenv(local_env_pass[i]);

		if (!val_s || json_object_get(env, local_env_pass[i]))
			continue;
		if (asprintf(&v[n], "%s=%s", local_env_pass[i], val_s) < 0) {
			v[n] = NULL;
			err = rh_error_set(RH_ENOMEM, "out of memory building the environment");
			goto done;
		}
		n++;
	}
	json_object_foreach((json_t *)env, key, val)
	{
		if (!json_is_string(val) || !*key || strchr(key, '=')) {
			err = rh_error_set(RH_EINVAL,
					   "stack.env.%s must be a string with a name "
					   "without '='",
					   key);
			goto done;
		}
		if (asprintf(&v[n], "%s=%s", key, json_string_value(val)) < 0) {
			v[n] = NULL;
			err = rh_error_set(RH_ENOMEM, "out of memory building the environment");
			goto done;
		}
		n++;
	}
	*out = v;
	v = NULL;
done:
	local_strv_free(v);
	return err;
}

/* The last non-empty line of a (small tail of a) file, for messages. */
static void local_last_line(char *buf, size_t size, const char *path)
{
	char tail[1024];
	ssize_t n = 0;
	off_t end;
	int fd;
	char *line;

	buf[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	end = lseek(fd, 0, SEEK_END);
	if (end > 0) {
		off_t from = end > (off_t)sizeof(tail) - 1 ? end - (off_t)sizeof(tail) + 1 : 0;

		n = pread(fd, tail, sizeof(tail) - 1, from);
	}
	close(fd);
	if (n <= 0)
		return;
	tail[n] = '\0';
	while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r' || tail[n - 1] == ' '))
		tail[--n] = '\0';
	line = strrchr(tail, '\n');
	line = line ? line + 1 : tail;
	n = (ssize_t)strlen(line);
	if ((size_t)n >= size)
		n = (ssize_t)size - 1;
	memcpy(buf, line, (size_t)n);
	buf[n] = '\0';
}

static int local_pidfile_write(const char *ws, pid_t pid)
{
	char path[PATH_MAX];
	char text[32];
	int fd;
	int len;
	int err = 0;

	snprintf(path, sizeof(path), "%s/stack.pid", ws);
	len = snprintf(text, sizeof(text), "%ld\n", (long)pid);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return rh_error_set_errno(RH_EIO, errno, "cannot write %s", path);
	if (write(fd, text, (size_t)len) != len)
		err = rh_error_set_errno(RH_EIO, errno, "cannot write %s", path);
	close(fd);
	return err;
}

static int local_deploy(struct rh_provider_ctx *p, const struct rh_provider_call *c,
			const json_t *command, const json_t *env)
{
	struct rh_spawn_opts opts = {0};
	struct local_state *st;
	const char **argv = NULL;
	char **envp = NULL;
	char *out_path = NULL;
	char *err_path = NULL;
	const char *log_dir;
	size_t argc;
	int err = 0;
	int rc;

	pthread_mutex_lock(&p->lock);
	st = p->priv;
	if (!st || !st->workspace) {
		err = rh_error_set(RH_EINVAL, "the target is not provisioned yet: add a provision "
					      "step to this step's `after`");
		goto done;
	}
	if (c && c->cancel && rh_cancel_is_fired(c->cancel)) {
		err = rh_error_set(RH_ECANCELLED, "cancelled before starting the stack");
		goto done;
	}
	if (st->have_child) {
		if (rh_child_running(&st->child))
			goto done; /* a retried deploy: the stack is already up */
		rh_child_release(&st->child);
		st->have_child = false;
	}
	argc = json_array_size(command);
	if (!json_is_array(command) || argc == 0) {
		err = rh_error_set(RH_EINVAL, "stack.command must be a non-empty array of strings");
		goto done;
	}
	argv = calloc(argc + 1, sizeof(*argv));
	if (!argv) {
		err = rh_error_set(RH_ENOMEM, "out of memory starting the stack");
		goto done;
	}
	for (size_t i = 0; i < argc; i++) {
		argv[i] = json_string_value(json_array_get(command, i));
		if (!argv[i]) {
			err = rh_error_set(RH_EINVAL, "stack.command[%zu] is not a string", i);
			goto done;
		}
	}
	err = local_env_build(&envp, env);
	if (err < 0)
		goto done;
	log_dir = p->drill_dir ? p->drill_dir : st->workspace;
	if (asprintf(&out_path, "%s/stack.stdout", log_dir) < 0 ||
	    asprintf(&err_path, "%s/stack.stderr", log_dir) < 0) {
		err = rh_error_set(RH_ENOMEM, "out of memory starting the stack");
		goto done;
	}
	opts.argv = argv;
	opts.envp = (const char *const *)envp;
	opts.cwd = st->workspace;
	opts.stdout_path = out_path;
	opts.stderr_path = err_path;
	err = rh_spawn(&st->child, &opts);
	if (err < 0)
		goto done;
	st->have_child = true;
	err = local_pidfile_write(st->workspace, st->child.pid);
	if (err < 0)
		goto done;

	rc = rh_child_wait(&st->child, rh_clock_mono() + LOCAL_EARLY_EXIT_S, c ? c->cancel : NULL);
	if (rc == 0) {
		char how[64];
		char last[512];

		rh_child_describe(how, sizeof(how), st->child.status);
		local_last_line(last, sizeof(last), err_path);
		err = rh_error_set(RH_ERROR,
				   "stack command %s %s right after starting%s%s "
				   "(see %s)",
				   argv[0], how, last[0] ? ": " : "", last, err_path);
		goto done;
	}
	if (rc == RH_ECANCELLED) {
		err = rh_error_set(RH_ECANCELLED, "cancelled while starting the stack");
		goto done;
	}
	if (c && c->outputs)
		json_object_set_new(c->outputs, "pid", json_integer(st->child.pid));
	err = 0;
done:
	/* A deploy that failed leaves no stack (and no pid file naming one). */
	if (err < 0 && st && st->have_child) {
		char pidfile[PATH_MAX];

		rh_child_stop(&st->child, 0);
		rh_child_release(&st->child);
		st->have_child = false;
		snprintf(pidfile, sizeof(pidfile), "%s/stack.pid", st->workspace);
		unlink(pidfile);
	}
	if (err < 0)
		rh_error_prefix(err, "local provider: deploy");
	pthread_mutex_unlock(&p->lock);
	free(argv);
	local_strv_free(envp);
	free(out_path);
	free(err_path);
	return err;
}

static double local_grace(const struct rh_provider_call *c)
{
	double grace = c && c->grace_s >= 0 ? c->grace_s : LOCAL_GRACE_DEFAULT_S;
	double left;

	/* Leave time to kill and remove the workspace before the step's deadline. */
	if (c && c->deadline > 0) {
		left = c->deadline - rh_clock_mono() - 0.5;
		if (grace > left)
			grace = left > 0 ? left : 0;
	}
	return grace;
}

static int local_teardown(struct rh_provider_ctx *p, const struct rh_provider_call *c)
{
	struct local_state *st;
	struct stat sb;
	char *root = NULL;
	char *ws = NULL;
	int err = 0;

	pthread_mutex_lock(&p->lock);
	st = p->priv;
	if (st && st->have_child) {
		err = rh_child_stop(&st->child, local_grace(c));
		if (err < 0)
			goto done;
		rh_child_release(&st->child);
		st->have_child = false;
	}
	err = local_paths(p, &root, &ws);
	if (err < 0)
		goto done;
	if (lstat(ws, &sb) != 0) {
		if (errno != ENOENT) {
			err = rh_error_set_errno(RH_EIO, errno, "cannot inspect workspace %s", ws);
			goto done;
		}
		goto forget;
	}
	if (S_ISDIR(sb.st_mode) && sb.st_uid != geteuid()) {
		err = rh_error_set(RH_EIO, "workspace %s is not ours: leaving it in place", ws);
		goto done;
	}
	err = rh_fs_rm_rf(ws);
	if (err < 0)
		goto done;
forget:
	if (st) {
		free(st->workspace);
		st->workspace = NULL;
	}
done:
	if (err < 0)
		rh_error_prefix(err, "local provider: teardown");
	pthread_mutex_unlock(&p->lock);
	free(root);
	free(ws);
	return err;
}

/* ---- warm standby -----------------------------------------------------------
 *
 * The standing copy of a model is <state dir>/standby/<model>: outside the
 * workspaces, so teardown (which removes exactly one workspace) never
 * touches it. A drill syncs into it with the file sink (which re-hashes any
 * file whose inode changed since it last vouched for it) and then gives its
 * workspace reflinks or hard links of those files: the stack reads the
 * same bytes, and a later sync of another version replaces standby files
 * by rename, leaving a running drill's links alone.
 */
static int local_standby_dir(char **out, struct rh_provider_ctx *p, const char *model)
{
	int err;

	*out = NULL;
	if ((err = rh_provider_standby_name_check(model)) < 0)
		return err;
	if (!p->state_dir)
		return rh_error_set(RH_EINVAL,
				    "local provider: no state directory for the standby");
	if (asprintf(out, "%s/standby/%s", p->state_dir, model) < 0) {
		*out = NULL;
		return rh_error_set(RH_ENOMEM, "out of memory in the local provider");
	}
	return 0;
}

static int local_standby_open(struct rh_sink **out, char **where, struct rh_provider_ctx *p,
			      const struct rh_provider_call *c, const char *model, size_t index)
{
	char *dir = NULL;
	int err;

	(void)c;
	*out = NULL;
	if (where)
		*where = NULL;
	if (index > 0)
		return RH_ENOTFOUND;
	err = local_standby_dir(&dir, p, model);
	if (err == 0)
		err = rh_sink_file_open(out, dir);
	if (err == 0 && where && !(*where = strdup("local"))) {
		rh_sink_close(*out);
		*out = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory in the local provider");
	}
	free(dir);
	return err < 0 ? rh_error_prefix(err, "local provider: standby") : 0;
}

/* Links <standby>/<rel> to <dir>/<rel>, making <dir>'s subdirectories;
 * *weakest becomes the weakest way used so far. */
static int local_share(const char *standby, const char *dir, const char *rel,
		       enum rh_fs_share *weakest)
{
	char src[PATH_MAX], dst[PATH_MAX];
	enum rh_fs_share how = RH_FS_SHARE_REFLINK;
	char *slash;
	int err;

	if (!rh_sink_path_is_safe(rel))
		return rh_error_set(RH_EINVAL, "unsafe manifest path \"%s\"", rel);
	if ((size_t)snprintf(src, sizeof(src), "%s/%s", standby, rel) >= sizeof(src) ||
	    (size_t)snprintf(dst, sizeof(dst), "%s/%s", dir, rel) >= sizeof(dst))
		return rh_error_set(RH_EINVAL, "path too long: %s", rel);
	slash = strrchr(dst, '/');
	*slash = '\0';
	err = rh_fs_mkdir_p(dst);
	*slash = '/';
	if (err == 0)
		err = rh_fs_share_file(src, dst, &how);
	if (err == 0 && how > *weakest)
		*weakest = how;
	return err;
}

static int local_standby_use(char **path, struct rh_provider_ctx *p,
			     const struct rh_provider_call *c, const struct rh_model_version *v,
			     const char *standby)
{
	enum rh_fs_share weakest = RH_FS_SHARE_REFLINK;
	struct local_state *st;
	char *dir = NULL;
	int err = 0;

	*path = NULL;
	pthread_mutex_lock(&p->lock);
	st = p->priv;
	if (!st || !st->workspace) {
		err = rh_error_set(RH_EINVAL, "the target is not provisioned yet: add a provision "
					      "step to this step's `after`");
		goto done;
	}
	if (asprintf(&dir, "%s/model", st->workspace) < 0) {
		dir = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory in the local provider");
		goto done;
	}
	/* A retry starts from an empty model directory. */
	if ((err = rh_fs_rm_rf(dir)) < 0 || (err = rh_fs_mkdir_p(dir)) < 0)
		goto done;
	for (size_t i = 0; i < v->n_files && err == 0; i++) {
		if (c && c->cancel && rh_cancel_is_fired(c->cancel))
			err = rh_error_set(RH_ECANCELLED, "cancelled linking the standby");
		else
			err = local_share(standby, dir, v->files[i].path, &weakest);
	}
	if (err == 0)
		err = local_share(standby, dir, "manifest.json", &weakest);
	if (err < 0)
		goto done;
	if (c && c->outputs &&
	    json_object_set_new(c->outputs, "workspace_files",
				json_string(rh_fs_share_name(weakest))) < 0) {
		err = rh_error_set(RH_ENOMEM, "out of memory in the local provider");
		goto done;
	}
	*path = dir;
	dir = NULL;
done:
	if (err < 0)
		rh_error_prefix(err, "local provider: standby into the workspace");
	pthread_mutex_unlock(&p->lock);
	free(dir);
	return err;
}

/* Every model's standby of this state dir: the local target has one. */
static int local_standby_remove(struct rh_provider_ctx *p, const struct rh_provider_call *c,
				char **where)
{
	char *dir = NULL;
	struct stat sb;
	int err;

	(void)c;
	*where = NULL;
	if (!p->state_dir)
		return rh_error_set(RH_EINVAL,
				    "local provider: no state directory for the standby");
	if (asprintf(&dir, "%s/standby", p->state_dir) < 0)
		return rh_error_set(RH_ENOMEM, "out of memory in the local provider");
	if (lstat(dir, &sb) != 0) {
		err = rh_error_set(RH_ENOTFOUND, "local provider: no warm standby in %s", dir);
		free(dir);
		return err;
	}
	err = rh_fs_rm_rf(dir);
	if (err < 0) {
		free(dir);
		return rh_error_prefix(err, "local provider: removing the standby");
	}
	*where = dir;
	return 0;
}

static void local_free(struct rh_provider_ctx *p)
{
	struct local_state *st = p->priv;

	if (!st)
		return;
	if (st->have_child)
		rh_child_release(&st->child);
	free(st->workspace);
	free(st);
	p->priv = NULL;
}

const struct rh_provider_ops rh_provider_local = {
    .version = RH_PROVIDER_OPS_VERSION,
    .name = "local",
    .summary = "this machine: a workspace directory, a loopback port, a local process",
    .target_keys = local_target_keys,
    .output_keys = local_output_keys,
    .validate = local_validate,
    .provision = local_provision,
    .sink_open = local_sink_open,
    .deploy = local_deploy,
    .teardown = local_teardown,
    .render = NULL,
    .describe = NULL,
    .free = local_free,
    .standby_open = local_standby_open,
    .standby_use = local_standby_use,
    .standby_remove = local_standby_remove,
};
