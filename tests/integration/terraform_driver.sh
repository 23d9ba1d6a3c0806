#!/usr/bin/env bash
# terraform_driver.sh - a cloud drill (aws adapter) end to end against the
# terraform test double, which checks its argv and environment and replays
# documented -json transcripts (tests/data/terraform/<scenario>/). The
# double is only for what the real terraform cannot produce on this
# machine, the cloud APIs' own errors:
#   apply-fails    exit 3, the error names the failed resource and the
#                  cloud's reason (InsufficientInstanceCapacity), teardown
#                  still runs destroy
#   destroy-fails  a loud TEARDOWN INCOMPLETE with the command to finish
#                  (BucketNotEmpty), the leak check lists what is left
#   no binary      the message says how to install OpenTofu/Terraform
# Success, per-resource times and Ctrl-C are proven with the real terraform
# in terraform_real.sh and terraform_real_stop.sh; only when the real one
# is missing do they run here, against the double, after a loud notice:
#   success        outputs and per-resource apply times reach the record,
#                  teardown destroys, the leak check is clean
#   slow + Ctrl-C  exit 130, terraform is stopped and destroy still runs
# Credentials never reach the record or the logs; variables other than the
# documented ones never reach terraform (the double rejects them).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tfreal.sh"
tf_real_setup
unset TF_CLI_CONFIG_FILE # the double's runs need no CLI config

RUNBOOK=$RH_SRC/tests/data/terraform/drill.json
# The source tree's catalog and templates, not the build directory's copies
# (a concurrent build rewrites those in place).
export RH_CATALOG_DIR=$RH_SRC/providers/catalog RH_TEMPLATES_DIR=$RH_SRC/templates
export REHYDRA_TERRAFORM=$RH_SRC/tests/doubles/terraform
export TF_DOUBLE_DATA=$RH_SRC/tests/data/terraform
SECRET=rh-secret-$RANDOM$RANDOM$RANDOM
export AWS_ACCESS_KEY_ID=AKIDREHYDRATEST AWS_SECRET_ACCESS_KEY=$SECRET
export RH_TEST_CANARY=must-not-reach-terraform

drill() { # drill SCENARIO NAME: runs one drill; sets RC, record in $T/NAME.json
	local scen=$1 name=$2
	RC=0
	TF_DOUBLE_SCENARIO=$scen TF_DOUBLE_LOG=$T/$name.calls \
		"$REHYDRA" drill --json --no-color --state-dir "$T/state-$name" "$RUNBOOK" \
		>"$T/$name.json" 2>"$T/$name.err" || RC=$?
}
step() { # step NAME ID JQ: a jq filter applied to step ID's record entry
	jq -r --arg id "$2" ".steps[] | select(.id == \$id) | $3" "$T/$1.json"
}
calls() { cut -d' ' -f1-2 "$T/$1.calls" | tr '\n' ',' ; }
no_secret() { ! grep -rqF -- "$SECRET" "$T/state-$1" "$T/$1.json" "$T/$1.err"; }

echo "this test uses the terraform double: $REHYDRA_TERRAFORM"
# REPLAY=1: run success and Ctrl-C against the double here, when the real
# terraform is missing or in the sanitizer build (whose run skips the
# terraform_real*.sh tests: see RH_ONCE_TESTS in tests/CMakeLists.txt).
REPLAY=0
if [ "$TF_REAL" != 1 ]; then
	tf_real_missing "replaying success and Ctrl-C with the double here instead"
	REPLAY=1
elif [ "${RH_SANITIZED:-0}" = 1 ]; then
	echo "sanitizer build: success and Ctrl-C replayed with the double (terraform_real*.sh run in the release build)"
	REPLAY=1
else
	echo "success and Ctrl-C: proven with the real terraform (terraform_real*.sh), not replayed here"
fi

# --- success -----------------------------------------------------------------
if [ "$REPLAY" = 1 ]; then
drill success ok
expect_eq "success: exit 0" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/ok.err"
expect_eq "success: terraform called in order" \
	"init -input=false,version -json,init -input=false,apply -auto-approve,output -no-color,destroy -auto-approve,state list," \
	"$(calls ok)"
