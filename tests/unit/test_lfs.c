/*
 * test_lfs.c - Git LFS: pointer parsing, URL handling, batch responses, and
 * the batch client against tests/lfs-server/server.js (a real HTTP server
 * speaking the batch API) with injected 429/503, corrupt bytes, a wrong
 * token and a missing object.
 */
#include "testlib.h"

#include "../lfs-server/lfs_server.h"

#include "cache.h"
#include "cancel.h"
#include "error.h"
#include "fsutil.h"
#include "lfs.h"
#include "sha256.h"

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void show(const char *what)
{
	if (getenv("RH_TEST_VERBOSE"))
		fprintf(stderr, "\n  [%s] %s", what, rh_error_last());
}

static bool has(const char *needle)
{
	if (strstr(rh_error_last(), needle))
		return true;
	fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", rh_error_last(), needle);
	return false;
}

#define OID_A "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393"

static void test_lfs__pointer_parse(void)
{
	static const struct {
		const char *text;
		int rc;
		const char *needle;
	} cases[] = {
		{ "version https://git-lfs.github.com/spec/v1\noid sha256:" OID_A "\nsize 12345\n",
		  0, NULL },
		{ "version https://hawser.github.com/spec/v1\noid sha256:" OID_A "\nsize 0\n", 0,
		  NULL },
		{ "version https://git-lfs.github.com/spec/v1\nsize 1\noid sha256:" OID_A "\n",
		  RH_EINVAL, "not sorted" },
		{ "version https://git-lfs.github.com/spec/v1\noid sha256:" OID_A "\nsize 01\n",
		  RH_EINVAL, "decimal" },
		{ "version https://git-lfs.github.com/spec/v1\noid sha256:" OID_A "\nsize 1",
		  RH_EINVAL, "newline" },
		{ "version https://git-lfs.github.com/spec/v1\noid sha256:ABC\nsize 1\n",
		  RH_EINVAL, "hex digits" },
		{ "version https://git-lfs.github.com/spec/v1\nsize 1\n", RH_EINVAL, "lacks oid" },
		{ "oid sha256:" OID_A "\nversion https://git-lfs.github.com/spec/v1\n", RH_EINVAL,
		  "version" },
		{ "version https://git-lfs.github.com/spec/v1\noid sha256:" OID_A
		  "\nsize 99999999999999999999\n", RH_EINVAL, "decimal" },
		{ "version https://git-lfs.github.com/spec/v1\nfoo bar\noid sha256:" OID_A
		  "\nsize 1\n", RH_EINVAL, "unknown key" },
	};
	struct rh_lfs_pointer p;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = rh_lfs_pointer_parse(&p, cases[i].text, strlen(cases[i].text));

		CU_ASSERT_EQUAL(rc, cases[i].rc);
		CU_ASSERT(rh_lfs_pointer_detect(cases[i].text, strlen(cases[i].text)) ||
			  cases[i].text[0] == 'o');
		if (cases[i].needle)
			CU_ASSERT(has(cases[i].needle));
		if (rc == 0)
			CU_ASSERT_STRING_EQUAL(p.oid, OID_A);
	}
	CU_ASSERT_EQUAL(rh_lfs_pointer_parse(&p, cases[0].text, strlen(cases[0].text)), 0);
	CU_ASSERT_EQUAL(p.size, 12345);
	CU_ASSERT_FALSE(rh_lfs_pointer_detect("hello", 5));
}

#define EXPECT "https://git.example.com/org/models.git/info/lfs"

