/*
 * runbook.c - load a runbook and refuse it, completely, before anything runs.
 *
 * A drill that fails half-way because of a typo has already created cloud
 * resources and burnt part of the RTO budget, so validation here is the whole
 * contract: types, ranges, unknown keys, ids, the dependency graph and every
 * ${...} reference are checked up front. Every problem is collected (not just
 * the first) as a diagnostic against a JSON pointer; positions are computed
 * once at the end from the original text (jsonpos.c). Values that passed are
 * copied into struct rh_runbook as they are validated, and the struct is
 * thrown away if anything was reported.
 */
#include "runbook.h"
#include "scenario.h"

#include "error.h"
#include "interp.h"
#include "jsonpos.h"
#include "provider.h"
#include "sha256.h"
#include "step_run.h"
#include "steps.h"
#include "suggest.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

#define MSG_MAX 1536

/* ------------------------------------------------------------------------ */
/* Shared field checks (declared in step_run.h)                             */

const char *rh_json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
		return "true";
	case JSON_FALSE:
		return "false";
	default:
		return "null";
	}
}

static void fmt_num(char *buf, size_t n, double x)
{
	if (x == floor(x) && fabs(x) < 1e15)
		snprintf(buf, n, "%.0f", x);
	else
		snprintf(buf, n, "%g", x);
}

static void fmt_value(char *buf, size_t n, const json_t *v)
{
	if (json_is_integer(v))
		snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, n, "%g", json_real_value(v));
	else
		snprintf(buf, n, "%s", rh_json_kind(v));
}

/* "step 'x'", "model", "the runbook" ...: where a missing key belongs. */
static void where(char *buf, size_t n, const json_t *obj, const char *ptr)
{
	const json_t *id = json_object_get(obj, "id");

	if (strncmp(ptr, "/steps/", 7) == 0 && !strchr(ptr + 7, '/')) {
		if (json_is_string(id) && json_string_length(id) <= RH_STEP_ID_MAX)
			snprintf(buf, n, "step '%s'", json_string_value(id));
		else
			snprintf(buf, n, "steps[%s]", ptr + 7);
	} else if (!*ptr) {
		snprintf(buf, n, "the runbook");
	} else {
		snprintf(buf, n, "%s", ptr + 1);
	}
}

__attribute__((format(printf, 5, 6))) static int
add_child(struct rh_diags *d, const char *ptr, const char *key, bool at_key, const char *fmt, ...)
{
	char msg[MSG_MAX];
	char *p = key ? rh_pointer_join(ptr, key) : strdup(ptr);
	va_list ap;
	int err;

	if (!p)
		return rh_error_set(RH_ENOMEM, "out of memory validating the runbook");
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	err = rh_diags_add(d, p, at_key, "%s", msg);
	free(p);
	return err < 0 ? err : RH_EINVAL;
}

int rh_spec_missing(struct rh_diags *d, const json_t *obj, const char *ptr, const char *key,
		    const char *expected)
{
	char w[128];

	where(w, sizeof(w), obj, ptr);
	return add_child(d, ptr, NULL, false, "missing required key '%s' in %s: add \"%s\" (%s)",
			 key, w, key, expected);
}

int rh_spec_string(struct rh_diags *d, const json_t *obj, const char *ptr, const char *key,
		   bool required, const char **out)
{
	const json_t *v = json_object_get(obj, key);

	if (!v)
		return required ? rh_spec_missing(d, obj, ptr, key, "a string") : 0;
	if (!json_is_string(v))
		return add_child(d, ptr, key, false, "%s: expected a string, got %s", key,
				 rh_json_kind(v));
	if (out)
		*out = json_string_value(v);
	return 1;
}

int rh_spec_number(struct rh_diags *d, const json_t *obj, const char *ptr, const char *key,
		   bool required, const struct rh_spec_range *r, double *out)
{
	const json_t *v = json_object_get(obj, key);
	const char *what = r->seconds ? "a number of seconds" : "a number";
	char got[64], lim[64], lim2[64];
	const char *days;
	double x;

	if (!v)
		return required ? rh_spec_missing(d, obj, ptr, key, what) : 0;
	if (!json_is_number(v))
		return add_child(d, ptr, key, false, "%s: expected %s, got %s", key, what,
				 rh_json_kind(v));
	x = json_number_value(v);
	fmt_value(got, sizeof(got), v);
	fmt_num(lim, sizeof(lim), r->min);
	fmt_num(lim2, sizeof(lim2), r->max);
	days = r->seconds && r->max == RH_TIMEOUT_MAX_S ? " (7 days)" : "";
	if (!r->min_exclusive && (!isfinite(x) || x < r->min || x > r->max))
		return add_child(d, ptr, key, false, "%s: expected %s from %s to %s%s, got %s", key,
				 what, lim, lim2, days, got);
	if (r->min_exclusive && (!isfinite(x) || x <= r->min))
		return add_child(d, ptr, key, false, "%s: expected %s greater than %s, got %s", key,
				 what, lim, got);
	if (x > r->max)
		return add_child(d, ptr, key, false, "%s: expected %s no greater than %s%s, got %s",
				 key, what, lim2, days, got);
	if (out)
		*out = x;
	return 1;
}

int rh_spec_integer(struct rh_diags *d, const json_t *obj, const char *ptr, const char *key,
		    bool required, long long min, long long max, long long *out)
{
	const json_t *v = json_object_get(obj, key);
	char got[64];

	if (!v) {
		if (!required)
			return 0;
		snprintf(got, sizeof(got), "an integer from %lld to %lld", min, max);
		return rh_spec_missing(d, obj, ptr, key, got);
	}
	fmt_value(got, sizeof(got), v);
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return add_child(d, ptr, key, false,
				 "%s: expected an integer from %lld to %lld, "
				 "got %s",
				 key, min, max, got);
	if (out)
		*out = json_integer_value(v);
	return 1;
}

int rh_spec_bool(struct rh_diags *d, const json_t *obj, const char *ptr, const char *key, bool *out)
{
	const json_t *v = json_object_get(obj, key);

	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return add_child(d, ptr, key, false, "%s: expected true or false, got %s", key,
				 rh_json_kind(v));
	if (out)
		*out = json_is_true(v);
	return 1;
}

int rh_spec_string_array(struct rh_diags *d, const json_t *obj, const char *ptr, const char *key,
			 bool required, bool nonempty)
{
	const json_t *v = json_object_get(obj, key);
	const char *what = nonempty ? "a non-empty array of strings" : "an array of strings";
	char *ap = NULL;
	json_t *item;
	size_t i;
	int err = 1;

	if (!v)
		return required ? rh_spec_missing(d, obj, ptr, key, what) : 0;
	if (!json_is_array(v) || (nonempty && json_array_size(v) == 0))
		return add_child(d, ptr, key, false, "%s: expected %s, got %s", key, what,
				 json_is_array(v) ? "[]" : rh_json_kind(v));
	ap = rh_pointer_join(ptr, key);
	if (!ap)
		return rh_error_set(RH_ENOMEM, "out of memory validating the runbook");
	json_array_foreach(v, i, item)
	{
		char idx[32];
		int r = 0;

		snprintf(idx, sizeof(idx), "%zu", i);
		if (!json_is_string(item))
			r = add_child(d, ap, idx, false, "%s[%zu]: expected a string, got %s", key,
				      i, rh_json_kind(item));
		else if (nonempty && i == 0 && json_string_length(item) == 0)
			r = add_child(d, ap, idx, false, "%s[0]: expected a non-empty string", key);
		if (r < 0 && err != RH_ENOMEM)
			err = r;
	}
	free(ap);
	return err;
}

int rh_spec_string_object(struct rh_diags *d, const json_t *obj, const char *ptr, const char *key)
{
	const json_t *v = json_object_get(obj, key);
	const char *name;
	char *op = NULL;
	json_t *item;
	int err = 1;

	if (!v)
		return 0;
	if (!json_is_object(v))
		return add_child(d, ptr, key, false, "%s: expected an object of strings, got %s",
				 key, rh_json_kind(v));
	op = rh_pointer_join(ptr, key);
	if (!op)
		return rh_error_set(RH_ENOMEM, "out of memory validating the runbook");
	json_object_foreach((json_t *)v, name, item)
	{
		int r;

		if (json_is_string(item))
			continue;
		r = add_child(d, op, name, false, "%s '%s': expected a string, got %s", key, name,
			      rh_json_kind(item));
		if (err != RH_ENOMEM)
			err = r;
	}
	free(op);
	return err;
}

/* ------------------------------------------------------------------------ */
/* The validator                                                            */

struct id_entry {
	const char *id;
	size_t index;
};

struct val {
	struct rh_diags *d;
	const char *text;
	size_t len;
	struct rh_runbook *rb;
	int err; /* RH_ENOMEM once an allocation failed */
	bool have_model;
	bool have_stack;
	const json_t *vars;    /* the document's vars object, or NULL */
	const char **step_ids; /* NULL-terminated, borrowed from the doc */
	struct id_entry *ids;  /* sorted by id, then index */
	size_t n_ids;
	unsigned char *anc; /* ancestor marks for `anc_for` */
	size_t anc_for;
	bool anc_types[RH_STEP_TYPE_COUNT]; /* which step types (rh_step_types order) it has */
	size_t *stack;
	size_t *after_mark; /* after_mark[dep] == step + 1: dep already in its after */
};

static void note(struct val *v, int r)
{
	if (r == RH_ENOMEM)
		v->err = RH_ENOMEM;
}

/* Once the diagnostics are full (RH_DIAGS_MAX), further ones are only
 * counted: no formatting, no suggestions, no positions. That keeps a hostile
 * runbook with millions of mistakes linear. */
static bool diags_full(const struct val *v)
{
	return v->d->count >= RH_DIAGS_MAX;
}

static const char *suggest(const struct val *v, const char *word, const char *const *cands)
{
	return diags_full(v) ? NULL : rh_suggest(word, cands);
}

