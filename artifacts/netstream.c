/*
 * netstream.c - libgit2's TCP stream, with timeouts and cancellation (see
 * netstream.h for why).
 *
 * The stream keeps the layout of libgit2's own socket stream (parent, host,
 * port, socket) because libgit2 1.5's ssh transport reads the socket out of
 * it to give it to libssh2. Reads and writes wait in poll() on the socket
 * and the scope's cancel token, bounded by the idle timeout and the scope's
 * deadline. The watchdog covers the waits that are not ours (libssh2's): it
 * shuts the scope's sockets down, which ends any poll() or recv() on them.
 */
#include "netstream.h"
#include "cancel.h"
#include "clock.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <git2/sys/stream.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "banned.h"

/* Mirrors libgit2's git_socket_stream: the ssh transport casts to it. */
struct rh_gstream {
	git_stream parent;
	char *host;
	char *port;
	int s;
	/* ours, after the mirrored part */
	struct rh_net_scope *scope;
	int slot; /* index in scope->fds, -1 */
};

static _Thread_local struct rh_net_scope *current_scope;

static void net_error(const char *fmt, const char *host, const char *port, double secs)
{
	char msg[512];

	snprintf(msg, sizeof(msg), fmt, host, port, secs);
	git_error_set_str(GIT_ERROR_NET, msg);
}

/* Marks why the scope stopped (first reason wins). Under scope->lock. */
static void scope_mark(struct rh_net_scope *sc, enum rh_net_stop why, const char *host,
		       const char *port)
{
	if (sc->stop != RH_NET_RUNNING)
		return;
	sc->stop = why;
	if (host)
		snprintf(sc->peer, sizeof(sc->peer), "%s:%s", host, port ? port : "");
}

static void scope_note(struct rh_net_scope *sc, enum rh_net_stop why, const char *host,
		       const char *port)
{
	if (!sc)
		return;
	pthread_mutex_lock(&sc->lock);
	scope_mark(sc, why, host, port);
	pthread_mutex_unlock(&sc->lock);
}

/* Waits for `events` on the stream's socket. 0 when ready; -1 with the
 * libgit2 error set when cancelled, past the deadline or idle too long. */
static int wait_io(struct rh_gstream *st, short events, double idle_s, bool connecting)
{
	struct rh_net_scope *sc = st->scope;
	double start = rh_clock_mono();

	for (;;) {
		struct pollfd p[2] = {{.fd = st->s, .events = events},
				      {.fd = -1, .events = POLLIN}};
		double now = rh_clock_mono();
		double left = start + idle_s - now;
		bool by_deadline = false;
		int rc;

		if (sc && sc->cancel) {
			if (rh_cancel_is_fired(sc->cancel)) {
				scope_note(sc, RH_NET_CANCELLED, st->host, st->port);
				net_error("cancelled talking to %s:%s", st->host, st->port, 0);
				return -1;
			}
			p[1].fd = rh_cancel_fd(sc->cancel);
		}
		if (sc && sc->deadline > 0 && sc->deadline - now < left) {
			left = sc->deadline - now;
			by_deadline = true;
		}
		if (left <= 0) {
			if (by_deadline) {
				scope_note(sc, RH_NET_DEADLINE, st->host, st->port);
				net_error("%s:%s: the operation did not finish in time", st->host,
					  st->port, 0);
			} else {
				scope_note(sc, connecting ? RH_NET_CONNECT_SLOW : RH_NET_IDLE,
					   st->host, st->port);
				net_error(connecting ? "no connection to %s:%s within %g s"
						     : "no data from %s:%s for %g s",
					  st->host, st->port, idle_s);
			}
			return -1;
		}
		rc = poll(p, 2, (int)(left * 1000.0) + 1);
		if (rc < 0 && errno != EINTR) {
			net_error("poll failed talking to %s:%s", st->host, st->port, 0);
			return -1;
		}
		if (rc > 0 && p[0].revents)
			return 0;
	}
}

static void scope_add(struct rh_gstream *st)
{
	struct rh_net_scope *sc = st->scope;

	if (!sc)
		return;
	pthread_mutex_lock(&sc->lock);
	for (int i = 0; i < RH_NET_SCOPE_MAX_FDS; i++) {
		if (sc->fds[i] < 0) {
			sc->fds[i] = st->s;
			st->slot = i;
			break;
		}
	}
	pthread_mutex_unlock(&sc->lock);
}

static void scope_remove(struct rh_gstream *st)
{
	struct rh_net_scope *sc = st->scope;

	if (!sc || st->slot < 0)
		return;
	pthread_mutex_lock(&sc->lock);
	sc->fds[st->slot] = -1;
	st->slot = -1;
	pthread_mutex_unlock(&sc->lock);
}

