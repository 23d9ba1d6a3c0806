/*
 * scenario.c - contingency scenarios: parsing, candidate targets, the choice.
 *
 * A rehearsal is only evidence if the event it rehearses is written down
 * precisely: "we lose Alibaba cn-beijing and may not use the H20" is a file
 * that can be reviewed, versioned and scheduled, and the target a rehearsal
 * ran on must follow from it and from the rules, not from whoever ran the
 * drill. So the file is validated as strictly as a runbook, every candidate
 * the catalogs know is judged (not only the plausible ones, so a reader can
 * see why the obvious choice was not taken), and the choice is
 * deterministic: first allowed in the scenario's `prefer` order, then
 * catalog order.
 */
#include "scenario.h"
#include "catalog.h"
#include "error.h"
#include "interp.h"
#include "provider.h"
#include "sha256.h"
#include "step_run.h"
#include "suggest.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

#define SCEN_MAX_BYTES (1024u * 1024)

static const char *const top_keys[] = {
    "rehydra_scenario", "name",	  "description", "runbook",   "entity",	      "lost",
    "constraints",	"policy", "prefer",	 "inventory", "cadence_days", "rto_target_s",
    "targets",		NULL};
static const char *const entity_keys[] = {"name", "hq_country", NULL};
static const char *const lost_keys[] = {"provider", "region", "accelerator", "country", NULL};
static const char *const constraint_keys[] = {"countries", "blocs", "accelerators", "providers",
					      NULL};

struct sv {
	struct rh_diags *d;
	struct rh_scenario *s;
	const struct rh_policy *policy;
	json_t *classes; /* accelerators.json "classes" (owned doc) */
	const char *provider_names[32];
	const char *class_names[64];
	int err;
};

__attribute__((format(printf, 4, 5))) static void add(struct sv *v, const char *ptr, bool at_key,
						      const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (rh_diags_add(v->d, ptr, at_key, "%s", msg) < 0)
		v->err = RH_ENOMEM;
}

static bool in_list(const char *s, const char *const *list)
{
	for (size_t i = 0; s && list && list[i]; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

static void list_words(char *buf, size_t n, const char *const *list)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; list[i] && off < n; i++) {
		int w = snprintf(buf + off, n - off, "%s%s", i ? ", " : "", list[i]);

		if (w < 0)
			break;
		off += (size_t)w;
	}
}

/* "unknown X 'word': did you mean 'y'?" or "...: expected a, b, c". */
static void unknown(struct sv *v, const char *ptr, bool at_key, const char *what, const char *word,
		    const char *const *cands)
{
	const char *s = rh_suggest(word, cands);
	char all[1024];

	if (s) {
		add(v, ptr, at_key, "unknown %s '%.100s': did you mean '%s'?", what, word, s);
	} else {
		list_words(all, sizeof(all), cands);
		add(v, ptr, at_key, "unknown %s '%.100s': expected one of %s", what, word, all);
	}
}

