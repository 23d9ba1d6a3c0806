/*
 * publish.c - writes a new model version into a registry on this machine:
 * LFS objects into the repository's store, pointer blobs, the manifest, one
 * commit and one tag, with libgit2 and no git or git-lfs binary.
 *
 * Publishing is the other half of the registry contract, and it must stay
 * readable by the real tools (`git lfs fsck`, `git lfs ls-files`, a clone
 * with `git lfs checkout`), so the pointers are written exactly as git-lfs
 * writes them and the objects go where git-lfs keeps them. The order makes
 * a failure harmless: objects first (content-addressed, so a stray one is
 * only garbage), then the unreferenced commit, then the tag (which fails if
 * the version exists: versions are immutable), then the working tree, and
 * the branch moves last with a compare-and-swap, so a concurrent publish
 * loses cleanly instead of dropping the other's commit; a late failure
 * removes the tag it made.
 */
#include "publish.h"
#include "cancel.h"
#include "clock.h"
#include "error.h"
#include "fsutil.h"
#include "global.h"
#include "lfs.h"
#include "sha256.h"
#include "sink.h"
#include "strbuf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

#define PUB_CHUNK (1u << 20)
#define PUB_NAME_MAX 128
#define PUB_MAX_FILES 100000
#define PUB_ATTR_SUFFIX " filter=lfs diff=lfs merge=lfs -text"

struct pub_file {
	char *path; /* in the manifest, relative to models/NAME/ */
	char *src;  /* the local file */
	uint64_t size;
	char sha256[65];
};

struct pub {
	const char *registry;
	const char *name;
	const char *version;
	const struct rh_publish_opts *opts;
	git_repository *repo;
	char *lfs_dir; /* <commondir>/lfs */
	struct pub_file *files;
	size_t n, cap;
	uint64_t total;
	uint64_t copied;
	uint8_t *buf;
	struct rh_publish_result res;
};

static const char *git_msg(void)
{
	const git_error *e = git_error_last();

	return e && e->message ? e->message : "unknown libgit2 error";
}

/* Names and versions become a directory and a tag: publish accepts a safe
 * subset of what git allows, so every tool downstream copes with them. */
static int check_component(const char *what, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > PUB_NAME_MAX)
		return rh_error_set(RH_EINVAL, "model %s \"%s\" must be 1 to %d characters", what,
				    s ? s : "", PUB_NAME_MAX);
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-' || c == '+'))
			return rh_error_set(RH_EINVAL,
					    "model %s \"%s\": use only letters, digits "
					    "and . _ - +",
					    what, s);
	}
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
	      (s[0] >= '0' && s[0] <= '9')) ||
	    strstr(s, "..") || (n >= 5 && strcmp(s + n - 5, ".lock") == 0))
		return rh_error_set(RH_EINVAL,
				    "model %s \"%s\" must start with a letter or digit, "
				    "and contain no \"..\" nor end in \".lock\"",
				    what, s);
	return 0;
}

/* ---- inputs --------------------------------------------------------------- */

static int pub_add(struct pub *p, const char *path, const char *src, uint64_t size)
{
	struct pub_file *f;

	if (p->n == PUB_MAX_FILES)
		return rh_error_set(RH_EINVAL, "more than %d files to publish", PUB_MAX_FILES);
	if (!rh_sink_path_is_safe(path))
		return rh_error_set(RH_EINVAL,
				    "%s: \"%s\" cannot be a model file path (no "
				    "\"..\", \".\", backslashes or control characters)",
				    src, path);
	if (strncmp(path, ".rehydra-sink", 13) == 0 || strstr(path, ".rh-part-"))
		return rh_error_set(RH_EINVAL,
				    "%s: \"%s\" is reserved for the sinks' own state "
				    "(.rehydra-sink*, *.rh-part-*); rename it",
				    src, path);
	if (strcmp(path, "manifest.json") == 0)
		return rh_error_set(RH_EINVAL,
				    "%s: a model file cannot be called manifest.json "
				    "(rehydra writes the manifest itself); rename it",
				    src);
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct pub_file *grown = realloc(p->files, cap * sizeof(*grown));

		if (!grown)
			return rh_error_set(RH_ENOMEM, "out of memory listing files");
		p->files = grown;
		p->cap = cap;
	}
	f = &p->files[p->n];
	memset(f, 0, sizeof(*f));
	f->path = strdup(path);
	f->src = strdup(src);
	if (!f->path || !f->src) {
		free(f->path);
		free(f->src);
		return rh_error_set(RH_ENOMEM, "out of memory listing files");
	}
	f->size = size;
	p->n++;
	p->total += size;
	return 0;
}

