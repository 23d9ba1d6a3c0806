/*
 * sink_file.c - the file sink: a directory on this machine.
 *
 * Writes are crash-safe and confined. Each file is streamed into
 * "<name>.rh-part-<random>" next to its final name, hashed on the way, and
 * renamed into place only after its size and sha256 matched and the data
 * was fsync'ed; any failure unlinks the temporary, so neither the final name
 * nor a stray temporary survives a bad transfer. Paths are walked one
 * component at a time with openat(O_NOFOLLOW) from a descriptor of the
 * root, so a symlink planted in the tree cannot redirect a write outside it
 * (we refuse every symlinked directory component: a sink's tree is ours).
 *
 * Re-syncing an unchanged target must be cheap, so the sink keeps a state
 * file, .rehydra-sink.json, mapping each path it wrote or verified to its
 * size, sha256 and the inode's identity (mtime, ctime, inode number). has()
 * trusts the recorded sha256 while that identity is unchanged and re-hashes
 * otherwise. The state file is replaced atomically in commit().
 */
#include "sink.h"
#include "cancel.h"
#include "error.h"
#include "fsutil.h"
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "banned.h"

#define FILE_SINK_BUF (1u << 20)
#define FILE_SINK_STATE ".rehydra-sink.json"
#define FILE_SINK_PART ".rh-part-"
#define FILE_SINK_STATE_MAX (64u * 1024 * 1024)

struct file_sink {
	struct rh_sink base; /* first: the ops see a struct rh_sink */
	char *root;          /* absolute */
	int root_fd;
	json_t *files;       /* state: path -> {size, sha256, mtime_ns, ctime_ns, ino} */
	bool dirty;
};

static bool sha256_hex_ok(const char *h)
{
	if (!h || strlen(h) != 64)
		return false;
	for (int i = 0; i < 64; i++)
		if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
			return false;
	return true;
}

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
			err = rh_error_set(RH_EINVAL, "path %s in sink %s has a component that is "
					   "too long", path, fs->base.url);
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
				err = rh_error_set(RH_EINVAL, "refusing to write %s in sink %s: "
						   "%.*s is a symlink or not a directory", path,
						   fs->base.url, (int)(slash - path), path);
			else
				err = rh_error_set_errno(RH_EIO, errno, "cannot open %.*s in sink "
							 "%s", (int)(slash - path), path,
							 fs->base.url);
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
	json_t *e = json_pack("{s:I, s:s, s:I, s:I, s:I}", "size", (json_int_t)sb->st_size,
			      "sha256", sha256, "mtime_ns", (json_int_t)stat_ns(&sb->st_mtim),
			      "ctime_ns", (json_int_t)stat_ns(&sb->st_ctim),
			      "ino", (json_int_t)sb->st_ino);

	if (!e || json_object_set_new(fs->files, path, e) != 0)
		return rh_error_set(RH_ENOMEM, "out of memory recording %s in sink %s", path,
				    fs->base.url);
	fs->dirty = true;
	return 0;
}

/* The recorded sha256 of `path` if the file is the same inode, unchanged. */
static const char *file_sink_known(struct file_sink *fs, const char *path, const struct stat *sb)
{
	json_t *e = json_object_get(fs->files, path);

	if (!json_is_object(e))
		return NULL;
	if (json_integer_value(json_object_get(e, "size")) != (json_int_t)sb->st_size ||
	    json_integer_value(json_object_get(e, "mtime_ns")) != stat_ns(&sb->st_mtim) ||
	    json_integer_value(json_object_get(e, "ctime_ns")) != stat_ns(&sb->st_ctim) ||
	    json_integer_value(json_object_get(e, "ino")) != (json_int_t)sb->st_ino)
		return NULL;
	if (!sha256_hex_ok(json_string_value(json_object_get(e, "sha256"))))
		return NULL;
	return json_string_value(json_object_get(e, "sha256"));
}

