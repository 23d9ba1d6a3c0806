/*
 * journal.c - the audit journal: an append-only, hash-chained log of drill
 * records (see journal.h for the format).
 *
 * The journal is evidence, so the code is shaped by what can go wrong with a
 * file: processes appending at the same time (an exclusive flock around
 * read-last-line, write, fsync), a process killed in the middle of its
 * write (one write(2) of the whole line, so at most the last line is torn,
 * and appends refuse to build on a torn line), and people editing it (every
 * line is checked against its own hash and its predecessor's). Reading is
 * streaming with a bounded buffer: a journal of years of drills must verify
 * in seconds without being loaded whole.
 */
#include "journal.h"

#include "clock.h"
#include "error.h"
#include "hex.h"
#include "fsutil.h"
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "banned.h"

#define RH_JOURNAL_FORMAT 1
#define RH_JOURNAL_DIR "journal"
#define RH_JOURNAL_FILE "journal.jsonl"
/* The canonical form the hash covers (journal.h). */
#define RH_JOURNAL_JSON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15))
/* No drill record comes near this; a longer "line" is not ours, and the
 * reader must not grow without bound on a file with no newlines. */
#define RH_JOURNAL_LINE_MAX (64u * 1024 * 1024)
#define RH_JOURNAL_READ_CHUNK (256u * 1024)
/* ,"hash":"<64 hex>" */
#define HASH_MEMBER_LEN (9 + 64 + 1)

static const char zero_hash[65] =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct rh_journal {
	char *path;
	char *dir;
};

/* ---- small helpers ---------------------------------------------------- */

static int lock_fd(int fd, int op, const char *path)
{
	while (flock(fd, op) != 0) {
		if (errno != EINTR)
			return rh_error_set_errno(RH_EIO, errno, "cannot lock the journal %s",
						  path);
	}
	return 0;
}

static char *path_join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", a, b);
	return p;
}

static void fsync_dir(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
}

/* ---- the line reader: pread-based, so it never moves a shared offset --- */

struct line_reader {
	int fd;
	off_t off; /* file offset of buf[0] + end: where the next read starts */
	char *buf;
	size_t cap, beg, end;
	bool eof;
};

static void lr_init(struct line_reader *lr, int fd)
{
	memset(lr, 0, sizeof(*lr));
	lr->fd = fd;
}

static void lr_release(struct line_reader *lr)
{
	free(lr->buf);
	lr->buf = NULL;
}

/* Returns 1 with the line in *line and *len (newline excluded) and whether
 * it had one in *terminated; 0 at the end of the file; or a negative code
 * (I/O, a line over the limit). */
static int lr_next(struct line_reader *lr, const char **line, size_t *len, bool *terminated)
{
	size_t scan = lr->beg;

	for (;;) {
		char *nl = lr->end > scan ? memchr(lr->buf + scan, '\n', lr->end - scan) : NULL;
		ssize_t n;

		if (nl) {
			*line = lr->buf + lr->beg;
			*len = (size_t)(nl - (lr->buf + lr->beg));
			*terminated = true;
			lr->beg = (size_t)(nl - lr->buf) + 1;
			return 1;
		}
		if (lr->eof) {
			if (lr->end == lr->beg)
				return 0;
			*line = lr->buf + lr->beg;
			*len = lr->end - lr->beg;
			*terminated = false;
			lr->beg = lr->end;
			return 1;
		}
		if (lr->end - lr->beg > RH_JOURNAL_LINE_MAX)
			return rh_error_set(RH_EVERIFY, "a line is longer than %u MiB",
					    RH_JOURNAL_LINE_MAX >> 20);
		/* make room: slide the partial line down, grow if still short */
		if (lr->beg > 0) {
			memmove(lr->buf, lr->buf + lr->beg, lr->end - lr->beg);
			lr->end -= lr->beg;
			lr->beg = 0;
		}
		scan = lr->end;
		if (lr->cap - lr->end < RH_JOURNAL_READ_CHUNK) {
			size_t ncap = lr->cap ? lr->cap * 2 : 2 * RH_JOURNAL_READ_CHUNK;
			char *nb = realloc(lr->buf, ncap);

			if (!nb)
				return rh_error_set(RH_ENOMEM, "out of memory reading the journal");
			lr->buf = nb;
			lr->cap = ncap;
		}
		do
			n = pread(lr->fd, lr->buf + lr->end, lr->cap - lr->end, lr->off);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return rh_error_set_errno(RH_EIO, errno, "cannot read the journal");
		if (n == 0)
			lr->eof = true;
		lr->end += (size_t)n;
		lr->off += n;
	}
}

/* ---- entries ------------------------------------------------------------ */

/* A parsed line: `json` owns everything the pointers borrow. */
struct parsed {
	json_t *json;
	json_int_t seq;
	const char *prev, *kind, *at, *hash;
	const json_t *record;
};

/* Parses one line into an entry; on failure writes why into `why`. */
static bool parse_entry(struct parsed *p, const char *line, size_t len, char *why, size_t wsz)
{
	json_error_t jerr;
	json_t *seq;

	memset(p, 0, sizeof(*p));
	p->json = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!p->json) {
		snprintf(why, wsz, "invalid JSON at column %d: %s", jerr.column, jerr.text);
		return false;
	}
	if (!json_is_object(p->json)) {
		snprintf(why, wsz, "not a JSON object");
		return false;
	}
	seq = json_object_get(p->json, "seq");
	p->prev = json_string_value(json_object_get(p->json, "prev"));
	p->kind = json_string_value(json_object_get(p->json, "kind"));
	p->at = json_string_value(json_object_get(p->json, "at"));
	p->hash = json_string_value(json_object_get(p->json, "hash"));
	p->record = json_object_get(p->json, "record");
	if (!json_is_integer(seq) || json_integer_value(seq) < 0) {
		snprintf(why, wsz, "no valid \"seq\"");
		return false;
	}
	p->seq = json_integer_value(seq);
	if (!rh_hex_is_sha256(p->prev) || !rh_hex_is_sha256(p->hash)) {
		snprintf(why, wsz, "no valid \"%s\"", rh_hex_is_sha256(p->prev) ? "hash" : "prev");
		return false;
	}
	if (!p->at || !p->kind) {
		snprintf(why, wsz, "no \"%s\"", p->at ? "kind" : "at");
		return false;
	}
	if (strcmp(p->kind, "drill") == 0) {
		if (!json_is_object(p->record)) {
			snprintf(why, wsz, "a drill entry without its record");
			return false;
		}
	} else if (strcmp(p->kind, "genesis") == 0) {
		p->record = NULL;
	} else {
		snprintf(why, wsz, "unknown kind \"%.40s\"", p->kind);
		return false;
	}
	return true;
}

static void parsed_release(struct parsed *p)
{
	json_decref(p->json);
	p->json = NULL;
}

/* Checks that `line` is the canonical form whose hash is `hash`: it must
 * begin {"at":"<at>","hash":"<hash>" and the bytes without that hash member
 * must hash to it. True when they do. */
static bool hash_matches(const char *line, size_t len, const char *at, size_t at_len,
			 const char *hash)
{
	size_t cut = 7 + at_len + 1; /* {"at":" + at + " */
	struct iovec iov[2];
	char hex[65];

	if (len < cut + HASH_MEMBER_LEN || memcmp(line, "{\"at\":\"", 7) != 0 ||
	    memcmp(line + 7, at, at_len) != 0 || line[cut - 1] != '"' ||
	    memcmp(line + cut, ",\"hash\":\"", 9) != 0 || memcmp(line + cut + 9, hash, 64) != 0 ||
	    line[cut + 9 + 64] != '"')
		return false;
	iov[0].iov_base = (void *)line;
	iov[0].iov_len = cut;
	iov[1].iov_base = (void *)(line + cut + HASH_MEMBER_LEN);
	iov[1].iov_len = len - cut - HASH_MEMBER_LEN;
	rh_sha256_iov_hex(hex, iov, 2);
	return memcmp(hex, hash, 64) == 0;
}

/* ---- the scanner: verify's fast path ------------------------------------------------
 *
 * Verifying must not build a tree per line: jansson's allocations cost four
 * times the hashing. This scanner checks the JSON grammar (and UTF-8) of a
 * line without allocating and notes where the top-level members are; the
 * hash then vouches for the bytes. */

#define SCAN_DEPTH_MAX 256

