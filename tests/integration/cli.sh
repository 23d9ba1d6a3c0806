#!/usr/bin/env bash
# The command-line surface: help, version, usage errors and their exit
# codes, `plan` (no side effects, no secrets), and a plain exec drill whose
# parallel branches overlap.
. "$(dirname "$0")/lib.sh"

D="$RH_SRC/tests/data/cli"
out() { "$REHYDRA" "$@" >"$T/out" 2>"$T/err"; }
rc_of() { set +e; "$REHYDRA" "$@" >"$T/out" 2>"$T/err"; echo $?; set -e; }

check "--help lists the commands" out --help
check "--help mentions drill" grep -q "drill" "$T/out"
check "--version" out --version
check "--version prints the version" grep -Eq '^rehydra [0-9]+\.[0-9]+\.[0-9]+' "$T/out"
for c in drill plan validate help; do
	check "$c --help" out "$c" --help
	check "$c --help shows usage" grep -q "usage: rehydra $c" "$T/out"
done
check "help runbook lists step types" out help runbook
check "help runbook has http_probe" grep -q http_probe "$T/out"
check "help runbook has the local provider" grep -q local "$T/out"
check "help exit-codes" out help exit-codes
check "help exit-codes names 130" grep -q 130 "$T/out"
expect_eq "no command: exit 2" 2 "$(rc_of)"
expect_eq "unknown command: exit 2" 2 "$(rc_of frobnicate)"
check "unknown command: says so" grep -q "'frobnicate' is not a command" "$T/err"
expect_eq "drill without runbook: exit 2" 2 "$(rc_of drill)"
expect_eq "drill unknown option: exit 2" 2 "$(rc_of drill --frob x.json)"
check "drill unknown option: names it" grep -q -- "--frob" "$T/err"
expect_eq "missing runbook file: exit 2" 2 "$(rc_of validate "$T/nope.json")"
check "missing runbook: names the file" grep -q "nope.json" "$T/err"
expect_eq "bad --var: exit 2" 2 "$(rc_of drill --var novalue "$D/parallel.json")"
expect_eq "--var of an undeclared var: exit 2" 2 \
	"$(rc_of plan --var nosuch=1 "$D/parallel.json")"

# validate
export RH_TEST_SECRET=s3cr3t-value
check "validate ok" out validate "$D/parallel.json" "$RH_SRC/runbooks/tinylm-local.json"
check "validate prints ok" grep -q "parallel.json: ok (5 steps)" "$T/out"

# plan: shows the graph, the critical path and the variables; creates nothing
export XDG_STATE_HOME="$T/xdg"
check "plan ok" out plan "$RH_SRC/runbooks/tinylm-local.json"
check "plan: critical path" grep -q "provision -> sync -> start -> answer" "$T/out"
check "plan: run-time variable says where it comes from" \
	grep -q 'model.sha256} = (set at run time by step .sync.)' "$T/out"
check "plan: teardown in the final phase" grep -A3 "final phase" "$T/out"
check "plan: created nothing" test ! -e "$T/xdg"
check "plan with env" out plan "$D/parallel.json"
check "plan: env value not shown" grep -q 'env.RH_TEST_SECRET} = (from the environment, not shown)' "$T/out"
check "plan: secret never printed" bash -c "! grep -q s3cr3t-value '$T/out' '$T/err'"

# a plain exec drill: parallel branches, outputs flowing, env allowed
set +e
"$REHYDRA" drill "$D/parallel.json" --state-dir "$T/state" --json >"$T/rec.json" 2>"$T/tl"
rc=$?
set -e
expect_eq "exec drill: exit 0" 0 "$rc"
expect_eq "exec drill: verdict met" met "$(jq -r .verdict "$T/rec.json")"
check "exec drill: branches overlapped (rto < 1.0 s for two 0.5 s sleeps + chain)" \
	jq -e '.rto_s < 0.95' "$T/rec.json"
check "exec drill: outputs parsed" \
	jq -e '.steps[] | select(.id=="emit") | .outputs.greeting == "hi"' "$T/rec.json"
check "exec drill: always step ran" \
	jq -e '.steps[] | select(.id=="cleanup") | .status == "ok"' "$T/rec.json"
check "exec drill: secret not in the record" bash -c "! grep -rq s3cr3t-value '$T/state'"
check "exec drill: timeline on stderr" grep -q "use" "$T/tl"
check "exec drill: record file is 0600" \
	test "$(stat -c %a "$T/state/drills/$(jq -r .drill_id "$T/rec.json")/record.json")" = 600
unset RH_TEST_SECRET
expect_eq "env var allowed but unset: exit 2" 2 \
	"$(rc_of drill "$D/parallel.json" --state-dir "$T/state2")"
check "env var unset: says which" grep -q RH_TEST_SECRET "$T/err"
check "env var unset: nothing created" test ! -e "$T/state2"

finish
