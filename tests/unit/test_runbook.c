/*
 * test_runbook.c - the runbook parser and validator.
 *
 * Most cases are small inline runbooks written with ' for " (JSON needs no
 * apostrophes here) and one '@' marking where the diagnostic must point; the
 * expected line:column is computed from the marker, so the table states the
 * intent ("the error is at this token") rather than numbers copied from a
 * run. Each case asserts that a diagnostic sits exactly there and that its
 * message contains a fragment.
 */
#include "error.h"
#include "provider.h"
#include "runbook.h"
#include "sha256.h"
#include "step_run.h"
#include "steps.h"
#include "suggest.h"
#include "testlib.h"

#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

static char *tmp;

/* Writes `tmpl` with ' -> " and the '@' marker removed to tmp/NAME; returns
 * the path (new) and the marker's line:column (0:0 without a marker). */
static char *write_case(const char *name, const char *tmpl, int *line, int *col)
{
	char *path = rh_test_path(tmp, name);
	size_t n = strlen(tmpl);
	char *text = malloc(n + 1);
	size_t o = 0;
	int l = 1, c = 1;

	CU_ASSERT_FATAL(text != NULL);
	*line = 0;
	*col = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char b = (unsigned char)tmpl[i];

		if (b == '@') {
			*line = l;
			*col = c;
			continue;
		}
		text[o++] = b == '\'' ? '"' : (char)b;
		if (b == '\n') {
			l++;
			c = 1;
		} else if ((b & 0xC0) != 0x80) {
			c++;
		}
	}
	text[o] = '\0';
	rh_test_write_file(path, text);
	free(text);
	return path;
}

static void dump(const struct rh_diags *d)
{
	for (size_t i = 0; i < d->count; i++)
		fprintf(stderr, "    %d:%d: %s\n", d->items[i].line, d->items[i].column,
			d->items[i].message);
}

struct bad_case {
	const char *name;
	const char *text;
	const char *fragment;
};

#define HEAD "{'rehydra': 1, 'name': 't',\n"
#define TARGET " 'target': {'provider': 'local'},\n"
#define MODEL " 'model': {'registry': 'r', 'name': 'm', 'version': '1'},\n"
#define STACK " 'stack': {'command': ['x']},\n"

