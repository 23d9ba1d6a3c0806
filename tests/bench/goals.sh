#!/usr/bin/env bash
# goals.sh - rehydra against its peer and the machine's limit, in one run.
#
#   bash tests/bench/goals.sh [BUILD_DIR]
#
# Prints one table: for each measure of issue 13's goals, rehydra's figure,
# the peer's (measured here, now, on the same bytes), the ratio and the goal.
# Machines are shared, so each pair runs interleaved, best of BENCH_RUNS
# (default 2), and the ratio is the figure to read.
#
#   demo    the demo drill's RTO against the limit: the larger of one copy +
#           fsync of its files and one SHA-256 pass over them, one
#           `openssl dgst` per file run in parallel (BENCH_DEMO_MIB, default
#           256, in the demo registry's shards)
#   file    `registry sync` to file:// of BENCH_FILE_MIB (default 1024) MiB
#           in 8 files, copied (writable objects) and straight from the
#           read-only LFS store (hard links), against `rsync -a` and
#           `cp -r` + `sync`
#   s3      client CPU of a multipart sync of one BENCH_S3_MIB (default
#           1024) MiB file to s3rver against one `curl --aws-sigv4` PUT of it
#   sftp    BENCH_SFTP_MIB (default 1024) MiB in 8 files to sshd on loopback
#           against scp of the same files; client CPU of both
#   audit   `audit verify` of BENCH_AUDIT_N (default 100,000) entries against
#           `openssl dgst -sha256` of the journal
#   rss     peak RSS syncing one BENCH_RSS_MIB (default 4096) MiB file over SFTP
#
# BENCH_QUICK=1 divides the sizes by 8 and runs once (a smoke run, ~1 min);
# BENCH_ONLY="demo file" runs only those. Needs what the tests need
# (.ci/install-deps, tests/tools for s3rver).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
export REHYDRA=$build/rehydra RH_SRC=$here RH_BUILD=$build
. "$here/tests/integration/lib.sh"
. "$here/tests/integration/sshd.sh"

div=1
RUNS=${BENCH_RUNS:-2}
if [ -n "${BENCH_QUICK:-}" ]; then
	div=8
	RUNS=1
fi
DEMO_MIB=$((${BENCH_DEMO_MIB:-256} / div))
FILE_MIB=$((${BENCH_FILE_MIB:-1024} / div))
S3_MIB=$((${BENCH_S3_MIB:-1024} / div))
SFTP_MIB=$((${BENCH_SFTP_MIB:-1024} / div))
AUDIT_N=$((${BENCH_AUDIT_N:-100000} / div))
RSS_MIB=$((${BENCH_RSS_MIB:-4096} / div))
ONLY=${BENCH_ONLY:-demo file s3 sftp audit rss}

export HOME=$T/home GIT_CONFIG_GLOBAL=$T/home/.gitconfig GIT_CONFIG_NOSYSTEM=1
export GIT_TERMINAL_PROMPT=0 XDG_STATE_HOME=$T/xdg REHYDRA_AUTHOR_NAME=bench
unset SSH_AUTH_SOCK
mkdir -p "$HOME"
: >"$GIT_CONFIG_GLOBAL"
git config --global user.name bench
git config --global user.email bench@rehydra.invalid
git config --global init.defaultBranch main

ROWS=$T/rows
: >"$ROWS"
now() { date +%s.%N; }
# settles earlier writes first, so no command pays for another's writeback
settle() { sync; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 < b + 0) ? a : b }'; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 > b + 0) ? a : b }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
# row MEASURE REHYDRA PEER RATIO GOAL
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$ROWS"; }
# cpu_of OUTFILE CMD...: runs CMD, writes user+system seconds to OUTFILE
cpu_of() {
	local out=$1
	shift
	/usr/bin/time -f "%U %S %M" -o "$out.t" "$@" >/dev/null
	awk '{ printf "%.3f\n", $1 + $2 }' "$out.t" >"$out"
}
wants() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }
# files DIR N MIB: N files of MIB/N MiB of random bytes
make_files() {
	mkdir -p "$1"
	local per=$(($3 * 1024 / $2)) i
	for i in $(seq 1 "$2"); do
		head -c $((per * 1024)) /dev/urandom >"$1/shard-$i.bin"
	done
}
publish() { # NAME@VER DIR REG
	[ -d "$3" ] || git init -q --bare "$3"
	"$REHYDRA" registry publish "$1" "$2" --registry "$3" --license MIT -q >/dev/null
}
objects_writable() { find "$1" -path '*/lfs/objects/*' -type f -exec chmod u+w {} +; }

