/*
 * step_http.c - the http_probe step: poll a URL until it answers as expected.
 *
 * This is the step that usually ends the RTO: it proves the recreated stack
 * serves, and serves the right model (expect_json on the model's sha256),
 * not merely that a port is open. It polls every interval_s until the status
 * and the JSON match or the attempt's deadline passes; on a timeout the
 * message says what the last answer was and which field did not match, so a
 * failed drill explains itself.
 *
 * One curl easy handle per attempt, reused across polls (keep-alive), driven
 * through a multi handle so curl_multi_poll can also watch the cancellation
 * token: an interrupt wakes the probe at once, even while it waits for a
 * slow connect. TLS verification stays on; header values are never put in
 * messages (they carry tokens), and URLs are shown without userinfo/query.
 */
#include "clock.h"
#include "engine.h"
#include "error.h"
#include "global.h"
#include "step_run.h"
#include "strbuf.h"

#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "banned.h"

#define RH_HTTP_BODY_MAX (1024 * 1024) /* response bytes kept for expect_json */
#define RH_HTTP_VALUE_SHOW 80

struct resp {
	struct rh_strbuf body; /* at most RH_HTTP_BODY_MAX bytes */
	bool truncated;
};

struct probe {
	struct rh_step_ctx *ctx;
	CURL *easy;
	CURLM *multi;
	struct curl_slist *headers;
	char *body; /* owned request body */
	size_t body_len;
	char *url_shown; /* for messages */
	struct resp resp;
	/* the last observation, for the timeout message */
	char last[640];
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *user)
{
	struct resp *r = user;
	size_t n = size * nmemb;

	if (r->truncated || r->body.len + n > RH_HTTP_BODY_MAX) {
		r->truncated = true;
		return n; /* keep reading, stop keeping */
	}
	if (rh_strbuf_add(&r->body, ptr, n) < 0)
		return 0; /* curl reports a write error */
	return n;
}

static int on_xferinfo(void *user, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct probe *p = user;

	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return p->ctx->cancel && rh_cancel_is_fired(p->ctx->cancel) ? 1 : 0;
}

/* scheme://host[:port]/path, without userinfo or query (they may hold secrets). */
char *rh_http_url_for_messages(const char *url)
{
	const char *auth = strstr(url, "://");
	const char *host = auth ? auth + 3 : url;
	const char *end = host + strcspn(host, "/?#");
	const char *at = memchr(host, '@', (size_t)(end - host));
	size_t prefix = (size_t)(host - url);
	const char *rest = at ? at + 1 : host;
	size_t rlen = strcspn(rest, "?#");
	char *out = malloc(prefix + rlen + 1);

	if (!out)
		return NULL;
	memcpy(out, url, prefix);
	memcpy(out + prefix, rest, rlen);
	out[prefix + rlen] = '\0';
	return out;
}

static void show_value(char *buf, size_t size, const json_t *v)
{
	char *s = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;

	if (!s)
		snprintf(buf, size, "%s", v ? "?" : "nothing");
	else if (strlen(s) > RH_HTTP_VALUE_SHOW)
		snprintf(buf, size, "%.*s...", RH_HTTP_VALUE_SHOW, s);
	else
		snprintf(buf, size, "%s", s);
	free(s);
}

/* Equal as JSON values; a string in the expectation also matches the
 * scalar it spells ("true", "123"), since interpolation makes strings. */
static bool scalar_match(const json_t *exp, const json_t *got)
{
	json_t *parsed;
	bool ok;

	if (json_equal((json_t *)exp, (json_t *)got))
		return true;
	if (json_is_number(exp) && json_is_number(got))
		return json_number_value(exp) == json_number_value(got);
	if (!json_is_string(exp) || json_is_string(got) || json_is_object(got) ||
	    json_is_array(got))
		return false;
	parsed = json_loads(json_string_value(exp), JSON_DECODE_ANY, NULL);
	ok = parsed && (json_equal(parsed, (json_t *)got) ||
			(json_is_number(parsed) && json_is_number(got) &&
			 json_number_value(parsed) == json_number_value(got)));
	json_decref(parsed);
	return ok;
}

