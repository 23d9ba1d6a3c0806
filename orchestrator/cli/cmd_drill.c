/*
 * cmd_drill.c - `rehydra drill RUNBOOK`: run one drill and report its RTO.
 *
 * Validates the runbook first (nothing is created when it is invalid), then
 * runs it with the engine, printing a timeline as steps start and end, and
 * writes the drill record. Signals are handled by one thread that waits for
 * them (sigwait), so the engine's threads never run signal handlers: the
 * first SIGINT/SIGTERM interrupts the drill (teardown still runs), the
 * second says so, the third abandons the teardown: the engine stops waiting
 * for running steps within a second, and the record and journal entry are
 * still written before rehydra exits.
 *
 * Every drill that reaches a verdict (met, missed, failed, interrupted) is
 * then appended to the audit journal: a drill that happened but is missing
 * from the journal would make the evidence lie, so a failed append is an
 * error the user sees (exit 3), even though the record file is written.
 */
#include "cli.h"
#include "engine.h"
#include "error.h"
#include "fsutil.h"
#include "intent.h"
#include "process.h"
#include "provider.h"
#include "journal.h"
#include "load.h"
#include "metrics.h"
#include "preflight.h"
#include "record.h"
#include "runbook.h"
#include "scenario.h"
#include "steps.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

struct ui {
	FILE *out;
	bool tty; /* live progress line */
	bool color;
	bool quiet;
	bool line_open; /* a progress line is on screen without its newline */
	pthread_mutex_t lock;
};

struct sig_state {
	struct rh_drill *drill;
	struct ui *ui;
	sigset_t set;
};

static const char *paint(const struct ui *ui, const char *code)
{
	return ui->color ? code : "";
}

#define C_RESET "\033[0m"
#define C_GREEN "\033[32m"
#define C_RED "\033[31m"
#define C_YELLOW "\033[33m"
#define C_DIM "\033[2m"
#define C_BOLD "\033[1m"

static const char *status_color(enum rh_step_status s)
{
	switch (s) {
	case RH_STEP_OK:
		return C_GREEN;
	case RH_STEP_FAILED:
	case RH_STEP_TIMED_OUT:
		return C_RED;
	default:
		return C_YELLOW;
	}
}

static void ui_end_line(struct ui *ui)
{
	if (ui->line_open) {
		fputs("\r\033[K", ui->out);
		ui->line_open = false;
	}
}

static void on_event(void *user, const struct rh_drill *d, const struct rh_event *ev)
{
	struct ui *ui = user;
	const struct rh_step *s = &d->rb->steps[ev->step];
	const struct rh_step_result *r = &d->results[ev->step];
	/* what reaches the terminal is redacted as the record is, and escaped */
	char *text = NULL;

	if (ui->quiet)
		return;
	text = rh_record_redact_text(d, ev->text);
	pthread_mutex_lock(&ui->lock);
	switch (ev->kind) {
	case RH_EVENT_STEP_START:
		ui_end_line(ui);
		fprintf(ui->out, "  %s%+9.3fs%s  %-16s start", paint(ui, C_DIM), ev->at_s,
			paint(ui, C_RESET), s->id);
		if (ev->attempt > 1)
			fprintf(ui->out, " (attempt %u of %u)", ev->attempt, s->retries + 1);
		fputc('\n', ui->out);
		break;
	case RH_EVENT_STEP_RETRY:
		ui_end_line(ui);
		fprintf(ui->out,
			"  %s%+9.3fs%s  %-16s %sattempt %u failed%s: %s; retrying in %.1fs\n",
			paint(ui, C_DIM), ev->at_s, paint(ui, C_RESET), s->id, paint(ui, C_YELLOW),
			ev->attempt, paint(ui, C_RESET), text ? text : "", ev->delay_s);
		break;
	case RH_EVENT_STEP_END:
		ui_end_line(ui);
		fprintf(ui->out, "  %s%+9.3fs%s  %-16s %s%s%s", paint(ui, C_DIM), ev->at_s,
			paint(ui, C_RESET), s->id, paint(ui, status_color(r->status)),
			rh_step_status_name(r->status), paint(ui, C_RESET));
		if (r->start_s >= 0 && r->end_s >= 0)
			fprintf(ui->out, "  %.3fs", r->end_s - r->start_s);
		if (s->type == &rh_step_load_probe) {
			char head[256];

			rh_load_headline(head, sizeof(head), r->outputs);
			if (head[0])
				fprintf(ui->out, "  %s", head);
		}
		if (r->status == RH_STEP_OK && s->restores_service)
			fprintf(ui->out, "  %sservice answers%s", paint(ui, C_BOLD),
				paint(ui, C_RESET));
		/* a failed teardown is told once, loudly, after the verdict */
		if (r->status != RH_STEP_OK && s->type == &rh_step_teardown)
			fprintf(ui->out, " (see below)");
		else if (r->status != RH_STEP_OK && text && text[0])
			fprintf(ui->out, ": %s", text);
		fputc('\n', ui->out);
		break;
	case RH_EVENT_STEP_PROGRESS:
		if (ui->tty && text) {
			ui_end_line(ui);
			fprintf(ui->out, "  %s%+9.3fs%s  %-16s %s", paint(ui, C_DIM), ev->at_s,
				paint(ui, C_RESET), s->id, text);
			ui->line_open = true;
		}
		break;
	case RH_EVENT_STEP_QUEUED:
		ui_end_line(ui);
		fprintf(ui->out, "  %s%+9.3fs%s  %-16s queued (max_parallel %u steps run)\n",
			paint(ui, C_DIM), ev->at_s, paint(ui, C_RESET), s->id, d->rb->max_parallel);
		break;
	case RH_EVENT_INTERRUPTED:
		break;
	}
	fflush(ui->out);
	pthread_mutex_unlock(&ui->lock);
	free(text);
}

