/*
 * test_journal.c - the audit journal: appends chain, verify finds every kind
 * of tampering at the right line, a torn tail is repaired without losing
 * earlier entries, and concurrent appenders from several processes keep the
 * chain intact.
 */
#include "error.h"
#include "journal.h"
#include "sha256.h"
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------- */

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	CU_ASSERT_EQUAL_FATAL(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

static void write_bytes(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL_FATAL(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* The file as an array of lines (newlines kept). */
struct lines {
	char *text;
	char *item[512];
	size_t len[512];
	size_t n;
};

static void lines_load(struct lines *l, const char *path)
{
	size_t total;
	char *p;

	memset(l, 0, sizeof(*l));
	l->text = read_all(path, &total);
	p = l->text;
	while (p < l->text + total) {
		char *nl = memchr(p, '\n', (size_t)(l->text + total - p));
		size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(l->text + total - p);

		CU_ASSERT_FATAL(l->n < 512);
		l->item[l->n] = p;
		l->len[l->n++] = n;
		p += n;
	}
}

static void lines_save(const struct lines *l, const char *path)
{
	FILE *f = fopen(path, "wb");

	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	for (size_t i = 0; i < l->n; i++)
		if (l->item[i]) {
			CU_ASSERT_EQUAL(fwrite(l->item[i], 1, l->len[i], f), l->len[i]);
		}
	fclose(f);
}

static json_t *make_record(int i)
{
	json_t *r = json_pack("{s:s, s:{s:s, s:s}, s:{s:s, s:s}, s:f, s:f, s:s, s:s, "
			      "s:[{s:s, s:f}]}",
			      "drill_id", "20261121T043318Z-rb-abcdef", "runbook", "name", "rb",
			      "sha256", "00ff", "target", "provider", "local", "region", "local",
			      "rto_s", 0.072 + i, "rto_target_s", 60.0, "verdict",
			      i % 3 ? "met" : "missed", "t0", "2026-11-21T04:33:18.123Z", "steps",
			      "id", "answer", "duration_s", 0.071999999999999995);

	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	json_object_set_new(r, "n", json_integer(i));
	return r;
}

/* A fresh journal in a temporary state dir with `n` drill entries. */
static struct rh_journal *make_journal(char **tmp, int n)
{
	struct rh_journal *j = NULL;

	*tmp = rh_test_tmpdir();
	CU_ASSERT_EQUAL_FATAL(rh_journal_open(&j, *tmp), 0);
	for (int i = 0; i < n; i++) {
		json_t *r = make_record(i);
		uint64_t seq = 0;

		CU_ASSERT_EQUAL_FATAL(rh_journal_append(j, r, &seq), 0);
		CU_ASSERT_EQUAL(seq, (uint64_t)i + 1);
		json_decref(r);
	}
	return j;
}

static void done_journal(struct rh_journal *j, char *tmp)
{
	rh_journal_close(j);
	rh_test_rm_rf(tmp);
	free(tmp);
}

static enum rh_journal_problem_kind verify_kind(struct rh_journal *j, size_t *line)
{
	struct rh_journal_problem pb;
	int rc = rh_journal_verify(j, &pb, NULL);

	if (rc == 0) {
		CU_ASSERT_EQUAL(pb.kind, RH_JOURNAL_OK);
	} else {
		CU_ASSERT_EQUAL(rc, RH_EVERIFY);
	}
	if (line)
		*line = pb.line;
	return pb.kind;
}

/* ---- cases ---------------------------------------------------------------- */

struct collect {
	uint64_t n;
	uint64_t stop_at;
	bool in_order;
	int last_n;
};

static int collect_fn(const struct rh_journal_entry *e, void *user)
{
	struct collect *c = user;

	if (e->seq != c->n || e->line != c->n + 1)
		c->in_order = false;
	if (e->seq == 0 && (strcmp(e->kind, "genesis") != 0 || e->record))
		c->in_order = false;
	if (e->seq > 0) {
		if (strcmp(e->kind, "drill") != 0 || !e->record)
			c->in_order = false;
		else
			c->last_n = (int)json_integer_value(json_object_get(e->record, "n"));
	}
	c->n++;
	return c->stop_at && c->n == c->stop_at ? 42 : 0;
}

static void test_journal__append_verify(void)
{
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 5);
	struct rh_journal_problem pb;
	struct collect c = { 0, 0, true, -1 };
	char *dir = rh_test_path(tmp, "journal");
	uint64_t n = 0;
	struct stat st;

	CU_ASSERT_EQUAL(rh_journal_verify(j, &pb, &n), 0);
	CU_ASSERT_EQUAL(pb.kind, RH_JOURNAL_OK);
	CU_ASSERT_EQUAL(n, 6);
	CU_ASSERT_EQUAL(strlen(pb.last_hash), 64);
	CU_ASSERT_EQUAL(rh_journal_foreach(j, collect_fn, &c), 0);
	CU_ASSERT_EQUAL(c.n, 6);
	CU_ASSERT(c.in_order);
	CU_ASSERT_EQUAL(c.last_n, 4);
	/* stops at the callback's first non-zero return, and returns it */
	c = (struct collect){ 0, 3, true, -1 };
	CU_ASSERT_EQUAL(rh_journal_foreach(j, collect_fn, &c), 42);
	CU_ASSERT_EQUAL(c.n, 3);
	/* permissions: file 0600, directory 0700 */
	CU_ASSERT_EQUAL(stat(rh_journal_path(j), &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
	CU_ASSERT_EQUAL(stat(dir, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0700);
	/* reopening keeps the journal (no second genesis) */
	{
		struct rh_journal *j2 = NULL;
		json_t *r = make_record(9);
		uint64_t seq = 0;

		CU_ASSERT_EQUAL_FATAL(rh_journal_open(&j2, tmp), 0);
		CU_ASSERT_EQUAL(rh_journal_append(j2, r, &seq), 0);
		CU_ASSERT_EQUAL(seq, 6);
		CU_ASSERT_EQUAL(rh_journal_verify(j2, &pb, &n), 0);
		CU_ASSERT_EQUAL(n, 7);
		json_decref(r);
		rh_journal_close(j2);
	}
	/* a non-object record is refused */
	{
		json_t *s = json_string("x");

		CU_ASSERT_EQUAL(rh_journal_append(j, s, NULL), RH_EINVAL);
		json_decref(s);
	}
	free(dir);
	done_journal(j, tmp);
}

/* Every line's hash is the sha256 of the line without its hash member, and
 * equally of the canonical dump of the parsed entry without "hash". */
static void test_journal__canonical_hash(void)
{
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 3);
	struct lines l;

	lines_load(&l, rh_journal_path(j));
	CU_ASSERT_EQUAL(l.n, 4);
	for (size_t i = 0; i < l.n; i++) {
		json_t *e = json_loadb(l.item[i], l.len[i], 0, NULL);
		char *canon, *cut;
		char want[65], got[65], viaedit[65];
		size_t n;

		CU_ASSERT_PTR_NOT_NULL_FATAL(e);
		snprintf(want, sizeof(want), "%s", json_string_value(json_object_get(e, "hash")));
		json_object_del(e, "hash");
		canon = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
		rh_sha256_buf_hex(got, canon, strlen(canon));
		CU_ASSERT_STRING_EQUAL(got, want);
		/* the sed recipe from journal.h */
		cut = strstr(l.item[i], ",\"hash\":\"");
		CU_ASSERT_PTR_NOT_NULL_FATAL(cut);
		n = (size_t)(cut - l.item[i]);
		{
			struct rh_sha256 c;
			uint8_t d[32];

			rh_sha256_init(&c);
			rh_sha256_update(&c, l.item[i], n);
			rh_sha256_update(&c, cut + 74, l.len[i] - 1 - n - 74);
			rh_sha256_final(&c, d);
			rh_sha256_hex(viaedit, d);
		}
		CU_ASSERT_STRING_EQUAL(viaedit, want);
		/* reals are written with 15 digits: 0.072, not 0.07199999... */
		if (i == 1) {
			CU_ASSERT_PTR_NOT_NULL(strstr(l.item[i], "\"duration_s\":0.072,"));
		}
		free(canon);
		json_decref(e);
	}
	free(l.text);
	done_journal(j, tmp);
}

static void test_journal__tamper_edit_byte(void)
{
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 10);
	struct lines l;
	char *p;
	size_t line = 0;

	lines_load(&l, rh_journal_path(j));
	/* line 4 is seq 3: change the runbook name "rb" to "rc" */
	p = memmem(l.item[3], l.len[3], "\"name\":\"rb\"", 11);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	p[9] = 'c';
	lines_save(&l, rh_journal_path(j));
	CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_BAD_HASH);
	CU_ASSERT_EQUAL(line, 4);
	{
		struct rh_journal_problem pb;

		rh_journal_verify(j, &pb, NULL);
		CU_ASSERT_EQUAL(pb.seq, 3);
		CU_ASSERT_PTR_NOT_NULL(strstr(pb.message, "line 4 (seq 3): content does not "
							 "match its hash"));
		CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "line 4"));
	}
	/* with a later deletion too, the first problem is still the edit */
	{
		struct lines l2;

		lines_load(&l2, rh_journal_path(j));
		l2.item[7] = NULL;
		lines_save(&l2, rh_journal_path(j));
		CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_BAD_HASH);
		CU_ASSERT_EQUAL(line, 4);
		free(l2.text);
	}
	/* repair refuses anything but a torn tail, and changes nothing */
	{
		char moved[4096];
		size_t before, after;
		char *a = read_all(rh_journal_path(j), &before), *b;

		CU_ASSERT_EQUAL(rh_journal_repair(j, moved, sizeof(moved)), RH_EINVAL);
		CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "line 4"));
		b = read_all(rh_journal_path(j), &after);
		CU_ASSERT(before == after && memcmp(a, b, before) == 0);
		free(a);
		free(b);
	}
	free(l.text);
	done_journal(j, tmp);
}

