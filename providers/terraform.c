/*
 * terraform.c - runs Terraform/OpenTofu and reads its machine-readable UI.
 *
 * rehydra reaches clouds through Terraform and their official providers
 * rather than hand-written API clients, so this file is the only code that
 * starts the binary. It never goes through a shell, gives the child a clean
 * environment with only the credential variables the providers document,
 * and reads the `-json` stream while the command runs: that stream is where
 * the per-resource times of a drill come from, and where a failed apply
 * says which resource failed and why.
 */
#include "terraform.h"
#include "clock.h"
#include "error.h"
#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "banned.h"

extern char **environ;

#define TF_STOP_GRACE_S 10.0
#define TF_POLL_S 0.25
#define TF_LINE_MAX (1024 * 1024) /* longer lines are skipped, not buffered forever */

/* ---- the stream parser -------------------------------------------------- */

int rh_tf_stream_init(struct rh_tf_stream *st)
{
	memset(st, 0, sizeof(*st));
	st->resources = json_object();
	st->errors = json_array();
	st->warnings = json_array();
	if (!st->resources || !st->errors || !st->warnings) {
		rh_tf_stream_release(st);
		return rh_error_set(RH_ENOMEM, "out of memory reading terraform output");
	}
	return 0;
}

void rh_tf_stream_release(struct rh_tf_stream *st)
{
	if (!st)
		return;
	json_decref(st->resources);
	json_decref(st->errors);
	json_decref(st->warnings);
	json_decref(st->summary);
	json_decref(st->outputs);
	free(st->tf_version);
	free(st->ui_version);
	memset(st, 0, sizeof(*st));
}

static const char *str_at(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : "";
}

static const char *action_verb(const char *action)
{
	if (strcmp(action, "create") == 0)
		return "creating";
	if (strcmp(action, "delete") == 0)
		return "destroying";
	if (strcmp(action, "update") == 0)
		return "modifying";
	if (strcmp(action, "replace") == 0)
		return "replacing";
	return action;
}

/* apply_start / apply_progress / apply_complete / apply_errored */
static int on_hook(struct rh_tf_stream *st, const char *type, const json_t *hook)
{
	const json_t *res = json_object_get(hook, "resource");
	const char *addr = str_at(res, "addr");
	const char *action = str_at(hook, "action");
	const json_t *el = json_object_get(hook, "elapsed_seconds");
	const char *status;
	json_t *entry;

	if (!*addr)
		return 0; /* nothing to attach it to */
	if (strcmp(type, "apply_complete") == 0)
		status = "complete";
	else if (strcmp(type, "apply_errored") == 0)
		status = "errored";
	else
		status = "started";
	entry = json_object_get(st->resources, addr);
	if (!entry) {
		entry = json_object();
		if (!entry || json_object_set_new(st->resources, addr, entry) < 0)
			return rh_error_set(RH_ENOMEM, "out of memory reading terraform output");
	}
	if (*action && json_object_set_new(entry, "action", json_string(action)) < 0)
		return rh_error_set(RH_ENOMEM, "out of memory reading terraform output");
	/* progress never demotes a finished resource */
	if (strcmp(status, "started") != 0 || !json_object_get(entry, "status"))
		if (json_object_set_new(entry, "status", json_string(status)) < 0)
			return rh_error_set(RH_ENOMEM, "out of memory reading terraform output");
	if (json_is_number(el) &&
	    json_object_set_new(entry, "elapsed_s", json_real(json_number_value(el))) < 0)
		return rh_error_set(RH_ENOMEM, "out of memory reading terraform output");
	if (strcmp(type, "apply_complete") == 0)
		snprintf(st->last_event, sizeof(st->last_event), "%s: %s done (%gs)", addr,
			 action_verb(action), json_is_number(el) ? json_number_value(el) : 0.0);
	else if (strcmp(type, "apply_errored") == 0)
		snprintf(st->last_event, sizeof(st->last_event), "%s: %s failed", addr,
			 action_verb(action));
	else
		snprintf(st->last_event, sizeof(st->last_event), "%s: %s (%gs)", addr,
			 action_verb(action), json_is_number(el) ? json_number_value(el) : 0.0);
	return 0;
}

