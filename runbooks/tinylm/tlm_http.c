/*
 * tlm_http.c - tinylm's HTTP/1.1 server: one poll() loop, non-blocking
 * sockets, one request per connection (see tlm_http.h).
 *
 * It is deliberately small: tinylm stands in for a real inference server in
 * DR drills, so what matters is that it behaves like one at the edges a
 * drill's probes touch - partial reads and writes, Expect: 100-continue from
 * curl, a client that connects and says nothing, a client that never reads
 * its answer, a signal in the middle of it all, a load tester that keeps
 * its connections alive and a streaming client that times the first token.
 * A connection lives through READ (request head and body), WRITE (the
 * response; back to READ when kept alive) and DRAIN (our side shut, the
 * client's leftovers read and dropped so that closing does not reset the
 * connection under an unread response).
 */
#include "tlm_http.h"

#include "error.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "banned.h"

#define TLM_DRAIN_MS 1000
#define TLM_ACCEPT_PAUSE_MS 100

enum tlm_conn_state {
	TLM_CONN_READ,
	TLM_CONN_WRITE,
	TLM_CONN_DRAIN,
	TLM_CONN_DEAD,
};

struct tlm_conn {
	int fd;
	enum tlm_conn_state state;
	char *in; /* request bytes; in_cap + 1 allocated for a NUL */
	size_t in_len, in_cap;
	size_t scanned;	  /* head search resumes here */
	size_t head_len;  /* through the blank line; 0 until it arrived */
	size_t body_want; /* Content-Length */
	int head_only;	  /* HEAD: the response has no body */
	int http10;
	char *out;
	size_t out_len, out_off;
	int64_t start_us, deadline_ms;
	int keep_alive;	      /* read the next request after this response */
	unsigned long served; /* responses sent on this connection */
	char **ev;	      /* streamed events still to send (owned) */
	size_t n_ev, ev_next;
	int ev_ms, chunked;
	int64_t ev_due_ms;
	char peer[64];
	char method[16];
	char target[128]; /* for the log line, truncated */
};

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t tlm_now_ms(void)
{
	return now_us() / 1000;
}

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Unknown";
	}
}

void tlm_http_error(struct tlm_response *resp, int status, const char *type, const char *fmt, ...)
{
	char msg[512];
	json_t *j;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Messages may quote what a client sent; keep them valid UTF-8. */
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	free(resp->body);
	resp->status = status;
	j = json_pack("{s:{s:s,s:s,s:n}}", "error", "message", msg, "type", type, "code");
	resp->body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	resp->body_len = resp->body ? strlen(resp->body) : 0;
	json_decref(j);
}

void tlm_http_init(struct tlm_http *s, int wake_fd, int io_timeout_ms)
{
	memset(s, 0, sizeof(*s));
	s->listen_fd = -1;
	s->wake_fd = wake_fd;
	s->io_timeout_ms = io_timeout_ms;
}

int tlm_http_listen(struct tlm_http *s, const char *host, const char *port, char *addr,
		    size_t addr_len, int *port_out)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char serv[16];
	int fd = -1, one = 1, gai, saved = 0, err = 0;

	gai = getaddrinfo(host, port, &hints, &res);
	if (gai != 0) {
		err = rh_error_set(RH_EIO, "cannot resolve %s port %s: %s", host, port,
				   gai_strerror(gai));
		goto done;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		err = rh_error_set_errno(RH_EIO, saved, "cannot listen on %s port %s", host, port);
		goto done;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 ||
	    getnameinfo((struct sockaddr *)&ss, sl, addr, (socklen_t)addr_len, serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		err =
		    rh_error_set_errno(RH_EIO, errno, "cannot read the address bound on %s", host);
		close(fd);
		goto done;
	}
	*port_out = (int)strtol(serv, NULL, 10);
	s->listen_fd = fd;
done:
	if (res)
		freeaddrinfo(res);
	return err;
}

static void conn_free_events(struct tlm_conn *c)
{
	for (size_t i = 0; i < c->n_ev; i++)
		free(c->ev[i]);
	free(c->ev);
	c->ev = NULL;
	c->n_ev = c->ev_next = 0;
}

static void free_events(char **ev, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(ev[i]);
	free(ev);
}

