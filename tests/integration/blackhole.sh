#!/usr/bin/env bash
# blackhole.sh - a drill ends at its step's deadline whatever it waits on.
#
# Each case points one network endpoint of a drill at tests/doubles/
# blackhole.js (a test double of a broken server: it accepts TCP connections
# and never answers), or puts a FIFO where a file should be, and checks that
# the drill ends soon after the step's timeout_s with the step timed_out (or
# failed, for the FIFO), that teardown ran, and that the record and the
# journal entry were written. Every drill is run under `timeout -k`, so a
# regression fails here instead of hanging the test run. The time each drill
# took is printed ("time: NAME S").
. "$(dirname "$0")/lib.sh"

export HOME="$T/home" GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 LANG=C
export GIT_CONFIG_GLOBAL="$HOME/.gitconfig"
export GIT_AUTHOR_NAME=rehydra-test GIT_AUTHOR_EMAIL=test@rehydra.invalid
export GIT_COMMITTER_NAME=rehydra-test GIT_COMMITTER_EMAIL=test@rehydra.invalid
unset SSH_AUTH_SOCK
mkdir -p "$HOME"
: >"$GIT_CONFIG_GLOBAL"

node "$RH_SRC/tests/doubles/blackhole.js" >"$T/bh.port" 2>"$T/bh.log" &
track $!
for _ in $(seq 100); do
	[ -s "$T/bh.port" ] && break
	sleep 0.1
done
BH=$(head -n1 "$T/bh.port")
check "blackhole listening" test -n "$BH"

STATE="$T/state"
TIMEOUT=3 # timeout_s of the step that meets the blackhole

# bh_drill NAME RUNBOOK [args]: runs it, bounded; sets RC and SECS.
bh_drill() {
	local name=$1 rb=$2 start end
	shift 2
	start=$(date +%s%N)
	set +e
	timeout -k 2 40 "$REHYDRA" drill "$rb" --state-dir "$STATE" --json "$@" \
		>"$T/$name.out" 2>"$T/$name.err"
	RC=$?
	set -e
	end=$(date +%s%N)
	SECS=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
	echo "time: $name ${SECS}s"
}

# expect_aborted NAME CHECK: the pre-flight (before T0) met the blackhole and
# ended within the timeout the runbook gives the step that would use it: exit
# 2, verdict aborted, CHECK failed, no step ran, record and journal written.
expect_aborted() {
	local name=$1 check=$2 id
	expect_eq "$name: exit code (pre-flight failed)" 2 "$RC"
	[ "$RC" = 2 ] || tail -20 "$T/$name.err"
	check "$name: ended within the timeout plus 5 s" \
		awk -v s="$SECS" -v t="$TIMEOUT" 'BEGIN { exit !(s < t + 5) }'
	expect_eq "$name: verdict" aborted "$(jq -r .verdict "$T/$name.out" 2>/dev/null)"
	expect_eq "$name: failed check" "$check" \
		"$(jq -r '[.preflight[] | select(.ok == false)][0].check' "$T/$name.out" 2>/dev/null)"
	expect_eq "$name: no step ran" 0 \
		"$(jq '[.steps[] | select(.status != "pending")] | length' "$T/$name.out" 2>/dev/null)"
	id=$(jq -r .drill_id "$T/$name.out" 2>/dev/null || true)
	check "$name: record written" test -s "$STATE/drills/$id/record.json"
	check "$name: journal entry written" grep -q "\"$id\"" "$STATE/journal/journal.jsonl"
}

local_runbook() { # OUT REGISTRY
	jq -n --arg reg "$2" --arg ws "$T/ws" --argjson t "$TIMEOUT" '{
		rehydra: 1, name: "blackhole",
		model: {registry: $reg, name: "tiny", version: "1.0.0"},
		target: {provider: "local", region: "local", workspace_root: $ws},
		steps: [
			{id: "provision", do: "provision"},
			{id: "sync", do: "sync_artifacts", after: ["provision"], timeout_s: $t},
			{id: "teardown", do: "teardown", when: "always"}]}' >"$1"
}

# An ASan build reports libgit2's own leak on a cancelled ssh handshake (see
# lsan-libgit2.supp); only this test suppresses it.
export LSAN_OPTIONS="suppressions=$RH_SRC/tests/integration/lsan-libgit2.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

# --- registry URLs: libgit2 over https and ssh ------------------------------------
local_runbook "$T/rb-https.json" "https://127.0.0.1:$BH/reg.git"
bh_drill https "$T/rb-https.json"
expect_aborted https registry

local_runbook "$T/rb-ssh.json" "ssh://git@127.0.0.1:$BH/reg.git"
bh_drill ssh "$T/rb-ssh.json"
expect_aborted ssh registry

