/*
 * test_registry.c - the git registry, against repositories made by the real
 * git and git-lfs command-line tools.
 *
 * Each case builds a registry in a temporary directory (git init, git lfs
 * install --local, *.bin tracked by LFS, commit, tag), spawned with
 * posix_spawnp and an argv (no shell), with HOME and the global git config
 * inside the temporary directory so the user's configuration is neither
 * read nor touched. Then it resolves and syncs versions into a file sink and
 * checks the bytes, the skip on re-sync, and every refusal.
 */
#include "testlib.h"

#include "error.h"
#include "registry.h"
#include "sha256.h"
#include "sink.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spawn.h>


struct fx {
	char *tmp;
	char *home;
	char *repo;
	char *sink;
	char *env[16];
};

#define WEIGHTS_LEN (2u * 1024 * 1024 + 5)

/* RH_TEST_VERBOSE=1 prints the messages users would see. */
static void show(const char *what)
{
	if (getenv("RH_TEST_VERBOSE"))
		fprintf(stderr, "\n  [%s] %s", what, rh_error_last());
}

static unsigned char *pattern(size_t len, unsigned seed)
{
	unsigned char *p = malloc(len ? len : 1);
	uint32_t x = seed * 2654435761u + 7;

	CU_ASSERT_FATAL(p != NULL);
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (unsigned char)(x >> 16);
	}
	return p;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	return s;
}

/* Runs argv in the repository with the fixture's environment; stdout goes to
 * `out_path` if not NULL. Returns the exit status (or -1). */
static int run_in(struct fx *f, const char *out_path, const char *const *argv)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int status = 0;
	int rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addchdir_np(&fa, f->repo);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out_path ? out_path : "/dev/null",
					 O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, f->env);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return -1;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define GIT(f, ...)                                                                         \
	do {                                                                                \
		const char *const argv_[] = { "git", __VA_ARGS__, NULL };                   \
		CU_ASSERT_EQUAL_FATAL(run_in((f), NULL, argv_), 0);                         \
	} while (0)

/* The first line of a git command's output, new string. */
static char *git_out(struct fx *f, const char *const *argv)
{
	char *path = rh_test_path(f->tmp, "git.out");
	char buf[512] = "";
	FILE *fp;

	CU_ASSERT_EQUAL(run_in(f, path, argv), 0);
	fp = fopen(path, "r");
	if (fp) {
		if (!fgets(buf, sizeof(buf), fp))
			buf[0] = '\0';
		fclose(fp);
	}
	buf[strcspn(buf, "\n")] = '\0';
	free(path);
	return strdup(buf);
}