static void test_journal__tamper_edit_breaks_json(void)
{
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 5);
	struct lines l;
	size_t line = 0;

	lines_load(&l, rh_journal_path(j));
	l.item[2][0] = '['; /* line 3 no longer parses */
	lines_save(&l, rh_journal_path(j));
	CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_BAD_LINE);
	CU_ASSERT_EQUAL(line, 3);
	free(l.text);
	done_journal(j, tmp);
}

static void test_journal__tamper_delete(void)
{
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 10);
	struct lines l;
	size_t line = 0;
	struct rh_journal_problem pb;

	lines_load(&l, rh_journal_path(j));
	l.item[5] = NULL; /* line 6, seq 5 */
	lines_save(&l, rh_journal_path(j));
	CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_BROKEN_LINK);
	CU_ASSERT_EQUAL(line, 6);
	rh_journal_verify(j, &pb, NULL);
	CU_ASSERT_EQUAL(pb.seq, 6);
	CU_ASSERT_PTR_NOT_NULL(strstr(pb.message, "deleted"));
	/* the last entry deleted is not detectable locally (that is what the
	 * mirror is for), but the genesis is */
	free(l.text);
	lines_load(&l, rh_journal_path(j));
	l.item[0] = NULL;
	lines_save(&l, rh_journal_path(j));
	CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_NO_GENESIS);
	CU_ASSERT_EQUAL(line, 1);
	free(l.text);
	done_journal(j, tmp);
}

