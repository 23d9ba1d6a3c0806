#!/usr/bin/env bash
# terraform_real_stop.sh - the REAL terraform stopped and refused:
#   Ctrl-C   SIGINT to rehydra during a real apply (a provisioner is
#            sleeping): exit 130, terraform is stopped, destroy still runs
#            and the real `terraform state list` is empty afterwards
#   leak     a destroy-time provisioner fails: TEARDOWN INCOMPLETE, and the
#            leak check lists what the real state still holds
# Same module and fallback as terraform_real.sh.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tfreal.sh"

tf_real_setup
if [ "$TF_REAL" != 1 ]; then
	tf_real_missing "terraform_driver.sh replays the Ctrl-C scenario with tests/doubles/terraform instead"
	exit 77
fi
tf_real_env

# --- Ctrl-C during a real apply ------------------------------------------------------
SLOW=59.$$ # a sleep no other process on this machine runs
"$REHYDRA" drill --json --no-color --state-dir "$T/state-int" --var mode=slow --var "slow=$SLOW" \
	"$RH_SRC/tests/data/terraform/real-drill.json" >"$T/int.json" 2>"$T/int.err" &
PID=$!
track $PID
started=no
for _ in $(seq 1 600); do
	if grep -qs "terraform_data.gate: Provisioning with 'local-exec'" "$T"/state-int/drills/*/steps/provision.terraform-apply.stdout; then
		started=yes
		break
	fi
	sleep 0.1
done
expect_eq "ctrl-c: the real apply reached the sleeping provisioner" yes "$started"
check "ctrl-c: the provisioner's process is running" bash -c 'pgrep -f "sleep $1" >/dev/null' _ "$SLOW"
kill -INT $PID
RC=0
wait $PID || RC=$?
WD=$(ls -d "$T"/state-int/drills/*/terraform | head -n1)
expect_eq "ctrl-c: exit 130" 130 "$RC"
check "ctrl-c: the provisioner's process was stopped" no_process_matching "sleep $SLOW"
expect_eq "ctrl-c: the record says provision was cancelled" cancelled \
	"$(tf_step int provision '.status')"
check "ctrl-c: destroy still ran" test -s "$(dirname "$WD")/steps/teardown.terraform-destroy.stdout"
expect_eq "ctrl-c: the leak check read a clean real state" clean "$(tf_step int teardown '.outputs.leak_check')"
check "ctrl-c: terraform state list is empty" tf_state_empty "$WD"
check "ctrl-c: no terraform left running for this drill" no_process_matching "$WD"

# --- a resource that refuses to be destroyed ---------------------------------------
tf_real_drill leak --var mode=leak
LEAK_PID=$(cat "$WD/server.pid" 2>/dev/null || echo none)
check "leak: loud TEARDOWN INCOMPLETE" grep -q "TEARDOWN INCOMPLETE" "$T/leak.err"
check "leak: terraform's diagnostic names the resource" \
	grep -q "module.rehydra.terraform_data.server.*the server refuses to stop" "$T/leak.err"
# server refused, so gate and network (which it depends on) stay too
expect_eq "leak: the leak check lists what the real state holds" \
	'["module.rehydra.terraform_data.gate","module.rehydra.terraform_data.network","module.rehydra.terraform_data.server"]' \
	"$(tf_step leak teardown '.outputs.leak_check | sort | tojson')"
expect_eq "leak: and that is what terraform state list says" \
	"$(tf_step leak teardown '.outputs.leak_check | sort | join(",")')" \
	"$(tf_state_list "$WD" | sort | paste -sd, -)"
check "leak: the printed command names this working directory" \
	grep -qF -- "-chdir=$WD destroy -auto-approve" "$T/leak.err"
# clean up what the test made refuse: the process and the state entry
[ "$LEAK_PID" != none ] && kill "$LEAK_PID" 2>/dev/null || true
(cd "$WD" && "$TF_BIN" state list -no-color | xargs -r "$TF_BIN" state rm -no-color >/dev/null) || true

echo "used the real terraform: $TF_BIN"
finish
