/*
 * cmd_audit.c - `rehydra audit`: the audit journal for people and CI.
 *
 * Subcommands: verify (the hash chain), list and show (what was rehearsed,
 * when, with what result), report (aggregates, via report.h), repair (set
 * aside a torn last entry), push (mirror to a git remote, via mirror.h).
 * Everything reads the journal streaming, so a journal of years of drills
 * costs seconds, not memory. Exit status: 0 success, 1 the journal does not
 * verify or the operation failed, 2 bad usage or no journal.
 */
#include "cadence.h"
#include "checkpoint.h"
#include "cli.h"
#include "error.h"
#include "fsutil.h"
#include "journal.h"
#include "load.h"
#include "metrics.h"
#include "mirror.h"
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "banned.h"

#define EXIT_BAD 1 /* the journal does not verify, or the operation failed */

/* What list, the filters (report.h), the report (report.c reads these and
 * nothing else) and the metrics (metrics.c) read of a record: reading only
 * these makes a big journal several times faster (journal.h). A field
 * missing here reads as absent, so keep it in step with report.c. */
static const char *const record_fields[] = {
    "drill_id",
    "runbook",
    "scenario",
    "target",
    "t0",
    "finished",
    "verdict",
    "rto_s",
    "rto_target_s",
    "overhead_s",
    "steps[].id",
    "steps[].status",
    "steps[].end_s",
    "steps[].duration_s",
    "steps[].error",
    "teardown",
    "preflight",
    NULL,
};

struct audit_opts {
	const struct rh_cmd_ctx *ctx;
	const char *sub;
	const char *arg;  /* show ID, push REMOTE, diff ID1 */
	const char *arg2; /* diff ID2 */
	const char *state_arg;
	const char *journal_file;
	const char *format;
	const char *out;
	const char *prom_file;
	const char *branch;
	const char *allowed_signers; /* verify: check the signed checkpoints */
	const char *against;	     /* verify: compare with this mirror remote */
	const char *signing_key;     /* checkpoint */
	bool json;
	struct rh_report_filter filter;
	const char *since_text, *until_text;
	const char *scenarios; /* report --scenarios DIR, cadence [DIR] */
	const char *at_text;   /* cadence --at TIME */
	time_t at;
};

/* Checks what the table cannot: exclusive options and values with a
 * grammar. Prints the problem and returns 2, else 0. */
static int check_opts(const struct rh_cmd_ctx *ctx, struct audit_opts *o)
{
	const struct rh_report_filter *f = &o->filter;

	if (o->journal_file && o->state_arg)
		return rh_cli_usage_error(ctx, "--journal and --state-dir exclude each other");
	if (o->journal_file && strcmp(o->sub, "push") == 0)
		return rh_cli_usage_error(ctx, "push mirrors the state directory's journal; use "
					       "--state-dir");
	if (f->verdict && strcmp(f->verdict, "met") != 0 && strcmp(f->verdict, "missed") != 0 &&
	    strcmp(f->verdict, "failed") != 0 && strcmp(f->verdict, "interrupted") != 0 &&
	    strcmp(f->verdict, "aborted") != 0 && strcmp(f->verdict, "abandoned") != 0)
		return rh_cli_usage_error(ctx,
					  "--verdict must be met, missed, failed, interrupted, "
					  "aborted or abandoned, not '%s'",
					  f->verdict);
	if (o->at_text && rh_report_time_parse(o->at_text, &o->at) < 0)
		return rh_cli_usage_error(ctx, "--at: %s", rh_error_last());
	if (o->since_text && rh_report_time_parse(o->since_text, &o->filter.since) < 0)
		return rh_cli_usage_error(ctx, "--since: %s", rh_error_last());
	if (o->until_text && rh_report_time_parse(o->until_text, &o->filter.until) < 0)
		return rh_cli_usage_error(ctx, "--until: %s", rh_error_last());
	return 0;
}

/* Opens the journal to read: --journal FILE or STATE_DIR's; nothing is
 * created. Prints the problem and returns an exit code on failure. */
static int open_journal(struct rh_journal **j, const struct audit_opts *o, char **state_out)
{
	char *state = NULL, *path = NULL;
	size_t n;
	int rc = 0;

	*j = NULL;
	if (o->journal_file) {
		if (rh_journal_open_file(j, o->journal_file) < 0) {
			fprintf(stderr, "rehydra audit %s: %s\n", o->sub, rh_error_last());
			return RH_EXIT_USAGE;
		}
		return 0;
	}
	state = rh_cli_state_open(o->state_arg);
	if (!state)
		return rh_cli_usage_error(o->ctx, "no state directory: set HOME or "
						  "XDG_STATE_HOME, or pass --state-dir");
	n = strlen(state) + 32;
	path = malloc(n);
	if (!path) {
		rc = EXIT_BAD;
		goto done;
	}
	snprintf(path, n, "%s/journal/journal.jsonl", state);
	if (rh_journal_open_file(j, path) < 0) {
		if (access(path, F_OK) != 0)
			fprintf(stderr,
				"rehydra audit %s: no journal at %s: no drill has been "
				"recorded with this state directory (see --state-dir)\n",
				o->sub, path);
		else
			fprintf(stderr, "rehydra audit %s: %s\n", o->sub, rh_error_last());
		rc = RH_EXIT_USAGE;
		goto done;
	}
	if (state_out) {
		*state_out = state;
		state = NULL;
	}
done:
	free(state);
	free(path);
	return rc;
}

/* ---- verify -------------------------------------------------------------- */

static const char *problem_kind_name(enum rh_journal_problem_kind k)
{
	switch (k) {
	case RH_JOURNAL_OK:
		return "ok";
	case RH_JOURNAL_TORN_TAIL:
		return "torn_tail";
	case RH_JOURNAL_BAD_LINE:
		return "bad_line";
	case RH_JOURNAL_BAD_HASH:
		return "bad_hash";
	case RH_JOURNAL_BROKEN_LINK:
		return "broken_link";
	case RH_JOURNAL_BAD_SEQ:
		return "bad_seq";
	case RH_JOURNAL_NO_GENESIS:
		return "no_genesis";
	}
	return "?";
}

/* <journal dir>/mirror.git, where push keeps its local copy. */
static void mirror_dir_of(char *buf, size_t size, const char *path)
{
	const char *slash = strrchr(path, '/');

	snprintf(buf, size, "%.*s/mirror.git", slash ? (int)(slash - path) : 1, slash ? path : ".");
}

/* verify --allowed-signers and --against, after the chain verified: what an
 * editor who recomputed the whole chain cannot fake. Prints; 0 or EXIT_BAD. */
