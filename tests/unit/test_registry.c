/*
 * test_registry.c - the git registry, against repositories made by the real
 * git and git-lfs command-line tools.
 *
 * Each case builds a registry in a temporary directory (git init, git lfs
 * install --local, *.bin tracked by LFS, commit, tag), spawned with
 * posix_spawnp and an argv (no shell), with HOME and the global git config
 * inside the temporary directory so the user's configuration is neither
 * read nor touched. Then it resolves versions, reads their files through
 * rh_registry_file_source and checks the bytes and every refusal; URL
 * registries are bare repositories reached by file:// (cloned into a cache,
 * fetched again, used stale when gone) and, for LFS over HTTP,
 * tests/lfs-server/server.js.
 */
#include "testlib.h"

#include "../lfs-server/lfs_server.h"

#include "error.h"
#include "fsutil.h"
#include "registry.h"
#include "sha256.h"
#include "sink.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

/* Reads all of `src` through read_at in uneven chunks (new buffer). */
static unsigned char *read_all(struct rh_source *src)
{
	unsigned char *buf = malloc(src->size ? src->size : 1);
	uint64_t off = 0;

	CU_ASSERT_FATAL(buf != NULL);
	while (off < src->size) {
		long n = src->read_at(src->user, off, buf + off, 70001);

		CU_ASSERT_FATAL(n > 0);
		off += (uint64_t)n;
	}
	CU_ASSERT_EQUAL(src->read_at(src->user, off, buf, 10), 0);
	return buf;
}

/* file_source for `index` gives exactly `data`. */
static void expect_source(struct rh_registry *r, const struct rh_model_version *v, size_t index,
			  const void *data, size_t len)
{
	struct rh_source *src = NULL;
	unsigned char *got;

	CU_ASSERT_EQUAL_FATAL(rh_registry_file_source(&src, r, v, index, NULL), 0);
	CU_ASSERT_EQUAL(src->size, len);
	got = read_all(src);
	CU_ASSERT(memcmp(got, data, len) == 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(src->name, v->files[index].path));
	free(got);
	rh_registry_source_free(src);
}

static void test_registry__resolve_and_sources(void)
{
	struct fx f;
	struct rh_registry *r = NULL;
	struct rh_model_version *v = NULL;
	struct rh_source *src = NULL;
	unsigned char *w;
	unsigned char mid[100];
	char *commit;
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
	CU_ASSERT_FALSE(rh_registry_is_stale(r, NULL));
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

	expect_source(r, v, 0, w, WEIGHTS_LEN);
	expect_source(r, v, 1, "{\"layers\": 2}\n", 14);
	/* Random access, and reads past the end. */
	CU_ASSERT_EQUAL_FATAL(rh_registry_file_source(&src, r, v, 0, NULL), 0);
	CU_ASSERT_EQUAL(src->read_at(src->user, 1000000, mid, sizeof(mid)), (long)sizeof(mid));
	CU_ASSERT(memcmp(mid, w + 1000000, sizeof(mid)) == 0);
	CU_ASSERT_EQUAL(src->read_at(src->user, WEIGHTS_LEN - 5, mid, sizeof(mid)), 5);
	CU_ASSERT_EQUAL(src->read_at(src->user, WEIGHTS_LEN + 5, mid, sizeof(mid)), 0);
	rh_registry_source_free(src);
	CU_ASSERT_EQUAL(rh_registry_file_source(&src, r, v, 2, NULL), RH_EINVAL);
	CU_ASSERT_PTR_NULL(src);
	rh_model_version_free(v);
	v = NULL;

	/* The commit pin, when right, is accepted. */
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
	const char *data = "small plain model\n";
	char *e = NULL;
	char *bare;

	fx_init(&f);
	fx_file(&f, "plain", "m.txt", data, strlen(data));
	e = entry("m.txt", data, strlen(data));
	fx_version(&f, "plain", "0.1", e, false);
	bare = rh_test_path(f.tmp, "bare.git");
	GIT(&f, "clone", "-q", "--bare", f.repo, bare);

	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, bare, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, r, "plain", "0.1", NULL), 0);
	expect_source(r, v, 0, data, strlen(data));
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
	char *cache;

	fx_init(&f);
	cache = rh_test_path(f.tmp, "cache");
	/* URLs need a cache to clone into. */
	CU_ASSERT_EQUAL(rh_registry_open(&r, "ssh://git@example.com/models.git", NULL), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "cache directory"));
	CU_ASSERT_EQUAL(rh_registry_open(&r, "git@example.com:models.git", NULL), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_registry_open(&r, "file://relative/path", cache), RH_EINVAL);
	/* An unreachable server, first time: no clone, so an error that names
	 * the registry without its credentials, and no partial clone left. */
	CU_ASSERT_EQUAL(rh_registry_open(&r, "http://alice:s3cret@127.0.0.1:1/models.git",
					 cache), RH_EIO);
	show("unreachable");
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "http://127.0.0.1:1/models.git"));
	CU_ASSERT_PTR_NULL(strstr(rh_error_last(), "s3cret"));
	CU_ASSERT_PTR_NULL(strstr(rh_error_last(), "alice"));
	{
		char *regdir = rh_test_path(cache, "registries");
		DIR *d = opendir(regdir);
		struct dirent *de;
		int dirs = 0;

		CU_ASSERT_PTR_NOT_NULL_FATAL(d);
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.' || strncmp(de->d_name, ".clone-", 7) == 0)
				dirs += strstr(de->d_name, ".lock") ? 0 : 1;
		closedir(d);
		CU_ASSERT_EQUAL(dirs, 0);
		free(regdir);
	}
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
	free(cache);
	fx_free(&f);
}

