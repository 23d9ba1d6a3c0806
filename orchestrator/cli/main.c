/*
 * main.c - rehydra's entry point: the one table of commands, handed to the
 * option parser (parse_options.h), which finds the command the first word
 * names (or the closest one for a typo) and runs it; its result is the
 * process's exit code.
 */
#include "cli.h"
#include "error.h"
#include "global.h"
#include "intent.h"
#include "provider.h"
#include "runbook.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

static const struct rh_cmd *const commands[] = {
    &rh_cmd_drill,
    &rh_cmd_plan,
    &rh_cmd_validate,
    &rh_cmd_audit,
    &rh_cmd_rehearse,
    &rh_cmd_schedule,
    &rh_cmd_registry,
    &rh_cmd_render,
    &rh_cmd_providers,
    &rh_cmd_help,
    NULL,
};

const struct rh_cmd rh_cmd_root = {
    .name = "rehydra",
    .summary = "Recreates an AI inference stack from a runbook and measures the achieved RTO.",
    .args = "[--version] [--help] <command> [<args>]",
    .epilogue = "'rehydra help <command>' or 'rehydra <command> --help' describes a command\n"
		"(and 'rehydra <command> <subcommand> --help' a subcommand); 'rehydra help\n"
		"runbook' the runbook format; 'rehydra help scenario' the scenario format;\n"
		"'rehydra help exit-codes' what the exit status means.\n",
    .subs = commands,
};

void rh_cli_print_diags(FILE *f, const char *path, const struct rh_diags *d)
{
	for (size_t i = 0; i < d->count; i++)
		fprintf(f, "%s:%d:%d: error: %s\n", path, d->items[i].line, d->items[i].column,
			d->items[i].message);
	if (d->dropped)
		fprintf(f,
			"%s: and %zu more errors (only the first %d are shown): fix these and "
			"validate again\n",
			path, d->dropped, RH_DIAGS_MAX);
}

void rh_cli_vars(const struct rh_opt_list *list, struct rh_var_override *ov)
{
	for (size_t i = 0; i < list->n; i++) {
		char *eq = strchr(list->items[i], '=');

		/* the parser checked NAME=VALUE (RH_OPT_F_KV); the value is argv's */
		if (eq)
			*eq = '\0';
		ov[i].name = list->items[i];
		ov[i].value = eq ? eq + 1 : "";
	}
}

int rh_cli_print_json(const json_t *j, size_t flags)
{
	if (!j || json_dumpf(j, stdout, flags) < 0 || fputc('\n', stdout) == EOF ||
	    fflush(stdout) != 0) {
		fprintf(stderr, "rehydra: cannot write the JSON output\n");
		return RH_EXIT_FAILED;
	}
	return 0;
}

int rh_cli_load_runbook(struct rh_runbook **out, const char *file, const struct rh_var_override *ov,
			size_t n)
{
	struct rh_runbook_opts o = RH_RUNBOOK_OPTS_INIT;

	o.overrides = ov;
	o.n_overrides = n;
	return rh_cli_load_runbook_opts(out, file, &o);
}

