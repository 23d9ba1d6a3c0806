/*
 * sink_s3.c - the S3-compatible sink: AWS S3, Alibaba OSS, Nebius Object
 * Storage, MinIO, s3rver, over libcurl with its built-in SigV4 signing.
 *
 * Why the remote bytes can be trusted. Every byte is read from the local
 * source and hashed with SHA-256 against the manifest; the object is made
 * visible under its final key only after that hash matched.
 *
 * Multipart uploads (objects over the part size, 16 MiB by default) read
 * each byte once: the parts are read and hashed in file order, each into
 * the buffer of the worker that sends it, and sent from that buffer (see
 * "the in-order round"), so the bytes the server gets are the bytes hashed
 * by construction, and a retry resends the same buffer. That costs one
 * read, one SHA-256 and one send per byte, and up to S3_BUFFER_MAX of parts
 * in memory; MD5 (which libcrypto cannot speed up: ~650 MB/s against
 * SHA-256's ~1.5 GB/s with SHA-NI) is computed only for parts kept from an
 * interrupted upload, whose ETag (the MD5 of what the server holds) must
 * match the bytes hashed now. Parts bigger than S3_BUFFER_MAX (objects over
 * 640 GB) stream from the source while the calling thread hashes it, and
 * every part's ETag is checked against the MD5 of its range instead.
 *
 * One PUT (objects up to the part size): the source is hashed (SHA-256 and
 * MD5) first, then streamed with x-amz-content-sha256 set to the verified
 * digest and Content-MD5, so the server itself also refuses a body that
 * differs, and the ETag must be the MD5 of the bytes hashed: a source that
 * changed while it was sent shows up there. Parts are sent as
 * UNSIGNED-PAYLOAD; over https TLS protects them in transit.
 *
 * Resume: CreateMultipartUpload stores the sha256 in the object's metadata
 * (x-amz-meta-rehydra-sha256) and we keep a small state object
 * "<prefix>/.rehydra-sink/uploads/<sha256>-<key hash>" with the upload id
 * and the parts done so far. The next put() of the same object asks the
 * server for the parts (ListParts); servers without ListParts (s3rver) fall
 * back to the parts the state object lists. A failure that a retry may cure
 * (network, 5xx, cancel) keeps the upload for the next run; one that it
 * cannot (bad bytes, 4xx) aborts it.
 *
 * has() trusts the sink manifest "<prefix>/.rehydra-sink.json" (read at
 * open, written at commit) or the object's rehydra-sha256 metadata, and
 * always confirms with a HEAD that the object is there with that size.
 *
 * curl 7.88's CURLOPT_AWS_SIGV4 signs every header we add and the query
 * string exactly as written: queries are written pre-sorted and encoded,
 * keys without values as "uploads=", and x-amz-content-sha256 is always
 * sent. The secret key and the session token never reach a message.
 */
#include "sink.h"
#include "sink_s3.h"
#include "cancel.h"
#include "error.h"
#include "global.h"
#include "hex.h"
#include "md5.h"
#include "sha256.h"
#include "url.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "banned.h"

#define S3_PART_DEFAULT (16ull << 20)
#define S3_PART_MIN (5ull << 20)
#define S3_PART_MAX (5ull << 30)
#define S3_PARTS_MAX 10000u
#define S3_PARALLEL_DEFAULT 4u
#define S3_PARALLEL_MAX 64u
#define S3_XML_MAX (4u << 20)
#define S3_MANIFEST_MAX (64u << 20)
#define S3_HASH_BUF (1u << 20)
/* Parts held in memory at once by the in-order round: parallel parts of at
 * most this much together; bigger parts stream from the source instead. */
#define S3_BUFFER_MAX (64ull << 20)
#define S3_READ_CHUNK (128u << 10)
#define S3_ATTEMPTS 4
#define S3_MANIFEST RH_SINK_MANIFEST_NAME
#define S3_RESERVED ".rehydra-sink"
#define S3_UPLOADS ".rehydra-sink/uploads/"
#define S3_META_SHA "x-amz-meta-rehydra-sha256"
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3_sink {
	struct rh_sink base; /* first: the ops see a struct rh_sink */
	struct rh_s3_target t;
	char *userpwd;	   /* "keyid:secret" for CURLOPT_USERPWD: secret, wiped at close */
	char *token_hdr;   /* "x-amz-security-token: ..." or NULL: secret, wiped at close */
	char *sigv4;	   /* "aws:amz:REGION:s3" */
	char key_hint[16]; /* the key id's first characters, for messages */
	unsigned parallel;
	uint64_t part_size;
	pthread_mutex_t lock;	   /* progress calls (puts run in parallel) */
	struct rh_sink_manifest m; /* path -> {size, sha256}; its own lock */
	/* The part memory of the in-order rounds of all the puts running at
	 * once: S3_BUFFER_MAX bytes for the whole sink, not per put. */
	pthread_mutex_t buf_lock;
	pthread_cond_t buf_cv;
	uint64_t buf_left;
};

/* What one request got back. */
struct s3_resp {
	long status;
	char *body;
	size_t len;
	size_t cap;
	size_t max; /* keep at most this much of the body */
	bool truncated;
	char etag[96]; /* quotes stripped */
	char meta_sha256[65];
	uint64_t length; /* Content-Length, when has_length */
	bool has_length;
};

/* A body streamed from a source range. Not hashed again: the hashing pass
 * already has this range's MD5, and the server's ETag (the MD5 of what it
 * received) must equal it. */
struct s3_stream {
	struct s3_sink *s;
	const struct rh_source *src;
	uint64_t start;
	uint64_t len;
	uint64_t pos;
	uint64_t sent; /* bytes handed to curl, retries included */
	int err;       /* a read error, message set in this thread */
};

struct s3_req {
	const char *method;	    /* GET HEAD PUT POST DELETE */
	const char *key;	    /* raw object key; NULL for the bucket */
	const char *query;	    /* encoded and sorted; NULL for none */
	const char *content_sha256; /* x-amz-content-sha256; NULL: of the memory body */
	const char *content_type;   /* NULL: none */
	const char *extra[3];	    /* more headers ("Name: value"), NULL-terminated */
	const void *body;	    /* a small memory body (PUT/POST) */
	size_t body_len;
	struct s3_stream *stream; /* or a streamed body (PUT) */
	atomic_bool *stop;	  /* set by a failing sibling part: abort; may be NULL */
	bool payload;		  /* a payload transfer: sink->cancel interrupts it */
	const char *what;	  /* for messages: "uploading part 3 of x" */
};

enum s3_part_state { PART_PENDING, PART_KEPT, PART_SENT };

struct s3_part {
	uint64_t off;
	uint64_t len;
	enum s3_part_state state;
	char etag[96];	       /* as the server spells it (quotes stripped) */
	uint8_t local_md5[16]; /* of the source range, by the hashing pass */
	bool md5_known;	       /* local_md5 was computed (kept parts; the streaming round) */
};

struct s3_upload {
	struct s3_sink *s;
	const char *path;
	const char *key;
	const char *sha256;
	uint64_t size;
	const struct rh_source *src;
	char *upload_id;
	char *upload_id_enc;
	char *state_key;
	uint64_t part_size;
	unsigned nparts;
	struct s3_part *parts;
	pthread_mutex_t lock;	    /* next, the error, parts' states, sent */
	pthread_mutex_t state_lock; /* one state-object write at a time */
	unsigned next;
	atomic_bool stop;
	int err;
	bool resumable;
	char errmsg[1024];
	uint64_t sent;
	/* the in-order round (s3_upload_round_buffered): the part whose bytes
	 * are read and hashed next, and the whole object's SHA-256 */
	pthread_cond_t turn_cv; /* with lock */
	unsigned turn;
	struct rh_sha256 sc;
	char sha_hex[65];
};

/* ---- small helpers ------------------------------------------------------ */

static char *s3_strndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static void s3_sleep(struct s3_sink *s, double seconds)
{
	struct timespec ts;

	if (s->base.cancel) {
		rh_cancel_sleep(s->base.cancel, seconds);
		return;
	}
	ts.tv_sec = (time_t)seconds;
	ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static bool s3_cancelled(const struct s3_sink *s)
{
	return s->base.cancel && rh_cancel_is_fired(s->base.cancel);
}

static void base64_encode(char *out, const uint8_t *in, size_t n)
{
	static const char tbl[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = tbl[(v >> 18) & 63];
		out[o++] = tbl[(v >> 12) & 63];
		out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? tbl[v & 63] : '=';
	}
	out[o] = '\0';
}

/* ETags compare without quotes and case (OSS answers in uppercase hex). */
static bool etag_is_md5(const char *etag, const uint8_t md5[16])
{
	char hex[33];

	rh_md5_hex(hex, md5);
	return strlen(etag) == 32 && strcasecmp(etag, hex) == 0;
}

static void etag_copy(char dst[96], const char *src, size_t n)
{
	while (n > 0 && (*src == '"' || *src == ' ')) {
		src++;
		n--;
	}
	while (n > 0 &&
	       (src[n - 1] == '"' || src[n - 1] == ' ' || src[n - 1] == '\r' || src[n - 1] == '\n'))
		n--;
	if (n > 95)
		n = 95;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* ---- a tiny XML scanner ------------------------------------------------- *
 * S3 answers with small, flat, namespace-default documents. We only ever
 * need "the text of the next <Tag>", optionally inside a parent's text, so
 * this finds elements by name and decodes the five entities and numeric
 * character references; it never builds a tree and never reads past len. */

bool rh_s3_xml_find(const char *xml, size_t len, size_t *pos, const char *tag, const char **val,
		    size_t *vlen)
{
	size_t tl = strlen(tag);
	size_t i = *pos;

	while (i < len) {
		const char *lt = memchr(xml + i, '<', len - i);
		size_t start;
		const char *gt;
		size_t j;

		if (!lt)
			return false;
		j = (size_t)(lt - xml) + 1;
		i = j;
		if (len - j < tl || memcmp(xml + j, tag, tl) != 0)
			continue;
		j += tl;
		if (j >= len || !(xml[j] == '>' || xml[j] == '/' || xml[j] == ' ' ||
				  xml[j] == '\t' || xml[j] == '\r' || xml[j] == '\n'))
			continue;
		gt = memchr(xml + j, '>', len - j);
		if (!gt)
			return false;
		start = (size_t)(gt - xml) + 1;
		if (gt[-1] == '/') { /* <Tag/> */
			*val = xml + start;
			*vlen = 0;
			*pos = start;
			return true;
		}
		for (size_t k = start; k + tl + 3 <= len; k++) {
			if (xml[k] == '<' && xml[k + 1] == '/' &&
			    memcmp(xml + k + 2, tag, tl) == 0 && xml[k + 2 + tl] == '>') {
				*val = xml + start;
				*vlen = k - start;
				*pos = k + tl + 3;
				return true;
			}
		}
		return false;
	}
	return false;
}

/* The decoded text of `v`; new string or NULL when out of memory. Non-ASCII
 * character references become '?': nothing we read needs them. */
static char *xml_text(const char *v, size_t n)
{
	static const struct {
		const char *ent;
		char ch;
	} ents[] = {
	    {"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}, {"&apos;", '\''}};
	char *out = malloc(n + 1);
	size_t o = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n;) {
		bool done = false;

		if (v[i] == '&') {
			for (size_t e = 0; e < sizeof(ents) / sizeof(ents[0]); e++) {
				size_t el = strlen(ents[e].ent);

				if (n - i >= el && memcmp(v + i, ents[e].ent, el) == 0) {
					out[o++] = ents[e].ch;
					i += el;
					done = true;
					break;
				}
			}
			if (!done && n - i > 3 && v[i + 1] == '#') {
				const char *semi = memchr(v + i, ';', n - i < 12 ? n - i : 12);

				if (semi) {
					bool hex = v[i + 2] == 'x' || v[i + 2] == 'X';
					unsigned long cp = 0;

					for (const char *c = v + i + (hex ? 3 : 2); c < semi; c++) {
						int d = rh_hex_val(*c);

						if (d < 0 || (!hex && d > 9)) {
							cp = 0x110000;
							break;
						}
						cp = cp * (hex ? 16 : 10) + (unsigned long)d;
						if (cp > 0x10ffff)
							break;
					}
					out[o++] = cp > 0 && cp < 0x80 ? (char)cp : '?';
					i = (size_t)(semi - v) + 1;
					done = true;
				}
			}
		}
		if (!done)
			out[o++] = v[i++];
	}
	out[o] = '\0';
	return out;
}

/* The decoded text of the first <tag> in xml; new string or NULL. */
char *rh_s3_xml_get(const char *xml, size_t len, const char *tag)
{
	const char *v;
	size_t vl;
	size_t pos = 0;

	if (!xml || !rh_s3_xml_find(xml, len, &pos, tag, &v, &vl))
		return NULL;
	return xml_text(v, vl);
}

/* ---- target URL --------------------------------------------------------- */

static bool bucket_ok(const char *b)
{
	size_t n = strlen(b);

	if (n < 3 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = b[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
		      c == '_'))
			return false;
	}
	return b[0] != '.' && b[0] != '-' && b[n - 1] != '.' && b[n - 1] != '-';
}

static bool region_ok(const char *r)
{
	size_t n = strlen(r);

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-' ||
		      r[i] == '_'))
			return false;
	return true;
}