static void test_lfs__urls(void)
{
	static const struct {
		const char *remote;
		const char *endpoint; /* NULL: none */
	} ep[] = {
		{ "https://git.example.com/org/models", EXPECT },
		{ "https://git.example.com/org/models.git", EXPECT },
		{ "https://git.example.com/org/models.git/", EXPECT },
		{ "http://u:p@h:8080/r", "http://u:p@h:8080/r.git/info/lfs" },
		{ "ssh://git@git.example.com:2222/org/models.git", EXPECT },
		{ "git@git.example.com:org/models", EXPECT },
		{ "file:///srv/models.git", NULL },
		{ "/srv/models.git", NULL },
	};
	char *bare, *user, *pass, *s;

	for (size_t i = 0; i < sizeof(ep) / sizeof(ep[0]); i++) {
		s = rh_lfs_endpoint_for_remote(ep[i].remote);
		if (ep[i].endpoint) {
			CU_ASSERT_PTR_NOT_NULL(s);
			if (s && strcmp(s, ep[i].endpoint) != 0)
				fprintf(stderr, "\n  %s -> %s\n", ep[i].remote, s);
			CU_ASSERT(s && strcmp(s, ep[i].endpoint) == 0);
		} else {
			CU_ASSERT_PTR_NULL(s);
		}
		free(s);
	}
	CU_ASSERT_EQUAL(rh_lfs_url_split("https://al%40ice:s3%3Acret@h.example/x?y=1", &bare,
					 &user, &pass), 0);
	CU_ASSERT_STRING_EQUAL(bare, "https://h.example/x?y=1");
	CU_ASSERT_STRING_EQUAL(user, "al@ice");
	CU_ASSERT_STRING_EQUAL(pass, "s3:cret");
	free(bare);
	free(user);
	free(pass);
	CU_ASSERT_EQUAL(rh_lfs_url_split("ssh://git@h/x", &bare, &user, &pass), 0);
	CU_ASSERT_STRING_EQUAL(user, "git");
	CU_ASSERT_PTR_NULL(pass);
	free(bare);
	free(user);
	free(pass);
	/* An '@' in the path is not userinfo. */
	s = rh_lfs_url_redact("https://h/a@b");
	CU_ASSERT_STRING_EQUAL(s, "https://h/a@b");
	free(s);
	s = rh_lfs_url_redact("/plain/path");
	CU_ASSERT_STRING_EQUAL(s, "/plain/path");
	free(s);
}

static void test_lfs__batch_request(void)
{
	struct rh_lfs_pointer p = { OID_A, 42 };
	char *body = rh_lfs_batch_request(&p, "refs/tags/m/1");
	json_t *j = json_loads(body, 0, NULL);

	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "operation")), "download");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_array_get(json_object_get(j, "transfers"),
								0)), "basic");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
		json_array_get(json_object_get(j, "objects"), 0), "oid")), OID_A);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(
		json_array_get(json_object_get(j, "objects"), 0), "size")), 42);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(j, "ref"),
								 "name")), "refs/tags/m/1");
	json_decref(j);
	free(body);
}

