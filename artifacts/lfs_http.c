/*
 * lfs_http.c - the Git LFS batch API client (libcurl + jansson).
 *
 * A registry reached by URL has its model bytes on an LFS server, and in a
 * drill this download is usually the longest step, so it has to survive the
 * things servers do under load: 429 and 5xx answers (retried with backoff,
 * honouring Retry-After), expired download links (asked for again), and
 * bytes that are not what the pointer says (rejected: the caller's cache
 * never gets them). Bytes are written to the caller's file as they arrive
 * and hashed on the way, so memory stays bounded whatever the object's size.
 *
 * Protocol: git-lfs docs/api/batch.md (POST <endpoint>/objects/batch with
 * media type application/vnd.git-lfs+json, operation "download", transfer
 * "basic") and docs/api/basic-transfers.md (GET the action's href with the
 * action's headers). TLS is verified (libcurl's defaults, stated again so no
 * one turns them off by accident). Credentials live only in request headers.
 */
#include "lfs.h"
#include "cancel.h"
#include "error.h"
#include "fsutil.h"
#include "global.h"
#include "sha256.h"
#include "strbuf.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "banned.h"

#define BATCH_BODY_MAX (4u * 1024 * 1024)
#define DEFAULT_ATTEMPTS 6
#define DEFAULT_BACKOFF_S 0.5
#define DEFAULT_BACKOFF_MAX_S 30.0
#define RETRY_AFTER_MAX_S 120.0
#define EXPIRY_MARGIN_S 5.0

struct rh_lfs_remote {
	char *endpoint; /* without userinfo */
	char *origin;	/* "scheme://host:port" of the endpoint, for the auth decision */
	char *auth;	/* "Authorization: ..." or NULL; secret */
};

static double now_real(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void rh_lfs_action_clear(struct rh_lfs_action *a)
{
	if (!a)
		return;
	free(a->href);
	if (a->headers)
		for (size_t i = 0; a->headers[i]; i++)
			free(a->headers[i]);
	free(a->headers);
	memset(a, 0, sizeof(*a));
}

char *rh_lfs_batch_request(const struct rh_lfs_pointer *p, const char *ref)
{
	json_t *req = json_pack("{s:s, s:[s], s:[{s:s, s:I}], s:s}", "operation", "download",
				"transfers", "basic", "objects", "oid", p->oid, "size",
				(json_int_t)p->size, "hash_algo", "sha256");
	char *text = NULL;

	if (!req)
		return NULL;
	if (ref && json_object_set_new(req, "ref", json_pack("{s:s}", "name", ref)) != 0)
		goto done;
	text = json_dumps(req, JSON_COMPACT);
done:
	json_decref(req);
	return text;
}

/* RFC 3339 ("2016-11-10T15:29:07Z", fractions and offsets allowed) to
 * epoch seconds; -1 if it is not one. */
static double parse_rfc3339(const char *s)
{
	struct tm tm = {0};
	int y, mo, d, h, mi, sec, n = 0;
	double frac = 0;
	const char *p;
	time_t t;

	if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
	    n < 19)
		return -1;
	p = s + n;
	if (*p == '.') {
		double scale = 0.1;

		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			frac += (*p - '0') * scale;
	}
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	if (*p == 'Z' || *p == 'z')
		return (double)t + frac;
	if (*p == '+' || *p == '-') {
		int oh, om;

		if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2)
			return -1;
		return (double)t + frac - (*p == '+' ? 1 : -1) * (oh * 3600.0 + om * 60.0);
	}
	return -1;
}

double rh_lfs_retry_after(const char *value, double now)
{
	char *end;
	double secs;
	time_t when;

	if (!value)
		return -1;
	while (*value == ' ' || *value == '\t')
		value++;
	if (!*value)
		return -1;
	errno = 0;
	secs = strtod(value, &end);
	if (end != value && errno == 0 && secs >= 0) {
		while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
			end++;
		if (*end == '\0')
			return secs;
	}
	when = curl_getdate(value, NULL);
	if (when == (time_t)-1)
		return -1;
	return (double)when > now ? (double)when - now : 0;
}

