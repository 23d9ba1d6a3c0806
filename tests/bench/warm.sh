#!/usr/bin/env bash
# warm.sh - what a warm standby does to the RTO: the same drill cold (the
# target's standby removed first, so every byte moves) and warm (after
# `rehydra registry sync --to RUNBOOK`), for the demo (local target) and an
# ssh target (OpenSSH's sshd on loopback; SFTP there is CPU-bound, so a
# real link would favour warm even more).
#
#   bash tests/bench/warm.sh [BUILD_DIR]
#
# BENCH_MIB (default 256, the demo's shard) sizes the model; BENCH_RUNS
# (default 3) runs of each, interleaved cold/warm because the machine is
# shared; the best of each is reported, with the ratio cold/warm.
# Needs: ssh-keygen, /usr/sbin/sshd, git, git-lfs, jq. Not part of make test.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
export REHYDRA=$build/rehydra RH_SRC=$here RH_BUILD=$build
. "$here/tests/integration/lib.sh"
. "$here/tests/integration/sshd.sh"
RUNS=${BENCH_RUNS:-3}
MIB=${BENCH_MIB:-256}

export HOME=$T/home XDG_STATE_HOME=$T/xdg
unset SSH_AUTH_SOCK
mkdir -p "$HOME"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }

echo "== preparing: the demo registry ($MIB MiB shard), sshd on loopback"
REG=$T/registry
make_registry "$REG" "$MIB"
STATE=$T/state
WORKDIR=$T/remote
sshd_start "$T/sshd"
jq -n --arg addr "$SSHD_HOST" --argjson port "$SSHD_PORT" --arg user "$SSHD_USER" \
	--arg wd "$WORKDIR" '{hosts: [
	{name: "lo-host", address: $addr, port: $port, user: $user, region: "eu-north",
	 accelerators: ["A10"], workdir: $wd, serve_host: $addr}]}' >"$T/inventory.json"
# The demo's load test runs after the RTO is set: left out to save time.
jq 'del(.steps[] | select(.id=="load"))' "$here/runbooks/tinylm-local.json" >"$T/local.json"
cp "$here/runbooks/tinylm-ssh.json" "$T/ssh.json"
LOCAL_VARS=(--var registry="$REG")
SSH_VARS=(--var registry="$REG" --var inventory="$T/inventory.json"
	--var known_hosts="$SSHD_KNOWN_HOSTS" --var identity_file="$SSHD_USER_KEY")

# one KIND cold|warm: prints "RTO SYNC_S BYTES_SENT"
one() {
	local kind=$1 mode=$2 rb vars standby out
	if [ "$kind" = local ]; then
		rb=$T/local.json vars=("${LOCAL_VARS[@]}") standby=$STATE/standby/tinylm
	else
		rb=$T/ssh.json vars=("${SSH_VARS[@]}") standby=$WORKDIR/standby/tinylm
	fi
	rm -rf "$standby"
	if [ "$mode" = warm ]; then
		"$REHYDRA" registry sync tinylm@1.0.0 --to "$rb" "${vars[@]}" --state-dir "$STATE" \
			--quiet >/dev/null
	fi
	out=$T/$kind-$mode.json
	if ! "$REHYDRA" drill "$rb" "${vars[@]}" --state-dir "$STATE" --json >"$out" \
		2>"$out.err"; then
		echo "drill failed ($kind, $mode):" >&2
		cat "$out.err" >&2
		exit 1
	fi
	jq -r '[.rto_s, (.steps[] | select(.id=="sync") | .end_s - .start_s, .outputs.bytes_sent)]
	    | map(tostring) | join(" ")' "$out"
}

for kind in local ssh; do
	best_cold="" best_warm="" sync_cold="" sync_warm=""
	for _ in $(seq 1 "$RUNS"); do
		read -r rto s sent < <(one "$kind" cold)
		best_cold=$(min "$rto" "$best_cold") sync_cold=$(min "$s" "$sync_cold")
		sent_cold=$sent
		read -r rto s sent < <(one "$kind" warm)
		best_warm=$(min "$rto" "$best_warm") sync_warm=$(min "$s" "$sync_warm")
		sent_warm=$sent
	done
	label=$kind
	[ "$kind" = local ] && label="demo (local)"
	[ "$kind" = ssh ] && label="ssh (sshd on loopback)"
	printf '%-24s cold RTO %7.3f s (%s bytes sent)  warm RTO %7.3f s (%s bytes sent)' \
		"$label" "$best_cold" "$sent_cold" "$best_warm" "$sent_warm"
	printf '  cold/warm %s  (sync step %.3f s vs %.3f s, %s)\n' \
		"$(ratio "$best_cold" "$best_warm")" "$sync_cold" "$sync_warm" \
		"$(ratio "$sync_cold" "$sync_warm")"
done
