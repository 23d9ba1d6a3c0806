/*
 * test_catalog.c - the provider catalog: the shipped files are valid, the
 * checker rejects what would send a drill to the wrong place, lookups say
 * what is offered instead, and drill ids become safe cloud names.
 */
#include "catalog.h"
#include "cloud.h"
#include "error.h"
#include "testlib.h"

#include <stdlib.h>
#include <string.h>

static void test_catalog__shipped_files_valid(void)
{
	static const char *const names[] = { "aws", "alibaba", "nebius", NULL };
	json_t *classes = NULL;

	unsetenv("RH_CATALOG_DIR");
	CU_ASSERT_EQUAL_FATAL(rh_catalog_classes(&classes), 0);
	for (size_t i = 0; names[i]; i++) {
		json_t *cat = NULL;

		CU_ASSERT_EQUAL(rh_catalog_load(&cat, names[i]), 0);
		if (!cat) {
			fprintf(stderr, "%s: %s\n", names[i], rh_error_last());
			continue;
		}
		/* every class of the table appears, mapped or marked unavailable */
		{
			const char *k;
			json_t *v;

			json_object_foreach(json_object_get(classes, "classes"), k, v)
				CU_ASSERT_PTR_NOT_NULL(json_object_get(
				    json_object_get(cat, "accelerators"), k));
		}
		json_decref(cat);
	}
	json_decref(classes);
}

static void test_catalog__lookups(void)
{
	json_t *cat = NULL;
	const json_t *e = NULL;

	unsetenv("RH_CATALOG_DIR");
	CU_ASSERT_EQUAL_FATAL(rh_catalog_load(&cat, "aws"), 0);
	CU_ASSERT_EQUAL(rh_catalog_region(&e, cat, "eu-central-1"), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
				   json_object_get(e, "jurisdiction"), "bloc")),
			       "EU");
	CU_ASSERT_EQUAL(rh_catalog_region(&e, cat, "cn-beijing"), RH_ENOTFOUND);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "known regions are us-east-1"));
	CU_ASSERT_EQUAL(rh_catalog_accelerator(&e, cat, "L40S", "us-east-1"), 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(e, "instance_type")),
			       "g6e.xlarge");
	CU_ASSERT_EQUAL(rh_catalog_accelerator(&e, cat, "H20-96GB", "us-east-1"),
			RH_EUNSUPPORTED);
	CU_ASSERT_PTR_NULL(e);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "does not offer H20-96GB"));
	CU_ASSERT_EQUAL(rh_catalog_accelerator(&e, cat, "H100-80GB", "eu-west-1"),
			RH_EUNSUPPORTED);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "there it offers A10"));
	CU_ASSERT_EQUAL(rh_catalog_accelerator(&e, cat, "TPU", "us-east-1"), RH_ENOTFOUND);
	json_decref(cat);
	CU_ASSERT_EQUAL(rh_catalog_load(&cat, "../etc"), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_catalog_load(&cat, "nosuchcloud"), RH_ENOTFOUND);
}

/* A catalog dir with accelerators.json and one provider file. */
static char *catalog_dir(const char *provider_json)
{
	char *dir = rh_test_tmpdir();
	char *cls = rh_test_path(dir, "accelerators.json");
	char *prov = rh_test_path(dir, "x.json");

	rh_test_write_file(cls, "{\"as_of\":\"2026-01-01\",\"classes\":{\"A10\":{\"gpu_memory_gb\":24},"
				"\"L40S\":{\"gpu_memory_gb\":48}}}");
	rh_test_write_file(prov, provider_json);
	free(cls);
	free(prov);
	setenv("RH_CATALOG_DIR", dir, 1);
	return dir;
}

#define GOOD_HEAD                                                                           \
	"{\"provider\":\"x\",\"as_of\":\"2026-01-01\",\"ssh_user\":\"u\","                  \
	"\"terraform\":{\"source\":\"a/b\",\"version\":\"~> 1.0\"},"                          \
	"\"regions\":{\"r1\":{\"jurisdiction\":{\"country\":\"DE\",\"bloc\":\"EU\"},"        \
	"\"object_storage\":{\"endpoint\":\"https://s3.r1\",\"style\":\"path\"}}},"

