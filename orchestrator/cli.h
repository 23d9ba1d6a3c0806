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
extern const struct rh_command rh_cmd_help;

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

/* Parses "NAME=VALUE" for --var; returns 0 or -1 (prints the error). */
int rh_cli_parse_var(const struct rh_command *cmd, char *arg, const char **name,
		     const char **value);

/* Default state directory: $XDG_STATE_HOME/rehydra or ~/.local/state/rehydra.
 * New string (caller frees), NULL if neither HOME nor XDG_STATE_HOME is set. */
char *rh_cli_default_state_dir(void);

#endif
