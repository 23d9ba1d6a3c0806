/*
 * sink_sftp.c - the SFTP sink: a directory on another machine, over SSH.
 *
 * Speed. libssh2 1.10 pipelines only the buffer it is handed, and without
 * AES-GCM or ChaCha20 one connection is CPU-bound, so each put() owns one
 * connection of a pool sized to the cores (opts.parallel, default one per
 * online CPU, at least 2: more connections than cores only take turns
 * encrypting, fewer leave a core idle) and hands
 * libssh2_sftp_write 4 MiB at a time, passing the unacknowledged rest again.
 * While libssh2 waits for the server (EAGAIN), the same thread reads and
 * hashes the next 4 MiB in slices, so hashing overlaps the network instead
 * of stalling it.
 *
 * Safety. Bytes go to "<final>.rh-part-<first 16 hex of sha256>" and are
 * hashed as they are read from the source; only when all `size` bytes were
 * written and acknowledged, the hash matches the manifest, the server has
 * flushed the file (fsync@openssh.com when it has it) and its size is right
 * is the partial renamed over the final name (posix-rename@openssh.com:
 * atomic, replaces an older version). A hash mismatch removes the partial.
 *
 * Resume. A put cut off by a lost connection, a timeout or a cancel keeps
 * its partial. The next put of the same object (the partial's name carries
 * the sha256) continues at the partial's size. We do not read the kept
 * prefix back over SFTP to hash it: that costs as much as sending it again,
 * which is what resuming avoids. Instead we hash the local source's prefix
 * (a local read, ~10x faster than the link) and check the remote partial's
 * size plus its last 64 KiB against the source: writes are sequential and
 * acknowledged in order, so a partial is a prefix of the object unless the
 * server lost unflushed data in a crash, and a torn tail shows up in its
 * last bytes. Any doubt restarts the file from zero. The whole object's
 * sha256 is still checked before the rename.
 *
 * State. ".rehydra-sink.json" at the root (path -> size, sha256, mtime) is
 * read at open and replaced at commit (temporary name, then rename); has()
 * trusts it only while the remote file still has the recorded size and
 * modification time.
 */
#include "sink.h"
#include "cancel.h"
#include "clock.h"
#include "error.h"
#include "hex.h"
#include "url.h"
#include "fsutil.h"
#include "sha256.h"
#include "ssh.h"

#include <jansson.h>
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

#define SFTP_BUF (4u << 20)
#define SFTP_SLICE (256u << 10)
#define SFTP_TAIL_CHECK (64u << 10)
#define SFTP_DEFAULT_PARALLEL 4 /* the static ops' figure; opens use sftp_default_parallel */
#define SFTP_MAX_PARALLEL 32
#define SFTP_STATE RH_SINK_MANIFEST_NAME
#define SFTP_PART ".rh-part-"
#define SFTP_STATE_MAX (64u << 20)
#define SFTP_FILE_MODE 0600
#define SFTP_DIR_MODE 0700

struct sftp_conn {
	struct rh_ssh *ssh;
	struct sftp_conn *next;
};

struct sftp_sink {
	struct rh_sink base; /* first: the ops see a struct rh_sink */
	struct rh_sink_ops ops;
	char *host;
	char *user;
	unsigned port;
	char *root; /* absolute on the server once open */
	char *known_hosts;
	char *identity_file;
	bool accept_new_host_key;
	pthread_mutex_t lock; /* guards everything below */
	struct sftp_conn *idle;
	unsigned n_conns;
	json_t *dirs;		   /* set of directories (relative to root) known to be real dirs */
	struct rh_sink_manifest m; /* path -> {size, sha256, mtime}; its own lock */
};

static bool sftp_path_ok(const char *path)
{
	if (!rh_sink_path_is_safe(path))
		return false;
	return strncmp(path, ".rehydra-sink", 13) != 0 && !strstr(path, SFTP_PART);
}

static bool cancelled(const struct sftp_sink *ss)
{
	return ss->base.cancel && rh_cancel_is_fired(ss->base.cancel);
}

/* ---- the connection pool ----------------------------------------------- */

static int conn_acquire(struct sftp_sink *ss, struct sftp_conn **out)
{
	struct rh_ssh_opts o = RH_SSH_OPTS_INIT;
	struct sftp_conn *c = NULL;
	int err = 0;

	*out = NULL;
	pthread_mutex_lock(&ss->lock);
	if (ss->idle) {
		c = ss->idle;
		ss->idle = c->next;
	} else {
		ss->n_conns++;
	}
	pthread_mutex_unlock(&ss->lock);
	if (c)
		goto got;
	c = calloc(1, sizeof(*c));
	if (!c) {
		err = rh_error_set(RH_ENOMEM, "out of memory connecting to %s", ss->base.url);
		goto done;
	}
	o.user = ss->user;
	o.known_hosts = ss->known_hosts;
	o.identity_file = ss->identity_file;
	o.accept_new_host_key = ss->accept_new_host_key;
	o.cancel = ss->base.cancel;
	err = rh_ssh_connect(&c->ssh, ss->host, ss->port, &o);
	if (err < 0)
		goto done;
got:
	rh_ssh_set_cancel(c->ssh, ss->base.cancel);
	*out = c;
	c = NULL;
done:
	if (c || err < 0) {
		free(c);
		pthread_mutex_lock(&ss->lock);
		ss->n_conns--;
		pthread_mutex_unlock(&ss->lock);
	}
	return err;
}

/* Returns a connection to the pool, or drops it when it is broken (or the
 * caller cannot vouch for its state after a cancel) so the next user
 * reconnects. */
static void conn_release(struct sftp_sink *ss, struct sftp_conn *c, bool drop)
{
	if (!c)
		return;
	if (drop || rh_ssh_broken(c->ssh)) {
		rh_ssh_free(c->ssh);
		free(c);
		pthread_mutex_lock(&ss->lock);
		ss->n_conns--;
		pthread_mutex_unlock(&ss->lock);
		return;
	}
	pthread_mutex_lock(&ss->lock);
	c->next = ss->idle;
	ss->idle = c;
	pthread_mutex_unlock(&ss->lock);
}

