/*
 * ssh.c - the `ssh` provider: bring-your-own hosts (colo GPU servers,
 * neocloud VMs) listed in an inventory file and reached over SSH.
 *
 * There is no cloud API to create anything, so "provision" means: pick a
 * host from the inventory that fits the target, reserve it with a lock that
 * lives on the host itself (mkdir is atomic, and several operators may drill
 * against the same inventory from different machines), make a per-drill
 * workspace under the host's workdir and choose a serving port. Artifacts go
 * through the SFTP sink into <workspace>/model; deploy starts the stack in
 * its own session (setsid) so it outlives the SSH channel; teardown kills
 * that session's process group, removes exactly the workspace and releases
 * the lock. Every remote command is an argv quoted by rh_ssh_exec, never a
 * string we build: runbook values reach the host as inert words. A warm
 * standby of each model stays on the host between drills (see below).
 *
 * Each hook opens its own connection: hooks run seconds apart in different
 * step threads, and a fresh connection after an interrupt is more robust
 * than one a cancelled step may have left half-used.
 */
#include "provider.h"
#include "clock.h"
#include "cancel.h"
#include "error.h"
#include "registry.h"
#include "sink.h"
#include "ssh.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "banned.h"

#define SSH_DEFAULT_PORT_LO 18000
#define SSH_DEFAULT_PORT_HI 18999
#define SSH_EARLY_EXIT_S 0.3 /* a stack that dies this fast never started */
#define SSH_GRACE_DEFAULT_S 5.0
#define SSH_CMD_TIMEOUT_S 30.0

/* What provision learnt; teardown works from this alone. */
struct ssh_state {
	json_t *host;	/* the inventory entry reserved (owned), NULL before */
	char *inv_path; /* resolved inventory path (for messages) */
	char *known_hosts;
	char *identity;
	bool accept_new;
	char *lock;	 /* <workdir>/locks/<name> once we hold it */
	char *workspace; /* <workdir>/<drill_id> */
	long pgid;	 /* the stack's process group, 0 = none started */
	int port;
};

static const char *const ssh_target_keys[] = {"inventory",   "host",	      "accelerator",
					      "known_hosts", "identity_file", "accept_new_host_key",
					      NULL};
/* host_name and jurisdiction name the reserved host in the record: an
 * auditor asks which machine, and under which law, the drill ran on. */
static const char *const ssh_output_keys[] = {"host",	  "port",      "workspace",    "ssh_host",
					      "ssh_user", "host_name", "jurisdiction", NULL};

static int oom(void)
{
	return rh_error_set(RH_ENOMEM, "out of memory in the ssh provider");
}

static int ssh_validate(const struct rh_provider_ops *self, const json_t *target,
			const char *pointer, struct rh_diags *d)
{
	static const char *const strs[] = {"inventory",	  "host",	   "accelerator",
					   "known_hosts", "identity_file", NULL};
	const json_t *v;
	char *ptr = NULL;
	int err = 0;

	(void)self;
	for (size_t i = 0; strs[i] && err == 0; i++) {
		v = json_object_get(target, strs[i]);
		if (!v && i > 0)
			continue;
		free(ptr);
		ptr = rh_pointer_join(pointer, strs[i]);
		if (!ptr) {
			err = oom();
			break;
		}
		if (!v)
			err = rh_diags_add(d, ptr, false,
					   "the ssh provider needs \"inventory\": the "
					   "path of a JSON file listing the hosts");
		else if (!json_is_string(v) || json_string_length(v) == 0)
			err = rh_diags_add(d, ptr, false, "%s must be a non-empty string", strs[i]);
	}
	v = json_object_get(target, "accept_new_host_key");
	if (err == 0 && v && !json_is_boolean(v)) {
		free(ptr);
		ptr = rh_pointer_join(pointer, "accept_new_host_key");
		err = ptr ? rh_diags_add(d, ptr, false, "accept_new_host_key must be true or false")
			  : oom();
	}
	free(ptr);
	return err;
}

/* ---- paths and inventory ------------------------------------------------- */

