#!/usr/bin/env bash
# House style enforced, not hoped for: every non-test C file must be exactly
# what clang-format makes of it with the repository's .clang-format. Prints
# the files that differ and how to fix them; exits 1 when any does.
set -u
src=${RH_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$src" || exit 2
fmt=${CLANG_FORMAT:-clang-format}
if ! command -v "$fmt" >/dev/null 2>&1; then
	echo "FAIL: $fmt not found (apt-get install clang-format)" >&2
	exit 1
fi
mapfile -t files < <(git ls-files -- '*.c' '*.h' ':!:tests/**' 2>/dev/null ||
	find orchestrator providers artifacts runbooks -name '*.[ch]')
bad=0
for f in "${files[@]}"; do
	[ -f "$f" ] || continue
	if ! "$fmt" --style=file --dry-run --Werror "$f" >/dev/null 2>&1; then
		echo "not formatted: $f" >&2
		bad=$((bad + 1))
	fi
done
if [ "$bad" -gt 0 ]; then
	echo "FAIL: $bad of ${#files[@]} files differ from .clang-format; run: clang-format -i FILE" >&2
	echo "0 passed, 1 failed"
	exit 1
fi
echo "ok: ${#files[@]} files match .clang-format ($("$fmt" --version | head -1))"
echo "1 passed, 0 failed"
