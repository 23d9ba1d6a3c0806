/*
 * cmd_help.c - `rehydra help [COMMAND | runbook | scenario | exit-codes]`.
 *
 * The runbook topic lists step types and providers from their tables, so
 * the help can never drift from what the parser accepts.
 */
#include "cli.h"
#include "error.h"
#include "policy.h"
#include "scenario.h"
#include "provider.h"
#include "runbook.h"
#include "steps.h"
#include "suggest.h"

#include <stdio.h>
#include <string.h>

#include "banned.h"

static void help_exit_codes(void)
{
	fputs("exit codes (the same for every command):\n"
	      "  0    service restored within the RTO target (other commands: success)\n"
	      "  1    service restored, but the RTO target was missed\n"
	      "  2    bad input, usage, or a failed pre-flight check: nothing was created\n"
	      "       (a drill whose pre-flight failed is journaled as 'aborted')\n"
	      "  3    drill failed: the service was not restored (teardown still ran);\n"
	      "       rehearse: no lawful and available target (the contingency cannot be met)\n"
	      "  4    teardown incomplete: resources may remain, whatever the verdict\n"
	      "  130  interrupted by SIGINT or SIGTERM (teardown still ran)\n",
	      stdout);
}

static void help_runbook(void)
{
	printf("runbook format %d (JSON); README.md has a full example\n\n", RH_RUNBOOK_FORMAT);
	fputs(
	    "top level:\n"
	    "  rehydra         format version, must be 1 (required)\n"
	    "  name            [A-Za-z0-9._-]{1,64} (required)\n"
	    "  description     free text\n"
	    "  rto_target_s    the promised recovery time in seconds\n"
	    "  vars            {NAME: value}; override with --var NAME=VALUE\n"
	    "  env_allow       [NAME, ...] environment variables ${env.NAME} may read\n"
	    "  model           {registry, name, version, commit?}\n"
	    "  target          {provider, region, ...}\n"
	    "  stack           {command: [argv...], env: {...}} what deploy starts\n"
	    "  steps           [step, ...] (required)\n"
	    "  policy          [rule id, ...] rules that judge the target (see 'rehydra help\n"
	    "                  scenario'); validate, plan and drill refuse a denied target\n"
	    "  entity          {name, hq_country} for rules that judge the headquarters\n"
	    "  constraints     {countries, blocs, accelerators, providers} allow-lists\n"
	    "  target.jurisdiction {country, bloc} where the catalog does not say (ssh, local)\n\n"
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

static void help_scenario(void)
{
	struct rh_policy *p = NULL;

	printf("scenario format %d (JSON): an export-control contingency to rehearse with\n"
	       "'rehydra rehearse'; README.md has examples (runbooks/scenarios/)\n\n",
	       RH_SCENARIO_FORMAT);
	fputs("  rehydra_scenario  format version, must be 1 (required)\n"
	      "  name              [A-Za-z0-9._-]{1,64} (required); records and the journal\n"
	      "                    carry it\n"
	      "  description       what happens in this contingency\n"
	      "  runbook           the runbook that recreates the stack, relative to the file\n"
	      "                    (required)\n"
	      "  entity            {name, hq_country}: who is recovering, where headquartered\n"
	      "  lost              [{provider?, region?, accelerator?, country?}, ...]: each\n"
	      "                    entry takes away every candidate matching all its keys\n"
	      "  constraints       allow-lists {countries, blocs, accelerators, providers}; a\n"
	      "                    region passes countries/blocs if it matches either\n"
	      "  policy            [rule id, ...] the rules in force (below)\n"
	      "  prefer            [provider, ...] choice order; then catalog order\n"
	      "  inventory         an ssh inventory whose hosts are candidates too\n"
	      "  targets           {provider: {target keys}} laid over the runbook's target\n"
	      "                    when the chosen provider is not the runbook's\n"
	      "  cadence_days      rehearse at least this often ('rehydra schedule', 'rehearse\n"
	      "                    --due', 'audit cadence')\n"
	      "  rto_target_s      replaces the runbook's RTO target in the rehearsal\n\n"
	      "reasons that are not rules: lost, not-offered, constraints, unknown-jurisdiction\n"
	      "(a candidate whose country is unknown is denied by default)\n\n",
	      stdout);
	if (rh_policy_load(&p, NULL) < 0) {
		printf("policy rules: cannot load them: %s\n", rh_error_last());
		return;
	}
	printf("policy rules (providers/policy; the organisation's policy, not legal advice):\n");
	for (const char *const *id = rh_policy_ids(p); *id; id++) {
		const json_t *r = rh_policy_rule(p, *id);

		printf("  %-26s %s, from %s (%s)\n", *id,
		       json_string_value(json_object_get(r, "effect")),
		       json_string_value(json_object_get(r, "effective_from")),
		       json_string_value(json_object_get(r, "file")));
	}
	rh_policy_free(p);
}

static int cmd_help_run(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	static const struct rh_option options[] = {RH_OPT_END()};
	static const char *const topics[] = {"runbook", "scenario", "exit-codes", NULL};
	const char *names[64];
	const char *best;
	char *words[8];
	size_t n = 0;
	int nwords;

	nwords = rh_parse_options(ctx, argc, argv, options);
	if (nwords < 0)
		return rh_parse_exit(nwords);
	if (nwords == 0) {
		struct rh_cmd_ctx top = {.cmd = &rh_cmd_root};

		rh_usage_print(&top, NULL, stdout);
		return RH_EXIT_MET;
	}
	if (strcmp(argv[0], "runbook") == 0) {
		help_runbook();
		return RH_EXIT_MET;
	}
	if (strcmp(argv[0], "scenario") == 0) {
		help_scenario();
		return RH_EXIT_MET;
	}
	if (strcmp(argv[0], "exit-codes") == 0) {
		help_exit_codes();
		return RH_EXIT_MET;
	}
	if (!rh_cmd_find(&rh_cmd_root, argv[0])) {
		for (size_t i = 0; rh_cmd_root.subs[i] && n < 60; i++)
			names[n++] = rh_cmd_root.subs[i]->name;
		for (size_t i = 0; topics[i]; i++)
			names[n++] = topics[i];
		names[n] = NULL;
		best = rh_suggest(argv[0], names);
		if (best)
			return rh_cli_usage_error(ctx, "no help for '%s': did you mean '%s'?",
						  argv[0], best);
		return rh_cli_usage_error(ctx,
					  "no help for '%s': try a command name, 'runbook', "
					  "'scenario' or 'exit-codes'",
					  argv[0]);
	}
	/* `help audit report` is `audit report --help`: the same generated text */
	if ((size_t)nwords + 3 > sizeof(words) / sizeof(words[0]))
		return rh_cli_usage_error(ctx, "too many words: name a command and a subcommand");
	words[0] = (char *)"rehydra";
	for (int i = 0; i < nwords; i++)
		words[i + 1] = argv[i];
	words[nwords + 1] = (char *)"--help";
	words[nwords + 2] = NULL;
	return rh_cmd_run(&rh_cmd_root, NULL, nwords + 2, words);
}

const struct rh_cmd rh_cmd_help = {
    .name = "help",
    .summary = "Show help for a command, the runbook or scenario format, or the exit codes",
    .args = "[COMMAND [SUBCOMMAND] | runbook | scenario | exit-codes]",
    .run = cmd_help_run,
};
