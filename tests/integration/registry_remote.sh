#!/usr/bin/env bash
# A remote registry end to end: the registry is made by the real git and
# git-lfs CLIs, its git remote is a bare repository reached by file:// URL,
# and its LFS objects are pushed with `git lfs push` to tests/lfs-server
# (which checks that server against the real client). rehydra then drills a
# runbook whose model.registry is that URL: clone into the cache, LFS batch
# download, sync to the local target; a new upstream tag is seen on the next
# drill (incremental fetch); 503/429 are retried; corrupt bytes and a wrong
# token fail with clear messages and leave nothing in the cache.
. "$(dirname "$0")/lib.sh"

TOKEN="tok-$RANDOM$RANDOM"

# Git runs with a private HOME and config: the user's are never touched.
export HOME="$T/home" GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 LANG=C
export GIT_CONFIG_GLOBAL="$HOME/.gitconfig"
export GIT_AUTHOR_NAME=rehydra-test GIT_AUTHOR_EMAIL=test@rehydra.invalid
export GIT_COMMITTER_NAME=rehydra-test GIT_COMMITTER_EMAIL=test@rehydra.invalid
mkdir -p "$HOME"
: >"$GIT_CONFIG_GLOBAL"

# --- the LFS server -------------------------------------------------------------
node "$RH_SRC/tests/lfs-server/server.js" --dir "$T/lfs" --token "$TOKEN" \
	>"$T/lfs.port" 2>"$T/lfs.log" &
track $!
for _ in $(seq 100); do
	[ -s "$T/lfs.port" ] && break
	sleep 0.1
done
PORT=$(head -n1 "$T/lfs.port")
check "lfs server started" test -n "$PORT"
LFS="http://127.0.0.1:$PORT/reg/info/lfs"
ctl() { curl -fsS -X POST --data "$1" "http://127.0.0.1:$PORT/_control" >/dev/null; }
stat_of() { curl -fsS "http://127.0.0.1:$PORT/_stats" | jq -r ".$1"; }

# --- the registry, made and pushed by git + git lfs -------------------------------
REMOTE="$T/remote.git"
W="$T/work"
git init -q --bare "$REMOTE"
git init -q -b main "$W"
cd "$W"
git lfs install --local >/dev/null
git config lfs.url "$LFS"
git config lfs.locksverify false
git config "http.$LFS.extraHeader" "Authorization: Bearer $TOKEN"
printf '*.bin filter=lfs diff=lfs merge=lfs -text\n' >.gitattributes
printf '[lfs]\n\turl = %s\n' "$LFS" >.lfsconfig
mkdir -p models/tiny
head -c 3000000 /dev/urandom >models/tiny/weights.bin
printf '{"layers": 2}\n' >models/tiny/config.json

manifest() { # VERSION -> models/tiny/manifest.json
	local v=$1 files=() f
	for f in weights.bin config.json; do
		files+=("$(jq -n --arg p "$f" --argjson s "$(stat -c %s "models/tiny/$f")" \
			--arg h "$(sha256sum "models/tiny/$f" | cut -d' ' -f1)" \
			'{path: $p, size: $s, sha256: $h}')")
	done
	printf '%s\n' "${files[@]}" | jq -s --arg v "$v" \
		'{rehydra_manifest: 1, name: "tiny", version: $v, license: "Apache-2.0",
		  files: .}' >models/tiny/manifest.json
}
manifest 1.0.0
git add -A
git commit -q -m "tiny 1.0.0"
git tag -a -m "tiny 1.0.0" tiny/1.0.0
git remote add origin "file://$REMOTE"
git push -q origin main --tags >"$T/push.err" 2>&1
check "git lfs push --all to the test server" git lfs push --all origin
OID1=$(sha256sum models/tiny/weights.bin | cut -d' ' -f1)
check "the server stored the object the client pushed" \
	test -f "$T/lfs/reg/${OID1:0:2}/${OID1:2:2}/$OID1"
check "the client called the verify action" test "$(stat_of verify)" -ge 1
check "the git remote holds a pointer, not the bytes" \
	bash -c "git --git-dir='$REMOTE' cat-file -p tiny/1.0.0:models/tiny/weights.bin |
		grep -q '^oid sha256:$OID1\$'"
check "the remote has no LFS store of its own" test ! -e "$REMOTE/lfs/objects/${OID1:0:2}"
cp models/tiny/weights.bin "$T/weights-1.bin"
cd "$T"

# --- drills -------------------------------------------------------------------
STATE="$T/state"
CACHE="$STATE/cache"
runbook() { # VERSION OUTDIR -> runbook path
	jq -n --arg reg "file://$REMOTE" --arg v "$1" --arg out "$2" --arg ws "$T/ws" '{
		rehydra: 1, name: "remote-registry",
		model: {registry: $reg, name: "tiny", version: $v},
		target: {provider: "local", region: "local", workspace_root: $ws},
		steps: [
			{id: "provision", do: "provision"},
			{id: "sync", do: "sync_artifacts", after: ["provision"], timeout_s: 120,
			 standby: false},
			{id: "copy", do: "exec", after: ["sync"],
			 argv: ["cp", "-r", "${model.path}", $out]},
			{id: "teardown", do: "teardown", when: "always"}]}' >"$T/rb-$1.json"
	echo "$T/rb-$1.json"
}
drill() { # VERSION OUTDIR
	local rb
	rb=$(runbook "$1" "$2")
	set +e
	"$REHYDRA" drill "$rb" --state-dir "$STATE" --json >"$T/drill.json" 2>"$T/drill.err"
	RC=$?
	set -e
}
no_cache_temps() { ! find "$CACHE" -name '*.tmp-*' | grep -q .; }
cache_obj() { echo "$CACHE/objects/${1:0:2}/${1:2:2}/$1"; }