static void conn_free(struct tlm_conn *c)
{
	conn_free_events(c);
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

static int out_append(struct tlm_conn *c, const char *p, size_t n)
{
	char *nb = realloc(c->out, c->out_len + n + 1);

	if (!nb)
		return -1;
	c->out = nb;
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	return 0;
}

/* Appends the streamed events that are due (all of them when event_ms is
 * 0), and the end of the stream after the last. Returns -1 out of memory. */
static int conn_pump_events(struct tlm_conn *c, int64_t now)
{
	char frame[32];
	int n;

	while (c->ev && c->ev_next < c->n_ev && now >= c->ev_due_ms) {
		const char *e = c->ev[c->ev_next];
		size_t len = strlen(e) + 8; /* "data: " e "\n\n" */

		n = snprintf(frame, sizeof(frame), "%zx\r\n", len);
		if ((c->chunked && out_append(c, frame, (size_t)n) < 0) ||
		    out_append(c, "data: ", 6) < 0 || out_append(c, e, len - 8) < 0 ||
		    out_append(c, "\n\n", 2) < 0 || (c->chunked && out_append(c, "\r\n", 2) < 0))
			return -1;
		c->ev_next++;
		c->ev_due_ms += c->ev_ms;
	}
	if (c->ev && c->ev_next == c->n_ev) {
		static const char done_chunked[] = "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n";
		static const char done_plain[] = "data: [DONE]\n\n";

		if (c->chunked ? out_append(c, done_chunked, sizeof(done_chunked) - 1) < 0
			       : out_append(c, done_plain, sizeof(done_plain) - 1) < 0)
			return -1;
		conn_free_events(c);
	}
	return 0;
}

/* Queues the response, logs the request and moves to WRITE. */
static void conn_respond(struct tlm_http *s, struct tlm_conn *c, struct tlm_response *resp)
{
	char head[512];
	int n;

	if (resp->status < 100 || resp->status > 599)
		tlm_http_error(resp, 500, "server_error", "the handler gave no valid status");
	if (resp->events && !c->head_only) {
		/* HTTP/1.0 has no chunks: the end of the connection ends the stream */
		c->chunked = !c->http10;
		if (!c->chunked)
			c->keep_alive = 0;
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 %d %s\r\n"
			     "Content-Type: text/event-stream\r\n"
			     "%s"
			     "Cache-Control: no-store\r\n"
			     "Connection: %s\r\n"
			     "Server: tinylm\r\n"
			     "\r\n",
			     resp->status, reason(resp->status),
			     c->chunked ? "Transfer-Encoding: chunked\r\n" : "",
			     c->keep_alive ? "keep-alive" : "close");
		fprintf(stderr, "tinylm: %s \"%s %s\" %d stream of %zu events\n", c->peer,
			c->method, c->target, resp->status, resp->n_events);
		c->ev = resp->events;
		c->n_ev = resp->n_events;
		c->ev_next = 0;
		c->ev_ms = resp->event_ms > 0 ? resp->event_ms : 0;
		c->ev_due_ms = tlm_now_ms();
		resp->events = NULL;
		resp->n_events = 0;
		if (out_append(c, head, (size_t)n) < 0 || conn_pump_events(c, tlm_now_ms()) < 0) {
			fprintf(stderr, "tinylm: %s: out of memory for a response\n", c->peer);
			c->state = TLM_CONN_DEAD;
			goto done;
		}
		c->state = TLM_CONN_WRITE;
		c->deadline_ms = tlm_now_ms() + s->io_timeout_ms;
		goto done;
	}
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\n"
		     "Content-Type: application/json\r\n"
		     "Content-Length: %zu\r\n"
		     "Cache-Control: no-store\r\n"
		     "Connection: %s\r\n"
		     "Server: tinylm\r\n"
		     "%s%s%s"
		     "\r\n",
		     resp->status, reason(resp->status), resp->body_len,
		     c->keep_alive ? "keep-alive" : "close", resp->allow ? "Allow: " : "",
		     resp->allow ? resp->allow : "", resp->allow ? "\r\n" : "");
	if (out_append(c, head, (size_t)n) < 0 ||
	    (!c->head_only && resp->body_len && out_append(c, resp->body, resp->body_len) < 0)) {
		fprintf(stderr, "tinylm: %s: out of memory for a response\n", c->peer);
		c->state = TLM_CONN_DEAD;
		goto done;
	}
	fprintf(stderr, "tinylm: %s \"%s %s\" %d %zu %.2fms\n", c->peer,
		c->method[0] ? c->method : "-", c->target[0] ? c->target : "-", resp->status,
		resp->body_len, (double)(now_us() - c->start_us) / 1000);
	c->state = TLM_CONN_WRITE;
	c->deadline_ms = tlm_now_ms() + s->io_timeout_ms;
