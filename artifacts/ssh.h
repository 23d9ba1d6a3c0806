/*
 * ssh.h - one SSH connection made the careful way, for the SFTP sink and the
 * ssh provider.
 *
 * rh_ssh_connect() resolves host:port (IPv4 or IPv6), connects within a
 * deadline, negotiates the fastest cipher libssh2 1.10 and the server both
 * have, checks the server's host key against known_hosts and authenticates
 * with ssh-agent, then an identity file. Every later blocking step (SFTP
 * requests, exec) is bounded by the connection's I/O timeout and wakes at
 * once when the cancel token fires.
 *
 * Host keys: a known, matching key is required. An unknown key is an error
 * that names the key's SHA256 fingerprint, unless opts.accept_new_host_key,
 * which appends it to known_hosts. A changed key is always an error naming
 * the host, the key type, the new fingerprint and the known_hosts line that
 * holds the old key.
 *
 * Threads: one struct rh_ssh is used by one thread at a time; different
 * connections may be used from different threads at once.
 *
 * Ownership: rh_ssh_connect's *out is new, freed with rh_ssh_free (accepts
 * NULL). rh_ssh_sftp returns a handle borrowed from the connection. Strings
 * in struct rh_ssh_exec_result are new; release them with
 * rh_ssh_exec_result_clear.
 */
#ifndef RH_SSH_H
#define RH_SSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rh_cancel;
struct rh_ssh;
struct _LIBSSH2_SESSION;
struct _LIBSSH2_SFTP;

struct rh_ssh_opts {
	unsigned version;
	const char *user;	   /* NULL: the local user name */
	const char *known_hosts;   /* NULL: ~/.ssh/known_hosts */
	bool accept_new_host_key;  /* trust an unknown key and record it (never a changed one) */
	const char *identity_file; /* NULL: ~/.ssh/id_ed25519, then ~/.ssh/id_rsa */
	bool no_agent;		   /* skip ssh-agent even when SSH_AUTH_SOCK is set */
	double connect_timeout_s;  /* 0: 15 s, covering connect, handshake and auth */
	double io_timeout_s;	   /* 0: 60 s without progress on any one request */
	struct rh_cancel *cancel;  /* may be NULL; borrowed for the connection's life */
};
#define RH_SSH_OPTS_VERSION 1
#define RH_SSH_OPTS_INIT                                                                           \
	{                                                                                          \
		RH_SSH_OPTS_VERSION, NULL, NULL, false, NULL, false, 0, 0, NULL                    \
	}

/* Connects and authenticates. Errors: RH_ETIMEOUT, RH_ECANCELLED, RH_EIO
 * (cannot connect, connection lost), RH_EVERIFY (host key unknown or
 * changed), RH_EINVAL (bad arguments), RH_ERROR (authentication failed).
 * Messages name user@host:port and say what to do. */
int rh_ssh_connect(struct rh_ssh **out, const char *host, unsigned port,
		   const struct rh_ssh_opts *opts);
void rh_ssh_free(struct rh_ssh *s);

/* Replaces the cancel token the connection watches (may be NULL), e.g. when
 * a pooled connection starts serving another caller. */
void rh_ssh_set_cancel(struct rh_ssh *s, struct rh_cancel *cancel);

/* "user@host:port" (borrowed), for messages. */
const char *rh_ssh_name(const struct rh_ssh *s);

/* The SHA256 fingerprint of the server's host key in OpenSSH's form
 * ("SHA256:" + unpadded base64), borrowed. */
const char *rh_ssh_host_fingerprint(const struct rh_ssh *s);

/* The connection's session, borrowed; it is in non-blocking mode: wrap
 * calls that return LIBSSH2_ERROR_EAGAIN with rh_ssh_wait. */
struct _LIBSSH2_SESSION *rh_ssh_session(struct rh_ssh *s);

/* Waits until the socket is ready for what libssh2 is blocked on, the
 * deadline (rh_clock_mono seconds; <= 0: now + io timeout) passes, or the
 * cancel token fires. Returns 0, RH_ETIMEOUT or RH_ECANCELLED (message set,
 * naming `what`). */
int rh_ssh_wait(struct rh_ssh *s, double deadline, const char *what);

/* Turns libssh2's last error on this connection into an rh error: a lost
 * connection becomes RH_EIO "connection to user@host:port lost while
 * <what>". Returns the code. */
int rh_ssh_error(struct rh_ssh *s, int rc, const char *what);

/* True once the connection is known to be unusable (lost, timed out). */
bool rh_ssh_broken(const struct rh_ssh *s);

/* The SFTP subsystem, started on first use (borrowed). Errors as above. */
int rh_ssh_sftp(struct _LIBSSH2_SFTP **out, struct rh_ssh *s);

/* True if the SFTP server announced the OpenSSH extension `name` (e.g.
 * "fsync@openssh.com", "posix-rename@openssh.com"). Starts SFTP if needed;
 * false on any error. */
bool rh_ssh_sftp_has_ext(struct rh_ssh *s, const char *name);

/* Renames `from` to `to` on the server, replacing `to` if it exists:
 * atomically with posix-rename@openssh.com when the server has it (libssh2
 * 1.10 cannot send it, so we speak that one request ourselves on a second
 * SFTP channel), otherwise by removing `to` and renaming. */
int rh_ssh_sftp_rename(struct rh_ssh *s, const char *from, const char *to);

/* Quotes argv for a POSIX remote shell: every element in single quotes,
 * each ' written as '\'' , joined by spaces, so no value can expand, split
 * or chain commands. *out is new. */
int rh_ssh_quote_argv(char **out, const char *const argv[]);

struct rh_ssh_exec_opts {
	unsigned version;
	const void *stdin_data; /* may be NULL: stdin is closed at once */
	size_t stdin_len;
	double timeout_s;  /* 0: 300 s for the whole command */
	size_t max_output; /* per stream kept; 0: 1 MiB; the rest is read and dropped */
};
#define RH_SSH_EXEC_OPTS_VERSION 1
#define RH_SSH_EXEC_OPTS_INIT                                                                      \
	{                                                                                          \
		RH_SSH_EXEC_OPTS_VERSION, NULL, 0, 0, 0                                            \
	}

struct rh_ssh_exec_result {
	int exit_status;   /* the command's status; -1 if none (killed by a signal) */
	char *exit_signal; /* new: "TERM", "KILL" ... or NULL */
	char *out;	   /* new, NUL-terminated; the first max_output bytes of stdout */
	size_t out_len;
	char *err; /* new, NUL-terminated; stderr likewise */
	size_t err_len;
	bool truncated; /* a stream had more than max_output bytes */
};

/* Runs argv on the server (quoted with rh_ssh_quote_argv; the server hands
 * the line to the user's login shell), feeds stdin, collects stdout/stderr
 * and the exit status. Returns 0 when the command ran to its end whatever
 * its status (look at res->exit_status), RH_ETIMEOUT when timeout_s passed
 * (the channel is closed; a command that ignores SIGHUP may keep running),
 * RH_ECANCELLED, RH_EIO. *res is filled on 0 and on errors (possibly
 * partially); always clear it. */
int rh_ssh_exec(struct rh_ssh *s, const char *const argv[], const struct rh_ssh_exec_opts *opts,
		struct rh_ssh_exec_result *res);
void rh_ssh_exec_result_clear(struct rh_ssh_exec_result *res);

#endif
