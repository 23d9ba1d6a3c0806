/*
 * catalog.c - loads and checks the provider catalog (providers/catalog/).
 *
 * The catalog says which accelerator class a provider sells where, and
 * under which jurisdiction each region falls: the facts a failover plan
 * rests on when an export-control rule or an outage takes a region away.
 * It is data with a date, checked strictly on load so that a typo in a
 * region list fails `rehydra providers show` loudly instead of sending a
 * drill to the wrong place. Nothing here talks to a cloud.
 */
#include "catalog.h"
#include "error.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

static const char *const status_names[] = {"available", "unverified", "unavailable", NULL};

static bool is_dir(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The directory this source file was compiled in, two levels up: the
 * source tree, for running from a build directory without installing. */
static void source_root(char *buf, size_t size)
{
	char tmp[PATH_MAX];

	snprintf(tmp, sizeof(tmp), "%s", __FILE__);
	snprintf(buf, size, "%s", dirname(dirname(tmp)));
}

/* What each kind of data is called: its variable and its place in the
 * source tree. */
static void data_kind(const char *kind, const char **env_name, const char **src_rel)
{
	if (strcmp(kind, "catalog") == 0) {
		*env_name = "RH_CATALOG_DIR";
		*src_rel = "providers/catalog";
	} else if (strcmp(kind, "policy") == 0) {
		*env_name = "RH_POLICY_DIR";
		*src_rel = "providers/policy";
	} else {
		*env_name = "RH_TEMPLATES_DIR";
		*src_rel = "templates";
	}
}

int rh_data_dir(char **out, const char *kind)
{
	const char *env_name, *src_rel;
	const char *env;
	char exe[PATH_MAX], bindir[PATH_MAX], src[PATH_MAX];
	char cand[4][PATH_MAX + 64];
	size_t n = 0;
	ssize_t len;

	*out = NULL;
	data_kind(kind, &env_name, &src_rel);
	env = getenv(env_name);
	if (env && *env) {
		if (!is_dir(env))
			return rh_error_set(RH_ENOTFOUND, "%s=%s is not a directory", env_name,
					    env);
		*out = strdup(env);
		return *out ? 0 : rh_error_set(RH_ENOMEM, "out of memory");
	}
	len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len > 0) {
		exe[len] = '\0';
		snprintf(bindir, sizeof(bindir), "%s", dirname(exe));
		snprintf(cand[n++], sizeof(cand[0]), "%s/%s", bindir, kind);
		snprintf(cand[n++], sizeof(cand[0]), "%s/../share/rehydra/%s", bindir, kind);
	}
	source_root(src, sizeof(src));
	snprintf(cand[n++], sizeof(cand[0]), "%s/%s", src, src_rel);
	for (size_t i = 0; i < n; i++) {
		if (!is_dir(cand[i]))
			continue;
		*out = realpath(cand[i], NULL);
		return *out ? 0 : rh_error_set_errno(RH_EIO, errno, "cannot resolve %s", cand[i]);
	}
	return rh_error_set(RH_ENOTFOUND,
			    "cannot find the provider %s (looked beside the binary, in "
			    "../share/rehydra/%s and in %s): set %s to its directory",
			    kind, kind, cand[n - 1], env_name);
}

static int load_file(json_t **out, const char *name)
{
	char *dir = NULL;
	char path[PATH_MAX + 64];
	json_error_t jerr;
	int rc;

	*out = NULL;
	rc = rh_data_dir(&dir, "catalog");
	if (rc < 0)
		return rc;
	snprintf(path, sizeof(path), "%s/%s.json", dir, name);
	free(dir);
	if (access(path, R_OK) != 0)
		return rh_error_set_errno(RH_ENOTFOUND, errno, "no catalog file %s", path);
	*out = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!*out)
		return rh_error_set(RH_EINVAL, "%s:%d:%d: %s", path, jerr.line, jerr.column,
				    jerr.text);
	return 0;
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

static bool is_upper_code(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n < 2 || n > 3)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 'A' || s[i] > 'Z')
			return false;
	return true;
}