/* Accepts "http(s)://host[:port][/]"; a path, query or user part is refused:
 * the bucket and key are ours to place. */
static bool endpoint_ok(const char *e)
{
	const char *h;
	size_t n;

	if (strncmp(e, "https://", 8) == 0)
		h = e + 8;
	else if (strncmp(e, "http://", 7) == 0)
		h = e + 7;
	else
		return false;
	n = strlen(h);
	if (n == 0 || h[0] == ':' || h[0] == '/')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];

		if (c == '/' && i == n - 1)
			break;
		if (c <= 0x20 || c >= 0x7f || c == '/' || c == '?' || c == '#' || c == '@' ||
		    c == '\\')
			return false;
	}
	return true;
}

static const char *endpoint_host(const char *e)
{
	const char *h = strstr(e, "://");

	return h ? h + 3 : e;
}

static bool host_ends_with(const char *endpoint, const char *suffix)
{
	const char *h = endpoint_host(endpoint);
	const char *colon = strchr(h, ':');
	size_t hl = colon ? (size_t)(colon - h) : strlen(h);
	size_t sl = strlen(suffix);

	return hl >= sl && strncasecmp(h + hl - sl, suffix, sl) == 0;
}

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

void rh_s3_target_release(struct rh_s3_target *t)
{
	if (!t)
		return;
	free(t->bucket);
	free(t->prefix);
	free(t->endpoint);
	free(t->region);
	memset(t, 0, sizeof(*t));
}

int rh_s3_target_parse(struct rh_s3_target *t, const char *url)
{
	const char *p;
	const char *q;
	const char *slash;
	const char *bend;
	char *style = NULL;
	char *prefix_raw = NULL;
	int err = 0;

	memset(t, 0, sizeof(*t));
	if (!url || strncmp(url, "s3://", 5) != 0) {
		err = rh_error_set(RH_EINVAL,
				   "bad s3 target \"%s\": expected "
				   "s3://bucket/prefix?endpoint=URL&region=R",
				   url ? url : "");
		goto done;
	}
	p = url + 5;
	q = strchr(p, '?');
	slash = strchr(p, '/');
	bend = q && (!slash || q < slash) ? q : slash ? slash : p + strlen(p);
	t->bucket = s3_strndup(p, (size_t)(bend - p));
	if (!t->bucket) {
		err = rh_error_set(RH_ENOMEM, "out of memory parsing %s", url);
		goto done;
	}
	if (!bucket_ok(t->bucket)) {
		err = rh_error_set(RH_EINVAL,
				   "bad bucket name \"%s\" in s3 target %s: use 3-63 "
				   "lowercase letters, digits, '.', '-' or '_'",
				   t->bucket, url);
		goto done;
	}
	/* prefix: between the bucket and '?', without surrounding slashes */
	p = bend;
	while (*p == '/')
		p++;
	{
		const char *pe = q ? q : p + strlen(p);

		while (pe > p && pe[-1] == '/')
			pe--;
		if (rh_url_decode(&prefix_raw, p, (size_t)(pe - p), 0) < 0) {
			err = rh_error_set(RH_EINVAL,
					   "bad percent-encoding in the prefix of s3 "
					   "target %s",
					   url);
			goto done;
		}
	}
	if (*prefix_raw && (!rh_sink_path_is_safe(prefix_raw) ||
			    strncmp(prefix_raw, S3_RESERVED, strlen(S3_RESERVED)) == 0)) {
		err = rh_error_set(RH_EINVAL, "unsafe prefix \"%s\" in s3 target %s", prefix_raw,
				   url);
		goto done;
	}
	t->prefix = prefix_raw;
	prefix_raw = NULL;
	/* query */
	for (const char *a = q ? q + 1 : NULL; a && *a;) {
		const char *amp = strchr(a, '&');
		const char *end = amp ? amp : a + strlen(a);
		const char *eq = memchr(a, '=', (size_t)(end - a));
		char **slot = NULL;
		size_t kl = eq ? (size_t)(eq - a) : (size_t)(end - a);

		if (kl == 8 && strncmp(a, "endpoint", 8) == 0)
			slot = &t->endpoint;
		else if (kl == 6 && strncmp(a, "region", 6) == 0)
			slot = &t->region;
		else if (kl == 5 && strncmp(a, "style", 5) == 0)
			slot = &style;
		if (!slot || !eq) {
			err = rh_error_set(RH_EINVAL,
					   "unknown or empty option \"%.*s\" in s3 "
					   "target %s: use endpoint=, region= and "
					   "style=path|virtual",
					   (int)(end - a), a, url);
			goto done;
		}
		free(*slot);
		if (rh_url_decode(slot, eq + 1, (size_t)(end - eq - 1), 0) < 0) {
			err = rh_error_set(RH_EINVAL,
					   "bad percent-encoding in option \"%.*s\" of "
					   "s3 target %s",
					   (int)kl, a, url);
			goto done;
		}
		a = amp ? amp + 1 : end;
	}
	if (!t->region) {
		const char *r = env_nonempty("AWS_REGION");

		if (!r)
			r = env_nonempty("AWS_DEFAULT_REGION");
		t->region = strdup(r ? r : "us-east-1");
	}
	if (!t->region) {
		err = rh_error_set(RH_ENOMEM, "out of memory parsing %s", url);
		goto done;
	}
	if (!region_ok(t->region)) {
		err = rh_error_set(RH_EINVAL,
				   "bad region \"%s\" for s3 target %s: use letters, "
				   "digits and '-' (e.g. eu-north1, oss-cn-hangzhou)",
				   t->region, url);
		goto done;
	}
	if (!t->endpoint) {
		const char *e = env_nonempty("AWS_ENDPOINT_URL_S3");

		if (!e)
			e = env_nonempty("AWS_ENDPOINT_URL");
		if (e)
			t->endpoint = strdup(e);
		else if (asprintf(&t->endpoint, "https://s3.%s.amazonaws.com", t->region) < 0)
			t->endpoint = NULL;
	}
	if (!t->endpoint) {
		err = rh_error_set(RH_ENOMEM, "out of memory parsing %s", url);
		goto done;
	}
	if (!endpoint_ok(t->endpoint)) {
		err = rh_error_set(RH_EINVAL,
				   "bad s3 endpoint \"%s\" for %s: expected "
				   "http(s)://host[:port] without a path",
				   t->endpoint, url);
		goto done;
	}
	if (t->endpoint[strlen(t->endpoint) - 1] == '/')
		t->endpoint[strlen(t->endpoint) - 1] = '\0';
	if (style && strcmp(style, "virtual") == 0) {
		t->virtual_style = true;
	} else if (style && strcmp(style, "path") == 0) {
		t->virtual_style = false;
	} else if (style) {
		err = rh_error_set(RH_EINVAL,
				   "bad style \"%s\" for s3 target %s: use path or "
				   "virtual",
				   style, url);
		goto done;
	} else {
		/* These services want (OSS: require) virtual-host style; a bucket
		 * with dots would not match their wildcard TLS certificates. */
		t->virtual_style = (host_ends_with(t->endpoint, ".amazonaws.com") ||
				    host_ends_with(t->endpoint, ".aliyuncs.com") ||
				    host_ends_with(t->endpoint, ".nebius.cloud")) &&
				   (strchr(t->bucket, '.') == NULL ||
				    host_ends_with(t->endpoint, ".aliyuncs.com"));
	}
	if (t->virtual_style && strchr(t->bucket, '_')) {
		err = rh_error_set(RH_EINVAL,
				   "bucket \"%s\" of s3 target %s cannot be a host "
				   "name: use style=path",
				   t->bucket, url);
		goto done;
	}
done:
	free(style);
	free(prefix_raw);
	if (err < 0)
		rh_s3_target_release(t);
	return err;
}

char *rh_s3_uri_encode(const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1);
	size_t o = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}

int rh_s3_url_build(char **out, const struct rh_s3_target *t, const char *key, const char *query)
{
	const char *host = endpoint_host(t->endpoint);
	size_t scheme_len = (size_t)(host - t->endpoint);
	char *ekey = rh_s3_uri_encode(key ? key : "", true);
	int n;

	*out = NULL;
	if (!ekey)
		return rh_error_set(RH_ENOMEM, "out of memory building an s3 url");
	if (t->virtual_style)
		n = asprintf(out, "%.*s%s.%s/%s%s%s", (int)scheme_len, t->endpoint, t->bucket, host,
			     ekey, query ? "?" : "", query ? query : "");
	else
		n = asprintf(out, "%s/%s%s%s%s%s", t->endpoint, t->bucket, *ekey ? "/" : "", ekey,
			     query ? "?" : "", query ? query : "");
	free(ekey);
	if (n < 0) {
		*out = NULL;
		return rh_error_set(RH_ENOMEM, "out of memory building an s3 url");
	}
	return 0;
}

/* ---- one HTTP request --------------------------------------------------- */

