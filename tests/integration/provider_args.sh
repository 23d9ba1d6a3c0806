#!/usr/bin/env bash
# provider_args.sh - the alibaba and nebius modules against the providers'
# documented arguments. Their provider binaries cannot be installed here,
# so `terraform validate` (terraform_validate.sh, AWS) is replaced by a
# check of every argument the rendered module sets on a resource or data
# source (parsed by HashiCorp's HCL parser, tests/tools/tf-args.js) against
# the dated tables in tests/data/provider-args/, taken from the providers'
# docs (named in each table's header). An argument missing from the table
# or marked deprecated there fails; a control module with a deprecated and
# an unknown argument must fail.
source "$(dirname "$0")/lib.sh"

TOOLS=$RH_SRC/tests/tools
if [ ! -d "$TOOLS/node_modules/@cdktf/hcl2json" ] || ! command -v node >/dev/null; then
	echo "needs node and tests/tools (run tests/tools/install.sh)"
	exit 1
fi
export RH_CATALOG_DIR=$RH_SRC/providers/catalog RH_TEMPLATES_DIR=$RH_SRC/templates

# args_verdict TABLE FILE.tf...: prints one line per argument not allowed
args_verdict() {
	local table=$1
	shift
	node "$TOOLS/tf-args.js" "$@" >"$T/args.txt"
	echo "$(wc -l <"$T/args.txt") arguments" >"$T/args.count"
	while read -r kind arg; do
		line=$(grep -E "^$kind $arg( |$)" "$table" | head -n1 || true)
		if [ -z "$line" ]; then
			echo "$kind $arg: not in $(basename "$table") (the provider's docs)"
		elif [[ $line == *" deprecated "* ]]; then
			echo "$kind $arg: ${line#"$kind $arg "}"
		fi
	done <"$T/args.txt"
}

check_table() { # check_table TABLE: dated, names its doc pages
	check "$(basename "$1"): dated" grep -qE '^# .*as read on [0-9]{4}-[0-9]{2}-[0-9]{2}' "$1"
	check "$(basename "$1"): names the doc pages" grep -qE '^# .*docs' "$1"
}

declare -A TARGET=([alibaba]=alibaba:cn-beijing [nebius]=nebius:eu-north1)
declare -A ACCEL=([alibaba]=A10 [nebius]=H100-80GB)
declare -A TABLE=([alibaba]=alicloud [nebius]=nebius)
for p in alibaba nebius; do
	table=$RH_SRC/tests/data/provider-args/${TABLE[$p]}.txt
	check_table "$table"
	extra=()
	[ "$p" = nebius ] && extra=(--set project_id=project-e00args --set storage_group_id=group-e00args)
	"$REHYDRA" render "$RH_SRC/runbooks/qwen3-nebius-to-aws.json" --target "${TARGET[$p]}" \
		--accelerator "${ACCEL[$p]}" "${extra[@]}" --out "$T/$p" -q
	verdict=$(args_verdict "$table" "$T/$p"/module/*.tf)
	n=$(wc -l <"$T/args.txt")
	check "$p: the module sets arguments ($n found)" test "$n" -gt 20
	expect_eq "$p: every argument is documented and none is deprecated" "" "$verdict"
done

# the control: the deprecated alicloud arguments the audit found, and one
# that does not exist
mkdir -p "$T/bad" && cp "$T/alibaba"/module/*.tf "$T/bad/"
cat >>"$T/bad/main.tf" <<'TF'
resource "alicloud_ram_role" "old" {
  name     = "x"
  document = "{}"
}
resource "alicloud_instance" "old" {
  role_name          = "x"
  rehydra_no_such_arg = 1
}
TF
verdict=$(args_verdict "$RH_SRC/tests/data/provider-args/alicloud.txt" "$T/bad"/*.tf)
check "control: ram_role name is refused as deprecated" grep -q "alicloud_ram_role name: deprecated 1.252.0" <<<"$verdict"
check "control: ram_role document is refused as deprecated" grep -q "alicloud_ram_role document: deprecated" <<<"$verdict"
check "control: the instance's role_name is refused as deprecated" \
	grep -q "alicloud_instance role_name: deprecated 1.275.0" <<<"$verdict"
check "control: an unknown argument is refused" grep -q "rehydra_no_such_arg: not in alicloud.txt" <<<"$verdict"

finish
