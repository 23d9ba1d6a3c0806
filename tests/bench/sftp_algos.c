/*
 * sftp_algos.c - which cipher and MAC should rehydra ask libssh2 for?
 *
 *   sftp_algos HOST PORT USER KEY MIB CIPHER MAC
 *
 * Measured, not guessed: connects with libssh2 (the library rehydra uses,
 * so the same per-block cost), offering only CIPHER and MAC, uploads MIB
 * MiB from memory over SFTP with the same pipelining rehydra uses (4 MiB
 * handed to libssh2_sftp_write at a time) into a temporary file that it
 * removes, and prints "CIPHER MAC wall_s cpu_s MB/s" where cpu_s is this
 * process's user + system time. Run by tests/bench/sftp.sh for every pair
 * that libssh2 1.10 and OpenSSH both offer; host key checking is off
 * because the server is the benchmark's own sshd on loopback.
 */
#include <libssh2.h>
#include <libssh2_sftp.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (4u << 20)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int fail(const char *what, LIBSSH2_SESSION *s)
{
	char *msg = NULL;

	if (s)
		libssh2_session_last_error(s, &msg, NULL, 0);
	fprintf(stderr, "sftp_algos: %s%s%s\n", what, msg ? ": " : "", msg ? msg : "");
	return 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	LIBSSH2_SESSION *s = NULL;
	LIBSSH2_SFTP *sftp;
	LIBSSH2_SFTP_HANDLE *h;
	unsigned long long total;
	char path[128];
	char *buf;
	double t0, c0, t1, c1;
	int sock;

	if (argc != 8) {
		fprintf(stderr, "usage: sftp_algos HOST PORT USER KEY MIB CIPHER MAC\n");
		return 2;
	}
	total = strtoull(argv[5], NULL, 10) << 20;
	buf = malloc(CHUNK);
	if (!buf)
		return fail("out of memory", NULL);
	for (unsigned i = 0; i < CHUNK; i++)
		buf[i] = (char)(i * 2654435761u >> 24);
	sa.sin_port = htons((unsigned short)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1)
		return fail("HOST must be an IPv4 address", NULL);
	sock = socket(AF_INET, SOCK_STREAM, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		return fail("cannot connect", NULL);
	if (libssh2_init(0) != 0 || !(s = libssh2_session_init()))
		return fail("cannot start libssh2", NULL);
	if (libssh2_session_method_pref(s, LIBSSH2_METHOD_CRYPT_CS, argv[6]) ||
	    libssh2_session_method_pref(s, LIBSSH2_METHOD_CRYPT_SC, argv[6]) ||
	    libssh2_session_method_pref(s, LIBSSH2_METHOD_MAC_CS, argv[7]) ||
	    libssh2_session_method_pref(s, LIBSSH2_METHOD_MAC_SC, argv[7]))
		return fail("libssh2 does not offer that cipher or MAC", s);
	if (libssh2_session_handshake(s, sock) != 0)
		return fail("handshake", s);
	if (libssh2_userauth_publickey_fromfile(s, argv[3], NULL, argv[4], NULL) != 0)
		return fail("authentication", s);
	if (!(sftp = libssh2_sftp_init(s)))
		return fail("sftp", s);
	snprintf(path, sizeof(path), "/tmp/rh-sftp-algos-%ld.bin", (long)getpid());
	h = libssh2_sftp_open(sftp, path, LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC,
			      0600);
	if (!h)
		return fail("open", s);
	t0 = now();
	c0 = cpu();
	for (unsigned long long off = 0; off < total;) {
		size_t want = total - off < CHUNK ? (size_t)(total - off) : CHUNK;
		size_t sent = 0;

		while (sent < want) {
			ssize_t n = libssh2_sftp_write(h, buf + sent, want - sent);

			if (n < 0)
				return fail("write", s);
			sent += (size_t)n;
		}
		off += want;
	}
	libssh2_sftp_close(h);
	t1 = now();
	c1 = cpu();
	libssh2_sftp_unlink(sftp, path);
	libssh2_sftp_shutdown(sftp);
	libssh2_session_disconnect(s, "done");
	libssh2_session_free(s);
	close(sock);
	libssh2_exit();
	printf("%s %s %.3f %.3f %.1f\n", argv[6], argv[7], t1 - t0, c1 - c0,
	       (double)total / 1e6 / (t1 - t0));
	free(buf);
	return 0;
}
