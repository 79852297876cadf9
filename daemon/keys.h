/*
 * The parent keys of a prefetch level as its $1, in PostgreSQL's binary
 * array format where the key type has a fixed binary form. The text
 * literal {"1","2",...} is parsed by array_in, then each element by the
 * type's input function, on every execution; array_recv with int8recv or
 * uuid_recv reads the same keys for a fraction of the server's CPU (issue
 * 20: measured in tests/bench/README.md). Knows nothing of libpq or of
 * plans: it turns the keys' text (as PostgreSQL printed them in the parent
 * result) into the bytes array_recv expects.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* The element type of a keys array, from the cast of the column it is
 * compared with (schema_column.cast). KEYS_TEXT_LITERAL: every other type
 * (numeric, dates, domains, composites...), sent as today's literal. */
enum keys_elem {
	KEYS_TEXT_LITERAL,
	KEYS_INT2,
	KEYS_INT4,
	KEYS_INT8,
	KEYS_UUID,
	KEYS_TEXT,
	KEYS_VARCHAR,
};

enum keys_elem keys_elem_of(const char *cast);

/*
 * The binary array (one dimension, lower bound 1, no NULLs) of the n keys
 * vals[i] (lens[i] bytes, text form) as elements of type elem: malloc'd,
 * its length in *len. NULL when a key does not convert (out of range for
 * int2/int4, not a uuid: the caller sends the text literal, and PostgreSQL
 * reports the value as it does today), when elem is KEYS_TEXT_LITERAL, or
 * when out of memory (*len = -1 then).
 */
char *keys_binary(enum keys_elem elem, const char *const *vals, const int *lens,
		  size_t n, int *len);
