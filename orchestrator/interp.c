/*
 * interp.c - ${namespace.path} interpolation (see interp.h).
 *
 * One scanner serves both the validator (rh_interp_foreach_ref, which only
 * needs the references) and the engine (rh_interp_expand), so the two can
 * never disagree about what a reference is. Expansion is a single pass over
 * the input: substituted text is copied to the output and never rescanned,
 * which keeps values from files, commands and servers inert.
 */
#include "interp.h"

#include "diag.h"
#include "error.h"
#include "strbuf.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

static bool ref_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '-';
}

/*
 * Scans `in`. For every "${ref}" calls `fn(ref, len, user)`; for every run of
 * literal text calls `lit(text, len, user)` when `lit` is set. "$${" yields
 * a literal "${".
 */
static int scan(const char *in, int (*fn)(const char *ref, size_t n, void *user),
		int (*lit)(const char *s, size_t n, void *user), void *user)
{
	const char *p = in;
	const char *run = in;
	int err = 0;

	while (*p) {
		const char *start, *q;

		if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
			/* Escape: emit up to and including the first '$' only. */
			if (lit && (err = lit(run, (size_t)(p - run) + 1, user)) != 0)
				goto done;
			p += 2; /* the "{" starts the next literal run */
			run = p;
			p++;
			continue;
		}
		if (p[0] != '$' || p[1] != '{') {
			p++;
			continue;
		}
		if (lit && p > run && (err = lit(run, (size_t)(p - run), user)) != 0)
			goto done;
		start = p + 2;
		q = start;
		while (*q && *q != '}')
			q++;
		/* "${a.b ${c.d}": the first one was never closed. */
		if (!*q || (strstr(start, "${") && strstr(start, "${") < q)) {
			err = rh_error_set(RH_EINVAL,
					   "unclosed '${' in \"%.60s\": close the "
					   "reference with '}' or write '$${' for a literal "
					   "'${'",
					   p);
			goto done;
		}
		if (q == start) {
			err = rh_error_set(RH_EINVAL,
					   "empty reference '${}': write '${namespace.name}', for "
					   "example '${vars.name}'");
			goto done;
		}
		for (const char *c = start; c < q; c++) {
			if (!ref_char(*c)) {
				err = rh_error_set(RH_EINVAL,
						   "invalid character '%c' in "
						   "reference '${%.*s}': references use letters, "
						   "digits, '_', '-' and '.'",
						   *c, (int)(q - start), start);
				goto done;
			}
			if (*c == '.' && (c == start || c + 1 == q || c[1] == '.')) {
				err = rh_error_set(RH_EINVAL,
						   "malformed reference '${%.*s}': a name between "
						   "dots is empty",
						   (int)(q - start), start);
				goto done;
			}
		}
		if ((err = fn(start, (size_t)(q - start), user)) != 0)
			goto done;
		p = q + 1;
		run = p;
	}
	if (lit && p > run)
		err = lit(run, (size_t)(p - run), user);
done:
	return err;
}

struct foreach_ctx {
	int (*fn)(const char *ref, void *user);
	void *user;
	char *buf;
	size_t cap;
};

static int foreach_one(const char *ref, size_t n, void *user)
{
	struct foreach_ctx *c = user;

	if (n + 1 > c->cap) {
		char *b = realloc(c->buf, n + 1);

		if (!b)
			return rh_error_set(RH_ENOMEM, "out of memory scanning references");
		c->buf = b;
		c->cap = n + 1;
	}
	memcpy(c->buf, ref, n);
	c->buf[n] = '\0';
	return c->fn(c->buf, c->user);
}

int rh_interp_foreach_ref(const char *in, int (*fn)(const char *ref, void *user), void *user)
{
	struct foreach_ctx c = {fn, user, NULL, 0};
	int err = scan(in, foreach_one, NULL, &c);

	free(c.buf);
	return err;
}

static json_t *lookup_in(const json_t *cur, const char *path)
{
	const char *dot;
	json_t *v;

	if (!json_is_object(cur))
		return NULL;
	dot = strchr(path, '.');
	if (!dot)
		return json_object_get(cur, path);
	v = json_object_getn(cur, path, (size_t)(dot - path));
	if (v) {
		json_t *r = lookup_in(v, dot + 1);

		if (r)
			return r;
	}
	/* Keys may contain dots (outputs such as "model.sha256"): try the
	 * rest of the path as one key. */
	return json_object_get(cur, path);
}

json_t *rh_interp_lookup(const json_t *scope, const char *ref)
{
	return ref ? lookup_in(scope, ref) : NULL;
}

struct expand_ctx {
	const json_t *scope;
	struct rh_strbuf out;
};

/* A runbook value is a URL, an argv word, a header: references that make one
 * longer than this are an attack or a mistake, not a need. The whole of one
 * rh_interp_expand_json gets RH_INTERP_MAX_TOTAL. */
#define RH_INTERP_MAX_TEXT (1u << 20)
#define RH_INTERP_MAX_TOTAL (16u << 20)

static _Thread_local size_t *expand_budget; /* bytes left for this expand_json */

static int out_add(struct expand_ctx *c, const char *s, size_t n)
{
	if (c->out.len + n > RH_INTERP_MAX_TEXT)
		return rh_error_set(RH_EINVAL,
				    "the expanded text would exceed %u MiB: a ${...} "
				    "reference is far larger than a runbook value needs",
				    RH_INTERP_MAX_TEXT >> 20);
	if (expand_budget) {
		if (n > *expand_budget)
			return rh_error_set(RH_EINVAL,
					    "the expanded step would exceed %u MiB: "
					    "its ${...} references are far larger than a runbook "
					    "needs",
					    RH_INTERP_MAX_TOTAL >> 20);
		*expand_budget -= n;
	}
	return rh_strbuf_add(&c->out, s, n);
}

