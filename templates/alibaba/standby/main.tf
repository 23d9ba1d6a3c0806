# rehydra's Alibaba Cloud warm standby: one OSS bucket that outlives
# drills, holding a copy of each model under its name (rehydra registry
# sync MODEL@VERSION --to RUNBOOK). It has a Terraform state of its own
# (STATE_DIR/standby/cloud/<key>/), so no drill's destroy can reach it;
# only `rehydra registry unstage RUNBOOK` destroys it. A drill's instance
# reads the model from here (its RAM policy names this bucket, see
# ../main.tf) and reports to the drill's own bucket.

variable "name" {
  description = "The bucket's name: lowercase letters, digits and hyphens"
  type        = string
}

variable "labels" {
  description = "Tags on the bucket (managed-by = rehydra, rehydra-standby = the target key)"
  type        = map(string)
}

variable "region" {
  type = string
}

resource "alicloud_oss_bucket" "standby" {
  bucket        = var.name
  force_destroy = true # unstage removes the models with the bucket
  tags          = var.labels
}

resource "alicloud_oss_bucket_acl" "standby" {
  bucket = alicloud_oss_bucket.standby.bucket
  acl    = "private"
}

output "bucket" {
  value = alicloud_oss_bucket.standby.bucket
}
