#!/usr/bin/env bash
# `drill --target PROVIDER[:REGION]`, as `render` takes it: the ssh runbook
# drilled on the local provider (its ssh-only target keys dropped), and the
# errors for an unknown provider and a region that is not a plain name.
. "$(dirname "$0")/lib.sh"

REG="$T/registry"
make_registry "$REG" 1
jq 'del(.steps[] | select(.id=="complete"))' "$RH_SRC/runbooks/tinylm-ssh.json" >"$T/ssh.json"

set +e
"$REHYDRA" drill "$T/ssh.json" --target local:lab --var registry="$REG" --state-dir "$T/state" \
	--json >"$T/local.json" 2>"$T/local.err"
RC=$?
set -e
expect_eq "switched: exit code" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/local.err"
expect_eq "switched: the record's target is local:lab" "local lab" \
	"$(jq -r '"\(.target.provider) \(.target.region)"' "$T/local.json")"
expect_eq "switched: ssh-only keys dropped" null "$(jq -r .target.inventory "$T/local.json")"
expect_eq "switched: served on loopback" 127.0.0.1 "$(jq -r .target.host "$T/local.json")"

set +e
"$REHYDRA" drill "$T/ssh.json" --target nowhere:x --state-dir "$T/state" >/dev/null 2>"$T/bad.err"
RC=$?
set -e
expect_eq "unknown provider: exit 2" 2 "$RC"
check "unknown provider: lists the providers" grep -q "expected one of local, ssh" "$T/bad.err"
n=$(wc -l <"$T/state/journal/journal.jsonl")
set +e
"$REHYDRA" drill "$T/ssh.json" --target 'local:${vars.x}' --state-dir "$T/state" >/dev/null \
	2>"$T/region.err"
RC=$?
set -e
expect_eq "bad region: exit 2" 2 "$RC"
check "bad region: says why" grep -q "region must be a plain name" "$T/region.err"
expect_eq "bad region: nothing journaled" "$n" "$(wc -l <"$T/state/journal/journal.jsonl")"

finish