static size_t s3_on_body(char *ptr, size_t size, size_t nmemb, void *user)
{
	struct s3_resp *rs = user;
	size_t n = size * nmemb;
	size_t room = rs->max > rs->len ? rs->max - rs->len : 0;
	size_t take = n < room ? n : room;

	if (take < n)
		rs->truncated = true;
	if (take == 0)
		return n;
	if (rs->len + take + 1 > rs->cap) {
		size_t cap = rs->cap ? rs->cap : 4096;
		char *nb;

		while (cap < rs->len + take + 1)
			cap *= 2;
		nb = realloc(rs->body, cap);
		if (!nb)
			return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
		rs->body = nb;
		rs->cap = cap;
	}
	memcpy(rs->body + rs->len, ptr, take);
	rs->len += take;
	rs->body[rs->len] = '\0';
	return n;
}

static bool header_is(const char *line, size_t n, const char *name, const char **val, size_t *vlen)
{
	size_t nl = strlen(name);

	if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return false;
	*val = line + nl + 1;
	*vlen = n - nl - 1;
	while (*vlen > 0 && (**val == ' ' || **val == '\t')) {
		(*val)++;
		(*vlen)--;
	}
	while (*vlen > 0 &&
	       ((*val)[*vlen - 1] == '\r' || (*val)[*vlen - 1] == '\n' || (*val)[*vlen - 1] == ' '))
		(*vlen)--;
	return true;
}

static size_t s3_on_header(char *line, size_t size, size_t nmemb, void *user)
{
	struct s3_resp *rs = user;
	size_t n = size * nmemb;
	const char *v;
	size_t vl;

	if (header_is(line, n, "etag", &v, &vl)) {
		etag_copy(rs->etag, v, vl);
	} else if (header_is(line, n, S3_META_SHA, &v, &vl)) {
		if (vl == 64) {
			memcpy(rs->meta_sha256, v, 64);
			rs->meta_sha256[64] = '\0';
		}
	} else if (header_is(line, n, "content-length", &v, &vl)) {
		char num[24];
		char *end;

		if (vl > 0 && vl < sizeof(num)) {
			memcpy(num, v, vl);
			num[vl] = '\0';
			errno = 0;
			rs->length = strtoull(num, &end, 10);
			rs->has_length = errno == 0 && *end == '\0';
		}
	}
	return n;
}

static size_t s3_on_read(char *buf, size_t size, size_t nitems, void *user)
{
	struct s3_stream *st = user;
	size_t want = size * nitems;
	uint64_t left = st->len - st->pos;
	long got;

	if (left == 0)
		return 0;
	if (want > left)
		want = (size_t)left;
	got = st->src->read_at(st->src->user, st->start + st->pos, buf, want);
	if (got < 0) {
		st->err = (int)got;
		return CURL_READFUNC_ABORT;
	}
	if (got == 0) {
		st->err = rh_error_set(RH_EVERIFY,
				       "%s ended at byte %llu, before the %llu "
				       "bytes the manifest says",
				       st->src->name ? st->src->name : "source",
				       (unsigned long long)(st->start + st->pos),
				       (unsigned long long)(st->start + st->len));
		return CURL_READFUNC_ABORT;
	}
	st->pos += (uint64_t)got;
	st->sent += (uint64_t)got;
	if (st->s->base.progress) {
		pthread_mutex_lock(&st->s->lock);
		st->s->base.progress(st->s->base.progress_user, (uint64_t)got);
		pthread_mutex_unlock(&st->s->lock);
	}
	return (size_t)got;
}

/* curl rewinds a body when it must resend it (a reused connection that
 * turned out dead). */
static int s3_on_seek(void *user, curl_off_t offset, int origin)
{
	struct s3_stream *st = user;

	if (origin != SEEK_SET || offset != 0)
		return CURL_SEEKFUNC_CANTSEEK;
	st->pos = 0;
	return CURL_SEEKFUNC_OK;
}

struct s3_xfer {
	struct s3_sink *s;
	const struct s3_req *rq;
};

static int s3_on_xfer(void *user, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
	struct s3_xfer *x = user;

	(void)dlt;
	(void)dln;
	(void)ult;
	(void)uln;
	if (x->rq->stop && atomic_load(x->rq->stop))
		return 1;
	if (x->rq->payload && s3_cancelled(x->s))
		return 1;
	return 0;
}

static void s3_resp_reset(struct s3_resp *rs, size_t max)
{
	free(rs->body);
	memset(rs, 0, sizeof(*rs));
	rs->max = max;
}

static void s3_resp_release(struct s3_resp *rs)
{
	free(rs->body);
	memset(rs, 0, sizeof(*rs));
}

static bool s3_retryable_status(long status)
{
	return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

/* Sends one request, retrying transport failures, 429 and 5xx with backoff.
 * Returns 0 with rs->status set (any HTTP status: the caller decides), or
 * RH_ECANCELLED, RH_EIO (transport), a source read error, RH_ENOMEM. */
static int s3_request(struct s3_sink *s, CURL *h, const struct s3_req *rq, struct s3_resp *rs,
		      size_t max)
{
	struct curl_slist *hdrs = NULL;
	struct curl_slist *tmp;
	struct s3_xfer x = {s, rq};
	char errbuf[CURL_ERROR_SIZE];
	char line[160];
	char sha[65];
	char *url = NULL;
	double backoff = 0.25;
	CURLcode rc = CURLE_OK;
	int err = 0;

	err = rh_s3_url_build(&url, &s->t, rq->key, rq->query);
	if (err < 0)
		goto done;
	if (rq->content_sha256)
		snprintf(sha, sizeof(sha), "%s", rq->content_sha256);
	else
		rh_sha256_buf_hex(sha, rq->body ? rq->body : "", rq->body ? rq->body_len : 0);
	snprintf(line, sizeof(line), "x-amz-content-sha256: %s", sha);
	tmp = curl_slist_append(hdrs, line);
	if (tmp && rq->content_type) {
		hdrs = tmp;
		snprintf(line, sizeof(line), "Content-Type: %s", rq->content_type);
		tmp = curl_slist_append(hdrs, line);
	}
	if (tmp && s->token_hdr) {
		hdrs = tmp;
		tmp = curl_slist_append(hdrs, s->token_hdr);
	}
	for (int i = 0; tmp && i < 3 && rq->extra[i]; i++) {
		hdrs = tmp;
		tmp = curl_slist_append(hdrs, rq->extra[i]);
	}
	if (!tmp) {
		err = rh_error_set(RH_ENOMEM, "out of memory building an s3 request");
		goto done;
	}
	hdrs = tmp;
	for (int attempt = 1;; attempt++) {
		s3_resp_reset(rs, max);
		if (rq->stream) {
			rq->stream->pos = 0;
			rq->stream->err = 0;
		}
		if (rq->payload && s3_cancelled(s)) {
			err = rh_error_set(RH_ECANCELLED, "cancelled while %s", rq->what);
			goto done;
		}
		curl_easy_reset(h);
		errbuf[0] = '\0';
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
		curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 20L);
		/* A stalled connection (no byte for a minute) fails and is retried. */
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
		curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(h, CURLOPT_AWS_SIGV4, s->sigv4);
		curl_easy_setopt(h, CURLOPT_USERPWD, s->userpwd);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s3_on_body);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, rs);
		curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, s3_on_header);
		curl_easy_setopt(h, CURLOPT_HEADERDATA, rs);
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, s3_on_xfer);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
		if (strcmp(rq->method, "HEAD") == 0) {
			curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
		} else if (rq->stream) {
			curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024);
			curl_easy_setopt(h, CURLOPT_READFUNCTION, s3_on_read);
			curl_easy_setopt(h, CURLOPT_READDATA, rq->stream);
			curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, s3_on_seek);
			curl_easy_setopt(h, CURLOPT_SEEKDATA, rq->stream);
			curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->stream->len);
		} else if (strcmp(rq->method, "GET") != 0) {
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
			if (rq->body || strcmp(rq->method, "DELETE") != 0) {
				curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
						 (curl_off_t)(rq->body ? rq->body_len : 0));
				curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
			}
		}
		rc = curl_easy_perform(h);
		if (rc == CURLE_OK)
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
		if (rq->stream && rq->stream->err < 0) {
			err = rq->stream->err; /* the source's message is set */
			rh_error_prefix(err, "while %s", rq->what);
			goto done;
		}
		if (rq->stop && atomic_load(rq->stop)) {
			err = rh_error_set(RH_ECANCELLED, "stopped %s: another part failed",
					   rq->what);
			goto done;
		}
		if (rc == CURLE_ABORTED_BY_CALLBACK || (rq->payload && s3_cancelled(s))) {
			err = rh_error_set(RH_ECANCELLED, "cancelled while %s", rq->what);
			goto done;
		}
		if (rc == CURLE_OK && !s3_retryable_status(rs->status))
			break;
		if (rc == CURLE_WRITE_ERROR) {
			err = rh_error_set(RH_ENOMEM, "out of memory reading the answer to %s",
					   rq->what);
			goto done;
		}
		/* a bad certificate will not get better by asking again */
		if (attempt >= S3_ATTEMPTS || rc == CURLE_PEER_FAILED_VERIFICATION) {
			if (rc == CURLE_OK)
				break; /* the caller names the 5xx */
			if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
				err = rh_error_set(RH_EIO,
						   "cannot connect to s3 endpoint %s while "
						   "%s: %s: check endpoint= in the target url (or "
						   "AWS_ENDPOINT_URL) and that the service is up",
						   s->t.endpoint, rq->what,
						   errbuf[0] ? errbuf : curl_easy_strerror(rc));
			else if (rc == CURLE_PEER_FAILED_VERIFICATION ||
				 rc == CURLE_SSL_CACERT_BADFILE || rc == CURLE_SSL_CONNECT_ERROR)
				err = rh_error_set(RH_EIO,
						   "tls verification failed for s3 "
						   "endpoint %s while %s: %s",
						   s->t.endpoint, rq->what,
						   errbuf[0] ? errbuf : curl_easy_strerror(rc));
			else
				err = rh_error_set(RH_EIO, "s3 endpoint %s failed while %s: %s",
						   s->t.endpoint, rq->what,
						   errbuf[0] ? errbuf : curl_easy_strerror(rc));
			goto done;
		}
		s3_sleep(s, backoff);
		backoff *= 2;
	}
done:
	curl_slist_free_all(hdrs);
	free(url);
	return err;
}

/* Turns an unexpected HTTP status into a message. Only the S3 error Code and
 * a sanitised Message are quoted: the body of some errors echoes the key id,
 * which we never print in full. */
