/*
 * cloud.c - the shared body of the Terraform-backed adapters.
 *
 * A cloud target is a Terraform working directory per drill: rendered from
 * templates/<cloud>/ and the catalog, applied with the driver in
 * terraform.c, read back with `terraform output`, and destroyed at the end
 * with a leak check on the state. Rendering writes every runbook value into
 * terraform.tfvars.json with jansson, so a value is JSON data and never
 * HCL text: a quote, "${" or "%{" in it cannot become Terraform code.
 *
 * Provision holds the context's lock for its whole run: a sink or deploy
 * asked for meanwhile waits for the outputs rather than failing.
 *
 * The same rendering serves `rehydra render` and a drill's provision, so
 * it reads only what both give: the context's runbook values and the
 * orchestrator's expander (never the drill's live scope), with the
 * instance's own bindings for ${target.*} and ${model.path}.
 */
#include "cloud.h"
#include "catalog.h"
#include "clock.h"
#include "error.h"
#include "fsutil.h"
#include "registry.h"
#include "sha256.h"
#include "sink.h"
#include "terraform.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

const char *const rh_cloud_output_keys[] = {"endpoint", "host",	  "port",	 "ssh_host",
					    "ssh_user", "bucket", "instance_id", NULL};

static const char *const cloud_outputs[] = {"endpoint", "ssh_host",    "ssh_user",
					    "bucket",	"instance_id", NULL};

struct cloud_state {
	char *bin;	   /* terraform/tofu found for this drill */
	char *workdir;	   /* <drill dir>/terraform */
	char *sink_url;	   /* s3://bucket/model?endpoint=...: set once applied */
	json_t *placement; /* region, jurisdiction, accelerator, offering */
	bool applied;
	bool apply_started; /* an apply ran (even one that failed): things may exist */
	/* The target's warm standby bucket the instance was rendered to read
	 * (see "warm standby" below), NULL when none was staged at render. */
	char *standby_bucket;
	json_t *storage; /* the region's object_storage entry, for the standby's URL */
};

/* ---- small helpers ------------------------------------------------------ */

const char *rh_cloud_str(const json_t *target, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(target, key));

	return s ? s : dflt;
}

long long rh_cloud_int(const json_t *target, const char *key, long long dflt)
{
	const json_t *v = json_object_get(target, key);

	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v))
		return (long long)json_real_value(v);
	return dflt;
}

void rh_cloud_label(char *buf, size_t size, const char *drill_id, size_t max)
{
	char tmp[256];
	size_t n = 0, len;
	bool dash = true; /* no leading '-' */

	for (const char *c = drill_id; *c && n + 1 < sizeof(tmp); c++) {
		unsigned char ch = (unsigned char)tolower((unsigned char)*c);

		if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) {
			tmp[n++] = (char)ch;
			dash = false;
		} else if (!dash) {
			tmp[n++] = '-';
			dash = true;
		}
	}
	while (n > 0 && tmp[n - 1] == '-')
		n--;
	tmp[n] = '\0';
	if (max >= size)
		max = size - 1;
	len = n;
	if (len <= max) {
		snprintf(buf, size, "%s", n ? tmp : "drill");
		return;
	}
	/* keep the head and the last 6 characters (the drill's random hex) */
	snprintf(buf, size, "%.*s-%s", (int)(max - 7), tmp, tmp + n - 6);
	for (size_t i = max - 7; i > 0 && buf[i - 1] == '-'; i--)
		memmove(buf + i - 1, buf + i, strlen(buf + i) + 1);
}

static int oom(void)
{
	return rh_error_set(RH_ENOMEM, "out of memory in the cloud provider");
}

static int set_new(json_t *obj, const char *key, json_t *val)
{
	return json_object_set_new(obj, key, val) == 0 ? 0 : oom();
}

static struct cloud_state *state_get(struct rh_provider_ctx *p, int *err)
{
	struct cloud_state *st = p->priv;

	*err = 0;
	if (st)
		return st;
	st = calloc(1, sizeof(*st));
	if (!st) {
		*err = oom();
		return NULL;
	}
	p->priv = st;
	return st;
}

void rh_cloud_free(struct rh_provider_ctx *p)
{
	struct cloud_state *st = p->priv;

	if (!st)
		return;
	free(st->bin);
	free(st->workdir);
	free(st->sink_url);
	json_decref(st->placement);
	free(st->standby_bucket);
	json_decref(st->storage);
	free(st);
	p->priv = NULL;
}

/* ---- validation --------------------------------------------------------- */

static bool has_ref(const char *s)
{
	return s && strstr(s, "${") != NULL;
}

static bool is_cidr(const char *s)
{
	unsigned a, b, c, d, m;
	char tail;

	if (sscanf(s, "%u.%u.%u.%u/%u%c", &a, &b, &c, &d, &m, &tail) != 5)
		return false;
	return a < 256 && b < 256 && c < 256 && d < 256 && m <= 32;
}

static int diag(struct rh_diags *d, const char *pointer, const char *key, const char *fmt,
		const char *arg)
{
	char *ptr = key ? rh_pointer_join(pointer, key) : NULL;
	int rc;

	if (key && !ptr)
		return oom();
	rc = rh_diags_add(d, ptr ? ptr : pointer, false, fmt, arg);
	free(ptr);
	return rc < 0 ? rc : RH_EINVAL;
}

int rh_cloud_validate(const struct rh_provider_ops *self, const json_t *target, const char *pointer,
		      struct rh_diags *d)
{
	const struct rh_cloud_def *def = rh_cloud_def_of(self);
	static const char *const strings[] = {
	    "accelerator",   "allowed_cidr", "operator_cidr", "ssh_public_key", "terraform",
	    "instance_type", "image",	     "zone",	      "project_id",	"storage_group_id",
	    "platform",	     "preset",	     "image_family",  "standby_bucket", NULL};
	static const char *const ints[] = {"serving_port", "disk_gb", "accelerator_count", NULL};
	json_t *cat = NULL;
	const json_t *unused;
	const char *region = rh_cloud_str(target, "region", NULL);
	const char *acc = rh_cloud_str(target, "accelerator", NULL);
	int rc = 0, r;

	for (size_t i = 0; def->required_keys[i]; i++)
		if (!json_object_get(target, def->required_keys[i]))
			rc = rh_diags_add(d, pointer, false, "the %s provider needs target.%s",
					  def->ops.name, def->required_keys[i]) < 0
				 ? RH_ENOMEM
				 : RH_EINVAL;
	for (size_t i = 0; strings[i]; i++) {
		const json_t *v = json_object_get(target, strings[i]);

		if (v && (!json_is_string(v) || (json_string_length(v) == 0 &&
						 strcmp(strings[i], "ssh_public_key") != 0)))
			rc = diag(d, pointer, strings[i], "%s must be a non-empty string",
				  strings[i]);
	}
	for (size_t i = 0; ints[i]; i++) {
		const json_t *v = json_object_get(target, ints[i]);
		long long n = rh_cloud_int(target, ints[i], -1);
		bool port = strcmp(ints[i], "serving_port") == 0;
		bool count = strcmp(ints[i], "accelerator_count") == 0;

		if (v && (n < (port || count ? 1 : 20) || n > (port ? 65535 : count ? 64 : 16384)))
			rc = diag(d, pointer, ints[i],
				  port	  ? "%s must be an integer port 1..65535"
				  : count ? "%s must be an integer number of accelerators, 1..64"
					  : "%s must be an integer number of GiB, 20..16384",
				  ints[i]);
	}
	for (int k = 0; k < 2; k++) {
		const char *key = k ? "operator_cidr" : "allowed_cidr";
		const char *v = rh_cloud_str(target, key, NULL);

		if (v && *v && !has_ref(v) && !is_cidr(v))
			rc = diag(d, pointer, key,
				  "expected an IPv4 CIDR such as 203.0.113.0/24, "
				  "got \"%s\"",
				  v);
	}
	if (!region) {
		rc = diag(d, pointer, NULL, "the %s provider needs target.region", def->ops.name);
		goto done;
	}
	if (has_ref(region) || !acc || has_ref(acc))
		goto done; /* checked again at render time, once expanded */
	r = rh_catalog_load(&cat, def->ops.name);
	if (r == 0)
		r = rh_catalog_region(&unused, cat, region);
	if (r == 0)
		r = rh_catalog_accelerator(&unused, cat, acc, region);
	if (r == RH_ENOMEM) {
		rc = r;
	} else if (r < 0) {
		char *ptr = rh_pointer_join(
		    pointer, r == RH_ENOTFOUND && cat &&
				     !json_object_get(json_object_get(cat, "regions"), region)
				 ? "region"
				 : "accelerator");

		rc = rh_diags_add(d, ptr ? ptr : pointer, false, "%s", rh_error_last()) < 0
			 ? RH_ENOMEM
			 : RH_EINVAL;
		free(ptr);
	}
done:
	json_decref(cat);
	return rc == RH_ENOMEM ? rc : 0;
}