static double connect_timeout(const struct rh_gstream *st)
{
	return st->scope && st->scope->connect_timeout_s > 0 ? st->scope->connect_timeout_s
							     : RH_NET_CONNECT_TIMEOUT_S;
}

static double idle_timeout(const struct rh_gstream *st)
{
	return st->scope && st->scope->idle_timeout_s > 0 ? st->scope->idle_timeout_s
							  : RH_NET_IDLE_TIMEOUT_S;
}

static int gs_connect(git_stream *stream)
{
	struct rh_gstream *st = (struct rh_gstream *)stream;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
	struct addrinfo *res = NULL;
	int rc, err = -1;

	rc = getaddrinfo(st->host, st->port, &hints, &res);
	if (rc != 0) {
		char msg[512];

		snprintf(msg, sizeof(msg), "cannot resolve %s: %s", st->host, gai_strerror(rc));
		git_error_set_str(GIT_ERROR_NET, msg);
		return -1;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int so_err = 0;
		socklen_t len = sizeof(so_err);

		st->s = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			       ai->ai_protocol);
		if (st->s < 0)
			continue;
		scope_add(st);
		if (connect(st->s, ai->ai_addr, ai->ai_addrlen) == 0 ||
		    (errno == EINPROGRESS && wait_io(st, POLLOUT, connect_timeout(st), true) == 0 &&
		     getsockopt(st->s, SOL_SOCKET, SO_ERROR, &so_err, &len) == 0 && so_err == 0)) {
			err = 0;
			break;
		}
		if (so_err) {
			char msg[512];

			snprintf(msg, sizeof(msg), "cannot connect to %s:%s: %s", st->host,
				 st->port, strerror(so_err));
			git_error_set_str(GIT_ERROR_NET, msg);
		} else if (errno != EINPROGRESS && errno != 0 && !git_error_last()) {
			net_error("cannot connect to %s:%s", st->host, st->port, 0);
		}
		scope_remove(st);
		close(st->s);
		st->s = -1;
		/* a cancel or the deadline ends the attempt, not just this address */
		if (st->scope && st->scope->stop != RH_NET_RUNNING &&
		    st->scope->stop != RH_NET_CONNECT_SLOW)
			break;
	}
	freeaddrinfo(res);
	if (err < 0 && !git_error_last())
		net_error("cannot connect to %s:%s", st->host, st->port, 0);
	return err;
}

static ssize_t gs_read(git_stream *stream, void *data, size_t len)
{
	struct rh_gstream *st = (struct rh_gstream *)stream;

	for (;;) {
		ssize_t n = recv(st->s, data, len, MSG_DONTWAIT);

		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			char msg[512];

			snprintf(msg, sizeof(msg), "cannot read from %s:%s: %s", st->host, st->port,
				 strerror(errno));
			git_error_set_str(GIT_ERROR_NET, msg);
			return -1;
		}
		if (wait_io(st, POLLIN, idle_timeout(st), false) < 0)
			return -1;
	}
}

static ssize_t gs_write(git_stream *stream, const char *data, size_t len, int flags)
{
	struct rh_gstream *st = (struct rh_gstream *)stream;
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(st->s, data + off, len - off, flags | MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			char msg[512];

			snprintf(msg, sizeof(msg), "cannot send to %s:%s: %s", st->host, st->port,
				 strerror(errno));
			git_error_set_str(GIT_ERROR_NET, msg);
			return -1;
		}
		if (wait_io(st, POLLOUT, idle_timeout(st), false) < 0)
			return -1;
	}
	return (ssize_t)len;
}

static int gs_close(git_stream *stream)
{
	struct rh_gstream *st = (struct rh_gstream *)stream;

	if (st->s >= 0) {
		scope_remove(st);
		close(st->s);
		st->s = -1;
	}
	return 0;
}

static void gs_free(git_stream *stream)
{
	struct rh_gstream *st = (struct rh_gstream *)stream;

	gs_close(stream);
	free(st->host);
	free(st->port);
	free(st);
}

static int gs_init(git_stream **out, const char *host, const char *port)
{
	struct rh_gstream *st = calloc(1, sizeof(*st));

	*out = NULL;
	if (!st || !(st->host = strdup(host)) || !(st->port = strdup(port))) {
		if (st)
			free(st->host);
		free(st);
		git_error_set_str(GIT_ERROR_NOMEMORY, "out of memory");
		return -1;
	}
	st->parent.version = GIT_STREAM_VERSION;
	st->parent.connect = gs_connect;
	st->parent.read = gs_read;
	st->parent.write = gs_write;
	st->parent.close = gs_close;
	st->parent.free = gs_free;
	st->s = -1;
	st->slot = -1;
	st->scope = current_scope;
	*out = &st->parent;
	return 0;
}