static int verify_beyond_chain(struct rh_journal *j, const struct audit_opts *o, json_t *out)
{
	int bad = 0;

	if (o->allowed_signers) {
		struct rh_checkpoint_report rep;
		int rc = rh_checkpoint_verify(j, o->allowed_signers, &rep);

		if (rc < 0 && rc != RH_EVERIFY) {
			fprintf(stderr, "rehydra audit verify: %s\n", rh_error_last());
			return EXIT_BAD;
		}
		if (out)
			json_object_set_new(out, "checkpoints",
					    json_pack("{s:b, s:I, s:I, s:s, s:s}", "ok", rc == 0,
						      "checked", (json_int_t)rep.checked,
						      "latest_seq", (json_int_t)rep.latest_seq,
						      "signer", rep.principal, "problem",
						      rep.problem));
		else if (rc == 0)
			printf("%zu signed checkpoints verify (ssh-keygen -Y verify against %s); "
			       "the newest, entry %" PRIu64 ", signed by %s\n",
			       rep.checked, o->allowed_signers, rep.latest_seq, rep.principal);
		else
			fprintf(stderr, "%s: %s\n", rh_journal_path(j), rep.problem);
		bad |= rc != 0;
	}
	if (o->against) {
		struct rh_mirror_check mc;
		char mirror[PATH_MAX];
		int rc;

		mirror_dir_of(mirror, sizeof(mirror), rh_journal_path(j));
		rc = rh_mirror_check(&mc, rh_journal_path(j), mirror, o->against, o->branch);
		if (rc < 0 && rc != RH_EVERIFY) {
			fprintf(stderr, "rehydra audit verify: %s\n", rh_error_last());
			return EXIT_BAD;
		}
		if (out)
			json_object_set_new(
			    out, "mirror",
			    json_pack("{s:b, s:s, s:I, s:I, s:s}", "ok", rc == 0, "remote",
				      o->against, "mirrored", (json_int_t)mc.mirrored, "diff_line",
				      (json_int_t)mc.diff_line, "commit", mc.commit));
		else if (rc == 0)
			printf("the %" PRIu64 " entries mirrored at %s (commit %.12s) are this "
			       "journal's first %" PRIu64 " lines, unchanged\n",
			       mc.mirrored, o->against, mc.commit, mc.mirrored);
		else
			fprintf(stderr, "%s: %s\n", rh_journal_path(j), rh_error_last());
		bad |= rc != 0;
	}
	return bad ? EXIT_BAD : 0;
}

static int run_verify(struct rh_journal *j, const struct audit_opts *o)
{
	struct rh_journal_problem pb;
	uint64_t n = 0;
	int rc = rh_journal_verify(j, &pb, &n);
	int beyond = 0;

	if (rc < 0 && rc != RH_EVERIFY) {
		fprintf(stderr, "rehydra audit verify: %s\n", rh_error_last());
		return EXIT_BAD;
	}
	if (o->json) {
		json_t *out =
		    json_pack("{s:s, s:b, s:I, s:s}", "journal", rh_journal_path(j), "intact",
			      rc == 0, "entries", (json_int_t)n, "last_hash", pb.last_hash);

		if (out && rc != 0)
			json_object_set_new(out, "problem",
					    json_pack("{s:s, s:I, s:I, s:s}", "kind",
						      problem_kind_name(pb.kind), "line",
						      (json_int_t)pb.line, "seq",
						      (json_int_t)pb.seq, "message", pb.message));
		if (out && rc == 0)
			beyond = verify_beyond_chain(j, o, out);
		json_dumpf(out, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(out);
	} else if (rc == 0) {
		printf("%s: %" PRIu64 " entries, chain intact, last hash %s\n", rh_journal_path(j),
		       n, pb.last_hash);
		beyond = verify_beyond_chain(j, o, NULL);
	} else {
		fprintf(stderr, "%s: %s\n", rh_journal_path(j), pb.message);
		if (n)
			fprintf(stderr,
				"  the %" PRIu64 " entries before line %zu are intact "
				"(last hash %s)\n",
				n, pb.line, pb.last_hash);
	}
	return rc == 0 && beyond == 0 ? 0 : EXIT_BAD;
}

/* ---- checkpoint ------------------------------------------------------------ */

static int run_checkpoint(struct rh_journal *j, const struct audit_opts *o)
{
	char path[PATH_MAX];
	uint64_t seq = 0;

	if (!o->signing_key)
		return rh_cli_usage_error(o->ctx, "checkpoint needs --signing-key KEY (a private "
						  "key, or a public key held by the ssh agent)");
	if (rh_checkpoint_create(j, o->signing_key, path, sizeof(path), &seq) < 0) {
		fprintf(stderr, "rehydra audit checkpoint: %s\n", rh_error_last());
		return EXIT_BAD;
	}
	if (o->json) {
		json_t *out = json_pack("{s:s, s:I, s:s, s:s}", "journal", rh_journal_path(j),
					"seq", (json_int_t)seq, "checkpoint", path, "namespace",
					RH_CHECKPOINT_NAMESPACE);
		int rc = rh_cli_print_json(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		json_decref(out);
		return rc ? EXIT_BAD : 0;
	}
	printf("signed checkpoint of entry %" PRIu64 ": %s (signature %s.sig, namespace %s)\n", seq,
	       path, path, RH_CHECKPOINT_NAMESPACE);
	return 0;
}

/* ---- list ------------------------------------------------------------------ */

struct list_state {
	const struct audit_opts *o;
	uint64_t shown;
};

static void fmt_seconds(char *buf, size_t size, const json_t *v)
{
	if (json_is_number(v))
		snprintf(buf, size, "%.3f s", json_number_value(v));
	else
		snprintf(buf, size, "-");
}

static int list_one(const struct rh_journal_entry *e, void *user)
{
	struct list_state *st = user;
	const json_t *r = e->record;
	const char *runbook, *t0, *verdict, *scenario;
	char target[256], rto[32], rto_target[32];

	if (!r || !rh_report_filter_match(&st->o->filter, r))
		return 0;
	runbook = json_string_value(json_object_get(json_object_get(r, "runbook"), "name"));
	t0 = json_string_value(json_object_get(r, "t0"));
	verdict = json_string_value(json_object_get(r, "verdict"));
	scenario = rh_metrics_scenario_label(r);
	rh_metrics_target_label(target, sizeof(target), r);
	st->shown++;
	if (st->o->json) {
		json_t *row = json_pack(
		    "{s:I, s:s, s:s?, s:s?, s:s?, s:s, s:s, s:s?, s:O, s:O}", "seq",
		    (json_int_t)e->seq, "hash", e->hash, "drill_id",
		    json_string_value(json_object_get(r, "drill_id")), "t0", t0, "runbook", runbook,
		    "target", target, "scenario", scenario, "verdict", verdict, "rto_s",
		    json_object_get(r, "rto_s") ? json_object_get(r, "rto_s") : json_null(),
		    "rto_target_s",
		    json_object_get(r, "rto_target_s") ? json_object_get(r, "rto_target_s")
						       : json_null());

		if (!row)
			return rh_error_set(RH_ENOMEM, "out of memory listing the journal");
		json_dumpf(row, stdout, JSON_COMPACT | JSON_REAL_PRECISION(15));
		fputc('\n', stdout);
		json_decref(row);
		return 0;
	}
	if (st->shown == 1)
		printf("%-6s %-24s %-20s %-16s %-16s %-11s %10s %10s\n", "SEQ", "T0", "RUNBOOK",
		       "TARGET", "SCENARIO", "VERDICT", "RTO", "RTO TARGET");
	fmt_seconds(rto, sizeof(rto), json_object_get(r, "rto_s"));
	fmt_seconds(rto_target, sizeof(rto_target), json_object_get(r, "rto_target_s"));
	printf("%-6" PRIu64 " %-24s %-20s %-16s %-16s %-11s %10s %10s\n", e->seq, t0 ? t0 : "-",
	       runbook ? runbook : "-", target, scenario, verdict ? verdict : "-", rto, rto_target);
	return 0;
}

static int run_list(struct rh_journal *j, const struct audit_opts *o)
{
	struct list_state st = {o, 0};
	int rc = rh_journal_foreach_fields(j, record_fields, list_one, &st);

	fflush(stdout);
	if (rc < 0) {
		fprintf(stderr, "rehydra audit list: %s\n", rh_error_last());
		return EXIT_BAD;
	}
	if (!st.shown && !o->json)
		fprintf(stderr, "no drill in %s matches\n", rh_journal_path(j));
	return 0;
}

/* ---- show ------------------------------------------------------------------ */

#define SHOW_MAX_CANDIDATES 5

struct show_state {
	const char *id;
	bool by_seq;
	uint64_t seq;
	size_t id_len;
	json_t *found; /* the entry chosen so far (exact match wins) */
	bool exact;
	size_t matches;
	char candidates[SHOW_MAX_CANDIDATES][100];
};

static json_t *entry_json(const struct rh_journal_entry *e)
{
	json_t *o = json_pack("{s:I, s:I, s:s, s:s, s:s, s:s}", "seq", (json_int_t)e->seq, "line",
			      (json_int_t)e->line, "kind", e->kind, "at", e->at, "prev", e->prev,
			      "hash", e->hash);

	if (o && e->record)
		json_object_set_new(o, "record", json_deep_copy(e->record));
	return o;
}

static int show_one(const struct rh_journal_entry *e, void *user)
{
	struct show_state *st = user;
	const char *id;
	bool exact;

	if (st->by_seq) {
		if (e->seq != st->seq)
			return 0;
		st->found = entry_json(e);
		st->matches = 1;
		return st->found ? 1 : rh_error_set(RH_ENOMEM, "out of memory");
	}
	id = json_string_value(json_object_get(e->record, "drill_id"));
	if (!id || strncmp(id, st->id, st->id_len) != 0)
		return 0;
	exact = id[st->id_len] == '\0';
	if (st->matches < SHOW_MAX_CANDIDATES)
		snprintf(st->candidates[st->matches], sizeof(st->candidates[0]),
			 "%s (seq %" PRIu64 ")", id, e->seq);
	st->matches++;
	if (!st->found || (exact && !st->exact)) {
		json_decref(st->found);
		st->found = entry_json(e);
		st->exact = exact;
		if (!st->found)
			return rh_error_set(RH_ENOMEM, "out of memory");
	}
	return 0;
}

static const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "-";
}

/* One "key  value" line per scalar of `o`, nested objects as a.b. */
static void print_flat(const char *prefix, const json_t *o)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)o, key, v)
	{
		char name[256];
		char *text;

		snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "", key);
		if (json_is_object(v) && json_object_size(v)) {
			print_flat(name, v);
			continue;
		}
		text = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		printf("  %-28s %s\n", name, text ? text : json_string_value(v));
		free(text);
	}
}

