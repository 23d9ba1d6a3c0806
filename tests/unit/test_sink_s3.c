/*
 * test_sink_s3.c - the S3 sink: URL parsing and request URLs (pure, always
 * run), and the real thing against @20minutes/s3rver, which verifies SigV4
 * signatures (run by tests/integration/s3.sh,
 * which starts s3rver and sets RH_TEST_S3_ENDPOINT; without it those cases
 * print "skipped: no s3rver" and pass).
 *
 * Against the server: a small PUT, has() and commit; a 40 MiB multipart
 * upload with parallel parts; an unchanged re-sync that sends nothing; an
 * upload cancelled after some parts and resumed; a wrong key id (403
 * InvalidAccessKeyId) and a wrong secret (403 SignatureDoesNotMatch), the
 * secret never in the message; a missing bucket; a source whose bytes do
 * not match its sha256 (nothing at the final key); a source that changes
 * between the hashing read and the sending read; virtual-host style.
 * s3.sh afterwards GETs the big objects back with the curl CLI and compares
 * their sha256sum.
 */
#include "testlib.h"

#include "cancel.h"
#include "error.h"
#include "sha256.h"
#include "sink.h"
#include "sink_s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#define MIB (1024ull * 1024)

/* ---- helpers ------------------------------------------------------------ */

static const char *endpoint(void)
{
	const char *e = getenv("RH_TEST_S3_ENDPOINT");

	return e && *e ? e : NULL;
}

static const char *bucket(void)
{
	const char *b = getenv("RH_TEST_S3_BUCKET");

	return b && *b ? b : "rhtest";
}

static const char *prefix(void)
{
	const char *p = getenv("RH_TEST_S3_PREFIX");

	return p && *p ? p : "unit";
}

static bool skip(void)
{
	if (endpoint())
		return false;
	printf("skipped: no s3rver (RH_TEST_S3_ENDPOINT is unset; tests/integration/s3.sh "
	       "sets it) ");
	return true;
}

static char *sink_url(const char *sub)
{
	char *u = NULL;

	if (asprintf(&u, "s3://%s/%s/%s?endpoint=%s&region=us-east-1", bucket(), prefix(), sub,
		     endpoint()) < 0)
		abort();
	return u;
}

struct file_src {
	struct rh_source src;
	int fd;
};

static long file_read_at(void *user, uint64_t off, void *buf, size_t len)
{
	struct file_src *f = user;
	ssize_t n;

	do
		n = pread(f->fd, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return rh_error_set_errno(RH_EIO, errno, "cannot read the test source");
	return (long)n;
}

/* Writes `size` pseudo-random bytes (seeded) to dir/name and opens a source
 * over it; hex gets their sha256. */
static void file_src_make(struct file_src *f, const char *dir, const char *name, uint64_t size,
			  uint32_t seed, char hex[65])
{
	char *path = rh_test_path(dir, name);
	uint8_t *buf = malloc(MIB);
	struct rh_sha256 c;
	uint8_t d[32];
	uint32_t x = seed * 2654435761u + 1;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || !buf)
		abort();
	rh_sha256_init(&c);
	for (uint64_t done = 0; done < size;) {
		size_t n = size - done < MIB ? (size_t)(size - done) : MIB;

		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			buf[i] = (uint8_t)x;
		}
		if (write(fd, buf, n) != (ssize_t)n)
			abort();
		rh_sha256_update(&c, buf, n);
		done += n;
	}
	rh_sha256_final(&c, d);
	rh_sha256_hex(hex, d);
	f->fd = fd;
	f->src = (struct rh_source){ 0 };
	f->src.size = size;
	f->src.read_at = file_read_at;
	f->src.user = f;
	f->src.name = name;
	free(buf);
	free(path);
}

struct mem_src {
	struct rh_source src;
	const uint8_t *data;
};

static long mem_read_at(void *user, uint64_t off, void *buf, size_t len)
{
	const struct mem_src *m = user;

	if (off >= m->src.size)
		return 0;
	if (len > m->src.size - off)
		len = (size_t)(m->src.size - off);
	memcpy(buf, m->data + off, len);
	return (long)len;
}

static void mem_src_init(struct mem_src *m, const void *data, size_t len)
{
	m->src = (struct rh_source){ 0 };
	m->src.size = len;
	m->src.read_at = mem_read_at;
	m->src.user = m;
	m->src.name = "memory";
	m->data = data;
}

static struct rh_sink *open_ok(const char *url, unsigned parallel, uint64_t part_size)
{
	struct rh_sink_opts o = RH_SINK_OPTS_INIT;
	struct rh_sink *s = NULL;
	int err;

	o.parallel = parallel;
	o.part_size = part_size;
	err = rh_sink_s3_open(&s, url, &o);
	if (err != 0)
		fprintf(stderr, "open %s: %s\n", url, rh_error_last());
	CU_ASSERT_EQUAL_FATAL(err, 0);
	return s;
}

/* HEAD with the curl library, signed: the HTTP status of an object. */
static long head_status(const char *key)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hd = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	char *url = NULL;
	long status = 0;

	if (asprintf(&url, "%s/%s/%s", endpoint(), bucket(), key) < 0)
		abort();
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:s3");
	curl_easy_setopt(h, CURLOPT_USERPWD, "S3RVER:S3RVER");
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hd);
	curl_easy_cleanup(h);
	free(url);
	return status;
}

