#!/usr/bin/env bash
# load_probe.sh - the load_probe step in real drills of the real tinylm (no
# test double): a fixed rate that holds its slo (plain and streamed, with
# time to first token), the same against tinylm's stall test option, which
# must fail the slo naming the measured p99, and a wrong model answer under
# load counted as errors. Also: the record's "load", `audit show`, the
# Prometheus textfile (checked by promtool check metrics) and
# validation of the new keys. A few seconds of load in all.
. "$(dirname "$0")/lib.sh"

REG="$T/registry"
make_registry "$REG" 1
STATE="$T/state"
BASE="$RH_SRC/runbooks/tinylm-local.json"

# runbook OUT STACK_EXTRA_JSON LOAD_STEPS_JSON: the demo runbook with its
# probe and teardown, the stack command extended and the given steps added.
runbook() {
	jq --argjson extra "$2" --argjson load "$3" '
	    .stack.command += $extra
	    | .steps = ([.steps[] | select(.id == "provision" or .id == "sync" or .id == "start"
	                                   or .id == "answer" or .id == "teardown")] + $load)' \
		"$BASE" >"$1"
}

jqe() { jq -e "$@" >/dev/null; }

drill() { # OUT RUNBOOK [args]: record on stdout into OUT, exit code in RC
	local out=$1 rb=$2
	shift 2
	set +e
	"$REHYDRA" drill "$rb" --var registry="$REG" --state-dir "$STATE" --json "$@" \
		>"$out" 2>"$out.err"
	RC=$?
	set -e
}

COMPLETION='"method": "POST", "url": "http://${target.host}:${target.port}/v1/completions",
  "body": {"model": "tinylm", "prompt": "The registry ", "max_tokens": 8}'

# 1. A fixed rate against tinylm holds a generous slo (the machine may be busy).
runbook "$T/ok.json" '["--token-ms", "1"]' "[
  {\"id\": \"load\", \"do\": \"load_probe\", \"after\": [\"answer\"], $COMPLETION,
   \"expect_status\": 200, \"expect_json\": {\"object\": \"text_completion\", \"model\": \"tinylm\"},
   \"rate_per_s\": 100, \"duration_s\": 1.5, \"warmup_s\": 0.3, \"connections\": 8,
   \"slo\": {\"p99_ms\": 1000, \"error_rate\": 0, \"min_rate_per_s\": 80}},
  {\"id\": \"stream\", \"do\": \"load_probe\", \"after\": [\"load\"], $COMPLETION,
   \"stream\": true, \"expect_json\": {\"model\": \"tinylm\"},
   \"rate_per_s\": 50, \"duration_s\": 1, \"connections\": 8,
   \"slo\": {\"ttft_p95_ms\": 1000, \"p99_ms\": 1500}}]"
drill "$T/ok.out" "$T/ok.json" --prom-file "$T/drill.prom"
expect_eq "slo held: exit code" 0 "$RC"
load() { jq ".steps[] | select(.id==\"$2\") | .outputs" "$1"; }
load "$T/ok.out" load >"$T/ok.load"
expect_eq "slo held: every named output" \
	"achieved_rate_per_s errors late_sends max_ms p50_ms p90_ms p95_ms p999_ms p99_ms requests timeouts" \
	"$(jq -r '[keys[] | select(IN("requests","errors","timeouts","late_sends",
	    "achieved_rate_per_s","p50_ms","p90_ms","p95_ms","p99_ms","p999_ms","max_ms"))]
	    | sort | join(" ")' "$T/ok.load")"
expect_eq "slo held: warmup excluded, 1.5 s at 100/s measured" 150 "$(jq .requests "$T/ok.load")"
expect_eq "slo held: no errors" 0 "$(jq .errors "$T/ok.load")"
check "slo held: percentiles ordered" \
	jqe '.p50_ms > 0 and .p50_ms <= .p90_ms and .p90_ms <= .p95_ms and .p95_ms <= .p99_ms
	       and .p99_ms <= .p999_ms and .p999_ms <= .max_ms and .slo_met == true' "$T/ok.load"
load "$T/ok.out" stream >"$T/ok.stream"
check "stream: ttft measured, below the whole answer" \
	jqe '.requests == 50 and .errors == 0 and .ttft_p50_ms > 0
	       and .ttft_p50_ms <= .p50_ms and .ttft_p95_ms > 0 and .ttft_p99_ms >= .ttft_p95_ms' \
	"$T/ok.stream"
check "stream: 8 tokens per answer, tokens per second" \
	jqe '.tokens == 400 and .tokens_per_s > 0 and .tokens_per_s_per_request > 0' "$T/ok.stream"
expect_eq "record: load is the last load test" stream "$(jq -r .load.step "$T/ok.out")"
id=$(jq -r .drill_id "$T/ok.out")
"$REHYDRA" audit show "$id" --state-dir "$STATE" >"$T/show.txt"
check "audit show: a load line with p99" grep -Eq '^load +stream \(ok\): 50 req .*p99 [0-9.]+ ms.*ttft p95' "$T/show.txt"
peers=$(grep '"POST /v1/completions"' "$STATE/drills/$id/stack.stderr" | awk '{print $2}' | sort -u | wc -l)
posts=$(grep -c '"POST /v1/completions"' "$STATE/drills/$id/stack.stderr")
check "keep-alive: $posts completions over $peers connections (at most 8 + 8)" \
	test "$posts" -eq 230 -a "$peers" -le 16
