/*
 * fuzz_runbook.c - libFuzzer target for the runbook loader.
 *
 * A runbook is the one file a user writes by hand and hands to every
 * command, so the loader must turn any bytes into a runbook or positioned
 * diagnostics, never a crash: this drives rh_runbook_load_buf (JSON
 * parsing, every validation pass, the pointer-to-line mapping of each
 * diagnostic) with the fuzzer's bytes, and on success reads the result the
 * way the engine does (order, dependencies, registry resolution).
 */
#include "fuzz.h"

#include "diag.h"
#include "runbook.h"

#include <jansson.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rh_diags diags = RH_DIAGS_INIT;
	struct rh_runbook *rb = NULL;
	char *buf = fuzz_copy(data, size);

	if (rh_runbook_load_buf(&rb, "fuzz.json", buf, size, NULL, 0, &diags) == 0) {
		json_t *scope = json_object();
		size_t *pos = calloc(rb->n_steps + 1, sizeof(*pos));
		char *reg = NULL;

		if (!pos)
			abort();
		for (size_t i = 0; i < rb->n_steps; i++)
			pos[rb->order[i]] = i;
		for (size_t u = 0; u < rb->n_steps; u++) {
			if (rh_runbook_step_index(rb, rb->steps[u].id) != (long)u)
				abort(); /* ids are unique and found */
			for (size_t k = 0; k < rb->steps[u].n_after; k++) {
				size_t a = rb->steps[u].after[k];

				/* the order is topological and depends_on sees the edge */
				if (a >= rb->n_steps || pos[a] >= pos[u] ||
				    !rh_runbook_depends_on(rb, u, a))
					abort();
			}
		}
		free(pos);
		if (rb->model.present && scope && rh_runbook_registry_resolve(&reg, rb, scope) == 0)
			free(reg);
		json_decref(scope);
	} else {
		/* every diagnostic is located and worded */
		for (size_t i = 0; i < diags.count; i++)
			if (!diags.items[i].message || diags.items[i].line < 0)
				abort();
	}
	rh_runbook_free(rb);
	rh_diags_clear(&diags);
	free(buf);
	return 0;
}
