#!/usr/bin/env bash
# The audit journal through the real CLI: every drill (met, missed, failed,
# interrupted) is journaled; verify's exit codes and messages; a torn tail
# refuses appends until `audit repair`; kill -9 during drills in a loop
# leaves a journal that verifies or has exactly one torn tail that repair
# sets aside without losing earlier entries; list filters and show; the
# Prometheus textfile (names, labels, atomic replace); `audit push` to a
# bare git repository (only new commits travel, a diverged remote is
# refused).
. "$(dirname "$0")/lib.sh"

S="$T/state"
J="$S/journal/journal.jsonl"
rc_of() { set +e; "$@" >"$T/out" 2>"$T/err"; echo $?; set -e; }
# entries in the journal (printed even when it does not verify)
entries() { "$REHYDRA" audit verify --state-dir "$S" --json | jq -r .entries || true; }

cat >"$T/fast.json" <<'EOF'
{ "rehydra": 1, "name": "fast", "rto_target_s": 30,
  "target": { "provider": "local", "region": "local" },
  "steps": [ { "id": "up", "do": "exec", "argv": ["true"], "restores_service": true } ] }
EOF
cat >"$T/slow.json" <<'EOF'
{ "rehydra": 1, "name": "slow", "rto_target_s": 0.01,
  "steps": [ { "id": "nap", "do": "exec", "argv": ["sleep", "0.05"] },
             { "id": "up", "do": "exec", "argv": ["true"], "after": ["nap"],
               "restores_service": true } ] }
EOF
cat >"$T/broken.json" <<'EOF'
{ "rehydra": 1, "name": "broken", "rto_target_s": 30,
  "steps": [ { "id": "up", "do": "exec", "argv": ["false"], "restores_service": true } ] }
EOF
cat >"$T/long.json" <<'EOF'
{ "rehydra": 1, "name": "long", "rto_target_s": 30,
  "steps": [ { "id": "wait", "do": "exec", "argv": ["sleep", "20"], "restores_service": true },
             { "id": "cleanup", "do": "exec", "argv": ["true"], "when": "always" } ] }
EOF

# --- no journal yet -----------------------------------------------------------
expect_eq "verify without a journal: exit 2" 2 "$(rc_of "$REHYDRA" audit verify --state-dir "$S")"
check "verify without a journal: says so" grep -q "no journal at" "$T/err"
check "no journal was created by looking" test ! -e "$S"
expect_eq "audit without subcommand: exit 2" 2 "$(rc_of "$REHYDRA" audit)"
expect_eq "audit unknown subcommand: exit 2" 2 "$(rc_of "$REHYDRA" audit frob)"
expect_eq "audit list bad verdict: exit 2" 2 \
	"$(rc_of "$REHYDRA" audit list --verdict great --state-dir "$S")"
expect_eq "audit list bad date: exit 2" 2 \
	"$(rc_of "$REHYDRA" audit list --since yesterday --state-dir "$S")"

# --- every verdict is journaled ------------------------------------------------
expect_eq "met drill: exit 0" 0 \
	"$(rc_of "$REHYDRA" drill "$T/fast.json" --state-dir "$S" --scenario "H20 unavailable in CN")"
check "drill prints its journal entry" grep -q "journal  entry 1 in $J" "$T/out"
rec1=$(ls -d "$S"/drills/*/record.json | head -1)
expect_eq "the record names the scenario" "H20 unavailable in CN" "$(jq -r .scenario "$rec1")"
expect_eq "missed drill: exit 1" 1 "$(rc_of "$REHYDRA" drill "$T/slow.json" --state-dir "$S" -q)"
expect_eq "failed drill: exit 3" 3 "$(rc_of "$REHYDRA" drill "$T/broken.json" --state-dir "$S" -q)"
"$REHYDRA" drill "$T/long.json" --state-dir "$S" -q >"$T/long.out" 2>&1 &
pid=$!
track "$pid"
for _ in $(seq 1 100); do
	[ -n "$(ls "$S"/drills/*long*/steps/wait.stdout 2>/dev/null)" ] && break
	sleep 0.05
