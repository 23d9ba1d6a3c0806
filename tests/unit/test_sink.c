/*
 * test_sink.c - the file sink: verified, atomic, confined writes.
 *
 * Each failure path (wrong sha256, short or long input, a reader error,
 * cancellation, unsafe paths, symlinks out of the root) must leave neither
 * the final name nor a temporary behind; has() must skip unchanged files
 * using the state file and notice changed ones.
 */
#include "testlib.h"

#include "cancel.h"
#include "error.h"
#include "sha256.h"
#include "sink.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

struct src {
	const unsigned char *data;
	size_t len;
	size_t off;
	size_t chunk;            /* max bytes per read */
	long fail_after;         /* return this error once off >= fail_at (0: never) */
	size_t fail_at;
	struct rh_cancel *fire;  /* fired once off >= fail_at, if set */
};

static long src_read(void *user, void *buf, size_t len)
{
	struct src *s = user;
	size_t n = s->len - s->off;

	if (s->fail_after && s->off >= s->fail_at)
		return rh_error_set((int)s->fail_after, "test source failed on purpose");
	if (s->fire && s->off >= s->fail_at)
		rh_cancel_fire(s->fire);
	if (n > len)
		n = len;
	if (s->chunk && n > s->chunk)
		n = s->chunk;
	memcpy(buf, s->data + s->off, n);
	s->off += n;
	return (long)n;
}

static unsigned char *pattern(size_t len, unsigned seed)
{
	unsigned char *p = malloc(len ? len : 1);
	uint32_t x = seed * 2654435761u + 1;

	CU_ASSERT_FATAL(p != NULL);
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (unsigned char)(x >> 16);
	}
	return p;
}

/* Counts entries under `dir` (recursively) whose name contains `needle`,
 * or all regular files when needle is NULL. */
static int count_files(const char *dir, const char *needle)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)) != NULL) {
		char *p;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		p = rh_test_path(dir, e->d_name);
		if (e->d_type == DT_DIR)
			n += count_files(p, needle);
		else if (!needle || strstr(e->d_name, needle))
			n++;
		free(p);
	}
	closedir(d);
	return n;
}

static bool file_equals(const char *path, const unsigned char *data, size_t len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *got = malloc(len + 1);
	size_t n;
	bool ok;

	if (!f || !got) {
		if (f)
			fclose(f);
		free(got);
		return false;
	}
	n = fread(got, 1, len + 1, f);
	fclose(f);
	ok = n == len && memcmp(got, data, len) == 0;
	free(got);
	return ok;
}

static uint64_t progress_last;
static unsigned progress_calls;

static void on_progress(void *user, const char *path, uint64_t done, uint64_t total)
{
	(void)user;
	(void)path;
	CU_ASSERT(done <= total);
	progress_last = done;
	progress_calls++;
}

static void test_sink__put_ok(void)
{
	char *tmp = rh_test_tmpdir();
	char *root = rh_test_path(tmp, "deep/sink");
	char *final = rh_test_path(root, "a/b/weights.bin");
	size_t len = 3 * 1024 * 1024 + 17; /* not a multiple of the 1 MiB buffer */
	unsigned char *data = pattern(len, 1);
	struct src s = { data, len, 0, 100000, 0, 0, NULL };
	struct rh_sink *sink = NULL;
	struct stat sb;
	char sha[65];
	char want_url[4200];

	rh_sha256_buf_hex(sha, data, len);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, root), 0);
	snprintf(want_url, sizeof(want_url), "file://%s", root);
	CU_ASSERT_STRING_EQUAL(sink->url, want_url);
	CU_ASSERT_EQUAL(stat(root, &sb), 0);
	CU_ASSERT_EQUAL(sb.st_mode & 0777, 0700);

	progress_calls = 0;
	sink->progress = on_progress;
	CU_ASSERT_EQUAL(sink->ops->put(sink, "a/b/weights.bin", len, sha, src_read, &s), 0);
	CU_ASSERT(file_equals(final, data, len));
	CU_ASSERT(progress_calls >= 3);
	CU_ASSERT_EQUAL(progress_last, len);
	CU_ASSERT_EQUAL(count_files(root, ".rh-part-"), 0);
	CU_ASSERT_EQUAL(sink->ops->commit(sink), 0);
	CU_ASSERT_EQUAL(count_files(root, ".rh-part-"), 0);

	/* An empty file is a file too. */
	struct src empty = { data, 0, 0, 0, 0, 0, NULL };
	char esha[65];

	rh_sha256_buf_hex(esha, "", 0);
	CU_ASSERT_EQUAL(sink->ops->put(sink, "empty", 0, esha, src_read, &empty), 0);
	free(final);
	final = rh_test_path(root, "empty");
	CU_ASSERT(file_equals(final, data, 0));

	rh_sink_close(sink);
	rh_sink_close(NULL);
	rh_test_rm_rf(tmp);
	free(data);
	free(final);
	free(root);
	free(tmp);
}

