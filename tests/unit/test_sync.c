/*
 * test_sync.c - copying a model version from a registry into a sink.
 *
 * The registry is a real git repository (libgit2 init) holding versions
 * published by rh_registry_publish, with LFS objects in its store; the sink
 * is the real file sink, sometimes behind a thin counting wrapper that
 * measures how many puts overlap and can cancel the run from inside. The
 * cases: the delta (an unchanged re-sync sends nothing, one changed file
 * sends only its bytes), the parallelism bound, cancel and resume, and a
 * corrupt registry object that must fail naming the file and leave nothing
 * under its final name; rh_sync_verify on good and bad stores.
 */
#include "testlib.h"

#include "cancel.h"
#include "error.h"
#include "publish.h"
#include "registry.h"
#include "sha256.h"
#include "sink.h"
#include "sync.h"

#include <dirent.h>
#include <git2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#define N_FILES 8

struct fx {
	char *tmp;
	char *repo;
	char *cache;
	struct rh_registry *reg;
};

static unsigned char *pattern(size_t len, unsigned seed)
{
	unsigned char *p = malloc(len ? len : 1);
	uint32_t x = seed * 2654435761u + 3;

	CU_ASSERT_FATAL(p != NULL);
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (unsigned char)(x >> 16);
	}
	return p;
}

static size_t file_len(int i)
{
	return (size_t)(i + 1) * 300000 + (size_t)i;
}

static void write_bytes(const char *path, const unsigned char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	CU_ASSERT_FATAL(f != NULL);
	CU_ASSERT_FATAL(fwrite(data, 1, len, f) == len);
	CU_ASSERT_FATAL(fclose(f) == 0);
}

/* Publishes NAME@version with files a.bin..h.bin; file `changed` (or -1)
 * gets other bytes. */
static void fx_publish(struct fx *f, const char *version, int changed)
{
	char *dir = rh_test_path(f->tmp, version);
	struct rh_publish_opts po = RH_PUBLISH_OPTS_INIT;
	const char *inputs[1] = { dir };

	CU_ASSERT_FATAL(mkdir(dir, 0700) == 0);
	for (int i = 0; i < N_FILES; i++) {
		char name[16];
		char *p;
		unsigned char *data = pattern(file_len(i), (unsigned)i + (i == changed ? 777 : 0));

		snprintf(name, sizeof(name), "%c.bin", 'a' + i);
		p = rh_test_path(dir, name);
		write_bytes(p, data, file_len(i));
		free(p);
		free(data);
	}
	po.license = "Apache-2.0";
	CU_ASSERT_EQUAL_FATAL(rh_registry_publish(NULL, f->repo, "m", version, inputs, 1, &po),
			      0);
	free(dir);
}

static void fx_init(struct fx *f)
{
	git_repository *repo = NULL;

	memset(f, 0, sizeof(*f));
	f->tmp = rh_test_tmpdir();
	f->repo = rh_test_path(f->tmp, "registry.git");
	f->cache = rh_test_path(f->tmp, "cache");
	git_libgit2_init();
	CU_ASSERT_EQUAL_FATAL(git_repository_init(&repo, f->repo, 1), 0);
	git_repository_free(repo);
	setenv("REHYDRA_AUTHOR_NAME", "rehydra-test", 1);
	setenv("REHYDRA_AUTHOR_EMAIL", "test@rehydra.invalid", 1);
	fx_publish(f, "1.0", -1);
	fx_publish(f, "1.1", 5); /* f.bin differs */
	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&f->reg, f->repo, f->cache), 0);
}

static void fx_free(struct fx *f)
{
	rh_registry_free(f->reg);
	rh_test_rm_rf(f->tmp);
	free(f->repo);
	free(f->cache);
	free(f->tmp);
	git_libgit2_shutdown();
}

static bool file_matches(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *got = malloc(len + 1);
	size_t n;
	bool ok;

	if (!fp || !got) {
		if (fp)
			fclose(fp);
		free(got);
		return false;
	}
	n = fread(got, 1, len + 1, fp);
	fclose(fp);
	ok = n == len && memcmp(got, data, len) == 0;
	free(got);
	return ok;
}

static int count_named(const char *dir, const char *needle)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)) != NULL)
		if (strstr(e->d_name, needle))
			n++;
	closedir(d);
	return n;
}

/* A sink in front of the file sink: counts overlapping puts, can slow
 * them down, and can fire a cancel token once the first put is done. */
