/*
 * registry.c - reads models out of a git-backed registry (libgit2 + LFS).
 *
 * A model version is a tag "NAME/VERSION"; its manifest.json lists every
 * file with size and sha256, and the sha256 of the manifest's bytes is the
 * model's identity. Resolving validates the manifest completely before a
 * byte moves, so a bad registry fails the drill with one clear message
 * instead of half a model on the target. Syncing streams each file into a
 * sink, which verifies it on the way: plain blobs straight from libgit2
 * (they are small by design: anything large must be in LFS, because libgit2
 * loads a blob whole), LFS objects through an rh_lfs_source, never whole.
 *
 * Remote registries are not handled yet. Where they will be: open() would
 * fetch into cache_dir before opening, and a second rh_lfs_source (the
 * batch API over HTTP) would be tried after the local store.
 */
#include "registry.h"
#include "cancel.h"
#include "error.h"
#include "lfs.h"
#include "sha256.h"

#include <git2.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "banned.h"

#define RH_MANIFEST_MAX (16u * 1024 * 1024)
#define RH_MANIFEST_FORMAT 1
#define RH_MODEL_NAME_MAX 128
#define RH_MODEL_VERSION_MAX 128

struct rh_registry {
	git_repository *repo;
	char *url;                 /* as given, for messages */
	char *gitdir;              /* the common git directory */
	struct rh_lfs_source *lfs; /* where LFS objects come from */
};

static pthread_once_t git_once = PTHREAD_ONCE_INIT;
static int git_init_rc;

/* libgit2 is initialised once per process and never shut down: steps run in
 * threads, and a shutdown racing a sync would free state under it. */
static void git_init_once(void)
{
	git_init_rc = git_libgit2_init();
}

static const char *git_msg(void)
{
	const git_error *e = git_error_last();

	return e && e->message ? e->message : "unknown libgit2 error";
}

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool is_hex_lower(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[n] == '\0';
}

/* "ssh://", "https://", "git@host:path": anything that is not a local path. */
static bool url_is_remote(const char *url)
{
	const char *colon = strchr(url, ':');
	const char *slash = strchr(url, '/');

	if (strstr(url, "://"))
		return true;
	return colon && (!slash || colon < slash);
}

int rh_registry_open(struct rh_registry **out, const char *url, const char *cache_dir)
{
	struct rh_registry *r = NULL;
	const char *path = url;
	int rc;
	int err = 0;

	(void)cache_dir; /* where remote registries will be cloned */
	*out = NULL;
	pthread_once(&git_once, git_init_once);
	if (git_init_rc < 0) {
		err = rh_error_set(RH_EIO, "cannot initialise libgit2: %s", git_msg());
		goto done;
	}
	if (!url || !*url) {
		err = rh_error_set(RH_EINVAL, "no registry given");
		goto done;
	}
	if (strncmp(url, "file://", 7) == 0) {
		path = url + 7;
		if (path[0] != '/') {
			err = rh_error_set(RH_EINVAL, "registry %s: a file:// URL needs an "
					   "absolute path (file:///path/to/registry)", url);
			goto done;
		}
	} else if (url_is_remote(url)) {
		err = rh_error_set(RH_EUNSUPPORTED, "registry %s: remote registries (URL) are not "
				   "supported yet: clone it and use the path", url);
		goto done;
	}
	r = calloc(1, sizeof(*r));
	if (!r || !(r->url = strdup(url))) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening registry %s", url);
		goto done;
	}
	/* NO_SEARCH: a path that is not a repository must fail, not silently
	 * open whatever repository contains it. */
	rc = git_repository_open_ext(&r->repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
	if (rc == GIT_ENOTFOUND) {
		err = rh_error_set(RH_ENOTFOUND, "registry %s: not a git repository (or it does "
				   "not exist)", url);
		goto done;
	}
	if (rc < 0) {
		err = rh_error_set(RH_EIO, "registry %s: cannot open: %s", url, git_msg());
		goto done;
	}
	/* LFS objects live in the common directory, shared by worktrees. */
	r->gitdir = strdup(git_repository_commondir(r->repo));
	if (!r->gitdir) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening registry %s", url);
		goto done;
	}
	err = rh_lfs_source_local_new(&r->lfs, r->gitdir);
	if (err < 0)
		goto done;
	*out = r;
	r = NULL;
done:
	rh_registry_free(r);
	return err;
}