/* The server's own words for an object error, bounded and printable. */
static void clean_message(char *out, size_t n, const char *msg)
{
	size_t o = 0;

	if (!msg)
		msg = "";
	for (size_t i = 0; msg[i] && o + 1 < n; i++)
		out[o++] = ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f) ? ' ' : msg[i];
	out[o] = '\0';
}

static int action_headers(struct rh_lfs_action *out, json_t *hdr, const char *oid,
			  const char *server)
{
	const char *key;
	json_t *val;
	size_t n = 0;
	int err = 0;

	if (hdr && !json_is_object(hdr))
		return rh_error_set(RH_EINVAL,
				    "LFS server %s: object %s: \"header\" of the "
				    "download action is not an object",
				    server, oid);
	out->headers = calloc(json_object_size(hdr) + 1, sizeof(char *));
	if (!out->headers)
		return rh_error_set(RH_ENOMEM, "out of memory");
	json_object_foreach(hdr, key, val)
	{
		if (!json_is_string(val) || !*key || strpbrk(key, ":\r\n ") ||
		    strpbrk(json_string_value(val), "\r\n")) {
			/* Never echo header values: they carry credentials. */
			err = rh_error_set(RH_EINVAL,
					   "LFS server %s: object %s: download header "
					   "\"%.64s\" is not a valid header",
					   server, oid, key);
			break;
		}
		if (asprintf(&out->headers[n], "%s: %s", key, json_string_value(val)) < 0) {
			out->headers[n] = NULL;
			err = rh_error_set(RH_ENOMEM, "out of memory");
			break;
		}
		n++;
	}
	return err;
}

