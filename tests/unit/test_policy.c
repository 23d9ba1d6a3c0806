/*
 * test_policy.c - the policy engine, table-driven: rule x candidate x
 * expected decision and reasons; the shipped rules load and carry the ids
 * the issue names; the loader rejects rules that would silently allow; a
 * scenario chooses the first allowed candidate, and a lost region that
 * would otherwise win is skipped; scenario files are validated with
 * positions and suggestions.
 */
#include "error.h"
#include "policy.h"
#include "scenario.h"
#include "testlib.h"

#include <stdlib.h>
#include <string.h>

/* A policy of its own, so the cases do not move when the shipped rules do. */
static const char *const test_rules =
    "{\"rehydra_policy\": 1, \"as_of\": \"2026-01-01\","
    " \"groups\": {\"d5\": {\"members\": [\"CN\", \"RU\"]},"
    "              \"d5-mo\": {\"members\": [\"group:d5\", \"MO\"]}},"
    " \"rules\": ["
    "  {\"id\": \"deny-h100\", \"effect\": \"deny\","
    "   \"match\": {\"accelerators\": [\"H100-80GB\"], \"entity_hq\": [\"group:d5-mo\"]},"
    "   \"reason\": \"{accelerator} for {entity} in {hq_country}\","
    "   \"citation\": \"test citation 2023-10-25\", \"effective_from\": \"2023-11-17\"},"
    "  {\"id\": \"deny-h100-cn\", \"effect\": \"deny\","
    "   \"match\": {\"accelerators\": [\"H100-80GB\"], \"entity_hq\": [\"CN\"]},"
    "   \"reason\": \"overlap {provider} {region}\","
    "   \"citation\": \"test citation 2025-01-01\", \"effective_from\": \"2025-01-01\"},"
    "  {\"id\": \"future\", \"effect\": \"deny\","
    "   \"match\": {\"accelerators\": [\"L40S\"]},"
    "   \"reason\": \"future {accelerator}\","
    "   \"citation\": \"test citation 2099-01-01\", \"effective_from\": \"2099-01-01\"},"
    "  {\"id\": \"deny-ru-region\", \"effect\": \"deny\", \"match\": {\"countries\": [\"RU\"]},"
    "   \"reason\": \"region in {country}\","
    "   \"citation\": \"test citation 2022-02-24\", \"effective_from\": \"2022-02-24\"},"
    "  {\"id\": \"residency\", \"effect\": \"require\", \"require\": \"residency\","
    "   \"reason\": \"{region} in {country} ({bloc}) not in {allowed}\","
    "   \"citation\": \"test citation 2018-05-25\", \"effective_from\": \"2018-05-25\"},"
    "  {\"id\": \"export\", \"effect\": \"require\", \"require\": \"model-export\","
    "   \"reason\": \"export to {jurisdictions} ({eccn}) not {country}\","
    "   \"citation\": \"test citation 2026-01-01\", \"effective_from\": \"2026-01-01\"}]}";

struct policy_case {
	const char *name;
	const char *hq;		 /* entity HQ; NULL = unknown */
	const char *rules;	 /* comma-separated ids in force */
	const char *lost;	 /* JSON array or NULL */
	const char *constraints; /* JSON object or NULL */
	const char *export_json; /* the manifest's export, or NULL (not read) */
	struct rh_candidate c;
	bool allowed;
	const char *denied_by; /* comma-separated deny rule ids, in order ("" = none) */
	const char *message;   /* a substring of the first reason's message, or NULL */
};

#define CAND(p, r, a, co, b)                                                                       \
	{                                                                                          \
		.provider = p, .region = r, .accelerator = a, .country = co, .bloc = b             \
	}

