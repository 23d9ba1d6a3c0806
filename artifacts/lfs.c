/*
 * lfs.c - Git LFS pointer parsing and the local object store.
 *
 * A registry's large files are LFS objects, so every model byte of a real
 * registry passes through here. The pointer parser follows git-lfs's
 * docs/spec.md to the letter (version first, keys sorted, LF only, the
 * three required keys, sizes in plain decimal): a pointer we read loosely
 * could send us a different object than the one the manifest vouches for.
 * Objects are streamed with read(2), never loaded whole.
 */
#include "lfs.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

#define LFS_LEGACY_V1 "https://hawser.github.com/spec/v1"

bool rh_lfs_pointer_detect(const void *data, size_t len)
{
	static const char a[] = "version https://git-lfs.github.com/spec/";
	static const char b[] = "version https://hawser.github.com/spec/";

	if (len >= RH_LFS_POINTER_MAX)
		return false;
	return (len >= sizeof(a) - 1 && memcmp(data, a, sizeof(a) - 1) == 0) ||
	       (len >= sizeof(b) - 1 && memcmp(data, b, sizeof(b) - 1) == 0);
}

static bool key_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

static int parse_size(uint64_t *out, const char *v, size_t n)
{
	uint64_t x = 0;

	/* Plain decimal only: no sign, no leading zeros (except "0"), no spaces. */
	if (n == 0 || n > 19 || (n > 1 && v[0] == '0'))
		return rh_error_set(RH_EINVAL, "size \"%.*s\" is not a plain decimal number",
				    (int)(n > 40 ? 40 : n), v);
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return rh_error_set(RH_EINVAL,
					    "size \"%.*s\" is not a plain decimal number",
					    (int)(n > 40 ? 40 : n), v);
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	if (x > (uint64_t)INT64_MAX)
		return rh_error_set(RH_EINVAL, "size %.*s is too large", (int)n, v);
	*out = x;
	return 0;
}

static int parse_oid(char out[65], const char *v, size_t n)
{
	static const char pfx[] = "sha256:";

	if (n < sizeof(pfx) - 1 || memcmp(v, pfx, sizeof(pfx) - 1) != 0)
		return rh_error_set(RH_EINVAL, "oid \"%.*s\" is not of the form sha256:<hex>",
				    (int)(n > 80 ? 80 : n), v);
	v += sizeof(pfx) - 1;
	n -= sizeof(pfx) - 1;
	if (n != 64)
		return rh_error_set(RH_EINVAL, "oid has %zu hex digits, not 64", n);
	for (size_t i = 0; i < 64; i++)
		if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f')))
			return rh_error_set(RH_EINVAL, "oid \"%.64s\" is not lowercase hex", v);
	memcpy(out, v, 64);
	out[64] = '\0';
	return 0;
}

int rh_lfs_pointer_parse(struct rh_lfs_pointer *out, const void *data, size_t len)
{
	const char *p = data;
	const char *end = p + len;
	const char *prev_key = NULL;
	size_t prev_len = 0;
	bool have_oid = false;
	bool have_size = false;
	unsigned line = 0;
	int err = 0;

	memset(out, 0, sizeof(*out));
	if (len >= RH_LFS_POINTER_MAX) {
		err = rh_error_set(RH_EINVAL, "larger than %d bytes",
				   RH_LFS_POINTER_MAX);
		goto done;
	}
	if (len == 0 || p[len - 1] != '\n') {
		err = rh_error_set(RH_EINVAL, "does not end with a newline");
		goto done;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *sp;
		size_t klen;
		size_t vlen;

		line++;
		sp = memchr(p, ' ', (size_t)(nl - p));
		if (!sp || sp == p) {
			err = rh_error_set(RH_EINVAL, "line %u is not \"key value\"",
					   line);
			goto done;
		}
		klen = (size_t)(sp - p);
		vlen = (size_t)(nl - sp - 1);
		for (size_t i = 0; i < klen; i++) {
			if (!key_char_ok(p[i])) {
				err = rh_error_set(RH_EINVAL, "line %u: bad key "
						   "\"%.*s\"", line, (int)(klen > 40 ? 40 : klen),
						   p);
				goto done;
			}
		}
		for (size_t i = 0; i < vlen; i++) {
			if (sp[1 + i] == '\r') {
				err = rh_error_set(RH_EINVAL, "line %u has a CR: "
							      "pointers use LF line endings", line);
				goto done;
			}
		}
		if (line == 1) {
			if (klen != 7 || memcmp(p, "version", 7) != 0) {
				err = rh_error_set(RH_EINVAL,
						   "does not start with `version`");
				goto done;
			}
			if (!((vlen == strlen(RH_LFS_SPEC_V1) &&
			       memcmp(sp + 1, RH_LFS_SPEC_V1, vlen) == 0) ||
			      (vlen == strlen(LFS_LEGACY_V1) &&
			       memcmp(sp + 1, LFS_LEGACY_V1, vlen) == 0))) {
				err = rh_error_set(RH_EINVAL, "unsupported version "
						   "\"%.*s\" (expected %s)",
						   (int)(vlen > 80 ? 80 : vlen), sp + 1,
						   RH_LFS_SPEC_V1);
				goto done;
			}
		} else {
			int cmp;

			if (klen == 7 && memcmp(p, "version", 7) == 0) {
				err = rh_error_set(RH_EINVAL, "has `version` twice");
				goto done;
			}
			if (prev_key) {
				cmp = memcmp(prev_key, p, prev_len < klen ? prev_len : klen);
				if (cmp > 0 || (cmp == 0 && prev_len >= klen)) {
					err = rh_error_set(RH_EINVAL, "keys are not "
							   "sorted or repeat (\"%.*s\" after "
							   "\"%.*s\")", (int)klen, p,
							   (int)prev_len, prev_key);
					goto done;
				}
			}
			prev_key = p;
			prev_len = klen;
			if (klen == 3 && memcmp(p, "oid", 3) == 0) {
				err = parse_oid(out->oid, sp + 1, vlen);
				have_oid = err == 0;
			} else if (klen == 4 && memcmp(p, "size", 4) == 0) {
				err = parse_size(&out->size, sp + 1, vlen);
				have_size = err == 0;
			} else if (klen > 4 && memcmp(p, "ext-", 4) == 0) {
				err = rh_error_set(RH_EINVAL, "uses extension "
						   "\"%.*s\", which rehydra does not support",
						   (int)klen, p);
			} else {
				err = rh_error_set(RH_EINVAL, "unknown key "
						   "\"%.*s\"", (int)(klen > 40 ? 40 : klen), p);
			}
			if (err < 0) {
				rh_error_prefix(err, "line %u", line);
				goto done;
			}
		}
		p = nl + 1;
	}
	if (!have_oid || !have_size) {
		err = rh_error_set(RH_EINVAL, "lacks %s", !have_oid ? "oid" : "size");
		goto done;
	}
done:
	return err;
}