static void test_lfs__batch_parse(void)
{
	static const struct {
		const char *body;
		int rc;
		const char *needle;
	} cases[] = {
		{ "{\"transfer\":\"basic\",\"objects\":[{\"oid\":\"" OID_A "\",\"size\":42,"
		  "\"actions\":{\"download\":{\"href\":\"https://s/x\",\"header\":"
		  "{\"Authorization\":\"Bearer t\"},\"expires_in\":60}}}]}", 0, NULL },
		{ "{\"objects\":[{\"oid\":\"" OID_A "\",\"size\":42,\"actions\":{\"download\":"
		  "{\"href\":\"http://s/x\",\"expires_at\":\"2099-01-01T00:00:00Z\"}}}]}", 0,
		  NULL },
		{ "{\"objects\":[{\"oid\":\"" OID_A "\",\"size\":42,\"error\":{\"code\":404,"
		  "\"message\":\"Object does not exist\"}}]}", RH_ENOTFOUND, "does not exist" },
		{ "{\"objects\":[{\"oid\":\"" OID_A "\",\"size\":42,\"error\":{\"code\":410,"
		  "\"message\":\"gone\"}}]}", RH_ENOTFOUND, "410" },
		{ "{\"objects\":[{\"oid\":\"" OID_A "\",\"size\":42,\"error\":{\"code\":422,"
		  "\"message\":\"bad\"}}]}", RH_EVERIFY, "invalid" },
		{ "{\"objects\":[{\"oid\":\"" OID_A "\",\"size\":42,\"error\":{\"code\":500}}]}",
		  RH_EIO, "500" },
		{ "{\"objects\":[{\"oid\":\"" OID_A "\",\"size\":43,\"actions\":{\"download\":"
		  "{\"href\":\"http://s/x\"}}}]}", RH_EVERIFY, "43 bytes" },
		{ "{\"objects\":[{\"oid\":\"" OID_A "\",\"size\":42}]}", RH_EINVAL,
		  "no download action" },
		{ "{\"objects\":[]}", RH_EINVAL, "does not mention" },
		{ "{\"transfer\":\"tus\",\"objects\":[]}", RH_EINVAL, "\"tus\"" },
		{ "not json", RH_EINVAL, "not a JSON object" },
		{ "{\"objects\":[{\"oid\":\"" OID_A "\",\"size\":42,\"actions\":{\"download\":"
		  "{\"href\":\"file:///etc/passwd\"}}}]}", RH_EINVAL, "not an http(s) URL" },
		{ "{\"objects\":[{\"oid\":\"" OID_A "\",\"size\":42,\"actions\":{\"download\":"
		  "{\"href\":\"http://s/x\",\"header\":{\"X\":\"a\\r\\nEvil: 1\"}}}}]}", RH_EINVAL,
		  "not a valid header" },
	};
	struct rh_lfs_pointer p = { OID_A, 42 };
	struct rh_lfs_action a;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = rh_lfs_batch_parse(&a, cases[i].body, strlen(cases[i].body), &p,
					    "http://lfs.example/info/lfs");

		if (rc != cases[i].rc)
			fprintf(stderr, "\n  case %zu: rc %d: %s\n", i, rc, rh_error_last());
		CU_ASSERT_EQUAL(rc, cases[i].rc);
		if (rc < 0) {
			CU_ASSERT_PTR_NULL(a.href);
			CU_ASSERT(has(OID_A) || i == 9 || i == 10);
			CU_ASSERT(has("http://lfs.example/info/lfs"));
			CU_ASSERT(has(cases[i].needle));
			show("batch");
		}
		rh_lfs_action_clear(&a);
	}
	CU_ASSERT_EQUAL(rh_lfs_batch_parse(&a, cases[0].body, strlen(cases[0].body), &p, "s"), 0);
	CU_ASSERT_STRING_EQUAL(a.href, "https://s/x");
	CU_ASSERT_STRING_EQUAL(a.headers[0], "Authorization: Bearer t");
	CU_ASSERT_PTR_NULL(a.headers[1]);
	CU_ASSERT(a.expires_at > (double)time(NULL) + 50 && a.expires_at < (double)time(NULL) + 70);
	rh_lfs_action_clear(&a);
	CU_ASSERT_EQUAL(rh_lfs_batch_parse(&a, cases[1].body, strlen(cases[1].body), &p, "s"), 0);
	CU_ASSERT_DOUBLE_EQUAL(a.expires_at, 4070908800.0, 1.0);
	rh_lfs_action_clear(&a);
}

static void test_lfs__retry_after(void)
{
	double now = 1445412480.0; /* Wed, 21 Oct 2015 07:28:00 GMT */

	CU_ASSERT_DOUBLE_EQUAL(rh_lfs_retry_after("5", now), 5.0, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(rh_lfs_retry_after(" 2 ", now), 2.0, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(rh_lfs_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), 30.0,
			       1e-9);
	CU_ASSERT_DOUBLE_EQUAL(rh_lfs_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), 0.0,
			       1e-9);
	CU_ASSERT(rh_lfs_retry_after("soon", now) < 0);
	CU_ASSERT(rh_lfs_retry_after(NULL, now) < 0);
	CU_ASSERT(rh_lfs_retry_after("", now) < 0);
	CU_ASSERT(rh_lfs_retry_after("-3", now) < 0);
}

