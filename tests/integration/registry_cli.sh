#!/usr/bin/env bash
# `rehydra registry` end to end, with the real git and git-lfs clients in the
# loop: publish into a repository made by `git init` + `git lfs install`,
# then check the result with `git lfs fsck`, `git lfs ls-files`, `git lfs
# pointer` and a clone that fetches and checks out the objects; list, show,
# verify (which must catch a corrupted object in the LFS store), sync to
# file:// (a re-sync moves nothing, a new version moves only its changed
# file), a registry built by git lfs itself, and cache gc.
. "$(dirname "$0")/lib.sh"

# A private HOME and git config: the user's are neither read nor touched.
# ~/.gitconfig itself: libgit2 reads it, but not GIT_CONFIG_GLOBAL.
export HOME=$T/home GIT_CONFIG_GLOBAL=$T/home/.gitconfig GIT_CONFIG_NOSYSTEM=1
export GIT_TERMINAL_PROMPT=0 XDG_STATE_HOME=$T/xdg
mkdir -p "$HOME"
: >"$GIT_CONFIG_GLOBAL"
git config --global user.name "Reg Tester"
git config --global user.email "reg@rehydra.invalid"
git config --global init.defaultBranch main
git lfs install >/dev/null

rc_of() { set +e; "$@" >"$T/out" 2>"$T/err"; echo $?; set -e; }
R() { "$REHYDRA" registry "$@"; }

REG=$T/reg
git init -q "$REG"
git -C "$REG" lfs install --local >/dev/null
mkdir -p "$T/in/tok" "$T/in2"
head -c $((3 * 1024 * 1024 + 7)) /dev/urandom >"$T/in/weights-1.bin"
head -c $((1024 * 1024)) /dev/urandom >"$T/in/weights-2.bin"
echo '{"vocab": 42}' >"$T/in/tok/tokenizer.json"
cat >"$T/meta.json" <<'EOF'
{"description": "a test model", "license": "MIT",
 "serving": {"runtime": "vllm", "min_gpu_memory_gb": 24},
 "export": {"eccn": "EAR99", "jurisdictions": ["EU", "US"]}}
EOF

# ---- publish -------------------------------------------------------------------
expect_eq "publish: exit 0" 0 \
	"$(rc_of R publish m@1.0 "$T/in" --registry "$REG" --meta "$T/meta.json" \
		--license Apache-2.0)"
check "publish: one-line summary" grep -q "^published m@1.0: 3 files" "$T/out"
expect_eq "publish: tag m/1.0" "m/1.0" "$(git -C "$REG" tag -l 'm/*')"
expect_eq "publish: commit author from git config" "Reg Tester" \
	"$(git -C "$REG" log -1 --format=%an m/1.0)"
check "publish: git lfs fsck ok" git -C "$REG" lfs fsck
check "publish: git lfs fsck --pointers ok" git -C "$REG" lfs fsck --pointers
expect_eq "publish: git lfs ls-files lists all three" \
	"models/m/tok/tokenizer.json models/m/weights-1.bin models/m/weights-2.bin" \
	"$(git -C "$REG" lfs ls-files -n m/1.0 | sort | tr '\n' ' ' | sed 's/ $//')"
for f in weights-1.bin tok/tokenizer.json; do
	git -C "$REG" cat-file -p "m/1.0:models/m/$f" >"$T/ptr.ours"
	git lfs pointer --file="$T/in/$f" >"$T/ptr.lfs" 2>/dev/null
	check "publish: $f pointer is byte for byte git lfs's" cmp -s "$T/ptr.ours" "$T/ptr.lfs"
done
check "publish: .gitattributes tracks the paths" \
	grep -qx 'models/m/weights-1.bin filter=lfs diff=lfs merge=lfs -text' "$REG/.gitattributes"
expect_eq "publish: manifest lists 3 files" 3 \
	"$(git -C "$REG" show m/1.0:models/m/manifest.json | jq '.files | length')"
expect_eq "publish: --license overrides the meta file" Apache-2.0 \
	"$(git -C "$REG" show m/1.0:models/m/manifest.json | jq -r .license)"
expect_eq "publish: serving from the meta file" 24 \
	"$(git -C "$REG" show m/1.0:models/m/manifest.json | jq .serving.min_gpu_memory_gb)"
expect_eq "publish: sha256 in the manifest" "$(sha256sum "$T/in/weights-2.bin" | cut -d' ' -f1)" \
	"$(git -C "$REG" show m/1.0:models/m/manifest.json |
		jq -r '.files[] | select(.path == "weights-2.bin") | .sha256')"
expect_eq "publish: working tree clean afterwards" "" "$(git -C "$REG" status --porcelain)"

# A clone, with the real client fetching and checking out the objects.
git clone -q "file://$REG" "$T/clone"
check "clone: git lfs checked out the bytes" cmp -s "$T/clone/models/m/weights-1.bin" \
	"$T/in/weights-1.bin"
check "clone: tokenizer too" cmp -s "$T/clone/models/m/tok/tokenizer.json" \
	"$T/in/tok/tokenizer.json"
