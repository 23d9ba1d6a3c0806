/*
 * cache.h - the content-addressed object cache shared by every registry
 * reached by URL: <cache_dir>/objects/<aa>/<bb>/<sha256>.
 *
 * An object appears under its final name only complete and verified: it is
 * downloaded into "<sha256>.tmp-<random>" beside it (created O_EXCL and held
 * under flock(LOCK_EX) while it is written, so a gc running at the same time
 * can tell a live download from a dead one), fsynced, then renamed. Two
 * processes fetching the same object each write their own temporary; the
 * second rename replaces identical bytes, so neither sees a torn file.
 */
#ifndef RH_CACHE_H
#define RH_CACHE_H

#include <stdbool.h>
#include <stdint.h>

/* "<cache_dir>/objects/<aa>/<bb>/<oid>"; new string or NULL (no memory or
 * `oid` not 64 lowercase hex). */
char *rh_cache_object_path(const char *cache_dir, const char *oid);

/* A download in progress. */
struct rh_cache_tmp {
	int fd;		  /* open for writing, empty at first */
	char *tmp_path;	  /* owned */
	char *final_path; /* owned */
};

/* Creates the temporary for `oid` (and its directories). Returns 0 or
 * RH_EIO naming the path. Finish with rh_cache_tmp_commit or _abort. */
int rh_cache_tmp_open(struct rh_cache_tmp *t, const char *cache_dir, const char *oid);

/* The temporary holds exactly `size` verified bytes: fsync, rename to the
 * final name, fsync the directory, release. Returns 0 or RH_EIO (the
 * temporary is then removed). */
int rh_cache_tmp_commit(struct rh_cache_tmp *t, uint64_t size);

/* Removes the temporary and releases; accepts a zeroed or released one. */
void rh_cache_tmp_abort(struct rh_cache_tmp *t);

/* Walks <cache_dir>/objects: removes every object for which keep(user, oid)
 * is false and every temporary no live download holds (its flock is free),
 * and empty fan-out directories. *freed and *kept (may be NULL) get bytes.
 * Returns 0 or RH_EIO. A missing objects/ directory is an empty cache. */
int rh_cache_sweep(const char *cache_dir, bool (*keep)(void *user, const char *oid), void *user,
		   uint64_t *freed, uint64_t *kept);

#endif
