#!/usr/bin/env bash
# boot_script.sh - templates/common/boot.py, the script cloud-init starts on
# the GPU instance, run here against a real s3rver with stand-ins for the
# instance's system commands (tests/doubles/boot/record as systemd-run,
# docker, apt-get, nvidia-ctk...; they log their argv), once per
# provider's addressing style:
#   aws      virtual-hosted  <bucket>.s3.<region>.<endpoint host>
#   alibaba  virtual-hosted  <bucket>.s3.oss-<region>.<endpoint host>
#   nebius   path-style      <endpoint host>/<bucket>, keys from a file
# A warm standby: the drill's bucket holds only a sink manifest whose
# "source" names the target's standby bucket; the files come from there
# (and only from the standby the instance was created with).
# Each run: waits for the sink manifest, copies every file, verifies each
# sha256 against it, starts the stack (a container image with the NVIDIA
# runtime, or the image's own command) as the unit rehydra-stack with a
# restart delay and no start limit, and reports its phases to
# rehydra-boot/status.json in the bucket. Also: a file whose bytes differ
# from the manifest is never served, a missing docker is installed, a
# missing stack command is a clear failure.
#
# The virtual-hosted names end in .localhost, which this machine does not
# resolve: the script's requests reach s3rver through http_proxy (urllib
# sends the full URL and the Host header, s3rver routes on the Host).
#
# This test keeps the classic s3rver, which does not verify signatures:
# @20minutes/s3rver 5.0.0 (the SigV4-checking server of s3.sh) computes the
# canonical URI of a virtual-host request as /BUCKET/KEY and so refuses the
# correctly signed virtual-host requests of the aws and alibaba boots.
source "$(dirname "$0")/lib.sh"

TOOLS=$RH_SRC/tests/tools
# the classic s3rver (see above), started by
# its script since both packages claim the bin name s3rver
S3RVER=$TOOLS/node_modules/s3rver/bin/s3rver.js
BOOT=$RH_SRC/templates/common/boot.py
PY=$(command -v python3)
[ -f "$S3RVER" ] || bash "$TOOLS/install.sh"
check "s3rver is installed" test -f "$S3RVER"
echo "stand-ins for the instance's commands: $RH_SRC/tests/doubles/boot/record"

mkdir -p "$T/s3data"
node "$S3RVER" --directory "$T/s3data" --address 127.0.0.1 --port 0 --service-endpoint localhost \
	--configure-bucket rh-boot-aws --configure-bucket rh-boot-alibaba \
	--configure-bucket rh-boot-nebius --configure-bucket rh-boot-bad \
	--configure-bucket rh-boot-warm --configure-bucket rh-sb-standby --silent >"$T/s3rver.log" 2>&1 &
