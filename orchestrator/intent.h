/*
 * intent.h - what a running drill has started, on disk, so that a rehydra
 * killed with SIGKILL (or a machine that lost power) leaves nothing behind
 * unnoticed.
 *
 * File: <state_dir>/intents/<drill id>.json (0600, directory 0700), always
 * replaced atomically (temporary name, fsync, rename, fsync of the
 * directory). Members:
 *   rehydra_intent  1 (the format)
 *   drill_id, drill_dir, started_at (UTC RFC 3339)
 *   pid, pid_start  the rehydra process and its start time in clock ticks
 *                   since boot (pgroup.h), boot_id: together they tell a
 *                   dead rehydra from a live one, even after pid reuse
 *   marker          "REHYDRA_DRILL_ID=<drill id>", put into the environment
 *                   of every child the drill spawns
 *   process_groups  [{"pgid": N, "start": ticks}] appended as children start
 *   workspace       directory the target created on this machine, or null
 *   terraform_dir   the drill's Terraform working directory (may not exist)
 *   terraform_bin   the binary the target names, or null (rh_tf_find then)
 *   record          the drill record as it was at the start (verdict and
 *                   steps not yet known), the base of an `abandoned` entry
 *
 * Order: rh_intent_begin before the drill starts anything, rh_intent_note_*
 * as it does (thread-safe), rh_intent_finish once its record and journal
 * entry are written. The next command that opens the state directory calls
 * rh_intent_recover, which handles every intent whose rehydra is gone.
 */
#ifndef RH_INTENT_H
#define RH_INTENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RH_INTENT_FORMAT 1
#define RH_INTENT_MARKER_NAME "REHYDRA_DRILL_ID"

struct rh_intent;

/* Writes the intent of drill `drill_id` (drill directory `drill_dir`,
 * record skeleton `record`, copied; terraform binary `terraform_bin`, may
 * be NULL) into state_dir. *out is new; release it with rh_intent_finish
 * or rh_intent_free. */
int rh_intent_begin(struct rh_intent **out, const char *state_dir, const char *drill_id,
		    const char *drill_dir, const json_t *record, const char *terraform_bin);

/* Adds a process group the drill started and rewrites the file. */
int rh_intent_note_group(struct rh_intent *in, pid_t pgid);

/* Sets "workspace" (or another path member: "terraform_dir") and rewrites
 * the file. */
int rh_intent_note_path(struct rh_intent *in, const char *key, const char *path);

/* "REHYDRA_DRILL_ID=<id>" (borrowed). */
const char *rh_intent_marker(const struct rh_intent *in);

/* The drill ended normally: removes the file and frees `in` (may be NULL). */
int rh_intent_finish(struct rh_intent *in);

/* Frees without removing the file (may be NULL). */
void rh_intent_free(struct rh_intent *in);

/* A parsed intent file; every string is new. */
struct rh_intent_group {
	pid_t pgid;
	unsigned long long start;
};

struct rh_intent_info {
	char *drill_id, *drill_dir, *started_at, *marker, *boot_id;
	char *workspace, *terraform_dir, *terraform_bin; /* NULL when absent */
	pid_t pid;
	unsigned long long pid_start;
	struct rh_intent_group *groups;
	size_t n_groups;
	json_t *record; /* new reference, NULL when absent */
};

/* Parses the text of an intent file. Returns 0, or RH_EINVAL with a message
 * naming the member that is missing or wrong. */
int rh_intent_parse(struct rh_intent_info *out, const char *text, size_t len);
void rh_intent_info_clear(struct rh_intent_info *info);

/* The JSON text rh_intent_begin and the notes write for `info` (new). */
char *rh_intent_format(const struct rh_intent_info *info);

/* True when the rehydra that wrote `info` no longer runs: another boot, no
 * such pid, or a pid that started at another time (reused). */
bool rh_intent_is_stale(const struct rh_intent_info *info);

/* What recovery found and did for one stale drill. */
struct rh_intent_recovery {
	const char *drill_id; /* borrowed, valid during the callback */
	pid_t pid;	      /* the rehydra that was killed */
	unsigned groups_stopped, processes_killed;
	const char *workspace; /* removed; NULL when none existed */
	const char *destroy;   /* "destroyed", "failed: ..." or NULL when not needed */
	bool journaled;	       /* appended as `abandoned` (false: it was already journaled) */
	uint64_t seq;
	const char *problem; /* what could not be done, or NULL */
	/* The drill had written its own record (this verdict), which was
	 * journaled instead of an abandoned one; "" otherwise. */
	char own_verdict[32];
};

/* Handles every stale intent in state_dir (none: returns 0 at once): stops
 * its process groups (pgroup.h), removes its workspace, runs `terraform
 * destroy` in its terraform dir when that holds a state (bounded by
 * `destroy_timeout_s`), writes an `abandoned` record into its drill dir and
 * the journal (or journals the drill's own record when it had written one,
 * being killed before its journal entry), and removes the intent. fn (may be NULL) is called once
 * per drill. *n (may be NULL) gets the number recovered. Concurrent recoveries take turns on a lock
 * file. Returns 0 or the first error (the others are still tried). */
int rh_intent_recover(const char *state_dir, double destroy_timeout_s,
		      void (*fn)(void *user, const struct rh_intent_recovery *r), void *user,
		      unsigned *n);

#endif