static void test_journal__tamper_swap(void)
{
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 10);
	struct lines l;
	size_t line = 0, n;
	char *p;
	struct rh_journal_problem pb;

	lines_load(&l, rh_journal_path(j));
	p = l.item[4];
	n = l.len[4];
	l.item[4] = l.item[5];
	l.len[4] = l.len[5];
	l.item[5] = p;
	l.len[5] = n;
	lines_save(&l, rh_journal_path(j));
	CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_BROKEN_LINK);
	CU_ASSERT_EQUAL(line, 5);
	rh_journal_verify(j, &pb, NULL);
	CU_ASSERT_PTR_NOT_NULL(strstr(pb.message, "line 5 (seq 5)"));
	free(l.text);
	done_journal(j, tmp);
}

/* An entry rewritten with a correct hash of its own still breaks the link
 * from the entry after it. */
static void test_journal__tamper_rehashed(void)
{
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 6);
	struct lines l;
	size_t line = 0;
	char *p, *cut, hex[65];
	struct rh_sha256 c;
	uint8_t d[32];

	lines_load(&l, rh_journal_path(j));
	/* line 3 is seq 2, a "met" drill (lines are not NUL-terminated) */
	p = memmem(l.item[2], l.len[2], "\"verdict\":\"met\"", 15);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	p[11] = 'x'; /* "xet": same length */
	cut = strstr(l.item[2], ",\"hash\":\"");
	rh_sha256_init(&c);
	rh_sha256_update(&c, l.item[2], (size_t)(cut - l.item[2]));
	rh_sha256_update(&c, cut + 74, l.len[2] - 1 - (size_t)(cut - l.item[2]) - 74);
	rh_sha256_final(&c, d);
	rh_sha256_hex(hex, d);
	memcpy(cut + 9, hex, 64);
	lines_save(&l, rh_journal_path(j));
	CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_BROKEN_LINK);
	CU_ASSERT_EQUAL(line, 4);
	free(l.text);
	done_journal(j, tmp);
}

