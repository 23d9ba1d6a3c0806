# sshd.sh - start a private OpenSSH server for a test (sourced, not run).
#
# Source it after lib.sh (it uses $T-style directories and `track`).
#
#   sshd_start DIR
#       Generates a host key and a user key with ssh-keygen in DIR, writes
#       DIR/sshd_config (127.0.0.1, a free port, internal-sftp, keys only)
#       and runs /usr/sbin/sshd -D -e in the background. Sets:
#         SSHD_PORT SSHD_PID SSHD_HOST (127.0.0.1) SSHD_USER (whoami)
#         SSHD_USER_KEY (private key) SSHD_KNOWN_HOSTS (a known_hosts file
#         that trusts the host key) SSHD_SSH_OPTS (an array of ssh/scp
#         options that use both) SSHD_LOG
#   sshd_stop            stops the server started last (by pid)
#   sshd_kill            SIGKILLs it and every process it forked (a crash:
#                        the connections die too)
#   sshd_restart         starts it again with the same config and port
#   sshd_start_netns DIR [RATE]
#       Same, but sshd runs inside a new network namespace reached through
#       a veth pair (10.213.<n>.1 here, 10.213.<n>.2 inside); with RATE
#       (e.g. 200mbit) both ends of the veth get a tbf qdisc. Sets SSHD_HOST
#       to the address inside and SSHD_NETNS; the namespace is deleted on
#       exit. Needs root (ip netns). Called again, it starts another server
#       in another namespace (its own veth and subnet); the SSHD_* variables
#       then describe the newest one and every server and namespace is
#       stopped and deleted on exit.
#
# The server listens on loopback (or inside its own namespace) only, accepts
# public keys only, and every process is stopped by pid when the test exits.

sshd__dir=
sshd__ns=
sshd__veth=
sshd__older=() # "PID NS VETH" of servers started before the newest one
sshd__count=0

sshd__cleanup_netns() {
	if [ -n "$sshd__ns" ]; then
		ip netns del "$sshd__ns" 2>/dev/null || true
		ip link del "$sshd__veth" 2>/dev/null || true
		sshd__ns=
	fi
}

# Extends lib.sh's exit trap: stop sshd first, then drop the namespace;
# the same for every older server.
sshd__exit() {
	local e pid ns veth
	sshd_kill
	sshd__cleanup_netns
	for e in "${sshd__older[@]}"; do
		read -r pid ns veth <<<"$e"
		kill -KILL "$pid" $(sshd__descendants "$pid") 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		ip netns del "$ns" 2>/dev/null || true
		ip link del "$veth" 2>/dev/null || true
	done
	sshd__older=()
	rh_cleanup
}
trap sshd__exit EXIT

sshd__keys() {
	local dir=$1
	mkdir -p "$dir"
	chmod 700 "$dir"
	[ -f "$dir/host_ed25519" ] ||
		ssh-keygen -q -t ed25519 -N '' -C rh-test-host -f "$dir/host_ed25519"
	[ -f "$dir/user_ed25519" ] ||
		ssh-keygen -q -t ed25519 -N '' -C rh-test-user -f "$dir/user_ed25519"
	cp "$dir/user_ed25519.pub" "$dir/authorized_keys"
	chmod 600 "$dir/authorized_keys"
	# sshd refuses to start without its privilege separation directory;
	# the openssh-server package normally creates it at boot.
	[ -d /run/sshd ] || install -d -m 0755 /run/sshd
}

sshd__config() {
	local dir=$1 addr=$2 port=$3
	cat >"$dir/sshd_config" <<EOF
ListenAddress $addr:$port
HostKey $dir/host_ed25519
AuthorizedKeysFile $dir/authorized_keys
PidFile $dir/sshd.pid
Subsystem sftp internal-sftp
# bash sources ~/.bashrc for commands run by sshd unless SHLVL says it is
# nested: keep the machine's dotfiles (pyenv init, ...) out of remote exec
SetEnv SHLVL=2
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowAgentForwarding no
X11Forwarding no
MaxStartups 64:30:128
MaxSessions 64
LogLevel ERROR
EOF
}

sshd__known_hosts() {
	local dir=$1 addr=$2 port=$3
	printf '[%s]:%s %s\n' "$addr" "$port" "$(cut -d' ' -f1-2 "$dir/host_ed25519.pub")" \
		>"$dir/known_hosts"
}