/* ---- small SFTP helpers ------------------------------------------------- */

/* Turns a failed SFTP call into a message naming what and where. */
static int sftp_fail(struct sftp_sink *ss, struct rh_ssh *ssh, LIBSSH2_SFTP *sftp, int rc,
		     const char *what, const char *rpath)
{
	unsigned long fx;

	if (rc != LIBSSH2_ERROR_SFTP_PROTOCOL)
		return rh_error_prefix(rh_ssh_error(ssh, rc, what), "sink %s", ss->base.url);
	fx = libssh2_sftp_last_error(sftp);
	switch (fx) {
	case LIBSSH2_FX_PERMISSION_DENIED:
		return rh_error_set(RH_EIO,
				    "permission denied %s %s on %s; check the owner and "
				    "mode of %s there",
				    what, rpath, rh_ssh_name(ssh), ss->root);
	case LIBSSH2_FX_NO_SUCH_FILE:
	case LIBSSH2_FX_NO_SUCH_PATH:
		return rh_error_set(RH_ENOTFOUND, "%s %s on %s: no such file or directory", what,
				    rpath, rh_ssh_name(ssh));
	case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM:
	case LIBSSH2_FX_QUOTA_EXCEEDED:
		return rh_error_set(RH_EIO,
				    "no space left %s %s on %s; free space under %s or "
				    "choose another target",
				    what, rpath, rh_ssh_name(ssh), ss->root);
	case LIBSSH2_FX_FAILURE:
		/* SFTP v3 servers (OpenSSH) report ENOSPC and EDQUOT this way */
		return rh_error_set(RH_EIO,
				    "%s %s on %s failed and the server gave no reason; "
				    "for writes that is usually a full disk or quota under %s: "
				    "free space and sync again",
				    what, rpath, rh_ssh_name(ssh), ss->root);
	default:
		return rh_error_set(RH_EIO, "%s %s on %s failed (sftp status %lu)", what, rpath,
				    rh_ssh_name(ssh), fx);
	}
}

static bool sftp_is_missing(LIBSSH2_SFTP *sftp, int rc)
{
	unsigned long fx;

	if (rc != LIBSSH2_ERROR_SFTP_PROTOCOL)
		return false;
	fx = libssh2_sftp_last_error(sftp);
	return fx == LIBSSH2_FX_NO_SUCH_FILE || fx == LIBSSH2_FX_NO_SUCH_PATH;
}

#define RETRY(ssh, rc, err, call, what)                                                            \
	do {                                                                                       \
		(err) = 0;                                                                         \
		while (((rc) = (call)) == LIBSSH2_ERROR_EAGAIN) {                                  \
			(err) = rh_ssh_wait((ssh), 0, (what));                                     \
			if ((err) < 0)                                                             \
				break;                                                             \
		}                                                                                  \
	} while (0)

/* lstat (or stat when `follow`). *exists false when missing. */
static int rstat(struct sftp_sink *ss, struct rh_ssh *ssh, LIBSSH2_SFTP *sftp, const char *rpath,
		 bool follow, LIBSSH2_SFTP_ATTRIBUTES *attrs, bool *exists)
{
	int err;
	int rc;

	*exists = false;
	RETRY(ssh, rc, err,
	      libssh2_sftp_stat_ex(sftp, rpath, (unsigned)strlen(rpath),
				   follow ? LIBSSH2_SFTP_STAT : LIBSSH2_SFTP_LSTAT, attrs),
	      "inspecting a file");
	if (err < 0)
		return err;
	if (rc == 0) {
		*exists = true;
		return 0;
	}
	if (sftp_is_missing(sftp, rc))
		return 0;
	return sftp_fail(ss, ssh, sftp, rc, "inspecting", rpath);
}

static bool attrs_is_dir(const LIBSSH2_SFTP_ATTRIBUTES *a)
{
	return (a->flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) && LIBSSH2_SFTP_S_ISDIR(a->permissions);
}

static bool attrs_is_reg(const LIBSSH2_SFTP_ATTRIBUTES *a)
{
	return (a->flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) && LIBSSH2_SFTP_S_ISREG(a->permissions);
}

/* Makes sure `rpath` is a directory, creating it if missing. Symlinks are
 * refused when !follow (inside the sink's tree, a planted link could send
 * writes elsewhere). */
static int rmkdir(struct sftp_sink *ss, struct rh_ssh *ssh, LIBSSH2_SFTP *sftp, const char *rpath,
		  bool follow)
{
	LIBSSH2_SFTP_ATTRIBUTES a;
	bool exists;
	int err;
	int rc;

	err = rstat(ss, ssh, sftp, rpath, follow, &a, &exists);
	if (err < 0 || (exists && attrs_is_dir(&a)))
		return err;
	if (exists)
		return rh_error_set(RH_EINVAL,
				    "refusing to write under %s on %s: it is a %s, "
				    "not a directory",
				    rpath, rh_ssh_name(ssh),
				    (a.flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) &&
					    LIBSSH2_SFTP_S_ISLNK(a.permissions)
					? "symlink"
					: "file");
	RETRY(ssh, rc, err,
	      libssh2_sftp_mkdir_ex(sftp, rpath, (unsigned)strlen(rpath), SFTP_DIR_MODE),
	      "creating a directory");
	if (err < 0)
		return err;
	if (rc == 0)
		return 0;
	/* Another put may have created it meanwhile. */
	err = rstat(ss, ssh, sftp, rpath, follow, &a, &exists);
	if (err == 0 && exists && attrs_is_dir(&a))
		return 0;
	return sftp_fail(ss, ssh, sftp, rc, "creating directory", rpath);
}

