/*
 * The one growable-array helper of the pure stages (resolve, plan): a
 * request builds small arrays one element at a time.
 */
#pragma once

#include <stdlib.h>
#include <string.h>

/* Grows the array *arrp of *n elements of size sz by one zeroed element
 * and returns it, or NULL (array unchanged) when out of memory. */
static inline void *vec_push(void *arrp, size_t *n, size_t sz)
{
	void **arr = arrp;
	char *p = realloc(*arr, (*n + 1) * sz);

	if (!p)
		return NULL;
	memset(p + *n * sz, 0, sz);
	*arr = p;
	return p + (*n)++ * sz;
}
