# Inputs only the aws module has; the shared ones are in variables.tf
# (templates/common/).

variable "instance_type" {
  type = string
}

variable "image_id" {
  description = "AMI; empty picks the newest AWS Deep Learning Base GPU AMI (Ubuntu 22.04)"
  type        = string
}