static int expand_lit(const char *s, size_t n, void *user)
{
	struct expand_ctx *c = user;

	return out_add(c, s, n);
}

/* Shortest text that reads back as the same double, in JSON syntax (0.05,
 * not 0.050000000000000003). */
static int put_real(struct rh_strbuf *b, double d)
{
	json_t *r = json_real(d);
	char *s = NULL;
	int err = 0;

	for (int prec = 15; r && prec <= 17; prec++) {
		json_t *back;
		bool same;

		free(s);
		s = json_dumps(r, JSON_ENCODE_ANY | JSON_REAL_PRECISION(prec));
		if (!s)
			break;
		back = json_loads(s, JSON_DECODE_ANY, NULL);
		same = back && json_number_value(back) == d;
		json_decref(back);
		if (same)
			break;
	}
	json_decref(r);
	if (!s)
		return rh_error_set(RH_ENOMEM, "out of memory formatting a number");
	err = rh_strbuf_add(b, s, strlen(s));
	free(s);
	return err;
}

static const char *kind_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_NULL:
		return "null";
	default:
		return "a value";
	}
}

static int expand_ref(const char *ref, size_t n, void *user)
{
	struct expand_ctx *c = user;
	char name[512];
	char num[32];
	json_t *v;
	char *tmp;

	tmp = strndup(ref, n);
	if (!tmp)
		return rh_error_set(RH_ENOMEM, "out of memory expanding references");
	v = rh_interp_lookup(c->scope, tmp);
	snprintf(name, sizeof(name), "%s", tmp);
	free(tmp);
	if (!v)
		return rh_error_set(RH_ENOTFOUND,
				    "unknown reference '${%s}': nothing by that name "
				    "is known at this point",
				    name);
	switch (json_typeof(v)) {
	case JSON_STRING:
		return out_add(c, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return rh_strbuf_add(&c->out, num, strlen(num));
	case JSON_REAL:
		return put_real(&c->out, json_real_value(v));
	case JSON_TRUE:
		return rh_strbuf_add(&c->out, "true", 4);
	case JSON_FALSE:
		return rh_strbuf_add(&c->out, "false", 5);
	default:
		return rh_error_set(RH_EINVAL,
				    "reference '${%s}' is %s, not a string, number or "
				    "boolean: refer to one of its fields",
				    name, kind_name(v));
	}
}

int rh_interp_expand(char **out, const char *in, const json_t *scope)
{
	struct expand_ctx c = {scope, RH_STRBUF_INIT};
	int err;

	*out = NULL;
	err = scan(in, expand_ref, expand_lit, &c);
	if (err < 0)
		goto done;
	*out = rh_strbuf_detach(&c.out, NULL);
	if (!*out)
		err = RH_ENOMEM;
done:
	rh_strbuf_release(&c.out);
	return err;
}

static int expand_json_at(json_t **out, const json_t *in, const json_t *scope, const char *path)
{
	json_t *res = NULL;
	char *child = NULL;
	int err = 0;

	*out = NULL;
	if (json_is_string(in)) {
		char *s = NULL;

		err = rh_interp_expand(&s, json_string_value(in), scope);
		if (err < 0) {
			rh_error_prefix(err, "in %s", *path ? path : "/");
			goto done;
		}
		res = json_string(s);
		if (!res) {
			/* NULL means bad utf-8 or no memory: tell them apart */
			json_t *raw = json_stringn_nocheck(s, strlen(s));

			free(s);
			if (!raw)
				goto nomem;
			json_decref(raw);
			err = rh_error_set(RH_EINVAL, "in %s: the expanded text is not valid utf-8",
					   *path ? path : "/");
			goto done;
		}
		free(s);
	} else if (json_is_object(in)) {
		const char *key;
		json_t *item;

		res = json_object();
		if (!res)
			goto nomem;
		json_object_foreach((json_t *)in, key, item)
		{
			json_t *x;

			child = rh_pointer_join(path, key);
			if (!child)
				goto nomem;
			if ((err = expand_json_at(&x, item, scope, child)) < 0)
				goto done;
			if (json_object_set_new(res, key, x) < 0)
				goto nomem;
			free(child);
			child = NULL;
		}
	} else if (json_is_array(in)) {
		json_t *item;
		size_t i;

		res = json_array();
		if (!res)
			goto nomem;
		json_array_foreach(in, i, item)
		{
			json_t *x;

			child = rh_pointer_join_index(path, i);
			if (!child)
				goto nomem;
			if ((err = expand_json_at(&x, item, scope, child)) < 0)
				goto done;
			if (json_array_append_new(res, x) < 0)
				goto nomem;
			free(child);
			child = NULL;
		}
	} else {
		res = json_deep_copy(in);
		if (!res)
			goto nomem;
	}
	*out = res;
	res = NULL;
	goto done;
nomem:
	err = rh_error_set(RH_ENOMEM, "out of memory expanding references");
done:
	free(child);
	json_decref(res);
	return err;
}

int rh_interp_expand_json(json_t **out, const json_t *in, const json_t *scope)
{
	size_t budget = RH_INTERP_MAX_TOTAL;
	size_t *outer = expand_budget;
	int err;

	expand_budget = &budget;
	err = expand_json_at(out, in, scope, "");
	expand_budget = outer;
	return err;
}
