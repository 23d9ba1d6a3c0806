/*
 * clock.c - the drill's two clocks (see clock.h).
 *
 * Everything that measures a duration uses CLOCK_MONOTONIC so an NTP step
 * during a drill cannot shorten or lengthen an RTO; the wall clock is only
 * read for the timestamps a human or an auditor reads.
 */
#include "clock.h"

#include <stdio.h>

#include "banned.h"

double rh_clock_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void rh_clock_rfc3339(char *buf, size_t size, const struct timespec *ts)
{
	struct tm tm;
	time_t sec = ts->tv_sec;

	if (!size)
		return;
	if (!gmtime_r(&sec, &tm)) {
		snprintf(buf, size, "1970-01-01T00:00:00.000Z");
		return;
	}
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 (long)(ts->tv_nsec / 1000000));
}

struct timespec rh_clock_wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}