/* True if `got` contains `exp`; otherwise `why` says where it differs. */
bool rh_http_json_match(const json_t *exp, const json_t *got, const char *path, char *why,
			size_t size)
{
	char sub[256], ev[RH_HTTP_VALUE_SHOW + 8], gv[RH_HTTP_VALUE_SHOW + 8];

	if (json_is_object(exp)) {
		const char *key;
		json_t *val;

		if (!json_is_object(got)) {
			show_value(gv, sizeof(gv), got);
			snprintf(why, size, "%s: expected an object, got %s",
				 path[0] ? path : "response", gv);
			return false;
		}
		json_object_foreach((json_t *)exp, key, val)
		{
			json_t *g = json_object_get(got, key);

			snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "", key);
			if (!g) {
				snprintf(why, size, "%s: missing", sub);
				return false;
			}
			if (!rh_http_json_match(val, g, sub, why, size))
				return false;
		}
		return true;
	}
	if (json_is_array(exp)) {
		size_t i;
		json_t *val;

		if (!json_is_array(got) || json_array_size(got) != json_array_size(exp)) {
			show_value(ev, sizeof(ev), exp);
			show_value(gv, sizeof(gv), got);
			snprintf(why, size, "%s: expected %s, got %s", path, ev, gv);
			return false;
		}
		json_array_foreach(exp, i, val)
		{
			snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
			if (!rh_http_json_match(val, json_array_get(got, i), sub, why, size))
				return false;
		}
		return true;
	}
	if (scalar_match(exp, got))
		return true;
	show_value(ev, sizeof(ev), exp);
	show_value(gv, sizeof(gv), got);
	snprintf(why, size, "%s: expected %s, got %s", path, ev, gv);
	return false;
}

bool rh_http_status_match(const json_t *expect, long status)
{
	size_t i;
	json_t *v;

	if (json_is_integer(expect))
		return json_integer_value(expect) == status;
	if (json_is_array(expect)) {
		json_array_foreach(expect, i, v) if (json_is_integer(v) &&
						     json_integer_value(v) == status) return true;
		return false;
	}
	return status >= 200 && status <= 299;
}

void rh_http_expected_status(char *buf, size_t size, const json_t *expect)
{
	if (json_is_integer(expect) || json_is_array(expect))
		show_value(buf, size, expect);
	else
		snprintf(buf, size, "2xx");
}

static int probe_setup(struct probe *p)
{
	json_t *spec = p->ctx->spec;
	const char *url = json_string_value(json_object_get(spec, "url"));
	const char *method = json_string_value(json_object_get(spec, "method"));
	json_t *headers = json_object_get(spec, "headers");
	json_t *body = json_object_get(spec, "body");
	bool has_ctype = false;
	const char *key;
	json_t *val;
	struct curl_slist *l;
	CURL *h;

	if (!url || !url[0])
		return rh_error_set(RH_EINVAL, "step '%s': url must be a non-empty string",
				    p->ctx->step->id);
	/* The literals were validated; what ${...} put in them was not: the
	 * same rules again, on the expanded text, so an output with CR/LF
	 * cannot add a header or rewrite the request line. */
	if (rh_http_text_bad(url, false))
		return rh_error_set(RH_EINVAL,
				    "step '%s': the url contains a control character "
				    "after expansion (a line break from a ${...} value?): not "
				    "sending it",
				    p->ctx->step->id);
	if (method && !rh_http_method_ok(method))
		return rh_error_set(RH_EINVAL,
				    "step '%s': the method after expansion is not one "
				    "of GET, HEAD, POST, PUT, PATCH, DELETE: not sending it",
				    p->ctx->step->id);
	json_object_foreach(headers, key, val)
	{
		if (!json_is_string(val) || rh_http_text_bad(json_string_value(val), true) ||
		    rh_http_text_bad(key, false) || strchr(key, ':'))
			return rh_error_set(
			    RH_EINVAL,
			    "step '%s': header '%.100s' contains a "
			    "control character or a bad name after expansion (a line "
			    "break from a ${...} value?): not sending it",
			    p->ctx->step->id, key);
	}
	p->url_shown = rh_http_url_for_messages(url);
	if (!p->url_shown)
		return rh_error_set(RH_ENOMEM, "out of memory");
	if (!method)
		method = "GET";
	if (rh_artifacts_global_check() < 0)
		return RH_ERROR;
	p->easy = h = curl_easy_init();
	p->multi = curl_multi_init();
	if (!h || !p->multi)
		return rh_error_set(RH_ENOMEM, "cannot create a curl handle");

	json_object_foreach(headers, key, val)
	{
		const char *v = json_string_value(val);
		size_t n = strlen(key) + (v ? strlen(v) : 0) + 4;
		char *line = malloc(n);

		if (!line)
			return rh_error_set(RH_ENOMEM, "out of memory");
		/* "Name;" is curl's way to send a header with an empty value */
		if (v && v[0])
			snprintf(line, n, "%s: %s", key, v);
		else
			snprintf(line, n, "%s;", key);
		if (strcasecmp(key, "content-type") == 0)
			has_ctype = true;
		l = curl_slist_append(p->headers, line);
		free(line);
		if (!l)
			return rh_error_set(RH_ENOMEM, "out of memory");
		p->headers = l;
	}
	if (json_is_string(body)) {
		p->body_len = json_string_length(body);
		p->body = malloc(p->body_len + 1);
		if (!p->body)
			return rh_error_set(RH_ENOMEM, "out of memory");
		memcpy(p->body, json_string_value(body), p->body_len + 1);
	} else if (json_is_object(body) || json_is_array(body)) {
		p->body = json_dumps(body, JSON_COMPACT);
		if (!p->body)
			return rh_error_set(RH_ENOMEM, "out of memory");
		p->body_len = strlen(p->body);
		if (!has_ctype) {
			l = curl_slist_append(p->headers, "Content-Type: application/json");
			if (!l)
				return rh_error_set(RH_ENOMEM, "out of memory");
			p->headers = l;
		}
	}
	/* no "Expect: 100-continue" round trip before a body */
	l = curl_slist_append(p->headers, "Expect:");
	if (!l)
		return rh_error_set(RH_ENOMEM, "out of memory");
	p->headers = l;

	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, p->headers);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "rehydra/" RH_VERSION);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &p->resp);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, p);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else {
		if (strcmp(method, "POST") == 0)
			curl_easy_setopt(h, CURLOPT_POST, 1L);
		else
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
		if (p->body || strcmp(method, "POST") == 0) {
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, p->body ? p->body : "");
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->body_len);
		}
	}
	return 0;
}

