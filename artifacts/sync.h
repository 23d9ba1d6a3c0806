/*
 * sync.h - copy one model version from a registry into a sink: the step
 * that usually sets the RTO, so it is where the time goes.
 *
 * For each manifest file: ask the sink whether it already has it (same path,
 * size, sha256) and skip it; otherwise put() it from the registry's source.
 * Files go in parallel up to min(opts->parallel, sink max_parallel). Then
 * manifest.json itself (its exact bytes) and the sink's commit. Memory is
 * bounded whatever the sizes. An unchanged re-sync sends 0 payload bytes.
 */
#ifndef RH_SYNC_H
#define RH_SYNC_H

#include "registry.h"
#include "sink.h"

#include <stdint.h>

struct rh_cancel;

struct rh_sync_progress {
	uint64_t done;	/* payload bytes moved or skipped so far */
	uint64_t total; /* bytes of the whole version */
	double rate;	/* bytes/s of payload moved, recent */
	double eta_s;	/* seconds left at that rate, -1 unknown */
};

struct rh_sync_opts {
	unsigned version;
	unsigned parallel;	  /* files in flight; 0 = the sink's max_parallel */
	struct rh_cancel *cancel; /* may be NULL */
	/* At most ~5 times a second, from one thread at a time; may be NULL. */
	void (*progress)(void *user, const struct rh_sync_progress *p);
	void *progress_user;
};
#define RH_SYNC_OPTS_VERSION 1
#define RH_SYNC_OPTS_INIT                                                                          \
	{                                                                                          \
		RH_SYNC_OPTS_VERSION, 0, NULL, NULL, NULL                                          \
	}

struct rh_sync_stats {
	uint64_t files; /* manifest files (manifest.json not counted) */
	uint64_t files_sent;
	uint64_t files_skipped;
	uint64_t bytes_sent;	/* payload actually transferred */
	uint64_t bytes_skipped; /* already at the target */
	uint64_t bytes_resumed; /* kept from partials of an earlier, cut-off run */
	double seconds;
	double throughput_mib_s; /* bytes_sent / seconds */
};

int rh_sync_run(struct rh_registry *r, const struct rh_model_version *v, struct rh_sink *sink,
		const struct rh_sync_opts *opts, struct rh_sync_stats *stats);

/* Reads every file of `v` from the registry and checks it against the
 * manifest (size and sha256). Returns 0, or RH_EVERIFY naming the first bad
 * file; `bad` (may be NULL) gets how many files failed. */
int rh_sync_verify(struct rh_registry *r, const struct rh_model_version *v,
		   struct rh_cancel *cancel, size_t *bad);

#endif
