/*
 * sshd_test.h - a private OpenSSH server for the SSH and SFTP unit tests.
 *
 * The tests need to kill the server in the middle of a transfer and start
 * it again on the same port, so they run it from C: keys from ssh-keygen,
 * a config on a free 127.0.0.1 (and ::1) port, /usr/sbin/sshd -D -e spawned
 * without a shell. Everything lives in one temporary directory. Aborts on
 * setup failures: a test cannot go on without its server.
 */
#ifndef RH_SSHD_TEST_H
#define RH_SSHD_TEST_H

#include "clock.h"
#include "process.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

struct sshd_test {
	char *dir;
	char host_key[512];
	char host_key2[512];  /* another host key, for "changed key" */
	char user_key[512];
	char user_key2[512];  /* not authorized */
	char known_hosts[512];
	char config[512];
	char log[512];
	unsigned port;
	struct rh_child child;
};

static void sshd_test_run(const char *const argv[], const char *out)
{
	struct rh_spawn_opts o = { argv, NULL, NULL, out, NULL, NULL };
	struct rh_child c;

	if (rh_spawn(&c, &o) != 0 || rh_child_wait(&c, rh_clock_mono() + 60, NULL) != 0 ||
	    !WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0) {
		fprintf(stderr, "sshd_test: %s failed\n", argv[0]);
		abort();
	}
	rh_child_release(&c);
}

static void sshd_test_keygen(const char *path, const char *comment)
{
	const char *argv[] = { "/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
			       comment, "-f", path, NULL };

	sshd_test_run(argv, NULL);
}

/* Reads the first line of a file into buf (no newline). */
__attribute__((unused)) static void sshd_test_read_line(const char *path, char *buf,
							size_t size)
{
	FILE *f = fopen(path, "r");

	if (!f || !fgets(buf, (int)size, f)) {
		perror(path);
		abort();
	}
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
}

/* "SHA256:..." of a public key file, from ssh-keygen -l. */
__attribute__((unused)) static void sshd_test_fingerprint(const char *pub, char *out, size_t size)
{
	char tmp[600];
	char line[1024];
	const char *argv[] = { "/usr/bin/ssh-keygen", "-l", "-E", "sha256", "-f", pub, NULL };
	char *p;

	snprintf(tmp, sizeof(tmp), "%s.fp", pub);
	sshd_test_run(argv, tmp);
	sshd_test_read_line(tmp, line, sizeof(line));
	p = strstr(line, "SHA256:");
	if (!p)
		abort();
	p[strcspn(p, " ")] = '\0';
	snprintf(out, size, "%s", p);
}

/* A known_hosts line for the server: "[127.0.0.1]:PORT <type> <base64>". */
static void sshd_test_write_known_hosts(struct sshd_test *t, const char *path, const char *pubkey,
					const char *prefix)
{
	char pub[1024];
	char *sp;
	FILE *f;

	sshd_test_read_line(pubkey, pub, sizeof(pub));
	sp = strchr(pub, ' ');
	if (sp && (sp = strchr(sp + 1, ' ')) != NULL)
		*sp = '\0'; /* drop the comment */
	f = fopen(path, "w");
	if (!f)
		abort();
	fprintf(f, "%s[127.0.0.1]:%u %s\n[::1]:%u %s\n", prefix ? prefix : "", t->port, pub,
		t->port, pub);
	fclose(f);
}

static unsigned sshd_test_free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		abort();
	close(fd);
	return ntohs(a.sin_port);
}

/* True once the server sends its banner. */
static bool sshd_test_ready(unsigned port)
{
	struct sockaddr_in a;
	char buf[8] = "";
	struct timeval tv = { 1, 0 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)port);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	     recv(fd, buf, 4, MSG_WAITALL) == 4 && memcmp(buf, "SSH-", 4) == 0;
	close(fd);
	return ok;
}

static void sshd_test_write_config(struct sshd_test *t)
{
	FILE *f = fopen(t->config, "w");

	if (!f)
		abort();
	fprintf(f,
		"ListenAddress 127.0.0.1:%u\n"
		"ListenAddress [::1]:%u\n"
		"HostKey %s\n"
		"AuthorizedKeysFile %s/authorized_keys\n"
		"PidFile %s/sshd.pid\n"
		"Subsystem sftp internal-sftp\n"
		/* keep the machine's ~/.bashrc (pyenv init, ...) out of remote
		 * exec: bash skips it for sshd-started shells when SHLVL >= 2 */
		"SetEnv SHLVL=2\n"
		"StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
		"PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
		"MaxStartups 64:30:128\nMaxSessions 64\nLogLevel ERROR\n",
		t->port, t->port, t->host_key, t->dir, t->dir);
	fclose(f);
}

/* Starts (or restarts) sshd with t's config; aborts if it never answers. */
/* sshd dies with the test (setpriv --pdeathsig), even when an assertion
 * or a sanitizer aborts it before the teardown. */