char *rh_lfs_local_object_path(const char *gitdir, const char *oid)
{
	size_t n = strlen(gitdir);
	char *path = NULL;

	while (n > 1 && gitdir[n - 1] == '/')
		n--;
	if (strlen(oid) < 5)
		return NULL;
	if (asprintf(&path, "%.*s/lfs/objects/%.2s/%.2s/%s", (int)n, gitdir, oid, oid + 2,
		     oid) < 0)
		return NULL;
	return path;
}

struct local_store {
	char *gitdir;
};

struct local_reader {
	int fd;
	char *path;
};

static long local_read(void *user, void *buf, size_t len)
{
	struct local_reader *lr = user;

	for (;;) {
		ssize_t n = read(lr->fd, buf, len);

		if (n >= 0)
			return (long)n;
		if (errno != EINTR)
			return rh_error_set_errno(RH_EIO, errno, "cannot read LFS object %s",
						  lr->path);
	}
}

static void local_close(void *user)
{
	struct local_reader *lr = user;

	if (!lr)
		return;
	if (lr->fd >= 0)
		close(lr->fd);
	free(lr->path);
	free(lr);
}

static int local_open(struct rh_lfs_source *src, const struct rh_lfs_pointer *p,
		      struct rh_lfs_reader *out)
{
	struct local_store *ls = src->priv;
	struct local_reader *lr = NULL;
	struct stat sb;
	int err = 0;

	memset(out, 0, sizeof(*out));
	lr = calloc(1, sizeof(*lr));
	if (!lr) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening LFS object %s", p->oid);
		goto done;
	}
	lr->fd = -1;
	lr->path = rh_lfs_local_object_path(ls->gitdir, p->oid);
	if (!lr->path) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening LFS object %s", p->oid);
		goto done;
	}
	lr->fd = open(lr->path, O_RDONLY | O_CLOEXEC);
	if (lr->fd < 0) {
		if (errno == ENOENT)
			err = rh_error_set(RH_ENOTFOUND, "LFS object %s is not in the local LFS "
					   "store (%s): run `git lfs fetch` in the registry",
					   p->oid, lr->path);
		else
			err = rh_error_set_errno(RH_EIO, errno, "cannot open LFS object %s",
						 lr->path);
		goto done;
	}
	if (fstat(lr->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		err = rh_error_set(RH_EIO, "LFS object %s is not a regular file", lr->path);
		goto done;
	}
	if ((uint64_t)sb.st_size != p->size) {
		err = rh_error_set(RH_EVERIFY, "LFS object %s has %llu bytes but its pointer says "
				   "%llu: run `git lfs fsck` in the registry", lr->path,
				   (unsigned long long)sb.st_size, (unsigned long long)p->size);
		goto done;
	}
	/* We read it once, front to back. */
	posix_fadvise(lr->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	out->read = local_read;
	out->close = local_close;
	out->user = lr;
	lr = NULL;
done:
	local_close(lr);
	return err;
}

static void local_free(struct rh_lfs_source *src)
{
	struct local_store *ls = src->priv;

	if (ls)
		free(ls->gitdir);
	free(ls);
	free(src);
}

int rh_lfs_source_local_new(struct rh_lfs_source **out, const char *gitdir)
{
	struct rh_lfs_source *src = calloc(1, sizeof(*src));
	struct local_store *ls = calloc(1, sizeof(*ls));
	int err = 0;

	*out = NULL;
	if (!src || !ls || !(ls->gitdir = strdup(gitdir))) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening the local LFS store");
		goto done;
	}
	src->name = "local LFS store";
	src->open = local_open;
	src->free = local_free;
	src->priv = ls;
	*out = src;
	src = NULL;
	ls = NULL;
done:
	if (ls)
		free(ls->gitdir);
	free(ls);
	free(src);
	return err;
}

void rh_lfs_source_free(struct rh_lfs_source *src)
{
	if (src && src->free)
		src->free(src);
}
