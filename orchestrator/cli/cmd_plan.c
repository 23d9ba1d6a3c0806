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
	json_object_foreach(refs, ref, why) {
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

static int cmd_plan_run(int argc, char **argv)
{
	struct rh_var_override overrides[RH_CLI_MAX_VARS];
	size_t n_overrides = 0;
	struct rh_runbook *rb = NULL;
	struct rh_plan_path path = { 0 };
	const char *file = NULL;
	int rc = RH_EXIT_MET;

	for (int i = 1; i < argc; i++) {
		int took = rh_cli_take_var(&rh_cmd_plan, argc, argv, &i, overrides, &n_overrides);

		if (took < 0)
			return RH_EXIT_USAGE;
		if (took)
			continue;
		if (argv[i][0] == '-' && argv[i][1]) {
			return rh_cli_usage_error(&rh_cmd_plan, "unknown option '%s'", argv[i]);
		} else if (file) {
			return rh_cli_usage_error(&rh_cmd_plan, "one runbook at a time");
		} else {
			file = argv[i];
		}
	}
	if (!file)
		return rh_cli_usage_error(&rh_cmd_plan, "no runbook given");

	rc = rh_cli_load_runbook(&rb, file, overrides, n_overrides);
	if (rc)
		goto done;

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

	if (rh_plan_critical_path(&path, rb) < 0) {
		fprintf(stderr, "rehydra plan: %s\n", rh_error_last());
		rc = RH_EXIT_FAILED;
		goto done;
	}
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

const struct rh_command rh_cmd_plan = {
	.name = "plan",
	.summary = "Validate a runbook and show its step graph, critical path and variables",
	.usage = "usage: rehydra plan [--var NAME=VALUE]... RUNBOOK\n\n"
		 "Validates the runbook, then prints the steps by phase in dependency order, the\n"
		 "critical path to the step that restores service with its worst-case time, and\n"
		 "every ${...} reference with its value or the step that will set it. Runs\n"
		 "nothing and creates nothing. Environment values are never printed.\n\n"
		 "  --var NAME=VALUE   override a runbook var (repeatable)\n\n"
		 "exit status: 0 valid, 2 invalid runbook or usage\n",
	.run = cmd_plan_run,
};