__attribute__((format(printf, 5, 6))) static void
add(struct val *v, const char *ptr, const char *key, bool at_key, const char *fmt, ...)
{
	char msg[MSG_MAX];
	va_list ap;

	if (diags_full(v)) {
		v->d->dropped++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	note(v, add_child(v->d, ptr, key, at_key, "%s", msg));
}

static char *join(struct val *v, const char *ptr, const char *key)
{
	char *p = rh_pointer_join(ptr, key);

	if (!p)
		v->err = rh_error_set(RH_ENOMEM, "out of memory validating the runbook");
	return p;
}

static char *join_index(struct val *v, const char *ptr, size_t i)
{
	char *p = rh_pointer_join_index(ptr, i);

	if (!p)
		v->err = rh_error_set(RH_ENOMEM, "out of memory validating the runbook");
	return p;
}

static char *sdup(struct val *v, const char *s)
{
	char *p = strdup(s ? s : "");

	if (!p)
		v->err = rh_error_set(RH_ENOMEM, "out of memory validating the runbook");
	return p;
}

static bool in_list(const char *s, const char *const *list)
{
	for (size_t i = 0; list && list[i]; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

/* "a, b or c" into buf. */
static void list_words(char *buf, size_t n, const char *const *list)
{
	size_t count = 0, off = 0;

	buf[0] = '\0';
	while (list[count])
		count++;
	for (size_t i = 0; i < count && off < n; i++) {
		const char *sep = i == 0 ? "" : i + 1 == count ? " or " : ", ";
		int w = snprintf(buf + off, n - off, "%s%s", sep, list[i]);

		if (w < 0)
			break;
		off += (size_t)w;
	}
}

/* Rejects keys of `obj` that are in neither list, suggesting a close one. */
static void check_keys(struct val *v, const json_t *obj, const char *ptr, const char *what,
		       const char *const *allowed, const char *const *more)
{
	const char *cands[64];
	size_t n = 0;
	const char *key;
	json_t *item;

	for (size_t i = 0; allowed && allowed[i] && n < 63; i++)
		cands[n++] = allowed[i];
	for (size_t i = 0; more && more[i] && n < 63; i++)
		cands[n++] = more[i];
	cands[n] = NULL;
	json_object_foreach((json_t *)obj, key, item)
	{
		const char *s;
		char words[512];

		if (in_list(key, cands))
			continue;
		if (diags_full(v)) {
			v->d->dropped++;
			continue;
		}
		s = suggest(v, key, cands);
		if (s) {
			add(v, ptr, key, true, "unknown key '%.100s' in %s: did you mean '%s'?",
			    key, what, s);
		} else {
			list_words(words, sizeof(words), cands);
			add(v, ptr, key, true, "unknown key '%.100s' in %s: expected %s", key, what,
			    words);
		}
	}
}

static bool name_ok(const char *s, size_t n)
{
	if (n < 1 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

static bool step_id_ok(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > RH_STEP_ID_MAX || !isalpha((unsigned char)s[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

static bool env_name_ok(const char *s)
{
	if (!*s || isdigit((unsigned char)*s))
		return false;
	for (; *s; s++)
		if (!(*s >= 'A' && *s <= 'Z') && !isdigit((unsigned char)*s) && *s != '_')
			return false;
	return true;
}

static bool var_name_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
			return false;
	return true;
}

/* ---- limits over the whole document: string sizes and nesting depth ---- */

static void check_limits(struct val *v, const json_t *j, const char *ptr, int depth)
{
	const char *key;
	json_t *item;
	size_t i;

	if (v->err)
		return;
	if (json_is_object(j) || json_is_array(j)) {
		if (depth > RH_RUNBOOK_MAX_DEPTH) {
			add(v, ptr, NULL, false,
			    "too deeply nested: at most %d levels of objects "
			    "and arrays are allowed",
			    RH_RUNBOOK_MAX_DEPTH);
			return;
		}
	}
	if (json_is_object(j)) {
		json_object_foreach((json_t *)j, key, item)
		{
			size_t klen = strlen(key);
			char *cp;

			if (klen > RH_RUNBOOK_MAX_STRING) {
				add(v, ptr, key, true,
				    "key is %zu bytes long: at most %u bytes "
				    "are allowed",
				    klen, RH_RUNBOOK_MAX_STRING);
				continue;
			}
			if (json_is_string(item) &&
			    json_string_length(item) <= RH_RUNBOOK_MAX_STRING)
				continue;
			if (!json_is_string(item) && !json_is_object(item) && !json_is_array(item))
				continue;
			cp = join(v, ptr, key);
			if (!cp)
				return;
			check_limits(v, item, cp, depth + 1);
			free(cp);
		}
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, item)
		{
			char *cp;

			if (json_is_string(item) &&
			    json_string_length(item) <= RH_RUNBOOK_MAX_STRING)
				continue;
			if (!json_is_string(item) && !json_is_object(item) && !json_is_array(item))
				continue;
			cp = join_index(v, ptr, i);
			if (!cp)
				return;
			check_limits(v, item, cp, depth + 1);
			free(cp);
		}
	} else if (json_is_string(j) && json_string_length(j) > RH_RUNBOOK_MAX_STRING) {
		add(v, ptr, NULL, false,
		    "string is %zu bytes long: at most %u bytes are allowed "
		    "in one value",
		    json_string_length(j), RH_RUNBOOK_MAX_STRING);
	}
}

/* ---- top level ---- */

static const char *const top_keys[] = {"rehydra",      "name",	      "description", "rto_target_s",
				       "max_parallel", "vars",	      "env_allow",   "model",
				       "target",       "stack",	      "steps",	     "policy",
				       "entity",       "constraints", NULL};
static const char *const model_keys[] = {"registry", "name", "version", "commit", NULL};
static const char *const stack_keys[] = {"command", "env", "image", NULL};
static const char *const step_keys[] = {
    "id",      "do",   "description",	   "after", "timeout_s", "retries",
    "backoff", "when", "restores_service", NULL};
static const char *const backoff_keys[] = {"initial_s", "factor", "max_s", "jitter", NULL};
static const char *const when_names[] = {"on_success", "on_failure", "always", NULL};

static void check_header(struct val *v, const json_t *doc)
{
	static const struct rh_spec_range rto = {0, RH_TIMEOUT_MAX_S, true, true};
	struct rh_runbook *rb = v->rb;
	const json_t *fmt = json_object_get(doc, "rehydra");
	const char *s;
	int r;

	if (!fmt) {
		note(v, rh_spec_missing(v->d, doc, "", "rehydra", "the runbook format version, 1"));
	} else if (!json_is_integer(fmt)) {
		add(v, "", "rehydra", false,
		    "rehydra: expected the runbook format version %d, got "
		    "%s",
		    RH_RUNBOOK_FORMAT, rh_json_kind(fmt));
	} else if (json_integer_value(fmt) != RH_RUNBOOK_FORMAT) {
		add(v, "", "rehydra", false,
		    "unsupported runbook format %" JSON_INTEGER_FORMAT
		    ": this rehydra reads format %d (set \"rehydra\": %d)",
		    json_integer_value(fmt), RH_RUNBOOK_FORMAT, RH_RUNBOOK_FORMAT);
	}
	r = rh_spec_string(v->d, doc, "", "name", true, &s);
	note(v, r);
	if (r == 1 && !name_ok(s, json_string_length(json_object_get(doc, "name"))))
		add(v, "", "name", false,
		    "name: expected 1 to 64 letters, digits, '.', '_' or "
		    "'-', got \"%.80s\"",
		    s);
	else if (r == 1)
		rb->name = sdup(v, s);
	s = "";
	note(v, rh_spec_string(v->d, doc, "", "description", false, &s));
	rb->description = sdup(v, s);
	note(v, rh_spec_number(v->d, doc, "", "rto_target_s", false, &rto, &rb->rto_target_s));
	{
		long long mp = RH_MAX_PARALLEL_DEFAULT;

		note(v, rh_spec_integer(v->d, doc, "", "max_parallel", false, 1,
					RH_MAX_PARALLEL_MAX, &mp));
		rb->max_parallel = (unsigned)mp;
	}
}

static void check_vars(struct val *v, const json_t *doc)
{
	const json_t *vars = json_object_get(doc, "vars");
	const json_t *allow = json_object_get(doc, "env_allow");
	const char *key;
	json_t *item;
	size_t i;

	v->rb->vars = json_object();
	if (!v->rb->vars) {
		v->err = RH_ENOMEM;
		return;
	}
	if (vars && !json_is_object(vars)) {
		add(v, "", "vars", false,
		    "vars: expected an object of names to strings, numbers "
		    "or booleans, got %s",
		    rh_json_kind(vars));
	} else if (vars) {
		v->vars = vars;
		json_object_foreach((json_t *)vars, key, item)
		{
			if (!var_name_ok(key))
				add(v, "/vars", key, true,
				    "variable name '%.100s' cannot be "
				    "referenced: use letters, digits, '_' and '-'",
				    key);
			if (!json_is_string(item) && !json_is_number(item) &&
			    !json_is_boolean(item))
				add(v, "/vars", key, false,
				    "vars '%.100s': expected a string, "
				    "number or boolean, got %s",
				    key, rh_json_kind(item));
			else if (json_object_set(v->rb->vars, key, item) < 0)
				v->err = RH_ENOMEM;
		}
	}
	if (!allow)
		return;
	if (!json_is_array(allow)) {
		add(v, "", "env_allow", false,
		    "env_allow: expected an array of environment "
		    "variable names, got %s",
		    rh_json_kind(allow));
		return;
	}
	v->rb->env_allow = calloc(json_array_size(allow) + 1, sizeof(char *));
	if (!v->rb->env_allow) {
		v->err = RH_ENOMEM;
		return;
	}
	json_array_foreach(allow, i, item)
	{
		char idx[32];

		snprintf(idx, sizeof(idx), "%zu", i);
		if (!json_is_string(item))
			add(v, "/env_allow", idx, false,
			    "env_allow[%zu]: expected an environment "
			    "variable name, got %s",
			    i, rh_json_kind(item));
		else if (!env_name_ok(json_string_value(item)))
			add(v, "/env_allow", idx, false,
			    "env_allow[%zu]: '%.100s' is not an "
			    "environment variable name: use A-Z, 0-9 and '_', not starting with a "
			    "digit",
			    i, json_string_value(item));
		else
			v->rb->env_allow[v->rb->n_env_allow++] = sdup(v, json_string_value(item));
	}
}

static bool hex40(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!isxdigit((unsigned char)s[n]))
			return false;
	return n == 40;
}

static void check_model(struct val *v, const json_t *doc)
{
	const json_t *m = json_object_get(doc, "model");
	struct rh_model_ref *ref = &v->rb->model;
	const char *reg = NULL, *name = NULL, *version = NULL, *commit = NULL;
	int r;

	if (!m)
		return;
	if (!json_is_object(m)) {
		add(v, "", "model", false,
		    "model: expected an object {\"registry\", \"name\", "
		    "\"version\"}, got %s",
		    rh_json_kind(m));
		return;
	}
	v->have_model = true;
	check_keys(v, m, "/model", "model", model_keys, NULL);
	note(v, r = rh_spec_string(v->d, m, "/model", "registry", true, &reg));
	if (r == 1 && !*reg) {
		add(v, "/model", "registry", false,
		    "registry: expected a path or url of the model "
		    "registry, got an empty string");
		reg = NULL;
	}
	note(v, r = rh_spec_string(v->d, m, "/model", "name", true, &name));
	if (r == 1 && !*name) {
		add(v, "/model", "name", false,
		    "name: expected the model's name, got an empty "
		    "string");
		name = NULL;
	}
	note(v, r = rh_spec_string(v->d, m, "/model", "version", true, &version));
	if (r == 1 && !*version) {
		add(v, "/model", "version", false,
		    "version: expected the model's version, got an "
		    "empty string");
		version = NULL;
	}
	note(v, r = rh_spec_string(v->d, m, "/model", "commit", false, &commit));
	if (r == 1 && !hex40(commit)) {
		add(v, "/model", "commit", false,
		    "commit: expected a 40-character hex git commit "
		    "id, got \"%.80s\"",
		    commit);
		commit = NULL;
	}
	ref->present = true;
	ref->registry = sdup(v, reg);
	ref->name = sdup(v, name);
	ref->version = sdup(v, version);
	ref->commit = commit ? sdup(v, commit) : NULL;
}

static void check_target(struct val *v, const json_t *doc)
{
	const json_t *t = json_object_get(doc, "target");
	const char *prov = NULL;
	const char *names[32];
	size_t n = 0;
	int r;

	if (!t)
		return;
	if (!json_is_object(t)) {
		add(v, "", "target", false,
		    "target: expected an object {\"provider\": ...}, "
		    "got %s",
		    rh_json_kind(t));
		return;
	}
	v->rb->target = (json_t *)t;
	note(v, r = rh_spec_string(v->d, t, "/target", "provider", true, &prov));
	note(v, rh_spec_string(v->d, t, "/target", "region", false, NULL));
	if (r == 1) {
		v->rb->provider = rh_provider_find(prov);
		for (size_t i = 0; rh_providers[i] && n < 31; i++)
			names[n++] = rh_providers[i]->name;
		names[n] = NULL;
	}
	if (r == 1 && !v->rb->provider) {
		const char *s = rh_suggest(prov, names);
		char words[256];

		list_words(words, sizeof(words), names);
		if (s)
			add(v, "/target", "provider", false,
			    "unknown provider '%.80s': did you "
			    "mean '%s'?",
			    prov, s);
		else
			add(v, "/target", "provider", false,
			    "unknown provider '%.80s': expected "
			    "%s",
			    prov, words);
	}
	if (v->rb->provider) {
		static const char *const base[] = {"provider", "region", "jurisdiction", NULL};

		check_keys(v, t, "/target", "target", base, v->rb->provider->target_keys);
		if (v->rb->provider->validate)
			note(v, v->rb->provider->validate(v->rb->provider, t, "/target", v->d));
	}
}

/* "jurisdiction" in a target, "entity", "constraints" and "policy" at the
 * top: the runbook opts into policy rules that judge its own target, with
 * the same meaning as in a scenario (scenario.h). */
static void check_policy(struct val *v, const json_t *doc)
{
	static const char *const jur_keys[] = {"country", "bloc", NULL};
	static const char *const ent_keys[] = {"name", "hq_country", NULL};
	static const char *const con_keys[] = {"countries", "blocs", "accelerators", "providers",
					       NULL};
	const json_t *t = v->rb->target;
	const json_t *j = json_object_get(t, "jurisdiction");
	const json_t *e = json_object_get(doc, "entity");
	const json_t *c = json_object_get(doc, "constraints");
	const json_t *p = json_object_get(doc, "policy");

	if (j) {
		if (!json_is_object(j)) {
			add(v, "/target", "jurisdiction", false,
			    "jurisdiction: expected "
			    "{\"country\": \"FI\", \"bloc\": \"EU\"}, got %s",
			    rh_json_kind(j));
		} else {
			check_keys(v, j, "/target/jurisdiction", "jurisdiction", jur_keys, NULL);
			note(v, rh_spec_string(v->d, j, "/target/jurisdiction", "country", true,
					       NULL));
			note(v,
			     rh_spec_string(v->d, j, "/target/jurisdiction", "bloc", false, NULL));
		}
	}
	if (e) {
		if (!json_is_object(e)) {
			add(v, "", "entity", false,
			    "entity: expected {\"name\": ..., "
			    "\"hq_country\": ...}, got %s",
			    rh_json_kind(e));
		} else {
			check_keys(v, e, "/entity", "entity", ent_keys, NULL);
			note(v, rh_spec_string(v->d, e, "/entity", "name", false, NULL));
			note(v, rh_spec_string(v->d, e, "/entity", "hq_country", true, NULL));
		}
	}
	if (c) {
		if (!json_is_object(c)) {
			add(v, "", "constraints", false,
			    "constraints: expected an object of "
			    "allow-lists, got %s",
			    rh_json_kind(c));
		} else {
			check_keys(v, c, "/constraints", "constraints", con_keys, NULL);
			for (size_t i = 0; con_keys[i]; i++)
				note(v, rh_spec_string_array(v->d, c, "/constraints", con_keys[i],
							     false, true));
		}
	}
	if (!p)
		return;
	if (!json_is_array(p) || json_array_size(p) == 0) {
		add(v, "", "policy", false,
		    "policy: expected a non-empty array of rule ids, got %s",
		    json_is_array(p) ? "[]" : rh_json_kind(p));
		return;
	}
	if (!t) {
		add(v, "", "policy", false, "policy judges the runbook's target: add \"target\"");
		return;
	}
	if (v->d->count == 0 &&
	    rh_scenario_check_target(v->d, doc, t, "/target", v->rb->vars, NULL, NULL) < 0)
		add(v, "", "policy", false, "cannot check the policy: %s", rh_error_last());
}

static void check_stack(struct val *v, const json_t *doc)
{
	const json_t *s = json_object_get(doc, "stack");

	if (!s)
		return;
	if (!json_is_object(s)) {
		add(v, "", "stack", false, "stack: expected an object {\"command\": [...]}, got %s",
		    rh_json_kind(s));
		return;
	}
	v->have_stack = true;
	v->rb->stack = (json_t *)s;
	check_keys(v, s, "/stack", "stack", stack_keys, NULL);
	note(v, rh_spec_string_array(v->d, s, "/stack", "command", true, true));
	note(v, rh_spec_string_object(v->d, s, "/stack", "env"));
	note(v, rh_spec_string(v->d, s, "/stack", "image", false, NULL));
	{
		/* the same rule as an exec step's env names */
		const json_t *env = json_object_get(s, "env");
		const char *key;
		json_t *val;

		json_object_foreach((json_t *)env, key, val)
		{
			if (*key && !strchr(key, '='))
				continue;
			add(v, "/stack/env", key, true,
			    "invalid environment variable name '%.100s': "
			    "names are non-empty and contain no '='",
			    key);
		}
	}
}

/* ---- steps ---- */

static int id_cmp(const void *a, const void *b)
{
	const struct id_entry *x = a, *y = b;
	int c = strcmp(x->id, y->id);

	if (c)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* The first step (in file order) with `id`, or -1. */
static long find_id(const struct val *v, const char *id)
{
	size_t lo = 0, hi = v->n_ids;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(v->ids[mid].id, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < v->n_ids && strcmp(v->ids[lo].id, id) == 0)
		return (long)v->ids[lo].index;
	return -1;
}

/* First pass: ids, so that `after` and ${steps.*} can be resolved in any
 * order, and duplicates are reported against the first definition. */
static void collect_ids(struct val *v, const json_t *steps)
{
	size_t n = json_array_size(steps);
	json_t *step;
	size_t i;

	v->step_ids = calloc(n + 1, sizeof(*v->step_ids));
	v->ids = calloc(n + 1, sizeof(*v->ids));
	if (!v->step_ids || !v->ids) {
		v->err = RH_ENOMEM;
		return;
	}
	json_array_foreach(steps, i, step)
	{
		const json_t *id = json_object_get(step, "id");

		if (!json_is_object(step) || !json_is_string(id) ||
		    !step_id_ok(json_string_value(id)))
			continue;
		v->ids[v->n_ids].id = json_string_value(id);
		v->ids[v->n_ids].index = i;
		v->step_ids[v->n_ids] = json_string_value(id);
		v->n_ids++;
	}
	qsort(v->ids, v->n_ids, sizeof(*v->ids), id_cmp);
	for (size_t k = 1; k < v->n_ids; k++) {
		char first[64], ptr[64];
		int line = 0, col = 0;
		size_t f = k - 1;

		if (strcmp(v->ids[k].id, v->ids[k - 1].id) != 0)
			continue;
		if (diags_full(v)) {
			v->d->dropped++;
			continue;
		}
		while (f > 0 && strcmp(v->ids[f - 1].id, v->ids[k].id) == 0)
			f--;
		snprintf(first, sizeof(first), "/steps/%zu/id", v->ids[f].index);
		rh_jsonpos_locate(v->text, v->len, first, false, &line, &col);
		snprintf(ptr, sizeof(ptr), "/steps/%zu", v->ids[k].index);
		add(v, ptr, "id", false,
		    "duplicate step id '%s' (first defined at line %d): give "
		    "each step its own id",
		    v->ids[k].id, line);
	}
}

/* Position of the item naming `id` in a step's after array, for pointers. */
static long after_item(const json_t *spec, const char *id)
{
	const json_t *after = json_object_get(spec, "after");
	json_t *item;
	size_t i;

	json_array_foreach(after, i,
			   item) if (json_is_string(item) &&
				     strcmp(json_string_value(item), id) == 0) return (long)i;
	return -1;
}

static void check_after(struct val *v, struct rh_step *st, size_t idx, const json_t *spec)
{
	const json_t *after = json_object_get(spec, "after");
	char *ap = NULL;
	json_t *item;
	size_t i;

	if (!after)
		return;
	if (!json_is_array(after)) {
		add(v, st->pointer, "after", false, "after: expected an array of step ids, got %s",
		    rh_json_kind(after));
		return;
	}
	st->after = calloc(json_array_size(after) + 1, sizeof(*st->after));
	ap = join(v, st->pointer, "after");
	if (!v->after_mark)
		v->after_mark = calloc(v->n_ids + 1, sizeof(*v->after_mark));
	if (!st->after || !ap || !v->after_mark) {
		v->err = RH_ENOMEM;
		goto done;
	}
	json_array_foreach(after, i, item)
	{
		char idx_s[32] = "";
		const char *name;
		long dep;

		/* the index as a pointer token, only when there is something to say */
		if (!diags_full(v) &&
		    (!json_is_string(item) || (dep = find_id(v, json_string_value(item))) < 0 ||
		     (size_t)dep == idx))
			snprintf(idx_s, sizeof(idx_s), "%zu", i);
		if (!json_is_string(item)) {
			add(v, ap, idx_s, false, "after[%zu]: expected a step id, got %s", i,
			    rh_json_kind(item));
			continue;
		}
		name = json_string_value(item);
		dep = find_id(v, name);
		if (dep < 0) {
			const char *s = suggest(v, name, v->step_ids);

			if (s)
				add(v, ap, idx_s, false,
				    "unknown step '%.80s' in after: did you "
				    "mean '%s'?",
				    name, s);
			else
				add(v, ap, idx_s, false,
				    "unknown step '%.80s' in after: no step "
				    "has that id",
				    name);
			continue;
		}
		if ((size_t)dep == idx) {
			add(v, ap, idx_s, false,
			    "step '%s' cannot depend on itself: remove '%s' "
			    "from its after",
			    name, name);
			continue;
		}
		/* linear: a mark per dependency instead of a scan of the list */
		if (v->after_mark[dep] != idx + 1) {
			v->after_mark[dep] = idx + 1;
			st->after[st->n_after++] = (size_t)dep;
		}
	}
done:
	free(ap);
}

static void check_when(struct val *v, struct rh_step *st, const json_t *spec)
{
	const char *w = NULL;
	int r = rh_spec_string(v->d, spec, st->pointer, "when", false, &w);

	note(v, r);
	if (r != 1)
		return;
	if (strcmp(w, "on_success") == 0) {
		st->when = RH_WHEN_ON_SUCCESS;
	} else if (strcmp(w, "on_failure") == 0) {
		st->when = RH_WHEN_ON_FAILURE;
	} else if (strcmp(w, "always") == 0) {
		st->when = RH_WHEN_ALWAYS;
	} else {
		const char *s = rh_suggest(w, when_names);

		if (s)
			add(v, st->pointer, "when", false,
			    "when: unknown value '%.80s': did you "
			    "mean '%s'?",
			    w, s);
		else
			add(v, st->pointer, "when", false,
			    "when: expected on_success, on_failure "
			    "or always, got '%.80s'",
			    w);
	}
}

static void check_backoff(struct val *v, struct rh_step *st, const json_t *spec)
{
	static const struct rh_spec_range secs = {0, RH_TIMEOUT_MAX_S, false, true};
	static const struct rh_spec_range factor = {1, 100, false, false};
	static const struct rh_spec_range jitter = {0, 1, false, false};
	const json_t *b = json_object_get(spec, "backoff");
	char *bp;

	if (!b)
		return;
	if (!json_is_object(b)) {
		add(v, st->pointer, "backoff", false,
		    "backoff: expected an object {\"initial_s\", "
		    "\"factor\", \"max_s\", \"jitter\"}, got %s",
		    rh_json_kind(b));
		return;
	}
	bp = join(v, st->pointer, "backoff");
	if (!bp)
		return;
	check_keys(v, b, bp, "backoff", backoff_keys, NULL);
	note(v, rh_spec_number(v->d, b, bp, "initial_s", false, &secs, &st->backoff.initial_s));
	note(v, rh_spec_number(v->d, b, bp, "factor", false, &factor, &st->backoff.factor));
	note(v, rh_spec_number(v->d, b, bp, "max_s", false, &secs, &st->backoff.max_s));
	note(v, rh_spec_number(v->d, b, bp, "jitter", false, &jitter, &st->backoff.jitter));
	free(bp);
}

static void check_do(struct val *v, struct rh_step *st, const json_t *spec)
{
	const char *names[16];
	const char *name = NULL;
	char words[256];
	size_t n = 0;
	int r;

	for (size_t i = 0; rh_step_types[i] && n < 15; i++)
		names[n++] = rh_step_types[i]->name;
	names[n] = NULL;
	list_words(words, sizeof(words), names);
	if (!json_object_get(spec, "do")) {
		char exp[300];

		snprintf(exp, sizeof(exp), "the step type: %s", words);
		note(v, rh_spec_missing(v->d, spec, st->pointer, "do", exp));
		return;
	}
	note(v, r = rh_spec_string(v->d, spec, st->pointer, "do", true, &name));
	if (r != 1)
		return;
	st->type = rh_step_type_find(name);
	if (!st->type) {
		const char *s = rh_suggest(name, names);

		if (s)
			add(v, st->pointer, "do", false,
			    "unknown step type '%.80s': did you mean "
			    "'%s'?",
			    name, s);
		else
			add(v, st->pointer, "do", false, "unknown step type '%.80s': expected %s",
			    name, words);
		return;
	}
	if (st->type->needs_provider && !v->rb->target)
		add(v, st->pointer, "do", false,
		    "step '%s' (%s) needs a target: add \"target\": "
		    "{\"provider\": \"local\"} to the runbook",
		    st->id ? st->id : "?", name);
	if (st->type->needs_model && !v->have_model)
		add(v, st->pointer, "do", false,
		    "step '%s' (%s) needs a model: add \"model\": "
		    "{\"registry\": ..., \"name\": ..., \"version\": ...} to the runbook",
		    st->id ? st->id : "?", name);
	if (st->type == &rh_step_deploy && !v->have_stack)
		add(v, st->pointer, "do", false,
		    "step '%s' (deploy) needs a stack: add \"stack\": "
		    "{\"command\": [...]} to the runbook",
		    st->id ? st->id : "?");
}

static void check_step(struct val *v, size_t idx, const json_t *spec)
{
	static const struct rh_spec_range timeout = {0, RH_TIMEOUT_MAX_S, true, true};
	struct rh_step *st = &v->rb->steps[idx];
	const char *id = NULL;
	long long retries = 0;
	int r;

	st->pointer = join_index(v, "/steps", idx);
	if (!st->pointer)
		return;
	st->spec = (json_t *)spec;
	st->backoff.initial_s = 1;
	st->backoff.factor = 2;
	st->backoff.max_s = 30;
	st->backoff.jitter = 0.2;
	st->when = RH_WHEN_ON_SUCCESS;
	if (!json_is_object(spec)) {
		add(v, st->pointer, NULL, false,
		    "expected a step object {\"id\": ..., \"do\": "
		    "...}, got %s",
		    rh_json_kind(spec));
		return;
	}
	note(v, r = rh_spec_string(v->d, spec, st->pointer, "id", true, &id));
	if (r == 1 && !step_id_ok(id))
		add(v, st->pointer, "id", false,
		    "invalid step id '%.80s': start with a letter, "
		    "then use letters, digits, '_' and '-' (at most %d characters)",
		    id, RH_STEP_ID_MAX);
	else if (r == 1)
		st->id = sdup(v, id);
	check_do(v, st, spec);
	note(v, rh_spec_string(v->d, spec, st->pointer, "description", false, NULL));
	check_after(v, st, idx, spec);
	/* The step-type table is the one source of defaults; an unknown type
	 * is already an error and runs nothing. */
	st->timeout_s = st->type ? st->type->default_timeout_s : 0;
	note(v,
	     rh_spec_number(v->d, spec, st->pointer, "timeout_s", false, &timeout, &st->timeout_s));
	note(v, rh_spec_integer(v->d, spec, st->pointer, "retries", false, 0, RH_RETRIES_MAX,
				&retries));
	st->retries = (unsigned)retries;
	check_backoff(v, st, spec);
	check_when(v, st, spec);
	note(v, rh_spec_bool(v->d, spec, st->pointer, "restores_service", &st->restores_service));
	if (st->restores_service && st->when != RH_WHEN_ON_SUCCESS)
		add(v, st->pointer, "restores_service", true,
		    "restores_service on a step that runs in the final phase (when: %s): the "
		    "service is restored by the main phase; remove it or the when",
		    st->when == RH_WHEN_ALWAYS ? "always" : "on_failure");
	if (st->type) {
		char what[96];

		if (st->id)
			snprintf(what, sizeof(what), "step '%s'", st->id);
		else
			snprintf(what, sizeof(what), "steps[%s]", st->pointer + 7);
		check_keys(v, spec, st->pointer, what, step_keys, st->type->keys);
		if (st->type->validate)
			note(v, st->type->validate(spec, st->pointer, v->d));
	}
}

/* ---- the graph ---- */

static const char *step_name(const struct rh_runbook *rb, size_t i)
{
	return rb->steps[i].id ? rb->steps[i].id : "?";
}

static void report_cycle(struct val *v, const size_t *cyc, size_t n)
{
	struct rh_runbook *rb = v->rb;
	char path[MSG_MAX / 2];
	size_t start = 0, off = 0;
	long item;

	/* Start at the step that comes first in the file, so the same cycle
	 * always reads the same way. */
	for (size_t k = 1; k < n; k++)
		if (cyc[k] < cyc[start])
			start = k;
	path[0] = '\0';
	for (size_t k = 0; k <= n && off < sizeof(path); k++) {
		size_t s = cyc[(start + k) % n];
		int w;

		if (k == 12 && n > 13) {
			w = snprintf(path + off, sizeof(path) - off, " -> ... (%zu steps)", n);
			k = n - 1;
		} else {
			w = snprintf(path + off, sizeof(path) - off, "%s%s", k ? " -> " : "",
				     step_name(rb, s));
		}
		if (w < 0)
			break;
		off += (size_t)w;
	}
	item = after_item(rb->steps[cyc[start]].spec, step_name(rb, cyc[(start + 1) % n]));
	if (item >= 0) {
		char key[32];
		char *ap = join(v, rb->steps[cyc[start]].pointer, "after");

		if (!ap)
			return;
		snprintf(key, sizeof(key), "%ld", item);
		add(v, ap, key, false,
		    "dependency cycle: %s: steps in a cycle can never start; "
		    "remove one of these after entries",
		    path);
		free(ap);
	} else {
		add(v, rb->steps[cyc[start]].pointer, NULL, false,
		    "dependency cycle: %s: steps "
		    "in a cycle can never start; remove one of these after entries",
		    path);
	}
}

/* Depth-first search over `after` edges, iterative (10000 steps in a chain
 * must not exhaust the C stack); every back edge closes one cycle. */
static bool find_cycles(struct val *v)
{
	struct rh_runbook *rb = v->rb;
	size_t n = rb->n_steps;
	unsigned char *color = calloc(n, 1);
	size_t *edge = calloc(n, sizeof(*edge));
	size_t *stack = calloc(n, sizeof(*stack));
	size_t *pos = calloc(n, sizeof(*pos));
	bool found = false;

	if (!color || !edge || !stack || !pos) {
		v->err = RH_ENOMEM;
		goto done;
	}
	for (size_t s = 0; s < n; s++) {
		size_t top = 0;

		if (color[s])
			continue;
		stack[top++] = s;
		color[s] = 1;
		pos[s] = 0;
		edge[s] = 0;
		while (top) {
			size_t u = stack[top - 1];
			size_t w;

			if (edge[u] == rb->steps[u].n_after) {
				color[u] = 2;
				top--;
				continue;
			}
			w = rb->steps[u].after[edge[u]++];
			if (color[w] == 1) {
				report_cycle(v, stack + pos[w], top - pos[w]);
				found = true;
			} else if (color[w] == 0) {
				color[w] = 1;
				pos[w] = top;
				edge[w] = 0;
				stack[top++] = w;
			}
		}
	}
done:
	free(color);
	free(edge);
	free(stack);
	free(pos);
	return found;
}

/* A main-phase step that waits for a final-phase step would wait forever:
 * the final phase starts only when the main phase is over. */
static void check_phases(struct val *v)
{
	struct rh_runbook *rb = v->rb;

	for (size_t i = 0; i < rb->n_steps; i++) {
		struct rh_step *st = &rb->steps[i];

		if (st->when != RH_WHEN_ON_SUCCESS)
			continue;
		for (size_t k = 0; k < st->n_after; k++) {
			struct rh_step *dep = &rb->steps[st->after[k]];
			long item;
			char key[32], *ap;

			/* the position in after is looked up (a scan) only to report */
			if (dep->when == RH_WHEN_ON_SUCCESS || diags_full(v))
				continue;
			item = after_item(st->spec, step_name(rb, st->after[k]));
			if (item < 0)
				continue;
			ap = join(v, st->pointer, "after");
			if (!ap)
				return;
			snprintf(key, sizeof(key), "%ld", item);
			add(v, ap, key, false,
			    "step '%s' would never start: it runs in the main "
			    "phase but waits for '%s', which has when=%s and runs only after the "
			    "main phase; remove '%s' from its after or give it when=%s too",
			    step_name(rb, i), dep->id, rh_when_name(dep->when), dep->id,
			    rh_when_name(dep->when));
			free(ap);
		}
	}
}

static void heap_push(size_t *h, size_t *n, size_t x)
{
	size_t i = (*n)++;

	h[i] = x;
	while (i > 0 && h[(i - 1) / 2] > h[i]) {
		size_t p = (i - 1) / 2, t = h[p];

		h[p] = h[i];
		h[i] = t;
		i = p;
	}
}

static size_t heap_pop(size_t *h, size_t *n)
{
	size_t top = h[0], i = 0;

	h[0] = h[--(*n)];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i, t;

		if (l < *n && h[l] < h[m])
			m = l;
		if (r < *n && h[r] < h[m])
			m = r;
		if (m == i)
			break;
		t = h[m];
		h[m] = h[i];
		h[i] = t;
		i = m;
	}
	return top;
}

/* Kahn's algorithm; among ready steps the one first in the file goes first,
 * so the order (and everything printed from it) is stable. */
static void topo_order(struct val *v)
{
	struct rh_runbook *rb = v->rb;
	size_t n = rb->n_steps, nh = 0, k = 0, e = 0;
	size_t *indeg = calloc(n + 1, sizeof(size_t));
	size_t *first = calloc(n + 1, sizeof(size_t));
	size_t *users = NULL;
	size_t *heap = calloc(n + 1, sizeof(size_t));
	size_t *fill = calloc(n + 1, sizeof(size_t));

	rb->order = calloc(n + 1, sizeof(size_t));
	for (size_t i = 0; i < n; i++)
		e += rb->steps[i].n_after;
	users = calloc(e + 1, sizeof(size_t));
	if (!indeg || !first || !users || !heap || !fill || !rb->order) {
		v->err = RH_ENOMEM;
		goto done;
	}
	/* Reverse edges (dependency -> dependents), compressed. */
	for (size_t i = 0; i < n; i++) {
		indeg[i] = rb->steps[i].n_after;
		for (size_t a = 0; a < rb->steps[i].n_after; a++)
			first[rb->steps[i].after[a] + 1]++;
	}
	for (size_t i = 0; i < n; i++)
		first[i + 1] += first[i];
	for (size_t i = 0; i < n; i++)
		for (size_t a = 0; a < rb->steps[i].n_after; a++) {
			size_t dep = rb->steps[i].after[a];

			users[first[dep] + fill[dep]++] = i;
		}
	for (size_t i = 0; i < n; i++)
		if (indeg[i] == 0)
			heap_push(heap, &nh, i);
	while (nh) {
		size_t u = heap_pop(heap, &nh);

		rb->order[k++] = u;
		for (size_t j = first[u]; j < first[u + 1]; j++)
			if (--indeg[users[j]] == 0)
				heap_push(heap, &nh, users[j]);
	}
	/* k < n only with a cycle, which has been reported already. */
done:
	free(indeg);
	free(first);
	free(users);
	free(heap);
	free(fill);
}

/* ---- ${...} references ---- */

enum ref_mode { REF_STEP, REF_STACK, REF_REGISTRY };

struct ref_ctx {
	struct val *v;
	enum ref_mode mode;
	size_t user;	   /* the step whose dependencies count; SIZE_MAX: none */
	bool check_static; /* report namespace/name problems (once per string) */
	const char *ptr;   /* the string's pointer */
};

static const char *const namespaces[] = {"target",  "model", "vars",	"steps", "env",
					 "runbook", "drill", "rehydra", NULL};
static const char *const runbook_fields[] = {"name", "dir", "path", "sha256", NULL};
static const char *const drill_fields[] = {"id", "dir", NULL};
static const char *const rehydra_fields[] = {"bindir", "version", NULL};
static const char *const model_static[] = {"name", "version", "registry", "commit", NULL};
static const char *const model_dynamic[] = {"sha256", "path", NULL};
static const char *const model_fields[] = {"name",   "version", "registry", "commit",
					   "sha256", "path",	NULL};

/* Marks every step `u` depends on, directly or not. */
static bool ancestors(struct val *v, size_t u)
{
	struct rh_runbook *rb = v->rb;
	size_t top = 0;

	if (v->anc_for == u)
		return true;
	if (!v->anc) {
		v->anc = calloc(rb->n_steps, 1);
		v->stack = calloc(rb->n_steps + 1, sizeof(size_t));
		if (!v->anc || !v->stack) {
			v->err = RH_ENOMEM;
			return false;
		}
	}
	memset(v->anc, 0, rb->n_steps);
	memset(v->anc_types, 0, sizeof(v->anc_types));
	v->stack[top++] = u;
	while (top) {
		size_t x = v->stack[--top];

		for (size_t a = 0; a < rb->steps[x].n_after; a++) {
			size_t dep = rb->steps[x].after[a];

			if (v->anc[dep])
				continue;
			v->anc[dep] = 1;
			v->stack[top++] = dep;
			for (size_t t = 0; dep != u && t < RH_STEP_TYPE_COUNT; t++)
				if (rb->steps[dep].type == rh_step_types[t])
					v->anc_types[t] = true;
		}
	}
	v->anc_for = u;
	return true;
}

/* The first step (in file order) of `type`, or NULL. */
static const char *first_of_type(const struct rh_runbook *rb, const struct rh_step_type *type)
{
	for (size_t i = 0; i < rb->n_steps; i++)
		if (rb->steps[i].type == type && rb->steps[i].id)
			return rb->steps[i].id;
	return NULL;
}

static bool depends_on_type(struct val *v, size_t u, const struct rh_step_type *type)
{
	if (!ancestors(v, u))
		return true;
	for (size_t t = 0; t < RH_STEP_TYPE_COUNT; t++)
		if (rh_step_types[t] == type)
			return v->anc_types[t];
	return false;
}

/* "step 'b'" or "the stack (deployed by step 'start')": who reads the value. */
static void reader(char *buf, size_t n, const struct ref_ctx *c)
{
	if (c->mode == REF_STACK)
		snprintf(buf, n, "the stack, deployed by step '%s',", step_name(c->v->rb, c->user));
	else
		snprintf(buf, n, "step '%s'", step_name(c->v->rb, c->user));
}

static void need_type(struct ref_ctx *c, const char *ref, const struct rh_step_type *type)
{
	struct val *v = c->v;
	const char *prod;
	char who[128];

	if (c->user == SIZE_MAX || depends_on_type(v, c->user, type))
		return;
	/* One typo, one error: a step whose `do` is unknown (already reported,
	 * with a suggestion) may well be the missing producer. */
	for (size_t i = 0; i < v->rb->n_steps; i++)
		if (!v->rb->steps[i].type)
			return;
	reader(who, sizeof(who), c);
	prod = first_of_type(v->rb, type);
	if (prod)
		add(v, c->ptr, NULL, false,
		    "%s uses '${%s}', which a %s step sets at run time, "
		    "but does not depend on one: add \"%s\" to the after of step '%s'",
		    who, ref, type->name, prod, step_name(v->rb, c->user));
	else
		add(v, c->ptr, NULL, false,
		    "%s uses '${%s}', which a %s step sets at run time, "
		    "but the runbook has no %s step: add one and list it in the after of step "
		    "'%s'",
		    who, ref, type->name, type->name, step_name(v->rb, c->user));
}

__attribute__((format(printf, 3, 4))) static void ref_error(struct ref_ctx *c, const char *ref,
							    const char *fmt, ...)
{
	char msg[MSG_MAX];
	va_list ap;

	if (!c->check_static)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	add(c->v, c->ptr, NULL, false, "reference '${%s}': %s", ref, msg);
}

static void unknown_field(struct ref_ctx *c, const char *ref, const char *ns, const char *field,
			  const char *const *fields)
{
	const char *s = rh_suggest(field, fields);
	char words[256];

	if (s) {
		ref_error(c, ref, "unknown %s field '%.80s' (did you mean '%s'?)", ns, field, s);
	} else {
		list_words(words, sizeof(words), fields);
		ref_error(c, ref, "unknown %s field '%.80s' (expected %s)", ns, field, words);
	}
}

static void ref_target(struct ref_ctx *c, const char *ref, const char *f)
{
	struct rh_runbook *rb = c->v->rb;
	const struct rh_provider_ops *ops = rb->provider;
	const char *fields[40];
	size_t n = 0;

	if (!rb->target) {
		ref_error(c, ref, "the runbook has no target: add \"target\": {\"provider\": ...}");
		return;
	}
	if (strcmp(f, "provider") == 0)
		return;
	if (strcmp(f, "region") == 0) {
		if (!json_is_string(json_object_get(rb->target, "region")))
			ref_error(c, ref, "the target has no region: add \"region\" to \"target\"");
		return;
	}
	if (!ops)
		return; /* unknown provider: reported already */
	if (in_list(f, ops->output_keys)) {
		need_type(c, ref, &rh_step_provision);
		return;
	}
	if (in_list(f, ops->target_keys)) {
		if (!json_object_get(rb->target, f))
			ref_error(c, ref, "target.%s is not set: add \"%s\" to \"target\"", f, f);
		return;
	}
	fields[n++] = "provider";
	fields[n++] = "region";
	for (size_t i = 0; ops->output_keys && ops->output_keys[i] && n < 38; i++)
		fields[n++] = ops->output_keys[i];
	for (size_t i = 0; ops->target_keys && ops->target_keys[i] && n < 38; i++)
		fields[n++] = ops->target_keys[i];
	fields[n] = NULL;
	unknown_field(c, ref, "target", f, fields);
}

static void ref_model(struct ref_ctx *c, const char *ref, const char *f)
{
	struct rh_runbook *rb = c->v->rb;

	if (!c->v->have_model) {
		ref_error(c, ref,
			  "the runbook has no model: add \"model\": {\"registry\": ..., "
			  "\"name\": ..., \"version\": ...}");
		return;
	}
	if (in_list(f, model_dynamic)) {
		need_type(c, ref, &rh_step_sync_artifacts);
		return;
	}
	if (!in_list(f, model_static)) {
		unknown_field(c, ref, "model", f, model_fields);
		return;
	}
	if (strcmp(f, "commit") == 0 &&
	    !json_object_get(json_object_get(rb->doc, "model"), "commit"))
		ref_error(c, ref, "model.commit is not set: add \"commit\" to \"model\"");
}

static void ref_vars(struct ref_ctx *c, const char *ref, const char *f)
{
	const char *names[256];
	const char *key;
	json_t *item;
	size_t n = 0;

	if (json_object_get(c->v->vars, f))
		return;
	json_object_foreach((json_t *)c->v->vars, key, item)
	{
		if (n < 255)
			names[n++] = key;
	}
	names[n] = NULL;
	if (rh_suggest(f, names))
		ref_error(c, ref, "unknown variable '%.80s' (did you mean '%s'?)", f,
			  rh_suggest(f, names));
	else
		ref_error(c, ref, "unknown variable '%.80s': declare it in \"vars\"", f);
}

static void ref_env(struct ref_ctx *c, const char *ref, const char *f)
{
	struct rh_runbook *rb = c->v->rb;
	bool allowed = false;

	for (size_t i = 0; i < rb->n_env_allow; i++)
		allowed = allowed || (rb->env_allow[i] && strcmp(rb->env_allow[i], f) == 0);
	if (!allowed)
		ref_error(c, ref,
			  "environment variable %.80s is not allowed: add \"%.80s\" to "
			  "\"env_allow\"",
			  f, f);
	else if (!getenv(f))
		ref_error(c, ref,
			  "environment variable %.80s is not set: set it before running "
			  "rehydra",
			  f);
}

static void ref_steps(struct ref_ctx *c, const char *ref, const char *rest)
{
	struct val *v = c->v;
	const char *dot = strchr(rest, '.');
	char id[RH_STEP_ID_MAX + 1];
	char who[128];
	long dep;

	if (!dot || (size_t)(dot - rest) > RH_STEP_ID_MAX || strncmp(dot, ".outputs.", 9) != 0 ||
	    !dot[9]) {
		ref_error(c, ref, "malformed step reference: write '${steps.ID.outputs.KEY}'");
		return;
	}
	memcpy(id, rest, (size_t)(dot - rest));
	id[dot - rest] = '\0';
	dep = find_id(v, id);
	if (dep < 0) {
		const char *s = suggest(v, id, v->step_ids);

		if (s)
			ref_error(c, ref, "unknown step '%s' (did you mean '%s'?)", id, s);
		else
			ref_error(c, ref, "unknown step '%s': no step has that id", id);
		return;
	}
	if (c->user == SIZE_MAX)
		return;
	if ((size_t)dep == c->user) {
		if (c->mode == REF_STEP)
			ref_error(c, ref, "step '%s' cannot read its own outputs", id);
		else
			add(v, c->ptr, NULL, false,
			    "the stack reads '${%s}', the outputs of the "
			    "deploy step '%s' itself: a deploy step cannot read its own outputs",
			    ref, id);
		return;
	}
	if (!ancestors(v, c->user) || v->anc[dep])
		return;
	reader(who, sizeof(who), c);
	add(v, c->ptr, NULL, false,
	    "%s reads '${%s}' but does not depend on step '%s': add "
	    "\"%s\" to the after of step '%s'",
	    who, ref, id, id, step_name(v->rb, c->user));
}

static int check_ref(const char *ref, void *user)
{
	struct ref_ctx *c = user;
	const char *dot = strchr(ref, '.');
	size_t nl = dot ? (size_t)(dot - ref) : strlen(ref);
	char ns[16] = "";
	const char *f = dot ? dot + 1 : NULL;

	if (nl < sizeof(ns)) {
		memcpy(ns, ref, nl);
		ns[nl] = '\0';
	}
	if (!in_list(ns, namespaces)) {
		const char *s;
		char words[256];

		s = rh_suggest(ns, namespaces);
		list_words(words, sizeof(words), namespaces);
		if (s)
			ref_error(c, ref, "unknown namespace '%.*s' (did you mean '%s'?)",
				  (int)(nl > 80 ? 80 : nl), ref, s);
		else
			ref_error(c, ref, "unknown namespace '%.*s' (expected %s)",
				  (int)(nl > 80 ? 80 : nl), ref, words);
		goto done;
	}
	if (c->mode == REF_REGISTRY && strcmp(ns, "vars") != 0 && strcmp(ns, "env") != 0 &&
	    strcmp(ns, "runbook") != 0) {
		ref_error(c, ref,
			  "model.registry may only use ${vars.*}, ${env.*} and "
			  "${runbook.*}: %s is not known when the registry is read",
			  ns);
		goto done;
	}
	if (!f) {
		ref_error(c, ref, "incomplete reference: name a field, as in '${%s.NAME}'", ns);
		goto done;
	}
	if (strcmp(ns, "target") == 0)
		ref_target(c, ref, f);
	else if (strcmp(ns, "model") == 0)
		ref_model(c, ref, f);
	else if (strcmp(ns, "vars") == 0)
		ref_vars(c, ref, f);
	else if (strcmp(ns, "env") == 0)
		ref_env(c, ref, f);
	else if (strcmp(ns, "steps") == 0)
		ref_steps(c, ref, f);
	else if (strcmp(ns, "runbook") == 0 && !in_list(f, runbook_fields))
		unknown_field(c, ref, "runbook", f, runbook_fields);
	else if (strcmp(ns, "drill") == 0 && !in_list(f, drill_fields))
		unknown_field(c, ref, "drill", f, drill_fields);
	else if (strcmp(ns, "rehydra") == 0 && !in_list(f, rehydra_fields))
		unknown_field(c, ref, "rehydra", f, rehydra_fields);
done:
	return c->v->err;
}

static void refs_in_string(struct ref_ctx *c, const char *s)
{
	int r = rh_interp_foreach_ref(s, check_ref, c);

	if (r == RH_EINVAL && c->check_static)
		add(c->v, c->ptr, NULL, false, "%s", rh_error_last());
	note(c->v, r);
}

/* Every string value under `j` (not keys: they are not expanded). */
static void refs_in_json(struct ref_ctx *c, const json_t *j, const char *ptr, bool step_top)
{
	const char *key;
	json_t *item;
	size_t i;

	if (c->v->err)
		return;
	if (json_is_string(j)) {
		const char *save = c->ptr;

		if (!strstr(json_string_value(j), "${"))
			return;
		c->ptr = ptr;
		refs_in_string(c, json_string_value(j));
		c->ptr = save;
	} else if (json_is_object(j)) {
		json_object_foreach((json_t *)j, key, item)
		{
			char *cp;

			/* Identifiers, checked by their own rules. */
			if (step_top && (strcmp(key, "id") == 0 || strcmp(key, "do") == 0 ||
					 strcmp(key, "after") == 0 || strcmp(key, "when") == 0))
				continue;
			if (!json_is_string(item) && !json_is_object(item) && !json_is_array(item))
				continue;
			cp = join(c->v, ptr, key);
			if (!cp)
				return;
			refs_in_json(c, item, cp, false);
			free(cp);
		}
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, item)
		{
			char *cp;

			if (!json_is_string(item) && !json_is_object(item) && !json_is_array(item))
				continue;
			cp = join_index(c->v, ptr, i);
			if (!cp)
				return;
			refs_in_json(c, item, cp, false);
			free(cp);
		}
	}
}

static void check_refs(struct val *v)
{
	struct rh_runbook *rb = v->rb;
	struct ref_ctx c = {v, REF_REGISTRY, SIZE_MAX, true, "/model/registry"};
	const json_t *reg = json_object_get(json_object_get(rb->doc, "model"), "registry");

	if (v->have_model && json_is_string(reg))
		refs_in_string(&c, json_string_value(reg));
	if (v->have_stack) {
		c.mode = REF_STACK;
		c.user = SIZE_MAX;
		refs_in_json(&c, rb->stack, "/stack", false);
		c.check_static = false;
		for (size_t i = 0; i < rb->n_steps; i++) {
			if (rb->steps[i].type != &rh_step_deploy)
				continue;
			c.user = i;
			refs_in_json(&c, rb->stack, "/stack", false);
		}
	}
	c.mode = REF_STEP;
	c.check_static = true;
	for (size_t i = 0; i < rb->n_steps && !v->err; i++) {
		if (!json_is_object(rb->steps[i].spec))
			continue;
		c.user = i;
		refs_in_json(&c, rb->steps[i].spec, rb->steps[i].pointer, true);
	}
}

/* The value of --var NAME=VALUE, new: of the declared var's type, so a
 * number stays a number ("${vars.delay}" as a step's "seconds"), else the
 * text. NULL (with a diagnostic) when it does not fit the type. */
static json_t *override_value(struct val *v, const char *ptr, const struct rh_var_override *ov,
			      const json_t *decl)
{
	const char *text = ov->value;
	json_t *j = NULL;
	char *end = NULL;

	if (json_is_integer(decl) || json_is_real(decl)) {
		double d;

		errno = 0;
		d = strtod(text, &end);
		if (*text && end && *end == '\0' && errno == 0 && isfinite(d)) {
			long long n = (long long)d;

			j = json_is_integer(decl) && (double)n == d && strchr(text, '.') == NULL &&
				    strpbrk(text, "eE") == NULL
				? json_integer(n)
				: json_real(d);
		} else {
			add(v, ptr, NULL, true,
			    "--var %.80s: the runbook declares '%.80s' a number; got '%.80s'",
			    ov->name, ov->name, text);
			return NULL;
		}
	} else if (json_is_boolean(decl)) {
		if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0) {
			j = json_boolean(strcmp(text, "true") == 0);
		} else {
			add(v, ptr, NULL, true,
			    "--var %.80s: the runbook declares '%.80s' true or false; got '%.80s'",
			    ov->name, ov->name, text);
			return NULL;
		}
	} else {
		j = json_string(text);
		if (!j) {
			add(v, ptr, NULL, true, "--var %.80s: the value is not valid utf-8",
			    ov->name);
			return NULL;
		}
	}
	if (!j)
		v->err = RH_ENOMEM;
	return j;
}

/* A step's object member that is exactly "${vars.NAME}" takes the value of
 * a number or boolean var, typed: "seconds": "${vars.delay}" must be a
 * number for the validator and the step alike. Array items (an exec argv)
 * and strings with more around the reference stay text, as before. */
static void type_var_refs(struct val *v, json_t *node, int depth)
{
	const char *key;
	json_t *item;
	size_t i;

	if (depth > 64)
		return;
	if (json_is_array(node)) {
		json_array_foreach(node, i, item) type_var_refs(v, item, depth + 1);
		return;
	}
	if (!json_is_object(node))
		return;
	json_object_foreach(node, key, item)
	{
		const char *str = json_string_value(item);
		size_t n = str ? strlen(str) : 0;
		const json_t *var;
		char name[256];

		if (!str) {
			type_var_refs(v, item, depth + 1);
			continue;
		}
		if (n < 9 || n - 8 >= sizeof(name) || strncmp(str, "${vars.", 7) != 0 ||
		    str[n - 1] != '}' || strchr(str + 7, '}') != str + n - 1)
			continue;
		memcpy(name, str + 7, n - 8);
		name[n - 8] = '\0';
		var = json_object_get(v->rb->vars, name);
		if ((json_is_number(var) || json_is_boolean(var)) &&
		    json_object_set_new(node, key, json_deep_copy(var)) < 0)
			v->err = RH_ENOMEM;
	}
}

static void check_overrides(struct val *v, const struct rh_var_override *ov, size_t n)
{
	const char *names[256];
	const char *key;
	json_t *item;
	size_t k = 0;

	json_object_foreach((json_t *)v->vars, key, item)
	{
		if (k < 255)
			names[k++] = key;
	}
	names[k] = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *ptr = v->vars ? "/vars" : "";
		json_t *s;

		if (!ov[i].name || !ov[i].value)
			continue;
		if (!json_object_get(v->vars, ov[i].name)) {
			const char *sug = rh_suggest(ov[i].name, names);

			if (sug)
				add(v, ptr, NULL, true,
				    "--var %.80s: the runbook declares no "
				    "variable '%.80s' (did you mean '%s'?)",
				    ov[i].name, ov[i].name, sug);
			else
				add(v, ptr, NULL, true,
				    "--var %.80s: the runbook declares no "
				    "variable '%.80s': only variables in \"vars\" can be "
				    "overridden",
				    ov[i].name, ov[i].name);
			continue;
		}
		s = override_value(v, ptr, &ov[i], json_object_get(v->vars, ov[i].name));
		if (!s)
			continue;
		if (json_object_set_new(v->rb->vars, ov[i].name, s) < 0)
			v->err = RH_ENOMEM;
	}
}

static void validate(struct val *v, const struct rh_var_override *ov, size_t n_ov)
{
	struct rh_runbook *rb = v->rb;
	const json_t *doc = rb->doc;
	const json_t *steps;
	json_t *step;
	size_t i;

	check_limits(v, doc, "", 1);
	if (!json_is_object(doc)) {
		add(v, "", NULL, false,
		    "the runbook must be a json object ({\"rehydra\": 1, "
		    "\"name\": ..., \"steps\": [...]}), got %s",
		    rh_json_kind(doc));
		return;
	}
	check_keys(v, doc, "", "the runbook", top_keys, NULL);
	check_header(v, doc);
	check_vars(v, doc);
	check_model(v, doc);
	check_target(v, doc);
	check_stack(v, doc);
	check_overrides(v, ov, n_ov);
	check_policy(v, doc); /* after the overrides: it reads the target's vars */
	steps = json_object_get(doc, "steps");
	if (!steps) {
		note(v, rh_spec_missing(v->d, doc, "", "steps", "a non-empty array of steps"));
		return;
	}
	if (!json_is_array(steps) || json_array_size(steps) == 0) {
		add(v, "", "steps", false, "steps: expected a non-empty array of steps, got %s",
		    json_is_array(steps) ? "[]" : rh_json_kind(steps));
		return;
	}
	if (json_array_size(steps) > RH_RUNBOOK_MAX_STEPS) {
		add(v, "", "steps", false, "too many steps (%zu): at most %d are allowed",
		    json_array_size(steps), RH_RUNBOOK_MAX_STEPS);
		return;
	}
	rb->steps = calloc(json_array_size(steps), sizeof(*rb->steps));
	if (!rb->steps) {
		v->err = RH_ENOMEM;
		return;
	}
	rb->n_steps = json_array_size(steps);
	type_var_refs(v, (json_t *)steps, 0); /* rb->doc is ours to edit */
	collect_ids(v, steps);
	if (v->err)
		return;
	json_array_foreach(steps, i, step) check_step(v, i, step);
	if (v->err)
		return;
	find_cycles(v);
	check_phases(v);
	topo_order(v);
	if (!v->err)
		check_refs(v);
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */

/* 1-based line and column (in code points) of byte offset `off`. */
static void text_linecol(const char *buf, size_t off, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)buf[i] & 0xC0) != 0x80) {
			(*col)++;
		}
	}
}

