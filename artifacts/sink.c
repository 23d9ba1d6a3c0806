/*
 * sink.c - what every sink shares: opening one by URL, closing, the path
 * rule, and the two simple sources (a local file, memory).
 *
 * Every sink also keeps the same manifest of what it holds (path -> size,
 * sha256), written three times before this file held it once.
 *
 * Manifest paths come from a registry that may not be ours to trust, and
 * they name files under a sink's root on some target. One function decides
 * which paths are acceptable so that file, SFTP and S3 sinks refuse exactly
 * the same ones. Target URLs come from users and runbooks and may carry a
 * password ("sftp://user:pw@host/"): messages written here never repeat it.
 */
#include "sink.h"
#include "error.h"
#include "fsutil.h"
#include "hex.h"
#include "url.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

#define RH_SINK_PATH_MAX 4096
#define RH_SINK_NAME_MAX 255
#define RH_SINK_URL_SHOWN 512

void rh_sink_close(struct rh_sink *s)
{
	if (s && s->ops && s->ops->close)
		s->ops->close(s);
}

bool rh_sink_path_is_safe(const char *path)
{
	size_t seg = 0;
	const char *start = path;

	if (!path || !*path || strlen(path) > RH_SINK_PATH_MAX || path[0] == '/')
		return false;
	for (const char *c = path;; c++) {
		unsigned char ch = (unsigned char)*c;

		if (ch == '/' || ch == '\0') {
			if (seg == 0 || seg > RH_SINK_NAME_MAX)
				return false; /* empty segment: "a//b", trailing '/' */
			if ((seg == 1 && start[0] == '.') ||
			    (seg == 2 && start[0] == '.' && start[1] == '.'))
				return false;
			if (ch == '\0')
				break;
			seg = 0;
			start = c + 1;
			continue;
		}
		if (ch < 0x20 || ch == 0x7f || ch == '\\')
			return false;
		seg++;
	}
	return true;
}

/* The URL as it may appear in a message: a password in the authority
 * ("user:secret@host") becomes "user:***@host"; control characters are
 * replaced so a hostile URL cannot forge terminal output. */
static void url_shown(char *out, size_t size, const char *url)
{
	const char *auth = strstr(url, "://");
	const char *at = NULL;
	const char *colon = NULL;
	size_t o = 0;

	if (auth) {
		auth += 3;
		for (const char *c = auth; *c && *c != '/' && *c != '?' && *c != '#'; c++) {
			if (*c == '@')
				at = c;
			else if (*c == ':' && !at && !colon)
				colon = c;
		}
	}
	for (const char *c = url; *c && o + 4 < size; c++) {
		if (at && colon && colon < at && c == colon + 1) {
			memcpy(out + o, "***", 3);
			o += 3;
			c = at - 1;
			continue;
		}
		out[o++] = ((unsigned char)*c < 0x20 || *c == 0x7f) ? '?' : *c;
	}
	out[o] = '\0';
}

/* Percent-decodes the path of a file:// URL into a new string; NULL when
 * the URL is malformed (a bad escape or an encoded NUL). */
static char *file_url_path(const char *p)
{
	char *out = NULL;

	rh_url_decode(&out, p, strlen(p), 0);
	return out;
}

