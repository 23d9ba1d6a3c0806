# The cloud-init document every cloud's instance boots with, shared by the
# three modules. Each module supplies local.boot_cloud (its own keys of
# /etc/rehydra/stack.json: credentials mode, S3 endpoint and addressing)
# and local.boot_files (extra files, e.g. a credentials file). `standby` is
# the only other bucket the script may read the model from, when the
# drill's sink manifest points there (a warm standby).
#
# Built with yamlencode/jsonencode: runbook values are data, never YAML or
# shell text. A user without a key gets no ssh_authorized_keys at all (an
# empty list is a cloud-config schema error). The boot unit restarts after
# 10 s with no start limit (StartLimitIntervalSec=0): an early failure (apt
# lock, metadata timeout) is retried for as long as the drill lasts instead
# of leaving the unit failed after systemd's default 5 starts in 10 s.

locals {
  boot_config = merge({
    bucket      = var.bucket
    standby     = var.standby_bucket
    prefix      = var.artifact_prefix
    region      = var.region
    model_dir   = var.model_dir
    port        = var.serving_port
    command     = var.stack_command
    env         = var.stack_env
    image       = var.stack_image
    drill_id    = var.drill_id
    status_file = "/run/rehydra/status.json"
  }, local.boot_cloud)

  boot_user = merge({
    name  = var.ssh_user
    sudo  = "ALL=(ALL) NOPASSWD:ALL"
    shell = "/bin/bash"
    }, {
    for k, v in { ssh_authorized_keys = [var.ssh_public_key] } : k => v if var.ssh_public_key != ""
  })

  user_data = "#cloud-config\n${yamlencode({
    users = ["default", local.boot_user]
    write_files = concat([
      { path = "/etc/rehydra/stack.json", permissions = "0600", content = jsonencode(local.boot_config) },
      { path = "/usr/local/sbin/rehydra-boot", permissions = "0755", content = file("${path.module}/boot.py") },
    ], local.boot_files)
    runcmd = [["systemd-run", "--unit=rehydra-boot", "--property=Restart=on-failure",
      "--property=RestartSec=10", "--property=StartLimitIntervalSec=0",
    "/usr/bin/python3", "/usr/local/sbin/rehydra-boot", "/etc/rehydra/stack.json"]]
  })}"
}