export REHYDRA_LFS_TOKEN="$TOKEN"
drill 1.0.0 "$T/out1"
expect_eq "first drill: exit code" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/drill.err"
check "first drill: weights synced byte for byte" cmp "$T/out1/weights.bin" "$T/weights-1.bin"
check "first drill: plain file synced" \
	bash -c "printf '{\"layers\": 2}\n' | cmp - '$T/out1/config.json'"
check "first drill: object in the content-addressed cache" test -f "$(cache_obj "$OID1")"
check "first drill: registry cloned into the cache" \
	bash -c "ls -d '$CACHE'/registries/???????????????? | grep -q ."
check "first drill: no temporaries in the cache" no_cache_temps
expect_eq "first drill: one download" 1 "$(stat_of get)"
check "token never in the output" bash -c "! grep -q '$TOKEN' '$T/drill.json' '$T/drill.err'"
check "token never in the drill directory" bash -c "! grep -rq '$TOKEN' '$STATE/drills'"
check "token never in the cached clone" bash -c "! grep -rq '$TOKEN' '$CACHE/registries'"

# A new version published upstream is visible to the next drill.
cd "$W"
head -c 2000000 /dev/urandom >models/tiny/weights.bin
manifest 1.1.0
git add -A
git commit -q -m "tiny 1.1.0"
git tag tiny/1.1.0
git push -q origin main --tags >>"$T/push.err" 2>&1
git lfs push --all origin >/dev/null 2>&1
OID2=$(sha256sum models/tiny/weights.bin | cut -d' ' -f1)
cp models/tiny/weights.bin "$T/weights-2.bin"
cd "$T"
drill 1.1.0 "$T/out2"
expect_eq "new upstream tag: exit code" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/drill.err"
check "new upstream tag: its bytes synced" cmp "$T/out2/weights.bin" "$T/weights-2.bin"
expect_eq "new upstream tag: one more download" 2 "$(stat_of get)"

# 503 on the batch (Retry-After) and 429 on the download: retried.
rm -rf "$CACHE/objects"
ctl '{"fail_batch": 2, "fail_status": 503, "retry_after": "1"}'
b0=$(stat_of batch)
drill 1.0.0 "$T/out3"
expect_eq "503 on batch: drill still succeeds" 0 "$RC"
# pre-flight asks the batch API first (riding out the two 503s), the sync once more
expect_eq "503 on batch: two retries (pre-flight), then the sync's request" $((b0 + 4)) \
	"$(stat_of batch)"
check "503 on batch: bytes right" cmp "$T/out3/weights.bin" "$T/weights-1.bin"
rm -rf "$CACHE/objects"
ctl '{"fail_get": 2, "fail_status": 429, "retry_after": ""}'
g0=$(stat_of get)
drill 1.0.0 "$T/out4"
expect_eq "429 on download: drill still succeeds" 0 "$RC"
expect_eq "429 on download: two retries" $((g0 + 3)) "$(stat_of get)"
check "429 on download: bytes right" cmp "$T/out4/weights.bin" "$T/weights-1.bin"

# Corrupt bytes from the server: refused, nothing cached under the final name.
rm -rf "$CACHE/objects"
ctl '{"corrupt": true}'
drill 1.0.0 "$T/out5"
check "corrupt object: drill fails" test "$RC" -ne 0
check "corrupt object: message names the oid" grep -q "$OID1" "$T/drill.err"
check "corrupt object: message says corrupt" grep -q "corrupt" "$T/drill.err"
check "corrupt object: nothing under the final name" test ! -e "$(cache_obj "$OID1")"
check "corrupt object: no temporaries left" no_cache_temps
check "corrupt object: nothing synced" test ! -e "$T/out5/weights.bin"
ctl '{"corrupt": false}'

# An unknown token: 401, a clear message, the token not shown.
export REHYDRA_LFS_TOKEN="not-the-token"
drill 1.0.0 "$T/out6"
check "wrong token: drill fails" test "$RC" -ne 0
check "wrong token: message says 401" grep -q "HTTP 401" "$T/drill.err"
check "wrong token: message names the server" grep -q "127.0.0.1:$PORT/reg/info/lfs" \
	"$T/drill.err"
check "wrong token: token not shown" bash -c "! grep -q 'not-the-token' '$T/drill.err'"
export REHYDRA_LFS_TOKEN="$TOKEN"

# The git remote is gone: the cached clone and cached objects carry the drill.
drill 1.0.0 "$T/out7" # refill the cache
mv "$REMOTE" "$REMOTE.away"
drill 1.0.0 "$T/out8"
expect_eq "remote gone: drill from the cached clone" 0 "$RC"
check "remote gone: bytes right" cmp "$T/out8/weights.bin" "$T/weights-1.bin"
check "remote gone: the record says the registry was stale" \
	jq -e '[.steps[] | select(.do == "sync_artifacts") | .outputs.registry_stale]
	       | .[0] | type == "string"' "$T/drill.json"
expect_eq "only the drill without its remote is marked stale" 1 \
	"$(grep -l registry_stale "$STATE"/drills/*/record.json | wc -l)"
mv "$REMOTE.away" "$REMOTE"

check "no drill process left" no_process_matching "$STATE/drills"
finish
