/*
 * sink_file.c - the file sink: a directory on this machine.
 *
 * Writes are crash-safe, resumable and confined. Each file is streamed into
 * "<name>.rh-part-<sha256 prefix>" next to its final name, hashed on the
 * way, and renamed into place only after its size and sha256 matched and the
 * data was fsync'ed; a put that was cut off keeps its partial so the next
 * put of the same object continues where it stopped, and any other failure
 * removes it, so the final name never holds a bad file. Paths are walked one
 * component at a time with openat(O_NOFOLLOW) from a descriptor of the
 * root, so a symlink planted in the tree cannot redirect a write outside it
 * (we refuse every symlinked directory component: a sink's tree is ours).
 *
 * Re-syncing an unchanged target must be cheap, so the sink keeps a state
 * file, .rehydra-sink.json, mapping each path it wrote or verified to its
 * size, sha256 and the inode's identity (mtime, ctime, inode number). has()
 * trusts the recorded sha256 while that identity is unchanged and re-hashes
 * otherwise. The state file is replaced atomically in commit().
 *
 * The fastest copy is none: a source that is a local file is cloned
 * (reflink) where the filesystem can, or hard-linked when it is read-only
 * and on the sink's filesystem (put_without_copy), and then hashed in place
 * before the rename like any copy; that is how a local drill restores from
 * the content-addressed LFS store at the speed of one hash pass.
 */
#include "sink.h"
#include "cancel.h"
#include "error.h"
#include "hex.h"
#include "fsutil.h"
#include "sha256.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "banned.h"

#define FILE_SINK_BUF (1u << 20)
#define FILE_SINK_CHUNK (1u << 20) /* source reads: large, to keep the hasher busy */
#define FILE_SINK_NBUF 4	   /* chunks in flight between hasher and writer */
#define FILE_SINK_KICK (8u << 20)  /* start writeback every this many bytes */
#define FILE_SINK_PARALLEL 4
#define FILE_SINK_STATE RH_SINK_MANIFEST_NAME
#define FILE_SINK_PART ".rh-part-"
#define FILE_SINK_STATE_MAX (64u * 1024 * 1024)

struct file_sink {
	struct rh_sink base; /* first: the ops see a struct rh_sink */
	char *root;	     /* absolute */
	int root_fd;
	struct rh_sink_manifest m; /* path -> {size, sha256, mtime_ns, ctime_ns, ino} */
};

/* Names the sink reserves for itself cannot be manifest paths. */
static bool file_sink_path_ok(const char *path)
{
	if (!rh_sink_path_is_safe(path))
		return false;
	if (strncmp(path, ".rehydra-sink", 13) == 0 || strstr(path, FILE_SINK_PART))
		return false;
	return true;
}

/* Opens the directory that holds `path` (relative to the sink root), one
 * component at a time without following symlinks, creating missing
 * directories (0700) when `create`. Returns a new fd in *dirfd and the
 * last component in *leaf (points into `path`). RH_ENOTFOUND when a
 * component is missing and !create. */
static int file_sink_parent(struct file_sink *fs, const char *path, bool create, int *dirfd,
			    const char **leaf)
{
	char comp[NAME_MAX + 1];
	const char *p = path;
	const char *slash;
	int fd = -1;
	int next;
	int err = 0;

	*dirfd = -1;
	fd = dup(fs->root_fd);
	if (fd < 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot open sink %s", fs->base.url);
		goto done;
	}
	while ((slash = strchr(p, '/')) != NULL) {
		size_t n = (size_t)(slash - p);

		if (n > NAME_MAX) {
			err = rh_error_set(RH_EINVAL,
					   "path %s in sink %s has a component that is "
					   "too long",
					   path, fs->base.url);
			goto done;
		}
		memcpy(comp, p, n);
		comp[n] = '\0';
		next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, comp, 0700) != 0 && errno != EEXIST) {
				err = rh_error_set_errno(RH_EIO, errno,
							 "cannot create directory %.*s in sink %s",
							 (int)(slash - path), path, fs->base.url);
				goto done;
			}
			next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (next < 0) {
			if (errno == ENOENT)
				err = rh_error_set(RH_ENOTFOUND, "%.*s does not exist in sink %s",
						   (int)(slash - path), path, fs->base.url);
			else if (errno == ELOOP || errno == ENOTDIR)
				err = rh_error_set(RH_EINVAL,
						   "refusing to write %s in sink %s: "
						   "%.*s is a symlink or not a directory",
						   path, fs->base.url, (int)(slash - path), path);
			else
				err = rh_error_set_errno(RH_EIO, errno,
							 "cannot open %.*s in sink "
							 "%s",
							 (int)(slash - path), path, fs->base.url);
			goto done;
		}
		close(fd);
		fd = next;
		p = slash + 1;
	}
	*dirfd = fd;
	*leaf = p;
	fd = -1;
done:
	if (fd >= 0)
		close(fd);
	return err;
}