/* A path component we may put under a workdir: no '/', not "." or "..". */
static bool name_is_safe(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 128 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* An absolute, normalised directory that is not "/": no "." or ".."
 * segments, no "//", no trailing slash, printable. */
static bool workdir_is_safe(const char *s)
{
	size_t n = strlen(s);

	if (n < 2 || n > 1024 || s[0] != '/' || s[n - 1] == '/' || strstr(s, "//") ||
	    strstr(s, "/./") || strstr(s, "/../") || (n >= 3 && strcmp(s + n - 3, "/..") == 0) ||
	    (n >= 2 && strcmp(s + n - 2, "/.") == 0))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* target.<key> as the call gives it (expanded by the orchestrator); *out
 * is new, NULL when absent or "" (e.g. a var left at its default: "not
 * set", use the default). */
static int target_str(char **out, struct rh_provider_ctx *p, const struct rh_provider_call *call,
		      const char *key)
{
	const char *v = json_string_value(json_object_get(rh_provider_target(p, call), key));

	*out = NULL;
	if (!v || !*v)
		return 0;
	*out = strdup(v);
	return *out ? 0 : oom();
}

/* target.<key> and, when relative, made relative to the runbook's
 * directory. *out is new or NULL when the key is absent. */
static int target_path(char **out, struct rh_provider_ctx *p, const struct rh_provider_call *call,
		       const char *key)
{
	const char *dir = p->runbook.dir;
	char *v = NULL;
	int rc;

	*out = NULL;
	rc = target_str(&v, p, call, key);
	if (rc < 0 || !v)
		return rc;
	if (v[0] == '/' || !dir) {
		*out = v;
		return 0;
	}
	if (asprintf(out, "%s/%s", dir, v) < 0) {
		*out = NULL;
		rc = oom();
	}
	free(v);
	return rc;
}

static int inv_err(const char *file, size_t i, const char *field, const char *what)
{
	return rh_error_set(RH_EINVAL, "inventory %s: hosts[%zu].%s %s", file, i, field, what);
}

static int inv_opt_str(const char *file, size_t i, const json_t *h, const char *key)
{
	const json_t *v = json_object_get(h, key);

	if (v && (!json_is_string(v) || json_string_length(v) == 0))
		return inv_err(file, i, key, "must be a non-empty string");
	return 0;
}

static int inv_port(const char *file, size_t i, const json_t *v, const char *key)
{
	if (v &&
	    (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535))
		return inv_err(file, i, key, "must be an integer port 1..65535");
	return 0;
}

/* Checks one host entry; messages name the file and the field. */
static int inv_host_check(const char *file, size_t i, const json_t *h, const json_t *hosts)
{
	static const char *const known[] = {"name",	  "address",	  "port",	  "user",
					    "region",	  "jurisdiction", "accelerators", "workdir",
					    "serve_host", "serve_port",	  "port_range",	  NULL};
	const char *name = json_string_value(json_object_get(h, "name"));
	const char *wd = json_string_value(json_object_get(h, "workdir"));
	const json_t *v;
	const char *key;
	json_t *val;
	int rc;

	if (!json_is_object(h))
		return rh_error_set(RH_EINVAL, "inventory %s: hosts[%zu] must be an object", file,
				    i);
	json_object_foreach((json_t *)h, key, val)
	{
		size_t k = 0;

		while (known[k] && strcmp(known[k], key) != 0)
			k++;
		if (!known[k])
			return inv_err(file, i, key,
				       "is not a known key (name, address, port, "
				       "user, region, jurisdiction, accelerators, workdir, "
				       "serve_host, serve_port, port_range)");
	}
	if (!name_is_safe(name))
		return inv_err(file, i, "name",
			       "must be a string of letters, digits, '.', '_' "
			       "or '-' (it names the lock)");
	for (size_t j = 0; j < i; j++)
		if (strcmp(json_string_value(json_object_get(json_array_get(hosts, j), "name")),
			   name) == 0)
			return inv_err(file, i, "name", "repeats an earlier host's name");
	if (!json_is_string(json_object_get(h, "address")) ||
	    json_string_length(json_object_get(h, "address")) == 0)
		return inv_err(file, i, "address", "is required: the host name or IP to ssh to");
	if (!wd || !workdir_is_safe(wd))
		return inv_err(file, i, "workdir",
			       "is required: an absolute, normalised "
			       "directory other than / (e.g. \"/srv/rehydra\")");
	if ((rc = inv_opt_str(file, i, h, "user")) < 0 ||
	    (rc = inv_opt_str(file, i, h, "region")) < 0 ||
	    (rc = inv_opt_str(file, i, h, "serve_host")) < 0 ||
	    (rc = inv_port(file, i, json_object_get(h, "port"), "port")) < 0 ||
	    (rc = inv_port(file, i, json_object_get(h, "serve_port"), "serve_port")) < 0)
		return rc;
	v = json_object_get(h, "jurisdiction");
	if (v &&
	    (!json_is_object(v) ||
	     (json_object_get(v, "country") && !json_is_string(json_object_get(v, "country"))) ||
	     (json_object_get(v, "bloc") && !json_is_string(json_object_get(v, "bloc")))))
		return inv_err(file, i, "jurisdiction",
			       "must be {\"country\": \"..\", "
			       "\"bloc\": \"..\"}");
	v = json_object_get(h, "accelerators");
	if (v) {
		if (!json_is_array(v))
			return inv_err(file, i, "accelerators", "must be an array of strings");
		for (size_t k = 0; k < json_array_size(v); k++)
			if (!json_is_string(json_array_get(v, k)))
				return inv_err(file, i, "accelerators",
					       "must be an array of "
					       "strings");
	}
	v = json_object_get(h, "port_range");
	if (v) {
		if (!json_is_array(v) || json_array_size(v) != 2 ||
		    inv_port(file, i, json_array_get(v, 0), "port_range") < 0 ||
		    inv_port(file, i, json_array_get(v, 1), "port_range") < 0 ||
		    json_integer_value(json_array_get(v, 0)) >
			json_integer_value(json_array_get(v, 1)))
			return inv_err(file, i, "port_range",
				       "must be [first, last] ports with "
				       "first <= last");
	}
	return 0;
}

/* Loads and checks the whole inventory; *out is new (the "hosts" array). */
static int inv_load(json_t **out, const char *file)
{
	json_error_t jerr;
	json_t *doc;
	json_t *hosts;
	int rc = 0;

	*out = NULL;
	doc = json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc && jerr.line > 0)
		return rh_error_set(RH_EINVAL, "inventory %s line %d: %s", file, jerr.line,
				    jerr.text);
	if (!doc)
		return rh_error_set(RH_EIO, "inventory %s: %s", file, jerr.text);
	hosts = json_object_get(doc, "hosts");
	if (!json_is_array(hosts) || json_array_size(hosts) == 0) {
		rc = rh_error_set(RH_EINVAL,
				  "inventory %s: expected {\"hosts\": [ ... ]} with at "
				  "least one host",
				  file);
		goto done;
	}
	for (size_t i = 0; i < json_array_size(hosts) && rc == 0; i++)
		rc = inv_host_check(file, i, json_array_get(hosts, i), hosts);
	if (rc == 0)
		*out = json_incref(hosts);
done:
	json_decref(doc);
	return rc;
}

static bool host_matches(const json_t *h, const char *region, const char *acc)
{
	const json_t *accs = json_object_get(h, "accelerators");
	const char *hr = json_string_value(json_object_get(h, "region"));

	if (region && *region && (!hr || strcmp(hr, region) != 0))
		return false;
	if (!acc || !*acc)
		return true;
	for (size_t i = 0; i < json_array_size(accs); i++)
		if (strcmp(json_string_value(json_array_get(accs, i)), acc) == 0)
			return true;
	return false;
}

static const char *hstr(const json_t *h, const char *key, const char *dflt)
{
	const char *v = json_string_value(json_object_get(h, key));

	return v ? v : dflt;
}

/* The login user: the inventory's, else ours (as ssh would). */
static int host_user(char *buf, size_t size, const json_t *h)
{
	struct passwd pw;
	struct passwd *res = NULL;
	char tmp[1024];
	const char *u = hstr(h, "user", NULL);

	if (!u) {
		if (getpwuid_r(geteuid(), &pw, tmp, sizeof(tmp), &res) != 0 || !res)
			return rh_error_set(RH_ERROR, "cannot find the local user name: set "
						      "\"user\" in the inventory");
		u = res->pw_name;
	}
	if ((size_t)snprintf(buf, size, "%s", u) >= size)
		return rh_error_set(RH_EINVAL, "user name too long");
	return 0;
}

/* ---- remote commands ------------------------------------------------------ */

static int ssh_open(struct rh_ssh **out, const struct ssh_state *st, const json_t *h,
		    const struct rh_provider_call *call)
{
	struct rh_ssh_opts o = RH_SSH_OPTS_INIT;
	char user[256];
	int rc;

	*out = NULL;
	rc = host_user(user, sizeof(user), h);
	if (rc < 0)
		return rc;
	o.user = user;
	o.known_hosts = st->known_hosts;
	o.identity_file = st->identity;
	o.accept_new_host_key = st->accept_new;
	o.cancel = call ? call->cancel : NULL;
	o.io_timeout_s = SSH_CMD_TIMEOUT_S;
	rc = rh_ssh_connect(out, hstr(h, "address", ""),
			    (unsigned)(json_integer_value(json_object_get(h, "port"))
					   ? json_integer_value(json_object_get(h, "port"))
					   : 22),
			    &o);
	if (rc < 0)
		rh_error_prefix(rc, "host %s", hstr(h, "name", "?"));
	return rc;
}

/* Runs argv; *status gets its exit status. res may be NULL when the output
 * does not matter. Fails only when the command could not run to its end. */
static int run(struct rh_ssh *c, const char *const argv[], const char *in, int *status,
	       struct rh_ssh_exec_result *res_out)
{
	struct rh_ssh_exec_opts o = RH_SSH_EXEC_OPTS_INIT;
	struct rh_ssh_exec_result res = {0};
	int rc;

	o.stdin_data = in;
	o.stdin_len = in ? strlen(in) : 0;
	o.timeout_s = SSH_CMD_TIMEOUT_S;
	o.max_output = 64 * 1024;
	rc = rh_ssh_exec(c, argv, &o, &res);
	if (rc < 0)
		rh_error_prefix(rc, "running %s on %s", argv[0], rh_ssh_name(c));
	*status = res.exit_status;
	if (res_out && rc == 0)
		*res_out = res;
	else
		rh_ssh_exec_result_clear(&res);
	return rc;
}

/* Like run(), but a non-zero status is an error quoting the command's
 * stderr (the remote tool's own words). */
static int run_ok(struct rh_ssh *c, const char *const argv[], const char *what)
{
	struct rh_ssh_exec_result res = {0};
	int status = -1;
	int rc;

	rc = run(c, argv, NULL, &status, &res);
	if (rc < 0)
		return rc;
	if (status != 0) {
		size_t n = res.err ? strlen(res.err) : 0;

		while (n > 0 && (res.err[n - 1] == '\n' || res.err[n - 1] == '\r'))
			res.err[--n] = '\0';
		rc = rh_error_set(RH_EIO, "%s on %s failed (status %d)%s%s", what, rh_ssh_name(c),
				  status, n ? ": " : "", n ? res.err : "");
	}
	rh_ssh_exec_result_clear(&res);
	return rc;
}

/* Who holds <lock>: the drill id in <lock>/owner, "" if unreadable. */
static int lock_owner(struct rh_ssh *c, const char *lock, char *buf, size_t size)
{
	struct rh_ssh_exec_result res = {0};
	char owner[PATH_MAX + 512];
	const char *argv[] = {"cat", "--", owner, NULL};
	int status = -1;
	int rc;

	buf[0] = '\0';
	snprintf(owner, sizeof(owner), "%s/owner", lock);
	rc = run(c, argv, NULL, &status, &res);
	if (rc == 0 && status == 0 && res.out) {
		size_t n = strcspn(res.out, "\r\n");

		if (n < size) {
			memcpy(buf, res.out, n);
			buf[n] = '\0';
		}
	}
	rh_ssh_exec_result_clear(&res);
	return rc;
}

/* Takes <workdir>/locks/<name> for this drill. *busy is set when another
 * drill holds it; holding it already (a retried provision) is success. */
static int lock_take(struct rh_ssh *c, const char *workdir, const char *name, const char *drill_id,
		     char **lock_out, bool *busy)
{
	char locks[PATH_MAX];
	char lock[PATH_MAX + 256];
	char owner_path[PATH_MAX + 512];
	char owner[256];
	char *line = NULL;
	const char *mk_locks[] = {"mkdir", "-p", "--", locks, NULL};
	const char *mk_lock[] = {"mkdir", "--", lock, NULL};
	const char *tee[] = {"tee", "--", owner_path, NULL};
	int status = -1;
	int rc;

	*busy = false;
	*lock_out = NULL;
	snprintf(locks, sizeof(locks), "%s/locks", workdir);
	snprintf(lock, sizeof(lock), "%s/%s", locks, name);
	snprintf(owner_path, sizeof(owner_path), "%s/owner", lock);
	rc = run_ok(c, mk_locks, "creating the lock directory");
	if (rc < 0)
		goto done;
	rc = run(c, mk_lock, NULL, &status, NULL);
	if (rc < 0)
		goto done;
	if (status != 0) {
		rc = lock_owner(c, lock, owner, sizeof(owner));
		if (rc < 0)
			goto done;
		if (strcmp(owner, drill_id) != 0) {
			*busy = true;
			goto done;
		}
	} else {
		if (asprintf(&line, "%s\n", drill_id) < 0) {
			line = NULL;
			rc = oom();
			goto done;
		}
		rc = run(c, tee, line, &status, NULL);
		if (rc == 0 && status != 0)
			rc = rh_error_set(RH_EIO, "cannot record the lock owner in %s on %s",
					  owner_path, rh_ssh_name(c));
		if (rc < 0) {
			const char *rm[] = {"rm", "-rf", "--", lock, NULL};
			int ignored;

			run(c, rm, NULL, &ignored, NULL);
			goto done;
		}
	}
	*lock_out = strdup(lock);
	if (!*lock_out)
		rc = oom();
done:
	free(line);
	return rc;
}

/* Ports in use per `ss -Htln`: the local address column's last ":N". */
static bool port_in_use(const char *ss_out, int port)
{
	const char *line = ss_out;

	while (line && *line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char buf[512];
		char *save = NULL;
		char *col;
		int n = 0;

		if (len >= sizeof(buf))
			len = sizeof(buf) - 1;
		memcpy(buf, line, len);
		buf[len] = '\0';
		/* State Recv-Q Send-Q Local:Port Peer:Port ... */
		for (col = strtok_r(buf, " \t", &save); col; col = strtok_r(NULL, " \t", &save)) {
			if (++n == 4) {
				const char *c = strrchr(col, ':');

				if (c && strtol(c + 1, NULL, 10) == port)
					return true;
				break;
			}
		}
		line = end ? end + 1 : NULL;
	}
	return false;
}

/* serve_port if the inventory fixes one, else the first port of port_range
 * (default 18000..18999) that `ss -Htln` on the host does not list. */
static int pick_port(struct rh_ssh *c, const json_t *h, int *port)
{
	const json_t *range = json_object_get(h, "port_range");
	const char *argv[] = {"ss", "-Htln", NULL};
	struct rh_ssh_exec_result res = {0};
	long lo = SSH_DEFAULT_PORT_LO;
	long hi = SSH_DEFAULT_PORT_HI;
	int status = -1;
	int rc;

	if (json_is_integer(json_object_get(h, "serve_port"))) {
		*port = (int)json_integer_value(json_object_get(h, "serve_port"));
		return 0;
	}
	if (range) {
		lo = (long)json_integer_value(json_array_get(range, 0));
		hi = (long)json_integer_value(json_array_get(range, 1));
	}
	rc = run(c, argv, NULL, &status, &res);
	if (rc < 0)
		goto done;
	if (status != 0) {
		rc = rh_error_set(RH_EIO,
				  "cannot list listening ports on %s with `ss -Htln` "
				  "(status %d): install iproute2 there or set \"serve_port\" for "
				  "host %s in the inventory",
				  rh_ssh_name(c), status, hstr(h, "name", "?"));
		goto done;
	}
	rc = RH_EIO;
	for (long p = lo; p <= hi; p++) {
		if (!port_in_use(res.out ? res.out : "", (int)p)) {
			*port = (int)p;
			rc = 0;
			break;
		}
	}
	if (rc < 0)
		rh_error_set(rc, "no free port in %ld..%ld on %s: widen \"port_range\" for host %s",
			     lo, hi, rh_ssh_name(c), hstr(h, "name", "?"));
done:
	rh_ssh_exec_result_clear(&res);
	return rc;
}

/* ---- state ------------------------------------------------------------------ */

static struct ssh_state *state_get(struct rh_provider_ctx *p)
{
	if (!p->priv)
		p->priv = calloc(1, sizeof(struct ssh_state));
	return p->priv;
}

static void state_forget(struct ssh_state *st)
{
	json_decref(st->host);
	st->host = NULL;
	free(st->lock);
	free(st->workspace);
	st->lock = st->workspace = NULL;
	st->pgid = 0;
	st->port = 0;
}

static int set_outputs(json_t *dst, const struct ssh_state *st)
{
	char user[256];
	const json_t *h = st->host;

	if (!dst)
		return 0;
	if (host_user(user, sizeof(user), h) < 0)
		return RH_ERROR;
	if (json_object_set_new(dst, "host",
				json_string(hstr(h, "serve_host", hstr(h, "address", "")))) ||
	    json_object_set_new(dst, "port", json_integer(st->port)) ||
	    json_object_set_new(dst, "workspace", json_string(st->workspace)) ||
	    json_object_set_new(dst, "ssh_host", json_string(hstr(h, "address", ""))) ||
	    json_object_set_new(dst, "ssh_user", json_string(user)) ||
	    json_object_set_new(dst, "host_name", json_string(hstr(h, "name", ""))))
		return oom();
	if (json_is_object(json_object_get(h, "jurisdiction")) &&
	    json_object_set_new(dst, "jurisdiction",
				json_deep_copy(json_object_get(h, "jurisdiction"))) < 0)
		return oom();
	return 0;
}

/* Reads the connection settings from the target (once per drill). */
static int state_settings(struct ssh_state *st, struct rh_provider_ctx *p,
			  const struct rh_provider_call *call)
{
	int rc;

	if (st->inv_path)
		return 0;
	st->accept_new = json_is_true(json_object_get(p->target, "accept_new_host_key"));
	if ((rc = target_path(&st->known_hosts, p, call, "known_hosts")) < 0 ||
	    (rc = target_path(&st->identity, p, call, "identity_file")) < 0 ||
	    (rc = target_path(&st->inv_path, p, call, "inventory")) < 0)
		return rc;
	if (!st->inv_path)
		return rh_error_set(RH_EINVAL, "target.inventory is not set");
	return 0;
}

/* ---- hooks --------------------------------------------------------------------- */

/* Tries one host: connect, lock, workspace, port. On success the state
 * holds the host; *busy when another drill holds it. */
static int try_host(struct ssh_state *st, struct rh_provider_ctx *p,
		    const struct rh_provider_call *call, const json_t *h, bool *busy)
{
	struct rh_ssh *c = NULL;
	const char *wd = hstr(h, "workdir", "");
	char *lock = NULL;
	char *ws = NULL;
	const char *mk_ws[] = {"mkdir", "-p", "-m", "0700", "--", NULL, NULL};
	int port = 0;
	int rc;

	*busy = false;
	rc = ssh_open(&c, st, h, call);
	if (rc < 0)
		goto done;
	rc = lock_take(c, wd, hstr(h, "name", ""), p->drill_id, &lock, busy);
	if (rc < 0 || *busy)
		goto done;
	/* From here on teardown must release the lock, whatever happens next. */
	st->host = json_deep_copy(h);
	st->lock = lock;
	lock = NULL;
	if (asprintf(&ws, "%s/%s", wd, p->drill_id) < 0) {
		ws = NULL;
		rc = oom();
		goto done;
	}
	st->workspace = ws;
	if (!st->host) {
		rc = oom();
		goto done;
	}
	mk_ws[5] = ws;
	rc = run_ok(c, mk_ws, "creating the workspace");
	if (rc < 0)
		goto done;
	rc = pick_port(c, h, &port);
	if (rc < 0)
		goto done;
	st->port = port;
done:
	free(lock);
	rh_ssh_free(c);
	return rc;
}

static int ssh_provision(struct rh_provider_ctx *p, const struct rh_provider_call *call)
{
	struct ssh_state *st;
	json_t *hosts = NULL;
	char *want = NULL;
	char *region = NULL;
	char *acc = NULL;
	size_t tried = 0;
	size_t busy_n = 0;
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	st = state_get(p);
	if (!st) {
		rc = oom();
		goto done;
	}
	if (!name_is_safe(p->drill_id)) {
		rc = rh_error_set(RH_EINVAL, "bad drill id \"%s\"", p->drill_id ? p->drill_id : "");
		goto done;
	}
	if (st->host && st->port)
		goto outputs; /* a retried provision keeps its host and port */
	rc = state_settings(st, p, call);
	if (rc < 0)
		goto done;
	rc = inv_load(&hosts, st->inv_path);
	if (rc < 0)
		goto done;
	if ((rc = target_str(&want, p, call, "host")) < 0 ||
	    (rc = target_str(&region, p, call, "region")) < 0 ||
	    (rc = target_str(&acc, p, call, "accelerator")) < 0)
		goto done;
	for (size_t i = 0; i < json_array_size(hosts); i++) {
		const json_t *h = json_array_get(hosts, i);
		bool busy = false;

		if (want ? strcmp(hstr(h, "name", ""), want) != 0 : !host_matches(h, region, acc))
			continue;
		if (call && call->cancel && rh_cancel_is_fired(call->cancel)) {
			rc = rh_error_set(RH_ECANCELLED, "cancelled while reserving a host");
			goto done;
		}
		tried++;
		rc = try_host(st, p, call, h, &busy);
		if (rc < 0 || st->host)
			break;
		busy_n += busy;
	}
	if (rc < 0)
		goto done;
	if (!st->host) {
		if (tried == 0 && want)
			rc = rh_error_set(RH_ENOTFOUND, "inventory %s has no host named \"%s\"",
					  st->inv_path, want);
		else if (tried == 0)
			rc = rh_error_set(RH_ENOTFOUND,
					  "inventory %s has no host in region \"%s\" "
					  "with accelerator \"%s\"",
					  st->inv_path, region ? region : "(any)",
					  acc ? acc : "(any)");
		else
			rc = rh_error_set(RH_ERROR,
					  "every matching host in %s is reserved by "
					  "another drill (%zu busy): wait, or remove a stale lock "
					  "<workdir>/locks/<host> on the host",
					  st->inv_path, busy_n);
		goto done;
	}
outputs:
	rc = set_outputs(p->outputs, st);
	if (rc == 0 && call && call->outputs)
		rc = set_outputs(call->outputs, st);
done:
	if (rc < 0)
		rh_error_prefix(rc, "ssh provider: provision");
	pthread_mutex_unlock(&p->lock);
	json_decref(hosts);
	free(want);
	free(region);
	free(acc);
	return rc;
}

/* Percent-encodes everything but unreserved characters and '/'. */
static int url_escape(char *buf, size_t size, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (n + 4 > size)
			return rh_error_set(RH_EINVAL, "path too long for an sftp URL");
		if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~/",
			   ch)) {
			buf[n++] = (char)ch;
		} else {
			buf[n++] = '%';
			buf[n++] = hex[ch >> 4];
			buf[n++] = hex[ch & 15];
		}
	}
	buf[n] = '\0';
	return 0;
}

