/*
 * ssh.c - the SSH layer: connect, trust, authenticate, then SFTP or exec.
 *
 * Everything runs with the libssh2 session in non-blocking mode and every
 * wait goes through one poll() on the socket and the cancel token's fd,
 * bounded by a deadline: a drill must never hang on a dead peer, and Ctrl-C
 * must stop a transfer at once rather than after libssh2's own timeout.
 *
 * Host keys are checked the way OpenSSH checks them, but strictly: a key
 * we have never seen is refused unless the caller accepted new keys, and a
 * changed key is refused always, with the evidence (type, SHA256
 * fingerprint, the known_hosts line) and the fix. We read known_hosts line
 * by line ourselves because libssh2 1.10 gives up on the whole file at the
 * first line it cannot parse (a certificate authority, a security-key type).
 *
 * libssh2 1.10 has no AES-GCM or ChaCha20 and cannot send SFTP extension
 * requests. Of what it and OpenSSH both offer (aes{128,192,256}-ctr with
 * hmac-sha1, hmac-sha2-256 or hmac-sha2-512) we ask for aes128-ctr with
 * hmac-sha1, the pair that cost the least client CPU per byte when measured
 * (tests/bench/sftp.sh, 512 MiB best of 3 on a 2-core EPYC with SHA-NI:
 * 4.4 s/GiB, hmac-sha2-256 4.8, the larger AES keys 4.9-5.4, hmac-sha2-512
 * 5.7-6.5; libssh2 encrypts one 16-byte block per call, so the call is the
 * cost and the key size matters little). HMAC-SHA1 is still a sound MAC.
 * We speak posix-rename@openssh.com on a small second SFTP channel of our
 * own.
 */
#include "ssh.h"
#include "cancel.h"
#include "clock.h"
#include "error.h"
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

#define SSH_CONNECT_TIMEOUT_S 15.0
#define SSH_IO_TIMEOUT_S 60.0
#define SSH_EXEC_TIMEOUT_S 300.0
#define SSH_EXEC_MAX_OUTPUT (1u << 20)
#define SSH_CLOSE_TIMEOUT_S 2.0

#define SSH_CIPHERS "aes128-ctr,aes256-ctr,aes192-ctr,aes256-cbc,aes192-cbc,aes128-cbc"
#define SSH_MACS "hmac-sha1,hmac-sha2-256,hmac-sha2-512"

/* SFTP v3 packet types and status codes we need for our own requests. */
#define SFTP_INIT 1
#define SFTP_VERSION 2
#define SFTP_STATUS 101
#define SFTP_EXTENDED 200
#define SFTP_MAX_PACKET (256u * 1024)

struct rh_ssh {
	int sock;
	LIBSSH2_SESSION *session;
	LIBSSH2_SFTP *sftp;
	LIBSSH2_CHANNEL *xchan; /* our own SFTP channel for extension requests */
	char *name;		/* user@host:port */
	char *host;
	char *user;
	unsigned port;
	char fingerprint[64];
	double io_timeout_s;
	struct rh_cancel *cancel;
	bool broken;
	bool exts_known;
	char *exts; /* "\n"-separated extension names, with a leading "\n" */
	uint32_t xid;
};

/* A known_hosts entry's line, to point the user at it. */
struct kh_line {
	struct libssh2_knownhost *entry;
	size_t line;
};

struct kh_file {
	LIBSSH2_KNOWNHOSTS *hosts;
	struct kh_line *lines;
	size_t n_lines;
	char *path;
};

static pthread_once_t ssh_once = PTHREAD_ONCE_INIT;
static int ssh_init_rc;

static void ssh_global_init(void)
{
	ssh_init_rc = libssh2_init(0);
}

/* ---- waiting ----------------------------------------------------------- */

static int poll_until(int fd, short events, double deadline, struct rh_cancel *cancel,
		      const char *name, const char *what, bool *timed_out)
{
	struct pollfd p[2];
	int n = 1;

	*timed_out = false;
	for (;;) {
		double left = deadline - rh_clock_mono();
		int ms;
		int rc;

		if (cancel && rh_cancel_is_fired(cancel))
			return rh_error_set(RH_ECANCELLED, "cancelled while %s (%s)", what, name);
		if (left <= 0) {
			*timed_out = true;
			return rh_error_set(RH_ETIMEOUT,
					    "%s timed out while %s; check that the "
					    "host is up and reachable",
					    name, what);
		}
		ms = left > 1000.0 ? 1000 : (int)(left * 1000.0) + 1;
		p[0].fd = fd;
		p[0].events = events;
		p[0].revents = 0;
		n = 1;
		if (cancel) {
			p[1].fd = rh_cancel_fd(cancel);
			p[1].events = POLLIN;
			p[1].revents = 0;
			n = 2;
		}
		rc = poll(p, (nfds_t)n, ms);
		if (rc < 0 && errno != EINTR)
			return rh_error_set_errno(RH_EIO, errno, "poll failed while %s (%s)", what,
						  name);
		if (rc > 0 && p[0].revents)
			return 0;
	}
}

int rh_ssh_wait(struct rh_ssh *s, double deadline, const char *what)
{
	int dir = libssh2_session_block_directions(s->session);
	short events = 0;
	bool timed_out;
	int err;

	if (deadline <= 0)
		deadline = rh_clock_mono() + s->io_timeout_s;
	if (dir & LIBSSH2_SESSION_BLOCK_INBOUND)
		events |= POLLIN;
	if (dir & LIBSSH2_SESSION_BLOCK_OUTBOUND)
		events |= POLLOUT;
	if (!events)
		events = POLLIN;
	err = poll_until(s->sock, events, deadline, s->cancel, s->name, what, &timed_out);
	if (timed_out)
		s->broken = true; /* a half-done request leaves the stream unusable */
	return err;
}

