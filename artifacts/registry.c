/*
 * registry.c - reads models out of a git-backed registry (libgit2 + LFS).
 *
 * A model version is a tag "NAME/VERSION"; its manifest.json lists every
 * file with size and sha256, and the sha256 of the manifest's bytes is the
 * model's identity. Resolving validates the manifest completely before a
 * byte moves, so a bad registry fails the drill with one clear message
 * instead of half a model on the target.
 *
 * A registry given by path is read in place. One given by URL is cloned
 * (bare) into the cache once and fetched incrementally afterwards: a drill
 * runs when the primary site may be gone, so when the fetch fails and a
 * clone exists we go on with it and say so (rh_registry_is_stale) rather
 * than fail the recovery on a registry that cannot be reached. A clone is
 * built in a temporary directory and renamed into place, so one cut off
 * half way never looks complete; a lock file serialises processes that
 * open the same registry at once.
 *
 * File bytes come out as random-access sources: plain blobs from memory
 * (small by design: libgit2 loads a blob whole, so anything large belongs
 * in LFS), LFS objects from a local LFS store, or from the content-addressed
 * cache, fetched through the LFS batch API when missing (lfs_http.c) and
 * renamed into the cache only once verified (cache.c).
 */
#include "registry.h"
#include "cache.h"
#include "cancel.h"
#include "netstream.h"
#include "error.h"
#include "fsutil.h"
#include "global.h"
#include "hex.h"
#include "lfs.h"
#include "sha256.h"
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
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "banned.h"

#define RH_MANIFEST_MAX (16u * 1024 * 1024)
#define RH_MANIFEST_FORMAT 1
#define RH_MODEL_NAME_MAX 128
#define RH_MODEL_VERSION_MAX 128
#define RH_FETCH_TIMEOUT_S 600.0
#define RH_CRED_TRIES 3

struct rh_registry {
	/* One repository's libgit2 objects are not safe to use from several
	 * threads at once; file_source is, so git calls hold this lock. */
	pthread_mutex_t lock;
	git_repository *repo;
	char *url;	 /* as given, without credentials: for messages */
	char *gitdir;	 /* the common git directory (the clone, for URLs) */
	char *cache_dir; /* NULL for path registries */
	/* Where LFS objects come from: a local store (the gitdir whose
	 * lfs/objects holds them) or an LFS server; neither when unknown,
	 * with lfs_problem saying why. */
	char *lfs_store;
	struct rh_lfs_remote *lfs_remote;
	char *lfs_problem;
	bool stale;
	char *stale_reason;
};

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

/* "ssh://", "https://", "git@host:path": anything that is not a local path. */
static bool url_is_remote(const char *url)
{
	const char *colon = strchr(url, ':');
	const char *slash = strchr(url, '/');

	if (strstr(url, "://"))
		return true;
	return colon && (!slash || colon < slash);
}

static bool is_dir(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* ---- fetching ------------------------------------------------------------ */

struct fetch_ctx {
	struct rh_cancel *cancel;
	double deadline;  /* CLOCK_MONOTONIC */
	const char *user; /* from the URL, may be NULL */
	const char *pass; /* secret, may be NULL */
	unsigned cred_tries;
	bool cancelled;
	bool timed_out;
};

/* libgit2 has no per-operation timeout: every progress callback checks the
 * deadline and the cancel token and aborts the transfer (GIT_EUSER). */
static int fetch_check(struct fetch_ctx *fc)
{
	if (fc->cancel && rh_cancel_is_fired(fc->cancel)) {
		fc->cancelled = true;
		return GIT_EUSER;
	}
	if (now_mono() > fc->deadline) {
		fc->timed_out = true;
		return GIT_EUSER;
	}
	return 0;
}

static int on_transfer(const git_indexer_progress *stats, void *payload)
{
	(void)stats;
	return fetch_check(payload);
}

static int on_sideband(const char *str, int len, void *payload)
{
	(void)str;
	(void)len;
	return fetch_check(payload);
}

static int on_tips(const char *refname, const git_oid *a, const git_oid *b, void *payload)
{
	(void)refname;
	(void)a;
	(void)b;
	return fetch_check(payload);
}

static int on_credentials(git_credential **out, const char *url, const char *username_from_url,
			  unsigned int allowed, void *payload)
{
	struct fetch_ctx *fc = payload;
	const char *user = username_from_url ? username_from_url : fc->user;

	(void)url;
	if (fetch_check(fc) != 0)
		return GIT_EUSER;
	/* libgit2 asks again after every refusal: stop instead of looping. */
	if (++fc->cred_tries > RH_CRED_TRIES)
		return GIT_PASSTHROUGH;
	if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) && fc->pass)
		return git_credential_userpass_plaintext_new(out, fc->user ? fc->user : "",
							     fc->pass);
	if ((allowed & GIT_CREDENTIAL_SSH_KEY) && user)
		return git_credential_ssh_key_from_agent(out, user);
	if ((allowed & GIT_CREDENTIAL_USERNAME) && user)
		return git_credential_username_new(out, user);
	return GIT_PASSTHROUGH;
}

/* Fetches every branch and tag of `conn_url` into `repo` (mirroring: forced
 * updates, pruned deletions) and points HEAD at the remote's default branch.
 * An anonymous remote keeps the URL (and any user name in it) out of the
 * clone's config. */
static int fetch_all(git_repository *repo, const char *conn_url, const char *name,
		     struct fetch_ctx *fc)
{
	static char *specs[] = {"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"};
	git_strarray refspecs = {specs, 2};
	git_fetch_options fo;
	git_remote_create_options ro;
	git_remote *remote = NULL;
	git_buf head = {0};
	struct rh_net_scope scope;
	bool scoped = false;
	int rc;
	int err = 0;

