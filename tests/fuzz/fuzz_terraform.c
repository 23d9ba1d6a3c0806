/*
 * fuzz_terraform.c - libFuzzer target for the Terraform `-json` UI stream
 * parser.
 *
 * `terraform apply -json` prints one JSON message a line, mixed with
 * whatever providers and plugins print; the drill record and the error
 * message a user sees are built from it. This splits the fuzzer's bytes
 * into lines as the driver does, feeds each to rh_tf_stream_feed, and
 * renders the error summary into a small buffer (truncation included).
 */
#include "fuzz.h"

#include "error.h"
#include "terraform.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rh_tf_stream st;
	char *buf = fuzz_copy(data, size);
	char small[48], big[4096];
	size_t at = 0;

	if (rh_tf_stream_init(&st) != 0)
		abort();
	while (at < size) {
		const char *nl = memchr(buf + at, '\n', size - at);
		size_t end = nl ? (size_t)(nl - buf) + 1 : size;
		int rc = rh_tf_stream_feed(&st, buf + at, end - at);

		if (rc != 0 && rc != RH_EUNSUPPORTED)
			abort();
		if (rc != 0)
			break;
		at = end;
	}
	if (strlen(st.last_event) >= sizeof(st.last_event))
		abort();
	(void)rh_tf_stream_errors(&st, small, sizeof(small));
	if (strlen(small) >= sizeof(small))
		abort();
	(void)rh_tf_stream_errors(&st, big, sizeof(big));
	rh_tf_stream_release(&st);
	free(buf);
	return 0;
}