static long long stat_ns(const struct timespec *ts)
{
	return (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

static int file_sink_remember(struct file_sink *fs, const char *path, const struct stat *sb,
			      const char *sha256)
{
	json_t *id =
	    json_pack("{s:I, s:I, s:I}", "mtime_ns", (json_int_t)stat_ns(&sb->st_mtim), "ctime_ns",
		      (json_int_t)stat_ns(&sb->st_ctim), "ino", (json_int_t)sb->st_ino);

	if (!id)
		return rh_error_set(RH_ENOMEM, "out of memory recording %s in sink %s", path,
				    fs->base.url);
	return rh_sink_manifest_set(&fs->m, path, (uint64_t)sb->st_size, sha256, id, fs->base.url);
}

/* The recorded sha256 of `path` if the file is the same inode, unchanged. */
static const char *file_sink_known(struct file_sink *fs, const char *path, const struct stat *sb)
{
	const json_t *e = rh_sink_manifest_get(&fs->m, path);

	if (!e)
		return NULL;
	if (json_integer_value(json_object_get(e, "size")) != (json_int_t)sb->st_size ||
	    json_integer_value(json_object_get(e, "mtime_ns")) != stat_ns(&sb->st_mtim) ||
	    json_integer_value(json_object_get(e, "ctime_ns")) != stat_ns(&sb->st_ctim) ||
	    json_integer_value(json_object_get(e, "ino")) != (json_int_t)sb->st_ino)
		return NULL;
	return json_string_value(json_object_get(e, "sha256"));
}

/* Hashes fd from its current offset to the end; with `progress`, reports
 * the bytes as moved (they are the put's payload, verified in place). */
static int hash_fd(struct file_sink *fs, const char *path, int fd, bool progress, char hex[65])
{
	struct rh_sha256 c = {0};
	uint8_t d[32];
	uint8_t *buf = malloc(FILE_SINK_BUF);
	int err = 0;

	if (!buf)
		return rh_error_set(RH_ENOMEM, "out of memory hashing %s in sink %s", path,
				    fs->base.url);
	err = rh_sha256_init(&c);
	if (err < 0)
		goto done;
	for (;;) {
		ssize_t n;

		if (fs->base.cancel && rh_cancel_is_fired(fs->base.cancel)) {
			err = rh_error_set(RH_ECANCELLED, "cancelled while checking %s in sink %s",
					   path, fs->base.url);
			goto done;
		}
		n = read(fd, buf, FILE_SINK_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = rh_error_set_errno(RH_EIO, errno, "cannot read %s in sink %s", path,
						 fs->base.url);
			goto done;
		}
		if (n == 0)
			break;
		rh_sha256_update(&c, buf, (size_t)n);
		if (progress && fs->base.progress)
			fs->base.progress(fs->base.progress_user, (uint64_t)n);
	}
	rh_sha256_final(&c, d);
	rh_sha256_hex(hex, d);
done:
	rh_sha256_free(&c);
	free(buf);
	return err;
}

static int file_sink_has(struct rh_sink *s, const char *path, uint64_t size, const char *sha256,
			 bool *present)
{
	struct file_sink *fs = (struct file_sink *)s;
	const char *leaf;
	const char *known;
	struct stat sb;
	char hex[65];
	int dirfd = -1;
	int fd = -1;
	int err = 0;

	*present = false;
	if (!file_sink_path_ok(path)) {
		err = rh_error_set(RH_EINVAL, "unsafe path \"%s\" for sink %s", path, s->url);
		goto done;
	}
	err = file_sink_parent(fs, path, false, &dirfd, &leaf);
	if (err == RH_ENOTFOUND) {
		err = 0;
		goto done;
	}
	if (err < 0)
		goto done;
	fd = openat(dirfd, leaf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		if (errno != ENOENT && errno != ELOOP)
			err = rh_error_set_errno(RH_EIO, errno, "cannot open %s in sink %s", path,
						 s->url);
		goto done;
	}
	if (fstat(fd, &sb) != 0) {
		err =
		    rh_error_set_errno(RH_EIO, errno, "cannot inspect %s in sink %s", path, s->url);
		goto done;
	}
	if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != size)
		goto done;
	known = file_sink_known(fs, path, &sb);
	if (known) {
		*present = strcmp(known, sha256) == 0;
		goto done;
	}
	err = hash_fd(fs, path, fd, false, hex);
	if (err < 0)
		goto done;
	/* Remember what we learnt either way: the next has() is then cheap. */
	err = file_sink_remember(fs, path, &sb, hex);
	if (err < 0)
		goto done;
	*present = strcmp(hex, sha256) == 0;
done:
	if (fd >= 0)
		close(fd);
	if (dirfd >= 0)
		close(dirfd);
	return err;
}

/* ---- put ------------------------------------------------------------------
 *
 * Hashing must never wait for the disk (libcrypto's SHA-256 runs at
 * ~1.5 GB/s with SHA-NI, faster than most disks write): the calling thread reads the source in 1
 * MiB chunks and hashes them while a writer thread writes the previous ones, through a ring of
 * FILE_SINK_NBUF buffers (bounded memory whatever the file size). The writer starts writeback every
 * FILE_SINK_KICK bytes (sync_file_range) and waits for the range before that, so dirty pages never
 * pile up and the final fsync has little left to do.
 *
 * Resume: the bytes go to "<leaf>.rh-part-<first 16 hex of sha256>", which
 * survives a cancel or a source that broke off, so the next put of the same
 * object re-hashes what the partial holds and continues at its end. A
 * partial that turns out not to be the start of the object (the final
 * digest differs) is thrown away and the object is sent once more from the
 * start. A flock on the partial keeps two processes off the same one.
 */

struct put_job {
	struct file_sink *fs;
	const char *path;
	const struct rh_source *src;
	int fd;
	size_t bufsize;
	uint8_t *buf[FILE_SINK_NBUF];
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t len[FILE_SINK_NBUF];
	uint64_t off[FILE_SINK_NBUF];
	unsigned head;	  /* the next filled slot the writer takes */
	unsigned filled;  /* slots filled and not yet written */
	bool eof;	  /* the reader fills no more */
	int werrno;	  /* the writer's errno, 0 while it is fine */
	uint64_t written; /* bytes the writer wrote */
};

static int pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static void *put_writer(void *arg)
{
	struct put_job *j = arg;
	uint64_t kicked = 0, prev_off = 0, prev_len = 0;
	bool first = true;

	pthread_mutex_lock(&j->lock);
	for (;;) {
		unsigned idx;
		uint64_t end;
		int rc;

		while (j->filled == 0 && !j->eof)
			pthread_cond_wait(&j->cond, &j->lock);
		if (j->filled == 0)
			break;
		idx = j->head;
		pthread_mutex_unlock(&j->lock);

		rc = pwrite_all(j->fd, j->buf[idx], j->len[idx], j->off[idx]);
		if (rc == 0 && j->fs->base.progress)
			j->fs->base.progress(j->fs->base.progress_user, j->len[idx]);
		end = j->off[idx] + j->len[idx];
		if (first) {
			kicked = j->off[idx];
			first = false;
		}
		if (rc == 0 && end - kicked >= FILE_SINK_KICK) {
			/* Hints only: fsync at the end reports any error. */
			sync_file_range(j->fd, (off_t)kicked, (off_t)(end - kicked),
					SYNC_FILE_RANGE_WRITE);
			if (prev_len)
				sync_file_range(j->fd, (off_t)prev_off, (off_t)prev_len,
						SYNC_FILE_RANGE_WAIT_BEFORE |
						    SYNC_FILE_RANGE_WRITE |
						    SYNC_FILE_RANGE_WAIT_AFTER);
			prev_off = kicked;
			prev_len = end - kicked;
			kicked = end;
		}

		pthread_mutex_lock(&j->lock);
		if (rc < 0) {
			j->werrno = -rc;
			pthread_cond_broadcast(&j->cond);
			break;
		}
		j->written += j->len[idx];
		j->head = (j->head + 1) % FILE_SINK_NBUF;
		j->filled--;
		pthread_cond_broadcast(&j->cond);
	}
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

static bool sink_cancelled(const struct file_sink *fs)
{
	return fs->base.cancel && rh_cancel_is_fired(fs->base.cancel);
}

/* Hashes the first `have` bytes the partial holds into `c`. */
static int put_hash_prefix(struct put_job *j, uint64_t have, struct rh_sha256 *c)
{
	uint64_t off = 0;

	while (off < have) {
		size_t want = have - off < j->bufsize ? (size_t)(have - off) : j->bufsize;
		ssize_t n;

		if (sink_cancelled(j->fs))
			return rh_error_set(RH_ECANCELLED, "cancelled while resuming %s in sink %s",
					    j->path, j->fs->base.url);
		n = pread(j->fd, j->buf[0], want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return rh_error_set_errno(RH_EIO, errno,
						  "cannot read the partial of %s in "
						  "sink %s",
						  j->path, j->fs->base.url);
		if (n == 0)
			return rh_error_set(RH_EIO,
					    "the partial of %s in sink %s shrank while it "
					    "was read",
					    j->path, j->fs->base.url);
		rh_sha256_update(c, j->buf[0], (size_t)n);
		off += (uint64_t)n;
	}
	return 0;
}

/* Streams bytes [from, size) of the source into the partial, hashing them
 * into `c`. *src_failed tells whether the source (not the disk) failed. */
static int put_stream(struct put_job *j, uint64_t from, uint64_t size, struct rh_sha256 *c,
		      bool *src_failed)
{
	pthread_t tid;
	uint64_t off = from;
	int err = 0;

	*src_failed = false;
	j->head = j->filled = 0;
	j->eof = false;
	j->werrno = 0;
	j->written = 0;
	if (pthread_create(&tid, NULL, put_writer, j) != 0)
		return rh_error_set(RH_ERROR, "cannot start a writer thread for %s in sink %s",
				    j->path, j->fs->base.url);
	while (off < size) {
		size_t want = size - off < j->bufsize ? (size_t)(size - off) : j->bufsize;
		size_t got = 0;
		unsigned idx;
		int werr;
		long n = 0;

		if (sink_cancelled(j->fs)) {
			err = rh_error_set(RH_ECANCELLED, "cancelled while writing %s to sink %s",
					   j->path, j->fs->base.url);
			break;
		}
		pthread_mutex_lock(&j->lock);
		while (j->filled == FILE_SINK_NBUF && !j->werrno)
			pthread_cond_wait(&j->cond, &j->lock);
		idx = (j->head + j->filled) % FILE_SINK_NBUF;
		werr = j->werrno;
		pthread_mutex_unlock(&j->lock);
		if (werr)
			break; /* reported after the join */
		while (got < want) {
			n = j->src->read_at(j->src->user, off + got, j->buf[idx] + got, want - got);
			if (n <= 0)
				break;
			if ((size_t)n > want - got) {
				n = rh_error_set(RH_ERROR,
						 "the source of %s returned more bytes "
						 "than asked",
						 j->path);
				break;
			}
			got += (size_t)n;
		}
		if (n < 0) {
			*src_failed = true;
			err = rh_error_prefix((int)n, "writing %s to sink %s", j->path,
					      j->fs->base.url);
			break;
		}
		if (got < want) {
			*src_failed = true;
			err = rh_error_set(RH_EVERIFY,
					   "the source of %s ended after %llu bytes "
					   "but the manifest says %llu",
					   j->path, (unsigned long long)(off + got),
					   (unsigned long long)size);
			break;
		}
		rh_sha256_update(c, j->buf[idx], want);
		pthread_mutex_lock(&j->lock);
		j->len[idx] = want;
		j->off[idx] = off;
		j->filled++;
		pthread_cond_broadcast(&j->cond);
		pthread_mutex_unlock(&j->lock);
		off += want;
	}
	/* The writer drains what was read even after a failure: those bytes
	 * are good, and a longer partial is a shorter resume. */
	pthread_mutex_lock(&j->lock);
	j->eof = true;
	pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
	pthread_join(tid, NULL);
	if (j->werrno && err == 0)
		err = rh_error_set_errno(RH_EIO, j->werrno, "cannot write %s to sink %s%s", j->path,
					 j->fs->base.url,
					 j->werrno == ENOSPC || j->werrno == EDQUOT
					     ? " (free space on the target and run again)"
					     : "");
	return err;
}

/* ---- put by copy_file_range -----------------------------------------------
 *
 * A source that is a local file on a filesystem that cannot clone is
 * copied by the kernel (copy_file_range: page cache to page cache, no trip
 * through our buffers), a range at a time, and each range is hashed where
 * it landed, through a read-only mapping of the partial: one copy and one
 * hash per byte, and the hash is of the bytes under the final name. On this
 * kind of machine the write(2) path spent four times the CPU in the kernel
 * copying user buffers into the page cache. Writeback is started every
 * FILE_SINK_KICK bytes, as the writer thread does. Returns 0 (c holds every
 * byte), RH_EUNSUPPORTED (nothing copied: stream instead), or an error. */
static int put_copy_range(struct put_job *j, int sfd, uint64_t size, struct rh_sha256 *c,
			  uint64_t *copied)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t off = 0, kicked = 0, prev_off = 0, prev_len = 0;
	uint8_t extra;

	*copied = 0;
	if (page <= 0)
		page = 4096;
	while (off < size) {
		size_t want = size - off < FILE_SINK_KICK ? (size_t)(size - off) : FILE_SINK_KICK;
		loff_t in = (loff_t)off, out = (loff_t)off;
		uint64_t map_off = off & ~(uint64_t)(page - 1);
		ssize_t n;
		void *map;

		if (sink_cancelled(j->fs))
			return rh_error_set(RH_ECANCELLED, "cancelled while writing %s to sink %s",
					    j->path, j->fs->base.url);
		n = copy_file_range(sfd, &in, j->fd, &out, want, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && off == 0 &&
		    (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
		     errno == EBADF))
			return RH_EUNSUPPORTED;
		if (n < 0)
			return rh_error_set_errno(RH_EIO, errno, "cannot write %s to sink %s%s",
						  j->path, j->fs->base.url,
						  errno == ENOSPC || errno == EDQUOT
						      ? " (free space on the target and run again)"
						      : "");
		if (n == 0)
			return rh_error_set(RH_EVERIFY,
					    "the source of %s ended after %llu bytes but the "
					    "manifest says %llu",
					    j->path, (unsigned long long)off,
					    (unsigned long long)size);
		map = mmap(NULL, (size_t)(off - map_off) + (size_t)n, PROT_READ, MAP_SHARED, j->fd,
			   (off_t)map_off);
		if (map == MAP_FAILED)
			return rh_error_set_errno(RH_EIO, errno, "cannot read back %s in sink %s",
						  j->path, j->fs->base.url);
		rh_sha256_update(c, (const uint8_t *)map + (off - map_off), (size_t)n);
		munmap(map, (size_t)(off - map_off) + (size_t)n);
		if (j->fs->base.progress)
			j->fs->base.progress(j->fs->base.progress_user, (uint64_t)n);
		off += (uint64_t)n;
		*copied = off;
		if (off - kicked >= FILE_SINK_KICK || off == size) {
			/* Hints only: fsync at the end reports any error. */
			sync_file_range(j->fd, (off_t)kicked, (off_t)(off - kicked),
					SYNC_FILE_RANGE_WRITE);
			if (prev_len)
				sync_file_range(j->fd, (off_t)prev_off, (off_t)prev_len,
						SYNC_FILE_RANGE_WAIT_BEFORE |
						    SYNC_FILE_RANGE_WRITE |
						    SYNC_FILE_RANGE_WAIT_AFTER);
			prev_off = kicked;
			prev_len = off - kicked;
			kicked = off;
		}
	}
	/* a source longer than the manifest says is just as wrong */
	if (pread(sfd, &extra, 1, (off_t)size) > 0)
		return rh_error_set(RH_EVERIFY,
				    "the source of %s is larger than the %llu bytes the manifest "
				    "says",
				    j->path, (unsigned long long)size);
	return 0;
}

/* Removes partials of other objects at the same path (an older version's,
 * or a temporary of an older rehydra), unless another process holds one. */
static void put_drop_stale(int dirfd, const char *leaf, const char *keep)
{
	size_t ll = strlen(leaf), pl = strlen(FILE_SINK_PART);
	struct dirent *e;
	int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;

	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		int fd;

		if (strncmp(e->d_name, leaf, ll) != 0 ||
		    strncmp(e->d_name + ll, FILE_SINK_PART, pl) != 0 ||
		    strcmp(e->d_name, keep) == 0)
			continue;
		fd = openat(dirfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
			close(fd);
			continue;
		}
		unlinkat(dirfd, e->d_name, 0);
		if (fd >= 0)
			close(fd);
	}
	closedir(d);
}

/* Hashes the `size` bytes of fd through a read-only mapping: the bytes are
 * already in the page cache (a clone or a link of a file just read), and
 * read() would copy each of them once more only to hash it, which costs as
 * much as the hash itself (measured: the demo's sync step went from 1.2 s
 * to 0.6-0.9 s on a loaded 2-core machine). Only a clone of our own or a
 * read-only store object is mapped, so nothing should truncate it under
 * us (which would fault, as it would for the stack's own mmap check).
 * Falls back to hash_fd when it cannot map. */
static int hash_mapped(struct file_sink *fs, const char *path, int fd, uint64_t size, char hex[65])
{
	struct rh_sha256 c = {0};
	uint8_t d[32];
	void *map;
	int err = 0;

	if (size == 0 || size > (uint64_t)SIZE_MAX)
		return hash_fd(fs, path, fd, true, hex);
	map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return hash_fd(fs, path, fd, true, hex);
	madvise(map, (size_t)size, MADV_SEQUENTIAL);
	err = rh_sha256_init(&c);
	for (uint64_t off = 0; err == 0 && off < size; off += FILE_SINK_BUF) {
		size_t n = size - off < FILE_SINK_BUF ? (size_t)(size - off) : FILE_SINK_BUF;

		if (sink_cancelled(fs)) {
			err = rh_error_set(RH_ECANCELLED, "cancelled while checking %s in sink %s",
					   path, fs->base.url);
			break;
		}
		rh_sha256_update(&c, (const uint8_t *)map + off, n);
		if (fs->base.progress)
			fs->base.progress(fs->base.progress_user, (uint64_t)n);
	}
	if (err == 0) {
		rh_sha256_final(&c, d);
		rh_sha256_hex(hex, d);
	}
	rh_sha256_free(&c);
	munmap(map, (size_t)size);
	return err;
}

/* ---- put without a copy ---------------------------------------------------
 *
 * When the source is a local file, the cheapest correct copy is none: a
 * reflink (FICLONE: btrfs, XFS and bcachefs share the extents, copy on
 * write), or, when source and sink are on one filesystem and the source is
 * read-only, a hard link. Read-only matters because a hard link shares the
 * inode: a content-addressed store keeps its objects read-only (rehydra's
 * LFS cache 0400, the demo registry's LFS store like git's own objects), so
 * nobody writes into the store through the workspace's name by accident.
 * Either way the bytes under the final name are hashed before the rename,
 * as a copy's are: one read of each byte, from the page cache, and no write.
 * Returns 0 (in place, hex set), RH_EUNSUPPORTED (copy instead), or an error.
 */
static int put_without_copy(struct file_sink *fs, int dirfd, const char *leaf, const char *path,
			    uint64_t size, const char *sha256, const struct rh_source *src,
			    char hex[65])
{
	static atomic_uint seq;
	struct stat ss, ts, ds;
	char tmp[NAME_MAX + 1];
	char proc[64];
	int sfd = src->local_fd ? src->local_fd(src->user) : -1;
	int tfd = -1;
	bool have_tmp = false;
	int err = RH_EUNSUPPORTED;

	if (sfd < 0 || fstat(sfd, &ss) != 0 || !S_ISREG(ss.st_mode) ||
	    (uint64_t)ss.st_size != size || size == 0)
		return RH_EUNSUPPORTED;
	if (snprintf(tmp, sizeof(tmp), "%s%s%.16s-%ld-%u", leaf, FILE_SINK_PART, sha256,
		     (long)getpid(), atomic_fetch_add(&seq, 1)) >= (int)sizeof(tmp))
		return RH_EUNSUPPORTED;
	tfd = openat(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (tfd < 0)
		return RH_EUNSUPPORTED; /* the copy reports what is wrong */
	have_tmp = true;
	if (ioctl(tfd, FICLONE, sfd) != 0) {
		close(tfd);
		tfd = -1;
		unlinkat(dirfd, tmp, 0);
		have_tmp = false;
		if ((ss.st_mode & 0222) != 0 || fstat(dirfd, &ds) != 0 || ds.st_dev != ss.st_dev)
			goto done;
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", sfd);
		if (linkat(AT_FDCWD, proc, dirfd, tmp, AT_SYMLINK_FOLLOW) != 0)
			goto done;
		have_tmp = true;
		tfd = openat(dirfd, tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (tfd < 0 || fstat(tfd, &ts) != 0 || ts.st_ino != ss.st_ino ||
		    ts.st_dev != ss.st_dev)
			goto done;
	}
	err = hash_mapped(fs, path, tfd, size, hex);
	if (err < 0)
		goto done;
	if (strcmp(hex, sha256) != 0) {
		err = rh_error_set(RH_EVERIFY,
				   "sha256 mismatch for %s in sink %s: expected %s, "
				   "got %s (from %s)",
				   path, fs->base.url, sha256, hex,
				   src->name ? src->name : "the registry");
		goto done;
	}
	if (fsync(tfd) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot flush %s to sink %s", path,
					 fs->base.url);
		goto done;
	}
	if (renameat(dirfd, tmp, dirfd, leaf) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot move %s into place in sink %s",
					 path, fs->base.url);
		goto done;
	}
	/* A rename onto another link of the same inode leaves both names. */
	unlinkat(dirfd, tmp, 0);
	have_tmp = false;
done:
	if (tfd >= 0)
		close(tfd);
	if (have_tmp)
		unlinkat(dirfd, tmp, 0);
	return err;
}

static int file_sink_put(struct rh_sink *s, const char *path, uint64_t size, const char *sha256,
			 const struct rh_source *src, struct rh_put_stats *stats)
{
	struct file_sink *fs = (struct file_sink *)s;
	struct put_job j = {.fs = fs,
			    .path = path,
			    .src = src,
			    .fd = -1,
			    .lock = PTHREAD_MUTEX_INITIALIZER,
			    .cond = PTHREAD_COND_INITIALIZER};
	struct rh_sha256 c = {0};
	struct stat sb;
	uint8_t digest[32];
	char part[NAME_MAX + 1];
	char hex[65];
	const char *leaf;
	uint64_t have = 0;
	uint64_t sent = 0;
	bool keep_part = false;
	bool src_failed = false;
	int dirfd = -1;
	int sfd = -1;
	int err = 0;

	if (stats)
		stats->bytes_sent = stats->bytes_resumed = 0;
	if (!file_sink_path_ok(path)) {
		err = rh_error_set(RH_EINVAL, "refusing unsafe path \"%s\" for sink %s", path,
				   s->url);
		goto done;
	}
	if (!rh_hex_is_sha256(sha256)) {
		err = rh_error_set(RH_EINVAL, "bad sha256 \"%s\" for %s in sink %s", sha256, path,
				   s->url);
		goto done;
	}
	if (!src || !src->read_at) {
		err = rh_error_set(RH_EINVAL, "no source for %s in sink %s", path, s->url);
		goto done;
	}
	if (src->size != size) {
		err = rh_error_set(RH_EVERIFY,
				   "the source of %s has %llu bytes but the manifest "
				   "says %llu",
				   path, (unsigned long long)src->size, (unsigned long long)size);
		goto done;
	}
	if (sink_cancelled(fs)) {
		err = rh_error_set(RH_ECANCELLED, "cancelled before writing %s to sink %s", path,
				   s->url);
		goto done;
	}
	err = file_sink_parent(fs, path, true, &dirfd, &leaf);
	if (err < 0)
		goto done;
	if (snprintf(part, sizeof(part), "%s%s%.16s", leaf, FILE_SINK_PART, sha256) >=
	    (int)sizeof(part)) {
		err = rh_error_set(RH_EINVAL, "file name of %s is too long for sink %s", path,
				   s->url);
		goto done;
	}
	put_drop_stale(dirfd, leaf, part);
	err = put_without_copy(fs, dirfd, leaf, path, size, sha256, src, hex);
	if (err == 0) {
		unlinkat(dirfd, part, 0); /* a partial of an earlier copy, done with */
		if (fstatat(dirfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
			err = file_sink_remember(fs, path, &sb, hex);
		}
		if (stats)
			stats->bytes_sent = size;
		goto done;
	}
	if (err != RH_EUNSUPPORTED)
		goto done;
	err = 0;
	j.fd = openat(dirfd, part, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (j.fd < 0 && errno == ELOOP && unlinkat(dirfd, part, 0) == 0)
		j.fd =
		    openat(dirfd, part, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (j.fd < 0) {
		err = rh_error_set_errno(RH_EIO, errno,
					 "cannot create a temporary for %s in sink "
					 "%s",
					 path, s->url);
		goto done;
	}
	keep_part = true; /* until we know whether it is worth keeping */
	if (flock(j.fd, LOCK_EX | LOCK_NB) != 0) {
		err = rh_error_set(RH_EIO,
				   "another process is writing %s to sink %s: wait for it "
				   "or stop it",
				   path, s->url);
		goto done;
	}
	if (fstat(j.fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		err = rh_error_set(RH_EIO, "the temporary of %s in sink %s is not a regular file",
				   path, s->url);
		goto done;
	}
	have = (uint64_t)sb.st_size;
	if (have > size) {
		if (ftruncate(j.fd, 0) != 0) {
			err = rh_error_set_errno(RH_EIO, errno,
						 "cannot reset the partial of %s in "
						 "sink %s",
						 path, s->url);
			goto done;
		}
		have = 0;
	}
	j.bufsize = size < FILE_SINK_CHUNK ? (size ? (size_t)size : 1) : FILE_SINK_CHUNK;
	for (int i = 0; i < FILE_SINK_NBUF; i++) {
		j.buf[i] = malloc(j.bufsize);
		if (!j.buf[i]) {
			err = rh_error_set(RH_ENOMEM, "out of memory writing %s to sink %s", path,
					   s->url);
			goto done;
		}
	}
	if (have == 0 && size > 0 && src->local_fd && (sfd = src->local_fd(src->user)) >= 0) {
		uint64_t copied = 0;

		err = rh_sha256_init(&c);
		if (err == 0)
			err = put_copy_range(&j, sfd, size, &c, &copied);
		sent += copied;
		if (err == 0) {
			rh_sha256_final(&c, digest);
			rh_sha256_hex(hex, digest);
			if (strcmp(hex, sha256) != 0) {
				keep_part = false;
				err = rh_error_set(RH_EVERIFY,
						   "sha256 mismatch for %s in sink %s: "
						   "expected %s, got %s",
						   path, s->url, sha256, hex);
				goto done;
			}
			goto copied;
		}
		if (err != RH_EUNSUPPORTED) {
			/* the bytes copied so far are the source's: worth resuming */
			keep_part = err == RH_ECANCELLED;
			goto done;
		}
		rh_sha256_free(&c);
		err = 0;
	}
	for (;;) {
		err = rh_sha256_init(&c);
		if (err == 0)
			err = put_hash_prefix(&j, have, &c);
		if (err == 0)
			err = put_stream(&j, have, size, &c, &src_failed);
		sent += j.written;
		if (err < 0) {
			/* Worth resuming only when the bytes written so far are good:
			 * a cancel or a source that broke off, not a bad source or disk. */
			keep_part = err == RH_ECANCELLED || (src_failed && err != RH_EVERIFY);
			goto done;
		}
		rh_sha256_final(&c, digest);
		rh_sha256_hex(hex, digest);
		if (strcmp(hex, sha256) == 0)
			break;
		if (have == 0) {
			keep_part = false;
			err = rh_error_set(RH_EVERIFY,
					   "sha256 mismatch for %s in sink %s: "
					   "expected %s, got %s",
					   path, s->url, sha256, hex);
			goto done;
		}
		/* The partial was not the start of this object: once more, whole. */
		if (ftruncate(j.fd, 0) != 0) {
			err = rh_error_set_errno(RH_EIO, errno,
						 "cannot reset the partial of %s in "
						 "sink %s",
						 path, s->url);
			keep_part = false;
			goto done;
		}
		have = 0;
	}
copied:
	keep_part = false;
	if (fsync(j.fd) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot flush %s to sink %s", path, s->url);
		goto done;
	}
	if (renameat(dirfd, part, dirfd, leaf) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot move %s into place in sink %s",
					 path, s->url);
		goto done;
	}
	/* Identity after the rename (the rename may change ctime). */
	if (fstatat(dirfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
		err = file_sink_remember(fs, path, &sb, hex);
	}
	if (stats) {
		stats->bytes_resumed = have;
		stats->bytes_sent = sent;
	}
done:
	rh_sha256_free(&c);
	if (err < 0 && !keep_part && j.fd >= 0)
		unlinkat(dirfd, part, 0);
	if (err < 0 && stats)
		stats->bytes_sent = sent;
	if (j.fd >= 0)
		close(j.fd); /* drops the flock */
	if (err < 0)	     /* whatever is under the final name now, we do not vouch for it */
		rh_sink_manifest_forget(&fs->m, path);
	if (dirfd >= 0)
		close(dirfd);
	for (int i = 0; i < FILE_SINK_NBUF; i++)
		free(j.buf[i]);
	pthread_mutex_destroy(&j.lock);
	pthread_cond_destroy(&j.cond);
	return err;
}

static int file_sink_state_load(struct file_sink *fs)
{
	json_error_t jerr;
	struct stat sb;
	json_t *doc = NULL;
	int fd;

	fd = openat(fs->root_fd, FILE_SINK_STATE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) &&
	    sb.st_size < (off_t)FILE_SINK_STATE_MAX) {
		FILE *f = fdopen(fd, "r");

		if (f) {
			fd = -1;
			doc = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
			fclose(f);
		}
	}
	if (fd >= 0)
		close(fd);
	/* A missing or damaged state only costs re-hashing: start empty. */
	rh_sink_manifest_adopt(&fs->m, doc);
	json_decref(doc);
	return 0;
}

/* Renames are durable only once their directory is, and a new directory
 * only once its parent is: fsyncs the directory of every file the sink
 * lists and each one above it, once each, then the root and the root's
 * parent. Not syncfs: that waits for every dirty page of the whole
 * filesystem, other programs' too (74 ms of a demo drill's critical path
 * on a busy machine, for a sink whose files were fsync'ed already). */
static int file_sink_sync_dirs(struct file_sink *fs)
{
	json_t *seen = json_object();
	const char *path;
	json_t *entry;
	int err = 0;
	int fd;

	if (!seen)
		return rh_error_set(RH_ENOMEM, "out of memory flushing sink %s", fs->base.url);
	json_object_foreach(fs->m.files, path, entry)
	{
		char *dir = strdup(path);
		char *slash;

		if (!dir) {
			err =
			    rh_error_set(RH_ENOMEM, "out of memory flushing sink %s", fs->base.url);
			break;
		}
		/* "a/b/c.bin": the directory holding c.bin is a/b, then a */
		while (err == 0 && (slash = strrchr(dir, '/')) != NULL) {
			const char *leaf;
			int dirfd;

			if (json_object_get(seen, dir))
				break; /* and so were the ones above it */
			if (json_object_set_new(seen, dir, json_true()) != 0) {
				err = rh_error_set(RH_ENOMEM, "out of memory flushing sink %s",
						   fs->base.url);
				break;
			}
			err = file_sink_parent(fs, dir, false, &dirfd, &leaf);
			if (err == RH_ENOTFOUND) {
				err = 0; /* gone since: nothing of it to make durable */
			} else if (err == 0) {
				if (fsync(dirfd) != 0)
					err = rh_error_set_errno(RH_EIO, errno,
								 "cannot flush directory %.*s "
								 "in sink %s",
								 (int)(slash - dir), dir,
								 fs->base.url);
				close(dirfd);
			}
			*slash = '\0';
		}
		free(dir);
		if (err < 0)
			break;
	}
	json_decref(seen);
	if (err == 0 && fsync(fs->root_fd) != 0)
		err = rh_error_set_errno(RH_EIO, errno, "cannot flush sink %s", fs->base.url);
	if (err == 0 && (fd = openat(fs->root_fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		if (fsync(fd) != 0)
			err = rh_error_set_errno(
			    RH_EIO, errno, "cannot flush the parent of sink %s", fs->base.url);
		close(fd);
	}
	return err;
}

static int file_sink_commit(struct rh_sink *s)
{
	struct file_sink *fs = (struct file_sink *)s;
	char *text = NULL;
	int err = 0;

	if (!fs->m.dirty)
		goto sync_dir;
	err = rh_sink_manifest_text(&fs->m, &text, s->url);
	if (err < 0)
		goto done;
	err = rh_fs_write_atomic_at(fs->root_fd, s->url, FILE_SINK_STATE, text, strlen(text));
	if (err < 0) {
		rh_error_prefix(err, "cannot record the state of sink %s", s->url);
		goto done;
	}
	rh_sink_manifest_saved(&fs->m);
sync_dir:
	err = file_sink_sync_dirs(fs);
done:
	free(text);
	return err;
}

static void file_sink_close(struct rh_sink *s)
{
	struct file_sink *fs = (struct file_sink *)s;

	if (fs->root_fd >= 0)
		close(fs->root_fd);
	rh_sink_manifest_release(&fs->m);
	free(fs->root);
	free(s->url);
	free(s->location);
	free(fs);
}

static const struct rh_sink_ops file_sink_ops = {
    .version = RH_SINK_OPS_VERSION,
    .scheme = "file",
    .max_parallel = FILE_SINK_PARALLEL,
    .has = file_sink_has,
    .put = file_sink_put,
    .commit = file_sink_commit,
    .close = file_sink_close,
};

int rh_sink_file_open(struct rh_sink **out, const char *dir)
{
	struct file_sink *fs = NULL;
	int err = 0;

	*out = NULL;
	if (!dir || !*dir) {
		err = rh_error_set(RH_EINVAL, "file sink: no directory given");
		goto done;
	}
	fs = calloc(1, sizeof(*fs));
	if (!fs) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening sink %s", dir);
		goto done;
	}
	fs->root_fd = -1;
	fs->base.ops = &file_sink_ops;
	err = rh_sink_manifest_init(&fs->m);
	if (err < 0)
		goto done;
	err = rh_fs_mkdir_p(dir);
	if (err < 0) {
		rh_error_prefix(err, "file sink %s", dir);
		goto done;
	}
	fs->root = realpath(dir, NULL);
	if (!fs->root) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot resolve sink directory %s", dir);
		goto done;
	}
	fs->base.location = strdup(fs->root);
	if (!fs->base.location || asprintf(&fs->base.url, "file://%s", fs->root) < 0) {
		fs->base.url = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory opening sink %s", dir);
		goto done;
	}
	fs->root_fd = open(fs->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fs->root_fd < 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot open sink directory %s", fs->root);
		goto done;
	}
	err = file_sink_state_load(fs);
	if (err < 0)
		goto done;
	*out = &fs->base;
	fs = NULL;
done:
	if (fs)
		file_sink_close(&fs->base);
	return err;
}