static int s3_status_error(struct s3_sink *s, const struct s3_resp *rs, const char *what)
{
	char *code = rh_s3_xml_get(rs->body, rs->len, "Code");
	char *msg = rh_s3_xml_get(rs->body, rs->len, "Message");
	const char *keyid = getenv("AWS_ACCESS_KEY_ID");
	char detail[320] = "";
	int err;

	if (msg) {
		size_t n = strlen(msg);

		for (size_t i = 0; i < n; i++)
			if ((unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] >= 0x7f)
				msg[i] = ' ';
		if (n > 200)
			msg[200] = '\0';
		if (keyid && *keyid && strstr(msg, keyid)) {
			free(msg);
			msg = NULL;
		}
	}
	if (code) {
		for (char *c = code; *c; c++)
			if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
			      (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' || *c == '_'))
				*c = '?';
		if (strlen(code) > 64)
			code[64] = '\0';
	}
	if (code || msg)
		snprintf(detail, sizeof(detail), " (%s%s%s)", code ? code : "",
			 code && msg ? ": " : "", msg ? msg : "");
	if ((rs->status == 403 || rs->status == 401) && code &&
	    strcmp(code, "SignatureDoesNotMatch") == 0)
		err =
		    rh_error_set(RH_EIO,
				 "access denied by s3 endpoint %s for bucket %s%s while "
				 "%s: the endpoint knows the key id but not this signature: "
				 "check that AWS_SECRET_ACCESS_KEY is the secret of "
				 "AWS_ACCESS_KEY_ID (%s)%s",
				 s->t.endpoint, s->t.bucket, detail, what, s->key_hint,
				 s->token_hdr ? " and that AWS_SESSION_TOKEN belongs to them" : "");
	else if (rs->status == 403 || rs->status == 401)
		err = rh_error_set(RH_EIO,
				   "access denied by s3 endpoint %s for bucket %s%s while "
				   "%s: check AWS_ACCESS_KEY_ID (%s) and AWS_SECRET_ACCESS_KEY%s",
				   s->t.endpoint, s->t.bucket, detail, what, s->key_hint,
				   s->token_hdr ? " and AWS_SESSION_TOKEN" : "");
	else if (rs->status == 404 && code && strcmp(code, "NoSuchBucket") == 0)
		err = rh_error_set(RH_ENOTFOUND,
				   "bucket %s does not exist at s3 endpoint %s: "
				   "create it, or fix the bucket, endpoint= or region= of the "
				   "target url",
				   s->t.bucket, s->t.endpoint);
	else if (rs->status == 404)
		err = rh_error_set(RH_ENOTFOUND, "s3 endpoint %s answered 404%s while %s",
				   s->t.endpoint, detail, what);
	else if (rs->status == 301 || rs->status == 307 ||
		 (code && strcmp(code, "AuthorizationHeaderMalformed") == 0))
		err = rh_error_set(RH_EIO,
				   "s3 endpoint %s answered %ld%s while %s: the bucket %s "
				   "is probably in another region: fix region= or endpoint= of "
				   "the target url",
				   s->t.endpoint, rs->status, detail, what, s->t.bucket);
	else
		err = rh_error_set(RH_EIO, "s3 endpoint %s answered %ld%s while %s", s->t.endpoint,
				   rs->status, detail, what);
	free(code);
	free(msg);
	return err;
}

/* The object key of a manifest path (new string). */
static char *s3_key(const struct s3_sink *s, const char *path)
{
	char *k = NULL;

	if (asprintf(&k, "%s%s%s", s->t.prefix, *s->t.prefix ? "/" : "", path) < 0)
		return NULL;
	return k;
}

static bool s3_path_ok(const char *path)
{
	return rh_sink_path_is_safe(path) && strncmp(path, S3_RESERVED, strlen(S3_RESERVED)) != 0;
}

/* A small request with an optional memory body; 2xx expected. */
static int s3_simple(struct s3_sink *s, CURL *h, struct s3_req *rq, struct s3_resp *rs, size_t max)
{
	int err = s3_request(s, h, rq, rs, max);

	if (err == 0 && (rs->status < 200 || rs->status > 299))
		err = s3_status_error(s, rs, rq->what);
	return err;
}

/* ---- manifest, has, commit ---------------------------------------------- */

static int s3_manifest_load(struct s3_sink *s, CURL *h)
{
	struct s3_resp rs = {0};
	json_error_t jerr;
	json_t *doc = NULL;
	char *key = s3_key(s, S3_MANIFEST);
	struct s3_req rq = {.method = "GET", .key = key, .what = "reading the sink manifest"};
	int err = 0;

	if (!key) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening %s", s->base.url);
		goto done;
	}
	err = s3_request(s, h, &rq, &rs, S3_MANIFEST_MAX);
	if (err < 0)
		goto done;
	if (rs.status == 404) {
		char *code = rh_s3_xml_get(rs.body, rs.len, "Code");
		bool no_key = !code || strcmp(code, "NoSuchBucket") != 0;

		free(code);
		if (!no_key) {
			err = s3_status_error(s, &rs, rq.what);
			goto done;
		}
	} else if (rs.status != 200) {
		err = s3_status_error(s, &rs, rq.what);
		goto done;
	} else if (rs.truncated) {
		err = rh_error_set(RH_EINVAL, "the manifest %s of sink %s is larger than %u MiB",
				   key, s->base.url, S3_MANIFEST_MAX >> 20);
		goto done;
	} else {
		doc = json_loadb(rs.body ? rs.body : "", rs.len, JSON_REJECT_DUPLICATES, &jerr);
	}
	/* A missing or damaged manifest only costs HEADs: start empty. */
	rh_sink_manifest_adopt(&s->m, doc);
done:
	json_decref(doc);
	s3_resp_release(&rs);
	free(key);
	return err;
}

static int s3_remember(struct s3_sink *s, const char *path, uint64_t size, const char *sha256)
{
	return rh_sink_manifest_set(&s->m, path, size, sha256, NULL, s->base.url);
}

static void s3_forget(struct s3_sink *s, const char *path)
{
	rh_sink_manifest_forget(&s->m, path);
}

static int s3_has(struct rh_sink *base, const char *path, uint64_t size, const char *sha256,
		  bool *present)
{
	struct s3_sink *s = (struct s3_sink *)base;
	struct s3_resp rs = {0};
	char what[512];
	char *key = NULL;
	CURL *h = NULL;
	bool listed;
	int err = 0;

	*present = false;
	if (!s3_path_ok(path) || !rh_hex_is_sha256(sha256)) {
		err = rh_error_set(RH_EINVAL, "unsafe path \"%s\" or bad sha256 for sink %s", path,
				   base->url);
		goto done;
	}
	listed = rh_sink_manifest_match(&s->m, path, size, sha256) != NULL;
	key = s3_key(s, path);
	h = curl_easy_init();
	if (!key || !h) {
		err = rh_error_set(RH_ENOMEM, "out of memory checking %s in sink %s", path,
				   base->url);
		goto done;
	}
	snprintf(what, sizeof(what), "checking %s in %s", path, base->url);
	{
		struct s3_req rq = {.method = "HEAD", .key = key, .what = what};

		err = s3_request(s, h, &rq, &rs, 0);
	}
	if (err < 0)
		goto done;
	if (rs.status == 404) {
		s3_forget(s, path);
		goto done;
	}
	if (rs.status != 200) {
		err = s3_status_error(s, &rs, what);
		goto done;
	}
	if (!rs.has_length || rs.length != size) {
		s3_forget(s, path);
		goto done;
	}
	if (rs.meta_sha256[0]) {
		*present = strcmp(rs.meta_sha256, sha256) == 0;
		/* The object says what it holds: rebuild a lost manifest entry. */
		if (*present && !listed)
			err = s3_remember(s, path, size, sha256);
		goto done;
	}
	*present = listed;
done:
	if (h)
		curl_easy_cleanup(h);
	s3_resp_release(&rs);
	free(key);
	return err;
}

static int s3_commit(struct rh_sink *base)
{
	struct s3_sink *s = (struct s3_sink *)base;
	struct s3_resp rs = {0};
	char *text = NULL;
	char *key = NULL;
	CURL *h = NULL;
	int err = 0;

	if (!s->m.dirty)
		goto done;
	if (rh_sink_manifest_text(&s->m, &text, base->url) < 0)
		text = NULL;
	key = s3_key(s, S3_MANIFEST);
	h = curl_easy_init();
	if (!text || !key || !h) {
		err = rh_error_set(RH_ENOMEM, "out of memory writing the manifest of sink %s",
				   base->url);
		goto done;
	}
	{
		struct s3_req rq = {.method = "PUT",
				    .key = key,
				    .body = text,
				    .body_len = strlen(text),
				    .content_type = "application/json",
				    .what = "writing the sink manifest"};

		err = s3_simple(s, h, &rq, &rs, S3_XML_MAX);
	}
	if (err < 0) {
		rh_error_prefix(err, "cannot record the content of sink %s", base->url);
		goto done;
	}
	rh_sink_manifest_saved(&s->m);
done:
	if (h)
		curl_easy_cleanup(h);
	s3_resp_release(&rs);
	free(text);
	free(key);
	return err;
}

/* ---- put: hashing ------------------------------------------------------- */

/* Reads [0, size) of the source in order: the SHA-256 of all of it, and the
 * MD5 of each part_size range into md5s (NULL: none; parts[i].local_md5 of
 * an upload). Stops early when `stop` is set. */
static int s3_hash_source(struct s3_sink *s, const struct rh_source *src, uint64_t size,
			  uint64_t part_size, struct s3_upload *u, uint8_t single_md5[16],
			  char sha_hex[65])
{
	struct rh_sha256 sc = {0};
	struct rh_md5 mc = {0};
	uint8_t digest[32];
	uint8_t *buf = malloc(S3_HASH_BUF);
	uint64_t off = 0;
	unsigned part = 0;
	int err = 0;

	if (!buf)
		return rh_error_set(RH_ENOMEM, "out of memory hashing %s", src->name);
	if ((err = rh_sha256_init(&sc)) < 0 || (err = rh_md5_init(&mc)) < 0)
		goto done;
	while (off < size) {
		uint64_t part_end = u ? (uint64_t)(part + 1) * part_size : size;
		size_t want = S3_HASH_BUF;
		long n;

		if (part_end > size)
			part_end = size;
		if (want > part_end - off)
			want = (size_t)(part_end - off);
		if (s3_cancelled(s)) {
			err = rh_error_set(RH_ECANCELLED, "cancelled while hashing %s", src->name);
			goto done;
		}
		if (u && atomic_load(&u->stop)) {
			err = RH_ECANCELLED; /* the workers' error is the one to report */
			goto done;
		}
		n = src->read_at(src->user, off, buf, want);
		if (n < 0) {
			err = (int)n;
			goto done;
		}
		if (n == 0) {
			err = rh_error_set(RH_EVERIFY,
					   "%s ended after %llu of the %llu bytes the "
					   "manifest says",
					   src->name, (unsigned long long)off,
					   (unsigned long long)size);
			goto done;
		}
		rh_sha256_update(&sc, buf, (size_t)n);
		rh_md5_update(&mc, buf, (size_t)n);
		off += (uint64_t)n;
		if (u && off == part_end) {
			rh_md5_final(&mc, u->parts[part].local_md5);
			u->parts[part].md5_known = true;
			err = rh_md5_init(&mc);
			if (err < 0)
				goto done;
			part++;
		}
	}
	{
		/* a source longer than the manifest says is just as wrong */
		uint8_t extra;

		if (src->read_at(src->user, size, &extra, 1) > 0) {
			err = rh_error_set(RH_EVERIFY,
					   "%s is larger than the %llu bytes the "
					   "manifest says",
					   src->name, (unsigned long long)size);
			goto done;
		}
	}
	if (!u)
		rh_md5_final(&mc, single_md5);
	rh_sha256_final(&sc, digest);
	rh_sha256_hex(sha_hex, digest);
done:
	rh_sha256_free(&sc);
	rh_md5_free(&mc);
	free(buf);
	return err;
}

/* ---- put: one PUT ------------------------------------------------------- */

static void s3_delete_quietly(struct s3_sink *s, CURL *h, const char *key, const char *query)
{
	struct s3_resp rs = {0};
	struct s3_req rq = {.method = "DELETE", .key = key, .query = query, .what = "cleaning up"};

	(void)s3_request(s, h, &rq, &rs, S3_XML_MAX);
	s3_resp_release(&rs);
}