static size_t on_get_body(char *ptr, size_t size, size_t nmemb, void *user)
{
	rh_sha256_update(user, ptr, size * nmemb);
	return size * nmemb;
}

/* GET with the curl library, signed: whether the object's bytes have this
 * sha256. */
static bool get_sha256_is(const char *key, const char *sha)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hd = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	struct rh_sha256 c;
	uint8_t d[32];
	char hex[65];
	char *url = NULL;
	long status = 0;

	if (asprintf(&url, "%s/%s/%s", endpoint(), bucket(), key) < 0)
		abort();
	rh_sha256_init(&c);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:s3");
	curl_easy_setopt(h, CURLOPT_USERPWD, "S3RVER:S3RVER");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_get_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &c);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	rh_sha256_final(&c, d);
	rh_sha256_hex(hex, d);
	curl_slist_free_all(hd);
	curl_easy_cleanup(h);
	free(url);
	return status == 200 && strcmp(hex, sha) == 0;
}

static char *obj_key(const char *sub, const char *path)
{
	char *k = NULL;

	if (asprintf(&k, "%s/%s/%s", prefix(), sub, path) < 0)
		abort();
	return k;
}

/* The key of the resume state object of (sub/path, sha256). */
static char *state_key(const char *sub, const char *path, const char *sha)
{
	char *objkey = obj_key(sub, path);
	char h[65];
	char *k = NULL;

	rh_sha256_buf_hex(h, objkey, strlen(objkey));
	h[16] = '\0';
	if (asprintf(&k, "%s/%s/.rehydra-sink/uploads/%s-%s", prefix(), sub, sha, h) < 0)
		abort();
	free(objkey);
	return k;
}

/* ---- pure cases ---------------------------------------------------------- */

static void clear_aws_env(void)
{
	unsetenv("AWS_REGION");
	unsetenv("AWS_DEFAULT_REGION");
	unsetenv("AWS_ENDPOINT_URL");
	unsetenv("AWS_ENDPOINT_URL_S3");
}

static void test_sink_s3__url_building(void)
{
	struct rh_s3_target t;
	char *u = NULL;
	char *saved_region = getenv("AWS_REGION") ? strdup(getenv("AWS_REGION")) : NULL;

	clear_aws_env();
	/* path style, explicit endpoint and region */
	CU_ASSERT_EQUAL_FATAL(rh_s3_target_parse(&t, "s3://models/dr/prod/?endpoint=http://"
						 "127.0.0.1:9000/&region=eu-north1"), 0);
	CU_ASSERT_STRING_EQUAL(t.bucket, "models");
	CU_ASSERT_STRING_EQUAL(t.prefix, "dr/prod");
	CU_ASSERT_STRING_EQUAL(t.endpoint, "http://127.0.0.1:9000");
	CU_ASSERT_STRING_EQUAL(t.region, "eu-north1");
	CU_ASSERT_FALSE(t.virtual_style);
	CU_ASSERT_EQUAL(rh_s3_url_build(&u, &t, "dr/prod/a b+c.bin", NULL), 0);
	CU_ASSERT_STRING_EQUAL(u, "http://127.0.0.1:9000/models/dr/prod/a%20b%2Bc.bin");
	free(u);
	CU_ASSERT_EQUAL(rh_s3_url_build(&u, &t, "k", "partNumber=1&uploadId=x%2By"), 0);
	CU_ASSERT_STRING_EQUAL(u, "http://127.0.0.1:9000/models/k?partNumber=1&uploadId=x%2By");
	free(u);
	CU_ASSERT_EQUAL(rh_s3_url_build(&u, &t, NULL, "uploads="), 0);
	CU_ASSERT_STRING_EQUAL(u, "http://127.0.0.1:9000/models?uploads=");
	free(u);
	rh_s3_target_release(&t);

	/* virtual-host style keeps the scheme and port, bucket goes in the host */
	CU_ASSERT_EQUAL_FATAL(rh_s3_target_parse(&t, "s3://models?endpoint=http%3A%2F%2F"
						 "s3.localhost%3A4568&style=virtual"), 0);
	CU_ASSERT_STRING_EQUAL(t.prefix, "");
	CU_ASSERT_TRUE(t.virtual_style);
	CU_ASSERT_STRING_EQUAL(t.region, "us-east-1");
	CU_ASSERT_EQUAL(rh_s3_url_build(&u, &t, "x/y~z", NULL), 0);
	CU_ASSERT_STRING_EQUAL(u, "http://models.s3.localhost:4568/x/y~z");
	free(u);
	rh_s3_target_release(&t);

	/* defaults: AWS from the region, virtual style */
	setenv("AWS_REGION", "ap-southeast-1", 1);
	CU_ASSERT_EQUAL_FATAL(rh_s3_target_parse(&t, "s3://models/p"), 0);
	CU_ASSERT_STRING_EQUAL(t.endpoint, "https://s3.ap-southeast-1.amazonaws.com");
	CU_ASSERT_TRUE(t.virtual_style);
	CU_ASSERT_EQUAL(rh_s3_url_build(&u, &t, "p/f", NULL), 0);
	CU_ASSERT_STRING_EQUAL(u, "https://models.s3.ap-southeast-1.amazonaws.com/p/f");
	free(u);
	rh_s3_target_release(&t);

	/* Alibaba OSS and Nebius pick virtual style; the env endpoint is used */
	setenv("AWS_ENDPOINT_URL", "https://oss-cn-hangzhou.aliyuncs.com", 1);
	CU_ASSERT_EQUAL_FATAL(rh_s3_target_parse(&t, "s3://models/p?region=oss-cn-hangzhou"), 0);
	CU_ASSERT_TRUE(t.virtual_style);
	CU_ASSERT_EQUAL(rh_s3_url_build(&u, &t, "p/f", NULL), 0);
	CU_ASSERT_STRING_EQUAL(u, "https://models.oss-cn-hangzhou.aliyuncs.com/p/f");
	free(u);
	rh_s3_target_release(&t);
	CU_ASSERT_EQUAL_FATAL(rh_s3_target_parse(&t, "s3://models?endpoint=https://storage."
						 "eu-north1.nebius.cloud:443&region=eu-north1"),
			      0);
	CU_ASSERT_TRUE(t.virtual_style);
	CU_ASSERT_EQUAL(rh_s3_url_build(&u, &t, "f", NULL), 0);
	CU_ASSERT_STRING_EQUAL(u, "https://models.storage.eu-north1.nebius.cloud:443/f");
	free(u);
	rh_s3_target_release(&t);
	/* ... and style=path still wins */
	CU_ASSERT_EQUAL_FATAL(rh_s3_target_parse(&t, "s3://models?style=path"), 0);
	CU_ASSERT_FALSE(t.virtual_style);
	CU_ASSERT_EQUAL(rh_s3_url_build(&u, &t, "f", NULL), 0);
	CU_ASSERT_STRING_EQUAL(u, "https://oss-cn-hangzhou.aliyuncs.com/models/f");
	free(u);
	rh_s3_target_release(&t);

	/* a custom endpoint (MinIO) defaults to path style */
	setenv("AWS_ENDPOINT_URL", "http://minio.internal:9000", 1);
	CU_ASSERT_EQUAL_FATAL(rh_s3_target_parse(&t, "s3://models"), 0);
	CU_ASSERT_FALSE(t.virtual_style);
	rh_s3_target_release(&t);

	clear_aws_env();
	if (saved_region) {
		setenv("AWS_REGION", saved_region, 1);
		free(saved_region);
	}
}

