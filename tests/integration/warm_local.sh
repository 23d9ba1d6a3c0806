#!/usr/bin/env bash
# Warm standby on the `local` provider: `registry sync --to RUNBOOK`
# pre-stages <state dir>/standby/tinylm, a drill then sends 0 bytes and
# links the standby's files into its workspace (the same inodes), and
# teardown leaves the standby in place. A file changed in the standby is
# noticed by the file sink (its inode changed) and sent again; a step with
# "standby": false syncs into the workspace and leaves the standby alone;
# `registry unstage --to RUNBOOK` removes it.
. "$(dirname "$0")/lib.sh"

# The demo runbook without its 2-second load test: this is about the sync.
RUNBOOK="$T/tinylm-local.json"
jq 'del(.steps[] | select(.id=="load"))' "$RH_SRC/runbooks/tinylm-local.json" >"$RUNBOOK"
REG="$T/registry"
make_registry "$REG" 1
STATE="$T/state"
STANDBY="$STATE/standby/tinylm"

drill() { # OUT [runbook]: a drill with --json; exit code in $RC
	set +e
	"$REHYDRA" drill "${2:-$RUNBOOK}" --var registry="$REG" --state-dir "$STATE" --json \
		>"$1" 2>"$1.err"
	RC=$?
	set -e
	[ "$RC" = 0 ] || cat "$1.err"
}
sync_out() { jq -r ".steps[] | select(.id==\"sync\") | .outputs.$2" "$1"; }

# 1. Pre-stage: the standby gets the model, outside every workspace.
set +e
"$REHYDRA" registry sync tinylm@1.0.0 --to "$RUNBOOK" --var registry="$REG" \
	--state-dir "$STATE" >"$T/pre.out" 2>"$T/pre.err"
RC=$?
set -e
expect_eq "prestage: exit code" 0 "$RC"
check "prestage: says where the standby is" grep -qF "the standby on local at file://$STANDBY" \
	"$T/pre.out"
shard=$(find "$STANDBY" -name 'weights-*' | head -n1)
check "prestage: the standby holds the shard" test -s "$shard"
TOTAL=$(jq '[.files[].size] | add' "$STANDBY/manifest.json")

# 2. Warm: nothing sent, the workspace's files are the standby's inodes.
# A stack that records the inode it was given, then serves as tinylm does.
jq --arg t "$T" '.stack.command = ["sh", "-c",
    "stat -c %i \"$1\"/weights-* >\"$0\"/ino; shift; exec \"$@\"", $t, "${model.path}"]
    + .stack.command' "$RUNBOOK" >"$T/ino.json"
drill "$T/warm.json" "$T/ino.json"
expect_eq "warm: exit code" 0 "$RC"
expect_eq "warm: verdict" met "$(jq -r .verdict "$T/warm.json")"
expect_eq "warm: 0 bytes sent" 0 "$(sync_out "$T/warm.json" bytes_sent)"
expect_eq "warm: every byte already present" "$TOTAL" "$(sync_out "$T/warm.json" bytes_present)"
expect_eq "warm: hard links into the workspace" hardlink \
	"$(sync_out "$T/warm.json" workspace_files)"
expect_eq "warm: the stack read the standby's inode" "$(stat -c %i "$shard")" "$(cat "$T/ino")"
id=$(jq -r .drill_id "$T/warm.json")
check "warm: teardown removed the workspace" test ! -e "$STATE/workspaces/$id"
check "warm: the standby is still there" test -s "$shard" -a -s "$STANDBY/manifest.json"

# 3. A changed standby file is re-checked and sent again.
# (a new file renamed over it: the shard may share its inode with the
# registry's read-only LFS store, which must stay intact)
cp "$shard" "$T/changed" && chmod u+w "$T/changed"
printf 'X' | dd of="$T/changed" bs=1 seek=100 conv=notrunc status=none
mv -f "$T/changed" "$shard"
drill "$T/fix.json"
expect_eq "changed: exit code" 0 "$RC"
check "changed: the shard was sent again" \
	test "$(sync_out "$T/fix.json" bytes_sent)" -eq "$(stat -c %s "$shard")"

# 4. "standby": false: the cold path, the standby untouched.
jq '(.steps[] | select(.id=="sync")) += {"standby": false}' "$RUNBOOK" >"$T/cold.json"
before=$(stat -c %i.%Y "$shard")
drill "$T/cold.out" "$T/cold.json"
expect_eq "cold: exit code" 0 "$RC"
expect_eq "cold: no standby in the record" null "$(sync_out "$T/cold.out" standby)"
expect_eq "cold: nothing was already present" 0 "$(sync_out "$T/cold.out" bytes_present)"
expect_eq "cold: the standby untouched" "$before" "$(stat -c %i.%Y "$shard")"

# 5. Bad --to: neither a URL nor a runbook.
set +e
"$REHYDRA" registry sync tinylm@1.0.0 --to "$T/missing.json" --registry "$REG" \
	>/dev/null 2>"$T/bad.err"
RC=$?
set -e
expect_eq "bad --to: exit 2" 2 "$RC"
check "bad --to: says what it takes" grep -q "no such runbook file" "$T/bad.err"
set +e
"$REHYDRA" registry sync tinylm@1.0.0 --to "$RUNBOOK" --var registry="$REG" \
	--state-dir "$STATE" --known-hosts /dev/null >/dev/null 2>"$T/kh.err"
RC=$?
set -e
expect_eq "--to RUNBOOK with --known-hosts: exit 2" 2 "$RC"
check "--to RUNBOOK with --known-hosts: points at --var" grep -q "set them with --var" "$T/kh.err"

# 6. unstage: the standby goes; a second unstage says there is none.
set +e
"$REHYDRA" registry unstage --to "$RUNBOOK" --var registry="$REG" --state-dir "$STATE" \
	>"$T/unstage.out" 2>"$T/unstage.err"
RC=$?
set -e
expect_eq "unstage: exit 0" 0 "$RC"
check "unstage: names what it removed" grep -qF "$STATE/standby" "$T/unstage.out"
check "unstage: the standby is gone" test ! -e "$STATE/standby"
set +e
"$REHYDRA" registry unstage --to "$RUNBOOK" --var registry="$REG" --state-dir "$STATE" \
	>/dev/null 2>"$T/unstage2.err"
RC=$?
set -e
expect_eq "unstage again: exit 2" 2 "$RC"
check "unstage again: says there is none" grep -q "no warm standby" "$T/unstage2.err"

finish