/* Opens the SFTP sink at `path` on host `h`, with the drill's settings. */
static int host_sink_open(struct rh_sink **out, const struct ssh_state *st, const json_t *h,
			  const char *path, const struct rh_provider_call *call)
{
	struct rh_sink_opts o = RH_SINK_OPTS_INIT;
	char user[256];
	char euser[768];
	char epath[PATH_MAX * 3];
	char *url = NULL;
	const char *addr = hstr(h, "address", "");
	long port = json_integer_value(json_object_get(h, "port"));
	int rc;

	*out = NULL;
	if ((rc = host_user(user, sizeof(user), h)) < 0 ||
	    (rc = url_escape(euser, sizeof(euser), user)) < 0 ||
	    (rc = url_escape(epath, sizeof(epath), path)) < 0)
		return rc;
	if (asprintf(&url, "sftp://%s@%s%s%s:%ld%s", euser, strchr(addr, ':') ? "[" : "", addr,
		     strchr(addr, ':') ? "]" : "", port ? port : 22, epath) < 0)
		return oom();
	o.known_hosts = st->known_hosts;
	o.identity_file = st->identity;
	o.accept_new_host_key = st->accept_new;
	rc = rh_sink_open(out, url, &o);
	if (rc == 0 && call)
		(*out)->cancel = call->cancel;
	free(url);
	return rc;
}