int rh_ssh_error(struct rh_ssh *s, int rc, const char *what)
{
	char *msg = NULL;

	libssh2_session_last_error(s->session, &msg, NULL, 0);
	switch (rc) {
	case LIBSSH2_ERROR_SOCKET_SEND:
	case LIBSSH2_ERROR_SOCKET_RECV:
	case LIBSSH2_ERROR_SOCKET_DISCONNECT:
	case LIBSSH2_ERROR_SOCKET_TIMEOUT:
	case LIBSSH2_ERROR_TIMEOUT:
	case LIBSSH2_ERROR_CHANNEL_CLOSED:
	case LIBSSH2_ERROR_CHANNEL_EOF_SENT:
	case LIBSSH2_ERROR_BAD_USE:
	case LIBSSH2_ERROR_DECRYPT:
	case LIBSSH2_ERROR_INVALID_MAC:
		s->broken = true;
		return rh_error_set(RH_EIO,
				    "connection to %s lost while %s (%s); run the "
				    "command again once the host is back: transfers resume",
				    s->name, what, msg && *msg ? msg : "no detail");
	case LIBSSH2_ERROR_ALLOC:
		return rh_error_set(RH_ENOMEM, "out of memory while %s (%s)", what, s->name);
	default:
		return rh_error_set(RH_EIO, "%s failed while %s: %s", s->name, what,
				    msg && *msg ? msg : "unknown libssh2 error");
	}
}

bool rh_ssh_broken(const struct rh_ssh *s)
{
	return s->broken;
}

/* Waits for the socket without touching the error message, for cleanup
 * after a failure. False once `deadline` passed or the wait failed. */
static bool ssh_settle(struct rh_ssh *s, double deadline)
{
	int dir = libssh2_session_block_directions(s->session);
	struct pollfd p;
	double left = deadline - rh_clock_mono();

	if (left <= 0 || s->broken)
		return false;
	p.fd = s->sock;
	p.events = (short)((dir & LIBSSH2_SESSION_BLOCK_OUTBOUND) ? POLLOUT : POLLIN);
	p.revents = 0;
	return poll(&p, 1, (int)(left * 1000.0) + 1) > 0;
}

/* Runs a libssh2 call returning int until it stops saying EAGAIN. Sets
 * `err` (an rh code) when the wait failed; otherwise `rc` is the call's. */
#define SSH_RETRY(s, rc, err, call, what)                                                          \
	do {                                                                                       \
		(err) = 0;                                                                         \
		while (((rc) = (call)) == LIBSSH2_ERROR_EAGAIN) {                                  \
			(err) = rh_ssh_wait((s), 0, (what));                                       \
			if ((err) < 0)                                                             \
				break;                                                             \
		}                                                                                  \
	} while (0)

/* ---- connecting -------------------------------------------------------- */

static int ssh_connect_socket(struct rh_ssh *s, double deadline)
{
	struct addrinfo hints;
	struct addrinfo *res = NULL;
	char port[16];
	int last_errno = 0;
	int fd = -1;
	int err = 0;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	snprintf(port, sizeof(port), "%u", s->port);
	rc = getaddrinfo(s->host, port, &hints, &res);
	if (rc != 0) {
		err = rh_error_set(RH_EIO, "cannot resolve %s: %s; check the host name", s->host,
				   gai_strerror(rc));
		goto done;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		bool timed_out;
		socklen_t len = sizeof(last_errno);
		int one = 1;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			    ai->ai_protocol);
		if (fd < 0) {
			last_errno = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			goto connected;
		if (errno != EINPROGRESS) {
			last_errno = errno;
			close(fd);
			fd = -1;
			continue;
		}
		err =
		    poll_until(fd, POLLOUT, deadline, s->cancel, s->name, "connecting", &timed_out);
		if (err < 0) {
			if (timed_out)
				rh_error_set(RH_ETIMEOUT,
					     "cannot connect to %s: no answer within "
					     "the connect timeout; check the address, the port "
					     "and any firewall",
					     s->name);
			goto done;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &last_errno, &len) != 0)
			last_errno = errno;
		if (last_errno == 0) {
		connected:
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			s->sock = fd;
			fd = -1;
			goto done;
		}
		close(fd);
		fd = -1;
	}
	err = rh_error_set_errno(RH_EIO, last_errno ? last_errno : ECONNREFUSED,
				 "cannot connect to %s; check that sshd runs there and the port "
				 "is right",
				 s->name);
done:
	if (fd >= 0)
		close(fd);
	if (res)
		freeaddrinfo(res);
	return err;
}

static const char *hostkey_type_name(int type)
{
	switch (type) {
	case LIBSSH2_HOSTKEY_TYPE_RSA:
		return "ssh-rsa";
	case LIBSSH2_HOSTKEY_TYPE_DSS:
		return "ssh-dss";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
		return "ecdsa-sha2-nistp256";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
		return "ecdsa-sha2-nistp384";
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
		return "ecdsa-sha2-nistp521";
	case LIBSSH2_HOSTKEY_TYPE_ED25519:
		return "ssh-ed25519";
	default:
		return "unknown";
	}
}

static int hostkey_type_mask(int type)
{
	switch (type) {
	case LIBSSH2_HOSTKEY_TYPE_RSA:
		return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
	case LIBSSH2_HOSTKEY_TYPE_DSS:
		return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
	case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
		return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
	case LIBSSH2_HOSTKEY_TYPE_ED25519:
		return LIBSSH2_KNOWNHOST_KEY_ED25519;
	default:
		return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
	}
}

/* OpenSSH's fingerprint form: "SHA256:" and base64 without padding. */
static void fingerprint_sha256(char out[64], const void *key, size_t len)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	struct rh_sha256 c;
	uint8_t d[33];
	size_t o = 7;

	rh_sha256_init(&c);
	rh_sha256_update(&c, key, len);
	rh_sha256_final(&c, d);
	d[32] = 0;
	memcpy(out, "SHA256:", 7);
	for (size_t i = 0; i < 32; i += 3) {
		uint32_t v = ((uint32_t)d[i] << 16) | ((uint32_t)d[i + 1] << 8) |
			     (i + 2 < 32 ? d[i + 2] : 0);

		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = b64[(v >> 6) & 63];
		if (i + 2 < 32)
			out[o++] = b64[v & 63];
	}
	out[o] = '\0';
}

/* A field of this process's passwd entry (the user name, or the home
 * directory when want_home) as a new string; NULL when there is none or
 * memory ran out. getpwuid_r, not getpwuid: connections open in parallel
 * (SFTP sinks) and getpwuid's result is one static buffer for all threads. */
