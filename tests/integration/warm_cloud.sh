#!/usr/bin/env bash
# warm_cloud.sh - the warm standby of a cloud target (aws adapter), driven
# by the REAL terraform (hashicorp/aws 5.100.0 from the local mirror is
# what init loads) against terraform_data stand-ins for the cloud's
# resources (tests/data/terraform/real/main.tf for the drill,
# real/standby/main.tf for the standby bucket), with @20minutes/s3rver
# (SigV4-checking) as the region's object storage:
#   prestage  `registry sync --to RUNBOOK` applies the standby's own
#             Terraform state (STATE_DIR/cloud-standby/<key>/) and syncs the
#             model into <bucket>/tinylm/
#   warm      a drill grants its instance the standby (terraform.tfvars),
#             sends 0 bytes, and writes the drill bucket's sink manifest
#             pointing at the standby ("source"), with exactly the
#             version's files and their sha256; teardown destroys the
#             drill's state and never the standby
#   cold      a drill with no standby staged syncs into its own bucket and
#             says why
#   unstage   `registry unstage --to RUNBOOK` destroys the bucket through
#             its own state; a second unstage says there is none (exit 2)
# The instance's half (boot.py copying from the standby and refusing any
# other bucket) is boot_script.sh's. Without terraform or the mirror: a
# loud notice and exit 77 (skipped).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tfreal.sh"

tf_real_setup
if [ "$TF_REAL" != 1 ]; then
	tf_real_missing "the cloud warm standby was NOT exercised"
	exit 77
fi
tf_real_env
mkdir -p "$T/templates/aws/standby"
cp "$RH_SRC/tests/data/terraform/real/standby/main.tf" "$T/templates/aws/standby/"

source "$(dirname "$0")/s3rver.sh"
s3rver_start "$T/s3data" || true
check "s3rver listens (port ${S3PORT:-none})" test -n "$S3PORT"
S3=http://127.0.0.1:$S3PORT
cp -r "$RH_SRC/providers/catalog" "$T/catalog"
jq --arg e "$S3" '.regions["us-east-1"].object_storage = {endpoint: $e, style: "path"}' \
	"$RH_SRC/providers/catalog/aws.json" >"$T/catalog/aws.json"
export RH_CATALOG_DIR=$T/catalog AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
export TF_RH_TEST_S3=$S3

REG=$T/registry
make_registry "$REG" 1
RB=$RH_SRC/tests/data/terraform/warm-drill.json
STATE=$T/state

s3get() { # BUCKET KEY: the object's bytes on stdout
	curl -sSf --aws-sigv4 aws:amz:us-east-1:s3 -u S3RVER:S3RVER \
		-H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
		"$S3/$1/$2"
}
bucket_exists() {
	curl -sSf -o /dev/null --aws-sigv4 aws:amz:us-east-1:s3 -u S3RVER:S3RVER \
		-H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
		"$S3/$1?list-type=2"
}
drill() { # NAME [STATE]: a drill's record in $T/NAME.json, exit code in RC
	RC=0
	"$REHYDRA" drill --json --no-color --state-dir "${2:-$STATE}" --var registry="$REG" "$RB" \
		>"$T/$1.json" 2>"$T/$1.err" || RC=$?
	[ "$RC" = 0 ] || cat "$T/$1.err"
	local wd
	wd=$(ls -d "${2:-$STATE}"/drills/"$(jq -r .drill_id "$T/$1.json")"/terraform 2>/dev/null)
	[ -n "$wd" ] && [ -s "$wd/server.pid" ] && track "$(cat "$wd/server.pid")"
	return 0
}
sync_out() { jq -r ".steps[] | select(.id==\"sync\") | .outputs.$2" "$T/$1.json"; }
TOTAL=$(jq '[.files[].size] | add' "$REG/models/tinylm/manifest.json")

# --- cold: no standby staged ------------------------------------------------------
drill cold "$T/state-cold"
expect_eq "cold: exit 0" 0 "$RC"
expect_eq "cold: no standby in the record" null "$(sync_out cold standby)"
check "cold: the record says why the standby was not used" \
	bash -c "jq -r '.steps[] | select(.id==\"sync\") | .outputs.standby_unused' '$T/cold.json' |
		grep -q 'registry sync tinylm@VERSION --to RUNBOOK'"
expect_eq "cold: every byte sent to the drill's bucket" "$TOTAL" "$(sync_out cold bytes_sent)"

# --- prestage ---------------------------------------------------------------------
RC=0
"$REHYDRA" registry sync tinylm@1.0.0 --to "$RB" --var registry="$REG" --state-dir "$STATE" \
	--json >"$T/pre.json" 2>"$T/pre.err" || RC=$?