static int on_diagnostic(struct rh_tf_stream *st, const json_t *diag)
{
	const char *sev = str_at(diag, "severity");
	const json_t *range = json_object_get(diag, "range");
	const json_t *line = json_object_get(json_object_get(range, "start"), "line");
	json_t *item;

	if (!json_is_object(diag))
		return 0;
	item = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "severity", sev, "summary",
			 str_at(diag, "summary"), "detail", str_at(diag, "detail"), "address",
			 str_at(diag, "address"), "file", str_at(range, "filename"), "line",
			 (json_int_t)(json_is_integer(line) ? json_integer_value(line) : 0));
	if (!item)
		return rh_error_set(RH_ENOMEM, "out of memory reading terraform output");
	if (json_array_append_new(strcmp(sev, "error") == 0 ? st->errors : st->warnings, item) < 0)
		return rh_error_set(RH_ENOMEM, "out of memory reading terraform output");
	return 0;
}

static int on_version(struct rh_tf_stream *st, const json_t *msg)
{
	const char *ui = str_at(msg, "ui");
	char *end = NULL;
	long major;

	free(st->tf_version);
	free(st->ui_version);
	st->tf_version = strdup(str_at(msg, "terraform"));
	st->ui_version = strdup(ui);
	if (!st->tf_version || !st->ui_version)
		return rh_error_set(RH_ENOMEM, "out of memory reading terraform output");
	errno = 0;
	major = strtol(ui, &end, 10);
	if (*ui && end != ui && errno == 0 && major > 1)
		return rh_error_set(RH_EUNSUPPORTED,
				    "terraform %s speaks machine-readable UI %s, which rehydra "
				    "does not know (it reads 0.x and 1.x): use a terraform/tofu "
				    "release with UI 1.x or upgrade rehydra",
				    st->tf_version, ui);
	return 0;
}

static int replace(json_t **slot, const json_t *val)
{
	json_decref(*slot);
	*slot = val ? json_deep_copy(val) : NULL;
	if (val && !*slot)
		return rh_error_set(RH_ENOMEM, "out of memory reading terraform output");
	return 0;
}

int rh_tf_stream_feed(struct rh_tf_stream *st, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *msg;
	const char *type;
	int rc = 0;

	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (len == 0)
		return 0;
	msg = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(msg)) {
		st->skipped++;
		goto done;
	}
	st->lines++;
	type = str_at(msg, "type");
	if (strcmp(type, "version") == 0)
		rc = on_version(st, msg);
	else if (strcmp(type, "diagnostic") == 0)
		rc = on_diagnostic(st, json_object_get(msg, "diagnostic"));
	else if (strcmp(type, "apply_start") == 0 || strcmp(type, "apply_progress") == 0 ||
		 strcmp(type, "apply_complete") == 0 || strcmp(type, "apply_errored") == 0)
		rc = on_hook(st, type, json_object_get(msg, "hook"));
	else if (strcmp(type, "change_summary") == 0)
		rc = replace(&st->summary, json_object_get(msg, "changes"));
	else if (strcmp(type, "outputs") == 0)
		rc = replace(&st->outputs, json_object_get(msg, "outputs"));
	else
		st->unknown++;
done:
	json_decref(msg);
	return rc;
}

int rh_tf_stream_feed_file(struct rh_tf_stream *st, const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0;

	if (!f)
		return rh_error_set_errno(RH_EIO, errno, "cannot read %s", path);
	while (rc == 0 && (n = getline(&line, &cap, f)) >= 0)
		rc = rh_tf_stream_feed(st, line, (size_t)n);
	free(line);
	fclose(f);
	return rc;
}

/* The address an error belongs to: the diagnostic's own, else the first
 * errored resource not yet named by another diagnostic (Terraform prints
 * the apply_errored hook and then the diagnostic for it). */
static const char *diag_address(const struct rh_tf_stream *st, const json_t *diag, json_t *used)
{
	const char *addr = str_at(diag, "address");
	const char *key;
	json_t *val;

	if (*addr)
		return addr;
	json_object_foreach(st->resources, key, val)
	{
		if (strcmp(str_at(val, "status"), "errored") != 0 || json_object_get(used, key))
			continue;
		json_object_set_new(used, key, json_true());
		return key;
	}
	return "";
}

static void append(char *buf, size_t size, size_t *pos, const char *fmt, const char *s)
{
	int n;

	if (*pos >= size)
		return;
	n = snprintf(buf + *pos, size - *pos, fmt, s);
	if (n > 0)
		*pos = *pos + (size_t)n < size ? *pos + (size_t)n : size - 1;
}

/* Diagnostic details are multi-line prose; a message wants one line. */
static void one_line(char *dst, size_t size, const char *src)
{
	size_t j = 0;
	bool space = false;

	for (size_t i = 0; src[i] && j + 1 < size; i++) {
		unsigned char c = (unsigned char)src[i];

		if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
			space = j > 0;
			continue;
		}
		if (c < 0x20)
			continue;
		if (space && j + 2 < size)
			dst[j++] = ' ';
		space = false;
		dst[j++] = (char)c;
	}
	dst[j] = '\0';
}

