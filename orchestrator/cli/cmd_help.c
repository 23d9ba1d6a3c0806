/*
 * cmd_help.c - `rehydra help [COMMAND | runbook | exit-codes]`.
 *
 * The runbook topic lists step types and providers from their tables, so
 * the help can never drift from what the parser accepts.
 */
#include "cli.h"
#include "provider.h"
#include "runbook.h"
#include "steps.h"

#include <stdio.h>
#include <string.h>

#include "banned.h"

static void help_exit_codes(void)
{
	fputs("exit codes (the same for every command):\n"
	      "  0    service restored within the RTO target (other commands: success)\n"
	      "  1    service restored, but the RTO target was missed\n"
	      "  2    bad input or usage: nothing was run, nothing was created\n"
	      "  3    drill failed: the service was not restored (teardown still ran)\n"
	      "  130  interrupted by SIGINT or SIGTERM (teardown still ran)\n",
	      stdout);
}

static void help_runbook(void)
{
	printf("runbook format %d (JSON); README.md has a full example\n\n", RH_RUNBOOK_FORMAT);
	fputs("top level:\n"
	      "  rehydra         format version, must be 1 (required)\n"
	      "  name            [A-Za-z0-9._-]{1,64} (required)\n"
	      "  description     free text\n"
	      "  rto_target_s    the promised recovery time in seconds\n"
	      "  vars            {NAME: value}; override with --var NAME=VALUE\n"
	      "  env_allow       [NAME, ...] environment variables ${env.NAME} may read\n"
	      "  model           {registry, name, version, commit?}\n"
	      "  target          {provider, region, ...}\n"
	      "  stack           {command: [argv...], env: {...}} what deploy starts\n"
	      "  steps           [step, ...] (required)\n\n"
	      "every step:\n"
	      "  id, do (required); after [ids]; timeout_s (per attempt); retries;\n"
	      "  backoff {initial_s, factor, max_s, jitter}; when on_success|on_failure|always;\n"
	      "  restores_service (its first success ends the RTO clock); description\n\n"
	      "step types (do):\n",
	      stdout);
	for (size_t i = 0; rh_step_types[i]; i++) {
		const struct rh_step_type *t = rh_step_types[i];

		printf("  %-15s %s\n", t->name, t->summary ? t->summary : "");
		if (t->keys && t->keys[0]) {
			printf("  %-15s keys:", "");
			for (size_t k = 0; t->keys[k]; k++)
				printf(" %s", t->keys[k]);
			printf("\n");
		}
	}
	fputs("\nproviders (target.provider):\n", stdout);
	for (size_t i = 0; rh_providers[i]; i++)
		printf("  %-15s %s\n", rh_providers[i]->name,
		       rh_providers[i]->summary ? rh_providers[i]->summary : "");
	fputs("\nvariables: ${target.*} ${model.*} ${vars.*} ${env.NAME} ${steps.ID.outputs.KEY}\n"
	      "  ${runbook.dir|name|path|sha256} ${drill.id|dir} ${rehydra.bindir|version};\n"
	      "  $${ is a literal ${. Values set at run time (target.host, model.sha256, step\n"
	      "  outputs) need the producing step among the using step's dependencies.\n",
	      stdout);
}

static int cmd_help_run(int argc, char **argv)
{
	const struct rh_command *cmd;

	if (argc < 2) {
		fputs("usage: rehydra help [COMMAND | runbook | exit-codes]\n\ncommands:\n", stdout);
		for (size_t i = 0; rh_commands[i]; i++)
			printf("  %-10s %s\n", rh_commands[i]->name, rh_commands[i]->summary);
		return RH_EXIT_MET;
	}
	if (strcmp(argv[1], "runbook") == 0) {
		help_runbook();
		return RH_EXIT_MET;
	}
	if (strcmp(argv[1], "exit-codes") == 0) {
		help_exit_codes();
		return RH_EXIT_MET;
	}
	cmd = rh_command_find(argv[1]);
	if (!cmd)
		return rh_cli_usage_error(&rh_cmd_help,
					  "no help for '%s': try a command name, 'runbook' or "
					  "'exit-codes'",
					  argv[1]);
	fputs(cmd->usage, stdout);
	return RH_EXIT_MET;
}

const struct rh_command rh_cmd_help = {
	.name = "help",
	.summary = "Show help for a command, the runbook format, or the exit codes",
	.usage = "usage: rehydra help [COMMAND | runbook | exit-codes]\n",
	.run = cmd_help_run,
};