done
kill -INT "$pid"
set +e
wait "$pid"
rc=$?
set -e
expect_eq "interrupted drill: exit 130" 130 "$rc"
expect_eq "bad --scenario: exit 2" 2 \
	"$(rc_of "$REHYDRA" drill "$T/fast.json" --state-dir "$S" --scenario "")"
expect_eq "journal: genesis + 4 drills" 5 "$(entries)"
expect_eq "verdicts in journal order" "met missed failed interrupted" \
	"$(tail -n 4 "$J" | jq -r .record.verdict | tr '\n' ' ' | sed 's/ $//')"
expect_eq "journal file is 0600" 600 "$(stat -c %a "$J")"
expect_eq "journal directory is 0700" 700 "$(stat -c %a "$S/journal")"

# --- verify ------------------------------------------------------------------------
expect_eq "verify intact: exit 0" 0 "$(rc_of "$REHYDRA" audit verify --state-dir "$S")"
check "verify intact: says so" grep -q "5 entries, chain intact, last hash [0-9a-f]\{64\}" "$T/out"
cp "$J" "$T/journal.orig"
sed -i '3s/"verdict":"missed"/"verdict":"met"/' "$J"
expect_eq "edited entry: exit 1" 1 "$(rc_of "$REHYDRA" audit verify --state-dir "$S")"
check "edited entry: names line and seq" \
	grep -q "line 3 (seq 2): content does not match its hash: the entry was edited" "$T/err"
cp "$T/journal.orig" "$J"
sed -i '2d' "$J"
expect_eq "deleted entry: exit 1" 1 "$(rc_of "$REHYDRA" audit verify --state-dir "$S")"
check "deleted entry: names line 2" grep -q "line 2 (seq 2).*deleted" "$T/err"
cp "$T/journal.orig" "$J"
{ sed -n 1,2p "$T/journal.orig"; sed -n 4p "$T/journal.orig"; sed -n 3p "$T/journal.orig"
  sed -n 5p "$T/journal.orig"; } >"$J"
expect_eq "swapped entries: exit 1" 1 "$(rc_of "$REHYDRA" audit verify --state-dir "$S")"
check "swapped entries: names line 3" grep -q "line 3 (seq 3)" "$T/err"
cp "$T/journal.orig" "$J"
echo '{"note":"added by hand"}' >>"$J"
expect_eq "foreign line: exit 1" 1 "$(rc_of "$REHYDRA" audit verify --state-dir "$S" --json)"
expect_eq "foreign line: kind and line" "bad_line 6" "$(jq -r '"\(.problem.kind) \(.problem.line)"' "$T/out")"
expect_eq "repair refuses a foreign line: exit 1" 1 "$(rc_of "$REHYDRA" audit repair --state-dir "$S")"
check "repair refusal explains" grep -q "repair only sets aside an incomplete last entry" "$T/err"
cp "$T/journal.orig" "$J"

# --- a torn tail: appends refuse, repair sets it aside -------------------------------------
# an append cut off after 100 bytes
{ cat "$T/journal.orig"; sed -n 2p "$T/journal.orig" | head -c 100; } >"$J"
expect_eq "torn tail: verify exit 1" 1 "$(rc_of "$REHYDRA" audit verify --state-dir "$S")"
check "torn tail: reported as incomplete" grep -q "line 6: the last entry is incomplete" "$T/err"
expect_eq "drill after a torn tail: exit 3" 3 \
	"$(rc_of "$REHYDRA" drill "$T/fast.json" --state-dir "$S" -q)"
check "drill after a torn tail: says to repair" grep -q "rehydra audit repair" "$T/err"
check "drill after a torn tail: the record is still written" \
	test "$(ls "$S"/drills/*/record.json | wc -l)" -eq 5
expect_eq "repair: exit 0" 0 "$(rc_of "$REHYDRA" audit repair --state-dir "$S")"
check "repair: names the set-aside file" grep -q "journal.jsonl.torn-" "$T/out"
check "repair: the torn bytes are kept" \
	test "$(cat "$S"/journal/journal.jsonl.torn-*)" = "$(sed -n 2p "$T/journal.orig" | head -c 100)"