void rh_registry_free(struct rh_registry *r)
{
	if (!r)
		return;
	rh_lfs_source_free(r->lfs);
	git_repository_free(r->repo);
	free(r->gitdir);
	free(r->url);
	free(r);
}

void rh_model_version_free(struct rh_model_version *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n_files; i++)
		free(v->files[i].path);
	free(v->files);
	json_decref(v->manifest);
	free(v->manifest_text);
	free(v->name);
	free(v->version);
	free(v);
}

/* A name is one path segment (it becomes models/NAME/ and part of a tag). */
static int check_name(const char *what, const char *s, size_t max)
{
	if (!s || !*s || strlen(s) > max)
		return rh_error_set(RH_EINVAL, "model %s \"%s\" is empty or too long", what,
				    s ? s : "");
	for (const char *c = s; *c; c++) {
		unsigned char ch = (unsigned char)*c;

		if (ch <= 0x20 || ch == 0x7f || strchr("/\\~^:?*[", ch))
			return rh_error_set(RH_EINVAL, "model %s \"%s\" has a character that "
					    "cannot be in a tag name ('%c')", what, s,
					    ch > 0x20 && ch != 0x7f ? ch : '?');
	}
	if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strstr(s, "..") || s[0] == '.' ||
	    strstr(s, "@{") || (strlen(s) >= 5 && strcmp(s + strlen(s) - 5, ".lock") == 0))
		return rh_error_set(RH_EINVAL, "model %s \"%s\" is not a valid tag component", what,
				    s);
	return 0;
}

struct version_list {
	char *prefix; /* "refs/tags/NAME/" */
	size_t prefix_len;
	char **items;
	size_t n, cap;
	bool oom;
};

static int collect_version(const char *refname, void *payload)
{
	struct version_list *vl = payload;
	char **grown;

	if (strncmp(refname, vl->prefix, vl->prefix_len) != 0)
		return 0;
	if (vl->n == vl->cap) {
		size_t cap = vl->cap ? vl->cap * 2 : 8;

		grown = realloc(vl->items, cap * sizeof(*grown));
		if (!grown) {
			vl->oom = true;
			return 1;
		}
		vl->items = grown;
		vl->cap = cap;
	}
	vl->items[vl->n] = strdup(refname + vl->prefix_len);
	if (!vl->items[vl->n]) {
		vl->oom = true;
		return 1;
	}
	vl->n++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* RH_ENOTFOUND naming the versions that do exist for `name`. */
static int version_not_found(struct rh_registry *r, const char *name, const char *version)
{
	struct version_list vl = { 0 };
	char *glob = NULL;
	char list[1024];
	size_t used = 0;
	int err;

	list[0] = '\0';
	if (asprintf(&vl.prefix, "refs/tags/%s/", name) < 0 ||
	    asprintf(&glob, "refs/tags/%s/*", name) < 0) {
		err = rh_error_set(RH_ENOMEM, "out of memory listing versions");
		goto done;
	}
	vl.prefix_len = strlen(vl.prefix);
	git_reference_foreach_glob(r->repo, glob, collect_version, &vl);
	if (vl.n > 1)
		qsort(vl.items, vl.n, sizeof(*vl.items), cmp_str);
	for (size_t i = 0; i < vl.n && used < sizeof(list) - 1; i++) {
		int n = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "",
				 vl.items[i]);

		if (n < 0)
			break;
		used += (size_t)n;
	}
	if (vl.n == 0)
		err = rh_error_set(RH_ENOTFOUND, "registry %s has no model %s (no tags %s/*): "
				   "check the model name", r->url, name, name);
	else
		err = rh_error_set(RH_ENOTFOUND, "registry %s has no version %s of model %s (no "
				   "tag %s/%s); versions: %s", r->url, version, name, name, version,
				   list);
done:
	for (size_t i = 0; i < vl.n; i++)
		free(vl.items[i]);
	free(vl.items);
	free(vl.prefix);
	free(glob);
	return err;
}

static bool key_allowed(const char *key, const char *const *allowed)
{
	for (size_t i = 0; allowed[i]; i++)
		if (strcmp(key, allowed[i]) == 0)
			return true;
	return false;
}

/* Validates the parsed manifest and fills v->files. `where` is
 * "REGISTRY@COMMIT:models/NAME/manifest.json" for messages. */
