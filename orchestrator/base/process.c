/*
 * process.c - child processes without a shell (see process.h).
 *
 * Why not posix_spawnp: it searches the PATH of rehydra's own environment,
 * but a step's child gets a clean environment of its own, and the program it
 * names must be found the way the child would find it. So PATH is taken from
 * the child's envp, searched here, and the resolved path handed to
 * posix_spawn; a miss is reported with the PATH that was searched.
 *
 * Each child leads a new process group, so stopping a step signals the whole
 * tree it started. A pidfd makes "the child exited" a readable fd, so waiting
 * on a child, a deadline and a cancellation token is one poll(), with no
 * sleeping loops. Stdout/stderr files are opened here with O_CLOEXEC (other
 * step threads spawn concurrently and must not inherit them) and dup2'd into
 * place by the spawn file actions, which clears the flag on the copies.
 */
#include "process.h"
#include "clock.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spawn.h>

#include "banned.h"

/* What execvp uses when the environment has no PATH. */
#define RH_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

/* The process-wide watch (rh_spawn_watch_set). The lock is held across a
 * spawn and its callback, so clearing the watch waits for a callback that
 * is running and none starts afterwards. */
static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;
static char *watch_marker;
static void (*watch_fn)(void *user, pid_t pgid);
static void *watch_user;

int rh_spawn_watch_set(const char *marker, void (*fn)(void *user, pid_t pgid), void *user)
{
	char *copy = NULL;

	if (marker && (!strchr(marker, '=') || !(copy = strdup(marker))))
		return rh_error_set(marker && strchr(marker, '=') ? RH_ENOMEM : RH_EINVAL,
				    "bad spawn marker");
	pthread_mutex_lock(&watch_lock);
	free(watch_marker);
	watch_marker = copy;
	watch_fn = fn;
	watch_user = user;
	pthread_mutex_unlock(&watch_lock);
	return 0;
}

/* envp with the marker in place of any entry of the same name (new array,
 * borrowed strings), or NULL when out of memory. */
static const char **env_with_marker(const char *const *envp, const char *marker)
{
	size_t n = 0, k = 0, name_len = (size_t)(strchr(marker, '=') - marker) + 1;
	const char **out;

	while (envp && envp[n])
		n++;
	out = calloc(n + 2, sizeof(*out));
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(envp[i], marker, name_len) != 0)
			out[k++] = envp[i];
	out[k++] = marker;
	out[k] = NULL;
	return out;
}

static const char *env_path(const char *const *envp)
{
	if (!envp)
		return NULL;
	for (size_t i = 0; envp[i]; i++)
		if (strncmp(envp[i], "PATH=", 5) == 0)
			return envp[i] + 5;
	return NULL;
}

