/*
 * mirror.c - pushes the audit journal to a git remote for off-host
 * retention (see mirror.h).
 *
 * Git is the transport because it already has what retention needs: it
 * sends only objects the other side lacks (so the journal is cut into
 * segments whose old blobs never change), it refuses non-fast-forward
 * updates by default, and every host that can reach a git server can keep
 * a copy. The one decision made here is to look before pushing: the remote
 * branch is fetched and must be an ancestor of ours, so a diverged remote
 * (another host's journal on the same branch, or a rewrite) is refused with
 * a message rather than discovered as a rejected push, and nothing is ever
 * forced.
 */
#include "mirror.h"

#include "error.h"
#include "fsutil.h"
#include "global.h"
#include "strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

#define RH_MIRROR_README                                                                           \
	"This branch is a mirror of a rehydra audit journal, pushed by 'rehydra audit push'.\n"    \
	"\n"                                                                                       \
	"journal/NNNNNNNN.jsonl are the journal cut into segments of 1000 lines, in order:\n"      \
	"    cat journal/*.jsonl > journal.jsonl\n"                                                \
	"    rehydra audit verify --journal journal.jsonl\n"                                       \
	"rebuilds it and checks its hash chain. Commits only ever add lines; a commit that\n"      \
	"changes an earlier segment means the journal on the drill host was altered.\n"

static const char *git_msg(void)
{
	const git_error *e = git_error_last();

	return e && e->message ? e->message : "unknown libgit2 error";
}

/* The remote for messages: a password in user:password@ is masked. */
static void safe_url(char *buf, size_t size, const char *url)
{
	const char *scheme = strstr(url, "://");
	const char *host = scheme ? scheme + 3 : url;
	const char *at = strchr(host, '@');
	const char *slash = strchr(host, '/');
	const char *colon;

	if (!scheme || !at || (slash && slash < at)) {
		snprintf(buf, size, "%s", url);
		return;
	}
	colon = memchr(host, ':', (size_t)(at - host));
	if (!colon) {
		snprintf(buf, size, "%s", url);
		return;
	}
	snprintf(buf, size, "%.*s:***%s", (int)(colon - url), url, at);
}

struct cb_state {
	unsigned cred_calls;
	char *rejected; /* push_update_reference status, owned */
};

/* ssh: the agent's keys; anything else has no credentials to offer. The
 * count stops libgit2 from asking forever when the agent's keys fail. */
static int credentials(git_credential **out, const char *url, const char *user,
		       unsigned int allowed, void *payload)
{
	struct cb_state *st = payload;

	(void)url;
	if (++st->cred_calls > 1)
		return GIT_EUSER;
	if (allowed & GIT_CREDENTIAL_SSH_KEY)
		return git_credential_ssh_key_from_agent(out, user ? user : "git");
	if (allowed & GIT_CREDENTIAL_USERNAME)
		return git_credential_username_new(out, user ? user : "git");
	return GIT_PASSTHROUGH;
}

static int push_update(const char *refname, const char *status, void *data)
{
	struct cb_state *st = data;

	(void)refname;
	if (status && !st->rejected)
		st->rejected = strdup(status);
	return 0;
}

static void set_callbacks(git_remote_callbacks *cb, struct cb_state *st)
{
	cb->credentials = credentials;
	cb->push_update_reference = push_update;
	cb->payload = st;
}

/* Opens the bare mirror repository, creating it on first use. */
static int open_mirror(git_repository **repo, const char *dir)
{
	struct stat sb;

	if (stat(dir, &sb) == 0) {
		if (git_repository_open_bare(repo, dir) < 0)
			return rh_error_set(RH_EIO, "cannot open the journal mirror %s: %s", dir,
					    git_msg());
		return 0;
	}
	if (rh_fs_mkdir_p(dir) < 0)
		return RH_EIO;
	if (git_repository_init(repo, dir, 1) < 0)
		return rh_error_set(RH_EIO, "cannot create the journal mirror %s: %s", dir,
				    git_msg());
	return 0;
}

static int add_segment(git_repository *repo, git_treebuilder *segs, size_t no, const char *buf,
		       size_t len)
{
	char name[32];
	git_oid oid;

	snprintf(name, sizeof(name), "%08zu.jsonl", no);
	if (git_blob_create_from_buffer(&oid, repo, buf, len) < 0 ||
	    git_treebuilder_insert(NULL, segs, name, &oid, GIT_FILEMODE_BLOB) < 0)
		return rh_error_set(RH_EIO, "cannot write the journal into the mirror: %s",
				    git_msg());
	return 0;
}

