#!/usr/bin/env bash
# An export-control contingency rehearsed end to end on one machine: three
# bring-your-own hosts, each OpenSSH's sshd in a network namespace this test
# creates — a "CN" host with an H20, an "FI" host with an H100 and an "SG"
# host with an L40S — and a scenario for a CN-headquartered company whose
# rules (Beijing's H20 guidance, the US advanced-computing licence rule, a
# residency allow-list, the model's export fields read from the registry
# before T0) leave exactly one lawful host. `rehearse --plan` must say so
# with the rule of every denial; `rehearse` must run a real tinylm drill
# there, and the record and the journal must name that host and the denied
# ones with their rules. Then: no lawful host (exit 3, nothing run, nothing
# journaled), bad input (exit 2 with file:line:col), and nothing left behind:
# no workspace, lock or process on any host, no namespace after the servers
# are stopped.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sshd.sh"

export HOME=$T/home XDG_STATE_HOME=$T/xdg
unset SSH_AUTH_SOCK
mkdir -p "$HOME"

REG="$T/registry"
make_registry "$REG" 1
STATE="$T/state"

declare -A ADDR PORT NSN WD
for h in cn-h20 fi-h100 sg-l40s; do
	sshd_start_netns "$T/sshd-$h"
	ADDR[$h]=$SSHD_HOST
	PORT[$h]=$SSHD_PORT
	NSN[$h]=$SSHD_NETNS
	WD[$h]=$T/remote-$h
	cat "$SSHD_KNOWN_HOSTS" >>"$T/known_hosts"
	# one user key for all three hosts
	if [ "$h" = cn-h20 ]; then
		KEY=$SSHD_USER_KEY
	else
		cp "$KEY.pub" "$T/sshd-$h/authorized_keys"
	fi
done
check "three namespaces up" test "$(ip netns list | grep -c "^rh-sshd-$$-")" -eq 3

jq -n --arg user "$SSHD_USER" \
	--arg a1 "${ADDR[cn-h20]}" --argjson p1 "${PORT[cn-h20]}" --arg w1 "${WD[cn-h20]}" \
	--arg a2 "${ADDR[fi-h100]}" --argjson p2 "${PORT[fi-h100]}" --arg w2 "${WD[fi-h100]}" \
	--arg a3 "${ADDR[sg-l40s]}" --argjson p3 "${PORT[sg-l40s]}" --arg w3 "${WD[sg-l40s]}" \
	'{hosts: [
	{name: "cn-h20", address: $a1, port: $p1, user: $user, region: "cn-north",
	 jurisdiction: {country: "CN", bloc: "CN"}, accelerators: ["H20-96GB"],
	 workdir: $w1, serve_host: $a1, port_range: [18600, 18699]},
	{name: "fi-h100", address: $a2, port: $p2, user: $user, region: "eu-north",
	 jurisdiction: {country: "FI", bloc: "EU"}, accelerators: ["H100-80GB"],
	 workdir: $w2, serve_host: $a2, port_range: [18600, 18699]},
	{name: "sg-l40s", address: $a3, port: $p3, user: $user, region: "ap-southeast",
	 jurisdiction: {country: "SG", bloc: "SG"}, accelerators: ["L40S"],
	 workdir: $w3, serve_host: $a3, port_range: [18600, 18699]}]}' >"$T/inventory.json"

scenario() { # OUT [extra jq filter]
	jq -n --arg rb "$RH_SRC/runbooks/tinylm-ssh.json" --arg inv "$T/inventory.json" '{
	  rehydra_scenario: 1, name: "h20-and-h100-unavailable-cn",
	  description: "a CN-headquartered company may use neither the H20 nor H100-class parts",
	  runbook: $rb, inventory: $inv,
	  entity: {name: "Example Co", hq_country: "CN"},
	  constraints: {countries: ["CN", "FI", "SG"], providers: ["ssh"]},
	  policy: ["us-ear-advanced-computing", "cn-h20-guidance", "data-residency",
	           "model-export"],
	  prefer: ["ssh"], cadence_days: 7, rto_target_s: 45}' | jq "${2:-.}" >"$1"
}
scenario "$T/scenario.json"
VARS=(--var registry="$REG" --var known_hosts="$T/known_hosts" --var identity_file="$KEY")