done:
	free(resp->body);
	resp->body = NULL;
	free_events(resp->events, resp->n_events);
	resp->events = NULL;
	resp->n_events = 0;
}

static void conn_fail(struct tlm_http *s, struct tlm_conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void conn_fail(struct tlm_http *s, struct tlm_conn *c, int status, const char *fmt, ...)
{
	struct tlm_response resp = {0};
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	tlm_http_error(&resp, status, "invalid_request_error", "%s", msg);
	/* after a bad request the stream cannot be trusted to be in step */
	c->keep_alive = 0;
	conn_respond(s, c, &resp);
}

static int is_token(const char *p, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (p[i] <= 0x20 || p[i] >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", p[i]))
			return 0;
	return 1;
}

static void trim(const char **p, const char **end)
{
	while (*p < *end && (**p == ' ' || **p == '\t'))
		(*p)++;
	while (*end > *p && ((*end)[-1] == ' ' || (*end)[-1] == '\t'))
		(*end)--;
}

/* Parses the head in c->in[0..head_len). Returns 0, or -1 after queueing an
 * error response. Leaves NULs after the method and the path. */
static int parse_head(struct tlm_http *s, struct tlm_conn *c, char **path, int *http10)
{
	char *line = c->in, *eol = strstr(c->in, "\r\n"), *sp1, *sp2, *q;
	int have_len = 0, expect_continue = 0, conn_close = 0, conn_keep = 0;
	size_t len;

	sp1 = memchr(line, ' ', (size_t)(eol - line));
	sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || !is_token(line, (size_t)(sp1 - line)) || sp1[1] != '/') {
		conn_fail(s, c, 400, "malformed request line");
		return -1;
	}
	len = (size_t)(sp1 - line);
	snprintf(c->method, sizeof(c->method), "%.*s", (int)len, line);
	snprintf(c->target, sizeof(c->target), "%.*s", (int)(sp2 - sp1 - 1), sp1 + 1);
	for (char *t = c->target; *t; t++)
		if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
			*t = '?';
	if ((size_t)(eol - sp2 - 1) != 8 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    (sp2[8] != '0' && sp2[8] != '1')) {
		conn_fail(s, c, 505, "only HTTP/1.0 and HTTP/1.1 are spoken here");
		return -1;
	}
	*http10 = sp2[8] == '0';
	c->head_only = strcmp(c->method, "HEAD") == 0;
	for (line = eol + 2; line < c->in + c->head_len - 2; line = eol + 2) {
		const char *name = line, *colon, *v, *vend;

		eol = strstr(line, "\r\n");
		colon = memchr(line, ':', (size_t)(eol - line));
		if (!colon || !is_token(name, (size_t)(colon - name))) {
			conn_fail(s, c, 400, "malformed header line");
			return -1;
		}
		v = colon + 1;
		vend = eol;
		trim(&v, &vend);
		len = (size_t)(colon - name);
		if (len == 14 && strncasecmp(name, "content-length", 14) == 0) {
			size_t n = 0;

			if (v == vend) {
				conn_fail(s, c, 400, "empty content-length");
				return -1;
			}
			for (const char *d = v; d < vend; d++) {
				if (*d < '0' || *d > '9') {
					conn_fail(s, c, 400, "malformed content-length");
					return -1;
				}
				if (n > TLM_HTTP_MAX_BODY)
					break;
				n = n * 10 + (size_t)(*d - '0');
			}
			if (n > TLM_HTTP_MAX_BODY) {
				conn_fail(s, c, 413, "request bodies are limited to %u bytes",
					  TLM_HTTP_MAX_BODY);
				return -1;
			}
			if (have_len && n != c->body_want) {
				conn_fail(s, c, 400, "conflicting content-length headers");
				return -1;
			}
			have_len = 1;
			c->body_want = n;
		} else if (len == 17 && strncasecmp(name, "transfer-encoding", 17) == 0) {
			conn_fail(s, c, 501,
				  "chunked request bodies are not supported: "
				  "send content-length");
			return -1;
		} else if (len == 10 && strncasecmp(name, "connection", 10) == 0) {
			/* a list of tokens: "close", "keep-alive", "Upgrade", ... */
			for (const char *t = v; t < vend;) {
				const char *te = memchr(t, ',', (size_t)(vend - t));
				const char *a = t, *b = te ? te : vend;

				trim(&a, &b);
				if (b - a == 5 && strncasecmp(a, "close", 5) == 0)
					conn_close = 1;
				else if (b - a == 10 && strncasecmp(a, "keep-alive", 10) == 0)
					conn_keep = 1;
				t = te ? te + 1 : vend;
			}
		} else if (len == 6 && strncasecmp(name, "expect", 6) == 0) {
			if ((size_t)(vend - v) == 12 && strncasecmp(v, "100-continue", 12) == 0)
				expect_continue = 1;
		}
	}
	c->http10 = *http10;
	c->keep_alive = *http10 ? conn_keep && !conn_close : !conn_close;
	/* Ask for the body only once the head has been found acceptable. */
	if (expect_continue && !*http10 && c->body_want > c->in_len - c->head_len) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

		if (out_append(c, cont, sizeof(cont) - 1) < 0) {
			c->state = TLM_CONN_DEAD;
			return -1;
		}
	}
	sp1[0] = '\0';
	q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
	if (q)
		*q = '\0';
	sp2[0] = '\0';
	*path = sp1 + 1;
	return 0;
}

