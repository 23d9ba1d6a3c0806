/*
 * fuzz_journal.c - libFuzzer target for the journal parser and verifier.
 *
 * `audit verify` runs on a journal copied from a mirror or edited by
 * whoever wants to hide a failed drill, so every byte of it is hostile
 * input: this writes the fuzzer's bytes as a journal file and runs the
 * verifier (both passes: chain and hashes), the streaming reader and the
 * field-selecting reader over it. The file lives in a private temporary
 * directory, rewritten for each input and removed at exit.
 *
 * A mutated entry almost never keeps a matching hash, which would stop the
 * verifier at the first line; so when verify reports a bad hash or a
 * broken link, the input is also run again with its chain recomputed (each
 * JSON line re-serialised canonically with prev and hash set, as someone
 * rewriting the journal consistently would do), which lets the fuzzer reach
 * the checks behind the hashes.
 */
#include "fuzz.h"

#include "journal.h"
#include "sha256.h"

#include <jansson.h>

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[4096];
static char file[4200];

static void cleanup(void)
{
	unlink(file);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");

	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "%s/rh-fuzz-journal.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		abort();
	snprintf(file, sizeof(file), "%s/journal.jsonl", dir);
	atexit(cleanup);
	return 0;
}

static int count(const struct rh_journal_entry *e, void *user)
{
	size_t *n = user;

	/* what the readers promise: kind, at, hash and prev are always there */
	if (!e->kind || !e->at || !e->hash || !e->prev || strlen(e->hash) != 64)
		abort();
	if (strcmp(e->kind, "genesis") != 0 && !e->record)
		abort();
	(*n)++;
	return 0;
}

/* The input with every line that is a JSON object re-chained: prev is the
 * hash of the entry before, hash that of the canonical form without it.
 * Other lines are kept. New buffer in *out (length *out_len). */
static void rechain(const uint8_t *data, size_t size, char **out, size_t *out_len)
{
	char prev[65] = "0000000000000000000000000000000000000000000000000000000000000000";
	char *buf = malloc(2 * size + 4096), *w;
	size_t cap = 2 * size + 4096, at = 0;

	if (!buf)
		abort();
	w = buf;
	while (at < size) {
		const uint8_t *nl = memchr(data + at, '\n', size - at);
		size_t end = nl ? (size_t)(nl - data) : size;
		json_t *e =
		    json_loadb((const char *)data + at, end - at, JSON_REJECT_DUPLICATES, NULL);
		char *plain = NULL, *line = NULL;
		const char *src = (const char *)data + at;
		size_t len = end - at;

		if (json_is_object(e)) {
			json_object_del(e, "hash");
			json_object_set_new(e, "prev", json_string(prev));
			plain =
			    json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
			if (plain) {
				rh_sha256_buf_hex(prev, plain, strlen(plain));
				json_object_set_new(e, "hash", json_string(prev));
				line = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS |
							 JSON_REAL_PRECISION(15));
			}
			if (line) {
				src = line;
				len = strlen(line);
			}
		}
		if ((size_t)(w - buf) + len + 2 > cap) {
			size_t off = (size_t)(w - buf);

			cap = 2 * (cap + len);
			buf = realloc(buf, cap);
			if (!buf)
				abort();
			w = buf + off;
		}
		memcpy(w, src, len);
		w += len;
		if (nl)
			*w++ = '\n';
		free(plain);
		free(line);
		json_decref(e);
		at = nl ? end + 1 : size;
	}
	*out = buf;
	*out_len = (size_t)(w - buf);
}

static void check(const uint8_t *data, size_t size, struct rh_journal_problem *pb);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rh_journal_problem pb;

	check(data, size, &pb);
	if (pb.kind == RH_JOURNAL_BAD_HASH || pb.kind == RH_JOURNAL_BROKEN_LINK) {
		char *fixed;
		size_t n;

		rechain(data, size, &fixed, &n);
		check((const uint8_t *)fixed, n, &pb);
		free(fixed);
	}
	return 0;
}

static void check(const uint8_t *data, size_t size, struct rh_journal_problem *pbp)
{
	static const char *const fields[] = {"verdict", "runbook.name", "steps[].status", "rto_s",
					     NULL};
	struct rh_journal_problem pb;
	struct rh_journal *j = NULL;
	uint64_t entries = 0;
	size_t seen = 0, seen_fields = 0;
	int vr, fr, ffr;
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size) || close(fd) != 0)
		abort();
	if (rh_journal_open_file(&j, file) != 0)
		abort();
	vr = rh_journal_verify(j, &pb, &entries);
	fr = rh_journal_foreach(j, count, &seen);
	ffr = rh_journal_foreach_fields(j, fields, count, &seen_fields);
	/* what the full reader accepts the field reader accepts too (it may
	 * accept more: it does not check the members it skips) */
	if (fr == 0 && (ffr != 0 || seen != seen_fields))
		abort();
	/* an intact journal reads to its end with every entry */
	if (vr == 0 && (pb.kind != RH_JOURNAL_OK || fr != 0 || seen != entries))
		abort();
	if (vr != 0 && (pb.kind == RH_JOURNAL_OK || !pb.message[0]))
		abort();
	rh_journal_close(j);
	*pbp = pb;
}