static volatile sig_atomic_t early_signal;

static void note_early_signal(int sig)
{
	early_signal = sig;
}

static void *signal_thread(void *arg)
{
	struct sig_state *st = arg;
	int count = 0;

	for (;;) {
		int sig;

		if (sigwait(&st->set, &sig) != 0)
			continue;
		if (sig == SIGUSR1)
			break;
		count++;
		pthread_mutex_lock(&st->ui->lock);
		ui_end_line(st->ui);
		if (count == 1) {
			rh_engine_interrupt(st->drill);
			fprintf(stderr,
				"rehydra: %s: stopping the drill; teardown steps still run "
				"(interrupt twice more to abandon them)\n",
				strsignal(sig));
		} else if (count == 2) {
			fprintf(stderr, "rehydra: teardown is running; interrupt once more to "
					"abandon it and leave resources behind\n");
		} else {
			rh_engine_abort(st->drill);
			fprintf(stderr, "rehydra: abandoning teardown\n");
		}
		pthread_mutex_unlock(&st->ui->lock);
	}
	return NULL;
}

/* Points at a failed step's captured output, when it has any. */
static void print_logs(FILE *f, const char *prefix)
{
	static const char *const ext[] = {".stdout", ".stderr"};
	char path[4200];

	for (size_t k = 0; prefix && k < 2; k++) {
		struct stat st;

		snprintf(path, sizeof(path), "%s%s", prefix, ext[k]);
		if (stat(path, &st) == 0 && st.st_size > 0)
			fprintf(f, "         %s\n", path);
	}
}