static const struct policy_case policy_cases[] = {
    {"h100 for a D:5 entity", "CN", "deny-h100", NULL, NULL, NULL,
     CAND("nebius", "eu-north1", "H100-80GB", "FI", "EU"), false, "deny-h100",
     "H100-80GB for Example in CN"},
    {"h100 for Macau through a nested group", "MO", "deny-h100", NULL, NULL, NULL,
     CAND("aws", "us-east-1", "H100-80GB", "US", "US"), false, "deny-h100", "in MO"},
    {"h100 for a DE entity", "DE", "deny-h100", NULL, NULL, NULL,
     CAND("nebius", "eu-north1", "H100-80GB", "FI", "EU"), true, "", NULL},
    {"another class for a D:5 entity", "CN", "deny-h100", NULL, NULL, NULL,
     CAND("nebius", "eu-north1", "L40S", "FI", "EU"), true, "", NULL},
    {"unknown country denied by default", "DE", "", NULL, NULL, NULL,
     CAND("ssh", "colo", "A10", NULL, NULL), false, "unknown-jurisdiction", "denied by default"},
    {"unknown country denied even with rules that would allow", "DE", "residency,export", NULL,
     "{\"blocs\": [\"EU\"]}", "{\"jurisdictions\": [\"*\"]}",
     CAND("ssh", "colo", "A10", NULL, NULL), false, "unknown-jurisdiction", NULL},
    {"unknown headquarters fails closed", NULL, "deny-h100", NULL, NULL, NULL,
     CAND("aws", "us-east-1", "H100-80GB", "US", "US"), false, "deny-h100",
     "headquarters country is unknown"},
    {"overlapping rules both say so", "CN", "deny-h100,deny-h100-cn", NULL, NULL, NULL,
     CAND("aws", "ap-northeast-1", "H100-80GB", "JP", "JP"), false, "deny-h100,deny-h100-cn", NULL},
    {"overlapping rules, only one matches", "RU", "deny-h100,deny-h100-cn", NULL, NULL, NULL,
     CAND("aws", "ap-northeast-1", "H100-80GB", "JP", "JP"), false, "deny-h100", NULL},
    {"a rule not yet in effect is not applied", "CN", "future", NULL, NULL, NULL,
     CAND("aws", "us-east-1", "L40S", "US", "US"), true, "", "not yet in effect"},
    {"region country rule", "DE", "deny-ru-region", NULL, NULL, NULL,
     CAND("x", "ru-1", "A10", "RU", "RU"), false, "deny-ru-region", "region in RU"},
    {"lost region", "DE", "", "[{\"provider\": \"nebius\", \"region\": \"eu-north1\"}]", NULL, NULL,
     CAND("nebius", "eu-north1", "L40S", "FI", "EU"), false, "lost",
     "provider nebius, region eu-north1"},
    {"lost entry needs all its keys", "DE", "",
     "[{\"provider\": \"nebius\", \"region\": \"eu-west1\"}]", NULL, NULL,
     CAND("nebius", "eu-north1", "L40S", "FI", "EU"), true, "", NULL},
    {"lost accelerator everywhere", "DE", "", "[{\"accelerator\": \"H20-96GB\"}]", NULL, NULL,
     CAND("alibaba", "cn-hangzhou", "H20-96GB", "CN", "CN"), false, "lost", NULL},
    {"lost country", "DE", "", "[{\"country\": \"CN\"}]", NULL, NULL,
     CAND("alibaba", "cn-hangzhou", "A10", "CN", "CN"), false, "lost", NULL},
    {"residency by bloc", "DE", "residency", NULL, "{\"blocs\": [\"EU\"]}", NULL,
     CAND("aws", "eu-west-1", "A10", "IE", "EU"), true, "", NULL},
    {"residency by country when the bloc does not match", "DE", "residency", NULL,
     "{\"countries\": [\"SG\"], \"blocs\": [\"EU\"]}", NULL,
     CAND("aws", "ap-southeast-1", "A10", "SG", "SG"), true, "", NULL},
    {"residency denies outside", "DE", "residency", NULL, "{\"blocs\": [\"EU\"]}", NULL,
     CAND("aws", "us-east-1", "A10", "US", "US"), false, "residency",
     "us-east-1 in US (US) not in EU"},
    {"residency without an allow-list fails closed", "DE", "residency", NULL, NULL, NULL,
     CAND("aws", "eu-west-1", "A10", "IE", "EU"), false, "residency", "no residency allow-list"},
    {"countries allow-list without the rule is a constraint", "DE", "", NULL,
     "{\"countries\": [\"FI\"]}", NULL, CAND("aws", "eu-west-1", "A10", "IE", "EU"), false,
     "constraints", "outside constraints"},
    {"provider and accelerator allow-lists", "DE", "", NULL,
     "{\"providers\": [\"aws\"], \"accelerators\": [\"L40S\"]}", NULL,
     CAND("nebius", "eu-north1", "H100-80GB", "FI", "EU"), false, "constraints,constraints",
     "provider nebius is not one of aws"},
    {"model export allows the bloc", "DE", "export", NULL, NULL,
     "{\"eccn\": \"EAR99\", \"jurisdictions\": [\"EU\"]}",
     CAND("nebius", "eu-north1", "L40S", "FI", "EU"), true, "", NULL},
    {"model export denies another country", "DE", "export", NULL, NULL,
     "{\"eccn\": \"EAR99\", \"jurisdictions\": [\"EU\", \"US\"]}",
     CAND("aws", "ap-southeast-1", "A10", "SG", "SG"), false, "export",
     "export to EU or US (EAR99) not SG"},
    {"model export star", "DE", "export", NULL, NULL, "{\"jurisdictions\": [\"*\"]}",
     CAND("aws", "ap-southeast-1", "A10", "SG", "SG"), true, "", NULL},
    {"model export without jurisdictions", "DE", "export", NULL, NULL, "{}",
     CAND("aws", "ap-southeast-1", "A10", "SG", "SG"), false, "export", "names no jurisdictions"},
    {"model export not read is a note", "DE", "export", NULL, NULL, NULL,
     CAND("aws", "ap-southeast-1", "A10", "SG", "SG"), true, "", "not checked"},
    {"not offered",
     "DE",
     "",
     NULL,
     NULL,
     NULL,
     {.provider = "aws",
      .region = "us-east-1",
      .accelerator = "H20-96GB",
      .country = "US",
      .bloc = "US",
      .not_offered = "aws does not offer H20-96GB"},
     false,
     "not-offered",
     "aws does not offer"},
};