struct span {
	const char *p;
	size_t n;
};

/* Top-level members of an entry, as raw spans (strings without quotes). */
struct view {
	struct span at, hash, kind, prev, seq;
	bool has_record, record_is_object;
	uint64_t seqno;
	json_t *record; /* built when scan_entry was given a selection */
};

/* A compiled field selection (rh_journal_foreach_fields): at each object
 * level, the members to keep. */
struct sel {
	char *key;
	size_t klen;
	bool whole; /* keep the whole value */
	bool each;  /* an array: apply kids to each element */
	struct sel *kids;
	size_t n;
};

struct scan {
	const char *p, *end;
	const char *err; /* what is wrong, at p */
	/* Set (by verify) for a line with no '\\', no control character and
	 * no byte >= 0x80 anywhere: then every string runs from its quote to
	 * the next one, and bit i of quotes says whether base[i] is a '"'. */
	const char *base;
	const uint64_t *quotes;
};

static json_t *build_value(struct scan *s, int depth);
static json_t *build_sel(struct scan *s, const struct sel *sel, int depth);

static bool scan_fail(struct scan *s, const char *why)
{
	if (!s->err)
		s->err = why;
	return false;
}

static inline void scan_ws(struct scan *s)
{
	const char *p = s->p;

	while (p < s->end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	s->p = p;
}

/* One UTF-8 sequence starting at a byte >= 0x80 (no overlongs or surrogates). */
static bool scan_utf8(struct scan *s)
{
	const unsigned char *u = (const unsigned char *)s->p;
	size_t left = (size_t)(s->end - s->p);
	size_t n;
	uint32_t cp;

	if (u[0] >= 0xc2 && u[0] <= 0xdf) {
		n = 2;
		cp = u[0] & 0x1f;
	} else if (u[0] >= 0xe0 && u[0] <= 0xef) {
		n = 3;
		cp = u[0] & 0x0f;
	} else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
		n = 4;
		cp = u[0] & 0x07;
	} else {
		return scan_fail(s, "invalid UTF-8");
	}
	if (left < n)
		return scan_fail(s, "invalid UTF-8");
	for (size_t i = 1; i < n; i++) {
		if ((u[i] & 0xc0) != 0x80)
			return scan_fail(s, "invalid UTF-8");
		cp = (cp << 6) | (u[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return scan_fail(s, "invalid UTF-8");
	s->p += n;
	return true;
}

/* Bytes that end the fast path inside a string: '"', '\\', control
 * characters and the start of a multi-byte UTF-8 sequence. */
static inline bool string_special(unsigned char c)
{
	return c < 0x20 || c == '"' || c == '\\' || c >= 0x80;
}

/* Moves p to the first special byte in [p, end) (or to end). Plain ASCII
 * is the common case: sixteen bytes at a time with SSE2 (part of x86-64;
 * a byte < 0x20 or >= 0x80 is below 0x20 as a signed byte, so three
 * compares find every special one), else eight at a time (SWAR: a special
 * byte sets its high bit in `hit`). Works on locals: through s->p every
 * step would be a store and a reload, since a char may alias it. */
static inline const char *skip_plain(const char *p, const char *end)
{
#if defined(__SSE2__)
	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		__m128i sp = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
						       _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
					  _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
		unsigned m = (unsigned)_mm_movemask_epi8(sp);

		if (m)
			return p + __builtin_ctz(m);
		p += 16;
	}
#endif
	while (end - p >= 8) {
		const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
		uint64_t v, q, b, hit;

		memcpy(&v, p, 8);
		q = v ^ (ones * '"');
		b = v ^ (ones * '\\');
		hit = ((v - ones * 0x20) | (q - ones) | (b - ones)) & ~v & highs;
		hit |= v & highs;
		if (hit)
			break;
		p += 8;
	}
	while (p < end && !string_special((unsigned char)*p))
		p++;
	return p;
}

/* A string; *raw gets its content without the quotes, *plain whether it has
 * no escapes (so raw is its value). */
static bool scan_string(struct scan *s, struct span *raw, bool *plain)
{
	const char *start, *p = s->p, *end = s->end;

	if (p >= end || *p != '"')
		return scan_fail(s, "expected a string");
	start = ++p;
	*plain = true;
	if (s->quotes) {
		size_t i = (size_t)(p - s->base);
		uint64_t w = s->quotes[i >> 6] >> (i & 63);

		while (!w) {
			i = (i | 63) + 1;
			if (i >= (size_t)(end - s->base))
				break;
			w = s->quotes[i >> 6];
		}
		if (w) {
			p = s->base + i + (size_t)__builtin_ctzll(w);
			raw->p = start;
			raw->n = (size_t)(p - start);
			s->p = p + 1;
			return true;
		}
		s->p = end;
		return scan_fail(s, "unterminated string");
	}
	for (;;) {
		unsigned char c;

		p = skip_plain(p, end);
		if (p >= end)
			break;
		c = (unsigned char)*p;
		if (c == '"') {
			raw->p = start;
			raw->n = (size_t)(p - start);
			s->p = p + 1;
			return true;
		}
		s->p = p;
		if (c < 0x20)
			return scan_fail(s, "control character in a string");
		if (c == '\\') {
			*plain = false;
			if (++p >= end)
				break;
			if (*p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (p + i >= end ||
					    !strchr("0123456789abcdefABCDEF", p[i]) || !p[i]) {
						s->p = p;
						return scan_fail(s, "bad \\u escape");
					}
				p += 5;
			} else if (strchr("\"\\/bfnrt", *p) && *p) {
				p++;
			} else {
				s->p = p;
				return scan_fail(s, "bad escape");
			}
		} else {
			/* c >= 0x80 */
			if (!scan_utf8(s))
				return false;
			p = s->p;
		}
	}
	s->p = p;
	return scan_fail(s, "unterminated string");
}

static inline const char *skip_digits(const char *p, const char *end)
{
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	return p;
}

/* A number; *integer whether it is a plain non-negative integer. */
static bool scan_number(struct scan *s, bool *integer)
{
	const char *p = s->p, *end = s->end, *d;

	*integer = true;
	if (p < end && *p == '-') {
		*integer = false;
		p++;
	}
	if (p < end && *p == '0') {
		p++;
	} else {
		d = skip_digits(p, end);
		if (d == p)
			goto bad;
		p = d;
	}
	if (p < end && *p == '.') {
		*integer = false;
		d = skip_digits(++p, end);
		if (d == p)
			goto bad;
		p = d;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		*integer = false;
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		d = skip_digits(p, end);
		if (d == p)
			goto bad;
		p = d;
	}
	s->p = p;
	return true;
bad:
	s->p = p;
	return scan_fail(s, "bad number");
}

static bool scan_literal(struct scan *s, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return scan_fail(s, "unexpected character");
	s->p += n;
	return true;
}

static bool scan_value(struct scan *s, int depth);

/* An object or array after its opening bracket. */
static bool scan_container(struct scan *s, int depth, bool object)
{
	char close = object ? '}' : ']';

	if (depth > SCAN_DEPTH_MAX)
		return scan_fail(s, "nested too deeply");
	scan_ws(s);
	if (s->p < s->end && *s->p == close) {
		s->p++;
		return true;
	}
	for (;;) {
		if (object) {
			struct span key;
			bool plain;

			if (!scan_string(s, &key, &plain))
				return false;
			scan_ws(s);
			if (s->p >= s->end || *s->p != ':')
				return scan_fail(s, "expected ':'");
			s->p++;
		}
		if (!scan_value(s, depth + 1))
			return false;
		scan_ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			scan_ws(s);
			continue;
		}
		if (s->p < s->end && *s->p == close) {
			s->p++;
			return true;
		}
		return scan_fail(s, object ? "expected ',' or '}'" : "expected ',' or ']'");
	}
}

static bool scan_value(struct scan *s, int depth)
{
	struct span str;
	bool flag;

	scan_ws(s);
	if (s->p >= s->end)
		return scan_fail(s, "unexpected end of line");
	switch (*s->p) {
	case '{':
		s->p++;
		return scan_container(s, depth, true);
	case '[':
		s->p++;
		return scan_container(s, depth, false);
	case '"':
		return scan_string(s, &str, &flag);
	case 't':
		return scan_literal(s, "true");
	case 'f':
		return scan_literal(s, "false");
	case 'n':
		return scan_literal(s, "null");
	default:
		if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
			return scan_number(s, &flag);
		return scan_fail(s, "unexpected character");
	}
}

static bool span_is(const struct span *sp, const char *word)
{
	return sp->p && sp->n == strlen(word) && memcmp(sp->p, word, sp->n) == 0;
}

static bool span_is_hex64(const struct span *sp)
{
	return sp->p && sp->n == 64 && rh_hex_is_lower(sp->p, 64);
}

static inline const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

/* The string at p (its opening quote) in a line with quote bits: where its
 * closing quote is, or NULL. */
static inline const char *quote_end(const struct scan *s, const char *p)
{
	size_t i = (size_t)(p + 1 - s->base);
	size_t n = (size_t)(s->end - s->base);
	uint64_t w;

	if (i >= n)
		return NULL;
	w = s->quotes[i >> 6] >> (i & 63);
	while (!w) {
		i = (i | 63) + 1;
		if (i >= n)
			return NULL;
		w = s->quotes[i >> 6];
	}
	return s->base + i + (size_t)__builtin_ctzll(w);
}

/* scan_value for a line with quote bits, without recursion: one loop over
 * the tokens with the open containers as a bit stack. It only says whether
 * the value is valid; on false, scan the line again the slow way, which
 * names what is wrong. Containers nest as in scan_container: the first
 * one opened here is at `depth`. */
static bool scan_value_fast(struct scan *s, int depth)
{
	const char *p = s->p, *end = s->end, *q;
	uint64_t stack[(SCAN_DEPTH_MAX + 64) / 64 + 1] = {0}; /* bit set: an object */
	int open = 0;
	bool flag;

value:
	p = skip_ws(p, end);
	if (p >= end)
		return false;
	switch (*p) {
	case '"':
		q = quote_end(s, p);
		if (!q)
			return false;
		p = q + 1;
		goto after;
	case '{':
	case '[':
		if (depth + open > SCAN_DEPTH_MAX)
			return false;
		if (*p == '{')
			stack[open >> 6] |= 1ull << (open & 63);
		else
			stack[open >> 6] &= ~(1ull << (open & 63));
		open++;
		p = skip_ws(p + 1, end);
		if (p < end && (*p == '}' || *p == ']')) {
			bool obj = stack[(open - 1) >> 6] >> ((open - 1) & 63) & 1;

			if (*p != (obj ? '}' : ']'))
				return false;
			p++;
			open--;
			goto after;
		}
		if (stack[(open - 1) >> 6] >> ((open - 1) & 63) & 1)
			goto key;
		goto value;
	case 't':
		if (end - p < 4 || memcmp(p, "true", 4) != 0)
			return false;
		p += 4;
		goto after;
	case 'f':
		if (end - p < 5 || memcmp(p, "false", 5) != 0)
			return false;
		p += 5;
		goto after;
	case 'n':
		if (end - p < 4 || memcmp(p, "null", 4) != 0)
			return false;
		p += 4;
		goto after;
	default:
		if (*p != '-' && (*p < '0' || *p > '9'))
			return false;
		s->p = p;
		if (!scan_number(s, &flag))
			return false;
		p = s->p;
		goto after;
	}
key:
	if (p >= end || *p != '"')
		return false;
	q = quote_end(s, p);
	if (!q)
		return false;
	p = skip_ws(q + 1, end);
	if (p >= end || *p != ':')
		return false;
	p++;
	goto value;
after:
	if (open == 0) {
		s->p = p;
		return true;
	}
	p = skip_ws(p, end);
	if (p >= end)
		return false;
	{
		bool obj = stack[(open - 1) >> 6] >> ((open - 1) & 63) & 1;

		if (*p == ',') {
			p = skip_ws(p + 1, end);
			if (obj)
				goto key;
			goto value;
		}
		if (*p != (obj ? '}' : ']'))
			return false;
		p++;
		open--;
		goto after;
	}
}

/* Fills bits (one per byte of the line, (len + 63) / 64 words) with where
 * the line's quotes are, and says whether the line is simple: no '\\', no
 * control character, no byte >= 0x80 (see struct scan). One pass of
 * sixteen-byte compares; a line that is not simple is scanned the slow way. */
static bool line_quotes(const char *line, size_t len, uint64_t *bits)
{
	size_t i = 0;
	bool special = false;

#if defined(__SSE2__)
	for (; i + 64 <= len; i += 64) {
		uint64_t q = 0, x = 0;

		for (int k = 0; k < 4; k++) {
			__m128i v =
			    _mm_loadu_si128((const __m128i *)(const void *)(line + i + 16 * k));
			__m128i sp = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\\')),
						  _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));

			q |= (uint64_t)(unsigned)_mm_movemask_epi8(
				 _mm_cmpeq_epi8(v, _mm_set1_epi8('"')))
			     << (16 * k);
			x |= (uint64_t)(unsigned)_mm_movemask_epi8(sp);
		}
		bits[i >> 6] = q;
		if (x)
			special = true;
	}
