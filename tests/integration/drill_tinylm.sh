#!/usr/bin/env bash
# Real drills of the tinylm stack through the CLI, on the local target:
# restored within target (exit 0), target missed (exit 1), a stack that never
# becomes healthy (exit 3), and SIGINT in the middle (exit 130) - each time
# teardown must leave no process and no workspace behind.
. "$(dirname "$0")/lib.sh"

RUNBOOK="$RH_SRC/runbooks/tinylm-local.json"
REG="$T/registry"
make_registry "$REG" 4
STATE="$T/state"

# drill_json OUT RUNBOOK [args]: runs a drill with --json, stores the record
# in OUT and the exit code in $RC.
drill_json() {
	local out=$1 rb=$2
	shift 2
	set +e
	"$REHYDRA" drill "$rb" --var registry="$REG" --state-dir "$STATE" --json "$@" \
		>"$out" 2>"$out.err"
	RC=$?
	set -e
}

left_behind() { # drill id -> nothing may remain of it
	local id=$1
	[ ! -e "$STATE/workspaces/$id" ] && no_process_matching "$id"
}

# 1. Restored within target.
drill_json "$T/met.json" "$RUNBOOK"
expect_eq "met: exit code" 0 "$RC"
expect_eq "met: verdict" met "$(jq -r .verdict "$T/met.json")"
id=$(jq -r .drill_id "$T/met.json")
check "met: record written under the state dir" test -s "$STATE/drills/$id/record.json"
check "met: rto below target" jq -e '.rto_s > 0 and .rto_s <= .rto_target_s' "$T/met.json"
check "met: the demo load test held its slo" \
	jq -e '.load.step == "load" and .load.slo_met and .load.requests == 100 and .load.ttft_p95_ms > 0' "$T/met.json"
expect_eq "met: critical path ends at the probe" answer "$(jq -r '.critical_path[-1]' "$T/met.json")"
expect_eq "met: every step ok" "ok ok ok ok ok ok ok" \
	"$(jq -r '[.steps[].status] | join(" ")' "$T/met.json")"
check "met: overhead is small and non-negative" \
	jq -e '.overhead_s >= 0 and .overhead_s < .rto_s' "$T/met.json"
sha=$(jq -r '.steps[] | select(.id=="sync") | .outputs.sha256' "$T/met.json")
check "met: model sha256 is a digest" test ${#sha} -eq 64
expect_eq "met: record names the model" "$sha" "$(jq -r .model.sha256 "$T/met.json")"
expect_eq "met: record names the commit synced" "$(git -C "$REG" rev-parse tinylm/1.0.0^{commit})" \
	"$(jq -r .model.commit "$T/met.json")"
check "met: completion returned text" \
	jq -e '.steps[] | select(.id=="complete") | .status == "ok"' "$T/met.json"
check "met: nothing left behind" left_behind "$id"
check "met: stack log captured" test -s "$STATE/drills/$id/stack.stderr"

# 2. Restored, but the target missed.
jq '.rto_target_s = 0.001' "$RUNBOOK" >"$T/missed.json"
drill_json "$T/missed.out" "$T/missed.json"
expect_eq "missed: exit code" 1 "$RC"
expect_eq "missed: verdict" missed "$(jq -r .verdict "$T/missed.out")"
check "missed: nothing left behind" left_behind "$(jq -r .drill_id "$T/missed.out")"

# 3. Serving the wrong model never counts as restored.
jq '(.steps[] | select(.id=="answer") | .expect_json.model_sha256) = "0000"
    | (.steps[] | select(.id=="answer") | .timeout_s) = 2' "$RUNBOOK" >"$T/wrong.json"
drill_json "$T/wrong.out" "$T/wrong.json"
expect_eq "wrong model: exit code" 3 "$RC"
expect_eq "wrong model: verdict" failed "$(jq -r .verdict "$T/wrong.out")"
expect_eq "wrong model: probe timed out" timed_out \
	"$(jq -r '.steps[] | select(.id=="answer") | .status' "$T/wrong.out")"
check "wrong model: the error names the field" \
	jq -e '.steps[] | select(.id=="answer") | .error | test("model_sha256")' "$T/wrong.out"
expect_eq "wrong model: dependent step skipped" skipped \
	"$(jq -r '.steps[] | select(.id=="complete") | .status' "$T/wrong.out")"
expect_eq "wrong model: teardown ran" ok \
	"$(jq -r '.steps[] | select(.id=="teardown") | .status' "$T/wrong.out")"
check "wrong model: nothing left behind" left_behind "$(jq -r .drill_id "$T/wrong.out")"

# 4. A stack that never becomes healthy (never listens).
NEVER="600.4242$$" # unique to this run: other drills may run beside it
jq --arg t "$NEVER" '.stack.command = ["sleep", $t]
    | (.steps[] | select(.id=="answer") | .timeout_s) = 1.5' "$RUNBOOK" >"$T/never.json"
drill_json "$T/never.out" "$T/never.json"
expect_eq "never healthy: exit code" 3 "$RC"
expect_eq "never healthy: teardown ran" ok \
	"$(jq -r '.steps[] | select(.id=="teardown") | .status' "$T/never.out")"
check "never healthy: stack process gone" no_process_matching "$NEVER"
check "never healthy: nothing left behind" left_behind "$(jq -r .drill_id "$T/never.out")"
check "never healthy: the summary names the failed step" grep -q "answer" "$T/never.out.err"

# 5. SIGINT in the middle: the stack is up, the probe is waiting.
INT="600.4343$$"
jq --arg t "$INT" '.stack.command = ["sleep", $t]
    | (.steps[] | select(.id=="answer") | .timeout_s) = 120' "$RUNBOOK" >"$T/int.json"
"$REHYDRA" drill "$T/int.json" --var registry="$REG" --state-dir "$STATE" --json \
	>"$T/int.out" 2>"$T/int.err" &
pid=$!
track "$pid"
for _ in $(seq 1 200); do # up to 20 s for the stack to start
	pgrep -f "$INT" >/dev/null 2>&1 && break
	sleep 0.1
done
check "sigint: the stack was running" pgrep -f "$INT"
sleep 0.3
kill -INT "$pid"
set +e
wait "$pid"
RC=$?
set -e
expect_eq "sigint: exit code" 130 "$RC"
expect_eq "sigint: verdict" interrupted "$(jq -r .verdict "$T/int.out")"
expect_eq "sigint: probe cancelled" cancelled \
	"$(jq -r '.steps[] | select(.id=="answer") | .status' "$T/int.out")"
expect_eq "sigint: teardown ran" ok \
	"$(jq -r '.steps[] | select(.id=="teardown") | .status' "$T/int.out")"
check "sigint: stack process gone" no_process_matching "$INT"
check "sigint: nothing left behind" left_behind "$(jq -r .drill_id "$T/int.out")"

finish
