/*
 * journal_rewrite.c - the adversary of tests/integration/audit_tamper.sh: an
 * editor who can write the journal file and knows its format (journal.h).
 *
 *   journal_rewrite IN OUT SEQ VERDICT   entry SEQ's record gets verdict
 *                                        VERDICT; every hash from there on
 *                                        is recomputed, so the chain stays
 *                                        intact and `audit verify` passes
 *   journal_rewrite IN OUT --drop-last   the last entry is removed
 *
 * Test-only; never built into rehydra.
 */
#include "sha256.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15))

int main(int argc, char **argv)
{
	FILE *in, *out;
	char *line = NULL, *held = NULL;
	size_t cap = 0;
	char prev[65] = "";
	long seq_at;
	bool drop = argc == 4 && strcmp(argv[3], "--drop-last") == 0;

	if (argc != 5 && !drop) {
		fprintf(stderr, "usage: journal_rewrite IN OUT SEQ VERDICT | IN OUT --drop-last\n");
		return 2;
	}
	in = fopen(argv[1], "r");
	out = fopen(argv[2], "w");
	if (!in || !out)
		return 2;
	seq_at = drop ? -1 : atol(argv[3]);
	while (getline(&line, &cap, in) > 0) {
		json_t *e = json_loads(line, 0, NULL);
		long seq;
		char *plain;
		const char *at;
		size_t cut;
		char hash[65];

		if (!e)
			return 3;
		seq = (long)json_integer_value(json_object_get(e, "seq"));
		if (drop) { /* hold each line back one step; the last is never written */
			if (held)
				fputs(held, out);
			free(held);
			held = strdup(line);
			json_decref(e);
			continue;
		}
		if (seq < seq_at) {
			fputs(line, out);
			snprintf(prev, sizeof(prev), "%s",
				 json_string_value(json_object_get(e, "hash")));
			json_decref(e);
			continue;
		}
		if (seq == seq_at)
			json_object_set_new(json_object_get(e, "record"), "verdict",
					    json_string(argv[4]));
		json_object_set_new(e, "prev", json_string(prev));
		json_object_del(e, "hash");
		plain = json_dumps(e, FLAGS);
		at = json_string_value(json_object_get(e, "at"));
		cut = 7 + strlen(at) + 1; /* {"at":"...", */
		rh_sha256_buf_hex(hash, plain, strlen(plain));
		fwrite(plain, 1, cut, out);
		fprintf(out, ",\"hash\":\"%s\"", hash);
		fputs(plain + cut, out);
		fputc('\n', out);
		memcpy(prev, hash, 65);
		free(plain);
		json_decref(e);
	}
	free(held);
	free(line);
	fclose(in);
	return fclose(out) == 0 ? 0 : 2;
}
