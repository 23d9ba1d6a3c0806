/*
 * policy.c - judges candidate targets against export-control and residency
 * rules kept as data.
 *
 * A contingency plan is only as good as the reason it gives for a target:
 * "nebius eu-north1 L40S, because H100-class parts need a US licence for a
 * CN-headquartered entity and Beijing's guidance rules out the H20" is
 * evidence; "the script picked nebius" is not. So every rule carries its
 * citation and effective date, every denial names the rule that made it,
 * and whatever cannot be checked (an unknown country, an entity whose
 * headquarters nobody wrote down) is denied rather than waved through.
 * The rules are files so that counsel can correct them without a rebuild;
 * they are checked strictly on load so that a typo fails loudly instead of
 * silently allowing a target.
 */
#include "policy.h"
#include "catalog.h"
#include "error.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "banned.h"

#define GROUP_DEPTH_MAX 8

struct rh_policy {
	json_t *rules;	  /* id -> rule object, in file order */
	json_t *groups;	  /* name -> {description, members} */
	json_t *files;	  /* [{file, as_of}] */
	const char **ids; /* NULL-terminated, borrowed from rules */
	size_t n_ids;
};

static const char *const doc_keys[] = {"rehydra_policy", "as_of", "description",
				       "groups",	 "rules", NULL};
static const char *const rule_keys[] = {"id",	  "effect",   "require",	"match",
					"reason", "citation", "effective_from", "description",
					NULL};
static const char *const match_keys[] = {"accelerators", "entity_hq", "countries", "blocs", NULL};
static const char *const placeholders[] = {"entity",	  "hq_country",	   "provider", "region",
					   "accelerator", "host",	   "country",  "bloc",
					   "allowed",	  "jurisdictions", "eccn",     NULL};

static bool in_list(const char *s, const char *const *list)
{
	for (size_t i = 0; s && list && list[i]; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

static const char *str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static bool is_date(const char *s)
{
	if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return false;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return false;
	return true;
}

static bool id_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 1 || n > 64 || !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

static bool code_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 2 || n > 3)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 'A' || s[i] > 'Z')
			return false;
	return true;
}

int rh_policy_new(struct rh_policy **out)
{
	struct rh_policy *p = calloc(1, sizeof(*p));

	*out = NULL;
	if (!p)
		return rh_error_set(RH_ENOMEM, "out of memory");
	p->rules = json_object();
	p->groups = json_object();
	p->files = json_array();
	p->ids = calloc(1, sizeof(*p->ids));
	if (!p->rules || !p->groups || !p->files || !p->ids) {
		rh_policy_free(p);
		return rh_error_set(RH_ENOMEM, "out of memory");
	}
	*out = p;
	return 0;
}

void rh_policy_free(struct rh_policy *p)
{
	if (!p)
		return;
	json_decref(p->rules);
	json_decref(p->groups);
	json_decref(p->files);
	free(p->ids);
	free(p);
}

static int unknown_keys(const json_t *obj, const char *const *allowed, const char *file,
			const char *ptr)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)obj, k, v)
	{
		if (!in_list(k, allowed))
			return rh_error_set(RH_EINVAL, "%s: %s/%s is not a known key", file, ptr,
					    k);
	}
	return 0;
}

/* A list of codes or "group:NAME" (groups known in p or in `doc_groups`). */
static int check_codes(const json_t *list, const struct rh_policy *p, const json_t *doc_groups,
		       const char *file, const char *ptr, bool groups_ok)
{
	size_t i;
	json_t *v;

	if (!json_is_array(list) || json_array_size(list) == 0)
		return rh_error_set(RH_EINVAL, "%s: %s must be a non-empty array of codes", file,
				    ptr);
	json_array_foreach(list, i, v)
	{
		const char *s = json_string_value(v);

		if (groups_ok && s && strncmp(s, "group:", 6) == 0) {
			if (!json_object_get(p->groups, s + 6) &&
			    !json_object_get(doc_groups, s + 6))
				return rh_error_set(RH_EINVAL,
						    "%s: %s/%zu names an unknown group "
						    "'%s'",
						    file, ptr, i, s + 6);
			continue;
		}
		if (!code_ok(s))
			return rh_error_set(RH_EINVAL,
					    "%s: %s/%zu must be an upper-case code such as \"CN\" "
					    "or \"EU\"%s",
					    file, ptr, i, groups_ok ? " or \"group:NAME\"" : "");
	}
	return 0;
}

