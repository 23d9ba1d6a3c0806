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
#include "runbook.h"

#include <jansson.h>

#include <stdbool.h>
#include <stdio.h>

extern const struct rh_cmd rh_cmd_drill;
extern const struct rh_cmd rh_cmd_plan;
extern const struct rh_cmd rh_cmd_validate;
extern const struct rh_cmd rh_cmd_audit;
extern const struct rh_cmd rh_cmd_help;
extern const struct rh_cmd rh_cmd_render;
extern const struct rh_cmd rh_cmd_providers;
extern const struct rh_cmd rh_cmd_registry;

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

/* Default state directory: $XDG_STATE_HOME/rehydra or ~/.local/state/rehydra.
 * New string (caller frees), NULL if neither HOME nor XDG_STATE_HOME is set. */
char *rh_cli_default_state_dir(void);

#endif