expect_eq "after repair: intact, earlier entries kept" 5 "$(entries)"
check "after repair: byte for byte what it was" cmp -s "$J" "$T/journal.orig"
expect_eq "repair of an intact journal: exit 0" 0 "$(rc_of "$REHYDRA" audit repair --state-dir "$S")"
check "repair of an intact journal: nothing to do" grep -q "nothing to repair" "$T/out"
expect_eq "drill after repair: exit 0" 0 "$(rc_of "$REHYDRA" drill "$T/fast.json" --state-dir "$S" -q)"
expect_eq "drill after repair is journaled" 6 "$(entries)"

# --- kill -9 during drills, in a loop ------------------------------------------------
torn=0
lost=0
# 30 kills in the release build; 10 in the sanitizer build, where each of
# the loop's four commands starts several times slower
KILLS=30
[ "${RH_SANITIZED:-0}" = 1 ] && KILLS=10
for i in $(seq 1 "$KILLS"); do
	before=$(entries)
	"$REHYDRA" drill "$T/fast.json" --state-dir "$S" -q >/dev/null 2>&1 &
	pid=$!
	sleep "0.0$((RANDOM % 10))$((RANDOM % 10))"
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	set +e
	"$REHYDRA" audit verify --state-dir "$S" --json >"$T/v.json" 2>/dev/null
	vrc=$?
	set -e
	if [ "$vrc" -ne 0 ]; then
		if [ "$(jq -r .problem.kind "$T/v.json")" != torn_tail ]; then
			echo "kill -9 loop, iteration $i: $(jq -r .problem.message "$T/v.json")"
			lost=$((lost + 1))
			break
		fi
		torn=$((torn + 1))
		"$REHYDRA" audit repair --state-dir "$S" >/dev/null || lost=$((lost + 1))
	fi
	after=$(entries)
	# the killed drill added one entry or none; earlier ones are all there
	if [ "$after" -lt "$before" ] || [ "$after" -gt $((before + 1)) ]; then
		lost=$((lost + 1))
	fi
done
echo "kill -9 loop: $torn torn tails repaired"
expect_eq "kill -9 loop: the journal always verified or had one torn tail, nothing lost" 0 "$lost"
expect_eq "kill -9 loop: intact at the end" 0 "$(rc_of "$REHYDRA" audit verify --state-dir "$S")"

# --- concurrent drills -----------------------------------------------------------------------
before=$(entries)
pids=()
for i in 1 2 3 4; do
	"$REHYDRA" drill "$T/fast.json" --state-dir "$S" -q >/dev/null 2>&1 &
	pids+=($!)
	track "$!"
done
crc=0
for p in "${pids[@]}"; do wait "$p" || crc=$?; done
expect_eq "4 concurrent drills: all exit 0" 0 "$crc"
expect_eq "4 concurrent drills: 4 more entries, chain intact" $((before + 4)) "$(entries)"

# --- list and show -----------------------------------------------------------------------
total=$(($(entries) - 1))
expect_eq "list: exit 0" 0 "$(rc_of "$REHYDRA" audit list --state-dir "$S")"
check "list: header" grep -q "^SEQ *T0 *RUNBOOK *TARGET *SCENARIO *VERDICT *RTO *RTO TARGET$" "$T/out"
expect_eq "list: one row per drill" "$total" "$(($(wc -l <"$T/out") - 1))"
check "list: the missed drill" grep -Eq "^2 +[0-9T:.Z-]+ +slow +- +- +missed" "$T/out"
expect_eq "list --json: one line per drill" "$total" \
	"$("$REHYDRA" audit list --state-dir "$S" --json | wc -l)"
expect_eq "list --runbook slow" "2" \
	"$("$REHYDRA" audit list --state-dir "$S" --json --runbook slow | jq -r .seq)"
expect_eq "list --verdict failed" "broken" \
	"$("$REHYDRA" audit list --state-dir "$S" --json --verdict failed | jq -r .runbook)"
expect_eq "list --verdict interrupted" "long" \
	"$("$REHYDRA" audit list --state-dir "$S" --json --verdict interrupted | jq -r .runbook)"
expect_eq "list --scenario" "1" \
	"$("$REHYDRA" audit list --state-dir "$S" --json --scenario "H20 unavailable in CN" | jq -r .seq)"
expect_eq "list --target local:local: only fast" "fast" \
	"$("$REHYDRA" audit list --state-dir "$S" --json --target local:local | jq -r .runbook | sort -u)"