/* Line `idx` with `from` replaced by `to` and its hash recomputed over the
 * new bytes (new: free it): only the grammar can tell it is wrong. */
static char *rehashed_line(const struct lines *l, size_t idx, const char *from, const char *to,
			   size_t *len)
{
	const char *p = memmem(l->item[idx], l->len[idx], from, strlen(from));
	size_t head, tail, n;
	char *out, *cut, hex[65];
	struct rh_sha256 c;
	uint8_t d[32];

	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	head = (size_t)(p - l->item[idx]);
	tail = l->len[idx] - head - strlen(from);
	n = head + strlen(to) + tail;
	out = malloc(n + 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	memcpy(out, l->item[idx], head);
	memcpy(out + head, to, strlen(to));
	memcpy(out + head + strlen(to), p + strlen(from), tail);
	out[n] = '\0';
	cut = strstr(out, ",\"hash\":\"");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cut);
	rh_sha256_init(&c);
	rh_sha256_update(&c, out, (size_t)(cut - out));
	rh_sha256_update(&c, cut + 74, n - 1 - (size_t)(cut - out) - 74);
	rh_sha256_final(&c, d);
	rh_sha256_hex(hex, d);
	memcpy(cut + 9, hex, 64);
	*len = n;
	return out;
}

/* verify checks the grammar of every byte, also where the hash matches: a
 * rehashed line that is no JSON is a bad line, whichever scanner (the fast
 * one for plain ASCII lines, the full one for escapes, control characters
 * and UTF-8) reads it; a rehashed line of valid JSON only breaks the chain
 * at the next line. */
