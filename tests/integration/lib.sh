# lib.sh - shared helpers for the integration tests (sourced, not run).
#
# Every test gets a private temporary directory that is removed on exit,
# and every process it starts is registered with `track PID` so the exit
# trap stops it by pid. `check NAME CMD...` runs one assertion and counts it;
# `finish` prints "N passed, M failed" and sets the exit status.

set -euo pipefail

: "${REHYDRA:?set REHYDRA to the rehydra binary}"
: "${RH_SRC:?set RH_SRC to the source directory}"
: "${RH_BUILD:?set RH_BUILD to the build directory}"

T=$(mktemp -d "${TMPDIR:-/tmp}/rh-it-XXXXXX")
RH_PASSED=0
RH_FAILED=0
RH_PIDS=()

track() { RH_PIDS+=("$1"); }

rh_cleanup() {
	local p
	for p in "${RH_PIDS[@]:-}"; do
		[ -n "$p" ] || continue
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true # reap quietly: no "Killed" job message
	done
	rm -rf "$T"
}
trap rh_cleanup EXIT

pass() { RH_PASSED=$((RH_PASSED + 1)); echo "ok   - $*"; }
fail() { RH_FAILED=$((RH_FAILED + 1)); echo "FAIL - $*"; }

# check DESCRIPTION COMMAND...: passes when COMMAND exits 0.
check() {
	local what=$1
	shift
	if "$@"; then pass "$what"; else fail "$what"; fi
}

# expect_eq DESCRIPTION EXPECTED ACTUAL
expect_eq() {
	if [ "$2" = "$3" ]; then pass "$1"; else fail "$1 (expected '$2', got '$3')"; fi
}

# prom_check DESCRIPTION FILE: Prometheus's own promtool (Debian package
# prometheus, .ci/install-deps) accepts FILE as a textfile exposition, and
# prints what it objects to. Without promtool this fails: it never passes
# unchecked.
prom_check() {
	local out
	if ! command -v promtool >/dev/null 2>&1; then
		fail "$1 (promtool is not installed: run .ci/install-deps)"
		return
	fi
	if out=$(promtool check metrics <"$2" 2>&1); then
		pass "$1"
	else
		fail "$1: promtool check metrics says: $out"
	fi
}

# junit_check DESCRIPTION FILE: xmllint validates FILE against the JUnit
# schema CI servers use (tests/data/junit/junit-10.xsd, after Jenkins'
# junit-10.xsd), printing what it rejects.
junit_check() {
	local out
	if out=$(xmllint --noout --schema "$RH_SRC/tests/data/junit/junit-10.xsd" "$2" 2>&1); then
		pass "$1"
	else
		fail "$1: xmllint --schema junit-10.xsd says: $out"
	fi
}

finish() {
	echo "$RH_PASSED passed, $RH_FAILED failed"
	[ "$RH_FAILED" -eq 0 ]
}

# Builds the demo registry with a small shard once per test run.
make_registry() {
	local out=$1 mib=${2:-4}
	bash "$RH_SRC/runbooks/tinylm/make-registry.sh" "$out" "$mib" "$RH_BUILD" >/dev/null
}

# no_process_matching PATTERN: nothing runs whose command line contains PATTERN.
no_process_matching() {
	! pgrep -f -- "$1" >/dev/null 2>&1
}