static char *self_passwd_field(bool want_home)
{
	long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
	size_t len = hint > 0 ? (size_t)hint : 4096;
	struct passwd pwd, *pw = NULL;
	char *buf = NULL;
	char *v = NULL;
	int rc;

	do {
		char *nb = realloc(buf, len);

		if (!nb)
			goto done;
		buf = nb;
		rc = getpwuid_r(getuid(), &pwd, buf, len, &pw);
		len *= 2;
	} while (rc == ERANGE && len <= (1u << 20));
	if (rc == 0 && pw)
		v = strdup(want_home ? pw->pw_dir : pw->pw_name);
done:
	free(buf);
	return v;
}

static char *home_path(const char *rel)
{
	const char *home = getenv("HOME");
	char *own = NULL;
	char *p = NULL;

	if (!home || !*home)
		home = own = self_passwd_field(true);
	if (home && asprintf(&p, "%s/%s", home, rel) < 0)
		p = NULL;
	free(own);
	return p;
}

static void kh_file_free(struct kh_file *kh)
{
	if (kh->hosts)
		libssh2_knownhost_free(kh->hosts);
	free(kh->lines);
	free(kh->path);
	memset(kh, 0, sizeof(*kh));
}

/* Loads known_hosts one line at a time, skipping what libssh2 cannot parse
 * (markers, certificate and security-key types) instead of failing on it,
 * and remembering which line each entry came from. A missing file is an
 * empty one. */
static int kh_file_load(struct kh_file *kh, struct rh_ssh *s, const char *path)
{
	struct libssh2_knownhost *prev = NULL;
	struct libssh2_knownhost *e;
	size_t cap = 0;
	size_t lineno = 0;
	char *line = NULL;
	size_t linecap = 0;
	ssize_t n;
	FILE *f = NULL;
	int err = 0;

	kh->path = path ? strdup(path) : home_path(".ssh/known_hosts");
	kh->hosts = libssh2_knownhost_init(s->session);
	if (!kh->path || !kh->hosts) {
		err = rh_error_set(RH_ENOMEM, "out of memory reading known_hosts");
		goto done;
	}
	f = fopen(kh->path, "re");
	if (!f) {
		if (errno != ENOENT)
			err = rh_error_set_errno(RH_EIO, errno, "cannot read %s", kh->path);
		goto done;
	}
	while ((n = getline(&line, &linecap, f)) >= 0) {
		const char *p = line;

		lineno++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == '\n' || *p == '#' || *p == '@')
			continue;
		if (libssh2_knownhost_readline(kh->hosts, line, (size_t)n,
					       LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0)
			continue;
		/* One line may name several hosts: each becomes an entry. */
		while (libssh2_knownhost_get(kh->hosts, &e, prev) == 0) {
			if (kh->n_lines == cap) {
				size_t ncap = cap ? cap * 2 : 32;
				struct kh_line *nl = realloc(kh->lines, ncap * sizeof(*nl));

				if (!nl) {
					err = rh_error_set(RH_ENOMEM, "out of memory reading %s",
							   kh->path);
					goto done;
				}
				kh->lines = nl;
				cap = ncap;
			}
			kh->lines[kh->n_lines].entry = e;
			kh->lines[kh->n_lines].line = lineno;
			kh->n_lines++;
			prev = e;
		}
	}
done:
	free(line);
	if (f)
		fclose(f);
	return err;
}

static size_t kh_line_of(const struct kh_file *kh, const struct libssh2_knownhost *e)
{
	for (size_t i = 0; i < kh->n_lines; i++)
		if (kh->lines[i].entry == e)
			return kh->lines[i].line;
	return 0;
}

/* The host key algorithms in our order of preference, with those
 * known_hosts already holds for this host first (as OpenSSH does): a server
 * offering several keys must show us the one we can check. We find the
 * known types by asking libssh2 about a dummy key of each type: "mismatch"
 * means an entry of that type exists, and this works for hashed names. */
static void hostkey_pref(char *out, size_t size, const struct kh_file *kh, const char *host,
			 unsigned port)
{
	static const struct {
		int mask;
		const char *algs;
	} types[] = {
	    {LIBSSH2_KNOWNHOST_KEY_ED25519, "ssh-ed25519"},
	    {LIBSSH2_KNOWNHOST_KEY_ECDSA_256, "ecdsa-sha2-nistp256"},
	    {LIBSSH2_KNOWNHOST_KEY_ECDSA_384, "ecdsa-sha2-nistp384"},
	    {LIBSSH2_KNOWNHOST_KEY_ECDSA_521, "ecdsa-sha2-nistp521"},
	    {LIBSSH2_KNOWNHOST_KEY_SSHRSA, "rsa-sha2-512,rsa-sha2-256,ssh-rsa"},
	};
	bool known[sizeof(types) / sizeof(types[0])];
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		int rc = libssh2_knownhost_checkp(kh->hosts, host, (int)port, "\x01", 1,
						  LIBSSH2_KNOWNHOST_TYPE_PLAIN |
						      LIBSSH2_KNOWNHOST_KEYENC_RAW | types[i].mask,
						  NULL);

		known[i] = rc == LIBSSH2_KNOWNHOST_CHECK_MISMATCH;
	}
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
			if (known[i] != (pass == 0))
				continue;
			o += (size_t)snprintf(out + o, size - o, "%s%s", o ? "," : "",
					      types[i].algs);
			if (o >= size)
				return;
		}
}

/* The host's name as known_hosts writes it: "host", or "[host]:port". */
static void kh_name(char *out, size_t size, const struct rh_ssh *s)
{
	if (s->port == 22)
		snprintf(out, size, "%s", s->host);
	else
		snprintf(out, size, "[%s]:%u", s->host, s->port);
}

/* Appends one entry for the server's key to known_hosts (0600, directory
 * 0700 created if missing), without rewriting lines we did not parse. */
