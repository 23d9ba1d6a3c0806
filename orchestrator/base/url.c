/*
 * url.c - percent-decoding (see url.h).
 *
 * The result is never longer than the input, so it is allocated once at
 * the input's length; nothing is decoded twice ("%2541" is "%41").
 */
#include "url.h"

#include "error.h"
#include "hex.h"

#include <stdbool.h>
#include <stdlib.h>

#include "banned.h"

int rh_url_decode(char **out, const char *s, size_t n, unsigned flags)
{
	char *d = malloc(n + 1);
	size_t o = 0;
	int err = 0;

	*out = NULL;
	if (!d)
		return rh_error_set(RH_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '%') {
			bool ok =
			    i + 2 < n && rh_hex_val(s[i + 1]) >= 0 && rh_hex_val(s[i + 2]) >= 0;

			if (ok) {
				ch = (unsigned char)(rh_hex_val(s[i + 1]) * 16 +
						     rh_hex_val(s[i + 2]));
				if (ch == 0) {
					err = rh_error_set(RH_EINVAL,
							   "encoded NUL (%%00) at "
							   "offset %zu",
							   i);
					goto done;
				}
				i += 2;
			} else if (!(flags & RH_URL_KEEP_BAD_ESCAPES)) {
				err = rh_error_set(RH_EINVAL,
						   "bad percent-escape \"%.*s\" at "
						   "offset %zu",
						   (int)(n - i < 3 ? n - i : 3), s + i, i);
				goto done;
			}
		}
		if ((flags & RH_URL_NO_CONTROL) && (ch < 0x20 || ch == 0x7f)) {
			err = rh_error_set(RH_EINVAL, "control character at offset %zu", i);
			goto done;
		}
		d[o++] = (char)ch;
	}
	d[o] = '\0';
	*out = d;
	d = NULL;
done:
	free(d);
	return err;
}