static void check_keys(struct sv *v, const json_t *obj, const char *ptr, const char *what,
		       const char *const *allowed)
{
	const char *k;
	json_t *x;

	json_object_foreach((json_t *)obj, k, x)
	{
		char p[256];

		const char *sug;
		char all[1024];

		if (in_list(k, allowed))
			continue;
		snprintf(p, sizeof(p), "%s/%s", ptr, k);
		sug = rh_suggest(k, allowed);
		list_words(all, sizeof(all), allowed);
		if (sug)
			add(v, p, true, "unknown key '%.100s' in %s: did you mean '%s'?", k, what,
			    sug);
		else
			add(v, p, true, "unknown key '%.100s' in %s: expected one of %s", k, what,
			    all);
	}
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

static bool name_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 1 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

/* An array of strings at obj/key; calls check(v, ptr_of_item, value) per item. */
static const json_t *string_array(struct sv *v, const json_t *obj, const char *ptr, const char *key,
				  void (*check)(struct sv *, const char *, const char *))
{
	const json_t *a = json_object_get(obj, key);
	char p[256];
	size_t i;
	json_t *x;

	if (!a)
		return NULL;
	snprintf(p, sizeof(p), "%s/%s", ptr, key);
	if (!json_is_array(a) || json_array_size(a) == 0) {
		add(v, p, false, "%s: expected a non-empty array of strings, got %s", key,
		    json_is_array(a) ? "[]" : rh_json_kind(a));
		return NULL;
	}
	json_array_foreach(a, i, x)
	{
		char q[300];

		snprintf(q, sizeof(q), "%s/%zu", p, i);
		if (!json_is_string(x))
			add(v, q, false, "%s[%zu]: expected a string, got %s", key, i,
			    rh_json_kind(x));
		else if (check)
			check(v, q, json_string_value(x));
	}
	return a;
}

static void chk_code(struct sv *v, const char *ptr, const char *s)
{
	if (!code_ok(s))
		add(v, ptr, false,
		    "expected an upper-case country or bloc code such as \"FI\" or "
		    "\"EU\", got \"%.40s\"",
		    s);
}

static void chk_provider(struct sv *v, const char *ptr, const char *s)
{
	if (!in_list(s, v->provider_names))
		unknown(v, ptr, false, "provider", s, v->provider_names);
}

static void chk_class(struct sv *v, const char *ptr, const char *s)
{
	if (!in_list(s, v->class_names))
		unknown(v, ptr, false, "accelerator class", s, v->class_names);
}

static void chk_rule(struct sv *v, const char *ptr, const char *s)
{
	if (!rh_policy_rule(v->policy, s))
		unknown(v, ptr, false, "policy rule", s, rh_policy_ids(v->policy));
}

/* Resolves a path from the file against its directory; checks it is readable. */
static char *file_ref(struct sv *v, const json_t *doc, const char *key, const char *what)
{
	const json_t *j = json_object_get(doc, key);
	const char *s = json_string_value(j);
	char buf[PATH_MAX + 64];
	char p[64];

	snprintf(p, sizeof(p), "/%s", key);
	if (!j)
		return NULL;
	if (!s || !s[0]) {
		add(v, p, false, "%s: expected the path of %s, got %s", key, what, rh_json_kind(j));
		return NULL;
	}
	if (s[0] == '/')
		snprintf(buf, sizeof(buf), "%s", s);
	else
		snprintf(buf, sizeof(buf), "%s/%s", v->s->dir, s);
	if (access(buf, R_OK) != 0) {
		add(v, p, false,
		    "%s: cannot read %s (%s): give the path of %s, relative to the "
		    "scenario file",
		    key, buf, strerror(errno), what);
		return NULL;
	}
	return realpath(buf, NULL);
}

static void number(struct sv *v, const json_t *doc, const char *key, double min, double max,
		   double *out)
{
	const json_t *j = json_object_get(doc, key);
	char p[64];

	snprintf(p, sizeof(p), "/%s", key);
	if (!j)
		return;
	if (!json_is_number(j) || json_number_value(j) <= min || json_number_value(j) > max) {
		add(v, p, false, "%s: expected a number greater than %g and at most %g", key, min,
		    max);
		return;
	}
	*out = json_number_value(j);
}

static void check_entity(struct sv *v, const json_t *doc)
{
	const json_t *e = json_object_get(doc, "entity");

	if (!e)
		return;
	if (!json_is_object(e)) {
		add(v, "/entity", false,
		    "entity: expected {\"name\": ..., \"hq_country\": ...}, "
		    "got %s",
		    rh_json_kind(e));
		return;
	}
	check_keys(v, e, "/entity", "entity", entity_keys);
	if (json_object_get(e, "name") && !json_is_string(json_object_get(e, "name")))
		add(v, "/entity/name", false, "entity.name: expected a string");
	v->s->entity_name = json_string_value(json_object_get(e, "name"));
	if (!json_object_get(e, "hq_country"))
		add(v, "/entity", false,
		    "entity: missing \"hq_country\", the country code where "
		    "the entity is headquartered (rules such as us-ear-advanced-computing need "
		    "it)");
	else if (!code_ok(json_string_value(json_object_get(e, "hq_country"))))
		add(v, "/entity/hq_country", false,
		    "entity.hq_country: expected an upper-case "
		    "country code such as \"CN\"");
	else
		v->s->entity_hq = json_string_value(json_object_get(e, "hq_country"));
}

static void check_lost(struct sv *v, const json_t *doc)
{
	const json_t *l = json_object_get(doc, "lost");
	size_t i;
	json_t *e;

	if (!l)
		return;
	if (!json_is_array(l)) {
		add(v, "/lost", false,
		    "lost: expected an array of {provider, region, accelerator, "
		    "country} entries, got %s",
		    rh_json_kind(l));
		return;
	}
	v->s->lost = l;
	json_array_foreach(l, i, e)
	{
		char p[64], q[96];
		const char *k;
		json_t *x;

		snprintf(p, sizeof(p), "/lost/%zu", i);
		if (!json_is_object(e) || json_object_size(e) == 0) {
			add(v, p, false,
			    "lost[%zu]: expected an object with at least one of "
			    "provider, region, accelerator, country",
			    i);
			continue;
		}
		check_keys(v, e, p, "a lost entry", lost_keys);
		json_object_foreach(e, k, x)
		{
			snprintf(q, sizeof(q), "%s/%s", p, k);
			if (!json_is_string(x)) {
				add(v, q, false, "lost[%zu].%s: expected a string", i, k);
				continue;
			}
			if (strcmp(k, "provider") == 0)
				chk_provider(v, q, json_string_value(x));
			else if (strcmp(k, "accelerator") == 0)
				chk_class(v, q, json_string_value(x));
			else if (strcmp(k, "country") == 0)
				chk_code(v, q, json_string_value(x));
		}
	}
}

static void check_constraints(struct sv *v, const json_t *doc)
{
	const json_t *c = json_object_get(doc, "constraints");

	if (!c)
		return;
	if (!json_is_object(c)) {
		add(v, "/constraints", false,
		    "constraints: expected an object of allow-lists, "
		    "got %s",
		    rh_json_kind(c));
		return;
	}
	v->s->constraints = c;
	check_keys(v, c, "/constraints", "constraints", constraint_keys);
	string_array(v, c, "/constraints", "countries", chk_code);
	string_array(v, c, "/constraints", "blocs", chk_code);
	string_array(v, c, "/constraints", "accelerators", chk_class);
	string_array(v, c, "/constraints", "providers", chk_provider);
}

static void check_policy_ids(struct sv *v, const json_t *doc)
{
	const json_t *p = string_array(v, doc, "", "policy", chk_rule);
	const json_t *c = v->s->constraints;
	size_t i, n = 0;
	json_t *x;

	v->s->rules = calloc(json_array_size(p) + 1, sizeof(*v->s->rules));
	if (!v->s->rules) {
		v->err = RH_ENOMEM;
		return;
	}
	json_array_foreach(p, i, x)
	{
		const char *id = json_string_value(x);
		char ptr[64];

		snprintf(ptr, sizeof(ptr), "/policy/%zu", i);
		if (!id || !rh_policy_rule(v->policy, id))
			continue;
		if (rh_policy_needs_entity(v->policy, id) && !v->s->entity_hq &&
		    !json_object_get(doc, "entity"))
			add(v, ptr, false,
			    "rule '%s' judges the entity's headquarters: add "
			    "\"entity\": {\"name\": ..., \"hq_country\": ...}",
			    id);
		if (rh_policy_needs_residency(v->policy, id) && !json_object_get(c, "countries") &&
		    !json_object_get(c, "blocs"))
			add(v, ptr, false,
			    "rule '%s' needs an allow-list: add "
			    "\"constraints\": {\"countries\": [...]} or {\"blocs\": [...]}",
			    id);
		v->s->rules[n++] = id;
	}
}

static void check_targets(struct sv *v, const json_t *doc)
{
	const json_t *t = json_object_get(doc, "targets");
	const char *k;
	json_t *x;

	if (!t)
		return;
	if (!json_is_object(t)) {
		add(v, "/targets", false, "targets: expected {\"PROVIDER\": {target keys}}, got %s",
		    rh_json_kind(t));
		return;
	}
	v->s->targets = t;
	json_object_foreach((json_t *)t, k, x)
	{
		char p[128];

		snprintf(p, sizeof(p), "/targets/%s", k);
		if (!in_list(k, v->provider_names))
			unknown(v, p, true, "provider", k, v->provider_names);
		else if (!json_is_object(x))
			add(v, p, false, "targets.%s: expected an object of target keys", k);
	}
}

static void validate(struct sv *v, const json_t *doc)
{
	const json_t *fmt = json_object_get(doc, "rehydra_scenario");
	const char *name = json_string_value(json_object_get(doc, "name"));

	if (!json_is_object(doc)) {
		add(v, "", false,
		    "a scenario must be a json object ({\"rehydra_scenario\": 1, "
		    "\"name\": ..., \"runbook\": ...}), got %s",
		    rh_json_kind(doc));
		return;
	}
	check_keys(v, doc, "", "the scenario", top_keys);
	if (!json_is_integer(fmt) || json_integer_value(fmt) != RH_SCENARIO_FORMAT)
		add(v, fmt ? "/rehydra_scenario" : "", false,
		    "rehydra_scenario: expected the "
		    "scenario format version %d",
		    RH_SCENARIO_FORMAT);
	if (!name_ok(name))
		add(v, json_object_get(doc, "name") ? "/name" : "", false,
		    "name: expected 1 to 64 "
		    "letters, digits, '.', '_' or '-'");
	v->s->name = name;
	v->s->description = json_string_value(json_object_get(doc, "description"));
	if (json_object_get(doc, "description") && !v->s->description)
		add(v, "/description", false, "description: expected a string");
	if (!json_object_get(doc, "runbook"))
		add(v, "", false,
		    "missing required key 'runbook': the path of the runbook that "
		    "recreates the stack, relative to this file");
	v->s->runbook = file_ref(v, doc, "runbook", "a runbook");
	v->s->inventory = file_ref(v, doc, "inventory", "an ssh inventory");
	check_entity(v, doc);
	check_lost(v, doc);
	check_constraints(v, doc);
	check_policy_ids(v, doc);
	v->s->prefer = string_array(v, doc, "", "prefer", chk_provider);
	check_targets(v, doc);
	number(v, doc, "cadence_days", 0, 3650, &v->s->cadence_days);
	number(v, doc, "rto_target_s", 0, 7 * 24 * 3600, &v->s->rto_target_s);
}

static int read_all(char **out, size_t *len, const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n;
	int rc = 0;

	*out = NULL;
	if (!f)
		return rh_error_set_errno(RH_EIO, errno, "cannot open the scenario %s", path);
	buf = malloc(SCEN_MAX_BYTES + 1);
	if (!buf) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	n = fread(buf, 1, SCEN_MAX_BYTES + 1, f);
	if (ferror(f) || n > SCEN_MAX_BYTES) {
		rc =
		    rh_error_set(RH_EIO, "cannot read the scenario %s (or it is over 1 MiB)", path);
		goto done;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
done:
	free(buf);
	fclose(f);
	return rc;
}

int rh_scenario_load(struct rh_scenario **out, const char *path, const struct rh_policy *policy,
		     struct rh_diags *diags)
{
	struct sv v = {.d = diags, .policy = policy};
	struct rh_scenario *s = NULL;
	size_t before = diags->count, len = 0, n = 0;
	json_t *classes_doc = NULL;
	char *buf = NULL, *slash, *tmp = NULL;
	json_error_t je;
	const char *k;
	json_t *x;
	int rc;

	*out = NULL;
	rc = read_all(&buf, &len, path);
	if (rc < 0)
		goto done;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(path)) || !(tmp = strdup(path))) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	slash = strrchr(tmp, '/');
	if (slash)
		*slash = '\0';
	s->dir = realpath(slash ? (tmp[0] ? tmp : "/") : ".", NULL);
	if (!s->dir) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot resolve the directory of %s", path);
		goto done;
	}
	rh_sha256_buf_hex(s->sha256, buf, len);
	s->doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!s->doc) {
		rh_diags_add_at(diags, je.line, je.column, "invalid json: %s", je.text);
		rc = rh_error_set(RH_EINVAL, "the scenario is not valid json");
		goto done;
	}
	for (size_t i = 0; rh_providers[i] && n < 31; i++)
		v.provider_names[n++] = rh_providers[i]->name;
	v.provider_names[n] = NULL;
	rc = rh_catalog_classes(&classes_doc);
	if (rc < 0)
		goto done;
	n = 0;
	json_object_foreach(json_object_get(classes_doc, "classes"), k, x) if (n < 63)
	    v.class_names[n++] = k;
	v.class_names[n] = NULL;
	v.s = s;
	validate(&v, s->doc);
	if (v.err) {
		rc = rh_error_set(RH_ENOMEM, "out of memory validating the scenario");
		goto done;
	}
	if (diags->count > before) {
		rc = rh_error_set(RH_EINVAL, "the scenario has %zu problem%s",
				  diags->count - before, diags->count - before == 1 ? "" : "s");
		goto done;
	}
	*out = s;
	s = NULL;
