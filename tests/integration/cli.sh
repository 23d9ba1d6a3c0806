#!/usr/bin/env bash
# The command-line surface: help (per command and per subcommand, generated
# from the option tables), version, usage errors with "did you mean" and
# their exit codes, --json of the reporting commands (parsed with jq),
# `plan` (no side effects, no secrets), and a plain exec drill whose
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

export RH_TEST_SECRET=s3cr3t-value

# help per subcommand: each prints its own usage, generated from its options
for cs in "audit verify" "audit list" "audit show" "audit report" "audit repair" "audit push" \
	"registry list" "registry show" "registry verify" "registry publish" "registry sync" \
	"registry unstage" "registry cache" "providers list" "providers show"; do
	check "$cs --help" out $cs --help
	check "$cs --help shows its own usage" grep -q "^usage: rehydra $cs" "$T/out"
	"$REHYDRA" ${cs%% *} --help >"$T/parent"
	check "$cs --help differs from ${cs%% *} --help" bash -c "! cmp -s '$T/out' '$T/parent'"
	check "help $cs is the same text" bash -c "'$REHYDRA' help $cs | cmp -s - '$T/out'"
done
out audit report --help
check "audit report --help lists --format" grep -q -- "--format F" "$T/out"
check "audit report --help lists the filters" grep -q -- "--verdict V" "$T/out"
out audit list --help
check "audit list --help has no --format" bash -c "! grep -q -- '--format' '$T/out'"
out registry sync --help
check "registry sync --help lists --to and --parallel" \
	bash -c "grep -q -- '--to TARGET' '$T/out' && grep -q -- '--parallel N' '$T/out'"
check "registry sync --help has no --license" bash -c "! grep -q -- '--license' '$T/out'"
out audit --help
check "audit --help lists the subcommands" grep -q "^  report " "$T/out"
expect_eq "-h works after a subcommand" 0 "$(rc_of registry sync -h)"
check "every --help line fits 80 columns" bash -c "for c in drill plan validate render \
	'audit report' 'registry sync'; do '$REHYDRA' \$c --help; done | awk 'length > 80 { exit 1 }'"

# did you mean: commands, subcommands, options (exit 2)
expect_eq "dril: exit 2" 2 "$(rc_of dril)"
check "dril: suggests drill" grep -q "did you mean 'drill'?" "$T/err"
expect_eq "audit lsit: exit 2" 2 "$(rc_of audit lsit)"
check "audit lsit: suggests list" grep -q "'lsit' is not a subcommand: did you mean 'list'?" "$T/err"
expect_eq "registry sycn: exit 2" 2 "$(rc_of registry sycn m@1)"
check "registry sycn: suggests sync" grep -q "did you mean 'sync'?" "$T/err"
expect_eq "drill --jsno: exit 2" 2 "$(rc_of drill --jsno "$D/parallel.json")"
check "drill --jsno: suggests --json" grep -q "unknown option '--jsno': did you mean '--json'?" "$T/err"
expect_eq "plan --vra: exit 2" 2 "$(rc_of plan --vra x=1 "$D/parallel.json")"
check "plan --vra: suggests --var" grep -q "did you mean '--var'?" "$T/err"
expect_eq "audit report --fromat: exit 2" 2 "$(rc_of audit report --fromat md)"
check "audit report --fromat: suggests --format" grep -q "did you mean '--format'?" "$T/err"
check "the error points at the subcommand's help" grep -q "see 'rehydra audit report --help'" "$T/err"
expect_eq "an option of another subcommand: exit 2" 2 "$(rc_of audit list --format md)"
expect_eq "help dril: exit 2" 2 "$(rc_of help dril)"
check "help dril: suggests drill" grep -q "did you mean 'drill'?" "$T/err"
expect_eq "registry sync --parallel 0: exit 2" 2 "$(rc_of registry sync m@1 --to file:///x --parallel 0)"
check "bad --parallel: names the range" grep -q "from 1 to 64, got '0'" "$T/err"
expect_eq "--state-dir without a value: exit 2" 2 "$(rc_of drill "$D/parallel.json" --state-dir)"
expect_eq "--quiet=1: exit 2" 2 "$(rc_of validate --quiet=1 "$D/parallel.json")"

# --json of the reporting commands parses, with the documented keys
check "plan --json" out plan --json "$D/parallel.json"
check "plan --json parses" jq -e . "$T/out"
expect_eq "plan --json: runbook name" parallel-sleeps "$(jq -r .runbook.name "$T/out")"
expect_eq "plan --json: steps in order" "a b emit use cleanup" "$(jq -r '[.steps[].id] | join(" ")' "$T/out")"
expect_eq "plan --json: phases" "main final" "$(jq -r '[.steps[].phase] | unique | reverse | join(" ")' "$T/out")"
expect_eq "plan --json: critical path" "a emit use" "$(jq -r '.critical_path.steps | join(" ")' "$T/out")"
check "plan --json: an env value is never shown" \
	jq -e '.variables[] | select(.ref == "env.RH_TEST_SECRET") | .value == null' "$T/out"
check "plan --json: a run-time value says where it comes from" \
	jq -e '.variables[] | select(.ref == "steps.emit.outputs.greeting") | (.note | test("emit"))' "$T/out"
check "plan --json: the tinylm plan parses" bash -c "'$REHYDRA' plan --json '$RH_SRC/runbooks/tinylm-local.json' | jq -e '.model.name == \"tinylm\"'"