static int s3_put_single(struct s3_sink *s, const char *path, const char *key, uint64_t size,
			 const char *sha256, const struct rh_source *src,
			 struct rh_put_stats *stats)
{
	struct s3_stream st = {.s = s, .src = src, .start = 0, .len = size};
	struct s3_resp rs = {0};
	uint8_t md5[16];
	char md5_b64[32];
	char md5_hdr[64];
	char meta_hdr[128];
	char got[65];
	char what[512];
	CURL *h = NULL;
	int err;

	err = s3_hash_source(s, src, size, 0, NULL, md5, got);
	if (err < 0)
		goto done;
	if (strcmp(got, sha256) != 0) {
		err = rh_error_set(RH_EVERIFY,
				   "sha256 mismatch for %s (from %s): expected %s, got "
				   "%s; nothing was written to %s",
				   path, src->name, sha256, got, s->base.url);
		goto done;
	}
	h = curl_easy_init();
	if (!h) {
		err = rh_error_set(RH_ENOMEM, "out of memory uploading %s", path);
		goto done;
	}
	base64_encode(md5_b64, md5, 16);
	snprintf(md5_hdr, sizeof(md5_hdr), "Content-MD5: %s", md5_b64);
	snprintf(meta_hdr, sizeof(meta_hdr), "%s: %s", S3_META_SHA, sha256);
	snprintf(what, sizeof(what), "uploading %s to %s", path, s->base.url);
	{
		/* x-amz-content-sha256 is the verified digest: AWS refuses a body
		 * that differs, and Content-MD5 makes other services do the same. */
		struct s3_req rq = {.method = "PUT",
				    .key = key,
				    .content_sha256 = sha256,
				    .content_type = "application/octet-stream",
				    .extra = {md5_hdr, meta_hdr, NULL},
				    .stream = &st,
				    .payload = true,
				    .what = what};

		err = s3_simple(s, h, &rq, &rs, S3_XML_MAX);
	}
	stats->bytes_sent += st.sent;
	if (err < 0)
		goto done;
	/* The ETag is the MD5 of what the server stored: it must be the MD5
	 * of the bytes the SHA-256 pass hashed, or the source changed while it
	 * was sent (or the bucket is KMS-encrypted). */
	if (!etag_is_md5(rs.etag, md5)) {
		char hex[33];

		rh_md5_hex(hex, md5);
		s3_delete_quietly(s, h, key, NULL);
		err = rh_error_set(RH_EVERIFY,
				   "s3 endpoint %s stored %s with ETag \"%s\", not the "
				   "MD5 %s of the bytes hashed: %s changed while it was "
				   "uploaded, or the bucket uses KMS encryption (not supported); "
				   "the object was removed",
				   s->t.endpoint, path, rs.etag, hex, src->name);
		goto done;
	}
	err = s3_remember(s, path, size, sha256);
done:
	if (h)
		curl_easy_cleanup(h);
	s3_resp_release(&rs);
	return err;
}

/* ---- put: multipart ----------------------------------------------------- */

static void s3_upload_fail(struct s3_upload *u, int err, bool resumable)
{
	pthread_mutex_lock(&u->lock);
	if (u->err == 0) {
		u->err = err;
		u->resumable = resumable;
		snprintf(u->errmsg, sizeof(u->errmsg), "%s", rh_error_last());
	}
	atomic_store(&u->stop, true);
	pthread_cond_broadcast(&u->turn_cv);
	pthread_mutex_unlock(&u->lock);
}

/* Writes the state object: the upload id and the parts done so far. A
 * failure only costs the ability to resume, so it is not an error. */
static void s3_state_write(struct s3_upload *u, CURL *h)
{
	struct s3_resp rs = {0};
	json_t *parts = json_object();
	json_t *doc = NULL;
	char *text = NULL;

	pthread_mutex_lock(&u->state_lock);
	pthread_mutex_lock(&u->lock);
	for (unsigned i = 0; parts && i < u->nparts; i++) {
		char num[16];

		if (u->parts[i].state == PART_PENDING)
			continue;
		snprintf(num, sizeof(num), "%u", i + 1);
		json_object_set_new(parts, num, json_string(u->parts[i].etag));
	}
	pthread_mutex_unlock(&u->lock);
	if (parts)
		doc = json_pack("{s:i, s:s, s:I, s:I, s:s, s:s, s:o}", "rehydra_upload", 1, "key",
				u->key, "size", (json_int_t)u->size, "part_size",
				(json_int_t)u->part_size, "sha256", u->sha256, "upload_id",
				u->upload_id, "parts", parts);
	text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	if (text) {
		struct s3_req rq = {.method = "PUT",
				    .key = u->state_key,
				    .body = text,
				    .body_len = strlen(text),
				    .content_type = "application/json",
				    .what = "recording upload progress"};

		(void)s3_request(u->s, h, &rq, &rs, S3_XML_MAX);
	}
	pthread_mutex_unlock(&u->state_lock);
	s3_resp_release(&rs);
	free(text);
	json_decref(doc);
}

/* Marks part n (1-based) as held by the server with this ETag: kept if its
 * ETag turns out to be the local MD5 of the same range. */
static void s3_keep_part(struct s3_upload *u, unsigned long n, const char *etag, size_t elen)
{
	if (n < 1 || n > u->nparts || elen == 0)
		return;
	etag_copy(u->parts[n - 1].etag, etag, elen);
	if (strlen(u->parts[n - 1].etag) == 32)
		u->parts[n - 1].state = PART_KEPT;
}

/* ListParts, all pages. Returns 0 (parts marked), RH_ENOTFOUND when the
 * upload is gone, RH_EUNSUPPORTED when the server has no ListParts. */
static int s3_list_parts(struct s3_upload *u, CURL *h)
{
	struct s3_resp rs = {0};
	unsigned long marker = 0;
	char what[512];
	char query[1024];
	int err = 0;

	snprintf(what, sizeof(what), "listing the uploaded parts of %s", u->path);
	for (int page = 0; page < 20; page++) {
		struct s3_req rq = {.method = "GET", .key = u->key, .query = query, .what = what};
		char *trunc;
		char *next;
		size_t pos = 0;
		const char *v;
		size_t vl;

		/* sorted: max-parts < part-number-marker < uploadId */
		snprintf(query, sizeof(query), "max-parts=1000&part-number-marker=%lu&uploadId=%s",
			 marker, u->upload_id_enc);
		err = s3_request(u->s, h, &rq, &rs, S3_XML_MAX);
		if (err < 0)
			goto done;
		if (rs.status == 404) {
			err = RH_ENOTFOUND;
			goto done;
		}
		if (rs.status == 405 || rs.status == 501 ||
		    (rs.status == 400 && rs.body && strstr(rs.body, "NotImplemented"))) {
			err = RH_EUNSUPPORTED;
			goto done;
		}
		if (rs.status != 200) {
			err = s3_status_error(u->s, &rs, what);
			goto done;
		}
		while (rh_s3_xml_find(rs.body, rs.len, &pos, "Part", &v, &vl)) {
			char *num = rh_s3_xml_get(v, vl, "PartNumber");
			char *etag = rh_s3_xml_get(v, vl, "ETag");
			char *size = rh_s3_xml_get(v, vl, "Size");
			unsigned long n = num ? strtoul(num, NULL, 10) : 0;

			if (n >= 1 && n <= u->nparts && size && etag &&
			    strtoull(size, NULL, 10) == u->parts[n - 1].len)
				s3_keep_part(u, n, etag, strlen(etag));
			free(num);
			free(etag);
			free(size);
		}
		trunc = rh_s3_xml_get(rs.body, rs.len, "IsTruncated");
		next = rh_s3_xml_get(rs.body, rs.len, "NextPartNumberMarker");
		marker = next ? strtoul(next, NULL, 10) : 0;
		if (!trunc || strcmp(trunc, "true") != 0 || marker == 0) {
			free(trunc);
			free(next);
			break;
		}
		free(trunc);
		free(next);
	}
done:
	s3_resp_release(&rs);
	return err;
}

/* Finds an unfinished upload of this object from an earlier run. Sets
 * u->upload_id and marks the parts the server holds; leaves upload_id NULL
 * when there is nothing to resume. */
static int s3_upload_find(struct s3_upload *u, CURL *h)
{
	struct s3_resp rs = {0};
	json_error_t jerr;
	json_t *doc = NULL;
	const char *id;
	int err = 0;

	{
		struct s3_req rq = {
		    .method = "GET", .key = u->state_key, .what = "reading the upload state"};

		err = s3_request(u->s, h, &rq, &rs, S3_XML_MAX);
	}
	if (err < 0)
		goto done;
	if (rs.status == 404)
		goto done;
	if (rs.status != 200) {
		err = s3_status_error(u->s, &rs, "reading the upload state");
		goto done;
	}
	doc = json_loadb(rs.body ? rs.body : "", rs.len, 0, &jerr);
	id = json_string_value(json_object_get(doc, "upload_id"));
	if (json_integer_value(json_object_get(doc, "rehydra_upload")) != 1 || !id || !*id ||
	    strlen(id) > 1024 || !json_is_string(json_object_get(doc, "key")) ||
	    strcmp(json_string_value(json_object_get(doc, "key")), u->key) != 0 ||
	    !json_is_string(json_object_get(doc, "sha256")) ||
	    strcmp(json_string_value(json_object_get(doc, "sha256")), u->sha256) != 0 ||
	    json_integer_value(json_object_get(doc, "size")) != (json_int_t)u->size ||
	    json_integer_value(json_object_get(doc, "part_size")) != (json_int_t)u->part_size)
		goto done; /* not this object, or another part size: start over */
	u->upload_id = strdup(id);
	u->upload_id_enc = rh_s3_uri_encode(id, false);
	if (!u->upload_id || !u->upload_id_enc) {
		err = rh_error_set(RH_ENOMEM, "out of memory resuming %s", u->path);
		goto done;
	}
	err = s3_list_parts(u, h);
	if (err == RH_EUNSUPPORTED) {
		/* No ListParts (s3rver): trust the parts we recorded; every one is
		 * still checked against the local MD5 before it is kept. */
		const char *k;
		json_t *v;

		err = 0;
		json_object_foreach(json_object_get(doc, "parts"), k, v)
		{
			const char *e = json_string_value(v);

			if (e)
				s3_keep_part(u, strtoul(k, NULL, 10), e, strlen(e));
		}
	} else if (err == RH_ENOTFOUND) {
		/* expired, aborted or completed: start over */
		err = 0;
		free(u->upload_id);
		free(u->upload_id_enc);
		u->upload_id = NULL;
		u->upload_id_enc = NULL;
	}
done:
	json_decref(doc);
	s3_resp_release(&rs);
	return err;
}