static void print_summary(struct ui *ui, const struct rh_drill *d, const char *record_path)
{
	const struct rh_runbook *rb = d->rb;
	FILE *f = ui->out;
	const char *vcolor = d->verdict == RH_VERDICT_MET      ? C_GREEN
			     : d->verdict == RH_VERDICT_MISSED ? C_YELLOW
							       : C_RED;

	fprintf(f, "\nverdict  %s%s%s", paint(ui, vcolor), rh_verdict_name(d->verdict),
		paint(ui, C_RESET));
	if (d->verdict == RH_VERDICT_ABORTED) {
		const json_t *c = rh_preflight_failed(d->preflight);

		fprintf(f, "  pre-flight failed before T0; nothing was created\n");
		if (c)
			fprintf(f, "  check '%s': %s\n",
				json_string_value(json_object_get(c, "check")),
				json_string_value(json_object_get(c, "message")));
		if (c && json_is_string(json_object_get(c, "next")))
			fprintf(f, "  next: %s\n", json_string_value(json_object_get(c, "next")));
	} else if (d->restored) {
		fprintf(f, "  rto %.3f s", d->rto_s);
		if (rb->rto_target_s > 0 && d->verdict == RH_VERDICT_MISSED)
			fprintf(f, " (target %g s: missed by %.3f s)", rb->rto_target_s,
				d->rto_s - rb->rto_target_s);
		else if (rb->rto_target_s > 0)
			fprintf(f, " (target %g s)", rb->rto_target_s);
		fputc('\n', f);
		if (d->n_critical) {
			double steps_s = d->rto_s - d->overhead_s;

			fprintf(f, "critical path  ");
			for (size_t i = 0; i < d->n_critical; i++)
				fprintf(f, "%s%s", i ? " -> " : "",
					rb->steps[d->critical_path[i]].id);
			fprintf(
			    f,
			    "\n         %.3f s in steps, %.3f s orchestrator overhead (%.2f%%)\n",
			    steps_s, d->overhead_s,
			    d->rto_s > 0 ? 100.0 * d->overhead_s / d->rto_s : 0.0);
		}
	} else {
		fprintf(f, "  service not restored\n");
		for (size_t i = 0; i < rb->n_steps; i++) {
			const struct rh_step_result *r = &d->results[i];

			char *shown;

			if ((r->status != RH_STEP_FAILED && r->status != RH_STEP_TIMED_OUT) ||
			    rb->steps[i].when != RH_WHEN_ON_SUCCESS)
				continue;
			shown = rh_record_redact_text(d, r->error);
			fprintf(f, "  step '%s' %s: %s\n", rb->steps[i].id,
				rh_step_status_name(r->status), shown ? shown : "");
			free(shown);
			print_logs(f, r->log_prefix);
		}
	}
	for (size_t i = 0; i < rb->n_steps; i++) {
		char head[256];

		if (rb->steps[i].type != &rh_step_load_probe)
			continue;
		rh_load_headline(head, sizeof(head), d->results[i].outputs);
		if (head[0])
			fprintf(f, "load     %s: %s\n", rb->steps[i].id, head);
	}
	if (d->final_phase_failed && !d->teardown_incomplete) {
		fprintf(f, "\n%sWARNING: the final phase did not complete:%s\n", paint(ui, C_RED),
			paint(ui, C_RESET));
		for (size_t i = 0; i < rb->n_steps; i++) {
			const struct rh_step_result *r = &d->results[i];

			char *shown;

			if (rb->steps[i].when == RH_WHEN_ON_SUCCESS || r->status == RH_STEP_OK ||
			    r->status == RH_STEP_SKIPPED)
				continue;
			shown = rh_record_redact_text(d, r->error);
			fprintf(f, "  step '%s' %s: %s\n", rb->steps[i].id,
				rh_step_status_name(r->status), shown ? shown : "");
			free(shown);
		}
		fprintf(f, "  drill directory: %s\n", d->dir);
	}
	if (record_path)
		fprintf(f, "record   %s\n", record_path);
	fflush(f);
}

/* The one loud teardown alarm, on stderr (whatever --quiet or --json say:
 * resources may be billing). Printed only when a teardown step ran and did
 * not succeed, which the adapters make mean "something may exist". */
static void print_teardown_alarm(const struct ui *ui, const struct rh_drill *d)
{
	static const char tag[] = "TEARDOWN INCOMPLETE: ";
	const struct rh_runbook *rb = d->rb;
	bool color = ui->color && ui->out == stderr;

	if (!d->teardown_incomplete)
		return;
	fprintf(stderr, "\n%sTEARDOWN INCOMPLETE: resources may remain (exit 4)%s\n",
		color ? C_RED : "", color ? C_RESET : "");
	for (size_t i = 0; i < rb->n_steps; i++) {
		const struct rh_step_result *r = &d->results[i];
		const char *e = r->error ? r->error : "";
		const char *hit = strstr(e, tag);

		if (rb->steps[i].type != &rh_step_teardown || r->attempts == 0 ||
		    r->status == RH_STEP_OK)
			continue;
		fprintf(stderr, "  step '%s' %s: ", rb->steps[i].id,
			rh_step_status_name(r->status));
		if (hit) /* the adapter's own words, without saying it twice */
			fprintf(stderr, "%.*s%s\n", (int)(hit - e), e, hit + sizeof(tag) - 1);
		else
			fprintf(stderr, "%s\n", e);
		print_logs(stderr, r->log_prefix);
	}
	fprintf(stderr, "  drill directory: %s\n", d->dir);
	fflush(stderr);
}

