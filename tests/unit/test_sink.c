/*
 * test_sink.c - the file sink: verified, atomic, confined, resumable writes,
 * and what every sink shares (URL dispatch, the path rule, the sources).
 *
 * Each failure path (wrong sha256, short or long input, a reader error,
 * cancellation, unsafe paths, symlinks out of the root, a write the disk
 * refuses) must leave nothing under the final name; a put cut off keeps a
 * partial that the next put of the same object resumes from (reading only
 * the rest of the source), a partial of another object is discarded, and
 * has() must skip unchanged files using the state file and notice changed
 * ones.
 */
#include "testlib.h"

#include "cancel.h"
#include "error.h"
#include "sha256.h"
#include "sink.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* A random-access test source over memory. `data_len` may differ from the
 * size it claims (src.size) to fake short sources. */
struct src {
	struct rh_source s;
	const unsigned char *data;
	size_t data_len;
	size_t chunk;           /* max bytes per read; 0: as asked */
	long fail_err;          /* reads at offset >= fail_at return this (0: never) */
	uint64_t fail_at;
	struct rh_cancel *fire; /* fired once a read reaches fail_at, if set */
	uint64_t min_off;       /* the lowest offset read */
	atomic_ulong reads;
};

static long src_read_at(void *user, uint64_t off, void *buf, size_t len)
{
	struct src *s = user;
	size_t n;

	s->reads++;
	if (off < s->min_off)
		s->min_off = off;
	if (s->fail_err && off >= s->fail_at)
		return rh_error_set((int)s->fail_err, "test source failed on purpose");
	if (s->fire && off >= s->fail_at)
		rh_cancel_fire(s->fire);
	if (off >= s->data_len)
		return 0;
	n = s->data_len - (size_t)off;
	if (n > len)
		n = len;
	if (s->chunk && n > s->chunk)
		n = s->chunk;
	memcpy(buf, s->data + off, n);
	return (long)n;
}

static void src_init(struct src *s, const unsigned char *data, size_t len)
{
	memset(s, 0, sizeof(*s));
	s->s.size = len;
	s->s.read_at = src_read_at;
	s->s.user = s;
	s->s.name = "test source";
	s->data = data;
	s->data_len = len;
	s->min_off = UINT64_MAX;
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

static off_t file_size(const char *dir, const char *needle)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	off_t size = -1;

	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL) {
		if (strstr(e->d_name, needle)) {
			char *p = rh_test_path(dir, e->d_name);
			struct stat sb;

			if (stat(p, &sb) == 0)
				size = sb.st_size;
			free(p);
		}
	}
	closedir(d);
	return size;
}

static uint64_t progress_sum;
static unsigned progress_calls;

static void on_progress(void *user, uint64_t delta)
{
	(void)user;
	progress_sum += delta;
	progress_calls++;
}

static int put(struct rh_sink *sink, const char *path, uint64_t size, const char *sha,
	       struct src *s, struct rh_put_stats *st)
{
	struct rh_put_stats dummy;

	return sink->ops->put(sink, path, size, sha, &s->s, st ? st : &dummy);
}

