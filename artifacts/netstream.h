/*
 * netstream.h - connect and idle timeouts, a deadline and cancellation for
 * the TCP connections libgit2 makes.
 *
 * libgit2 1.5 has no network timeouts: a server that accepts a connection
 * and never answers leaves its fetch in recv() forever, out of reach of the
 * progress callbacks that check rehydra's deadline. rh_netstream_register()
 * replaces libgit2's TCP stream (GIT_STREAM_STANDARD, under http, https and
 * ssh alike) with one that connects without blocking and waits for every
 * read and write in poll() next to the cancel token. libgit2's ssh transport
 * hands the socket to libssh2, which waits on it in its own poll(): for that
 * case a watchdog thread shuts the socket down (which wakes that poll) when
 * the deadline passes, the token fires or nothing arrived for the idle time.
 *
 * Order: rh_netstream_register (after each git_libgit2_init that starts the
 * library; rh_artifacts_global_init does it),
 * then per operation, in the thread that makes it: rh_net_scope_begin,
 * the libgit2 calls, rh_net_scope_end. Connections made in a thread with no
 * scope get the default connect and idle timeouts only.
 */
#ifndef RH_NETSTREAM_H
#define RH_NETSTREAM_H

#include <pthread.h>
#include <stdbool.h>

struct rh_cancel;

#define RH_NET_CONNECT_TIMEOUT_S 15.0
#define RH_NET_IDLE_TIMEOUT_S 60.0
#define RH_NET_SCOPE_MAX_FDS 16

enum rh_net_stop {
	RH_NET_RUNNING = 0,
	RH_NET_CANCELLED,    /* the token fired */
	RH_NET_DEADLINE,     /* the scope's deadline passed */
	RH_NET_CONNECT_SLOW, /* a connect did not complete in time */
	RH_NET_IDLE,	     /* a connection received nothing for the idle time */
};

struct rh_net_scope {
	double deadline;	  /* rh_clock_mono seconds; <= 0: none */
	struct rh_cancel *cancel; /* borrowed; may be NULL */
	double connect_timeout_s; /* set by begin; may be lowered before the calls */
	double idle_timeout_s;
	/* private */
	pthread_mutex_t lock;
	int fds[RH_NET_SCOPE_MAX_FDS]; /* open connections, -1 when free */
	enum rh_net_stop stop;	       /* why the scope stopped its connections */
	char peer[300];		       /* "host:port" of the connection that stopped */
	int wake[2];		       /* ends the watchdog */
	pthread_t watchdog;
	bool watching;
};

/* Registers the stream with libgit2 (replacing any). 0 or a negative code. */
int rh_netstream_register(void);

/* Starts a scope for the calling thread (and its watchdog). 0 or negative. */
int rh_net_scope_begin(struct rh_net_scope *s, double deadline, struct rh_cancel *cancel);

/* Why connections of the scope were stopped (RH_NET_RUNNING: they were not);
 * `peer` (may be NULL) gets the "host:port" concerned. */
enum rh_net_stop rh_net_scope_stopped(struct rh_net_scope *s, const char **peer);

/* Ends the scope: stops the watchdog, detaches it from the thread. */
void rh_net_scope_end(struct rh_net_scope *s);

#endif
