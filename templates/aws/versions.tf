# hashicorp/aws from 5.100 (the release the tests run `terraform validate`
# with) up to the next major version; `terraform init` records the exact
# release in .terraform.lock.hcl inside the drill's working directory.
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7.0"
    }
  }
}
