#!/usr/bin/env bash
# `rehydra registry sync --to sftp://...` against a real OpenSSH sshd on a
# free loopback port (and one inside a network namespace): a sync that the
# server's sha256sum confirms, a re-sync that moves nothing, a new version
# that moves only its changed file, host keys (unknown, accepted, changed),
# a refused user key, and sshd killed in the middle of a transfer: after a
# restart on the same port the next sync resumes and the result verifies.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sshd.sh"

export HOME=$T/home GIT_CONFIG_GLOBAL=$T/home/.gitconfig GIT_CONFIG_NOSYSTEM=1
export GIT_TERMINAL_PROMPT=0 XDG_STATE_HOME=$T/xdg
unset SSH_AUTH_SOCK
mkdir -p "$HOME"
: >"$GIT_CONFIG_GLOBAL"
git config --global user.name "Sftp Tester"
git config --global user.email "sftp@rehydra.invalid"
git config --global init.defaultBranch main
git lfs install >/dev/null

rc_of() { set +e; "$@" >"$T/out" 2>"$T/err"; echo $?; set -e; }

REG=$T/reg
git init -q "$REG"
git -C "$REG" lfs install --local >/dev/null
mkdir -p "$T/v1/shards" "$T/v2"
for i in 1 2 3; do head -c $((2 * 1024 * 1024 + i)) /dev/urandom >"$T/v1/shards/s$i.bin"; done
echo '{"vocab": 7}' >"$T/v1/tokenizer.json"
"$REHYDRA" registry publish m@1 "$T/v1" --registry "$REG" --license MIT >/dev/null
cp -r "$T/v1/." "$T/v2/"
head -c $((1024 * 1024)) /dev/urandom >"$T/v2/shards/s2.bin"
"$REHYDRA" registry publish m@2 "$T/v2" --registry "$REG" --license MIT >/dev/null

sshd_start "$T/sshd"
TARGET=$T/target
URL="sftp://$SSHD_USER@127.0.0.1:$SSHD_PORT$TARGET"
S() { "$REHYDRA" registry sync "$@" --registry "$REG" -q; }
K=(--known-hosts "$SSHD_KNOWN_HOSTS" --identity "$SSHD_USER_KEY")

same_tree() { # SRC DIR: every file of SRC is in DIR with the same sha256 (sha256sum)
	(cd "$1" && find . -type f | sort | xargs sha256sum) >"$T/sum.want"
	(cd "$2" && find . -type f ! -name '.rehydra-sink.json' ! -name manifest.json | sort |
		xargs sha256sum) >"$T/sum.got"
	cmp -s "$T/sum.want" "$T/sum.got"
}

# ---- sync, re-sync, delta --------------------------------------------------------
expect_eq "sync m@1: exit 0" 0 "$(rc_of S m@1 --to "$URL" "${K[@]}")"
check "sync m@1: the server's files match (sha256sum)" same_tree "$T/v1" "$TARGET"
check "sync m@1: the sink state file" test -s "$TARGET/.rehydra-sink.json"
check "sync m@1: no partials left" test -z "$(find "$TARGET" -name '*.rh-part-*')"
S m@1 --to "$URL" "${K[@]}" >"$T/out" 2>&1 || true
check "re-sync m@1: 0 B sent" grep -q " 0 B sent" "$T/out"
S m@2 --to "$URL" "${K[@]}" >"$T/out" 2>&1 || true
check "sync m@2: only the changed file moves (1 file, 1.0 MiB)" \
	grep -q "1 files sent.* 1.0 MiB sent" "$T/out"
check "sync m@2: the server's files match" same_tree "$T/v2" "$TARGET"

# ---- host keys and users ---------------------------------------------------------------
FP=$(ssh-keygen -l -E sha256 -f "$T/sshd/host_ed25519.pub" | cut -d' ' -f2)
: >"$T/kh_empty"
check "unknown host key: refused" test 0 -ne \
	"$(rc_of S m@1 --to "$URL" --known-hosts "$T/kh_empty" --identity "$SSHD_USER_KEY")"
check "unknown host key: names the fingerprint" grep -qF "$FP" "$T/err"
check "unknown host key: says how to accept it" grep -q -- "--accept-new-host-key" "$T/err"
expect_eq "unknown host key: --accept-new-host-key accepts it" 0 \
	"$(rc_of S m@1 --to "$URL" --known-hosts "$T/kh_empty" --identity "$SSHD_USER_KEY" \
		--accept-new-host-key)"