static char **split(const char *s, size_t *n)
{
	char **v = calloc(16, sizeof(*v));
	char *copy = strdup(s ? s : ""), *p = copy, *comma;

	*n = 0;
	while (p && *p && *n < 15) {
		comma = strchr(p, ',');
		if (comma)
			*comma = '\0';
		v[(*n)++] = strdup(p);
		p = comma ? comma + 1 : NULL;
	}
	free(copy);
	return v;
}

static void free_split(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static struct rh_policy *test_policy(void)
{
	struct rh_policy *p = NULL;
	json_t *doc = json_loads(test_rules, 0, NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
	CU_ASSERT_EQUAL_FATAL(rh_policy_new(&p), 0);
	if (rh_policy_add(p, doc, "test.json") != 0)
		fprintf(stderr, "%s\n", rh_error_last());
	json_decref(doc);
	return p;
}

static void test_policy__table(void)
{
	struct rh_policy *p = test_policy();

	for (size_t i = 0; i < sizeof(policy_cases) / sizeof(policy_cases[0]); i++) {
		const struct policy_case *k = &policy_cases[i];
		size_t n_rules, n_deny;
		char **rules = split(k->rules, &n_rules);
		char **deny = split(k->denied_by, &n_deny);
		json_t *lost = k->lost ? json_loads(k->lost, 0, NULL) : NULL;
		json_t *cons = k->constraints ? json_loads(k->constraints, 0, NULL) : NULL;
		json_t *ex = k->export_json ? json_loads(k->export_json, 0, NULL) : NULL;
		struct rh_policy_input in = {
		    .entity_name = "Example",
		    .entity_hq = k->hq,
		    .lost = lost,
		    .constraints = cons,
		    .rules = (const char *const *)rules,
		    .model_export = ex,
		    .export_unknown = "not read in this test",
		    .today = "2026-12-03",
		};
		json_t *reasons = NULL, *r;
		bool allowed = !k->allowed;
		size_t got = 0, j;
		bool ok;

		ok = rh_policy_judge(&reasons, &allowed, p, &in, &k->c) == 0;
		ok = ok && allowed == k->allowed;
		json_array_foreach(reasons, j, r)
		{
			if (strcmp(json_string_value(json_object_get(r, "effect")), "deny") != 0)
				continue;
			ok = ok && got < n_deny &&
			     strcmp(json_string_value(json_object_get(r, "rule")), deny[got]) == 0;
			got++;
		}
		ok = ok && got == n_deny;
		if (k->message)
			ok = ok && json_array_size(reasons) > 0 &&
			     strstr(json_string_value(
					json_object_get(json_array_get(reasons, 0), "message")),
				    k->message);
		if (!ok) {
			char *dump = reasons ? json_dumps(reasons, 0) : NULL;

			fprintf(stderr, "\ncase '%s': allowed %d (want %d), reasons %s %s\n",
				k->name, allowed, k->allowed, dump ? dump : "(none)",
				rh_error_last());
			free(dump);
		}
		CU_ASSERT(ok);
		json_decref(reasons);
		json_decref(lost);
		json_decref(cons);
		json_decref(ex);
		free_split(rules, n_rules);
		free_split(deny, n_deny);
	}
	rh_policy_free(p);
}

static void test_policy__unknown_rule(void)
{
	struct rh_policy *p = test_policy();
	const char *const rules[] = {"deny-h1OO", NULL};
	struct rh_candidate c = CAND("aws", "us-east-1", "A10", "US", "US");
	struct rh_policy_input in = {.entity_hq = "DE", .rules = rules, .today = "2026-12-03"};
	json_t *reasons = NULL;
	bool allowed = true;

	CU_ASSERT_EQUAL(rh_policy_judge(&reasons, &allowed, p, &in, &c), RH_ENOTFOUND);
	CU_ASSERT_PTR_NULL(reasons);
	CU_ASSERT_FALSE(allowed);
	rh_policy_free(p);
}

static void test_policy__shipped_rules(void)
{
	static const char *const ids[] = {"us-ear-advanced-computing", "cn-h20-guidance",
					  "data-residency", "model-export", NULL};
	struct rh_policy *p = NULL;

	unsetenv("RH_POLICY_DIR");
	CU_ASSERT_EQUAL_FATAL(rh_policy_load(&p, NULL), 0);
	for (size_t i = 0; ids[i]; i++) {
		const json_t *r = rh_policy_rule(p, ids[i]);
		const char *cit = json_string_value(json_object_get(r, "citation"));

		CU_ASSERT_PTR_NOT_NULL(r);
		/* a citation names its date */
		CU_ASSERT(cit && (strstr(cit, "20") != NULL));
		CU_ASSERT_PTR_NOT_NULL(json_string_value(json_object_get(r, "effective_from")));
	}
	CU_ASSERT(rh_policy_needs_entity(p, "us-ear-advanced-computing"));
	CU_ASSERT(rh_policy_needs_residency(p, "data-residency"));
	CU_ASSERT_EQUAL(json_array_size(rh_policy_files(p)), 2);
	{
		/* the conservative reading: H100 denied to a CN entity anywhere */
		const char *const rules[] = {"us-ear-advanced-computing", "cn-h20-guidance", NULL};
		struct rh_candidate h100 = CAND("nebius", "eu-north1", "H100-80GB", "FI", "EU");
		struct rh_candidate h20 = CAND("alibaba", "cn-hangzhou", "H20-96GB", "CN", "CN");
		struct rh_policy_input in = {
		    .entity_hq = "CN", .rules = rules, .today = "2026-12-03"};
		json_t *reasons = NULL;
		bool allowed = true;

		CU_ASSERT_EQUAL(rh_policy_judge(&reasons, &allowed, p, &in, &h100), 0);
		CU_ASSERT_FALSE(allowed);
		json_decref(reasons);
		CU_ASSERT_EQUAL(rh_policy_judge(&reasons, &allowed, p, &in, &h20), 0);
		CU_ASSERT_FALSE(allowed);
		json_decref(reasons);
		in.entity_hq = "FI";
		CU_ASSERT_EQUAL(rh_policy_judge(&reasons, &allowed, p, &in, &h100), 0);
		CU_ASSERT_TRUE(allowed);
		json_decref(reasons);
	}
	rh_policy_free(p);
}

static void test_policy__loader_rejects(void)
{
	static const struct {
		const char *rule;
		const char *msg;
	} bad[] = {
	    {"{\"id\": \"x\", \"effect\": \"deny\", \"reason\": \"r\", \"citation\": \"c "
	     "2020-01-01\","
	     " \"effective_from\": \"2020-01-01\"}",
	     "would deny everything"},
	    {"{\"id\": \"x\", \"effect\": \"deny\", \"match\": {\"accelerators\": [\"A10\"]},"
	     " \"reason\": \"{nope}\", \"citation\": \"c 2020-01-01\","
	     " \"effective_from\": \"2020-01-01\"}",
	     "uses {nope}"},
	    {"{\"id\": \"x\", \"effect\": \"deny\", \"match\": {\"accelerators\": [\"A10\"]},"
	     " \"reason\": \"r\", \"citation\": \"c 2020-01-01\", \"effective_from\": \"soon\"}",
	     "effective_from must be a date"},
	    {"{\"id\": \"x\", \"effect\": \"deny\", \"match\": {\"entity_hq\": [\"group:none\"]},"
	     " \"reason\": \"r\", \"citation\": \"c 2020-01-01\","
	     " \"effective_from\": \"2020-01-01\"}",
	     "unknown group 'none'"},
	    {"{\"id\": \"x\", \"effect\": \"deny\", \"match\": {\"accelerators\": [\"A10\"]},"
	     " \"reason\": \"r\", \"effective_from\": \"2020-01-01\"}",
	     "citation must say"},
	    {"{\"id\": \"x\", \"effect\": \"allow\", \"match\": {\"accelerators\": [\"A10\"]},"
	     " \"reason\": \"r\", \"citation\": \"c 2020-01-01\","
	     " \"effective_from\": \"2020-01-01\"}",
	     "effect must be"},
	    {"{\"id\": \"x\", \"effect\": \"deny\", \"match\": {\"acelerators\": [\"A10\"]},"
	     " \"reason\": \"r\", \"citation\": \"c 2020-01-01\","
	     " \"effective_from\": \"2020-01-01\"}",
	     "acelerators is not a known key"},
	    {"{\"id\": \"x\", \"effect\": \"require\", \"require\": \"sunshine\","
	     " \"reason\": \"r\", \"citation\": \"c 2020-01-01\","
	     " \"effective_from\": \"2020-01-01\"}",
	     "require must be"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rh_policy *p = NULL;
		char text[2048];
		json_t *doc;

		snprintf(text, sizeof(text),
			 "{\"rehydra_policy\": 1, \"as_of\": \"2026-01-01\", \"rules\": [%s]}",
			 bad[i].rule);
		doc = json_loads(text, 0, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
		CU_ASSERT_EQUAL_FATAL(rh_policy_new(&p), 0);
		CU_ASSERT_EQUAL(rh_policy_add(p, doc, "bad.json"), RH_EINVAL);
		if (!strstr(rh_error_last(), bad[i].msg))
			fprintf(stderr, "\ncase %zu: %s\n", i, rh_error_last());
		CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), bad[i].msg));
		CU_ASSERT_PTR_NULL(rh_policy_rule(p, "x"));
		json_decref(doc);
		rh_policy_free(p);
	}
	{
		/* the same id twice across files */
		struct rh_policy *p = test_policy();
		json_t *doc = json_loads(test_rules, 0, NULL);

		CU_ASSERT_EQUAL(rh_policy_add(p, doc, "again.json"), RH_EINVAL);
		CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "defined"));
		json_decref(doc);
		rh_policy_free(p);
	}
}