static int s3_upload_create(struct s3_upload *u, CURL *h)
{
	struct s3_resp rs = {0};
	char meta_hdr[128];
	char what[512];
	int err;

	snprintf(meta_hdr, sizeof(meta_hdr), "%s: %s", S3_META_SHA, u->sha256);
	snprintf(what, sizeof(what), "starting the upload of %s to %s", u->path, u->s->base.url);
	{
		struct s3_req rq = {.method = "POST",
				    .key = u->key,
				    .query = "uploads=",
				    .content_type = "application/octet-stream",
				    .extra = {meta_hdr, NULL},
				    .what = what};

		err = s3_simple(u->s, h, &rq, &rs, S3_XML_MAX);
	}
	if (err < 0)
		goto done;
	u->upload_id = rh_s3_xml_get(rs.body, rs.len, "UploadId");
	if (!u->upload_id || !*u->upload_id) {
		err = rh_error_set(RH_EIO, "s3 endpoint %s gave no UploadId while %s",
				   u->s->t.endpoint, what);
		goto done;
	}
	u->upload_id_enc = rh_s3_uri_encode(u->upload_id, false);
	if (!u->upload_id_enc)
		err = rh_error_set(RH_ENOMEM, "out of memory uploading %s", u->path);
done:
	s3_resp_release(&rs);
	return err;
}

/* Sends part i from `src` starting at `start` (the upload's source at the
 * part's offset, or a buffer of the part's bytes at 0). */
static int s3_upload_part_from(struct s3_upload *u, CURL *h, unsigned i,
			       const struct rh_source *src, uint64_t start, bool *resumable)
{
	struct s3_part *p = &u->parts[i];
	struct s3_stream st = {.s = u->s, .src = src, .start = start, .len = p->len};
	struct s3_resp rs = {0};
	char query[1200];
	char what[512];
	int err;

	*resumable = true;
	/* sorted: partNumber < uploadId */
	snprintf(query, sizeof(query), "partNumber=%u&uploadId=%s", i + 1, u->upload_id_enc);
	snprintf(what, sizeof(what), "uploading part %u of %u of %s to %s", i + 1, u->nparts,
		 u->path, u->s->base.url);
	{
		struct s3_req rq = {.method = "PUT",
				    .key = u->key,
				    .query = query,
				    .content_sha256 = "UNSIGNED-PAYLOAD",
				    .stream = &st,
				    .stop = &u->stop,
				    .payload = true,
				    .what = what};

		err = s3_request(u->s, h, &rq, &rs, S3_XML_MAX);
	}
	pthread_mutex_lock(&u->lock);
	u->sent += st.sent;
	pthread_mutex_unlock(&u->lock);
	if (err < 0) {
		*resumable = err != RH_EVERIFY;
		goto done;
	}
	if (rs.status != 200) {
		err = s3_status_error(u->s, &rs, what);
		*resumable = s3_retryable_status(rs.status);
		goto done;
	}
	/* The ETag is checked against the hashing pass's MD5 of this range
	 * once that pass is through (s3_parts_check). */
	pthread_mutex_lock(&u->lock);
	snprintf(p->etag, sizeof(p->etag), "%s", rs.etag);
	p->state = PART_SENT;
	pthread_mutex_unlock(&u->lock);
done:
	s3_resp_release(&rs);
	return err;
}

static int s3_upload_part(struct s3_upload *u, CURL *h, unsigned i, bool *resumable)
{
	return s3_upload_part_from(u, h, i, u->src, u->parts[i].off, resumable);
}

static void *s3_worker(void *arg)
{
	struct s3_upload *u = arg;
	CURL *h = curl_easy_init();

	if (!h) {
		s3_upload_fail(u, rh_error_set(RH_ENOMEM, "out of memory uploading %s", u->path),
			       true);
		return NULL;
	}
	for (;;) {
		unsigned i;
		bool resumable;
		int err;

		pthread_mutex_lock(&u->lock);
		while (u->next < u->nparts && u->parts[u->next].state != PART_PENDING)
			u->next++;
		if (atomic_load(&u->stop) || u->next >= u->nparts) {
			pthread_mutex_unlock(&u->lock);
			break;
		}
		i = u->next++;
		pthread_mutex_unlock(&u->lock);
		err = s3_upload_part(u, h, i, &resumable);
		if (err < 0) {
			s3_upload_fail(u, err, resumable);
			break;
		}
		s3_state_write(u, h);
	}
	curl_easy_cleanup(h);
	return NULL;
}

/* Runs the workers over the pending parts; with `hash`, the calling thread
 * hashes the source meanwhile. Returns the first error (message set). */
static int s3_upload_round(struct s3_upload *u, bool hash, char sha_hex[65])
{
	pthread_t threads[S3_PARALLEL_MAX];
	unsigned pending = 0;
	unsigned n;
	unsigned started = 0;
	int herr = 0;

	for (unsigned i = 0; i < u->nparts; i++)
		pending += u->parts[i].state == PART_PENDING;
	n = u->s->parallel < pending ? u->s->parallel : pending;
	u->next = 0;
	for (unsigned i = 0; i < n; i++) {
		if (pthread_create(&threads[started], NULL, s3_worker, u) != 0)
			break;
		started++;
	}
	if (started == 0 && n > 0)
		s3_upload_fail(
		    u, rh_error_set(RH_EIO, "cannot start upload threads for %s", u->path), true);
	if (hash) {
		herr = s3_hash_source(u->s, u->src, u->size, u->part_size, u, NULL, sha_hex);
		if (herr < 0 && !atomic_load(&u->stop))
			s3_upload_fail(u, herr, herr == RH_ECANCELLED || herr == RH_EIO);
		else if (herr == 0 && strcmp(sha_hex, u->sha256) != 0)
			s3_upload_fail(u,
				       rh_error_set(RH_EVERIFY,
						    "sha256 mismatch for %s (from "
						    "%s): expected %s, got %s; nothing was "
						    "stored under %s",
						    u->path, u->src->name, u->sha256, sha_hex,
						    u->key),
				       false);
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	if (u->err < 0)
		return rh_error_set(u->err, "%s", u->errmsg);
	return 0;
}

/* ---- put: the in-order round ---------------------------------------------
 *
 * One read and one hash per byte, and the bytes sent are the bytes hashed:
 * each worker takes the next part, waits for its turn (parts are read and
 * hashed in file order, so the object's SHA-256 runs in one pass), reads
 * the part into its own buffer and hashes it there, hands the turn on, and
 * sends that buffer. A retry or a rewind resends the same buffer, so no
 * byte is read from the source twice and no MD5 is needed to tie what the
 * server stored to what was hashed: a source that changes while it is
 * uploaded cannot make the two differ. Kept parts of an interrupted upload
 * are read and hashed in their turn too, with their MD5, which their ETag
 * must match. The last part's turn finishes the hash: a mismatch fails the
 * upload before CompleteMultipartUpload, so nothing appears under the key. */

/* Reads part i into buf and hashes it; the last part also checks the end
 * of the source and the whole digest. With the turn held. */
static int s3_part_read(struct s3_upload *u, unsigned i, uint8_t *buf, uint8_t *bounce,
			bool *resumable)
{
	struct s3_part *p = &u->parts[i];
	uint64_t got = 0;

	*resumable = true;
	while (got < p->len) {
		/* small reads into a buffer that stays in the CPU cache, hashed
		 * there and then copied: the kernel copies into a cold multi-MiB
		 * buffer three times slower than into a warm one plus a memcpy */
		size_t want = p->len - got > S3_READ_CHUNK ? S3_READ_CHUNK : (size_t)(p->len - got);
		long n;

		if (s3_cancelled(u->s))
			return rh_error_set(RH_ECANCELLED, "cancelled while hashing %s",
					    u->src->name);
		if (atomic_load(&u->stop))
			return RH_ECANCELLED; /* the first error is the one to report */
		n = u->src->read_at(u->src->user, p->off + got, bounce, want);
		if (n < 0)
			return (int)n;
		if (n == 0) {
			*resumable = false;
			return rh_error_set(RH_EVERIFY,
					    "%s ended after %llu of the %llu bytes the "
					    "manifest says",
					    u->src->name, (unsigned long long)(p->off + got),
					    (unsigned long long)u->size);
		}
		rh_sha256_update(&u->sc, bounce, (size_t)n);
		memcpy(buf + got, bounce, (size_t)n);
		got += (uint64_t)n;
	}
	if (p->state == PART_KEPT) {
		struct rh_md5 mc;
		int err = rh_md5_init(&mc);

		if (err < 0)
			return err;
		rh_md5_update(&mc, buf, (size_t)p->len);
		rh_md5_final(&mc, p->local_md5);
		p->md5_known = true;
	}
	if (i + 1 == u->nparts) {
		uint8_t extra, digest[32];

		*resumable = false;
		/* a source longer than the manifest says is just as wrong */
		if (u->src->read_at(u->src->user, u->size, &extra, 1) > 0)
			return rh_error_set(RH_EVERIFY,
					    "%s is larger than the %llu bytes the "
					    "manifest says",
					    u->src->name, (unsigned long long)u->size);
		rh_sha256_final(&u->sc, digest);
		rh_sha256_hex(u->sha_hex, digest);
		if (strcmp(u->sha_hex, u->sha256) != 0)
			return rh_error_set(RH_EVERIFY,
					    "sha256 mismatch for %s (from %s): expected %s, got "
					    "%s; nothing was stored under %s",
					    u->path, u->src->name, u->sha256, u->sha_hex, u->key);
		*resumable = true;
	}
	return 0;
}

/* Sends part i from buf (its bytes, already hashed). */
static int s3_part_send(struct s3_upload *u, CURL *h, unsigned i, const uint8_t *buf,
			bool *resumable)
{
	struct rh_source mem;

	rh_source_mem_init(&mem, buf, (size_t)u->parts[i].len, u->src->name);
	return s3_upload_part_from(u, h, i, &mem, 0, resumable);
}

/* Takes part_size bytes of the sink's part memory for a worker's lifetime;
 * false when the upload stopped, was cancelled or has no part left first. A worker without
 * its share takes no part, so the part whose turn it is always belongs to
 * a worker that can read it: no put waits on another. */
static bool s3_parts_left(struct s3_upload *u)
{
	bool left;

	pthread_mutex_lock(&u->lock);
	left = u->next < u->nparts;
	pthread_mutex_unlock(&u->lock);
	return left;
}

static bool s3_buf_take(struct s3_upload *u)
{
	struct s3_sink *s = u->s;
	bool got;

	pthread_mutex_lock(&s->buf_lock);
	while (s->buf_left < u->part_size && !atomic_load(&u->stop) && !s3_cancelled(s) &&
	       s3_parts_left(u)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->buf_cv, &s->buf_lock, &ts);
	}
	got = s->buf_left >= u->part_size && !atomic_load(&u->stop) && !s3_cancelled(s) &&
	      s3_parts_left(u);
	if (got)
		s->buf_left -= u->part_size;
	pthread_mutex_unlock(&s->buf_lock);
	return got;
}

static void s3_buf_give(struct s3_upload *u)
{
	pthread_mutex_lock(&u->s->buf_lock);
	u->s->buf_left += u->part_size;
	pthread_cond_broadcast(&u->s->buf_cv);
	pthread_mutex_unlock(&u->s->buf_lock);
}