static int ssh_sink_open(struct rh_sink **out, struct rh_provider_ctx *p,
			 const struct rh_provider_call *call)
{
	struct ssh_state *st;
	char path[PATH_MAX];
	int rc;

	*out = NULL;
	pthread_mutex_lock(&p->lock);
	st = p->priv;
	if (!st || !st->host || !st->workspace) {
		rc = rh_error_set(RH_EINVAL, "ssh provider: the target is not provisioned yet: add "
					     "a provision step to this step's `after`");
		goto done;
	}
	snprintf(path, sizeof(path), "%s/model", st->workspace);
	rc = host_sink_open(out, st, st->host, path, call);
done:
	if (rc < 0)
		rh_error_prefix(rc, "ssh provider: sink");
	pthread_mutex_unlock(&p->lock);
	return rc;
}

/* ---- warm standby -------------------------------------------------------------
 *
 * The standing copy of a model is <workdir>/standby/<model> on each host:
 * beside the per-drill workspaces (whose names are drill ids, starting
 * with a digit) and the locks, so teardown, which removes exactly one
 * workspace, never touches it. The drill syncs into it over SFTP (only
 * what is missing or changed moves), then the host itself hard-links the
 * files into the workspace (cp -l; a copy on the host where links fail)
 * and hashes them there (openssl dgst, else sha256sum): the SFTP sink trusts its records
 * by size and mtime, so the bytes the stack will read are checked once
 * more against the manifest without crossing the network. Both commands
 * are constant scripts with the paths as arguments and the file list on
 * stdin: no runbook value is parsed as shell text.
 */