/* The pre-flight checks, one line each; `all` prints passed ones too. */
static void print_checks(FILE *f, const json_t *checks, bool all)
{
	size_t i;
	const json_t *c;

	json_array_foreach(checks, i, c)
	{
		bool ok = json_is_true(json_object_get(c, "ok"));
		const char *next = json_string_value(json_object_get(c, "next"));

		if (ok && !all)
			continue;
		fprintf(f, "  %-4s %-15s %s\n", ok ? "ok" : "FAIL",
			json_string_value(json_object_get(c, "check")),
			json_string_value(json_object_get(c, "message")));
		if (!ok && next)
			fprintf(f, "       %-15s next: %s\n", "", next);
	}
}

/* A scenario names a rehearsal ("H20 unavailable in CN"): printable UTF-8. */
static bool scenario_ok(const char *s)
{
	size_t n = strlen(s);
	json_t *utf8;
	bool ok;

	if (n == 0 || n > 128)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	utf8 = json_string(s); /* NULL when not valid UTF-8 */
	ok = utf8 != NULL;
	json_decref(utf8);
	return ok;
}

/* Appends the record to the journal and writes the metrics file. Prints
 * what went wrong; returns false then. */
static bool journal_and_metrics(const char *state_dir, const json_t *record, const char *prom_file,
				const struct ui *ui, const char *cmd)
{
	struct rh_journal *j = NULL;
	uint64_t seq = 0;
	bool journaled = false, ok = true;

	if (rh_journal_open(&j, state_dir) < 0 || rh_journal_append(j, record, &seq) < 0) {
		fprintf(stderr, "rehydra %s: the drill was not added to the audit journal: %s\n",
			cmd, rh_error_last());
		ok = false;
	} else {
		journaled = true;
		if (!ui->quiet)
			fprintf(ui->out, "journal  entry %llu in %s\n", (unsigned long long)seq,
				rh_journal_path(j));
	}
	if (prom_file) {
		struct rh_metrics *m = NULL;
		int rc;

		/* From the journal when it took the record; else this drill
		 * alone, so the file still says how it went. */
		if (journaled) {
			rc = rh_metrics_write_journal(j, prom_file);
		} else {
			rc = rh_metrics_new(&m, false);
			if (rc == 0)
				rc = rh_metrics_add(m, record);
			if (rc == 0)
				rc = rh_metrics_write(m, prom_file);
			rh_metrics_free(m);
		}
		if (rc < 0) {
			fprintf(stderr, "rehydra %s: cannot write the metrics file %s: %s\n", cmd,
				prom_file, rh_error_last());
			ok = false;
		}
	}
	rh_journal_close(j);
	return ok;
}

/* Pre-flight of a runbook that opts into model-export: the manifest's
 * export fields, read before T0, must allow the target. Prints why not. */
static bool policy_preflight(const struct rh_runbook *rb, const char *file, const char *state_dir,
			     const char *cmd)
{
	struct rh_diags diags = RH_DIAGS_INIT;
	char cache[4200], why[1024];
	json_t *ex;
	bool ok;

	snprintf(cache, sizeof(cache), "%s/cache", state_dir);
	ex = rh_cli_model_export(rb, cache, why, sizeof(why));
	if (!ex) {
		fprintf(stderr,
			"rehydra %s: %s: pre-flight: %s (the runbook's policy rule "
			"model-export needs it; nothing was created)\n",
			cmd, file, why);
		return false;
	}
	if (rh_scenario_check_target(&diags, rb->doc, rb->target, "/target", rb->vars, ex, NULL) <
	    0) {
		fprintf(stderr, "rehydra %s: %s: pre-flight: %s\n", cmd, file, rh_error_last());
		json_decref(ex);
		return false;
	}
	ok = diags.count == 0;
	for (size_t i = 0; i < diags.count; i++)
		fprintf(stderr, "%s: error: pre-flight: %s (nothing was created)\n", file,
			diags.items[i].message);
	rh_diags_clear(&diags);
	json_decref(ex);
	return ok;
}