static void test_sink__put_ok(void)
{
	char *tmp = rh_test_tmpdir();
	char *root = rh_test_path(tmp, "deep/sink");
	char *final = rh_test_path(root, "a/b/weights.bin");
	size_t len = 3 * 1024 * 1024 + 17; /* not a multiple of the 1 MiB chunk */
	unsigned char *data = pattern(len, 1);
	struct rh_put_stats st = { 99, 99 };
	struct rh_sink *sink = NULL;
	struct src s;
	struct stat sb;
	char sha[65];
	char want_url[4200];

	rh_sha256_buf_hex(sha, data, len);
	src_init(&s, data, len);
	s.chunk = 100000; /* short reads are fine in the middle */
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, root), 0);
	snprintf(want_url, sizeof(want_url), "file://%s", root);
	CU_ASSERT_STRING_EQUAL(sink->url, want_url);
	CU_ASSERT_STRING_EQUAL(sink->location, root);
	CU_ASSERT_STRING_EQUAL(sink->ops->scheme, "file");
	CU_ASSERT(sink->ops->max_parallel >= 2);
	CU_ASSERT_EQUAL(sink->ops->version, RH_SINK_OPS_VERSION);
	CU_ASSERT_EQUAL(stat(root, &sb), 0);
	CU_ASSERT_EQUAL(sb.st_mode & 0777, 0700);

	progress_calls = 0;
	progress_sum = 0;
	sink->progress = on_progress;
	CU_ASSERT_EQUAL(put(sink, "a/b/weights.bin", len, sha, &s, &st), 0);
	CU_ASSERT(file_equals(final, data, len));
	CU_ASSERT(progress_calls >= 3);
	CU_ASSERT_EQUAL(progress_sum, len);
	CU_ASSERT_EQUAL(st.bytes_sent, len);
	CU_ASSERT_EQUAL(st.bytes_resumed, 0);
	CU_ASSERT_EQUAL(count_files(root, ".rh-part-"), 0);
	CU_ASSERT_EQUAL(sink->ops->commit(sink), 0);
	CU_ASSERT_EQUAL(count_files(root, ".rh-part-"), 0);

	/* An empty file is a file too. */
	struct src empty;
	char esha[65];

	src_init(&empty, data, 0);
	rh_sha256_buf_hex(esha, "", 0);
	CU_ASSERT_EQUAL(put(sink, "empty", 0, esha, &empty, &st), 0);
	CU_ASSERT_EQUAL(st.bytes_sent, 0);
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
	char *xdir = rh_test_path(tmp, "x");
	size_t len = 1500000;
	unsigned char *data = pattern(len, 2);
	struct rh_sink *sink = NULL;
	struct src s;
	char sha[65];
	char wrong[65];
	int err;

	rh_sha256_buf_hex(sha, data, len);
	memcpy(wrong, sha, 65);
	wrong[0] = wrong[0] == '0' ? '1' : '0';
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);

	/* Wrong sha256: the partial goes too (it is not worth resuming). */
	src_init(&s, data, len);
	err = put(sink, "x/f.bin", len, wrong, &s, NULL);
	CU_ASSERT_EQUAL(err, RH_EVERIFY);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "x/f.bin"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), sink->url));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "sha256"));
	CU_ASSERT_NOT_EQUAL(access(final, F_OK), 0);
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);

	/* Short input: the source ends before the size it claims. */
	src_init(&s, data, len);
	s.data_len = len - 1;
	CU_ASSERT_EQUAL(put(sink, "x/f.bin", len, sha, &s, NULL), RH_EVERIFY);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "ended"));
	CU_ASSERT_NOT_EQUAL(access(final, F_OK), 0);
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);

	/* A source larger than the manifest says: refused before a byte. */
	src_init(&s, data, len);
	CU_ASSERT_EQUAL(put(sink, "x/f.bin", len - 10, sha, &s, NULL), RH_EVERIFY);
	CU_ASSERT_EQUAL(s.reads, 0);
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);

	/* A bad digest string is refused before anything is written. */
	src_init(&s, data, len);
	CU_ASSERT_EQUAL(put(sink, "x/f.bin", len, "ABC", &s, NULL), RH_EINVAL);
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);

	/* The source fails half-way (a network error, say): the final name
	 * stays absent, the partial stays for a resume. */
	src_init(&s, data, len);
	s.chunk = 300000;
	s.fail_err = RH_EIO;
	s.fail_at = 1100000;
	CU_ASSERT_EQUAL(put(sink, "x/f.bin", len, sha, &s, NULL), RH_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "failed on purpose"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "x/f.bin"));
	CU_ASSERT_NOT_EQUAL(access(final, F_OK), 0);
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 1);
	CU_ASSERT_EQUAL(count_files(tmp, ".rh-part-"), 1);

	/* A failed put over an existing good file leaves the good file. */
	src_init(&s, data, len);
	CU_ASSERT_EQUAL(put(sink, "x/f.bin", len, sha, &s, NULL), 0);
	src_init(&s, data, len);
	CU_ASSERT_EQUAL(put(sink, "x/f.bin", len, wrong, &s, NULL), RH_EVERIFY);
	CU_ASSERT(file_equals(final, data, len));
	CU_ASSERT_EQUAL(count_files(tmp, ".rh-part-"), 0);

	rh_sink_close(sink);
	rh_test_rm_rf(tmp);
	free(data);
	free(final);
	free(xdir);
	free(tmp);
}

/* A disk that refuses writes (here RLIMIT_FSIZE, as a full disk would with
 * ENOSPC): a clear error, and no partial left to eat the space. */
