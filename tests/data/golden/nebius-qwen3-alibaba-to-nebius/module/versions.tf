# boot_disk is required on nebius_compute_v1_instance since 0.6.27
# (provider changelog); the lock file pins the exact release.
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    nebius = {
      source  = "nebius/nebius"
      version = "~> 0.6.27"
    }
  }
}