static void *s3_worker_buffered(void *arg)
{
	struct s3_upload *u = arg;
	CURL *h = NULL;
	uint8_t *buf = NULL;
	uint8_t *bounce = NULL;
	bool share = s3_buf_take(u);

	if (!share) {
		if (s3_cancelled(u->s))
			s3_upload_fail(
			    u, rh_error_set(RH_ECANCELLED, "cancelled while uploading %s", u->path),
			    true);
		return NULL;
	}
	h = curl_easy_init();
	buf = malloc((size_t)u->part_size);
	bounce = malloc(S3_READ_CHUNK);
	if (!h || !buf || !bounce) {
		s3_upload_fail(u, rh_error_set(RH_ENOMEM, "out of memory uploading %s", u->path),
			       true);
		goto done;
	}
	for (;;) {
		unsigned i;
		bool resumable = true;
		int err;

		pthread_mutex_lock(&u->lock);
		if (atomic_load(&u->stop) || u->next >= u->nparts) {
			pthread_mutex_unlock(&u->lock);
			break;
		}
		i = u->next++;
		while (u->turn != i && !atomic_load(&u->stop))
			pthread_cond_wait(&u->turn_cv, &u->lock);
		pthread_mutex_unlock(&u->lock);
		if (atomic_load(&u->stop))
			break;
		err = s3_part_read(u, i, buf, bounce, &resumable);
		pthread_mutex_lock(&u->lock);
		u->turn++;
		pthread_cond_broadcast(&u->turn_cv);
		pthread_mutex_unlock(&u->lock);
		if (err == 0 && u->parts[i].state == PART_PENDING) {
			err = s3_part_send(u, h, i, buf, &resumable);
			if (err == 0)
				s3_state_write(u, h);
		}
		if (err < 0) {
			s3_upload_fail(u, err, resumable);
			break;
		}
	}
done:
	free(bounce);
	free(buf);
	if (h)
		curl_easy_cleanup(h);
	s3_buf_give(u);
	return NULL;
}

/* Whether the in-order round can hold its parts in memory. */
static bool s3_round_buffers(const struct s3_upload *u)
{
	return u->part_size <= S3_BUFFER_MAX;
}

/* Every part in order: read, hash, send the pending ones. Returns the first
 * error (message set); on success u->sha_hex is the object's digest and
 * matched u->sha256. */
static int s3_upload_round_buffered(struct s3_upload *u)
{
	pthread_t threads[S3_PARALLEL_MAX];
	unsigned n = u->s->parallel;
	unsigned started = 0;
	int err;

	if (n > S3_BUFFER_MAX / u->part_size)
		n = (unsigned)(S3_BUFFER_MAX / u->part_size);
	if (n > u->nparts)
		n = u->nparts;
	if (n == 0)
		n = 1;
	err = rh_sha256_init(&u->sc);
	if (err < 0)
		return err;
	u->next = 0;
	u->turn = 0;
	for (unsigned i = 0; i < n; i++) {
		if (pthread_create(&threads[started], NULL, s3_worker_buffered, u) != 0)
			break;
		started++;
	}
	if (started == 0)
		s3_upload_fail(
		    u, rh_error_set(RH_EIO, "cannot start upload threads for %s", u->path), true);
	for (unsigned i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	rh_sha256_free(&u->sc);
	if (u->err < 0)
		return rh_error_set(u->err, "%s", u->errmsg);
	return 0;
}

static void s3_upload_abort(struct s3_upload *u, CURL *h)
{
	char query[1100];

	if (u->upload_id_enc) {
		snprintf(query, sizeof(query), "uploadId=%s", u->upload_id_enc);
		s3_delete_quietly(u->s, h, u->key, query);
	}
	s3_delete_quietly(u->s, h, u->state_key, NULL);
}

static int s3_upload_complete(struct s3_upload *u, CURL *h, bool *resumable)
{
	struct s3_resp rs = {0};
	struct rh_md5 mc;
	uint8_t d[16];
	char expect[48];
	char query[1100];
	char what[512];
	char *xml = NULL;
	char *etag = NULL;
	size_t cap = 128 + (size_t)u->nparts * 160;
	size_t o = 0;
	bool can_expect = true;
	int err = 0;

	xml = malloc(cap);
	if (!xml) {
		err = rh_error_set(RH_ENOMEM, "out of memory completing %s", u->path);
		goto done;
	}
	o += (size_t)snprintf(xml + o, cap - o, "<CompleteMultipartUpload>");
	rh_md5_init(&mc);
	for (unsigned i = 0; i < u->nparts; i++) {
		o += (size_t)snprintf(xml + o, cap - o,
				      "<Part><PartNumber>%u</PartNumber>"
				      "<ETag>&quot;%s&quot;</ETag></Part>",
				      i + 1, u->parts[i].etag);
		const struct s3_part *p = &u->parts[i];
		uint8_t md5[16];

		/* a part sent from the in-order round has no local MD5: its bytes
		 * are the hashed ones by construction, and the server's ETag is
		 * what the assembled object's ETag must be made of */
		if (p->md5_known)
			memcpy(md5, p->local_md5, 16);
		else if (strlen(p->etag) != 32 || rh_hex_decode(md5, p->etag, 32) < 0)
			can_expect = false;
		rh_md5_update(&mc, md5, 16);
	}
	o += (size_t)snprintf(xml + o, cap - o, "</CompleteMultipartUpload>");
	rh_md5_final(&mc, d);
	rh_md5_hex(expect, d);
	snprintf(expect + 32, sizeof(expect) - 32, "-%u", u->nparts);
	snprintf(query, sizeof(query), "uploadId=%s", u->upload_id_enc);
	snprintf(what, sizeof(what), "completing the upload of %s to %s", u->path, u->s->base.url);
	{
		struct s3_req rq = {.method = "POST",
				    .key = u->key,
				    .query = query,
				    .body = xml,
				    .body_len = o,
				    .content_type = "application/xml",
				    .what = what};

		err = s3_request(u->s, h, &rq, &rs, S3_XML_MAX);
	}
	*resumable = true; /* a transport failure or a 5xx: try again next run */
	if (err < 0)
		goto done;
	if (rs.status != 200) {
		*resumable = s3_retryable_status(rs.status);
		err = s3_status_error(u->s, &rs, what);
		goto done;
	}
	/* S3 may answer 200 and still fail, in the body. */
	{
		size_t pos = 0;
		const char *v;
		size_t vl;

		if (rs.body && rh_s3_xml_find(rs.body, rs.len, &pos, "Error", &v, &vl)) {
			rs.status = 500;
			err = s3_status_error(u->s, &rs, what);
			goto done;
		}
	}
	etag = rh_s3_xml_get(rs.body, rs.len, "ETag");
	if (etag) {
		char clean[96];

		etag_copy(clean, etag, strlen(etag));
		/* "<md5 of the part md5s>-<parts>" is checkable; a plain MD5 (s3rver)
		 * is of the whole object, which every part already vouched for. */
		if (can_expect && strchr(clean, '-') && strcasecmp(clean, expect) != 0) {
			s3_delete_quietly(u->s, h, u->key, NULL);
			*resumable = false;
			err = rh_error_set(RH_EVERIFY,
					   "s3 endpoint %s assembled %s with ETag "
					   "\"%s\", expected \"%s\"; the object was removed",
					   u->s->t.endpoint, u->path, clean, expect);
			goto done;
		}
	}
done:
	free(etag);
	free(xml);
	s3_resp_release(&rs);
	return err;
}

/* Parts sent in this run: the server's ETag (the MD5 of what it stored) must
 * be the MD5 the hashing pass computed over the same range of the source. */
static int s3_parts_check(struct s3_upload *u)
{
	for (unsigned i = 0; i < u->nparts; i++) {
		const struct s3_part *p = &u->parts[i];
		char hex[33];

		if (p->state != PART_SENT || !p->md5_known || etag_is_md5(p->etag, p->local_md5))
			continue;
		rh_md5_hex(hex, p->local_md5);
		return rh_error_set(RH_EVERIFY,
				    "s3 endpoint %s stored part %u of %s with ETag "
				    "\"%s\", not the MD5 %s of the bytes hashed: %s changed while "
				    "it was uploaded, or the bucket uses KMS encryption (not "
				    "supported); nothing was stored under %s",
				    u->s->t.endpoint, i + 1, u->path, p->etag, hex, u->src->name,
				    u->key);
	}
	return 0;
}

static int s3_put_multipart(struct s3_sink *s, const char *path, const char *key, uint64_t size,
			    const char *sha256, const struct rh_source *src,
			    struct rh_put_stats *stats)
{
	struct s3_upload u = {
	    .s = s, .path = path, .key = key, .sha256 = sha256, .size = size, .src = src};
	struct s3_resp rs = {0};
	char sha_hex[65] = "";
	char keyhash[65];
	char *state_name = NULL;
	bool locks = false;
	bool resumable = true;
	unsigned redo = 0;
	CURL *h = NULL;
	int err = 0;

	u.part_size = s->part_size;
	while ((size + u.part_size - 1) / u.part_size > S3_PARTS_MAX)
		u.part_size *= 2;
	u.nparts = (unsigned)((size + u.part_size - 1) / u.part_size);
	u.parts = calloc(u.nparts, sizeof(*u.parts));
	rh_sha256_buf_hex(keyhash, key, strlen(key));
	keyhash[16] = '\0';
	if (asprintf(&state_name, "%s%s-%s", S3_UPLOADS, sha256, keyhash) < 0)
		state_name = NULL;
	u.state_key = state_name ? s3_key(s, state_name) : NULL;
	h = curl_easy_init();
	if (!u.parts || !u.state_key || !h) {
		err = rh_error_set(RH_ENOMEM, "out of memory uploading %s", path);
		goto done;
	}
	pthread_mutex_init(&u.lock, NULL);
	pthread_mutex_init(&u.state_lock, NULL);
	pthread_cond_init(&u.turn_cv, NULL);
	locks = true;
	for (unsigned i = 0; i < u.nparts; i++) {
		u.parts[i].off = (uint64_t)i * u.part_size;
		u.parts[i].len = i + 1 < u.nparts ? u.part_size : size - u.parts[i].off;
	}
	err = s3_upload_find(&u, h);
	if (err < 0)
		goto done;
	if (!u.upload_id) {
		err = s3_upload_create(&u, h);
		if (err < 0) {
			resumable = false; /* nothing to resume */
			goto done;
		}
		s3_state_write(&u, h);
	}
	if (s3_round_buffers(&u))
		err = s3_upload_round_buffered(&u);
	else
		err = s3_upload_round(&u, true, sha_hex);
	if (err < 0) {
		resumable = u.resumable;
		goto done;
	}
	/* Every byte is hashed now: check the parts against it. */
	for (unsigned i = 0; i < u.nparts; i++) {
		struct s3_part *p = &u.parts[i];

		if (p->state == PART_KEPT && !etag_is_md5(p->etag, p->local_md5)) {
			p->state = PART_PENDING; /* an old part of other bytes: send it again */
			redo++;
		}
	}
	err = s3_parts_check(&u);
	if (err == 0 && redo > 0) {
		err = s3_upload_round(&u, false, sha_hex);
		if (err < 0) {
			resumable = u.resumable;
			goto done;
		}
		err = s3_parts_check(&u);
	}
	if (err < 0) {
		resumable = false;
		goto done;
	}
	for (unsigned i = 0; i < u.nparts; i++)
		if (u.parts[i].state == PART_KEPT)
			stats->bytes_resumed += u.parts[i].len;
	err = s3_upload_complete(&u, h, &resumable);
	if (err < 0)
		goto done;
	{
		struct s3_req rq = {.method = "HEAD", .key = key, .what = "checking the upload"};

		err = s3_simple(s, h, &rq, &rs, 0);
	}
	if (err == 0 && (!rs.has_length || rs.length != size)) {
		s3_delete_quietly(s, h, key, NULL);
		err = rh_error_set(RH_EVERIFY,
				   "s3 endpoint %s holds %llu bytes for %s after the "
				   "upload, expected %llu; the object was removed",
				   s->t.endpoint, (unsigned long long)rs.length, path,
				   (unsigned long long)size);
	}
	if (err < 0) {
		resumable = false;
		goto done;
	}
	s3_delete_quietly(s, h, u.state_key, NULL);
	err = s3_remember(s, path, size, sha256);
done:
	stats->bytes_sent += u.sent;
	if (err < 0 && !resumable && h && u.state_key) {
		/* keep this thread's message: the abort's requests may set others */
		char msg[1024];

		snprintf(msg, sizeof(msg), "%s", rh_error_last());
		s3_upload_abort(&u, h);
		rh_error_set(err, "%s", msg);
	}
	if (h)
		curl_easy_cleanup(h);
	if (locks) {
		pthread_mutex_destroy(&u.lock);
		pthread_mutex_destroy(&u.state_lock);
		pthread_cond_destroy(&u.turn_cv);
	}
	s3_resp_release(&rs);
	free(u.parts);
	free(u.upload_id);
	free(u.upload_id_enc);
	free(u.state_key);
	free(state_name);
	return err;
}

static int s3_put(struct rh_sink *base, const char *path, uint64_t size, const char *sha256,
		  const struct rh_source *src, struct rh_put_stats *stats)
{
	struct s3_sink *s = (struct s3_sink *)base;
	struct rh_put_stats mine = {0};
	char *key = NULL;
	int err = 0;

	if (!stats)
		stats = &mine;
	stats->bytes_sent = 0;
	stats->bytes_resumed = 0;
	if (!s3_path_ok(path)) {
		err = rh_error_set(RH_EINVAL, "refusing unsafe path \"%s\" for sink %s", path,
				   base->url);
		goto done;
	}
	if (!rh_hex_is_sha256(sha256)) {
		err = rh_error_set(RH_EINVAL, "bad sha256 \"%s\" for %s in sink %s",
				   sha256 ? sha256 : "", path, base->url);
		goto done;
	}
	if (!src || !src->read_at || src->size != size) {
		err = rh_error_set(RH_EINVAL,
				   "the source of %s has %llu bytes, the manifest says "
				   "%llu",
				   path, src ? (unsigned long long)src->size : 0ULL,
				   (unsigned long long)size);
		goto done;
	}
	if (s3_cancelled(s)) {
		err = rh_error_set(RH_ECANCELLED, "cancelled before uploading %s to %s", path,
				   base->url);
		goto done;
	}
	key = s3_key(s, path);
	if (!key) {
		err = rh_error_set(RH_ENOMEM, "out of memory uploading %s", path);
		goto done;
	}
	/* whatever is there while we write, we no longer vouch for */
	s3_forget(s, path);
	if (size <= s->part_size)
		err = s3_put_single(s, path, key, size, sha256, src, stats);
	else
		err = s3_put_multipart(s, path, key, size, sha256, src, stats);
done:
	free(key);
	return err;
}

static void s3_close(struct rh_sink *base)
{
	struct s3_sink *s = (struct s3_sink *)base;

	if (!s)
		return;
	if (s->userpwd) {
		explicit_bzero(s->userpwd, strlen(s->userpwd));
		free(s->userpwd);
	}
	if (s->token_hdr) {
		explicit_bzero(s->token_hdr, strlen(s->token_hdr));
		free(s->token_hdr);
	}
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->buf_lock);
	pthread_cond_destroy(&s->buf_cv);
	rh_sink_manifest_release(&s->m);
	rh_s3_target_release(&s->t);
	free(s->sigv4);
	free(s->base.url);
	free(s->base.location);
	free(s);
}