static void write_bytes(const char *path, const void *data, size_t len)
{
	char *dir = strdup(path);
	char *slash;
	FILE *fp;

	/* mkdir -p of the parent */
	for (slash = strchr(dir + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(dir, 0700);
		*slash = '/';
	}
	free(dir);
	fp = fopen(path, "wb");
	CU_ASSERT_FATAL(fp != NULL);
	CU_ASSERT_EQUAL(fwrite(data, 1, len, fp), len);
	CU_ASSERT_EQUAL(fclose(fp), 0);
}

static void fx_init(struct fx *f)
{
	size_t n = 0;
	char *gitconfig;

	memset(f, 0, sizeof(*f));
	f->tmp = rh_test_tmpdir();
	f->home = rh_test_path(f->tmp, "home");
	f->repo = rh_test_path(f->tmp, "registry");
	f->sink = rh_test_path(f->tmp, "sink");
	CU_ASSERT_EQUAL_FATAL(mkdir(f->home, 0700), 0);
	CU_ASSERT_EQUAL_FATAL(mkdir(f->repo, 0700), 0);
	gitconfig = rh_test_path(f->home, ".gitconfig");
	rh_test_write_file(gitconfig, "");
	f->env[n++] = xasprintf("PATH=%s", getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	f->env[n++] = xasprintf("HOME=%s", f->home);
	f->env[n++] = xasprintf("GIT_CONFIG_GLOBAL=%s", gitconfig);
	f->env[n++] = xasprintf("GIT_CONFIG_NOSYSTEM=1");
	f->env[n++] = xasprintf("GIT_AUTHOR_NAME=rehydra-test");
	f->env[n++] = xasprintf("GIT_AUTHOR_EMAIL=test@rehydra.invalid");
	f->env[n++] = xasprintf("GIT_COMMITTER_NAME=rehydra-test");
	f->env[n++] = xasprintf("GIT_COMMITTER_EMAIL=test@rehydra.invalid");
	f->env[n++] = xasprintf("GIT_TERMINAL_PROMPT=0");
	f->env[n++] = xasprintf("LANG=C");
	f->env[n] = NULL;
	free(gitconfig);

	GIT(f, "init", "-q", "-b", "main");
	GIT(f, "lfs", "install", "--local");
	char *attrs = rh_test_path(f->repo, ".gitattributes");

	rh_test_write_file(attrs, "*.bin filter=lfs diff=lfs merge=lfs -text\n");
	free(attrs);
}

static void fx_free(struct fx *f)
{
	rh_test_rm_rf(f->tmp);
	for (size_t i = 0; f->env[i]; i++)
		free(f->env[i]);
	free(f->sink);
	free(f->repo);
	free(f->home);
	free(f->tmp);
}

/* Writes models/<name>/<rel> in the work tree. */
static void fx_file(struct fx *f, const char *name, const char *rel, const void *data, size_t len)
{
	char *path = xasprintf("%s/models/%s/%s", f->repo, name, rel);

	write_bytes(path, data, len);
	free(path);
}

/* A manifest entry for `data` as JSON text (new). */
static char *entry(const char *path, const void *data, size_t len)
{
	char sha[65];

	rh_sha256_buf_hex(sha, data, len);
	return xasprintf("{\"path\": \"%s\", \"size\": %zu, \"sha256\": \"%s\"}", path, len, sha);
}

/* Writes the manifest, commits everything and tags NAME/VERSION (annotated
 * when `annotated`). `files_json` is the text of the files array's items. */
static void fx_version(struct fx *f, const char *name, const char *version,
		       const char *files_json, bool annotated)
{
	char *text = xasprintf("{\n  \"rehydra_manifest\": 1,\n  \"name\": \"%s\",\n"
			       "  \"version\": \"%s\",\n  \"license\": \"Apache-2.0\",\n"
			       "  \"files\": [%s]\n}\n", name, version, files_json);
	char *tag = xasprintf("%s/%s", name, version);

	fx_file(f, name, "manifest.json", text, strlen(text));
	GIT(f, "add", "-A");
	GIT(f, "commit", "-q", "--allow-empty", "-m", tag);
	if (annotated)
		GIT(f, "tag", "-a", "-m", tag, tag);
	else
		GIT(f, "tag", tag);
	free(tag);
	free(text);
}

static char *fx_rev(struct fx *f, const char *rev)
{
	const char *const argv[] = { "git", "rev-parse", rev, NULL };

	return git_out(f, argv);
}

static bool file_equals(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *got = malloc(len + 1);
	size_t n = 0;
	bool ok;

	if (fp) {
		n = fread(got, 1, len + 1, fp);
		fclose(fp);
	}
	ok = fp && n == len && memcmp(got, data, len) == 0;
	free(got);
	return ok;
}

static int count_temps(const char *dir)
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
			n += count_temps(p);
		else if (strstr(e->d_name, ".rh-part-"))
			n++;
		free(p);
	}
	closedir(d);
	return n;
}

/* The standard model: weights.bin (LFS) + config.json (plain), tagged
 * tiny/1.0.0 (annotated). Returns the weights (caller frees). */
