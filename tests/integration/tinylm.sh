#!/usr/bin/env bash
# tinylm.sh - the tinylm example stack, end to end, with real tools.
#
# make-registry.sh builds a registry with the real git and git-lfs CLIs; a
# git-lfs-aware clone exports the model directory from it; the real tinylm
# binary serves it on a loopback port it picks itself (--port 0), and curl
# and jq check what it says. Also: the wrong model identity (exit 2), a
# corrupt or truncated file (exit 3, naming the file), a silent client that
# must neither block others nor hold its connection forever, and SIGTERM.
#
# Env: TINYLM (the binary), RH_SRC (source dir), RH_BUILD (build dir with
# tinylm.model and runbooks/tinylm/tinylm-shard).
set -uo pipefail

: "${TINYLM:?set TINYLM to the tinylm binary}"
: "${RH_SRC:?set RH_SRC to the source dir}"
: "${RH_BUILD:?set RH_BUILD to the build dir}"
for tool in curl jq git git-lfs sha256sum; do
	command -v "$tool" >/dev/null || {
		echo "tinylm.sh: $tool is missing: run bash $RH_SRC/.ci/install-deps" >&2
		exit 1
	}
done

work=$(mktemp -d)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	exec 3>&- 2>/dev/null
	rm -rf -- "$work"
}
trap cleanup EXIT

# Git must not read or write the user's configuration.
export HOME=$work/home GIT_CONFIG_GLOBAL=$work/home/gitconfig GIT_CONFIG_NOSYSTEM=1
mkdir -p "$HOME" && : >"$GIT_CONFIG_GLOBAL"

pass=0
fail=0
ok() {
	echo "ok   - $1"
	pass=$((pass + 1))
}
bad() {
	echo "FAIL - $1${2:+: $2}"
	fail=$((fail + 1))
}
# check NAME COMMAND...: passes when COMMAND succeeds.
check() {
	local name=$1
	shift
	if "$@"; then ok "$name"; else bad "$name"; fi
}

# start_tinylm LOG DIR SHA [ARGS...]: starts tinylm in the background; sets
# srv_pid and srv_port (empty if it never printed its listening line).
start_tinylm() {
	local log=$1 dir=$2 sha=$3 i
	shift 3
	"$TINYLM" --model-dir "$dir" --expect-sha256 "$sha" --host 127.0.0.1 --port 0 "$@" \
		>"$work/$log.out" 2>"$work/$log.err" &
	srv_pid=$!
	pids+=("$srv_pid")
	srv_port=
	for i in $(seq 1 600); do
		if grep -q '}$' "$work/$log.out" 2>/dev/null; then
			srv_port=$(head -n1 "$work/$log.out" | jq -r '.port // empty')
			return
		fi
		kill -0 "$srv_pid" 2>/dev/null || return
		sleep 0.05
	done
}