expect_eq "prestage: exit 0" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/pre.err"
SDIR=$(ls -d "$STATE"/cloud-standby/* 2>/dev/null | head -n1)
check "prestage: the standby has its own working directory under cloud-standby/" test -d "$SDIR"
BUCKET=$(jq -r .bucket "$SDIR/standby.json" 2>/dev/null)
check "prestage: standby.json names the bucket ($BUCKET)" bash -c "[[ '$BUCKET' == rh-sb-tf-warm-drill-* ]]"
expect_eq "prestage: the real terraform's state holds only the standby" \
	"module.standby.terraform_data.standby" "$(tf_state_list "$SDIR")"
check "prestage: the bucket exists on the object storage" bucket_exists "$BUCKET"
expect_eq "prestage: --json names the standby bucket" "bucket $BUCKET (aws us-east-1)" \
	"$(jq -r '.standby[0].standby.host' "$T/pre.json")"
expect_eq "prestage: every byte sent" "$TOTAL" "$(jq -r '.standby[0].bytes_sent' "$T/pre.json")"
s3get "$BUCKET" tinylm/manifest.json >"$T/standby-manifest.json" 2>/dev/null || true
check "prestage: the model is in the bucket under its name" \
	cmp -s "$T/standby-manifest.json" "$REG/models/tinylm/manifest.json"

# --- warm -------------------------------------------------------------------------
drill warm
expect_eq "warm: exit 0" 0 "$RC"
expect_eq "warm: 0 bytes sent" 0 "$(sync_out warm bytes_sent)"
expect_eq "warm: every byte already present" "$TOTAL" "$(sync_out warm bytes_present)"
expect_eq "warm: the record names the standby" "s3://$BUCKET/tinylm" \
	"$(sync_out warm standby | sed 's/?.*//')"
expect_eq "warm: every file checked against the standby's manifest" \
	"$(( $(jq '.files | length' "$REG/models/tinylm/manifest.json") + 1 ))" \
	"$(sync_out warm verified_files)"
WD=$STATE/drills/$(jq -r .drill_id "$T/warm.json")/terraform
expect_eq "warm: the instance was granted the standby" "$BUCKET" \
	"$(jq -r .standby_bucket "$WD/terraform.tfvars.json")"
DB=$(jq -r .name "$WD/terraform.tfvars.json")
s3get "$DB" model/.rehydra-sink.json >"$T/marker.json" 2>"$T/marker.err" || cat "$T/marker.err"
expect_eq "warm: the drill's sink manifest points at the standby" "$BUCKET tinylm" \
	"$(jq -r '"\(.source.bucket) \(.source.prefix)"' "$T/marker.json")"
expect_eq "warm: it lists exactly the version's files and sha256" \
	"$(jq -c '[.files[] | {(.path): .sha256}] | add' "$REG/models/tinylm/manifest.json")" \
	"$(jq -c '.files | del(.["manifest.json"]) | with_entries(.value = .value.sha256)' "$T/marker.json")"
expect_eq "warm: teardown destroyed the drill's state" "" "$(tf_state_list "$WD")"
expect_eq "warm: the standby's state is untouched" \
	"module.standby.terraform_data.standby" "$(tf_state_list "$SDIR")"
rm -f "$T/standby-manifest.json"
s3get "$BUCKET" tinylm/manifest.json >"$T/standby-manifest.json" 2>/dev/null || true
check "warm: the standby bucket still holds the model" \
	cmp -s "$T/standby-manifest.json" "$REG/models/tinylm/manifest.json"

# --- unstage ----------------------------------------------------------------------
RC=0
"$REHYDRA" registry unstage --to "$RB" --state-dir "$STATE" >"$T/unstage.out" 2>"$T/unstage.err" || RC=$?
expect_eq "unstage: exit 0" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/unstage.err"
check "unstage: names the bucket" grep -qF "bucket $BUCKET (aws us-east-1)" "$T/unstage.out"
if bucket_exists "$BUCKET" 2>/dev/null; then
	fail "unstage: the bucket is gone from the object storage"
else
	pass "unstage: the bucket is gone from the object storage"
fi
check "unstage: its working directory is gone" test ! -e "$SDIR"
RC=0
"$REHYDRA" registry unstage --to "$RB" --state-dir "$STATE" >/dev/null 2>"$T/again.err" || RC=$?
expect_eq "unstage again: exit 2" 2 "$RC"
check "unstage again: says there is none" grep -q "no warm standby for this target" "$T/again.err"

echo "used the real terraform: $TF_BIN, hashicorp/aws $TF_AWS_VERSION"
finish
