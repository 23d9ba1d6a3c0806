/*
 * cmd_registry.c - `rehydra registry`: look into a model registry, check
 * it, add versions to it, and copy versions to targets ahead of a drill.
 *
 * Pre-staging is what makes a drill fast: `registry sync` run the day
 * before leaves the target holding the version, and the drill's
 * sync_artifacts then moves only the delta. The subcommands share the
 * registry (--registry, else $REHYDRA_REGISTRY) and the cache
 * (<state dir>/cache). Long transfers show one progress line on a terminal
 * (bytes, rate, ETA) and nothing otherwise; an interrupt cancels cleanly,
 * keeping partial transfers for the next run to resume.
 */
#include "cancel.h"
#include "clock.h"
#include "cli.h"
#include "engine.h"
#include "error.h"
#include "provider.h"
#include "publish.h"
#include "registry.h"
#include "runbook.h"
#include "sink.h"
#include "sync.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

#define MIB (1024.0 * 1024.0)

struct reg_args {
	const struct rh_cmd_ctx *ctx;
	const char *sub;
	const char *registry;
	const char *state_dir;
	const char *to;
	const char *license;
	const char *meta;
	const char *known_hosts;
	const char *identity;
	unsigned parallel;
	bool accept_new_host_key;
	bool json;
	bool quiet;
	const struct rh_opt_list *vars; /* --var (sync --to RUNBOOK) */
	char **pos;			/* positional arguments after the subcommand (argv's) */
	size_t n_pos;
};

/* ---- output ----------------------------------------------------------------- */

static void fmt_bytes(char *out, size_t size, double b)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;

	while (b >= 1024.0 && u < 4) {
		b /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(out, size, "%.0f B", b);
	else
		snprintf(out, size, "%.1f %s", b, unit[u]);
}

struct progress_ui {
	bool on; /* a terminal, not --quiet */
	bool line_open;
	const char *what;
	/* publish: our own rate, over the last second */
	uint64_t done;
	double t_mark;
	uint64_t b_mark;
	double rate;
	double last;
};

static void ui_line(struct progress_ui *ui, uint64_t done, uint64_t total, double rate, double eta)
{
	char d[32], t[32], r[32], e[32] = "";

	fmt_bytes(d, sizeof(d), (double)done);
	fmt_bytes(t, sizeof(t), (double)total);
	fmt_bytes(r, sizeof(r), rate);
	if (eta >= 0 && done < total)
		snprintf(e, sizeof(e), "  eta %.0f s", eta);
	fprintf(stderr, "\r\033[K%s %s / %s (%.0f%%)  %s/s%s", ui->what, d, t,
		total ? 100.0 * (double)done / (double)total : 100.0, r, e);
	fflush(stderr);
	ui->line_open = true;
}

static void ui_end(struct progress_ui *ui)
{
	if (ui->line_open) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
		ui->line_open = false;
	}
}

static void on_sync_progress(void *user, const struct rh_sync_progress *p)
{
	struct progress_ui *ui = user;

	if (ui->on)
		ui_line(ui, p->done, p->total, p->rate, p->eta_s);
}

static void on_publish_progress(void *user, uint64_t delta, uint64_t total)
{
	struct progress_ui *ui = user;
	double now = rh_clock_mono();

	ui->done += delta;
	if (!ui->on)
		return;
	if (ui->t_mark == 0) {
		ui->t_mark = now;
		ui->b_mark = 0;
	}
	if (now - ui->t_mark >= 1.0) {
		ui->rate = (double)(ui->done - ui->b_mark) / (now - ui->t_mark);
		ui->t_mark = now;
		ui->b_mark = ui->done;
	}
	if (now - ui->last < 0.2 && ui->done < total)
		return;
	ui->last = now;
	ui_line(ui, ui->done, total, ui->rate,
		ui->rate > 0 ? (double)(total - ui->done) / ui->rate : -1);
}

/* ---- signals: an interrupt cancels the work, which then ends cleanly ---- */

struct sig_watch {
	sigset_t set;
	sigset_t old;
	struct rh_cancel *cancel;
	pthread_t tid;
	bool running;
	volatile bool fired;
};

static void *sig_thread(void *arg)
{
	struct sig_watch *sw = arg;

	for (;;) {
		int sig;

		if (sigwait(&sw->set, &sig) != 0)
			continue;
		if (sig == SIGUSR1)
			break;
		sw->fired = true;
		rh_cancel_fire(sw->cancel);
	}
	return NULL;
}

static void sig_start(struct sig_watch *sw, struct rh_cancel *cancel)
{
	sigemptyset(&sw->set);
	sigaddset(&sw->set, SIGINT);
	sigaddset(&sw->set, SIGTERM);
	sigaddset(&sw->set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sw->set, &sw->old);
	sw->cancel = cancel;
	sw->running = pthread_create(&sw->tid, NULL, sig_thread, sw) == 0;
}

static void sig_stop(struct sig_watch *sw)
{
	if (sw->running) {
		pthread_kill(sw->tid, SIGUSR1);
		pthread_join(sw->tid, NULL);
		sw->running = false;
	}
}

/* ---- helpers ---------------------------------------------------------------- */

/* Prints the library's message; the exit code is the error's (exit.h):
 * 130 when interrupted, else 3 (a failed transfer, a bad byte). */