static void test_sink__write_refused(void)
{
	char *tmp = rh_test_tmpdir();
	size_t len = 3u << 20;
	unsigned char *data = pattern(len, 9);
	struct rh_sink *sink = NULL;
	struct rlimit old, lim;
	struct src s;
	char sha[65];
	int err;

	rh_sha256_buf_hex(sha, data, len);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = 1u << 20;
	CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_FSIZE, &lim), 0);
	src_init(&s, data, len);
	err = put(sink, "big.bin", len, sha, &s, NULL);
	setrlimit(RLIMIT_FSIZE, &old);
	signal(SIGXFSZ, SIG_DFL);
	CU_ASSERT_EQUAL(err, RH_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "cannot write big.bin"));
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);
	rh_sink_close(sink);
	rh_test_rm_rf(tmp);
	free(data);
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
	char *root = rh_test_path(tmp, "root");
	struct rh_sink *sink = NULL;
	char sha[65];

	rh_sha256_buf_hex(sha, "x", 1);
	for (size_t i = 0; good[i]; i++)
		CU_ASSERT_TRUE(rh_sink_path_is_safe(good[i]));
	for (size_t i = 0; bad[i] && i < 13; i++)
		CU_ASSERT_FALSE(rh_sink_path_is_safe(bad[i]));
	CU_ASSERT_FALSE(rh_sink_path_is_safe(NULL));

	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, root), 0);
	for (size_t i = 0; bad[i]; i++) {
		struct src s;
		bool present = true;

		src_init(&s, (const unsigned char *)"x", 1);
		CU_ASSERT_EQUAL(put(sink, bad[i], 1, sha, &s, NULL), RH_EINVAL);
		CU_ASSERT_EQUAL(s.reads, 0); /* refused before reading */
		CU_ASSERT_EQUAL(sink->ops->has(sink, bad[i], 1, sha, &present), RH_EINVAL);
		CU_ASSERT_FALSE(present);
	}
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);
	rh_sink_close(sink);

	/* Nothing escaped into the parent either. */
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 0);
	rh_test_rm_rf(tmp);
	free(root);
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
	char *plink = NULL;
	struct rh_sink *sink = NULL;
	struct src s;
	struct stat sb;
	char sha[65];
	char part[300];
	bool present = true;

	rh_sha256_buf_hex(sha, "data", 4);
	CU_ASSERT_EQUAL_FATAL(mkdir(outside, 0700), 0);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, root), 0);
	CU_ASSERT_EQUAL_FATAL(symlink(outside, link), 0);
	CU_ASSERT_EQUAL_FATAL(mkdir(okdir, 0700), 0);
	CU_ASSERT_EQUAL_FATAL(symlink(outside, deep_link), 0);

	src_init(&s, (const unsigned char *)"data", 4);
	CU_ASSERT_EQUAL(put(sink, "evil/x", 4, sha, &s, NULL), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "symlink"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "evil/x"));
	src_init(&s, (const unsigned char *)"data", 4);
	CU_ASSERT_EQUAL(put(sink, "ok/evil2/sub/x", 4, sha, &s, NULL), RH_EINVAL);
	CU_ASSERT_EQUAL(count_files(outside, NULL), 0);
	CU_ASSERT_EQUAL(sink->ops->has(sink, "evil/x", 4, sha, &present), RH_EINVAL);
	CU_ASSERT_FALSE(present);

	/* A symlink as the final name is replaced, not written through. */
	rh_test_write_file(victim, "keep");
	CU_ASSERT_EQUAL_FATAL(symlink(victim, flink), 0);
	present = true;
	CU_ASSERT_EQUAL(sink->ops->has(sink, "file-link", 4, sha, &present), 0);
	CU_ASSERT_FALSE(present);
	src_init(&s, (const unsigned char *)"data", 4);
	CU_ASSERT_EQUAL(put(sink, "file-link", 4, sha, &s, NULL), 0);
	CU_ASSERT(file_equals(victim, (const unsigned char *)"keep", 4));
	CU_ASSERT(file_equals(flink, (const unsigned char *)"data", 4));
	CU_ASSERT_EQUAL(lstat(flink, &sb), 0);
	CU_ASSERT(S_ISREG(sb.st_mode));

	/* A symlink planted under the partial's name is not written through. */
	snprintf(part, sizeof(part), "planted.rh-part-%.16s", sha);
	plink = rh_test_path(root, part);
	CU_ASSERT_EQUAL_FATAL(symlink(victim, plink), 0);
	src_init(&s, (const unsigned char *)"data", 4);
	CU_ASSERT_EQUAL(put(sink, "planted", 4, sha, &s, NULL), 0);
	CU_ASSERT(file_equals(victim, (const unsigned char *)"keep", 4));
	free(plink);
	plink = rh_test_path(root, "planted");
	CU_ASSERT(file_equals(plink, (const unsigned char *)"data", 4));

	rh_sink_close(sink);
	rh_test_rm_rf(tmp);
	free(plink);
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
	struct src s;
	char sha[65];
	char other[65];
	bool present = false;

	rh_sha256_buf_hex(sha, data, len);
	rh_sha256_buf_hex(other, "other", 5);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	CU_ASSERT_EQUAL(sink->ops->has(sink, "m/w.bin", len, sha, &present), 0);
	CU_ASSERT_FALSE(present);

	src_init(&s, data, len);
	CU_ASSERT_EQUAL(put(sink, "m/w.bin", len, sha, &s, NULL), 0);
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
	src_init(&s, data, len);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	CU_ASSERT_EQUAL(put(sink, "m/w.bin", len, sha, &s, NULL), 0);
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
	struct src s;
	char sha[65];

	rh_sha256_buf_hex(sha, data, len);
	CU_ASSERT_EQUAL_FATAL(rh_cancel_init(&cancel), 0);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	sink->cancel = &cancel;

	src_init(&s, data, len);
	s.fire = &cancel;
	s.fail_at = 2 * 1024 * 1024;
	CU_ASSERT_EQUAL(put(sink, "big.bin", len, sha, &s, NULL), RH_ECANCELLED);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "big.bin"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "cancelled"));
	/* No final name; the partial is kept for the next run. */
	CU_ASSERT_EQUAL(count_files(tmp, NULL), 1);
	CU_ASSERT_EQUAL(count_files(tmp, ".rh-part-"), 1);

	/* Once fired, nothing starts. */
	src_init(&s, data, len);
	CU_ASSERT_EQUAL(put(sink, "big.bin", len, sha, &s, NULL), RH_ECANCELLED);
	CU_ASSERT_EQUAL(s.reads, 0);
	CU_ASSERT_EQUAL(count_files(tmp, ".rh-part-"), 1);

	rh_sink_close(sink);
	rh_cancel_clear(&cancel);
	rh_test_rm_rf(tmp);
	free(data);
	free(tmp);
}

/* A put cut off at ~5 MiB of 12 MiB; the next put of the same object reads
 * only the rest of the source and still verifies the whole. */
