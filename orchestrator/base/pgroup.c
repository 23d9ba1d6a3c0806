/*
 * pgroup.c - stopping what a killed rehydra left running (see pgroup.h).
 *
 * Why /proc and pidfds rather than kill(-pgid): after rehydra is killed its
 * children live on under PID 1 for as long as nobody notices, and by the
 * time the next command looks, a recorded pid or group id may belong to a
 * stranger. So each candidate is first pinned with pidfd_open, then checked
 * through /proc (its group, its start time, the drill's marker in its
 * environment), and only then signalled through the pidfd: if the process
 * died and its pid was reused between the check and the signal, the signal
 * goes nowhere instead of to the newcomer.
 */
#include "pgroup.h"
#include "clock.h"
#include "error.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "banned.h"

/* At most this many processes of one group are tracked while they die. */
#define PG_MAX_MEMBERS 256
/* A process environment larger than this is not searched for the marker. */
#define PG_ENVIRON_MAX (1 << 20)

struct proc_stat {
	char state;
	pid_t pgrp;
	unsigned long long start;
};

static int read_small(const char *path, char *buf, size_t size, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t got = 0;
	ssize_t n;

	if (fd < 0)
		return errno == ENOENT || errno == ESRCH ? RH_ENOTFOUND : RH_EIO;
	while (got < size) {
		n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return 0;
}

/* Parses /proc/PID/stat. Returns 0 or RH_ENOTFOUND (gone, or unreadable). */
static int stat_read(pid_t pid, struct proc_stat *st)
{
	char path[64], buf[1024];
	const char *p;
	size_t len = 0;
	int field = 0;
	char *end;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_small(path, buf, sizeof(buf) - 1, &len) < 0 || len == 0)
		return RH_ENOTFOUND;
	buf[len] = '\0';
	/* the command name may hold spaces and parentheses: skip to the last ')' */
	p = strrchr(buf, ')');
	if (!p)
		return RH_ENOTFOUND;
	p++;
	memset(st, 0, sizeof(*st));
	/* fields after the name, counted from 3 (state) as in proc(5) */
	for (field = 3; *p; field++) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		if (field == 3)
			st->state = *p;
		else if (field == 5)
			st->pgrp = (pid_t)strtol(p, &end, 10);
		else if (field == 22) {
			st->start = strtoull(p, &end, 10);
			return 0;
		}
		while (*p && *p != ' ')
			p++;
	}
	return RH_ENOTFOUND;
}

int rh_proc_start_ticks(pid_t pid, unsigned long long *out)
{
	struct proc_stat st;

	*out = 0;
	if (pid <= 0 || stat_read(pid, &st) < 0)
		return rh_error_set(RH_ENOTFOUND, "no process %d", (int)pid);
	*out = st.start;
	return 0;
}

void rh_proc_boot_id(char *out, size_t size)
{
	char buf[64];
	size_t len = 0;

	out[0] = '\0';
	if (read_small("/proc/sys/kernel/random/boot_id", buf, sizeof(buf) - 1, &len) < 0)
		return;
	while (len > 0 && isspace((unsigned char)buf[len - 1]))
		len--;
	buf[len] = '\0';
	snprintf(out, size, "%s", buf);
}

bool rh_proc_is(pid_t pid, unsigned long long start)
{
	struct proc_stat st;

	return pid > 0 && stat_read(pid, &st) == 0 && st.state != 'Z' && st.start == start;
}

/* True when /proc/PID/environ holds the exact entry `marker`. */
static bool environ_has(pid_t pid, const char *marker)
{
	char path[64];
	char *buf = NULL;
	size_t len = 0, mlen = strlen(marker);
	bool found = false;

	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	buf = malloc(PG_ENVIRON_MAX + 1);
	if (!buf || read_small(path, buf, PG_ENVIRON_MAX, &len) < 0)
		goto done;
	buf[len] = '\0';
	for (size_t i = 0; i < len;) {
		size_t n = strnlen(buf + i, len - i);

		if (n == mlen && memcmp(buf + i, marker, mlen) == 0) {
			found = true;
			break;
		}
		i += n + 1;
	}
done:
	free(buf);
	return found;
}

static int pidfd_open_pid(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_kill(int fd)
{
	return (int)syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
}

int rh_pgroup_kill_owned(pid_t pgid, unsigned long long leader_start, const char *marker,
			 double wait_s, unsigned *killed)
{
	int fds[PG_MAX_MEMBERS];
	size_t n_fds = 0;
	unsigned n_killed = 0;
	bool group_ours;
	struct proc_stat lst;
	struct dirent *de;
	DIR *dir = NULL;
	double deadline;
	int rc = 0;

	if (killed)
		*killed = 0;
	if (pgid <= 1)
		return 0;
	group_ours = stat_read(pgid, &lst) == 0 && lst.pgrp == pgid && lst.start == leader_start;
	dir = opendir("/proc");
	if (!dir)
		return rh_error_set_errno(RH_EIO, errno, "cannot read /proc");
	while ((de = readdir(dir)) != NULL && n_fds < PG_MAX_MEMBERS) {
		struct proc_stat st;
		char *end;
		long v = strtol(de->d_name, &end, 10);
		pid_t pid = (pid_t)v;
		int fd;

		if (*end || v <= 1 || pid == getpid())
			continue;
		if (stat_read(pid, &st) < 0 || st.pgrp != pgid || st.state == 'Z')
			continue;
		/* pin it, then check it is still the process just read */
		fd = pidfd_open_pid(pid);
		if (fd < 0)
			continue;
		{
			struct proc_stat again;
			bool ours;

			ours = stat_read(pid, &again) == 0 && again.start == st.start &&
			       again.pgrp == pgid && again.state != 'Z' &&
			       (group_ours || (pid == pgid && st.start == leader_start) ||
				(marker && environ_has(pid, marker)));
			if (!ours || pidfd_kill(fd) != 0) {
				close(fd);
				continue;
			}
		}
		n_killed++;
		fds[n_fds++] = fd;
	}
	closedir(dir);

	/* an exited process makes its pidfd readable, reaped or not */
	deadline = rh_clock_mono() + wait_s;
	for (size_t i = 0; i < n_fds; i++) {
		struct pollfd pfd = {.fd = fds[i], .events = POLLIN};
		double left = deadline - rh_clock_mono();
		int r;

		do
			r = poll(&pfd, 1, left > 0 ? (int)(left * 1000.0) + 1 : 0);
		while (r < 0 && errno == EINTR);
		if (r <= 0 && rc == 0)
			rc = rh_error_set(RH_ETIMEOUT,
					  "process group %d: a process did not exit after SIGKILL",
					  (int)pgid);
		close(fds[i]);
	}
	if (killed)
		*killed = n_killed;
	return rc;
}

size_t rh_proc_count_marked(const char *marker)
{
	struct dirent *de;
	size_t n = 0;
	DIR *dir = opendir("/proc");

	if (!dir)
		return 0;
	while ((de = readdir(dir)) != NULL) {
		struct proc_stat st;
		char *end;
		long v = strtol(de->d_name, &end, 10);

		if (*end || v <= 1 || (pid_t)v == getpid())
			continue;
		if (stat_read((pid_t)v, &st) == 0 && st.state != 'Z' &&
		    environ_has((pid_t)v, marker))
			n++;
	}
	closedir(dir);
	return n;
}