#endif
	if (i < len)
		bits[i >> 6] = 0;
	for (; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c == '"')
			bits[i >> 6] |= 1ull << (i & 63);
		else if (c == '\\' || c < 0x20 || c >= 0x80)
			special = true;
	}
	return !special;
}

/* Scans one line as an entry into *v; on failure writes why into `why`. */
static bool scan_entry(struct view *v, const char *line, size_t len, const struct sel *pick,
		       const uint64_t *quotes, char *why, size_t wsz)
{
	struct scan s = {line, line + len, NULL, line, quotes};
	static const char *const names[] = {"at", "hash", "kind", "prev", "seq", "record"};
	bool seen[6] = {false};

	memset(v, 0, sizeof(*v));
	scan_ws(&s);
	if (s.p >= s.end || *s.p != '{') {
		snprintf(why, wsz, "not a JSON object");
		return false;
	}
	s.p++;
	scan_ws(&s);
	if (s.p < s.end && *s.p == '}')
		s.p++;
	else
		for (;;) {
			struct span key, val = {NULL, 0};
			bool plain = true, integer = false;
			const char *vstart;
			int k;

			if (!scan_string(&s, &key, &plain))
				goto bad;
			scan_ws(&s);
			if (s.p >= s.end || *s.p != ':') {
				scan_fail(&s, "expected ':'");
				goto bad;
			}
			s.p++;
			scan_ws(&s);
			vstart = s.p;
			for (k = 0; k < 6 && !span_is(&key, names[k]); k++)
				;
			if (k < 6 && seen[k]) {
				snprintf(why, wsz, "\"%s\" twice", names[k]);
				return false;
			}
			if (k < 6)
				seen[k] = true;
			if (k < 4 && vstart < s.end && *vstart == '"') {
				if (!scan_string(&s, &val, &plain))
					goto bad;
				if (!plain) {
					snprintf(why, wsz, "escapes in \"%s\"", names[k]);
					return false;
				}
			} else if (k == 4 && vstart < s.end && *vstart >= '0' && *vstart <= '9') {
				if (!scan_number(&s, &integer))
					goto bad;
				val.p = vstart;
				val.n = (size_t)(s.p - vstart);
			} else if (k == 5 && pick && vstart < s.end && *vstart == '{') {
				v->record = build_sel(&s, pick, 1);
				if (!v->record)
					goto bad;
				v->record_is_object = true;
			} else {
				if (!(s.quotes ? scan_value_fast(&s, 1) : scan_value(&s, 1)))
					goto bad;
				if (k == 5)
					v->record_is_object = *vstart == '{';
			}
			switch (k) {
			case 0:
				v->at = val;
				break;
			case 1:
				v->hash = val;
				break;
			case 2:
				v->kind = val;
				break;
			case 3:
				v->prev = val;
				break;
			case 4:
				if (integer && val.n <= 19) {
					v->seq = val;
					v->seqno = strtoull(val.p, NULL, 10);
				}
				break;
			case 5:
				v->has_record = true;
				break;
			default:
				break;
			}
			scan_ws(&s);
			if (s.p < s.end && *s.p == ',') {
				s.p++;
				scan_ws(&s);
				continue;
			}
			if (s.p < s.end && *s.p == '}') {
				s.p++;
				break;
			}
			scan_fail(&s, "expected ',' or '}'");
			goto bad;
		}
	scan_ws(&s);
	if (s.p != s.end) {
		scan_fail(&s, "text after the object");
		goto bad;
	}
	if (!v->seq.p) {
		snprintf(why, wsz, "no valid \"seq\"");
		return false;
	}
	if (!span_is_hex64(&v->prev) || !span_is_hex64(&v->hash)) {
		snprintf(why, wsz, "no valid \"%s\"", span_is_hex64(&v->prev) ? "hash" : "prev");
		return false;
	}
	if (!v->at.p || !v->kind.p) {
		snprintf(why, wsz, "no \"%s\"", v->at.p ? "kind" : "at");
		return false;
	}
	if (span_is(&v->kind, "drill")) {
		if (!v->record_is_object) {
			snprintf(why, wsz, "a drill entry without its record");
			return false;
		}
	} else if (!span_is(&v->kind, "genesis")) {
		snprintf(why, wsz, "unknown kind \"%.*s\"", (int)(v->kind.n > 40 ? 40 : v->kind.n),
			 v->kind.p);
		return false;
	}
	return true;
bad:
	snprintf(why, wsz, "invalid JSON at column %zu: %s", (size_t)(s.p - line) + 1,
		 s.err ? s.err : "not valid");
	return false;
}

