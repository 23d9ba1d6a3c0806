/*
 * url.h - percent-decoding of URL parts (RFC 3986 section 2.1).
 *
 * Sink URLs (file://, sftp://, s3://) and registry remotes with credentials
 * all carry percent-encoded parts; one decoder with one signature decides
 * what a bad escape or an encoded NUL means, instead of each parser
 * deciding on its own.
 */
#ifndef RH_URL_H
#define RH_URL_H

#include <stddef.h>

enum rh_url_decode_flags {
	/* A '%' not followed by two hex digits stays as it is (git's and
	 * browsers' reading of userinfo) instead of being an error. */
	RH_URL_KEEP_BAD_ESCAPES = 1u << 0,
	/* Refuse control characters (below 0x20, and 0x7f), raw or decoded. */
	RH_URL_NO_CONTROL = 1u << 1,
};

/* Decodes the `n` bytes at `s` into *out (new: caller frees). An encoded
 * NUL ("%00") is always refused. Returns 0, RH_EINVAL (message names the
 * offending escape; *out NULL) or RH_ENOMEM. `flags`: rh_url_decode_flags. */
int rh_url_decode(char **out, const char *s, size_t n, unsigned flags);

#endif
