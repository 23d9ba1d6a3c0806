# rehydra's AWS target: a VPC with one public subnet, a security group that
# opens only the serving port (to allowed_cidr) and SSH (to operator_cidr),
# an S3 bucket for the artifacts in the same region, and one GPU instance
# whose cloud-init waits for the artifacts and starts the stack.
#
# Resource types and arguments as documented in the Terraform Registry for
# hashicorp/aws 5.100 and 6.x (the tests run `terraform validate` against
# 5.100.0): aws_vpc, aws_internet_gateway, aws_subnet, aws_route_table,
# aws_route_table_association, aws_security_group,
# aws_vpc_security_group_ingress_rule / _egress_rule, aws_s3_bucket,
# aws_s3_bucket_public_access_block, aws_iam_role, aws_iam_role_policy,
# aws_iam_instance_profile, aws_instance; data sources aws_ami,
# aws_availability_zones and aws_ec2_instance_type_offerings. Every
# resource that takes `tags` gets var.labels; the root module also sets
# them as the provider's default_tags. Three resources have no tags
# argument (route table association, public access block, inline role
# policy); they die with their tagged parents. The root volume is
# encrypted (the account's default EBS key).

locals {
  bucket_name = aws_s3_bucket.artifacts.bucket
  public_ip   = aws_instance.gpu.public_ip
  instance_id = aws_instance.gpu.id

  # stack.json keys of this cloud (the shared ones: common/cloud_init.tf);
  # S3 in the region, virtual-hosted, with the instance profile's keys.
  boot_cloud = {
    endpoint    = var.s3_endpoint
    addressing  = "virtual"
    credentials = "instance"
  }
  boot_files = []

  # Zones of the region that offer the instance type (p5 and g6e are not in
  # every zone), without opt-in Local/Wavelength Zones.
  zones = sort(setintersection(data.aws_availability_zones.available.names,
  data.aws_ec2_instance_type_offerings.gpu.locations))
}

data "aws_availability_zones" "available" {
  state = "available"
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

data "aws_ec2_instance_type_offerings" "gpu" {
  location_type = "availability-zone"
  filter {
    name   = "instance-type"
    values = [var.instance_type]
  }
}

data "aws_ami" "gpu" {
  most_recent = true
  owners      = ["amazon"]
  filter {
    name   = "name"
    values = ["Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"]
  }
}

resource "aws_vpc" "this" {
  cidr_block           = "10.42.0.0/16"
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(var.labels, { Name = var.name })
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.labels, { Name = var.name })
}

resource "aws_subnet" "this" {
  vpc_id                  = aws_vpc.this.id
  cidr_block              = "10.42.1.0/24"
  availability_zone       = length(local.zones) > 0 ? local.zones[0] : null
  map_public_ip_on_launch = true
  tags                    = merge(var.labels, { Name = var.name })

  lifecycle {
    precondition {
      condition     = length(local.zones) > 0
      error_message = "no availability zone of ${var.region} offers ${var.instance_type} (aws ec2 describe-instance-type-offerings --location-type availability-zone): choose another region or set target.instance_type"
    }
  }
}

resource "aws_route_table" "this" {
  vpc_id = aws_vpc.this.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }
  tags = merge(var.labels, { Name = var.name })
}

resource "aws_route_table_association" "this" {
  subnet_id      = aws_subnet.this.id
  route_table_id = aws_route_table.this.id
}

resource "aws_security_group" "this" {
  name        = var.name
  description = "rehydra drill ${var.drill_id}: serving port and SSH only"
  vpc_id      = aws_vpc.this.id
  tags        = merge(var.labels, { Name = var.name })
}

resource "aws_vpc_security_group_ingress_rule" "serving" {
  security_group_id = aws_security_group.this.id
  description       = "inference endpoint"
  cidr_ipv4         = var.allowed_cidr
  ip_protocol       = "tcp"
  from_port         = var.serving_port
  to_port           = var.serving_port
  tags              = var.labels
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  security_group_id = aws_security_group.this.id
  description       = "operator SSH"
  cidr_ipv4         = var.operator_cidr
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  tags              = var.labels
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.this.id
  description       = "artifacts, packages"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  tags              = var.labels
}

resource "aws_s3_bucket" "artifacts" {
  bucket        = var.bucket
  force_destroy = true # teardown must not fail on the model copy
  tags          = var.labels
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket                  = aws_s3_bucket.artifacts.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_iam_role" "instance" {
  name = var.name
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "ec2.amazonaws.com" }
    }]
  })
  tags = var.labels
}

resource "aws_iam_role_policy" "read_artifacts" {
  name = "read-artifacts"
  role = aws_iam_role.instance.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat([
      { Effect = "Allow", Action = ["s3:ListBucket"], Resource = [aws_s3_bucket.artifacts.arn] },
      { Effect = "Allow", Action = ["s3:GetObject"], Resource = ["${aws_s3_bucket.artifacts.arn}/*"] },
      { Effect = "Allow", Action = ["s3:PutObject"], Resource = ["${aws_s3_bucket.artifacts.arn}/rehydra-boot/*"] },
      ], var.standby_bucket == "" ? [] : [
      # the warm standby (standby/main.tf): read only
      { Effect = "Allow", Action = ["s3:ListBucket"], Resource = ["arn:aws:s3:::${var.standby_bucket}"] },
      { Effect = "Allow", Action = ["s3:GetObject"], Resource = ["arn:aws:s3:::${var.standby_bucket}/*"] },
    ])
  })
}

resource "aws_iam_instance_profile" "instance" {
  name = var.name
  role = aws_iam_role.instance.name
  tags = var.labels
}

resource "aws_instance" "gpu" {
  ami                         = var.image_id != "" ? var.image_id : data.aws_ami.gpu.id
  instance_type               = var.instance_type
  subnet_id                   = aws_subnet.this.id
  vpc_security_group_ids      = [aws_security_group.this.id]
  iam_instance_profile        = aws_iam_instance_profile.instance.name
  associate_public_ip_address = true
  user_data                   = local.user_data
  user_data_replace_on_change = true

  metadata_options {
    http_tokens = "required"
  }

  root_block_device {
    volume_size = var.disk_gb
    volume_type = "gp3"
    encrypted   = true
    tags        = var.labels
  }

  tags = merge(var.labels, { Name = var.name })
}