int rh_cli_load_runbook_opts(struct rh_runbook **out, const char *file,
			     const struct rh_runbook_opts *opts)
{
	struct rh_diags diags = RH_DIAGS_INIT;
	int rc = 0;

	if (rh_runbook_load_opts(out, file, opts, &diags) < 0) {
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

/* A cloud target's leftovers get this long to be destroyed by recovery. */
#define RH_CLI_RECOVERY_DESTROY_S 600.0

static void print_recovery(void *user, const struct rh_intent_recovery *r)
{
	(void)user;
	fprintf(stderr,
		"rehydra: recovered drill %s abandoned by a killed rehydra (pid %d): stopped %u "
		"process group%s (%u process%s), ",
		r->drill_id, (int)r->pid, r->groups_stopped, r->groups_stopped == 1 ? "" : "s",
		r->processes_killed, r->processes_killed == 1 ? "" : "es");
	if (r->workspace)
		fprintf(stderr, "removed workspace %s, ", r->workspace);
	else
		fprintf(stderr, "no workspace left, ");
	if (r->destroy)
		fprintf(stderr, "terraform destroy: %s, ", r->destroy);
	if (r->journaled && r->own_verdict[0])
		fprintf(stderr, "journaled its own record, verdict %s (seq %" PRIu64 ")",
			r->own_verdict, r->seq);
	else if (r->journaled)
		fprintf(stderr, "journaled as abandoned (seq %" PRIu64 ")", r->seq);
	else
		fprintf(stderr, "not journaled%s", r->problem ? "" : " (it already was)");
	if (r->problem)
		fprintf(stderr, "; problem: %s", r->problem);
	fputc('\n', stderr);
}

char *rh_cli_state_open(const char *arg)
{
	char *dir = arg ? strdup(arg) : rh_cli_default_state_dir();

	if (!dir)
		return NULL;
	if (rh_intent_recover(dir, RH_CLI_RECOVERY_DESTROY_S, print_recovery, NULL, NULL) < 0)
		fprintf(stderr,
			"rehydra: %s: leftovers of a killed drill in %s/intents could not all be "
			"recovered; they are tried again by the next command\n",
			rh_error_last(), dir);
	return dir;
}

int main(int argc, char **argv)
{
	struct rh_cmd_ctx top = {.cmd = &rh_cmd_root};

	if (rh_artifacts_global_init() < 0 || atexit(rh_artifacts_global_shutdown) != 0) {
		fprintf(stderr, "rehydra: %s\n", rh_error_last());
		return rh_cli_exit_code(RH_ERROR, RH_CLI_RUN);
	}
	if (argc < 2) {
		rh_usage_print(&top, NULL, stderr);
		return RH_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("rehydra %s (runbook format %d)\n", RH_VERSION, RH_RUNBOOK_FORMAT);
		return RH_EXIT_MET;
	}
	return rh_cmd_run(&rh_cmd_root, NULL, argc, argv);
}

static bool target_in_list(const char *s, const char *const *list)
{
	for (size_t i = 0; list && list[i]; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

int rh_cli_target_switch(json_t **out, const struct rh_cmd_ctx *ctx, const char *arg,
			 const json_t *target)
{
	static const char plain[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
	const char *colon = strchr(arg, ':');
	size_t plen = colon ? (size_t)(colon - arg) : strlen(arg);
	const struct rh_provider_ops *ops = NULL;
	const char *region = colon && colon[1] ? colon + 1 : NULL;
	char names[256] = "";
	const char *key;
	json_t *val, *t;
	void *tmp;

	*out = NULL;
	for (size_t i = 0; rh_providers[i]; i++) {
		size_t l = strlen(names);

		snprintf(names + l, sizeof(names) - l, "%s%s", l ? ", " : "",
			 rh_providers[i]->name);
		if (strlen(rh_providers[i]->name) == plen &&
		    strncmp(rh_providers[i]->name, arg, plen) == 0)
			ops = rh_providers[i];
	}
	if (!ops)
		return rh_cli_usage_error(ctx,
					  "unknown provider '%.*s' in --target: expected one of %s",
					  (int)plen, arg, names);
	if (region && strspn(region, plain) != strlen(region))
		return rh_cli_usage_error(ctx,
					  "--target %s: the region must be a plain name (letters, "
					  "digits, '.', '_', '-')",
					  arg);
	t = json_is_object(target) ? json_deep_copy(target) : json_object();
	if (!t)
		goto oom;
	json_object_foreach_safe(t, tmp, key, val)
	{
		if (strcmp(key, "provider") != 0 && strcmp(key, "region") != 0 &&
		    !target_in_list(key, ops->target_keys))
			json_object_del(t, key);
	}
	if (json_object_set_new(t, "provider", json_string(ops->name)) < 0 ||
	    (region && json_object_set_new(t, "region", json_string(region)) < 0)) {
		json_decref(t);
		goto oom;
	}
	*out = t;
	return 0;
oom:
	fprintf(stderr, "rehydra %s: out of memory\n", ctx->cmd->name);
	return RH_EXIT_FAILED;
}