static const struct bad_case bad_cases[] = {
    {"empty", "@", "the file is empty"},
    {"blank", "@  \n", "the file is empty"},
    /* jansson points at the last character it read. */
    {"truncated", HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1@}",
     "unexpected end of file"},
    {"trailing", HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1}]}\n@xyz",
     "unexpected text after the end"},
    {"not_object", "@[1, 2]", "must be a json object"},
    {"string_doc", "@'x'", "invalid json"},
    {"dup_key", HEAD " @'name': 'u',\n 'steps': []}", "duplicate key \"name\""},
    {"huge_int",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': "
	  "@99999999999999999999}]}",
     "too large"},
    {"huge_real", HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': @1e400}]}", "too large"},
    {"bad_utf8", HEAD " 'description': @'\xff',\n 'steps': []}", "invalid utf-8"},
    {"control_char", HEAD " 'description': @'a\x01',\n 'steps': []}", "control character"},
    {"nul_escape", HEAD " 'description': @'a\\u0000',\n 'steps': []}", "\\u0000 is not allowed"},
    {"missing_steps", "@{'rehydra': 1, 'name': 't'}", "missing required key 'steps'"},
    {"max_parallel_zero", HEAD " 'max_parallel': @0,\n 'steps': []}",
     "max_parallel: expected an integer from 1 to 1024"},
    {"missing_name", "@{'rehydra': 1,\n 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1}]}",
     "missing required key 'name' in the runbook"},
    {"missing_format", "@{'name': 't',\n 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1}]}",
     "missing required key 'rehydra'"},
    {"format_2",
     "{'rehydra': @2, 'name': 't',\n 'steps': [{'id': 'a', 'do': 'wait', "
     "'seconds': 1}]}",
     "unsupported runbook format 2"},
    {"format_string",
     "{'rehydra': @'1', 'name': 't',\n 'steps': [{'id': 'a', 'do': 'wait', "
     "'seconds': 1}]}",
     "got a string"},
    {"name_type",
     "{'rehydra': 1, 'name': @5,\n 'steps': [{'id': 'a', 'do': 'wait', "
     "'seconds': 1}]}",
     "name: expected a string, got a number"},
    {"name_format",
     "{'rehydra': 1, 'name': @'a b',\n 'steps': [{'id': 'a', 'do': 'wait', "
     "'seconds': 1}]}",
     "letters, digits"},
    {"steps_empty", HEAD " 'steps': @[]}", "non-empty array of steps"},
    {"steps_type", HEAD " 'steps': @{}}", "got an object"},
    {"step_not_object", HEAD " 'steps': [@3]}", "expected a step object"},
    {"rto_negative",
     HEAD " 'rto_target_s': @-5,\n 'steps': [{'id': 'a', 'do': 'wait', "
	  "'seconds': 1}]}",
     "greater than 0, got -5"},
    {"rto_huge",
     HEAD " 'rto_target_s': @1e308,\n 'steps': [{'id': 'a', 'do': 'wait', "
	  "'seconds': 1}]}",
     "no greater than 604800"},
    {"timeout_huge",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1,\n"
	  "  'timeout_s': @1e308}]}",
     "timeout_s: expected a number of seconds"},
    {"timeout_zero",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1,\n"
	  "  'timeout_s': @0}]}",
     "greater than 0, got 0"},
    {"timeout_type",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1,\n"
	  "  'timeout_s': @'60'}]}",
     "got a string"},
    {"retries_negative",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1,\n"
	  "  'retries': @-1}]}",
     "retries: expected an integer from 0 to 100"},
    {"retries_real",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1,\n"
	  "  'retries': @1.5}]}",
     "got 1.5"},
    {"retries_big",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1,\n"
	  "  'retries': @101}]}",
     "got 101"},
    {"backoff_jitter",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1,\n"
	  "  'backoff': {'jitter': @2}}]}",
     "jitter: expected a number from 0 to 1"},
    {"backoff_factor",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1,\n"
	  "  'backoff': {'factor': @0.5}}]}",
     "factor"},
    {"restores_type",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1,\n"
	  "  'restores_service': @'yes'}]}",
     "expected true or false"},
    {"unknown_top",
     HEAD " @'stpes': [],\n 'steps': [{'id': 'a', 'do': 'wait', "
	  "'seconds': 1}]}",
     "unknown key 'stpes' in the runbook: did you mean 'steps'?"},
    {"unknown_top_far",
     HEAD " @'zzzzzz': 1,\n 'steps': [{'id': 'a', 'do': 'wait', "
	  "'seconds': 1}]}",
     "expected rehydra, name"},
    {"unknown_model_key",
     HEAD " 'model': {'registry': 'r', 'name': 'm', 'version': '1', "
	  "@'versoin': '2'},\n 'steps': [{'id': 'a', 'do': 'wait', "
	  "'seconds': 1}]}",
     "did you mean 'version'?"},
    {"unknown_target_key",
     HEAD " 'target': {'provider': 'local', @'Region': 'x'},\n"
	  " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1}]}",
     "did you mean 'region'?"},
    {"unknown_step_key",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1,\n"
	  "  @'tiemout_s': 5}]}",
     "unknown key 'tiemout_s' in step 'a': did you mean 'timeout_s'?"},
    {"other_types_key",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1,\n"
	  "  @'argv': ['x']}]}",
     "unknown key 'argv' in step 'a'"},
    {"unknown_backoff_key",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1,\n"
	  "  'backoff': {@'max': 5}}]}",
     "in backoff"},
    {"unknown_stack_key",
     HEAD TARGET " 'stack': {'command': ['x'], @'evn': {}},\n"
		 " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1}]}",
     "did you mean 'env'?"},
    {"bad_step_id", HEAD " 'steps': [{'id': @'1a', 'do': 'wait', 'seconds': 1}]}",
     "invalid step id '1a'"},
    {"missing_id", HEAD " 'steps': [@{'do': 'wait', 'seconds': 1}]}",
     "missing required key 'id' in steps[0]"},
    {"missing_do", HEAD " 'steps': [@{'id': 'a', 'seconds': 1}]}",
     "missing required key 'do' in step 'a'"},
    {"unknown_do", HEAD " 'steps': [{'id': 'a', 'do': @'exce', 'argv': ['x']}]}",
     "unknown step type 'exce': did you mean 'exec'?"},
    {"unknown_do_far", HEAD " 'steps': [{'id': 'a', 'do': @'launch'}]}",
     "expected exec, http_probe, load_probe, wait, provision, sync_artifacts, deploy or teardown"},
    {"dup_id",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1},\n"
	  "  {'id': @'a', 'do': 'wait', 'seconds': 2}]}",
     "duplicate step id 'a' (first defined at line 2)"},
    {"after_unknown",
     HEAD " 'steps': [{'id': 'fetch', 'do': 'wait', 'seconds': 1},\n"
	  "  {'id': 'b', 'do': 'wait', 'seconds': 1, 'after': [@'fetsh']}]}",
     "unknown step 'fetsh' in after: did you mean 'fetch'?"},
    {"after_type",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1, "
	  "'after': @'b'}]}",
     "after: expected an array of step ids"},
    {"after_self",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1, "
	  "'after': [@'a']}]}",
     "step 'a' cannot depend on itself"},
    {"cycle2",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1, 'after': [@'b']},\n"
	  "  {'id': 'b', 'do': 'wait', 'seconds': 1, 'after': ['a']}]}",
     "dependency cycle: a -> b -> a"},
    {"cycle3",
     HEAD " 'steps': [{'id': 'x', 'do': 'wait', 'seconds': 1},\n"
	  "  {'id': 'b', 'do': 'wait', 'seconds': 1, 'after': [@'c']},\n"
	  "  {'id': 'c', 'do': 'wait', 'seconds': 1, 'after': ['d', 'x']},\n"
	  "  {'id': 'd', 'do': 'wait', 'seconds': 1, 'after': ['b']}]}",
     "dependency cycle: b -> c -> d -> b"},
    {"when_bad",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1, "
	  "'when': @'allways'}]}",
     "did you mean 'always'?"},
    {"final_dep",
     HEAD " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1,\n"
	  "  'when': 'always'},\n"
	  "  {'id': 'b', 'do': 'wait', 'seconds': 1, 'after': [@'a']}]}",
     "step 'b' would never start"},
    {"provision_no_target", HEAD " 'steps': [{'id': 'p', 'do': @'provision'}]}",
     "step 'p' (provision) needs a target"},
    {"sync_no_model", HEAD TARGET " 'steps': [{'id': 's', 'do': @'sync_artifacts'}]}",
     "step 's' (sync_artifacts) needs a model"},
    {"deploy_no_stack", HEAD TARGET " 'steps': [{'id': 'd', 'do': @'deploy'}]}",
     "step 'd' (deploy) needs a stack"},
    {"provider_unknown",
     HEAD " 'target': {'provider': @'locale'},\n"
	  " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1}]}",
     "unknown provider 'locale': did you mean 'local'?"},
    {"provider_missing",
     HEAD " 'target': @{'region': 'x'},\n"
	  " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1}]}",
     "missing required key 'provider' in target"},
    {"model_commit",
     HEAD " 'model': {'registry': 'r', 'name': 'm', 'version': '1', "
	  "'commit': @'abc'},\n"
	  " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1}]}",
     "40-character hex"},
    {"model_missing_version",
     HEAD " 'model': @{'registry': 'r', 'name': 'm'},\n"
	  " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1}]}",
     "missing required key 'version' in model"},
    {"vars_type",
     HEAD " 'vars': {'a': @[1]},\n 'steps': [{'id': 'a', 'do': 'wait', "
	  "'seconds': 1}]}",
     "expected a string, number or boolean"},
    {"env_allow_bad",
     HEAD " 'env_allow': [@'path'],\n 'steps': [{'id': 'a', 'do': 'wait', "
	  "'seconds': 1}]}",
     "not an environment variable name"},
    {"interp_unclosed", HEAD " 'steps': [{'id': 'a', 'do': 'exec', 'argv': [@'${vars.x']}]}",
     "unclosed '${'"},
    {"interp_empty", HEAD " 'steps': [{'id': 'a', 'do': 'exec', 'argv': [@'${}']}]}",
     "empty reference"},
    {"interp_char", HEAD " 'steps': [{'id': 'a', 'do': 'exec', 'argv': [@'${vars.a b}']}]}",
     "invalid character ' '"},
    {"interp_namespace",
     HEAD " 'steps': [{'id': 'a', 'do': 'exec', "
	  "'argv': [@'${var.x}']}]}",
     "unknown namespace 'var' (did you mean 'vars'?)"},
    {"interp_incomplete",
     HEAD " 'steps': [{'id': 'a', 'do': 'exec', "
	  "'argv': [@'${vars}']}]}",
     "incomplete reference"},
    {"unknown_var",
     HEAD " 'vars': {'registry': 'x'},\n"
	  " 'steps': [{'id': 'a', 'do': 'exec',\n"
	  "  'argv': ['x', @'${vars.regsitry}']}]}",
     "unknown variable 'regsitry' (did you mean 'registry'?)"},
    {"unknown_var_none",
     HEAD " 'steps': [{'id': 'a', 'do': 'exec', "
	  "'env': {'X': @'a${vars.nope}'}, 'argv': ['x']}]}",
     "unknown variable 'nope': declare it in \"vars\""},
    {"outputs_not_dep",
     HEAD " 'steps': [{'id': 'a', 'do': 'exec', 'argv': ['x']},\n"
	  "  {'id': 'b', 'do': 'exec', 'argv': [@'${steps.a.outputs.v}']}]}",
     "step 'b' reads '${steps.a.outputs.v}' but does not depend on step 'a': add \"a\" "
     "to the after of step 'b'"},
    {"outputs_self",
     HEAD " 'steps': [{'id': 'a', 'do': 'exec', "
	  "'argv': [@'${steps.a.outputs.v}']}]}",
     "cannot read its own outputs"},
    {"outputs_unknown",
     HEAD " 'steps': [{'id': 'fetch', 'do': 'exec', 'argv': ['x']},\n"
	  "  {'id': 'b', 'do': 'exec', 'after': ['fetch'], "
	  "'argv': [@'${steps.fecth.outputs.v}']}]}",
     "unknown step 'fecth' (did you mean 'fetch'?)"},
    {"outputs_malformed",
     HEAD " 'steps': [{'id': 'a', 'do': 'exec', 'argv': ['x']},\n"
	  "  {'id': 'b', 'do': 'exec', 'after': ['a'], "
	  "'argv': [@'${steps.a.v}']}]}",
     "write '${steps.ID.outputs.KEY}'"},
    {"env_not_allowed",
     HEAD " 'steps': [{'id': 'a', 'do': 'exec', "
	  "'argv': [@'${env.HOME}']}]}",
     "environment variable HOME is not allowed: add \"HOME\" to \"env_allow\""},
    {"env_not_set",
     HEAD " 'env_allow': ['RH_TEST_SURELY_UNSET'],\n"
	  " 'steps': [{'id': 'a', 'do': 'exec', "
	  "'argv': [@'${env.RH_TEST_SURELY_UNSET}']}]}",
     "environment variable RH_TEST_SURELY_UNSET is not set"},
    {"target_dynamic",
     HEAD TARGET " 'steps': [{'id': 'p', 'do': 'provision'},\n"
		 "  {'id': 'h', 'do': 'http_probe', 'url': @'http://${target.host}/'}]}",
     "add \"p\" to the after of step 'h'"},
    {"target_no_provision",
     HEAD TARGET " 'steps': [{'id': 'h', 'do': 'http_probe', "
		 "'url': @'http://${target.port}/'}]}",
     "the runbook has no provision step"},
    {"target_unknown_key",
     HEAD TARGET " 'steps': [{'id': 'h', 'do': 'http_probe', "
		 "'url': @'http://${target.hots}/'}]}",
     "unknown target field 'hots' (did you mean 'host'?)"},
    {"target_absent",
     HEAD " 'steps': [{'id': 'h', 'do': 'http_probe', "
	  "'url': @'http://${target.host}/'}]}",
     "the runbook has no target"},
    {"model_dynamic",
     HEAD TARGET MODEL " 'steps': [{'id': 's', 'do': 'sync_artifacts'},\n"
		       "  {'id': 'x', 'do': 'exec', 'argv': [@'${model.sha256}']}]}",
     "add \"s\" to the after of step 'x'"},
    {"registry_scope",
     HEAD " 'model': {'registry': @'${drill.dir}/r', 'name': 'm', "
	  "'version': '1'},\n"
	  " 'steps': [{'id': 'a', 'do': 'wait', 'seconds': 1}]}",
     "model.registry may only use"},
    {"stack_dynamic",
     HEAD TARGET " 'stack': {'command': ['x', @'${target.port}']},\n"
		 " 'steps': [{'id': 'p', 'do': 'provision'},\n"
		 "  {'id': 'd', 'do': 'deploy'}]}",
     "the stack, deployed by step 'd', uses '${target.port}'"},
    {"http_no_url", HEAD " 'steps': [@{'id': 'h', 'do': 'http_probe'}]}",
     "missing required key 'url' in step 'h'"},
    {"http_method",
     HEAD " 'steps': [{'id': 'h', 'do': 'http_probe', 'url': 'http://x/', "
	  "'method': @'post'}]}",
     "did you mean 'POST'?"},
    {"http_status",
     HEAD " 'steps': [{'id': 'h', 'do': 'http_probe', 'url': 'http://x/', "
	  "'expect_status': [200, @700]}]}",
     "from 100 to 599"},
    {"http_url_scheme",
     HEAD " 'steps': [{'id': 'h', 'do': 'http_probe', "
	  "'url': @'ftp://x/'}]}",
     "expected an http:// or https:// url"},
    {"http_interval",
     HEAD " 'steps': [{'id': 'h', 'do': 'http_probe', 'url': 'http://x/', "
	  "'interval_s': @0}]}",
     "from 0.01 to 60"},
    {"http_header_crlf",
     HEAD " 'steps': [{'id': 'h', 'do': 'http_probe', 'url': 'http://x/',"
	  " 'headers': {'x-a': @'b\\r\\nc: d'}}]}",
     "line break"},
    {"exec_no_argv", HEAD " 'steps': [@{'id': 'e', 'do': 'exec'}]}",
     "missing required key 'argv' in step 'e'"},
    {"exec_argv_empty", HEAD " 'steps': [{'id': 'e', 'do': 'exec', 'argv': @[]}]}",
     "argv: expected a non-empty array of strings, got []"},
    {"exec_env_value",
     HEAD " 'steps': [{'id': 'e', 'do': 'exec', 'argv': ['x'], "
	  "'env': {'A': @1}}]}",
     "env 'A': expected a string"},
    {"wait_negative", HEAD " 'steps': [{'id': 'w', 'do': 'wait', 'seconds': @-1}]}",
     "seconds: expected a number of seconds from 0 to 604800"},
    {"wait_missing", HEAD " 'steps': [@{'id': 'w', 'do': 'wait'}]}",
     "missing required key 'seconds'"},
    {"teardown_grace",
     HEAD TARGET " 'steps': [{'id': 't', 'do': 'teardown', "
		 "'grace_s': @601}]}",
     "grace_s"},
    /* expect_json is at depth 4; the object at '@' is the 33rd level. */
    {"deep",
     HEAD " 'steps': [{'id': 'h', 'do': 'http_probe', 'url': 'http://x/',\n"
	  "  'expect_json': "
	  "{'a':{'a':{'a':{'a':{'a':{'a':{'a':{'a':{'a':{'a':{'a':{'a':{'a':{'a':"
	  "{'a':{'a':{'a':{'a':{'a':{'a':{'a':{'a':{'a':{'a':{'a':{'a':{'a':{'a':"
	  "{'a':@{'a':1}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}"
	  "}]}",
     "too deeply nested: at most 32 levels"},
    {"unicode_col",
     HEAD " 'description': 'h\xc3\xa9llo \xe2\x82\xac',"
	  " 'rto_target_s': @-1,\n 'steps': [{'id': 'a', 'do': 'wait', "
	  "'seconds': 1}]}",
     "greater than 0"},
};

