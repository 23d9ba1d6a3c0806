/*
 * journal_gen.c - benchmark helper for tests/bench/audit.sh (not built by
 * CMake; the script compiles it against the build's libraries).
 *
 *   journal_gen gen TEMPLATE N OUT      write a valid journal of N drills
 *   journal_gen append STATE TEMPLATE N time N appends through the library
 *
 * `gen` writes the chain directly, from the format in journal.h (canonical
 * JSON, sha256 of the line without its hash member), not through
 * rh_journal_append: 100,000 fsyncs would take minutes, and a second
 * implementation of the format is a check of the first (`audit verify` must
 * accept what this writes). The records are copies of TEMPLATE (a real
 * drill record) with their ids, times, runbooks, targets, scenarios, RTOs
 * and verdicts varied.
 *
 * `append` times rh_journal_append (lock, read the last line, write, fsync)
 * and, as the floor, a bare write + fdatasync of a line of the same size.
 */
#include "journal.h"
#include "sha256.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15))

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void rfc3339(char *buf, size_t n, time_t t, int ms)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	/* the ranges the compiler cannot know: a year has four digits here */
	snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
		 (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
		 tm.tm_sec % 100, ms % 1000);
}

/* Writes entry + its hash as one line; prev gets the new hash. */
static void emit(FILE *out, json_t *entry, char prev[65])
{
	char *plain = json_dumps(entry, FLAGS);
	const char *at = json_string_value(json_object_get(entry, "at"));
	size_t cut = 7 + strlen(at) + 1;
	char hash[65];

	rh_sha256_buf_hex(hash, plain, strlen(plain));
	fwrite(plain, 1, cut, out);
	fprintf(out, ",\"hash\":\"%s\"", hash);
	fputs(plain + cut, out);
	fputc('\n', out);
	memcpy(prev, hash, 65);
	free(plain);
}

static json_t *vary(const json_t *tmpl, long i, time_t t0)
{
	static const char *const runbooks[] = { "tinylm-local", "llm-eu", "llm-us", "embed-cn",
						"rerank-apac" };
	static const char *const regions[] = { "local", "eu-west-1", "us-east-1", "cn-hangzhou" };
	static const char *const scenarios[] = { "H20 unavailable in CN", "region outage", NULL };
	json_t *r = json_deep_copy(tmpl);
	double target = 60, rto = 20 + (double)(i * 7919 % 5000) / 100.0; /* 20 .. 70 s */
	int failed = i % 37 == 0;
	char id[96], t0s[40], fin[40];
	const char *rb = runbooks[i % 5];

	rfc3339(t0s, sizeof(t0s), t0, (int)(i % 1000));
	rfc3339(fin, sizeof(fin), t0 + (time_t)rto + 5, (int)(i % 1000));
	{
		struct tm tm;

		gmtime_r(&t0, &tm);
		snprintf(id, sizeof(id), "%04d%02d%02dT%02d%02d%02dZ-%s-%06lx", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, rb,
			 (unsigned long)i & 0xffffff);
	}
	json_object_set_new(r, "drill_id", json_string(id));
	json_object_set_new(json_object_get(r, "runbook"), "name", json_string(rb));
	json_object_set_new(r, "target", json_pack("{s:s, s:s}", "provider", "local", "region",
						   regions[i % 4]));
	json_object_set_new(r, "scenario", scenarios[i % 3] ? json_string(scenarios[i % 3])
							    : json_null());
	json_object_set_new(r, "t0", json_string(t0s));
	json_object_set_new(r, "finished", json_string(fin));
	json_object_set_new(r, "rto_target_s", json_real(target));
	json_object_set_new(r, "rto_s", failed ? json_null() : json_real(rto));
	json_object_set_new(r, "verdict", json_string(failed ? "failed"
						      : rto <= target ? "met" : "missed"));
	return r;
}

static int gen(const char *tmpl_path, long n, const char *out_path)
{
	json_t *tmpl = json_load_file(tmpl_path, 0, NULL);
	FILE *out = fopen(out_path, "w");
	char prev[65], at[40];
	time_t base = 1767225600; /* 2026-01-01 */
	json_t *e;

	if (!tmpl || !out) {
		fprintf(stderr, "journal_gen: cannot read %s or write %s\n", tmpl_path, out_path);
		return 1;
	}
	memset(prev, '0', 64);
	prev[64] = '\0';
	rfc3339(at, sizeof(at), base, 0);
	e = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i}", "at", at, "journal_id",
		      "0123456789abcdef", "kind", "genesis", "prev", prev, "rehydra", 1, "seq", 0);
	emit(out, e, prev);
	json_decref(e);
	for (long i = 1; i <= n; i++) {
		time_t t0 = base + i * 300;

		rfc3339(at, sizeof(at), t0 + 90, 0);
		e = json_pack("{s:s, s:s, s:s, s:o, s:I}", "at", at, "kind", "drill", "prev", prev,
			      "record", vary(tmpl, i, t0), "seq", (json_int_t)i);
		emit(out, e, prev);
		json_decref(e);
	}
	json_decref(tmpl);
	return fclose(out) == 0 ? 0 : 1;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int append(const char *state, const char *tmpl_path, int n)
{
	struct rh_journal *j = NULL;
	json_t *tmpl = json_load_file(tmpl_path, 0, NULL);
	double *t = calloc((size_t)n, sizeof(*t)), *raw = calloc((size_t)n, sizeof(*raw));
	char *line, path[4096];
	size_t len;
	int fd;

	if (!tmpl || !t || !raw || rh_journal_open(&j, state) < 0) {
		fprintf(stderr, "journal_gen: cannot open the journal in %s\n", state);
		return 1;
	}
	for (int i = 0; i < n; i++) {
		double t1 = now();

		if (rh_journal_append(j, tmpl, NULL) < 0) {
			fprintf(stderr, "journal_gen: append failed\n");
			return 1;
		}
		t[i] = now() - t1;
	}
	/* the floor: the same bytes, O_APPEND write + fdatasync, nothing else */
	line = json_dumps(tmpl, FLAGS);
	len = strlen(line);
	line[len - 1] = '\n';
	snprintf(path, sizeof(path), "%s/raw-append.jsonl", state);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	for (int i = 0; i < n && fd >= 0; i++) {
		double t1 = now();

		if (write(fd, line, len) != (ssize_t)len || fdatasync(fd) != 0)
			return 1;
		raw[i] = now() - t1;
	}
	close(fd);
	qsort(t, (size_t)n, sizeof(*t), cmp);
	qsort(raw, (size_t)n, sizeof(*raw), cmp);
	printf("%.3f %.3f %.3f %.3f %zu\n", t[n / 2] * 1e3, t[n * 95 / 100] * 1e3,
	       raw[n / 2] * 1e3, raw[n * 95 / 100] * 1e3, len);
	free(line);
	free(t);
	free(raw);
	json_decref(tmpl);
	rh_journal_close(j);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "gen") == 0)
		return gen(argv[2], strtol(argv[3], NULL, 10), argv[4]);
	if (argc == 5 && strcmp(argv[1], "append") == 0)
		return append(argv[2], argv[3], (int)strtol(argv[4], NULL, 10));
	fprintf(stderr, "usage: journal_gen gen TEMPLATE N OUT | append STATE TEMPLATE N\n");
	return 2;
}