check "validate --json (valid)" out validate --json "$D/parallel.json"
check "validate --json: valid" jq -e '.valid == true and .runbooks[0].valid and .runbooks[0].steps == 5 and (.runbooks[0].diagnostics | length) == 0' "$T/out"
expect_eq "validate --json invalid: the same exit code as without" \
	"$(rc_of validate "$D/invalid.json")" "$(rc_of validate --json "$D/invalid.json")"
expect_eq "validate --json invalid: exit 2" 2 "$(rc_of validate --json "$D/parallel.json" "$D/invalid.json")"
check "validate --json invalid: parses" jq -e '.valid == false' "$T/out"
check "validate --json invalid: the valid one is valid" jq -e '.runbooks[0].valid' "$T/out"
check "validate --json invalid: diagnostics with file, line, column, message" \
	jq -e '.runbooks[1].diagnostics | length == 2 and all(.[]; (.file | endswith("invalid.json"))
	and .line > 0 and .column > 0 and (.message | length) > 0)' "$T/out"
check "validate --json invalid: the unknown key, with its line" \
	jq -e '.runbooks[1].diagnostics | any(.line == 5 and (.message | test("did you mean .timeout_s.")))' "$T/out"
check "validate text names the same line" bash -c "'$REHYDRA' validate '$D/invalid.json' 2>&1 | grep -q 'invalid.json:5:'"
expect_eq "validate --json missing file: exit 2" 2 "$(rc_of validate --json "$T/nope.json")"
check "validate --json missing file: a diagnostic says why" \
	jq -e '.runbooks[0].valid == false and (.runbooks[0].diagnostics[0].message | length) > 0' "$T/out"

check "render --json" out render "$RH_SRC/runbooks/qwen3-nebius-to-aws.json" --target aws:us-east-1 \
	--accelerator L40S --out "$T/render" --json
check "render --json: parses, names the provider and the directory" \
	jq -e --arg d "$T/render" '.provider == "aws" and .region == "us-east-1" and
	.accelerator == "L40S" and .out == $d and (.drill_id | length) > 0' "$T/out"
check "render --json: wrote the tree" test -s "$T/render/main.tf.json"

check "providers list --json" out providers list --json
check "providers list --json: every provider" jq -e '[.providers[].name] | index("local") != null and index("aws") != null' "$T/out"
check "providers --json is providers list --json" bash -c "'$REHYDRA' providers --json | cmp -s - '$T/out'"
check "providers show --json keeps its keys" bash -c "'$REHYDRA' providers show aws --json | jq -e 'has(\"name\") and has(\"summary\") and has(\"target_keys\") and has(\"output_keys\") and has(\"catalog\")'"

# registry verify --json, on a registry published here
export HOME=$T/home GIT_CONFIG_GLOBAL=$T/home/.gitconfig GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
mkdir -p "$HOME" "$T/model"
: >"$GIT_CONFIG_GLOBAL"
git config --global user.name "CLI Tester"
git config --global user.email "cli@rehydra.invalid"
git init -q "$T/reg"
git -C "$T/reg" lfs install --local >/dev/null
head -c 65536 /dev/urandom >"$T/model/w.bin"
check "registry publish --json" out registry publish m@1 "$T/model" --registry "$T/reg" --json -q
check "registry publish --json: parses" jq -e '.name == "m" and .version == "1" and .files == 1' "$T/out"
check "registry verify --json" out registry verify m@1 --registry "$T/reg" --state-dir "$T/rs" --json
check "registry verify --json: ok" jq -e '.ok == true and .files == 1 and .bad_files == 0 and .total_bytes == 65536' "$T/out"
check "registry list --json keeps its shape" bash -c "'$REHYDRA' registry list --registry '$T/reg' --state-dir '$T/rs' --json | jq -e '.m == [\"1\"]'"

# audit list --json, on a journal the drill below writes; and exit codes of error paths
expect_eq "audit list --json without a journal: exit 2" 2 "$(rc_of audit list --json --state-dir "$T/nojournal")"
expect_eq "audit report --json with --format md: exit 2" 2 "$(rc_of audit report --json --format md --state-dir "$T/state")"
expect_eq "providers show without a name: exit 2" 2 "$(rc_of providers show)"
expect_eq "plan with two runbooks: exit 2" 2 "$(rc_of plan "$D/parallel.json" "$D/parallel.json")"

check "validate ok" out validate "$D/parallel.json" "$RH_SRC/runbooks/tinylm-local.json"
check "validate prints ok" grep -q "parallel.json: ok (5 steps)" "$T/out"

# validate and plan
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
check "audit list --json" out audit list --json --state-dir "$T/state"
check "audit list --json: every line parses" jq -e . "$T/out"
expect_eq "audit list --json: the drill, with its keys" "met parallel-sleeps" \
	"$(jq -r '[.verdict, .runbook] | join(" ")' "$T/out")"
check "audit verify --json" out audit verify --json --state-dir "$T/state"
check "audit verify --json: intact (genesis and the drill)" jq -e '.intact == true and .entries == 2' "$T/out"
check "audit report --json is the json report" bash -c "'$REHYDRA' audit report --json \
	--state-dir '$T/state' | jq -e '.groups | length == 1'"
unset RH_TEST_SECRET
expect_eq "env var allowed but unset: exit 2" 2 \
	"$(rc_of drill "$D/parallel.json" --state-dir "$T/state2")"
check "env var unset: says which" grep -q RH_TEST_SECRET "$T/err"
check "env var unset: nothing created" test ! -e "$T/state2"

finish