static void parse_diag(struct rh_diags *d, const json_error_t *je, const char *buf, size_t len)
{
	const char *text = je->text;
	const char *near = strstr(text, " near '");
	int line = je->line, col = je->column;
	char token[JSON_ERROR_TEXT_LENGTH] = "";
	bool blank = true;

	for (size_t i = 0; i < len && blank; i++)
		blank = strchr(" \t\r\n", buf[i]) != NULL;
	if (near) {
		size_t tl = strlen(near + 7);

		/* jansson stops after the bad token; point at its start when the
		 * token is whole (the message was not cut short) and on this line. */
		if (tl > 0 && near[7 + tl - 1] == '\'' && strlen(text) + 1 < sizeof(je->text)) {
			int cps = 0;

			snprintf(token, sizeof(token), "%.*s", (int)(tl - 1), near + 7);
			for (const char *p = token; *p; p++)
				cps += ((unsigned char)*p & 0xC0) != 0x80;
			if (!strchr(token, '\n') && col - cps + 1 >= 1)
				col = col - cps + 1;
		}
	}
	switch (json_error_code(je)) {
	case json_error_invalid_utf8:
		rh_diags_add_at(d, line, col, "invalid utf-8 (%.*s): save the runbook as utf-8",
				(int)(near ? near - text : (long)strlen(text)), text);
		break;
	case json_error_numeric_overflow: {
		/* jansson does not always quote the number: find it in the text. */
		size_t e = (size_t)je->position < len ? (size_t)je->position : len, b;

		while (e < len && strchr("0123456789+-.eE", buf[e]))
			e++;
		b = e;
		while (b > 0 && strchr("0123456789+-.eE", buf[b - 1]))
			b--;
		if (b < e) {
			text_linecol(buf, b, &line, &col);
			snprintf(token, sizeof(token), "%.*s%s", (int)(e - b > 40 ? 40 : e - b),
				 buf + b, e - b > 40 ? "..." : "");
		}
		rh_diags_add_at(d, line, col, "number %s is too large: %s", token,
				strchr(token, '.') || strchr(token, 'e') || strchr(token, 'E')
				    ? "it does not fit in a double"
				    : "integers must fit in 64 bits (at most 9223372036854775807)");
		break;
	}
	case json_error_premature_end_of_input:
		if (blank)
			rh_diags_add_at(d, 1, 1,
					"the file is empty: a runbook is a json object "
					"({\"rehydra\": 1, \"name\": ..., \"steps\": [...]})");
		else
			rh_diags_add_at(d, line, col,
					"unexpected end of file: the json is "
					"incomplete (is the file truncated?)");
		break;
	case json_error_duplicate_key:
		rh_diags_add_at(d, line, col,
				"duplicate key %s: each key may appear only once "
				"in an object",
				token[0] ? token : "");
		break;
	case json_error_end_of_input_expected:
		rh_diags_add_at(d, line, col,
				"unexpected text after the end of the json "
				"document: remove everything after the final '}'");
		break;
	case json_error_stack_overflow:
		rh_diags_add_at(d, line, col,
				"too deeply nested: at most %d levels of objects and "
				"arrays are allowed",
				RH_RUNBOOK_MAX_DEPTH);
		break;
	case json_error_null_character:
		rh_diags_add_at(d, line, col, "\\u0000 is not allowed in strings: remove it");
		break;
	default:
		if (blank)
			rh_diags_add_at(d, 1, 1,
					"the file is empty: a runbook is a json object "
					"({\"rehydra\": 1, \"name\": ..., \"steps\": [...]})");
		else if (strncmp(text, "control character", 17) == 0)
			rh_diags_add_at(d, line, col,
					"control character in a string (%.*s): write "
					"it as an escape such as \\n, \\t or \\u0001",
					(int)(near ? near - text : (long)strlen(text)), text);
		else if (strstr(text, "end of file"))
			rh_diags_add_at(d, line, col,
					"unexpected end of file: %.*s; the json is "
					"incomplete (is the file truncated?)",
					(int)(strstr(text, " near end of file")
						  ? strstr(text, " near end of file") - text
						  : (long)strlen(text)),
					text);
		else
			rh_diags_add_at(d, line, col, "invalid json: %s", text);
		break;
	}
}