/* One request. Returns 0 with the curl code and status set (whatever the answer),
 * RH_ECANCELLED, or another error for local failures. */
static int probe_once(struct probe *p, double timeout_s, CURLcode *code, long *status)
{
	struct rh_cancel *cancel = p->ctx->cancel;
	long ms = (long)ceil(timeout_s * 1000.0);
	int running = 1, rc = 0;
	CURLMsg *msg;
	int left;

	rh_strbuf_reset(&p->resp.body);
	p->resp.truncated = false;
	*code = CURLE_OK;
	*status = 0;
	if (ms < 1)
		ms = 1;
	curl_easy_setopt(p->easy, CURLOPT_TIMEOUT_MS, ms);
	curl_easy_setopt(p->easy, CURLOPT_CONNECTTIMEOUT_MS, ms);
	if (curl_multi_add_handle(p->multi, p->easy) != CURLM_OK)
		return rh_error_set(RH_ERROR, "cannot start a request to %s", p->url_shown);
	while (running) {
		struct curl_waitfd extra = {
		    .fd = cancel ? rh_cancel_fd(cancel) : -1,
		    .events = CURL_WAIT_POLLIN,
		};
		CURLMcode mc = curl_multi_perform(p->multi, &running);

		if (mc != CURLM_OK) {
			rc = rh_error_set(RH_ERROR, "request to %s: %s", p->url_shown,
					  curl_multi_strerror(mc));
			goto done;
		}
		if (!running)
			break;
		/* curl shortens the wait to its own timers; the extra fd is the cancel */
		mc = curl_multi_poll(p->multi, cancel ? &extra : NULL, cancel ? 1 : 0, 1000, NULL);
		if (mc != CURLM_OK) {
			rc = rh_error_set(RH_ERROR, "request to %s: %s", p->url_shown,
					  curl_multi_strerror(mc));
			goto done;
		}
		if (cancel && rh_cancel_is_fired(cancel)) {
			rc = rh_error_set(RH_ECANCELLED, "step '%s': cancelled while probing %s",
					  p->ctx->step->id, p->url_shown);
			goto done;
		}
	}
	while ((msg = curl_multi_info_read(p->multi, &left)))
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == p->easy)
			*code = msg->data.result;
	if (*code == CURLE_OK)
		curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, status);
	if (*code == CURLE_ABORTED_BY_CALLBACK && cancel && rh_cancel_is_fired(cancel))
		rc = rh_error_set(RH_ECANCELLED, "step '%s': cancelled while probing %s",
				  p->ctx->step->id, p->url_shown);