static void test_sink__bad_data_leaves_nothing(void)
{
	char *tmp = rh_test_tmpdir();
	char *final = rh_test_path(tmp, "x/f.bin");
	size_t len = 1500000;
	unsigned char *data = pattern(len, 2);
	struct rh_sink *sink = NULL;
	char sha[65];
	char wrong[65];
	int err;

	rh_sha256_buf_hex(sha, data, len);
	memcpy(wrong, sha, 65);
	wrong[0] = wrong[0] == '0' ? '1' : '0';
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);

	/* Wrong sha256. */
	struct src s1 = { data, len, 0, 0, 0, 0, NULL };

	err = sink->ops->put(sink, "x/f.bin", len, wrong, src_read, &s1);
	CU_ASSERT_EQUAL(err, RH_EVERIFY);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "x/f.bin"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), sink->url));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "sha256"));
	CU_ASSERT_NOT_EQUAL(access(final, F_OK), 0);
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);

	/* Short input: the source ends before the promised size. */
	struct src s2 = { data, len - 1, 0, 0, 0, 0, NULL };

	CU_ASSERT_EQUAL(sink->ops->put(sink, "x/f.bin", len, sha, src_read, &s2), RH_EVERIFY);
	CU_ASSERT_NOT_EQUAL(access(final, F_OK), 0);
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);

	/* Long input. */
	struct src s3 = { data, len, 0, 0, 0, 0, NULL };

	CU_ASSERT_EQUAL(sink->ops->put(sink, "x/f.bin", len - 10, sha, src_read, &s3),
			RH_EVERIFY);
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);

	/* The source fails half-way (a network error, say). */
	struct src s4 = { data, len, 0, 300000, RH_EIO, 1100000, NULL };

	CU_ASSERT_EQUAL(sink->ops->put(sink, "x/f.bin", len, sha, src_read, &s4), RH_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "failed on purpose"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "x/f.bin"));
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);

	/* A bad digest string is refused before anything is written. */
	struct src s5 = { data, len, 0, 0, 0, 0, NULL };

	CU_ASSERT_EQUAL(sink->ops->put(sink, "x/f.bin", len, "ABC", src_read, &s5), RH_EINVAL);
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);

	/* A failed put over an existing good file leaves the good file. */
	struct src s6 = { data, len, 0, 0, 0, 0, NULL };
	struct src s7 = { data, len, 0, 0, 0, 0, NULL };

	CU_ASSERT_EQUAL(sink->ops->put(sink, "x/f.bin", len, sha, src_read, &s6), 0);
	CU_ASSERT_EQUAL(sink->ops->put(sink, "x/f.bin", len, wrong, src_read, &s7), RH_EVERIFY);
	CU_ASSERT(file_equals(final, data, len));
	CU_ASSERT_EQUAL(count_files(tmp, ".rh-part-"), 0);

	rh_sink_close(sink);
	rh_test_rm_rf(tmp);
	free(data);
	free(final);
	free(tmp);
}

static void test_sink__unsafe_paths(void)
{
	static const char *const bad[] = { "../x", "/abs", "a/../b", "a//b", "", ".", "..",
					   "a/", "./a", "a/.", "a\\b", "a\nb", "a\tb",
					   ".rehydra-sink.json", "f.rh-part-1234", NULL };
	static const char *const good[] = { "a", "a/b.c", "..a", "a..b", ".hidden", "a/.b",
					    "x/y/z/w.bin", NULL };
	char *tmp = rh_test_tmpdir();
	struct rh_sink *sink = NULL;
	char sha[65];

	rh_sha256_buf_hex(sha, "x", 1);
	for (size_t i = 0; good[i]; i++)
		CU_ASSERT_TRUE(rh_sink_path_is_safe(good[i]));
	for (size_t i = 0; bad[i] && i < 13; i++)
		CU_ASSERT_FALSE(rh_sink_path_is_safe(bad[i]));
	CU_ASSERT_FALSE(rh_sink_path_is_safe(NULL));

	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	for (size_t i = 0; bad[i]; i++) {
		struct src s = { (const unsigned char *)"x", 1, 0, 0, 0, 0, NULL };
		bool present = true;

		CU_ASSERT_EQUAL(sink->ops->put(sink, bad[i], 1, sha, src_read, &s), RH_EINVAL);
		CU_ASSERT_EQUAL(s.off, 0); /* refused before reading */
		CU_ASSERT_EQUAL(sink->ops->has(sink, bad[i], 1, sha, &present), RH_EINVAL);
		CU_ASSERT_FALSE(present);
	}
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);
	rh_sink_close(sink);

	/* Nothing escaped into the parent either. */
	char *parent_x = rh_test_path(tmp, "../x");

	CU_ASSERT_NOT_EQUAL(access(parent_x, F_OK), 0);
	free(parent_x);
	rh_test_rm_rf(tmp);
	free(tmp);
}

