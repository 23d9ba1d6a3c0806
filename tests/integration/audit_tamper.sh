#!/usr/bin/env bash
# audit_tamper.sh - evidence that survives a rewrite of the whole chain.
#
# A journal of real drills gets a signed checkpoint (`audit checkpoint`,
# which spawns ssh-keygen -Y sign) and is pushed to a bare git mirror. Stock
# `ssh-keygen -Y verify` checks the checkpoint independently of rehydra.
# Then tests/doubles/journal_rewrite (the adversary: it knows the format)
# rewrites one entry failed -> met and recomputes every hash after it, or
# drops the last entry; `audit verify` alone still passes (the chain is
# consistent), but `verify --allowed-signers`, `verify --against` and
# `audit push` all catch it.
. "$(dirname "$0")/lib.sh"

export HOME="$T/home" GIT_CONFIG_NOSYSTEM=1 LANG=C
export GIT_CONFIG_GLOBAL="$HOME/.gitconfig"
unset SSH_AUTH_SOCK
mkdir -p "$HOME"
: >"$GIT_CONFIG_GLOBAL"
REWRITE="$RH_BUILD/tests/journal_rewrite"
check "the adversary is built" test -x "$REWRITE"

STATE="$T/state"
J="$STATE/journal/journal.jsonl"
for v in ok bad ok; do
	argv='["true"]'
	[ "$v" = bad ] && argv='["false"]'
	jq -n --argjson a "$argv" '{rehydra: 1, name: "tamper",
		steps: [{id: "a", do: "exec", argv: $a}]}' >"$T/rb.json"
	"$REHYDRA" drill "$T/rb.json" --state-dir "$STATE" -q || true
done
expect_eq "three drills journaled (and genesis)" 4 "$(wc -l <"$J")"
expect_eq "entry 2 failed" failed "$(sed -n 3p "$J" | jq -r .record.verdict)"

# --- the operator's key, and who may sign ---------------------------------------------
ssh-keygen -q -t ed25519 -N '' -C operator -f "$T/operator" </dev/null
printf 'operator@rehydra.test namespaces="rehydra-journal" %s\n' \
	"$(cut -d' ' -f1,2 "$T/operator.pub")" >"$T/allowed_signers"
ssh-keygen -q -t ed25519 -N '' -C intruder -f "$T/intruder" </dev/null

check "audit checkpoint signs the head" \
	"$REHYDRA" audit checkpoint --state-dir "$STATE" --signing-key "$T/operator"
CP="$STATE/journal/checkpoints/0000000003.txt"
check "checkpoint names entry 3 and its hash" \
	grep -qx "hash $(tail -n1 "$J" | jq -r .hash)" "$CP"
check "stock ssh-keygen -Y verify accepts the checkpoint" \
	bash -c "ssh-keygen -Y verify -f '$T/allowed_signers' -I operator@rehydra.test \
		-n rehydra-journal -s '$CP.sig' <'$CP' >/dev/null"
check "verify --allowed-signers passes on the intact journal" \
	"$REHYDRA" audit verify --state-dir "$STATE" --allowed-signers "$T/allowed_signers"

git init -q --bare "$T/mirror.git"
check "audit push to the mirror" "$REHYDRA" audit push --state-dir "$STATE" "$T/mirror.git"
check "verify --against passes on the intact journal" \
	"$REHYDRA" audit verify --state-dir "$STATE" --against "$T/mirror.git"

# --- a checkpoint the intruder signed proves nothing ----------------------------------
cp -a "$STATE" "$T/state-intruder"
rm "$T/state-intruder/journal/checkpoints/"*
"$REHYDRA" audit checkpoint --state-dir "$T/state-intruder" --signing-key "$T/intruder" >/dev/null
set +e
"$REHYDRA" audit verify --state-dir "$T/state-intruder" --allowed-signers "$T/allowed_signers" \
	>"$T/intr.out" 2>"$T/intr.err"
RC=$?
set -e
expect_eq "a checkpoint by an unknown key: exit 1" 1 "$RC"
check "a checkpoint by an unknown key: says so" grep -q "no signer" "$T/intr.err"