# 1. The plan: exactly one lawful host, and why the others are not.
set +e
"$REHYDRA" rehearse "$T/scenario.json" --plan --json "${VARS[@]}" >"$T/plan.json" 2>"$T/plan.err"
RC=$?
set -e
expect_eq "plan: exit code" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/plan.err"
expect_eq "plan: the shape" '["candidates","chosen","scenario"]' \
	"$(jq -c '[keys[] | select(. == "scenario" or . == "chosen" or . == "candidates")]' \
		"$T/plan.json")"
expect_eq "plan: scenario name" h20-and-h100-unavailable-cn "$(jq -r .scenario.name "$T/plan.json")"
expect_eq "plan: chosen" "ssh ap-southeast L40S sg-l40s" \
	"$(jq -r '.chosen | "\(.provider) \(.region) \(.accelerator) \(.host)"' "$T/plan.json")"
expect_eq "plan: exactly one allowed candidate" 1 \
	"$(jq '[.candidates[] | select(.allowed)] | length' "$T/plan.json")"
expect_eq "plan: the CN host is denied by Beijing's H20 guidance" cn-h20-guidance \
	"$(jq -r '.candidates[] | select(.host == "cn-h20") | [.reasons[] | select(.effect == "deny")
	         | .rule] | join(",")' "$T/plan.json")"
expect_eq "plan: the FI host is denied by the US advanced-computing rule" \
	us-ear-advanced-computing \
	"$(jq -r '.candidates[] | select(.host == "fi-h100") | [.reasons[] | select(.effect == "deny")
	         | .rule] | join(",")' "$T/plan.json")"
check "plan: every candidate has allowed and reasons with rule and message" \
	jq -e 'all(.candidates[]; (.allowed | type) == "boolean" and
	       all(.reasons[]; (.rule | type) == "string" and (.message | type) == "string"))' \
	"$T/plan.json"
check "plan: cloud candidates are outside the constraints" \
	jq -e '[.candidates[] | select(.provider != "ssh")] | length > 0 and
	       all(.[]; .allowed == false)' "$T/plan.json"
check "plan: the model manifest was read (export allows *)" \
	bash -c "! jq -e '.. | objects | select(.rule? == \"model-export\")' '$T/plan.json' >/dev/null"
"$REHYDRA" rehearse "$T/scenario.json" --plan "${VARS[@]}" >"$T/plan.txt"
check "plan (text): names the chosen host" grep -q "chosen   ssh ap-southeast L40S (host sg-l40s)" \
	"$T/plan.txt"
check "plan (text): shows the runbook plan on it" \
	grep -q "runbook  tinylm-ssh on ssh:ap-southeast (L40S), rto target 45 s" "$T/plan.txt"

# 2. The rehearsal: a real tinylm drill on the SG host.
set +e
"$REHYDRA" rehearse "$T/scenario.json" --json --state-dir "$STATE" "${VARS[@]}" \
	>"$T/rec.json" 2>"$T/rec.err"
RC=$?
set -e
expect_eq "rehearse: exit code" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/rec.err"
expect_eq "rehearse: verdict" met "$(jq -r .verdict "$T/rec.json")"
expect_eq "rehearse: scenario recorded" h20-and-h100-unavailable-cn "$(jq -r .scenario "$T/rec.json")"
expect_eq "rehearse: the scenario's rto target replaced the runbook's" 45 \
	"$(jq -r .rto_target_s "$T/rec.json")"
expect_eq "rehearse: record names the chosen host" sg-l40s \
	"$(jq -r .rehearsal.chosen.host "$T/rec.json")"
prov='.steps[] | select(.id=="provision") | .outputs'
expect_eq "rehearse: the drill ran on the SG host's address" "${ADDR[sg-l40s]}" \
	"$(jq -r "$prov.host" "$T/rec.json")"