static void test_journal__rehashed_grammar(void)
{
	static const struct {
		const char *to;
		bool valid;
	} cases[] = {
	    {"\"verdict\":met", false},
	    {"\"verdict\":\"met\",", false},
	    {"\"verdict\":[1,]", false},
	    {"\"verdict\":{\"a\"}", false},
	    {"\"verdict\":{\"a\":1,}", false},
	    {"\"verdict\":{\"a\":1]", false},
	    {"\"verdict\":[}", false},
	    {"\"verdict\":tru", false},
	    {"\"verdict\":01", false},
	    {"\"verdict\":-", false},
	    {"\"verdict\":1.", false},
	    {"\"verdict\":1e", false},
	    {"\"verdict\":\"m\x01t\"", false},
	    {"\"verdict\":\"m\\qt\"", false},
	    {"\"verdict\":\"m\xc3t\"", false},
	    {"\"verdict\":\"met", false},
	    {"\"verdict\":", false},
	    {"\"verdict\":[[],{},\"\",-1.5e3,0,true,false,null,{\"a\":[{}]}]", true},
	    {"\"verdict\":\"m\\u00e9t \\\" \xc3\xa9\"", true},
	    {"\"verdict\" : [ 1 , 2 ]", true},
	};
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 6);
	struct lines l;

	lines_load(&l, rh_journal_path(j));
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct lines m = l;
		size_t len, line = 0;
		char *edited = rehashed_line(&l, 2, "\"verdict\":\"met\"", cases[k].to, &len);
		enum rh_journal_problem_kind kind;

		m.item[2] = edited;
		m.len[2] = len;
		lines_save(&m, rh_journal_path(j));
		kind = verify_kind(j, &line);
		if (kind != (cases[k].valid ? RH_JOURNAL_BROKEN_LINK : RH_JOURNAL_BAD_LINE))
			printf("\n    case %zu (%s): kind %d at line %zu: %s", k, cases[k].to,
			       (int)kind, line, rh_error_last());
		CU_ASSERT_EQUAL(kind, cases[k].valid ? RH_JOURNAL_BROKEN_LINK : RH_JOURNAL_BAD_LINE);
		CU_ASSERT_EQUAL(line, cases[k].valid ? 4 : 3);
		free(edited);
	}
	/* nesting: as deep as the scanner allows, and one deeper */
	for (int depth = 250; depth <= 300; depth += 50) {
		struct lines m = l;
		size_t len, line = 0;
		char *deep = malloc(2 * (size_t)depth + 16);
		char *edited;
		int o = 0;

		o += snprintf(deep + o, 16, "\"verdict\":");
		for (int d = 0; d < depth; d++)
			deep[o++] = '[';
		for (int d = 0; d < depth; d++)
			deep[o++] = ']';
		deep[o] = '\0';
		edited = rehashed_line(&l, 2, "\"verdict\":\"met\"", deep, &len);
		m.item[2] = edited;
		m.len[2] = len;
		lines_save(&m, rh_journal_path(j));
		CU_ASSERT_EQUAL(verify_kind(j, &line),
				depth < 256 ? RH_JOURNAL_BROKEN_LINK : RH_JOURNAL_BAD_LINE);
		CU_ASSERT_EQUAL(line, depth < 256 ? 4 : 3);
		free(edited);
		free(deep);
	}
	free(l.text);
	done_journal(j, tmp);
}

static void test_journal__torn_tail_repair(void)
{
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 10);
	size_t len, line = 0;
	char *text = read_all(rh_journal_path(j), &len);
	char moved[4096];
	struct rh_journal_problem pb;
	struct stat st;
	uint64_t n = 0;
	json_t *r = make_record(77);
	char *torn;
	size_t tlen;

	/* cut the last line in the middle */
	write_bytes(rh_journal_path(j), text, len - 40);
	CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_TORN_TAIL);
	CU_ASSERT_EQUAL(line, 11);
	/* append refuses, pointing at repair */
	CU_ASSERT_EQUAL(rh_journal_append(j, r, NULL), RH_EVERIFY);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "rehydra audit repair"));
	/* foreach delivers what came before and then says so */
	{
		struct collect c = { 0, 0, true, -1 };

		CU_ASSERT_EQUAL(rh_journal_foreach(j, collect_fn, &c), RH_EVERIFY);
		CU_ASSERT_EQUAL(c.n, 10);
	}
	CU_ASSERT_EQUAL(rh_journal_repair(j, moved, sizeof(moved)), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(moved, "journal.jsonl.torn-"));
	CU_ASSERT_EQUAL(stat(moved, &st), 0);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
	torn = read_all(moved, &tlen);
	/* the set-aside bytes are exactly the torn line */
	CU_ASSERT(tlen > 0 && tlen < len);
	CU_ASSERT(memcmp(torn, text + (len - 40 - tlen), tlen) == 0);
	CU_ASSERT(text[len - 40 - tlen - 1] == '\n');
	free(torn);
	CU_ASSERT_EQUAL(rh_journal_verify(j, &pb, &n), 0);
	CU_ASSERT_EQUAL(n, 10); /* genesis + 9: the earlier entries are kept */
	/* repair of an intact journal does nothing */
	CU_ASSERT_EQUAL(rh_journal_repair(j, moved, sizeof(moved)), 0);
	CU_ASSERT_STRING_EQUAL(moved, "");
	/* and appending works again */
	CU_ASSERT_EQUAL(rh_journal_append(j, r, &n), 0);
	CU_ASSERT_EQUAL(n, 10);
	CU_ASSERT_EQUAL(rh_journal_verify(j, &pb, &n), 0);
	CU_ASSERT_EQUAL(n, 11);
	json_decref(r);
	free(text);
	done_journal(j, tmp);
}