expect_eq "list --since tomorrow: nothing" 0 \
	"$("$REHYDRA" audit list --state-dir "$S" --json --since "$(date -u -d tomorrow +%F)" | wc -l)"
expect_eq "list --until 2000-01-01: nothing" 0 \
	"$("$REHYDRA" audit list --state-dir "$S" --json --until 2000-01-01 | wc -l)"
expect_eq "list --since 2000-01-01T00:00:00Z: everything" "$total" \
	"$("$REHYDRA" audit list --state-dir "$S" --json --since 2000-01-01T00:00:00Z | wc -l)"
id=$(jq -r 'select(.record.verdict == "missed") | .record.drill_id' "$J")
expect_eq "show by seq: exit 0" 0 "$(rc_of "$REHYDRA" audit show 2 --state-dir "$S")"
check "show by seq: the drill" grep -q "drill     $id" "$T/out"
check "show: the step table" grep -q "nap .*exec .*ok" "$T/out"
expect_eq "show by drill id --json" 2 "$("$REHYDRA" audit show "$id" --state-dir "$S" --json | jq .seq)"
expect_eq "show by unique prefix" 2 \
	"$("$REHYDRA" audit show "${id%-*}" --state-dir "$S" --json | jq .seq)"
expect_eq "show an ambiguous prefix: exit 2" 2 \
	"$(rc_of "$REHYDRA" audit show "${id:0:9}" --state-dir "$S")"
check "show an ambiguous prefix: lists candidates" grep -q "give more of the id" "$T/err"
expect_eq "show an unknown id: exit 2" 2 "$(rc_of "$REHYDRA" audit show nosuch --state-dir "$S")"
expect_eq "verify --journal on a copy" 0 "$(rc_of "$REHYDRA" audit verify --journal "$J")"

# --- Prometheus textfile -------------------------------------------------------------------------
P="$T/prom/rehydra.prom"
mkdir -p "$T/prom"
"$REHYDRA" drill "$T/fast.json" --state-dir "$S" -q --prom-file "$P" --scenario 'quote "me"'
for m in rehydra_drill_rto_seconds rehydra_drill_rto_target_seconds rehydra_drill_success \
	rehydra_drill_last_timestamp_seconds rehydra_drill_overhead_seconds rehydra_drills_total; do
	check "prom: HELP and TYPE of $m" grep -q "^# TYPE $m \(gauge\|counter\)$" "$P"
done
check "prom: labels, escaped quotes" \
	grep -q '^rehydra_drill_success{runbook="fast",target="local:local",scenario="quote \\"me\\""} 1$' "$P"
check "prom: rto target" \
	grep -q '^rehydra_drill_rto_target_seconds{runbook="fast",target="local:local",scenario="-"} 30$' "$P"
check "prom: the failed drill is not a success" \
	grep -q '^rehydra_drill_success{runbook="broken",target="-",scenario="-"} 0$' "$P"
check "prom: the failed drill has no RTO" \
	grep -q '^rehydra_drill_rto_seconds{runbook="broken",target="-",scenario="-"} NaN$' "$P"
check "prom: drills counted per verdict" \
	grep -q '^rehydra_drills_total{runbook="slow",target="-",scenario="-",verdict="missed"} 1$' "$P"
expect_eq "prom: mode 0644 (node_exporter reads it)" 644 "$(stat -c %a "$P")"
prom_check "prom: promtool check metrics accepts the drill's file" "$P"
ino1=$(stat -c %i "$P")
"$REHYDRA" drill "$T/slow.json" --state-dir "$S" -q --prom-file "$P" || true
check "prom: replaced by rename (new inode)" test "$(stat -c %i "$P")" != "$ino1"
check "prom: no temporary file left" test "$(ls "$T/prom" | wc -l)" -eq 1
prom_check "prom: promtool check metrics accepts the failed drill's file" "$P"
check "prom: the latest slow drill" \
	grep -q '^rehydra_drills_total{runbook="slow",target="-",scenario="-",verdict="missed"} 2$' "$P"
rm -f "$P"
expect_eq "audit report --prom-file: exit 0" 0 \
	"$(rc_of "$REHYDRA" audit report --state-dir "$S" --format json --out "$T/r.json" --prom-file "$P")"