	/* the connections of this fetch end at its deadline or cancel, even in
	 * a recv() that no progress callback would ever interrupt */
	err = rh_net_scope_begin(&scope, fc->deadline, fc->cancel);
	if (err < 0)
		return err;
	scoped = true;
	git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
	fo.callbacks.transfer_progress = on_transfer;
	fo.callbacks.sideband_progress = on_sideband;
	fo.callbacks.update_tips = on_tips;
	fo.callbacks.credentials = on_credentials;
	fo.callbacks.payload = fc;
	fo.prune = GIT_FETCH_PRUNE;
	fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_ALL;
	fo.update_fetchhead = 0;
	/* insteadOf rewriting is skipped: the registry is the URL the runbook
	 * names, whatever this host's git config says (and libgit2 1.5 leaks
	 * the regex match data of that config lookup). */
	git_remote_create_options_init(&ro, GIT_REMOTE_CREATE_OPTIONS_VERSION);
	ro.repository = repo;
	ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
	rc = git_remote_create_with_opts(&remote, conn_url, &ro);
	if (rc == 0)
		rc = git_remote_fetch(remote, &refspecs, &fo, "rehydra: fetch");
	if (rc < 0) {
		const char *peer = NULL;
		enum rh_net_stop why = rh_net_scope_stopped(&scope, &peer);

		if (fc->cancelled || why == RH_NET_CANCELLED ||
		    (fc->cancel && rh_cancel_is_fired(fc->cancel)))
			err = rh_error_set(RH_ECANCELLED, "registry %s: fetch cancelled", name);
		else if (fc->timed_out || why == RH_NET_DEADLINE)
			err = rh_error_set(RH_ETIMEOUT, "registry %s: fetch did not finish in time",
					   name);
		else if (why == RH_NET_CONNECT_SLOW || why == RH_NET_IDLE)
			err = rh_error_set(RH_ETIMEOUT, "registry %s: %s", name, git_msg());
		else
			err =
			    rh_error_set(RH_EIO, "registry %s: cannot fetch: %s", name, git_msg());
		goto done;
	}
	/* HEAD decides which .lfsconfig counts, as in a clone made by git. */
	if (git_remote_default_branch(&head, remote) == 0 && head.ptr) {
		git_repository_set_head(repo, head.ptr);
	} else {
		git_reference *ref = NULL;

		if (git_reference_lookup(&ref, repo, "refs/heads/main") == 0)
			git_repository_set_head(repo, "refs/heads/main");
		else if (git_reference_lookup(&ref, repo, "refs/heads/master") == 0)
			git_repository_set_head(repo, "refs/heads/master");
		git_reference_free(ref);
	}
done:
	git_buf_dispose(&head);
	git_remote_free(remote);
	if (scoped)
		rh_net_scope_end(&scope);
	return err;
}

/* Takes <registries>/<key>.lock, waiting for another process that holds it
 * until the deadline. Returns the fd (close to release) or an error. */
static int lock_take(const char *path, struct fetch_ctx *fc, const char *name)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		return rh_error_set_errno(RH_EIO, errno, "cannot open lock %s", path);
	while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			int e = errno;

			close(fd);
			return rh_error_set_errno(RH_EIO, e, "cannot lock %s", path);
		}
		if (fetch_check(fc) != 0) {
			close(fd);
			return rh_error_set(fc->cancelled ? RH_ECANCELLED : RH_ETIMEOUT,
					    "registry %s: another process is fetching it (%s) "
					    "and did not finish in time",
					    name, path);
		}
		rh_cancel_sleep(fc->cancel, 0.1);
	}
	return fd;
}

/* Clones into a temporary directory beside `dir` and renames it into place:
 * a clone cut off half way never sits under the final name. */
static int clone_fresh(const char *regdir, const char *key, const char *dir, const char *conn_url,
		       const char *name, struct fetch_ctx *fc)
{
	git_repository *repo = NULL;
	char *tmp = NULL;
	char rnd[17];
	int err = 0;

	rh_fs_rand_hex(rnd);
	err = rh_asprintf(&tmp, "%s/.clone-%s-%s", regdir, key, rnd);
	if (err < 0)
		goto done;
	if (git_repository_init(&repo, tmp, 1) < 0) {
		err = rh_error_set(RH_EIO, "registry %s: cannot create a clone in %s: %s", name,
				   tmp, git_msg());
		goto done;
	}
	err = fetch_all(repo, conn_url, name, fc);
	if (err < 0)
		goto done;
	git_repository_free(repo);
	repo = NULL;
	if (rename(tmp, dir) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "registry %s: cannot move the clone to %s",
					 name, dir);
		goto done;
	}
done:
	git_repository_free(repo);
	if (err < 0 && tmp)
		rh_fs_rm_rf(tmp);
	free(tmp);
	return err;
}

/* ---- where LFS objects come from ------------------------------------------ */

/* The git directory of the repository at local path `path`: "<path>/.git"
 * for a work tree, else `path` (bare). New string. */
static char *local_gitdir(const char *path)
{
	char *dotgit = NULL;

	if (asprintf(&dotgit, "%s/.git", path) < 0)
		return NULL;
	if (is_dir(dotgit))
		return dotgit;
	free(dotgit);
	return strdup(path);
}

/* lfs.url from the .lfsconfig at HEAD (as git-lfs reads it from a clone's
 * work tree), else remote.origin.lfsurl there; *out new or NULL. libgit2
 * parses it: it is git-config syntax. */
static int read_lfsconfig(char **out, struct rh_registry *r)
{
	git_object *obj = NULL;
	git_config *cfg = NULL;
	git_buf val = {0};
	char *tmp = NULL;
	char rnd[17];
	int fd = -1;
	int err = 0;

	*out = NULL;
	if (git_revparse_single(&obj, r->repo, "HEAD:.lfsconfig") < 0 ||
	    git_object_type(obj) != GIT_OBJECT_BLOB)
		goto done;
	rh_fs_rand_hex(rnd);
	err = rh_asprintf(&tmp, "%s/lfsconfig.tmp-%s", r->gitdir, rnd);
	if (err < 0)
		goto done;
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || rh_fs_write_all(fd, git_blob_rawcontent((git_blob *)obj),
				      (size_t)git_blob_rawsize((git_blob *)obj)) < 0) {
		err = rh_error_set_errno(RH_EIO, errno, "registry %s: cannot read .lfsconfig",
					 r->url);
		goto done;
	}
	if (git_config_open_ondisk(&cfg, tmp) < 0) {
		err = rh_error_set(RH_EINVAL,
				   "registry %s: .lfsconfig at HEAD is not valid "
				   "git-config syntax: %s",
				   r->url, git_msg());
		goto done;
	}
	if (git_config_get_string_buf(&val, cfg, "lfs.url") == 0 ||
	    git_config_get_string_buf(&val, cfg, "remote.origin.lfsurl") == 0) {
		*out = strdup(val.ptr);
		if (!*out)
			err = rh_error_set(RH_ENOMEM, "out of memory");
	}
