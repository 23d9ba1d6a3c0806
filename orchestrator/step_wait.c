/*
 * step_wait.c - the wait step: sleep a fixed time.
 *
 * Useful to let a stack settle or to rehearse a slow dependency. The sleep
 * is on the cancellation token, so an interrupt ends it at once, and it
 * never outlives the attempt's deadline.
 */
#include "clock.h"
#include "error.h"
#include "step_run.h"

#include <jansson.h>

#include "banned.h"

int rh_step_wait_run(struct rh_step_ctx *ctx)
{
	json_t *v = json_object_get(ctx->spec, "seconds");
	double seconds, left;
	int rc;

	if (!json_is_number(v) || json_number_value(v) < 0)
		return rh_error_set(RH_EINVAL, "step '%s': 'seconds' must be a number >= 0",
				    ctx->step->id);
	seconds = json_number_value(v);
	left = ctx->deadline - rh_clock_mono();
	if (seconds <= left)
		return rh_cancel_sleep(ctx->cancel, seconds);
	rc = rh_cancel_sleep(ctx->cancel, left > 0 ? left : 0);
	if (rc < 0)
		return rc;
	return rh_error_set(RH_ETIMEOUT,
			    "step '%s': waiting %gs does not fit in its timeout; "
			    "raise timeout_s",
			    ctx->step->id, seconds);
}