static void intent_problem(const char *what)
{
	fprintf(stderr,
		"rehydra drill: cannot update the drill's intent (%s): %s; if rehydra is killed "
		"now, the next command may not find everything it started\n",
		what, rh_error_last());
}

static void intent_on_spawn(void *user, pid_t pgid)
{
	if (rh_intent_note_group(user, pgid) < 0)
		intent_problem("a process group");
}

static void intent_on_resource(void *user, const char *kind, const char *path)
{
	if (rh_intent_note_path(user, kind, path) < 0)
		intent_problem(kind);
}

/* Writes the intent before the drill starts anything and makes every child
 * and workspace of the drill land in it (intent.h). */
static int intent_start(struct rh_intent **out, struct rh_drill *d, const char *state_dir)
{
	const json_t *tf = json_object_get(d->rb->target, "terraform");
	json_t *rec = NULL;
	int rc;

	*out = NULL;
	rc = rh_record_build(&rec, d);
	if (rc < 0)
		return rc;
	rc = rh_intent_begin(out, state_dir, d->id, d->dir, rec,
			     json_is_string(tf) ? json_string_value(tf) : NULL);
	json_decref(rec);
	if (rc < 0)
		return rc;
	rc = rh_spawn_watch_set(rh_intent_marker(*out), intent_on_spawn, *out);
	if (rc < 0) {
		rh_intent_finish(*out);
		*out = NULL;
		return rc;
	}
	if (d->provider) {
		d->provider->note_resource = intent_on_resource;
		d->provider->note_user = *out;
	}
	return 0;
}