static void test_sink_s3__uri_encode(void)
{
	char *e = rh_s3_uri_encode("a/b c=d&e~f.g-h_i%", true);

	CU_ASSERT_STRING_EQUAL(e, "a/b%20c%3Dd%26e~f.g-h_i%25");
	free(e);
	e = rh_s3_uri_encode("a/b", false);
	CU_ASSERT_STRING_EQUAL(e, "a%2Fb");
	free(e);
}

static void test_sink_s3__xml_scanner(void)
{
	/* shaped like AWS's ListParts answer (quoted ETags as entities) */
	static const char doc[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<ListPartsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
		"<Bucket>b</Bucket><Key>k</Key><UploadId>a&amp;b&#47;c&#x2B;</UploadId>"
		"<PartNumberMarker>0</PartNumberMarker><NextPartNumberMarker>2"
		"</NextPartNumberMarker><IsTruncated>true</IsTruncated>"
		"<Part><PartNumber>1</PartNumber><ETag>&quot;7778aef83f66abc1fa1e8477f296d394"
		"&quot;</ETag><Size>5242880</Size></Part>\n"
		"<Part >\n  <PartNumber>2</PartNumber>\n  <ETag>\"aaaa\"</ETag>"
		"<Size>10</Size></Part><Parts/><Owner><ID>x</ID></Owner>"
		"</ListPartsResult>";
	size_t pos = 0;
	const char *v;
	size_t vl;
	char *t;
	int parts = 0;

	t = rh_s3_xml_get(doc, strlen(doc), "UploadId");
	CU_ASSERT_STRING_EQUAL(t, "a&b/c+");
	free(t);
	t = rh_s3_xml_get(doc, strlen(doc), "IsTruncated");
	CU_ASSERT_STRING_EQUAL(t, "true");
	free(t);
	/* <Part> must not match <PartNumberMarker> or <Parts/> */
	while (rh_s3_xml_find(doc, strlen(doc), &pos, "Part", &v, &vl)) {
		char *num = rh_s3_xml_get(v, vl, "PartNumber");
		char *etag = rh_s3_xml_get(v, vl, "ETag");

		parts++;
		CU_ASSERT_PTR_NOT_NULL_FATAL(num);
		CU_ASSERT_PTR_NOT_NULL_FATAL(etag);
		if (parts == 1) {
			CU_ASSERT_STRING_EQUAL(num, "1");
			CU_ASSERT_STRING_EQUAL(etag, "\"7778aef83f66abc1fa1e8477f296d394\"");
		} else {
			CU_ASSERT_STRING_EQUAL(num, "2");
			CU_ASSERT_STRING_EQUAL(etag, "\"aaaa\"");
		}
		free(num);
		free(etag);
	}
	CU_ASSERT_EQUAL(parts, 2);
	CU_ASSERT_PTR_NULL(rh_s3_xml_get(doc, strlen(doc), "Missing"));
	/* truncated documents: no element, no read past the end */
	CU_ASSERT_PTR_NULL(rh_s3_xml_get(doc, 60, "Bucket"));
	pos = 0;
	CU_ASSERT_FALSE(rh_s3_xml_find("<Code>Acc", 9, &pos, "Code", &v, &vl));
	t = rh_s3_xml_get("<Error><Code>AccessDenied</Code></Error>", 40, "Code");
	CU_ASSERT_STRING_EQUAL(t, "AccessDenied");
	free(t);
	CU_ASSERT_PTR_NULL(rh_s3_xml_get(NULL, 0, "Code"));
}

static void test_sink_s3__bad_targets(void)
{
	static const char *bad[] = {
		"http://models/p",                       /* not s3:// */
		"s3://",                                 /* no bucket */
		"s3://ab/p",                             /* bucket too short */
		"s3://Models/p",                         /* uppercase */
		"s3://models/../etc?endpoint=http://h",  /* escaping prefix */
		"s3://models/.rehydra-sink/x",           /* our reserved names */
		"s3://models?endpoint=ftp://h",          /* not http(s) */
		"s3://models?endpoint=http://h/base",    /* endpoint with a path */
		"s3://models?endpoint=http://u@h",       /* userinfo */
		"s3://models?region=EU%20x",             /* bad region */
		"s3://models?style=sideways",
		"s3://models?colour=blue",               /* unknown option */
		"s3://models?endpoint",                  /* no value */
		"s3://models?endpoint=http%3",           /* bad escape */
		"s3://my_bucket?endpoint=http://h&style=virtual", /* '_' not a host name */
	};

	clear_aws_env();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rh_s3_target t;
		int err = rh_s3_target_parse(&t, bad[i]);

		if (err != RH_EINVAL)
			fprintf(stderr, "accepted: %s\n", bad[i]);
		CU_ASSERT_EQUAL(err, RH_EINVAL);
		CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "s3"));
		CU_ASSERT_PTR_NULL(t.bucket);
	}
}

