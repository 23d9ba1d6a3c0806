/*
 * test_sink_sftp.c - the SFTP sink against a real sshd started by the test:
 * put/has/commit and the state file, replacing a file, parallel puts, path
 * escapes (names and planted symlinks), a corrupt source, a full disk,
 * cancel, and the fault that matters most: sshd killed in the middle of a
 * large put, restarted on the same port, and the next put resuming where
 * the first stopped, with the result checked by sha256sum on the server.
 */
#include "cancel.h"
#include "clock.h"
#include "error.h"
#include "sha256.h"
#include "sink.h"
#include "testlib.h"
#include "sshd_test.h"

#include <pthread.h>
#include <sys/mount.h>

static struct sshd_test srv;
static char *tmp;

static void setup(void)
{
	if (srv.dir)
		return;
	unsetenv("SSH_AUTH_SOCK");
	tmp = rh_test_tmpdir();
	sshd_test_start(&srv, tmp);
}

/* A source over memory that can be told to fail or lie. */
struct msrc {
	struct rh_source src;
	const uint8_t *data;
};

static long msrc_read_at(void *user, uint64_t off, void *buf, size_t len)
{
	struct msrc *m = user;

	if (off >= m->src.size)
		return 0;
	if (len > m->src.size - off)
		len = (size_t)(m->src.size - off);
	memcpy(buf, m->data + off, len);
	return (long)len;
}

static void msrc_init(struct msrc *m, const void *data, size_t len)
{
	m->data = data;
	m->src = (struct rh_source){ 0 };
	m->src.size = len;
	m->src.read_at = msrc_read_at;
	m->src.user = m;
	m->src.name = "test data";
}

static uint8_t *random_bytes(size_t n, unsigned seed)
{
	uint8_t *p = malloc(n ? n : 1);
	uint64_t x = 0x9e3779b97f4a7c15ULL * (seed + 1);

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
	return p;
}

static int open_sink(struct rh_sink **s, const char *sub, struct rh_sink_opts *o)
{
	struct rh_sink_opts def = RH_SINK_OPTS_INIT;
	char url[1024];

	if (!o)
		o = &def;
	o->known_hosts = srv.known_hosts;
	o->identity_file = srv.user_key;
	snprintf(url, sizeof(url), "sftp://root@127.0.0.1:%u%s/%s", srv.port, tmp, sub);
	return rh_sink_sftp_open(s, url, o);
}

static int put_mem(struct rh_sink *s, const char *path, const void *data, size_t len,
		   struct rh_put_stats *st)
{
	struct rh_put_stats dummy;
	struct msrc m;
	char hex[65];

	rh_sha256_buf_hex(hex, data, len);
	msrc_init(&m, data, len);
	return s->ops->put(s, path, len, hex, &m.src, st ? st : &dummy);
}

static bool has_mem(struct rh_sink *s, const char *path, const void *data, size_t len)
{
	char hex[65];
	bool present = false;

	rh_sha256_buf_hex(hex, data, len);
	CU_ASSERT_EQUAL(s->ops->has(s, path, len, hex, &present), 0);
	return present;
}

/* sha256 of a server-side file by the sha256sum tool, not by our code. */
static void sha256sum(const char *path, char out[65])
{
	char o[600];
	char line[256];
	const char *argv[] = { "/usr/bin/sha256sum", path, NULL };

	snprintf(o, sizeof(o), "%s/sum.out", tmp);
	sshd_test_run(argv, o);
	sshd_test_read_line(o, line, sizeof(line));
	snprintf(out, 65, "%.64s", line);
}

/* Counts directory entries whose name contains `needle`. */
static int count_named(const char *dir, const char *needle)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)) != NULL)
		if (strstr(e->d_name, needle))
			n++;
	if (d)
		closedir(d);
	return n;
}

static bool file_is(const char *path, const void *data, size_t len)
{
	char want[65];
	char got[65];
	uint64_t size = 0;

	rh_sha256_buf_hex(want, data, len);
	return rh_sha256_file_hex(got, &size, path) == 0 && size == len &&
	       strcmp(want, got) == 0;
}