static const char standby_link_script[] =
    "cd -- \"$0\" || exit 97; exec xargs -d '\\n' cp -l --parents -t \"$1\" --";
static const char standby_copy_script[] =
    "cd -- \"$0\" || exit 97; exec xargs -d '\\n' cp --reflink=auto --parents -t \"$1\" --";
/* openssl's SHA-256 uses the CPU's SHA instructions, coreutils' does not
 * (0.2 s vs 1.7 s for 256 MiB here): the faster where the host has it. */
static const char standby_hash_script[] =
    "cd -- \"$0\" || exit 97; if command -v openssl >/dev/null 2>&1; then "
    "exec xargs -d '\\n' openssl dgst -sha256 -r --; fi; exec xargs -d '\\n' sha256sum --";

/* The index-th inventory host matching the target; NULL past the last. */
static const json_t *nth_host(const json_t *hosts, const char *want, const char *region,
			      const char *acc, size_t index)
{
	for (size_t i = 0; i < json_array_size(hosts); i++) {
		const json_t *h = json_array_get(hosts, i);

		if (want ? strcmp(hstr(h, "name", ""), want) != 0 : !host_matches(h, region, acc))
			continue;
		if (index-- == 0)
			return h;
	}
	return NULL;
}

static int ssh_standby_open(struct rh_sink **out, char **where, struct rh_provider_ctx *p,
			    const struct rh_provider_call *call, const char *model, size_t index)
{
	struct ssh_state *st;
	json_t *hosts = NULL;
	const json_t *h = NULL;
	char *want = NULL, *region = NULL, *acc = NULL;
	char path[PATH_MAX];
	int rc;

	*out = NULL;
	if (where)
		*where = NULL;
	if ((rc = rh_provider_standby_name_check(model)) < 0)
		return rh_error_prefix(rc, "ssh provider: standby");
	pthread_mutex_lock(&p->lock);
	st = state_get(p);
	if (!st) {
		rc = oom();
		goto done;
	}
	if (st->host) {
		h = index == 0 ? st->host : NULL;
	} else {
		if ((rc = state_settings(st, p, call)) < 0 ||
		    (rc = inv_load(&hosts, st->inv_path)) < 0 ||
		    (rc = target_str(&want, p, call, "host")) < 0 ||
		    (rc = target_str(&region, p, call, "region")) < 0 ||
		    (rc = target_str(&acc, p, call, "accelerator")) < 0)
			goto done;
		h = nth_host(hosts, want, region, acc, index);
		if (!h && index == 0) {
			rc = rh_error_set(RH_ENOTFOUND, "inventory %s has no host for the target",
					  st->inv_path);
			goto done;
		}
	}
	if (!h) {
		rc = RH_ENOTFOUND;
		goto done;
	}
	snprintf(path, sizeof(path), "%s/standby/%s", hstr(h, "workdir", ""), model);
	rc = host_sink_open(out, st, h, path, call);
	if (rc == 0 && where && !(*where = strdup(hstr(h, "name", "?")))) {
		rh_sink_close(*out);
		*out = NULL;
		rc = oom();
	}
done:
	if (rc < 0 && rc != RH_ENOTFOUND)
		rh_error_prefix(rc, "ssh provider: standby");
	else if (rc == RH_ENOTFOUND && index == 0)
		rh_error_prefix(rc, "ssh provider: standby");
	pthread_mutex_unlock(&p->lock);
	json_decref(hosts);
	free(want);
	free(region);
	free(acc);
	return rc;
}

/* Runs one of the constant scripts above with $0 = dir0 and $1 = arg1
 * (may be NULL), the file list on stdin; *res gets the output. */
static int standby_run(struct rh_ssh *c, const char *script, const char *dir0, const char *arg1,
		       const char *list, const struct rh_provider_call *call,
		       struct rh_ssh_exec_result *res)
{
	struct rh_ssh_exec_opts o = RH_SSH_EXEC_OPTS_INIT;
	const char *argv[] = {"sh", "-c", script, dir0, arg1, NULL};
	double left = call && call->deadline > 0 ? call->deadline - rh_clock_mono() : 0;
	int rc;

	o.stdin_data = list;
	o.stdin_len = strlen(list);
	o.timeout_s = left > 1.0 ? left : left > 0 ? 1.0 : 600.0;
	o.max_output = 16u << 20;
	rc = rh_ssh_exec(c, argv, &o, res);
	if (rc < 0)
		rh_error_prefix(rc, "running sh on %s", rh_ssh_name(c));
	return rc;
}

/* The stderr of a failed command, trimmed, for a message (borrowed). */
static const char *res_err(struct rh_ssh_exec_result *res)
{
	size_t n = res->err ? strlen(res->err) : 0;

	while (n > 0 && (res->err[n - 1] == '\n' || res->err[n - 1] == '\r'))
		res->err[--n] = '\0';
	return n ? res->err : "no message";
}

/* Checks the hash tool's output against the manifest; a file that does not
 * match is removed from the standby (rm_bad, argv with the standby file at
 * [3]) so that the step's retry sends it again. */
static int standby_check(struct rh_ssh *c, const struct rh_model_version *v, const char *out,
			 const char *standby, size_t *verified)
{
	size_t n = v->n_files + 1;
	int rc = 0;

	*verified = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const char *path = i < v->n_files ? v->files[i].path : "manifest.json";
		const char *want = i < v->n_files ? v->files[i].sha256 : v->manifest_sha256;
		const char *line = out;
		bool ok = false;
		size_t plen = strlen(path);

		while (line && *line) {
			const char *end = strchr(line, '\n');
			size_t len = end ? (size_t)(end - line) : strlen(line);

			/* "<64 hex>  <path>" (text mode) or "<64 hex> *<path>" */
			if (len == 66 + plen && (line[65] == ' ' || line[65] == '*') &&
			    memcmp(line + 66, path, plen) == 0) {
				ok = memcmp(line, want, 64) == 0;
				break;
			}
			line = end ? end + 1 : NULL;
		}
		if (ok) {
			(*verified)++;
			continue;
		}
		{
			char bad[PATH_MAX];
			const char *rm[] = {"rm", "-f", "--", bad, NULL};
			int status = -1;

			snprintf(bad, sizeof(bad), "%s/%s", standby, path);
			run(c, rm, NULL, &status, NULL);
			rc =
			    rh_error_set(RH_EVERIFY,
					 "%s in the standby %s on %s does not match the manifest's "
					 "sha256 %.16s: removed it from the standby, so a retry "
					 "of the step (or `rehydra registry sync`) sends it again",
					 path, standby, rh_ssh_name(c), want);
		}
	}
	return rc;
}