static void test_journal__torn_genesis(void)
{
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 0);
	size_t len, line = 0;
	char *text = read_all(rh_journal_path(j), &len);
	char moved[4096];
	uint64_t n = 0;
	struct rh_journal_problem pb;

	write_bytes(rh_journal_path(j), text, 20);
	CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_TORN_TAIL);
	CU_ASSERT_EQUAL(line, 1);
	CU_ASSERT_EQUAL(rh_journal_repair(j, moved, sizeof(moved)), 0);
	CU_ASSERT_EQUAL(rh_journal_verify(j, &pb, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	/* an empty file is not a journal */
	write_bytes(rh_journal_path(j), "", 0);
	CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_NO_GENESIS);
	free(text);
	done_journal(j, tmp);
}

static void test_journal__foreign_line(void)
{
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 10);
	size_t len, line = 0;
	char *text = read_all(rh_journal_path(j), &len);
	char *buf = malloc(len + 64);
	struct lines l;

	/* plain text appended */
	memcpy(buf, text, len);
	memcpy(buf + len, "hello auditor\n", 14);
	write_bytes(rh_journal_path(j), buf, len + 14);
	CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_BAD_LINE);
	CU_ASSERT_EQUAL(line, 12);
	/* a JSON object that is no entry */
	memcpy(buf + len, "{\"seq\":11}\n", 11);
	write_bytes(rh_journal_path(j), buf, len + 11);
	CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_BAD_LINE);
	CU_ASSERT_EQUAL(line, 12);
	/* an empty line */
	lines_load(&l, rh_journal_path(j));
	l.item[l.n - 1] = "\n";
	l.len[l.n - 1] = 1;
	lines_save(&l, rh_journal_path(j));
	CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_BAD_LINE);
	CU_ASSERT_EQUAL(line, 12);
	free(l.text);
	/* a valid old entry replayed at the end */
	lines_load(&l, rh_journal_path(j));
	l.item[l.n - 1] = l.item[3];
	l.len[l.n - 1] = l.len[3];
	lines_save(&l, rh_journal_path(j));
	CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_BROKEN_LINK);
	CU_ASSERT_EQUAL(line, 12);
	/* a second journal glued to this one */
	{
		char *tmp2;
		struct rh_journal *j2 = make_journal(&tmp2, 1);
		size_t len2;
		char *t2 = read_all(rh_journal_path(j2), &len2);
		char *both = malloc(len + len2);

		memcpy(both, text, len);
		memcpy(both + len, t2, len2);
		write_bytes(rh_journal_path(j), both, len + len2);
		CU_ASSERT_EQUAL(verify_kind(j, &line), RH_JOURNAL_BROKEN_LINK);
		CU_ASSERT_EQUAL(line, 12);
		free(both);
		free(t2);
		done_journal(j2, tmp2);
	}
	/* append refuses to build on a damaged last line */
	write_bytes(rh_journal_path(j), buf, len + 11);
	{
		json_t *r = make_record(1);

		CU_ASSERT_EQUAL(rh_journal_append(j, r, NULL), RH_EVERIFY);
		CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "rehydra audit verify"));
		json_decref(r);
	}
	free(l.text);
	free(buf);
	free(text);
	done_journal(j, tmp);
}

static void test_journal__open_file(void)
{
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 2);
	struct rh_journal *copy = NULL;
	char *missing = rh_test_path(tmp, "nope.jsonl");
	struct rh_journal_problem pb;
	uint64_t n = 0;

	CU_ASSERT_EQUAL(rh_journal_open_file(&copy, missing), RH_ENOTFOUND);
	CU_ASSERT_PTR_NULL(copy);
	CU_ASSERT_EQUAL(access(missing, F_OK), -1);
	CU_ASSERT_EQUAL_FATAL(rh_journal_open_file(&copy, rh_journal_path(j)), 0);
	CU_ASSERT_EQUAL(rh_journal_verify(copy, &pb, &n), 0);
	CU_ASSERT_EQUAL(n, 3);
	rh_journal_close(copy);
	free(missing);
	done_journal(j, tmp);
}