static unsigned char *fx_tiny(struct fx *f)
{
	unsigned char *w = pattern(WEIGHTS_LEN, 1);
	const char *cfg = "{\"layers\": 2}\n";
	char *e1 = entry("weights.bin", w, WEIGHTS_LEN);
	char *e2 = entry("conf/config.json", cfg, strlen(cfg));
	char *files = xasprintf("%s, %s", e1, e2);

	fx_file(f, "tiny", "weights.bin", w, WEIGHTS_LEN);
	fx_file(f, "tiny", "conf/config.json", cfg, strlen(cfg));
	fx_version(f, "tiny", "1.0.0", files, true);
	free(files);
	free(e2);
	free(e1);
	return w;
}

static void test_registry__resolve_and_sync(void)
{
	struct fx f;
	struct rh_registry *r = NULL;
	struct rh_model_version *v = NULL;
	struct rh_sink *sink = NULL;
	struct rh_sync_stats st;
	unsigned char *w;
	char *commit;
	char *path;
	char *mpath;
	char *pointer;
	char msha[65];
	uint64_t msize = 0;

	fx_init(&f);
	w = fx_tiny(&f);
	commit = fx_rev(&f, "tiny/1.0.0^{commit}");
	{
		/* The test must exercise LFS: weights.bin is a pointer in git. */
		const char *const argv[] = { "git", "cat-file", "-p",
					     "tiny/1.0.0:models/tiny/weights.bin", NULL };

		pointer = git_out(&f, argv);
		CU_ASSERT_STRING_EQUAL(pointer, "version https://git-lfs.github.com/spec/v1");
		free(pointer);
	}

	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, f.repo, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, r, "tiny", "1.0.0", NULL), 0);
	CU_ASSERT_STRING_EQUAL(v->commit, commit);
	CU_ASSERT_EQUAL(v->n_files, 2);
	CU_ASSERT_STRING_EQUAL(v->files[0].path, "weights.bin");
	CU_ASSERT_EQUAL(v->files[0].size, WEIGHTS_LEN);
	CU_ASSERT_EQUAL(v->total_bytes, WEIGHTS_LEN + strlen("{\"layers\": 2}\n"));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(v->manifest, "license")),
			       "Apache-2.0");
	mpath = xasprintf("%s/models/tiny/manifest.json", f.repo);
	CU_ASSERT_EQUAL(rh_sha256_file_hex(msha, &msize, mpath), 0);
	CU_ASSERT_STRING_EQUAL(v->manifest_sha256, msha);
	CU_ASSERT_EQUAL(v->manifest_len, msize);

	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, f.sink), 0);
	CU_ASSERT_EQUAL(rh_registry_sync(r, v, sink, NULL, &st), 0);
	CU_ASSERT_EQUAL(st.files, 3);
	CU_ASSERT_EQUAL(st.bytes_sent, v->total_bytes + v->manifest_len);
	CU_ASSERT_EQUAL(st.bytes_skipped, 0);
	CU_ASSERT(st.seconds >= 0);
	rh_sink_close(sink);
	path = rh_test_path(f.sink, "weights.bin");
	CU_ASSERT(file_equals(path, w, WEIGHTS_LEN));
	free(path);
	path = rh_test_path(f.sink, "conf/config.json");
	CU_ASSERT(file_equals(path, "{\"layers\": 2}\n", 14));
	free(path);
	path = rh_test_path(f.sink, "manifest.json");
	CU_ASSERT(file_equals(path, v->manifest_text, v->manifest_len));
	free(path);

	/* A second sync (new sink, same directory) sends nothing. */
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, f.sink), 0);
	CU_ASSERT_EQUAL(rh_registry_sync(r, v, sink, NULL, &st), 0);
	CU_ASSERT_EQUAL(st.bytes_sent, 0);
	CU_ASSERT_EQUAL(st.bytes_skipped, v->total_bytes + v->manifest_len);
	CU_ASSERT_EQUAL(st.files, 3);
	rh_sink_close(sink);
	rh_model_version_free(v);
	v = NULL;

	/* The commit pin, when right, is accepted; file:// URLs work too. */
	rh_registry_free(r);
	r = NULL;
	path = xasprintf("file://%s", f.repo);
	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, path, NULL), 0);
	free(path);
	CU_ASSERT_EQUAL(rh_registry_resolve(&v, r, "tiny", "1.0.0", commit), 0);
	rh_model_version_free(v);

	rh_registry_free(r);
	free(mpath);
	free(commit);
	free(w);
	fx_free(&f);
}