static void test_sink__resume(void)
{
	char *tmp = rh_test_tmpdir();
	char *final = rh_test_path(tmp, "w/shard.bin");
	char *wdir = rh_test_path(tmp, "w");
	size_t len = 12u << 20;
	unsigned char *data = pattern(len, 5);
	struct rh_put_stats st;
	struct rh_sink *sink = NULL;
	struct src s;
	off_t kept;
	char sha[65];

	rh_sha256_buf_hex(sha, data, len);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	src_init(&s, data, len);
	s.fail_err = RH_EIO;
	s.fail_at = 5u << 20;
	CU_ASSERT_EQUAL(put(sink, "w/shard.bin", len, sha, &s, &st), RH_EIO);
	kept = file_size(wdir, ".rh-part-");
	CU_ASSERT(kept > 0 && kept <= (off_t)(5u << 20));
	CU_ASSERT_EQUAL(st.bytes_sent, (uint64_t)kept);
	rh_sink_close(sink);

	/* Another process (a new sink) resumes it. */
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	progress_sum = 0;
	sink->progress = on_progress;
	src_init(&s, data, len);
	CU_ASSERT_EQUAL(put(sink, "w/shard.bin", len, sha, &s, &st), 0);
	CU_ASSERT_EQUAL(st.bytes_resumed, (uint64_t)kept);
	CU_ASSERT_EQUAL(st.bytes_sent, len - (uint64_t)kept);
	CU_ASSERT_EQUAL(progress_sum, len - (uint64_t)kept);
	CU_ASSERT_EQUAL(s.min_off, (uint64_t)kept); /* only the rest was read */
	CU_ASSERT(file_equals(final, data, len));
	CU_ASSERT_EQUAL(count_files(tmp, ".rh-part-"), 0);
	rh_sink_close(sink);

	rh_test_rm_rf(tmp);
	free(data);
	free(wdir);
	free(final);
	free(tmp);
}

/* A partial of another object at the same path is discarded, and a partial
 * under the right name whose bytes are wrong costs one full resend. */
static void test_sink__resume_wrong_partial(void)
{
	char *tmp = rh_test_tmpdir();
	char *final = rh_test_path(tmp, "f.bin");
	size_t len = 3u << 20;
	unsigned char *a = pattern(len, 6);
	unsigned char *b = pattern(len, 7);
	struct rh_put_stats st;
	struct rh_sink *sink = NULL;
	struct src s;
	char sha_a[65], sha_b[65];
	char part[300];
	char *ppath;

	rh_sha256_buf_hex(sha_a, a, len);
	rh_sha256_buf_hex(sha_b, b, len);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);

	/* Object A is cut off; then the registry moves on to object B. */
	src_init(&s, a, len);
	s.fail_err = RH_EIO;
	s.fail_at = 2u << 20;
	CU_ASSERT_EQUAL(put(sink, "f.bin", len, sha_a, &s, NULL), RH_EIO);
	CU_ASSERT_EQUAL(count_files(tmp, ".rh-part-"), 1);
	src_init(&s, b, len);
	CU_ASSERT_EQUAL(put(sink, "f.bin", len, sha_b, &s, &st), 0);
	CU_ASSERT_EQUAL(st.bytes_resumed, 0);
	CU_ASSERT_EQUAL(st.bytes_sent, len);
	CU_ASSERT_EQUAL(s.min_off, 0);
	CU_ASSERT(file_equals(final, b, len));
	CU_ASSERT_EQUAL(count_files(tmp, ".rh-part-"), 0);

	/* A's partial name, but bytes of B in it: the whole is resent once. */
	snprintf(part, sizeof(part), "f.bin.rh-part-%.16s", sha_a);
	ppath = rh_test_path(tmp, part);
	{
		FILE *f = fopen(ppath, "wb");

		CU_ASSERT_FATAL(f != NULL);
		CU_ASSERT_EQUAL(fwrite(b, 1, len / 2, f), len / 2);
		fclose(f);
	}
	src_init(&s, a, len);
	CU_ASSERT_EQUAL(put(sink, "f.bin", len, sha_a, &s, &st), 0);
	CU_ASSERT_EQUAL(st.bytes_resumed, 0);
	CU_ASSERT_EQUAL(st.bytes_sent, len + len / 2);
	CU_ASSERT(file_equals(final, a, len));
	CU_ASSERT_EQUAL(count_files(tmp, ".rh-part-"), 0);

	/* A partial longer than the object is reset, not trusted. */
	{
		FILE *f = fopen(ppath, "wb");

		CU_ASSERT_FATAL(f != NULL);
		CU_ASSERT_EQUAL(fwrite(b, 1, len, f), len);
		CU_ASSERT_EQUAL(fwrite(b, 1, 10, f), 10);
		fclose(f);
	}
	src_init(&s, a, len);
	CU_ASSERT_EQUAL(put(sink, "f.bin", len, sha_a, &s, &st), 0);
	CU_ASSERT_EQUAL(st.bytes_resumed, 0);
	CU_ASSERT_EQUAL(st.bytes_sent, len);
	CU_ASSERT(file_equals(final, a, len));

	rh_sink_close(sink);
	rh_test_rm_rf(tmp);
	free(ppath);
	free(a);
	free(b);
	free(final);
	free(tmp);
}

struct par_job {
	struct rh_sink *sink;
	pthread_barrier_t *go;
	char path[32];
	unsigned char *data;
	size_t len;
	char sha[65];
	int rc;
};