int rh_lfs_batch_parse(struct rh_lfs_action *out, const char *body, size_t len,
		       const struct rh_lfs_pointer *p, const char *server)
{
	json_t *doc = NULL;
	json_t *objs;
	json_t *obj = NULL;
	json_t *dl;
	json_t *v;
	json_error_t jerr;
	char msg[256];
	int err = 0;

	memset(out, 0, sizeof(*out));
	doc = json_loadb(body, len, 0, &jerr);
	if (!json_is_object(doc)) {
		err = rh_error_set(RH_EINVAL,
				   "LFS server %s answered the batch request for "
				   "object %s with something that is not a JSON object (%s)",
				   server, p->oid, doc ? "wrong type" : jerr.text);
		goto done;
	}
	v = json_object_get(doc, "transfer");
	if (v && (!json_is_string(v) || strcmp(json_string_value(v), "basic") != 0)) {
		err = rh_error_set(RH_EINVAL,
				   "LFS server %s chose transfer adapter \"%s\" for "
				   "object %s; rehydra speaks only \"basic\"",
				   server, json_is_string(v) ? json_string_value(v) : "?", p->oid);
		goto done;
	}
	v = json_object_get(doc, "hash_algo");
	if (v && (!json_is_string(v) || strcmp(json_string_value(v), "sha256") != 0)) {
		err = rh_error_set(RH_EINVAL,
				   "LFS server %s uses hash algorithm \"%s\", not "
				   "sha256",
				   server, json_is_string(v) ? json_string_value(v) : "?");
		goto done;
	}
	objs = json_object_get(doc, "objects");
	if (!json_is_array(objs)) {
		err = rh_error_set(RH_EINVAL,
				   "LFS server %s: the batch response for object %s "
				   "has no \"objects\" array",
				   server, p->oid);
		goto done;
	}
	for (size_t i = 0; i < json_array_size(objs); i++) {
		json_t *o = json_array_get(objs, i);

		if (json_is_string(json_object_get(o, "oid")) &&
		    strcmp(json_string_value(json_object_get(o, "oid")), p->oid) == 0) {
			obj = o;
			break;
		}
	}
	if (!obj) {
		err = rh_error_set(RH_EINVAL,
				   "LFS server %s: the batch response does not "
				   "mention object %s",
				   server, p->oid);
		goto done;
	}
	v = json_object_get(obj, "error");
	if (v) {
		json_int_t code = json_integer_value(json_object_get(v, "code"));

		clean_message(msg, sizeof(msg), json_string_value(json_object_get(v, "message")));
		if (code == 404 || code == 410)
			err = rh_error_set(RH_ENOTFOUND,
					   "LFS server %s does not have object %s "
					   "(%lld: %s): push it with `git lfs push --all` from a "
					   "clone that has it",
					   server, p->oid, (long long)code,
					   *msg		 ? msg
					   : code == 404 ? "not found"
							 : "removed");
		else if (code == 422)
			err = rh_error_set(RH_EVERIFY,
					   "LFS server %s says object %s is invalid "
					   "(422: %s): the pointer's size %llu may not match the "
					   "object",
					   server, p->oid, *msg ? msg : "validation error",
					   (unsigned long long)p->size);
		else
			err = rh_error_set(RH_EIO,
					   "LFS server %s cannot serve object %s (%lld: "
					   "%s)",
					   server, p->oid, (long long)code, *msg ? msg : "error");
		goto done;
	}
	v = json_object_get(obj, "size");
	if (v && (!json_is_integer(v) || (uint64_t)json_integer_value(v) != p->size)) {
		err = rh_error_set(RH_EVERIFY,
				   "LFS server %s says object %s has %lld bytes, but "
				   "its pointer says %llu",
				   server, p->oid, (long long)json_integer_value(v),
				   (unsigned long long)p->size);
		goto done;
	}
	dl = json_object_get(json_object_get(obj, "actions"), "download");
	if (!json_is_object(dl) || !json_is_string(json_object_get(dl, "href")) ||
	    !*json_string_value(json_object_get(dl, "href"))) {
		err = rh_error_set(RH_EINVAL,
				   "LFS server %s gave no download action (href) for "
				   "object %s",
				   server, p->oid);
		goto done;
	}
	out->href = strdup(json_string_value(json_object_get(dl, "href")));
	if (!out->href) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	if (strncmp(out->href, "http://", 7) != 0 && strncmp(out->href, "https://", 8) != 0) {
		err = rh_error_set(RH_EINVAL,
				   "LFS server %s: the download href for object %s is "
				   "not an http(s) URL",
				   server, p->oid);
		goto done;
	}
	err = action_headers(out, json_object_get(dl, "header"), p->oid, server);
	if (err < 0)
		goto done;
	/* expires_in wins over expires_at (batch.md), both optional. */
	v = json_object_get(dl, "expires_in");
	if (json_is_number(v) && json_number_value(v) != 0) {
		out->expires_at = now_real() + json_number_value(v);
	} else if (json_is_string(json_object_get(dl, "expires_at"))) {
		double t = parse_rfc3339(json_string_value(json_object_get(dl, "expires_at")));

		/* Servers send "0001-01-01T00:00:00Z" for "never" (git-lfs
		 * treats the zero time that way): only a later time counts. */
		if (t > 86400.0)
			out->expires_at = t;
	}
done:
	if (err < 0)
		rh_lfs_action_clear(out);
	json_decref(doc);
	return err;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64(const char *in, size_t n)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	size_t o = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)(unsigned char)in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)(unsigned char)in[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)in[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? b64[v & 63] : '=';
	}
	out[o] = '\0';
	return out;
}

