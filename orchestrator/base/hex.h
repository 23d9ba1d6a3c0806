/*
 * hex.h - hexadecimal digits, one way: the value of a digit, encoding bytes
 * as lowercase hex, decoding hex into bytes, and the checks for the
 * lowercase hex strings rehydra keeps (SHA-256 digests, git commit ids).
 *
 * Written once here because digests cross every layer: the registry
 * manifest, the LFS pointers, the cache, the sinks and the journal all
 * check the same 64 lowercase hex digits.
 */
#ifndef RH_HEX_H
#define RH_HEX_H

#include <stdbool.h>
#include <stddef.h>

/* The value of one hex digit (either case), or -1 for anything else. */
int rh_hex_val(char c);

/* Writes 2 * len lowercase hex digits of `data` and a NUL into `out`, which
 * holds at least 2 * len + 1 bytes. */
void rh_hex_encode(char *out, const void *data, size_t len);

/* Decodes `n` hex digits (either case) of `hex` into n / 2 bytes at `out`.
 * Returns 0, or RH_EINVAL (message names the position) when n is odd or a
 * character is not a hex digit; `out` may then be partly written. */
int rh_hex_decode(void *out, const char *hex, size_t n);

/* True when the first `n` bytes of `s` are all lowercase hex digits. */
bool rh_hex_is_lower(const char *s, size_t n);

/* True when `s` is a SHA-256 digest as rehydra writes it: exactly 64
 * lowercase hex digits and then the end of the string. False for NULL. */
bool rh_hex_is_sha256(const char *s);

#endif
