/*
 * cache.c - the content-addressed object cache (see cache.h).
 *
 * Drills on the same host share the cache, and several may run at once
 * (cron, CI matrices), so every write is a private temporary renamed into
 * place and every temporary is held under flock while it is written: gc can
 * then remove the leftovers of a killed download without ever touching one
 * that another process is still writing.
 */
#include "cache.h"
#include "error.h"
#include "fsutil.h"
#include "hex.h"
#include "strbuf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

char *rh_cache_object_path(const char *cache_dir, const char *oid)
{
	char *p = NULL;

	if (!rh_hex_is_sha256(oid))
		return NULL;
	if (asprintf(&p, "%s/objects/%.2s/%.2s/%s", cache_dir, oid, oid + 2, oid) < 0)
		return NULL;
	return p;
}

static int fsync_parent(const char *path)
{
	char *copy = strdup(path);
	int fd;
	int err = 0;

	if (!copy)
		return rh_error_set(RH_ENOMEM, "out of memory");
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		err = rh_error_set_errno(RH_EIO, errno, "cannot sync directory %s", copy);
	if (fd >= 0)
		close(fd);
	free(copy);
	return err;
}

int rh_cache_tmp_open(struct rh_cache_tmp *t, const char *cache_dir, const char *oid)
{
	char *dir = NULL;
	char rnd[17];
	int err = 0;

	t->fd = -1;
	t->tmp_path = NULL;
	t->final_path = rh_cache_object_path(cache_dir, oid);
	if (!t->final_path) {
		err = rh_error_set(RH_EINVAL, "cache object name \"%.80s\" is not a sha256", oid);
		goto done;
	}
	dir = strdup(t->final_path);
	if (!dir) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	err = rh_fs_mkdir_p(dirname(dir));
	if (err < 0)
		goto done;
	rh_fs_rand_hex(rnd);
	err = rh_asprintf(&t->tmp_path, "%s.tmp-%s", t->final_path, rnd);
	if (err < 0)
		goto done;
	t->fd = open(t->tmp_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (t->fd < 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot create %s", t->tmp_path);
		goto done;
	}
	/* Our own fresh file: nobody else can hold the lock yet. */
	if (flock(t->fd, LOCK_EX | LOCK_NB) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot lock %s", t->tmp_path);
		goto done;
	}
done:
	free(dir);
	if (err < 0)
		rh_cache_tmp_abort(t);
	return err;
}

void rh_cache_tmp_abort(struct rh_cache_tmp *t)
{
	if (t->tmp_path)
		unlink(t->tmp_path);
	if (t->fd >= 0)
		close(t->fd);
	free(t->tmp_path);
	free(t->final_path);
	t->fd = -1;
	t->tmp_path = NULL;
	t->final_path = NULL;
}

int rh_cache_tmp_commit(struct rh_cache_tmp *t, uint64_t size)
{
	struct stat sb;
	int err = 0;

	if (fstat(t->fd, &sb) != 0 || (uint64_t)sb.st_size != size) {
		err = rh_error_set(RH_EIO, "cache download %s has %lld bytes, not %llu",
				   t->tmp_path, (long long)sb.st_size, (unsigned long long)size);
		goto done;
	}
	if (fsync(t->fd) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot sync %s", t->tmp_path);
		goto done;
	}
	/* Read-only from now on: a cache object is never modified in place. */
	fchmod(t->fd, 0400);
	if (rename(t->tmp_path, t->final_path) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot rename %s into place", t->tmp_path);
		goto done;
	}
	free(t->tmp_path);
	t->tmp_path = NULL;
	err = fsync_parent(t->final_path);
done:
	rh_cache_tmp_abort(t);
	return err;
}

/* A temporary no one holds the lock of is the leftover of a dead download. */
static bool tmp_is_stale(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	bool stale;

	if (fd < 0)
		return false;
	stale = flock(fd, LOCK_EX | LOCK_NB) == 0;
	close(fd);
	return stale;
}

struct sweep {
	bool (*keep)(void *user, const char *oid);
	void *user;
	uint64_t freed;
	uint64_t kept;
};

/* depth 0: objects/, 1: objects/aa/, 2: objects/aa/bb/ (the objects). */
static int sweep_dir(struct sweep *sw, const char *path, int depth)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int err = 0;

	if (!d) {
		if (errno == ENOENT)
			return 0;
		return rh_error_set_errno(RH_EIO, errno, "cannot read cache directory %s", path);
	}
	while ((e = readdir(d)) != NULL) {
		struct stat sb;
		char *child = NULL;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (asprintf(&child, "%s/%s", path, e->d_name) < 0) {
			err = rh_error_set(RH_ENOMEM, "out of memory");
			break;
		}
		if (depth < 2 && S_ISDIR(sb.st_mode)) {
			err = sweep_dir(sw, child, depth + 1);
			/* Empty fan-out directories go too; rmdir fails on the others. */
			if (err == 0)
				rmdir(child);
		} else if (depth == 2 && S_ISREG(sb.st_mode)) {
			bool is_tmp = strstr(e->d_name, ".tmp-") != NULL;

			if (is_tmp
				? tmp_is_stale(dirfd(d), e->d_name)
				: !(rh_hex_is_sha256(e->d_name) && sw->keep(sw->user, e->d_name))) {
				if (unlinkat(dirfd(d), e->d_name, 0) == 0)
					sw->freed += (uint64_t)sb.st_size;
				else
					err = rh_error_set_errno(RH_EIO, errno, "cannot remove %s",
								 child);
			} else {
				sw->kept += (uint64_t)sb.st_size;
			}
		}
		free(child);
		if (err < 0)
			break;
	}
	closedir(d);
	return err;
}

int rh_cache_sweep(const char *cache_dir, bool (*keep)(void *user, const char *oid), void *user,
		   uint64_t *freed, uint64_t *kept)
{
	struct sweep sw = {keep, user, 0, 0};
	char *objects = NULL;
	int err = 0;

	err = rh_asprintf(&objects, "%s/objects", cache_dir);
	if (err < 0)
		goto done;
	err = sweep_dir(&sw, objects, 0);
done:
	if (freed)
		*freed = sw.freed;
	if (kept)
		*kept = sw.kept;
	free(objects);
	return err;
}
