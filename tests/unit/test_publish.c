/*
 * test_publish.c - adding versions to a registry on this machine.
 *
 * Repositories are made with libgit2 here (the git-lfs CLI round trip is in
 * tests/integration/registry_cli.sh). The cases: what lands in git (the
 * exact pointer text, the manifest, the tag, .gitattributes, the LFS
 * store), that the registry reads it back, and every refusal, each of
 * which must leave no tag behind.
 */
#include "testlib.h"

#include "error.h"
#include "publish.h"
#include "registry.h"
#include "sha256.h"

#include <git2.h>
#include <stdbool.h>
#include <unistd.h>

struct fx {
	char *tmp;
	char *repo;
	char *in;
};

static void fx_init(struct fx *f, bool bare)
{
	git_repository *repo = NULL;

	f->tmp = rh_test_tmpdir();
	f->repo = rh_test_path(f->tmp, "reg");
	f->in = rh_test_path(f->tmp, "in");
	git_libgit2_init();
	CU_ASSERT_EQUAL_FATAL(git_repository_init(&repo, f->repo, bare ? 1 : 0), 0);
	git_repository_free(repo);
	CU_ASSERT_FATAL(mkdir(f->in, 0700) == 0);
	setenv("REHYDRA_AUTHOR_NAME", "publisher", 1);
	setenv("REHYDRA_AUTHOR_EMAIL", "pub@rehydra.invalid", 1);
}

static void fx_free(struct fx *f)
{
	rh_test_rm_rf(f->tmp);
	free(f->repo);
	free(f->in);
	free(f->tmp);
	git_libgit2_shutdown();
}

static char *blob_text(const char *repo_path, const char *spec)
{
	git_repository *repo = NULL;
	git_object *obj = NULL;
	char *text = NULL;

	if (git_repository_open(&repo, repo_path) == 0 &&
	    git_revparse_single(&obj, repo, spec) == 0 &&
	    git_object_type(obj) == GIT_OBJECT_BLOB) {
		const git_blob *b = (const git_blob *)obj;
		size_t n = (size_t)git_blob_rawsize(b);

		text = malloc(n + 1);
		if (text) {
			memcpy(text, git_blob_rawcontent(b), n);
			text[n] = '\0';
		}
	}
	git_object_free(obj);
	git_repository_free(repo);
	return text;
}

static bool has_tag(const char *repo_path, const char *tag)
{
	git_repository *repo = NULL;
	git_reference *ref = NULL;
	char name[256];
	bool ok;

	snprintf(name, sizeof(name), "refs/tags/%s", tag);
	ok = git_repository_open(&repo, repo_path) == 0 &&
	     git_reference_lookup(&ref, repo, name) == 0;
	git_reference_free(ref);
	git_repository_free(repo);
	return ok;
}