static int kh_append(struct kh_file *kh, struct rh_ssh *s, const char *key, size_t keylen,
		     int keytype)
{
	struct libssh2_knownhost *e = NULL;
	char name[300];
	char line[8192];
	size_t len = 0;
	char *slash;
	int fd = -1;
	int err = 0;

	kh_name(name, sizeof(name), s);
	if (libssh2_knownhost_addc(kh->hosts, name, NULL, key, keylen, NULL, 0,
				   LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
				       hostkey_type_mask(keytype),
				   &e) != 0 ||
	    libssh2_knownhost_writeline(kh->hosts, e, line, sizeof(line), &len,
					LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0) {
		err = rh_error_set(RH_ERROR, "cannot record the host key of %s", s->name);
		goto done;
	}
	slash = strrchr(kh->path, '/');
	if (slash && slash != kh->path) {
		*slash = '\0';
		if (mkdir(kh->path, 0700) != 0 && errno != EEXIST) {
			err = rh_error_set_errno(RH_EIO, errno, "cannot create %s", kh->path);
			*slash = '/';
			goto done;
		}
		*slash = '/';
	}
	fd = open(kh->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || write(fd, line, len) != (ssize_t)len || fsync(fd) != 0) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot add the host key of %s to %s",
					 s->name, kh->path);
		goto done;
	}
done:
	if (fd >= 0)
		close(fd);
	return err;
}

static int ssh_check_host_key(struct rh_ssh *s, struct kh_file *kh, bool accept_new)
{
	struct libssh2_knownhost *found = NULL;
	char khname[300];
	const char *key;
	size_t keylen = 0;
	int keytype = 0;
	int rc;
	int err = 0;

	key = libssh2_session_hostkey(s->session, &keylen, &keytype);
	if (!key) {
		err = rh_error_set(RH_EIO, "%s sent no host key", s->name);
		goto done;
	}
	fingerprint_sha256(s->fingerprint, key, keylen);
	kh_name(khname, sizeof(khname), s);
	rc = libssh2_knownhost_checkp(kh->hosts, s->host, (int)s->port, key, keylen,
				      LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
					  hostkey_type_mask(keytype),
				      &found);
	switch (rc) {
	case LIBSSH2_KNOWNHOST_CHECK_MATCH:
		break;
	case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
		err = rh_error_set(RH_EVERIFY,
				   "host key for %s has changed: the server now offers %s %s but "
				   "%s line %zu holds a different key; this can be an attack "
				   "(someone in the middle) or a reinstalled host: only after the "
				   "host's owner confirms the new fingerprint, remove the old key "
				   "with ssh-keygen -R '%s' -f %s and connect again",
				   s->name, hostkey_type_name(keytype), s->fingerprint, kh->path,
				   kh_line_of(kh, found), khname, kh->path);
		break;
	case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
		if (!accept_new) {
			err = rh_error_set(RH_EVERIFY,
					   "unknown host key for %s: %s %s is not in %s; compare "
					   "the fingerprint with the host's (ssh-keygen -lf on "
					   "its host key), then accept it (runbook: "
					   "\"accept_new_host_key\": true in the target; "
					   "registry sync: --accept-new-host-key) or add it "
					   "to %s",
					   s->name, hostkey_type_name(keytype), s->fingerprint,
					   kh->path, kh->path);
			break;
		}
		err = kh_append(kh, s, key, keylen, keytype);
		break;
	default:
		err = rh_error_set(RH_EVERIFY, "cannot check the host key of %s against %s",
				   s->name, kh->path);
		break;
	}
done:
	return err;
}

/* ---- authentication ---------------------------------------------------- */

static int ssh_auth_agent(struct rh_ssh *s, double deadline, char *tried, size_t tsize, bool *ok)
{
	struct libssh2_agent_publickey *id = NULL;
	struct libssh2_agent_publickey *prev = NULL;
	LIBSSH2_AGENT *agent;
	size_t o = strlen(tried);
	unsigned n = 0;
	int err = 0;
	int rc;

	*ok = false;
	agent = libssh2_agent_init(s->session);
	if (!agent)
		return 0;
	if (libssh2_agent_connect(agent) != 0 || libssh2_agent_list_identities(agent) != 0) {
		snprintf(tried + o, tsize - o, "%sssh-agent (unreachable)", o ? ", " : "");
		goto done;
	}
	while (libssh2_agent_get_identity(agent, &id, prev) == 0) {
		n++;
		while ((rc = libssh2_agent_userauth(agent, s->user, id)) == LIBSSH2_ERROR_EAGAIN) {
			err = rh_ssh_wait(s, deadline, "authenticating");
			if (err < 0)
				goto done;
		}
		if (rc == 0) {
			*ok = true;
			goto done;
		}
		prev = id;
	}
	snprintf(tried + o, tsize - o, "%sssh-agent (%u key%s)", o ? ", " : "", n,
		 n == 1 ? "" : "s");
done:
	libssh2_agent_disconnect(agent);
	libssh2_agent_free(agent);
	return err;
}

static int ssh_auth_file(struct rh_ssh *s, const char *path, double deadline, char *tried,
			 size_t tsize, bool *ok)
{
	size_t o = strlen(tried);
	char *msg = NULL;
	int err = 0;
	int rc;

	*ok = false;
	if (access(path, R_OK) != 0) {
		snprintf(tried + o, tsize - o, "%s%s (%s)", o ? ", " : "", path,
			 errno == ENOENT ? "missing" : "unreadable");
		return 0;
	}
	while ((rc = libssh2_userauth_publickey_fromfile_ex(s->session, s->user,
							    (unsigned)strlen(s->user), NULL, path,
							    NULL)) == LIBSSH2_ERROR_EAGAIN) {
		err = rh_ssh_wait(s, deadline, "authenticating");
		if (err < 0)
			return err;
	}
	if (rc == 0) {
		*ok = true;
		return 0;
	}
	if (rc == LIBSSH2_ERROR_FILE || rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) {
		libssh2_session_last_error(s->session, &msg, NULL, 0);
		snprintf(tried + o, tsize - o,
			 "%s%s (cannot use it: %s; a key with a "
			 "passphrase must be loaded into ssh-agent)",
			 o ? ", " : "", path, msg ? msg : "unreadable");
	} else if (rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED ||
		   rc == LIBSSH2_ERROR_PUBLICKEY_UNRECOGNIZED) {
		snprintf(tried + o, tsize - o, "%s%s (refused)", o ? ", " : "", path);
	} else {
		return rh_ssh_error(s, rc, "authenticating");
	}
	return 0;
}

