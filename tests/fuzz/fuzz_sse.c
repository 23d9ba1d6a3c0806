/*
 * fuzz_sse.c - libFuzzer target for the server-sent events parser.
 *
 * A load probe reads an inference server's streamed answer with it; the
 * server may be broken or hostile and bytes arrive split anywhere. The
 * first byte of the input picks where the rest is cut into pieces (so the
 * fuzzer explores splits inside lines and between \r and \n), and every
 * event handed to the callback is checked against what sse.h promises.
 */
#include "fuzz.h"

#include "error.h"
#include "sse.h"

#define MAX_EVENT 4096

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

static int on_event(void *user, const char *event, const char *data, size_t len)
{
	unsigned *n = user;

	if (!event || !data || data[len] != '\0' || len > MAX_EVENT || strlen(event) >= 64)
		abort();
	(*n)++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rh_sse p;
	unsigned seen = 0;
	size_t step, at = 1;
	char *buf;
	int rc = 0;

	if (size == 0)
		return 0;
	step = (size_t)data[0] % 17 + 1;
	buf = fuzz_copy(data, size);
	rh_sse_init(&p, MAX_EVENT, on_event, &seen);
	while (at < size && rc == 0) {
		size_t n = size - at < step ? size - at : step;

		rc = rh_sse_feed(&p, buf + at, n);
		at += n;
	}
	if (rc != 0 && rc != RH_EINVAL)
		abort();
	rc = rh_sse_finish(&p);
	if (rc < 0 && rc != RH_EINVAL)
		abort();
	if (seen != p.events)
		abort();
	rh_sse_release(&p);
	free(buf);
	return 0;
}