static void check_case(const struct bad_case *bc)
{
	struct rh_diags d = RH_DIAGS_INIT;
	struct rh_runbook *rb = (struct rh_runbook *)1;
	int line, col, err;
	bool found = false;
	char *path = write_case(bc->name, bc->text, &line, &col);

	err = rh_runbook_load(&rb, path, NULL, 0, &d);
	CU_ASSERT_EQUAL(err, RH_EINVAL);
	CU_ASSERT_PTR_NULL(rb);
	CU_ASSERT(d.count > 0);
	for (size_t i = 0; i < d.count; i++) {
		const struct rh_diag *g = &d.items[i];

		if (g->line == line && g->column == col && strstr(g->message, bc->fragment))
			found = true;
		/* House rules for every message. */
		CU_ASSERT(g->line >= 1 && g->column >= 1);
		CU_ASSERT(g->message[0] && g->message[strlen(g->message) - 1] != '.');
		CU_ASSERT(!(g->message[0] >= 'A' && g->message[0] <= 'Z'));
	}
	for (size_t i = 1; i < d.count; i++)
		CU_ASSERT(d.items[i - 1].line < d.items[i].line ||
			  (d.items[i - 1].line == d.items[i].line &&
			   d.items[i - 1].column <= d.items[i].column));
	if (!found) {
		fprintf(stderr, "\n  case %s: expected %d:%d '%s', got:\n", bc->name, line, col,
			bc->fragment);
		dump(&d);
	}
	CU_ASSERT(found);
	rh_diags_clear(&d);
	free(path);
}