static void test_sink_s3__no_credentials(void)
{
	struct rh_sink_opts o = RH_SINK_OPTS_INIT;
	struct rh_sink *s = (struct rh_sink *)1;
	char *key = getenv("AWS_ACCESS_KEY_ID") ? strdup(getenv("AWS_ACCESS_KEY_ID")) : NULL;

	unsetenv("AWS_ACCESS_KEY_ID");
	CU_ASSERT_EQUAL(rh_sink_s3_open(&s, "s3://models?endpoint=http://127.0.0.1:1", &o),
			RH_EINVAL);
	CU_ASSERT_PTR_NULL(s);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "AWS_ACCESS_KEY_ID"));
	if (key) {
		setenv("AWS_ACCESS_KEY_ID", key, 1);
		free(key);
	}
}

static void test_sink_s3__connection_refused(void)
{
	struct rh_sink_opts o = RH_SINK_OPTS_INIT;
	struct rh_sink *s = NULL;
	char *key = getenv("AWS_ACCESS_KEY_ID") ? strdup(getenv("AWS_ACCESS_KEY_ID")) : NULL;
	char *sec = getenv("AWS_SECRET_ACCESS_KEY") ? strdup(getenv("AWS_SECRET_ACCESS_KEY")) :
						       NULL;

	setenv("AWS_ACCESS_KEY_ID", "AKIATESTTESTTEST", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "refused-secret-value", 1);
	/* port 1 on loopback: nothing listens there */
	CU_ASSERT_EQUAL(rh_sink_s3_open(&s, "s3://models?endpoint=http://127.0.0.1:1", &o),
			RH_EIO);
	CU_ASSERT_PTR_NULL(s);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "cannot connect to s3 endpoint "
					"http://127.0.0.1:1"));
	CU_ASSERT_PTR_NULL(strstr(rh_error_last(), "refused-secret-value"));
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	if (key)
		setenv("AWS_ACCESS_KEY_ID", key, 1);
	if (sec)
		setenv("AWS_SECRET_ACCESS_KEY", sec, 1);
	free(key);
	free(sec);
}

/* ---- against s3rver ------------------------------------------------------- */

static uint64_t progress_total;
static uint64_t progress_cancel_at;
static struct rh_cancel *progress_cancel;

static void on_progress(void *user, uint64_t delta)
{
	(void)user;
	progress_total += delta;
	if (progress_cancel && progress_cancel_at && progress_total >= progress_cancel_at)
		rh_cancel_fire(progress_cancel);
}

