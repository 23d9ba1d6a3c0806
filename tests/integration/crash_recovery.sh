#!/usr/bin/env bash
# Crash recovery for rehydra itself: a drill killed with SIGKILL at
# different moments (before its first child, with the stack up, with an
# exec step and its grandchildren running) leaves an intent in
# STATE_DIR/intents; the next command that opens the state directory stops
# every process the drill started (found by the marker variable each child
# carries, checked here through /proc/*/environ), removes the workspace,
# journals the drill as `abandoned` and says so on stderr. A live drill's
# intent is never touched, and the journal verifies at the end.
. "$(dirname "$0")/lib.sh"

S="$T/state"
# Every process of the runbook is led by a shell whose $0 is TOKEN, so that
# should recovery fail, the exit trap still stops what this run started.
TOKEN="rh-crash-$$-$RANDOM"
cat >"$T/long.json" <<EOF2
{ "rehydra": 1, "name": "crashy", "rto_target_s": 60,
  "target": { "provider": "local", "region": "local" },
  "stack": { "command": ["/bin/sh", "-c", "/bin/sleep 300 & /bin/sleep 301; :", "$TOKEN"] },
  "steps": [
    { "id": "provision", "do": "provision" },
    { "id": "deploy", "do": "deploy", "after": ["provision"] },
    { "id": "side", "do": "exec", "argv": ["/bin/sh", "-c", "/bin/sleep 304; :", "$TOKEN"],
      "after": ["provision"], "timeout_s": 600 },
    { "id": "work", "do": "exec",
      "argv": ["/bin/sh", "-c", "/bin/sleep 302 & /bin/sleep 303; :", "$TOKEN"],
      "after": ["deploy"], "timeout_s": 600 },
    { "id": "teardown", "do": "teardown", "when": "always" } ] }
EOF2
stop_leftovers() {
	local p
	for p in $(pgrep -f -- "$TOKEN" || true); do
		kill -KILL -- "-$p" 2>/dev/null || true
	done
}
trap 'stop_leftovers; rh_cleanup' EXIT

# marked ID: pids of running processes that carry the drill's marker
marked() {
	grep -lsxz -- "REHYDRA_DRILL_ID=$1" /proc/[0-9]*/environ 2>/dev/null |
		sed 's#^/proc/\([0-9]*\)/environ$#\1#' || true
}
# groups FILE: how many process groups the intent names (0 while unreadable)
groups() { jq '.process_groups | length' "$1" 2>/dev/null || echo 0; }

