/*
 * fuzz_lfs.c - libFuzzer target for the Git LFS parsers.
 *
 * A registry's blobs and its LFS server's answers come from whoever
 * controls the registry: this feeds the fuzzer's bytes to the pointer
 * detector and strict pointer parser (each blob sync reads), the batch
 * response parser (what an LFS server answers), and, as a C string, to the
 * Retry-After parser and the URL helpers that split, redact and derive LFS
 * endpoints from registry URLs.
 */
#include "fuzz.h"

#include "error.h"
#include "lfs.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

static void check_pointer(const char *buf, size_t size)
{
	struct rh_lfs_pointer p;

	(void)rh_lfs_pointer_detect(buf, size);
	memset(&p, 0, sizeof(p));
	if (rh_lfs_pointer_parse(&p, buf, size) == 0) {
		/* a parsed oid is 64 lowercase hex digits */
		if (strlen(p.oid) != 64 || strspn(p.oid, "0123456789abcdef") != 64)
			abort();
		char *obj = rh_lfs_local_object_path("/r/.git", p.oid);

		if (!obj)
			abort();
		free(obj);
	}
}

static void check_batch(const char *buf, size_t size)
{
	static const struct rh_lfs_pointer want = {
	    "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393", 12};
	struct rh_lfs_action a;

	memset(&a, 0, sizeof(a));
	if (rh_lfs_batch_parse(&a, buf, size, &want, "https://lfs.example/info/lfs") == 0) {
		if (!a.href || !a.headers)
			abort();
		for (size_t i = 0; a.headers[i]; i++)
			if (strpbrk(a.headers[i], "\r\n"))
				abort(); /* a header line can never carry a second one */
	}
	rh_lfs_action_clear(&a);
}

static void check_strings(const char *s)
{
	char *bare = NULL, *user = NULL, *pass = NULL;
	char *r;

	(void)rh_lfs_retry_after(s, 1.7e9);
	r = rh_lfs_url_redact(s);
	free(r);
	if (rh_lfs_url_split(s, &bare, &user, &pass) == 0) {
		free(bare);
		free(user);
		free(pass);
	}
	r = rh_lfs_endpoint_for_remote(s);
	free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = fuzz_copy(data, size);
	char *s = fuzz_strndup(data, size);

	check_pointer(buf, size);
	check_batch(buf, size);
	check_strings(s);
	free(s);
	free(buf);
	return 0;
}