done:
	if (fd >= 0)
		close(fd);
	if (tmp)
		unlink(tmp);
	free(tmp);
	git_buf_dispose(&val);
	git_config_free(cfg);
	git_object_free(obj);
	return err;
}

/* "scheme://host:port" part of a URL, for comparing two URLs' servers. */
static bool same_server(const char *a, const char *b)
{
	char *ra = rh_lfs_url_redact(a);
	char *rb = rh_lfs_url_redact(b);
	bool same = false;

	if (ra && rb && strstr(ra, "://") && strstr(rb, "://")) {
		size_t na = (size_t)(strstr(ra, "://") - ra) + 3;
		size_t nb = (size_t)(strstr(rb, "://") - rb) + 3;

		na += strcspn(ra + na, "/?#");
		nb += strcspn(rb + nb, "/?#");
		same = na == nb && strncasecmp(ra, rb, na) == 0;
	}
	free(ra);
	free(rb);
	return same;
}

/* Picks the LFS source of a URL registry: lfs.url from .lfsconfig, else
 * the remote's own (http(s)), else a file:// remote's local store. */
static int lfs_setup(struct rh_registry *r, const char *url)
{
	char *lfsurl = NULL;
	char *endpoint = NULL;
	int err;

	err = read_lfsconfig(&lfsurl, r);
	if (err < 0)
		goto done;
	if (lfsurl && strncmp(lfsurl, "file://", 7) == 0) {
		r->lfs_store = local_gitdir(lfsurl + 7);
		if (!r->lfs_store)
			err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	if (lfsurl) {
		/* Credentials in the registry URL follow it to its own server
		 * only, never to another host named by the registry's content. */
		char *bare = NULL, *user = NULL, *pass = NULL;

		if (!strchr(lfsurl, '@') && same_server(lfsurl, url) &&
		    rh_lfs_url_split(url, &bare, &user, &pass) == 0 && pass) {
			const char *sep = strstr(lfsurl, "://");

			if (sep && asprintf(&endpoint, "%.*s%s:%s@%s", (int)(sep + 3 - lfsurl),
					    lfsurl, user ? user : "", pass, sep + 3) < 0)
				endpoint = NULL;
		}
		if (pass)
			explicit_bzero(pass, strlen(pass));
		free(bare);
		free(user);
		free(pass);
		if (!endpoint)
			endpoint = strdup(lfsurl);
	} else if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
		endpoint = rh_lfs_endpoint_for_remote(url);
	} else if (strncmp(url, "file://", 7) == 0) {
		r->lfs_store = local_gitdir(url + 7);
		if (!r->lfs_store)
			err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	} else {
		err = asprintf(&r->lfs_problem,
			       "registry %s has no lfs.url in its .lfsconfig: "
			       "rehydra reaches LFS objects of ssh registries only through an "
			       "HTTP LFS server named there",
			       r->url) < 0
			  ? RH_ENOMEM
			  : 0;
		if (err < 0) {
			r->lfs_problem = NULL;
			rh_error_set(err, "out of memory");
		}
		goto done;
	}
	if (!endpoint) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	err = rh_lfs_remote_new(&r->lfs_remote, endpoint);
	if (err < 0)
		rh_error_prefix(err, "registry %s", r->url);
done:
	if (endpoint)
		explicit_bzero(endpoint, strlen(endpoint));
	free(endpoint);
	free(lfsurl);
	return err;
}

/* ---- opening --------------------------------------------------------------- */