/* "scheme://host[:port]" with the default port made explicit, lowercase. */
static char *url_origin(const char *url)
{
	const char *sep = strstr(url, "://");
	const char *h;
	size_t hl;
	char *o = NULL;

	if (!sep)
		return NULL;
	h = sep + 3;
	hl = strcspn(h, "/?#");
	if (memchr(h, '@', hl)) {
		const char *at = h;

		for (size_t i = 0; i < hl; i++)
			if (h[i] == '@')
				at = h + i + 1;
		hl -= (size_t)(at - h);
		h = at;
	}
	if (memchr(h, ':', hl) || h[0] == '[') {
		if (asprintf(&o, "%.*s%.*s", (int)(h - url), url, (int)hl, h) < 0)
			return NULL;
	} else if (asprintf(&o, "%.*s%.*s:%s", (int)(h - url), url, (int)hl, h,
			    strncmp(url, "https", 5) == 0 ? "443" : "80") < 0) {
		return NULL;
	}
	for (char *c = o; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c + 32);
	return o;
}

void rh_lfs_remote_free(struct rh_lfs_remote *rm)
{
	if (!rm)
		return;
	free(rm->endpoint);
	free(rm->origin);
	if (rm->auth) {
		/* A secret: do not leave it in freed memory. */
		explicit_bzero(rm->auth, strlen(rm->auth));
		free(rm->auth);
	}
	free(rm);
}

const char *rh_lfs_remote_name(const struct rh_lfs_remote *rm)
{
	return rm->endpoint;
}

int rh_lfs_remote_new(struct rh_lfs_remote **out, const char *endpoint)
{
	struct rh_lfs_remote *rm = NULL;
	char *user = NULL;
	char *pass = NULL;
	char *cred = NULL;
	char *enc = NULL;
	const char *token = getenv("REHYDRA_LFS_TOKEN");
	size_t n;
	int err = 0;

	*out = NULL;
	err = rh_artifacts_global_check();
	if (err < 0)
		goto done;
	rm = calloc(1, sizeof(*rm));
	if (!rm) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	err = rh_lfs_url_split(endpoint, &rm->endpoint, &user, &pass);
	if (err < 0)
		goto done;
	n = strlen(rm->endpoint);
	while (n > 0 && rm->endpoint[n - 1] == '/')
		rm->endpoint[--n] = '\0';
	if (strncmp(rm->endpoint, "http://", 7) != 0 && strncmp(rm->endpoint, "https://", 8) != 0) {
		err =
		    rh_error_set(RH_EINVAL, "LFS endpoint %s is not an http(s) URL", rm->endpoint);
		goto done;
	}
	rm->origin = url_origin(rm->endpoint);
	if (!rm->origin) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	if (user && (*user || (pass && *pass))) {
		err = rh_asprintf(&cred, "%s:%s", user, pass ? pass : "");
		if (err < 0)
			goto done;
		enc = base64(cred, strlen(cred));
		if (!enc || asprintf(&rm->auth, "Authorization: Basic %s", enc) < 0) {
			rm->auth = NULL;
			err = rh_error_set(RH_ENOMEM, "out of memory");
			goto done;
		}
	} else if (token && *token) {
		if (strpbrk(token, "\r\n")) {
			err = rh_error_set(RH_EINVAL, "REHYDRA_LFS_TOKEN contains a line break");
			goto done;
		}
		err = rh_asprintf(&rm->auth, "Authorization: Bearer %s", token);
		if (err < 0)
			goto done;
	}
	*out = rm;
	rm = NULL;
done:
	if (pass)
		explicit_bzero(pass, strlen(pass));
	if (cred)
		explicit_bzero(cred, strlen(cred));
	if (enc)
		explicit_bzero(enc, strlen(enc));
	free(user);
	free(pass);
	free(cred);
	free(enc);
	rh_lfs_remote_free(rm);
	return err;
}

/* ---- one HTTP exchange ---------------------------------------------------- */

struct xfer {
	/* batch: the body, bounded (BATCH_BODY_MAX) */
	struct rh_strbuf body;
	bool too_big;
	/* download: into fd, hashed */
	int fd;
	uint64_t limit;
	uint64_t got;
	struct rh_sha256 sha;
	int write_errno;
	bool overflow;
	/* both */
	char retry_after[64];
	struct rh_cancel *cancel;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
	struct xfer *x = user;
	size_t n = size * nmemb;