static void test_runbook__bad_cases(void)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++)
		check_case(&bad_cases[i]);
}

static char *example_path(void)
{
	const char *src = getenv("RH_SRC");
	char *p;

	CU_ASSERT_FATAL(src != NULL);
	p = rh_test_path(src, "runbooks/tinylm-local.json");
	return p;
}

static void test_runbook__example_validates(void)
{
	struct rh_diags d = RH_DIAGS_INIT;
	struct rh_runbook *rb = NULL;
	char *path = example_path();
	char hex[65];
	long answer, start;
	int err;

	err = rh_runbook_load(&rb, path, NULL, 0, &d);
	if (err)
		dump(&d);
	CU_ASSERT_EQUAL_FATAL(err, 0);
	CU_ASSERT_EQUAL(d.count, 0);
	CU_ASSERT_STRING_EQUAL(rb->name, "tinylm-local");
	CU_ASSERT_STRING_EQUAL(rb->path, path);
	CU_ASSERT_EQUAL(rb->dir[0], '/');
	CU_ASSERT_PTR_NOT_NULL(strstr(rb->dir, "runbooks"));
	CU_ASSERT_EQUAL(rb->rto_target_s, 60);
	CU_ASSERT_EQUAL(rb->n_steps, 7);
	CU_ASSERT_PTR_EQUAL(rb->provider, &rh_provider_local);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rb->target, "region")), "local");
	CU_ASSERT(rb->model.present);
	CU_ASSERT_STRING_EQUAL(rb->model.registry, "${vars.registry}");
	CU_ASSERT_STRING_EQUAL(rb->model.name, "tinylm");
	CU_ASSERT_PTR_NULL(rb->model.commit);
	CU_ASSERT_PTR_NOT_NULL(rb->stack);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rb->vars, "registry")),
			       "../build/demo/registry");
	CU_ASSERT_EQUAL(strlen(rb->sha256), 64);
	CU_ASSERT_EQUAL(rh_sha256_file_hex(hex, NULL, path), 0);
	CU_ASSERT_STRING_EQUAL(rb->sha256, hex);

	answer = rh_runbook_step_index(rb, "answer");
	start = rh_runbook_step_index(rb, "start");
	CU_ASSERT_EQUAL(answer, 3);
	CU_ASSERT_EQUAL(start, 2);
	CU_ASSERT_EQUAL(rh_runbook_step_index(rb, "nope"), -1);
	CU_ASSERT_PTR_EQUAL(rb->steps[answer].type, &rh_step_http_probe);
	CU_ASSERT(rb->steps[answer].restores_service);
	CU_ASSERT_EQUAL(rb->steps[answer].timeout_s, 60);
	CU_ASSERT_EQUAL(rb->steps[answer].n_after, 1);
	CU_ASSERT_EQUAL(rb->steps[answer].after[0], (size_t)start);
	CU_ASSERT_STRING_EQUAL(rb->steps[answer].pointer, "/steps/3");
	CU_ASSERT_EQUAL(rb->steps[6].when, RH_WHEN_ALWAYS);
	CU_ASSERT_PTR_EQUAL(rb->steps[5].type, &rh_step_load_probe);
	CU_ASSERT_EQUAL(rb->steps[0].when, RH_WHEN_ON_SUCCESS);
	CU_ASSERT_EQUAL(rb->steps[0].retries, 0);
	CU_ASSERT_EQUAL(rb->steps[0].backoff.initial_s, 1);
	CU_ASSERT_EQUAL(rb->steps[0].backoff.factor, 2);
	CU_ASSERT_EQUAL(rb->steps[0].backoff.max_s, 30);
	CU_ASSERT_EQUAL(rb->steps[0].backoff.jitter, 0.2);
	CU_ASSERT(rh_runbook_depends_on(rb, (size_t)answer, 0));
	CU_ASSERT(rh_runbook_depends_on(rb, (size_t)answer, (size_t)answer));
	CU_ASSERT(!rh_runbook_depends_on(rb, 0, (size_t)answer));
	CU_ASSERT(!rh_runbook_depends_on(rb, 6, 0));
	for (size_t i = 0; i < rb->n_steps; i++)
		CU_ASSERT_EQUAL(rb->order[i], i);
	rh_runbook_free(rb);
	rh_diags_clear(&d);
	free(path);
}

