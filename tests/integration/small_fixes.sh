#!/usr/bin/env bash
# small_fixes.sh - the smaller findings of the adversarial run (issue 14,
# item 7): each was accepted, or said the wrong thing, on the main of then.
. "$(dirname "$0")/lib.sh"

export HOME="$T/home" GIT_CONFIG_NOSYSTEM=1 LANG=C
export GIT_CONFIG_GLOBAL="$HOME/.gitconfig"
export GIT_AUTHOR_NAME=rehydra-test GIT_AUTHOR_EMAIL=test@rehydra.invalid
export GIT_COMMITTER_NAME=rehydra-test GIT_COMMITTER_EMAIL=test@rehydra.invalid
mkdir -p "$HOME"
: >"$GIT_CONFIG_GLOBAL"

invalid() { # NAME RUNBOOK-JSON PATTERN
	printf '%s\n' "$2" >"$T/$1.json"
	set +e
	"$REHYDRA" validate "$T/$1.json" >"$T/$1.out" 2>&1
	RC=$?
	set -e
	expect_eq "$1: invalid" 2 "$RC"
	check "$1: says why" grep -q "$3" "$T/$1.out"
}

invalid restores_final '{"rehydra": 1, "name": "x", "steps": [
	{"id": "a", "do": "exec", "argv": ["true"]},
	{"id": "p", "do": "exec", "argv": ["true"], "when": "always", "restores_service": true}]}' \
	"restores_service on a step that runs in the final phase"
invalid stack_env '{"rehydra": 1, "name": "x", "target": {"provider": "local", "region": "local"},
	"stack": {"command": ["true"], "env": {"A=B": "c"}},
	"steps": [{"id": "a", "do": "exec", "argv": ["true"]}]}' \
	"invalid environment variable name 'A=B'"
invalid url_control '{"rehydra": 1, "name": "x", "steps": [
	{"id": "p", "do": "http_probe", "url": "http://127.0.0.1/\u0007"}]}' \
	"url contains a control character"

# SIGTERM while a big runbook validates: an interrupt (130), nothing created
jq -cn '{rehydra: 1, name: "slow", steps: [{id: "a", do: "exec", argv: ["sleep", "5"]},
	{id: "b", do: "exec", argv: ["true"], after: [range(1600000) | "a"]}]}' >"$T/slow.json"
set +e
"$REHYDRA" drill "$T/slow.json" --state-dir "$T/state" -q >"$T/slow.out" 2>&1 &
pid=$!
# signal once rehydra catches SIGTERM (bit 15 of SigCgt): a signal that
# arrives before main() has run (the sanitizer build starts slowly) can only
# take the default action, which is not what this test is about
for _ in $(seq 1 200); do
	cgt=$(sed -n 's/^SigCgt:\t*//p' "/proc/$pid/status" 2>/dev/null)
	[ -n "$cgt" ] && (((0x$cgt >> 14) & 1)) && break
	sleep 0.01
done
kill -TERM "$pid"
wait "$pid"
RC=$?
set -e
expect_eq "SIGTERM during validation: exit 130" 130 "$RC"
if grep -q "before the drill started" "$T/slow.out"; then
	check "SIGTERM during validation: no drill directory" test ! -e "$T/state/drills"
fi

# a manifest path the sinks reserve: publish and verify refuse it, as sync does
git init -q "$T/reg"
mkdir -p "$T/src"
echo state >"$T/src/.rehydra-sink.json"
echo weights >"$T/src/w.bin"
set +e
"$REHYDRA" registry publish m@1.0.0 "$T/src" --registry "$T/reg" --license MIT >"$T/pub.out" 2>&1
RC=$?
set -e
expect_eq "reserved path: publish refuses" 2 "$RC"
check "reserved path: publish says why" grep -q "reserved for the sinks" "$T/pub.out"
# the same manifest written by hand (as another tool could): verify refuses it
git -C "$T/reg" checkout -q -b main 2>/dev/null || true
mkdir -p "$T/reg/models/m"
H=$(sha256sum "$T/src/.rehydra-sink.json" | cut -d' ' -f1)
cp "$T/src/.rehydra-sink.json" "$T/reg/models/m/"
jq -n --arg h "$H" --argjson s "$(stat -c %s "$T/src/.rehydra-sink.json")" '{
	rehydra_manifest: 1, name: "m", version: "1.0.0", license: "MIT",
	files: [{path: ".rehydra-sink.json", size: $s, sha256: $h}]}' >"$T/reg/models/m/manifest.json"
git -C "$T/reg" add -A
git -C "$T/reg" commit -q -m m
git -C "$T/reg" tag m/1.0.0
set +e
"$REHYDRA" registry verify m@1.0.0 --registry "$T/reg" >"$T/ver.out" 2>&1
RC=$?
set -e
expect_eq "reserved path: verify refuses" 2 "$RC"
check "reserved path: verify says why" grep -q "reserved for the sinks" "$T/ver.out"

finish
