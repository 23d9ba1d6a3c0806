/*
 * cmd_providers.c - `rehydra providers list` and `rehydra providers show
 * NAME`: what each adapter is, what a runbook's target may say to it, and,
 * for the clouds, the dated catalog (regions with their jurisdiction,
 * accelerator classes with the provider's own names).
 *
 * This is where a failover plan starts: which jurisdiction a region falls
 * under and whether the accelerator class is sold there at all.
 */
#include "cli.h"
#include "error.h"
#include "provider.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "banned.h"

static const char *s_at(const json_t *o, const char *k, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : dflt;
}

static void print_keys(const char *label, const char *const *keys)
{
	printf("%-14s", label);
	if (!keys || !keys[0])
		printf(" (none)");
	for (size_t i = 0; keys && keys[i]; i++)
		printf("%s%s", i ? ", " : " ", keys[i]);
	printf("\n");
}

static void print_regions(const json_t *a)
{
	size_t i;
	json_t *r;

	json_array_foreach(json_object_get(a, "regions"), i, r)
	    printf("%s%s", i ? ", " : "", json_string_value(r));
}

static void print_catalog(const json_t *cat)
{
	const char *k;
	json_t *v;

	printf("catalog        as of %s; terraform %s %s\n", s_at(cat, "as_of", "?"),
	       s_at(json_object_get(cat, "terraform"), "source", "?"),
	       s_at(json_object_get(cat, "terraform"), "version", "?"));
	if (json_object_get(cat, "caveat"))
		printf("caveat         %s\n", s_at(cat, "caveat", ""));
	printf("\nregions\n  %-16s %-7s %-5s %-26s %s\n", "REGION", "COUNTRY", "BLOC", "NAME",
	       "OBJECT STORAGE");
	json_object_foreach(json_object_get(cat, "regions"), k, v)
	{
		const json_t *j = json_object_get(v, "jurisdiction");

		printf("  %-16s %-7s %-5s %-26s %s\n", k, s_at(j, "country", "?"),
		       s_at(j, "bloc", "?"), s_at(v, "name", ""),
		       s_at(json_object_get(v, "object_storage"), "endpoint", ""));
	}
	printf("\naccelerators\n  %-10s %-12s %-30s %s\n", "CLASS", "STATUS", "OFFERING",
	       "REGIONS / REASON");
	json_object_foreach(json_object_get(cat, "accelerators"), k, v)
	{
		const char *status = s_at(v, "status", "?");
		char offer[96];

		if (json_object_get(v, "instance_type"))
			snprintf(offer, sizeof(offer), "%s (%lldx %lld GB)",
				 s_at(v, "instance_type", ""),
				 (long long)json_integer_value(json_object_get(v, "gpus")),
				 (long long)json_number_value(json_object_get(v, "gpu_memory_gb")));
		else if (json_object_get(v, "platform"))
			snprintf(offer, sizeof(offer), "%s/%s", s_at(v, "platform", ""),
				 s_at(v, "preset", ""));
		else
			snprintf(offer, sizeof(offer), "-");
		printf("  %-10s %-12s %-30s ", k, status, offer);
		if (strcmp(status, "unavailable") == 0) {
			printf("%s\n", s_at(v, "reason", ""));
			continue;
		}
		print_regions(v);
		if (strcmp(status, "unverified") == 0)
			printf("; %s", s_at(v, "reason", ""));
		printf("\n");
	}
}

/* {name, summary, target_keys, output_keys, catalog}: what `show --json`
 * prints and each item of `list --json` (new; `cat` borrowed, may be NULL). */
static json_t *provider_json(const struct rh_provider_ops *ops, json_t *cat)
{
	json_t *o =
	    json_pack("{s:s, s:s, s:[], s:[], s:O}", "name", ops->name, "summary", ops->summary,
		      "target_keys", "output_keys", "catalog", cat ? cat : json_null());

	for (size_t i = 0; o && ops->target_keys && ops->target_keys[i]; i++)
		json_array_append_new(json_object_get(o, "target_keys"),
				      json_string(ops->target_keys[i]));
	for (size_t i = 0; o && ops->output_keys && ops->output_keys[i]; i++)
		json_array_append_new(json_object_get(o, "output_keys"),
				      json_string(ops->output_keys[i]));
	return o;
}

