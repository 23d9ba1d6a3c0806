/*
 * lfs.c - Git LFS pointer parsing, object store paths and remote URLs.
 *
 * A registry's large files are LFS objects, so every model byte of a real
 * registry is found through here. The pointer parser follows git-lfs's
 * docs/spec.md to the letter (version first, keys sorted, LF only, the
 * three required keys, sizes in plain decimal): a pointer we read loosely
 * could send us a different object than the one the manifest vouches for.
 * The URL helpers exist so credentials in a registry URL are split off once,
 * here, and every message is built from the redacted form.
 */
#include "lfs.h"
#include "error.h"
#include "hex.h"
#include "url.h"

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
	if (!rh_hex_is_lower(v, 64))
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
		err = rh_error_set(RH_EINVAL, "larger than %d bytes", RH_LFS_POINTER_MAX);
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
			err = rh_error_set(RH_EINVAL, "line %u is not \"key value\"", line);
			goto done;
		}
		klen = (size_t)(sp - p);
		vlen = (size_t)(nl - sp - 1);
		for (size_t i = 0; i < klen; i++) {
			if (!key_char_ok(p[i])) {
				err = rh_error_set(RH_EINVAL,
						   "line %u: bad key "
						   "\"%.*s\"",
						   line, (int)(klen > 40 ? 40 : klen), p);
				goto done;
			}
		}
		for (size_t i = 0; i < vlen; i++) {
			if (sp[1 + i] == '\r') {
				err = rh_error_set(RH_EINVAL,
						   "line %u has a CR: "
						   "pointers use LF line endings",
						   line);
				goto done;
			}
		}
		if (line == 1) {
			if (klen != 7 || memcmp(p, "version", 7) != 0) {
				err = rh_error_set(RH_EINVAL, "does not start with `version`");
				goto done;
			}
			if (!((vlen == strlen(RH_LFS_SPEC_V1) &&
			       memcmp(sp + 1, RH_LFS_SPEC_V1, vlen) == 0) ||
			      (vlen == strlen(LFS_LEGACY_V1) &&
			       memcmp(sp + 1, LFS_LEGACY_V1, vlen) == 0))) {
				err = rh_error_set(RH_EINVAL,
						   "unsupported version "
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
					err = rh_error_set(RH_EINVAL,
							   "keys are not "
							   "sorted or repeat (\"%.*s\" after "
							   "\"%.*s\")",
							   (int)klen, p, (int)prev_len, prev_key);
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
				err = rh_error_set(RH_EINVAL,
						   "uses extension "
						   "\"%.*s\", which rehydra does not support",
						   (int)klen, p);
			} else {
				err = rh_error_set(RH_EINVAL,
						   "unknown key "
						   "\"%.*s\"",
						   (int)(klen > 40 ? 40 : klen), p);
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
	if (asprintf(&path, "%.*s/lfs/objects/%.2s/%.2s/%s", (int)n, gitdir, oid, oid + 2, oid) < 0)
		return NULL;
	return path;
}

/* The authority of "scheme://authority/...": [start, end) in `url`, or
 * false when `url` has no "://". */
static bool url_authority(const char *url, size_t *start, size_t *end)
{
	const char *sep = strstr(url, "://");
	size_t i;

	if (!sep)
		return false;
	i = (size_t)(sep - url) + 3;
	*start = i;
	while (url[i] && url[i] != '/' && url[i] != '?' && url[i] != '#')
		i++;
	*end = i;
	return true;
}

int rh_lfs_url_split(const char *url, char **bare, char **user, char **pass)
{
	size_t a, b, at = SIZE_MAX;
	int err = 0;

	*bare = NULL;
	*user = NULL;
	*pass = NULL;
	if (url_authority(url, &a, &b)) {
		for (size_t i = a; i < b; i++)
			if (url[i] == '@')
				at = i;
	}
	if (at == SIZE_MAX) {
		*bare = strdup(url);
		if (!*bare)
			err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	if (asprintf(bare, "%.*s%s", (int)a, url, url + at + 1) < 0) {
		*bare = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	{
		const char *colon = memchr(url + a, ':', at - a);
		size_t ulen = colon ? (size_t)(colon - (url + a)) : at - a;

		err = rh_url_decode(user, url + a, ulen, RH_URL_KEEP_BAD_ESCAPES);
		if (err == 0 && colon)
			err = rh_url_decode(pass, colon + 1, (size_t)(url + at - colon - 1),
					    RH_URL_KEEP_BAD_ESCAPES);
		if (err < 0)
			rh_error_prefix(err, "credentials in the remote URL");
	}
done:
	if (err < 0) {
		free(*bare);
		free(*user);
		free(*pass);
		*bare = *user = *pass = NULL;
	}
	return err;
}

char *rh_lfs_url_redact(const char *url)
{
	char *bare = NULL, *user = NULL, *pass = NULL;

	if (rh_lfs_url_split(url, &bare, &user, &pass) < 0)
		return NULL;
	free(user);
	free(pass);
	return bare;
}

/* "<base>.git/info/lfs" or "<base>/info/lfs" when base ends in ".git". */
static char *lfs_suffix(const char *scheme_host, const char *path)
{
	size_t n = strlen(path);
	char *out = NULL;

	while (n > 0 && path[n - 1] == '/')
		n--;
	if (n >= 4 && memcmp(path + n - 4, ".git", 4) == 0) {
		if (asprintf(&out, "%s%.*s/info/lfs", scheme_host, (int)n, path) < 0)
			out = NULL;
	} else if (asprintf(&out, "%s%.*s.git/info/lfs", scheme_host, (int)n, path) < 0) {
		out = NULL;
	}
	return out;
}

char *rh_lfs_endpoint_for_remote(const char *remote_url)
{
	size_t a, b;
	char *host = NULL;
	char *out = NULL;

	if (strncmp(remote_url, "http://", 7) == 0 || strncmp(remote_url, "https://", 8) == 0) {
		url_authority(remote_url, &a, &b);
		/* The query and fragment are not part of the repository path. */
		b += strcspn(remote_url + b, "?#");
		host = strndup(remote_url, b);
		if (host)
			out = lfs_suffix("", host);
		free(host);
		return out;
	}
	if (strncmp(remote_url, "ssh://", 6) == 0 || strncmp(remote_url, "git+ssh://", 10) == 0) {
		size_t h;
		size_t hend;

		url_authority(remote_url, &a, &b);
		h = a;
		for (size_t i = a; i < b; i++)
			if (remote_url[i] == '@')
				h = i + 1;
		hend = h;
		while (hend < b && remote_url[hend] != ':')
			hend++;
		if (asprintf(&host, "https://%.*s", (int)(hend - h), remote_url + h) < 0)
			return NULL;
		out = lfs_suffix(host, remote_url + b);
		free(host);
		return out;
	}
	if (!strstr(remote_url, "://")) {
		/* scp-like "user@host:path" (a local path has a '/' before any ':'). */
		const char *colon = strchr(remote_url, ':');
		const char *slash = strchr(remote_url, '/');
		const char *at;
		const char *h = remote_url;

		if (!colon || (slash && slash < colon))
			return NULL;
		at = memchr(remote_url, '@', (size_t)(colon - remote_url));
		if (at)
			h = at + 1;
		if (asprintf(&host, "https://%.*s/", (int)(colon - h), h) < 0)
			return NULL;
		out = lfs_suffix(host, colon[1] == '/' ? colon + 2 : colon + 1);
		free(host);
		return out;
	}
	return NULL;
}