static int read_file(char **out, size_t *out_len, const char *path, struct rh_diags *d)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int fd = -1;
	int err = 0;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot open the runbook");
		goto done;
	}
	if (fstat(fd, &st) < 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot read the runbook");
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		err = rh_error_set(RH_EIO, "not a regular file: give the path of a runbook "
					   "(a .json file)");
		goto done;
	}
	if ((uint64_t)st.st_size > RH_RUNBOOK_MAX_BYTES) {
		rh_diags_add_at(d, 1, 1,
				"the file is %llu bytes: a runbook may be at most %u "
				"bytes (16 MiB)",
				(unsigned long long)st.st_size, RH_RUNBOOK_MAX_BYTES);
		err = rh_error_set(RH_EINVAL, "the runbook is too large");
		goto done;
	}
	buf = malloc((size_t)st.st_size + 2);
	if (!buf) {
		err = rh_error_set(RH_ENOMEM, "out of memory reading the runbook");
		goto done;
	}
	/* Read one byte more than fstat said, to notice a file that grows. */
	while (len < (size_t)st.st_size + 1) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = rh_error_set_errno(RH_EIO, errno, "cannot read the runbook");
			goto done;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > (size_t)st.st_size) {
		err = rh_error_set(RH_EIO, "the runbook changed while it was read: try again");
		goto done;
	}
	buf[len] = '\0';
	*out = buf;
	*out_len = len;
	buf = NULL;