/* ---- against the test server ------------------------------------------------- */

struct srv {
	char *tmp;
	char *store;
	struct lfs_server s;
	char endpoint[256];
	struct rh_lfs_pointer p;
	unsigned char *data;
	size_t len;
};

static unsigned char *pattern(size_t len, unsigned seed)
{
	unsigned char *p = malloc(len ? len : 1);
	uint32_t x = seed * 2654435761u + 7;

	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (unsigned char)(x >> 16);
	}
	return p;
}

/* Puts `data` into the server's store for repo "reg", as a push would. */
static void srv_put(struct srv *v, const unsigned char *data, size_t len, char oid[65])
{
	char *path = NULL;
	char *dir;
	FILE *fp;

	rh_sha256_buf_hex(oid, data, len);
	CU_ASSERT_FATAL(asprintf(&path, "%s/reg/%.2s/%.2s/%s", v->store, oid, oid + 2, oid) > 0);
	dir = strdup(path);
	*strrchr(dir, '/') = '\0';
	CU_ASSERT_EQUAL_FATAL(rh_fs_mkdir_p(dir), 0);
	fp = fopen(path, "wb");
	CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
	CU_ASSERT_EQUAL(fwrite(data, 1, len, fp), len);
	fclose(fp);
	free(dir);
	free(path);
}

static bool srv_start(struct srv *v, const char *token)
{
	memset(v, 0, sizeof(*v));
	v->tmp = rh_test_tmpdir();
	v->store = rh_test_path(v->tmp, "store");
	if (lfs_server_start(&v->s, v->store, token) != 0) {
		CU_FAIL("cannot start tests/lfs-server/server.js (is node installed?)");
		return false;
	}
	snprintf(v->endpoint, sizeof(v->endpoint), "%s/reg/info/lfs", v->s.url);
	v->len = 300 * 1024 + 17;
	v->data = pattern(v->len, 3);
	srv_put(v, v->data, v->len, v->p.oid);
	v->p.size = v->len;
	return true;
}

static void srv_stop(struct srv *v)
{
	lfs_server_stop(&v->s);
	rh_test_rm_rf(v->tmp);
	free(v->store);
	free(v->tmp);
	free(v->data);
}

/* Fetches v->p with `endpoint`; returns rc, and checks the bytes on 0. */
static int fetch(struct srv *v, const char *endpoint, const struct rh_lfs_fetch_opts *fo)
{
	struct rh_lfs_remote *rm = NULL;
	char *path = rh_test_path(v->tmp, "dl");
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	int rc;

	CU_ASSERT_FATAL(fd >= 0);
	rc = rh_lfs_remote_new(&rm, endpoint);
	if (rc == 0)
		rc = rh_lfs_fetch(rm, &v->p, fd, fo);
	if (rc == 0) {
		char hex[65];
		uint64_t size;

		CU_ASSERT_EQUAL(rh_sha256_file_hex(hex, &size, path), 0);
		CU_ASSERT_STRING_EQUAL(hex, v->p.oid);
		CU_ASSERT_EQUAL(size, v->len);
	}
	rh_lfs_remote_free(rm);
	close(fd);
	unlink(path);
	free(path);
	return rc;
}