track $!
PORT=
for _ in $(seq 1 300); do
	PORT=$(sed -n 's/^S3rver listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/s3rver.log")
	[ -n "$PORT" ] && break
	sleep 0.1
done
if [ -z "$PORT" ]; then
	fail "s3rver started"
	cat "$T/s3rver.log"
	finish
	exit 1
fi
pass "s3rver listens on 127.0.0.1:$PORT"

s3() { # s3 METHOD BUCKET KEY [FILE]: path-style, signed, x-amz-content-sha256 sent
	local m=$1 b=$2 k=$3 f=${4:-} sha
	if [ -n "$f" ]; then
		sha=$(sha256sum "$f" | cut -d' ' -f1)
		curl -sSf --aws-sigv4 aws:amz:us-east-1:s3 -u S3RVER:S3RVER -X "$m" \
			-H "x-amz-content-sha256: $sha" --data-binary "@$f" "http://127.0.0.1:$PORT/$b/$k" >/dev/null
	else
		curl -sSf --aws-sigv4 aws:amz:us-east-1:s3 -u S3RVER:S3RVER -X "$m" \
			-H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
			"http://127.0.0.1:$PORT/$b/$k"
	fi
}

# the model: two files and the sink manifest with their sha256
mkdir -p "$T/src/weights"
echo '{"model_type": "tinylm"}' >"$T/src/config.json"
head -c 300000 /dev/urandom >"$T/src/weights/shard-0.bin"
manifest() { # manifest DIR: the sink manifest of the files under DIR
	(cd "$1" && find . -type f | sed 's|^\./||' | sort | while read -r f; do
		jq -n --arg p "$f" --argjson s "$(stat -c %s "$f")" --arg h "$(sha256sum "$f" | cut -d' ' -f1)" \
			'{($p): {size: $s, sha256: $h}}'
	done) | jq -s '{rehydra_sink: 1, files: add}'
}
manifest "$T/src" >"$T/manifest.json"
upload() { # upload BUCKET: the model, then (last, as the sink commits) the manifest
	s3 PUT "$1" model/config.json "$T/src/config.json"
	s3 PUT "$1" model/weights/shard-0.bin "$T/src/weights/shard-0.bin"
	s3 PUT "$1" model/.rehydra-sink.json "$T/manifest.json"
}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# boot NAME CONFIG-JQ [no-docker]: one run of boot.py; sets RC
boot() {
	local name=$1 cfg=$2 d=$T/$1
	mkdir -p "$d/bin"
	for c in systemd-run docker apt-get nvidia-smi nvidia-ctk systemctl ubuntu-drivers modprobe; do
		[ "$c" = docker ] && [ "${3:-}" = no-docker ] && continue
		ln -sf "$RH_SRC/tests/doubles/boot/record" "$d/bin/$c"
	done
	STACK_PORT=$(free_port)
	jq -n --arg md "$d/model" --arg sf "$d/status.json" --argjson port "$STACK_PORT" \
		"{prefix: \"model\", region: \"us-east-1\", model_dir: \$md, port: \$port,
		  status_file: \$sf, command: [\"--model\", \$md], env: {HF_HUB_OFFLINE: \"1\"},
		  image: \"\", drill_id: \"20261203T000000Z-boot-abcdef\", credentials: \"env\"} + $cfg" \
		>"$d/stack.json"
	RC=0
	env -i PATH="$d/bin:/usr/bin:/bin" HOME="$T" http_proxy="http://127.0.0.1:$PORT" \
		AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER REHYDRA_BOOT_POLL_S=0.2 \
		BOOT_STUB_LOG="$d/calls" BOOT_STUB_DIR="$d" BOOT_STUB_PORT="$STACK_PORT" \
		timeout 120 "$PY" "$BOOT" "$d/stack.json" >"$d/out" 2>&1 || RC=$?
	if [ -s "$d/stack.pid" ]; then
		kill "$(cat "$d/stack.pid")" 2>/dev/null || true
	fi
}
phases() { # phases BUCKET: the phases the instance reported, in order
	s3 GET "$1" rehydra-boot/status.json | jq -r '[.phases[].phase] | join(" ")'
}
ordered() { # ordered BUCKET: the phase timestamps never go back
	s3 GET "$1" rehydra-boot/status.json | jq -e '[.phases[].at] | . == sort and length > 0' >/dev/null
}
same_model() { diff -r "$T/src" "$1/model" >/dev/null; }
called() { grep -q -- "$2" "$T/$1/calls"; }

# --- aws: virtual-hosted, a container image --------------------------------------
upload rh-boot-aws
boot aws '{bucket: "rh-boot-aws", endpoint: "http://s3.us-east-1.localhost:'"$PORT"'",
	addressing: "virtual", image: "vllm/vllm-openai:v0.8.5"}'
expect_eq "aws: exit 0" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/aws/out"
check "aws: virtual-hosted requests (bucket in the host name)" \
	grep -q "waiting for http://rh-boot-aws.s3.us-east-1.localhost:$PORT/model/.rehydra-sink.json" "$T/aws/out"
check "aws: the model arrived byte for byte" same_model "$T/aws"
expect_eq "aws: phases reported to the bucket" "booted syncing verifying starting serving" "$(phases rh-boot-aws)"
check "aws: with timestamps in order" ordered rh-boot-aws
check "aws: the image is pulled" called aws "^docker pull vllm/vllm-openai:v0.8.5"
check "aws: the container toolkit is configured for docker" called aws "^nvidia-ctk runtime configure --runtime=docker"
check "aws: the stack runs as rehydra-stack, restarted after 10 s, no start limit" called aws \
	"^systemd-run --unit=rehydra-stack --property=Restart=on-failure --property=RestartSec=10 --property=StartLimitIntervalSec=0 -- docker run --rm --gpus all"
check "aws: the container gets the model read-only, the env and the command" called aws \
	"-v $T/aws/model:$T/aws/model:ro .*-e HF_HUB_OFFLINE=1 vllm/vllm-openai:v0.8.5 --model $T/aws/model\$"
check "aws: docker was there, so nothing was installed" bash -c '! grep -q "^apt-get install" "$1"' _ "$T/aws/calls"

# --- alibaba: OSS's s3.oss-REGION, virtual-hosted, docker missing --------------------
upload rh-boot-alibaba
boot alibaba '{bucket: "rh-boot-alibaba", region: "cn-beijing",
	endpoint: "http://s3.oss-cn-beijing.localhost:'"$PORT"'", addressing: "virtual",
	image: "vllm/vllm-openai:v0.8.5"}' no-docker