int rh_netstream_register(void)
{
	git_stream_registration reg = {
	    .version = GIT_STREAM_VERSION,
	    .init = gs_init,
	    .wrap = NULL,
	};

	if (git_stream_register(GIT_STREAM_STANDARD, &reg) < 0)
		return rh_error_set(RH_ERROR, "cannot register the network stream with libgit2");
	return 0;
}

/* ---- the scope and its watchdog ----------------------------------------- */

/* Milliseconds since the last data arrived on `fd`; -1 when unknown. */
static long idle_ms(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
	    ti.tcpi_state != TCP_ESTABLISHED)
		return -1;
	return (long)ti.tcpi_last_data_recv;
}

static void shut_all(struct rh_net_scope *sc, enum rh_net_stop why)
{
	pthread_mutex_lock(&sc->lock);
	scope_mark(sc, why, NULL, NULL);
	for (int i = 0; i < RH_NET_SCOPE_MAX_FDS; i++)
		if (sc->fds[i] >= 0)
			shutdown(sc->fds[i], SHUT_RDWR);
	pthread_mutex_unlock(&sc->lock);
}

static void *watchdog(void *arg)
{
	struct rh_net_scope *sc = arg;
	struct rh_cancel *cancel = sc->cancel;
	double deadline = sc->deadline;

	for (;;) {
		struct pollfd p[2] = {{.fd = sc->wake[0], .events = POLLIN},
				      {.fd = cancel ? rh_cancel_fd(cancel) : -1, .events = POLLIN}};
		double now = rh_clock_mono();
		int ms = 500;

		if (deadline > 0 && deadline - now < 0.5)
			ms = deadline > now ? (int)((deadline - now) * 1000.0) + 1 : 0;
		if (poll(p, 2, ms) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (cancel && rh_cancel_is_fired(cancel)) {
			shut_all(sc, RH_NET_CANCELLED);
			cancel = NULL; /* from now on, wake only for the end */
			deadline = 0;
			continue;
		}
		if (deadline > 0 && rh_clock_mono() >= deadline) {
			shut_all(sc, RH_NET_DEADLINE);
			deadline = 0;
			continue;
		}
		pthread_mutex_lock(&sc->lock);
		for (int i = 0; i < RH_NET_SCOPE_MAX_FDS; i++) {
			long idle = sc->fds[i] >= 0 ? idle_ms(sc->fds[i]) : -1;

			if (idle >= 0 && (double)idle >= sc->idle_timeout_s * 1000.0) {
				scope_mark(sc, RH_NET_IDLE, NULL, NULL);
				shutdown(sc->fds[i], SHUT_RDWR);
			}
		}
		pthread_mutex_unlock(&sc->lock);
	}
	return NULL;
}

int rh_net_scope_begin(struct rh_net_scope *s, double deadline, struct rh_cancel *cancel)
{
	memset(s, 0, sizeof(*s));
	s->deadline = deadline;
	s->cancel = cancel;
	s->connect_timeout_s = RH_NET_CONNECT_TIMEOUT_S;
	s->idle_timeout_s = RH_NET_IDLE_TIMEOUT_S;
	s->wake[0] = s->wake[1] = -1;
	for (int i = 0; i < RH_NET_SCOPE_MAX_FDS; i++)
		s->fds[i] = -1;
	pthread_mutex_init(&s->lock, NULL);
	if (pipe2(s->wake, O_CLOEXEC) != 0) {
		pthread_mutex_destroy(&s->lock);
		return rh_error_set_errno(RH_EIO, errno, "cannot create a pipe");
	}
	if (pthread_create(&s->watchdog, NULL, watchdog, s) != 0) {
		close(s->wake[0]);
		close(s->wake[1]);
		pthread_mutex_destroy(&s->lock);
		return rh_error_set(RH_ERROR, "cannot start the network watchdog thread");
	}
	s->watching = true;
	current_scope = s;
	return 0;
}

enum rh_net_stop rh_net_scope_stopped(struct rh_net_scope *s, const char **peer)
{
	enum rh_net_stop why;

	pthread_mutex_lock(&s->lock);
	why = s->stop;
	pthread_mutex_unlock(&s->lock);
	if (peer)
		*peer = s->peer;
	return why;
}

void rh_net_scope_end(struct rh_net_scope *s)
{
	if (current_scope == s)
		current_scope = NULL;
	if (!s->watching)
		return;
	while (write(s->wake[1], "x", 1) < 0 && errno == EINTR)
		;
	pthread_join(s->watchdog, NULL);
	close(s->wake[0]);
	close(s->wake[1]);
	pthread_mutex_destroy(&s->lock);
	s->watching = false;
}