# --- a consistent rewrite: failed -> met, every later hash recomputed --------------------
cp "$J" "$T/orig.jsonl"
"$REWRITE" "$T/orig.jsonl" "$J" 2 met
expect_eq "rewritten: entry 2 now says met" met "$(sed -n 3p "$J" | jq -r .record.verdict)"
check "rewritten: the chain alone still verifies (what the issue found)" \
	"$REHYDRA" audit verify --state-dir "$STATE"
check "ssh-keygen -Y verify: the signature is still good (the text is untouched)" \
	bash -c "ssh-keygen -Y verify -f '$T/allowed_signers' -I operator@rehydra.test \
		-n rehydra-journal -s '$CP.sig' <'$CP' >/dev/null"
check "rewritten: the journal no longer has the signed hash at seq 3" \
	bash -c "! grep -qx \"hash \$(tail -n1 '$J' | jq -r .hash)\" '$CP'"
set +e
"$REHYDRA" audit verify --state-dir "$STATE" --allowed-signers "$T/allowed_signers" \
	>"$T/v1.out" 2>"$T/v1.err"
RC=$?
set -e
expect_eq "rewritten: verify --allowed-signers exits 1" 1 "$RC"
check "rewritten: names the rewritten chain" grep -q "rewritten after it was signed" "$T/v1.err"
set +e
"$REHYDRA" audit verify --state-dir "$STATE" --against "$T/mirror.git" >"$T/v2.out" 2>"$T/v2.err"
RC=$?
set -e
expect_eq "rewritten: verify --against exits 1" 1 "$RC"
check "rewritten: names the first line that differs" grep -q "at line 3" "$T/v2.err"
set +e
"$REHYDRA" audit push --state-dir "$STATE" "$T/mirror.git" >"$T/p1.out" 2>"$T/p1.err"
RC=$?
set -e
expect_eq "rewritten: audit push refuses (exit 1)" 1 "$RC"
check "rewritten: push says the local journal was altered" grep -q "was altered" "$T/p1.err"
check "rewritten: push says nothing was pushed" bash -c "! grep -q pushed '$T/p1.out'"
expect_eq "rewritten: the mirror still holds the original" \
	"$(sed -n 3p "$T/orig.jsonl")" \
	"$(git --git-dir="$T/mirror.git" show journal:journal/00000000.jsonl | sed -n 3p)"

# --- the last entry deleted -------------------------------------------------------------
"$REWRITE" "$T/orig.jsonl" "$J" --drop-last
check "dropped: the chain alone still verifies (what the issue found)" \
	"$REHYDRA" audit verify --state-dir "$STATE"
set +e
"$REHYDRA" audit verify --state-dir "$STATE" --allowed-signers "$T/allowed_signers" \
	>"$T/v3.out" 2>"$T/v3.err"
RC=$?
set -e
expect_eq "dropped: verify --allowed-signers exits 1" 1 "$RC"
check "dropped: says entries were deleted" grep -q "entries were deleted" "$T/v3.err"
set +e
"$REHYDRA" audit push --state-dir "$STATE" "$T/mirror.git" >"$T/p2.out" 2>"$T/p2.err"
RC=$?
set -e
expect_eq "dropped: audit push refuses (exit 1)" 1 "$RC"
set +e
"$REHYDRA" audit verify --state-dir "$STATE" --against "$T/mirror.git" >/dev/null 2>&1
RC=$?
set -e
expect_eq "dropped: verify --against exits 1" 1 "$RC"

# --- the original again: everything passes, and a new drill pushes ----------------------
cp "$T/orig.jsonl" "$J"
"$REHYDRA" drill "$T/rb.json" --state-dir "$STATE" -q || true
check "restored + one more drill: push goes on" \
	"$REHYDRA" audit push --state-dir "$STATE" "$T/mirror.git"
check "restored: verify --allowed-signers passes" \
	"$REHYDRA" audit verify --state-dir "$STATE" --allowed-signers "$T/allowed_signers"

finish
