/*
 * test_hist.c - the log-linear histogram: percentiles of known
 * distributions against the exact nearest-rank answer (sorted samples),
 * within the stated 1/256 relative error; merge equal to recording both;
 * the extremes of the uint64 range; the bucket layout being continuous.
 */
#include "testlib.h"

#include "hist.h"

#include <math.h>
#include <stdint.h>

#define BOUND (1.0 / 256.0)

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t exact_rank(const uint64_t *sorted, size_t n, double p)
{
	double r = p / 100.0 * (double)n;
	size_t rank = (size_t)ceil(r - r * 1e-12);

	if (rank < 1)
		rank = 1;
	return sorted[rank - 1];
}

/* xorshift64*: a fixed sequence, so a failure reproduces */
static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static double uniform01(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

static void check_distribution(uint64_t *v, size_t n)
{
	static const double ps[] = {1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100};
	struct rh_hist *h = NULL;

	CU_ASSERT_EQUAL_FATAL(rh_hist_new(&h), 0);
	for (size_t i = 0; i < n; i++)
		rh_hist_record(h, v[i]);
	qsort(v, n, sizeof(*v), cmp_u64);
	CU_ASSERT_EQUAL(h->total, n);
	CU_ASSERT_EQUAL(h->min, v[0]);
	CU_ASSERT_EQUAL(h->max, v[n - 1]);
	for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
		uint64_t want = exact_rank(v, n, ps[k]);
		uint64_t got = rh_hist_percentile(h, ps[k]);
		double err = want ? fabs((double)got - (double)want) / (double)want : (double)got;

		if (err > BOUND)
			fprintf(stderr, "p%g: got %llu, exact %llu (error %.4f%%)\n", ps[k],
				(unsigned long long)got, (unsigned long long)want, err * 100);
		CU_ASSERT(err <= BOUND);
	}
	rh_hist_free(h);
}

static void test_hist__uniform(void)
{
	enum { N = 200000 };
	uint64_t *v = malloc(N * sizeof(*v)), s = 42;

	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	/* 100 us .. 50 ms in nanoseconds */
	for (size_t i = 0; i < N; i++)
		v[i] = 100000 + (uint64_t)(uniform01(&s) * 49900000.0);
	check_distribution(v, N);
	free(v);
}

static void test_hist__exponential_and_lognormal(void)
{
	enum { N = 100000 };
	uint64_t *v = malloc(N * sizeof(*v)), s = 7;

	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	for (size_t i = 0; i < N; i++)
		v[i] = (uint64_t)(-log(1.0 - uniform01(&s)) * 250000.0); /* mean 250 us */
	check_distribution(v, N);
	/* log-normal: a long tail over six decades */
	for (size_t i = 0; i < N; i++) {
		double u1 = uniform01(&s), u2 = uniform01(&s);
		double z = sqrt(-2 * log(1 - u1)) * cos(2 * M_PI * u2);

		v[i] = (uint64_t)exp(13.0 + 2.0 * z);
	}
	check_distribution(v, N);
	free(v);
}

static void test_hist__bimodal_stall(void)
{
	/* 99 % fast answers, 1 % one stall: the shape coordinated omission hides */
	enum { N = 10000 };
	uint64_t v[N];

	for (size_t i = 0; i < N; i++)
		v[i] = i % 100 == 0 ? 2000000000ULL - i * 1000 : 150000 + (i % 97) * 13;
	check_distribution(v, N);
}

static void test_hist__small_values_exact(void)
{
	struct rh_hist *h = NULL;

	CU_ASSERT_EQUAL_FATAL(rh_hist_new(&h), 0);
	for (uint64_t x = 0; x < 256; x++)
		rh_hist_record(h, x);
	CU_ASSERT_EQUAL(rh_hist_percentile(h, 50), 127);
	CU_ASSERT_EQUAL(rh_hist_percentile(h, 0), 0);
	CU_ASSERT_EQUAL(rh_hist_percentile(h, 100), 255);
	CU_ASSERT_EQUAL(rh_hist_percentile(h, 99), 253); /* rank ceil(253.44) = 254 -> 253 */
	CU_ASSERT_DOUBLE_EQUAL(rh_hist_mean(h), 127.5, 1e-9);
	rh_hist_free(h);
}

