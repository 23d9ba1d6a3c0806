/*
 * pgroup.h - finding and stopping the process groups a killed rehydra left
 * behind, without ever signalling a process that only reuses a pid.
 *
 * A drill records each process group it starts as (pgid, start), where
 * start is the leader's start time in clock ticks since boot (field 22 of
 * /proc/PID/stat), and every child it spawns carries a marker variable in
 * its environment (process.h, rh_spawn_watch_set). A later rehydra stops a
 * recorded group only through processes it can prove are the drill's: the
 * leader with the recorded start time (then the group is the original one,
 * since a group id cannot be reused while the group has members), or a
 * member whose environment holds the marker.
 */
#ifndef RH_PGROUP_H
#define RH_PGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The start time of `pid` in clock ticks since boot. Returns 0,
 * RH_ENOTFOUND when no such process exists, RH_EIO when /proc cannot be
 * read. */
int rh_proc_start_ticks(pid_t pid, unsigned long long *out);

/* This boot's id (/proc/sys/kernel/random/boot_id) into out (at least 40
 * bytes); "" when unknown. Start times only compare within one boot. */
void rh_proc_boot_id(char *out, size_t size);

/* True when `pid` runs now and started at `start` ticks: the same process
 * that was recorded, not a new one with its pid. */
bool rh_proc_is(pid_t pid, unsigned long long start);

/* Stops, with SIGKILL, every process of group `pgid` that is provably the
 * drill's (see above; `marker` is "NAME=VALUE", may be NULL) and waits up to
 * `wait_s` for them to exit. *killed (may be NULL) gets how many were
 * signalled. Returns 0, or RH_ETIMEOUT when some were still running at the
 * end (message names them). */
int rh_pgroup_kill_owned(pid_t pgid, unsigned long long leader_start, const char *marker,
			 double wait_s, unsigned *killed);

/* How many running processes (not zombies) carry `marker` in their
 * environment; for tests and checks. */
size_t rh_proc_count_marked(const char *marker);

#endif