static int fail(const char *sub, int err)
{
	fprintf(stderr, "rehydra registry %s: %s\n", sub, rh_error_last());
	return rh_cli_exit_code(err, RH_CLI_RUN);
}

/* The same while opening what the user named: 2 when the registry, the
 * version or the target does not exist or is malformed. */
static int fail_input(const char *sub, int err)
{
	fprintf(stderr, "rehydra registry %s: %s\n", sub, rh_error_last());
	return rh_cli_exit_code(err, RH_CLI_INPUT);
}

/* Splits "NAME@VERSION" in place; *version NULL when there is no '@'. */
static int split_ref(char *ref, char **name, char **version, bool need_version)
{
	char *at = strchr(ref, '@');

	*name = ref;
	*version = NULL;
	if (at) {
		*at = '\0';
		*version = at + 1;
	}
	if (!**name || (at && !**version) || (need_version && !at))
		return -1;
	return 0;
}

/* A registry given as a relative path is made absolute (the library wants
 * absolute paths or URLs). New string. */
static char *registry_url(const struct reg_args *a)
{
	const char *r = a->registry ? a->registry : getenv("REHYDRA_REGISTRY");
	struct stat sb;

	if (!r || !*r)
		return NULL;
	if (r[0] != '/' && !strstr(r, "://") && stat(r, &sb) == 0) {
		char *abs = realpath(r, NULL);

		if (abs)
			return abs;
	}
	return strdup(r);
}

static char *cache_dir(const struct reg_args *a)
{
	char *state = rh_cli_state_open(a->state_dir);
	char *out = NULL;

	if (state && asprintf(&out, "%s/cache", state) < 0)
		out = NULL;
	free(state);
	return out;
}

static int open_registry(struct rh_registry **reg, const struct reg_args *a, const char *sub)
{
	char *url = registry_url(a);
	char *cache = cache_dir(a);
	const char *why = NULL;
	int rc = 0;
	int err;

	if (!url) {
		rc = rh_cli_usage_error(a->ctx,
					"%s: no registry: pass --registry URL or "
					"set REHYDRA_REGISTRY",
					sub);
		goto done;
	}
	err = rh_registry_open(reg, url, cache);
	if (err < 0) {
		rc = fail_input(sub, err);
		goto done;
	}
	if (rh_registry_is_stale(*reg, &why))
		fprintf(stderr,
			"rehydra registry %s: warning: using the cached copy of %s, "
			"which could not be fetched (%s): versions published since are missing\n",
			sub, rh_registry_name(*reg), why ? why : "unknown reason");
done:
	free(url);
	free(cache);
	return rc;
}

/* ---- subcommands -------------------------------------------------------------- */

static int reg_list(struct reg_args *a)
{
	struct rh_registry *reg = NULL;
	json_t *all = NULL;
	const char *name;
	json_t *versions;
	int rc;
	int err;

	if (a->n_pos)
		return rh_cli_usage_error(a->ctx, "list takes no arguments");
	if ((rc = open_registry(&reg, a, "list")) != 0)
		return rc;
	err = rh_registry_list(&all, reg);
	if (err < 0) {
		rc = fail("list", err);
		goto done;
	}
	if (a->json) {
		json_dumpf(all, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
		fputc('\n', stdout);
		goto done;
	}
	if (json_object_size(all) == 0)
		printf("no models (no tags NAME/VERSION)\n");
	json_object_foreach(all, name, versions)
	{
		size_t i;
		json_t *ver;

		printf("%s", name);
		json_array_foreach(versions, i, ver)
		    printf("%s%s", i ? ", " : "  ", json_string_value(ver));
		printf("\n");
	}
done:
	json_decref(all);
	rh_registry_free(reg);
	return rc;
}

static void print_meta(const char *label, json_t *val)
{
	char *text;

	if (!val)
		return;
	text = json_is_string(val) ? strdup(json_string_value(val))
				   : json_dumps(val, JSON_COMPACT | JSON_SORT_KEYS);
	printf("  %-9s %s\n", label, text ? text : "?");
	free(text);
}

static int reg_show(struct reg_args *a)
{
	struct rh_registry *reg = NULL;
	struct rh_model_version *v = NULL;
	json_t *all = NULL, *versions = NULL;
	char *ref = NULL, *name, *version;
	char sz[32];
	int rc = 0;
	int err;

	if (a->n_pos != 1)
		return rh_cli_usage_error(a->ctx, "show takes one NAME[@VERSION]");
	ref = strdup(a->pos[0]);
	if (!ref || split_ref(ref, &name, &version, false) < 0) {
		rc = rh_cli_usage_error(a->ctx,
					"show: expected NAME[@VERSION], got "
					"'%s'",
					a->pos[0]);
		goto done;
	}
	if ((rc = open_registry(&reg, a, "show")) != 0)
		goto done;
	if (!version) {
		/* The newest version (the list is sorted) stands for the model. */
		err = rh_registry_list(&all, reg);
		if (err < 0) {
			rc = fail("show", err);
			goto done;
		}
		versions = json_object_get(all, name);
		if (json_array_size(versions) == 0) {
			rh_error_set(RH_ENOTFOUND,
				     "the registry has no model %s (see 'rehydra "
				     "registry list')",
				     name);
			rc = fail_input("show", RH_ENOTFOUND);
			goto done;
		}
		version = (char *)json_string_value(
		    json_array_get(versions, json_array_size(versions) - 1));
	}
	err = rh_registry_resolve(&v, reg, name, version, NULL);
	if (err < 0) {
		rc = fail_input("show", err);
		goto done;
	}
	if (a->json) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:O}", "name", v->name, "version",
				      v->version, "commit", v->commit, "manifest_sha256",
				      v->manifest_sha256, "total_bytes", (json_int_t)v->total_bytes,
				      "manifest", v->manifest);

		if (o && versions)
			json_object_set(o, "versions", versions);
		if (o)
			json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
		json_decref(o);
		goto done;
	}
	fmt_bytes(sz, sizeof(sz), (double)v->total_bytes);
	printf("%s@%s\n", v->name, v->version);
	if (versions) {
		size_t i;
		json_t *ver;

		printf("  versions ");
		json_array_foreach(versions, i, ver)
		    printf("%s%s", i ? ", " : " ", json_string_value(ver));
		printf("\n");
	}
	printf("  commit    %s\n", v->commit);
	printf("  manifest  sha256 %s\n", v->manifest_sha256);
	print_meta("description", json_object_get(v->manifest, "description"));
	print_meta("license", json_object_get(v->manifest, "license"));
	print_meta("serving", json_object_get(v->manifest, "serving"));
	print_meta("export", json_object_get(v->manifest, "export"));
	printf("  files     %zu, %s\n", v->n_files, sz);
	for (size_t i = 0; i < v->n_files; i++) {
		fmt_bytes(sz, sizeof(sz), (double)v->files[i].size);
		printf("    %12s  %.16s  %s\n", sz, v->files[i].sha256, v->files[i].path);
	}
