/*
 * fsutil.c - directories, tree removal and crash-safe writes (see fsutil.h).
 *
 * Kept in one place because each was written three times before: the drill
 * directory, the local workspace and the file sink all make directories; the
 * drill record and the sink's state must both be atomic and durable.
 */
#include "fsutil.h"

#include "error.h"
#include "hex.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/fs.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "banned.h"

int rh_fs_mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return rh_error_set(RH_EINVAL, "bad directory name '%s'", path);
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return rh_error_set_errno(RH_EIO, errno, "cannot create directory %s", buf);
		if (i < n)
			buf[i] = '/';
	}
	return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) == 0 || errno == ENOENT ? 0 : -1;
	return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
}

int rh_fs_rm_rf(const char *path)
{
	struct stat sb;

	if (lstat(path, &sb) != 0)
		return errno == ENOENT
			   ? 0
			   : rh_error_set_errno(RH_EIO, errno, "cannot inspect %s", path);
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
		return rh_error_set_errno(RH_EIO, errno, "cannot remove %s", path);
	return 0;
}

int rh_fs_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void rh_fs_rand_hex(char out[17])
{
	unsigned char r[8] = {0};

	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
		/* Only uniqueness matters (O_EXCL catches a clash): pid and time do. */
		unsigned long long v = (unsigned long long)getpid() ^
				       ((unsigned long long)time(NULL) << 20) ^
				       (unsigned long long)(uintptr_t)out;

		memcpy(r, &v, sizeof(r));
	}
	rh_hex_encode(out, r, sizeof(r));
}

int rh_fs_write_atomic_at(int dirfd, const char *where, const char *name, const void *data,
			  size_t len)
{
	char tmp[NAME_MAX + 1];
	char rnd[17];
	int fd = -1;
	int err = 0;
	int rc;

	rh_fs_rand_hex(rnd);
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp-%s", name, rnd) >= sizeof(tmp))
		return rh_error_set(RH_EINVAL, "file name too long in %s: %s", where, name);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return rh_error_set_errno(RH_EIO, errno, "cannot create a file in %s", where);
	rc = rh_fs_write_all(fd, data, len);
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc < 0) {
		err = rh_error_set_errno(RH_EIO, -rc, "cannot write %s/%s", where, name);
		goto fail;
	}
	if (renameat(dirfd, tmp, dirfd, name) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot replace %s/%s", where, name);
		goto fail;
	}
	/* The rename is durable only once the directory is. */
	if (fsync(dirfd) != 0)
		return rh_error_set_errno(RH_EIO, errno, "cannot sync directory %s", where);
	return 0;
fail:
	unlinkat(dirfd, tmp, 0);
	return err;
}

int rh_fs_open_regular(const char *path, int flags)
{
	struct stat sb;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | flags);
	int fl;

	if (fd < 0)
		return errno == ENOENT ? RH_ENOTFOUND
				       : rh_error_set_errno(RH_EIO, errno, "cannot open %s", path);
	if (fstat(fd, &sb) != 0) {
		int e = errno;

		close(fd);
		return rh_error_set_errno(RH_EIO, e, "cannot stat %s", path);
	}
	if (!S_ISREG(sb.st_mode)) {
		const char *kind = S_ISFIFO(sb.st_mode)				? "a FIFO"
				   : S_ISDIR(sb.st_mode)			? "a directory"
				   : S_ISSOCK(sb.st_mode)			? "a socket"
				   : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device"
										: "not a file";

		close(fd);
		return rh_error_set(RH_EINVAL, "%s is %s, not a regular file: refusing to read it",
				    path, kind);
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int e = errno;

		close(fd);
		return rh_error_set_errno(RH_EIO, e, "cannot open %s", path);
	}
	return fd;
}

const char *rh_fs_share_name(enum rh_fs_share how)
{
	return how == RH_FS_SHARE_REFLINK    ? "reflink"
	       : how == RH_FS_SHARE_HARDLINK ? "hardlink"
					     : "copy";
}

/* copy_file_range until `size` bytes are in `tfd`. */
static int share_copy(int sfd, int tfd, uint64_t size)
{
	loff_t in = 0, out = 0;

	while ((uint64_t)in < size) {
		ssize_t n = copy_file_range(sfd, &in, tfd, &out, (size_t)(size - (uint64_t)in), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
	}
	return 0;
}

int rh_fs_share_file(const char *src, const char *dst, enum rh_fs_share *how)
{
	char tmp[PATH_MAX];
	char rnd[17];
	struct stat sb;
	enum rh_fs_share got = RH_FS_SHARE_REFLINK;
	int sfd = -1, tfd = -1;
	bool have_tmp = false;
	int err = 0;
	int e;

	rh_fs_rand_hex(rnd);
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.rh-share-%s", dst, rnd) >= sizeof(tmp))
		return rh_error_set(RH_EINVAL, "path too long: %s", dst);
	sfd = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd < 0 || fstat(sfd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		err = rh_error_set_errno(RH_EIO, sfd < 0 ? errno : EINVAL,
					 "cannot read %s to give it to %s", src, dst);
		goto done;
	}
	tfd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, sb.st_mode & 0777);
	if (tfd < 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot create %s", tmp);
		goto done;
	}
	have_tmp = true;
	if (ioctl(tfd, FICLONE, sfd) == 0)
		goto place;
	/* No reflinks here: a hard link, on the same filesystem. */
	close(tfd);
	tfd = -1;
	unlink(tmp);
	have_tmp = false;
	if (link(src, tmp) == 0) {
		have_tmp = true;
		got = RH_FS_SHARE_HARDLINK;
		goto place;
	}
	if (errno != EXDEV && errno != EPERM && errno != EMLINK) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot link %s to %s", src, tmp);
		goto done;
	}
	got = RH_FS_SHARE_COPY;
	tfd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, sb.st_mode & 0777);
	if (tfd < 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot create %s", tmp);
		goto done;
	}
	have_tmp = true;
	if ((e = share_copy(sfd, tfd, (uint64_t)sb.st_size)) < 0 || fsync(tfd) != 0) {
		err = rh_error_set_errno(RH_EIO, e < 0 ? -e : errno, "cannot copy %s to %s", src,
					 tmp);
		goto done;
	}
place:
	if (rename(tmp, dst) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot move %s to %s", tmp, dst);
		goto done;
	}
	/* A rename onto another name of the same inode leaves both names. */
	if (got == RH_FS_SHARE_HARDLINK)
		unlink(tmp);
	have_tmp = false;
	if (how)
		*how = got;
done:
	if (tfd >= 0)
		close(tfd);
	if (sfd >= 0)
		close(sfd);
	if (have_tmp)
		unlink(tmp);
	return err;
}
