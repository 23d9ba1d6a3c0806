/*
 * sink.h - where a target's artifacts are written: a local directory, an
 * SFTP server, or S3-compatible object storage.
 *
 * A sink is a versioned ops table with the base struct embedded first in
 * each implementation (libgit2 style), opened from a URL:
 *   file:///abs/dir
 *   sftp://user@host[:port]/abs/or/relative/dir
 *   s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=eu-north1&style=path|virtual
 *
 * Order: open; then, for every file, has() (already there with this size
 * and sha256? skip it) or put(); then commit() (writes the sink's manifest
 * of what it holds and makes everything durable/visible); close() always.
 *
 * Every sink keeps a manifest of what it holds (".rehydra-sink.json" at its
 * root: path -> size, sha256), so a re-sync asks has() and sends only what
 * is missing or changed: an unchanged re-sync sends zero payload bytes.
 *
 * put() contract:
 *   - bytes come from a random-access source (pread-like), so a sink may
 *     send parts in parallel and resume at an offset;
 *   - nothing appears under the final name until all `size` bytes are there
 *     and verified against `sha256` (hashed as they stream; on resume the
 *     sink must make sure the part it kept is the start of this same object,
 *     e.g. a partial keyed by the sha256, and verify the whole at the end);
 *   - a put cut off (connection lost, process killed) leaves a partial that
 *     the next put() of the same (path, size, sha256) resumes from;
 *   - a failed put never leaves a corrupt file under the final name;
 *   - it returns RH_ECANCELLED soon after sink->cancel fires.
 * Up to ops->max_parallel put() calls may run at once on one sink (from
 * different threads); has() and commit() are never concurrent with put().
 */
#ifndef RH_SINK_H
#define RH_SINK_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rh_cancel;

/* A random-access byte source: read_at may be called from several threads
 * at once with different offsets. Returns the count read (short only at
 * the end), 0 at/after the end, or a negative RH_E* code with the message
 * set. */
struct rh_source {
	uint64_t size;
	long (*read_at)(void *user, uint64_t offset, void *buf, size_t len);
	void *user;
	const char *name; /* for messages: the registry file or cache object */
	const void *data; /* rh_source_mem_init's bytes (its user is the source itself) */
	/* A descriptor of a local regular file that holds exactly these bytes
	 * (borrowed: open while the source is), or -1; NULL when the source
	 * has none. Lets the file sink clone or hard-link instead of copying;
	 * the sink still hashes what ends up under the final name. */
	int (*local_fd)(void *user);
};

struct rh_put_stats {
	uint64_t bytes_sent;	/* payload bytes transferred by this put */
	uint64_t bytes_resumed; /* bytes a partial already held (not sent again) */
};

struct rh_sink;

struct rh_sink_ops {
	unsigned version;
	const char *scheme;    /* "file", "sftp", "s3" */
	unsigned max_parallel; /* put() calls that may run at once, >= 1 */
	int (*has)(struct rh_sink *s, const char *path, uint64_t size, const char *sha256,
		   bool *present);
	int (*put)(struct rh_sink *s, const char *path, uint64_t size, const char *sha256,
		   const struct rh_source *src, struct rh_put_stats *stats);
	int (*commit)(struct rh_sink *s);
	void (*close)(struct rh_sink *s);
};
#define RH_SINK_OPS_VERSION 2

struct rh_sink {
	const struct rh_sink_ops *ops;
	char *url;		  /* for messages; never contains secrets */
	char *location;		  /* what ${model.path} becomes: a local or remote dir, s3:// */
	struct rh_cancel *cancel; /* may be NULL */
	/* Called (from put threads, serialised by the caller's lock) with the
	 * number of payload bytes just moved; may be NULL. */
	void (*progress)(void *user, uint64_t delta);
	void *progress_user;
};

/* Options for rh_sink_open; zero-initialise with RH_SINK_OPTS_INIT. */
struct rh_sink_opts {
	unsigned version;
	unsigned parallel; /* connections/parts in flight; 0 = sink default */
	/* sftp */
	const char *known_hosts;   /* default ~/.ssh/known_hosts */
	bool accept_new_host_key;  /* trust an unknown key and record it (never a changed one) */
	const char *identity_file; /* default: ssh-agent, then ~/.ssh/id_ed25519, id_rsa */
	/* s3: credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
	 * AWS_SESSION_TOKEN; region/endpoint from the URL, else AWS_REGION /
	 * AWS_ENDPOINT_URL */
	uint64_t part_size; /* multipart part size; 0 = default (16 MiB) */
};
#define RH_SINK_OPTS_VERSION 1
#define RH_SINK_OPTS_INIT                                                                          \
	{                                                                                          \
		RH_SINK_OPTS_VERSION, 0, NULL, false, NULL, 0                                      \
	}