done:
	if (fd >= 0)
		close(fd);
	free(buf);
	return err;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *d, *abs;

	if (!slash)
		d = strdup(".");
	else if (slash == path)
		d = strdup("/");
	else
		d = strndup(path, (size_t)(slash - path));
	if (!d)
		return NULL;
	abs = realpath(d, NULL);
	free(d);
	return abs;
}

int rh_runbook_load(struct rh_runbook **out, const char *path,
		    const struct rh_var_override *overrides, size_t n_overrides,
		    struct rh_diags *diags)
{
	struct rh_runbook_opts o = RH_RUNBOOK_OPTS_INIT;

	o.overrides = overrides;
	o.n_overrides = n_overrides;
	return rh_runbook_load_opts(out, path, &o, diags);
}

int rh_runbook_load_opts(struct rh_runbook **out, const char *path,
			 const struct rh_runbook_opts *opts, struct rh_diags *diags)
{
	char *buf = NULL;
	size_t len = 0;
	int err;

	*out = NULL;
	err = read_file(&buf, &len, path, diags);
	if (err == 0)
		err = rh_runbook_load_buf_opts(out, path, buf, len, opts, diags);
	free(buf);
	return err;
}

int rh_runbook_load_buf(struct rh_runbook **out, const char *path, const char *buf, size_t len,
			const struct rh_var_override *overrides, size_t n_overrides,
			struct rh_diags *diags)
{
	struct rh_runbook_opts o = RH_RUNBOOK_OPTS_INIT;