expect_eq "audit report: json with the groups" 6 "$(jq '.groups | length' "$T/r.json")"
check "audit report --prom-file: every group" \
	test "$(grep -c '^rehydra_drill_success{' "$P")" -eq 6
prom_check "audit report --prom-file: promtool check metrics accepts it" "$P"
expect_eq "audit report --runbook --prom-file: only that group" 1 \
	"$("$REHYDRA" audit report --state-dir "$S" --runbook slow --prom-file "$P" >/dev/null &&
	   grep -c '^rehydra_drill_success{' "$P")"
prom_check "audit report --runbook --prom-file: promtool check metrics accepts it" "$P"
expect_eq "drill --prom-file into a missing directory: exit 3" 3 \
	"$(rc_of "$REHYDRA" drill "$T/fast.json" --state-dir "$S" -q --prom-file "$T/nodir/x.prom")"
check "drill --prom-file failure is said" grep -q "cannot write the metrics file" "$T/err"

# --- push to a git mirror ------------------------------------------------------------------------
R="$T/remote.git"
git init -q --bare "$R"
expect_eq "push: exit 0" 0 "$(rc_of "$REHYDRA" audit push "$R" --state-dir "$S")"
check "push: says what it pushed" grep -q "pushed $(entries) journal entries" "$T/out"
expect_eq "push: one commit on the remote" 1 "$(git --git-dir="$R" rev-list --count journal)"
check "push: a local bare mirror" test -f "$S/journal/mirror.git/HEAD"
expect_eq "push again, nothing new: exit 0" 0 "$(rc_of "$REHYDRA" audit push "$R" --state-dir "$S")"
check "push again: up to date" grep -q "up to date" "$T/out"
expect_eq "push again: no new commit" 1 "$(git --git-dir="$R" rev-list --count journal)"
first=$(git --git-dir="$R" rev-parse journal)
"$REHYDRA" drill "$T/fast.json" --state-dir "$S" -q
expect_eq "push after a drill (file:// URL): exit 0" 0 \
	"$(rc_of "$REHYDRA" audit push "file://$R" --state-dir "$S")"
expect_eq "push after a drill: two commits" 2 "$(git --git-dir="$R" rev-list --count journal)"
expect_eq "push after a drill: one new commit on top of the first" 1 \
	"$(git --git-dir="$R" rev-list --count "$first..journal")"
git clone -q -b journal "$R" "$T/wc"
cat "$T/wc"/journal/*.jsonl >"$T/rebuilt.jsonl"
check "the mirror rebuilds the journal byte for byte" cmp -s "$T/rebuilt.jsonl" "$J"
expect_eq "the rebuilt journal verifies" 0 "$(rc_of "$REHYDRA" audit verify --journal "$T/rebuilt.jsonl")"
# someone else moves the remote branch: refused, never forced
(cd "$T/wc" && echo "not ours" >>README.txt &&
	git -c user.name=x -c user.email=x@example.com commit -qam "elsewhere" && git push -q origin journal)
theirs=$(git --git-dir="$R" rev-parse journal)
"$REHYDRA" drill "$T/fast.json" --state-dir "$S" -q
expect_eq "push to a diverged remote: exit 1" 1 "$(rc_of "$REHYDRA" audit push "$R" --state-dir "$S")"
check "push to a diverged remote: says so" grep -q "has diverged" "$T/err"
expect_eq "push to a diverged remote: the remote is untouched" "$theirs" \
	"$(git --git-dir="$R" rev-parse journal)"
expect_eq "push to another branch: exit 0" 0 \
	"$(rc_of "$REHYDRA" audit push "$R" --branch journal-b --state-dir "$S")"
expect_eq "push to a missing remote: exit 1" 1 \
	"$(rc_of "$REHYDRA" audit push "$T/nowhere.git" --state-dir "$S")"
cp "$J" "$T/journal.orig"
head -c -10 "$T/journal.orig" >"$J"
expect_eq "push of a journal that does not verify: exit 1" 1 \
	"$(rc_of "$REHYDRA" audit push "$R" --branch journal-b --state-dir "$S")"
check "push of a damaged journal: says why" grep -q "not pushing" "$T/err"
cp "$T/journal.orig" "$J"

finish