static char *write_file(const char *dir, const char *name, const char *text)
{
	char *path = malloc(4200);
	FILE *f;

	snprintf(path, 4200, "%s/%s", dir, name);
	f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static const char *const runbook_text =
    "{\"rehydra\": 1, \"name\": \"rb\", \"target\": {\"provider\": \"local\"},"
    " \"steps\": [{\"id\": \"w\", \"do\": \"wait\", \"seconds\": 0}]}";

/* A lost region that would otherwise win: the choice moves on to the next
 * allowed candidate in prefer order, and the lost one says why. */
static void test_policy__lost_region_would_win(void)
{
	static const char *const scen =
	    "{\"rehydra_scenario\": 1, \"name\": \"s\", \"runbook\": \"rb.json\","
	    " \"entity\": {\"name\": \"E\", \"hq_country\": \"DE\"},"
	    " \"constraints\": {\"blocs\": [\"EU\"], \"accelerators\": [\"L40S\"]},"
	    " \"policy\": [\"data-residency\"], \"prefer\": [\"nebius\", \"aws\"]%s}";
	char *dir = rh_test_tmpdir();
	char text[2048];
	struct rh_policy *p = NULL;
	char *rb = write_file(dir, "rb.json", runbook_text);
	char *path;
	struct rh_diags d = RH_DIAGS_INIT;

	unsetenv("RH_POLICY_DIR");
	unsetenv("RH_CATALOG_DIR");
	CU_ASSERT_EQUAL_FATAL(rh_policy_load(&p, NULL), 0);
	for (int lost = 0; lost < 2; lost++) {
		struct rh_scenario *s = NULL;
		json_t *dec = NULL, *c;
		const json_t *chosen;
		size_t i;

		snprintf(text, sizeof(text), scen,
			 lost ? ", \"lost\": [{\"provider\": \"nebius\", \"region\": "
				"\"eu-north1\"}]"
			      : "");
		path = write_file(dir, "s.json", text);
		CU_ASSERT_EQUAL_FATAL(rh_scenario_load(&s, path, p, &d), 0);
		CU_ASSERT_EQUAL_FATAL(rh_scenario_decide(&dec, s, p, NULL, NULL, NULL), 0);
		chosen = json_object_get(dec, "chosen");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(chosen, "provider")),
				       lost ? "aws" : "nebius");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(chosen, "region")),
				       lost ? "eu-central-1" : "eu-north1");
		CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(chosen, "accelerator")),
				       "L40S");
		json_array_foreach(json_object_get(dec, "candidates"), i, c)
		{
			if (strcmp(json_string_value(json_object_get(c, "provider")), "nebius") ||
			    strcmp(json_string_value(json_object_get(c, "region")), "eu-north1") ||
			    strcmp(json_string_value(json_object_get(c, "accelerator")), "L40S"))
				continue;
			CU_ASSERT_EQUAL(json_is_true(json_object_get(c, "allowed")), !lost);
			if (lost)
				CU_ASSERT_STRING_EQUAL(
				    json_string_value(json_object_get(
					json_array_get(json_object_get(c, "reasons"), 0), "rule")),
				    "lost");
		}
		json_decref(dec);
		rh_scenario_free(s);
		free(path);
	}
	rh_policy_free(p);
	free(rb);
	rh_test_rm_rf(dir);
	free(dir);
}