/* 4 processes x 50 appends, all at once: 200 entries, chain intact. */
static void test_journal__concurrent_appends(void)
{
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 0);
	struct rh_journal_problem pb;
	pid_t pids[4];
	uint64_t n = 0;
	int ok = 0;

	for (int k = 0; k < 4; k++) {
		pids[k] = fork();
		CU_ASSERT_FATAL(pids[k] >= 0);
		if (pids[k] == 0) {
			struct rh_journal *cj = NULL;
			int bad = 0;

			if (rh_journal_open(&cj, tmp) < 0)
				_exit(2);
			for (int i = 0; i < 50; i++) {
				json_t *r = json_pack("{s:i, s:i}", "writer", k, "i", i);

				if (!r || rh_journal_append(cj, r, NULL) < 0)
					bad++;
				json_decref(r);
			}
			rh_journal_close(cj);
			_exit(bad ? 1 : 0);
		}
	}
	for (int k = 0; k < 4; k++) {
		int status = 0;

		waitpid(pids[k], &status, 0);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			ok++;
	}
	CU_ASSERT_EQUAL(ok, 4);
	CU_ASSERT_EQUAL(rh_journal_verify(j, &pb, &n), 0);
	CU_ASSERT_EQUAL(n, 201);
	done_journal(j, tmp);
}

/* rh_journal_foreach_fields builds records with its own scanner: with every
 * field selected they must equal jansson's, escapes, UTF-8 and numbers
 * included; with a few selected, only those appear. */
struct both {
	json_t *full[8];
	size_t n;
	bool equal;
	bool projected_ok;
	int mode; /* 0 collect full, 1 compare all, 2 check projection */
};

static int both_fn(const struct rh_journal_entry *e, void *user)
{
	struct both *b = user;

	if (!e->record)
		return 0;
	if (b->mode == 0) {
		b->full[b->n++] = json_deep_copy(e->record);
	} else if (b->mode == 1) {
		if (!json_equal(b->full[b->n++], e->record)) {
			char *x = json_dumps(e->record, JSON_SORT_KEYS);

			fprintf(stderr, "\nprojected: %s\n", x);
			free(x);
			b->equal = false;
		}
	} else {
		const json_t *steps = json_object_get(e->record, "steps");
		const json_t *s0 = json_array_get(steps, 0);

		b->n++;
		if (json_object_size(e->record) != 3 || !json_is_array(steps) ||
		    json_object_size(s0) != 1 || !json_is_string(json_object_get(s0, "id")) ||
		    json_object_size(json_object_get(e->record, "runbook")) != 1 ||
		    !json_is_string(json_object_get(e->record, "scenario")))
			b->projected_ok = false;
	}
	return 0;
}

static void test_journal__foreach_fields(void)
{
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 0);
	static const char *const tricky[] = {
		"{\"runbook\": {\"name\": \"r\\\"q\\\\b\\/s\", \"path\": \"/x\"}, "
		"\"scenario\": \"caf\u00e9 \\u00e9 \\ud83d\\ude00 \\u0001 tab\\t nl\\n\", "
		"\"steps\": [{\"id\": \"a\", \"outputs\": {}, \"n\": [1, -0, 0.072, -1.5e-7, "
		"1e300, 123456789012, true, false, null, [], [[]], {\"k\": {}}]}, {\"id\": \"b\", "
		"\"error\": null}], \"rto_s\": 0.071999999999999995, \"empty\": \"\"}",
		"{\"runbook\": {\"name\": \"plain\"}, \"scenario\": \"s\", "
		"\"steps\": [{\"id\": \"x\"}], "
		"\"deep\": {\"a\": {\"b\": {\"c\": [1, {\"d\": \"\\u00ff\"}]}}}}",
	};
	static const char *const all[] = { "runbook", "scenario", "steps", "rto_s", "empty",
					    "deep", NULL };
	static const char *const some[] = { "runbook.name", "scenario", "steps[].id", NULL };
	struct both b = { .equal = true, .projected_ok = true };

	for (size_t i = 0; i < 2; i++) {
		json_error_t err;
		json_t *r = json_loads(tricky[i], 0, &err);

		if (!r)
			fprintf(stderr, "\n%s: %s\n", tricky[i], err.text);
		CU_ASSERT_PTR_NOT_NULL_FATAL(r);
		CU_ASSERT_EQUAL(rh_journal_append(j, r, NULL), 0);
		json_decref(r);
	}
	CU_ASSERT_EQUAL(rh_journal_foreach(j, both_fn, &b), 0);
	CU_ASSERT_EQUAL(b.n, 2);
	b.n = 0;
	b.mode = 1;
	CU_ASSERT_EQUAL(rh_journal_foreach_fields(j, all, both_fn, &b), 0);
	CU_ASSERT_EQUAL(b.n, 2);
	CU_ASSERT(b.equal);
	b.n = 0;
	b.mode = 2;
	CU_ASSERT_EQUAL(rh_journal_foreach_fields(j, some, both_fn, &b), 0);
	CU_ASSERT_EQUAL(b.n, 2);
	CU_ASSERT(b.projected_ok);
	/* a torn tail stops it, as it stops rh_journal_foreach */
	{
		FILE *f = fopen(rh_journal_path(j), "a");

		fputs("{\"at\":\"", f);
		fclose(f);
		b.n = 0;
		CU_ASSERT_EQUAL(rh_journal_foreach_fields(j, some, both_fn, &b), RH_EVERIFY);
		CU_ASSERT_EQUAL(b.n, 2);
	}
	for (size_t i = 0; i < 2; i++)
		json_decref(b.full[i]);
	done_journal(j, tmp);
}

