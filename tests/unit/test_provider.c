/*
 * test_provider.c - the provider contract seen from both sides: the
 * adapter table (the clouds embed their ops table in a shared definition,
 * found back from the ops alone), and the provider context the
 * orchestrator creates for a runbook (rh_drill_provider_new): its plain
 * runbook values and its expander over the one scope builder's render
 * scope, with the bindings an adapter merges over it.
 *
 * Runbooks are written to temporary files and loaded with rh_runbook_load;
 * the aws render reads the source tree's catalog and templates (no
 * terraform runs, nothing is created but files in a temporary directory).
 */
#include "cloud.h"
#include "engine.h"
#include "error.h"
#include "provider.h"
#include "runbook.h"
#include "testlib.h"

#define RB_TEMPLATE                                                                                \
	"{ \"rehydra\": 1, \"name\": \"contract\", \"rto_target_s\": 60,\n"                        \
	"  \"vars\": { \"who\": \"ops\", \"cidr\": \"203.0.113.0/24\" },\n"                        \
	"  \"model\": { \"registry\": \"reg\", \"name\": \"m-${vars.who}\", \"version\": "         \
	"\"1.0.0\" },\n"                                                                           \
	"  \"target\": %s,\n"                                                                      \
	"  \"stack\": { \"command\": [\"srv\", \"${rehydra.bindir}/x\", \"${target.host}\", "      \
	"\"${target.port}\", \"${model.path}\", \"${model.name}\"] },\n"                           \
	"  \"steps\": [ { \"id\": \"p\", \"do\": \"provision\" } ] }\n"

#define LOCAL_TARGET "{ \"provider\": \"local\", \"region\": \"local\" }"
#define AWS_TARGET                                                                                 \
	"{ \"provider\": \"aws\", \"region\": \"us-east-1\", \"accelerator\": \"L40S\", "          \
	"\"allowed_cidr\": \"${vars.cidr}\", \"operator_cidr\": \"198.51.100.0/24\", "             \
	"\"serving_port\": 8123 }"

struct fx {
	char *dir;
	struct rh_runbook *rb;
	struct rh_provider_ctx *p;
};

static void fx_init(struct fx *f, const char *target)
{
	struct rh_diags diags = RH_DIAGS_INIT;
	char text[4096];
	char *path;

	memset(f, 0, sizeof(*f));
	f->dir = rh_test_tmpdir();
	path = rh_test_path(f->dir, "runbook.json");
	snprintf(text, sizeof(text), RB_TEMPLATE, target);
	rh_test_write_file(path, text);
	if (rh_runbook_load(&f->rb, path, NULL, 0, &diags) < 0) {
		for (size_t i = 0; i < diags.count; i++)
			fprintf(stderr, "  %d:%d %s\n", diags.items[i].line, diags.items[i].column,
				diags.items[i].message);
	}
	rh_diags_clear(&diags);
	free(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f->rb);
	CU_ASSERT_EQUAL_FATAL(rh_drill_provider_new(&f->p, f->rb->provider, f->rb->target, f->rb,
						    "20260101T000000Z-contract-abcdef", NULL, NULL),
			      0);
}

static void fx_free(struct fx *f)
{
	rh_provider_ctx_free(f->p);
	rh_runbook_free(f->rb);
	rh_test_rm_rf(f->dir);
	free(f->dir);
}

/* Expands the string `raw` with `bind` (JSON text or NULL); *out new. */
static int expand_str(struct fx *f, const char *raw, const char *bind, char **out)
{
	json_t *v = json_string(raw), *b = bind ? json_loads(bind, 0, NULL) : NULL, *r = NULL;
	int rc;

	*out = NULL;
	rc = rh_provider_expand(f->p, &r, v, b);
	if (rc == 0)
		*out = strdup(json_string_value(r));
	json_decref(v);
	json_decref(b);
	json_decref(r);
	return rc;
}

/* The source tree's catalog and templates (a concurrent build rewrites the
 * build directory's copies). */
