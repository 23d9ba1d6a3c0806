/*
 * step_load.c - the load_probe step: an open-loop load test of the restored
 * service, with honest percentiles, SLO gates and, for streamed completions,
 * time to first token.
 *
 * A stack that answers one health probe may still be useless under load, so
 * this step sends requests at a constant arrival rate for a while and judges
 * the latencies. The schedule is fixed in advance: request i is due at
 * start + i / rate_per_s, whatever happened to the ones before it (open
 * loop), and its latency is counted from that intended time, as wrk2 does.
 * A closed-loop tool (wrk, hey, ab) waits for an answer before sending the
 * next request on a connection, so a two-second stall delays the requests
 * it should have sent without ever timing them: the stall shows as a few
 * slow requests instead of every request due during it (coordinated
 * omission). Here a request that finds every connection busy waits in the
 * schedule and still counts from its intended time; such sends are counted
 * as late_sends, so a probe too small for its rate says so.
 *
 * One thread drives everything through libcurl's multi_socket interface:
 * `connections` easy handles, each reused so its keep-alive connection
 * stays open, epoll on the sockets curl asks for with a nanosecond
 * timeout to the next intended send (curl_multi_poll's milliseconds would
 * add up to a millisecond of our own lateness to every latency), and the
 * cancellation token's fd. No thread per request, no sample kept: every
 * latency goes into a log-linear histogram (hist.h).
 *
 * A response counts as an error when the transfer failed, timed out, had
 * the wrong status, or (expect_json) the wrong body: a restored service
 * that answers fast with the wrong model is not restored. With "stream":
 * true the body is parsed as server-sent events as it arrives; each event
 * must match expect_json, the first non-empty token marks the time to first
 * token, and a stream must end with data: [DONE].
 */
#include "clock.h"
#include "engine.h"
#include "error.h"
#include "global.h"
#include "hist.h"
#include "load.h"
#include "sse.h"
#include "step_run.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <time.h>

#include "banned.h"

#define LOAD_BODY_MAX (1024 * 1024) /* response bytes kept for expect_json */
#define LOAD_EVENT_MAX (256 * 1024) /* one streamed event */
#define LOAD_PROGRESS_S 1.0

struct load;

struct lreq {
	struct load *L;
	CURL *easy;
	uint64_t index; /* in the schedule */
	double intended;
	bool measured;
	bool late;
	/* the answer */
	char *body;
	size_t len, cap;
	bool truncated;
	struct rh_sse sse;
	bool stream_bad;
	char why[256];
	unsigned tokens;
	double first_token, last_token;
};

struct load {
	struct rh_step_ctx *ctx;
	CURLM *multi;
	struct curl_slist *headers;
	char *body;
	size_t body_len;
	char *url_shown;
	const json_t *expect_status, *expect_json;
	bool stream;
	double rate, warmup, duration, req_timeout;
	unsigned conns;

	struct lreq *reqs;
	unsigned *free_slots;
	unsigned n_free;
	int ep; /* epoll: curl's sockets and the cancellation fd */
	bool no_pwait2;
	struct lfd *fds; /* by fd number */
	size_t n_fds;
	double timer_at; /* curl's timer, absolute; < 0 when none */

	double start, window_start;
	uint64_t total, warm_count, next;
	int64_t blocked_hi; /* highest index that was due while no connection was free */

	uint64_t requests, errors, timeouts, late_sends, tokens;
	double last_done;
	struct rh_hist *lat, *ttft, *tps; /* ns, ns, tokens/s x 1000 */
	char first_error[300];
	uint64_t first_error_count;
};

static double now_s(void)
{
	return rh_clock_mono();
}

/* ---- the answer -------------------------------------------------------- */