static void test_hist__extreme_values(void)
{
	struct rh_hist *h = NULL;

	CU_ASSERT_EQUAL_FATAL(rh_hist_new(&h), 0);
	CU_ASSERT_EQUAL(rh_hist_percentile(h, 99), 0); /* empty */
	CU_ASSERT_EQUAL(rh_hist_mean(h), 0);
	rh_hist_record(h, 0);
	rh_hist_record(h, UINT64_MAX);
	rh_hist_record(h, UINT64_MAX - 1);
	CU_ASSERT_EQUAL(h->total, 3);
	CU_ASSERT_EQUAL(rh_hist_percentile(h, 10), 0);
	CU_ASSERT_EQUAL(rh_hist_percentile(h, 100), UINT64_MAX);
	/* the middle value: within the bound of UINT64_MAX - 1 */
	CU_ASSERT(fabs((double)rh_hist_percentile(h, 50) - (double)(UINT64_MAX - 1)) <=
		  (double)UINT64_MAX * BOUND);
	CU_ASSERT(rh_hist_index(UINT64_MAX) < RH_HIST_BUCKETS);
	/* out-of-range percentiles clamp */
	CU_ASSERT_EQUAL(rh_hist_percentile(h, -5), 0);
	CU_ASSERT_EQUAL(rh_hist_percentile(h, 250), UINT64_MAX);
	rh_hist_free(h);
}

static void test_hist__layout_continuous(void)
{
	uint64_t prev_hi = 0, lo, hi;

	/* every index covers the values right after the previous one, and the
	 * width stays within the bound */
	for (unsigned i = 0; i < RH_HIST_BUCKETS; i++) {
		rh_hist_bucket_range(i, &lo, &hi);
		if (i > 0)
			CU_ASSERT_EQUAL(lo, prev_hi + 1);
		CU_ASSERT(hi >= lo);
		if (lo >= 256)
			CU_ASSERT((double)(hi - lo + 1) / (double)lo <= 1.0 / 128.0);
		CU_ASSERT_EQUAL(rh_hist_index(lo), i);
		CU_ASSERT_EQUAL(rh_hist_index(hi), i);
		prev_hi = hi;
	}
	CU_ASSERT_EQUAL(prev_hi, UINT64_MAX);
}

static void test_hist__merge(void)
{
	struct rh_hist *a = NULL, *b = NULL, *both = NULL, *empty = NULL;
	uint64_t s = 99;

	CU_ASSERT_EQUAL_FATAL(rh_hist_new(&a), 0);
	CU_ASSERT_EQUAL_FATAL(rh_hist_new(&b), 0);
	CU_ASSERT_EQUAL_FATAL(rh_hist_new(&both), 0);
	CU_ASSERT_EQUAL_FATAL(rh_hist_new(&empty), 0);
	for (int i = 0; i < 5000; i++) {
		uint64_t x = rng_next(&s) % 1000000, y = 5000000 + rng_next(&s) % 1000000;

		rh_hist_record(a, x);
		rh_hist_record(b, y);
		rh_hist_record(both, x);
		rh_hist_record(both, y);
	}
	rh_hist_merge(a, empty); /* no change, min stays */
	rh_hist_merge(a, b);
	CU_ASSERT_EQUAL(a->total, both->total);
	CU_ASSERT_EQUAL(a->min, both->min);
	CU_ASSERT_EQUAL(a->max, both->max);
	CU_ASSERT_EQUAL(memcmp(a->counts, both->counts, sizeof(a->counts)), 0);
	CU_ASSERT_EQUAL(rh_hist_percentile(a, 99), rh_hist_percentile(both, 99));
	/* half the values are >= 5 ms: p75 comes from b's range */
	CU_ASSERT(rh_hist_percentile(a, 75) >= 5000000);
	rh_hist_merge(empty, a);
	CU_ASSERT_EQUAL(empty->min, a->min);
	rh_hist_record_n(empty, 3, 0); /* n = 0 records nothing */
	CU_ASSERT_EQUAL(empty->total, a->total);
	rh_hist_free(a);
	rh_hist_free(b);
	rh_hist_free(both);
	rh_hist_free(empty);
	rh_hist_free(NULL);
}

RH_TEST_MAIN("hist", {"uniform", test_hist__uniform},
	     {"exponential_and_lognormal", test_hist__exponential_and_lognormal},
	     {"bimodal_stall", test_hist__bimodal_stall},
	     {"small_values_exact", test_hist__small_values_exact},
	     {"extreme_values", test_hist__extreme_values},
	     {"layout_continuous", test_hist__layout_continuous}, {"merge", test_hist__merge})