static int sshd_test_spawn(struct sshd_test *t)
{
	const char *argv[] = { "/usr/bin/setpriv", "--pdeathsig", "KILL", "--",
			       "/usr/sbin/sshd", "-f", t->config, "-D", "-e", NULL };
	struct rh_spawn_opts o = { argv, NULL, NULL, NULL, t->log, NULL };

	if (access(argv[0], X_OK) != 0)
		o.argv = argv + 4;
	return rh_spawn(&t->child, &o);
}

static void sshd_test_launch(struct sshd_test *t)
{
	if (sshd_test_spawn(t) != 0)
		abort();
	for (int i = 0; i < 200; i++) {
		if (sshd_test_ready(t->port))
			return;
		if (!rh_child_running(&t->child))
			break;
		usleep(50000);
	}
	fprintf(stderr, "sshd_test: sshd did not start, see %s\n", t->log);
	abort();
}

static void sshd_test_start(struct sshd_test *t, const char *dir)
{
	char auth[600];
	char pub[600];
	char line[1024];
	FILE *f;

	memset(t, 0, sizeof(*t));
	t->dir = strdup(dir);
	snprintf(t->host_key, sizeof(t->host_key), "%s/host_ed25519", dir);
	snprintf(t->host_key2, sizeof(t->host_key2), "%s/host2_ed25519", dir);
	snprintf(t->user_key, sizeof(t->user_key), "%s/user_ed25519", dir);
	snprintf(t->user_key2, sizeof(t->user_key2), "%s/user2_ed25519", dir);
	snprintf(t->known_hosts, sizeof(t->known_hosts), "%s/known_hosts", dir);
	snprintf(t->config, sizeof(t->config), "%s/sshd_config", dir);
	snprintf(t->log, sizeof(t->log), "%s/sshd.log", dir);
	sshd_test_keygen(t->host_key, "rh-test-host");
	sshd_test_keygen(t->host_key2, "rh-test-host2");
	sshd_test_keygen(t->user_key, "rh-test-user");
	sshd_test_keygen(t->user_key2, "rh-test-user2");
	snprintf(pub, sizeof(pub), "%s.pub", t->user_key);
	snprintf(auth, sizeof(auth), "%s/authorized_keys", dir);
	sshd_test_read_line(pub, line, sizeof(line));
	f = fopen(auth, "w");
	if (!f)
		abort();
	fprintf(f, "%s\n", line);
	fclose(f);
	/* sshd refuses to run without its privilege separation directory;
	 * the package creates it at boot, a container may not have it. */
	if (mkdir("/run/sshd", 0755) != 0 && errno != EEXIST)
		perror("/run/sshd");
	for (int tries = 0; tries < 5; tries++) {
		t->port = sshd_test_free_port();
		sshd_test_write_config(t);
		if (tries > 0)
			rh_child_release(&t->child);
		if (sshd_test_spawn(t) != 0)
			abort();
		for (int i = 0; i < 200 && rh_child_running(&t->child); i++) {
			if (sshd_test_ready(t->port))
				goto up;
			usleep(50000);
		}
		rh_child_stop(&t->child, 1);
	}
	fprintf(stderr, "sshd_test: sshd did not start, see %s\n", t->log);
	abort();
up:
	snprintf(pub, sizeof(pub), "%s.pub", t->host_key);
	sshd_test_write_known_hosts(t, t->known_hosts, pub, NULL);
}

/* Kills the server and every process it forked (each connection's child
 * is in a session of its own, so the process group is not enough). */
static void sshd_test_kill(struct sshd_test *t)
{
	pid_t pids[4096];
	size_t n = 0;
	bool more = true;

	if (!t->child.pid)
		return;
	pids[n++] = t->child.pid;
	while (more) {
		DIR *d = opendir("/proc");
		struct dirent *e;

		more = false;
		while (d && (e = readdir(d)) != NULL) {
			char path[300];
			char buf[512];
			FILE *f;
			char *rp;
			long ppid;
			pid_t pid = (pid_t)strtol(e->d_name, NULL, 10);
			bool known = false;

			if (pid <= 0)
				continue;
			snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
			f = fopen(path, "r");
			if (!f)
				continue;
			rp = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
			fclose(f);
			if (!rp || sscanf(rp + 2, "%*c %ld", &ppid) != 1)
				continue;
			for (size_t i = 0; i < n; i++)
				known = known || pids[i] == pid;
			for (size_t i = 0; i < n && !known; i++)
				if (pids[i] == (pid_t)ppid && n < 4096) {
					pids[n++] = pid;
					more = true;
					break;
				}
		}
		if (d)
			closedir(d);
	}
	for (size_t i = n; i-- > 0;)
		kill(pids[i], SIGKILL);
	rh_child_stop(&t->child, 0);
	rh_child_release(&t->child);
	memset(&t->child, 0, sizeof(t->child));
}

__attribute__((unused)) static void sshd_test_restart(struct sshd_test *t)
{
	sshd_test_kill(t);
	sshd_test_launch(t);
}

static void sshd_test_stop(struct sshd_test *t)
{
	sshd_test_kill(t);
	free(t->dir);
	t->dir = NULL;
}

#endif