static void *par_put(void *arg)
{
	struct par_job *j = arg;
	struct rh_put_stats st;
	struct src s;

	src_init(&s, j->data, j->len);
	pthread_barrier_wait(j->go);
	j->rc = j->sink->ops->put(j->sink, j->path, j->len, j->sha, &s.s, &st);
	if (j->rc == 0 && st.bytes_sent != j->len)
		j->rc = -100;
	return NULL;
}

static void test_sink__parallel_puts(void)
{
	enum { N = 4 };
	char *tmp = rh_test_tmpdir();
	struct par_job jobs[N];
	pthread_t tids[N];
	pthread_barrier_t go;
	struct rh_sink *sink = NULL;
	bool present;

	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	CU_ASSERT_FATAL(sink->ops->max_parallel >= N);
	progress_sum = 0;
	sink->progress = NULL;
	pthread_barrier_init(&go, NULL, N);
	for (int i = 0; i < N; i++) {
		jobs[i].sink = sink;
		jobs[i].go = &go;
		snprintf(jobs[i].path, sizeof(jobs[i].path), "d%d/part-%d.bin", i % 2, i);
		jobs[i].len = (2u << 20) + (size_t)i * 4099;
		jobs[i].data = pattern(jobs[i].len, 20 + (unsigned)i);
		rh_sha256_buf_hex(jobs[i].sha, jobs[i].data, jobs[i].len);
		jobs[i].rc = -1;
		CU_ASSERT_EQUAL_FATAL(pthread_create(&tids[i], NULL, par_put, &jobs[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(tids[i], NULL);
	pthread_barrier_destroy(&go);
	for (int i = 0; i < N; i++) {
		char *p = rh_test_path(tmp, jobs[i].path);

		CU_ASSERT_EQUAL(jobs[i].rc, 0);
		CU_ASSERT(file_equals(p, jobs[i].data, jobs[i].len));
		free(p);
	}
	CU_ASSERT_EQUAL(count_files(tmp, ".rh-part-"), 0);
	CU_ASSERT_EQUAL(sink->ops->commit(sink), 0);
	rh_sink_close(sink);
	/* Every put was recorded in the state, despite running at once. */
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, tmp), 0);
	for (int i = 0; i < N; i++) {
		present = false;
		CU_ASSERT_EQUAL(sink->ops->has(sink, jobs[i].path, jobs[i].len, jobs[i].sha,
					       &present), 0);
		CU_ASSERT_TRUE(present);
		free(jobs[i].data);
	}
	rh_sink_close(sink);
	rh_test_rm_rf(tmp);
	free(tmp);
}

static void test_sink__open_by_url(void)
{
	static const struct rh_sink_opts opts = RH_SINK_OPTS_INIT;
	struct rh_sink_opts bad_version = RH_SINK_OPTS_INIT;
	char *tmp = rh_test_tmpdir();
	char *want = rh_test_path(tmp, "a b");
	struct rh_sink *sink = NULL;
	char url[4200];

	snprintf(url, sizeof(url), "file://%s/a%%20b", tmp);
	CU_ASSERT_EQUAL(rh_sink_open(&sink, url, &opts), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(sink);
	CU_ASSERT_STRING_EQUAL(sink->location, want);
	CU_ASSERT_STRING_EQUAL(sink->ops->scheme, "file");
	rh_sink_close(sink);
	sink = NULL;
	/* A plain absolute path is a file target too; opts may be NULL. */
	CU_ASSERT_EQUAL(rh_sink_open(&sink, want, NULL), 0);
	CU_ASSERT_PTR_NOT_NULL(sink);
	rh_sink_close(sink);
	sink = NULL;

	CU_ASSERT_EQUAL(rh_sink_open(&sink, "file://relative/dir", &opts), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "absolute"));
	CU_ASSERT_EQUAL(rh_sink_open(&sink, "file:///x/%zz", &opts), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_sink_open(&sink, "", &opts), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_sink_open(&sink, "ftp://user:hunter2@host/dir", &opts), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "ftp://user:***@host/dir"));
	CU_ASSERT_PTR_NULL(strstr(rh_error_last(), "hunter2"));
	bad_version.version = 99;
	CU_ASSERT_EQUAL(rh_sink_open(&sink, url, &bad_version), RH_EINVAL);
	CU_ASSERT_PTR_NULL(sink);

	rh_test_rm_rf(tmp);
	free(want);
	free(tmp);
}

static void test_sink__sources(void)
{
	char *tmp = rh_test_tmpdir();
	char *path = rh_test_path(tmp, "f");
	struct rh_source *src = NULL;
	struct rh_source mem;
	char buf[16];

	rh_test_write_file(path, "0123456789");
	CU_ASSERT_EQUAL_FATAL(rh_source_file_open(&src, path), 0);
	CU_ASSERT_EQUAL(src->size, 10);
	CU_ASSERT_STRING_EQUAL(src->name, path);
	CU_ASSERT_EQUAL(src->read_at(src->user, 3, buf, 4), 4);
	CU_ASSERT_EQUAL(memcmp(buf, "3456", 4), 0);
	CU_ASSERT_EQUAL(src->read_at(src->user, 8, buf, 16), 2); /* short only at the end */
	CU_ASSERT_EQUAL(memcmp(buf, "89", 2), 0);
	CU_ASSERT_EQUAL(src->read_at(src->user, 10, buf, 16), 0);
	CU_ASSERT_EQUAL(src->read_at(src->user, 1000, buf, 16), 0);
	rh_source_file_close(src);
	rh_source_file_close(NULL);

	CU_ASSERT_EQUAL(rh_source_file_open(&src, "/nonexistent/rehydra/x"), RH_ENOTFOUND);
	CU_ASSERT_PTR_NULL(src);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "/nonexistent/rehydra/x"));
	CU_ASSERT_EQUAL(rh_source_file_open(&src, tmp), RH_EINVAL);

	rh_source_mem_init(&mem, "abcdef", 6, "mem");
	CU_ASSERT_EQUAL(mem.size, 6);
	CU_ASSERT_EQUAL(mem.read_at(mem.user, 4, buf, 16), 2);
	CU_ASSERT_EQUAL(memcmp(buf, "ef", 2), 0);
	CU_ASSERT_EQUAL(mem.read_at(mem.user, 6, buf, 16), 0);
	CU_ASSERT_EQUAL(mem.read_at(mem.user, 0, buf, 3), 3);
	CU_ASSERT_EQUAL(memcmp(buf, "abc", 3), 0);

	rh_test_rm_rf(tmp);
	free(path);
	free(tmp);
}