static void test_lfs__fetch(void)
{
	struct rh_lfs_fetch_opts fo = RH_LFS_FETCH_OPTS_INIT;
	struct rh_lfs_pointer missing;
	struct srv v;
	char ep[300];
	if (!srv_start(&v, "tok3n"))
		return;
	fo.backoff_s = 0.05;
	fo.ref = "refs/tags/m/1";
	/* Bearer from the environment. */
	setenv("REHYDRA_LFS_TOKEN", "tok3n", 1);
	CU_ASSERT_EQUAL(fetch(&v, v.endpoint, &fo), 0);
	CU_ASSERT_EQUAL(lfs_server_stat(&v.s, "batch"), 1);
	CU_ASSERT_EQUAL(lfs_server_stat(&v.s, "get"), 1);
	/* Basic from the URL's userinfo wins over the environment. */
	setenv("REHYDRA_LFS_TOKEN", "wrong", 1);
	snprintf(ep, sizeof(ep), "http://x:tok3n@127.0.0.1:%d/reg/info/lfs", v.s.port);
	CU_ASSERT_EQUAL(fetch(&v, ep, &fo), 0);

	/* A wrong token: 401, a clear message, the token never shown. */
	CU_ASSERT_EQUAL(fetch(&v, v.endpoint, &fo), RH_EIO);
	show("401");
	CU_ASSERT(has("401"));
	CU_ASSERT(has(v.endpoint));
	CU_ASSERT(has("REHYDRA_LFS_TOKEN"));
	CU_ASSERT_PTR_NULL(strstr(rh_error_last(), "wrong"));
	snprintf(ep, sizeof(ep), "http://x:s3cr3t@127.0.0.1:%d/reg/info/lfs", v.s.port);
	CU_ASSERT_EQUAL(fetch(&v, ep, &fo), RH_EIO);
	CU_ASSERT_PTR_NULL(strstr(rh_error_last(), "s3cr3t"));
	unsetenv("REHYDRA_LFS_TOKEN");
	CU_ASSERT_EQUAL(fetch(&v, v.endpoint, &fo), RH_EIO);
	CU_ASSERT(has("REHYDRA_LFS_TOKEN"));
	setenv("REHYDRA_LFS_TOKEN", "tok3n", 1);

	/* 503 twice on the batch, with Retry-After: retried, then it works. */
	CU_ASSERT_EQUAL(lfs_server_call(&v.s, "{\"fail_batch\":2,\"fail_status\":503,"
					"\"retry_after\":\"0\"}", NULL, 0), 200);
	{
		long before = lfs_server_stat(&v.s, "batch");

		CU_ASSERT_EQUAL(fetch(&v, v.endpoint, &fo), 0);
		CU_ASSERT_EQUAL(lfs_server_stat(&v.s, "batch"), before + 3);
	}
	/* 429 on the download, without Retry-After: backoff, then it works. */
	CU_ASSERT_EQUAL(lfs_server_call(&v.s, "{\"fail_get\":2,\"fail_status\":429,"
					"\"retry_after\":\"\"}", NULL, 0), 200);
	{
		long before = lfs_server_stat(&v.s, "get");

		CU_ASSERT_EQUAL(fetch(&v, v.endpoint, &fo), 0);
		CU_ASSERT_EQUAL(lfs_server_stat(&v.s, "get"), before + 3);
	}
	/* Bounded: more failures than attempts give up with the status. */
	fo.attempts = 3;
	CU_ASSERT_EQUAL(lfs_server_call(&v.s, "{\"fail_batch\":5,\"fail_status\":503}", NULL, 0),
			200);
	CU_ASSERT_EQUAL(fetch(&v, v.endpoint, &fo), RH_EIO);
	show("gave up");
	CU_ASSERT(has("(gave up after 3 attempts)"));
	CU_ASSERT(has("503"));
	CU_ASSERT_EQUAL(lfs_server_call(&v.s, "{\"fail_batch\":0}", NULL, 0), 200);
	fo.attempts = 0;

	/* Corrupt bytes of the right length: rejected by the hash. */
	CU_ASSERT_EQUAL(lfs_server_call(&v.s, "{\"corrupt\":true}", NULL, 0), 200);
	CU_ASSERT_EQUAL(fetch(&v, v.endpoint, &fo), RH_EVERIFY);
	show("corrupt");
	CU_ASSERT(has(v.p.oid));
	CU_ASSERT(has("corrupt"));
	CU_ASSERT_EQUAL(lfs_server_call(&v.s, "{\"corrupt\":false}", NULL, 0), 200);

	/* An object the server does not have. */
	missing = v.p;
	missing.oid[0] = missing.oid[0] == 'a' ? 'b' : 'a';
	{
		struct rh_lfs_remote *rm = NULL;
		int fd = open("/dev/null", O_WRONLY);

		CU_ASSERT_EQUAL(rh_lfs_remote_new(&rm, v.endpoint), 0);
		CU_ASSERT_EQUAL(rh_lfs_fetch(rm, &missing, fd, &fo), RH_ENOTFOUND);
		show("missing");
		CU_ASSERT(has(missing.oid));
		CU_ASSERT(has(v.endpoint));
		/* A repository the server does not know is also not found. */
		rh_lfs_remote_free(rm);
		close(fd);
	}
	/* Nothing listens: a network error, retried and reported. */
	fo.attempts = 2;
	CU_ASSERT_EQUAL(fetch(&v, "http://127.0.0.1:1/reg/info/lfs", &fo), RH_EIO);
	show("refused");
	CU_ASSERT(has("127.0.0.1:1"));
	unsetenv("REHYDRA_LFS_TOKEN");
	srv_stop(&v);
}