# Waits until sshd answers with its banner, or fails after ~10 s.
sshd__wait_ready() {
	local addr=$1 port=$2 i
	for i in $(seq 1 100); do
		if ! kill -0 "$SSHD_PID" 2>/dev/null; then
			return 1
		fi
		if sshd__exec ssh-keyscan -T 1 -p "$port" "$addr" 2>/dev/null | grep -q ed25519
		then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# Runs a command inside the namespace when there is one.
sshd__exec() {
	if [ -n "$sshd__ns" ]; then
		ip netns exec "$sshd__ns" "$@"
	else
		"$@"
	fi
}

sshd__launch() {
	local dir=$1
	if [ -n "$sshd__ns" ]; then
		ip netns exec "$sshd__ns" /usr/sbin/sshd -f "$dir/sshd_config" -D -e \
			2>>"$dir/sshd.log" &
	else
		/usr/sbin/sshd -f "$dir/sshd_config" -D -e 2>>"$dir/sshd.log" &
	fi
	SSHD_PID=$!
	track "$SSHD_PID"
}

sshd__set_vars() {
	local dir=$1
	SSHD_USER=$(id -un)
	SSHD_USER_KEY=$dir/user_ed25519
	SSHD_KNOWN_HOSTS=$dir/known_hosts
	SSHD_LOG=$dir/sshd.log
	SSHD_SSH_OPTS=(-o BatchMode=yes -o IdentitiesOnly=yes -i "$SSHD_USER_KEY"
		-o UserKnownHostsFile="$SSHD_KNOWN_HOSTS" -o StrictHostKeyChecking=yes
		-o GlobalKnownHostsFile=/dev/null -o LogLevel=ERROR)
}

# Tries random free-looking ports until sshd binds one.
sshd__start_at() {
	local dir=$1 addr=$2 tries port
	for tries in 1 2 3 4 5 6 7 8 9 10; do
		port=$((20000 + RANDOM % 40000))
		if sshd__exec ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
			continue
		fi
		sshd__config "$dir" "$addr" "$port"
		sshd__launch "$dir"
		if sshd__wait_ready "$addr" "$port"; then
			SSHD_PORT=$port
			SSHD_HOST=$addr
			sshd__known_hosts "$dir" "$addr" "$port"
			sshd__set_vars "$dir"
			return 0
		fi
		kill -KILL "$SSHD_PID" 2>/dev/null || true
		wait "$SSHD_PID" 2>/dev/null || true
	done
	echo "sshd_start: could not start sshd (see $dir/sshd.log)" >&2
	cat "$dir/sshd.log" >&2 || true
	return 1
}

sshd_start() {
	sshd__dir=$1
	sshd__keys "$sshd__dir"
	sshd__start_at "$sshd__dir" 127.0.0.1
}

sshd_stop() {
	if [ -n "${SSHD_PID:-}" ]; then
		kill -TERM "$SSHD_PID" 2>/dev/null || true
		wait "$SSHD_PID" 2>/dev/null || true
		SSHD_PID=
	fi
}

sshd__descendants() {
	local p c
	for p in "$@"; do
		for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do
			echo "$c"
			sshd__descendants "$c"
		done
	done
}

sshd_kill() {
	local pids
	if [ -n "${SSHD_PID:-}" ]; then
		pids=$(sshd__descendants "$SSHD_PID")
		kill -KILL "$SSHD_PID" $pids 2>/dev/null || true
		wait "$SSHD_PID" 2>/dev/null || true
		SSHD_PID=
	fi
}

sshd_restart() {
	sshd_stop
	sshd__launch "$sshd__dir"
	sshd__wait_ready "$SSHD_HOST" "$SSHD_PORT"
}

sshd_start_netns() {
	local dir=$1 rate=${2:-} n k peer
	if [ -n "$sshd__ns" ]; then
		sshd__older+=("${SSHD_PID:-0} $sshd__ns $sshd__veth")
		sshd__ns=
		SSHD_PID=
	fi
	sshd__count=$((sshd__count + 1))
	k=$sshd__count
	[ "$k" -eq 1 ] && k= # the first keeps the names it always had
	sshd__dir=$dir
	sshd__keys "$dir"
	for _ in 1 2 3 4 5 6 7 8; do # a subnet no interface here uses yet
		n=$((RANDOM % 250 + 1))
		ip -4 addr show | grep -q "10\.213\.$n\." || break
	done
	sshd__ns=rh-sshd-$$-$n
	sshd__veth=rhv$$h$k
	peer=rhv$$n$k
	ip netns add "$sshd__ns"
	ip link add "$sshd__veth" type veth peer name "$peer"
	ip link set "$peer" netns "$sshd__ns"
	ip addr add "10.213.$n.1/30" dev "$sshd__veth"
	ip link set "$sshd__veth" up
	ip netns exec "$sshd__ns" ip addr add "10.213.$n.2/30" dev "$peer"
	ip netns exec "$sshd__ns" ip link set "$peer" up
	ip netns exec "$sshd__ns" ip link set lo up
	if [ -n "$rate" ]; then
		# burst must hold at least one timer tick of data at RATE; the
		# latency bounds the queue so the shaper, not a buffer, sets the pace.
		tc qdisc add dev "$sshd__veth" root tbf rate "$rate" burst 256kb latency 50ms
		ip netns exec "$sshd__ns" tc qdisc add dev "$peer" root tbf rate "$rate" \
			burst 256kb latency 50ms
	fi
	SSHD_NETNS=$sshd__ns
	sshd__start_at "$dir" "10.213.$n.2"
}

# Run directly (ctest picks up every tests/integration/*.sh), this file
# checks itself: the server it starts takes an ssh login and an sftp upload
# with the generated keys, refuses a stranger's key, and stops cleanly.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	. "$(dirname "$0")/lib.sh"
	trap sshd__exit EXIT
	sshd_start "$T/sshd"
	check "sshd: ssh login with the generated user key" \
		ssh "${SSHD_SSH_OPTS[@]}" -p "$SSHD_PORT" "$SSHD_USER@$SSHD_HOST" true
	echo hello >"$T/up.txt"
	check "sshd: sftp upload through internal-sftp" \
		sftp "${SSHD_SSH_OPTS[@]}" -P "$SSHD_PORT" -b - "$SSHD_USER@$SSHD_HOST" \
		<<<"put $T/up.txt $T/down.txt"
	check "sshd: the uploaded bytes" cmp -s "$T/up.txt" "$T/down.txt"
	ssh-keygen -q -t ed25519 -N '' -f "$T/stranger"
	check "sshd: a key not in authorized_keys is refused" \
		bash -c '! ssh "$@" true 2>/dev/null' _ -o BatchMode=yes -o IdentitiesOnly=yes \
		-i "$T/stranger" -o UserKnownHostsFile="$SSHD_KNOWN_HOSTS" \
		-p "$SSHD_PORT" "$SSHD_USER@$SSHD_HOST"
	pid=$SSHD_PID
	sshd_kill
	check "sshd: stopped" bash -c "! kill -0 $pid 2>/dev/null"
	finish
fi