static bool is_executable_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* *out is new. Returns 0, RH_ENOTFOUND or RH_ENOMEM. */
static int resolve_program(char **out, const char *name, const char *const *envp)
{
	const char *path = env_path(envp);
	const char *p;
	size_t nlen = strlen(name);
	int rc = 0;

	*out = NULL;
	if (!name[0])
		return rh_error_set(RH_ENOTFOUND, "command not found: empty program name");
	if (strchr(name, '/')) {
		*out = strdup(name);
		return *out ? 0 : rh_error_set(RH_ENOMEM, "out of memory");
	}
	if (!path)
		path = RH_DEFAULT_PATH;
	p = path;
	for (;;) {
		const char *end = strchr(p, ':');
		size_t dlen = end ? (size_t)(end - p) : strlen(p);
		char *cand = malloc(dlen + nlen + 3);

		if (!cand) {
			rc = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
		/* an empty PATH entry means the current directory, as in execvp */
		if (dlen == 0)
			snprintf(cand, dlen + nlen + 3, "./%s", name);
		else
			snprintf(cand, dlen + nlen + 3, "%.*s/%s", (int)dlen, p, name);
		if (is_executable_file(cand)) {
			*out = cand;
			goto done;
		}
		free(cand);
		if (!end)
			break;
		p = end + 1;
	}
	rc = rh_error_set(RH_ENOTFOUND, "command not found: %s (searched PATH=%s)", name,
			  path[0] ? path : "(empty)");
done:
	return rc;
}

static int open_output(int *fd, const char *path)
{
	*fd = open(path ? path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY,
		   0600);
	if (*fd < 0)
		return rh_error_set_errno(RH_EIO, errno, "cannot open %s for the child's output",
					  path ? path : "/dev/null");
	return 0;
}

int rh_spawn(struct rh_child *out, const struct rh_spawn_opts *opts)
{
	static const char *const empty_env[] = {NULL};
	static const int default_sigs[] = {SIGINT, SIGTERM, SIGPIPE, SIGCHLD, SIGHUP, SIGQUIT};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool fa_ready = false, attr_ready = false, locked = false;
	const char *const *envp = opts->envp ? opts->envp : empty_env;
	const char **marked_env = NULL;
	sigset_t mask, defs;
	char *prog = NULL;
	int out_fd = -1, err_fd = -1;
	pid_t pid = 0;
	int rc, e;

	out->pid = 0;
	out->pidfd = -1;
	out->reaped = false;
	out->status = 0;
	if (!opts->argv || !opts->argv[0])
		return rh_error_set(RH_EINVAL, "no program to run (empty argv)");

	rc = resolve_program(&prog, opts->argv[0], opts->envp);
	if (rc < 0)
		goto done;
	rc = open_output(&out_fd, opts->stdout_path);
	if (rc < 0)
		goto done;
	if (opts->stderr_path && opts->stdout_path &&
	    strcmp(opts->stderr_path, opts->stdout_path) == 0) {
		err_fd = fcntl(out_fd, F_DUPFD_CLOEXEC, 3);
		if (err_fd < 0) {
			rc = rh_error_set_errno(RH_EIO, errno, "dup");
			goto done;
		}
	} else {
		rc = open_output(&err_fd, opts->stderr_path);
		if (rc < 0)
			goto done;
	}

	rc = RH_EIO;
	if ((e = posix_spawn_file_actions_init(&fa)) != 0)
		goto spawn_err;
	fa_ready = true;
	if ((e = posix_spawn_file_actions_addopen(
		 &fa, 0, opts->stdin_path ? opts->stdin_path : "/dev/null", O_RDONLY, 0)) != 0 ||
	    (e = posix_spawn_file_actions_adddup2(&fa, out_fd, 1)) != 0 ||
	    (e = posix_spawn_file_actions_adddup2(&fa, err_fd, 2)) != 0)
		goto spawn_err;
	if (opts->cwd && (e = posix_spawn_file_actions_addchdir_np(&fa, opts->cwd)) != 0)
		goto spawn_err;
	if ((e = posix_spawnattr_init(&attr)) != 0)
		goto spawn_err;
	attr_ready = true;
	sigemptyset(&mask);
	sigemptyset(&defs);
	for (size_t i = 0; i < sizeof(default_sigs) / sizeof(default_sigs[0]); i++)
		sigaddset(&defs, default_sigs[i]);
	if ((e = posix_spawnattr_setpgroup(&attr, 0)) != 0 ||
	    (e = posix_spawnattr_setsigmask(&attr, &mask)) != 0 ||
	    (e = posix_spawnattr_setsigdefault(&attr, &defs)) != 0 ||
	    (e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
						     POSIX_SPAWN_SETSIGDEF)) != 0)
		goto spawn_err;

	pthread_mutex_lock(&watch_lock);
	locked = true;
	if (watch_marker) {
		marked_env = env_with_marker(envp, watch_marker);
		if (!marked_env) {
			rc = rh_error_set(RH_ENOMEM, "out of memory starting %s", opts->argv[0]);
			goto done;
		}
		envp = marked_env;
	}
	e = posix_spawn(&pid, prog, &fa, &attr, (char *const *)opts->argv, (char *const *)envp);
	if (e != 0) {
		if (e == ENOENT && opts->cwd && access(opts->cwd, F_OK) != 0)
			rc = rh_error_set_errno(RH_ENOTFOUND, e,
						"cannot change to directory %s "
						"to run %s",
						opts->cwd, opts->argv[0]);
		else if (e == ENOENT || e == EACCES || e == ENOEXEC || e == ENOTDIR)
			rc = rh_error_set_errno(RH_ENOTFOUND, e, "cannot run %s", prog);
		else
			rc = rh_error_set_errno(RH_EIO, e, "cannot start %s", prog);
		goto done;
	}
	out->pid = pid;
	out->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (out->pidfd < 0) {
		e = errno;
		/* without a pidfd we cannot wait with a deadline; do not leak the child */
		kill(-pid, SIGKILL);
		waitpid(pid, &out->status, 0);
		out->reaped = true;
		rc = rh_error_set_errno(RH_EIO, e, "pidfd_open for %s (needs linux >= 5.3)", prog);
		goto done;
	}
	if (watch_fn)
		watch_fn(watch_user, pid);
	rc = 0;
	goto done;
spawn_err:
	rc = rh_error_set_errno(RH_EIO, e, "cannot prepare to start %s", opts->argv[0]);
done:
	if (locked)
		pthread_mutex_unlock(&watch_lock);
	free(marked_env);
	if (attr_ready)
		posix_spawnattr_destroy(&attr);
	if (fa_ready)
		posix_spawn_file_actions_destroy(&fa);
	if (out_fd >= 0)
		close(out_fd);
	if (err_fd >= 0)
		close(err_fd);
	free(prog);
	return rc;
}

