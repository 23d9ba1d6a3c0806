/*
 * fuzz_s3_xml.c - libFuzzer target for the S3 XML answers.
 *
 * The S3 sink reads error documents, CreateMultipartUpload, ListParts and
 * CompleteMultipartUpload answers from whatever answers at the endpoint
 * (a proxy, a misconfigured gateway, a hostile server) with the small
 * scanner sink_s3.h exposes. This reads the fuzzer's bytes the way the sink
 * does: the error's Code and Message, UploadId, ETag, IsTruncated and
 * NextPartNumberMarker, and every <Part> with the fields inside it.
 */
#include "fuzz.h"

#include "sink_s3.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

static void get(const char *xml, size_t len, const char *tag)
{
	char *s = rh_s3_xml_get(xml, len, tag);

	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const tags[] = {"Code", "Message",	  "UploadId",
					   "ETag", "IsTruncated", "NextPartNumberMarker",
					   "Key",  "Bucket",	  NULL};
	char *buf = fuzz_copy(data, size);
	const char *v;
	size_t vl, pos = 0, last = 0;

	for (size_t i = 0; tags[i]; i++)
		get(buf, size, tags[i]);
	while (rh_s3_xml_find(buf, size, &pos, "Part", &v, &vl)) {
		/* the element lies inside the input and the scan moves forward */
		if (v < buf || v + vl > buf + size || pos <= last || pos > size)
			abort();
		last = pos;
		get(v, vl, "PartNumber");
		get(v, vl, "ETag");
		get(v, vl, "Size");
	}
	pos = 0;
	if (rh_s3_xml_find(buf, size, &pos, "Error", &v, &vl))
		get(v, vl, "Code");
	free(buf);
	return 0;
}