static int ssh_standby_use(char **path, struct rh_provider_ctx *p,
			   const struct rh_provider_call *call, const struct rh_model_version *v,
			   const char *standby)
{
	struct ssh_state *st;
	struct rh_ssh *c = NULL;
	struct rh_ssh_exec_result res = {0};
	char dir[PATH_MAX];
	char prefix[PATH_MAX];
	const char *rm_dir[] = {"rm", "-rf", "--", dir, NULL};
	const char *mk_dir[] = {"mkdir", "-p", "-m", "0700", "--", dir, NULL};
	const char *how = "hardlink";
	char *list = NULL;
	size_t len = 0, verified = 0;
	int rc = 0;

	*path = NULL;
	pthread_mutex_lock(&p->lock);
	st = p->priv;
	if (!st || !st->host || !st->workspace) {
		rc = rh_error_set(RH_EINVAL, "the target is not provisioned yet: add a provision "
					     "step to this step's `after`");
		goto done;
	}
	snprintf(prefix, sizeof(prefix), "%s/standby/", hstr(st->host, "workdir", ""));
	if (strncmp(standby, prefix, strlen(prefix)) != 0 ||
	    strchr(standby + strlen(prefix), '/')) {
		rc = rh_error_set(RH_EINVAL, "the standby %s is not under %s", standby, prefix);
		goto done;
	}
	snprintf(dir, sizeof(dir), "%s/model", st->workspace);
	for (size_t i = 0; i <= v->n_files; i++) {
		const char *f = i < v->n_files ? v->files[i].path : "manifest.json";
		size_t n = strlen(f);
		char *grown;

		if (!rh_sink_path_is_safe(f)) {
			rc = rh_error_set(RH_EINVAL, "unsafe manifest path \"%s\"", f);
			goto done;
		}
		grown = realloc(list, len + n + 2);
		if (!grown) {
			rc = oom();
			goto done;
		}
		list = grown;
		memcpy(list + len, f, n);
		len += n;
		list[len++] = '\n';
		list[len] = '\0';
	}
	rc = ssh_open(&c, st, st->host, call);
	if (rc < 0)
		goto done;
	/* A retry starts from an empty model directory. */
	if ((rc = run_ok(c, rm_dir, "emptying the workspace's model directory")) < 0 ||
	    (rc = run_ok(c, mk_dir, "creating the workspace's model directory")) < 0)
		goto done;
	rc = standby_run(c, standby_link_script, standby, dir, list, call, &res);
	if (rc == 0 && res.exit_status != 0) {
		/* No hard links here (another filesystem, a link limit): copy on
		 * the host, still nothing over the network. */
		how = "copy";
		rh_ssh_exec_result_clear(&res);
		if ((rc = run_ok(c, rm_dir, "emptying the workspace's model directory")) < 0 ||
		    (rc = run_ok(c, mk_dir, "creating the workspace's model directory")) < 0)
			goto done;
		rc = standby_run(c, standby_copy_script, standby, dir, list, call, &res);
		if (rc == 0 && res.exit_status != 0)
			rc = rh_error_set(
			    RH_EIO,
			    "cannot give the workspace %s the files of the standby %s "
			    "on %s (status %d): %s",
			    dir, standby, rh_ssh_name(c), res.exit_status, res_err(&res));
	}
	if (rc < 0)
		goto done;
	rh_ssh_exec_result_clear(&res);
	rc = standby_run(c, standby_hash_script, dir, NULL, list, call, &res);
	if (rc == 0 && (res.truncated || res.exit_status != 0))
		rc = rh_error_set(RH_EIO, "hashing %s on %s failed (status %d): %s", dir,
				  rh_ssh_name(c), res.exit_status, res_err(&res));
	if (rc == 0)
		rc = standby_check(c, v, res.out ? res.out : "", standby, &verified);
	if (rc < 0)
		goto done;
	if (call && call->outputs &&
	    (json_object_set_new(call->outputs, "workspace_files", json_string(how)) < 0 ||
	     json_object_set_new(call->outputs, "verified_files",
				 json_integer((json_int_t)verified)) < 0)) {
		rc = oom();
		goto done;
	}
	*path = strdup(dir);
	if (!*path)
		rc = oom();
done:
	if (rc < 0)
		rh_error_prefix(rc, "ssh provider: standby into the workspace");
	pthread_mutex_unlock(&p->lock);
	rh_ssh_exec_result_clear(&res);
	rh_ssh_free(c);
	free(list);
	return rc;
}

/* The script run by `sh -c` on the host. It is a constant: the workspace is
 * $0 and the stack's argv is "$@", so no runbook value is ever parsed as
 * shell text. $$ is the session leader setsid made, so it is also the
 * process group teardown kills. */
static const char ssh_launch_script[] = "cd -- \"$0\" || exit 97; echo $$ >stack.pid || exit 97; "
					"exec \"$@\" </dev/null >stack.stdout 2>stack.stderr";

static bool env_name_ok(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || (k[0] >= '0' && k[0] <= '9'))
		return false;
	return strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* The remote argv: setsid -f sh -c SCRIPT WORKSPACE [env K=V... --] ARGV. */
static int launch_argv(char ***out, size_t *n_out, const char *ws, const json_t *command,
		       const json_t *env)
{
	size_t cap = 6 + json_object_size(env) + 1 + json_array_size(command) + 1;
	char **v = calloc(cap, sizeof(*v));
	size_t n = 0;
	const char *key;
	json_t *val;
	int rc = 0;

	*out = NULL;
	*n_out = 0;
	if (!v)
		return oom();
	v[n++] = strdup("setsid");
	v[n++] = strdup("-f");
	v[n++] = strdup("sh");
	v[n++] = strdup("-c");
	v[n++] = strdup(ssh_launch_script);
	v[n++] = strdup(ws);
	if (json_object_size(env) > 0) {
		v[n++] = strdup("env");
		json_object_foreach((json_t *)env, key, val)
		{
			if (!json_is_string(val) || !env_name_ok(key)) {
				rc = rh_error_set(RH_EINVAL,
						  "stack.env.%s must be a string with a "
						  "name of letters, digits and '_'",
						  key);
				goto done;
			}
			if (asprintf(&v[n], "%s=%s", key, json_string_value(val)) < 0) {
				v[n] = NULL;
				rc = oom();
				goto done;
			}
			n++;
		}
	}
	for (size_t i = 0; i < json_array_size(command); i++) {
		const char *a = json_string_value(json_array_get(command, i));

		if (!a) {
			rc = rh_error_set(RH_EINVAL, "stack.command[%zu] is not a string", i);
			goto done;
		}
		if (i == 0 && json_object_size(env) > 0 && strchr(a, '=')) {
			rc =
			    rh_error_set(RH_EINVAL, "stack.command[0] contains '=': env would take "
						    "it for a variable");
			goto done;
		}
		v[n++] = strdup(a);
	}
	for (size_t i = 0; i < n; i++)
		if (!v[i])
			rc = oom();
done:
	if (rc < 0) {
		strv_free(v, n);
		return rc;
	}
	*out = v;
	*n_out = n;
	return 0;
}

/* The last line of <ws>/stack.stderr, for a stack that died at once. */
static void remote_last_line(struct rh_ssh *c, const char *ws, char *buf, size_t size)
{
	struct rh_ssh_exec_result res = {0};
	char path[PATH_MAX];
	const char *argv[] = {"tail", "-n", "1", "--", path, NULL};
	int status = -1;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "%s/stack.stderr", ws);
	if (run(c, argv, NULL, &status, &res) == 0 && status == 0 && res.out) {
		size_t n = strcspn(res.out, "\r\n");

		snprintf(buf, size, "%.*s", (int)n, res.out);
	}
	rh_ssh_exec_result_clear(&res);
}

/* True while the stack's session (setsid made its pid the session and group
 * id) has a live member on the host. Zombies do not count: an init that is
 * slow to reap them (containers) would otherwise keep a dead stack "alive".
 * `ps --sid` is procps; without it we fall back on kill -0. */
static int group_alive(struct rh_ssh *c, long pgid, bool *alive)
{
	struct rh_ssh_exec_result res = {0};
	char arg[32];
	const char *ps[] = {"ps", "-o", "stat=", "--sid", arg + 1, NULL};
	const char *kill0[] = {"kill", "-0", "--", arg, NULL};
	int status = -1;
	int rc;

	*alive = false;
	snprintf(arg, sizeof(arg), "-%ld", pgid);
	rc = run(c, ps, NULL, &status, &res);
	if (rc == 0 && (status == 0 || status == 1) && !res.err_len) {
		for (const char *l = res.out ? res.out : ""; *l;) {
			l += strspn(l, " \t\n");
			if (*l && *l != 'Z')
				*alive = true;
			l += strcspn(l, "\n");
		}
	} else if (rc == 0) {
		rc = run(c, kill0, NULL, &status, NULL);
		*alive = rc == 0 && status == 0;
	}
	rh_ssh_exec_result_clear(&res);
	return rc;
}