static bool in_list(const char *s, const char *const *list)
{
	for (size_t i = 0; s && list[i]; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

static const char *str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static int check_regions(const json_t *regions, const char *file)
{
	const char *name;
	json_t *r;

	if (!json_is_object(regions) || json_object_size(regions) == 0)
		return rh_error_set(RH_EINVAL, "%s: /regions must be a non-empty object", file);
	json_object_foreach((json_t *)regions, name, r)
	{
		const json_t *j = json_object_get(r, "jurisdiction");
		const json_t *os = json_object_get(r, "object_storage");
		const char *ep = str(os, "endpoint");
		const char *style = str(os, "style");

		if (!is_upper_code(str(j, "country")) || !is_upper_code(str(j, "bloc")))
			return rh_error_set(RH_EINVAL,
					    "%s: /regions/%s/jurisdiction needs \"country\" and "
					    "\"bloc\" codes such as \"DE\" and \"EU\"",
					    file, name);
		if (!ep || (strncmp(ep, "https://", 8) != 0 && strncmp(ep, "http://", 7) != 0))
			return rh_error_set(RH_EINVAL,
					    "%s: /regions/%s/object_storage/endpoint must be an "
					    "http(s) URL",
					    file, name);
		if (!style || (strcmp(style, "path") != 0 && strcmp(style, "virtual") != 0))
			return rh_error_set(RH_EINVAL,
					    "%s: /regions/%s/object_storage/style must be \"path\" "
					    "or \"virtual\"",
					    file, name);
	}
	return 0;
}

static int check_accelerator(const json_t *a, const char *cls, const json_t *regions,
			     const char *file)
{
	const char *status = str(a, "status");
	const json_t *rl = json_object_get(a, "regions");
	size_t i;
	json_t *r;

	if (!in_list(status, status_names))
		return rh_error_set(RH_EINVAL,
				    "%s: /accelerators/%s/status must be available, unverified "
				    "or unavailable",
				    file, cls);
	if (strcmp(status, "unavailable") == 0) {
		if (!str(a, "reason"))
			return rh_error_set(RH_EINVAL,
					    "%s: /accelerators/%s is unavailable but gives no "
					    "\"reason\"",
					    file, cls);
		return 0;
	}
	if (!json_is_integer(json_object_get(a, "gpus")) ||
	    json_integer_value(json_object_get(a, "gpus")) < 1 ||
	    !json_is_number(json_object_get(a, "gpu_memory_gb")))
		return rh_error_set(RH_EINVAL,
				    "%s: /accelerators/%s needs \"gpus\" (>= 1) and "
				    "\"gpu_memory_gb\"",
				    file, cls);
	if (strcmp(status, "available") == 0 && !str(a, "instance_type") &&
	    !(str(a, "platform") && str(a, "preset")))
		return rh_error_set(RH_EINVAL,
				    "%s: /accelerators/%s is available but names no "
				    "\"instance_type\" (or \"platform\" and \"preset\")",
				    file, cls);
	if (strcmp(status, "unverified") == 0 && !str(a, "reason"))
		return rh_error_set(RH_EINVAL,
				    "%s: /accelerators/%s is unverified but gives no "
				    "\"reason\"",
				    file, cls);
	if (json_object_get(a, "sizes")) {
		const json_t *sizes = json_object_get(a, "sizes");
		json_int_t prev = json_integer_value(json_object_get(a, "gpus"));

		if (!json_is_array(sizes))
			return rh_error_set(RH_EINVAL, "%s: /accelerators/%s/sizes must be a list",
					    file, cls);
		json_array_foreach(sizes, i, r)
		{
			const json_t *g = json_object_get(r, "gpus");

			if (!json_is_integer(g) || json_integer_value(g) <= prev ||
			    !(str(r, "instance_type") || str(r, "preset")))
				return rh_error_set(RH_EINVAL,
						    "%s: /accelerators/%s/sizes/%zu needs \"gpus\" "
						    "above the previous size's and an "
						    "\"instance_type\" or \"preset\"",
						    file, cls, i);
			prev = json_integer_value(g);
		}
	}
	if (!json_is_array(rl) || json_array_size(rl) == 0)
		return rh_error_set(RH_EINVAL, "%s: /accelerators/%s/regions must list regions",
				    file, cls);
	json_array_foreach(rl, i, r)
	{
		if (!json_is_string(r) || !json_object_get(regions, json_string_value(r)))
			return rh_error_set(RH_EINVAL,
					    "%s: /accelerators/%s/regions/%zu names a region "
					    "missing from /regions",
					    file, cls, i);
	}
	return 0;
}

int rh_catalog_check(const json_t *cat, const char *file)
{
	const json_t *tf = json_object_get(cat, "terraform");
	const json_t *regions = json_object_get(cat, "regions");
	const json_t *accs = json_object_get(cat, "accelerators");
	json_t *classes = NULL;
	const char *cls;
	json_t *a;
	int rc;

	if (!json_is_object(cat))
		return rh_error_set(RH_EINVAL, "%s: expected a JSON object", file);
	if (!str(cat, "provider"))
		return rh_error_set(RH_EINVAL, "%s: /provider must be a string", file);
	if (!is_date(str(cat, "as_of")))
		return rh_error_set(RH_EINVAL, "%s: /as_of must be a date YYYY-MM-DD", file);
	if (!str(tf, "source") || !str(tf, "version"))
		return rh_error_set(RH_EINVAL,
				    "%s: /terraform needs \"source\" and a pinned "
				    "\"version\"",
				    file);
	if (!str(cat, "ssh_user"))
		return rh_error_set(RH_EINVAL, "%s: /ssh_user must be a string", file);
	rc = check_regions(regions, file);
	if (rc < 0)
		return rc;
	if (!json_is_object(accs))
		return rh_error_set(RH_EINVAL, "%s: /accelerators must be an object", file);
	rc = rh_catalog_classes(&classes);
	if (rc < 0)
		return rc;
	json_object_foreach((json_t *)accs, cls, a)
	{
		if (!json_object_get(json_object_get(classes, "classes"), cls)) {
			rc = rh_error_set(RH_EINVAL,
					  "%s: /accelerators/%s is not a class listed in "
					  "accelerators.json",
					  file, cls);
			break;
		}
		rc = check_accelerator(a, cls, regions, file);
		if (rc < 0)
			break;
	}
	json_decref(classes);
	return rc;
}

int rh_catalog_classes(json_t **out)
{
	int rc = load_file(out, "accelerators");

	if (rc == 0 && !json_is_object(json_object_get(*out, "classes"))) {
		json_decref(*out);
		*out = NULL;
		rc = rh_error_set(RH_EINVAL, "accelerators.json: /classes must be an object");
	}
	return rc;
}

int rh_catalog_load(json_t **out, const char *provider)
{
	char file[128];
	json_t *cat = NULL;
	int rc;

	*out = NULL;
	for (const char *p = provider; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return rh_error_set(RH_EINVAL, "bad provider name '%s'", provider);
	rc = load_file(&cat, provider);
	if (rc < 0)
		return rc;
	snprintf(file, sizeof(file), "catalog/%s.json", provider);
	rc = rh_catalog_check(cat, file);
	if (rc == 0 && strcmp(str(cat, "provider"), provider) != 0)
		rc = rh_error_set(RH_EINVAL, "%s: /provider says '%s'", file, str(cat, "provider"));
	if (rc < 0) {
		json_decref(cat);
		return rc;
	}
	*out = cat;
	return 0;
}

/* "a, b, c" of an object's keys (sorted: jansson keeps insertion order,
 * and the files are written in a deliberate order, so keep it). */
static void keys_list(char *buf, size_t size, const json_t *obj, const char *skip_status)
{
	const char *k;
	json_t *v;
	size_t pos = 0;

	buf[0] = '\0';
	json_object_foreach((json_t *)obj, k, v)
	{
		int n;

		if (skip_status &&
		    strcmp(str(v, "status") ? str(v, "status") : "", skip_status) == 0)
			continue;
		n = snprintf(buf + pos, size - pos, "%s%s", pos ? ", " : "", k);
		if (n < 0 || (size_t)n >= size - pos)
			break;
		pos += (size_t)n;
	}
}

int rh_catalog_region(const json_t **out, const json_t *cat, const char *region)
{
	const json_t *regions = json_object_get(cat, "regions");
	char list[512];

	*out = region ? json_object_get(regions, region) : NULL;
	if (*out)
		return 0;
	keys_list(list, sizeof(list), regions, NULL);
	return rh_error_set(RH_ENOTFOUND,
			    "%s has no region '%s' in its catalog (as of %s): "
			    "known regions are %s",
			    str(cat, "provider"), region ? region : "", str(cat, "as_of"), list);
}

static bool offered_in(const json_t *a, const char *region)
{
	size_t i;
	json_t *r;

	json_array_foreach(json_object_get(a, "regions"), i,
			   r) if (strcmp(json_string_value(r), region) == 0) return true;
	return false;
}

int rh_catalog_accelerator(const json_t **out, const json_t *cat, const char *cls,
			   const char *region)
{
	const json_t *accs = json_object_get(cat, "accelerators");
	const json_t *a = cls ? json_object_get(accs, cls) : NULL;
	const char *prov = str(cat, "provider");
	char list[512], here[512];
	size_t pos = 0;
	const char *k;
	json_t *v;

	*out = NULL;
	if (!a) {
		keys_list(list, sizeof(list), accs, NULL);
		return rh_error_set(RH_ENOTFOUND,
				    "%s's catalog has no accelerator class '%s': "
				    "classes are %s",
				    prov, cls ? cls : "", list);
	}
	if (strcmp(str(a, "status"), "unavailable") == 0) {
		keys_list(list, sizeof(list), accs, "unavailable");
		return rh_error_set(RH_EUNSUPPORTED, "%s does not offer %s: %s (it offers %s)",
				    prov, cls, str(a, "reason"), list[0] ? list : "nothing mapped");
	}
	if (!offered_in(a, region)) {
		here[0] = '\0';
		json_object_foreach((json_t *)accs, k, v)
		{
			int n;

			if (strcmp(str(v, "status"), "unavailable") == 0 || !offered_in(v, region))
				continue;
			n = snprintf(here + pos, sizeof(here) - pos, "%s%s", pos ? ", " : "", k);
			if (n < 0 || (size_t)n >= sizeof(here) - pos)
				break;
			pos += (size_t)n;
		}
		list[0] = '\0';
		pos = 0;
		json_array_foreach(json_object_get(a, "regions"), pos, v)
		{
			size_t l = strlen(list);

			snprintf(list + l, sizeof(list) - l, "%s%s", l ? ", " : "",
				 json_string_value(v));
		}
		return rh_error_set(RH_EUNSUPPORTED,
				    "%s offers %s in %s, not in %s (catalog as of %s)%s%s", prov,
				    cls, list, region, str(cat, "as_of"),
				    here[0] ? "; there it offers " : "", here);
	}
	*out = a;
	return 0;
}