/* ---- warm standby: where it lives ----------------------------------------
 *
 * A cloud target keeps the standing copy of its models in one bucket per
 * target (provider, region, runbook), under each model's name. The bucket
 * is made and destroyed only through a Terraform working directory of its
 * own, STATE_DIR/cloud-standby/<key>/ (module/ = templates/<cloud>/
 * versions.tf + templates/<cloud>/standby/, main.tf.json,
 * terraform.tfvars.json, terraform.tfstate), described by standby.json
 * there once it exists. That is the ownership rule: no drill's state holds
 * the bucket, so a drill's destroy and its leak check never reach it, and
 * only `rehydra registry unstage --to RUNBOOK` destroys it. A drill
 * rendered while a standby exists grants its instance read on it
 * (var.standby_bucket); the drill's sink manifest then tells the instance
 * to copy the model from there ("source", templates/common/boot.py). */

/* "s3://BUCKET/PREFIX?endpoint=...&region=...&style=..." (new). */
static int bucket_url(char **out, const json_t *storage, const char *region, const char *bucket,
		      const char *prefix)
{
	if (asprintf(out, "s3://%s/%s?endpoint=%s&region=%s&style=%s", bucket, prefix,
		     rh_cloud_str(storage, "endpoint", ""), region,
		     rh_cloud_str(storage, "style", "virtual")) < 0) {
		*out = NULL;
		return oom();
	}
	return 0;
}

/* The standby's working directory for this target (new). */
static int standby_dir(char **out, const struct rh_cloud_def *def, struct rh_provider_ctx *p,
		       const char *region)
{
	char key[256], label[112];

	*out = NULL;
	if (!p->state_dir)
		return rh_error_set(RH_EINVAL,
				    "%s provider: the warm standby needs a state directory",
				    def->ops.name);
	snprintf(key, sizeof(key), "%s-%s-%s", def->ops.name, region,
		 p->runbook.name ? p->runbook.name : "runbook");
	rh_cloud_label(label, sizeof(label), key, 100);
	if (asprintf(out, "%s/cloud-standby/%s", p->state_dir, label) < 0) {
		*out = NULL;
		return oom();
	}
	return 0;
}

/* *bucket (new): the standby bucket described in dir/standby.json; NULL
 * (returning 0) when no standby was made. */
static int standby_bucket_read(char **bucket, const char *dir)
{
	char path[PATH_MAX];
	json_error_t jerr;
	json_t *doc;
	const char *b;

	*bucket = NULL;
	snprintf(path, sizeof(path), "%s/standby.json", dir);
	if (access(path, F_OK) != 0)
		return 0;
	doc = json_load_file(path, 0, &jerr);
	b = json_string_value(json_object_get(doc, "bucket"));
	if (!b || !*b) {
		json_decref(doc);
		return rh_error_set(RH_EIO,
				    "%s:%d: not a warm standby description (no \"bucket\"): %s; "
				    "rehydra registry unstage --to RUNBOOK destroys what its "
				    "terraform.tfstate holds",
				    path, jerr.line, doc ? "bucket missing" : jerr.text);
	}
	*bucket = strdup(b);
	json_decref(doc);
	return *bucket ? 0 : oom();
}

/* ---- rendering ---------------------------------------------------------- */

/* The bindings the stack sees on the instance (see cloud.h), merged by the
 * orchestrator's expander over its render scope; new, NULL on no memory. */
static json_t *instance_bind(const json_t *target, long long port, const char *bucket)
{
	json_t *t = json_deep_copy(target);

	if (!t || json_object_set_new(t, "host", json_string("0.0.0.0")) < 0 ||
	    json_object_set_new(t, "port", json_integer(port)) < 0 ||
	    json_object_set_new(t, "bucket", json_string(bucket)) < 0) {
		json_decref(t);
		return NULL;
	}
	return json_pack("{s:o, s:{s:s}}", "target", t, "model", "path", RH_CLOUD_MODEL_DIR);
}

static int expand_stack(json_t **cmd, json_t **env, struct rh_provider_ctx *p, const json_t *bind)
{
	const json_t *stack = p->runbook.stack;
	int rc;

	*cmd = NULL;
	*env = NULL;
	if (!json_is_array(json_object_get(stack, "command")))
		return rh_error_set(RH_EINVAL, "the runbook has no stack.command: a cloud target "
					       "starts the stack from cloud-init and needs one");
	rc = rh_provider_expand(p, cmd, json_object_get(stack, "command"), bind);
	if (rc == 0)
		rc = json_object_get(stack, "env")
			 ? rh_provider_expand(p, env, json_object_get(stack, "env"), bind)
			 : ((*env = json_object()) ? 0 : oom());
	if (rc == RH_ENOTFOUND)
		rh_error_prefix(rc, "stack: the instance starts the stack at boot, before rehydra "
				    "learns that value; a cloud stack may use ${target.host} "
				    "(0.0.0.0), ${target.port}, ${target.bucket}, ${model.path}, "
				    "${model.name|version}, vars, env, runbook and drill");
	else if (rc < 0)
		rh_error_prefix(rc, "stack");
	return rc;
}

static int dump_to(int dirfd, const char *where, const char *name, const json_t *obj)
{
	char *text = json_dumps(obj, JSON_SORT_KEYS | JSON_INDENT(2));
	char *withnl = NULL;
	int rc;

	if (!text || asprintf(&withnl, "%s\n", text) < 0) {
		free(text);
		return oom();
	}
	rc = rh_fs_write_atomic_at(dirfd, where, name, withnl, strlen(withnl));
	free(text);
	free(withnl);
	return rc;
}

