/*
 * ka_server.c - a trivial HTTP/1.1 keep-alive server for tests/bench/load.sh.
 *
 * Comparing load generators needs a server that is not the bottleneck: one
 * epoll loop, a fixed 200 answer to every request head, connections kept
 * alive, pipelined requests answered in order. It prints the port it bound
 * (127.0.0.1, a free port) on its first stdout line and runs until killed.
 * A benchmark tool only, never built by default and never used by rehydra.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define BUF 16384

struct conn {
	int fd;
	size_t len;
	char in[BUF];
};

static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
			     "Content-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n";

static void serve(struct conn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->in + c->len, sizeof(c->in) - c->len, 0);
		size_t off = 0;
		char *end;

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0 || c->len + (size_t)n == sizeof(c->in)) {
			close(c->fd);
			free(c);
			return;
		}
		c->len += (size_t)n;
		while ((end = memmem(c->in + off, c->len - off, "\r\n\r\n", 4))) {
			if (send(c->fd, answer, sizeof(answer) - 1, MSG_NOSIGNAL) < 0) {
				close(c->fd);
				free(c);
				return;
			}
			off = (size_t)(end - c->in) + 4;
		}
		memmove(c->in, c->in + off, c->len - off);
		c->len -= off;
	}
}

int main(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	struct epoll_event ev, evs[MAX_EVENTS];
	int one = 1, lfd, ep;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1024) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
		perror("ka_server: listen");
		return 1;
	}
	printf("%d\n", ntohs(sa.sin_port));
	fflush(stdout);
	ep = epoll_create1(EPOLL_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
		perror("ka_server: epoll");
		return 1;
	}
	for (;;) {
		int n = epoll_wait(ep, evs, MAX_EVENTS, -1);

		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr) {
				serve(evs[i].data.ptr);
				continue;
			}
			for (;;) {
				int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
				struct conn *c;

				if (fd < 0)
					break;
				setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				c = calloc(1, sizeof(*c));
				if (!c) {
					close(fd);
					continue;
				}
				c->fd = fd;
				ev.events = EPOLLIN;
				ev.data.ptr = c;
				if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
					close(fd);
					free(c);
				}
			}
		}
	}
}