/* Looks at what has arrived; responds once a whole request is there. */
static void conn_advance(struct tlm_http *s, struct tlm_conn *c)
{
	struct tlm_request req;
	struct tlm_response resp = {0};
	char *path = NULL, *end;
	int http10 = 0;

	if (c->head_len == 0) {
		size_t from = c->scanned > 3 ? c->scanned - 3 : 0;

		c->in[c->in_len] = '\0';
		end = memmem(c->in + from, c->in_len - from, "\r\n\r\n", 4);
		c->scanned = c->in_len;
		if (!end) {
			if (c->in_len > TLM_HTTP_MAX_HEAD)
				conn_fail(s, c, 431, "request head is over %u bytes",
					  TLM_HTTP_MAX_HEAD);
			return;
		}
		c->head_len = (size_t)(end - c->in) + 4;
		if (c->head_len > TLM_HTTP_MAX_HEAD) {
			conn_fail(s, c, 431, "request head is over %u bytes", TLM_HTTP_MAX_HEAD);
			return;
		}
		/* The head is parsed in place; keep it a C string. */
		c->in[c->head_len - 2] = '\0';
		if (memchr(c->in, '\0', c->head_len - 2)) {
			conn_fail(s, c, 400, "NUL byte in the request head");
			return;
		}
		c->in[c->head_len - 2] = '\r';
		if (parse_head(s, c, &path, &http10) < 0)
			return;
	}
	if (c->in_len - c->head_len < c->body_want)
		return;
	if (!path) {
		/* Parsed on an earlier read: method and path are NUL-ended. */
		path = c->in + strlen(c->in) + 1;
	}
	c->in[c->head_len + c->body_want] = '\0';
	req.method = c->in;
	req.path = path;
	req.body = c->in + c->head_len;
	req.body_len = c->body_want;
	req.peer = c->peer;
	s->handle(s->ctx, &req, &resp);
	conn_respond(s, c, &resp);
}

static void conn_read(struct tlm_http *s, struct tlm_conn *c)
{
	for (;;) {
		ssize_t n;

		if (c->in_len == c->in_cap) {
			size_t want = c->head_len ? c->head_len + c->body_want : c->in_cap * 2;
			char *nb;

			if (want < 4096)
				want = 4096;
			if (want > TLM_HTTP_MAX_HEAD + TLM_HTTP_MAX_BODY)
				want = TLM_HTTP_MAX_HEAD + TLM_HTTP_MAX_BODY;
			if (want <= c->in_cap) {
				/* Bytes past a complete request: pipelining, not spoken. */
				return;
			}
			nb = realloc(c->in, want + 1);
			if (!nb) {
				fprintf(stderr, "tinylm: %s: out of memory\n", c->peer);
				c->state = TLM_CONN_DEAD;
				return;
			}
			c->in = nb;
			c->in_cap = want;
		}
		n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			/* The client left before finishing its request. */
			c->state = TLM_CONN_DEAD;
			return;
		}
		c->in_len += (size_t)n;
		conn_advance(s, c);
		if (c->state != TLM_CONN_READ)
			return;
	}
}