struct wrap {
	struct rh_sink base;
	struct rh_sink *inner;
	atomic_int inflight;
	atomic_int max_inflight;
	atomic_int puts;
	unsigned delay_us;
	struct rh_cancel *fire_after_first;
};

static int wrap_has(struct rh_sink *s, const char *path, uint64_t size, const char *sha,
		    bool *present)
{
	struct wrap *w = (struct wrap *)s;

	/* has() runs before any put and never beside one: hand down the
	 * sync's cancel token and progress hook here, once. */
	w->inner->cancel = s->cancel;
	w->inner->progress = s->progress;
	w->inner->progress_user = s->progress_user;
	return w->inner->ops->has(w->inner, path, size, sha, present);
}

static int wrap_put(struct rh_sink *s, const char *path, uint64_t size, const char *sha,
		    const struct rh_source *src, struct rh_put_stats *st)
{
	struct wrap *w = (struct wrap *)s;
	int now = ++w->inflight;
	int seen = w->max_inflight;
	int rc;

	while (now > seen && !atomic_compare_exchange_weak(&w->max_inflight, &seen, now))
		;
	if (w->delay_us)
		usleep(w->delay_us);
	rc = w->inner->ops->put(w->inner, path, size, sha, src, st);
	w->inflight--;
	if (++w->puts == 1 && w->fire_after_first)
		rh_cancel_fire(w->fire_after_first);
	return rc;
}

static int wrap_commit(struct rh_sink *s)
{
	struct wrap *w = (struct wrap *)s;

	return w->inner->ops->commit(w->inner);
}

static void wrap_close(struct rh_sink *s)
{
	(void)s;
}

static const struct rh_sink_ops wrap_ops = {
	.version = RH_SINK_OPS_VERSION,
	.scheme = "file",
	.max_parallel = 4,
	.has = wrap_has,
	.put = wrap_put,
	.commit = wrap_commit,
	.close = wrap_close,
};

static void wrap_init(struct wrap *w, struct rh_sink *inner)
{
	memset(w, 0, sizeof(*w));
	w->base.ops = &wrap_ops;
	w->base.url = inner->url;
	w->base.location = inner->location;
	w->inner = inner;
}

static uint64_t last_done, last_total;
static unsigned progress_calls;

static void on_progress(void *user, const struct rh_sync_progress *p)
{
	(void)user;
	CU_ASSERT(p->done <= p->total);
	last_done = p->done;
	last_total = p->total;
	progress_calls++;
}

static void test_sync__delta(void)
{
	struct fx f;
	struct rh_model_version *v1 = NULL, *v2 = NULL;
	struct rh_sync_opts opts = RH_SYNC_OPTS_INIT;
	struct rh_sync_stats st;
	struct rh_sink *sink = NULL;
	char *target;
	char *mpath;
	uint64_t changed = 0;

	fx_init(&f);
	target = rh_test_path(f.tmp, "target");
	mpath = rh_test_path(target, "manifest.json");
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v1, f.reg, "m", "1.0", NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v2, f.reg, "m", "1.1", NULL), 0);
	CU_ASSERT_EQUAL_FATAL(v1->n_files, N_FILES);

	/* First sync: everything moves, the manifest lands with its exact bytes. */
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, target), 0);
	opts.progress = on_progress;
	progress_calls = 0;
	CU_ASSERT_EQUAL(rh_sync_run(f.reg, v1, sink, &opts, &st), 0);
	CU_ASSERT_EQUAL(st.files, N_FILES);
	CU_ASSERT_EQUAL(st.files_sent, N_FILES);
	CU_ASSERT_EQUAL(st.files_skipped, 0);
	CU_ASSERT_EQUAL(st.bytes_sent, v1->total_bytes);
	CU_ASSERT_EQUAL(st.bytes_skipped, 0);
	CU_ASSERT(st.seconds > 0);
	CU_ASSERT(progress_calls >= 2);
	CU_ASSERT_EQUAL(last_done, v1->total_bytes);
	CU_ASSERT_EQUAL(last_total, v1->total_bytes);
	CU_ASSERT(file_matches(mpath, v1->manifest_text, v1->manifest_len));
	rh_sink_close(sink);

	/* Unchanged re-sync (a new sink, as in a new drill): zero bytes. */
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, target), 0);
	CU_ASSERT_EQUAL(rh_sync_run(f.reg, v1, sink, NULL, &st), 0);
	CU_ASSERT_EQUAL(st.bytes_sent, 0);
	CU_ASSERT_EQUAL(st.files_sent, 0);
	CU_ASSERT_EQUAL(st.files_skipped, N_FILES);
	CU_ASSERT_EQUAL(st.bytes_skipped, v1->total_bytes);
	rh_sink_close(sink);

	/* The next version changes one file: only its bytes move. */
	for (size_t i = 0; i < v2->n_files; i++)
		if (strcmp(v2->files[i].path, "f.bin") == 0)
			changed = v2->files[i].size;
	CU_ASSERT_EQUAL_FATAL(changed, file_len(5));
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, target), 0);
	CU_ASSERT_EQUAL(rh_sync_run(f.reg, v2, sink, NULL, &st), 0);
	CU_ASSERT_EQUAL(st.files_sent, 1);
	CU_ASSERT_EQUAL(st.bytes_sent, changed);
	CU_ASSERT_EQUAL(st.files_skipped, N_FILES - 1);
	CU_ASSERT_EQUAL(st.bytes_skipped, v2->total_bytes - changed);
	CU_ASSERT(file_matches(mpath, v2->manifest_text, v2->manifest_len));
	rh_sink_close(sink);

	rh_model_version_free(v1);
	rh_model_version_free(v2);
	free(mpath);
	free(target);
	fx_free(&f);
}

