/*
 * The one text hash of the daemon (FNV-1a, 64 bits): names a statement by
 * its SQL text for the prepared statements of a connection (pool), the
 * plan choices (planmode) and a request's shape (budget), and finds a key
 * in the graph's index over a result.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV_OFFSET 14695981039346656037ULL
#define HASH_FNV_PRIME 1099511628211ULL

/* len bytes of s (no NUL needed: a value inside a PGresult). */
static inline uint64_t bytes_hash(const char *s, size_t len)
{
	uint64_t h = HASH_FNV_OFFSET;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * HASH_FNV_PRIME;
	return h;
}

/* Folds text into the hash h (0 to start); never returns 0, so that 0 can
 * mark an empty slot. */
static inline uint64_t text_hash(uint64_t h, const char *text)
{
	const unsigned char *p = (const unsigned char *)text;

	if (h == 0)
		h = HASH_FNV_OFFSET;
	/* The NUL too: "ab" + "c" is not "a" + "bc". */
	do
		h = (h ^ *p) * HASH_FNV_PRIME;
	while (*p++);
	return h ? h : 1;
}
