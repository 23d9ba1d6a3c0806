#!/usr/bin/env bash
# sftp.sh - which SSH cipher and MAC does rehydra's SFTP sink go fastest with?
#
#   bash tests/bench/sftp.sh [BUILD_DIR]
#
# For every pair that libssh2 1.10 and OpenSSH's sshd both offer (the ciphers
# aes128-ctr, aes192-ctr, aes256-ctr; the MACs hmac-sha1, hmac-sha2-256,
# hmac-sha2-512), tests/bench/sftp_algos.c uploads BENCH_SFTP_MIB (default
# 256) MiB over libssh2 to a private sshd on loopback, BENCH_RUNS (default 2)
# times, interleaved, and this prints the best wall time and the least
# client CPU of each, sorted by CPU: the machine is shared, so the CPU
# seconds are the figure to choose by (artifacts/ssh.c's SSH_CIPHERS and
# SSH_MACS). BENCH_QUICK=1 uploads 64 MiB once.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
export REHYDRA=$build/rehydra RH_SRC=$here RH_BUILD=$build
. "$here/tests/integration/lib.sh"
. "$here/tests/integration/sshd.sh"
mib=${BENCH_SFTP_MIB:-256}
runs=${BENCH_RUNS:-2}
if [ -n "${BENCH_QUICK:-}" ]; then
	mib=64
	runs=1
fi

cmake --build "$build" --target sftp_algos >/dev/null
sshd_start "$T/sshd"
: >"$T/raw"
for _ in $(seq 1 "$runs"); do
	for c in aes128-ctr aes192-ctr aes256-ctr; do
		for m in hmac-sha1 hmac-sha2-256 hmac-sha2-512; do
			"$build/tests/sftp_algos" 127.0.0.1 "$SSHD_PORT" "$SSHD_USER" \
				"$SSHD_USER_KEY" "$mib" "$c" "$m" >>"$T/raw"
		done
	done
done
echo "libssh2 $(dpkg-query -W -f='${Version}' libssh2-1 2>/dev/null || echo '?') to" \
	"$(ssh -V 2>&1 | cut -d, -f1), $mib MiB, best of $runs, load $(cut -d' ' -f1 /proc/loadavg)"
printf '  %-12s %-14s %8s %8s %10s\n' cipher mac wall_s cpu_s cpu_s/GiB
awk -v mib="$mib" '{ k = $1 " " $2
	if (!(k in w) || $3 < w[k]) w[k] = $3
	if (!(k in c) || $4 < c[k]) c[k] = $4 }
	END { for (k in c) { split(k, p, " ")
		printf "  %-12s %-14s %8.3f %8.3f %10.2f\n", p[1], p[2], w[k], c[k], c[k] * 1024 / mib } }' \
	"$T/raw" | sort -k4 -n