int rh_sink_open(struct rh_sink **out, const char *url, const struct rh_sink_opts *opts)
{
	static const struct rh_sink_opts defaults = RH_SINK_OPTS_INIT;
	char shown[RH_SINK_URL_SHOWN];
	char *path = NULL;
	int err = 0;

	*out = NULL;
	if (!opts)
		opts = &defaults;
	if (!url || !*url) {
		err = rh_error_set(RH_EINVAL, "no target URL given (file:///dir, "
					      "sftp://user@host/dir or s3://bucket/prefix)");
		goto done;
	}
	url_shown(shown, sizeof(shown), url);
	if (opts->version != RH_SINK_OPTS_VERSION) {
		err = rh_error_set(RH_EINVAL, "target %s: sink options version %u is not %u", shown,
				   opts->version, RH_SINK_OPTS_VERSION);
		goto done;
	}
	if (url[0] == '/' || strncmp(url, "file://", 7) == 0) {
		const char *p = url[0] == '/' ? url : url + 7;

		if (p[0] != '/') {
			err = rh_error_set(RH_EINVAL,
					   "target %s: a file URL needs an absolute "
					   "path (file:///path/to/dir); a host is not supported",
					   shown);
			goto done;
		}
		path = url[0] == '/' ? strdup(p) : file_url_path(p);
		if (!path) {
			err = rh_error_set(RH_EINVAL,
					   "target %s: malformed file URL (bad %% "
					   "escape)",
					   shown);
			goto done;
		}
		err = rh_sink_file_open(out, path);
	} else if (strncmp(url, "sftp://", 7) == 0) {
		err = rh_sink_sftp_open(out, url, opts);
	} else if (strncmp(url, "s3://", 5) == 0) {
		err = rh_sink_s3_open(out, url, opts);
	} else {
		err = rh_error_set(RH_EINVAL,
				   "target %s: unknown kind of target; use file:///dir, "
				   "sftp://user@host[:port]/dir or s3://bucket/prefix?endpoint=...",
				   shown);
	}
done:
	free(path);
	return err;
}

/* ---- sources ------------------------------------------------------------ */

struct file_source {
	struct rh_source src; /* first: rh_source_file_close casts back */
	int fd;
	char *path;
};

