/*
 * suggest.c - the closest candidate to a mistyped word.
 *
 * A distance with adjacent transpositions ("jsno" is one edit from "json"),
 * capped so a long word costs no more than a short one, and never a
 * suggestion that is further from the word than the word is long.
 */
#include "suggest.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "banned.h"

/* Optimal string alignment distance (Damerau-Levenshtein with adjacent
 * transpositions), capped: anything above 3 is "far". */
static int edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int rows[3][66];
	int *pp, *p, *c;

	if (la > 64 || lb > 64)
		return 99;
	if ((la > lb ? la - lb : lb - la) > 2)
		return 99;
	pp = rows[0];
	p = rows[1];
	c = rows[2];
	for (size_t j = 0; j <= lb; j++)
		p[j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		int *t;

		c[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int cost = a[i - 1] == b[j - 1] ? 0 : 1;
			int best = p[j] + 1;

			if (c[j - 1] + 1 < best)
				best = c[j - 1] + 1;
			if (p[j - 1] + cost < best)
				best = p[j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    pp[j - 2] + 1 < best)
				best = pp[j - 2] + 1;
			c[j] = best;
		}
		t = pp;
		pp = p;
		p = c;
		c = t;
	}
	return p[lb];
}

const char *rh_suggest(const char *word, const char *const *cands)
{
	const char *best = NULL;
	int best_d = 3;

	if (!word || !cands)
		return NULL;
	for (size_t i = 0; cands[i]; i++) {
		int dist;

		if (strcasecmp(word, cands[i]) == 0)
			return cands[i];
		dist = edit_distance(word, cands[i]);
		/* A short word is "close" to everything short: ask for the
		 * distance to be smaller than the word itself. */
		if (dist < best_d && (size_t)dist < strlen(word)) {
			best = cands[i];
			best_d = dist;
		}
	}
	return best;
}
