/*
 * tlm_train.c - tinylm-train, the build-time tool that turns plain text into
 * the tinylm model file (format in tlm_model.h).
 *
 * The build runs it on the corpus in the repository, so the model the demo
 * registry carries is trained from source, never checked in as a blob. It
 * counts every (context, next byte) pair for context lengths 0..order-1 by
 * sorting packed pairs, then lays the counts out as hash tables. Everything
 * is inserted in sorted order and all padding is zero, so the same corpus
 * always yields a byte-identical file: the registry commit is reproducible.
 */
#include "tlm_model.h"

#include "error.h"
#include "sha256.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "banned.h"

/* Counts share 32 bits with the byte, so no count may pass 2^24-1. */
#define TLM_CORPUS_MAX ((size_t)TLM_MAX_COUNT)

struct tlm_counts {
	uint64_t *pairs; /* sorted (key << 8 | byte), one per position */
	size_t n_pairs;
	uint32_t n_ctx;
	uint32_t n_follow;
	uint32_t slots;
};

static int corpus_append(uint8_t **buf, size_t *len, const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t chunk[65536];
	size_t got;
	int err = 0;

	if (!f)
		return rh_error_set_errno(RH_EIO, errno, "cannot open %s", path);
	/* Files are separated by a blank line so that one's last sentence does
	 * not run into the next one's first. */
	if (*len > 0 && (*buf)[*len - 1] != '\n') {
		(*buf)[(*len)++] = '\n';
		(*buf)[(*len)++] = '\n';
	}
	while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		uint8_t *nb = realloc(*buf, *len + got + 2);

		if (!nb) {
			err = rh_error_set(RH_ENOMEM, "out of memory reading %s", path);
			goto done;
		}
		*buf = nb;
		/* Keep printable ASCII and newlines only: the model speaks what
		 * JSON can carry without escaping tricks or broken UTF-8. */
		for (size_t i = 0; i < got; i++) {
			uint8_t c = chunk[i];

			if (c == '\t')
				c = ' ';
			if (c == '\n' || (c >= 0x20 && c < 0x7f))
				(*buf)[(*len)++] = c;
		}
		if (*len > TLM_CORPUS_MAX) {
			err = rh_error_set(RH_EINVAL, "corpus is over %zu bytes at %s",
					   TLM_CORPUS_MAX, path);
			goto done;
		}
	}
	if (ferror(f))
		err = rh_error_set_errno(RH_EIO, errno, "cannot read %s", path);
done:
	fclose(f);
	return err;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int count_order(struct tlm_counts *c, const uint8_t *text, size_t len, uint32_t k)
{
	uint64_t prev_pair = UINT64_MAX, prev_key = UINT64_MAX;
	int err = 0;

	c->n_pairs = len > k ? len - k : 0;
	c->pairs = calloc(c->n_pairs ? c->n_pairs : 1, sizeof(uint64_t));
	if (!c->pairs) {
		err = rh_error_set(RH_ENOMEM, "out of memory counting contexts");
		goto done;
	}
	for (size_t pos = k; pos < len; pos++) {
		uint64_t key = 0;

		for (uint32_t j = 1; j <= k; j++)
			key |= (uint64_t)text[pos - j] << (8 * (j - 1));
		c->pairs[pos - k] = key << 8 | text[pos];
	}
	qsort(c->pairs, c->n_pairs, sizeof(uint64_t), cmp_u64);
	for (size_t i = 0; i < c->n_pairs; i++) {
		if (c->pairs[i] != prev_pair)
			c->n_follow++;
		if (c->pairs[i] >> 8 != prev_key)
			c->n_ctx++;
		prev_pair = c->pairs[i];
		prev_key = prev_pair >> 8;
	}
	/* Load factor at most 3/4 keeps linear probing short. */
	c->slots = 1;
	while ((uint64_t)c->slots * 3 < (uint64_t)c->n_ctx * 4 || c->slots <= c->n_ctx)
		c->slots <<= 1;
done:
	return err;
}

/* Writes contexts of `c` into `table` and their followers from follow[*nf]. */
static void fill_order(const struct tlm_counts *c, struct tlm_ctx *table, uint32_t *follow,
		       uint32_t *nf)
{
	uint32_t mask = c->slots - 1;
	size_t i = 0;

	while (i < c->n_pairs) {
		uint32_t key = (uint32_t)(c->pairs[i] >> 8);
		struct tlm_ctx ctx = {.key = key, .first = *nf};
		uint32_t slot = tlm_ctx_hash(key) & mask;

		while (i < c->n_pairs && (uint32_t)(c->pairs[i] >> 8) == key) {
			uint64_t pair = c->pairs[i];
			uint32_t count = 0;

			while (i < c->n_pairs && c->pairs[i] == pair) {
				count++;
				i++;
			}
			follow[(*nf)++] = count << 8 | (uint32_t)(pair & 0xff);
			ctx.n++;
			ctx.total += count;
		}
		while (table[slot].n != 0)
			slot = (slot + 1) & mask;
		table[slot] = ctx;
	}
}

static uint64_t align8(uint64_t x)
{
	return (x + 7) & ~(uint64_t)7;
}

