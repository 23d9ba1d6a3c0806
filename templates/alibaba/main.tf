# rehydra's Alibaba Cloud target: a VPC with one vSwitch, a security group
# that opens only the serving port (to allowed_cidr) and SSH (to
# operator_cidr), an OSS bucket for the artifacts in the same region, and
# one GPU ECS instance whose cloud-init waits for the artifacts and starts
# the stack. The instance reads the bucket through a RAM role (no key on
# the machine) over OSS's S3-compatible API.
#
# Resource types and arguments as documented for aliyun/alicloud (registry
# docs / website/docs/r/*.html.markdown): alicloud_vpc (vpc_name,
# cidr_block, tags), alicloud_vswitch (vswitch_name, vpc_id, cidr_block,
# zone_id, tags), alicloud_security_group (security_group_name since
# 1.239.0, vpc_id, tags), alicloud_security_group_rule (type, ip_protocol,
# nic_type, policy, port_range, priority, security_group_id, cidr_ip),
# alicloud_oss_bucket (bucket, force_destroy since 1.45.0, tags),
# alicloud_oss_bucket_acl (bucket, acl), alicloud_ram_role (role_name,
# assume_role_policy_document since 1.252.0, description, force), alicloud_ram_policy (policy_name, policy_document, force),
# alicloud_ram_role_policy_attachment (policy_name, policy_type,
# role_name), alicloud_instance (instance_name, instance_type, image_id,
# vswitch_id, security_groups, internet_max_bandwidth_out, system_disk_*
# including system_disk_encrypted, user_data, tags, volume_tags),
# alicloud_ecs_ram_role_attachment (instance_id, ram_role_name; since
# 1.250.0, replacing the instance's deprecated role_name); data sources
# alicloud_zones and alicloud_images. tests/data/provider-args/ holds the
# dated table of these arguments the tests check the module against. Security group rules, the bucket ACL and the RAM
# resources take no tags; they are named after var.name, which carries the
# drill id.

locals {
  bucket_name = alicloud_oss_bucket.artifacts.bucket
  public_ip   = alicloud_instance.gpu.public_ip
  instance_id = alicloud_instance.gpu.id
  # the first zone that stocks the instance type; "" when none does (the
  # vswitch's precondition then says so instead of "Invalid index")
  zone_id = var.zone_id != "" ? var.zone_id : try(data.alicloud_zones.gpu.zones[0].id, "")

  # stack.json keys of this cloud (the shared ones: common/cloud_init.tf).
  # OSS serves S3 clients at s3.oss-REGION.aliyuncs.com (var.s3_endpoint,
  # from the catalog) and only virtual-hosted requests; the keys are the
  # RAM role's temporary credentials from the metadata service.
  boot_cloud = {
    endpoint    = var.s3_endpoint
    addressing  = "virtual"
    credentials = "ecs-ram-role"
    ram_role    = alicloud_ram_role.instance.role_name
  }
  boot_files = []
}

data "alicloud_zones" "gpu" {
  available_instance_type     = var.instance_type
  available_resource_creation = "VSwitch"
}

data "alicloud_images" "ubuntu" {
  name_regex  = "^ubuntu_22_04_x64"
  owners      = "system"
  most_recent = true
}

resource "alicloud_vpc" "this" {
  vpc_name   = var.name
  cidr_block = "10.42.0.0/16"
  tags       = var.labels
}

resource "alicloud_vswitch" "this" {
  vswitch_name = var.name
  vpc_id       = alicloud_vpc.this.id
  cidr_block   = "10.42.1.0/24"
  zone_id      = local.zone_id
  tags         = var.labels

  lifecycle {
    precondition {
      condition     = local.zone_id != ""
      error_message = "no zone of ${var.region} has ${var.instance_type} in stock for a VSwitch (data source alicloud_zones, available_instance_type): choose another region or instance type, or set target.zone"
    }
  }
}

