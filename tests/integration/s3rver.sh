# s3rver.sh - sourced by the S3 tests (after lib.sh): starts a real S3 server
# that verifies SigV4 signatures, @20minutes/s3rver (npm, tests/tools; its
# package has no bin entry, so tests/tools/s3rver-sigv4.js starts its CLI).
# Unlike the classic s3rver it answers 403 SignatureDoesNotMatch to a request
# signed with the wrong secret. Its credentials are S3RVER / S3RVER.
#
#   s3rver_start DATA_DIR [s3rver options...]
#
# listens on 127.0.0.1 on a port it picks (port 0), sets S3PORT and S3PID,
# and tracks the pid so lib.sh stops it on exit. Returns 1 (after printing
# its log) when it does not start.
s3rver_start() {
	local dir=$1 tools=$RH_SRC/tests/tools log
	shift
	[ -f "$tools/node_modules/@20minutes/s3rver/lib/cli.js" ] || bash "$tools/install.sh"
	mkdir -p "$dir"
	log=$(mktemp "$T/s3rver.XXXXXX.log")
	node "$tools/s3rver-sigv4.js" --directory "$dir" --address 127.0.0.1 --port 0 --silent \
		"$@" >"$log" 2>&1 &
	S3PID=$!
	track "$S3PID"
	S3PORT=
	for _ in $(seq 1 300); do
		S3PORT=$(sed -n 's/^S3rver listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$log")
		[ -n "$S3PORT" ] && break
		kill -0 "$S3PID" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$S3PORT" ]; then
		echo "s3rver (@20minutes/s3rver) did not start; its log:"
		cat "$log"
		return 1
	fi
	echo "s3 server: @20minutes/s3rver 5.0.0 (verifies SigV4) on 127.0.0.1:$S3PORT, pid $S3PID"
}