static void req_bad(struct lreq *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void req_bad(struct lreq *r, const char *fmt, ...)
{
	va_list ap;

	if (r->stream_bad)
		return;
	r->stream_bad = true;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
}

/* The token text of an OpenAI-style chunk: completions put it in
 * choices[0].text, chat completions in choices[0].delta.content. */
static const char *chunk_text(const json_t *doc)
{
	const json_t *c = json_array_get(json_object_get(doc, "choices"), 0);
	const char *t = json_string_value(json_object_get(c, "text"));

	if (!t)
		t = json_string_value(json_object_get(json_object_get(c, "delta"), "content"));
	return t;
}

static int on_event(void *user, const char *event, const char *data, size_t len)
{
	struct lreq *r = user;
	json_error_t jerr;
	json_t *doc;
	const char *text;
	char why[200];

	(void)event;
	if (strcmp(data, "[DONE]") == 0)
		return 0;
	doc = json_loadb(data, len, 0, &jerr);
	if (!doc) {
		req_bad(r, "a streamed event is not json (%s)", jerr.text);
		return 0;
	}
	if (r->L->expect_json && !rh_http_json_match(r->L->expect_json, doc, "", why, sizeof(why)))
		req_bad(r, "streamed event %u: %s", r->sse.events, why);
	text = chunk_text(doc);
	if (text && *text) {
		double t = now_s();

		if (!r->tokens)
			r->first_token = t;
		r->last_token = t;
		r->tokens++;
	}
	json_decref(doc);
	return 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *user)
{
	struct lreq *r = user;
	size_t n = size * nmemb;

	if (r->L->stream) {
		int rc = rh_sse_feed(&r->sse, ptr, n);

		if (rc < 0)
			req_bad(r, "%s", rh_error_last());
		return n;
	}
	if (!r->L->expect_json)
		return n; /* nothing to judge: do not keep it */
	if (r->truncated || r->len + n > LOAD_BODY_MAX) {
		r->truncated = true;
		return n;
	}
	if (r->len + n + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		char *d;

		while (cap < r->len + n + 1)
			cap *= 2;
		d = realloc(r->body, cap);
		if (!d)
			return 0;
		r->body = d;
		r->cap = cap;
	}
	memcpy(r->body + r->len, ptr, n);
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

/* Why the answer is wrong into `why`, or false when it is right. */
static bool answer_wrong(struct lreq *r, long status, char *why, size_t size)
{
	struct load *L = r->L;
	char es[64], jw[200];
	json_error_t jerr;
	json_t *doc;
	bool ok;

	if (!rh_http_status_match(L->expect_status, status)) {
		rh_http_expected_status(es, sizeof(es), L->expect_status);
		snprintf(why, size, "status %ld (expected %s)", status, es);
		return true;
	}
	if (L->stream) {
		if (!r->stream_bad && rh_sse_finish(&r->sse) < 0)
			req_bad(r, "%s", rh_error_last());
		if (!r->stream_bad && !r->sse.done)
			req_bad(r, "the stream ended without data: [DONE] (%u events)",
				r->sse.events);
		if (r->stream_bad)
			snprintf(why, size, "status %ld, %s", status, r->why);
		return r->stream_bad;
	}
	if (!L->expect_json)
		return false;
	if (r->truncated) {
		snprintf(why, size, "status %ld, response larger than %d bytes", status,
			 LOAD_BODY_MAX);
		return true;
	}
	doc = json_loadb(r->body ? r->body : "", r->len, JSON_DECODE_ANY, &jerr);
	if (!doc) {
		snprintf(why, size, "status %ld, response is not json (%s)", status, jerr.text);
		return true;
	}
	ok = rh_http_json_match(L->expect_json, doc, "", jw, sizeof(jw));
	json_decref(doc);
	if (!ok)
		snprintf(why, size, "status %ld, %s", status, jw);
	return !ok;
}

static void note_error(struct load *L, const char *why)
{
	if (!L->first_error[0])
		snprintf(L->first_error, sizeof(L->first_error), "%s", why);
	L->first_error_count++;
}

static uint64_t to_ns(double s)
{
	return s <= 0 ? 0 : (uint64_t)llround(s * 1e9);
}

/* A transfer finished: judge it, count it, free its slot. */
static void req_done(struct load *L, unsigned slot, CURLcode code)
{
	struct lreq *r = &L->reqs[slot];
	double t = now_s();
	long status = 0;
	char why[300];
	bool bad = false;

	curl_multi_remove_handle(L->multi, r->easy);
	if (code == CURLE_OK) {
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		bad = answer_wrong(r, status, why, sizeof(why));
	} else {
		bad = true;
		snprintf(why, sizeof(why), "%s", curl_easy_strerror(code));
	}
	if (r->measured) {
		L->requests++;
		L->last_done = t;
		if (r->late)
			L->late_sends++;
		if (code == CURLE_OPERATION_TIMEDOUT)
			L->timeouts++;
		if (bad) {
			L->errors++;
			note_error(L, why);
		}
		/* a latency is an exchange that completed, right or wrong */
		if (code == CURLE_OK)
			rh_hist_record(L->lat, to_ns(t - r->intended));
		if (L->stream && !bad && r->tokens) {
			rh_hist_record(L->ttft, to_ns(r->first_token - r->intended));
			L->tokens += r->tokens;
			if (r->tokens > 1 && r->last_token > r->first_token)
				rh_hist_record(L->tps,
					       (uint64_t)llround((r->tokens - 1) /
								 (r->last_token - r->first_token) *
								 1000.0));
		}
	}
	rh_sse_release(&r->sse);
	L->free_slots[L->n_free++] = slot;
}

/* ---- curl's sockets and timer ------------------------------------------ */

/* The events fd is registered with in the epoll set (0: not registered),
 * and whether curl wants it now. Per request curl removes the socket when a
 * transfer ends and adds it back when the next one starts on the same
 * connection; doing that in the kernel would cost two epoll_ctl calls per
 * request, so a socket curl let go stays registered, and one that reports
 * events nobody asked for is removed then. */
struct lfd {
	uint32_t registered;
	bool wanted;
};

static struct lfd *fd_state(struct load *L, int fd)
{
	if (fd < 0)
		return NULL;
	if ((size_t)fd >= L->n_fds) {
		size_t n = L->n_fds ? L->n_fds : 64;
		struct lfd *nf;

		while (n <= (size_t)fd)
			n *= 2;
		nf = realloc(L->fds, n * sizeof(*nf));
		if (!nf)
			return NULL;
		memset(nf + L->n_fds, 0, (n - L->n_fds) * sizeof(*nf));
		L->fds = nf;
		L->n_fds = n;
	}
	return &L->fds[fd];
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *user, void *sockp)
{
	struct load *L = user;
	struct lfd *st = fd_state(L, fd);
	struct epoll_event ev = {.data.fd = fd};

	(void)easy;
	(void)sockp;
	if (!st)
		return -1;
	if (what == CURL_POLL_REMOVE) {
		/* the connection may carry the next request: keep it registered */
		st->wanted = false;
		return 0;
	}
	st->wanted = true;
	ev.events =
	    ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
	if (st->registered == ev.events)
		return 0;
	/* on_close forgets closed sockets; ADD still falls back to MOD */
	if (st->registered && epoll_ctl(L->ep, EPOLL_CTL_MOD, fd, &ev) == 0) {
		st->registered = ev.events;
		return 0;
	}
	if (epoll_ctl(L->ep, EPOLL_CTL_ADD, fd, &ev) < 0 &&
	    !(errno == EEXIST && epoll_ctl(L->ep, EPOLL_CTL_MOD, fd, &ev) == 0))
		return -1;
	st->registered = ev.events;
	return 0;
}

/* curl closes a socket: it leaves the epoll set with it, and its number
 * may come back for a new connection. */
static int on_close(void *user, curl_socket_t fd)
{
	struct load *L = user;

	if ((size_t)fd < L->n_fds)
		L->fds[fd] = (struct lfd){0};
	return close(fd);
}

/* An event on a socket curl does not want now (an idle connection the
 * server closed): take it out of the set rather than wake on it again. */
static bool fd_unwanted(struct load *L, int fd)
{
	struct lfd *st = (size_t)fd < L->n_fds ? &L->fds[fd] : NULL;

	if (st && st->wanted)
		return false;
	epoll_ctl(L->ep, EPOLL_CTL_DEL, fd, NULL);
	if (st)
		st->registered = 0;
	return true;
}

static int on_timer(CURLM *multi, long timeout_ms, void *user)
{
	struct load *L = user;

	(void)multi;
	L->timer_at = timeout_ms < 0 ? -1 : now_s() + (double)timeout_ms / 1000.0;
	return 0;
}

static int drain_done(struct load *L)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(L->multi, &left))) {
		struct lreq *r = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (!r)
			return rh_error_set(RH_ERROR, "a finished transfer has no request");
		req_done(L, (unsigned)(r - L->reqs), msg->data.result);
	}
	return 0;
}

