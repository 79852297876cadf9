/*
 * The one text hash of the daemon (FNV-1a, 64 bits): names a statement by
 * its SQL text for the prepared statements of a connection (pool), the
 * plan choices (planmode) and a request's shape (budget).
 */
#pragma once

#include <stdint.h>

/* Folds text into the hash h (0 to start); never returns 0, so that 0 can
 * mark an empty slot. */
static inline uint64_t text_hash(uint64_t h, const char *text)
{
	const unsigned char *p = (const unsigned char *)text;

	if (h == 0)
		h = 14695981039346656037ULL;
	/* The NUL too: "ab" + "c" is not "a" + "bc". */
	do
		h = (h ^ *p) * 1099511628211ULL;
	while (*p++);
	return h ? h : 1;
}