	if (x->body.len + n > BATCH_BODY_MAX) {
		x->too_big = true;
		return 0;
	}
	return rh_strbuf_add(&x->body, data, n) < 0 ? 0 : n;
}

static size_t on_object(char *data, size_t size, size_t nmemb, void *user)
{
	struct xfer *x = user;
	size_t n = size * nmemb;
	int rc;

	/* Stop at once on more bytes than the pointer names: a server (or a
	 * proxy) sending something else must not fill the disk. */
	if (x->got + n > x->limit) {
		x->overflow = true;
		return 0;
	}
	rc = rh_fs_write_all(x->fd, data, n);
	if (rc < 0) {
		x->write_errno = -rc;
		return 0;
	}
	rh_sha256_update(&x->sha, data, n);
	x->got += n;
	return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *user)
{
	struct xfer *x = user;
	size_t n = size * nmemb;
	static const char name[] = "retry-after:";

	if (n > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
		size_t vl = n - (sizeof(name) - 1);

		if (vl >= sizeof(x->retry_after))
			vl = sizeof(x->retry_after) - 1;
		memcpy(x->retry_after, data + sizeof(name) - 1, vl);
		x->retry_after[vl] = '\0';
		x->retry_after[strcspn(x->retry_after, "\r\n")] = '\0';
	}
	return n;
}

static int on_progress(void *user, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct xfer *x = user;

	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return x->cancel && rh_cancel_is_fired(x->cancel) ? 1 : 0;
}

/* Errors worth another try: the network, not the request. */
static bool curl_transient(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

static bool status_retryable(long status)
{
	return status == 429 || (status >= 500 && status <= 599);
}

/* One request. `url` carries no secret; `headers` may. Returns the curl
 * code; *status gets the HTTP status (0 if none). */
static CURLcode http_do(struct xfer *x, const char *url, struct curl_slist *headers,
			const char *post, bool download, long *status)
{
	CURL *h = curl_easy_init();
	CURLcode rc;

	*status = 0;
	if (!h)
		return CURLE_OUT_OF_MEMORY;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "rehydra/" RH_VERSION);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
	/* A stalled transfer (under 1 KiB/s for a minute) is retried, not
	 * waited on forever; a slow but moving one is left alone. */
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, download ? on_object : on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	if (post) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
		curl_easy_setopt(h, CURLOPT_TIMEOUT, 300L);
	}
	if (download)
		curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L * 1024);
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	curl_easy_cleanup(h);
	return rc;
}

struct policy {
	unsigned attempts;
	double backoff;
	double backoff_max;
	struct rh_cancel *cancel;
};

/* Waits before retry `attempt` (1-based): the server's Retry-After if it
 * gave one, else exponential backoff with +-25% jitter. */
static int backoff_wait(const struct policy *pol, unsigned attempt, const char *retry_after)
{
	double wait = rh_lfs_retry_after(retry_after, now_real());
	char rnd[17];

	if (wait < 0) {
		double base = pol->backoff * pow(2.0, (double)(attempt - 1));
		unsigned long r;

		if (base > pol->backoff_max)
			base = pol->backoff_max;
		rh_fs_rand_hex(rnd);
		r = strtoul(rnd + 8, NULL, 16);
		wait = base * (0.75 + 0.5 * ((double)(r % 10000) / 10000.0));
	} else if (wait > RETRY_AFTER_MAX_S) {
		wait = RETRY_AFTER_MAX_S;
	}
	return rh_cancel_sleep(pol->cancel, wait);
}

static void gave_up(int err, unsigned attempts)
{
	char msg[1024];

	snprintf(msg, sizeof(msg), "%s", rh_error_last());
	rh_error_set(err, "%s (gave up after %u attempts)", msg, attempts);
}

