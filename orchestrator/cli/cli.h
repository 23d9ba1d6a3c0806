/*
 * cli.h - the command-line front end: one cmd_<name>.c per subcommand,
 * registered in the one table in main.c (git's builtin style).
 *
 * Commands parse arguments and print; all work is done by the library,
 * which never prints or exits. A command returns its exit code.
 */
#ifndef RH_CLI_H
#define RH_CLI_H

#include "diag.h"
#include "runbook.h"

#include <stdbool.h>
#include <stdio.h>

/* The exit codes, the same for every command (README "Exit codes"). */
enum rh_exit {
	RH_EXIT_MET = 0,          /* service restored within the RTO target; or success */
	RH_EXIT_MISSED = 1,       /* restored, but the RTO target was missed */
	RH_EXIT_USAGE = 2,        /* bad input or usage: nothing was run */
	RH_EXIT_FAILED = 3,       /* drill failed: service not restored */
	RH_EXIT_INTERRUPTED = 130 /* SIGINT/SIGTERM: teardown ran */
};

struct rh_command {
	const char *name;
	const char *summary;
	const char *usage; /* full help text, printed by --help and `rehydra help NAME` */
	int (*run)(int argc, char **argv);
};

extern const struct rh_command rh_cmd_drill;
extern const struct rh_command rh_cmd_plan;
extern const struct rh_command rh_cmd_validate;
extern const struct rh_command rh_cmd_audit;
extern const struct rh_command rh_cmd_help;
extern const struct rh_command rh_cmd_render;
extern const struct rh_command rh_cmd_providers;
extern const struct rh_command rh_cmd_registry;

/* NULL-terminated; defined in main.c. */
extern const struct rh_command *const rh_commands[];
const struct rh_command *rh_command_find(const char *name);

/* Prints "rehydra CMD: MESSAGE" to stderr (printf-style) and returns RH_EXIT_USAGE. */
int rh_cli_usage_error(const struct rh_command *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* True when argv[i] is -h or --help. */
bool rh_cli_is_help(const char *arg);

/* Prints every diagnostic as "PATH:LINE:COL: error: MESSAGE" to `f`. */
void rh_cli_print_diags(FILE *f, const char *path, const struct rh_diags *d);

#define RH_CLI_MAX_VARS 64

/* If argv[*i] is --var, consumes it and its NAME=VALUE into ov[*n] and
 * returns 1; returns 0 when argv[*i] is something else; prints the problem
 * and returns -1 on a malformed --var. */
int rh_cli_take_var(const struct rh_command *cmd, int argc, char **argv, int *i,
		    struct rh_var_override *ov, size_t *n);

/* Loads and validates a runbook; on failure prints every diagnostic (or the
 * reason it could not be read) and returns RH_EXIT_USAGE, else 0. */
int rh_cli_load_runbook(struct rh_runbook **out, const char *file,
			const struct rh_var_override *ov, size_t n);

/* Default state directory: $XDG_STATE_HOME/rehydra or ~/.local/state/rehydra.
 * New string (caller frees), NULL if neither HOME nor XDG_STATE_HOME is set. */
char *rh_cli_default_state_dir(void);

#endif
