# role_name and assume_role_policy_document of alicloud_ram_role need
# alicloud >= 1.252.0 (security_group_name >= 1.239.0; registry docs,
# alicloud_security_group); the lock file pins the exact release.
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    alicloud = {
      source  = "aliyun/alicloud"
      version = ">= 1.252, < 2.0"
    }
  }
}
