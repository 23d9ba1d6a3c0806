/*
 * load.h - what the rest of rehydra needs to know about the load_probe step
 * (step_load.c): its defaults and how its outputs read on one line.
 *
 * Outputs of a load_probe (in the record and as ${steps.ID.outputs.KEY}):
 * requests, errors, timeouts, late_sends, error_rate, rate_per_s,
 * connections, achieved_rate_per_s, p50_ms, p90_ms, p95_ms, p99_ms,
 * p999_ms, max_ms, first_error (when there was one), slo_met (when the step
 * has an slo), and with streaming: ttft_p50_ms, ttft_p95_ms, ttft_p99_ms,
 * tokens, tokens_per_s (aggregate), tokens_per_s_per_request (median).
 * Latencies count from each request's intended send time.
 */
#ifndef RH_LOAD_H
#define RH_LOAD_H

#include <jansson.h>
#include <stddef.h>

#define RH_LOAD_DEFAULT_CONNECTIONS 16
#define RH_LOAD_MAX_CONNECTIONS 1000
#define RH_LOAD_MAX_RATE 1000000

/* The headline numbers of a load_probe's outputs (borrowed) into buf:
 * "500 req at 100.0/s  p50 0.21 ms  p99 0.90 ms  p99.9 1.10 ms  0 errors"
 * (plus late sends and ttft when there are any); "" when `outputs` holds
 * no load results. */
void rh_load_headline(char *buf, size_t size, const json_t *outputs);

#endif