static void test_registry__bare_and_lightweight(void)
{
	struct fx f;
	struct rh_registry *r = NULL;
	struct rh_model_version *v = NULL;
	struct rh_sink *sink = NULL;
	struct rh_sync_stats st;
	const char *data = "small plain model\n";
	char *e = NULL;
	char *bare;
	char *bare_lfs_from;
	char *bare_lfs_to;
	char *path;

	fx_init(&f);
	fx_file(&f, "plain", "m.txt", data, strlen(data));
	e = entry("m.txt", data, strlen(data));
	fx_version(&f, "plain", "0.1", e, false);
	bare = rh_test_path(f.tmp, "bare.git");
	GIT(&f, "clone", "-q", "--bare", f.repo, bare);
	(void)bare_lfs_from;
	(void)bare_lfs_to;

	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, bare, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, r, "plain", "0.1", NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, f.sink), 0);
	CU_ASSERT_EQUAL(rh_registry_sync(r, v, sink, NULL, &st), 0);
	CU_ASSERT_EQUAL(st.bytes_sent, strlen(data) + v->manifest_len);
	path = rh_test_path(f.sink, "m.txt");
	CU_ASSERT(file_equals(path, data, strlen(data)));
	free(path);
	rh_sink_close(sink);
	rh_model_version_free(v);
	rh_registry_free(r);

	free(bare);
	free(e);
	fx_free(&f);
}

static void test_registry__open_errors(void)
{
	struct fx f;
	struct rh_registry *r = NULL;
	char *notrepo;

	fx_init(&f);
	CU_ASSERT_EQUAL(rh_registry_open(&r, "ssh://git@example.com/models.git", NULL),
			RH_EUNSUPPORTED);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "clone it and use the path"));
	CU_ASSERT_EQUAL(rh_registry_open(&r, "https://example.com/models.git", NULL),
			RH_EUNSUPPORTED);
	CU_ASSERT_EQUAL(rh_registry_open(&r, "git@example.com:models.git", NULL),
			RH_EUNSUPPORTED);
	CU_ASSERT_PTR_NULL(r);

	/* A directory inside no repository is not found, and a plain directory
	 * inside a repository is not silently taken for it. */
	notrepo = rh_test_path(f.tmp, "home");
	CU_ASSERT_EQUAL(rh_registry_open(&r, notrepo, NULL), RH_ENOTFOUND);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), notrepo));
	free(notrepo);
	notrepo = rh_test_path(f.repo, "models");
	CU_ASSERT_EQUAL_FATAL(mkdir(notrepo, 0700), 0);
	CU_ASSERT_EQUAL(rh_registry_open(&r, notrepo, NULL), RH_ENOTFOUND);
	free(notrepo);
	CU_ASSERT_EQUAL(rh_registry_open(&r, "/nonexistent/registry", NULL), RH_ENOTFOUND);
	CU_ASSERT_PTR_NULL(r);
	fx_free(&f);
}

static void test_registry__unknown_version(void)
{
	struct fx f;
	struct rh_registry *r = NULL;
	struct rh_model_version *v = NULL;
	unsigned char *w;
	const char *d2 = "two\n";
	char *e2;

	fx_init(&f);
	w = fx_tiny(&f);
	fx_file(&f, "tiny", "two.txt", d2, strlen(d2));
	e2 = entry("two.txt", d2, strlen(d2));
	fx_version(&f, "tiny", "2.0.0", e2, false);

	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, f.repo, NULL), 0);
	CU_ASSERT_EQUAL(rh_registry_resolve(&v, r, "tiny", "9.9.9", NULL), RH_ENOTFOUND);
	CU_ASSERT_PTR_NULL(v);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "9.9.9"));
	show("unknown version");
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "versions: 1.0.0, 2.0.0"));
	CU_ASSERT_EQUAL(rh_registry_resolve(&v, r, "nosuch", "1.0.0", NULL), RH_ENOTFOUND);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "nosuch"));
	/* Names that cannot be tag components are refused, not looked up. */
	CU_ASSERT_EQUAL(rh_registry_resolve(&v, r, "../tiny", "1.0.0", NULL), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_registry_resolve(&v, r, "tiny", "1.0.0~1", NULL), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_registry_resolve(&v, r, "tiny", "", NULL), RH_EINVAL);

	rh_registry_free(r);
	free(e2);
	free(w);
	fx_free(&f);
}