done:
	rh_model_version_free(v);
	rh_registry_free(reg);
	json_decref(all);
	free(ref);
	return rc;
}

/* Opens the registry and resolves NAME@VERSION (positional argument 0). */
static int open_version(struct rh_registry **reg, struct rh_model_version **v, struct reg_args *a,
			const char *sub)
{
	char *ref = strdup(a->pos[0]);
	char *name, *version;
	int rc = 0;
	int err;

	if (!ref || split_ref(ref, &name, &version, true) < 0) {
		rc = rh_cli_usage_error(a->ctx, "%s: expected NAME@VERSION, got '%s'", sub,
					a->pos[0]);
		goto done;
	}
	if ((rc = open_registry(reg, a, sub)) != 0)
		goto done;
	err = rh_registry_resolve(v, *reg, name, version, NULL);
	if (err < 0)
		rc = fail_input(sub, err);
done:
	free(ref);
	return rc;
}

static int reg_verify(struct reg_args *a)
{
	struct rh_registry *reg = NULL;
	struct rh_model_version *v = NULL;
	struct rh_cancel cancel;
	struct sig_watch sw = {0};
	double t0 = rh_clock_mono();
	size_t bad = 0;
	char sz[32];
	int rc;
	int err;

	if (a->n_pos != 1)
		return rh_cli_usage_error(a->ctx, "verify takes one NAME@VERSION");
	if ((rc = open_version(&reg, &v, a, "verify")) != 0)
		goto done;
	if (rh_cancel_init(&cancel) < 0) {
		rc = fail("verify", RH_ERROR);
		goto done;
	}
	sig_start(&sw, &cancel);
	if (!a->quiet && isatty(STDERR_FILENO)) {
		fprintf(stderr, "verifying %s@%s (%zu files)...", v->name, v->version, v->n_files);
		fflush(stderr);
	}
	err = rh_sync_verify(reg, v, &cancel, &bad);
	if (!a->quiet && isatty(STDERR_FILENO))
		fputs("\r\033[K", stderr);
	sig_stop(&sw);
	rh_cancel_clear(&cancel);
	if (a->json) {
		json_t *o = json_pack(
		    "{s:s, s:s, s:s, s:s, s:I, s:I, s:b, s:I, s:f, s:s?}", "name", v->name,
		    "version", v->version, "commit", v->commit, "manifest_sha256",
		    v->manifest_sha256, "files", (json_int_t)v->n_files, "total_bytes",
		    (json_int_t)v->total_bytes, "ok", err == 0, "bad_files", (json_int_t)bad,
		    "seconds", rh_clock_mono() - t0, "error", err < 0 ? rh_error_last() : NULL);
		int prc = rh_cli_print_json(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		json_decref(o);
		rc = err < 0 ? rh_cli_exit_code(err, RH_CLI_RUN) : prc;
		if (err < 0)
			fprintf(stderr, "rehydra registry verify: %s\n", rh_error_last());
		goto done;
	}
	if (err < 0) {
		rc = fail("verify", err);
		if (bad)
			fprintf(stderr, "rehydra registry verify: %zu of %zu files are bad\n", bad,
				v->n_files);
		goto done;
	}
	fmt_bytes(sz, sizeof(sz), (double)v->total_bytes);
	printf("%s@%s ok: %zu files, %s match the manifest (sha256 %.16s) in %.2f s\n", v->name,
	       v->version, v->n_files, sz, v->manifest_sha256, rh_clock_mono() - t0);
done:
	rh_model_version_free(v);
	rh_registry_free(reg);
	return rc;
}

static int reg_publish(struct reg_args *a)
{
	struct rh_publish_opts po = RH_PUBLISH_OPTS_INIT;
	struct rh_publish_result res;
	struct progress_ui ui = {.what = "publishing"};
	struct rh_cancel cancel;
	struct sig_watch sw = {0};
	json_error_t jerr;
	json_t *meta = NULL;
	char *url = NULL, *ref = NULL, *name, *version;
	char sz[32], st[32];
	int rc = 0;
	int err;

	if (a->n_pos < 2)
		return rh_cli_usage_error(a->ctx, "publish takes NAME@VERSION and at "
						  "least one FILE or DIRECTORY");
	ref = strdup(a->pos[0]);
	if (!ref || split_ref(ref, &name, &version, true) < 0) {
		rc = rh_cli_usage_error(a->ctx,
					"publish: expected NAME@VERSION, got "
					"'%s'",
					a->pos[0]);
		goto done;
	}
	url = registry_url(a);
	if (!url) {
		rc = rh_cli_usage_error(a->ctx, "publish: no registry: pass --registry "
						"PATH or set REHYDRA_REGISTRY");
		goto done;
	}
	if (a->meta) {
		meta = json_load_file(a->meta, JSON_REJECT_DUPLICATES, &jerr);
		if (!meta) {
			fprintf(stderr, "rehydra registry publish: %s:%d:%d: %s\n", a->meta,
				jerr.line, jerr.column, jerr.text);
			rc = RH_EXIT_USAGE;
			goto done;
		}
	}
	if (rh_cancel_init(&cancel) < 0) {
		rc = fail("publish", RH_ERROR);
		goto done;
	}
	po.license = a->license;
	po.meta = meta;
	po.meta_name = a->meta;
	po.cancel = &cancel;
	po.progress = on_publish_progress;
	po.progress_user = &ui;
	ui.on = !a->quiet && isatty(STDERR_FILENO);
	sig_start(&sw, &cancel);
	err = rh_registry_publish(&res, url, name, version, (const char *const *)(a->pos + 1),
				  a->n_pos - 1, &po);
	ui_end(&ui);
	sig_stop(&sw);
	rh_cancel_clear(&cancel);
	if (err < 0) {
		rc = fail_input("publish", err);
		goto done;
	}
	if (a->json) {
		json_t *o =
		    json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:f}", "name", name, "version",
			      version, "commit", res.commit, "manifest_sha256", res.manifest_sha256,
			      "files", (json_int_t)res.files, "bytes", (json_int_t)res.bytes,
			      "bytes_stored", (json_int_t)res.bytes_stored, "seconds", res.seconds);

		rc = rh_cli_print_json(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		json_decref(o);
		goto done;
	}
	fmt_bytes(sz, sizeof(sz), (double)res.bytes);
	fmt_bytes(st, sizeof(st), (double)res.bytes_stored);
	printf("published %s@%s: %zu files, %s (%s new in the LFS store), commit %.12s, "
	       "manifest sha256 %.16s, in %.2f s\n",
	       name, version, res.files, sz, st, res.commit, res.manifest_sha256, res.seconds);
done:
	json_decref(meta);
	free(url);
	free(ref);
	return rc;
}