# wait_exit PID SECONDS: the process's exit status, or 124 if it is still
# running after SECONDS (it is then killed).
wait_exit() {
	local pid=$1 i
	for i in $(seq 1 $(($2 * 20))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		forget "$pid"
		return 124
	fi
	wait "$pid"
	i=$?
	forget "$pid"
	return "$i"
}

# forget PID: it was reaped; the cleanup must not signal a reused pid.
forget() {
	local p keep=()
	for p in "${pids[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	pids=("${keep[@]}")
}

# jqe ARGS...: jq -e, quietly.
jqe() {
	jq -e "$@" >/dev/null
}

# post BODY (or @FILE): POSTs to /v1/completions; body to $work/resp, status on stdout.
post() {
	curl -s -o "$work/resp" -w '%{http_code}' -X POST -H 'content-type: application/json' \
		--data-binary "$1" "http://127.0.0.1:$port/v1/completions"
}

## The registry, built with the real git and git-lfs.
reg=$work/registry
# 2 MiB come as two 1 MiB shards, as a real model comes in several.
shard=weights-synthetic-00001-of-00002.bin
shard2=weights-synthetic-00002-of-00002.bin
if out=$(bash "$RH_SRC/runbooks/tinylm/make-registry.sh" "$reg" 2 "$RH_BUILD" 2>&1); then
	ok "make-registry.sh builds a registry ($out)"
else
	bad "make-registry.sh builds a registry" "$out"
	echo "$pass passed, $fail failed"
	exit 1
fi
check "the registry has the tag tinylm/1.0.0" \
	bash -c "git -C '$reg' rev-parse -q --verify 'refs/tags/tinylm/1.0.0^{commit}' >/dev/null"
lfs=$(git -C "$reg" lfs ls-files -n tinylm/1.0.0 | sort | tr '\n' ' ')
check "git lfs tracks the model and both shards" \
	test "$lfs" = "models/tinylm/tinylm.model models/tinylm/$shard models/tinylm/$shard2 "
check "the committed shard is an LFS pointer" \
	bash -c "git -C '$reg' cat-file -p 'tinylm/1.0.0:models/tinylm/$shard' |
		grep -qx 'version https://git-lfs.github.com/spec/v1'"
n_obj=$(find "$reg/.git/lfs/objects" -type f | wc -l)
check "all three LFS objects are in .git/lfs/objects" test "$n_obj" -eq 3
commit1=$(git -C "$reg" rev-parse tinylm/1.0.0)
out=$(bash "$RH_SRC/runbooks/tinylm/make-registry.sh" "$reg" 2 "$RH_BUILD" 2>&1)
check "a rerun is a no-op ($out)" \
	test "$(git -C "$reg" rev-parse tinylm/1.0.0)" = "$commit1" -a -z "${out##*up to date*}"
check "the tmp dir is gone after building" test ! -e "$reg.tmp"
bash "$RH_SRC/runbooks/tinylm/make-registry.sh" "$work/registry2" 2 "$RH_BUILD" >"$work/registry2.log" 2>&1 || cat "$work/registry2.log"
commit2=$(git -C "$work/registry2" rev-parse tinylm/1.0.0 2>/dev/null)
check "a second registry built elsewhere has the same commit ($commit1)" \
	test "$commit2" = "$commit1"
rm -rf "$work/registry2"
mkdir -p "$work/foreign" && echo keep >"$work/foreign/file"
check "refuses to overwrite a directory it did not make" \
	bash -c "! bash '$RH_SRC/runbooks/tinylm/make-registry.sh' '$work/foreign' 2 '$RH_BUILD' \
		2>/dev/null && test -f '$work/foreign/file'"

## The model directory, exported through a git-lfs-aware clone.
clone=$work/clone
git clone -q --no-checkout "$reg" "$clone" && git -C "$clone" lfs install --local >/dev/null &&
	git -C "$clone" -c advice.detachedHead=false checkout -q tinylm/1.0.0
model=$work/model
cp -r "$clone/models/tinylm" "$model"
sha=$(sha256sum "$model/manifest.json" | cut -d' ' -f1)
want=$(jq -r --arg p "$shard" '.files[] | select(.path == $p) | .sha256' "$model/manifest.json")
check "the exported shard has the manifest's sha256" \
	test "$(sha256sum "$model/$shard" | cut -d' ' -f1)" = "$want"
# The shards are cut from one generator stream: together they are the
# bytes of a single 2 MiB shard, and no two are alike.
"$RH_BUILD/runbooks/tinylm/tinylm-shard" 2 "$work/whole.bin"
check "the shards are consecutive pieces of one stream" \
	bash -c "cat '$model/$shard' '$model/$shard2' | cmp -s - '$work/whole.bin'"
check "the two shards differ" bash -c "! cmp -s '$model/$shard' '$model/$shard2'"
rm -f "$work/whole.bin"
check "the manifest names tinylm 1.0.0 and three files" \
	jqe '.name == "tinylm" and .version == "1.0.0" and (.files | length) == 3' \
	"$model/manifest.json"

## The server.
start_tinylm main "$model" "$sha" --io-timeout 2
port=$srv_port
main_pid=$srv_pid
if [ -z "$port" ]; then
	bad "tinylm starts and prints its port" "$(cat "$work/main.err")"
	echo "$pass passed, $fail failed"
	exit 1
fi
ok "tinylm starts and prints its port ($port)"
status=
for i in $(seq 1 600); do
	status=$(curl -s -o "$work/health" -w '%{http_code}' "http://127.0.0.1:$port/health")
	[ "$status" = 200 ] && break
	if [ "$status" = 503 ] && ! jq -e '.ready == false' "$work/health" >/dev/null; then
		break
	fi
	sleep 0.05
done
check "GET /health becomes 200 (was 503 with ready false before)" test "$status" = 200
# shellcheck disable=SC2016 # $sha is jq's
check "/health names the model and its sha256" \
	jqe --arg sha "$sha" '.status == "ok" and .ready == true and .model == "tinylm" and
		.version == "1.0.0" and .model_sha256 == $sha and .files == 3 and
		(.load_seconds | type) == "number"' "$work/health"

code=$(post '{"model":"tinylm","prompt":"The registry ","max_tokens":48,"seed":7}')
check "a completion is answered with 200" test "$code" = 200
check "the completion has the OpenAI shape" \
	jqe '(.id | startswith("cmpl-")) and .object == "text_completion" and
		.model == "tinylm" and (.created | type) == "number" and
		(.choices | length) == 1 and .choices[0].index == 0 and
		.choices[0].finish_reason == "length" and
		.usage.prompt_tokens == 13 and .usage.completion_tokens == 48 and
		.usage.total_tokens == 61' "$work/resp"
text1=$(jq -r '.choices[0].text' "$work/resp")
check "the completion text is 48 non-blank bytes" \
	test "${#text1}" -eq 48 -a -n "${text1// /}"
post '{"model":"tinylm","prompt":"The registry ","max_tokens":48,"seed":7}' >/dev/null
check "the same seed gives the same text" test "$(jq -r '.choices[0].text' "$work/resp")" = "$text1"
post '{"model":"tinylm","prompt":"The registry ","max_tokens":48,"seed":8}' >/dev/null
check "another seed gives another text" test "$(jq -r '.choices[0].text' "$work/resp")" != "$text1"
post '{"prompt":"A drill ","max_tokens":64,"temperature":0}' >/dev/null
greedy=$(jq -r '.choices[0].text' "$work/resp")
post '{"prompt":"A drill ","max_tokens":64,"temperature":0}' >/dev/null
check "temperature 0 is deterministic without a seed" \
	test -n "$greedy" -a "$(jq -r '.choices[0].text' "$work/resp")" = "$greedy"
code=$(post '{"prompt":"x"}')
check "max_tokens defaults to 16" \
	test "$code" = 200 -a "$(jq -r '.usage.completion_tokens' "$work/resp")" = 16
code=$(post '{"prompt": "unterminated')
check "bad JSON is answered with 400 and a message" \
	test "$code" = 400 -a "$(jq -r '.error.message | length > 0' "$work/resp")" = true
code=$(post '{"prompt":"x","max_tokens":5000}')
check "max_tokens over 2048 is answered with 400" test "$code" = 400
code=$(post '{"model":"gpt-4","prompt":"x"}')
check "another model name is answered with 404" test "$code" = 404
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/nowhere")
check "an unknown path is answered with 404" test "$code" = 404
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/completions")
check "GET /v1/completions is answered with 405" test "$code" = 405
{
	printf '{"prompt":"'
	head -c 300000 /dev/zero | tr '\0' 'a'
	printf '","max_tokens":4}'
} >"$work/big.json"
code=$(post "@$work/big.json")
check "a 300 KB request (Expect: 100-continue) is answered with 200" test "$code" = 200
code=$(head -c 1100000 /dev/zero | tr '\0' 'a' |
	curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary @- \
		"http://127.0.0.1:$port/v1/completions")
check "a body over 1 MiB is answered with 413" test "$code" = 413

# A client that connects and says nothing must not hold up anyone else...
exec 3<>"/dev/tcp/127.0.0.1/$port"
code=$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")
check "a silent client does not block /health" test "$code" = 200
# ...and is answered 408 and closed once its deadline (--io-timeout 2) passes.
silent=$(timeout 10 cat <&3)
rc=$?
exec 3>&-
check "the silent client gets 408 and is closed" \
	test "$rc" -eq 0 -a -n "$(grep -F 'HTTP/1.1 408' <<<"$silent")"

kill -TERM "$main_pid"
wait_exit "$main_pid" 10
rc=$?
check "SIGTERM stops tinylm with status 0" test "$rc" -eq 0

## Refusals.
wrong=$(printf '%064d' 0)
timeout 30 "$TINYLM" --model-dir "$model" --expect-sha256 "$wrong" --port 0 \
	>/dev/null 2>"$work/wrong.err"
rc=$?
check "a wrong --expect-sha256 exits 2" test "$rc" -eq 2
check "... and says which manifest" grep -q "manifest.json has sha256 $sha" "$work/wrong.err"

cp -r "$model" "$work/corrupt"
printf 'X' | dd of="$work/corrupt/$shard" bs=1 seek=1000000 conv=notrunc status=none
start_tinylm corrupt "$work/corrupt" "$sha"
wait_exit "$srv_pid" 60
rc=$?
check "a corrupt shard exits 3" test "$rc" -eq 3
check "... naming the shard" grep -q "$shard: sha256 is" "$work/corrupt.err"

cp -r "$model" "$work/corrupt2"
printf 'X' | dd of="$work/corrupt2/$shard2" bs=1 seek=1000 conv=notrunc status=none
start_tinylm corrupt2 "$work/corrupt2" "$sha"
wait_exit "$srv_pid" 60
rc=$?
check "a corrupt last shard (verified in parallel) exits 3 naming it" \
	bash -c "test $rc -eq 3 && grep -q '$shard2: sha256 is' '$work/corrupt2.err' &&
		! grep -q '$shard:' '$work/corrupt2.err'"

cp -r "$model" "$work/short"
truncate -s 1000 "$work/short/tinylm.model"
start_tinylm short "$work/short" "$sha"
wait_exit "$srv_pid" 60
rc=$?
check "a truncated model exits 3 naming it" \
	bash -c "test $rc -eq 3 && grep -q 'tinylm.model: size is 1000 bytes' '$work/short.err'"

# retarget DIR FILE: rewrites DIR/manifest.json for FILE's new bytes, as a
# new model version would; prints the new manifest sha256.
retarget() {
	local size hash
	size=$(stat -c %s "$1/$2")
	hash=$(sha256sum "$1/$2" | cut -d' ' -f1)
	jq --arg p "$2" --argjson size "$size" --arg hash "$hash" \
		'.files |= map(if .path == $p then .size = $size | .sha256 = $hash else . end)' \
		"$1/manifest.json" >"$1/manifest.new" && mv "$1/manifest.new" "$1/manifest.json"
	sha256sum "$1/manifest.json" | cut -d' ' -f1
}

cp -r "$model" "$work/garbage"
head -c 300000 /dev/urandom >"$work/garbage/tinylm.model"
gsha=$(retarget "$work/garbage" tinylm.model)
start_tinylm garbage "$work/garbage" "$gsha"
wait_exit "$srv_pid" 60
rc=$?
check "a model file that is not a tinylm model exits 3 naming it" \
	bash -c "test $rc -eq 3 && grep -q 'tinylm.model: not a tinylm model' '$work/garbage.err'"

## While loading: 503, and SIGTERM still stops it at once. A sparse 512 MiB
## shard keeps the loader busy for a while without using the disk; its
## sha256 in the manifest does not matter because the server never gets
## to the end of it.
mkdir "$work/big"
cp "$model/tinylm.model" "$work/big/"
jq '.files |= map(select(.role == "model")) |
	.files += [{"path": "weights-synthetic-big.bin", "size": 536870912,
		"sha256": "'"$(printf '%064d' 0)"'", "role": "weights"}]' \
	"$model/manifest.json" >"$work/big/manifest.json"
truncate -s 512M "$work/big/weights-synthetic-big.bin"
bsha=$(sha256sum "$work/big/manifest.json" | cut -d' ' -f1)
start_tinylm big "$work/big" "$bsha"
port=$srv_port
code=$(curl -s -o "$work/health" -w '%{http_code}' "http://127.0.0.1:$port/health")
check "GET /health while loading is 503 with ready false" \
	bash -c "test '$code' = 503 &&
		jq -e '.ready == false and .status == \"loading\" and .files == 2' '$work/health' \
		>/dev/null"
code=$(post '{"prompt":"x"}')
check "a completion while loading is answered with 503" test "$code" = 503
kill -TERM "$srv_pid"
wait_exit "$srv_pid" 5
rc=$?
check "SIGTERM while loading exits 0 within 5 s" test "$rc" -eq 0

reports=$(grep -l -e 'Sanitizer' -e 'runtime error:' "$work"/*.err 2>/dev/null)
check "no sanitizer reports in tinylm's logs" test -z "$reports"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