static long file_read_at(void *user, uint64_t offset, void *buf, size_t len)
{
	struct file_source *fsrc = user;
	size_t got = 0;

	if (len > (size_t)LONG_MAX)
		len = (size_t)LONG_MAX;
	while (got < len) {
		ssize_t n = pread(fsrc->fd, (char *)buf + got, len - got, (off_t)(offset + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return rh_error_set_errno(RH_EIO, errno, "cannot read %s", fsrc->path);
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (long)got;
}

static int file_local_fd(void *user)
{
	return ((struct file_source *)user)->fd;
}

int rh_source_file_open(struct rh_source **out, const char *path)
{
	struct file_source *fsrc = NULL;
	struct stat sb;
	int err = 0;

	*out = NULL;
	fsrc = calloc(1, sizeof(*fsrc));
	if (fsrc)
		fsrc->fd = -1;
	if (!fsrc || !(fsrc->path = strdup(path))) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening %s", path);
		goto done;
	}
	fsrc->fd = rh_fs_open_regular(path, 0); /* never blocks on a FIFO */
	if (fsrc->fd < 0) {
		err = fsrc->fd == RH_ENOTFOUND
			  ? rh_error_set(RH_ENOTFOUND, "cannot open %s: no such file", path)
			  : fsrc->fd;
		fsrc->fd = -1;
		goto done;
	}
	if (fstat(fsrc->fd, &sb) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot inspect %s", path);
		goto done;
	}
	if (!S_ISREG(sb.st_mode)) {
		err = rh_error_set(RH_EINVAL, "%s is not a regular file", path);
		goto done;
	}
	fsrc->src.size = (uint64_t)sb.st_size;
	fsrc->src.read_at = file_read_at;
	fsrc->src.local_fd = file_local_fd;
	fsrc->src.user = fsrc;
	fsrc->src.name = fsrc->path;
	*out = &fsrc->src;
	fsrc = NULL;
done:
	if (fsrc)
		rh_source_file_close(&fsrc->src);
	return err;
}

void rh_source_file_close(struct rh_source *src)
{
	struct file_source *fsrc = (struct file_source *)src;

	if (!fsrc)
		return;
	if (fsrc->fd >= 0)
		close(fsrc->fd);
	free(fsrc->path);
	free(fsrc);
}

static long mem_read_at(void *user, uint64_t offset, void *buf, size_t len)
{
	const struct rh_source *src = user;
	uint64_t left;

	if (offset >= src->size)
		return 0;
	left = src->size - offset;
	if (len > left)
		len = (size_t)left;
	if (len > (size_t)LONG_MAX)
		len = (size_t)LONG_MAX;
	memcpy(buf, (const unsigned char *)src->data + offset, len);
	return (long)len;
}

void rh_source_mem_init(struct rh_source *src, const void *data, size_t len, const char *name)
{
	memset(src, 0, sizeof(*src));
	src->size = len;
	src->read_at = mem_read_at;
	src->user = src;
	src->name = name;
	src->data = data;
}

/* ---- the sink manifest -------------------------------------------------- */

int rh_sink_manifest_init(struct rh_sink_manifest *m)
{
	pthread_mutex_init(&m->lock, NULL);
	m->dirty = false;
	m->files = json_object();
	return m->files ? 0 : rh_error_set(RH_ENOMEM, "out of memory opening a sink");
}

void rh_sink_manifest_adopt(struct rh_sink_manifest *m, const json_t *doc)
{
	json_t *files = json_object_get(doc, "files");

	if (json_integer_value(json_object_get(doc, "rehydra_sink")) != 1 || !json_is_object(files))
		return;
	json_decref(m->files);
	m->files = json_incref(files);
}

int rh_sink_manifest_set(struct rh_sink_manifest *m, const char *path, uint64_t size,
			 const char *sha256, json_t *extra, const char *url)
{
	json_t *e = json_pack("{s:I, s:s}", "size", (json_int_t)size, "sha256", sha256);
	int err = 0;

	if (e && extra && json_object_update(e, extra) != 0) {
		json_decref(e);
		e = NULL;
	}
	json_decref(extra);
	pthread_mutex_lock(&m->lock);
	if (!e || json_object_set_new(m->files, path, e) != 0)
		err = rh_error_set(RH_ENOMEM, "out of memory recording %s in sink %s", path, url);
	else
		m->dirty = true;
	pthread_mutex_unlock(&m->lock);
	return err;
}

void rh_sink_manifest_forget(struct rh_sink_manifest *m, const char *path)
{
	pthread_mutex_lock(&m->lock);
	if (json_object_get(m->files, path)) {
		json_object_del(m->files, path);
		m->dirty = true;
	}
	pthread_mutex_unlock(&m->lock);
}

const json_t *rh_sink_manifest_get(const struct rh_sink_manifest *m, const char *path)
{
	json_t *e = json_object_get(m->files, path);

	if (!json_is_object(e) || !json_is_integer(json_object_get(e, "size")) ||
	    !rh_hex_is_sha256(json_string_value(json_object_get(e, "sha256"))))
		return NULL;
	return e;
}

const json_t *rh_sink_manifest_match(const struct rh_sink_manifest *m, const char *path,
				     uint64_t size, const char *sha256)
{
	const json_t *e = rh_sink_manifest_get(m, path);

	if (!e || json_integer_value(json_object_get(e, "size")) != (json_int_t)size ||
	    strcmp(json_string_value(json_object_get(e, "sha256")), sha256) != 0)
		return NULL;
	return e;
}

int rh_sink_manifest_text(const struct rh_sink_manifest *m, char **text, const char *url)
{
	json_t *doc = json_pack("{s:i, s:O}", "rehydra_sink", 1, "files", m->files);

	*text = doc ? json_dumps(doc, JSON_SORT_KEYS | JSON_INDENT(1)) : NULL;
	json_decref(doc);
	return *text
		   ? 0
		   : rh_error_set(RH_ENOMEM, "out of memory writing the manifest of sink %s", url);
}

void rh_sink_manifest_saved(struct rh_sink_manifest *m)
{
	m->dirty = false;
}

void rh_sink_manifest_release(struct rh_sink_manifest *m)
{
	json_decref(m->files);
	m->files = NULL;
	pthread_mutex_destroy(&m->lock);
}
