/*
 * fuzz.h - what every libFuzzer target in tests/fuzz shares.
 *
 * libFuzzer hands a target bytes that are not NUL-terminated; the parsers
 * under test take (pointer, length), so each target passes the bytes in a
 * buffer of exactly that size and AddressSanitizer reports any read past
 * the end. fuzz_strndup gives the targets that want a C string one.
 */
#ifndef RH_FUZZ_H
#define RH_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A NUL-terminated copy of data[0..size), cut at the first NUL; aborts when
 * out of memory (a fuzz run has no better answer). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* An exact-size heap copy of data, so reads past `size` are caught (the
 * fuzzer's own buffer may be followed by readable bytes). */
static inline char *fuzz_copy(const uint8_t *data, size_t size)
{
	char *s = malloc(size ? size : 1);

	if (!s)
		abort();
	if (size)
		memcpy(s, data, size);
	return s;
}

#endif
