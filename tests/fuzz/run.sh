#!/usr/bin/env bash
# Runs one libFuzzer target: run.sh BINARY NAME SECONDS [WORKDIR]
#
# Seeds: tests/fuzz/corpus/NAME (read only: libFuzzer writes new inputs to
# the first corpus directory only, which is WORKDIR/corpus/NAME, or a
# temporary directory removed afterwards when WORKDIR is not given, so
# `make test` always starts from the seeds alone). Crash inputs go to
# WORKDIR/artifacts/NAME/ (or the temporary directory, then printed).
# Exits non-zero on a crash, leak, sanitizer report, timeout (10 s for one
# input) or out-of-memory (2 GB), with libFuzzer's report; prints one line
# "fuzz NAME: ..." with execs, coverage and exec/s either way.
set -uo pipefail

bin=$1 name=$2 seconds=$3 work=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
seeds=$here/corpus/$name
[ -x "$bin" ] || { echo "fuzz $name: no binary $bin: build the fuzzers first (make build-fuzz)" >&2; exit 2; }
[ -d "$seeds" ] || { echo "fuzz $name: no seed corpus $seeds" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rh-fuzz-$name.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
if [ -n "$work" ]; then
	corpus=$work/corpus/$name artifacts=$work/artifacts/$name
else
	corpus=$tmp/corpus artifacts=$tmp/artifacts
fi
mkdir -p "$corpus" "$artifacts" || exit 2
dict=()
[ -f "$here/$name.dict" ] && dict=(-dict="$here/$name.dict")

log=$tmp/log
TMPDIR=$tmp "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
	-print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" \
	"$corpus" "$seeds" >"$log" 2>&1
rc=$?

done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
eps=$(sed -n 's/.* exec\/s: \([0-9]*\).*/\1/p' <<<"$done_line")
corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$done_line")
if [ "$rc" -ne 0 ]; then
	echo "fuzz $name: FAILED (libFuzzer exit $rc); its report:" >&2
	tail -n 80 "$log" >&2
	for f in "$artifacts"/*; do
		[ -f "$f" ] || continue
		echo "fuzz $name: crash input ($(stat -c %s "$f") bytes), base64:" >&2
		head -c 4096 "$f" | base64 >&2
		[ -n "$work" ] && echo "fuzz $name: kept at $f; reproduce with: $bin $f" >&2
	done
	exit 1
fi
echo "fuzz $name: ${execs:-?} execs in ${seconds} s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, ${eps:-?} exec/s"