/* Opens a sink by URL (scheme dispatch). *out is new; free with
 * rh_sink_close. Errors name the URL (without credentials) and say what to
 * do: an unknown host key names the key's fingerprint and the option that
 * accepts it. */
int rh_sink_open(struct rh_sink **out, const char *url, const struct rh_sink_opts *opts);

/* The implementations (scheme-specific openers, called by rh_sink_open). */
int rh_sink_file_open(struct rh_sink **out, const char *dir);
int rh_sink_sftp_open(struct rh_sink **out, const char *url, const struct rh_sink_opts *opts);
int rh_sink_s3_open(struct rh_sink **out, const char *url, const struct rh_sink_opts *opts);

/* Reads the small object `key` (relative to the bucket, not to the sink's
 * prefix) of the S3 target `url` into *body (new, NUL-terminated, at most
 * `max` bytes; *len its length), with the credentials rh_sink_s3_open
 * uses. Returns 0, RH_ENOTFOUND when there is no such object, RH_EINVAL
 * when it is larger than `max`, or a request's error. */
int rh_s3_object_get(char **body, size_t *len, const char *url, const char *key, size_t max);

/* Writes the small object `key` (relative to the bucket, like
 * rh_s3_object_get) of the S3 target `url`: `len` bytes of `body`, with
 * the sha256 in x-amz-content-sha256 and `content_type` (may be NULL).
 * Returns 0 or the request's error (the message names the key). */
int rh_s3_object_put(const char *url, const char *key, const void *body, size_t len,
		     const char *content_type);

/* Calls ops->close; accepts NULL. */
void rh_sink_close(struct rh_sink *s);

/* ---- the sink manifest ----------------------------------------------------
 *
 * What every sink keeps of what it holds, at its root as
 * RH_SINK_MANIFEST_NAME: {"rehydra_sink": 1, "files": {PATH: {"size": N,
 * "sha256": HEX, ...}}}, where "..." are what a sink needs to trust an
 * entry (the file sink: the inode's identity; SFTP: the mtime). The
 * bookkeeping is shared; reading and writing the bytes is each sink's.
 * Puts record in parallel, so set/forget take the lock; get/match are for
 * has() and commit(), which never run beside a put.
 */
#define RH_SINK_MANIFEST_NAME ".rehydra-sink.json"

struct rh_sink_manifest {
	pthread_mutex_t lock;
	json_t *files; /* owned: path -> entry */
	bool dirty;    /* changed since loaded or saved */
};

/* An empty manifest. Returns 0 or RH_ENOMEM. */
int rh_sink_manifest_init(struct rh_sink_manifest *m);
/* Takes the entries of a parsed manifest document (borrowed); a NULL, damaged
 * or other-format one leaves the manifest empty: that only costs re-checking
 * what the sink holds. */
void rh_sink_manifest_adopt(struct rh_sink_manifest *m, const json_t *doc);
/* Records `path` with its size and sha256, plus the members of `extra` (an
 * object, stolen; may be NULL). `url` names the sink in messages. */
int rh_sink_manifest_set(struct rh_sink_manifest *m, const char *path, uint64_t size,
			 const char *sha256, json_t *extra, const char *url);
/* Drops `path`, if listed: whatever is there now, the sink does not vouch for. */
void rh_sink_manifest_forget(struct rh_sink_manifest *m, const char *path);
/* The entry of `path` when it lists exactly this size and sha256 (64 lower
 * hex), else NULL. Borrowed. */
const json_t *rh_sink_manifest_match(const struct rh_sink_manifest *m, const char *path,
				     uint64_t size, const char *sha256);
/* The entry of `path` (NULL when not listed); its sha256 is 64 lower hex. */
const json_t *rh_sink_manifest_get(const struct rh_sink_manifest *m, const char *path);
/* The document's text to store (new string, sorted keys), or NULL with
 * RH_ENOMEM. Call rh_sink_manifest_saved once it is stored. */
int rh_sink_manifest_text(const struct rh_sink_manifest *m, char **text, const char *url);
void rh_sink_manifest_saved(struct rh_sink_manifest *m);
void rh_sink_manifest_release(struct rh_sink_manifest *m);

/* Rejects manifest paths that could escape the sink root: empty, absolute,
 * "..", ".", empty segments, backslashes, control characters. */
bool rh_sink_path_is_safe(const char *path);

/* A source over a local file (pread). *out is new; free with
 * rh_source_file_close. */
int rh_source_file_open(struct rh_source **out, const char *path);
void rh_source_file_close(struct rh_source *src);

/* A source over memory: `data` (borrowed) must outlive the source, and the
 * source must stay where it is while it is read (its user points to it). */
void rh_source_mem_init(struct rh_source *src, const void *data, size_t len, const char *name);

#endif
