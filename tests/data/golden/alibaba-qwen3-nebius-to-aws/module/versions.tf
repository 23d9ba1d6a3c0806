# security_group_name needs alicloud >= 1.239.0 (registry docs,
# alicloud_security_group); the lock file pins the exact release.
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    alicloud = {
      source  = "aliyun/alicloud"
      version = "~> 1.239"
    }
  }
}
