/*
 * fuzz_manifest.c - libFuzzer target for the model manifest parser.
 *
 * manifest.json comes from the registry, which whoever publishes models
 * controls; its paths become file names on the sync target. This runs
 * rh_manifest_parse (JSON, keys, types, path safety, duplicates, a file
 * inside another) on the fuzzer's bytes as the manifest of model "tiny"
 * version "1.0.0", and checks what a parsed manifest promises the sinks.
 */
#include "fuzz.h"

#include "registry.h"
#include "sink.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rh_model_version *v = calloc(1, sizeof(*v));
	char *buf = fuzz_copy(data, size);

	if (!v || !(v->name = strdup("tiny")) || !(v->version = strdup("1.0.0")))
		abort();
	if (rh_manifest_parse(v, buf, size, "fuzz@0:models/tiny/manifest.json") == 0) {
		uint64_t total = 0;

		for (size_t i = 0; i < v->n_files; i++) {
			/* every path a sink will write is safe and distinct */
			if (!rh_sink_path_is_safe(v->files[i].path) ||
			    strcmp(v->files[i].path, "manifest.json") == 0 ||
			    strlen(v->files[i].sha256) != 64)
				abort();
			for (size_t k = 0; k < i; k++)
				if (strcmp(v->files[i].path, v->files[k].path) == 0)
					abort();
			total += v->files[i].size;
		}
		if (total != v->total_bytes || v->manifest_len != size)
			abort();
	}
	rh_model_version_free(v);
	free(buf);
	return 0;
}