done:
	if (diags->count > before) {
		rh_diags_locate(diags, buf ? buf : "", buf ? len : 0);
		rh_diags_sort(diags);
	}
	json_decref(classes_doc);
	free(tmp);
	free(buf);
	rh_scenario_free(s);
	return rc;
}

void rh_scenario_free(struct rh_scenario *s)
{
	if (!s)
		return;
	free(s->path);
	free(s->dir);
	free(s->runbook);
	free(s->inventory);
	free(s->rules);
	json_decref(s->doc);
	free(s);
}

/* ---- candidates ---------------------------------------------------------- */

struct decide {
	const struct rh_scenario *s;
	const json_t *rb_target; /* the runbook's own target, or NULL */
	const struct rh_policy *policy;
	struct rh_policy_input in;
	json_t *candidates;
	json_t *catalogs;
	json_t *done_providers; /* provider -> true, once enumerated */
	int err;
};

static int judge_one(struct decide *d, struct rh_candidate *c, const char *note_rule,
		     const char *note)
{
	json_t *reasons = NULL;
	json_t *o;
	bool allowed;
	int rc;

	rc = rh_policy_judge(&reasons, &allowed, d->policy, &d->in, c);
	if (rc < 0)
		return rc;
	if (note)
		json_array_append_new(reasons, json_pack("{s:s,s:s,s:s}", "rule", note_rule,
							 "message", note, "effect", "note"));
	o = json_pack("{s:s,s:s,s:s?}", "provider", c->provider, "region",
		      c->region ? c->region : "", "accelerator", c->accelerator);
	if (!o) {
		json_decref(reasons);
		return rh_error_set(RH_ENOMEM, "out of memory");
	}
	if (c->host)
		json_object_set_new(o, "host", json_string(c->host));
	json_object_set_new(o, "country", c->country ? json_string(c->country) : json_null());
	json_object_set_new(o, "bloc", c->bloc ? json_string(c->bloc) : json_null());
	json_object_set_new(o, "allowed", json_boolean(allowed));
	json_object_set_new(o, "reasons", reasons);
	return json_array_append_new(d->candidates, o) < 0
		   ? rh_error_set(RH_ENOMEM, "out of memory")
		   : 0;
}

