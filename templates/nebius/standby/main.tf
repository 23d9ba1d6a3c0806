# rehydra's Nebius warm standby: one Object Storage bucket in the project
# that outlives drills, holding a copy of each model under its name
# (rehydra registry sync MODEL@VERSION --to RUNBOOK). It has a Terraform
# state of its own (STATE_DIR/standby/cloud/<key>/), so no drill's destroy
# can reach it; only `rehydra registry unstage RUNBOOK` destroys it. A
# drill's VM reads it with the access key of its service account, whose
# storage group (target.storage_group_id) grants the project's buckets.

variable "name" {
  description = "The bucket's name: lowercase letters, digits and hyphens"
  type        = string
}

variable "labels" {
  description = "Labels on the bucket (managed-by = rehydra, rehydra-standby = the target key)"
  type        = map(string)
}

variable "region" {
  type = string
}

variable "project_id" {
  description = "The Nebius project (it fixes the region)"
  type        = string
}

resource "nebius_storage_v1_bucket" "standby" {
  parent_id             = var.project_id
  name                  = var.name
  default_storage_class = "STANDARD"
  versioning_policy     = "DISABLED"
  labels                = var.labels
}

output "bucket" {
  value = nebius_storage_v1_bucket.standby.name
}
