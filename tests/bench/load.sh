#!/usr/bin/env bash
# load.sh - load_probe side by side with wrk and hey, in one run.
#
#   bash tests/bench/load.sh [BUILD_DIR]
#
# 1. Highest sustained rate with the same connection count (CONNS, default
#    16), against a trivial keep-alive server (tests/bench/ka_server.c: the
#    server is not the bottleneck, the client is) and against tinylm
#    (POST /v1/completions). wrk (-t1: one thread, as load_probe) and hey are
#    closed loop, so their rate is their throughput at saturation; the open
#    loop load_probe's is the highest fixed rate whose achieved rate stayed
#    within 5 % of it without errors (bisection up to 1.25 x wrk's rate).
# 2. Client CPU per request (user + system time of the tool's process, so
#    rehydra's includes its start, validation and journal), at those rates.
# 3. Coordinated omission: tinylm stalls once for STALL_S (default 1) seconds,
#    2 s into a DUR_S (default 6) second run of each tool. A user arriving at
#    a constant rate during the run waits up to STALL_S: the true p99 is
#    STALL_S - 0.01 * DUR_S (+ the normal latency), p99.9 is
#    STALL_S - 0.001 * DUR_S. Each tool's reported p99 and p99.9 are printed
#    next to it (hey's from its per-request csv, wrk's from its own histogram).
#
# wrk and hey come from Debian (installed here with apt-get when missing).
# Machines are shared: compare the ratios within one run.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
rehydra="$build/rehydra"
CONNS=${CONNS:-16}
STALL_S=${STALL_S:-1}
DUR_S=${DUR_S:-6}
T=$(mktemp -d "${TMPDIR:-/tmp}/rh-bench-load-XXXXXX")
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] || continue
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$T"
}
trap cleanup EXIT

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v hey >/dev/null || need+=(hey)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]} from Debian"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
for tool in jq python3 wrk hey; do
	command -v "$tool" >/dev/null || { echo "load.sh: $tool is missing" >&2; exit 1; }
done
cmake --build "$build" --target ka_server >/dev/null

# cpu FILE CMD...: runs CMD, writes its user+system CPU seconds to FILE.
cpu() {
	local out=$1
	shift
	python3 -c '
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write("%.6f\n" % (r.ru_utime + r.ru_stime))
sys.exit(0 if rc in (0, 3) else rc)' "$out" "$@"
}

# The tinylm model from a registry, synced the way a drill does.
bash "$here/runbooks/tinylm/make-registry.sh" "$T/reg" 1 "$build" >/dev/null
"$rehydra" registry sync tinylm@1.0.0 --to "file://$T/model" --registry "$T/reg" \
	--state-dir "$T/state" -q >/dev/null
sha=$(sha256sum "$T/model/manifest.json" | cut -d' ' -f1)

# start_tinylm [ARGS...]: sets PORT and TLM_PID.
start_tinylm() {
	"$build/tinylm" --model-dir "$T/model" --expect-sha256 "$sha" --port 0 "$@" \
		>"$T/tlm.out" 2>/dev/null &
	TLM_PID=$!
	PIDS+=("$TLM_PID")
	for _ in $(seq 100); do
		PORT=$(jq -r 'select(.event == "listening") | .port' "$T/tlm.out" 2>/dev/null || true)
		[ -n "$PORT" ] && curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && return
		sleep 0.1
	done
	echo "load.sh: tinylm did not become ready" >&2
	exit 1
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

BODY='{"model":"tinylm","prompt":"The registry ","max_tokens":16}'
cat >"$T/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
EOF
cat >"$T/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %.3f %.3f %.3f %.3f\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, summary.duration / 1e6,
    latency:percentile(99) / 1e3, latency:percentile(99.9) / 1e3, latency.max / 1e3))
end
EOF
cat "$T/post.lua" "$T/report.lua" >"$T/wrk-post.lua"

# load_probe as a drill of one step; URL, method, body from the arguments.
# probe OUT RATE DURATION URL [POST]
probe() {
	local out=$1 rate=$2 dur=$3 url=$4 post=${5:-}
	jq -n --arg url "$url" --argjson rate "$rate" --argjson dur "$dur" --argjson c "$CONNS" \
		--arg post "$post" --argjson body "$BODY" '
	  {rehydra: 1, name: "bench-load",
	   steps: [{id: "load", do: "load_probe", url: $url, rate_per_s: $rate,
	            duration_s: $dur, warmup_s: 0.5, connections: $c, request_timeout_s: 10}
	           + (if $post == "" then {} else {method: "POST", body: $body} end)]}' \
		>"$T/probe.json"
	cpu "$out.cpu" "$rehydra" drill "$T/probe.json" --state-dir "$T/state" --json -q >"$out"
}

