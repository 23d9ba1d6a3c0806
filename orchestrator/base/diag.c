/*
 * diag.c - positioned validation diagnostics (see diag.h).
 *
 * Validators report against JSON pointers because that is what they know
 * while walking a parsed document; turning pointers into line:column is done
 * once, at the end, by rescanning the original text (jsonpos.c). Keeping the
 * two apart lets every check stay a one-liner and still print
 * "file:line:col" like a compiler.
 */
#include "diag.h"

#include "error.h"
#include "jsonpos.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

/* A new string from a format, or NULL when memory runs out. */
static char *vformat(const char *fmt, va_list ap)
{
	va_list ap2;
	char *s;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (s)
		vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

static int diags_push(struct rh_diags *d, char *pointer, bool at_key, int line, int column,
		      char *message)
{
	int err = 0;

	if (!pointer || !message) {
		err = rh_error_set(RH_ENOMEM, "out of memory recording a diagnostic");
		goto done;
	}
	if (d->count >= RH_DIAGS_MAX) {
		d->dropped++;
		goto done;
	}
	if (d->count == d->alloc) {
		size_t n = d->alloc ? d->alloc * 2 : 8;
		struct rh_diag *items = realloc(d->items, n * sizeof(*items));

		if (!items) {
			err = rh_error_set(RH_ENOMEM, "out of memory recording a diagnostic");
			goto done;
		}
		d->items = items;
		d->alloc = n;
	}
	d->items[d->count].pointer = pointer;
	d->items[d->count].at_key = at_key;
	d->items[d->count].line = line;
	d->items[d->count].column = column;
	d->items[d->count].message = message;
	d->count++;
	pointer = NULL;
	message = NULL;
done:
	free(pointer);
	free(message);
	return err;
}

int rh_diags_add(struct rh_diags *d, const char *pointer, bool at_key, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = vformat(fmt, ap);
	va_end(ap);
	return diags_push(d, strdup(pointer ? pointer : ""), at_key, 0, 0, msg);
}

int rh_diags_add_at(struct rh_diags *d, int line, int column, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	msg = vformat(fmt, ap);
	va_end(ap);
	return diags_push(d, strdup(""), false, line < 1 ? 1 : line, column < 1 ? 1 : column, msg);
}

void rh_diags_locate(struct rh_diags *d, const char *text, size_t len)
{
	size_t *starts = NULL, n = 0, cap = 0;

	/* one pass for the line starts, then a binary search per diagnostic */
	for (size_t i = 0; i <= len; i++) {
		if (i != 0 && (i == len || text[i - 1] != '\n'))
			continue;
		if (n == cap) {
			size_t *ns = realloc(starts, (cap ? cap * 2 : 1024) * sizeof(*ns));

			if (!ns)
				break;
			starts = ns;
			cap = cap ? cap * 2 : 1024;
		}
		starts[n++] = i;
	}
	for (size_t i = 0; i < d->count; i++) {
		struct rh_diag *g = &d->items[i];
		size_t off = 0, lo = 0, hi = n;
		int col = 1;

		if (g->line > 0)
			continue;
		if (rh_jsonpos_offset(text, len, g->pointer, g->at_key, &off) < 0 || n == 0) {
			/* Nothing to point at (not JSON at all): the top is the
			 * least surprising place. */
			g->line = 1;
			g->column = 1;
			continue;
		}
		while (hi - lo > 1) {
			size_t mid = lo + (hi - lo) / 2;

			if (starts[mid] <= off)
				lo = mid;
			else
				hi = mid;
		}
		for (size_t k = starts[lo]; k < off; k++)
			if (((unsigned char)text[k] & 0xC0) != 0x80)
				col++; /* continuation bytes belong to the previous character */
		g->line = lo + 1 > (size_t)INT32_MAX ? INT32_MAX : (int)(lo + 1);
		g->column = col;
	}
	free(starts);
}

struct diag_sort_item {
	struct rh_diag diag;
	size_t seq;
};

static int diag_cmp(const void *a, const void *b)
{
	const struct diag_sort_item *x = a;
	const struct diag_sort_item *y = b;

	if (x->diag.line != y->diag.line)
		return x->diag.line < y->diag.line ? -1 : 1;
	if (x->diag.column != y->diag.column)
		return x->diag.column < y->diag.column ? -1 : 1;
	/* qsort is not stable; the sequence number makes it so. */
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void rh_diags_sort(struct rh_diags *d)
{
	struct diag_sort_item *tmp;

	if (d->count < 2)
		return;
	tmp = calloc(d->count, sizeof(*tmp));
	if (!tmp) {
		/* Insertion sort needs no memory; only reached under memory
		 * pressure, so its quadratic worst case does not matter. */
		for (size_t i = 1; i < d->count; i++) {
			struct rh_diag cur = d->items[i];
			size_t j = i;

			while (j > 0 && (d->items[j - 1].line > cur.line ||
					 (d->items[j - 1].line == cur.line &&
					  d->items[j - 1].column > cur.column))) {
				d->items[j] = d->items[j - 1];
				j--;
			}
			d->items[j] = cur;
		}
		return;
	}
	for (size_t i = 0; i < d->count; i++) {
		tmp[i].diag = d->items[i];
		tmp[i].seq = i;
	}
	qsort(tmp, d->count, sizeof(*tmp), diag_cmp);
	for (size_t i = 0; i < d->count; i++)
		d->items[i] = tmp[i].diag;
	free(tmp);
}

void rh_diags_clear(struct rh_diags *d)
{
	for (size_t i = 0; i < d->count; i++) {
		free(d->items[i].pointer);
		free(d->items[i].message);
	}
	free(d->items);
	d->items = NULL;
	d->count = 0;
	d->alloc = 0;
}

char *rh_pointer_join(const char *base, const char *token)
{
	size_t blen = base ? strlen(base) : 0;
	size_t extra = 0;
	char *out;
	char *p;

	for (const char *t = token; *t; t++)
		if (*t == '~' || *t == '/')
			extra++;
	out = malloc(blen + 1 + strlen(token) + extra + 1);
	if (!out)
		return NULL;
	if (blen)
		memcpy(out, base, blen);
	p = out + blen;
	*p++ = '/';
	for (const char *t = token; *t; t++) {
		if (*t == '~') {
			*p++ = '~';
			*p++ = '0';
		} else if (*t == '/') {
			*p++ = '~';
			*p++ = '1';
		} else {
			*p++ = *t;
		}
	}
	*p = '\0';
	return out;
}

char *rh_pointer_join_index(const char *base, size_t index)
{
	char num[32];

	snprintf(num, sizeof(num), "%zu", index);
	return rh_pointer_join(base, num);
}
