/*
 * cmd_plan.c - `rehydra plan RUNBOOK`: validate, then show what a drill
 * would do, without doing any of it: the step graph by phase, the critical
 * path to the step that restores service with its worst-case time (every
 * attempt running to its timeout, every backoff at its cap), and every
 * ${...} reference with its value or where its value will come from.
 * Environment values are never shown: they may be secrets.
 */
#include "cli.h"
#include "error.h"
#include "interp.h"
#include "plan.h"
#include "runbook.h"
#include "steps.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

static void print_steps(const struct rh_runbook *rb, bool final_phase)
{
	for (size_t k = 0; k < rb->n_steps; k++) {
		const struct rh_step *s = &rb->steps[rb->order[k]];
		bool is_final = s->when != RH_WHEN_ON_SUCCESS;

		if (is_final != final_phase)
			continue;
		printf("  %-16s %-15s", s->id, s->type->name);
		if (s->n_after) {
			printf(" after ");
			for (size_t a = 0; a < s->n_after; a++)
				printf("%s%s", a ? "," : "", rb->steps[s->after[a]].id);
		}
		printf("  timeout %gs", s->timeout_s);
		if (s->retries)
			printf(", %u retr%s", s->retries, s->retries == 1 ? "y" : "ies");
		if (final_phase)
			printf(", when %s", rh_when_name(s->when));
		if (s->restores_service)
			printf("  [restores service]");
		printf("\n");
	}
}

static void print_refs(const struct rh_runbook *rb)
{
	json_t *refs = NULL;
	json_t *scope = NULL;
	const char *ref;
	json_t *why;

	if (rh_plan_collect_refs(&refs, rb) < 0 || rh_plan_static_scope(&scope, rb) < 0) {
		printf("  (cannot list variables: %s)\n", rh_error_last());
		goto done;
	}
	if (json_object_size(refs) == 0)
		printf("  (none)\n");
	json_object_foreach(refs, ref, why)
	{
		json_t *v;

		if (strncmp(ref, "env.", 4) == 0) {
			printf("  ${%s} = (from the environment, not shown)\n", ref);
			continue;
		}
		v = rh_interp_lookup(scope, ref);
		if (v && json_is_string(v)) {
			printf("  ${%s} = %s\n", ref, json_string_value(v));
		} else if (v && (json_is_number(v) || json_is_boolean(v))) {
			char *t = json_dumps(v, JSON_ENCODE_ANY);

			printf("  ${%s} = %s\n", ref, t ? t : "?");
			free(t);
		} else {
			printf("  ${%s} = (%s)\n", ref, json_string_value(why));
		}
	}
done:
	json_decref(refs);
	json_decref(scope);
}

/* The value a ref has before the drill (new), or NULL with *note set to
 * where it will come from (borrowed). Environment values are never read. */
static json_t *ref_value(const json_t *scope, const char *ref, const json_t *why, const char **note)
{
	json_t *v;

	*note = NULL;
	if (strncmp(ref, "env.", 4) == 0) {
		*note = "from the environment, not shown";
		return NULL;
	}
	v = scope ? rh_interp_lookup(scope, ref) : NULL;
	if (v && (json_is_string(v) || json_is_number(v) || json_is_boolean(v)))
		return json_incref(v);
	*note = json_string_value(why);
	return NULL;
}

/* The plan as one JSON document (README "JSON output"); new, NULL on ENOMEM. */
static json_t *plan_json(const struct rh_runbook *rb, const char *file,
			 const struct rh_plan_path *path)
{
	json_t *scope = NULL, *refs = NULL;
	json_t *o, *steps, *crit, *vars, *model = json_null(), *target = json_null();
	const json_t *reg;
	const char *ref;
	json_t *why;

	if (rh_plan_collect_refs(&refs, rb) < 0 || rh_plan_static_scope(&scope, rb) < 0) {
		json_decref(refs);
		json_decref(scope);
		return NULL;
	}
	if (rb->target)
		target =
		    json_pack("{s:O?, s:O?}", "provider", json_object_get(rb->target, "provider"),
			      "region", json_object_get(rb->target, "region"));
	if (rb->model.present) {
		reg = rh_interp_lookup(scope, "model.registry");
		model = json_pack("{s:s, s:s, s:s, s:s?}", "name", rb->model.name, "version",
				  rb->model.version, "registry",
				  json_is_string(reg) ? json_string_value(reg) : rb->model.registry,
				  "commit", rb->model.commit);
	}
	steps = json_array();
	for (size_t k = 0; steps && k < rb->n_steps; k++) {
		const struct rh_step *s = &rb->steps[rb->order[k]];
		json_t *after = json_array();

		for (size_t a = 0; after && a < s->n_after; a++)
			json_array_append_new(after, json_string(rb->steps[s->after[a]].id));
		json_array_append_new(
		    steps, json_pack("{s:s, s:s, s:s, s:o, s:f, s:i, s:s, s:b}", "id", s->id, "do",
				     s->type->name, "phase",
				     s->when == RH_WHEN_ON_SUCCESS ? "main" : "final", "after",
				     after ? after : json_array(), "timeout_s", s->timeout_s,
				     "retries", (int)s->retries, "when", rh_when_name(s->when),
				     "restores_service", s->restores_service));
	}
	crit = json_array();
	for (size_t i = 0; crit && i < path->n; i++)
		json_array_append_new(crit, json_string(rb->steps[path->steps[i]].id));
	vars = json_array();
	json_object_foreach(refs, ref, why)
	{
		const char *note;
		json_t *v = ref_value(scope, ref, why, &note);

		json_array_append_new(vars, json_pack("{s:s, s:o, s:s?}", "ref", ref, "value",
						      v ? v : json_null(), "note", note));
	}
	o = json_pack("{s:{s:s, s:s, s:s, s:s}, s:o, s:o, s:o, s:o, s:{s:s, s:o, s:f, s:b}, s:o}",
		      "runbook", "name", rb->name, "path", file, "sha256", rb->sha256,
		      "description", rb->description, "target", target ? target : json_null(),
		      "model", model ? model : json_null(), "rto_target_s",
		      rb->rto_target_s > 0 ? json_real(rb->rto_target_s) : json_null(), "steps",
		      steps ? steps : json_array(), "critical_path", "to",
		      rb->steps[path->steps[path->n - 1]].id, "steps", crit ? crit : json_array(),
		      "worst_case_s", path->worst_s, "exceeds_target",
		      rb->rto_target_s > 0 && path->worst_s > rb->rto_target_s, "variables",
		      vars ? vars : json_array());
	json_decref(refs);
	json_decref(scope);
	return o;
}