static int hash_fd(struct file_sink *fs, const char *path, int fd, char hex[65])
{
	struct rh_sha256 c;
	uint8_t d[32];
	uint8_t *buf = malloc(FILE_SINK_BUF);
	int err = 0;

	if (!buf)
		return rh_error_set(RH_ENOMEM, "out of memory hashing %s in sink %s", path,
				    fs->base.url);
	rh_sha256_init(&c);
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
	}
	rh_sha256_final(&c, d);
	rh_sha256_hex(hex, d);
done:
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
		err = rh_error_set_errno(RH_EIO, errno, "cannot inspect %s in sink %s", path,
					 s->url);
		goto done;
	}
	if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != size)
		goto done;
	known = file_sink_known(fs, path, &sb);
	if (known) {
		*present = strcmp(known, sha256) == 0;
		goto done;
	}
	err = hash_fd(fs, path, fd, hex);
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

static int file_sink_put(struct rh_sink *s, const char *path, uint64_t size, const char *sha256,
			 rh_sink_read_fn readfn, void *user)
{
	struct file_sink *fs = (struct file_sink *)s;
	struct rh_sha256 c;
	struct stat sb;
	uint8_t digest[32];
	uint8_t *buf = NULL;
	char tmp[NAME_MAX + 1];
	char rnd[17];
	char hex[65];
	const char *leaf;
	uint64_t done_bytes = 0;
	size_t fill = 0;
	bool eof = false;
	bool have_tmp = false;
	int dirfd = -1;
	int fd = -1;
	int err = 0;
	int rc;

	if (!file_sink_path_ok(path)) {
		err = rh_error_set(RH_EINVAL, "refusing unsafe path \"%s\" for sink %s", path,
				   s->url);
		goto done;
	}
	if (!sha256_hex_ok(sha256)) {
		err = rh_error_set(RH_EINVAL, "bad sha256 \"%s\" for %s in sink %s", sha256, path,
				   s->url);
		goto done;
	}
	if (s->cancel && rh_cancel_is_fired(s->cancel)) {
		err = rh_error_set(RH_ECANCELLED, "cancelled before writing %s to sink %s", path,
				   s->url);
		goto done;
	}
	err = file_sink_parent(fs, path, true, &dirfd, &leaf);
	if (err < 0)
		goto done;
	rh_fs_rand_hex(rnd);
	if (snprintf(tmp, sizeof(tmp), "%s%s%s", leaf, FILE_SINK_PART, rnd) >= (int)sizeof(tmp)) {
		err = rh_error_set(RH_EINVAL, "file name of %s is too long for sink %s", path,
				   s->url);
		goto done;
	}
	buf = malloc(FILE_SINK_BUF);
	if (!buf) {
		err = rh_error_set(RH_ENOMEM, "out of memory writing %s to sink %s", path, s->url);
		goto done;
	}
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot create a temporary for %s in sink "
					 "%s", path, s->url);
		goto done;
	}
	have_tmp = true;
	rh_sha256_init(&c);
	while (!eof) {
		long n;

		if (s->cancel && rh_cancel_is_fired(s->cancel)) {
			err = rh_error_set(RH_ECANCELLED, "cancelled while writing %s to sink %s",
					   path, s->url);
			goto done;
		}
		/* Fill the whole buffer first: sources may hand out small pieces and
		 * large writes are what make the disk fast. */
		n = readfn(user, buf + fill, FILE_SINK_BUF - fill);
		if (n < 0) {
			err = rh_error_prefix((int)n, "writing %s to sink %s", path, s->url);
			goto done;
		}
		if ((uint64_t)n > FILE_SINK_BUF - fill) {
			err = rh_error_set(RH_ERROR, "source of %s returned too many bytes", path);
			goto done;
		}
		fill += (size_t)n;
		if (n == 0)
			eof = true;
		if (done_bytes + fill > size) {
			err = rh_error_set(RH_EVERIFY, "%s for sink %s is larger than the %llu "
					   "bytes the manifest says", path, s->url,
					   (unsigned long long)size);
			goto done;
		}
		if (fill < FILE_SINK_BUF && !eof)
			continue;
		if (fill == 0)
			break;
		rh_sha256_update(&c, buf, fill);
		rc = rh_fs_write_all(fd, buf, fill);
		if (rc < 0) {
			err = rh_error_set_errno(RH_EIO, -rc, "cannot write %s to sink %s", path,
						 s->url);
			goto done;
		}
		done_bytes += fill;
		fill = 0;
		if (s->progress)
			s->progress(s->progress_user, path, done_bytes, size);
	}
	if (done_bytes != size) {
		err = rh_error_set(RH_EVERIFY, "%s for sink %s ended after %llu of %llu bytes",
				   path, s->url, (unsigned long long)done_bytes,
				   (unsigned long long)size);
		goto done;
	}
	rh_sha256_final(&c, digest);
	rh_sha256_hex(hex, digest);
	if (strcmp(hex, sha256) != 0) {
		err = rh_error_set(RH_EVERIFY, "sha256 mismatch for %s in sink %s: expected %s, "
				   "got %s", path, s->url, sha256, hex);
		goto done;
	}
	if (fsync(fd) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot flush %s to sink %s", path, s->url);
		goto done;
	}
	if (close(fd) != 0) {
		fd = -1;
		err = rh_error_set_errno(RH_EIO, errno, "cannot write %s to sink %s", path, s->url);
		goto done;
	}
	fd = -1;
	if (renameat(dirfd, tmp, dirfd, leaf) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot move %s into place in sink %s",
					 path, s->url);
		goto done;
	}
	have_tmp = false;
	/* Identity after the rename (the rename may change ctime). */
	if (fstatat(dirfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0)
		err = file_sink_remember(fs, path, &sb, hex);
done:
	if (fd >= 0)
		close(fd);
	if (have_tmp)
		unlinkat(dirfd, tmp, 0);
	if (err < 0 && fs->files)
		json_object_del(fs->files, path); /* whatever is there now, we do not vouch */
	if (dirfd >= 0)
		close(dirfd);
	free(buf);
	return err;
}