static int read_all(char **out, size_t *len, const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t cap = 0, n = 0, got;
	int rc = 0;

	*out = NULL;
	if (!f)
		return rh_error_set_errno(RH_EIO, errno, "cannot read %s", path);
	do {
		if (n == cap) {
			char *nb = realloc(buf, cap ? cap * 2 : 8192);

			if (!nb) {
				rc = oom();
				goto done;
			}
			buf = nb;
			cap = cap ? cap * 2 : 8192;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
	} while (got > 0);
	if (ferror(f)) {
		rc = rh_error_set(RH_EIO, "cannot read %s", path);
		goto done;
	}
	*out = buf;
	*len = n;
	buf = NULL;
done:
	free(buf);
	fclose(f);
	return rc;
}

/* Copies the regular, non-dot files of `src` into the directory `mfd`
 * (named `mdir` in messages), each written atomically. */
static int copy_files(const char *src, int mfd, const char *mdir)
{
	DIR *dp = opendir(src);
	struct dirent *de;
	int rc = 0;

	if (!dp)
		return rh_error_set_errno(RH_EIO, errno, "cannot open %s", src);
	while ((de = readdir(dp)) != NULL) {
		char path[PATH_MAX + 256];
		struct stat sb;
		char *data = NULL;
		size_t len = 0;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", src, de->d_name);
		if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
			continue;
		rc = read_all(&data, &len, path);
		if (rc == 0)
			rc = rh_fs_write_atomic_at(mfd, mdir, de->d_name, data, len);
		free(data);
		if (rc < 0)
			break;
	}
	closedir(dp);
	return rc;
}

/* Builds dir/module from templates/common/ (what every cloud's module
 * shares, e.g. the boot script) and then templates/<name>/, whose files win
 * on a name clash. */
static int copy_module(const char *name, const char *dir)
{
	char *tdir = NULL, *mdir = NULL;
	char src[PATH_MAX];
	int mfd = -1, rc;

	rc = rh_data_dir(&tdir, "templates");
	if (rc < 0)
		goto done;
	if (asprintf(&mdir, "%s/module", dir) < 0) {
		mdir = NULL;
		rc = oom();
		goto done;
	}
	rc = rh_fs_mkdir_p(mdir);
	if (rc < 0)
		goto done;
	mfd = open(mdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (mfd < 0) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot open %s", mdir);
		goto done;
	}
	snprintf(src, sizeof(src), "%s/common", tdir);
	rc = copy_files(src, mfd, mdir);
	if (rc < 0)
		goto done;
	snprintf(src, sizeof(src), "%s/%s", tdir, name);
	rc = copy_files(src, mfd, mdir);
done:
	if (mfd >= 0)
		close(mfd);
	free(tdir);
	free(mdir);
	return rc;
}

static json_t *root_module(const struct rh_cloud_def *def, const json_t *cat, const json_t *tfvars,
			   const char *module, const char *const *outputs)
{
	const json_t *tf = json_object_get(cat, "terraform");
	json_t *root, *vars, *mod, *outs, *prov;
	const char *key;
	json_t *val;

	prov = def->provider_block();
	root = json_pack("{s:s, s:{s:s, s:{s:{s:O, s:O}}}, s:{s:o}, s:{}, s:{s:{s:s}}, s:{}}", "//",
			 "generated by rehydra render from templates/ and the catalog; "
			 "values are in terraform.tfvars.json",
			 "terraform", "required_version", ">= 1.5.0", "required_providers",
			 def->tf_provider, "source", json_object_get(tf, "source"), "version",
			 json_object_get(tf, "version"), "provider", def->tf_provider, prov,
			 "variable", "module", module, "source", "./module", "output");
	if (!root)
		return NULL;
	vars = json_object_get(root, "variable");
	mod = json_object_get(json_object_get(root, "module"), module);
	outs = json_object_get(root, "output");
	json_object_foreach((json_t *)tfvars, key, val)
	{
		char *ref = NULL;

		if (asprintf(&ref, "${var.%s}", key) < 0 ||
		    json_object_set_new(vars, key, json_object()) < 0 ||
		    json_object_set_new(mod, key, json_string(ref)) < 0) {
			free(ref);
			json_decref(root);
			return NULL;
		}
		free(ref);
	}
	for (size_t i = 0; outputs[i]; i++) {
		char *ref = NULL;

		if (asprintf(&ref, "${module.%s.%s}", module, outputs[i]) < 0 ||
		    json_object_set_new(outs, outputs[i], json_pack("{s:s}", "value", ref)) < 0) {
			free(ref);
			json_decref(root);
			return NULL;
		}
		free(ref);
	}
	return root;
}

/* The catalog entry for `count` accelerators of class `cls` (new): the
 * class itself when its own size has enough of them, else the smallest of
 * its "sizes" that does, merged over it. So one GPU never gets an 8-GPU
 * machine where a 1-GPU size is listed. */
static int pick_size(json_t **out, const json_t *acc, const char *cls, long long count)
{
	const json_t *sizes = json_object_get(acc, "sizes");
	json_t *e;
	long long have = rh_cloud_int(acc, "gpus", 1), most = have;
	size_t i;

	*out = NULL;
	if (count <= have) {
		*out = json_deep_copy(acc);
		return *out ? 0 : oom();
	}
	json_array_foreach(sizes, i, e)
	{
		long long g = rh_cloud_int(e, "gpus", 0);

		if (g > most)
			most = g;
		if (g >= count) {
			*out = json_deep_copy(acc);
			if (!*out || json_object_update(*out, e) < 0) {
				json_decref(*out);
				*out = NULL;
				return oom();
			}
			return 0;
		}
	}
	return rh_error_set(RH_EINVAL,
			    "the catalog lists no size of %s with %lld accelerators (the largest "
			    "has %lld): lower target.accelerator_count or set target.instance_type",
			    cls, count, most);
}

/* stack.image expanded like the command (*out a new string, "" when the
 * runbook has none: the machine image's own command). */
static int expand_image(json_t **out, struct rh_provider_ctx *p, const json_t *bind)
{
	const json_t *raw = json_object_get(p->runbook.stack, "image");
	int rc;

	*out = NULL;
	if (!raw) {
		*out = json_string("");
		return *out ? 0 : oom();
	}
	rc = rh_provider_expand(p, out, raw, bind);
	if (rc == 0 && !json_is_string(*out)) {
		json_decref(*out);
		*out = NULL;
		rc = rh_error_set(RH_EINVAL, "stack.image must be a string");
	}
	return rc < 0 ? rh_error_prefix(rc, "stack.image") : 0;
}

/* Renders into `dir`. *placement_out (may be NULL) gets a new object
 * describing where the stack lands; *sink_url_out (may be NULL) the sink;
 * *standby_out (may be NULL) the warm standby's bucket the instance may
 * read (new, NULL when none is staged) and *storage_out the region's
 * object storage entry (new). */
static int render_into(const struct rh_cloud_def *def, struct rh_provider_ctx *p, const char *dir,
		       json_t **placement_out, char **sink_url_out, char **standby_out,
		       json_t **storage_out)
{
	char *standby = NULL, *sdir = NULL;
	json_t *bind = NULL, *target = NULL, *cat = NULL, *tfvars = NULL, *root = NULL;
	json_t *cmd = NULL, *env = NULL, *labels = NULL, *acc = NULL, *image = NULL;
	const json_t *region_e, *cls_e;
	const char *region, *cls;
	char label[64], rlabel[64], name[72];
	long long port;
	int dfd = -1, rc;

	if (placement_out)
		*placement_out = NULL;
	if (sink_url_out)
		*sink_url_out = NULL;
	if (standby_out)
		*standby_out = NULL;
	if (storage_out)
		*storage_out = NULL;
	if (!p->runbook.name)
		return rh_error_set(RH_EINVAL, "%s provider: rendering needs the runbook",
				    def->ops.name);
	rc = rh_provider_expand(p, &target, p->target, NULL);
	if (rc < 0) {
		rh_error_prefix(rc, "target");
		goto done;
	}
	rc = rh_catalog_load(&cat, def->ops.name);
	if (rc < 0)
		goto done;
	region = rh_cloud_str(target, "region", "");
	cls = rh_cloud_str(target, "accelerator", "");
	if ((rc = rh_catalog_region(&region_e, cat, region)) < 0 ||
	    (rc = rh_catalog_accelerator(&cls_e, cat, cls, region)) < 0)
		goto done;
	/* a type the operator names is theirs to size */
	rc = pick_size(&acc, cls_e, cls,
		       json_object_get(target, "instance_type") || json_object_get(target, "preset")
			   ? 1
			   : rh_cloud_int(target, "accelerator_count", 1));
	if (rc < 0)
		goto done;

	rh_cloud_label(label, sizeof(label), p->drill_id, 60);
	rh_cloud_label(rlabel, sizeof(rlabel), p->runbook.name, 63);
	snprintf(name, sizeof(name), "rh-%s", label);
	port = rh_cloud_int(target, "serving_port", RH_CLOUD_DEFAULT_PORT);

	bind = instance_bind(target, port, name);
	rc = bind ? expand_stack(&cmd, &env, p, bind) : oom();
	if (rc == 0)
		rc = expand_image(&image, p, bind);
	if (rc < 0)
		goto done;
	labels = json_pack("{s:s, s:s, s:s}", "rehydra-drill", label, "rehydra-runbook", rlabel,
			   "managed-by", "rehydra");
	tfvars =
	    labels ? json_pack(
			 "{s:s, s:s, s:O, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, "
			 "s:s, s:s, s:s, s:s, s:O, s:O}",
			 "drill_id", p->drill_id, "name", name, "labels", labels, "region", region,
			 "accelerator", cls, "disk_gb",
			 (json_int_t)rh_cloud_int(target, "disk_gb", RH_CLOUD_DEFAULT_DISK_GB),
			 "serving_port", (json_int_t)port, "allowed_cidr",
			 rh_cloud_str(target, "allowed_cidr", ""), "operator_cidr",
			 rh_cloud_str(target, "operator_cidr", ""), "ssh_user",
			 rh_cloud_str(cat, "ssh_user", "rehydra"), "ssh_public_key",
			 rh_cloud_str(target, "ssh_public_key", ""), "bucket", name,
			 "artifact_prefix", RH_CLOUD_PREFIX, "s3_endpoint",
			 rh_cloud_str(json_object_get(region_e, "object_storage"), "endpoint", ""),
			 "model_dir", RH_CLOUD_MODEL_DIR, "stack_command", cmd, "stack_env", env)
		   : NULL;
	if (!tfvars || json_object_set(tfvars, "stack_image", image) < 0) {
		rc = oom();
		goto done;
	}
	/* a staged warm standby: the instance may read the model from it (a
	 * render without a state dir, `rehydra render`, knows of none) */
	if (p->state_dir && ((rc = standby_dir(&sdir, def, p, region)) < 0 ||
			     (rc = standby_bucket_read(&standby, sdir)) < 0))
		goto done;
	if (standby && json_object_set_new(tfvars, "standby_bucket", json_string(standby)) < 0) {
		rc = oom();
		goto done;
	}
	rc = def->tfvars(tfvars, target, acc);
	if (rc < 0)
		goto done;
	root = root_module(def, cat, tfvars, "rehydra", cloud_outputs);
	if (!root) {
		rc = oom();
		goto done;
	}
	rc = rh_fs_mkdir_p(dir);
	if (rc == 0)
		rc = copy_module(def->ops.name, dir);
	if (rc < 0)
		goto done;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot open %s", dir);
		goto done;
	}
	if ((rc = dump_to(dfd, dir, "terraform.tfvars.json", tfvars)) < 0 ||
	    (rc = dump_to(dfd, dir, "main.tf.json", root)) < 0)
		goto done;

	if (placement_out) {
		json_t *pl = json_pack(
		    "{s:s, s:s, s:O, s:s, s:I, s:O, s:O}", "provider", def->ops.name, "region",
		    region, "jurisdiction", json_object_get(region_e, "jurisdiction"),
		    "accelerator", cls, "accelerator_count",
		    (json_int_t)rh_cloud_int(target, "accelerator_count", 1), "catalog_as_of",
		    json_object_get(cat, "as_of"), "status", json_object_get(acc, "status"));
		const char *k[] = {"instance_type", "platform", "preset", NULL};

		for (size_t i = 0; pl && k[i]; i++)
			if (json_object_get(tfvars, k[i]) &&
			    json_object_set(pl, k[i], json_object_get(tfvars, k[i])) < 0) {
				json_decref(pl);
				pl = NULL;
			}
		if (!pl) {
			rc = oom();
			goto done;
		}
		*placement_out = pl;
	}
	if (sink_url_out &&
	    (rc = bucket_url(sink_url_out, json_object_get(region_e, "object_storage"), region,
			     name, RH_CLOUD_PREFIX)) < 0)
		goto done;
	if (storage_out) {
		*storage_out = json_deep_copy(json_object_get(region_e, "object_storage"));
		if (!*storage_out)
			*storage_out = json_object();
		if (!*storage_out) {
			rc = oom();
			goto done;
		}
	}
	if (standby_out) {
		*standby_out = standby;
		standby = NULL;
	}
done:
	free(standby);
	free(sdir);
	if (dfd >= 0)
		close(dfd);
	json_decref(bind);
	json_decref(target);
	json_decref(cat);
	json_decref(tfvars);
	json_decref(root);
	json_decref(cmd);
	json_decref(env);
	json_decref(labels);
	json_decref(acc);
	json_decref(image);
	return rc;
}