static int manifest_check(struct rh_model_version *v, const char *where)
{
	static const char *const top_keys[] = { "rehydra_manifest", "name", "version", "files",
						"license", "serving", "export", "description",
						"role", NULL };
	static const char *const file_keys[] = { "path", "size", "sha256", "role",
						 "description", NULL };
	json_t *m = v->manifest;
	json_t *files;
	json_t *seen = NULL;
	const char *key;
	json_t *val;
	size_t n;
	int err = 0;

	if (!json_is_object(m)) {
		err = rh_error_set(RH_EINVAL, "%s: not a JSON object", where);
		goto done;
	}
	json_object_foreach(m, key, val) {
		if (!key_allowed(key, top_keys)) {
			err = rh_error_set(RH_EINVAL, "%s: unknown key \"%s\"", where, key);
			goto done;
		}
	}
	val = json_object_get(m, "rehydra_manifest");
	if (!json_is_integer(val) || json_integer_value(val) != RH_MANIFEST_FORMAT) {
		err = rh_error_set(RH_EINVAL, "%s: \"rehydra_manifest\" must be %d", where,
				   RH_MANIFEST_FORMAT);
		goto done;
	}
	val = json_object_get(m, "name");
	if (!json_is_string(val) || strcmp(json_string_value(val), v->name) != 0) {
		err = rh_error_set(RH_EINVAL, "%s: \"name\" must be \"%s\" (the tag's model)",
				   where, v->name);
		goto done;
	}
	val = json_object_get(m, "version");
	if (!json_is_string(val) || strcmp(json_string_value(val), v->version) != 0) {
		err = rh_error_set(RH_EINVAL, "%s: \"version\" must be \"%s\" (the tag's version)",
				   where, v->version);
		goto done;
	}
	files = json_object_get(m, "files");
	if (!json_is_array(files)) {
		err = rh_error_set(RH_EINVAL, "%s: \"files\" must be an array", where);
		goto done;
	}
	n = json_array_size(files);
	v->files = calloc(n ? n : 1, sizeof(*v->files));
	seen = json_object();
	if (!v->files || !seen) {
		err = rh_error_set(RH_ENOMEM, "out of memory reading %s", where);
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *f = json_array_get(files, i);
		json_t *jp = json_object_get(f, "path");
		json_t *js = json_object_get(f, "size");
		json_t *jh = json_object_get(f, "sha256");
		struct rh_manifest_file *mf = &v->files[i];
		const char *path;

		if (!json_is_object(f)) {
			err = rh_error_set(RH_EINVAL, "%s: files[%zu] is not an object", where, i);
			goto done;
		}
		json_object_foreach(f, key, val) {
			if (!key_allowed(key, file_keys)) {
				err = rh_error_set(RH_EINVAL, "%s: files[%zu]: unknown key \"%s\"",
						   where, i, key);
				goto done;
			}
		}
		if (!json_is_string(jp)) {
			err = rh_error_set(RH_EINVAL, "%s: files[%zu].path must be a string", where,
					   i);
			goto done;
		}
		path = json_string_value(jp);
		if (!rh_sink_path_is_safe(path) || strlen(path) != json_string_length(jp)) {
			err = rh_error_set(RH_EINVAL, "%s: files[%zu].path \"%s\" is not a safe "
					   "relative path (no \"..\", \".\", empty segments, "
					   "leading '/', backslashes or control characters)", where,
					   i, path);
			goto done;
		}
		if (strcmp(path, "manifest.json") == 0) {
			err = rh_error_set(RH_EINVAL, "%s: files[%zu]: \"manifest.json\" cannot be "
					   "a model file (the manifest is copied by itself)", where,
					   i);
			goto done;
		}
		if (json_object_get(seen, path)) {
			err = rh_error_set(RH_EINVAL, "%s: files[%zu]: path \"%s\" is listed twice",
					   where, i, path);
			goto done;
		}
		if (json_object_set_new(seen, path, json_integer((json_int_t)i)) != 0) {
			err = rh_error_set(RH_ENOMEM, "out of memory reading %s", where);
			goto done;
		}
		if (!json_is_integer(js) || json_integer_value(js) < 0) {
			err = rh_error_set(RH_EINVAL, "%s: files[%zu] (%s): size must be an "
					   "integer >= 0", where, i, path);
			goto done;
		}
		if (!json_is_string(jh) || json_string_length(jh) != 64 ||
		    !is_hex_lower(json_string_value(jh), 64)) {
			err = rh_error_set(RH_EINVAL, "%s: files[%zu] (%s): sha256 must be 64 "
					   "lowercase hex digits", where, i, path);
			goto done;
		}
		mf->path = strdup(path);
		if (!mf->path) {
			err = rh_error_set(RH_ENOMEM, "out of memory reading %s", where);
			goto done;
		}
		mf->size = (uint64_t)json_integer_value(js);
		memcpy(mf->sha256, json_string_value(jh), 65);
		v->n_files = i + 1;
		v->total_bytes += mf->size;
	}
	/* "a" and "a/b" cannot both be files: a sink could write only one. */
	for (size_t i = 0; i < v->n_files; i++) {
		char *p = v->files[i].path;

		for (char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
			*s = '\0';
			val = json_object_get(seen, p);
			*s = '/';
			if (val) {
				err = rh_error_set(RH_EINVAL, "%s: files[%zu]: \"%s\" is inside "
						   "\"%.*s\", which is also listed as a file",
						   where, i, p, (int)(s - p), p);
				goto done;
			}
		}
	}
done:
	json_decref(seen);
	return err;
}