/* What the drill ran from, how it was checked and how it ended. */
static void print_provenance(const json_t *r)
{
	const json_t *prov = json_object_get(r, "provenance");
	const json_t *checks = json_object_get(r, "preflight");
	const json_t *target = json_object_get(r, "target");
	char pf[32];
	size_t i;
	json_t *c;

	fmt_seconds(pf, sizeof(pf), json_object_get(r, "preflight_s"));
	printf("teardown  %s\n", jstr(r, "teardown"));
	printf("preflight %s (before T0, not in the RTO)\n", pf);
	json_array_foreach(checks, i, c)
	{
		printf("  %-4s %-15s %s\n", json_is_true(json_object_get(c, "ok")) ? "ok" : "FAIL",
		       jstr(c, "check"), jstr(c, "message"));
		if (json_is_string(json_object_get(c, "next")))
			printf("       %-15s next: %s\n", "", jstr(c, "next"));
	}
	if (json_is_object(target)) {
		printf("target (as run)\n");
		print_flat("", target);
	}
	if (json_is_object(prov)) {
		printf("provenance\n");
		print_flat("", prov);
	}
	/* a rehearsal's policy decision: what was chosen, what was denied
	 * and by which rules, against which dated catalog and policy files */
	if (json_is_object(json_object_get(r, "rehearsal"))) {
		printf("rehearsal (policy decision)\n");
		print_flat("", json_object_get(r, "rehearsal"));
	}
}

static void print_entry(const json_t *e)
{
	const json_t *r = json_object_get(e, "record");
	const json_t *steps = json_object_get(r, "steps");
	const json_t *path = json_object_get(r, "critical_path");
	char target[256], rto[32], rto_target[32];
	size_t i;
	json_t *v;

	printf("entry     seq %" JSON_INTEGER_FORMAT ", line %" JSON_INTEGER_FORMAT
	       ", appended %s\n",
	       json_integer_value(json_object_get(e, "seq")),
	       json_integer_value(json_object_get(e, "line")), jstr(e, "at"));
	printf("hash      %s\nprev      %s\n", jstr(e, "hash"), jstr(e, "prev"));
	if (!r) {
		printf("kind      %s\n", jstr(e, "kind"));
		return;
	}
	rh_metrics_target_label(target, sizeof(target), r);
	fmt_seconds(rto, sizeof(rto), json_object_get(r, "rto_s"));
	fmt_seconds(rto_target, sizeof(rto_target), json_object_get(r, "rto_target_s"));
	printf("drill     %s\n", jstr(r, "drill_id"));
	printf("runbook   %s (%s, sha256 %s)\n", jstr(json_object_get(r, "runbook"), "name"),
	       jstr(json_object_get(r, "runbook"), "path"),
	       jstr(json_object_get(r, "runbook"), "sha256"));
	printf("target    %s\nscenario  %s\n", target, rh_metrics_scenario_label(r));
	if (json_is_object(json_object_get(r, "model")))
		printf("model     %s %s (commit %s)\n", jstr(json_object_get(r, "model"), "name"),
		       jstr(json_object_get(r, "model"), "version"),
		       jstr(json_object_get(r, "model"), "commit"));
	printf("t0        %s\nfinished  %s\n", jstr(r, "t0"), jstr(r, "finished"));
	printf("verdict   %s  rto %s  target %s\n", jstr(r, "verdict"), rto, rto_target);
	if (json_array_size(path)) {
		printf("critical  ");
		json_array_foreach(path, i, v) printf(
		    "%s%s", i ? " -> " : "", json_string_value(v) ? json_string_value(v) : "?");
		printf("\n");
	}
	if (json_array_size(steps)) {
		printf("steps\n  %-18s %-15s %-10s %8s %10s  %s\n", "ID", "DO", "STATUS",
		       "ATTEMPTS", "DURATION", "ERROR");
		json_array_foreach(steps, i, v)
		{
			char dur[32];

			fmt_seconds(dur, sizeof(dur), json_object_get(v, "duration_s"));
			printf("  %-18s %-15s %-10s %8" JSON_INTEGER_FORMAT " %10s  %s\n",
			       jstr(v, "id"), jstr(v, "do"), jstr(v, "status"),
			       json_integer_value(json_object_get(v, "attempts")), dur,
			       json_is_string(json_object_get(v, "error")) ? jstr(v, "error") : "");
		}
	}
	if (json_is_object(json_object_get(r, "load"))) {
		const json_t *load = json_object_get(r, "load");
		char head[256];

		rh_load_headline(head, sizeof(head), load);
		printf("load      %s (%s): %s\n", jstr(load, "step"), jstr(load, "status"), head);
	}
	printf("host      %s, rehydra %s\n", jstr(json_object_get(r, "host"), "name"),
	       jstr(r, "rehydra_version"));
	print_provenance(r);
}