static int cloud_candidates(struct decide *d, const char *provider)
{
	json_t *cat = NULL, *classes = NULL;
	const char *rname, *cls;
	json_t *region, *cv;
	int rc;

	rc = rh_catalog_load(&cat, provider);
	if (rc == RH_ENOTFOUND) {
		/* A provider without a catalog (local): only the runbook's own
		 * target, with the jurisdiction it states, is a candidate. */
		const json_t *t = d->rb_target;
		const json_t *jur = json_object_get(t, "jurisdiction");
		struct rh_candidate c = {
		    .provider = provider,
		    .region = json_string_value(json_object_get(t, "region")),
		    .accelerator = json_string_value(json_object_get(t, "accelerator")),
		    .country = json_string_value(json_object_get(jur, "country")),
		    .bloc = json_string_value(json_object_get(jur, "bloc")),
		};

		rh_error_clear();
		if (!t || strcmp(json_string_value(json_object_get(t, "provider")), provider) != 0)
			return 0;
		return judge_one(d, &c, NULL, NULL);
	}
	if (rc < 0)
		return rc;
	rc = rh_catalog_classes(&classes);
	if (rc < 0)
		goto done;
	json_array_append_new(d->catalogs,
			      json_pack("{s:s,s:s}", "provider", provider, "as_of",
					json_string_value(json_object_get(cat, "as_of"))));
	json_object_foreach(json_object_get(cat, "regions"), rname, region)
	{
		const json_t *jur = json_object_get(region, "jurisdiction");

		json_object_foreach(json_object_get(classes, "classes"), cls, cv)
		{
			const json_t *acc = NULL;
			struct rh_candidate c = {
			    .provider = provider,
			    .region = rname,
			    .accelerator = cls,
			    .country = json_string_value(json_object_get(jur, "country")),
			    .bloc = json_string_value(json_object_get(jur, "bloc")),
			};
			char why[1024] = "";
			const char *note = NULL;
			char notebuf[600];

			if (rh_catalog_accelerator(&acc, cat, cls, rname) < 0) {
				snprintf(why, sizeof(why), "%s", rh_error_last());
				c.not_offered = why;
			} else if (strcmp(json_string_value(json_object_get(acc, "status")),
					  "unverified") == 0) {
				snprintf(notebuf, sizeof(notebuf), "unverified in the catalog: %s",
					 json_string_value(json_object_get(acc, "reason")));
				note = notebuf;
			}
			rc = judge_one(d, &c, "catalog", note);
			if (rc < 0)
				goto done;
		}
	}
done:
	json_decref(cat);
	json_decref(classes);
	return rc;
}