size_t rh_tf_stream_errors(const struct rh_tf_stream *st, char *buf, size_t size)
{
	json_t *used = json_object();
	char flat[1024];
	size_t pos = 0;
	size_t i;
	json_t *d;

	if (size)
		buf[0] = '\0';
	json_array_foreach(st->errors, i, d)
	{
		const char *addr = used ? diag_address(st, d, used) : str_at(d, "address");
		const char *detail = str_at(d, "detail");

		if (i)
			append(buf, size, &pos, "%s", "; ");
		if (*addr)
			append(buf, size, &pos, "%s: ", addr);
		one_line(flat, sizeof(flat), str_at(d, "summary"));
		append(buf, size, &pos, "%s", flat);
		if (*detail) {
			one_line(flat, sizeof(flat), detail);
			append(buf, size, &pos, ": %s", flat);
		}
	}
	json_decref(used);
	return json_array_size(st->errors);
}

/* ---- finding the binary ------------------------------------------------- */

static bool is_executable_file(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && access(path, X_OK) == 0;
}

static char *search_path(const char *name)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		const char *colon = strchr(path, ':');
		size_t n = colon ? (size_t)(colon - path) : strlen(path);

		if (n > 0 && n + strlen(name) + 2 <= sizeof(buf)) {
			memcpy(buf, path, n);
			buf[n] = '/';
			memcpy(buf + n + 1, name, strlen(name) + 1);
			if (is_executable_file(buf))
				return strdup(buf);
		}
		path += n;
		if (*path == ':')
			path++;
	}
	return NULL;
}

int rh_tf_find(char **out, const char *option)
{
	const char *env = getenv("REHYDRA_TERRAFORM");
	const char *given = option && *option ? option : env && *env ? env : NULL;
	const char *from = option && *option ? "target.terraform" : "REHYDRA_TERRAFORM";
	char *found = NULL;

	*out = NULL;
	if (given) {
		if (strchr(given, '/'))
			found = is_executable_file(given) ? strdup(given) : NULL;
		else
			found = search_path(given);
		if (!found)
			return rh_error_set(RH_EINVAL,
					    "%s names '%s', which is not an executable file: "
					    "point it at a terraform or tofu binary",
					    from, given);
	} else {
		found = search_path("terraform");
		if (!found)
			found = search_path("tofu");
		if (!found)
			return rh_error_set(
			    RH_EINVAL,
			    "neither terraform nor tofu is on PATH: install OpenTofu "
			    "(https://opentofu.org/docs/intro/install/, e.g. `apt install tofu` "
			    "from its repository) or Terraform "
			    "(https://developer.hashicorp.com/terraform/install), or set "
			    "REHYDRA_TERRAFORM=/path/to/the/binary");
	}
	*out = found;
	return found ? 0 : rh_error_set(RH_ENOMEM, "out of memory");
}

/* ---- environment -------------------------------------------------------- */