static void test_registry__commit_pin_mismatch(void)
{
	struct fx f;
	struct rh_registry *r = NULL;
	struct rh_model_version *v = NULL;
	unsigned char *w;
	const char *d2 = "two\n";
	char *e2;
	char *c1;
	char *c2;

	fx_init(&f);
	w = fx_tiny(&f);
	fx_file(&f, "tiny", "two.txt", d2, strlen(d2));
	e2 = entry("two.txt", d2, strlen(d2));
	fx_version(&f, "tiny", "2.0.0", e2, true);
	c1 = fx_rev(&f, "tiny/1.0.0^{commit}");
	c2 = fx_rev(&f, "tiny/2.0.0^{commit}");
	CU_ASSERT_STRING_NOT_EQUAL(c1, c2);

	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, f.repo, NULL), 0);
	CU_ASSERT_EQUAL(rh_registry_resolve(&v, r, "tiny", "1.0.0", c2), RH_EVERIFY);
	CU_ASSERT_PTR_NULL(v);
	show("pin");
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), c1));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), c2));
	CU_ASSERT_EQUAL(rh_registry_resolve(&v, r, "tiny", "1.0.0", "abc"), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_registry_resolve(&v, r, "tiny", "2.0.0", c2), 0);
	CU_ASSERT_PTR_NOT_NULL(v);
	rh_model_version_free(v);

	rh_registry_free(r);
	free(c1);
	free(c2);
	free(e2);
	free(w);
	fx_free(&f);
}

static void test_registry__bad_sha256_fails_sync(void)
{
	struct fx f;
	struct rh_registry *r = NULL;
	struct rh_model_version *v = NULL;
	struct rh_sink *sink = NULL;
	struct rh_sync_stats st;
	const char *good = "good plain file\n";
	const char *bad = "bytes the manifest does not describe\n";
	unsigned char *w = pattern(70000, 9);
	char *e1;
	char *e2;
	char *files;
	char *final;
	int err;

	fx_init(&f);
	/* config.txt's manifest entry describes other bytes of the same size. */
	fx_file(&f, "m", "a-good.txt", good, strlen(good));
	fx_file(&f, "m", "config.txt", bad, strlen(bad));
	e1 = entry("a-good.txt", good, strlen(good));
	{
		char other[64];

		memset(other, 'x', sizeof(other));
		e2 = entry("config.txt", other, strlen(bad));
	}
	files = xasprintf("%s, %s", e1, e2);
	fx_version(&f, "m", "1", files, true);

	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, f.repo, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, r, "m", "1", NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, f.sink), 0);
	err = rh_registry_sync(r, v, sink, NULL, &st);
	CU_ASSERT_EQUAL(err, RH_EVERIFY);
	show("bad sha256");
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "config.txt"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "sha256"));
	final = rh_test_path(f.sink, "config.txt");
	CU_ASSERT_NOT_EQUAL(access(final, F_OK), 0);
	free(final);
	final = rh_test_path(f.sink, "manifest.json");
	CU_ASSERT_NOT_EQUAL(access(final, F_OK), 0); /* the set is not whole */
	free(final);
	CU_ASSERT_EQUAL(count_temps(f.sink), 0);
	rh_sink_close(sink);
	rh_model_version_free(v);
	v = NULL;
	free(files);
	free(e2);

	/* An LFS file whose manifest sha256 differs from its pointer's oid. */
	fx_file(&f, "m", "w.bin", w, 70000);
	{
		char other[70000];

		memcpy(other, w, sizeof(other));
		other[5] ^= 1;
		e2 = entry("w.bin", other, sizeof(other));
	}
	fx_version(&f, "m", "2", e2, true);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, r, "m", "2", NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, f.sink), 0);
	CU_ASSERT_EQUAL(rh_registry_sync(r, v, sink, NULL, &st), RH_EVERIFY);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "models/m/w.bin"));
	show("pointer vs manifest");
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "does not match the manifest"));
	final = rh_test_path(f.sink, "w.bin");
	CU_ASSERT_NOT_EQUAL(access(final, F_OK), 0);
	free(final);
	CU_ASSERT_EQUAL(count_temps(f.sink), 0);
	rh_sink_close(sink);
	rh_model_version_free(v);

	rh_registry_free(r);
	free(e2);
	free(e1);
	free(w);
	fx_free(&f);
}

