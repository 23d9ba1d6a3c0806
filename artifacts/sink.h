/*
 * sink.h - where a target's artifacts are written.
 *
 * A sink is a versioned ops table with the base struct embedded first in
 * each implementation (libgit2 style). Implemented: file (a local
 * directory). SFTP and S3 follow the same contract.
 *
 * Order: open, then for each file either has() says it is already there
 * (skip) or put() streams it in; then commit() (makes the set visible and
 * durable); close() always. A put that fails leaves nothing under the final
 * name: data goes to a temporary name and is renamed only after its size
 * and sha256 matched.
 */
#ifndef RH_SINK_H
#define RH_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rh_cancel;

/* Pulls up to `len` bytes into `buf`; returns the count, 0 at end, or a
 * negative RH_E* code. */
typedef long (*rh_sink_read_fn)(void *user, void *buf, size_t len);

struct rh_sink;

struct rh_sink_ops {
	unsigned version;
	const char *scheme; /* "file", "sftp", "s3" */
	/* True if `path` is present with this size and sha256 (hex). */
	int (*has)(struct rh_sink *s, const char *path, uint64_t size, const char *sha256,
		   bool *present);
	/* Streams `size` bytes from `read` to `path`, verifying sha256 (hex). */
	int (*put)(struct rh_sink *s, const char *path, uint64_t size, const char *sha256,
		   rh_sink_read_fn read, void *user);
	int (*commit)(struct rh_sink *s);
	void (*close)(struct rh_sink *s);
};
#define RH_SINK_OPS_VERSION 1

struct rh_sink {
	const struct rh_sink_ops *ops;
	char *url;                /* for messages, e.g. "file:///tmp/ws/model" */
	struct rh_cancel *cancel; /* may be NULL; put() stops with RH_ECANCELLED */
	/* progress: called with bytes written so far in the current put */
	void (*progress)(void *user, const char *path, uint64_t done, uint64_t total);
	void *progress_user;
};

/* Opens a directory sink at `dir` (created 0700 if missing). *out is new;
 * free with rh_sink_close. */
int rh_sink_file_open(struct rh_sink **out, const char *dir);

/* Calls ops->close; accepts NULL. */
void rh_sink_close(struct rh_sink *s);

/* Rejects manifest paths that could escape the sink root: empty, absolute,
 * "..", ".", empty segments, backslashes, control characters. */
bool rh_sink_path_is_safe(const char *path);

#endif