done:
	curl_multi_remove_handle(p->multi, p->easy);
	return rc;
}

/* True when the answer matches; otherwise p->last says why not. */
static bool answer_matches(struct probe *p, long status)
{
	json_t *spec = p->ctx->spec;
	json_t *expect_status = json_object_get(spec, "expect_status");
	json_t *expect_json = json_object_get(spec, "expect_json");
	json_t *doc;
	json_error_t jerr;
	char why[512], es[64];
	bool ok;

	if (!rh_http_status_match(expect_status, status)) {
		rh_http_expected_status(es, sizeof(es), expect_status);
		snprintf(p->last, sizeof(p->last), "status %ld (expected %s)", status, es);
		return false;
	}
	if (!expect_json)
		return true;
	if (p->resp.truncated) {
		snprintf(p->last, sizeof(p->last),
			 "status %ld, response larger than %d bytes "
			 "(expect_json not checked)",
			 status, RH_HTTP_BODY_MAX);
		return false;
	}
	doc = json_loadb(rh_strbuf_str(&p->resp.body), p->resp.body.len, JSON_DECODE_ANY, &jerr);
	if (!doc) {
		snprintf(p->last, sizeof(p->last), "status %ld, response is not JSON (%s)", status,
			 jerr.text);
		return false;
	}
	why[0] = '\0';
	ok = rh_http_json_match(expect_json, doc, "", why, sizeof(why));
	json_decref(doc);
	if (!ok)
		snprintf(p->last, sizeof(p->last), "status %ld, %s", status, why);
	return ok;
}

int rh_step_http_probe_run(struct rh_step_ctx *ctx)
{
	struct probe p = {.ctx = ctx};
	json_t *jint = json_object_get(ctx->spec, "interval_s");
	json_t *jreq = json_object_get(ctx->spec, "request_timeout_s");
	double interval = json_is_number(jint) ? json_number_value(jint) : 0.25;
	double req_timeout = json_is_number(jreq) ? json_number_value(jreq) : 5.0;
	double started = rh_clock_mono();
	unsigned polls = 0;
	int rc;

	snprintf(p.last, sizeof(p.last), "no request completed");
	rc = probe_setup(&p);
	if (rc < 0)
		goto done;
	for (;;) {
		double now = rh_clock_mono(), left = ctx->deadline - now, t0, t1;
		CURLcode code;
		long status;

		if (left <= 0) {
			rc = rh_error_set(RH_ETIMEOUT,
					  "step '%s': no expected answer from %s within "
					  "%.1fs (%u %s); last: %s",
					  ctx->step->id, p.url_shown, now - started, polls,
					  polls == 1 ? "poll" : "polls", p.last);
			goto done;
		}
		t0 = rh_clock_mono();
		rc = probe_once(&p, left < req_timeout ? left : req_timeout, &code, &status);
		t1 = rh_clock_mono();
		if (rc < 0)
			goto done;
		polls++;
		if (code != CURLE_OK)
			snprintf(p.last, sizeof(p.last), "%s", curl_easy_strerror(code));
		else if (answer_matches(&p, status)) {
			if (json_object_set_new(ctx->outputs, "status", json_integer(status)) < 0 ||
			    json_object_set_new(ctx->outputs, "latency_ms",
						json_real(round((t1 - t0) * 1e6) / 1e3)) < 0 ||
			    json_object_set_new(ctx->outputs, "polls", json_integer(polls)) < 0 ||
			    json_object_set_new(
				ctx->outputs, "first_success_s",
				json_real(round((t1 - ctx->drill->t0_mono) * 1e3) / 1e3)) < 0)
				rc = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
		left = ctx->deadline - rh_clock_mono();
		if (left <= 0)
			continue; /* reports the timeout */
		rc = rh_cancel_sleep(ctx->cancel, interval < left ? interval : left);
		if (rc < 0) {
			rc = rh_error_set(RH_ECANCELLED, "step '%s': cancelled while probing %s",
					  ctx->step->id, p.url_shown);
			goto done;
		}
	}
done:
	if (p.multi)
		curl_multi_cleanup(p.multi);
	if (p.easy)
		curl_easy_cleanup(p.easy);
	curl_slist_free_all(p.headers);
	free(p.body);
	rh_strbuf_release(&p.resp.body);
	free(p.url_shown);
	return rc;
}
