/*
 * cmd_render.c - `rehydra render RUNBOOK --target PROVIDER:REGION --out DIR`:
 * write the Terraform working directory a drill would apply, without
 * running anything.
 *
 * It is how a team reviews what a failover would create (and diffs it
 * between catalog updates), and how the rendered trees are tested: the
 * same inputs give byte-identical files. The target can be switched on the
 * command line, so one runbook renders for every cloud it could fail over
 * to; keys the other provider does not know are dropped.
 */
#include "cli.h"
#include "engine.h"
#include "error.h"
#include "provider.h"
#include "runbook.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

#define RENDER_ID_MAX 95

static bool in_list(const char *s, const char *const *list)
{
	for (size_t i = 0; list && list[i]; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

static bool id_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > RENDER_ID_MAX)
		return false;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.'))
			return false;
	return true;
}

#define RENDER_MAX_SETS 32

/* "123" -> integer, anything else -> string (new, NULL on ENOMEM):
 * target keys such as serving_port are numbers. */
static json_t *set_value(const char *v)
{
	char *end = NULL;
	long long n;

	char *esc, *o;
	json_t *j;

	if (*v && strspn(v, "0123456789") == strlen(v) && strlen(v) < 10) {
		n = strtoll(v, &end, 10);
		return json_integer(n);
	}
	/* target strings are expanded like the runbook's; a --set value is
	 * literal, so its "${" is escaped as "$${" */
	esc = malloc(strlen(v) * 2 + 1);
	if (!esc)
		return NULL;
	for (o = esc; *v; v++) {
		if (v[0] == '$' && v[1] == '{')
			*o++ = '$';
		*o++ = *v;
	}
	*o = '\0';
	j = json_string(esc);
	free(esc);
	return j;
}

/* A copy of the runbook's target switched to `ops`/`region`/`accel`, with
 * the --set KEY=VALUE pairs applied. */
static json_t *make_target(const struct rh_runbook *rb, const struct rh_provider_ops *ops,
			   const char *region, const char *accel, const char *const *sets,
			   size_t n_sets)
{
	json_t *t = rb->target ? json_deep_copy(rb->target) : json_object();
	const char *key;
	json_t *val;
	void *tmp;

	if (!t)
		return NULL;
	json_object_foreach_safe(t, tmp, key, val)
	{
		if (strcmp(key, "provider") != 0 && strcmp(key, "region") != 0 &&
		    !in_list(key, ops->target_keys))
			json_object_del(t, key);
	}
	if (json_object_set_new(t, "provider", json_string(ops->name)) < 0 ||
	    (region && json_object_set_new(t, "region", json_string(region)) < 0) ||
	    (accel && json_object_set_new(t, "accelerator", json_string(accel)) < 0)) {
		json_decref(t);
		return NULL;
	}
	for (size_t i = 0; i < n_sets; i++) {
		const char *eq = strchr(sets[i], '=');
		char *name = strndup(sets[i], (size_t)(eq - sets[i]));

		if (!name || json_object_set_new(t, name, set_value(eq + 1)) < 0) {
			free(name);
			json_decref(t);
			return NULL;
		}
		free(name);
	}
	return t;
}

