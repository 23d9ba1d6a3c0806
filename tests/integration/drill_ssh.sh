#!/usr/bin/env bash
# A real drill of the tinylm stack on the `ssh` provider, against OpenSSH's
# sshd inside a network namespace this test creates (its own address): the
# host is reserved with a lock on the host, the model goes over SFTP, the
# stack is started over SSH and serves on the namespace's address. Then the
# same drill interrupted with SIGINT while the probe waits (teardown must
# leave no process, workspace or lock on the host), an unknown host key, and
# a busy host (locked by another drill).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sshd.sh"

export HOME=$T/home XDG_STATE_HOME=$T/xdg
unset SSH_AUTH_SOCK
mkdir -p "$HOME"

RUNBOOK="$RH_SRC/runbooks/tinylm-ssh.json"
REG="$T/registry"
make_registry "$REG" 1
STATE="$T/state"
WORKDIR="$T/remote"

sshd_start_netns "$T/sshd"
NS=$SSHD_NETNS

inventory() { # OUT [extra jq filter]
	jq -n --arg addr "$SSHD_HOST" --argjson port "$SSHD_PORT" --arg user "$SSHD_USER" \
		--arg wd "$WORKDIR" '{hosts: [
		{name: "busy-a100", address: "192.0.2.1", region: "eu-north",
		 accelerators: ["A100"], workdir: "/nonexistent"},
		{name: "ns-host", address: $addr, port: $port, user: $user, region: "eu-north",
		 jurisdiction: {country: "SE", bloc: "EU"}, accelerators: ["A10"],
		 workdir: $wd, serve_host: $addr, port_range: [18500, 18599]}]}' >"$1"
}
inventory "$T/inventory.json"

# drill OUT [args]: runs a drill with --json; exit code in $RC.
drill() {
	local out=$1
	shift
	set +e
	"$REHYDRA" drill "$RUNBOOK" --var registry="$REG" --var inventory="$T/inventory.json" \
		--var known_hosts="$SSHD_KNOWN_HOSTS" --var identity_file="$SSHD_USER_KEY" \
		--state-dir "$STATE" --json "$@" >"$out" 2>"$out.err"
	RC=$?
	set -e
}

host_clean() { # drill id: nothing of it remains on the "remote" host
	[ ! -e "$WORKDIR/$1" ] && [ ! -e "$WORKDIR/locks/ns-host" ] &&
		! ip netns exec "$NS" pgrep -f -- "$WORKDIR/$1" >/dev/null 2>&1
}

# 1. Restored within target.
drill "$T/met.json"
expect_eq "met: exit code" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/met.json.err"
expect_eq "met: verdict" met "$(jq -r .verdict "$T/met.json")"
expect_eq "met: the record names the reserved host and its jurisdiction" "ns-host SE" \
	"$(jq -r '"\(.target.host_name) \(.target.jurisdiction.country)"' "$T/met.json")"
check "met: the record's target is expanded (no \${vars.inventory})" \
	bash -c "! jq -r .target.inventory '$T/met.json' | grep -qF '\${'"
id=$(jq -r .drill_id "$T/met.json")
expect_eq "met: every step ok" "ok ok ok ok ok ok" \
	"$(jq -r '[.steps[].status] | join(" ")' "$T/met.json")"
prov='.steps[] | select(.id=="provision") | .outputs'
expect_eq "met: target.host is the namespace address" "$SSHD_HOST" \
	"$(jq -r "$prov.host" "$T/met.json")"
expect_eq "met: ssh_host" "$SSHD_HOST" "$(jq -r "$prov.ssh_host" "$T/met.json")"
expect_eq "met: ssh_user" "$SSHD_USER" "$(jq -r "$prov.ssh_user" "$T/met.json")"
expect_eq "met: workspace under the host's workdir" "$WORKDIR/$id" \
	"$(jq -r "$prov.workspace" "$T/met.json")"
check "met: port from the inventory's range" \
	jq -e "($prov.port) as \$p | \$p >= 18500 and \$p <= 18599" "$T/met.json"
expect_eq "met: the model path is the remote workspace" "$WORKDIR/$id/model" \
	"$(jq -r '.steps[] | select(.id=="sync") | .outputs.path' "$T/met.json")"
check "met: rto below target" jq -e '.rto_s > 0 and .rto_s <= .rto_target_s' "$T/met.json"
check "met: the stack's log came back from the host" test -s "$STATE/drills/$id/stack.stderr"
check "met: nothing left on the host" host_clean "$id"

# 2. SIGINT in the middle: the stack is up on the host, the probe is waiting.
MARK=600.47$$
# The stack's env carries shell syntax: it must reach the process as data.
INJ="\$(touch $T/pwned1)'\"; touch $T/pwned2; \`touch $T/pwned3\`"
jq --arg m "$MARK" --arg inj "$INJ" '.stack.command = ["sleep", $m]
    | .stack.env = {"RH_INJ": $inj}
    | (.steps[] | select(.id=="answer") | .timeout_s) = 120' "$RUNBOOK" >"$T/int.json"
