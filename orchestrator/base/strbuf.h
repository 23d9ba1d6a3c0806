/*
 * strbuf.h - a growable string buffer with a size limit (after git's strbuf
 * and curl's dynbuf), and rh_asprintf().
 *
 * Every place that builds text of unknown length (a report, an expanded
 * reference, an HTTP body, a journal mirror) used to grow its own array by
 * doubling. This is the one way: the buffer grows as needed, always ends in
 * a NUL once anything was added, and refuses to grow past `max` bytes, so
 * input from the network or a file cannot make it take all memory.
 *
 * Order of calls: rh_strbuf_init (or RH_STRBUF_INIT), any number of adds,
 * then rh_strbuf_release (frees) or rh_strbuf_detach (hands the text to the
 * caller). A failed add leaves the buffer as it was before that add; the
 * buffer is still valid and must still be released.
 *
 * Memory: the buffer owns `buf` until detached. Nothing here is shared
 * between threads; each user has its own buffer.
 */
#ifndef RH_STRBUF_H
#define RH_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct rh_strbuf {
	char *buf;    /* NULL until the first add, then NUL-terminated */
	size_t len;   /* bytes held, without the NUL */
	size_t alloc; /* bytes allocated for buf */
	size_t max;   /* most bytes it may hold (without the NUL); 0: no limit */
};

#define RH_STRBUF_INIT                                                                             \
	{                                                                                          \
		NULL, 0, 0, 0                                                                      \
	}

/* An empty buffer that holds at most `max` bytes (0: no limit but memory). */
void rh_strbuf_init(struct rh_strbuf *sb, size_t max);

/* Makes room for `extra` more bytes (and the NUL). Returns 0, or RH_ENOMEM
 * with the message "out of memory" or, when len + extra would pass max,
 * "text passes its limit of <max> bytes". */
int rh_strbuf_grow(struct rh_strbuf *sb, size_t extra);

/* Appends `len` bytes of `data` (which may hold NULs). 0 or RH_ENOMEM as
 * rh_strbuf_grow. */
int rh_strbuf_add(struct rh_strbuf *sb, const void *data, size_t len);

/* Appends the string `s`. */
int rh_strbuf_adds(struct rh_strbuf *sb, const char *s);

/* Appends one character. */
int rh_strbuf_addch(struct rh_strbuf *sb, char c);

/* Appends printf-style text. 0 or RH_ENOMEM as rh_strbuf_grow (RH_EINVAL
 * for a format vsnprintf refuses). */
int rh_strbuf_addf(struct rh_strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int rh_strbuf_vaddf(struct rh_strbuf *sb, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* The text so far (borrowed, valid until the next add): "" when empty. */
const char *rh_strbuf_str(const struct rh_strbuf *sb);

/* Empties the buffer, keeping its memory. */
void rh_strbuf_reset(struct rh_strbuf *sb);

/* Frees the memory; the buffer is empty again (same max) and reusable. */
void rh_strbuf_release(struct rh_strbuf *sb);

/* Hands the text to the caller (new: caller frees; an empty buffer gives an
 * allocated ""), its length into *len when len is not NULL, and leaves the
 * buffer empty. NULL only when allocating "" failed (RH_ENOMEM set). */
char *rh_strbuf_detach(struct rh_strbuf *sb, size_t *len);

/* asprintf() that keeps to the error convention: *out gets the new string
 * (caller frees) and 0 comes back, or *out is NULL and RH_ENOMEM comes back
 * with the message "out of memory". */
int rh_asprintf(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
