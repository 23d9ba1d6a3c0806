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

static int show(const char *name, bool as_json)
{
	const struct rh_provider_ops *ops = rh_provider_find(name);
	json_t *cat = NULL;
	int rc = RH_EXIT_MET;

	if (!ops)
		return rh_cli_usage_error(&rh_cmd_providers, "no provider '%s': 'rehydra providers "
							     "list' shows them",
					  name);
	if (ops->describe && ops->describe(ops, &cat) < 0) {
		fprintf(stderr, "rehydra providers: %s\n", rh_error_last());
		return RH_EXIT_FAILED;
	}
	if (as_json) {
		json_t *o = json_pack("{s:s, s:s, s:[], s:[], s:O}", "name", ops->name, "summary",
				      ops->summary, "target_keys", "output_keys", "catalog",
				      cat ? cat : json_null());

		for (size_t i = 0; o && ops->target_keys && ops->target_keys[i]; i++)
			json_array_append_new(json_object_get(o, "target_keys"),
					      json_string(ops->target_keys[i]));
		for (size_t i = 0; o && ops->output_keys && ops->output_keys[i]; i++)
			json_array_append_new(json_object_get(o, "output_keys"),
					      json_string(ops->output_keys[i]));
		if (!o || json_dumpf(o, stdout, JSON_SORT_KEYS | JSON_INDENT(2)) < 0)
			rc = RH_EXIT_FAILED;
		printf("\n");
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

static int list(void)
{
	int rc = RH_EXIT_MET;

	for (size_t i = 0; rh_providers[i]; i++) {
		const struct rh_provider_ops *ops = rh_providers[i];
		json_t *cat = NULL;

		printf("%-9s %s\n", ops->name, ops->summary);
		if (!ops->describe)
			continue;
		if (ops->describe(ops, &cat) < 0) {
			fprintf(stderr, "rehydra providers: %s\n", rh_error_last());
			rc = RH_EXIT_FAILED;
			continue;
		}
		{
			const char *k;
			json_t *v;
			size_t n = 0;

			printf("          catalog as of %s, %zu regions; ", s_at(cat, "as_of", "?"),
			       json_object_size(json_object_get(cat, "regions")));
			json_object_foreach(json_object_get(cat, "accelerators"), k, v)
			{
				if (strcmp(s_at(v, "status", ""), "unavailable") == 0)
					continue;
				printf("%s%s%s", n++ ? ", " : "", k,
				       strcmp(s_at(v, "status", ""), "unverified") == 0
					   ? " (unverified)"
					   : "");
			}
			printf("%s\n", n ? "" : "no accelerators mapped");
		}
		json_decref(cat);
	}
	return rc;
}

static int cmd_providers_run(int argc, char **argv)
{
	bool as_json = false;
	const char *sub = NULL, *name = NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			as_json = true;
		else if (argv[i][0] == '-' && argv[i][1])
			return rh_cli_usage_error(&rh_cmd_providers, "unknown option '%s'", argv[i]);
		else if (!sub)
			sub = argv[i];
		else if (!name)
			name = argv[i];
		else
			return rh_cli_usage_error(&rh_cmd_providers, "unexpected '%s'", argv[i]);
	}
	if (!sub || strcmp(sub, "list") == 0) {
		if (name)
			return rh_cli_usage_error(&rh_cmd_providers, "list takes no name");
		return list();
	}
	if (strcmp(sub, "show") == 0) {
		if (!name)
			return rh_cli_usage_error(&rh_cmd_providers, "show needs a provider name");
		return show(name, as_json);
	}
	return rh_cli_usage_error(&rh_cmd_providers, "unknown subcommand '%s': expected list "
						     "or show",
				  sub);
}

const struct rh_command rh_cmd_providers = {
	.name = "providers",
	.summary = "List the target providers; show one's catalog (regions, accelerators)",
	.usage = "usage: rehydra providers [list]\n"
		 "       rehydra providers show NAME [--json]\n\n"
		 "list   every provider adapter, with its catalog date and the accelerator\n"
		 "       classes it maps\n"
		 "show   a provider's target keys and outputs and, for the clouds, the dated\n"
		 "       catalog: regions with jurisdiction (country, bloc) and object storage,\n"
		 "       accelerator classes with the provider's instance type or preset, where\n"
		 "       they are offered, or why they are not\n\n"
		 "The catalog is read from $RH_CATALOG_DIR, else beside the binary, else\n"
		 "../share/rehydra/catalog.\n\n"
		 "exit status: 0 ok, 2 bad arguments, 3 the catalog could not be read\n",
	.run = cmd_providers_run,
};