static void test_registry__pointer_manifest_mismatch(void)
{
	struct fx f;
	struct rh_registry *r = NULL;
	struct rh_model_version *v = NULL;
	struct rh_source *src = NULL;
	unsigned char *w = pattern(70000, 9);
	char *e2;

	fx_init(&f);
	/* An LFS file whose manifest sha256 differs from its pointer's oid. */
	fx_file(&f, "m", "w.bin", w, 70000);
	{
		unsigned char *other = malloc(70000);

		memcpy(other, w, 70000);
		other[5] ^= 1;
		e2 = entry("w.bin", other, 70000);
		free(other);
	}
	fx_version(&f, "m", "2", e2, true);
	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, f.repo, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, r, "m", "2", NULL), 0);
	CU_ASSERT_EQUAL(rh_registry_file_source(&src, r, v, 0, NULL), RH_EVERIFY);
	CU_ASSERT_PTR_NULL(src);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "models/m/w.bin"));
	show("pointer vs manifest");
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "does not match the manifest"));
	rh_model_version_free(v);

	rh_registry_free(r);
	free(e2);
	free(w);
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
	struct rh_source *src = NULL;
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
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char ver[16];
		int err;

		snprintf(ver, sizeof(ver), "%zu", i);
		CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, r, "m", ver, NULL), 0);
		err = rh_registry_file_source(&src, r, v, 0, NULL);
		CU_ASSERT_EQUAL(err, RH_EINVAL);
		CU_ASSERT_PTR_NULL(src);
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
	rh_registry_free(r);
	fx_free(&f);
}