static void test_catalog__checker_rejects(void)
{
	static const struct {
		const char *json;
		const char *msg;
	} cases[] = {
		{ GOOD_HEAD "\"accelerators\":{\"A10\":{\"status\":\"available\",\"gpus\":1,"
			    "\"gpu_memory_gb\":24,\"instance_type\":\"t\",\"regions\":[\"r1\"]}}}",
		  NULL },
		{ GOOD_HEAD "\"accelerators\":{\"A10\":{\"status\":\"available\",\"gpus\":1,"
			    "\"gpu_memory_gb\":24,\"instance_type\":\"t\",\"regions\":[\"r9\"]}}}",
		  "missing from /regions" },
		{ GOOD_HEAD "\"accelerators\":{\"A10\":{\"status\":\"unavailable\"}}}",
		  "gives no \"reason\"" },
		/* sizes: larger ones only, each naming its type */
		{ GOOD_HEAD "\"accelerators\":{\"A10\":{\"status\":\"available\",\"gpus\":1,"
			    "\"gpu_memory_gb\":24,\"instance_type\":\"t\",\"regions\":[\"r1\"],"
			    "\"sizes\":[{\"gpus\":4,\"instance_type\":\"t4\"},"
			    "{\"gpus\":8,\"instance_type\":\"t8\"}]}}}",
		  NULL },
		{ GOOD_HEAD "\"accelerators\":{\"A10\":{\"status\":\"available\",\"gpus\":1,"
			    "\"gpu_memory_gb\":24,\"instance_type\":\"t\",\"regions\":[\"r1\"],"
			    "\"sizes\":[{\"gpus\":8,\"instance_type\":\"t8\"},"
			    "{\"gpus\":4,\"instance_type\":\"t4\"}]}}}",
		  "sizes/1 needs \"gpus\" above the previous" },
		{ GOOD_HEAD "\"accelerators\":{\"A10\":{\"status\":\"available\",\"gpus\":1,"
			    "\"gpu_memory_gb\":24,\"instance_type\":\"t\",\"regions\":[\"r1\"],"
			    "\"sizes\":[{\"gpus\":8}]}}}",
		  "sizes/0 needs" },
		{ GOOD_HEAD "\"accelerators\":{\"A10\":{\"status\":\"available\",\"gpus\":1,"
			    "\"gpu_memory_gb\":24,\"regions\":[\"r1\"]}}}",
		  "names no \"instance_type\"" },
		{ GOOD_HEAD "\"accelerators\":{\"B200\":{\"status\":\"unavailable\","
			    "\"reason\":\"r\"}}}",
		  "not a class listed" },
		{ GOOD_HEAD "\"accelerators\":{\"A10\":{\"status\":\"maybe\"}}}", "status must be" },
		{ "{\"provider\":\"x\",\"as_of\":\"yesterday\"}", "as_of must be a date" },
		{ "{\"provider\":\"x\",\"as_of\":\"2026-01-01\",\"ssh_user\":\"u\","
		  "\"terraform\":{\"source\":\"a/b\"}}",
		  "pinned \"version\"" },
		{ "{\"provider\":\"x\",\"as_of\":\"2026-01-01\",\"ssh_user\":\"u\","
		  "\"terraform\":{\"source\":\"a/b\",\"version\":\"1\"},\"regions\":{\"r1\":"
		  "{\"jurisdiction\":{\"country\":\"Germany\",\"bloc\":\"EU\"}}},"
		  "\"accelerators\":{}}",
		  "jurisdiction needs" },
		{ "{\"provider\":\"y\",\"as_of\":\"2026-01-01\",\"ssh_user\":\"u\","
		  "\"terraform\":{\"source\":\"a/b\",\"version\":\"1\"},\"regions\":{\"r1\":"
		  "{\"jurisdiction\":{\"country\":\"DE\",\"bloc\":\"EU\"},\"object_storage\":"
		  "{\"endpoint\":\"https://e\",\"style\":\"path\"}}},\"accelerators\":{}}",
		  "/provider says 'y'" },
		{ "{not json", "x.json:1:" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *dir = catalog_dir(cases[i].json);
		json_t *cat = NULL;
		int rc = rh_catalog_load(&cat, "x");

		if (!cases[i].msg) {
			CU_ASSERT_EQUAL(rc, 0);
			CU_ASSERT_PTR_NOT_NULL(cat);
		} else {
			CU_ASSERT_EQUAL(rc, RH_EINVAL);
			CU_ASSERT_PTR_NULL(cat);
			if (!strstr(rh_error_last(), cases[i].msg))
				fprintf(stderr, "case %zu: got '%s'\n", i, rh_error_last());
			CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), cases[i].msg));
		}
		json_decref(cat);
		rh_test_rm_rf(dir);
		free(dir);
	}
	unsetenv("RH_CATALOG_DIR");
}

static void test_catalog__labels(void)
{
	char buf[64];

	rh_cloud_label(buf, sizeof(buf), "20261121T043318Z-qwen3_Big.run-1a2b3c", 60);
	CU_ASSERT_STRING_EQUAL(buf, "20261121t043318z-qwen3-big-run-1a2b3c");
	/* too long: the head and the random tail survive, within the limit */
	rh_cloud_label(buf, sizeof(buf),
		       "20261121T043318Z-a-very-long-runbook-name-that-goes-on-and-on-9f8e7d", 40);
	CU_ASSERT(strlen(buf) <= 40);
	CU_ASSERT_EQUAL(strncmp(buf, "20261121t043318z-a-very", 23), 0);
	CU_ASSERT_STRING_EQUAL(buf + strlen(buf) - 7, "-9f8e7d");
	CU_ASSERT_PTR_NULL(strstr(buf, "--"));
	rh_cloud_label(buf, sizeof(buf), "..__..", 60);
	CU_ASSERT_STRING_EQUAL(buf, "drill");
	rh_cloud_label(buf, sizeof(buf), "-Lead-", 60);
	CU_ASSERT_STRING_EQUAL(buf, "lead");
}

RH_TEST_MAIN("catalog", { "shipped_files_valid", test_catalog__shipped_files_valid },
	     { "lookups", test_catalog__lookups },
	     { "checker_rejects", test_catalog__checker_rejects },
	     { "labels", test_catalog__labels })