static int ssh_authenticate(struct rh_ssh *s, const struct rh_ssh_opts *opts, double deadline)
{
	char tried[2048] = "";
	char *methods;
	char *def = NULL;
	bool ok = false;
	int err = 0;

	for (;;) {
		methods = libssh2_userauth_list(s->session, s->user, (unsigned)strlen(s->user));
		if (methods || libssh2_userauth_authenticated(s->session))
			break;
		if (libssh2_session_last_errno(s->session) != LIBSSH2_ERROR_EAGAIN) {
			err = rh_ssh_error(s, libssh2_session_last_errno(s->session),
					   "asking which logins it accepts");
			goto done;
		}
		err = rh_ssh_wait(s, deadline, "authenticating");
		if (err < 0)
			goto done;
	}
	if (!methods)
		goto done; /* the server let us in without any ("none") */
	if (!strstr(methods, "publickey")) {
		err = rh_error_set(RH_ERROR,
				   "%s does not accept public keys (it offers: %s); "
				   "rehydra logs in with keys only",
				   s->name, methods);
		goto done;
	}
	if (!opts->no_agent && getenv("SSH_AUTH_SOCK")) {
		err = ssh_auth_agent(s, deadline, tried, sizeof(tried), &ok);
		if (err < 0 || ok)
			goto done;
	}
	if (opts->identity_file) {
		err = ssh_auth_file(s, opts->identity_file, deadline, tried, sizeof(tried), &ok);
		goto check;
	}
	def = home_path(".ssh/id_ed25519");
	if (def) {
		err = ssh_auth_file(s, def, deadline, tried, sizeof(tried), &ok);
		if (err < 0 || ok)
			goto done;
		free(def);
	}
	def = home_path(".ssh/id_rsa");
	if (def)
		err = ssh_auth_file(s, def, deadline, tried, sizeof(tried), &ok);
check:
	if (err < 0 || ok)
		goto done;
	err = rh_error_set(RH_ERROR,
			   "permission denied for %s (publickey): tried %s; add your "
			   "public key to ~/.ssh/authorized_keys of %s on the host, load the "
			   "right key into ssh-agent or name it with the identity file option",
			   s->name, tried[0] ? tried : "no key", s->user);
done:
	free(def);
	return err;
}

/* Sets a method preference with only the names this libssh2 supports:
 * libssh2 1.10 strips unsupported names with an overlapping memcpy. */
static void method_pref(LIBSSH2_SESSION *session, int type, const char *list)
{
	const char **algs = NULL;
	char out[512];
	size_t o = 0;
	int n = libssh2_session_supported_algs(session, type, &algs);

	out[0] = '\0';
	for (const char *p = list; n > 0 && *p;) {
		size_t len = strcspn(p, ",");

		for (int i = 0; i < n; i++)
			if (strlen(algs[i]) == len && memcmp(algs[i], p, len) == 0 &&
			    o + len + 2 < sizeof(out)) {
				if (o)
					out[o++] = ',';
				memcpy(out + o, p, len);
				o += len;
				out[o] = '\0';
				break;
			}
		p += len;
		if (*p == ',')
			p++;
	}
	if (algs)
		libssh2_free(session, (void *)algs);
	if (o)
		libssh2_session_method_pref(session, type, out);
}

int rh_ssh_connect(struct rh_ssh **out, const char *host, unsigned port,
		   const struct rh_ssh_opts *opts)
{
	static const struct rh_ssh_opts defaults = RH_SSH_OPTS_INIT;
	struct kh_file kh;
	struct rh_ssh *s = NULL;
	char *own_user = NULL;
	const char *user;
	char hostkeys[256];
	double deadline;
	int err = 0;
	int rc;

	*out = NULL;
	memset(&kh, 0, sizeof(kh));
	if (!opts)
		opts = &defaults;
	if (!host || !*host || port == 0 || port > 65535) {
		err = rh_error_set(RH_EINVAL, "ssh: bad host or port");
		goto done;
	}
	pthread_once(&ssh_once, ssh_global_init);
	if (ssh_init_rc != 0) {
		err = rh_error_set(RH_ERROR, "cannot initialise libssh2");
		goto done;
	}
	user = opts->user;
	if (!user || !*user) {
		user = own_user = self_passwd_field(false);
		if (!user)
			user = getenv("USER");
	}
	if (!user || !*user) {
		err = rh_error_set(RH_EINVAL, "ssh: no user name for %s; put one in the URL", host);
		goto done;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		err = rh_error_set(RH_ENOMEM, "out of memory connecting to %s", host);
		goto done;
	}
	s->sock = -1;
	s->port = port;
	s->cancel = opts->cancel;
	s->io_timeout_s = opts->io_timeout_s > 0 ? opts->io_timeout_s : SSH_IO_TIMEOUT_S;
	s->host = strdup(host);
	s->user = strdup(user);
	if (!s->host || !s->user ||
	    asprintf(&s->name, strchr(host, ':') ? "%s@[%s]:%u" : "%s@%s:%u", user, host, port) <
		0) {
		s->name = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory connecting to %s", host);
		goto done;
	}
	deadline = rh_clock_mono() +
		   (opts->connect_timeout_s > 0 ? opts->connect_timeout_s : SSH_CONNECT_TIMEOUT_S);
	err = ssh_connect_socket(s, deadline);
	if (err < 0)
		goto done;
	s->session = libssh2_session_init();
	if (!s->session) {
		err = rh_error_set(RH_ENOMEM, "cannot start an ssh session with %s", s->name);
		goto done;
	}
	libssh2_session_set_blocking(s->session, 0);
	err = kh_file_load(&kh, s, opts->known_hosts);
	if (err < 0)
		goto done;
	hostkey_pref(hostkeys, sizeof(hostkeys), &kh, s->host, s->port);
	/* Preferences only order what the server also has; a failure here just
	 * leaves libssh2's defaults. */
	method_pref(s->session, LIBSSH2_METHOD_HOSTKEY, hostkeys);
	method_pref(s->session, LIBSSH2_METHOD_CRYPT_CS, SSH_CIPHERS);
	method_pref(s->session, LIBSSH2_METHOD_CRYPT_SC, SSH_CIPHERS);
	method_pref(s->session, LIBSSH2_METHOD_MAC_CS, SSH_MACS);
	method_pref(s->session, LIBSSH2_METHOD_MAC_SC, SSH_MACS);
	while ((rc = libssh2_session_handshake(s->session, s->sock)) == LIBSSH2_ERROR_EAGAIN) {
		err = rh_ssh_wait(s, deadline, "exchanging keys");
		if (err < 0)
			goto done;
	}
	if (rc != 0) {
		err = rh_ssh_error(s, rc, "exchanging keys");
		goto done;
	}
	err = ssh_check_host_key(s, &kh, opts->accept_new_host_key);
	if (err < 0)
		goto done;
	err = ssh_authenticate(s, opts, deadline);
	if (err < 0)
		goto done;
	*out = s;
	s = NULL;
done:
	kh_file_free(&kh);
	rh_ssh_free(s);
	free(own_user);
	return err;
}

