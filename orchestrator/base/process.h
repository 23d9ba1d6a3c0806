/*
 * process.h - start and stop child processes without a shell.
 *
 * Every process rehydra starts (exec steps, the local provider's stack) goes
 * through here: fork and exec with an argv array, its own process group so a
 * whole tree can be signalled, stdout/stderr to files, a pidfd so waiting
 * can be combined with cancellation in one poll().
 *
 * Order: rh_spawn, then rh_child_wait (any number of times) and/or
 * rh_child_stop, then rh_child_release. rh_child_stop reaps the child;
 * rh_child_release closes the pidfd and, if the child was never reaped,
 * kills its group and reaps it, so no zombie or orphan outlives the struct.
 */
#ifndef RH_SPAWN_H
#define RH_SPAWN_H

#include "cancel.h"

#include <stdbool.h>
#include <sys/types.h>

struct rh_spawn_opts {
	const char *const *argv; /* argv[0] looked up in PATH of envp if it has no '/' */
	const char *const *envp; /* NULL-terminated "K=V"; NULL means an empty environment */
	const char *cwd;	 /* NULL: inherit */
	const char *stdout_path; /* created/truncated 0600; NULL: /dev/null */
	const char *stderr_path; /* NULL: /dev/null */
	const char *stdin_path;	 /* read-only; NULL: /dev/null */
};

struct rh_child {
	pid_t pid; /* also the process group id; 0 when none */
	int pidfd; /* -1 when none */
	bool reaped;
	int status; /* wait status once reaped */
};

/* Starts a child as the leader of a new process group, with default signal
 * dispositions and an empty signal mask, that gets SIGKILL when this
 * process ends (PR_SET_PDEATHSIG; every child is forked from one spawner
 * thread that lives as long as the process, see process.c). Returns 0, or RH_ENOTFOUND when
 * argv[0] cannot be found/executed (message names it), RH_EIO otherwise. */
int rh_spawn(struct rh_child *out, const struct rh_spawn_opts *opts);

/* Process-wide, for crash recovery (pgroup.h): while set, every child
 * rh_spawn starts gets `marker` ("NAME=VALUE", copied) in its environment,
 * replacing an entry of that name, and fn(user, pgid) (may be NULL) is
 * called once the child exists and before it may exec (so nothing it runs
 * can escape the record), from the spawner thread, with spawns serialised:
 * keep it short and do not spawn from it. (NULL, NULL,
 * NULL) clears it, after any callback still running has returned. Returns
 * 0, RH_EINVAL (no '=' in marker) or RH_ENOMEM. */
int rh_spawn_watch_set(const char *marker, void (*fn)(void *user, pid_t pgid), void *user);

/* Waits until the child exits, `deadline` (rh_clock_mono seconds; <= 0 for
 * none) passes, or `cancel` (may be NULL) fires. Returns 0 once exited
 * (c->status set), RH_ETIMEOUT, or RH_ECANCELLED. Never kills. */
int rh_child_wait(struct rh_child *c, double deadline, struct rh_cancel *cancel);

/* SIGTERM to the whole process group, up to `grace_s` for the leader to
 * exit, then SIGKILL to the group; reaps the leader. Idempotent. */
int rh_child_stop(struct rh_child *c, double grace_s);

/* True if the child is still running (not yet exited). */
bool rh_child_running(struct rh_child *c);

void rh_child_release(struct rh_child *c);

/* A readable one-line account of a wait status: "exited with status 3",
 * "killed by signal 9 (Killed)". buf of at least 64 bytes. */
void rh_child_describe(char *buf, size_t size, int status);

#endif
