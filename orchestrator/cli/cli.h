/*
 * cli.h - the command-line front end: one cmd_<name>.c per subcommand,
 * registered in the one table in main.c (git's builtin style).
 *
 * Commands declare their options for the one parser (parse_options.h),
 * print, and return an exit code (exit.h); all work is done by the
 * library, which never prints or exits.
 */
#ifndef RH_CLI_H
#define RH_CLI_H

#include "diag.h"
#include "exit.h"
#include "parse_options.h"
#include "policy.h"
#include "runbook.h"
#include "scenario.h"

#include <jansson.h>

#include <stdbool.h>
#include <stdio.h>
#include <time.h>

extern const struct rh_cmd rh_cmd_drill;
extern const struct rh_cmd rh_cmd_plan;
extern const struct rh_cmd rh_cmd_validate;
extern const struct rh_cmd rh_cmd_audit;
extern const struct rh_cmd rh_cmd_help;
extern const struct rh_cmd rh_cmd_render;
extern const struct rh_cmd rh_cmd_providers;
extern const struct rh_cmd rh_cmd_registry;
extern const struct rh_cmd rh_cmd_rehearse;
extern const struct rh_cmd rh_cmd_schedule;

/* The program itself: its subcommands are the commands above. In main.c. */
extern const struct rh_cmd rh_cmd_root;

/* Prints every diagnostic as "PATH:LINE:COL: error: MESSAGE" to `f`. */
void rh_cli_print_diags(FILE *f, const char *path, const struct rh_diags *d);

#define RH_CLI_MAX_VARS 64

/* The --var NAME=VALUE option every runbook command takes, collected into
 * `list` (a struct rh_opt_list of RH_CLI_MAX_VARS slots). */
#define RH_CLI_OPT_VAR(list)                                                                       \
	RH_OPT_KV_LIST(0, "var", (list), "NAME=VALUE", "override a runbook var")

/* Splits the collected --var values in place ('=' becomes '\0') into
 * ov[0..list->n-1] (names and values borrowed from argv). */
void rh_cli_vars(const struct rh_opt_list *list, struct rh_var_override *ov);

/* Prints `j` to stdout as JSON with `flags` and a newline (borrowed).
 * Returns 0, or RH_EXIT_FAILED when it cannot be written. */
int rh_cli_print_json(const json_t *j, size_t flags);

/* Loads and validates a runbook; on failure prints every diagnostic (or the
 * reason it could not be read) and returns RH_EXIT_USAGE, else 0. */
int rh_cli_load_runbook(struct rh_runbook **out, const char *file, const struct rh_var_override *ov,
			size_t n);

/* rh_cli_load_runbook with load options (a replaced target, RTO target). */
int rh_cli_load_runbook_opts(struct rh_runbook **out, const char *file,
			     const struct rh_runbook_opts *opts);

/* One drill as `rehydra drill` runs it: validate, pre-flight, run, record,
 * journal, metrics, print. `rehearse` runs its chosen target through it.
 * Everything is borrowed. */
struct rh_cli_drill_req {
	const char *cmd;  /* command name for messages ("drill", "rehearse") */
	const char *file; /* the runbook */
	const struct rh_var_override *overrides;
	size_t n_overrides;
	const json_t *target;	 /* replaces the runbook's target, or NULL */
	double rto_target_s;	 /* replaces the runbook's RTO target when > 0 */
	const char *state_dir;	 /* NULL: the default */
	const char *scenario;	 /* recorded as "scenario", or NULL */
	const json_t *rehearsal; /* recorded as "rehearsal" (the policy decision), or NULL */
	const char *prom_file;
	bool json_out, quiet, no_color;
	bool preflight_only; /* run the pre-flight checks only; journal nothing */
};

/* Returns the drill's exit code (enum rh_exit). */
int rh_cli_drill_execute(const struct rh_cli_drill_req *req);

/* Loads the policy rules / a scenario; prints the problems and returns
 * RH_EXIT_USAGE on failure, else 0. */
int rh_cli_load_policy(struct rh_policy **out, const char *cmd);
int rh_cli_load_scenario(struct rh_scenario **out, const char *file, const struct rh_policy *p);

/* The *.json files of `dir`, sorted; *out and its strings are new. Prints
 * the problem and returns RH_EXIT_USAGE when dir cannot be read. */
int rh_cli_scenario_files(char ***out, size_t *n, const char *dir);

/* The cadence of every scenario in `dir` against journal `j` (NULL: none
 * rehearsed), judged at `now`: rh_cadence_compute's result in *out (new).
 * The scenario files, in the same order, go to *files_out when it is not
 * NULL (new). Prints problems; returns an exit code. */
struct rh_journal;
int rh_cli_cadence(json_t **out, const char *dir, struct rh_journal *j, const struct rh_policy *p,
		   time_t now, char ***files_out, size_t *n_out);

/* The model manifest's "export" object (new; {} when it has none), read
 * from the runbook's registry with `cache` (NULL: only a registry on this
 * machine, for --plan). NULL with the reason in `why` when it cannot be. */
json_t *rh_cli_model_export(const struct rh_runbook *rb, const char *cache, char *why, size_t size);

/* --target PROVIDER[:REGION] (drill, as render takes it): *out (new) is a
 * copy of `target` (borrowed, may be NULL) switched to that provider and,
 * when given, region, keeping only the keys the provider knows. Returns
 * 0, or prints why (an unknown provider, a region that is not a plain
 * name) and returns RH_EXIT_USAGE. */
int rh_cli_target_switch(json_t **out, const struct rh_cmd_ctx *ctx, const char *arg,
			 const json_t *target);

/* Default state directory: $XDG_STATE_HOME/rehydra or ~/.local/state/rehydra.
 * New string (caller frees), NULL if neither HOME nor XDG_STATE_HOME is set. */
char *rh_cli_default_state_dir(void);

/* The state directory a command works in: `arg` (--state-dir), else the
 * default. Before returning it recovers the drills whose rehydra was
 * killed (intent.h), one line each on stderr. New string; NULL as for
 * rh_cli_default_state_dir. */
char *rh_cli_state_open(const char *arg);

#endif