static int build(uint8_t **out, size_t *out_len, const uint8_t *text, size_t len, uint32_t order)
{
	struct tlm_counts counts[TLM_MAX_ORDER];
	struct tlm_header *h;
	struct tlm_model check;
	uint64_t off = sizeof(struct tlm_header), n_follow = 0;
	uint8_t *file = NULL;
	uint32_t nf = 0;
	int seen[256] = {0};
	int err = 0;

	memset(counts, 0, sizeof(counts));
	for (uint32_t k = 0; k < order; k++) {
		err = count_order(&counts[k], text, len, k);
		if (err < 0)
			goto done;
		n_follow += counts[k].n_follow;
	}
	for (uint32_t k = 0; k < order; k++)
		off = align8(off + (uint64_t)counts[k].slots * sizeof(struct tlm_ctx));
	off = align8(off + n_follow * sizeof(uint32_t));
	file = calloc(1, off);
	if (!file) {
		err = rh_error_set(RH_ENOMEM, "out of memory for a %llu-byte model",
				   (unsigned long long)off);
		goto done;
	}
	h = (struct tlm_header *)file;
	memcpy(h->magic, TLM_MAGIC, 4);
	h->version = TLM_VERSION;
	h->order = order;
	h->header_size = sizeof(*h);
	h->file_size = off;
	h->corpus_bytes = len;
	h->n_follow = (uint32_t)n_follow;
	for (size_t i = 0; i < len; i++)
		seen[text[i]] = 1;
	for (int b = 0; b < 256; b++)
		h->vocab += (uint32_t)seen[b];
	{
		struct rh_sha256 sc;

		rh_sha256_init(&sc);
		rh_sha256_update(&sc, text, len);
		rh_sha256_final(&sc, h->corpus_sha256);
	}
	off = sizeof(*h);
	for (uint32_t k = 0; k < order; k++) {
		h->orders[k].n_ctx = counts[k].n_ctx;
		h->orders[k].slots = counts[k].slots;
		h->orders[k].table_off = off;
		off = align8(off + (uint64_t)counts[k].slots * sizeof(struct tlm_ctx));
	}
	h->follow_off = off;
	for (uint32_t k = 0; k < order; k++)
		fill_order(&counts[k], (struct tlm_ctx *)(file + h->orders[k].table_off),
			   (uint32_t *)(file + h->follow_off), &nf);
	/* The server will refuse what it cannot read; find out now. */
	err = tlm_model_open(&check, file, h->file_size);
	if (err < 0) {
		rh_error_prefix(err, "the trained model does not check out");
		goto done;
	}
	*out = file;
	*out_len = h->file_size;
	file = NULL;
done:
	for (uint32_t k = 0; k < order; k++)
		free(counts[k].pairs);
	free(file);
	return err;
}

static int write_file(const char *path, const uint8_t *data, size_t len)
{
	char tmp[4096];
	FILE *f = NULL;
	int err = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		err = rh_error_set(RH_EINVAL, "output path too long: %s", path);
		goto done;
	}
	f = fopen(tmp, "wb");
	if (!f) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot create %s", tmp);
		goto done;
	}
	if (fwrite(data, 1, len, f) != len) {
		err = rh_error_set_errno(RH_EIO, errno, "cannot write %s", tmp);
		goto done;
	}
	if (fclose(f) != 0) {
		f = NULL;
		err = rh_error_set_errno(RH_EIO, errno, "cannot write %s", tmp);
		goto done;
	}
	f = NULL;
	if (rename(tmp, path) != 0)
		err = rh_error_set_errno(RH_EIO, errno, "cannot rename %s to %s", tmp, path);
done:
	if (f)
		fclose(f);
	if (err < 0)
		remove(tmp);
	return err;
}

static void usage(FILE *to)
{
	fprintf(to,
		"usage: tinylm-train [--order N] --out FILE CORPUS...\n"
		"Trains the tinylm byte-level n-gram model (order 1..%u, default 5) on the\n"
		"CORPUS text files and writes the model file to FILE.\n",
		TLM_MAX_ORDER);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"order", required_argument, NULL, 'n'},
	    {"out", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *out_path = NULL;
	uint8_t *text = NULL, *model = NULL;
	size_t len = 0, model_len = 0;
	unsigned long order = 5;
	int c, err = 0, status = 1;
	char *end;

	while ((c = getopt_long(argc, argv, "n:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			errno = 0;
			order = strtoul(optarg, &end, 10);
			if (errno || *end || order < 1 || order > TLM_MAX_ORDER) {
				fprintf(stderr, "tinylm-train: --order must be 1..%u\n",
					TLM_MAX_ORDER);
				goto done;
			}
			break;
		case 'o':
			out_path = optarg;
			break;
		case 'h':
			usage(stdout);
			status = 0;
			goto done;
		default:
			usage(stderr);
			goto done;
		}
	}
	if (!out_path || optind >= argc) {
		usage(stderr);
		goto done;
	}
	text = malloc(2);
	if (!text) {
		err = rh_error_set(RH_ENOMEM, "out of memory");
		goto fail;
	}
	for (int i = optind; i < argc; i++) {
		err = corpus_append(&text, &len, argv[i]);
		if (err < 0)
			goto fail;
	}
	if (len == 0) {
		err = rh_error_set(RH_EINVAL, "the corpus has no printable text");
		goto fail;
	}
	err = build(&model, &model_len, text, len, (uint32_t)order);
	if (err < 0)
		goto fail;
	err = write_file(out_path, model, model_len);
	if (err < 0)
		goto fail;
	printf("tinylm-train: %zu corpus bytes, order %lu, %zu-byte model -> %s\n", len, order,
	       model_len, out_path);
	status = 0;
fail:
	if (err < 0)
		fprintf(stderr, "tinylm-train: %s\n", rh_error_last());
done:
	free(text);
	free(model);
	return status;
}
