/*
 * lfs.h - Git LFS: pointers (spec v1), the local object store, and the
 * batch API client that fetches objects from an LFS server.
 *
 * libgit2 knows nothing of LFS: a file tracked by LFS is, in git, a small
 * "pointer" blob naming the object's sha256 and size; the bytes live in an
 * object store: the repository's <gitdir>/lfs/objects/aa/bb/<oid> (filled by
 * `git lfs fetch`) or an LFS server reached through the batch API
 * (git-lfs docs/api/batch.md) and the "basic" transfer adapter
 * (docs/api/basic-transfers.md).
 *
 * Pointer format (git-lfs docs/spec.md): UTF-8 lines "key value\n", the
 * first key `version`, the rest sorted by key, LF line endings, under 1024
 * bytes, required keys version, oid ("sha256:" + 64 lowercase hex) and size.
 * We parse strictly and do not support extensions (ext-N-name keys).
 *
 * Secrets: an endpoint's credentials (URL userinfo, REHYDRA_LFS_TOKEN, the
 * headers a batch response hands out) go into request headers only, never
 * into messages: every message names the endpoint without its userinfo.
 */
#ifndef RH_LFS_H
#define RH_LFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rh_cancel;

#define RH_LFS_POINTER_MAX 1024 /* pointer files are smaller than this */
#define RH_LFS_SPEC_V1 "https://git-lfs.github.com/spec/v1"
#define RH_LFS_MEDIA_TYPE "application/vnd.git-lfs+json"

struct rh_lfs_pointer {
	char oid[65]; /* lowercase hex sha256 */
	uint64_t size;
};

/* True if `data` claims to be an LFS pointer (small, starts with
 * "version https://git-lfs.github.com/spec/" or the legacy hawser URL):
 * such a blob is then parsed strictly and rejected if malformed, never
 * taken as the file's content. */
bool rh_lfs_pointer_detect(const void *data, size_t len);

/* Parses a pointer strictly. Returns 0, or RH_EINVAL with rh_error_last()
 * saying what is wrong (without naming the file: the caller prefixes it). */
int rh_lfs_pointer_parse(struct rh_lfs_pointer *out, const void *data, size_t len);

/* "<gitdir>/lfs/objects/<oid[0:2]>/<oid[2:4]>/<oid>"; new string or NULL
 * when out of memory. */
char *rh_lfs_local_object_path(const char *gitdir, const char *oid);

/* ---- URLs ---------------------------------------------------------------- */

/* `url` without its userinfo ("https://u:p@h/x" -> "https://h/x"), for
 * messages and for keys; new string or NULL when out of memory. */
char *rh_lfs_url_redact(const char *url);

/* Splits the userinfo off `url`: *bare (new) is the URL without it, *user
 * and *pass (new, percent-decoded, NULL when absent) its parts. Returns 0 or
 * RH_ENOMEM. */
int rh_lfs_url_split(const char *url, char **bare, char **user, char **pass);

/* The LFS endpoint git-lfs derives for a git remote URL without lfs.url
 * (docs/api/server-discovery.md): "<url>.git/info/lfs" unless the URL
 * already ends in ".git" ("<url>/info/lfs"); ssh://[user@]host/path maps to
 * https://host/path. New string, or NULL for URLs with no HTTP endpoint
 * (file://, local paths) or when out of memory. */
char *rh_lfs_endpoint_for_remote(const char *remote_url);

/* ---- the batch API ------------------------------------------------------- */

/* What a batch response says about one object's download. */
struct rh_lfs_action {
	char *href;	   /* new */
	char **headers;	   /* new: "Name: value" strings, NULL-terminated */
	double expires_at; /* CLOCK_REALTIME seconds; 0 = never */
};

void rh_lfs_action_clear(struct rh_lfs_action *a);

/* Parses a batch response body for the download of `p`. `server` names the
 * endpoint in messages. Returns 0 with *out filled, or:
 *   RH_ENOTFOUND  the server says it does not have the object (404, 410),
 *   RH_EVERIFY    the server says the object is invalid (422), or its
 *                 answer's size differs from the pointer's,
 *   RH_EINVAL     the body is not a batch response we can use (not JSON,
 *                 no such object, no download action, another transfer).
 * Every message names the oid and the server. */
int rh_lfs_batch_parse(struct rh_lfs_action *out, const char *body, size_t len,
		       const struct rh_lfs_pointer *p, const char *server);

/* The request body for downloading `p` (new string), naming `ref` (e.g.
 * "refs/tags/tiny/1.0.0") when not NULL. */
char *rh_lfs_batch_request(const struct rh_lfs_pointer *p, const char *ref);

/* Seconds to wait before retrying, from a Retry-After header value (delay
 * seconds or an HTTP-date); -1 when absent or unparsable. `now` is
 * CLOCK_REALTIME seconds. */
double rh_lfs_retry_after(const char *value, double now);

/* An LFS server's endpoint and how to authenticate to it. */
struct rh_lfs_remote;

/* `endpoint` is the LFS URL (".../info/lfs"), possibly with userinfo
 * (sent as Basic auth); when it has none, the environment's
 * REHYDRA_LFS_TOKEN (sent as "Authorization: Bearer") is used if set.
 * *out is new; free with rh_lfs_remote_free. */
int rh_lfs_remote_new(struct rh_lfs_remote **out, const char *endpoint);
void rh_lfs_remote_free(struct rh_lfs_remote *rm);

/* The endpoint without credentials (borrowed). */
const char *rh_lfs_remote_name(const struct rh_lfs_remote *rm);

/* Retry policy, for tests; zero-initialise with RH_LFS_FETCH_OPTS_INIT. */
struct rh_lfs_fetch_opts {
	unsigned version;
	unsigned attempts;    /* tries per request (batch, then download); default 6 */
	double backoff_s;     /* first wait; doubles, +-25% jitter; default 0.5 */
	double backoff_max_s; /* default 30 */
	const char *ref;      /* sent as the batch request's ref; may be NULL */
	struct rh_cancel *cancel;
};
#define RH_LFS_FETCH_OPTS_VERSION 1
#define RH_LFS_FETCH_OPTS_INIT                                                                     \
	{                                                                                          \
		RH_LFS_FETCH_OPTS_VERSION, 0, 0, 0, NULL, NULL                                     \
	}

/* Downloads object `p` into `fd` (an empty file opened for writing):
 * batch request, then GET of the download href with the headers the server
 * gave; retries 429 and 5xx (honouring Retry-After) and transient network
 * errors with exponential backoff and jitter; writes while hashing and
 * stops as soon as more than p->size bytes arrive. On success `fd` holds
 * exactly p->size bytes whose sha256 is p->oid (not yet fsynced). On
 * failure its content is undefined. Returns 0, RH_ENOTFOUND, RH_EVERIFY,
 * RH_EIO, RH_ECANCELLED; messages name the oid and the server. */
int rh_lfs_fetch(struct rh_lfs_remote *rm, const struct rh_lfs_pointer *p, int fd,
		 const struct rh_lfs_fetch_opts *opts);

/* Asks the server, with one batch request and no download, whether it
 * would hand out object `p` (pre-flight), retrying as rh_lfs_fetch does.
 * Returns 0 when the batch response has a download action for it,
 * else the error rh_lfs_fetch's batch step would give. */
int rh_lfs_check(struct rh_lfs_remote *rm, const struct rh_lfs_pointer *p,
		 const struct rh_lfs_fetch_opts *opts);

#endif
