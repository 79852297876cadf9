/*
 * Keys arrays in array_recv's format (see keys.h): a header (dimensions,
 * a has-NULLs flag, the element type's OID, each dimension's length and
 * lower bound), then each element as its length and its bytes, all
 * integers big-endian (PostgreSQL's src/backend/utils/adt/arrayfuncs.c,
 * array_send; and each type's _send function for the elements).
 */
#include "keys.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct elem_type {
	const char *cast; /* as schema_column.cast spells it */
	uint32_t oid;	  /* pg_type.oid, fixed for built-in types */
	int width;	  /* bytes of an element; 0: its text's length */
};

static const struct elem_type ELEM_TYPES[] = {
	[KEYS_INT2] = {"\"pg_catalog\".\"int2\"", 21, 2},
	[KEYS_INT4] = {"\"pg_catalog\".\"int4\"", 23, 4},
	[KEYS_INT8] = {"\"pg_catalog\".\"int8\"", 20, 8},
	[KEYS_UUID] = {"\"pg_catalog\".\"uuid\"", 2950, 16},
	[KEYS_TEXT] = {"\"pg_catalog\".\"text\"", 25, 0},
	[KEYS_VARCHAR] = {"\"pg_catalog\".\"varchar\"", 1043, 0},
};

#define NELEMS (sizeof(ELEM_TYPES) / sizeof(ELEM_TYPES[0]))

enum keys_elem keys_elem_of(const char *cast)
{
	for (size_t e = KEYS_INT2; e < NELEMS; e++)
		if (!strcmp(cast, ELEM_TYPES[e].cast))
			return (enum keys_elem)e;
	return KEYS_TEXT_LITERAL;
}

static char *put_u32(char *p, uint32_t v)
{
	p[0] = (char)(v >> 24);
	p[1] = (char)(v >> 16);
	p[2] = (char)(v >> 8);
	p[3] = (char)v;
	return p + 4;
}

/* An integer as int2out/int4out/int8out print it: an optional '-', then
 * digits, within [min, max]. Parsed by hand: strtoll would take leading
 * blanks and '+', and needs the terminator. */
static bool parse_int(const char *s, int len, int64_t min, int64_t max,
		      int64_t *out)
{
	bool neg = len > 0 && s[0] == '-';
	int i = neg ? 1 : 0;
	/* accumulated as a negative number: -min fits, -INT64_MIN does not */
	int64_t v = 0;

	if (i == len)
		return false;
	for (; i < len; i++) {
		int d = s[i] - '0';

		if (d < 0 || d > 9 || v < (INT64_MIN + d) / 10)
			return false;
		v = v * 10 - d;
	}
	if (!neg) {
		if (v == INT64_MIN)
			return false;
		v = -v;
	}
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* uuid_out's form: 8-4-4-4-12 hex digits. */
static bool parse_uuid(const char *s, int len, char *out)
{
	int b = 0;

	if (len != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		int hi, lo;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
			continue;
		}
		hi = hex_digit(s[i]);
		lo = hex_digit(s[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[b++] = (char)(hi << 4 | lo);
		i++;
	}
	return true;
}

/* One element's bytes at p (its length is written by the caller). */
static bool put_elem(enum keys_elem elem, const char *s, int len, char *p)
{
	int64_t v;

	switch (elem) {
	case KEYS_INT2:
		if (!parse_int(s, len, INT16_MIN, INT16_MAX, &v))
			return false;
		p[0] = (char)(v >> 8);
		p[1] = (char)v;
		return true;
	case KEYS_INT4:
		if (!parse_int(s, len, INT32_MIN, INT32_MAX, &v))
			return false;
		put_u32(p, (uint32_t)v);
		return true;
	case KEYS_INT8:
		if (!parse_int(s, len, INT64_MIN, INT64_MAX, &v))
			return false;
		put_u32(p, (uint32_t)((uint64_t)v >> 32));
		put_u32(p + 4, (uint32_t)v);
		return true;
	case KEYS_UUID:
		return parse_uuid(s, len, p);
	case KEYS_TEXT:
	case KEYS_VARCHAR:
		memcpy(p, s, (size_t)len);
		return true;
	case KEYS_TEXT_LITERAL:
		break;
	}
	return false;
}

char *keys_binary(enum keys_elem elem, const char *const *vals, const int *lens,
		  size_t n, int *len)
{
	const struct elem_type *t;
	size_t size = 20 + 4 * n;
	char *buf, *p;

	*len = 0;
	if (elem <= KEYS_TEXT_LITERAL || (size_t)elem >= NELEMS ||
	    n > INT32_MAX)
		return NULL;
	t = &ELEM_TYPES[elem];
	for (size_t i = 0; i < n; i++)
		size += t->width ? (size_t)t->width : (size_t)lens[i];
	if (size > INT32_MAX)
		return NULL;
	buf = malloc(size);
	if (!buf) {
		*len = -1;
		return NULL;
	}
	p = put_u32(buf, 1);	     /* dimensions */
	p = put_u32(p, 0);	     /* no NULLs */
	p = put_u32(p, t->oid);	     /* element type */
	p = put_u32(p, (uint32_t)n); /* the dimension's length */
	p = put_u32(p, 1);	     /* and its lower bound */
	for (size_t i = 0; i < n; i++) {
		int w = t->width ? t->width : lens[i];

		p = put_u32(p, (uint32_t)w);
		if (!put_elem(elem, vals[i], lens[i], p)) {
			free(buf);
			return NULL;
		}
		p += w;
	}
	*len = (int)(p - buf);
	return buf;
}