/* Reads <ws>/stack.pid; *pgid = 0 when there is none. */
static int read_pgid(struct rh_ssh *c, const char *ws, long *pgid)
{
	struct rh_ssh_exec_result res = {0};
	char path[PATH_MAX];
	const char *argv[] = {"cat", "--", path, NULL};
	int status = -1;
	char *end = NULL;
	long v;
	int rc;

	*pgid = 0;
	snprintf(path, sizeof(path), "%s/stack.pid", ws);
	rc = run(c, argv, NULL, &status, &res);
	if (rc == 0 && status == 0 && res.out) {
		v = strtol(res.out, &end, 10);
		if (end != res.out && (*end == '\n' || *end == '\0') && v > 1)
			*pgid = v;
	}
	rh_ssh_exec_result_clear(&res);
	return rc;
}

/* TERM to the group, up to `grace` seconds, then KILL. */
static int group_stop(struct rh_ssh *c, long pgid, double grace)
{
	char arg[32];
	const char *term[] = {"kill", "-TERM", "--", arg, NULL};
	const char *kill9[] = {"kill", "-KILL", "--", arg, NULL};
	double until = rh_clock_mono() + grace;
	bool alive = true;
	int status;
	int rc;

	snprintf(arg, sizeof(arg), "-%ld", pgid);
	rc = run(c, term, NULL, &status, NULL);
	while (rc == 0 && alive && rh_clock_mono() < until) {
		rc = group_alive(c, pgid, &alive);
		if (rc == 0 && alive)
			usleep(100 * 1000);
	}
	if (rc == 0 && alive) {
		rc = run(c, kill9, NULL, &status, NULL);
		for (int i = 0; rc == 0 && alive && i < 50; i++) {
			rc = group_alive(c, pgid, &alive);
			if (rc == 0 && alive)
				usleep(100 * 1000);
		}
		if (rc == 0 && alive)
			rc = rh_error_set(RH_ERROR, "process group %ld on %s survives SIGKILL",
					  pgid, rh_ssh_name(c));
	}
	return rc;
}

static int ssh_deploy(struct rh_provider_ctx *p, const struct rh_provider_call *call,
		      const json_t *command, const json_t *env)
{
	struct ssh_state *st;
	struct rh_ssh *c = NULL;
	char **argv = NULL;
	size_t argc = 0;
	bool alive = false;
	int status = -1;
	int rc;

	pthread_mutex_lock(&p->lock);
	st = p->priv;
	if (!st || !st->host || !st->workspace) {
		rc = rh_error_set(RH_EINVAL, "the target is not provisioned yet: add a provision "
					     "step to this step's `after`");
		goto done;
	}
	if (!json_is_array(command) || json_array_size(command) == 0) {
		rc = rh_error_set(RH_EINVAL, "stack.command must be a non-empty array of strings");
		goto done;
	}
	rc = ssh_open(&c, st, st->host, call);
	if (rc < 0)
		goto done;
	if (st->pgid) {
		rc = group_alive(c, st->pgid, &alive);
		if (rc < 0 || alive)
			goto done; /* a retried deploy: the stack is already up */
		st->pgid = 0;
	}
	rc = launch_argv(&argv, &argc, st->workspace, command, env);
	if (rc < 0)
		goto done;
	rc = run(c, (const char *const *)argv, NULL, &status, NULL);
	if (rc < 0)
		goto done;
	if (status != 0) {
		rc = rh_error_set(RH_ERROR,
				  "cannot start the stack on %s (status %d): the host "
				  "needs setsid (util-linux) and sh",
				  rh_ssh_name(c), status);
		goto done;
	}
	/* setsid -f returns before the child has written its pid. */
	for (int i = 0; i < 50 && st->pgid == 0 && rc == 0; i++) {
		rc = read_pgid(c, st->workspace, &st->pgid);
		if (rc == 0 && st->pgid == 0)
			rc = rh_cancel_sleep(call ? call->cancel : NULL, 0.05);
	}
	if (rc < 0)
		goto done;
	if (st->pgid == 0) {
		rc = rh_error_set(RH_ERROR, "the stack on %s wrote no pid file in %s",
				  rh_ssh_name(c), st->workspace);
		goto done;
	}
	rc = rh_cancel_sleep(call ? call->cancel : NULL, SSH_EARLY_EXIT_S);
	if (rc == 0)
		rc = group_alive(c, st->pgid, &alive);
	if (rc < 0)
		goto done;
	if (!alive) {
		char last[512];

		remote_last_line(c, st->workspace, last, sizeof(last));
		st->pgid = 0;
		rc = rh_error_set(RH_ERROR,
				  "stack command %s exited right after starting on %s%s%s "
				  "(see %s/stack.stderr there)",
				  json_string_value(json_array_get(command, 0)), rh_ssh_name(c),
				  last[0] ? ": " : "", last, st->workspace);
		goto done;
	}
	if (call && call->outputs)
		json_object_set_new(call->outputs, "pid", json_integer(st->pgid));
done:
	if (rc < 0)
		rh_error_prefix(rc, "ssh provider: deploy");
	pthread_mutex_unlock(&p->lock);
	if (argv)
		strv_free(argv, argc);
	rh_ssh_free(c);
	return rc;
}

static double grace_of(const struct rh_provider_call *call)
{
	double grace = call && call->grace_s >= 0 ? call->grace_s : SSH_GRACE_DEFAULT_S;
	double left;

	if (call && call->deadline > 0) {
		left = call->deadline - rh_clock_mono() - 2.0;
		if (grace > left)
			grace = left > 0 ? left : 0;
	}
	return grace;
}

/* Copies the tail of the stack's remote logs into the drill directory
 * before the workspace goes: the drill record points at them. */
static void fetch_logs(struct rh_ssh *c, const struct ssh_state *st, const char *drill_dir)
{
	static const char *const names[] = {"stack.stdout", "stack.stderr", NULL};

	for (size_t i = 0; drill_dir && names[i]; i++) {
		struct rh_ssh_exec_result res = {0};
		char src[PATH_MAX];
		char dst[PATH_MAX];
		const char *argv[] = {"tail", "-c", "65536", "--", src, NULL};
		int status = -1;
		int fd;

		snprintf(src, sizeof(src), "%s/%s", st->workspace, names[i]);
		snprintf(dst, sizeof(dst), "%s/%s", drill_dir, names[i]);
		if (run(c, argv, NULL, &status, &res) == 0 && status == 0 && res.out) {
			fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
			if (fd >= 0) {
				if (write(fd, res.out, res.out_len) < 0)
					errno = 0; /* best effort: the logs are a courtesy */
				close(fd);
			}
		}
		rh_ssh_exec_result_clear(&res);
	}
}

