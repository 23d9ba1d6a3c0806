/*
 * jsonpos.c - map a JSON pointer to line:column in the original text.
 *
 * jansson keeps no source positions for values, and validation errors are
 * only useful when they point at the offending token. The text has already
 * been accepted by jansson when this runs, so a forward-only scanner that
 * skips what it does not need is enough: no tree, no recursion (a hostile
 * file may nest thousands of levels), bounded by the text length. Keys are
 * decoded (escapes, \uXXXX with surrogate pairs) before they are compared,
 * because the pointer names the key's value, not its spelling.
 */
#include "jsonpos.h"

#include "error.h"
#include "hex.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

struct scan {
	const char *s;
	size_t len;
	size_t pos;
};

static void skip_ws(struct scan *sc)
{
	while (sc->pos < sc->len) {
		char c = sc->s[sc->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		sc->pos++;
	}
}

static bool at(const struct scan *sc, char c)
{
	return sc->pos < sc->len && sc->s[sc->pos] == c;
}

/* Moves past a string starting at the opening quote. false at end of text. */
static bool skip_string(struct scan *sc)
{
	sc->pos++;
	while (sc->pos < sc->len) {
		char c = sc->s[sc->pos++];

		if (c == '\\')
			sc->pos++;
		else if (c == '"')
			return sc->pos <= sc->len;
	}
	return false;
}

/* Moves past one value of any kind, counting brackets instead of recursing. */
static bool skip_value(struct scan *sc)
{
	size_t depth = 0;

	skip_ws(sc);
	if (sc->pos >= sc->len)
		return false;
	do {
		char c;

		if (sc->pos >= sc->len)
			return false;
		c = sc->s[sc->pos];
		if (c == '"') {
			if (!skip_string(sc))
				return false;
		} else if (c == '{' || c == '[') {
			depth++;
			sc->pos++;
		} else if (c == '}' || c == ']') {
			if (depth == 0)
				return false;
			depth--;
			sc->pos++;
		} else if (depth > 0) {
			sc->pos++;
		} else {
			/* A scalar at the top: runs until a delimiter. */
			while (sc->pos < sc->len && !strchr(",}] \t\r\n", sc->s[sc->pos]))
				sc->pos++;
		}
	} while (depth > 0);
	return true;
}

static bool read_hex4(struct scan *sc, uint32_t *out)
{
	uint32_t v = 0;

	if (sc->pos + 4 > sc->len)
		return false;
	for (int i = 0; i < 4; i++) {
		int h = rh_hex_val(sc->s[sc->pos + (size_t)i]);

		if (h < 0)
			return false;
		v = v << 4 | (uint32_t)h;
	}
	sc->pos += 4;
	*out = v;
	return true;
}

static size_t put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Decodes the string at the opening quote into `buf` (at least as large as
 * the raw text: decoding never grows it); *n gets the decoded length. */
static bool read_string(struct scan *sc, char *buf, size_t *n)
{
	size_t o = 0;

	sc->pos++;
	while (sc->pos < sc->len) {
		char c = sc->s[sc->pos++];
		uint32_t cp, lo;

		if (c == '"') {
			*n = o;
			return true;
		}
		if (c != '\\') {
			buf[o++] = c;
			continue;
		}
		if (sc->pos >= sc->len)
			return false;
		c = sc->s[sc->pos++];
		switch (c) {
		case 'b':
			buf[o++] = '\b';
			break;
		case 'f':
			buf[o++] = '\f';
			break;
		case 'n':
			buf[o++] = '\n';
			break;
		case 'r':
			buf[o++] = '\r';
			break;
		case 't':
			buf[o++] = '\t';
			break;
		case 'u':
			if (!read_hex4(sc, &cp))
				return false;
			if (cp >= 0xD800 && cp <= 0xDBFF && sc->pos + 6 <= sc->len &&
			    sc->s[sc->pos] == '\\' && sc->s[sc->pos + 1] == 'u') {
				size_t save = sc->pos;

				sc->pos += 2;
				if (read_hex4(sc, &lo) && lo >= 0xDC00 && lo <= 0xDFFF)
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				else
					sc->pos = save;
			}
			if (cp >= 0xD800 && cp <= 0xDFFF)
				cp = 0xFFFD; /* lone surrogate: cannot match anything */
			/* "\uXXXX" is 6 bytes and yields at most 4. */
			o += put_utf8(buf + o, cp);
			break;
		default:
			buf[o++] = c;
			break; /* \" \\ \/ */
		}
	}
	return false;
}

/* Decodes RFC 6901 escapes of one token in place; returns its length. */
static size_t unescape_token(char *t, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (t[i] == '~' && i + 1 < n && (t[i + 1] == '0' || t[i + 1] == '1')) {
			t[o++] = t[i + 1] == '0' ? '~' : '/';
			i++;
		} else {
			t[o++] = t[i];
		}
	}
	return o;
}