static int open_path(struct rh_registry *r, const char *path)
{
	int rc;

	/* NO_SEARCH: a path that is not a repository must fail, not silently
	 * open whatever repository contains it. */
	rc = git_repository_open_ext(&r->repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
	if (rc == GIT_ENOTFOUND)
		return rh_error_set(RH_ENOTFOUND,
				    "registry %s: not a git repository (or it does "
				    "not exist)",
				    r->url);
	if (rc < 0)
		return rh_error_set(RH_EIO, "registry %s: cannot open: %s", r->url, git_msg());
	/* LFS objects live in the common directory, shared by worktrees. */
	r->gitdir = strdup(git_repository_commondir(r->repo));
	if (!r->gitdir)
		return rh_error_set(RH_ENOMEM, "out of memory opening registry %s", r->url);
	return 0;
}

/* The URL libgit2 connects to: no password (that goes through the
 * credentials callback), but an ssh user name stays: it is the login. */
static char *connect_url(const char *url, const char *bare, const char *user)
{
	const char *sep = strstr(bare, "://");
	char *out = NULL;

	if (user && *user && sep && strncmp(url, "http", 4) != 0) {
		if (asprintf(&out, "%.*s%s@%s", (int)(sep + 3 - bare), bare, user, sep + 3) < 0)
			out = NULL;
		return out;
	}
	return strdup(bare);
}

static int open_url(struct rh_registry *r, const char *url, const char *cache_dir,
		    const struct rh_registry_opts *opts)
{
	struct fetch_ctx fc = {0};
	char *bare = NULL, *user = NULL, *pass = NULL;
	char *conn = NULL;
	char *regdir = NULL;
	char *dir = NULL;
	char *lockpath = NULL;
	char key[65];
	int lockfd = -1;
	int err;

	fc.cancel = opts->cancel;
	fc.deadline =
	    now_mono() + (opts->fetch_timeout_s > 0 ? opts->fetch_timeout_s : RH_FETCH_TIMEOUT_S);
	err = rh_lfs_url_split(url, &bare, &user, &pass);
	if (err < 0)
		goto done;
	fc.user = user;
	fc.pass = pass;
	/* The key names the repository, not who reads it: credentials are not
	 * part of it, so a changed token still finds the same clone. */
	rh_sha256_buf_hex(key, bare, strlen(bare));
	key[16] = '\0';
	conn = connect_url(url, bare, user);
	r->cache_dir = strdup(cache_dir);
	if (!conn || !r->cache_dir || asprintf(&regdir, "%s/registries", cache_dir) < 0 ||
	    asprintf(&dir, "%s/%s", regdir, key) < 0 ||
	    asprintf(&lockpath, "%s/%s.lock", regdir, key) < 0) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening registry %s", r->url);
		goto done;
	}
	err = rh_fs_mkdir_p(regdir);
	if (err < 0)
		goto done;
	lockfd = lock_take(lockpath, &fc, r->url);
	if (lockfd < 0) {
		err = lockfd;
		goto done;
	}
	if (!is_dir(dir)) {
		if (opts->offline) {
			err = rh_error_set(RH_ENOTFOUND,
					   "registry %s is not in the cache (%s) and "
					   "offline mode forbids fetching it",
					   r->url, cache_dir);
			goto done;
		}
		err = clone_fresh(regdir, key, dir, conn, r->url, &fc);
		if (err < 0)
			goto done;
		err = open_path(r, dir);
		if (err < 0)
			goto done;
	} else {
		err = open_path(r, dir);
		if (err < 0)
			goto done;
		if (opts->offline) {
			r->stale = true;
			r->stale_reason = strdup("offline mode: not fetched");
		} else if ((err = fetch_all(r->repo, conn, r->url, &fc)) < 0) {
			if (err == RH_ECANCELLED)
				goto done;
			/* The recovery goes on with what the cache has. */
			r->stale = true;
			r->stale_reason = strdup(rh_error_last());
			err = 0;
		}
		if (r->stale && !r->stale_reason) {
			err = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
	}
	err = lfs_setup(r, url);
done:
	if (lockfd >= 0)
		close(lockfd);
	if (pass)
		explicit_bzero(pass, strlen(pass));
	free(bare);
	free(user);
	free(pass);
	free(conn);
	free(regdir);
	free(dir);
	free(lockpath);
	return err;
}

int rh_registry_open_opts(struct rh_registry **out, const char *url, const char *cache_dir,
			  const struct rh_registry_opts *opts)
{
	static const struct rh_registry_opts defaults = RH_REGISTRY_OPTS_INIT;
	struct rh_registry *r = NULL;
	int err = 0;

	*out = NULL;
	if (!opts)
		opts = &defaults;
	err = rh_artifacts_global_check();
	if (err < 0)
		goto done;
	if (!url || !*url) {
		err = rh_error_set(RH_EINVAL, "no registry given");
		goto done;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening registry");
		goto done;
	}
	pthread_mutex_init(&r->lock, NULL);
	r->url = rh_lfs_url_redact(url);
	if (!r->url) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening registry");
		goto done;
	}
	if (strncmp(url, "file://", 7) == 0 && url[7] != '/') {
		err = rh_error_set(RH_EINVAL,
				   "registry %s: a file:// URL needs an absolute path "
				   "(file:///path/to/registry)",
				   r->url);
		goto done;
	}
	if (url_is_remote(url)) {
		if (!cache_dir || !*cache_dir) {
			err = rh_error_set(RH_EINVAL,
					   "registry %s: a registry given by URL needs "
					   "a cache directory to clone into",
					   r->url);
			goto done;
		}
		err = open_url(r, url, cache_dir, opts);
		goto done;
	}
	err = open_path(r, url);
	if (err == 0) {
		r->lfs_store = strdup(r->gitdir);
		if (!r->lfs_store)
			err = rh_error_set(RH_ENOMEM, "out of memory opening registry %s", r->url);
	}
done:
	if (err == 0) {
		*out = r;
		r = NULL;
	}
	rh_registry_free(r);
	return err;
}

int rh_registry_open(struct rh_registry **out, const char *url, const char *cache_dir)
{
	return rh_registry_open_opts(out, url, cache_dir, NULL);
}

bool rh_registry_is_stale(const struct rh_registry *r, const char **why)
{
	if (why)
		*why = r->stale ? r->stale_reason : NULL;
	return r->stale;
}

const char *rh_registry_name(const struct rh_registry *r)
{
	return r->url;
}

void rh_registry_free(struct rh_registry *r)
{
	if (!r)
		return;
	rh_lfs_remote_free(r->lfs_remote);
	git_repository_free(r->repo);
	pthread_mutex_destroy(&r->lock);
	free(r->lfs_store);
	free(r->lfs_problem);
	free(r->stale_reason);
	free(r->cache_dir);
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
			return rh_error_set(RH_EINVAL,
					    "model %s \"%s\" has a character that "
					    "cannot be in a tag name ('%c')",
					    what, s, ch > 0x20 && ch != 0x7f ? ch : '?');
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
	return strverscmp(*(char *const *)a, *(char *const *)b);
}

