/*
 * cmd_validate.c - `rehydra validate RUNBOOK...`: check runbooks without
 * running or creating anything, printing every problem with its position.
 */
#include "cli.h"
#include "error.h"
#include "runbook.h"

#include <stdio.h>
#include <string.h>

#include "banned.h"

static int cmd_validate_run(int argc, char **argv)
{
	int rc = RH_EXIT_MET;
	int nfiles = 0;
	bool quiet = false;

	for (int i = 1; i < argc; i++) {
		struct rh_runbook *rb = NULL;

		if (strcmp(argv[i], "-q") == 0 || strcmp(argv[i], "--quiet") == 0) {
			quiet = true;
			continue;
		}
		if (argv[i][0] == '-' && argv[i][1])
			return rh_cli_usage_error(&rh_cmd_validate, "unknown option '%s'", argv[i]);
		nfiles++;
		if (rh_cli_load_runbook(&rb, argv[i], NULL, 0)) {
			rc = RH_EXIT_USAGE;
		} else if (!quiet) {
			printf("%s: ok (%zu step%s)\n", argv[i], rb->n_steps,
			       rb->n_steps == 1 ? "" : "s");
		}
		rh_runbook_free(rb);
	}
	if (nfiles == 0)
		return rh_cli_usage_error(&rh_cmd_validate, "no runbook given");
	return rc;
}

const struct rh_command rh_cmd_validate = {
	.name = "validate",
	.summary = "Check runbooks and print every problem with its file:line:column",
	.usage = "usage: rehydra validate [-q] RUNBOOK...\n\n"
		 "Parses and validates each runbook completely (structure, types, unknown keys,\n"
		 "step ids and dependencies, cycles, ${...} references) without running or\n"
		 "creating anything. Problems are printed to stderr as\n"
		 "  FILE:LINE:COLUMN: error: MESSAGE\n\n"
		 "  -q, --quiet   print nothing for valid runbooks\n\n"
		 "exit status: 0 all valid, 2 any invalid or unreadable\n",
	.run = cmd_validate_run,
};