static void test_sink__symlink_escape(void)
{
	char *tmp = rh_test_tmpdir();
	char *root = rh_test_path(tmp, "root");
	char *outside = rh_test_path(tmp, "outside");
	char *link = rh_test_path(root, "evil");
	char *deep_link = rh_test_path(root, "ok/evil2");
	char *okdir = rh_test_path(root, "ok");
	char *victim = rh_test_path(outside, "victim");
	char *flink = rh_test_path(root, "file-link");
	struct rh_sink *sink = NULL;
	char sha[65];
	bool present = true;

	rh_sha256_buf_hex(sha, "data", 4);
	CU_ASSERT_EQUAL_FATAL(mkdir(outside, 0700), 0);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, root), 0);
	CU_ASSERT_EQUAL_FATAL(symlink(outside, link), 0);
	CU_ASSERT_EQUAL_FATAL(mkdir(okdir, 0700), 0);
	CU_ASSERT_EQUAL_FATAL(symlink(outside, deep_link), 0);

	struct src s1 = { (const unsigned char *)"data", 4, 0, 0, 0, 0, NULL };
	struct src s2 = { (const unsigned char *)"data", 4, 0, 0, 0, 0, NULL };

	CU_ASSERT_EQUAL(sink->ops->put(sink, "evil/x", 4, sha, src_read, &s1), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "symlink"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "evil/x"));
	CU_ASSERT_EQUAL(sink->ops->put(sink, "ok/evil2/sub/x", 4, sha, src_read, &s2),
			RH_EINVAL);
	CU_ASSERT_EQUAL(count_files(outside, NULL), 0);
	CU_ASSERT_EQUAL(sink->ops->has(sink, "evil/x", 4, sha, &present), RH_EINVAL);
	CU_ASSERT_FALSE(present);

	/* A symlink as the final name is replaced, not written through. */
	rh_test_write_file(victim, "keep");
	CU_ASSERT_EQUAL_FATAL(symlink(victim, flink), 0);
	present = true;
	CU_ASSERT_EQUAL(sink->ops->has(sink, "file-link", 4, sha, &present), 0);
	CU_ASSERT_FALSE(present);
	struct src s3 = { (const unsigned char *)"data", 4, 0, 0, 0, 0, NULL };

	CU_ASSERT_EQUAL(sink->ops->put(sink, "file-link", 4, sha, src_read, &s3), 0);
	CU_ASSERT(file_equals(victim, (const unsigned char *)"keep", 4));
	CU_ASSERT(file_equals(flink, (const unsigned char *)"data", 4));
	struct stat sb;

	CU_ASSERT_EQUAL(lstat(flink, &sb), 0);
	CU_ASSERT(S_ISREG(sb.st_mode));

	rh_sink_close(sink);
	rh_test_rm_rf(tmp);
	free(flink);
	free(victim);
	free(okdir);
	free(deep_link);
	free(link);
	free(outside);
	free(root);
	free(tmp);
}

