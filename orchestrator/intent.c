/*
 * intent.c - the drill's intent file and the recovery of drills whose
 * rehydra was killed (see intent.h).
 *
 * Why a file per drill, rewritten whole: a drill is killed at an arbitrary
 * instant, so whatever the next rehydra reads must be either the previous
 * complete version or the new one; an atomic replace gives that with no
 * log to replay. The file only ever grows by a few process groups, so
 * rewriting it is cheap, and one file per drill lets concurrent drills in
 * one state directory never touch each other's.
 *
 * Why recovery runs in whatever command opens the state directory next:
 * nobody runs a "cleanup" command after a crash they did not notice, but
 * the next drill, audit or report is certain to come, and it can say what
 * it found on stderr and leave the evidence in the journal.
 */
#include "intent.h"
#include "clock.h"
#include "error.h"
#include "fsutil.h"
#include "journal.h"
#include "pgroup.h"
#include "terraform.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

/* An intent file larger than this is not one. */
#define INTENT_MAX_BYTES (4 << 20)
/* How long stopped process groups get to exit after SIGKILL. */
#define INTENT_KILL_WAIT_S 5.0

struct rh_intent {
	char *dir;  /* <state_dir>/intents */
	char *name; /* <drill id>.json */
	struct rh_intent_info info;
	pthread_mutex_t lock;
};

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* `path` made absolute against the current directory (new), so that a
 * command started elsewhere finds it; NULL for NULL or out of memory. */
