/*
 * clock.h - the drill's two clocks.
 *
 * Durations come from CLOCK_MONOTONIC (never jumps); wall times, only for
 * display and records, are UTC RFC 3339 with milliseconds.
 */
#ifndef RH_CLOCK_H
#define RH_CLOCK_H

#include <stddef.h>
#include <time.h>

/* Seconds on CLOCK_MONOTONIC. */
double rh_clock_mono(void);

/* Writes "2026-11-21T04:33:18.123Z" for `ts` into buf (at least 32 bytes). */
void rh_clock_rfc3339(char *buf, size_t size, const struct timespec *ts);

/* Current wall time (CLOCK_REALTIME). */
struct timespec rh_clock_wall(void);

#endif