static int file_sink_state_load(struct file_sink *fs)
{
	json_error_t jerr;
	struct stat sb;
	json_t *doc = NULL;
	json_t *files;
	int fd;

	fs->files = NULL;
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
	files = json_object_get(doc, "files");
	if (json_integer_value(json_object_get(doc, "rehydra_sink")) == 1 && json_is_object(files))
		fs->files = json_incref(files);
	json_decref(doc);
	if (!fs->files)
		fs->files = json_object();
	if (!fs->files)
		return rh_error_set(RH_ENOMEM, "out of memory opening sink %s", fs->base.url);
	return 0;
}

static int file_sink_commit(struct rh_sink *s)
{
	struct file_sink *fs = (struct file_sink *)s;
	char *text = NULL;
	json_t *doc = NULL;
	int err = 0;

	if (!fs->dirty)
		goto sync_dir;
	doc = json_pack("{s:i, s:O}", "rehydra_sink", 1, "files", fs->files);
	text = doc ? json_dumps(doc, JSON_SORT_KEYS | JSON_INDENT(1)) : NULL;
	if (!text) {
		err = rh_error_set(RH_ENOMEM, "out of memory writing the state of sink %s", s->url);
		goto done;
	}
	err = rh_fs_write_atomic_at(fs->root_fd, s->url, FILE_SINK_STATE, text, strlen(text));
	if (err < 0) {
		rh_error_prefix(err, "cannot record the state of sink %s", s->url);
		goto done;
	}
	fs->dirty = false;
sync_dir:
	/* Renames are durable only once their directory is. Nested directories
	 * were fsync'ed by nothing: syncfs covers them all in one call. */
	if (syncfs(fs->root_fd) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot flush sink %s", s->url);
		goto done;
	}
done:
	free(text);
	json_decref(doc);
	return err;
}

static void file_sink_close(struct rh_sink *s)
{
	struct file_sink *fs = (struct file_sink *)s;

	if (fs->root_fd >= 0)
		close(fs->root_fd);
	json_decref(fs->files);
	free(fs->root);
	free(s->url);
	free(fs);
}

static const struct rh_sink_ops file_sink_ops = {
	.version = RH_SINK_OPS_VERSION,
	.scheme = "file",
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
	if (asprintf(&fs->base.url, "file://%s", fs->root) < 0) {
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
