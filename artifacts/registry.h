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
	json_t *manifest;              /* owned */
	char *manifest_text;           /* owned: the exact bytes */
	size_t manifest_len;
	struct rh_manifest_file *files; /* owned */
	size_t n_files;
	uint64_t total_bytes;
};

struct rh_sync_stats {
	uint64_t files;
	uint64_t bytes_sent;
	uint64_t bytes_skipped;
	double seconds;
};

/* Opens the registry at `url`: a local path (opened in place) or file:// URL.
 * Returns 0, RH_ENOTFOUND, RH_EUNSUPPORTED (remote URLs; a later version
 * clones them into `cache_dir`), or RH_EIO; messages name the registry. */
int rh_registry_open(struct rh_registry **out, const char *url, const char *cache_dir);
void rh_registry_free(struct rh_registry *r);

/* Resolves NAME at VERSION (tag "NAME/VERSION"), checking `commit` if not
 * NULL, reads and validates the manifest. *out new; free with
 * rh_model_version_free. Validation errors name the manifest and the file. */
int rh_registry_resolve(struct rh_model_version **out, struct rh_registry *r, const char *name,
			const char *version, const char *commit);
void rh_model_version_free(struct rh_model_version *v);

/* Copies every file of `v` and then manifest.json into `sink`, skipping
 * files the sink already has, hashing while streaming; commits the sink.
 * `cancel` may be NULL. */
int rh_registry_sync(struct rh_registry *r, const struct rh_model_version *v, struct rh_sink *sink,
		     struct rh_cancel *cancel, struct rh_sync_stats *stats);

#endif
