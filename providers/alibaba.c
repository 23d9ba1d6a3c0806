/*
 * alibaba.c - the `alibaba` provider: Alibaba Cloud, through Terraform and
 * aliyun/alicloud (templates/alibaba/).
 *
 * The APAC side of the failover pairs in the seeds. Module inputs beyond
 * the shared ones: the ECS instance type (catalog, or target.instance_type,
 * which an "unverified" class such as H20-96GB requires), an image
 * (target.image, default the newest system Ubuntu 22.04) and a zone
 * (target.zone, default the first zone selling the instance type).
 */
#include "cloud.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

#include "banned.h"

static const char *const ali_target_keys[] = { "accelerator", "allowed_cidr", "operator_cidr",
					       "serving_port", "ssh_public_key", "disk_gb",
					       "instance_type", "image", "zone", "terraform", NULL };
static const char *const ali_required[] = { "accelerator", "allowed_cidr", "operator_cidr",
					    NULL };
static const char *const ali_output_keys[] = { "endpoint", "host", "port", "ssh_host",
					       "ssh_user", "bucket", "instance_id", NULL };

static int ali_tfvars(json_t *vars, const json_t *target, const json_t *acc)
{
	const char *type = rh_cloud_str(target, "instance_type",
					rh_cloud_str(acc, "instance_type", NULL));

	if (!type)
		return rh_error_set(RH_EINVAL, "%s: %s",
				    rh_cloud_str(target, "accelerator", "the accelerator"),
				    rh_cloud_str(acc, "reason", "no instance type in the catalog: "
								"set target.instance_type"));
	if (json_object_set_new(vars, "instance_type", json_string(type)) < 0 ||
	    json_object_set_new(vars, "image_id",
				json_string(rh_cloud_str(target, "image", ""))) < 0 ||
	    json_object_set_new(vars, "zone_id", json_string(rh_cloud_str(target, "zone", ""))) <
		0)
		return rh_error_set(RH_ENOMEM, "out of memory");
	return 0;
}

static json_t *ali_provider_block(void)
{
	return json_pack("{s:s}", "region", "${var.region}");
}

const struct rh_cloud_def rh_cloud_alibaba = {
	.name = "alibaba",
	.tf_provider = "alicloud",
	.required_keys = ali_required,
	.tfvars = ali_tfvars,
	.provider_block = ali_provider_block,
};

static int ali_validate(const json_t *target, const char *pointer, struct rh_diags *d)
{
	return rh_cloud_validate(&rh_cloud_alibaba, target, pointer, d);
}

static int ali_provision(struct rh_provider_ctx *p, struct rh_step_ctx *s)
{
	return rh_cloud_provision(&rh_cloud_alibaba, p, s);
}

static int ali_sink_open(struct rh_sink **out, struct rh_provider_ctx *p, struct rh_step_ctx *s)
{
	return rh_cloud_sink_open(&rh_cloud_alibaba, out, p, s);
}

static int ali_deploy(struct rh_provider_ctx *p, struct rh_step_ctx *s, const json_t *command,
		      const json_t *env)
{
	return rh_cloud_deploy(&rh_cloud_alibaba, p, s, command, env);
}

static int ali_teardown(struct rh_provider_ctx *p, struct rh_step_ctx *s)
{
	return rh_cloud_teardown(&rh_cloud_alibaba, p, s);
}

static int ali_render(struct rh_provider_ctx *p, const char *out_dir)
{
	return rh_cloud_render(&rh_cloud_alibaba, p, out_dir);
}

static int ali_describe(json_t **out)
{
	return rh_cloud_describe(&rh_cloud_alibaba, out);
}

const struct rh_provider_ops rh_provider_alibaba = {
	.version = RH_PROVIDER_OPS_VERSION,
	.name = "alibaba",
	.summary = "Alibaba Cloud: VPC, vSwitch, security group, OSS bucket and a GPU ECS "
		   "instance (Terraform, aliyun/alicloud)",
	.target_keys = ali_target_keys,
	.output_keys = ali_output_keys,
	.validate = ali_validate,
	.preflight = rh_cloud_preflight,
	.provision = ali_provision,
	.sink_open = ali_sink_open,
	.deploy = ali_deploy,
	.teardown = ali_teardown,
	.render = ali_render,
	.describe = ali_describe,
	.free = rh_cloud_free,
};
