/*
 * nebius.c - the `nebius` provider: Nebius AI Cloud, through Terraform and
 * nebius/nebius (templates/nebius/).
 *
 * The GPU-dense European neocloud of the failover pairs. Nebius places
 * resources in a project (target.project_id, which fixes the region) and
 * sizes VMs by platform + preset rather than instance type; the catalog
 * maps accelerator classes to both (target.platform / target.preset
 * override them). The VM reads the bucket with an access key of its own
 * service account, which joins target.storage_group_id.
 */
#include "cloud.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

#include "banned.h"

#define NEBIUS_IMAGE_FAMILY "ubuntu22.04-cuda12"

static const char *const neb_target_keys[] = {
    "accelerator", "allowed_cidr",	"operator_cidr", "serving_port",     "ssh_public_key",
    "disk_gb",	   "accelerator_count", "project_id",	 "storage_group_id", "platform",
    "preset",	   "image_family",	"terraform",	 "standby_bucket",   NULL};
static const char *const neb_required[] = {"accelerator", "allowed_cidr",     "operator_cidr",
					   "project_id",  "storage_group_id", NULL};

static const char *const neb_standby_keys[] = {"project_id", NULL};

static int neb_tfvars(json_t *vars, const json_t *target, const json_t *acc)
{
	const char *platform =
	    rh_cloud_str(target, "platform", rh_cloud_str(acc, "platform", NULL));
	const char *preset = rh_cloud_str(target, "preset", rh_cloud_str(acc, "preset", NULL));

	if (!platform || !preset)
		return rh_error_set(RH_EINVAL,
				    "%s has no verified platform/preset in the "
				    "catalog: set target.platform and target.preset",
				    rh_cloud_str(target, "accelerator", "the accelerator"));
	if (json_object_set_new(vars, "platform", json_string(platform)) < 0 ||
	    json_object_set_new(vars, "preset", json_string(preset)) < 0 ||
	    json_object_set_new(vars, "project_id",
				json_string(rh_cloud_str(target, "project_id", ""))) < 0 ||
	    json_object_set_new(vars, "storage_group_id",
				json_string(rh_cloud_str(target, "storage_group_id", ""))) < 0 ||
	    json_object_set_new(
		vars, "image_family",
		json_string(rh_cloud_str(target, "image_family", NEBIUS_IMAGE_FAMILY))) < 0)
		return rh_error_set(RH_ENOMEM, "out of memory");
	return 0;
}

/* Credentials come from the provider's environment (NEBIUS_IAM_TOKEN or a
 * service account's key); nothing to configure in the root module. */
static json_t *neb_provider_block(void)
{
	return json_object();
}

const struct rh_cloud_def rh_cloud_nebius = {
    .ops =
	RH_CLOUD_OPS("nebius",
		     "Nebius AI Cloud: network, security group, Object Storage bucket and a GPU VM "
		     "(Terraform, nebius/nebius)",
		     neb_target_keys),
    .tf_provider = "nebius",
    .required_keys = neb_required,
    .tfvars = neb_tfvars,
    .provider_block = neb_provider_block,
    .standby_keys = neb_standby_keys,
};