/* Loads inline text expecting success; returns the runbook (new). */
static struct rh_runbook *load_ok(const char *name, const char *text,
				  const struct rh_var_override *ov, size_t n_ov)
{
	struct rh_diags d = RH_DIAGS_INIT;
	struct rh_runbook *rb = NULL;
	int line, col, err;
	char *path = write_case(name, text, &line, &col);

	err = rh_runbook_load(&rb, path, ov, n_ov, &d);
	if (err) {
		fprintf(stderr, "\n  %s:\n", name);
		dump(&d);
	}
	CU_ASSERT_EQUAL(err, 0);
	CU_ASSERT_EQUAL(d.count, 0);
	rh_diags_clear(&d);
	free(path);
	return rb;
}

static void test_runbook__collects_all_problems(void)
{
	static const char text[] =
		"{'rehydra': 2, 'name': 'a b', 'rto_target_s': 0,\n"
		" 'stpes': 1,\n"
		" 'steps': [{'id': 'a', 'do': 'exce'},\n"
		"  {'id': 'a', 'do': 'wait', 'seconds': -1, 'after': ['zz']}]}";
	struct rh_diags d = RH_DIAGS_INIT;
	struct rh_runbook *rb = NULL;
	int line, col;
	char *path = write_case("many", text, &line, &col);

	CU_ASSERT_EQUAL(rh_runbook_load(&rb, path, NULL, 0, &d), RH_EINVAL);
	/* format, name, rto, stpes, exce, duplicate id, seconds, zz */
	CU_ASSERT_EQUAL(d.count, 8);
	if (d.count != 8)
		dump(&d);
	CU_ASSERT_EQUAL(d.count >= 1 ? d.items[0].line : 0, 1);
	CU_ASSERT_EQUAL(d.count >= 8 ? d.items[7].line : 0, 4);
	rh_diags_clear(&d);
	free(path);
}

static void test_runbook__topological_order(void)
{
	static const char text[] =
		"{'rehydra': 1, 'name': 't', 'steps': [\n"
		" {'id': 'd', 'do': 'wait', 'seconds': 0, 'after': ['c', 'b']},\n"
		" {'id': 'c', 'do': 'wait', 'seconds': 0, 'after': ['a']},\n"
		" {'id': 'b', 'do': 'wait', 'seconds': 0, 'after': ['a']},\n"
		" {'id': 'e', 'do': 'wait', 'seconds': 0},\n"
		" {'id': 'a', 'do': 'wait', 'seconds': 0}]}";
	/* Ready first: e(3), a(4) -> e; then a; then c(1), b(2); then d(0). */
	static const size_t want[] = { 3, 4, 1, 2, 0 };
	struct rh_runbook *rb = load_ok("topo", text, NULL, 0);

	CU_ASSERT_PTR_NOT_NULL_FATAL(rb);
	for (size_t i = 0; i < 5; i++)
		CU_ASSERT_EQUAL(rb->order[i], want[i]);
	CU_ASSERT(rh_runbook_depends_on(rb, 0, 4));
	CU_ASSERT(!rh_runbook_depends_on(rb, 0, 3));
	CU_ASSERT_EQUAL(rb->steps[0].n_after, 2);
	rh_runbook_free(rb);
}

static void test_runbook__overrides(void)
{
	static const char text[] =
		"{'rehydra': 1, 'name': 't', 'vars': {'port': 8080, 'host': 'h'},\n"
		" 'steps': [{'id': 'a', 'do': 'exec', 'argv': ['${vars.port}']}]}";
	struct rh_var_override ov[] = { { "port", "9090" } };
	struct rh_var_override bad[] = { { "prot", "1" }, { "zzzz", "2" } };
	struct rh_diags d = RH_DIAGS_INIT;
	struct rh_runbook *rb = load_ok("ov", text, ov, 1);
	int line, col;
	char *path;

	CU_ASSERT_PTR_NOT_NULL_FATAL(rb);
	/* A number var stays a number when overridden. */
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(rb->vars, "port")), 9090);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(rb->vars, "host")), "h");
	/* The document itself keeps what the file says. */
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(json_object_get(rb->doc, "vars"),
							   "port")), 8080);
	rh_runbook_free(rb);

	path = write_case("ov2", text, &line, &col);
	rb = NULL;
	CU_ASSERT_EQUAL(rh_runbook_load(&rb, path, bad, 2, &d), RH_EINVAL);
	CU_ASSERT_PTR_NULL(rb);
	CU_ASSERT_EQUAL_FATAL(d.count, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(d.items[0].message, "--var prot"));
	CU_ASSERT_PTR_NOT_NULL(strstr(d.items[0].message, "did you mean 'port'?"));
	CU_ASSERT_PTR_NOT_NULL(strstr(d.items[1].message, "--var zzzz"));
	/* Pointed at the "vars" key. */
	CU_ASSERT_EQUAL(d.items[0].line, 1);
	CU_ASSERT_EQUAL(d.items[0].column, 29);
	rh_diags_clear(&d);
	free(path);
}

/* A step member that is exactly "${vars.x}" takes the var's type; argv
 * items and text around a reference stay strings; an override that does
 * not fit the declared type is an error naming it. */
