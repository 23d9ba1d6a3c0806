/*
 * registry.h - the git-backed model registry.
 *
 * Layout of a registry repository: for each model NAME, the directory
 * models/NAME/ holds manifest.json and the model's files; version VERSION of
 * NAME is the commit tagged "NAME/VERSION" (a lightweight or annotated tag).
 * A runbook may also pin the commit id; it must then match the tag.
 *
 * manifest.json: {"rehydra_manifest": 1, "name", "version", "license",
 * "serving": {...}, "export": {...}, "files": [{"path", "size", "sha256"}]}
 * with paths relative to models/NAME/. Files are plain blobs or Git LFS
 * pointers (spec v1); LFS objects are read from the repository's local LFS
 * store (<gitdir>/lfs/objects/aa/bb/<oid>).
 *
 * The model's identity is the sha256 of manifest.json's bytes: the manifest
 * names every file's sha256, so it pins them all. ${model.sha256} is it.
 */
#ifndef RH_REGISTRY_H
#define RH_REGISTRY_H

#include "sink.h"

#include <jansson.h>
#include <stdint.h>

struct rh_registry;
struct rh_cancel;

struct rh_manifest_file {
	char *path;
	uint64_t size;
	char sha256[65];
};

struct rh_model_version {
	char *name;
	char *version;
	char commit[41];
	char manifest_sha256[65];
	json_t *manifest;    /* owned */
	char *manifest_text; /* owned: the exact bytes */
	size_t manifest_len;
	struct rh_manifest_file *files; /* owned */
	size_t n_files;
	uint64_t total_bytes;
};

/* Opens the registry at `url`:
 *   - a local path (absolute): opened in place, LFS objects read from its
 *     LFS store (as git treats a path: no transport);
 *   - a URL libgit2 reaches (file://, ssh://, http(s)://): cloned once
 *     (bare) into <cache_dir>/registries/<key>/ and fetched incrementally
 *     afterwards (as git treats a URL: through the transport). LFS objects
 *     come from the LFS server (lfs.url in the registry's .lfsconfig, else
 *     <url>/info/lfs for http(s)) through the batch API, basic transfer,
 *     into the content-addressed cache <cache_dir>/objects/<aa>/<bb>/<sha256>;
 *     for a file:// URL without lfs.url, from that repository's LFS store.
 *     <key> is the first 16 hex digits of the sha256 of the URL without
 *     userinfo. The clone mirrors the remote's branches and tags (forced,
 *     pruned); HEAD follows the remote's default branch and its
 *     .lfsconfig (lfs.url, else remote.origin.lfsurl) names the LFS server.
 *     When the fetch of an existing clone fails, the clone is used and the
 *     registry is marked stale (rh_registry_is_stale).
 * Credentials: an http(s) URL's user:password go to the git server (and to
 * the LFS server when it is on the same scheme://host:port) and are never
 * stored in the clone; an ssh URL's user is the login (ssh-agent keys; host
 * keys checked against ~/.ssh/known_hosts by libgit2). REHYDRA_LFS_TOKEN, if
 * set, is sent to the LFS server as a Bearer token when its URL has no
 * credentials.
 * `cache_dir` may be NULL only for local paths. Returns 0, RH_ENOTFOUND,
 * RH_EINVAL, RH_EIO, RH_ETIMEOUT, RH_ECANCELLED; messages name the registry
 * (without credentials). */
int rh_registry_open(struct rh_registry **out, const char *url, const char *cache_dir);
void rh_registry_free(struct rh_registry *r);

/* Options for rh_registry_open_opts; zero-initialise with
 * RH_REGISTRY_OPTS_INIT. rh_registry_open(out, url, cache) is
 * rh_registry_open_opts(out, url, cache, NULL). */
struct rh_registry_opts {
	unsigned version;
	/* Fires -> the clone or fetch stops at its next progress callback and
	 * open returns RH_ECANCELLED. May be NULL. Also used while waiting for
	 * another process's fetch of the same registry. */
	struct rh_cancel *cancel;
	/* Bound on the clone/fetch (libgit2 has no timeout of its own: it is
	 * checked in libgit2's progress callbacks, so a server that sends
	 * nothing at all is bounded only by the OS's TCP timeouts); 0 = 600 s.
	 * A clone that times out fails (RH_ETIMEOUT); a fetch that times out
	 * falls back to the cached clone (stale). */
	double fetch_timeout_s;
	/* Do not fetch: use the cached clone (stale), RH_ENOTFOUND if none. */
	bool offline;
};
#define RH_REGISTRY_OPTS_VERSION 1
#define RH_REGISTRY_OPTS_INIT                                                                      \
	{                                                                                          \
		RH_REGISTRY_OPTS_VERSION, NULL, 0, false                                           \
	}

