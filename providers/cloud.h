/*
 * cloud.h - what the Terraform-backed adapters (aws, alibaba, nebius) share.
 *
 * The three clouds differ in their Terraform module (templates/<name>/),
 * their catalog (providers/catalog/<name>.json), a few target keys and the
 * way those keys become module inputs. Everything else -- rendering the
 * working directory, running terraform, reading its outputs, the sink in
 * the region's bucket, teardown with a leak check -- is done once, here,
 * driven by a small const description per cloud.
 *
 * The rendered working directory (<drill dir>/terraform in a drill, --out
 * for `rehydra render`):
 *   module/            templates/<name>/ copied byte for byte
 *   main.tf.json       root module: pinned provider, module call, outputs;
 *                      only constant expressions, never a runbook value
 *   terraform.tfvars.json  every value, as JSON data
 * Both JSON files are written with sorted keys and no timestamps, so the
 * same inputs give byte-identical files.
 *
 * The stack on the instance. cloud-init starts it at boot, before rehydra
 * has learnt anything about the instance, so stack.command and stack.env
 * are expanded at render time against: ${target.host} = 0.0.0.0 (the bind
 * address), ${target.port} = serving_port, ${target.bucket},
 * ${model.path} = /opt/rehydra/model (where the instance copies the
 * artifacts), ${model.name|version|registry}, vars, env, runbook, drill.
 * Anything else (model.sha256, steps.*) is an error that says so. The
 * expansion is the orchestrator's (ctx->expander): this file only binds
 * the target and model values above over its render scope.
 *
 * Shape. Each cloud is a const struct rh_cloud_def whose first member is
 * its struct rh_provider_ops, filled by RH_CLOUD_OPS with the generic hooks
 * below; rh_providers[] lists &rh_cloud_<name>.ops. A generic hook finds
 * its definition from the ops it was reached through (ctx->ops or self),
 * as libgit2's backends find their own state: no per-cloud forwarding.
 */
#ifndef RH_CLOUD_H
#define RH_CLOUD_H

#include "diag.h"
#include "provider.h"

#include <jansson.h>

struct rh_cloud_def {
	struct rh_provider_ops ops;	  /* first: rh_cloud_def_of() casts back */
	const char *tf_provider;	  /* Terraform local name: "aws", "alicloud", "nebius" */
	const char *const *required_keys; /* target keys a runbook must set */
	/* Adds the cloud's own module inputs to `vars` from the (expanded)
	 * target, the catalog's accelerator and region entries. */
	int (*tfvars)(json_t *vars, const json_t *target, const json_t *acc);
	/* The root module's provider block (new), constant expressions only. */
	json_t *(*provider_block)(void);
	/* Target keys the standby module (templates/<name>/standby/) takes
	 * besides name, labels and region; NULL: none. */
	const char *const *standby_keys;
};

extern const struct rh_cloud_def rh_cloud_aws;
extern const struct rh_cloud_def rh_cloud_alibaba;
extern const struct rh_cloud_def rh_cloud_nebius;

/* The definition an ops table of a cloud belongs to. */
static inline const struct rh_cloud_def *rh_cloud_def_of(const struct rh_provider_ops *ops)
{
	return (const struct rh_cloud_def *)(const void *)ops;
}

#define RH_CLOUD_MODEL_DIR "/opt/rehydra/model"
#define RH_CLOUD_PREFIX "model"
/* Where the instance reports its boot phases, relative to the bucket. */
#define RH_CLOUD_BOOT_STATUS "rehydra-boot/status.json"
#define RH_CLOUD_DEFAULT_PORT 8000
#define RH_CLOUD_DEFAULT_DISK_GB 200

/* What provision adds to ${target.*}, the same for every cloud. */
extern const char *const rh_cloud_output_keys[];

/* The generic hooks (contract in provider.h), shared by every cloud. */
int rh_cloud_validate(const struct rh_provider_ops *self, const json_t *target, const char *pointer,
		      struct rh_diags *d);
/* A terraform/tofu binary can be found. */
int rh_cloud_preflight(const struct rh_provider_ops *self, const json_t *target);
int rh_cloud_provision(struct rh_provider_ctx *p, const struct rh_provider_call *c);
int rh_cloud_sink_open(struct rh_sink **out, struct rh_provider_ctx *p,
		       const struct rh_provider_call *c);
int rh_cloud_deploy(struct rh_provider_ctx *p, const struct rh_provider_call *c,
		    const json_t *command, const json_t *env);
int rh_cloud_teardown(struct rh_provider_ctx *p, const struct rh_provider_call *c);
int rh_cloud_render(struct rh_provider_ctx *p, const char *out_dir);
int rh_cloud_describe(const struct rh_provider_ops *self, json_t **out);
void rh_cloud_free(struct rh_provider_ctx *p);
int rh_cloud_preflight_ctx(struct rh_provider_ctx *p, const struct rh_provider_call *c,
			   json_t *checks, bool plan);
/* The warm standby: one bucket per target with a Terraform state of its
 * own (cloud.c, "warm standby"). */
int rh_cloud_standby_open(struct rh_sink **out, char **where, struct rh_provider_ctx *p,
			  const struct rh_provider_call *c, const char *model, size_t index);
int rh_cloud_standby_use(char **path, struct rh_provider_ctx *p, const struct rh_provider_call *c,
			 const struct rh_model_version *v, const char *standby);
int rh_cloud_standby_remove(struct rh_provider_ctx *p, const struct rh_provider_call *c,
			    char **where);

/* The base ops table of a cloud: its own name, summary and target keys,
 * the shared outputs and hooks. */
#define RH_CLOUD_OPS(name_, summary_, target_keys_)                                                \
	{                                                                                          \
		.version = RH_PROVIDER_OPS_VERSION, .name = (name_), .summary = (summary_),        \
		.target_keys = (target_keys_), .output_keys = rh_cloud_output_keys,                \
		.validate = rh_cloud_validate, .preflight = rh_cloud_preflight,                    \
		.provision = rh_cloud_provision, .sink_open = rh_cloud_sink_open,                  \
		.deploy = rh_cloud_deploy, .teardown = rh_cloud_teardown,                          \
		.render = rh_cloud_render, .describe = rh_cloud_describe, .free = rh_cloud_free,   \
		.preflight_ctx = rh_cloud_preflight_ctx, .standby_open = rh_cloud_standby_open,    \
		.standby_use = rh_cloud_standby_use, .standby_remove = rh_cloud_standby_remove,    \
	}

/* Helpers the definitions use: a target string/integer with a default. */
const char *rh_cloud_str(const json_t *target, const char *key, const char *dflt);
long long rh_cloud_int(const json_t *target, const char *key, long long dflt);

/* "20261121T0433Z-Name_x" -> "20261121t0433z-name-x": lowercase letters,
 * digits and '-', at most `max` bytes (keeping the tail, which holds the
 * drill's random suffix). Always NUL-terminates `buf` (size > max). */
void rh_cloud_label(char *buf, size_t size, const char *drill_id, size_t max);

#endif
