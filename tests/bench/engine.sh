#!/usr/bin/env bash
# engine.sh - how much time does the orchestrator itself add?
#
#   bash tests/bench/engine.sh [BUILD_DIR]
#
# 1. Two parallel branches of `exec sleep 1`: the RTO should be ~1 s, not 2 s.
# 2. 500 `exec true` steps in a chain: the orchestrator's gap between one
#    step's end and the next one's start (median, p95), and the whole chain
#    side by side with the peer, a bash loop spawning /bin/true 500 times.
# 3. The demo drill (tinylm, 256 MiB shard unless DEMO_SHARD_MIB is set):
#    rto_s against the critical path's own step time.
# Prints numbers and ratios; machines are shared, so compare ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
rehydra="$build/rehydra"
T=$(mktemp -d "${TMPDIR:-/tmp}/rh-bench-XXXXXX")
trap 'rm -rf "$T"' EXIT

echo "== 1. two parallel branches of sleep 1"
cat >"$T/par.json" <<'J'
{ "rehydra": 1, "name": "bench-parallel", "rto_target_s": 5,
  "steps": [ { "id": "a", "do": "exec", "argv": ["sleep", "1"] },
             { "id": "b", "do": "exec", "argv": ["sleep", "1"] },
             { "id": "done", "do": "exec", "argv": ["true"], "after": ["a", "b"],
               "restores_service": true } ] }
J
"$rehydra" drill "$T/par.json" --state-dir "$T/state" --json -q >"$T/par.out"
jq -r '"rto_s \(.rto_s)  (serial would be >= 2.0; ratio to 1 s: \(.rto_s / 1 * 1000 | round / 1000))"' "$T/par.out"

echo "== 2. 500 exec true steps in a chain"
jq -n '{rehydra: 1, name: "bench-chain",
        steps: [range(0; 500) as $i |
                {id: "s\($i)", do: "exec", argv: ["true"]} +
                (if $i > 0 then {after: ["s\($i - 1)"]} else {} end)]}' >"$T/chain.json"
t0=$(date +%s.%N)
"$rehydra" drill "$T/chain.json" --state-dir "$T/state" --json -q >"$T/chain.out"
t1=$(date +%s.%N)
for i in $(seq 1 500); do /bin/true; done
t2=$(date +%s.%N)
jq -r '
  . as $r | .steps as $s
  | [range(1; $s | length) | ($s[.].start_s - $s[. - 1].end_s) * 1000] | sort as $gaps
  | [$s[] | (.end_s - .start_s) * 1000] | sort as $dur
  | "gap between steps (orchestrator): median \($gaps[($gaps|length)/2|floor] * 1000 | round / 1000) ms,"
    + " p95 \($gaps[($gaps|length)*95/100|floor] * 1000 | round / 1000) ms  (goal: median < 2 ms)",
    "step duration (spawn+run+reap of true): median \($dur[($dur|length)/2|floor] * 1000 | round / 1000) ms",
    "overhead_s for the chain: \($r.overhead_s) s over 500 steps = \($r.overhead_s * 1000 / 500 * 1000 | round / 1000) ms/step"
' "$T/chain.out"
awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
  r = b - a; s = c - b;
  printf "whole chain: rehydra %.3f s (incl. start, validation, record) vs bash loop %.3f s: ratio %.2f\n", r, s, r / s }'

echo "== 3. demo drill"
mib=${DEMO_SHARD_MIB:-256}
bash "$here/runbooks/tinylm/make-registry.sh" "$T/registry" "$mib" "$build" >/dev/null
"$rehydra" drill "$here/runbooks/tinylm-local.json" --var registry="$T/registry" \
	--state-dir "$T/state" --json -q >"$T/demo.out"
jq -r --arg mib "$mib" '
  "shard \($mib) MiB: rto_s \(.rto_s), critical path \(.critical_path | join(" -> ")),"
  + " steps \((.rto_s - .overhead_s) * 1000 | round / 1000) s, overhead \(.overhead_s) s"
  + " = \(.overhead_s / .rto_s * 10000 | round / 100)% of the RTO (goal < 1%)",
  (.steps[] | select(.id == "sync") | "sync: \(.outputs.bytes_sent) bytes at \(.outputs.throughput_mib_s) MiB/s")
' "$T/demo.out"
