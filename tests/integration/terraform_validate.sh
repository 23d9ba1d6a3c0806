#!/usr/bin/env bash
# terraform_validate.sh - `terraform validate` of the module rehydra
# renders for AWS, with the REAL terraform and hashicorp/aws 5.100.0 from
# the local filesystem mirror: every resource type, argument and block of
# templates/common + templates/aws is checked against the provider's own
# schema, and the catalog's version range admits the mirrored release. A
# copy with one unknown argument must be refused (the check can fail).
# Without terraform or the mirror: a loud notice and exit 77 (skipped);
# provider_args.sh still checks the modules against the documented tables.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tfreal.sh"

tf_real_setup
if [ "$TF_REAL" != 1 ]; then
	tf_real_missing "the AWS module was NOT validated against the provider schema"
	exit 77
fi
export RH_CATALOG_DIR=$RH_SRC/providers/catalog RH_TEMPLATES_DIR=$RH_SRC/templates

tf() { TF_IN_AUTOMATION=1 "$TF_BIN" "$@"; }

acc=L40S # other classes differ only in the instance type's value
out=$T/aws-$acc
"$REHYDRA" render "$RH_SRC/runbooks/qwen3-nebius-to-aws.json" --target aws:us-east-1 \
	--accelerator "$acc" --drill-id 20260101T000000Z-validate-abcdef --out "$out" -q
if ! tf -chdir="$out" init -backend=false -input=false -no-color >"$T/init.log" 2>&1; then
	fail "aws: terraform init with the mirrored provider"
	cat "$T/init.log"
	finish
	exit 1
fi
check "aws: init selected hashicorp/aws $TF_AWS_VERSION from the mirror" \
	grep -q "version *= \"$TF_AWS_VERSION\"" "$out/.terraform.lock.hcl"
tf -chdir="$out" validate -json -no-color >"$T/validate.json" || true
expect_eq "aws: terraform validate of the rendered module" "true 0" \
	"$(jq -r '"\(.valid) \(.error_count)"' "$T/validate.json")"
jq -r '.diagnostics[] | "  \(.severity): \(.summary): \(.detail)"' "$T/validate.json"

# the control: one argument the schema does not have
bad=$T/aws-bad
cp -a "$out" "$bad"
sed -i 's/^  user_data_replace_on_change = true$/&\n  rehydra_bogus_argument      = true/' "$bad/module/main.tf"
check "control: the bogus argument went in" grep -q rehydra_bogus_argument "$bad/module/main.tf"
tf -chdir="$bad" validate -json -no-color >"$T/validate-bad.json" || true
expect_eq "control: terraform validate refuses an unknown argument" "false Unsupported argument" \
	"$(jq -r '"\(.valid) \(.diagnostics[0].summary)"' "$T/validate-bad.json")"

# The warm standby's module (templates/aws/standby/, with the module's
# versions.tf, as rehydra assembles it in STATE_DIR/cloud-standby/<key>/module)
sb=$T/aws-standby
mkdir -p "$sb"
cp "$RH_SRC/templates/aws/versions.tf" "$RH_SRC/templates/aws/standby/"*.tf "$sb/"
if tf -chdir="$sb" init -backend=false -input=false -no-color >"$T/init-sb.log" 2>&1; then
	tf -chdir="$sb" validate -json -no-color >"$T/validate-sb.json" || true
	expect_eq "aws standby: terraform validate of templates/aws/standby" "true 0" \
		"$(jq -r '"\(.valid) \(.error_count)"' "$T/validate-sb.json")"
	jq -r '.diagnostics[] | "  \(.severity): \(.summary): \(.detail)"' "$T/validate-sb.json"
else
	fail "aws standby: terraform init with the mirrored provider"
	cat "$T/init-sb.log"
fi

echo "used the real terraform: $TF_BIN, hashicorp/aws $TF_AWS_VERSION"
finish
