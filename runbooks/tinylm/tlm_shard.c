/*
 * tlm_shard.c - tinylm-shard, the build-time tool that writes the demo
 * registry's synthetic weights shard.
 *
 * A real model's weights are gigabytes of incompressible numbers; the demo
 * needs bytes with that shape (so that copying, hashing and LFS storage cost
 * what they would) without shipping a real model. The bytes are splitmix64
 * output from a fixed seed, counter-based: byte i depends only on i, so the
 * file is the same on every machine and the first MiBs of a big shard equal
 * a small one. The file names say "synthetic" so nobody mistakes it.
 *
 * A model in several shards is cut from that one stream: OFFSET_MIB starts
 * a shard where the previous one ended, so no two shards hold the same
 * bytes (LFS would store them once) and their concatenation is the stream.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "banned.h"

#define TLM_SHARD_SEED 0x7265687964726121ULL /* "rehydra!" */
#define TLM_SHARD_ID "splitmix64-v1-seed-7265687964726121"
#define TLM_SHARD_BLOCK (4u << 20)
#define TLM_SHARD_MAX_MIB (1u << 20) /* 1 TiB */

static void fill(uint64_t *w, size_t n, uint64_t index)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t z = TLM_SHARD_SEED + (index + i + 1) * 0x9e3779b97f4a7c15ULL;

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		/* Stored little-endian on the hosts we build for; the format
		 * does not matter beyond being the same everywhere. */
		w[i] = z ^ (z >> 31);
	}
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void usage(FILE *to)
{
	fprintf(to, "usage: tinylm-shard MIB FILE [OFFSET_MIB]\n"
		    "       tinylm-shard --id\n"
		    "Writes MIB MiB of deterministic pseudo-random bytes (a synthetic weights\n"
		    "shard) to FILE, starting OFFSET_MIB (default 0) MiB into the stream.\n"
		    "--id prints the generator's identity, which changes whenever the bytes\n"
		    "would.\n");
}

int main(int argc, char **argv)
{
	uint64_t *block = NULL;
	unsigned long long mib, skip = 0;
	struct stat st;
	int fd = -1, status = 1;
	char *end;

	if (argc == 2 && strcmp(argv[1], "--id") == 0) {
		printf("%s\n", TLM_SHARD_ID);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	if (argc != 3 && argc != 4) {
		usage(stderr);
		return 1;
	}
	errno = 0;
	mib = strtoull(argv[1], &end, 10);
	if (errno || end == argv[1] || *end || mib > TLM_SHARD_MAX_MIB) {
		fprintf(stderr, "tinylm-shard: size must be 0..%u MiB, not %s\n", TLM_SHARD_MAX_MIB,
			argv[1]);
		goto done;
	}
	if (argc == 4) {
		errno = 0;
		skip = strtoull(argv[3], &end, 10);
		if (errno || end == argv[3] || *end || skip > TLM_SHARD_MAX_MIB) {
			fprintf(stderr, "tinylm-shard: offset must be 0..%u MiB, not %s\n",
				TLM_SHARD_MAX_MIB, argv[3]);
			goto done;
		}
	}
	block = malloc(TLM_SHARD_BLOCK);
	if (!block) {
		fprintf(stderr, "tinylm-shard: out of memory\n");
		goto done;
	}
	fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "tinylm-shard: cannot create %s: %s\n", argv[2], strerror(errno));
		goto done;
	}
	/* Reserving the extent first makes the writes about three times faster
	 * on ext4; where it is not supported, the writes allocate as usual. */
	if (mib > 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    fallocate(fd, 0, 0, (off_t)(mib << 20)) != 0 && errno != EOPNOTSUPP &&
	    errno != ENOSYS) {
		fprintf(stderr, "tinylm-shard: cannot allocate %llu MiB for %s: %s\n", mib, argv[2],
			strerror(errno));
		goto done;
	}
	for (uint64_t off = 0, total = mib << 20; off < total; off += TLM_SHARD_BLOCK) {
		size_t n = total - off < TLM_SHARD_BLOCK ? (size_t)(total - off) : TLM_SHARD_BLOCK;

		fill(block, n / 8, ((skip << 20) + off) / 8);
		if (write_all(fd, (const uint8_t *)block, n) < 0) {
			fprintf(stderr, "tinylm-shard: cannot write %s: %s\n", argv[2],
				strerror(errno));
			goto done;
		}
	}
	if (close(fd) != 0) {
		fd = -1;
		fprintf(stderr, "tinylm-shard: cannot write %s: %s\n", argv[2], strerror(errno));
		goto done;
	}
	fd = -1;
	status = 0;
done:
	if (fd >= 0)
		close(fd);
	free(block);
	return status;
}