echo "rehydra benchmarks: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 |
	sed 's/^ *//'), load $(cut -d' ' -f1 /proc/loadavg); best of $RUNS"

# ---- demo -------------------------------------------------------------------------
if wants demo; then
	echo "== demo drill, $DEMO_MIB MiB of weights in shards"
	reg=$T/demo-registry
	bash "$here/runbooks/tinylm/make-registry.sh" "$reg" "$DEMO_MIB" "$build" >/dev/null
	# every file the drill restores: the model and all its weights shards
	mapfile -t objs < <(find "$reg/.git/lfs/objects" -type f | sort)
	best_rto= best_cp= best_hash=
	for _ in $(seq 1 "$RUNS"); do
		settle
		"$REHYDRA" drill "$here/runbooks/tinylm-local.json" --var "registry=$reg" \
			--state-dir "$T/state" --json -q >"$T/demo.json" || true
		best_rto=$(min "$(jq -r '.rto_s // 999' "$T/demo.json")" "$best_rto")
		mkdir -p "$T/cp"
		settle
		t0=$(now)
		cp "${objs[@]}" "$T/cp/"
		sync -f "$T/cp/$(basename "${objs[0]}")"
		best_cp=$(min "$(since "$t0")" "$best_cp")
		rm -rf "$T/cp"
		# one SHA-256 pass over every file, the files in parallel (as the
		# hardware allows and as the drill may)
		t0=$(now)
		pids=()
		for o in "${objs[@]}"; do
			openssl dgst -sha256 "$o" >/dev/null &
			pids+=($!)
		done
		wait "${pids[@]}"
		best_hash=$(min "$(since "$t0")" "$best_hash")
	done
	limit=$(max "$best_cp" "$best_hash")
	echo "  rto $best_rto s; cp+sync $best_cp s; openssl dgst $best_hash s; limit $limit s"
	row "demo RTO / physical limit ($DEMO_MIB MiB)" "$best_rto s" "$limit s (limit)" \
		"$(ratio "$best_rto" "$limit")x" "<= 1.5x"
fi