/* Adds every regular file under `dir` (the local directory), as `rel/...`. */
static int pub_walk(struct pub *p, const char *dir, const char *rel, int depth)
{
	DIR *d = NULL;
	struct dirent *e;
	int err = 0;

	if (depth > 64)
		return rh_error_set(RH_EINVAL, "%s: directories nested too deep", dir);
	d = opendir(dir);
	if (!d)
		return rh_error_set_errno(RH_EIO, errno, "cannot read directory %s", dir);
	while (err == 0 && (e = readdir(d)) != NULL) {
		char *src = NULL, *path = NULL;
		struct stat sb;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (asprintf(&src, "%s/%s", dir, e->d_name) < 0) {
			src = NULL;
			err = rh_error_set(RH_ENOMEM, "out of memory listing %s", dir);
		} else if (asprintf(&path, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name) < 0) {
			path = NULL;
			err = rh_error_set(RH_ENOMEM, "out of memory listing %s", dir);
		} else if (lstat(src, &sb) != 0) {
			err = rh_error_set_errno(RH_EIO, errno, "cannot inspect %s", src);
		} else if (S_ISDIR(sb.st_mode)) {
			err = pub_walk(p, src, path, depth + 1);
		} else if (S_ISREG(sb.st_mode)) {
			err = pub_add(p, path, src, (uint64_t)sb.st_size);
		} else {
			err = rh_error_set(
			    RH_EINVAL,
			    "%s is %s: publish only regular files (copy "
			    "what it points to instead)",
			    src, S_ISLNK(sb.st_mode) ? "a symlink" : "not a regular file");
		}
		free(src);
		free(path);
	}
	closedir(d);
	return err;
}

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct pub_file *)a)->path, ((const struct pub_file *)b)->path);
}

static int pub_collect(struct pub *p, const char *const *inputs, size_t n_inputs)
{
	int err = 0;

	if (n_inputs == 0)
		return rh_error_set(RH_EINVAL, "no files to publish");
	for (size_t i = 0; err == 0 && i < n_inputs; i++) {
		const char *in = inputs[i];
		const char *base;
		struct stat sb;
		size_t len = strlen(in);

		while (len > 1 && in[len - 1] == '/')
			len--;
		if (stat(in, &sb) != 0) {
			err = rh_error_set_errno(errno == ENOENT ? RH_ENOTFOUND : RH_EIO, errno,
						 "cannot publish %s", in);
		} else if (S_ISDIR(sb.st_mode)) {
			err = pub_walk(p, in, "", 0);
		} else if (S_ISREG(sb.st_mode)) {
			base = memrchr(in, '/', len);
			base = base ? base + 1 : in;
			{
				char *b = strndup(base, len - (size_t)(base - in));

				err = b ? pub_add(p, b, in, (uint64_t)sb.st_size)
					: rh_error_set(RH_ENOMEM, "out of memory");
				free(b);
			}
		} else {
			err =
			    rh_error_set(RH_EINVAL, "%s is not a regular file or a directory", in);
		}
	}
	if (err < 0)
		return err;
	if (p->n == 0)
		return rh_error_set(RH_EINVAL, "no files to publish (the directories are empty)");
	qsort(p->files, p->n, sizeof(*p->files), cmp_file);
	for (size_t i = 0; i + 1 < p->n; i++) {
		const char *a = p->files[i].path, *b = p->files[i + 1].path;
		size_t la = strlen(a);

		if (strcmp(a, b) == 0)
			return rh_error_set(RH_EINVAL, "%s and %s would both be %s in the model",
					    p->files[i].src, p->files[i + 1].src, a);
		/* "a" sorts right before "a/..." only if no "a-" sits between:
		 * check every later path with the prefix instead. */
		for (size_t k = i + 1; k < p->n && strncmp(p->files[k].path, a, la) == 0; k++)
			if (p->files[k].path[la] == '/')
				return rh_error_set(RH_EINVAL,
						    "%s is a file but %s needs it to be "
						    "a directory",
						    a, p->files[k].path);
	}
	return 0;
}

