/*
 * strbuf.c - the growable, bounded string buffer (see strbuf.h).
 *
 * Growth doubles (amortised O(1) appends) from a small first allocation; a
 * limit check happens before any allocation so a hostile peer streaming an
 * endless body gets a clear error instead of an out-of-memory kill.
 */
#include "strbuf.h"

#include "error.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

#define STRBUF_FIRST 64

void rh_strbuf_init(struct rh_strbuf *sb, size_t max)
{
	sb->buf = NULL;
	sb->len = 0;
	sb->alloc = 0;
	sb->max = max;
}

int rh_strbuf_grow(struct rh_strbuf *sb, size_t extra)
{
	size_t limit = sb->max ? sb->max : SIZE_MAX / 2;
	size_t need;
	size_t cap;
	char *p;

	if (extra > limit || sb->len > limit - extra)
		return rh_error_set(RH_ENOMEM, "text passes its limit of %zu bytes", limit);
	need = sb->len + extra + 1;
	if (need <= sb->alloc)
		return 0;
	cap = sb->alloc ? sb->alloc : STRBUF_FIRST;
	while (cap < need)
		cap *= 2;
	if (sb->max && cap > sb->max + 1)
		cap = sb->max + 1;
	p = realloc(sb->buf, cap);
	if (!p)
		return rh_error_set(RH_ENOMEM, "out of memory");
	if (!sb->buf)
		p[0] = '\0';
	sb->buf = p;
	sb->alloc = cap;
	return 0;
}

int rh_strbuf_add(struct rh_strbuf *sb, const void *data, size_t len)
{
	int err = rh_strbuf_grow(sb, len);

	if (err < 0)
		return err;
	if (len > 0)
		memcpy(sb->buf + sb->len, data, len);
	sb->len += len;
	sb->buf[sb->len] = '\0';
	return 0;
}

int rh_strbuf_adds(struct rh_strbuf *sb, const char *s)
{
	return rh_strbuf_add(sb, s, strlen(s));
}

int rh_strbuf_addch(struct rh_strbuf *sb, char c)
{
	return rh_strbuf_add(sb, &c, 1);
}

int rh_strbuf_vaddf(struct rh_strbuf *sb, const char *fmt, va_list ap)
{
	va_list cp;
	int n;
	int err;

	va_copy(cp, ap);
	n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0)
		return rh_error_set(RH_EINVAL, "cannot format \"%s\"", fmt);
	err = rh_strbuf_grow(sb, (size_t)n);
	if (err < 0)
		return err;
	vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
	sb->len += (size_t)n;
	return 0;
}

int rh_strbuf_addf(struct rh_strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int err;

	va_start(ap, fmt);
	err = rh_strbuf_vaddf(sb, fmt, ap);
	va_end(ap);
	return err;
}

const char *rh_strbuf_str(const struct rh_strbuf *sb)
{
	return sb->buf ? sb->buf : "";
}

void rh_strbuf_reset(struct rh_strbuf *sb)
{
	sb->len = 0;
	if (sb->buf)
		sb->buf[0] = '\0';
}

void rh_strbuf_release(struct rh_strbuf *sb)
{
	free(sb->buf);
	rh_strbuf_init(sb, sb->max);
}

char *rh_strbuf_detach(struct rh_strbuf *sb, size_t *len)
{
	char *s = sb->buf;

	if (!s) {
		s = calloc(1, 1);
		if (!s) {
			rh_error_set(RH_ENOMEM, "out of memory");
			return NULL;
		}
	}
	if (len)
		*len = sb->len;
	rh_strbuf_init(sb, sb->max);
	return s;
}

int rh_asprintf(char **out, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(out, fmt, ap);
	va_end(ap);
	if (n < 0) {
		*out = NULL;
		return rh_error_set(RH_ENOMEM, "out of memory");
	}
	return 0;
}
