# Provider pinned to a major version; `terraform init` records the exact
# release in .terraform.lock.hcl inside the drill's working directory.
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }
}