/* Does the filesystem under dir clone files (FICLONE)? Asked directly, so
 * the test knows which of reflink and hard link the sink should pick. */
static bool fs_clones(const char *dir)
{
	char *a = rh_test_path(dir, "clone-a");
	char *b = rh_test_path(dir, "clone-b");
	int fa, fb;
	bool ok = false;

	rh_test_write_file(a, "x");
	fa = open(a, O_RDONLY);
	fb = open(b, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fa >= 0 && fb >= 0)
		ok = ioctl(fb, FICLONE, fa) == 0;
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	unlink(a);
	unlink(b);
	free(a);
	free(b);
	return ok;
}

/* A local, read-only source on the sink's filesystem arrives without a
 * copy (a reflink, else a hard link) and is still hashed; a writable one is
 * never hard-linked; a read-only one with other bytes is refused. */
static void test_sink__link_not_copy(void)
{
	char *tmp = rh_test_tmpdir();
	char *root = rh_test_path(tmp, "sink");
	char *obj = rh_test_path(tmp, "object");
	char *rw = rh_test_path(tmp, "writable");
	char *final = rh_test_path(root, "m/weights.bin");
	size_t len = 3 * 1024 * 1024 + 17;
	unsigned char *data = pattern(len, 13);
	bool clones = fs_clones(tmp);
	struct rh_sink *sink = NULL;
	struct rh_source *src = NULL;
	struct rh_put_stats st;
	struct stat so, sf;
	char sha[65], wrong[65];
	bool present = false;
	FILE *f;

	rh_sha256_buf_hex(sha, data, len);
	f = fopen(obj, "wb");
	CU_ASSERT_FATAL(f != NULL);
	CU_ASSERT_EQUAL(fwrite(data, 1, len, f), len);
	fclose(f);
	CU_ASSERT_EQUAL(chmod(obj, 0444), 0);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, root), 0);
	CU_ASSERT_EQUAL_FATAL(rh_source_file_open(&src, obj), 0);
	progress_sum = 0;
	sink->progress = on_progress;
	CU_ASSERT_EQUAL(sink->ops->put(sink, "m/weights.bin", len, sha, src, &st), 0);
	CU_ASSERT_EQUAL(st.bytes_sent, len);
	CU_ASSERT_EQUAL(progress_sum, len);
	CU_ASSERT_TRUE(file_equals(final, data, len));
	CU_ASSERT_EQUAL(stat(obj, &so), 0);
	CU_ASSERT_EQUAL(stat(final, &sf), 0);
	if (clones) {
		printf("reflink ");
		CU_ASSERT_NOT_EQUAL(sf.st_ino, so.st_ino);
	} else {
		printf("hard link ");
		CU_ASSERT_EQUAL(sf.st_ino, so.st_ino);
		CU_ASSERT_EQUAL(so.st_nlink, 2);
	}
	CU_ASSERT_EQUAL(count_files(root, ".rh-part-"), 0);
	CU_ASSERT_EQUAL(sink->ops->has(sink, "m/weights.bin", len, sha, &present), 0);
	CU_ASSERT_TRUE(present);
	rh_source_file_close(src);

	/* the same bytes, but writable: a copy or a clone, never the same inode */
	f = fopen(rw, "wb");
	CU_ASSERT_FATAL(f != NULL);
	CU_ASSERT_EQUAL(fwrite(data, 1, len, f), len);
	fclose(f);
	CU_ASSERT_EQUAL_FATAL(rh_source_file_open(&src, rw), 0);
	CU_ASSERT_EQUAL(sink->ops->put(sink, "rw.bin", len, sha, src, &st), 0);
	rh_source_file_close(src);
	{
		char *p = rh_test_path(root, "rw.bin");

		CU_ASSERT_EQUAL(stat(rw, &so), 0);
		CU_ASSERT_EQUAL(stat(p, &sf), 0);
		CU_ASSERT_NOT_EQUAL(sf.st_ino, so.st_ino);
		CU_ASSERT_EQUAL(so.st_nlink, 1);
		CU_ASSERT_TRUE(file_equals(p, data, len));
		free(p);
	}

	/* read-only but not the bytes the manifest names: nothing arrives */
	rh_sha256_buf_hex(wrong, "other", 5);
	CU_ASSERT_EQUAL_FATAL(rh_source_file_open(&src, obj), 0);
	CU_ASSERT_EQUAL(sink->ops->put(sink, "m/other.bin", len, wrong, src, &st), RH_EVERIFY);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "m/other.bin"));
	rh_source_file_close(src);
	{
		char *p = rh_test_path(root, "m/other.bin");

		CU_ASSERT_NOT_EQUAL(access(p, F_OK), 0);
		free(p);
	}
	CU_ASSERT_EQUAL(count_files(root, ".rh-part-"), 0);
	CU_ASSERT_EQUAL(stat(obj, &so), 0);
	CU_ASSERT_EQUAL(so.st_nlink, clones ? 1 : 2); /* only weights.bin links it */
	CU_ASSERT_EQUAL(sink->ops->commit(sink), 0);
	rh_sink_close(sink);
	chmod(obj, 0644);
	rh_test_rm_rf(tmp);
	free(data);
	free(final);
	free(rw);
	free(obj);
	free(root);
	free(tmp);
}