	o.overrides = overrides;
	o.n_overrides = n_overrides;
	return rh_runbook_load_buf_opts(out, path, buf, len, &o, diags);
}

int rh_runbook_load_buf_opts(struct rh_runbook **out, const char *path, const char *buf, size_t len,
			     const struct rh_runbook_opts *opts, struct rh_diags *diags)
{
	const struct rh_var_override *overrides = opts->overrides;
	size_t n_overrides = opts->n_overrides;
	struct val v = {0};
	struct rh_runbook *rb = NULL;
	size_t before = diags->count;
	json_error_t je;
	int err = 0;

	*out = NULL;
	if (len > RH_RUNBOOK_MAX_BYTES) {
		rh_diags_add_at(diags, 1, 1,
				"the file is %zu bytes: a runbook may be at most %u "
				"bytes (16 MiB)",
				len, RH_RUNBOOK_MAX_BYTES);
		err = rh_error_set(RH_EINVAL, "the runbook is too large");
		goto done;
	}
	rb = calloc(1, sizeof(*rb));
	if (!rb || !(rb->path = strdup(path))) {
		err = rh_error_set(RH_ENOMEM, "out of memory loading the runbook");
		goto done;
	}
	rb->dir = dir_of(path);
	if (!rb->dir) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot resolve the runbook's directory");
		goto done;
	}
	rh_sha256_buf_hex(rb->sha256, buf, len);
	rb->doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!rb->doc) {
		parse_diag(diags, &je, buf, len);
		err = rh_error_set(RH_EINVAL, "the runbook is not valid json");
		goto done;
	}
	if (json_is_object(rb->doc) && opts->target &&
	    json_object_set_new(rb->doc, "target", json_deep_copy(opts->target)) < 0) {
		err = rh_error_set(RH_ENOMEM, "out of memory loading the runbook");
		goto done;
	}
	if (json_is_object(rb->doc) && opts->rto_target_s > 0 &&
	    json_object_set_new(rb->doc, "rto_target_s", json_real(opts->rto_target_s)) < 0) {
		err = rh_error_set(RH_ENOMEM, "out of memory loading the runbook");
		goto done;
	}
	v.d = diags;
	v.text = buf;
	v.len = len;
	v.rb = rb;
	v.anc_for = SIZE_MAX;
	validate(&v, overrides, n_overrides);
	if (v.err) {
		err = rh_error_set(RH_ENOMEM, "out of memory validating the runbook");
		goto done;
	}
	if (diags->count > before) {
		err = rh_error_set(RH_EINVAL, "the runbook has %zu problem%s",
				   diags->count - before, diags->count - before == 1 ? "" : "s");
		goto done;
	}
	*out = rb;
	rb = NULL;
