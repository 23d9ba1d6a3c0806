/*
 * hist.h - a log-linear histogram of non-negative integers with bounded
 * relative error (HdrHistogram's idea, written here).
 *
 * Values 0..255 are counted exactly. Above that, each power of two
 * [2^k, 2^(k+1)) is split into 128 equal buckets, so a bucket is at most
 * 1/128 of its lowest value wide. A reported value is the middle of its
 * bucket, clamped to the exact min and max seen: its relative error is at
 * most 1/256 (0.4 %), well inside the 1 % a latency report needs. The
 * whole uint64 range is covered by RH_HIST_BUCKETS counters (58 KiB), so
 * recording never allocates and never fails.
 *
 * Percentiles are nearest-rank over the recorded values: pP is the value of
 * rank ceil(P/100 * n) (p0 is the min, p100 the max), as in report.h.
 *
 * Usage: rh_hist_new, rh_hist_record (any number of times, one thread at a
 * time), rh_hist_percentile / rh_hist_merge, rh_hist_free. The histogram is
 * new from rh_hist_new and belongs to the caller.
 */
#ifndef RH_HIST_H
#define RH_HIST_H

#include <stdint.h>

#define RH_HIST_SUB_BITS 7
#define RH_HIST_SUB (1u << RH_HIST_SUB_BITS)			/* buckets per power of two */
#define RH_HIST_BUCKETS ((65 - RH_HIST_SUB_BITS) * RH_HIST_SUB) /* 7424 */

struct rh_hist {
	uint64_t total; /* values recorded */
	uint64_t min;	/* UINT64_MAX while empty */
	uint64_t max;
	double sum; /* for the mean */
	uint64_t counts[RH_HIST_BUCKETS];
};

/* *out is new and empty (free with rh_hist_free). Returns 0 or RH_ENOMEM. */
int rh_hist_new(struct rh_hist **out);

/* Accepts NULL. */
void rh_hist_free(struct rh_hist *h);

/* Empties the histogram. */
void rh_hist_reset(struct rh_hist *h);

/* Counts `v` `n` times. */
void rh_hist_record_n(struct rh_hist *h, uint64_t v, uint64_t n);

static inline void rh_hist_record(struct rh_hist *h, uint64_t v)
{
	rh_hist_record_n(h, v, 1);
}

/* Adds every value of `src` to `dst`. */
void rh_hist_merge(struct rh_hist *dst, const struct rh_hist *src);

/* The nearest-rank P-th percentile (0 <= p <= 100; outside is clamped);
 * 0 when the histogram is empty. */
uint64_t rh_hist_percentile(const struct rh_hist *h, double p);

/* The arithmetic mean; 0 when empty. */
double rh_hist_mean(const struct rh_hist *h);

/* The bucket a value falls in and the bucket's [lo, hi] range (for tests
 * and for callers that need the error bound of one value). */
unsigned rh_hist_index(uint64_t v);
void rh_hist_bucket_range(unsigned index, uint64_t *lo, uint64_t *hi);

#endif
