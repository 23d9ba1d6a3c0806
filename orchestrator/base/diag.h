/*
 * diag.h - validation diagnostics with source positions.
 *
 * Validators do not know line numbers: they report against a JSON pointer
 * (RFC 6901, e.g. "/steps/3/after/0") and whether the key or the value is
 * meant. rh_diags_locate() maps every pointer to line:column once, against
 * the original text, after validation (see jsonpos.h). Printing is the CLI's.
 */
#ifndef RH_DIAG_H
#define RH_DIAG_H

#include <stdbool.h>
#include <stddef.h>

struct rh_diag {
	char *pointer; /* JSON pointer of the offending value or key ("" = document) */
	bool at_key;   /* point at the member's key rather than its value */
	int line;      /* 1-based; 0 until located */
	int column;    /* 1-based, in characters (UTF-8 code points) */
	char *message; /* lowercase, no trailing period */
};

/* At most this many diagnostics are kept: a hostile runbook with a million
 * mistakes gets the first ones and a count of the rest, in bounded time. */
#define RH_DIAGS_MAX 100

struct rh_diags {
	struct rh_diag *items;
	size_t count;
	size_t alloc;
	size_t dropped; /* diagnostics not kept once count reached RH_DIAGS_MAX */
};

#define RH_DIAGS_INIT                                                                              \
	{                                                                                          \
		NULL, 0, 0, 0                                                                      \
	}

/* Appends a diagnostic. Returns 0, or RH_ENOMEM. */
int rh_diags_add(struct rh_diags *d, const char *pointer, bool at_key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends a diagnostic with a known position (parse errors from jansson). */
int rh_diags_add_at(struct rh_diags *d, int line, int column, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Fills line/column of every diagnostic that has none, from `text`, with one
 * index of line starts for all of them. */
void rh_diags_locate(struct rh_diags *d, const char *text, size_t len);

/* Sorts by position (stable), so output reads top to bottom. */
void rh_diags_sort(struct rh_diags *d);

/* Frees the items; leaves `d` empty and reusable. */
void rh_diags_clear(struct rh_diags *d);

/* Builds "/a/b" + "c" -> "/a/b/c" with RFC 6901 escaping of `~` and `/`.
 * Returns a new string (caller frees), NULL on allocation failure. */
char *rh_pointer_join(const char *base, const char *token);
char *rh_pointer_join_index(const char *base, size_t index);

#endif