static void test_policy__scenario_diagnostics(void)
{
	static const struct {
		const char *text;
		int line, col;
		const char *msg;
	} bad[] = {
	    {"{\"rehydra_scenario\": 1, \"name\": \"s\", \"runbook\": \"rb.json\",\n"
	     " \"cadense_days\": 30}",
	     2, 2, "did you mean 'cadence_days'?"},
	    {"{\"rehydra_scenario\": 1, \"name\": \"s\", \"runbook\": \"rb.json\",\n"
	     " \"policy\": [\"data-residency\", \"cn-h2O-guidance\"],\n"
	     " \"constraints\": {\"blocs\": [\"EU\"]}}",
	     2, 31, "did you mean 'cn-h20-guidance'?"},
	    {"{\"rehydra_scenario\": 1, \"name\": \"s\", \"runbook\": \"rb.json\",\n"
	     " \"policy\": [\"us-ear-advanced-computing\"]}",
	     2, 13, "add \"entity\""},
	    {"{\"rehydra_scenario\": 1, \"name\": \"s\", \"runbook\": \"rb.json\",\n"
	     " \"lost\": [{\"provider\": \"alibabba\"}]}",
	     2, 24, "did you mean 'alibaba'?"},
	    {"{\"rehydra_scenario\": 1, \"name\": \"s\", \"runbook\": \"rb.json\",\n"
	     " \"constraints\": {\"accelerators\": [\"H100\"]}}",
	     2, 35, "unknown accelerator class 'H100'"},
	    {"{\"rehydra_scenario\": 1, \"name\": \"s\", \"runbook\": \"missing.json\"}", 1, 49,
	     "cannot read"},
	    {"{\"rehydra_scenario\": 1, \"name\": \"s\", \"runbook\": \"rb.json\",\n"
	     " \"entity\": {\"hq_country\": \"china\"}}",
	     2, 27, "upper-case country code"},
	};
	char *dir = rh_test_tmpdir();
	struct rh_policy *p = NULL;
	char *rb = write_file(dir, "rb.json", runbook_text);

	CU_ASSERT_EQUAL_FATAL(rh_policy_load(&p, NULL), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rh_diags d = RH_DIAGS_INIT;
		struct rh_scenario *s = NULL;
		char *path = write_file(dir, "bad.json", bad[i].text);
		bool found = false;

		CU_ASSERT_EQUAL(rh_scenario_load(&s, path, p, &d), RH_EINVAL);
		CU_ASSERT_PTR_NULL(s);
		for (size_t k = 0; k < d.count; k++)
			if (strstr(d.items[k].message, bad[i].msg) &&
			    d.items[k].line == bad[i].line && d.items[k].column == bad[i].col)
				found = true;
		if (!found)
			for (size_t k = 0; k < d.count; k++)
				fprintf(stderr, "\ncase %zu: %d:%d: %s\n", i, d.items[k].line,
					d.items[k].column, d.items[k].message);
		CU_ASSERT(found);
		rh_diags_clear(&d);
		free(path);
	}
	rh_policy_free(p);
	free(rb);
	rh_test_rm_rf(dir);
	free(dir);
}

RH_TEST_MAIN("policy", {"table", test_policy__table}, {"unknown_rule", test_policy__unknown_rule},
	     {"shipped_rules", test_policy__shipped_rules},
	     {"loader_rejects", test_policy__loader_rejects},
	     {"lost_region_would_win", test_policy__lost_region_would_win},
	     {"scenario_diagnostics", test_policy__scenario_diagnostics})