int rh_cloud_render(struct rh_provider_ctx *p, const char *out_dir)
{
	const struct rh_cloud_def *def = rh_cloud_def_of(p->ops);
	int rc = render_into(def, p, out_dir, NULL, NULL, NULL, NULL);

	return rc < 0 ? rh_error_prefix(rc, "%s provider: render", def->ops.name) : 0;
}

int rh_cloud_describe(const struct rh_provider_ops *self, json_t **out)
{
	return rh_catalog_load(out, self->name);
}

/* ---- running terraform for a drill ------------------------------------- */

/* "<log_prefix>.terraform-<what>" (new). */
static char *log_prefix(const struct rh_provider_call *c, const char *workdir, const char *what)
{
	char *out = NULL;

	if (asprintf(&out, "%s.terraform-%s", c && c->log_prefix ? c->log_prefix : workdir, what) <
	    0)
		return NULL;
	return out;
}

static int tf(struct cloud_state *st, const struct rh_provider_call *c, const char *what,
	      const char *const *args, struct rh_tf_stream *stream, char **log_out)
{
	struct rh_tf_run run = {0};
	char *lp = log_prefix(c, st->workdir, what);
	int rc;

	if (log_out)
		*log_out = NULL;
	if (!lp)
		return oom();
	run.bin = st->bin;
	run.dir = st->workdir;
	run.args = args;
	run.log_prefix = lp;
	run.deadline = c ? c->deadline : 0;
	run.cancel = c ? c->cancel : NULL;
	run.stream = stream;
	run.progress = c ? c->progress : NULL;
	run.progress_user = c ? c->progress_user : NULL;
	rc = rh_tf_run(&run);
	if (log_out)
		*log_out = lp;
	else
		free(lp);
	return rc;
}

static int workdir_path(char **out, struct rh_provider_ctx *p)
{
	int n;

	if (p->drill_dir)
		n = asprintf(out, "%s/terraform", p->drill_dir);
	else if (p->state_dir)
		n = asprintf(out, "%s/terraform/%s", p->state_dir, p->drill_id);
	else
		return rh_error_set(RH_EINVAL, "no drill directory for the terraform state");
	if (n < 0) {
		*out = NULL;
		return oom();
	}
	return 0;
}

static int prepare(struct cloud_state *st, struct rh_provider_ctx *p)
{
	int rc;

	if (!st->workdir && (rc = workdir_path(&st->workdir, p)) < 0)
		return rc;
	if (!st->bin && (rc = rh_tf_find(&st->bin, rh_cloud_str(p->target, "terraform", NULL))) < 0)
		return rc;
	return 0;
}

static json_t *tf_record(const struct cloud_state *st, const struct rh_tf_stream *stream)
{
	json_t *o =
	    json_pack("{s:s, s:O, s:O}", "workdir", st->workdir, "resources", stream->resources,
		      "changes", stream->summary ? stream->summary : json_null());

	if (o && stream->tf_version)
		json_object_set_new(o, "version", json_string(stream->tf_version));
	return o;
}

/* Stream errors, else the process error: into one message (rc kept). */
static int tf_failed(int rc, const struct rh_tf_stream *stream, const char *what)
{
	char errs[2048];
	char first[512];

	snprintf(first, sizeof(first), "%s", rh_error_last());
	if (stream && rh_tf_stream_errors(stream, errs, sizeof(errs)) > 0 && rc == RH_ERROR)
		return rh_error_set(rc, "terraform %s failed: %s (%s)", what, errs, first);
	return rh_error_set(rc, "%s", first);
}

static int read_outputs(json_t **out, const char *log_prefix_path)
{
	char path[PATH_MAX];
	json_error_t jerr;
	json_t *o;

	*out = NULL;
	snprintf(path, sizeof(path), "%s.stdout", log_prefix_path);
	o = json_load_file(path, 0, &jerr);
	if (!json_is_object(o)) {
		json_decref(o);
		return rh_error_set(RH_EIO,
				    "terraform output -json printed no JSON object "
				    "(%s:%d: %s)",
				    path, jerr.line, jerr.text);
	}
	*out = o;
	return 0;
}

static int set_outputs(json_t *dst, const json_t *tfout, long long port)
{
	const char *host;

	for (size_t i = 0; cloud_outputs[i]; i++) {
		const json_t *v =
		    json_object_get(json_object_get(tfout, cloud_outputs[i]), "value");

		if (!json_is_string(v))
			return rh_error_set(RH_EIO,
					    "terraform output '%s' is missing or not a "
					    "string: the module in the working directory "
					    "does not match this rehydra",
					    cloud_outputs[i]);
		if (set_new(dst, cloud_outputs[i], json_deep_copy(v)) < 0)
			return RH_ENOMEM;
	}
	host = json_string_value(json_object_get(dst, "ssh_host"));
	if (set_new(dst, "host", json_string(host)) < 0 ||
	    set_new(dst, "port", json_integer(port)) < 0)
		return RH_ENOMEM;
	return 0;
}

int rh_cloud_provision(struct rh_provider_ctx *p, const struct rh_provider_call *c)
{
	const struct rh_cloud_def *def = rh_cloud_def_of(p->ops);
	static const char *const init_args[] = {"init", "-input=false", "-no-color", NULL};
	static const char *const apply_args[] = {"apply", "-auto-approve", "-input=false", "-json",
						 NULL};
	static const char *const output_args[] = {"output", "-no-color", "-json", NULL};
	struct rh_tf_stream stream;
	struct cloud_state *st;
	json_t *tfout = NULL, *placement = NULL, *rec = NULL;
	char *sink_url = NULL, *out_log = NULL;
	bool stream_ready = false;
	int rc;

	pthread_mutex_lock(&p->lock);
	st = state_get(p, &rc);
	if (!st)
		goto done;
	rc = prepare(st, p);
	if (rc < 0)
		goto done;
	free(st->standby_bucket);
	st->standby_bucket = NULL;
	json_decref(st->storage);
	st->storage = NULL;
	rc = render_into(def, p, st->workdir, &placement, &sink_url, &st->standby_bucket,
			 &st->storage);
	if (rc < 0)
		goto done;
	json_decref(st->placement);
	st->placement = placement;
	placement = NULL;
	free(st->sink_url);
	st->sink_url = sink_url;
	sink_url = NULL;

	rc = tf(st, c, "init", init_args, NULL, NULL);
	if (rc < 0) {
		tf_failed(rc, NULL, "init");
		goto done;
	}
	rc = rh_tf_stream_init(&stream);
	if (rc < 0)
		goto done;
	stream_ready = true;
	st->apply_started = true;
	rc = tf(st, c, "apply", apply_args, &stream, NULL);
	rec = tf_record(st, &stream);
	if (c && c->outputs && rec)
		json_object_set(c->outputs, "terraform", rec);
	if (c && c->outputs && st->placement)
		json_object_set(c->outputs, "placement", st->placement);
	if (rc < 0) {
		tf_failed(rc, &stream, "apply");
		goto done;
	}
	st->applied = true;
	rc = tf(st, c, "output", output_args, NULL, &out_log);
	if (rc == 0)
		rc = read_outputs(&tfout, out_log);
	if (rc < 0)
		goto done;
	rc = set_outputs(p->outputs, tfout,
			 rh_cloud_int(p->target, "serving_port", RH_CLOUD_DEFAULT_PORT));
	if (rc == 0 && c && c->outputs)
		rc = set_outputs(c->outputs, tfout,
				 rh_cloud_int(p->target, "serving_port", RH_CLOUD_DEFAULT_PORT));
done:
	/* the step glue names the provider and the hook */
	pthread_mutex_unlock(&p->lock);
	if (stream_ready)
		rh_tf_stream_release(&stream);
	json_decref(tfout);
	json_decref(placement);
	json_decref(rec);
	free(sink_url);
	free(out_log);
	return rc;
}

