/*
 * sink_s3.h - the pure parts of the S3 sink, exposed for unit tests: target
 * URL parsing (with the AWS_* environment defaults) and request URL
 * building. Neither touches the network. The sink itself is opened with
 * rh_sink_s3_open (sink.h).
 */
#ifndef RH_SINK_S3_H
#define RH_SINK_S3_H

#include <stdbool.h>
#include <stddef.h>

struct rh_s3_target {
	char *bucket;
	char *prefix;	/* "" or "a/b": no leading or trailing '/' */
	char *endpoint; /* "scheme://host[:port]", no trailing '/' */
	char *region;
	bool virtual_style;
};

/* Parses "s3://bucket[/prefix][?endpoint=URL&region=R&style=path|virtual]".
 * Missing pieces come from the environment: region from AWS_REGION, then
 * AWS_DEFAULT_REGION, else us-east-1; endpoint from AWS_ENDPOINT_URL_S3,
 * then AWS_ENDPOINT_URL, else https://s3.<region>.amazonaws.com; style is
 * virtual for *.amazonaws.com, *.aliyuncs.com and *.nebius.cloud endpoints
 * and path otherwise. Fills *t (new strings; free with
 * rh_s3_target_release). Returns 0 or RH_EINVAL naming the URL. */
int rh_s3_target_parse(struct rh_s3_target *t, const char *url);
void rh_s3_target_release(struct rh_s3_target *t);

/* Percent-encodes `s` the way SigV4 canonicalises it: unreserved
 * characters (A-Z a-z 0-9 - . _ ~) stay, '/' stays when keep_slash, the
 * rest becomes %XX. Returns a new string, or NULL when out of memory. */
char *rh_s3_uri_encode(const char *s, bool keep_slash);

/* The request URL for object `key` (raw, unencoded; NULL or "" for the
 * bucket itself) with an already encoded, sorted `query` (NULL for none):
 * path style "endpoint/bucket/key?query", virtual-host style
 * "scheme://bucket.host[:port]/key?query". *out is new. Returns 0 or
 * RH_ENOMEM. */
int rh_s3_url_build(char **out, const struct rh_s3_target *t, const char *key, const char *query);

/* The tiny XML scanner S3 answers are read with. rh_s3_xml_find finds the
 * next element <tag ...>text</tag> (or <tag/>) at or after *pos in
 * xml[0..len): val and vlen get its raw text (borrowed), pos moves past it.
 * rh_s3_xml_get returns the decoded text of the first <tag> (the five XML
 * entities and ASCII character references; new string) or NULL. */
bool rh_s3_xml_find(const char *xml, size_t len, size_t *pos, const char *tag, const char **val,
		    size_t *vlen);
char *rh_s3_xml_get(const char *xml, size_t len, const char *tag);

#endif