/* RH_ENOTFOUND naming the versions that do exist for `name`. */
static int version_not_found(struct rh_registry *r, const char *name, const char *version)
{
	struct version_list vl = {0};
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
		int n =
		    snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", vl.items[i]);

		if (n < 0)
			break;
		used += (size_t)n;
	}
	if (vl.n == 0)
		err = rh_error_set(RH_ENOTFOUND,
				   "registry %s has no model %s (no tags %s/*): "
				   "check the model name",
				   r->url, name, name);
	else
		err = rh_error_set(RH_ENOTFOUND,
				   "registry %s has no version %s of model %s (no "
				   "tag %s/%s); versions: %s",
				   r->url, version, name, name, version, list);
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
	static const char *const top_keys[] = {
	    "rehydra_manifest", "name",	  "version",	 "files", "license",
	    "serving",		"export", "description", "role",  NULL};
	static const char *const file_keys[] = {"path", "size",	       "sha256",
						"role", "description", NULL};
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
	json_object_foreach(m, key, val)
	{
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
		json_object_foreach(f, key, val)
		{
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
			err = rh_error_set(RH_EINVAL,
					   "%s: files[%zu].path \"%s\" is not a safe "
					   "relative path (no \"..\", \".\", empty segments, "
					   "leading '/', backslashes or control characters)",
					   where, i, path);
			goto done;
		}
		/* the sinks keep their own state under these names and refuse them:
		 * refuse them here too, so verify and sync agree */
		if (strncmp(path, ".rehydra-sink", 13) == 0 || strstr(path, ".rh-part-")) {
			err = rh_error_set(RH_EINVAL,
					   "%s: files[%zu]: path \"%s\" is reserved for "
					   "the sinks' own state (.rehydra-sink*, *.rh-part-*): "
					   "rename the file",
					   where, i, path);
			goto done;
		}
		if (strcmp(path, "manifest.json") == 0) {
			err = rh_error_set(RH_EINVAL,
					   "%s: files[%zu]: \"manifest.json\" cannot be "
					   "a model file (the manifest is copied by itself)",
					   where, i);
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
			err = rh_error_set(RH_EINVAL,
					   "%s: files[%zu] (%s): size must be an "
					   "integer >= 0",
					   where, i, path);
			goto done;
		}
		if (!json_is_string(jh) || !rh_hex_is_sha256(json_string_value(jh))) {
			err = rh_error_set(RH_EINVAL,
					   "%s: files[%zu] (%s): sha256 must be 64 "
					   "lowercase hex digits",
					   where, i, path);
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
				err = rh_error_set(RH_EINVAL,
						   "%s: files[%zu]: \"%s\" is inside "
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

int rh_manifest_parse(struct rh_model_version *v, const void *raw, size_t len, const char *where)
{
	json_error_t jerr;
	int err = 0;

	if (len > RH_MANIFEST_MAX) {
		err = rh_error_set(RH_EINVAL, "%s: larger than %u bytes", where, RH_MANIFEST_MAX);
		goto done;
	}
	if (rh_lfs_pointer_detect(raw, len)) {
		err = rh_error_set(RH_EINVAL,
				   "%s is a Git LFS pointer: keep manifests out of LFS "
				   "(exclude manifest.json in .gitattributes)",
				   where);
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
done:
	return err;
}

static int resolve_locked(struct rh_model_version **out, struct rh_registry *r, const char *name,
			  const char *version, const char *commit)
{
	struct rh_model_version *v = NULL;
	git_object *tag_obj = NULL;
	git_object *cobj = NULL;
	git_tree *tree = NULL;
	git_tree_entry *entry = NULL;
	git_blob *blob = NULL;
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
		if (cl != 40 || !rh_hex_is_lower(pin, 40)) {
			err = rh_error_set(RH_EINVAL,
					   "registry %s: commit pin \"%s\" is not 40 "
					   "hex digits",
					   r->url, commit);
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
		err = rh_error_set(RH_EINVAL,
				   "registry %s: tag %s/%s does not point to a commit: "
				   "%s",
				   r->url, name, version, git_msg());
		goto done;
	}
	git_oid_fmt(v->commit, git_object_id(cobj));
	v->commit[40] = '\0';
	if (commit && strcmp(pin, v->commit) != 0) {
		err = rh_error_set(RH_EVERIFY,
				   "registry %s: tag %s/%s is commit %s but the "
				   "runbook pins commit %s: the tag was moved or the pin is stale; "
				   "check which one is right",
				   r->url, name, version, v->commit, pin);
		goto done;
	}
	snprintf(where, sizeof(where), "%s@%.12s:%s", r->url, v->commit, mpath);
	if (git_commit_tree(&tree, (git_commit *)cobj) < 0) {
		err =
		    rh_error_set(RH_EIO, "%s: cannot read the commit's tree: %s", where, git_msg());
		goto done;
	}
	rc = git_tree_entry_bypath(&entry, tree, mpath);
	if (rc == GIT_ENOTFOUND) {
		err = rh_error_set(RH_ENOTFOUND,
				   "%s does not exist: the tag %s/%s does not hold "
				   "model %s",
				   where, name, version, name);
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
	err = rh_manifest_parse(v, raw, len, where);
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

int rh_registry_resolve(struct rh_model_version **out, struct rh_registry *r, const char *name,
			const char *version, const char *commit)
{
	int err;

	pthread_mutex_lock(&r->lock);
	err = resolve_locked(out, r, name, version, commit);
	pthread_mutex_unlock(&r->lock);
	return err;
}

/* ---- listing ----------------------------------------------------------------- */

/* "refs/tags/NAME/VERSION" -> NAME, VERSION (new), when both are valid. */
static bool split_tag(const char *refname, char **name, char **version)
{
	const char *rest = refname + strlen("refs/tags/");
	const char *slash = strchr(rest, '/');

	*name = NULL;
	*version = NULL;
	if (strncmp(refname, "refs/tags/", 10) != 0 || !slash || strchr(slash + 1, '/'))
		return false;
	*name = strndup(rest, (size_t)(slash - rest));
	*version = strdup(slash + 1);
	if (!*name || !*version || check_name("name", *name, RH_MODEL_NAME_MAX) < 0 ||
	    check_name("version", *version, RH_MODEL_VERSION_MAX) < 0) {
		free(*name);
		free(*version);
		*name = *version = NULL;
		rh_error_clear();
		return false;
	}
	return true;
}

static int cmp_version_json(const void *a, const void *b)
{
	return strverscmp(json_string_value(*(json_t *const *)a),
			  json_string_value(*(json_t *const *)b));
}

struct list_ctx {
	json_t *out;
	bool oom;
};

static int collect_tag(const char *refname, void *payload)
{
	struct list_ctx *lc = payload;
	char *name, *version;
	json_t *arr;

	if (!split_tag(refname, &name, &version))
		return 0;
	arr = json_object_get(lc->out, name);
	if (!arr) {
		arr = json_array();
		if (!arr || json_object_set_new(lc->out, name, arr) != 0)
			lc->oom = true;
	}
	if (!lc->oom && json_array_append_new(arr, json_string(version)) != 0)
		lc->oom = true;
	free(name);
	free(version);
	return lc->oom ? 1 : 0;
}

int rh_registry_list(json_t **out, struct rh_registry *r)
{
	struct list_ctx lc = {json_object(), false};
	const char *key;
	json_t *arr;
	int err = 0;

	*out = NULL;
	if (!lc.out) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	pthread_mutex_lock(&r->lock);
	git_reference_foreach_name(r->repo, collect_tag, &lc);
	pthread_mutex_unlock(&r->lock);
	if (lc.oom) {
		err = rh_error_set(RH_ENOMEM, "out of memory listing registry %s", r->url);
		goto done;
	}
	json_object_foreach(lc.out, key, arr)
	{
		size_t n = json_array_size(arr);
		json_t **items = calloc(n ? n : 1, sizeof(*items));

		if (!items) {
			err = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
		for (size_t i = 0; i < n; i++)
			items[i] = json_incref(json_array_get(arr, i));
		qsort(items, n, sizeof(*items), cmp_version_json);
		json_array_clear(arr);
		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, items[i]);
		free(items);
	}
	*out = lc.out;
	lc.out = NULL;
done:
	json_decref(lc.out);
	return err;
}

/* ---- file sources ---------------------------------------------------------- */

struct reg_source {
	struct rh_source src; /* first: rh_registry_source_free casts back */
	int fd;		      /* -1 for memory */
	unsigned char *data;  /* owned copy of a plain blob */
	char *name;
};

static long src_read_fd(void *user, uint64_t offset, void *buf, size_t len)
{
	struct reg_source *s = user;
	size_t done = 0;

	if (offset >= s->src.size)
		return 0;
	if (len > s->src.size - offset)
		len = (size_t)(s->src.size - offset);
	if (len > (size_t)LONG_MAX)
		len = (size_t)LONG_MAX;
	while (done < len) {
		ssize_t n = pread(s->fd, (char *)buf + done, len - done, (off_t)(offset + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return rh_error_set_errno(RH_EIO, errno, "cannot read %s", s->name);
		if (n == 0)
			return rh_error_set(RH_EIO, "%s shrank while being read", s->name);
		done += (size_t)n;
	}
	return (long)done;
}

static long src_read_mem(void *user, uint64_t offset, void *buf, size_t len)
{
	struct reg_source *s = user;

	if (offset >= s->src.size)
		return 0;
	if (len > s->src.size - offset)
		len = (size_t)(s->src.size - offset);
	memcpy(buf, s->data + offset, len);
	return (long)len;
}

void rh_registry_source_free(struct rh_source *src)
{
	struct reg_source *s = (struct reg_source *)src;

	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	free(s->data);
	free(s->name);
	free(s);
}

static int src_local_fd(void *user)
{
	return ((struct reg_source *)user)->fd;
}

static struct reg_source *source_new(const char *name)
{
	struct reg_source *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->fd = -1;
	s->name = strdup(name);
	if (!s->name) {
		free(s);
		return NULL;
	}
	s->src.user = s;
	s->src.name = s->name;
	s->src.local_fd = src_local_fd;
	return s;
}

/* Opens `path` as the object of pointer `p`: it must be a regular file of
 * the pointer's size. RH_ENOTFOUND when it does not exist. */
static int source_open_file(struct reg_source *s, const char *path, const struct rh_lfs_pointer *p)
{
	struct stat sb;

	/* a FIFO planted in the store must not block the open */
	s->fd = rh_fs_open_regular(path, O_NOFOLLOW);
	if (s->fd < 0) {
		int err = s->fd;

		s->fd = -1;
		return err;
	}
	if (fstat(s->fd, &sb) != 0)
		return rh_error_set_errno(RH_EIO, errno, "cannot stat %s", path);
	if ((uint64_t)sb.st_size != p->size)
		return rh_error_set(RH_EVERIFY,
				    "LFS object %s has %llu bytes but its pointer says "
				    "%llu",
				    path, (unsigned long long)sb.st_size,
				    (unsigned long long)p->size);
	s->src.size = p->size;
	s->src.read_at = src_read_fd;
	return 0;
}

/* A cache object, fetched first when missing. The download runs outside
 * the registry lock: other files download at the same time. */
static int cached_object(struct reg_source *s, struct rh_registry *r,
			 const struct rh_model_version *v, const struct rh_lfs_pointer *p,
			 struct rh_cancel *cancel)
{
	struct rh_lfs_fetch_opts fo = RH_LFS_FETCH_OPTS_INIT;
	struct rh_cache_tmp tmp = {-1, NULL, NULL};
	char *path = rh_cache_object_path(r->cache_dir, p->oid);
	char *ref = NULL;
	int err;

	if (!path) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	err = source_open_file(s, path, p);
	if (err != RH_ENOTFOUND && err != RH_EVERIFY)
		goto done;
	if (err == RH_EVERIFY) {
		/* A damaged cache entry: fetch it again rather than fail. */
		close(s->fd);
		s->fd = -1;
		unlink(path);
	}
	err = rh_asprintf(&ref, "refs/tags/%s/%s", v->name, v->version);
	if (err < 0)
		goto done;
	fo.ref = ref;
	fo.cancel = cancel;
	err = rh_cache_tmp_open(&tmp, r->cache_dir, p->oid);
	if (err < 0)
		goto done;
	err = rh_lfs_fetch(r->lfs_remote, p, tmp.fd, &fo);
	if (err < 0)
		goto done;
	err = rh_cache_tmp_commit(&tmp, p->size);
	if (err < 0)
		goto done;
	err = source_open_file(s, path, p);
	if (err == RH_ENOTFOUND)
		err = rh_error_set(RH_EIO,
				   "cache object %s vanished after download (cache gc "
				   "running?): try again",
				   path);
done:
	rh_cache_tmp_abort(&tmp);
	free(path);
	free(ref);
	return err;
}

/* Reads the pointer or blob of one manifest file (under the registry lock):
 * a plain blob is copied into s; an LFS pointer is returned in *ptr. */
static int read_entry(struct rh_registry *r, const struct rh_model_version *v,
		      const struct rh_manifest_file *mf, struct reg_source *s,
		      struct rh_lfs_pointer *ptr, bool *is_lfs, const char *where)
{
	git_commit *commit = NULL;
	git_tree *tree = NULL;
	git_tree_entry *entry = NULL;
	git_blob *blob = NULL;
	git_oid oid;
	char *gpath = NULL;
	const void *raw;
	size_t len;
	int rc;
	int err = 0;

	*is_lfs = false;
	if (asprintf(&gpath, "models/%s/%s", v->name, mf->path) < 0) {
		gpath = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory reading %s", where);
		goto done;
	}
	if (git_oid_fromstr(&oid, v->commit) < 0 || git_commit_lookup(&commit, r->repo, &oid) < 0 ||
	    git_commit_tree(&tree, commit) < 0) {
		err = rh_error_set(RH_EIO, "registry %s: cannot read commit %s: %s", r->url,
				   v->commit, git_msg());
		goto done;
	}
	rc = git_tree_entry_bypath(&entry, tree, gpath);
	if (rc == GIT_ENOTFOUND) {
		err = rh_error_set(RH_ENOTFOUND,
				   "%s is listed in the manifest but is not in the "
				   "commit",
				   where);
		goto done;
	}
	if (rc < 0 || git_tree_entry_type(entry) != GIT_OBJECT_BLOB ||
	    git_tree_entry_filemode(entry) == GIT_FILEMODE_LINK) {
		err = rh_error_set(RH_EINVAL, "%s is not a regular file in the commit", where);
		goto done;
	}
	if (git_blob_lookup(&blob, r->repo, git_tree_entry_id(entry)) < 0) {
		err = rh_error_set(RH_EIO, "%s: cannot read: %s", where, git_msg());
		goto done;
	}
	raw = git_blob_rawcontent(blob);
	len = (size_t)git_blob_rawsize(blob);
	if (!rh_lfs_pointer_detect(raw, len)) {
		s->data = malloc(len ? len : 1);
		if (!s->data) {
			err = rh_error_set(RH_ENOMEM, "out of memory reading %s", where);
			goto done;
		}
		memcpy(s->data, raw, len);
		s->src.size = len;
		s->src.read_at = src_read_mem;
		goto done;
	}
	err = rh_lfs_pointer_parse(ptr, raw, len);
	if (err < 0) {
		rh_error_prefix(err, "%s: malformed Git LFS pointer", where);
		goto done;
	}
	*is_lfs = true;
done:
	git_blob_free(blob);
	git_tree_entry_free(entry);
	git_tree_free(tree);
	git_commit_free(commit);
	free(gpath);
	return err;
}

int rh_registry_file_source(struct rh_source **out, struct rh_registry *r,
			    const struct rh_model_version *v, size_t index,
			    struct rh_cancel *cancel)
{
	const struct rh_manifest_file *mf;
	struct reg_source *s = NULL;
	struct rh_lfs_pointer ptr;
	char *objpath = NULL;
	char where[1024];
	bool is_lfs = false;
	int err = 0;

	*out = NULL;
	if (index >= v->n_files) {
		err = rh_error_set(RH_EINVAL, "file index %zu out of range (%zu files)", index,
				   v->n_files);
		goto done;
	}
	mf = &v->files[index];
	snprintf(where, sizeof(where), "%s@%.12s:models/%s/%s", r->url, v->commit, v->name,
		 mf->path);
	s = source_new(where);
	if (!s) {
		err = rh_error_set(RH_ENOMEM, "out of memory reading %s", where);
		goto done;
	}
	pthread_mutex_lock(&r->lock);
	err = read_entry(r, v, mf, s, &ptr, &is_lfs, where);
	pthread_mutex_unlock(&r->lock);
	if (err < 0 || !is_lfs)
		goto done;
	/* The pointer must agree with the manifest, so a registry whose
	 * pointer and manifest disagree fails here rather than in the sink. */
	if (strcmp(ptr.oid, mf->sha256) != 0 || ptr.size != mf->size) {
		err = rh_error_set(RH_EVERIFY,
				   "%s: the Git LFS pointer (oid %s, size %llu) does "
				   "not match the manifest (sha256 %s, size %llu)",
				   where, ptr.oid, (unsigned long long)ptr.size, mf->sha256,
				   (unsigned long long)mf->size);
		goto done;
	}
	if (r->lfs_store) {
		objpath = rh_lfs_local_object_path(r->lfs_store, ptr.oid);
		if (!objpath) {
			err = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
		err = source_open_file(s, objpath, &ptr);
		if (err == RH_ENOTFOUND) {
			err = rh_error_set(RH_ENOTFOUND,
					   "%s: LFS object %s is not in the "
					   "local LFS store (%s): run `git lfs fetch --all` in "
					   "the registry, or `git lfs push --all` to it",
					   where, ptr.oid, objpath);
		} else if (err == RH_EVERIFY) {
			char msg[512];

			snprintf(msg, sizeof(msg), "%s", rh_error_last());
			err = rh_error_set(err, "%s: %s: run `git lfs fsck` in the registry", where,
					   msg);
		} else if (err < 0) {
			rh_error_prefix(err, "%s", where);
		}
	} else if (r->lfs_remote) {
		err = cached_object(s, r, v, &ptr, cancel);
		if (err < 0 && err != RH_ECANCELLED)
			rh_error_prefix(err, "%s", where);
	} else {
		err = rh_error_set(RH_EUNSUPPORTED, "%s is a Git LFS object, but %s", where,
				   r->lfs_problem ? r->lfs_problem
						  : "the registry has no LFS "
						    "source");
	}
	if (err == 0)
		posix_fadvise(s->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
done:
	free(objpath);
	if (err == 0) {
		*out = &s->src;
		s = NULL;
	}
	rh_registry_source_free(s ? &s->src : NULL);
	return err;
}

/* A regular file of exactly `size` bytes at `path`? */
static bool object_present(const char *path, uint64_t size)
{
	struct stat st;

	return path && stat(path, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == size;
}

int rh_registry_file_check(struct rh_registry *r, const struct rh_model_version *v, size_t index,
			   struct rh_cancel *cancel, const char **where_out)
{
	const struct rh_manifest_file *mf;
	struct reg_source *s = NULL;
	struct rh_lfs_pointer ptr;
	char *path = NULL, *ref = NULL;
	const char *how = NULL;
	char where[1024];
	bool is_lfs = false;
	int err = 0;

	if (index >= v->n_files) {
		err = rh_error_set(RH_EINVAL, "file index %zu out of range (%zu files)", index,
				   v->n_files);
		goto done;
	}
	mf = &v->files[index];
	snprintf(where, sizeof(where), "%s@%.12s:models/%s/%s", r->url, v->commit, v->name,
		 mf->path);
	s = source_new(where);
	if (!s) {
		err = rh_error_set(RH_ENOMEM, "out of memory reading %s", where);
		goto done;
	}
	pthread_mutex_lock(&r->lock);
	err = read_entry(r, v, mf, s, &ptr, &is_lfs, where);
	pthread_mutex_unlock(&r->lock);
	if (err < 0)
		goto done;
	if (!is_lfs) {
		how = "blob";
		goto done;
	}
	if (strcmp(ptr.oid, mf->sha256) != 0 || ptr.size != mf->size) {
		err = rh_error_set(RH_EVERIFY,
				   "%s: the Git LFS pointer (oid %s, size %llu) does "
				   "not match the manifest (sha256 %s, size %llu)",
				   where, ptr.oid, (unsigned long long)ptr.size, mf->sha256,
				   (unsigned long long)mf->size);
		goto done;
	}
	if (r->lfs_store) {
		path = rh_lfs_local_object_path(r->lfs_store, ptr.oid);
		if (object_present(path, ptr.size)) {
			how = "store";
			goto done;
		}
		err = rh_error_set(RH_ENOTFOUND,
				   "%s: LFS object %s is not in the local LFS "
				   "store (%s): run `git lfs fetch --all` in the registry, or "
				   "`git lfs push --all` to it",
				   where, ptr.oid, path ? path : r->lfs_store);
	} else if (r->lfs_remote) {
		struct rh_lfs_fetch_opts fo = RH_LFS_FETCH_OPTS_INIT;

		free(path);
		path = rh_cache_object_path(r->cache_dir, ptr.oid);
		if (object_present(path, ptr.size)) {
			how = "cache";
			goto done;
		}
		if (asprintf(&ref, "refs/tags/%s/%s", v->name, v->version) < 0) {
			ref = NULL;
			err = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
		fo.ref = ref;
		fo.cancel = cancel;
		err = rh_lfs_check(r->lfs_remote, &ptr, &fo);
		if (err < 0 && err != RH_ECANCELLED)
			rh_error_prefix(err, "%s", where);
		else if (err == 0)
			how = "server";
	} else {
		err = rh_error_set(RH_EUNSUPPORTED, "%s is a Git LFS object, but %s", where,
				   r->lfs_problem ? r->lfs_problem
						  : "the registry has no LFS "
						    "source");
	}
done:
	if (where_out)
		*where_out = how;
	rh_registry_source_free(s ? &s->src : NULL);
	free(path);
	free(ref);
	return err;
}

/* ---- cache gc ------------------------------------------------------------- */

struct gc_ctx {
	git_repository *repo;
	json_t *keep; /* set: oid -> true */
	bool oom;
};

/* Adds every file sha256 of the manifest at tag `refname` to the keep set;
 * tags that are not model versions, or whose manifest is unreadable, add
 * nothing. */
static int gc_collect(const char *refname, void *payload)
{
	struct gc_ctx *g = payload;
	git_object *obj = NULL;
	git_object *blob = NULL;
	json_t *m = NULL;
	char *name, *version;
	char *spec = NULL;

	if (!split_tag(refname, &name, &version))
		return 0;
	if (asprintf(&spec, "%s^{commit}:models/%s/manifest.json", refname, name) < 0) {
		spec = NULL;
		g->oom = true;
		goto done;
	}
	if (git_revparse_single(&blob, g->repo, spec) < 0 ||
	    git_object_type(blob) != GIT_OBJECT_BLOB)
		goto done;
	m = json_loadb(git_blob_rawcontent((git_blob *)blob),
		       (size_t)git_blob_rawsize((git_blob *)blob), 0, NULL);
	for (size_t i = 0; i < json_array_size(json_object_get(m, "files")); i++) {
		const char *sha = json_string_value(
		    json_object_get(json_array_get(json_object_get(m, "files"), i), "sha256"));

		if (sha && json_object_set_new(g->keep, sha, json_true()) != 0)
			g->oom = true;
	}
done:
	json_decref(m);
	git_object_free(blob);
	git_object_free(obj);
	free(spec);
	free(name);
	free(version);
	return g->oom ? 1 : 0;
}

static bool gc_keep(void *user, const char *oid)
{
	return json_object_get(user, oid) != NULL;
}

/* ".clone-<key>-<rand>" whose <key>.lock is free: a clone that died. */
static void gc_dead_clone(const char *regdir, const char *entry)
{
	char key[17];
	char *lockpath = NULL;
	char *path = NULL;
	int fd;

	if (strlen(entry) < 7 + 16 || sscanf(entry + 7, "%16[0-9a-f]", key) != 1)
		return;
	if (asprintf(&lockpath, "%s/%s.lock", regdir, key) < 0 ||
	    asprintf(&path, "%s/%s", regdir, entry) < 0)
		goto done;
	fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		goto done;
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		rh_fs_rm_rf(path);
	close(fd);
done:
	free(lockpath);
	free(path);
}

int rh_registry_cache_gc(const char *cache_dir, uint64_t *freed, uint64_t *kept)
{
	struct gc_ctx g = {NULL, json_object(), false};
	char *regdir = NULL;
	DIR *d = NULL;
	struct dirent *e;
	int err = 0;

	if (freed)
		*freed = 0;
	if (kept)
		*kept = 0;
	err = rh_artifacts_global_check();
	if (err < 0)
		goto done;
	if (!g.keep || asprintf(&regdir, "%s/registries", cache_dir) < 0) {
		regdir = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	d = opendir(regdir);
	if (!d && errno != ENOENT) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot read %s", regdir);
		goto done;
	}
	while (d && (e = readdir(d)) != NULL) {
		char *path = NULL;

		if (strncmp(e->d_name, ".clone-", 7) == 0) {
			gc_dead_clone(regdir, e->d_name);
			continue;
		}
		if (e->d_name[0] == '.' || strstr(e->d_name, ".lock"))
			continue;
		if (asprintf(&path, "%s/%s", regdir, e->d_name) < 0) {
			err = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
		if (git_repository_open_bare(&g.repo, path) == 0) {
			git_reference_foreach_name(g.repo, gc_collect, &g);
			git_repository_free(g.repo);
			g.repo = NULL;
		} else if (is_dir(path)) {
			/* An unreadable clone could hold references we cannot see:
			 * removing objects now could throw away what it needs. */
			err = rh_error_set(RH_EIO,
					   "cache gc: cannot open cached registry %s: %s; "
					   "remove it and run gc again",
					   path, git_msg());
			free(path);
			goto done;
		}
		free(path);
		if (g.oom) {
			err = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
	}
	err = rh_cache_sweep(cache_dir, gc_keep, g.keep, freed, kept);
done:
	if (d)
		closedir(d);
	json_decref(g.keep);
	free(regdir);
	return err;
}