void rh_ssh_free(struct rh_ssh *s)
{
	if (!s)
		return;
	if (s->session) {
		/* Close politely but briefly; a lost peer gets no goodbye. */
		if (s->broken && s->sock >= 0)
			shutdown(s->sock, SHUT_RDWR);
		libssh2_session_set_timeout(s->session, (long)(SSH_CLOSE_TIMEOUT_S * 1000));
		libssh2_session_set_blocking(s->session, 1);
		if (s->xchan)
			libssh2_channel_free(s->xchan);
		if (s->sftp)
			libssh2_sftp_shutdown(s->sftp);
		if (!s->broken)
			libssh2_session_disconnect(s->session, "done");
		libssh2_session_free(s->session);
	}
	if (s->sock >= 0)
		close(s->sock);
	free(s->exts);
	free(s->name);
	free(s->host);
	free(s->user);
	free(s);
}

void rh_ssh_set_cancel(struct rh_ssh *s, struct rh_cancel *cancel)
{
	s->cancel = cancel;
}

const char *rh_ssh_name(const struct rh_ssh *s)
{
	return s->name;
}

const char *rh_ssh_host_fingerprint(const struct rh_ssh *s)
{
	return s->fingerprint;
}

struct _LIBSSH2_SESSION *rh_ssh_session(struct rh_ssh *s)
{
	return s->session;
}

/* ---- SFTP -------------------------------------------------------------- */

int rh_ssh_sftp(struct _LIBSSH2_SFTP **out, struct rh_ssh *s)
{
	int err = 0;

	*out = NULL;
	while (!s->sftp) {
		s->sftp = libssh2_sftp_init(s->session);
		if (s->sftp)
			break;
		if (libssh2_session_last_errno(s->session) != LIBSSH2_ERROR_EAGAIN) {
			err = rh_ssh_error(s, libssh2_session_last_errno(s->session),
					   "starting sftp");
			if (err != RH_ENOMEM && !s->broken)
				rh_error_set(RH_EIO,
					     "%s has no sftp subsystem; enable \"Subsystem "
					     "sftp\" in its sshd_config",
					     s->name);
			goto done;
		}
		err = rh_ssh_wait(s, 0, "starting sftp");
		if (err < 0)
			goto done;
	}
	*out = s->sftp;
done:
	return err;
}