expect_eq "alibaba: exit 0" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/alibaba/out"
check "alibaba: virtual-hosted on s3.oss-REGION (OSS refuses path-style)" \
	grep -q "waiting for http://rh-boot-alibaba.s3.oss-cn-beijing.localhost:$PORT/" "$T/alibaba/out"
check "alibaba: the image had no docker: it was installed" called alibaba "^apt-get install -y --no-install-recommends docker.io"
check "alibaba: the model arrived byte for byte" same_model "$T/alibaba"
expect_eq "alibaba: phases reported to the bucket" "booted syncing verifying starting serving" "$(phases rh-boot-alibaba)"

# --- nebius: path-style, keys from a file, the image's own command -----------------
upload rh-boot-nebius
echo '{"access_key_id": "S3RVER", "secret_access_key": "S3RVER"}' >"$T/nebius-keys.json"
mkdir -p "$T/nebius/bin"
printf '#!/bin/sh\nexit 0\n' >"$T/nebius/bin/serve-tinylm" && chmod +x "$T/nebius/bin/serve-tinylm"
boot nebius '{bucket: "rh-boot-nebius", region: "eu-north1",
	endpoint: "http://s3.eu-north1.localhost:'"$PORT"'", addressing: "path",
	credentials: "file", credentials_file: "'"$T/nebius-keys.json"'",
	command: ["serve-tinylm", "--port", "8000"]}'
expect_eq "nebius: exit 0" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/nebius/out"
check "nebius: path-style requests (bucket in the path)" \
	grep -q "waiting for http://s3.eu-north1.localhost:$PORT/rh-boot-nebius/model/.rehydra-sink.json" "$T/nebius/out"
check "nebius: the model arrived byte for byte" same_model "$T/nebius"
check "nebius: the command runs as rehydra-stack with the env, no docker" called nebius \
	"^systemd-run --unit=rehydra-stack --property=Restart=on-failure --property=RestartSec=10 --property=StartLimitIntervalSec=0 --working-directory=$T/nebius/model --setenv=HF_HUB_OFFLINE=1 -- serve-tinylm --port 8000\$"
expect_eq "nebius: phases reported to the bucket" "booted syncing verifying starting serving" "$(phases rh-boot-nebius)"
check "nebius: and to the local status file" jq -e '.phases[-1].phase == "serving"' "$T/nebius/status.json"

# --- warm standby: the files come from the standby bucket -------------------------
s3 PUT rh-sb-standby tinylm/config.json "$T/src/config.json"
s3 PUT rh-sb-standby tinylm/weights/shard-0.bin "$T/src/weights/shard-0.bin"
jq '. + {source: {bucket: "rh-sb-standby", prefix: "tinylm"}}' "$T/manifest.json" >"$T/warm-manifest.json"
s3 PUT rh-boot-warm model/.rehydra-sink.json "$T/warm-manifest.json"
boot warm '{bucket: "rh-boot-warm", standby: "rh-sb-standby", region: "eu-north1",
	endpoint: "http://s3.eu-north1.localhost:'"$PORT"'", addressing: "path",
	command: ["true"]}'
expect_eq "warm: exit 0" 0 "$RC"
[ "$RC" = 0 ] || cat "$T/warm/out"
check "warm: the model arrived byte for byte from the standby" same_model "$T/warm"
expect_eq "warm: phases reported to the drill's bucket" "booted syncing verifying starting serving" \
	"$(phases rh-boot-warm)"