static void test_sink_s3__small_put_has_commit(void)
{
	static const char body[] = "tokenizer: small file that goes in one PUT\n";
	char *url;
	struct rh_sink *s;
	struct mem_src m;
	struct rh_put_stats st = { 0 };
	char sha[65];
	char other[65];
	bool present = true;
	char *key;

	if (skip())
		return;
	url = sink_url("small");
	rh_sha256_buf_hex(sha, body, strlen(body));
	memset(other, 'a', 64);
	other[64] = '\0';
	mem_src_init(&m, body, strlen(body));
	s = open_ok(url, 0, 0);
	CU_ASSERT_STRING_EQUAL(s->ops->scheme, "s3");
	CU_ASSERT_PTR_NOT_NULL(strstr(s->location, "s3://rhtest/"));
	CU_ASSERT_EQUAL(s->ops->has(s, "tok/vocab.txt", strlen(body), sha, &present), 0);
	CU_ASSERT_FALSE(present);
	progress_total = 0;
	s->progress = on_progress;
	CU_ASSERT_EQUAL_FATAL(s->ops->put(s, "tok/vocab.txt", strlen(body), sha, &m.src, &st), 0);
	CU_ASSERT_EQUAL(st.bytes_sent, strlen(body));
	CU_ASSERT_EQUAL(st.bytes_resumed, 0);
	CU_ASSERT_EQUAL(progress_total, strlen(body));
	CU_ASSERT_EQUAL(s->ops->has(s, "tok/vocab.txt", strlen(body), sha, &present), 0);
	CU_ASSERT_TRUE(present);
	/* same size, other content: not present */
	CU_ASSERT_EQUAL(s->ops->has(s, "tok/vocab.txt", strlen(body), other, &present), 0);
	CU_ASSERT_FALSE(present);
	CU_ASSERT_EQUAL(s->ops->has(s, "tok/vocab.txt", strlen(body) + 1, sha, &present), 0);
	CU_ASSERT_FALSE(present);
	CU_ASSERT_EQUAL(s->ops->commit(s), 0);
	rh_sink_close(s);

	key = obj_key("small", ".rehydra-sink.json");
	CU_ASSERT_EQUAL(head_status(key), 200);
	free(key);
	/* a fresh sink reads the manifest back */
	s = open_ok(url, 0, 0);
	CU_ASSERT_EQUAL(s->ops->has(s, "tok/vocab.txt", strlen(body), sha, &present), 0);
	CU_ASSERT_TRUE(present);
	CU_ASSERT_EQUAL(s->ops->has(s, "tok/missing.txt", 3, sha, &present), 0);
	CU_ASSERT_FALSE(present);
	/* paths that could escape or collide with our own objects */
	CU_ASSERT_EQUAL(s->ops->put(s, "../x", strlen(body), sha, &m.src, &st), RH_EINVAL);
	CU_ASSERT_EQUAL(s->ops->put(s, ".rehydra-sink.json", strlen(body), sha, &m.src, &st),
			RH_EINVAL);
	CU_ASSERT_EQUAL(s->ops->has(s, "/etc/passwd", 1, sha, &present), RH_EINVAL);
	CU_ASSERT_EQUAL(s->ops->put(s, "x", strlen(body), "nothex", &m.src, &st), RH_EINVAL);
	rh_sink_close(s);
	free(url);
}

static void test_sink_s3__multipart_40mib(void)
{
	char *dir;
	char *url;
	struct file_src f;
	struct rh_sink *s;
	struct rh_put_stats st = { 0 };
	char sha[65];
	bool present = false;
	char *key;

	if (skip())
		return;
	dir = rh_test_tmpdir();
	file_src_make(&f, dir, "big.bin", 40 * MIB, 40, sha);
	url = sink_url("big");
	/* default 16 MiB parts: three parts, all in flight at once */
	s = open_ok(url, 4, 0);
	progress_total = 0;
	s->progress = on_progress;
	if (s->ops->put(s, "shards/big.bin", f.src.size, sha, &f.src, &st) != 0)
		fprintf(stderr, "put: %s\n", rh_error_last());
	CU_ASSERT_EQUAL(st.bytes_sent, 40 * MIB);
	CU_ASSERT_EQUAL(st.bytes_resumed, 0);
	CU_ASSERT_EQUAL(progress_total, 40 * MIB);
	CU_ASSERT_EQUAL(s->ops->has(s, "shards/big.bin", f.src.size, sha, &present), 0);
	CU_ASSERT_TRUE(present);
	CU_ASSERT_EQUAL(s->ops->commit(s), 0);
	rh_sink_close(s);
	/* the upload's state object is gone once it completed */
	key = state_key("big", "shards/big.bin", sha);
	CU_ASSERT_EQUAL(head_status(key), 404);
	free(key);

	/* unchanged re-sync: has() says yes, so nothing is sent */
	s = open_ok(url, 4, 0);
	present = false;
	CU_ASSERT_EQUAL(s->ops->has(s, "shards/big.bin", f.src.size, sha, &present), 0);
	CU_ASSERT_TRUE(present);
	rh_sink_close(s);
	printf("sha256 %s ", sha);
	/* for s3.sh, which GETs the object back and compares */
	{
		char *p = rh_test_path(getenv("RH_TEST_S3_OUT") ? getenv("RH_TEST_S3_OUT") : dir,
				       "big.sha256");
		char line[80];

		snprintf(line, sizeof(line), "%s\n", sha);
		rh_test_write_file(p, line);
		free(p);
	}
	close(f.fd);
	rh_test_rm_rf(dir);
	free(dir);
	free(url);
}