static int check_template(const char *t, const char *file, const char *ptr)
{
	for (const char *s = t; (s = strchr(s, '{')) != NULL; s++) {
		const char *e = strchr(s, '}');
		char name[32];
		size_t n;

		n = e ? (size_t)(e - s - 1) : 0;
		if (!e || n == 0 || n >= sizeof(name))
			return rh_error_set(RH_EINVAL, "%s: %s has an unclosed or empty {...}",
					    file, ptr);
		memcpy(name, s + 1, n);
		name[n] = '\0';
		if (!in_list(name, placeholders))
			return rh_error_set(RH_EINVAL,
					    "%s: %s uses {%s}: the placeholders are entity, "
					    "hq_country, provider, region, accelerator, host, "
					    "country, bloc, allowed, jurisdictions, eccn",
					    file, ptr, name);
	}
	return 0;
}

static int check_rule(const json_t *r, const struct rh_policy *p, const json_t *doc_groups,
		      const json_t *seen, const char *file, size_t i)
{
	char ptr[64], sub[96];
	const char *id = str(r, "id");
	const char *effect = str(r, "effect");
	const char *req = str(r, "require");
	const json_t *match = json_object_get(r, "match");
	const char *k;
	json_t *v;
	int rc;

	snprintf(ptr, sizeof(ptr), "/rules/%zu", i);
	if (!json_is_object(r))
		return rh_error_set(RH_EINVAL, "%s: %s must be an object", file, ptr);
	if ((rc = unknown_keys(r, rule_keys, file, ptr)) < 0)
		return rc;
	if (!id_ok(id))
		return rh_error_set(RH_EINVAL,
				    "%s: %s/id must be lower-case letters, digits and "
				    "'-', starting with a letter",
				    file, ptr);
	if (json_object_get(p->rules, id) || json_object_get(seen, id))
		return rh_error_set(RH_EINVAL, "%s: %s/id '%s' is defined twice", file, ptr, id);
	if (!effect || (strcmp(effect, "deny") != 0 && strcmp(effect, "require") != 0))
		return rh_error_set(RH_EINVAL, "%s: %s/effect must be \"deny\" or \"require\"",
				    file, ptr);
	if (strcmp(effect, "require") == 0 &&
	    (!req || (strcmp(req, "residency") != 0 && strcmp(req, "model-export") != 0)))
		return rh_error_set(RH_EINVAL,
				    "%s: %s/require must be \"residency\" or "
				    "\"model-export\"",
				    file, ptr);
	if (strcmp(effect, "deny") == 0 && req)
		return rh_error_set(RH_EINVAL,
				    "%s: %s/require only goes with \"effect\": "
				    "\"require\"",
				    file, ptr);
	if (match && (!json_is_object(match) || json_object_size(match) == 0))
		return rh_error_set(RH_EINVAL, "%s: %s/match must be a non-empty object", file,
				    ptr);
	if (strcmp(effect, "deny") == 0 && !match)
		return rh_error_set(RH_EINVAL,
				    "%s: %s is a deny rule without \"match\": it would "
				    "deny everything",
				    file, ptr);
	if (match && (rc = unknown_keys(match, match_keys, file, ptr)) < 0)
		return rc;
	json_object_foreach((json_t *)match, k, v)
	{
		snprintf(sub, sizeof(sub), "%s/match/%s", ptr, k);
		if (strcmp(k, "accelerators") == 0) {
			size_t j;
			json_t *a;

			if (!json_is_array(v) || json_array_size(v) == 0)
				return rh_error_set(RH_EINVAL, "%s: %s must be a non-empty array",
						    file, sub);
			json_array_foreach(v, j, a) if (!json_is_string(a)) return rh_error_set(
			    RH_EINVAL,
			    "%s: %s/%zu must be a "
			    "string",
			    file, sub, j);
		} else if ((rc = check_codes(v, p, doc_groups, file, sub, true)) < 0) {
			return rc;
		}
	}
	if (!str(r, "reason") || !str(r, "reason")[0])
		return rh_error_set(RH_EINVAL, "%s: %s/reason must be a non-empty string", file,
				    ptr);
	snprintf(sub, sizeof(sub), "%s/reason", ptr);
	if ((rc = check_template(str(r, "reason"), file, sub)) < 0)
		return rc;
	if (!str(r, "citation") || strlen(str(r, "citation")) < 10)
		return rh_error_set(RH_EINVAL,
				    "%s: %s/citation must say which regulation or "
				    "guidance, with its date",
				    file, ptr);
	if (!is_date(str(r, "effective_from")))
		return rh_error_set(RH_EINVAL, "%s: %s/effective_from must be a date YYYY-MM-DD",
				    file, ptr);
	return 0;
}