/* A process killed (SIGKILL) while it appends big entries, again and again:
 * afterwards the journal verifies or has exactly one torn tail, which repair
 * sets aside without losing any complete entry. Big entries make the kill
 * land inside a write(2) now and then. */
static void test_journal__kill_during_append(void)
{
	char *tmp;
	struct rh_journal *j = make_journal(&tmp, 0);
	uint64_t before = 1, n = 0;
	int torn = 0, bad = 0;
	char *big = malloc(256 * 1024 + 1);

	CU_ASSERT_PTR_NOT_NULL_FATAL(big);
	memset(big, 'x', 256 * 1024);
	big[256 * 1024] = '\0';
	for (int it = 0; it < 15; it++) {
		struct rh_journal_problem pb;
		struct timespec ts = { 0, (long)(10 + rand() % 90) * 1000000L };
		pid_t pid = fork();

		CU_ASSERT_FATAL(pid >= 0);
		if (pid == 0) {
			json_t *r = json_pack("{s:s}", "payload", big);

			for (;;)
				if (rh_journal_append(j, r, NULL) < 0)
					_exit(3);
		}
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		if (rh_journal_verify(j, &pb, &n) < 0) {
			if (pb.kind != RH_JOURNAL_TORN_TAIL) {
				bad++;
				break;
			}
			torn++;
			if (rh_journal_repair(j, NULL, 0) < 0 ||
			    rh_journal_verify(j, &pb, &n) < 0)
				bad++;
		}
		if (n < before)
			bad++;
		before = n;
	}
	printf("\n    %d torn tails repaired, %llu entries ", torn, (unsigned long long)n);
	CU_ASSERT_EQUAL(bad, 0);
	free(big);
	done_journal(j, tmp);
}

RH_TEST_MAIN("journal", { "append_verify", test_journal__append_verify },
	     { "canonical_hash", test_journal__canonical_hash },
	     { "tamper_edit_byte", test_journal__tamper_edit_byte },
	     { "tamper_edit_breaks_json", test_journal__tamper_edit_breaks_json },
	     { "tamper_delete", test_journal__tamper_delete },
	     { "tamper_swap", test_journal__tamper_swap },
	     { "tamper_rehashed", test_journal__tamper_rehashed },
	     { "rehashed_grammar", test_journal__rehashed_grammar },
	     { "torn_tail_repair", test_journal__torn_tail_repair },
	     { "torn_genesis", test_journal__torn_genesis },
	     { "foreign_line", test_journal__foreign_line },
	     { "open_file", test_journal__open_file },
	     { "concurrent_appends", test_journal__concurrent_appends },
	     { "foreach_fields", test_journal__foreach_fields },
	     { "kill_during_append", test_journal__kill_during_append })
