/*
 * cancel.h - a cancellation token that threads can wait on.
 *
 * rh_cancel_fire() is async-signal-safe (an atomic store and a write to a
 * pipe), so a signal handler or the signal thread may call it. Waiters poll
 * rh_cancel_fd() next to their own fds (a child's pidfd, a socket), so a
 * cancel wakes them at once instead of at the next polling tick.
 * Order: init, (fire)*, clear.
 */
#ifndef RH_CANCEL_H
#define RH_CANCEL_H

#include <stdatomic.h>
#include <stdbool.h>

struct rh_cancel {
	atomic_bool fired;
	int fds[2]; /* pipe: [0] becomes readable once fired */
};

int rh_cancel_init(struct rh_cancel *c);
void rh_cancel_fire(struct rh_cancel *c);
bool rh_cancel_is_fired(const struct rh_cancel *c);
int rh_cancel_fd(const struct rh_cancel *c);
void rh_cancel_clear(struct rh_cancel *c);

/* Sleeps `seconds` unless fired first. Returns 0, or RH_ECANCELLED. */
int rh_cancel_sleep(struct rh_cancel *c, double seconds);

#endif
