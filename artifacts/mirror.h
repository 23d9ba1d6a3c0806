/*
 * mirror.h - off-host retention of the audit journal: a git mirror.
 *
 * The journal's hash chain shows an edit, but not a rewrite of everything
 * after it by someone who can write the file. A copy elsewhere closes that
 * gap: rh_mirror_push commits the journal into a local bare repository and
 * pushes it, never forcing, to a git remote the drill host cannot rewrite.
 *
 * Tree of every commit: README.txt and journal/NNNNNNNN.jsonl, the journal
 * cut into segments of RH_MIRROR_SEGMENT_LINES lines (segment NNNNNNNN holds
 * lines 1000 * NNNNNNNN + 1 on), so that concatenating them in name order
 * gives the journal
 * and a push sends the last segment, not the whole file. One commit per
 * push that has something new; the branch only ever moves forward.
 */
#ifndef RH_MIRROR_H
#define RH_MIRROR_H

#include <stdbool.h>
#include <stdint.h>

#define RH_MIRROR_SEGMENT_LINES 1000
#define RH_MIRROR_BRANCH "journal"

struct rh_mirror_result {
	uint64_t lines;	 /* journal lines (entries) in the pushed commit */
	bool new_commit; /* a commit was made for this push */
	bool pushed;	 /* the remote branch moved */
	char commit[41]; /* the branch tip, now on the remote */
};

/* Mirrors `journal_path` (complete lines only) into the bare repository
 * `mirror_dir` (created 0700 on first use) on branch `branch` (NULL: the
 * default "journal"), then pushes that branch to `remote` (a path, file://,
 * ssh:// (credentials from the ssh agent) or https:// URL).
 *
 * Before committing, the remote branch is fetched: when it has commits the
 * local branch does not descend from (another host's journal, a rewrite),
 * nothing is committed or pushed and RH_EVERIFY says so. Other failures:
 * RH_EIO (repository, transport; the message names the remote without
 * credentials), RH_EINVAL (bad branch name). The caller verifies the
 * journal first: the mirror copies what it is given. */
int rh_mirror_push(struct rh_mirror_result *res, const char *journal_path, const char *mirror_dir,
		   const char *remote, const char *branch);

struct rh_mirror_check {
	bool remote_exists;
	uint64_t mirrored;  /* journal lines held by the remote branch */
	uint64_t diff_line; /* first line that differs or is missing; 0 when none */
	char commit[41];    /* the remote branch tip */
};

/* Fetches branch `branch` (NULL: "journal") of `remote` into `mirror_dir`
 * and checks that the journal it holds is a prefix of `journal_path` (the
 * local journal may have more: entries not yet pushed). Returns 0;
 * RH_EVERIFY (message naming the line) when the local journal no longer
 * holds what was mirrored; RH_ENOTFOUND when the branch does not exist;
 * RH_EIO, RH_EINVAL as rh_mirror_push. rh_mirror_push refuses, with
 * RH_EVERIFY, to push a journal that fails this check. */
int rh_mirror_check(struct rh_mirror_check *res, const char *journal_path, const char *mirror_dir,
		    const char *remote, const char *branch);

#endif