/* ---- the LFS store ------------------------------------------------------ */

/* mkdir for a directory git-lfs also uses: 0755 like git-lfs, so the
 * repository stays usable by whoever else may read it. */
static int mkdir_shared(const char *path)
{
	if (mkdir(path, 0755) == 0 || errno == EEXIST)
		return 0;
	return rh_error_set_errno(RH_EIO, errno, "cannot create %s", path);
}

/* Copies f->src into the store, hashing on the way; fills size and sha256. */
static int pub_store(struct pub *p, struct pub_file *f)
{
	struct rh_sha256 c = {0};
	struct stat sb;
	uint8_t d[32];
	char rnd[17];
	char *tmp = NULL, *dir = NULL, *obj = NULL;
	uint64_t size = 0;
	int in = -1, out = -1;
	bool have_tmp = false;
	int err = 0;

	rh_fs_rand_hex(rnd);
	err = rh_asprintf(&tmp, "%s/tmp/%s.rh-publish", p->lfs_dir, rnd);
	if (err < 0)
		goto done;
	in = rh_fs_open_regular(f->src, 0); /* never blocks on a FIFO */
	if (in < 0) {
		err = in == RH_ENOTFOUND
			  ? rh_error_set(RH_EIO, "cannot open %s: no such file", f->src)
			  : in;
		in = -1;
		goto done;
	}
	/* read-only, like git's own objects: a restore on the same filesystem
	 * may then hard-link the object instead of copying it (sink_file.c) */
	out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
	if (out < 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot create %s", tmp);
		goto done;
	}
	have_tmp = true;
	err = rh_sha256_init(&c);
	if (err < 0)
		goto done;
	for (;;) {
		ssize_t n;
		int rc;

		if (p->opts->cancel && rh_cancel_is_fired(p->opts->cancel)) {
			err = rh_error_set(RH_ECANCELLED, "cancelled while storing %s", f->src);
			goto done;
		}
		n = read(in, p->buf, PUB_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = rh_error_set_errno(RH_EIO, errno, "cannot read %s", f->src);
			goto done;
		}
		if (n == 0)
			break;
		rh_sha256_update(&c, p->buf, (size_t)n);
		rc = rh_fs_write_all(out, p->buf, (size_t)n);
		if (rc < 0) {
			err = rh_error_set_errno(RH_EIO, -rc, "cannot write %s", tmp);
			goto done;
		}
		size += (uint64_t)n;
		p->copied += (uint64_t)n;
		if (p->opts->progress)
			p->opts->progress(p->opts->progress_user, (uint64_t)n, p->total);
	}
	if (fsync(out) != 0 || close(out) != 0) {
		out = -1;
		err = rh_error_set_errno(RH_EIO, errno, "cannot write %s", tmp);
		goto done;
	}
	out = -1;
	rh_sha256_final(&c, d);
	rh_sha256_hex(f->sha256, d);
	f->size = size;
	err = rh_asprintf(&dir, "%s/objects/%.2s", p->lfs_dir, f->sha256);
	if (err < 0)
		goto done;
	if ((err = mkdir_shared(dir)) < 0)
		goto done;
	free(dir);
	err = rh_asprintf(&dir, "%s/objects/%.2s/%.2s", p->lfs_dir, f->sha256, f->sha256 + 2);
	if (err < 0)
		goto done;
	if ((err = mkdir_shared(dir)) < 0)
		goto done;
	err = rh_asprintf(&obj, "%s/%s", dir, f->sha256);
	if (err < 0)
		goto done;
	/* Replacing an existing object is harmless (same name, same bytes) and
	 * repairs one that was damaged. */
	if (stat(obj, &sb) != 0 || (uint64_t)sb.st_size != size)
		p->res.bytes_stored += size;
	if (rename(tmp, obj) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot move %s into the LFS store", tmp);
		goto done;
	}
	have_tmp = false;
done:
	rh_sha256_free(&c);
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (have_tmp)
		unlink(tmp);
	free(tmp);
	free(dir);
	free(obj);
	return err;
}

