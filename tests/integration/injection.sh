#!/usr/bin/env bash
# injection.sh - values that arrive at run time (step outputs, env) are held
# to the rules literals are held to, and secrets never reach the terminal.
#
# An exec step prints outputs with CR/LF; an http_probe uses them in a header,
# the method and the URL. tests/doubles/echo_server.js (a test double of the
# probed service) logs the raw request heads it receives: nothing injected
# may reach it, the step fails saying why, and the timeline shows the value
# escaped, never a raw CR or LF. Then a secret from ${env.*} placed in
# argv[0], cwd, a URL path and expect_json of failing drills must appear in
# neither stdout nor stderr (the record redacts it too).
. "$(dirname "$0")/lib.sh"

node "$RH_SRC/tests/doubles/echo_server.js" "$T/requests.log" >"$T/srv.port" 2>"$T/srv.err" &
track $!
for _ in $(seq 100); do
	[ -s "$T/srv.port" ] && break
	sleep 0.1
done
PORT=$(head -n1 "$T/srv.port")
check "echo server listening" test -n "$PORT"
: >"$T/requests.log"
STATE="$T/state"

# probe_runbook OUT FIELD VALUE-EXPR: an exec step "a" prints {"v": <bad>},
# the probe puts ${steps.a.outputs.v} into FIELD.
inject() { # NAME JQ-FILTER-FOR-THE-PROBE
	local name=$1 filter=$2
	jq -n --arg url "http://127.0.0.1:$PORT/health" "{rehydra: 1, name: \"inj\",
		steps: [
		  {id: \"a\", do: \"exec\",
		   argv: [\"printf\", \"{\\\"v\\\": \\\"GET /x HTTP/1.1\\\\\\\\r\\\\\\\\nX-Injected: 1\\\"}\\\\n\"]},
		  ({id: \"probe\", do: \"http_probe\", after: [\"a\"], url: \$url,
		    timeout_s: 3, interval_s: 0.2} | $filter)]}" >"$T/rb-$name.json"
	set +e
	"$REHYDRA" drill "$T/rb-$name.json" --state-dir "$STATE" --no-color \
		>"$T/$name.out" 2>"$T/$name.err"
	RC=$?
	set -e
}

inject header '.headers = {"X-A": "${steps.a.outputs.v}"}'
check "header: the value has CR/LF (the exec step made it)" \
	grep -q 'X-Injected' "$STATE"/drills/*/steps/a.stdout
expect_eq "header: drill fails" 3 "$RC"
check "header: the probe refuses the expanded header" \
	grep -q "header 'X-A' contains a control character.*after expansion" "$T/header.out"
check "header: nothing injected reached the server" bash -c "! grep -q X-Injected '$T/requests.log'"

inject method '.method = "${steps.a.outputs.v}"'
expect_eq "method: drill fails" 3 "$RC"
check "method: the probe refuses the expanded method" \
	grep -q "method after expansion is not one of" "$T/method.out"
check "method: nothing injected reached the server" bash -c "! grep -q X-Injected '$T/requests.log'"

inject url '.url = ($url + "?q=${steps.a.outputs.v}")'
expect_eq "url: drill fails" 3 "$RC"
check "url: the probe refuses the expanded url" \
	grep -q "url contains a control character after expansion" "$T/url.out"
check "url: nothing injected reached the server" bash -c "! grep -q X-Injected '$T/requests.log'"
check "timeline: no raw CR anywhere on the terminal" \
	bash -c "! cat '$T'/header.out '$T'/header.err '$T'/method.out '$T'/url.out '$T'/url.err \
		| grep -q $'\r'"

# a control character in a literal URL is a validation error
jq -n --arg url "$(printf 'http://127.0.0.1:%s/a\tb' "$PORT")" '{rehydra: 1, name: "lit",
	steps: [{id: "p", do: "http_probe", url: $url}]}' >"$T/rb-lit.json"
set +e
"$REHYDRA" validate "$T/rb-lit.json" >"$T/lit.out" 2>&1
RC=$?
set -e
expect_eq "literal url with a tab: invalid" 2 "$RC"
check "literal url with a tab: says why" grep -q "url contains a control character" "$T/lit.out"

# --- secrets on the terminal ----------------------------------------------------------
SECRET="s3cr3t-$RANDOM$RANDOM-token"
export RH_TEST_SECRET="$SECRET"
secret_drill() { # NAME STEP-JSON [EXIT]
	jq -n --argjson step "$2" '{rehydra: 1, name: "sec", env_allow: ["RH_TEST_SECRET"],
		steps: [$step]}' >"$T/rb-s-$1.json"
	set +e
	"$REHYDRA" drill "$T/rb-s-$1.json" --state-dir "$STATE" --no-color \
		>"$T/s-$1.out" 2>"$T/s-$1.err"
	RC=$?
	set -e
	expect_eq "secret in $1: the drill fails" "${3:-3}" "$RC"
	check "secret in $1: not on stdout or stderr" \
		bash -c "! grep -q -- '$SECRET' '$T/s-$1.out' '$T/s-$1.err'"
	check "secret in $1: [redacted] shown instead" grep -q "redacted" "$T/s-$1.out"
}
# a missing program is found by the pre-flight (exit 2), whose message is redacted too
secret_drill argv0 '{"id": "x", "do": "exec", "argv": ["/nonexistent/${env.RH_TEST_SECRET}"]}' 2
secret_drill cwd '{"id": "x", "do": "exec", "argv": ["true"],
	"cwd": "/nonexistent/${env.RH_TEST_SECRET}"}'
secret_drill urlpath "{\"id\": \"x\", \"do\": \"http_probe\", \"timeout_s\": 1,
	\"url\": \"http://127.0.0.1:1/\${env.RH_TEST_SECRET}\"}"
secret_drill expect_json "{\"id\": \"x\", \"do\": \"http_probe\", \"timeout_s\": 1,
	\"interval_s\": 0.2, \"url\": \"http://127.0.0.1:$PORT/health\",
	\"expect_json\": {\"ok\": \"\${env.RH_TEST_SECRET}\"}}"
check "no secret in any record" bash -c "! grep -rq -- '$SECRET' '$STATE/drills' '$STATE/journal'"

finish
