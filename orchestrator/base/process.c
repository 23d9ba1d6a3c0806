/*
 * process.c - child processes without a shell (see process.h).
 *
 * Why not posix_spawnp: it searches the PATH of rehydra's own environment,
 * but a step's child gets a clean environment of its own, and the program it
 * names must be found the way the child would find it. So PATH is taken from
 * the child's envp, searched here, and the resolved path exec'd; a miss is
 * reported with the PATH that was searched.
 *
 * Why fork + exec rather than posix_spawn: a child must not outlive a
 * rehydra killed with SIGKILL, so it sets PR_SET_PDEATHSIG before exec,
 * which posix_spawn cannot do. That signal fires when the *thread* that
 * forked ends, and steps run in threads that end while the stack they
 * deployed must live on; so every child is forked by one spawner thread
 * that lives as long as the process. (The death signal reaches only the
 * child itself; what it started in its group is stopped by the next
 * command, from the drill's intent: see pgroup.h.)
 *
 * Each child leads a new process group, so stopping a step signals the whole
 * tree it started. A pidfd makes "the child exited" a readable fd, so waiting
 * on a child, a deadline and a cancellation token is one poll(), with no
 * sleeping loops. Stdout/stderr files are opened here with O_CLOEXEC (other
 * step threads spawn concurrently and must not inherit them) and dup2'd into
 * place in the child, which clears the flag on the copies.
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
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* Where a child's start failed (reported through the exec pipe). */
enum { STAGE_PREPARE = 1, STAGE_STDIN, STAGE_CHDIR, STAGE_EXEC };

/* One start, handed to the spawner thread. */
struct spawn_req {
	const char *prog;
	const char *const *argv;
	const char *const *envp;
	const char *cwd;
	const char *stdin_path;
	int out_fd, err_fd;
	/* Called with the child's pid after fork and before it may exec, so a
	 * crash cannot fall between "it runs" and "it is recorded". */
	void (*pre_exec)(void *user, pid_t pid);
	void *pre_user;
	pid_t pid;	/* out: the child, 0 on failure */
	int err, stage; /* out: errno and STAGE_* of a failure */
	bool done;
};

static const int default_sigs[] = {SIGINT, SIGTERM, SIGPIPE, SIGCHLD, SIGHUP, SIGQUIT};

/* In the child between fork and exec: async-signal-safe calls only. */
static void child_fail(int fd, int stage, int err)
{
	int msg[2] = {stage, err};
	ssize_t n;

	do
		n = write(fd, msg, sizeof(msg));
	while (n < 0 && errno == EINTR);
	_exit(127);
}

static void child_exec(const struct spawn_req *r, int fd, int go, pid_t parent)
{
	struct sigaction dfl;
	sigset_t none;
	char c;
	ssize_t n;
	int in;

	/* If rehydra dies, so does the child: the signal comes when the thread
	 * that forked ends, which is the spawner thread, alive as long as the
	 * process. A parent that died before this line is caught by getppid. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
		child_fail(fd, STAGE_PREPARE, errno);
	if (getppid() != parent)
		_exit(127);
	if (setpgid(0, 0) != 0)
		child_fail(fd, STAGE_PREPARE, errno);
	/* wait until the parent has recorded us (it closes without a byte to
	 * call the start off) */
	do
		n = read(go, &c, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		_exit(127);
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	for (size_t i = 0; i < sizeof(default_sigs) / sizeof(default_sigs[0]); i++)
		sigaction(default_sigs[i], &dfl, NULL);
	in = open(r->stdin_path ? r->stdin_path : "/dev/null", O_RDONLY);
	if (in < 0)
		child_fail(fd, STAGE_STDIN, errno);
	if ((in != 0 && dup2(in, 0) < 0) || dup2(r->out_fd, 1) < 0 || dup2(r->err_fd, 2) < 0)
		child_fail(fd, STAGE_PREPARE, errno);
	if (in > 2)
		close(in);
	if (r->cwd && chdir(r->cwd) != 0)
		child_fail(fd, STAGE_CHDIR, errno);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(r->prog, (char *const *)r->argv, (char *const *)r->envp);
	child_fail(fd, STAGE_EXEC, errno);
}

/* fork + exec, waiting until the child has exec'd (the pipe closes) or
 * reported why it could not. */
static void fork_exec(struct spawn_req *r)
{
	pid_t parent = getpid(), pid;
	int pfd[2], gfd[2], msg[2];
	ssize_t n;

	r->pid = 0;
	r->err = 0;
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		r->err = errno;
		r->stage = STAGE_PREPARE;
		return;
	}
	if (pipe2(gfd, O_CLOEXEC) != 0) {
		r->err = errno;
		r->stage = STAGE_PREPARE;
		close(pfd[0]);
		close(pfd[1]);
		return;
	}
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		close(gfd[1]);
		child_exec(r, pfd[1], gfd[0], parent);
	}
	close(pfd[1]);
	close(gfd[0]);
	if (pid < 0) {
		r->err = errno;
		r->stage = STAGE_PREPARE;
		close(pfd[0]);
		close(gfd[1]);
		return;
	}
	/* no window in which the group does not exist yet */
	setpgid(pid, pid);
	if (r->pre_exec)
		r->pre_exec(r->pre_user, pid);
	do
		n = write(gfd[1], "g", 1);
	while (n < 0 && errno == EINTR);
	close(gfd[1]);
	do
		n = read(pfd[0], msg, sizeof(msg));
	while (n < 0 && errno == EINTR);
	close(pfd[0]);
	if (n == (ssize_t)sizeof(msg)) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		r->stage = msg[0];
		r->err = msg[1] ? msg[1] : EIO;
		return;
	}
	r->pid = pid;
}