static void test_runbook__typed_var_refs(void)
{
	static const char text[] =
		"{'rehydra': 1, 'name': 't', 'vars': {'delay': 0, 'on': true, 's': '7'},\n"
		" 'steps': [{'id': 'w', 'do': 'wait', 'seconds': '${vars.delay}'},\n"
		"  {'id': 'e', 'do': 'exec', 'argv': ['echo', '${vars.delay}'], 'after': ['w'],\n"
		"   'description': 'wait ${vars.delay}', 'timeout_s': '${vars.s}'}]}";
	static const char text_ok[] =
		"{'rehydra': 1, 'name': 't', 'vars': {'delay': 0, 'on': true},\n"
		" 'steps': [{'id': 'w', 'do': 'wait', 'seconds': '${vars.delay}'},\n"
		"  {'id': 'e', 'do': 'exec', 'argv': ['echo', '${vars.delay}'], 'after': ['w'],\n"
		"   'description': 'wait ${vars.delay}'}]}";
	struct rh_var_override ov[] = { { "delay", "2.5" } };
	struct rh_var_override bad[] = { { "delay", "soon" }, { "on", "yes" } };
	struct rh_diags d = RH_DIAGS_INIT;
	struct rh_runbook *rb = load_ok("typed", text_ok, ov, 1);
	int line, col;
	char *path;

	CU_ASSERT_PTR_NOT_NULL_FATAL(rb);
	CU_ASSERT(json_is_real(json_object_get(rb->steps[0].spec, "seconds")));
	CU_ASSERT_DOUBLE_EQUAL(json_real_value(json_object_get(rb->steps[0].spec, "seconds")),
			       2.5, 1e-9);
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_array_get(json_object_get(rb->steps[1].spec, "argv"), 1)),
		"${vars.delay}");
	CU_ASSERT_STRING_EQUAL(
		json_string_value(json_object_get(rb->steps[1].spec, "description")),
		"wait ${vars.delay}");
	rh_runbook_free(rb);

	/* a string var stays a string: timeout_s "7" is still refused */
	path = write_case("typed2", text, &line, &col);
	rb = NULL;
	CU_ASSERT_EQUAL(rh_runbook_load(&rb, path, NULL, 0, &d), RH_EINVAL);
	CU_ASSERT_EQUAL(d.count, 1);
	if (d.count)
		CU_ASSERT_PTR_NOT_NULL(strstr(d.items[0].message, "timeout_s"));
	rh_diags_clear(&d);
	free(path);

	path = write_case("typed3", text_ok, &line, &col);
	CU_ASSERT_EQUAL(rh_runbook_load(&rb, path, bad, 2, &d), RH_EINVAL);
	CU_ASSERT_EQUAL_FATAL(d.count, 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(d.items[0].message, "declares 'delay' a number; got 'soon'"));
	CU_ASSERT_PTR_NOT_NULL(strstr(d.items[1].message, "declares 'on' true or false"));
	rh_diags_clear(&d);
	free(path);
}

static void test_runbook__references_ok(void)
{
	static const char text[] =
		"{'rehydra': 1, 'name': 't', 'env_allow': ['RH_TEST_SET'],\n"
		" 'vars': {'v': 'x'},\n"
		" 'target': {'provider': 'local', 'region': 'r'},\n"
		" 'model': {'registry': '${runbook.dir}/${vars.v}-${env.RH_TEST_SET}', 'name': 'm',"
		" 'version': '1'},\n"
		" 'stack': {'command': ['${model.path}', '${target.port}',\n"
		"  '${steps.e.outputs.k}']},\n"
		" 'steps': [{'id': 'p', 'do': 'provision'},\n"
		"  {'id': 's', 'do': 'sync_artifacts', 'after': ['p']},\n"
		"  {'id': 'e', 'do': 'exec',\n"
		"   'argv': ['x', '$${not.a.ref}', '${rehydra.bindir}']},\n"
		"  {'id': 'd', 'do': 'deploy', 'after': ['s', 'e']},\n"
		"  {'id': 'h', 'do': 'http_probe', 'after': ['d'], 'url': "
		"'http://${target.host}:${target.port}/${model.sha256}/${steps.e.outputs.a.b}',\n"
		"   'expect_json': {'x': ['${drill.id}', '${model.name}', '${target.region}']}},\n"
		"  {'id': 't', 'do': 'teardown', 'when': 'always',\n"
		"   'description': '${drill.dir}'}]}";
	struct rh_runbook *rb;

	setenv("RH_TEST_SET", "1", 1);
	rb = load_ok("refs", text, NULL, 0);
	CU_ASSERT_PTR_NOT_NULL(rb);
	if (rb) {
		CU_ASSERT_EQUAL(rb->n_env_allow, 1);
		CU_ASSERT_STRING_EQUAL(rb->env_allow[0], "RH_TEST_SET");
		CU_ASSERT_EQUAL(rb->steps[5].timeout_s, rh_step_teardown.default_timeout_s);
		CU_ASSERT_EQUAL(rb->steps[1].timeout_s, 3600);
	}
	rh_runbook_free(rb);
}

/* A second deploy step without the dependency is reported even when the
 * first one has it. */
static void test_runbook__stack_checked_per_deploy(void)
{
	static const char text[] =
		"{'rehydra': 1, 'name': 't', 'target': {'provider': 'local'},\n"
		" 'stack': {'command': ['${target.host}']},\n"
		" 'steps': [{'id': 'p', 'do': 'provision'},\n"
		"  {'id': 'd1', 'do': 'deploy', 'after': ['p']},\n"
		"  {'id': 'd2', 'do': 'deploy'}]}";
	struct rh_diags d = RH_DIAGS_INIT;
	struct rh_runbook *rb = NULL;
	int line, col;
	char *path = write_case("deploys", text, &line, &col);

	CU_ASSERT_EQUAL(rh_runbook_load(&rb, path, NULL, 0, &d), RH_EINVAL);
	CU_ASSERT_EQUAL_FATAL(d.count, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(d.items[0].message, "deployed by step 'd2'"));
	CU_ASSERT_EQUAL(d.items[0].line, 2);
	CU_ASSERT_EQUAL(d.items[0].column, 24);
	rh_diags_clear(&d);
	free(path);
}

