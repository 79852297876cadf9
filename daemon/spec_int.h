/*
 * What spec.c (querysets, conditions, values, names, freeing) and
 * spec_expr.c (expressions, annotate and aggregate: DESIGN.md §6) share.
 * Not for the other stages: they read spec.h's tree only, and never see
 * jansson, which this header brings in.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "spec.h"

struct parser {
	struct pf_err *err;
	int max_depth;
	int max_lookups;
	int nlookups; /* prefetch_related entries seen so far, all levels */
};

/* Where a queryset stands: "model" is required at the top and in a
 * subquery (it has no relation to take it from), "aggregate" only at the
 * top (it replaces the results). */
enum qs_place {
	QS_TOP,
	QS_PREFETCH,
	QS_SUBQUERY, /* of $exists or $subquery */
};

/* ---- spec.c ---- */

/* Set p->err and return -1: 500 internal; 400 bad_spec at at. */
int oom(struct parser *p);
int too_deep(struct parser *p, const char *at);
/* "filter" + "title" → "filter.title"; "only" + 2 → "only[2]". malloc'd,
 * NULL when out of memory. */
char *path_key(const char *prefix, const char *key);
char *path_index(const char *prefix, size_t i);
/* A required key that is absent: the error is at "<obj_at>.<key>". */
int missing_key(struct parser *p, const char *obj_at, const char *key,
		const char *message);
/* "an object", "a string", ... for messages. */
const char *type_name(const json_t *v);
int dup_to(struct parser *p, const char *s, char **out);
/* A name from the request: non-empty, at most SPEC_MAX_NAME bytes, no NUL;
 * get_name also checks that v is a string and copies it into *out. */
int check_name_text(struct parser *p, const char *s, size_t n, const char *at,
		    const char *what);
int get_name(struct parser *p, json_t *v, const char *at, const char *what,
	     char **out);
/* A filter value (see spec.h's struct spec_value); nested: an array item,
 * which keeps its JSON text and no items. */
int parse_value(struct parser *p, json_t *v, const char *at, bool nested,
		struct spec_value *out);
/* A CONDITION object at depth (which counts it) into out. */
int parse_cond(struct parser *p, json_t *v, const char *at, int depth,
	       struct spec_cond *out);
/* Fills qs (zeroed by the caller; on error it may be partly filled and
 * spec_free-able). depth counts this queryset: 1 at the top. */
int parse_queryset(struct parser *p, json_t *obj, const char *at,
		   enum qs_place place, int depth, struct spec_queryset *qs);

/* ---- spec_expr.c ---- */

/* How a bare JSON string reads where an expression is expected: a field
 * path in an ARG position, as Django reads strings as F(); a literal as an
 * operand of arithmetic, as F("a") + "x" is Value("x"). */
enum str_mode {
	STR_FIELD,
	STR_LITERAL,
};

/* The first key of v that starts with '$' (an expression's operator), or
 * NULL when v is not an object or has none. */
const char *expr_operator(json_t *v);
/* The queryset of "$exists" or "$subquery" (op), at at, one level below
 * depth; *out is allocated here (spec_free-able on error too). */
int parse_inner_queryset(struct parser *p, const char *op, json_t *v,
			 const char *at, int depth, struct spec_queryset **out);
/* An expression at at (copied into out->at); an object counts one level,
 * depth. On error out may be partly filled: spec.c's freeing takes it. */
int parse_expr(struct parser *p, json_t *v, const char *at, int depth,
	       enum str_mode mode, struct spec_expr *out);
/* "annotate" / "aggregate" (key): {NAME: EXPR | ARG, ...} in key order. */
int parse_annotations(struct parser *p, json_t *v, const char *key,
		      const char *at, int depth, struct spec_annotation **out,
		      size_t *nout);