/* ---- the builder: only the fields a caller reads ----------------------------------- */

static void utf8_put(char **w, uint32_t cp)
{
	unsigned char *o = (unsigned char *)*w;

	if (cp < 0x80) {
		*o++ = (unsigned char)cp;
	} else if (cp < 0x800) {
		*o++ = (unsigned char)(0xc0 | (cp >> 6));
		*o++ = (unsigned char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*o++ = (unsigned char)(0xe0 | (cp >> 12));
		*o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (unsigned char)(0x80 | (cp & 0x3f));
	} else {
		*o++ = (unsigned char)(0xf0 | (cp >> 18));
		*o++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		*o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (unsigned char)(0x80 | (cp & 0x3f));
	}
	*w = (char *)o;
}

static uint32_t hex4(const char *p)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v = v * 16 + (uint32_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
	}
	return v;
}

/* The value of a scanned string (escapes resolved) into a new buffer of
 * raw->n + 1 bytes at most; *len its length (it may hold NULs). */
static char *unescape(const struct span *raw, size_t *len)
{
	char *out = malloc(raw->n + 1), *w = out;
	const char *p = raw->p, *end = raw->p + raw->n;

	if (!out)
		return NULL;
	while (p < end) {
		if (*p != '\\') {
			*w++ = *p++;
			continue;
		}
		p++;
		switch (*p++) {
		case 'b':
			*w++ = '\b';
			break;
		case 'f':
			*w++ = '\f';
			break;
		case 'n':
			*w++ = '\n';
			break;
		case 'r':
			*w++ = '\r';
			break;
		case 't':
			*w++ = '\t';
			break;
		case 'u': {
			uint32_t cp = hex4(p);

			p += 4;
			if (cp >= 0xd800 && cp <= 0xdbff && end - p >= 6 && p[0] == '\\' &&
			    p[1] == 'u') {
				uint32_t lo = hex4(p + 2);

				if (lo >= 0xdc00 && lo <= 0xdfff) {
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					p += 6;
				}
			}
			if (cp >= 0xd800 && cp <= 0xdfff)
				cp = 0xfffd; /* a lone surrogate: not UTF-8 */
			utf8_put(&w, cp);
			break;
		}
		default:
			*w++ = p[-1];
			break; /* " \\ / */
		}
	}
	*w = '\0';
	*len = (size_t)(w - out);
	return out;
}

static json_t *build_string(struct scan *s)
{
	struct span raw;
	bool plain;
	char *text;
	size_t n;
	json_t *j;

	if (!scan_string(s, &raw, &plain))
		return NULL;
	/* the scanner checked the UTF-8 already */
	if (plain)
		return json_stringn_nocheck(raw.p, raw.n);
	text = unescape(&raw, &n);
	j = text ? json_stringn_nocheck(text, n) : NULL;
	free(text);
	return j;
}

static json_t *build_number(struct scan *s)
{
	const char *start = s->p;
	char buf[64];
	bool integer;
	size_t n;

	if (!scan_number(s, &integer))
		return NULL;
	n = (size_t)(s->p - start);
	if (n >= sizeof(buf)) {
		scan_fail(s, "number too long");
		return NULL;
	}
	memcpy(buf, start, n);
	buf[n] = '\0';
	if (integer || (buf[0] == '-' && !memchr(buf, '.', n) && !memchr(buf, 'e', n) &&
			!memchr(buf, 'E', n))) {
		long long v;

		errno = 0;
		v = strtoll(buf, NULL, 10);
		if (errno == 0)
			return json_integer(v);
	}
	return json_real(strtod(buf, NULL));
}

/* One object member's key into *key (*klen bytes, not NUL-terminated):
 * the line's own bytes when it has no escapes, else a new string the
 * caller frees through *owned (NULL otherwise). */
static bool build_key(struct scan *s, const char **key, size_t *klen, char **owned)
{
	struct span raw;
	bool plain;

	*owned = NULL;
	if (!scan_string(s, &raw, &plain))
		return false;
	if (plain) {
		*key = raw.p;
		*klen = raw.n;
	} else {
		*owned = unescape(&raw, klen);
		if (!*owned)
			return scan_fail(s, "out of memory");
		*key = *owned;
	}
	scan_ws(s);
	if (s->p >= s->end || *s->p != ':')
		return scan_fail(s, "expected ':'");
	s->p++;
	return true;
}

/* After a member or element: true and *more when a ',' follows, true and
 * !*more at `close`. */