static void test_registry__missing_lfs_object(void)
{
	struct fx f;
	struct rh_registry *r = NULL;
	struct rh_model_version *v = NULL;
	struct rh_source *src = NULL;
	unsigned char *w;
	char *obj;
	char sha[65];

	fx_init(&f);
	w = fx_tiny(&f);
	rh_sha256_buf_hex(sha, w, WEIGHTS_LEN);
	obj = xasprintf("%s/.git/lfs/objects/%.2s/%.2s/%s", f.repo, sha, sha + 2, sha);
	CU_ASSERT_EQUAL_FATAL(unlink(obj), 0);

	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, f.repo, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, r, "tiny", "1.0.0", NULL), 0);
	CU_ASSERT_EQUAL(rh_registry_file_source(&src, r, v, 0, NULL), RH_ENOTFOUND);
	show("missing object");
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "git lfs fetch"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "models/tiny/weights.bin"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), sha));
	/* The plain file of the same version is still readable. */
	expect_source(r, v, 1, "{\"layers\": 2}\n", 14);

	/* A truncated object is caught by size before anything is read. */
	write_bytes(obj, w, WEIGHTS_LEN - 1);
	CU_ASSERT_EQUAL(rh_registry_file_source(&src, r, v, 0, NULL), RH_EVERIFY);
	show("truncated object");
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "git lfs fsck"));
	CU_ASSERT_PTR_NULL(src);

	rh_model_version_free(v);
	rh_registry_free(r);
	free(obj);
	free(w);
	fx_free(&f);
}

static void test_registry__list(void)
{
	struct fx f;
	struct rh_registry *r = NULL;
	json_t *l = NULL;
	const char *d = "x\n";
	char *e;
	char *s;

	fx_init(&f);
	fx_file(&f, "a", "x.txt", d, 2);
	e = entry("x.txt", d, 2);
	fx_version(&f, "a", "1.10.0", e, false);
	fx_version(&f, "a", "1.2.0", e, true);
	fx_version(&f, "a", "1.9.1", e, false);
	GIT(&f, "tag", "not-a-model");
	GIT(&f, "tag", "deep/er/tag");
	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, f.repo, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_list(&l, r), 0);
	s = json_dumps(l, JSON_COMPACT | JSON_SORT_KEYS);
	CU_ASSERT_STRING_EQUAL(s, "{\"a\":[\"1.2.0\",\"1.9.1\",\"1.10.0\"]}");
	free(s);
	json_decref(l);
	rh_registry_free(r);
	free(e);
	fx_free(&f);
}

/* The registry as a bare repository reached by file:// URL, as a remote
 * would be: cloned into the cache, fetched again on the next open, used
 * stale when the remote is gone. */