int rh_registry_open_opts(struct rh_registry **out, const char *url, const char *cache_dir,
			  const struct rh_registry_opts *opts);

/* True when a URL registry could not be fetched (server unreachable,
 * timeout, offline) and was opened from its cached clone instead: tags
 * published since the last successful fetch are missing. *why (may be
 * NULL) gets the fetch's error message (borrowed, valid until
 * rh_registry_free; credentials never appear in it). Callers should show
 * it as a warning: the drill goes on with what the cache has. */
bool rh_registry_is_stale(const struct rh_registry *r, const char **why);

/* The registry as given, without credentials (borrowed), for messages. */
const char *rh_registry_name(const struct rh_registry *r);

/* Resolves NAME at VERSION (tag "NAME/VERSION"), checking `commit` if not
 * NULL, reads and validates the manifest. *out new; free with
 * rh_model_version_free. Validation errors name the manifest and the file. */
int rh_registry_resolve(struct rh_model_version **out, struct rh_registry *r, const char *name,
			const char *version, const char *commit);
void rh_model_version_free(struct rh_model_version *v);

/* Parses and validates the bytes of a manifest.json (`len`, need not be
 * NUL-terminated) into `v`, whose name and version must be set (they are
 * what the manifest must say): fills manifest_text, manifest_len,
 * manifest_sha256, manifest, files, n_files and total_bytes (freed by
 * rh_model_version_free, also on failure). `where` names the manifest in
 * messages. rh_registry_resolve reads manifests with it; the fuzz target
 * tests/fuzz/fuzz_manifest.c drives it directly. Returns 0, RH_EINVAL,
 * RH_ENOMEM. */
int rh_manifest_parse(struct rh_model_version *v, const void *raw, size_t len, const char *where);

/* *out: new JSON object {NAME: [VERSION, ...]} of every model version the
 * registry's tags name, versions sorted. */
int rh_registry_list(json_t **out, struct rh_registry *r);

/* A source for file `index` of `v`: a plain blob (from memory, a copy the
 * source owns), an object of the local LFS store, or a cache object
 * (fetched first through the LFS batch API when missing, hashed while it
 * downloads, renamed into the cache only once verified). The LFS pointer
 * must match the manifest's size and sha256 (RH_EVERIFY otherwise) and a
 * local object its size; the bytes of plain blobs and local objects are
 * verified by the sink that reads them. May be called from several threads
 * at once; `cancel` (may be NULL) stops a download. Messages name
 * "REGISTRY@COMMIT:models/NAME/PATH". *out is new (its `name` is that
 * string); free with rh_registry_source_free. */
int rh_registry_file_source(struct rh_source **out, struct rh_registry *r,
			    const struct rh_model_version *v, size_t index,
			    struct rh_cancel *cancel);
void rh_registry_source_free(struct rh_source *src);

/* Pre-flight for file `index` of `v`, moving no file bytes: a plain blob
 * is readable; an LFS object is in the local LFS store or the cache with
 * the manifest's size, or else the LFS server's batch API answers for it.
 * *where_out (may be NULL) is set to how it was found: "blob", "store",
 * "cache" or "server" (static strings). Returns 0 or the error
 * rh_registry_file_source would give, with the same message. */
int rh_registry_file_check(struct rh_registry *r, const struct rh_model_version *v, size_t index,
			   struct rh_cancel *cancel, const char **where_out);

/* Removes cache objects no version (tag NAME/VERSION) in any registry
 * cloned under <cache_dir>/registries references, partial downloads no
 * live process holds, and dead clones. *freed / *kept (may be NULL) get the
 * bytes removed and kept. Path registries are not in the cache: objects
 * only they reference are removed (they are not read from the cache). */
int rh_registry_cache_gc(const char *cache_dir, uint64_t *freed, uint64_t *kept);

#endif