done:
	if (diags->count > before) {
		rh_diags_locate(diags, buf, len);
		rh_diags_sort(diags);
	}
	free(v.step_ids);
	free(v.ids);
	free(v.after_mark);
	free(v.anc);
	free(v.stack);
	rh_runbook_free(rb);
	return err;
}

void rh_runbook_free(struct rh_runbook *rb)
{
	if (!rb)
		return;
	free(rb->path);
	free(rb->dir);
	json_decref(rb->doc);
	free(rb->name);
	free(rb->description);
	free(rb->model.registry);
	free(rb->model.name);
	free(rb->model.version);
	free(rb->model.commit);
	json_decref(rb->vars);
	for (size_t i = 0; i < rb->n_env_allow; i++)
		free(rb->env_allow[i]);
	free(rb->env_allow);
	for (size_t i = 0; rb->steps && i < rb->n_steps; i++) {
		free(rb->steps[i].id);
		free(rb->steps[i].after);
		free(rb->steps[i].pointer);
	}
	free(rb->steps);
	free(rb->order);
	free(rb);
}

long rh_runbook_step_index(const struct rh_runbook *rb, const char *id)
{
	for (size_t i = 0; id && i < rb->n_steps; i++)
		if (rb->steps[i].id && strcmp(rb->steps[i].id, id) == 0)
			return (long)i;
	return -1;
}