static bool build_next(struct scan *s, char close, bool *more)
{
	scan_ws(s);
	if (s->p < s->end && *s->p == ',') {
		s->p++;
		*more = true;
		return true;
	}
	if (s->p < s->end && *s->p == close) {
		s->p++;
		*more = false;
		return true;
	}
	return scan_fail(s, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
}

/* Skips one value without checking it: reading trusts what verify checks,
 * and a member nobody asked for is passed over at memchr's speed. */
static bool skip_value(struct scan *s)
{
	int depth = 0;

	scan_ws(s);
	for (;;) {
		char c;

		if (s->p >= s->end)
			return scan_fail(s, "unexpected end of line");
		c = *s->p;
		if (c == '"') {
			const char *q = s->p + 1;

			for (;;) {
				const char *b;

				q = memchr(q, '"', (size_t)(s->end - q));
				if (!q)
					return scan_fail(s, "unterminated string");
				for (b = q; b > s->p + 1 && b[-1] == '\\'; b--)
					;
				if (((q - b) & 1) == 0)
					break;
				q++;
			}
			s->p = q + 1;
		} else if (c == '{' || c == '[') {
			depth++;
			s->p++;
			continue;
		} else if (c == '}' || c == ']') {
			if (depth == 0)
				return scan_fail(s, "unexpected character");
			depth--;
			s->p++;
		} else if (depth == 0) {
			/* a number or literal: up to what ends it */
			while (s->p < s->end && *s->p != ',' && *s->p != '}' && *s->p != ']' &&
			       *s->p != ' ' && *s->p != '\t' && *s->p != '\r' && *s->p != '\n')
				s->p++;
			return true;
		} else {
			s->p++;
			continue;
		}
		if (depth == 0)
			return true;
	}
}

static const struct sel *sel_find(const struct sel *sel, const char *key, size_t klen)
{
	for (size_t i = 0; i < sel->n; i++)
		if (sel->kids[i].klen == klen && memcmp(sel->kids[i].key, key, klen) == 0)
			return &sel->kids[i];
	return NULL;
}

/* An object (or array, with sel->each) keeping only what `sel` names;
 * anything else is the whole value. */
static json_t *build_sel(struct scan *s, const struct sel *sel, int depth)
{
	json_t *out = NULL;
	bool more = true;
	char open;

	scan_ws(s);
	open = s->p < s->end ? *s->p : 0;
	if (depth > SCAN_DEPTH_MAX) {
		scan_fail(s, "nested too deeply");
		return NULL;
	}
	if (sel->whole || (open != '{' && open != '[') || (open == '[') != sel->each)
		return build_value(s, depth);
	out = open == '{' ? json_object() : json_array();
	if (!out) {
		scan_fail(s, "out of memory");
		return NULL;
	}
	s->p++;
	scan_ws(s);
	if (s->p < s->end && *s->p == (open == '{' ? '}' : ']')) {
		s->p++;
		return out;
	}
	while (more) {
		json_t *val = NULL;

		scan_ws(s);
		if (open == '[') {
			struct sel elem = *sel;

			elem.each = false; /* the elements are objects, selected alike */
			val = build_sel(s, &elem, depth + 1);
			if (!val || json_array_append_new(out, val) < 0)
				goto fail;
		} else {
			const struct sel *kid;
			const char *key = NULL;
			char *owned = NULL;
			size_t klen = 0;
			bool ok;

			if (!build_key(s, &key, &klen, &owned)) {
				free(owned);
				goto fail;
			}
			kid = sel_find(sel, key, klen);
			if (!kid) {
				ok = skip_value(s);
			} else {
				val = build_sel(s, kid, depth + 1);
				ok = val && json_object_setn_new_nocheck(out, key, klen, val) == 0;
			}
			free(owned);
			if (!ok)
				goto fail;
		}
		if (!build_next(s, open == '{' ? '}' : ']', &more))
			goto fail;
	}
	return out;
fail:
	json_decref(out);
	return NULL;
}

static json_t *build_value(struct scan *s, int depth)
{
	scan_ws(s);
	if (s->p >= s->end) {
		scan_fail(s, "unexpected end of line");
		return NULL;
	}
	switch (*s->p) {
	case '{':
	case '[': {
		/* everything: a selection whose every key is "whole" */
		json_t *out = *s->p == '{' ? json_object() : json_array();
		char close = *s->p == '{' ? '}' : ']';
		bool more = true;

		if (!out || depth > SCAN_DEPTH_MAX) {
			json_decref(out);
			scan_fail(s, out ? "nested too deeply" : "out of memory");
			return NULL;
		}
		s->p++;
		scan_ws(s);
		if (s->p < s->end && *s->p == close) {
			s->p++;
			return out;
		}
		while (more) {
			json_t *val;

			scan_ws(s);
			if (close == ']') {
				val = build_value(s, depth + 1);
				if (!val || json_array_append_new(out, val) < 0)
					goto fail;
			} else {
				const char *key = NULL;
				char *owned = NULL;
				size_t klen = 0;
				bool ok;

				if (!build_key(s, &key, &klen, &owned)) {
					free(owned);
					goto fail;
				}
				val = build_value(s, depth + 1);
				ok = val && json_object_setn_new_nocheck(out, key, klen, val) == 0;
				free(owned);
				if (!ok)
					goto fail;
			}
			if (!build_next(s, close, &more))
				goto fail;
		}
		return out;
	fail:
		json_decref(out);
		return NULL;
	}
	case '"':
		return build_string(s);
	case 't':
		return scan_literal(s, "true") ? json_true() : NULL;
	case 'f':
		return scan_literal(s, "false") ? json_false() : NULL;
	case 'n':
		return scan_literal(s, "null") ? json_null() : NULL;
	default:
		if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
			return build_number(s);
		scan_fail(s, "unexpected character");
		return NULL;
	}
}

static void sel_free(struct sel *sel)
{
	for (size_t i = 0; i < sel->n; i++)
		sel_free(&sel->kids[i]);
	free(sel->kids);
	free(sel->key);
}

/* Adds path "a.b[].c" under root. */
static int sel_add(struct sel *root, const char *path)
{
	struct sel *cur = root;
	const char *p = path;

	while (*p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		bool each = n > 2 && p[n - 2] == '[' && p[n - 1] == ']';
		size_t klen = each ? n - 2 : n;
		struct sel *kid = NULL;

		if (klen == 0)
			return rh_error_set(RH_EINVAL, "bad field path '%s'", path);
		for (size_t i = 0; i < cur->n; i++)
			if (strlen(cur->kids[i].key) == klen &&
			    memcmp(cur->kids[i].key, p, klen) == 0)
				kid = &cur->kids[i];
		if (!kid) {
			struct sel *nk = realloc(cur->kids, (cur->n + 1) * sizeof(*nk));

			if (!nk)
				return rh_error_set(RH_ENOMEM, "out of memory");
			cur->kids = nk;
			kid = &cur->kids[cur->n];
			memset(kid, 0, sizeof(*kid));
			kid->key = strndup(p, klen);
			kid->klen = klen;
			if (!kid->key)
				return rh_error_set(RH_ENOMEM, "out of memory");
			cur->n++;
		}
		kid->each |= each;
		if (!dot) {
			kid->whole = true;
			break;
		}
		cur = kid;
		p = dot + 1;
	}
	return 0;
}

/* Builds the line for `entry` (which has no "hash"): the canonical dump with
 * its hash spliced in after "at". *out is new (malloc), newline-terminated. */
static int build_line(char **out, size_t *out_len, json_t *entry, char hash_out[65])
{
	char *plain = NULL, *line = NULL;
	size_t plen, at_len, cut;
	const char *at = json_string_value(json_object_get(entry, "at"));
	int rc = 0;

	*out = NULL;
	plain = json_dumps(entry, RH_JOURNAL_JSON_FLAGS);
	if (!plain || !at) {
		rc = rh_error_set(RH_ENOMEM, "cannot serialise the journal entry");
		goto done;
	}
	plen = strlen(plain);
	at_len = strlen(at);
	cut = 7 + at_len + 1;
	/* The canonical form must start with "at" for the hash member to land
	 * right after it; anything else is a bug, not a user error. */
	if (plen < cut || memcmp(plain, "{\"at\":\"", 7) != 0 ||
	    memcmp(plain + 7, at, at_len) != 0 || plain[cut - 1] != '"') {
		rc = rh_error_set(RH_ERROR,
				  "journal entry is not in canonical form (internal error)");
		goto done;
	}
	rh_sha256_buf_hex(hash_out, plain, plen);
	line = malloc(plen + HASH_MEMBER_LEN + 2);
	if (!line) {
		rc = rh_error_set(RH_ENOMEM, "out of memory building the journal entry");
		goto done;
	}
	memcpy(line, plain, cut);
	memcpy(line + cut, ",\"hash\":\"", 9);
	memcpy(line + cut + 9, hash_out, 64);
	line[cut + 9 + 64] = '"';
	memcpy(line + cut + HASH_MEMBER_LEN, plain + cut, plen - cut);
	line[plen + HASH_MEMBER_LEN] = '\n';
	line[plen + HASH_MEMBER_LEN + 1] = '\0';
	*out_len = plen + HASH_MEMBER_LEN + 1;
	*out = line;
	line = NULL;
done:
	free(plain);
	free(line);
	return rc;
}

static json_t *new_entry(const char *kind, json_int_t seq, const char *prev)
{
	struct timespec now = rh_clock_wall();
	char at[40];
	json_t *e = json_object();

	rh_clock_rfc3339(at, sizeof(at), &now);
	if (!e || json_object_set_new(e, "at", json_string(at)) < 0 ||
	    json_object_set_new(e, "kind", json_string(kind)) < 0 ||
	    json_object_set_new(e, "seq", json_integer(seq)) < 0 ||
	    json_object_set_new(e, "prev", json_string(prev)) < 0) {
		json_decref(e);
		return NULL;
	}
	return e;
}

/* Writes `line` at the end of the locked `fd` and makes it durable; on a
 * failed write, cuts the file back so no torn line is left behind. */
static int write_line(int fd, const char *path, const char *line, size_t len, off_t old_size)
{
	int e = rh_fs_write_all(fd, line, len);

	if (e == 0 && fdatasync(fd) != 0)
		e = -errno;
	if (e < 0) {
		if (ftruncate(fd, old_size) == 0)
			fdatasync(fd);
		return rh_error_set_errno(RH_EIO, -e, "cannot write to the journal %s", path);
	}
	return 0;
}

/* Writes the genesis entry into the locked, empty `fd`. */
static int write_genesis(int fd, const char *path)
{
	json_t *e = new_entry("genesis", 0, zero_hash);
	char id[17], hash[65];
	char *line = NULL;
	size_t len = 0;
	int rc;

	rh_fs_rand_hex(id);
	if (!e || json_object_set_new(e, "rehydra", json_integer(RH_JOURNAL_FORMAT)) < 0 ||
	    json_object_set_new(e, "journal_id", json_string(id)) < 0) {
		rc = rh_error_set(RH_ENOMEM, "out of memory creating the journal");
		goto done;
	}
	rc = build_line(&line, &len, e, hash);
	if (rc == 0)
		rc = write_line(fd, path, line, len, 0);
done:
	json_decref(e);
	free(line);
	return rc;
}

/* ---- open / close -------------------------------------------------------- */

static int journal_new(struct rh_journal **out, const char *dir, const char *path)
{
	struct rh_journal *j = calloc(1, sizeof(*j));

	if (!j || !(j->dir = strdup(dir)) || !(j->path = strdup(path))) {
		rh_journal_close(j);
		return rh_error_set(RH_ENOMEM, "out of memory opening the journal");
	}
	*out = j;
	return 0;
}

int rh_journal_open(struct rh_journal **out, const char *state_dir)
{
	char *dir = NULL, *path = NULL;
	struct stat st;
	int fd = -1;
	int rc;

	*out = NULL;
	dir = path_join(state_dir, RH_JOURNAL_DIR);
	path = dir ? path_join(dir, RH_JOURNAL_FILE) : NULL;
	if (!path) {
		rc = rh_error_set(RH_ENOMEM, "out of memory opening the journal");
		goto done;
	}
	rc = rh_fs_mkdir_p(dir);
	if (rc < 0)
		goto done;
	fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot open the journal %s", path);
		goto done;
	}
	rc = lock_fd(fd, LOCK_EX, path);
	if (rc < 0)
		goto done;
	if (fstat(fd, &st) != 0) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot inspect the journal %s", path);
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = rh_error_set(RH_EINVAL, "the journal %s is not a regular file", path);
		goto done;
	}
	if (st.st_size == 0) {
		rc = write_genesis(fd, path);
		if (rc < 0)
			goto done;
		fsync_dir(dir);
	}
	rc = journal_new(out, dir, path);
