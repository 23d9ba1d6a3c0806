/*
 * checkpoint.c - signed checkpoints of the journal head (see checkpoint.h).
 *
 * Signing and verifying are ssh-keygen's: rehydra writes the text, spawns
 * `ssh-keygen -Y sign|find-principals|verify` without a shell, and reads the
 * exit status. That keeps the cryptography in the tool auditors already
 * trust, and makes every checkpoint checkable by hand with the same command.
 */
#include "checkpoint.h"
#include "clock.h"
#include "error.h"
#include "fsutil.h"
#include "process.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "banned.h"

#define KEYGEN_TIMEOUT_S 60.0
#define CP_HEADER "rehydra journal checkpoint 1\n"

struct head {
	uint64_t seq;
	char hash[65];
	bool any;
};

static int head_fn(const struct rh_journal_entry *e, void *user)
{
	struct head *h = user;

	h->seq = e->seq;
	snprintf(h->hash, sizeof(h->hash), "%s", e->hash ? e->hash : "");
	h->any = true;
	return 0;
}

/* <journal dir>/checkpoints into buf. */
static int cp_dir(char *buf, size_t size, struct rh_journal *j)
{
	const char *path = rh_journal_path(j);
	const char *slash = strrchr(path, '/');

	if ((size_t)snprintf(buf, size, "%.*s/checkpoints", slash ? (int)(slash - path) : 1,
			     slash ? path : ".") >= size)
		return rh_error_set(RH_EINVAL, "journal path too long: %s", path);
	return 0;
}

/* Runs ssh-keygen with `args` (NULL-terminated, after "ssh-keygen"), stdin
 * from `in` (may be NULL), stdout to `out` (may be NULL). *status gets the
 * exit status (-1 when killed). Its stderr goes to `err` (a file path). */
