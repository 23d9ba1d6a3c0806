/*
 * exit.h - rehydra's exit codes and the one place library error codes
 * become them.
 *
 * Every command exits with one of these (README "Exit codes", `rehydra help
 * exit-codes`). A command that fails on a library call passes the call's
 * RH_E* code through rh_cli_exit_code() rather than choosing a number, so an
 * interrupt is 130 and bad input is 2 whichever command saw it.
 */
#ifndef RH_CLI_EXIT_H
#define RH_CLI_EXIT_H

enum rh_exit {
	RH_EXIT_MET = 0,	  /* service restored within the RTO target; or success */
	RH_EXIT_MISSED = 1,	  /* restored, but the RTO target was missed */
	RH_EXIT_USAGE = 2,	  /* bad input or usage: nothing was run */
	RH_EXIT_FAILED = 3,	  /* drill failed: service not restored */
	RH_EXIT_TEARDOWN = 4,	  /* teardown incomplete: resources may remain */
	RH_EXIT_INTERRUPTED = 130 /* SIGINT/SIGTERM: teardown ran */
};

/* When the error happened: while reading what the user named (the
 * runbook, the registry, the version, the target), or after the work
 * started. Only the first can be bad input (2: nothing ran); once a
 * transfer or a drill is under way a failure is a failure (3). */
enum rh_cli_phase {
	RH_CLI_INPUT,
	RH_CLI_RUN,
};

/*
 * The exit code for a library result `err` (0 or a negative RH_E* code):
 *   0                                   RH_EXIT_MET
 *   RH_ECANCELLED                       RH_EXIT_INTERRUPTED
 *   RH_EINVAL, RH_ENOTFOUND,
 *   RH_EUNSUPPORTED in RH_CLI_INPUT     RH_EXIT_USAGE (the argument, file or
 *                                       name is wrong)
 *   anything else (I/O, verify, ...)    RH_EXIT_FAILED
 */
int rh_cli_exit_code(int err, enum rh_cli_phase phase);

#endif