/* Manifests that resolve must refuse, each naming the manifest and entry. */
static void test_registry__manifest_validation(void)
{
	static const struct {
		const char *version;
		const char *text; /* %s: unused */
		const char *needle;
	} cases[] = {
		{ "evil", "{\"rehydra_manifest\": 1, \"name\": \"m\", \"version\": \"evil\", "
			  "\"files\": [{\"path\": \"../evil\", \"size\": 1, \"sha256\": "
			  "\"%s\"}]}", "../evil" },
		{ "abs", "{\"rehydra_manifest\": 1, \"name\": \"m\", \"version\": \"abs\", "
			 "\"files\": [{\"path\": \"/etc/passwd\", \"size\": 1, \"sha256\": "
			 "\"%s\"}]}", "/etc/passwd" },
		{ "dup", "{\"rehydra_manifest\": 1, \"name\": \"m\", \"version\": \"dup\", "
			 "\"files\": [{\"path\": \"a\", \"size\": 1, \"sha256\": \"%s\"}, "
			 "{\"path\": \"a\", \"size\": 1, \"sha256\": \"%s\"}]}", "listed twice" },
		{ "self", "{\"rehydra_manifest\": 1, \"name\": \"m\", \"version\": \"self\", "
			  "\"files\": [{\"path\": \"manifest.json\", \"size\": 1, \"sha256\": "
			  "\"%s\"}]}", "manifest.json\" cannot" },
		{ "upper", "{\"rehydra_manifest\": 1, \"name\": \"m\", \"version\": \"upper\", "
			   "\"files\": [{\"path\": \"a\", \"size\": 1, \"sha256\": "
			   "\"ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789\""
			   "}]}", "lowercase hex" },
		{ "negsize", "{\"rehydra_manifest\": 1, \"name\": \"m\", \"version\": \"negsize\", "
			     "\"files\": [{\"path\": \"a\", \"size\": -1, \"sha256\": \"%s\"}]}",
		  "size must be" },
		{ "format", "{\"rehydra_manifest\": 2, \"name\": \"m\", \"version\": \"format\", "
			    "\"files\": []}", "rehydra_manifest" },
		{ "wrongver", "{\"rehydra_manifest\": 1, \"name\": \"m\", \"version\": \"9\", "
			      "\"files\": []}", "\"version\" must be \"wrongver\"" },
		{ "wrongname", "{\"rehydra_manifest\": 1, \"name\": \"x\", \"version\": "
			       "\"wrongname\", \"files\": []}", "\"name\" must be \"m\"" },
		{ "notjson", "{\"rehydra_manifest\": 1,", "manifest.json:1:" },
		{ "dupkey", "{\"rehydra_manifest\": 1, \"rehydra_manifest\": 1}", "duplicate" },
		{ "unknown", "{\"rehydra_manifest\": 1, \"name\": \"m\", \"version\": \"unknown\", "
			     "\"files\": [], \"lisence\": \"MIT\"}", "lisence" },
		{ "nested", "{\"rehydra_manifest\": 1, \"name\": \"m\", \"version\": \"nested\", "
			    "\"files\": [{\"path\": \"a\", \"size\": 1, \"sha256\": \"%s\"}, "
			    "{\"path\": \"a/b\", \"size\": 1, \"sha256\": \"%s\"}]}",
		  "also listed as a file" },
		{ "emptyseg", "{\"rehydra_manifest\": 1, \"name\": \"m\", \"version\": "
			      "\"emptyseg\", \"files\": [{\"path\": \"a//b\", \"size\": 1, "
			      "\"sha256\": \"%s\"}]}", "a//b" },
	};
	struct fx f;
	struct rh_registry *r = NULL;
	struct rh_model_version *v = NULL;
	char sha[65];

	rh_sha256_buf_hex(sha, "x", 1);
	fx_init(&f);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = xasprintf(cases[i].text, sha, sha);
		char *tag = xasprintf("m/%s", cases[i].version);

		fx_file(&f, "m", "manifest.json", text, strlen(text));
		GIT(&f, "add", "-A");
		GIT(&f, "commit", "-q", "--allow-empty", "-m", tag);
		GIT(&f, "tag", tag);
		free(tag);
		free(text);
	}
	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, f.repo, NULL), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int err = rh_registry_resolve(&v, r, "m", cases[i].version, NULL);

		CU_ASSERT_EQUAL(err, RH_EINVAL);
		CU_ASSERT_PTR_NULL(v);
		show(cases[i].version);
		if (!strstr(rh_error_last(), cases[i].needle) ||
		    !strstr(rh_error_last(), "models/m/manifest.json")) {
			fprintf(stderr, "\ncase %s: %s\n", cases[i].version, rh_error_last());
			CU_FAIL("message does not name the manifest and the problem");
		}
	}
	/* A model whose manifest is missing at that tag. */
	CU_ASSERT_EQUAL(rh_registry_resolve(&v, r, "zzz", "1", NULL), RH_ENOTFOUND);
	GIT(&f, "tag", "other/1");
	CU_ASSERT_EQUAL(rh_registry_resolve(&v, r, "other", "1", NULL), RH_ENOTFOUND);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "models/other/manifest.json"));
	rh_registry_free(r);
	fx_free(&f);
}