static int inventory_candidates(struct decide *d)
{
	json_error_t je;
	json_t *inv;
	const json_t *hosts;
	size_t i;
	json_t *h;
	int rc = 0;

	if (!d->s->inventory)
		return 0;
	inv = json_load_file(d->s->inventory, JSON_REJECT_DUPLICATES, &je);
	if (!inv)
		return rh_error_set(RH_EINVAL, "inventory %s:%d:%d: %s", d->s->inventory, je.line,
				    je.column, je.text);
	hosts = json_object_get(inv, "hosts");
	if (!json_is_array(hosts)) {
		rc = rh_error_set(RH_EINVAL, "inventory %s: expected {\"hosts\": [...]}",
				  d->s->inventory);
		goto done;
	}
	json_array_foreach(hosts, i, h)
	{
		const json_t *jur = json_object_get(h, "jurisdiction");
		const json_t *accs = json_object_get(h, "accelerators");
		size_t k;
		json_t *a;
		struct rh_candidate c = {
		    .provider = "ssh",
		    .region = json_string_value(json_object_get(h, "region")),
		    .host = json_string_value(json_object_get(h, "name")),
		    .country = json_string_value(json_object_get(jur, "country")),
		    .bloc = json_string_value(json_object_get(jur, "bloc")),
		};

		if (!c.host) {
			rc = rh_error_set(RH_EINVAL, "inventory %s: hosts[%zu] has no name",
					  d->s->inventory, i);
			goto done;
		}
		if (json_array_size(accs) == 0) {
			c.not_offered = "the host lists no accelerators";
			rc = judge_one(d, &c, NULL, NULL);
		}
		json_array_foreach(accs, k, a)
		{
			c.accelerator = json_string_value(a);
			rc = judge_one(d, &c, NULL, NULL);
			if (rc < 0)
				goto done;
		}
	}
	json_array_append_new(
	    d->catalogs, json_pack("{s:s,s:s}", "provider", "ssh", "inventory", d->s->inventory));
done:
	json_decref(inv);
	return rc;
}

