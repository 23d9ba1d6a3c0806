/*
 * cmd_rehearse.c - `rehydra rehearse SCENARIO...`: an export-control
 * contingency rehearsal. Judges every candidate target against the
 * scenario's rules, chooses one, and runs the scenario's runbook there as
 * a drill whose record and journal entry carry the decision.
 *
 * `--plan` stops after the decision and shows it (exit 0 chosen, 3 none
 * lawful and available, 2 bad input); `--due DIR` rehearses only the
 * scenarios in DIR whose last success is older than their cadence, so one
 * timer or CI job can drive them all. The decision is made twice for a run:
 * the model manifest's export fields are read from the registry before T0,
 * so a model-export rule that --plan could only note is enforced.
 */
#include "cadence.h"
#include "cli.h"
#include "error.h"
#include "interp.h"
#include "journal.h"
#include "plan.h"
#include "policy.h"
#include "registry.h"
#include "runbook.h"
#include "scenario.h"
#include "steps.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "banned.h"

#define MAX_SCENARIOS 256

struct reh_opts {
	const char *files[MAX_SCENARIOS];
	size_t n_files;
	struct rh_var_override overrides[RH_CLI_MAX_VARS];
	size_t n_overrides;
	const struct rh_cmd_ctx *ctx;
	const char *due_dir;
	const char *state_dir;
	const char *prom_file;
	bool plan, json, all, quiet, no_color;
};

int rh_cli_load_scenario(struct rh_scenario **out, const char *file, const struct rh_policy *p)
{
	struct rh_diags diags = RH_DIAGS_INIT;
	int rc = 0;

	if (rh_scenario_load(out, file, p, &diags) < 0) {
		if (diags.count)
			rh_cli_print_diags(stderr, file, &diags);
		else
			fprintf(stderr, "%s: error: %s\n", file, rh_error_last());
		rc = RH_EXIT_USAGE;
	}
	rh_diags_clear(&diags);
	return rc;
}

int rh_cli_load_policy(struct rh_policy **out, const char *cmd)
{
	if (rh_policy_load(out, NULL) < 0) {
		fprintf(stderr, "rehydra %s: cannot load the policy rules: %s\n", cmd,
			rh_error_last());
		return RH_EXIT_USAGE;
	}
	return 0;
}

/* The scenario files (*.json) in `dir`, sorted; *out new (free each). */
int rh_cli_scenario_files(char ***out, size_t *n, const char *dir)
{
	DIR *dh = opendir(dir);
	struct dirent *de;
	char **v = NULL;
	size_t cap = 0;

	*out = NULL;
	*n = 0;
	if (!dh) {
		fprintf(stderr, "rehydra: cannot read the scenario directory %s\n", dir);
		return RH_EXIT_USAGE;
	}
	while ((de = readdir(dh)) != NULL) {
		size_t len = strlen(de->d_name);
		char path[4200];

		if (de->d_name[0] == '.' || len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		if (*n == cap) {
			char **nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));

			if (!nv)
				break;
			v = nv;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		v[(*n)++] = strdup(path);
	}
	closedir(dh);
	for (size_t i = 1; i < *n; i++)
		for (size_t k = i; k > 0 && strcmp(v[k - 1], v[k]) > 0; k--) {
			char *t = v[k];

			v[k] = v[k - 1];
			v[k - 1] = t;
		}
	*out = v;
	return 0;
}