static void *fire_later(void *arg)
{
	struct timespec ts = { 0, 300 * 1000000L };

	nanosleep(&ts, NULL);
	rh_cancel_fire(arg);
	return NULL;
}

static void test_lfs__cancel(void)
{
	struct rh_lfs_fetch_opts fo = RH_LFS_FETCH_OPTS_INIT;
	struct rh_cancel c;
	struct srv v;
	pthread_t th;
	struct timespec t0, t1;

	if (!srv_start(&v, NULL))
		return;
	CU_ASSERT_EQUAL_FATAL(rh_cancel_init(&c), 0);
	/* The server keeps answering 503 with Retry-After 30: only the cancel
	 * ends the wait. */
	CU_ASSERT_EQUAL(lfs_server_call(&v.s, "{\"fail_batch\":100,\"fail_status\":503,"
					"\"retry_after\":\"30\"}", NULL, 0), 200);
	fo.cancel = &c;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pthread_create(&th, NULL, fire_later, &c);
	CU_ASSERT_EQUAL(fetch(&v, v.endpoint, &fo), RH_ECANCELLED);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_join(th, NULL);
	CU_ASSERT((double)(t1.tv_sec - t0.tv_sec) < 10.0);
	rh_cancel_clear(&c);
	srv_stop(&v);
}

static bool keep_one(void *user, const char *oid)
{
	return strcmp(user, oid) == 0;
}