static int try_reap(struct rh_child *c)
{
	int status;
	pid_t r;

	if (c->reaped || c->pid <= 0)
		return 1;
	do
		r = waitpid(c->pid, &status, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == c->pid) {
		c->status = status;
		c->reaped = true;
		return 1;
	}
	if (r < 0 && errno == ECHILD) {
		/* someone else reaped it; the status is lost but it is gone */
		c->reaped = true;
		c->status = 0;
		return 1;
	}
	return 0;
}

/* Polls the pidfd (and cancel fd) until readable, the deadline, or cancel.
 * Returns 1 when the child has exited (not reaped), 0 on timeout,
 * RH_ECANCELLED. */
static int poll_exit(struct rh_child *c, double deadline, struct rh_cancel *cancel)
{
	for (;;) {
		struct pollfd pfd[2] = {
		    {.fd = c->pidfd, .events = POLLIN},
		    {.fd = cancel ? rh_cancel_fd(cancel) : -1, .events = POLLIN},
		};
		int ms = -1, n;

		if (deadline > 0) {
			double left = deadline - rh_clock_mono();

			if (left <= 0)
				ms = 0;
			else
				ms = left > 86400.0 ? 86400000 : (int)(left * 1000.0) + 1;
		}
		n = poll(pfd, 2, ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return rh_error_set_errno(RH_EIO, errno, "poll on child %d", (int)c->pid);
		}
		if (pfd[0].revents)
			return 1;
		if (cancel && rh_cancel_is_fired(cancel))
			return rh_error_set(RH_ECANCELLED, "cancelled");
		if (deadline > 0 && rh_clock_mono() >= deadline)
			return 0;
	}
}

int rh_child_wait(struct rh_child *c, double deadline, struct rh_cancel *cancel)
{
	int rc;

	if (try_reap(c))
		return 0;
	for (;;) {
		rc = poll_exit(c, deadline, cancel);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return rh_error_set(RH_ETIMEOUT, "process %d still running at the deadline",
					    (int)c->pid);
		if (try_reap(c))
			return 0;
		/* readable pidfd but not yet waitable: cannot happen, but never spin */
		if (deadline > 0 && rh_clock_mono() >= deadline)
			return rh_error_set(RH_ETIMEOUT, "process %d still running", (int)c->pid);
	}
}

int rh_child_stop(struct rh_child *c, double grace_s)
{
	int status;

	if (c->pid <= 0 || c->reaped) {
		/* the leader is gone; its group may not be, but the pid may be reused */
		return 0;
	}
	kill(-c->pid, SIGTERM);
	if (grace_s > 0 && c->pidfd >= 0)
		poll_exit(c, rh_clock_mono() + grace_s, NULL);
	/* The leader is at worst a zombie here, so its pid (the group id) cannot
	 * have been reused: killing the group now also reaches children that
	 * ignored SIGTERM or outlived the leader. */
	kill(-c->pid, SIGKILL);
	while (waitpid(c->pid, &status, 0) < 0) {
		if (errno != EINTR) {
			status = 0;
			break;
		}
	}
	c->status = status;
	c->reaped = true;
	return 0;
}

bool rh_child_running(struct rh_child *c)
{
	struct pollfd pfd = {.fd = c->pidfd, .events = POLLIN};

	if (c->reaped || c->pid <= 0)
		return false;
	if (c->pidfd >= 0)
		return poll(&pfd, 1, 0) == 0;
	return !try_reap(c);
}

void rh_child_release(struct rh_child *c)
{
	if (c->pid > 0 && !c->reaped)
		rh_child_stop(c, 0);
	if (c->pidfd >= 0)
		close(c->pidfd);
	c->pidfd = -1;
	c->pid = 0;
}

void rh_child_describe(char *buf, size_t size, int status)
{
	if (WIFEXITED(status))
		snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, size, "ended with wait status 0x%x", (unsigned)status);
}
