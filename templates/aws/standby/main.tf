# rehydra's AWS warm standby: one S3 bucket that outlives drills, holding a
# copy of each model under its name (rehydra registry sync MODEL@VERSION
# --to RUNBOOK). It has a Terraform state of its own
# (STATE_DIR/standby/cloud/<key>/), so no drill's destroy can reach it;
# only `rehydra registry unstage RUNBOOK` destroys it. A drill's instance
# reads the model from here (its role is granted s3:GetObject on this
# bucket, see ../main.tf) and reports to the drill's own bucket.
#
# aws_s3_bucket and aws_s3_bucket_public_access_block as documented for
# hashicorp/aws 5.100 and 6.x (tests/integration/terraform_validate.sh
# validates this module against 5.100.0).

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

resource "aws_s3_bucket" "standby" {
  bucket        = var.name
  force_destroy = true # unstage removes the models with the bucket
  tags          = var.labels
}

resource "aws_s3_bucket_public_access_block" "standby" {
  bucket                  = aws_s3_bucket.standby.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

output "bucket" {
  value = aws_s3_bucket.standby.bucket
}
