#!/usr/bin/env bash
# audit.sh - how fast is the audit journal?
#
#   bash tests/bench/audit.sh [BUILD_DIR] [RECORDS]
#
# 1. A journal of RECORDS (default 100,000) drills, generated directly by
#    tests/bench/journal_gen.c from a real drill record of a 5-step runbook.
# 2. `audit verify` (parse every line, hash it, check the chain) against the
#    peers that do less: sha256sum of the file (read + hash only) and
#    `jq -c .` (parse only). Goal: < 2 s.
# 3. `audit report --format json` and `audit list`. Goal: report < 2 s.
# 4. One append including fsync, median over 200 appends, against a bare
#    write + fdatasync of the same bytes (the disk's floor). Goal: < 5 ms.
# Prints numbers and ratios; machines are shared, so compare ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
n=${2:-100000}
rehydra="$build/rehydra"
T=$(mktemp -d "${TMPDIR:-/tmp}/rh-bench-XXXXXX")
trap 'rm -rf "$T"' EXIT

# journal_gen is built by CMake beside the unit tests, against the same layers
cmake --build "$build" --target journal_gen >/dev/null
cp "$build/tests/journal_gen" "$T/journal_gen"

# best of 3 wall-clock seconds of a command (output discarded)
best() {
	local b=999999 s e d
	for _ in 1 2 3; do
		s=$(date +%s.%N)
		"$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; return 1; }
		e=$(date +%s.%N)
		d=$(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f", e - s }')
		b=$(awk -v a="$b" -v d="$d" 'BEGIN { print (d < a) ? d : a }')
	done
	echo "$b"
}

echo "== 1. a journal of $n drills"
cat >"$T/five.json" <<'J'
{ "rehydra": 1, "name": "bench-five", "rto_target_s": 60,
  "target": { "provider": "local", "region": "local" },
  "steps": [ { "id": "provision", "do": "exec", "argv": ["true"] },
             { "id": "sync", "do": "exec", "argv": ["true"], "after": ["provision"] },
             { "id": "start", "do": "exec", "argv": ["true"], "after": ["sync"] },
             { "id": "answer", "do": "exec", "argv": ["true"], "after": ["start"],
               "restores_service": true },
             { "id": "teardown", "do": "exec", "argv": ["true"], "when": "always" } ] }
J
"$rehydra" drill "$T/five.json" --state-dir "$T/tmpl" --json -q >"$T/record.json"
mkdir -p "$T/state/journal"
J="$T/state/journal/journal.jsonl"
s=$(date +%s.%N)
"$T/journal_gen" gen "$T/record.json" "$n" "$J"
e=$(date +%s.%N)
awk -v s="$s" -v e="$e" -v b="$(stat -c %s "$J")" -v n="$n" 'BEGIN {
  printf "generated %d entries, %.1f MiB (%.0f bytes/entry) in %.2f s\n", n + 1, b / 1048576, b / (n + 1), e - s }'

echo "== 2. audit verify"
"$rehydra" audit verify --state-dir "$T/state"
v=$(best "$rehydra" audit verify --state-dir "$T/state")
h=$(best sha256sum "$J")
q=$(best jq -c . "$J")
awk -v v="$v" -v h="$h" -v q="$q" 'BEGIN {
  printf "audit verify %.3f s (goal < 2 s) | sha256sum %.3f s (ratio %.2f) | jq -c . %.3f s (ratio %.2f)\n", v, h, v / h, q, v / q }'

echo "== 3. audit report, audit list"
if "$rehydra" audit report --state-dir "$T/state" --format json >"$T/report.json" 2>"$T/report.err"; then
	r=$(best "$rehydra" audit report --state-dir "$T/state" --format json)
	awk -v r="$r" -v q="$q" 'BEGIN {
	  printf "audit report --format json %.3f s (goal < 2 s) | jq -c . %.3f s (ratio %.2f)\n", r, q, r / q }'
	jq -r '"  \(.groups | length) groups, \([.groups[].drills] | add) drills"' "$T/report.json"
else
	echo "audit report failed: $(cat "$T/report.err")"
fi
l=$(best "$rehydra" audit list --state-dir "$T/state" --json)
awk -v l="$l" -v q="$q" 'BEGIN {
  printf "audit list --json %.3f s | jq -c . %.3f s (ratio %.2f)\n", l, q, l / q }'

echo "== 4. one append including fsync (200 appends, onto the $n-entry journal)"
read -r med p95 rmed rp95 bytes < <("$T/journal_gen" append "$T/state" "$T/record.json" 200)
awk -v m="$med" -v p="$p95" -v rm="$rmed" -v rp="$rp95" -v b="$bytes" 'BEGIN {
  printf "append median %.3f ms, p95 %.3f ms (goal: median < 5 ms) | bare write+fdatasync of %d bytes: median %.3f ms, p95 %.3f ms (ratio %.2f)\n", m, p, b, rm, rp, m / rm }'
"$rehydra" audit verify --state-dir "$T/state" >/dev/null && echo "journal still verifies after the appends"