done:
	if (fd >= 0)
		close(fd); /* releases the lock */
	free(dir);
	free(path);
	return rc;
}

int rh_journal_open_file(struct rh_journal **out, const char *file)
{
	char *dir = NULL;
	const char *slash;
	struct stat st;
	int rc;

	*out = NULL;
	if (stat(file, &st) != 0)
		return rh_error_set_errno(errno == ENOENT ? RH_ENOTFOUND : RH_EIO, errno,
					  "cannot open the journal %s", file);
	if (!S_ISREG(st.st_mode))
		return rh_error_set(RH_EINVAL, "the journal %s is not a regular file", file);
	slash = strrchr(file, '/');
	dir = slash ? strndup(file, slash == file ? 1 : (size_t)(slash - file)) : strdup(".");
	if (!dir)
		return rh_error_set(RH_ENOMEM, "out of memory opening the journal");
	rc = journal_new(out, dir, file);
	free(dir);
	return rc;
}

void rh_journal_close(struct rh_journal *j)
{
	if (!j)
		return;
	free(j->path);
	free(j->dir);
	free(j);
}

const char *rh_journal_path(const struct rh_journal *j)
{
	return j->path;
}

/* ---- append ---------------------------------------------------------------- */

/* Reads the last line of `fd` (size `size`, ending in '\n') into a new
 * buffer, without the newline. */
static int read_last_line(int fd, off_t size, char **out, size_t *out_len)
{
	size_t want = 4096;
	char *buf = NULL;
	int rc = 0;

	*out = NULL;
	for (;;) {
		size_t n = (off_t)want > size ? (size_t)size : want;
		off_t from = size - (off_t)n;
		char *nb = realloc(buf, n + 1);
		size_t got = 0;
		char *nl;

		if (!nb) {
			rc = rh_error_set(RH_ENOMEM, "out of memory reading the journal");
			goto done;
		}
		buf = nb;
		while (got < n) {
			ssize_t r = pread(fd, buf + got, n - got, from + (off_t)got);

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				rc = rh_error_set_errno(RH_EIO, r < 0 ? errno : EIO,
							"cannot read the journal");
				goto done;
			}
			got += (size_t)r;
		}
		buf[n - 1] = '\0'; /* the final newline */
		nl = memrchr(buf, '\n', n - 1);
		if (nl || from == 0) {
			size_t start = nl ? (size_t)(nl - buf) + 1 : 0;

			*out_len = n - 1 - start;
			memmove(buf, buf + start, *out_len + 1);
			*out = buf;
			buf = NULL;
			goto done;
		}
		if (want > RH_JOURNAL_LINE_MAX) {
			rc = rh_error_set(RH_EVERIFY, "the last line is longer than %u MiB",
					  RH_JOURNAL_LINE_MAX >> 20);
			goto done;
		}
		want *= 4;
	}
done:
	free(buf);
	return rc;
}

int rh_journal_append(struct rh_journal *j, const json_t *record, uint64_t *seq)
{
	struct view last;
	json_t *entry = NULL;
	char *tail = NULL, *line = NULL;
	size_t tail_len = 0, len = 0;
	char why[256], hash[65];
	struct stat st;
	char lastc = 0;
	int fd = -1;
	int rc;

	if (!json_is_object(record)) {
		rc = rh_error_set(RH_EINVAL, "a journal record must be a JSON object");
		goto done;
	}
	fd = open(j->path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot open the journal %s", j->path);
		goto done;
	}
	rc = lock_fd(fd, LOCK_EX, j->path);
	if (rc < 0)
		goto done;
	if (fstat(fd, &st) != 0) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot inspect the journal %s", j->path);
		goto done;
	}
	if (st.st_size == 0) {
		/* created but the genesis never made it to disk */
		rc = write_genesis(fd, j->path);
		if (rc < 0)
			goto done;
		st.st_size = lseek(fd, 0, SEEK_END);
	}
	if (pread(fd, &lastc, 1, st.st_size - 1) != 1 || lastc != '\n') {
		rc = rh_error_set(RH_EVERIFY,
				  "the journal %s ends with an incomplete entry (an "
				  "earlier append was cut off): run 'rehydra audit repair' to set "
				  "it aside",
				  j->path);
		goto done;
	}
	rc = read_last_line(fd, st.st_size, &tail, &tail_len);
	if (rc < 0) {
		rh_error_prefix(rc, "journal %s", j->path);
		goto done;
	}
	if (!scan_entry(&last, tail, tail_len, NULL, NULL, why, sizeof(why)) ||
	    !hash_matches(tail, tail_len, last.at.p, last.at.n, last.hash.p)) {
		if (last.hash.p && last.kind.p)
			snprintf(why, sizeof(why), "content does not match its hash");
		rc = rh_error_set(RH_EVERIFY,
				  "the last entry of the journal %s is damaged (%s): "
				  "run 'rehydra audit verify' to see what happened",
				  j->path, why);
		goto done;
	}
	{
		char prev[65];

		memcpy(prev, last.hash.p, 64);
		prev[64] = '\0';
		entry = new_entry("drill", (json_int_t)last.seqno + 1, prev);
	}
	/* the record is only read (the const is jansson's API, not a copy) */
	if (!entry || json_object_set(entry, "record", (json_t *)record) < 0) {
		rc = rh_error_set(RH_ENOMEM, "out of memory building the journal entry");
		goto done;
	}
	rc = build_line(&line, &len, entry, hash);
	if (rc < 0)
		goto done;
	rc = write_line(fd, j->path, line, len, st.st_size);
	if (rc < 0)
		goto done;
	if (seq)
		*seq = last.seqno + 1;
done:
	if (fd >= 0)
		close(fd);
	json_decref(entry);
	free(tail);
	free(line);
	return rc;
}

/* ---- reading ------------------------------------------------------------------ */

