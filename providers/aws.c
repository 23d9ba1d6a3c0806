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

static const char *const aws_target_keys[] = {
    "accelerator",    "allowed_cidr", "operator_cidr",	   "serving_port",
    "ssh_public_key", "disk_gb",      "accelerator_count", "instance_type",
    "image",	      "terraform",    "standby_bucket",	   NULL};
static const char *const aws_required[] = {"accelerator", "allowed_cidr", "operator_cidr", NULL};

static int aws_tfvars(json_t *vars, const json_t *target, const json_t *acc)
{
	const char *type =
	    rh_cloud_str(target, "instance_type", rh_cloud_str(acc, "instance_type", NULL));

	if (!type)
		return rh_error_set(RH_EINVAL,
				    "%s has no verified instance type in the catalog: "
				    "set target.instance_type",
				    rh_cloud_str(target, "accelerator", "the accelerator"));
	if (json_object_set_new(vars, "instance_type", json_string(type)) < 0 ||
	    json_object_set_new(vars, "image_id", json_string(rh_cloud_str(target, "image", ""))) <
		0)
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
    .ops =
	RH_CLOUD_OPS("aws",
		     "Amazon Web Services: VPC, security group, S3 bucket and a GPU EC2 instance "
		     "(Terraform, hashicorp/aws)",
		     aws_target_keys),
    .tf_provider = "aws",
    .required_keys = aws_required,
    .tfvars = aws_tfvars,
    .provider_block = aws_provider_block,
};
