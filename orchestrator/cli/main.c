/*
 * main.c - rehydra's entry point: finds the subcommand in the one command
 * table and runs it. This is the only place that turns a command's result
 * into the process's exit code.
 */
#include "cli.h"
#include "error.h"
#include "runbook.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

const struct rh_command *const rh_commands[] = {
	&rh_cmd_drill,
	&rh_cmd_plan,
	&rh_cmd_validate,
	&rh_cmd_audit,
	&rh_cmd_registry,
	&rh_cmd_render,
	&rh_cmd_providers,
	&rh_cmd_help,
	NULL,
};

const struct rh_command *rh_command_find(const char *name)
{
	for (size_t i = 0; rh_commands[i]; i++)
		if (strcmp(rh_commands[i]->name, name) == 0)
			return rh_commands[i];
	return NULL;
}

bool rh_cli_is_help(const char *arg)
{
	return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int rh_cli_usage_error(const struct rh_command *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "rehydra %s: ", cmd->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(see 'rehydra %s --help')\n", cmd->name);
	return RH_EXIT_USAGE;
}

void rh_cli_print_diags(FILE *f, const char *path, const struct rh_diags *d)
{
	for (size_t i = 0; i < d->count; i++)
		fprintf(f, "%s:%d:%d: error: %s\n", path, d->items[i].line, d->items[i].column,
			d->items[i].message);
}

int rh_cli_take_var(const struct rh_command *cmd, int argc, char **argv, int *i,
		    struct rh_var_override *ov, size_t *n)
{
	char *arg, *eq;

	if (strcmp(argv[*i], "--var") != 0)
		return 0;
	if (*i + 1 >= argc) {
		rh_cli_usage_error(cmd, "--var needs NAME=VALUE");
		return -1;
	}
	if (*n == RH_CLI_MAX_VARS) {
		rh_cli_usage_error(cmd, "more than %d --var options", RH_CLI_MAX_VARS);
		return -1;
	}
	arg = argv[++*i];
	eq = strchr(arg, '=');
	if (!eq || eq == arg) {
		rh_cli_usage_error(cmd, "--var expects NAME=VALUE, got '%s'", arg);
		return -1;
	}
	*eq = '\0';
	ov[*n].name = arg;
	ov[*n].value = eq + 1;
	(*n)++;
	return 1;
}

int rh_cli_load_runbook(struct rh_runbook **out, const char *file,
			const struct rh_var_override *ov, size_t n)
{
	struct rh_diags diags = RH_DIAGS_INIT;
	int rc = 0;

	if (rh_runbook_load(out, file, ov, n, &diags) < 0) {
		if (diags.count)
			rh_cli_print_diags(stderr, file, &diags);
		else
			fprintf(stderr, "%s: error: %s\n", file, rh_error_last());
		rc = RH_EXIT_USAGE;
	}
	rh_diags_clear(&diags);
	return rc;
}

char *rh_cli_default_state_dir(void)
{
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	char buf[4096];
	int n;

	if (xdg && xdg[0] == '/')
		n = snprintf(buf, sizeof(buf), "%s/rehydra", xdg);
	else if (home && home[0])
		n = snprintf(buf, sizeof(buf), "%s/.local/state/rehydra", home);
	else
		return NULL;
	if (n < 0 || (size_t)n >= sizeof(buf))
		return NULL;
	return strdup(buf);
}

static void print_main_usage(FILE *f)
{
	fprintf(f, "usage: rehydra [--version] [--help] <command> [<args>]\n\n"
		   "Recreates an AI inference stack from a runbook and measures the achieved RTO.\n\n"
		   "commands:\n");
	for (size_t i = 0; rh_commands[i]; i++)
		fprintf(f, "  %-10s %s\n", rh_commands[i]->name, rh_commands[i]->summary);
	fprintf(f, "\n'rehydra help <command>' describes a command; 'rehydra help runbook' the runbook\n"
		   "format; 'rehydra help exit-codes' what the exit status means.\n");
}

int main(int argc, char **argv)
{
	const struct rh_command *cmd;

	if (argc < 2) {
		print_main_usage(stderr);
		return RH_EXIT_USAGE;
	}
	if (rh_cli_is_help(argv[1])) {
		print_main_usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("rehydra %s (runbook format %d)\n", RH_VERSION, RH_RUNBOOK_FORMAT);
		return 0;
	}
	cmd = rh_command_find(argv[1]);
	if (!cmd) {
		fprintf(stderr, "rehydra: '%s' is not a command (see 'rehydra --help')\n", argv[1]);
		return RH_EXIT_USAGE;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (rh_cli_is_help(argv[i])) {
			fputs(cmd->usage, stdout);
			return 0;
		}
	}
	return cmd->run(argc - 1, argv + 1);
}
