/*
 * step_run.h - what the step-type table (step_types.c) binds to.
 *
 * 1. Each type's run function, one attempt (contract in steps.h), defined in
 *    step_exec.c, step_http.c, step_wait.c, step_provider.c and step_load.c.
 * 2. The field checks that the types' validate hooks share with the runbook
 *    parser (defined in runbook.c), so every "expected ..., got ..." message
 *    reads the same wherever the field lives.
 */
#ifndef RH_STEP_RUN_H
#define RH_STEP_RUN_H

#include "diag.h"
#include "steps.h"

#include <jansson.h>
#include <stdbool.h>

int rh_step_exec_run(struct rh_step_ctx *ctx);
int rh_step_http_probe_run(struct rh_step_ctx *ctx);
int rh_step_wait_run(struct rh_step_ctx *ctx);
int rh_step_provision_run(struct rh_step_ctx *ctx);
int rh_step_sync_artifacts_run(struct rh_step_ctx *ctx);
int rh_step_deploy_run(struct rh_step_ctx *ctx);
int rh_step_teardown_run(struct rh_step_ctx *ctx);
int rh_step_load_probe_run(struct rh_step_ctx *ctx);

/*
 * What http_probe and load_probe share (step_http.c): judging an answer the
 * same way in both, so a load probe's "wrong answer" means what a probe's
 * "no expected answer" means.
 */
/* scheme://host[:port]/path without userinfo or query (they may hold
 * secrets), for messages. New (free), NULL when out of memory. */
char *rh_http_url_for_messages(const char *url);
/* True if `got` contains `exp` (objects: every key of exp, recursively;
 * strings in exp also match the scalar they spell); otherwise `why` says
 * where they differ. `path` is the prefix for messages ("" at the top). */
bool rh_http_json_match(const json_t *exp, const json_t *got, const char *path, char *why,
			size_t size);
/* `expect` is expect_status (an integer, an array of them, or NULL: 2xx). */
bool rh_http_status_match(const json_t *expect, long status);
/* "200", "[200,204]" or "2xx" for messages. */
void rh_http_expected_status(char *buf, size_t size, const json_t *expect);

/*
 * Field checks. Each looks `key` up in the object `obj` whose JSON pointer is
 * `ptr`, reports what is wrong as one diagnostic (at the value, or at `obj`
 * when a required key is missing) and returns:
 *   1          present and valid (*out, when given, is set; borrowed)
 *   0          absent and not required (*out untouched)
 *   RH_EINVAL  a problem was reported
 *   RH_ENOMEM  (the diagnostic could not be recorded)
 */
struct rh_spec_range {
	double min;
	double max;
	bool min_exclusive; /* "greater than min" rather than "at least min" */
	bool seconds;	    /* say "a number of seconds" */
};

int rh_spec_string(struct rh_diags *d, const json_t *obj, const char *ptr, const char *key,
		   bool required, const char **out);
int rh_spec_number(struct rh_diags *d, const json_t *obj, const char *ptr, const char *key,
		   bool required, const struct rh_spec_range *r, double *out);
int rh_spec_integer(struct rh_diags *d, const json_t *obj, const char *ptr, const char *key,
		    bool required, long long min, long long max, long long *out);
int rh_spec_bool(struct rh_diags *d, const json_t *obj, const char *ptr, const char *key,
		 bool *out);
/* An array of strings; `nonempty` also rejects [] and "" as its first item. */
int rh_spec_string_array(struct rh_diags *d, const json_t *obj, const char *ptr, const char *key,
			 bool required, bool nonempty);
/* An object whose values are all strings (env, headers). */
int rh_spec_string_object(struct rh_diags *d, const json_t *obj, const char *ptr, const char *key);
/* Reports a missing required key at `obj` ("missing required key 'x' ..."). */
int rh_spec_missing(struct rh_diags *d, const json_t *obj, const char *ptr, const char *key,
		    const char *expected);

/* "a string", "an integer", "true", "null", ... for "got ..." messages. */
const char *rh_json_kind(const json_t *v);

#endif