static void test_registry__url_clone_and_fetch(void)
{
	struct fx f;
	struct rh_registry *r = NULL;
	struct rh_model_version *v = NULL;
	struct rh_registry_opts o = RH_REGISTRY_OPTS_INIT;
	unsigned char *w;
	const char *d2 = "two\n";
	char *e2;
	char *bare;
	char *url;
	char *cache;
	char *moved;
	const char *why = NULL;
	json_t *l = NULL;

	fx_init(&f);
	w = fx_tiny(&f);
	bare = rh_test_path(f.tmp, "remote.git");
	cache = rh_test_path(f.tmp, "cache");
	GIT(&f, "init", "-q", "--bare", bare);
	GIT(&f, "remote", "add", "origin", bare);
	GIT(&f, "push", "-q", "origin", "main", "--tags");
	/* The LFS objects of a file:// remote are its own store's. */
	GIT(&f, "lfs", "push", "--all", "origin");
	url = xasprintf("file://%s", bare);

	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, url, cache), 0);
	CU_ASSERT_FALSE(rh_registry_is_stale(r, &why));
	CU_ASSERT_PTR_NULL(why);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, r, "tiny", "1.0.0", NULL), 0);
	expect_source(r, v, 0, w, WEIGHTS_LEN);
	expect_source(r, v, 1, "{\"layers\": 2}\n", 14);
	rh_model_version_free(v);
	v = NULL;
	rh_registry_free(r);
	r = NULL;
	{
		char *regdir = rh_test_path(cache, "registries");
		char *head = NULL;
		DIR *dd = opendir(regdir);
		struct dirent *de;
		int clones = 0;

		CU_ASSERT_PTR_NOT_NULL_FATAL(dd);
		while ((de = readdir(dd)) != NULL) {
			CU_ASSERT(strncmp(de->d_name, ".clone-", 7) != 0);
			if (strlen(de->d_name) == 16) {
				clones++;
				head = xasprintf("%s/%s/refs/tags/tiny/1.0.0", regdir, de->d_name);
			}
		}
		closedir(dd);
		CU_ASSERT_EQUAL(clones, 1);
		CU_ASSERT(head && access(head, F_OK) == 0);
		free(head);
		free(regdir);
	}

	/* A version published upstream is seen on the next open; a deleted
	 * tag disappears. */
	fx_file(&f, "tiny", "two.txt", d2, strlen(d2));
	e2 = entry("two.txt", d2, strlen(d2));
	fx_version(&f, "tiny", "2.0.0", e2, true);
	GIT(&f, "tag", "other/1");
	GIT(&f, "push", "-q", "origin", "main", "--tags");
	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, url, cache), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, r, "tiny", "2.0.0", NULL), 0);
	expect_source(r, v, 0, d2, strlen(d2));
	rh_model_version_free(v);
	v = NULL;
	rh_registry_free(r);
	r = NULL;
	GIT(&f, "push", "-q", "origin", ":refs/tags/other/1");
	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, url, cache), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_list(&l, r), 0);
	CU_ASSERT_PTR_NULL(json_object_get(l, "other"));
	CU_ASSERT_EQUAL(json_array_size(json_object_get(l, "tiny")), 2);
	json_decref(l);
	rh_registry_free(r);
	r = NULL;

	/* The remote is gone: the cached clone is used, and says so. */
	moved = rh_test_path(f.tmp, "remote-moved.git");
	CU_ASSERT_EQUAL_FATAL(rename(bare, moved), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, url, cache), 0);
	CU_ASSERT_TRUE(rh_registry_is_stale(r, &why));
	CU_ASSERT_PTR_NOT_NULL(why);
	if (why)
		CU_ASSERT_PTR_NOT_NULL(strstr(why, "cannot fetch"));
	CU_ASSERT_EQUAL(rh_registry_resolve(&v, r, "tiny", "2.0.0", NULL), 0);
	rh_model_version_free(v);
	v = NULL;
	rh_registry_free(r);
	r = NULL;
	/* Offline: no fetch at all; no clone -> not found. */
	o.offline = true;
	CU_ASSERT_EQUAL_FATAL(rh_registry_open_opts(&r, url, cache, &o), 0);
	CU_ASSERT_TRUE(rh_registry_is_stale(r, NULL));
	rh_registry_free(r);
	r = NULL;
	free(url);
	url = xasprintf("file://%s/nothing.git", f.tmp);
	CU_ASSERT_EQUAL(rh_registry_open_opts(&r, url, cache, &o), RH_ENOTFOUND);
	CU_ASSERT_PTR_NULL(r);
	/* Never fetched and unreachable: an error, not an empty registry. */
	CU_ASSERT_EQUAL(rh_registry_open(&r, url, cache), RH_EIO);
	CU_ASSERT_PTR_NULL(r);
	CU_ASSERT_EQUAL(rename(moved, bare), 0);

	free(moved);
	free(url);
	free(cache);
	free(bare);
	free(e2);
	free(w);
	fx_free(&f);
}

/* ---- through an LFS server --------------------------------------------------- */

struct src_job {
	struct rh_registry *r;
	const struct rh_model_version *v;
	size_t index;
	int rc;
	char sha[65];
};

static void *src_thread(void *arg)
{
	struct src_job *j = arg;
	struct rh_source *src = NULL;
	struct rh_sha256 c;
	unsigned char buf[65536];
	uint8_t dg[32];
	uint64_t off = 0;

	j->rc = rh_registry_file_source(&src, j->r, j->v, j->index, NULL);
	if (j->rc < 0)
		return NULL;
	rh_sha256_init(&c);
	for (;;) {
		long n = src->read_at(src->user, off, buf, sizeof(buf));

		if (n <= 0) {
			if (n < 0)
				j->rc = (int)n;
			break;
		}
		rh_sha256_update(&c, buf, (size_t)n);
		off += (uint64_t)n;
	}
	rh_sha256_final(&c, dg);
	rh_sha256_hex(j->sha, dg);
	rh_registry_source_free(src);
	return NULL;
}