# ---- file sink --------------------------------------------------------------------
if wants file; then
	echo "== file sink, $FILE_MIB MiB in 8 files"
	make_files "$T/file-in" 8 "$FILE_MIB"
	publish f@1 "$T/file-in" "$T/file-reg.git"
	cp -a "$T/file-reg.git" "$T/file-reg-rw.git"
	objects_writable "$T/file-reg-rw.git"
	cat "$T"/file-in/* >/dev/null
	b_copy= b_link= b_rsync= b_cp=
	for _ in $(seq 1 "$RUNS"); do
		rm -rf "$T/ft"
		settle
		t0=$(now)
		"$REHYDRA" registry sync f@1 --registry "$T/file-reg-rw.git" --to "$T/ft" -q >/dev/null
		b_copy=$(min "$(since "$t0")" "$b_copy")
		rm -rf "$T/ft"
		settle
		t0=$(now)
		"$REHYDRA" registry sync f@1 --registry "$T/file-reg.git" --to "$T/ft" -q >/dev/null
		b_link=$(min "$(since "$t0")" "$b_link")
		rm -rf "$T/ft"
		settle
		t0=$(now)
		rsync -a "$T/file-in/" "$T/ft/"
		b_rsync=$(min "$(since "$t0")" "$b_rsync")
		rm -rf "$T/ft"
		settle
		t0=$(now)
		cp -r "$T/file-in" "$T/ft"
		sync -f "$T/ft"
		b_cp=$(min "$(since "$t0")" "$b_cp")
		rm -rf "$T/ft"
	done
	echo "  rehydra copy $b_copy s, hard link $b_link s; rsync -a $b_rsync s; cp -r + sync $b_cp s"
	row "file sink $FILE_MIB MiB / 8 files, copied+fsync vs rsync -a" "$b_copy s" \
		"$b_rsync s" "$(ratio "$b_copy" "$b_rsync")x" "<= 1.0x"
	row "  same, vs cp -r + sync" "$b_copy s" "$b_cp s" "$(ratio "$b_copy" "$b_cp")x" ""
	row "  same, from the read-only LFS store (hard links)" "$b_link s" "$b_rsync s" \
		"$(ratio "$b_link" "$b_rsync")x" ""
	rm -rf "$T/file-in" "$T/file-reg.git" "$T/file-reg-rw.git"
fi

# ---- s3 ---------------------------------------------------------------------------
if wants s3; then
	echo "== s3 multipart, one $S3_MIB MiB file, to s3rver"
	S3RVER=$here/tests/tools/node_modules/s3rver/bin/s3rver.js
	[ -f "$S3RVER" ] || bash "$here/tests/tools/install.sh"
	mkdir -p "$T/s3data"
	node "$S3RVER" --directory "$T/s3data" --address 127.0.0.1 --port 0 \
		--configure-bucket bench --silent >"$T/s3rver.log" 2>&1 &
	s3pid=$!
	track "$s3pid"
	port=
	for _ in $(seq 1 300); do
		port=$(sed -n 's/^S3rver listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/s3rver.log")
		[ -n "$port" ] && break
		sleep 0.1
	done
	[ -n "$port" ] || { cat "$T/s3rver.log"; exit 1; }
	ep=http://127.0.0.1:$port
	make_files "$T/s3-in" 1 "$S3_MIB"
	publish s@1 "$T/s3-in" "$T/s3-reg.git"
	export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
	b_rh= b_curl= w_rh= w_curl=
	for r in $(seq 1 "$RUNS"); do
		t0=$(now)
		cpu_of "$T/s3.cpu" "$REHYDRA" registry sync s@1 --registry "$T/s3-reg.git" \
			--to "s3://bench/run$r?endpoint=$ep&region=us-east-1" -q
		w_rh=$(min "$(since "$t0")" "$w_rh")
		b_rh=$(min "$(cat "$T/s3.cpu")" "$b_rh")
		t0=$(now)
		cpu_of "$T/curl.cpu" curl -sSf --aws-sigv4 aws:amz:us-east-1:s3 -u S3RVER:S3RVER \
			-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -T "$T/s3-in/shard-1.bin" \
			"$ep/bench/curl$r/shard-1.bin"
		w_curl=$(min "$(since "$t0")" "$w_curl")
		b_curl=$(min "$(cat "$T/curl.cpu")" "$b_curl")
		rm -rf "$T/s3data/bench/run$r" "$T/s3data/bench/curl$r"
	done
	echo "  rehydra $w_rh s wall, $b_rh s CPU; curl PUT $w_curl s wall, $b_curl s CPU"
	row "S3 multipart $S3_MIB MiB, client CPU vs one curl PUT" "$b_rh s" "$b_curl s" \
		"$(ratio "$b_rh" "$b_curl")x" "<= 3x"
	kill "$s3pid" 2>/dev/null || true
	rm -rf "$T/s3-in" "$T/s3-reg.git" "$T/s3data"
fi

# ---- sftp -------------------------------------------------------------------------
if wants sftp || wants rss; then
	sshd_start "$T/sshd"
	K=(--known-hosts "$SSHD_KNOWN_HOSTS" --identity "$SSHD_USER_KEY")
fi
if wants sftp; then
	echo "== sftp, $SFTP_MIB MiB in 8 files, loopback"
	make_files "$T/sftp-in" 8 "$SFTP_MIB"
	publish p@1 "$T/sftp-in" "$T/sftp-reg.git"
	b_rh= b_scp= c_rh= c_scp=
	for r in $(seq 1 "$RUNS"); do
		rm -rf "$T/st-rh" "$T/st-scp"
		mkdir -p "$T/st-scp"
		t0=$(now)
		cpu_of "$T/rh.cpu" "$REHYDRA" registry sync p@1 --registry "$T/sftp-reg.git" \
			--to "sftp://$SSHD_USER@127.0.0.1:$SSHD_PORT$T/st-rh" -q "${K[@]}"
		b_rh=$(min "$(since "$t0")" "$b_rh")
		c_rh=$(min "$(cat "$T/rh.cpu")" "$c_rh")
		t0=$(now)
		cpu_of "$T/scp.cpu" scp -q "${SSHD_SSH_OPTS[@]}" -P "$SSHD_PORT" "$T"/sftp-in/* \
			"$SSHD_USER@127.0.0.1:$T/st-scp/"
		b_scp=$(min "$(since "$t0")" "$b_scp")
		c_scp=$(min "$(cat "$T/scp.cpu")" "$c_scp")
	done
	rate_rh=$(awk -v m="$SFTP_MIB" -v s="$b_rh" 'BEGIN { printf "%.0f", m / s }')
	rate_scp=$(awk -v m="$SFTP_MIB" -v s="$b_scp" 'BEGIN { printf "%.0f", m / s }')
	echo "  rehydra $b_rh s ($rate_rh MiB/s, $c_rh s CPU); scp $b_scp s ($rate_scp MiB/s, $c_scp s CPU)"
	row "SFTP loopback $SFTP_MIB MiB / 8 files, rate vs scp" "$rate_rh MiB/s" \
		"$rate_scp MiB/s" "$(ratio "$rate_rh" "$rate_scp")x" ">= 0.9x"
	row "  client CPU vs scp" "$c_rh s" "$c_scp s" "$(ratio "$c_rh" "$c_scp")x" ""
	rm -rf "$T/sftp-in" "$T/sftp-reg.git" "$T/st-rh" "$T/st-scp"
fi
if wants rss; then
	echo "== peak RSS, one $RSS_MIB MiB file over SFTP"
	make_files "$T/rss-in" 1 "$RSS_MIB"
	publish big@1 "$T/rss-in" "$T/rss-reg.git"
	rm -rf "$T/rss-in"
	/usr/bin/time -f "%M" -o "$T/rss.kib" "$REHYDRA" registry sync big@1 \
		--registry "$T/rss-reg.git" --to "sftp://$SSHD_USER@127.0.0.1:$SSHD_PORT$T/rss-t" \
		-q "${K[@]}" >/dev/null
	rss=$(awk '{ printf "%.1f", $1 / 1024 }' "$T/rss.kib")
	echo "  peak RSS $rss MiB"
	row "peak RSS, one $RSS_MIB MiB file over SFTP" "$rss MiB" "-" "-" "<= 32 MiB"
	rm -rf "$T/rss-reg.git" "$T/rss-t"
fi

# ---- audit ------------------------------------------------------------------------
if wants audit; then
	echo "== audit verify, $AUDIT_N entries"
	cmake --build "$build" --target journal_gen >/dev/null
	cat >"$T/five.json" <<'J'
{ "rehydra": 1, "name": "bench-five", "rto_target_s": 60,
  "steps": [ { "id": "provision", "do": "exec", "argv": ["true"] },
             { "id": "sync", "do": "exec", "argv": ["true"], "after": ["provision"] },
             { "id": "answer", "do": "exec", "argv": ["true"], "after": ["sync"],
               "restores_service": true },
             { "id": "teardown", "do": "exec", "argv": ["true"], "when": "always" } ] }
J
	"$REHYDRA" drill "$T/five.json" --state-dir "$T/tmpl" --json -q >"$T/record.json"
	mkdir -p "$T/astate/journal"
	J=$T/astate/journal/journal.jsonl
	"$build/tests/journal_gen" gen "$T/record.json" "$AUDIT_N" "$J"
	b_v= b_d=
	for _ in $(seq 1 "$((RUNS + 1))"); do
		t0=$(now)
		"$REHYDRA" audit verify --state-dir "$T/astate" >/dev/null
		b_v=$(min "$(since "$t0")" "$b_v")
		t0=$(now)
		openssl dgst -sha256 "$J" >/dev/null
		b_d=$(min "$(since "$t0")" "$b_d")
	done
	echo "  audit verify $b_v s; openssl dgst $b_d s ($(du -m "$J" | cut -f1) MiB)"
	row "audit verify $AUDIT_N entries vs openssl dgst" "$b_v s" "$b_d s" \
		"$(ratio "$b_v" "$b_d")x" "<= 2x"
fi

echo
printf '%-58s %14s %18s %8s %9s\n' measure rehydra peer/limit ratio goal
awk -F'\t' '{ printf "%-58s %14s %18s %8s %9s\n", $1, $2, $3, $4, $5 }' "$ROWS"
