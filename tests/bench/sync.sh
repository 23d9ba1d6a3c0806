#!/usr/bin/env bash
# sync.sh - how fast does an artifact reach an SFTP target, next to the
# tools people would use otherwise?
#
#   bash tests/bench/sync.sh [BUILD_DIR]
#
# 1. 1 GiB in 8 files to sshd on loopback: `rehydra registry sync --to
#    sftp://` vs OpenSSH scp vs rsync -e ssh, same files, same sshd, each
#    into an empty directory; best of BENCH_RUNS (default 2) runs each,
#    interleaved, because the machine is shared.
# 2. The same over a veth into a network namespace shaped to 200 Mbit/s with
#    tc tbf (BENCH_NETNS_MIB, default 256 MiB of the same 8 files): rate as
#    a percentage of the link. Needs root; skipped otherwise.
# 3. Peak RSS (VmHWM, sampled from /proc while it runs) syncing one 4 GiB
#    file (BENCH_BIG_MIB to change it).
# 4. An unchanged re-sync (bytes sent, seconds) and a version with one of
#    the 8 files changed (only its bytes should move).
# Needs: ssh-keygen, /usr/sbin/sshd, scp, rsync, git, git-lfs, jq.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
export REHYDRA=$build/rehydra RH_SRC=$here RH_BUILD=$build
. "$here/tests/integration/lib.sh"
. "$here/tests/integration/sshd.sh"
RUNS=${BENCH_RUNS:-2}
NETNS_MIB=${BENCH_NETNS_MIB:-256}
BIG_MIB=${BENCH_BIG_MIB:-4096}

export HOME=$T/home GIT_CONFIG_GLOBAL=$T/home/.gitconfig GIT_CONFIG_NOSYSTEM=1
export GIT_TERMINAL_PROMPT=0 XDG_STATE_HOME=$T/xdg
unset SSH_AUTH_SOCK
mkdir -p "$HOME"
: >"$GIT_CONFIG_GLOBAL"
git config --global user.name bench
git config --global user.email bench@rehydra.invalid
git config --global init.defaultBranch main
git lfs install >/dev/null

now() { date +%s.%N; }
mbs() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1e6 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }

echo "== preparing: 8 files of 128 MiB, a registry, sshd"
REG=$T/reg
git init -q "$REG"
git -C "$REG" lfs install --local >/dev/null
mkdir -p "$T/v1"
for i in 1 2 3 4 5 6 7 8; do
	head -c $((128 * 1024 * 1024)) /dev/urandom >"$T/v1/shard-$i.bin"
done
TOTAL=$((8 * 128 * 1024 * 1024))
"$REHYDRA" registry publish bench@1 "$T/v1" --registry "$REG" --license MIT >/dev/null
sshd_start "$T/sshd"
K=(--known-hosts "$SSHD_KNOWN_HOSTS" --identity "$SSHD_USER_KEY")
FILES=("$T"/v1/shard-*.bin)

# Each tool copies FILES into an empty directory on HOST; prints seconds.
run_rehydra() { # HOST DIR
	rm -rf "$2"
	local t0 t1
	t0=$(now)
	"$REHYDRA" registry sync bench@1 --to "sftp://$SSHD_USER@$1:$SSHD_PORT$2" \
		--registry "$REG" -q "${K[@]}" >"$T/rh.out"
	t1=$(now)
	awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}
run_scp() {
	rm -rf "$2"
	mkdir -p "$2"
	local t0 t1
	t0=$(now)
	scp -q "${SSHD_SSH_OPTS[@]}" -P "$SSHD_PORT" "${FILES[@]}" "$SSHD_USER@$1:$2/"
	t1=$(now)
	awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}
run_rsync() {
	rm -rf "$2"
	mkdir -p "$2"
	local t0 t1
	t0=$(now)
	rsync -a -e "ssh ${SSHD_SSH_OPTS[*]} -p $SSHD_PORT" "${FILES[@]}" "$SSHD_USER@$1:$2/"
	t1=$(now)
	awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

compare() { # HOST LABEL BYTES [LINK_MBPS]
	local host=$1 label=$2 bytes=$3 link=${4:-} r s y tr="" ts="" ty=""
	for _ in $(seq 1 "$RUNS"); do
		r=$(run_rehydra "$host" "$T/dst-rh")
		s=$(run_scp "$host" "$T/dst-scp")
		y=$(run_rsync "$host" "$T/dst-rsync")
		tr=$(min "$r" "$tr")
		ts=$(min "$s" "$ts")
		ty=$(min "$y" "$ty")
	done
	cmp -s "${FILES[0]}" "$T/dst-rh/shard-1.bin" || echo "!! rehydra's copy differs"
	printf '%-28s %8s s %8s MB/s\n' "rehydra registry sync" "$tr" "$(mbs "$bytes" "$tr")"
	printf '%-28s %8s s %8s MB/s\n' "scp" "$ts" "$(mbs "$bytes" "$ts")"
	printf '%-28s %8s s %8s MB/s\n' "rsync -e ssh" "$ty" "$(mbs "$bytes" "$ty")"
	echo "$label: rehydra/scp rate $(ratio "$ts" "$tr")," \
		"rehydra/rsync rate $(ratio "$ty" "$tr")"
	if [ -n "$link" ]; then
		for x in "rehydra:$tr" "scp:$ts" "rsync:$ty"; do
			awk -v n="${x%%:*}" -v t="${x#*:}" -v b="$bytes" -v l="$link" \
				'BEGIN { printf "%s: %.0f%% of the %d Mbit/s link\n", n,
					 b * 8 / 1e6 / t / l * 100, l }'
		done
	fi
}