expect_eq "rehearse: record names the denied hosts with their rules" \
	"cn-h20:cn-h20-guidance fi-h100:us-ear-advanced-computing" \
	"$(jq -r '[.rehearsal.denied[] | select(.host) | "\(.host):\(.rules | join(","))"]
	         | join(" ")' "$T/rec.json")"
check "rehearse: record carries the policy and catalog dates" \
	jq -e '(.rehearsal.policy | length) == 2 and all(.rehearsal.policy[]; .as_of | test("^[0-9]{4}-"))
	       and ([.rehearsal.catalog[] | select(.as_of)] | length) == 3' "$T/rec.json"
check "rehearse: the service answered" jq -e '.rto_s > 0 and .rto_s <= 45' "$T/rec.json"
echo "# rehearsal on sg-l40s: rto $(jq -r .rto_s "$T/rec.json") s, critical path $(jq -r '.critical_path | join(" -> ")' "$T/rec.json" 2>/dev/null)"
check "rehearse: the journal has the decision" \
	jq -e -s 'map(select(.record.rehearsal.chosen.host? == "sg-l40s")) | length == 1' \
	"$STATE/journal/journal.jsonl"
check "rehearse: the journal verifies" "$REHYDRA" audit verify --state-dir "$STATE"
id=$(jq -r .drill_id "$T/rec.json")

# 3. The SG host lost too: nothing lawful is left, a finding (exit 3); nothing runs.
scenario "$T/none.json" '.lost = [{"country": "SG"}]'
set +e
"$REHYDRA" rehearse "$T/none.json" --plan --json "${VARS[@]}" >"$T/none.plan" 2>/dev/null
RC=$?
set -e
expect_eq "no lawful host: --plan exit code" 3 "$RC"
expect_eq "no lawful host: chosen is null" null "$(jq -c .chosen "$T/none.plan")"
check "no lawful host: the SG host says it is lost" \
	jq -e '.candidates[] | select(.host == "sg-l40s") | .reasons[] | select(.rule == "lost")' \
	"$T/none.plan"
before=$(wc -l <"$STATE/journal/journal.jsonl")
set +e
"$REHYDRA" rehearse "$T/none.json" --state-dir "$STATE" "${VARS[@]}" >/dev/null 2>"$T/none.err"
RC=$?
set -e
expect_eq "no lawful host: rehearse exit code" 3 "$RC"
check "no lawful host: says the contingency cannot be met" grep -q "cannot be met" "$T/none.err"
expect_eq "no lawful host: nothing journaled" "$before" "$(wc -l <"$STATE/journal/journal.jsonl")"

# 4. Bad input: a typo is located and nothing runs.
scenario "$T/typo.json" '. + {"cadense_days": 7}'
set +e
"$REHYDRA" rehearse "$T/typo.json" --plan >/dev/null 2>"$T/typo.err"
RC=$?
set -e
expect_eq "typo: exit code" 2 "$RC"
check "typo: file:line:col and a suggestion" \
	grep -qE "typo.json:[0-9]+:[0-9]+: error: unknown key 'cadense_days' in the scenario: did you mean 'cadence_days'\?" \
	"$T/typo.err"

# 5. Nothing left behind on any host, then no namespace once the servers stop.
for h in cn-h20 fi-h100 sg-l40s; do
	check "clean: no workspace or lock on $h" \
		bash -c "[ ! -e '${WD[$h]}/$id' ] && [ -z \"\$(ls -A '${WD[$h]}/locks' 2>/dev/null)\" ]"
	check "clean: no process in $h's namespace but sshd" \
		bash -c "! ip netns pids '${NSN[$h]}' | xargs -r ps -o comm= -p | grep -qv '^sshd$'"
done
check "clean: the other hosts were never touched" \
	bash -c "[ ! -e '${WD[cn-h20]}' ] && [ ! -e '${WD[fi-h100]}' ]"
sshd__exit
trap rh_cleanup EXIT
check "clean: no namespace left" bash -c "! ip netns list | grep -q '^rh-sshd-$$-'"
check "clean: no veth left" bash -c "! ip -o link show | grep -q 'rhv$$h'"
finish
