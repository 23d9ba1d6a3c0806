/*
 * jsonpos.h - find where a JSON pointer sits in a JSON text.
 *
 * jansson gives positions only for syntax errors; semantic errors (unknown
 * key, duplicate id, cycle) need them too. The text was already accepted by
 * jansson, so this is a small scanner that walks to one pointer; it is run
 * once per diagnostic, which is rare and bounded.
 */
#ifndef RH_JSONPOS_H
#define RH_JSONPOS_H

#include <stdbool.h>
#include <stddef.h>

/* Sets *line and *column (1-based; column counts UTF-8 code points) of the value
 * at `pointer` (or of its member key when `at_key`). When the pointer does
 * not resolve, gives the position of the deepest part that does. Returns 0,
 * or RH_ENOTFOUND when even the document root cannot be found. */
int rh_jsonpos_locate(const char *text, size_t len, const char *pointer, bool at_key, int *line,
		      int *column);

/* The byte offset in `text` that rh_jsonpos_locate turns into line:column
 * (for callers that index line starts once for many pointers). */
int rh_jsonpos_offset(const char *text, size_t len, const char *pointer, bool at_key,
		      size_t *offset);

#endif