static void test_sink_sftp__put_has_commit(void)
{
	struct rh_sink *s = NULL;
	struct rh_put_stats st;
	size_t big_len = (3u << 20) + 12345;
	uint8_t *big = random_bytes(big_len, 1);
	uint8_t *v2 = random_bytes(5000, 2);
	char *p;
	char hex[65];
	bool present = true;

	setup();
	CU_ASSERT_EQUAL_FATAL(open_sink(&s, "t1/deep/root", NULL), 0);
	CU_ASSERT_EQUAL(strcmp(s->ops->scheme, "sftp"), 0);
	{
		/* the default pool: one connection per core, at least 2 */
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		unsigned want = cpus < 2 ? 2 : cpus > 32 ? 32 : (unsigned)cpus;

		CU_ASSERT_EQUAL(s->ops->max_parallel, want);
	}
	CU_ASSERT_PTR_NOT_NULL(strstr(s->location, "/t1/deep/root"));
	CU_ASSERT_FALSE(has_mem(s, "a/b/big.bin", big, big_len));
	CU_ASSERT_EQUAL(put_mem(s, "a/b/big.bin", big, big_len, &st), 0);
	CU_ASSERT_EQUAL(st.bytes_sent, big_len);
	CU_ASSERT_EQUAL(st.bytes_resumed, 0);
	CU_ASSERT_EQUAL(put_mem(s, "small.txt", "hello", 5, NULL), 0);
	CU_ASSERT_EQUAL(put_mem(s, "empty", "", 0, NULL), 0);
	CU_ASSERT_TRUE(has_mem(s, "a/b/big.bin", big, big_len));
	CU_ASSERT_TRUE(has_mem(s, "empty", "", 0));
	CU_ASSERT_FALSE(has_mem(s, "small.txt", "hellp", 5)); /* other sha256 */
	rh_sha256_buf_hex(hex, "hello", 5);
	CU_ASSERT_EQUAL(s->ops->has(s, "small.txt", 6, hex, &present), 0); /* other size */
	CU_ASSERT_FALSE(present);
	CU_ASSERT_EQUAL(s->ops->commit(s), 0);
	rh_sink_close(s);
	s = NULL;

	p = rh_test_path(tmp, "t1/deep/root/a/b/big.bin");
	CU_ASSERT_TRUE(file_is(p, big, big_len));
	free(p);
	p = rh_test_path(tmp, "t1/deep/root/.rehydra-sink.json");
	CU_ASSERT_EQUAL(access(p, F_OK), 0);
	free(p);
	p = rh_test_path(tmp, "t1/deep/root/a/b");
	CU_ASSERT_EQUAL(count_named(p, ".rh-part-"), 0);
	free(p);

	/* a new sink reads the state: has() without sending anything */
	CU_ASSERT_EQUAL_FATAL(open_sink(&s, "t1/deep/root", NULL), 0);
	CU_ASSERT_TRUE(has_mem(s, "a/b/big.bin", big, big_len));
	CU_ASSERT_TRUE(has_mem(s, "small.txt", "hello", 5));
	/* replacing a file with new content (atomic rename over it) */
	CU_ASSERT_EQUAL(put_mem(s, "small.txt", v2, 5000, NULL), 0);
	CU_ASSERT_TRUE(has_mem(s, "small.txt", v2, 5000));
	CU_ASSERT_FALSE(has_mem(s, "small.txt", "hello", 5));
	CU_ASSERT_EQUAL(s->ops->commit(s), 0);
	rh_sink_close(s);
	s = NULL;
	p = rh_test_path(tmp, "t1/deep/root/small.txt");
	CU_ASSERT_TRUE(file_is(p, v2, 5000));
	/* a file changed behind the sink's back is not trusted */
	CU_ASSERT_EQUAL(truncate(p, 10), 0);
	free(p);
	CU_ASSERT_EQUAL_FATAL(open_sink(&s, "t1/deep/root", NULL), 0);
	CU_ASSERT_FALSE(has_mem(s, "small.txt", v2, 5000));
	CU_ASSERT_TRUE(has_mem(s, "a/b/big.bin", big, big_len));
	rh_sink_close(s);
	free(big);
	free(v2);
}

