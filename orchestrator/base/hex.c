/*
 * hex.c - hex digits and the lowercase hex checks (see hex.h).
 *
 * Lowercase only in what we write and what we accept as a digest: the
 * manifest, pointer and journal formats say so, and accepting both cases
 * would let two spellings of one digest name two different objects.
 */
#include "hex.h"

#include "error.h"

#include <stdint.h>

#include "banned.h"

int rh_hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void rh_hex_encode(char *out, const void *data, size_t len)
{
	static const char digits[] = "0123456789abcdef";
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * len] = '\0';
}

int rh_hex_decode(void *out, const char *hex, size_t n)
{
	uint8_t *o = out;

	if (n % 2 != 0)
		return rh_error_set(RH_EINVAL, "odd number of hex digits (%zu)", n);
	for (size_t i = 0; i < n; i += 2) {
		int hi = rh_hex_val(hex[i]);
		int lo = hi < 0 ? -1 : rh_hex_val(hex[i + 1]);

		if (lo < 0)
			return rh_error_set(RH_EINVAL, "not a hex digit at position %zu",
					    hi < 0 ? i + 1 : i + 2);
		o[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* 1 for '0'-'9' and 'a'-'f': one load per byte and no early exit, which
 * the compiler vectorises (verify checks two digests per journal line). */
static const uint8_t lower_hex[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
};

bool rh_hex_is_lower(const char *s, size_t n)
{
	unsigned ok = 1;

	for (size_t i = 0; i < n; i++)
		ok &= lower_hex[(unsigned char)s[i]];
	return ok != 0;
}

bool rh_hex_is_sha256(const char *s)
{
	size_t i;

	if (!s)
		return false;
	for (i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[i] == '\0';
}