static int xchan_write(struct rh_ssh *s, const uint8_t *buf, size_t len, const char *what)
{
	ssize_t n;
	int err = 0;

	while (len > 0) {
		n = libssh2_channel_write(s->xchan, (const char *)buf, len);
		if (n == LIBSSH2_ERROR_EAGAIN) {
			err = rh_ssh_wait(s, 0, what);
			if (err < 0)
				return err;
			continue;
		}
		if (n < 0)
			return rh_ssh_error(s, (int)n, what);
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int xchan_read(struct rh_ssh *s, uint8_t *buf, size_t len, const char *what)
{
	ssize_t n;
	int err = 0;

	while (len > 0) {
		n = libssh2_channel_read(s->xchan, (char *)buf, len);
		if (n == LIBSSH2_ERROR_EAGAIN) {
			err = rh_ssh_wait(s, 0, what);
			if (err < 0)
				return err;
			continue;
		}
		if (n < 0)
			return rh_ssh_error(s, (int)n, what);
		if (n == 0) {
			s->broken = true;
			return rh_error_set(RH_EIO, "%s closed the sftp channel while %s", s->name,
					    what);
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static uint32_t get_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Reads one SFTP packet from our channel: *out new (type byte first). */
static int xchan_packet(struct rh_ssh *s, uint8_t **out, size_t *len, const char *what)
{
	uint8_t hdr[4];
	uint32_t n;
	int err;

	*out = NULL;
	err = xchan_read(s, hdr, 4, what);
	if (err < 0)
		return err;
	n = get_u32(hdr);
	if (n == 0 || n > SFTP_MAX_PACKET) {
		s->broken = true;
		return rh_error_set(RH_EIO, "%s sent a malformed sftp packet while %s", s->name,
				    what);
	}
	*out = malloc(n);
	if (!*out)
		return rh_error_set(RH_ENOMEM, "out of memory while %s", what);
	err = xchan_read(s, *out, n, what);
	if (err < 0) {
		free(*out);
		*out = NULL;
		return err;
	}
	*len = n;
	return 0;
}

/* Opens our extension channel and learns the server's extensions from its
 * VERSION reply. */
static int xchan_open(struct rh_ssh *s)
{
	static const char what[] = "starting an sftp channel";
	uint8_t init[9] = {0, 0, 0, 5, SFTP_INIT, 0, 0, 0, 3};
	uint8_t *pkt = NULL;
	size_t len = 0;
	size_t off;
	size_t o = 1;
	int err = 0;
	int rc;

	if (s->exts_known)
		return s->xchan ? 0 : RH_EUNSUPPORTED;
	while (!(s->xchan = libssh2_channel_open_session(s->session))) {
		if (libssh2_session_last_errno(s->session) != LIBSSH2_ERROR_EAGAIN) {
			err = rh_ssh_error(s, libssh2_session_last_errno(s->session), what);
			goto done;
		}
		err = rh_ssh_wait(s, 0, what);
		if (err < 0)
			goto done;
	}
	SSH_RETRY(s, rc, err, libssh2_channel_subsystem(s->xchan, "sftp"), what);
	if (err < 0)
		goto done;
	if (rc != 0) {
		err = rh_ssh_error(s, rc, what);
		goto done;
	}
	err = xchan_write(s, init, sizeof(init), what);
	if (err < 0)
		goto done;
	err = xchan_packet(s, &pkt, &len, what);
	if (err < 0)
		goto done;
	if (pkt[0] != SFTP_VERSION || len < 5) {
		err = rh_error_set(RH_EIO, "%s answered sftp init with packet type %u", s->name,
				   pkt[0]);
		goto done;
	}
	s->exts = calloc(1, len + 2);
	if (!s->exts) {
		err = rh_error_set(RH_ENOMEM, "out of memory while %s", what);
		goto done;
	}
	s->exts[0] = '\n';
	/* (string name, string data)* after the version */
	for (off = 5; off + 4 <= len;) {
		uint32_t nl = get_u32(pkt + off);
		uint32_t dl;

		if (nl > len - off - 4)
			break;
		memcpy(s->exts + o, pkt + off + 4, nl);
		o += nl;
		s->exts[o++] = '\n';
		off += 4 + nl;
		if (off + 4 > len)
			break;
		dl = get_u32(pkt + off);
		if (dl > len - off - 4)
			break;
		off += 4 + dl;
	}
	s->exts[o] = '\0';
done:
	free(pkt);
	s->exts_known = err == 0;
	return err;
}

bool rh_ssh_sftp_has_ext(struct rh_ssh *s, const char *name)
{
	char pat[128];

	if (!s->exts_known && xchan_open(s) < 0)
		return false;
	if (!s->exts)
		return false;
	snprintf(pat, sizeof(pat), "\n%s\n", name);
	return strstr(s->exts, pat) != NULL;
}

static int ssh_posix_rename(struct rh_ssh *s, const char *from, const char *to)
{
	static const char ext[] = "posix-rename@openssh.com";
	static const char what[] = "renaming a file";
	size_t fl = strlen(from);
	size_t tl = strlen(to);
	size_t el = sizeof(ext) - 1;
	size_t n = 4 + 1 + 4 + 4 + el + 4 + fl + 4 + tl;
	uint8_t *pkt = NULL;
	uint8_t *reply = NULL;
	size_t rlen = 0;
	uint32_t id = ++s->xid;
	uint8_t *p;
	int err = 0;

	if (fl > SFTP_MAX_PACKET / 4 || tl > SFTP_MAX_PACKET / 4)
		return rh_error_set(RH_EINVAL, "path too long to rename on %s", s->name);
	pkt = malloc(n);
	if (!pkt)
		return rh_error_set(RH_ENOMEM, "out of memory while %s", what);
	p = pkt;
	put_u32(p, (uint32_t)(n - 4));
	p[4] = SFTP_EXTENDED;
	put_u32(p + 5, id);
	p += 9;
	put_u32(p, (uint32_t)el);
	memcpy(p + 4, ext, el);
	p += 4 + el;
	put_u32(p, (uint32_t)fl);
	memcpy(p + 4, from, fl);
	p += 4 + fl;
	put_u32(p, (uint32_t)tl);
	memcpy(p + 4, to, tl);
	err = xchan_write(s, pkt, n, what);
	if (err < 0)
		goto done;
	err = xchan_packet(s, &reply, &rlen, what);
	if (err < 0)
		goto done;
	if (reply[0] != SFTP_STATUS || rlen < 9 || get_u32(reply + 1) != id) {
		s->broken = true;
		err =
		    rh_error_set(RH_EIO, "%s answered a rename with an unexpected packet", s->name);
		goto done;
	}
	if (get_u32(reply + 5) != LIBSSH2_FX_OK) {
		uint32_t code = get_u32(reply + 5);

		err = rh_error_set(RH_EIO, "cannot rename %s to %s on %s: %s", from, to, s->name,
				   code == LIBSSH2_FX_PERMISSION_DENIED ? "permission denied"
				   : code == LIBSSH2_FX_NO_SUCH_FILE	? "no such file"
									: "the server refused");
	}
done:
	free(pkt);
	free(reply);
	return err;
}

int rh_ssh_sftp_rename(struct rh_ssh *s, const char *from, const char *to)
{
	LIBSSH2_SFTP *sftp;
	int err;
	int rc;

	if (rh_ssh_sftp_has_ext(s, "posix-rename@openssh.com"))
		return ssh_posix_rename(s, from, to);
	if (s->broken)
		return rh_error_set(RH_EIO, "connection to %s lost while renaming %s", s->name,
				    from);
	err = rh_ssh_sftp(&sftp, s);
	if (err < 0)
		return err;
	/* Without posix-rename, SFTP v3 rename refuses an existing target. */
	SSH_RETRY(s, rc, err, libssh2_sftp_unlink_ex(sftp, to, (unsigned)strlen(to)),
		  "replacing a file");
	if (err < 0)
		return err;
	SSH_RETRY(
	    s, rc, err,
	    libssh2_sftp_rename_ex(sftp, from, (unsigned)strlen(from), to, (unsigned)strlen(to),
				   LIBSSH2_SFTP_RENAME_OVERWRITE | LIBSSH2_SFTP_RENAME_ATOMIC |
				       LIBSSH2_SFTP_RENAME_NATIVE),
	    "renaming a file");
	if (err < 0)
		return err;
	if (rc != 0)
		return rh_error_set(RH_EIO, "cannot rename %s to %s on %s (sftp status %lu)", from,
				    to, s->name, libssh2_sftp_last_error(sftp));
	return 0;
}

/* ---- exec -------------------------------------------------------------- */

int rh_ssh_quote_argv(char **out, const char *const argv[])
{
	size_t n = 1;
	size_t o = 0;
	char *p;

	*out = NULL;
	if (!argv || !argv[0])
		return rh_error_set(RH_EINVAL, "ssh exec: empty command");
	for (size_t i = 0; argv[i]; i++) {
		n += 3;
		for (const char *c = argv[i]; *c; c++)
			n += *c == '\'' ? 4 : 1;
	}
	p = malloc(n);
	if (!p)
		return rh_error_set(RH_ENOMEM, "out of memory quoting a command");
	for (size_t i = 0; argv[i]; i++) {
		if (i)
			p[o++] = ' ';
		p[o++] = '\'';
		for (const char *c = argv[i]; *c; c++) {
			if (*c == '\'') {
				/* close the quote, an escaped quote, reopen */
				memcpy(p + o, "'\\''", 4);
				o += 4;
			} else {
				p[o++] = *c;
			}
		}
		p[o++] = '\'';
	}
	p[o] = '\0';
	*out = p;
	return 0;
}

void rh_ssh_exec_result_clear(struct rh_ssh_exec_result *res)
{
	if (!res)
		return;
	free(res->exit_signal);
	free(res->out);
	free(res->err);
	memset(res, 0, sizeof(*res));
	res->exit_status = -1;
}

/* Appends up to `max` bytes in total to a growing buffer; drops the rest. */
static int keep_output(char **buf, size_t *len, size_t max, const char *data, size_t n,
		       bool *truncated)
{
	size_t take = n;
	char *nb;

	if (*len + take > max) {
		take = max - *len;
		*truncated = true;
	}
	if (take == 0 && *buf)
		return 0;
	nb = realloc(*buf, *len + take + 1);
	if (!nb)
		return rh_error_set(RH_ENOMEM, "out of memory reading a command's output");
	memcpy(nb + *len, data, take);
	*len += take;
	nb[*len] = '\0';
	*buf = nb;
	return 0;
}

int rh_ssh_exec(struct rh_ssh *s, const char *const argv[], const struct rh_ssh_exec_opts *opts,
		struct rh_ssh_exec_result *res)
{
	static const struct rh_ssh_exec_opts defaults = RH_SSH_EXEC_OPTS_INIT;
	static const char what[] = "running a command";
	LIBSSH2_CHANNEL *ch = NULL;
	char *cmd = NULL;
	char buf[32768];
	size_t max;
	size_t in_off = 0;
	bool eof_sent = false;
	double deadline;
	int err = 0;
	int rc;

	memset(res, 0, sizeof(*res));
	res->exit_status = -1;
	if (!opts)
		opts = &defaults;
	max = opts->max_output ? opts->max_output : SSH_EXEC_MAX_OUTPUT;
	deadline = rh_clock_mono() + (opts->timeout_s > 0 ? opts->timeout_s : SSH_EXEC_TIMEOUT_S);
	err = rh_ssh_quote_argv(&cmd, argv);
	if (err < 0)
		goto done;
	if (s->broken) {
		err = rh_error_set(RH_EIO, "connection to %s is lost; reconnect", s->name);
		goto done;
	}
	while (!(ch = libssh2_channel_open_session(s->session))) {
		if (libssh2_session_last_errno(s->session) != LIBSSH2_ERROR_EAGAIN) {
			err = rh_ssh_error(s, libssh2_session_last_errno(s->session), what);
			goto done;
		}
		err = rh_ssh_wait(s, deadline, what);
		if (err < 0)
			goto done;
	}
	while ((rc = libssh2_channel_exec(ch, cmd)) == LIBSSH2_ERROR_EAGAIN) {
		err = rh_ssh_wait(s, deadline, what);
		if (err < 0)
			goto done;
	}
	if (rc != 0) {
		err = rh_ssh_error(s, rc, "starting a command");
		goto done;
	}
	for (;;) {
		bool progress = false;
		ssize_t n;

		if (!eof_sent && in_off < opts->stdin_len) {
			n = libssh2_channel_write(ch, (const char *)opts->stdin_data + in_off,
						  opts->stdin_len - in_off);
			if (n > 0) {
				in_off += (size_t)n;
				progress = true;
			} else if (n < 0 && n != LIBSSH2_ERROR_EAGAIN) {
				err = rh_ssh_error(s, (int)n, "sending a command's input");
				goto done;
			}
		}
		if (!eof_sent && in_off >= opts->stdin_len) {
			rc = libssh2_channel_send_eof(ch);
			if (rc == 0)
				eof_sent = true;
			else if (rc != LIBSSH2_ERROR_EAGAIN) {
				err = rh_ssh_error(s, rc, what);
				goto done;
			}
		}
		for (int stream = 0; stream < 2; stream++) {
			n = libssh2_channel_read_ex(ch, stream ? SSH_EXTENDED_DATA_STDERR : 0, buf,
						    sizeof(buf));
			if (n > 0) {
				progress = true;
				err = stream ? keep_output(&res->err, &res->err_len, max, buf,
							   (size_t)n, &res->truncated)
					     : keep_output(&res->out, &res->out_len, max, buf,
							   (size_t)n, &res->truncated);
				if (err < 0)
					goto done;
			} else if (n < 0 && n != LIBSSH2_ERROR_EAGAIN) {
				err = rh_ssh_error(s, (int)n, "reading a command's output");
				goto done;
			}
		}
		if (libssh2_channel_eof(ch) && !progress)
			break;
		if (!progress) {
			err = rh_ssh_wait(s, deadline, what);
			if (err < 0)
				goto done;
		}
	}
	while ((rc = libssh2_channel_close(ch)) == LIBSSH2_ERROR_EAGAIN) {
		err = rh_ssh_wait(s, deadline, what);
		if (err < 0)
			goto done;
	}
	while ((rc = libssh2_channel_wait_closed(ch)) == LIBSSH2_ERROR_EAGAIN) {
		err = rh_ssh_wait(s, deadline, what);
		if (err < 0)
			goto done;
	}
	{
		char *sig = NULL;
		size_t siglen = 0;

		libssh2_channel_get_exit_signal(ch, &sig, &siglen, NULL, NULL, NULL, NULL);
		if (sig) {
			res->exit_signal = strndup(sig, siglen);
			libssh2_free(s->session, sig);
		} else {
			res->exit_status = libssh2_channel_get_exit_status(ch);
		}
	}
done:
	if (err == RH_ETIMEOUT)
		rh_error_set(RH_ETIMEOUT, "command on %s did not finish within %.0f s", s->name,
			     opts->timeout_s > 0 ? opts->timeout_s : SSH_EXEC_TIMEOUT_S);
	if (ch) {
		/* Leave the session usable after a failed command: the channel
		 * goes, the link stays. Quietly: the error set above stands. */
		double d = rh_clock_mono() + SSH_CLOSE_TIMEOUT_S;

		if (err < 0 && !s->broken)
			while (libssh2_channel_close(ch) == LIBSSH2_ERROR_EAGAIN &&
			       ssh_settle(s, d))
				;
		while (libssh2_channel_free(ch) == LIBSSH2_ERROR_EAGAIN && ssh_settle(s, d))
			;
	}
	free(cmd);
	return err;
}