# wait_for COND...: polls COND for up to 10 s
wait_for() {
	local i
	for i in $(seq 1 200); do
		if "$@"; then return 0; fi
		sleep 0.05
	done
	return 1
}
intent_with() { # intent_with N: an intent naming at least N process groups exists
	local f
	for f in "$S"/intents/*.json; do
		[ -f "$f" ] && [ "$(groups "$f")" -ge "$1" ] && return 0
	done
	return 1
}

ids=()
# iteration k is killed once the intent names k process groups (0: right
# after the intent appears, before any child may have started); the last
# one a moment after everything is up
for k in 0 1 2 3 3; do
	rm -f "$T/err"
	"$REHYDRA" drill "$T/long.json" --state-dir "$S" -q >"$T/drill.out" 2>&1 &
	pid=$!
	track "$pid"
	if ! wait_for intent_with "$k"; then
		fail "iteration $k: no intent with $k process groups appeared"
		cat "$T/drill.out"
		break
	fi
	[ "${#ids[@]}" -eq 4 ] && sleep 0.3
	f=$(ls "$S"/intents/*.json)
	id=$(jq -r .drill_id "$f")
	ids+=("$id")
	n=$(jq '.process_groups | length' "$f")
	if [ "$n" -gt 0 ]; then
		check "iteration $k: the drill's processes carry its marker" test -n "$(marked "$id")"
		# a command while the drill runs: a live intent is left alone
		"$REHYDRA" audit list --state-dir "$S" >/dev/null 2>"$T/live.err" || true
		check "iteration $k: a live drill is not recovered" \
			test -f "$f" -a -z "$(grep recovered "$T/live.err")"
		check "iteration $k: its processes still run" test -n "$(marked "$id")"
	fi
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
	check "iteration $k: the intent outlives the SIGKILL" test -f "$f"

	"$REHYDRA" audit list --state-dir "$S" >"$T/list.out" 2>"$T/err"
	check "iteration $k: the next command says what it recovered" grep -q \
		"recovered drill $id abandoned by a killed rehydra (pid $pid): stopped" "$T/err"
	left=$(marked "$id")
	check "iteration $k: no process of the drill is left ($left)" test -z "$left"
	check "iteration $k: no workspace is left" test ! -e "$S/workspaces/$id"
	check "iteration $k: the intent is gone" test ! -e "$f"
	check "iteration $k: abandoned in audit list" grep -q "abandoned" "$T/list.out"
done
cat "$T/err" 2>/dev/null || true

check "audit verify passes" "$REHYDRA" audit verify --state-dir "$S"
expect_eq "every killed drill is journaled once, as abandoned" "${#ids[@]}" \
	"$("$REHYDRA" audit list --state-dir "$S" --verdict abandoned --json | wc -l)"
for id in "${ids[@]}"; do
	"$REHYDRA" audit show --state-dir "$S" "$id" --json >"$T/show.json"
	expect_eq "audit show $id: abandoned" abandoned "$(jq -r .record.verdict "$T/show.json")"
done
# the record says what was found: the last drill had three groups up
expect_eq "the record names the stopped groups" 3 \
	"$(jq '.record.abandoned.process_groups | length' "$T/show.json")"
check "the drill directory holds the abandoned record" \
	test "$(jq -r .verdict "$S/drills/${ids[4]}/record.json")" = abandoned
"$REHYDRA" audit report --state-dir "$S" --format json >"$T/report.json"
expect_eq "report: abandoned drills counted apart" "5 0" \
	"$(jq -r '.groups[0] | "\(.abandoned) \(.drills)"' "$T/report.json")"
# a later command finds nothing more to do
"$REHYDRA" audit verify --state-dir "$S" >/dev/null 2>"$T/err"
check "nothing is recovered twice" test ! -s "$T/err"
check "no process of any killed drill is left" no_process_matching "$TOKEN"

# --- a cloud target: the next command runs terraform destroy --------------------
# With the terraform double (tests/doubles/terraform), scenario "slow": apply
# writes a state and hangs; rehydra is killed while it does.
export RH_CATALOG_DIR=$RH_SRC/providers/catalog RH_TEMPLATES_DIR=$RH_SRC/templates
export REHYDRA_TERRAFORM=$RH_SRC/tests/doubles/terraform TF_DOUBLE_DATA=$RH_SRC/tests/data/terraform
export TF_DOUBLE_SCENARIO=slow TF_DOUBLE_LOG=$T/cloud.calls
export AWS_ACCESS_KEY_ID=AKIDREHYDRATEST AWS_SECRET_ACCESS_KEY=rh-crash-secret
echo "the cloud case uses the terraform double: $REHYDRA_TERRAFORM"
C="$T/state-cloud"
"$REHYDRA" drill --no-color -q --state-dir "$C" "$RH_SRC/tests/data/terraform/drill.json" \
	>"$T/cloud.out" 2>&1 &
pid=$!
track "$pid"
applying() { grep -q '^apply' "$T/cloud.calls" 2>/dev/null && ls "$C"/drills/*/terraform/terraform.tfstate >/dev/null 2>&1; }
check "cloud: apply started and wrote a state" wait_for applying
f=$(ls "$C"/intents/*.json)
id=$(jq -r .drill_id "$f")
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
check "cloud: what the hanging apply started outlives the SIGKILL" test -n "$(marked "$id")"
"$REHYDRA" audit list --state-dir "$C" >/dev/null 2>"$T/err" || true
cat "$T/err"
check "cloud: the next command ran terraform destroy" grep -q \
	"recovered drill $id abandoned by a killed rehydra (pid $pid): .*terraform destroy: destroyed" "$T/err"
check "cloud: destroy ran in the drill's terraform dir" grep -q "^destroy -auto-approve" "$T/cloud.calls"
check "cloud: no terraform of the drill is left" test -z "$(marked "$id")"
expect_eq "cloud: the abandoned record says destroyed" destroyed \
	"$("$REHYDRA" audit show --state-dir "$C" "$id" --json | jq -r .record.abandoned.terraform_destroy)"
finish