static void test_sink_s3__resume_after_cancel(void)
{
	char *dir;
	char *url;
	struct file_src f;
	struct rh_sink *s;
	struct rh_cancel cancel;
	struct rh_put_stats st = { 0 };
	char sha[65];
	bool present = true;
	char *key;
	char *skey;
	int err;

	if (skip())
		return;
	dir = rh_test_tmpdir();
	file_src_make(&f, dir, "resume.bin", 40 * MIB, 41, sha);
	url = sink_url("resume");
	CU_ASSERT_EQUAL_FATAL(rh_cancel_init(&cancel), 0);

	/* 8 parts of 5 MiB, 2 at a time. Once 25 MiB went to curl, at least
	 * 15 MiB of it belongs to parts that completed: each worker holds at
	 * most one unfinished 5 MiB part. Cancel then. */
	s = open_ok(url, 2, 5 * MIB);
	progress_total = 0;
	progress_cancel = &cancel;
	progress_cancel_at = 25 * MIB;
	s->progress = on_progress;
	s->cancel = &cancel;
	err = s->ops->put(s, "model.bin", f.src.size, sha, &f.src, &st);
	CU_ASSERT_EQUAL(err, RH_ECANCELLED);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "cancel"));
	CU_ASSERT_TRUE(st.bytes_sent >= 25 * MIB);
	progress_cancel = NULL;
	progress_cancel_at = 0;
	rh_sink_close(s);
	key = obj_key("resume", "model.bin");
	CU_ASSERT_EQUAL(head_status(key), 404); /* nothing under the final name */
	skey = state_key("resume", "model.bin", sha);
	CU_ASSERT_EQUAL(head_status(skey), 200); /* but the upload is remembered */

	/* the next run resumes */
	s = open_ok(url, 2, 5 * MIB);
	present = true;
	CU_ASSERT_EQUAL(s->ops->has(s, "model.bin", f.src.size, sha, &present), 0);
	CU_ASSERT_FALSE(present);
	memset(&st, 0, sizeof(st));
	err = s->ops->put(s, "model.bin", f.src.size, sha, &f.src, &st);
	if (err != 0)
		fprintf(stderr, "resume: %s\n", rh_error_last());
	CU_ASSERT_EQUAL(err, 0);
	printf("resumed %llu, sent %llu ", (unsigned long long)st.bytes_resumed,
	       (unsigned long long)st.bytes_sent);
	CU_ASSERT_TRUE(st.bytes_resumed >= 15 * MIB);
	CU_ASSERT_TRUE(st.bytes_sent < f.src.size);
	CU_ASSERT_EQUAL(st.bytes_sent + st.bytes_resumed, f.src.size);
	CU_ASSERT_EQUAL(s->ops->has(s, "model.bin", f.src.size, sha, &present), 0);
	CU_ASSERT_TRUE(present);
	CU_ASSERT_EQUAL(s->ops->commit(s), 0);
	rh_sink_close(s);
	CU_ASSERT_EQUAL(head_status(key), 200);
	CU_ASSERT_EQUAL(head_status(skey), 404);
	free(skey);
	{
		char *p = rh_test_path(getenv("RH_TEST_S3_OUT") ? getenv("RH_TEST_S3_OUT") : dir,
				       "resume.sha256");
		char line[80];

		snprintf(line, sizeof(line), "%s\n", sha);
		rh_test_write_file(p, line);
		free(p);
	}
	free(key);
	rh_cancel_clear(&cancel);
	close(f.fd);
	rh_test_rm_rf(dir);
	free(dir);
	free(url);
}

static void test_sink_s3__wrong_keys(void)
{
	struct rh_sink_opts o = RH_SINK_OPTS_INIT;
	struct rh_sink *s = NULL;
	char *url;
	const char *msg;

	if (skip())
		return;
	url = sink_url("denied");
	/* an unknown key id: 403 InvalidAccessKeyId */
	setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGKEY0123456", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-never-printed", 1);
	setenv("AWS_SESSION_TOKEN", "session-token-never-printed", 1);
	CU_ASSERT_EQUAL(rh_sink_s3_open(&s, url, &o), RH_EIO);
	CU_ASSERT_PTR_NULL(s);
	msg = rh_error_last();
	printf("\n    message: %s\n    ", msg);
	CU_ASSERT_PTR_NOT_NULL(strstr(msg, "access denied by s3 endpoint"));
	CU_ASSERT_PTR_NOT_NULL(strstr(msg, "for bucket rhtest"));
	CU_ASSERT_PTR_NOT_NULL(strstr(msg, "InvalidAccessKeyId"));
	CU_ASSERT_PTR_NOT_NULL(strstr(msg, "AWS_SECRET_ACCESS_KEY"));
	CU_ASSERT_PTR_NOT_NULL(strstr(msg, "AKIA..."));
	CU_ASSERT_PTR_NULL(strstr(msg, "AKIAWRONGKEY0123456"));
	CU_ASSERT_PTR_NULL(strstr(msg, "wrong-secret-never-printed"));
	CU_ASSERT_PTR_NULL(strstr(msg, "session-token-never-printed"));
	setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
	unsetenv("AWS_SESSION_TOKEN");
	free(url);
}