/* ---- setup ------------------------------------------------------------- */

static int setup_request(struct load *L)
{
	json_t *spec = L->ctx->spec;
	json_t *headers = json_object_get(spec, "headers");
	json_t *body = json_object_get(spec, "body");
	bool has_ctype = false;
	const char *key;
	json_t *val;
	struct curl_slist *l;

	json_object_foreach(headers, key, val)
	{
		const char *v = json_string_value(val);
		size_t n = strlen(key) + (v ? strlen(v) : 0) + 4;
		char *line = malloc(n);

		if (!line)
			return rh_error_set(RH_ENOMEM, "out of memory");
		if (v && v[0])
			snprintf(line, n, "%s: %s", key, v);
		else
			snprintf(line, n, "%s;", key);
		if (strcasecmp(key, "content-type") == 0)
			has_ctype = true;
		l = curl_slist_append(L->headers, line);
		free(line);
		if (!l)
			return rh_error_set(RH_ENOMEM, "out of memory");
		L->headers = l;
	}
	if (json_is_string(body)) {
		L->body_len = json_string_length(body);
		L->body = malloc(L->body_len + 1);
		if (!L->body)
			return rh_error_set(RH_ENOMEM, "out of memory");
		memcpy(L->body, json_string_value(body), L->body_len + 1);
	} else if (json_is_object(body) || json_is_array(body)) {
		json_t *copy = json_deep_copy(body);

		/* "stream": true on the step asks the server to stream */
		if (!copy || (L->stream && json_is_object(copy) &&
			      json_object_set_new(copy, "stream", json_true()) < 0)) {
			json_decref(copy);
			return rh_error_set(RH_ENOMEM, "out of memory");
		}
		L->body = json_dumps(copy, JSON_COMPACT);
		json_decref(copy);
		if (!L->body)
			return rh_error_set(RH_ENOMEM, "out of memory");
		L->body_len = strlen(L->body);
		if (!has_ctype) {
			l = curl_slist_append(L->headers, "Content-Type: application/json");
			if (!l)
				return rh_error_set(RH_ENOMEM, "out of memory");
			L->headers = l;
		}
	}
	l = curl_slist_append(L->headers, "Expect:");
	if (!l)
		return rh_error_set(RH_ENOMEM, "out of memory");
	L->headers = l;
	return 0;
}

