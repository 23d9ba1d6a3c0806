# Inputs only the alibaba module has; the shared ones are in variables.tf
# (templates/common/).

variable "instance_type" {
  type = string
}

variable "image_id" {
  description = "Image; empty picks the newest system Ubuntu 22.04 image"
  type        = string
}

variable "zone_id" {
  description = "Zone; empty picks the first zone that has the instance type"
  type        = string
}