/* The right key id, the wrong secret: the server (@20minutes/s3rver, which
 * verifies SigV4 like AWS) recomputes the signature and answers 403
 * SignatureDoesNotMatch; the message names the endpoint and the variable to
 * fix, never the value. */
static void test_sink_s3__wrong_secret(void)
{
	struct rh_sink_opts o = RH_SINK_OPTS_INIT;
	struct rh_sink *s = NULL;
	char *url;
	const char *msg;

	if (skip())
		return;
	url = sink_url("badsig");
	setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-never-printed", 1);
	CU_ASSERT_EQUAL(rh_sink_s3_open(&s, url, &o), RH_EIO);
	CU_ASSERT_PTR_NULL(s);
	msg = rh_error_last();
	printf("\n    message: %s\n    ", msg);
	CU_ASSERT_PTR_NOT_NULL(strstr(msg, "access denied by s3 endpoint"));
	CU_ASSERT_PTR_NOT_NULL(strstr(msg, endpoint()));
	CU_ASSERT_PTR_NOT_NULL(strstr(msg, "SignatureDoesNotMatch"));
	CU_ASSERT_PTR_NOT_NULL(strstr(msg, "AWS_SECRET_ACCESS_KEY is the secret of"));
	CU_ASSERT_PTR_NULL(strstr(msg, "wrong-secret-never-printed"));
	setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
	free(url);
}

static void test_sink_s3__missing_bucket(void)
{
	struct rh_sink_opts o = RH_SINK_OPTS_INIT;
	struct rh_sink *s = NULL;
	char *url = NULL;

	if (skip())
		return;
	if (asprintf(&url, "s3://no-such-bucket-here/p?endpoint=%s", endpoint()) < 0)
		abort();
	CU_ASSERT_EQUAL(rh_sink_s3_open(&s, url, &o), RH_ENOTFOUND);
	CU_ASSERT_PTR_NULL(s);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "bucket no-such-bucket-here does not "
					"exist"));
	free(url);
}

static void test_sink_s3__sha256_mismatch(void)
{
	static const char body[] = "the registry said one thing, the cache holds another";
	char *dir;
	char *url;
	struct mem_src m;
	struct file_src f;
	struct rh_sink *s;
	struct rh_put_stats st = { 0 };
	char wrong[65];
	char sha[65];
	char *key;
	bool present = true;

	if (skip())
		return;
	url = sink_url("mismatch");
	s = open_ok(url, 2, 5 * MIB);
	/* one PUT: refused before anything is sent */
	rh_sha256_buf_hex(wrong, "something else", 14);
	mem_src_init(&m, body, strlen(body));
	CU_ASSERT_EQUAL(s->ops->put(s, "small.bin", strlen(body), wrong, &m.src, &st),
			RH_EVERIFY);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "sha256 mismatch for small.bin"));
	CU_ASSERT_EQUAL(st.bytes_sent, 0);
	key = obj_key("mismatch", "small.bin");
	CU_ASSERT_EQUAL(head_status(key), 404);
	free(key);
	/* multipart: the parts go while the hash runs; no object appears */
	dir = rh_test_tmpdir();
	file_src_make(&f, dir, "big.bin", 12 * MIB, 7, sha);
	sha[0] = sha[0] == '0' ? '1' : '0';
	CU_ASSERT_EQUAL(s->ops->put(s, "big.bin", f.src.size, sha, &f.src, &st), RH_EVERIFY);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "sha256 mismatch for big.bin"));
	key = obj_key("mismatch", "big.bin");
	CU_ASSERT_EQUAL(head_status(key), 404);
	free(key);
	key = state_key("mismatch", "big.bin", sha); /* the upload was aborted */
	CU_ASSERT_EQUAL(head_status(key), 404);
	free(key);
	CU_ASSERT_EQUAL(s->ops->has(s, "big.bin", f.src.size, sha, &present), 0);
	CU_ASSERT_FALSE(present);
	/* a source shorter than the manifest says */
	f.src.size = 12 * MIB + 1;
	CU_ASSERT_EQUAL(s->ops->put(s, "big.bin", f.src.size, sha, &f.src, &st), RH_EVERIFY);
	CU_ASSERT_PTR_NOT_NULL(strstr(rh_error_last(), "ended"));
	rh_sink_close(s);
	close(f.fd);
	rh_test_rm_rf(dir);
	free(dir);
	free(url);
}

/* A test double of a source that changes under the sink: every byte reads
 * as written the first time and with its low bit flipped after that, so
 * whichever of the hashing pass and the sending read comes second sees
 * other bytes than the first. */
struct flip_src {
	struct rh_source src;
	const uint8_t *data;
	uint8_t *seen;
	size_t reread; /* bytes read more than once */
	pthread_mutex_t lock;
};

static long flip_read_at(void *user, uint64_t off, void *buf, size_t len)
{
	struct flip_src *f = user;
	uint8_t *out = buf;

	if (off >= f->src.size)
		return 0;
	if (len > f->src.size - off)
		len = (size_t)(f->src.size - off);
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < len; i++) {
		out[i] = f->data[off + i] ^ (f->seen[off + i] ? 1 : 0);
		f->reread += f->seen[off + i];
		f->seen[off + i] = 1;
	}
	pthread_mutex_unlock(&f->lock);
	return (long)len;
}

