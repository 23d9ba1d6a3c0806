/*
 * sink.c - what every sink shares: closing, and the path rule.
 *
 * Manifest paths come from a registry that may not be ours to trust, and
 * they name files under a sink's root on some target. One function decides
 * which paths are acceptable so that file, SFTP and S3 sinks refuse exactly
 * the same ones.
 */
#include "sink.h"

#include <string.h>

#include "banned.h"

#define RH_SINK_PATH_MAX 4096
#define RH_SINK_NAME_MAX 255

void rh_sink_close(struct rh_sink *s)
{
	if (s && s->ops && s->ops->close)
		s->ops->close(s);
}

bool rh_sink_path_is_safe(const char *path)
{
	size_t seg = 0;
	const char *start = path;

	if (!path || !*path || strlen(path) > RH_SINK_PATH_MAX || path[0] == '/')
		return false;
	for (const char *c = path;; c++) {
		unsigned char ch = (unsigned char)*c;

		if (ch == '/' || ch == '\0') {
			if (seg == 0 || seg > RH_SINK_NAME_MAX)
				return false; /* empty segment: "a//b", trailing '/' */
			if ((seg == 1 && start[0] == '.') ||
			    (seg == 2 && start[0] == '.' && start[1] == '.'))
				return false;
			if (ch == '\0')
				break;
			seg = 0;
			start = c + 1;
			continue;
		}
		if (ch < 0x20 || ch == 0x7f || ch == '\\')
			return false;
		seg++;
	}
	return true;
}
