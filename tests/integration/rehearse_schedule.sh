#!/usr/bin/env bash
# Rehearsals on a schedule, and the evidence that the schedule is kept:
# `rehydra schedule` writes systemd units that systemd's own verifier
# accepts (and a broken copy it rejects) and crontab lines whose fields are
# valid; the calendars fire at least as often as cadence_days (checked with
# systemd-analyze calendar); `rehearse --due DIR` rehearses only what is
# due; `audit cadence` says never / ok / due / overdue (with --at in the
# future) and exits 1 on overdue or never; the reports carry a cadence
# section (JUnit: an overdue scenario is a failed testcase, checked with
# xmllint) and the Prometheus file the two per-scenario series. The
# rehearsals are real tinylm drills on this machine (the local provider,
# with a stated jurisdiction). Last, a model version whose manifest allows
# export only to the US is refused here, before anything is created.
. "$(dirname "$0")/lib.sh"

export HOME=$T/home XDG_STATE_HOME=$T/xdg
mkdir -p "$HOME"
REG="$T/registry"
make_registry "$REG" 1
STATE="$T/state"
SC="$T/scenarios"
mkdir -p "$SC"

# The runbook: tinylm on this machine, in FI/EU.
jq '.target.jurisdiction = {"country": "FI", "bloc": "EU"}' "$RH_SRC/runbooks/tinylm-local.json" \
	>"$T/tinylm-local.json"
mk() { # NAME CADENCE_DAYS [extra jq]
	jq -n --arg n "$1" --argjson c "$2" '{rehydra_scenario: 1, name: $n,
	  runbook: "../tinylm-local.json",
	  entity: {name: "Example Oy", hq_country: "FI"},
	  constraints: {blocs: ["EU"], providers: ["local"]},
	  policy: ["us-ear-advanced-computing", "data-residency", "model-export"],
	  cadence_days: $c, rto_target_s: 60}' | jq "${3:-.}" >"$SC/$1.json"
}
mk weekly-local 7
mk monthly-local 30

# 1. systemd units.
"$REHYDRA" schedule "$SC"/*.json --systemd "$T/units" --state-dir "$STATE" >"$T/units.out" \
	2>"$T/units.err"
expect_eq "schedule: four units" 4 "$(ls "$T/units" | wc -l)"
check "schedule: systemd-analyze verify accepts them" \
	systemd-analyze verify "$T/units"/*.service "$T/units"/*.timer
check "schedule: Persistent and RandomizedDelaySec" \
	bash -c "grep -qx 'Persistent=true' '$T/units/rehydra-rehearse-weekly-local.timer' &&
	         grep -q '^RandomizedDelaySec=' '$T/units/rehydra-rehearse-weekly-local.timer'"
check "schedule: the service runs rehearse on the scenario" \
	grep -qF "\"$REHYDRA\" rehearse --quiet --state-dir \"$STATE\" \"$SC/weekly-local.json\"" \
	"$T/units/rehydra-rehearse-weekly-local.service"
sed 's/^OnCalendar=.*/OnCalendar=*-*-01\/7 27:00:00/' "$T/units/rehydra-rehearse-weekly-local.timer" \
	>"$T/broken.timer"
cp "$T/units/rehydra-rehearse-weekly-local.service" "$T/broken.service"
check "schedule: the verifier does reject a broken timer" \
	bash -c "! systemd-analyze verify '$T/broken.service' '$T/broken.timer' 2>/dev/null"