int rh_cloud_sink_open(struct rh_sink **out, struct rh_provider_ctx *p,
		       const struct rh_provider_call *c)
{
	const struct rh_cloud_def *def = rh_cloud_def_of(p->ops);
	struct rh_sink_opts opts = RH_SINK_OPTS_INIT;
	struct cloud_state *st;
	char *url = NULL;
	int rc = 0;

	(void)c;
	*out = NULL;
	pthread_mutex_lock(&p->lock);
	st = p->priv;
	if (!st || !st->applied || !st->sink_url) {
		rc = rh_error_set(RH_EINVAL,
				  "%s provider: the target is not provisioned yet: add "
				  "a provision step to this step's `after`",
				  def->ops.name);
		goto done;
	}
	url = strdup(st->sink_url);
	if (!url)
		rc = oom();
done:
	pthread_mutex_unlock(&p->lock);
	if (rc == 0) {
		rc = rh_sink_open(out, url, &opts);
		if (rc < 0)
			rh_error_prefix(rc, "%s provider: the region's bucket", def->ops.name);
	}
	free(url);
	return rc;
}

int rh_cloud_deploy(struct rh_provider_ctx *p, const struct rh_provider_call *c,
		    const json_t *command, const json_t *env)
{
	const struct rh_cloud_def *def = rh_cloud_def_of(p->ops);
	struct cloud_state *st;
	int rc = 0;

	(void)command;
	(void)env;
	pthread_mutex_lock(&p->lock);
	st = p->priv;
	if (!st || !st->applied) {
		rc = rh_error_set(RH_EINVAL,
				  "%s provider: the target is not provisioned yet: add "
				  "a provision step to this step's `after`",
				  def->ops.name);
		goto done;
	}
	/* cloud-init started rehydra-boot at first boot; it starts the stack
	 * as soon as the sync's manifest is in the bucket. Nothing to do but
	 * say so: the probes that follow measure when it answers. */
	if (c && c->outputs)
		rc = set_new(c->outputs, "started_by", json_string("cloud-init")) < 0 ||
			     set_new(c->outputs, "unit", json_string("rehydra-stack")) < 0
			 ? RH_ENOMEM
			 : 0;
done:
	pthread_mutex_unlock(&p->lock);
	return rc;
}

static bool exists(const char *dir, const char *name)
{
	char path[PATH_MAX];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return lstat(path, &sb) == 0;
}

/* `terraform state list` into a new array of addresses. */
static int state_list(json_t **out, struct cloud_state *st, const struct rh_provider_call *c)
{
	static const char *const args[] = {"state", "list", "-no-color", NULL};
	char *lp = NULL;
	char path[PATH_MAX];
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f;
	int rc;

	*out = NULL;
	rc = tf(st, c, "state-list", args, NULL, &lp);
	if (rc < 0)
		goto done;
	snprintf(path, sizeof(path), "%s.stdout", lp);
	f = fopen(path, "re");
	*out = json_array();
	if (!f || !*out) {
		if (f)
			fclose(f);
		rc = f ? oom() : rh_error_set_errno(RH_EIO, errno, "cannot read %s", path);
		goto done;
	}
	while ((n = getline(&line, &cap, f)) >= 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
			line[--n] = '\0';
		if (n > 0 && json_array_append_new(*out, json_string(line)) < 0) {
			rc = oom();
			break;
		}
	}
	free(line);
	fclose(f);
done:
	free(lp);
	return rc;
}

static void shell_word(char *buf, size_t size, const char *s)
{
	bool plain = *s != '\0';

	for (const char *c = s; *c; c++)
		if (!(isalnum((unsigned char)*c) || strchr("/._-+=:,@", *c)))
			plain = false;
	if (plain)
		snprintf(buf, size, "%s", s);
	else
		snprintf(buf, size, "'%s'", s); /* our own paths: no single quotes in them */
}

/* After destroy (destroy_rc its result, its message current): lists the
 * state, records leak_check ("clean", the addresses left, or "unknown")
 * and, unless all is clean, fails loudly with the commands that finish the
 * job by hand. */
static int leak_verdict(struct cloud_state *st, const struct rh_provider_call *c, int destroy_rc)
{
	char why[2048], listed[1024] = "", cmd_bin[PATH_MAX + 2], cmd_dir[PATH_MAX + 16];
	char arg[PATH_MAX + 8];
	json_t *left = NULL, *a;
	size_t i, pos = 0;
	int lrc, rc = 0;

	snprintf(why, sizeof(why), "%s", destroy_rc < 0 ? rh_error_last() : "");
	lrc = destroy_rc == RH_ECANCELLED ? RH_ECANCELLED : state_list(&left, st, c);
	if (c && c->outputs &&
	    set_new(c->outputs, "leak_check",
		    lrc < 0			 ? json_string("unknown")
		    : json_array_size(left) == 0 ? json_string("clean")
						 : json_deep_copy(left)) < 0) {
		rc = RH_ENOMEM;
		goto done;
	}
	if (destroy_rc == 0 && lrc == 0 && json_array_size(left) == 0) {
		st->applied = false;
		goto done;
	}
	json_array_foreach(left, i, a)
	{
		int n = snprintf(listed + pos, sizeof(listed) - pos, "%s%s", i ? ", " : "",
				 json_string_value(a));

		if (n < 0 || (size_t)n >= sizeof(listed) - pos)
			break;
		pos += (size_t)n;
	}
	shell_word(cmd_bin, sizeof(cmd_bin), st->bin);
	snprintf(arg, sizeof(arg), "-chdir=%s", st->workdir);
	shell_word(cmd_dir, sizeof(cmd_dir), arg);
	rc = rh_error_set(destroy_rc < 0 ? destroy_rc : RH_ERROR,
			  "TEARDOWN INCOMPLETE: %s%s%s%s; cloud resources may still be running "
			  "and billing: finish with `%s %s destroy -auto-approve` (same cloud "
			  "credentials in the environment), then check `%s %s state list` is "
			  "empty",
			  why[0] ? why : "destroy finished but the state is not empty",
			  lrc < 0 ? "; the leak check could not read the state" : "",
			  pos ? "; still in state: " : "", listed, cmd_bin, cmd_dir, cmd_bin,
			  cmd_dir);
done:
	json_decref(left);
	return rc;
}

/* The phases the instance's boot script reported to the bucket
 * (templates/common/boot.py: rehydra-boot/status.json), read before the
 * bucket is destroyed, into outputs.boot: {"phases": [{"phase", "at"}...],
 * "os_booted_at"} or {"unknown": why}. Never fails the teardown. */
static void read_boot_status(const struct cloud_state *st, json_t *outputs)
{
	char *body = NULL;
	size_t len = 0;
	json_t *doc = NULL, *boot = NULL, *phases, *e;
	size_t i;

	if (!outputs || !st->sink_url)
		return;
	if (rh_s3_object_get(&body, &len, st->sink_url, RH_CLOUD_BOOT_STATUS, 1u << 20) == 0)
		doc = json_loadb(body, len, 0, NULL);
	phases = json_object_get(doc, "phases");
	if (json_is_array(phases)) {
		boot = json_pack("{s:[]}", "phases");
		json_array_foreach(phases, i, e)
		{
			if (boot && json_is_string(json_object_get(e, "phase")) &&
			    json_is_number(json_object_get(e, "at")))
				json_array_append(json_object_get(boot, "phases"), e);
		}
		if (boot && json_is_number(json_object_get(doc, "os_booted_at")))
			json_object_set(boot, "os_booted_at", json_object_get(doc, "os_booted_at"));
	} else {
		boot = json_pack("{s:s}", "unknown",
				 doc ? "the boot status object has no phases" : rh_error_last());
	}
	if (boot)
		json_object_set_new(outputs, "boot", boot);
	json_decref(doc);
	free(body);
}