/* Reads the journal's complete lines segment by segment into blobs and
 * writes the tree. *lines gets the number of lines. */
static int build_tree(git_oid *tree, uint64_t *lines, git_repository *repo, const char *path)
{
	git_treebuilder *root = NULL, *segs = NULL;
	git_oid oid;
	struct rh_strbuf seg = RH_STRBUF_INIT; /* the segment being read */
	size_t len, seg_lines = 0, seg_no = 0;
	char chunk[65536];
	off_t off = 0;
	int fd = -1;
	int rc = 0;

	*lines = 0;
	fd = rh_fs_open_regular(path, O_NOFOLLOW); /* never blocks on a FIFO */
	if (fd < 0) {
		rc = fd == RH_ENOTFOUND ? rh_error_set(RH_EIO,
						       "cannot open the journal %s: no "
						       "such file",
						       path)
					: rh_error_prefix(fd, "the journal");
		fd = -1;
		goto done;
	}
	/* shared lock: an append in flight is not read half-written */
	while (flock(fd, LOCK_SH) != 0 && errno == EINTR)
		;
	if (git_treebuilder_new(&segs, repo, NULL) < 0 ||
	    git_treebuilder_new(&root, repo, NULL) < 0)
		goto git_fail;
	for (;;) {
		ssize_t n = pread(fd, chunk, sizeof(chunk), off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = rh_error_set_errno(RH_EIO, errno, "cannot read the journal %s", path);
			goto done;
		}
		if (n == 0)
			break;
		off += n;
		for (size_t i = 0; i < (size_t)n;) {
			char *nl = memchr(chunk + i, '\n', (size_t)n - i);
			size_t take = nl ? (size_t)(nl - (chunk + i)) + 1 : (size_t)n - i;

			rc = rh_strbuf_add(&seg, chunk + i, take);
			if (rc < 0) {
				rh_error_prefix(rc, "mirroring the journal");
				goto done;
			}
			i += take;
			if (!nl)
				continue;
			(*lines)++;
			if (++seg_lines == RH_MIRROR_SEGMENT_LINES) {
				rc = add_segment(repo, segs, seg_no++, seg.buf, seg.len);
				if (rc < 0)
					goto done;
				rh_strbuf_reset(&seg);
				seg_lines = 0;
			}
		}
	}
	/* The last segment: complete lines only (a torn tail is not evidence;
	 * the caller verified the journal anyway). */
	len = seg.len;
	while (len && seg.buf[len - 1] != '\n')
		len--;
	if (len) {
		rc = add_segment(repo, segs, seg_no, seg.buf, len);
		if (rc < 0)
			goto done;
	}
	if (git_treebuilder_write(&oid, segs) < 0 ||
	    git_treebuilder_insert(NULL, root, "journal", &oid, GIT_FILEMODE_TREE) < 0 ||
	    git_blob_create_from_buffer(&oid, repo, RH_MIRROR_README,
					sizeof(RH_MIRROR_README) - 1) < 0 ||
	    git_treebuilder_insert(NULL, root, "README.txt", &oid, GIT_FILEMODE_BLOB) < 0 ||
	    git_treebuilder_write(tree, root) < 0)
		goto git_fail;
	goto done;
git_fail:
	rc = rh_error_set(RH_EIO, "cannot write the journal into the mirror: %s", git_msg());
done:
	if (fd >= 0)
		close(fd);
	git_treebuilder_free(segs);
	git_treebuilder_free(root);
	rh_strbuf_release(&seg);
	return rc;
}

/* Looks at the remote branch: *exists, and its tip fetched into the mirror
 * (as refs/rehydra/remote/<branch>) so ancestry can be checked. */