/* ---- the commit ----------------------------------------------------------- */

/* A gitattributes pattern matching exactly `path`: glob characters are
 * escaped and spaces written as git-lfs writes them. New string. */
static char *attr_pattern(const char *path)
{
	size_t n = 0;
	char *out, *o;

	for (const char *c = path; *c; c++)
		n += *c == ' ' ? 11 : strchr("*?[]\\!#\"", *c) ? 2 : 1;
	out = malloc(n + 1);
	if (!out)
		return NULL;
	o = out;
	for (const char *c = path; *c; c++) {
		if (*c == ' ') {
			memcpy(o, "[[:space:]]", 11);
			o += 11;
			continue;
		}
		if (strchr("*?[]\\!#\"", *c))
			*o++ = '\\';
		*o++ = *c;
	}
	*o = '\0';
	return out;
}

static bool has_line(const char *text, size_t len, const char *line)
{
	size_t ll = strlen(line);

	for (const char *p = text; p < text + len;) {
		const char *nl = memchr(p, '\n', (size_t)(text + len - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(text + len - p);

		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == ll && memcmp(p, line, ll) == 0)
			return true;
		if (!nl)
			break;
		p = nl + 1;
	}
	return false;
}

/* The new .gitattributes: the old one plus a line for each LFS path it
 * does not already have. New string in *out. */
static int pub_attributes(struct pub *p, git_tree *base, char **out, size_t *out_len)
{
	git_tree_entry *e = NULL;
	git_blob *blob = NULL;
	const char *old = "";
	size_t old_len = 0;
	size_t cap, len;
	char *text = NULL;
	int err = 0;

	if (base && git_tree_entry_bypath(&e, base, ".gitattributes") == 0 &&
	    git_tree_entry_type(e) == GIT_OBJECT_BLOB &&
	    git_blob_lookup(&blob, p->repo, git_tree_entry_id(e)) == 0) {
		old = git_blob_rawcontent(blob);
		old_len = (size_t)git_blob_rawsize(blob);
	}
	cap = old_len + 2;
	text = malloc(cap);
	if (!text) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	memcpy(text, old, old_len);
	len = old_len;
	if (len > 0 && text[len - 1] != '\n')
		text[len++] = '\n';
	for (size_t i = 0; i < p->n; i++) {
		char *full = NULL, *pat = NULL, *line = NULL;
		char *grown;

		if (asprintf(&full, "models/%s/%s", p->name, p->files[i].path) < 0)
			full = NULL;
		pat = full ? attr_pattern(full) : NULL;
		if (!pat || asprintf(&line, "%s%s", pat, PUB_ATTR_SUFFIX) < 0) {
			free(full);
			free(pat);
			err = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
		free(full);
		free(pat);
		if (has_line(text, len, line)) {
			free(line);
			continue;
		}
		grown = realloc(text, len + strlen(line) + 2);
		if (!grown) {
			free(line);
			err = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
		text = grown;
		memcpy(text + len, line, strlen(line));
		len += strlen(line);
		text[len++] = '\n';
		free(line);
	}
	*out = text;
	*out_len = len;
	text = NULL;
done:
	free(text);
	git_blob_free(blob);
	git_tree_entry_free(e);
	return err;
}

static int pub_manifest(struct pub *p, char **out, size_t *out_len)
{
	const json_t *meta = p->opts->meta;
	const char *key;
	json_t *val;
	json_t *m = json_object();
	json_t *files = json_array();
	char *text = NULL;
	int err = 0;

	if (!m || !files) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	json_object_set_new(m, "rehydra_manifest", json_integer(1));
	json_object_set_new(m, "name", json_string(p->name));
	json_object_set_new(m, "version", json_string(p->version));
	if (meta && json_object_get(meta, "description"))
		json_object_set(m, "description", json_object_get(meta, "description"));
	if (p->opts->license)
		json_object_set_new(m, "license", json_string(p->opts->license));
	else if (meta && json_object_get(meta, "license"))
		json_object_set(m, "license", json_object_get(meta, "license"));
	json_object_foreach((json_t *)meta, key, val)
	{
		if (strcmp(key, "serving") == 0 || strcmp(key, "export") == 0)
			json_object_set(m, key, val);
	}
	for (size_t i = 0; i < p->n; i++) {
		json_t *f = json_pack("{s:s, s:I, s:s}", "path", p->files[i].path, "size",
				      (json_int_t)p->files[i].size, "sha256", p->files[i].sha256);

		if (!f || json_array_append_new(files, f) != 0) {
			err = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
	}
	json_object_set(m, "files", files);
	text = json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	if (!text) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	*out_len = strlen(text) + 1;
	*out = realloc(text, *out_len + 1);
	if (!*out) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	(*out)[*out_len - 1] = '\n';
	(*out)[*out_len] = '\0';
	text = NULL;
done:
	free(text);
	json_decref(files);
	json_decref(m);
	return err;
}

static int check_meta(const struct rh_publish_opts *o)
{
	const char *where = o->meta_name ? o->meta_name : "metadata";
	const char *key;
	json_t *val;

	if (!o->meta)
		return 0;
	if (!json_is_object(o->meta))
		return rh_error_set(RH_EINVAL, "%s: must be a JSON object", where);
	json_object_foreach((json_t *)o->meta, key, val)
	{
		if (strcmp(key, "license") == 0 || strcmp(key, "description") == 0) {
			if (!json_is_string(val))
				return rh_error_set(RH_EINVAL, "%s: \"%s\" must be a string", where,
						    key);
		} else if (strcmp(key, "serving") == 0 || strcmp(key, "export") == 0) {
			if (!json_is_object(val))
				return rh_error_set(RH_EINVAL, "%s: \"%s\" must be an object",
						    where, key);
		} else {
			return rh_error_set(RH_EINVAL,
					    "%s: unknown key \"%s\" (expected license, "
					    "description, serving, export)",
					    where, key);
		}
	}
	return 0;
}

static int pub_signature(git_signature **out, git_repository *repo)
{
	const char *name = getenv("REHYDRA_AUTHOR_NAME");
	const char *email = getenv("REHYDRA_AUTHOR_EMAIL");

	if (name && *name)
		return git_signature_now(out, name, email && *email ? email : "rehydra@localhost");
	if (git_signature_default(out, repo) == 0)
		return 0;
	return git_signature_now(out, "rehydra", email && *email ? email : "rehydra@localhost");
}

static int blob_from(git_oid *oid, git_repository *repo, const void *data, size_t len,
		     const char *what)
{
	if (git_blob_create_from_buffer(oid, repo, data, len) < 0)
		return rh_error_set(RH_EIO, "cannot write %s into the registry: %s", what,
				    git_msg());
	return 0;
}

/* Builds the new tree: the old one without models/NAME, plus the version. */
static int pub_tree(struct pub *p, git_tree *base, git_oid *tree_oid, const char *manifest,
		    size_t manifest_len)
{
	git_tree_update *up = NULL;
	git_tree_entry *old = NULL;
	git_tree *stripped = NULL;
	char **paths = NULL;
	char *attrs = NULL;
	char *mpath = NULL;
	char *dir = NULL;
	size_t attrs_len = 0;
	size_t nup = 0;
	git_oid oid;
	int err = 0;

	err = rh_asprintf(&dir, "models/%s", p->name);
	if (err < 0)
		goto done;
	if (base && git_tree_entry_bypath(&old, base, dir) == 0) {
		git_tree_update rm = {.action = GIT_TREE_UPDATE_REMOVE, .path = dir};

		if (git_tree_create_updated(&oid, p->repo, base, 1, &rm) < 0 ||
		    git_tree_lookup(&stripped, p->repo, &oid) < 0) {
			err = rh_error_set(RH_EIO, "cannot build the new tree: %s", git_msg());
			goto done;
		}
	}
	up = calloc(p->n + 2, sizeof(*up));
	paths = calloc(p->n + 2, sizeof(*paths));
	if (!up || !paths) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < p->n; i++) {
		char ptr[RH_LFS_POINTER_MAX];
		int n = snprintf(ptr, sizeof(ptr), "version %s\noid sha256:%s\nsize %llu\n",
				 RH_LFS_SPEC_V1, p->files[i].sha256,
				 (unsigned long long)p->files[i].size);

		err = rh_asprintf(&paths[nup], "%s/%s", dir, p->files[i].path);
		if (err < 0)
			goto done;
		err = blob_from(&up[nup].id, p->repo, ptr, (size_t)n, paths[nup]);
		if (err < 0)
			goto done;
		up[nup].action = GIT_TREE_UPDATE_UPSERT;
		up[nup].filemode = GIT_FILEMODE_BLOB;
		up[nup].path = paths[nup];
		nup++;
	}
	err = rh_asprintf(&mpath, "%s/manifest.json", dir);
	if (err < 0)
		goto done;
	err = blob_from(&up[nup].id, p->repo, manifest, manifest_len, mpath);
	if (err < 0)
		goto done;
	up[nup].action = GIT_TREE_UPDATE_UPSERT;
	up[nup].filemode = GIT_FILEMODE_BLOB;
	up[nup].path = mpath;
	nup++;
	err = pub_attributes(p, base, &attrs, &attrs_len);
	if (err == 0)
		err = blob_from(&up[nup].id, p->repo, attrs, attrs_len, ".gitattributes");
	if (err < 0)
		goto done;
	up[nup].action = GIT_TREE_UPDATE_UPSERT;
	up[nup].filemode = GIT_FILEMODE_BLOB;
	up[nup].path = ".gitattributes";
	nup++;
	if (git_tree_create_updated(tree_oid, p->repo, stripped ? stripped : base, nup, up) < 0)
		err = rh_error_set(RH_EIO, "cannot build the new tree: %s", git_msg());
done:
	for (size_t i = 0; paths && i < p->n + 2; i++)
		free(paths[i]);
	free(paths);
	free(up);
	free(attrs);
	free(mpath);
	free(dir);
	git_tree_free(stripped);
	git_tree_entry_free(old);
	return err;
}

/* The registry as a repository path: a local path or a file:// URL. */
static int pub_open(struct pub *p)
{
	const char *path = p->registry;
	int rc;

	if (strncmp(path, "file://", 7) == 0)
		path += 7;
	else if (strstr(path, "://") ||
		 (strchr(path, ':') &&
		  (!strchr(path, '/') || strchr(path, ':') < strchr(path, '/'))))
		return rh_error_set(RH_EUNSUPPORTED,
				    "registry %s is remote: publish into a "
				    "local clone of it and push the branch and the tag",
				    p->registry);
	rc = git_repository_open_ext(&p->repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
	if (rc == GIT_ENOTFOUND)
		return rh_error_set(RH_ENOTFOUND,
				    "registry %s: not a git repository (create one "
				    "with git init and git lfs install --local)",
				    p->registry);
	if (rc < 0)
		return rh_error_set(RH_EIO, "registry %s: cannot open: %s", p->registry, git_msg());
	if (rh_asprintf(&p->lfs_dir, "%s/lfs", git_repository_commondir(p->repo)) < 0)
		return RH_ENOMEM;
	/* git_repository_commondir ends with '/': "x//lfs" is harmless. */
	return 0;
}

int rh_registry_publish(struct rh_publish_result *res, const char *registry, const char *name,
			const char *version, const char *const *inputs, size_t n_inputs,
			const struct rh_publish_opts *opts)
{
	static const struct rh_publish_opts defaults = RH_PUBLISH_OPTS_INIT;
	struct pub p = {.registry = registry, .name = name, .version = version};
	git_reference *head = NULL, *tag_ref = NULL, *branch = NULL;
	git_commit *parent = NULL;
	git_object *commit_obj = NULL;
	git_signature *sig = NULL;
	git_tree *base = NULL, *tree = NULL;
	git_oid tree_oid, commit_oid, tag_oid;
	char *tagname = NULL, *tagref = NULL, *branch_name = NULL;
	char *manifest = NULL, *msg = NULL, *sub = NULL;
	size_t manifest_len = 0;
	bool tagged = false;
	double t0 = rh_clock_mono();
	int rc;
	int err = 0;

	p.opts = opts ? opts : &defaults;
	if (res)
		memset(res, 0, sizeof(*res));
	err = rh_artifacts_global_check();
	if (err < 0)
		goto done;
	if (!registry || !*registry) {
		err = rh_error_set(RH_EINVAL, "no registry given");
		goto done;
	}
	if ((err = check_component("name", name)) < 0 ||
	    (err = check_component("version", version)) < 0 || (err = check_meta(p.opts)) < 0)
		goto done;
	if (asprintf(&tagname, "%s/%s", name, version) < 0 ||
	    asprintf(&tagref, "refs/tags/%s/%s", name, version) < 0) {
		tagname = tagref = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	if ((err = pub_open(&p)) < 0)
		goto done;
	if (git_reference_lookup(&tag_ref, p.repo, tagref) == 0) {
		err = rh_error_set(RH_EINVAL,
				   "registry %s already has %s@%s (tag %s): versions "
				   "are immutable; publish a new version",
				   registry, name, version, tagname);
		goto done;
	}
	/* The branch HEAD names, born or not. */
	rc = git_reference_lookup(&head, p.repo, "HEAD");
	if (rc < 0 || git_reference_type(head) != GIT_REFERENCE_SYMBOLIC) {
		err = rh_error_set(RH_EINVAL,
				   "registry %s: HEAD is not on a branch: check out "
				   "the branch to publish onto",
				   registry);
		goto done;
	}
	branch_name = strdup(git_reference_symbolic_target(head));
	if (!branch_name) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	rc = git_reference_lookup(&branch, p.repo, branch_name);
	if (rc == 0) {
		if (git_commit_lookup(&parent, p.repo, git_reference_target(branch)) < 0 ||
		    git_commit_tree(&base, parent) < 0) {
			err = rh_error_set(RH_EIO, "registry %s: cannot read %s: %s", registry,
					   branch_name, git_msg());
			goto done;
		}
	} else if (rc != GIT_ENOTFOUND) {
		err = rh_error_set(RH_EIO, "registry %s: cannot read %s: %s", registry, branch_name,
				   git_msg());
		goto done;
	}

	if ((err = pub_collect(&p, inputs, n_inputs)) < 0)
		goto done;
	p.buf = malloc(PUB_CHUNK);
	if (!p.buf) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	err = rh_asprintf(&sub, "%s/objects", p.lfs_dir);
	if (err < 0)
		goto done;
	if ((err = mkdir_shared(p.lfs_dir)) < 0 || (err = mkdir_shared(sub)) < 0)
		goto done;
	free(sub);
	err = rh_asprintf(&sub, "%s/tmp", p.lfs_dir);
	if (err < 0)
		goto done;
	if ((err = mkdir_shared(sub)) < 0)
		goto done;
	for (size_t i = 0; i < p.n; i++)
		if ((err = pub_store(&p, &p.files[i])) < 0)
			goto done;
	p.total = 0;
	for (size_t i = 0; i < p.n; i++)
		p.total += p.files[i].size;

	if ((err = pub_manifest(&p, &manifest, &manifest_len)) < 0)
		goto done;
	if ((err = pub_tree(&p, base, &tree_oid, manifest, manifest_len)) < 0)
		goto done;
	if (git_tree_lookup(&tree, p.repo, &tree_oid) < 0 || pub_signature(&sig, p.repo) < 0) {
		err = rh_error_set(RH_EIO, "registry %s: cannot prepare the commit: %s", registry,
				   git_msg());
		goto done;
	}
	err = rh_asprintf(&msg, "%s %s\n\nPublished by rehydra: %zu files, %llu bytes.\n", name,
			  version, p.n, (unsigned long long)p.total);
	if (err < 0)
		goto done;
	{
		const git_commit *parents[1] = {parent};

		if (git_commit_create(&commit_oid, p.repo, NULL, sig, sig, NULL, msg, tree,
				      parent ? 1 : 0, parents) < 0 ||
		    git_object_lookup(&commit_obj, p.repo, &commit_oid, GIT_OBJECT_COMMIT) < 0) {
			err = rh_error_set(RH_EIO, "registry %s: cannot write the commit: %s",
					   registry, git_msg());
			goto done;
		}
	}
	free(msg);
	err = rh_asprintf(&msg, "%s %s\n", name, version);
	if (err < 0)
		goto done;
	rc = git_tag_create(&tag_oid, p.repo, tagname, commit_obj, sig, msg, 0);
	if (rc == GIT_EEXISTS) {
		err = rh_error_set(RH_EINVAL,
				   "registry %s already has %s@%s (tag %s, made while "
				   "we published): publish a new version",
				   registry, name, version, tagname);
		goto done;
	}
	if (rc < 0) {
		err = rh_error_set(RH_EIO, "registry %s: cannot create tag %s: %s", registry,
				   tagname, git_msg());
		goto done;
	}
	tagged = true;
	if (!git_repository_is_bare(p.repo)) {
		git_checkout_options co;

		/* Filters off: the working tree gets the pointers as they are, as
		 * after GIT_LFS_SKIP_SMUDGE=1 (git-lfs's clean filter maps a
		 * pointer to itself, so git status stays clean). */
		if (git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION) < 0) {
			err = rh_error_set(RH_EIO, "cannot initialise checkout: %s", git_msg());
			goto done;
		}
		co.checkout_strategy = GIT_CHECKOUT_SAFE;
		co.disable_filters = 1;
		if (git_checkout_tree(p.repo, commit_obj, &co) < 0) {
			err = rh_error_set(RH_EINVAL,
					   "registry %s: cannot update the working tree "
					   "(%s): commit or discard local changes under models/%s "
					   "and .gitattributes, then publish again",
					   registry, git_msg(), name);
			goto done;
		}
	}
	{
		git_reference *moved = NULL;
		char *logmsg = NULL;

		if (asprintf(&logmsg, "rehydra publish %s@%s", name, version) < 0)
			logmsg = NULL;
		if (parent)
			rc = git_reference_create_matching(&moved, p.repo, branch_name, &commit_oid,
							   1, git_commit_id(parent), logmsg);
		else
			rc = git_reference_create(&moved, p.repo, branch_name, &commit_oid, 0,
						  logmsg);
		git_reference_free(moved);
		free(logmsg);
		if (rc < 0) {
			err = rh_error_set(RH_EIO,
					   "registry %s: cannot move %s (did someone "
					   "commit at the same time? publish again): %s",
					   registry, branch_name, git_msg());
			goto done;
		}
	}
	tagged = false; /* published: the tag stays */
	if (res) {
		git_oid_fmt(p.res.commit, &commit_oid);
		p.res.commit[40] = '\0';
		rh_sha256_buf_hex(p.res.manifest_sha256, manifest, manifest_len);
		p.res.files = p.n;
		p.res.bytes = p.total;
		p.res.seconds = rh_clock_mono() - t0;
		*res = p.res;
	}
done:
	if (tagged) {
		char *tr = NULL;

		if (asprintf(&tr, "refs/tags/%s", tagname) >= 0) {
			git_reference_remove(p.repo, tr);
			free(tr);
		}
	}
	for (size_t i = 0; i < p.n; i++) {
		free(p.files[i].path);
		free(p.files[i].src);
	}
	free(p.files);
	free(p.buf);
	free(p.lfs_dir);
	free(tagname);
	free(tagref);
	free(branch_name);
	free(manifest);
	free(msg);
	free(sub);
	git_signature_free(sig);
	git_tree_free(tree);
	git_tree_free(base);
	git_object_free(commit_obj);
	git_commit_free(parent);
	git_reference_free(branch);
	git_reference_free(tag_ref);
	git_reference_free(head);
	git_repository_free(p.repo);
	return err;
}
