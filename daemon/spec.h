/*
 * The request as data: a Django-style queryset parsed from JSON (DESIGN.md
 * §1) into plain C structs. spec knows JSON and the shape of the protocol,
 * nothing of the schema: names are kept as the client wrote them and are
 * bound by resolve. jansson lives here; nothing after this stage sees it.
 * Every node carries its "at" path for error messages.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* A JSON value from a filter. Scalars keep their text as it will be bound
 * ("42", "3.5", "true", "abc"); arrays keep their items; objects (and arrays,
 * for json/jsonb columns) keep their compact JSON text as well.
 * Integers are 64-bit (larger ones are rejected as bad_json: send them as
 * strings); reals are doubles written in the shortest text that reads back
 * the same ("0.1", "1e+22"), also inside compact JSON. Items are one level
 * deep: a nested array or object item has its JSON text and no items. */
enum spec_value_kind {
	SPEC_NULL,
	SPEC_BOOL,
	SPEC_NUMBER,
	SPEC_STRING,
	SPEC_ARRAY,
	SPEC_OBJECT,
};

struct spec_value {
	enum spec_value_kind kind;
	/* scalar text; compact JSON for array/object; NULL for SPEC_NULL */
	char *text;
	struct spec_value *items; /* SPEC_ARRAY only */
	size_t nitems;
};

/* A filter condition: a tree of AND/OR/NOT over terms. A term's lookup is
 * the raw key, e.g. "author__name__icontains". Several keys in one JSON
 * object become a SPEC_AND of terms, in key order. */
enum spec_cond_kind {
	SPEC_TERM,
	SPEC_AND,
	SPEC_OR,
	SPEC_NOT,
};

struct spec_cond {
	enum spec_cond_kind kind;
	char *at;     /* "filter.title__icontains", "exclude.$or[1]" */
	char *lookup; /* SPEC_TERM */
	struct spec_value value;    /* SPEC_TERM */
	struct spec_cond *children; /* AND/OR: n children; NOT: exactly 1 */
	size_t nchildren;
};

struct spec_order {
	char *field; /* without the leading '-': "author__name" */
	bool desc;
	char *at; /* "order_by[2]" */
};

struct spec_name {
	char *name; /* a field or a path: "author", "author__publisher" */
	char *at;   /* "only[0]", "select_related[1]" */
};

struct spec_queryset;

/* One entry of prefetch_related: a plain lookup ("a__b") or a Prefetch
 * object, which may carry a queryset and a to_attr. */
struct spec_prefetch {
	char *lookup;			/* "article_set__comment_set" */
	struct spec_queryset *queryset; /* NULL for a plain lookup */
	char *to_attr;			/* NULL when not given */
	char *at;			/* "prefetch_related[1]" */
};

struct spec_queryset {
	/* prefix of this queryset's paths: "" at top,
	 * "prefetch_related[1].queryset" inside */
	char *at;
	char *model; /* required at top; NULL inside a Prefetch if not given */
	struct spec_name *only;
	size_t nonly;
	bool has_only;
	struct spec_name *defer;
	size_t ndefer;
	struct spec_cond *filter;  /* NULL when absent */
	struct spec_cond *exclude; /* NULL when absent */
	struct spec_order *order_by;
	size_t norder_by;
	bool has_order_by; /* "order_by": [] clears the default ordering */
	bool distinct;
	long long offset; /* 0 when absent */
	long long limit;  /* meaningful only when has_limit */
	bool has_limit;
	struct spec_name *select_related;
	size_t nselect_related;
	struct spec_prefetch *prefetch_related;
	size_t nprefetch_related;
};

/* Limits of the shape of a request, enforced while parsing (400 bad_spec).
 * max_depth counts nested queryset and condition objects together: the top
 * queryset is level 1, its "filter" object level 2, each "$and"/"$or" item
 * or "$not" operand one more, a Prefetch "queryset" one more than the
 * queryset holding it. A field <= 0 means its default. */
#define SPEC_DEFAULT_MAX_DEPTH 16
#define SPEC_DEFAULT_MAX_LOOKUPS 64
#define SPEC_MAX_NAME 200 /* bytes in a name or lookup */

struct spec_limits {
	int max_depth;	 /* nesting of conditions and Prefetch querysets */
	int max_lookups; /* prefetch_related entries in the whole request */
};

/* Parses a request body. Returns a queryset owned by the caller (free it
 * with spec_free), or NULL with err set: 400 bad_json when the body is not
 * JSON, 400 bad_spec when it is not a queryset (missing or unknown key,
 * wrong JSON type, "in" without an array, "range" without two bounds,
 * negative slice), each with the precise "at" path. limits may be NULL. */
struct spec_queryset *spec_parse(const char *body, size_t len,
				 const struct spec_limits *limits,
				 struct pf_err *err);

void spec_free(struct spec_queryset *qs);