static bool parse_index(const char *t, size_t n, size_t *out)
{
	size_t v = 0;

	if (n == 0 || (n > 1 && t[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (t[i] < '0' || t[i] > '9' || v > (SIZE_MAX - 9) / 10)
			return false;
		v = v * 10 + (size_t)(t[i] - '0');
	}
	*out = v;
	return true;
}

/* Finds the member `tok` of the object at sc->pos. On success sc->pos is at
 * its value and *key_pos at the key's opening quote. */
static bool find_member(struct scan *sc, const char *tok, size_t tlen, char *buf, size_t *key_pos)
{
	sc->pos++;
	for (;;) {
		size_t kpos, klen;

		skip_ws(sc);
		if (!at(sc, '"'))
			return false;
		kpos = sc->pos;
		if (!read_string(sc, buf, &klen))
			return false;
		skip_ws(sc);
		if (!at(sc, ':'))
			return false;
		sc->pos++;
		skip_ws(sc);
		if (klen == tlen && memcmp(buf, tok, tlen) == 0) {
			*key_pos = kpos;
			return true;
		}
		if (!skip_value(sc))
			return false;
		skip_ws(sc);
		if (!at(sc, ','))
			return false;
		sc->pos++;
	}
}

static bool find_item(struct scan *sc, size_t index)
{
	sc->pos++;
	skip_ws(sc);
	for (size_t i = 0; i < index; i++) {
		if (at(sc, ']') || !skip_value(sc))
			return false;
		skip_ws(sc);
		if (!at(sc, ','))
			return false;
		sc->pos++;
		skip_ws(sc);
	}
	return sc->pos < sc->len && !at(sc, ']');
}

static void offset_to_linecol(const char *s, size_t off, int *line, int *column)
{
	int l = 1, c = 1;

	for (size_t i = 0; i < off; i++) {
		unsigned char b = (unsigned char)s[i];

		if (b == '\n') {
			l++;
			c = 1;
		} else if ((b & 0xC0) != 0x80) {
			c++; /* continuation bytes belong to the previous character */
		}
	}
	*line = l;
	*column = c;
}

int rh_jsonpos_locate(const char *text, size_t len, const char *pointer, bool at_key, int *line,
		      int *column)
{
	size_t off = 0;
	int err;

	*line = 0;
	*column = 0;
	err = rh_jsonpos_offset(text, len, pointer, at_key, &off);
	if (err == 0)
		offset_to_linecol(text, off, line, column);
	return err;
}

int rh_jsonpos_offset(const char *text, size_t len, const char *pointer, bool at_key,
		      size_t *offset)
{
	struct scan sc = {text, len, 0};
	char *tok = NULL;
	char *keybuf = NULL;
	size_t value_pos, key_pos = SIZE_MAX;
	const char *p = pointer ? pointer : "";
	int err = 0;

	*offset = 0;
	skip_ws(&sc);
	if (sc.pos >= len) {
		err = rh_error_set(RH_ENOTFOUND, "no json value in the text");
		goto done;
	}
	value_pos = sc.pos;
	tok = malloc(strlen(p) + 1);
	keybuf = malloc(len + 1);
	if (!tok || !keybuf) {
		err = rh_error_set(RH_ENOMEM, "out of memory locating %s", p);
		goto done;
	}
	/* A pointer not starting with '/' is not a pointer: use the root. */
	while (*p == '/') {
		const char *end = strchr(p + 1, '/');
		size_t n = end ? (size_t)(end - p - 1) : strlen(p + 1);
		size_t index, kpos;

		memcpy(tok, p + 1, n);
		p += 1 + n;
		n = unescape_token(tok, n);
		if (at(&sc, '{') && find_member(&sc, tok, n, keybuf, &kpos)) {
			key_pos = kpos;
		} else if (at(&sc, '[') && parse_index(tok, n, &index) && find_item(&sc, index)) {
			key_pos = SIZE_MAX;
		} else {
			/* Unresolved: the deepest value found, never its key. */
			key_pos = SIZE_MAX;
			break;
		}
		value_pos = sc.pos;
	}
	*offset = at_key && key_pos != SIZE_MAX ? key_pos : value_pos;
done:
	free(tok);
	free(keybuf);
	return err;
}