int rh_cli_drill_execute(const struct rh_cli_drill_req *req)
{
	struct rh_intent *intent = NULL;
	struct rh_runbook_opts lo = RH_RUNBOOK_OPTS_INIT;
	struct rh_runbook *rb = NULL;
	struct rh_drill drill;
	struct rh_engine_opts opts = RH_ENGINE_OPTS_INIT;
	struct ui ui = {.out = stdout, .lock = PTHREAD_MUTEX_INITIALIZER, .quiet = req->quiet};
	struct sig_state sig = {0};
	pthread_t sig_tid;
	bool sig_started = false, drill_ready = false;
	bool json_out = req->json_out, no_color = req->no_color, record_ok = false;
	bool preflight_only = req->preflight_only;
	struct rh_preflight_opts popts = RH_PREFLIGHT_OPTS_INIT;
	json_t *checks = NULL;
	const char *file = req->file;
	const char *state_arg = req->state_dir;
	const char *scenario = req->scenario;
	const char *prom_file = req->prom_file;
	const char *cmd = req->cmd ? req->cmd : "drill";
	char *state_dir = NULL;
	char record_path[4200];
	json_t *record = NULL;
	sigset_t old;
	int rc = RH_EXIT_FAILED;

	lo.overrides = req->overrides;
	lo.n_overrides = req->n_overrides;
	lo.target = req->target;
	lo.rto_target_s = req->rto_target_s;
	/* A signal during validation and pre-flight is an interrupt too (130,
	 * not the 143 of dying by SIGTERM): noted here, acted on below. */
	{
		struct sigaction sa = {.sa_handler = note_early_signal};

		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	/* Validate everything before anything is created. */
	rc = rh_cli_load_runbook_opts(&rb, file, &lo);
	if (early_signal && rc == 0)
		goto early;
	if (rc)
		goto done;
	rc = RH_EXIT_FAILED;
	state_dir = rh_cli_state_open(state_arg);
	if (!state_dir) {
		fprintf(stderr,
			"rehydra %s: no state directory: set HOME or XDG_STATE_HOME, or "
			"pass --state-dir\n",
			cmd);
		rc = RH_EXIT_USAGE;
		goto done;
	}
	if (rh_scenario_needs_export(rb->doc) && !policy_preflight(rb, file, state_dir, cmd)) {
		rc = RH_EXIT_USAGE;
		goto done;
	}

	if (json_out)
		ui.out = stderr; /* stdout carries only the record */
	ui.tty = isatty(fileno(ui.out));
	ui.color = ui.tty && !no_color && !getenv("NO_COLOR");

	/* Block the signals in every thread; one thread takes them with sigwait. */
	sigemptyset(&sig.set);
	sigaddset(&sig.set, SIGINT);
	sigaddset(&sig.set, SIGTERM);
	sigaddset(&sig.set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sig.set, &old);
	if (early_signal) {
	early:
		fprintf(stderr,
			"rehydra drill: %s before the drill started: nothing was "
			"created\n",
			strsignal(early_signal));
		rc = RH_EXIT_INTERRUPTED;
		goto done;
	}
	/* An inherited SIG_IGN (background jobs of a shell) would discard the
	 * signal before sigwait sees it; blocked, SIG_DFL cannot kill us. */
	{
		struct sigaction sa = {.sa_handler = SIG_DFL};

		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}

	if (rh_drill_init(&drill, rb, state_dir) < 0) {
		fprintf(stderr, "rehydra %s: %s\n", cmd, rh_error_last());
		rc = RH_EXIT_USAGE;
		goto done;
	}
	drill_ready = true;
	if (rh_record_set_overrides(&drill, req->overrides, req->n_overrides) < 0) {
		fprintf(stderr, "rehydra %s: %s\n", cmd, rh_error_last());
		goto done;
	}
	/* --preflight-only journals nothing and leaves nothing: no intent */
	if (!preflight_only && intent_start(&intent, &drill, state_dir) < 0) {
		fprintf(stderr, "rehydra %s: %s\n", cmd, rh_error_last());
		goto done;
	}
	sig.drill = &drill;
	sig.ui = &ui;
	if (pthread_create(&sig_tid, NULL, signal_thread, &sig) != 0) {
		fprintf(stderr, "rehydra %s: cannot start the signal thread\n", cmd);
		goto done;
	}
	sig_started = true;

	if (!ui.quiet) {
		fprintf(ui.out, "drill %s%s%s: runbook %s", paint(&ui, C_BOLD), drill.id,
			paint(&ui, C_RESET), rb->name);
		if (rb->target)
			fprintf(ui.out, " on %s:%s",
				json_string_value(json_object_get(rb->target, "provider")),
				json_is_string(json_object_get(rb->target, "region"))
				    ? json_string_value(json_object_get(rb->target, "region"))
				    : "-");
		if (rb->rto_target_s > 0)
			fprintf(ui.out, ", rto target %g s", rb->rto_target_s);
		fprintf(ui.out, "\n");
		fflush(ui.out);
	}

	/* Pre-flight: before T0, creating nothing. A failure is an aborted
	 * drill: journaled (the attempt is evidence), exit 2. */
	popts.plan = preflight_only;
	if (rh_preflight_run(&checks, &drill, &popts) < 0) {
		char why[2048];

		const json_t *failed = rh_preflight_failed(checks);
		const char *next = json_string_value(json_object_get(failed, "next"));

		snprintf(why, sizeof(why), "%s", rh_error_last());
		fprintf(stderr, "rehydra %s: %s: %s%s%s\n", cmd, file, why, next ? "; next: " : "",
			next ? next : "");
		if (preflight_only && !ui.quiet)
			print_checks(ui.out, checks, true);
		rc = RH_EXIT_USAGE;
		if (preflight_only)
			goto done;
		rh_drill_abort(&drill);
	} else if (preflight_only) {
		print_checks(ui.out, checks, true);
		fprintf(ui.out, "pre-flight passed: %zu checks in %.3f s (nothing journaled)\n",
			json_array_size(checks), drill.preflight_s);
		rc = RH_EXIT_MET;
		goto done;
	} else if (!ui.quiet) {
		fprintf(ui.out,
			"  pre-flight ok  %zu checks in %.3f s (before T0, not in the RTO)\n",
			json_array_size(checks), drill.preflight_s);
		fflush(ui.out);
	}
	drill.preflight = checks;
	checks = NULL;
	if (drill.verdict == RH_VERDICT_ABORTED)
		goto record;

	opts.on_event = on_event;
	opts.user = &ui;
	if (rh_engine_run(&drill, &opts) < 0) {
		fprintf(stderr, "rehydra %s: %s\n", cmd, rh_error_last());
		goto done;
	}
record:
	pthread_kill(sig_tid, SIGUSR1);
	pthread_join(sig_tid, NULL);
	sig_started = false;

	snprintf(record_path, sizeof(record_path), "%s/record.json", drill.dir);
	if (rh_record_build(&record, &drill) < 0 ||
	    json_object_set_new(record, "scenario",
				scenario ? json_string(scenario) : json_null()) < 0 ||
	    (req->rehearsal &&
	     json_object_set_new(record, "rehearsal", json_deep_copy(req->rehearsal)) < 0)) {
		fprintf(stderr, "rehydra %s: cannot build the drill record: %s\n", cmd,
			rh_error_last());
		rc = RH_EXIT_FAILED;
		goto done;
	}
	/* A record file that cannot be written does not keep the drill out
	 * of the journal: it happened. */
	record_ok = rh_record_write(&drill, record) == 0;
	if (!record_ok)
		fprintf(stderr, "rehydra %s: cannot write the drill record %s: %s\n", cmd,
			record_path, rh_error_last());
	if (!ui.quiet)
		print_summary(&ui, &drill, record_ok ? record_path : NULL);
	print_teardown_alarm(&ui, &drill);
	rc = rh_drill_exit_code(&drill);
	if (!journal_and_metrics(state_dir, record, prom_file, &ui, cmd) || !record_ok)
		rc = RH_EXIT_FAILED;
	if (json_out) {
		json_dumpf(record, stdout, RH_RECORD_JSON_FLAGS);
		fputc('\n', stdout);
		fflush(stdout);
	}
done:
	if (sig_started) {
		pthread_kill(sig_tid, SIGUSR1);
		pthread_join(sig_tid, NULL);
	}
	if (intent) {
		rh_spawn_watch_set(NULL, NULL, NULL);
		if (drill.provider)
			drill.provider->note_resource = NULL;
		/* A step thread given up on may still hold a process: then the
		 * intent stays, and the next command stops what it names (the
		 * drill is journaled already, so it is not journaled again). */
		if (drill.n_abandoned > 0)
			rh_intent_free(intent);
		else if (rh_intent_finish(intent) < 0)
			fprintf(stderr, "rehydra %s: %s\n", cmd, rh_error_last());
		intent = NULL;
	}
	/* --preflight-only leaves no drill behind (its terraform init dir too) */
	if (drill_ready && preflight_only && drill.dir)
		rh_fs_rm_rf(drill.dir);
	json_decref(checks);
	json_decref(record);
	if (drill_ready && drill.n_abandoned > 0) {
		/* A step thread the engine gave up on may still be inside a
		 * library call using the drill, the runbook and the libraries'
		 * global state: free nothing and leave without running exit
		 * handlers under it. The record and journal are written. */
		fflush(stdout);
		fflush(stderr);
		_exit(rc);
	}
	if (drill_ready)
		rh_drill_release(&drill);
	rh_runbook_free(rb);
	free(state_dir);
	return rc;
}

static int cmd_drill_run(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	const char *var_items[RH_CLI_MAX_VARS];
	struct rh_opt_list vars = RH_OPT_LIST_INIT(var_items);
	struct rh_var_override overrides[RH_CLI_MAX_VARS];
	struct rh_cli_drill_req req = {.cmd = "drill"};
	const char *target_arg = NULL;
	json_t *target = NULL;
	int rc;
	const struct rh_option options[] = {
	    RH_CLI_OPT_VAR(&vars),
	    RH_OPT_STRING(0, "state-dir", &req.state_dir, "DIR",
			  "where drills are recorded (default $XDG_STATE_HOME/rehydra or "
			  "~/.local/state/rehydra)"),
	    RH_OPT_STRING(0, "scenario", &req.scenario, "NAME",
			  "record the drill as a rehearsal of scenario NAME (e.g. \"H20 "
			  "unavailable in CN\"); reports group by it"),
	    RH_OPT_STRING(0, "prom-file", &req.prom_file, "FILE",
			  "write Prometheus metrics (textfile format) of the latest drill per "
			  "runbook, target and scenario to FILE"),
	    RH_OPT_STRING(0, "target", &target_arg, "P[:R]",
			  "run on provider P (and region R) instead of the runbook's target; "
			  "target keys P does not know are dropped (as for render)"),
	    RH_OPT_BOOL(0, "preflight-only", &req.preflight_only,
			"run the pre-flight checks (and terraform plan for a cloud target) and "
			"stop: nothing is created or journaled"),
	    RH_OPT_BOOL(0, "json", &req.json_out,
			"print the drill record on stdout (the timeline goes to stderr)"),
	    RH_OPT_BOOL('q', "quiet", &req.quiet, "no timeline or summary"),
	    RH_OPT_BOOL(0, "no-color", &req.no_color,
			"no colour even on a terminal (NO_COLOR is honoured too)"),
	    RH_OPT_END(),
	};
	int n;

	n = rh_parse_options(ctx, argc, argv, options);
	if (n < 0)
		return rh_parse_exit(n);
	if (n == 0)
		return rh_cli_usage_error(ctx, "no runbook given");
	if (n > 1)
		return rh_cli_usage_error(ctx, "one runbook at a time");
	if (req.scenario && !scenario_ok(req.scenario))
		return rh_cli_usage_error(ctx, "--scenario needs a name: 1 to 128 printable "
					       "characters");
	req.file = argv[0];
	rh_cli_vars(&vars, overrides);
	req.overrides = overrides;
	req.n_overrides = vars.n;
	if (target_arg) {
		/* The file's own target is the base; a file that does not load
		 * is reported by the drill's validation as usual. */
		json_t *doc = json_load_file(req.file, 0, NULL);

		rc = rh_cli_target_switch(&target, ctx, target_arg, json_object_get(doc, "target"));
		json_decref(doc);
		if (rc != 0)
			return rc;
		req.target = target;
	}
	rc = rh_cli_drill_execute(&req);
	json_decref(target);
	return rc;
}

const struct rh_cmd rh_cmd_drill = {
    .name = "drill",
    .summary = "Run a DR drill from a runbook and measure the achieved RTO",
    .args = "RUNBOOK",
    .description =
	"Validates the runbook (nothing is created when it is invalid), declares the\n"
	"primary lost (T0), runs the steps as a dependency graph with independent steps\n"
	"in parallel, and measures the RTO: T0 to the first successful step marked\n"
	"restores_service. Teardown steps (when: always) run after success, failure or\n"
	"an interrupt. The drill record (JSON) is written to\n"
	"STATE_DIR/drills/<drill id>/record.json, step logs beside it in steps/, and\n"
	"appended to the audit journal STATE_DIR/journal/journal.jsonl (see 'rehydra\n"
	"audit').\n\n"
	"Before T0 a pre-flight checks, creating nothing, that the registry opens, the\n"
	"model version's tag and manifest verify, its LFS objects are at hand, the\n"
	"variables env_allow names are set, terraform init works, ssh hosts answer with\n"
	"a known key and a free lock, and exec programs exist. A failure exits 2 and\n"
	"journals the drill as 'aborted' (reports keep those out of pass rates).\n"
	"\n"
	"Before it starts anything the drill writes STATE_DIR/intents/<drill id>.json\n"
	"naming its process groups and workspace; if rehydra is killed, the next\n"
	"command on that state directory stops them, removes the workspace and journals\n"
	"the drill as 'abandoned'.\n",
    .epilogue = "exit status: 0 restored within the RTO target, 1 restored but target missed,\n"
		"2 bad input or failed pre-flight (nothing created), 3 not restored or not\n"
		"journaled, 4 teardown incomplete: resources may remain (whatever the verdict),\n"
		"130 interrupted (teardown ran)\n",
    .run = cmd_drill_run,
};