static const char *batch_message(const struct xfer *x, char *buf, size_t n)
{
	json_t *doc = x->body.buf ? json_loadb(x->body.buf, x->body.len, 0, NULL) : NULL;

	buf[0] = '\0';
	if (doc)
		clean_message(buf, n, json_string_value(json_object_get(doc, "message")));
	json_decref(doc);
	return buf;
}

static int slist_add(struct curl_slist **l, const char *line)
{
	struct curl_slist *t = curl_slist_append(*l, line);

	if (!t)
		return rh_error_set(RH_ENOMEM, "out of memory");
	*l = t;
	return 0;
}

/* POSTs the batch request until it gets an answer it can use. */
static int batch_call(struct rh_lfs_remote *rm, const struct rh_lfs_pointer *p,
		      const struct policy *pol, const char *ref, struct rh_lfs_action *act)
{
	struct curl_slist *hdrs = NULL;
	char *url = NULL;
	char *body = NULL;
	char msg[256];
	int err = 0;

	memset(act, 0, sizeof(*act));
	body = rh_lfs_batch_request(p, ref);
	if (!body || asprintf(&url, "%s/objects/batch", rm->endpoint) < 0) {
		url = NULL;
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	if ((err = slist_add(&hdrs, "Accept: " RH_LFS_MEDIA_TYPE)) < 0 ||
	    (err = slist_add(&hdrs, "Content-Type: " RH_LFS_MEDIA_TYPE)) < 0 ||
	    (rm->auth && (err = slist_add(&hdrs, rm->auth)) < 0))
		goto done;
	for (unsigned attempt = 1;; attempt++) {
		struct xfer x = {.cancel = pol->cancel, .fd = -1};
		long status;
		CURLcode rc = http_do(&x, url, hdrs, body, false, &status);
		bool retry = false;

		if (rc == CURLE_ABORTED_BY_CALLBACK) {
			err = rh_error_set(RH_ECANCELLED,
					   "cancelled fetching LFS object %s "
					   "from %s",
					   p->oid, rm->endpoint);
		} else if (rc != CURLE_OK && !x.too_big) {
			err = rh_error_set(RH_EIO,
					   "LFS server %s: batch request for object %s "
					   "failed: %s",
					   rm->endpoint, p->oid, curl_easy_strerror(rc));
			retry = curl_transient(rc);
		} else if (x.too_big) {
			err = rh_error_set(RH_EIO,
					   "LFS server %s: the batch response is larger "
					   "than %u bytes",
					   rm->endpoint, BATCH_BODY_MAX);
		} else if (status == 200) {
			err = rh_lfs_batch_parse(act, rh_strbuf_str(&x.body), x.body.len, p,
						 rm->endpoint);
		} else if (status == 401 || status == 403) {
			err = rh_error_set(
			    RH_EIO, "LFS server %s refused %s (HTTP %ld%s%s): %s", rm->endpoint,
			    rm->auth ? "our credentials" : "the request without credentials",
			    status, *batch_message(&x, msg, sizeof(msg)) ? ": " : "", msg,
			    rm->auth ? "check REHYDRA_LFS_TOKEN or the credentials "
				       "in the registry URL"
				     : "set REHYDRA_LFS_TOKEN or put "
				       "credentials in the registry URL");
		} else if (status == 404) {
			err = rh_error_set(RH_ENOTFOUND,
					   "LFS server %s: no LFS repository there "
					   "(HTTP 404 for the batch request): check lfs.url in the "
					   "registry's .lfsconfig",
					   rm->endpoint);
		} else {
			err = rh_error_set(RH_EIO,
					   "LFS server %s answered the batch request for "
					   "object %s with HTTP %ld%s%s",
					   rm->endpoint, p->oid, status,
					   *batch_message(&x, msg, sizeof(msg)) ? ": " : "", msg);
			retry = status_retryable(status);
		}
		rh_strbuf_release(&x.body);
		if (!retry || attempt >= pol->attempts) {
			if (retry)
				gave_up(err, attempt);
			goto done;
		}
		err = backoff_wait(pol, attempt, x.retry_after[0] ? x.retry_after : NULL);
		if (err < 0) {
			rh_error_set(err, "cancelled fetching LFS object %s from %s", p->oid,
				     rm->endpoint);
			goto done;
		}
	}
done:
	curl_slist_free_all(hdrs);
	free(url);
	free(body);
	return err;
}

/* Empties `fd` for another try. */
static int reset_fd(int fd)
{
	if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
		return rh_error_set_errno(RH_EIO, errno, "cannot truncate a cache download");
	return 0;
}

#define RH_EXPIRED 1 /* download_call: the href expired; ask the batch API again */

/* GETs the action's href into fd until it holds the verified object. */
static int download_call(struct rh_lfs_remote *rm, const struct rh_lfs_pointer *p,
			 const struct policy *pol, const struct rh_lfs_action *act, int fd)
{
	struct curl_slist *hdrs = NULL;
	bool have_auth = false;
	char *origin = url_origin(act->href);
	char *href_name = rh_lfs_url_redact(act->href);
	int err = 0;

	if (!origin || !href_name) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; act->headers && act->headers[i]; i++) {
		err = slist_add(&hdrs, act->headers[i]);
		if (err < 0)
			goto done;
		if (strncasecmp(act->headers[i], "authorization:", 14) == 0)
			have_auth = true;
	}
	/* Our credentials go only where the endpoint is: a storage host the
	 * server hands us gets the headers the server chose, nothing more. */
	if (!have_auth && rm->auth && strcmp(origin, rm->origin) == 0) {
		err = slist_add(&hdrs, rm->auth);
		if (err < 0)
			goto done;
	}
	for (unsigned attempt = 1;; attempt++) {
		struct xfer x = {.cancel = pol->cancel, .fd = fd, .limit = p->size};
		long status;
		CURLcode rc;
		bool retry = false;
		uint8_t dg[32];
		char hex[65];

		if (act->expires_at > 0 && now_real() > act->expires_at - EXPIRY_MARGIN_S) {
			err = RH_EXPIRED;
			goto done;
		}
		err = reset_fd(fd);
		if (err < 0)
			goto done;
		err = rh_sha256_init(&x.sha);
		if (err < 0)
			goto done;
		rc = http_do(&x, act->href, hdrs, NULL, true, &status);
		if (rc == CURLE_ABORTED_BY_CALLBACK) {
			err = rh_error_set(RH_ECANCELLED,
					   "cancelled fetching LFS object %s "
					   "from %s",
					   p->oid, href_name);
		} else if (x.write_errno) {
			err = rh_error_set_errno(RH_EIO, x.write_errno,
						 "cannot write LFS "
						 "object %s into the cache",
						 p->oid);
		} else if (x.overflow) {
			err = rh_error_set(RH_EVERIFY,
					   "LFS object %s from %s: the server sent "
					   "more than the %llu bytes the pointer names",
					   p->oid, href_name, (unsigned long long)p->size);
		} else if (rc != CURLE_OK) {
			err = rh_error_set(RH_EIO, "LFS object %s: download from %s failed: %s",
					   p->oid, href_name, curl_easy_strerror(rc));
			retry = curl_transient(rc);
		} else if (status == 200) {
			rh_sha256_final(&x.sha, dg);
			rh_sha256_hex(hex, dg);
			if (x.got != p->size)
				err = rh_error_set(RH_EVERIFY,
						   "LFS object %s from %s: got "
						   "%llu bytes, the pointer names %llu",
						   p->oid, href_name, (unsigned long long)x.got,
						   (unsigned long long)p->size);
			else if (strcmp(hex, p->oid) != 0)
				err = rh_error_set(RH_EVERIFY,
						   "LFS object %s from %s has "
						   "sha256 %s: the server's copy is corrupt "
						   "(nothing was cached); repair it with `git lfs "
						   "push` from a good clone",
						   p->oid, href_name, hex);
			else
				err = 0;
		} else if ((status == 401 || status == 403) && act->expires_at > 0) {
			/* Signed links expire early on clock skew: ask again. */
			err = RH_EXPIRED;
		} else if (status == 401 || status == 403) {
			err = rh_error_set(RH_EIO,
					   "LFS object %s: %s refused the download (HTTP "
					   "%ld): check the token or the credentials",
					   p->oid, href_name, status);
		} else if (status == 404 || status == 410) {
			err = rh_error_set(RH_ENOTFOUND,
					   "LFS object %s: %s answered HTTP %ld: the "
					   "server does not have it",
					   p->oid, href_name, status);
		} else {
			err = rh_error_set(RH_EIO, "LFS object %s: %s answered HTTP %ld", p->oid,
					   href_name, status);
			retry = status_retryable(status);
		}
		rh_sha256_free(&x.sha); /* emptied by final on a 200 */
		if (!retry || attempt >= pol->attempts) {
			if (retry)
				gave_up(err, attempt);
			goto done;
		}
		err = backoff_wait(pol, attempt, x.retry_after[0] ? x.retry_after : NULL);
		if (err < 0) {
			rh_error_set(err, "cancelled fetching LFS object %s from %s", p->oid,
				     href_name);
			goto done;
		}
	}
done:
	curl_slist_free_all(hdrs);
	free(origin);
	free(href_name);
	return err;
}