static int provider_candidates(struct decide *d, const char *provider)
{
	int rc;

	if (json_object_get(d->done_providers, provider))
		return 0;
	json_object_set_new(d->done_providers, provider, json_true());
	if (strcmp(provider, "ssh") == 0)
		rc = inventory_candidates(d);
	else
		rc = cloud_candidates(d, provider);
	return rc;
}

static json_t *target_of(const json_t *cand)
{
	json_t *o = json_pack("{s:O,s:O,s:O?}", "provider", json_object_get(cand, "provider"),
			      "region", json_object_get(cand, "region"), "accelerator",
			      json_object_get(cand, "accelerator"));

	if (o && json_object_get(cand, "host"))
		json_object_set(o, "host", json_object_get(cand, "host"));
	return o;
}

int rh_scenario_decide(json_t **out, const struct rh_scenario *s, const struct rh_policy *policy,
		       const json_t *rb_target, const json_t *model_export,
		       const char *export_unknown)
{
	struct decide d = {.s = s, .rb_target = rb_target, .policy = policy};
	char today[11];
	json_t *o = NULL, *rules = NULL, *chosen = NULL;
	size_t i;
	json_t *x;
	int rc = 0;

	*out = NULL;
	rh_policy_today(today);
	d.in = (struct rh_policy_input){
	    .entity_name = s->entity_name,
	    .entity_hq = s->entity_hq,
	    .lost = s->lost,
	    .constraints = s->constraints,
	    .rules = s->rules,
	    .model_export = model_export,
	    .export_unknown = export_unknown,
	    .today = today,
	};
	d.candidates = json_array();
	d.catalogs = json_array();
	d.done_providers = json_object();
	rules = json_array();
	if (!d.candidates || !d.catalogs || !d.done_providers || !rules) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	json_array_foreach(s->prefer, i, x)
	{
		rc = provider_candidates(&d, json_string_value(x));
		if (rc < 0)
			goto done;
	}
	for (i = 0; rh_providers[i]; i++) {
		rc = provider_candidates(&d, rh_providers[i]->name);
		if (rc < 0)
			goto done;
	}
	json_array_foreach(d.candidates, i, x)
	{
		if (json_is_true(json_object_get(x, "allowed"))) {
			chosen = target_of(x);
			break;
		}
	}
	for (i = 0; s->rules && s->rules[i]; i++) {
		const json_t *r = rh_policy_rule(policy, s->rules[i]);

		json_array_append_new(rules,
				      json_pack("{s:s,s:O,s:O,s:O}", "id", s->rules[i], "citation",
						json_object_get(r, "citation"), "effective_from",
						json_object_get(r, "effective_from"), "file",
						json_object_get(r, "file")));
	}
	o = json_pack("{s:{s:s,s:s,s:s},s:s,s:o,s:O,s:{s:O,s:O},s:O}", "scenario", "name", s->name,
		      "file", s->path, "sha256", s->sha256, "today", today, "chosen",
		      chosen ? chosen : json_null(), "candidates", d.candidates, "policy", "files",
		      rh_policy_files(policy), "rules", rules, "catalog", d.catalogs);
	chosen = NULL;
	if (!o)
		rc = rh_error_set(RH_ENOMEM, "out of memory");
	*out = o;
done:
	json_decref(chosen);
	json_decref(rules);
	json_decref(d.candidates);
	json_decref(d.catalogs);
	json_decref(d.done_providers);
	return rc;
}