static int cmd_render_run(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	const char *var_items[RH_CLI_MAX_VARS];
	const char *set_items[RENDER_MAX_SETS];
	struct rh_opt_list vars = RH_OPT_LIST_INIT(var_items);
	struct rh_opt_list set_list = RH_OPT_LIST_INIT(set_items);
	struct rh_var_override overrides[RH_CLI_MAX_VARS];
	const char *file = NULL, *target_arg = NULL, *accel = NULL, *out = NULL;
	const char *drill_id = NULL;
	bool quiet = false, as_json = false;
	const struct rh_option options[] = {
	    RH_OPT_STRING(0, "target", &target_arg, "P[:R]",
			  "render for provider P (aws, alibaba, nebius) in region R instead of "
			  "the runbook's target; keys P does not know are dropped"),
	    RH_OPT_STRING(0, "accelerator", &accel, "C",
			  "accelerator class (see 'rehydra providers show P')"),
	    RH_OPT_KV_LIST(0, "set", &set_list, "KEY=VALUE",
			   "set a target key of the provider (digits make a number), e.g. "
			   "--set project_id=... for nebius"),
	    RH_OPT_STRING(0, "drill-id", &drill_id, "ID",
			  "names and tags resources as drill ID would (default "
			  "render-<runbook name>)"),
	    RH_CLI_OPT_VAR(&vars),
	    RH_OPT_STRING('o', "out", &out, "DIR", "where to write (created if missing)"),
	    RH_OPT_BOOL('q', "quiet", &quiet, "print nothing on success"),
	    RH_OPT_BOOL(0, "json", &as_json,
			"print what was rendered as JSON on stdout (README \"JSON output\")"),
	    RH_OPT_END(),
	};
	struct rh_diags diags = RH_DIAGS_INIT;
	struct rh_runbook *rb = NULL;
	struct rh_provider_ctx *p = NULL;
	const struct rh_provider_ops *ops;
	char *prov_name = NULL, *region = NULL, *default_id = NULL;
	json_t *target = NULL;
	const char *const *sets = set_items;
	size_t n_sets;
	int rc = RH_EXIT_USAGE;
	int n;

	n = rh_parse_options(ctx, argc, argv, options);
	if (n < 0)
		return rh_parse_exit(n);
	if (n > 1)
		return rh_cli_usage_error(ctx, "one runbook at a time");
	file = n ? argv[0] : NULL;
	n_sets = set_list.n;
	rh_cli_vars(&vars, overrides);
	if (!file)
		return rh_cli_usage_error(ctx, "no runbook given");
	if (!out)
		return rh_cli_usage_error(ctx, "no output directory: add --out DIR");
	if (drill_id && !id_ok(drill_id))
		return rh_cli_usage_error(ctx,
					  "--drill-id takes 1..%d of "
					  "[A-Za-z0-9._-], got '%s'",
					  RENDER_ID_MAX, drill_id);
	if (rh_cli_load_runbook(&rb, file, overrides, vars.n))
		goto done;

	if (target_arg) {
		const char *colon = strchr(target_arg, ':');

		prov_name =
		    colon ? strndup(target_arg, (size_t)(colon - target_arg)) : strdup(target_arg);
		region = colon && colon[1] ? strdup(colon + 1) : NULL;
		if (!prov_name || (colon && colon[1] && !region)) {
			fprintf(stderr, "rehydra render: out of memory\n");
			rc = RH_EXIT_FAILED;
			goto done;
		}
		ops = rh_provider_find(prov_name);
		if (!ops) {
			char names[256] = "";

			for (size_t i = 0; rh_providers[i]; i++) {
				size_t l = strlen(names);

				snprintf(names + l, sizeof(names) - l, "%s%s", l ? ", " : "",
					 rh_providers[i]->name);
			}
			rc = rh_cli_usage_error(ctx,
						"unknown provider '%s' in --target: "
						"expected one of %s",
						prov_name, names);
			goto done;
		}
	} else {
		ops = rb->provider;
		if (!ops) {
			rc = rh_cli_usage_error(ctx,
						"%s has no target: pass --target "
						"PROVIDER:REGION",
						file);
			goto done;
		}
	}
	if (!ops->render) {
		fprintf(stderr,
			"rehydra render: the %s provider creates nothing with Terraform, "
			"so there is nothing to render: pick a cloud with --target "
			"aws|alibaba|nebius:REGION\n",
			ops->name);
		goto done;
	}
	for (size_t i = 0; i < n_sets; i++) {
		size_t klen = strcspn(sets[i], "=");
		bool known = false;

		for (size_t k = 0; ops->target_keys && ops->target_keys[k]; k++)
			known |= strlen(ops->target_keys[k]) == klen &&
				 strncmp(ops->target_keys[k], sets[i], klen) == 0;
		if (!known) {
			rc = rh_cli_usage_error(ctx,
						"--set %.*s: the %s provider has no "
						"such target key ('rehydra providers "
						"show %s' lists them)",
						(int)klen, sets[i], ops->name, ops->name);
			goto done;
		}
	}
	target = make_target(rb, ops, region, accel, sets, n_sets);
	if (!target) {
		fprintf(stderr, "rehydra render: out of memory\n");
		rc = RH_EXIT_FAILED;
		goto done;
	}
	if (ops->validate && ops->validate(ops, target, "", &diags) < 0) {
		fprintf(stderr, "rehydra render: %s\n", rh_error_last());
		rc = RH_EXIT_FAILED;
		goto done;
	}
	if (diags.count) {
		for (size_t i = 0; i < diags.count; i++)
			fprintf(stderr, "rehydra render: target%s%s: %s\n",
				diags.items[i].pointer[0] ? "." : "",
				diags.items[i].pointer[0] ? diags.items[i].pointer + 1 : "",
				diags.items[i].message);
		goto done;
	}
	if (!drill_id) {
		if (asprintf(&default_id, "render-%s", rb->name) < 0) {
			default_id = NULL;
			rc = RH_EXIT_FAILED;
			goto done;
		}
		drill_id = default_id;
	}
	rh_error_clear();
	rc = rh_drill_provider_new(&p, ops, target, rb, drill_id, NULL, NULL);
	if (rc == 0)
		rc = ops->render(p, out);
	if (rc < 0) {
		fprintf(stderr, "rehydra render: %s\n", rh_error_last());
		rc = rh_cli_exit_code(rc, RH_CLI_INPUT);
		goto done;
	}
	rc = RH_EXIT_MET;
	if (as_json) {
		json_t *doc = json_pack("{s:s, s:O?, s:O?, s:s, s:s}", "provider", ops->name,
					"region", json_object_get(target, "region"), "accelerator",
					json_object_get(target, "accelerator"), "drill_id",
					drill_id, "out", out);

		rc = rh_cli_print_json(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		json_decref(doc);
		goto done;
	}
	if (quiet)
		goto done;
	printf("rendered %s %s (%s) for %s into %s\n", ops->name,
	       json_string_value(json_object_get(target, "region")),
	       json_string_value(json_object_get(target, "accelerator"))
		   ? json_string_value(json_object_get(target, "accelerator"))
		   : "no accelerator",
	       drill_id, out);
	printf("review it with: terraform -chdir=%s init && terraform -chdir=%s plan\n", out, out);
done:
	rh_provider_ctx_free(p);
	rh_diags_clear(&diags);
	json_decref(target);
	rh_runbook_free(rb);
	free(prov_name);
	free(region);
	free(default_id);
	return rc;
}

const struct rh_cmd rh_cmd_render = {
    .name = "render",
    .summary = "Write the Terraform working directory a cloud drill would apply",
    .args = "RUNBOOK --out DIR",
    .description =
	"Renders the runbook's cloud target into DIR without running anything:\n"
	"  DIR/module/               the provider's Terraform module (templates/)\n"
	"  DIR/main.tf.json          root module: pinned provider, module call, outputs\n"
	"  DIR/terraform.tfvars.json every value, as JSON data\n"
	"The same inputs always give byte-identical files.\n",
    .epilogue = "exit status: 0 rendered, 2 bad runbook, target or arguments, 3 I/O failure\n",
    .run = cmd_render_run,
};