static void test_sync__parallel(void)
{
	struct fx f;
	struct rh_model_version *v = NULL;
	struct rh_sync_opts opts = RH_SYNC_OPTS_INIT;
	struct rh_sync_stats st;
	struct rh_sink *inner = NULL;
	struct wrap w;
	static const unsigned want[] = { 3, 1, 0 };
	static const int bound[] = { 3, 1, 4 };

	fx_init(&f);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, f.reg, "m", "1.0", NULL), 0);
	for (size_t k = 0; k < 3; k++) {
		char name[32];
		char *target;

		snprintf(name, sizeof(name), "target-%zu", k);
		target = rh_test_path(f.tmp, name);
		CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&inner, target), 0);
		wrap_init(&w, inner);
		w.delay_us = 50000; /* every put overlaps the next when allowed */
		opts.parallel = want[k];
		CU_ASSERT_EQUAL(rh_sync_run(f.reg, v, &w.base, &opts, &st), 0);
		CU_ASSERT_EQUAL(st.files_sent, N_FILES);
		CU_ASSERT(w.max_inflight <= bound[k]);
		if (bound[k] > 1) {
			CU_ASSERT(w.max_inflight >= 2);
		} else {
			CU_ASSERT_EQUAL(w.max_inflight, 1);
		}
		CU_ASSERT_EQUAL(w.puts, N_FILES + 1); /* + manifest.json */
		rh_sink_close(inner);
		free(target);
	}
	/* More than the sink allows is held to the sink's bound. */
	{
		char *target = rh_test_path(f.tmp, "target-many");

		CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&inner, target), 0);
		wrap_init(&w, inner);
		w.delay_us = 20000;
		opts.parallel = 16;
		CU_ASSERT_EQUAL(rh_sync_run(f.reg, v, &w.base, &opts, &st), 0);
		CU_ASSERT(w.max_inflight <= 4);
		rh_sink_close(inner);
		free(target);
	}
	rh_model_version_free(v);
	fx_free(&f);
}