int rh_scenario_target(json_t **out, json_t **dropped, const struct rh_scenario *s,
		       const json_t *rb_target, const json_t *chosen)
{
	const char *prov = json_string_value(json_object_get(chosen, "provider"));
	const struct rh_provider_ops *ops = rh_provider_find(prov);
	const char *old = json_string_value(json_object_get(rb_target, "provider"));
	json_t *t = rb_target ? json_deep_copy(rb_target) : json_object();
	json_t *gone = json_array();
	const char *k;
	json_t *v, *tmp;
	int rc = 0;

	*out = NULL;
	if (dropped)
		*dropped = NULL;
	if (!t || !gone) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	if (!ops) {
		rc = rh_error_set(RH_ENOTFOUND, "no provider '%s'", prov ? prov : "");
		goto done;
	}
	if (!old || strcmp(old, prov) != 0) {
		json_object_foreach_safe(t, tmp, k, v)
		{
			bool keep = strcmp(k, "provider") == 0 || strcmp(k, "region") == 0 ||
				    strcmp(k, "jurisdiction") == 0 || in_list(k, ops->target_keys);

			if (!keep) {
				json_array_append_new(gone, json_string(k));
				json_object_del(t, k);
			}
		}
	}
	json_object_foreach((json_t *)json_object_get(s->targets, prov), k, v)
	    json_object_set(t, k, v);
	json_object_set(t, "provider", json_object_get(chosen, "provider"));
	json_object_set(t, "region", json_object_get(chosen, "region"));
	/* The catalog or inventory decides the jurisdiction, not the runbook. */
	json_object_del(t, "jurisdiction");
	if (json_object_get(chosen, "accelerator") && in_list("accelerator", ops->target_keys))
		json_object_set(t, "accelerator", json_object_get(chosen, "accelerator"));
	if (json_object_get(chosen, "host")) {
		json_object_set(t, "host", json_object_get(chosen, "host"));
		json_object_set_new(t, "inventory", json_string(s->inventory ? s->inventory : ""));
	}
	*out = t;
	t = NULL;
	if (dropped) {
		*dropped = gone;
		gone = NULL;
	}
done:
	json_decref(t);
	json_decref(gone);
	return rc;
}

int rh_scenario_decision_record(json_t **out, const json_t *decision)
{
	json_t *denied = json_array();
	size_t i, allowed = 0, not_offered = 0;
	json_t *c;

	*out = NULL;
	if (!denied)
		return rh_error_set(RH_ENOMEM, "out of memory");
	json_array_foreach(json_object_get(decision, "candidates"), i, c)
	{
		json_t *rules, *o, *r;
		size_t k;
		bool offered = true;

		if (json_is_true(json_object_get(c, "allowed"))) {
			allowed++;
			continue;
		}
		rules = json_array();
		json_array_foreach(json_object_get(c, "reasons"), k, r)
		{
			const char *id = json_string_value(json_object_get(r, "rule"));

			if (strcmp(json_string_value(json_object_get(r, "effect")), "deny") != 0)
				continue;
			if (strcmp(id, "not-offered") == 0)
				offered = false;
			json_array_append(rules, json_object_get(r, "rule"));
		}
		if (!offered) {
			not_offered++;
			json_decref(rules);
			continue;
		}
		o = target_of(c);
		json_object_set_new(o, "rules", rules);
		json_array_append_new(denied, o);
	}
	*out = json_pack("{s:O,s:O,s:O,s:o,s:I,s:I,s:O,s:O,s:O}", "scenario",
			 json_object_get(json_object_get(decision, "scenario"), "name"), "file",
			 json_object_get(json_object_get(decision, "scenario"), "file"), "chosen",
			 json_object_get(decision, "chosen"), "denied", denied, "allowed",
			 (json_int_t)allowed, "not_offered", (json_int_t)not_offered, "policy",
			 json_object_get(json_object_get(decision, "policy"), "files"), "catalog",
			 json_object_get(decision, "catalog"), "today",
			 json_object_get(decision, "today"));
	return *out ? 0 : rh_error_set(RH_ENOMEM, "out of memory");
}

/* ---- a runbook's own target ---------------------------------------------- */

/* A target value as the rules see it: ${vars.*} expanded; NULL with *late
 * set when it needs what only the drill knows. *out is new. */
static char *target_value(const json_t *target, const char *key, const json_t *vars, bool *late)
{
	const char *raw = json_string_value(json_object_get(target, key));
	json_t *scope;
	char *out = NULL;

	if (!raw)
		return NULL;
	if (!strstr(raw, "${"))
		return strdup(raw);
	scope = json_pack("{s:O}", "vars", vars ? (json_t *)vars : json_object());
	if (!scope || rh_interp_expand(&out, raw, scope) < 0) {
		*late = true;
		out = NULL;
	}
	json_decref(scope);
	rh_error_clear();
	return out;
}

bool rh_scenario_needs_export(const json_t *doc)
{
	const json_t *ids = json_object_get(doc, "policy");
	struct rh_policy *p = NULL;
	bool needs = false;
	size_t i;
	json_t *x;

	if (!json_is_array(ids) || rh_policy_load(&p, NULL) < 0) {
		rh_error_clear();
		return false;
	}
	json_array_foreach(ids, i, x)
	{
		const char *req = json_string_value(
		    json_object_get(rh_policy_rule(p, json_string_value(x)), "require"));

		needs = needs || (req && strcmp(req, "model-export") == 0);
	}
	rh_policy_free(p);
	return needs;
}