static int open_locked(const struct rh_journal *j, int flags, int op)
{
	int fd = open(j->path, flags | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return rh_error_set_errno(errno == ENOENT ? RH_ENOTFOUND : RH_EIO, errno,
					  "cannot open the journal %s", j->path);
	if (lock_fd(fd, op, j->path) < 0) {
		close(fd);
		return RH_EIO;
	}
	return fd;
}

/* Reads every entry; with `pick`, records are built by the scanner with
 * only the selected fields, else parsed whole by jansson. */
static int foreach_impl(struct rh_journal *j, const struct sel *pick,
			int (*fn)(const struct rh_journal_entry *e, void *user), void *user)
{
	struct line_reader lr;
	size_t lineno = 0;
	int fd, rc = 0;

	fd = open_locked(j, O_RDONLY, LOCK_SH);
	if (fd < 0)
		return fd;
	lr_init(&lr, fd);
	for (;;) {
		struct rh_journal_entry e;
		struct parsed p = {0};
		struct view v;
		const char *line;
		size_t len;
		bool term, ok;
		char why[256], at[64], kind[16], hash[65], prev[65];
		int r = lr_next(&lr, &line, &len, &term);

		if (r <= 0) {
			if (r < 0)
				rc = rh_error_prefix(r, "%s: line %zu", j->path, lineno + 1);
			break;
		}
		lineno++;
		if (!term) {
			rc = rh_error_set(RH_EVERIFY,
					  "%s: line %zu: the last entry is incomplete "
					  "(an append was cut off): run 'rehydra audit repair' to "
					  "set it aside",
					  j->path, lineno);
			break;
		}
		if (pick) {
			ok = scan_entry(&v, line, len, pick, NULL, why, sizeof(why)) &&
			     v.at.n < sizeof(at);
			if (ok) {
				snprintf(at, sizeof(at), "%.*s", (int)v.at.n, v.at.p);
				snprintf(kind, sizeof(kind), "%s",
					 span_is(&v.kind, "drill") ? "drill" : "genesis");
				memcpy(hash, v.hash.p, 64);
				memcpy(prev, v.prev.p, 64);
				hash[64] = prev[64] = '\0';
				e.seq = v.seqno;
				e.kind = kind;
				e.at = at;
				e.hash = hash;
				e.prev = prev;
				e.record = v.record;
			} else if (why[0] == '\0') {
				snprintf(why, sizeof(why), "\"at\" too long");
			}
		} else {
			ok = parse_entry(&p, line, len, why, sizeof(why));
			if (ok) {
				e.seq = (uint64_t)p.seq;
				e.kind = p.kind;
				e.at = p.at;
				e.hash = p.hash;
				e.prev = p.prev;
				e.record = p.record;
			}
		}
		if (!ok) {
			parsed_release(&p);
			if (pick)
				json_decref(v.record);
			rc = rh_error_set(RH_EVERIFY,
					  "%s: line %zu: not a journal entry (%s): run "
					  "'rehydra audit verify'",
					  j->path, lineno, why);
			break;
		}
		e.line = lineno;
		rc = fn(&e, user);
		parsed_release(&p);
		if (pick)
			json_decref(v.record);
		if (rc)
			break;
	}
	lr_release(&lr);
	close(fd);
	return rc;
}

int rh_journal_foreach(struct rh_journal *j,
		       int (*fn)(const struct rh_journal_entry *e, void *user), void *user)
{
	return foreach_impl(j, NULL, fn, user);
}

int rh_journal_foreach_fields(struct rh_journal *j, const char *const *fields,
			      int (*fn)(const struct rh_journal_entry *e, void *user), void *user)
{
	struct sel root = {0};
	int rc = 0;

	for (size_t i = 0; fields && fields[i] && rc == 0; i++)
		rc = sel_add(&root, fields[i]);
	if (rc == 0)
		rc = foreach_impl(j, &root, fn, user);
	sel_free(&root);
	return rc;
}

static int problem(struct rh_journal_problem *pb, enum rh_journal_problem_kind kind, size_t line,
		   uint64_t seq, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int problem(struct rh_journal_problem *pb, enum rh_journal_problem_kind kind, size_t line,
		   uint64_t seq, const char *fmt, ...)
{
	va_list ap;

	pb->kind = kind;
	pb->line = line;
	pb->seq = seq;
	va_start(ap, fmt);
	vsnprintf(pb->message, sizeof(pb->message), fmt, ap);
	va_end(ap);
	return rh_error_set(RH_EVERIFY, "%s", pb->message);
}

/* The hash pass of verify, run in a thread of its own: hashing is half the
 * work and needs nothing from the chain checks, so on two cores verify
 * takes the time of the slower half. It stops at the first line whose
 * bytes do not match its hash (or are not in the canonical form). */
struct hash_pass {
	int fd;
	size_t bad_line;	  /* first mismatching line; 0 when none */
	char good_hash[65];	  /* stored hash of the line before bad_line */
	int rc;			  /* reading failed */
	atomic_size_t stop_after; /* the chain pass found a problem at this line */
};

static void *hash_pass_run(void *arg)
{
	struct hash_pass *h = arg;
	struct line_reader lr;
	size_t lineno = 0;

	lr_init(&lr, h->fd);
	for (;;) {
		const char *line, *q;
		size_t len, stop;
		bool term;
		int r = lr_next(&lr, &line, &len, &term);

		if (r <= 0 || !term) {
			h->rc = r < 0 && r != RH_EVERIFY ? r : 0;
			break;
		}
		lineno++;
		stop = atomic_load(&h->stop_after);
		if (stop && lineno > stop)
			break;
		q = len > 7 ? memchr(line + 7, '"', len - 7) : NULL;
		if (!q || memcmp(line, "{\"at\":\"", 7) != 0 ||
		    !hash_matches(line, len, line + 7, (size_t)(q - line) - 7,
				  (size_t)(q - line) + 1 + 9 + 64 <= len ? q + 1 + 9 : zero_hash)) {
			h->bad_line = lineno;
			break;
		}
		memcpy(h->good_hash, q + 1 + 9, 64);
		h->good_hash[64] = '\0';
	}
	lr_release(&lr);
	return NULL;
}

/* Verifies the journal read through `fd` (locked by the caller): the chain
 * pass here, the hash pass beside it (above); the first problem by line
 * wins, and on one line a line that is no entry comes before a hash that
 * does not match, which comes before a broken link (the order a single
 * pass would find them in). */
static int verify_fd(int fd, struct rh_journal_problem *pb, uint64_t *entries)
{
	struct line_reader lr;
	struct hash_pass hp = {.fd = fd};
	uint64_t *quotes = NULL; /* line_quotes' bits of the current line */
	size_t qcap = 0;
	pthread_t tid;
	bool threaded;
	char prev_hash[65];
	uint64_t expect = 0;
	size_t lineno = 0;
	int rc = 0;

	memset(pb, 0, sizeof(*pb));
	memcpy(prev_hash, zero_hash, sizeof(prev_hash));
	atomic_init(&hp.stop_after, 0);
	threaded = pthread_create(&tid, NULL, hash_pass_run, &hp) == 0;
	lr_init(&lr, fd);
	for (;;) {
		struct view v;
		const char *line;
		size_t len;
		bool term, genesis;
		char why[256];
		int r = lr_next(&lr, &line, &len, &term);

		if (r < 0) {
			if (r == RH_EVERIFY) {
				rc = problem(pb, RH_JOURNAL_BAD_LINE, lineno + 1, 0,
					     "line %zu: not a journal entry (%s)", lineno + 1,
					     rh_error_last());
			} else {
				rc = r;
			}
			break;
		}
		if (r == 0) {
			if (lineno == 0)
				rc = problem(pb, RH_JOURNAL_NO_GENESIS, 1, 0,
					     "the journal is empty: it has lost even its genesis "
					     "entry");
			break;
		}
		lineno++;
		if (!term) {
			rc = problem(pb, RH_JOURNAL_TORN_TAIL, lineno, expect,
				     "line %zu: the last entry is incomplete (an append was cut "
				     "off): run 'rehydra audit repair' to set it aside",
				     lineno);
			break;
		}
		if ((len + 63) / 64 > qcap) {
			uint64_t *nq = realloc(quotes, ((len + 63) / 64) * sizeof(*nq));

			if (!nq) {
				rc = rh_error_set(RH_ENOMEM, "out of memory verifying the journal");
				break;
			}
			quotes = nq;
			qcap = (len + 63) / 64;
		}
		/* the fast scan only says yes or no: the slow one says what is wrong */
		if (!scan_entry(&v, line, len, NULL, line_quotes(line, len, quotes) ? quotes : NULL,
				why, sizeof(why)) &&
		    !scan_entry(&v, line, len, NULL, NULL, why, sizeof(why))) {
			rc = problem(pb, RH_JOURNAL_BAD_LINE, lineno, expect,
				     "line %zu: not a journal entry (%s): the line was edited or "
				     "added by hand",
				     lineno, why);
			break;
		}
		genesis = span_is(&v.kind, "genesis");
		if (lineno == 1 &&
		    (!genesis || v.seqno != 0 || memcmp(v.prev.p, zero_hash, 64) != 0)) {
			rc = problem(pb, RH_JOURNAL_NO_GENESIS, lineno, v.seqno,
				     "line 1 (seq %" PRIu64 "): the journal does not start with "
				     "its genesis entry: its first entries were deleted",
				     v.seqno);
		} else if (lineno > 1 && genesis) {
			rc = problem(pb, RH_JOURNAL_BROKEN_LINK, lineno, v.seqno,
				     "line %zu: a second genesis entry: another journal was "
				     "appended to this one",
				     lineno);
		} else if (memcmp(v.prev.p, prev_hash, 64) != 0) {
			if (v.seqno > expect)
				rc = problem(pb, RH_JOURNAL_BROKEN_LINK, lineno, v.seqno,
					     "line %zu (seq %" PRIu64 "): expected seq %" PRIu64
					     " here: the entry before it was deleted or moved",
					     lineno, v.seqno, expect);
			else if (v.seqno < expect)
				rc = problem(pb, RH_JOURNAL_BROKEN_LINK, lineno, v.seqno,
					     "line %zu (seq %" PRIu64 "): comes after seq %" PRIu64
					     ": entries were reordered or copied",
					     lineno, v.seqno, expect - 1);
			else
				rc = problem(pb, RH_JOURNAL_BROKEN_LINK, lineno, v.seqno,
					     "line %zu (seq %" PRIu64 "): does not link to the "
					     "entry before it: an entry was replaced or inserted",
					     lineno, v.seqno);
		} else if (v.seqno != expect) {
			rc = problem(pb, RH_JOURNAL_BAD_SEQ, lineno, v.seqno,
				     "line %zu (seq %" PRIu64 "): sequence number out of order "
				     "(expected %" PRIu64 ")",
				     lineno, v.seqno, expect);
		}
		if (rc)
			break;
		memcpy(prev_hash, v.hash.p, 64);
		memcpy(pb->last_hash, v.hash.p, 64);
		pb->last_hash[64] = '\0';
		expect++;
	}
	lr_release(&lr);
	free(quotes);
	/* the hash pass need not go past the chain pass's problem */
	atomic_store(&hp.stop_after, rc ? (pb->line ? pb->line : lineno + 1) : 0);
	if (threaded)
		pthread_join(tid, NULL);
	else
		hash_pass_run(&hp);
	if (hp.rc < 0 && rc == 0) {
		rc = hp.rc;
	} else if (hp.bad_line &&
		   (rc == 0 || (rc == RH_EVERIFY &&
				(hp.bad_line < pb->line ||
				 (hp.bad_line == pb->line && pb->kind != RH_JOURNAL_BAD_LINE &&
				  pb->kind != RH_JOURNAL_TORN_TAIL))))) {
		struct line_reader one;
		const char *line;
		size_t len, n = 0;
		bool term;
		struct view v;
		char why[256];
		uint64_t seq = hp.bad_line - 1;

		/* the seq of the edited entry, for the message: read it again */
		lr_init(&one, fd);
		while (lr_next(&one, &line, &len, &term) > 0 && ++n < hp.bad_line)
			;
		if (n == hp.bad_line && scan_entry(&v, line, len, NULL, NULL, why, sizeof(why)))
			seq = v.seqno;
		lr_release(&one);
		rc = problem(pb, RH_JOURNAL_BAD_HASH, hp.bad_line, seq,
			     "line %zu (seq %" PRIu64 "): content does not match its hash: "
			     "the entry was edited",
			     hp.bad_line, seq);
		if (hp.bad_line > 1)
			memcpy(pb->last_hash, hp.good_hash, sizeof(pb->last_hash));
		else
			pb->last_hash[0] = '\0';
		expect = hp.bad_line - 1;
	}
	if (entries)
		*entries = expect;
	return rc;
}

int rh_journal_verify(struct rh_journal *j, struct rh_journal_problem *problem_out,
		      uint64_t *entries)
{
	int fd, rc;

	if (entries)
		*entries = 0;
	memset(problem_out, 0, sizeof(*problem_out));
	fd = open_locked(j, O_RDONLY, LOCK_SH);
	if (fd < 0)
		return fd;
	rc = verify_fd(fd, problem_out, entries);
	close(fd);
	return rc;
}

/* ---- repair ------------------------------------------------------------------- */

/* Copies bytes [from, to) of `fd` into a new file `dst` (0600, exclusive). */
static int copy_tail(int fd, off_t from, off_t to, const char *dst)
{
	char buf[65536];
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	int rc = 0;

	if (out < 0)
		return -errno;
	while (from < to) {
		size_t want = (size_t)(to - from) < sizeof(buf) ? (size_t)(to - from) : sizeof(buf);
		ssize_t n = pread(fd, buf, want, from);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			break;
		}
		rc = rh_fs_write_all(out, buf, (size_t)n);
		if (rc < 0)
			break;
		from += n;
	}
	if (rc == 0 && fsync(out) != 0)
		rc = -errno;
	if (close(out) != 0 && rc == 0)
		rc = -errno;
	if (rc < 0)
		unlink(dst);
	return rc;
}

/* Offset just past the last '\n' before `size` (0 when there is none). */
static int last_newline_end(int fd, off_t size, off_t *out)
{
	char buf[65536];
	off_t end = size;

	while (end > 0) {
		size_t n = end < (off_t)sizeof(buf) ? (size_t)end : sizeof(buf);
		ssize_t r = pread(fd, buf, n, end - (off_t)n);
		char *nl;

		if (r < 0 && errno == EINTR)
			continue;
		if (r != (ssize_t)n)
			return rh_error_set_errno(RH_EIO, r < 0 ? errno : EIO,
						  "cannot read the journal");
		nl = memrchr(buf, '\n', n);
		if (nl) {
			*out = end - (off_t)n + (nl - buf) + 1;
			return 0;
		}
		end -= (off_t)n;
	}
	*out = 0;
	return 0;
}

int rh_journal_repair(struct rh_journal *j, char *moved_to, size_t size)
{
	struct rh_journal_problem pb;
	char stamp[32], dst[PATH_MAX];
	struct timespec now = rh_clock_wall();
	struct tm tm;
	struct stat st;
	off_t keep = 0;
	int fd, rc;

	if (size)
		moved_to[0] = '\0';
	fd = open_locked(j, O_RDWR, LOCK_EX);
	if (fd < 0)
		return fd;
	rc = verify_fd(fd, &pb, NULL);
	if (rc == 0)
		goto done;
	if (rc != RH_EVERIFY)
		goto done;
	if (pb.kind != RH_JOURNAL_TORN_TAIL) {
		rc = rh_error_set(RH_EINVAL,
				  "%s: %s; repair only sets aside an incomplete last "
				  "entry and leaves other damage for you to investigate",
				  j->path, pb.message);
		goto done;
	}
	if (fstat(fd, &st) != 0) {
		rc = rh_error_set_errno(RH_EIO, errno, "cannot inspect the journal %s", j->path);
		goto done;
	}
	rc = last_newline_end(fd, st.st_size, &keep);
	if (rc < 0)
		goto done;
	gmtime_r(&now.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	for (int attempt = 0;; attempt++) {
		char rnd[17];
		int n;

		rh_fs_rand_hex(rnd);
		n = attempt ? snprintf(dst, sizeof(dst), "%s.torn-%s-%.6s", j->path, stamp, rnd)
			    : snprintf(dst, sizeof(dst), "%s.torn-%s", j->path, stamp);
		if (n < 0 || (size_t)n >= sizeof(dst)) {
			rc = rh_error_set(RH_EINVAL, "journal path too long: %s", j->path);
			goto done;
		}
		rc = copy_tail(fd, keep, st.st_size, dst);
		if (rc != -EEXIST || attempt > 8)
			break;
	}
	if (rc < 0) {
		rc = rh_error_set_errno(RH_EIO, -rc, "cannot set the torn entry aside in %s", dst);
		goto done;
	}
	fsync_dir(j->dir);
	/* Only once the copy is durable is the journal cut back. */
	if (ftruncate(fd, keep) != 0 || fsync(fd) != 0) {
		rc = rh_error_set_errno(RH_EIO, errno,
					"cannot cut the torn entry off %s "
					"(it was copied to %s)",
					j->path, dst);
		goto done;
	}
	if (keep == 0) {
		rc = write_genesis(fd, j->path);
		if (rc < 0)
			goto done;
	}
	if (size)
		snprintf(moved_to, size, "%s", dst);
done:
	close(fd);
	return rc;
}