static void set_data_dirs(void)
{
	const char *src = getenv("RH_SRC") ? getenv("RH_SRC") : ".";
	char dir[4096];

	snprintf(dir, sizeof(dir), "%s/providers/catalog", src);
	setenv("RH_CATALOG_DIR", dir, 1);
	snprintf(dir, sizeof(dir), "%s/templates", src);
	setenv("RH_TEMPLATES_DIR", dir, 1);
}

static void test_provider__table(void)
{
	const struct rh_provider_ops *aws = rh_provider_find("aws");
	const struct rh_provider_ops *neb = rh_provider_find("nebius");
	json_t *cat = NULL;
	size_t n = 0;

	for (; rh_providers[n]; n++) {
		CU_ASSERT_EQUAL(rh_providers[n]->version, RH_PROVIDER_OPS_VERSION);
		CU_ASSERT_PTR_NOT_NULL(rh_providers[n]->provision);
		CU_ASSERT_PTR_NOT_NULL(rh_providers[n]->teardown);
	}
	CU_ASSERT_EQUAL(n, 5);
	/* the clouds' tables are the first member of their definitions */
	CU_ASSERT_PTR_EQUAL(aws, &rh_cloud_aws.ops);
	CU_ASSERT_PTR_EQUAL(rh_provider_find("alibaba"), &rh_cloud_alibaba.ops);
	CU_ASSERT_PTR_EQUAL(neb, &rh_cloud_nebius.ops);
	CU_ASSERT_STRING_EQUAL(rh_cloud_def_of(aws)->tf_provider, "aws");
	CU_ASSERT_STRING_EQUAL(rh_cloud_def_of(rh_provider_find("alibaba"))->tf_provider,
			       "alicloud");
	CU_ASSERT_STRING_EQUAL(rh_cloud_def_of(neb)->tf_provider, "nebius");
	/* one set of generic hooks, no per-cloud forwarding */
	CU_ASSERT_PTR_EQUAL(aws->provision, neb->provision);
	CU_ASSERT_PTR_EQUAL(aws->validate, neb->validate);
	CU_ASSERT_PTR_EQUAL(aws->describe, neb->describe);
	CU_ASSERT_PTR_EQUAL(aws->output_keys, neb->output_keys);
	CU_ASSERT_STRING_EQUAL(aws->name, "aws");
	/* a hook without a context finds its cloud from `self` */
	set_data_dirs();
	CU_ASSERT_EQUAL_FATAL(neb->describe(neb, &cat), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(cat, "provider")), "nebius");
	json_decref(cat);
	CU_ASSERT_EQUAL_FATAL(aws->describe(aws, &cat), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(cat, "provider")), "aws");
	json_decref(cat);
}

static void test_provider__runbook_values(void)
{
	struct fx f;

	fx_init(&f, LOCAL_TARGET);
	CU_ASSERT_STRING_EQUAL(f.p->runbook.name, "contract");
	CU_ASSERT_STRING_EQUAL(f.p->runbook.dir, f.rb->dir);
	CU_ASSERT_PTR_EQUAL(f.p->runbook.stack, f.rb->stack);
	CU_ASSERT_PTR_EQUAL(f.p->target, f.rb->target);
	CU_ASSERT_PTR_EQUAL(f.p->ops, &rh_provider_local);
	CU_ASSERT_PTR_NULL(f.p->drill_dir);
	fx_free(&f);
}