static void test_runbook__limits(void)
{
	struct rh_diags d = RH_DIAGS_INIT;
	struct rh_runbook *rb = NULL;
	size_t big = RH_RUNBOOK_MAX_STRING + 10;
	size_t n = big + 256;
	size_t pre;
	char *text = malloc(n);
	char *path = rh_test_path(tmp, "long.json");
	FILE *f;
	int fd;

	CU_ASSERT_FATAL(text != NULL);
	/* A string one past the limit, reported at its own position. */
	snprintf(text, n, "{\"rehydra\": 1, \"name\": \"t\",\n \"description\": \"");
	pre = strlen(text);
	memset(text + pre, 'x', big);
	text[pre + big] = '\0';
	snprintf(text + strlen(text), 200, "\",\n \"steps\": [{\"id\": \"a\", \"do\": \"wait\", "
		 "\"seconds\": 1}]}");
	rh_test_write_file(path, text);
	CU_ASSERT_EQUAL(rh_runbook_load(&rb, path, NULL, 0, &d), RH_EINVAL);
	CU_ASSERT_EQUAL_FATAL(d.count, 1);
	CU_ASSERT_EQUAL(d.items[0].line, 2);
	CU_ASSERT_EQUAL(d.items[0].column, 17);
	CU_ASSERT_PTR_NOT_NULL(strstr(d.items[0].message, "at most 65536 bytes"));
	rh_diags_clear(&d);

	/* Nesting past jansson's own limit: its error, our words. */
	f = fopen(path, "w");
	CU_ASSERT_FATAL(f != NULL);
	for (int i = 0; i < 5000; i++)
		fputc('[', f);
	fclose(f);
	CU_ASSERT_EQUAL(rh_runbook_load(&rb, path, NULL, 0, &d), RH_EINVAL);
	CU_ASSERT_EQUAL_FATAL(d.count, 1);
	CU_ASSERT_EQUAL(d.items[0].line, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(d.items[0].message, "too deeply nested"));
	rh_diags_clear(&d);

	/* Too many steps. */
	f = fopen(path, "w");
	CU_ASSERT_FATAL(f != NULL);
	fputs("{\"rehydra\": 1, \"name\": \"t\", \"steps\": [", f);
	for (int i = 0; i <= RH_RUNBOOK_MAX_STEPS; i++)
		fprintf(f, "%s{\"id\": \"s%d\", \"do\": \"wait\", \"seconds\": 0}", i ? "," : "",
			i);
	fputs("]}", f);
	fclose(f);
	CU_ASSERT_EQUAL(rh_runbook_load(&rb, path, NULL, 0, &d), RH_EINVAL);
	CU_ASSERT_EQUAL_FATAL(d.count, 1);
	CU_ASSERT_EQUAL(d.items[0].column, 38);
	CU_ASSERT_PTR_NOT_NULL(strstr(d.items[0].message, "too many steps (10001)"));
	rh_diags_clear(&d);

	/* Larger than the file limit: refused before reading, at 1:1. */
	fd = open(path, O_WRONLY | O_TRUNC);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(ftruncate(fd, (off_t)RH_RUNBOOK_MAX_BYTES + 1), 0);
	close(fd);
	CU_ASSERT_EQUAL(rh_runbook_load(&rb, path, NULL, 0, &d), RH_EINVAL);
	CU_ASSERT_EQUAL_FATAL(d.count, 1);
	CU_ASSERT_EQUAL(d.items[0].line, 1);
	CU_ASSERT_EQUAL(d.items[0].column, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(d.items[0].message, "at most 16777216 bytes"));
	rh_diags_clear(&d);
	free(text);
	free(path);
}

/* A chain of 10000 steps, each reading the outputs of the first: the graph
 * code must neither recurse that deep nor take long. */
static void test_runbook__long_chain(void)
{
	struct rh_diags d = RH_DIAGS_INIT;
	struct rh_runbook *rb = NULL;
	char *path = rh_test_path(tmp, "chain.json");
	FILE *f = fopen(path, "w");

	CU_ASSERT_FATAL(f != NULL);
	fputs("{\"rehydra\": 1, \"name\": \"t\", \"steps\": [", f);
	for (int i = 0; i < RH_RUNBOOK_MAX_STEPS; i++) {
		if (i == 0)
			fputs("{\"id\": \"s0\", \"do\": \"exec\", \"argv\": [\"x\"]}", f);
		else
			fprintf(f, ",{\"id\": \"s%d\", \"do\": \"exec\", \"after\": [\"s%d\"], "
				"\"argv\": [\"${steps.s0.outputs.v}\"]}", i, i - 1);
	}
	fputs("]}", f);
	fclose(f);
	CU_ASSERT_EQUAL(rh_runbook_load(&rb, path, NULL, 0, &d), 0);
	CU_ASSERT_EQUAL(d.count, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(rb);
	CU_ASSERT_EQUAL(rb->order[RH_RUNBOOK_MAX_STEPS - 1], RH_RUNBOOK_MAX_STEPS - 1);
	CU_ASSERT(rh_runbook_depends_on(rb, RH_RUNBOOK_MAX_STEPS - 1, 0));
	rh_runbook_free(rb);
	free(path);
}

static void test_runbook__file_errors(void)
{
	struct rh_diags d = RH_DIAGS_INIT;
	struct rh_runbook *rb = (struct rh_runbook *)1;
	char *missing = rh_test_path(tmp, "missing.json");

	CU_ASSERT_EQUAL(rh_runbook_load(&rb, missing, NULL, 0, &d), RH_EIO);
	CU_ASSERT_PTR_NULL(rb);
	CU_ASSERT_EQUAL(d.count, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "cannot open"));
	CU_ASSERT_EQUAL(rh_runbook_load(&rb, tmp, NULL, 0, &d), RH_EIO);
	CU_ASSERT_EQUAL(d.count, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "not a regular file"));
	free(missing);
}

/* rh_runbook_load_buf reads exactly `len` bytes (no NUL needed) and gives
 * what rh_runbook_load gives for the same bytes in a file. */
