#!/usr/bin/env bash
# hostile.sh - runbooks written to break the parser must be refused, at the
# right place, before anything is created.
#
# Each tests/data/hostile/NAME.json has a NAME.expect holding one line
# "LINE:COL:fragment": where the first diagnostic must point and a piece of
# its message. A few cases are too big to commit (a 10 MB string, 100000
# nested brackets, a file over the size limit); they are generated into a
# temporary directory here and checked the same way. For every case both
# `rehydra validate FILE` and `rehydra drill FILE --state-dir DIR` must exit
# 2, print "FILE:LINE:COL: error: ..." as the first line of stderr, and the
# drill must not create its state directory.
set -euo pipefail

: "${REHYDRA:?set REHYDRA to the rehydra binary}"
here=$(cd "$(dirname "$0")" && pwd)
data=${RH_TESTDATA:-$here/../data}/hostile
T=$(mktemp -d "${TMPDIR:-/tmp}/rh-hostile-XXXXXX")
trap 'rm -rf "$T"' EXIT

passed=0
failed=0

# run_one NAME FILE LINE COL FRAGMENT
run_one() {
	local name=$1 file=$2 line=$3 col=$4 frag=$5
	local want="$file:$line:$col: error: "
	local why="" rc first mode
	local state="$T/state-$name"

	for mode in validate drill; do
		set +e
		if [ "$mode" = validate ]; then
			"$REHYDRA" validate "$file" >"$T/out" 2>"$T/err"
		else
			"$REHYDRA" drill "$file" --state-dir "$state" >"$T/out" 2>"$T/err"
		fi
		rc=$?
		set -e
		first=$(head -n 1 "$T/err")
		if [ "$rc" -ne 2 ]; then
			why="$mode exited $rc, want 2"
		elif [ "${first:0:${#want}}" != "$want" ]; then
			why="$mode: first line '${first:0:300}', want it to start with '$want'"
		elif [[ "$first" != *"$frag"* ]]; then
			why="$mode: '${first:0:300}' lacks '$frag'"
		elif [ -e "$state" ]; then
			why="$mode created $state"
		fi
		[ -n "$why" ] && break
	done
	if [ -z "$why" ]; then
		passed=$((passed + 1))
		echo "ok   - $name ($line:$col)"
	else
		failed=$((failed + 1))
		echo "FAIL - $name: $why"
	fi
}

# Cases kept in the tree.
n=0
for json in "$data"/*.json; do
	name=$(basename "$json" .json)
	exp="$data/$name.expect"
	if [ ! -f "$exp" ]; then
		failed=$((failed + 1))
		echo "FAIL - $name: no $name.expect"
		continue
	fi
	IFS= read -r spec <"$exp"
	line=${spec%%:*}
	rest=${spec#*:}
	col=${rest%%:*}
	frag=${rest#*:}
	run_one "$name" "$json" "$line" "$col" "$frag"
	n=$((n + 1))
done
if [ "$n" -lt 34 ]; then
	failed=$((failed + 1))
	echo "FAIL - only $n hostile runbooks in $data, want at least 34"
fi

# Generated cases.
g="$T/generated"
mkdir -p "$g"

# A 10 MB string: refused at its opening quote (line 2, column 18).
{
	printf '{\n  "description": "'
	head -c 10485760 /dev/zero | tr '\0' x
	printf '",\n  "rehydra": 1, "name": "big",\n'
	printf '  "steps": [{ "id": "a", "do": "wait", "seconds": 1 }]\n}\n'
} >"$g/huge_string.json"
run_one huge_string "$g/huge_string.json" 2 18 "at most 65536 bytes"

# 100000 nested arrays: jansson stops at its parser depth limit (2048), so
# the error sits on the 2049th bracket.
head -c 100000 /dev/zero | tr '\0' '[' >"$g/deep_nesting.json"
run_one deep_nesting "$g/deep_nesting.json" 1 2049 "too deeply nested"

# Deep but within jansson's limit: our own limit (32 levels) applies, at the
# first object past it. The body is at depth 4 (document, steps, step, body),
# so the 30th '{' of the body is level 33.
{
	printf '{\n  "rehydra": 1, "name": "deep",\n'
	printf '  "steps": [{ "id": "a", "do": "http_probe", "url": "http://x/",\n'
	printf '    "body": '
	for _ in $(seq 29); do printf '{"a": '; done
	printf '{"a": [1]}'
	for _ in $(seq 29); do printf '}'; done
	printf ' }]\n}\n'
} >"$g/deep_body.json"
# '    "body": ' is 12 columns, each '{"a": ' 6 more.
run_one deep_body "$g/deep_body.json" 4 $((12 + 29 * 6 + 1)) "too deeply nested"

# Larger than the file size limit (sparse, so it costs nothing).
truncate -s 17000000 "$g/too_large.json"
run_one too_large "$g/too_large.json" 1 1 "at most 16777216 bytes"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