int rh_cloud_teardown(struct rh_provider_ctx *p, const struct rh_provider_call *c)
{
	const struct rh_cloud_def *def = rh_cloud_def_of(p->ops);
	static const char *const init_args[] = {"init", "-input=false", "-no-color", NULL};
	static const char *const destroy_args[] = {"destroy", "-auto-approve", "-input=false",
						   "-json", NULL};
	struct rh_tf_stream stream;
	struct cloud_state *st;
	json_t *rec = NULL;
	bool stream_ready = false;
	int rc, destroy_rc;

	pthread_mutex_lock(&p->lock);
	st = state_get(p, &rc);
	if (!st)
		goto done;
	if (!st->workdir && (rc = workdir_path(&st->workdir, p)) < 0)
		goto done;
	/* Nothing can exist unless an apply started (in this process) or left
	 * a state file (in an earlier one): a failed init, or a pre-flight's
	 * init, applied nothing, so there is nothing to destroy and no alarm. */
	if (!exists(st->workdir, "terraform.tfstate") && !st->apply_started) {
		if (c && c->outputs)
			rc = set_new(c->outputs, "leak_check", json_string("clean"));
		goto done;
	}
	rc = prepare(st, p);
	if (rc < 0) {
		rh_error_prefix(rc,
				"TEARDOWN INCOMPLETE: %s resources may be left behind in %s; "
				"once a binary is installed, finish with: terraform -chdir=%s "
				"destroy -auto-approve",
				def->ops.name, st->workdir, st->workdir);
		goto done;
	}
	/* provision may have failed before init finished */
	if (!exists(st->workdir, ".terraform")) {
		destroy_rc = tf(st, c, "init", init_args, NULL, NULL);
		if (destroy_rc < 0) {
			tf_failed(destroy_rc, NULL, "init");
			rc = leak_verdict(st, c, destroy_rc);
			goto done;
		}
	}
	read_boot_status(st, c ? c->outputs : NULL);
	rc = rh_tf_stream_init(&stream);
	if (rc < 0)
		goto done;
	stream_ready = true;
	destroy_rc = tf(st, c, "destroy", destroy_args, &stream, NULL);
	rec = tf_record(st, &stream);
	if (c && c->outputs && rec)
		json_object_set(c->outputs, "terraform", rec);
	if (destroy_rc < 0)
		tf_failed(destroy_rc, &stream, "destroy");
	rc = leak_verdict(st, c, destroy_rc);
done:
	pthread_mutex_unlock(&p->lock);
	if (stream_ready)
		rh_tf_stream_release(&stream);
	json_decref(rec);
	return rc;
}

/* "plan: 3 to add, 0 to change, 0 to destroy" from the plan's stream. */
static void plan_summary(char *buf, size_t size, const struct rh_tf_stream *stream)
{
	const json_t *sum = stream->summary;

	if (!json_is_object(sum)) {
		snprintf(buf, size, "terraform plan finished (no change summary in its output)");
		return;
	}
	snprintf(buf, size, "terraform plan: %lld to add, %lld to change, %lld to destroy",
		 (long long)json_integer_value(json_object_get(sum, "add")),
		 (long long)json_integer_value(json_object_get(sum, "change")),
		 (long long)json_integer_value(json_object_get(sum, "remove")));
}

/* Provenance of the tools, for the record (into c->outputs, which the
 * pre-flight merges into the record's "provenance"): the terraform/tofu
 * binary and version and the provider versions init selected (`version
 * -json` in the working dir reads them from .terraform.lock.hcl, whose
 * sha256 is kept too), and the date of the catalog the target was checked
 * against. Best effort: what cannot be read is left out, never a failure. */
static int tool_provenance(const struct rh_cloud_def *def, struct cloud_state *st,
			   const struct rh_provider_call *c)
{
	static const char *const args[] = {"version", "-json", NULL};
	char path[PATH_MAX + 32];
	char hex[65];
	uint64_t size = 0;
	char *lp = NULL;
	json_t *v = NULL, *cat = NULL, *tfo = json_object();
	json_t *sel;
	int rc = 0;

	if (!tfo)
		return oom();
	if (json_object_set_new(tfo, "binary", json_string(st->bin)) < 0)
		rc = oom();
	if (rc == 0 && tf(st, c, "version", args, NULL, &lp) == 0 && lp) {
		snprintf(path, sizeof(path), "%s.stdout", lp);
		v = json_load_file(path, 0, NULL);
	}
	if (rc == 0 && json_is_string(json_object_get(v, "terraform_version")) &&
	    json_object_set(tfo, "version", json_object_get(v, "terraform_version")) < 0)
		rc = oom();
	sel = json_object_get(v, "provider_selections");
	if (rc == 0 && json_is_object(sel) && json_object_set(tfo, "providers", sel) < 0)
		rc = oom();
	snprintf(path, sizeof(path), "%s/.terraform.lock.hcl", st->workdir);
	if (rc == 0 && rh_sha256_file_hex(hex, &size, path) == 0 &&
	    json_object_set_new(tfo, "lock_file_sha256", json_string(hex)) < 0)
		rc = oom();
	if (rc == 0 && json_object_set(c->outputs, "terraform", tfo) < 0)
		rc = oom();
	if (rc == 0 && rh_catalog_load(&cat, def->ops.name) == 0 &&
	    json_is_string(json_object_get(cat, "as_of")) &&
	    json_object_set_new(c->outputs, "catalog",
				json_pack("{s:s, s:O}", "provider", def->ops.name, "as_of",
					  json_object_get(cat, "as_of"))) < 0)
		rc = oom();
	rh_error_clear();
	json_decref(v);
	json_decref(cat);
	json_decref(tfo);
	free(lp);
	return rc;
}

int rh_cloud_preflight_ctx(struct rh_provider_ctx *p, const struct rh_provider_call *c,
			   json_t *checks, bool plan)
{
	const struct rh_cloud_def *def = rh_cloud_def_of(p->ops);
	static const char *const init_args[] = {"init", "-input=false", "-no-color", NULL};
	static const char *const plan_args[] = {"plan", "-input=false", "-lock=false", "-json",
						NULL};
	struct rh_tf_stream stream;
	struct cloud_state *st;
	json_t *placement = NULL;
	char *sink_url = NULL;
	char msg[1024];
	bool stream_ready = false;
	int rc;

	pthread_mutex_lock(&p->lock);
	st = state_get(p, &rc);
	if (!st)
		goto done;
	rc = prepare(st, p);
	if (rc < 0) {
		rh_provider_check_add(checks, "terraform found", false, rh_error_last(),
				      "install terraform or tofu, or set target.terraform or "
				      "REHYDRA_TERRAFORM to its path");
		goto done;
	}
	snprintf(msg, sizeof(msg), "%s", st->bin);
	if ((rc = rh_provider_check_add(checks, "terraform found", true, msg, NULL)) < 0)
		goto done;
	rc = render_into(def, p, st->workdir, &placement, &sink_url, NULL, NULL);
	if (rc < 0) {
		rh_provider_check_add(checks, "terraform init", false, rh_error_last(),
				      "fix the target or the runbook's stack");
		goto done;
	}
	rc = tf(st, c, "init", init_args, NULL, NULL);
	if (rc < 0) {
		rh_provider_check_add(checks, "terraform init", false, rh_error_last(),
				      "make the providers reachable (a mirror in the terraform "
				      "CLI config, or network to the provider registry), then "
				      "run the drill again");
		goto done;
	}
	snprintf(msg, sizeof(msg), "init succeeded in %s", st->workdir);
	if ((rc = rh_provider_check_add(checks, "terraform init", true, msg, NULL)) < 0)
		goto done;
	if (c && c->outputs && (rc = tool_provenance(def, st, c)) < 0)
		goto done;
	if (!plan)
		goto done;
	rc = rh_tf_stream_init(&stream);
	if (rc < 0)
		goto done;
	stream_ready = true;
	rc = tf(st, c, "plan", plan_args, &stream, NULL);
	if (rc < 0) {
		tf_failed(rc, &stream, "plan");
		rh_provider_check_add(checks, "terraform plan", false, rh_error_last(),
				      "fix what terraform reports, then run the drill again");
		goto done;
	}
	plan_summary(msg, sizeof(msg), &stream);
	rc = rh_provider_check_add(checks, "terraform plan", true, msg, NULL);
done:
	pthread_mutex_unlock(&p->lock);
	if (stream_ready)
		rh_tf_stream_release(&stream);
	json_decref(placement);
	free(sink_url);
	return rc;
}

int rh_cloud_preflight(const struct rh_provider_ops *self, const json_t *target)
{
	char *bin = NULL;
	int rc = rh_tf_find(&bin, rh_cloud_str(target, "terraform", NULL));

	(void)self;
	free(bin);
	return rc;
}

/* ---- warm standby: the hooks ---------------------------------------------- */

static const char *const standby_outputs[] = {"bucket", NULL};

/* Copies one regular file into the directory `mfd` (named `mdir`). */
static int copy_one(const char *src, int mfd, const char *mdir, const char *name)
{
	char *data = NULL;
	size_t len = 0;
	int rc = read_all(&data, &len, src);

	if (rc == 0)
		rc = rh_fs_write_atomic_at(mfd, mdir, name, data, len);
	free(data);
	return rc;
}

/* Writes the standby's working directory `dir`: module/ from
 * templates/<cloud>/versions.tf and templates/<cloud>/standby/, the root
 * module and its values. The bucket's name is kept from an earlier
 * attempt's terraform.tfvars.json, so a retry after a crash applies to the
 * same bucket; else target.standby_bucket, else rh-sb-<runbook>-<random>
 * (bucket names are global: the random part keeps two teams' runbooks of
 * the same name apart). *name_out is new. */
