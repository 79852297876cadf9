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
	bool real; /* SPEC_NUMBER written with a fraction or exponent (3.0):
		      a float, as Python's 3.0 is */
};

struct spec_expr;
struct spec_queryset;

/* A filter condition: a tree of AND/OR/NOT over terms. A term's lookup is
 * the raw key, e.g. "author__name__icontains". Several keys in one JSON
 * object become a SPEC_AND of terms, in key order. A term's value is an
 * expression when it is an object with exactly one key that starts with
 * '$' (DESIGN.md §6.1: {"pages__gt": {"$f": "sales"}}); an object with two
 * is a 400, not a literal. {"$value": X} alone is unwrapped into a plain
 * value (then rhs is NULL). An expression is refused for "in", "range" and
 * "isnull". {"$exists": QUERYSET} is a term of its own (SPEC_EXISTS), at
 * "<condition at>.$exists", which is also its queryset's at. */
enum spec_cond_kind {
	SPEC_TERM,
	SPEC_AND,
	SPEC_OR,
	SPEC_NOT,
	SPEC_EXISTS,
};

struct spec_cond {
	enum spec_cond_kind kind;
	char *at;     /* "filter.title__icontains", "exclude.$or[1]" */
	char *lookup; /* SPEC_TERM */
	struct spec_value value; /* SPEC_TERM, when rhs is NULL */
	struct spec_expr *rhs;	 /* SPEC_TERM: the value as an expression */
	struct spec_queryset *exists; /* SPEC_EXISTS: the inner queryset */
	struct spec_cond *children;   /* AND/OR: n children; NOT: exactly 1 */
	size_t nchildren;
};

/*
 * An expression (DESIGN.md §6.1). spec checks its JSON shape only; which
 * function names exist, their arity and types are resolve's (422
 * bad_expression). Strings: in an ARG position (aggregates, functions,
 * $coalesce, $case's then/default, $cast) a string names a field path
 * (SPEC_EX_FIELD), as Django reads strings as F(); as an operand of
 * arithmetic ($add $sub $mul $div $mod) and inside $value it is a literal
 * (SPEC_EX_VALUE), as F("a") + "x" is Value("x"). Other JSON scalars are
 * literals everywhere.
 */
enum spec_expr_kind {
	SPEC_EX_VALUE,	  /* value: a scalar, or $value's whole JSON */
	SPEC_EX_FIELD,	  /* name: "book__pages", "published__year", "*" */
	SPEC_EX_OUTER,	  /* name: the path; outer_depth: 1, or 2 for
			     {"$outer": {"$outer": "path"}} */
	SPEC_EX_CALL,	  /* name: the operator without '$' ("count",
			     "add", "lower", "coalesce"); args */
	SPEC_EX_CASE,	  /* whens, dflt */
	SPEC_EX_CAST,	  /* args[0]; name: the target type ("integer") */
	SPEC_EX_EXISTS,	  /* query */
	SPEC_EX_SUBQUERY, /* query */
};

struct spec_when {
	struct spec_cond *when;
	struct spec_expr *then;
	char *at; /* "annotate.x.$case[0]" */
};

struct spec_expr {
	enum spec_expr_kind kind;
	/* "annotate.n_books", "annotate.x.$add[1]", "filter.pages__gt": an
	 * operand is at "<at>.$name" (single) or "<at>.$name[i]" (list form),
	 * $cast's at "<at>.$cast", an option at "<at>.filter" /
	 * "<at>.default", a query's at "<at>.$exists" / "<at>.$subquery". */
	char *at;
	struct spec_value value; /* SPEC_EX_VALUE */
	char *name;
	int outer_depth; /* SPEC_EX_OUTER */
	/* SPEC_EX_CALL: the operands in order; a single operand given
	 * without an array ({"$lower": "name"}) is one arg, and list_form
	 * says which form was used ({"$lower": ["name"]} is also one). */
	struct spec_expr *args;
	size_t nargs;
	bool list_form;
	/* The options of SPEC_EX_CALL: "distinct", "sample", "filter",
	 * "default" (present only when given; resolve says which operator
	 * takes which), and "default" of $case. */
	bool has_distinct, distinct;
	bool has_sample, sample;
	struct spec_cond *filter; /* NULL when absent */
	struct spec_expr *dflt;	  /* NULL when absent */
	struct spec_when *whens;  /* SPEC_EX_CASE */
	size_t nwhens;
	struct spec_queryset *query; /* SPEC_EX_EXISTS, SPEC_EX_SUBQUERY */
};

/* One entry of "annotate" or "aggregate", in the object's key order. */
struct spec_annotation {
	char *name;
	char *at; /* "annotate.n_books" */
	struct spec_expr expr;
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
	/* DESIGN.md §6.3-6.5 */
	struct spec_annotation *annotate;
	size_t nannotate;
	struct spec_annotation *aggregate; /* top level only */
	size_t naggregate;
	bool has_aggregate;
	/* "values": [...] or "values_list": {"fields": [...], "flat": b};
	 * has_values for either, values_list for the second. "fields" is
	 * required (may be []); flat needs exactly one; entries are at
	 * "values[i]" / "values_list.fields[i]". */
	struct spec_name *values;
	size_t nvalues;
	bool has_values;
	bool values_list;
	bool flat;
};

/* Limits of the shape of a request, enforced while parsing (400 bad_spec).
 * max_depth counts nested queryset, condition and expression objects
 * together: the top queryset is level 1, its "filter" object level 2, each
 * "$and"/"$or" item or "$not" operand one more, a Prefetch "queryset" one
 * more than the queryset holding it. An expression object is one more than
 * what holds it (an "annotate" value than its queryset, a term's value than
 * its condition object, an operand, "then" or "default" than its
 * expression), as are an expression's "filter"/"when" condition and a
 * $exists/$subquery queryset; a scalar or a field path adds no level.
 * A field <= 0 means its default. */
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
 * negative slice, an expression of the wrong shape, "aggregate" below the
 * top, "values"/"values_list" with "only"/"defer"), each with the precise
 * "at" path. limits may be NULL. */
struct spec_queryset *spec_parse(const char *body, size_t len,
				 const struct spec_limits *limits,
				 struct pf_err *err);

void spec_free(struct spec_queryset *qs);
