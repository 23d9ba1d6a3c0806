/*
 * suggest.h - "did you mean 'x'?" for a mistyped word.
 *
 * The runbook parser (unknown keys, step ids, providers) and the command
 * line (unknown commands, subcommands, options) suggest the same way, from
 * this one copy.
 */
#ifndef RH_SUGGEST_H
#define RH_SUGGEST_H

/* The candidate closest to `word` (Damerau-Levenshtein distance <= 2, or
 * equal ignoring case), for "did you mean 'x'?"; NULL when none is close.
 * `cands` is NULL-terminated; the result is borrowed from it. */
const char *rh_suggest(const char *word, const char *const *cands);

#endif
