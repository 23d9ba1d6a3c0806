/*
 * terraform.h - the one place that runs Terraform (or OpenTofu).
 *
 * Two halves:
 *
 * 1. A parser for the machine-readable UI stream that `apply -json` and
 *    `destroy -json` print, one JSON object a line (Terraform docs,
 *    "Internals: Machine-Readable UI"). It keeps what a drill record needs:
 *    per-resource action, status and elapsed seconds (apply_complete /
 *    apply_errored hook.elapsed_seconds), error diagnostics turned into
 *    messages that name the resource address, the change summary and the
 *    outputs message. Unknown message types and keys are ignored (the
 *    format promises only additions within a major UI version); a `version`
 *    message with a UI major version above 1 is rejected.
 *
 * 2. A driver: finds the binary, and runs one subcommand in a working
 *    directory through process.h (argv, never a shell) with a clean
 *    environment plus the cloud credentials' standard variables passed
 *    through by name (never logged), feeding stdout to the parser while it
 *    runs so long applies report progress, and stopping it on cancel or at
 *    the deadline.
 *
 * Ownership: everything a struct rh_tf_stream points to is owned by it and
 * freed by rh_tf_stream_release; json_t members are borrowed by readers.
 */
#ifndef RH_TERRAFORM_H
#define RH_TERRAFORM_H

#include "cancel.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct rh_tf_stream {
	/* addr -> {"action": "create", "status": "complete"|"errored"|"started",
	 * "elapsed_s": N}; one entry per resource instance seen in apply_* */
	json_t *resources;
	/* [{"severity", "summary", "detail", "address", "file", "line"}] for
	 * diagnostics of severity "error" (address may be "") */
	json_t *errors;
	json_t *warnings; /* same shape, severity "warning" */
	json_t *summary;  /* change_summary.changes, or NULL */
	json_t *outputs;  /* outputs.outputs (name -> {value, ...}), or NULL */
	char *tf_version; /* from the version message, or NULL */
	char *ui_version;
	char last_event[256]; /* "addr: action (Ns)" of the latest apply_* message */
	unsigned lines;	      /* JSON messages accepted */
	unsigned skipped;     /* lines that were not JSON objects (ignored) */
	unsigned unknown;     /* messages of types we do not use (ignored) */
};

/* Returns 0 or RH_ENOMEM. */
int rh_tf_stream_init(struct rh_tf_stream *st);
void rh_tf_stream_release(struct rh_tf_stream *st);

/* Feeds one line (without or with its trailing newline; need not be NUL
 * terminated). A line that is not a JSON object is counted and ignored
 * (providers may print plain text). Returns 0, RH_EUNSUPPORTED for a UI
 * major version this parser does not know (message set), RH_ENOMEM. */
int rh_tf_stream_feed(struct rh_tf_stream *st, const char *line, size_t len);

/* Feeds a whole file of lines. Returns 0 or the first feed error; a missing
 * file is RH_EIO. */
int rh_tf_stream_feed_file(struct rh_tf_stream *st, const char *path);

/* Writes "ADDR: SUMMARY: DETAIL; ADDR2: ..." for the error diagnostics into
 * buf (always NUL-terminated, truncated to size), naming the resource
 * address when the diagnostic or an errored resource gives it. Returns the
 * number of error diagnostics. */
size_t rh_tf_stream_errors(const struct rh_tf_stream *st, char *buf, size_t size);

/* Finds the binary: `option` (a path, may be NULL), else $REHYDRA_TERRAFORM,
 * else `terraform` then `tofu` on $PATH. *out is new (an absolute or
 * PATH-relative path that exists and is executable). None found:
 * RH_EINVAL with a message that says how to install one. */
int rh_tf_find(char **out, const char *option);

/* One run of the binary. */
struct rh_tf_run {
	const char *bin;	     /* from rh_tf_find */
	const char *dir;	     /* the working directory (passed as -chdir=DIR) */
	const char *const *args;     /* subcommand and its flags, NULL-terminated */
	const char *log_prefix;	     /* stdout/stderr go to <log_prefix>.stdout/.stderr */
	double deadline;	     /* rh_clock_mono seconds; <= 0 none */
	struct rh_cancel *cancel;    /* may be NULL */
	struct rh_tf_stream *stream; /* when set, stdout lines are fed to it */
	/* Called with the stream's last_event when it changes; may be NULL. */
	void (*progress)(void *user, const char *text);
	void *progress_user;
	int exit_status; /* out: the exit code, -1 if killed */
};

/* Runs it to the end. Returns 0 when it exited 0; RH_ERROR when it exited
 * non-zero (message: "terraform SUBCOMMAND exited with status N"; the
 * caller adds the stream's errors); RH_ETIMEOUT / RH_ECANCELLED after
 * stopping it (SIGTERM to its group, up to 10 s to finish, then SIGKILL);
 * RH_ENOTFOUND / RH_EIO when it could not start. */
int rh_tf_run(struct rh_tf_run *run);

/* The environment a terraform child gets: PATH HOME LANG LC_ALL TZ TMPDIR,
 * every variable whose name starts with AWS_, ALICLOUD_, NEBIUS_ or TF_
 * (credentials and Terraform's own settings: plugin cache, CLI config),
 * and TF_IN_AUTOMATION=1, TF_INPUT=0, CHECKPOINT_DISABLE=1 (during a drill
 * rh_spawn adds REHYDRA_DRILL_ID, see process.h). *out is a new
 * NULL-terminated array of new strings; free with rh_tf_env_free. */
int rh_tf_env_build(char ***out);
void rh_tf_env_free(char **env);

/* True for the variable names rh_tf_env_build passes through. */
bool rh_tf_env_passes(const char *name);

#endif