static const char *const tf_env_plain[] = {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", NULL};
static const char *const tf_env_prefixes[] = {"AWS_", "ALICLOUD_", "NEBIUS_", "TF_", NULL};
static const char *const tf_env_fixed[] = {"TF_IN_AUTOMATION=1", "TF_INPUT=0",
					   "CHECKPOINT_DISABLE=1", NULL};

bool rh_tf_env_passes(const char *name)
{
	for (size_t i = 0; tf_env_plain[i]; i++)
		if (strcmp(name, tf_env_plain[i]) == 0)
			return true;
	for (size_t i = 0; tf_env_prefixes[i]; i++)
		if (strncmp(name, tf_env_prefixes[i], strlen(tf_env_prefixes[i])) == 0 &&
		    name[strlen(tf_env_prefixes[i])])
			return true;
	return false;
}

void rh_tf_env_free(char **env)
{
	if (!env)
		return;
	for (size_t i = 0; env[i]; i++)
		free(env[i]);
	free(env);
}

static bool fixed_overrides(const char *entry)
{
	for (size_t i = 0; tf_env_fixed[i]; i++) {
		size_t n = strcspn(tf_env_fixed[i], "=") + 1;

		if (strncmp(entry, tf_env_fixed[i], n) == 0)
			return true;
	}
	return false;
}

int rh_tf_env_build(char ***out)
{
	size_t n = 0, cap = 8;
	char **env;
	int rc = 0;

	*out = NULL;
	for (size_t i = 0; environ && environ[i]; i++)
		cap++;
	env = calloc(cap, sizeof(*env));
	if (!env)
		return rh_error_set(RH_ENOMEM, "out of memory building terraform's environment");
	for (size_t i = 0; environ && environ[i]; i++) {
		const char *e = environ[i];
		size_t k = strcspn(e, "=");
		char name[256];

		if (!e[k] || k == 0 || k >= sizeof(name) || fixed_overrides(e))
			continue;
		memcpy(name, e, k);
		name[k] = '\0';
		if (!rh_tf_env_passes(name))
			continue;
		if (!(env[n++] = strdup(e))) {
			rc = rh_error_set(RH_ENOMEM,
					  "out of memory building terraform's environment");
			goto done;
		}
	}
	for (size_t i = 0; tf_env_fixed[i]; i++)
		if (!(env[n++] = strdup(tf_env_fixed[i]))) {
			rc = rh_error_set(RH_ENOMEM,
					  "out of memory building terraform's environment");
			goto done;
		}
	*out = env;
	env = NULL;
done:
	rh_tf_env_free(env);
	return rc;
}

/* ---- running ------------------------------------------------------------ */

/* Reads what the child appended to its stdout since *off and feeds the
 * complete lines; a partial last line waits for the next call (or `last`). */
struct line_reader {
	int fd;
	off_t off;
	char *buf;
	size_t len, cap;
	bool overlong; /* dropping the rest of a line longer than TF_LINE_MAX */
};

static int reader_pump(struct line_reader *r, struct rh_tf_stream *st, bool last)
{
	char chunk[65536];
	ssize_t n;
	int rc = 0;

	if (r->fd < 0)
		return 0;
	while ((n = pread(r->fd, chunk, sizeof(chunk), r->off)) > 0) {
		r->off += n;
		for (ssize_t i = 0; i < n && rc == 0; i++) {
			if (chunk[i] == '\n') {
				if (!r->overlong)
					rc = rh_tf_stream_feed(st, r->buf ? r->buf : "", r->len);
				else
					st->skipped++;
				r->len = 0;
				r->overlong = false;
				continue;
			}
			if (r->overlong)
				continue;
			if (r->len + 1 > r->cap) {
				size_t ncap = r->cap ? r->cap * 2 : 4096;
				char *nb;

				if (ncap > TF_LINE_MAX) {
					r->overlong = true;
					continue;
				}
				nb = realloc(r->buf, ncap);
				if (!nb)
					return rh_error_set(RH_ENOMEM, "out of memory reading "
								       "terraform output");
				r->buf = nb;
				r->cap = ncap;
			}
			r->buf[r->len++] = chunk[i];
		}
		if (rc < 0)
			return rc;
	}
	if (last && r->len && !r->overlong)
		rc = rh_tf_stream_feed(st, r->buf, r->len);
	if (last)
		r->len = 0;
	return rc;
}

/* Terraform's own cause, from its plain-text stderr: the first "Error: "
 * line and the paragraph after it (the detail), joined into one line, with
 * the box-drawing prefix -no-color still prints ("│ ") removed. Returns
 * false when the file has no such line. */
static bool first_error(char *buf, size_t size, const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0, pos = 0;
	ssize_t n;
	int state = 0; /* 0 looking, 1 took the summary, 3 in the detail, 2 done */

	buf[0] = '\0';
	if (!f)
		return false;
	while (state != 2 && (n = getline(&line, &cap, f)) >= 0) {
		char *t = line;

		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
			line[--n] = '\0';
		if (strncmp(t, "\xe2\x94\x82", 3) == 0 || strncmp(t, "\xe2\x95\xb7", 3) == 0 ||
		    strncmp(t, "\xe2\x95\xb5", 3) == 0)
			t += 3;
		while (*t == ' ')
			t++;
		if (state == 0 && strncmp(t, "Error: ", 7) == 0) {
			int w = snprintf(buf, size, "%s", t + 7);

			pos = w < 0 ? 0 : (size_t)w < size ? (size_t)w : size - 1;
			state = 1;
		} else if (state >= 1 && *t) {
			/* the detail paragraph, wrapped over several lines */
			int w;

			for (unsigned char *c = (unsigned char *)t; *c; c++)
				if (*c < 0x20)
					*c = ' ';
			w = pos < size ? snprintf(buf + pos, size - pos, "%s%s",
						  state == 1 ? ": " : " ", t)
				       : 0;
			pos += w > 0 ? (size_t)w : 0;
			state = 3;
		} else if (state == 3) {
			state = 2; /* a blank line ends the detail */
		}
	}
	free(line);
	fclose(f);
	return state > 0;
}

int rh_tf_run(struct rh_tf_run *run)
{
	struct rh_spawn_opts opts = {0};
	struct rh_child child = {.pid = 0, .pidfd = -1};
	struct line_reader rd = {.fd = -1};
	const char **argv = NULL;
	char **envp = NULL;
	char *chdir_arg = NULL, *out_path = NULL, *err_path = NULL;
	char last_sent[sizeof(run->stream->last_event)] = "";
	const char *sub = run->args && run->args[0] ? run->args[0] : "";
	bool have_child = false;
	size_t nargs = 0;
	int rc = 0, prc = 0;

	run->exit_status = -1;
	while (run->args && run->args[nargs])
		nargs++;
	argv = calloc(nargs + 3, sizeof(*argv));
	if (!argv || asprintf(&chdir_arg, "-chdir=%s", run->dir) < 0 ||
	    asprintf(&out_path, "%s.stdout", run->log_prefix) < 0 ||
	    asprintf(&err_path, "%s.stderr", run->log_prefix) < 0) {
		chdir_arg = out_path = err_path = NULL;
		rc = rh_error_set(RH_ENOMEM, "out of memory starting terraform");
		goto done;
	}
	argv[0] = run->bin;
	argv[1] = chdir_arg;
	for (size_t i = 0; i < nargs; i++)
		argv[2 + i] = run->args[i];
	rc = rh_tf_env_build(&envp);
	if (rc < 0)
		goto done;
	if (run->cancel && rh_cancel_is_fired(run->cancel)) {
		rc = rh_error_set(RH_ECANCELLED, "cancelled before terraform %s", sub);
		goto done;
	}
	opts.argv = argv;
	opts.envp = (const char *const *)envp;
	opts.stdout_path = out_path;
	opts.stderr_path = err_path;
	rc = rh_spawn(&child, &opts);
	if (rc < 0) {
		rh_error_prefix(rc, "cannot start %s", run->bin);
		goto done;
	}
	have_child = true;
	if (run->stream)
		rd.fd = open(out_path, O_RDONLY | O_CLOEXEC);

	for (;;) {
		double now = rh_clock_mono();
		double until = now + TF_POLL_S;
		int w;

		if (run->deadline > 0 && until > run->deadline)
			until = run->deadline;
		w = rh_child_wait(&child, until, run->cancel);
		if (run->stream && prc == 0) {
			prc = reader_pump(&rd, run->stream, w == 0);
			if (run->progress && run->stream->last_event[0] &&
			    strcmp(last_sent, run->stream->last_event) != 0) {
				snprintf(last_sent, sizeof(last_sent), "%s",
					 run->stream->last_event);
				run->progress(run->progress_user, last_sent);
			}
		}
		if (w == 0)
			break;
		if (w == RH_ECANCELLED ||
		    (w == RH_ETIMEOUT && run->deadline > 0 && rh_clock_mono() >= run->deadline)) {
			/* Terraform treats SIGTERM like Ctrl-C: it stops after the
			 * operations in flight and saves its state. */
			rh_child_stop(&child, TF_STOP_GRACE_S);
			if (run->stream)
				reader_pump(&rd, run->stream, true);
			rc = w == RH_ECANCELLED
				 ? rh_error_set(RH_ECANCELLED, "terraform %s was interrupted", sub)
				 : rh_error_set(RH_ETIMEOUT,
						"terraform %s did not finish before the step's "
						"timeout; raise timeout_s",
						sub);
			goto done;
		}
	}
	if (WIFEXITED(child.status))
		run->exit_status = WEXITSTATUS(child.status);
	if (prc < 0) {
		rc = prc;
		goto done;
	}
	if (!WIFEXITED(child.status) || WEXITSTATUS(child.status) != 0) {
		char how[64];

		char cause[600];

		rh_child_describe(how, sizeof(how), child.status);
		if (first_error(cause, sizeof(cause), err_path))
			rc = rh_error_set(RH_ERROR, "terraform %s %s: %s (logs: %s, %s)", sub, how,
					  cause, out_path, err_path);
		else
			rc = rh_error_set(RH_ERROR, "terraform %s %s (logs: %s, %s)", sub, how,
					  out_path, err_path);
	}
done:
	if (have_child)
		rh_child_release(&child);
	if (rd.fd >= 0)
		close(rd.fd);
	free(rd.buf);
	free(argv);
	rh_tf_env_free(envp);
	free(chdir_arg);
	free(out_path);
	free(err_path);
	return rc;
}