GIT_LFS_SKIP_SMUDGE=1 git clone -q "$REG" "$T/clone2"
git -C "$T/clone2" lfs fetch >/dev/null 2>&1
git -C "$T/clone2" lfs checkout >/dev/null 2>&1
check "clone + git lfs checkout: the bytes" cmp -s "$T/clone2/models/m/weights-2.bin" \
	"$T/in/weights-2.bin"

expect_eq "publish: an existing version is refused (exit 2)" 2 \
	"$(rc_of R publish m@1.0 "$T/in" --registry "$REG")"
check "publish: says versions are immutable" grep -q "versions are immutable" "$T/err"
expect_eq "publish: bad name (exit 2)" 2 "$(rc_of R publish 'm/x@1' "$T/in" --registry "$REG")"
echo '{"bogus": 1}' >"$T/bad-meta.json"
expect_eq "publish: unknown meta key (exit 2)" 2 \
	"$(rc_of R publish m@9 "$T/in" --registry "$REG" --meta "$T/bad-meta.json")"
check "publish: names the key" grep -q '"bogus"' "$T/err"
ln -s "$T/in/weights-2.bin" "$T/in2/link.bin"
expect_eq "publish: symlink refused (exit 2)" 2 \
	"$(rc_of R publish m@9 "$T/in2" --registry "$REG")"
expect_eq "publish: a failed publish made no tag" "m/1.0" "$(git -C "$REG" tag -l 'm/*')"

# ---- list / show / verify ---------------------------------------------------------------
export REHYDRA_REGISTRY=$REG
expect_eq "list: exit 0" 0 "$(rc_of R list)"
check "list: names m and 1.0" grep -q "^m  1.0$" "$T/out"
expect_eq "list --json" '["1.0"]' "$(R list --json | jq -c .m)"
expect_eq "show: exit 0" 0 "$(rc_of R show m@1.0)"
check "show: license" grep -q "license   Apache-2.0" "$T/out"
check "show: a file" grep -q "weights-1.bin" "$T/out"
expect_eq "show --json: files" 3 "$(R show m@1.0 --json | jq '.manifest.files | length')"
expect_eq "show --json: commit" "$(git -C "$REG" rev-parse 'm/1.0^{commit}')" \
	"$(R show m --json | jq -r .commit)"
expect_eq "show: unknown version (exit 2)" 2 "$(rc_of R show m@7.7)"
check "show: names the versions there are" grep -q "1.0" "$T/err"
expect_eq "verify: exit 0" 0 "$(rc_of R verify m@1.0)"
check "verify: says ok" grep -q "^m@1.0 ok: 3 files" "$T/out"
expect_eq "verify: no @VERSION is bad input" 2 "$(rc_of R verify m)"
expect_eq "no registry: exit 2" 2 \
	"$(env -u REHYDRA_REGISTRY "$REHYDRA" registry list >/dev/null 2>&1; echo $?)"
expect_eq "unknown subcommand: exit 2" 2 "$(rc_of R frob)"

# ---- sync --------------------------------------------------------------------------
TGT=$T/target
expect_eq "sync: exit 0" 0 "$(rc_of R sync m@1.0 --to "file://$TGT" --parallel 2)"
check "sync: summary" grep -q "3 files sent, 0 skipped" "$T/out"
check "sync: quiet without a terminal" bash -c "! grep -q $'\r' '$T/err'"
check "sync: bytes there" cmp -s "$TGT/weights-1.bin" "$T/in/weights-1.bin"
check "sync: nested file there" cmp -s "$TGT/tok/tokenizer.json" "$T/in/tok/tokenizer.json"
check "sync: manifest there" cmp -s "$TGT/manifest.json" \
	<(git -C "$REG" show m/1.0:models/m/manifest.json)
expect_eq "re-sync: exit 0" 0 "$(rc_of R sync m@1.0 --to "$TGT")"
check "re-sync: nothing sent" grep -q "0 files sent, 3 skipped; 0 B sent" "$T/out"

cp -r "$T/in" "$T/in-1.1"
head -c $((1024 * 1024)) /dev/urandom >"$T/in-1.1/weights-2.bin"
expect_eq "publish 1.1: exit 0" 0 "$(rc_of R publish m@1.1 "$T/in-1.1")"
check "publish 1.1: only the changed object is new" \
	grep -q "(1.0 MiB new in the LFS store)" "$T/out"
expect_eq "sync 1.1: exit 0" 0 "$(rc_of R sync m@1.1 --to "$TGT")"
check "sync 1.1: one file, 1 MiB" grep -q "1 files sent, 2 skipped; 1.0 MiB sent" "$T/out"
check "sync 1.1: the new bytes" cmp -s "$TGT/weights-2.bin" "$T/in-1.1/weights-2.bin"
expect_eq "list: both versions" '["1.0","1.1"]' "$(R list --json | jq -c .m)"

