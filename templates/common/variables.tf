# Inputs of the module. rehydra writes their values into
# terraform.tfvars.json (JSON data, never HCL text), so a runbook value
# containing quotes, ${ or %{ stays a plain string.

variable "drill_id" {
  description = "The rehydra drill this stack belongs to"
  type        = string
}

variable "name" {
  description = "Prefix for resource names: lowercase letters, digits and hyphens"
  type        = string
}

variable "labels" {
  description = "Tags/labels put on every resource (rehydra-drill = the drill id)"
  type        = map(string)
}

variable "region" {
  type = string
}

variable "accelerator" {
  description = "The accelerator class (catalog) the instance type was chosen for"
  type        = string
}

variable "disk_gb" {
  description = "Boot disk size; it holds the model copy"
  type        = number
}

variable "serving_port" {
  description = "The TCP port the stack serves on, open to allowed_cidr only"
  type        = number
}

variable "allowed_cidr" {
  description = "Who may reach the serving port"
  type        = string
}

variable "operator_cidr" {
  description = "Who may reach SSH (port 22)"
  type        = string
}

variable "ssh_user" {
  type = string
}

variable "ssh_public_key" {
  description = "Authorized for ssh_user; empty for none"
  type        = string
}

variable "bucket" {
  description = "The artifact bucket, created in the same region"
  type        = string
}

variable "standby_bucket" {
  description = "The target's warm standby bucket (kept between drills, see standby/main.tf) the instance may read the model from; empty: none"
  type        = string
  default     = ""
}

variable "artifact_prefix" {
  description = "Key prefix of the model in the bucket"
  type        = string
}

variable "s3_endpoint" {
  description = "S3 API endpoint of the region's object storage"
  type        = string
}

variable "model_dir" {
  description = "Where the instance copies the artifacts"
  type        = string
}

variable "stack_command" {
  description = "argv of the inference stack, started after the artifacts arrived"
  type        = list(string)
}

variable "stack_env" {
  type = map(string)
}

variable "stack_image" {
  description = "Container image the stack runs from (docker, NVIDIA runtime); empty: stack_command is a program of the machine image"
  type        = string
  default     = ""
}