/* One PUT reads each byte once to hash and once to send, never hashing it
 * twice: a source that changes between the two must not end up stored. A
 * multipart upload reads each byte once, hashes it and sends those very
 * bytes: the source changing afterwards cannot matter, and what is stored
 * is what was hashed. */
static void test_sink_s3__source_changes_while_sent(void)
{
	static const size_t sizes[] = { 3 * MIB, 12 * MIB };
	char *url;
	struct rh_sink *s;

	if (skip())
		return;
	url = sink_url("changing");
	s = open_ok(url, 2, 5 * MIB);
	for (size_t k = 0; k < 2; k++) {
		struct flip_src f = { .lock = PTHREAD_MUTEX_INITIALIZER };
		struct rh_put_stats st = { 0 };
		uint8_t *data = malloc(sizes[k]);
		char sha[65];
		char *key;
		int err;

		CU_ASSERT_FATAL(data != NULL);
		for (size_t i = 0; i < sizes[k]; i++)
			data[i] = (uint8_t)(i * 7 + k);
		rh_sha256_buf_hex(sha, data, sizes[k]);
		f.data = data;
		f.seen = calloc(1, sizes[k]);
		CU_ASSERT_FATAL(f.seen != NULL);
		f.src.size = sizes[k];
		f.src.read_at = flip_read_at;
		f.src.user = &f;
		f.src.name = "changing.bin";
		err = s->ops->put(s, "changing.bin", sizes[k], sha, &f.src, &st);
		key = obj_key("changing", "changing.bin");
		if (sizes[k] <= 5 * MIB) {
			CU_ASSERT_NOT_EQUAL(err, 0);
			printf("%zu MiB: %s; ", (size_t)(sizes[k] / MIB), rh_error_last());
			CU_ASSERT_EQUAL(head_status(key), 404);
		} else {
			if (err != 0)
				fprintf(stderr, "multipart: %s\n", rh_error_last());
			CU_ASSERT_EQUAL(err, 0);
			printf("%zu MiB: stored, %zu bytes read twice; ",
			       (size_t)(sizes[k] / MIB), f.reread);
			CU_ASSERT_EQUAL(f.reread, 0);
			CU_ASSERT_EQUAL(head_status(key), 200);
			CU_ASSERT_EQUAL(get_sha256_is(key, sha), true);
		}
		free(key);
		free(f.seen);
		free(data);
		pthread_mutex_destroy(&f.lock);
	}
	rh_sink_close(s);
	free(url);
}

static void test_sink_s3__virtual_host_style(void)
{
	static const char body[] = "virtual-host style";
	const char *vh = getenv("RH_TEST_S3_VHOST_ENDPOINT");
	struct rh_sink *s;
	struct mem_src m;
	struct rh_put_stats st = { 0 };
	char sha[65];
	char *url = NULL;
	char *key;
	bool present = false;

	if (skip())
		return;
	if (!vh || !*vh) {
		printf("skipped: RH_TEST_S3_VHOST_ENDPOINT unset ");
		return;
	}
	if (asprintf(&url, "s3://%s/%s/vhost?endpoint=%s&style=virtual", bucket(), prefix(),
		     vh) < 0)
		abort();
	rh_sha256_buf_hex(sha, body, strlen(body));
	mem_src_init(&m, body, strlen(body));
	s = open_ok(url, 0, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(s->url, "style=virtual"));
	CU_ASSERT_EQUAL(s->ops->put(s, "f.txt", strlen(body), sha, &m.src, &st), 0);
	CU_ASSERT_EQUAL(s->ops->has(s, "f.txt", strlen(body), sha, &present), 0);
	CU_ASSERT_TRUE(present);
	rh_sink_close(s);
	/* it landed in the bucket, under the key path style would use */
	key = obj_key("vhost", "f.txt");
	CU_ASSERT_EQUAL(head_status(key), 200);
	free(key);
	free(url);
}

RH_TEST_MAIN("sink_s3",
	     { "url_building", test_sink_s3__url_building },
	     { "uri_encode", test_sink_s3__uri_encode },
	     { "xml_scanner", test_sink_s3__xml_scanner },
	     { "bad_targets", test_sink_s3__bad_targets },
	     { "no_credentials", test_sink_s3__no_credentials },
	     { "connection_refused", test_sink_s3__connection_refused },
	     { "small_put_has_commit", test_sink_s3__small_put_has_commit },
	     { "multipart_40mib", test_sink_s3__multipart_40mib },
	     { "resume_after_cancel", test_sink_s3__resume_after_cancel },
	     { "wrong_keys", test_sink_s3__wrong_keys },
	     { "wrong_secret", test_sink_s3__wrong_secret },
	     { "missing_bucket", test_sink_s3__missing_bucket },
	     { "sha256_mismatch", test_sink_s3__sha256_mismatch },
	     { "source_changes_while_sent", test_sink_s3__source_changes_while_sent },
	     { "virtual_host_style", test_sink_s3__virtual_host_style })
