#!/usr/bin/env bash
# Warm standby on the `ssh` provider, against OpenSSH's sshd on loopback
# (a real sshd, keys made by ssh-keygen; no double). `registry sync --to
# RUNBOOK` pre-stages <workdir>/standby/tinylm on the inventory's host; a
# drill then sends 0 bytes, still verifies every file on the host
# (sha256sum against the manifest), gives its workspace hard links, and
# teardown leaves the standby in place. A byte changed in the standby
# behind the sink's back (same size and mtime, so the SFTP sink's records
# still vouch for it) is caught by that check and re-sent by the retry.
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
STANDBY="$WORKDIR/standby/tinylm"

sshd_start "$T/sshd"

jq -n --arg addr "$SSHD_HOST" --argjson port "$SSHD_PORT" --arg user "$SSHD_USER" \
	--arg wd "$WORKDIR" '{hosts: [
	{name: "lo-host", address: $addr, port: $port, user: $user, region: "eu-north",
	 accelerators: ["A10"], workdir: $wd, serve_host: $addr,
	 port_range: [18600, 18699]}]}' >"$T/inventory.json"
VARS=(--var registry="$REG" --var inventory="$T/inventory.json"
	--var known_hosts="$SSHD_KNOWN_HOSTS" --var identity_file="$SSHD_USER_KEY")

drill() { # OUT [runbook]: a drill with --json; exit code in $RC
	set +e
	"$REHYDRA" drill "${2:-$RUNBOOK}" "${VARS[@]}" --state-dir "$STATE" --json \
		>"$1" 2>"$1.err"
	RC=$?
	set -e
	[ "$RC" = 0 ] || cat "$1.err"
}
sync_out() { jq -r ".steps[] | select(.id==\"sync\") | .outputs.$2" "$1"; }

# 1. Pre-stage: the standby on the host receives every byte once.
set +e
"$REHYDRA" registry sync tinylm@1.0.0 --to "$RUNBOOK" "${VARS[@]}" --state-dir "$STATE" \
	--json >"$T/pre.json" 2>"$T/pre.err"
RC=$?
set -e
expect_eq "prestage: exit code" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/pre.err"
expect_eq "prestage: one standby, on the inventory's host" "lo-host" \
	"$(jq -r '[.standby[].standby.host] | join(" ")' "$T/pre.json")"
expect_eq "prestage: at <workdir>/standby/<model>" "$STANDBY" \
	"$(jq -r '.standby[0].standby.path' "$T/pre.json")"
TOTAL=$(jq -r '.standby[0].bytes_sent' "$T/pre.json")
check "prestage: sent the model ($TOTAL bytes)" test "$TOTAL" -gt 1000000
check "prestage: the standby holds the manifest" test -s "$STANDBY/manifest.json"

# 2. A warm drill: nothing crosses the network, everything is checked.
drill "$T/warm.json"
expect_eq "warm: exit code" 0 "$RC"
expect_eq "warm: verdict" met "$(jq -r .verdict "$T/warm.json")"
expect_eq "warm: 0 bytes sent" 0 "$(sync_out "$T/warm.json" bytes_sent)"
expect_eq "warm: every byte already present" "$TOTAL" "$(sync_out "$T/warm.json" bytes_present)"
expect_eq "warm: bytes_skipped kept" "$TOTAL" "$(sync_out "$T/warm.json" bytes_skipped)"
FILES=$(jq -r '.standby[0].files' "$T/pre.json")
expect_eq "warm: every file and the manifest verified on the host" "$((FILES + 1))" \
	"$(sync_out "$T/warm.json" verified_files)"
expect_eq "warm: the workspace got hard links" hardlink \
	"$(sync_out "$T/warm.json" workspace_files)"
expect_eq "warm: the record names the standby" "$STANDBY" "$(sync_out "$T/warm.json" standby)"
id=$(jq -r .drill_id "$T/warm.json")
expect_eq "warm: the stack read the workspace" "$WORKDIR/$id/model" \
	"$(sync_out "$T/warm.json" path)"
check "warm: teardown removed the workspace" test ! -e "$WORKDIR/$id"
check "warm: teardown released the lock" test ! -e "$WORKDIR/locks/lo-host"
check "warm: the standby is still there after teardown" \
	cmp -s "$STANDBY/manifest.json" <(git -C "$REG" show tinylm/1.0.0:models/tinylm/manifest.json)
shard=$(find "$STANDBY" -name 'weights-*' | head -n1)
expect_eq "warm: the standby's shard has no workspace link left" 1 "$(stat -c %h "$shard")"

# 3. A byte changed in the standby behind the sink's back (same size,
# same mtime): the check on the host catches it and the retry re-sends it.
size=$(stat -c %s "$shard")
cp -p "$shard" "$T/shard.orig"
printf 'X' | dd of="$shard" bs=1 seek=$((size / 2)) conv=notrunc status=none
touch -r "$T/shard.orig" "$shard"
jq '(.steps[] | select(.id=="sync")) += {"retries": 1}' "$RUNBOOK" >"$T/retry.json"
drill "$T/tamper.json" "$T/retry.json"
expect_eq "tamper: exit code" 0 "$RC"
expect_eq "tamper: the sync took two attempts" 2 \
	"$(jq -r '.steps[] | select(.id=="sync") | .attempts' "$T/tamper.json")"
expect_eq "tamper: the retry re-sent exactly the changed file" "$size" \
	"$(sync_out "$T/tamper.json" bytes_sent)"
check "tamper: the standby holds the right bytes again" cmp -s "$shard" "$T/shard.orig"

finish