echo "== 1. 1 GiB, 8 files, loopback (best of $RUNS; load: $(cut -d' ' -f1-3 /proc/loadavg))"
compare 127.0.0.1 "loopback" "$TOTAL"

echo "== 4. re-sync unchanged, then one of 8 files changed"
t0=$(now)
"$REHYDRA" registry sync bench@1 --to "sftp://$SSHD_USER@127.0.0.1:$SSHD_PORT$T/dst-rh" \
	--registry "$REG" "${K[@]}" >"$T/re.out" 2>&1
t1=$(now)
echo "unchanged re-sync: $(grep -o '[0-9.]* [KMG]*i*B sent' "$T/re.out" | head -1)," \
	"$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f s wall", b - a }')"
mkdir -p "$T/v2"
cp --reflink=auto "$T"/v1/*.bin "$T/v2/"
head -c $((128 * 1024 * 1024)) /dev/urandom >"$T/v2/shard-5.bin"
"$REHYDRA" registry publish bench@2 "$T/v2" --registry "$REG" --license MIT >/dev/null
t0=$(now)
"$REHYDRA" registry sync bench@2 --to "sftp://$SSHD_USER@127.0.0.1:$SSHD_PORT$T/dst-rh" \
	--registry "$REG" "${K[@]}" >"$T/d.out" 2>&1
t1=$(now)
echo "one file changed: $(grep -o '[0-9]* files sent.*resumed' "$T/d.out" | head -1)," \
	"$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f s wall", b - a }')" \
	"(128 MiB expected)"
cmp -s "$T/v2/shard-5.bin" "$T/dst-rh/shard-5.bin" || echo "!! changed file differs"
rm -rf "$T/v2" "$T"/dst-*

echo "== 2. ${NETNS_MIB} MiB, 8 files, veth into a netns shaped to 200 Mbit/s"
if [ "$(id -u)" = 0 ] && ip netns add "rh-bench-probe-$$" 2>/dev/null; then
	ip netns del "rh-bench-probe-$$"
	sshd_kill
	sshd_start_netns "$T/sshd-ns" 200mbit
	K=(--known-hosts "$SSHD_KNOWN_HOSTS" --identity "$SSHD_USER_KEY")
	mkdir -p "$T/small"
	for i in 1 2 3 4 5 6 7 8; do
		head -c $((NETNS_MIB * 1024 * 1024 / 8)) "$T/v1/shard-$i.bin" \
			>"$T/small/shard-$i.bin"
	done
	"$REHYDRA" registry publish small@1 "$T/small" --registry "$REG" --license MIT >/dev/null
	FILES=("$T"/small/shard-*.bin)
	run_rehydra() {
		rm -rf "$2"
		local t0 t1
		t0=$(now)
		"$REHYDRA" registry sync small@1 --to "sftp://$SSHD_USER@$1:$SSHD_PORT$2" \
			--registry "$REG" -q "${K[@]}" >"$T/rh.out"
		t1=$(now)
		awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
	}
	RUNS=1 compare "$SSHD_HOST" "netns 200 Mbit/s" $((NETNS_MIB * 1024 * 1024)) 200
	rm -rf "$T/small" "$T"/dst-*
	sshd_kill
	sshd__cleanup_netns
	sshd_start "$T/sshd2"
	K=(--known-hosts "$SSHD_KNOWN_HOSTS" --identity "$SSHD_USER_KEY")
else
	echo "skipped: needs root and ip netns"
fi

echo "== 3. peak RSS syncing one ${BIG_MIB} MiB file"
rm -rf "$T/v1"
mkdir -p "$T/big"
head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom >"$T/big/weights.bin"
"$REHYDRA" registry publish big@1 "$T/big" --registry "$REG" --license MIT >/dev/null
rm -rf "$T/big"
t0=$(now)
"$REHYDRA" registry sync big@1 --to "sftp://$SSHD_USER@127.0.0.1:$SSHD_PORT$T/dst-big" \
	--registry "$REG" -q "${K[@]}" >"$T/big.out" &
pid=$!
track "$pid"
hwm=0
while kill -0 "$pid" 2>/dev/null; do
	v=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
	[ -n "$v" ] && hwm=$v
	sleep 0.2
done
wait "$pid"
t1=$(now)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
echo "peak RSS $((hwm / 1024)) MiB (goal <= 64 MiB) for ${BIG_MIB} MiB in ${secs} s" \
	"($(mbs $((BIG_MIB * 1024 * 1024)) "$secs") MB/s, one connection)"