expect_eq "warm: the syncing phase says where from" "2 files from the standby rh-sb-standby" \
	"$(s3 GET rh-boot-warm rehydra-boot/status.json | jq -r '.phases[] | select(.phase == "syncing") | .detail')"
# a manifest pointing anywhere but the standby the instance was made with
jq '. + {source: {bucket: "rh-boot-aws", prefix: "model"}}' "$T/manifest.json" >"$T/warm-manifest.json"
s3 PUT rh-boot-warm model/.rehydra-sink.json "$T/warm-manifest.json"
boot warm-other '{bucket: "rh-boot-warm", standby: "rh-sb-standby", region: "eu-north1",
	endpoint: "http://s3.eu-north1.localhost:'"$PORT"'", addressing: "path",
	command: ["true"]}'
expect_eq "warm, other bucket: the boot fails" 1 "$RC"
check "warm, other bucket: it says which bucket it refused" \
	grep -q "points at bucket 'rh-boot-aws', which is not this target's standby 'rh-sb-standby'" "$T/warm-other/out"
check "warm, other bucket: nothing was copied" test ! -e "$T/warm-other/model/weights/shard-0.bin"

# --- a file whose bytes are not the manifest's ---------------------------------------
cp "$T/manifest.json" "$T/manifest.good"
jq '.files["weights/shard-0.bin"].sha256 = "0000000000000000000000000000000000000000000000000000000000000000"' \
	"$T/manifest.good" >"$T/manifest.json"
upload rh-boot-bad
cp "$T/manifest.good" "$T/manifest.json"
boot bad '{bucket: "rh-boot-bad", endpoint: "http://s3.us-east-1.localhost:'"$PORT"'", addressing: "virtual",
	image: "vllm/vllm-openai:v0.8.5"}'
expect_eq "bad sha256: the boot fails (systemd restarts it later)" 1 "$RC"
check "bad sha256: it names the file" grep -q "weights/shard-0.bin never matched its sha256" "$T/bad/out"
check "bad sha256: the stack was never started" bash -c '! grep -q "^systemd-run --unit=rehydra-stack" "$1"' _ "$T/bad/calls"
check "bad sha256: no partial file is left as the model" test ! -e "$T/bad/model/weights/shard-0.bin"
expect_eq "bad sha256: the bucket says failed" "booted syncing failed" "$(phases rh-boot-bad)"
# systemd starts it again (Restart=on-failure); meanwhile the right bytes
# are there: it picks up, keeping what it had verified and the phase history
s3 PUT rh-boot-bad model/.rehydra-sink.json "$T/manifest.json"
touch -d '2001-01-01' "$T/bad/model/config.json"
boot bad '{bucket: "rh-boot-bad", endpoint: "http://s3.us-east-1.localhost:'"$PORT"'", addressing: "virtual",
	image: "vllm/vllm-openai:v0.8.5"}'
expect_eq "restarted: exit 0" 0 "$RC"
check "restarted: the model is complete" same_model "$T/bad"
check "restarted: the file it had verified was not fetched again" \
	test "$(stat -c %Y "$T/bad/model/config.json")" = "$(date -d 2001-01-01 +%s)"
expect_eq "restarted: the phases keep the failed run's" \
	"booted syncing failed booted syncing verifying starting serving" "$(phases rh-boot-bad)"
check "restarted: a unit left by an earlier run is stopped first" called bad "^systemctl reset-failed rehydra-stack"

# --- no image and no such command on the machine image --------------------------
boot nocmd '{bucket: "rh-boot-aws", endpoint: "http://s3.us-east-1.localhost:'"$PORT"'", addressing: "virtual",
	command: ["vllm", "serve", "/opt/rehydra/model"], status_file: "'"$T/nocmd.status"'"}'
expect_eq "no command: exit 1" 1 "$RC"
check "no command: says what to do" grep -q "'vllm' is not on this machine image: set stack.image" "$T/nocmd/out"
check "no command: reported as failed" jq -e '.phases[-1].phase == "failed"' "$T/nocmd.status"

finish