# wrk_run OUT DURATION URL [LUA]: one thread, CONNS connections.
wrk_run() {
	local out=$1 dur=$2 url=$3 lua=${4:-$T/report.lua}
	cpu "$out.cpu" wrk -t1 -c"$CONNS" -d"${dur}s" --timeout 10s -s "$lua" "$url" >"$out"
}

# hey_run OUT DURATION URL [POST]: per-request csv.
hey_run() {
	local out=$1 dur=$2 url=$3 post=${4:-}
	if [ -n "$post" ]; then
		cpu "$out.cpu" hey -z "${dur}s" -c "$CONNS" -t 10 -o csv -m POST \
			-T application/json -d "$BODY" "$url" >"$out"
	else
		cpu "$out.cpu" hey -z "${dur}s" -c "$CONNS" -t 10 -o csv "$url" >"$out"
	fi
}

# hey_stats CSV: requests ok, duration, p99 ms, p99.9 ms, max ms (nearest rank).
hey_stats() {
	tail -n +2 "$1" | awk -F, '$7 == 200 { print $1 * 1000, $8 }' | sort -n -k1,1 |
		awk '{ v[NR] = $1; if ($2 > last) last = $2 }
		     END { n = NR; r99 = int(n * 0.99 + 0.999999); r999 = int(n * 0.999 + 0.999999)
		           printf "%d %.3f %.3f %.3f %.3f\n", n, last, v[r99], v[r999], v[n] }'
}

fmt_cpu_us() { # CPU_FILE REQUESTS
	awk -v c="$(cat "$1")" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f", c / n * 1e6; else print "-" }'
}

rows=()
row() { rows+=("$(printf '%-34s %-11s %12s %10s %12s' "$@")"); }

# ---- 1 and 2: highest sustained rate, CPU per request --------------------
maxrate() { # LABEL URL [POST]
	local label=$1 url=$2 post=${3:-} wrk_rps hey_rps best=0 best_out="" n
	if [ -n "$post" ]; then wrk_run "$T/w.out" 4 "$url" "$T/wrk-post.lua"; else wrk_run "$T/w.out" 4 "$url"; fi
	read -r n _ dur _ _ _ < <(grep '^RESULT' "$T/w.out" | cut -d' ' -f2-)
	wrk_rps=$(awk -v n="$n" -v d="$dur" 'BEGIN { printf "%.0f", n / d }')
	row "$label" wrk "$wrk_rps" 1.00 "$(fmt_cpu_us "$T/w.out.cpu" "$n")"
	hey_run "$T/h.out" 4 "$url" "$post"
	read -r n dur _ _ _ < <(hey_stats "$T/h.out")
	hey_rps=$(awk -v n="$n" -v d="$dur" 'BEGIN { printf "%.0f", n / d }')
	row "$label" hey "$hey_rps" "$(awk -v a="$hey_rps" -v b="$wrk_rps" 'BEGIN { printf "%.2f", a / b }')" \
		"$(fmt_cpu_us "$T/h.out.cpu" "$n")"
	# bisection between 0 and 1.25 x wrk's rate: six runs of 3 s
	local lo=0 hi i rate
	hi=$(awk -v w="$wrk_rps" 'BEGIN { printf "%.0f", w * 1.25 }')
	for i in 1 2 3 4 5 6; do
		rate=$(( (lo + hi) / 2 ))
		probe "$T/p.$i.out" "$rate" 3 "$url" "$post"
		if jq -e --argjson r "$rate" '.steps[0].outputs | .errors == 0 and .achieved_rate_per_s >= 0.95 * $r' \
			"$T/p.$i.out" >/dev/null; then
			lo=$rate
			best=$rate
			best_out=$T/p.$i.out
		else
			hi=$rate
		fi
	done
	if [ -n "$best_out" ]; then
		n=$(jq '.steps[0].outputs.requests' "$best_out")
		row "$label" load_probe "$best" "$(awk -v a="$best" -v b="$wrk_rps" 'BEGIN { printf "%.2f", a / b }')" \
			"$(fmt_cpu_us "$best_out.cpu" "$n")"
	else
		row "$label" load_probe "<$rate" - -
	fi
}

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 1, 2: highest sustained rate with $CONNS connections, client CPU per request"
"$build/tests/ka_server" >"$T/ka.port" &
KA_PID=$!
PIDS+=("$KA_PID")
for _ in $(seq 50); do [ -s "$T/ka.port" ] && break; sleep 0.1; done
maxrate "trivial keep-alive server, GET" "http://127.0.0.1:$(cat "$T/ka.port")/"
stop "$KA_PID"
start_tinylm
maxrate "tinylm, POST /v1/completions" "http://127.0.0.1:$PORT/v1/completions" post
stop "$TLM_PID"
printf '%-34s %-11s %12s %10s %12s\n' "server" "tool" "max rate/s" "vs wrk" "cpu us/req"
printf '%s\n' "${rows[@]}"