static int standby_render(const struct rh_cloud_def *def, struct rh_provider_ctx *p,
			  const char *dir, const json_t *target, const json_t *cat,
			  const char *region, char **name_out)
{
	char *tdir = NULL, *mdir = NULL;
	char path[PATH_MAX], name[64], rlabel[48], key[112], hex[17];
	json_t *tfvars = NULL, *root = NULL, *prev = NULL;
	const char *given = rh_cloud_str(target, "standby_bucket", NULL);
	int mfd = -1, dfd = -1, rc;

	*name_out = NULL;
	snprintf(path, sizeof(path), "%s/terraform.tfvars.json", dir);
	prev = json_load_file(path, 0, NULL);
	rh_cloud_label(rlabel, sizeof(rlabel), p->runbook.name ? p->runbook.name : "runbook", 40);
	snprintf(key, sizeof(key), "%s", strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir);
	if (json_is_string(json_object_get(prev, "name"))) {
		snprintf(name, sizeof(name), "%s",
			 json_string_value(json_object_get(prev, "name")));
	} else if (given) {
		snprintf(name, sizeof(name), "%s", given);
	} else {
		rh_fs_rand_hex(hex);
		snprintf(name, sizeof(name), "rh-sb-%s-%.8s", rlabel, hex);
	}
	tfvars = json_pack("{s:s, s:{s:s, s:s, s:s}, s:s}", "name", name, "labels", "managed-by",
			   "rehydra", "rehydra-standby", key, "rehydra-runbook", rlabel, "region",
			   region);
	if (!tfvars) {
		rc = oom();
		goto done;
	}
	for (size_t i = 0; def->standby_keys && def->standby_keys[i]; i++)
		if (json_object_set_new(
			tfvars, def->standby_keys[i],
			json_string(rh_cloud_str(target, def->standby_keys[i], ""))) < 0) {
			rc = oom();
			goto done;
		}
	root = root_module(def, cat, tfvars, "standby", standby_outputs);
	if (!root) {
		rc = oom();
		goto done;
	}
	if ((rc = rh_data_dir(&tdir, "templates")) < 0)
		goto done;
	if (asprintf(&mdir, "%s/module", dir) < 0) {
		mdir = NULL;
		rc = oom();
		goto done;
	}
	if ((rc = rh_fs_mkdir_p(mdir)) < 0)
		goto done;
	mfd = open(mdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (mfd < 0 || dfd < 0) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot open %s", mfd < 0 ? mdir : dir);
		goto done;
	}
	snprintf(path, sizeof(path), "%s/%s/versions.tf", tdir, def->ops.name);
	if ((rc = copy_one(path, mfd, mdir, "versions.tf")) < 0)
		goto done;
	snprintf(path, sizeof(path), "%s/%s/standby", tdir, def->ops.name);
	if ((rc = copy_files(path, mfd, mdir)) < 0 ||
	    (rc = dump_to(dfd, dir, "terraform.tfvars.json", tfvars)) < 0 ||
	    (rc = dump_to(dfd, dir, "main.tf.json", root)) < 0)
		goto done;
	*name_out = strdup(name);
	rc = *name_out ? 0 : oom();
done:
	if (mfd >= 0)
		close(mfd);
	if (dfd >= 0)
		close(dfd);
	json_decref(tfvars);
	json_decref(root);
	json_decref(prev);
	free(tdir);
	free(mdir);
	return rc;
}

/* A call for the standby's own terraform runs: logs under its directory
 * ("<dir>/standby.terraform-apply.stderr"), the caller's deadline and
 * cancel. */
static struct rh_provider_call standby_call(const struct rh_provider_call *c, const char *lp)
{
	struct rh_provider_call lc = RH_PROVIDER_CALL_INIT;

	if (c) {
		lc.deadline = c->deadline;
		lc.cancel = c->cancel;
		lc.progress = c->progress;
		lc.progress_user = c->progress_user;
		lc.grace_s = c->grace_s;
	}
	lc.log_prefix = lp;
	return lc;
}

/* Creates (or completes) the standby bucket in `dir`: render, init,
 * apply, output, then standby.json, last, so its presence means the bucket
 * exists. *bucket is new. */
static int standby_create(const struct rh_cloud_def *def, struct rh_provider_ctx *p,
			  const struct rh_provider_call *c, struct cloud_state *st, const char *dir,
			  const json_t *target, const json_t *cat, const char *region,
			  char **bucket)
{
	static const char *const init_args[] = {"init", "-input=false", "-no-color", NULL};
	static const char *const apply_args[] = {"apply", "-auto-approve", "-input=false", "-json",
						 NULL};
	static const char *const output_args[] = {"output", "-no-color", "-json", NULL};
	struct cloud_state tst = {0};
	struct rh_provider_call lc;
	struct rh_tf_stream stream;
	json_t *tfout = NULL, *doc = NULL;
	char *name = NULL, *lp = NULL, *out_log = NULL, *text = NULL, *withnl = NULL;
	char stamp[32];
	const char *made;
	bool stream_ready = false;
	int dfd = -1, rc;

	*bucket = NULL;
	if ((rc = rh_fs_mkdir_p(dir)) < 0 ||
	    (rc = standby_render(def, p, dir, target, cat, region, &name)) < 0)
		goto done;
	if (asprintf(&lp, "%s/standby", dir) < 0) {
		lp = NULL;
		rc = oom();
		goto done;
	}
	lc = standby_call(c, lp);
	tst.bin = st->bin;
	tst.workdir = (char *)dir;
	if ((rc = tf(&tst, &lc, "init", init_args, NULL, NULL)) < 0) {
		tf_failed(rc, NULL, "init");
		goto done;
	}
	if ((rc = rh_tf_stream_init(&stream)) < 0)
		goto done;
	stream_ready = true;
	if ((rc = tf(&tst, &lc, "apply", apply_args, &stream, NULL)) < 0) {
		tf_failed(rc, &stream, "apply");
		goto done;
	}
	if ((rc = tf(&tst, &lc, "output", output_args, NULL, &out_log)) < 0 ||
	    (rc = read_outputs(&tfout, out_log)) < 0)
		goto done;
	made = json_string_value(json_object_get(json_object_get(tfout, "bucket"), "value"));
	if (!made || !*made) {
		rc = rh_error_set(RH_EIO,
				  "terraform output 'bucket' is missing in %s: the module "
				  "there does not match this rehydra",
				  dir);
		goto done;
	}
	{
		struct timespec now = rh_clock_wall();

		rh_clock_rfc3339(stamp, sizeof(stamp), &now);
	}
	doc = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s}", "rehydra_standby", 1, "provider",
			def->ops.name, "region", region, "bucket", made, "runbook",
			p->runbook.name ? p->runbook.name : "", "created_at", stamp);
	text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	if (!text || asprintf(&withnl, "%s\n", text) < 0) {
		withnl = NULL;
		rc = oom();
		goto done;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot open %s", dir);
		goto done;
	}
	if ((rc = rh_fs_write_atomic_at(dfd, dir, "standby.json", withnl, strlen(withnl))) < 0)
		goto done;
	*bucket = strdup(made);
	rc = *bucket ? 0 : oom();
done:
	if (rc < 0)
		rh_error_prefix(rc,
				"%s provider: creating the warm standby bucket %s (its own "
				"Terraform state: %s; logs: %s.terraform-*)",
				def->ops.name, name ? name : "", dir, lp ? lp : dir);
	if (dfd >= 0)
		close(dfd);
	if (stream_ready)
		rh_tf_stream_release(&stream);
	json_decref(tfout);
	json_decref(doc);
	free(name);
	free(lp);
	free(out_log);
	free(text);
	free(withnl);
	return rc;
}

int rh_cloud_standby_open(struct rh_sink **out, char **where, struct rh_provider_ctx *p,
			  const struct rh_provider_call *c, const char *model, size_t index)
{
	const struct rh_cloud_def *def = rh_cloud_def_of(p->ops);
	struct rh_sink_opts opts = RH_SINK_OPTS_INIT;
	const json_t *target = rh_provider_target(p, c);
	const json_t *region_e = NULL;
	struct cloud_state *st;
	json_t *cat = NULL;
	char *url = NULL, *dir = NULL, *bucket = NULL;
	const char *region = "";
	int rc;

	*out = NULL;
	if (where)
		*where = NULL;
	if (index > 0)
		return rh_error_set(RH_ENOTFOUND, "a cloud target has one standby bucket");
	if ((rc = rh_provider_standby_name_check(model)) < 0)
		return rh_error_prefix(rc, "%s provider: standby", def->ops.name);
	pthread_mutex_lock(&p->lock);
	st = state_get(p, &rc);
	if (!st)
		goto done;
	if (st->apply_started) {
		/* in a drill: the standby the instance was rendered to read */
		region = rh_cloud_str(st->placement, "region", "");
		if (!st->standby_bucket) {
			rc = rh_error_set(
			    RH_ENOTFOUND,
			    "no warm standby was staged for this target when it was "
			    "provisioned, so the drill syncs into its own bucket; "
			    "pre-stage one with `rehydra registry sync %s@VERSION --to "
			    "RUNBOOK`",
			    model);
			goto done;
		}
		rc = bucket_url(&url, st->storage, region, st->standby_bucket, model);
		if (rc == 0 && !(bucket = strdup(st->standby_bucket)))
			rc = oom();
		goto done;
	}
	/* pre-staging: make the bucket if this target has none yet */
	region = rh_cloud_str(target, "region", "");
	if ((rc = rh_catalog_load(&cat, def->ops.name)) < 0 ||
	    (rc = rh_catalog_region(&region_e, cat, region)) < 0 ||
	    (rc = standby_dir(&dir, def, p, region)) < 0 ||
	    (rc = standby_bucket_read(&bucket, dir)) < 0)
		goto done;
	if (!bucket) {
		if (!st->bin &&
		    (rc = rh_tf_find(&st->bin, rh_cloud_str(target, "terraform", NULL))) < 0)
			goto done;
		if ((rc = standby_create(def, p, c, st, dir, target, cat, region, &bucket)) < 0)
			goto done;
	}
	rc = bucket_url(&url, json_object_get(region_e, "object_storage"), region, bucket, model);
done:
	if (rc == 0 && where &&
	    asprintf(where, "bucket %s (%s %s)", bucket, def->ops.name, region) < 0) {
		*where = NULL;
		rc = oom();
	}
	pthread_mutex_unlock(&p->lock);
	if (rc == 0) {
		rc = rh_sink_open(out, url, &opts);
		if (rc < 0)
			rh_error_prefix(rc, "%s provider: the standby bucket %s", def->ops.name,
					bucket);
	}
	if (rc < 0 && where) {
		free(*where);
		*where = NULL;
	}
	json_decref(cat);
	free(url);
	free(dir);
	free(bucket);
	return rc;
}

