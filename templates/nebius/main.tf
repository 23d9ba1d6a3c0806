# rehydra's Nebius AI Cloud target: a VPC network and subnet, a security
# group that opens only the serving port (to allowed_cidr) and SSH (to
# operator_cidr), an Object Storage bucket for the artifacts in the same
# region, and one GPU VM whose cloud-init waits for the artifacts and
# starts the stack. The VM reads the bucket with an access key of its own
# service account, which joins var.storage_group_id (a group granted
# storage access on the project).
#
# Resource types and arguments as documented for nebius/nebius
# (docs/resources/*.md in nebius/terraform-provider-nebius):
# nebius_vpc_v1_network (parent_id, name, labels), nebius_vpc_v1_subnet
# (parent_id, name, network_id, labels), nebius_vpc_v1_security_group
# (parent_id, name, network_id, labels), nebius_vpc_v1_security_rule
# (parent_id = the group, access, protocol, priority, type, ingress /
# egress {source_cidrs | destination_cidrs, destination_ports}, labels),
# nebius_storage_v1_bucket (parent_id, name, default_storage_class,
# versioning_policy, labels), nebius_iam_v1_service_account (parent_id,
# name, description, labels), nebius_iam_v1_group_membership (parent_id =
# the group, member_id, labels), nebius_iam_v2_access_key (parent_id, name,
# account.service_account.id, secret_delivery_mode, labels; status.
# aws_access_key_id, status.secret), nebius_compute_v1_instance (parent_id,
# name, resources {platform, preset}, boot_disk {attach_mode, managed_disk
# {name, labels, spec {type, size_gibibytes, disk_encryption {type},
# source_image_family {image_family}}}},
# network_interfaces [{name, subnet_id, ip_address, public_ip_address,
# security_groups}], service_account_id, cloud_init_user_data, labels;
# status.network_interfaces[].public_ip_address.address).
# Every resource carries var.labels (Nebius labels: lowercase values).
# tests/data/provider-args/ holds the dated table of these arguments the
# tests check the module against.
#
# Deleting a bucket that still holds objects may be refused by the API;
# rehydra's leak check then lists the bucket and prints the command to
# finish (empty it with an S3 client, then run destroy again).

locals {
  bucket_name = nebius_storage_v1_bucket.artifacts.name
  public_ip   = split("/", nebius_compute_v1_instance.gpu.status.network_interfaces[0].public_ip_address.address)[0]
  instance_id = nebius_compute_v1_instance.gpu.id

  # stack.json keys of this cloud (the shared ones: common/cloud_init.tf):
  # Object Storage path-style (the catalog's style for Nebius), with the
  # service account's access key from a file cloud-init writes.
  boot_cloud = {
    endpoint         = var.s3_endpoint
    addressing       = "path"
    credentials      = "file"
    credentials_file = "/etc/rehydra/s3-credentials.json"
  }
  boot_files = [
    { path = "/etc/rehydra/s3-credentials.json", permissions = "0600", content = jsonencode(local.s3_credentials) },
  ]

  s3_credentials = {
    access_key_id     = nebius_iam_v2_access_key.instance.status.aws_access_key_id
    secret_access_key = nebius_iam_v2_access_key.instance.status.secret
  }
}

resource "nebius_vpc_v1_network" "this" {
  parent_id = var.project_id
  name      = var.name
  labels    = var.labels
}

resource "nebius_vpc_v1_subnet" "this" {
  parent_id  = var.project_id
  name       = var.name
  network_id = nebius_vpc_v1_network.this.id
  labels     = var.labels
}

resource "nebius_vpc_v1_security_group" "this" {
  parent_id  = var.project_id
  name       = var.name
  network_id = nebius_vpc_v1_network.this.id
  labels     = var.labels
}

resource "nebius_vpc_v1_security_rule" "serving" {
  parent_id = nebius_vpc_v1_security_group.this.id
  name      = "${var.name}-serving"
  access    = "ALLOW"
  protocol  = "TCP"
  priority  = 100
  type      = "STATEFUL"
  ingress = {
    source_cidrs      = [var.allowed_cidr]
    destination_ports = [var.serving_port]
  }
  labels = var.labels
}

resource "nebius_vpc_v1_security_rule" "ssh" {
  parent_id = nebius_vpc_v1_security_group.this.id
  name      = "${var.name}-ssh"
  access    = "ALLOW"
  protocol  = "TCP"
  priority  = 100
  type      = "STATEFUL"
  ingress = {
    source_cidrs      = [var.operator_cidr]
    destination_ports = [22]
  }
  labels = var.labels
}

resource "nebius_vpc_v1_security_rule" "egress" {
  parent_id = nebius_vpc_v1_security_group.this.id
  name      = "${var.name}-egress"
  access    = "ALLOW"
  protocol  = "ANY"
  priority  = 100
  type      = "STATEFUL"
  egress = {
    destination_cidrs = ["0.0.0.0/0"]
  }
  labels = var.labels
}

resource "nebius_storage_v1_bucket" "artifacts" {
  parent_id             = var.project_id
  name                  = var.bucket
  default_storage_class = "STANDARD"
  versioning_policy     = "DISABLED"
  labels                = var.labels
}

resource "nebius_iam_v1_service_account" "instance" {
  parent_id   = var.project_id
  name        = var.name
  description = "rehydra drill ${var.drill_id}: reads the artifact bucket"
  labels      = var.labels
}

resource "nebius_iam_v1_group_membership" "instance" {
  parent_id = var.storage_group_id
  member_id = nebius_iam_v1_service_account.instance.id
  labels    = var.labels
}

resource "nebius_iam_v2_access_key" "instance" {
  parent_id = var.project_id
  name      = var.name
  account = {
    service_account = {
      id = nebius_iam_v1_service_account.instance.id
    }
  }
  # INLINE puts the secret in status.secret (sensitive) for cloud-init.
  secret_delivery_mode = "INLINE"
  labels               = var.labels
}

resource "nebius_compute_v1_instance" "gpu" {
  parent_id = var.project_id
  name      = var.name

  resources = {
    platform = var.platform
    preset   = var.preset
  }

  boot_disk = {
    attach_mode = "READ_WRITE"
    managed_disk = {
      name   = "${var.name}-boot"
      labels = var.labels
      # Managed encryption exists only for the IO_M3 and non-replicated
      # types (docs/resources/compute_v1_instance.md), whose sizes come in
      # steps of 93 GiB.
      spec = {
        type           = "NETWORK_SSD_IO_M3"
        size_gibibytes = ceil(var.disk_gb / 93) * 93
        disk_encryption = {
          type = "DISK_ENCRYPTION_MANAGED"
        }
        source_image_family = {
          image_family = var.image_family
        }
      }
    }
  }

  network_interfaces = [
    {
      name              = "eth0"
      subnet_id         = nebius_vpc_v1_subnet.this.id
      ip_address        = {}
      public_ip_address = {}
      security_groups   = [{ id = nebius_vpc_v1_security_group.this.id }]
    }
  ]

  service_account_id   = nebius_iam_v1_service_account.instance.id
  cloud_init_user_data = local.user_data
  labels               = var.labels

  depends_on = [nebius_iam_v1_group_membership.instance, nebius_vpc_v1_security_rule.serving,
  nebius_vpc_v1_security_rule.ssh, nebius_vpc_v1_security_rule.egress]
}