static void test_publish__what_lands(void)
{
	struct fx f;
	struct rh_publish_result res;
	struct rh_publish_opts po = RH_PUBLISH_OPTS_INIT;
	struct rh_registry *reg = NULL;
	struct rh_model_version *v = NULL;
	json_t *meta = json_pack("{s:s, s:{s:i}, s:{s:s}}", "license", "MIT", "serving",
				 "min_gpu_memory_gb", 16, "export", "eccn", "EAR99");
	char *w = NULL, *sub = NULL, *t = NULL;
	char *text;
	char sha[65];
	char want[512];
	char obj[512];
	const char *inputs[2];

	fx_init(&f, true);
	w = rh_test_path(f.in, "w.bin");
	sub = rh_test_path(f.in, "cfg");
	CU_ASSERT_FATAL(mkdir(sub, 0700) == 0);
	t = rh_test_path(sub, "tok en.json");
	rh_test_write_file(w, "weights weights weights");
	rh_test_write_file(t, "{}");
	inputs[0] = w;
	inputs[1] = sub;
	po.meta = meta;
	po.meta_name = "meta.json";
	CU_ASSERT_EQUAL_FATAL(rh_registry_publish(&res, f.repo, "m", "1.0", inputs, 2, &po), 0);
	CU_ASSERT_EQUAL(res.files, 2);
	CU_ASSERT_EQUAL(res.bytes, 23 + 2);
	CU_ASSERT_EQUAL(res.bytes_stored, 23 + 2);
	CU_ASSERT_EQUAL(strlen(res.commit), 40);
	CU_ASSERT(has_tag(f.repo, "m/1.0"));

	/* The pointer, byte for byte as git-lfs writes it. */
	rh_sha256_buf_hex(sha, "weights weights weights", 23);
	snprintf(want, sizeof(want),
		 "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize 23\n", sha);
	text = blob_text(f.repo, "m/1.0:models/m/w.bin");
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_STRING_EQUAL(text, want);
	free(text);
	snprintf(obj, sizeof(obj), "%s/lfs/objects/%.2s/%.2s/%s", f.repo, sha, sha + 2, sha);
	CU_ASSERT_EQUAL(access(obj, R_OK), 0);
	{
		struct stat sb;

		/* read-only, so a restore may hard-link it */
		CU_ASSERT_EQUAL(stat(obj, &sb), 0);
		CU_ASSERT_EQUAL(sb.st_mode & 0222, 0);
	}

	/* .gitattributes: a space becomes [[:space:]], as git lfs track does. */
	text = blob_text(f.repo, "m/1.0:.gitattributes");
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NOT_NULL(
		strstr(text, "models/m/w.bin filter=lfs diff=lfs merge=lfs -text\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "models/m/tok[[:space:]]en.json filter=lfs"));
	free(text);

	/* The registry reads it back: files, sizes, metadata. */
	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&reg, f.repo, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, reg, "m", "1.0", NULL), 0);
	CU_ASSERT_STRING_EQUAL(v->commit, res.commit);
	CU_ASSERT_STRING_EQUAL(v->manifest_sha256, res.manifest_sha256);
	CU_ASSERT_EQUAL(v->n_files, 2);
	/* A directory contributes its files by their path inside it. */
	CU_ASSERT_STRING_EQUAL(v->files[0].path, "tok en.json");
	CU_ASSERT_STRING_EQUAL(v->files[1].path, "w.bin");
	CU_ASSERT_STRING_EQUAL(v->files[1].sha256, sha);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(v->manifest, "license")), "MIT");
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(
				json_object_get(v->manifest, "serving"), "min_gpu_memory_gb")),
			16);
	rh_model_version_free(v);
	v = NULL;

	/* A second version replaces models/m/ (w.bin is gone) and keeps the
	 * object store's existing objects. */
	inputs[0] = sub;
	po.license = "Apache-2.0";
	CU_ASSERT_EQUAL(rh_registry_publish(&res, f.repo, "m", "2.0", inputs, 1, &po), 0);
	CU_ASSERT_EQUAL(res.bytes_stored, 0); /* tok en.json was stored already */
	rh_registry_free(reg);
	reg = NULL;
	CU_ASSERT_EQUAL_FATAL(rh_registry_open(&reg, f.repo, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(rh_registry_resolve(&v, reg, "m", "2.0", NULL), 0);
	CU_ASSERT_EQUAL(v->n_files, 1);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(v->manifest, "license")),
			       "Apache-2.0");
	text = blob_text(f.repo, "m/2.0:models/m/w.bin");
	CU_ASSERT_PTR_NULL(text);
	free(text);
	/* Each attributes line once, however many versions. */
	text = blob_text(f.repo, "m/2.0:.gitattributes");
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NULL(strstr(strstr(text, "tok[[:space:]]en.json") + 1,
				  "tok[[:space:]]en.json"));
	free(text);

	rh_model_version_free(v);
	rh_registry_free(reg);
	json_decref(meta);
	free(w);
	free(sub);
	free(t);
	fx_free(&f);
}

