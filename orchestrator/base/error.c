/*
 * error.c - per-thread error messages (see error.h).
 *
 * The message lives in a thread-local fixed buffer: setting an error never
 * allocates, so it also works when an allocation is what failed.
 */
#include "error.h"

#include <stdio.h>
#include <string.h>

#define RH_ERROR_MAX 2048

static _Thread_local char err_buf[RH_ERROR_MAX];

int rh_error_set(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
	return code;
}

int rh_error_set_errno(int code, int errnum, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
	n = strlen(err_buf);
	snprintf(err_buf + n, sizeof(err_buf) - n, ": %s", strerror(errnum));
	return code;
}

int rh_error_prefix(int code, const char *fmt, ...)
{
	char old[RH_ERROR_MAX];
	va_list ap;
	size_t n;
	int w;

	memcpy(old, err_buf, sizeof(old));
	va_start(ap, fmt);
	w = vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	va_end(ap);
	n = w < 0 ? 0 : (size_t)w;
	if (old[0] && n + 2 < sizeof(err_buf)) {
		memcpy(err_buf + n, ": ", 3);
		n += 2;
		/* Truncation of the older, inner message is acceptable. */
		memcpy(err_buf + n, old, strnlen(old, sizeof(err_buf) - n - 1));
		err_buf[n + strnlen(old, sizeof(err_buf) - n - 1)] = '\0';
	}
	return code;
}

const char *rh_error_last(void)
{
	return err_buf;
}

void rh_error_clear(void)
{
	err_buf[0] = '\0';
}

const char *rh_strerror(int code)
{
	switch (code) {
	case RH_OK:
		return "ok";
	case RH_EINVAL:
		return "invalid input";
	case RH_ENOTFOUND:
		return "not found";
	case RH_ETIMEOUT:
		return "timed out";
	case RH_ECANCELLED:
		return "cancelled";
	case RH_EUNSUPPORTED:
		return "unsupported";
	case RH_EIO:
		return "i/o error";
	case RH_EVERIFY:
		return "verification failed";
	case RH_ENOMEM:
		return "out of memory";
	default:
		return "error";
	}
}
