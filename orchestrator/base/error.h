/*
 * error.h - one error convention for all of rehydra.
 *
 * Every function that can fail returns an int: 0 on success, a negative
 * RH_E* code on failure. The human-readable reason is kept per thread (steps
 * run in parallel) and read with rh_error_last(). The code that detects a
 * failure sets the message; callers that add context use rh_error_prefix().
 * Only main() turns errors into exit codes; library code never prints.
 */
#ifndef RH_ERROR_H
#define RH_ERROR_H

#include <stdarg.h>

enum rh_error_code {
	RH_OK = 0,
	RH_ERROR = -1,	      /* generic failure; the message says what */
	RH_EINVAL = -2,	      /* bad input: runbook, arguments, manifest */
	RH_ENOTFOUND = -3,    /* a named thing does not exist */
	RH_ETIMEOUT = -4,     /* a deadline passed */
	RH_ECANCELLED = -5,   /* the drill was interrupted */
	RH_EUNSUPPORTED = -6, /* an optional hook or feature is not available */
	RH_EIO = -7,	      /* filesystem or network I/O failed */
	RH_EVERIFY = -8,      /* a checksum or expectation did not match */
	RH_ENOMEM = -9,
};

/* Sets this thread's error message (printf-style) and returns `code`, so a
 * caller can write `return rh_error_set(RH_EINVAL, "...")`. */
int rh_error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like rh_error_set, appending ": strerror(errnum)". */
int rh_error_set_errno(int code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "context: " to this thread's current message. Returns `code`. */
int rh_error_prefix(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* This thread's last message (borrowed; valid until the next rh_error_*
 * call on this thread). Never NULL: "" when nothing was set. */
const char *rh_error_last(void);

/* Clears this thread's message. */
void rh_error_clear(void);

/* A short fixed name for a code ("timeout", "not found", ...). */
const char *rh_strerror(int code);

#endif