/* The response is out and the connection stays: keep what the client sent
 * after its request (it may have sent the next one) and read on. */
static void conn_next_request(struct tlm_http *s, struct tlm_conn *c)
{
	size_t used = c->head_len + c->body_want;
	size_t left = c->in_len > used ? c->in_len - used : 0;

	if (left)
		memmove(c->in, c->in + used, left);
	c->in_len = left;
	c->scanned = c->head_len = c->body_want = 0;
	c->head_only = c->http10 = c->keep_alive = 0;
	c->out_len = c->out_off = 0;
	c->method[0] = c->target[0] = '\0';
	c->state = TLM_CONN_READ;
	c->served++;
	c->start_us = now_us();
	c->deadline_ms = c->start_us / 1000 + s->io_timeout_ms;
	if (left)
		conn_advance(s, c);
}

static void conn_write(struct tlm_http *s, struct tlm_conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			c->state = TLM_CONN_DEAD;
			return;
		}
		c->out_off += (size_t)n;
	}
	if (c->state == TLM_CONN_READ) {
		/* Only a 100 Continue went out; the response comes later. */
		c->out_len = c->out_off = 0;
		return;
	}
	if (c->ev) {
		/* a stream with events still to come */
		c->out_len = c->out_off = 0;
		return;
	}
	if (c->keep_alive) {
		conn_next_request(s, c);
		return;
	}
	shutdown(c->fd, SHUT_WR);
	c->state = TLM_CONN_DRAIN;
	c->deadline_ms =
	    tlm_now_ms() + (s->io_timeout_ms < TLM_DRAIN_MS ? s->io_timeout_ms : TLM_DRAIN_MS);
}

static void conn_drain(struct tlm_conn *c)
{
	char junk[4096];

	for (;;) {
		ssize_t n = recv(c->fd, junk, sizeof(junk), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		c->state = TLM_CONN_DEAD;
		return;
	}
}

static void conn_timeout(struct tlm_http *s, struct tlm_conn *c)
{
	/* an idle kept-alive connection: close it without a word */
	if (c->state == TLM_CONN_READ && c->served > 0 && c->in_len == 0) {
		c->state = TLM_CONN_DEAD;
		return;
	}
	if (c->state != TLM_CONN_READ) {
		c->state = TLM_CONN_DEAD;
		return;
	}
	/* Drop a half-sent 100 Continue: the 408 replaces it. */
	if (c->out_off > 0) {
		c->state = TLM_CONN_DEAD;
		return;
	}
	c->out_len = 0;
	conn_fail(s, c, 408, "the request did not arrive within %d ms", s->io_timeout_ms);
	if (c->state == TLM_CONN_WRITE)
		c->deadline_ms = tlm_now_ms() + TLM_DRAIN_MS;
}

static void accept_all(struct tlm_http *s)
{
	while (s->n_conns < TLM_HTTP_MAX_CONNS) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char host[48], serv[8];
		struct tlm_conn *c;
		int fd = accept4(s->listen_fd, (struct sockaddr *)&ss, &sl,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				/* Out of descriptors or memory: back off rather than spin. */
				fprintf(stderr, "tinylm: accept: %s\n", strerror(errno));
				s->accept_pause_until = tlm_now_ms() + TLM_ACCEPT_PAUSE_MS;
			}
			return;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			s->accept_pause_until = tlm_now_ms() + TLM_ACCEPT_PAUSE_MS;
			return;
		}
		c->fd = fd;
		c->state = TLM_CONN_READ;
		c->start_us = now_us();
		c->deadline_ms = c->start_us / 1000 + s->io_timeout_ms;
		if (getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv, sizeof(serv),
				NI_NUMERICHOST | NI_NUMERICSERV) == 0)
			snprintf(c->peer, sizeof(c->peer), strchr(host, ':') ? "[%s]:%s" : "%s:%s",
				 host, serv);
		else
			snprintf(c->peer, sizeof(c->peer), "?");
		s->conns[s->n_conns++] = c;
	}
}