static void test_registry__malformed_lfs_pointer(void)
{
	static const struct {
		const char *text;
		const char *needle;
	} cases[] = {
		{ "version https://git-lfs.github.com/spec/v1\n"
		  "size 12\n"
		  "oid sha256:%s\n", "not sorted" },
		{ "version https://git-lfs.github.com/spec/v1\r\n"
		  "oid sha256:%s\r\n"
		  "size 12\r\n", "LF line endings" },
		{ "version https://git-lfs.github.com/spec/v1\n"
		  "oid sha256:%s\n"
		  "size 12", "newline" },
		{ "version https://git-lfs.github.com/spec/v1\n"
		  "oid sha256:%s\n"
		  "size -12\n", "decimal" },
		{ "version https://git-lfs.github.com/spec/v1\n"
		  "oid sha256:%s\n", "lacks size" },
		{ "version https://git-lfs.github.com/spec/v2\n"
		  "oid sha256:%s\n"
		  "size 12\n", "unsupported version" },
		{ "version https://git-lfs.github.com/spec/v1\n"
		  "oid md5:%.32s\n"
		  "size 12\n", "sha256:" },
		{ "version https://git-lfs.github.com/spec/v1\n"
		  "ext-0-foo sha256:%s\n"
		  "oid sha256:%s\n"
		  "size 12\n", "extension" },
	};
	struct fx f;
	struct rh_registry *r = NULL;
	struct rh_model_version *v = NULL;
	struct rh_sink *sink = NULL;
	char sha[65];

	rh_sha256_buf_hex(sha, "hello world\n", 12);
	fx_init(&f);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* .txt is not LFS-tracked: the pointer text is committed as is. */
		char *ptr = xasprintf(cases[i].text, sha, sha);
		char *e = xasprintf("{\"path\": \"p.txt\", \"size\": 12, \"sha256\": \"%s\"}", sha);
		char *ver = xasprintf("%zu", i);

		fx_file(&f, "m", "p.txt", ptr, strlen(ptr));
		fx_version(&f, "m", ver, e, false);
		free(ver);
		free(e);
		free(ptr);
	}
	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, f.repo, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, f.sink), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char ver[16];
		int err;

		snprintf(ver, sizeof(ver), "%zu", i);
		CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, r, "m", ver, NULL), 0);
		err = rh_registry_sync(r, v, sink, NULL, NULL);
		CU_ASSERT_EQUAL(err, RH_EINVAL);
		show("pointer");
		if (!strstr(rh_error_last(), cases[i].needle) ||
		    !strstr(rh_error_last(), "models/m/p.txt") ||
		    !strstr(rh_error_last(), "malformed Git LFS pointer")) {
			fprintf(stderr, "\ncase %zu: %s\n", i, rh_error_last());
			CU_FAIL("message does not name the file and the problem");
		}
		rh_model_version_free(v);
		v = NULL;
	}
	rh_sink_close(sink);
	char *p = rh_test_path(f.sink, "p.txt");

	CU_ASSERT_NOT_EQUAL(access(p, F_OK), 0);
	free(p);

	/* And the parser directly: a well-formed pointer parses. */
	rh_registry_free(r);
	fx_free(&f);
}

