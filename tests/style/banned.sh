#!/usr/bin/env bash
# Proves banned.h turns each banned call into a compile error, and that the
# replacement it names still compiles: a file that calls FUNC after
# including banned.h must fail with "sorry_FUNC_is_banned_in_rehydra".
#
# usage: banned.sh CC BASE_INCLUDE_DIR
set -u
cc=$1 inc=$2
T=$(mktemp -d "${TMPDIR:-/tmp}/rh-banned-XXXXXX")
trap 'rm -rf "$T"' EXIT
flags=(-std=c11 -D_GNU_SOURCE -fsyntax-only -Werror=implicit-function-declaration -I"$inc")
pass=0 fail=0

# name|call (after the system headers, with banned.h included last)
banned=(
	'strcpy|strcpy(b, "x");'
	'strcat|strcat(b, "x");'
	'strncpy|strncpy(b, "x", 1);'
	'strncat|strncat(b, "x", 1);'
	'sprintf|sprintf(b, "%d", 1);'
	'strtok|(void)strtok(b, ",");'
	'atoi|(void)atoi(b);'
	'gmtime|(void)gmtime(&t);'
	'localtime|(void)localtime(&t);'
	'ctime|(void)ctime(&t);'
	'asctime|(void)asctime(&tmv);'
	'getpwuid|(void)getpwuid(0);'
	'system|(void)system(b);'
)
allowed='(void)gmtime_r(&t, &tmv); (void)localtime_r(&t, &tmv);
	(void)getpwuid_r(0, &pw, b, sizeof(b), &pwp); snprintf(b, sizeof(b), "%d", 1);'

probe() { # body -> file
	cat >"$2" <<EOC
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "banned.h"
int rh_banned_probe(void);
int rh_banned_probe(void)
{
	char b[64] = "";
	time_t t = 0;
	struct tm tmv;
	struct passwd pw, *pwp;
	(void)t; (void)tmv; (void)pw; (void)pwp;
	$1
	return b[0];
}
EOC
}

probe "$allowed" "$T/ok.c"
if "$cc" "${flags[@]}" "$T/ok.c" 2>"$T/ok.err"; then
	pass=$((pass + 1))
else
	echo "FAIL: the replacements banned.h names do not compile:" >&2
	cat "$T/ok.err" >&2
	fail=$((fail + 1))
fi
for entry in "${banned[@]}"; do
	name=${entry%%|*} call=${entry#*|}
	probe "$call" "$T/$name.c"
	if "$cc" "${flags[@]}" "$T/$name.c" 2>"$T/$name.err"; then
		echo "FAIL: $name compiles with banned.h included" >&2
		fail=$((fail + 1))
	elif ! grep -q "sorry_${name}_is_banned_in_rehydra" "$T/$name.err"; then
		echo "FAIL: $name fails, but not because banned.h bans it:" >&2
		cat "$T/$name.err" >&2
		fail=$((fail + 1))
	else
		pass=$((pass + 1))
	fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