static char *rjoin(const char *root, const char *path)
{
	char *p = NULL;

	if (asprintf(&p, "%s%s%s", root, strcmp(root, "/") == 0 ? "" : "/", path) < 0)
		return NULL;
	return p;
}

/* mkdir -p of the directories of manifest path `path` under the root. */
static int ensure_parents(struct sftp_sink *ss, struct rh_ssh *ssh, LIBSSH2_SFTP *sftp,
			  const char *path)
{
	char *rel = strdup(path);
	char *rp = NULL;
	char *slash;
	bool known;
	int err = 0;

	if (!rel)
		return rh_error_set(RH_ENOMEM, "out of memory");
	for (slash = strchr(rel, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		pthread_mutex_lock(&ss->lock);
		known = json_object_get(ss->dirs, rel) != NULL;
		pthread_mutex_unlock(&ss->lock);
		if (!known) {
			free(rp);
			rp = rjoin(ss->root, rel);
			if (!rp) {
				err = rh_error_set(RH_ENOMEM, "out of memory");
				goto done;
			}
			err = rmkdir(ss, ssh, sftp, rp, false);
			if (err < 0)
				goto done;
			pthread_mutex_lock(&ss->lock);
			json_object_set_new(ss->dirs, rel, json_true());
			pthread_mutex_unlock(&ss->lock);
		}
		*slash = '/';
	}
done:
	free(rp);
	free(rel);
	return err;
}

static int ropen(struct sftp_sink *ss, struct rh_ssh *ssh, LIBSSH2_SFTP *sftp, const char *rpath,
		 unsigned long flags, LIBSSH2_SFTP_HANDLE **out, const char *what)
{
	LIBSSH2_SESSION *session = rh_ssh_session(ssh);
	int err = 0;

	for (;;) {
		*out = libssh2_sftp_open_ex(sftp, rpath, (unsigned)strlen(rpath), flags,
					    SFTP_FILE_MODE, LIBSSH2_SFTP_OPENFILE);
		if (*out)
			return 0;
		if (libssh2_session_last_errno(session) != LIBSSH2_ERROR_EAGAIN)
			break;
		err = rh_ssh_wait(ssh, 0, what);
		if (err < 0)
			return err;
	}
	return sftp_fail(ss, ssh, sftp, libssh2_session_last_errno(session), what, rpath);
}

/* Closes a handle; on a healthy connection a failed close is reported (a
 * server may only learn at close that the data did not fit). */
static int rclose(struct sftp_sink *ss, struct rh_ssh *ssh, LIBSSH2_SFTP *sftp,
		  LIBSSH2_SFTP_HANDLE *h, const char *rpath)
{
	int err;
	int rc;

	if (!h)
		return 0;
	if (rh_ssh_broken(ssh)) {
		/* libssh2 frees the handle even when it cannot tell the server */
		libssh2_sftp_close_handle(h);
		return 0;
	}
	RETRY(ssh, rc, err, libssh2_sftp_close_handle(h), "closing a file");
	if (err < 0)
		return err;
	if (rc != 0)
		return sftp_fail(ss, ssh, sftp, rc, "closing", rpath);
	return 0;
}

/* After a failure (a cancel included) the handle must still be closed, or
 * libssh2 keeps it forever: close it ignoring the cancel token, briefly,
 * and leave the first failure's message in place. False if the close did
 * not complete: the connection's SFTP state is then unknown. */
static bool rclose_after_failure(struct rh_ssh *ssh, LIBSSH2_SFTP_HANDLE *h,
				 struct rh_cancel *cancel)
{
	char *msg = strdup(rh_error_last());
	double deadline = rh_clock_mono() + 3.0;
	bool ok = false;
	int rc;

	rh_ssh_set_cancel(ssh, NULL);
	if (rh_ssh_broken(ssh)) {
		libssh2_sftp_close_handle(h);
	} else {
		while ((rc = libssh2_sftp_close_handle(h)) == LIBSSH2_ERROR_EAGAIN)
			if (rh_ssh_wait(ssh, deadline, "closing a file") < 0)
				break;
		ok = rc != LIBSSH2_ERROR_EAGAIN;
	}
	rh_ssh_set_cancel(ssh, cancel);
	if (msg)
		rh_error_set(RH_ERROR, "%s", msg);
	free(msg);
	return ok;
}

static int runlink(struct sftp_sink *ss, struct rh_ssh *ssh, LIBSSH2_SFTP *sftp, const char *rpath)
{
	int err;
	int rc;

	RETRY(ssh, rc, err, libssh2_sftp_unlink_ex(sftp, rpath, (unsigned)strlen(rpath)),
	      "removing a file");
	if (err < 0)
		return err;
	if (rc != 0 && !sftp_is_missing(sftp, rc))
		return sftp_fail(ss, ssh, sftp, rc, "removing", rpath);
	return 0;
}

/* Reads up to `len` bytes at `off`; *got the count (short at EOF). */
static int rread_at(struct rh_ssh *ssh, LIBSSH2_SFTP_HANDLE *h, uint64_t off, uint8_t *buf,
		    size_t len, size_t *got, const char *what)
{
	ssize_t n;
	int err;

	*got = 0;
	libssh2_sftp_seek64(h, off);
	while (*got < len) {
		n = libssh2_sftp_read(h, (char *)buf + *got, len - *got);
		if (n == LIBSSH2_ERROR_EAGAIN) {
			err = rh_ssh_wait(ssh, 0, what);
			if (err < 0)
				return err;
			continue;
		}
		if (n < 0)
			return rh_ssh_error(ssh, (int)n, what);
		if (n == 0)
			break;
		*got += (size_t)n;
	}
	return 0;
}

/* Writes all of buf through libssh2's pipeline (small files: no overlap). */
static int rwrite_all(struct sftp_sink *ss, struct rh_ssh *ssh, LIBSSH2_SFTP *sftp,
		      LIBSSH2_SFTP_HANDLE *h, const uint8_t *buf, size_t len, const char *rpath)
{
	ssize_t n;
	int err;

	while (len > 0) {
		n = libssh2_sftp_write(h, (const char *)buf, len);
		if (n == LIBSSH2_ERROR_EAGAIN || n == 0) {
			err = rh_ssh_wait(ssh, 0, "writing a file");
			if (err < 0)
				return err;
			continue;
		}
		if (n < 0)
			return sftp_fail(ss, ssh, sftp, (int)n, "writing", rpath);
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- put ----------------------------------------------------------------- */

struct put_ctx {
	struct sftp_sink *ss;
	const char *path;
	const struct rh_source *src;
	uint64_t size;
	struct rh_sha256 hash;
	uint64_t read_off; /* source bytes read and hashed */
	uint8_t *cur;	   /* being sent */
	size_t cur_len;
	size_t cur_sent;
	uint8_t *next; /* being filled */
	size_t next_len;
};

/* Reads and hashes up to `max` more bytes of the source into `next`. */
static int put_fill(struct put_ctx *p, size_t max)
{
	size_t room = SFTP_BUF - p->next_len;
	uint64_t left = p->size - p->read_off;
	long n;

	if (room > max)
		room = max;
	if ((uint64_t)room > left)
		room = (size_t)left;
	while (room > 0) {
		n = p->src->read_at(p->src->user, p->read_off, p->next + p->next_len, room);
		if (n < 0)
			return rh_error_prefix((int)n, "reading %s for sink %s", p->path,
					       p->ss->base.url);
		if (n == 0 || (size_t)n > room)
			return rh_error_set(RH_EVERIFY,
					    "%s ended after %llu of the %llu bytes the "
					    "manifest says",
					    p->src->name ? p->src->name : p->path,
					    (unsigned long long)p->read_off,
					    (unsigned long long)p->size);
		rh_sha256_update(&p->hash, p->next + p->next_len, (size_t)n);
		p->next_len += (size_t)n;
		p->read_off += (uint64_t)n;
		room -= (size_t)n;
	}
	return 0;
}

/* Hashes the source's first `len` bytes (what a partial already holds). */
static int put_hash_prefix(struct put_ctx *p, uint64_t len)
{
	int err = 0;

	while (p->read_off < len) {
		size_t want = SFTP_BUF;

		if (cancelled(p->ss))
			return rh_error_set(RH_ECANCELLED, "cancelled while resuming %s to sink %s",
					    p->path, p->ss->base.url);
		if ((uint64_t)want > len - p->read_off)
			want = (size_t)(len - p->read_off);
		p->next_len = 0;
		err = put_fill(p, want);
		if (err < 0)
			return err;
	}
	p->next_len = 0;
	return 0;
}

/* Checks that the partial's last bytes are the source's bytes there. */
static int put_tail_matches(struct put_ctx *p, struct rh_ssh *ssh, LIBSSH2_SFTP *sftp,
			    const char *part, uint64_t have, bool *ok)
{
	size_t len = have < SFTP_TAIL_CHECK ? (size_t)have : SFTP_TAIL_CHECK;
	uint64_t off = have - len;
	LIBSSH2_SFTP_HANDLE *h = NULL;
	size_t got = 0;
	long n;
	int err;

	*ok = false;
	err = ropen(p->ss, ssh, sftp, part, LIBSSH2_FXF_READ, &h, "reading back");
	if (err < 0)
		goto done;
	err = rread_at(ssh, h, off, p->cur, len, &got, "reading back a partial file");
	if (err < 0)
		goto done;
	if (got != len)
		goto done;
	n = p->src->read_at(p->src->user, off, p->next, len);
	if (n < 0) {
		err = rh_error_prefix((int)n, "reading %s for sink %s", p->path, p->ss->base.url);
		goto done;
	}
	*ok = (size_t)n == len && memcmp(p->cur, p->next, len) == 0;
done:
	if (h) {
		int cerr = rclose(p->ss, ssh, sftp, h, part);

		if (err == 0)
			err = cerr;
	}
	return err;
}

/* Sends the source from p->read_off to the end. libssh2 gets a whole
 * buffer at a time; while it waits for the server we fill the next one. */
static int put_stream(struct put_ctx *p, struct rh_ssh *ssh, LIBSSH2_SFTP *sftp,
		      LIBSSH2_SFTP_HANDLE *h, const char *part, struct rh_put_stats *stats)
{
	struct sftp_sink *ss = p->ss;
	uint8_t *t;
	ssize_t n;
	int err = 0;

	p->next_len = 0;
	err = put_fill(p, SFTP_BUF);
	if (err < 0)
		return err;
	for (;;) {
		/* the buffer being filled becomes the one being sent */
		t = p->cur;
		p->cur = p->next;
		p->cur_len = p->next_len;
		p->cur_sent = 0;
		p->next = t;
		p->next_len = 0;
		if (p->cur_len == 0)
			break;
		while (p->cur_sent < p->cur_len) {
			if (cancelled(ss))
				return rh_error_set(RH_ECANCELLED,
						    "cancelled while writing %s to "
						    "sink %s",
						    p->path, ss->base.url);
			n = libssh2_sftp_write(h, (const char *)p->cur + p->cur_sent,
					       p->cur_len - p->cur_sent);
			if (n > 0) {
				p->cur_sent += (size_t)n;
				stats->bytes_sent += (uint64_t)n;
				if (ss->base.progress)
					ss->base.progress(ss->base.progress_user, (uint64_t)n);
				continue;
			}
			if (n < 0 && n != LIBSSH2_ERROR_EAGAIN) {
				if (n == LIBSSH2_ERROR_SFTP_PROTOCOL &&
				    libssh2_sftp_last_error(sftp) == LIBSSH2_FX_FAILURE)
					return rh_error_set(RH_EIO,
							    "cannot write %s on %s: the "
							    "server refused (the disk under %s "
							    "is probably full or over quota); "
							    "free space and sync again",
							    part, rh_ssh_name(ssh), ss->root);
				return sftp_fail(ss, ssh, sftp, (int)n, "writing", part);
			}
			/* The server is busy with what we sent: use the time. */
			if (p->next_len < SFTP_BUF && p->read_off < p->size) {
				err = put_fill(p, SFTP_SLICE);
				if (err < 0)
					return err;
				continue;
			}
			err = rh_ssh_wait(ssh, 0, "writing a file");
			if (err < 0)
				return err;
		}
		err = put_fill(p, SFTP_BUF);
		if (err < 0)
			return err;
	}
	return 0;
}

static int sftp_record(struct sftp_sink *ss, const char *path, uint64_t size, const char *sha256,
		       const LIBSSH2_SFTP_ATTRIBUTES *a)
{
	json_t *extra = NULL;

	if (a->flags & LIBSSH2_SFTP_ATTR_ACMODTIME) {
		extra = json_pack("{s:I}", "mtime", (json_int_t)a->mtime);
		if (!extra)
			return rh_error_set(RH_ENOMEM, "out of memory recording %s in sink %s",
					    path, ss->base.url);
	}
	return rh_sink_manifest_set(&ss->m, path, size, sha256, extra, ss->base.url);
}

static void sftp_forget(struct sftp_sink *ss, const char *path)
{
	rh_sink_manifest_forget(&ss->m, path);
}

static int sftp_put(struct rh_sink *s, const char *path, uint64_t size, const char *sha256,
		    const struct rh_source *src, struct rh_put_stats *stats)
{
	struct sftp_sink *ss = (struct sftp_sink *)s;
	struct put_ctx p;
	struct sftp_conn *c = NULL;
	LIBSSH2_SFTP *sftp = NULL;
	LIBSSH2_SFTP_HANDLE *h = NULL;
	LIBSSH2_SFTP_ATTRIBUTES a;
	struct rh_put_stats st = {0, 0};
	char *final = NULL;
	char *part = NULL;
	uint8_t digest[32];
	char hex[65];
	uint64_t have = 0;
	bool exists = false;
	bool keep_part = true;
	bool ok;
	int err = 0;
	int rc;

	memset(&p, 0, sizeof(p));
	if (!sftp_path_ok(path)) {
		err = rh_error_set(RH_EINVAL, "refusing unsafe path \"%s\" for sink %s", path,
				   s->url);
		goto done;
	}
	if (!rh_hex_is_sha256(sha256)) {
		err = rh_error_set(RH_EINVAL, "bad sha256 \"%s\" for %s in sink %s", sha256, path,
				   s->url);
		goto done;
	}
	if (!src || src->size != size) {
		err = rh_error_set(RH_EVERIFY,
				   "%s has %llu bytes but the manifest says %llu; "
				   "verify the registry",
				   src && src->name ? src->name : path,
				   src ? (unsigned long long)src->size : 0ULL,
				   (unsigned long long)size);
		goto done;
	}
	if (cancelled(ss)) {
		err = rh_error_set(RH_ECANCELLED, "cancelled before writing %s to sink %s", path,
				   s->url);
		goto done;
	}
	final = rjoin(ss->root, path);
	if (!final || asprintf(&part, "%s%s%.16s", final, SFTP_PART, sha256) < 0) {
		part = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory writing %s to sink %s", path, s->url);
		goto done;
	}
	p.ss = ss;
	p.path = path;
	p.src = src;
	p.size = size;
	p.cur = malloc(SFTP_BUF);
	p.next = malloc(SFTP_BUF);
	if (!p.cur || !p.next) {
		err = rh_error_set(RH_ENOMEM, "out of memory writing %s to sink %s", path, s->url);
		goto done;
	}
	err = rh_sha256_init(&p.hash);
	if (err < 0)
		goto done;
	err = conn_acquire(ss, &c);
	if (err < 0)
		goto done;
	err = rh_ssh_sftp(&sftp, c->ssh);
	if (err < 0)
		goto done;
	err = ensure_parents(ss, c->ssh, sftp, path);
	if (err < 0)
		goto done;
	sftp_forget(ss, path); /* whatever happens next, the old entry no longer holds */
	err = rstat(ss, c->ssh, sftp, part, false, &a, &exists);
	if (err < 0)
		goto done;
	if (exists && attrs_is_reg(&a) && (a.flags & LIBSSH2_SFTP_ATTR_SIZE) &&
	    a.filesize <= size && a.filesize > 0) {
		err = put_tail_matches(&p, c->ssh, sftp, part, a.filesize, &ok);
		if (err < 0)
			goto done;
		if (ok)
			have = a.filesize;
	} else if (exists && !attrs_is_reg(&a)) {
		err = rh_error_set(RH_EINVAL,
				   "refusing to write %s on %s: it exists and is not a "
				   "regular file",
				   part, rh_ssh_name(c->ssh));
		keep_part = true;
		goto done;
	}
	if (have > 0) {
		err = put_hash_prefix(&p, have);
		if (err < 0)
			goto done;
	}
	err = ropen(ss, c->ssh, sftp, part,
		    LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | (have ? 0 : LIBSSH2_FXF_TRUNC), &h,
		    "creating");
	if (err < 0)
		goto done;
	libssh2_sftp_seek64(h, have);
	st.bytes_resumed = have;
	err = put_stream(&p, c->ssh, sftp, h, part, &st);
	if (err < 0) {
		/* A refusal by the server (full disk, permissions) will not get
		 * better by resuming; a lost link or a cancel will. */
		keep_part = rh_ssh_broken(c->ssh) || err == RH_ECANCELLED || err == RH_ETIMEOUT;
		goto done;
	}
	rh_sha256_final(&p.hash, digest);
	rh_sha256_hex(hex, digest);
	if (strcmp(hex, sha256) != 0) {
		keep_part = false;
		err =
		    rh_error_set(RH_EVERIFY,
				 "sha256 mismatch for %s (from %s) in sink %s: the "
				 "manifest says %s, the bytes hash to %s; nothing was written "
				 "under its name",
				 path, src->name ? src->name : "the registry", s->url, sha256, hex);
		goto done;
	}
	if (rh_ssh_sftp_has_ext(c->ssh, "fsync@openssh.com")) {
		RETRY(c->ssh, rc, err, libssh2_sftp_fsync(h), "flushing a file");
		if (err < 0)
			goto done;
		if (rc != 0) {
			err = sftp_fail(ss, c->ssh, sftp, rc, "flushing", part);
			goto done;
		}
	}
	RETRY(c->ssh, rc, err, libssh2_sftp_fstat_ex(h, &a, 0), "inspecting a file");
	if (err < 0)
		goto done;
	if (rc != 0) {
		err = sftp_fail(ss, c->ssh, sftp, rc, "inspecting", part);
		goto done;
	}
	if (!(a.flags & LIBSSH2_SFTP_ATTR_SIZE) || a.filesize != size) {
		keep_part = false;
		err = rh_error_set(RH_EVERIFY,
				   "%s on %s has %llu bytes after writing, expected "
				   "%llu; nothing was written under its final name",
				   part, rh_ssh_name(c->ssh), (unsigned long long)a.filesize,
				   (unsigned long long)size);
		goto done;
	}
	err = rclose(ss, c->ssh, sftp, h, part);
	h = NULL;
	if (err < 0)
		goto done;
	err = rh_ssh_sftp_rename(c->ssh, part, final);
	if (err < 0)
		goto done;
	keep_part = false;
	err = rstat(ss, c->ssh, sftp, final, false, &a, &exists);
	if (err < 0)
		goto done;
	err = sftp_record(ss, path, size, sha256, &a);
done:
	if (c) {
		/* after a cancel or a timeout, requests may still be in flight */
		bool reusable = err != RH_ECANCELLED && err != RH_ETIMEOUT;

		if (h && !rclose_after_failure(c->ssh, h, ss->base.cancel))
			reusable = false;
		if (!keep_part && part && sftp && !rh_ssh_broken(c->ssh)) {
			char *msg = strdup(rh_error_last());

			runlink(ss, c->ssh, sftp, part);
			if (msg)
				rh_error_set(err, "%s", msg); /* keep the first failure's words */
			free(msg);
		}
		conn_release(ss, c, !reusable);
	}
	if (stats) {
		stats->bytes_sent = st.bytes_sent;
		stats->bytes_resumed = st.bytes_resumed;
	}
	rh_sha256_free(&p.hash);
	free(p.cur);
	free(p.next);
	free(final);
	free(part);
	return err;
}

/* ---- has, state, commit --------------------------------------------------- */

static int sftp_has(struct rh_sink *s, const char *path, uint64_t size, const char *sha256,
		    bool *present)
{
	struct sftp_sink *ss = (struct sftp_sink *)s;
	struct sftp_conn *c = NULL;
	LIBSSH2_SFTP *sftp = NULL;
	LIBSSH2_SFTP_ATTRIBUTES a;
	const json_t *e;
	json_t *mt;
	char *final = NULL;
	bool exists = false;
	int err = 0;

	*present = false;
	if (!sftp_path_ok(path)) {
		err = rh_error_set(RH_EINVAL, "unsafe path \"%s\" for sink %s", path, s->url);
		goto done;
	}
	e = rh_sink_manifest_match(&ss->m, path, size, sha256);
	if (!e)
		goto done;
	final = rjoin(ss->root, path);
	if (!final) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	err = conn_acquire(ss, &c);
	if (err < 0)
		goto done;
	err = rh_ssh_sftp(&sftp, c->ssh);
	if (err < 0)
		goto done;
	err = rstat(ss, c->ssh, sftp, final, false, &a, &exists);
	if (err < 0 || !exists)
		goto done;
	mt = json_object_get(e, "mtime");
	*present = attrs_is_reg(&a) && (a.flags & LIBSSH2_SFTP_ATTR_SIZE) && a.filesize == size &&
		   (!json_is_integer(mt) || ((a.flags & LIBSSH2_SFTP_ATTR_ACMODTIME) &&
					     (json_int_t)a.mtime == json_integer_value(mt)));
done:
	conn_release(ss, c, err == RH_ECANCELLED || err == RH_ETIMEOUT);
	free(final);
	return err;
}

static int state_load(struct sftp_sink *ss, struct rh_ssh *ssh, LIBSSH2_SFTP *sftp)
{
	LIBSSH2_SFTP_HANDLE *h = NULL;
	LIBSSH2_SFTP_ATTRIBUTES a;
	json_error_t jerr;
	json_t *doc = NULL;
	uint8_t *buf = NULL;
	char *rpath = rjoin(ss->root, SFTP_STATE);
	size_t got = 0;
	bool exists = false;
	int err = 0;

	if (!rpath) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	err = rstat(ss, ssh, sftp, rpath, false, &a, &exists);
	if (err < 0 || !exists || !attrs_is_reg(&a) || a.filesize > SFTP_STATE_MAX)
		goto done; /* no state (or a damaged one) only costs re-sending */
	buf = malloc((size_t)a.filesize + 1);
	if (!buf) {
		err =
		    rh_error_set(RH_ENOMEM, "out of memory reading the state of %s", ss->base.url);
		goto done;
	}
	err = ropen(ss, ssh, sftp, rpath, LIBSSH2_FXF_READ, &h, "reading");
	if (err < 0)
		goto done;
	err = rread_at(ssh, h, 0, buf, (size_t)a.filesize, &got, "reading the sink state");
	if (err < 0)
		goto done;
	doc = json_loadb((const char *)buf, got, JSON_REJECT_DUPLICATES, &jerr);
	rh_sink_manifest_adopt(&ss->m, doc);
done:
	if (h) {
		int cerr = rclose(ss, ssh, sftp, h, rpath);

		if (err == 0)
			err = cerr;
	}
	json_decref(doc);
	free(buf);
	free(rpath);
	return err;
}

static int sftp_commit(struct rh_sink *s)
{
	struct sftp_sink *ss = (struct sftp_sink *)s;
	struct sftp_conn *c = NULL;
	LIBSSH2_SFTP *sftp = NULL;
	LIBSSH2_SFTP_HANDLE *h = NULL;
	char *text = NULL;
	char *tmp = NULL;
	char *final = NULL;
	char rnd[17];
	bool have_tmp = false;
	int err = 0;
	int rc;

	if (!ss->m.dirty)
		goto done;
	if (rh_sink_manifest_text(&ss->m, &text, s->url) < 0)
		text = NULL;
	rh_fs_rand_hex(rnd);
	final = rjoin(ss->root, SFTP_STATE);
	if (!text || !final || asprintf(&tmp, "%s.tmp-%s", final, rnd) < 0) {
		tmp = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory writing the state of sink %s", s->url);
		goto done;
	}
	err = conn_acquire(ss, &c);
	if (err < 0)
		goto done;
	err = rh_ssh_sftp(&sftp, c->ssh);
	if (err < 0)
		goto done;
	err = ropen(ss, c->ssh, sftp, tmp, LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_EXCL,
		    &h, "creating");
	if (err < 0)
		goto done;
	have_tmp = true;
	err = rwrite_all(ss, c->ssh, sftp, h, (const uint8_t *)text, strlen(text), tmp);
	if (err < 0)
		goto done;
	if (rh_ssh_sftp_has_ext(c->ssh, "fsync@openssh.com")) {
		RETRY(c->ssh, rc, err, libssh2_sftp_fsync(h), "flushing the sink state");
		if (err < 0)
			goto done;
	}
	err = rclose(ss, c->ssh, sftp, h, tmp);
	h = NULL;
	if (err < 0)
		goto done;
	err = rh_ssh_sftp_rename(c->ssh, tmp, final);
	if (err < 0) {
		rh_error_prefix(err, "cannot record the state of sink %s", s->url);
		goto done;
	}
	have_tmp = false;
	rh_sink_manifest_saved(&ss->m);
done:
	if (c) {
		bool reusable = err != RH_ECANCELLED && err != RH_ETIMEOUT;

		if (h && !rclose_after_failure(c->ssh, h, ss->base.cancel))
			reusable = false;
		if (have_tmp && !rh_ssh_broken(c->ssh)) {
			char *msg = strdup(rh_error_last());

			runlink(ss, c->ssh, sftp, tmp);
			if (msg)
				rh_error_set(err, "%s", msg);
			free(msg);
		}
		conn_release(ss, c, !reusable);
	}
	free(text);
	free(tmp);
	free(final);
	return err;
}

static void sftp_close(struct rh_sink *s)
{
	struct sftp_sink *ss = (struct sftp_sink *)s;
	struct sftp_conn *c;

	while ((c = ss->idle) != NULL) {
		ss->idle = c->next;
		rh_ssh_free(c->ssh);
		free(c);
	}
	pthread_mutex_destroy(&ss->lock);
	rh_sink_manifest_release(&ss->m);
	json_decref(ss->dirs);
	free(ss->host);
	free(ss->user);
	free(ss->root);
	free(ss->known_hosts);
	free(ss->identity_file);
	free(s->url);
	free(s->location);
	free(ss);
}

static const struct rh_sink_ops sftp_sink_ops = {
    .version = RH_SINK_OPS_VERSION,
    .scheme = "sftp",
    .max_parallel = SFTP_DEFAULT_PARALLEL,
    .has = sftp_has,
    .put = sftp_put,
    .commit = sftp_commit,
    .close = sftp_close,
};

/* ---- open ---------------------------------------------------------------- */

/* Percent-decodes [s, s+n) into a new string; NULL for control characters
 * and NUL (raw or encoded) or when out of memory. */
static char *pct_decode(const char *s, size_t n)
{
	char *out = NULL;

	rh_url_decode(&out, s, n, RH_URL_KEEP_BAD_ESCAPES | RH_URL_NO_CONTROL);
	return out;
}

/* sftp://[user@]host[:port]/path; "[v6]" hosts; "/~/rel" is relative to the
 * login directory. */
static int parse_url(struct sftp_sink *ss, const char *url)
{
	const char *a;
	const char *slash;
	const char *at;
	const char *hs;
	const char *he;
	const char *pc = NULL;
	char *path = NULL;
	int err = 0;

	if (strncmp(url, "sftp://", 7) != 0)
		return rh_error_set(RH_EINVAL, "not an sftp URL: %s", url);
	a = url + 7;
	slash = strchr(a, '/');
	if (!slash || slash[1] == '\0')
		return rh_error_set(RH_EINVAL,
				    "sftp URL %s has no directory; write "
				    "sftp://user@host:port/abs/dir or sftp://user@host/~/dir",
				    url);
	at = memchr(a, '@', (size_t)(slash - a));
	if (at) {
		if (memchr(a, ':', (size_t)(at - a)))
			return rh_error_set(RH_EINVAL,
					    "sftp URL for %.*s carries a password; "
					    "rehydra logs in with keys (ssh-agent or an identity "
					    "file) only",
					    (int)(slash - at - 1), at + 1);
		ss->user = pct_decode(a, (size_t)(at - a));
		if (!ss->user || !*ss->user)
			return rh_error_set(RH_EINVAL, "bad user name in sftp URL %s", url);
		hs = at + 1;
	} else {
		hs = a;
	}
	if (*hs == '[') {
		he = memchr(hs, ']', (size_t)(slash - hs));
		if (!he)
			return rh_error_set(RH_EINVAL, "unclosed [ in sftp URL %s", url);
		ss->host = strndup(hs + 1, (size_t)(he - hs - 1));
		if (he + 1 < slash && he[1] == ':')
			pc = he + 2;
		else if (he + 1 != slash)
			return rh_error_set(RH_EINVAL, "bad host in sftp URL %s", url);
	} else {
		he = memchr(hs, ':', (size_t)(slash - hs));
		if (he)
			pc = he + 1;
		else
			he = slash;
		ss->host = strndup(hs, (size_t)(he - hs));
	}
	if (!ss->host || !*ss->host ||
	    strspn(ss->host, "abcdefghijklmnopqrstuvwxyz"
			     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:%") != strlen(ss->host))
		return rh_error_set(RH_EINVAL, "bad host in sftp URL %s", url);
	ss->port = 22;
	if (pc) {
		char *end = NULL;
		long v;

		if (pc == slash)
			return rh_error_set(RH_EINVAL, "empty port in sftp URL %s", url);
		v = strtol(pc, &end, 10);
		if (end != slash || v < 1 || v > 65535)
			return rh_error_set(RH_EINVAL, "bad port in sftp URL %s", url);
		ss->port = (unsigned)v;
	}
	path = pct_decode(slash, strlen(slash));
	if (!path)
		return rh_error_set(RH_EINVAL, "bad path in sftp URL %s", url);
	if (strcmp(path, "/~") == 0 || strncmp(path, "/~/", 3) == 0) {
		ss->root = strdup(path[2] ? path + 3 : ".");
		if (ss->root && !*ss->root) {
			free(ss->root);
			ss->root = strdup(".");
		}
	} else {
		ss->root = strdup(path);
	}
	if (!ss->root)
		err = rh_error_set(RH_ENOMEM, "out of memory");
	/* trailing slashes only make joins uglier */
	while (!err && strlen(ss->root) > 1 && ss->root[strlen(ss->root) - 1] == '/')
		ss->root[strlen(ss->root) - 1] = '\0';
	free(path);
	return err;
}

/* mkdir -p of the root (following symlinks: the user chose that path),
 * then its absolute form for ${model.path}. */
static int open_root(struct sftp_sink *ss, struct rh_ssh *ssh, LIBSSH2_SFTP *sftp)
{
	char *walk = strdup(ss->root);
	char abs[4096];
	int err = 0;
	int rc;

	if (!walk)
		return rh_error_set(RH_ENOMEM, "out of memory");
	for (char *p = walk + 1; !err; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char ch = *p;

		*p = '\0';
		err = rmkdir(ss, ssh, sftp, walk, true);
		*p = ch;
		if (ch == '\0')
			break;
	}
	free(walk);
	if (err < 0)
		return err;
	RETRY(ssh, rc, err,
	      libssh2_sftp_symlink_ex(sftp, ss->root, (unsigned)strlen(ss->root), abs,
				      sizeof(abs) - 1, LIBSSH2_SFTP_REALPATH),
	      "resolving the target directory");
	if (err < 0)
		return err;
	if (rc <= 0)
		return sftp_fail(ss, ssh, sftp, rc, "resolving", ss->root);
	abs[rc] = '\0';
	free(ss->root);
	ss->root = strdup(abs);
	if (!ss->root)
		return rh_error_set(RH_ENOMEM, "out of memory");
	return 0;
}

static unsigned sftp_default_parallel(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 2)
		return 2;
	return n > SFTP_MAX_PARALLEL ? SFTP_MAX_PARALLEL : (unsigned)n;
}

int rh_sink_sftp_open(struct rh_sink **out, const char *url, const struct rh_sink_opts *opts)
{
	static const struct rh_sink_opts defaults = RH_SINK_OPTS_INIT;
	struct sftp_sink *ss = NULL;
	struct sftp_conn *c = NULL;
	LIBSSH2_SFTP *sftp = NULL;
	unsigned parallel;
	int err = 0;

	*out = NULL;
	if (!opts)
		opts = &defaults;
	ss = calloc(1, sizeof(*ss));
	if (!ss) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening sink %s", url);
		goto done;
	}
	pthread_mutex_init(&ss->lock, NULL);
	ss->ops = sftp_sink_ops;
	ss->base.ops = &ss->ops;
	parallel = opts->parallel ? opts->parallel : sftp_default_parallel();
	ss->ops.max_parallel = parallel > SFTP_MAX_PARALLEL ? SFTP_MAX_PARALLEL : parallel;
	ss->dirs = json_object();
	if (rh_sink_manifest_init(&ss->m) < 0 || !ss->dirs) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening sink %s", url);
		goto done;
	}
	err = parse_url(ss, url ? url : "");
	if (err < 0)
		goto done;
	ss->accept_new_host_key = opts->accept_new_host_key;
	if ((opts->known_hosts && !(ss->known_hosts = strdup(opts->known_hosts))) ||
	    (opts->identity_file && !(ss->identity_file = strdup(opts->identity_file)))) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening sink %s", url);
		goto done;
	}
	err = conn_acquire(ss, &c);
	if (err < 0)
		goto done;
	if (asprintf(&ss->base.url, "sftp://%s%s", rh_ssh_name(c->ssh),
		     ss->root[0] == '/' ? ss->root : "/~/") < 0) {
		ss->base.url = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory opening sink %s", url);
		goto done;
	}
	err = rh_ssh_sftp(&sftp, c->ssh);
	if (err < 0)
		goto done;
	err = open_root(ss, c->ssh, sftp);
	if (err < 0)
		goto done;
	free(ss->base.url);
	ss->base.url = NULL;
	if (asprintf(&ss->base.url, "sftp://%s%s", rh_ssh_name(c->ssh), ss->root) < 0 ||
	    !(ss->base.location = strdup(ss->root))) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening sink %s", url);
		goto done;
	}
	err = state_load(ss, c->ssh, sftp);
	if (err < 0)
		goto done;
	*out = &ss->base;
done:
	if (c && ss)
		conn_release(ss, c, false);
	if (err < 0 && ss)
		sftp_close(&ss->base);
	return err;
}