static void test_lfs__cache(void)
{
	struct rh_cache_tmp t;
	char *tmp = rh_test_tmpdir();
	unsigned char *data = pattern(5000, 4);
	char oid[65];
	char other[65];
	char *path;
	uint64_t freed = 0, kept = 0;
	int lockfd;
	struct stat sb;

	rh_sha256_buf_hex(oid, data, 5000);
	CU_ASSERT_PTR_NULL(rh_cache_object_path(tmp, "../etc"));
	CU_ASSERT_EQUAL(rh_cache_tmp_open(&t, tmp, "nothex"), RH_EINVAL);
	/* Aborted: nothing under the final name, no temporary left. */
	CU_ASSERT_EQUAL_FATAL(rh_cache_tmp_open(&t, tmp, oid), 0);
	CU_ASSERT_EQUAL(rh_fs_write_all(t.fd, data, 100), 0);
	path = strdup(t.final_path);
	rh_cache_tmp_abort(&t);
	CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0);
	/* Wrong size: commit refuses, nothing under the final name. */
	CU_ASSERT_EQUAL_FATAL(rh_cache_tmp_open(&t, tmp, oid), 0);
	CU_ASSERT_EQUAL(rh_fs_write_all(t.fd, data, 100), 0);
	CU_ASSERT_EQUAL(rh_cache_tmp_commit(&t, 5000), RH_EIO);
	CU_ASSERT_NOT_EQUAL(access(path, F_OK), 0);
	/* Committed. */
	CU_ASSERT_EQUAL_FATAL(rh_cache_tmp_open(&t, tmp, oid), 0);
	CU_ASSERT_EQUAL(rh_fs_write_all(t.fd, data, 5000), 0);
	CU_ASSERT_EQUAL(rh_cache_tmp_commit(&t, 5000), 0);
	CU_ASSERT_EQUAL(stat(path, &sb), 0);
	CU_ASSERT_EQUAL(sb.st_size, 5000);

	/* gc: an unreferenced object and a dead temporary go; a live temporary
	 * (its writer holds the lock) and a referenced object stay. */
	rh_sha256_buf_hex(other, data, 10);
	CU_ASSERT_EQUAL_FATAL(rh_cache_tmp_open(&t, tmp, other), 0);
	CU_ASSERT_EQUAL(rh_fs_write_all(t.fd, data, 10), 0);
	CU_ASSERT_EQUAL(rh_cache_tmp_commit(&t, 10), 0);
	CU_ASSERT_EQUAL_FATAL(rh_cache_tmp_open(&t, tmp, other), 0); /* live */
	CU_ASSERT_EQUAL(rh_fs_write_all(t.fd, data, 7), 0);
	{
		struct rh_cache_tmp dead;

		CU_ASSERT_EQUAL_FATAL(rh_cache_tmp_open(&dead, tmp, oid), 0);
		CU_ASSERT_EQUAL(rh_fs_write_all(dead.fd, data, 3), 0);
		/* Killed: the fd is closed (lock gone), the file stays. */
		close(dead.fd);
		free(dead.tmp_path);
		free(dead.final_path);
	}
	lockfd = t.fd;
	CU_ASSERT_EQUAL(rh_cache_sweep(tmp, keep_one, oid, &freed, &kept), 0);
	CU_ASSERT_EQUAL(freed, 10 + 3);
	CU_ASSERT_EQUAL(kept, 5000 + 7);
	CU_ASSERT_EQUAL(access(path, F_OK), 0);
	CU_ASSERT_EQUAL(access(t.tmp_path, F_OK), 0);
	CU_ASSERT_NOT_EQUAL(access(t.final_path, F_OK), 0);
	(void)lockfd;
	rh_cache_tmp_abort(&t);
	/* Nothing referenced: everything goes, the fan-out directories too. */
	CU_ASSERT_EQUAL(rh_cache_sweep(tmp, keep_one, "", &freed, &kept), 0);
	CU_ASSERT_EQUAL(freed, 5000);
	CU_ASSERT_EQUAL(kept, 0);
	{
		char *objects = rh_test_path(tmp, "objects");
		char *aa = NULL;

		CU_ASSERT(asprintf(&aa, "%s/%.2s", objects, oid) > 0);
		CU_ASSERT_NOT_EQUAL(access(aa, F_OK), 0);
		free(aa);
		free(objects);
	}
	/* A cache that was never used is empty, not an error. */
	CU_ASSERT_EQUAL(rh_cache_sweep("/nonexistent/cache", keep_one, "", &freed, &kept), 0);
	CU_ASSERT_EQUAL(freed, 0);
	free(path);
	free(data);
	rh_test_rm_rf(tmp);
	free(tmp);
}

RH_TEST_MAIN("lfs",
	     { "pointer_parse", test_lfs__pointer_parse },
	     { "urls", test_lfs__urls },
	     { "batch_request", test_lfs__batch_request },
	     { "batch_parse", test_lfs__batch_parse },
	     { "retry_after", test_lfs__retry_after },
	     { "fetch", test_lfs__fetch },
	     { "cancel", test_lfs__cancel },
	     { "cache", test_lfs__cache })