int rh_registry_resolve(struct rh_model_version **out, struct rh_registry *r, const char *name,
			const char *version, const char *commit)
{
	struct rh_model_version *v = NULL;
	git_object *tag_obj = NULL;
	git_object *cobj = NULL;
	git_tree *tree = NULL;
	git_tree_entry *entry = NULL;
	git_blob *blob = NULL;
	json_error_t jerr;
	char *refname = NULL;
	char *mpath = NULL;
	char where[1024];
	char pin[41];
	const void *raw;
	size_t len;
	int rc;
	int err = 0;

	*out = NULL;
	err = check_name("name", name, RH_MODEL_NAME_MAX);
	if (err == 0)
		err = check_name("version", version, RH_MODEL_VERSION_MAX);
	if (err < 0) {
		rh_error_prefix(err, "registry %s", r->url);
		goto done;
	}
	if (commit) {
		size_t cl = strlen(commit);

		for (size_t i = 0; i < cl && i < 40; i++)
			pin[i] = (char)((commit[i] >= 'A' && commit[i] <= 'F') ? commit[i] + 32
									 : commit[i]);
		pin[cl < 40 ? cl : 40] = '\0';
		if (cl != 40 || !is_hex_lower(pin, 40)) {
			err = rh_error_set(RH_EINVAL, "registry %s: commit pin \"%s\" is not 40 "
					   "hex digits", r->url, commit);
			goto done;
		}
	}
	v = calloc(1, sizeof(*v));
	if (!v || !(v->name = strdup(name)) || !(v->version = strdup(version)) ||
	    asprintf(&refname, "refs/tags/%s/%s", name, version) < 0 ||
	    asprintf(&mpath, "models/%s/manifest.json", name) < 0) {
		err = rh_error_set(RH_ENOMEM, "out of memory resolving %s %s", name, version);
		goto done;
	}
	rc = git_revparse_single(&tag_obj, r->repo, refname);
	if (rc == GIT_ENOTFOUND) {
		err = version_not_found(r, name, version);
		goto done;
	}
	if (rc < 0) {
		err = rh_error_set(RH_EIO, "registry %s: cannot read tag %s/%s: %s", r->url, name,
				   version, git_msg());
		goto done;
	}
	if (git_object_peel(&cobj, tag_obj, GIT_OBJECT_COMMIT) < 0) {
		err = rh_error_set(RH_EINVAL, "registry %s: tag %s/%s does not point to a commit: "
				   "%s", r->url, name, version, git_msg());
		goto done;
	}
	git_oid_fmt(v->commit, git_object_id(cobj));
	v->commit[40] = '\0';
	if (commit && strcmp(pin, v->commit) != 0) {
		err = rh_error_set(RH_EVERIFY, "registry %s: tag %s/%s is commit %s but the "
				   "runbook pins commit %s: the tag was moved or the pin is stale; "
				   "check which one is right", r->url, name, version, v->commit,
				   pin);
		goto done;
	}
	snprintf(where, sizeof(where), "%s@%.12s:%s", r->url, v->commit, mpath);
	if (git_commit_tree(&tree, (git_commit *)cobj) < 0) {
		err = rh_error_set(RH_EIO, "%s: cannot read the commit's tree: %s", where,
				   git_msg());
		goto done;
	}
	rc = git_tree_entry_bypath(&entry, tree, mpath);
	if (rc == GIT_ENOTFOUND) {
		err = rh_error_set(RH_ENOTFOUND, "%s does not exist: the tag %s/%s does not hold "
				   "model %s", where, name, version, name);
		goto done;
	}
	if (rc < 0 || git_tree_entry_type(entry) != GIT_OBJECT_BLOB ||
	    git_tree_entry_filemode(entry) == GIT_FILEMODE_LINK) {
		err = rh_error_set(RH_EINVAL, "%s: not a regular file", where);
		goto done;
	}
	if (git_blob_lookup(&blob, r->repo, git_tree_entry_id(entry)) < 0) {
		err = rh_error_set(RH_EIO, "%s: cannot read: %s", where, git_msg());
		goto done;
	}
	raw = git_blob_rawcontent(blob);
	len = (size_t)git_blob_rawsize(blob);
	if (len > RH_MANIFEST_MAX) {
		err = rh_error_set(RH_EINVAL, "%s: larger than %u bytes", where, RH_MANIFEST_MAX);
		goto done;
	}
	if (rh_lfs_pointer_detect(raw, len)) {
		err = rh_error_set(RH_EINVAL, "%s is a Git LFS pointer: keep manifests out of LFS "
				   "(exclude manifest.json in .gitattributes)", where);
		goto done;
	}
	v->manifest_text = malloc(len + 1);
	if (!v->manifest_text) {
		err = rh_error_set(RH_ENOMEM, "out of memory reading %s", where);
		goto done;
	}
	memcpy(v->manifest_text, raw, len);
	v->manifest_text[len] = '\0';
	v->manifest_len = len;
	rh_sha256_buf_hex(v->manifest_sha256, raw, len);
	v->manifest = json_loadb(v->manifest_text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!v->manifest) {
		err = rh_error_set(RH_EINVAL, "%s:%d:%d: %s", where, jerr.line, jerr.column,
				   jerr.text);
		goto done;
	}
	err = manifest_check(v, where);
	if (err < 0)
		goto done;
	*out = v;
	v = NULL;
done:
	git_blob_free(blob);
	git_tree_entry_free(entry);
	git_tree_free(tree);
	git_object_free(cobj);
	git_object_free(tag_obj);
	free(refname);
	free(mpath);
	rh_model_version_free(v);
	return err;
}