static void test_sink__has_and_skip(void)
{
	char *tmp = rh_test_tmpdir();
	char *final = rh_test_path(tmp, "m/w.bin");
	char *state = rh_test_path(tmp, ".rehydra-sink.json");
	size_t len = 200000;
	unsigned char *data = pattern(len, 3);
	struct rh_sink *sink = NULL;
	char sha[65];
	char other[65];
	bool present = false;

	rh_sha256_buf_hex(sha, data, len);
	rh_sha256_buf_hex(other, "other", 5);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	CU_ASSERT_EQUAL(sink->ops->has(sink, "m/w.bin", len, sha, &present), 0);
	CU_ASSERT_FALSE(present);

	struct src s = { data, len, 0, 0, 0, 0, NULL };

	CU_ASSERT_EQUAL(sink->ops->put(sink, "m/w.bin", len, sha, src_read, &s), 0);
	CU_ASSERT_EQUAL(sink->ops->has(sink, "m/w.bin", len, sha, &present), 0);
	CU_ASSERT_TRUE(present);
	CU_ASSERT_EQUAL(sink->ops->has(sink, "m/w.bin", len, other, &present), 0);
	CU_ASSERT_FALSE(present);
	CU_ASSERT_EQUAL(sink->ops->has(sink, "m/w.bin", len + 1, sha, &present), 0);
	CU_ASSERT_FALSE(present);
	CU_ASSERT_EQUAL(sink->ops->commit(sink), 0);
	rh_sink_close(sink);
	CU_ASSERT_EQUAL(access(state, F_OK), 0);
	CU_ASSERT_EQUAL(count_files(tmp, ".rh-part-"), 0);

	/* A new sink on the same directory knows the file from the state. */
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	CU_ASSERT_EQUAL(sink->ops->has(sink, "m/w.bin", len, sha, &present), 0);
	CU_ASSERT_TRUE(present);
	rh_sink_close(sink);

	/* The state is trusted while the file is unchanged (no re-hash): a
	 * state that lies about an untouched file is believed ... */
	{
		FILE *f = fopen(state, "r");
		char buf[8192];
		size_t n;
		char *at;

		CU_ASSERT_FATAL(f != NULL);
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		at = strstr(buf, sha);
		CU_ASSERT_FATAL(at != NULL);
		memcpy(at, other, 64);
		rh_test_write_file(state, buf);
	}
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	CU_ASSERT_EQUAL(sink->ops->has(sink, "m/w.bin", len, sha, &present), 0);
	CU_ASSERT_FALSE(present);
	rh_sink_close(sink);

	/* ... but a changed file (same size, new bytes) is re-hashed. */
	data[100] ^= 0xff;
	{
		FILE *f = fopen(final, "wb");

		CU_ASSERT_FATAL(f != NULL);
		CU_ASSERT_EQUAL(fwrite(data, 1, len, f), len);
		fclose(f);
	}
	data[100] ^= 0xff;
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	CU_ASSERT_EQUAL(sink->ops->has(sink, "m/w.bin", len, other, &present), 0);
	CU_ASSERT_FALSE(present);
	CU_ASSERT_EQUAL(sink->ops->has(sink, "m/w.bin", len, sha, &present), 0);
	CU_ASSERT_FALSE(present);
	rh_sink_close(sink);

	/* A damaged state file only costs a re-hash. */
	rh_test_write_file(state, "{ not json");
	s.off = 0;
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	CU_ASSERT_EQUAL(sink->ops->put(sink, "m/w.bin", len, sha, src_read, &s), 0);
	CU_ASSERT_EQUAL(sink->ops->commit(sink), 0);
	rh_sink_close(sink);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	CU_ASSERT_EQUAL(sink->ops->has(sink, "m/w.bin", len, sha, &present), 0);
	CU_ASSERT_TRUE(present);
	rh_sink_close(sink);

	rh_test_rm_rf(tmp);
	free(data);
	free(state);
	free(final);
	free(tmp);
}

static void test_sink__cancel_mid_put(void)
{
	char *tmp = rh_test_tmpdir();
	size_t len = 4 * 1024 * 1024;
	unsigned char *data = pattern(len, 4);
	struct rh_cancel cancel;
	struct rh_sink *sink = NULL;
	char sha[65];

	rh_sha256_buf_hex(sha, data, len);
	CU_ASSERT_EQUAL_FATAL(rh_cancel_init(&cancel), 0);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	sink->cancel = &cancel;

	struct src s = { data, len, 0, 0, 0, 2 * 1024 * 1024, &cancel };

	CU_ASSERT_EQUAL(sink->ops->put(sink, "big.bin", len, sha, src_read, &s), RH_ECANCELLED);
	CU_ASSERT(s.off < len);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "big.bin"));
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);

	/* Once fired, nothing starts. */
	struct src s2 = { data, len, 0, 0, 0, 0, NULL };

	CU_ASSERT_EQUAL(sink->ops->put(sink, "big.bin", len, sha, src_read, &s2), RH_ECANCELLED);
	CU_ASSERT_EQUAL(s2.off, 0);
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);

	rh_sink_close(sink);
	rh_cancel_clear(&cancel);
	rh_test_rm_rf(tmp);
	free(data);
	free(tmp);
}

RH_TEST_MAIN("sink",
	     { "put_ok", test_sink__put_ok },
	     { "bad_data_leaves_nothing", test_sink__bad_data_leaves_nothing },
	     { "unsafe_paths", test_sink__unsafe_paths },
	     { "symlink_escape", test_sink__symlink_escape },
	     { "has_and_skip", test_sink__has_and_skip },
	     { "cancel_mid_put", test_sink__cancel_mid_put })
