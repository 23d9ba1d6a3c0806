#!/usr/bin/env bash
# terraform_real.sh - a cloud drill (aws adapter) driven by the REAL
# terraform through the Terraform driver (providers/terraform.c): init
# with hashicorp/aws from the local filesystem mirror, apply -json, output
# -json, destroy -json and the leak check's state list, against a module of
# terraform_data resources with local-exec provisioners
# (tests/data/terraform/real/main.tf) next to the real shared templates:
#   ok    outputs and per-resource apply times from the real stream reach
#         the record; a process started by apply runs during the drill and
#         destroy stops it; the leak check reads the real, empty state; the
#         cloud-init document terraform built has no empty
#         ssh_authorized_keys and a boot unit that restarts without limit
#   fail  a failing provisioner: terraform's own diagnostic reaches the
#         error, teardown still destroys, the state is empty
# Without terraform or the mirror it says so loudly and exits 77 (skipped):
# terraform_driver.sh then replays the same scenarios with the double.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tfreal.sh"

tf_real_setup
if [ "$TF_REAL" != 1 ]; then
	tf_real_missing "terraform_driver.sh replays the success scenario with tests/doubles/terraform instead"
	exit 77
fi
tf_real_env

# s3rver as the region's object storage (a catalog copy points us-east-1 at
# it), so teardown can read the boot phases the "instance" reported
source "$(dirname "$0")/s3rver.sh"
s3rver_start "$T/s3data" || true
check "s3rver listens (port ${S3PORT:-none})" test -n "$S3PORT"
cp -r "$RH_SRC/providers/catalog" "$T/catalog"
jq --arg e "http://127.0.0.1:$S3PORT" '.regions["us-east-1"].object_storage = {endpoint: $e, style: "path"}' \
	"$RH_SRC/providers/catalog/aws.json" >"$T/catalog/aws.json"

# --- ok --------------------------------------------------------------------------
RH_CATALOG_DIR=$T/catalog AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER tf_real_drill ok
expect_eq "real ok: exit 0" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/ok.err"
expect_eq "real ok: the record names the real terraform" \
	"$("$TF_BIN" version -json | jq -r .terraform_version)" \
	"$(tf_step ok provision '.outputs.terraform.version')"
expect_eq "real ok: the provenance names the terraform version" \
	"$("$TF_BIN" version -json | jq -r .terraform_version)" \
	"$(jq -r .provenance.terraform.version "$T/ok.json")"
expect_eq "real ok: the provenance has the providers init selected" object \
	"$(jq -r '.provenance.terraform.providers | type' "$T/ok.json")"
expect_eq "real ok: the provenance dates the catalog" "$(jq -r .as_of "$T/catalog/aws.json")" \
	"$(jq -r .provenance.catalog.as_of "$T/ok.json")"
check "real ok: audit show prints the tool versions and the catalog date" bash -c \
	"'$REHYDRA' audit show \"\$(jq -r .drill_id '$T/ok.json')\" --state-dir '$T/state-ok' |
	 grep -q '^  terraform.version  *[0-9]' &&
	 '$REHYDRA' audit show \"\$(jq -r .drill_id '$T/ok.json')\" --state-dir '$T/state-ok' |
	 grep -q '^  catalog.as_of '"
expect_eq "real ok: every applied resource is in the record" \
	"module.rehydra.terraform_data.cloud_init module.rehydra.terraform_data.gate module.rehydra.terraform_data.network module.rehydra.terraform_data.server" \
	"$(tf_step ok provision '.outputs.terraform.resources | keys | join(" ")')"
NET_S=$(tf_step ok provision '.outputs.terraform.resources["module.rehydra.terraform_data.network"].elapsed_s')
check "real ok: the network's apply time comes from the real stream (its provisioner sleeps 1 s, got ${NET_S}s)" \
	awk -v s="$NET_S" 'BEGIN { exit !(s >= 1 && s < 30) }'
