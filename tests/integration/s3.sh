#!/usr/bin/env bash
# s3.sh - the S3 sink against a real S3 server that verifies SigV4 on loopback.
#
# Starts @20minutes/s3rver (npm, tests/tools; s3rver.sh) on a free port with
# a bucket, runs the C test program test_sink_s3 with RH_TEST_S3_ENDPOINT set
# (so none of its network cases skip), then GETs the objects it uploaded back
# with the curl CLI (signed, SigV4) and compares their sha256sum with what
# the program uploaded. The CLI's sync is checked with a wrong key id (403
# InvalidAccessKeyId) and with the right key id and a wrong secret (403
# SignatureDoesNotMatch: the server recomputed the signature). s3rver is
# stopped by pid on exit.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/s3rver.sh"

TEST_BIN="$RH_BUILD/tests/test_sink_s3"
BUCKET=rhtest
EMPTY_SHA=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

check "test_sink_s3 is built" test -x "$TEST_BIN"

# --service-endpoint localhost: "<bucket>.s3.localhost" is virtual-host
# style (curl resolves *.localhost to loopback itself); 127.0.0.1 stays path
# style.
mkdir -p "$T/out"
if ! s3rver_start "$T/s3data" --configure-bucket "$BUCKET" --service-endpoint localhost; then
	fail "s3rver started"
	finish
	exit 1
fi
PORT=$S3PORT
pass "s3rver listens on 127.0.0.1:$PORT"
# @20minutes/s3rver 5.0.0 computes the SigV4 canonical URI of a virtual-host
# request as /BUCKET/KEY (its SigV2 rule) where AWS uses the path sent, /KEY,
# so it refuses every correctly signed virtual-host request. The one
# virtual-host case therefore goes to a second instance on the same data
# directory started with --allow-mismatched-signatures (the key id and the
# signature's form are still checked); every other case is fully verified.
if ! s3rver_start "$T/s3data" --service-endpoint localhost --allow-mismatched-signatures; then
	fail "the virtual-host s3rver started"
	finish
	exit 1
fi
VHOST_PORT=$S3PORT
ENDPOINT="http://127.0.0.1:$PORT"

# The C program: every case runs for real (none may say "skipped").
set +e
env RH_TEST_S3_ENDPOINT="$ENDPOINT" \
	RH_TEST_S3_VHOST_ENDPOINT="http://s3.localhost:$VHOST_PORT" \
	RH_TEST_S3_BUCKET="$BUCKET" RH_TEST_S3_PREFIX=it RH_TEST_S3_OUT="$T/out" \
	AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER \
	"$TEST_BIN" >"$T/unit.out" 2>&1
RC=$?
set -e
cat "$T/unit.out"
expect_eq "test_sink_s3 passes against s3rver" 0 "$RC"
check "no case was skipped" bash -c "! grep -q skipped '$T/unit.out'"
check "the secret key never shows in the output" \
	bash -c "! grep -q -e wrong-secret-never-printed -e session-token-never-printed \
		-e AKIAWRONGKEY0123456 '$T/unit.out'"

# GET the uploads back with the curl CLI and compare their bytes.
get_sha() {
	curl -sSf --aws-sigv4 aws:amz:us-east-1:s3 -u S3RVER:S3RVER \
		-H "x-amz-content-sha256: $EMPTY_SHA" "$ENDPOINT/$BUCKET/$1" |
		sha256sum | cut -d' ' -f1
}
for pair in "big.sha256 it/big/shards/big.bin" "resume.sha256 it/resume/model.bin"; do
	set -- $pair
	want=$(cat "$T/out/$1" 2>/dev/null || echo missing)
	got=$(get_sha "$2" || echo unreadable)
	expect_eq "GET $2 matches the uploaded sha256" "$want" "$got"
done
# the 40 MiB object really is 40 MiB, and the manifest lists it
size=$(curl -sSf -I --aws-sigv4 aws:amz:us-east-1:s3 -u S3RVER:S3RVER \
	-H "x-amz-content-sha256: $EMPTY_SHA" "$ENDPOINT/$BUCKET/it/big/shards/big.bin" |
	tr -d '\r' | sed -n 's/^[Cc]ontent-[Ll]ength: //p')