static int ssh_teardown(struct rh_provider_ctx *p, const struct rh_provider_call *call)
{
	struct ssh_state *st;
	struct rh_ssh *c = NULL;
	char expect[PATH_MAX];
	char owner[256];
	const char *rm_ws[] = {"rm", "-rf", "--", NULL, NULL};
	const char *rm_lock[] = {"rm", "-rf", "--", NULL, NULL};
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	st = p->priv;
	if (!st || !st->host)
		goto done; /* nothing was reserved: nothing to undo */
	rc = ssh_open(&c, st, st->host, call);
	if (rc < 0)
		goto done;
	if (st->workspace) {
		if (!st->pgid) {
			rc = read_pgid(c, st->workspace, &st->pgid);
			if (rc < 0)
				goto done;
		}
		if (st->pgid) {
			rc = group_stop(c, st->pgid, grace_of(call));
			if (rc < 0)
				goto done;
			st->pgid = 0;
		}
		fetch_logs(c, st, p->drill_dir);
		/* Only ever <workdir>/<drill id>, both checked at provision. */
		snprintf(expect, sizeof(expect), "%s/%s", hstr(st->host, "workdir", ""),
			 p->drill_id);
		if (strcmp(expect, st->workspace) != 0 || !name_is_safe(p->drill_id) ||
		    !workdir_is_safe(hstr(st->host, "workdir", ""))) {
			rc = rh_error_set(RH_EINVAL,
					  "refusing to remove %s: not a workspace under "
					  "%s",
					  st->workspace, hstr(st->host, "workdir", ""));
			goto done;
		}
		rm_ws[3] = st->workspace;
		rc = run_ok(c, rm_ws, "removing the workspace");
		if (rc < 0)
			goto done;
		free(st->workspace);
		st->workspace = NULL;
	}
	if (st->lock) {
		rc = lock_owner(c, st->lock, owner, sizeof(owner));
		if (rc < 0)
			goto done;
		if (strcmp(owner, p->drill_id) == 0 || owner[0] == '\0') {
			rm_lock[3] = st->lock;
			rc = run_ok(c, rm_lock, "releasing the lock");
			if (rc < 0)
				goto done;
		}
	}
	state_forget(st);
done:
	if (rc < 0)
		rh_error_prefix(rc, "ssh provider: teardown");
	pthread_mutex_unlock(&p->lock);
	rh_ssh_free(c);
	return rc;
}

/* Pre-flight: the inventory is valid and has a host for the target, that
 * host answers with a known host key, and its lock is free. Only reads:
 * no lock is taken, no workspace made (a `test -e` on the lock). */
static int ssh_preflight_ctx(struct rh_provider_ctx *p, const struct rh_provider_call *call,
			     json_t *checks, bool plan)
{
	struct ssh_state *st;
	json_t *hosts = NULL;
	char *want = NULL, *region = NULL, *acc = NULL;
	char msg[2048] = "", first_err[1536] = "";
	size_t matched = 0, busy_n = 0;
	const char *ok_host = NULL;
	int rc = 0, conn_rc = 0;

	(void)plan;
	pthread_mutex_lock(&p->lock);
	st = state_get(p);
	if (!st) {
		rc = oom();
		goto done;
	}
	rc = state_settings(st, p, call);
	if (rc == 0)
		rc = inv_load(&hosts, st->inv_path);
	if (rc < 0) {
		rh_provider_check_add(checks, "inventory", false, rh_error_last(),
				      "fix the inventory file, or point target.inventory at the "
				      "right one");
		goto done;
	}
	if ((rc = target_str(&want, p, call, "host")) < 0 ||
	    (rc = target_str(&region, p, call, "region")) < 0 ||
	    (rc = target_str(&acc, p, call, "accelerator")) < 0)
		goto done;
	for (size_t i = 0; i < json_array_size(hosts); i++) {
		const json_t *h = json_array_get(hosts, i);

		if (!(want ? strcmp(hstr(h, "name", ""), want) != 0
			   : !host_matches(h, region, acc)))
			matched++;
	}
	if (!matched) {
		if (want)
			rc = rh_error_set(RH_ENOTFOUND, "inventory %s has no host named \"%s\"",
					  st->inv_path, want);
		else
			rc = rh_error_set(RH_ENOTFOUND,
					  "inventory %s has no host in region \"%s\" with "
					  "accelerator \"%s\"",
					  st->inv_path, region ? region : "(any)",
					  acc ? acc : "(any)");
		rh_provider_check_add(checks, "inventory", false, rh_error_last(),
				      "add a matching host to the inventory, or change "
				      "target.host, target.region or target.accelerator");
		goto done;
	}
	snprintf(msg, sizeof(msg), "%s: %zu host%s match%s the target", st->inv_path, matched,
		 matched == 1 ? "" : "s", matched == 1 ? "es" : "");
	if ((rc = rh_provider_check_add(checks, "inventory", true, msg, NULL)) < 0)
		goto done;
	for (size_t i = 0; i < json_array_size(hosts) && !ok_host; i++) {
		const json_t *h = json_array_get(hosts, i);
		struct rh_ssh *c = NULL;
		char lock[PATH_MAX + 256];
		const char *test[] = {"test", "-e", lock, NULL};
		int status = -1;

		if (want ? strcmp(hstr(h, "name", ""), want) != 0 : !host_matches(h, region, acc))
			continue;
		conn_rc = ssh_open(&c, st, h, call);
		if (conn_rc < 0) {
			if (!first_err[0])
				snprintf(first_err, sizeof(first_err), "%s", rh_error_last());
			continue;
		}
		snprintf(lock, sizeof(lock), "%s/locks/%s", hstr(h, "workdir", ""),
			 hstr(h, "name", ""));
		rc = run(c, test, NULL, &status, NULL);
		rh_ssh_free(c);
		if (rc < 0) {
			if (!first_err[0])
				snprintf(first_err, sizeof(first_err), "host %s: %s",
					 hstr(h, "name", "?"), rh_error_last());
			rc = 0;
			conn_rc = RH_EIO;
			continue;
		}
		if (status == 0)
			busy_n++;
		else
			ok_host = hstr(h, "name", "?");
	}
	if (!ok_host && busy_n == 0) {
		rc = rh_error_set(conn_rc < 0 ? conn_rc : RH_EIO, "%s", first_err);
		rh_provider_check_add(checks, "ssh host", false, first_err,
				      "make the host reachable and its key known (see the "
				      "message), then run the drill again");
		goto done;
	}
	if (!ok_host) {
		rc = rh_error_set(RH_ERROR,
				  "every matching host in %s is reserved by another drill "
				  "(%zu busy)",
				  st->inv_path, busy_n);
		rh_provider_check_add(checks, "ssh host", true,
				      "a matching host answers with a "
				      "known host key",
				      NULL);
		rh_provider_check_add(checks, "ssh lock", false, rh_error_last(),
				      "wait for the other drill, or remove a stale lock "
				      "<workdir>/locks/<host> on the host");
		goto done;
	}
	snprintf(msg, sizeof(msg), "host %s answers with a known host key", ok_host);
	if ((rc = rh_provider_check_add(checks, "ssh host", true, msg, NULL)) < 0)
		goto done;
	snprintf(msg, sizeof(msg), "host %s is not reserved by another drill", ok_host);
	rc = rh_provider_check_add(checks, "ssh lock", true, msg, NULL);
done:
	pthread_mutex_unlock(&p->lock);
	json_decref(hosts);
	free(want);
	free(region);
	free(acc);
	return rc;
}

static void ssh_free(struct rh_provider_ctx *p)
{
	struct ssh_state *st = p->priv;

	if (!st)
		return;
	state_forget(st);
	free(st->inv_path);
	free(st->known_hosts);
	free(st->identity);
	free(st);
	p->priv = NULL;
}

const struct rh_provider_ops rh_provider_ssh = {
    .version = RH_PROVIDER_OPS_VERSION,
    .name = "ssh",
    .summary = "bring-your-own hosts from an inventory file, reached over SSH",
    .target_keys = ssh_target_keys,
    .output_keys = ssh_output_keys,
    .validate = ssh_validate,
    .preflight = NULL,
    .provision = ssh_provision,
    .sink_open = ssh_sink_open,
    .deploy = ssh_deploy,
    .teardown = ssh_teardown,
    .render = NULL,
    .describe = NULL,
    .free = ssh_free,
    .preflight_ctx = ssh_preflight_ctx,
    .standby_open = ssh_standby_open,
    .standby_use = ssh_standby_use,
};