check "unknown host key: recorded in known_hosts" \
	grep -q "^\[127.0.0.1\]:$SSHD_PORT ssh-ed25519 " "$T/kh_empty"
ssh-keygen -q -t ed25519 -N '' -f "$T/other_host_key"
printf '[127.0.0.1]:%s %s\n' "$SSHD_PORT" "$(cut -d' ' -f1-2 "$T/other_host_key.pub")" \
	>"$T/kh_changed"
check "changed host key: refused even with --accept-new-host-key" test 0 -ne \
	"$(rc_of S m@1 --to "$URL" --known-hosts "$T/kh_changed" --identity "$SSHD_USER_KEY" \
		--accept-new-host-key)"
check "changed host key: says so, with fingerprint and line" \
	grep -q "has changed.*$FP.*kh_changed line 1" "$T/err"
ssh-keygen -q -t ed25519 -N '' -f "$T/stranger"
check "wrong user key: refused" test 0 -ne \
	"$(rc_of S m@1 --to "$URL" --known-hosts "$SSHD_KNOWN_HOSTS" --identity "$T/stranger")"
check "wrong user key: permission denied, names the key" \
	grep -q "permission denied.*stranger (refused)" "$T/err"
check "no secrets or keys in messages" bash -c "! grep -q 'PRIVATE KEY' '$T/err'"

# ---- sshd killed in the middle, restarted, resumed ----------------------------------
mkdir -p "$T/big"
head -c $((160 * 1024 * 1024)) /dev/urandom >"$T/big/weights.bin"
"$REHYDRA" registry publish big@1 "$T/big" --registry "$REG" --license MIT >/dev/null
BIGURL="sftp://$SSHD_USER@127.0.0.1:$SSHD_PORT$T/bigtarget"
"$REHYDRA" registry sync big@1 --to "$BIGURL" --registry "$REG" -q "${K[@]}" \
	>"$T/big.out" 2>"$T/big.err" &
SYNC=$!
track "$SYNC"
part_size() { stat -c %s "$T"/bigtarget/weights.bin.rh-part-* 2>/dev/null || echo 0; }
for _ in $(seq 1 600); do
	[ "$(part_size)" -gt $((16 * 1024 * 1024)) ] && break
	kill -0 "$SYNC" 2>/dev/null || break
	sleep 0.05
done
sshd_kill
set +e
wait "$SYNC"
rc=$?
set -e
check "killed sshd: the sync fails" test "$rc" -ne 0
check "killed sshd: says the connection was lost" grep -q "lost" "$T/big.err"
check "killed sshd: nothing under the final name" test ! -e "$T/bigtarget/weights.bin"
KEPT=$(part_size)
check "killed sshd: a partial is kept ($KEPT bytes)" test "$KEPT" -gt 0
sshd_restart
expect_eq "after restart: the sync succeeds" 0 \
	"$(rc_of "$REHYDRA" registry sync big@1 --to "$BIGURL" --registry "$REG" "${K[@]}")"
check "after restart: it resumed (non-zero bytes resumed)" \
	grep -Eq "B sent, .* skipped, [1-9][0-9.]* [KMG]iB resumed" "$T/out"
expect_eq "after restart: sha256sum of the server's file" \
	"$(sha256sum <"$T/big/weights.bin")" "$(sha256sum <"$T/bigtarget/weights.bin")"
check "after restart: no partial left" test -z "$(find "$T/bigtarget" -name '*.rh-part-*')"

# ---- the same sync into a network namespace --------------------------------------------
if ip netns add "rh-probe-$$" 2>/dev/null; then
	ip netns del "rh-probe-$$"
	sshd_kill
	sshd_start_netns "$T/sshd-ns"
	NSURL="sftp://$SSHD_USER@$SSHD_HOST:$SSHD_PORT$T/nstarget"
	expect_eq "netns: sync over the veth" 0 \
		"$(rc_of S m@2 --to "$NSURL" --known-hosts "$SSHD_KNOWN_HOSTS" \
			--identity "$SSHD_USER_KEY")"
	check "netns: the files match" same_tree "$T/v2" "$T/nstarget"
else
	echo "skip - netns: cannot create network namespaces here"
fi

finish
