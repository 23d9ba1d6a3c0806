/*
 * interp.h - ${namespace.path} variable interpolation in runbook strings.
 *
 * Syntax: "${ns.a.b}" is replaced by the value found at scope[ns][a][b];
 * "$${" is an escaped literal "${"; any other "$" is literal. A reference is
 * [A-Za-z0-9_.-]+ between the braces. Namespaces: target, model, vars,
 * steps (steps.<id>.outputs.<key>), env, runbook, drill, rehydra.
 * When a segment is missing, the remaining segments joined with "." are
 * tried as one key, so output keys may contain dots.
 *
 * Values: strings as they are; integers, reals and booleans as JSON text;
 * null, objects and arrays are an error (say which reference).
 * Expansion is single-pass: text that comes out of a value is never expanded
 * again, so a value containing "${" stays inert data.
 */
#ifndef RH_INTERP_H
#define RH_INTERP_H

#include <jansson.h>

/* Calls `fn` for every reference in `in` (without "${" "}"), in order.
 * Returns 0; RH_EINVAL with the message set on a syntax error (unclosed
 * "${", empty or malformed reference); or the first non-zero value of `fn`. */
int rh_interp_foreach_ref(const char *in, int (*fn)(const char *ref, void *user), void *user);

/* Expands `in` against `scope` (an object of namespaces, borrowed).
 * *out is new (caller frees). Returns 0, RH_EINVAL (syntax), RH_ENOTFOUND
 * (unknown reference; message names it), RH_ENOMEM. */
int rh_interp_expand(char **out, const char *in, const json_t *scope);

/* Looks one reference up. Returns a borrowed value or NULL. */
json_t *rh_interp_lookup(const json_t *scope, const char *ref);

/* Deep-expands every string in `in` (objects' values and arrays' items, not
 * keys). *out is a new reference. Same returns as rh_interp_expand; the
 * message names the JSON path of the failing string. */
int rh_interp_expand_json(json_t **out, const json_t *in, const json_t *scope);

#endif
