/*
 * fuzz_journal.c - libFuzzer target for the journal parser and verifier.
 *
 * `audit verify` runs on a journal copied from a mirror or edited by
 * whoever wants to hide a failed drill, so every byte of it is hostile
 * input: this writes the fuzzer's bytes as a journal file and runs the
 * verifier (both passes: chain and hashes), the streaming reader and the
 * field-selecting reader over it. The file lives in a private temporary
 * directory, rewritten for each input and removed at exit.
 */
#include "fuzz.h"

#include "journal.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
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
	return 0;
}
