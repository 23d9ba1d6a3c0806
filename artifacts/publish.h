/*
 * publish.h - adds a model version to a registry on this machine.
 *
 * The result is what the real `git lfs` client would have produced: every
 * model file becomes a Git LFS pointer blob (spec v1, byte for byte what
 * `git lfs` writes) under models/NAME/, its bytes an object of the
 * repository's LFS store (<gitdir>/lfs/objects/aa/bb/<oid>, hashed while
 * copied, written under a temporary name and renamed), .gitattributes tracks
 * each path with filter=lfs, and models/NAME/manifest.json (a plain blob)
 * lists every file with path, size and sha256 plus the metadata. One commit
 * on the current branch replaces models/NAME/ with the new version; the
 * annotated tag NAME/VERSION pins it. Versions are immutable: an existing
 * tag is refused before anything is written.
 *
 * In a repository with a working tree, the index and the working tree follow
 * the new commit (a safe checkout: local changes to those paths make the
 * publish fail instead of being overwritten); like after
 * `GIT_LFS_SKIP_SMUDGE=1 git clone`, the working tree holds the pointers
 * until `git lfs checkout` replaces them with the bytes.
 */
#ifndef RH_PUBLISH_H
#define RH_PUBLISH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct rh_cancel;

struct rh_publish_opts {
	unsigned version;
	const char *license;	  /* overrides meta's "license"; may be NULL */
	const json_t *meta;	  /* borrowed, may be NULL: an object with any of
				   * "license", "description", "serving", "export" */
	const char *meta_name;	  /* where meta came from, for messages */
	struct rh_cancel *cancel; /* may be NULL */
	/* Called with the bytes just copied into the LFS store; may be NULL. */
	void (*progress)(void *user, uint64_t delta, uint64_t total);
	void *progress_user;
};
#define RH_PUBLISH_OPTS_VERSION 1
#define RH_PUBLISH_OPTS_INIT                                                                       \
	{                                                                                          \
		RH_PUBLISH_OPTS_VERSION, NULL, NULL, NULL, NULL, NULL, NULL                        \
	}

struct rh_publish_result {
	char commit[41];
	char manifest_sha256[65];
	size_t files;
	uint64_t bytes;	       /* of all model files */
	uint64_t bytes_stored; /* of the LFS objects that were new to the store */
	double seconds;
};

/* Publishes `n_inputs` local files and directories as NAME@VERSION into the
 * registry at `registry` (a local path or file:// URL of a repository on
 * this machine; a remote registry is RH_EUNSUPPORTED: publish into a clone
 * and push). A file becomes models/NAME/<its base name>; a directory
 * contributes every regular file under it, by its path relative to the
 * directory (symlinks are refused). The commit's author and committer come
 * from REHYDRA_AUTHOR_NAME / REHYDRA_AUTHOR_EMAIL, else the git config
 * (user.name, user.email), else "rehydra". Returns 0, RH_EINVAL (bad name,
 * version, file, metadata; the tag exists), RH_ENOTFOUND, RH_EIO,
 * RH_ECANCELLED. `res` may be NULL. */
int rh_registry_publish(struct rh_publish_result *res, const char *registry, const char *name,
			const char *version, const char *const *inputs, size_t n_inputs,
			const struct rh_publish_opts *opts);

#endif