static int rebuild_ids(struct rh_policy *p)
{
	size_t n = json_object_size(p->rules), i = 0;
	const char **ids = calloc(n + 1, sizeof(*ids));
	const char *k;
	json_t *v;

	if (!ids)
		return rh_error_set(RH_ENOMEM, "out of memory");
	json_object_foreach(p->rules, k, v) ids[i++] = k;
	free(p->ids);
	p->ids = ids;
	p->n_ids = n;
	return 0;
}

int rh_policy_add(struct rh_policy *p, const json_t *doc, const char *file)
{
	const json_t *fmt = json_object_get(doc, "rehydra_policy");
	const json_t *groups = json_object_get(doc, "groups");
	const json_t *rules = json_object_get(doc, "rules");
	json_t *seen = NULL;
	const char *k;
	json_t *v;
	size_t i;
	int rc = 0;

	if (!json_is_object(doc))
		return rh_error_set(RH_EINVAL, "%s: expected a JSON object", file);
	if ((rc = unknown_keys(doc, doc_keys, file, "")) < 0)
		return rc;
	if (!json_is_integer(fmt) || json_integer_value(fmt) != RH_POLICY_FORMAT)
		return rh_error_set(RH_EINVAL, "%s: /rehydra_policy must be %d", file,
				    RH_POLICY_FORMAT);
	if (!is_date(str(doc, "as_of")))
		return rh_error_set(RH_EINVAL, "%s: /as_of must be a date YYYY-MM-DD", file);
	if (groups && !json_is_object(groups))
		return rh_error_set(RH_EINVAL, "%s: /groups must be an object", file);
	json_object_foreach((json_t *)groups, k, v)
	{
		char ptr[128];

		snprintf(ptr, sizeof(ptr), "/groups/%s/members", k);
		if (!id_ok(k) || json_object_get(p->groups, k))
			return rh_error_set(RH_EINVAL,
					    "%s: /groups/%s: a group name is lower-case "
					    "letters, digits and '-', defined once",
					    file, k);
		if ((rc = check_codes(json_object_get(v, "members"), p, groups, file, ptr, true)) <
		    0)
			return rc;
	}
	if (!json_is_array(rules) || json_array_size(rules) == 0)
		return rh_error_set(RH_EINVAL, "%s: /rules must be a non-empty array", file);
	seen = json_object();
	if (!seen)
		return rh_error_set(RH_ENOMEM, "out of memory");
	json_array_foreach(rules, i, v)
	{
		rc = check_rule(v, p, groups, seen, file, i);
		if (rc < 0)
			goto done;
		json_object_set(seen, str(v, "id"), v);
	}
	json_object_foreach((json_t *)groups, k, v)
	    json_object_set_new(p->groups, k, json_deep_copy(v));
	json_array_foreach(rules, i, v)
	{
		json_t *copy = json_deep_copy(v);

		json_object_set_new(copy, "file", json_string(file));
		json_object_set_new(copy, "as_of", json_string(str(doc, "as_of")));
		json_object_set_new(p->rules, str(v, "id"), copy);
	}
	json_array_append_new(p->files,
			      json_pack("{s:s,s:s}", "file", file, "as_of", str(doc, "as_of")));
	rc = rebuild_ids(p);
done:
	json_decref(seen);
	return rc;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int rh_policy_load(struct rh_policy **out, const char *dir)
{
	struct rh_policy *p = NULL;
	char *found = NULL;
	char **names = NULL;
	size_t n = 0, cap = 0;
	DIR *dh = NULL;
	struct dirent *de;
	int rc;

	*out = NULL;
	if (!dir) {
		rc = rh_data_dir(&found, "policy");
		if (rc < 0)
			return rc;
		dir = found;
	}
	rc = rh_policy_new(&p);
	if (rc < 0)
		goto done;
	dh = opendir(dir);
	if (!dh) {
		rc = rh_error_set(RH_ENOTFOUND, "cannot read the policy directory %s", dir);
		goto done;
	}
	while ((de = readdir(dh)) != NULL) {
		size_t len = strlen(de->d_name);

		if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0 || de->d_name[0] == '.')
			continue;
		if (n == cap) {
			char **nn = realloc(names, (cap = cap ? cap * 2 : 8) * sizeof(*names));

			if (!nn) {
				rc = rh_error_set(RH_ENOMEM, "out of memory");
				goto done;
			}
			names = nn;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			rc = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
		n++;
	}
	qsort(names, n, sizeof(*names), name_cmp);
	for (size_t i = 0; i < n; i++) {
		char path[4200], file[300];
		json_error_t jerr;
		json_t *doc;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		snprintf(file, sizeof(file), "policy/%s", names[i]);
		doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
		if (!doc) {
			rc = rh_error_set(RH_EINVAL, "%s:%d:%d: %s", path, jerr.line, jerr.column,
					  jerr.text);
			goto done;
		}
		rc = rh_policy_add(p, doc, file);
		json_decref(doc);
		if (rc < 0)
			goto done;
	}
	if (n == 0) {
		rc = rh_error_set(RH_ENOTFOUND, "no policy files (*.json) in %s", dir);
		goto done;
	}
	*out = p;
	p = NULL;
done:
	if (dh)
		closedir(dh);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(found);
	rh_policy_free(p);
	return rc;
}

const json_t *rh_policy_rule(const struct rh_policy *p, const char *id)
{
	return id ? json_object_get(p->rules, id) : NULL;
}

const char *const *rh_policy_ids(const struct rh_policy *p)
{
	return p->ids;
}

const json_t *rh_policy_files(const struct rh_policy *p)
{
	return p->files;
}

bool rh_policy_needs_entity(const struct rh_policy *p, const char *id)
{
	return json_object_get(json_object_get(rh_policy_rule(p, id), "match"), "entity_hq") !=
	       NULL;
}

bool rh_policy_needs_residency(const struct rh_policy *p, const char *id)
{
	const char *req = str(rh_policy_rule(p, id), "require");

	return req && strcmp(req, "residency") == 0;
}

void rh_policy_today(char buf[11])
{
	const char *env = getenv("RH_TODAY");
	time_t now = time(NULL);
	struct tm tm;

	if (env && is_date(env)) {
		memcpy(buf, env, 11);
		return;
	}
	gmtime_r(&now, &tm);
	strftime(buf, 11, "%Y-%m-%d", &tm);
}

/* ---- judging ------------------------------------------------------------ */

/* Is `code` in `list` (codes and group:NAME, expanded)? */
static bool code_in(const struct rh_policy *p, const json_t *list, const char *code, int depth)
{
	size_t i;
	json_t *v;

	if (!code || depth > GROUP_DEPTH_MAX)
		return false;
	json_array_foreach(list, i, v)
	{
		const char *s = json_string_value(v);

		if (!s)
			continue;
		if (strncmp(s, "group:", 6) == 0) {
			const json_t *g = json_object_get(p->groups, s + 6);

			if (code_in(p, json_object_get(g, "members"), code, depth + 1))
				return true;
		} else if (strcmp(s, code) == 0) {
			return true;
		}
	}
	return false;
}

static bool str_in(const json_t *list, const char *s)
{
	size_t i;
	json_t *v;

	json_array_foreach(list, i, v) if (s && json_is_string(v) &&
					   strcmp(json_string_value(v), s) == 0) return true;
	return false;
}

/* "a, b or c" of a string array. */
static void words(char *buf, size_t size, const json_t *list, const char *none)
{
	size_t n = json_array_size(list), off = 0;

	buf[0] = '\0';
	if (n == 0) {
		snprintf(buf, size, "%s", none);
		return;
	}
	for (size_t i = 0; i < n && off < size; i++) {
		const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
		int w = snprintf(buf + off, size - off, "%s%s", sep,
				 json_string_value(json_array_get(list, i)));

		if (w < 0)
			break;
		off += (size_t)w;
	}
}

struct judge {
	const struct rh_policy *p;
	const struct rh_policy_input *in;
	const struct rh_candidate *c;
	json_t *reasons;
	bool allowed;
	int err;
	char allowed_places[512];
};

static void reason(struct judge *j, const char *rule, bool deny, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reason(struct judge *j, const char *rule, bool deny, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	json_t *r;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r = json_pack("{s:s,s:s,s:s}", "rule", rule, "message", msg, "effect",
		      deny ? "deny" : "note");
	if (!r || json_array_append_new(j->reasons, r) < 0)
		j->err = rh_error_set(RH_ENOMEM, "out of memory judging a target");
	if (deny)
		j->allowed = false;
}

static const char *placeholder(const struct judge *j, const char *name, char *tmp, size_t size)
{
	const struct rh_candidate *c = j->c;
	const json_t *ex = j->in->model_export;

	if (strcmp(name, "entity") == 0)
		return j->in->entity_name ? j->in->entity_name : "the entity";
	if (strcmp(name, "hq_country") == 0)
		return j->in->entity_hq ? j->in->entity_hq : "an unknown country";
	if (strcmp(name, "provider") == 0)
		return c->provider;
	if (strcmp(name, "region") == 0)
		return c->region ? c->region : "-";
	if (strcmp(name, "accelerator") == 0)
		return c->accelerator ? c->accelerator : "no accelerator";
	if (strcmp(name, "host") == 0)
		return c->host ? c->host : "-";
	if (strcmp(name, "country") == 0)
		return c->country ? c->country : "an unknown country";
	if (strcmp(name, "bloc") == 0)
		return c->bloc ? c->bloc : "no known bloc";
	if (strcmp(name, "allowed") == 0)
		return j->allowed_places;
	if (strcmp(name, "jurisdictions") == 0) {
		words(tmp, size, json_object_get(ex, "jurisdictions"), "nowhere");
		return tmp;
	}
	if (strcmp(name, "eccn") == 0)
		return str(ex, "eccn") ? str(ex, "eccn") : "not given";
	return "";
}

/* Expands a reason template (checked on load: only known placeholders). */
static void render(char *out, size_t size, const struct judge *j, const char *t)
{
	size_t off = 0;

	out[0] = '\0';
	while (*t && off + 1 < size) {
		const char *e = *t == '{' ? strchr(t, '}') : NULL;

		if (e) {
			char name[32], tmp[512];
			size_t n = (size_t)(e - t - 1);
			int w;

			if (n >= sizeof(name))
				n = sizeof(name) - 1;
			memcpy(name, t + 1, n);
			name[n] = '\0';
			w = snprintf(out + off, size - off, "%s",
				     placeholder(j, name, tmp, sizeof(tmp)));
			if (w < 0 || (size_t)w >= size - off)
				break;
			off += (size_t)w;
			t = e + 1;
		} else {
			out[off++] = *t++;
			out[off] = '\0';
		}
	}
}

static void judge_lost(struct judge *j)
{
	static const char *const keys[] = {"provider", "region", "accelerator", "country", NULL};
	const struct rh_candidate *c = j->c;
	size_t i;
	json_t *e;

	json_array_foreach(j->in->lost, i, e)
	{
		const char *vals[] = {c->provider, c->region, c->accelerator, c->country};
		char what[256];
		size_t off = 0;
		bool all = json_object_size(e) > 0;

		what[0] = '\0';
		for (size_t k = 0; keys[k] && all; k++) {
			const char *want = str(e, keys[k]);

			if (!want)
				continue;
			if (!vals[k] || strcmp(vals[k], want) != 0)
				all = false;
			else
				off += (size_t)snprintf(what + off, sizeof(what) - off, "%s%s %s",
							off ? ", " : "", keys[k], want);
			if (off >= sizeof(what))
				off = sizeof(what) - 1;
		}
		if (all)
			reason(j, "lost", true, "lost in this scenario (%s)", what);
	}
}

static bool rule_effective(struct judge *j, const json_t *r)
{
	const char *from = str(r, "effective_from");

	if (j->in->today && strcmp(from, j->in->today) > 0) {
		reason(j, str(r, "id"), false, "not yet in effect (from %s): not applied", from);
		return false;
	}
	return true;
}

/* Is a residency rule in force (so the countries/blocs allow-list is judged
 * as that rule, with its citation, rather than as a bare constraint)? */
static bool residency_rule_active(const struct judge *j)
{
	for (size_t i = 0; j->in->rules && j->in->rules[i]; i++) {
		const json_t *r = rh_policy_rule(j->p, j->in->rules[i]);

		if (rh_policy_needs_residency(j->p, j->in->rules[i]) &&
		    (!j->in->today || strcmp(str(r, "effective_from"), j->in->today) <= 0))
			return true;
	}
	return false;
}

/* True when the region passes countries/blocs (either list matches). */
static bool residency_ok(const struct judge *j, bool *given)
{
	const json_t *countries = json_object_get(j->in->constraints, "countries");
	const json_t *blocs = json_object_get(j->in->constraints, "blocs");

	*given = json_array_size(countries) > 0 || json_array_size(blocs) > 0;
	if (!*given)
		return true;
	return str_in(countries, j->c->country) || str_in(blocs, j->c->bloc);
}

static void judge_constraints(struct judge *j)
{
	const json_t *k = j->in->constraints;
	const json_t *provs = json_object_get(k, "providers");
	const json_t *accs = json_object_get(k, "accelerators");
	char list[512];
	bool given;

	if (provs && !str_in(provs, j->c->provider)) {
		words(list, sizeof(list), provs, "none");
		reason(j, "constraints", true, "outside constraints: provider %s is not one of %s",
		       j->c->provider, list);
	}
	if (accs && !str_in(accs, j->c->accelerator)) {
		words(list, sizeof(list), accs, "none");
		reason(j, "constraints", true,
		       "outside constraints: accelerator %s is not one of %s",
		       j->c->accelerator ? j->c->accelerator : "(none)", list);
	}
	if (j->c->country && !residency_rule_active(j) && !residency_ok(j, &given))
		reason(j, "constraints", true, "outside constraints: %s is in %s (%s), not in %s",
		       j->c->region, j->c->country, j->c->bloc ? j->c->bloc : "no bloc",
		       j->allowed_places);
}

/* Every condition of a deny rule's match holds? Sets *unknown_hq when the
 * entity_hq condition cannot be decided. */
static bool match_holds(struct judge *j, const json_t *match, bool *unknown_hq)
{
	const char *k;
	json_t *v;

	*unknown_hq = false;
	json_object_foreach((json_t *)match, k, v)
	{
		if (strcmp(k, "accelerators") == 0) {
			if (!str_in(v, j->c->accelerator))
				return false;
		} else if (strcmp(k, "entity_hq") == 0) {
			if (!j->in->entity_hq)
				*unknown_hq = true;
			else if (!code_in(j->p, v, j->in->entity_hq, 0))
				return false;
		} else if (strcmp(k, "countries") == 0) {
			if (!code_in(j->p, v, j->c->country, 0))
				return false;
		} else if (strcmp(k, "blocs") == 0) {
			if (!code_in(j->p, v, j->c->bloc, 0))
				return false;
		}
	}
	return true;
}

static void judge_export(struct judge *j, const json_t *r)
{
	const json_t *ex = j->in->model_export;
	const json_t *jur = json_object_get(ex, "jurisdictions");
	char msg[1024];

	if (!ex) {
		reason(j, str(r, "id"), false, "not checked: %s",
		       j->in->export_unknown ? j->in->export_unknown
					     : "the model manifest was not read");
		return;
	}
	if (!json_is_array(jur) || json_array_size(jur) == 0) {
		reason(j, str(r, "id"), true,
		       "the model manifest's export names no jurisdictions: "
		       "add export.jurisdictions (codes, or \"*\" for any) when publishing");
		return;
	}
	if (str_in(jur, "*") || str_in(jur, j->c->country) || str_in(jur, j->c->bloc))
		return;
	render(msg, sizeof(msg), j, str(r, "reason"));
	reason(j, str(r, "id"), true, "%s", msg);
}

static void judge_rule(struct judge *j, const char *id)
{
	const json_t *r = rh_policy_rule(j->p, id);
	const json_t *match;
	const char *effect, *req;
	bool unknown_hq = false;
	char msg[1024];

	if (!r) {
		j->err = rh_error_set(RH_ENOTFOUND, "no policy rule '%s'", id);
		return;
	}
	if (!rule_effective(j, r))
		return;
	match = json_object_get(r, "match");
	effect = str(r, "effect");
	req = str(r, "require");
	if (match && !match_holds(j, match, &unknown_hq))
		return;
	if (unknown_hq) {
		reason(j, id, true,
		       "cannot be checked: the entity's headquarters country is "
		       "unknown (set entity.hq_country); denied by default");
		return;
	}
	if (strcmp(effect, "deny") == 0) {
		render(msg, sizeof(msg), j, str(r, "reason"));
		reason(j, id, true, "%s", msg);
	} else if (strcmp(req, "residency") == 0) {
		bool given;

		if (!j->c->country)
			return; /* denied as unknown-jurisdiction already */
		if (!residency_ok(j, &given) || !given) {
			if (!given)
				reason(j, id, true,
				       "no residency allow-list to check against: set "
				       "constraints.countries or constraints.blocs");
			else {
				render(msg, sizeof(msg), j, str(r, "reason"));
				reason(j, id, true, "%s", msg);
			}
		}
	} else {
		if (j->c->country)
			judge_export(j, r);
	}
}

int rh_policy_judge(json_t **reasons, bool *allowed, const struct rh_policy *p,
		    const struct rh_policy_input *in, const struct rh_candidate *c)
{
	struct judge j = {.p = p, .in = in, .c = c, .allowed = true};
	const json_t *countries = json_object_get(in->constraints, "countries");
	const json_t *blocs = json_object_get(in->constraints, "blocs");
	*reasons = NULL;
	*allowed = false;
	j.reasons = json_array();
	if (!j.reasons)
		return rh_error_set(RH_ENOMEM, "out of memory judging a target");
	{
		json_t *both = json_array();

		json_array_extend(both, (json_t *)countries);
		json_array_extend(both, (json_t *)blocs);
		words(j.allowed_places, sizeof(j.allowed_places), both, "nowhere listed");
		json_decref(both);
	}
	if (c->not_offered)
		reason(&j, "not-offered", true, "not offered: %s", c->not_offered);
	judge_lost(&j);
	judge_constraints(&j);
	if (!c->country)
		reason(&j, "unknown-jurisdiction", true,
		       "the country of %s%s%s is unknown (no jurisdiction in the catalog or "
		       "inventory): denied by default; add \"jurisdiction\": {\"country\", "
		       "\"bloc\"}",
		       c->host ? "host " : "region ",
		       c->host	   ? c->host
		       : c->region ? c->region
				   : "-",
		       "");
	for (size_t i = 0; in->rules && in->rules[i] && j.err == 0; i++)
		judge_rule(&j, in->rules[i]);
	if (j.err < 0) {
		json_decref(j.reasons);
		return j.err;
	}
	*reasons = j.reasons;
	*allowed = j.allowed;
	return 0;
}