struct mem_reader {
	const unsigned char *data;
	size_t len;
	size_t off;
};

static long mem_read(void *user, void *buf, size_t len)
{
	struct mem_reader *m = user;
	size_t n = m->len - m->off;

	if (n > len)
		n = len;
	memcpy(buf, m->data + m->off, n);
	m->off += n;
	return (long)n;
}

/* Opens the bytes of one manifest file: an LFS object or the blob itself.
 * The pointer must agree with the manifest, so a registry whose pointer
 * and manifest disagree fails here rather than in the sink. */
static int file_open(struct rh_registry *r, const struct rh_model_version *v,
		     const struct rh_manifest_file *mf, git_tree *tree, git_blob **blob,
		     struct mem_reader *mem, struct rh_lfs_reader *rd, const char *where)
{
	git_tree_entry *entry = NULL;
	struct rh_lfs_pointer ptr;
	char *gpath = NULL;
	const void *raw;
	size_t len;
	int rc;
	int err = 0;

	(void)v;
	if (asprintf(&gpath, "models/%s/%s", v->name, mf->path) < 0) {
		gpath = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory reading %s", where);
		goto done;
	}
	rc = git_tree_entry_bypath(&entry, tree, gpath);
	if (rc == GIT_ENOTFOUND) {
		err = rh_error_set(RH_ENOTFOUND, "%s is listed in the manifest but is not in the "
				   "commit", where);
		goto done;
	}
	if (rc < 0 || git_tree_entry_type(entry) != GIT_OBJECT_BLOB ||
	    git_tree_entry_filemode(entry) == GIT_FILEMODE_LINK) {
		err = rh_error_set(RH_EINVAL, "%s is not a regular file in the commit", where);
		goto done;
	}
	if (git_blob_lookup(blob, r->repo, git_tree_entry_id(entry)) < 0) {
		err = rh_error_set(RH_EIO, "%s: cannot read: %s", where, git_msg());
		goto done;
	}
	raw = git_blob_rawcontent(*blob);
	len = (size_t)git_blob_rawsize(*blob);
	if (!rh_lfs_pointer_detect(raw, len)) {
		mem->data = raw;
		mem->len = len;
		mem->off = 0;
		rd->read = mem_read;
		rd->user = mem;
		rd->close = NULL;
		goto done;
	}
	err = rh_lfs_pointer_parse(&ptr, raw, len);
	if (err < 0) {
		rh_error_prefix(err, "%s: malformed Git LFS pointer", where);
		goto done;
	}
	if (strcmp(ptr.oid, mf->sha256) != 0 || ptr.size != mf->size) {
		err = rh_error_set(RH_EVERIFY, "%s: the Git LFS pointer (oid %s, size %llu) does "
				   "not match the manifest (sha256 %s, size %llu)", where, ptr.oid,
				   (unsigned long long)ptr.size, mf->sha256,
				   (unsigned long long)mf->size);
		goto done;
	}
	err = r->lfs->open(r->lfs, &ptr, rd);
	if (err < 0)
		rh_error_prefix(err, "%s", where);
done:
	git_tree_entry_free(entry);
	free(gpath);
	return err;
}