bool rh_runbook_depends_on(const struct rh_runbook *rb, size_t idx, size_t anc)
{
	unsigned char *seen;
	size_t *stack;
	size_t top = 0;
	bool found = false;

	if (idx == anc)
		return true;
	if (idx >= rb->n_steps || anc >= rb->n_steps)
		return false;
	seen = calloc(rb->n_steps, 1);
	stack = calloc(rb->n_steps + 1, sizeof(*stack));
	if (!seen || !stack)
		goto done; /* no memory: "no" is the answer that starts nothing early */
	stack[top++] = idx;
	seen[idx] = 1;
	while (top && !found) {
		const struct rh_step *s = &rb->steps[stack[--top]];

		for (size_t a = 0; a < s->n_after; a++) {
			size_t dep = s->after[a];

			if (dep == anc)
				found = true;
			if (!seen[dep]) {
				seen[dep] = 1;
				stack[top++] = dep;
			}
		}
	}
done:
	free(seen);
	free(stack);
	return found;
}

const char *rh_when_name(enum rh_when w)
{
	switch (w) {
	case RH_WHEN_ON_FAILURE:
		return "on_failure";
	case RH_WHEN_ALWAYS:
		return "always";
	default:
		return "on_success";
	}
}

int rh_runbook_registry_resolve(char **out, const struct rh_runbook *rb, const json_t *scope)
{
	char *val = NULL;
	char *abs;
	size_t n;
	int err;

	*out = NULL;
	err = rh_interp_expand(&val, rb->model.registry, scope);
	if (err < 0)
		return rh_error_prefix(err, "model.registry");
	if (val[0] == '/' || strstr(val, "://")) {
		*out = val;
		return 0;
	}
	n = strlen(rb->dir) + strlen(val) + 2;
	abs = malloc(n);
	if (!abs) {
		free(val);
		return rh_error_set(RH_ENOMEM, "out of memory");
	}
	snprintf(abs, n, "%s/%s", rb->dir, val);
	free(val);
	*out = abs;
	return 0;
}