static void test_provider__expander(void)
{
	static const char *const bind = "{\"target\": {\"host\": \"0.0.0.0\"}, "
					"\"model\": {\"path\": \"/opt/m\"}}";
	struct fx f;
	char *out = NULL;

	fx_init(&f, LOCAL_TARGET);
	/* this machine's bindir means nothing on a target: empty */
	CU_ASSERT_EQUAL(expand_str(&f, "[${rehydra.bindir}]", NULL, &out), 0);
	CU_ASSERT_STRING_EQUAL(out, "[]");
	free(out);
	CU_ASSERT_EQUAL(expand_str(&f, "${model.name}@${model.version} ${vars.who}", NULL, &out),
			0);
	CU_ASSERT_STRING_EQUAL(out, "m-ops@1.0.0 ops");
	free(out);
	CU_ASSERT_EQUAL(expand_str(&f, "${drill.id}", NULL, &out), 0);
	CU_ASSERT_STRING_EQUAL(out, "20260101T000000Z-contract-abcdef");
	free(out);
	/* bindings merge over a namespace key by key: region stays */
	CU_ASSERT_EQUAL(expand_str(&f,
				   "${target.host} ${target.region} ${model.path} "
				   "${model.name}",
				   bind, &out),
			0);
	CU_ASSERT_STRING_EQUAL(out, "0.0.0.0 local /opt/m m-ops");
	free(out);
	/* and leave the scope as it was */
	CU_ASSERT_EQUAL(expand_str(&f, "${target.host}", NULL, &out), RH_ENOTFOUND);
	CU_ASSERT_EQUAL(expand_str(&f, "${model.path}", NULL, &out), RH_ENOTFOUND);
	/* what only a running drill learns is not in the render scope */
	CU_ASSERT_EQUAL(expand_str(&f, "${model.sha256}", bind, &out), RH_ENOTFOUND);
	CU_ASSERT_EQUAL(expand_str(&f, "${steps.p.outputs.host}", bind, &out), RH_ENOTFOUND);
	CU_ASSERT_PTR_NULL(out);
	fx_free(&f);
}

static void test_provider__no_expander(void)
{
	struct rh_provider_ctx *p = NULL;
	struct rh_provider_call call = RH_PROVIDER_CALL_INIT;
	json_t *target = json_pack("{s:s}", "provider", "local");
	json_t *other = json_pack("{s:s}", "provider", "other");
	json_t *v = json_string("x"), *out = NULL;

	CU_ASSERT_EQUAL_FATAL(rh_provider_ctx_new(&p, &rh_provider_local, target, "d", NULL, NULL),
			      0);
	CU_ASSERT_EQUAL(rh_provider_expand(p, &out, v, NULL), RH_EUNSUPPORTED);
	CU_ASSERT_PTR_NULL(out);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "local provider"));
	/* the call's (expanded) target wins over the context's */
	CU_ASSERT_PTR_EQUAL(rh_provider_target(p, &call), target);
	CU_ASSERT_PTR_EQUAL(rh_provider_target(p, NULL), target);
	call.target = other;
	CU_ASSERT_PTR_EQUAL(rh_provider_target(p, &call), other);
	CU_ASSERT(call.grace_s < 0);
	CU_ASSERT_EQUAL(call.version, RH_PROVIDER_CALL_VERSION);
	rh_provider_ctx_free(p);
	json_decref(target);
	json_decref(other);
	json_decref(v);
}

/* The cloud render goes through the orchestrator's expander with the
 * instance's own bindings, and never sees this machine's bindir. */
static void test_provider__cloud_render(void)
{
	char out_dir[4096], tfvars[4200];
	json_t *tv, *cmd;
	struct fx f;

	set_data_dirs();
	fx_init(&f, AWS_TARGET);
	CU_ASSERT_PTR_EQUAL_FATAL(f.p->ops, &rh_cloud_aws.ops);
	snprintf(out_dir, sizeof(out_dir), "%s/out", f.dir);
	CU_ASSERT_EQUAL_FATAL(f.p->ops->render(f.p, out_dir), 0);
	snprintf(tfvars, sizeof(tfvars), "%s/terraform.tfvars.json", out_dir);
	tv = json_load_file(tfvars, 0, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(tv);
	cmd = json_object_get(tv, "stack_command");
	CU_ASSERT_EQUAL_FATAL(json_array_size(cmd), 6);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(cmd, 1)), "/x");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(cmd, 2)), "0.0.0.0");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(cmd, 3)), "8123");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(cmd, 4)), RH_CLOUD_MODEL_DIR);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(cmd, 5)), "m-ops");
	/* the target was expanded against the render scope too */
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(tv, "allowed_cidr")),
			       "203.0.113.0/24");
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(json_object_get(tv, "labels"), "rehydra-runbook")),
	    "contract");
	json_decref(tv);
	fx_free(&f);
}

RH_TEST_MAIN("provider", {"table", test_provider__table},
	     {"runbook_values", test_provider__runbook_values},
	     {"expander", test_provider__expander}, {"no_expander", test_provider__no_expander},
	     {"cloud_render", test_provider__cloud_render})