static uint64_t copy_delta_max;
static struct rh_cancel *copy_cancel;

static void on_copy_progress(void *user, uint64_t delta)
{
	(void)user;
	progress_sum += delta;
	if (delta > copy_delta_max)
		copy_delta_max = delta;
	if (copy_cancel)
		rh_cancel_fire(copy_cancel);
}

static void write_file(const char *path, const unsigned char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	CU_ASSERT_FATAL(f != NULL);
	CU_ASSERT_EQUAL(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* A writable local source on a filesystem that cannot clone is copied by
 * the kernel (copy_file_range) and hashed where it landed: the bytes
 * arrive (in ranges larger than the 1 MiB the streaming path moves, which
 * is how this test knows that path was not taken), other bytes than the
 * manifest's are refused with nothing left behind, a source that grew past
 * its size is refused, and a cancelled copy keeps its partial for the next
 * put to resume. */
static void test_sink__copy_range(void)
{
	char *tmp = rh_test_tmpdir();
	char *root = rh_test_path(tmp, "sink");
	char *rw = rh_test_path(tmp, "writable");
	char *final = rh_test_path(root, "w/weights.bin");
	size_t len = 20 * 1024 * 1024 + 4097;
	unsigned char *data = pattern(len, 29);
	struct rh_sink *sink = NULL;
	struct rh_source *src = NULL;
	struct rh_put_stats st;
	struct rh_cancel cancel;
	char sha[65], wrong[65];

	if (fs_clones(tmp)) {
		printf("skipped: %s clones, the clone path is taken ", tmp);
		goto out;
	}
	rh_sha256_buf_hex(sha, data, len);
	write_file(rw, data, len);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, root), 0);
	sink->progress = on_copy_progress;

	/* the copy */
	progress_sum = copy_delta_max = 0;
	CU_ASSERT_EQUAL_FATAL(rh_source_file_open(&src, rw), 0);
	CU_ASSERT_EQUAL(sink->ops->put(sink, "w/weights.bin", len, sha, src, &st), 0);
	rh_source_file_close(src);
	CU_ASSERT_EQUAL(st.bytes_sent, len);
	CU_ASSERT_EQUAL(progress_sum, len);
	CU_ASSERT_TRUE(copy_delta_max > 1024 * 1024);
	CU_ASSERT_TRUE(file_equals(final, data, len));
	CU_ASSERT_EQUAL(count_files(root, ".rh-part-"), 0);

	/* other bytes than the manifest names */
	rh_sha256_buf_hex(wrong, "other", 5);
	CU_ASSERT_EQUAL_FATAL(rh_source_file_open(&src, rw), 0);
	CU_ASSERT_EQUAL(sink->ops->put(sink, "w/other.bin", len, wrong, src, &st), RH_EVERIFY);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "sha256 mismatch for w/other.bin"));
	rh_source_file_close(src);
	CU_ASSERT_EQUAL(count_files(root, "other.bin"), 0);

	/* a source that grew after it was opened */
	CU_ASSERT_EQUAL_FATAL(rh_source_file_open(&src, rw), 0);
	{
		FILE *f = fopen(rw, "ab");

		CU_ASSERT_FATAL(f != NULL);
		fputc('x', f);
		fclose(f);
	}
	CU_ASSERT_EQUAL(sink->ops->put(sink, "w/grown.bin", len, sha, src, &st), RH_EVERIFY);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "larger"));
	rh_source_file_close(src);
	CU_ASSERT_EQUAL(count_files(root, "grown.bin"), 0);
	CU_ASSERT_EQUAL(truncate(rw, (off_t)len), 0);

	/* cancelled after the first range: the partial stays, the next put
	 * resumes from it and still verifies the whole */
	CU_ASSERT_EQUAL_FATAL(rh_cancel_init(&cancel), 0);
	sink->cancel = &cancel;
	copy_cancel = &cancel;
	CU_ASSERT_EQUAL_FATAL(rh_source_file_open(&src, rw), 0);
	CU_ASSERT_EQUAL(sink->ops->put(sink, "w/again.bin", len, sha, src, &st), RH_ECANCELLED);
	CU_ASSERT_EQUAL(count_files(root, ".rh-part-"), 1);
	sink->cancel = NULL;
	copy_cancel = NULL;
	CU_ASSERT_EQUAL(sink->ops->put(sink, "w/again.bin", len, sha, src, &st), 0);
	CU_ASSERT_TRUE(st.bytes_resumed > 0);
	CU_ASSERT_EQUAL(st.bytes_resumed + st.bytes_sent, len);
	rh_source_file_close(src);
	rh_cancel_clear(&cancel);
	{
		char *p = rh_test_path(root, "w/again.bin");

		CU_ASSERT_TRUE(file_equals(p, data, len));
		free(p);
	}
	CU_ASSERT_EQUAL(count_files(root, ".rh-part-"), 0);
	CU_ASSERT_EQUAL(sink->ops->commit(sink), 0);
	rh_sink_close(sink);
