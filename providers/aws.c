/*
 * aws.c - the `aws` provider: the hyperscaler target, through Terraform and
 * hashicorp/aws (templates/aws/).
 *
 * Everything but the module inputs is shared with the other clouds in
 * cloud.c. AWS picks an instance type per accelerator class from the
 * catalog (target.instance_type overrides it) and, unless target.image
 * names an AMI, the newest AWS Deep Learning Base GPU AMI, which ships the
 * NVIDIA driver and the AWS CLI the boot script uses.
 */
#include "cloud.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

#include "banned.h"

static const char *const aws_target_keys[] = { "accelerator", "allowed_cidr", "operator_cidr",
						"serving_port", "ssh_public_key", "disk_gb",
						"instance_type", "image", "terraform", NULL };
static const char *const aws_required[] = { "accelerator", "allowed_cidr", "operator_cidr",
					    NULL };
static const char *const aws_output_keys[] = { "endpoint", "host", "port", "ssh_host",
					       "ssh_user", "bucket", "instance_id", NULL };

static int aws_tfvars(json_t *vars, const json_t *target, const json_t *acc)
{
	const char *type = rh_cloud_str(target, "instance_type",
					rh_cloud_str(acc, "instance_type", NULL));

	if (!type)
		return rh_error_set(RH_EINVAL, "%s has no verified instance type in the catalog: "
					       "set target.instance_type",
				    rh_cloud_str(target, "accelerator", "the accelerator"));
	if (json_object_set_new(vars, "instance_type", json_string(type)) < 0 ||
	    json_object_set_new(vars, "image_id",
				json_string(rh_cloud_str(target, "image", ""))) < 0)
		return rh_error_set(RH_ENOMEM, "out of memory");
	return 0;
}

/* default_tags puts the drill labels on everything the provider can tag,
 * including what the module forgets. */
static json_t *aws_provider_block(void)
{
	return json_pack("{s:s, s:{s:s}}", "region", "${var.region}", "default_tags", "tags",
			 "${var.labels}");
}

const struct rh_cloud_def rh_cloud_aws = {
	.name = "aws",
	.tf_provider = "aws",
	.required_keys = aws_required,
	.tfvars = aws_tfvars,
	.provider_block = aws_provider_block,
};

static int aws_validate(const json_t *target, const char *pointer, struct rh_diags *d)
{
	return rh_cloud_validate(&rh_cloud_aws, target, pointer, d);
}

static int aws_provision(struct rh_provider_ctx *p, struct rh_step_ctx *s)
{
	return rh_cloud_provision(&rh_cloud_aws, p, s);
}

static int aws_sink_open(struct rh_sink **out, struct rh_provider_ctx *p, struct rh_step_ctx *s)
{
	return rh_cloud_sink_open(&rh_cloud_aws, out, p, s);
}

static int aws_deploy(struct rh_provider_ctx *p, struct rh_step_ctx *s, const json_t *command,
		      const json_t *env)
{
	return rh_cloud_deploy(&rh_cloud_aws, p, s, command, env);
}

static int aws_teardown(struct rh_provider_ctx *p, struct rh_step_ctx *s)
{
	return rh_cloud_teardown(&rh_cloud_aws, p, s);
}

static int aws_render(struct rh_provider_ctx *p, const char *out_dir)
{
	return rh_cloud_render(&rh_cloud_aws, p, out_dir);
}

static int aws_describe(json_t **out)
{
	return rh_cloud_describe(&rh_cloud_aws, out);
}

const struct rh_provider_ops rh_provider_aws = {
	.version = RH_PROVIDER_OPS_VERSION,
	.name = "aws",
	.summary = "Amazon Web Services: VPC, security group, S3 bucket and a GPU EC2 instance "
		   "(Terraform, hashicorp/aws)",
	.target_keys = aws_target_keys,
	.output_keys = aws_output_keys,
	.validate = aws_validate,
	.preflight = rh_cloud_preflight,
	.provision = aws_provision,
	.sink_open = aws_sink_open,
	.deploy = aws_deploy,
	.teardown = aws_teardown,
	.render = aws_render,
	.describe = aws_describe,
	.free = rh_cloud_free,
};
