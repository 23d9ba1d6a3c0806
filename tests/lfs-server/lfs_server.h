/*
 * lfs_server.h - starts and stops tests/lfs-server/server.js from a C test
 * (header-only: each test executable includes it once).
 *
 * The server is spawned with posix_spawnp and an argv (no shell), prints
 * its port on the first stdout line, and is stopped by pid. Faults are set
 * at run time through POST /_control, sent with libcurl.
 */
#ifndef RH_TEST_LFS_SERVER_H
#define RH_TEST_LFS_SERVER_H

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct lfs_server {
	pid_t pid;
	int port;
	char url[128]; /* "http://127.0.0.1:PORT" */
};

/* Starts the server storing objects in `dir`, requiring `token` (NULL: no
 * auth). Returns 0, or -1 (node missing or the server did not start). */
__attribute__((unused)) static int lfs_server_start(struct lfs_server *s, const char *dir,
						     const char *token)
{
	const char *src = getenv("RH_SRC");
	char script[4096];
	char line[64] = "";
	const char *argv[8];
	posix_spawn_file_actions_t fa;
	int pfd[2];
	size_t n = 0;
	int argc = 0;
	int rc;

	memset(s, 0, sizeof(*s));
	snprintf(script, sizeof(script), "%s/tests/lfs-server/server.js", src ? src : ".");
	argv[argc++] = "node";
	argv[argc++] = script;
	argv[argc++] = "--dir";
	argv[argc++] = dir;
	if (token) {
		argv[argc++] = "--token";
		argv[argc++] = token;
	}
	argv[argc] = NULL;
	if (pipe(pfd) != 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_addclose(&fa, pfd[0]);
	if (!getenv("RH_TEST_VERBOSE"))
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	rc = posix_spawnp(&s->pid, "node", &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	if (rc != 0) {
		close(pfd[0]);
		return -1;
	}
	while (n < sizeof(line) - 1) {
		ssize_t r = read(pfd[0], line + n, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || line[n] == '\n')
			break;
		n++;
	}
	line[n] = '\0';
	close(pfd[0]);
	s->port = (int)strtol(line, NULL, 10);
	if (s->port <= 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
		return -1;
	}
	snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
	return 0;
}

__attribute__((unused)) static void lfs_server_stop(struct lfs_server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	s->pid = 0;
}

struct lfs_server_buf {
	char buf[1024];
	size_t n;
};

static size_t lfs_server_sink(char *d, size_t size, size_t nmemb, void *user)
{
	struct lfs_server_buf *b = user;
	size_t n = size * nmemb;

	if (b && b->n + n < sizeof(b->buf)) {
		memcpy(b->buf + b->n, d, n);
		b->n += n;
		b->buf[b->n] = '\0';
	}
	return n;
}

/* POSTs `json` to /_control (NULL: GETs /_stats into out[outlen]).
 * Returns the HTTP status. */
__attribute__((unused)) static long lfs_server_call(struct lfs_server *s, const char *json,
						     char *out, size_t outlen)
{
	struct lfs_server_buf b = { "", 0 };
	char url[256];
	long status = 0;
	CURL *h = curl_easy_init();

	if (!h)
		return 0;
	snprintf(url, sizeof(url), "%s/%s", s->url, json ? "_control" : "_stats");
	curl_easy_setopt(h, CURLOPT_URL, url);
	if (json)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, lfs_server_sink);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	if (out && outlen) {
		snprintf(out, outlen, "%s", b.buf);
	}
	return status;
}

/* The server's counter `key` from /_stats, or -1. */
__attribute__((unused)) static long lfs_server_stat(struct lfs_server *s, const char *key)
{
	char out[1024];
	char pat[64];
	const char *p;

	if (lfs_server_call(s, NULL, out, sizeof(out)) != 200)
		return -1;
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(out, pat);
	return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

#endif
