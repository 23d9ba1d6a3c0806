/*
 * journal.h - the audit journal: an append-only, hash-chained log of every
 * drill record, kept in the state directory.
 *
 * File: <state_dir>/journal/journal.jsonl (0600, directory 0700), one JSON
 * object per line. Line 1 is the genesis entry. Every entry has
 *   seq   (0 for genesis, then 1, 2, ...),
 *   prev  (the "hash" of the entry before it; 64 zeros for genesis),
 *   kind  ("genesis" | "drill"),
 *   at    (UTC RFC 3339 of the append),
 *   record (the drill record, for kind "drill"),
 *   hash  (sha256 of the entry's canonical JSON without "hash": compact,
 *          keys sorted, 15 significant digits for reals).
 * The genesis entry also carries rehydra (the journal format, 1) and
 * journal_id (16 random hex digits, so no two journals share a chain).
 * Each line is exactly that canonical JSON with "hash" added; keys being
 * sorted, it reads {"at":"...","hash":"<64 hex>",...}, so the hashed bytes
 * are the line without its ,"hash":"..." member: anyone can check an entry
 * with sed and sha256sum.
 * Editing, deleting, reordering or truncating entries breaks the chain and
 * rh_journal_verify names where. Appends take an exclusive flock on the
 * file, write the line with one write(2), and fsync; a process killed in
 * the middle leaves at most one torn last line, which verify reports as
 * such and rh_journal_repair sets aside (moved, never deleted).
 */
#ifndef RH_JOURNAL_H
#define RH_JOURNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rh_journal;

struct rh_journal_entry {
	uint64_t seq;
	size_t line;	      /* 1-based line number in the file */
	const char *kind;     /* borrowed */
	const char *at;	      /* borrowed */
	const char *hash;     /* borrowed */
	const char *prev;     /* borrowed: the hash of the entry before */
	const json_t *record; /* borrowed; NULL for genesis */
};

enum rh_journal_problem_kind {
	RH_JOURNAL_OK = 0,
	RH_JOURNAL_TORN_TAIL,	/* last line incomplete: an append was cut off */
	RH_JOURNAL_BAD_LINE,	/* not a journal entry (foreign or edited text) */
	RH_JOURNAL_BAD_HASH,	/* entry's content does not match its hash (edited) */
	RH_JOURNAL_BROKEN_LINK, /* prev does not match the entry before (deleted/reordered) */
	RH_JOURNAL_BAD_SEQ,	/* sequence number out of order */
	RH_JOURNAL_NO_GENESIS,
};

struct rh_journal_problem {
	enum rh_journal_problem_kind kind;
	size_t line;	    /* where */
	uint64_t seq;	    /* the entry's seq when known */
	char message[512];  /* one clear sentence for the user */
	char last_hash[65]; /* hash of the last intact entry read ("" if none) */
};

/* Opens (creating dir, file and genesis entry if missing) the journal in
 * `state_dir`. *out is new; free with rh_journal_close. */
int rh_journal_open(struct rh_journal **out, const char *state_dir);
void rh_journal_close(struct rh_journal *j);

/* Opens an existing journal file, e.g. a copy taken from the mirror, without
 * creating anything. RH_ENOTFOUND when `file` does not exist. Appending to it
 * works as with rh_journal_open. *out is new; free with rh_journal_close. */
int rh_journal_open_file(struct rh_journal **out, const char *file);

/* Appends one drill record (copied, not stolen). *seq (may be NULL) gets its
 * sequence number. Safe against concurrent appends from other processes.
 * Refuses (RH_EVERIFY) to append after a torn or damaged last line, saying
 * to run `rehydra audit repair` or `rehydra audit verify`. */
int rh_journal_append(struct rh_journal *j, const json_t *record, uint64_t *seq);

/* Calls fn for every entry in order, streaming (bounded memory). Stops at
 * the first non-zero return of fn and returns it; returns RH_EVERIFY if the
 * file is not a well-formed journal at some line (no chain checks here),
 * after fn has seen every entry before that line. Holds a shared lock while
 * it reads, so it never sees an append half-written. */
int rh_journal_foreach(struct rh_journal *j,
		       int (*fn)(const struct rh_journal_entry *e, void *user), void *user);

/* Like rh_journal_foreach, but each entry's record holds only the listed
 * fields, which makes reading a big journal several times faster when a
 * caller reads a few fields of each record. `fields` is NULL-terminated;
 * a path names a member ("verdict" keeps the whole value), nested members
 * ("runbook.name") or the members of every object in an array
 * ("steps[].status"). An empty list gives empty records. The values are
 * what rh_journal_foreach would give; the members it skips are not checked
 * to be valid JSON (rh_journal_verify checks every byte). */
int rh_journal_foreach_fields(struct rh_journal *j, const char *const *fields,
			      int (*fn)(const struct rh_journal_entry *e, void *user), void *user);

/* Checks the whole chain. Returns 0 and problem->kind RH_JOURNAL_OK when
 * intact; RH_EVERIFY with the first problem described otherwise. *entries
 * (may be NULL) gets the number of entries read. */
int rh_journal_verify(struct rh_journal *j, struct rh_journal_problem *problem, uint64_t *entries);

/* Sets aside a torn last line (moves it to journal.jsonl.torn-<time>) so the
 * journal verifies again. Refuses (RH_EINVAL) any other kind of damage.
 * moved_to gets the path of the set-aside file, "" when there was nothing
 * to repair (returns 0 then too). */
int rh_journal_repair(struct rh_journal *j, char *moved_to, size_t size);

/* Path of the journal file (borrowed). */
const char *rh_journal_path(const struct rh_journal *j);

#endif
