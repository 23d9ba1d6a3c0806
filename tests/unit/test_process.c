/*
 * test_process.c - child processes: PATH lookup in the child's env, cwd,
 * environment isolation, output capture, deadlines, cancellation, and
 * stopping a whole process tree.
 *
 * The process-tree cases need a child that starts a grandchild and ignores
 * SIGTERM. Rather than a shell script, the test binary plays that child
 * itself: started with RH_SPAWN_HELPER set, a constructor runs the helper
 * role before CUnit's main.
 */
#include "cancel.h"
#include "clock.h"
#include "error.h"
#include "process.h"
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <spawn.h>

extern char **environ;

static char self_exe[4096];

/* Helper role "tree": ignore SIGTERM, start `sleep 30` (also ignoring
 * SIGTERM: ignored signals survive exec) in our process group, write both
 * pids to stdout, then sleep. Only SIGKILL to the group ends both. */
__attribute__((constructor)) static void spawn_helper(void)
{
	const char *role = getenv("RH_SPAWN_HELPER");
	char *const argv[] = {"sleep", "30", NULL};
	char *const envp[] = {NULL};
	pid_t pid;

	if (!role)
		return;
	if (strcmp(role, "tree") == 0) {
		signal(SIGTERM, SIG_IGN);
		if (posix_spawn(&pid, "/bin/sleep", NULL, NULL, argv, envp) != 0)
			_exit(99);
		printf("%d %d\n", (int)getpid(), (int)pid);
		fflush(stdout);
		for (;;)
			pause();
	}
	_exit(98);
}