/* One sync of `v` into `sink`, printed (human) or added to `out` (--json,
 * may be NULL for a single target, then printed alone). `where` names a
 * runbook target's standby (NULL for a sink URL). */
static int sync_one(struct reg_args *a, struct rh_registry *reg, const struct rh_model_version *v,
		    struct rh_sink *sink, const char *where, json_t *out)
{
	struct rh_sync_opts opts = RH_SYNC_OPTS_INIT;
	struct rh_sync_stats st = {0};
	struct progress_ui ui = {.what = "syncing"};
	struct rh_cancel cancel;
	struct sig_watch sw = {0};
	char sent[32], skipped[32], resumed[32];
	int rc = 0;
	int err;

	if (rh_cancel_init(&cancel) < 0)
		return fail("sync", RH_ERROR);
	sink->cancel = &cancel;
	opts.parallel = a->parallel;
	opts.cancel = &cancel;
	opts.progress = on_sync_progress;
	opts.progress_user = &ui;
	ui.on = !a->quiet && isatty(STDERR_FILENO);
	sig_start(&sw, &cancel);
	err = rh_sync_run(reg, v, sink, &opts, &st);
	ui_end(&ui);
	sig_stop(&sw);
	sink->cancel = NULL;
	rh_cancel_clear(&cancel);
	fmt_bytes(sent, sizeof(sent), (double)st.bytes_sent);
	fmt_bytes(skipped, sizeof(skipped), (double)st.bytes_skipped);
	fmt_bytes(resumed, sizeof(resumed), (double)st.bytes_resumed);
	if (err < 0) {
		rc = fail("sync", err);
		/* a wrong byte is not cut off: running again fetches it again */
		if ((st.bytes_sent || st.files_sent) && err != RH_EVERIFY)
			fprintf(stderr,
				"rehydra registry sync: %s sent before it stopped; run "
				"it again to resume\n",
				sent);
		return rc;
	}
	if (a->json) {
		json_t *o = json_pack(
		    "{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f}", "name", v->name,
		    "version", v->version, "target", sink->url, "files", (json_int_t)st.files,
		    "files_sent", (json_int_t)st.files_sent, "files_skipped",
		    (json_int_t)st.files_skipped, "bytes_sent", (json_int_t)st.bytes_sent,
		    "bytes_skipped", (json_int_t)st.bytes_skipped, "bytes_present",
		    (json_int_t)st.bytes_skipped, "bytes_resumed", (json_int_t)st.bytes_resumed,
		    "seconds", st.seconds, "throughput_mib_s", st.throughput_mib_s);

		if (o && where)
			json_object_set_new(
			    o, "standby",
			    json_pack("{s:s, s:s?}", "host", where, "path", sink->location));
		if (out) {
			if (!o || json_array_append_new(out, o) < 0)
				return fail("sync", rh_error_set(RH_ENOMEM, "out of memory"));
			return 0;
		}
		rc = rh_cli_print_json(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		json_decref(o);
		return rc;
	}
	printf("synced %s@%s to %s%s%s%s: %llu files sent, %llu skipped; %s sent, %s skipped, "
	       "%s resumed in %.2f s (%.1f MiB/s)\n",
	       v->name, v->version, where ? "the standby on " : "", where ? where : "",
	       where ? " at " : "", sink->url, (unsigned long long)st.files_sent,
	       (unsigned long long)st.files_skipped, sent, skipped, resumed, st.seconds,
	       st.throughput_mib_s);
	return 0;
}

/* --to RUNBOOK: the runbook's target as a drill would compute it (with
 * --var and --state-dir), pre-staged at every place its adapter may put
 * the drill (one for local, each matching inventory host for ssh). */
static int sync_runbook(struct reg_args *a)
{
	struct rh_var_override ov[RH_CLI_MAX_VARS];
	struct rh_runbook *rb = NULL;
	struct rh_provider_ctx *p = NULL;
	struct rh_provider_call call = RH_PROVIDER_CALL_INIT;
	struct rh_registry *reg = NULL;
	struct rh_model_version *v = NULL;
	json_t *target = NULL, *reg_val = NULL, *reg_exp = NULL, *out = NULL;
	char *state = NULL, *reg_url = NULL;
	int rc;
	int err;

	if (a->known_hosts || a->identity || a->accept_new_host_key)
		return rh_cli_usage_error(a->ctx, "with --to RUNBOOK the host-key and identity "
						  "settings are the runbook target's: set them "
						  "with --var, as for the drill");
	rh_cli_vars(a->vars, ov);
	if ((rc = rh_cli_load_runbook(&rb, a->to, ov, a->vars->n)) != 0)
		return rc;
	if (!rb->provider || rb->provider->version < 4 || !rb->provider->standby_open) {
		fprintf(stderr,
			"rehydra registry sync: runbook %s: provider %s keeps no warm standby; "
			"pass a sink URL to --to (file://, sftp://, s3://) instead\n",
			a->to, rb->provider ? rb->provider->name : "(none)");
		rc = RH_EXIT_USAGE;
		goto done;
	}
	state = a->state_dir ? strdup(a->state_dir) : rh_cli_default_state_dir();
	if (!state) {
		rc = rh_cli_usage_error(a->ctx, "no state directory: set HOME or "
						"XDG_STATE_HOME, or pass --state-dir");
		goto done;
	}
	err = rh_drill_provider_new(&p, rb->provider, rb->target, rb, "prestage", state, NULL);
	if (err == 0)
		err = rh_provider_expand(p, &target, p->target, NULL);
	/* The registry: --registry or $REHYDRA_REGISTRY, else the runbook's. */
	if (err == 0 && !a->registry && !getenv("REHYDRA_REGISTRY") && rb->model.registry) {
		reg_val = json_string(rb->model.registry);
		err = reg_val ? rh_provider_expand(p, &reg_exp, reg_val, NULL)
			      : rh_error_set(RH_ENOMEM, "out of memory");
		if (err == 0) {
			const char *r = json_string_value(reg_exp);

			if (r && r[0] != '/' && !strstr(r, "://")) {
				if (asprintf(&reg_url, "%s/%s", rb->dir, r) < 0)
					reg_url = NULL;
			} else if (r) {
				reg_url = strdup(r);
			}
			if (!reg_url)
				err = rh_error_set(RH_ENOMEM, "out of memory");
			a->registry = reg_url;
		}
	}
	if (err < 0) {
		rc = fail_input("sync", err);
		goto done;
	}
	if ((rc = open_version(&reg, &v, a, "sync")) != 0)
		goto done;
	call.target = target;
	if (a->json && !(out = json_array())) {
		rc = fail("sync", rh_error_set(RH_ENOMEM, "out of memory"));
		goto done;
	}
	for (size_t i = 0;; i++) {
		struct rh_sink *sink = NULL;
		char *where = NULL;

		rh_error_clear();
		err = rb->provider->standby_open(&sink, &where, p, &call, v->name, i);
		if (err == RH_ENOTFOUND && i > 0)
			break;
		if (err < 0) {
			rc = fail_input("sync", err);
			goto done;
		}
		rc = sync_one(a, reg, v, sink, where, out);
		rh_sink_close(sink);
		free(where);
		if (rc != 0)
			goto done;
	}
	if (out) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:O}", "name", v->name, "version",
				      v->version, "runbook", a->to, "standby", out);

		rc = rh_cli_print_json(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		json_decref(o);
	}