static int fetch_remote_tip(git_remote *remote, git_repository *repo, const char *ref,
			    const char *branch, const char *shown, bool *exists, git_oid *tip)
{
	git_remote_callbacks cb;
	git_fetch_options fo;
	struct cb_state st = {0};
	const git_remote_head **heads;
	char spec[512];
	char *specs[1] = {spec};
	git_strarray refspecs = {specs, 1};
	git_odb *odb = NULL;
	size_t n = 0;
	int rc = 0;

	*exists = false;
	git_remote_init_callbacks(&cb, GIT_REMOTE_CALLBACKS_VERSION);
	git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
	set_callbacks(&cb, &st);
	if (git_remote_connect(remote, GIT_DIRECTION_FETCH, &cb, NULL, NULL) < 0 ||
	    git_remote_ls(&heads, &n, remote) < 0) {
		rc = rh_error_set(RH_EIO, "cannot reach the journal remote %s: %s", shown,
				  git_msg());
		goto done;
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(heads[i]->name, ref) == 0) {
			*exists = true;
			git_oid_cpy(tip, &heads[i]->oid);
		}
	}
	git_remote_disconnect(remote);
	if (!*exists)
		goto done;
	if (git_repository_odb(&odb, repo) < 0) {
		rc = rh_error_set(RH_EIO, "cannot open the mirror's objects: %s", git_msg());
		goto done;
	}
	if (git_odb_exists(odb, tip))
		goto done; /* we pushed it: nothing to fetch */
	snprintf(spec, sizeof(spec), "+%s:refs/rehydra/remote/%s", ref, branch);
	fo.callbacks = cb;
	fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	fo.prune = GIT_FETCH_NO_PRUNE;
	if (git_remote_fetch(remote, &refspecs, &fo, "rehydra: fetch the journal branch") < 0)
		rc = rh_error_set(RH_EIO, "cannot fetch branch '%s' of the journal remote %s: %s",
				  branch, shown, git_msg());
done:
	git_odb_free(odb);
	return rc;
}

/* Compares the journal held by commit `tip` (its segments, in name order)
 * with the journal file: the mirrored bytes must be a prefix of the file,
 * ending at a line boundary. Fills *mirrored (lines in the mirror) and, on a
 * difference, *diff_line (the first line that differs or is missing).
 * Returns 0, RH_EVERIFY when the file is not an extension of the mirror,
 * RH_EIO. */
