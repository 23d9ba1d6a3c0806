#!/usr/bin/env bash
# Pre-flight before T0: each check fails once on purpose against the real
# components (the demo registry made by git and git-lfs, the real tinylm
# stack, the real terraform binary whose init cannot reach the provider
# registry). Every failure must exit 2, provision nothing, journal the drill
# as `aborted` and stay out of the report's pass rate and RTO statistics.
# Then `--preflight-only` journals nothing, and a passing drill records its
# --var overrides, preflight_s and provenance. The ssh checks (unknown host
# key, busy lock) are in drill_ssh.sh, "terraform found" in
# terraform_driver.sh (the double).
. "$(dirname "$0")/lib.sh"

REG="$T/registry"
make_registry "$REG" 1
STATE="$T/state"
RB="$T/tinylm.json"
jq --arg reg "$REG" '.vars.registry = $reg' "$RH_SRC/runbooks/tinylm-local.json" >"$RB"

# drill NAME RUNBOOK [args]: --json record in $T/NAME.json, exit code in $RC
drill() {
	local name=$1 rb=$2
	shift 2
	set +e
	"$REHYDRA" drill "$rb" --state-dir "$STATE" --json "$@" >"$T/$name.json" 2>"$T/$name.err"
	RC=$?
	set -e
}
workspaces() { find "$STATE/workspaces" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
journaled() { # drill id -> its verdict in the journal
	jq -r --arg id "$1" 'select(.record.drill_id == $id) | .record.verdict' \
		"$STATE/journal/journal.jsonl"
}

# aborted NAME CHECK WORDS: the drill NAME failed pre-flight check CHECK,
# saying WORDS, with nothing created and an `aborted` journal entry.
aborted() {
	local name=$1 chk=$2 words=$3 id
	id=$(jq -r .drill_id "$T/$name.json")
	expect_eq "$name: exit 2" 2 "$RC"
	expect_eq "$name: the failed check is '$chk'" "$chk" \
		"$(jq -r '.preflight[-1] | select(.ok == false) | .check' "$T/$name.json")"
	check "$name: says '$words'" grep -qF -- "$words" "$T/$name.err"
	check "$name: says what to do next" grep -q "next: " "$T/$name.err"
	expect_eq "$name: no step ran" 0 \
		"$(jq '[.steps[] | select(.attempts > 0)] | length' "$T/$name.json")"
	expect_eq "$name: nothing provisioned" 0 "$(workspaces)"
	expect_eq "$name: journaled as aborted" aborted "$(journaled "$id")"
	check "$name: preflight_s recorded" jq -e '.preflight_s >= 0 and .rto_s == null' \
		"$T/$name.json"
}

# 1. registry: a --var that points nowhere
drill registry "$RB" --var registry="$T/nonexistent"
aborted registry registry "$T/nonexistent"
check "registry: the record holds the override" \
	jq -e --arg r "$T/nonexistent" '.provenance.var_overrides.registry == $r' "$T/registry.json"

# 2. model version: a version that was never published
jq '.model.version = "9.9"' "$RB" >"$T/rb-v99.json"
drill version "$T/rb-v99.json"
aborted version "model version" "9.9"

# 3. lfs objects: the registry lost its LFS objects
cp -a "$REG" "$T/reg-nolfs"
find "$T/reg-nolfs" -path '*lfs/objects/*' -type f -delete
drill lfs "$RB" --var registry="$T/reg-nolfs"
aborted lfs "lfs objects" "git lfs push --all"

# 4. credentials: env_allow names a variable that is not set (by name only)
jq '.env_allow = ["RH_PREFLIGHT_TOKEN_UNSET"]' "$RB" >"$T/rb-cred.json"
drill cred "$T/rb-cred.json"
aborted cred credentials "RH_PREFLIGHT_TOKEN_UNSET"
export RH_PREFLIGHT_SECRET=rh-secret-$RANDOM$RANDOM
jq '.env_allow = ["RH_PREFLIGHT_SECRET"] | .steps += [{"id": "nope", "do": "exec",
	"argv": ["rh-no-such-program-'$$'"], "after": ["provision"]}]' "$RB" >"$T/rb-exec.json"

# 5. exec programs: a program that is not installed
drill exec "$T/rb-exec.json"
aborted exec "exec programs" "rh-no-such-program-$$"
check "credentials: a set value never reaches the record" \
	bash -c "! grep -rqF '$RH_PREFLIGHT_SECRET' '$T/exec.json' '$T/exec.err' '$STATE/journal'"

