/*
 * checkpoint.h - signed checkpoints of the audit journal's head.
 *
 * The hash chain shows an edited entry, but not an editor who recomputes
 * every hash after it, nor a deleted last entry. A checkpoint is a small
 * text naming the head at one moment (sequence number, hash, time), signed
 * by the operator in OpenSSH's SSHSIG format by spawning `ssh-keygen -Y
 * sign` with a key file or the ssh agent (as git does for SSH commit
 * signing). Whoever holds the allowed-signers file can check it with stock
 * `ssh-keygen -Y verify`, without rehydra: a rewritten chain no longer has
 * the signed hash at the signed sequence number.
 *
 * Files: <journal dir>/checkpoints/<seq, 10 digits>.txt and .txt.sig; the
 * text is exactly:
 *     rehydra journal checkpoint 1\n
 *     seq N\n
 *     hash <64 hex>\n
 *     at <UTC RFC 3339>\n
 * signed with namespace RH_CHECKPOINT_NAMESPACE.
 */
#ifndef RH_CHECKPOINT_H
#define RH_CHECKPOINT_H

#include "journal.h"

#include <stddef.h>
#include <stdint.h>

#define RH_CHECKPOINT_NAMESPACE "rehydra-journal"

/* Signs the current head of `j` with `key` (a private key file, or a public
 * key whose private half is in the ssh agent). `path` (size bytes) gets the
 * checkpoint's .txt path, *seq (may be NULL) its sequence number. Refuses
 * (RH_EVERIFY) a journal that does not verify. 0 or negative with the
 * message set (ssh-keygen's own message included). */
int rh_checkpoint_create(struct rh_journal *j, const char *key, char *path, size_t size,
			 uint64_t *seq);

struct rh_checkpoint_report {
	size_t checked;	     /* checkpoints whose signature and entry matched */
	uint64_t latest_seq; /* the newest good checkpoint's seq */
	char principal[256]; /* who signed the newest good checkpoint */
	char problem[1024];  /* the first problem, "" when none */
};

/* Verifies every checkpoint of `j` against `allowed_signers` (ssh-keygen's
 * ALLOWED SIGNERS format) and the journal: each signature must verify
 * (ssh-keygen -Y find-principals, then -Y verify), and the journal must
 * hold the signed hash at the signed sequence number. Returns 0 when all
 * do and there is at least one; RH_EVERIFY with rep->problem set otherwise;
 * another negative code when ssh-keygen cannot be run. */
int rh_checkpoint_verify(struct rh_journal *j, const char *allowed_signers,
			 struct rh_checkpoint_report *rep);

#endif
