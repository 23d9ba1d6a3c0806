# The stand-in for templates/aws/main.tf in the real-terraform drill tests
# (tests/integration/terraform_real*.sh): terraform_data resources with
# local-exec provisioners, which need no cloud and no provider download,
# next to the real templates/common/ and templates/aws/{versions,inputs}.tf,
# so terraform itself evaluates the shared variables, outputs and the
# cloud-init document. RH_TEST_MODE in the stack env picks the scenario:
#   ok    every resource is created; "server" starts a real process that
#         the destroy-time provisioner stops
#   fail  "gate" fails with a diagnostic of its own
#   slow  "gate" sleeps RH_TEST_SLOW seconds (interrupted by the test)
#   leak  "server" refuses to be destroyed
# When var.s3_endpoint is a loopback s3rver (the tests' catalog), "server"
# also plays the instance's boot script: it creates the bucket and writes
# the boot phases to rehydra-boot/status.json, for teardown to read back.
# Test data only: never rendered for a user.

locals {
  bucket_name = var.bucket
  public_ip   = "127.0.0.1"
  instance_id = terraform_data.server.id

  mode = lookup(var.stack_env, "RH_TEST_MODE", "ok")
  gate = {
    ok   = "true"
    fail = "echo 'quota exceeded for test volume rh-7' >&2; exit 3"
    slow = "sleep ${lookup(var.stack_env, "RH_TEST_SLOW", "60")}"
    leak = "true"
  }

  boot_cloud = {
    endpoint    = var.s3_endpoint
    addressing  = "virtual"
    credentials = "instance"
  }
  boot_files = []

  # what boot.py reports, 10..60 s from now (shell for the test only)
  report_phases = <<-SH
    set -e
    s3() { curl -sSf --aws-sigv4 aws:amz:us-east-1:s3 -u "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"; }
    s3 -X PUT -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" '${var.s3_endpoint}/${var.bucket}' >/dev/null
    now=$(date +%s)
    body=$(printf '{"rehydra_boot": 1, "phases": [{"phase": "booted", "at": %s}, {"phase": "syncing", "at": %s}, {"phase": "verifying", "at": %s}, {"phase": "starting", "at": %s}, {"phase": "serving", "at": %s}]}' $((now + 10)) $((now + 20)) $((now + 27)) $((now + 30)) $((now + 60)))
    sha=$(printf '%s' "$body" | sha256sum | cut -d' ' -f1)
    printf '%s' "$body" | s3 -X PUT -H "x-amz-content-sha256: $sha" --data-binary @- '${var.s3_endpoint}/${var.bucket}/rehydra-boot/status.json' >/dev/null
  SH
}

resource "terraform_data" "network" {
  input = var.name
  provisioner "local-exec" {
    command = "sleep 1"
  }
}

resource "terraform_data" "gate" {
  depends_on = [terraform_data.network]
  input      = local.mode
  provisioner "local-exec" {
    command = local.gate[local.mode]
  }
}

resource "terraform_data" "server" {
  depends_on = [terraform_data.gate]
  input = {
    pidfile = "${abspath(path.root)}/server.pid"
    mode    = local.mode
  }
  provisioner "local-exec" {
    command = "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > '${self.input.pidfile}'"
  }
  provisioner "local-exec" {
    command = startswith(var.s3_endpoint, "http://127.0.0.1:") ? local.report_phases : "true"
  }
  provisioner "local-exec" {
    when    = destroy
    command = self.input.mode == "leak" ? "echo 'the server refuses to stop' >&2; exit 4" : "kill \"$(cat '${self.input.pidfile}')\" && rm '${self.input.pidfile}'"
  }
}

# The cloud-init document the instance would boot with, kept in the state
# for the test to read.
resource "terraform_data" "cloud_init" {
  input = local.user_data
}