static int setup_handle(struct load *L, struct lreq *r)
{
	const char *url = json_string_value(json_object_get(L->ctx->spec, "url"));
	const char *method = json_string_value(json_object_get(L->ctx->spec, "method"));
	CURL *h = curl_easy_init();
	long ms = (long)ceil(L->req_timeout * 1000.0);

	if (!h)
		return rh_error_set(RH_ENOMEM, "cannot create a curl handle");
	r->easy = h;
	r->L = L;
	if (!method)
		method = "GET";
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PRIVATE, (char *)r);
	curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, on_close);
	curl_easy_setopt(h, CURLOPT_CLOSESOCKETDATA, L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, L->headers);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "rehydra/" RH_VERSION);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms < 1 ? 1L : ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ms < 1 ? 1L : ms);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else {
		if (strcmp(method, "POST") == 0)
			curl_easy_setopt(h, CURLOPT_POST, 1L);
		else
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
		if (L->body || strcmp(method, "POST") == 0) {
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, L->body ? L->body : "");
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)L->body_len);
		}
	}
	return 0;
}

static double num(const json_t *spec, const char *key, double dflt)
{
	const json_t *v = json_object_get(spec, key);

	return json_is_number(v) ? json_number_value(v) : dflt;
}

static int load_setup(struct load *L)
{
	json_t *spec = L->ctx->spec;
	const char *url = json_string_value(json_object_get(spec, "url"));
	const json_t *jstream = json_object_get(spec, "stream");
	const json_t *body = json_object_get(spec, "body");
	int rc;

	if (!url || !url[0])
		return rh_error_set(RH_EINVAL, "step '%s': url must be a non-empty string",
				    L->ctx->step->id);
	L->url_shown = rh_http_url_for_messages(url);
	if (!L->url_shown)
		return rh_error_set(RH_ENOMEM, "out of memory");
	L->expect_status = json_object_get(spec, "expect_status");
	L->expect_json = json_object_get(spec, "expect_json");
	/* a body that asks for a stream gets one parsed, with or without the key */
	L->stream =
	    json_is_true(jstream) || (!jstream && json_is_true(json_object_get(body, "stream")));
	L->rate = num(spec, "rate_per_s", 0);
	L->duration = num(spec, "duration_s", 0);
	L->warmup = num(spec, "warmup_s", 0);
	L->req_timeout = num(spec, "request_timeout_s", 5);
	L->conns = (unsigned)num(spec, "connections", RH_LOAD_DEFAULT_CONNECTIONS);
	if (!(L->rate > 0) || !(L->duration > 0) || L->warmup < 0 || L->conns < 1)
		return rh_error_set(RH_EINVAL,
				    "step '%s': rate_per_s, duration_s and "
				    "connections must be positive",
				    L->ctx->step->id);
	L->warm_count = (uint64_t)ceil(L->warmup * L->rate - 1e-9);
	L->total = (uint64_t)ceil((L->warmup + L->duration) * L->rate - 1e-9);
	if (L->total <= L->warm_count)
		L->total = L->warm_count + 1;
	if ((rc = rh_artifacts_global_check()) < 0)
		return rc;
	if ((rc = rh_hist_new(&L->lat)) < 0 || (rc = rh_hist_new(&L->ttft)) < 0 ||
	    (rc = rh_hist_new(&L->tps)) < 0)
		return rc;
	if ((rc = setup_request(L)) < 0)
		return rc;
	L->ep = epoll_create1(EPOLL_CLOEXEC);
	if (L->ep < 0)
		return rh_error_set_errno(RH_ERROR, errno, "step '%s': epoll", L->ctx->step->id);
	L->multi = curl_multi_init();
	L->reqs = calloc(L->conns, sizeof(*L->reqs));
	L->free_slots = calloc(L->conns, sizeof(*L->free_slots));
	if (!L->multi || !L->reqs || !L->free_slots)
		return rh_error_set(RH_ENOMEM, "out of memory for %u connections", L->conns);
	curl_multi_setopt(L->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(L->multi, CURLMOPT_SOCKETDATA, L);
	curl_multi_setopt(L->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(L->multi, CURLMOPT_TIMERDATA, L);
	curl_multi_setopt(L->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)L->conns);
	curl_multi_setopt(L->multi, CURLMOPT_MAXCONNECTS, (long)L->conns);
	/* one request per connection at a time, also over HTTP/2: `connections`
	 * means connections, as it does for wrk and hey */
	curl_multi_setopt(L->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
	L->timer_at = -1;
	for (unsigned i = 0; i < L->conns; i++) {
		if ((rc = setup_handle(L, &L->reqs[i])) < 0)
			return rc;
		L->free_slots[L->n_free++] = L->conns - 1 - i;
	}
	L->blocked_hi = -1;
	return 0;
}

static void load_release(struct load *L)
{
	for (unsigned i = 0; L->reqs && i < L->conns; i++) {
		struct lreq *r = &L->reqs[i];

		if (r->easy) {
			if (L->multi)
				curl_multi_remove_handle(L->multi, r->easy);
			curl_easy_cleanup(r->easy);
		}
		rh_sse_release(&r->sse);
		free(r->body);
	}
	if (L->multi)
		curl_multi_cleanup(L->multi);
	curl_slist_free_all(L->headers);
	free(L->reqs);
	free(L->free_slots);
	if (L->ep >= 0)
		close(L->ep);
	free(L->fds);
	free(L->body);
	free(L->url_shown);
	rh_hist_free(L->lat);
	rh_hist_free(L->ttft);
	rh_hist_free(L->tps);
}

/* ---- the schedule ------------------------------------------------------ */

static double intended(const struct load *L, uint64_t i)
{
	return L->start + (double)i / L->rate;
}

static int send_one(struct load *L, double t)
{
	unsigned slot = L->free_slots[--L->n_free];
	struct lreq *r = &L->reqs[slot];

	r->index = L->next++;
	r->intended = intended(L, r->index);
	r->measured = r->index >= L->warm_count;
	r->late = (int64_t)r->index <= L->blocked_hi;
	r->len = 0;
	r->truncated = false;
	r->stream_bad = false;
	r->why[0] = '\0';
	r->tokens = 0;
	r->first_token = r->last_token = 0;
	(void)t;
	if (L->stream)
		rh_sse_init(&r->sse, LOAD_EVENT_MAX, on_event, r);
	if (curl_multi_add_handle(L->multi, r->easy) != CURLM_OK) {
		L->free_slots[L->n_free++] = slot;
		return rh_error_set(RH_ERROR, "cannot start a request to %s", L->url_shown);
	}
	return 0;
}

static void report_progress(struct load *L, double t)
{
	char text[160];
	double p99 = (double)rh_hist_percentile(L->lat, 99) / 1e6;

	if (!L->ctx->progress)
		return;
	if (t < L->window_start)
		snprintf(text, sizeof(text), "warming up, %" PRIu64 " requests sent", L->next);
	else
		snprintf(text, sizeof(text),
			 "%.0f/%.0f s, %" PRIu64 " requests, %" PRIu64 " errors, p99 %.2f ms",
			 t - L->window_start, L->duration, L->requests, L->errors, p99);
	L->ctx->progress(L->ctx->progress_user, L->ctx, text);
}

/* Waits for curl's sockets or the cancellation until `wake` (absolute).
 * epoll_pwait2 takes nanoseconds; kernels before 5.11 lack it, and then
 * the wait is rounded up to the next millisecond. */
static int wait_events(struct load *L, double wake, struct epoll_event *evs, int max)
{
	double left = wake - now_s();
	struct timespec ts;
	int k;

	if (left < 0)
		left = 0;
	ts.tv_sec = (time_t)left;
	ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
	k = L->no_pwait2 ? -1 : epoll_pwait2(L->ep, evs, max, &ts, NULL);
	if (k < 0 && errno == ENOSYS) {
		L->no_pwait2 = true;
		k = epoll_wait(L->ep, evs, max, (int)ceil(left * 1000));
	} else if (k < 0 && L->no_pwait2) {
		k = epoll_wait(L->ep, evs, max, (int)ceil(left * 1000));
	}
	return k;
}

static int run_schedule(struct load *L)
{
	struct rh_step_ctx *ctx = L->ctx;
	struct epoll_event evs[64];
	int cancel_fd = ctx->cancel ? rh_cancel_fd(ctx->cancel) : -1;
	double next_progress;
	int running = 0, rc = 0;

	L->start = now_s();
	L->window_start = intended(L, L->warm_count);
	next_progress = L->start + LOAD_PROGRESS_S;
	if (cancel_fd >= 0) {
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = cancel_fd};

		if (epoll_ctl(L->ep, EPOLL_CTL_ADD, cancel_fd, &ev) < 0)
			return rh_error_set_errno(RH_ERROR, errno, "step '%s': epoll",
						  ctx->step->id);
	}
	while (L->next < L->total || L->n_free < L->conns) {
		double t = now_s(), wake = t + 0.25;
		int k;

		if (t >= ctx->deadline) {
			rc = rh_error_set(RH_ETIMEOUT,
					  "step '%s': the load test against %s did not finish "
					  "within the step's timeout (%" PRIu64 " of %" PRIu64
					  " requests sent); raise timeout_s or lower duration_s",
					  ctx->step->id, L->url_shown, L->next, L->total);
			goto done;
		}
		while (L->next < L->total && intended(L, L->next) <= t) {
			if (!L->n_free) {
				/* every connection busy: the due ones wait, counted as late */
				uint64_t due = (uint64_t)floor((t - L->start) * L->rate);

				if (due >= L->total)
					due = L->total - 1;
				if ((int64_t)due > L->blocked_hi)
					L->blocked_hi = (int64_t)due;
				break;
			}
			if ((rc = send_one(L, t)) < 0)
				goto done;
		}
		/* a new transfer sets curl's timer to now: start it without a wait */
		if (L->timer_at >= 0 && now_s() >= L->timer_at) {
			L->timer_at = -1;
			curl_multi_socket_action(L->multi, CURL_SOCKET_TIMEOUT, 0, &running);
			if ((rc = drain_done(L)) < 0)
				goto done;
		}
		if (L->next < L->total && L->n_free) {
			double due = intended(L, L->next);

			if (due < wake)
				wake = due;
		}
		if (L->timer_at >= 0 && L->timer_at < wake)
			wake = L->timer_at;
		if (t >= next_progress) {
			report_progress(L, t);
			next_progress = t + LOAD_PROGRESS_S;
		}
		k = wait_events(L, wake, evs, (int)(sizeof(evs) / sizeof(evs[0])));
		if (k < 0 && errno != EINTR) {
			rc = rh_error_set_errno(RH_ERROR, errno, "step '%s': epoll", ctx->step->id);
			goto done;
		}
		if (ctx->cancel && rh_cancel_is_fired(ctx->cancel)) {
			rc = rh_error_set(RH_ECANCELLED,
					  "step '%s': cancelled during the load test "
					  "against %s",
					  ctx->step->id, L->url_shown);
			goto done;
		}
		for (int i = 0; i < k; i++) {
			int ev = 0;

			if (evs[i].data.fd == cancel_fd || fd_unwanted(L, evs[i].data.fd))
				continue;
			if (evs[i].events & EPOLLIN)
				ev |= CURL_CSELECT_IN;
			if (evs[i].events & EPOLLOUT)
				ev |= CURL_CSELECT_OUT;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				ev |= CURL_CSELECT_ERR;
			curl_multi_socket_action(L->multi, evs[i].data.fd, ev, &running);
		}
		if (L->timer_at >= 0 && now_s() >= L->timer_at) {
			L->timer_at = -1;
			curl_multi_socket_action(L->multi, CURL_SOCKET_TIMEOUT, 0, &running);
		}
		if ((rc = drain_done(L)) < 0)
			goto done;
	}
done:
	return rc;
}

/* ---- results ----------------------------------------------------------- */

static json_t *ms3(double ms)
{
	return json_real(round(ms * 1000.0) / 1000.0);
}

static double pct_ms(const struct rh_hist *h, double p)
{
	return (double)rh_hist_percentile(h, p) / 1e6;
}

static int put(json_t *o, const char *k, json_t *v)
{
	return v ? json_object_set_new(o, k, v) : -1;
}

struct slo_key {
	const char *key;
	bool lower; /* the bound is a minimum */
};

static const struct slo_key slo_keys[] = {
    {"p50_ms", false},	    {"p95_ms", false},	   {"p99_ms", false},	     {"p999_ms", false},
    {"ttft_p95_ms", false}, {"error_rate", false}, {"min_rate_per_s", true}, {NULL, false},
};

static double measured_for(const json_t *out, const char *key)
{
	const char *from = strcmp(key, "min_rate_per_s") == 0 ? "achieved_rate_per_s" : key;
	const json_t *v = json_object_get(out, from);

	return json_is_number(v) ? json_number_value(v) : NAN;
}

/* Fills outputs; judges the slo into `missed` ("" when held). */
static int results(struct load *L, char *missed, size_t size)
{
	json_t *out = L->ctx->outputs, *slo = json_object_get(L->ctx->spec, "slo");
	double window = L->duration;
	double achieved, error_rate;
	size_t used = 0;
	int err = 0;

	missed[0] = '\0';
	if (L->last_done - L->window_start > window)
		window = L->last_done - L->window_start;
	achieved = (double)L->requests / window;
	error_rate = L->requests ? (double)L->errors / (double)L->requests : 0;
	err |= put(out, "requests", json_integer((json_int_t)L->requests));
	err |= put(out, "errors", json_integer((json_int_t)L->errors));
	err |= put(out, "timeouts", json_integer((json_int_t)L->timeouts));
	err |= put(out, "late_sends", json_integer((json_int_t)L->late_sends));
	err |= put(out, "error_rate", json_real(round(error_rate * 1e6) / 1e6));
	err |= put(out, "rate_per_s", json_real(L->rate));
	err |= put(out, "connections", json_integer(L->conns));
	err |= put(out, "achieved_rate_per_s", json_real(round(achieved * 100) / 100));
	err |= put(out, "p50_ms", ms3(pct_ms(L->lat, 50)));
	err |= put(out, "p90_ms", ms3(pct_ms(L->lat, 90)));
	err |= put(out, "p95_ms", ms3(pct_ms(L->lat, 95)));
	err |= put(out, "p99_ms", ms3(pct_ms(L->lat, 99)));
	err |= put(out, "p999_ms", ms3(pct_ms(L->lat, 99.9)));
	err |= put(out, "max_ms", ms3((double)(L->lat->total ? L->lat->max : 0) / 1e6));
	if (L->stream) {
		err |= put(out, "ttft_p50_ms", ms3(pct_ms(L->ttft, 50)));
		err |= put(out, "ttft_p95_ms", ms3(pct_ms(L->ttft, 95)));
		err |= put(out, "ttft_p99_ms", ms3(pct_ms(L->ttft, 99)));
		err |= put(out, "tokens", json_integer((json_int_t)L->tokens));
		err |= put(out, "tokens_per_s",
			   json_real(round((double)L->tokens / window * 10) / 10));
		err |= put(out, "tokens_per_s_per_request",
			   json_real(round((double)rh_hist_percentile(L->tps, 50) / 100) / 10));
	}
	if (L->first_error[0])
		err |= put(out, "first_error", json_string(L->first_error));
	if (err)
		return rh_error_set(RH_ENOMEM, "out of memory");
	if (!json_is_object(slo))
		return 0;
	for (const struct slo_key *k = slo_keys; k->key; k++) {
		const json_t *b = json_object_get(slo, k->key);
		double bound, value;
		bool held;
		int w;

		if (!json_is_number(b))
			continue;
		bound = json_number_value(b);
		value = measured_for(out, k->key);
		if (strcmp(k->key, "ttft_p95_ms") == 0 && !L->stream)
			value = NAN;
		held = !isnan(value) && L->requests > 0 &&
		       (k->lower ? value >= bound : value <= bound);
		if (held)
			continue;
		if (isnan(value) || L->requests == 0)
			w = snprintf(missed + used, size - used, "%s%s not measured (slo %s %g)",
				     used ? ", " : "", k->key, k->lower ? ">=" : "<=", bound);
		else if (k->lower)
			w = snprintf(missed + used, size - used,
				     "%sachieved_rate_per_s %g under min_rate_per_s %g",
				     used ? ", " : "", value, bound);
		else
			w = snprintf(missed + used, size - used, "%s%s %g over the slo %g",
				     used ? ", " : "", k->key, value, bound);
		if (w > 0 && (size_t)w < size - used)
			used += (size_t)w;
	}
	if (put(out, "slo_met", json_boolean(used == 0)) < 0)
		return rh_error_set(RH_ENOMEM, "out of memory");
	return 0;
}

int rh_step_load_probe_run(struct rh_step_ctx *ctx)
{
	struct load L = {.ctx = ctx, .ep = -1};
	char missed[1024];
	int rc;

	rc = load_setup(&L);
	if (rc < 0)
		goto done;
	rc = run_schedule(&L);
	if (rc == RH_ECANCELLED)
		goto done;
	/* a timeout still reports what was measured */
	if (results(&L, missed, sizeof(missed)) < 0) {
		rc = RH_ENOMEM;
		goto done;
	}
	if (rc < 0)
		goto done;
	if (missed[0]) {
		rc = rh_error_set(RH_ERROR,
				  "step '%s': slo missed against %s: %s (%" PRIu64
				  " requests at %g/s, %" PRIu64 " errors%s%s)",
				  ctx->step->id, L.url_shown, missed, L.requests, L.rate, L.errors,
				  L.first_error[0] ? "; first: " : "", L.first_error);
		goto done;
	}
done:
	load_release(&L);
	return rc;
}

/* ---- shared with the CLI ----------------------------------------------- */

static double out_num(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);

	return json_is_number(v) ? json_number_value(v) : NAN;
}

void rh_load_headline(char *buf, size_t size, const json_t *outputs)
{
	double req = out_num(outputs, "requests");
	size_t used = 0;
	int w;

	buf[0] = '\0';
	if (isnan(req))
		return;
	w = snprintf(buf, size,
		     "%.0f req at %.1f/s  p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  "
		     "%.0f errors",
		     req, out_num(outputs, "achieved_rate_per_s"), out_num(outputs, "p50_ms"),
		     out_num(outputs, "p99_ms"), out_num(outputs, "p999_ms"),
		     out_num(outputs, "errors"));
	if (w > 0 && (size_t)w < size)
		used = (size_t)w;
	if (!isnan(out_num(outputs, "late_sends")) && out_num(outputs, "late_sends") > 0 &&
	    used < size) {
		w = snprintf(buf + used, size - used, "  %.0f late",
			     out_num(outputs, "late_sends"));
		if (w > 0 && (size_t)w < size - used)
			used += (size_t)w;
	}
	if (!isnan(out_num(outputs, "ttft_p95_ms")) && used < size)
		snprintf(buf + used, size - used, "  ttft p95 %.2f ms  %.0f tok/s",
			 out_num(outputs, "ttft_p95_ms"), out_num(outputs, "tokens_per_s"));
}