/* Finds the one entry `arg` names (a seq, a drill id or a unique prefix);
 * *found is new. Prints the problem as `sub` and returns its exit code. */
static int find_entry(json_t **found, struct rh_journal *j, const char *arg, const char *sub)
{
	struct show_state st = {0};
	const char *p;
	int rc, code = 0;

	*found = NULL;
	st.id = arg;
	st.id_len = strlen(arg);
	st.by_seq = st.id_len > 0 && st.id_len <= 19;
	for (p = arg; *p && st.by_seq; p++)
		st.by_seq = *p >= '0' && *p <= '9';
	if (st.by_seq)
		st.seq = strtoull(arg, NULL, 10);
	rc = rh_journal_foreach(j, show_one, &st);
	if (rc >= 0 && !st.found && st.by_seq) {
		/* "20261121" is no seq here: try it as the start of a drill id */
		st.by_seq = false;
		rc = rh_journal_foreach(j, show_one, &st);
	}
	if (rc < 0 && !(st.found && st.by_seq)) {
		fprintf(stderr, "rehydra audit %s: %s\n", sub, rh_error_last());
		code = EXIT_BAD;
		goto done;
	}
	if (!st.found) {
		fprintf(stderr,
			"rehydra audit %s: no entry with seq or drill id '%s' in %s (see "
			"'rehydra audit list')\n",
			sub, arg, rh_journal_path(j));
		code = RH_EXIT_USAGE;
		goto done;
	}
	if (!st.exact && st.matches > 1) {
		fprintf(stderr, "rehydra audit %s: '%s' names %zu drills; give more of the id:\n",
			sub, arg, st.matches);
		for (size_t k = 0; k < st.matches && k < SHOW_MAX_CANDIDATES; k++)
			fprintf(stderr, "  %s\n", st.candidates[k]);
		if (st.matches > SHOW_MAX_CANDIDATES)
			fprintf(stderr, "  ...\n");
		code = RH_EXIT_USAGE;
		goto done;
	}
	*found = st.found;
	st.found = NULL;
done:
	json_decref(st.found);
	return code;
}

