#!/usr/bin/env bash
# sync_file.sh [BUILD_DIR] [MIB] - the file sink's share of tests/bench/sync.sh.
#
# Sourced by sync.sh (which calls bench_file_sync) or run alone. On the same
# data in the same run, side by side: what the disk and the hash allow
# (sha256sum alone; cp + sync), then `rehydra registry sync` to file:// of
# one file and of the same bytes as 8 files, an unchanged re-sync (0 bytes,
# under 1 s) and a re-sync after one of the 8 files changed (only its bytes
# move), plus the peak RSS of the single-file sync. Data stays in the page
# cache for every tool alike (nothing here drops caches machine-wide).
set -euo pipefail

bench_file_sync() {
	local build=${1:-build} mib=${2:-256}
	local rehydra
	rehydra=$(realpath "$build/rehydra")
	local dir
	dir=$(mktemp -d "${TMPDIR:-/tmp}/rh-bench-file-XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$dir'" RETURN
	export HOME=$dir/home GIT_CONFIG_NOSYSTEM=1 REHYDRA_AUTHOR_NAME=bench
	mkdir -p "$HOME" "$dir/one" "$dir/eight"

	rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1048576 / s }'; }
	now() { date +%s.%N; }
	elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
	sync_rate() { sed -n 's/.*(\([0-9.]*\) MiB\/s).*/\1/p' "$1"; }
	counts() { sed -n 's/.*: \([0-9]* files sent, [0-9]* skipped; [^,]* sent\).*/\1/p' "$1"; }

	local bytes=$((mib * 1024 * 1024)) per=$((mib / 8))
	head -c "$bytes" /dev/urandom >"$dir/one/model.bin"
	for i in 1 2 3 4 5 6 7 8; do
		head -c $((per * 1024 * 1024)) /dev/urandom >"$dir/eight/shard-$i.bin"
	done
	git init -q --bare "$dir/reg.git"
	"$rehydra" registry publish one@1 "$dir/one" --registry "$dir/reg.git" -q >/dev/null
	"$rehydra" registry publish eight@1 "$dir/eight" --registry "$dir/reg.git" -q >/dev/null
	head -c $((per * 1024 * 1024)) /dev/urandom >"$dir/eight/shard-5.bin"
	"$rehydra" registry publish eight@2 "$dir/eight" --registry "$dir/reg.git" -q >/dev/null
	export REHYDRA_REGISTRY=$dir/reg.git

	local t0 t1 s_hash s_cp r_one r_eight rss
	cat "$dir/one/model.bin" >/dev/null # warm the page cache for everyone
	t0=$(now); sha256sum "$dir/one/model.bin" >/dev/null; t1=$(now)
	s_hash=$(elapsed "$t0" "$t1")
	t0=$(now); cp "$dir/one/model.bin" "$dir/cp.bin"; sync -f "$dir/cp.bin"; t1=$(now)
	s_cp=$(elapsed "$t0" "$t1")
	rm -f "$dir/cp.bin"

	/usr/bin/time -f "%M" -o "$dir/rss" "$rehydra" registry sync one@1 --to "$dir/t1" -q \
		>"$dir/out1"
	r_one=$(sync_rate "$dir/out1")
	rss=$(awk '{ printf "%.1f", $1 / 1024 }' "$dir/rss")
	"$rehydra" registry sync eight@1 --to "$dir/t8" -q >"$dir/out8"
	r_eight=$(sync_rate "$dir/out8")
	t0=$(now); "$rehydra" registry sync eight@1 --to "$dir/t8" -q >"$dir/out8b"; t1=$(now)
	"$rehydra" registry sync eight@2 --to "$dir/t8" -q >"$dir/out8c"

	echo "file sink, $mib MiB (page cache warm), $(nproc) cores," \
		"load $(cut -d' ' -f1 /proc/loadavg)"
	printf '  %-44s %8s MiB/s\n' "sha256sum alone (the hash's ceiling)" \
		"$(rate "$bytes" "$s_hash")"
	printf '  %-44s %8s MiB/s\n' "cp + sync (the disk's ceiling)" "$(rate "$bytes" "$s_cp")"
	printf '  %-44s %8s MiB/s  (%.2fx sha256sum)\n' "rehydra sync, 1 file" "$r_one" \
		"$(awk -v a="$r_one" -v b="$(rate "$bytes" "$s_hash")" 'BEGIN { print a / b }')"
	printf '  %-44s %8s MiB/s  (%.2fx sha256sum)\n' "rehydra sync, 8 files (parallel)" \
		"$r_eight" \
		"$(awk -v a="$r_eight" -v b="$(rate "$bytes" "$s_hash")" 'BEGIN { print a / b }')"
	printf '  %-44s %8s MiB\n' "peak RSS, 1-file sync" "$rss"
	printf '  %-44s %8s s   (%s)\n' "unchanged re-sync of 8 files" "$(elapsed "$t0" "$t1")" \
		"$(counts "$dir/out8b")"
	printf '  %-44s %s\n' "1 of 8 changed" \
		"$(counts "$dir/out8c")"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	bench_file_sync "$@"
fi
