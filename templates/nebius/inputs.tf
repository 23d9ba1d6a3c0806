# Inputs only the nebius module has; the shared ones are in variables.tf
# (templates/common/).

variable "project_id" {
  description = "The Nebius project (parent_id of every resource)"
  type        = string
}

variable "platform" {
  type = string
}

variable "preset" {
  type = string
}

variable "image_family" {
  description = "Boot image family, e.g. ubuntu22.04-cuda12"
  type        = string
}

variable "storage_group_id" {
  description = "An IAM group with storage.editor on the project (read the model, write rehydra-boot/status.json); the instance's service account joins it"
  type        = string
}