# 6. terraform init: the real binary, with no way to reach the provider
#    registry (as when a mirror is missing): no VM, no alarm
if command -v terraform >/dev/null; then
	printf 'provider_installation {\n  direct {}\n}\n' >"$T/direct.tfrc"
	RH_CATALOG_DIR=$RH_SRC/providers/catalog RH_TEMPLATES_DIR=$RH_SRC/templates \
		TF_CLI_CONFIG_FILE=$T/direct.tfrc drill tfinit "$RH_SRC/tests/data/terraform/drill.json"
	aborted tfinit "terraform init" "Failed to query available provider packages"
	check "tfinit: terraform's own cause is on stderr" grep -q "registry.terraform.io" "$T/tfinit.err"
	check "tfinit: no teardown alarm" bash -c "! grep -q 'TEARDOWN INCOMPLETE' '$T/tfinit.err'"
else
	fail "terraform is not installed: the terraform init check was not tested"
fi

# 7. --preflight-only: runs the checks, journals nothing, leaves no drill
before=$(wc -l <"$STATE/journal/journal.jsonl")
set +e
"$REHYDRA" drill "$RB" --state-dir "$STATE" --preflight-only >"$T/only.out" 2>&1
RC=$?
set -e
expect_eq "preflight-only: exit 0" 0 "$RC"
check "preflight-only: lists the checks" grep -q "ok   lfs objects" "$T/only.out"
expect_eq "preflight-only: journals nothing" "$before" "$(wc -l <"$STATE/journal/journal.jsonl")"
set +e
"$REHYDRA" drill "$RB" --state-dir "$STATE" --preflight-only --var registry=/nonexistent \
	>"$T/only2.out" 2>&1
RC=$?
set -e
expect_eq "preflight-only: a failure exits 2" 2 "$RC"
expect_eq "preflight-only: a failure journals nothing either" "$before" \
	"$(wc -l <"$STATE/journal/journal.jsonl")"

# 8. a drill that passes: preflight_s beside the RTO, provenance recorded
drill ok "$RB" --var registry="$REG"
expect_eq "ok: exit 0" 0 "$RC"
check "ok: preflight_s beside the rto, not in it" jq -e '.preflight_s > 0 and .rto_s > 0' "$T/ok.json"
check "ok: the --var override is in the record" \
	jq -e --arg r "$REG" '.provenance.var_overrides.registry == $r' "$T/ok.json"
check "ok: effective vars and their sha256" \
	jq -e '.provenance.vars_sha256 | test("^[0-9a-f]{64}$")' "$T/ok.json"
check "ok: registry commit and manifest sha256" \
	jq -e '(.provenance.registry_commit | test("^[0-9a-f]{40}$")) and
	       .provenance.manifest_sha256 == .model.sha256' "$T/ok.json"
expect_eq "ok: model rpo (newest version restored)" 0 \
	"$(jq '.provenance.model_rpo.versions_behind' "$T/ok.json")"
expect_eq "ok: teardown complete" complete "$(jq -r .teardown "$T/ok.json")"
"$REHYDRA" audit show "$(jq -r .drill_id "$T/ok.json")" --state-dir "$STATE" >"$T/show.out"
check "audit show: prints the override" grep -q "var_overrides.registry" "$T/show.out"
check "audit show: prints the pre-flight" grep -q "ok   model version" "$T/show.out"

# audit diff: two drills side by side, and the input that made them differ
"$REHYDRA" audit diff "$(jq -r .drill_id "$T/registry.json")" "$(jq -r .drill_id "$T/ok.json")" \
	--state-dir "$STATE" >"$T/diff.out"
check "audit diff: the steps side by side" grep -qE "^  sync +pending - +ok [0-9.]+ s +\*" "$T/diff.out"
check "audit diff: names the --var that differs" grep -q "provenance.var_overrides.registry" "$T/diff.out"
"$REHYDRA" audit diff 1 2 --state-dir "$STATE" --json >"$T/diff.json"
check "audit diff --json: verdicts" jq -e '.verdict | length == 2' "$T/diff.json"

