# The five values rehydra reads back with `terraform output -json`.

output "endpoint" {
  description = "Where the stack answers"
  value       = "http://${local.public_ip}:${var.serving_port}"
}

output "ssh_host" {
  value = local.public_ip
}

output "ssh_user" {
  value = var.ssh_user
}

output "bucket" {
  value = local.bucket_name
}

output "instance_id" {
  value = local.instance_id
}