static int mirror_is_prefix(git_repository *repo, const git_oid *tip, const char *journal_path,
			    uint64_t *mirrored, uint64_t *diff_line)
{
	git_commit *commit = NULL;
	git_tree *root = NULL, *segs = NULL;
	git_tree_entry *jent = NULL;
	char *buf = NULL;
	size_t cap = 0;
	off_t off = 0;
	int fd = -1;
	int rc = 0;

	*mirrored = 0;
	*diff_line = 0;
	if (git_commit_lookup(&commit, repo, tip) < 0 || git_commit_tree(&root, commit) < 0 ||
	    git_tree_entry_bypath(&jent, root, "journal") < 0 ||
	    git_tree_lookup(&segs, repo, git_tree_entry_id(jent)) < 0) {
		rc = rh_error_set(RH_EIO, "cannot read the mirrored journal: %s", git_msg());
		goto done;
	}
	fd = rh_fs_open_regular(journal_path, O_NOFOLLOW);
	if (fd < 0) {
		rc = fd == RH_ENOTFOUND ? rh_error_set(RH_EIO, "no journal at %s", journal_path)
					: fd;
		fd = -1;
		goto done;
	}
	while (flock(fd, LOCK_SH) != 0 && errno == EINTR)
		;
	for (size_t i = 0; i < git_tree_entrycount(segs); i++) {
		const git_tree_entry *te = git_tree_entry_byindex(segs, i);
		git_blob *blob = NULL;
		const char *data;
		size_t len, got = 0;

		if (git_blob_lookup(&blob, repo, git_tree_entry_id(te)) < 0) {
			rc = rh_error_set(RH_EIO, "cannot read the mirrored segment %s: %s",
					  git_tree_entry_name(te), git_msg());
			goto done;
		}
		data = git_blob_rawcontent(blob);
		len = (size_t)git_blob_rawsize(blob);
		if (len > cap) {
			char *nb = realloc(buf, len);

			if (!nb) {
				git_blob_free(blob);
				rc = rh_error_set(RH_ENOMEM, "out of memory reading the mirror");
				goto done;
			}
			buf = nb;
			cap = len;
		}
		while (got < len) {
			ssize_t n = pread(fd, buf + got, len - got, off + (off_t)got);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		for (size_t k = 0; k < len; k++) {
			if (rc == 0 && (k >= got || buf[k] != data[k])) {
				*diff_line = *mirrored + 1; /* counts the lines before k */
				rc = RH_EVERIFY;
			}
			if (data[k] == '\n')
				(*mirrored)++;
		}
		off += (off_t)len;
		git_blob_free(blob);
	}
done:
	if (fd >= 0)
		close(fd);
	free(buf);
	git_tree_free(segs);
	git_tree_entry_free(jent);
	git_tree_free(root);
	git_commit_free(commit);
	return rc;
}

int rh_mirror_push(struct rh_mirror_result *res, const char *journal_path, const char *mirror_dir,
		   const char *remote_url, const char *branch)
{
	git_repository *repo = NULL;
	git_remote *remote = NULL;
	git_signature *sig = NULL;
	git_commit *parent = NULL;
	git_tree *tree = NULL;
	git_remote_callbacks cb;
	git_push_options po;
	git_remote_create_options ro;
	struct cb_state st = {0};
	git_oid local, remote_tip, tree_id, new_id;
	bool have_local = false, have_remote = false;
	char ref[300], shown[1024], spec[620], msg[640], host[256];
	char *specs[1] = {spec};
	git_strarray refspecs = {specs, 1};
	int valid = 0;
	int rc = 0;

	memset(res, 0, sizeof(*res));
	git_remote_init_callbacks(&cb, GIT_REMOTE_CALLBACKS_VERSION);
	git_push_options_init(&po, GIT_PUSH_OPTIONS_VERSION);
	if (!branch)
		branch = RH_MIRROR_BRANCH;
	safe_url(shown, sizeof(shown), remote_url);
	rc = rh_artifacts_global_check();
	if (rc < 0)
		goto done;
	snprintf(ref, sizeof(ref), "refs/heads/%s", branch);
	if (strlen(branch) > 200 || git_reference_name_is_valid(&valid, ref) < 0 || !valid) {
		rc = rh_error_set(RH_EINVAL, "'%s' is not a valid branch name", branch);
		goto done;
	}
	rc = open_mirror(&repo, mirror_dir);
	if (rc < 0)
		goto done;
	have_local = git_reference_name_to_id(&local, repo, ref) == 0;
	/* Anonymous, without url.*.insteadOf rewriting: the mirror pushes where
	 * it is told (and libgit2 1.5 leaks the rewrite's regex match data). */
	git_remote_create_options_init(&ro, GIT_REMOTE_CREATE_OPTIONS_VERSION);
	ro.repository = repo;
	ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
	if (git_remote_create_with_opts(&remote, remote_url, &ro) < 0) {
		rc = rh_error_set(RH_EIO, "journal remote %s: %s", shown, git_msg());
		goto done;
	}
	rc = fetch_remote_tip(remote, repo, ref, branch, shown, &have_remote, &remote_tip);
	if (rc < 0)
		goto done;
	if (have_remote &&
	    (!have_local || (!git_oid_equal(&local, &remote_tip) &&
			     git_graph_descendant_of(repo, &local, &remote_tip) != 1))) {
		char hex[GIT_OID_HEXSZ + 1];

		git_oid_tostr(hex, sizeof(hex), &remote_tip);
		rc = rh_error_set(RH_EVERIFY,
				  "branch '%s' of %s has diverged from this host's "
				  "journal mirror (its tip %.12s is not in this mirror's history: "
				  "another journal was pushed there, or it was rewritten): "
				  "refusing to push; use another branch (--branch) or investigate; "
				  "rehydra never force-pushes",
				  branch, shown, hex);
		goto done;
	}
	if (have_remote) {
		/* ancestry is not enough: a journal rewritten here would be
		 * committed on top and pushed; the mirror must be its prefix */
		uint64_t mirrored = 0, diff = 0;

		rc = mirror_is_prefix(repo, &remote_tip, journal_path, &mirrored, &diff);
		if (rc == RH_EVERIFY) {
			rc = rh_error_set(
			    RH_EVERIFY,
			    "branch '%s' of %s holds %" PRIu64 " journal entries, and "
			    "this journal no longer has them as they were (first "
			    "difference at line %" PRIu64 "): the local journal was "
			    "altered or truncated after it was mirrored; refusing to push "
			    "(compare with 'rehydra audit verify --against %s')",
			    branch, shown, mirrored, diff, shown);
			goto done;
		}
		if (rc < 0)
			goto done;
	}

	rc = build_tree(&tree_id, &res->lines, repo, journal_path);
	if (rc < 0)
		goto done;
	if (have_local) {
		if (git_commit_lookup(&parent, repo, &local) < 0) {
			rc = rh_error_set(RH_EIO, "cannot read the mirror's branch '%s': %s",
					  branch, git_msg());
			goto done;
		}
	}
	if (!parent || !git_oid_equal(git_commit_tree_id(parent), &tree_id)) {
		const git_commit *parents[1] = {parent};

		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		snprintf(spec, sizeof(spec), "rehydra@%s", host);
		snprintf(msg, sizeof(msg),
			 "journal: %" PRIu64 " entries\n\nPushed by rehydra %s "
			 "from %s.\n",
			 res->lines, RH_VERSION, host);
		if (git_signature_now(&sig, "rehydra", spec) < 0 ||
		    git_tree_lookup(&tree, repo, &tree_id) < 0 ||
		    git_commit_create(&new_id, repo, ref, sig, sig, NULL, msg, tree, parent ? 1 : 0,
				      parents) < 0) {
			rc = rh_error_set(RH_EIO,
					  "cannot commit the journal into the mirror "
					  "%s: %s",
					  mirror_dir, git_msg());
			goto done;
		}
		res->new_commit = true;
	} else {
		git_oid_cpy(&new_id, &local);
	}
	git_oid_tostr(res->commit, sizeof(res->commit), &new_id);
	if (have_remote && git_oid_equal(&remote_tip, &new_id))
		goto done; /* the remote has it all */

	/* no '+': never a forced update */
	snprintf(spec, sizeof(spec), "%s:%s", ref, ref);
	set_callbacks(&cb, &st);
	po.callbacks = cb;
	if (git_remote_push(remote, &refspecs, &po) < 0) {
		rc = rh_error_set(RH_EIO, "cannot push the journal to %s: %s", shown, git_msg());
		goto done;
	}
	if (st.rejected) {
		rc = rh_error_set(RH_EIO, "%s refused the journal branch '%s': %s", shown, branch,
				  st.rejected);
		goto done;
	}
	res->pushed = true;
done:
	free(st.rejected);
	git_tree_free(tree);
	git_commit_free(parent);
	git_signature_free(sig);
	git_remote_free(remote);
	git_repository_free(repo);
	return rc;
}

int rh_mirror_check(struct rh_mirror_check *res, const char *journal_path, const char *mirror_dir,
		    const char *remote_url, const char *branch)
{
	git_repository *repo = NULL;
	git_remote *remote = NULL;
	git_remote_create_options ro;
	git_oid tip;
	char ref[300], shown[1024];
	int valid = 0;
	int rc = 0;

	memset(res, 0, sizeof(*res));
	if (!branch)
		branch = RH_MIRROR_BRANCH;
	safe_url(shown, sizeof(shown), remote_url);
	rc = rh_artifacts_global_check();
	if (rc < 0)
		goto done;
	snprintf(ref, sizeof(ref), "refs/heads/%s", branch);
	if (strlen(branch) > 200 || git_reference_name_is_valid(&valid, ref) < 0 || !valid) {
		rc = rh_error_set(RH_EINVAL, "'%s' is not a valid branch name", branch);
		goto done;
	}
	rc = open_mirror(&repo, mirror_dir);
	if (rc < 0)
		goto done;
	git_remote_create_options_init(&ro, GIT_REMOTE_CREATE_OPTIONS_VERSION);
	ro.repository = repo;
	ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
	if (git_remote_create_with_opts(&remote, remote_url, &ro) < 0) {
		rc = rh_error_set(RH_EIO, "journal remote %s: %s", shown, git_msg());
		goto done;
	}
	rc = fetch_remote_tip(remote, repo, ref, branch, shown, &res->remote_exists, &tip);
	if (rc < 0)
		goto done;
	if (!res->remote_exists) {
		rc = rh_error_set(RH_ENOTFOUND, "%s has no branch '%s': nothing was pushed there",
				  shown, branch);
		goto done;
	}
	git_oid_tostr(res->commit, sizeof(res->commit), &tip);
	rc = mirror_is_prefix(repo, &tip, journal_path, &res->mirrored, &res->diff_line);
	if (rc == RH_EVERIFY)
		rh_error_set(RH_EVERIFY,
			     "the journal differs from branch '%s' of %s at line %" PRIu64
			     " (the mirror holds %" PRIu64 " entries): the local journal was "
			     "altered or truncated after it was mirrored",
			     branch, shown, res->diff_line, res->mirrored);
done:
	git_remote_free(remote);
	git_repository_free(repo);
	return rc;
}
