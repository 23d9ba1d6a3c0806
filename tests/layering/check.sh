#!/usr/bin/env bash
# Proves the layering is enforced by the build, not by habit: compiled with
# exactly the include path CMake gives LAYER, a file that includes one of
# the layer's own headers must compile, and a file that includes a header of
# the layer above must not.
#
# usage: check.sh CC LAYER 'DIR;DIR;...' OWN_HEADER ABOVE_HEADER
set -u
cc=$1 layer=$2 dirs=$3 own=$4 above=$5
T=$(mktemp -d "${TMPDIR:-/tmp}/rh-layering-XXXXXX")
trap 'rm -rf "$T"' EXIT

flags=(-std=c11 -D_GNU_SOURCE -fsyntax-only)
IFS=';' read -r -a ds <<<"$dirs"
for d in "${ds[@]}"; do
	[ -n "$d" ] && flags+=(-I"$d")
done
# shellcheck disable=SC2207
flags+=($(pkg-config --cflags jansson libgit2 libcurl libssh2 2>/dev/null))

printf '#include "%s"\nint rh_layering_probe(void);\n' "$own" >"$T/own.c"
printf '#include "%s"\nint rh_layering_probe(void);\n' "$above" >"$T/above.c"

if ! "$cc" "${flags[@]}" "$T/own.c" 2>"$T/own.err"; then
	echo "FAIL: $layer cannot include its own header $own:" >&2
	cat "$T/own.err" >&2
	exit 1
fi
if "$cc" "${flags[@]}" "$T/above.c" 2>"$T/above.err"; then
	echo "FAIL: $layer can include $above from the layer above (wrong-way include compiles)" >&2
	exit 1
fi
if ! grep -q "$above" "$T/above.err"; then
	echo "FAIL: $layer: including $above failed, but not because the header is missing:" >&2
	cat "$T/above.err" >&2
	exit 1
fi
echo "ok: $layer includes $own, and $above (a layer up) does not compile there"
echo "1 passed, 0 failed"