expect_eq "sync: unknown target scheme (exit 2)" 2 "$(rc_of R sync m@1.0 --to "ftp://h/x")"
expect_eq "sync: no --to (exit 2)" 2 "$(rc_of R sync m@1.0)"
expect_eq "sync: unknown version (exit 2)" 2 "$(rc_of R sync m@3.0 --to "$TGT")"
expect_eq "sync: bad --parallel (exit 2)" 2 "$(rc_of R sync m@1.0 --to "$TGT" --parallel 0)"

# ---- a sync killed in the middle resumes --------------------------------------------------
mkdir -p "$T/bigin"
head -c $((128 * 1024 * 1024)) /dev/urandom >"$T/bigin/big.bin"
expect_eq "publish big: exit 0" 0 "$(rc_of R publish big@1 "$T/bigin" -q)"
# publish stores objects read-only, and a read-only object on the target's
# filesystem arrives as a hard link (nothing to resume): make this one
# writable so the sync copies it, which is what is cut off and resumed here.
big_oid=$(sha256sum "$T/bigin/big.bin" | cut -d' ' -f1)
big_obj=$REG/.git/lfs/objects/${big_oid:0:2}/${big_oid:2:2}/$big_oid
check "publish: the object is read-only" test -z "$(find "$big_obj" -perm /222)"
chmod u+w "$big_obj"
BT=$T/big-target
"$REHYDRA" registry sync big@1 --to "$BT" -q >/dev/null 2>&1 &
pid=$!
track "$pid"
# Kill it (SIGKILL: no chance to clean up) once a few MiB are in the partial.
for _ in $(seq 1 2000); do
	part=$(ls "$BT"/big.bin.rh-part-* 2>/dev/null | head -n1 || true)
	size=$( [ -n "$part" ] && stat -c %s "$part" 2>/dev/null || echo 0)
	if [ "$size" -ge $((4 * 1024 * 1024)) ]; then
		break
	fi
	sleep 0.01
done
kill -KILL "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
if [ -e "$BT/big.bin" ]; then
	echo "note: the sync finished before it could be killed; resume not exercised"
else
	check "killed sync: a partial, no final name" \
		test -n "$(ls "$BT"/big.bin.rh-part-* 2>/dev/null)"
	expect_eq "resumed sync: exit 0" 0 "$(rc_of R sync big@1 --to "$BT")"
	check "resumed sync: resumed bytes" \
		grep -Eq "B sent, 0 B skipped, [1-9][0-9.]* [KMG]iB resumed" "$T/out"
	check "resumed sync: the bytes" cmp -s "$BT/big.bin" "$T/bigin/big.bin"
	check "resumed sync: no partial left" test -z "$(ls "$BT"/*.rh-part-* 2>/dev/null)"
fi

# ---- a corrupted LFS object ---------------------------------------------------------
oid=$(sha256sum "$T/in/weights-1.bin" | cut -d' ' -f1)
obj=$REG/.git/lfs/objects/${oid:0:2}/${oid:2:2}/$oid
chmod u+w "$obj"
printf 'X' | dd of="$obj" bs=1 seek=100 conv=notrunc status=none
expect_eq "verify: a corrupted object fails (exit 3)" 3 "$(rc_of R verify m@1.0)"
check "verify: names the file" grep -q "weights-1.bin" "$T/err"
check "verify: says it is a sha256 mismatch" grep -q "sha256 mismatch" "$T/err"
check "git lfs fsck agrees" bash -c "! git -C '$REG' lfs fsck >/dev/null 2>&1"
TGT2=$T/target2
expect_eq "sync from a corrupted store fails (exit 3)" 3 "$(rc_of R sync m@1.0 --to "$TGT2")"
check "sync: names the file" grep -q "weights-1.bin" "$T/err"
check "sync: nothing under its final name" test ! -e "$TGT2/weights-1.bin"
check "sync: no manifest on the target" test ! -e "$TGT2/manifest.json"

# ---- a registry made by git lfs itself -------------------------------------------------
make_registry "$T/demo" 1
expect_eq "demo registry: verify" 0 "$(rc_of R verify tinylm@1.0.0 --registry "$T/demo")"
expect_eq "demo registry: sync" 0 \
	"$(rc_of R sync tinylm@1.0.0 --registry "$T/demo" --to "$T/demo-target" -q)"
check "demo registry: shard there" test -s "$T/demo-target/weights-synthetic-00001-of-00001.bin"

# ---- a file:// registry goes through the cache; cache gc ----------------------------------
STATE=$T/state
expect_eq "file:// registry: list" 0 \
	"$(rc_of R list --registry "file://$T/demo" --state-dir "$STATE")"
check "file:// registry: names tinylm" grep -q "^tinylm  1.0.0$" "$T/out"
junk=$STATE/cache/objects/ab/cd/abcd$(printf '0%.0s' {1..60})
mkdir -p "$(dirname "$junk")"
head -c 4096 /dev/urandom >"$junk"
expect_eq "cache gc: exit 0" 0 "$(rc_of R cache gc --state-dir "$STATE")"
check "cache gc: one line" grep -q "^cache $STATE/cache: freed" "$T/out"
check "cache gc: removed an object nothing references" test ! -e "$junk"
expect_eq "cache: unknown action (exit 2)" 2 "$(rc_of R cache frob --state-dir "$STATE")"

finish