done:
	json_decref(out);
	json_decref(target);
	json_decref(reg_val);
	json_decref(reg_exp);
	rh_model_version_free(v);
	rh_registry_free(reg);
	rh_provider_ctx_free(p);
	rh_runbook_free(rb);
	free(state);
	free(reg_url);
	return rc;
}

static int reg_sync(struct reg_args *a)
{
	struct rh_registry *reg = NULL;
	struct rh_model_version *v = NULL;
	struct rh_sink *sink = NULL;
	struct rh_sink_opts so = RH_SINK_OPTS_INIT;
	struct stat sb;
	int rc;
	int err;

	if (a->n_pos != 1)
		return rh_cli_usage_error(a->ctx, "sync takes one NAME@VERSION");
	if (!a->to)
		return rh_cli_usage_error(a->ctx, "sync needs --to TARGET: a runbook (its target's "
						  "warm standby) or a URL (file:///dir, "
						  "sftp://user@host/dir, s3://bucket/prefix)");
	/* A runbook: an existing file, or a name ending in .json (a typo must
	 * not become a new directory); any other path is a directory sink. */
	if (!strstr(a->to, "://") &&
	    ((stat(a->to, &sb) == 0 && S_ISREG(sb.st_mode)) ||
	     (strlen(a->to) > 5 && strcmp(a->to + strlen(a->to) - 5, ".json") == 0))) {
		if (stat(a->to, &sb) != 0 || !S_ISREG(sb.st_mode))
			return rh_cli_usage_error(a->ctx,
						  "--to %s: no such runbook file (a sink is a URL: "
						  "file://, sftp://, s3://, or a directory)",
						  a->to);
		return sync_runbook(a);
	}
	if (a->vars->n)
		return rh_cli_usage_error(a->ctx, "--var needs --to RUNBOOK");
	if ((rc = open_version(&reg, &v, a, "sync")) != 0)
		goto done;
	so.parallel = a->parallel;
	so.known_hosts = a->known_hosts;
	so.accept_new_host_key = a->accept_new_host_key;
	so.identity_file = a->identity;
	err = rh_sink_open(&sink, a->to, &so);
	if (err < 0) {
		rc = fail_input("sync", err);
		goto done;
	}
	rc = sync_one(a, reg, v, sink, NULL, NULL);
done:
	rh_sink_close(sink);
	rh_model_version_free(v);
	rh_registry_free(reg);
	return rc;
}