# ---- 3: coordinated omission ----------------------------------------------
echo
echo "== 3: tinylm stalls ${STALL_S} s once, 2 s into a ${DUR_S} s run ($CONNS connections)"
true99=$(awk -v s="$STALL_S" -v d="$DUR_S" 'BEGIN { printf "%.0f", (s - 0.01 * d) * 1000 }')
true999=$(awk -v s="$STALL_S" -v d="$DUR_S" 'BEGIN { printf "%.0f", (s - 0.001 * d) * 1000 }')
printf '%-11s %12s %10s %10s %10s %12s %12s\n' tool requests "rate/s" "p99 ms" "p99.9 ms" "true p99" "true p99.9"
start_tinylm --stall-after 2 --stall-for "$STALL_S"
wrk_run "$T/cw.out" "$DUR_S" "http://127.0.0.1:$PORT/v1/completions" "$T/wrk-post.lua"
stop "$TLM_PID"
read -r n _ dur p99 p999 _ < <(grep '^RESULT' "$T/cw.out" | cut -d' ' -f2-)
printf '%-11s %12s %10.0f %10.1f %10.1f %12s %12s\n' wrk "$n" "$(awk -v n="$n" -v d="$dur" 'BEGIN { print n / d }')" \
	"$p99" "$p999" "$true99" "$true999"
start_tinylm --stall-after 2 --stall-for "$STALL_S"
hey_run "$T/ch.out" "$DUR_S" "http://127.0.0.1:$PORT/v1/completions" post
stop "$TLM_PID"
read -r n dur p99 p999 _ < <(hey_stats "$T/ch.out")
printf '%-11s %12s %10.0f %10.1f %10.1f %12s %12s\n' hey "$n" "$(awk -v n="$n" -v d="$dur" 'BEGIN { print n / d }')" \
	"$p99" "$p999" "$true99" "$true999"
# load_probe at a rate tinylm sustains (half its measured max), no warmup:
# the stall is 2 s after the first request
start_tinylm --stall-after 2 --stall-for "$STALL_S"
rate=$(awk -v r="$(printf '%s\n' "${rows[@]}" | awk '/tinylm/ && / wrk / { print $(NF-2) }')" \
	'BEGIN { r = r / 2; if (r > 2000) r = 2000; printf "%.0f", r }')
jq -n --arg url "http://127.0.0.1:$PORT/v1/completions" --argjson rate "$rate" \
	--argjson dur "$DUR_S" --argjson c "$CONNS" --argjson body "$BODY" '
  {rehydra: 1, name: "bench-load",
   steps: [{id: "load", do: "load_probe", url: $url, method: "POST", body: $body,
            rate_per_s: $rate, duration_s: $dur, connections: $c, request_timeout_s: 10}]}' \
	>"$T/co.json"
"$rehydra" drill "$T/co.json" --state-dir "$T/state" --json -q >"$T/cp.out" || true
stop "$TLM_PID"
jq -r --arg t99 "$true99" --arg t999 "$true999" '.steps[0].outputs |
  "load_probe  \(.requests | tostring | (" " * (12 - length)) + .) \(.achieved_rate_per_s | floor | tostring | (" " * (10 - length)) + .) \(.p99_ms | tostring | (" " * (10 - length)) + .) \(.p999_ms | tostring | (" " * (10 - length)) + .) \($t99 | (" " * (12 - length)) + .) \($t999 | (" " * (12 - length)) + .)   (late_sends \(.late_sends))"' "$T/cp.out"
echo "(true values: a constant arrival rate for ${DUR_S} s with one ${STALL_S} s stall; plus the normal latency)"
