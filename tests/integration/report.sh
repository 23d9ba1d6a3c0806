#!/usr/bin/env bash
# RTO reports end to end: the five formats built from the fixture records
# in tests/data/report (through the report driver inside test_report, so
# the formats are tested whether or not the CLI is wired), and, when
# `rehydra audit report` exists, from a journal of real drills. The HTML is
# rendered by headless Chromium and the screenshot must show the charts; the
# JUnit output must be well-formed XML for xmllint.
. "$(dirname "$0")/lib.sh"

DRIVER="$RH_BUILD/tests/test_report"
D="$RH_SRC/tests/data/report"
FIXTURES="$D/tinylm.json:$D/scenario.json:$D/nasty.json"

# report FORMAT OUT [VAR=VALUE...]: the driver's report of the fixtures
report() {
	local fmt=$1 out=$2
	shift 2
	env "$@" RH_REPORT_FIXTURE="$fmt" RH_REPORT_FILES="$FIXTURES" "$DRIVER" >"$out" 2>"$T/err"
}

# shot HTML PNG: a 1200x900 screenshot; Chromium is killed (with its
# children: timeout signals the process group) if it hangs
shot() {
	local prof
	prof=$(mktemp -d "$T/chrome-XXXXXX")
	timeout -k 5 60 chromium --headless --no-sandbox --disable-gpu --disable-quic \
		--no-first-run --disable-background-networking --disable-component-update \
		--disable-sync --user-data-dir="$prof" --screenshot="$2" --window-size=1200,900 \
		"file://$1" >"$T/chrome.log" 2>&1
	[ -s "$2" ]
}

size() { stat -c %s "$1"; }

# Chromium's helper processes may outlive the browser by a moment
chrome_gone() {
	local i
	for i in $(seq 50); do
		no_process_matching "$T/chrome-" && return 0
		sleep 0.2
	done
	pgrep -af -- "$T/chrome-" || true
	return 1
}

check "the report driver exists" test -x "$DRIVER"

# ---- every format from the fixtures ----
for f in md html json csv junit; do
	check "$f report" report "$f" "$T/r.$f"
	check "$f report is not empty" test -s "$T/r.$f"
done

check "junit is well-formed xml" xmllint --noout "$T/r.junit"
junit_check "junit: valid against the JUnit schema (junit-10.xsd)" "$T/r.junit"
expect_eq "junit: one testcase per drill" 26 \
	"$(xmllint --xpath 'count(//testcase)' "$T/r.junit")"
expect_eq "junit: one testsuite per group" 4 \
	"$(xmllint --xpath 'count(//testsuite)' "$T/r.junit")"
expect_eq "junit: missed and failed drills are failures" 8 \
	"$(xmllint --xpath 'count(//testcase/failure)' "$T/r.junit")"
expect_eq "junit: the interrupted drill is an error" 1 \
	"$(xmllint --xpath 'count(//testcase/error)' "$T/r.junit")"
expect_eq "junit: the nasty runbook name survives escaping" \
	"<script>alert(\"x&y\")</script> 'q' ünïcødé ✓ 雲" \
	"$(xmllint --xpath 'string(//testsuite[1]/properties/property[@name="runbook"]/@value)' \
		"$T/r.junit")"
check "junit: the failing step and its error are in the failure" \
	grep -q "step &#39;sync&#39; failed: sha256 mismatch" "$T/r.junit"

check "json parses" jq -e . "$T/r.json" >/dev/null
expect_eq "json: 4 groups" 4 "$(jq '.groups | length' "$T/r.json")"
expect_eq "json: tinylm p95" 65 "$(jq '.groups[] | select(.runbook == "tinylm-local") |
	.rto.p95_s' "$T/r.json")"
expect_eq "json: scenario trend" improving "$(jq -r '.groups[] |
	select(.scenario == "h20-unavailable-cn") | .trend' "$T/r.json")"

expect_eq "csv: header and one row per group" 5 "$(grep -c $'\r$' "$T/r.csv")"
check "csv: header" grep -q \
	'^runbook,target,scenario,drills,met,missed,failed,interrupted,aborted,abandoned,teardown_incomplete,pass_rate,' "$T/r.csv"

check "md: summary row" grep -qF '| tinylm-local | local:local | - | 12 | 9 | 1 | 1 | 1 | 0 | 0 | 0 | 75.0% |' \
	"$T/r.md"

# filters reach the report
check "filtered report" report json "$T/f.json" RH_REPORT_TARGET=aws RH_REPORT_VERDICT=met
expect_eq "filter: aws drills that met" 7 "$(jq .drills "$T/f.json")"
check "bad filter time is refused" bash -c "! RH_REPORT_FIXTURE=md RH_REPORT_SINCE=yesterday \
	RH_REPORT_FILES='$FIXTURES' '$DRIVER' >/dev/null 2>'$T/err2'"
check "bad filter time: says how to write one" grep -q "RFC 3339" "$T/err2"