static void test_runbook__load_buf(void)
{
	static const char bad_text[] = "{\"rehydra\": 1,\n \"name\": 7}";
	struct rh_diags d = RH_DIAGS_INIT, d2 = RH_DIAGS_INIT;
	struct rh_runbook *a = NULL, *b = NULL;
	char *path = example_path();
	char *text = NULL, *bad;
	size_t len = 0;
	FILE *f = fopen(path, "rb");

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL_FATAL(fseek(f, 0, SEEK_END), 0);
	len = (size_t)ftell(f);
	rewind(f);
	text = malloc(len + 8);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_EQUAL_FATAL(fread(text, 1, len, f), len);
	fclose(f);
	memcpy(text + len, "garbage", 7); /* after len, not NUL-terminated */
	CU_ASSERT_EQUAL_FATAL(rh_runbook_load(&a, path, NULL, 0, &d), 0);
	CU_ASSERT_EQUAL_FATAL(rh_runbook_load_buf(&b, path, text, len, NULL, 0, &d), 0);
	CU_ASSERT_STRING_EQUAL(a->sha256, b->sha256);
	CU_ASSERT_STRING_EQUAL(a->dir, b->dir);
	CU_ASSERT_EQUAL(a->n_steps, b->n_steps);
	rh_runbook_free(b);
	b = NULL;
	/* the same problem, located the same way */
	bad = rh_test_path(tmp, "bad_buf.json");
	f = fopen(bad, "wb");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(bad_text, f);
	fclose(f);
	CU_ASSERT_EQUAL(rh_runbook_load(&b, bad, NULL, 0, &d), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_runbook_load_buf(&b, bad, bad_text, strlen(bad_text), NULL, 0, &d2),
			RH_EINVAL);
	CU_ASSERT_PTR_NULL(b);
	CU_ASSERT_EQUAL_FATAL(d.count, d2.count);
	for (size_t i = 0; i < d.count; i++) {
		CU_ASSERT_STRING_EQUAL(d.items[i].message, d2.items[i].message);
		CU_ASSERT_EQUAL(d.items[i].line, d2.items[i].line);
		CU_ASSERT_EQUAL(d.items[i].column, d2.items[i].column);
	}
	rh_diags_clear(&d);
	rh_diags_clear(&d2);
	rh_runbook_free(a);
	free(text);
	free(bad);
	free(path);
}

static void test_runbook__helpers(void)
{
	static const char *const cands[] = { "timeout_s", "retries", "after", "id", NULL };
	size_t n = 0;

	rh_runbook_free(NULL);
	CU_ASSERT_STRING_EQUAL(rh_when_name(RH_WHEN_ON_SUCCESS), "on_success");
	CU_ASSERT_STRING_EQUAL(rh_when_name(RH_WHEN_ON_FAILURE), "on_failure");
	CU_ASSERT_STRING_EQUAL(rh_when_name(RH_WHEN_ALWAYS), "always");
	CU_ASSERT_STRING_EQUAL(rh_suggest("tiemout_s", cands), "timeout_s");
	CU_ASSERT_STRING_EQUAL(rh_suggest("RETRIES", cands), "retries");
	CU_ASSERT_STRING_EQUAL(rh_suggest("aftr", cands), "after");
	CU_ASSERT_PTR_NULL(rh_suggest("x", cands));
	CU_ASSERT_PTR_NULL(rh_suggest("completely", cands));

	while (rh_step_types[n])
		n++;
	CU_ASSERT_EQUAL(n, 8);
	CU_ASSERT_PTR_EQUAL(rh_step_type_find("load_probe"), &rh_step_load_probe);
	CU_ASSERT_PTR_EQUAL(rh_step_type_find("exec"), &rh_step_exec);
	CU_ASSERT_PTR_EQUAL(rh_step_type_find("teardown"), &rh_step_teardown);
	CU_ASSERT_PTR_NULL(rh_step_type_find("Exec"));
	CU_ASSERT_PTR_NULL(rh_step_type_find(NULL));
	CU_ASSERT_STRING_EQUAL(rh_step_provision.exports_to, "target");
	CU_ASSERT_STRING_EQUAL(rh_step_sync_artifacts.exports_to, "model");
	CU_ASSERT_PTR_NULL(rh_step_deploy.exports_to);
	CU_ASSERT(rh_step_sync_artifacts.needs_model && rh_step_sync_artifacts.needs_provider);
	CU_ASSERT(!rh_step_exec.needs_provider);
	CU_ASSERT_EQUAL(rh_step_wait.default_timeout_s, 604800);
	CU_ASSERT_EQUAL(rh_step_exec.default_timeout_s, 300);
	for (size_t i = 0; rh_step_types[i]; i++) {
		CU_ASSERT_PTR_NOT_NULL(rh_step_types[i]->run);
		CU_ASSERT_PTR_NOT_NULL(rh_step_types[i]->keys);
		/* The table is the only default for timeout_s (engine.c has none). */
		CU_ASSERT(rh_step_types[i]->default_timeout_s > 0);
	}
}

static void setup(void)
{
	if (!tmp)
		tmp = rh_test_tmpdir();
}

#define T(name)                                                                             \
	static void wrap_##name(void)                                                       \
	{                                                                                   \
		setup();                                                                    \
		test_runbook__##name();                                                     \
	}
T(example_validates)
T(bad_cases)
T(collects_all_problems)
T(topological_order)
T(overrides)
T(typed_var_refs)
T(references_ok)
T(stack_checked_per_deploy)
T(limits)
T(long_chain)
T(file_errors)
T(load_buf)
T(helpers)

static void cleanup(void)
{
	if (tmp) {
		rh_test_rm_rf(tmp);
		free(tmp);
		tmp = NULL;
	}
}

RH_TEST_MAIN("runbook",
	     { "test_runbook__example_validates", wrap_example_validates },
	     { "test_runbook__bad_cases", wrap_bad_cases },
	     { "test_runbook__collects_all_problems", wrap_collects_all_problems },
	     { "test_runbook__topological_order", wrap_topological_order },
	     { "test_runbook__overrides", wrap_overrides },
	     { "test_runbook__typed_var_refs", wrap_typed_var_refs },
	     { "test_runbook__references_ok", wrap_references_ok },
	     { "test_runbook__stack_checked_per_deploy", wrap_stack_checked_per_deploy },
	     { "test_runbook__limits", wrap_limits },
	     { "test_runbook__long_chain", wrap_long_chain },
	     { "test_runbook__file_errors", wrap_file_errors },
	     { "test_runbook__load_buf", wrap_load_buf },
	     { "test_runbook__helpers", wrap_helpers },
	     { "test_runbook__cleanup", cleanup })