static const struct rh_sink_ops s3_sink_ops = {
    .version = RH_SINK_OPS_VERSION,
    .scheme = "s3",
    .max_parallel = 4,
    .has = s3_has,
    .put = s3_put,
    .commit = s3_commit,
    .close = s3_close,
};

int rh_sink_s3_open(struct rh_sink **out, const char *url, const struct rh_sink_opts *opts)
{
	struct s3_sink *s = NULL;
	const char *keyid = env_nonempty("AWS_ACCESS_KEY_ID");
	const char *secret = env_nonempty("AWS_SECRET_ACCESS_KEY");
	const char *token = env_nonempty("AWS_SESSION_TOKEN");
	const char *pfx;
	CURL *h = NULL;
	int err = 0;

	*out = NULL;
	err = rh_artifacts_global_check();
	if (err < 0)
		goto done;
	s = calloc(1, sizeof(*s));
	if (!s) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening %s", url ? url : "s3 sink");
		goto done;
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->buf_lock, NULL);
	pthread_cond_init(&s->buf_cv, NULL);
	s->buf_left = S3_BUFFER_MAX;
	s->base.ops = &s3_sink_ops;
	err = rh_sink_manifest_init(&s->m);
	if (err < 0)
		goto done;
	err = rh_s3_target_parse(&s->t, url);
	if (err < 0)
		goto done;
	pfx = *s->t.prefix ? "/" : "";
	if (asprintf(&s->base.url, "s3://%s%s%s?endpoint=%s&region=%s&style=%s", s->t.bucket, pfx,
		     s->t.prefix, s->t.endpoint, s->t.region,
		     s->t.virtual_style ? "virtual" : "path") < 0)
		s->base.url = NULL;
	if (asprintf(&s->base.location, "s3://%s%s%s", s->t.bucket, pfx, s->t.prefix) < 0)
		s->base.location = NULL;
	if (asprintf(&s->sigv4, "aws:amz:%s:s3", s->t.region) < 0)
		s->sigv4 = NULL;
	if (!s->base.url || !s->base.location || !s->sigv4) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening %s", url);
		goto done;
	}
	if (!keyid || !secret) {
		err = rh_error_set(RH_EINVAL,
				   "no credentials for s3 target %s: set "
				   "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
				   "AWS_SESSION_TOKEN for temporary credentials)",
				   s->base.url);
		goto done;
	}
	if (strchr(keyid, ':') || strpbrk(keyid, "\r\n") || strpbrk(secret, "\r\n") ||
	    (token && strpbrk(token, "\r\n"))) {
		err = rh_error_set(RH_EINVAL,
				   "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or "
				   "AWS_SESSION_TOKEN contains a character credentials cannot "
				   "have (':' in the key id, or a line break)");
		goto done;
	}
	/* The key id is not secret, but logs should not carry it whole. */
	snprintf(s->key_hint, sizeof(s->key_hint), "%.4s...", keyid);
	if (asprintf(&s->userpwd, "%s:%s", keyid, secret) < 0)
		s->userpwd = NULL;
	if (token && asprintf(&s->token_hdr, "x-amz-security-token: %s", token) < 0)
		s->token_hdr = NULL;
	if (!s->userpwd || (token && !s->token_hdr)) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening %s", s->base.url);
		goto done;
	}
	s->parallel = opts && opts->parallel ? opts->parallel : S3_PARALLEL_DEFAULT;
	if (s->parallel > S3_PARALLEL_MAX)
		s->parallel = S3_PARALLEL_MAX;
	s->part_size = opts && opts->part_size ? opts->part_size : S3_PART_DEFAULT;
	if (s->part_size < S3_PART_MIN || s->part_size > S3_PART_MAX) {
		err = rh_error_set(RH_EINVAL,
				   "s3 part size %llu is out of range: S3 takes 5 MiB "
				   "to 5 GiB",
				   (unsigned long long)s->part_size);
		goto done;
	}
	h = curl_easy_init();
	if (!h) {
		err = rh_error_set(RH_ENOMEM, "out of memory opening %s", s->base.url);
		goto done;
	}
	/* Reading the manifest also proves the endpoint, bucket and keys work,
	 * so a bad target fails here, before any transfer starts. */
	err = s3_manifest_load(s, h);
	if (err < 0)
		goto done;
	*out = &s->base;
	s = NULL;
done:
	if (h)
		curl_easy_cleanup(h);
	if (s)
		s3_close(&s->base);
	return err;
}

int rh_s3_object_get(char **body, size_t *len, const char *url, const char *key, size_t max)
{
	struct rh_sink *sink = NULL;
	struct s3_resp rs = {0};
	struct s3_req rq = {.method = "GET", .key = key, .what = "reading an object"};
	CURL *h = NULL;
	int err;

	*body = NULL;
	*len = 0;
	err = rh_sink_s3_open(&sink, url, NULL);
	if (err < 0)
		goto done;
	h = curl_easy_init();
	if (!h) {
		err = rh_error_set(RH_ENOMEM, "out of memory reading %s", key);
		goto done;
	}
	err = s3_request((struct s3_sink *)sink, h, &rq, &rs, max + 1);
	if (err < 0)
		goto done;
	if (rs.status == 404 || rs.status == 403) {
		/* without list permission S3 says 403 for a missing key */
		err = rh_error_set(RH_ENOTFOUND, "no object %s in %s (HTTP %ld)", key,
				   sink->location, rs.status);
		goto done;
	}
	if (rs.status < 200 || rs.status > 299) {
		err = s3_status_error((struct s3_sink *)sink, &rs, "reading an object");
		goto done;
	}
	if (rs.truncated || rs.len > max) {
		err = rh_error_set(RH_EINVAL, "the object %s in %s is larger than %zu bytes", key,
				   sink->location, max);
		goto done;
	}
	*body = malloc(rs.len + 1);
	if (!*body) {
		err = rh_error_set(RH_ENOMEM, "out of memory reading %s", key);
		goto done;
	}
	if (rs.len)
		memcpy(*body, rs.body, rs.len);
	(*body)[rs.len] = '\0';
	*len = rs.len;
done:
	s3_resp_release(&rs);
	if (h)
		curl_easy_cleanup(h);
	if (sink)
		sink->ops->close(sink);
	return err;
}

int rh_s3_object_put(const char *url, const char *key, const void *body, size_t len,
		     const char *content_type)
{
	struct rh_sink *sink = NULL;
	struct s3_resp rs = {0};
	struct s3_req rq = {.method = "PUT",
			    .key = key,
			    .content_type = content_type,
			    .body = body,
			    .body_len = len,
			    .what = "writing an object"};
	CURL *h = NULL;
	int err;

	err = rh_sink_s3_open(&sink, url, NULL);
	if (err < 0)
		goto done;
	h = curl_easy_init();
	if (!h) {
		err = rh_error_set(RH_ENOMEM, "out of memory writing %s", key);
		goto done;
	}
	err = s3_request((struct s3_sink *)sink, h, &rq, &rs, 64 * 1024);
	if (err == 0 && (rs.status < 200 || rs.status > 299))
		err = s3_status_error((struct s3_sink *)sink, &rs, "writing an object");
	if (err < 0)
		rh_error_prefix(err, "%s in %s", key, sink->location);
done:
	s3_resp_release(&rs);
	if (h)
		curl_easy_cleanup(h);
	if (sink)
		sink->ops->close(sink);
	return err;
}
