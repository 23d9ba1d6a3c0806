# shellcheck shell=bash
# tfreal.sh - finds the real terraform and the hashicorp/aws filesystem
# mirror for the tests that drive them (sourced, not run; after lib.sh).
#
# tf_real_setup: sets TF_REAL=1 when `terraform` is on PATH and a mirror
# holding registry.terraform.io/hashicorp/aws/5.100.0 exists (fixed places
# first, then `find / -maxdepth 6`), writes a CLI config that installs
# providers only from that mirror (no network installation) to
# $T/terraform.rc and exports TF_CLI_CONFIG_FILE for the runs. Otherwise
# TF_REAL=0 and TF_REAL_WHY says what is missing; every caller must print
# that loudly and fall back, never pass silently.
TF_AWS_VERSION=5.100.0

tf_find_mirror() {
	local c hit
	for c in /opt/tf-plugins /usr/share/terraform/plugins /usr/local/share/terraform/plugins \
		"$HOME/.terraform.d/plugins"; do
		if [ -d "$c/registry.terraform.io/hashicorp/aws/$TF_AWS_VERSION" ]; then
			echo "$c"
			return 0
		fi
	done
	hit=$(find / -maxdepth 6 -path "*hashicorp/aws/$TF_AWS_VERSION" -type d 2>/dev/null | head -n1)
	[ -n "$hit" ] || return 1
	dirname "$(dirname "$(dirname "$(dirname "$hit")")")"
}

tf_real_setup() {
	TF_REAL=0
	TF_REAL_WHY=
	TF_BIN=$(command -v terraform || true)
	if [ -z "$TF_BIN" ]; then
		TF_REAL_WHY="no terraform on PATH"
		return 0
	fi
	if ! TF_MIRROR=$(tf_find_mirror); then
		TF_REAL_WHY="no filesystem mirror with hashicorp/aws $TF_AWS_VERSION"
		return 0
	fi
	cat >"$T/terraform.rc" <<-RC
		provider_installation {
		  filesystem_mirror {
		    path    = "$TF_MIRROR"
		    include = ["registry.terraform.io/hashicorp/aws"]
		  }
		}
	RC
	export TF_CLI_CONFIG_FILE=$T/terraform.rc
	TF_REAL=1
	echo "REAL TERRAFORM: $TF_BIN ($("$TF_BIN" version -json | jq -r .terraform_version)), hashicorp/aws $TF_AWS_VERSION from the mirror $TF_MIRROR"
}

tf_real_missing() { # prints the loud notice for a fallback
	echo "############################################################"
	echo "## REAL TERRAFORM NOT USED: $TF_REAL_WHY"
	echo "## $1"
	echo "############################################################"
}

# tf_real_templates DIR: a templates tree for the real-terraform drills:
# the real templates/common/ and templates/aws/{versions,inputs}.tf with
# tests/data/terraform/real/main.tf in place of the cloud resources.
tf_real_templates() {
	local d=$1
	mkdir -p "$d/common" "$d/aws"
	find "$RH_SRC/templates/common" -maxdepth 1 -type f -exec cp {} "$d/common/" \;
	cp "$RH_SRC/templates/aws/versions.tf" "$RH_SRC/templates/aws/inputs.tf" "$d/aws/"
	cp "$RH_SRC/tests/data/terraform/real/main.tf" "$d/aws/main.tf"
}

# tf_real_drill NAME [--var K=V...]: one drill with the real terraform;
# sets RC, record in $T/NAME.json, stderr in $T/NAME.err, and WD to its
# Terraform working directory.
tf_real_drill() {
	local name=$1
	shift
	RC=0
	"$REHYDRA" drill --json --no-color --state-dir "$T/state-$name" "$@" \
		"$RH_SRC/tests/data/terraform/real-drill.json" >"$T/$name.json" 2>"$T/$name.err" || RC=$?
	WD=$(ls -d "$T/state-$name"/drills/*/terraform 2>/dev/null | head -n1)
	# a server process destroy did not stop is stopped at exit, by pid
	if [ -n "$WD" ] && [ -s "$WD/server.pid" ]; then
		track "$(cat "$WD/server.pid")"
	fi
}

# tf_step NAME ID JQ: a jq filter applied to step ID's record entry.
tf_step() {
	jq -r --arg id "$2" ".steps[] | select(.id == \$id) | $3" "$T/$1.json"
}

# tf_state_list DIR: what the real terraform has in that state.
tf_state_list() { # fails when there is no state to list
	[ -s "$1/terraform.tfstate" ] || { echo "no state file in $1"; return 1; }
	(cd "$1" && TF_IN_AUTOMATION=1 "$TF_BIN" state list -no-color)
}
tf_state_empty() { local out; out=$(tf_state_list "$1") && [ -z "$out" ]; }

tf_real_env() { # the drill's environment for the real-terraform runs
	export RH_CATALOG_DIR=$RH_SRC/providers/catalog RH_TEMPLATES_DIR=$T/templates
	export REHYDRA_TERRAFORM=$TF_BIN
	tf_real_templates "$T/templates"
}