# 9. reports keep aborted drills in their own column, out of pass rate and RTO
"$REHYDRA" audit report --state-dir "$STATE" --format json --out "$T/r.json"
expect_eq "report: aborted counted apart" 5 "$(jq '[.groups[] | select(.runbook == "tinylm-local") | .aborted] | add' "$T/r.json")"
expect_eq "report: only the real drill counts" 1 "$(jq '[.groups[] | select(.runbook == "tinylm-local") | .drills] | add' "$T/r.json")"
expect_eq "report: pass rate ignores aborted drills" 1 "$(jq '[.groups[] | select(.runbook == "tinylm-local") | .pass_rate] | add' "$T/r.json")"
"$REHYDRA" audit report --state-dir "$STATE" --format md --out "$T/r.md"
check "report md: an aborted column" grep -q "| aborted |" "$T/r.md"

# 10. the HTML shows the evidence: every drill in a printable table (aborted
#     ones with their failed check), the journal's state and head hash, and
#     Chromium draws it
"$REHYDRA" audit report --state-dir "$STATE" --format html --out "$T/r.html"
check "html: journal verified" grep -q "verified, hash chain intact" "$T/r.html"
check "html: the head hash" grep -qF "$(tail -1 "$STATE/journal/journal.jsonl" | jq -r .hash)" "$T/r.html"
for name in registry version ok; do
	check "html: drill table lists $name" grep -qF ">$(jq -r .drill_id "$T/$name.json")<" "$T/r.html"
done
check "html: the table gives an aborted drill's failed check" \
	grep -qF "pre-flight check &#39;model version&#39; failed" "$T/r.html"
check "html: x axis by journal sequence" grep -q "journal sequence number" "$T/r.html"
PROF=$(mktemp -d)
timeout -k 5 60 chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
	--disable-component-update --disable-sync --no-first-run --user-data-dir="$PROF" \
	--screenshot="$T/r.png" --window-size=1200,1600 "file://$T/r.html" >"$T/chrome.log" 2>&1
rm -rf "$PROF"
check "html: chromium renders the report" test -s "$T/r.png"
if [ -n "${RH_KEEP_SCREENSHOT:-}" ]; then cp "$T/r.png" "$RH_KEEP_SCREENSHOT"; fi

# ergonomics: one typo gives one error; an inventory given to validate is named
set +e
"$REHYDRA" validate "$RH_SRC/tests/data/hostile/misspelt_do.json" >"$T/typo.out" 2>"$T/typo.err"
set -e
expect_eq "validate: a misspelt do gives one error, not follow-ons" 1 "$(grep -c error: "$T/typo.err")"
jq -n '{hosts: [{name: "h", address: "127.0.0.1", workdir: "/tmp/x"}]}' >"$T/inv.json"
set +e
"$REHYDRA" validate "$T/inv.json" >"$T/inv.out" 2>"$T/inv.err"
RC=$?
set -e
expect_eq "validate: an inventory is bad input" 2 "$RC"
check "validate: says it is an inventory and where it goes" \
	grep -q 'ssh inventory ("hosts"), not a runbook.*"inventory"' "$T/inv.err"
# plan resolves target.* the way the drill will: provision's outputs are
# provision's, not the runbook's "${vars.host}"
"$REHYDRA" plan "$RH_SRC/runbooks/tinylm-ssh.json" --var inventory="$T/inv.json" >"$T/plan.out"
check "plan: target.host comes from provision, not \${vars.host}" \
	grep -qF '${target.host} = (set at run time by step' "$T/plan.out"
# a missed verdict says by how much
jq '.rto_target_s = 0.001' "$RB" >"$T/rb-missed.json"
set +e
"$REHYDRA" drill "$T/rb-missed.json" --state-dir "$STATE" >"$T/missed.out" 2>&1
RC=$?
set -e
expect_eq "missed: exit 1" 1 "$RC"
check "missed: says by how much" grep -qE "missed by [0-9.]+ s" "$T/missed.out"

# a missing inventory file: named as it is, with the system's reason
set +e
"$REHYDRA" drill "$RH_SRC/runbooks/tinylm-ssh.json" --preflight-only --state-dir "$STATE" \
	--var registry="$REG" --var inventory="$T/no-such-inventory.json" >"$T/noinv.out" 2>&1
RC=$?
set -e
expect_eq "missing inventory: exit 2" 2 "$RC"
check "missing inventory: names the file, then why" \
	grep -qF "inventory $T/no-such-inventory.json: unable to open" "$T/noinv.out"

finish