# --- the LFS endpoint: a git remote by file://, its LFS server blackholed -----------
W="$T/work"
REMOTE="$T/remote.git"
git init -q --bare "$REMOTE"
git init -q -b main "$W"
mkdir -p "$W/models/tiny"
head -c 100000 /dev/urandom >"$T/weights.bin"
OID=$(sha256sum "$T/weights.bin" | cut -d' ' -f1)
# the pointer as git-lfs writes it; no git-lfs here: nothing may reach the blackhole
printf 'version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize 100000\n' "$OID" \
	>"$W/models/tiny/weights.bin"
printf '*.bin filter=lfs diff=lfs merge=lfs -text\n' >"$W/.gitattributes"
printf '[lfs]\n\turl = http://127.0.0.1:%s/reg/info/lfs\n' "$BH" >"$W/.lfsconfig"
jq -n --arg h "$OID" '{rehydra_manifest: 1, name: "tiny", version: "1.0.0",
	license: "Apache-2.0", files: [{path: "weights.bin", size: 100000, sha256: $h}]}' \
	>"$W/models/tiny/manifest.json"
git -C "$W" add -A
git -C "$W" commit -q -m "tiny 1.0.0"
git -C "$W" tag tiny/1.0.0
git -C "$W" push -q "file://$REMOTE" main --tags
local_runbook "$T/rb-lfs.json" "file://$REMOTE"
bh_drill lfs "$T/rb-lfs.json"
expect_aborted lfs "lfs objects"

# --- SFTP: an ssh target whose host is blackholed (from a registry at hand, so
# the host is the first thing the pre-flight meets)
make_registry "$T/reg" 1 ------------------------------------
ssh-keygen -q -t ed25519 -N '' -f "$T/id" </dev/null
: >"$T/known_hosts"
jq -n --arg addr 127.0.0.1 --argjson port "$BH" --arg wd "$T/remote" '{hosts: [
	{name: "bh-host", address: $addr, port: $port, user: "rehydra", region: "eu-north",
	 accelerators: ["A10"], workdir: $wd}]}' >"$T/inventory.json"
jq -n --arg inv "$T/inventory.json" --arg kh "$T/known_hosts" --arg id "$T/id" \
	--arg reg "$T/reg" --argjson t "$TIMEOUT" '{
	rehydra: 1, name: "blackhole-ssh",
	model: {registry: $reg, name: "tinylm", version: "1.0.0"},
	target: {provider: "ssh", region: "eu-north", inventory: $inv, known_hosts: $kh,
		 identity_file: $id},
	steps: [
		{id: "provision", do: "provision", timeout_s: $t},
		{id: "sync", do: "sync_artifacts", after: ["provision"], timeout_s: $t},
		{id: "teardown", do: "teardown", when: "always", timeout_s: $t}]}' >"$T/rb-sftp.json"
bh_drill sftp "$T/rb-sftp.json"
expect_aborted sftp "ssh host"

# --- S3: `registry sync` to a blackholed endpoint, stopped by SIGINT ----------------
export AWS_ACCESS_KEY_ID=AKIDBLACKHOLE AWS_SECRET_ACCESS_KEY=not-a-secret
start=$(date +%s%N)
set +e
timeout -k 2 40 "$REHYDRA" registry sync tinylm@1.0.0 --registry "$T/reg" \
	--state-dir "$STATE" -q \
	--to "s3://bucket/standby?endpoint=http://127.0.0.1:$BH&region=us-east-1" \
	>"$T/s3.out" 2>"$T/s3.err" &
pid=$!
sleep 2
kill -INT "$pid"
wait "$pid"
RC=$?
set -e
SECS=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
echo "time: s3 ${SECS}s (SIGINT at 2 s)"
expect_eq "s3: interrupted" 130 "$RC"
check "s3: ended within 3 s of the SIGINT" awk -v s="$SECS" 'BEGIN { exit !(s < 5) }'

# --- a FIFO where the registry's LFS store should have a file ----------------------
for o in $(find "$T/reg" -path '*lfs/objects/*' -type f); do
	rm "$o"
	mkfifo "$o"
done
jq '.model.name = "tinylm"' <(local_runbook /dev/stdout "$T/reg") >"$T/rb-fifo.json"
bh_drill fifo "$T/rb-fifo.json"
expect_aborted fifo "lfs objects"
# the pre-flight only stats the store: a FIFO is no object there, never opened
check "fifo: refused, naming the object" jq -e '[.preflight[] | select(.ok == false)][0]
	.message | test("FIFO|not a regular file|is not in the local LFS store")' "$T/fifo.out"
check "fifo: refused at once" awk -v s="$SECS" 'BEGIN { exit !(s < 3) }'

finish