/* Copies the work tree's LFS objects into the test server's store, as
 * `git lfs push` would (the integration test pushes with the real client). */
static void copy_objects(struct fx *f, const char *store)
{
	const char *const argv[] = { "cp", "-r", ".git/lfs/objects/.", store, NULL };

	CU_ASSERT_EQUAL_FATAL(rh_fs_mkdir_p(store), 0);
	CU_ASSERT_EQUAL_FATAL(run_in(f, NULL, argv), 0);
}

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

static void test_registry__lfs_server(void)
{
	struct fx f;
	struct lfs_server srv;
	struct rh_registry *r = NULL;
	struct rh_model_version *v = NULL;
	struct rh_source *src = NULL;
	struct src_job jobs[4];
	pthread_t th[4];
	unsigned char *data[4];
	char *files = NULL;
	char *store;
	char *bare;
	char *url;
	char *cache;
	char *objects;
	char *cfg;
	uint64_t freed = 0, kept = 0;

	fx_init(&f);
	store = rh_test_path(f.tmp, "lfs-store");
	if (lfs_server_start(&srv, store, "t0ken") != 0) {
		CU_FAIL("cannot start tests/lfs-server/server.js");
		free(store);
		fx_free(&f);
		return;
	}
	for (unsigned i = 0; i < 4; i++) {
		char name[32];
		char *e;
		char *joined;

		snprintf(name, sizeof(name), "shard-%u.bin", i);
		data[i] = pattern(400000 + i * 1000, 20 + i);
		fx_file(&f, "big", name, data[i], 400000 + i * 1000);
		e = entry(name, data[i], 400000 + i * 1000);
		joined = files ? xasprintf("%s, %s", files, e) : xasprintf("%s", e);
		free(files);
		free(e);
		files = joined;
	}
	cfg = xasprintf("%s/.lfsconfig", f.repo);
	{
		char *text = xasprintf("[lfs]\n\turl = %s/reg/info/lfs\n", srv.url);

		write_bytes(cfg, text, strlen(text));
		free(text);
	}
	fx_version(&f, "big", "1", files, true);
	{
		/* The server's layout: <store>/<repo>/aa/bb/oid. */
		char *reg = xasprintf("%s/reg", store);

		copy_objects(&f, reg);
		free(reg);
	}
	bare = rh_test_path(f.tmp, "remote.git");
	cache = rh_test_path(f.tmp, "cache");
	GIT(&f, "clone", "-q", "--bare", f.repo, bare);
	url = xasprintf("file://%s", bare);

	/* No token: the server refuses, the message says what to do. */
	unsetenv("REHYDRA_LFS_TOKEN");
	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, url, cache), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, r, "big", "1", NULL), 0);
	CU_ASSERT_EQUAL(rh_registry_file_source(&src, r, v, 0, NULL), RH_EIO);
	show("no token");
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "401"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "models/big/shard-0.bin"));
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "REHYDRA_LFS_TOKEN"));
	rh_model_version_free(v);
	v = NULL;
	rh_registry_free(r);
	r = NULL;

	/* With the token, four files at once from four threads. */
	setenv("REHYDRA_LFS_TOKEN", "t0ken", 1);
	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&r, url, cache), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, r, "big", "1", NULL), 0);
	for (unsigned i = 0; i < 4; i++) {
		jobs[i] = (struct src_job){ r, v, i, -1, "" };
		pthread_create(&th[i], NULL, src_thread, &jobs[i]);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CU_ASSERT_EQUAL(jobs[i].rc, 0);
		if (jobs[i].rc < 0)
			fprintf(stderr, "\n  job %u failed\n", i);
		CU_ASSERT_STRING_EQUAL(jobs[i].sha, v->files[i].sha256);
	}
	objects = rh_test_path(cache, "objects");
	CU_ASSERT_EQUAL(count_files(objects, NULL), 4);
	CU_ASSERT_EQUAL(count_files(objects, ".tmp-"), 0);
	CU_ASSERT_EQUAL(lfs_server_stat(&srv, "get"), 4);
	/* Cached: read again without the server. */
	lfs_server_stop(&srv);
	expect_source(r, v, 2, data[2], 402000);
	rh_model_version_free(v);
	v = NULL;
	rh_registry_free(r);
	r = NULL;

	/* gc keeps what a tag references, removes the rest. */
	{
		char *junk = xasprintf("%s/ab/cd/abcd%060d", objects, 0);

		write_bytes(junk, "junk", 4);
		CU_ASSERT_EQUAL(rh_registry_cache_gc(cache, &freed, &kept), 0);
		CU_ASSERT_EQUAL(freed, 4);
		CU_ASSERT_EQUAL(kept, 400000 * 4 + 6000);
		CU_ASSERT_NOT_EQUAL(access(junk, F_OK), 0);
		CU_ASSERT_EQUAL(count_files(objects, NULL), 4);
		free(junk);
	}
	unsetenv("REHYDRA_LFS_TOKEN");
	for (unsigned i = 0; i < 4; i++)
		free(data[i]);
	free(objects);
	free(cfg);
	free(url);
	free(cache);
	free(bare);
	free(files);
	free(store);
	fx_free(&f);
}