static void test_sink_sftp__url_errors(void)
{
	struct rh_sink_opts o = RH_SINK_OPTS_INIT;
	struct rh_sink *s = NULL;
	char url[512];

	setup();
	o.known_hosts = srv.known_hosts;
	o.identity_file = srv.user_key;
	CU_ASSERT_EQUAL(rh_sink_sftp_open(&s, "sftp://root@127.0.0.1", &o), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "no directory"));
	CU_ASSERT_EQUAL(rh_sink_sftp_open(&s, "sftp://root:secret@127.0.0.1/x", &o), RH_EINVAL);
	CU_ASSERT_PTR_NULL(strstr(rh_error_last(), "secret"));
	CU_ASSERT_EQUAL(rh_sink_sftp_open(&s, "sftp://root@127.0.0.1:99999/x", &o), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_sink_sftp_open(&s, "sftp://root@[::1/x", &o), RH_EINVAL);
	/* a root that is a file */
	snprintf(url, sizeof(url), "%s/afile", tmp);
	rh_test_write_file(url, "x");
	snprintf(url, sizeof(url), "sftp://root@127.0.0.1:%u%s/afile/sub", srv.port, tmp);
	CU_ASSERT_TRUE(rh_sink_sftp_open(&s, url, &o) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "not a directory"));
	CU_ASSERT_PTR_NULL(s);
	/* IPv6 literal and a home-relative root */
	snprintf(url, sizeof(url), "sftp://root@[::1]:%u/~/rh-sftp-test-home-%d", srv.port,
		 (int)getpid());
	if (rh_sink_sftp_open(&s, url, &o) == 0) {
		CU_ASSERT_PTR_NOT_NULL(strstr(s->url, "[::1]"));
		CU_ASSERT_EQUAL(s->location[0], '/');
		rmdir(s->location);
		rh_sink_close(s);
	}
}

static void test_sink_sftp__unsafe_paths(void)
{
	static const char *bad[] = { "../x", "/etc/passwd", "a/../../x", "a//b", "./a", "a/",
				     ".rehydra-sink.json", "x.rh-part-0123456789abcdef", "a\\b",
				     "" };
	struct rh_sink *s = NULL;
	char link[600];
	char outside[600];
	char *p;

	setup();
	CU_ASSERT_EQUAL_FATAL(open_sink(&s, "t2", NULL), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(put_mem(s, bad[i], "x", 1, NULL), RH_EINVAL);
		CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "unsafe path"));
	}
	/* a symlinked directory inside the target is not followed */
	snprintf(outside, sizeof(outside), "%s/outside", tmp);
	CU_ASSERT_EQUAL(mkdir(outside, 0700), 0);
	snprintf(link, sizeof(link), "%s/t2/link", tmp);
	CU_ASSERT_EQUAL(symlink(outside, link), 0);
	CU_ASSERT_EQUAL(put_mem(s, "link/file", "x", 1, NULL), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "symlink"));
	p = rh_test_path(outside, "file");
	CU_ASSERT_NOT_EQUAL(access(p, F_OK), 0);
	free(p);
	CU_ASSERT_EQUAL(count_named(outside, ""), 2); /* . and .. only */
	rh_sink_close(s);
}

static void test_sink_sftp__corrupt_source(void)
{
	struct rh_sink *s = NULL;
	struct rh_put_stats st;
	size_t len = (6u << 20) + 7;
	uint8_t *good = random_bytes(len, 3);
	uint8_t *bad = malloc(len);
	struct msrc m;
	char hex[65];
	char *dir;

	setup();
	memcpy(bad, good, len);
	bad[len / 2] ^= 0x01;
	rh_sha256_buf_hex(hex, good, len);
	msrc_init(&m, bad, len);
	CU_ASSERT_EQUAL_FATAL(open_sink(&s, "t3", NULL), 0);
	CU_ASSERT_EQUAL(s->ops->put(s, "model.bin", len, hex, &m.src, &st), RH_EVERIFY);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "sha256 mismatch for model.bin"));
	dir = rh_test_path(tmp, "t3");
	CU_ASSERT_EQUAL(count_named(dir, "model.bin"), 0); /* no final, no partial */
	/* a source shorter than the manifest says */
	msrc_init(&m, good, len - 1);
	CU_ASSERT_EQUAL(s->ops->put(s, "model.bin", len, hex, &m.src, &st), RH_EVERIFY);
	CU_ASSERT_EQUAL(count_named(dir, "model.bin"), 0);
	CU_ASSERT_FALSE(has_mem(s, "model.bin", good, len));
	rh_sink_close(s);
	free(dir);
	free(good);
	free(bad);
}

struct killer {
	uint64_t seen;
	uint64_t at;
	bool fired;
	struct rh_cancel *cancel; /* fire this instead of killing sshd */
};

static void kill_progress(void *user, uint64_t delta)
{
	struct killer *k = user;

	k->seen += delta;
	if (!k->fired && k->seen >= k->at) {
		k->fired = true;
		if (k->cancel)
			rh_cancel_fire(k->cancel);
		else
			sshd_test_kill(&srv);
	}
}