static int keygen(const char *const *args, const char *in, const char *out, const char *err,
		  int *status)
{
	const char *argv[16];
	const char *envp[5];
	char path_env[PATH_MAX + 8], home_env[PATH_MAX + 8], sock_env[PATH_MAX + 16];
	struct rh_spawn_opts so = {0};
	struct rh_child c = {0};
	size_t n = 0, ne = 0;
	int rc;

	argv[n++] = "ssh-keygen";
	for (size_t i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	/* only what ssh-keygen needs: where it is, the home and the agent */
	snprintf(path_env, sizeof(path_env), "PATH=%s",
		 getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	envp[ne++] = path_env;
	if (getenv("HOME")) {
		snprintf(home_env, sizeof(home_env), "HOME=%s", getenv("HOME"));
		envp[ne++] = home_env;
	}
	if (getenv("SSH_AUTH_SOCK")) {
		snprintf(sock_env, sizeof(sock_env), "SSH_AUTH_SOCK=%s", getenv("SSH_AUTH_SOCK"));
		envp[ne++] = sock_env;
	}
	envp[ne] = NULL;
	so.argv = argv;
	so.envp = envp;
	so.stdin_path = in;
	so.stdout_path = out;
	so.stderr_path = err;
	rc = rh_spawn(&c, &so);
	if (rc < 0)
		return rh_error_prefix(rc, "cannot run ssh-keygen (package openssh-client)");
	rc = rh_child_wait(&c, rh_clock_mono() + KEYGEN_TIMEOUT_S, NULL);
	if (rc < 0) {
		rh_child_stop(&c, 1.0);
		rh_child_release(&c);
		return rh_error_set(RH_ETIMEOUT, "ssh-keygen did not finish in %g s",
				    KEYGEN_TIMEOUT_S);
	}
	*status = WIFEXITED(c.status) ? WEXITSTATUS(c.status) : -1;
	rh_child_release(&c);
	return 0;
}

/* The first line of a small file, without its newline ("" when none). */
static void first_line(char *buf, size_t size, const char *path)
{
	FILE *f = fopen(path, "re");

	buf[0] = '\0';
	if (!f)
		return;
	if (fgets(buf, (int)size, f))
		buf[strcspn(buf, "\r\n")] = '\0';
	fclose(f);
}

int rh_checkpoint_create(struct rh_journal *j, const char *key, char *path, size_t size,
			 uint64_t *seq)
{
	struct rh_journal_problem pb;
	struct head h = {0};
	char dir[PATH_MAX], name[64], text[256], at[40], sig[PATH_MAX + 8], errf[PATH_MAX + 32];
	struct timespec now = rh_clock_wall();
	static const char *const none[] = {NULL};
	int dfd = -1, status = 0, rc;

	path[0] = '\0';
	rc = rh_journal_verify(j, &pb, NULL);
	if (rc < 0) {
		rc = rh_error_set(RH_EVERIFY, "%s: %s; not signing a journal that does not verify",
				  rh_journal_path(j), pb.message[0] ? pb.message : rh_error_last());
		goto done;
	}
	rc = rh_journal_foreach_fields(j, none, head_fn, &h);
	if (rc < 0)
		goto done;
	if (!h.any || strlen(h.hash) != 64) {
		rc = rh_error_set(RH_EVERIFY, "%s has no entry to sign", rh_journal_path(j));
		goto done;
	}
	if ((rc = cp_dir(dir, sizeof(dir), j)) < 0 || (rc = rh_fs_mkdir_p(dir)) < 0)
		goto done;
	rh_clock_rfc3339(at, sizeof(at), &now);
	snprintf(name, sizeof(name), "%010" PRIu64 ".txt", h.seq);
	snprintf(text, sizeof(text), CP_HEADER "seq %" PRIu64 "\nhash %s\nat %s\n", h.seq, h.hash,
		 at);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot open %s", dir);
		goto done;
	}
	rc = rh_fs_write_atomic_at(dfd, dir, name, text, strlen(text));
	if (rc < 0)
		goto done;
	if ((size_t)snprintf(path, size, "%s/%s", dir, name) >= size) {
		rc = rh_error_set(RH_EINVAL, "checkpoint path too long");
		goto done;
	}
	snprintf(sig, sizeof(sig), "%s.sig", path);
	snprintf(errf, sizeof(errf), "%s/.sign-stderr", dir);
	unlink(sig); /* ssh-keygen will not replace it */
	{
		const char *args[] = {"-Y", "sign", "-n", RH_CHECKPOINT_NAMESPACE,
				      "-f", key,    path, NULL};

		rc = keygen(args, NULL, NULL, errf, &status);
	}
	if (rc == 0 && status != 0) {
		char msg[512];

		first_line(msg, sizeof(msg), errf);
		rc = rh_error_set(RH_EIO, "ssh-keygen -Y sign with %s failed (exit %d): %s", key,
				  status, msg[0] ? msg : "no message");
	}
	unlink(errf);
	if (rc < 0) {
		unlinkat(dfd, name, 0);
		path[0] = '\0';
		goto done;
	}
	if (seq)
		*seq = h.seq;
done:
	if (dfd >= 0)
		close(dfd);
	return rc;
}

/* ---- verifying ------------------------------------------------------------ */

struct cp {
	uint64_t seq;
	char hash[65];
	char file[PATH_MAX + 32];
	bool seen;
};

struct cp_check {
	struct cp *cps;
	size_t n;
	uint64_t last_seq;
	bool any;
	char *problem;
	size_t problem_size;
};

static int cp_cmp(const void *a, const void *b)
{
	const struct cp *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int check_fn(const struct rh_journal_entry *e, void *user)
{
	struct cp_check *c = user;

	c->any = true;
	c->last_seq = e->seq;
	for (size_t i = 0; i < c->n; i++) {
		struct cp *p = &c->cps[i];

		if (p->seq != e->seq)
			continue;
		p->seen = true;
		if (strcmp(p->hash, e->hash ? e->hash : "") != 0 && !c->problem[0])
			snprintf(
			    c->problem, c->problem_size,
			    "entry %" PRIu64 " (line %zu) has hash %.16s..., but the signed "
			    "checkpoint %.600s says %.16s...: the journal was rewritten after it "
			    "was signed",
			    e->seq, e->line, e->hash ? e->hash : "", p->file, p->hash);
	}
	return 0;
}

/* Reads a checkpoint text; false when it is not one. */
static bool cp_parse(struct cp *p, const char *file)
{
	char buf[512];
	size_t n;
	FILE *f;
	unsigned long long seq = 0;
	char at[64];
	bool ok;

	f = fopen(file, "re");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	ok = strncmp(buf, CP_HEADER, strlen(CP_HEADER)) == 0 &&
	     sscanf(buf + strlen(CP_HEADER), "seq %llu\nhash %64[0-9a-f]\nat %63s\n", &seq, p->hash,
		    at) == 3 &&
	     strlen(p->hash) == 64;
	p->seq = seq;
	return ok;
}

int rh_checkpoint_verify(struct rh_journal *j, const char *allowed_signers,
			 struct rh_checkpoint_report *rep)
{
	struct cp_check c = {.problem = rep->problem, .problem_size = sizeof(rep->problem)};
	char dir[PATH_MAX], outf[PATH_MAX + 32] = "", errf[PATH_MAX + 32] = "";
	static const char *const none[] = {NULL};
	DIR *dh = NULL;
	struct dirent *de;
	size_t cap = 0;
	int rc = 0;

	memset(rep, 0, sizeof(*rep));
	if (access(allowed_signers, R_OK) != 0)
		return rh_error_set_errno(RH_EINVAL, errno,
					  "cannot read the allowed signers "
					  "file %s",
					  allowed_signers);
	if ((rc = cp_dir(dir, sizeof(dir), j)) < 0)
		return rc;
	dh = opendir(dir);
	while (dh && (de = readdir(dh))) {
		size_t len = strlen(de->d_name);
		struct cp *p;

		if (len != 14 || strcmp(de->d_name + 10, ".txt") != 0)
			continue;
		if (c.n == cap) {
			struct cp *nc = realloc(c.cps, (cap ? cap * 2 : 8) * sizeof(*nc));

			if (!nc) {
				rc = rh_error_set(RH_ENOMEM, "out of memory");
				goto done;
			}
			c.cps = nc;
			cap = cap ? cap * 2 : 8;
		}
		p = &c.cps[c.n];
		memset(p, 0, sizeof(*p));
		snprintf(p->file, sizeof(p->file), "%s/%.14s", dir, de->d_name);
		if (!cp_parse(p, p->file)) {
			snprintf(rep->problem, sizeof(rep->problem),
				 "%.900s is not a rehydra checkpoint (edited?)", p->file);
			rc = RH_EVERIFY;
			goto done;
		}
		c.n++;
	}
	if (c.n == 0) {
		snprintf(rep->problem, sizeof(rep->problem),
			 "no signed checkpoint in %.700s: nothing ties this journal to a signer "
			 "(create one with 'rehydra audit checkpoint --signing-key KEY')",
			 dir);
		rc = RH_EVERIFY;
		goto done;
	}
	qsort(c.cps, c.n, sizeof(*c.cps), cp_cmp);
	snprintf(outf, sizeof(outf), "%s/.verify-stdout", dir);
	snprintf(errf, sizeof(errf), "%s/.verify-stderr", dir);
	/* signatures first: an unsigned or foreign checkpoint proves nothing */
	for (size_t i = 0; i < c.n; i++) {
		char sig[PATH_MAX + 40], principal[256], msg[512];
		int status = 0;

		snprintf(sig, sizeof(sig), "%s.sig", c.cps[i].file);
		{
			const char *args[] = {"-Y", "find-principals", "-s", sig,
					      "-f", allowed_signers,   NULL};

			rc = keygen(args, NULL, outf, errf, &status);
		}
		if (rc < 0)
			goto done;
		first_line(principal, sizeof(principal), outf);
		if (status != 0 || !principal[0]) {
			first_line(msg, sizeof(msg), errf);
			snprintf(
			    rep->problem, sizeof(rep->problem),
			    "checkpoint %.300s: no signer in %.200s made its signature (%.300s)",
			    c.cps[i].file, allowed_signers,
			    msg[0] ? msg : "missing or foreign signature");
			rc = RH_EVERIFY;
			goto done;
		}
		{
			const char *args[] = {"-Y", "verify",  "-f", allowed_signers,
					      "-I", principal, "-n", RH_CHECKPOINT_NAMESPACE,
					      "-s", sig,       NULL};

			rc = keygen(args, c.cps[i].file, outf, errf, &status);
		}
		if (rc < 0)
			goto done;
		if (status != 0) {
			first_line(msg, sizeof(msg), errf);
			snprintf(rep->problem, sizeof(rep->problem),
				 "checkpoint %.500s: its signature does not verify (%.300s): the "
				 "checkpoint was edited",
				 c.cps[i].file, msg[0] ? msg : "ssh-keygen -Y verify failed");
			rc = RH_EVERIFY;
			goto done;
		}
		snprintf(rep->principal, sizeof(rep->principal), "%s", principal);
	}
	rc = rh_journal_foreach_fields(j, none, check_fn, &c);
	if (rc < 0)
		goto done;
	if (!rep->problem[0]) {
		for (size_t i = 0; i < c.n; i++) {
			if (c.cps[i].seen)
				continue;
			snprintf(rep->problem, sizeof(rep->problem),
				 "the signed checkpoint %.600s names entry %" PRIu64
				 ", but the journal ends at entry %" PRIu64
				 ": entries were deleted after it was signed",
				 c.cps[i].file, c.cps[i].seq, c.last_seq);
			break;
		}
	}
	if (rep->problem[0]) {
		rc = RH_EVERIFY;
		goto done;
	}
	rep->checked = c.n;
	rep->latest_seq = c.cps[c.n - 1].seq;
done:
	if (outf[0])
		unlink(outf);
	if (errf[0])
		unlink(errf);
	if (dh)
		closedir(dh);
	free(c.cps);
	return rc;
}