/* rh_manifest_parse, which resolve reads manifests with, from memory:
 * exactly `len` bytes, the files filled, the tag's name enforced. */
static void test_registry__manifest_parse(void)
{
	static const char text[] =
		"{\"rehydra_manifest\": 1, \"name\": \"m\", \"version\": \"1\", \"files\": ["
		"{\"path\": \"w/a.bin\", \"size\": 3, \"sha256\": "
		"\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"}]}"
		"trailing bytes past len";
	size_t len = strlen(text) - strlen("trailing bytes past len");
	struct rh_model_version *v = calloc(1, sizeof(*v));
	char hex[65];

	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	v->name = strdup("m");
	v->version = strdup("1");
	CU_ASSERT_EQUAL_FATAL(rh_manifest_parse(v, text, len, "here"), 0);
	CU_ASSERT_EQUAL(v->n_files, 1);
	CU_ASSERT_STRING_EQUAL(v->files[0].path, "w/a.bin");
	CU_ASSERT_EQUAL(v->total_bytes, 3);
	CU_ASSERT_EQUAL(v->manifest_len, len);
	rh_sha256_buf_hex(hex, text, len);
	CU_ASSERT_STRING_EQUAL(v->manifest_sha256, hex);
	rh_model_version_free(v);

	v = calloc(1, sizeof(*v));
	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	v->name = strdup("other");
	v->version = strdup("1");
	CU_ASSERT_EQUAL(rh_manifest_parse(v, text, len, "here"), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "here: \"name\" must be \"other\""));
	rh_model_version_free(v);
}

RH_TEST_MAIN("registry",
	     { "resolve_and_sources", test_registry__resolve_and_sources },
	     { "bare_and_lightweight", test_registry__bare_and_lightweight },
	     { "open_errors", test_registry__open_errors },
	     { "unknown_version", test_registry__unknown_version },
	     { "commit_pin_mismatch", test_registry__commit_pin_mismatch },
	     { "pointer_manifest_mismatch", test_registry__pointer_manifest_mismatch },
	     { "manifest_validation", test_registry__manifest_validation },
	     { "manifest_parse", test_registry__manifest_parse },
	     { "malformed_lfs_pointer", test_registry__malformed_lfs_pointer },
	     { "missing_lfs_object", test_registry__missing_lfs_object },
	     { "list", test_registry__list },
	     { "url_clone_and_fetch", test_registry__url_clone_and_fetch },
	     { "lfs_server", test_registry__lfs_server })