resource "alicloud_security_group" "this" {
  security_group_name = var.name
  description         = "rehydra drill ${var.drill_id}: serving port and SSH only"
  vpc_id              = alicloud_vpc.this.id
  tags                = var.labels
}

# nic_type must be intranet for VPC security groups (provider docs); the
# rule then applies to the public address too.
resource "alicloud_security_group_rule" "serving" {
  type              = "ingress"
  ip_protocol       = "tcp"
  nic_type          = "intranet"
  policy            = "accept"
  port_range        = "${var.serving_port}/${var.serving_port}"
  priority          = 1
  security_group_id = alicloud_security_group.this.id
  cidr_ip           = var.allowed_cidr
}

resource "alicloud_security_group_rule" "ssh" {
  type              = "ingress"
  ip_protocol       = "tcp"
  nic_type          = "intranet"
  policy            = "accept"
  port_range        = "22/22"
  priority          = 1
  security_group_id = alicloud_security_group.this.id
  cidr_ip           = var.operator_cidr
}

resource "alicloud_oss_bucket" "artifacts" {
  bucket        = var.bucket
  force_destroy = true # teardown must not fail on the model copy
  tags          = var.labels
}

resource "alicloud_oss_bucket_acl" "artifacts" {
  bucket = alicloud_oss_bucket.artifacts.bucket
  acl    = "private"
}

resource "alicloud_ram_role" "instance" {
  role_name   = var.name
  description = "rehydra drill ${var.drill_id}: read the artifact bucket"
  force       = true
  assume_role_policy_document = jsonencode({
    Version = "1"
    Statement = [{
      Action    = "sts:AssumeRole"
      Effect    = "Allow"
      Principal = { Service = ["ecs.aliyuncs.com"] }
    }]
  })
}

resource "alicloud_ram_policy" "read_artifacts" {
  policy_name = var.name
  force       = true
  policy_document = jsonencode({
    Version = "1"
    Statement = [{
      Effect = "Allow"
      Action = ["oss:GetObject", "oss:ListObjects", "oss:GetBucketInfo"]
      Resource = concat(["acs:oss:*:*:${var.bucket}", "acs:oss:*:*:${var.bucket}/*"],
        # the warm standby (standby/main.tf): read only
      var.standby_bucket == "" ? [] : ["acs:oss:*:*:${var.standby_bucket}", "acs:oss:*:*:${var.standby_bucket}/*"])
      }, {
      # the boot script's phase reports (rehydra-boot/status.json)
      Effect   = "Allow"
      Action   = ["oss:PutObject"]
      Resource = ["acs:oss:*:*:${var.bucket}/rehydra-boot/*"]
    }]
  })
}

resource "alicloud_ram_role_policy_attachment" "read_artifacts" {
  policy_name = alicloud_ram_policy.read_artifacts.policy_name
  policy_type = "Custom"
  role_name   = alicloud_ram_role.instance.role_name
}

resource "alicloud_instance" "gpu" {
  instance_name              = var.name
  instance_type              = var.instance_type
  image_id                   = var.image_id != "" ? var.image_id : data.alicloud_images.ubuntu.images[0].id
  vswitch_id                 = alicloud_vswitch.this.id
  security_groups            = [alicloud_security_group.this.id]
  internet_max_bandwidth_out = 100
  system_disk_category       = "cloud_essd"
  system_disk_size           = var.disk_gb
  system_disk_encrypted      = true
  user_data                  = base64encode(local.user_data)
  tags                       = var.labels
  volume_tags                = var.labels
}

# The instance's RAM role; until it is attached the boot script's
# metadata requests fail and it retries.
resource "alicloud_ecs_ram_role_attachment" "gpu" {
  instance_id   = alicloud_instance.gpu.id
  ram_role_name = alicloud_ram_role.instance.role_name

  depends_on = [alicloud_ram_role_policy_attachment.read_artifacts]
}