# ---- the HTML: self-contained, and Chromium draws the charts ----
check "html: no scripts" bash -c "! grep -qi '<script' '$T/r.html'"
check "html: no external assets" \
	bash -c "! grep -Eqi '(src|href)=\"(https?:|//|file:)|url\\(|<link' '$T/r.html'"
expect_eq "html: one chart per group" 4 "$(grep -c '<svg ' "$T/r.html")"

# The report's screenshot must be far richer than an empty page's; and one
# chart alone (tinylm's: 10 points, 2 crosses, the target line) on a page
# must be far richer than the same page with the <svg> box left empty,
# which proves Chromium drew the SVG and not only the tables.
printf '<!DOCTYPE html><html><body></body></html>\n' >"$T/blank.html"
chart_page() { # chart_page HTML KEEP(1|0) > page: the last group's chart alone
	grep '^<style>' "$1" | sed 's/^/<!DOCTYPE html><html><head><meta charset="utf-8">/'
	echo '</head><body><main><section>'
	awk -v keep="$2" '/^<svg /{n++; buf=""; inside=1} inside{buf=buf $0 "\n"}
		/^<\/svg>$/{inside=0; last=buf; open=first_line(buf)}
		function first_line(b) { return substr(b, 1, index(b, "\n")) }
		END{ if (keep) printf "%s", last; else printf "%s</svg>\n", open }' "$1"
	echo '</section></main></body></html>'
}
chart_page "$T/r.html" 1 >"$T/chart.html"
chart_page "$T/r.html" 0 >"$T/nochart.html"
check "the chart page has the tinylm chart" grep -q '>target 60 s</text>' "$T/chart.html"
check "the chartless page has an empty chart box" bash -c "grep -q '^<svg ' '$T/nochart.html' &&
	! grep -q '<circle' '$T/nochart.html'"
check "chromium renders the report" shot "$T/r.html" "$T/r.png"
check "chromium renders the chart alone" shot "$T/chart.html" "$T/chart.png"
check "chromium renders the empty chart box" shot "$T/nochart.html" "$T/nochart.png"
check "chromium renders a blank page" shot "$T/blank.html" "$T/blank.png"
# PNG signature, then the IHDR chunk: width and height, big-endian
expect_eq "the screenshot is a 1200x900 png" "89504e470d0a1a0a 000004b0 00000384" \
	"$(od -An -tx1 -N8 "$T/r.png" | tr -d ' \n') $(od -An -tx1 -j16 -N4 "$T/r.png" |
		tr -d ' \n') $(od -An -tx1 -j20 -N4 "$T/r.png" | tr -d ' \n')"
rs=$(size "$T/r.png")
cs=$(size "$T/chart.png")
ns=$(size "$T/nochart.png")
bs=$(size "$T/blank.png")
echo "# screenshot sizes: report $rs, chart $cs, empty chart box $ns, blank page $bs"
check "the screenshot is not blank (report $rs B vs blank $bs B)" test "$rs" -gt $((bs * 5))
check "the chart is drawn ($cs B vs $ns B for the empty box)" test "$cs" -gt $((ns * 3))
check "chromium left nothing running" chrome_gone

# ---- the CLI, when `rehydra audit report` is wired ----
if "$REHYDRA" audit report --help >/dev/null 2>&1; then
	S="$T/state"
	export RH_TEST_SECRET=s3cr3t-value
	for i in 1 2 3; do
		"$REHYDRA" drill "$RH_SRC/tests/data/cli/parallel.json" --state-dir "$S" \
			>/dev/null 2>"$T/drill.err" || cat "$T/drill.err"
	done
	for f in md html json csv junit; do
		check "cli: audit report --format $f" "$REHYDRA" audit report --state-dir "$S" \
			--format "$f" --out "$T/cli.$f"
	done
	expect_eq "cli: three drills in one group" "3 1" \
		"$(jq -r '"\(.drills) \(.groups | length)"' "$T/cli.json")"
	check "cli: junit is well-formed" xmllint --noout "$T/cli.junit"
	expect_eq "cli: junit testcases" 3 "$(xmllint --xpath 'count(//testcase)' "$T/cli.junit")"
	check "cli: html renders" shot "$T/cli.html" "$T/cli.png"
	check "cli: chromium left nothing running" chrome_gone
	check "cli: html screenshot is not blank" test "$(size "$T/cli.png")" -gt $((bs * 5))
	check "cli: no secret in any report" bash -c "! grep -q s3cr3t-value '$T'/cli.*"
	check "cli: unknown format is a usage error" bash -c "'$REHYDRA' audit report \
		--state-dir '$S' --format pdf >/dev/null 2>'$T/err3'; [ \$? -eq 2 ]"
	check "cli: unknown format names the valid ones" grep -q "md, html, json, csv or junit" \
		"$T/err3"
else
	echo "# rehydra audit report is not available: the CLI part is skipped"
fi

finish
