/*
 * cancel.c - the cancellation token (see cancel.h).
 *
 * A flag plus a self-pipe: the flag answers "was it fired?" without a system
 * call, the pipe lets a waiter put the token in the same poll() as its own
 * fds. Firing writes one byte and never reads, so the read end stays
 * readable for every waiter, forever; that is what makes one fire wake any
 * number of threads, now or later.
 */
#include "cancel.h"
#include "clock.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include "banned.h"

int rh_cancel_init(struct rh_cancel *c)
{
	atomic_init(&c->fired, false);
	c->fds[0] = c->fds[1] = -1;
	if (pipe2(c->fds, O_CLOEXEC | O_NONBLOCK) < 0)
		return rh_error_set_errno(RH_EIO, errno, "cannot create a cancellation pipe");
	return 0;
}

void rh_cancel_fire(struct rh_cancel *c)
{
	int saved = errno; /* may run in a signal handler */
	bool expected = false;

	if (atomic_compare_exchange_strong(&c->fired, &expected, true) && c->fds[1] >= 0) {
		ssize_t n = write(c->fds[1], "x", 1);

		(void)n; /* a full pipe is already readable */
	}
	errno = saved;
}

bool rh_cancel_is_fired(const struct rh_cancel *c)
{
	return atomic_load(&((struct rh_cancel *)c)->fired);
}

int rh_cancel_fd(const struct rh_cancel *c)
{
	return c->fds[0];
}

void rh_cancel_clear(struct rh_cancel *c)
{
	for (int i = 0; i < 2; i++) {
		if (c->fds[i] >= 0)
			close(c->fds[i]);
		c->fds[i] = -1;
	}
}

int rh_cancel_sleep(struct rh_cancel *c, double seconds)
{
	double end = rh_clock_mono() + (seconds > 0 ? seconds : 0);
	int rc = 0;

	for (;;) {
		struct pollfd pfd = {.fd = c ? c->fds[0] : -1, .events = POLLIN};
		double left;
		int ms;

		if (c && rh_cancel_is_fired(c)) {
			rc = rh_error_set(RH_ECANCELLED, "cancelled");
			break;
		}
		left = end - rh_clock_mono();
		if (left <= 0)
			break;
		/* round up so we never wake a hair early and spin */
		ms = left > 86400.0 ? 86400000 : (int)(left * 1000.0) + 1;
		if (poll(&pfd, 1, ms) < 0 && errno != EINTR) {
			rc = rh_error_set_errno(RH_EIO, errno, "poll");
			break;
		}
	}
	return rc;
}