expect_eq "real ok: created, complete" "create complete" \
	"$(tf_step ok provision '.outputs.terraform.resources["module.rehydra.terraform_data.server"] | "\(.action) \(.status)"')"
expect_eq "real ok: outputs become target values" "http://127.0.0.1:8000 127.0.0.1 rehydra" \
	"$(tf_step ok provision '.outputs | "\(.endpoint) \(.host) \(.ssh_user)"')"
expect_eq "real ok: the process started by apply ran during the drill" ok \
	"$(tf_step ok alive '.status')"
SERVER_PID=$(cat "$(dirname "$WD")/server.pid.seen" 2>/dev/null || echo none)
expect_eq "real ok: destroy ran, the leak check read an empty real state" clean \
	"$(tf_step ok teardown '.outputs.leak_check')"
check "real ok: terraform state list is empty" tf_state_empty "$WD"
check "real ok: destroy stopped the process (its pid file is gone)" test ! -e "$WD/server.pid"
# destroy kills it; its exit (and reaping by init) is asynchronous: wait up to 5 s
check "real ok: and process $SERVER_PID is no longer running" bash -c '[ "$1" != none ] || exit 1
	for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || exit 0; sleep 0.1; done; exit 1' _ "$SERVER_PID"
expect_eq "real ok: teardown read the phases the instance reported, before destroy" \
	"booted syncing verifying starting serving" \
	"$(tf_step ok teardown '[.outputs.boot.phases[].phase] | join(" ")')"
expect_eq "real ok: the record splits the cloud RTO by them" "10 7 3 30" \
	"$(jq -r '.rto_breakdown | "\(.wait_for_model_s) \(.model_sync_s) \(.verification_s) \(.stack_start_s)"' "$T/ok.json")"
expect_eq "real ok: provision is the provision step's end" \
	"$(tf_step ok provision '.end_s')" "$(jq -r '.rto_breakdown.provision_s' "$T/ok.json")"
# the cloud-init document terraform evaluated from templates/common
CI=$T/cloud-init.yaml
jq -r '.resources[] | select(.type == "terraform_data" and .name == "cloud_init")
	| .instances[0].attributes.output.value' "$(dirname "$WD")/applied.tfstate" >"$CI"
check "real ok: terraform built a cloud-config" grep -q '^#cloud-config' "$CI"
check "real ok: no key given, so no ssh_authorized_keys at all (an empty list is a schema error)" \
	bash -c '! grep -q ssh_authorized_keys "$1"' _ "$CI"
check "real ok: the boot unit restarts after a delay" grep -q 'RestartSec=10' "$CI"
check "real ok: the boot unit has no start limit" grep -q 'StartLimitIntervalSec=0' "$CI"
check "real ok: stack.json carries the addressing style" grep -q '\\"addressing\\":\\"virtual\\"' "$CI"
check "real ok: stack.json carries stack.image, expanded" grep -q '\\"image\\":\\"registry.example/rh-test:ok\\"' "$CI"

# --- fail: a provisioner fails ------------------------------------------------------
tf_real_drill fail --var mode=fail
expect_eq "real fail: exit 3" 3 "$RC"
check "real fail: terraform's own diagnostic reaches the error" \
	grep -q "local-exec provisioner error" "$T/fail.err"
check "real fail: with the provisioner's message and exit status" \
	grep -q "quota exceeded for test volume rh-7.*\|exit status 3" "$T/fail.err"
check "real fail: the error names the resource" grep -q "module.rehydra.terraform_data.gate" "$T/fail.err"
expect_eq "real fail: the failed resource is in the record" errored \
	"$(tf_step fail provision '.outputs.terraform.resources["module.rehydra.terraform_data.gate"].status')"
expect_eq "real fail: teardown destroyed, the real state is empty" clean \
	"$(tf_step fail teardown '.outputs.leak_check')"
check "real fail: terraform state list is empty" tf_state_empty "$WD"

echo "used the real terraform: $TF_BIN"
finish