expect_eq "the multipart object has 40 MiB" 41943040 "$size"
manifest=$(curl -sSf --aws-sigv4 aws:amz:us-east-1:s3 -u S3RVER:S3RVER \
	-H "x-amz-content-sha256: $EMPTY_SHA" "$ENDPOINT/$BUCKET/it/big/.rehydra-sink.json")
expect_eq "the sink manifest records the object" \
	"$(cat "$T/out/big.sha256")" "$(jq -r '.files["shards/big.bin"].sha256' <<<"$manifest")"

# The real CLI: sync the demo registry, re-sync (nothing moves), bad keys.
make_registry "$T/reg" 20
TARGET="s3://$BUCKET/standby?endpoint=$ENDPOINT&region=us-east-1"
sync_to() {
	"$REHYDRA" registry sync tinylm@1.0.0 --to "$TARGET" --registry "$T/reg" \
		--state-dir "$T/state" -q
}
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
check "rehydra registry sync --to s3:// succeeds" sync_to
out=$(sync_to 2>&1 || echo "FAILED")
echo "$out"
check "an unchanged re-sync sends 0 bytes" grep -q " 0 B sent" <<<"$out"
check "an unchanged re-sync skips every file" grep -q " 0 files sent" <<<"$out"
shard=$(jq -r '.files[] | select(.path | endswith(".bin")) | .path' \
	"$T/reg/models/tinylm/manifest.json" | head -n1)
want=$(jq -r --arg p "$shard" '.files[] | select(.path == $p) | .sha256' \
	"$T/reg/models/tinylm/manifest.json")
expect_eq "the synced shard reads back with its manifest sha256" "$want" \
	"$(get_sha "standby/$shard" || echo unreadable)"
set +e
err=$(AWS_ACCESS_KEY_ID=AKIABADKEY999 AWS_SECRET_ACCESS_KEY=cli-secret-never-printed \
	"$REHYDRA" registry sync tinylm@1.0.0 --to "$TARGET" --registry "$T/reg" \
	--state-dir "$T/state" -q 2>&1)
rc=$?
set -e
echo "$err"
check "wrong keys fail the sync" test "$rc" -ne 0
check "wrong keys: the message says access denied" grep -q "access denied by s3 endpoint" <<<"$err"
check "wrong keys: no secret and no full key id in the message" \
	bash -c "! grep -q -e cli-secret-never-printed -e AKIABADKEY999 <<<'$err'"

# The right key id with a wrong secret: only a server that recomputes the
# signature notices. rehydra must say who refused (the endpoint), why
# (SignatureDoesNotMatch) and which variable to fix, never the value.
set +e
err=$(AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=cli-wrong-secret-never-printed \
	"$REHYDRA" registry sync tinylm@1.0.0 --to "$TARGET" --registry "$T/reg" \
	--state-dir "$T/state" -q 2>&1)
rc=$?
set -e
echo "$err"
check "wrong secret fails the sync" test "$rc" -ne 0
check "wrong secret: the server said SignatureDoesNotMatch" grep -q "SignatureDoesNotMatch" <<<"$err"
check "wrong secret: the message names the endpoint" grep -qF "127.0.0.1:$PORT" <<<"$err"
check "wrong secret: the message names AWS_SECRET_ACCESS_KEY" grep -q "AWS_SECRET_ACCESS_KEY" <<<"$err"
check "wrong secret: the secret is never printed" \
	bash -c "! grep -q cli-wrong-secret-never-printed <<<'$err'"
code=$(curl -s -o "$T/denied.xml" -w '%{http_code}' --aws-sigv4 aws:amz:us-east-1:s3 \
	-u S3RVER:not-the-secret -H "x-amz-content-sha256: $EMPTY_SHA" \
	"$ENDPOINT/$BUCKET/it/big/shards/big.bin")
expect_eq "the server itself answers a wrong secret with 403" 403 "$code"
check "the server's 403 is SignatureDoesNotMatch" grep -q "<Code>SignatureDoesNotMatch</Code>" "$T/denied.xml"

finish