static int reg_cache(struct reg_args *a)
{
	char *cache = NULL;
	char f[32], k[32];
	uint64_t freed = 0, kept = 0;
	int rc = 0;
	int err;

	if (a->n_pos != 1 || strcmp(a->pos[0], "gc") != 0)
		return rh_cli_usage_error(a->ctx, "cache takes one action: gc");
	cache = cache_dir(a);
	if (!cache)
		return rh_cli_usage_error(a->ctx, "cache gc: no state directory: set "
						  "HOME or XDG_STATE_HOME, or pass --state-dir");
	err = rh_registry_cache_gc(cache, &freed, &kept);
	if (err < 0) {
		rc = fail("cache gc", err);
		goto done;
	}
	if (a->json) {
		json_t *o = json_pack("{s:s, s:I, s:I}", "cache", cache, "freed_bytes",
				      (json_int_t)freed, "kept_bytes", (json_int_t)kept);

		rc = rh_cli_print_json(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		json_decref(o);
		goto done;
	}
	fmt_bytes(f, sizeof(f), (double)freed);
	fmt_bytes(k, sizeof(k), (double)kept);
	printf("cache %s: freed %s, kept %s\n", cache, f, k);
done:
	free(cache);
	return rc;
}

/* unstage --to RUNBOOK: removes the warm standby its target keeps (what
 * `sync --to RUNBOOK` pre-staged and drills kept), through the adapter:
 * the only way a cloud's standby bucket is destroyed. */
static int reg_unstage(struct reg_args *a)
{
	struct rh_var_override ov[RH_CLI_MAX_VARS];
	struct rh_runbook *rb = NULL;
	struct rh_provider_ctx *p = NULL;
	struct rh_provider_call call = RH_PROVIDER_CALL_INIT;
	json_t *target = NULL;
	char *state = NULL, *where = NULL;
	int rc = 0, err;

	if (a->n_pos != 0)
		return rh_cli_usage_error(a->ctx, "unstage takes no NAME: it removes the whole "
						  "standby of --to RUNBOOK's target");
	if (!a->to)
		return rh_cli_usage_error(a->ctx, "unstage needs --to RUNBOOK: the runbook whose "
						  "target's warm standby goes");
	rh_cli_vars(a->vars, ov);
	if ((rc = rh_cli_load_runbook(&rb, a->to, ov, a->vars->n)) != 0)
		return rc;
	if (!rb->provider || rb->provider->version < 5 || !rb->provider->standby_remove) {
		fprintf(stderr,
			"rehydra registry unstage: runbook %s: provider %s cannot remove its "
			"standby; remove WORKDIR/standby on each host by hand\n",
			a->to, rb->provider ? rb->provider->name : "(none)");
		rc = RH_EXIT_USAGE;
		goto done;
	}
	state = a->state_dir ? strdup(a->state_dir) : rh_cli_default_state_dir();
	if (!state) {
		rc = rh_cli_usage_error(a->ctx, "no state directory: set HOME or "
						"XDG_STATE_HOME, or pass --state-dir");
		goto done;
	}
	err = rh_drill_provider_new(&p, rb->provider, rb->target, rb, "unstage", state, NULL);
	if (err == 0)
		err = rh_provider_expand(p, &target, p->target, NULL);
	if (err < 0) {
		rc = fail_input("unstage", err);
		goto done;
	}
	call.target = target;
	rh_error_clear();
	err = rb->provider->standby_remove(p, &call, &where);
	if (err == RH_ENOTFOUND) {
		rc = fail_input("unstage", err);
		goto done;
	}
	if (err < 0) {
		rc = fail("unstage", err);
		goto done;
	}
	if (a->json) {
		json_t *o = json_pack("{s:s, s:s}", "runbook", a->to, "removed", where);

		rc = rh_cli_print_json(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		json_decref(o);
	} else {
		printf("removed the warm standby of %s: %s\n", a->to, where);
	}
done:
	json_decref(target);
	rh_provider_ctx_free(p);
	rh_runbook_free(rb);
	free(state);
	free(where);
	return rc;
}

/* ---- the subcommands' options ------------------------------------------------- */

/* What every registry subcommand takes. */
#define REG_COMMON_OPTIONS(a)                                                                      \
	RH_OPT_STRING(0, "registry", &(a)->registry, "URL",                                        \
		      "the registry (default $REHYDRA_REGISTRY)"),                                 \
	    RH_OPT_STRING(0, "state-dir", &(a)->state_dir, "DIR",                                  \
			  "the cache is DIR/cache (default $XDG_STATE_HOME/rehydra or "            \
			  "~/.local/state/rehydra)"),                                              \
	    RH_OPT_BOOL('q', "quiet", &(a)->quiet, "no progress line"),                            \
	    RH_OPT_BOOL(0, "json", &(a)->json, "print JSON on stdout (README \"JSON output\")")

static int reg_dispatch(const struct rh_cmd_ctx *ctx, int argc, char **argv,
			const struct rh_option *options, struct reg_args *a,
			int (*fn)(struct reg_args *))
{
	int n = rh_parse_options(ctx, argc, argv, options);

	if (n < 0)
		return rh_parse_exit(n);
	a->ctx = ctx;
	a->sub = ctx->cmd->name;
	a->pos = argv;
	a->n_pos = (size_t)n;
	return fn(a);
}

static int cmd_reg_list(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct reg_args a = {0};
	const struct rh_option options[] = {REG_COMMON_OPTIONS(&a), RH_OPT_END()};

	return reg_dispatch(ctx, argc, argv, options, &a, reg_list);
}

static int cmd_reg_show(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct reg_args a = {0};
	const struct rh_option options[] = {REG_COMMON_OPTIONS(&a), RH_OPT_END()};

	return reg_dispatch(ctx, argc, argv, options, &a, reg_show);
}

static int cmd_reg_verify(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct reg_args a = {0};
	const struct rh_option options[] = {REG_COMMON_OPTIONS(&a), RH_OPT_END()};

	return reg_dispatch(ctx, argc, argv, options, &a, reg_verify);
}

static int cmd_reg_publish(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct reg_args a = {0};
	const struct rh_option options[] = {
	    REG_COMMON_OPTIONS(&a),
	    RH_OPT_STRING(0, "license", &a.license, "L", "the license (overrides --meta's)"),
	    RH_OPT_STRING(0, "meta", &a.meta, "FILE",
			  "JSON with license, description, serving, export"),
	    RH_OPT_END(),
	};

	return reg_dispatch(ctx, argc, argv, options, &a, reg_publish);
}

static int cmd_reg_sync(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	const char *var_items[RH_CLI_MAX_VARS];
	struct rh_opt_list vars = RH_OPT_LIST_INIT(var_items);
	struct reg_args a = {.vars = &vars};
	const struct rh_option options[] = {
	    REG_COMMON_OPTIONS(&a),
	    RH_OPT_STRING(0, "to", &a.to, "TARGET",
			  "where to copy: a runbook (the warm standby of its target, as a drill "
			  "computes it: local: STATE_DIR/standby/NAME, ssh: WORKDIR/standby/NAME "
			  "on every matching inventory host, a cloud: NAME/ in the target's "
			  "standby bucket, created on first use), or file:///dir, "
			  "sftp://user@host[:port]/dir, s3://bucket/prefix?endpoint=URL&region=R"),
	    RH_CLI_OPT_VAR(&vars),
	    RH_OPT_UINT(0, "parallel", &a.parallel, "N",
			"files (and connections) in flight, 1 to 64 (default: the target's, 4 "
			"for file, one per core for sftp)",
			1, 64),
	    RH_OPT_GROUP("sftp"),
	    RH_OPT_STRING(0, "known-hosts", &a.known_hosts, "F",
			  "known_hosts file (default ~/.ssh/known_hosts)"),
	    RH_OPT_BOOL(0, "accept-new-host-key", &a.accept_new_host_key,
			"trust and record an unknown host key (never a changed one)"),
	    RH_OPT_STRING(0, "identity", &a.identity, "F",
			  "private key (default: ssh-agent, then ~/.ssh/id_ed25519, "
			  "~/.ssh/id_rsa)"),
	    RH_OPT_END(),
	};

	return reg_dispatch(ctx, argc, argv, options, &a, reg_sync);
}

static int cmd_reg_unstage(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	const char *var_items[RH_CLI_MAX_VARS];
	struct rh_opt_list vars = RH_OPT_LIST_INIT(var_items);
	struct reg_args a = {.vars = &vars};
	const struct rh_option options[] = {
	    REG_COMMON_OPTIONS(&a),
	    RH_OPT_STRING(0, "to", &a.to, "RUNBOOK", "the runbook whose target's standby goes"),
	    RH_CLI_OPT_VAR(&vars),
	    RH_OPT_END(),
	};

	return reg_dispatch(ctx, argc, argv, options, &a, reg_unstage);
}

static int cmd_reg_cache(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct reg_args a = {0};
	const struct rh_option options[] = {REG_COMMON_OPTIONS(&a), RH_OPT_END()};

	return reg_dispatch(ctx, argc, argv, options, &a, reg_cache);
}

static const char reg_epilogue[] =
    "exit status: 0 ok, 2 bad input (arguments, unknown model or version, bad\n"
    "files), 3 failed (a transfer, a bad byte), 130 interrupted (partial transfers\n"
    "are kept and resume on the next run)\n";

static const struct rh_cmd reg_list_cmd = {
    .name = "list",
    .summary = "every model and its versions",
    .epilogue = reg_epilogue,
    .run = cmd_reg_list,
};

static const struct rh_cmd reg_show_cmd = {
    .name = "show",
    .args = "NAME[@VERSION]",
    .summary = "a version's commit, metadata and files (default: the last version)",
    .epilogue = reg_epilogue,
    .run = cmd_reg_show,
};

static const struct rh_cmd reg_verify_cmd = {
    .name = "verify",
    .args = "NAME@VERSION",
    .summary = "read every byte and check it against the manifest",
    .epilogue = reg_epilogue,
    .run = cmd_reg_verify,
};

static const struct rh_cmd reg_publish_cmd = {
    .name = "publish",
    .args = "NAME@VERSION FILE|DIR...",
    .summary = "commit and tag a new version in a local registry, writing LFS pointers and "
	       "objects (a directory adds every file under it)",
    .epilogue = reg_epilogue,
    .run = cmd_reg_publish,
};

static const struct rh_cmd reg_sync_cmd = {
    .name = "sync",
    .args = "NAME@VERSION --to RUNBOOK|URL",
    .summary = "copy a version to a target ahead of a drill; only missing or changed files "
	       "move, cut-off transfers resume",
    .description =
	"Copies a version to a target ahead of a drill; only missing or changed files\n"
	"move, and cut-off transfers resume. With --to RUNBOOK it pre-stages the\n"
	"warm standby of the runbook's target (--var and --state-dir as for the\n"
	"drill; the registry defaults to the runbook's): the drill's sync_artifacts\n"
	"then sends only what changed and links the files into its workspace, and\n"
	"teardown leaves the standby in place. A cloud target's standby is one\n"
	"bucket per target with a Terraform state of its own, created by the first\n"
	"sync (terraform apply) and destroyed only by `registry unstage`. S3\n"
	"credentials come from\n"
	"AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; the region and\n"
	"endpoint from the URL, else AWS_REGION and AWS_ENDPOINT_URL.\n",
    .epilogue = reg_epilogue,
    .run = cmd_reg_sync,
};

static const struct rh_cmd reg_unstage_cmd = {
    .name = "unstage",
    .args = "--to RUNBOOK",
    .summary = "remove the warm standby of a runbook's target (a cloud's standby bucket is "
	       "destroyed only this way)",
    .description = "Removes the warm standby that `registry sync --to RUNBOOK` pre-staged and\n"
		   "drills kept: local: STATE_DIR/standby; aws, alibaba, nebius: destroys the\n"
		   "target's standby bucket with `terraform destroy` in its own working\n"
		   "directory, STATE_DIR/cloud-standby/<key>/ (no drill's teardown touches it).\n"
		   "An ssh target's standby (WORKDIR/standby on each host) is removed by hand.\n",
    .epilogue = reg_epilogue,
    .run = cmd_reg_unstage,
};

static const struct rh_cmd reg_cache_cmd = {
    .name = "cache",
    .args = "gc",
    .summary = "remove cached LFS objects no cached version uses",
    .epilogue = reg_epilogue,
    .run = cmd_reg_cache,
};

static const struct rh_cmd *const reg_subs[] = {
    &reg_list_cmd, &reg_show_cmd,    &reg_verify_cmd, &reg_publish_cmd,
    &reg_sync_cmd, &reg_unstage_cmd, &reg_cache_cmd,  NULL,
};

const struct rh_cmd rh_cmd_registry = {
    .name = "registry",
    .summary = "List, show, verify, publish and sync model versions",
    .description = "A registry is a git repository (a path, file://, ssh:// or https:// URL):\n"
		   "models/NAME/manifest.json lists every file with path, size and sha256, large\n"
		   "files are Git LFS objects, and the tag NAME/VERSION pins a version.\n",
    .epilogue = reg_epilogue,
    .subs = reg_subs,
};