static int run_show(struct rh_journal *j, const struct audit_opts *o)
{
	json_t *found = NULL;
	int code = find_entry(&found, j, o->arg, "show");

	if (code)
		return code;
	if (o->json) {
		json_dumpf(found, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
		fputc('\n', stdout);
	} else {
		print_entry(found);
	}
	json_decref(found);
	return 0;
}

/* ---- diff ------------------------------------------------------------------ */

/* Adds "path": [a, b] to `out` for every leaf that differs between a and b
 * (objects walked key by key; anything else compared whole). */
static int diff_json(json_t *out, const char *path, const json_t *a, const json_t *b)
{
	const char *key;
	json_t *v;
	char sub[512];

	if (json_is_object(a) && json_is_object(b)) {
		json_object_foreach((json_t *)a, key, v)
		{
			snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", key);
			if (diff_json(out, sub, v, json_object_get(b, key)) < 0)
				return -1;
		}
		json_object_foreach((json_t *)b, key, v)
		{
			if (json_object_get(a, key))
				continue;
			snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", key);
			if (diff_json(out, sub, NULL, v) < 0)
				return -1;
		}
		return 0;
	}
	if (json_equal((json_t *)a, (json_t *)b) || (!a && !b))
		return 0;
	return json_object_set_new(out, path,
				   json_pack("[OO]", a ? a : json_null(), b ? b : json_null()));
}

static const json_t *step_named(const json_t *steps, const char *id)
{
	size_t i;
	json_t *s;

	json_array_foreach(
	    steps, i, s) if (json_is_string(json_object_get(s, "id")) &&
			     strcmp(json_string_value(json_object_get(s, "id")), id) == 0) return s;
	return NULL;
}

static void diff_cell(char *buf, size_t size, const json_t *s)
{
	char dur[32];

	if (!s) {
		snprintf(buf, size, "(no such step)");
		return;
	}
	fmt_seconds(dur, sizeof(dur), json_object_get(s, "duration_s"));
	snprintf(buf, size, "%s %s", jstr(s, "status"), dur);
}

/* Two drills side by side, step by step, then the inputs that differ. */
static int run_diff(struct rh_journal *j, const struct audit_opts *o)
{
	static const char *const inputs[] = {"runbook",	 "target",	 "model", "provenance",
					     "scenario", "rto_target_s", NULL};
	json_t *ea = NULL, *eb = NULL, *steps = NULL, *changed = NULL;
	const json_t *ra, *rb, *sa, *sb;
	const char *key;
	json_t *v;
	size_t i;
	int code;

	code = find_entry(&ea, j, o->arg, "diff");
	if (!code)
		code = find_entry(&eb, j, o->arg2, "diff");
	if (code)
		goto done;
	code = EXIT_BAD;
	ra = json_object_get(ea, "record");
	rb = json_object_get(eb, "record");
	if (!ra || !rb) {
		fprintf(stderr, "rehydra audit diff: %s is not a drill\n", ra ? o->arg2 : o->arg);
		code = RH_EXIT_USAGE;
		goto done;
	}
	sa = json_object_get(ra, "steps");
	sb = json_object_get(rb, "steps");
	steps = json_array();
	changed = json_object();
	if (!steps || !changed)
		goto oom;
	/* the steps of the first, then those only the second has */
	json_array_foreach(sa, i, v)
	{
		const char *id = jstr(v, "id");

		if (json_array_append_new(steps, json_pack("{s:s, s:O?, s:O?}", "id", id, "a", v,
							   "b", step_named(sb, id))) < 0)
			goto oom;
	}
	json_array_foreach(
	    sb, i,
	    v) if (!step_named(sa, jstr(v, "id")) &&
		   json_array_append_new(steps, json_pack("{s:s, s:n, s:O}", "id", jstr(v, "id"),
							  "a", "b", v)) < 0) goto oom;
	for (size_t k = 0; inputs[k]; k++)
		if (diff_json(changed, inputs[k], json_object_get(ra, inputs[k]),
			      json_object_get(rb, inputs[k])) < 0)
			goto oom;
	if (o->json) {
		json_t *out = json_pack(
		    "{s:s, s:s, s:o, s:o, s:o, s:O, s:O, s:o}", "a", jstr(ra, "drill_id"), "b",
		    jstr(rb, "drill_id"), "verdict",
		    json_pack("[ss]", jstr(ra, "verdict"), jstr(rb, "verdict")), "rto_s",
		    json_pack(
			"[OO]",
			json_object_get(ra, "rto_s") ? json_object_get(ra, "rto_s") : json_null(),
			json_object_get(rb, "rto_s") ? json_object_get(rb, "rto_s") : json_null()),
		    "seq",
		    json_pack("[OO]", json_object_get(ea, "seq"), json_object_get(eb, "seq")),
		    "steps", steps, "inputs_differ", changed, "teardown",
		    json_pack("[ss]", jstr(ra, "teardown"), jstr(rb, "teardown")));

		code = out ? (rh_cli_print_json(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
							 JSON_REAL_PRECISION(15))
				  ? EXIT_BAD
				  : 0)
			   : EXIT_BAD;
		json_decref(out);
		goto done;
	}
	{
		char rto_a[32], rto_b[32], ca[96], cb[96];

		fmt_seconds(rto_a, sizeof(rto_a), json_object_get(ra, "rto_s"));
		fmt_seconds(rto_b, sizeof(rto_b), json_object_get(rb, "rto_s"));
		printf("%-18s %-34s %-34s\n", "", jstr(ra, "drill_id"), jstr(rb, "drill_id"));
		printf("%-18s %-34" JSON_INTEGER_FORMAT " %-34" JSON_INTEGER_FORMAT "\n", "seq",
		       json_integer_value(json_object_get(ea, "seq")),
		       json_integer_value(json_object_get(eb, "seq")));
		printf("%-18s %-34s %-34s\n", "verdict", jstr(ra, "verdict"), jstr(rb, "verdict"));
		printf("%-18s %-34s %-34s\n", "rto", rto_a, rto_b);
		printf("%-18s %-34s %-34s\n", "teardown", jstr(ra, "teardown"),
		       jstr(rb, "teardown"));
		printf("steps\n");
		json_array_foreach(steps, i, v)
		{
			diff_cell(ca, sizeof(ca), json_object_get(v, "a"));
			diff_cell(cb, sizeof(cb), json_object_get(v, "b"));
			/* '*': the status differs (durations always do) */
			printf("  %-16s %-34s %-34s%s\n", jstr(v, "id"), ca, cb,
			       strcmp(jstr(json_object_get(v, "a"), "status"),
				      jstr(json_object_get(v, "b"), "status")) != 0
				   ? "  *"
				   : "");
		}
		printf("inputs that differ%s\n", json_object_size(changed) ? "" : ": none");
		json_object_foreach(changed, key, v)
		{
			char *x = json_dumps(json_array_get(v, 0), JSON_COMPACT | JSON_ENCODE_ANY);
			char *y = json_dumps(json_array_get(v, 1), JSON_COMPACT | JSON_ENCODE_ANY);

			printf("  %s\n    %s\n    %s\n", key, x ? x : "?", y ? y : "?");
			free(x);
			free(y);
		}
	}
	code = 0;
	goto done;
oom:
	fprintf(stderr, "rehydra audit diff: out of memory\n");
done:
	json_decref(steps);
	json_decref(changed);
	json_decref(ea);
	json_decref(eb);
	return code;
}

/* ---- report ---------------------------------------------------------------- */

struct report_state {
	struct rh_report *report;
	struct rh_metrics *metrics; /* NULL without --prom-file */
	const struct rh_report_filter *filter;
};

static int report_one(const struct rh_journal_entry *e, void *user)
{
	struct report_state *st = user;
	int rc;

	if (!e->record)
		return 0;
	rc = rh_report_add(st->report, e->record, e->seq);
	if (rc == 0 && st->metrics && rh_report_filter_match(st->filter, e->record))
		rc = rh_metrics_add(st->metrics, e->record);
	return rc;
}

/* Writes the report to --out atomically, or to stdout. */
static int write_report(struct rh_report *r, enum rh_report_format fmt, const char *out)
{
	char *text = NULL, *dir = NULL;
	size_t len = 0;
	const char *slash, *name;
	FILE *mem;
	int dfd = -1;
	int rc;

	if (!out) {
		rc = rh_report_write(r, fmt, stdout);
		if (fflush(stdout) != 0 && rc == 0)
			rc = rh_error_set_errno(RH_EIO, errno, "cannot write the report");
		return rc;
	}
	/* whole, then renamed into place: a CI job never reads half a report */
	mem = open_memstream(&text, &len);
	if (!mem)
		return rh_error_set_errno(RH_ENOMEM, errno, "cannot buffer the report");
	rc = rh_report_write(r, fmt, mem);
	if (fclose(mem) != 0 && rc == 0)
		rc = rh_error_set(RH_ENOMEM, "cannot buffer the report");
	if (rc < 0)
		goto done;
	slash = strrchr(out, '/');
	name = slash ? slash + 1 : out;
	dir = slash ? strndup(out, slash == out ? 1 : (size_t)(slash - out)) : strdup(".");
	if (!dir || !*name) {
		rc = rh_error_set(RH_EINVAL, "--out %s: not a file name", out);
		goto done;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot open the directory %s", dir);
		goto done;
	}
	rc = rh_fs_write_atomic_at(dfd, dir, name, text, len);
done:
	if (dfd >= 0)
		close(dfd);
	free(dir);
	free(text);
	return rc;
}

static int run_report(struct rh_journal *j, const struct audit_opts *o)
{
	struct report_state st = {NULL, NULL, &o->filter};
	enum rh_report_format fmt = RH_REPORT_MD;
	int code = EXIT_BAD;

	if (o->json && o->format && strcmp(o->format, "json") != 0)
		return rh_cli_usage_error(o->ctx,
					  "--json is --format json; it cannot go with "
					  "--format %s",
					  o->format);
	if (o->json)
		fmt = RH_REPORT_JSON;
	else if (o->format && rh_report_format_parse(o->format, &fmt) < 0)
		return rh_cli_usage_error(o->ctx, "--format: %s", rh_error_last());
	if (rh_report_new(&st.report, &o->filter) < 0 ||
	    (o->prom_file && rh_metrics_new(&st.metrics, true) < 0)) {
		fprintf(stderr, "rehydra audit report: %s\n", rh_error_last());
		goto done;
	}
	/* the report says whether the evidence it is built from verifies */
	if (fmt == RH_REPORT_HTML || fmt == RH_REPORT_JSON) {
		struct rh_journal_problem pb;
		uint64_t n = 0;
		bool ok = rh_journal_verify(j, &pb, &n) == 0;

		if (rh_report_set_journal(st.report, ok, pb.last_hash, ok ? NULL : pb.message) <
		    0) {
			fprintf(stderr, "rehydra audit report: %s\n", rh_error_last());
			goto done;
		}
	}
	if (rh_journal_foreach_fields(j, record_fields, report_one, &st) < 0) {
		fprintf(stderr, "rehydra audit report: %s\n", rh_error_last());
		goto done;
	}
	if (o->scenarios) {
		struct rh_policy *p = NULL;
		json_t *cad = NULL;

		code = rh_cli_load_policy(&p, "audit report");
		if (code == 0)
			code = rh_cli_cadence(&cad, o->scenarios, j, p, time(NULL), NULL, NULL);
		rh_policy_free(p);
		if (code)
			goto done;
		code = EXIT_BAD;
		rh_report_set_cadence(st.report, cad);
		if (st.metrics)
			rh_metrics_set_cadence(st.metrics, cad);
		json_decref(cad);
	}
	if (write_report(st.report, fmt, o->out) < 0) {
		fprintf(stderr, "rehydra audit report: %s\n", rh_error_last());
		goto done;
	}
	if (st.metrics && rh_metrics_write(st.metrics, o->prom_file) < 0) {
		fprintf(stderr, "rehydra audit report: cannot write the metrics file %s: %s\n",
			o->prom_file, rh_error_last());
		goto done;
	}
	code = 0;
done:
	rh_metrics_free(st.metrics);
	rh_report_free(st.report);
	return code;
}

/* ---- cadence ------------------------------------------------------------------ */

static void print_time(const json_t *e, const char *k)
{
	const char *s = json_string_value(json_object_get(e, k));

	printf(" %-24.24s", s ? s : "-");
}

/* `j` may be NULL: no journal yet, nothing was ever rehearsed. */
static int run_cadence(struct rh_journal *j, const struct audit_opts *o)
{
	const char *dir = o->scenarios ? o->scenarios : "runbooks/scenarios";
	struct rh_policy *p = NULL;
	json_t *cad = NULL;
	size_t i;
	json_t *e;
	int rc;

	rc = rh_cli_load_policy(&p, "audit cadence");
	if (rc == 0)
		rc = rh_cli_cadence(&cad, dir, j, p, o->at_text ? o->at : time(NULL), NULL, NULL);
	rh_policy_free(p);
	if (rc)
		return rc;
	if (o->json) {
		rc = rh_cli_print_json(cad, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	} else {
		printf("%-28s %8s %-24s %-11s %-24s %-24s %s\n", "scenario", "cadence",
		       " last rehearsal", " verdict", " last success", " next due", "status");
		json_array_foreach(cad, i, e)
		{
			const json_t *cd = json_object_get(e, "cadence_days");
			const char *v = json_string_value(json_object_get(e, "last_verdict"));

			printf("%-28s ", json_string_value(json_object_get(e, "scenario")));
			if (json_is_number(cd))
				printf("%6gd ", json_number_value(cd));
			else
				printf("%7s ", "-");
			print_time(e, "last_rehearsal");
			printf(" %-11s", v ? v : "-");
			print_time(e, "last_success");
			print_time(e, "next_due");
			printf(" %s\n", json_string_value(json_object_get(e, "status")));
		}
		if (json_array_size(cad) == 0)
			printf("(no scenarios in %s)\n", dir);
	}
	if (o->prom_file) {
		struct rh_metrics *m = NULL;

		if (rh_metrics_new(&m, false) < 0) {
			rc = EXIT_BAD;
		} else {
			rh_metrics_set_cadence(m, cad);
			if (rh_metrics_write(m, o->prom_file) < 0)
				rc = EXIT_BAD;
		}
		if (rc)
			fprintf(stderr,
				"rehydra audit cadence: cannot write the metrics file %s: %s\n",
				o->prom_file, rh_error_last());
		rh_metrics_free(m);
	}
	if (rc == 0 && rh_cadence_failing(cad))
		rc = EXIT_BAD;
	json_decref(cad);
	return rc;
}

/* ---- repair, push ---------------------------------------------------------- */

/* {journal, repaired, moved_to, entries, last_hash} for --json */
static int print_repair_json(struct rh_journal *j, const char *moved,
			     const struct rh_journal_problem *pb, uint64_t n)
{
	json_t *o = json_pack("{s:s, s:b, s:s?, s:I, s:s}", "journal", rh_journal_path(j),
			      "repaired", moved[0] != '\0', "moved_to", moved[0] ? moved : NULL,
			      "entries", (json_int_t)n, "last_hash", pb->last_hash);
	int rc = rh_cli_print_json(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	json_decref(o);
	return rc ? EXIT_BAD : 0;
}

static int run_repair(struct rh_journal *j, const struct audit_opts *o)
{
	struct rh_journal_problem pb;
	char moved[PATH_MAX];
	uint64_t n = 0;

	if (rh_journal_repair(j, moved, sizeof(moved)) < 0) {
		fprintf(stderr, "rehydra audit repair: %s\n", rh_error_last());
		return EXIT_BAD;
	}
	if (!moved[0]) {
		rh_journal_verify(j, &pb, &n);
		if (o->json)
			return print_repair_json(j, moved, &pb, n);
		printf("%s: nothing to repair: %" PRIu64 " entries, chain intact\n",
		       rh_journal_path(j), n);
		return 0;
	}
	if (rh_journal_verify(j, &pb, &n) < 0) {
		fprintf(stderr,
			"rehydra audit repair: set the torn entry aside in %s, but the "
			"journal still does not verify: %s\n",
			moved, pb.message);
		return EXIT_BAD;
	}
	if (o->json)
		return print_repair_json(j, moved, &pb, n);
	printf("%s: set the incomplete last entry aside in %s; %" PRIu64 " entries, chain "
	       "intact, last hash %s\n",
	       rh_journal_path(j), moved, n, pb.last_hash);
	return 0;
}

static int run_push(struct rh_journal *j, const struct audit_opts *o)
{
	struct rh_journal_problem pb;
	struct rh_mirror_result res;
	const char *path = rh_journal_path(j);
	const char *slash = strrchr(path, '/');
	char mirror[PATH_MAX];
	uint64_t n = 0;

	if (rh_journal_verify(j, &pb, &n) < 0) {
		fprintf(stderr,
			"rehydra audit push: %s: %s\nnot pushing a journal that does not "
			"verify\n",
			path, pb.message[0] ? pb.message : rh_error_last());
		return EXIT_BAD;
	}
	snprintf(mirror, sizeof(mirror), "%.*s/mirror.git", slash ? (int)(slash - path) : 1,
		 slash ? path : ".");
	if (rh_mirror_push(&res, path, mirror, o->arg, o->branch) < 0) {
		fprintf(stderr, "rehydra audit push: %s\n", rh_error_last());
		return EXIT_BAD;
	}
	if (o->json) {
		json_t *out =
		    json_pack("{s:s, s:s, s:b, s:I, s:s}", "remote", o->arg, "branch",
			      o->branch ? o->branch : RH_MIRROR_BRANCH, "pushed", res.pushed,
			      "entries", (json_int_t)res.lines, "commit", res.commit);
		int rc = rh_cli_print_json(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		json_decref(out);
		return rc ? EXIT_BAD : 0;
	}
	if (res.pushed)
		printf("pushed %" PRIu64 " journal entries to %s branch %s: commit %.12s\n",
		       res.lines, o->arg, o->branch ? o->branch : RH_MIRROR_BRANCH, res.commit);
	else
		printf("%s branch %s is up to date: %" PRIu64 " entries, commit %.12s\n", o->arg,
		       o->branch ? o->branch : RH_MIRROR_BRANCH, res.lines, res.commit);
	return 0;
}

/* ---- the subcommands' options ------------------------------------------------- */

#define AUDIT_COMMON(o)                                                                            \
	RH_OPT_STRING(0, "state-dir", &(o)->state_arg, "DIR",                                      \
		      "the state directory (default $XDG_STATE_HOME/rehydra or "                   \
		      "~/.local/state/rehydra)"),                                                  \
	    RH_OPT_STRING(0, "journal", &(o)->journal_file, "FILE",                                \
			  "read this journal file instead (e.g. rebuilt from a mirror)")

#define AUDIT_FILTERS(o)                                                                           \
	RH_OPT_GROUP("filters"), RH_OPT_STRING(0, "runbook", &(o)->filter.runbook, "NAME", NULL),  \
	    RH_OPT_STRING(0, "target", &(o)->filter.target, "PROVIDER[:REGION]", NULL),            \
	    RH_OPT_STRING(0, "scenario", &(o)->filter.scenario, "NAME", "'-': none"),              \
	    RH_OPT_STRING(0, "verdict", &(o)->filter.verdict, "V",                                 \
			  "met, missed, failed, interrupted, aborted or abandoned"),               \
	    RH_OPT_STRING(0, "since", &(o)->since_text, "TIME",                                    \
			  "YYYY-MM-DD or RFC 3339; since <= t0 < until"),                          \
	    RH_OPT_STRING(0, "until", &(o)->until_text, "TIME", NULL)

#define AUDIT_JSON(o, what) RH_OPT_BOOL(0, "json", &(o)->json, what)

/* Parses, checks, opens the journal, runs `fn`. `max_pos` is 0 or 1 (the
 * ID or REMOTE); `need` the message when that one argument is missing. */
static int audit_run(const struct rh_cmd_ctx *ctx, int argc, char **argv,
		     const struct rh_option *options, struct audit_opts *o, int max_pos,
		     const char *need, int (*fn)(struct rh_journal *, const struct audit_opts *))
{
	struct rh_journal *j = NULL;
	int n = rh_parse_options(ctx, argc, argv, options);
	int rc;

	if (n < 0)
		return rh_parse_exit(n);
	o->ctx = ctx;
	o->sub = ctx->cmd->name;
	if (n > max_pos)
		return rh_cli_usage_error(ctx, "unexpected argument '%s'", argv[max_pos]);
	if (max_pos && n < max_pos)
		return rh_cli_usage_error(ctx, "%s", need);
	o->arg = n ? argv[0] : NULL;
	o->arg2 = n > 1 ? argv[1] : NULL;
	rc = check_opts(ctx, o);
	if (rc)
		return rc;
	rc = open_journal(&j, o, NULL);
	if (rc)
		return rc;
	rc = fn(j, o);
	rh_journal_close(j);
	return rc;
}

static int cmd_verify(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct audit_opts o = {0};
	const struct rh_option options[] = {
	    AUDIT_COMMON(&o),
	    AUDIT_JSON(&o, "print {journal, intact, entries, last_hash, problem} on stdout"),
	    RH_OPT_STRING(0, "allowed-signers", &o.allowed_signers, "FILE",
			  "also check every signed checkpoint (ssh-keygen ALLOWED SIGNERS file) "
			  "and that the journal still holds what each one signed"),
	    RH_OPT_STRING(0, "against", &o.against, "REMOTE",
			  "also check that the journal still holds what was pushed to REMOTE"),
	    RH_OPT_STRING(0, "branch", &o.branch, "NAME",
			  "with --against: the branch (default 'journal')"),
	    RH_OPT_END(),
	};

	return audit_run(ctx, argc, argv, options, &o, 0, NULL, run_verify);
}

static int cmd_checkpoint(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct audit_opts o = {0};
	const struct rh_option options[] = {
	    AUDIT_COMMON(&o),
	    RH_OPT_STRING(0, "signing-key", &o.signing_key, "KEY",
			  "sign with this key: a private key file, or a public key whose private "
			  "half is in the ssh agent"),
	    AUDIT_JSON(&o, "print {journal, seq, checkpoint, namespace} on stdout"),
	    RH_OPT_END(),
	};

	return audit_run(ctx, argc, argv, options, &o, 0, NULL, run_checkpoint);
}

static int cmd_list(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct audit_opts o = {0};
	const struct rh_option options[] = {
	    AUDIT_COMMON(&o),
	    AUDIT_JSON(&o, "one JSON object per line (JSON Lines) on stdout"),
	    AUDIT_FILTERS(&o),
	    RH_OPT_END(),
	};

	return audit_run(ctx, argc, argv, options, &o, 0, NULL, run_list);
}

static int cmd_show(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct audit_opts o = {0};
	const struct rh_option options[] = {
	    AUDIT_COMMON(&o),
	    AUDIT_JSON(&o, "print the entry (with its record) as JSON on stdout"),
	    RH_OPT_END(),
	};

	return audit_run(ctx, argc, argv, options, &o, 1,
			 "show needs an entry: a seq number or a drill id (or a unique prefix of "
			 "one)",
			 run_show);
}

static int cmd_report(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct audit_opts o = {0};
	const struct rh_option options[] = {
	    AUDIT_COMMON(&o),
	    RH_OPT_STRING(0, "format", &o.format, "F", "md (default), html, json, csv or junit"),
	    AUDIT_JSON(&o, "the same as --format json"),
	    RH_OPT_STRING(0, "out", &o.out, "FILE", "write the report to FILE atomically"),
	    RH_OPT_STRING(0, "prom-file", &o.prom_file, "FILE",
			  "write Prometheus metrics of the latest drill per group"),
	    RH_OPT_STRING(
		0, "scenarios", &o.scenarios, "DIR",
		"add the rehearsal cadence of DIR's scenarios (JUnit: an overdue or never "
		"rehearsed scenario is a failed testcase; Prometheus: "
		"rehydra_scenario_last_success_timestamp_seconds, "
		"rehydra_scenario_overdue)"),
	    AUDIT_FILTERS(&o),
	    RH_OPT_END(),
	};

	return audit_run(ctx, argc, argv, options, &o, 0, NULL, run_report);
}

static int cmd_cadence(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct audit_opts o = {0};
	const struct rh_option options[] = {
	    AUDIT_COMMON(&o),
	    AUDIT_JSON(&o, "print [{scenario, file, cadence_days, rehearsals, last_rehearsal, "
			   "last_verdict, last_success, next_due, status}] on stdout"),
	    RH_OPT_STRING(
		0, "at", &o.at_text, "TIME",
		"judge as of TIME (YYYY-MM-DD or RFC 3339): what an audit then would have "
		"found"),
	    RH_OPT_STRING(0, "prom-file", &o.prom_file, "FILE",
			  "write rehydra_scenario_last_success_timestamp_seconds and "
			  "rehydra_scenario_overdue to FILE"),
	    RH_OPT_END(),
	};
	struct rh_journal *j = NULL;
	char *state = NULL;
	char path[4200];
	int n = rh_parse_options(ctx, argc, argv, options);
	int rc;

	if (n < 0)
		return rh_parse_exit(n);
	o.ctx = ctx;
	o.sub = ctx->cmd->name;
	if (n > 1)
		return rh_cli_usage_error(ctx, "unexpected argument '%s'", argv[1]);
	o.scenarios = n ? argv[0] : NULL;
	rc = check_opts(ctx, &o);
	if (rc)
		return rc;
	if (!o.journal_file) {
		/* no journal yet is an answer here: nothing was ever rehearsed */
		state = rh_cli_state_open(o.state_arg);
		if (!state)
			return rh_cli_usage_error(ctx, "no state directory: set HOME or "
						       "XDG_STATE_HOME, or pass --state-dir");
		snprintf(path, sizeof(path), "%s/journal/journal.jsonl", state);
		free(state);
		if (access(path, F_OK) != 0)
			return run_cadence(NULL, &o);
	}
	rc = open_journal(&j, &o, NULL);
	if (rc)
		return rc;
	rc = run_cadence(j, &o);
	rh_journal_close(j);
	return rc;
}

static int cmd_repair(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct audit_opts o = {0};
	const struct rh_option options[] = {
	    AUDIT_COMMON(&o),
	    AUDIT_JSON(&o, "print {journal, repaired, moved_to, entries, last_hash} on stdout"),
	    RH_OPT_END(),
	};

	return audit_run(ctx, argc, argv, options, &o, 0, NULL, run_repair);
}

static int cmd_diff(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct audit_opts o = {0};
	const struct rh_option options[] = {
	    AUDIT_COMMON(&o),
	    AUDIT_JSON(&o, "print {a, b, seq, verdict, rto_s, teardown, steps, inputs_differ}"),
	    RH_OPT_END(),
	};

	return audit_run(ctx, argc, argv, options, &o, 2,
			 "diff needs two entries: seq numbers or drill ids (or unique prefixes)",
			 run_diff);
}

static int cmd_push(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct audit_opts o = {0};
	const struct rh_option options[] = {
	    AUDIT_COMMON(&o),
	    RH_OPT_STRING(0, "branch", &o.branch, "NAME",
			  "the branch to push to (default 'journal')"),
	    RH_OPT_END(),
	};

	return audit_run(ctx, argc, argv, options, &o, 1,
			 "push needs a remote: a path or URL of a git repository", run_push);
}

static const char audit_epilogue[] =
    "exit status: 0 ok, 1 the journal does not verify or the operation failed,\n"
    "2 bad usage or no journal\n";

static const struct rh_cmd audit_verify = {
    .name = "verify",
    .summary = "check the whole chain; names the first problem and its line",
    .epilogue = audit_epilogue,
    .run = cmd_verify,
};

static const struct rh_cmd audit_list = {
    .name = "list",
    .summary = "one line per drill: seq, t0, runbook, target, scenario, verdict, RTO and RTO "
	       "target",
    .epilogue = audit_epilogue,
    .run = cmd_list,
};

static const struct rh_cmd audit_show = {
    .name = "show",
    .args = "ID",
    .summary = "one entry: ID is a seq number, a drill id or a unique prefix of one",
    .epilogue = audit_epilogue,
    .run = cmd_show,
};

static const struct rh_cmd audit_diff = {
    .name = "diff",
    .args = "ID1 ID2",
    .summary = "two drills side by side: verdict, RTO, each step's status and duration, and "
	       "every input that differs (vars, --var overrides, target, model, runbook)",
    .epilogue = audit_epilogue,
    .run = cmd_diff,
};

static const struct rh_cmd audit_report = {
    .name = "report",
    .summary = "per runbook x target x scenario: drills, pass rate, RTO p50/p95/max, the "
	       "slowest step, the trend",
    .epilogue = audit_epilogue,
    .run = cmd_report,
};

static const struct rh_cmd audit_repair = {
    .name = "repair",
    .summary = "set aside a torn last entry (an append cut off by a crash) so the journal "
	       "verifies again; other damage is refused, never \"fixed\"",
    .epilogue = audit_epilogue,
    .run = cmd_repair,
};

static const struct rh_cmd audit_push = {
    .name = "push",
    .args = "REMOTE",
    .summary = "commit the journal into STATE_DIR/journal/mirror.git and push it to the git "
	       "REMOTE (a path, file://, ssh:// via the ssh agent) on branch 'journal' (or "
	       "--branch); only new entries travel; a remote branch that has diverged is "
	       "refused, never force-pushed",
    .epilogue = audit_epilogue,
    .run = cmd_push,
};

static const struct rh_cmd audit_cadence = {
    .name = "cadence",
    .args = "[DIR]",
    .summary = "every scenario of DIR (default runbooks/scenarios): last rehearsal, last success, "
	       "verdict, next due, status ok|due|overdue|never",
    .description =
	"A scenario is ok while its last successful rehearsal (verdict met) is less than\n"
	"cadence_days old, due within a grace of 10% of the cadence (at least a day)\n"
	"after that, then overdue; rehearsed but never successfully is overdue too, never\n"
	"rehearsed is never.\n",
    .epilogue = "exit status: 0 every scenario ok or due, 1 one is overdue or never rehearsed\n"
		"(or the operation failed), 2 bad usage or a bad scenario\n",
    .run = cmd_cadence,
};

static const struct rh_cmd audit_checkpoint = {
    .name = "checkpoint",
    .summary = "sign the journal head (seq, hash, time) with ssh-keygen -Y sign into "
	       "STATE_DIR/journal/checkpoints/; 'verify --allowed-signers' and stock "
	       "'ssh-keygen -Y verify -n rehydra-journal' check it",
    .epilogue = audit_epilogue,
    .run = cmd_checkpoint,
};

static const struct rh_cmd *const audit_subs[] = {
    &audit_verify, &audit_list, &audit_show,	&audit_diff,	   &audit_report,
    &audit_repair, &audit_push, &audit_cadence, &audit_checkpoint, NULL,
};

const struct rh_cmd rh_cmd_audit = {
    .name = "audit",
    .summary = "Verify, list, report on and mirror the journal of drills",
    .description =
	"Every drill (met, missed, failed or interrupted) appends its record to the audit\n"
	"journal STATE_DIR/journal/journal.jsonl, each entry carrying the sha256 of the one\n"
	"before it, so an edited, deleted, reordered or truncated entry shows.\n",
    .epilogue = audit_epilogue,
    .subs = audit_subs,
};
