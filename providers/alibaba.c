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

static const char *const ali_target_keys[] = {"accelerator",
					      "allowed_cidr",
					      "operator_cidr",
					      "serving_port",
					      "ssh_public_key",
					      "disk_gb",
					      "accelerator_count",
					      "instance_type",
					      "image",
					      "zone",
					      "terraform",
					      "standby_bucket",
					      NULL};
static const char *const ali_required[] = {"accelerator", "allowed_cidr", "operator_cidr", NULL};

static int ali_tfvars(json_t *vars, const json_t *target, const json_t *acc)
{
	const char *type =
	    rh_cloud_str(target, "instance_type", rh_cloud_str(acc, "instance_type", NULL));

	if (!type)
		return rh_error_set(RH_EINVAL, "%s: %s",
				    rh_cloud_str(target, "accelerator", "the accelerator"),
				    rh_cloud_str(acc, "reason",
						 "no instance type in the catalog: "
						 "set target.instance_type"));
	if (json_object_set_new(vars, "instance_type", json_string(type)) < 0 ||
	    json_object_set_new(vars, "image_id", json_string(rh_cloud_str(target, "image", ""))) <
		0 ||
	    json_object_set_new(vars, "zone_id", json_string(rh_cloud_str(target, "zone", ""))) < 0)
		return rh_error_set(RH_ENOMEM, "out of memory");
	return 0;
}

static json_t *ali_provider_block(void)
{
	return json_pack("{s:s}", "region", "${var.region}");
}

const struct rh_cloud_def rh_cloud_alibaba = {
    .ops = RH_CLOUD_OPS("alibaba",
			"Alibaba Cloud: VPC, vSwitch, security group, OSS bucket and a GPU ECS "
			"instance (Terraform, aliyun/alicloud)",
			ali_target_keys),
    .tf_provider = "alicloud",
    .required_keys = ali_required,
    .tfvars = ali_tfvars,
    .provider_block = ali_provider_block,
};
