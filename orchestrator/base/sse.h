/*
 * sse.h - an incremental parser of server-sent events (the text/event-stream
 * format of the WHATWG HTML standard, section 9.2), as OpenAI-style servers
 * stream completions with.
 *
 * Bytes are fed as they arrive, split anywhere (inside a line, between \r
 * and \n). Lines end with \n, \r\n or \r. A line starting with ':' is a
 * comment. "field: value" lines fill the event being built (one space after
 * the colon is dropped); `data` lines are joined with \n; `event` names the
 * event; `id` and `retry` are accepted and ignored; other fields are
 * ignored as the standard says. A blank line dispatches the event if it has
 * data. An event whose data grows past `max_event` bytes is an error: a
 * server that never sends a blank line must not make the client grow
 * without bound. Data "[DONE]" (OpenAI's end marker) is dispatched like any
 * event and also sets `done`.
 *
 * Usage: rh_sse_init, rh_sse_feed (any number of times), rh_sse_finish at
 * the end of the stream (an event not closed by a blank line is dropped, as
 * the standard says; the return tells whether one was), rh_sse_release.
 * The callback gets the event name ("message" when none was given) and the
 * data (NUL-terminated, `len` bytes; both borrowed for the call). A negative
 * return from it stops the parser and is returned by rh_sse_feed.
 */
#ifndef RH_SSE_H
#define RH_SSE_H

#include <stdbool.h>
#include <stddef.h>

typedef int (*rh_sse_event_fn)(void *user, const char *event, const char *data, size_t len);

struct rh_sse {
	size_t max_event;
	rh_sse_event_fn on_event;
	void *user;
	char *line; /* the line being read */
	size_t line_len, line_cap;
	char *data; /* the event's data so far */
	size_t data_len, data_cap;
	bool has_data;
	char event[64];
	bool after_cr; /* the last byte was \r: a following \n belongs to it */
	bool bom_checked;
	bool done;	 /* saw data: [DONE] */
	unsigned events; /* dispatched */
	int failed;	 /* sticky error code */
};

/* `max_event` bounds one event's line and data (bytes). */
void rh_sse_init(struct rh_sse *p, size_t max_event, rh_sse_event_fn on_event, void *user);

/* Returns 0, RH_EINVAL when an event is over max_event (the message says
 * so), RH_ENOMEM, or the callback's negative return. After an error every
 * later call returns it again. */
int rh_sse_feed(struct rh_sse *p, const char *buf, size_t n);

/* The stream ended. Returns 1 when an unfinished event (data without its
 * blank line) was dropped, 0 otherwise, or the sticky error. */
int rh_sse_finish(struct rh_sse *p);

/* Frees the buffers; the struct may be initialised again. */
void rh_sse_release(struct rh_sse *p);

#endif