int rh_lfs_check(struct rh_lfs_remote *rm, const struct rh_lfs_pointer *p,
		 const struct rh_lfs_fetch_opts *opts)
{
	struct policy pol = {DEFAULT_ATTEMPTS, DEFAULT_BACKOFF_S, DEFAULT_BACKOFF_MAX_S, NULL};
	struct rh_lfs_action act = {0};
	int err;

	/* retried like a fetch: a 503 the sync would ride out must not abort */
	if (opts) {
		if (opts->attempts)
			pol.attempts = opts->attempts;
		if (opts->backoff_s > 0)
			pol.backoff = opts->backoff_s;
		if (opts->backoff_max_s > 0)
			pol.backoff_max = opts->backoff_max_s;
		pol.cancel = opts->cancel;
	}
	err = batch_call(rm, p, &pol, opts ? opts->ref : NULL, &act);
	rh_lfs_action_clear(&act);
	return err;
}

int rh_lfs_fetch(struct rh_lfs_remote *rm, const struct rh_lfs_pointer *p, int fd,
		 const struct rh_lfs_fetch_opts *opts)
{
	struct policy pol = {DEFAULT_ATTEMPTS, DEFAULT_BACKOFF_S, DEFAULT_BACKOFF_MAX_S, NULL};
	struct rh_lfs_action act = {0};
	const char *ref = NULL;
	int err = 0;

	if (opts) {
		if (opts->attempts)
			pol.attempts = opts->attempts;
		if (opts->backoff_s > 0)
			pol.backoff = opts->backoff_s;
		if (opts->backoff_max_s > 0)
			pol.backoff_max = opts->backoff_max_s;
		pol.cancel = opts->cancel;
		ref = opts->ref;
	}
	/* An expired link is asked for again, a bounded number of times. */
	for (unsigned round = 0; round < 3; round++) {
		rh_lfs_action_clear(&act);
		err = batch_call(rm, p, &pol, ref, &act);
		if (err < 0)
			goto done;
		err = download_call(rm, p, &pol, &act, fd);
		if (err != RH_EXPIRED)
			goto done;
	}
	err = rh_error_set(RH_EIO,
			   "LFS server %s keeps handing out expired download links "
			   "for object %s: check the clocks of this host and the server",
			   rm->endpoint, p->oid);
done:
	rh_lfs_action_clear(&act);
	return err;
}