static void test_sink_sftp__resume_after_sshd_killed(void)
{
	struct rh_sink *s = NULL;
	struct rh_put_stats st = { 0, 0 };
	struct killer k = { 0, 8u << 20, false, NULL };
	size_t len = 40u << 20;
	uint8_t *data = random_bytes(len, 4);
	char hex[65];
	char got[65];
	char *final;
	char *dir;
	int err;

	setup();
	rh_sha256_buf_hex(hex, data, len);
	CU_ASSERT_EQUAL_FATAL(open_sink(&s, "t4", NULL), 0);
	s->progress = kill_progress;
	s->progress_user = &k;
	err = put_mem(s, "weights/shard.bin", data, len, &st);
	CU_ASSERT_TRUE(k.fired);
	CU_ASSERT_EQUAL(err, RH_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "lost"));
	CU_ASSERT_TRUE(st.bytes_sent >= k.at && st.bytes_sent < len);
	rh_sink_close(s);
	s = NULL;
	dir = rh_test_path(tmp, "t4/weights");
	final = rh_test_path(dir, "shard.bin");
	CU_ASSERT_NOT_EQUAL(access(final, F_OK), 0);
	CU_ASSERT_EQUAL(count_named(dir, ".rh-part-"), 1);

	sshd_test_launch(&srv); /* same config, same port */
	CU_ASSERT_EQUAL_FATAL(open_sink(&s, "t4", NULL), 0);
	memset(&st, 0, sizeof(st));
	CU_ASSERT_EQUAL(put_mem(s, "weights/shard.bin", data, len, &st), 0);
	CU_ASSERT_TRUE(st.bytes_resumed > 0);
	CU_ASSERT_TRUE(st.bytes_sent < len);
	CU_ASSERT_EQUAL(st.bytes_sent + st.bytes_resumed, len);
	CU_ASSERT_EQUAL(s->ops->commit(s), 0);
	rh_sink_close(s);
	sha256sum(final, got);
	CU_ASSERT_STRING_EQUAL(got, hex);
	CU_ASSERT_EQUAL(count_named(dir, ".rh-part-"), 0);
	free(final);
	free(dir);
	free(data);
}

