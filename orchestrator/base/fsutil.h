/*
 * fsutil.h - the few filesystem operations every module needs, done one
 * way: directories created 0700, trees removed without a shell, and files
 * that must survive a crash written atomically (temporary name, fsync,
 * rename, fsync of the directory), so a reader sees the old content or the
 * new, never half of it.
 */
#ifndef RH_FSUTIL_H
#define RH_FSUTIL_H

#include <stddef.h>

/* mkdir -p: creates every missing component of `path` with mode 0700.
 * Returns 0 or RH_EIO/RH_EINVAL naming the component. */
int rh_fs_mkdir_p(const char *path);

/* rm -rf without following symlinks. A missing path is fine. Returns 0 or
 * RH_EIO naming what could not be removed. */
int rh_fs_rm_rf(const char *path);

/* write(2) until done, retrying on EINTR. Returns 0 or -errno. */
int rh_fs_write_all(int fd, const void *buf, size_t len);

/* Atomically replaces `name` inside the directory `dirfd` with `len` bytes of
 * `data` (mode 0600): a temporary "<name>.tmp-<random>" created O_EXCL and
 * without following symlinks, fsync, renameat, fsync of the directory. On
 * failure the temporary is removed and the old file is untouched. `where`
 * names the directory in messages. */
int rh_fs_write_atomic_at(int dirfd, const char *where, const char *name, const void *data,
			  size_t len);

/* Fills `out` with 16 random lowercase hex digits and a NUL, for unique
 * temporary names (O_EXCL still guards against a clash). */
void rh_fs_rand_hex(char out[17]);

/* Opens an existing regular file for reading (flags may add O_NOFOLLOW):
 * with O_NONBLOCK first, so a FIFO or device planted where a file should be
 * cannot block the open, then fstat, then blocking again. Returns the fd,
 * RH_ENOTFOUND when it does not exist, RH_EINVAL (message naming the path
 * and its type) when it is not a regular file, RH_EIO otherwise. */
int rh_fs_open_regular(const char *path, int flags);

/* How rh_fs_share_file gave `dst` its bytes, weakest last. */
enum rh_fs_share {
	RH_FS_SHARE_REFLINK,  /* FICLONE: shared extents, copy on write */
	RH_FS_SHARE_HARDLINK, /* another name of the same inode */
	RH_FS_SHARE_COPY,     /* copy_file_range: the bytes were copied */
};

/* Gives the new file `dst` (its directory must exist; an existing dst is
 * replaced) the bytes of the regular file `src` without copying them where
 * the filesystem allows: a reflink, else a hard link, else (another
 * filesystem) a copy done in the kernel. *how says which (may be NULL).
 * The result appears under `dst` only once complete (a temporary name,
 * then rename). Returns 0 or RH_EIO naming both paths. */
int rh_fs_share_file(const char *src, const char *dst, enum rh_fs_share *how);

/* "reflink", "hardlink" or "copy". */
const char *rh_fs_share_name(enum rh_fs_share how);

#endif