static int cmd_show(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	bool as_json = false;
	const struct rh_option options[] = {
	    RH_OPT_BOOL(0, "json", &as_json,
			"print the provider as JSON on stdout (README \"JSON output\")"),
	    RH_OPT_END(),
	};
	const struct rh_provider_ops *ops;
	json_t *cat = NULL;
	int rc = RH_EXIT_MET;
	int n;

	n = rh_parse_options(ctx, argc, argv, options);
	if (n < 0)
		return rh_parse_exit(n);
	if (n == 0)
		return rh_cli_usage_error(ctx, "show needs a provider name");
	if (n > 1)
		return rh_cli_usage_error(ctx, "unexpected '%s'", argv[1]);
	ops = rh_provider_find(argv[0]);
	if (!ops)
		return rh_cli_usage_error(
		    ctx, "no provider '%s': 'rehydra providers list' shows them", argv[0]);
	if (ops->describe && ops->describe(ops, &cat) < 0) {
		fprintf(stderr, "rehydra providers: %s\n", rh_error_last());
		return RH_EXIT_FAILED;
	}
	if (as_json) {
		json_t *o = provider_json(ops, cat);

		rc = rh_cli_print_json(o, JSON_SORT_KEYS | JSON_INDENT(2));
		json_decref(o);
		json_decref(cat);
		return rc;
	}
	printf("%-14s %s\n%-14s %s\n", "provider", ops->name, "summary", ops->summary);
	print_keys("target keys", ops->target_keys);
	print_keys("outputs", ops->output_keys);
	if (cat)
		print_catalog(cat);
	json_decref(cat);
	return rc;
}

static void print_list_line(const struct rh_provider_ops *ops, const json_t *cat)
{
	const char *k;
	json_t *v;
	size_t n = 0;

	printf("%-9s %s\n", ops->name, ops->summary);
	if (!cat)
		return;
	printf("          catalog as of %s, %zu regions; ", s_at(cat, "as_of", "?"),
	       json_object_size(json_object_get(cat, "regions")));
	json_object_foreach(json_object_get(cat, "accelerators"), k, v)
	{
		if (strcmp(s_at(v, "status", ""), "unavailable") == 0)
			continue;
		printf("%s%s%s", n++ ? ", " : "", k,
		       strcmp(s_at(v, "status", ""), "unverified") == 0 ? " (unverified)" : "");
	}
	printf("%s\n", n ? "" : "no accelerators mapped");
}

static int cmd_list(const struct rh_cmd_ctx *ctx, int argc, char **argv)
{
	bool as_json = false;
	const struct rh_option options[] = {
	    RH_OPT_BOOL(0, "json", &as_json,
			"print {\"providers\": [...]} on stdout, each as 'show --json' prints "
			"it (README \"JSON output\")"),
	    RH_OPT_END(),
	};
	json_t *all = NULL;
	int rc = RH_EXIT_MET;
	int n;

	n = rh_parse_options(ctx, argc, argv, options);
	if (n < 0)
		return rh_parse_exit(n);
	if (n > 0)
		return rh_cli_usage_error(ctx, "list takes no name");
	if (as_json && !(all = json_array())) {
		fprintf(stderr, "rehydra providers: out of memory\n");
		return RH_EXIT_FAILED;
	}
	for (size_t i = 0; rh_providers[i]; i++) {
		const struct rh_provider_ops *ops = rh_providers[i];
		json_t *cat = NULL;

		if (ops->describe && ops->describe(ops, &cat) < 0) {
			fprintf(stderr, "rehydra providers: %s\n", rh_error_last());
			rc = RH_EXIT_FAILED;
			if (!as_json)
				printf("%-9s %s\n", ops->name, ops->summary);
			continue;
		}
		if (as_json)
			json_array_append_new(all, provider_json(ops, cat));
		else
			print_list_line(ops, cat);
		json_decref(cat);
	}
	if (as_json) {
		json_t *doc = json_pack("{s:O}", "providers", all);
		int prc = rh_cli_print_json(doc, JSON_SORT_KEYS | JSON_INDENT(2));

		if (prc)
			rc = prc;
		json_decref(doc);
		json_decref(all);
	}
	return rc;
}

static const char providers_epilogue[] =
    "The catalog is read from $RH_CATALOG_DIR, else beside the binary, else\n"
    "../share/rehydra/catalog.\n\n"
    "exit status: 0 ok, 2 bad arguments, 3 the catalog could not be read\n";

static const struct rh_cmd providers_list = {
    .name = "list",
    .summary = "every provider adapter, with its catalog date and the accelerator classes it "
	       "maps",
    .epilogue = providers_epilogue,
    .run = cmd_list,
};

static const struct rh_cmd providers_show = {
    .name = "show",
    .args = "NAME",
    .summary = "a provider's target keys and outputs and, for the clouds, the dated catalog",
    .description = "Shows a provider's target keys and outputs and, for the clouds, the dated\n"
		   "catalog: regions with jurisdiction (country, bloc) and object storage,\n"
		   "accelerator classes with the provider's instance type or preset, where\n"
		   "they are offered, or why they are not.\n",
    .epilogue = providers_epilogue,
    .run = cmd_show,
};

static const struct rh_cmd *const providers_subs[] = {&providers_list, &providers_show, NULL};

const struct rh_cmd rh_cmd_providers = {
    .name = "providers",
    .summary = "List the target providers; show one's catalog (regions, accelerators)",
    .args = "[list | show NAME] [--json]",
    .epilogue = providers_epilogue,
    .subs = providers_subs,
    .default_sub = "list",
};