static short conn_events(const struct tlm_conn *c)
{
	short ev = 0;

	if (c->state == TLM_CONN_READ || c->state == TLM_CONN_DRAIN)
		ev |= POLLIN;
	if (c->out_off < c->out_len)
		ev |= POLLOUT;
	return ev;
}

int tlm_http_run(struct tlm_http *s)
{
	struct pollfd pfd[TLM_HTTP_MAX_CONNS + 2];
	int ret = 0;

	for (;;) {
		int64_t now = tlm_now_ms(), next = -1;
		nfds_t n = 0;
		int timeout, accepting;

		accepting = s->n_conns < TLM_HTTP_MAX_CONNS && now >= s->accept_pause_until;
		pfd[n++] = (struct pollfd){.fd = s->wake_fd, .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = accepting ? s->listen_fd : -1, .events = POLLIN};
		if (s->stall_at_ms && now >= s->stall_at_ms) {
			struct timespec ts = {s->stall_ms / 1000,
					      (long)(s->stall_ms % 1000) * 1000000L};

			fprintf(stderr, "tinylm: stalling for %d ms (--stall-for)\n", s->stall_ms);
			s->stall_at_ms = 0;
			/* a signal cuts the stall short: stopping must stay prompt */
			nanosleep(&ts, NULL);
			fprintf(stderr, "tinylm: stall over\n");
			continue;
		}
		if (s->stall_at_ms && (next < 0 || s->stall_at_ms < next))
			next = s->stall_at_ms;
		for (size_t i = 0; i < s->n_conns; i++) {
			struct tlm_conn *c = s->conns[i];

			pfd[n++] = (struct pollfd){.fd = c->fd, .events = conn_events(c)};
			if (next < 0 || c->deadline_ms < next)
				next = c->deadline_ms;
			if (c->ev && (next < 0 || c->ev_due_ms < next))
				next = c->ev_due_ms;
		}
		if (!accepting && s->n_conns < TLM_HTTP_MAX_CONNS &&
		    (next < 0 || s->accept_pause_until < next))
			next = s->accept_pause_until;
		timeout = next < 0 ? -1 : next <= now ? 0 : (int)(next - now);
		if (poll(pfd, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			ret = rh_error_set_errno(RH_EIO, errno, "poll");
			goto done;
		}
		if (pfd[0].revents) {
			char junk[64];

			while (read(s->wake_fd, junk, sizeof(junk)) > 0)
				;
			ret = s->wake(s->ctx);
			if (ret != 0)
				goto done;
		}
		now = tlm_now_ms();
		for (size_t i = 0; i < s->n_conns; i++) {
			struct tlm_conn *c = s->conns[i];
			short rev = pfd[i + 2].revents;

			if (rev & (POLLIN | POLLHUP | POLLERR)) {
				if (c->state == TLM_CONN_READ)
					conn_read(s, c);
				else if (c->state == TLM_CONN_DRAIN)
					conn_drain(c);
			}
			if (c->state == TLM_CONN_WRITE && c->ev && now >= c->ev_due_ms) {
				if (conn_pump_events(c, now) < 0)
					c->state = TLM_CONN_DEAD;
				else
					c->deadline_ms = now + s->io_timeout_ms;
			}
			if (c->state != TLM_CONN_DEAD && c->out_off < c->out_len)
				conn_write(s, c);
			if (c->state != TLM_CONN_DEAD && now >= c->deadline_ms)
				conn_timeout(s, c);
			if (c->state != TLM_CONN_DEAD && c->out_off < c->out_len)
				conn_write(s, c);
		}
		for (size_t i = 0; i < s->n_conns;) {
			if (s->conns[i]->state == TLM_CONN_DEAD) {
				conn_free(s->conns[i]);
				s->conns[i] = s->conns[--s->n_conns];
			} else {
				i++;
			}
		}
		if (pfd[1].revents & POLLIN)
			accept_all(s);
	}
done:
	return ret;
}

void tlm_http_stall(struct tlm_http *s, int64_t at_ms, int ms)
{
	s->stall_at_ms = at_ms > 0 ? at_ms : 1;
	s->stall_ms = ms;
}

void tlm_http_release(struct tlm_http *s)
{
	for (size_t i = 0; i < s->n_conns; i++)
		conn_free(s->conns[i]);
	s->n_conns = 0;
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	s->listen_fd = -1;
}