# The calendar never leaves a gap longer than the cadence: the next 40
# elapses of each timer (across a year's end: systemd 252 skips Jan 1 with
# a "01/7" repetition, which this check caught).
gaps_ok() { # TIMER DAYS
	local cal n prev=0 t
	cal=$(sed -n 's/^OnCalendar=//p' "$1")
	while read -r t; do
		[ "$prev" = 0 ] || [ $((t - prev)) -le $(($2 * 86400)) ] || return 1
		prev=$t
	done < <(systemd-analyze calendar --iterations=40 "$cal" | sed -n 's/.*Next elapse: \(.*\)$/\1/p;
		s/^ *Iter\. #[0-9]*: \(.*\)$/\1/p' | while read -r d; do date -d "$d" +%s; done)
	[ "$prev" != 0 ]
}
check "schedule: weekly calendar gaps <= 7 days" gaps_ok "$T/units/rehydra-rehearse-weekly-local.timer" 7
check "schedule: monthly calendar gaps <= 30 days" \
	gaps_ok "$T/units/rehydra-rehearse-monthly-local.timer" 30

# 2. crontab lines: five valid fields, then the command.
"$REHYDRA" schedule "$SC"/*.json --cron --state-dir "$STATE" >"$T/cron" 2>/dev/null
cron_ok() {
	local line n=0 f i v
	local -a lo=(0 0 1 1 0) hi=(59 23 31 12 7)
	while IFS= read -r line; do
		case $line in '#'* | '') continue ;; esac
		read -r -a f <<<"$line"
		for i in 0 1 2 3 4; do
			[ "${f[$i]}" = "*" ] && continue
			[[ ${f[$i]} =~ ^[0-9]+(,[0-9]+)*$ ]] || return 1
			for v in ${f[$i]//,/ }; do
				[ "$v" -ge "${lo[$i]}" ] && [ "$v" -le "${hi[$i]}" ] || return 1
			done
		done
		[[ ${f[5]} == "'$REHYDRA'" && ${f[6]} == rehearse ]] || return 1
		n=$((n + 1))
	done <"$T/cron"
	[ "$n" -eq 2 ]
}
check "cron: two lines with valid fields and the command" cron_ok
check "cron: weekly steps the day of month by 7" grep -qE '^[0-9]+ 3 1,8,15,22,29 \* \* ' "$T/cron"
check "cron: lines run under sh: the words parse back" \
	bash -c "grep -v '^#' '$T/cron' | grep weekly-local | cut -d' ' -f6- |
	         xargs -n1 printf '%s\n' | grep -qxF '$SC/weekly-local.json'"
set +e
"$REHYDRA" schedule "$SC/weekly-local.json" >/dev/null 2>&1
RC=$?
set -e
expect_eq "schedule: neither --systemd nor --cron is a usage error" 2 "$RC"

# 3. Nothing rehearsed yet: never, exit 1.
set +e
"$REHYDRA" audit cadence "$SC" --state-dir "$STATE" --json >"$T/c0.json" 2>"$T/c0.err"
RC=$?
set -e
expect_eq "cadence: exit 1 before any rehearsal" 1 "$RC"
expect_eq "cadence: both never" "never never" "$(jq -r '[.[].status] | join(" ")' "$T/c0.json")"

# 4. --due runs both (never rehearsed), then nothing.
set +e
"$REHYDRA" rehearse --due "$SC" --state-dir "$STATE" --var registry="$REG" -q >"$T/due1" 2>&1
RC=$?
set -e
expect_eq "due: exit code" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/due1"
expect_eq "due: two rehearsals journaled" 2 \
	"$(jq -s '[.[] | select(.record.rehearsal.chosen.provider? == "local")] | length' \
		"$STATE/journal/journal.jsonl")"
"$REHYDRA" rehearse --due "$SC" --state-dir "$STATE" --var registry="$REG" >"$T/due2" 2>&1
check "due: then nothing is due" grep -q "nothing is due" "$T/due2"
expect_eq "due: still two" 2 "$(jq -s '[.[] | select(.record.rehearsal)] | length' \
	"$STATE/journal/journal.jsonl")"

# 5. ok now; due and overdue later (--at); exit codes.
"$REHYDRA" audit cadence "$SC" --state-dir "$STATE" --json >"$T/c1.json"
expect_eq "cadence: both ok" "ok ok" "$(jq -r '[.[].status] | join(" ")' "$T/c1.json")"
check "cadence: last success and next due are set" \
	jq -e 'all(.[]; (.last_success | type) == "string" and (.next_due | type) == "string"
	       and .last_verdict == "met" and .rehearsals == 1)' "$T/c1.json"
at8=$(date -u -d '+7 days 12 hours' +%Y-%m-%dT%H:%M:%SZ)
at9=$(date -u -d '+9 days' +%Y-%m-%dT%H:%M:%SZ)
set +e
"$REHYDRA" audit cadence "$SC" --state-dir "$STATE" --json --at "$at8" >"$T/c2.json"
RC8=$?
"$REHYDRA" audit cadence "$SC" --state-dir "$STATE" --at "$at9" >"$T/c3.txt"
RC9=$?
set -e
expect_eq "cadence: 7.5 days on, the weekly one is due (grace 1 day), exit 0" \
	"0 due ok" "$RC8 $(jq -r '[(.[] | select(.scenario == "weekly-local") | .status),
	(.[] | select(.scenario == "monthly-local") | .status)] | join(" ")' "$T/c2.json")"
expect_eq "cadence: 9 days on, overdue, exit 1" 1 "$RC9"
check "cadence: the table says overdue" grep -qE '^weekly-local .* overdue$' "$T/c3.txt"

# 6. Reports with the cadence section, and the Prometheus series.
mk never-local 30 '.name = "never-local"'
"$REHYDRA" audit report --state-dir "$STATE" --scenarios "$SC" --format junit --out "$T/r.junit" \
	--prom-file "$T/m.prom"
check "report: junit is well-formed" xmllint --noout "$T/r.junit"
junit_check "junit: valid against the JUnit schema (junit-10.xsd)" "$T/r.junit"
expect_eq "report: the cadence testsuite has a testcase per scenario" 3 \
	"$(xmllint --xpath 'count(//testsuite[@name="rehearsal cadence"]/testcase)' "$T/r.junit")"
expect_eq "report: the never rehearsed one is a failed testcase" never-local \
	"$(xmllint --xpath 'string(//testsuite[@name="rehearsal cadence"]/testcase[failure]/@name)' \
		"$T/r.junit")"
expect_eq "report: the totals count it" 1 \
	"$(xmllint --xpath 'string(/testsuites/@failures)' "$T/r.junit")"
for fmt in md html json; do
	"$REHYDRA" audit report --state-dir "$STATE" --scenarios "$SC" --format "$fmt" \
		--out "$T/r.$fmt"
done
check "report md: cadence table" grep -q '^| weekly-local | 7 | 1 | ' "$T/r.md"
check "report html: cadence section" grep -q '<section id="cadence">' "$T/r.html"
expect_eq "report json: cadence statuses" "never ok ok" \
	"$(jq -r '[.cadence[].status] | sort | join(" ")' "$T/r.json")"
check "prom: last success per rehearsed scenario" \
	grep -qE '^rehydra_scenario_last_success_timestamp_seconds\{scenario="weekly-local"\} [0-9.]+$' \
	"$T/m.prom"
check "prom: no last-success sample for the never rehearsed one" \
	bash -c "! grep -q 'last_success_timestamp_seconds{scenario=\"never-local\"}' '$T/m.prom'"
check "prom: overdue gauges" \
	bash -c "grep -qx 'rehydra_scenario_overdue{scenario=\"never-local\"} 1' '$T/m.prom' &&
	         grep -qx 'rehydra_scenario_overdue{scenario=\"weekly-local\"} 0' '$T/m.prom'"
prom_check "prom: promtool check metrics accepts the file" "$T/m.prom"
# 7. The model's export fields decide: a version that may only go to the US
# is refused on this FI/EU machine — by rehearse --plan, by rehearse, and by
# drill's pre-flight for a runbook that opts into model-export — and nothing
# is created.
export GIT_CONFIG_GLOBAL=$T/home/.gitconfig GIT_CONFIG_NOSYSTEM=1
: >"$GIT_CONFIG_GLOBAL"
git config --global user.name "Rehearsal Tester"
git config --global user.email "rehearse@rehydra.invalid"
mkdir -p "$T/us-only"
echo '{"export": {"eccn": "EAR99", "jurisdictions": ["US"]}}' >"$T/us.meta"
echo "weights" >"$T/us-only/weights.bin"
"$REHYDRA" registry publish tinylm@9.0.0 "$T/us-only" --registry "$REG" --meta "$T/us.meta" 	>/dev/null
jq '.model.version = "9.0.0" | .policy = ["model-export"]' "$T/tinylm-local.json" >"$T/us-rb.json"
mk us-only 7 '.runbook = "../us-rb.json"'
set +e
"$REHYDRA" rehearse "$SC/us-only.json" --plan --json --var registry="$REG" >"$T/us.plan" 2>/dev/null
RC_PLAN=$?
"$REHYDRA" rehearse "$SC/us-only.json" --state-dir "$T/state-us" --var registry="$REG" -q \
	>/dev/null 2>"$T/us.rehearse"
RC_REH=$?
"$REHYDRA" drill "$T/us-rb.json" --state-dir "$T/state-us" --var registry="$REG" -q \
	>/dev/null 2>"$T/us.drill"
RC_DRILL=$?
set -e
expect_eq "export: --plan finds no lawful target" 3 "$RC_PLAN"
expect_eq "export: the local target is denied by model-export" \
	"model-export: the model's manifest allows export to US (eccn EAR99), not to FI (EU)" \
	"$(jq -r '.candidates[] | select(.provider == "local") | .reasons[] |
	         select(.effect == "deny") | "\(.rule): \(.message)"' "$T/us.plan")"
expect_eq "export: rehearse runs nothing (exit 3)" 3 "$RC_REH"
expect_eq "export: drill pre-flight refuses (exit 2)" 2 "$RC_DRILL"
check "export: drill names the rule" grep -q "denied by policy rule 'model-export'" "$T/us.drill"
check "export: nothing was created" test ! -e "$T/state-us/drills"
# 8. Two files, one scenario name: the cadence would mix their histories.
mk dup 7 '.name = "weekly-local"'
set +e
"$REHYDRA" audit cadence "$SC" --state-dir "$STATE" >/dev/null 2>"$T/dup.err"
RC=$?
set -e
expect_eq "duplicate names: bad input" 2 "$RC"
check "duplicate names: both files named" \
	grep -qE "dup.json and .*weekly-local.json are both scenario 'weekly-local'" "$T/dup.err"
check "no tinylm left running" no_process_matching "$T/state/drills"
finish
