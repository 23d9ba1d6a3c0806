/*
 * sse.c - the incremental server-sent events parser (see sse.h).
 *
 * A streaming completion is measured by when its first event arrives, so
 * the parser must hand over each event the moment its blank line is in,
 * whatever way the network cut the bytes; and since the stream comes from
 * the server under test, a misbehaving one (no blank line ever, a huge
 * line) must end in a clear error, not in unbounded memory.
 */
#include "sse.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

#include "banned.h"

void rh_sse_init(struct rh_sse *p, size_t max_event, rh_sse_event_fn on_event, void *user)
{
	memset(p, 0, sizeof(*p));
	p->max_event = max_event;
	p->on_event = on_event;
	p->user = user;
}

void rh_sse_release(struct rh_sse *p)
{
	free(p->line);
	free(p->data);
	p->line = p->data = NULL;
	p->line_len = p->line_cap = p->data_len = p->data_cap = 0;
}

static int grow(char **buf, size_t *cap, size_t need)
{
	size_t ncap = *cap ? *cap : 256;
	char *nb;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	nb = realloc(*buf, ncap);
	if (!nb)
		return rh_error_set(RH_ENOMEM, "out of memory reading an event stream");
	*buf = nb;
	*cap = ncap;
	return 0;
}

static int too_big(struct rh_sse *p)
{
	return rh_error_set(RH_EINVAL,
			    "an event in the stream is over %zu bytes (no blank line ends it)",
			    p->max_event);
}

static void reset_event(struct rh_sse *p)
{
	p->data_len = 0;
	p->has_data = false;
	p->event[0] = '\0';
}

static int dispatch(struct rh_sse *p)
{
	int rc = 0;

	if (p->has_data) {
		/* the standard drops the one \n after the last data line */
		if (grow(&p->data, &p->data_cap, p->data_len + 1) < 0)
			return RH_ENOMEM;
		p->data[p->data_len] = '\0';
		if (strcmp(p->data, "[DONE]") == 0)
			p->done = true;
		p->events++;
		rc = p->on_event ? p->on_event(p->user, p->event[0] ? p->event : "message", p->data,
					       p->data_len)
				 : 0;
	}
	reset_event(p);
	return rc < 0 ? rc : 0;
}

/* One complete line (without its end) in p->line[0..line_len). */
static int process_line(struct rh_sse *p)
{
	const char *line = p->line, *colon, *value;
	size_t n = p->line_len, name_len, vlen;

	if (n == 0)
		return dispatch(p);
	if (line[0] == ':')
		return 0;
	colon = memchr(line, ':', n);
	name_len = colon ? (size_t)(colon - line) : n;
	value = colon ? colon + 1 : line + n;
	vlen = (size_t)(line + n - value);
	if (vlen && value[0] == ' ') {
		value++;
		vlen--;
	}
	if (name_len == 4 && memcmp(line, "data", 4) == 0) {
		size_t need = p->data_len + (p->has_data ? 1 : 0) + vlen;

		if (need > p->max_event)
			return too_big(p);
		if (grow(&p->data, &p->data_cap, need + 1) < 0)
			return RH_ENOMEM;
		if (p->has_data)
			p->data[p->data_len++] = '\n';
		memcpy(p->data + p->data_len, value, vlen);
		p->data_len += vlen;
		p->has_data = true;
	} else if (name_len == 5 && memcmp(line, "event", 5) == 0) {
		size_t k = vlen < sizeof(p->event) - 1 ? vlen : sizeof(p->event) - 1;

		memcpy(p->event, value, k);
		p->event[k] = '\0';
	}
	/* id, retry and unknown fields: nothing to do for a measuring client */
	return 0;
}

int rh_sse_feed(struct rh_sse *p, const char *buf, size_t n)
{
	size_t i = 0;
	int rc;

	if (p->failed)
		return p->failed;
	if (!p->bom_checked && n > 0) {
		/* a UTF-8 byte order mark may open the stream (only whole, only once) */
		if (n >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
			i = 3;
		p->bom_checked = true;
	}
	while (i < n) {
		const char *start = buf + i;
		const char *end = start;
		const char *lim = buf + n;

		if (p->after_cr) {
			p->after_cr = false;
			if (*start == '\n') {
				i++;
				continue;
			}
		}
		while (end < lim && *end != '\n' && *end != '\r')
			end++;
		if (p->line_len + (size_t)(end - start) > p->max_event) {
			rc = too_big(p);
			goto fail;
		}
		if (end > start) {
			if (grow(&p->line, &p->line_cap, p->line_len + (size_t)(end - start) + 1) <
			    0) {
				rc = RH_ENOMEM;
				goto fail;
			}
			memcpy(p->line + p->line_len, start, (size_t)(end - start));
			p->line_len += (size_t)(end - start);
		}
		i = (size_t)(end - buf);
		if (end == lim)
			break; /* the line continues in the next chunk */
		p->after_cr = *end == '\r';
		i++;
		rc = process_line(p);
		p->line_len = 0;
		if (rc < 0)
			goto fail;
	}
	return 0;
fail:
	p->failed = rc;
	return rc;
}

int rh_sse_finish(struct rh_sse *p)
{
	bool pending;

	if (p->failed)
		return p->failed;
	pending = p->has_data || p->line_len > 0;
	reset_event(p);
	p->line_len = 0;
	return pending ? 1 : 0;
}