int rh_cli_cadence(json_t **out, const char *dir, struct rh_journal *j, const struct rh_policy *p,
		   time_t now, char ***files_out, size_t *n_out)
{
	json_t *list = json_array();
	char **files = NULL;
	size_t n = 0, i;
	int rc;

	*out = NULL;
	rc = rh_cli_scenario_files(&files, &n, dir);
	if (rc)
		goto done;
	for (i = 0; i < n; i++) {
		struct rh_scenario *s = NULL;
		size_t k;
		json_t *seen;

		rc = rh_cli_load_scenario(&s, files[i], p);
		if (rc)
			goto done;
		/* the journal knows scenarios by name: two files, one name, one history */
		json_array_foreach(list, k, seen)
		{
			if (strcmp(json_string_value(json_object_get(seen, "scenario")), s->name) ==
			    0) {
				fprintf(stderr,
					"rehydra: %s and %s are both scenario '%s': give each "
					"scenario its own name\n",
					json_string_value(json_object_get(seen, "file")), files[i],
					s->name);
				rh_scenario_free(s);
				rc = RH_EXIT_USAGE;
				goto done;
			}
		}
		json_array_append_new(
		    list,
		    json_pack("{s:s,s:s,s:o}", "scenario", s->name, "file", files[i],
			      "cadence_days",
			      s->cadence_days > 0 ? json_real(s->cadence_days) : json_null()));
		rh_scenario_free(s);
	}
	if (rh_cadence_compute(out, list, j, now) < 0) {
		fprintf(stderr, "rehydra: cannot read the journal: %s\n", rh_error_last());
		rc = RH_EXIT_FAILED;
	}
done:
	if (files_out && rc == 0) {
		*files_out = files;
		*n_out = n;
	} else {
		for (i = 0; i < n; i++)
			free(files[i]);
		free(files);
	}
	json_decref(list);
	return rc;
}

/* The model's export fields. With `cache` NULL only a registry on this
 * machine is read (a --plan stays offline); *why says why none. */
json_t *rh_cli_model_export(const struct rh_runbook *rb, const char *cache, char *why, size_t size)
{
	struct rh_registry *reg = NULL;
	struct rh_model_version *v = NULL;
	struct rh_registry_opts ro = RH_REGISTRY_OPTS_INIT;
	json_t *scope = NULL, *ex = NULL;
	char *url = NULL;

	why[0] = '\0';
	if (!rb->model.present) {
		snprintf(why, size, "the runbook names no model");
		goto done;
	}
	if (rh_plan_static_scope(&scope, rb) < 0 ||
	    rh_runbook_registry_resolve(&url, rb, scope) < 0) {
		snprintf(why, size, "cannot resolve model.registry: %s", rh_error_last());
		goto done;
	}
	if (!cache && strstr(url, "://")) {
		snprintf(why, size,
			 "--plan does not fetch the remote registry; the rehearsal "
			 "reads the manifest before T0 and enforces the rule then");
		goto done;
	}
	ro.fetch_timeout_s = 120;
	if (rh_registry_open_opts(&reg, url, cache, &ro) < 0 ||
	    rh_registry_resolve(&v, reg, rb->model.name, rb->model.version, rb->model.commit) < 0) {
		snprintf(why, size, "cannot read the manifest of %s@%s: %s", rb->model.name,
			 rb->model.version, rh_error_last());
		goto done;
	}
	ex = json_object_get(v->manifest, "export");
	if (ex)
		json_incref(ex);
	else
		snprintf(why, size, "the manifest of %s@%s has no \"export\" fields",
			 rb->model.name, rb->model.version);
	if (!ex)
		ex = json_object(); /* judged: no jurisdictions -> denied with that reason */
done:
	rh_model_version_free(v);
	rh_registry_free(reg);
	json_decref(scope);
	free(url);
	return ex;
}