static void test_sync__cancel_and_resume(void)
{
	struct fx f;
	struct rh_model_version *v = NULL;
	struct rh_sync_opts opts = RH_SYNC_OPTS_INIT;
	struct rh_sync_stats st;
	struct rh_sink *inner = NULL;
	struct rh_cancel cancel;
	struct wrap w;
	char *target;
	char *mpath;
	int rc;

	fx_init(&f);
	target = rh_test_path(f.tmp, "target");
	mpath = rh_test_path(target, "manifest.json");
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, f.reg, "m", "1.0", NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_cancel_init(&cancel), 0);

	/* Cancelled before it starts: nothing is put. */
	rh_cancel_fire(&cancel);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&inner, target), 0);
	wrap_init(&w, inner);
	opts.cancel = &cancel;
	CU_ASSERT_EQUAL(rh_sync_run(f.reg, v, &w.base, &opts, &st), RH_ECANCELLED);
	CU_ASSERT_EQUAL(w.puts, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "cancelled"));
	rh_sink_close(inner);
	rh_cancel_clear(&cancel);

	/* Cancelled once the first file is in: the others stop, no manifest. */
	CU_ASSERT_EQUAL_FATAL(rh_cancel_init(&cancel), 0);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&inner, target), 0);
	wrap_init(&w, inner);
	w.fire_after_first = &cancel;
	opts.parallel = 1;
	rc = rh_sync_run(f.reg, v, &w.base, &opts, &st);
	CU_ASSERT_EQUAL(rc, RH_ECANCELLED);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "cancelled syncing m 1.0"));
	CU_ASSERT(st.files_sent >= 1 && st.files_sent < N_FILES);
	CU_ASSERT_NOT_EQUAL(access(mpath, F_OK), 0);
	rh_sink_close(inner);
	rh_cancel_clear(&cancel);

	/* The next run finishes the job without resending what is there. */
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&inner, target), 0);
	CU_ASSERT_EQUAL(rh_sync_run(f.reg, v, inner, NULL, &st), 0);
	CU_ASSERT(st.files_skipped >= 1);
	CU_ASSERT_EQUAL(st.files_sent + st.files_skipped, N_FILES);
	CU_ASSERT_EQUAL(st.bytes_sent + st.bytes_skipped + st.bytes_resumed, v->total_bytes);
	CU_ASSERT(file_matches(mpath, v->manifest_text, v->manifest_len));
	CU_ASSERT_EQUAL(count_named(target, ".rh-part-"), 0);
	rh_sink_close(inner);

	rh_model_version_free(v);
	free(mpath);
	free(target);
	fx_free(&f);
}

/* Flips one byte of the LFS object behind `sha`. */
static void corrupt_object(const struct fx *f, const char *sha)
{
	char rel[200];
	char *p;
	FILE *fp;
	int c;

	snprintf(rel, sizeof(rel), "lfs/objects/%.2s/%.2s/%s", sha, sha + 2, sha);
	p = rh_test_path(f->repo, rel);
	chmod(p, 0644); /* stored read-only */
	fp = fopen(p, "r+b");
	CU_ASSERT_FATAL(fp != NULL);
	CU_ASSERT_FATAL(fseek(fp, 1000, SEEK_SET) == 0);
	c = fgetc(fp);
	CU_ASSERT_FATAL(fseek(fp, 1000, SEEK_SET) == 0);
	fputc(c ^ 0x5a, fp);
	fclose(fp);
	free(p);
}

static void test_sync__bad_source_byte(void)
{
	struct fx f;
	struct rh_model_version *v = NULL;
	struct rh_sync_opts opts = RH_SYNC_OPTS_INIT;
	struct rh_sync_stats st;
	struct rh_sink *sink = NULL;
	char *target;
	char *bad_final;
	char *mpath;
	const char *sha = NULL;
	size_t bad = 99;

	fx_init(&f);
	target = rh_test_path(f.tmp, "target");
	bad_final = rh_test_path(target, "c.bin");
	mpath = rh_test_path(target, "manifest.json");
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, f.reg, "m", "1.0", NULL), 0);

	/* A sound store verifies. */
	CU_ASSERT_EQUAL(rh_sync_verify(f.reg, v, NULL, &bad), 0);
	CU_ASSERT_EQUAL(bad, 0);

	for (size_t i = 0; i < v->n_files; i++)
		if (strcmp(v->files[i].path, "c.bin") == 0)
			sha = v->files[i].sha256;
	CU_ASSERT_PTR_NOT_NULL_FATAL(sha);
	corrupt_object(&f, sha);

	CU_ASSERT_EQUAL(rh_sync_verify(f.reg, v, NULL, &bad), RH_EVERIFY);
	CU_ASSERT_EQUAL(bad, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "c.bin"));

	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, target), 0);
	opts.parallel = 2;
	CU_ASSERT_EQUAL(rh_sync_run(f.reg, v, sink, &opts, &st), RH_EVERIFY);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "c.bin"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "sha256"));
	CU_ASSERT_NOT_EQUAL(access(bad_final, F_OK), 0);
	CU_ASSERT_EQUAL(count_named(target, "c.bin"), 0); /* no partial either */
	CU_ASSERT_NOT_EQUAL(access(mpath, F_OK), 0);     /* the set is not whole */
	rh_sink_close(sink);

	rh_model_version_free(v);
	free(mpath);
	free(bad_final);
	free(target);
	fx_free(&f);
}

RH_TEST_MAIN("sync",
	     { "delta", test_sync__delta },
	     { "parallel", test_sync__parallel },
	     { "cancel_and_resume", test_sync__cancel_and_resume },
	     { "bad_source_byte", test_sync__bad_source_byte })