static void test_publish__refusals(void)
{
	struct fx f;
	struct rh_publish_opts po = RH_PUBLISH_OPTS_INIT;
	json_t *bad_meta = json_pack("{s:s}", "licence", "MIT");
	json_t *bad_type = json_pack("{s:s}", "serving", "big");
	char *w, *m, *dir, *link, *a, *adir, *ab;
	const char *one[1];
	const char *two[2];

	fx_init(&f, true);
	w = rh_test_path(f.in, "w.bin");
	m = rh_test_path(f.in, "manifest.json");
	dir = rh_test_path(f.tmp, "withlink");
	link = rh_test_path(dir, "l.bin");
	a = rh_test_path(f.tmp, "a");
	adir = rh_test_path(f.tmp, "d");
	rh_test_write_file(w, "x");
	rh_test_write_file(m, "{}");
	CU_ASSERT_FATAL(mkdir(dir, 0700) == 0);
	CU_ASSERT_FATAL(symlink(w, link) == 0);
	rh_test_write_file(a, "file a");
	CU_ASSERT_FATAL(mkdir(adir, 0700) == 0);
	ab = rh_test_path(adir, "a");
	CU_ASSERT_FATAL(mkdir(ab, 0700) == 0);
	free(ab);
	ab = rh_test_path(adir, "a/b");
	rh_test_write_file(ab, "b");

	one[0] = w;
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, f.repo, "bad/name", "1", one, 1, NULL),
			RH_EINVAL);
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, f.repo, "m", "..", one, 1, NULL), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, f.repo, "m", "x.lock", one, 1, NULL),
			RH_EINVAL);
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, f.repo, "m", "1", one, 0, NULL), RH_EINVAL);
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, "ssh://host/reg", "m", "1", one, 1, NULL),
			RH_EUNSUPPORTED);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "clone"));
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, f.tmp, "m", "1", one, 1, NULL),
			RH_ENOTFOUND);
	one[0] = m;
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, f.repo, "m", "1", one, 1, NULL), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "manifest.json"));
	one[0] = dir;
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, f.repo, "m", "1", one, 1, NULL), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "symlink"));
	two[0] = a;
	two[1] = adir;
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, f.repo, "m", "1", two, 2, NULL), RH_EINVAL);
	two[0] = w;
	two[1] = w;
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, f.repo, "m", "1", two, 2, NULL), RH_EINVAL);
	one[0] = w;
	po.meta = bad_meta;
	po.meta_name = "meta.json";
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, f.repo, "m", "1", one, 1, &po), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "\"licence\""));
	po.meta = bad_type;
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, f.repo, "m", "1", one, 1, &po), RH_EINVAL);
	CU_ASSERT_FALSE(has_tag(f.repo, "m/1"));

	/* Versions are immutable. */
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, f.repo, "m", "1", one, 1, NULL), 0);
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, f.repo, "m", "1", one, 1, NULL), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "immutable"));

	json_decref(bad_meta);
	json_decref(bad_type);
	free(w);
	free(m);
	free(dir);
	free(link);
	free(a);
	free(adir);
	free(ab);
	fx_free(&f);
}

/* With a working tree: it follows the commit, and local changes under the
 * model's directory make the publish fail without a tag. */
static void test_publish__worktree(void)
{
	struct fx f;
	char *w, *wt_file;
	const char *one[1];

	fx_init(&f, false);
	w = rh_test_path(f.in, "w.bin");
	rh_test_write_file(w, "one");
	one[0] = w;
	CU_ASSERT_EQUAL_FATAL(rh_registry_publish(NULL, f.repo, "m", "1", one, 1, NULL), 0);
	wt_file = rh_test_path(f.repo, "models/m/manifest.json");
	CU_ASSERT_EQUAL(access(wt_file, F_OK), 0);
	free(wt_file);
	wt_file = rh_test_path(f.repo, "models/m/w.bin");
	rh_test_write_file(wt_file, "local edit");
	rh_test_write_file(w, "two");
	CU_ASSERT_EQUAL(rh_registry_publish(NULL, f.repo, "m", "2", one, 1, NULL), RH_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "local changes"));
	CU_ASSERT_FALSE(has_tag(f.repo, "m/2"));
	free(wt_file);
	free(w);
	fx_free(&f);
}

RH_TEST_MAIN("publish",
	     { "what_lands", test_publish__what_lands },
	     { "refusals", test_publish__refusals },
	     { "worktree", test_publish__worktree })