out:
	rh_test_rm_rf(tmp);
	free(data);
	free(final);
	free(rw);
	free(root);
	free(tmp);
}

/* The manifest all three sinks keep: set/match/forget, the text it stores
 * and reading it back, and what it refuses to trust. */
static void test_sink__manifest_helper(void)
{
	static const char sha[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
	struct rh_sink_manifest m, back;
	const json_t *e;
	json_t *doc;
	char *text = NULL;

	CU_ASSERT_EQUAL_FATAL(rh_sink_manifest_init(&m), 0);
	CU_ASSERT_FALSE(m.dirty);
	CU_ASSERT_PTR_NULL(rh_sink_manifest_get(&m, "a.bin"));
	CU_ASSERT_EQUAL(rh_sink_manifest_set(&m, "a.bin", 3, sha, json_pack("{s:i}", "mtime", 7),
					     "file:///x"),
			0);
	CU_ASSERT_TRUE(m.dirty);
	e = rh_sink_manifest_match(&m, "a.bin", 3, sha);
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(e, "mtime")), 7);
	CU_ASSERT_PTR_NULL(rh_sink_manifest_match(&m, "a.bin", 4, sha));
	CU_ASSERT_PTR_NULL(rh_sink_manifest_match(&m, "a.bin", 3, "00"));
	CU_ASSERT_EQUAL(rh_sink_manifest_set(&m, "b.bin", 0, sha, NULL, "file:///x"), 0);

	CU_ASSERT_EQUAL_FATAL(rh_sink_manifest_text(&m, &text, "file:///x"), 0);
	rh_sink_manifest_saved(&m);
	CU_ASSERT_FALSE(m.dirty);
	CU_ASSERT_EQUAL_FATAL(rh_sink_manifest_init(&back), 0);
	doc = json_loads(text, 0, NULL);
	rh_sink_manifest_adopt(&back, doc);
	json_decref(doc);
	CU_ASSERT_PTR_NOT_NULL(rh_sink_manifest_match(&back, "a.bin", 3, sha));
	CU_ASSERT_PTR_NOT_NULL(rh_sink_manifest_match(&back, "b.bin", 0, sha));
	CU_ASSERT_FALSE(back.dirty);
	rh_sink_manifest_forget(&back, "nope");
	CU_ASSERT_FALSE(back.dirty);
	rh_sink_manifest_forget(&back, "a.bin");
	CU_ASSERT_TRUE(back.dirty);
	CU_ASSERT_PTR_NULL(rh_sink_manifest_get(&back, "a.bin"));
	rh_sink_manifest_release(&back);

	/* another format, or an entry whose sha256 is no digest: not trusted */
	CU_ASSERT_EQUAL_FATAL(rh_sink_manifest_init(&back), 0);
	doc = json_pack("{s:i, s:{s:{s:i, s:s}}}", "rehydra_sink", 2, "files", "a.bin", "size",
			3, "sha256", sha);
	rh_sink_manifest_adopt(&back, doc);
	json_decref(doc);
	CU_ASSERT_PTR_NULL(rh_sink_manifest_get(&back, "a.bin"));
	doc = json_pack("{s:i, s:{s:{s:i, s:s}}}", "rehydra_sink", 1, "files", "a.bin", "size",
			3, "sha256", "ZZ");
	rh_sink_manifest_adopt(&back, doc);
	json_decref(doc);
	CU_ASSERT_PTR_NULL(rh_sink_manifest_get(&back, "a.bin"));
	rh_sink_manifest_release(&back);
	rh_sink_manifest_release(&m);
	free(text);
}

RH_TEST_MAIN("sink",
	     { "put_ok", test_sink__put_ok },
	     { "bad_data_leaves_nothing", test_sink__bad_data_leaves_nothing },
	     { "write_refused", test_sink__write_refused },
	     { "unsafe_paths", test_sink__unsafe_paths },
	     { "symlink_escape", test_sink__symlink_escape },
	     { "has_and_skip", test_sink__has_and_skip },
	     { "cancel_mid_put", test_sink__cancel_mid_put },
	     { "resume", test_sink__resume },
	     { "resume_wrong_partial", test_sink__resume_wrong_partial },
	     { "parallel_puts", test_sink__parallel_puts },
	     { "open_by_url", test_sink__open_by_url },
	     { "sources", test_sink__sources },
	     { "link_not_copy", test_sink__link_not_copy },
	     { "copy_range", test_sink__copy_range },
	     { "manifest_helper", test_sink__manifest_helper })