/* The spawner thread: every child is forked from it, so that
 * PR_SET_PDEATHSIG (which fires when the forking thread ends, not the
 * process) means "when rehydra ends" even for a child started by a step's
 * short-lived thread. One request at a time. A process forked from this one
 * has no spawner thread: the atfork handlers make it start its own. */
static pthread_mutex_t spawner_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t spawner_cond = PTHREAD_COND_INITIALIZER;
static struct spawn_req *spawner_req;
static bool spawner_up, spawner_atfork;

static void *spawner_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&spawner_lock);
	for (;;) {
		struct spawn_req *r;

		while (!spawner_req || spawner_req->done)
			pthread_cond_wait(&spawner_cond, &spawner_lock);
		r = spawner_req;
		pthread_mutex_unlock(&spawner_lock);
		fork_exec(r);
		pthread_mutex_lock(&spawner_lock);
		r->done = true;
		spawner_req = NULL;
		pthread_cond_broadcast(&spawner_cond);
	}
	return NULL;
}

static void spawner_fork_prepare(void)
{
	pthread_mutex_lock(&spawner_lock);
}

static void spawner_fork_parent(void)
{
	pthread_mutex_unlock(&spawner_lock);
}

static void spawner_fork_child(void)
{
	pthread_mutex_init(&spawner_lock, NULL);
	pthread_cond_init(&spawner_cond, NULL);
	spawner_req = NULL;
	spawner_up = false;
}

/* Called with spawner_lock held. */
static int spawner_start(void)
{
	sigset_t all, old;
	pthread_t t;
	int e;

	if (!spawner_atfork) {
		if (pthread_atfork(spawner_fork_prepare, spawner_fork_parent, spawner_fork_child) !=
		    0)
			return rh_error_set(RH_EIO, "cannot register the spawner's fork handlers");
		spawner_atfork = true;
	}
	/* signals belong to whoever handles them, never to this thread */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	e = pthread_create(&t, NULL, spawner_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e != 0)
		return rh_error_set_errno(RH_EIO, e, "cannot start the spawner thread");
	pthread_detach(t);
	spawner_up = true;
	return 0;
}

static int spawner_run(struct spawn_req *r)
{
	int rc = 0;

	pthread_mutex_lock(&spawner_lock);
	if (!spawner_up && (rc = spawner_start()) < 0)
		goto done;
	while (spawner_req)
		pthread_cond_wait(&spawner_cond, &spawner_lock);
	r->done = false;
	spawner_req = r;
	pthread_cond_broadcast(&spawner_cond);
	while (!r->done)
		pthread_cond_wait(&spawner_cond, &spawner_lock);
done:
	pthread_mutex_unlock(&spawner_lock);
	return rc;
}

int rh_spawn(struct rh_child *out, const struct rh_spawn_opts *opts)
{
	static const char *const empty_env[] = {NULL};
	struct spawn_req req;
	bool locked = false;
	const char *const *envp = opts->envp ? opts->envp : empty_env;
	const char **marked_env = NULL;
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
	memset(&req, 0, sizeof(req));
	req.prog = prog;
	req.argv = opts->argv;
	req.envp = envp;
	req.cwd = opts->cwd;
	req.stdin_path = opts->stdin_path;
	req.out_fd = out_fd;
	req.err_fd = err_fd;
	req.pre_exec = watch_fn;
	req.pre_user = watch_user;
	rc = spawner_run(&req);
	if (rc < 0)
		goto done;
	pid = req.pid;
	e = req.err;
	if (pid <= 0) {
		if (req.stage == STAGE_CHDIR)
			rc = rh_error_set_errno(RH_ENOTFOUND, e,
						"cannot change to directory %s "
						"to run %s",
						opts->cwd, opts->argv[0]);
		else if (req.stage == STAGE_STDIN)
			rc = rh_error_set_errno(RH_EIO, e, "cannot open %s as the input of %s",
						opts->stdin_path, prog);
		else if (req.stage == STAGE_EXEC &&
			 (e == ENOENT || e == EACCES || e == ENOEXEC || e == ENOTDIR))
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
	rc = 0;
done:
	if (locked)
		pthread_mutex_unlock(&watch_lock);
	free(marked_env);
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
