/*
 * lfs.h - Git LFS pointers (spec v1) and where LFS objects come from.
 *
 * libgit2 knows nothing of LFS: a file tracked by LFS is, in git, a small
 * "pointer" blob naming the object's sha256 and size; the bytes live in an
 * object store (the repository's <gitdir>/lfs/objects/aa/bb/<oid>, filled by
 * `git lfs fetch`, or an LFS server). The registry reads pointers with this
 * parser and streams objects from an rh_lfs_source: today the local store;
 * an HTTP batch-API source that fetches into the cache slots in beside it.
 *
 * Pointer format (git-lfs docs/spec.md): UTF-8 lines "key value\n", the
 * first key `version`, the rest sorted by key, LF line endings, under 1024
 * bytes, required keys version, oid ("sha256:" + 64 lowercase hex) and size.
 * We parse strictly and do not support extensions (ext-N-name keys).
 */
#ifndef RH_LFS_H
#define RH_LFS_H

#include "sink.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RH_LFS_POINTER_MAX 1024 /* pointer files are smaller than this */
#define RH_LFS_SPEC_V1 "https://git-lfs.github.com/spec/v1"

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

/* An open object: pull bytes with read(user, ...) until it returns 0; call
 * close(user) exactly once whatever happened. */
struct rh_lfs_reader {
	rh_sink_read_fn read;
	void *user;
	void (*close)(void *user);
};

/* Where objects come from. open() fills *out or returns RH_ENOTFOUND (this
 * source does not have it; the message says how to get it), RH_EVERIFY (it
 * has something else under that oid) or RH_EIO. */
struct rh_lfs_source {
	const char *name; /* for messages: "local LFS store" */
	int (*open)(struct rh_lfs_source *src, const struct rh_lfs_pointer *p,
		    struct rh_lfs_reader *out);
	void (*free)(struct rh_lfs_source *src);
	void *priv;
};

/* The store of the repository whose (common) git directory is `gitdir`.
 * *out is new; free with rh_lfs_source_free. */
int rh_lfs_source_local_new(struct rh_lfs_source **out, const char *gitdir);

/* Calls src->free; accepts NULL. */
void rh_lfs_source_free(struct rh_lfs_source *src);

/* "<gitdir>/lfs/objects/<oid[0:2]>/<oid[2:4]>/<oid>"; new string or NULL
 * when out of memory. */
char *rh_lfs_local_object_path(const char *gitdir, const char *oid);

#endif
