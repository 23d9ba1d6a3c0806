/*
 * hist.c - the log-linear histogram (see hist.h).
 *
 * A load probe records every response's latency, thousands a second, and
 * must report p99.9 without keeping the samples or sorting them: a fixed
 * array of counters indexed by (exponent, top mantissa bits) does that in
 * constant time and memory. The index of v is s * 128 + (v >> s) with s the
 * number of low bits dropped (0 below 256), which makes the layout
 * continuous: indices 0..255 are the values themselves, and each later run
 * of 128 indices covers one power of two.
 */
#include "hist.h"

#include "error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

int rh_hist_new(struct rh_hist **out)
{
	struct rh_hist *h = malloc(sizeof(*h));

	*out = NULL;
	if (!h)
		return rh_error_set(RH_ENOMEM, "out of memory for a latency histogram");
	rh_hist_reset(h);
	*out = h;
	return 0;
}

void rh_hist_free(struct rh_hist *h)
{
	free(h);
}

void rh_hist_reset(struct rh_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

unsigned rh_hist_index(uint64_t v)
{
	unsigned msb, s;

	if (v < 2 * RH_HIST_SUB)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	s = msb - RH_HIST_SUB_BITS;
	return s * RH_HIST_SUB + (unsigned)(v >> s);
}

void rh_hist_bucket_range(unsigned index, uint64_t *lo, uint64_t *hi)
{
	unsigned s;
	uint64_t m;

	if (index < 2 * RH_HIST_SUB) {
		*lo = *hi = index;
		return;
	}
	s = index / RH_HIST_SUB - 1;
	m = index - (uint64_t)s * RH_HIST_SUB;
	*lo = m << s;
	*hi = *lo + ((UINT64_C(1) << s) - 1);
}

void rh_hist_record_n(struct rh_hist *h, uint64_t v, uint64_t n)
{
	if (!n)
		return;
	h->counts[rh_hist_index(v)] += n;
	h->total += n;
	h->sum += (double)v * (double)n;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void rh_hist_merge(struct rh_hist *dst, const struct rh_hist *src)
{
	if (!src->total)
		return;
	for (unsigned i = 0; i < RH_HIST_BUCKETS; i++)
		dst->counts[i] += src->counts[i];
	dst->total += src->total;
	dst->sum += src->sum;
	if (src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t rh_hist_percentile(const struct rh_hist *h, double p)
{
	uint64_t rank, seen = 0, lo, hi, v;
	double r;

	if (!h->total)
		return 0;
	if (!(p > 0))
		return h->min;
	if (p >= 100)
		return h->max;
	/* 0.99 * 1000 is 990.0000000000001 in binary: do not let that be 991 */
	r = p / 100.0 * (double)h->total;
	rank = (uint64_t)ceil(r - r * 1e-12);
	if (rank < 1)
		rank = 1;
	if (rank > h->total)
		rank = h->total;
	for (unsigned i = 0; i < RH_HIST_BUCKETS; i++) {
		seen += h->counts[i];
		if (seen < rank)
			continue;
		rh_hist_bucket_range(i, &lo, &hi);
		v = lo + (hi - lo) / 2;
		if (v < h->min)
			v = h->min;
		if (v > h->max)
			v = h->max;
		return v;
	}
	return h->max;
}

double rh_hist_mean(const struct rh_hist *h)
{
	return h->total ? h->sum / (double)h->total : 0;
}