static int sync_one(struct rh_sink *sink, const char *path, uint64_t size, const char *sha256,
		    rh_sink_read_fn readfn, void *user, struct rh_sync_stats *st)
{
	int err = sink->ops->put(sink, path, size, sha256, readfn, user);

	if (err == 0) {
		st->bytes_sent += size;
		st->files++;
	}
	return err;
}

int rh_registry_sync(struct rh_registry *r, const struct rh_model_version *v, struct rh_sink *sink,
		     struct rh_cancel *cancel, struct rh_sync_stats *stats)
{
	struct rh_sync_stats st = { 0 };
	struct rh_cancel *saved_cancel = sink->cancel;
	git_commit *commit = NULL;
	git_tree *tree = NULL;
	git_oid oid;
	double t0 = now_mono();
	char where[1024];
	bool present;
	int err = 0;

	if (!sink->cancel)
		sink->cancel = cancel;
	if (git_oid_fromstr(&oid, v->commit) < 0 || git_commit_lookup(&commit, r->repo, &oid) < 0 ||
	    git_commit_tree(&tree, commit) < 0) {
		err = rh_error_set(RH_EIO, "registry %s: cannot read commit %s: %s", r->url,
				   v->commit, git_msg());
		goto done;
	}
	for (size_t i = 0; i < v->n_files; i++) {
		const struct rh_manifest_file *mf = &v->files[i];
		struct rh_lfs_reader rd = { 0 };
		struct mem_reader mem = { 0 };
		git_blob *blob = NULL;

		if (cancel && rh_cancel_is_fired(cancel)) {
			err = rh_error_set(RH_ECANCELLED, "cancelled syncing %s %s to %s", v->name,
					   v->version, sink->url);
			goto done;
		}
		snprintf(where, sizeof(where), "%s@%.12s:models/%s/%s", r->url, v->commit,
			 v->name, mf->path);
		err = file_open(r, v, mf, tree, &blob, &mem, &rd, where);
		if (err == 0) {
			err = sink->ops->has(sink, mf->path, mf->size, mf->sha256, &present);
			if (err == 0 && present) {
				st.bytes_skipped += mf->size;
				st.files++;
			} else if (err == 0) {
				err = sync_one(sink, mf->path, mf->size, mf->sha256, rd.read,
					       rd.user, &st);
			}
			if (err < 0 && err != RH_ECANCELLED)
				rh_error_prefix(err, "%s", where);
		}
		if (rd.close)
			rd.close(rd.user);
		git_blob_free(blob);
		if (err < 0)
			goto done;
	}
	/* The manifest last: its presence on the target says the set is whole. */
	err = sink->ops->has(sink, "manifest.json", v->manifest_len, v->manifest_sha256,
			     &present);
	if (err == 0 && present) {
		st.bytes_skipped += v->manifest_len;
		st.files++;
	} else if (err == 0) {
		struct mem_reader mem = { (const unsigned char *)v->manifest_text, v->manifest_len,
					  0 };

		err = sync_one(sink, "manifest.json", v->manifest_len, v->manifest_sha256,
			       mem_read, &mem, &st);
	}
	if (err < 0)
		goto done;
	err = sink->ops->commit(sink);
done:
	sink->cancel = saved_cancel;
	git_tree_free(tree);
	git_commit_free(commit);
	st.seconds = now_mono() - t0;
	if (stats)
		*stats = st;
	return err;
}
