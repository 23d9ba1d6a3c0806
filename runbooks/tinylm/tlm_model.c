/*
 * tlm_model.c - reading and sampling the tinylm model file (tlm_model.h).
 *
 * The server maps the model file and calls tlm_model_open once; after that
 * every lookup is a few probes into tables inside the mapping. All checking
 * of the file's offsets and ranges happens in tlm_model_open, so a truncated
 * or tampered file is refused there rather than read out of bounds later.
 */
#include "tlm_model.h"

#include "error.h"

#include <math.h>
#include <string.h>

#include "banned.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the model format is little-endian");
_Static_assert(sizeof(struct tlm_header) == 160, "the header layout is part of the format");
_Static_assert(sizeof(struct tlm_ctx) == 16, "the table layout is part of the format");

static int range_ok(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

static int check_table(const struct tlm_model *m, uint32_t k, uint64_t n_follow)
{
	const struct tlm_order_hdr *oh = &m->hdr->orders[k];
	const struct tlm_ctx *t = m->tables[k];
	uint32_t used = 0;
	int err = 0;

	for (uint32_t i = 0; i < oh->slots; i++) {
		uint64_t sum = 0;

		if (t[i].n == 0)
			continue;
		used++;
		if (t[i].n > 256 || (uint64_t)t[i].first + t[i].n > n_follow) {
			err = rh_error_set(
			    RH_EINVAL, "context %u of length %u has followers out of range", i, k);
			goto done;
		}
		if (k < 4 && (t[i].key >> (8 * k)) != 0) {
			err = rh_error_set(RH_EINVAL, "context %u of length %u has a longer key", i,
					   k);
			goto done;
		}
		for (uint32_t j = 0; j < t[i].n; j++)
			sum += m->follow[t[i].first + j] >> 8;
		if (sum == 0 || sum != t[i].total) {
			err = rh_error_set(RH_EINVAL,
					   "context %u of length %u: counts do not add up", i, k);
			goto done;
		}
	}
	if (used != oh->n_ctx)
		err =
		    rh_error_set(RH_EINVAL, "table of length %u holds %u contexts, header says %u",
				 k, used, oh->n_ctx);
done:
	return err;
}

int tlm_model_open(struct tlm_model *m, const void *base, size_t size)
{
	const struct tlm_header *h = base;
	int err = 0;

	memset(m, 0, sizeof(*m));
	if (size < sizeof(*h) || ((uintptr_t)base & 7) != 0) {
		err = rh_error_set(RH_EINVAL, "too short for a tinylm model (%zu bytes)", size);
		goto done;
	}
	if (memcmp(h->magic, TLM_MAGIC, 4) != 0) {
		err = rh_error_set(RH_EINVAL, "not a tinylm model (no TLM1 magic)");
		goto done;
	}
	if (h->version != TLM_VERSION || h->header_size != sizeof(*h)) {
		err = rh_error_set(RH_EINVAL, "model format version %u is not supported (want %u)",
				   h->version, TLM_VERSION);
		goto done;
	}
	if (h->order < 1 || h->order > TLM_MAX_ORDER || h->file_size != size || h->vocab > 256 ||
	    h->vocab == 0) {
		err = rh_error_set(RH_EINVAL, "bad header (order %u, %llu bytes, vocabulary %u)",
				   h->order, (unsigned long long)h->file_size, h->vocab);
		goto done;
	}
	if ((h->follow_off & 7) != 0 || !range_ok(h->follow_off, (uint64_t)h->n_follow * 4, size)) {
		err = rh_error_set(RH_EINVAL, "follower array lies outside the file");
		goto done;
	}
	m->hdr = h;
	m->order = h->order;
	m->follow = (const uint32_t *)((const uint8_t *)base + h->follow_off);
	for (uint32_t k = 0; k < h->order; k++) {
		const struct tlm_order_hdr *oh = &h->orders[k];

		if (oh->slots == 0 || (oh->slots & (oh->slots - 1)) != 0 ||
		    oh->n_ctx >= oh->slots || (oh->table_off & 7) != 0 ||
		    !range_ok(oh->table_off, (uint64_t)oh->slots * sizeof(struct tlm_ctx), size)) {
			err =
			    rh_error_set(RH_EINVAL, "table of length %u lies outside the file", k);
			goto done;
		}
		m->tables[k] = (const struct tlm_ctx *)((const uint8_t *)base + oh->table_off);
		err = check_table(m, k, h->n_follow);
		if (err < 0)
			goto done;
	}
	if (h->orders[0].n_ctx != 1) {
		err = rh_error_set(RH_EINVAL, "the model has no unigram table");
		goto done;
	}
done:
	if (err < 0)
		memset(m, 0, sizeof(*m));
	return err;
}

static const struct tlm_ctx *lookup(const struct tlm_model *m, uint32_t k, uint32_t key)
{
	const struct tlm_ctx *t = m->tables[k];
	uint32_t mask = m->hdr->orders[k].slots - 1;
	uint32_t i = tlm_ctx_hash(key) & mask;

	/* Terminates: tlm_model_open checked that every table has an empty slot. */
	while (t[i].n != 0) {
		if (t[i].key == key)
			return &t[i];
		i = (i + 1) & mask;
	}
	return NULL;
}

void tlm_model_dist(const struct tlm_model *m, const uint8_t *hist, size_t hist_len, double p[256])
{
	const struct tlm_ctx *c = lookup(m, 0, 0);
	uint32_t key = 0;

	memset(p, 0, 256 * sizeof(p[0]));
	for (uint32_t j = 0; c && j < c->n; j++) {
		uint32_t f = m->follow[c->first + j];

		p[f & 0xff] = (double)(f >> 8) / c->total;
	}
	for (uint32_t k = 1; k < m->order && k <= hist_len; k++) {
		double den, keep;

		key |= (uint32_t)hist[hist_len - k] << (8 * (k - 1));
		c = lookup(m, k, key);
		/* A context never seen has no longer context that was seen either. */
		if (!c)
			break;
		den = (double)c->total + c->n;
		keep = c->n / den;
		for (int b = 0; b < 256; b++)
			p[b] *= keep;
		for (uint32_t j = 0; j < c->n; j++) {
			uint32_t f = m->follow[c->first + j];

			p[f & 0xff] += (f >> 8) / den;
		}
	}
}

static int emittable(int b)
{
	return b == '\n' || (b >= 0x20 && b < 0x7f);
}

static uint8_t pick(const double p[256], double temperature, struct tlm_rng *rng)
{
	double q[256], pmax = 0, sum = 0, u;
	int best = -1;

	for (int b = 0; b < 256; b++) {
		if (emittable(b) && p[b] > pmax) {
			pmax = p[b];
			best = b;
		}
	}
	if (best < 0)
		return ' ';
	if (temperature <= 0)
		return (uint8_t)best;
	/* Scaled by the most likely byte so that a low temperature cannot
	 * underflow every weight to zero. */
	for (int b = 0; b < 256; b++) {
		q[b] = emittable(b) && p[b] > 0 ? exp(log(p[b] / pmax) / temperature) : 0;
		sum += q[b];
	}
	u = (double)(tlm_rng_next(rng) >> 11) * 0x1.0p-53 * sum;
	for (int b = 0; b < 256; b++) {
		if (q[b] <= 0)
			continue;
		best = b;
		if (u < q[b])
			break;
		u -= q[b];
	}
	return (uint8_t)best;
}

void tlm_model_generate(const struct tlm_model *m, uint8_t *buf, size_t len, size_t n,
			double temperature, struct tlm_rng *rng)
{
	double p[256];

	for (size_t j = 0; j < n; j++) {
		tlm_model_dist(m, buf, len + j, p);
		buf[len + j] = pick(p, temperature, rng);
	}
}