static char *absolute(const char *path)
{
	char cwd[PATH_MAX];
	char *out = NULL;

	if (!path)
		return NULL;
	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return strdup(path);
	if (asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}

void rh_intent_info_clear(struct rh_intent_info *info)
{
	if (!info)
		return;
	free(info->drill_id);
	free(info->drill_dir);
	free(info->started_at);
	free(info->marker);
	free(info->boot_id);
	free(info->workspace);
	free(info->terraform_dir);
	free(info->terraform_bin);
	free(info->groups);
	json_decref(info->record);
	memset(info, 0, sizeof(*info));
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

char *rh_intent_format(const struct rh_intent_info *info)
{
	json_t *doc = json_object(), *groups = json_array();
	char *text = NULL;
	int err = 0;

	if (!doc || !groups)
		goto done;
	err |= json_object_set_new(doc, "rehydra_intent", json_integer(RH_INTENT_FORMAT));
	err |= json_object_set_new(doc, "drill_id", str_or_null(info->drill_id));
	err |= json_object_set_new(doc, "drill_dir", str_or_null(info->drill_dir));
	err |= json_object_set_new(doc, "started_at", str_or_null(info->started_at));
	err |= json_object_set_new(doc, "pid", json_integer(info->pid));
	err |= json_object_set_new(doc, "pid_start", json_integer((json_int_t)info->pid_start));
	err |= json_object_set_new(doc, "boot_id", str_or_null(info->boot_id));
	err |= json_object_set_new(doc, "marker", str_or_null(info->marker));
	for (size_t i = 0; i < info->n_groups; i++)
		err |= json_array_append_new(groups, json_pack("{s:i, s:I}", "pgid",
							       (int)info->groups[i].pgid, "start",
							       (json_int_t)info->groups[i].start));
	err |= json_object_set(doc, "process_groups", groups);
	err |= json_object_set_new(doc, "workspace", str_or_null(info->workspace));
	err |= json_object_set_new(doc, "terraform_dir", str_or_null(info->terraform_dir));
	err |= json_object_set_new(doc, "terraform_bin", str_or_null(info->terraform_bin));
	err |= json_object_set(doc, "record", info->record ? info->record : json_null());
	if (err == 0)
		text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
done:
	json_decref(groups);
	json_decref(doc);
	return text;
}

static int get_str(char **out, const json_t *doc, const char *key, bool required)
{
	const json_t *v = json_object_get(doc, key);

	*out = NULL;
	if (!v || json_is_null(v)) {
		if (required)
			return rh_error_set(RH_EINVAL, "intent: \"%s\" is missing", key);
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return rh_error_set(RH_EINVAL, "intent: \"%s\" must be a non-empty string", key);
	*out = strdup(json_string_value(v));
	return *out ? 0 : rh_error_set(RH_ENOMEM, "out of memory reading an intent");
}

static int get_count(json_int_t *out, const json_t *doc, const char *key, json_int_t min)
{
	const json_t *v = json_object_get(doc, key);

	if (!json_is_integer(v) || json_integer_value(v) < min)
		return rh_error_set(RH_EINVAL, "intent: \"%s\" must be an integer >= %lld", key,
				    (long long)min);
	*out = json_integer_value(v);
	return 0;
}

int rh_intent_parse(struct rh_intent_info *out, const char *text, size_t len)
{
	json_error_t jerr;
	json_t *doc = NULL;
	const json_t *groups, *rec;
	json_int_t v;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc || !json_is_object(doc)) {
		rc = rh_error_set(RH_EINVAL, "intent: not a JSON object (%s, line %d)",
				  doc ? "another type" : jerr.text, doc ? 1 : jerr.line);
		goto done;
	}
	if ((rc = get_count(&v, doc, "rehydra_intent", 1)) < 0)
		goto done;
	if (v != RH_INTENT_FORMAT) {
		rc = rh_error_set(RH_EINVAL, "intent: format %lld is not %d", (long long)v,
				  RH_INTENT_FORMAT);
		goto done;
	}
	if ((rc = get_str(&out->drill_id, doc, "drill_id", true)) < 0 ||
	    (rc = get_str(&out->drill_dir, doc, "drill_dir", false)) < 0 ||
	    (rc = get_str(&out->started_at, doc, "started_at", false)) < 0 ||
	    (rc = get_str(&out->marker, doc, "marker", false)) < 0 ||
	    (rc = get_str(&out->boot_id, doc, "boot_id", false)) < 0 ||
	    (rc = get_str(&out->workspace, doc, "workspace", false)) < 0 ||
	    (rc = get_str(&out->terraform_dir, doc, "terraform_dir", false)) < 0 ||
	    (rc = get_str(&out->terraform_bin, doc, "terraform_bin", false)) < 0)
		goto done;
	if (strchr(out->drill_id, '/') || out->drill_id[0] == '.') {
		rc = rh_error_set(RH_EINVAL, "intent: bad drill id \"%s\"", out->drill_id);
		goto done;
	}
	if ((rc = get_count(&v, doc, "pid", 1)) < 0)
		goto done;
	out->pid = (pid_t)v;
	if ((rc = get_count(&v, doc, "pid_start", 0)) < 0)
		goto done;
	out->pid_start = (unsigned long long)v;
	groups = json_object_get(doc, "process_groups");
	if (!json_is_array(groups)) {
		rc = rh_error_set(RH_EINVAL, "intent: \"process_groups\" must be an array");
		goto done;
	}
	out->groups = calloc(json_array_size(groups) + 1, sizeof(*out->groups));
	if (!out->groups) {
		rc = rh_error_set(RH_ENOMEM, "out of memory reading an intent");
		goto done;
	}
	for (size_t i = 0; i < json_array_size(groups); i++) {
		const json_t *g = json_array_get(groups, i);

		if (!json_is_object(g) || get_count(&v, g, "pgid", 2) < 0) {
			rc = rh_error_set(RH_EINVAL,
					  "intent: process_groups[%zu] needs a \"pgid\" >= 2", i);
			goto done;
		}
		out->groups[i].pgid = (pid_t)v;
		if (get_count(&v, g, "start", 0) < 0) {
			rc = rh_error_set(RH_EINVAL,
					  "intent: process_groups[%zu] needs a \"start\" >= 0", i);
			goto done;
		}
		out->groups[i].start = (unsigned long long)v;
		out->n_groups++;
	}
	rec = json_object_get(doc, "record");
	if (json_is_object(rec))
		out->record = json_incref((json_t *)rec);
	else if (rec && !json_is_null(rec)) {
		rc = rh_error_set(RH_EINVAL, "intent: \"record\" must be an object or null");
		goto done;
	}
done:
	if (rc < 0)
		rh_intent_info_clear(out);
	json_decref(doc);
	return rc;
}

bool rh_intent_is_stale(const struct rh_intent_info *info)
{
	char boot[64];

	rh_proc_boot_id(boot, sizeof(boot));
	if (info->boot_id && boot[0] && strcmp(info->boot_id, boot) != 0)
		return true;
	return !rh_proc_is(info->pid, info->pid_start);
}

/* Rewrites the file from in->info; the caller holds in->lock. */
static int intent_write(struct rh_intent *in)
{
	char *text = rh_intent_format(&in->info);
	int dfd = -1, rc;

	if (!text)
		return rh_error_set(RH_ENOMEM, "out of memory writing the drill's intent");
	dfd = open(in->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot open %s", in->dir);
		goto done;
	}
	rc = rh_fs_write_atomic_at(dfd, in->dir, in->name, text, strlen(text));
done:
	if (dfd >= 0)
		close(dfd);
	free(text);
	return rc;
}

int rh_intent_begin(struct rh_intent **out, const char *state_dir, const char *drill_id,
		    const char *drill_dir, const json_t *record, const char *terraform_bin)
{
	struct rh_intent *in = NULL;
	struct timespec now = rh_clock_wall();
	char at[64], boot[64];
	char *state_abs = absolute(state_dir), *dir_abs = absolute(drill_dir);
	int rc = 0;

	*out = NULL;
	if (!state_abs || (drill_dir && !dir_abs)) {
		free(state_abs);
		free(dir_abs);
		return rh_error_set(RH_ENOMEM, "out of memory writing the drill's intent");
	}
	state_dir = state_abs;
	drill_dir = dir_abs;
	in = calloc(1, sizeof(*in));
	if (!in) {
		rc = rh_error_set(RH_ENOMEM, "out of memory writing the drill's intent");
		goto done;
	}
	pthread_mutex_init(&in->lock, NULL);
	rh_clock_rfc3339(at, sizeof(at), &now);
	rh_proc_boot_id(boot, sizeof(boot));
	in->info.pid = getpid();
	if (rh_proc_start_ticks(in->info.pid, &in->info.pid_start) < 0) {
		rc = rh_error_prefix(RH_EIO, "cannot read this process's start time");
		goto done;
	}
	if (asprintf(&in->dir, "%s/intents", state_dir) < 0 ||
	    asprintf(&in->name, "%s.json", drill_id) < 0 ||
	    asprintf(&in->info.marker, "%s=%s", RH_INTENT_MARKER_NAME, drill_id) < 0 ||
	    (drill_dir && asprintf(&in->info.terraform_dir, "%s/terraform", drill_dir) < 0)) {
		rc = rh_error_set(RH_ENOMEM, "out of memory writing the drill's intent");
		goto done;
	}
	in->info.drill_id = strdup(drill_id);
	in->info.drill_dir = dup_or_null(drill_dir);
	in->info.started_at = strdup(at);
	in->info.boot_id = boot[0] ? strdup(boot) : NULL;
	in->info.terraform_bin = dup_or_null(terraform_bin);
	in->info.record = record ? json_deep_copy(record) : NULL;
	in->info.groups = calloc(1, sizeof(*in->info.groups));
	if (!in->info.drill_id || !in->info.started_at || !in->info.groups ||
	    (drill_dir && !in->info.drill_dir) || (record && !in->info.record)) {
		rc = rh_error_set(RH_ENOMEM, "out of memory writing the drill's intent");
		goto done;
	}
	if ((rc = rh_fs_mkdir_p(in->dir)) < 0)
		goto done;
	rc = intent_write(in);
done:
	if (rc < 0) {
		rh_error_prefix(rc, "cannot record the drill's intent in %s/intents", state_dir);
		rh_intent_free(in);
		in = NULL;
	}
	free(state_abs);
	free(dir_abs);
	*out = in;
	return rc;
}

int rh_intent_note_group(struct rh_intent *in, pid_t pgid)
{
	struct rh_intent_group *g;
	unsigned long long start = 0;
	int rc;

	/* the child was just started and is not reaped before rh_spawn returns */
	if (rh_proc_start_ticks(pgid, &start) < 0)
		rh_error_clear();
	pthread_mutex_lock(&in->lock);
	g = realloc(in->info.groups, (in->info.n_groups + 1) * sizeof(*g));
	if (!g) {
		rc = rh_error_set(RH_ENOMEM, "out of memory writing the drill's intent");
		goto done;
	}
	in->info.groups = g;
	g[in->info.n_groups].pgid = pgid;
	g[in->info.n_groups].start = start;
	in->info.n_groups++;
	rc = intent_write(in);
done:
	pthread_mutex_unlock(&in->lock);
	return rc;
}

int rh_intent_note_path(struct rh_intent *in, const char *key, const char *path)
{
	char **slot = NULL;
	char *copy = absolute(path);
	int rc;

	if (path && !copy)
		return rh_error_set(RH_ENOMEM, "out of memory writing the drill's intent");
	if (strcmp(key, "workspace") == 0)
		slot = &in->info.workspace;
	else if (strcmp(key, "terraform_dir") == 0)
		slot = &in->info.terraform_dir;
	if (!slot) {
		free(copy);
		return rh_error_set(RH_EINVAL, "intent: no path member \"%s\"", key);
	}
	pthread_mutex_lock(&in->lock);
	if (*slot && copy && strcmp(*slot, copy) == 0) {
		free(copy);
		rc = 0;
	} else {
		free(*slot);
		*slot = copy;
		rc = intent_write(in);
	}
	pthread_mutex_unlock(&in->lock);
	return rc;
}

const char *rh_intent_marker(const struct rh_intent *in)
{
	return in->info.marker;
}

void rh_intent_free(struct rh_intent *in)
{
	if (!in)
		return;
	rh_intent_info_clear(&in->info);
	pthread_mutex_destroy(&in->lock);
	free(in->dir);
	free(in->name);
	free(in);
}

int rh_intent_finish(struct rh_intent *in)
{
	char *path = NULL;
	int rc = 0;

	if (!in)
		return 0;
	if (asprintf(&path, "%s/%s", in->dir, in->name) < 0) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		path = NULL;
	} else if (unlink(path) != 0 && errno != ENOENT) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot remove the intent %s", path);
	} else {
		int dfd = open(in->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	free(path);
	rh_intent_free(in);
	return rc;
}

/* ---- recovery -------------------------------------------------------- */

struct seen {
	const char *id;
	bool found;
};

static int seen_fn(const struct rh_journal_entry *e, void *user)
{
	struct seen *s = user;
	const char *id = json_string_value(json_object_get(e->record, "drill_id"));

	if (id && strcmp(id, s->id) == 0) {
		s->found = true;
		return 1;
	}
	return 0;
}

static bool path_exists(const char *dir, const char *name)
{
	char p[PATH_MAX];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return lstat(p, &st) == 0;
}

/* terraform destroy in the drill's working directory, when it holds a
 * state. *what gets "destroyed" or "failed: ..." (new) or stays NULL. */
static int destroy_leftovers(const struct rh_intent_info *info, double timeout_s, char **what)
{
	/* the arguments the cloud adapter's teardown uses (providers/cloud.c) */
	static const char *const args[] = {"destroy", "-auto-approve", "-input=false", "-json",
					   NULL};
	struct rh_tf_run run = {0};
	char *bin = NULL, *lp = NULL;
	int rc = 0;

	*what = NULL;
	if (!info->terraform_dir || !path_exists(info->terraform_dir, "terraform.tfstate"))
		return 0;
	if ((rc = rh_tf_find(&bin, info->terraform_bin)) < 0)
		goto done;
	if (asprintf(&lp, "%s/recovery.terraform-destroy", info->terraform_dir) < 0) {
		lp = NULL;
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	run.bin = bin;
	run.dir = info->terraform_dir;
	run.args = args;
	run.log_prefix = lp;
	run.deadline = rh_clock_mono() + timeout_s;
	rc = rh_tf_run(&run);
done:
	if (rc < 0) {
		if (asprintf(what, "failed: %s (finish with: terraform -chdir=%s destroy)",
			     rh_error_last(), info->terraform_dir) < 0)
			*what = NULL;
	} else {
		*what = strdup("destroyed");
	}
	free(bin);
	free(lp);
	return rc;
}

/* The `abandoned` record (new) from the intent's skeleton and `found`. */
static json_t *abandoned_record(const struct rh_intent_info *info, json_t *found, bool clean)
{
	struct timespec now = rh_clock_wall();
	char at[64];
	json_t *rec = info->record ? json_deep_copy(info->record) : json_object();
	int err = 0;

	if (!rec)
		return NULL;
	rh_clock_rfc3339(at, sizeof(at), &now);
	if (!info->record) {
		err |= json_object_set_new(rec, "rehydra", json_integer(1));
		err |= json_object_set_new(rec, "runbook", json_pack("{s:s}", "name", "-"));
		err |= json_object_set_new(rec, "target", json_null());
		err |= json_object_set_new(rec, "t0", str_or_null(info->started_at));
		err |= json_object_set_new(rec, "rto_s", json_null());
	}
	err |= json_object_set_new(rec, "drill_id", json_string(info->drill_id));
	err |= json_object_set_new(rec, "verdict", json_string("abandoned"));
	err |= json_object_set_new(rec, "finished", json_string(at));
	err |= json_object_set_new(rec, "restored_by", json_null());
	err |= json_object_set_new(rec, "teardown", json_string(clean ? "complete" : "incomplete"));
	err |= json_object_set(rec, "abandoned", found);
	if (err) {
		json_decref(rec);
		return NULL;
	}
	return rec;
}

/* The record the drill wrote itself (new), when <drill dir>/record.json is
 * one for this drill with a verdict; else NULL. */
static json_t *own_record(const struct rh_intent_info *info)
{
	char path[PATH_MAX];
	json_t *rec;
	const char *id, *verdict;
	int fd;

	if (!info->drill_dir)
		return NULL;
	snprintf(path, sizeof(path), "%s/record.json", info->drill_dir);
	fd = rh_fs_open_regular(path, O_NOFOLLOW);
	if (fd < 0) {
		rh_error_clear();
		return NULL;
	}
	rec = json_loadfd(fd, JSON_REJECT_DUPLICATES, NULL);
	close(fd);
	id = json_string_value(json_object_get(rec, "drill_id"));
	verdict = json_string_value(json_object_get(rec, "verdict"));
	if (!json_is_object(rec) || !id || strcmp(id, info->drill_id) != 0 || !verdict ||
	    strcmp(verdict, "abandoned") == 0 || strlen(verdict) >= 32) {
		json_decref(rec);
		return NULL;
	}
	return rec;
}

/* Writes <drill dir>/record.json unless the drill wrote one itself. */
static void write_record_file(const struct rh_intent_info *info, const json_t *rec)
{
	char *text;
	int dfd;

	if (!info->drill_dir || path_exists(info->drill_dir, "record.json"))
		return;
	dfd = open(info->drill_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dfd < 0)
		return;
	text = json_dumps(rec, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
	if (text &&
	    rh_fs_write_atomic_at(dfd, info->drill_dir, "record.json", text, strlen(text)) < 0)
		rh_error_clear();
	free(text);
	close(dfd);
}

static int recover_one(const char *state_dir, const struct rh_intent_info *info,
		       double destroy_timeout_s, struct rh_intent_recovery *r, char *problem,
		       size_t psize)
{
	struct rh_journal *j = NULL;
	json_t *found = NULL, *groups = NULL, *rec = NULL;
	char *destroy = NULL;
	bool workspace_existed = false, clean = true;
	struct seen seen = {.id = info->drill_id};
	struct stat st;
	int rc = 0;

	problem[0] = '\0';
	memset(r, 0, sizeof(*r));
	r->drill_id = info->drill_id;
	r->pid = info->pid;
	if (!(found = json_object()) || !(groups = json_array())) {
		rc = rh_error_set(RH_ENOMEM, "out of memory recovering a drill");
		goto done;
	}
	for (size_t i = 0; i < info->n_groups; i++) {
		unsigned k = 0;
		int krc = rh_pgroup_kill_owned(info->groups[i].pgid, info->groups[i].start,
					       info->marker, INTENT_KILL_WAIT_S, &k);

		if (krc < 0) {
			clean = false;
			snprintf(problem, psize, "%s", rh_error_last());
		}
		if (k > 0)
			r->groups_stopped++;
		r->processes_killed += k;
		json_array_append_new(groups, json_pack("{s:i, s:I, s:i}", "pgid",
							(int)info->groups[i].pgid, "start",
							(json_int_t)info->groups[i].start,
							"processes_killed", (int)k));
	}
	if (info->workspace && lstat(info->workspace, &st) == 0) {
		size_t wl = strlen(info->workspace), il = strlen(info->drill_id);

		workspace_existed = true;
		/* a workspace is always <root>/<drill id>: anything else is not
		 * removed, whatever the file says */
		if (wl <= il + 1 || strcmp(info->workspace + wl - il, info->drill_id) != 0 ||
		    info->workspace[wl - il - 1] != '/') {
			clean = false;
			snprintf(problem, psize,
				 "workspace %s is not named after the drill: left in place",
				 info->workspace);
			workspace_existed = false;
		} else if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
			clean = false;
			snprintf(problem, psize,
				 "workspace %s is not a directory of ours: left in place",
				 info->workspace);
			workspace_existed = false;
		} else if (rh_fs_rm_rf(info->workspace) < 0) {
			clean = false;
			snprintf(problem, psize, "%s", rh_error_last());
			workspace_existed = false;
		}
	}
	r->workspace = workspace_existed ? info->workspace : NULL;
	if (destroy_leftovers(info, destroy_timeout_s, &destroy) < 0) {
		clean = false;
		rh_error_clear();
	}
	r->destroy = destroy;
	json_object_set_new(found, "rehydra_pid", json_integer(info->pid));
	json_object_set_new(found, "started_at", str_or_null(info->started_at));
	json_object_set(found, "process_groups", groups);
	json_object_set_new(found, "processes_killed", json_integer(r->processes_killed));
	json_object_set_new(found, "workspace", str_or_null(info->workspace));
	json_object_set_new(found, "workspace_removed", json_boolean(workspace_existed));
	json_object_set_new(found, "terraform_destroy", str_or_null(destroy));
	json_object_set_new(found, "problem", problem[0] ? json_string(problem) : json_null());

	rc = rh_journal_open(&j, state_dir);
	if (rc < 0)
		goto done;
	rc = rh_journal_foreach_fields(j, (const char *const[]){"drill_id", NULL}, seen_fn, &seen);
	if (rc < 0) {
		/* a damaged journal: say so, clean up anyway, keep the intent's evidence */
		goto done;
	}
	rc = 0;
	/* Killed after its record was written but before the journal took it:
	 * the drill ran to its verdict and tore down, and its own record is the
	 * evidence, so that record is what goes into the journal. */
	rec = own_record(info);
	if (rec)
		snprintf(r->own_verdict, sizeof(r->own_verdict), "%s",
			 json_string_value(json_object_get(rec, "verdict")));
	else
		rec = abandoned_record(info, found, clean);
	if (!rec) {
		rc = rh_error_set(RH_ENOMEM, "out of memory recovering a drill");
		goto done;
	}
	write_record_file(info, rec);
	if (!seen.found) {
		rc = rh_journal_append(j, rec, &r->seq);
		if (rc < 0)
			goto done;
		r->journaled = true;
	}
done:
	if (rc < 0 && !problem[0])
		snprintf(problem, psize, "%s", rh_error_last());
	r->problem = problem[0] ? problem : NULL;
	rh_journal_close(j);
	json_decref(rec);
	json_decref(groups);
	json_decref(found);
	/* r->destroy points here until the callback returned: freed by the caller */
	if (rc < 0) {
		free(destroy);
		r->destroy = NULL;
	}
	return rc;
}

static int read_intent(struct rh_intent_info *info, int dfd, const char *name)
{
	char *buf = NULL;
	struct stat st;
	size_t got = 0;
	int fd, rc = 0;

	fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return rh_error_set_errno(RH_EIO, errno, "cannot open intent %s", name);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > INTENT_MAX_BYTES) {
		rc = rh_error_set(RH_EINVAL, "intent %s is not a regular file of at most 4 MiB",
				  name);
		goto done;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	rc = rh_intent_parse(info, buf, got);
	if (rc < 0)
		rh_error_prefix(rc, "%s", name);
done:
	free(buf);
	close(fd);
	return rc;
}

int rh_intent_recover(const char *state_dir, double destroy_timeout_s,
		      void (*fn)(void *user, const struct rh_intent_recovery *r), void *user,
		      unsigned *n)
{
	char dir[PATH_MAX], lockp[PATH_MAX + 16];
	struct dirent *de;
	DIR *d = NULL;
	int dfd = -1, lfd = -1, rc = 0;
	unsigned count = 0;

	if (n)
		*n = 0;
	if (snprintf(dir, sizeof(dir), "%s/intents", state_dir) >= (int)sizeof(dir))
		return rh_error_set(RH_EINVAL, "state directory path too long");
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0
				       : rh_error_set_errno(RH_EIO, errno, "cannot read %s", dir);
	dfd = dirfd(d);
	snprintf(lockp, sizeof(lockp), "%s/.lock", dir);
	lfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lfd < 0 || flock(lfd, LOCK_EX) != 0) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot lock %s", lockp);
		goto done;
	}
	while ((de = readdir(d)) != NULL) {
		struct rh_intent_info info;
		struct rh_intent_recovery r;
		char problem[1024];
		size_t len = strlen(de->d_name);
		int one;

		if (len < 6 || de->d_name[0] == '.' || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		if (read_intent(&info, dfd, de->d_name) < 0) {
			/* not ours to judge: leave it, say so once */
			if (rc == 0)
				rc = RH_EINVAL;
			continue;
		}
		/* another recovery may have handled it while we waited for the lock */
		if (!rh_intent_is_stale(&info) || faccessat(dfd, de->d_name, F_OK, 0) != 0) {
			rh_intent_info_clear(&info);
			continue;
		}
		one =
		    recover_one(state_dir, &info, destroy_timeout_s, &r, problem, sizeof(problem));
		if (fn)
			fn(user, &r);
		free((char *)r.destroy);
		if (one == 0) {
			/* the journal holds it now: the intent has done its job */
			if (unlinkat(dfd, de->d_name, 0) == 0)
				fsync(dfd);
			count++;
		} else if (rc == 0) {
			rc = one;
		}
		rh_intent_info_clear(&info);
	}
done:
	if (lfd >= 0)
		close(lfd);
	closedir(d);
	if (n)
		*n = count;
	return rc;
}
