/*
 * cmd_validate.c - `rehydra validate RUNBOOK...`: check runbooks without
 * running or creating anything, printing every problem with its position.
 *
 * With --json the same result is one JSON document on stdout (for editors
 * and CI annotations) and the exit status does not change: a pipeline can
 * read the problems and still fail on them.
 */
#include "cli.h"
#include "error.h"
#include "runbook.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "banned.h"

/* {"path", "valid", "name", "steps", "diagnostics": [{file, line, column,
 * pointer, message}]} for one file (new, NULL on ENOMEM). */
static json_t *file_json(const char *path, const struct rh_runbook *rb, const struct rh_diags *d,
			 const char *reason)
{
	json_t *diags = json_array();
	json_t *o;

	for (size_t i = 0; diags && i < d->count; i++)
		json_array_append_new(
		    diags, json_pack("{s:s, s:i, s:i, s:s, s:s}", "file", path, "line",
				     d->items[i].line, "column", d->items[i].column, "pointer",
				     d->items[i].pointer ? d->items[i].pointer : "", "message",
				     d->items[i].message));
	if (diags && !rb && d->count == 0)
		json_array_append_new(diags,
				      json_pack("{s:s, s:i, s:i, s:s, s:s}", "file", path, "line",
						0, "column", 0, "pointer", "", "message", reason));
	o = json_pack("{s:s, s:b, s:o, s:o, s:o}", "path", path, "valid", rb != NULL, "name",
		      rb ? json_string(rb->name) : json_null(), "steps",
		      rb ? json_integer((json_int_t)rb->n_steps) : json_null(), "diagnostics",
		      diags ? diags : json_array());
	return o;
}

/* An object with "hosts" and none of a runbook's required keys. */
static bool is_inventory(const char *path)
{
	json_t *doc = json_load_file(path, 0, NULL);
	bool yes = json_is_object(doc) && json_is_array(json_object_get(doc, "hosts")) &&
		   !json_object_get(doc, "rehydra") && !json_object_get(doc, "steps");

	json_decref(doc);
	return yes;
}

static int cmd_validate_run(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	bool quiet = false, as_json = false;
	const struct rh_option options[] = {
	    RH_OPT_BOOL('q', "quiet", &quiet, "print nothing for valid runbooks"),
	    RH_OPT_BOOL(0, "json", &as_json,
			"print the result as JSON on stdout (problems included; README "
			"\"JSON output\"); the exit status is the same"),
	    RH_OPT_END(),
	};
	json_t *files = NULL;
	int rc = RH_EXIT_MET;
	int n;

	n = rh_parse_options(ctx, argc, argv, options);
	if (n < 0)
		return rh_parse_exit(n);
	if (n == 0)
		return rh_cli_usage_error(ctx, "no runbook given");
	if (as_json && !(files = json_array())) {
		fprintf(stderr, "rehydra validate: out of memory\n");
		return RH_EXIT_FAILED;
	}
	for (int i = 0; i < n; i++) {
		struct rh_diags diags = RH_DIAGS_INIT;
		struct rh_runbook *rb = NULL;

		if (!as_json && is_inventory(argv[i])) {
			/* a common slip: the ssh inventory given where a runbook goes */
			fprintf(
			    stderr,
			    "%s: error: this is an ssh inventory (\"hosts\"), not a runbook: "
			    "name it in a runbook's target, \"inventory\": \"%s\", and "
			    "validate the runbook; the drill's pre-flight checks the inventory\n",
			    argv[i], argv[i]);
			rc = RH_EXIT_USAGE;
			continue;
		}
		if (!as_json) {
			if (rh_cli_load_runbook(&rb, argv[i], NULL, 0))
				rc = RH_EXIT_USAGE;
			else if (!quiet)
				printf("%s: ok (%zu step%s)\n", argv[i], rb->n_steps,
				       rb->n_steps == 1 ? "" : "s");
			rh_runbook_free(rb);
			continue;
		}
		if (rh_runbook_load(&rb, argv[i], NULL, 0, &diags) < 0) {
			rc = RH_EXIT_USAGE;
			rb = NULL;
		}
		if (json_array_append_new(files, file_json(argv[i], rb, &diags, rh_error_last())) <
		    0)
			rc = RH_EXIT_FAILED;
		rh_diags_clear(&diags);
		rh_runbook_free(rb);
	}
	if (as_json) {
		json_t *doc =
		    json_pack("{s:b, s:O}", "valid", rc == RH_EXIT_MET, "runbooks", files);
		int prc = rh_cli_print_json(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

		if (prc)
			rc = prc;
		json_decref(doc);
		json_decref(files);
	}
	return rc;
}

const struct rh_cmd rh_cmd_validate = {
    .name = "validate",
    .summary = "Check runbooks and print every problem with its file:line:column",
    .args = "RUNBOOK...",
    .description = "Parses and validates each runbook completely (structure, types, unknown keys,\n"
		   "step ids and dependencies, cycles, ${...} references) without running or\n"
		   "creating anything. Problems are printed to stderr as\n"
		   "  FILE:LINE:COLUMN: error: MESSAGE\n",
    .epilogue = "exit status: 0 all valid, 2 any invalid or unreadable\n",
    .run = cmd_validate_run,
};
