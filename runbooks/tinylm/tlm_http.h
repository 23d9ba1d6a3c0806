/*
 * tlm_http.h - the small HTTP/1.1 server under tinylm.
 *
 * One thread, one poll() loop, non-blocking sockets. A connection carries
 * one request at a time (Content-Length bodies up to TLM_HTTP_MAX_BODY, no
 * chunked uploads); HTTP/1.1 connections are kept alive for the next
 * request unless the client sends Connection: close (HTTP/1.0 ones only
 * with Connection: keep-alive), as load testers expect of a real server.
 * Every connection has a deadline, so a slow or silent client costs a slot
 * for a while, never the server; an idle kept-alive connection is closed
 * quietly at its deadline. The handler runs on the loop's thread and must
 * not block.
 *
 * Streaming: a handler may answer with `events` instead of a body: they go
 * out as text/event-stream, each as "data: EVENT\n\n" in its own chunk
 * (chunked transfer encoding), `event_ms` apart, then "data: [DONE]".
 *
 * Stall (a test option): tlm_http_stall makes the loop stop serving for a
 * while once, at a given time - nothing read, written or accepted, as in a
 * long GC pause - so load tests can be compared on a known stall.
 *
 * Order of calls: tlm_http_init, tlm_http_listen, tlm_http_run (returns when
 * the wake callback asks it to), tlm_http_release.
 */
#ifndef TLM_HTTP_H
#define TLM_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define TLM_HTTP_MAX_HEAD (16u << 10)
#define TLM_HTTP_MAX_BODY (1u << 20)
#define TLM_HTTP_MAX_CONNS 256

struct tlm_request {
	const char *method; /* borrowed, NUL-terminated */
	const char *path;   /* the target without its query string */
	const char *body;   /* body_len bytes, NUL-terminated; "" if none */
	size_t body_len;
	const char *peer; /* "addr:port" */
};

struct tlm_response {
	int status;
	char *body; /* new (malloc'd), freed by the server; NULL: empty */
	size_t body_len;
	const char *allow; /* static; for 405: the Allow header */
	char **events;	   /* new array of new strings, freed by the server; NULL: body */
	size_t n_events;
	int event_ms; /* pause between events */
};

struct tlm_conn;

struct tlm_http {
	int listen_fd;
	int wake_fd;	   /* borrowed: read end of a non-blocking pipe */
	int io_timeout_ms; /* per-connection deadline */
	/* Fills `resp` for `req`; runs on the loop's thread. */
	void (*handle)(void *ctx, const struct tlm_request *req, struct tlm_response *resp);
	/* Called when wake_fd became readable (the server drained it): 0 keeps
	 * serving, anything else makes tlm_http_run return it. */
	int (*wake)(void *ctx);
	void *ctx;
	struct tlm_conn *conns[TLM_HTTP_MAX_CONNS];
	size_t n_conns;
	int64_t accept_pause_until;
	int64_t stall_at_ms; /* monotonic ms; 0: no stall pending */
	int stall_ms;
};

/* Makes the loop stall for `ms` once, at monotonic time `at_ms`. */
void tlm_http_stall(struct tlm_http *s, int64_t at_ms, int ms);

/* `s` is filled in; set handle, wake and ctx before tlm_http_run. */
void tlm_http_init(struct tlm_http *s, int wake_fd, int io_timeout_ms);

/* Binds host:port (port "0" picks a free one) and listens. addr gets the
 * numeric bound address and *port_out the port. Returns 0 or RH_EIO with
 * rh_error_last() naming host and port. */
int tlm_http_listen(struct tlm_http *s, const char *host, const char *port, char *addr,
		    size_t addr_len, int *port_out);

/* Serves until the wake callback returns non-zero and returns that value,
 * or returns RH_EIO if poll() itself fails. */
int tlm_http_run(struct tlm_http *s);

/* Closes the listener and every connection. */
void tlm_http_release(struct tlm_http *s);

/* A JSON error body {"error":{"message":...,"type":...}} for `resp`. */
void tlm_http_error(struct tlm_response *resp, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Monotonic milliseconds. */
int64_t tlm_now_ms(void);

#endif