static int cmd_plan_run(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	const char *var_items[RH_CLI_MAX_VARS];
	struct rh_opt_list vars = RH_OPT_LIST_INIT(var_items);
	struct rh_var_override overrides[RH_CLI_MAX_VARS];
	bool as_json = false;
	const struct rh_option options[] = {
	    RH_CLI_OPT_VAR(&vars),
	    RH_OPT_BOOL(0, "json", &as_json,
			"print the plan as JSON on stdout (README \"JSON output\")"),
	    RH_OPT_END(),
	};
	struct rh_runbook *rb = NULL;
	struct rh_plan_path path = {0};
	const char *file = NULL;
	int rc = RH_EXIT_MET;
	int n;

	n = rh_parse_options(ctx, argc, argv, options);
	if (n < 0)
		return rh_parse_exit(n);
	if (n == 0)
		return rh_cli_usage_error(ctx, "no runbook given");
	if (n > 1)
		return rh_cli_usage_error(ctx, "one runbook at a time");
	file = argv[0];
	rh_cli_vars(&vars, overrides);

	rc = rh_cli_load_runbook(&rb, file, overrides, vars.n);
	if (rc)
		goto done;
	if (rh_plan_critical_path(&path, rb) < 0) {
		fprintf(stderr, "rehydra plan: %s\n", rh_error_last());
		rc = RH_EXIT_FAILED;
		goto done;
	}
	if (as_json) {
		json_t *doc = plan_json(rb, file, &path);

		if (!doc)
			fprintf(stderr, "rehydra plan: cannot build the JSON plan: %s\n",
				rh_error_last()[0] ? rh_error_last() : "out of memory");
		rc = doc ? rh_cli_print_json(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER)
			 : RH_EXIT_FAILED;
		json_decref(doc);
		goto done;
	}

	printf("runbook  %s (%s, sha256 %.12s)\n", rb->name, file, rb->sha256);
	if (rb->description[0])
		printf("         %s\n", rb->description);
	if (rb->target)
		printf("target   %s:%s\n",
		       json_string_value(json_object_get(rb->target, "provider")),
		       json_is_string(json_object_get(rb->target, "region"))
			   ? json_string_value(json_object_get(rb->target, "region"))
			   : "-");
	if (rb->model.present) {
		json_t *scope = NULL;
		json_t *reg = NULL;

		if (rh_plan_static_scope(&scope, rb) == 0)
			reg = rh_interp_lookup(scope, "model.registry");
		printf("model    %s@%s from %s%s%s\n", rb->model.name, rb->model.version,
		       reg ? json_string_value(reg) : rb->model.registry,
		       rb->model.commit ? " at " : "", rb->model.commit ? rb->model.commit : "");
		json_decref(scope);
	}
	if (rb->rto_target_s > 0)
		printf("rto      target %g s\n", rb->rto_target_s);
	else
		printf("rto      no target set (rto_target_s)\n");

	printf("\nmain phase (in dependency order; independent steps run in parallel)\n");
	print_steps(rb, false);
	printf("\nfinal phase (after the main phase, whatever its outcome)\n");
	print_steps(rb, true);

	printf("\ncritical path to '%s' (worst case: every attempt at its timeout)\n  ",
	       rb->steps[path.steps[path.n - 1]].id);
	for (size_t i = 0; i < path.n; i++)
		printf("%s%s", i ? " -> " : "", rb->steps[path.steps[i]].id);
	printf("\n  worst case %.1f s", path.worst_s);
	if (rb->rto_target_s > 0 && path.worst_s > rb->rto_target_s)
		printf(" (more than the %g s target: a slow drill will miss it)", rb->rto_target_s);
	printf("\n\nvariables\n");
	print_refs(rb);
done:
	rh_plan_path_release(&path);
	rh_runbook_free(rb);
	return rc;
}

const struct rh_cmd rh_cmd_plan = {
    .name = "plan",
    .summary = "Validate a runbook and show its step graph, critical path and variables",
    .args = "RUNBOOK",
    .description =
	"Validates the runbook, then prints the steps by phase in dependency order, the\n"
	"critical path to the step that restores service with its worst-case time, and\n"
	"every ${...} reference with its value or the step that will set it. Runs\n"
	"nothing and creates nothing. Environment values are never printed.\n",
    .epilogue = "exit status: 0 valid, 2 invalid runbook or usage\n",
    .run = cmd_plan_run,
};