static void test_sink_sftp__resume_rejects_bad_partial(void)
{
	struct rh_sink *s = NULL;
	struct rh_put_stats st = { 0, 0 };
	size_t len = 2u << 20;
	uint8_t *data = random_bytes(len, 5);
	uint8_t *junk = random_bytes(len / 2, 6);
	char hex[65];
	char part[700];
	char *final;
	FILE *f;

	setup();
	rh_sha256_buf_hex(hex, data, len);
	CU_ASSERT_EQUAL(mkdir(tmp, 0700) == 0 || errno == EEXIST, 1);
	snprintf(part, sizeof(part), "%s/t5", tmp);
	mkdir(part, 0700);
	/* a partial with this object's name but other bytes (e.g. torn by a crash) */
	snprintf(part, sizeof(part), "%s/t5/f.bin.rh-part-%.16s", tmp, hex);
	f = fopen(part, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fwrite(junk, 1, len / 2, f);
	fclose(f);
	CU_ASSERT_EQUAL_FATAL(open_sink(&s, "t5", NULL), 0);
	CU_ASSERT_EQUAL(put_mem(s, "f.bin", data, len, &st), 0);
	CU_ASSERT_EQUAL(st.bytes_resumed, 0); /* not trusted: sent again */
	CU_ASSERT_EQUAL(st.bytes_sent, len);
	rh_sink_close(s);
	final = rh_test_path(tmp, "t5/f.bin");
	CU_ASSERT_TRUE(file_is(final, data, len));
	free(final);
	free(data);
	free(junk);
}

static void test_sink_sftp__cancel(void)
{
	struct rh_cancel cancel;
	struct rh_sink *s = NULL;
	struct rh_put_stats st = { 0, 0 };
	struct killer k = { 0, 4u << 20, false, &cancel };
	size_t len = 24u << 20;
	uint8_t *data = random_bytes(len, 7);
	char *dir;
	double t0;

	setup();
	CU_ASSERT_EQUAL_FATAL(rh_cancel_init(&cancel), 0);
	CU_ASSERT_EQUAL_FATAL(open_sink(&s, "t6", NULL), 0);
	s->cancel = &cancel;
	s->progress = kill_progress;
	s->progress_user = &k;
	t0 = rh_clock_mono();
	CU_ASSERT_EQUAL(put_mem(s, "c.bin", data, len, &st), RH_ECANCELLED);
	CU_ASSERT_TRUE(rh_clock_mono() - t0 < 20.0);
	CU_ASSERT_TRUE(st.bytes_sent < len);
	rh_sink_close(s);
	dir = rh_test_path(tmp, "t6");
	CU_ASSERT_EQUAL(count_named(dir, "c.bin.rh-part-"), 1); /* kept for resume */
	CU_ASSERT_EQUAL(count_named(dir, "c.bin") , 1);
	free(dir);
	rh_cancel_clear(&cancel);
	free(data);
}

struct par_job {
	struct rh_sink *s;
	char name[32];
	uint8_t *data;
	size_t len;
	int err;
};

static void *par_put(void *arg)
{
	struct par_job *j = arg;

	j->err = put_mem(j->s, j->name, j->data, j->len, NULL);
	return NULL;
}

static void test_sink_sftp__parallel_puts(void)
{
	struct rh_sink_opts o = RH_SINK_OPTS_INIT;
	struct par_job jobs[6];
	pthread_t th[6];
	struct rh_sink *s = NULL;
	double t0;

	setup();
	o.parallel = 6;
	CU_ASSERT_EQUAL_FATAL(open_sink(&s, "t7", &o), 0);
	CU_ASSERT_EQUAL(s->ops->max_parallel, 6);
	for (int i = 0; i < 6; i++) {
		jobs[i].s = s;
		snprintf(jobs[i].name, sizeof(jobs[i].name), "d%d/f%d.bin", i % 2, i);
		jobs[i].len = (2u << 20) + (size_t)i * 1000;
		jobs[i].data = random_bytes(jobs[i].len, 10 + (unsigned)i);
	}
	t0 = rh_clock_mono();
	for (int i = 0; i < 6; i++)
		pthread_create(&th[i], NULL, par_put, &jobs[i]);
	for (int i = 0; i < 6; i++)
		pthread_join(th[i], NULL);
	(void)t0;
	for (int i = 0; i < 6; i++) {
		char rel[64];
		char *p;

		CU_ASSERT_EQUAL(jobs[i].err, 0);
		snprintf(rel, sizeof(rel), "t7/%s", jobs[i].name);
		p = rh_test_path(tmp, rel);
		CU_ASSERT_TRUE(file_is(p, jobs[i].data, jobs[i].len));
		CU_ASSERT_TRUE(has_mem(s, jobs[i].name, jobs[i].data, jobs[i].len));
		free(p);
		free(jobs[i].data);
	}
	CU_ASSERT_EQUAL(s->ops->commit(s), 0);
	rh_sink_close(s);
}

static void test_sink_sftp__disk_full(void)
{
	struct rh_sink *s = NULL;
	size_t len = 4u << 20;
	uint8_t *data = random_bytes(len, 8);
	char *mnt = rh_test_path(tmp, "small");
	int err;

	setup();
	mkdir(mnt, 0700);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m,mode=0700") != 0) {
		fprintf(stderr, "(cannot mount a small tmpfs here: skipped) ");
		free(mnt);
		free(data);
		return;
	}
	CU_ASSERT_EQUAL_FATAL(open_sink(&s, "small/target", NULL), 0);
	err = put_mem(s, "big.bin", data, len, NULL);
	CU_ASSERT_EQUAL(err, RH_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "full"));
	rh_sink_close(s);
	{
		char *dir = rh_test_path(mnt, "target");

		CU_ASSERT_EQUAL(count_named(dir, "big.bin"), 0); /* no final, no partial */
		free(dir);
	}
	CU_ASSERT_EQUAL(umount2(mnt, MNT_DETACH), 0);
	free(mnt);
	free(data);
}

static void test_sink_sftp__teardown(void)
{
	sshd_test_stop(&srv);
	rh_test_rm_rf(tmp);
	free(tmp);
	CU_PASS("stopped");
}

RH_TEST_MAIN("sink_sftp",
	     { "put_has_commit", test_sink_sftp__put_has_commit },
	     { "url_errors", test_sink_sftp__url_errors },
	     { "unsafe_paths", test_sink_sftp__unsafe_paths },
	     { "corrupt_source", test_sink_sftp__corrupt_source },
	     { "resume_after_sshd_killed", test_sink_sftp__resume_after_sshd_killed },
	     { "resume_rejects_bad_partial", test_sink_sftp__resume_rejects_bad_partial },
	     { "cancel", test_sink_sftp__cancel },
	     { "parallel_puts", test_sink_sftp__parallel_puts },
	     { "disk_full", test_sink_sftp__disk_full },
	     { "teardown", test_sink_sftp__teardown })