"$REHYDRA" drill "$T/int.json" --var registry="$REG" --var inventory="$T/inventory.json" \
	--var known_hosts="$SSHD_KNOWN_HOSTS" --var identity_file="$SSHD_USER_KEY" \
	--state-dir "$STATE" --json >"$T/int.out" 2>"$T/int.err" &
pid=$!
track "$pid"
for _ in $(seq 1 200); do # up to 20 s for the stack to start
	pgrep -f "^sleep $MARK" >/dev/null 2>&1 && break # the stack itself, exec'd
	sleep 0.1
done
check "sigint: the stack was running on the host" \
	bash -c "ip netns exec '$NS' pgrep -f '600[.]47$$' >/dev/null"
check "sigint: the lock was held" test -d "$WORKDIR/locks/ns-host"
spid=$(pgrep -f "^sleep $MARK" | head -n1 || true)
check "sigint: the stack's env value arrived verbatim" \
	grep -qxF "RH_INJ=$INJ" <(tr '\0' '\n' <"/proc/$spid/environ")
check "sigint: nothing in the env value ran" \
	test ! -e "$T/pwned1" -a ! -e "$T/pwned2" -a ! -e "$T/pwned3"
sleep 0.3
kill -INT "$pid"
set +e
wait "$pid"
RC=$?
set -e
expect_eq "sigint: exit code" 130 "$RC"
expect_eq "sigint: verdict" interrupted "$(jq -r .verdict "$T/int.out")"
expect_eq "sigint: teardown ran" ok \
	"$(jq -r '.steps[] | select(.id=="teardown") | .status' "$T/int.out")"
# (the bracket keeps the checking shell's own command line from matching)
check "sigint: no stack process in the namespace" \
	bash -c "! ip netns exec '$NS' pgrep -f '600[.]47$$'"
id=$(jq -r .drill_id "$T/int.out")
check "sigint: no workspace on the host" test ! -e "$WORKDIR/$id"
check "sigint: no lock on the host" test ! -e "$WORKDIR/locks/ns-host"

# 3. A stack that cannot start: deploy says so, teardown cleans the host.
jq '.stack.command = ["/nonexistent/tinylm", "--port", "${target.port}"]' "$RUNBOOK" \
	>"$T/dead.json"
set +e
"$REHYDRA" drill "$T/dead.json" --var registry="$REG" --var inventory="$T/inventory.json" \
	--var known_hosts="$SSHD_KNOWN_HOSTS" --var identity_file="$SSHD_USER_KEY" \
	--state-dir "$STATE" --json >"$T/dead.out" 2>"$T/dead.err"
RC=$?
set -e
expect_eq "dead stack: exit code" 3 "$RC"
check "dead stack: deploy names the command and the reason" \
	jq -e '.steps[] | select(.id=="start") | .error
	       | test("nonexistent/tinylm exited right after starting.*not found")' "$T/dead.out"
check "dead stack: nothing left on the host" host_clean "$(jq -r .drill_id "$T/dead.out")"

# 4. An unknown host key: refused in pre-flight, with its fingerprint and
# the runbook key that accepts it; nothing is created; journaled aborted.
FP=$(ssh-keygen -l -E sha256 -f "$T/sshd/host_ed25519.pub" | cut -d' ' -f2)
: >"$T/kh_empty"
drill "$T/unknown.json" --var known_hosts="$T/kh_empty"
expect_eq "unknown host key: exit code (pre-flight)" 2 "$RC"
expect_eq "unknown host key: verdict aborted" aborted "$(jq -r .verdict "$T/unknown.json")"
expect_eq "unknown host key: the failed check" "ssh host" \
	"$(jq -r '.preflight[-1].check' "$T/unknown.json")"
check "unknown host key: names the runbook key that exists" \
	grep -qF '"accept_new_host_key": true in the target' "$T/unknown.json.err"
expect_eq "unknown host key: nothing ran" 0 "$(jq '[.steps[] | select(.attempts > 0)] | length' \
	"$T/unknown.json")"
check "unknown host key: names the fingerprint" grep -qF "$FP" "$T/unknown.json.err"
check "unknown host key: nothing on the host" test ! -e "$WORKDIR/locks/ns-host"

# 5. A host another drill holds is not taken.
mkdir -p "$WORKDIR/locks/ns-host"
echo other-drill >"$WORKDIR/locks/ns-host/owner"
drill "$T/busy.json"
expect_eq "busy host: exit code (pre-flight)" 2 "$RC"
expect_eq "busy host: the failed check" "ssh lock" "$(jq -r '.preflight[-1].check' "$T/busy.json")"
check "busy host: says it is reserved" grep -q "reserved by another drill" "$T/busy.json.err"
expect_eq "busy host: the other drill's lock is kept" other-drill \
	"$(cat "$WORKDIR/locks/ns-host/owner")"
rm -rf "$WORKDIR/locks/ns-host"

# 6. A bad inventory is named with its field.
jq '.hosts[1].workdir = "relative/dir"' "$T/inventory.json" >"$T/bad.json"
cp "$T/bad.json" "$T/inventory.json"
drill "$T/bad.out"
check "bad inventory: fails" test "$RC" -ne 0
check "bad inventory: names the file and field" \
	grep -q "inventory .*inventory.json: hosts\[1\].workdir" "$T/bad.out.err"

finish