static void init_self(void)
{
	ssize_t n;

	if (self_exe[0])
		return;
	n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	CU_ASSERT_FATAL(n > 0);
	self_exe[n] = '\0';
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 65536);
	size_t n;

	if (!f || !buf) {
		if (f)
			fclose(f);
		free(buf);
		return NULL;
	}
	n = fread(buf, 1, 65535, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static const char *const std_env[] = {"PATH=/usr/bin:/bin", NULL};

static void test_process__exit_status(void)
{
	const char *argv[] = {"false", NULL};
	struct rh_spawn_opts o = {.argv = argv, .envp = std_env};
	struct rh_child c;
	char desc[64];

	CU_ASSERT_EQUAL_FATAL(rh_spawn(&c, &o), 0);
	CU_ASSERT(c.pid > 0);
	CU_ASSERT(c.pidfd >= 0);
	CU_ASSERT_EQUAL(rh_child_wait(&c, rh_clock_mono() + 30, NULL), 0);
	CU_ASSERT(c.reaped);
	CU_ASSERT(WIFEXITED(c.status));
	CU_ASSERT_EQUAL(WEXITSTATUS(c.status), 1);
	CU_ASSERT_FALSE(rh_child_running(&c));
	rh_child_describe(desc, sizeof(desc), c.status);
	CU_ASSERT_STRING_EQUAL(desc, "exited with status 1");
	rh_child_release(&c);

	rh_child_describe(desc, sizeof(desc), SIGKILL); /* a raw "killed by 9" status */
	CU_ASSERT(strstr(desc, "killed by signal 9") != NULL);
}

static void test_process__not_found(void)
{
	const char *argv[] = {"rh-no-such-program", NULL};
	const char *env[] = {"PATH=/nonexistent-a:/nonexistent-b", NULL};
	struct rh_spawn_opts o = {.argv = argv, .envp = env};
	const char *abs_argv[] = {"/nonexistent/prog", NULL};
	const char *ls_argv[] = {"ls", NULL};
	struct rh_child c;

	CU_ASSERT_EQUAL(rh_spawn(&c, &o), RH_ENOTFOUND);
	CU_ASSERT(strstr(rh_error_last(), "command not found: rh-no-such-program") != NULL);
	CU_ASSERT(strstr(rh_error_last(), "PATH=/nonexistent-a:/nonexistent-b") != NULL);
	CU_ASSERT_EQUAL(c.pid, 0);
	CU_ASSERT_EQUAL(c.pidfd, -1);

	/* PATH comes from the child's env, not ours: `ls` is on our PATH */
	o.argv = ls_argv;
	CU_ASSERT_EQUAL(rh_spawn(&c, &o), RH_ENOTFOUND);

	o.argv = abs_argv;
	o.envp = std_env;
	CU_ASSERT_EQUAL(rh_spawn(&c, &o), RH_ENOTFOUND);
	CU_ASSERT(strstr(rh_error_last(), "/nonexistent/prog") != NULL);

	o.argv = NULL;
	CU_ASSERT_EQUAL(rh_spawn(&c, &o), RH_EINVAL);
}

static void test_process__cwd_and_stdout(void)
{
	char *dir = rh_test_tmpdir();
	char *out = rh_test_path(dir, "out.txt");
	char *err = rh_test_path(dir, "err.txt");
	const char *argv[] = {"pwd", NULL};
	struct rh_spawn_opts o = {
	    .argv = argv, .envp = std_env, .cwd = dir, .stdout_path = out, .stderr_path = err};
	struct rh_child c;
	struct stat st;
	char *text, want[4200];

	CU_ASSERT_EQUAL_FATAL(rh_spawn(&c, &o), 0);
	CU_ASSERT_EQUAL(rh_child_wait(&c, rh_clock_mono() + 30, NULL), 0);
	CU_ASSERT(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0);
	rh_child_release(&c);
	text = slurp(out);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	snprintf(want, sizeof(want), "%s\n", dir);
	CU_ASSERT_STRING_EQUAL(text, want);
	free(text);
	CU_ASSERT_EQUAL(stat(out, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);

	/* a cwd that does not exist is a clear failure, not a child that runs elsewhere */
	o.cwd = "/nonexistent-dir-rh";
	CU_ASSERT(rh_spawn(&c, &o) < 0);
	CU_ASSERT(strstr(rh_error_last(), "/nonexistent-dir-rh") != NULL);

	rh_test_rm_rf(dir);
	free(out);
	free(err);
	free(dir);
}

static void test_process__env_isolation(void)
{
	char *dir = rh_test_tmpdir();
	char *out = rh_test_path(dir, "env.txt");
	const char *argv[] = {"env", NULL};
	const char *env[] = {"PATH=/usr/bin:/bin", "RH_ONLY_THIS=yes", NULL};
	struct rh_spawn_opts o = {.argv = argv, .envp = env, .stdout_path = out};
	struct rh_child c;
	char *text;

	setenv("RH_SPAWN_PARENT_SECRET", "hunter2", 1);
	CU_ASSERT_EQUAL_FATAL(rh_spawn(&c, &o), 0);
	CU_ASSERT_EQUAL(rh_child_wait(&c, rh_clock_mono() + 30, NULL), 0);
	rh_child_release(&c);
	text = slurp(out);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT(strstr(text, "RH_ONLY_THIS=yes\n") != NULL);
	CU_ASSERT(strstr(text, "PATH=/usr/bin:/bin\n") != NULL);
	CU_ASSERT(strstr(text, "hunter2") == NULL);
	CU_ASSERT(strstr(text, "HOME=") == NULL);
	free(text);
	unsetenv("RH_SPAWN_PARENT_SECRET");

	/* NULL envp: an empty environment (so an absolute path is needed) */
	argv[0] = "/usr/bin/env";
	o.envp = NULL;
	CU_ASSERT_EQUAL_FATAL(rh_spawn(&c, &o), 0);
	CU_ASSERT_EQUAL(rh_child_wait(&c, rh_clock_mono() + 30, NULL), 0);
	rh_child_release(&c);
	text = slurp(out);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_STRING_EQUAL(text, "");
	free(text);

	rh_test_rm_rf(dir);
	free(out);
	free(dir);
}

static void test_process__timeout(void)
{
	const char *argv[] = {"sleep", "30", NULL};
	struct rh_spawn_opts o = {.argv = argv, .envp = std_env};
	struct rh_child c;
	double t0;

	CU_ASSERT_EQUAL_FATAL(rh_spawn(&c, &o), 0);
	t0 = rh_clock_mono();
	CU_ASSERT_EQUAL(rh_child_wait(&c, t0 + 0.3, NULL), RH_ETIMEOUT);
	CU_ASSERT(rh_clock_mono() - t0 >= 0.29);
	CU_ASSERT(rh_clock_mono() - t0 < 5.0);
	CU_ASSERT(rh_child_running(&c));
	CU_ASSERT_FALSE(c.reaped);
	/* sleep dies on SIGTERM: stop must not wait out the grace */
	t0 = rh_clock_mono();
	CU_ASSERT_EQUAL(rh_child_stop(&c, 10.0), 0);
	CU_ASSERT(rh_clock_mono() - t0 < 5.0);
	CU_ASSERT(c.reaped);
	CU_ASSERT(WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGTERM);
	CU_ASSERT_FALSE(rh_child_running(&c));
	CU_ASSERT_EQUAL(rh_child_stop(&c, 1.0), 0); /* idempotent */
	rh_child_release(&c);
}

static int read_pids(const char *path, pid_t *a, pid_t *b)
{
	for (int i = 0; i < 500; i++) {
		char *t = slurp(path);
		int x = 0, y = 0;

		if (t && sscanf(t, "%d %d", &x, &y) == 2) {
			free(t);
			*a = x;
			*b = y;
			return 0;
		}
		free(t);
		usleep(10000);
	}
	return -1;
}

/* Orphaned group members are reparented to us (subreaper) and must be
 * reaped before the group disappears; waits up to 10 s. */
static bool group_gone(pid_t pgid)
{
	for (int i = 0; i < 1000; i++) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (kill(-pgid, 0) < 0 && errno == ESRCH)
			return true;
		usleep(10000);
	}
	return false;
}

static void test_process__stop_kills_group(void)
{
	char *dir = rh_test_tmpdir();
	char *out = rh_test_path(dir, "pids.txt");
	const char *argv[2];
	const char *env[] = {"PATH=/usr/bin:/bin", "RH_SPAWN_HELPER=tree", NULL};
	struct rh_spawn_opts o = {.argv = argv, .envp = env, .stdout_path = out};
	struct rh_child c;
	pid_t leader = 0, grandchild = 0;
	double t0;

	init_self();
	argv[0] = self_exe;
	argv[1] = NULL;
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	CU_ASSERT_EQUAL_FATAL(rh_spawn(&c, &o), 0);
	CU_ASSERT_EQUAL_FATAL(read_pids(out, &leader, &grandchild), 0);
	CU_ASSERT_EQUAL(leader, c.pid);
	CU_ASSERT_EQUAL(getpgid(grandchild), c.pid);
	CU_ASSERT_EQUAL(rh_child_wait(&c, rh_clock_mono() + 0.2, NULL), RH_ETIMEOUT);

	/* both ignore SIGTERM: stop waits the grace, then SIGKILLs the group */
	t0 = rh_clock_mono();
	CU_ASSERT_EQUAL(rh_child_stop(&c, 0.5), 0);
	CU_ASSERT(rh_clock_mono() - t0 >= 0.45);
	CU_ASSERT(rh_clock_mono() - t0 < 5.0);
	CU_ASSERT(WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGKILL);
	CU_ASSERT(group_gone(c.pid));
	CU_ASSERT(kill(grandchild, 0) < 0 && errno == ESRCH);
	rh_child_release(&c);
	prctl(PR_SET_CHILD_SUBREAPER, 0);

	rh_test_rm_rf(dir);
	free(out);
	free(dir);
}

static void test_process__release_kills(void)
{
	const char *argv[] = {"sleep", "30", NULL};
	struct rh_spawn_opts o = {.argv = argv, .envp = std_env};
	struct rh_child c;
	pid_t pid;

	CU_ASSERT_EQUAL_FATAL(rh_spawn(&c, &o), 0);
	pid = c.pid;
	rh_child_release(&c);
	CU_ASSERT(kill(pid, 0) < 0 && errno == ESRCH);
	CU_ASSERT_EQUAL(c.pidfd, -1);
}

struct fire_later {
	struct rh_cancel *c;
	double after_s;
};

static void *fire_thread(void *arg)
{
	struct fire_later *f = arg;
	struct timespec ts = {0, (long)(f->after_s * 1e9)};

	nanosleep(&ts, NULL);
	rh_cancel_fire(f->c);
	return NULL;
}

static void test_process__cancel_wakes_waiter(void)
{
	const char *argv[] = {"sleep", "30", NULL};
	struct rh_spawn_opts o = {.argv = argv, .envp = std_env};
	struct rh_cancel cancel;
	struct fire_later f = {&cancel, 0.2};
	struct rh_child c;
	pthread_t tid;
	double t0, took;

	CU_ASSERT_EQUAL_FATAL(rh_cancel_init(&cancel), 0);
	CU_ASSERT_FALSE(rh_cancel_is_fired(&cancel));
	CU_ASSERT_EQUAL_FATAL(rh_spawn(&c, &o), 0);
	t0 = rh_clock_mono();
	CU_ASSERT_EQUAL_FATAL(pthread_create(&tid, NULL, fire_thread, &f), 0);
	CU_ASSERT_EQUAL(rh_child_wait(&c, 0, &cancel), RH_ECANCELLED);
	took = rh_clock_mono() - t0;
	CU_ASSERT(took >= 0.15);
	CU_ASSERT(took < 3.0);
	pthread_join(tid, NULL);
	CU_ASSERT(rh_cancel_is_fired(&cancel));
	CU_ASSERT(rh_child_running(&c)); /* wait never kills */
	/* once fired, stays fired: the next wait returns at once */
	t0 = rh_clock_mono();
	CU_ASSERT_EQUAL(rh_child_wait(&c, 0, &cancel), RH_ECANCELLED);
	CU_ASSERT(rh_clock_mono() - t0 < 1.0);
	CU_ASSERT_EQUAL(rh_cancel_sleep(&cancel, 30), RH_ECANCELLED);
	rh_child_stop(&c, 2.0);
	rh_child_release(&c);
	rh_cancel_fire(&cancel); /* twice is harmless */
	rh_cancel_clear(&cancel);
}

static void test_process__cancel_sleep(void)
{
	struct rh_cancel cancel;
	double t0;

	CU_ASSERT_EQUAL_FATAL(rh_cancel_init(&cancel), 0);
	t0 = rh_clock_mono();
	CU_ASSERT_EQUAL(rh_cancel_sleep(&cancel, 0.2), 0);
	CU_ASSERT(rh_clock_mono() - t0 >= 0.19);
	CU_ASSERT_EQUAL(rh_cancel_sleep(NULL, 0.01), 0);
	rh_cancel_clear(&cancel);
}

struct thread_spawn {
	struct rh_child c;
	int rc;
};

static void *spawn_in_thread(void *arg)
{
	struct thread_spawn *t = arg;
	const char *argv[] = {"sleep", "30", NULL};
	struct rh_spawn_opts o = {.argv = argv, .envp = std_env};

	t->rc = rh_spawn(&t->c, &o);
	return NULL;
}

/* A child started from a thread that then ends keeps running: the death
 * signal is tied to the spawner thread, not to the caller's. */
static void test_process__outlives_spawning_thread(void)
{
	struct thread_spawn t = {0};
	pthread_t tid;

	CU_ASSERT_EQUAL_FATAL(pthread_create(&tid, NULL, spawn_in_thread, &t), 0);
	pthread_join(tid, NULL);
	CU_ASSERT_EQUAL_FATAL(t.rc, 0);
	CU_ASSERT_EQUAL(rh_child_wait(&t.c, rh_clock_mono() + 0.3, NULL), RH_ETIMEOUT);
	CU_ASSERT(rh_child_running(&t.c));
	rh_child_stop(&t.c, 0);
	rh_child_release(&t.c);
}

/* A process that is SIGKILLed takes its children with it: a forked copy of
 * this test (with no spawner thread of its own yet) starts `sleep`, reports
 * its pid and is killed; the sleep must end too. */
static void test_process__dies_with_parent(void)
{
	int pfd[2];
	pid_t fake, sleeper = 0;
	int status, fd;
	struct pollfd p;

	CU_ASSERT_EQUAL_FATAL(pipe(pfd), 0);
	fake = fork();
	CU_ASSERT_FATAL(fake >= 0);
	if (fake == 0) {
		const char *argv[] = {"sleep", "30", NULL};
		struct rh_spawn_opts o = {.argv = argv, .envp = std_env};
		struct rh_child c;

		close(pfd[0]);
		if (rh_spawn(&c, &o) != 0)
			_exit(1);
		if (write(pfd[1], &c.pid, sizeof(c.pid)) != (ssize_t)sizeof(c.pid))
			_exit(1);
		pause();
		_exit(0);
	}
	close(pfd[1]);
	CU_ASSERT_EQUAL(read(pfd[0], &sleeper, sizeof(sleeper)), (ssize_t)sizeof(sleeper));
	close(pfd[0]);
	CU_ASSERT_FATAL(sleeper > 0);
	fd = (int)syscall(SYS_pidfd_open, sleeper, 0);
	CU_ASSERT_FATAL(fd >= 0);
	kill(fake, SIGKILL);
	waitpid(fake, &status, 0);
	p.fd = fd;
	p.events = POLLIN;
	p.revents = 0;
	/* readable once the sleep has exited */
	CU_ASSERT_EQUAL(poll(&p, 1, 5000), 1);
	if (!p.revents) /* failed: do not leave it behind */
		syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
	close(fd);
}

static void test_process__clock(void)
{
	struct timespec ts = {1795926798, 123456789}; /* 2026-11-28T04:33:18.123Z */
	char buf[40];
	double a = rh_clock_mono(), b = rh_clock_mono();

	CU_ASSERT(b >= a);
	rh_clock_rfc3339(buf, sizeof(buf), &ts);
	CU_ASSERT_EQUAL(strlen(buf), 24);
	CU_ASSERT_STRING_EQUAL(buf + 19, ".123Z");
	CU_ASSERT(buf[10] == 'T');
	CU_ASSERT(rh_clock_wall().tv_sec > 1700000000);
}

RH_TEST_MAIN("process", {"test_process__exit_status", test_process__exit_status},
	     {"test_process__not_found", test_process__not_found},
	     {"test_process__cwd_and_stdout", test_process__cwd_and_stdout},
	     {"test_process__env_isolation", test_process__env_isolation},
	     {"test_process__timeout", test_process__timeout},
	     {"test_process__stop_kills_group", test_process__stop_kills_group},
	     {"test_process__release_kills", test_process__release_kills},
	     {"test_process__cancel_wakes_waiter", test_process__cancel_wakes_waiter},
	     {"test_process__cancel_sleep", test_process__cancel_sleep},
	     {"test_process__outlives_spawning_thread", test_process__outlives_spawning_thread},
	     {"test_process__dies_with_parent", test_process__dies_with_parent},
	     {"test_process__clock", test_process__clock})