expect_eq "success: per-resource apply time in the record" "42 complete create" \
	"$(step ok provision '.outputs.terraform.resources["module.rehydra.aws_instance.gpu"]
		| "\(.elapsed_s) \(.status) \(.action)"')"
expect_eq "success: every applied resource is recorded" 5 \
	"$(step ok provision '.outputs.terraform.resources | length')"
expect_eq "success: outputs become target values" \
	"http://192.0.2.10:8000 192.0.2.10 8000 rehydra rh-bucket-from-double i-0abc" \
	"$(step ok provision '.outputs | "\(.endpoint) \(.host) \(.port) \(.ssh_user) \(.bucket) \(.instance_id)"')"
expect_eq "success: placement with jurisdiction in the record" "US US g6e.xlarge L40S" \
	"$(step ok provision '.outputs.placement | "\(.jurisdiction.country) \(.jurisdiction.bloc) \(.instance_type) \(.accelerator)"')"
DRILL_DIR=$(ls -d "$T"/state-ok/drills/*)
check "success: \${target.endpoint} reached a later step" \
	grep -q "endpoint=http://192.0.2.10:8000 bucket=rh-bucket-from-double" "$DRILL_DIR/steps/show.stdout"
expect_eq "success: deploy says cloud-init starts the stack" cloud-init \
	"$(step ok start '.outputs.started_by')"
expect_eq "success: leak check clean" clean "$(step ok teardown '.outputs.leak_check')"
expect_eq "success: destroy times recorded" 31 \
	"$(step ok teardown '.outputs.terraform.resources["module.rehydra.aws_instance.gpu"].elapsed_s')"
WD=$DRILL_DIR/terraform
DRILL_ID=$(jq -r '.drill_id // .id' "$T/ok.json")
expect_eq "success: the working directory is the drill's, tagged with its id" \
	"$(tr 'A-Z' 'a-z' <<<"$DRILL_ID")" "$(jq -r '.labels["rehydra-drill"]' "$WD/terraform.tfvars.json")"
expect_eq "success: the stack was rendered for the instance" "serve --host 0.0.0.0 --port 8000" \
	"$(jq -r '.stack_command | join(" ")' "$WD/terraform.tfvars.json")"
check "success: the secret key is in no record, log or rendered file" no_secret ok
fi

# --- a resource fails --------------------------------------------------------
drill apply-fails fail
expect_eq "apply-fails: exit 3" 3 "$RC"
check "apply-fails: the error names the resource and the cloud's reason" \
	grep -q "module.rehydra.aws_instance.gpu: creating EC2 Instance: InsufficientInstanceCapacity" "$T/fail.err"
expect_eq "apply-fails: the failed resource is in the record" "errored 14" \
	"$(step fail provision '.outputs.terraform.resources["module.rehydra.aws_instance.gpu"] | "\(.status) \(.elapsed_s)"')"
expect_eq "apply-fails: teardown still destroyed" \
	"init -input=false,version -json,init -input=false,apply -auto-approve,destroy -auto-approve,state list," "$(calls fail)"
expect_eq "apply-fails: leak check clean" clean "$(step fail teardown '.outputs.leak_check')"
check "apply-fails: no secret leaked" no_secret fail

# --- destroy fails -------------------------------------------------------------
drill destroy-fails leak
expect_eq "destroy-fails: exit 4 although the service was restored" 4 "$RC"
expect_eq "destroy-fails: verdict still met" met "$(jq -r .verdict "$T/leak.json")"
expect_eq "destroy-fails: record says teardown incomplete" incomplete "$(jq -r .teardown "$T/leak.json")"
expect_eq "destroy-fails: TEARDOWN INCOMPLETE printed once" 1 "$(grep -c "TEARDOWN INCOMPLETE" "$T/leak.err")"
check "destroy-fails: names the resource and the reason" \
	grep -q "module.rehydra.aws_s3_bucket.artifacts: deleting S3 Bucket.*BucketNotEmpty" "$T/leak.err"
LEAK_WD=$(ls -d "$T"/state-leak/drills/*)/terraform
check "destroy-fails: gives the exact command to finish" \
	grep -qF "$REHYDRA_TERRAFORM -chdir=$LEAK_WD destroy -auto-approve" "$T/leak.err"
expect_eq "destroy-fails: the leak check lists what is left" '["module.rehydra.aws_s3_bucket.artifacts"]' \
	"$(step leak teardown '.outputs.leak_check | tojson')"
expect_eq "destroy-fails: teardown failed in the record" failed "$(step leak teardown '.status')"
expect_eq "destroy-fails: the record says the final phase failed" true \
	"$(jq -r '.final_phase_failed' "$T/leak.json")"
finish_cmd() { # what an operator would run: the printed command, in a clean environment
	env -i PATH="$PATH" HOME="$HOME" TF_IN_AUTOMATION=1 TF_INPUT=0 TF_DOUBLE_DATA="$TF_DOUBLE_DATA" \
		TF_DOUBLE_SCENARIO=success "$REHYDRA_TERRAFORM" -chdir="$LEAK_WD" destroy \
		-auto-approve -input=false -json >/dev/null &&
		[ -z "$(env -i PATH="$PATH" TF_IN_AUTOMATION=1 TF_INPUT=0 TF_DOUBLE_DATA="$TF_DOUBLE_DATA" \
			"$REHYDRA_TERRAFORM" -chdir="$LEAK_WD" state list)" ]
}
check "destroy-fails: the printed command finishes the job" finish_cmd
check "destroy-fails: no secret leaked" no_secret leak

# --- Ctrl-C in the middle of apply -----------------------------------------------
if [ "$REPLAY" = 1 ]; then
TF_DOUBLE_SCENARIO=slow TF_DOUBLE_LOG=$T/int.calls \
	"$REHYDRA" drill --json --no-color --state-dir "$T/state-int" "$RUNBOOK" \
	>"$T/int.json" 2>"$T/int.err" &
PID=$!
track $PID
for _ in $(seq 1 200); do
	grep -q '^apply' "$T/int.calls" 2>/dev/null && break
	sleep 0.05
done
sleep 0.5 # let the double replay and start hanging
kill -INT $PID
RC=0
wait $PID || RC=$?
expect_eq "ctrl-c: exit 130" 130 "$RC"
expect_eq "ctrl-c: terraform stopped, destroy still ran" \
	"init -input=false,version -json,init -input=false,apply -auto-approve,destroy -auto-approve,state list," "$(calls int)"
expect_eq "ctrl-c: leak check clean" clean "$(step int teardown '.outputs.leak_check')"
check "ctrl-c: no double left running" no_process_matching "$T/state-int"
fi

# --- init fails after pre-flight: nothing was applied, so no alarm ------------
drill init-fails-late initlate
expect_eq "init fails: exit 3 (not restored), not 4" 3 "$RC"
check "init fails: no teardown alarm" bash -c "! grep -q 'TEARDOWN INCOMPLETE' '$T/initlate.err'"
check "init fails: terraform's own cause on stderr" \
	grep -q "Failed to query available provider packages: Could not retrieve" "$T/initlate.err"
expect_eq "init fails: no apply, no destroy" "init -input=false,version -json,init -input=false," \
	"$(calls initlate)"
expect_eq "init fails: the provenance has the provider versions init selected (double)" \
	"1.11.4 5.100.0" \
	"$(jq -r '.provenance.terraform | "\(.version) \(.providers["registry.terraform.io/hashicorp/aws"])"' \
		"$T/initlate.json")"
expect_eq "init fails: record says teardown complete" complete \
	"$(jq -r .teardown "$T/initlate.json")"

# --- no binary -----------------------------------------------------------------
RC=0
env -u REHYDRA_TERRAFORM PATH=/nonexistent-rh "$(command -v env)" \
	"$REHYDRA" drill --no-color --state-dir "$T/state-nobin" "$RUNBOOK" >"$T/nobin.out" 2>&1 || RC=$?
expect_eq "no binary: bad input, exit 2" 2 "$RC"
check "no binary: says how to install one" grep -q "install OpenTofu" "$T/nobin.out"
check "no binary: nothing provisioned (no terraform working dir)" \
	bash -c "! ls -d '$T'/state-nobin/drills/*/terraform 2>/dev/null | grep -q ."
expect_eq "no binary: journaled as aborted" aborted \
	"$(jq -r .record.verdict "$T"/state-nobin/journal/journal.jsonl | grep -v null | tail -1)"

finish