check "timeline: the headline numbers" grep -Eq 'load +ok .* 150 req at .*p99 [0-9.]+ ms .* 0 errors' "$T/ok.out.err"
check "prometheus: latency quantiles" \
	grep -Eq '^rehydra_drill_latency_seconds\{runbook="tinylm-local",target="local:local",scenario="-",quantile="0.99"\} [0-9.e-]+$' "$T/drill.prom"
check "prometheus: ttft quantiles" grep -q '^rehydra_drill_ttft_seconds{.*quantile="0.95"}' "$T/drill.prom"
prom_check "prometheus: promtool check metrics accepts the file" "$T/drill.prom"

# 2. The same probe against a server that stalls 1.5 s once: every request due
# during the stall counts from its intended time, so p99 is about 1.5 s.
runbook "$T/stall.json" '["--stall-after", "0.5", "--stall-for", "1.5"]' "[
  {\"id\": \"load\", \"do\": \"load_probe\", \"after\": [\"answer\"], $COMPLETION,
   \"rate_per_s\": 100, \"duration_s\": 3, \"connections\": 8, \"request_timeout_s\": 5,
   \"slo\": {\"p99_ms\": 500}}]"
drill "$T/stall.out" "$T/stall.json"
expect_eq "stall: not restored (exit 3)" 3 "$RC"
load "$T/stall.out" load >"$T/stall.load"
expect_eq "stall: load step failed" failed "$(jq -r '.steps[] | select(.id=="load") | .status' "$T/stall.out")"
check "stall: p99 near the stall (1.2 to 2.5 s), no timeouts" \
	jqe '.p99_ms > 1200 and .p99_ms < 2500 and .timeouts == 0 and .requests == 300' "$T/stall.load"
check "stall: sends held back by busy connections are counted" jqe '.late_sends > 50' "$T/stall.load"
msg=$(jq -r '.steps[] | select(.id=="load") | .error' "$T/stall.out")
measured=$(printf '%s' "$msg" | sed -nE 's/.*p99_ms ([0-9.]+) over the slo 500.*/\1/p')
check "stall: the error names the measured p99 and the bound ($msg)" \
	awk -v m="$measured" -v o="$(jq .p99_ms "$T/stall.load")" 'BEGIN { exit !(m != "" && m - o < 0.01 && o - m < 0.01) }'

# 3. A wrong model answer under load: every answer counts as an error.
runbook "$T/wrong.json" '[]' "[
  {\"id\": \"load\", \"do\": \"load_probe\", \"after\": [\"answer\"], $COMPLETION,
   \"expect_json\": {\"model\": \"tinylm-70b\"},
   \"rate_per_s\": 50, \"duration_s\": 1, \"connections\": 4, \"slo\": {\"error_rate\": 0.01}}]"
drill "$T/wrong.out" "$T/wrong.json"
expect_eq "wrong answer: exit code" 3 "$RC"
load "$T/wrong.out" load >"$T/wrong.load"
check "wrong answer: all 50 counted as errors" jqe '.requests == 50 and .errors == 50 and .error_rate == 1' "$T/wrong.load"
check "wrong answer: the first error names the field" \
	jqe '.first_error | test("model: expected \"tinylm-70b\", got \"tinylm\"")' "$T/wrong.load"
check "wrong answer: the step error names the rate and the bound" \
	jqe '.steps[] | select(.id=="load") | .error | test("error_rate 1 over the slo 0.01")' "$T/wrong.out"

# 4. Validation of the new keys (nothing runs).
runbook "$T/bad.json" '[]' '[
  {"id": "load", "do": "load_probe", "after": ["answer"], "url": "http://x/",
   "rate_per_s": 0, "duration_s": 1, "connections": 5000, "slo": {"p99ms": 5, "ttft_p95_ms": 9}}]'
set +e
"$REHYDRA" validate "$T/bad.json" >"$T/bad.txt" 2>&1
RC=$?
set -e
expect_eq "validate: exit code" 2 "$RC"
check "validate: rate must be positive" grep -q 'rate_per_s: expected a number greater than 0' "$T/bad.txt"
check "validate: connections bounded" grep -q 'connections' "$T/bad.txt"
check "validate: unknown slo gets a suggestion" grep -q "unknown slo 'p99ms': did you mean 'p99_ms'" "$T/bad.txt"
check "validate: ttft needs a stream" grep -q 'ttft_p95_ms needs a streamed response' "$T/bad.txt"
jq '(.steps[] | select(.id=="load")) += {"rate_per_s": 10, "duration_s": 30, "timeout_s": 10, "connections": 4, "slo": {"p99_ms": 5}}' \
	"$T/bad.json" >"$T/short.json"
set +e
"$REHYDRA" validate "$T/short.json" >"$T/short.txt" 2>&1
RC=$?
set -e
expect_eq "validate: a timeout shorter than the test is refused" 2 "$RC"
check "validate: it says what the test needs" grep -q 'needs warmup_s + duration_s + request_timeout_s = 35 s' "$T/short.txt"

finish
