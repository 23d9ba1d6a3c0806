/*
 * exit.c - library error codes to exit codes, in one place.
 *
 * Commands used to pick their own numbers (render turned a cancel into 2,
 * registry into 130); a table here keeps them from disagreeing again.
 */
#include "exit.h"

#include "error.h"

#include "banned.h"

int rh_cli_exit_code(int err, enum rh_cli_phase phase)
{
	switch (err) {
	case RH_OK:
		return RH_EXIT_MET;
	case RH_ECANCELLED:
		return RH_EXIT_INTERRUPTED;
	case RH_EINVAL:
	case RH_ENOTFOUND:
	case RH_EUNSUPPORTED:
		return phase == RH_CLI_INPUT ? RH_EXIT_USAGE : RH_EXIT_FAILED;
	default:
		return RH_EXIT_FAILED;
	}
}