static const char *jstr(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

static void print_target(FILE *f, const json_t *t)
{
	fprintf(f, "%s %s %s", jstr(t, "provider"), jstr(t, "region"),
		json_object_get(t, "accelerator") ? jstr(t, "accelerator") : "-");
	if (json_object_get(t, "host"))
		fprintf(f, " (host %s)", jstr(t, "host"));
}

static bool not_offered(const json_t *c)
{
	size_t i;
	json_t *r;

	json_array_foreach(json_object_get(c, "reasons"), i,
			   r) if (strcmp(jstr(r, "rule"), "not-offered") == 0) return true;
	return false;
}

/* A note every candidate carries (model-export not checked): said once. */
static bool common_note(const json_t *cands, const json_t *r)
{
	size_t i, k;
	json_t *c, *x;

	if (strcmp(jstr(r, "effect"), "note") != 0)
		return false;
	json_array_foreach(cands, i, c)
	{
		bool has = false;

		json_array_foreach(json_object_get(c, "reasons"), k, x) has =
		    has || (strcmp(jstr(x, "rule"), jstr(r, "rule")) == 0 &&
			    strcmp(jstr(x, "message"), jstr(r, "message")) == 0);
		if (!has)
			return false;
	}
	return true;
}

static bool is_policy_rule(const char *id)
{
	static const char *const not_rules[] = {
	    "lost", "not-offered", "constraints", "unknown-jurisdiction", "catalog", NULL};

	for (size_t i = 0; not_rules[i]; i++)
		if (strcmp(id, not_rules[i]) == 0)
			return false;
	return true;
}

static void print_decision(const struct rh_scenario *s, const json_t *dec, bool all)
{
	const json_t *cands = json_object_get(dec, "candidates");
	size_t i, n_allowed = 0, n_hidden = 0;
	json_t *c, *x;

	printf("scenario %s", s->name);
	if (s->description)
		printf(": %s", s->description);
	printf("\n  file     %s\n", s->path);
	if (s->entity_hq)
		printf("  entity   %s, headquartered in %s\n",
		       s->entity_name ? s->entity_name : "(unnamed)", s->entity_hq);
	if (s->lost) {
		printf("  lost    ");
		json_array_foreach(s->lost, i, c)
		{
			const char *k;

			printf("%s", i ? ";" : "");
			json_object_foreach(c, k, x) printf(" %s %s", k, json_string_value(x));
		}
		printf("\n");
	}
	printf("  rules   ");
	json_array_foreach(json_object_get(json_object_get(dec, "policy"), "rules"), i, c)
	    printf("%s %s (from %s)", i ? "," : "", jstr(c, "id"), jstr(c, "effective_from"));
	printf("%s\n  dates   ", i ? "" : " none");
	json_array_foreach(json_object_get(json_object_get(dec, "policy"), "files"), i, c)
	    printf(" %s %s,", jstr(c, "file"), jstr(c, "as_of"));
	json_array_foreach(json_object_get(dec, "catalog"), i, c) if (json_object_get(c, "as_of"))
	    printf(" catalog/%s.json %s,", jstr(c, "provider"), jstr(c, "as_of"));
	printf(" judged on %s\n", jstr(dec, "today"));
	json_array_foreach(cands, i, c) n_allowed += json_is_true(json_object_get(c, "allowed"));
	json_array_foreach(json_object_get(json_array_get(cands, 0), "reasons"), i,
			   x) if (common_note(cands, x))
	    printf("  note     %s: %s\n", jstr(x, "rule"), jstr(x, "message"));
	printf("  candidates: %zu judged, %zu allowed\n", json_array_size(cands), n_allowed);
	json_array_foreach(cands, i, c)
	{
		bool ok = json_is_true(json_object_get(c, "allowed"));
		size_t k;
		json_t *r;

		if (!all && !ok && not_offered(c)) {
			n_hidden++;
			continue;
		}
		printf("    %-8s ", ok ? "allowed" : "denied");
		print_target(stdout, c);
		printf("  [%s%s%s]\n",
		       json_is_string(json_object_get(c, "country")) ? jstr(c, "country") : "?",
		       "/", json_is_string(json_object_get(c, "bloc")) ? jstr(c, "bloc") : "?");
		json_array_foreach(json_object_get(c, "reasons"), k, r)
		{
			if (common_note(cands, r))
				continue;
			printf("             %s %s%s%s\n",
			       strcmp(jstr(r, "effect"), "deny") == 0 ? "-" : "~",
			       is_policy_rule(jstr(r, "rule")) ? jstr(r, "rule") : "",
			       is_policy_rule(jstr(r, "rule")) ? ": " : "", jstr(r, "message"));
		}
	}
	if (n_hidden)
		printf("    (%zu more denied because the catalogs do not offer them there: --all "
		       "lists them)\n",
		       n_hidden);
	printf("  chosen   ");
	if (json_is_object(json_object_get(dec, "chosen")))
		print_target(stdout, json_object_get(dec, "chosen"));
	else
		printf("none: no candidate is both lawful under these rules and available; the "
		       "contingency cannot be met as written");
	printf("\n");
}

static void print_runbook_plan(const struct rh_runbook *rb, const json_t *dropped)
{
	struct rh_plan_path path = {0};

	printf("  runbook  %s on %s:%s", rb->name, jstr(rb->target, "provider"),
	       jstr(rb->target, "region"));
	if (json_object_get(rb->target, "accelerator"))
		printf(" (%s)", jstr(rb->target, "accelerator"));
	if (rb->rto_target_s > 0)
		printf(", rto target %g s", rb->rto_target_s);
	printf("\n");
	if (json_array_size(dropped)) {
		size_t i;
		json_t *x;

		printf("           target keys the runbook's provider took and this one does "
		       "not, left out:");
		json_array_foreach(dropped, i, x) printf(" %s", json_string_value(x));
		printf("\n");
	}
	for (size_t k = 0; k < rb->n_steps; k++) {
		const struct rh_step *st = &rb->steps[rb->order[k]];

		printf("    %-16s %-15s timeout %gs%s%s\n", st->id, st->type->name, st->timeout_s,
		       st->when != RH_WHEN_ON_SUCCESS ? ", when " : "",
		       st->when != RH_WHEN_ON_SUCCESS ? rh_when_name(st->when) : "");
	}
	if (rh_plan_critical_path(&path, rb) == 0) {
		printf("  critical path ");
		for (size_t i = 0; i < path.n; i++)
			printf("%s%s", i ? " -> " : "", rb->steps[path.steps[i]].id);
		printf(", worst case %g s\n", path.worst_s);
		rh_plan_path_release(&path);
	}
}

/* Loads the runbook on the chosen target (prints the problems). */
static int load_on_target(struct rh_runbook **rb, json_t **target, json_t **dropped,
			  const struct reh_opts *o, const struct rh_scenario *s,
			  const json_t *chosen)
{
	struct rh_runbook *orig = NULL;
	struct rh_runbook_opts lo = RH_RUNBOOK_OPTS_INIT;
	int rc;

	*rb = NULL;
	*target = NULL;
	*dropped = NULL;
	rc = rh_cli_load_runbook(&orig, s->runbook, o->overrides, o->n_overrides);
	if (rc)
		return rc;
	if (!chosen) {
		*rb = orig;
		return 0;
	}
	if (rh_scenario_target(target, dropped, s, orig->target, chosen) < 0) {
		fprintf(stderr, "rehydra rehearse: %s: %s\n", s->path, rh_error_last());
		rh_runbook_free(orig);
		return RH_EXIT_USAGE;
	}
	rh_runbook_free(orig);
	lo.overrides = o->overrides;
	lo.n_overrides = o->n_overrides;
	lo.target = *target;
	lo.rto_target_s = s->rto_target_s;
	rc = rh_cli_load_runbook_opts(rb, s->runbook, &lo);
	if (rc)
		fprintf(stderr,
			"rehydra rehearse: %s: the runbook does not validate on the chosen "
			"target (see above): add the missing keys under \"targets\": {\"%s\": "
			"{...}} in the scenario\n",
			s->path, jstr(chosen, "provider"));
	return rc;
}

/* The decision in the shape the issue fixes, plus detail; NULL chosen. */
static int plan_one(const struct reh_opts *o, const struct rh_policy *p, const char *file,
		    json_t *json_all)
{
	struct rh_scenario *s = NULL;
	struct rh_runbook *rb = NULL;
	json_t *dec = NULL, *ex = NULL, *target = NULL, *dropped = NULL;
	char why[1024] = "";
	int rc;

	rc = rh_cli_load_scenario(&s, file, p);
	if (rc)
		goto done;
	rc = rh_cli_load_runbook(&rb, s->runbook, o->overrides, o->n_overrides);
	if (rc)
		goto done;
	ex = rh_cli_model_export(rb, NULL, why, sizeof(why));
	if (rh_scenario_decide(&dec, s, p, rb->target, ex, why) < 0) {
		fprintf(stderr, "rehydra rehearse: %s: %s\n", file, rh_error_last());
		rc = RH_EXIT_USAGE;
		goto done;
	}
	rh_runbook_free(rb);
	rb = NULL;
	if (json_is_object(json_object_get(dec, "chosen"))) {
		rc = load_on_target(&rb, &target, &dropped, o, s, json_object_get(dec, "chosen"));
		if (rc)
			goto done;
		if (rb->rto_target_s > 0)
			json_object_set_new(dec, "rto_target_s", json_real(rb->rto_target_s));
	}
	if (o->json) {
		json_array_append(json_all, dec);
	} else {
		print_decision(s, dec, o->all);
		if (rb)
			print_runbook_plan(rb, dropped);
		printf("\n");
	}
	rc = json_is_object(json_object_get(dec, "chosen")) ? RH_EXIT_MET : RH_EXIT_FAILED;
done:
	json_decref(dec);
	json_decref(ex);
	json_decref(target);
	json_decref(dropped);
	rh_runbook_free(rb);
	rh_scenario_free(s);
	return rc;
}

static int run_one(const struct reh_opts *o, const struct rh_policy *p, const char *file,
		   const char *state_dir)
{
	struct rh_scenario *s = NULL;
	struct rh_runbook *rb = NULL;
	struct rh_cli_drill_req req = {.cmd = "rehearse"};
	json_t *dec = NULL, *ex = NULL, *target = NULL, *dropped = NULL, *rec = NULL;
	char why[1024] = "", cache[4200];
	int rc;

	rc = rh_cli_load_scenario(&s, file, p);
	if (rc)
		goto done;
	rc = rh_cli_load_runbook(&rb, s->runbook, o->overrides, o->n_overrides);
	if (rc)
		goto done;
	/* Pre-flight, before T0: the manifest's export fields, if a rule reads them. */
	for (size_t i = 0; s->rules && s->rules[i]; i++) {
		const char *req_kind =
		    json_string_value(json_object_get(rh_policy_rule(p, s->rules[i]), "require"));

		if (req_kind && strcmp(req_kind, "model-export") == 0 && !ex) {
			snprintf(cache, sizeof(cache), "%s/cache", state_dir);
			ex = rh_cli_model_export(rb, cache, why, sizeof(why));
			if (!ex) {
				fprintf(stderr,
					"rehydra rehearse: %s: pre-flight: %s (rule '%s' needs "
					"it; nothing was created)\n",
					file, why, s->rules[i]);
				rc = RH_EXIT_USAGE;
				goto done;
			}
		}
	}
	if (rh_scenario_decide(&dec, s, p, rb->target, ex, why[0] ? why : NULL) < 0) {
		fprintf(stderr, "rehydra rehearse: %s: %s\n", file, rh_error_last());
		rc = RH_EXIT_USAGE;
		goto done;
	}
	rh_runbook_free(rb);
	rb = NULL;
	if (!json_is_object(json_object_get(dec, "chosen"))) {
		if (!o->quiet)
			print_decision(s, dec, false);
		fprintf(stderr,
			"rehydra rehearse: %s: no lawful and available target: the "
			"contingency cannot be met (nothing was run)\n",
			file);
		rc = RH_EXIT_FAILED;
		goto done;
	}
	rc = load_on_target(&rb, &target, &dropped, o, s, json_object_get(dec, "chosen"));
	if (rc)
		goto done;
	rh_runbook_free(rb); /* validated; the drill loads it again the same way */
	rb = NULL;
	if (rh_scenario_decision_record(&rec, dec) < 0) {
		fprintf(stderr, "rehydra rehearse: %s\n", rh_error_last());
		rc = RH_EXIT_FAILED;
		goto done;
	}
	if (!o->quiet) {
		FILE *f = o->json ? stderr : stdout;

		fprintf(f, "rehearsal %s: ", s->name);
		print_target(f, json_object_get(dec, "chosen"));
		fprintf(f,
			" (%zu candidates denied with reasons, %lld allowed; 'rehydra rehearse "
			"%s --plan' shows why)\n",
			json_array_size(json_object_get(rec, "denied")),
			(long long)json_integer_value(json_object_get(rec, "allowed")), file);
		fflush(f);
	}
	req.file = s->runbook;
	req.overrides = o->overrides;
	req.n_overrides = o->n_overrides;
	req.target = target;
	req.rto_target_s = s->rto_target_s;
	req.state_dir = state_dir;
	req.scenario = s->name;
	req.rehearsal = rec;
	req.prom_file = o->prom_file;
	req.json_out = o->json;
	req.quiet = o->quiet;
	req.no_color = o->no_color;
	rc = rh_cli_drill_execute(&req);
done:
	json_decref(rec);
	json_decref(dec);
	json_decref(ex);
	json_decref(target);
	json_decref(dropped);
	rh_runbook_free(rb);
	rh_scenario_free(s);
	return rc;
}

/* Worst exit code first: interrupted, usage, failed, missed, met. */
static int worse(int a, int b)
{
	static const int order[] = {RH_EXIT_INTERRUPTED, RH_EXIT_USAGE,	 4,
				    RH_EXIT_FAILED,	 RH_EXIT_MISSED, RH_EXIT_MET};

	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if (a == order[i] || b == order[i])
			return order[i];
	return a ? a : b;
}

/* The due scenarios of `dir` into o->files (names owned by *keep). */
static int pick_due(struct reh_opts *o, const struct rh_policy *p, const char *state_dir,
		    char ***keep, size_t *n_keep)
{
	struct rh_journal *j = NULL;
	json_t *cad = NULL;
	size_t i;
	json_t *e;
	int rc;

	*keep = NULL;
	*n_keep = 0;
	if (rh_journal_open(&j, state_dir) < 0) {
		fprintf(stderr, "rehydra rehearse: cannot open the journal: %s\n", rh_error_last());
		return RH_EXIT_FAILED;
	}
	rc = rh_cli_cadence(&cad, o->due_dir, j, p, time(NULL), keep, n_keep);
	if (rc)
		goto done;
	json_array_foreach(cad, i, e)
	{
		const char *st = jstr(e, "status");
		bool no_cadence = json_is_null(json_object_get(e, "cadence_days"));

		if (no_cadence || strcmp(st, "ok") == 0) {
			if (!o->quiet)
				printf("rehearse --due: %s is %s, not due\n", jstr(e, "scenario"),
				       no_cadence ? "without cadence_days" : "ok");
			continue;
		}
		if (!o->quiet)
			printf("rehearse --due: %s is %s (last success %s)\n", jstr(e, "scenario"),
			       st,
			       json_is_string(json_object_get(e, "last_success"))
				   ? jstr(e, "last_success")
				   : "never");
		if (o->n_files < MAX_SCENARIOS)
			o->files[o->n_files++] = (*keep)[i];
	}
	fflush(stdout);
done:
	json_decref(cad);
	rh_journal_close(j);
	return rc;
}

static int cmd_rehearse_run(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	struct reh_opts o = {.ctx = ctx};
	const char *var_items[RH_CLI_MAX_VARS];
	struct rh_opt_list vars = RH_OPT_LIST_INIT(var_items);
	const struct rh_option options[] = {
	    RH_OPT_BOOL(
		0, "plan", &o.plan,
		"judge and choose, show the runbook plan on the chosen target, run nothing"),
	    RH_OPT_BOOL(0, "json", &o.json,
			"with --plan: the decision as JSON ({scenario, chosen, candidates: "
			"[{provider, region, accelerator, host?, allowed, reasons: [{rule, "
			"message}]}]}; an array for several scenarios); without: the drill record "
			"on stdout"),
	    RH_OPT_BOOL(0, "all", &o.all,
			"with --plan: list the candidates the catalogs do not offer too"),
	    RH_OPT_STRING(
		0, "due", &o.due_dir, "DIR",
		"rehearse only the scenarios in DIR whose last successful rehearsal (from "
		"the journal) is older than their cadence_days"),
	    RH_CLI_OPT_VAR(&vars),
	    RH_OPT_STRING(0, "state-dir", &o.state_dir, "DIR",
			  "where drills and the journal are (as for 'rehydra drill')"),
	    RH_OPT_STRING(0, "prom-file", &o.prom_file, "FILE",
			  "write Prometheus metrics after the drill"),
	    RH_OPT_BOOL('q', "quiet", &o.quiet, "no timeline or summary"),
	    RH_OPT_BOOL(0, "no-color", &o.no_color, "no colour even on a terminal"),
	    RH_OPT_END(),
	};
	struct rh_policy *p = NULL;
	json_t *json_all = NULL;
	char *state_dir = NULL;
	char **keep = NULL;
	size_t n_keep = 0;
	int rc, n;

	n = rh_parse_options(ctx, argc, argv, options);
	if (n < 0)
		return rh_parse_exit(n);
	if (o.due_dir && n)
		return rh_cli_usage_error(ctx, "--due DIR takes the scenarios from DIR: give no "
					       "SCENARIO files with it");
	if (!o.due_dir && !n)
		return rh_cli_usage_error(ctx, "no scenario given");
	if (n > MAX_SCENARIOS)
		return rh_cli_usage_error(ctx, "more than %d scenarios", MAX_SCENARIOS);
	if (!o.plan && (n > 1 || o.due_dir) && o.json)
		return rh_cli_usage_error(ctx, "--json runs one scenario at a time");
	for (int i = 0; i < n; i++)
		o.files[o.n_files++] = argv[i];
	rh_cli_vars(&vars, o.overrides);
	o.n_overrides = vars.n;
	rc = rh_cli_load_policy(&p, "rehearse");
	if (rc)
		goto done;
	state_dir = rh_cli_state_open(o.state_dir);
	if (!state_dir && (!o.plan || o.due_dir)) {
		rc = rh_cli_usage_error(ctx, "no state directory: set HOME or XDG_STATE_HOME, or "
					     "pass --state-dir");
		goto done;
	}
	if (o.due_dir) {
		rc = pick_due(&o, p, state_dir, &keep, &n_keep);
		if (rc)
			goto done;
		if (o.n_files == 0) {
			if (!o.quiet)
				printf("rehearse --due: nothing is due in %s\n", o.due_dir);
			goto done;
		}
	}
	if (o.plan) {
		json_all = json_array();
		for (size_t i = 0; i < o.n_files; i++) {
			int r = plan_one(&o, p, o.files[i], json_all);

			rc = i == 0 ? r : worse(rc, r);
		}
		if (o.json) {
			int w = rh_cli_print_json(o.n_files == 1 ? json_array_get(json_all, 0)
								 : json_all,
						  JSON_INDENT(2) | JSON_PRESERVE_ORDER);

			if (w && rc != RH_EXIT_USAGE)
				rc = w;
		}
		goto done;
	}
	for (size_t i = 0; i < o.n_files; i++) {
		int r = run_one(&o, p, o.files[i], state_dir);

		rc = i == 0 ? r : worse(rc, r);
		if (r == RH_EXIT_INTERRUPTED)
			break;
	}
done:
	for (size_t i = 0; i < n_keep; i++)
		free(keep[i]);
	free(keep);
	json_decref(json_all);
	free(state_dir);
	rh_policy_free(p);
	return rc;
}

const struct rh_cmd rh_cmd_rehearse = {
    .name = "rehearse",
    .summary = "Rehearse an export-control contingency: pick a lawful target, run the drill",
    .args = "SCENARIO... | --due DIR",
    .description =
	"Judges every candidate target of each scenario (provider x region x accelerator\n"
	"from the catalogs, the hosts of the scenario's inventory, the runbook's own\n"
	"target for a provider without a catalog) against what the scenario loses, its\n"
	"allow-lists and its policy rules (providers/policy), chooses the first allowed\n"
	"one in the scenario's \"prefer\" order, then catalog order, and runs the\n"
	"scenario's runbook there as a drill (the scenario's rto_target_s replaces the\n"
	"runbook's). The drill record and the audit journal get the scenario and the\n"
	"decision: the chosen target, the denied candidates with the rules that denied\n"
	"them, the policy and catalog dates. 'rehydra help scenario' describes the file;\n"
	"the rules are the organisation's policy, not legal advice.\n",
    .epilogue = "exit status: with --plan 0 a target was chosen for every scenario, 3 none is\n"
		"lawful and available for some scenario (a finding: the contingency cannot be\n"
		"met), 2 bad input; otherwise the drill's: 0 restored within the RTO target, 1\n"
		"target missed, 2 bad input or failed pre-flight, 3 not restored or no lawful\n"
		"target, 130 interrupted. With several scenarios, the worst of them\n",
    .run = cmd_rehearse_run,
};