int rh_scenario_check_target(struct rh_diags *d, const json_t *doc, const json_t *target,
			     const char *pointer, const json_t *vars, const json_t *model_export,
			     const char *export_unknown)
{
	const json_t *ids = json_object_get(doc, "policy");
	const json_t *entity = json_object_get(doc, "entity");
	const char *prov = json_string_value(json_object_get(target, "provider"));
	const json_t *jur = json_object_get(target, "jurisdiction");
	struct rh_policy *p = NULL;
	const char **rules = NULL;
	json_t *cat = NULL, *reasons = NULL;
	struct rh_candidate c = {0};
	struct rh_policy_input in = {0};
	char today[11], why[1024];
	char *region = NULL, *acc = NULL;
	bool late = false;
	const json_t *r;
	bool allowed;
	size_t i, n = 0;
	json_t *x;
	int rc;

	if (!json_is_array(ids) || json_array_size(ids) == 0 || !prov)
		return 0;
	region = target_value(target, "region", vars, &late);
	acc = target_value(target, "accelerator", vars, &late);
	if (late) {
		rc = rh_diags_add(d, pointer, false,
				  "the runbook opts into policy rules, so its target's region and "
				  "accelerator must be known before the drill: use literal values "
				  "or ${vars.*}, not values set at run time");
		goto done;
	}
	rc = rh_policy_load(&p, NULL);
	if (rc < 0)
		goto done;
	rules = calloc(json_array_size(ids) + 1, sizeof(*rules));
	if (!rules) {
		rc = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	json_array_foreach(ids, i, x)
	{
		const char *id = json_string_value(x);
		char ptr[64];

		snprintf(ptr, sizeof(ptr), "/policy/%zu", i);
		if (!id) {
			rh_diags_add(d, ptr, false, "policy[%zu]: expected a rule id (a string)",
				     i);
		} else if (!rh_policy_rule(p, id)) {
			const char *s = rh_suggest(id, rh_policy_ids(p));

			if (s)
				rh_diags_add(d, ptr, false,
					     "unknown policy rule '%.80s': did you "
					     "mean '%s'?",
					     id, s);
			else
				rh_diags_add(d, ptr, false,
					     "unknown policy rule '%.80s' (see "
					     "providers/policy/*.json)",
					     id);
		} else if (rh_policy_needs_entity(p, id) &&
			   !json_string_value(json_object_get(entity, "hq_country"))) {
			rh_diags_add(d, ptr, false,
				     "rule '%s' judges the entity's headquarters: add "
				     "\"entity\": {\"name\": ..., \"hq_country\": ...}",
				     id);
		} else {
			rules[n++] = id;
		}
	}
	c.provider = prov;
	c.region = region;
	c.accelerator = acc;
	c.country = json_string_value(json_object_get(jur, "country"));
	c.bloc = json_string_value(json_object_get(jur, "bloc"));
	if (!c.country && region && rh_catalog_load(&cat, prov) == 0) {
		const json_t *reg = NULL;

		if (rh_catalog_region(&reg, cat, region) == 0) {
			c.country = json_string_value(
			    json_object_get(json_object_get(reg, "jurisdiction"), "country"));
			c.bloc = json_string_value(
			    json_object_get(json_object_get(reg, "jurisdiction"), "bloc"));
		}
	}
	rh_error_clear();
	rh_policy_today(today);
	in.entity_name = json_string_value(json_object_get(entity, "name"));
	in.entity_hq = json_string_value(json_object_get(entity, "hq_country"));
	in.constraints = json_object_get(doc, "constraints");
	in.rules = rules;
	in.model_export = model_export;
	in.export_unknown =
	    export_unknown ? export_unknown : "the drill reads the model manifest before T0";
	in.today = today;
	rc = rh_policy_judge(&reasons, &allowed, p, &in, &c);
	if (rc < 0)
		goto done;
	json_array_foreach(reasons, i, r)
	{
		if (strcmp(json_string_value(json_object_get(r, "effect")), "deny") != 0)
			continue;
		snprintf(why, sizeof(why), "%s", json_string_value(json_object_get(r, "message")));
		rh_diags_add(d, pointer, false,
			     "target %s:%s%s%s is denied by policy rule '%s': %s", prov,
			     region ? region : "-", acc ? " " : "", acc ? acc : "",
			     json_string_value(json_object_get(r, "rule")), why);
	}
done:
	json_decref(reasons);
	json_decref(cat);
	free(rules);
	free(region);
	free(acc);
	rh_policy_free(p);
	return rc;
}