/* The drill's sink manifest, pointing the instance at the standby: the
 * standby's own entries for exactly the files of `v` (so files of another
 * version it also holds are not copied) and "source". */
int rh_cloud_standby_use(char **path, struct rh_provider_ctx *p, const struct rh_provider_call *c,
			 const struct rh_model_version *v, const char *standby)
{
	const struct rh_cloud_def *def = rh_cloud_def_of(p->ops);
	struct cloud_state *st;
	char *sink_url = NULL, *standby_url = NULL, *bucket = NULL, *body = NULL, *text = NULL;
	char key[PATH_MAX];
	json_t *doc = NULL, *have, *files = NULL, *marker = NULL;
	size_t len = 0, verified = 0;
	int rc = 0;

	(void)standby;
	*path = NULL;
	pthread_mutex_lock(&p->lock);
	st = p->priv;
	if (!st || !st->applied || !st->sink_url || !st->standby_bucket) {
		rc = rh_error_set(RH_EINVAL, "the target is not provisioned with a standby: add a "
					     "provision step to this step's `after`");
	} else if (!(sink_url = strdup(st->sink_url)) || !(bucket = strdup(st->standby_bucket))) {
		rc = oom();
	} else {
		rc = bucket_url(&standby_url, st->storage,
				rh_cloud_str(st->placement, "region", ""), bucket, v->name);
	}
	pthread_mutex_unlock(&p->lock);
	if (rc < 0)
		goto done;
	snprintf(key, sizeof(key), "%s/%s", v->name, RH_SINK_MANIFEST_NAME);
	if ((rc = rh_s3_object_get(&body, &len, standby_url, key, 64u << 20)) < 0)
		goto done;
	doc = json_loadb(body, len, 0, NULL);
	have = json_object_get(doc, "files");
	files = json_object();
	if (!files) {
		rc = oom();
		goto done;
	}
	for (size_t i = 0; i <= v->n_files; i++) {
		const char *fp = i < v->n_files ? v->files[i].path : "manifest.json";
		const char *sha = i < v->n_files ? v->files[i].sha256 : v->manifest_sha256;
		uint64_t size = i < v->n_files ? v->files[i].size : v->manifest_len;
		const json_t *e = json_object_get(have, fp);

		if (!json_is_object(e) || !json_is_string(json_object_get(e, "sha256")) ||
		    strcmp(json_string_value(json_object_get(e, "sha256")), sha) != 0 ||
		    json_integer_value(json_object_get(e, "size")) != (json_int_t)size) {
			rc =
			    rh_error_set(RH_EIO,
					 "the standby bucket %s does not list %s/%s with the "
					 "manifest's size and sha256 %.12s...: run the drill again "
					 "(its sync repairs the standby)",
					 bucket, v->name, fp, sha);
			goto done;
		}
		if (json_object_set_new(
			files, fp,
			json_pack("{s:I, s:s}", "size", (json_int_t)size, "sha256", sha)) < 0) {
			rc = oom();
			goto done;
		}
		verified++;
	}
	marker = json_pack("{s:i, s:O, s:{s:s, s:s}}", "rehydra_sink", 1, "files", files, "source",
			   "bucket", bucket, "prefix", v->name);
	text = marker ? json_dumps(marker, JSON_SORT_KEYS) : NULL;
	if (!text) {
		rc = oom();
		goto done;
	}
	snprintf(key, sizeof(key), "%s/%s", RH_CLOUD_PREFIX, RH_SINK_MANIFEST_NAME);
	if ((rc = rh_s3_object_put(sink_url, key, text, strlen(text), "application/json")) < 0)
		goto done;
	if (c && c->outputs &&
	    (set_new(c->outputs, "workspace_files", json_string("copy")) < 0 ||
	     set_new(c->outputs, "verified_files", json_integer((json_int_t)verified)) < 0 ||
	     set_new(c->outputs, "verified_by",
		     json_string("the standby's sink manifest; the instance hashes every "
				 "file it copies")) < 0)) {
		rc = RH_ENOMEM;
		goto done;
	}
	*path = strdup(RH_CLOUD_MODEL_DIR);
	rc = *path ? 0 : oom();
done:
	if (rc < 0)
		rh_error_prefix(rc, "%s provider: pointing the instance at the standby",
				def->ops.name);
	json_decref(doc);
	json_decref(files);
	json_decref(marker);
	free(sink_url);
	free(standby_url);
	free(bucket);
	free(body);
	free(text);
	return rc;
}

int rh_cloud_standby_remove(struct rh_provider_ctx *p, const struct rh_provider_call *c,
			    char **where)
{
	const struct rh_cloud_def *def = rh_cloud_def_of(p->ops);
	static const char *const init_args[] = {"init", "-input=false", "-no-color", NULL};
	static const char *const destroy_args[] = {"destroy", "-auto-approve", "-input=false",
						   "-json", NULL};
	const json_t *target = rh_provider_target(p, c);
	const char *region = rh_cloud_str(target, "region", "");
	struct cloud_state tst = {0};
	struct rh_provider_call lc;
	struct rh_tf_stream stream;
	struct cloud_state *st;
	char *dir = NULL, *bucket = NULL, *lp = NULL;
	char path[PATH_MAX];
	bool stream_ready = false;
	int rc;

	*where = NULL;
	pthread_mutex_lock(&p->lock);
	st = state_get(p, &rc);
	if (!st || (rc = standby_dir(&dir, def, p, region)) < 0)
		goto done;
	snprintf(path, sizeof(path), "%s/main.tf.json", dir);
	if (access(path, F_OK) != 0) {
		rc = rh_error_set(RH_ENOTFOUND, "%s provider: no warm standby for this target (%s)",
				  def->ops.name, dir);
		goto done;
	}
	rh_error_clear();
	standby_bucket_read(&bucket, dir); /* for the message only */
	if (!st->bin && (rc = rh_tf_find(&st->bin, rh_cloud_str(target, "terraform", NULL))) < 0)
		goto done;
	if (asprintf(&lp, "%s/standby", dir) < 0) {
		lp = NULL;
		rc = oom();
		goto done;
	}
	lc = standby_call(c, lp);
	tst.bin = st->bin;
	tst.workdir = dir;
	snprintf(path, sizeof(path), "%s/.terraform", dir);
	if (access(path, F_OK) != 0 && (rc = tf(&tst, &lc, "init", init_args, NULL, NULL)) < 0) {
		tf_failed(rc, NULL, "init");
		goto done;
	}
	if ((rc = rh_tf_stream_init(&stream)) < 0)
		goto done;
	stream_ready = true;
	if ((rc = tf(&tst, &lc, "destroy", destroy_args, &stream, NULL)) < 0) {
		tf_failed(rc, &stream, "destroy");
		goto done;
	}
	/* the state is empty: nothing of the standby is left to own */
	if ((rc = rh_fs_rm_rf(dir)) < 0)
		goto done;
	if (asprintf(where, "bucket %s (%s %s)", bucket ? bucket : "(never completed)",
		     def->ops.name, region) < 0) {
		*where = NULL;
		rc = oom();
	}
done:
	if (rc < 0 && rc != RH_ENOTFOUND)
		rh_error_prefix(rc,
				"%s provider: destroying the warm standby %s (state kept in %s; "
				"logs: %s.terraform-*)",
				def->ops.name, bucket ? bucket : "", dir ? dir : "", lp ? lp : "");
	pthread_mutex_unlock(&p->lock);
	if (stream_ready)
		rh_tf_stream_release(&stream);
	free(dir);
	free(bucket);
	free(lp);
	return rc;
}