static void test_registry__missing_lfs_object(void)
{
	struct fx f;
	struct rh_registry *r = NULL;
	struct rh_model_version *v = NULL;
	struct rh_sink *sink = NULL;
	unsigned char *w;
	char *obj;
	char sha[65];
	char *final;

	fx_init(&f);
	w = fx_tiny(&f);
	rh_sha256_buf_hex(sha, w, WEIGHTS_LEN);
	obj = xasprintf("%s/.git/lfs/objects/%.2s/%.2s/%s", f.repo, sha, sha + 2, sha);
	CU_ASSERT_EQUAL_FATAL(unlink(obj), 0);

	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, f.repo, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, r, "tiny", "1.0.0", NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_sink_file_open(&sink, f.sink), 0);
	CU_ASSERT_EQUAL(rh_registry_sync(r, v, sink, NULL, NULL), RH_ENOTFOUND);
	show("missing object");
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "git lfs fetch"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "models/tiny/weights.bin"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), sha));
	final = rh_test_path(f.sink, "weights.bin");
	CU_ASSERT_NOT_EQUAL(access(final, F_OK), 0);
	free(final);

	/* A truncated object is caught by size before anything is written. */
	write_bytes(obj, w, WEIGHTS_LEN - 1);
	CU_ASSERT_EQUAL(rh_registry_sync(r, v, sink, NULL, NULL), RH_EVERIFY);
	show("truncated object");
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "git lfs fsck"));
	/* A corrupted object of the right size is caught by the sink's sha256. */
	w[1000] ^= 1;
	write_bytes(obj, w, WEIGHTS_LEN);
	CU_ASSERT_EQUAL(rh_registry_sync(r, v, sink, NULL, NULL), RH_EVERIFY);
	show("corrupt object");
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "weights.bin"));
	CU_ASSERT_EQUAL(count_temps(f.sink), 0);
	final = rh_test_path(f.sink, "weights.bin");
	CU_ASSERT_NOT_EQUAL(access(final, F_OK), 0);
	free(final);
	rh_sink_close(sink);

	rh_model_version_free(v);
	rh_registry_free(r);
	free(obj);
	free(w);
	fx_free(&f);
}

RH_TEST_MAIN("registry",
	     { "resolve_and_sync", test_registry__resolve_and_sync },
	     { "bare_and_lightweight", test_registry__bare_and_lightweight },
	     { "open_errors", test_registry__open_errors },
	     { "unknown_version", test_registry__unknown_version },
	     { "commit_pin_mismatch", test_registry__commit_pin_mismatch },
	     { "bad_sha256_fails_sync", test_registry__bad_sha256_fails_sync },
	     { "manifest_validation", test_registry__manifest_validation },
	     { "malformed_lfs_pointer", test_registry__malformed_lfs_pointer },
	     { "missing_lfs_object", test_registry__missing_lfs_object })
